# SPDX-License-Identifier: Apache-2.0
"""Cluster health monitoring, end to end: the service probes a real local cluster and reports what it sees
as conditions, a health document, metrics, server-sent events and signed webhooks.

One server (probing every INTERVAL seconds) and one 2-node local cluster are shared by the whole module;
the tests run in file order and each leaves the cluster healthy. Faults are made on the cluster's side,
never in the service: a node marked NotReady through the cluster's own API server (the node simulator's
annotation), the API server process stopped (SIGSTOP), and the API server's client CA replaced so that
it refuses the credentials the service holds.

Every timing bound is stated in probe intervals plus SLACK (scheduling delays on a loaded host):
- a healthy cluster is Healthy within INTERVAL + SLACK of reaching phase Ready;
- a condition the probe sees at once (a node NotReady) changes within 2 * INTERVAL + SLACK;
- an API server that stops answering needs THRESHOLD failed probes, each of which may wait TIMEOUT:
  2 * INTERVAL + TIMEOUT + SLACK.
Measured latencies are attached to the test reports (record_property) and printed.
"""
import base64
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from conftest import LocalCluster, Server, local_helper_pids, localk8s_helper, stop_local_helpers
from test_access import as_token, new_key
from webhook_receiver import Delivery, WebhookReceiver, expected_signature, signature_valid

PROBLEM = "application/problem+json"

INTERVAL = 2  # --monitor-interval-seconds
THRESHOLD = 2  # --monitor-threshold
TIMEOUT = 1.5  # --monitor-timeout-ms, in seconds
SLACK = 3
# No connection kept between probes, as with more clusters than --monitor-keep-alive-max: every probe
# connects, and resumes the cluster's last TLS session.
MONITOR_ARGS = ["--monitor-interval-seconds", str(INTERVAL), "--monitor-threshold", str(THRESHOLD),
                "--monitor-timeout-ms", str(int(TIMEOUT * 1000)), "--monitor-keep-alive-max", "0"]

READY_TO_HEALTHY = INTERVAL + SLACK
CONDITION_CHANGE = 2 * INTERVAL + SLACK
OUTAGE = 2 * INTERVAL + TIMEOUT + SLACK

ENV = "ops"  # the monitored cluster's environment
OTHER = "other"  # an environment next to it
NAME = "mon"
NODES = 2
NODE = f"{NAME}-node-1"  # the node the tests mark NotReady
NOT_READY = "localk8s.cratekube.io/not-ready"
FIVE = ("APIServerAvailable", "NodesReady", "SystemWorkloadsHealthy", "CertificatesValid", "Healthy")
HOOK_SECRET = "hook-key"
HOOK_KEY = "whk-" + os.urandom(16).hex()  # the HMAC key, kept in the environment secret HOOK_SECRET


# --- helpers ---------------------------------------------------------------------------------------


def parse_time(s):
    assert isinstance(s, str) and s.endswith("Z"), s
    return datetime.fromisoformat(s[:-1] + "+00:00")


def now_utc():
    return datetime.now(timezone.utc)


def assert_problem(r, status, field=None):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == PROBLEM, r.headers
    p = r.json()
    assert p["status"] == status, p
    if field is not None:
        fields = {e["field"] for e in p.get("errors", [])}
        assert field in fields, p
    return p


def conditions(doc):
    return {c["type"]: c for c in doc["status"].get("conditions", [])}


def holds(conds, want):
    """want: {type: "True"} or {type: ("False", "Reason")}."""
    for t, w in want.items():
        status, reason = w if isinstance(w, tuple) else (w, None)
        c = conds.get(t)
        if not c or c["status"] != status or (reason is not None and c["reason"] != reason):
            return False
    return True


def metric_samples(text, name):
    """{frozenset(labels.items()): value} of one metric in the Prometheus text format."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[frozenset(labels.items())] = float(m.group(3))
    return out


def metric(text, name, **labels):
    return metric_samples(text, name).get(frozenset(labels.items()))


def wait_value(what, get, want, timeout=5):
    deadline = time.monotonic() + timeout
    while (v := get()) != want:
        assert time.monotonic() < deadline, f"{what}: {v!r}, not {want!r}, after {timeout}s"
        time.sleep(0.1)


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


class Monitored:
    """The module's server and its monitored local cluster."""

    def __init__(self, server, cluster, t_ready, tmp):
        self.server = server
        self.cluster = cluster
        self.t_ready = t_ready  # time.monotonic() when the cluster was first seen Ready
        self.tmp = tmp
        self._kube = None

    @property
    def base(self):
        return f"/v1/environments/{ENV}"

    def get(self):
        return self.cluster.get()

    def health(self):
        r = self.server.get(self.cluster.path + "/health")
        assert r.status_code == 200, r.text
        return r.json()

    def wait(self, what, want, timeout, since=None):
        """Polls the cluster document until the conditions in want hold; returns (the document, the seconds
        from since (a time.monotonic() value, default now) to when they were first seen)."""
        since = time.monotonic() if since is None else since
        deadline = since + timeout
        while True:
            doc = self.get()
            seen = time.monotonic()
            if holds(conditions(doc), want):
                return doc, seen - since
            if seen > deadline:
                raise AssertionError(f"{what}: {want} not reached within {timeout:.1f}s (after "
                                     f"{seen - since:.1f}s): {json.dumps(conditions(doc), indent=1)}\n"
                                     f"--- service log (end) ---\n{self.server.log()[-4000:]}")
            time.sleep(0.1)

    def kube(self):
        """A client of the cluster's own API server with the admin kubeconfig the service hands out."""
        if self._kube is None:
            path = os.path.join(self.tmp, "admin.kubeconfig")
            self.cluster.kubeconfig(path)
            self._kube = KubeClient(path, self.tmp)
        return self._kube

    def helper_pid(self):
        """The pid of the cluster's helper (its API server runs in it), checked against the processes
        that run on the cluster's data dir."""
        pid = self.cluster.helper_pid()
        assert local_helper_pids(self.server.data_dir) == [pid], (pid, local_helper_pids(self.server.data_dir))
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert self.cluster.data_dir().encode() in f.read()
        return pid

    def create_webhook(self, name, url, events=None):
        body = {"name": name, "url": url, "secret": HOOK_SECRET}
        if events is not None:
            body["events"] = events
        r = self.server.post(f"{self.base}/webhooks", body)
        assert r.status_code == 201, r.text
        return r.json()

    def deliveries(self, hook, limit=100):
        r = self.server.get(f"{self.base}/webhooks/{hook}/deliveries", params={"limit": limit})
        assert r.status_code == 200, r.text
        return r.json()["items"]

    def wait_deliveries(self, hook, what, pred, timeout):
        deadline = time.monotonic() + timeout
        while True:
            items = self.deliveries(hook)
            v = pred(items)
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError(f"deliveries of {hook}: timed out waiting for {what}: {items}")
            time.sleep(0.2)


class KubeClient:
    """Requests against the cluster's API server with the client certificate of a kubeconfig."""

    def __init__(self, kubeconfig_path, directory):
        with open(kubeconfig_path) as f:
            text = f.read()

        def field(name):
            m = re.search(rf"^\s*{name}:\s*\"?([^\s\"]+)\"?\s*$", text, re.M)
            assert m, f"{name} not in the kubeconfig"
            return m.group(1)
        self.server = field("server")
        self.files = {}
        for name, key in (("ca.crt", "certificate-authority-data"), ("client.crt", "client-certificate-data"),
                          ("client.key", "client-key-data")):
            path = os.path.join(directory, "kube-" + name)
            if os.path.exists(path):
                os.unlink(path)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(base64.b64decode(field(key)))
            self.files[name] = path
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would win over verify
        self.session.verify = self.files["ca.crt"]
        self.session.cert = (self.files["client.crt"], self.files["client.key"])

    def get(self, path, **kw):
        kw.setdefault("timeout", 10)
        return self.session.get(self.server + path, **kw)

    def annotate_node(self, node, key, value):
        """Sets (value None: removes) an annotation with a JSON merge patch."""
        r = self.session.patch(self.server + f"/api/v1/nodes/{node}",
                               data=json.dumps({"metadata": {"annotations": {key: value}}}),
                               headers={"Content-Type": "application/merge-patch+json"}, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def node_ready(self, node):
        r = self.get(f"/api/v1/nodes/{node}")
        assert r.status_code == 200, r.text
        return {c["type"]: c for c in r.json()["status"]["conditions"]}["Ready"]

    def wait_node_ready(self, node, status, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            c = self.node_ready(node)
            if c["status"] == status:
                return c
            if time.monotonic() > deadline:
                raise AssertionError(f"node {node} did not become Ready={status}: {c}")
            time.sleep(0.1)


@contextlib.contextmanager
def node_not_ready(mon, reason="true"):
    kube = mon.kube()
    try:
        kube.annotate_node(NODE, NOT_READY, reason)
        yield kube
    finally:
        kube.annotate_node(NODE, NOT_READY, None)


@contextlib.contextmanager
def stopped(pid):
    """The process stopped (SIGSTOP) for the duration, continued (SIGCONT) whatever happens."""
    os.kill(pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 5
        while proc_state(pid) != "T":
            assert time.monotonic() < deadline, f"pid {pid} did not stop"
            time.sleep(0.02)
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def write_replacing(path, data, mode):
    tmp = path + ".tmp-test"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


@contextlib.contextmanager
def foreign_client_ca(mon):
    """The cluster's API server trusting another CA for client certificates, so that it refuses (401) the
    admin certificate the service probes with, as after a CA rotation the service was not part of.

    kube-apiserver reloads --client-ca-file (the cluster's pki/ca.crt) when it changes, without a
    restart; the serving certificate and the kubeconfig's CA are untouched, so TLS still verifies and
    only the credentials are refused. The original file is put back byte for byte."""
    path = os.path.join(mon.cluster.data_dir(), "pki", "ca.crt")
    with open(path, "rb") as f:
        original = f.read()
    mode = os.stat(path).st_mode & 0o777
    key, crt = os.path.join(mon.tmp, "foreign-ca.key"), os.path.join(mon.tmp, "foreign-ca.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=not-the-cluster-ca"],
                   check=True, capture_output=True, timeout=60)
    with open(crt, "rb") as f:
        foreign = f.read()
    kube = mon.kube()
    try:
        write_replacing(path, foreign, mode)
        deadline = time.monotonic() + 15
        while kube.get("/api/v1/nodes").status_code != 401:
            assert time.monotonic() < deadline, "the API server kept accepting the admin certificate"
            time.sleep(0.1)
        yield
    finally:
        write_replacing(path, original, mode)
        deadline = time.monotonic() + 15
        while kube.get("/api/v1/nodes").status_code != 200:
            assert time.monotonic() < deadline, "the API server did not accept the admin certificate again"
            time.sleep(0.1)


class EventStream:
    """A client of GET /v1/events (server-sent events), read by a thread of its own.

    `events` fills as events arrive: dicts with id, event, data (text) and json (the decoded data);
    `comments` gets the comment lines (": keepalive"); `ended` is set when the server ends the stream."""

    def __init__(self, server, params=None, headers=None, token=None):
        h = {"Accept": "text/event-stream", "Authorization": f"Bearer {token or server.token}"}
        h.update(headers or {})
        self.resp = requests.get(server.url + "/v1/events", params=params, headers=h, stream=True,
                                 timeout=(10, 3600))
        self.status_code = self.resp.status_code
        self.events = []
        self.comments = []
        self.ended = False
        self.error = None
        self.closing = False
        self.cond = threading.Condition()
        self.thread = None
        if self.status_code == 200:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()

    def _lines(self):
        # Whole chunks with chunked transfer encoding; else byte by byte (a read of more would wait for
        # more than the server has sent).
        chunked = "chunked" in self.resp.headers.get("Transfer-Encoding", "").lower()
        buf = b""
        for chunk in self.resp.iter_content(chunk_size=None if chunked else 1):
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                yield line.removesuffix(b"\r").decode()

    def _run(self):
        ev, data = {}, []
        try:
            for line in self._lines():
                if line == "":
                    if data or ev:
                        ev["data"] = "\n".join(data)
                        try:
                            ev["json"] = json.loads(ev["data"])
                        except ValueError:
                            ev["json"] = None
                        with self.cond:
                            self.events.append(ev)
                            self.cond.notify_all()
                    ev, data = {}, []
                elif line.startswith(":"):
                    with self.cond:
                        self.comments.append(line)
                else:
                    field, _, value = line.partition(":")
                    if value.startswith(" "):
                        value = value[1:]
                    if field == "data":
                        data.append(value)
                    elif field in ("id", "event", "retry"):
                        ev[field] = value
        except Exception as e:  # the socket shut down by close(), or a broken stream
            if not self.closing:
                self.error = e
        with self.cond:
            self.ended = True
            self.cond.notify_all()

    def wait_for(self, what, pred, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                v = pred(list(self.events))
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0 or self.ended:
                    raise AssertionError(f"event stream: no {what} within {timeout}s (ended: {self.ended}, "
                                         f"error: {self.error!r}); got {self.events}")
                self.cond.wait(min(left, 0.5))

    def wait_end(self, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.ended:
                left = deadline - time.monotonic()
                assert left > 0, f"event stream did not end within {timeout}s; got {self.events}"
                self.cond.wait(min(left, 0.5))
        assert self.error is None, self.error
        return list(self.events)

    def close(self):
        self.closing = True
        # Shut the socket down to end the reader's blocking read: the connection's, or (when the server
        # answered without keep-alive and http.client let go of it) the one under the response's file.
        conn = getattr(self.resp.raw, "connection", None)
        sock = getattr(conn, "sock", None)
        if sock is None:
            fp = getattr(getattr(self.resp.raw, "_fp", None), "fp", None)
            sock = getattr(getattr(fp, "raw", None), "_sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.resp.close()
        if self.thread:
            self.thread.join(10)


def event_ids(events):
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(set(ids)), f"event ids not strictly increasing: {ids}"
    return ids


def check_event(e, **want):
    """An SSE event: its id, event and data fields agree, and data carries want."""
    d = e["json"]
    assert isinstance(d, dict), e
    assert str(d["id"]) == e["id"] and d["type"] == e["event"], e
    parse_time(d["time"])
    for k, v in want.items():
        assert d.get(k) == v, (k, v, d)
    return d


def is_change(d, condition, status, reason=None, cluster=NAME):
    return (d.get("type") == "ConditionChanged" and d.get("environment") == ENV and d.get("cluster") == cluster
            and d.get("condition") == condition and d.get("status") == status
            and (reason is None or d.get("reason") == reason))


def history(mon, limit=None, before=None):
    params = {}
    if limit is not None:
        params["limit"] = limit
    if before is not None:
        params["before"] = before
    r = mon.server.get(mon.cluster.path + "/health/history", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def all_history(mon, limit):
    items, before = [], None
    for _ in range(1000):
        page = history(mon, limit, before)
        assert len(page["items"]) <= limit
        items += page["items"]
        if "next" not in page:
            return items
        assert page["items"], page
        before = page["next"]
    raise AssertionError("history does not end")


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mon(binary, request, tmp_path_factory):
    """The module's server (probing every INTERVAL seconds) and a 2-node local cluster in ENV, first
    seen Ready at mon.t_ready. At the end the cluster is deleted and no helper may be left running."""
    helper = localk8s_helper()
    data_dir = str(tmp_path_factory.mktemp("monitor"))
    tmp = str(tmp_path_factory.mktemp("monitor-files"))
    server = Server(binary, data_dir, valgrind=request.config.getoption("--valgrind"),
                    extra_args=["--localk8s-path", helper] + MONITOR_ARGS)
    cluster, started = None, False
    try:
        server.start()
        started = True
        for env in (ENV, OTHER):
            r = server.post("/v1/environments", {"name": env})
            assert r.status_code == 201, r.text
        r = server.post(f"/v1/environments/{ENV}/secrets", {"name": HOOK_SECRET, "value": HOOK_KEY})
        assert r.status_code == 201, r.text
        r = server.post(f"/v1/environments/{ENV}/clusters",
                        {"name": NAME, "spec": {"engine": "local", "local": {"nodes": NODES}}})
        assert r.status_code == 202, r.text
        op_id = r.json()["id"]
        cluster = LocalCluster(server, NAME, env=ENV)
        deadline = time.monotonic() + 150
        while True:
            doc = cluster.get()
            if doc["status"]["phase"] == "Ready":
                t_ready = time.monotonic()
                break
            op = server.get(f"/v1/operations/{op_id}").json()
            assert op["state"] not in ("failed", "cancelled") and time.monotonic() < deadline, (
                f"{op}\n{server.get(f'/v1/operations/{op_id}/log').text}\n{server.log()}")
            time.sleep(0.1)
        yield Monitored(server, cluster, t_ready, tmp)
    finally:
        problems = []
        for pid in local_helper_pids(data_dir):  # never leave a stopped helper behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if started and cluster is not None:
            r = server.delete(cluster.path)
            if r.status_code == 202:
                op = server.wait_op(r.json()["id"], timeout=90)
                if op["state"] != "succeeded":
                    problems.append(f"delete failed: {op}")
            elif r.status_code != 404:
                problems.append(f"delete: {r.status_code} {r.text}")
        if server.proc is not None:
            rc = server.stop()
            if rc != 0 and started:
                problems.append(f"serve exited with {rc}:\n{server.log()}")
        leftovers = stop_local_helpers(data_dir)
        if leftovers:
            problems.append(f"helpers left running: {leftovers}")
        assert not problems, problems


@pytest.fixture
def receiver():
    """Starts webhook receivers (WebhookReceiver(status)); all are closed at the end."""
    made = []

    def make(status=200):
        r = WebhookReceiver(status=status).start()
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()


@pytest.fixture
def webhooks(mon):
    """Creates webhooks in ENV (signed with HOOK_SECRET); those still there at the end are deleted, so
    that a failed test leaves none behind."""
    made = []

    def make(name, url, events=None):
        made.append(name)
        return mon.create_webhook(name, url, events)
    yield make
    for name in made:
        mon.server.delete(f"{mon.base}/webhooks/{name}")


@pytest.fixture
def streams():
    """Opens event streams (EventStream(...)); all are closed at the end."""
    made = []

    def make(*args, **kw):
        s = EventStream(*args, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


# --- tests ------------------------------------------------------------------------------------------


def test_healthy_cluster_becomes_healthy(mon, record_property):
    """Within one interval of phase Ready all five conditions are True, with the health facts, the health
    document, its history and the metrics to match."""
    doc, latency = mon.wait("a Ready cluster becomes Healthy", {t: "True" for t in FIVE}, READY_TO_HEALTHY,
                            since=mon.t_ready)
    record_property("ready_to_healthy_seconds", round(latency, 2))
    print(f"Ready -> Healthy after {latency:.2f}s")
    st = doc["status"]
    assert st["phase"] == "Ready"
    conds = conditions(doc)
    for t in FIVE:
        c = conds[t]
        assert c["reason"] and isinstance(c["message"], str), c
        assert parse_time(c["lastTransitionTime"]) <= now_utc() + timedelta(seconds=1), c
    assert conds["Healthy"]["reason"] == "Healthy", conds["Healthy"]
    # The pre-existing conditions are still there.
    assert conds["Ready"]["status"] == "True", conds

    h = st["health"]
    assert h["nodesReady"] == h["nodesTotal"] == NODES, h
    helper_version = subprocess.run([localk8s_helper(), "--version"], capture_output=True, text=True,
                                    check=True).stdout.strip()
    assert h["version"] == st["kubernetesVersion"] == helper_version, (h, st)
    assert parse_time(h["lastProbeTime"]) <= now_utc() + timedelta(seconds=1), h
    assert isinstance(h["latencyMs"], (int, float)) and h["latencyMs"] >= 0, h
    # The API server's serving certificate is valid for a year from the cluster's creation.
    expiry = parse_time(h["certificateExpiry"])
    assert now_utc() + timedelta(days=300) < expiry < now_utc() + timedelta(days=366), h

    hd = mon.health()
    assert hd["environment"] == ENV and hd["cluster"] == NAME and hd["phase"] == "Ready", hd
    assert hd["monitored"] is True, hd
    hc = {c["type"]: c for c in hd["conditions"]}
    assert len(hd["conditions"]) == len(FIVE) and all(hc[t]["status"] == "True" for t in FIVE), hd
    assert all(hc[t]["lastTransitionTime"] == conds[t]["lastTransitionTime"] for t in FIVE), (hd, conds)
    hh = hd["health"]
    assert hh["nodesReady"] == hh["nodesTotal"] == NODES and hh["version"] == helper_version, hh
    assert hh["consecutiveFailures"] == 0, hh
    for k in ("failingChecks", "nodesNotReady", "nodesPressure", "workloadsNotAvailable"):
        assert hh[k] == "", (k, hh)
    last, nxt = parse_time(hh["lastProbeTime"]), parse_time(hh["nextProbeTime"])
    assert now_utc() - timedelta(seconds=2 * INTERVAL + SLACK) <= last <= now_utc() + timedelta(seconds=1), hh
    assert last - timedelta(seconds=1) <= nxt <= last + timedelta(seconds=INTERVAL + 1), hh
    assert hh["certificateExpiry"] == h["certificateExpiry"], (hh, h)
    av = hd["availability"]
    assert set(av) >= {"last24h", "last30d"}, av
    for k in ("last24h", "last30d"):
        assert isinstance(av[k], (int, float)) and 0 <= av[k] <= 1, av

    # History: transitions only, newest first; the way to Healthy is in it.
    assert 1 <= len(hd["history"]) <= 20, hd
    assert any(i["type"] == "Healthy" and i["status"] == "True" and i["reason"] == "Healthy"
               for i in hd["history"]), hd["history"]
    full = history(mon)
    seqs = [i["seq"] for i in full["items"]]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs), full
    assert "next" not in full, full
    for i in full["items"]:
        assert set(i) >= {"seq", "time", "type", "status", "reason", "message"}, i
        assert i["type"] in FIVE, i
        parse_time(i["time"])
    assert full["items"][:20] == hd["history"], (full, hd["history"])
    # Pages of 2 add up to the whole history.
    assert all_history(mon, 2) == full["items"]
    first = history(mon, limit=1)
    assert first["items"] == full["items"][:1] and ("next" in first) == (len(full["items"]) > 1), first

    text = requests.get(mon.server.url + "/metrics", timeout=10).text
    assert metric(text, "clustermgmt_cluster_healthy", environment=ENV, cluster=NAME) == 1, text
    assert metric(text, "clustermgmt_cluster_nodes_ready", environment=ENV, cluster=NAME) == NODES
    assert metric(text, "clustermgmt_cluster_nodes_total", environment=ENV, cluster=NAME) == NODES
    left = metric(text, "clustermgmt_cluster_certificate_expiry_seconds", environment=ENV, cluster=NAME)
    assert left is not None and 300 * 86400 < left < 366 * 86400, left
    assert metric(text, "clustermgmt_monitored_clusters") == 1, text
    counts = metric_samples(text, "clustermgmt_probe_duration_seconds_count")
    assert counts and sum(counts.values()) >= 1, text
    assert metric_samples(text, "clustermgmt_probe_duration_seconds_bucket"), text

    # One full TLS handshake, then the probes resume the session the API server gave (each probe is a
    # new connection here), and the API server still knows the client: the nodes were read.
    deadline = time.monotonic() + 3 * INTERVAL + SLACK
    while True:
        text = requests.get(mon.server.url + "/metrics", timeout=10).text
        resumed = metric(text, "clustermgmt_probe_tls_handshakes_total", resumed="true") or 0
        if resumed >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    full = metric(text, "clustermgmt_probe_tls_handshakes_total", resumed="false")
    assert resumed >= 2 and full is not None and 1 <= full < resumed, text
    assert mon.health()["health"]["nodesReady"] == NODES


def test_node_not_ready_is_detected_and_clears(mon, record_property):
    """A node the cluster reports NotReady turns NodesReady and Healthy False within two intervals, naming
    the node; when it recovers both are True again."""
    mon.wait("healthy before", {t: "True" for t in FIVE}, CONDITION_CHANGE)
    kube = mon.kube()
    with node_not_ready(mon):
        t0 = time.monotonic()
        kube.wait_node_ready(NODE, "False")  # the simulator follows the annotation
        doc, latency = mon.wait("NodesReady False", {"NodesReady": ("False", "NodesNotReady"), "Healthy": "False"},
                                CONDITION_CHANGE, since=t0)
        record_property("node_not_ready_detection_seconds", round(latency, 2))
        print(f"node NotReady detected after {latency:.2f}s")
        conds = conditions(doc)
        assert NODE in conds["NodesReady"]["message"], conds["NodesReady"]
        assert f"{NAME}-node-0" not in conds["NodesReady"]["message"], conds["NodesReady"]
        assert conds["Healthy"]["reason"] == "NodesNotReady", conds["Healthy"]
        assert conds["APIServerAvailable"]["status"] == "True", conds
        hd = mon.health()
        assert hd["health"]["nodesReady"] == NODES - 1 and hd["health"]["nodesTotal"] == NODES, hd
        assert NODE in hd["health"]["nodesNotReady"] and "KubeletNotReady" in hd["health"]["nodesNotReady"], hd
        # The stored facts changed with it.
        wait_value("status.health.nodesReady", lambda: mon.get()["status"]["health"]["nodesReady"], NODES - 1)
        text = requests.get(mon.server.url + "/metrics", timeout=10).text
        assert metric(text, "clustermgmt_cluster_healthy", environment=ENV, cluster=NAME) == 0, text
        assert metric(text, "clustermgmt_cluster_nodes_ready", environment=ENV, cluster=NAME) == NODES - 1
        t1 = time.monotonic()
    kube.wait_node_ready(NODE, "True")
    doc, latency = mon.wait("recovery", {t: "True" for t in FIVE}, CONDITION_CHANGE, since=t1)
    record_property("node_ready_again_seconds", round(latency, 2))
    print(f"node Ready again after {latency:.2f}s")
    assert NODE not in conditions(doc)["NodesReady"]["message"]
    hist = history(mon)["items"]
    failed = [i for i in hist if (i["type"], i["status"], i["reason"]) == ("NodesReady", "False", "NodesNotReady")]
    healed = [i for i in hist if i["type"] == "NodesReady" and i["status"] == "True"]
    assert failed and healed and healed[0]["seq"] > failed[0]["seq"], hist
    assert NODE in failed[0]["message"], failed[0]


def test_one_failed_probe_is_no_outage(mon):
    """Below the threshold a failed probe changes nothing: the API server stopped for one probe only."""
    mon.wait("healthy before", {t: "True" for t in FIVE}, CONDITION_CHANGE)
    before = history(mon)["items"]
    all_true = {t: "True" for t in FIVE}
    pid = mon.helper_pid()
    with stopped(pid):
        deadline = time.monotonic() + INTERVAL + TIMEOUT + SLACK
        while (failures := mon.health()["health"]["consecutiveFailures"]) < 1:
            assert time.monotonic() < deadline, "no probe failed while the API server was stopped"
            assert holds(conditions(mon.get()), all_true), conditions(mon.get())
            time.sleep(0.1)
        assert failures == 1
    # Through the next probes nothing changes, and the count starts again.
    deadline = time.monotonic() + 2 * INTERVAL + 1
    while time.monotonic() < deadline:
        assert holds(conditions(mon.get()), all_true), conditions(mon.get())
        time.sleep(0.2)
    assert mon.health()["health"]["consecutiveFailures"] == 0
    assert history(mon)["items"] == before


def test_api_server_outage_events_and_webhook(mon, receiver, webhooks, streams, record_property):
    """A stopped API server turns APIServerAvailable False (Unreachable) after THRESHOLD probes that time
    out; the change reaches a signed webhook and the event stream, and both see the way back."""
    s = mon.server
    mon.wait("healthy before", {t: "True" for t in FIVE}, CONDITION_CHANGE)
    hook = receiver()
    doc = webhooks("ops-hook", hook.url, events=["ConditionChanged", "PhaseChanged"])
    assert doc["name"] == "ops-hook" and doc["url"] == hook.url and doc["secret"] == HOOK_SECRET, doc
    assert doc["events"] == ["ConditionChanged", "PhaseChanged"] and doc["lastDelivery"] is None, doc
    assert doc["pendingEvents"] == 0, doc
    parse_time(doc["created"])
    listed = s.get(f"{mon.base}/webhooks").json()["items"]
    assert [w["name"] for w in listed] == ["ops-hook"], listed
    assert HOOK_KEY not in json.dumps(listed) and HOOK_KEY not in json.dumps(doc)

    live = streams(s, params={"environment": ENV})
    assert live.status_code == 200, live.resp.text
    assert live.resp.headers["Content-Type"].startswith("text/event-stream"), live.resp.headers

    pid = mon.helper_pid()
    with stopped(pid):
        t0 = time.monotonic()
        doc, latency = mon.wait("APIServerAvailable False", {"APIServerAvailable": ("False", "Unreachable"),
                                                              "Healthy": "False"}, OUTAGE, since=t0)
        record_property("api_server_outage_detection_seconds", round(latency, 2))
        print(f"API server outage detected after {latency:.2f}s")
        # Not on the first failed probe: the last of THRESHOLD started after the stop and waited TIMEOUT.
        assert latency >= TIMEOUT - 0.2, latency
        hd = mon.health()
        assert hd["health"]["consecutiveFailures"] >= THRESHOLD, hd
        text = requests.get(s.url + "/metrics", timeout=10).text
        assert metric(text, "clustermgmt_cluster_healthy", environment=ENV, cluster=NAME) == 0, text
        assert (metric(text, "clustermgmt_probe_errors_total", reason="Unreachable") or 0) >= THRESHOLD, text

        # The webhook got the change, signed.
        d = hook.wait_for("the outage event", lambda ds: next(
            (x for x in ds if is_change(x.json(), "APIServerAvailable", "False", "Unreachable")), None), 10)
        body = d.json()
        assert body["previousStatus"] == "True" and body["type"] == "ConditionChanged", body
        assert d.header("Content-Type").startswith("application/json"), d
        assert d.header("X-CrateKube-Event") == "ConditionChanged", d
        assert d.header("X-CrateKube-Delivery") == str(body["id"]), d
        assert signature_valid(HOOK_KEY, d), (d, expected_signature(HOOK_KEY, d.header("X-CrateKube-Timestamp"),
                                                                    d.body))
        assert not signature_valid("wrong-key", d)
        tampered = Delivery(d.method, d.path, d.headers, d.body.replace(b"Unreachable", b"Reachable!!"), d.mono,
                            d.wall)
        assert not signature_valid(HOOK_KEY, tampered)

        # The event stream saw the same event.
        e = live.wait_for("the outage event", lambda es: next(
            (x for x in es if x["id"] == str(body["id"])), None), 10)
        assert e["event"] == "ConditionChanged" and e["json"] == body, (e, body)
        check_event(e, environment=ENV, cluster=NAME, condition="APIServerAvailable", status="False",
                    reason="Unreachable", previousStatus="True")
        t1 = time.monotonic()
    doc, latency = mon.wait("recovery", {t: "True" for t in FIVE}, OUTAGE, since=t1)
    record_property("api_server_recovery_seconds", round(latency, 2))
    print(f"API server available again after {latency:.2f}s")

    back = live.wait_for("the recovery event", lambda es: next(
        (x for x in es if x["json"] and is_change(x["json"], "Healthy", "True")), None), 10)
    hook.wait_for("the recovery event", lambda ds: any(x.header("X-CrateKube-Delivery") == back["id"] for x in ds), 10)
    seen = list(live.events)
    ids = event_ids(seen)
    for ev in seen:
        check_event(ev, environment=ENV)
    # Every delivery is signed, in order, and the same as the stream's event.
    by_id = {ev["id"]: ev for ev in seen}
    got = hook.received()
    assert [int(x.header("X-CrateKube-Delivery")) for x in got] == sorted(
        int(x.header("X-CrateKube-Delivery")) for x in got), got
    for x in got:
        assert signature_valid(HOOK_KEY, x), x
        assert x.json()["type"] in ("ConditionChanged", "PhaseChanged"), x
        if x.header("X-CrateKube-Delivery") in by_id:
            assert by_id[x.header("X-CrateKube-Delivery")]["json"] == x.json()

    # Resuming after an earlier event gives the ones after it, in order: Last-Event-ID, then ?after=.
    first, expected = seen[0]["id"], ids[1:]
    resumed = streams(s, params={"environment": ENV}, headers={"Last-Event-ID": first})
    assert resumed.status_code == 200
    resumed.wait_for("the events after the resume point", lambda es: len(es) >= len(expected), 10)
    assert event_ids(resumed.events)[:len(expected)] == expected, (resumed.events, seen)
    assert [ev["json"] for ev in resumed.events[:len(expected)]] == [ev["json"] for ev in seen[1:]]
    after = streams(s, params={"environment": ENV, "after": first, "follow": "false"})
    assert after.status_code == 200
    assert event_ids(after.wait_end(10))[:len(expected)] == expected
    # follow=false without a resume point: the last events, then the end.
    recent = streams(s, params={"environment": ENV, "follow": "false"})
    assert recent.status_code == 200
    recent_ids = event_ids(recent.wait_end(10))
    assert set(ids) <= set(recent_ids) and len(recent_ids) <= 100, (ids, recent_ids)
    # A cluster filter keeps that cluster's events.
    theirs = streams(s, params={"environment": ENV, "cluster": NAME, "follow": "false"})
    assert theirs.status_code == 200
    assert set(ids) <= set(event_ids(theirs.wait_end(10))), (ids, theirs.events)
    assert all(e["json"]["cluster"] == NAME for e in theirs.events), theirs.events

    # The deliveries log: the outage event delivered at the first attempt.
    item = mon.wait_deliveries("ops-hook", "the outage event delivered", lambda items: next(
        (i for i in items if i["eventId"] == body["id"]), None), 10)
    assert item["outcome"] == "delivered" and item["statusCode"] == 200 and item["attempt"] == 1, item
    assert item["eventType"] == "ConditionChanged" and item["durationMs"] >= 0, item
    items = mon.deliveries("ops-hook")
    assert [i["id"] for i in items] == sorted((i["id"] for i in items), reverse=True), items
    assert all(i["outcome"] == "delivered" for i in items), items
    w = s.get(f"{mon.base}/webhooks/ops-hook").json()
    assert w["lastDelivery"]["outcome"] == "delivered" and w["lastDelivery"]["statusCode"] == 200, w
    hd = mon.health()
    assert hd["availability"]["last24h"] < 1, hd["availability"]
    assert any(i["type"] == "APIServerAvailable" and i["reason"] == "Unreachable" for i in hd["history"]), hd

    assert s.delete(f"{mon.base}/webhooks/ops-hook").status_code == 204
    assert s.get(f"{mon.base}/webhooks/ops-hook").status_code == 404
    assert HOOK_KEY not in s.log()


def test_refused_credentials_are_unauthorized(mon, record_property):
    """An API server that refuses the service's credentials is Unauthorized, not Unreachable."""
    mon.wait("healthy before", {t: "True" for t in FIVE}, CONDITION_CHANGE)
    with foreign_client_ca(mon):
        t0 = time.monotonic()
        doc, latency = mon.wait("APIServerAvailable False", {"APIServerAvailable": ("False", "Unauthorized"),
                                                              "Healthy": "False"}, OUTAGE, since=t0)
        record_property("unauthorized_detection_seconds", round(latency, 2))
        print(f"refused credentials detected after {latency:.2f}s")
        c = conditions(doc)["APIServerAvailable"]
        assert "BEGIN" not in c["message"] and "client-key" not in c["message"], c
        hd = mon.health()
        assert {c["type"]: c for c in hd["conditions"]}["APIServerAvailable"]["reason"] == "Unauthorized", hd
        text = requests.get(mon.server.url + "/metrics", timeout=10).text
        assert (metric(text, "clustermgmt_probe_errors_total", reason="Unauthorized") or 0) >= THRESHOLD, text
        t1 = time.monotonic()
    doc, latency = mon.wait("recovery", {t: "True" for t in FIVE}, OUTAGE, since=t1)
    record_property("unauthorized_recovery_seconds", round(latency, 2))
    hist = history(mon)["items"]
    assert any(i["type"] == "APIServerAvailable" and i["reason"] == "Unauthorized" for i in hist), hist


def probe_gaps(mon, seconds):
    """The gaps between the probes (distinct lastProbeTime values of the health document) seen while
    polling it for that long."""
    times = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t = parse_time(mon.health()["health"]["lastProbeTime"])
        if not times or t != times[-1]:
            times.append(t)
        time.sleep(0.2)
    return [(b - a).total_seconds() for a, b in zip(times, times[1:])]


@pytest.fixture
def stuck_endpoint():
    """A URL whose server accepts connections (the kernel's backlog does) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    sock.close()


def test_dead_webhooks_do_not_delay_the_monitor(mon, receiver, webhooks, stuck_endpoint, record_property):
    """Webhooks that refuse connections, answer 500 or never answer do not slow down probing: conditions
    change within the same bounds and probes keep their pace. Failed deliveries are retried with a
    growing backoff and logged."""
    s = mon.server
    mon.wait("healthy before", {t: "True" for t in FIVE}, CONDITION_CHANGE)
    failing, live = receiver(500), receiver(200)
    hooks = {"dead": f"http://127.0.0.1:{closed_port()}/hook", "failing": failing.url, "stuck": stuck_endpoint,
             "live": live.url}
    for name, url in hooks.items():
        webhooks(name, url)
    with node_not_ready(mon, "DrillByTest"):
        t0 = time.monotonic()
        doc, latency = mon.wait("NodesReady False", {"NodesReady": ("False", "NodesNotReady"), "Healthy": "False"},
                                CONDITION_CHANGE, since=t0)
        record_property("node_not_ready_detection_with_dead_webhooks_seconds", round(latency, 2))
        print(f"node NotReady detected after {latency:.2f}s with dead webhooks")
        assert "DrillByTest" in mon.health()["health"]["nodesNotReady"]
        t_seen = time.monotonic()
        # While the failed deliveries are retried, probes keep their interval.
        gaps = probe_gaps(mon, 3 * INTERVAL + 0.5)
        record_property("probe_gaps_seconds", gaps)
        assert gaps and max(gaps) <= INTERVAL + 1.5, gaps
        # The working webhook gets its events all the same.
        d = live.wait_for("the NodesReady event", lambda ds: next(
            (x for x in ds if is_change(x.json(), "NodesReady", "False", "NodesNotReady")), None), 15)
        record_property("live_webhook_delay_seconds", round(d.mono - t_seen, 2))
        # The endpoint that answers 500 gets the first event again and again, further apart each time.
        tries = failing.wait_for("4 attempts", lambda ds: len(ds) >= 4 and ds, 20)
        t1 = time.monotonic()
    first_id = tries[0].header("X-CrateKube-Delivery")
    assert all(x.header("X-CrateKube-Delivery") == first_id and x.body == tries[0].body for x in tries[:4]), tries
    assert all(signature_valid(HOOK_KEY, x) for x in tries), tries
    gaps = [b.mono - a.mono for a, b in zip(tries, tries[1:4])]
    record_property("retry_gaps_seconds", [round(g, 2) for g in gaps])
    print(f"retry gaps: {gaps}")
    assert 0.8 <= gaps[0] <= 2.5 and 1.6 <= gaps[1] <= 4.5 and 3.2 <= gaps[2] <= 8, gaps
    assert gaps[0] < gaps[1] < gaps[2], gaps

    doc, latency = mon.wait("recovery", {t: "True" for t in FIVE}, CONDITION_CHANGE, since=t1)
    record_property("node_ready_again_with_dead_webhooks_seconds", round(latency, 2))

    # The log of the endpoint answering 500: attempts 1, 2, 3, ... of one event, all failed.
    items = mon.wait_deliveries("failing", "4 failed attempts", lambda items: len(
        [i for i in items if str(i["eventId"]) == first_id]) >= 4 and items, 10)
    mine = sorted((i for i in items if str(i["eventId"]) == first_id), key=lambda i: i["attempt"])
    assert [i["attempt"] for i in mine[:4]] == [1, 2, 3, 4], mine
    assert all(i["outcome"] == "failed" and i["statusCode"] == 500 for i in mine), mine
    # The log of the refused endpoint: the same, with the error, and a backoff that grows.
    items = mon.wait_deliveries("dead", "4 failed attempts", lambda items: len(items) >= 4 and items, 15)
    mine = sorted(items, key=lambda i: i["attempt"])
    assert len({i["eventId"] for i in mine}) == 1, mine
    assert [i["attempt"] for i in mine[:4]] == [1, 2, 3, 4], mine
    assert all(i["outcome"] == "failed" and i["error"] and i.get("statusCode") in (None, 0) for i in mine), mine
    times = [parse_time(i["time"]).timestamp() for i in mine[:4]]
    assert times == sorted(times), mine
    # (log times may be whole seconds: 1 s, 2 s and 4 s apart show as at least 5 s in all)
    assert times[3] - times[0] >= 5 and times[3] - times[2] > times[1] - times[0], mine
    for name in ("failing", "dead"):
        w = s.get(f"{mon.base}/webhooks/{name}").json()
        assert w["lastDelivery"]["outcome"] == "failed" and w["pendingEvents"] >= 1, w
    text = requests.get(s.url + "/metrics", timeout=10).text
    assert (metric(text, "clustermgmt_webhook_deliveries_total", outcome="failed") or 0) >= 8, text
    assert (metric(text, "clustermgmt_webhook_deliveries_total", outcome="delivered") or 0) >= 1, text
    # Webhooks with deliveries in flight or waiting for a retry go at once.
    for name in hooks:
        assert s.delete(f"{mon.base}/webhooks/{name}").status_code == 204
    assert s.get(f"{mon.base}/webhooks").json()["items"] == []


def test_webhook_validation(mon):
    """Webhook documents are checked (http(s) URL, an existing secret, known event types, no unknown
    fields); names are unique; deleted ones are gone."""
    s, path = mon.server, f"{mon.base}/webhooks"
    good = {"name": "v", "url": "http://127.0.0.1:9/hook", "secret": HOOK_SECRET}
    for change, field in (({"url": "ftp://127.0.0.1/x"}, "url"), ({"url": "not a url"}, "url"),
                          ({"secret": "no-such-secret"}, "secret"), ({"name": "Bad_Name"}, "name"),
                          ({"events": ["NoSuchEvent"]}, "events"), ({"bogus": 1}, "bogus")):
        r = s.post(path, {**good, **change})
        p = assert_problem(r, 422)
        fields = {e["field"] for e in p["errors"]}
        assert any(f == field or f.startswith(field + "[") for f in fields), (change, p)
    assert s.post(path, good).status_code == 201
    assert_problem(s.post(path, good), 409)
    assert s.get(f"{path}/v").json()["name"] == "v"
    assert s.delete(f"{path}/v").status_code == 204
    assert_problem(s.delete(f"{path}/v"), 404)
    assert_problem(s.get(f"{path}/nope/deliveries"), 404)


def test_monitoring_settings(mon):
    """GET/PUT of an environment's settings: defaults from the flags, bounds, unknown fields, If-Match."""
    s, path = mon.server, "/v1/environments/default/monitoring"
    r = s.get(path)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["intervalSeconds"] == INTERVAL and d["failureThreshold"] == THRESHOLD, d
    assert d["certificateWarningDays"] == 30 and isinstance(d["version"], int), d

    want = {"intervalSeconds": 10, "failureThreshold": 3, "certificateWarningDays": 14}
    r = s.put(path, want)
    assert r.status_code == 200, r.text
    got = r.json()
    assert {k: got[k] for k in want} == want and got["version"] > d["version"], got
    assert s.get(path).json() == got

    for change, field in (({"intervalSeconds": 0}, "intervalSeconds"), ({"intervalSeconds": 3601}, "intervalSeconds"),
                          ({"intervalSeconds": "5"}, "intervalSeconds"), ({"failureThreshold": 0}, "failureThreshold"),
                          ({"failureThreshold": 11}, "failureThreshold"),
                          ({"certificateWarningDays": -1}, "certificateWarningDays"),
                          ({"certificateWarningDays": 366}, "certificateWarningDays"), ({"bogus": 1}, "bogus")):
        assert_problem(s.put(path, {**want, **change}), 422, field)
    assert s.get(path).json() == got
    # the bounds themselves are fine
    r = s.put(path, {"intervalSeconds": 3600, "failureThreshold": 10, "certificateWarningDays": 365})
    assert r.status_code == 200, r.text
    r = s.put(path, {"intervalSeconds": 1, "failureThreshold": 1, "certificateWarningDays": 0})
    assert r.status_code == 200, r.text
    cur = r.json()

    assert_problem(s.put(path, want, headers={"If-Match": f'"{cur["version"] + 100}"'}), 412)
    assert s.get(path).json() == cur
    r = s.put(path, want, headers={"If-Match": f'"{cur["version"]}"'})
    assert r.status_code == 200 and r.json()["version"] > cur["version"], r.text
    assert_problem(s.put(path, want, headers={"If-Match": f'"{cur["version"]}"'}), 412)
    assert_problem(s.get("/v1/environments/nope/monitoring"), 404)
    # the monitored environment kept the defaults
    assert s.get(f"{mon.base}/monitoring").json()["intervalSeconds"] == INTERVAL


def test_access_to_health_settings_and_webhooks(mon):
    s = mon.server
    va = as_token(s, new_key(s, "ops-viewer", roles=[{"environment": ENV, "role": "viewer"}])["token"])
    oa = as_token(s, new_key(s, "ops-operator", roles=[{"environment": ENV, "role": "operator"}])["token"])
    vb = as_token(s, new_key(s, "other-viewer", roles=[{"environment": OTHER, "role": "viewer"}])["token"])
    health = mon.cluster.path + "/health"
    settings = {"intervalSeconds": 5, "failureThreshold": 2, "certificateWarningDays": 30}

    # A viewer of the environment reads health, history and settings, and changes nothing.
    assert va("GET", health).status_code == 200
    assert va("GET", health + "/history").status_code == 200
    assert va("GET", f"{mon.base}/monitoring").status_code == 200
    assert_problem(va("PUT", f"{mon.base}/monitoring", json=settings), 403)
    assert_problem(oa("PUT", f"{mon.base}/monitoring", json=settings), 403)
    # Webhooks are for admins of the environment.
    hook = {"name": "x", "url": "http://127.0.0.1:9/x", "secret": HOOK_SECRET}
    assert_problem(va("GET", f"{mon.base}/webhooks"), 403)
    assert_problem(oa("POST", f"{mon.base}/webhooks", json=hook), 403)

    # A viewer of another environment sees none of it: 404, as if it did not exist.
    for path in (health, health + "/history", mon.cluster.path, f"{mon.base}/monitoring",
                 f"{mon.base}/webhooks", f"{mon.base}/webhooks/x/deliveries"):
        assert_problem(vb("GET", path), 404)
    assert_problem(vb("PUT", f"{mon.base}/monitoring", json=settings), 404)
    assert s.get(f"{mon.base}/monitoring").json()["intervalSeconds"] == INTERVAL
    assert "x" not in [w["name"] for w in s.get(f"{mon.base}/webhooks").json()["items"]]


def test_event_stream_access(mon, streams):
    s = mon.server
    mon.wait("healthy (so that there are events)", {t: "True" for t in FIVE}, CONDITION_CHANGE)
    ka = new_key(s, "ops-viewer-2", roles=[{"environment": ENV, "role": "viewer"}])["token"]
    kall = new_key(s, "all-viewer", roles=[{"environment": "*", "role": "viewer"}])["token"]

    mine = streams(s, params={"environment": ENV, "follow": "false"}, token=ka)
    assert mine.status_code == 200 and mine.resp.headers["Content-Type"].startswith("text/event-stream")
    events = mine.wait_end(10)
    assert events and all(e["json"]["environment"] == ENV for e in events), events
    # Without an environment the caller needs a role in every environment ('*').
    r = streams(s, params={"follow": "false"}, token=ka)
    assert r.status_code == 403 and r.resp.headers["Content-Type"] == PROBLEM, r.resp.text
    # Another environment is as if it did not exist.
    for env in (OTHER, "nope"):
        r = streams(s, params={"environment": env, "follow": "false"}, token=ka)
        assert r.status_code == 404 and r.resp.headers["Content-Type"] == PROBLEM, r.resp.text
    # A viewer in '*' and the admin may read every environment's events.
    for token in (kall, s.token):
        r = streams(s, params={"follow": "false"}, token=token)
        assert r.status_code == 200, r.resp.text
        assert {e["json"]["environment"] for e in r.wait_end(10)} == {ENV}
    r = requests.get(s.url + "/v1/events", params={"environment": ENV, "follow": "false"}, timeout=10)
    assert r.status_code == 401, r.text
