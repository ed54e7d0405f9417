# SPDX-License-Identifier: Apache-2.0
"""A real Open Policy Agent (./bin/opa, built by `make tools`) as the Policy Management Service.

It listens on 127.0.0.1:<free port> behind TLS (a CA and a server certificate for 127.0.0.1 made with
the openssl CLI) and accepts only requests that carry its bearer token (OPA's token authentication and
an authorization policy, package system.authz, that allows exactly that token). Everything it needs is
written into its own directory:

    tls/ca.pem, tls/ca.key the CA that signed the server certificate (give ca.pem to the client)
    tls/server.pem, .key   the server certificate (subjectAltName IP:127.0.0.1) and its key
    token                  the bearer token, one line (mode 0600)
    authz.rego             the authorization policy
    opa.log                OPA's output

Usage:

    opa = OpaServer(tmp_path / "opa", bundles=["policy"])
    opa.start()
    opa.url("cratekube/cluster")   # https://127.0.0.1:<port>/v1/data/cratekube/cluster
    opa.stop(); opa.start()        # the same port, the same certificate and token
    opa.restart()                  # the same in one call

Run this file to check the authentication: no token and a wrong token are refused with 401, the
token is accepted with 200.
"""
import os
import secrets
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OPA = os.path.join(REPO_ROOT, "bin", "opa")
OPA_VERSION = "1.22.3"


def opa_binary():
    """bin/opa, or skip the test (fail it when CI=true) when it is missing."""
    if os.access(OPA, os.X_OK):
        return OPA
    reason = f"{OPA} is missing: build it with `make tools` (scripts/build-opa.sh, OPA v{OPA_VERSION})"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {r.stderr.strip()}")


class OpaServer:
    """One `opa run --server` on 127.0.0.1 with TLS and token authentication, in a directory of its own."""

    def __init__(self, directory, bundles=(), binary=None):
        self.dir = str(directory)
        self.bundles = [str(b) for b in bundles]
        self.binary = binary
        self.port = None
        self.proc = None
        # OPA watches the directory of its certificate and reloads it on every change there: the log
        # must not be written next to it.
        self.tls_dir = os.path.join(self.dir, "tls")
        self.ca_file = os.path.join(self.tls_dir, "ca.pem")
        self.cert_file = os.path.join(self.tls_dir, "server.pem")
        self.key_file = os.path.join(self.tls_dir, "server.key")
        self.token_file = os.path.join(self.dir, "token")
        self.authz_file = os.path.join(self.dir, "authz.rego")
        self.log_path = os.path.join(self.dir, "opa.log")
        self._token = None

    # -- material ---------------------------------------------------------------------------------

    def _prepare(self):
        os.makedirs(self.dir, exist_ok=True)
        if not os.path.exists(self.cert_file):
            self._make_certificates()
        if self._token is None:
            self._token = secrets.token_urlsafe(32)
            fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self._token + "\n")
            # OPA's token authentication puts the bearer token into input.identity.
            with open(self.authz_file, "w") as f:
                f.write("package system.authz\n\n"
                        "default allow := false\n\n"
                        f'allow if input.identity == "{self._token}"\n')
            os.chmod(self.authz_file, 0o600)

    def _make_certificates(self):
        d = self.tls_dir
        os.makedirs(d, exist_ok=True)
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=opa test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)
        with open(os.path.join(d, "server.ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\n"
                    "basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth\n")
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "2",
                 "-days", "2", "-extfile", "server.ext", "-out", "server.pem", cwd=d)
        os.chmod(os.path.join(d, "server.key"), 0o600)
        os.chmod(os.path.join(d, "ca.key"), 0o600)

    # -- life cycle -------------------------------------------------------------------------------

    @property
    def base_url(self):
        return f"https://127.0.0.1:{self.port}"

    def url(self, package_path="cratekube/cluster"):
        """The data API URL of a package path ("cratekube/cluster")."""
        return f"{self.base_url}/v1/data/{package_path.strip('/')}"

    def token(self):
        return self._token

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout=30):
        """Starts OPA; after a stop() on the port it had before. Raises RuntimeError saying why it cannot."""
        if self.running():
            return self
        binary = self.binary or opa_binary()
        self._prepare()
        keep_port = self.port is not None
        for _ in range(5):
            if not keep_port:
                self.port = free_port()
            ok, output = self._launch(binary, timeout)
            if ok:
                return self
            if "address already in use" not in output.lower():
                break
            # A new port was taken before OPA bound it: another one; the old port: wait for it.
            if keep_port:
                time.sleep(0.5)
        raise RuntimeError(f"opa did not start on 127.0.0.1:{self.port}:\n{self.log()}")

    def _launch(self, binary, timeout):
        cmd = [binary, "run", "--server", "--addr", f"127.0.0.1:{self.port}",
               "--tls-cert-file", self.cert_file, "--tls-private-key-file", self.key_file,
               "--authentication=token", "--authorization=basic",
               "--skip-version-check", "--log-level=error",
               *self.bundles, self.authz_file]
        with open(self.log_path, "ab") as logf:
            logf.write(f"--- start on port {self.port}\n".encode())
            logf.flush()
            offset = logf.tell()
            self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                with open(self.log_path, "rb") as f:
                    f.seek(offset)
                    return False, f.read().decode(errors="replace")
            try:
                r = requests.get(self.base_url + "/health", headers=self._auth(self._token),
                                 verify=self.ca_file, timeout=1)
                if r.status_code == 200:
                    return True, ""
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        return False, "did not answer /health in time"

    def stop(self, timeout=10):
        """Stops OPA (SIGTERM, then SIGKILL); the port, certificate and token stay for the next start()."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, timeout=30):
        self.stop()
        return self.start(timeout=timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- requests ---------------------------------------------------------------------------------

    @staticmethod
    def _auth(token):
        return {"Authorization": f"Bearer {token}"} if token else {}

    def query(self, package_path, input_doc, token=...):
        """POSTs {"input": input_doc} to the package's data API with the token (or the one given, or None)."""
        return requests.post(self.url(package_path), json={"input": input_doc},
                             headers=self._auth(self._token if token is ... else token),
                             verify=self.ca_file, timeout=10)

    def check_authentication(self):
        """No token and a wrong token get 401, the token gets 200; raises AssertionError otherwise."""
        for label, token in (("no token", None), ("a wrong token", "not-" + self._token)):
            r = self.query("system/version", {}, token=token)
            assert r.status_code == 401, f"{label}: HTTP {r.status_code} {r.text}"
        r = self.query("system/version", {})
        assert r.status_code == 200, f"the token: HTTP {r.status_code} {r.text}"


def _main():
    import tempfile

    if not os.access(OPA, os.X_OK):
        print(f"{OPA} is missing: build it with `make tools`", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as d:
        with OpaServer(d) as opa:
            opa.check_authentication()
            print(f"{opa.base_url}: no token 401, wrong token 401, token 200")
            port = opa.port
            opa.restart()
            assert opa.port == port
            opa.check_authentication()
            print(f"restarted on the same port: {opa.base_url}")
            with subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", opa.ca_file,
                                   "-X", "POST", "-d", '{"input":{}}', opa.url("system/version")],
                                  stdout=subprocess.PIPE, text=True) as p:
                out = p.communicate()[0]
            assert out == "401", out
            print("curl without a token: 401")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
