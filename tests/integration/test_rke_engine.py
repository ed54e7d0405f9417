# SPDX-License-Identifier: Apache-2.0
"""The rke engine against the real rke binary (./bin/rke, built by `make rke`).

Nodes point at a closed loopback port: rke validates the config, generates the certificates, writes
cluster.rkestate, then fails to reach the node. Nothing here is mocked.
"""
import os
import re
import socket

import pytest

from conftest import REPO_ROOT, Server

RKE = os.path.join(REPO_ROOT, "bin", "rke")
CA_FP = re.compile(r"kube-ca (SHA256:[0-9a-f]{64})")


def rke_binary():
    if os.access(RKE, os.X_OK):
        return RKE
    reason = f"{RKE} is missing: build it with `make rke` (scripts/build-rke.sh)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def closed_port():
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def rke_server(binary, make_server):
    rke = rke_binary()
    s = make_server(extra_args=["--rke-path", rke, "--max-attempts", "2"])
    s.start()
    r = s.post("/v1/environments/default/sshkeys", {"name": "ops", "generate": True})
    assert r.status_code in (200, 201), r.text
    return s


def spec(port, **extra):
    rke = {"nodes": [{"address": "127.0.0.1", "port": port, "user": "ops",
                      "roles": ["controlplane", "etcd", "worker"], "sshKey": "ops"}]}
    rke.update(extra)
    return {"engine": "rke", "rke": rke}


def state_files(data_dir):
    for root, _, files in os.walk(os.path.join(data_dir, "state")):
        for f in files:
            yield os.path.join(root, f)


def test_versions(rke_server):
    r = rke_server.get("/v1/engines/rke/versions")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["engine"] == "rke"
    assert "v1.32.7-rancher1-1" in body["versions"]
    assert body["default"] in body["versions"]
    assert rke_server.get("/v1/engines/nope/versions").status_code == 404


def test_unsupported_version_is_422_naming_supported(rke_server):
    body = {"name": "old", "spec": dict(spec(22), kubernetesVersion="v1.20.4-rancher1-1")}
    r = rke_server.post("/v1/environments/default/clusters", body)
    assert r.status_code == 422, r.text
    reasons = {e["field"]: e["reason"] for e in r.json()["errors"]}
    assert "v1.32.7-rancher1-1" in reasons["spec.kubernetesVersion"]


def test_invalid_spec_fields(rke_server):
    bad = spec(70000, network={"plugin": "cilium"}, extra=1)
    bad["rke"]["nodes"][0]["roles"] = ["worker"]
    r = rke_server.post("/v1/environments/default/clusters", {"name": "bad", "spec": bad})
    assert r.status_code == 422, r.text
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"spec.rke.nodes[0].port", "spec.rke.network.plugin", "spec.rke.extra", "spec.rke.nodes"} <= fields


def test_unreachable_node_keeps_rkestate_encrypted_and_reuses_ca(rke_server):
    s = rke_server
    r = s.post("/v1/environments/default/clusters", {"name": "edge", "spec": spec(closed_port())})
    assert r.status_code == 202, r.text
    op = s.wait_op(r.json()["id"], timeout=60)
    log = s.get(f"/v1/operations/{op['id']}/log").text
    assert op["state"] == "failed", f"{op}\n{log}"
    # rke's own last error line is the message; an unreachable node is worth a second attempt.
    assert op["error"].startswith("rke up failed: "), op
    assert "etcd" in op["error"], op
    assert op["attempts"] == 2, op
    # Both attempts ran rke and each stored the rkestate; the CA is the one of the first attempt.
    fps = CA_FP.findall(log)
    assert len(fps) >= 2, log
    assert len(set(fps)) == 1, fps
    assert "using cluster.rkestate from the state vault" in log, log
    # The vault holds the files of the cluster (under its id), encrypted: no PEM in clear on disk.
    cluster = s.get("/v1/environments/default/clusters/edge").json()
    live = os.path.join(s.data_dir, "state", "live", cluster["id"])
    assert os.path.isdir(live), os.listdir(os.path.join(s.data_dir, "state"))
    names = " ".join(os.listdir(live))
    assert "rkestate" in names and "cluster.yml" in names, names
    for path in state_files(s.data_dir):
        with open(path, "rb") as f:
            data = f.read()
        for marker in (b"-----BEGIN CERTIFICATE-----", b"PRIVATE KEY", b"kube-ca"):
            assert marker not in data, path
    # No key material in the operation log; the work dir is gone.
    assert "PRIVATE KEY" not in log and "BEGIN CERTIFICATE" not in log
    assert not os.listdir(os.path.join(s.data_dir, "work"))

    # A change of the spec (PUT) runs rke again on the same state: same kube-ca.
    cur = s.get("/v1/environments/default/clusters/edge")
    body = {"spec": spec(closed_port(), etcdSnapshots={"enabled": True, "intervalHours": 6, "retentionHours": 24})}
    r = s.put("/v1/environments/default/clusters/edge", body, headers={"If-Match": cur.headers.get("ETag", "*")})
    assert r.status_code == 202, r.text
    op2 = s.wait_op(r.json()["id"], timeout=60)
    log2 = s.get(f"/v1/operations/{op2['id']}/log").text
    assert op2["state"] == "failed", op2
    assert set(CA_FP.findall(log2)) == set(fps), log2

    # The cluster never came up and its node cannot be reached: delete succeeds and archives the state.
    r = s.delete("/v1/environments/default/clusters/edge")
    assert r.status_code == 202, r.text
    op3 = s.wait_op(r.json()["id"], timeout=60)
    assert op3["state"] == "succeeded", (op3, s.get(f"/v1/operations/{op3['id']}/log").text)


def test_rke_own_validation_fails_the_operation(rke_server):
    # weave passes our checks; rke 1.8 refuses it for every Kubernetes it supports.
    s = rke_server
    r = s.post("/v1/environments/default/clusters",
               {"name": "weave", "spec": spec(closed_port(), network={"plugin": "weave"})})
    assert r.status_code == 202, r.text
    op = s.wait_op(r.json()["id"], timeout=60)
    assert op["state"] == "failed", op
    assert "weave CNI support is removed" in op["error"], op
    # Not retryable: rke ran once.
    assert op["attempts"] == 1, op
    log = s.get(f"/v1/operations/{op['id']}/log").text
    assert log.count("running rke up") == 1, log


def test_missing_ssh_key_fails_with_hint(rke_server):
    s = rke_server
    body = spec(closed_port())
    body["rke"]["nodes"][0]["sshKey"] = "nokey"
    r = s.post("/v1/environments/default/clusters", {"name": "nokey", "spec": body})
    assert r.status_code == 202, r.text
    op = s.wait_op(r.json()["id"], timeout=60)
    assert op["state"] == "failed", op
    assert "sshkey create nokey" in op["error"], op
    assert op["attempts"] == 1, op
