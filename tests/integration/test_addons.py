# SPDX-License-Identifier: Apache-2.0
"""Add-ons end to end on a real local cluster: a baseline manifest add-on installed on a new cluster,
drift corrected within one drift interval (a deleted Deployment, a field changed by hand), objects pruned
when the add-on drops them, a plan that changes nothing, a Helm chart from a chart repository served by
the test (install, upgrade with new values and a new chart version, uninstall), and failures that end in
a failed add-on status with the reason.

One server and one 1-node local cluster are shared by the module; the tests run in file order.
"""
import json
import time

import pytest

from chart_repo import ChartRepo, helm_binary
from conftest import Server, finish_module_cluster, localk8s_helper
from test_customer_access import Kubeconfig

ENV = "addons"
NAME = "addon-cl"
DRIFT = 10  # seconds: the smallest drift interval a definition may ask for
CRD = """apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.demo.cratekube.io
spec:
  group: demo.cratekube.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"""
WIDGET = """apiVersion: demo.cratekube.io/v1
kind: Widget
metadata: {name: first, namespace: demo-addon}
spec: {size: 3}
"""
NAMESPACE = """apiVersion: v1
kind: Namespace
metadata: {name: demo-addon}
"""
CONFIGMAP = """apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: demo-addon}
data: {greeting: hello}
"""
DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: demo-addon}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: pause, image: "registry.k8s.io/pause:3.10"}
"""


def stream(*docs):
    # The custom resource first: the service orders CRDs and Namespaces before what needs them.
    return "---\n".join(docs)


def definition(name, manifests, baseline=False, version="1.0.0"):
    return {"name": name, "kind": "manifest", "version": version, "baseline": baseline, "namespace": "demo-addon",
            "manifests": manifests, "timeoutSeconds": 120, "driftIntervalSeconds": DRIFT}


class Fixture:
    def __init__(self, server, tmp):
        self.server = server
        self.tmp = tmp
        self._admin = None

    @property
    def cluster_path(self):
        return f"/v1/environments/{ENV}/clusters/{NAME}"

    def admin(self):
        if self._admin is None:
            r = self.server.get(self.cluster_path + "/kubeconfig")
            assert r.status_code == 200, r.text
            self._admin = Kubeconfig(r.text, self.tmp, "admin")
        return self._admin

    def kube(self, path):
        r = self.admin().get(path)
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        return r.json()

    def install(self, addon):
        r = self.server.get(f"{self.cluster_path}/addons/{addon}")
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        return r.json()

    def wait_install(self, addon, pred, timeout=90, what="the installation"):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.install(addon)
            if pred(last):
                return last
            time.sleep(0.5)
        raise AssertionError(f"{what}: not reached in {timeout} s: {json.dumps(last, indent=1)}\n"
                             f"{self.server.log()[-3000:]}")

    def wait_kube(self, path, pred, timeout=60, what=None):
        deadline = time.monotonic() + timeout
        obj = None
        while time.monotonic() < deadline:
            obj = self.kube(path)
            if pred(obj):
                return obj
            time.sleep(0.3)
        raise AssertionError(f"{what or path}: not reached in {timeout} s: {obj}")

    def events(self, type_):
        r = self.server.get("/v1/events", params={"cluster": NAME, "environment": ENV, "follow": "false"},
                            headers={"Accept": "text/event-stream"}, stream=False, timeout=10)
        assert r.status_code == 200, r.text
        out = []
        for block in r.text.split("\n\n"):
            data = "".join(line[5:].strip() for line in block.splitlines() if line.startswith("data:"))
            if data:
                e = json.loads(data)
                if e.get("type") == type_:
                    out.append(e)
        return out


def phase_is(phase):
    return lambda i: i is not None and i.get("status", {}).get("phase") == phase


@pytest.fixture(scope="module")
def fx(binary, tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("addons"))
    tmp = str(tmp_path_factory.mktemp("addons-kubeconfigs"))
    server = Server(binary, data_dir, extra_args=["--localk8s-path", localk8s_helper(),
                                                  "--helm-path", helm_binary()]).start()
    created = False
    try:
        assert server.post("/v1/environments", {"name": ENV}).status_code == 201
        f = Fixture(server, tmp)
        # The baseline add-on exists before the cluster: the create installs it.
        r = server.post(f"/v1/environments/{ENV}/addons",
                        definition("demo", stream(WIDGET, DEPLOYMENT, CONFIGMAP, CRD, NAMESPACE), baseline=True))
        assert r.status_code == 201, r.text
        r = server.post(f"/v1/environments/{ENV}/clusters",
                        {"name": NAME, "spec": {"engine": "local", "local": {"nodes": 1}}})
        created = r.status_code == 202
        assert created, r.text
        op = server.wait_op(r.json()["id"], timeout=150)
        assert op["state"] == "succeeded", f"{op}\n{server.log()[-4000:]}"
        yield f
    finally:
        finish_module_cluster(server, f"/v1/environments/{ENV}/clusters/{NAME}", created, data_dir)


def test_baseline_addon_on_new_cluster(fx):
    inst = fx.wait_install("demo", phase_is("Applied"), what="the baseline add-on")
    st = inst["status"]
    assert st["objects"] == 5, st
    assert {c["type"]: c["status"] for c in st["conditions"]} == {"Applied": "True", "Healthy": "True"}, st
    assert st["appliedVersion"] == "1.0.0" and st["observedGeneration"] == inst["generation"], st
    assert len(inst["inventory"]) == 5
    # The objects, with the add-on's label, on the cluster.
    dep = fx.kube("/apis/apps/v1/namespaces/demo-addon/deployments/web")
    assert dep["metadata"]["labels"]["addons.cratekube.io/name"] == "demo"
    assert dep["status"].get("availableReplicas") == 1, dep["status"]
    assert fx.kube("/api/v1/namespaces/demo-addon/configmaps/settings")["data"] == {"greeting": "hello"}
    assert fx.kube("/apis/demo.cratekube.io/v1/namespaces/demo-addon/widgets/first")["spec"] == {"size": 3}
    # Customer access is in place too (the create's post-bootstrap step).
    c = fx.server.get(fx.cluster_path).json()
    ca = c["status"]["customerAccess"]
    assert fx.kube(f"/api/v1/namespaces/{ca['namespace']}/serviceaccounts/{ca['serviceAccount']}") is not None
    assert [e for e in fx.events("AddonPhaseChanged") if e["addon"] == "demo"
            and e["phase"] == "Applied"], "no AddonPhaseChanged event"


def test_deleted_deployment_is_recreated_within_one_interval(fx):
    before = fx.install("demo")["status"].get("corrections", 0)
    r = fx.admin().kubectl("delete", "deployment", "-n", "demo-addon", "web", "--wait=false")
    assert r.returncode == 0, r.stderr
    t0 = time.monotonic()
    dep = fx.wait_kube("/apis/apps/v1/namespaces/demo-addon/deployments/web", lambda o: o is not None,
                       timeout=DRIFT + 15, what="the deleted Deployment back")
    took = time.monotonic() - t0
    assert took <= DRIFT + 5, f"re-created after {took:.1f} s, the drift interval is {DRIFT} s"
    assert dep["metadata"]["labels"]["addons.cratekube.io/name"] == "demo"
    inst = fx.wait_install("demo", lambda i: i["status"].get("corrections", 0) > before)
    objs = inst["status"]["lastCorrection"]["objects"]
    assert {"kind": "Deployment", "name": "web", "change": "recreated"}.items() <= objs[0].items(), objs
    ev = [e for e in fx.events("AddonDriftCorrected") if e["addon"] == "demo"]
    assert ev and ev[-1]["objects"][0]["name"] == "web", ev


def test_changed_field_is_reverted(fx):
    before = fx.install("demo")["status"].get("corrections", 0)
    r = fx.admin().kubectl("patch", "configmap", "-n", "demo-addon", "settings", "--type", "merge",
                           "-p", '{"data": {"greeting": "tampered"}}')
    assert r.returncode == 0, r.stderr
    fx.wait_kube("/api/v1/namespaces/demo-addon/configmaps/settings",
                 lambda o: o and o["data"].get("greeting") == "hello", timeout=DRIFT + 15,
                 what="the ConfigMap's value reverted")
    inst = fx.wait_install("demo", lambda i: i["status"].get("corrections", 0) > before)
    assert inst["status"]["lastCorrection"]["objects"][0]["change"] == "reverted", inst["status"]


def test_plan_changes_nothing(fx):
    r = fx.server.post(f"{fx.cluster_path}/addons/demo/plan", {})
    assert r.status_code == 200, r.text
    plan = {(p["kind"], p["name"]): p for p in r.json()["plan"]}
    assert len(plan) == 5 and all(p["action"] == "unchanged" for p in plan.values()), plan


def test_dropped_object_is_pruned(fx):
    r = fx.server.get(f"/v1/environments/{ENV}/addons/demo")
    assert r.status_code == 200, r.text
    d = definition("demo", stream(NAMESPACE, CRD, WIDGET, DEPLOYMENT), baseline=True, version="1.1.0")
    r = fx.server.put(f"/v1/environments/{ENV}/addons/demo", d, headers={"If-Match": r.headers["ETag"]})
    assert r.status_code == 200, r.text
    fx.wait_kube("/api/v1/namespaces/demo-addon/configmaps/settings", lambda o: o is None, timeout=60,
                 what="the dropped ConfigMap pruned")
    inst = fx.wait_install("demo", lambda i: i["status"].get("appliedVersion") == "1.1.0" and
                           i["status"]["phase"] == "Applied")
    assert len(inst["inventory"]) == 4 and inst["status"]["objects"] == 4, inst
    assert fx.kube("/apis/apps/v1/namespaces/demo-addon/deployments/web") is not None


def test_invalid_manifests_refused(fx):
    bad = {
        "invalid YAML": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n",
        "no kind": "apiVersion: v1\nmetadata: {name: x}\n",
    }
    for what, text in bad.items():
        r = fx.server.post(f"/v1/environments/{ENV}/addons", definition("bad", text))
        assert r.status_code == 422, (what, r.text)
        assert "manifests" in {e["field"] for e in r.json().get("errors", [])}, (what, r.json())
    assert fx.server.get(f"/v1/environments/{ENV}/addons/bad").status_code == 404


def test_unknown_kind_fails_with_reason_and_keeps_what_was_applied(fx):
    text = stream(NAMESPACE, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: partial, namespace: demo-addon}\n",
                  "apiVersion: nowhere.example.com/v1\nkind: Gadget\nmetadata: {name: g, namespace: demo-addon}\n")
    r = fx.server.post(f"/v1/environments/{ENV}/addons", definition("broken", text))
    assert r.status_code == 201, r.text
    r = fx.server.post(f"{fx.cluster_path}/addons", {"addon": "broken"})
    assert r.status_code == 202, r.text
    inst = fx.wait_install("broken", phase_is("Failed"))
    st = inst["status"]
    assert st["reason"] == "ApplyFailed" and "Gadget" in st["message"] and "document 3" in st["message"], st
    # What was applied before the failure is recorded: uninstall removes it.
    assert {(e["kind"], e["name"]) for e in inst["inventory"]} >= {("ConfigMap", "partial")}, inst["inventory"]
    assert fx.kube("/api/v1/namespaces/demo-addon/configmaps/partial") is not None
    r = fx.server.delete(f"{fx.cluster_path}/addons/broken")
    assert r.status_code == 202, r.text
    fx.wait_install("broken", lambda i: i is None, what="the failed add-on uninstalled")
    assert fx.kube("/api/v1/namespaces/demo-addon/configmaps/partial") is None


def test_unknown_field_fails_instead_of_being_dropped(fx):
    # "datta" for "data": the API server's strict field validation refuses it.
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: typo, namespace: demo-addon}\ndatta: {a: b}\n"
    r = fx.server.post(f"/v1/environments/{ENV}/addons", definition("typo", text))
    assert r.status_code == 201, r.text
    r = fx.server.post(f"{fx.cluster_path}/addons", {"addon": "typo"})
    assert r.status_code == 202, r.text
    st = fx.wait_install("typo", phase_is("Failed"))["status"]
    assert st["reason"] == "ApplyFailed" and "datta" in st["message"], st
    assert fx.kube("/api/v1/namespaces/demo-addon/configmaps/typo") is None
    assert fx.server.delete(f"{fx.cluster_path}/addons/typo").status_code == 202
    fx.wait_install("typo", lambda i: i is None, what="the failed add-on uninstalled")


@pytest.fixture(scope="module")
def repo():
    with ChartRepo(helm_binary()) as r:
        yield r


def test_helm_chart_install_upgrade_uninstall(fx, repo):
    d = {"name": "chart", "kind": "helm", "version": "0.1.0", "namespace": "charted",
         "chart": {"repository": repo.url, "name": "demo", "version": "0.1.0"},
         "values": {"message": "hello"}, "timeoutSeconds": 120, "driftIntervalSeconds": DRIFT}
    r = fx.server.post(f"/v1/environments/{ENV}/addons", d)
    assert r.status_code == 201, r.text
    r = fx.server.post(f"{fx.cluster_path}/addons", {"addon": "chart"})
    assert r.status_code == 202, r.text
    inst = fx.wait_install("chart", phase_is("Applied"), timeout=180, what="the chart installed")
    assert inst["status"]["helm"]["chartVersion"] == "0.1.0" and inst["status"]["helm"]["revision"] == 1
    cms = fx.kube("/api/v1/namespaces/charted/configmaps")["items"]
    chart_cm = [c for c in cms if c["data"] and c["data"].get("message") == "hello"]
    assert chart_cm, cms
    cm_path = f"/api/v1/namespaces/charted/configmaps/{chart_cm[0]['metadata']['name']}"

    # New values for this cluster: an upgrade.
    r = fx.server.put(f"{fx.cluster_path}/addons/chart", {"values": {"message": "bye"}})
    assert r.status_code == 202, r.text
    fx.wait_kube(cm_path, lambda o: o and o["data"]["message"] == "bye", timeout=120, what="the new value")
    inst = fx.wait_install("chart", lambda i: i["status"].get("helm", {}).get("revision") == 2)

    # A new chart version in the definition: every installation upgrades.
    r = fx.server.get(f"/v1/environments/{ENV}/addons/chart")
    d.update(version="0.2.0", chart={"repository": repo.url, "name": "demo", "version": "0.2.0"})
    r = fx.server.put(f"/v1/environments/{ENV}/addons/chart", d, headers={"If-Match": r.headers["ETag"]})
    assert r.status_code == 200, r.text
    inst = fx.wait_install("chart", lambda i: i["status"].get("helm", {}).get("chartVersion") == "0.2.0",
                           timeout=120, what="the chart upgraded to 0.2.0")
    assert fx.kube(cm_path)["data"]["message"] == "bye"  # the installation's values stay

    # Uninstall: the release's objects go, then the record.
    r = fx.server.delete(f"{fx.cluster_path}/addons/chart")
    assert r.status_code == 202, r.text
    fx.wait_install("chart", lambda i: i is None, timeout=120, what="the chart uninstalled")
    assert fx.kube(cm_path) is None
    assert [e for e in fx.events("AddonUninstalled") if e["addon"] == "chart"]


def test_missing_chart_fails_with_reason(fx, repo):
    d = {"name": "nochart", "kind": "helm", "version": "1", "namespace": "charted",
         "chart": {"repository": repo.url, "name": "does-not-exist", "version": "9.9.9"},
         "timeoutSeconds": 30, "driftIntervalSeconds": DRIFT}
    r = fx.server.post(f"/v1/environments/{ENV}/addons", d)
    assert r.status_code == 201, r.text
    r = fx.server.post(f"{fx.cluster_path}/addons", {"addon": "nochart"})
    assert r.status_code == 202, r.text
    inst = fx.wait_install("nochart", phase_is("Failed"), timeout=90)
    assert inst["status"]["reason"] == "ChartNotFound", inst["status"]
    assert "does-not-exist" in inst["status"]["message"], inst["status"]
