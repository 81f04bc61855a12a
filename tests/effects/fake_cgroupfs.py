"""A fake cgroup kernel over plain directories, for the tests of nucleus.effects.cgroups.

:class:`FakeKernel` implements ``cgroups.Files`` (install it with monkeypatch on
``cgroups.FILES``). Hierarchies are real directories under a test's tmp_path, with control files
as real files, so a test can read what was written; every operation on them follows the kernel's
rules rather than plain file semantics:

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

Processes are fake (``spawn``) with pids far above the host's pid_max, and ``kill`` only ever
signals them: a fake kernel never reaches a real process. ``sleep`` advances a fake clock.
"""

from __future__ import annotations

import errno
import os
import re
import signal
from dataclasses import dataclass

from nucleus.effects import cgroups

PAGE = 4096
V1_UNLIMITED = 9223372036854771712
PID_MAX_LIMIT = 4 * 1024 * 1024
FIRST_PID = 50_000_000  # above any pid_max: never a real process

V2_KNOWN = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc")
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
IO_KEYS = ("rbps", "wbps", "riops", "wiops")


def fail(err: int, path: str) -> OSError:
    return OSError(err, os.strerror(err), path)


def escape(path: str) -> str:
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


@dataclass
class Proc:
    pid: int
    alive: bool = True
    pending_kill: bool = False
    unkillable: bool = False  # e.g. stuck in uninterruptible sleep


@dataclass
class Hierarchy:
    point: str
    version: int
    controllers: tuple[str, ...]  # v2: offered at the root; v1: mounted here
    swap: bool = True  # v2 memory.swap.*, v1 memory.memsw.*
    has_kill: bool = True  # cgroup.kill (kernel 5.14+)
    name: str | None = None  # v1 named hierarchy, e.g. systemd


class FakeKernel(cgroups.Files):
    def __init__(self, devices: tuple[tuple[int, int], ...] = ((8, 0), (254, 0))) -> None:
        self.hierarchies: list[Hierarchy] = []
        self.procs: dict[int, Proc] = {}
        self.devices = set(devices)
        self.signals: list[tuple[int, int]] = []  # (pid, signal) sent with kill()
        self.log: list[tuple[str, str, str]] = []  # (op, path, value) of every call that changed state
        self.clock = 0.0
        self._freezing: dict[str, int] = {}
        self._next_pid = FIRST_PID

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

    def spawn(self, unkillable: bool = False) -> int:
        """A new fake process in the root group of every hierarchy."""
        pid = self._next_pid
        self._next_pid += 1
        self.procs[pid] = Proc(pid, unkillable=unkillable)
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
        if not os.path.isfile(path):
            raise fail(errno.EISDIR if os.path.isdir(path) else errno.ENOENT, path)
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
        if os.path.exists(path):
            raise fail(errno.EEXIST, path)
        parent = os.path.dirname(path)
        if not os.path.isfile(os.path.join(parent, "cgroup.procs")):
            raise fail(errno.ENOENT, path)
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

    def rmdir(self, path: str) -> None:
        path = os.path.normpath(path)
        h = self._hierarchy(path)
        if h is None:
            return super().rmdir(path)
        if not os.path.isdir(path):
            raise fail(errno.ENOENT if not os.path.exists(path) else errno.ENOTDIR, path)
        if path == h.point:
            raise fail(errno.EBUSY, path)
        if any(os.path.isdir(os.path.join(path, e)) for e in os.listdir(path)):
            raise fail(errno.EBUSY, path)
        if self._pids(path):
            raise fail(errno.EBUSY, path)
        for entry in os.listdir(path):
            os.unlink(os.path.join(path, entry))
        os.rmdir(path)
        self._freezing = {k: n for k, n in self._freezing.items() if not k.startswith(path + "/")}
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
        self.procs[pid].alive = False
        for h in self.hierarchies:
            for directory, _dirs, files in os.walk(h.point):
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

    # -- value parsing ----------------------------------------------------------------------------
    @staticmethod
    def _int(text: str, path: str) -> int:
        if not re.fullmatch(r"[+-]?\d+", text):
            raise fail(errno.EINVAL, path)
        return int(text)

    @staticmethod
    def _memparse(text: str, path: str, allow_max: bool) -> int | str:
        if allow_max and text == "max":
            return "max"
        m = re.fullmatch(r"(\d+)([kKmMgGtTpPeE]?)", text)
        if m is None:
            raise fail(errno.EINVAL, path)
        shift = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}[m.group(2).lower()]
        value = int(m.group(1)) << shift
        if value >= V1_UNLIMITED:
            return "max" if allow_max else V1_UNLIMITED
        return value // PAGE * PAGE

    # -- v2 and shared handlers -------------------------------------------------------------------
    def _w_cgroup_subtree_control(self, h, directory, path, text):
        enable, disable = set(), set()
        for token in text.split():
            sign, name = token[:1], token[1:]
            if sign not in "+-" or not sign or name not in V2_KNOWN:
                raise fail(errno.EINVAL, path)
            (enable if sign == "+" else disable).add(name)
            (disable if sign == "+" else enable).discard(name)
        available = self._words(os.path.join(directory, "cgroup.controllers"))
        if enable - set(available):
            raise fail(errno.ENOENT, path)
        current = set(self._words(path))
        if enable - current and directory != h.point and self._pids(directory):
            raise fail(errno.EBUSY, path)
        for child in self._children(directory):
            if disable & set(self._words(os.path.join(child, "cgroup.subtree_control"))):
                raise fail(errno.EBUSY, path)
        new = [c for c in V2_KNOWN if c in (current | enable) - disable]
        self._store(path, " ".join(new))
        for child in self._children(directory):
            self._store(os.path.join(child, "cgroup.controllers"), " ".join(new))
            self._enable_files(h, child, [c for c in new if c not in current])
            self._disable_files(h, child, [c for c in current if c not in new])

    def _w_cgroup_procs(self, h, directory, path, text):
        pid = self._int(text, path)
        if not self.alive(pid):
            raise fail(errno.ESRCH, path)
        if h.version == 2 and directory != h.point and self._words(
                os.path.join(directory, "cgroup.subtree_control")):
            raise fail(errno.EBUSY, path)
        if h.version == 1 and "cpuset" in h.controllers and directory != h.point and not (
                self._raw(os.path.join(directory, "cpuset.cpus"))
                and self._raw(os.path.join(directory, "cpuset.mems"))):
            raise fail(errno.ENOSPC, path)
        for d, _dirs, files in os.walk(h.point):
            for name in ("cgroup.procs", "tasks", "cgroup.threads"):
                if name in files:
                    self._remove_pid(os.path.join(d, name), pid)
        self._append(path, pid)
        if h.version == 1:
            self._append(os.path.join(directory, "tasks"), pid)
        self._refresh()

    _w_tasks = _w_cgroup_procs

    def _w_cgroup_kill(self, h, directory, path, text):
        if self._int(text, path) != 1:
            raise fail(errno.ERANGE, path)
        for pid in self._subtree_pids(directory):
            self._signal(self.procs[pid], signal.SIGKILL)

    def _w_cgroup_freeze(self, h, directory, path, text):
        value = self._int(text, path)
        if value not in (0, 1):
            raise fail(errno.ERANGE, path)
        self._store(path, str(value))
        self._refresh()
        if value == 0:
            self._deliver_pending()

    def _w_memory_max(self, h, directory, path, text):
        self._store(path, str(self._memparse(text, path, allow_max=True)))

    _w_memory_high = _w_memory_low = _w_memory_min = _w_memory_max
    _w_memory_swap_max = _w_memory_swap_high = _w_memory_max

    def _w_memory_oom_group(self, h, directory, path, text):
        if self._int(text, path) not in (0, 1):
            raise fail(errno.EINVAL, path)
        self._store(path, text)

    def _w_cpu_max(self, h, directory, path, text):
        words = text.split()
        if len(words) not in (1, 2):
            raise fail(errno.EINVAL, path)
        period = (self._int(words[1], path) if len(words) == 2
                  else int(self._words(path)[1]))
        quota = words[0] if words[0] == "max" else self._int(words[0], path)
        if not 1000 <= period <= 1_000_000 or (quota != "max" and quota < 1000):
            raise fail(errno.EINVAL, path)
        self._store(path, f"{quota} {period}")

    def _w_cpu_weight(self, h, directory, path, text):
        if not 1 <= self._int(text, path) <= 10_000:
            raise fail(errno.ERANGE, path)
        self._store(path, text)

    def _w_pids_max(self, h, directory, path, text):
        if text != "max" and not 0 <= self._int(text, path) <= PID_MAX_LIMIT:
            raise fail(errno.EINVAL, path)
        self._store(path, text)

    def _device(self, text: str, path: str) -> str:
        m = re.fullmatch(r"(\d+):(\d+)", text)
        if m is None:
            raise fail(errno.EINVAL, path)
        if (int(m.group(1)), int(m.group(2))) not in self.devices:
            raise fail(errno.ENODEV, path)
        return text

    def _w_io_max(self, h, directory, path, text):
        words = text.split()
        if not words:
            raise fail(errno.EINVAL, path)
        device = self._device(words[0], path)
        rules = {}
        for line in self._raw(path).splitlines():
            dev, *pairs = line.split()
            rules[dev] = dict(p.split("=") for p in pairs)
        rule = rules.setdefault(device, dict.fromkeys(IO_KEYS, "max"))
        for word in words[1:]:
            key, sep, value = word.partition("=")
            if not sep or key not in IO_KEYS or (value != "max" and not value.isdigit()):
                raise fail(errno.EINVAL, path)
            rule[key] = value
        lines = [f"{dev} " + " ".join(f"{k}={r[k]}" for k in IO_KEYS)
                 for dev, r in sorted(rules.items()) if any(v != "max" for v in r.values())]
        self._store(path, "\n".join(lines))

    # -- v1 handlers ------------------------------------------------------------------------------
    def _v1_size(self, h, directory, path, text) -> int:
        if directory == h.point:
            raise fail(errno.EINVAL, path)  # no limits on the root
        if text == "-1":
            return V1_UNLIMITED
        value = self._memparse(text, path, allow_max=False)
        assert isinstance(value, int)
        return value

    def _w_memory_limit_in_bytes(self, h, directory, path, text):
        value = self._v1_size(h, directory, path, text)
        memsw = os.path.join(directory, "memory.memsw.limit_in_bytes")
        if os.path.isfile(memsw) and value > int(self._raw(memsw)):
            raise fail(errno.EINVAL, path)
        self._store(path, str(value))

    def _w_memory_memsw_limit_in_bytes(self, h, directory, path, text):
        value = self._v1_size(h, directory, path, text)
        if value < int(self._raw(os.path.join(directory, "memory.limit_in_bytes"))):
            raise fail(errno.EINVAL, path)
        self._store(path, str(value))

    def _w_memory_soft_limit_in_bytes(self, h, directory, path, text):
        self._store(path, str(self._v1_size(h, directory, path, text)))

    def _w_memory_oom_control(self, h, directory, path, text):
        value = self._int(text, path)
        if value not in (0, 1):
            raise fail(errno.EINVAL, path)
        lines = self._raw(path).splitlines()
        lines[0] = f"oom_kill_disable {value}"
        self._store(path, "\n".join(lines))

    def _w_cpu_cfs_quota_us(self, h, directory, path, text):
        value = self._int(text, path)
        if value < 0:
            value = -1
        elif value < 1000:
            raise fail(errno.EINVAL, path)
        self._store(path, str(value))

    def _w_cpu_cfs_period_us(self, h, directory, path, text):
        if not 1000 <= self._int(text, path) <= 1_000_000:
            raise fail(errno.EINVAL, path)
        self._store(path, text)

    def _w_cpu_shares(self, h, directory, path, text):
        value = self._int(text, path)
        if value < 0:
            raise fail(errno.EINVAL, path)
        self._store(path, str(min(max(value, 2), 262144)))

    def _w_cpuacct_usage(self, h, directory, path, text):
        if self._int(text, path) != 0:
            raise fail(errno.EINVAL, path)
        self._store(path, "0")

    def _throttle(self, h, directory, path, text):
        words = text.split()
        if len(words) != 2:
            raise fail(errno.EINVAL, path)
        device = self._device(words[0], path)
        value = self._int(words[1], path)
        if value < 0:
            raise fail(errno.EINVAL, path)
        rules = dict(line.split() for line in self._raw(path).splitlines())
        rules.pop(device, None)
        if value:
            rules[device] = str(value)
        self._store(path, "\n".join(f"{d} {v}" for d, v in sorted(rules.items())))

    _w_blkio_throttle_read_bps_device = _w_blkio_throttle_write_bps_device = _throttle
    _w_blkio_throttle_read_iops_device = _w_blkio_throttle_write_iops_device = _throttle

    def _w_freezer_state(self, h, directory, path, text):
        if text not in ("FROZEN", "THAWED"):
            raise fail(errno.EINVAL, path)
        self._store(path, text)
        if text == "FROZEN":
            self._freezing[path] = 1
        else:
            self._freezing.pop(path, None)
            self._deliver_pending()
