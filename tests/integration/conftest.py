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
