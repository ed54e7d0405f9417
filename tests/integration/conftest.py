# SPDX-License-Identifier: Apache-2.0
"""Fixtures that run the real clustermgmt binary (with the test engine compiled in) over HTTP."""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import requests


def pytest_addoption(parser):
    parser.addoption("--binary", required=True, help="clustermgmt-testbin to drive")
    parser.addoption("--valgrind", action="store_true", help="run the server under valgrind memcheck")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `clustermgmt serve` process on a data dir of its own."""

    def __init__(self, binary, data_dir, valgrind=False, extra_args=(), env=None):
        self.binary = binary
        self.data_dir = data_dir
        self.valgrind = valgrind
        self.extra_args = list(extra_args)
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.journal = os.path.join(data_dir, "engine-journal.txt")
        self.env["CM_TEST_ENGINE_JOURNAL"] = self.journal
        self.port = None
        self.proc = None
        self.log_path = os.path.join(data_dir, "serve.log")
        self.session = requests.Session()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=60):
        self.port = free_port()
        cmd = [self.binary, "serve", "--data-dir", self.data_dir, "--listen", f"127.0.0.1:{self.port}",
               "--lease-seconds", "2", "--retry-base-ms", "100", "--retry-max-seconds", "1",
               "--poll-ms", "100", "--shutdown-grace-seconds", "1"] + self.extra_args
        if self.valgrind:
            cmd = ["valgrind", "--error-exitcode=99", "--leak-check=full", "--errors-for-leak-kinds=definite",
                   "--track-fds=no", "-q"] + cmd
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + (timeout * (5 if self.valgrind else 1))
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.05)
        else:
            raise RuntimeError("serve did not become ready:\n" + self.log())
        with open(os.path.join(self.data_dir, "admin.token")) as f:
            self.token = f.read().strip()
        self.session.headers["Authorization"] = f"Bearer {self.token}"
        return self

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout * (5 if self.valgrind else 1))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError("serve did not stop on SIGTERM:\n" + self.log())
        rc = self.proc.returncode
        self.proc = None
        self.logf.close()
        return rc

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        self.logf.close()

    # HTTP helpers
    def req(self, method, path, **kw):
        kw.setdefault("timeout", 30)
        return self.session.request(method, self.url + path, **kw)

    def get(self, path, **kw):
        return self.req("GET", path, **kw)

    def post(self, path, body=None, **kw):
        if body is not None and "data" not in kw:
            kw["json"] = body
        return self.req("POST", path, **kw)

    def put(self, path, body=None, **kw):
        if body is not None and "data" not in kw:
            kw["json"] = body
        return self.req("PUT", path, **kw)

    def delete(self, path, **kw):
        return self.req("DELETE", path, **kw)

    def create_cluster(self, name, test=None, env="default", labels=None):
        spec = {"engine": "test"}
        if test is not None:
            spec["test"] = test
        body = {"name": name, "spec": spec}
        if labels:
            body["labels"] = labels
        r = self.post(f"/v1/environments/{env}/clusters", body)
        assert r.status_code == 202, r.text
        return r.json()

    def wait_op(self, op_id, timeout=60, states=("succeeded", "failed", "cancelled")):
        deadline = time.time() + timeout
        while time.time() < deadline:
            op = self.get(f"/v1/operations/{op_id}").json()
            if op["state"] in states:
                return op
            time.sleep(0.05)
        raise AssertionError(f"operation {op_id} did not reach {states}: {op}")

    def journal_lines(self):
        if not os.path.exists(self.journal):
            return []
        with open(self.journal) as f:
            return [line.split() for line in f if line.strip()]


@pytest.fixture(scope="session")
def binary(request):
    return os.path.abspath(request.config.getoption("--binary"))


@pytest.fixture
def make_server(binary, request, tmp_path):
    """Starts servers; each is stopped at the end and must exit cleanly (sanitizers report by exit code)."""
    servers = []

    def make(data_dir=None, **kw):
        d = data_dir or tempfile.mkdtemp(dir=tmp_path)
        s = Server(binary, d, valgrind=request.config.getoption("--valgrind"), **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        if s.proc:
            rc = s.stop()
            assert rc == 0, f"serve exited with {rc}:\n{s.log()}"


@pytest.fixture
def server(make_server):
    return make_server().start()


# --- The local engine: one real local cluster shared by the tests that need one. ---

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LOCALK8S = os.path.join(REPO_ROOT, "bin", "clustermgmt-localk8s")


def localk8s_helper():
    """The helper binary, or a skip (a failure in CI, which must not skip silently)."""
    if os.access(LOCALK8S, os.X_OK):
        return LOCALK8S
    reason = f"{LOCALK8S} is missing: build it with `make localk8s` (scripts/build-localk8s.sh)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def local_helper_pids(data_dir):
    """Pids of helpers running on clusters under data_dir."""
    out = subprocess.run(["pgrep", "-f", os.path.join(data_dir, "local") + "/"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def stop_local_helpers(data_dir):
    """Kills helpers left running under data_dir; returns the pids it found."""
    pids = local_helper_pids(data_dir)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def finish_module_cluster(server, cluster_path, created, data_dir):
    """The end of a module that shares one server and one local cluster: deletes the cluster (when it was
    created and the server still runs), stops the server, kills helpers left running; fails with what
    went wrong."""
    problems = []
    if created and server.proc:
        r = server.delete(cluster_path)
        if r.status_code == 202:
            op = server.wait_op(r.json()["id"], timeout=90)
            if op["state"] != "succeeded":
                problems.append(f"delete failed: {op}")
    rc = server.stop()
    if rc not in (0, None):
        problems.append(f"serve exited with {rc}:\n{server.log()[-4000:]}")
    leftovers = stop_local_helpers(data_dir)
    if leftovers:
        problems.append(f"helpers left running: {leftovers}")
    assert not problems, problems


class LocalCluster:
    """A local cluster created through the API of its own server."""

    def __init__(self, server, name, env="default"):
        self.server = server
        self.name = name
        self.env = env

    @property
    def path(self):
        return f"/v1/environments/{self.env}/clusters/{self.name}"

    def get(self):
        r = self.server.get(self.path)
        assert r.status_code == 200, r.text
        return r.json()

    def data_dir(self):
        base = os.path.join(self.server.data_dir, "local", self.env)
        dirs = [os.path.join(base, d) for d in os.listdir(base)] if os.path.isdir(base) else []
        assert len(dirs) == 1, dirs
        return dirs[0]

    def helper_pid(self):
        with open(os.path.join(self.data_dir(), "localk8s.pid")) as f:
            return int(f.read().strip())

    def kubeconfig(self, path):
        r = self.server.get(self.path + "/kubeconfig")
        assert r.status_code == 200, r.text
        with open(path, "wb") as f:
            f.write(r.content)
        os.chmod(path, 0o600)
        return r


def start_local_server(binary, data_dir, valgrind=False):
    return Server(binary, data_dir, valgrind=valgrind, extra_args=["--localk8s-path", localk8s_helper()]).start()


def create_local_cluster(server, name, nodes, timeout=150):
    r = server.post("/v1/environments/default/clusters",
                    {"name": name, "spec": {"engine": "local", "local": {"nodes": nodes}}})
    assert r.status_code == 202, r.text
    op = server.wait_op(r.json()["id"], timeout=timeout)
    log = server.get(f"/v1/operations/{op['id']}/log").text
    assert op["state"] == "succeeded", f"{op}\n{log}\n{server.log()}"
    return LocalCluster(server, name)


@pytest.fixture(scope="session")
def local_cluster(binary, request, tmp_path_factory):
    """One local cluster (3 nodes) on a server of its own, shared by every test that needs a real cluster.

    Tests may change it (scale, restart the server, kill the helper) but must leave it Ready. At the end
    the cluster is deleted through the API and no helper may be left running.
    """
    helper = localk8s_helper()
    assert helper
    data_dir = str(tmp_path_factory.mktemp("local-cluster"))
    server = start_local_server(binary, data_dir, valgrind=request.config.getoption("--valgrind"))
    cluster = None
    try:
        cluster = create_local_cluster(server, "shared", 3)
        yield cluster
    finally:
        problems = []
        if server.proc is None:
            server.start()
        if cluster is not None:
            r = server.delete(cluster.path)
            if r.status_code == 202:
                op = server.wait_op(r.json()["id"], timeout=90)
                if op["state"] != "succeeded":
                    problems.append(f"delete failed: {op}")
        rc = server.stop()
        if rc != 0:
            problems.append(f"serve exited with {rc}:\n{server.log()}")
        leftovers = stop_local_helpers(data_dir)
        if leftovers:
            problems.append(f"helpers left running: {leftovers}")
        assert not problems, problems
