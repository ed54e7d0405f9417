# SPDX-License-Identifier: Apache-2.0
"""The add-on apply engine (src/addons/apply.h) against a real API server.

The engine runs through its command-line driver `addon-apply` (tests/support/addon_apply.c, built beside
clustermgmt-testbin), which prints one JSON object per call: result, reason, message, inventory,
corrected, pruned, plan, apiCalls. One server and one 1-node local cluster are shared by the module; the
tests run in file order and build on each other's state (STATE: the manifest and inventory applied last).
What the engine did is checked on the cluster's side, with kubectl and with requests against the API
server, using the admin kubeconfig the service hands out.

What the API server (v1.36) does, which the drift detection relies on:
- a server-side apply that changes nothing writes nothing: resourceVersion and the time of the field
  manager's managedFields entry stay as they were;
- an apply that writes sets that time to now, at a resolution of one second, also when the change is the
  service's own (a new version of the add-on);
- a change by another field manager (kubectl scale, edit, patch) moves the changed fields to that
  manager: an apply without force then fails with 409 Conflict naming it; a removal by another manager
  drops the fields from the service's entry without any conflict.
"""
import base64
import calendar
import json
import os
import random
import subprocess
import time

import pytest
import requests
import yaml

from conftest import Server, finish_module_cluster, localk8s_helper

ENV = "default"
CLUSTER = "addons"
ADDON = "demo"
NS = "addon-demo"
LABEL = "addons.cratekube.io/name"
GROUP = "demo.cratekube.io"
CRD_NAME = f"widgets.{GROUP}"

# --- the add-on's objects --------------------------------------------------------------------------

NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": CRD_NAME},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}},
        }],
    },
}
WIDGET = {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "gear", "namespace": NS},
          "spec": {"size": 3}}
CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": NS},
             "data": {"color": "blue"}}
DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": NS},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}]},
        },
    },
}
SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": NS},
          "stringData": {"password": "not-a-real-password"}}

# The order the engine applies them in (cm_manifest_sort): Namespaces, CRDs, prerequisites, workloads,
# custom resources.
APPLY_ORDER = [("Namespace", NAMESPACE), ("CustomResourceDefinition", CRD), ("ConfigMap", CONFIGMAP),
               ("Deployment", DEPLOYMENT), ("Widget", WIDGET)]

PATHS = {
    "Namespace": f"/api/v1/namespaces/{NS}",
    "CustomResourceDefinition": f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}",
    "ConfigMap": f"/api/v1/namespaces/{NS}/configmaps/settings",
    "Deployment": f"/apis/apps/v1/namespaces/{NS}/deployments/web",
    "Widget": f"/apis/{GROUP}/v1/namespaces/{NS}/widgets/gear",
    "Secret": f"/api/v1/namespaces/{NS}/secrets/creds",
}

# What the tests have applied last: the manifest (a list of objects) and the inventory the engine gave.
STATE = {}


def shuffled(objs, seed=7):
    """The objects in a fixed order that is not the apply order."""
    out = list(objs)
    random.Random(seed).shuffle(out)
    assert [o["kind"] for o in out] != [o["kind"] for o in objs]
    return out


def with_data(cm, **data):
    cm = json.loads(json.dumps(cm))
    cm["data"] = dict(data)
    return cm


def ref(obj, namespace=True):
    """The identity of an object as the inventory and the report lists name it."""
    r = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"]}
    if namespace and "namespace" in obj["metadata"]:
        r["namespace"] = obj["metadata"]["namespace"]
    return r


def ident(entry):
    return (entry["apiVersion"], entry["kind"], entry.get("namespace"), entry["name"])


# --- the cluster and the driver --------------------------------------------------------------------


class Kube:
    """The module's cluster: its admin kubeconfig, kubectl, requests against its API server, the driver."""

    def __init__(self, server, driver, directory, kubeconfig_text):
        self.server = server
        self.driver = driver
        self.dir = directory
        self.kubeconfig = os.path.join(directory, "admin.kubeconfig")
        fd = os.open(self.kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(kubeconfig_text)
        doc = yaml.safe_load(kubeconfig_text)
        ctx = next(c["context"] for c in doc["contexts"] if c["name"] == doc["current-context"])
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in doc["users"] if u["name"] == ctx["user"])
        self.api = cluster["server"]
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = self._write("ca.crt", base64.b64decode(cluster["certificate-authority-data"]))
        if "token" in user:
            self.session.headers["Authorization"] = f"Bearer {user['token']}"
        else:
            self.session.cert = (self._write("client.crt", base64.b64decode(user["client-certificate-data"])),
                                 self._write("client.key", base64.b64decode(user["client-key-data"])))
        self.calls = 0

    def _write(self, name, data):
        path = os.path.join(self.dir, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return path

    def get(self, path):
        """The object at path, or None (404)."""
        r = self.session.get(self.api + path, timeout=15)
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        return r.json()

    def kubectl(self, *args, check=True):
        out = subprocess.run(["kubectl", "--kubeconfig", self.kubeconfig, *args], capture_output=True, text=True,
                             timeout=60)
        if check:
            assert out.returncode == 0, out.stderr
        return out

    def run(self, command, objs=None, inventory=None, addon=ADDON, timeout=60, extra_docs="", namespace=None):
        """One call of the engine through the driver; the JSON it printed."""
        self.calls += 1
        args = [self.driver, command, "--kubeconfig", self.kubeconfig, "--addon", addon, "--timeout",
                str(timeout)]
        if namespace:
            args += ["--namespace", namespace]
        if objs is not None:
            path = os.path.join(self.dir, f"manifest-{self.calls}.yaml")
            with open(path, "w") as f:
                f.write(yaml.safe_dump_all(objs, sort_keys=False) + extra_docs)
            args += ["--manifest", path]
        if inventory is not None:
            path = os.path.join(self.dir, f"inventory-{self.calls}.json")
            with open(path, "w") as f:
                json.dump(inventory, f)
            args += ["--inventory", path]
        out = subprocess.run(args, capture_output=True, text=True, timeout=timeout + 60)
        assert out.returncode == 0, f"addon-apply exited with {out.returncode}:\n{out.stderr}"
        res = json.loads(out.stdout)
        assert set(res) == {"result", "reason", "message", "inventory", "corrected", "pruned", "plan",
                            "apiCalls"}, res
        return res


def wait_for(what, check, timeout=60, interval=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = check()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def past_second(managed_time):
    """Sleeps until the wall clock is past the second of an RFC 3339 time (managedFields resolution)."""
    t = calendar.timegm(time.strptime(managed_time, "%Y-%m-%dT%H:%M:%SZ"))
    while time.time() < t + 1.05:
        time.sleep(0.05)


def entry_of(inventory, kind):
    return next(e for e in inventory if e["kind"] == kind)


@pytest.fixture(scope="module")
def kube(binary, tmp_path_factory):
    driver = os.path.join(os.path.dirname(binary), "addon-apply")
    assert os.access(driver, os.X_OK), f"{driver} is missing: it is built with clustermgmt-testbin"
    helper = localk8s_helper()
    data_dir = str(tmp_path_factory.mktemp("addon-apply"))
    work = str(tmp_path_factory.mktemp("addon-apply-files"))
    server = Server(binary, data_dir, extra_args=["--localk8s-path", helper]).start()
    created = False
    try:
        r = server.post(f"/v1/environments/{ENV}/clusters",
                        {"name": CLUSTER, "spec": {"engine": "local", "local": {"nodes": 1}}})
        assert r.status_code == 202, r.text
        created = True
        op = server.wait_op(r.json()["id"], timeout=150)
        log = server.get(f"/v1/operations/{op['id']}/log").text
        assert op["state"] == "succeeded", f"{op}\n{log}"
        r = server.get(f"/v1/environments/{ENV}/clusters/{CLUSTER}/kubeconfig")
        assert r.status_code == 200, r.text
        yield Kube(server, driver, work, r.text)
    finally:
        finish_module_cluster(server, f"/v1/environments/{ENV}/clusters/{CLUSTER}", created, data_dir)


# --- the tests -------------------------------------------------------------------------------------


def test_plan_of_a_first_install_creates_everything_and_changes_nothing(kube):
    objs = shuffled([o for _, o in APPLY_ORDER])
    res = kube.run("plan", objs)
    assert res["result"] == 0, res
    plan = {p["kind"]: p for p in res["plan"]}
    assert list(plan) == [k for k, _ in APPLY_ORDER], res["plan"]
    # The Widget too, although its kind is only served once the definition of this manifest exists.
    assert {k: p["action"] for k, p in plan.items()} == {k: "create" for k, _ in APPLY_ORDER}
    assert plan["ConfigMap"]["namespace"] == NS
    assert "namespace" not in plan["Namespace"] and "namespace" not in plan["CustomResourceDefinition"]
    for kind, _ in APPLY_ORDER:
        assert kube.get(PATHS[kind]) is None, kind


def test_first_apply_in_shuffled_order_creates_everything_and_rolls_out(kube):
    objs = shuffled([o for _, o in APPLY_ORDER])
    res = kube.run("apply", objs)
    assert res["result"] == 0, res
    assert res["reason"] == "" and res["message"] == ""
    assert res["corrected"] == [] and res["pruned"] == []
    inv = res["inventory"]
    # In apply order: the Namespace and the CRD (Established) before what needs them.
    assert [ident(e) for e in inv] == [ident(ref(o)) for _, o in APPLY_ORDER], inv
    for (kind, _), e in zip(APPLY_ORDER, inv):
        live = kube.get(PATHS[kind])
        assert live is not None, kind
        assert live["metadata"]["labels"][LABEL] == ADDON, live["metadata"]
        assert e["uid"] == live["metadata"]["uid"], (e, live["metadata"])
        mine = [m for m in live["metadata"]["managedFields"]
                if m["manager"] == "clustermgmt" and m["operation"] == "Apply"]
        assert len(mine) == 1 and e["managedTime"] == mine[0]["time"], (e, live["metadata"]["managedFields"])
        assert len(e["digest"]) == 64, e
    crd = kube.get(PATHS["CustomResourceDefinition"])
    assert any(c["type"] == "Established" and c["status"] == "True" for c in crd["status"]["conditions"])
    assert kube.get(PATHS["Widget"])["spec"] == {"size": 3}
    assert kube.get(PATHS["ConfigMap"])["data"] == {"color": "blue"}

    res = kube.run("wait", inventory=inv, timeout=90)
    assert res["result"] == 0, res
    dep = kube.get(PATHS["Deployment"])
    assert dep["status"].get("availableReplicas") == 1, dep["status"]
    STATE.update(objs=objs, inventory=inv)


def test_unchanged_reapply_corrects_nothing_with_one_request_per_object(kube):
    prev = STATE["inventory"]
    past_second(max(e["managedTime"] for e in prev))
    before = {k: kube.get(PATHS[k])["metadata"]["resourceVersion"] for k in ("Namespace", "ConfigMap", "Widget")}
    res = kube.run("apply", STATE["objs"], prev)
    assert res["result"] == 0, res
    assert res["corrected"] == [] and res["pruned"] == []
    # Nothing written: same uids, same managedFields times, same resource versions.
    assert res["inventory"] == prev
    assert {k: kube.get(PATHS[k])["metadata"]["resourceVersion"] for k in before} == before
    # One PATCH per object, plus one discovery request per group version (the driver's client is new).
    group_versions = {o["apiVersion"] for o in STATE["objs"]}
    assert len(STATE["objs"]) <= res["apiCalls"] <= len(STATE["objs"]) + len(group_versions), res["apiCalls"]
    STATE["inventory"] = res["inventory"]


def test_deleted_deployment_is_recreated(kube):
    old_uid = entry_of(STATE["inventory"], "Deployment")["uid"]
    kube.kubectl("-n", NS, "delete", "deployment", "web", "--wait=true")
    assert kube.get(PATHS["Deployment"]) is None
    res = kube.run("apply", STATE["objs"], STATE["inventory"])
    assert res["result"] == 0, res
    assert res["corrected"] == [dict(ref(DEPLOYMENT), change="recreated")], res["corrected"]
    live = kube.get(PATHS["Deployment"])
    assert live["metadata"]["uid"] == entry_of(res["inventory"], "Deployment")["uid"] != old_uid
    STATE["inventory"] = res["inventory"]


def test_scaled_deployment_is_reverted(kube):
    kube.kubectl("-n", NS, "scale", "deployment", "web", "--replicas=3")
    live = kube.get(PATHS["Deployment"])
    assert live["spec"]["replicas"] == 3
    # kubectl now holds spec.replicas (through the scale subresource); the service's entry lost it.
    holders = [(m["manager"], m.get("subresource", "")) for m in live["metadata"]["managedFields"]
               if "f:replicas" in m.get("fieldsV1", {}).get("f:spec", {})]
    assert len(holders) == 1 and holders[0][0].startswith("kubectl") and holders[0][1] == "scale", holders

    res = kube.run("apply", STATE["objs"], STATE["inventory"])
    assert res["result"] == 0, res
    assert res["corrected"] == [dict(ref(DEPLOYMENT), change="reverted")], res["corrected"]
    live = kube.get(PATHS["Deployment"])
    assert live["spec"]["replicas"] == 1
    assert not any(m["manager"].startswith("kubectl") for m in live["metadata"]["managedFields"])
    # The conflict costs one more request than an unchanged object.
    group_versions = {o["apiVersion"] for o in STATE["objs"]}
    assert len(STATE["objs"]) + 1 <= res["apiCalls"] <= len(STATE["objs"]) + len(group_versions) + 1, res
    STATE["inventory"] = res["inventory"]


def test_removed_field_is_put_back_and_reported(kube):
    # A removal by another manager makes no conflict: the apply puts the label back, its managedFields
    # time moves (one-second resolution: the previous apply must be in an earlier second).
    past_second(entry_of(STATE["inventory"], "ConfigMap")["managedTime"])
    kube.kubectl("-n", NS, "label", "configmap", "settings", f"{LABEL}-")
    assert LABEL not in kube.get(PATHS["ConfigMap"])["metadata"].get("labels", {})
    res = kube.run("apply", STATE["objs"], STATE["inventory"])
    assert res["result"] == 0, res
    assert res["corrected"] == [dict(ref(CONFIGMAP), change="reverted")], res["corrected"]
    assert kube.get(PATHS["ConfigMap"])["metadata"]["labels"][LABEL] == ADDON
    STATE["inventory"] = res["inventory"]


def test_changes_of_another_manager_to_fields_the_service_does_not_set_are_left_alone(kube):
    kube.kubectl("-n", NS, "annotate", "configmap", "settings", "team=payments")
    res = kube.run("apply", STATE["objs"], STATE["inventory"])
    assert res["result"] == 0, res
    assert res["corrected"] == []
    assert kube.get(PATHS["ConfigMap"])["metadata"]["annotations"]["team"] == "payments"
    STATE["inventory"] = res["inventory"]


def test_update_of_the_addon_itself_is_not_drift(kube):
    prev = entry_of(STATE["inventory"], "ConfigMap")
    past_second(prev["managedTime"])
    objs = [with_data(o, color="green") if o["kind"] == "ConfigMap" else o for o in STATE["objs"]]
    res = kube.run("apply", objs, STATE["inventory"])
    assert res["result"] == 0, res
    assert res["corrected"] == [], res["corrected"]
    now = entry_of(res["inventory"], "ConfigMap")
    # The API server moved the time of the service's entry: the time alone does not tell drift.
    assert now["managedTime"] != prev["managedTime"] and now["digest"] != prev["digest"]
    assert now["uid"] == prev["uid"]
    assert kube.get(PATHS["ConfigMap"])["data"] == {"color": "green"}
    STATE.update(objs=objs, inventory=res["inventory"])


def test_plan_shows_updates_creates_and_unchanged_objects_and_changes_nothing(kube):
    cm_before = kube.get(PATHS["ConfigMap"])
    objs = [with_data(o, color="purple", size="xl") if o["kind"] == "ConfigMap" else o
            for o in STATE["objs"]] + [SECRET]
    res = kube.run("plan", objs, STATE["inventory"])
    assert res["result"] == 0, res
    plan = {p["kind"]: p for p in res["plan"]}
    assert {k: p["action"] for k, p in plan.items()} == {
        "Namespace": "unchanged", "CustomResourceDefinition": "unchanged", "Secret": "create",
        "ConfigMap": "update", "Deployment": "unchanged", "Widget": "unchanged"}, res["plan"]
    assert "data" in plan["ConfigMap"]["fields"], plan["ConfigMap"]
    assert plan["Secret"]["namespace"] == NS and plan["Secret"]["fields"] == []
    assert res["inventory"] == [] and res["corrected"] == [] and res["pruned"] == []
    # Nothing changed on the cluster.
    cm = kube.get(PATHS["ConfigMap"])
    assert cm["data"] == {"color": "green"}
    assert cm["metadata"]["resourceVersion"] == cm_before["metadata"]["resourceVersion"]
    assert kube.get(PATHS["Secret"]) is None

    # A plan without the ConfigMap would prune it.
    objs = [o for o in STATE["objs"] if o["kind"] != "ConfigMap"]
    res = kube.run("plan", objs, STATE["inventory"])
    assert res["result"] == 0, res
    prune = [p for p in res["plan"] if p["action"] == "prune"]
    assert prune == [dict(ref(CONFIGMAP), action="prune", fields=[])], res["plan"]
    assert kube.get(PATHS["ConfigMap"]) is not None


def test_dropped_configmap_is_pruned(kube):
    objs = [o for o in STATE["objs"] if o["kind"] != "ConfigMap"]
    res = kube.run("apply", objs, STATE["inventory"])
    assert res["result"] == 0, res
    assert res["pruned"] == [ref(CONFIGMAP)], res["pruned"]
    assert res["corrected"] == []
    assert len(res["inventory"]) == 4
    assert all(e["kind"] != "ConfigMap" for e in res["inventory"])
    assert kube.get(PATHS["ConfigMap"]) is None
    STATE.update(objs=objs, inventory=res["inventory"])


def test_unknown_kind_fails_naming_its_document_and_keeps_the_inventory(kube):
    # Documents: 1-4 the add-on (Namespace, CRD, Deployment, Widget), 5 a ConfigMap, 6 the unknown kind.
    # The unknown kind of a built-in group sorts after the workloads and before the custom resources: the
    # Namespace, CRD, ConfigMap and Deployment are applied, the Widget is not reached.
    extra = with_data(CONFIGMAP, added="yes")
    extra["metadata"]["name"] = "extra"
    objs = STATE["objs"] + [extra]
    gizmo = f"---\napiVersion: v1\nkind: Gizmo\nmetadata: {{name: thing, namespace: {NS}}}\n"
    res = kube.run("apply", objs, STATE["inventory"], extra_docs=gizmo)
    assert res["result"] < 0, res
    assert res["reason"] == "ApplyFailed", res
    assert "document 6" in res["message"] and "Gizmo" in res["message"], res["message"]
    inv = {ident(e): e for e in res["inventory"]}
    # What was applied before the failure, and what the previous apply had and this one did not reach.
    assert set(inv) == {ident(e) for e in STATE["inventory"]} | {ident(ref(extra))}, res["inventory"]
    assert inv[ident(ref(WIDGET))] == entry_of(STATE["inventory"], "Widget")
    assert kube.get(f"/api/v1/namespaces/{NS}/configmaps/extra") is not None
    # The next apply (without the bad document and the extra ConfigMap) prunes what the failed one added.
    res = kube.run("apply", STATE["objs"], res["inventory"])
    assert res["result"] == 0, res
    assert res["pruned"] == [ref(extra)], res
    assert kube.get(f"/api/v1/namespaces/{NS}/configmaps/extra") is None
    STATE["inventory"] = res["inventory"]


def test_failing_job_is_not_healthy(kube):
    # The node simulator runs no container: a pod that is not restarted finishes with the exit code of
    # its localk8s.cratekube.io/exit-code annotation. The Job names no namespace: it gets the default.
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {"localk8s.cratekube.io/exit-code": "1"}},
                "spec": {"restartPolicy": "Never",
                         "containers": [{"name": "main", "image": "busybox:1.36", "command": ["false"]}]},
            },
        },
    }
    res = kube.run("apply", [job], addon="demo-job", namespace=NS)
    assert res["result"] == 0, res
    inv = res["inventory"]
    assert [ident(e) for e in inv] == [("batch/v1", "Job", NS, "migrate")], inv
    assert kube.get(f"/apis/batch/v1/namespaces/{NS}/jobs/migrate")["metadata"]["labels"][LABEL] == "demo-job"
    res = kube.run("wait", inventory=inv, addon="demo-job", timeout=60)
    assert res["result"] < 0, res
    assert res["reason"] in ("NotHealthy", "Timeout"), res
    assert f"Job {NS}/migrate" in res["message"], res["message"]
    res = kube.run("remove", inventory=inv, addon="demo-job")
    assert res["result"] == 0, res
    wait_for("the Job to go", lambda: kube.get(f"/apis/batch/v1/namespaces/{NS}/jobs/migrate") is None)


def test_remove_deletes_everything_in_the_inventory(kube):
    inv = STATE["inventory"]
    res = kube.run("remove", inventory=inv)
    assert res["result"] == 0, res
    assert res["inventory"] == [] and res["pruned"] == []
    for e in inv:
        wait_for(f"{e['kind']} {e['name']} to go", lambda e=e: kube.get(PATHS[e["kind"]]) is None, timeout=90)
    # Removing again finds nothing to delete and is no error.
    res = kube.run("remove", inventory=inv)
    assert res["result"] == 0, res
