# SPDX-License-Identifier: Apache-2.0
"""The state vault seen from outside: SSH keys through the API and the CLI, the vault key file, rotation."""
import json
import os
import stat
import subprocess

# A test-only key (tests/testdata/sshkeys); its public half and fingerprint as ssh-keygen prints them.
CANARY_KEY = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testdata", "sshkeys",
                               "ossh_ed25519")).read()
CANARY_PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZej8en8l7M2DR8QaGL1JgqjfuzisBlgw2yT9MGtla3"
CANARY_FP = "SHA256:OOFCLk/BNOhiM24TwSg/K92B7OQQa6gTw3K5tSelorY"
# a piece of the private part that must never come back
CANARY_SECRET = CANARY_KEY.splitlines()[4][:37]
assert CANARY_SECRET.startswith("AAAED") and len(CANARY_SECRET) == 37


def all_state_bytes(root):
    out = b""
    for d, _, files in os.walk(root):
        for f in files:
            with open(os.path.join(d, f), "rb") as fh:
                out += fh.read()
    return out


def cli(server, *args, check=True):
    env = dict(os.environ, CLUSTERMGMT_SERVER=server.url, CLUSTERMGMT_TOKEN=server.token)
    p = subprocess.run([server.binary, *args], env=env, capture_output=True, text=True, timeout=60)
    if check:
        assert p.returncode == 0, p.stdout + p.stderr
    return p


def test_vault_key_file_generated_0600_with_warning(server):
    key = os.path.join(server.data_dir, "vault.key")
    st = os.stat(key)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert "production keys belong outside" in server.log()
    state = os.path.join(server.data_dir, "state")
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    lines = [l for l in open(key).read().splitlines() if l and not l.startswith("#")]
    assert len(lines) == 1 and len(lines[0].split()) == 2


def test_vault_key_file_reused_no_warning_on_restart(make_server):
    s = make_server().start()
    key = open(os.path.join(s.data_dir, "vault.key")).read()
    assert s.stop() == 0
    s.start()
    assert open(os.path.join(s.data_dir, "vault.key")).read() == key
    assert s.log().count("production keys belong outside") == 1


def test_sshkey_private_key_write_only(server):
    r = server.post("/v1/environments/default/sshkeys", {"name": "ops", "privateKey": CANARY_KEY})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "ops"
    assert body["publicKey"] == CANARY_PUB
    assert body["fingerprint"] == CANARY_FP
    assert "createdAt" in body and "privateKey" not in body
    assert r.headers["Location"] == "/v1/environments/default/sshkeys/ops"

    got = server.get("/v1/environments/default/sshkeys/ops")
    assert got.status_code == 200 and got.json() == body
    lst = server.get("/v1/environments/default/sshkeys")
    assert lst.json() == {"items": [body]}
    # duplicate name
    dup = server.post("/v1/environments/default/sshkeys", {"name": "ops", "generate": True})
    assert dup.status_code == 409, dup.text
    # a matching public key is accepted, a wrong one refused
    r2 = server.post("/v1/environments/default/sshkeys",
                     {"name": "ops2", "privateKey": CANARY_KEY, "publicKey": CANARY_PUB + " me@host"})
    assert r2.status_code == 201, r2.text
    r3 = server.post("/v1/environments/default/sshkeys",
                     {"name": "ops3", "privateKey": CANARY_KEY, "publicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA=="})
    assert r3.status_code == 422
    # other environments do not see it
    assert server.post("/v1/environments", {"name": "other"}).status_code == 201
    assert server.get("/v1/environments/other/sshkeys").json() == {"items": []}
    assert server.get("/v1/environments/other/sshkeys/ops").status_code == 404

    for resp in (r, got, lst, dup, r2, r3):
        assert CANARY_SECRET not in resp.text
    assert CANARY_SECRET.encode() not in all_state_bytes(server.data_dir)
    assert b"OPENSSH PRIVATE KEY" not in all_state_bytes(os.path.join(server.data_dir, "state"))

    assert server.delete("/v1/environments/default/sshkeys/ops").status_code == 204
    assert server.get("/v1/environments/default/sshkeys/ops").status_code == 404
    assert server.delete("/v1/environments/default/sshkeys/ops").status_code == 404
    assert [k["name"] for k in server.get("/v1/environments/default/sshkeys").json()["items"]] == ["ops2"]
    assert CANARY_SECRET not in server.log()


def test_sshkey_invalid_inputs_never_echo_the_key(server):
    bad = [
        ({"name": "k", "privateKey": "-----BEGIN canary-key"}, 422),
        ({"name": "k", "publicKey": CANARY_PUB}, 422),
        ({"name": "k", "generate": True, "privateKey": CANARY_KEY}, 422),
        ({"name": "K!", "privateKey": CANARY_KEY}, 422),
        ({"name": "k", "privateKey": CANARY_KEY, "extra": 1}, 422),
        ({"name": "k", "privateKey": CANARY_KEY[:-40]}, 422),
    ]
    for body, status in bad:
        r = server.post("/v1/environments/default/sshkeys", body)
        assert r.status_code == status, (body.keys(), r.text)
        assert "canary-key" not in r.text and CANARY_SECRET not in r.text
    assert server.post("/v1/environments/nope/sshkeys", {"name": "k", "generate": True}).status_code == 404
    assert "canary-key" not in server.log() and CANARY_SECRET not in server.log()
    assert server.get("/v1/environments/default/sshkeys").json() == {"items": []}


def test_sshkey_generate_via_cli(server):
    p = cli(server, "sshkey", "create", "gen", "--generate")
    assert "ssh-ed25519 AAAA" in p.stdout
    assert "PRIVATE KEY" not in p.stdout + p.stderr
    key = server.get("/v1/environments/default/sshkeys/gen").json()
    assert key["publicKey"].startswith("ssh-ed25519 AAAA")
    assert key["publicKey"] in p.stdout
    assert key["fingerprint"].startswith("SHA256:") and len(key["fingerprint"]) == 50
    p = cli(server, "-o", "json", "sshkey", "get", "gen")
    assert json.loads(p.stdout)["fingerprint"] == key["fingerprint"]
    p = cli(server, "sshkey", "list")
    assert "gen" in p.stdout and "ssh-ed25519" in p.stdout
    # the private key file path, through the CLI
    kf = os.path.join(server.data_dir, "k")
    with open(kf, "w") as f:
        f.write(CANARY_KEY)
    p = cli(server, "sshkey", "create", "fromfile", "--private-key-file", kf)
    assert CANARY_SECRET not in p.stdout + p.stderr
    assert server.get("/v1/environments/default/sshkeys/fromfile").json()["fingerprint"] == CANARY_FP
    assert CANARY_SECRET not in server.log()


def test_sshkey_list_pages(server):
    names = ["a", "a-b", "b", "c1", "z"]
    for n in reversed(names):
        assert server.post("/v1/environments/default/sshkeys", {"name": n, "generate": True}).status_code == 201
    seen, token = [], None
    while True:
        q = "?limit=2" + (f"&pageToken={token}" if token else "")
        page = server.get("/v1/environments/default/sshkeys" + q).json()
        seen += [k["name"] for k in page["items"]]
        token = page.get("nextPageToken")
        if not token:
            break
    assert seen == names


def test_rotate_key_offline(make_server):
    s = make_server().start()
    assert s.post("/v1/environments/default/sshkeys", {"name": "ops", "privateKey": CANARY_KEY}).status_code == 201
    assert s.stop() == 0
    key_file = os.path.join(s.data_dir, "vault.key")
    old = open(key_file).read()
    p = subprocess.run([s.binary, "vault", "rotate-key", "--state-dir", os.path.join(s.data_dir, "state"),
                        "--vault-key-file", key_file], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "re-wrapped" in p.stdout
    new = open(key_file).read()
    assert new != old and stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    s.start()
    assert s.get("/v1/environments/default/sshkeys/ops").json()["fingerprint"] == CANARY_FP
    # a missing flag is a usage error
    p = subprocess.run([s.binary, "vault", "rotate-key"], capture_output=True, text=True, timeout=60,
                       env={k: v for k, v in os.environ.items() if not k.startswith("CLUSTERMGMT_")})
    assert p.returncode == 2


def test_custom_state_dir_and_key_file(make_server, tmp_path):
    sd, kf = tmp_path / "vol" / "state", tmp_path / "keys" / "vault.key"
    os.makedirs(kf.parent, mode=0o700)
    s = make_server(extra_args=["--state-dir", str(sd), "--vault-key-file", str(kf),
                                "--state-retention-days", "7"]).start()
    assert s.post("/v1/environments/default/sshkeys", {"name": "ops", "generate": True}).status_code == 201
    assert kf.exists() and sd.exists()
    assert not os.path.exists(os.path.join(s.data_dir, "vault.key"))
