# SPDX-License-Identifier: Apache-2.0
"""The built-in policy rules (C) and the shipped Rego bundle (policy/) decide alike.

Every input goes through `policy-eval` (the built-in evaluator, built beside the testbin) and through
the real OPA binary (./bin/opa, `make tools`) with the bundle; both decisions must be identical, messages
included. The table says which rules each case trips, so that a case that trips nothing by mistake is
noticed; a seeded generator adds a few hundred inputs of mixed-up types on top.
"""
import copy
import json
import os
import random
import subprocess

import pytest

from conftest import REPO_ROOT

OPA = os.path.join(REPO_ROOT, "bin", "opa")
BUNDLE = os.path.join(REPO_ROOT, "policy")
QUERY = "data.cratekube.cluster"

RKE_VERSIONS = ["v1.32.7-rancher1-1", "v1.31.11-rancher1-1", "v1.30.14-rancher1-1"]
RKE_DEFAULT = "v1.32.7-rancher1-1"
ALL_ROLES = ["controlplane", "etcd", "worker"]


def opa_binary():
    if os.access(OPA, os.X_OK):
        return OPA
    reason = f"{OPA} is missing: build it with `make tools` (scripts/build-opa.sh)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def policy_eval(binary):
    path = os.path.join(os.path.dirname(binary), "policy-eval")
    assert os.access(path, os.X_OK), f"{path} is missing: it is built beside the testbin (tests/CMakeLists.txt)"
    return path


@pytest.fixture(scope="module")
def opa():
    return opa_binary()


def run(cmd, stdin):
    p = subprocess.run(cmd, input=json.dumps(stdin).encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=120)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def build_input(policy_eval, parts):
    rc, out, err = run([policy_eval, "build"], parts)
    assert rc == 0, f"policy-eval build: {rc}: {out}{err}"
    return json.loads(out)


def builtin(policy_eval, input_doc):
    rc, out, err = run([policy_eval], input_doc)
    assert rc == 0, f"policy-eval: {rc}: {err}"
    return json.loads(out)


def canonical(decision):
    return {k: sorted(json.dumps(v, sort_keys=True) for v in decision.get(k, [])) for k in ("deny", "warn")}


def rego(opa, input_doc):
    rc, out, err = run([opa, "eval", "--format", "json", "-d", BUNDLE, "--stdin-input", QUERY], input_doc)
    assert rc == 0, f"opa eval: {rc}: {err}"
    result = json.loads(out)["result"][0]["expressions"][0]["value"]
    assert set(result) == {"deny", "warn"}, result
    return result


# --- Building blocks ---

def node(address, roles=None, **extra):
    n = {"address": address, "user": "ubuntu", "roles": list(roles or ALL_ROLES), "sshKey": "ops"}
    n.update(extra)
    return n


def rke(nodes, **extra):
    section = {"nodes": nodes}
    section.update(extra)
    return {"engine": "rke", "rke": section}


def three_nodes(prefix="10.0.0."):
    return [node(f"{prefix}{i}") for i in range(1, 4)]


def parts(spec, env_labels=None, labels=None, settings=None, engine=None, versions=RKE_VERSIONS,
          default=RKE_DEFAULT):
    engine = engine or (spec.get("engine") if isinstance(spec, dict) else None) or "rke"
    p = {"operation": "create", "principal": "admin",
         "environment": {"name": "env", "labels": env_labels if env_labels is not None else {"tier": "dev"}},
         "cluster": {"name": "east", "labels": labels if labels is not None else {"team": "infra"}, "spec": spec},
         "engine": {"name": engine, "versions": versions, "default": default}}
    if settings is not None:
        p["settings"] = settings
    return p


def rule(rule_id, **kw):
    return {"rules": {rule_id: kw}}


PROD = {"tier": "production"}

# (name, parts, expected rules {"deny": set, "warn": set})
CASES = [
    ("rke 3 nodes passes", parts(rke(three_nodes())), {}, {}),
    ("snapshots off", parts(rke(three_nodes(), etcdSnapshots={"enabled": False})), {"etcd-snapshots"}, {}),
    ("snapshots on explicitly", parts(rke(three_nodes(), etcdSnapshots={"enabled": True, "intervalHours": 6})), {},
     {}),
    ("snapshots off, effect warn",
     parts(rke(three_nodes(), etcdSnapshots={"enabled": False}), settings=rule("etcd-snapshots", effect="warn")),
     {}, {"etcd-snapshots"}),
    ("snapshots off, rule disabled",
     parts(rke(three_nodes(), etcdSnapshots={"enabled": False}), settings=rule("etcd-snapshots", enabled=False)),
     {}, {}),
    ("retention below minimum",
     parts(rke(three_nodes(), etcdSnapshots={"retentionHours": 24}),
           settings=rule("etcd-snapshots", params={"minRetentionHours": 48})), {"etcd-snapshots"}, {}),
    ("retention at minimum",
     parts(rke(three_nodes(), etcdSnapshots={"retentionHours": 48}),
           settings=rule("etcd-snapshots", params={"minRetentionHours": 48})), {}, {}),
    ("default retention below minimum",
     parts(rke(three_nodes()), settings=rule("etcd-snapshots", params={"minRetentionHours": 100})),
     {"etcd-snapshots"}, {}),
    ("default retention meets minimum",
     parts(rke(three_nodes()), settings=rule("etcd-snapshots", params={"minRetentionHours": 72})), {}, {}),
    ("production with one etcd node", parts(rke([node("10.0.0.1")]), env_labels=PROD),
     {"production-etcd-quorum"}, {}),
    ("production with three etcd nodes", parts(rke(three_nodes()), env_labels=PROD), {}, {}),
    ("production, three nodes, one etcd",
     parts(rke([node("10.0.0.1"), node("10.0.0.2", ["worker"]), node("10.0.0.3", ["controlplane", "worker"])]),
           env_labels={"tier": "production", "region": "eu"}), {"production-etcd-quorum"}, {}),
    ("local cluster in production", parts({"engine": "local", "local": {"nodes": 3}}, env_labels=PROD),
     {"production-etcd-quorum"}, {}),
    ("local cluster in development", parts({"engine": "local", "local": {"nodes": 3}}), {}, {}),
    ("custom production labels and minimum",
     parts(rke(three_nodes()), env_labels={"env": "prod", "region": "eu", "x": "y"},
           settings=rule("production-etcd-quorum",
                         params={"environmentLabels": {"region": "eu", "env": "prod"}, "minEtcdNodes": 5})),
     {"production-etcd-quorum"}, {}),
    ("production labels that do not match",
     parts(rke([node("10.0.0.1")]), env_labels=PROD,
           settings=rule("production-etcd-quorum", params={"environmentLabels": {"tier": "prod"}})), {}, {}),
    ("empty environmentLabels applies everywhere",
     parts(rke([node("10.0.0.1")]), settings=rule("production-etcd-quorum", params={"environmentLabels": {}})),
     {"production-etcd-quorum"}, {}),
    ("unsupported version", parts(dict(rke(three_nodes()), kubernetesVersion="v1.20.15-rancher1-1")),
     {"supported-version"}, {}),
    ("supported version", parts(dict(rke(three_nodes()), kubernetesVersion="v1.31.11-rancher1-1")), {}, {}),
    ("version older than the minimum",
     parts(dict(rke(three_nodes()), kubernetesVersion="v1.30.14-rancher1-1"),
           settings=rule("supported-version", params={"minimum": "v1.31.0"})), {"supported-version"}, {}),
    ("engine default older than the minimum",
     parts(rke(three_nodes()), settings=rule("supported-version", params={"minimum": "v1.33.0"})),
     {"supported-version"}, {}),
    ("minimum compares numbers, not text",
     parts(dict(rke(three_nodes()), kubernetesVersion="v1.31.11-rancher1-1"),
           settings=rule("supported-version", params={"minimum": "v1.31.9"})), {}, {}),
    ("no version list", parts(dict(rke(three_nodes()), kubernetesVersion="v1.99.0"), versions=None), {}, {}),
    ("empty version list", parts(dict(rke(three_nodes()), kubernetesVersion="v1.32.7-rancher1-1"), versions=[]),
     {"supported-version"}, {}),
    ("long version list",
     parts(dict(rke(three_nodes()), kubernetesVersion="v2.0.0"), versions=[f"v1.{i}.0" for i in range(40)]),
     {"supported-version"}, {}),
    ("node outside the networks",
     parts(rke([node("10.0.0.1"), node("192.168.1.7"), node("10.0.0.3")]),
           settings=rule("node-cidrs", params={"cidrs": ["10.0.0.0/8"]})), {"node-cidrs"}, {}),
    ("host name where networks are set",
     parts(rke([node("10.0.0.1"), node("node2.example.com"), node("10.0.0.3")]),
           settings=rule("node-cidrs", params={"cidrs": ["10.0.0.0/8", "172.16.0.0/12"]})), {"node-cidrs"}, {}),
    ("IPv6 and IPv4 nodes inside",
     parts(rke([node("fd00::1"), node("FD12:3456::9"), node("10.1.2.3"), node("::ffff:10.9.9.9")]),
           settings=rule("node-cidrs", params={"cidrs": ["fd00::/8", "10.0.0.0/8"]})), {}, {"odd-etcd-count"}),
    ("IPv4 /0 and an IPv6 /128",
     parts(rke([node("10.0.0.5"), node("2001:db8::1"), node("10.0.0.6")]),
           settings=rule("node-cidrs", params={"cidrs": ["0.0.0.0/0", "2001:db8::1/128"]})), {}, {}),
    ("exact /32",
     parts(rke([node("10.0.0.5"), node("10.0.0.6"), node("10.0.0.7")]),
           settings=rule("node-cidrs", params={"cidrs": ["10.0.0.5/32", "::/0"]})), {"node-cidrs"}, {}),
    ("many networks in the message",
     parts(rke(three_nodes("192.168.0.")),
           settings=rule("node-cidrs", params={"cidrs": [f"10.{i}.0.0/16" for i in range(40)]})),
     {"node-cidrs"}, {}),
    ("same address twice, letter case aside",
     parts(rke([node("node1.example.com"), node("Node1.Example.com"), node("node3.example.com"),
                node("NODE1.example.COM", ["worker"])])), {"unique-node-addresses"}, {}),
    ("two etcd nodes", parts(rke([node("10.0.0.1"), node("10.0.0.2")])), {}, {"odd-etcd-count"}),
    ("four etcd nodes, effect deny",
     parts(rke([node(f"10.0.0.{i}") for i in range(1, 5)]), settings=rule("odd-etcd-count", effect="deny")),
     {"odd-etcd-count"}, {}),
    ("two etcd nodes, rule disabled",
     parts(rke([node("10.0.0.1"), node("10.0.0.2")]), settings=rule("odd-etcd-count", enabled=False)), {}, {}),
    ("required labels missing",
     parts(rke(three_nodes()), labels={"team": "infra"},
           settings=rule("required-labels", params={"keys": ["team", "cost-center", "example.com/owner"]})),
     {"required-labels"}, {}),
    ("required labels present",
     parts(rke(three_nodes()), labels={"team": "infra", "cost-center": ""},
           settings=rule("required-labels", params={"keys": ["team", "cost-center"]})), {}, {}),
    ("101 rke nodes", parts(rke([node(f"10.0.{i // 200}.{i % 200 + 1}") for i in range(101)])), {"max-nodes"},
     {}),
    ("max nodes lowered",
     parts(rke(three_nodes()), settings=rule("max-nodes", params={"max": 2})), {"max-nodes"}, {}),
    ("local cluster over the maximum", parts({"engine": "local", "local": {"nodes": 150}}), {"max-nodes"}, {}),
    ("local cluster with the default node count",
     parts({"engine": "local"}, settings=rule("max-nodes", params={"max": 1})), {}, {}),
    ("engine not allowed",
     parts({"engine": "local", "local": {"nodes": 1}}, settings=rule("allowed-engines", params={"engines": ["rke"]})),
     {"allowed-engines"}, {}),
    ("engine allowed",
     parts(rke(three_nodes()), settings=rule("allowed-engines", params={"engines": ["local", "rke"]})), {}, {}),
    ("everything at once",
     parts(dict(rke([node("10.0.0.1"), node("10.0.0.1", ["etcd"]), node("h.example.com", ["worker"])],
                    etcdSnapshots={"retentionHours": 24}), kubernetesVersion="v1.29.1-rancher1-1"),
           env_labels=PROD, labels={},
           settings={"rules": {"node-cidrs": {"params": {"cidrs": ["10.0.0.0/8"]}},
                               "etcd-snapshots": {"params": {"minRetentionHours": 48}},
                               "supported-version": {"params": {"minimum": "v1.30.0"}},
                               "required-labels": {"params": {"keys": ["team"]}},
                               "allowed-engines": {"params": {"engines": ["local"]}}}}),
     {"etcd-snapshots", "production-etcd-quorum", "supported-version", "node-cidrs", "unique-node-addresses",
      "required-labels", "allowed-engines"}, {"odd-etcd-count"}),
]


@pytest.mark.parametrize("name,case_parts,deny,warn", CASES, ids=[c[0] for c in CASES])
def test_builtin_and_rego_agree(policy_eval, opa, name, case_parts, deny, warn):
    doc = build_input(policy_eval, case_parts)
    got = builtin(policy_eval, doc)
    assert {v["rule"] for v in got["deny"]} == set(deny), got
    assert {v["rule"] for v in got["warn"]} == set(warn), got
    for v in got["deny"] + got["warn"]:
        assert v["message"] and v["field"], v
    assert canonical(rego(opa, doc)) == canonical(got)


def test_table_covers_every_rule(policy_eval):
    seen = set()
    for _, case_parts, deny, warn in CASES:
        seen |= set(deny) | set(warn)
    catalogue = {"etcd-snapshots", "production-etcd-quorum", "supported-version", "node-cidrs",
                 "unique-node-addresses", "odd-etcd-count", "required-labels", "max-nodes", "allowed-engines"}
    assert seen == catalogue


def test_refused_settings_document(policy_eval):
    rc, out, _ = run([policy_eval, "build"],
                     parts(rke(three_nodes()), settings=rule("node-cidrs", params={"cidrs": ["10.0.0.1/8"]})))
    assert rc == 3
    problem = json.loads(out)
    assert problem["status"] == 422
    assert problem["errors"][0]["field"] == "rules.node-cidrs.params.cidrs[0]"


# --- Inputs the service never builds: every type mixed up ---

def base_input(policy_eval):
    return build_input(policy_eval, parts(rke(three_nodes()), env_labels=PROD))


def garbage_inputs(policy_eval):
    base = base_input(policy_eval)
    out = [5, [], None, "x", {}, {"cluster": 5}, {"cluster": {"spec": []}}, {"settings": 5, "cluster": base["cluster"]}]

    def variant(fn):
        doc = copy.deepcopy(base)
        fn(doc)
        out.append(doc)

    spec = lambda d: d["cluster"]["spec"]  # noqa: E731
    variant(lambda d: spec(d)["rke"].update(nodes={"a": 1}))
    variant(lambda d: spec(d)["rke"].update(nodes=[5, None, {"address": 7, "roles": {"etcd": 1}}, {"roles": "etcd"}]))
    variant(lambda d: spec(d)["rke"].update(etcdSnapshots="off"))
    variant(lambda d: spec(d)["rke"].update(etcdSnapshots={"enabled": "false", "retentionHours": "1"}))
    variant(lambda d: spec(d)["rke"].update(etcdSnapshots={"enabled": 0, "retentionHours": None}))
    variant(lambda d: spec(d).update(kubernetesVersion=5))
    variant(lambda d: spec(d).update(kubernetesVersion="1.30"))
    variant(lambda d: spec(d).update(engine=["rke"]))
    variant(lambda d: spec(d).update(rke="x"))
    variant(lambda d: d["engine"].update(versions="v1.32.7-rancher1-1"))
    variant(lambda d: d["engine"].update(versions=[1, None, "v1.32.7-rancher1-1", ""]))
    variant(lambda d: (d["engine"].update(versions=[""]), spec(d).update(kubernetesVersion="v9.9.9")))
    variant(lambda d: d.update(settings={"rules": []}))
    variant(lambda d: d["settings"].update(rules={k: 5 for k in d["settings"]["rules"]}))
    variant(lambda d: d["settings"]["rules"].update({"odd-etcd-count": {"enabled": "no", "effect": "block"}}))
    variant(lambda d: d["environment"].update(labels="tier=production"))
    variant(lambda d: d["cluster"].update(labels=["team"]))

    def loose_settings(d):
        r = d["settings"]["rules"]
        r["node-cidrs"]["params"]["cidrs"] = ["10.0.0.1/8", "::ffff:10.0.0.0/104", "10.0.0.0/08", "bogus", "::/0"]
        r["production-etcd-quorum"]["params"] = {"environmentLabels": {"tier": 5}, "minEtcdNodes": 2.0}
        r["max-nodes"]["params"]["max"] = "5"
        r["etcd-snapshots"]["params"]["minRetentionHours"] = 48.0
        spec(d)["rke"]["nodes"] = [node("10.2.3.4"), node("11.0.0.1"), node("::ffff:10.9.9.9"), node("fd00::1"),
                                   node("10.0.0.0/8"), node("1.2.3.4%eth0")]
        spec(d)["rke"]["etcdSnapshots"] = {"retentionHours": 24.0}

    variant(loose_settings)
    variant(lambda d: (spec(d).update(engine="local", local={"nodes": 150.0}), d.update(environment={})))
    variant(lambda d: spec(d).update(engine="local", local={"nodes": 2.5}))
    return out


def batch(policy_eval, opa, inputs):
    rc, out, err = run([policy_eval, "batch"], inputs)
    assert rc == 0, err
    ours = json.loads(out)
    query = f"[r | some c in input.cases; r := {QUERY} with input as c]"
    rc, out, err = run([opa, "eval", "--format", "json", "-d", BUNDLE, "--stdin-input", query], {"cases": inputs})
    assert rc == 0, err
    theirs = json.loads(out)["result"][0]["expressions"][0]["value"]
    assert len(ours) == len(theirs) == len(inputs)
    for doc, a, b in zip(inputs, ours, theirs):
        assert canonical(a) == canonical(b), json.dumps(doc)
    return ours


def test_garbage_inputs_agree(policy_eval, opa):
    decisions = batch(policy_eval, opa, garbage_inputs(policy_eval))
    assert any(d["deny"] for d in decisions) and any(d["warn"] for d in decisions)


def random_input(rng, base):
    pick = rng.choice
    doc = copy.deepcopy(base)
    addresses = ["10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.01", "HOST.example.com", "host.example.com", "fd00::1",
                 "FD00::1", "::ffff:10.0.0.3", "192.168.1.5", "1.2.3.4/32", "", 7, None, "0.0.0.0", "::"]
    roles = [["etcd"], ["controlplane", "worker"], ALL_ROLES, ["etcd", "etcd"], [3], "etcd", None, []]

    def rand_node():
        if rng.random() < 0.05:
            return pick([5, None, "x", []])
        n = {}
        if rng.random() < 0.95:
            n["address"] = pick(addresses)
        if rng.random() < 0.95:
            n["roles"] = pick(roles)
        return n

    engine = pick(["rke"] * 6 + ["local"] * 2 + ["test", 5])
    spec = {"engine": engine}
    if rng.random() < 0.7:
        spec["kubernetesVersion"] = pick(["", "v1.32.7-rancher1-1", "v1.29.0", "v1.30.0+k3s1", "1.30", "v01.31.0",
                                          "v1.31.0\nx", 5, "v1.31.0-", "v1234567890.1.1"])
    if engine == "rke" or rng.random() < 0.1:
        section = {"nodes": [rand_node() for _ in range(rng.choice([0, 1, 2, 3, 4, 5, 8]))]}
        if rng.random() < 0.5:
            snap = {}
            if rng.random() < 0.6:
                snap["enabled"] = pick([True, False, "false", 0])
            if rng.random() < 0.6:
                snap["retentionHours"] = pick([24, 100, 24.0, -1, "x", 72, 1e10])
            section["etcdSnapshots"] = snap
        spec["rke"] = section if rng.random() < 0.95 else pick(["x", []])
    if engine == "local" or rng.random() < 0.1:
        spec["local"] = pick([{}, {"nodes": 3}, {"nodes": 200}, {"nodes": 2.5}, {"nodes": "x"}, "x"])
    doc["cluster"]["spec"] = spec if rng.random() < 0.97 else pick([None, 5])
    doc["cluster"]["labels"] = pick([{}, {"team": "a"}, {"team": "a", "cost": "b"}, "x"])
    doc["environment"]["labels"] = pick([{}, {"tier": "production"}, {"tier": "production", "region": "eu"},
                                         {"tier": "dev"}, "x", {"tier": 5}])
    doc["engine"]["versions"] = pick([None, [], RKE_VERSIONS, [1, "v1.29.0"], "x",
                                      [f"v1.{i}.0" for i in range(35)]])
    doc["engine"]["default"] = pick([None, RKE_DEFAULT, "v1.20.0", 5, ""])

    rules = doc["settings"]["rules"]
    for rule_id, s in rules.items():
        if rng.random() < 0.2:
            s["enabled"] = pick([True, False, "yes", None])
        if rng.random() < 0.2:
            s["effect"] = pick(["deny", "warn", "block", 1])
    params = {
        "etcd-snapshots": ("minRetentionHours", [0, 48, 100, 48.0, -1, "x"]),
        "production-etcd-quorum": ("minEtcdNodes", [1, 3, 5, 2.5, "3"]),
        "supported-version": ("minimum", ["", "v1.30.0", "v1.31.5", "v2.0.0", "bogus", 5]),
        "node-cidrs": ("cidrs", [[], ["10.0.0.0/8"], ["10.0.0.0/8", "fd00::/8"], ["0.0.0.0/0"], ["::/0"],
                                 ["10.0.0.1/8", "bad"], "10.0.0.0/8", [5]]),
        "required-labels": ("keys", [[], ["team"], ["team", "cost", "team"], [1]]),
        "max-nodes": ("max", [100, 1, 3, 0, "2"]),
        "allowed-engines": ("engines", [[], ["rke"], ["local", "rke"], ["test"], [5]]),
    }
    for rule_id, (name, values) in params.items():
        if rng.random() < 0.4:
            rules[rule_id]["params"][name] = pick(values)
    if rng.random() < 0.3:
        rules["production-etcd-quorum"]["params"]["environmentLabels"] = pick(
            [{}, {"tier": "production"}, {"region": "eu", "tier": "production"}, {"tier": 5}, "x"])
    if rng.random() < 0.05:
        doc["settings"] = pick([None, {}, {"rules": 5}])
    return doc


def test_random_inputs_agree(policy_eval, opa):
    rng = random.Random(20260525)
    base = base_input(policy_eval)
    inputs = [random_input(rng, base) for _ in range(400)]
    decisions = batch(policy_eval, opa, inputs)
    fired = {v["rule"] for d in decisions for v in d["deny"] + d["warn"]}
    assert len(fired) == 9, fired


def test_rego_unit_tests(opa):
    p = subprocess.run([opa, "test", BUNDLE], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    assert p.returncode == 0, p.stdout.decode()
