# SPDX-License-Identifier: Apache-2.0
"""The rke engine through the API on SUCCESSFUL rke runs, with a stand-in for the rke binary.

A real `rke up` needs machines that run Docker, which the test hosts do not have; every test against
the real binary (test_rke_engine.py) ends in a failed run. Here the service runs
tests/support/rke-standin (a stand-in for rke v1.8.6, for tests only: see its header for what it
imitates and what not) as `--rke-path`. The stand-in writes the files rke writes (cluster.rkestate with
real certificates made by openssl, kube_config_cluster.yml), keeps simulated nodes next to itself and
journals every invocation (argv, the work dir's files and modes, what it wrote), so each test copies it
into its own tmp dir.

Everything else is real: the service, its store, the encrypted vault on disk, the work dirs.
"""
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO_ROOT, Server

STANDIN = os.path.join(REPO_ROOT, "tests", "support", "rke-standin")
CA_FP = re.compile(r"kube-ca (SHA256:[0-9a-f]{64})")
DEFAULT_VERSION = "v1.32.7-rancher1-1"  # rke v1.8.6's default, as `rke config --list-version` prints it
CANARY_ENV = "CM_STANDIN_CANARY_SECRET"


class Standin:
    """A copy of the stand-in in a directory of its own: its journal and simulated nodes live there."""

    def __init__(self, directory):
        self.dir = str(directory)
        self.path = os.path.join(self.dir, "rke-standin")
        shutil.copy2(STANDIN, self.path)
        os.chmod(self.path, 0o755)

    def journal(self, command=None):
        """The invocations (newest last); command "up", "remove", "etcd snapshot-save", ... filters."""
        path = os.path.join(self.dir, "standin-journal.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            entries = [json.loads(line) for line in f if line.strip()]
        if command:
            words = command.split()
            entries = [e for e in entries if e["argv"][1:1 + len(words)] == words]
        return entries

    def node(self, address, port=22):
        """A simulated node's state (None when it runs no cluster)."""
        try:
            with open(os.path.join(self.dir, "standin-nodes", f"{address}_{port}", "node.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def snapshots(self, address, port=22):
        d = os.path.join(self.dir, "standin-nodes", f"{address}_{port}", "etcd-snapshots")
        return sorted(n[:-len(".json")] for n in os.listdir(d)) if os.path.isdir(d) else []


@pytest.fixture
def standin(tmp_path):
    d = tmp_path / "standin"
    d.mkdir()
    return Standin(d)


def start(make_server, standin, max_attempts=2):
    # A variable of the service's own environment that rke must never see.
    s = make_server(extra_args=["--rke-path", standin.path, "--max-attempts", str(max_attempts)],
                    env={CANARY_ENV: "do-not-pass-me-on"})
    s.start()
    r = s.post("/v1/environments/default/sshkeys", {"name": "ops", "generate": True})
    assert r.status_code == 201, r.text
    # The stand-in's nodes run no Kubernetes: the service cannot configure customer access there.
    r = s.put("/v1/environments/default/customer-access", {"enabled": False})
    assert r.status_code == 200, r.text
    return s


@pytest.fixture
def rke(make_server, standin):
    return start(make_server, standin)


def node(address, *roles, key="ops"):
    return {"address": address, "user": "ubuntu", "roles": list(roles), "sshKey": key}


# Documentation addresses (RFC 5737): nothing real is ever dialled.
A, B, C, D = "192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.13"
THREE = [node(A, "controlplane", "etcd"), node(B, "etcd", "worker"), node(C, "worker")]


def rke_spec(nodes, **extra):
    rke = {"nodes": nodes}
    rke.update(extra)
    return {"engine": "rke", "rke": rke}


def op_log(s, op_id):
    r = s.get(f"/v1/operations/{op_id}/log")
    assert r.status_code == 200, r.text
    return r.text


def wait_ok(s, r, timeout=90):
    """The operation a 202 answer started, after it succeeded (its log in the failure message)."""
    assert r.status_code == 202, r.text
    op = s.wait_op(r.json()["id"], timeout=timeout)
    assert op["state"] == "succeeded", f"{op}\n{op_log(s, op['id'])}"
    return op


def create(s, name, nodes, **extra):
    r = s.post("/v1/environments/default/clusters", {"name": name, "spec": rke_spec(nodes, **extra)})
    return wait_ok(s, r)


def cluster(s, name):
    r = s.get(f"/v1/environments/default/clusters/{name}")
    assert r.status_code == 200, r.text
    return r.json()


def kubeconfig(s, name):
    r = s.get(f"/v1/environments/default/clusters/{name}/kubeconfig")
    assert r.status_code == 200, r.text
    return r.content


def pem_fingerprint(pem):
    der = base64.b64decode("".join(l for l in pem.strip().splitlines() if not l.startswith("-----")))
    return "SHA256:" + hashlib.sha256(der).hexdigest()


def kubeconfig_fields(data):
    """(server, CA PEM, client cert PEM) of rke's kubeconfig template (one cluster, one user)."""
    text = data.decode()
    server = re.search(r'^\s+server: "([^"]+)"$', text, re.M).group(1)
    ca = base64.b64decode(re.search(r"^\s+certificate-authority-data: (\S+)$", text, re.M).group(1)).decode()
    crt = base64.b64decode(re.search(r"^\s+client-certificate-data: (\S+)$", text, re.M).group(1)).decode()
    return server, ca, crt


def state_files(data_dir):
    for root, _, files in os.walk(os.path.join(data_dir, "state")):
        for f in files:
            yield os.path.join(root, f)


def assert_vault_encrypted(s):
    found = 0
    for path in state_files(s.data_dir):
        found += 1
        with open(path, "rb") as f:
            data = f.read()
        for marker in (b"-----BEGIN", b"PRIVATE KEY", b"kube-ca", b"certificate-authority-data", b"certificatesBundle",
                       b"192.0.2."):
            assert marker not in data, (path, marker)
    assert found, "nothing in the vault"


def live_names(s, cluster_id):
    live = os.path.join(s.data_dir, "state", "live", cluster_id)
    return set(os.listdir(live)) if os.path.isdir(live) else set()


def rke_runs(s):
    d = os.path.join(s.data_dir, "rke-runs")
    return os.listdir(d) if os.path.isdir(d) else []


def assert_work_dir(entry, s, op_id):
    """What the journal saw of the work dir rke ran in: the service's layout, private modes, no leaks."""
    work = os.path.join(s.data_dir, "rke-runs", op_id)
    assert entry["configDir"] == work, entry
    assert entry["argv"][-2:] == ["--config", os.path.join(work, "cluster.yml")], entry["argv"]
    assert entry["home"] == work, entry
    assert CANARY_ENV not in entry["env"] and "CM_TEST_ENGINE_JOURNAL" not in entry["env"], entry["env"]
    files = entry["files"]
    assert files.get("cluster.yml") == "0600", files
    assert files.get("ssh") == "0700", files
    assert files.get("ssh/ops") == "0600", files


def test_create_ready_with_kubeconfig_encrypted_state_and_clean_work_dir(rke, standin):
    s = rke
    op = create(s, "alpha", THREE)
    assert op["type"] == "create" and op["attempts"] == 1, op
    log = op_log(s, op["id"])

    # The cluster is Ready with what the engine observed.
    c = cluster(s, "alpha")
    st = c["status"]
    assert st["phase"] == "Ready", c
    assert st["endpoint"] == f"https://{A}:6443", st
    assert st["kubernetesVersion"] == DEFAULT_VERSION, st
    assert st["nodes"] == 3, st

    # rke ran once, in the op's work dir: key 0600 under ssh/ (0700), cluster.yml 0600, no variable of ours.
    ups = standin.journal("up")
    assert len(ups) == 1, standin.journal()
    assert ups[0]["exit"] == 0, ups
    assert_work_dir(ups[0], s, op["id"])
    # ...and the work dir is gone afterwards.
    assert rke_runs(s) == [], rke_runs(s)

    # The admin kubeconfig is the very file the stand-in wrote.
    kc = kubeconfig(s, "alpha")
    assert hashlib.sha256(kc).hexdigest() == ups[0]["wrote"]["kube_config_cluster.yml"]
    server, ca, crt = kubeconfig_fields(kc)
    assert server == st["endpoint"]
    fps = set(CA_FP.findall(log))
    assert fps == {pem_fingerprint(ca)}, log
    # The simulated nodes run this cluster with that CA.
    for address in (A, B, C):
        n = standin.node(address)
        assert n and n["cluster"] == "alpha" and n["kubeCA"] == pem_fingerprint(ca), (address, n)
    # The client certificate is signed by the CA (real X.509 from openssl).
    d = s.data_dir
    with open(os.path.join(d, "ca.pem"), "w") as f:
        f.write(ca)
    with open(os.path.join(d, "admin.pem"), "w") as f:
        f.write(crt)
    v = subprocess.run(["openssl", "verify", "-CAfile", os.path.join(d, "ca.pem"), os.path.join(d, "admin.pem")],
                       capture_output=True, text=True)
    os.unlink(os.path.join(d, "ca.pem"))
    os.unlink(os.path.join(d, "admin.pem"))
    assert v.returncode == 0, v.stdout + v.stderr

    # The state files are in the vault, encrypted on disk; no key material in the operation log.
    names = live_names(s, c["id"])
    assert {"cluster.yml", "cluster.rkestate", "kube_config_cluster.yml"} <= names, names
    assert_vault_encrypted(s)
    assert "PRIVATE KEY" not in log and "BEGIN CERTIFICATE" not in log, log
    assert "rke: " in log and "Finished building Kubernetes cluster successfully" in log, log


def test_changed_spec_runs_rke_up_again_with_the_same_ca(rke, standin):
    s = rke
    op = create(s, "grow", THREE[:2])
    fps = set(CA_FP.findall(op_log(s, op["id"])))
    assert len(fps) == 1, fps
    kc1 = kubeconfig(s, "grow")
    assert standin.node(C) is None

    cur = s.get("/v1/environments/default/clusters/grow")
    r = s.put("/v1/environments/default/clusters/grow", {"spec": rke_spec(THREE)},
              headers={"If-Match": cur.headers.get("ETag", "*")})
    op2 = wait_ok(s, r)
    assert op2["type"] == "update", op2
    log2 = op_log(s, op2["id"])
    # The second run started from the stored rkestate and kept its kube-ca.
    assert f"using cluster.rkestate from the state vault (kube-ca {fps.pop()})" in log2, log2
    assert len(set(CA_FP.findall(log2))) == 1, log2

    ups = standin.journal("up")
    assert len(ups) == 2, standin.journal()
    assert_work_dir(ups[1], s, op2["id"])
    # The second work dir had the rkestate and kubeconfig of the first run, private.
    assert ups[1]["files"].get("cluster.rkestate") == "0600", ups[1]["files"]
    assert ups[1]["files"].get("kube_config_cluster.yml") == "0600", ups[1]["files"]
    c = cluster(s, "grow")
    assert c["status"]["phase"] == "Ready" and c["status"]["nodes"] == 3, c
    assert standin.node(C)["cluster"] == "grow"
    kc2 = kubeconfig(s, "grow")
    assert kubeconfig_fields(kc2)[1] == kubeconfig_fields(kc1)[1]
    assert hashlib.sha256(kc2).hexdigest() == ups[1]["wrote"]["kube_config_cluster.yml"]
    assert rke_runs(s) == []


def test_delete_runs_rke_remove_and_archives_the_state(rke, standin):
    s = rke
    create(s, "gone", THREE)
    cid = cluster(s, "gone")["id"]
    assert "cluster.rkestate" in live_names(s, cid)

    r = s.delete("/v1/environments/default/clusters/gone")
    op = wait_ok(s, r)
    assert op["type"] == "delete", op
    log = op_log(s, op["id"])
    removes = standin.journal("remove")
    assert len(removes) == 1 and removes[0]["exit"] == 0, standin.journal()
    assert removes[0]["argv"][:3] == ["rke", "remove", "--force"], removes
    assert_work_dir(removes[0], s, op["id"])
    # rke remove had the cluster's files to work with, and deleted them as rke does.
    assert removes[0]["files"].get("cluster.rkestate") == "0600", removes[0]["files"]
    assert removes[0]["wrote"] == {"cluster.rkestate": None, "kube_config_cluster.yml": None}, removes[0]
    assert "Cluster removed successfully" in log, log
    for address in (A, B, C):
        assert standin.node(address) is None, address

    # The record is gone, the state is archived (not destroyed), still encrypted.
    assert s.get("/v1/environments/default/clusters/gone").status_code == 404
    assert not live_names(s, cid)
    archive = os.path.join(s.data_dir, "state", "archive")
    archived = [d for d in os.listdir(archive) if d.startswith(cid + "@")]
    assert len(archived) == 1, os.listdir(archive)
    kept = set(os.listdir(os.path.join(archive, archived[0])))
    assert {"cluster.yml", "cluster.rkestate", "kube_config_cluster.yml"} <= kept, kept
    assert "state files archived" in log, log
    assert_vault_encrypted(s)
    assert rke_runs(s) == []


def test_unreachable_node_fails_with_rkes_message_and_keeps_the_rkestate(rke, standin):
    s = rke
    nodes = [node(A, "controlplane", "etcd"), node("fail.standin.invalid", "worker")]
    r = s.post("/v1/environments/default/clusters", {"name": "broken", "spec": rke_spec(nodes)})
    assert r.status_code == 202, r.text
    op = s.wait_op(r.json()["id"], timeout=90)
    log = op_log(s, op["id"])
    assert op["state"] == "failed", f"{op}\n{log}"
    # The message is the stand-in's fatal line, as rke words it.
    assert op["error"].startswith("rke up failed: "), op
    assert ("Provisioning incomplete, host(s) [fail.standin.invalid] skipped because they could not be contacted"
            in op["error"]), op
    # An unreachable node is worth another attempt; both used one kube-ca (the second from the vault).
    assert op["attempts"] == 2, op
    ups = standin.journal("up")
    assert len(ups) == 2 and all(u["exit"] == 1 for u in ups), standin.journal()
    fps = CA_FP.findall(log)
    assert len(fps) >= 2 and len(set(fps)) == 1, log
    assert "using cluster.rkestate from the state vault" in log, log
    c = cluster(s, "broken")
    assert c["status"]["phase"] == "Failed", c
    # What rke wrote before failing is kept, encrypted; the work dirs are gone.
    names = live_names(s, c["id"])
    assert "cluster.rkestate" in names, names
    assert_vault_encrypted(s)
    assert rke_runs(s) == []


# --- snapshot, restore, rotate-certs (skipped until the service has their routes) ---

@pytest.fixture(scope="module")
def lifecycle_routes(binary, tmp_path_factory):
    """Whether the service answers the snapshot/restore/rotate-certs routes (anything but 404/405 on an
    existing cluster). Probed once per module on a server of its own with the test engine."""
    s = Server(binary, str(tmp_path_factory.mktemp("routes-probe"))).start()
    try:
        r = s.post("/v1/environments/default/clusters", {"name": "probe", "spec": {"engine": "test"}})
        assert r.status_code == 202, r.text
        s.wait_op(r.json()["id"], timeout=60)
        base = "/v1/environments/default/clusters/probe"
        answers = {
            "GET snapshots": s.get(base + "/snapshots").status_code,
            # Bodies the handlers must refuse, so that the probe starts no operation.
            "POST snapshots": s.post(base + "/snapshots", {"name": 1}).status_code,
            "POST restore": s.post(base + "/restore", {"snapshot": 1}).status_code,
            "POST rotate-certs": s.post(base + "/rotate-certs", {"rotateCA": "no"}).status_code,
        }
    finally:
        assert s.stop() == 0, s.log()
    return {k: v for k, v in answers.items() if v in (404, 405)}


@pytest.fixture
def ops_rke(lifecycle_routes, rke):
    if lifecycle_routes:
        pytest.skip(f"snapshot/restore/rotate-certs are not served yet: {lifecycle_routes}")
    return rke


def post_op(s, name, action, body, op_type):
    r = s.post(f"/v1/environments/default/clusters/{name}/{action}", body)
    assert r.status_code == 202, r.text
    assert r.json()["type"] == op_type, r.json()
    return wait_ok(s, r)


def stored_ca(s, op_id):
    """The kube-ca of the rkestate the operation stored last (the engine logs its fingerprint)."""
    log = op_log(s, op_id)
    stored = re.findall(r"stored cluster\.rkestate in the state vault \([^)]*kube-ca (SHA256:[0-9a-f]{64})\)", log)
    assert stored, log
    return stored[-1]


def test_snapshot_then_restore(ops_rke, standin):
    s = ops_rke
    op = create(s, "snap", THREE)
    ca = set(CA_FP.findall(op_log(s, op["id"])))

    snap = post_op(s, "snap", "snapshots", {"name": "before-upgrade"}, "snapshot")
    saves = standin.journal("etcd snapshot-save")
    assert len(saves) == 1 and saves[0]["exit"] == 0, standin.journal()
    argv = saves[0]["argv"]
    assert argv[argv.index("--name") + 1] == "before-upgrade", argv
    assert_work_dir(saves[0], s, snap["id"])
    assert saves[0]["files"].get("cluster.rkestate") == "0600", saves[0]["files"]
    # The etcd nodes hold it (A and B run etcd, C does not).
    assert standin.snapshots(A) == ["before-upgrade"] and standin.snapshots(B) == ["before-upgrade"]
    assert standin.snapshots(C) == []

    # Without a name the service picks one, and lists both.
    unnamed = post_op(s, "snap", "snapshots", {}, "snapshot")
    argv = standin.journal("etcd snapshot-save")[-1]["argv"]
    picked = argv[argv.index("--name") + 1]
    assert picked and picked != "before-upgrade", argv
    r = s.get("/v1/environments/default/clusters/snap/snapshots")
    assert r.status_code == 200, r.text
    items = {i["name"]: i for i in r.json()["items"]}
    assert set(items) == {"before-upgrade", picked}, items
    assert items["before-upgrade"]["operation"] == snap["id"] and items[picked]["operation"] == unnamed["id"]
    for i in items.values():
        assert re.match(r"\d{4}-\d\d-\d\dT", i["createdAt"]), items

    restore = post_op(s, "snap", "restore", {"snapshot": "before-upgrade"}, "restore")
    restores = standin.journal("etcd snapshot-restore")
    assert len(restores) == 1 and restores[0]["exit"] == 0, standin.journal()
    argv = restores[0]["argv"]
    assert argv[argv.index("--name") + 1] == "before-upgrade", argv
    assert_work_dir(restores[0], s, restore["id"])
    log = op_log(s, restore["id"])
    assert "Finished restoring snapshot [before-upgrade] on all etcd hosts" in log, log
    # rke rewrote both files; the service stored them (same CA: none was rotated in between).
    assert set(CA_FP.findall(log)) == ca, log
    kc = kubeconfig(s, "snap")
    assert hashlib.sha256(kc).hexdigest() == restores[0]["wrote"]["kube_config_cluster.yml"]
    assert cluster(s, "snap")["status"]["phase"] == "Ready"
    assert rke_runs(s) == []
    assert_vault_encrypted(s)


def test_restore_of_an_unknown_snapshot_fails_with_rkes_message(ops_rke, standin):
    s = ops_rke
    create(s, "nosnap", THREE)
    r = s.post("/v1/environments/default/clusters/nosnap/restore", {"snapshot": "never-taken"})
    assert r.status_code == 202, r.text
    assert r.json()["type"] == "restore", r.json()
    op = s.wait_op(r.json()["id"], timeout=90)
    log = op_log(s, op["id"])
    assert op["state"] == "failed", f"{op}\n{log}"
    assert op["error"].startswith("rke etcd snapshot-restore failed: "), op
    assert "snapshot [never-taken] does not exist on host" in op["error"], op
    restores = standin.journal("etcd snapshot-restore")
    assert restores and all(e["exit"] == 1 for e in restores), standin.journal()
    argv = restores[0]["argv"]
    assert argv[argv.index("--name") + 1] == "never-taken", argv
    assert rke_runs(s) == []
    # rke emptied the state's currentState before it found no snapshot, but touched no node: the
    # service stores the state from before again, and the cluster stays Ready and manageable.
    assert "failed before it changed any node" in log, log
    c = cluster(s, "nosnap")
    assert c["status"]["phase"] == "Ready", c
    state = s.get("/v1/environments/default/clusters/nosnap/state/cluster.rkestate").json()
    assert state.get("currentState"), "the stored rkestate lost its current state"
    rot = post_op(s, "nosnap", "rotate-certs", {}, "rotate-certs")
    assert rot["state"] == "succeeded", rot


def test_rotate_certs_keeps_or_renews_the_ca(ops_rke, standin):
    s = ops_rke
    op = create(s, "rot", THREE)
    (ca,) = set(CA_FP.findall(op_log(s, op["id"])))
    kc0 = kubeconfig(s, "rot")

    # Without rotateCA: new leaf certificates, same kube-ca; the stored kubeconfig changes.
    rot = post_op(s, "rot", "rotate-certs", {"rotateCA": False, "services": []}, "rotate-certs")
    last = standin.journal("cert rotate")[-1]
    assert last["exit"] == 0 and "--rotate-ca" not in last["argv"] and "--service" not in last["argv"], last
    assert_work_dir(last, s, rot["id"])
    assert set(CA_FP.findall(op_log(s, rot["id"]))) == {ca}
    assert stored_ca(s, rot["id"]) == ca
    kc1 = kubeconfig(s, "rot")
    assert kc1 != kc0
    assert hashlib.sha256(kc1).hexdigest() == last["wrote"]["kube_config_cluster.yml"]
    assert kubeconfig_fields(kc1)[1] == kubeconfig_fields(kc0)[1]  # same CA
    assert kubeconfig_fields(kc1)[2] != kubeconfig_fields(kc0)[2]  # new client certificate

    # One service only: rke gets --service.
    post_op(s, "rot", "rotate-certs", {"rotateCA": False, "services": ["kube-apiserver"]}, "rotate-certs")
    argv = standin.journal("cert rotate")[-1]["argv"]
    assert argv[argv.index("--service") + 1] == "kube-apiserver" and "--rotate-ca" not in argv, argv

    # With rotateCA: a new kube-ca, in the vault and in the kubeconfig.
    rot2 = post_op(s, "rot", "rotate-certs", {"rotateCA": True, "services": []}, "rotate-certs")
    last = standin.journal("cert rotate")[-1]
    assert "--rotate-ca" in last["argv"], last
    new_ca = stored_ca(s, rot2["id"])
    assert new_ca != ca
    kc2 = kubeconfig(s, "rot")
    assert pem_fingerprint(kubeconfig_fields(kc2)[1]) == new_ca
    assert hashlib.sha256(kc2).hexdigest() == last["wrote"]["kube_config_cluster.yml"]
    assert standin.node(A)["kubeCA"] == new_ca
    assert cluster(s, "rot")["status"]["phase"] == "Ready"

    # A later rke up starts from the rotated state: the new CA is kept.
    cur = s.get("/v1/environments/default/clusters/rot")
    r = s.put("/v1/environments/default/clusters/rot", {"spec": rke_spec(THREE + [node(D, "worker")])},
              headers={"If-Match": cur.headers.get("ETag", "*")})
    up = wait_ok(s, r)
    assert set(CA_FP.findall(op_log(s, up["id"]))) == {new_ca}
    assert rke_runs(s) == []
    assert_vault_encrypted(s)


def test_restore_brings_back_the_snapshots_ca(ops_rke, standin):
    s = ops_rke
    op = create(s, "back", THREE)
    (ca,) = set(CA_FP.findall(op_log(s, op["id"])))
    post_op(s, "back", "snapshots", {"name": "old-ca"}, "snapshot")
    rot = post_op(s, "back", "rotate-certs", {"rotateCA": True, "services": []}, "rotate-certs")
    assert stored_ca(s, rot["id"]) != ca

    # rke restores the rkestate bundled with the snapshot: the CA of that time comes back.
    restore = post_op(s, "back", "restore", {"snapshot": "old-ca"}, "restore")
    assert stored_ca(s, restore["id"]) == ca
    assert pem_fingerprint(kubeconfig_fields(kubeconfig(s, "back"))[1]) == ca
