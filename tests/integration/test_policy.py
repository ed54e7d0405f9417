# SPDX-License-Identifier: Apache-2.0
"""Compliance validation of cluster specs through the API: built-in rules, per-environment settings,
re-validation, and a real OPA server as the remote Policy Management Service (TLS, bearer token) giving
the same decisions as the built-in rules.

Servers run without workers: admission is what is tested, nothing needs to be built.
"""
import json
import os
import subprocess
import time

import pytest

from opa_server import OpaServer, opa_binary
from test_rke_engine import rke_binary

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def node(address, *roles, key="ops"):
    return {"address": address, "user": "ops", "roles": list(roles), "sshKey": key}


def rke(nodes, **extra):
    r = {"nodes": nodes}
    r.update(extra)
    return {"engine": "rke", "rke": r}


THREE = [node("10.0.0.1", "controlplane", "etcd"), node("10.0.0.2", "etcd"), node("10.0.0.3", "etcd", "worker")]
TWO = [node("10.0.0.1", "controlplane", "etcd"), node("10.0.0.2", "etcd", "worker")]
ONE = [node("10.0.0.1", "controlplane", "etcd", "worker")]


def start(make_server, *extra):
    return make_server(extra_args=["--workers", "0", "--rke-path", rke_binary(), *extra]).start()


@pytest.fixture
def server(make_server):
    return start(make_server)


def rules_of(r):
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["type"].endswith("/policy-violation"), body
    return {(e["field"], e["reason"].split("]")[0].lstrip("[")) for e in body["errors"]}


def create(s, name, spec, env="default", labels=None):
    body = {"name": name, "spec": spec}
    if labels:
        body["labels"] = labels
    return s.post(f"/v1/environments/{env}/clusters", body)


def test_production_quorum_denied_and_nothing_stored(server):
    s = server
    assert s.post("/v1/environments", {"name": "prod", "labels": {"tier": "production"}}).status_code == 201
    r = create(s, "east", rke(ONE), env="prod")
    assert rules_of(r) == {("spec.rke.nodes", "production-etcd-quorum")}, r.text
    assert "at least 3 etcd nodes" in r.text
    assert s.get("/v1/environments/prod/clusters/east").status_code == 404
    assert s.get("/v1/environments/prod/clusters").json()["items"] == []
    # Three etcd nodes pass; the decision is recorded with the operation.
    r = create(s, "east", rke(THREE), env="prod")
    assert r.status_code == 202, r.text
    op = r.json()
    assert op["policy"]["mode"] == "builtin" and op["policy"]["deny"] == [], op
    assert s.get(f"/v1/operations/{op['id']}").json()["policy"] == op["policy"]


def test_warnings_are_admitted_and_shown(server, tmp_path):
    r = create(server, "even", rke(TWO))
    assert r.status_code == 202, r.text
    warn = r.json()["policy"]["warn"]
    assert [w["rule"] for w in warn] == ["odd-etcd-count"], warn
    assert warn[0]["message"], warn
    # The CLI shows them when the change is accepted.
    f = tmp_path / "even2.json"
    f.write_text(json.dumps({"spec": rke(TWO)}))
    p = cli(server, "cluster", "create", "even2", "-f", str(f))
    assert p.returncode == 0, p.stderr
    assert "warning: [odd-etcd-count] " in p.stderr and "(spec.rke.nodes)" in p.stderr, p.stderr


def test_environment_settings_take_effect(server):
    s = server
    doc = s.get("/v1/environments/default/policies")
    assert doc.status_code == 200, doc.text
    body = doc.json()
    assert body["mode"] == "builtin" and body["version"] == 0 and doc.headers["ETag"] == '"0"'
    ids = {r["id"] for r in body["rules"]}
    assert {"etcd-snapshots", "production-etcd-quorum", "supported-version", "node-cidrs",
            "unique-node-addresses", "odd-etcd-count", "required-labels", "max-nodes"} <= ids, ids

    outside = rke([node("192.168.1.5", "controlplane", "etcd", "worker")])
    assert create(s, "a", outside).status_code == 202
    r = s.put("/v1/environments/default/policies",
              {"rules": {"node-cidrs": {"params": {"cidrs": ["10.0.0.0/8", "fd00::/8"]}}}},
              headers={"If-Match": '"0"'})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1 and r.headers["ETag"] == '"1"'
    cidrs = next(x for x in r.json()["rules"] if x["id"] == "node-cidrs")
    assert cidrs["params"]["cidrs"] == ["10.0.0.0/8", "fd00::/8"] and cidrs["defaults"]["cidrs"] == [], cidrs
    assert ("spec.rke.nodes[0].address", "node-cidrs") in rules_of(create(s, "b", outside))
    assert create(s, "c", rke(ONE)).status_code == 202
    # An update is checked too, and a refused one changes nothing.
    cur = s.get("/v1/environments/default/clusters/c").json()
    r = s.put("/v1/environments/default/clusters/c", {"spec": outside},
              headers={"If-Match": f'"{cur["resourceVersion"]}"'})
    assert ("spec.rke.nodes[0].address", "node-cidrs") in rules_of(r)
    assert s.get("/v1/environments/default/clusters/c").json()["spec"] == cur["spec"]

    # Stale If-Match: 412; switching the rule off (deny -> off) admits again; effect warn admits with a warning.
    r = s.put("/v1/environments/default/policies", {"rules": {}}, headers={"If-Match": '"0"'})
    assert r.status_code == 412, r.text
    r = s.put("/v1/environments/default/policies",
              {"rules": {"node-cidrs": {"effect": "warn", "params": {"cidrs": ["10.0.0.0/8"]}}}})
    assert r.status_code == 200, r.text
    r = create(s, "d", outside)
    assert r.status_code == 202 and [w["rule"] for w in r.json()["policy"]["warn"]] == ["node-cidrs"], r.text
    r = s.put("/v1/environments/default/policies", {"rules": {"node-cidrs": {"enabled": False}}})
    assert r.status_code == 200 and create(s, "e", outside).status_code == 202


@pytest.mark.parametrize("body,field", [
    ({"rules": {"nope": {}}}, "rules.nope"),
    ({"rules": {"node-cidrs": {"params": {"cidrs": ["10.0.0.0/33"]}}}}, "rules.node-cidrs.params.cidrs[0]"),
    ({"rules": {"node-cidrs": {"effect": "block"}}}, "rules.node-cidrs.effect"),
    ({"rules": {"max-nodes": {"params": {"max": "ten"}}}}, "rules.max-nodes.params.max"),
    ({"rules": {"max-nodes": {"params": {"maximum": 3}}}}, "rules.max-nodes.params.maximum"),
    ({"rules": [], "x": 1}, "x"),
])
def test_bad_settings_are_422_with_the_field(server, body, field):
    r = server.put("/v1/environments/default/policies", body)
    assert r.status_code == 422, r.text
    assert field in {e["field"] for e in r.json()["errors"]}, r.text
    assert server.get("/v1/environments/default/policies").json()["version"] == 0


def cli(s, *args):
    env = dict(os.environ, CLUSTERMGMT_SERVER=s.url, CLUSTERMGMT_TOKEN=s.token)
    return subprocess.run([s.binary, *args], env=env, capture_output=True, text=True, timeout=60)


def test_check_revalidates_existing_clusters(server):
    s = server
    assert create(s, "ok", rke(THREE), labels={"team": "a"}).status_code == 202
    assert create(s, "nolabel", rke(THREE)).status_code == 202
    rep = s.post("/v1/environments/default/policies/check")
    assert rep.status_code == 200, rep.text
    assert rep.json()["checked"] == 2 and rep.json()["violations"] == 0, rep.text
    cond = {c["type"]: c for c in s.get("/v1/environments/default/clusters/nolabel").json()["status"]["conditions"]}
    assert cond["PolicyCompliant"]["status"] == "True", cond

    # A new rule makes an existing cluster non-compliant: the check says so and sets the condition.
    f = os.path.join(s.data_dir, "policy.yaml")
    with open(f, "w") as fh:
        fh.write("rules:\n  required-labels:\n    params: {keys: [team]}\n")
    p = cli(s, "policy", "set", "-f", f)
    assert p.returncode == 0 and "required-labels" in p.stdout, p.stdout + p.stderr
    p = cli(s, "policy", "check")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "nolabel: VIOLATES" in p.stdout and "[required-labels]" in p.stdout and "ok: compliant" in p.stdout, p.stdout
    cond = {c["type"]: c for c in s.get("/v1/environments/default/clusters/nolabel").json()["status"]["conditions"]}
    assert cond["PolicyCompliant"]["status"] == "False" and cond["PolicyCompliant"]["reason"] == "PolicyViolation"
    rep = json.loads(cli(s, "-o", "json", "policy", "check").stdout)
    assert rep["violations"] == 1 and rep["checked"] == 2, rep
    p = cli(s, "policy", "get")
    assert p.returncode == 0 and p.stdout.split()[:4] == ["RULE", "ENABLED", "EFFECT", "PARAMS"], p.stdout


# --- remote mode: a real OPA server with the shipped Rego bundle ---

T = {"team": "x"}
SPECS = [
    ("quorum-1", "prod", rke(ONE), T),
    ("quorum-3", "prod", rke(THREE), T),
    ("even", "default", rke(TWO), T),
    ("snapoff", "default", rke(THREE, etcdSnapshots={"enabled": False}), T),
    ("short", "default", rke(THREE, etcdSnapshots={"enabled": True, "intervalHours": 1, "retentionHours": 2}), T),
    ("cidr-out", "default", rke([node("192.168.7.1", "controlplane", "etcd", "worker")]), T),
    ("host", "default", rke([node("node-1.example.com", "controlplane", "etcd", "worker")]), T),
    ("v-old", "default", dict(rke(THREE), kubernetesVersion="v1.30.14-rancher1-1"), T),
    ("v-ok", "default", dict(rke(THREE), kubernetesVersion="v1.32.7-rancher1-1"), T),
    ("nolabel", "default", rke(ONE), None),
    ("labelled", "default", rke(ONE), T),
    ("local-prod", "prod", {"engine": "local", "local": {"nodes": 3}}, T),
    ("local-big", "default", {"engine": "local", "local": {"nodes": 50}}, T),
    ("many", "default", rke(TWO + [node(f"10.0.1.{i}", "worker") for i in range(30)]), T),
]
SETTINGS = {"rules": {
    "node-cidrs": {"params": {"cidrs": ["10.0.0.0/8"]}},
    "required-labels": {"params": {"keys": ["team"]}},
    "supported-version": {"params": {"minimum": "v1.31.0"}},
    "etcd-snapshots": {"params": {"minRetentionHours": 12}},
    "max-nodes": {"params": {"max": 20}},
}}


def decisions(s):
    """The decision for each spec: ('deny', sorted (rule, field)) or ('ok', sorted warn rules)."""
    assert s.post("/v1/environments", {"name": "prod", "labels": {"tier": "production"}}).status_code == 201
    for env in ("default", "prod"):
        assert s.put(f"/v1/environments/{env}/policies", SETTINGS).status_code == 200
    out = {}
    for name, env, spec, labels in SPECS:
        r = create(s, name, spec, env=env, labels=labels)
        if r.status_code == 422 and r.json()["type"].endswith("/policy-violation"):
            out[name] = ("deny", sorted(rules_of(r)), sorted(e["reason"] for e in r.json()["errors"]))
        else:
            assert r.status_code == 202, r.text
            out[name] = ("ok", sorted((w["rule"], w.get("field", ""), w["message"]) for w in r.json()["policy"]["warn"]))
    return out


@pytest.fixture
def opa(tmp_path):
    o = OpaServer(tmp_path / "opa", bundles=[os.path.join(REPO, "policy")])
    o.start()
    yield o
    o.stop()


def test_remote_opa_gives_the_same_decisions(make_server, opa):
    builtin = decisions(start(make_server))
    remote_server = start(make_server, "--policy-url", opa.url("cratekube/cluster"),
                          "--policy-token-file", opa.token_file, "--policy-ca-file", opa.ca_file)
    remote = decisions(remote_server)
    assert remote == builtin
    # the table exercises denials, warnings and clean admissions
    assert {d[0] for d in builtin.values()} == {"deny", "ok"}, builtin
    assert builtin["even"][0] == "ok" and builtin["even"][1], builtin["even"]
    assert builtin["labelled"] == ("ok", []), builtin["labelled"]
    assert sum(d[0] == "deny" for d in builtin.values()) >= 8, builtin
    r = create(remote_server, "again", rke(THREE), labels={"team": "x"})
    assert r.status_code == 202 and r.json()["policy"]["mode"] == "remote", r.text
    assert opa.token() not in remote_server.log()


def test_remote_unreachable_fails_closed_or_open(make_server, opa):
    closed = start(make_server, "--policy-url", opa.url("cratekube/cluster"), "--policy-token-file",
                   opa.token_file, "--policy-ca-file", opa.ca_file, "--policy-timeout-ms", "1500")
    opened = start(make_server, "--policy-url", opa.url("cratekube/cluster"), "--policy-token-file",
                   opa.token_file, "--policy-ca-file", opa.ca_file, "--policy-failure-mode", "open")
    assert create(closed, "up", rke(THREE), labels={"team": "x"}).status_code == 202
    opa.stop()
    r = create(closed, "down", rke(THREE))
    assert r.status_code == 503, r.text
    assert r.json()["type"].endswith("/policy-unavailable") and "nothing was changed" in r.json()["detail"], r.text
    assert closed.get("/v1/environments/default/clusters/down").status_code == 404
    r = create(opened, "down", rke(THREE))
    assert r.status_code == 202, r.text
    pol = r.json()["policy"]
    assert pol["mode"] == "remote-unavailable" and [w["rule"] for w in pol["warn"]] == ["policy-service"], pol
    # A wrong token is not an outage to paper over: closed refuses, naming the cause.
    opa.start()
    bad = os.path.join(opa.dir, "wrong-token")
    with open(bad, "w") as f:
        f.write("not-the-token\n")
    for mode in ("closed", "open"):
        wrong = start(make_server, "--policy-url", opa.url("cratekube/cluster"), "--policy-token-file", bad,
                      "--policy-ca-file", opa.ca_file, "--policy-failure-mode", mode)
        r = create(wrong, "x", rke(THREE))
        assert r.status_code == 503 and ("401" in r.text or "token" in r.text), (mode, r.text)
        assert "not-the-token" not in r.text + wrong.log()
    # ...and so is a URL that names no policy package (OPA answers it without a result).
    typo = start(make_server, "--policy-url", opa.url("cratekube/clustr"), "--policy-token-file", opa.token_file,
                 "--policy-ca-file", opa.ca_file, "--policy-failure-mode", "open")
    r = create(typo, "x", rke(THREE))
    assert r.status_code == 503 and "package" in r.text, r.text


def test_periodic_revalidation_sets_the_condition(make_server):
    s = start(make_server, "--policy-recheck-seconds", "1")
    assert create(s, "drift", rke(THREE)).status_code == 202
    r = s.put("/v1/environments/default/policies", {"rules": {"max-nodes": {"params": {"max": 2}}}})
    assert r.status_code == 200, r.text
    deadline = time.time() + 30
    cond = {}
    while time.time() < deadline:
        conds = s.get("/v1/environments/default/clusters/drift").json()["status"]["conditions"]
        cond = next((c for c in conds if c["type"] == "PolicyCompliant"), {})
        if cond.get("status") == "False":
            break
        time.sleep(0.2)
    assert cond.get("status") == "False" and "[max-nodes]" in cond["message"], cond
    # Unchanged results are not written again: the cluster's resourceVersion stays put.
    rv = s.get("/v1/environments/default/clusters/drift").json()["resourceVersion"]
    time.sleep(2.5)
    assert s.get("/v1/environments/default/clusters/drift").json()["resourceVersion"] == rv
