# SPDX-License-Identifier: Apache-2.0
"""The local engine against the real helper: a real control plane with simulated nodes.

Most tests share one cluster (the `local_cluster` fixture in conftest.py); they run in file order and
each leaves it Ready.
"""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import create_local_cluster, local_helper_pids, localk8s_helper, start_local_server

PROBLEM = "application/problem+json"


def helper_version():
    return subprocess.run([localk8s_helper(), "--version"], capture_output=True, text=True,
                          check=True).stdout.strip()


def ready_nodes(kubeconfig):
    out = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "get", "nodes", "-o", "json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    nodes = json.loads(out.stdout)["items"]
    return sorted(n["metadata"]["name"] for n in nodes
                  if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"]))


def wait_for(what, check, timeout=60, interval=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = check()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def read_ready(cluster):
    try:
        with open(os.path.join(cluster.data_dir(), "ready.json")) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def field_errors(r):
    assert r.status_code == 422, r.text
    assert r.headers["Content-Type"] == PROBLEM
    return {e["field"]: e["reason"] for e in r.json()["errors"]}


def test_create_ready_with_status(local_cluster):
    c = local_cluster.get()
    assert c["status"]["phase"] == "Ready", c
    st = c["status"]
    assert st["endpoint"].startswith("https://127.0.0.1:"), st
    assert st["kubernetesVersion"] == helper_version()
    assert st["nodes"] == 3
    # The cluster's data is private to the service's user.
    assert os.stat(local_cluster.data_dir()).st_mode & 0o777 == 0o700


def test_kubeconfig_route_serves_a_working_kubeconfig(local_cluster, tmp_path):
    path = str(tmp_path / "admin.kubeconfig")
    r = local_cluster.kubeconfig(path)
    assert r.headers["Content-Type"] == "application/yaml"
    assert r.headers["Cache-Control"] == "no-store"
    assert b"client-key-data" in r.content
    assert ready_nodes(path) == ["shared-node-0", "shared-node-1", "shared-node-2"]
    # The customer kubeconfig: a token of the customer service account, no admin credential.
    r = local_cluster.server.get(local_cluster.path + "/kubeconfig/customer")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/yaml", r.text
    assert b"client-key-data" not in r.content and b"token:" in r.content


def test_deployment_gets_running_pods_on_simulated_nodes(local_cluster, tmp_path):
    path = str(tmp_path / "admin.kubeconfig")
    local_cluster.kubeconfig(path)
    kubectl = ["kubectl", "--kubeconfig", path]
    out = subprocess.run(kubectl + ["create", "deployment", "web", "--image=nginx", "--replicas=2"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr

    def running():
        out = subprocess.run(kubectl + ["get", "pods", "-l", "app=web", "-o", "json"],
                             capture_output=True, text=True, timeout=60)
        pods = json.loads(out.stdout)["items"] if out.returncode == 0 else []
        ok = [p for p in pods if p["status"].get("phase") == "Running" and p["spec"].get("nodeName")]
        return len(ok) == 2 and ok
    pods = wait_for("2 Running pods", running, timeout=90)
    assert all(p["spec"]["nodeName"].startswith("shared-node-") for p in pods)
    out = subprocess.run(kubectl + ["delete", "deployment", "web"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_scale_nodes_through_put(local_cluster, tmp_path):
    server, c = local_cluster.server, local_cluster.get()
    body = {"spec": {"engine": "local", "local": {"nodes": 5}}}
    r = server.put(local_cluster.path, body, headers={"If-Match": f'"{c["resourceVersion"]}"'})
    assert r.status_code == 202, r.text
    op = server.wait_op(r.json()["id"], timeout=150)
    assert op["state"] == "succeeded", server.get(f"/v1/operations/{op['id']}/log").text
    c = local_cluster.get()
    assert c["status"]["phase"] == "Ready" and c["status"]["nodes"] == 5
    path = str(tmp_path / "admin.kubeconfig")
    local_cluster.kubeconfig(path)
    assert wait_for("5 Ready nodes", lambda: ready_nodes(path) == [f"shared-node-{i}" for i in range(5)])


def test_service_restart_adopts_the_running_cluster(local_cluster, tmp_path):
    server = local_cluster.server
    pid = local_cluster.helper_pid()
    assert server.stop() == 0
    # The cluster outlives the service ...
    assert pid_alive(pid)
    server.start()
    # ... and the next start adopts it instead of starting another one.
    assert wait_for("adoption logged", lambda: "adopted its running helper" in server.log(), timeout=10)
    assert local_cluster.helper_pid() == pid and pid_alive(pid)
    assert local_helper_pids(server.data_dir) == [pid]
    c = local_cluster.get()
    assert c["status"]["phase"] == "Ready"
    path = str(tmp_path / "admin.kubeconfig")
    local_cluster.kubeconfig(path)
    assert len(ready_nodes(path)) == c["status"]["nodes"]


def test_supervisor_restarts_a_killed_helper(local_cluster, tmp_path):
    pid = local_cluster.helper_pid()
    os.kill(pid, signal.SIGKILL)
    wait_for("the old helper to end", lambda: not pid_alive(pid), timeout=10)

    def restarted():
        rd = read_ready(local_cluster)
        return rd and rd["pid"] != pid and pid_alive(rd["pid"]) and rd
    rd = wait_for("the supervisor to restart the helper", restarted, timeout=90)
    assert "restarting it" in local_cluster.server.log()
    assert local_helper_pids(local_cluster.server.data_dir) == [rd["pid"]]
    assert local_cluster.get()["status"]["phase"] == "Ready"
    path = str(tmp_path / "admin.kubeconfig")
    local_cluster.kubeconfig(path)
    assert wait_for("Ready nodes", lambda: len(ready_nodes(path)) == rd["nodes"])


def test_delete_stops_the_helper_and_removes_its_data(local_cluster):
    # A second, short-lived cluster on the shared server (two at most run at once).
    server = local_cluster.server
    before = set(os.listdir(os.path.join(server.data_dir, "local", "default")))
    gone = create_local_cluster(server, "gone", 1)
    (new_dir,) = set(os.listdir(os.path.join(server.data_dir, "local", "default"))) - before
    data_dir = os.path.join(server.data_dir, "local", "default", new_dir)
    with open(os.path.join(data_dir, "localk8s.pid")) as f:
        pid = int(f.read())
    assert pid_alive(pid)
    r = server.delete(gone.path)
    assert r.status_code == 202, r.text
    op = server.wait_op(r.json()["id"], timeout=90)
    assert op["state"] == "succeeded", server.get(f"/v1/operations/{op['id']}/log").text
    assert not pid_alive(pid)
    assert not os.path.exists(data_dir)
    assert server.get(gone.path).status_code == 404
    # The shared cluster is untouched.
    assert local_cluster.get()["status"]["phase"] == "Ready"
    assert pid_alive(local_cluster.helper_pid())


@pytest.mark.parametrize("spec,field", [
    ({"engine": "local", "local": {"nodes": 0}}, "spec.local.nodes"),
    ({"engine": "local", "local": {"nodes": 501}}, "spec.local.nodes"),
    ({"engine": "local", "local": {"nodes": "3"}}, "spec.local.nodes"),
    ({"engine": "local", "local": {"nodes": 1, "cpus": 2}}, "spec.local.cpus"),
    ({"engine": "local", "local": [3]}, "spec.local"),
    ({"engine": "local", "kubernetesVersion": "v1.30.1"}, "spec.kubernetesVersion"),
])
def test_local_spec_validation(make_server, spec, field):
    server = make_server(extra_args=["--localk8s-path", localk8s_helper()]).start()
    errors = field_errors(server.post("/v1/environments/default/clusters", {"name": "demo", "spec": spec}))
    assert field in errors, errors
    if field == "spec.kubernetesVersion":
        assert helper_version() in errors[field]
    assert server.get("/v1/environments/default/clusters").json()["items"] == []


def test_missing_helper_fails_with_a_build_hint(make_server, tmp_path):
    server = make_server(extra_args=["--localk8s-path", str(tmp_path / "nope" / "clustermgmt-localk8s")]).start()
    r = server.post("/v1/environments/default/clusters",
                    {"name": "demo", "spec": {"engine": "local", "local": {"nodes": 1}}})
    assert r.status_code == 202, r.text
    op = server.wait_op(r.json()["id"])
    assert op["state"] == "failed"
    assert "make localk8s" in op["error"] and "missing" in op["error"]
    assert server.get("/v1/environments/default/clusters/demo").json()["status"]["phase"] == "Failed"
    assert local_helper_pids(server.data_dir) == []


def test_helper_that_fails_to_start(make_server, tmp_path):
    """A stand-in for a helper that cannot start (the real one fails the same way on, say, a broken data
    dir): the operation fails with the helper's own error and nothing is left running."""
    fake = tmp_path / "failing-localk8s-standin"
    fake.write_text("#!/bin/sh\n"
                    "if [ \"$1\" = --version ]; then echo " + helper_version() + "; exit 0; fi\n"
                    "echo 'starting control plane' >&2\n"
                    "echo 'error: etcd: cannot open data directory: permission denied' >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    server = make_server(extra_args=["--localk8s-path", str(fake), "--max-attempts", "1"]).start()
    r = server.post("/v1/environments/default/clusters",
                    {"name": "broken", "spec": {"engine": "local", "local": {"nodes": 1}}})
    assert r.status_code == 202, r.text
    op = server.wait_op(r.json()["id"], timeout=60)
    assert op["state"] == "failed", (op, server.get(f"/v1/operations/{op['id']}/log").text)
    assert "cannot open data directory: permission denied" in op["error"], op
    assert server.get("/v1/environments/default/clusters/broken").json()["status"]["phase"] == "Failed"
    assert local_helper_pids(server.data_dir) == []
    # (the server's own command line names the stand-in too: look for the shell running it)
    assert subprocess.run(["pgrep", "-f", f"^/bin/sh {fake}"], capture_output=True).returncode != 0
