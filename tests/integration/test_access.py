# SPDX-License-Identifier: Apache-2.0
"""API keys, role bindings per environment, and the hash-chained audit log, through the API and the CLI."""
import json
import os
import sqlite3
import subprocess

import pytest
import requests

ENVS = "/v1/environments"


def as_token(s, token):
    """A session of s's server under another API key."""
    sess = requests.Session()
    sess.headers["Authorization"] = f"Bearer {token}"

    def req(method, path, **kw):
        kw.setdefault("timeout", 30)
        return sess.request(method, s.url + path, **kw)
    return req


def new_key(s, name, roles=None, global_admin=False, **extra):
    body = {"name": name, "roles": roles or [], "globalAdmin": global_admin}
    body.update(extra)
    r = s.post("/v1/apikeys", body)
    assert r.status_code == 201, r.text
    k = r.json()
    assert k["token"].startswith("cmk_") and len(k["token"]) >= 36, k
    return k


def cli(s, *args, token=None):
    env = dict(os.environ, CLUSTERMGMT_SERVER=s.url, CLUSTERMGMT_TOKEN=token or s.token)
    return subprocess.run([s.binary, *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def two_envs(server):
    for env in ("dev", "prod"):
        assert server.post(ENVS, {"name": env}).status_code == 201
    return server


def test_roles_per_environment(two_envs):
    s = two_envs
    viewer = new_key(s, "dev-viewer", roles=[{"environment": "dev", "role": "viewer"}])
    op = new_key(s, "dev-operator", roles=[{"environment": "dev", "role": "operator"}], owner="ci")
    v, o = as_token(s, viewer["token"]), as_token(s, op["token"])
    spec = {"name": "c1", "spec": {"engine": "test"}}

    # viewer: reads dev, cannot write (403), does not see prod at all (404, as if it did not exist)
    assert v("GET", f"{ENVS}/dev/clusters").status_code == 200
    r = v("POST", f"{ENVS}/dev/clusters", json=spec)
    assert r.status_code == 403 and "operator" in r.json()["detail"], r.text
    for path in (f"{ENVS}/prod", f"{ENVS}/prod/clusters", f"{ENVS}/nope/clusters"):
        r = v("GET", path)
        assert r.status_code == 404, (path, r.text)
    assert [e["name"] for e in v("GET", ENVS).json()["items"]] == ["dev"]
    # global routes need the global admin role
    for method, path in (("POST", ENVS), ("GET", "/v1/apikeys"), ("GET", "/v1/audit/verify"),
                         ("GET", "/v1/rolebindings")):
        r = v(method, path, json={"name": "x"} if method == "POST" else None)
        assert r.status_code == 403, (path, r.text)

    # operator: writes in dev; an operation of dev is reachable, one of prod is not
    r = o("POST", f"{ENVS}/dev/clusters", json=spec)
    assert r.status_code == 202, r.text
    dev_op = r.json()["id"]
    assert o("GET", f"/v1/operations/{dev_op}").status_code == 200
    r = s.post(f"{ENVS}/prod/clusters", {"name": "p1", "spec": {"engine": "test"}})
    prod_op = r.json()["id"]
    for method, path in (("GET", f"/v1/operations/{prod_op}"), ("GET", f"/v1/operations/{prod_op}/log"),
                         ("POST", f"/v1/operations/{prod_op}/cancel")):
        r = o(method, path)
        assert r.status_code == 404 and prod_op in r.text, (path, r.text)
    # admin-only routes in an environment: operator is not enough
    assert o("GET", f"{ENVS}/dev/clusters/c1/state").status_code == 403
    who = o("GET", "/v1/whoami").json()
    assert who["globalRole"] == "none" and who["environments"] == [{"name": "dev", "role": "operator"}], who

    # a binding in prod takes effect at once, and its deletion too
    r = s.post("/v1/rolebindings", {"environment": "prod", "subject": {"kind": "apikey", "name": viewer["id"]},
                                    "role": "viewer"})
    assert r.status_code == 201, r.text
    assert v("GET", f"{ENVS}/prod/clusters").status_code == 200
    assert s.delete(f"/v1/rolebindings/{r.json()['id']}").status_code == 204
    assert v("GET", f"{ENVS}/prod/clusters").status_code == 404
    # "*" grants every environment
    r = s.post("/v1/rolebindings", {"environment": "*", "subject": {"kind": "apikey", "name": viewer["id"]},
                                    "role": "viewer"})
    assert r.status_code == 201 and v("GET", f"{ENVS}/prod/clusters").status_code == 200

    keys = {k["id"]: k for k in s.get("/v1/apikeys").json()["items"]}
    assert keys[op["id"]]["owner"] == "ci" and keys[op["id"]]["lastUsedAt"], keys[op["id"]]
    assert "token" not in json.dumps(keys) and "hash" not in json.dumps(keys)

    # revocation is immediate (no 5 s cache) and shows in the list
    assert s.delete(f"/v1/apikeys/{op['id']}").status_code == 204
    r = o("GET", f"{ENVS}/dev/clusters")
    assert r.status_code == 401, r.text
    assert {k["id"]: k for k in s.get("/v1/apikeys").json()["items"]}[op["id"]]["revoked"] is True


def test_key_and_binding_validation(two_envs):
    s = two_envs
    for body, field in (({"name": "x"}, "roles"),
                        ({"name": "Bad Name", "globalAdmin": True}, "name"),
                        ({"name": "x", "roles": [{"environment": "nope", "role": "viewer"}]}, "roles[0].environment"),
                        ({"name": "x", "roles": [{"environment": "dev", "role": "root"}]}, "roles[0].role"),
                        ({"name": "x", "roles": [{"environment": "dev", "role": "viewer"},
                                                 {"environment": "dev", "role": "admin"}]}, "roles[1]"),
                        ({"name": "x", "expiresInDays": 0, "globalAdmin": True}, "expiresInDays"),
                        ({"name": "x", "globalAdmin": True, "token": "mine"}, "token")):
        r = s.post("/v1/apikeys", body)
        assert r.status_code == 422, (body, r.text)
        assert field in {e["field"] for e in r.json()["errors"]}, (body, r.text)
    r = s.post("/v1/rolebindings", {"environment": "dev", "subject": {"kind": "robot", "name": "x"}, "role": "viewer"})
    assert r.status_code == 422 and "subject.kind" in r.text, r.text
    b = {"environment": "dev", "subject": {"kind": "group", "name": "platform"}, "role": "operator"}
    assert s.post("/v1/rolebindings", b).status_code == 201
    assert s.post("/v1/rolebindings", b).status_code == 409
    # the only global admin key cannot be revoked (nobody could administer the service)
    admin_id = [k for k in s.get("/v1/apikeys").json()["items"] if k["globalAdmin"]][0]["id"]
    r = s.delete(f"/v1/apikeys/{admin_id}")
    assert r.status_code == 409 and "last" in r.text, r.text


def audit(s):
    r = s.get("/v1/audit")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/x-ndjson"), r.text
    return [json.loads(line) for line in r.text.splitlines()]


def test_audit_records_changes_secret_reads_and_failures(two_envs):
    s = two_envs
    canary = "cmk_canary_" + "Z" * 30
    assert s.post(f"{ENVS}/dev/clusters", {"name": "a", "spec": {"engine": "test"}}).status_code == 202
    assert s.post(f"{ENVS}/dev/clusters", {"name": "a", "spec": {"engine": "test"}}).status_code == 409
    assert s.get(f"{ENVS}/dev/clusters/a/kubeconfig").status_code in (200, 404)
    assert requests.get(s.url + f"{ENVS}/dev/clusters", headers={"Authorization": f"Bearer {canary}"},
                        timeout=10).status_code == 401
    recs = audit(s)
    by_action = {}
    for rec in recs:
        by_action.setdefault(rec["action"], []).append(rec)
    creates = by_action["POST /v1/environments/{env}/clusters"]
    assert [c["outcome"] for c in creates] == ["committed", "refused"], creates
    assert creates[1]["status"] == 409 and creates[0]["resource"] == "/v1/environments/dev/clusters"
    assert creates[0]["principal"].startswith("apikey:key_") and creates[0]["source"] == "127.0.0.1"
    assert creates[0]["requestId"]
    # the create's record is in the transaction of the change: the cluster exists with it
    assert s.get(f"{ENVS}/dev/clusters/a").status_code == 200
    reads = by_action["GET /v1/environments/{env}/clusters/{name}/kubeconfig"]
    assert len(reads) == 1 and reads[0]["outcome"] in ("success", "denied"), reads
    fails = [rec for rec in recs if rec["principal"] == "anonymous"]
    assert fails and fails[-1]["status"] == 401 and fails[-1]["outcome"] == "denied", fails
    assert canary not in json.dumps(recs) and canary not in s.log()
    # plain reads are not recorded (only the failed authentication of one)
    assert [r["principal"] for r in by_action["GET /v1/environments/{env}/clusters"]] == ["anonymous"]
    # the chain links every record to the one before it
    for a, b in zip(recs, recs[1:]):
        assert b["seq"] == a["seq"] + 1 and b["prevHash"] == a["hash"]
    v = s.get("/v1/audit/verify").json()
    assert v["ok"] and v["records"] == len(recs) and v["lastHash"] == recs[-1]["hash"], v

    p = cli(s, "audit", "export")
    assert p.returncode == 0 and [json.loads(line) for line in p.stdout.splitlines()] == recs[:len(p.stdout.splitlines())]
    assert len(p.stdout.splitlines()) >= len(recs)
    p = cli(s, "audit", "verify")
    assert p.returncode == 0 and "intact" in p.stdout, p.stdout + p.stderr


@pytest.mark.parametrize("tamper,expect", [
    ("UPDATE audit SET resource = '/v1/environments/other' WHERE seq = 2", "altered"),
    ("DELETE FROM audit WHERE seq = 2", "missing"),
    ("UPDATE audit SET seq = CASE seq WHEN 2 THEN 3 WHEN 3 THEN 2 END WHERE seq IN (2, 3)", None),
])
def test_audit_verify_detects_tampering(make_server, tamper, expect):
    s = make_server().start()
    for env in ("a1", "a2", "a3", "a4"):
        assert s.post(ENVS, {"name": env}).status_code == 201
    assert s.get("/v1/audit/verify").json()["ok"]
    assert s.stop() == 0
    db = sqlite3.connect(os.path.join(s.data_dir, "clustermgmt.db"))
    if "CASE" in tamper:
        # swap two records (their contents trade places, seq kept in order)
        rows = {r[0]: r for r in db.execute("SELECT * FROM audit WHERE seq IN (2, 3)")}
        cols = [c[1] for c in db.execute("PRAGMA table_info(audit)")]
        db.execute("DELETE FROM audit WHERE seq IN (2, 3)")
        for seq, src in ((2, rows[3]), (3, rows[2])):
            vals = list(src)
            vals[0] = seq
            db.execute(f"INSERT INTO audit ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", vals)
    else:
        db.execute(tamper)
    db.commit()
    db.close()
    s.start()
    v = s.get("/v1/audit/verify").json()
    assert not v["ok"] and v["problemCount"] >= 1, v
    if expect:
        assert any(expect in p["problem"] for p in v["problems"]), v
    p = cli(s, "audit", "verify")
    assert p.returncode == 1 and "BROKEN" in p.stdout, p.stdout


def test_cli_apikeys_and_bindings(two_envs):
    s = two_envs
    p = cli(s, "apikey", "create", "robot", "--role", "dev=operator", "--owner", "ci-system")
    assert p.returncode == 0, p.stderr
    token = p.stdout.strip()
    assert token.startswith("cmk_") and "created" in p.stderr and token not in p.stderr
    p = cli(s, "whoami", "show", token=token)
    assert p.returncode == 0 and "dev: operator" in p.stdout, p.stdout + p.stderr
    p = cli(s, "apikey", "list")
    assert p.returncode == 0 and p.stdout.split()[:6] == ["ID", "NAME", "ROLES", "STATE", "LAST", "USED"], p.stdout
    assert "dev=operator" in p.stdout and token not in p.stdout
    key_id = next(k["id"] for k in s.get("/v1/apikeys").json()["items"] if k["name"] == "robot")
    p = cli(s, "rolebinding", "create", "--environment", "prod", "--role", "viewer", "--apikey", key_id)
    assert p.returncode == 0, p.stderr
    p = cli(s, "rolebinding", "list")
    assert p.returncode == 0 and f"apikey:{key_id}" in p.stdout, p.stdout
    p = cli(s, "apikey", "revoke", key_id)
    assert p.returncode == 0 and "revoked" in p.stdout, p.stderr
    p = cli(s, "whoami", "show", token=token)
    assert p.returncode == 1 and "not valid" in p.stderr, p.stderr
