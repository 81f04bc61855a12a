"""cgroup effects, for cgroup v2 and v1: one function per intent, carried out exactly as the
plan (nucleus.plan.cgroups) wrote it, branching only on the results of the calls. A failure
raises :class:`CgroupError`, an OSError whose message names what was done, the file, the value
written and the errno::

    write '536870912' to /sys/fs/cgroup/memory/nucleus/x/memory.limit_in_bytes: EINVAL (Invalid argument)

`stats` reads a group's figures for `nucleus stats`. All file operations go through
:data:`FILES`, which tests replace with a fake kernel.
"""

from __future__ import annotations

import errno as _errno
import os
import re
import signal
import time
from collections.abc import Mapping
from dataclasses import field

from nucleus import vocab as v
from nucleus.effects import control
from nucleus.facts import UNIFIED
from nucleus.frozen import frozen

# cgroup v1 reports "no limit" as LONG_MAX rounded down to a page; anything this big is unlimited.
V1_UNLIMITED = 1 << 62

KILL_TIMEOUT = 5.0
FREEZE_TIMEOUT = 1.0
POLL = 0.01
RMDIR_RETRIES = 20
RMDIR_DELAY = 0.05


class CgroupError(OSError):
    """A cgroup file operation failed; errno and strerror are set as for OSError."""

    def __init__(self, op: str, path: str, err: int, value: str | None = None,
                 detail: str | None = None) -> None:
        super().__init__(err, os.strerror(err))
        self.op = op
        self.path = path
        self.value = value
        self.detail = detail
        self.filename = path

    @property
    def errno_name(self) -> str:
        return _errno.errorcode.get(self.errno or 0, f"errno {self.errno}")

    def __str__(self) -> str:
        target = f"{self.op} {self.path}"
        if self.value is not None:
            target = f"{self.op} {self.value!r} to {self.path}"
        text = f"{target}: {self.errno_name} ({self.strerror})"
        return f"{text}: {self.detail}" if self.detail else text

    def __reduce__(  # keeps the message when sent over a pipe with pickle
        self,
    ) -> tuple[type[CgroupError], tuple[str, str, int | None, str | None, str | None]]:
        return (type(self), (self.op, self.path, self.errno, self.value, self.detail))


class Files:
    """The file-system calls made on cgroupfs. Writes never create files: a control file that
    does not exist is an error (ENOENT), as the kernel would say."""

    def read(self, path: str) -> str:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks).decode()

    def write(self, path: str, text: str) -> None:
        control.write_once(path, text)

    def mkdir(self, path: str) -> None:
        os.mkdir(path, 0o755)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def setxattr(self, path: str, name: str, value: str) -> None:
        os.setxattr(path, name, value.encode(), follow_symlinks=False)

    def getxattr(self, path: str, name: str) -> str:
        return os.getxattr(path, name, follow_symlinks=False).decode(errors="replace")

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def writable(self, path: str) -> bool:
        """Whether the caller may write ``path`` (a group's directory or control file)."""
        return os.access(path, os.W_OK)

    def kill(self, pid: int, sig: int) -> None:
        os.kill(pid, sig)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def monotonic(self) -> float:
        return time.monotonic()


FILES = Files()


# --- handles ------------------------------------------------------------------------------------


@frozen
class Cgroup:
    """One container's cgroup, for `stats`. ``dirs`` maps each controller to its directory; on
    v2 every controller shares one directory, also named by the key "unified"."""

    backend: str  # "v2" or "v1"
    dirs: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def path(self) -> str:
        """The directory to show a user: the v2 group, or the v1 memory group."""
        for key in (UNIFIED, "memory"):
            if key in self.dirs:
                return self.dirs[key]
        return sorted(self.dirs.values())[0] if self.dirs else ""


# --- file helpers -------------------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        return FILES.read(path)
    except OSError as e:
        raise CgroupError("read", path, e.errno or _errno.EIO) from None


def _read_optional(path: str) -> str | None:
    try:
        return FILES.read(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CgroupError("read", path, e.errno or _errno.EIO) from None


def _write(path: str, value: str) -> None:
    try:
        FILES.write(path, value)
    except OSError as e:
        raise CgroupError("write", path, e.errno or _errno.EIO, value=value) from None


def _mkdir(path: str, exist_ok: bool) -> bool:
    """Make one directory; True if it was made here."""
    try:
        FILES.mkdir(path)
    except FileExistsError:
        if exist_ok:
            return False
        raise CgroupError("mkdir", path, _errno.EEXIST) from None
    except OSError as e:
        raise CgroupError("mkdir", path, e.errno or _errno.EIO) from None
    return True


def _kill(pid: int, sig: int) -> None:
    if pid <= 1:  # never pid 1 or the kernel's threads, whatever a file says
        return
    try:
        FILES.kill(pid, sig)
    except ProcessLookupError:
        pass
    except OSError as e:
        raise CgroupError("kill", f"pid {pid}", e.errno or _errno.EIO,
                          value=signal.Signals(sig).name) from None


def _keyed(text: str | None) -> dict[str, int]:
    """'key value' lines (cpu.stat, memory.events, memory.oom_control) as a dict."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and re.fullmatch(r"-?\d+", parts[1]):
            out[parts[0]] = int(parts[1])
    return out


def _number(text: str | None) -> int | None:
    """An integer file; None when absent or "max"/unlimited."""
    if text is None:
        return None
    word = text.strip()
    if word in ("max", "-1", ""):
        return None
    n = int(word)
    return None if n >= V1_UNLIMITED else n


def _file(cg: Cgroup, controller: str, name: str) -> str:
    directory = cg.dirs.get(controller)
    if directory is None:
        raise CgroupError("open", os.path.join(cg.path, name), _errno.ENOENT,
                          detail=f"the group has no {controller} controller")
    return os.path.join(directory, name)


def procs(files: tuple[str, ...]) -> list[int]:
    """The pids in the group, over each of its cgroup.procs files; a group already gone has
    none."""
    pids: set[int] = set()
    for path in files:
        pids.update(int(word) for word in (_read_optional(path) or "").split())
    return sorted(pids)


def stats(cg: Cgroup) -> dict[str, int | None]:
    """memory, swap, cpu and pids figures; None where the host does not report one (or, for
    the *_max keys, where there is no limit). CPU times are in microseconds."""
    return _stats_v2(cg) if cg.backend == "v2" else _stats_v1(cg)


def _opt(cg: Cgroup, controller: str, name: str) -> str | None:
    directory = cg.dirs.get(controller)
    return None if directory is None else _read_optional(os.path.join(directory, name))


def _stats_v2(cg: Cgroup) -> dict[str, int | None]:
    cpu = _keyed(_read(os.path.join(cg.dirs[UNIFIED], "cpu.stat")))  # in every v2 group
    events = _keyed(_opt(cg, "memory", "memory.events"))
    return {
        "memory_current": _number(_opt(cg, "memory", "memory.current")),
        "memory_max": _number(_opt(cg, "memory", "memory.max")),
        "memory_high": _number(_opt(cg, "memory", "memory.high")),
        "memory_peak": _number(_opt(cg, "memory", "memory.peak")),
        "swap_current": _number(_opt(cg, "memory", "memory.swap.current")),
        "swap_max": _number(_opt(cg, "memory", "memory.swap.max")),
        "cpu_usage_usec": cpu.get("usage_usec"),
        "cpu_user_usec": cpu.get("user_usec"),
        "cpu_system_usec": cpu.get("system_usec"),
        "cpu_nr_periods": cpu.get("nr_periods"),
        "cpu_nr_throttled": cpu.get("nr_throttled"),
        "cpu_throttled_usec": cpu.get("throttled_usec"),
        "pids_current": _number(_opt(cg, "pids", "pids.current")),
        "pids_max": _number(_opt(cg, "pids", "pids.max")),
        "pids_peak": _number(_opt(cg, "pids", "pids.peak")),
        "oom_kills": events.get("oom_kill"),
    }


def _stats_v1(cg: Cgroup) -> dict[str, int | None]:
    usage = _number(_read(_file(cg, "memory", "memory.usage_in_bytes")))
    limit = _number(_opt(cg, "memory", "memory.limit_in_bytes"))
    memsw_usage = _number(_opt(cg, "memory", "memory.memsw.usage_in_bytes"))
    memsw_limit = _number(_opt(cg, "memory", "memory.memsw.limit_in_bytes"))
    cpu = _keyed(_opt(cg, "cpu", "cpu.stat"))
    acct_ns = _number(_opt(cg, "cpuacct", "cpuacct.usage"))
    acct = _keyed(_opt(cg, "cpuacct", "cpuacct.stat"))
    hz = os.sysconf("SC_CLK_TCK")
    throttled = cpu.get("throttled_time")
    return {
        "memory_current": usage,
        "memory_max": limit,
        "memory_high": _number(_opt(cg, "memory", "memory.soft_limit_in_bytes")),
        "memory_peak": _number(_opt(cg, "memory", "memory.max_usage_in_bytes")),
        "swap_current": None if memsw_usage is None or usage is None
        else max(0, memsw_usage - usage),
        "swap_max": None if memsw_limit is None or limit is None else memsw_limit - limit,
        "cpu_usage_usec": None if acct_ns is None else acct_ns // 1000,
        "cpu_user_usec": acct["user"] * 1_000_000 // hz if "user" in acct else None,
        "cpu_system_usec": acct["system"] * 1_000_000 // hz if "system" in acct else None,
        "cpu_nr_periods": cpu.get("nr_periods"),
        "cpu_nr_throttled": cpu.get("nr_throttled"),
        "cpu_throttled_usec": None if throttled is None else throttled // 1000,
        "pids_current": _number(_opt(cg, "pids", "pids.current")),
        "pids_max": _number(_opt(cg, "pids", "pids.max")),
        "pids_peak": _number(_opt(cg, "pids", "pids.peak")),
        "oom_kills": _keyed(_opt(cg, "memory", "memory.oom_control")).get("oom_kill"),
    }


# --- the intents ----------------------------------------------------------------------------------


CREATE_ATTEMPTS = 3


def create(op: v.CreateCgroup) -> None:
    """Each parent it makes gets the mark (the release removes a parent only with it, never one
    that was there before: an administrator's group with limits of its own). Another
    container's release removes a shared parent once it is empty: when a parent vanishes
    between its mkdir and the next step (ENOENT), the steps are taken again."""
    if op.unavailable:
        raise CgroupError("create", op.dirs[0] if op.dirs else "cgroup", _errno.EOPNOTSUPP,
                          detail=op.unavailable)
    if op.vacate:
        _vacate(*op.vacate)
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            for directory in op.parents:
                if _mkdir(directory, exist_ok=True) and op.mark:
                    _mark(directory, op.mark)
            for control, value in op.enable:
                _write(control, value)
            for directory in op.dirs:
                _mkdir(directory, exist_ok=attempt > 1)  # made by the attempt before, maybe
            return
        except CgroupError as e:
            if e.errno != _errno.ENOENT or attempt == CREATE_ATTEMPTS:
                raise


def _vacate(group_procs: str, leaf: str, leaf_procs: str) -> None:
    """Move every process of a group into its leaf (made where missing); one that exits
    meanwhile (ESRCH) is gone already."""
    _mkdir(leaf, exist_ok=True)
    for pid in procs((group_procs,)):
        try:
            FILES.write(leaf_procs, str(pid))
        except ProcessLookupError:
            continue
        except OSError as e:
            if e.errno == _errno.ESRCH:
                continue
            raise CgroupError("write", leaf_procs, e.errno or _errno.EIO, value=str(pid),
                              detail=f"moving the processes of {os.path.dirname(group_procs)} "
                              "to a leaf of their own") from None


def _mark(directory: str, mark: tuple[str, ...]) -> None:
    name, value = mark
    try:
        FILES.setxattr(directory, name, value)
    except OSError as e:
        raise CgroupError("set attribute", directory, e.errno or _errno.EIO, value=f"{name}={value}") from None


def _marked(directory: str, mark: tuple[str, ...]) -> bool:
    """Whether nucleus made this parent (it carries the mark); one without it, or gone, is not
    nucleus's to remove."""
    name, value = mark
    try:
        return FILES.getxattr(directory, name) == value
    except OSError as e:
        if e.errno in (_errno.ENODATA, _errno.ENOENT, _errno.ENOTSUP, _errno.EACCES, _errno.EPERM):
            return False
        raise CgroupError("read attribute", directory, e.errno or _errno.EIO, value=name) from None


def write_limits(op: v.SetCgroupLimits) -> str:
    """Write each value in order. An optional write whose file is missing is skipped; any other
    failed write raises when the intent is strict, else it is skipped and the others are still
    written. Returns the Done detail: the skipped writes (`v.skipped_detail`), "" for none."""
    skipped: list[v.SkippedWrite] = []
    for path, value, optional in op.writes:
        try:
            _write(path, value)
        except CgroupError as e:
            if optional and e.errno == _errno.ENOENT:
                continue
            if op.strict:
                raise
            skipped.append((path, value, f"{e.errno_name} ({e.strerror})"))
    return v.skipped_detail(skipped)


def attach(op: v.AttachCgroup, pid: int) -> None:
    """Move ``pid`` (the whole process) into the group in every hierarchy."""
    if pid <= 1:
        raise CgroupError("write", op.procs[0] if op.procs else "cgroup.procs", _errno.EINVAL,
                          value=str(pid), detail="pid 1 and the kernel's threads are never moved")
    for procs in op.procs:
        _write(procs, str(pid))


def remove(op: v.RemoveCgroup, timeout: float = KILL_TIMEOUT) -> bool:
    """End what is left in the group, then remove it and its parents where empty. Returns
    whether the kernel's OOM killer acted in the group (v2 memory.events, v1
    memory.oom_control; both count oom_kill since kernel 4.13)."""
    return release(op, timeout) is not None


def release(op: v.RemoveCgroup, timeout: float = KILL_TIMEOUT) -> str | None:
    """`remove`, returning the Done detail: None, or when the OOM killer acted "oom-killed"
    with the group's peak memory use (v2 memory.peak, kernel 5.19+; v1
    memory.max_usage_in_bytes), read before the group goes. A retry first waits its pause."""
    if op.pause > 0:
        FILES.sleep(op.pause)
    oom = False
    if op.oom:
        path, key = op.oom
        oom = _keyed(_read_optional(path)).get(key, 0) > 0
    peak = _peak(op.peak) if oom and op.peak else None
    _remove(op, timeout)
    return v.oom_detail(peak) if oom else None


def _peak(path: str) -> int | None:
    try:
        return _number(_read_optional(path))
    except (CgroupError, ValueError):
        return None  # a figure for the message only: never a reason to keep the group


def _remove(op: v.RemoveCgroup, timeout: float) -> None:
    if op.procs:
        _kill_all(op, timeout)
    for directory in op.dirs:
        _rmdir(directory)
    for directory in op.parents:
        if not op.mark or not _marked(directory, op.mark):
            continue
        try:
            FILES.rmdir(directory)
        except FileNotFoundError:
            continue
        except OSError as e:
            # Another container's group keeps it (EBUSY, ENOTEMPTY); a parent the caller may not
            # remove (a rootless run under root's parent) stays too.
            if e.errno not in (_errno.EBUSY, _errno.ENOTEMPTY, _errno.EACCES, _errno.EPERM):
                raise CgroupError("rmdir", directory, e.errno or _errno.EIO) from None


def _kill_all(op: v.RemoveCgroup, timeout: float) -> None:
    """SIGKILL every process of the group and wait, at most ``timeout`` seconds, until it is
    empty: cgroup.kill where the kernel has it (v2, 5.14+); else freeze (so nothing forks while
    the pids are killed), kill each pid, thaw so the kills land."""
    killed = False
    if op.kill:
        try:
            _write(op.kill, "1")
            killed = True
        except CgroupError as e:
            if e.errno != _errno.ENOENT:
                raise
    if not killed:
        _freeze_and_kill(op)
    _wait_empty(op.procs, timeout)


def _freeze_and_kill(op: v.RemoveCgroup) -> None:
    control = status = freeze = thaw = frozen = None
    if op.freeze:
        control, freeze, thaw, status, frozen = op.freeze
    froze = False
    if control is not None:
        try:
            _write(control, str(freeze))
            froze = True
        except CgroupError as e:
            if e.errno != _errno.ENOENT:
                raise
    try:
        if froze and status is not None:
            deadline = FILES.monotonic() + FREEZE_TIMEOUT
            while str(frozen) not in (_read_optional(status) or str(frozen)) \
                    and FILES.monotonic() < deadline:
                FILES.sleep(POLL)
        for pid in procs(op.procs):
            _kill(pid, signal.SIGKILL)
    finally:
        if froze and control is not None:
            _write(control, str(thaw))


def _wait_empty(files: tuple[str, ...], timeout: float) -> None:
    deadline = FILES.monotonic() + timeout
    while True:
        left = procs(files)
        if not left:
            return
        if FILES.monotonic() >= deadline:
            raise CgroupError(
                "wait for", files[0], _errno.EBUSY,
                detail=f"pids {', '.join(map(str, left))} still there after {timeout:g}s")
        for pid in left:  # a fork that raced the kill, or v1 without a freezer
            _kill(pid, signal.SIGKILL)
        FILES.sleep(POLL)


def _rmdir(directory: str, retries: int = RMDIR_RETRIES) -> None:
    """rmdir one directory; one already gone is fine, EBUSY (a process still exiting) is
    retried."""
    attempt = 0
    while True:
        try:
            FILES.rmdir(directory)
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno == _errno.EBUSY and attempt < retries:
                attempt += 1
                FILES.sleep(RMDIR_DELAY)
                continue
            raise CgroupError("rmdir", directory, e.errno or _errno.EIO) from None
        return
