"""The fake cgroup kernel's rules for the value written to each control file (see
fake_cgroupfs.py): a handler named ``_w_<file name>`` (dots and dashes as underscores) parses and
checks the value as the kernel does, and stores it or changes the tree. FakeKernel.write calls it
with the hierarchy, the group's directory, the file's path and the stripped text; a file without
a handler stores the text as written.
"""

from __future__ import annotations

import errno
import os
import re
import signal

PAGE = 4096
V1_UNLIMITED = 9223372036854771712
PID_MAX_LIMIT = 4 * 1024 * 1024
V2_KNOWN = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc")
IO_KEYS = ("rbps", "wbps", "riops", "wiops")


def fail(err: int, path: str) -> OSError:
    return OSError(err, os.strerror(err), path)


class ControlFileRules:
    """Mixed into FakeKernel, whose tree helpers (_raw, _store, _words, _pids, _children,
    _enable_files, _signal, ...) the handlers use."""

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
        if self.uid != 0 and not self._in_delegation(self.group_of(pid, h.point)):
            raise fail(errno.EACCES, path)  # the common ancestor's cgroup.procs is not the caller's
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
            if pid in self.procs:  # only fake processes: never one a test wrote in a file
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
