# SPDX-License-Identifier: Apache-2.0
"""The attack suite: every route of the route table against bad credentials and the wrong principals,
path and name tricks in every path parameter, and canary secrets — each with the expected status and no
side effect (the database is compared before and after). docs/security.md keeps the table of what is
tried here.

A real OIDC provider (tests/integration/oidc_provider.py: HTTPS, real RSA and EC keys) issues the tokens.
"""
import json
import os
import re
import sqlite3
import subprocess

import pytest
import requests

from conftest import REPO_ROOT
from oidc_provider import OidcProvider

AUDIENCE = "clustermgmt"
OPENAPI = os.path.join(REPO_ROOT, "src", "server", "openapi.json")
NO_AUTH = {"/healthz", "/readyz", "/metrics", "/openapi.json"}


def routes():
    """(method, path template) of every route that needs a role, from the document the route table is
    checked against (tests/unit/test_openapi.c)."""
    with open(OPENAPI) as f:
        doc = json.load(f)
    out = []
    for path, item in doc["paths"].items():
        if path in NO_AUTH:
            continue
        for method in ("get", "post", "put", "delete"):
            if method in item:
                out.append((method.upper(), path))
    return out


def fill(path, env="dev", name="c1", op_id="op_none", file="cluster.yml", ident="x1"):
    return (path.replace("{env}", env).replace("{name}", name).replace("{file}", file)
            .replace("{engine}", "rke").replace("{addon}", "a1")
            .replace("{id}", op_id if path.startswith("/v1/operations") else ident))


def snapshot(data_dir):
    """Everything the store holds that a request could change (not the audit log, not last use)."""
    db = sqlite3.connect(f"file:{os.path.join(data_dir, 'clustermgmt.db')}?mode=ro", uri=True)
    out = {}
    for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT IN "
                               "('audit', 'sqlite_sequence', 'schema_migrations')"):
        rows = db.execute(f"SELECT * FROM {table}").fetchall()
        if table == "apikeys":
            rows = [r[:8] for r in rows]  # without last_used
        out[table] = sorted(map(repr, rows))
    db.close()
    return out


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    p = OidcProvider(tmp_path_factory.mktemp("oidc"), audience=AUDIENCE)
    p.start()
    yield p
    p.stop()


@pytest.fixture
def world(make_server, idp):
    """A server trusting the provider, with environments dev and prod, a cluster in each, and keys:
    a dev viewer, a dev operator, a prod operator and a revoked key; OIDC group 'dev-ops' operates dev."""
    s = make_server(extra_args=["--oidc-issuer", idp.issuer, "--oidc-audience", AUDIENCE, "--oidc-ca-file",
                                idp.ca_file, "--rate-limit", "0", "--auth-failure-limit", "0",
                                "--workers", "0"]).start()
    for env in ("dev", "prod"):
        assert s.post("/v1/environments", {"name": env}).status_code == 201
        assert s.post(f"/v1/environments/{env}/clusters", {"name": "c1", "spec": {"engine": "test"}}).status_code == 202
    keys = {}
    for name, env, role in (("dv", "dev", "viewer"), ("do", "dev", "operator"), ("po", "prod", "operator"),
                            ("gone", "dev", "admin")):
        r = s.post("/v1/apikeys", {"name": name, "roles": [{"environment": env, "role": role}]})
        assert r.status_code == 201, r.text
        keys[name] = r.json()
    assert s.delete(f"/v1/apikeys/{keys['gone']['id']}").status_code == 204
    r = s.post("/v1/rolebindings", {"environment": "dev", "subject": {"kind": "group", "name": "dev-ops"},
                                    "role": "operator"})
    assert r.status_code == 201, r.text
    s.keys = keys
    s.prod_op = s.get("/v1/environments/prod/clusters/c1/operations").json()["items"][0]["id"]
    return s


def call(s, method, path, token=None, header=None, body=None):
    headers = {}
    if header is not None:
        headers["Authorization"] = header
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if body is None and method in ("POST", "PUT"):
        body = {}
    return requests.request(method, s.url + path, headers=headers, json=body, timeout=30)


BAD_CREDENTIALS = [
    "none", "empty-bearer", "basic", "two-words", "garbage", "revoked-key",
    "expired", "not-yet-valid", "wrong-issuer", "wrong-audience", "alg-none", "hs256-public-key",
    "tampered", "unknown-key",
]


def credential(kind, s, idp):
    """The Authorization of one kind of bad credential (the OIDC ones: mallory of group dev-ops, who
    would operate dev with a valid token)."""
    claims = idp.claims(sub="mallory", groups=["dev-ops"])
    bad = {
        "none": dict(header=None, token=None),
        "empty-bearer": dict(header="Bearer "),
        "basic": dict(header="Basic YWRtaW46YWRtaW4="),
        "two-words": dict(header=f"Bearer {s.token} extra"),
        "garbage": dict(token="not-a-key"),
        "revoked-key": dict(token=s.keys["gone"]["token"]),
    }
    if kind in bad:
        return bad[kind]
    return dict(token={
        "expired": lambda: idp.expired(),
        "not-yet-valid": lambda: idp.not_yet_valid(),
        "wrong-issuer": lambda: idp.wrong_issuer(),
        "wrong-audience": lambda: idp.wrong_audience(),
        "alg-none": lambda: idp.alg_none(claims),
        "hs256-public-key": lambda: idp.hs256_with_public_key(claims),
        "tampered": lambda: idp.tampered(),
        "unknown-key": lambda: idp.unknown_key(),
    }[kind]())


def test_every_route_refuses_bad_credentials_without_side_effects(world, idp):
    s = world
    before = snapshot(s.data_dir)
    tried = 0
    for kind in BAD_CREDENTIALS:
        cred = credential(kind, s, idp)
        for method, path in routes():
            r = call(s, method, fill(path), token=cred.get("token"), header=cred.get("header"))
            assert r.status_code == 401, (kind, method, path, r.status_code, r.text)
            assert r.headers["Content-Type"].startswith("application/problem+json")
            assert "WWW-Authenticate" in r.headers
            tried += 1
    assert tried >= 14 * 30
    assert snapshot(s.data_dir) == before
    # none of the tokens, nor the revoked key, is in the log
    log = s.log()
    for kind in BAD_CREDENTIALS:
        tok = credential(kind, s, idp).get("token")
        if tok:
            assert tok not in log, kind


def test_wrong_principals_get_404_or_403_without_side_effects(world, idp):
    s = world
    before = snapshot(s.data_dir)
    prod_op = s.keys["po"]["token"]
    dev_viewer = s.keys["dv"]["token"]
    user = idp.token(sub="alice", email="alice@example.com", groups=["dev-ops"])
    stranger = idp.token(sub="eve", groups=["elsewhere"])
    for method, path in routes():
        is_global = not (path.startswith("/v1/environments/{env}") or path.startswith("/v1/operations")
                         or path in ("/v1/environments", "/v1/engines/{engine}/versions", "/v1/whoami"))
        # prod's operator on dev's things: dev does not exist for it
        if path.startswith("/v1/environments/{env}"):
            r = call(s, method, fill(path, env="dev"), token=prod_op)
            assert r.status_code == 404, ("other env", method, path, r.status_code, r.text)
            r = call(s, method, fill(path, env="dev"), token=stranger)
            assert r.status_code == 404, ("stranger", method, path, r.status_code, r.text)
        if path.startswith("/v1/operations/{id}"):
            for tok in (dev_viewer, user):
                r = call(s, method, fill(path, op_id=s.prod_op), token=tok)
                assert r.status_code == 404, ("other env op", method, path, r.status_code, r.text)
        # a viewer doing writes
        if method != "GET" and path.startswith("/v1/environments/{env}"):
            r = call(s, method, fill(path, env="dev"), token=dev_viewer)
            assert r.status_code == 403, ("viewer write", method, path, r.status_code, r.text)
        if is_global:
            for tok in (prod_op, dev_viewer, user):
                r = call(s, method, fill(path), token=tok)
                assert r.status_code == 403, ("global", method, path, r.status_code, r.text)
    assert snapshot(s.data_dir) == before
    # ...while the OIDC user of group dev-ops does operate dev
    assert call(s, "GET", "/v1/environments/dev/clusters", token=user).status_code == 200
    r = call(s, "POST", "/v1/environments/dev/clusters", token=user, body={"name": "byalice", "spec": {"engine": "test"}})
    assert r.status_code == 202 and r.json()["requestedBy"] == "alice@example.com", r.text
    who = call(s, "GET", "/v1/whoami", token=user).json()
    assert who["kind"] == "user" and who["environments"] == [{"name": "dev", "role": "operator"}], who


TRICKS = ["..", "%2e%2e", "a%2Fb", "%2F", "..%2F..%2Fetc", "a" * 300, "C1", "c\u0131", "с1", "c1%00", "%ff",
          "c1;rm", "-c1", "c1.", " c1", "%20"]


def test_path_and_name_tricks(world):
    s = world
    before = snapshot(s.data_dir)
    for method, path in routes():
        params = re.findall(r"\{(\w+)\}", path)
        for p in params:
            for trick in TRICKS:
                values = {"env": "dev", "name": "c1", "file": "cluster.yml", "engine": "rke", "id": "x1",
                          "addon": "a1"}
                values[p] = trick
                url = path
                for k, v in values.items():
                    url = url.replace("{" + k + "}", v)
                r = requests.request(method, s.url + url, headers={"Authorization": f"Bearer {s.token}"},
                                     json={} if method in ("POST", "PUT") else None, timeout=30)
                assert r.status_code < 500, (method, url, r.status_code, r.text)
                if method in ("PUT", "DELETE", "POST") and p in ("env", "name", "id", "file", "addon"):
                    assert r.status_code in (400, 404, 405, 409, 413, 422), (method, url, r.status_code, r.text)
    assert snapshot(s.data_dir) == before


def test_hostile_bodies(world):
    s = world
    auth = {"Authorization": f"Bearer {s.token}", "Content-Type": "application/json"}
    url = s.url + "/v1/environments/dev/clusters"
    bodies = {
        "deep": "[" * 100000 + "]" * 100000,
        "deep-object": '{"a":' * 5000 + "1" + "}" * 5000,
        "many-values": '{"name":"x","spec":{"engine":"test","test":{' + ",".join(f'"k{i}":1' for i in range(30000)) + "}}}",
        "duplicate-keys": '{"name":"x","name":"y","spec":{"engine":"test"}}',
        "huge": '{"name":"' + "x" * (2 * 1024 * 1024) + '"}',
        "not-json": "\x00\x01\x02",
        "trailing": '{"name":"x","spec":{"engine":"test"}} {}',
        "bad-utf8": b'{"name":"\xff\xfe","spec":{"engine":"test"}}',
        "long-string": '{"name":"x","labels":{"a":"' + "b" * 70000 + '"},"spec":{"engine":"test"}}',
    }
    before = snapshot(s.data_dir)
    for what, body in bodies.items():
        r = requests.post(url, data=body if isinstance(body, bytes) else body.encode(), headers=auth, timeout=60)
        assert r.status_code in (400, 413, 422), (what, r.status_code, r.text[:300])
        assert r.headers["Content-Type"].startswith("application/problem+json"), what
        assert len(r.content) < 4096, what  # the problem never echoes the input
    assert snapshot(s.data_dir) == before


def test_canaries_stay_out_of_logs_errors_metrics_and_audit(world, tmp_path):
    s = world
    canaries = {}
    # an SSH private key, a registry password, an OIDC token, an API key
    key = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")],
                         capture_output=True)
    assert key.returncode == 0
    priv = (tmp_path / "k").read_text()
    body = "".join(line for line in priv.splitlines() if not line.startswith("-----"))
    canaries["ssh"] = body[20:60]
    assert s.post("/v1/environments/dev/sshkeys", {"name": "canary", "privateKey": priv}).status_code == 201
    canaries["password"] = "canary-Pass-0e8a51d2c9"
    assert s.post("/v1/environments/dev/secrets", {"name": "regpass", "value": canaries["password"]}).status_code == 201
    canaries["apikey"] = s.keys["do"]["token"]
    # use them, and fail with them
    requests.get(s.url + "/v1/environments/dev/clusters", headers={"Authorization": f"Bearer {canaries['apikey']}"})
    requests.get(s.url + "/v1/environments/dev/clusters",
                 headers={"Authorization": f"Bearer {canaries['apikey']}x"})
    r = s.post("/v1/environments/dev/sshkeys", {"name": "canary", "privateKey": priv})
    assert r.status_code == 409
    seen = [r.text]
    for path in ("/v1/environments/dev/sshkeys", "/v1/environments/dev/secrets", "/metrics", "/v1/audit",
                 "/v1/apikeys", "/v1/environments/dev/clusters/c1/operations"):
        seen.append(s.get(path).text)
    for name, c in canaries.items():
        for text in seen + [s.log()]:
            assert c not in text, name
