# SPDX-License-Identifier: Apache-2.0
"""An OpenID Connect provider for tests: discovery and a JWK set over HTTPS, and tokens it signs.

It listens on 127.0.0.1:<free port> behind TLS (a CA and a server certificate for 127.0.0.1 made with
the openssl CLI) and serves

    /.well-known/openid-configuration   {"issuer": "https://127.0.0.1:<port>", "jwks_uri": ".../jwks.json", ...}
    /jwks.json                          the public halves of its current keys

Its keys are real: an RSA key (RS256, and PS256/RS384/...) and an EC P-256 key (ES256), made with the
openssl CLI, and tokens are signed with the openssl CLI as well (`openssl dgst -sign`). Everything is
written into its own directory:

    tls/ca.pem, tls/ca.key        the CA that signed the server certificate (give ca.pem to the client)
    tls/server.pem, server.key    the server certificate (subjectAltName IP:127.0.0.1) and its key
    keys/<kid>.key, <kid>.pub     the signing keys (PEM)

Usage:

    with OidcProvider(tmp_path / "oidc") as idp:
        idp.issuer, idp.ca_file                     # for the service's configuration
        token = idp.token(sub="alice", groups=["ops"])
        idp.mint({"iss": idp.issuer, ...}, alg="ES256")
        idp.alg_none(), idp.hs256_with_public_key(), idp.expired(), idp.not_yet_valid(),
        idp.wrong_issuer(), idp.wrong_audience(), idp.tampered(), idp.unknown_key() ...
        idp.rotate()                                 # new keys published, the old ones removed
        idp.jwks_fetches                             # how often /jwks.json was fetched

Failures to inject: idp.fail_jwks = 500 (an HTTP status for /jwks.json), idp.delay = 2.0 (seconds
before every answer), idp.discovery_overrides = {"issuer": "https://elsewhere"}, idp.jwks_override =
{...} (served instead of the keys).

Run this file to check it: it mints RS256 and ES256 tokens and verifies their signatures with the
openssl CLI, and fetches discovery and the JWK set over TLS with the CA. `serve --dir DIR
[--jwks-file FILE]` runs a provider until SIGTERM (for tests in other languages): it writes
DIR/ready.json ({"issuer", "ca_file", "port"}) once it listens; with --jwks-file it serves that file
as the JWK set, read again for every request, and DIR/control.json, when present, is read for every
request as well ({"jwks_status": 500, "delay": 1.5, "discovery": {"issuer": ...}}).

Python's standard library and the openssl CLI only.
"""
import base64
import copy
import hashlib
import hmac
import http.server
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

DEFAULT_AUDIENCE = "clustermgmt"


def b64u(data):
    """Unpadded base64url of bytes (or of a str's UTF-8)."""
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _json(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=False)


def _openssl(*args, cwd=None, input=None):
    r = subprocess.run(["openssl", *args], cwd=cwd, input=input, capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {r.stderr.decode(errors='replace').strip()}")
    return r.stdout


def _der_read(buf, pos, tag):
    """One DER element of the given tag at pos: (content, next position)."""
    if buf[pos] != tag:
        raise ValueError(f"DER: expected tag {tag:#x}, found {buf[pos]:#x}")
    n = buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(buf[pos:pos + k], "big")
        pos += k
    return buf[pos:pos + n], pos + n


def ecdsa_der_to_raw(der, size):
    """An ECDSA signature as DER SEQUENCE{r, s} to the JWS form r || s (each size bytes)."""
    seq, _ = _der_read(der, 0, 0x30)
    r, pos = _der_read(seq, 0, 0x02)
    s, _ = _der_read(seq, pos, 0x02)
    return int.from_bytes(r, "big").to_bytes(size, "big") + int.from_bytes(s, "big").to_bytes(size, "big")


def _der_int(v):
    b = v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big")  # a leading zero keeps it positive
    return b"\x02" + _der_len(len(b)) + b


def _der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def ecdsa_raw_to_der(raw):
    """The JWS form r || s back to DER (what `openssl dgst -verify` reads)."""
    half = len(raw) // 2
    body = _der_int(int.from_bytes(raw[:half], "big")) + _der_int(int.from_bytes(raw[half:], "big"))
    return b"\x30" + _der_len(len(body)) + body


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Algorithms: key kind, digest, openssl options, signature form.
_ALGS = {
    "RS256": ("RSA", "sha256", ()),
    "RS384": ("RSA", "sha384", ()),
    "RS512": ("RSA", "sha512", ()),
    "PS256": ("RSA", "sha256", ("-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest")),
    "PS384": ("RSA", "sha384", ("-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest")),
    "PS512": ("RSA", "sha512", ("-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest")),
    "ES256": ("EC", "sha256", ()),
}


class Key:
    """A signing key made with the openssl CLI: its PEM files and the public JWK."""

    def __init__(self, directory, kind, kid=None, bits=2048):
        self.kind = kind
        self.kid = kid or f"{kind.lower()}-{secrets.token_hex(4)}"
        self.path = os.path.join(directory, f"{self.kid}.key")
        self.pub_path = os.path.join(directory, f"{self.kid}.pub")
        os.makedirs(directory, exist_ok=True)
        if kind == "RSA":
            _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{bits}",
                     "-pkeyopt", "rsa_keygen_pubexp:65537", "-out", self.path)
        elif kind == "EC":
            _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", self.path)
        else:
            raise ValueError(f"unknown key kind {kind}")
        os.chmod(self.path, 0o600)
        _openssl("pkey", "-in", self.path, "-pubout", "-out", self.pub_path)
        with open(self.pub_path, "rb") as f:
            self.public_pem = f.read()
        self.jwk = self._public_jwk()

    def _public_jwk(self):
        if self.kind == "RSA":
            text = _openssl("pkey", "-pubin", "-in", self.pub_path, "-noout", "-text").decode()
            m = re.search(r"Modulus:\s*\n((?:\s+[0-9a-f:]+\n)+)", text)
            e = re.search(r"Exponent:\s*(\d+)", text)
            if not m or not e:
                raise RuntimeError("cannot read the RSA public key from openssl's text")
            n = int(re.sub(r"[\s:]", "", m.group(1)), 16)
            e = int(e.group(1))
            return {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                    "n": b64u(n.to_bytes((n.bit_length() + 7) // 8, "big")),
                    "e": b64u(e.to_bytes((e.bit_length() + 7) // 8, "big"))}
        der = _openssl("pkey", "-pubin", "-in", self.pub_path, "-outform", "DER")
        point = der[-65:]  # SubjectPublicKeyInfo of a named P-256 key ends with 04 || x || y
        if point[0] != 4:
            raise RuntimeError("unexpected EC public key encoding")
        return {"kty": "EC", "kid": self.kid, "use": "sig", "alg": "ES256", "crv": "P-256",
                "x": b64u(point[1:33]), "y": b64u(point[33:65])}

    def sign(self, alg, signing_input):
        kind, digest, opts = _ALGS[alg]
        if kind != self.kind:
            raise ValueError(f"{alg} needs an {kind} key, {self.kid} is {self.kind}")
        sig = _openssl("dgst", f"-{digest}", "-sign", self.path, *opts, input=signing_input)
        return ecdsa_der_to_raw(sig, 32) if kind == "EC" else sig

    def verify(self, alg, signing_input, signature):
        """True when openssl verifies the signature (in JWS form) with the public key."""
        kind, digest, opts = _ALGS[alg]
        sig = ecdsa_raw_to_der(signature) if kind == "EC" else signature
        with tempfile.NamedTemporaryFile() as f:
            f.write(sig)
            f.flush()
            r = subprocess.run(["openssl", "dgst", f"-{digest}", "-verify", self.pub_path, *opts,
                                "-signature", f.name], input=signing_input, capture_output=True)
        return r.returncode == 0


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "oidc-test-provider"

    def log_message(self, fmt, *args):  # quiet
        pass

    def _send(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else _json(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        idp = self.server.provider
        ctl = idp._control()
        delay = ctl.get("delay", idp.delay)
        if delay:
            time.sleep(delay)
        path = self.path.split("?", 1)[0]
        if path == "/.well-known/openid-configuration":
            idp._count("discovery_fetches")
            doc = idp.discovery()
            doc.update(ctl.get("discovery", {}))
            self._send(200, doc)
        elif path == "/jwks.json":
            idp._count("jwks_fetches")
            status = ctl.get("jwks_status", idp.fail_jwks)
            if status:
                self._send(status, {"error": "injected failure"})
                return
            self._send(200, idp._jwks_body())
        else:
            self._send(404, {"error": "not found"})


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, provider, context):
        self.provider = provider
        self.context = context
        super().__init__(addr, _Handler)

    def finish_request(self, request, client_address):
        # The TLS handshake happens here, in the request's thread: a client that never finishes it
        # cannot stall the accept loop.
        request.settimeout(10)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):  # clients that hang up are no news
        pass


class OidcProvider:
    """One HTTPS OIDC provider on 127.0.0.1, in a directory of its own."""

    def __init__(self, directory, audience=DEFAULT_AUDIENCE, rsa_bits=2048, jwks_file=None,
                 control_file=None):
        self.dir = str(directory)
        self.audience = audience
        self.rsa_bits = rsa_bits
        self.jwks_file = jwks_file
        self.control_file = control_file
        self.tls_dir = os.path.join(self.dir, "tls")
        self.keys_dir = os.path.join(self.dir, "keys")
        self.ca_file = os.path.join(self.tls_dir, "ca.pem")
        self.cert_file = os.path.join(self.tls_dir, "server.pem")
        self.key_file = os.path.join(self.tls_dir, "server.key")
        self.port = None
        self._server = None
        self._thread = None
        self._lock = threading.Lock()
        self.jwks_fetches = 0
        self.discovery_fetches = 0
        # Failure injection (see the module's documentation).
        self.fail_jwks = None
        self.delay = 0
        self.discovery_overrides = {}
        self.jwks_override = None
        self.rsa = None
        self.ec = None
        self.retired = []  # keys rotated out: they still sign (for "unknown key" tokens)

    # -- material ---------------------------------------------------------------------------------

    def _make_certificates(self):
        d = self.tls_dir
        os.makedirs(d, exist_ok=True)
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=oidc test CA",
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

    def _prepare(self):
        os.makedirs(self.dir, exist_ok=True)
        if not os.path.exists(self.cert_file):
            self._make_certificates()
        if self.rsa is None:
            self.rsa = Key(self.keys_dir, "RSA", bits=self.rsa_bits)
            self.ec = Key(self.keys_dir, "EC")

    # -- documents --------------------------------------------------------------------------------

    @property
    def issuer(self):
        return f"https://127.0.0.1:{self.port}"

    @property
    def discovery_url(self):
        return self.issuer + "/.well-known/openid-configuration"

    @property
    def jwks_url(self):
        return self.issuer + "/jwks.json"

    def discovery(self):
        doc = {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_url,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        }
        doc.update(self.discovery_overrides)
        return doc

    def jwks(self):
        """The JWK set as served (unless jwks_override or a jwks file replaces it)."""
        with self._lock:
            return {"keys": [copy.deepcopy(self.rsa.jwk), copy.deepcopy(self.ec.jwk)]}

    def _jwks_body(self):
        if self.jwks_file:
            with open(self.jwks_file, "rb") as f:
                return f.read()
        if self.jwks_override is not None:
            return self.jwks_override if isinstance(self.jwks_override, bytes) else _json(self.jwks_override).encode()
        return _json(self.jwks()).encode()

    def _control(self):
        if not self.control_file:
            return {}
        try:
            with open(self.control_file) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return {}

    def _count(self, name):
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    # -- life cycle -------------------------------------------------------------------------------

    def start(self, port=None):
        """Listens (on port, or the port it had, or a free one) and serves in a thread."""
        if self._server is not None:
            return self
        self._prepare()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        want = port or self.port or 0
        deadline = time.time() + 10
        while True:
            try:
                self._server = _Server(("127.0.0.1", want), self, ctx)
                break
            except OSError:
                if want == 0 or time.time() > deadline:
                    raise
                time.sleep(0.1)  # the same port again after a stop: wait for it
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="oidc-provider", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def running(self):
        return self._server is not None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- keys -------------------------------------------------------------------------------------

    def rotate(self):
        """New RSA and EC keys published, the old ones removed (they can still sign, see unknown_key)."""
        rsa = Key(self.keys_dir, "RSA", bits=self.rsa_bits)
        ec = Key(self.keys_dir, "EC")
        with self._lock:
            self.retired += [self.rsa, self.ec]
            self.rsa, self.ec = rsa, ec
        return rsa.kid, ec.kid

    def key_for(self, alg):
        return self.ec if _ALGS[alg][0] == "EC" else self.rsa

    # -- tokens -----------------------------------------------------------------------------------

    def claims(self, **overrides):
        """Valid claims for now: iss, aud, sub, email, groups, iat, nbf, exp (+5 min). None drops one."""
        now = int(time.time())
        c = {"iss": self.issuer, "aud": self.audience, "sub": "user-1", "email": "user-1@example.com",
             "email_verified": True, "groups": ["ops"], "iat": now, "nbf": now, "exp": now + 300}
        for k, v in overrides.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        return c

    @staticmethod
    def encode(header, claims, signature=b""):
        """A compact JWS from a header and claims (dicts, or str/bytes taken as they are)."""
        h = header if isinstance(header, (str, bytes)) else _json(header)
        p = claims if isinstance(claims, (str, bytes)) else _json(claims)
        return f"{b64u(h)}.{b64u(p)}.{b64u(signature)}"

    def mint(self, claims, alg="RS256", kid=None, key=None, header_extra=None):
        """A token signed with key (default: the current key for alg) by the openssl CLI."""
        key = key or self.key_for(alg)
        header = {"alg": alg, "typ": "JWT", "kid": kid or key.kid}
        header.update(header_extra or {})
        for k in [k for k, v in header.items() if v is None]:
            del header[k]
        signing_input = f"{b64u(_json(header))}.{b64u(_json(claims))}".encode()
        return signing_input.decode() + "." + b64u(key.sign(alg, signing_input))

    def token(self, alg="RS256", **overrides):
        return self.mint(self.claims(**overrides), alg=alg)

    # -- bad tokens -------------------------------------------------------------------------------

    def alg_none(self, claims=None, signature=b""):
        return self.encode({"alg": "none", "typ": "JWT", "kid": self.rsa.kid}, claims or self.claims(), signature)

    def hs256_with_public_key(self, claims=None, secret=None):
        """HS256 with the RSA public key (its PEM) as the HMAC secret: the key-confusion attack."""
        header = {"alg": "HS256", "typ": "JWT", "kid": self.rsa.kid}
        signing_input = f"{b64u(_json(header))}.{b64u(_json(claims or self.claims()))}".encode()
        mac = hmac.new(secret or self.rsa.public_pem, signing_input, hashlib.sha256).digest()
        return signing_input.decode() + "." + b64u(mac)

    def expired(self, alg="RS256"):
        now = int(time.time())
        return self.token(alg, iat=now - 7200, nbf=now - 7200, exp=now - 3600)

    def not_yet_valid(self, alg="RS256"):
        return self.token(alg, nbf=int(time.time()) + 3600)

    def wrong_issuer(self, alg="RS256"):
        return self.token(alg, iss="https://evil.example")

    def wrong_audience(self, alg="RS256"):
        return self.token(alg, aud="someone-else")

    def without(self, claim, alg="RS256"):
        return self.token(alg, **{claim: None})

    def tampered(self, token=None):
        """The claims changed after signing (groups: admins), the signature kept."""
        token = token or self.token()
        h, _, s = token.split(".")
        return f"{h}.{b64u(_json(self.claims(groups=['admins'])))}.{s}"

    def unknown_key(self, alg="RS256"):
        """Signed by a key that is not published, under a kid the JWK set does not hold."""
        key = Key(os.path.join(self.dir, "keys-unpublished"), _ALGS[alg][0], bits=self.rsa_bits)
        return self.mint(self.claims(), alg=alg, key=key)


def _write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(data)
    os.replace(tmp, path)


def _serve(argv):
    import argparse

    ap = argparse.ArgumentParser(prog="oidc_provider.py serve")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--jwks-file")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    idp = OidcProvider(args.dir, jwks_file=args.jwks_file, control_file=os.path.join(args.dir, "control.json"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    idp.start(port=args.port or None)
    _write_atomic(os.path.join(args.dir, "ready.json"),
                  _json({"issuer": idp.issuer, "ca_file": idp.ca_file, "port": idp.port}))
    while not stop.wait(0.2):
        pass
    idp.stop()
    return 0


def _self_test():
    import requests

    with tempfile.TemporaryDirectory(prefix="oidc-provider-") as d, OidcProvider(d) as idp:
        for alg in ("RS256", "ES256", "PS256"):
            token = idp.token(alg, sub="self-test")
            h, p, s = token.split(".")
            header, claims = json.loads(b64u_decode(h)), json.loads(b64u_decode(p))
            assert header["alg"] == alg and header["kid"] == idp.key_for(alg).kid, header
            assert claims["iss"] == idp.issuer and claims["sub"] == "self-test", claims
            assert idp.key_for(alg).verify(alg, f"{h}.{p}".encode(), b64u_decode(s)), f"{alg}: signature"
            assert not idp.key_for(alg).verify(alg, f"{h}.{p}x".encode(), b64u_decode(s)), f"{alg}: tamper"
            print(f"{alg}: signed and verified with openssl ({len(token)} bytes)")

        doc = requests.get(idp.discovery_url, verify=idp.ca_file, timeout=10).json()
        assert doc["issuer"] == idp.issuer and doc["jwks_uri"] == idp.jwks_url, doc
        kids = {k["kid"] for k in requests.get(idp.jwks_url, verify=idp.ca_file, timeout=10).json()["keys"]}
        assert kids == {idp.rsa.kid, idp.ec.kid}, kids
        assert idp.jwks_fetches == 1 and idp.discovery_fetches == 1
        try:
            requests.get(idp.jwks_url, timeout=10)  # without the CA: refused by certificate verification
            raise AssertionError("TLS verification passed without the CA")
        except requests.exceptions.SSLError:
            pass

        old = {idp.rsa.kid, idp.ec.kid}
        idp.rotate()
        kids = {k["kid"] for k in requests.get(idp.jwks_url, verify=idp.ca_file, timeout=10).json()["keys"]}
        assert kids == {idp.rsa.kid, idp.ec.kid} and not kids & old, kids
        assert idp.jwks_fetches == 2

        for name in ("alg_none", "hs256_with_public_key", "expired", "not_yet_valid", "wrong_issuer",
                     "wrong_audience", "tampered", "unknown_key"):
            t = getattr(idp, name)()
            assert t.count(".") == 2, name
        print(f"discovery, JWK set, rotation and bad tokens: ok (issuer {idp.issuer})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        sys.exit(_serve(sys.argv[2:]))
    sys.exit(_self_test())
