# SPDX-License-Identifier: Apache-2.0
"""Operations on a running cluster: snapshot, restore, rotate-certs.

The rules the service enforces itself (phases, parameters, one unfinished operation per cluster,
engines without support) are tested here with the test engine; the rke engine's commands are tested
in test_rke_engine.py (real rke) and test_rke_standin.py (a stand-in for a successful bring-up).
"""
import json
import os
import re
import subprocess
import time

import pytest

BASE = "/v1/environments/default/clusters"


def ready_cluster(server, name, **test):
    op = server.create_cluster(name, test=test or None)
    done = server.wait_op(op["id"])
    assert done["state"] == "succeeded", done
    return server.get(f"{BASE}/{name}").json()


def fields(r):
    assert r.headers["Content-Type"].startswith("application/problem+json"), r.text
    return {e["field"]: e["reason"] for e in r.json().get("errors", [])}


def test_snapshot_keeps_the_cluster_ready_and_is_listed(server):
    before = ready_cluster(server, "snap", durationMs=0)
    r = server.post(f"{BASE}/snap/snapshots", {"name": "before-upgrade"})
    assert r.status_code == 202, r.text
    op = r.json()
    assert op["type"] == "snapshot" and op["params"] == {"name": "before-upgrade"}, op
    assert r.headers["Location"] == f"/v1/operations/{op['id']}"
    done = server.wait_op(op["id"])
    assert done["state"] == "succeeded", done
    assert done["result"] == {"snapshot": "before-upgrade"}, done
    c = server.get(f"{BASE}/snap").json()
    assert c["status"]["phase"] == "Ready", c
    assert c["generation"] == before["generation"], c  # a snapshot is no spec change

    # Without a name the service picks "<cluster>-<date>-<time>" (UTC).
    r = server.post(f"{BASE}/snap/snapshots")
    assert r.status_code == 202, r.text
    auto = r.json()["params"]["name"]
    assert re.fullmatch(r"snap-\d{8}-\d{6}", auto), auto
    assert server.wait_op(r.json()["id"])["state"] == "succeeded"

    items = server.get(f"{BASE}/snap/snapshots").json()["items"]
    assert [i["name"] for i in items] == [auto, "before-upgrade"], items
    assert all(i["operation"].startswith("op_") and i["createdAt"].endswith("Z") for i in items), items


def test_phase_while_running(server):
    ready_cluster(server, "phases", durationMs=0)
    spec = {"engine": "test", "test": {"durationMs": 1500}}
    cur = server.get(f"{BASE}/phases").json()
    r = server.put(f"{BASE}/phases", {"spec": spec}, headers={"If-Match": f'"{cur["resourceVersion"]}"'})
    assert r.status_code == 202, r.text
    assert server.wait_op(r.json()["id"])["state"] == "succeeded"

    r = server.post(f"{BASE}/phases/snapshots", {"name": "s1"})
    assert r.status_code == 202, r.text
    snap = r.json()
    # Another change while the snapshot runs is a 409 naming it; the cluster stays Ready meanwhile.
    r = server.post(f"{BASE}/phases/rotate-certs", {})
    assert r.status_code == 409, r.text
    assert snap["id"] in r.json()["detail"], r.text
    assert server.get(f"{BASE}/phases").json()["status"]["phase"] == "Ready"
    assert server.wait_op(snap["id"])["state"] == "succeeded"

    r = server.post(f"{BASE}/phases/rotate-certs", {"rotateCA": True, "services": ["etcd", "kubelet"]})
    assert r.status_code == 202, r.text
    rot = r.json()
    assert rot["params"] == {"rotateCA": True, "services": ["etcd", "kubelet"]}, rot
    deadline = time.time() + 10
    while time.time() < deadline:
        phase = server.get(f"{BASE}/phases").json()["status"]["phase"]
        if phase == "Updating" or server.get(f"/v1/operations/{rot['id']}").json()["state"] == "succeeded":
            break
        time.sleep(0.05)
    assert phase == "Updating", phase
    assert server.wait_op(rot["id"])["state"] == "succeeded"
    c = server.get(f"{BASE}/phases").json()
    ready = next(x for x in c["status"]["conditions"] if x["type"] == "Ready")
    assert c["status"]["phase"] == "Ready" and ready["reason"] == "CertificatesRotated", c


def test_failed_snapshot_leaves_the_cluster_ready_failed_restore_does_not(server):
    ready_cluster(server, "fails", durationMs=0, failOperations=["snapshot", "restore"])
    r = server.post(f"{BASE}/fails/snapshots", {"name": "x"})
    assert r.status_code == 202, r.text
    op = server.wait_op(r.json()["id"])
    assert op["state"] == "failed" and op["error"] == "simulated snapshot failure", op
    assert "result" not in op, op
    assert server.get(f"{BASE}/fails").json()["status"]["phase"] == "Ready"
    assert server.get(f"{BASE}/fails/snapshots").json()["items"] == []

    r = server.post(f"{BASE}/fails/restore", {"snapshot": "x"})
    assert r.status_code == 202, r.text
    op = server.wait_op(r.json()["id"])
    assert op["state"] == "failed" and op["error"] == "simulated restore failure", op
    assert server.get(f"{BASE}/fails").json()["status"]["phase"] == "Failed"

    # A Failed cluster cannot be snapshotted, but it can be restored or have its certificates renewed.
    r = server.post(f"{BASE}/fails/snapshots", {"name": "y"})
    assert r.status_code == 409, r.text
    assert "Failed" in r.json()["detail"], r.text
    r = server.post(f"{BASE}/fails/rotate-certs")
    assert r.status_code == 202, r.text
    assert server.wait_op(r.json()["id"])["state"] == "succeeded"
    assert server.get(f"{BASE}/fails").json()["status"]["phase"] == "Ready"


@pytest.mark.parametrize("path,body,field", [
    ("snapshots", {"name": "../etc"}, "name"),
    ("snapshots", {"name": "-rf"}, "name"),
    ("snapshots", {"name": "x" * 129}, "name"),
    ("snapshots", {"name": 5}, "name"),
    ("snapshots", {"nmae": "typo"}, "nmae"),
    ("restore", {}, "snapshot"),
    ("restore", {"snapshot": "a b"}, "snapshot"),
    ("rotate-certs", {"services": ["kube-apiserver", "sshd"]}, "services[1]"),
    ("rotate-certs", {"services": ["etcd", "etcd"]}, "services[1]"),
    ("rotate-certs", {"services": "etcd"}, "services"),
    ("rotate-certs", {"rotateCA": "yes"}, "rotateCA"),
])
def test_bad_parameters_are_422_and_queue_nothing(server, path, body, field):
    ready_cluster(server, "params", durationMs=0)
    r = server.post(f"{BASE}/params/{path}", body)
    assert r.status_code == 422, r.text
    assert field in fields(r), r.text
    ops = server.get(f"{BASE}/params/operations").json()["items"]
    assert [o["type"] for o in ops] == ["create"], ops


def test_malformed_body_unknown_cluster_and_engine_without_support(make_server):
    s = make_server(extra_args=["--workers", "0"]).start()
    r = s.post(f"{BASE}/nope/snapshots", {})
    assert r.status_code == 404, r.text
    r = s.post(f"{BASE}/nope/snapshots", data=b"{", headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 404), r.text
    # The local engine has no snapshot: a 422 naming the engine, before anything is queued.
    r = s.post("/v1/environments/default/clusters", {"name": "loc", "spec": {"engine": "local"}})
    assert r.status_code == 202, r.text
    for path in ("snapshots", "restore", "rotate-certs"):
        r = s.post(f"{BASE}/loc/{path}", {"snapshot": "x"} if path == "restore" else {})
        assert r.status_code == 422, r.text
        assert "local" in fields(r)["spec.engine"], r.text
    # A cluster still Pending (its create queued) answers 409 naming the create.
    s.create_cluster("pend")
    create = s.get(f"{BASE}/pend/operations").json()["items"][0]
    r = s.post(f"{BASE}/pend/snapshots", {})
    assert r.status_code == 409, r.text
    assert create["id"] in r.json()["detail"], r.text


def test_cancel_a_running_snapshot_keeps_the_cluster_ready(server):
    # every step of this cluster takes 3 s: long enough to cancel the snapshot while it runs
    ready_cluster(server, "cancel", durationMs=3000)
    r = server.post(f"{BASE}/cancel/snapshots", {"name": "slow"})
    assert r.status_code == 202, r.text
    op = r.json()
    server.wait_op(op["id"], states=("running",))
    r = server.post(f"/v1/operations/{op['id']}/cancel")
    assert r.status_code == 202 and r.json()["cancelRequested"], r.text
    done = server.wait_op(op["id"])
    assert done["state"] == "cancelled", done
    c = server.get(f"{BASE}/cancel").json()
    assert c["status"]["phase"] == "Ready", c
    assert server.get(f"{BASE}/cancel/snapshots").json()["items"] == []


def cli(server, *args):
    env = dict(os.environ, CLUSTERMGMT_SERVER=server.url, CLUSTERMGMT_TOKEN=server.token)
    return subprocess.run([server.binary, *args], env=env, capture_output=True, text=True, timeout=60)


def test_cli_snapshot_restore_rotate(server):
    ready_cluster(server, "clic", durationMs=0)
    p = cli(server, "cluster", "snapshot", "clic", "--name", "nightly", "--wait")
    assert p.returncode == 0, p.stdout + p.stderr
    p = cli(server, "cluster", "snapshots", "clic")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["NAME", "OPERATION", "AGE"] and lines[1].startswith("nightly "), p.stdout
    p = cli(server, "-o", "json", "cluster", "snapshots", "clic")
    assert json.loads(p.stdout)["items"][0]["name"] == "nightly", p.stdout

    p = cli(server, "cluster", "restore", "clic")
    assert p.returncode == 2 and "--snapshot NAME is required" in p.stderr, p.stderr
    p = cli(server, "cluster", "restore", "clic", "--snapshot", "nightly", "--wait", "--timeout", "60")
    assert p.returncode == 0, p.stdout + p.stderr
    p = cli(server, "cluster", "rotate-certs", "clic", "--service", "etcd", "--service", "kubelet", "--wait")
    assert p.returncode == 0, p.stdout + p.stderr
    ops = server.get(f"{BASE}/clic/operations").json()["items"]
    assert [o["type"] for o in ops] == ["rotate-certs", "restore", "snapshot", "create"], ops
    assert ops[0]["params"] == {"rotateCA": False, "services": ["etcd", "kubelet"]}, ops[0]

    # a bad service name is the server's 422, shown field by field
    p = cli(server, "cluster", "rotate-certs", "clic", "--service", "sshd")
    assert p.returncode == 1 and "services[0]" in p.stderr, p.stderr
