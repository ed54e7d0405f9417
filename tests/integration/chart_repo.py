# SPDX-License-Identifier: Apache-2.0
"""A local Helm chart repository for the add-on tests.

The charts under tests/testdata/charts are packaged with the real helm (./bin/helm, built by `make helm`)
into a temporary directory, once per version asked for (`helm package --version`, so one chart source
gives 0.1.0 and 0.2.0 for an upgrade), indexed with `helm repo index` (relative chart URLs, which helm
resolves against the repository URL) and served by http.server on 127.0.0.1 on a free port, in a thread
of the test process.

Usage:

    with ChartRepo(helm_binary()) as repo:          # demo 0.1.0 and 0.2.0
        repo.url                                     # http://127.0.0.1:<port>
        repo.versions("demo")                        # ["0.1.0", "0.2.0"]
        repo.requests                                # paths asked for so far ("/index.yaml", ...)

    ChartRepo(helm, charts=[("demo", "0.3.0")], directory=tmp_path / "repo")

or the `chart_repo` fixture (`from chart_repo import chart_repo`), which skips the test when bin/helm
is missing (and fails it under CI=true).

Run this file to check it: it serves the repository and renders both versions of the demo chart from it
with `helm template`.
"""
import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading

import pytest

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HELM = os.path.join(REPO_ROOT, "bin", "helm")
HELM_VERSION = "v3.22.0"
CHARTS_DIR = os.path.join(REPO_ROOT, "tests", "testdata", "charts")
DEFAULT_CHARTS = (("demo", "0.1.0"), ("demo", "0.2.0"))


def helm_binary():
    """bin/helm, or skip the test (fail it when CI=true) when it is missing."""
    if os.access(HELM, os.X_OK):
        return HELM
    reason = f"{HELM} is missing: build it with `make helm` (scripts/build-helm.sh, Helm {HELM_VERSION})"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the repository directory quietly and notes every path asked for."""

    def __init__(self, *args, repo, **kwargs):
        self._repo = repo
        super().__init__(*args, **kwargs)

    def do_GET(self):
        with self._repo._lock:
            self._repo.requests.append(self.path)
        super().do_GET()

    def log_message(self, format, *args):  # noqa: A002 - the signature of the base class
        pass


class ChartRepo:
    """Packaged charts in a directory, served over HTTP on 127.0.0.1 until stop()."""

    def __init__(self, helm, charts=DEFAULT_CHARTS, directory=None):
        """helm: the helm binary; charts: (name under tests/testdata/charts or a path, version) pairs;
        directory: where the packages go (default: a temporary directory removed by stop())."""
        self.helm = str(helm)
        self.charts = [(str(c), str(v)) for c, v in charts]
        self.dir = str(directory) if directory is not None else None
        self._own_dir = directory is None
        self.url = None
        self.port = None
        self.packages = []
        self.requests = []
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    def _helm(self, *args):
        # An environment of its own: nothing of the caller's helm settings, kubeconfig or proxies.
        home = os.path.join(self._work, "home")
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": home,
            "HELM_CACHE_HOME": os.path.join(home, "cache"),
            "HELM_CONFIG_HOME": os.path.join(home, "config"),
            "HELM_DATA_HOME": os.path.join(home, "data"),
            "HELM_NO_PLUGINS": "1",
        }
        r = subprocess.run([self.helm, *args], env=env, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args)} failed: {r.stderr.strip()}")
        return r.stdout

    def start(self):
        if self._server:
            return self
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="cm-chart-repo-")
        os.makedirs(self.dir, exist_ok=True)
        self._work = tempfile.mkdtemp(prefix="cm-chart-repo-helm-")
        try:
            for chart, version in self.charts:
                source = chart if os.path.isabs(chart) else os.path.join(CHARTS_DIR, chart)
                self._helm("package", source, "--version", version, "--destination", self.dir)
                name = os.path.basename(os.path.normpath(source))
                self.packages.append(os.path.join(self.dir, f"{name}-{version}.tgz"))
            self._helm("repo", "index", self.dir)
        finally:
            shutil.rmtree(self._work, ignore_errors=True)

        handler = functools.partial(_Handler, directory=self.dir, repo=self)
        # Port 0: the kernel picks a free port, without the race of probing for one first.
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="chart-repo", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None
            self._thread = None
        if self._own_dir and self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def versions(self, name):
        """The versions of chart name in the repository, in the order they were packaged."""
        return [v for c, v in self.charts if os.path.basename(os.path.normpath(c)) == name]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


@pytest.fixture
def chart_repo():
    """The demo chart as 0.1.0 and 0.2.0 in a repository served for the test."""
    with ChartRepo(helm_binary()) as repo:
        yield repo


if __name__ == "__main__":
    helm = sys.argv[1] if len(sys.argv) > 1 else HELM
    with ChartRepo(helm) as repo, tempfile.TemporaryDirectory(prefix="cm-chart-repo-check-") as home:
        print(f"serving {repo.url} from {repo.dir}: {', '.join(os.path.basename(p) for p in repo.packages)}")
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "HELM_CACHE_HOME": os.path.join(home, "cache"),
               "HELM_CONFIG_HOME": os.path.join(home, "config"), "HELM_DATA_HOME": os.path.join(home, "data")}
        for version in repo.versions("demo"):
            out = subprocess.run([helm, "template", "check", "demo", "--repo", repo.url, "--version", version,
                                  "--set", f"message=v{version}"], capture_output=True, text=True, timeout=120,
                                 env=env)
            if out.returncode != 0 or f'chartVersion: "{version}"' not in out.stdout:
                sys.exit(f"demo {version}: helm template failed: {out.stderr.strip()}")
            print(f"demo {version}: rendered ({len(out.stdout)} bytes)")
        print(f"requests: {repo.requests}")
