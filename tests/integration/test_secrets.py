# SPDX-License-Identifier: Apache-2.0
"""Write-only secrets of an environment and their use as private registry passwords by the rke engine.

The registry password is a planted canary: it must reach cluster.yml (the file rke reads, kept in the
vault and readable only by admins through the state route) and nothing else: no operation log, no
service log, no other API response, no clear bytes under the state dir.
"""
import os
import subprocess

import pytest

from test_rke_engine import closed_port, rke_binary, spec, state_files

SECRETS = "/v1/environments/default/secrets"
CANARY = "canary-Registry-Pass-7f3e9d2b1a"


def cli(server, *args, stdin=None):
    env = dict(os.environ, CLUSTERMGMT_SERVER=server.url, CLUSTERMGMT_TOKEN=server.token)
    return subprocess.run([server.binary, *args], env=env, capture_output=True, text=True, timeout=60,
                          input=stdin)


def test_secrets_are_write_only(server):
    r = server.post(SECRETS, {"name": "regpass", "value": CANARY})
    assert r.status_code == 201, r.text
    rec = r.json()
    assert rec["name"] == "regpass" and rec["size"] == len(CANARY) and rec["createdAt"] == rec["updatedAt"]
    assert r.headers["Location"] == f"{SECRETS}/regpass"
    assert server.post(SECRETS, {"name": "regpass", "value": "x"}).status_code == 409
    listed = server.get(SECRETS).json()["items"]
    assert [i["name"] for i in listed] == ["regpass"], listed
    assert server.get(f"{SECRETS}/regpass").json() == rec

    r = server.put(f"{SECRETS}/regpass", {"value": CANARY + "-2"})
    assert r.status_code == 200, r.text
    assert r.json()["size"] == len(CANARY) + 2 and r.json()["createdAt"] == rec["createdAt"], r.text
    assert server.put(f"{SECRETS}/nope", {"value": "x"}).status_code == 404

    for body, field in (({"name": "Bad_Name", "value": "x"}, "name"), ({"name": "a"}, "value"),
                        ({"name": "a", "value": ""}, "value"), ({"name": "a", "value": 5}, "value"),
                        ({"name": "a", "value": "x", "extra": 1}, "extra")):
        r = server.post(SECRETS, body)
        assert r.status_code == 422, (body, r.text)
        assert field in {e["field"] for e in r.json()["errors"]}, r.text
        assert "x" * 20 not in r.text
    assert server.put(f"{SECRETS}/regpass", {"name": "regpass", "value": "x"}).status_code == 422
    # past the longest string a body may hold: refused by the JSON limits, without echoing it
    r = server.post(SECRETS, {"name": "a", "value": "x" * 65537})
    assert r.status_code == 413 and "x" * 20 not in r.text, r.text

    # The value is only in the vault, encrypted.
    for path in state_files(server.data_dir):
        with open(path, "rb") as f:
            assert CANARY.encode() not in f.read(), path
    assert CANARY not in server.log()

    assert server.delete(f"{SECRETS}/regpass").status_code == 204
    assert server.get(f"{SECRETS}/regpass").status_code == 404
    assert server.delete(f"{SECRETS}/regpass").status_code == 404
    assert server.get(SECRETS).json()["items"] == []


def test_secret_cli(server, tmp_path):
    p = cli(server, "secret", "create", "pw", "--from-file", "-", stdin=CANARY + "\n")
    assert p.returncode == 0 and p.stdout == "secret pw created\n", p.stdout + p.stderr
    assert server.get(f"{SECRETS}/pw").json()["size"] == len(CANARY)  # the newline was dropped
    f = tmp_path / "pw"
    f.write_text("second\r\n")
    p = cli(server, "secret", "update", "pw", "--from-file", str(f))
    assert p.returncode == 0, p.stderr
    assert server.get(f"{SECRETS}/pw").json()["size"] == len("second")
    p = cli(server, "secret", "list")
    assert p.returncode == 0 and p.stdout.splitlines()[0].split() == ["NAME", "SIZE", "UPDATED", "AGE"], p.stdout
    assert p.stdout.splitlines()[1].split()[:2] == ["pw", "6"], p.stdout
    p = cli(server, "secret", "create", "pw2")
    assert p.returncode == 2 and "--from-file" in p.stderr, p.stderr
    p = cli(server, "secret", "create", "pw", "--from-file", "-", stdin="x")
    assert p.returncode == 1 and "already exists" in p.stderr, p.stderr
    p = cli(server, "secret", "delete", "pw")
    assert p.returncode == 0 and "deleted" in p.stdout, p.stderr
    assert CANARY not in p.stdout + p.stderr


@pytest.fixture
def rke_server(make_server):
    s = make_server(extra_args=["--rke-path", rke_binary(), "--max-attempts", "1"]).start()
    r = s.post("/v1/environments/default/sshkeys", {"name": "ops", "generate": True})
    assert r.status_code == 201, r.text
    return s


def registry_spec():
    return spec(closed_port(), privateRegistries=[
        {"url": "registry.example.com:5000"},
        {"url": "private.example.com", "user": "puller", "passwordSecret": "regpass"},
    ])


def test_registry_password_reaches_cluster_yml_only(rke_server):
    s = rke_server
    seen = []
    # The secret does not exist yet: the operation fails before rke runs, saying what to do.
    r = s.post("/v1/environments/default/clusters", {"name": "reg", "spec": registry_spec()})
    assert r.status_code == 202, r.text
    op = s.wait_op(r.json()["id"], timeout=60)
    assert op["state"] == "failed" and "secret create regpass" in op["error"], op
    log = s.get(f"/v1/operations/{op['id']}/log").text
    assert "running rke up" not in log, log
    assert s.delete("/v1/environments/default/clusters/reg").status_code == 202

    assert s.post(SECRETS, {"name": "regpass", "value": CANARY}).status_code == 201
    r = s.post("/v1/environments/default/clusters", {"name": "reg2", "spec": registry_spec()})
    assert r.status_code == 202, r.text
    op = s.wait_op(r.json()["id"], timeout=60)
    log = s.get(f"/v1/operations/{op['id']}/log").text
    assert op["state"] == "failed" and op["error"].startswith("rke up failed: "), (op, log)
    assert "running rke up" in log, log

    # rke was given the password: cluster.yml as kept in the vault (an admin read) carries it.
    yml = s.get("/v1/environments/default/clusters/reg2/state/cluster.yml")
    assert yml.status_code == 200, yml.text
    assert 'user: "puller"' in yml.text and f'password: "{CANARY}"' in yml.text, yml.text

    # ...and nothing else does.
    for path in ("/v1/environments/default/clusters/reg2", "/v1/environments/default/clusters",
                 f"/v1/operations/{op['id']}", f"/v1/operations/{op['id']}/log",
                 "/v1/environments/default/clusters/reg2/operations", "/v1/environments/default/clusters/reg2/state",
                 SECRETS, f"{SECRETS}/regpass"):
        r = s.get(path)
        seen.append(r.text)
        assert r.status_code == 200, (path, r.text)
    assert not any(CANARY in t for t in seen)
    assert CANARY not in s.log()
    for path in state_files(s.data_dir):
        with open(path, "rb") as f:
            assert CANARY.encode() not in f.read(), path
    assert not os.listdir(os.path.join(s.data_dir, "rke-runs"))
