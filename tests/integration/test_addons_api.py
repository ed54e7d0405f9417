# SPDX-License-Identifier: Apache-2.0
"""The add-on API, black box: definitions (CRUD, ETag/If-Match, refusals), installations on clusters of the
test engine, roles and environments, the CLI; every answer checked against openapi.json. The plan runs
against a real local cluster (skipped without the localk8s helper)."""
import json
import os
import subprocess

import jsonschema
import pytest
import requests

from conftest import REPO_ROOT

OPENAPI = os.path.join(REPO_ROOT, "src", "server", "openapi.json")
ADDONS = "/v1/environments/default/addons"
CANARY = "canary-Addon-Secret-5d1e0b7a93"
PHASES = ("Pending", "Applying", "Applied", "Failed", "Uninstalling")

CONFIGMAP = """apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: fast
---
apiVersion: v1
kind: Namespace
metadata:
  name: addon-demo
"""


with open(OPENAPI) as f:
    DOC = json.load(f)


def template_of(method, path):
    """The openapi path template that a concrete path matches."""
    segs = path.split("?")[0].strip("/").split("/")
    for tmpl, item in DOC["paths"].items():
        t = tmpl.strip("/").split("/")
        if len(t) == len(segs) and method.lower() in item and all(
                a == b or (a.startswith("{") and a.endswith("}")) for a, b in zip(t, segs)):
            return tmpl
    raise AssertionError(f"no route in openapi.json for {method} {path}")


def check(r, method, path):
    """Validates an answer against the operation's response in openapi.json: status, content type, schema."""
    op = DOC["paths"][template_of(method, path)][method.lower()]
    resp = op["responses"].get(str(r.status_code))
    assert resp is not None, f"{method} {path}: {r.status_code} is not documented: {r.text[:300]}"
    if "$ref" in resp:
        resp = DOC["components"]["responses"][resp["$ref"].rsplit("/", 1)[1]]
    if "content" not in resp:
        assert not r.content, r.text
        return r
    ctype = r.headers["Content-Type"].split(";")[0]
    assert ctype in resp["content"], (ctype, list(resp["content"]))
    schema = dict(resp["content"][ctype]["schema"])
    schema["components"] = DOC["components"]
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(r.json())
    return r


class Api:
    """The server's HTTP helpers with every answer validated."""

    def __init__(self, server, token=None):
        self.s = server
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def call(self, method, path, body=None, headers=None, **kw):
        h = dict(self.headers)
        h.update(headers or {})
        if body is not None:
            kw["json"] = body
        r = self.s.req(method, path, headers=h, **kw)
        return check(r, method, path)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.call("POST", path, body, **kw)

    def put(self, path, body=None, **kw):
        return self.call("PUT", path, body, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)


def fields(r):
    return {e["field"]: e["reason"] for e in r.json().get("errors", [])}


def manifest_addon(name="cfg", manifests=CONFIGMAP, **kw):
    d = {"name": name, "kind": "manifest", "version": "1", "manifests": manifests}
    d.update(kw)
    return d


def helm_addon(name="metrics", **kw):
    d = {"name": name, "kind": "helm", "version": "4.2.0",
         "chart": {"repository": "https://charts.example.com/stable", "name": "metrics", "version": "4.2.0"}}
    d.update(kw)
    return d


def ready_cluster(server, name, env="default"):
    op = server.create_cluster(name, env=env)
    assert server.wait_op(op["id"])["state"] == "succeeded"
    return op


def test_definitions_crud_etag_if_match(server):
    api = Api(server)
    r = api.post(ADDONS, manifest_addon(description="settings for the demo"))
    assert r.status_code == 201, r.text
    a = r.json()
    assert r.headers["Location"] == f"{ADDONS}/cfg"
    assert r.headers["ETag"] == f'"{a["resourceVersion"]}"'
    # defaults filled
    assert a["namespace"] == "default" and a["baseline"] is False and a["values"] == {}
    assert a["timeoutSeconds"] == 300 and a["driftIntervalSeconds"] == 300
    assert a["environment"] == "default" and a["manifests"] == CONFIGMAP
    assert a["createdAt"] == a["updatedAt"]
    assert api.post(ADDONS, manifest_addon()).status_code == 409

    r = api.post(ADDONS, helm_addon(values={"replicas": 2}, baseline=True, timeoutSeconds=600))
    assert r.status_code == 201, r.text
    assert r.json()["chart"]["repository"] == "https://charts.example.com/stable"
    r = api.post(ADDONS, helm_addon("oci-metrics", chart={"oci": "oci://registry.example.com/charts/metrics",
                                                          "version": "1.0.0"}))
    assert r.status_code == 201, r.text

    items = api.get(ADDONS).json()["items"]
    assert [i["name"] for i in items] == ["cfg", "metrics", "oci-metrics"]
    assert "manifests" not in items[0]  # lists leave them out
    r = api.get(f"{ADDONS}/cfg")
    assert r.status_code == 200 and r.json() == a and r.headers["ETag"] == f'"{a["resourceVersion"]}"'

    # replace: If-Match optional, 412 on a stale one; the name may be left out
    new = manifest_addon(version="2")
    del new["name"]
    r = api.put(f"{ADDONS}/cfg", new, headers={"If-Match": '"999"'})
    assert r.status_code == 412, r.text
    r = api.put(f"{ADDONS}/cfg", new, headers={"If-Match": r'"%s"' % a["resourceVersion"]})
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["version"] == "2" and b["resourceVersion"] != a["resourceVersion"] and b["createdAt"] == a["createdAt"]
    assert "description" not in b  # replaced, not merged
    assert api.put(f"{ADDONS}/cfg", manifest_addon(version="3")).json()["version"] == "3"
    r = api.put(f"{ADDONS}/cfg", manifest_addon("other"))
    assert r.status_code == 422 and "name" in fields(r), r.text
    assert api.put(f"{ADDONS}/nope", manifest_addon("nope")).status_code == 404
    assert api.put(f"{ADDONS}/cfg", manifest_addon(), headers={"If-Match": "junk"}).status_code == 400

    # delete: If-Match, then gone
    cur = api.get(f"{ADDONS}/cfg").json()["resourceVersion"]
    assert api.delete(f"{ADDONS}/cfg", headers={"If-Match": '"1"'}).status_code == 412
    assert api.delete(f"{ADDONS}/cfg", headers={"If-Match": f'"{cur}"'}).status_code == 204
    assert api.get(f"{ADDONS}/cfg").status_code == 404
    assert api.delete(f"{ADDONS}/cfg").status_code == 404
    assert api.get(f"{ADDONS}/Not_A_Name").status_code == 404


def test_definition_refusals(server):
    api = Api(server)
    cases = [
        (manifest_addon(manifests="a: [1, 2\n"), "manifests", "line"),
        (manifest_addon(manifests="apiVersion: v1\nmetadata: {name: x}\n"), "manifests", "kind"),
        (manifest_addon(manifests=CONFIGMAP + "---\nkind: Secret\napiVersion: v1\nmetadata: {name: " + CANARY +
                        "\n"), "manifests", "document 3"),
        (manifest_addon(chart={"repository": "https://c.example.com", "name": "x", "version": "1.0.0"}), "chart", None),
        (manifest_addon(values={"a": 1}), "values", None),
        ({"name": "h", "kind": "helm", "version": "1"}, "chart", "required"),
        (helm_addon(chart={"repository": "file:///etc", "name": "x", "version": "1.0.0"}), "chart.repository", None),
        (helm_addon(chart={"repository": "https://c.example.com", "version": "1.0.0"}), "chart.name", None),
        (helm_addon(chart={"oci": "oci://r.example.com/x:1.0", "version": "1.0.0"}), "chart.oci", None),
        (helm_addon(chart={"repository": "https://c.example.com", "name": "x", "version": "^1.0"}), "chart.version", None),
        (helm_addon(manifests=CONFIGMAP), "manifests", None),
        (helm_addon(values=[1]), "values", None),
        (manifest_addon(name="a" * 54), "name", None),
        (manifest_addon(name="Bad_Name"), "name", None),
        (manifest_addon(timeoutSeconds=5), "timeoutSeconds", None),
        (manifest_addon(driftIntervalSeconds=100000), "driftIntervalSeconds", None),
        (manifest_addon(namespace="Not-A-Label"), "namespace", None),
        (manifest_addon(version=""), "version", None),
        (manifest_addon(kind="kustomize"), "kind", None),
        (manifest_addon(extra=1), "extra", None),
        ({"kind": "manifest", "version": "1", "manifests": CONFIGMAP}, "name", "required"),
    ]
    for body, field, part in cases:
        r = api.post(ADDONS, body)
        assert r.status_code == 422, (body, r.text)
        f = fields(r)
        assert field in f, (field, r.text)
        if part:
            assert part in f[field], (part, r.text)
        assert CANARY not in r.text
    # nothing was stored, nothing logged
    assert api.get(ADDONS).json()["items"] == []
    assert CANARY not in server.log()
    # a body that is not JSON, and one too large for the route's cap
    r = api.call("POST", ADDONS, data=b"{", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = api.call("POST", ADDONS, data=b'{"name":"' + b"x" * (14 * 1024 * 1024) + b'"}',
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text


def test_large_manifests_fit_the_route_cap(server):
    """Manifests of several MiB pass the definition routes (other routes keep the 1 MiB cap)."""
    api = Api(server)
    big = "".join(f"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\ndata: {{v: \"{'x' * 4000}\"}}\n"
                  for i in range(1000))
    assert len(big) > 3 * 1024 * 1024
    r = api.post(ADDONS, manifest_addon("big", manifests=big))
    assert r.status_code == 201, r.text[:300]
    assert len(api.get(f"{ADDONS}/big").json()["manifests"]) == len(big)
    # only for authenticated callers: an anonymous body over the server's cap is refused unread
    r = requests.post(server.url + ADDONS, json=manifest_addon("big2", manifests=big), timeout=60)
    assert r.status_code == 413, r.text
    r = requests.post(server.url + ADDONS, json=manifest_addon("small"), timeout=60)
    assert r.status_code == 401, r.text
    r = server.post("/v1/environments", {"name": "x", "labels": {"a": "b" * 10}, "pad": "y" * (2 * 1024 * 1024)})
    assert r.status_code == 413, r.text


def test_installations(server):
    api = Api(server)
    ready_cluster(server, "c1")
    assert api.post(ADDONS, manifest_addon()).status_code == 201
    assert api.post(ADDONS, helm_addon(values={"replicas": 1})).status_code == 201
    inst = "/v1/environments/default/clusters/c1/addons"

    r = api.post(inst, {"addon": "nope"})
    assert r.status_code == 404 and "addon" in fields(r), r.text
    r = api.post(inst, {"addon": "cfg", "values": [1]})
    assert r.status_code == 422 and "values" in fields(r), r.text
    assert api.post("/v1/environments/default/clusters/nope/addons", {"addon": "cfg"}).status_code == 404

    r = api.post(inst, {"addon": "cfg"})
    assert r.status_code == 202, r.text
    i = r.json()
    assert r.headers["Location"] == f"{inst}/cfg"
    assert i["addon"] == "cfg" and i["cluster"] == "c1" and i["values"] == {} and i["generation"] == 1
    # the reconciler runs in the server: it may have looked already (the test engine's clusters have no
    # API server, so it fails them); before that the status is Pending
    assert i["uninstall"] is False and i["status"]["phase"] in PHASES, i
    assert api.post(inst, {"addon": "cfg"}).status_code == 409

    r = api.post(inst, {"addon": "metrics", "values": {"password": CANARY}})
    assert r.status_code == 202, r.text
    assert [x["addon"] for x in api.get(inst).json()["items"]] == ["cfg", "metrics"]
    r = api.get(f"{inst}/metrics")
    assert r.status_code == 200 and r.json()["values"] == {"password": CANARY}

    # values: If-Match, 202, generation+1 (the reconciler's status writes move the version too: retry)
    assert api.put(f"{inst}/metrics", {"values": {"replicas": 3}}, headers={"If-Match": '"77"'}).status_code == 412
    for _ in range(20):
        etag = api.get(f"{inst}/metrics").headers["ETag"]
        r = api.put(f"{inst}/metrics", {"values": {"replicas": 3}}, headers={"If-Match": etag})
        if r.status_code != 412:
            break
    assert r.status_code == 202 and r.json()["generation"] == 2 and r.json()["values"] == {"replicas": 3}, r.text
    assert api.put(f"{inst}/metrics", {}).status_code == 422
    assert api.put(f"{inst}/nope", {"values": {}}).status_code == 404

    # sync: a drift check now
    r = api.post(f"{inst}/cfg/sync")
    assert r.status_code == 202 and r.json()["addon"] == "cfg", r.text
    assert api.post(f"{inst}/nope/sync").status_code == 404
    # plan needs a kubeconfig: the test engine stores none
    assert api.post(f"{inst}/cfg/plan").status_code == 409

    # the definition cannot go while installed; uninstall is accepted, again too
    r = api.delete(f"{ADDONS}/cfg")
    assert r.status_code == 409 and "installed" in r.json()["detail"], r.text
    r = api.delete(f"{inst}/cfg")
    assert r.status_code in (202, 404), r.text  # 404: the reconciler removed it already
    if r.status_code == 202:
        assert r.json()["uninstall"] is True and r.json()["generation"] == 2, r.text
    # asking again is fine while it is there; while it is being removed it cannot change
    r = api.delete(f"{inst}/cfg")
    assert r.status_code in (202, 404), r.text
    if r.status_code == 202:
        assert r.json()["generation"] == 2, r.text
        assert api.put(f"{inst}/cfg", {"values": {}}).status_code in (409, 404)
    assert api.delete(f"{inst}/nope").status_code == 404
    assert CANARY not in server.log()


def test_roles_and_environments(server):
    api = Api(server)
    assert server.post("/v1/environments", {"name": "dev"}).status_code == 201
    assert server.post("/v1/environments", {"name": "prod"}).status_code == 201
    ready_cluster(server, "c1", env="dev")
    keys = {}
    for name, env, role in (("viewer", "dev", "viewer"), ("operator", "dev", "operator"), ("prodadmin", "prod", "admin")):
        r = server.post("/v1/apikeys", {"name": name, "roles": [{"environment": env, "role": role}]})
        assert r.status_code == 201, r.text
        keys[name] = Api(server, r.json()["token"])
    dev = "/v1/environments/dev/addons"
    inst = "/v1/environments/dev/clusters/c1/addons"
    assert api.post(dev, manifest_addon()).status_code == 201

    viewer, operator, other = keys["viewer"], keys["operator"], keys["prodadmin"]
    # viewers read, never change
    assert viewer.get(dev).status_code == 200 and viewer.get(f"{dev}/cfg").status_code == 200
    assert viewer.post(dev, manifest_addon("x")).status_code == 403
    assert viewer.put(f"{dev}/cfg", manifest_addon()).status_code == 403
    assert viewer.delete(f"{dev}/cfg").status_code == 403
    assert viewer.post(inst, {"addon": "cfg"}).status_code == 403
    # operators install but do not define
    assert operator.post(dev, manifest_addon("x")).status_code == 403
    assert operator.delete(f"{dev}/cfg").status_code == 403
    assert operator.post(inst, {"addon": "cfg"}).status_code == 202
    assert viewer.get(inst).status_code == 200 and viewer.get(f"{inst}/cfg").status_code == 200
    assert viewer.post(f"{inst}/cfg/sync").status_code == 403
    assert viewer.post(f"{inst}/cfg/plan").status_code == 403
    assert viewer.delete(f"{inst}/cfg").status_code == 403
    # another environment's admin does not see dev at all
    for method, path in (("GET", dev), ("GET", f"{dev}/cfg"), ("POST", dev), ("GET", inst),
                         ("GET", f"{inst}/cfg"), ("DELETE", f"{inst}/cfg"), ("POST", f"{inst}/cfg/sync")):
        r = other.call(method, path, manifest_addon("y") if method == "POST" and path == dev else None)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
    # a definition of prod is not installable on a cluster of dev
    assert other.post("/v1/environments/prod/addons", manifest_addon("prodonly")).status_code == 201
    r = operator.post(inst, {"addon": "prodonly"})
    assert r.status_code == 404 and "addon" in fields(r), r.text


def test_events_types_accepted_by_webhooks(server):
    assert server.post("/v1/environments/default/secrets", {"name": "k", "value": "key"}).status_code == 201
    r = server.post("/v1/environments/default/webhooks",
                    {"name": "h", "url": "http://127.0.0.1:9/x", "secret": "k",
                     "events": ["AddonPhaseChanged", "AddonDriftCorrected", "AddonUninstalled"]})
    assert r.status_code == 201, r.text


def cli(server, *args, stdin=None):
    env = dict(os.environ, CLUSTERMGMT_SERVER=server.url, CLUSTERMGMT_TOKEN=server.token)
    return subprocess.run([server.binary, *args], env=env, capture_output=True, text=True, timeout=60, input=stdin)


def test_cli(server, tmp_path):
    ready_cluster(server, "c1")
    (tmp_path / "m.yaml").write_text(CONFIGMAP)
    (tmp_path / "cfg.yaml").write_text("name: cfg\nkind: manifest\nversion: '1'\nnamespace: team\n")
    p = cli(server, "addon", "create", "-f", str(tmp_path / "cfg.yaml"), "--manifests", str(tmp_path / "m.yaml"))
    assert p.returncode == 0 and p.stdout == "add-on cfg created\n", p.stdout + p.stderr
    assert server.get(f"{ADDONS}/cfg").json()["manifests"] == CONFIGMAP
    p = cli(server, "addon", "create", "-f", str(tmp_path / "cfg.yaml"), "--manifests", str(tmp_path / "m.yaml"))
    assert p.returncode == 1 and "already exists" in p.stderr, p.stderr
    (tmp_path / "bad.yaml").write_text("name: bad\nkind: manifest\nversion: '1'\nmanifests: 'a: [1'\n")
    p = cli(server, "addon", "create", "-f", str(tmp_path / "bad.yaml"))
    assert p.returncode == 1 and "manifests" in p.stderr and "line" in p.stderr, p.stderr
    p = cli(server, "addon", "create")
    assert p.returncode == 2 and "-f FILE" in p.stderr, p.stderr

    p = cli(server, "addon", "list")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "VERSION", "BASELINE", "NAMESPACE", "CHART", "AGE"], p.stdout
    assert lines[1].split()[:5] == ["cfg", "manifest", "1", "no", "team"], p.stdout
    p = cli(server, "-o", "json", "addon", "get", "cfg")
    assert p.returncode == 0 and json.loads(p.stdout)["manifests"] == CONFIGMAP, p.stderr
    (tmp_path / "cfg.yaml").write_text("name: cfg\nkind: manifest\nversion: '2'\n")
    p = cli(server, "addon", "update", "-f", str(tmp_path / "cfg.yaml"), "--manifests", str(tmp_path / "m.yaml"))
    assert p.returncode == 0 and server.get(f"{ADDONS}/cfg").json()["version"] == "2", p.stderr

    (tmp_path / "v.yaml").write_text("replicas: 2\n")
    p = cli(server, "cluster", "addon", "install", "c1", "cfg", "--values", str(tmp_path / "v.yaml"))
    assert p.returncode == 1 and "values" in p.stderr, p.stderr  # a manifest add-on takes none
    p = cli(server, "cluster", "addon", "install", "c1", "cfg")
    assert p.returncode == 0 and "installed on cluster c1" in p.stdout, p.stdout + p.stderr
    p = cli(server, "cluster", "addon", "list", "c1")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["ADDON", "PHASE", "VERSION", "OBJECTS", "CORRECTIONS", "AGE"], p.stdout
    assert lines[1].split()[0] == "cfg" and lines[1].split()[1] in PHASES, p.stdout
    p = cli(server, "cluster", "addon", "get", "c1", "cfg")
    assert p.returncode == 0 and "Generation:" in p.stdout, p.stdout + p.stderr
    p = cli(server, "cluster", "addon", "sync", "c1", "cfg")
    assert p.returncode == 0 and "drift check" in p.stdout, p.stdout + p.stderr
    p = cli(server, "cluster", "addon", "plan", "c1", "cfg")
    assert p.returncode == 1 and "kubeconfig" in p.stderr, p.stderr
    p = cli(server, "cluster", "addon", "frobnicate", "c1")
    assert p.returncode == 2 and "install, list" in p.stderr, p.stderr
    p = cli(server, "addon", "delete", "cfg")
    assert p.returncode == 1 and "uninstall it everywhere first" in p.stderr, p.stderr
    p = cli(server, "-o", "json", "cluster", "addon", "uninstall", "c1", "cfg")
    assert p.returncode == 0 and json.loads(p.stdout)["uninstall"] is True, p.stdout + p.stderr


def test_plan_against_a_local_cluster(local_cluster):
    """The plan of a manifest add-on: server-side dry runs against the cluster's API server."""
    server = local_cluster.server
    api = Api(server)
    name = "plan-demo"
    r = api.post(ADDONS, manifest_addon(name, namespace="addon-demo"))
    assert r.status_code == 201, r.text
    inst = f"{local_cluster.path}/addons"
    try:
        assert api.post(inst, {"addon": name}).status_code == 202
        r = api.post(f"{inst}/{name}/plan")
        assert r.status_code == 200, r.text
        plan = r.json()["plan"]
        # "unchanged" once the reconciler (running in the server) has applied it
        acts = {(p["kind"], p["name"]): p["action"] for p in plan}
        assert acts.get(("Namespace", "addon-demo")) in ("create", "unchanged"), plan
        assert acts.get(("ConfigMap", "settings")) in ("create", "unchanged"), plan
        cm = [p for p in plan if p["kind"] == "ConfigMap"][0]
        assert cm["namespace"] == "addon-demo"
        p = cli(server, "cluster", "addon", "plan", local_cluster.name, name)
        assert p.returncode == 0, p.stderr
        assert p.stdout.splitlines()[0].split() == ["ACTION", "KIND", "NAMESPACE", "NAME", "FIELDS"], p.stdout
    finally:
        api.delete(f"{inst}/{name}")
