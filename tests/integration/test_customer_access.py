# SPDX-License-Identifier: Apache-2.0
"""Customer access on a real local cluster: the namespace, service account and role binding the service
applies after every create and update, the customer kubeconfig with a token minted through the
TokenRequest API, and the environment's defaults.

One server and one 1-node local cluster (environment ENV) are shared by the module; the tests run in file
order and build on each other's changes of the environment's defaults and the cluster's spec. What the
service did is checked on the cluster's side, through its API server with the admin kubeconfig (objects)
and with the customer kubeconfig itself (kubectl, and requests with its token).

The expiry of a token takes at least ten minutes (kube-apiserver issues no shorter token): that test is
marked slow and runs with `make test-slow` only.
"""
import base64
import json
import os
import re
import subprocess
import time

import pytest
import requests
import yaml

from conftest import Server, finish_module_cluster, localk8s_helper
from test_access import as_token, new_key

ENV = "acme"
OTHER = "other"
NAME = "cust"
PROBLEM = "application/problem+json"
CUSTOMER_READ = "GET /v1/environments/{env}/clusters/{name}/kubeconfig/customer"
DEFAULTS = {"enabled": True, "namespace": "customer", "serviceAccount": "customer", "role": "cluster-admin",
            "roleScope": "cluster", "tokenLifetimeSeconds": 86400}


# --- helpers ---------------------------------------------------------------------------------------


def assert_problem(r, status, field=None):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == PROBLEM, r.headers
    p = r.json()
    if field is not None:
        assert field in {e["field"] for e in p.get("errors", [])}, p
    return p


def jwt_claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class Kubeconfig:
    """A kubeconfig as served: its text, parsed document, and the parts a client connects with."""

    def __init__(self, text, directory, name):
        self.text = text
        self.doc = yaml.safe_load(text)
        assert self.doc["kind"] == "Config", self.doc
        ctx_name = self.doc["current-context"]
        self.context = next(c["context"] for c in self.doc["contexts"] if c["name"] == ctx_name)
        self.cluster = next(c["cluster"] for c in self.doc["clusters"] if c["name"] == self.context["cluster"])
        self.user = next(u["user"] for u in self.doc["users"] if u["name"] == self.context["user"])
        self.server = self.cluster["server"]
        self.path = os.path.join(directory, name + ".kubeconfig")
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self.ca_path = os.path.join(directory, name + ".ca.crt")
        with open(self.ca_path, "wb") as f:
            f.write(base64.b64decode(self.cluster["certificate-authority-data"]))

    def session(self):
        """requests against the API server with this kubeconfig's credentials."""
        s = requests.Session()
        s.trust_env = False
        s.verify = self.ca_path
        if "token" in self.user:
            s.headers["Authorization"] = f"Bearer {self.user['token']}"
        else:
            crt, key = self.path + ".crt", self.path + ".key"
            for path, field in ((crt, "client-certificate-data"), (key, "client-key-data")):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(base64.b64decode(self.user[field]))
            s.cert = (crt, key)
        return s

    def get(self, path):
        return self.session().get(self.server + path, timeout=10)

    def kubectl(self, *args):
        return subprocess.run(["kubectl", "--kubeconfig", self.path, *args], capture_output=True, text=True,
                              timeout=60)


class Fixture:
    """The module's server, its keys and the shared cluster."""

    def __init__(self, server, tmp):
        self.server = server
        self.tmp = tmp
        self.operator = as_token(server, new_key(server, "acme-op", roles=[{"environment": ENV, "role": "operator"}])["token"])
        self.viewer = as_token(server, new_key(server, "acme-view", roles=[{"environment": ENV, "role": "viewer"}])["token"])
        self.stranger = as_token(server, new_key(server, "other-op", roles=[{"environment": OTHER, "role": "operator"}])["token"])
        self._admin = None

    @property
    def path(self):
        return f"/v1/environments/{ENV}/clusters/{NAME}"

    def cluster(self):
        r = self.server.get(self.path)
        assert r.status_code == 200, r.text
        return r.json()

    def admin(self):
        """The cluster's admin kubeconfig, as the service hands it to admins."""
        if self._admin is None:
            r = self.server.get(self.path + "/kubeconfig")
            assert r.status_code == 200, r.text
            self._admin = Kubeconfig(r.text, self.tmp, "admin")
        return self._admin

    def customer(self, name="customer", query=""):
        r = self.operator("GET", self.path + "/kubeconfig/customer" + query)
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == "application/yaml", r.headers
        assert r.headers["Cache-Control"] == "no-store", r.headers
        return Kubeconfig(r.text, self.tmp, name)

    def run_op(self, r, timeout=150):
        assert r.status_code == 202, r.text
        op = self.server.wait_op(r.json()["id"], timeout=timeout)
        log = self.server.get(f"/v1/operations/{op['id']}/log").text
        return op, log

    def update(self, spec=None, expect="succeeded"):
        """PUT the spec (the current one by default) and wait for the update."""
        c = self.cluster()
        body = {"spec": spec or c["spec"]}
        op, log = self.run_op(self.server.put(self.path, body, headers={"If-Match": f'"{c["resourceVersion"]}"'}))
        assert op["state"] == expect, f"{op}\n{log}"
        return op, log

    def set_defaults(self, body):
        r = self.server.get(f"/v1/environments/{ENV}/customer-access")
        assert r.status_code == 200, r.text
        r = self.server.put(f"/v1/environments/{ENV}/customer-access", body,
                            headers={"If-Match": r.headers["ETag"]})
        assert r.status_code == 200, r.text
        return r.json()

    def kube_object(self, path):
        """An object on the cluster through the admin kubeconfig, or None (404)."""
        r = self.admin().get(path)
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        return r.json()

    def audit(self, action=CUSTOMER_READ):
        r = self.server.get("/v1/audit", params={"limit": 10000})
        assert r.status_code == 200, r.text
        return [rec for rec in map(json.loads, r.text.splitlines()) if rec["action"] == action]


@pytest.fixture(scope="module")
def fx(binary, tmp_path_factory):
    localk8s_helper()
    data_dir = str(tmp_path_factory.mktemp("customer-access"))
    tmp = str(tmp_path_factory.mktemp("customer-kubeconfigs"))
    server = Server(binary, data_dir, extra_args=["--localk8s-path", localk8s_helper()]).start()
    created = False
    try:
        for env in (ENV, OTHER):
            assert server.post("/v1/environments", {"name": env}).status_code == 201
        f = Fixture(server, tmp)
        r = server.post(f"/v1/environments/{ENV}/clusters",
                        {"name": NAME, "spec": {"engine": "local", "local": {"nodes": 1}}})
        created = r.status_code == 202
        f.create_op, f.create_log = f.run_op(r)
        assert f.create_op["state"] == "succeeded", f"{f.create_op}\n{f.create_log}\n{server.log()[-4000:]}"
        yield f
    finally:
        finish_module_cluster(server, f"/v1/environments/{ENV}/clusters/{NAME}", created, data_dir)


# --- the tests -------------------------------------------------------------------------------------


def test_create_applies_namespace_service_account_and_binding(fx):
    for line in ("customer access: applied Namespace customer",
                 "customer access: applied ServiceAccount customer/customer",
                 "customer access: applied ClusterRoleBinding clustermgmt-customer-customer"):
        assert line in fx.create_log, fx.create_log

    ns = fx.kube_object("/api/v1/namespaces/customer")
    sa = fx.kube_object("/api/v1/namespaces/customer/serviceaccounts/customer")
    crb = fx.kube_object("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/clustermgmt-customer-customer")
    for obj in (ns, sa, crb):
        assert obj is not None
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "clustermgmt", obj["metadata"]
        # applied server-side, by our field manager
        managers = {(m["manager"], m["operation"]) for m in obj["metadata"]["managedFields"]}
        assert ("clustermgmt", "Apply") in managers, managers
    assert crb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"}
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "customer", "namespace": "customer"}]

    status = fx.cluster()["status"]
    assert status["customerAccess"] == {
        "namespace": "customer", "serviceAccount": "customer", "role": "cluster-admin", "roleScope": "cluster",
        "binding": {"kind": "ClusterRoleBinding", "name": "clustermgmt-customer-customer"}}, status


def test_customer_kubeconfig_acts_as_the_service_account_and_holds_no_admin_credential(fx):
    admin = fx.admin()
    t0 = time.time()
    kc = fx.customer()

    # The admin kubeconfig's server and CA; a token of the service account; nothing else.
    assert kc.server == admin.server
    assert kc.cluster["certificate-authority-data"] == admin.cluster["certificate-authority-data"]
    assert set(kc.user) == {"token"}, kc.user
    assert kc.context["namespace"] == "customer"
    for field in ("client-certificate-data", "client-key-data", "client-certificate", "client-key"):
        assert field not in kc.text
    for secret in admin.user.values():
        assert secret not in kc.text
        assert base64.b64decode(secret).strip() not in kc.text.encode()
    assert fx.server.token not in kc.text

    claims = jwt_claims(kc.user["token"])
    assert claims["sub"] == "system:serviceaccount:customer:customer", claims
    assert abs(claims["exp"] - (t0 + 86400)) < 120, (claims, t0)

    # kubectl works with it: pods of its namespace and of the whole cluster (cluster-admin).
    for args in (["get", "pods"], ["get", "pods", "--all-namespaces"], ["get", "nodes"]):
        out = kc.kubectl(*args)
        assert out.returncode == 0, (args, out.stderr)
    out = kc.kubectl("auth", "whoami", "-o", "json")
    assert out.returncode == 0 and json.loads(out.stdout)["status"]["userInfo"]["username"] == \
        "system:serviceaccount:customer:customer", out.stdout + out.stderr
    assert kc.get("/api/v1/pods").status_code == 200
    assert kc.get("/api/v1/namespaces/kube-system/pods").status_code == 200


def test_token_lifetime_parameter(fx):
    t0 = time.time()
    kc = fx.customer(query="?lifetimeSeconds=900")
    assert abs(jwt_claims(kc.user["token"])["exp"] - (t0 + 900)) < 60
    for bad in ("60", "599", "31536001", "abc", "-600", ""):
        r = fx.operator("GET", fx.path + "/kubeconfig/customer", params={"lifetimeSeconds": bad})
        p = assert_problem(r, 422, "lifetimeSeconds")
        assert "600" in json.dumps(p), p


def test_access_is_limited_and_every_read_is_audited(fx):
    before = fx.audit()
    assert fx.operator("GET", fx.path + "/kubeconfig/customer").status_code == 200
    assert_problem(fx.viewer("GET", fx.path + "/kubeconfig/customer"), 403)
    assert_problem(fx.stranger("GET", fx.path + "/kubeconfig/customer"), 404)
    assert_problem(fx.operator("GET", fx.path + "/kubeconfig"), 403)  # the admin kubeconfig stays admin-only
    assert fx.server.get(fx.path + "/kubeconfig/customer").status_code == 200
    assert_problem(fx.operator("GET", f"/v1/environments/{ENV}/clusters/nope/kubeconfig/customer"), 404)

    recs = fx.audit()[len(before):]
    outcomes = [(r["outcome"], r["status"]) for r in recs]
    assert outcomes == [("success", 200), ("denied", 403), ("denied", 404), ("success", 200), ("denied", 404)], recs
    assert all(r["resource"].endswith("/kubeconfig/customer") for r in recs), recs
    assert recs[0]["principal"] != recs[3]["principal"]
    # the token is in no record and in no log line
    text = json.dumps(recs)
    assert "eyJ" not in text and "eyJ" not in fx.server.log()


def test_cli(fx):
    env = dict(os.environ, CLUSTERMGMT_SERVER=fx.server.url, CLUSTERMGMT_TOKEN=fx.server.token,
               CLUSTERMGMT_ENV=ENV)

    def cli(*args):
        return subprocess.run([fx.server.binary, *args], env=env, capture_output=True, text=True, timeout=60)

    t0 = time.time()
    out = cli("cluster", "kubeconfig", NAME, "--customer", "--lifetime", "1200")
    assert out.returncode == 0, out.stderr
    doc = yaml.safe_load(out.stdout)
    assert abs(jwt_claims(doc["users"][0]["user"]["token"])["exp"] - (t0 + 1200)) < 60
    out = cli("cluster", "kubeconfig", NAME, "--customer", "--lifetime", "60")
    assert out.returncode == 2 and "--lifetime" in out.stderr, out.stderr

    out = cli("customer-access", "get")
    assert out.returncode == 0, out.stderr
    assert re.search(r"^Role:\s+cluster-admin$", out.stdout, re.M) and "1 day" in out.stdout, out.stdout
    out = cli("-o", "json", "customer-access", "set", "--token-lifetime", "3600")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == dict(DEFAULTS, tokenLifetimeSeconds=3600, version=1)
    out = cli("customer-access", "set", "--role-scope", "everywhere")
    assert out.returncode == 2 and "--role-scope" in out.stderr, out.stderr
    # The environment's lifetime is the default of the next kubeconfig.
    t0 = time.time()
    kc = fx.customer()
    assert abs(jwt_claims(kc.user["token"])["exp"] - (t0 + 3600)) < 60


def test_settings_api(fx):
    base = f"/v1/environments/{ENV}/customer-access"
    r = fx.viewer("GET", base)
    assert r.status_code == 200 and r.headers["ETag"] == '"1"', r.text
    assert r.json() == dict(DEFAULTS, tokenLifetimeSeconds=3600, version=1)
    assert_problem(fx.viewer("PUT", base, json={}), 403)
    assert_problem(fx.stranger("GET", base), 404)
    assert_problem(fx.server.put(base, {"tokenLifetimeSeconds": 599}), 422, "tokenLifetimeSeconds")
    p = assert_problem(fx.server.put(base, {"roleScope": "global", "namespace": "Bad", "role": "a/b", "x": 1}), 422)
    assert {e["field"] for e in p["errors"]} == {"roleScope", "namespace", "role", "x"}, p
    assert_problem(fx.server.put(base, {}, headers={"If-Match": '"7"'}), 412)
    assert_problem(fx.server.put(base, {}, headers={"If-Match": "7"}), 400)
    # A PUT replaces the document: members left out follow the built-in defaults again.
    r = fx.server.put(base, {}, headers={"If-Match": '"1"'})
    assert r.status_code == 200 and r.json() == dict(DEFAULTS, version=2), r.text
    # Another environment still has the built-in defaults, at version 0.
    r = fx.server.get(f"/v1/environments/{OTHER}/customer-access")
    assert r.status_code == 200 and r.json() == dict(DEFAULTS, version=0) and r.headers["ETag"] == '"0"'


def test_namespace_deleted_by_hand_is_restored_by_an_update(fx):
    admin = fx.admin().session()
    r = admin.delete(fx.admin().server + "/api/v1/namespaces/customer", timeout=30)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 60
    while fx.kube_object("/api/v1/namespaces/customer") is not None:
        assert time.monotonic() < deadline, "the namespace was not removed"
        time.sleep(0.5)

    # Without its service account the API server refuses to mint a token: a 502 that says why.
    p = assert_problem(fx.operator("GET", fx.path + "/kubeconfig/customer"), 502)
    assert "customer" in p["detail"] and "not found" in p["detail"], p

    fx.update()
    assert fx.kube_object("/api/v1/namespaces/customer") is not None
    assert fx.kube_object("/api/v1/namespaces/customer/serviceaccounts/customer") is not None
    assert fx.customer().kubectl("get", "pods").returncode == 0


def test_environment_defaults_with_a_namespace_scoped_role(fx):
    fx.set_defaults({"namespace": "team", "serviceAccount": "dev", "role": "view", "roleScope": "namespace"})
    # Until the cluster's next update the access in place is handed out.
    assert fx.customer().context["namespace"] == "customer"

    _, log = fx.update()
    assert "deleted the previous binding ClusterRoleBinding clustermgmt-customer-customer" in log, log
    rb = fx.kube_object("/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings/clustermgmt-customer-dev")
    assert rb and rb["roleRef"]["name"] == "view" and rb["roleRef"]["kind"] == "ClusterRole", rb
    assert rb["subjects"] == [{"kind": "ServiceAccount", "name": "dev", "namespace": "team"}]
    assert fx.kube_object("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/clustermgmt-customer-customer") is None
    # The old namespace and service account stay (they may hold the customer's work).
    assert fx.kube_object("/api/v1/namespaces/customer/serviceaccounts/customer") is not None

    kc = fx.customer("dev")
    assert kc.context["namespace"] == "team"
    assert jwt_claims(kc.user["token"])["sub"] == "system:serviceaccount:team:dev"
    assert kc.get("/api/v1/namespaces/team/pods").status_code == 200
    assert kc.get("/api/v1/namespaces/kube-system/pods").status_code == 403
    assert kc.get("/api/v1/namespaces/customer/pods").status_code == 403
    assert kc.get("/api/v1/pods").status_code == 403
    out = kc.kubectl("get", "pods")
    assert out.returncode == 0, out.stderr
    out = kc.kubectl("get", "pods", "-n", "kube-system")
    assert out.returncode != 0 and "forbidden" in out.stderr.lower(), out.stderr


def test_spec_customer_overrides_the_environment(fx):
    spec = dict(fx.cluster()["spec"], customer={"namespace": "payments", "serviceAccount": "ci", "role": "edit"})
    _, log = fx.update(spec)
    assert "deleted the previous binding RoleBinding team/clustermgmt-customer-dev" in log, log
    rbs = "/apis/rbac.authorization.k8s.io/v1/namespaces/{}/rolebindings/clustermgmt-customer-{}"
    assert fx.kube_object(rbs.format("team", "dev")) is None
    assert fx.kube_object(rbs.format("payments", "ci"))["roleRef"]["name"] == "edit"

    # A new role for the same binding: roleRef cannot change, so the binding is replaced.
    spec["customer"]["role"] = "admin"
    _, log = fx.update(spec)
    assert "grants another role; replacing it" in log, log
    assert fx.kube_object(rbs.format("payments", "ci"))["roleRef"]["name"] == "admin"
    kc = fx.customer("ci")
    assert kc.context["namespace"] == "payments"
    assert kc.get("/api/v1/namespaces/payments/pods").status_code == 200
    assert kc.get("/api/v1/namespaces/team/pods").status_code == 403


def test_engines_without_a_kubeconfig_and_access_turned_off(fx):
    # The test engine stores no admin kubeconfig: its clusters get no customer access, and no error.
    op, log = fx.run_op(fx.server.post(f"/v1/environments/{ENV}/clusters", {"name": "plain", "spec": {"engine": "test"}}))
    assert op["state"] == "succeeded", log
    assert "customer access skipped" in log, log
    p = assert_problem(fx.operator("GET", f"/v1/environments/{ENV}/clusters/plain/kubeconfig/customer"), 404)
    assert p["type"].endswith("/kubeconfig-unavailable"), p
    op, _ = fx.run_op(fx.server.delete(f"/v1/environments/{ENV}/clusters/plain"))
    assert op["state"] == "succeeded"

    # Turned off for the environment: the next update leaves the cluster alone and hands out nothing.
    fx.set_defaults({"enabled": False})
    _, log = fx.update()
    assert "customer access is turned off" in log, log
    assert "customerAccess" not in fx.cluster()["status"]
    p = assert_problem(fx.operator("GET", fx.path + "/kubeconfig/customer"), 404)
    assert "turned off" in p["detail"], p
    fx.set_defaults({})
    fx.update()
    assert fx.cluster()["status"]["customerAccess"]["namespace"] == "payments"


@pytest.mark.slow
def test_token_stops_working_when_it_expires(fx):
    """The shortest token the API server issues lives 10 minutes, and kube-apiserver accepts a token up to a
    minute past its expiry (its leeway for clock skew): this test takes about 11 minutes."""
    kc = fx.customer("expiring", query="?lifetimeSeconds=600")
    exp = jwt_claims(kc.user["token"])["exp"]
    path = f"/api/v1/namespaces/{kc.context['namespace']}/serviceaccounts"
    assert kc.get(path).status_code == 200
    while time.time() < exp - 30:
        time.sleep(min(30, max(exp - 30 - time.time(), 0.1)))
    assert kc.get(path).status_code == 200  # still valid shortly before it expires
    while time.time() < exp + 60:
        time.sleep(min(30, max(exp + 60 - time.time(), 0.1)))
    deadline = exp + 120
    while (status := kc.get(path).status_code) != 401:
        assert status == 200 and time.time() < deadline, f"{status} at exp{time.time() - exp:+.0f}s"
        time.sleep(2)
    out = kc.kubectl("get", "serviceaccounts")
    assert out.returncode != 0 and "must be logged in" in out.stderr, out.stderr
