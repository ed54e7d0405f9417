#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""make bench: the foundation's benchmarks, each reported against a baseline measured in the same run.

1. Create-cluster acceptance (spec written + operation queued), wrk with unique names, workers off.
2. GET one cluster and list 100 clusters with 10,000 stored, against a bare libmicrohttpd responder
   (same threading setup) returning the same bytes; throughput ratio and p50/p99.
3. Worker dispatch: 10,000 queued operations on an engine that returns at once; time per operation.
4. Resident memory of an idle serve with 10,000 clusters stored.
"""
import argparse
import json
import os
import re
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


class Serve:
    def __init__(self, binary, data_dir, workers, threads):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [binary, "serve", "--data-dir", data_dir, "--listen", f"127.0.0.1:{self.port}", "--workers", str(workers),
             "--http-threads", str(threads), "--log-level", "warning", "--poll-ms", "50"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    args = ap.parse_args()
    testbin = args.testbin or os.path.join(os.path.dirname(args.binary), "tests", "clustermgmt-testbin")
    results = {}
    work = tempfile.mkdtemp(prefix="cm-bench-")
    try:
        data = os.path.join(work, "data")
        s = Serve(testbin, data, workers=0, threads=args.threads)
        # 1. create acceptance: wrk posts unique cluster names until enough are stored.
        lua = os.path.join(work, "create.lua")
        with open(lua, "w") as f:
            f.write(CREATE_LUA % ("bench", s.token))
        http("POST", s.url + "/v1/environments", s.token, {"name": "bench"})
        r = wrk(s.url, args.seconds, 16, 2, script=lua)
        results["create"] = r
        # Top up to exactly the target count of stored clusters (names sort after the wrk ones).
        count = 0
        tok = None
        while True:
            q = "?limit=500" + (f"&pageToken={tok}" if tok else "")
            page = json.loads(http("GET", s.url + "/v1/environments/bench/clusters" + q, s.token)[1])
            count += len(page["items"])
            tok = page.get("nextPageToken")
            if not tok:
                break
        i = 0
        while count < args.clusters:
            http("POST", s.url + "/v1/environments/bench/clusters", s.token,
                 {"name": f"z{i}", "spec": {"engine": "test", "test": {"durationMs": 0}}})
            count += 1
            i += 1
        results["stored"] = count

        # 2. reads against the bare responder with the same bytes.
        first = json.loads(http("GET", s.url + "/v1/environments/bench/clusters?limit=1", s.token)[1])["items"][0]
        one_path = f"/v1/environments/bench/clusters/{first['name']}"
        list_path = "/v1/environments/bench/clusters?limit=100&pageToken=b1-5000"
        hdr = [f"Authorization: Bearer {s.token}"]
        for label, path in (("get_one", one_path), ("list_100", list_path)):
            status, body = http("GET", s.url + path, s.token)
            assert status == 200
            bfile = os.path.join(work, label + ".json")
            with open(bfile, "wb") as f:
                f.write(body)
            results[label] = {"bytes": len(body), "service": wrk(s.url + path, args.seconds, 32, 2, headers=hdr)}
        time.sleep(1)
        results["rss_idle_kib"] = s.rss_kib()
        s.stop()

        bport = free_port()
        bare = subprocess.Popen([args.bare, str(bport), str(args.threads),
                                 f"{one_path}={os.path.join(work, 'get_one.json')}",
                                 f"/v1/environments/bench/clusters={os.path.join(work, 'list_100.json')}"],
                                stdout=subprocess.PIPE, text=True)
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
    for w in (1, 4):
        r = results[f"dispatch_{w}_workers"]
        print(f"| dispatch, {w} worker(s), {r['operations']} queued | {r['ms_per_op']:.3f} ms/op ({r['seconds']:.1f} s) | < 1 ms/op |")
    print(f"| idle RSS with {results['stored']} clusters | {results['rss_idle_kib'] / 1024:.1f} MiB | < 30 MB |")


if __name__ == "__main__":
    sys.exit(main())
