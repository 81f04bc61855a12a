"""A fake cgroup kernel over plain directories, for the tests of the cgroup probe and effects.

:class:`FakeKernel` implements ``cgroups.Files`` (install it with monkeypatch on
``cgroups.FILES``). Hierarchies are real directories under a test's tmp_path, with control files
as real files, so a test can read what was written; every operation on them follows the kernel's
rules rather than plain file semantics (the rules for each control file's value are in
fake_cgroupfs_rules.py):

cgroup v2 (``mount_v2``)
  * a child's controller files exist only for the controllers enabled in its parent's
    ``cgroup.subtree_control``; its ``cgroup.controllers`` lists exactly those;
  * enabling a controller not in ``cgroup.controllers`` is ENOENT, an unknown name EINVAL;
    enabling in a non-root group holding processes, or moving a process into a non-root group
    whose subtree_control enables controllers, is EBUSY (no internal processes); disabling one
    that a child enables again is EBUSY;
  * values are checked as the kernel does: memory.* sizes ("max" or bytes, rounded down to a
    page), cpu.max (quota >= 1000, period 1000..1000000), cpu.weight (1..10000, else ERANGE),
    pids.max, io.max (known devices only, else ENODEV), memory.oom.group (0 or 1),
    cgroup.kill ("1", else ERANGE), cgroup.freeze;
  * the root has no cgroup.kill, cgroup.freeze, cgroup.events or controller files.
cgroup v1 (``mount_v1``, one hierarchy per call, co-mounts allowed)
  * memory.limit_in_bytes may not exceed memory.memsw.limit_in_bytes, nor memsw go below the
    limit (EINVAL); no limits on the root; cpu.cfs_quota_us >= 1000 or negative (unlimited);
    cpu.shares clamped to 2..262144; blkio.throttle.* "MAJ:MIN N" (0 removes);
  * a cpuset child starts with empty cpus and mems, and attaching to it is ENOSPC;
  * freezer.state reads FREEZING once before FROZEN; a SIGKILL to a frozen process lands when
    its group is thawed.
Both: rmdir of a group with processes or child groups is EBUSY; writing a file that does not
exist is ENOENT and a read-only one EACCES; ``cgroup.procs`` of each group lists its processes.
A process spawned with ``lingers=n`` leaves cgroup.procs when killed but keeps its groups busy
for n more rmdir attempts (a process still exiting). ``fail_next(op, path, err)`` makes the next
``op`` ("mkdir", "write", "rmdir") on ``path`` fail with ``err`` (a fault the fake does not model,
such as cgroup.max.descendants or ENOMEM).

Processes are fake (``spawn``) with pids far above the host's pid_max, and ``kill`` only ever
signals them: a fake kernel never reaches a real process. ``sleep`` advances a fake clock.

An unprivileged caller (``as_user(uid)``) may write only in the groups delegated to it
(``delegate(group)``, as systemd's Delegate=yes does): the delegated group's directory and its
cgroup.procs, cgroup.subtree_control and cgroup.threads, and everything below it. Anything else
(mkdir, rmdir, a write) is EACCES; moving a process is EACCES unless both its group and the
destination are in a delegated subtree; a trusted.* attribute is EPERM (it needs
CAP_SYS_ADMIN). ``writable`` answers as access(2) would.
"""

from __future__ import annotations

import errno
import os
import re
import signal
from dataclasses import dataclass

from nucleus.effects import cgroups
from tests.effects.fake_cgroupfs_rules import V1_UNLIMITED, V2_KNOWN, ControlFileRules, fail

FIRST_PID = 50_000_000  # above any pid_max: never a real process

V2_OFFERED = V2_KNOWN
V2_ENABLED = ("cpu", "io", "memory", "pids")

V2_CORE_ROOT = {
    "cgroup.procs": "",
    "cgroup.threads": "",
    "cgroup.max.depth": "max",
    "cgroup.max.descendants": "max",
    "cgroup.stat": "nr_descendants 0\nnr_dying_descendants 0\n",
    "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
}
V2_CORE = {
    **V2_CORE_ROOT,
    "cgroup.subtree_control": "",
    "cgroup.type": "domain",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "cgroup.freeze": "0",
}
V2_CPU_STAT_EXTRA = "nr_periods 0\nnr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0\n"
V2_FILES = {
    "memory": {
        "memory.current": "0", "memory.min": "0", "memory.low": "0", "memory.high": "max",
        "memory.max": "max", "memory.peak": "0", "memory.oom.group": "0", "memory.stat": "",
        "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    },
    "memory+swap": {
        "memory.swap.current": "0", "memory.swap.max": "max", "memory.swap.high": "max",
        "memory.swap.events": "high 0\nmax 0\nfail 0\n",
    },
    "cpu": {"cpu.max": "max 100000", "cpu.weight": "100", "cpu.weight.nice": "0",
            "cpu.max.burst": "0", "cpu.idle": "0"},
    "pids": {"pids.current": "0", "pids.max": "max", "pids.events": "max 0\n", "pids.peak": "0"},
    "io": {"io.max": "", "io.stat": "", "io.weight": "default 100\n"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": "", "cpuset.cpus.effective": "0-1"},
    "hugetlb": {"hugetlb.2MB.max": "max", "hugetlb.2MB.current": "0"},
    "rdma": {"rdma.max": "", "rdma.current": ""},
    "misc": {"misc.max": "", "misc.current": ""},
}

V1_CORE = {"cgroup.procs": "", "tasks": "", "notify_on_release": "0",
           "cgroup.clone_children": "0"}
V1_CORE_ROOT = {**V1_CORE, "cgroup.sane_behavior": "0", "release_agent": ""}
V1_FILES = {
    "memory": {
        "memory.limit_in_bytes": str(V1_UNLIMITED),
        "memory.soft_limit_in_bytes": str(V1_UNLIMITED),
        "memory.usage_in_bytes": "0", "memory.max_usage_in_bytes": "0", "memory.failcnt": "0",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        "memory.stat": "", "memory.use_hierarchy": "1", "memory.swappiness": "60",
    },
    "memory+swap": {
        "memory.memsw.limit_in_bytes": str(V1_UNLIMITED),
        "memory.memsw.usage_in_bytes": "0", "memory.memsw.max_usage_in_bytes": "0",
    },
    "cpu": {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1", "cpu.shares": "1024",
            "cpu.stat": "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n"},
    "cpuacct": {"cpuacct.usage": "0", "cpuacct.stat": "user 0\nsystem 0\n"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "pids": {"pids.max": "max", "pids.current": "0", "pids.events": "max 0\n", "pids.peak": "0"},
    "blkio": {"blkio.throttle.read_bps_device": "", "blkio.throttle.write_bps_device": "",
              "blkio.throttle.read_iops_device": "", "blkio.throttle.write_iops_device": "",
              "blkio.throttle.io_serviced": "Total 0\n"},
    "freezer": {"freezer.state": "THAWED", "freezer.self_freezing": "0",
                "freezer.parent_freezing": "0"},
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm\n"},
}
V1_NOT_ON_ROOT = {"pids", "freezer"}

READ_ONLY = {
    "cgroup.controllers", "cgroup.events", "cgroup.stat", "cpu.stat", "memory.current",
    "memory.peak", "memory.events", "memory.stat", "memory.swap.current", "memory.swap.events",
    "pids.current", "pids.events", "pids.peak", "io.stat", "cpuset.cpus.effective",
    "hugetlb.2MB.current", "rdma.current", "misc.current", "memory.usage_in_bytes",
    "memory.memsw.usage_in_bytes", "cpuacct.stat", "freezer.self_freezing",
    "freezer.parent_freezing", "cgroup.sane_behavior", "devices.list",
    "blkio.throttle.io_serviced",
}


def escape(path: str) -> str:
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


@dataclass
class Proc:
    pid: int
    alive: bool = True
    pending_kill: bool = False
    unkillable: bool = False  # e.g. stuck in uninterruptible sleep
    lingers: int = 0  # rmdir attempts its groups stay busy after it died


@dataclass
class Hierarchy:
    point: str
    version: int
    controllers: tuple[str, ...]  # v2: offered at the root; v1: mounted here
    swap: bool = True  # v2 memory.swap.*, v1 memory.memsw.*
    has_kill: bool = True  # cgroup.kill (kernel 5.14+)
    name: str | None = None  # v1 named hierarchy, e.g. systemd


class FakeKernel(ControlFileRules, cgroups.Files):
    def __init__(self, devices: tuple[tuple[int, int], ...] = ((8, 0), (254, 0))) -> None:
        self.hierarchies: list[Hierarchy] = []
        self.procs: dict[int, Proc] = {}
        self.devices = set(devices)
        self.signals: list[tuple[int, int]] = []  # (pid, signal) sent with kill()
        self.log: list[tuple[str, str, str]] = []  # (op, path, value) of every call that changed state
        self.clock = 0.0
        self._freezing: dict[str, int] = {}
        self._busy: dict[str, int] = {}  # group -> rmdir attempts left that fail with EBUSY
        self._faults: dict[tuple[str, str], int] = {}
        self._xattrs: dict[tuple[str, str], str] = {}  # (group, name) -> value, as cgroupfs keeps them
        self._next_pid = FIRST_PID
        self.uid = 0  # the caller's: root writes everywhere
        self.delegated: set[str] = set()  # groups delegated to the (unprivileged) caller

    # -- building ---------------------------------------------------------------------------------
    def mount_v2(self, point, offered=V2_OFFERED, enabled=V2_ENABLED, swap=True,
                 has_kill=True) -> str:
        point = os.path.normpath(str(point))
        os.makedirs(point)
        h = Hierarchy(point, 2, tuple(offered), swap=swap, has_kill=has_kill)
        self.hierarchies.append(h)
        files = {**V2_CORE_ROOT, "cgroup.controllers": " ".join(offered),
                 "cgroup.subtree_control": " ".join(c for c in V2_KNOWN if c in enabled)}
        self._make_files(point, files)
        for proc in self.procs.values():
            self._append(os.path.join(point, "cgroup.procs"), proc.pid)
        return point

    def mount_v1(self, point, controllers, swap=True, name=None) -> str:
        point = os.path.normpath(str(point))
        os.makedirs(point)
        h = Hierarchy(point, 1, tuple(controllers), swap=swap, name=name)
        self.hierarchies.append(h)
        self._make_files(point, self._v1_files(h, root=True, parent=None))
        for proc in self.procs.values():
            self._append(os.path.join(point, "cgroup.procs"), proc.pid)
            self._append(os.path.join(point, "tasks"), proc.pid)
        return point

    def mountinfo(self, path, extra: str = "") -> str:
        """A /proc/self/mountinfo listing the hierarchies (in mount order) after /, /proc, /sys
        and a tmpfs on the first hierarchy's parent."""
        lines = ["22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw",
                 "23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw",
                 "24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:13 - sysfs sysfs rw"]
        if self.hierarchies:
            top = os.path.dirname(self.hierarchies[0].point)
            lines.append(f"31 24 0:28 / {escape(top)} rw,relatime shared:14 - tmpfs tmpfs "
                         "rw,mode=755")
        for n, h in enumerate(self.hierarchies):
            if h.version == 2:
                tail = "cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot"
            else:
                opts = list(h.controllers) + ([f"name={h.name}"] if h.name else [])
                tail = f"cgroup cgroup rw,{','.join(opts)}"
            lines.append(f"{32 + n} 31 0:{29 + n} / {escape(h.point)} "
                         f"rw,nosuid,nodev,noexec,relatime shared:{15 + n} - {tail}")
        text = "\n".join(lines) + "\n" + extra
        with open(path, "w") as f:
            f.write(text)
        return str(path)

    def spawn(self, unkillable: bool = False, lingers: int = 0) -> int:
        """A new fake process in the root group of every hierarchy."""
        pid = self._next_pid
        self._next_pid += 1
        self.procs[pid] = Proc(pid, unkillable=unkillable, lingers=lingers)
        for h in self.hierarchies:
            self._append(os.path.join(h.point, "cgroup.procs"), pid)
            if h.version == 1:
                self._append(os.path.join(h.point, "tasks"), pid)
        self._refresh()
        return pid

    def alive(self, pid: int) -> bool:
        return pid in self.procs and self.procs[pid].alive

    def group_of(self, pid: int, point: str) -> str:
        for directory, _dirs, files in os.walk(point):
            if "cgroup.procs" in files and pid in self._pids(directory):
                return directory
        raise KeyError(pid)

    def exit(self, pid: int) -> None:
        self._die(pid)

    def as_user(self, uid: int) -> None:
        """From now on the calls are an unprivileged caller's."""
        self.uid = uid

    def delegate(self, group) -> str:
        """Delegate ``group`` to the caller (made where missing), as systemd does: it gets
        the directory and its cgroup.procs, cgroup.subtree_control and cgroup.threads."""
        group = os.path.normpath(str(group))
        if not os.path.isdir(group):
            self.mkdir(group)
        self.delegated.add(group)
        return group

    DELEGATED_FILES = ("cgroup.procs", "cgroup.subtree_control", "cgroup.threads")

    def _in_delegation(self, path: str) -> bool:
        return any(path == d or path.startswith(d + "/") for d in self.delegated)

    def writable(self, path: str) -> bool:
        path = os.path.normpath(path)
        if self.uid == 0:
            return os.path.exists(path)
        if not os.path.exists(path):
            return False
        for d in self.delegated:
            if path == d or path.startswith(d + "/") and (
                    os.path.dirname(path) != d or os.path.isdir(path)
                    or os.path.basename(path) in self.DELEGATED_FILES):
                return True
        return False

    def _permitted(self, op: str, path: str) -> None:
        """EACCES for what an unprivileged caller may not change."""
        if self.uid == 0:
            return
        target = path if op == "write" else os.path.dirname(path)
        if not self.writable(target):
            raise fail(errno.EACCES, path)

    def fail_next(self, op: str, path, err: int) -> None:
        self._faults[(op, os.path.normpath(str(path)))] = err

    def _fault(self, op: str, path: str) -> None:
        err = self._faults.pop((op, path), None)
        if err is not None:
            raise fail(err, path)

    # -- cgroups.Files ----------------------------------------------------------------------------
    def read(self, path: str) -> str:
        path = os.path.normpath(path)
        h = self._hierarchy(path)
        if h is None:
            return super().read(path)
        if os.path.isdir(path):
            raise fail(errno.EISDIR, path)
        if not os.path.exists(path):
            raise fail(errno.ENOENT, path)
        if os.path.basename(path) == "cgroup.kill":
            raise fail(errno.EACCES, path)  # write-only
        if self._freezing.get(path):
            self._freezing[path] -= 1
            return "FREEZING\n"
        with open(path) as f:
            text = f.read()
        return text if text.endswith("\n") or not text else text + "\n"

    def write(self, path: str, text: str) -> None:
        path = os.path.normpath(path)
        h = self._hierarchy(path)
        if h is None:
            return super().write(path, text)
        self._fault("write", path)
        if not os.path.isfile(path):
            raise fail(errno.EISDIR if os.path.isdir(path) else errno.ENOENT, path)
        self._permitted("write", path)
        name = os.path.basename(path)
        if name in READ_ONLY:
            raise fail(errno.EACCES, path)
        directory = os.path.dirname(path)
        handler = getattr(self, "_w_" + re.sub(r"[^a-z0-9]", "_", name), None)
        if handler is None:
            self._store(path, text.strip())
        else:
            handler(h, directory, path, text.strip())
        self.log.append(("write", path, text))

    def mkdir(self, path: str) -> None:
        path = os.path.normpath(path)
        h = self._hierarchy(path)
        if h is None:
            return super().mkdir(path)
        self._fault("mkdir", path)
        if os.path.exists(path):
            raise fail(errno.EEXIST, path)
        parent = os.path.dirname(path)
        if not os.path.isfile(os.path.join(parent, "cgroup.procs")):
            raise fail(errno.ENOENT, path)
        self._permitted("mkdir", path)
        os.mkdir(path)
        if h.version == 2:
            enabled = self._words(os.path.join(parent, "cgroup.subtree_control"))
            files = {**V2_CORE, "cgroup.controllers": " ".join(enabled)}
            if h.has_kill:
                files["cgroup.kill"] = ""
            self._make_files(path, files)
            self._enable_files(h, path, enabled)
        else:
            self._make_files(path, self._v1_files(h, root=False, parent=parent))
        self.log.append(("mkdir", path, ""))

    def setxattr(self, path: str, name: str, value: str) -> None:
        path = os.path.normpath(path)
        if self._hierarchy(path) is None:
            return super().setxattr(path, name, value)
        self._fault("setxattr", path)
        if not os.path.isdir(path):
            raise fail(errno.ENOENT, path)
        if self.uid != 0 and name.startswith("trusted."):
            raise fail(errno.EPERM, path)
        self._permitted("write", path)
        self._xattrs[(path, name)] = value
        self.log.append(("setxattr", path, f"{name}={value}"))

    def getxattr(self, path: str, name: str) -> str:
        path = os.path.normpath(path)
        if self._hierarchy(path) is None:
            return super().getxattr(path, name)
        if not os.path.isdir(path):
            raise fail(errno.ENOENT, path)
        if (path, name) not in self._xattrs:
            raise fail(errno.ENODATA, path)
        return self._xattrs[(path, name)]

    def set_attribute(self, path: str, name: str, value: str) -> None:
        """Set an attribute as another program would (not logged as nucleus's doing)."""
        self._xattrs[(os.path.normpath(str(path)), name)] = value

    def rmdir(self, path: str) -> None:
        path = os.path.normpath(path)
        h = self._hierarchy(path)
        if h is None:
            return super().rmdir(path)
        self._fault("rmdir", path)
        if not os.path.isdir(path):
            raise fail(errno.ENOENT if not os.path.exists(path) else errno.ENOTDIR, path)
        if path == h.point:
            raise fail(errno.EBUSY, path)
        self._permitted("rmdir", path)
        if any(os.path.isdir(os.path.join(path, e)) for e in os.listdir(path)):
            raise fail(errno.EBUSY, path)
        if self._pids(path):
            raise fail(errno.EBUSY, path)
        if self._busy.get(path):
            self._busy[path] -= 1
            raise fail(errno.EBUSY, path)
        for entry in os.listdir(path):
            os.unlink(os.path.join(path, entry))
        os.rmdir(path)
        self._xattrs = {k: val for k, val in self._xattrs.items() if k[0] != path}
        self._freezing = {k: n for k, n in self._freezing.items() if not k.startswith(path + "/")}
        self._busy.pop(path, None)
        self.log.append(("rmdir", path, ""))

    def kill(self, pid: int, sig: int) -> None:
        proc = self.procs.get(pid)
        if proc is None or not proc.alive:
            raise ProcessLookupError(errno.ESRCH, os.strerror(errno.ESRCH))
        self.signals.append((pid, sig))
        self._signal(proc, sig)

    def sleep(self, seconds: float) -> None:
        self.clock += seconds

    def monotonic(self) -> float:
        return self.clock

    # -- processes --------------------------------------------------------------------------------
    def _signal(self, proc: Proc, sig: int) -> None:
        if sig != signal.SIGKILL or proc.unkillable:
            return
        if self._frozen(proc.pid):
            proc.pending_kill = True
        else:
            self._die(proc.pid)

    def _die(self, pid: int) -> None:
        proc = self.procs[pid]
        proc.alive = False
        for h in self.hierarchies:
            for directory, _dirs, files in os.walk(h.point):
                if proc.lingers and pid in self._pids(directory):
                    self._busy[directory] = proc.lingers
                for name in ("cgroup.procs", "tasks", "cgroup.threads"):
                    if name in files:
                        self._remove_pid(os.path.join(directory, name), pid)
        self._refresh()

    def _frozen(self, pid: int) -> bool:
        for h in self.hierarchies:
            try:
                directory = self.group_of(pid, h.point)
            except KeyError:
                continue
            while directory.startswith(h.point):
                for name, value in (("freezer.state", "FROZEN"), ("cgroup.freeze", "1")):
                    path = os.path.join(directory, name)
                    if os.path.isfile(path) and self._raw(path) == value:
                        return True
                if directory == h.point:
                    break
                directory = os.path.dirname(directory)
        return False

    def _deliver_pending(self) -> None:
        for proc in list(self.procs.values()):
            if proc.alive and proc.pending_kill and not self._frozen(proc.pid):
                proc.pending_kill = False
                self._die(proc.pid)

    # -- files ------------------------------------------------------------------------------------
    def _hierarchy(self, path: str) -> Hierarchy | None:
        for h in sorted(self.hierarchies, key=lambda h: -len(h.point)):
            if path == h.point or path.startswith(h.point + "/"):
                return h
        return None

    @staticmethod
    def _make_files(directory: str, files: dict[str, str]) -> None:
        for name, value in files.items():
            with open(os.path.join(directory, name), "w") as f:
                f.write(value)

    @staticmethod
    def _raw(path: str) -> str:
        with open(path) as f:
            return f.read().strip()

    def _words(self, path: str) -> list[str]:
        return self._raw(path).split()

    @staticmethod
    def _store(path: str, value: str) -> None:
        with open(path, "w") as f:
            f.write(value)

    def _pids(self, directory: str) -> list[int]:
        path = os.path.join(directory, "cgroup.procs")
        return [int(w) for w in self._words(path)] if os.path.isfile(path) else []

    def _append(self, path: str, pid: int) -> None:
        words = self._words(path)
        if str(pid) not in words:
            words.append(str(pid))
        self._store(path, "\n".join(words))

    def _remove_pid(self, path: str, pid: int) -> None:
        words = self._words(path)
        if str(pid) in words:
            words.remove(str(pid))
            self._store(path, "\n".join(words))

    def _subtree_pids(self, directory: str) -> list[int]:
        out: list[int] = []
        for d, _dirs, files in os.walk(directory):
            if "cgroup.procs" in files:
                out.extend(self._pids(d))
        return out

    def _children(self, directory: str) -> list[str]:
        return sorted(os.path.join(directory, e) for e in os.listdir(directory)
                      if os.path.isdir(os.path.join(directory, e)))

    def _refresh(self) -> None:
        """Recompute the counters the kernel keeps: populated, pids.current."""
        for h in self.hierarchies:
            for directory, _dirs, files in os.walk(h.point):
                count = len(self._subtree_pids(directory))
                if "pids.current" in files:
                    self._store(os.path.join(directory, "pids.current"), str(count))
                if "cgroup.events" in files:
                    path = os.path.join(directory, "cgroup.events")
                    frozen = self._raw(os.path.join(directory, "cgroup.freeze")) == "1"
                    self._store(path, f"populated {int(count > 0)}\nfrozen {int(frozen)}\n")

    def _v1_files(self, h: Hierarchy, root: bool, parent: str | None) -> dict[str, str]:
        files = dict(V1_CORE_ROOT if root else V1_CORE)
        for c in h.controllers:
            if root and c in V1_NOT_ON_ROOT:
                continue
            files.update(V1_FILES.get(c, {}))
            if c == "memory" and h.swap:
                files.update(V1_FILES["memory+swap"])
            if c == "cpuset":
                if root:
                    files.update({"cpuset.cpus": "0-1", "cpuset.mems": "0"})
                elif parent and self._raw(os.path.join(parent, "cgroup.clone_children")) == "1":
                    files.update({k: self._raw(os.path.join(parent, k))
                                  for k in ("cpuset.cpus", "cpuset.mems")})
        return files

    def _enable_files(self, h: Hierarchy, directory: str, controllers) -> None:
        for c in controllers:
            files = dict(V2_FILES.get(c, {}))
            if c == "memory" and h.swap:
                files.update(V2_FILES["memory+swap"])
            self._make_files(directory, files)
            if c == "cpu":
                stat = os.path.join(directory, "cpu.stat")
                self._store(stat, V2_CORE["cpu.stat"] + V2_CPU_STAT_EXTRA)

    def _disable_files(self, h: Hierarchy, directory: str, controllers) -> None:
        for c in controllers:
            files = dict(V2_FILES.get(c, {}))
            if c == "memory":
                files.update(V2_FILES["memory+swap"])
            for name in files:
                path = os.path.join(directory, name)
                if os.path.exists(path):
                    os.unlink(path)
            if c == "cpu":
                self._store(os.path.join(directory, "cpu.stat"), V2_CORE["cpu.stat"])
