# SPDX-License-Identifier: Apache-2.0
"""Transport and limits, black box: TLS, plain HTTP off loopback, connection, size and rate limits,
authentication failures, slow clients and hostile bodies."""
import os
import re
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import warnings

import pytest
import requests

from conftest import Server, free_port

PROBLEM = "application/problem+json"
KEY = "cmk_not_a_key_of_this_server"


# --- Certificates: a CA and a server certificate for 127.0.0.1, made with the openssl command. ---

class Pki:
    def __init__(self, d):
        self.dir = d
        self.ca = os.path.join(d, "ca.pem")
        self.cert = os.path.join(d, "server.pem")
        self.key = os.path.join(d, "server.key")
        self.other_ca = os.path.join(d, "other-ca.pem")

    def make(self):
        def run(*args):
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=self.dir)

        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "365", "-subj", "/CN=transport test CA")
        run("req", "-x509", *ec, "-keyout", "other-ca.key", "-out", "other-ca.pem", "-days", "365",
            "-subj", "/CN=another CA")
        run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=clustermgmt test server")
        with open(os.path.join(self.dir, "ext.cnf"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
        run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "365", "-extfile", "ext.cnf")
        os.chmod(self.key, 0o600)
        return self


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(str(tmp_path_factory.mktemp("pki"))).make()


class TransportServer(Server):
    """A server with its own listen address and, with pki, HTTPS."""

    def __init__(self, binary, data_dir, pki=None, host="127.0.0.1", **kw):
        super().__init__(binary, data_dir, **kw)
        self.pki = pki
        self.host = host
        if pki:
            self.session.verify = pki.ca

    @property
    def url(self):
        return f"{'https' if self.pki else 'http'}://127.0.0.1:{self.port}"

    def req(self, method, path, **kw):
        # Given per request: a session's own setting loses to REQUESTS_CA_BUNDLE in the environment.
        kw.setdefault("verify", self.session.verify)
        return super().req(method, path, **kw)

    def command(self):
        cmd = [self.binary, "serve", "--data-dir", self.data_dir, "--listen", f"{self.host}:{self.port}",
               "--shutdown-grace-seconds", "1"]
        if self.pki:
            cmd += ["--tls-cert", self.pki.cert, "--tls-key", self.pki.key]
        cmd += self.extra_args
        if self.valgrind:
            cmd = ["valgrind", "--error-exitcode=99", "--leak-check=full", "--errors-for-leak-kinds=definite",
                   "--track-fds=no", "-q"] + cmd
        return cmd

    def start(self, timeout=60):
        self.port = free_port()
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=self.logf, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + timeout * (5 if self.valgrind else 1)
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/readyz", timeout=1, verify=self.session.verify).status_code == 200:
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

    def run_to_exit(self, timeout=60):
        """Runs serve expecting it to refuse to start; returns (exit status, output)."""
        self.port = free_port()
        p = subprocess.run(self.command(), capture_output=True, text=True, env=self.env, timeout=timeout)
        return p.returncode, p.stdout + p.stderr

    def metric(self, reason):
        text = requests.get(self.url + "/metrics", verify=self.session.verify, timeout=30).text
        m = re.search(r'clustermgmt_http_limited_total\{reason="%s"\} (\d+)' % re.escape(reason), text)
        assert m, text
        return int(m.group(1))


@pytest.fixture
def make_tserver(binary, request, tmp_path):
    servers = []

    def make(**kw):
        s = TransportServer(binary, tempfile.mkdtemp(dir=tmp_path), valgrind=request.config.getoption("--valgrind"),
                            **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        if s.proc:
            rc = s.stop()
            assert rc == 0, f"serve exited with {rc}:\n{s.log()}"


def assert_problem(r, status, slug):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == PROBLEM
    p = r.json()
    assert p["status"] == status and p["type"].endswith("/" + slug), p
    return p


def retry_after(r):
    v = r.headers.get("Retry-After")
    assert v is not None and v.isdigit() and int(v) >= 1, r.headers
    return int(v)


def tls_client(pki, version=None, ciphers=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.ca)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is deprecated: that is the point
        if version is not None:
            ctx.minimum_version = ctx.maximum_version = version
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def handshake(port, ctx):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return s.version(), s.cipher()[0]


def assert_refused(port, ctx):
    """The client offers the handshake and the server refuses it (not a client that offers nothing)."""
    with pytest.raises((ssl.SSLError, ConnectionError)) as e:
        handshake(port, ctx)
    assert "NO_PROTOCOLS_AVAILABLE" not in str(e.value) and "NO_CIPHER" not in str(e.value), e.value


# --- TLS ---

def test_https_with_the_ca(make_tserver, pki):
    s = make_tserver(pki=pki).start()
    r = requests.get(s.url + "/healthz", verify=pki.ca, timeout=30)
    assert r.status_code == 200
    assert r.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    r = s.get("/v1/environments")
    assert r.status_code == 200, r.text
    assert r.headers["Strict-Transport-Security"] == "max-age=31536000"
    # Without the CA the certificate is not trusted.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(s.url + "/healthz", timeout=30)
    # Plain HTTP to the TLS port gets no answer.
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{s.port}/healthz", timeout=30)
    # Logged: TLS is on, with the certificate's subject and expiry; never the key.
    log = s.log()
    assert "TLS on" in log and "CN=clustermgmt test server" in log and "valid until" in log
    with open(pki.key) as f:
        key_lines = [line for line in f.read().splitlines() if line and not line.startswith("-----")]
    assert key_lines and not any(line in log for line in key_lines)


def test_tls_versions_and_ciphers(make_tserver, pki):
    s = make_tserver(pki=pki).start()
    version, cipher = handshake(s.port, tls_client(pki, ssl.TLSVersion.TLSv1_3))
    assert version == "TLSv1.3"
    version, cipher = handshake(s.port, tls_client(pki, ssl.TLSVersion.TLSv1_2))
    assert version == "TLSv1.2"
    assert cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher), cipher
    # Offered (the client's own security level lowered), refused by the server.
    assert_refused(s.port, tls_client(pki, ssl.TLSVersion.TLSv1_1, "DEFAULT:@SECLEVEL=0"))
    # TLS 1.2 without an AEAD cipher, or without ephemeral key exchange: refused.
    for ciphers in ("ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA", "AES128-GCM-SHA256:AES256-GCM-SHA384"):
        assert_refused(s.port, tls_client(pki, ssl.TLSVersion.TLSv1_2, ciphers))
    assert requests.get(s.url + "/healthz", verify=pki.ca, timeout=30).status_code == 200


def run_cli(binary, *args, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERMGMT_")}
    e.update(env or {})
    return subprocess.run([binary, *args], capture_output=True, text=True, env=e, timeout=60)


def test_cli_verifies_the_certificate(make_tserver, pki, binary):
    s = make_tserver(pki=pki).start()
    base = ["--server", s.url, "--token", s.token]
    p = run_cli(binary, *base, "--ca-file", pki.ca, "env", "list")
    assert p.returncode == 0, p.stderr
    assert "default" in p.stdout
    for extra in ([], ["--ca-file", pki.other_ca]):
        p = run_cli(binary, *base, *extra, "env", "list")
        assert p.returncode == 1, p.stdout + p.stderr
        assert "TLS connection to" in p.stderr and "--ca-file" in p.stderr, p.stderr
        assert s.token not in p.stderr


def test_cli_ca_file_from_the_environment(make_tserver, pki, binary):
    s = make_tserver(pki=pki).start()
    p = run_cli(binary, "--server", s.url, "--token", s.token, "env", "list", env={"CLUSTERMGMT_CA_FILE": pki.ca})
    assert p.returncode == 0, p.stderr


def test_cli_refuses_tls_1_1(pki, binary):
    """A server that speaks nothing newer than TLS 1.1 is refused by the CLI."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.load_cert_chain(pki.cert, pki.key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    answered = []

    def serve():
        listener.settimeout(30)
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            try:
                with ctx.wrap_socket(conn, server_side=True) as t:
                    t.recv(1024)
                    t.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n"
                              b'{"items":[]}')
                    answered.append(True)
            except (ssl.SSLError, OSError):
                pass

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        p = run_cli(binary, "--server", f"https://127.0.0.1:{port}", "--token", "t", "--ca-file", pki.ca,
                    "env", "list")
    finally:
        listener.close()
        th.join(timeout=30)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "TLS connection to" in p.stderr, p.stderr
    assert not answered


# --- Plain HTTP off loopback; the key file ---

def test_plain_http_refused_off_loopback(make_tserver):
    for host in ("0.0.0.0", "[::]"):
        rc, out = make_tserver(host=host).run_to_exit()
        assert rc == 2, out
        assert "--tls-cert/--tls-key" in out and "--insecure-allow-plain-http" in out, out
    # Only one of the pair.
    s = make_tserver(extra_args=["--tls-cert", "/nonexistent.pem"])
    rc, out = s.run_to_exit()
    assert rc == 2 and "--tls-cert and --tls-key go together" in out, out


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_plain_http_off_loopback_when_allowed(make_tserver, how):
    if how == "flag":
        s = make_tserver(host="0.0.0.0", extra_args=["--insecure-allow-plain-http"])
    else:
        s = make_tserver(host="0.0.0.0", env={"CLUSTERMGMT_INSECURE_ALLOW_PLAIN_HTTP": "1"})
    s.start()
    assert s.get("/v1/environments").status_code == 200
    warning = [line for line in s.log().splitlines() if "not a loopback address" in line]
    assert warning and '"level":"warning"' in warning[0] and "--insecure-allow-plain-http" in warning[0]


def test_key_file_readable_by_others_refused(make_tserver, pki, tmp_path):
    key = tmp_path / "shared.key"
    with open(pki.key, "rb") as f:
        key.write_bytes(f.read())
    for mode in (0o644, 0o640):
        os.chmod(key, mode)
        s = make_tserver(extra_args=["--tls-cert", pki.cert, "--tls-key", str(key)])
        rc, out = s.run_to_exit()
        assert rc == 1, out
        assert f"has mode {mode:04o}" in out and "chmod 0600" in out, out
        assert "serving" not in out
    os.chmod(key, 0o400)
    owner_only = Pki(pki.dir)
    owner_only.key = str(key)
    s = make_tserver(pki=owner_only).start()
    assert s.get("/v1/environments").status_code == 200


def test_key_not_matching_the_certificate_refused(make_tserver, pki, tmp_path):
    other = str(tmp_path / "other.key")
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", other],
                   check=True, capture_output=True)
    os.chmod(other, 0o600)
    rc, out = make_tserver(extra_args=["--tls-cert", pki.cert, "--tls-key", other]).run_to_exit()
    assert rc == 1 and "does not belong to the certificate" in out, out


# --- Rate limits ---

def test_rate_limit_per_principal_and_per_address(make_tserver):
    s = make_tserver(extra_args=["--rate-limit", "1", "--rate-burst", "5"]).start()
    statuses = []
    for _ in range(40):
        r = s.get("/v1/environments")
        statuses.append(r.status_code)
        if r.status_code == 429:
            break
    assert statuses[-1] == 429 and statuses.count(200) >= 4, statuses
    p = assert_problem(r, 429, "rate-limited")
    assert "requests per second" in p["detail"]
    retry_after(r)
    # The address's own bucket (routes without a role) is another one.
    assert requests.get(s.url + "/healthz", timeout=30).status_code == 200
    assert s.metric("rate-limited") >= 1
    for _ in range(40):
        r = requests.get(s.url + "/healthz", timeout=30)
        if r.status_code == 429:
            break
    assert_problem(r, 429, "rate-limited")
    retry_after(r)


def test_rate_limit_leaves_other_principals_alone(make_tserver):
    s = make_tserver(extra_args=["--rate-limit", "1", "--rate-burst", "5"]).start()
    r = s.post("/v1/apikeys", {"name": "second", "globalAdmin": True})
    assert r.status_code == 201, r.text
    second = {"Authorization": f"Bearer {r.json()['token']}"}
    for _ in range(40):
        if s.get("/v1/environments").status_code == 429:
            break
    else:
        pytest.fail("the first key was never limited")
    r = requests.get(s.url + "/v1/environments", headers=second, timeout=30)
    assert r.status_code == 200, r.text


def test_rate_limit_off(make_tserver):
    s = make_tserver(extra_args=["--rate-limit", "0", "--rate-burst", "1"]).start()
    assert all(s.get("/v1/environments").status_code == 200 for _ in range(30))


# --- Authentication failures ---

def test_repeated_authentication_failures_are_throttled(make_tserver):
    """Five failures in a row: the address waits 1 s, then 2, 4 ... (at most 300 s) after each further
    failure. While it waits, its requests are refused without looking at their credentials — a valid
    key too; a success afterwards clears the failures."""
    s = make_tserver().start()
    url = s.url + "/v1/environments"
    bad = {"Authorization": f"Bearer {KEY}"}
    good = {"Authorization": f"Bearer {s.token}"}
    for _ in range(5):
        assert requests.get(url, headers=bad, timeout=30).status_code == 401
    waits = []
    for _ in range(8):
        r = requests.get(url, headers=bad, timeout=30)
        if r.status_code == 429:
            assert_problem(r, 429, "too-many-auth-failures")
            waits.append(retry_after(r))
            if waits[-1] >= 3:
                break
            time.sleep(waits[-1] + 0.2)  # the block passes; the next failure doubles it
        else:
            assert r.status_code == 401, r.text
    assert waits and waits[-1] >= 3, waits
    # While the address is throttled, a valid key is refused too; routes without a role are not.
    r = requests.get(url, headers=good, timeout=30)
    assert_problem(r, 429, "too-many-auth-failures")
    assert requests.get(s.url + "/healthz", timeout=30).status_code == 200
    assert s.metric("too-many-auth-failures") >= 2
    time.sleep(retry_after(r) + 0.5)
    assert requests.get(url, headers=good, timeout=30).status_code == 200
    # The success cleared the failures: the next bad key is one failure, not a throttled address.
    assert requests.get(url, headers=bad, timeout=30).status_code == 401
    assert requests.get(url, headers=good, timeout=30).status_code == 200


# --- Connections ---

def http_get(sock, path="/healthz"):
    """One request on a keep-alive connection; the answer's bytes, b"" when the server closed it."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = b""
    try:
        while b"\r\n\r\n" not in data or not data.endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_connections_per_address(make_tserver):
    s = make_tserver(extra_args=["--max-connections-per-ip", "4"]).start()
    socks = []
    deadline = time.time() + 30
    while len(socks) < 4 and time.time() < deadline:
        c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        if http_get(c).startswith(b"HTTP/1.1 200"):
            socks.append(c)
        else:
            c.close()  # a connection of the readiness probe not yet cleaned up
            time.sleep(0.2)
    assert len(socks) == 4
    extra = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    try:
        assert http_get(extra) == b""
    finally:
        extra.close()
    # The four are still served; once one closes, a new one is accepted.
    assert http_get(socks[0]).startswith(b"HTTP/1.1 200")
    socks.pop().close()
    deadline = time.time() + 30
    while True:
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
            if http_get(c).startswith(b"HTTP/1.1 200"):
                break
        assert time.time() < deadline
        time.sleep(0.2)
    for c in socks:
        c.close()
    deadline = time.time() + 30
    while True:
        try:
            assert s.metric("connection-limit") >= 1
            break
        except requests.ConnectionError:  # the closed sockets may not be cleaned up yet
            assert time.time() < deadline
            time.sleep(0.2)


def trickle(port, head, body=b"", interval=0.5, limit=30):
    """Sends head (and body) one byte at a time; seconds until the server closed the connection."""
    start = time.time()
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as c:
        c.settimeout(interval)
        for b in head + body:
            try:
                c.send(bytes([b]))
                if c.recv(4096) == b"":
                    return time.time() - start
            except socket.timeout:
                pass
            except OSError:  # reset or broken pipe: closed
                return time.time() - start
            if time.time() - start > limit:
                break
    return None


def test_slow_clients_are_dropped(make_tserver):
    """libmicrohttpd's idle timeout starts over with every byte: a request trickled a byte at a time
    would hold its connection for ever. The request timeout bounds the whole header and body."""
    s = make_tserver(extra_args=["--idle-timeout-seconds", "5", "--request-timeout-seconds", "3"]).start()
    results = {}

    def run(name, head, body=b""):
        results[name] = trickle(s.port, head, body)

    pad = b"X-Padding: " + b"a" * 200 + b"\r\n"
    headers = threading.Thread(target=run, args=("headers", b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + pad * 10))
    body = threading.Thread(target=run, args=(
        "body", b"POST /v1/environments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + s.token.encode() + b"\r\nContent-Length: 400\r\n\r\n",
        b'{"name":"' + b"a" * 390 + b'"}'))
    headers.start()
    body.start()
    headers.join()
    body.join()
    # Dropped near the 3 s deadline (generous bounds for a loaded machine), never served.
    for name in ("headers", "body"):
        assert results[name] is not None, f"the {name} trickle was never dropped"
        assert results[name] < 25, results
    assert s.metric("slow-request") >= 2
    assert s.get("/v1/environments").status_code == 200


def test_streamed_answer_outlives_the_request_timeout(make_tserver):
    s = make_tserver(extra_args=["--request-timeout-seconds", "2", "--poll-ms", "100"]).start()
    op = s.create_cluster("slow", {"durationMs": 4500, "logLines": 3})
    start = time.time()
    r = s.get(f"/v1/operations/{op['id']}/log?follow=true", timeout=120)
    assert r.status_code == 200
    assert "create succeeded" in r.text, r.text
    assert time.time() - start > 2
    assert s.metric("slow-request") == 0


# --- Bodies ---

def test_huge_body_refused_before_it_is_read(make_tserver):
    s = make_tserver(extra_args=["--max-body-bytes", "4096"]).start()
    path = "/v1/environments"
    # Announced larger than the cap: answered at once, the body is never read.
    with socket.create_connection(("127.0.0.1", s.port), timeout=30) as c:
        c.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {s.token}\r\n"
                  "Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n{".encode())
        data = b""
        while True:
            chunk = c.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 413"), data
    assert b"larger than 4096 bytes" in data
    # Through a client that sends the whole body anyway.
    assert_problem(s.post(path, data=b'{"name":"' + b"a" * 5000 + b'"}'), 413, "too-large")
    # Chunked (no length announced): read up to the cap, then refused.
    gen = (b'{"name":"' if i == 0 else b"a" * 1000 for i in range(10))
    assert_problem(s.post(path, data=gen, headers={"Content-Type": "application/json"}), 413, "too-large")
    # Under the cap, the body is looked at.
    assert s.post(path, data=b'{"name":"' + b"a" * 3000 + b'"}').status_code == 422
    assert s.metric("too-large") >= 3


def test_huge_header_refused(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as c:
        try:
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 100000 + b"\r\n\r\n")
        except OSError:  # answered and closed before the rest was sent
            pass
        assert c.recv(64).startswith(b"HTTP/1.1 431"), "headers past libmicrohttpd's buffer"
    assert server.get("/healthz").status_code == 200


@pytest.mark.parametrize("body,reason", [
    ("[" * 100000 + "]" * 100000, "nesting"),
    ('{"name":"a","spec":' + "[" * 64 + "]" * 64 + "}", "nesting"),
    ("[" + "0," * 300000 + "0]", "values"),
    ('{"name":"a","labels":{' + ",".join(f'"k{i}":"v"' for i in range(60000)) + "}}", "values"),
    ('{"name":"' + "a" * 900000 + '"}', None),
])
def test_json_bombs(server, body, reason):
    r = server.post("/v1/environments/default/clusters", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 413, 422), r.text
    assert r.headers["Content-Type"] == PROBLEM
    if reason:
        assert reason in r.json()["detail"], r.json()
    assert server.get("/healthz").status_code == 200
