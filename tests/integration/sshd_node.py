# SPDX-License-Identifier: Apache-2.0
"""Test nodes for the rke engine on loopback: a real Debian sshd, and a listener that never answers SSH."""
import getpass
import os
import socket
import subprocess
import threading
import time

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "/usr/bin/ssh-keygen"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SshdNode:
    """One sshd (openssh-server) on 127.0.0.1:<free port>, configured from files in its own dir.

    Accepts public keys from `authorized_keys` in that dir for the current user; logs to `sshd.log` (-e -D).
    """

    def __init__(self, directory):
        self.dir = str(directory)
        self.user = getpass.getuser()
        self.port = None
        self.proc = None
        self.host_key = os.path.join(self.dir, "ssh_host_ed25519_key")
        self.authorized_keys = os.path.join(self.dir, "authorized_keys")
        self.config = os.path.join(self.dir, "sshd_config")
        self.log_path = os.path.join(self.dir, "sshd.log")

    def start(self, timeout=10):
        """Starts sshd; raises RuntimeError saying why when it cannot."""
        if not os.access(SSHD, os.X_OK):
            raise RuntimeError(f"{SSHD} is missing: install openssh-server (make deps)")
        if not os.path.exists(self.host_key):
            subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", self.host_key], check=True,
                           capture_output=True)
        if not os.path.exists(self.authorized_keys):
            open(self.authorized_keys, "w").close()
        os.chmod(self.authorized_keys, 0o600)
        try:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
        except OSError:
            pass
        last = ""
        for _ in range(5):  # the free port may be taken between the check and sshd's bind
            self.port = free_port()
            with open(self.config, "w") as f:
                f.write(f"""Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.host_key}
AuthorizedKeysFile {self.authorized_keys}
PidFile {os.path.join(self.dir, "sshd.pid")}
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AllowTcpForwarding yes
AllowStreamLocalForwarding no
LogLevel VERBOSE
""")
            test = subprocess.run([SSHD, "-t", "-f", self.config], capture_output=True, text=True)
            if test.returncode != 0:
                raise RuntimeError(f"sshd -t refused the config: {test.stderr.strip()}")
            logf = open(self.log_path, "ab")
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", self.config], stdout=logf,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            logf.close()
            deadline = time.time() + timeout
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1) as c:
                        c.settimeout(2)
                        if c.recv(64).startswith(b"SSH-"):
                            return self
                except OSError:
                    pass
                time.sleep(0.05)
            last = self.log()
            self.stop()
        raise RuntimeError(f"sshd did not start:\n{last}")

    def authorize(self, public_key):
        with open(self.authorized_keys, "a") as f:
            f.write(public_key.strip() + "\n")

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class SilentNode:
    """A loopback TCP listener that accepts connections and never says a word (an SSH handshake hangs).

    close_all() closes the held connections and makes later ones close at once (the node then fails fast).
    """

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.accepted = 0
        self.closing = False
        self.lock = threading.Lock()
        self.stopped = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        self.sock.settimeout(0.1)
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                if self.closing:
                    c.close()
                else:
                    self.conns.append(c)

    def hold(self):
        """From now on, keep accepted connections open and silent."""
        with self.lock:
            self.closing = False

    def close_all(self):
        with self.lock:
            self.closing = True
            for c in self.conns:
                c.close()
            self.conns = []

    def stop(self):
        self.stopped = True
        self.close_all()
        self.thread.join(timeout=2)
        self.sock.close()
