"""Releases from git beside the oxfile, as Capistrano keeps them: the code a deploy brings never lands
in the folder the running instances use.

    repo/                               a mirror of [deploy] source, fetched again at each deploy (only
                                        what is new travels)
    releases/20261207T101500Z-1a2b3c4/  one folder per deploy, `git archive` of the commit, shared paths
                                        linked in, `build` run inside; its record beside it (.json)
    releases/.history                   which release went live when (rollback's "the one before")
    shared/                             what every release shares: .env, uploads ...
    current -> releases/...             the live release, switched by renaming a new link over it

Only the filesystem and git: the engine (engine/deploying.py) and the command line without an engine
(cli/deploy.py) drive it the same way. Every failure is a DeployError with one line saying what and
what to do; a failed step changes nothing that runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from .oxfile.model import DeployConfig

Say = Callable[[str], None]
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true"}   # never wait on a prompt
FETCH_TIMEOUT = 600.0


class DeployError(Exception):
    """A deploy step that failed: one line, nothing switched."""


@dataclass
class Release:
    name: str                  # 20261207T101500Z-1a2b3c4
    ref: str                   # what was asked for: main, v1.4, a sha
    sha: str
    subject: str               # the commit's first line
    at: float                  # when it was made (epoch seconds)
    build: str                 # "ok", "failed", or "running"
    rolled_back: bool = False  # it went live and its reload rolled back: never a rollback's target
    live: bool = False


class Releases:
    def __init__(self, cfg: DeployConfig):
        self.cfg = cfg
        self.root = cfg.root
        self.dir = cfg.root / "releases"
        self.repo = cfg.root / "repo"
        self.shared = cfg.root / "shared"
        self.current = cfg.current

    # ---- what is there ---------------------------------------------------------------------

    def live(self) -> str | None:
        """The name of the release `current` points to, or None before the first deploy."""
        try:
            target = os.readlink(self.current)
        except OSError:
            return None
        return Path(target).name

    def record(self, name: str) -> Release | None:
        try:
            data = json.loads((self.dir / f"{name}.json").read_text())
            return Release(**{k: data[k] for k in ("name", "ref", "sha", "subject", "at", "build")},
                           rolled_back=bool(data.get("rolled_back")))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def all(self) -> list[Release]:
        """Every release on disk, newest first, the live one marked."""
        live = self.live()
        out = []
        names = sorted((p.name for p in self.dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                       reverse=True) if self.dir.is_dir() else []
        for name in names:
            r = self.record(name) or Release(name, "?", "?", "?", 0.0, "?")
            r.live = name == live
            out.append(r)
        return out

    def previous(self) -> str | None:
        """The release live before the current one (that is still on disk and built), from the history."""
        live = self.live()
        for entry in reversed(self._history()):
            name = entry.get("release")
            r = self.record(name) if name else None
            if name != live and r is not None and (self.dir / r.name).is_dir() and r.build == "ok" \
                    and not r.rolled_back:
                return r.name
        return None

    def rolled_back(self, name: str) -> None:
        """NAME went live and its reload rolled back: `releases` says so, and no rollback goes to it."""
        r = self.record(name)
        if r is not None:
            r.rolled_back = True
            self._write(r)

    def _history(self) -> list[dict]:
        try:
            return [json.loads(line) for line in (self.dir / ".history").read_text().splitlines() if line.strip()]
        except (OSError, ValueError):
            return []

    # ---- one deploy at a time --------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Held while a deploy or rollback runs, whoever runs it (an engine, or the command line with
        none): a second one is refused at once, never queued."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                who = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                raise DeployError(f"another deploy or rollback is running (pid {who}); wait for it, then try "
                                  "again") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)

    # ---- a new release ---------------------------------------------------------------------

    def prepare(self, ref: str | None, say: Say) -> Release:
        """Fetch REF, make its release folder, link the shared paths, run the build there. Raises
        DeployError (a failed build's folder stays, recorded as failed, for a look at it)."""
        for path in self.cfg.shared:
            if not (self.shared / path).exists() and not (self.shared / path).is_symlink():
                raise DeployError(f"[deploy] shared: {self.shared / path} does not exist; create it (mkdir -p it for "
                                  "a folder, or put the file there), then deploy again")
        sha, ref_name = self.fetch(ref, say)
        subject = self._git("log", "-1", "--format=%s", sha).strip()
        name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{sha[:7]}"
        while (self.dir / name).exists():       # two deploys in one second
            name += "x"
        say(f"release {name}: {ref_name} at {sha[:7]} ({subject})")
        tmp = self.dir / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        archive = subprocess.Popen(["git", "-C", str(self.repo), "archive", "--format=tar", sha],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **GIT_ENV})
        untar = subprocess.run(["tar", "-x", "-C", str(tmp)], stdin=archive.stdout, capture_output=True, check=False)
        assert archive.stdout is not None and archive.stderr is not None
        archive.stdout.close()
        err = archive.stderr.read().decode(errors="replace")
        archive.stderr.close()
        if archive.wait() != 0 or untar.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DeployError(f"cannot unpack {sha[:7]}: {(err or untar.stderr.decode(errors='replace')).strip()}")
        for path in self.cfg.shared:
            dst = tmp / path
            if dst.is_symlink() or dst.is_file():
                dst.unlink()
            elif dst.is_dir():
                shutil.rmtree(dst)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(self.shared / path)
        os.rename(tmp, self.dir / name)      # the build runs where the release will live (paths it writes hold)
        release = Release(name, ref_name, sha, subject, time.time(), "running")
        self._write(release)
        if self.cfg.build:
            say(f"build: {self.cfg.build}")
            code, last = self._build(self.dir / name, say)
            if code != 0:
                release.build = "failed"
                self._write(release)
                raise DeployError(f"build failed (exit {code}) in releases/{name}: {last or 'no output'}; nothing "
                                  "was switched")
        release.build = "ok"
        self._write(release)
        return release

    def fetch(self, ref: str | None, say: Say) -> tuple[str, str]:
        """Bring the mirror up to date; (the commit's sha, the ref's name)."""
        source = self.cfg.source
        if (ref or "").startswith("-"):   # typed in the TUI's prompt: a ref, never one of git's options
            raise DeployError(f"{ref!r} is not a branch, tag or commit; nothing was changed")
        if not (self.repo / "HEAD").exists():
            say(f"cloning {source}")
            tmp = self.root / ".repo.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            self._run(["git", "clone", "--mirror", "--quiet", source, str(tmp)], f"cannot clone {source}")
            os.rename(tmp, self.repo)
        else:
            say(f"fetching {source}")
            self._git("remote", "set-url", "origin", source)
            self._run(["git", "-C", str(self.repo), "fetch", "--prune", "--quiet", "origin"], f"cannot fetch {source}")
        if ref is None:
            ref = self.cfg.ref or self._git("symbolic-ref", "--short", "HEAD").strip()
        try:
            sha = self._git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()
        except DeployError:
            sha = ""
        if not sha:
            raise DeployError(f"{ref!r} is not a branch, tag or commit of {source}; nothing was changed")
        return sha, ref

    def _build(self, folder: Path, say: Say) -> tuple[int, str]:
        proc = subprocess.Popen(["/bin/sh", "-c", self.cfg.build or "true"], cwd=folder, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env={**os.environ, "OXTUI_RELEASE": folder.name})
        last = ""
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            if line.strip():
                last = line.strip()
            say(f"build: {line}")
        return proc.wait(), last

    def _write(self, r: Release) -> None:
        data = asdict(r)
        data.pop("live")
        tmp = self.dir / f".{r.name}.json.tmp"
        tmp.write_text(json.dumps(data) + "\n")
        os.replace(tmp, self.dir / f"{r.name}.json")

    # ---- the switch ------------------------------------------------------------------------

    def switch(self, name: str) -> str | None:
        """Point `current` at release NAME in one rename (never a moment without it); returns the release
        it pointed to before."""
        if self.current.exists() and not self.current.is_symlink():
            raise DeployError(f"{self.current} is a real folder, not the link oxtui switches; move it away (it is "
                              "not a release), then deploy again")
        before = self.live()
        tmp = self.root / f".current.tmp-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(Path("releases") / name)
        os.replace(tmp, self.current)
        with open(self.dir / ".history", "a") as f:
            f.write(json.dumps({"at": time.time(), "release": name}) + "\n")
        return before

    def check_target(self, name: str) -> None:
        """A release a rollback may go to: on disk and built."""
        r = self.record(name)
        if not (self.dir / name).is_dir() or r is None:
            names = ", ".join(x.name for x in self.all()[:5]) or "none"
            raise DeployError(f"no release {name!r} in {self.dir} (the newest: {names})")
        if r.build != "ok":
            raise DeployError(f"release {name} did not build ({r.build}); it cannot go live")
        if r.rolled_back:
            raise DeployError(f"release {name} rolled back when it went live; deploy a fixed one instead")

    def prune(self, say: Say) -> list[str]:
        """Remove releases beyond `keep`, oldest first, never the live one nor the one before it."""
        keep = {self.live(), self.previous()}
        removed = []
        for r in self.all()[self.cfg.keep:]:
            if r.name in keep:
                continue
            shutil.rmtree(self.dir / r.name, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                (self.dir / f"{r.name}.json").unlink()
            removed.append(r.name)
        if removed:
            say(f"removed {len(removed)} old release(s) (keep = {self.cfg.keep}): {', '.join(removed)}")
        return removed

    # ---- git -------------------------------------------------------------------------------

    def _git(self, *args: str) -> str:
        return self._run(["git", "-C", str(self.repo), *args], "git failed")

    def _run(self, cmd: list[str], what: str) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=FETCH_TIMEOUT,
                               env={**os.environ, **GIT_ENV}, stdin=subprocess.DEVNULL, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DeployError(f"{what}: {e}") from None
        if r.returncode != 0:
            lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
            raise DeployError(f"{what}: {lines[-1] if lines else f'exit {r.returncode}'}; nothing was changed")
        return r.stdout


@functools.lru_cache(maxsize=1024)
def release_of(cwd: str, root: Path) -> str | None:
    """The release a process runs from, by its working folder (a path under ROOT/releases/NAME); asked
    for every worker of every snapshot (10 a second while watched), so each answer is kept."""
    try:
        rel = Path(cwd).relative_to(root / "releases")
    except ValueError:
        return None
    return rel.parts[0] if rel.parts else None
