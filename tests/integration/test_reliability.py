# SPDX-License-Identifier: Apache-2.0
"""Durable operations: crashes, lease takeover, graceful shutdown, one operation per cluster at a time."""
import collections
import signal
import time


def wait_all(server, op_ids, timeout=120):
    return {i: server.wait_op(i, timeout=timeout) for i in op_ids}


def test_sigkill_mid_operations_every_operation_ends_exactly_once(make_server):
    s = make_server(extra_args=["--workers", "4"]).start()
    ops = [s.create_cluster(f"c{i}", {"durationMs": 1200})["id"] for i in range(12)]
    # Let some run, then kill the process without warning.
    s.wait_op(ops[0], states=("running", "succeeded"))
    time.sleep(0.3)
    s.kill()
    started_before = {l[1] for l in s.journal_lines() if l[0] == "start"}
    assert started_before, "no operation had started before the kill"

    s.start()
    done = wait_all(s, ops)
    assert all(o["state"] == "succeeded" for o in done.values()), done
    # No cluster record was lost.
    clusters = s.get("/v1/environments/default/clusters").json()["items"]
    assert sorted(c["name"] for c in clusters) == sorted(f"c{i}" for i in range(12))
    assert all(c["status"]["phase"] == "Ready" for c in clusters)
    # Each operation reached its terminal state exactly once, and the engine ran each at least once.
    for op_id in ops:
        log = s.get(f"/v1/operations/{op_id}/log").text
        assert log.count("create succeeded") == 1, log
    calls = collections.Counter(l[1] for l in s.journal_lines() if l[0] == "start")
    assert set(calls) == set(ops)
    ends = collections.Counter(l[1] for l in s.journal_lines() if l[0] == "end")
    # An operation interrupted by the kill ran again after restart (the engine is idempotent).
    assert any(calls[i] > 1 for i in started_before)
    assert all(ends[i] >= 1 for i in ops)


def test_operations_of_one_cluster_never_overlap(make_server):
    s = make_server(extra_args=["--workers", "8"]).start()
    names = [f"x{i}" for i in range(6)]
    pending = {n: s.create_cluster(n, {"durationMs": 30})["id"] for n in names}
    # Drive create → update → update → delete on each cluster as fast as the API allows.
    steps = {n: 0 for n in names}
    deadline = time.time() + 120
    while pending and time.time() < deadline:
        for n, op_id in list(pending.items()):
            op = s.get(f"/v1/operations/{op_id}").json()
            if op["state"] not in ("succeeded", "failed", "cancelled"):
                continue
            assert op["state"] == "succeeded", op
            steps[n] += 1
            if steps[n] <= 2:
                r = s.put(f"/v1/environments/default/clusters/{n}",
                          {"spec": {"engine": "test", "test": {"durationMs": 30 + steps[n]}}})
            elif steps[n] == 3:
                r = s.delete(f"/v1/environments/default/clusters/{n}")
            else:
                del pending[n]
                continue
            assert r.status_code == 202, r.text
            pending[n] = r.json()["id"]
        time.sleep(0.02)
    assert not pending
    # The journal holds start/end of every engine call in order: per cluster they never interleave.
    running = {}
    for kind, op_id, cluster, _attempt in s.journal_lines():
        if kind == "start":
            assert cluster not in running, f"{cluster}: {op_id} started while {running[cluster]} ran"
            running[cluster] = op_id
        else:
            assert running.pop(cluster) == op_id
    assert not running


def test_sigterm_releases_running_operation_and_restart_resumes(make_server):
    s = make_server().start()
    op = s.create_cluster("long", {"durationMs": 4000})["id"]
    s.wait_op(op, states=("running",))
    t0 = time.time()
    assert s.stop(signal.SIGTERM) == 0
    assert time.time() - t0 < 10
    s.start()
    # Released, not expired: it is claimed again at once.
    done = s.wait_op(op, timeout=30)
    assert done["state"] == "succeeded"
    log = s.get(f"/v1/operations/{op}/log").text
    assert "stopped at a safe point for a service shutdown" in log
    assert log.count("create succeeded") == 1


def test_lease_takeover_after_crash_uses_lease_expiry(make_server):
    s = make_server().start()
    op = s.create_cluster("taken", {"durationMs": 10000})["id"]
    s.wait_op(op, states=("running",))
    s.kill()
    s.extra_args = []
    s.start()
    # The old lease (2 s) expires and a new worker takes the operation over.
    o = s.wait_op(op, states=("running",), timeout=20)
    deadline = time.time() + 20
    while o["attempts"] < 2 and time.time() < deadline:
        time.sleep(0.1)
        o = s.get(f"/v1/operations/{op}").json()
    assert o["attempts"] == 2
    s.post(f"/v1/operations/{op}/cancel")
    assert s.wait_op(op, timeout=20)["state"] == "cancelled"
