# SPDX-License-Identifier: Apache-2.0
"""The HTTP API, black box: routes, validation, errors, operations."""
import json
import re
import time

import pytest
import requests

PROBLEM = "application/problem+json"


def assert_problem(r, status, field=None, reason_part=None):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == PROBLEM
    p = r.json()
    assert p["status"] == status
    assert p["type"].startswith("https://cratekube.io/problems/")
    assert p["title"] and "detail" in p
    if field is not None:
        fields = {e["field"]: e["reason"] for e in p.get("errors", [])}
        assert field in fields, p
        if reason_part:
            assert reason_part in fields[field], p
    return p


def test_health_ready_metrics_openapi(server):
    r = requests.get(server.url + "/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = requests.get(server.url + "/readyz")
    assert r.status_code == 200 and r.json()["checks"]["store"] == "ok"
    r = requests.get(server.url + "/openapi.json")
    assert r.status_code == 200
    from openapi_spec_validator import validate
    validate(r.json())
    r = requests.get(server.url + "/metrics")
    assert r.status_code == 200
    assert re.search(r'clustermgmt_http_requests_total\{route="/readyz",method="GET",code="200"\} [1-9]', r.text)
    assert "clustermgmt_operation_queue_depth 0" in r.text
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_authentication(server):
    r = requests.get(server.url + "/v1/environments")
    p = assert_problem(r, 401)
    assert "Bearer" in r.headers["WWW-Authenticate"]
    r = requests.get(server.url + "/v1/environments", headers={"Authorization": "Bearer nope"})
    assert_problem(r, 401)
    r = requests.get(server.url + "/v1/environments", headers={"Authorization": "Basic abc"})
    assert_problem(r, 401)
    r = server.get("/v1/environments")
    assert r.status_code == 200
    assert [e["name"] for e in r.json()["items"]] == ["default"]
    # The token is never written to the log; only the file's path is.
    assert server.token not in server.log()
    assert "admin.token" in server.log()


def test_token_file_is_private(server):
    import os
    import stat
    st = os.stat(os.path.join(server.data_dir, "admin.token"))
    assert stat.S_IMODE(st.st_mode) == 0o600
    st = os.stat(server.data_dir)
    assert stat.S_IMODE(st.st_mode) == 0o700


def test_environments_crud_and_paging(server):
    for i in range(5):
        r = server.post("/v1/environments", {"name": f"team-{i}", "labels": {"tier": "dev"}})
        assert r.status_code == 201, r.text
        assert r.headers["Location"] == f"/v1/environments/team-{i}"
    assert_problem(server.post("/v1/environments", {"name": "team-0"}), 409)
    r = server.get("/v1/environments?limit=2")
    page = r.json()
    assert [e["name"] for e in page["items"]] == ["default", "team-0"]
    names = []
    tok = None
    while True:
        q = "?limit=2" + (f"&pageToken={tok}" if tok else "")
        page = server.get("/v1/environments" + q).json()
        names += [e["name"] for e in page["items"]]
        tok = page.get("nextPageToken")
        if not tok:
            break
    assert names == ["default"] + [f"team-{i}" for i in range(5)]
    assert server.get("/v1/environments/team-3").json()["labels"] == {"tier": "dev"}
    assert server.delete("/v1/environments/team-3").status_code == 204
    assert_problem(server.get("/v1/environments/team-3"), 404)
    assert_problem(server.get("/v1/environments?limit=0"), 400, "limit")
    assert_problem(server.get("/v1/environments?limit=abc"), 400, "limit")


@pytest.mark.parametrize("body,field,reason", [
    ({"name": "Bad_Name"}, "name", "DNS label"),
    ({"name": "-x"}, "name", "DNS label"),
    ({"name": "a" * 64}, "name", "DNS label"),
    ({}, "name", "required"),
    ({"name": 5}, "name", "string"),
    ({"name": "ok", "extra": 1}, "extra", "unknown field"),
    ({"name": "ok", "labels": {"k": 1}}, "labels.k", "strings"),
    ({"name": "ok", "labels": []}, "labels", "object"),
])
def test_environment_validation(server, body, field, reason):
    assert_problem(server.post("/v1/environments", body), 422, field, reason)


def test_malformed_bodies(server):
    path = "/v1/environments/default/clusters"
    assert_problem(server.post(path, data="not json", headers={"Content-Type": "application/json"}), 400)
    assert_problem(server.post(path, data="", headers={"Content-Type": "application/json"}), 400)
    assert_problem(server.post(path, data="[1,2]"), 400)
    assert_problem(server.post(path, data='{"name":"a","name":"b"}'), 400)
    assert_problem(server.post(path, data='{"name":"a"} trailing'), 400)
    deep = '{"name":"a","spec":' + "[" * 40 + "]" * 40 + "}"
    p = assert_problem(server.post(path, data=deep), 400)
    assert "nesting" in p["detail"]
    big = '{"name":"' + "a" * (2 * 1024 * 1024) + '"}'
    assert_problem(server.post(path, data=big), 413)
    # The server keeps working after all of that.
    assert server.get("/v1/environments").status_code == 200
    # Errors never quote the body back.
    r = server.post(path, data='{"name": secret-canary-123}')
    assert "secret-canary-123" not in r.text


def test_unknown_engine_names_registered_ones(server):
    r = server.post("/v1/environments/default/clusters", {"name": "demo", "spec": {"engine": "nope"}})
    p = assert_problem(r, 422, "spec.engine", "registered engines: local, rke, test")
    assert "unknown engine 'nope'" in {e["field"]: e["reason"] for e in p["errors"]}["spec.engine"]
    # Nothing was stored.
    assert server.get("/v1/environments/default/clusters").json()["items"] == []


@pytest.mark.parametrize("spec,field", [
    ({}, "spec.engine"),
    ({"engine": "test", "bogus": 1}, "spec.bogus"),
    ({"engine": "test", "rke": {}}, "spec.rke"),
    ({"engine": "test", "kubernetesVersion": "1.32"}, "spec.kubernetesVersion"),
    ({"engine": "test", "customer": {"namespace": "Bad"}}, "spec.customer.namespace"),
    ({"engine": "test", "addons": [{"values": {}}]}, "spec.addons[0].name"),
    ({"engine": "test", "test": {"durationMs": -1}}, "spec.test.durationMs"),
    ({"engine": "test", "test": {"what": 1}}, "spec.test.what"),
])
def test_cluster_spec_validation(server, spec, field):
    r = server.post("/v1/environments/default/clusters", {"name": "demo", "spec": spec})
    assert_problem(r, 422, field)
    assert server.get("/v1/environments/default/clusters").json()["items"] == []


def test_create_runs_to_ready(server):
    op = server.create_cluster("demo", {"durationMs": 50, "logLines": 3}, labels={"team": "payments"})
    assert op["type"] == "create" and op["state"] in ("pending", "running")
    assert op["cluster"] == "demo" and op["environment"] == "default" and op["generation"] == 1
    assert op["requestedBy"] == "admin"
    done = server.wait_op(op["id"])
    assert done["state"] == "succeeded", done
    assert done["attempts"] == 1 and done["finishedAt"]
    r = server.get("/v1/environments/default/clusters/demo")
    c = r.json()
    assert r.headers["ETag"] == f'"{c["resourceVersion"]}"'
    assert c["labels"] == {"team": "payments"}
    assert c["spec"] == {"engine": "test", "test": {"durationMs": 50, "logLines": 3}}
    assert c["status"]["phase"] == "Ready"
    assert c["status"]["observedGeneration"] == 1
    assert c["status"]["endpoint"] == "https://127.0.0.1:6443"
    conds = {x["type"]: x for x in c["status"]["conditions"]}
    assert conds["Ready"]["status"] == "True" and conds["Reconciling"]["status"] == "False"
    log = server.get(f"/v1/operations/{op['id']}/log")
    assert log.headers["Content-Type"].startswith("text/plain")
    assert "test engine: line 2" in log.text and "create succeeded" in log.text
    ops = server.get("/v1/environments/default/clusters/demo/operations").json()["items"]
    assert [o["id"] for o in ops] == [op["id"]]
    assert_problem(server.post("/v1/environments/default/clusters", {"name": "demo", "spec": {"engine": "test"}}), 409)


def test_update_if_match_and_conflicts(server):
    op = server.create_cluster("demo", {"durationMs": 10})
    server.wait_op(op["id"])
    c = server.get("/v1/environments/default/clusters/demo").json()
    rv = c["resourceVersion"]
    body = {"spec": {"engine": "test", "test": {"durationMs": 1500}}}
    assert_problem(server.put("/v1/environments/default/clusters/demo", body, headers={"If-Match": '"999"'}), 412)
    assert_problem(server.put("/v1/environments/default/clusters/demo", body, headers={"If-Match": "garbage"}), 400)
    r = server.put("/v1/environments/default/clusters/demo", body, headers={"If-Match": f'"{rv}"'})
    assert r.status_code == 202, r.text
    upd = r.json()
    assert upd["type"] == "update" and upd["generation"] == 2
    # While it runs, any other change is a 409 naming it.
    p = assert_problem(server.put("/v1/environments/default/clusters/demo", body), 409)
    assert p["operation"] == upd["id"] and upd["id"] in p["detail"]
    p = assert_problem(server.delete("/v1/environments/default/clusters/demo"), 409)
    assert p["operation"] == upd["id"]
    assert server.wait_op(upd["id"])["state"] == "succeeded"
    c = server.get("/v1/environments/default/clusters/demo").json()
    assert c["generation"] == 2 and c["status"]["observedGeneration"] == 2 and c["status"]["phase"] == "Ready"
    # Name mismatch and engine change are refused.
    assert_problem(server.put("/v1/environments/default/clusters/demo", {"name": "other", "spec": {"engine": "test"}}),
                   422, "name")
    assert_problem(server.put("/v1/environments/default/clusters/missing", body), 404)


def test_delete_removes_cluster_keeps_history(server):
    op = server.create_cluster("gone", {"durationMs": 10})
    server.wait_op(op["id"])
    r = server.delete("/v1/environments/default/clusters/gone")
    assert r.status_code == 202
    d = r.json()
    assert d["type"] == "delete"
    assert server.wait_op(d["id"])["state"] == "succeeded"
    assert_problem(server.get("/v1/environments/default/clusters/gone"), 404)
    assert server.get(f"/v1/operations/{op['id']}").json()["state"] == "succeeded"
    # The name is free again.
    op2 = server.create_cluster("gone", {"durationMs": 10})
    assert server.wait_op(op2["id"])["state"] == "succeeded"


def test_environment_with_clusters_cannot_be_deleted(server):
    assert server.post("/v1/environments", {"name": "team"}).status_code == 201
    op = server.create_cluster("c1", {"durationMs": 1}, env="team")
    server.wait_op(op["id"])
    assert_problem(server.delete("/v1/environments/team"), 409)
    d = server.delete("/v1/environments/team/clusters/c1").json()
    server.wait_op(d["id"])
    assert server.delete("/v1/environments/team").status_code == 204


def test_not_found_and_method(server):
    assert_problem(server.get("/v1/environments/nope/clusters"), 404)
    assert_problem(server.post("/v1/environments/nope/clusters", {"name": "x", "spec": {"engine": "test"}}), 404)
    assert_problem(server.get("/v1/environments/default/clusters/nope"), 404)
    assert_problem(server.get("/v1/operations/op_nope"), 404)
    assert_problem(server.get("/v1/nothing"), 404)
    assert_problem(server.get("/v1/environments//clusters"), 404)
    assert_problem(server.req("PATCH", "/v1/environments/default"), 405)
    assert_problem(server.get("/v1/environments/default/clusters/x/kubeconfig"), 404)


def test_cluster_list_paging(server):
    for i in range(7):
        server.create_cluster(f"c{i}", {"durationMs": 1})
    names, tok = [], None
    while True:
        page = server.get("/v1/environments/default/clusters?limit=3" + (f"&pageToken={tok}" if tok else "")).json()
        assert len(page["items"]) <= 3
        names += [c["name"] for c in page["items"]]
        tok = page.get("nextPageToken")
        if not tok:
            break
    assert names == [f"c{i}" for i in range(7)]
    assert_problem(server.get("/v1/environments/default/clusters?pageToken=NOT_VALID"), 400, "pageToken")


def test_idempotency_key(server):
    body = {"name": "idem", "spec": {"engine": "test", "test": {"durationMs": 1}}}
    h = {"Idempotency-Key": "create-idem-1"}
    r1 = server.post("/v1/environments/default/clusters", body, headers=h)
    r2 = server.post("/v1/environments/default/clusters", body, headers=h)
    assert r1.status_code == r2.status_code == 202
    assert r1.json()["id"] == r2.json()["id"]
    assert r2.headers.get("Idempotent-Replayed") == "true"
    other = dict(body, labels={"a": "b"})
    assert_problem(server.post("/v1/environments/default/clusters", other, headers=h), 422)
    # A client error is remembered too: the same bad request gives the same answer.
    bad = {"name": "BAD", "spec": {"engine": "test"}}
    h2 = {"Idempotency-Key": "bad-1"}
    a = server.post("/v1/environments/default/clusters", bad, headers=h2)
    b = server.post("/v1/environments/default/clusters", bad, headers=h2)
    assert a.status_code == b.status_code == 422 and a.json() == b.json()
    assert_problem(server.post("/v1/environments/default/clusters", body, headers={"Idempotency-Key": "x" * 300}), 400)
    assert len(server.get("/v1/environments/default/clusters").json()["items"]) == 1


def test_retries_then_success(server):
    op = server.create_cluster("flaky", {"failAttempts": 2})
    done = server.wait_op(op["id"])
    assert done["state"] == "succeeded" and done["attempts"] == 3, done
    log = server.get(f"/v1/operations/{op['id']}/log").text
    assert log.count("retrying in") == 2
    conds = {x["type"]: x for x in server.get("/v1/environments/default/clusters/flaky").json()["status"]["conditions"]}
    assert conds["Ready"]["status"] == "True" and conds["Ready"]["reason"] == "Provisioned"


def test_retry_is_reported_in_reconciling(make_server):
    s = make_server(extra_args=["--retry-base-ms", "3000"]).start()
    op = s.create_cluster("later", {"failAttempts": 1})
    deadline = time.time() + 20
    while time.time() < deadline:
        o = s.get(f"/v1/operations/{op['id']}").json()
        if o["state"] == "pending" and o["attempts"] == 1:
            break
        time.sleep(0.05)
    assert o["state"] == "pending" and o["error"] and o["nextRunAt"], o
    c = s.get("/v1/environments/default/clusters/later").json()
    conds = {x["type"]: x for x in c["status"]["conditions"]}
    assert conds["Reconciling"]["status"] == "True" and conds["Reconciling"]["reason"] == "RetryScheduled"
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] != "RetryScheduled"
    assert s.wait_op(op["id"], timeout=30)["state"] == "succeeded"


def test_permanent_failure(server):
    op = server.create_cluster("broken", {"failPermanently": "nodes unreachable"})
    done = server.wait_op(op["id"])
    assert done["state"] == "failed" and done["attempts"] == 1
    assert done["error"] == "nodes unreachable"
    c = server.get("/v1/environments/default/clusters/broken").json()
    assert c["status"]["phase"] == "Failed"
    ready = {x["type"]: x for x in c["status"]["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["message"] == "nodes unreachable"


def test_retries_exhausted(make_server):
    s = make_server(extra_args=["--max-attempts", "2"]).start()
    op = s.create_cluster("flaky", {"failAttempts": 5})
    done = s.wait_op(op["id"])
    assert done["state"] == "failed" and done["attempts"] == 2


def test_cancel_running_kills_child_process_group(server):
    import subprocess
    marker = "97.531"
    op = server.create_cluster("slow", {"durationMs": 97531, "spawnSleep": True})
    server.wait_op(op["id"], states=("running",))
    deadline = time.time() + 10
    while time.time() < deadline:
        if subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True).returncode == 0:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the engine's child process never started")
    r = server.post(f"/v1/operations/{op['id']}/cancel")
    assert r.status_code == 202
    done = server.wait_op(op["id"], timeout=20)
    assert done["state"] == "cancelled"
    assert subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True).returncode != 0
    assert_problem(server.post(f"/v1/operations/{op['id']}/cancel"), 409)
    assert server.get("/v1/environments/default/clusters/slow").json()["status"]["phase"] == "Failed"


def test_cancel_pending(make_server):
    s = make_server(extra_args=["--workers", "0"]).start()
    op = s.create_cluster("waiting", {"durationMs": 1})
    r = s.post(f"/v1/operations/{op['id']}/cancel")
    assert r.status_code == 202 and r.json()["state"] == "cancelled"
    c = s.get("/v1/environments/default/clusters/waiting").json()
    assert c["status"]["phase"] == "Failed"


def test_follow_log_streams_until_end(server):
    op = server.create_cluster("streamed", {"durationMs": 800, "logLines": 2})
    t0 = time.time()
    r = server.get(f"/v1/operations/{op['id']}/log?follow=true", stream=True, timeout=30)
    assert r.status_code == 200
    text = b"".join(r.iter_content(chunk_size=None)).decode()
    assert time.time() - t0 >= 0.5
    assert "create succeeded" in text and "test engine: line 1" in text
    assert server.get(f"/v1/operations/{op['id']}").json()["state"] == "succeeded"
    assert_problem(server.get(f"/v1/operations/{op['id']}/log?follow=maybe"), 400)


def test_sshkeys_invalid_key_refused(server):
    r = server.post("/v1/environments/default/sshkeys", {"name": "ops", "privateKey": "-----BEGIN canary-key"})
    p = assert_problem(r, 422)
    assert "canary-key" not in r.text
    assert server.get("/v1/environments/default/sshkeys").json() == {"items": []}
    assert "canary-key" not in server.log()


def test_metrics_count_operations(server):
    op = server.create_cluster("m", {"durationMs": 1})
    server.wait_op(op["id"])
    text = requests.get(server.url + "/metrics").text
    assert 'clustermgmt_operations{type="create",state="succeeded"} 1' in text
    assert re.search(r'clustermgmt_http_requests_total\{route="/v1/environments/\{env\}/clusters",method="POST",code="202"\} 1', text)
    assert 'clustermgmt_http_request_duration_seconds_count{route="/v1/operations/{id}",method="GET"}' in text


def test_request_id_echoed(server):
    r = server.get("/v1/environments", headers={"X-Request-Id": "abcdef-123456"})
    assert r.headers["X-Request-Id"] == "abcdef-123456"
    r = server.get("/v1/environments", headers={"X-Request-Id": "bad id!"})
    assert r.headers["X-Request-Id"].startswith("req_")


def test_list_is_never_stale(server):
    """Lists are served from a cache of encoded pages; every write must show on the next read."""
    path = "/v1/environments/default/clusters"
    assert server.get(path).json()["items"] == []
    op = server.create_cluster("a1", {"durationMs": 1})
    items = server.get(path).json()["items"]
    assert [c["name"] for c in items] == ["a1"]
    server.wait_op(op["id"])
    assert server.get(path).json()["items"][0]["status"]["phase"] == "Ready"
    r = server.put(f"{path}/a1", {"labels": {"v": "2"}, "spec": {"engine": "test", "test": {"durationMs": 1}}})
    assert r.status_code == 202
    assert server.get(path).json()["items"][0]["labels"] == {"v": "2"}
    server.wait_op(r.json()["id"])
    d = server.delete(f"{path}/a1").json()
    server.wait_op(d["id"])
    assert server.get(path).json()["items"] == []
