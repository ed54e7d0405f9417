# SPDX-License-Identifier: Apache-2.0
"""A webhook endpoint for the tests: a threaded HTTP server on 127.0.0.1 that records every request.

It answers each POST with a fixed status (200 by default; 500 makes it a failing endpoint) and keeps
what arrived: the headers, the raw body and when (monotonic and wall clock), so that tests can check
signatures byte for byte and measure the gaps between retries.
"""
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SIGNATURE_HEADER = "X-CrateKube-Signature"
TIMESTAMP_HEADER = "X-CrateKube-Timestamp"


class Delivery:
    """One request the receiver got."""

    def __init__(self, method, path, headers, body, mono, wall):
        self.method = method
        self.path = path
        self.headers = headers  # {lower-case name: value}
        self.body = body
        self.mono = mono
        self.wall = wall

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"Delivery({self.method} {self.path} {self.headers!r} {self.body[:300]!r})"


def expected_signature(key, timestamp, body):
    """`sha256=<hex HMAC-SHA256(key, "<timestamp>.<body>")>` as the contract defines it."""
    if isinstance(key, str):
        key = key.encode()
    if isinstance(timestamp, str):
        timestamp = timestamp.encode()
    return "sha256=" + hmac.new(key, timestamp + b"." + body, hashlib.sha256).hexdigest()


def signature_valid(key, delivery, max_skew=300):
    """Whether the delivery carries a valid signature under key, checked as a receiver should:
    constant-time comparison, over the raw body, with a timestamp close to now."""
    sig = delivery.header(SIGNATURE_HEADER)
    ts = delivery.header(TIMESTAMP_HEADER)
    if not sig or not ts or not ts.isdigit():
        return False
    if abs(int(ts) - delivery.wall) > max_skew:
        return False
    return hmac.compare_digest(sig.encode(), expected_signature(key, ts, delivery.body).encode())


class WebhookReceiver:
    """Start with `WebhookReceiver(status=200).start()`; `url` is where the service should POST."""

    def __init__(self, status=200, path="/hook"):
        self.status = status
        self.path = path
        self.deliveries = []
        self.cond = threading.Condition()
        self.httpd = None
        self.thread = None

    def start(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                d = Delivery("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                             time.monotonic(), time.time())
                with receiver.cond:
                    receiver.deliveries.append(d)
                    receiver.cond.notify_all()
                out = b"{}" if receiver.status < 300 else b'{"error": "test endpoint fails on purpose"}'
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()
        return self

    @property
    def url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{self.path}"

    def received(self):
        with self.cond:
            return list(self.deliveries)

    def wait_for(self, what, pred, timeout):
        """Waits until pred(list of deliveries) is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                v = pred(list(self.deliveries))
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}; got {self.deliveries}")
                self.cond.wait(min(left, 0.5))

    def close(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
