"""Shared helpers for tests that run the real `nucleus` command.

- ``run_nucleus(args)`` runs ``nucleus ARGS...`` and returns the CompletedProcess (text mode,
  stdout and stderr captured, stdin from /dev/null, a timeout, and an environment without the
  variables that change how nucleus behaves unless a test asks for them).
- ``sandbox_python(code)`` is the argv that runs ``code`` with the Debian python inside the
  sandbox (the interpreter running the tests lives outside every directory the sandbox binds).
- ``snapshot()`` / ``assert_host_unchanged(before)`` compare what a run could leave behind on the
  host: mounts, tmpfs mounts, processes, and the entries of the state directory.
- ``DOCKER_PROFILE`` is Docker's default seccomp profile in ../shared, beside the repository (a
  user's clone has no ../shared); a test that reads it carries ``NEEDS_DOCKER_PROFILE``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass

import pytest

from tests import features

# The console script installed next to the interpreter running the tests (no version-manager
# shim in between, so a Popen's pid is the supervisor's pid); PATH as a fallback.
_SCRIPT = os.path.join(os.path.dirname(sys.executable), "nucleus")
NUCLEUS = _SCRIPT if os.access(_SCRIPT, os.X_OK) else (shutil.which("nucleus") or _SCRIPT)

# Debian's interpreter: under /usr, so it is bound into the sandbox and may be executed there.
SANDBOX_PYTHON = "/usr/bin/python3"

STATE_ROOT = "/run/nucleus"
PERSISTENT_STATE = frozenset({"rootfs"})  # the mount point kept between runs

SUBUID_BASE = 100000
SUBUID_COUNT = 65536

SIGSYS_EXIT = 128 + signal.SIGSYS  # a process killed by the seccomp filter
DEFAULT_TIMEOUT = 30

# The marker every real-container test carries.
SANDBOX = pytest.mark.requires("root", "userns", "seccomp", "landlock")
SANDBOX_WITH_PYTHON = pytest.mark.requires(
    "root", "userns", "seccomp", "landlock", f"bin:{SANDBOX_PYTHON}"
)

# Docker's default seccomp profile: read by the tests that carry the marker, never at import (a
# clone without ../shared skips them; CI, strict, fails them).
DOCKER_PROFILE_FEATURE = "shared:reference/docker-default-seccomp.json"
DOCKER_PROFILE = features.shared_file(DOCKER_PROFILE_FEATURE)
NEEDS_DOCKER_PROFILE = pytest.mark.requires(DOCKER_PROFILE_FEATURE)

# Variables that steer a run; tests set them explicitly when they mean to.
_STEERING = ("NUCLEUS_FAIL_AT", "NUCLEUS_STATE_DIR", "NUCLEUS_TESTS_STRICT", "NUCLEUS_INIT")


def nucleus_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: val for k, val in os.environ.items() if k not in _STEERING}
    env.update(extra or {})
    return env


def nucleus_argv(args) -> list[str]:
    return [NUCLEUS, *map(str, args)]


def run_nucleus(args, *, timeout: float = DEFAULT_TIMEOUT, env: dict[str, str] | None = None,
                extra_env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    """Run ``nucleus ARGS...``; ``env`` replaces the environment, ``extra_env`` adds to it."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(
        nucleus_argv(args), timeout=timeout,
        env=env if env is not None else nucleus_env(extra_env), **kw,
    )


def popen_nucleus(args, *, extra_env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("text", True)
    return subprocess.Popen(nucleus_argv(args), env=nucleus_env(extra_env), **kw)


def sandbox_python(code: str, *args: str) -> list[str]:
    return [SANDBOX_PYTHON, "-c", code, *args]


def run_python(code: str, *args: str, options=(), **kw) -> subprocess.CompletedProcess:
    """``nucleus run OPTIONS -- /usr/bin/python3 -c CODE ARGS...``."""
    return run_nucleus(["run", *options, "--", *sandbox_python(code, *args)], **kw)


def run_json(code: str, *args: str, options=(), **kw):
    """Run ``code`` in the sandbox; it must print one JSON document; return it decoded."""
    result = run_python(code, *args, options=options, **kw)
    assert result.returncode == 0, describe(result)
    try:
        return json.loads(result.stdout)
    except ValueError:
        pytest.fail(f"the probe printed no JSON\n{describe(result)}")


def describe(result: subprocess.CompletedProcess) -> str:
    """A failure message with everything a reader needs."""
    args = result.args if isinstance(result.args, str) else " ".join(map(str, result.args))
    return (f"command: {args}\nexit status: {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")


# --- processes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    uid: int
    state: str
    cmdline: tuple[str, ...]

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X")


def read_proc(pid: int) -> Proc | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    uid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("Uid:"))
    argv = tuple(a.decode(errors="replace") for a in raw.split(b"\0") if a)
    return Proc(pid, int(fields[1]), uid, fields[0], argv)


def processes() -> dict[int, Proc]:
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            proc = read_proc(int(name))
            if proc is not None:
                out[proc.pid] = proc
    return out


def descendants(root: int, table: dict[int, Proc] | None = None) -> dict[int, Proc]:
    table = processes() if table is None else table
    children: dict[int, list[int]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    out: dict[int, Proc] = {}
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if pid in table and pid not in out:
            out[pid] = table[pid]
            todo.extend(children.get(pid, ()))
    return out


def _is_nucleus(proc: Proc) -> bool:
    return any(os.path.basename(a) == "nucleus" for a in proc.cmdline[:3]) and "run" in proc.cmdline


def _in_subuid_range(proc: Proc) -> bool:
    return SUBUID_BASE <= proc.uid < SUBUID_BASE + SUBUID_COUNT


def stray_processes(table: dict[int, Proc] | None = None) -> frozenset[tuple[int, tuple[str, ...]]]:
    """Living processes a run could have left behind: the test process's descendants, and
    orphaned container processes (parent gone: running as a container uid, or a nucleus process,
    under no living nucleus supervisor)."""
    table = processes() if table is None else table
    found = {p.pid: p for p in descendants(os.getpid(), table).values() if p.alive}
    for proc in table.values():
        if not proc.alive or not (_in_subuid_range(proc) or _is_nucleus(proc)):
            continue
        parent = table.get(proc.ppid)
        if parent is None or not (_is_nucleus(parent) or _in_subuid_range(parent)):
            # A supervisor started by someone (its parent is a shell or a test runner) is not
            # stray; a nucleus process adopted by init or a subreaper is.
            if _in_subuid_range(proc) or proc.ppid == 1:
                found[proc.pid] = proc
    return frozenset((p.pid, p.cmdline) for p in found.values())


def find_processes(argv: tuple[str, ...] | list[str]) -> list[Proc]:
    """Living processes whose command line is exactly ``argv``."""
    want = tuple(argv)
    return [p for p in processes().values() if p.cmdline == want and p.alive]


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.02):
    """Poll ``predicate`` until it returns something truthy; return that (or the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# --- host snapshots ------------------------------------------------------------------------------


def mounts() -> Counter:
    """The host's mounts as (mount point, fs type, source), counted."""
    out: Counter = Counter()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            fstype, source = (right.split() + ["", ""])[:2]
            out[(fields[4], fstype, source)] += 1
    return out


def state_entries() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Entries of the state directory other than the persistent ones, and what the persistent
    rootfs mount point holds (on the host it must stay an empty directory)."""
    try:
        names = os.listdir(STATE_ROOT)
    except FileNotFoundError:
        return (), ()
    extra = tuple(sorted(n for n in names if n not in PERSISTENT_STATE | {"containers", ".lock"}))
    try:  # the records and logs: a container left behind shows here
        extra += tuple(sorted(f"containers/{n}" for n in os.listdir(os.path.join(STATE_ROOT, "containers"))))
    except FileNotFoundError:
        pass
    try:
        inside = tuple(sorted(os.listdir(os.path.join(STATE_ROOT, "rootfs"))))
    except FileNotFoundError:
        inside = ()
    return extra, inside


@dataclass(frozen=True)
class HostSnapshot:
    mounts: Counter
    tmpfs: int
    processes: frozenset[tuple[int, tuple[str, ...]]]
    state: tuple[str, ...]
    rootfs: tuple[str, ...]

    def differences(self, other: HostSnapshot) -> list[str]:
        diffs = []
        if self.mounts != other.mounts:
            gained = sorted((other.mounts - self.mounts).elements())
            lost = sorted((self.mounts - other.mounts).elements())
            diffs.append(f"mounts: gained {gained}, lost {lost}")
        if self.tmpfs != other.tmpfs:
            diffs.append(f"tmpfs mounts: {self.tmpfs} before, {other.tmpfs} after")
        if other.processes - self.processes:
            diffs.append(f"processes left behind: {sorted(other.processes - self.processes)}")
        if self.state != other.state:
            diffs.append(f"{STATE_ROOT} entries: {list(self.state)} before, {list(other.state)} after")
        if self.rootfs != other.rootfs:
            diffs.append(f"{STATE_ROOT}/rootfs holds {list(other.rootfs)} (before: {list(self.rootfs)})")
        return diffs


def snapshot() -> HostSnapshot:
    m = mounts()
    state, rootfs = state_entries()
    return HostSnapshot(
        mounts=m,
        tmpfs=sum(n for (_, fstype, _), n in m.items() if fstype == "tmpfs"),
        processes=stray_processes(),
        state=state,
        rootfs=rootfs,
    )


def assert_host_unchanged(before: HostSnapshot, timeout: float = 3.0) -> None:
    """Nothing the run created may remain; give the kernel a moment to finish tearing down."""
    deadline = time.monotonic() + timeout
    diffs = before.differences(snapshot())
    while diffs and time.monotonic() < deadline:
        time.sleep(0.05)
        diffs = before.differences(snapshot())
    assert not diffs, "the run left something behind on the host:\n" + "\n".join(diffs)


# --- private scopes: a state directory and a cgroup parent of a test's own ----------------------
#
# Other users of the machine (benchmarks, other test runs) create containers at the same time,
# in /run/nucleus and under the cgroup parent "nucleus". A test that manages containers works in
# a Scope: a state directory (NUCLEUS_STATE_DIR) and a cgroup parent (--cgroup-parent) of its
# own, and a marker word carried by every workload's command line. What it checks for leftovers
# is scoped to those three, so others' activity neither hides nor fakes a leak.

import re as _re  # noqa: E402
import secrets as _secrets  # noqa: E402
import select as _select  # noqa: E402
import tempfile as _tempfile  # noqa: E402

_STEERING = (*_STEERING, "NUCLEUS_PAUSE_AT")

CONTAINER_ID = _re.compile(r"[0-9a-f]{32}")


def cgroup_mount_points() -> list[str]:
    """Every cgroup (v1) and cgroup2 mount point of the host."""
    points = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[:1] in (["cgroup"], ["cgroup2"]):
                points.add(left.split()[4])
    return sorted(points)


def _mount_points_under(directory: str) -> list[str]:
    directory = directory.rstrip("/")
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == directory or point.startswith(directory + "/"):
                found.append(point)
    return found


def _cgroup_paths(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return [line.rstrip("\n").split(":", 2)[2] for line in f if line.count(":") >= 2]
    except OSError:
        return []


def wait_for_line(stream, want: str, timeout: float = 20.0) -> list[str]:
    """Read lines from an unbuffered binary pipe (``Popen(..., text=False, bufsize=0)``: no
    buffer may hide a line from select) until one equals ``want`` (without its newline), the
    pipe ends or ``timeout`` passes; returns the lines read (the last is ``want`` if it came)."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = _select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = stream.readline()
        if not line:
            break
        lines.append(line.decode(errors="replace").rstrip("\n"))
        if lines[-1] == want:
            break
    return lines



def kill_paused(proc: subprocess.Popen, step: str, name: str | None = None) -> None:
    """A run started with NUCLEUS_PAUSE_AT=<step> (``Popen(..., text=False, bufsize=0)``, its pid
    the supervisor's): wait until it says it paused at `name` (the step without its "#n") and
    has stopped itself, then SIGKILL it, as a crash would end it."""
    name = name or step.partition("#")[0]
    try:
        lines = wait_for_line(proc.stderr, f"paused {name}")
        assert lines[-1:] == [f"paused {name}"], f"never paused at {step}: {lines}"
        assert wait_for(lambda: (p := read_proc(proc.pid)) is not None and p.state == "T"), \
            f"the supervisor did not stop at {step}"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.communicate()


def paused(proc: subprocess.Popen, step: str, during, timeout: float = 60) -> tuple[int, bytes, bytes]:
    """Drive a run started with NUCLEUS_PAUSE_AT=<step> (``Popen(..., text=False, bufsize=0)``):
    wait until it says so and its supervisor has stopped itself, call ``during()``, let it go
    on; its exit status, stdout and stderr (the lines read before the pause included). It is
    killed if anything on the way fails."""
    lines: list[str] = []
    try:
        lines = wait_for_line(proc.stderr, f"paused {step}", timeout=30)
        assert lines and lines[-1] == f"paused {step}", lines
        assert wait_for(lambda: (p := read_proc(proc.pid)) is not None and p.state == "T"), \
            "the supervisor did not stop"
        during()
        os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait()
    return proc.returncode, out, "".join(f"{line}\n" for line in lines).encode() + err


@contextlib.contextmanager
def readable_nucleus():
    """A copy of nucleus and the packages it imports that any user can read and import (for
    runs as an ordinary user, to whom root's virtualenv may be closed); yields its directory."""
    import click
    import dns
    import pathspec
    import pyroute2
    import pyseccomp

    import nucleus

    top = _tempfile.mkdtemp(prefix="nucleus-test-readable-")
    try:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        # pyroute2 and dnspython: a network's links and an egress process's resolver.
        for module in (nucleus, click, pathspec, pyroute2, dns):
            shutil.copytree(os.path.dirname(module.__file__), os.path.join(top, module.__name__), ignore=ignore)
        shutil.copy(pyseccomp.__file__, os.path.join(top, "pyseccomp.py"))
        for root, _dirs, files in os.walk(top):
            os.chmod(root, 0o755)
            for name in files:
                os.chmod(os.path.join(root, name), 0o644)
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)

class Scope:
    """A state directory, a cgroup parent and a marker of one test's own (see above)."""

    def __init__(self) -> None:
        self.state_dir = _tempfile.mkdtemp(prefix="nucleus-test-state-")
        os.chmod(self.state_dir, 0o755)
        token = _secrets.token_hex(4)
        self.cgroup_parent = f"nucleus-test-{token}"
        self.marker = f"nucleus-test-marker-{token}"
        self.containers_dir = os.path.join(self.state_dir, "containers")

    def __enter__(self) -> Scope:
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    # -- running nucleus ----------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        return {"NUCLEUS_STATE_DIR": self.state_dir}

    def nucleus(self, *args, extra_env: dict[str, str] | None = None,
                **kw) -> subprocess.CompletedProcess:
        """``nucleus ARGS...`` with this scope's state directory."""
        return run_nucleus(list(args), extra_env={**self.env, **(extra_env or {})}, **kw)

    def popen(self, *args, extra_env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
        return popen_nucleus(list(args), extra_env={**self.env, **(extra_env or {})}, **kw)

    def run_args(self, *options: str) -> list[str]:
        """``run --cgroup-parent PARENT OPTIONS...``: a run whose cgroup is this scope's."""
        return ["run", "--cgroup-parent", self.cgroup_parent, *options]

    def sh(self, script: str) -> list[str]:
        """A shell workload carrying the marker as its $0."""
        return ["/bin/sh", "-c", script, self.marker]

    def python(self, code: str) -> list[str]:
        """A Python workload carrying the marker as sys.argv[1]."""
        return [SANDBOX_PYTHON, "-c", code, self.marker]

    def detach(self, argv: list[str], *options: str, extra_env: dict[str, str] | None = None) -> str:
        """``run -d``: returns the id it printed (and checks that it printed only that)."""
        result = self.nucleus(*self.run_args("-d", *options), "--", *argv, extra_env=extra_env)
        assert result.returncode == 0, describe(result)
        assert CONTAINER_ID.fullmatch(result.stdout.strip()), describe(result)
        assert result.stdout == result.stdout.strip() + "\n" and result.stderr == "", describe(result)
        return result.stdout.strip()

    # -- what the state directory holds --------------------------------------------------------
    def record_path(self, cid: str) -> str:
        return os.path.join(self.containers_dir, f"{cid}.json")

    def log_path(self, cid: str) -> str:
        return os.path.join(self.containers_dir, f"{cid}.log")

    def record(self, cid: str) -> dict | None:
        """The container's record as stored (a record that does not parse fails the test)."""
        try:
            with open(self.record_path(cid)) as f:
                text = f.read()
        except FileNotFoundError:
            return None
        try:
            return json.loads(text)
        except ValueError:
            pytest.fail(f"the record {self.record_path(cid)} does not parse:\n{text}")

    def records(self) -> dict[str, dict]:
        """Every stored record by id; one that does not parse fails the test."""
        try:
            names = os.listdir(self.containers_dir)
        except FileNotFoundError:
            return {}
        out = {}
        for name in names:
            if name.endswith(".json"):
                record = self.record(name[:-5])
                if record is not None:
                    out[name[:-5]] = record
        return out

    def wait_status(self, cid: str, *statuses: str, timeout: float = 20.0) -> dict:
        """Wait until the record says one of ``statuses``; return it."""
        record = wait_for(lambda: (r := self.record(cid)) is not None and r.get("status") in statuses
                          and r, timeout=timeout)
        assert record, f"{cid}: never {' or '.join(statuses)}; record: {self.record(cid)}"
        return record

    def wait_finished(self, cid: str, timeout: float = 20.0) -> dict:
        """Wait until the container has stopped and its supervisor has finished (released
        what it held and exited); return the record."""
        self.wait_status(cid, "stopped", "failed", timeout=timeout)
        pid = self.record(cid)["supervisor_pid"]
        assert wait_for(lambda: (p := read_proc(pid)) is None or not p.alive, timeout=timeout), \
            f"{cid}: the supervisor {pid} is still running after the container stopped"
        return self.record(cid)

    def log(self, cid: str) -> str:
        try:
            with open(self.log_path(cid), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, cid: str, predicate, timeout: float = 20.0) -> str:
        text = wait_for(lambda: predicate(t := self.log(cid)) and t, timeout=timeout)
        assert text, f"{cid}: the log never matched; it holds:\n{self.log(cid)}"
        return text

    # -- what this scope could leave on the host -----------------------------------------------
    def cgroup_dirs(self) -> list[str]:
        """This scope's cgroup parent, in every hierarchy where it exists."""
        return [d for d in (os.path.join(p, self.cgroup_parent) for p in cgroup_mount_points())
                if os.path.isdir(d)]

    def container_cgroups(self, cid: str) -> list[str]:
        return [d for d in (os.path.join(p, self.cgroup_parent, cid) for p in cgroup_mount_points())
                if os.path.isdir(d)]

    def _ours(self, proc: Proc) -> bool:
        if any(self.marker in arg for arg in proc.cmdline):
            return True
        inside = f"/{self.cgroup_parent}"
        return any(p == inside or p.startswith(inside + "/") for p in _cgroup_paths(proc.pid))

    def processes(self) -> list[Proc]:
        """Living processes of this scope: a marked command line, or in the scope's cgroups."""
        me = os.getpid()
        return sorted((p for p in processes().values()
                       if p.alive and p.pid != me and self._ours(p)), key=lambda p: p.pid)

    def leftovers(self) -> list[str]:
        found = []
        for directory in self.cgroup_dirs():
            children = sorted(e.name for e in os.scandir(directory) if e.is_dir())
            found.append(f"cgroup {directory} (groups in it: {children})")
        found += [f"mount on {point}" for point in _mount_points_under(self.state_dir)]
        found += [f"process {p.pid} (uid {p.uid}, state {p.state}): {' '.join(p.cmdline)}"
                  for p in self.processes()]
        try:
            found += [f"state file {os.path.join(self.containers_dir, n)}"
                      for n in sorted(os.listdir(self.containers_dir))]
        except FileNotFoundError:
            pass
        try:
            extra = sorted(set(os.listdir(self.state_dir)) - {".lock", "containers", "rootfs"})
            found += [f"state entry {os.path.join(self.state_dir, n)}" for n in extra]
            found += [f"entry in the rootfs mount point: {n}"
                      for n in os.listdir(os.path.join(self.state_dir, "rootfs"))]
        except FileNotFoundError:
            pass
        return found

    def assert_clean(self, timeout: float = 5.0) -> None:
        """Nothing of this scope remains: no cgroup (not even the parent), mount, process,
        record or log. The kernel gets a moment to finish tearing down."""
        left = wait_for(lambda: not self.leftovers(), timeout=timeout)
        if not left:
            pytest.fail("left behind on the host:\n" + "\n".join(self.leftovers()))

    def cleanup(self) -> None:
        """Best effort, after the test: remove what it left (only this scope's things)."""
        try:
            ids = [n[:-5] for n in os.listdir(self.containers_dir) if n.endswith(".json")]
        except FileNotFoundError:
            ids = []
        for cid in ids:
            try:
                self.nucleus("rm", "--force", cid)
            except subprocess.TimeoutExpired:
                pass
        for proc in self.processes():
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_for(lambda: not self.processes(), timeout=5)
        for directory in self.cgroup_dirs():
            for root, _dirs, _files in sorted(os.walk(directory, topdown=False),
                                              key=lambda w: -len(w[0])):
                try:
                    os.rmdir(root)
                except OSError:
                    pass
        if not _mount_points_under(self.state_dir):  # never delete through a leaked mount
            shutil.rmtree(self.state_dir, ignore_errors=True)


NIX_STORE = "/nix/store"
NIX_BASE32 = "0123456789abcdfghijklmnpqrsvwxyz"  # Nix's base32: no e, o, t, u


def store_name(name: str) -> str:
    """A path under /nix/store named as Nix names one: <32 base32 characters>-<name>."""
    return f"{NIX_STORE}/{''.join(_secrets.choice(NIX_BASE32) for _ in range(32))}-{name}"


@contextlib.contextmanager
def store_paths():
    """A list to put the store paths a test makes in: each removed afterwards, with /nix/store
    (and /nix) too where this made them."""
    made = [p for p in ("/nix", NIX_STORE) if not os.path.exists(p)]
    for p in made:
        os.mkdir(p, 0o755)
    paths: list[str] = []
    try:
        yield paths
    finally:
        for p in paths:
            shutil.rmtree(p, ignore_errors=True)
        for p in reversed(made):
            with contextlib.suppress(OSError):
                os.rmdir(p)
