"""Real SSH for the fleet tests: one OpenSSH server (`/usr/sbin/sshd`) per "host", each on its own
127.0.0.1 port with its own host key, reached by the real `ssh` client with a real key pair, host keys
checked against a known_hosts file (StrictHostKeyChecking=yes: an unknown key fails, as it should).

Each host logs in as a local user of its own (a fresh uid per host and test), so its engines run
under that uid in that user's engine folder (/tmp/oxtui-UID): three hosts are three separate sets of
engines, as three machines would be, and the bridge finds engines the way it does on a real server.
The users exist only inside the hosts' sshd: each sshd runs in a mount namespace of its own where
/etc/passwd, group and shadow are copies with the users added (the machine's files are never
touched), and /root (0700 on many machines, and holding this Python or the project) is a tmpfs with
only those two bound back, so the users can run this oxtui and nothing else of root's.

Engines are started over SSH as their user would (`ssh web1 oxtui up ...`). Sessions carry the test's
leak mark (sshd SetEnv), so a bridge or engine left running fails the test like any other leaked process.

Hosts misbehave as real ones do: `password_only` (no key accepted: BatchMode cannot log in),
`known=False` (its host key is not in known_hosts), `delay` (reached through a TCP relay of this
process that holds every chunk that long each way, or stalls when paused), `stop()` (sshd and every
session under it are killed, by their PIDs: the host is gone) and `start()` again.

Where it cannot run (no sshd, not root: sshd and the namespaces need root) `unavailable()` says why,
and the tests are skipped with that reason, never silently.
"""

from __future__ import annotations

import os
import pwd
import queue
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from conftest import MARK, ROOT, free_port, wait_until

SSHD = "/usr/sbin/sshd"
OXTUI = str(Path(sys.executable).parent / "oxtui")


def unavailable() -> str | None:
    if not os.path.exists(SSHD) or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return "OpenSSH is missing (apt-get install -y openssh-server openssh-client)"
    if os.geteuid() != 0:
        return "sshd and its mount namespaces need root"
    if shutil.which("unshare") is None:
        return "util-linux's unshare is missing"
    if not os.path.exists(OXTUI):
        return f"no oxtui script at {OXTUI} (install the project into the venv)"
    return None


def _under_root(p: Path) -> bool:
    return p == Path("/root") or Path("/root") in p.parents


# Inside a host's own mount namespace, before sshd starts: users that exist only there, and /root
# hidden but for the paths this oxtui runs from ("$@"). Each kept path is bound aside first, since the
# tmpfs hides the original.
NAMESPACE_SCRIPT = r"""
set -e
i=0
for p in "$@"; do mkdir -p "$STAGE/$i"; mount --bind "$p" "$STAGE/$i"; i=$((i+1)); done
mount -t tmpfs -o mode=0755 oxtui-sshlab /root
i=0
for p in "$@"; do mkdir -p "$p"; mount --move "$STAGE/$i" "$p"; i=$((i+1)); done
for f in passwd group shadow; do mount --bind "$ETC/$f" "/etc/$f"; done
exec /usr/sbin/sshd -D -e -f "$CONFIG"
"""


class Relay:
    """A TCP relay to 127.0.0.1:target that holds every chunk `delay` seconds (both ways); with
    `flowing` cleared it forwards nothing (a link that hangs without closing)."""

    def __init__(self, target: int, delay: float = 0.0):
        self.target, self.delay = target, delay
        self.flowing = threading.Event()
        self.flowing.set()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._socks: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                near, _ = self._server.accept()
                far = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                continue
            self._socks += [near, far]
            for a, b in ((near, far), (far, near)):
                q: queue.Queue = queue.Queue()
                threading.Thread(target=self._read, args=(a, q), daemon=True).start()
                threading.Thread(target=self._write, args=(b, q), daemon=True).start()

    def _read(self, s: socket.socket, q: queue.Queue) -> None:
        while True:
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            q.put((time.monotonic() + self.delay, data))
            if not data:
                return

    def _write(self, s: socket.socket, q: queue.Queue) -> None:
        while True:
            due, data = q.get()
            time.sleep(max(0.0, due - time.monotonic()))
            self.flowing.wait()
            try:
                if not data:
                    s.shutdown(socket.SHUT_WR)
                    return
                s.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self._closed = True
        self.flowing.set()
        for s in [self._server, *self._socks]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


class Host:
    def __init__(self, lab: SshLab, name: str, password_only: bool, known: bool, delay: float | None):
        self.lab, self.name = lab, name
        self.uid = lab.new_uid()
        self.user = f"oxlab{self.uid}"
        self.home = lab.dir / name
        self.home.mkdir(mode=0o755)
        self.run_dir = Path(tempfile.gettempdir()) / f"oxtui-{self.uid}"    # runtime.base_dir for that uid
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.sshd_dir = lab.dir / f".{name}-sshd"
        self.sshd_dir.mkdir(mode=0o700)
        key = self.sshd_dir / "ssh_host_ed25519_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        self.config = self.sshd_dir / "sshd_config"
        self.config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {key}",
            f"PidFile {self.sshd_dir / 'sshd.pid'}", f"AuthorizedKeysFile {lab.authorized}", "StrictModes no",
            "UsePAM no", f"PubkeyAuthentication {'no' if password_only else 'yes'}",
            f"PasswordAuthentication {'yes' if password_only else 'no'}", "KbdInteractiveAuthentication no",
            f"AllowUsers {self.user}", f"SetEnv OXTUI_TEST_MARK={MARK} NO_COLOR=1", "LogLevel VERBOSE", ""]))
        lab.add_user(self)
        os.chown(self.home, self.uid, self.uid)
        self.relay = Relay(self.port, delay) if delay is not None else None
        if known:
            kind, public = (self.sshd_dir / "ssh_host_ed25519_key.pub").read_text().split()[:2]
            with lab.known.open("a") as f:
                f.write(f"{name} {kind} {public}\n")
        with lab.ssh_config.open("a") as f:
            f.write(f"Host {name}\n  HostName 127.0.0.1\n  Port {self.relay.port if self.relay else self.port}\n"
                    f"  User {self.user}\n  HostKeyAlias {name}\n")

    def start(self) -> None:
        stage = self.sshd_dir / "stage"
        stage.mkdir(exist_ok=True)
        keep = [str(p) for p in dict.fromkeys((ROOT, Path(sys.base_prefix).resolve())) if _under_root(p)]
        env = {**os.environ, "STAGE": str(stage), "ETC": str(self.lab.etc), "CONFIG": str(self.config)}
        log = open(self.sshd_dir / "sshd.log", "ab")    # noqa: SIM115 (sshd's, for as long as it runs)
        self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                                      NAMESPACE_SCRIPT, "sh", *keep], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        log.close()

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return self.proc is None or self.proc.poll() is not None
        wait_until(listening, 10, 0.05, what=f"sshd of {self.name}")
        assert self.proc.poll() is None, f"sshd of {self.name} exited:\n{self.log()}"

    def stop(self) -> None:
        """The host goes away: sshd and every session under it (the bridges), killed by PID."""
        if self.proc is None:
            return
        try:
            tree = [self.proc.pid] + [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = [self.proc.pid]
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.proc = None

    def log(self) -> str:
        return (self.sshd_dir / "sshd.log").read_text(errors="replace")

    def ssh(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A command on this host, as its user would type it after `ssh`."""
        return subprocess.run(["ssh", "-F", str(self.lab.ssh_config), "-o", "BatchMode=yes", self.name, "--",
                               shlex.join(command)], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)

    def give(self, path: Path) -> None:
        """Hand a folder the test wrote to this host's user (its engine writes logs there)."""
        for p in [path, *path.rglob("*")]:
            os.chown(p, self.uid, self.uid)

    def processes(self) -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["uids"]):
            try:
                if p.info["uids"] and p.info["uids"].real == self.uid:
                    found.append(p)
            except psutil.NoSuchProcess:
                pass
        return found


class SshLab:
    """The hosts of one test with their users, the client's key, known_hosts, ssh_config and fleet file.

    Everything lives in a folder under /tmp that the hosts' users can reach (pytest's own folders are
    root's alone), removed by close()."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="oxtui-sshlab-"))
        self.dir.chmod(0o755)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)     # sshd's privilege separation folder
        self.etc = self.dir / ".etc"
        self.etc.mkdir(mode=0o755)
        for f in ("passwd", "group", "shadow"):
            shutil.copy2(f"/etc/{f}", self.etc / f)
        client = self.dir / ".client"
        client.mkdir(mode=0o700)
        self.key = client / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        self.authorized = self.dir / ".authorized_keys"      # read by sshd as the logging-in user
        self.authorized.write_text((client / "id_ed25519.pub").read_text())
        self.authorized.chmod(0o644)
        self.known = client / "known_hosts"
        self.known.write_text("")
        self.ssh_config = client / "ssh_config"
        self.ssh_config.write_text(f"Host *\n  IdentityFile {self.key}\n  IdentitiesOnly yes\n"
                                   f"  UserKnownHostsFile {self.known}\n  GlobalKnownHostsFile /dev/null\n"
                                   "  StrictHostKeyChecking yes\n  LogLevel ERROR\n\n")
        self.fleet = client / "fleet.toml"
        self.fleet.write_text("")
        self.hosts: dict[str, Host] = {}

    def new_uid(self) -> int:
        """A uid no one on this machine has, nor another lab running beside this one."""
        taken = {int(line.split(":")[2]) for line in (self.etc / "passwd").read_text().splitlines() if line}
        while True:
            uid = random.randint(200_000, 2_000_000)
            try:
                pwd.getpwuid(uid)
                continue
            except KeyError:
                pass
            if uid not in taken and not (Path(tempfile.gettempdir()) / f"oxtui-{uid}").exists():
                return uid

    def add_user(self, h: Host) -> None:
        with (self.etc / "passwd").open("a") as f:
            f.write(f"{h.user}:x:{h.uid}:{h.uid}:oxtui fleet test:{h.home}:/bin/sh\n")
        with (self.etc / "group").open("a") as f:
            f.write(f"{h.user}:x:{h.uid}:\n")
        with (self.etc / "shadow").open("a") as f:
            f.write(f"{h.user}:*:20000:0:99999:7:::\n")

    def add(self, name: str, *, password_only: bool = False, known: bool = True, delay: float | None = None,
            start: bool = True, oxtui: str = OXTUI) -> Host:
        h = Host(self, name, password_only, known, delay)
        self.hosts[name] = h
        with self.fleet.open("a") as f:
            f.write(f'[hosts.{name}]\nssh = "{name}"\noxtui = "{oxtui}"\nssh_options = ["-F", "ssh_config"]\n\n')
        if start:
            h.start()
        return h

    def close(self) -> list[str]:
        """Stop every sshd; returns what still ran under a host's user (a leak: each was killed)."""
        left = []
        for h in self.hosts.values():
            if h.relay is not None:
                h.relay.close()
            h.stop()
            # whatever still runs under this host's uid was started by this test (the uid is new). A
            # session's sshd whose client has just left is still closing its channel (behind a 300 ms
            # relay, several round trips): a leak is what runs on 5 s after its sshd and relay are gone.
            try:
                wait_until(lambda h=h: not h.processes(), 5, 0.05)
            except AssertionError:
                pass
            for p in h.processes():
                try:
                    left.append(f"{h.name}: pid {p.pid} {' '.join(p.cmdline())}")
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
            shutil.rmtree(h.run_dir, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        return left
