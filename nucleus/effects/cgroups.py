"""cgroup effects, for both cgroup v2 and cgroup v1: one function per intent.

``detect`` looks at the host once (mountinfo, the cgroup2 root's controllers) and returns a
:class:`Host` naming the backend: ``v2`` when a cgroup2 mount offers memory, cpu and pids; else
``v1`` with the mount point of each controller; else ``none`` with the reason. The functions
``create``, ``set_limits``, ``attach``, ``stats``, ``oom_killed``, ``kill_all``, ``procs`` and
``remove`` each carry out one intent on a :class:`Cgroup` handle and branch only on the results
of their calls. A failure raises :class:`CgroupError`, an OSError whose message names what was
done, the file, the value written and the errno::

    write '536870912' to /sys/fs/cgroup/memory/nucleus/x/memory.limit_in_bytes: EINVAL (Invalid argument)

Groups are made only below the caller's parent (e.g. ``nucleus``) under each hierarchy's root,
and no file outside the parent's directories is ever written: hierarchy roots and other groups
are only read. cpuset is never used on v1, so new groups need no cpus/mems copied from their
parent.

All file operations go through :data:`FILES`, which tests replace with a fake kernel.
"""

from __future__ import annotations

import errno as _errno
import os
import re
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from nucleus.config.resources import Limits

V2_REQUIRED = ("cpu", "memory", "pids")
V2_OPTIONAL = ("io",)
V1_REQUIRED = ("cpu", "memory", "pids")
V1_OPTIONAL = ("blkio", "cpuacct", "freezer")
V1_CONTROLLERS = frozenset({
    "blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb", "memory", "misc",
    "net_cls", "net_prio", "perf_event", "pids", "rdma",
})
UNIFIED = "unified"  # the key of the single directory of a v2 group in Cgroup.dirs

# cgroup v1 reports "no limit" as LONG_MAX rounded down to a page; anything this big is unlimited.
V1_UNLIMITED = 1 << 62
V1_IO_FILES = (
    ("rbps", "blkio.throttle.read_bps_device"),
    ("wbps", "blkio.throttle.write_bps_device"),
    ("riops", "blkio.throttle.read_iops_device"),
    ("wiops", "blkio.throttle.write_iops_device"),
)

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

    def __reduce__(self):  # keeps the message when sent over a pipe with pickle
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
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode())  # one write: the kernel parses each write on its own
        finally:
            os.close(fd)

    def mkdir(self, path: str) -> None:
        os.mkdir(path, 0o755)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def kill(self, pid: int, sig: int) -> None:
        os.kill(pid, sig)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def monotonic(self) -> float:
        return time.monotonic()


FILES = Files()


# --- handles ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Host:
    """What the host offers. ``mounts``: on v1 controller -> mount point; on v2
    {"unified": mount point}. ``controllers``: the controllers nucleus uses there.
    ``unified``: the cgroup2 mount point, also on a hybrid host. ``reason`` says why."""

    backend: str  # "v2", "v1" or "none"
    mounts: Mapping[str, str] = field(default_factory=dict, hash=False)
    controllers: frozenset[str] = frozenset()
    unified: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class Cgroup:
    """One container's cgroup. ``dirs`` maps each controller to its directory; on v2 every
    controller shares one directory, also named by the key "unified"."""

    backend: str  # "v2" or "v1"
    dirs: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def path(self) -> str:
        """The directory to show a user: the v2 group, or the v1 memory group."""
        for key in (UNIFIED, "memory"):
            if key in self.dirs:
                return self.dirs[key]
        return sorted(self.dirs.values())[0] if self.dirs else ""

    def directories(self) -> list[str]:
        """Each directory once, deepest first."""
        return sorted(set(self.dirs.values()), key=lambda d: (-d.count("/"), d))


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


# --- detection ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Mount:
    root: str
    point: str
    fstype: str
    options: tuple[str, ...]


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _mounts(text: str) -> list[_Mount]:
    """cgroup and cgroup2 mounts from mountinfo, in mount order; a later mount on the same
    point or above it hides the earlier ones."""
    by_point: dict[str, _Mount] = {}
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        if len(fields) < sep + 4:
            continue
        point = _unescape(fields[4])
        fstype = fields[sep + 1]
        above = point.rstrip("/") + "/"
        by_point = {p: m for p, m in by_point.items() if p != point and not p.startswith(above)}
        if fstype in ("cgroup", "cgroup2"):
            by_point[point] = _Mount(_unescape(fields[3]), point, fstype,
                                     tuple(fields[sep + 3].split(",")))
    return list(by_point.values())


def _under(path: str, root: str) -> bool:
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(root + "/") or root == "/"


def detect(mountinfo_path: str = "/proc/self/mountinfo", root: str = "/sys/fs/cgroup") -> Host:
    """Which backend to use: mounts under ``root`` are preferred, then mounts of a hierarchy's
    own root ("/")."""
    mounts = sorted(_mounts(_read(mountinfo_path)),
                    key=lambda m: (not _under(m.point, root), m.root != "/"))
    unified: str | None = None
    offered: list[str] = []
    for m in (m for m in mounts if m.fstype == "cgroup2"):
        text = _read_optional(os.path.join(m.point, "cgroup.controllers"))
        if text is None:
            continue
        available = text.split()
        if unified is None:
            unified, offered = m.point, available
        if all(c in available for c in V2_REQUIRED):
            enabled = (_read_optional(os.path.join(m.point, "cgroup.subtree_control")) or "").split()
            wanted = set(V2_REQUIRED) | {c for c in V2_OPTIONAL if c in available and c in enabled}
            return Host("v2", {UNIFIED: m.point}, frozenset(wanted), m.point,
                        f"cgroup2 at {m.point} offers {' '.join(sorted(available))}")
    if unified is None:
        v2_note = "no cgroup2 mount"
    else:
        v2_note = f"cgroup2 at {unified} offers {' '.join(sorted(offered)) or 'no controllers'}"
    v1: dict[str, str] = {}
    for m in (m for m in mounts if m.fstype == "cgroup"):
        for option in m.options:
            if option in V1_CONTROLLERS and option not in v1:
                v1[option] = m.point
    missing = [c for c in V1_REQUIRED if c not in v1]
    if missing:
        return Host("none", {}, frozenset(), unified,
                    f"no cgroup v1 hierarchy for {', '.join(missing)} in {mountinfo_path}; "
                    f"{v2_note}")
    used = {c: v1[c] for c in V1_REQUIRED + V1_OPTIONAL if c in v1}
    return Host("v1", used, frozenset(used), unified,
                f"cgroup v1 hierarchies for {' '.join(sorted(used))}; {v2_note}")


# --- layout -------------------------------------------------------------------------------------


def _relative(parent: str, name: str) -> list[str]:
    parts = parent.strip("/").split("/")
    if parts == [""] or any(p in ("", ".", "..") for p in parts) or name in ("", ".", "..") \
            or "/" in name:
        raise ValueError(f"not a cgroup path below a hierarchy root: {parent!r}/{name!r}")
    return parts


def _handle(host: Host, parent: str, name: str) -> Cgroup:
    parts = _relative(parent, name)
    if host.backend == "v2":
        directory = os.path.join(host.mounts[UNIFIED], *parts, name)
        return Cgroup("v2", {UNIFIED: directory, **{c: directory for c in host.controllers}})
    if host.backend == "v1":
        return Cgroup("v1", {c: os.path.join(point, *parts, name)
                             for c, point in host.mounts.items()})
    raise CgroupError("create", os.path.join(parent, name), _errno.EOPNOTSUPP, detail=host.reason)


# --- effects ------------------------------------------------------------------------------------


def create(host: Host, parent: str, name: str) -> Cgroup:
    """Make ``<parent>/<name>`` under each hierarchy nucleus uses (the parent's directories as
    needed). On v2 the controllers are enabled in the subtree_control of the parent's own
    directories; the hierarchy root's must already enable them. An existing group is an error
    (EEXIST); after a failure part-way, ``find_existing`` + ``remove`` clean up."""
    cg = _handle(host, parent, name)
    parts = _relative(parent, name)
    if host.backend == "v2":
        point = host.mounts[UNIFIED]
        wanted = sorted(host.controllers)
        control = os.path.join(point, "cgroup.subtree_control")
        if wanted:
            missing = [c for c in wanted if c not in _read(control).split()]
            if missing:
                plus = " ".join(f"+{c}" for c in missing)
                raise CgroupError(
                    "check", control, _errno.EOPNOTSUPP,
                    detail=f"{' '.join(missing)} not enabled for the root's children; "
                           f"enable them on the host with: echo '{plus}' > {control}")
        directory = point
        for part in parts:
            directory = os.path.join(directory, part)
            _mkdir(directory, exist_ok=True)
            control = os.path.join(directory, "cgroup.subtree_control")
            missing = [c for c in wanted if c not in _read(control).split()]
            if missing:
                _write(control, " ".join(f"+{c}" for c in missing))
        _mkdir(os.path.join(directory, name), exist_ok=False)
        return cg
    for point in sorted(set(host.mounts.values())):
        directory = point
        for part in parts:
            directory = os.path.join(directory, part)
            _mkdir(directory, exist_ok=True)
        _mkdir(os.path.join(directory, name), exist_ok=False)
    return cg


def find_existing(host: Host, parent: str, name: str) -> Cgroup | None:
    """The handle of ``<parent>/<name>`` as far as its directories exist (for cleanup by another
    process, e.g. ``rm --force`` after a crash); None when none exists."""
    cg = _handle(host, parent, name)
    present = {key: d for key, d in cg.dirs.items() if FILES.isdir(d)}
    return Cgroup(cg.backend, present) if present else None


def set_limits(cg: Cgroup, limits: Limits) -> list[tuple[str, str]]:
    """Write every limit; returns the (file, value) pairs written, in order."""
    written: list[tuple[str, str]] = []

    def put(path: str, value: str, optional: bool = False) -> None:
        try:
            _write(path, value)
        except CgroupError as e:
            if optional and e.errno == _errno.ENOENT:
                return
            raise
        written.append((path, value))

    if cg.backend == "v2":
        _limits_v2(cg, limits, put)
    else:
        _limits_v1(cg, limits, put)
    return written


def _max(value: int | None) -> str:
    return "max" if value is None else str(value)


def _limits_v2(cg: Cgroup, limits: Limits, put) -> None:
    put(_file(cg, "memory", "memory.max"), _max(limits.memory))
    put(_file(cg, "memory", "memory.high"), _max(limits.memory_high))
    # Without swap accounting there is no swap.max to zero; a swap size asked for must apply.
    put(_file(cg, "memory", "memory.swap.max"), _max(limits.swap_max),
        optional=limits.swap is None)
    put(_file(cg, "memory", "memory.oom.group"), "1", optional=True)  # kernels before 4.19
    put(_file(cg, "cpu", "cpu.max"), f"{_max(limits.cpu_quota)} {limits.cpu_period}")
    if limits.cpu_weight is not None:
        put(_file(cg, "cpu", "cpu.weight"), str(limits.cpu_weight))
    put(_file(cg, "pids", "pids.max"), str(limits.pids))
    for io in limits.io:
        keys = " ".join(f"{k}={getattr(io, k)}" for k in ("rbps", "wbps", "riops", "wiops")
                        if getattr(io, k) is not None)
        put(_file(cg, "io", "io.max"), f"{io.device} {keys}")


def _limits_v1(cg: Cgroup, limits: Limits, put) -> None:
    limit = _file(cg, "memory", "memory.limit_in_bytes")
    memsw = _file(cg, "memory", "memory.memsw.limit_in_bytes")
    if limits.memory is None:
        put(memsw, "-1", optional=True)  # memsw first: it may never be below the limit
        put(limit, "-1")
    else:
        current = _read_optional(memsw)
        if current is None:
            if limits.swap is not None:
                raise CgroupError("write", memsw, _errno.ENOENT, value=str(limits.memsw),
                                  detail="swap accounting is off on this host")
            put(limit, str(limits.memory))
        elif limits.memory > int(current):
            put(memsw, str(limits.memsw))  # raising: memsw first, so limit <= memsw holds
            put(limit, str(limits.memory))
        else:
            put(limit, str(limits.memory))
            put(memsw, str(limits.memsw))
    # v1 has no memory.high; the soft limit is where reclaim pushes back first.
    put(_file(cg, "memory", "memory.soft_limit_in_bytes"),
        "-1" if limits.memory_high is None else str(limits.memory_high))
    put(_file(cg, "cpu", "cpu.cfs_period_us"), str(limits.cpu_period))
    put(_file(cg, "cpu", "cpu.cfs_quota_us"),
        "-1" if limits.cpu_quota is None else str(limits.cpu_quota))
    if limits.cpu_shares is not None:
        put(_file(cg, "cpu", "cpu.shares"), str(limits.cpu_shares))
    put(_file(cg, "pids", "pids.max"), str(limits.pids))
    for io in limits.io:
        for key, name in V1_IO_FILES:
            value = getattr(io, key)
            if value is not None:
                put(_file(cg, "blkio", name), f"{io.device} {value}")


def attach(cg: Cgroup, pid: int) -> None:
    """Move ``pid`` (the whole process) into the group in every hierarchy."""
    if pid <= 1:
        raise CgroupError("write", os.path.join(cg.path, "cgroup.procs"), _errno.EINVAL,
                          value=str(pid), detail="pid 1 and the kernel's threads are never moved")
    for directory in sorted(set(cg.dirs.values())):
        _write(os.path.join(directory, "cgroup.procs"), str(pid))


def procs(cg: Cgroup) -> list[int]:
    """The pids in the group, over every hierarchy; a group already gone has none."""
    pids: set[int] = set()
    for directory in cg.directories():
        text = _read_optional(os.path.join(directory, "cgroup.procs"))
        pids.update(int(word) for word in (text or "").split())
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


def oom_killed(cg: Cgroup) -> bool:
    """Whether the kernel's OOM killer killed a process of the group (v2 memory.events,
    v1 memory.oom_control; both count oom_kill since kernel 4.13)."""
    if cg.backend == "v2":
        events = _keyed(_read(_file(cg, "memory", "memory.events")))
    else:
        events = _keyed(_read(_file(cg, "memory", "memory.oom_control")))
    return events.get("oom_kill", 0) > 0


def kill_all(cg: Cgroup, timeout: float = KILL_TIMEOUT) -> None:
    """SIGKILL every process of the group and wait, at most ``timeout`` seconds, until it is
    empty. v2 writes cgroup.kill (kernel 5.14+; before that: freeze, kill each pid, thaw); v1
    freezes through the freezer hierarchy when there is one, so nothing forks while the pids
    are killed, then thaws so the kills land."""
    if cg.backend == "v2":
        directory = cg.dirs[UNIFIED]
        try:
            _write(os.path.join(directory, "cgroup.kill"), "1")
        except CgroupError as e:
            if e.errno != _errno.ENOENT:
                raise
            _freeze_and_kill(cg, os.path.join(directory, "cgroup.freeze"), "1", "0",
                             os.path.join(directory, "cgroup.events"), "frozen 1")
    else:
        freezer = cg.dirs.get("freezer")
        state = None if freezer is None else os.path.join(freezer, "freezer.state")
        _freeze_and_kill(cg, state, "FROZEN", "THAWED", state, "FROZEN")
    _wait_empty(cg, timeout)


def _freeze_and_kill(cg: Cgroup, control: str | None, freeze: str, thaw: str,
                     status: str | None, frozen: str) -> None:
    froze = False
    if control is not None:
        try:
            _write(control, freeze)
            froze = True
        except CgroupError as e:
            if e.errno != _errno.ENOENT:
                raise
    try:
        if froze and status is not None:
            deadline = FILES.monotonic() + FREEZE_TIMEOUT
            while frozen not in (_read_optional(status) or frozen) \
                    and FILES.monotonic() < deadline:
                FILES.sleep(POLL)
        for pid in procs(cg):
            _kill(pid, signal.SIGKILL)
    finally:
        if froze:
            _write(control, thaw)  # type: ignore[arg-type]


def _wait_empty(cg: Cgroup, timeout: float) -> None:
    deadline = FILES.monotonic() + timeout
    while True:
        left = procs(cg)
        if not left:
            return
        if FILES.monotonic() >= deadline:
            raise CgroupError(
                "wait for", os.path.join(cg.path, "cgroup.procs"), _errno.EBUSY,
                detail=f"pids {', '.join(map(str, left))} still there after {timeout:g}s")
        for pid in left:  # a fork that raced the kill, or v1 without a freezer
            _kill(pid, signal.SIGKILL)
        FILES.sleep(POLL)


def remove(cg: Cgroup, retries: int = RMDIR_RETRIES) -> list[str]:
    """rmdir every directory of the group, deepest first; one already gone is fine, EBUSY (a
    process still exiting) is retried. Returns the directories removed."""
    removed: list[str] = []
    for directory in cg.directories():
        attempt = 0
        while True:
            try:
                FILES.rmdir(directory)
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno == _errno.EBUSY and attempt < retries:
                    attempt += 1
                    FILES.sleep(RMDIR_DELAY)
                    continue
                raise CgroupError("rmdir", directory, e.errno or _errno.EIO) from None
            removed.append(directory)
            break
    return removed


def remove_parent(host: Host, parent: str) -> list[str]:
    """rmdir the parent's directories, deepest first, where empty; one still holding another
    container's group (EBUSY) stays. Returns the directories removed."""
    parts = _relative(parent, "x")
    points = [host.mounts[UNIFIED]] if host.backend == "v2" else sorted(set(host.mounts.values()))
    removed: list[str] = []
    for point in points:
        for depth in range(len(parts), 0, -1):
            directory = os.path.join(point, *parts[:depth])
            try:
                FILES.rmdir(directory)
            except FileNotFoundError:
                continue
            except OSError as e:
                if e.errno in (_errno.EBUSY, _errno.ENOTEMPTY):
                    break
                raise CgroupError("rmdir", directory, e.errno or _errno.EIO) from None
            removed.append(directory)
    return removed
