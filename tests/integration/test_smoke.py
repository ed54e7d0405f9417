# SPDX-License-Identifier: Apache-2.0
"""A short end-to-end pass, also run under valgrind memcheck (make valgrind)."""


def test_smoke(server):
    assert server.get("/readyz").status_code == 200
    assert server.post("/v1/environments", {"name": "smoke"}).status_code == 201
    op = server.create_cluster("s1", {"durationMs": 10, "logLines": 2}, env="smoke")
    assert server.wait_op(op["id"], timeout=120)["state"] == "succeeded"
    r = server.put("/v1/environments/smoke/clusters/s1", {"spec": {"engine": "test"}})
    assert r.status_code == 202
    assert server.wait_op(r.json()["id"], timeout=120)["state"] == "succeeded"
    assert server.post("/v1/environments/smoke/clusters", {"name": "BAD", "spec": {}}).status_code == 422
    assert "create succeeded" in server.get(f"/v1/operations/{op['id']}/log?follow=true").text
    r = server.delete("/v1/environments/smoke/clusters/s1")
    assert server.wait_op(r.json()["id"], timeout=120)["state"] == "succeeded"
    assert server.get("/metrics").status_code == 200
