#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""make bench: the foundation's benchmarks, each reported against a baseline measured in the same run.

1. Create-cluster acceptance (spec written + operation queued), wrk with unique names, workers off.
2. GET one cluster and list 100 clusters with 10,000 stored, against a bare libmicrohttpd responder
   (same threading setup) returning the same bytes; throughput ratio and p50/p99.
3. Worker dispatch: 10,000 queued operations on an engine that returns at once; time per operation.
4. Resident memory of an idle serve with 10,000 clusters stored.
5. Local engine: time from the create request to a ready API with 3 Ready nodes; helper RSS with 3 and
   with 100 simulated nodes.
6. State vault: encrypted versioned write of a 200 KB file against a plain write+fsync (vault-bench).
7. RKE engine overhead: the service's own time around an rke run (work dir, materialised files, copies
   into the vault, wipe) over --rke-ops creates of 3-node rke clusters, with a stand-in for rke that only
   writes rke's two files (bench/rke_noop.c; Python's start-up would swamp the figure). Two figures: each
   operation's wall time (startedAt to finishedAt) minus the stand-in's own run time (the same number of
   direct runs in the same run, median), and the engine's own "rke overhead: prepare/copy back/clean up"
   log line when the build writes it. Target < 20 ms per operation.
8. Policy: one built-in evaluation (input built + rules evaluated) for 3 and for 100 nodes (policy-bench),
   and the round trip of the same decision to a real OPA server with the shipped bundle (TLS, token) in
   the same run. Target p99 < 20 µs for the built-in one.

9. Audit: appends to the hash-chained audit log from 1 and 8 threads (audit-bench), then the
   verification of the chain. Target at least 10,000 appends per second.

10. Authentication: the OIDC bearer step with the JWK set held (auth-bench: full verification, and a
   token seen before), and over HTTP the same request with an OIDC token of a real test provider and
   with an API key, beside GET /healthz (no authentication), in the same run. Target p99 < 30 µs.

11. Health monitoring: one service monitoring 1,000 to 10,000 clusters (--monitor-sizes) at a 30 s interval:
   CPU (cores, over a steady-state window of --monitor-window seconds, as a ratio to bare-prober issuing
   the same requests with the same credentials at the same rate in the same run), RSS, probe duration
   p50/p99 (interpolated in the histogram), probe errors; then, with the largest size monitored, the
   detection latency of a node made NotReady (annotation → NodesReady False stored) over
   --monitor-trials trials. 3 real local clusters serve every record's probes; the other records are
   put into the stopped service's data directory by monitor-seed, each with its own client
   certificate and an address of its own (a loopback port of port-relay, which copies the bytes to
   one of the 3 API servers). Takes about 25 minutes with the default sizes.

12. Add-ons: the first apply of an add-on of 500 objects (ConfigMaps, Secrets, Services, ServiceAccounts
   in 4 namespaces of the same manifest) to a local cluster by the engine (tests/support/addon_apply.c,
   `addon-apply`, beside the testbin or --addon-apply), by the service end to end (install request →
   phase Applied) and by `kubectl apply --server-side` of the same file, alternating, each trial on
   fresh namespaces; the same with 4 Deployments and their rollouts. Then a drift pass over 100
   inventories of 50 objects, each in a namespace of its own on that one API server (a stand-in for
   100 clusters): API calls and time per inventory, unchanged and after kubectl changed 3 objects of each.

--only core|local|vault|rke|policy|audit|auth|monitor|addons runs one section.
"""
import argparse
import datetime
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, token=None, body=None):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, r.read()


RUNNING = []  # every server started, stopped at exit even when a section fails


class Serve:
    def __init__(self, binary, data_dir, workers, threads, extra=()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [binary, "serve", "--data-dir", data_dir, "--listen", f"127.0.0.1:{self.port}", "--rate-limit", "0", "--workers", str(workers),
             "--http-threads", str(threads), "--log-level", "warning", "--poll-ms", "50", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        RUNNING.append(self.proc)
        for _ in range(600):
            try:
                if http("GET", self.url + "/readyz")[0] == 200:
                    break
            except Exception:
                time.sleep(0.05)
        self.token = open(os.path.join(data_dir, "admin.token")).read().strip()

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def wrk(url, seconds, connections, threads, script=None, headers=()):
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": pct(50), "p99_ms": pct(99), "errors": int(non2xx.group(1)) if non2xx else 0}


# Cycles through 100 different pages: with 32 cached pages, nearly every request misses the page cache.
PAGES_LUA = r"""
local i = 0
request = function()
  i = (i + 1) %% 100
  local path = string.format("/v1/environments/bench/clusters?limit=100&pageToken=c%%05d", i * 97)
  return wrk.format("GET", path, {["Authorization"]="Bearer %s"})
end
"""

CREATE_LUA = r"""
local counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  counter = 0
end
request = function()
  counter = counter + 1
  local body = string.format('{"name":"b%%d-%%d","spec":{"engine":"test","test":{"durationMs":0}}}', tid, counter)
  return wrk.format("POST", "/v1/environments/%s/clusters", {["Content-Type"]="application/json", ["Authorization"]="Bearer %s"}, body)
end
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True, help="clustermgmt release build (product binary)")
    ap.add_argument("--testbin", help="release clustermgmt-testbin (has the test engine)")
    ap.add_argument("--bare", required=True)
    ap.add_argument("--clusters", type=int, default=10000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--localk8s", default=os.path.join(HERE, "..", "bin", "clustermgmt-localk8s"))
    ap.add_argument("--vault-bench", help="vault-bench binary (default: next to the bare responder)")
    ap.add_argument("--rke-noop", help="the benchmark's rke stand-in (default: rke-noop next to the bare responder)")
    ap.add_argument("--rke-ops", type=int, default=60, help="rke creates to measure (at least 50)")
    ap.add_argument("--policy-bench", help="policy-bench binary (default: next to the bare responder)")
    ap.add_argument("--audit-bench", help="audit-bench binary (default: next to the bare responder)")
    ap.add_argument("--auth-bench", help="auth-bench binary (default: next to the bare responder)")
    ap.add_argument("--monitor-seed", help="monitor-seed binary (default: next to the bare responder)")
    ap.add_argument("--bare-prober", help="bare-prober binary (default: next to the bare responder)")
    ap.add_argument("--port-relay", help="port-relay binary (default: next to the bare responder)")
    ap.add_argument("--monitor-first-port", type=int, default=20000,
                    help="first of the loopback ports (one per record) the relay listens on")
    ap.add_argument("--monitor-sizes", default="1000,2500,5000,10000", help="clusters monitored, comma-separated")
    ap.add_argument("--monitor-window", type=int, default=90, help="steady-state window in seconds (≥ 2 intervals)")
    ap.add_argument("--monitor-trials", type=int, default=9, help="NotReady detection trials (with the largest size)")
    ap.add_argument("--addon-apply", help="addon-apply driver (default: next to the testbin)")
    ap.add_argument("--addon-objects", type=int, default=500, help="objects of the add-on applied whole")
    ap.add_argument("--addon-trials", type=int, default=5, help="first applies per method (alternating)")
    ap.add_argument("--drift-clusters", type=int, default=100, help="inventories of the drift pass")
    ap.add_argument("--drift-objects", type=int, default=50, help="objects per inventory of the drift pass")
    ap.add_argument("--only", choices=("core", "local", "vault", "rke", "policy", "audit", "auth", "monitor", "addons"))
    args = ap.parse_args()
    if args.only == "addons":
        return report_addons(bench_addons(args))
    if args.only == "monitor":
        return report_monitor(bench_monitor(args))
    if args.only == "local":
        return report_local(bench_local(args))
    if args.only == "vault":
        return report_vault(bench_vault(args))
    if args.only == "rke":
        return report_rke(bench_rke(args))
    if args.only == "policy":
        return report_policy(bench_policy(args))
    if args.only == "audit":
        return report_audit(bench_audit(args))
    if args.only == "auth":
        return report_auth(bench_auth(args))
    testbin = args.testbin or os.path.join(os.path.dirname(args.binary), "tests", "clustermgmt-testbin")
    results = {}
    work = tempfile.mkdtemp(prefix="cm-bench-")
    try:
        # 1. create acceptance: wrk posts unique cluster names (a server of its own, workers off).
        s = Serve(testbin, os.path.join(work, "create"), workers=0, threads=args.threads)
        lua = os.path.join(work, "create.lua")
        with open(lua, "w") as f:
            f.write(CREATE_LUA % ("bench", s.token))
        http("POST", s.url + "/v1/environments", s.token, {"name": "bench"})
        results["create"] = wrk(s.url, args.seconds, 16, 2, script=lua)
        s.stop()

        # Exactly --clusters clusters stored (each with its pending create operation) for the rest.
        data = os.path.join(work, "data")
        s = Serve(testbin, data, workers=0, threads=args.threads)
        http("POST", s.url + "/v1/environments", s.token, {"name": "bench"})
        import requests
        sess = requests.Session()
        sess.headers["Authorization"] = f"Bearer {s.token}"
        for i in range(args.clusters):
            r = sess.post(s.url + "/v1/environments/bench/clusters",
                          json={"name": f"c{i:05d}", "spec": {"engine": "test", "test": {"durationMs": 0}}})
            assert r.status_code == 202, r.text
        results["stored"] = args.clusters

        # 2. reads against the bare responder with the same bytes.
        first = json.loads(http("GET", s.url + "/v1/environments/bench/clusters?limit=1", s.token)[1])["items"][0]
        one_path = f"/v1/environments/bench/clusters/{first['name']}"
        list_path = "/v1/environments/bench/clusters?limit=100&pageToken=c05000"
        hdr = [f"Authorization: Bearer {s.token}"]
        for label, path in (("get_one", one_path), ("list_100", list_path)):
            status, body = http("GET", s.url + path, s.token)
            assert status == 200
            bfile = os.path.join(work, label + ".json")
            with open(bfile, "wb") as f:
                f.write(body)
            results[label] = {"bytes": len(body), "service": wrk(s.url + path, args.seconds, 32, 2, headers=hdr)}
        pages = os.path.join(work, "pages.lua")
        with open(pages, "w") as f:
            f.write(PAGES_LUA % s.token)
        results["list_100_uncached"] = wrk(s.url, args.seconds, 32, 2, script=pages)
        time.sleep(1)
        results["rss_idle_kib"] = s.rss_kib()
        s.stop()

        bport = free_port()
        bare = subprocess.Popen([args.bare, str(bport), str(args.threads),
                                 f"{one_path}={os.path.join(work, 'get_one.json')}",
                                 f"/v1/environments/bench/clusters={os.path.join(work, 'list_100.json')}"],
                                stdout=subprocess.PIPE, text=True)
        RUNNING.append(bare)
        bare.stdout.readline()
        for label, path in (("get_one", one_path), ("list_100", "/v1/environments/bench/clusters")):
            results[label]["bare"] = wrk(f"http://127.0.0.1:{bport}{path}", args.seconds, 32, 2, headers=hdr)
            results[label]["ratio"] = results[label]["service"]["rps"] / results[label]["bare"]["rps"]
        bare.send_signal(signal.SIGTERM)
        bare.wait()

        # 3. dispatch: every stored create is pending; start workers and time the queue draining.
        for workers in (1, 4):
            d2 = os.path.join(work, f"dispatch{workers}")
            shutil.copytree(data, d2)
            t0 = time.time()
            s2 = Serve(testbin, d2, workers=workers, threads=args.threads)
            while True:
                m = http("GET", s2.url + "/metrics")[1].decode()
                depth = int(re.search(r"clustermgmt_operation_queue_depth (\d+)", m).group(1))
                running = int(re.search(r'clustermgmt_operations\{type="create",state="running"\} (\d+)', m).group(1))
                if depth == 0 and running == 0:
                    break
                time.sleep(0.05)
            elapsed = time.time() - t0
            m = http("GET", s2.url + "/metrics")[1].decode()
            ok = int(re.search(r'clustermgmt_operations\{type="create",state="succeeded"\} (\d+)', m).group(1))
            results[f"dispatch_{workers}_workers"] = {"operations": ok, "seconds": elapsed,
                                                      "ms_per_op": elapsed * 1000 / max(ok, 1)}
            s2.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(json.dumps(results, indent=1))
    print()
    print("| benchmark | result | target |")
    print("|---|---|---|")
    print(f"| create accepted ({results['create']['errors']} non-2xx) | {results['create']['rps']:.0f}/s (p50 {results['create']['p50_ms']:.2f} ms, p99 {results['create']['p99_ms']:.2f} ms) | ≥ 2,000/s |")
    for label, name in (("get_one", "GET one cluster"), ("list_100", "list 100 clusters")):
        r = results[label]
        print(f"| {name} ({r['bytes']} B) of {results['stored']} | {r['service']['rps']:.0f}/s vs bare {r['bare']['rps']:.0f}/s = "
              f"**{r['ratio']:.2f}x** (p50 {r['service']['p50_ms']:.2f}/{r['bare']['p50_ms']:.2f} ms, "
              f"p99 {r['service']['p99_ms']:.2f}/{r['bare']['p99_ms']:.2f} ms) | ≥ 0.7x |")
    u = results["list_100_uncached"]
    print(f"| list 100 clusters, 100 different pages (page cache mostly missed) | {u['rps']:.0f}/s = "
          f"{u['rps'] / results['list_100']['bare']['rps']:.2f}x of bare (p50 {u['p50_ms']:.2f} ms, p99 {u['p99_ms']:.2f} ms) | report |")
    for w in (1, 4):
        r = results[f"dispatch_{w}_workers"]
        print(f"| dispatch, {w} worker(s), {r['operations']} queued | {r['ms_per_op']:.3f} ms/op ({r['seconds']:.1f} s) | < 1 ms/op |")
    print(f"| idle RSS with {results['stored']} clusters | {results['rss_idle_kib'] / 1024:.1f} MiB | < 30 MB |")
    if args.only == "core":
        return 0
    report_local(bench_local(args))
    report_vault(bench_vault(args))
    report_rke(bench_rke(args))
    report_policy(bench_policy(args))
    report_audit(bench_audit(args))
    report_auth(bench_auth(args))
    report_monitor(bench_monitor(args))
    report_addons(bench_addons(args))
    return 0


def helper_rss_kib(data_dir):
    """RSS of the local cluster's helper process (the only localk8s.pid under data_dir)."""
    for d, _, files in os.walk(os.path.join(data_dir, "local")):
        if "localk8s.pid" in files:
            pid = int(open(os.path.join(d, "localk8s.pid")).read())
            with open(f"/proc/{pid}/status") as f:
                return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    raise RuntimeError("no local cluster helper found")


def wait_op(url, token, op_id, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        op = json.loads(http("GET", f"{url}/v1/operations/{op_id}", token)[1])
        if op["state"] in ("succeeded", "failed", "cancelled"):
            return op
        time.sleep(0.05)
    raise RuntimeError(f"operation {op_id} did not end")


def bench_local(args):
    if not os.path.exists(args.localk8s):
        raise SystemExit(f"{args.localk8s} is missing: run `make localk8s`")
    work = tempfile.mkdtemp(prefix="cm-bench-local-")
    port = free_port()
    proc = subprocess.Popen([args.binary, "serve", "--data-dir", work, "--listen", f"127.0.0.1:{port}", "--rate-limit", "0",
                             "--localk8s-path", os.path.abspath(args.localk8s), "--log-level", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    RUNNING.append(proc)
    url = f"http://127.0.0.1:{port}"
    out = {}
    try:
        for _ in range(600):
            try:
                if http("GET", url + "/readyz")[0] == 200:
                    break
            except Exception:
                time.sleep(0.05)
        token = open(os.path.join(work, "admin.token")).read().strip()
        t0 = time.time()
        op = json.loads(http("POST", url + "/v1/environments/default/clusters", token,
                             {"name": "bench", "spec": {"engine": "local", "local": {"nodes": 3}}})[1])
        op = wait_op(url, token, op["id"])
        out["create_to_ready_s"] = time.time() - t0
        assert op["state"] == "succeeded", op
        # The kubeconfig from the API lists 3 Ready nodes.
        kc = os.path.join(work, "bench.kubeconfig")
        with open(kc, "wb") as f:
            f.write(http("GET", url + "/v1/environments/default/clusters/bench/kubeconfig", token)[1])
        nodes = json.loads(subprocess.run(["kubectl", "--kubeconfig", kc, "get", "nodes", "-o", "json"],
                                          capture_output=True, text=True, check=True).stdout)["items"]
        out["ready_nodes"] = sum(1 for n in nodes for c in n["status"]["conditions"]
                                 if c["type"] == "Ready" and c["status"] == "True")
        time.sleep(20)
        out["rss_3_nodes_kib"] = helper_rss_kib(work)
        t0 = time.time()
        c = json.loads(http("GET", url + "/v1/environments/default/clusters/bench", token)[1])
        op = json.loads(http("PUT", url + "/v1/environments/default/clusters/bench", token,
                             {"spec": {"engine": "local", "local": {"nodes": 100}}})[1])
        op = wait_op(url, token, op["id"])
        assert op["state"] == "succeeded", op
        out["scale_to_100_s"] = time.time() - t0
        time.sleep(20)
        out["rss_100_nodes_kib"] = helper_rss_kib(work)
        op = json.loads(http("DELETE", url + "/v1/environments/default/clusters/bench", token)[1])
        wait_op(url, token, op["id"])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    return out


def report_local(r):
    print(json.dumps(r, indent=1))
    print()
    print("| benchmark | result | target |")
    print("|---|---|---|")
    print(f"| local cluster: create request → API ready with {r['ready_nodes']} Ready nodes | {r['create_to_ready_s']:.1f} s | < 15 s |")
    print(f"| local cluster helper RSS, 3 nodes | {r['rss_3_nodes_kib'] / 1024:.0f} MiB | < 400 MB |")
    print(f"| local cluster helper RSS, 100 nodes (scaled by PUT in {r['scale_to_100_s']:.1f} s) | {r['rss_100_nodes_kib'] / 1024:.0f} MiB | report |")
    return 0


def bench_vault(args):
    exe = args.vault_bench or os.path.join(os.path.dirname(args.bare), "vault-bench")
    # On the volume the state lives on (the work tree's file system), not a tmpfs.
    base = tempfile.mkdtemp(prefix="cm-bench-vault-", dir=os.path.join(HERE, ".."))
    try:
        out = subprocess.run([exe, "--dir", base, "--iterations", "300"], capture_output=True, text=True,
                             check=True).stdout
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return json.loads(out)


def bench_policy(args):
    """Built-in evaluation (policy-bench) and, in the same run, the round trip to a real OPA server with
    the shipped Rego bundle behind TLS and a token (tests/integration/opa_server.py starts it)."""
    exe = args.policy_bench or os.path.join(os.path.dirname(args.bare), "policy-bench")
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
    from opa_server import OpaServer  # noqa: E402 (the tests' fixture, reused)
    work = tempfile.mkdtemp(prefix="cm-bench-opa-")
    opa = OpaServer(os.path.join(work, "opa"), bundles=[os.path.join(HERE, "..", "policy")])
    try:
        opa.start()
        out = subprocess.run([exe, "--iterations", "100000", "--remote-url", opa.url("cratekube/cluster"),
                              "--token-file", opa.token_file, "--ca-file", opa.ca_file, "--remote-iterations", "2000"],
                             capture_output=True, text=True, check=True).stdout
    finally:
        opa.stop()
        shutil.rmtree(work, ignore_errors=True)
    return json.loads(out)


def report_policy(r):
    print(json.dumps(r, indent=1))
    print()
    print("| benchmark | result | target |")
    print("|---|---|---|")
    for c in r["cases"]:
        print(f"| built-in evaluation, {c['name']} (input built + rules evaluated, {r['iterations']} runs) | "
              f"p50 {c['p50_us']:.1f} µs, p99 {c['p99_us']:.1f} µs | p99 < 20 µs |")
    rem = r.get("remote")
    if rem:
        print(f"| remote evaluation, 3 nodes, OPA over TLS with a token, connection reused ({rem['iterations']} runs) | "
              f"p50 {rem['p50_us'] / 1000:.2f} ms, p99 {rem['p99_us'] / 1000:.2f} ms | report |")
    return 0


def bench_audit(args):
    """Audit appends from 1 and from 8 threads (each a durable write; group commit batches concurrent
    ones) and the verification of the chain, on the work tree's file system."""
    exe = args.audit_bench or os.path.join(os.path.dirname(args.bare), "audit-bench")
    out = {}
    for threads, records in ((1, 5000), (8, 20000)):
        base = tempfile.mkdtemp(prefix="cm-bench-audit-", dir=os.path.abspath(os.path.join(HERE, "..")))
        try:
            out[threads] = json.loads(subprocess.run([exe, "--dir", base, "--records", str(records), "--threads",
                                                      str(threads)], capture_output=True, text=True, check=True).stdout)
        finally:
            shutil.rmtree(base, ignore_errors=True)
    return out


def report_audit(r):
    print(json.dumps(r, indent=1))
    print()
    print("| benchmark | result | target |")
    print("|---|---|---|")
    for threads, x in sorted(r.items()):
        print(f"| audit append with hash chaining, SQLite, {threads} thread(s), {x['records']} records | "
              f"{x['append_per_sec']:.0f} records/s | ≥ 10,000/s |")
    x = r[max(r)]
    print(f"| audit verify (read, hash, check), {x['verified']} records | {x['verify_per_sec']:.0f} records/s | report |")
    return 0


def bench_auth(args):
    """The authentication step: the verifier alone (auth-bench: full and cached JWT verification), and
    over HTTP the same request (GET one environment) with an OIDC token of a real test provider, with
    an API key, and GET /healthz (no authentication) as the floor, in the same run."""
    exe = args.auth_bench or os.path.join(os.path.dirname(args.bare), "auth-bench")
    out = {"verifier": json.loads(subprocess.run([exe, "--iterations", "50000"], capture_output=True, text=True,
                                                 check=True).stdout)}
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
    from oidc_provider import OidcProvider  # noqa: E402 (the tests' provider, reused)
    work = tempfile.mkdtemp(prefix="cm-bench-auth-")
    idp = OidcProvider(os.path.join(work, "oidc"), audience="clustermgmt")
    s = None
    try:
        idp.start()
        s = Serve(args.binary, os.path.join(work, "data"), 0, args.threads,
                  extra=("--oidc-issuer", idp.issuer, "--oidc-audience", "clustermgmt", "--oidc-ca-file", idp.ca_file,
                         "--auth-failure-limit", "0"))
        http("POST", s.url + "/v1/rolebindings", s.token,
             {"environment": "default", "subject": {"kind": "user", "name": "bench"}, "role": "viewer"})
        jwt = idp.token(sub="bench", exp=int(time.time()) + 3600)
        url = s.url + "/v1/environments/default"
        out["http_apikey"] = wrk(url, args.seconds, 16, 2, headers=(f"Authorization: Bearer {s.token}",))
        out["http_oidc"] = wrk(url, args.seconds, 16, 2, headers=(f"Authorization: Bearer {jwt}",))
        out["http_none"] = wrk(s.url + "/healthz", args.seconds, 16, 2)
    finally:
        if s:
            s.stop()
        idp.stop()
        shutil.rmtree(work, ignore_errors=True)
    return out


def report_auth(r):
    print(json.dumps(r, indent=1))
    v = r["verifier"]
    print()
    print("| benchmark | result | target |")
    print("|---|---|---|")
    for alg in ("rs256", "es256"):
        print(f"| OIDC bearer step, {alg.upper()}, JWK set held, token seen before (cached) | "
              f"p50 {v[alg + '_cached_p50_us']:.1f} µs, p99 {v[alg + '_cached_p99_us']:.1f} µs | p99 < 30 µs |")
        print(f"| OIDC bearer step, {alg.upper()}, first sight of a token (full verification) | "
              f"p50 {v[alg + '_verify_p50_us']:.1f} µs, p99 {v[alg + '_verify_p99_us']:.1f} µs | report |")
    a, o, n = r["http_apikey"], r["http_oidc"], r["http_none"]
    print(f"| GET one environment over HTTP: OIDC token / API key / (GET /healthz, no authentication) | "
          f"{o['rps']:.0f} / {a['rps']:.0f} / {n['rps']:.0f} req/s; p99 {o['p99_ms']:.2f} / {a['p99_ms']:.2f} / "
          f"{n['p99_ms']:.2f} ms | report |")
    return 0


def report_vault(r):
    print(json.dumps(r, indent=1))
    print()
    print("| benchmark | result | target |")
    print("|---|---|---|")
    print(f"| vault write, {r['size'] // 1024} KB, encrypted + versioned (p50) | {r['write_vault_p50_us']:.0f} µs vs plain "
          f"write+fsync {r['write_plain_fsync_p50_us']:.0f} µs = **{r['write_ratio_p50']:.2f}x**; vs temp+fsync+rename+fsync dir "
          f"{r['write_atomic_plain_p50_us']:.0f} µs = {r['write_ratio_vs_atomic_p50']:.2f}x | ≤ 1.5x |")
    print(f"| vault read, newest version (p50) | {r['read_vault_p50_us']:.0f} µs vs plain read {r['read_plain_p50_us']:.0f} µs | report |")
    return 0


def pct(values, p):
    """Nearest-rank percentile."""
    v = sorted(values)
    return v[max(0, math.ceil(p / 100 * len(v)) - 1)]


def api_time(s):
    """An API timestamp ("2026-11-25T15:24:48.586Z") in seconds."""
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if "." in s else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.datetime.strptime(s, fmt).replace(tzinfo=datetime.timezone.utc).timestamp()


RKE_OVERHEAD = re.compile(r"rke overhead: prepare (\d+) us, copy back (\d+) us, clean up (\d+) us")


def bench_rke(args):
    noop = os.path.abspath(args.rke_noop or os.path.join(os.path.dirname(args.bare), "rke-noop"))
    if not os.access(noop, os.X_OK):
        raise SystemExit(f"{noop} is missing: it is built with the release tree (bench/CMakeLists.txt)")
    n = max(args.rke_ops, 50)
    # On the volume the state lives on (every stored file is fsynced), not a tmpfs.
    work = tempfile.mkdtemp(prefix="cm-bench-rke-", dir=os.path.join(HERE, ".."))
    data = os.path.join(work, "data")
    port = free_port()
    proc = subprocess.Popen([args.binary, "serve", "--data-dir", data, "--listen", f"127.0.0.1:{port}", "--rate-limit", "0",
                             "--rke-path", noop, "--workers", "1", "--poll-ms", "50", "--log-level", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    RUNNING.append(proc)
    url = f"http://127.0.0.1:{port}"
    out = {"operations": n}
    try:
        for _ in range(600):
            try:
                if http("GET", url + "/readyz")[0] == 200:
                    break
            except Exception:
                time.sleep(0.05)
        token = open(os.path.join(data, "admin.token")).read().strip()
        http("POST", url + "/v1/environments/default/sshkeys", token, {"name": "ops", "generate": True})
        # rke's version list is read once per process: not part of any measured operation.
        http("GET", url + "/v1/engines/rke/versions", token)
        nodes = [{"address": "192.0.2.10", "user": "ubuntu", "roles": ["controlplane", "etcd"], "sshKey": "ops"},
                 {"address": "192.0.2.11", "user": "ubuntu", "roles": ["etcd", "worker"], "sshKey": "ops"},
                 {"address": "192.0.2.12", "user": "ubuntu", "roles": ["worker"], "sshKey": "ops"}]
        wall, engine, parts = [], [], {"prepare": [], "copy_back": [], "clean_up": []}
        for i in range(n + 3):  # the first 3 warm up
            body = {"name": f"rke{i:04d}", "spec": {"engine": "rke", "rke": {"nodes": nodes}}}
            op = json.loads(http("POST", url + "/v1/environments/default/clusters", token, body)[1])
            op = wait_op(url, token, op["id"], timeout=120)
            if op["state"] != "succeeded":
                log = http("GET", f"{url}/v1/operations/{op['id']}/log", token)[1].decode()
                raise RuntimeError(f"rke create failed: {op}\n{log}")
            if i < 3:
                continue
            wall.append((api_time(op["finishedAt"]) - api_time(op["startedAt"])) * 1000)
            log = http("GET", f"{url}/v1/operations/{op['id']}/log", token)[1].decode()
            m = RKE_OVERHEAD.search(log)
            if m:
                us = [int(g) for g in m.groups()]
                engine.append(sum(us) / 1000)
                for k, v in zip(parts, us):
                    parts[k].append(v / 1000)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)

    # The stand-in's own run time, as the service runs it (fresh dir with a cluster.yml, PATH and HOME only).
    try:
        own = []
        for i in range(n):
            d = os.path.join(work, "direct", str(i))
            os.makedirs(os.path.join(d, "ssh"), mode=0o700)
            with open(os.path.join(d, "cluster.yml"), "w") as f:
                f.write('cluster_name: "bench"\nnodes: []\n')
            t0 = time.perf_counter()
            subprocess.run([noop, "up", "--config", os.path.join(d, "cluster.yml")], check=True,
                           env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": d})
            own.append((time.perf_counter() - t0) * 1000)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    own_p50 = pct(own, 50)
    over = [w - own_p50 for w in wall]
    out.update(wall_p50_ms=pct(wall, 50), wall_p99_ms=pct(wall, 99), standin_p50_ms=own_p50,
               standin_p99_ms=pct(own, 99), overhead_p50_ms=pct(over, 50), overhead_p99_ms=pct(over, 99))
    if engine:
        out.update(engine_ops=len(engine), engine_p50_ms=pct(engine, 50), engine_p99_ms=pct(engine, 99),
                   **{f"{k}_p50_ms": pct(v, 50) for k, v in parts.items()},
                   **{f"{k}_p99_ms": pct(v, 99) for k, v in parts.items()})
    return out


def report_rke(r):
    print(json.dumps(r, indent=1))
    print()
    print("| benchmark | result | target |")
    print("|---|---|---|")
    print(f"| rke create of a 3-node cluster, {r['operations']} operations: operation wall time minus the stand-in's "
          f"own run time | p50 {r['overhead_p50_ms']:.1f} ms, p99 {r['overhead_p99_ms']:.1f} ms (wall p50 "
          f"{r['wall_p50_ms']:.1f}/p99 {r['wall_p99_ms']:.1f} ms; stand-in alone p50 {r['standin_p50_ms']:.2f}/p99 "
          f"{r['standin_p99_ms']:.2f} ms) | < 20 ms |")
    if "engine_p50_ms" in r:
        print(f"| the engine's own figure (prepare + copy back + clean up), {r['engine_ops']} operations | "
              f"p50 {r['engine_p50_ms']:.1f} ms, p99 {r['engine_p99_ms']:.1f} ms (p50: prepare "
              f"{r['prepare_p50_ms']:.1f}, copy back {r['copy_back_p50_ms']:.1f}, clean up {r['clean_up_p50_ms']:.1f} ms; "
              f"p99: {r['prepare_p99_ms']:.1f} / {r['copy_back_p99_ms']:.1f} / {r['clean_up_p99_ms']:.1f} ms) | < 20 ms |")
    else:
        print("| the engine's own figure (prepare + copy back + clean up) | not in the operation log of this build | < 20 ms |")
    return 0


MONITOR_INTERVAL = 30
MONITOR_LOCALS = 3  # real local clusters; every other record probes one of them
MONITOR_SETTLE = 15  # seconds after the first round before a window starts
MONITOR_ENV = "bench"
NOT_READY = "localk8s.cratekube.io/not-ready"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """utime + stime of a process in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu(pid):
    """CPU seconds of a process's threads by thread name."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                t = f.read()
        except FileNotFoundError:
            continue
        name = t[t.index("(") + 1:t.rindex(")")]
        fields = t.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def thread_sched(pid):
    """Seconds on a CPU and waiting for one (run queue) of a process's threads by thread name
    (/proc/PID/task/TID/schedstat)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                run_ns, wait_ns = (int(x) for x in f.read().split()[:2])
        except FileNotFoundError:
            continue
        a = out.setdefault(name, [0.0, 0.0])
        a[0] += run_ns / 1e9
        a[1] += wait_ns / 1e9
    return out


def machine_busy():
    """CPU seconds the whole machine was busy (every process, kernel, interrupts, steal) and the number of CPUs."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / CLK_TCK, os.cpu_count()


def proc_mem_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        text = f.read()
    return {k: int(re.search(rf"{k}:\s+(\d+)", text).group(1)) for k in ("VmRSS", "VmHWM")}


class RssSampler:
    """VmRSS of a process every `every` seconds in a thread, as (seconds since start, KiB)."""

    def __init__(self, pid, every=10):
        import threading
        self.series, self.done = [], threading.Event()
        t0 = time.monotonic()

        def run():
            while not self.done.is_set():
                try:
                    self.series.append((round(time.monotonic() - t0), proc_mem_kib(pid)["VmRSS"]))
                except (FileNotFoundError, ProcessLookupError):
                    return
                self.done.wait(every)
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def stop(self):
        self.done.set()
        self.thread.join()
        return self.series


def scrape_monitor(url):
    """The monitor's figures from /metrics (cumulative histogram buckets as the service gives them)."""
    with urllib.request.urlopen(url + "/metrics", timeout=120) as r:
        text = r.read().decode()
    cum = [(math.inf if le == "+Inf" else float(le), int(v)) for le, v in
           re.findall(r'^clustermgmt_probe_duration_seconds_bucket\{le="([^"]+)"\} (\d+)$', text, re.M)]
    return {"monitored": int(re.search(r"^clustermgmt_monitored_clusters (\d+)$", text, re.M).group(1)),
            "count": int(re.search(r"^clustermgmt_probe_duration_seconds_count (\d+)$", text, re.M).group(1)),
            "sum": float(re.search(r"^clustermgmt_probe_duration_seconds_sum (\S+)$", text, re.M).group(1)),
            "bounds": [b for b, _ in cum],
            "buckets": [v - (cum[i - 1][1] if i else 0) for i, (_, v) in enumerate(cum)],
            "errors": {k: int(v) for k, v in re.findall(r'^clustermgmt_probe_errors_total\{reason="([^"]+)"\} (\d+)$',
                                                        text, re.M)},
            "handshakes": {k: int(v) for k, v in re.findall(
                r'^clustermgmt_probe_tls_handshakes_total\{resumed="([^"]+)"\} (\d+)$', text, re.M)},
            "bytes": len(text)}


def hist_quantile(bounds, counts, q):
    """Quantile q of a histogram (counts per bucket, upper bounds), interpolated linearly in its bucket
    as Prometheus' histogram_quantile does."""
    total = sum(counts)
    if total == 0:
        return float("nan")
    rank, cum, lower = q * total, 0, 0.0
    for b, c in zip(bounds, counts):
        if c > 0 and cum + c >= rank:
            return lower if b == math.inf else lower + (b - lower) * (rank - cum) / c
        cum += c
        if b != math.inf:
            lower = b
    return lower


def measure_window(pid, scrape, seconds, helper_pids, relay_pids):
    """CPU of pid (and by thread), of the local clusters' helpers and of the relays, RSS every 10 s, and
    the probe figures between two scrapes around the window (the scrapes themselves are outside it)."""
    m0 = scrape()
    t0, c0, th0, s0 = time.monotonic(), proc_cpu(pid), thread_cpu(pid), thread_sched(pid)
    h0 = sum(proc_cpu(h) for h in helper_pids)
    r0 = sum(proc_cpu(h) for h in relay_pids)
    b0, ncpu = machine_busy()
    slices, rss, last_t, last_c = [], [], t0, c0
    while time.monotonic() < t0 + seconds:
        time.sleep(min(10, t0 + seconds - time.monotonic()))
        t, c = time.monotonic(), proc_cpu(pid)
        slices.append((c - last_c) / (t - last_t))
        rss.append(proc_mem_kib(pid)["VmRSS"])
        last_t, last_c = t, c
    t1, c1, th1, s1 = time.monotonic(), proc_cpu(pid), thread_cpu(pid), thread_sched(pid)
    h1 = sum(proc_cpu(h) for h in helper_pids)
    r1 = sum(proc_cpu(h) for h in relay_pids)
    b1, _ = machine_busy()
    mem = proc_mem_kib(pid)
    m1 = scrape()
    counts = [b - a for a, b in zip(m0["buckets"], m1["buckets"])]
    probes = m1["count"] - m0["count"]
    return {"seconds": t1 - t0, "cores": (c1 - c0) / (t1 - t0),
            "threads": {k: round((v - th0.get(k, 0)) / (t1 - t0), 4) for k, v in th1.items()},
            "slice_cores_min": min(slices), "slice_cores_max": max(slices),
            # Per thread: share of the window on a CPU and waiting in the run queue for one.
            "sched": {k: [round((v[0] - s0.get(k, [0, 0])[0]) / (t1 - t0), 4), round((v[1] - s0.get(k, [0, 0])[1]) / (t1 - t0), 4)]
                      for k, v in s1.items()},
            "machine_busy_cores": (b1 - b0) / (t1 - t0), "cpus": ncpu,
            "helpers_cores": (h1 - h0) / (t1 - t0), "relay_cores": (r1 - r0) / (t1 - t0), "rss_kib": mem["VmRSS"], "hwm_kib": mem["VmHWM"],
            "rss_series_kib": rss, "probes": probes, "probes_per_s": probes / (t1 - t0),
            "p50_ms": hist_quantile(m1["bounds"], counts, 0.5) * 1000,
            "p99_ms": hist_quantile(m1["bounds"], counts, 0.99) * 1000,
            "mean_ms": (m1["sum"] - m0["sum"]) / max(probes, 1) * 1000,
            "errors": {k: v - m0["errors"].get(k, 0) for k, v in m1["errors"].items() if v - m0["errors"].get(k, 0)},
            "errors_total": {k: v for k, v in m1["errors"].items() if v},
            # TLS handshakes in the window, by whether they resumed the cluster's session (monitor only).
            "handshakes": {k: v - m0.get("handshakes", {}).get(k, 0) for k, v in m1.get("handshakes", {}).items()}}


def monitor_serve(args, data, log, extra=()):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([args.binary, "serve", "--data-dir", data, "--listen", f"127.0.0.1:{port}", "--rate-limit", "0",
                             "--localk8s-path", os.path.abspath(args.localk8s), "--policy-recheck-seconds", "0",
                             "--monitor-interval-seconds", str(MONITOR_INTERVAL), "--log-level", "warning", *extra],
                            stdout=subprocess.DEVNULL, stderr=log)
    RUNNING.append(proc)
    for _ in range(1200):
        try:
            if http("GET", url + "/readyz")[0] == 200:
                break
        except Exception:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited with {proc.returncode}")
            time.sleep(0.05)
    return proc, url, open(os.path.join(data, "admin.token")).read().strip()


def serve_stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=180)


def mint_records(path, locals_, n, first_port):
    """n records round robin over the local clusters, each with its own EC P-256 client certificate
    (CN unique, O=system:masters) signed by that cluster's CA, and a kubeconfig embedding them; record
    i's server is https://127.0.0.1:<first_port + i>, a port of the relay leading to cluster i mod 3."""
    import base64
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def b64(s):
        return base64.b64encode(s.encode()).decode()

    now = datetime.datetime.now(datetime.timezone.utc)
    with open(path, "w") as f:
        for i in range(n):
            c = locals_[i % len(locals_)]
            server = f"https://127.0.0.1:{first_port + i}"
            key = ec.generate_private_key(ec.SECP256R1())
            cert = (x509.CertificateBuilder()
                    .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                                             x509.NameAttribute(NameOID.COMMON_NAME, f"monitor-bench-{i:05d}")]))
                    .issuer_name(c["ca"].subject).public_key(key.public_key())
                    .serial_number(x509.random_serial_number())
                    .not_valid_before(now - datetime.timedelta(hours=1))
                    .not_valid_after(now + datetime.timedelta(days=365))
                    .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                    .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                                 data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                                 crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                    .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                    .sign(c["ca_key"], hashes.SHA256()))
            cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
            key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                        serialization.NoEncryption()).decode()
            kubeconfig = (f"apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n"
                          f"    server: {server}\n    certificate-authority-data: {b64(c['ca_pem'])}\n"
                          f"users:\n- name: monitor\n  user:\n    client-certificate-data: {b64(cert_pem)}\n"
                          f"    client-key-data: {b64(key_pem)}\ncontexts:\n- name: local\n  context:\n"
                          f"    cluster: local\n    user: monitor\ncurrent-context: local\n")
            f.write(json.dumps({"env": MONITOR_ENV, "name": f"m{i:05d}", "server": server, "ca": c["ca_pem"],
                                "cert": cert_pem, "key": key_pem, "kubeconfig": kubeconfig}) + "\n")


def local_api(c, method, path, body=None):
    """A request to a local cluster's API server with the first record's credentials of that cluster."""
    import requests
    return requests.request(method, c["server"] + path, json=None, data=json.dumps(body) if body is not None else None,
                            headers={"Content-Type": "application/merge-patch+json"} if body is not None else {},
                            cert=(c["cert_file"], c["key_file"]), verify=c["ca_file"], timeout=30)


def condition(url, token, name, ctype):
    doc = json.loads(http("GET", f"{url}/v1/environments/default/clusters/{name}", token)[1])
    for cond in doc.get("status", {}).get("conditions", []):
        if cond["type"] == ctype:
            return cond
    return None


def wait_condition(url, token, name, ctype, status, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        cond = condition(url, token, name, ctype)
        if cond and cond["status"] == status:
            return cond
        time.sleep(0.25)
    return None


def event_time(url, token, name, ctype, status):
    """The newest ConditionChanged event of that condition and status (GET /v1/events, follow=false)."""
    body = http("GET", f"{url}/v1/events?environment=default&cluster={name}&follow=false", token)[1].decode()
    found = None
    for line in body.splitlines():
        if line.startswith("data:"):
            e = json.loads(line[5:])
            if e.get("type") == "ConditionChanged" and e.get("condition") == ctype and e.get("status") == status:
                found = e["time"]
    return found


def detection_trials(url, token, locals_, trials):
    """NotReady detection on the local clusters, one thread each: at a random point of the interval a
    node is annotated not-ready; the time from the API server's answer to that PATCH to the stored
    NodesReady=False (its lastTransitionTime), then the same for the annotation's removal (recovery)."""
    import random
    import threading
    results, lock = [], threading.Lock()

    def node_ready(c, node):
        n = local_api(c, "GET", f"/api/v1/nodes/{node}").json()
        return next((x["status"] for x in n["status"]["conditions"] if x["type"] == "Ready"), None)

    def run(c, count):
        node = local_api(c, "GET", "/api/v1/nodes").json()["items"][0]["metadata"]["name"]
        for _ in range(count):
            time.sleep(random.uniform(0, MONITOR_INTERVAL))
            r = local_api(c, "PATCH", f"/api/v1/nodes/{node}", {"metadata": {"annotations": {NOT_READY: "true"}}})
            t_change = time.time()
            r.raise_for_status()
            t_node = None
            while time.time() < t_change + 30:
                if node_ready(c, node) == "False":
                    t_node = time.time()
                    break
                time.sleep(0.05)
            cond = wait_condition(url, token, c["name"], "NodesReady", "False", 6 * MONITOR_INTERVAL)
            out = {"cluster": c["name"], "node_not_ready_s": t_node - t_change if t_node else None,
                   "detect_s": api_time(cond["lastTransitionTime"]) - t_change if cond else None,
                   "reason": cond and cond["reason"]}
            ev = event_time(url, token, c["name"], "NodesReady", "False") if cond else None
            out["event_detect_s"] = api_time(ev) - t_change if ev else None
            time.sleep(random.uniform(0, MONITOR_INTERVAL))
            r = local_api(c, "PATCH", f"/api/v1/nodes/{node}", {"metadata": {"annotations": {NOT_READY: None}}})
            t_back = time.time()
            r.raise_for_status()
            cond = wait_condition(url, token, c["name"], "NodesReady", "True", 6 * MONITOR_INTERVAL)
            out["recover_s"] = api_time(cond["lastTransitionTime"]) - t_back if cond else None
            with lock:
                results.append(out)

    threads = [threading.Thread(target=run, args=(c, trials // len(locals_) + (k < trials % len(locals_))))
               for k, c in enumerate(locals_)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def start_relays(exe, first_port, n, upstreams):
    """port-relay processes for ports first_port .. first_port + n - 1 (port first_port + i leads to
    upstreams[i mod len]), as many as the descriptor limit needs (3 per port: listener, two sides)."""
    per = (resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 64) // 3
    procs = []
    for start in range(0, n, per):
        count = min(per, n - start)
        p = subprocess.Popen([exe, "--first-port", str(first_port + start), "--count", str(count), "--upstreams",
                              ",".join(str(u) for u in upstreams), "--index-offset", str(start)],
                             stdout=subprocess.PIPE, text=True)
        RUNNING.append(p)
        procs.append(p)
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError(f"port-relay could not listen on ports {first_port + start}..{first_port + start + count - 1}")
    return procs


def bare_run(exe, records, size, window, helper_pids, relay_pids):
    proc = subprocess.Popen([exe, "--records", records, "--limit", str(size), "--interval-seconds", str(MONITOR_INTERVAL),
                             "--concurrency", "256", "--timeout-ms", "10000"], stdout=subprocess.PIPE, text=True)
    RUNNING.append(proc)
    import threading
    latest = [None]

    def reader():
        for line in proc.stdout:
            latest[0] = json.loads(line)
    threading.Thread(target=reader, daemon=True).start()

    bounds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, math.inf]

    def scrape():
        x = latest[0]
        return {"count": x["probes"], "sum": x["sum"], "bounds": bounds, "buckets": x["buckets"],
                "errors": {"failed": x["failed"]}, "last_error": x["lastError"]}
    try:
        t0 = time.time()
        while not latest[0] or latest[0]["probed"] < size:
            if proc.poll() is not None or time.time() > t0 + 600:
                raise RuntimeError(f"bare-prober did not probe {size} records: {latest[0]}")
            time.sleep(1)
        first = time.time() - t0
        time.sleep(MONITOR_SETTLE)
        out = measure_window(proc.pid, scrape, window, helper_pids, relay_pids)
        out["first_round_s"] = first
        out["last_error"] = latest[0]["lastError"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return out


def bench_monitor(args):
    exe_dir = os.path.dirname(args.bare)
    seed = args.monitor_seed or os.path.join(exe_dir, "monitor-seed")
    bare = args.bare_prober or os.path.join(exe_dir, "bare-prober")
    relay = args.port_relay or os.path.join(exe_dir, "port-relay")
    sizes = sorted(int(x) for x in args.monitor_sizes.split(","))
    if not os.path.exists(args.localk8s):
        raise SystemExit(f"{args.localk8s} is missing: run `make localk8s`")
    if args.monitor_window < 2 * MONITOR_INTERVAL:
        raise SystemExit(f"--monitor-window must cover at least 2 intervals ({2 * MONITOR_INTERVAL} s)")
    # One connection per record in the service (and in bare-prober): the soft descriptor limit up to the hard one.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < sizes[-1] + 1024:
        raise SystemExit(f"RLIMIT_NOFILE is {hard}: {sizes[-1]} monitored clusters need {sizes[-1] + 1024} descriptors")
    work = tempfile.mkdtemp(prefix="cm-bench-monitor-")
    data = os.path.join(work, "data")
    records = os.path.join(work, "records.jsonl")
    log = open(os.path.join(work, "serve.log"), "ab")
    out = {"interval_s": MONITOR_INTERVAL, "window_s": args.monitor_window, "sizes": [], "local_clusters": MONITOR_LOCALS}
    locals_, relays, proc = [], [], None
    try:
        # 3 real local clusters (1 node each), then their CAs to sign the records' client certificates.
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        proc, url, token = monitor_serve(args, data, log)
        ops = [json.loads(http("POST", url + "/v1/environments/default/clusters", token,
                               {"name": f"mon{k}", "spec": {"engine": "local", "local": {"nodes": 1}}})[1])["id"]
               for k in range(MONITOR_LOCALS)]
        for op_id in ops:
            op = wait_op(url, token, op_id)
            assert op["state"] == "succeeded", op
        for k in range(MONITOR_LOCALS):
            c = json.loads(http("GET", f"{url}/v1/environments/default/clusters/mon{k}", token)[1])
            d = os.path.join(data, "local", "default", c["id"])
            ca_pem = open(os.path.join(d, "pki", "ca.crt")).read()
            locals_.append({"name": f"mon{k}", "id": c["id"], "server": c["status"]["endpoint"], "ca_pem": ca_pem,
                            "ca": x509.load_pem_x509_certificate(ca_pem.encode()),
                            "ca_key": serialization.load_pem_private_key(open(os.path.join(d, "pki", "ca.key"), "rb").read(),
                                                                         None),
                            "pid": int(open(os.path.join(d, "localk8s.pid")).read()), "ca_file": os.path.join(d, "pki", "ca.crt")})
        serve_stop(proc)
        relays = start_relays(relay, args.monitor_first_port, sizes[-1],
                              [int(c["server"].rsplit(":", 1)[1]) for c in locals_])
        relay_pids = [p.pid for p in relays]
        t0 = time.time()
        mint_records(records, locals_, sizes[-1], args.monitor_first_port)
        out["mint_s"] = time.time() - t0
        with open(records) as f:
            for k, line in enumerate(f):
                if k == MONITOR_LOCALS:
                    break
                r = json.loads(line)
                c = locals_[k % MONITOR_LOCALS]
                for part in ("cert", "key"):
                    c[part + "_file"] = os.path.join(work, f"{c['name']}.{part}")
                    with open(c[part + "_file"], "w") as pf:
                        pf.write(r[part])
        helpers = [c["pid"] for c in locals_]

        for size in sizes:
            # The local clusters count: size - 3 records are seeded (incrementally: earlier ones stay).
            s = subprocess.run([seed, "--data-dir", data, "--records", records, "--limit", str(size - MONITOR_LOCALS)],
                               capture_output=True, text=True)
            if s.returncode != 0:
                raise RuntimeError(f"monitor-seed failed: {s.stderr}")
            row = {"clusters": size, "seed": json.loads(s.stdout)}
            proc, url, token = monitor_serve(args, data, log)
            rss = RssSampler(proc.pid)
            t0 = time.time()
            while True:
                m = scrape_monitor(url)
                if m["monitored"] == size and m["count"] >= size:
                    break
                if time.time() > t0 + 600 or proc.poll() is not None:
                    raise RuntimeError(f"the monitor did not probe {size} clusters: {m['monitored']} monitored, "
                                       f"{m['count']} probes")
                time.sleep(3)
            row["first_round_s"] = time.time() - t0
            time.sleep(MONITOR_SETTLE)
            row["monitor"] = measure_window(proc.pid, lambda: scrape_monitor(url), args.monitor_window, helpers, relay_pids)
            if size == sizes[-1]:
                # One scrape of /metrics: the CPU of the threads other than the monitor's (the HTTP server's).
                th0, t1 = thread_cpu(proc.pid), time.monotonic()
                m = scrape_monitor(url)
                th1 = thread_cpu(proc.pid)
                row["scrape"] = {"bytes": m["bytes"], "seconds": time.monotonic() - t1,
                                 "cpu_s": sum(v - th0.get(k, 0) for k, v in th1.items() if not k.startswith("cm-monitor"))}
                c0 = proc_cpu(proc.pid)
                if args.monitor_trials > 0:
                    t0 = time.time()
                    out["trials"] = detection_trials(url, token, locals_, args.monitor_trials)
                    out["trials_cores"] = (proc_cpu(proc.pid) - c0) / (time.time() - t0)
                    out["trials_mem_kib"] = proc_mem_kib(proc.pid)
            row["rss_timeline_kib"] = rss.stop()
            serve_stop(proc)
            row["bare"] = bare_run(bare, records, size, args.monitor_window, helpers, relay_pids)
            row["ratio"] = row["monitor"]["cores"] / row["bare"]["cores"]
            # CPU per probe: comparable also when one of them did not keep the rate (a saturated machine).
            for k in ("monitor", "bare"):
                row[k]["cpu_ms_per_probe"] = row[k]["cores"] / max(row[k]["probes_per_s"], 1e-9) * 1000
            row["ratio_per_probe"] = row["monitor"]["cpu_ms_per_probe"] / row["bare"]["cpu_ms_per_probe"]
            out["sizes"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        # The local clusters are deleted through the service (which stops their helpers).
        try:
            if proc:
                serve_stop(proc)
            if locals_:
                proc, url, token = monitor_serve(args, data, log, extra=("--no-monitor",))
                ops = [json.loads(http("DELETE", f"{url}/v1/environments/default/clusters/{c['name']}", token)[1])["id"]
                       for c in locals_]
                for op_id in ops:
                    wait_op(url, token, op_id, timeout=120)
                serve_stop(proc)
        finally:
            for p in relays:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=60)
            log.close()
            with open(os.path.join(work, "serve.log"), errors="replace") as f:
                out["serve_log_tail"] = f.read().splitlines()[-20:]
            shutil.rmtree(work, ignore_errors=True)
    return out


def report_monitor(r):
    print(json.dumps(r, indent=1))
    print()
    iv = r["interval_s"]
    print("| clusters | monitor CPU (cores) | bare prober CPU (cores) | ratio | CPU per probe: monitor / bare (ratio) | "
          "probes/s: monitor / bare / needed | RSS end / peak | probe p50 / p99 (bare) | errors | "
          "machine busy / API servers / relay (cores) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in r["sizes"]:
        m, b = row["monitor"], row["bare"]
        errs = ", ".join(f"{k} {v}" for k, v in m["errors"].items()) or "0"
        print(f"| {row['clusters']:,} | {m['cores']:.3f} | {b['cores']:.3f} | **{row['ratio']:.2f}x** | "
              f"{m['cpu_ms_per_probe']:.2f} / {b['cpu_ms_per_probe']:.2f} ms ({row['ratio_per_probe']:.2f}x) | "
              f"{m['probes_per_s']:.0f} / {b['probes_per_s']:.0f} / {row['clusters'] / iv:.0f} | "
              f"{m['rss_kib'] / 1024:.1f} / {m['hwm_kib'] / 1024:.1f} MiB | {m['p50_ms']:.1f} / {m['p99_ms']:.1f} ms "
              f"({b['p50_ms']:.1f} / {b['p99_ms']:.1f}) | {errs} | "
              f"{m['machine_busy_cores']:.2f} / {m['helpers_cores']:.2f} / {m['relay_cores']:.2f} "
              f"({b['machine_busy_cores']:.2f} / {b['helpers_cores']:.2f} / {b['relay_cores']:.2f}) |")
    t = [x for x in r.get("trials", []) if x["detect_s"] is not None]
    if t:
        d = [x["detect_s"] for x in t]
        rec = [x["recover_s"] for x in t if x["recover_s"] is not None]
        print()
        print(f"| NotReady detection, {len(t)} trials (of {len(r['trials'])}), {r['sizes'][-1]['clusters']:,} monitored | "
              f"min {min(d):.1f} s, p50 {pct(d, 50):.1f} s, p90 {pct(d, 90):.1f} s, max {max(d):.1f} s "
              f"(= {min(d) / iv:.2f} / {pct(d, 50) / iv:.2f} / {pct(d, 90) / iv:.2f} / {max(d) / iv:.2f} of the {iv} s interval) |")
        if rec:
            print(f"| recovery (annotation removed → NodesReady True stored) | min {min(rec):.1f} s, p50 {pct(rec, 50):.1f} s, "
                  f"p90 {pct(rec, 90):.1f} s, max {max(rec):.1f} s |")
    return 0


# ---- Add-ons (--only addons) ------------------------------------------------------------------------

ADDON_LABEL = "bench.cratekube.io/run"
ADDON_VICTIM = "bench.cratekube.io/victim"
ADDON_TIER = "bench.cratekube.io/tier"
ADDON_CLUSTER = "addons"
ADDON_NAMESPACES = 4  # of the add-on applied whole
ADDON_DEPLOYMENTS = 4  # in its variant with rollouts


def addon_objects(tag, n, namespaces, deployments=0):
    """n objects (the namespaces among them, first): ConfigMaps, Secrets, Services and ServiceAccounts
    round robin over the namespaces, the last `deployments` of them Deployments (1 replica). Every object
    is labelled with the tag; in each namespace the first three ConfigMaps are marked as the victims of
    the drift pass (bench.cratekube.io/victim: delete, conflict, unlabel)."""
    nss = [f"{tag}-{k}" for k in range(namespaces)]
    out = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {ADDON_LABEL: tag}}} for ns in nss]
    kinds = ("ConfigMap", "Secret", "ConfigMap", "Service", "ConfigMap", "ServiceAccount", "Secret")
    victims = {}
    rest = n - namespaces
    for i in range(rest):
        ns = nss[i % namespaces]
        kind = "Deployment" if i >= rest - deployments else kinds[(i // namespaces) % len(kinds)]
        meta = {"name": f"{kind.lower()}-{i:04d}", "namespace": ns, "labels": {ADDON_LABEL: tag, ADDON_TIER: "base"}}
        if kind == "ConfigMap":
            seen = victims.setdefault(ns, 0)
            if seen < 3:
                meta["labels"][ADDON_VICTIM] = ("delete", "conflict", "unlabel")[seen]
                victims[ns] = seen + 1
            o = {"data": {"index": str(i), "settings.conf": f"key{i}=" + "x" * 200, "mode": "bench"}}
        elif kind == "Secret":
            o = {"type": "Opaque", "stringData": {"user": f"user{i}", "token": f"t{i:08d}" * 4}}
        elif kind == "Service":
            o = {"spec": {"selector": {"app": f"app{i}"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}
        elif kind == "ServiceAccount":
            o = {}
        else:
            o = {"spec": {"replicas": 1, "selector": {"matchLabels": {"app": f"web{i}"}},
                          "template": {"metadata": {"labels": {"app": f"web{i}"}},
                                       "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}]}}}}
        out.append({"apiVersion": "apps/v1" if kind == "Deployment" else "v1", "kind": kind, "metadata": meta, **o})
    return out, nss


def write_manifest(path, objs):
    import yaml
    with open(path, "w") as f:
        f.write(yaml.safe_dump_all(objs, sort_keys=False))


def http_status(method, url, token=None, body=None):
    """http() that answers (status, body) for error statuses too."""
    import urllib.error
    try:
        return http(method, url, token, body)
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class AddonBench:
    """The local cluster of the add-on section: the service that made it, kubectl and the driver on it."""

    def __init__(self, args, work):
        self.work = work
        self.driver = args.addon_apply or os.path.join(
            os.path.dirname(args.testbin or os.path.join(os.path.dirname(args.binary), "tests", "clustermgmt-testbin")),
            "addon-apply")
        if not os.access(self.driver, os.X_OK):
            raise SystemExit(f"{self.driver} is missing: it is built with clustermgmt-testbin (tests/CMakeLists.txt)")
        if not os.path.exists(args.localk8s):
            raise SystemExit(f"{args.localk8s} is missing: run `make localk8s`")
        self.kubectl_cache = os.path.join(work, "kubectl-cache")
        self.log = open(os.path.join(work, "serve.log"), "ab")
        self.data = os.path.join(work, "data")
        self.proc, self.url, self.token = monitor_serve(args, self.data, self.log, extra=("--no-monitor",))
        self.cluster = f"{self.url}/v1/environments/default/clusters/{ADDON_CLUSTER}"
        self.created = False

    def create_cluster(self):
        op = json.loads(http("POST", self.url + "/v1/environments/default/clusters", self.token,
                             {"name": ADDON_CLUSTER, "spec": {"engine": "local", "local": {"nodes": 1}}})[1])
        self.created = True
        op = wait_op(self.url, self.token, op["id"], timeout=300)
        if op["state"] != "succeeded":
            raise RuntimeError(f"local cluster create failed: {op}")
        self.kubeconfig = os.path.join(self.work, "admin.kubeconfig")
        fd = os.open(self.kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(http("GET", self.cluster + "/kubeconfig", self.token)[1])

    def kubectl(self, *argv, check=True):
        """kubectl with the admin kubeconfig and a discovery cache of this run (never ~/.kube)."""
        out = subprocess.run(["kubectl", "--kubeconfig", self.kubeconfig, "--cache-dir", self.kubectl_cache, *argv],
                             capture_output=True, text=True, timeout=600)
        if check and out.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(argv)}: {out.stderr[-2000:]}")
        return out

    def timed_kubectl(self, *argv):
        t0 = time.perf_counter()
        out = self.kubectl(*argv)
        return time.perf_counter() - t0, out

    def driver_run(self, command, manifest=None, inventory=None, addon="bench", timeout=300):
        """One call of the engine through addon-apply: (wall seconds, its JSON)."""
        argv = [self.driver, command, "--kubeconfig", self.kubeconfig, "--addon", addon, "--timeout", str(timeout)]
        if manifest:
            argv += ["--manifest", manifest]
        if inventory:
            argv += ["--inventory", inventory]
        t0 = time.perf_counter()
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 60)
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            raise RuntimeError(f"addon-apply {command} exited with {out.returncode}: {out.stderr[-2000:]}")
        res = json.loads(out.stdout)
        if res["result"] != 0:
            raise RuntimeError(f"addon-apply {command}: {res['reason']}: {res['message']}")
        return wall, res

    def delete_namespaces(self, nss):
        """Deletes the namespaces and waits until they are gone (their objects with them), then lets the
        API server settle, so that every trial is a first apply on a quiet cluster."""
        self.kubectl("delete", "namespace", "--ignore-not-found", "--wait=true", "--timeout=300s", *nss)
        time.sleep(1)

    def install_and_wait(self, name, manifest_text, timeout=600):
        """The service's path: a definition, then the install request timed to phase Applied (polled every
        20 ms) and to the reconciler's own status.lastApplyTime. Uninstalled and deleted afterwards."""
        http("POST", self.url + "/v1/environments/default/addons", self.token,
             {"name": name, "kind": "manifest", "version": "1", "manifests": manifest_text, "timeoutSeconds": 600,
              "driftIntervalSeconds": 86400})
        t_req = time.time()
        t0 = time.perf_counter()
        status, body = http("POST", self.cluster + "/addons", self.token, {"addon": name})
        assert status in (200, 201, 202), body
        deadline = t0 + timeout
        while True:
            inst = json.loads(http("GET", f"{self.cluster}/addons/{name}", self.token)[1])
            phase = inst.get("status", {}).get("phase")
            if phase == "Applied":
                polled = time.perf_counter() - t0
                break
            if phase == "Failed" or time.perf_counter() > deadline:
                raise RuntimeError(f"add-on {name} not applied: {json.dumps(inst.get('status'))}")
            time.sleep(0.02)
        st = inst["status"]
        out = {"seconds": polled, "status_s": api_time(st["lastApplyTime"]) - t_req, "objects": st.get("objects")}
        http("DELETE", f"{self.cluster}/addons/{name}", self.token)
        t1 = time.perf_counter()
        while http_status("GET", f"{self.cluster}/addons/{name}", self.token)[0] != 404:
            if time.perf_counter() > t1 + timeout:
                raise RuntimeError(f"add-on {name} not uninstalled")
            time.sleep(0.2)
        http("DELETE", f"{self.url}/v1/environments/default/addons/{name}", self.token)
        return out

    def close(self):
        try:
            if self.created:
                op = json.loads(http("DELETE", self.cluster, self.token)[1])
                wait_op(self.url, self.token, op["id"], timeout=180)
        finally:
            serve_stop(self.proc)
            self.log.close()


def kubectl_requests(stderr):
    """The requests kubectl made, by method, from its -v=6 log (round_trippers lines)."""
    counts = {}
    for m in re.finditer(r'"?(GET|PATCH|POST|PUT|DELETE)"? (?:url=")?https://\S+', stderr):
        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts


def kubectl_phases(stderr):
    """From kubectl's -v=6 log: seconds from its first log line to its first PATCH (configuration,
    discovery and OpenAPI, the client-side part of validation), and from the first PATCH to the last."""
    def t(line):
        h, m, sec = line.split()[1].split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    lines = [x for x in stderr.splitlines() if re.match(r"I\d{4} \d\d:\d\d:\d\d\.\d+ ", x)]
    patches = [x for x in lines if "PATCH https://" in x]
    if not lines or not patches:
        return None
    return {"before_first_patch_s": t(patches[0]) - t(lines[0]), "patches_s": t(patches[-1]) - t(patches[0])}


def bench_addons(args):
    """1. A first apply of an add-on of --addon-objects objects to a local cluster: the engine through
    addon-apply, `kubectl apply --server-side` of the same file, and the service end to end (install
    request → phase Applied), alternating, each trial on fresh namespaces; without Deployments (the
    comparison) and with 4 (rollouts waited for).
    2. A drift pass over --drift-clusters inventories of --drift-objects objects, each in a namespace of
    its own on the same local cluster (a stand-in for that many clusters): every inventory applied once,
    then applied again unchanged, then again after kubectl deleted or changed 3 objects of each."""
    work = tempfile.mkdtemp(prefix="cm-bench-addons-")
    b = AddonBench(args, work)
    n, trials = args.addon_objects, args.addon_trials
    out = {"objects": n, "trials": trials, "namespaces": ADDON_NAMESPACES,
           "kubectl": json.loads(subprocess.run(["kubectl", "version", "--client", "-o", "json"], capture_output=True,
                                                text=True, check=True).stdout)["clientVersion"]["gitVersion"]}
    try:
        t0 = time.time()
        b.create_cluster()
        out["cluster_create_s"] = time.time() - t0
        out["server_version"] = json.loads(b.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
        # One apply untimed: kubectl's discovery and OpenAPI caches warm (kubectl at its best), the API
        # server past its first writes of these kinds.
        objs, nss = addon_objects("ab-warm", n, ADDON_NAMESPACES)
        warm = os.path.join(work, "warm.yaml")
        write_manifest(warm, objs)
        b.kubectl("apply", "--server-side", "--force-conflicts", "-f", warm)
        b.delete_namespaces(nss)

        def one(method, tag, deployments):
            objs, nss = addon_objects(tag, n, ADDON_NAMESPACES, deployments)
            path = os.path.join(work, tag + ".yaml")
            write_manifest(path, objs)
            r = {}
            if method == "engine":
                r["seconds"], res = b.driver_run("apply", path, addon=tag)
                r["api_calls"] = res["apiCalls"]
                r["objects"] = len(res["inventory"])
                if deployments:
                    inv = os.path.join(work, tag + ".inventory.json")
                    with open(inv, "w") as f:
                        json.dump(res["inventory"], f)
                    wait_s, res = b.driver_run("wait", inventory=inv, addon=tag)
                    r["with_wait_s"] = r["seconds"] + wait_s
                    r["wait_api_calls"] = res["apiCalls"]
            elif method in ("kubectl", "kubectl_novalidate"):
                extra = ("--validate=false",) if method == "kubectl_novalidate" else ()
                r["seconds"], res = b.timed_kubectl("apply", "--server-side", "--force-conflicts", *extra, "-f", path)
                r["objects"] = len(res.stdout.splitlines())
                if deployments:
                    wait_s, _ = b.timed_kubectl("wait", "deployments", "-A", "-l", f"{ADDON_LABEL}={tag}",
                                                "--for=condition=Available", "--timeout=300s")
                    r["with_wait_s"] = r["seconds"] + wait_s
            else:
                with open(path) as f:
                    r.update(b.install_and_wait(tag, f.read()))
            b.delete_namespaces(nss)
            return r

        # 1. Alternating, the order rotated each round; every trial on namespaces of its own.
        for label, deployments, rounds, methods in (("plain", 0, trials,
                                                     ("engine", "kubectl", "api", "kubectl_novalidate")),
                                                    ("deployments", ADDON_DEPLOYMENTS, max(1, trials // 2),
                                                     ("engine", "kubectl", "api"))):
            res = {m: [] for m in methods}
            for t in range(rounds):
                for k in range(len(methods)):
                    m = methods[(t + k) % len(methods)]
                    r = one(m, f"ab-{label[0]}{t}{methods.index(m)}", deployments)
                    res[m].append(r)
                    print(json.dumps({"set": label, "method": m, **r}), file=sys.stderr, flush=True)
            out[label] = {"deployments": deployments, "rounds": rounds, "runs": res}

        # kubectl's requests for the same apply (one more run, untimed, with -v=6).
        objs, nss = addon_objects("ab-count", n, ADDON_NAMESPACES)
        path = os.path.join(work, "count.yaml")
        write_manifest(path, objs)
        v = b.kubectl("-v=6", "apply", "--server-side", "--force-conflicts", "-f", path)
        out["kubectl_requests"] = kubectl_requests(v.stderr)
        out["kubectl_phases"] = kubectl_phases(v.stderr)
        out["kubectl_throttled"] = len(re.findall(r"client-side throttling", v.stderr))
        b.delete_namespaces(nss)

        # 2. The drift pass: one namespace and one inventory per stand-in cluster.
        nc, per = args.drift_clusters, args.drift_objects
        drift = {"clusters": nc, "objects": per, "first": [], "unchanged": [], "changed": []}
        d = os.path.join(work, "drift")
        os.makedirs(d)
        for c in range(nc):
            objs, _ = addon_objects(f"drift-{c:03d}", per, 1)
            write_manifest(os.path.join(d, f"{c:03d}.yaml"), objs)

        def drift_pass(key, expect_corrected):
            t0 = time.perf_counter()
            for c in range(nc):
                inv = os.path.join(d, f"{c:03d}.json")
                wall, res = b.driver_run("apply", os.path.join(d, f"{c:03d}.yaml"),
                                         inventory=inv if os.path.exists(inv) else None, addon=f"drift-{c:03d}")
                changes = sorted(x["change"] for x in res["corrected"])
                if changes != expect_corrected:
                    raise RuntimeError(f"drift pass {key}, cluster {c}: corrected {res['corrected']}")
                with open(inv, "w") as f:
                    json.dump(res["inventory"], f)
                drift[key].append({"seconds": wall, "api_calls": res["apiCalls"], "corrected": len(res["corrected"])})
            drift[key + "_wall_s"] = time.perf_counter() - t0

        drift_pass("first", [])
        time.sleep(1.1)  # the next writes in a later second than the first apply's (managedFields resolution)
        drift_pass("unchanged", [])
        sel = ADDON_VICTIM + "="
        b.kubectl("delete", "configmaps", "-A", "-l", sel + "delete", "--wait=true")
        b.kubectl("label", "configmaps", "-A", "-l", sel + "conflict", "--overwrite", ADDON_TIER + "=changed")
        b.kubectl("label", "configmaps", "-A", "-l", sel + "unlabel", ADDON_TIER + "-")
        drift_pass("changed", ["recreated", "reverted", "reverted"])
        out["drift"] = drift
        b.delete_namespaces([f"drift-{c:03d}-0" for c in range(nc)])
    finally:
        try:
            b.close()
        finally:
            with open(os.path.join(work, "serve.log"), errors="replace") as f:
                out["serve_log_tail"] = f.read().splitlines()[-20:]
            shutil.rmtree(work, ignore_errors=True)
    return out



def report_addons(r):
    print(json.dumps(r, indent=1))
    print()
    n = r["objects"]
    for label in ("plain", "deployments"):
        s = r[label]
        runs = s["runs"]
        sec = {m: [x["seconds"] for x in v] for m, v in runs.items()}
        kp, km = pct(sec["kubectl"], 50), min(sec["kubectl"])
        what = "no Deployments" if not s["deployments"] else f"{s['deployments']} Deployments of 1 replica"
        print(f"| first apply of {n} objects ({what}), {s['rounds']} trials each, alternating | p50 | min | "
              f"ratio to kubectl (p50 / min) | API calls | target |")
        print("|---|---|---|---|---|---|")
        kreq = sum(r["kubectl_requests"].values())
        print(f"| `kubectl apply --server-side --force-conflicts -f` ({r['kubectl']}, caches warm) | {kp:.2f} s | "
              f"{km:.2f} s | 1 | {kreq if not s['deployments'] else ''} | |")
        if "kubectl_novalidate" in sec:
            v = sec["kubectl_novalidate"]
            print(f"| the same with `--validate=false` (no client-side OpenAPI step) | {pct(v, 50):.2f} s | {min(v):.2f} s | "
                  f"{pct(v, 50) / kp:.2f}x / {min(v) / km:.2f}x | {n} | |")
        e, a = sec["engine"], sec["api"]
        calls = sorted({x["api_calls"] for x in runs["engine"]})
        print(f"| engine: `addon-apply apply` (process, TLS, discovery, {n} applies) | {pct(e, 50):.2f} s | {min(e):.2f} s | "
              f"**{pct(e, 50) / kp:.2f}x** / {min(e) / km:.2f}x | {', '.join(map(str, calls))} | ≤ 1.0x |")
        if "kubectl_novalidate" in sec:
            v = sec["kubectl_novalidate"]
            print(f"| engine against `--validate=false` | | | {pct(e, 50) / pct(v, 50):.2f}x / {min(e) / min(v):.2f}x | | report |")
        print(f"| service: install request → phase Applied (polled every 20 ms) | {pct(a, 50):.2f} s | {min(a):.2f} s | "
              f"**{pct(a, 50) / kp:.2f}x** / {min(a) / km:.2f}x | | ≤ 1.0x |")
        st = [x["status_s"] for x in runs["api"]]
        print(f"| service: install request → status.lastApplyTime | {pct(st, 50):.2f} s | {min(st):.2f} s | "
              f"{pct(st, 50) / kp:.2f}x / {min(st) / km:.2f}x | | report |")
        if s["deployments"]:
            kw, ew = ([x["with_wait_s"] for x in runs[m]] for m in ("kubectl", "engine"))
            print(f"| kubectl apply + `kubectl wait --for=condition=Available` | {pct(kw, 50):.2f} s | {min(kw):.2f} s | "
                  f"1 (of this row) | | |")
            wc = sorted({x["wait_api_calls"] for x in runs["engine"]})
            print(f"| engine apply + `addon-apply wait` (rollouts, polled every 200 ms) | {pct(ew, 50):.2f} s | "
                  f"{min(ew):.2f} s | {pct(ew, 50) / pct(kw, 50):.2f}x / {min(ew) / min(kw):.2f}x | "
                  f"+ {', '.join(map(str, wc))} | report |")
            print(f"| service (rollouts waited for, polled every 250 ms) against kubectl apply + wait | | | "
                  f"{pct(a, 50) / pct(kw, 50):.2f}x / {min(a) / min(kw):.2f}x | | report |")
        print()
    ph = r.get("kubectl_phases") or {}
    print(f"kubectl's requests for the same apply (-v=6): {r['kubectl_requests']}; client-side throttling messages: "
          f"{r['kubectl_throttled']}; start → first PATCH {ph.get('before_first_patch_s', float('nan')):.2f} s, "
          f"first → last PATCH {ph.get('patches_s', float('nan')):.2f} s")
    print()
    d = r["drift"]
    print(f"| {d['clusters']} inventories × {d['objects']} objects, one namespace each on one API server | "
          f"per cluster p50 | p99 | API calls per cluster | sum over {d['clusters']} (pass wall time) |")
    print("|---|---|---|---|---|")
    for key, what in (("first", "first apply"), ("unchanged", "drift pass, nothing changed (corrected [])"),
                      ("changed", "drift pass after kubectl deleted 1, relabelled 1 and unlabelled 1 ConfigMap "
                                  "per cluster (3 corrected each)")):
        x = [y["seconds"] * 1000 for y in d[key]]
        calls = sorted({y["api_calls"] for y in d[key]})
        print(f"| {what} | {pct(x, 50):.0f} ms | {pct(x, 99):.0f} ms | {', '.join(map(str, calls))} | "
              f"{sum(x) / 1000:.1f} s ({d[key + '_wall_s']:.1f} s) |")
    return 0

def stop_all():
    for p in RUNNING:
        if p.poll() is None:
            p.kill()
            p.wait()


if __name__ == "__main__":
    # SIGTERM (timeout, kill) unwinds like Ctrl-C: sections clean up (the monitor section deletes its
    # local clusters and work directory), then every server started is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        sys.exit(main())
    finally:
        stop_all()
