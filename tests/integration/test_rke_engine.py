# SPDX-License-Identifier: Apache-2.0
"""The rke engine against the real rke binary (./bin/rke, built by `make rke`).

Nodes point at a closed loopback port: rke validates the config, generates the certificates, writes
cluster.rkestate, then fails to reach the node. Nothing here is mocked. Further down, nodes are a real
sshd (openssh-server) on a loopback port, which lets rke log in but refuses the tunnel to Docker, and a
loopback listener that never answers SSH (sshd_node.py).
"""
import base64
import hashlib
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import REPO_ROOT, Server
from sshd_node import SilentNode, SshdNode

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


def spec(port, user="ops", key="ops", **extra):
    rke = {"nodes": [{"address": "127.0.0.1", "port": port, "user": user,
                      "roles": ["controlplane", "etcd", "worker"], "sshKey": key}]}
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
    assert not os.listdir(os.path.join(s.data_dir, "rke-runs"))

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


def pem_sha256(pem):
    der = base64.b64decode("".join(l for l in pem.splitlines() if l and not l.startswith("-----")))
    return "SHA256:" + hashlib.sha256(der).hexdigest()


def test_state_files_are_served_to_admins_and_restore_runs_rke(rke_server):
    s = rke_server
    base = "/v1/environments/default/clusters/st"
    r = s.post("/v1/environments/default/clusters", {"name": "st", "spec": spec(closed_port())})
    assert r.status_code == 202, r.text
    op = s.wait_op(r.json()["id"], timeout=60)
    log = s.get(f"/v1/operations/{op['id']}/log").text
    assert op["state"] == "failed", op
    fps = set(CA_FP.findall(log))
    assert len(fps) == 1, log

    files = {f["name"]: f for f in s.get(f"{base}/state").json()["items"]}
    assert {"cluster.rkestate", "cluster.yml"} <= set(files), files
    rk = files["cluster.rkestate"]["versions"]
    assert rk[0]["version"] >= 1 and rk[0]["size"] > 1000 and rk[0]["keyId"], rk
    assert [v["version"] for v in rk] == sorted((v["version"] for v in rk), reverse=True), rk

    r = s.get(f"{base}/state/cluster.rkestate")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.headers["X-State-Version"] == str(rk[0]["version"]) and r.headers["Cache-Control"] == "no-store"
    ca = r.json()["desiredState"]["certificatesBundle"]["kube-ca"]
    assert {pem_sha256(ca["certificatePEM"])} == fps and "PRIVATE KEY" in ca["keyPEM"]
    oldest = rk[-1]["version"]
    r = s.get(f"{base}/state/cluster.rkestate", params={"version": oldest})
    assert r.status_code == 200 and r.headers["X-State-Version"] == str(oldest), r.text
    y = s.get(f"{base}/state/cluster.yml")
    assert y.status_code == 200 and y.headers["Content-Type"].startswith("application/yaml"), y.text
    assert "127.0.0.1" in y.text
    for path, status in ((f"{base}/state/cluster.rkestate?version=999", 404),
                         (f"{base}/state/cluster.rkestate?version=0", 400),
                         (f"{base}/state/nope.yml", 404),
                         (f"{base}/state/..", 404),
                         (f"{base}/state/%2E%2E%2Fssh", 404),
                         ("/v1/environments/default/clusters/none/state", 404)):
        r = s.get(path)
        assert r.status_code == status, (path, r.status_code, r.text)
        assert "PRIVATE" not in r.text
    # Every read of a state file leaves a line in the service log (who, which file; never its bytes).
    assert "state file cluster.rkestate (version" in s.log() and "read by admin" in s.log()
    assert "BEGIN" not in s.log()

    # The CLI: a table of files, and the bytes of one (to stdout, for a file or a pipe).
    env = dict(os.environ, CLUSTERMGMT_SERVER=s.url, CLUSTERMGMT_TOKEN=s.token)
    p = subprocess.run([s.binary, "cluster", "state", "list", "st"], env=env, capture_output=True, text=True)
    assert p.returncode == 0 and "cluster.rkestate" in p.stdout, p.stdout + p.stderr
    assert p.stdout.splitlines()[0].split() == ["FILE", "VERSION", "KEPT", "SIZE", "KEY", "AGE"], p.stdout
    p = subprocess.run([s.binary, "cluster", "state", "get", "st", "cluster.rkestate", "--version", str(oldest)],
                       env=env, capture_output=True, text=True)
    assert p.returncode == 0 and "kube-ca" in p.stdout, p.stderr

    # The cluster is Failed: a snapshot is refused, a restore runs rke on the stored state (and fails
    # with rke's message: the node cannot be reached).
    r = s.post(f"{base}/snapshots", {"name": "s1"})
    assert r.status_code == 409, r.text
    r = s.post(f"{base}/restore", {"snapshot": "s1"})
    assert r.status_code == 202, r.text
    op = s.wait_op(r.json()["id"], timeout=120)
    log = s.get(f"/v1/operations/{op['id']}/log").text
    assert op["state"] == "failed" and op["error"].startswith("rke etcd snapshot-restore failed: "), (op, log)
    assert "running rke etcd snapshot-restore" in log and "using cluster.rkestate from the state vault" in log
    assert set(CA_FP.findall(log)) <= fps, log
    assert "rke overhead: prepare " in log, log


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


# --- Real sshd test nodes, canary secrets, and the service killed while rke runs ---

# rke v1.8.6, when SSH works and the node's Docker socket cannot be reached through the tunnel:
#   level=warning msg="Failed to set up SSH tunneling for host [127.0.0.1]: Can't retrieve Docker Info: ..."
DOCKER_FAILURE = "Can't retrieve Docker Info"
SSH_FAILURES = ("handshake failed", "unable to authenticate", "Failed to dial ssh", "connection refused")


@pytest.fixture
def sshd_node(tmp_path):
    """A real sshd on a loopback port. Skipped only when sshd cannot start outside CI."""
    d = tmp_path / "sshd"
    d.mkdir()
    node = SshdNode(d)
    try:
        node.start()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        reason = f"cannot start sshd for a test node: {e}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    yield node
    node.stop()


def start_rke_server(make_server, max_attempts):
    s = make_server(extra_args=["--rke-path", rke_binary(), "--max-attempts", str(max_attempts)])
    return s.start()


def record_responses(server):
    """Every HTTP response the test gets from server (bodies and headers) is appended to the returned list."""
    seen = []
    req = server.req

    def recording(method, path, **kw):
        r = req(method, path, **kw)
        seen.append(f"{method} {path} -> {r.status_code} {dict(r.headers)}\n{r.text}")
        return r

    server.req = recording
    return seen


def op_log(server, op_id):
    r = server.get(f"/v1/operations/{op_id}/log")
    assert r.status_code == 200, r.text
    return r.text


def run_against_sshd(server, node, name, key):
    body = {"name": name, "spec": spec(node.port, user=node.user, key=key)}
    r = server.post("/v1/environments/default/clusters", body)
    assert r.status_code == 202, r.text
    op = server.wait_op(r.json()["id"], timeout=60)
    return op, op_log(server, op["id"])


def assert_past_ssh(op, log, node, fingerprint):
    assert op["state"] == "failed", f"{op}\n{log}"
    assert op["error"].startswith("rke up failed: "), op
    # rke's last line only says the etcd host was dropped; the error tells why (its earlier warning).
    assert "host 127.0.0.1: SSH login worked, but Docker on the node cannot be reached" in op["error"], op
    docker_lines = [line for line in log.splitlines() if DOCKER_FAILURE in line]
    assert docker_lines, f"rke did not reach Docker on the node:\n{log}\n--- sshd:\n{node.log()}"
    for line in docker_lines:
        assert not any(f in line for f in SSH_FAILURES), line
    accepted = f"Accepted publickey for {node.user} from 127.0.0.1 port "
    logins = [line for line in node.log().splitlines() if line.startswith(accepted)]
    assert logins, node.log()
    assert all(line.endswith(fingerprint) for line in logins), logins
    # ...and over that session asked for the Docker socket, which the node refuses.
    assert "refused streamlocal port forward" in node.log() and "docker.sock" in node.log(), node.log()


def test_generated_key_gets_rke_past_ssh_on_a_real_sshd(make_server, sshd_node):
    s = start_rke_server(make_server, 1)
    r = s.post("/v1/environments/default/sshkeys", {"name": "node", "generate": True})
    assert r.status_code == 201, r.text
    key = r.json()
    assert key["publicKey"].startswith("ssh-ed25519 ") and "PRIVATE" not in r.text, r.text
    sshd_node.authorize(key["publicKey"])

    op, log = run_against_sshd(s, sshd_node, "sshd", "node")
    # rke logged in with the key the service generated, then failed at Docker (the node forbids the
    # tunnel to the Docker socket, so this holds whether or not the host runs Docker).
    assert_past_ssh(op, log, sshd_node, key["fingerprint"])
    assert "ED25519 " + key["fingerprint"] in sshd_node.log()
    assert not os.listdir(os.path.join(s.data_dir, "rke-runs"))


def private_key_canaries(pem):
    """Substrings of the private key's body that must never leave the vault, and the body itself."""
    body = "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
    raw = base64.b64decode(body)
    chunks = {body[i:i + 24] for i in range(0, len(body) - 24, 8)}
    # The armour lines and the key material in other spellings a log might use.
    chunks |= {line for line in pem.splitlines() if line and not line.startswith("-----")}
    chunks.add(raw[-70:].hex())
    return body, sorted(chunks)


def test_canary_private_key_never_leaves_the_vault(make_server, sshd_node, tmp_path):
    s = start_rke_server(make_server, 2)
    responses = record_responses(s)
    keyfile = tmp_path / "canary"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "canary", "-f", str(keyfile)], check=True)
    pem = keyfile.read_text()
    pub = (tmp_path / "canary.pub").read_text().strip()
    body, canaries = private_key_canaries(pem)
    pub_body = pub.split()[1]
    canaries = [c for c in canaries if c not in pub_body]
    assert len(canaries) > 20

    r = s.post("/v1/environments/default/sshkeys", {"name": "canary", "privateKey": pem})
    assert r.status_code == 201, r.text
    fingerprint = r.json()["fingerprint"]
    sshd_node.authorize(pub)
    for path in ("/v1/environments/default/sshkeys", "/v1/environments/default/sshkeys/canary"):
        s.get(path)

    # The key really went through the engine to rke and into an SSH login.
    op, log = run_against_sshd(s, sshd_node, "canary", "canary")
    assert_past_ssh(op, log, sshd_node, fingerprint)
    s.get("/v1/environments/default/clusters/canary")
    s.get("/v1/operations")
    # A failed request that names the key must not echo it either.
    r = s.post("/v1/environments/default/sshkeys", {"name": "canary", "privateKey": pem})
    assert r.status_code in (409, 422), r.text
    r = s.post("/v1/environments/default/sshkeys", {"name": "broken", "privateKey": pem[:-40]})
    assert r.status_code == 422, r.text
    # Destroy runs rke remove with the key as well.
    r = s.delete("/v1/environments/default/clusters/canary")
    assert r.status_code == 202, r.text
    op2 = s.wait_op(r.json()["id"], timeout=60)
    log2 = op_log(s, op2["id"])

    texts = {"server log": s.log(), "operation log": log, "destroy log": log2}
    texts.update({f"response {i}": t for i, t in enumerate(responses)})
    for where, text in texts.items():
        assert "PRIVATE KEY" not in text, where
        assert body not in text, where
        leaked = [c for c in canaries if c in text]
        assert not leaked, f"{where} holds key material {leaked[:3]}:\n{text}"
    for path in state_files(s.data_dir):
        with open(path, "rb") as f:
            data = f.read()
        for marker in (b"PRIVATE KEY", b"BEGIN CERTIFICATE", b"openssh-key-v1"):
            assert marker not in data, (path, marker)
        assert not [c for c in canaries if c.encode() in data], path


def rke_pids(data_dir):
    """rke processes of a server on data_dir (their command line names its work dir)."""
    out = subprocess.run(["pgrep", "-f", os.path.join(data_dir, "rke-runs") + "/"], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


def wait_for(what, predicate, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_service_killed_during_rke_up_resumes_with_same_ca(make_server):
    node = SilentNode()
    s = start_rke_server(make_server, 3)
    stray, doubled = set(), set()
    try:
        assert s.post("/v1/environments/default/sshkeys", {"name": "ops", "generate": True}).status_code == 201
        # 1. The node drops every connection: rke fails fast and the rkestate (with the CA) is stored.
        node.close_all()
        r = s.post("/v1/environments/default/clusters", {"name": "killed", "spec": spec(node.port)})
        assert r.status_code == 202, r.text
        op = s.wait_op(r.json()["id"], timeout=60)
        log = op_log(s, op["id"])
        assert op["state"] == "failed", f"{op}\n{log}"
        fps = set(CA_FP.findall(log))
        assert len(fps) == 1, log
        fp = fps.pop()

        # 2. The node now accepts and never answers: the next rke up hangs in the SSH handshake.
        node.hold()
        accepted = node.accepted
        cur = s.get("/v1/environments/default/clusters/killed")
        body = {"spec": spec(node.port, etcdSnapshots={"enabled": True, "intervalHours": 6, "retentionHours": 24})}
        r = s.put("/v1/environments/default/clusters/killed", body, headers={"If-Match": cur.headers.get("ETag", "*")})
        assert r.status_code == 202, r.text
        op_id = r.json()["id"]
        wait_for("rke to dial the silent node", lambda: node.accepted > accepted, 30)
        running = s.get(f"/v1/operations/{op_id}").json()
        assert running["state"] == "running", running
        before = op_log(s, op_id)
        assert f"using cluster.rkestate from the state vault (kube-ca {fp})" in before, before
        assert rke_pids(s.data_dir), before

        # 3. SIGKILL the service while rke waits in the handshake.
        s.kill()
        time.sleep(2)
        stray = rke_pids(s.data_dir)

        # 4. Restart on the same data dir (the node still silent): the operation is taken over once its
        # lease expires and rke runs again. At that moment no rke of the killed service may be running.
        accepted = node.accepted
        s.start()
        wait_for("the resumed attempt's rke to dial the node", lambda: node.accepted > accepted, 30)
        doubled = stray & rke_pids(s.data_dir)
        node.close_all()  # the node now fails fast: the resumed attempt ends
        op = s.wait_op(op_id, timeout=60)
        log = op_log(s, op_id)
        assert op["state"] == "failed", f"{op}\n{log}"
        assert op["error"].startswith("rke up failed: "), op
        after = log[len(before):]
        assert re.search(r"attempt \d+ of 3 started by", after), log
        # The resumed attempt used the CA stored before the kill; no other CA was ever stored.
        assert f"using cluster.rkestate from the state vault (kube-ca {fp})" in after, log
        assert set(CA_FP.findall(log)) == {fp}, log
        wait_for("every rke to end", lambda: not rke_pids(s.data_dir), 10)
        assert not os.listdir(os.path.join(s.data_dir, "rke-runs"))
    finally:
        node.stop()
        for pid in stray | rke_pids(s.data_dir):  # only rke runs of this test's server
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    # rke dies with the service that started it (PR_SET_PDEATHSIG): the restarted service never runs a
    # second rke beside a leftover one for the same cluster.
    assert not doubled, f"rke {sorted(doubled)} of the killed service still ran when rke was started again"
