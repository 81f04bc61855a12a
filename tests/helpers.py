"""Shared helpers for tests that run the real `nucleus` command.

- ``run_nucleus(args)`` runs ``nucleus ARGS...`` and returns the CompletedProcess (text mode,
  stdout and stderr captured, stdin from /dev/null, a timeout, and an environment without the
  variables that change how nucleus behaves unless a test asks for them).
- ``sandbox_python(code)`` is the argv that runs ``code`` with the Debian python inside the
  sandbox (the interpreter running the tests lives outside every directory the sandbox binds).
- ``snapshot()`` / ``assert_host_unchanged(before)`` compare what a run could leave behind on the
  host: mounts, tmpfs mounts, processes, and the entries of the state directory.
"""

from __future__ import annotations

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

# Variables that steer a run; tests set them explicitly when they mean to.
_STEERING = ("NUCLEUS_FAIL_AT", "NUCLEUS_STATE_DIR", "NUCLEUS_TESTS_STRICT")


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
    extra = tuple(sorted(n for n in names if n not in PERSISTENT_STATE))
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
