"""The cgroup effects against fake cgroup v2 and v1 trees that follow the kernel's rules."""

from __future__ import annotations

import errno
import os
import pickle
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest

from nucleus.config.resources import IoLimit, Limits
from nucleus.effects import cgroups
from tests.effects.fake_cgroupfs import PAGE, V1_UNLIMITED, FakeKernel

MiB = 1 << 20
V1_MACHINE = ("memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "freezer", "devices")


@dataclass
class Env:
    kernel: FakeKernel
    top: Path  # the fake /sys/fs/cgroup
    mountinfo: str

    @property
    def host(self) -> cgroups.Host:
        return cgroups.detect(self.mountinfo, root=str(self.top))

    def read(self, *parts: str) -> str:
        return (self.top.joinpath(*parts)).read_text()

    def groups(self) -> set[str]:
        """Every group below a hierarchy root (relative to the fake /sys/fs/cgroup)."""
        roots = {h.point for h in self.kernel.hierarchies}
        return {os.path.relpath(d, self.top) for d, _s, _f in os.walk(self.top)
                if d not in roots and os.path.isfile(os.path.join(d, "cgroup.procs"))}


def build_v2(kernel: FakeKernel, tmp: Path, **kw) -> Env:
    top = tmp / "sys" / "fs" / "cgroup"
    kernel.mount_v2(top, **kw)
    return Env(kernel, top, kernel.mountinfo(tmp / "mountinfo"))


def build_hybrid(kernel: FakeKernel, tmp: Path, swap: bool = True,
                 controllers=V1_MACHINE) -> Env:
    """This machine's layout: v1 controllers, a systemd named hierarchy, and a cgroup2 mount
    at unified that offers no resource controller."""
    top = tmp / "sys" / "fs" / "cgroup"
    for c in controllers:
        kernel.mount_v1(top / c, (c,), swap=swap)
    kernel.mount_v1(top / "systemd", (), name="systemd")
    kernel.mount_v2(top / "unified", offered=("hugetlb",), enabled=())
    return Env(kernel, top, kernel.mountinfo(tmp / "mountinfo"))


def build_v1(kernel: FakeKernel, tmp: Path) -> Env:
    """Pure v1 with cpu and cpuacct co-mounted, as many distributions did."""
    top = tmp / "sys" / "fs" / "cgroup"
    kernel.mount_v1(top / "cpu,cpuacct", ("cpu", "cpuacct"))
    for c in ("memory", "pids", "blkio", "freezer"):
        kernel.mount_v1(top / c, (c,))
    return Env(kernel, top, kernel.mountinfo(tmp / "mountinfo"))


@pytest.fixture
def kernel(monkeypatch) -> FakeKernel:
    fake = FakeKernel()
    monkeypatch.setattr(cgroups, "FILES", fake)
    return fake


@pytest.fixture(params=["v2", "v1"])
def env(request, kernel, tmp_path) -> Env:
    return build_v2(kernel, tmp_path) if request.param == "v2" else build_hybrid(kernel, tmp_path)


@pytest.fixture
def v2(kernel, tmp_path) -> Env:
    return build_v2(kernel, tmp_path)


@pytest.fixture
def v1(kernel, tmp_path) -> Env:
    return build_hybrid(kernel, tmp_path)


# --- detection ----------------------------------------------------------------------------------


def test_detect_pure_v2(v2):
    host = v2.host
    assert host.backend == "v2"
    assert host.mounts == {"unified": str(v2.top)}
    assert host.controllers == {"cpu", "io", "memory", "pids"}
    assert host.unified == str(v2.top)
    assert host.reason == f"cgroup2 at {v2.top} offers cpu cpuset hugetlb io memory misc pids rdma"


def test_detect_hybrid_picks_v1_with_mounts_from_mountinfo(v1):
    host = v1.host
    assert host.backend == "v1"
    assert host.mounts == {c: str(v1.top / c)
                           for c in ("memory", "cpu", "cpuacct", "pids", "blkio", "freezer")}
    assert "cpuset" not in host.mounts and "devices" not in host.mounts
    assert host.unified == str(v1.top / "unified")
    assert host.reason == (f"cgroup v1 hierarchies for blkio cpu cpuacct freezer memory pids; "
                           f"cgroup2 at {v1.top / 'unified'} offers hugetlb")


def test_detect_pure_v1_with_comounted_cpu_and_cpuacct(kernel, tmp_path):
    env = build_v1(kernel, tmp_path)
    host = env.host
    assert host.backend == "v1"
    assert host.mounts["cpu"] == host.mounts["cpuacct"] == str(env.top / "cpu,cpuacct")
    assert host.unified is None
    assert host.reason.endswith("; no cgroup2 mount")
    cg = cgroups.create(host, "nucleus", "c1")
    assert cg.dirs["cpu"] == cg.dirs["cpuacct"] == str(env.top / "cpu,cpuacct/nucleus/c1")
    assert len(cg.directories()) == 5  # one directory for the co-mounted pair


def test_detect_v2_lacking_pids_and_no_v1_is_none(kernel, tmp_path):
    env = build_v2(kernel, tmp_path, offered=("cpu", "memory", "io"), enabled=("cpu", "memory"))
    host = env.host
    assert host.backend == "none"
    assert host.reason == (f"no cgroup v1 hierarchy for cpu, memory, pids in {env.mountinfo}; "
                           f"cgroup2 at {env.top} offers cpu io memory")
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.create(host, "nucleus", "c1")
    assert e.value.errno == errno.EOPNOTSUPP
    assert str(e.value) == f"create nucleus/c1: ENOTSUP (Operation not supported): {host.reason}"


def test_detect_v1_missing_a_required_controller(kernel, tmp_path):
    env = build_hybrid(kernel, tmp_path, controllers=("memory", "cpu", "cpuacct"))
    host = env.host
    assert host.backend == "none"
    assert host.reason.startswith(f"no cgroup v1 hierarchy for pids in {env.mountinfo}; ")


def test_detect_uses_io_only_when_the_root_enables_it(kernel, tmp_path):
    env = build_v2(kernel, tmp_path, enabled=("cpu", "memory", "pids"))
    assert env.host.controllers == {"cpu", "memory", "pids"}


def test_detect_reads_escaped_mount_points(kernel, tmp_path):
    top = tmp_path / "sys" / "fs" / "cgroup v2"
    kernel.mount_v2(top)
    mountinfo = kernel.mountinfo(tmp_path / "mountinfo")
    assert "cgroup\\040v2" in Path(mountinfo).read_text()
    host = cgroups.detect(mountinfo, root=str(top))
    assert host.backend == "v2" and host.mounts["unified"] == str(top)


def test_detect_prefers_mounts_under_root(kernel, tmp_path):
    elsewhere = kernel.mount_v2(tmp_path / "elsewhere" / "cgroup")
    top = tmp_path / "sys" / "fs" / "cgroup"
    kernel.mount_v2(top)
    mountinfo = kernel.mountinfo(tmp_path / "mountinfo")
    assert cgroups.detect(mountinfo, root=str(top)).mounts["unified"] == str(top)
    assert cgroups.detect(mountinfo, root=elsewhere).mounts["unified"] == elsewhere


def test_detect_ignores_a_hierarchy_hidden_by_a_later_mount(kernel, tmp_path):
    top = tmp_path / "sys" / "fs" / "cgroup"
    kernel.mount_v2(top)
    mountinfo = kernel.mountinfo(
        tmp_path / "mountinfo", extra=f"90 31 0:90 / {top} rw,relatime - tmpfs tmpfs rw\n")
    host = cgroups.detect(mountinfo, root=str(top))
    assert host.backend == "none" and host.unified is None


def test_detect_ignores_hierarchies_below_a_later_mount(kernel, tmp_path):
    env = build_hybrid(kernel, tmp_path)
    assert env.host.backend == "v1"
    with open(env.mountinfo, "a") as f:  # a tmpfs over /sys/fs/cgroup hides them all
        f.write(f"91 31 0:91 / {env.top} rw,relatime - tmpfs tmpfs rw\n")
    assert env.host.backend == "none"


def test_detect_names_an_unreadable_mountinfo(kernel, tmp_path):
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.detect(str(tmp_path / "nope"))
    assert str(e.value) == f"read {tmp_path / 'nope'}: ENOENT (No such file or directory)"


# --- the fake follows the kernel's rules -------------------------------------------------------


def test_fake_v2_controller_files_follow_the_parents_subtree_control(v2, kernel):
    kernel.mkdir(str(v2.top / "a"))
    kernel.mkdir(str(v2.top / "a" / "b"))
    assert not (v2.top / "a/b/memory.max").exists()
    assert v2.read("a/b/cgroup.controllers") == ""
    with pytest.raises(FileNotFoundError):
        kernel.write(str(v2.top / "a/b/memory.max"), "1G")
    with pytest.raises(OSError) as e:
        kernel.write(str(v2.top / "a/cgroup.subtree_control"), "+rdma")
    assert e.value.errno == errno.ENOENT  # not enabled by the root: not available in a
    with pytest.raises(OSError) as e:
        kernel.write(str(v2.top / "a/cgroup.subtree_control"), "+bogus")
    assert e.value.errno == errno.EINVAL
    kernel.write(str(v2.top / "a/cgroup.subtree_control"), "+memory +pids")
    assert v2.read("a/b/cgroup.controllers") == "memory pids"
    kernel.write(str(v2.top / "a/b/memory.max"), "1000000")
    assert v2.read("a/b/memory.max") == str(1000000 // PAGE * PAGE)
    pid = kernel.spawn()
    with pytest.raises(OSError) as e:
        kernel.write(str(v2.top / "a/cgroup.procs"), str(pid))
    assert e.value.errno == errno.EBUSY  # no internal processes
    kernel.write(str(v2.top / "a/b/cgroup.procs"), str(pid))
    with pytest.raises(OSError) as e:
        kernel.rmdir(str(v2.top / "a/b"))
    assert e.value.errno == errno.EBUSY
    assert not (v2.top / "cgroup.kill").exists() and (v2.top / "a/b/cgroup.kill").exists()
    with pytest.raises(PermissionError):
        kernel.write(str(v2.top / "a/b/memory.current"), "0")


def test_fake_v1_rules(v1, kernel):
    mem = v1.top / "memory" / "g"
    kernel.mkdir(str(mem))
    with pytest.raises(OSError) as e:
        kernel.write(str(mem / "memory.memsw.limit_in_bytes"), "1000000")
    assert e.value.errno == errno.EINVAL  # below the (unlimited) limit
    with pytest.raises(OSError) as e:
        kernel.write(str(v1.top / "memory" / "memory.limit_in_bytes"), "1G")
    assert e.value.errno == errno.EINVAL  # the root takes no limit
    kernel.mkdir(str(v1.top / "cpuset" / "g"))
    with pytest.raises(OSError) as e:
        kernel.write(str(v1.top / "cpuset/g/cgroup.procs"), str(kernel.spawn()))
    assert e.value.errno == errno.ENOSPC  # no cpus/mems copied from the parent


# --- create -------------------------------------------------------------------------------------


def test_create_v2_enables_controllers_in_its_own_parents_only(v2, kernel):
    root_control = v2.read("cgroup.subtree_control")
    cg = cgroups.create(v2.host, "nucleus/agents", "c1")
    leaf = str(v2.top / "nucleus/agents/c1")
    assert cg.backend == "v2" and cg.path == leaf
    assert set(cg.dirs) == {"unified", "cpu", "io", "memory", "pids"}
    assert set(cg.dirs.values()) == {leaf}
    assert v2.read("cgroup.subtree_control") == root_control
    assert v2.read("nucleus/cgroup.subtree_control") == "cpu io memory pids"
    assert v2.read("nucleus/agents/cgroup.subtree_control") == "cpu io memory pids"
    assert v2.read("nucleus/agents/c1/cgroup.controllers") == "cpu io memory pids"
    assert v2.read("nucleus/agents/c1/cgroup.subtree_control") == ""
    for name in ("memory.max", "memory.swap.max", "cpu.max", "pids.max", "io.max", "cgroup.kill"):
        assert (v2.top / "nucleus/agents/c1" / name).is_file()
    # A second container reuses the parents without writing their subtree_control again.
    writes = len(kernel.log)
    cgroups.create(v2.host, "nucleus/agents", "c2")
    assert [op for op, *_ in kernel.log[writes:]] == ["mkdir"]


def test_create_v2_refuses_when_the_root_does_not_enable_a_controller(kernel, tmp_path):
    env = build_v2(kernel, tmp_path, enabled=("cpu", "pids"))
    control = env.top / "cgroup.subtree_control"
    host = env.host
    host = cgroups.Host("v2", host.mounts, frozenset({"cpu", "memory", "pids"}), host.unified)
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.create(host, "nucleus", "c1")
    assert str(e.value) == (
        f"check {control}: ENOTSUP (Operation not supported): memory not enabled for the "
        f"root's children; enable them on the host with: echo '+memory' > {control}")
    assert control.read_text() == "cpu pids"
    assert env.groups() == set()


def test_create_v1_makes_a_group_in_each_used_hierarchy(v1):
    cg = cgroups.create(v1.host, "nucleus", "c1")
    assert cg.backend == "v1"
    assert cg.dirs == {c: str(v1.top / c / "nucleus/c1")
                       for c in ("memory", "cpu", "cpuacct", "pids", "blkio", "freezer")}
    assert cg.path == str(v1.top / "memory/nucleus/c1")
    assert v1.groups() == {f"{c}/nucleus{leaf}" for c in cg.dirs for leaf in ("", "/c1")}


def test_create_refuses_an_existing_group(env):
    cgroups.create(env.host, "nucleus", "c1")
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.create(env.host, "nucleus", "c1")
    assert e.value.errno == errno.EEXIST
    assert str(e.value).startswith(f"mkdir {env.top}/") and str(e.value).endswith(
        "/nucleus/c1: EEXIST (File exists)")


@pytest.mark.parametrize("parent, name", [("", "c"), ("..", "c"), ("a//b", "c"), ("a", "x/y")])
def test_create_refuses_paths_outside_the_parent(env, parent, name):
    with pytest.raises(ValueError):
        cgroups.create(env.host, parent, name)
    assert env.groups() == set()


# --- set_limits ---------------------------------------------------------------------------------


LIMITS = Limits(memory=512 * MiB, cpus=0.2, cpu_weight=100, pids=20,
                io=(IoLimit(8, 0, rbps=10 * MiB, wiops=100),))


def test_set_limits_v2(v2):
    cg = cgroups.create(v2.host, "nucleus", "c1")
    written = cgroups.set_limits(cg, LIMITS)
    d = "nucleus/c1"
    assert v2.read(d, "memory.max") == str(512 * MiB)
    assert v2.read(d, "memory.high") == str(512 * MiB * 9 // 10 // PAGE * PAGE)
    assert v2.read(d, "memory.swap.max") == "0"
    assert v2.read(d, "memory.oom.group") == "1"
    assert v2.read(d, "cpu.max") == "20000 100000"
    assert v2.read(d, "cpu.weight") == "100"
    assert v2.read(d, "pids.max") == "20"
    assert v2.read(d, "io.max") == "8:0 rbps=10485760 wbps=max riops=max wiops=100"
    assert [os.path.basename(p) for p, _ in written] == [
        "memory.max", "memory.high", "memory.swap.max", "memory.oom.group", "cpu.max",
        "cpu.weight", "pids.max", "io.max"]


def test_set_limits_v2_without_memory_limit_and_with_swap(v2):
    cg = cgroups.create(v2.host, "nucleus", "c1")
    cgroups.set_limits(cg, Limits())
    d = "nucleus/c1"
    assert [v2.read(d, f) for f in ("memory.max", "memory.high", "memory.swap.max", "cpu.max",
                                    "pids.max", "cpu.weight")] == [
        "max", "max", "max", "max 100000", "512", "100"]
    cgroups.set_limits(cg, Limits(memory=64 * MiB, swap=32 * MiB))
    assert v2.read(d, "memory.swap.max") == str(32 * MiB)


def test_set_limits_v2_without_swap_accounting(kernel, tmp_path):
    env = build_v2(kernel, tmp_path, swap=False)
    cg = cgroups.create(env.host, "nucleus", "c1")
    written = cgroups.set_limits(cg, Limits(memory=64 * MiB))
    assert "memory.swap.max" not in {os.path.basename(p) for p, _ in written}
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.set_limits(cg, Limits(memory=64 * MiB, swap=MiB))
    assert str(e.value) == (f"write '1048576' to {cg.path}/memory.swap.max: "
                            "ENOENT (No such file or directory)")


def test_set_limits_v2_io_needs_the_io_controller(kernel, tmp_path):
    env = build_v2(kernel, tmp_path, enabled=("cpu", "memory", "pids"))
    cg = cgroups.create(env.host, "nucleus", "c1")
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.set_limits(cg, LIMITS)
    assert str(e.value) == (f"open {cg.path}/io.max: ENOENT (No such file or directory): "
                            "the group has no io controller")


def test_set_limits_v1(v1):
    cg = cgroups.create(v1.host, "nucleus", "c1")
    cgroups.set_limits(cg, LIMITS)
    assert v1.read("memory/nucleus/c1/memory.limit_in_bytes") == str(512 * MiB)
    assert v1.read("memory/nucleus/c1/memory.memsw.limit_in_bytes") == str(512 * MiB)
    assert v1.read("memory/nucleus/c1/memory.soft_limit_in_bytes") == str(
        512 * MiB * 9 // 10 // PAGE * PAGE)
    assert v1.read("cpu/nucleus/c1/cpu.cfs_period_us") == "100000"
    assert v1.read("cpu/nucleus/c1/cpu.cfs_quota_us") == "20000"
    assert v1.read("cpu/nucleus/c1/cpu.shares") == str(2 + (99 * 262142) // 9999)
    assert v1.read("pids/nucleus/c1/pids.max") == "20"
    assert v1.read("blkio/nucleus/c1/blkio.throttle.read_bps_device") == "8:0 10485760"
    assert v1.read("blkio/nucleus/c1/blkio.throttle.write_iops_device") == "8:0 100"
    assert v1.read("blkio/nucleus/c1/blkio.throttle.write_bps_device") == ""
    assert not (v1.top / "cpuset/nucleus").exists()


def test_set_limits_v1_memory_up_and_down_keeps_memsw_above_the_limit(v1):
    cg = cgroups.create(v1.host, "nucleus", "c1")
    for memory, swap in ((MiB * 64, None), (MiB * 256, MiB * 64), (MiB * 32, None), (None, None)):
        cgroups.set_limits(cg, Limits(memory=memory, swap=swap))
        limit = int(v1.read("memory/nucleus/c1/memory.limit_in_bytes"))
        memsw = int(v1.read("memory/nucleus/c1/memory.memsw.limit_in_bytes"))
        assert limit == (memory or V1_UNLIMITED)
        assert memsw == (memory + (swap or 0) if memory else V1_UNLIMITED)


def test_set_limits_v1_without_swap_accounting(kernel, tmp_path):
    env = build_hybrid(kernel, tmp_path, swap=False)
    cg = cgroups.create(env.host, "nucleus", "c1")
    cgroups.set_limits(cg, Limits(memory=64 * MiB))
    assert env.read("memory/nucleus/c1/memory.limit_in_bytes") == str(64 * MiB)
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.set_limits(cg, Limits(memory=64 * MiB, swap=0))
    assert str(e.value) == (f"write '67108864' to {cg.path}/memory.memsw.limit_in_bytes: "
                            "ENOENT (No such file or directory): swap accounting is off on "
                            "this host")


def test_set_limits_errors_name_file_value_and_errno(env):
    cg = cgroups.create(env.host, "nucleus", "c1")
    pids = os.path.join(cg.dirs["pids"], "pids.max")
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.set_limits(cg, Limits(pids=-5))
    assert str(e.value) == f"write '-5' to {pids}: EINVAL (Invalid argument)"
    assert (e.value.errno, e.value.path, e.value.value) == (errno.EINVAL, pids, "-5")
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.set_limits(cg, Limits(io=(IoLimit(9, 9, rbps=1),)))
    assert e.value.errno == errno.ENODEV
    assert str(e.value).endswith(" to " + e.value.path + ": ENODEV (No such device)")
    assert "'9:9 " in str(e.value)


# --- attach and procs ---------------------------------------------------------------------------


def test_attach_moves_the_process_in_every_hierarchy(env, kernel):
    cg = cgroups.create(env.host, "nucleus", "c1")
    pid, other = kernel.spawn(), kernel.spawn()
    cgroups.attach(cg, pid)
    for directory in set(cg.dirs.values()):
        assert kernel.group_of(pid, os.path.dirname(os.path.dirname(directory))) == directory
    assert cgroups.procs(cg) == [pid]
    assert other not in cgroups.procs(cg)
    for h in kernel.hierarchies:  # hierarchies nucleus does not use keep it at their root
        if not any(d.startswith(h.point + "/") for d in cg.dirs.values()):
            assert kernel.group_of(pid, h.point) == h.point


def test_attach_refuses_pid_1(env, kernel):
    cg = cgroups.create(env.host, "nucleus", "c1")
    before = len(kernel.log)
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.attach(cg, 1)
    assert str(e.value) == (f"write '1' to {cg.path}/cgroup.procs: EINVAL (Invalid argument): "
                            "pid 1 and the kernel's threads are never moved")
    assert kernel.log[before:] == []


def test_attach_a_process_that_is_gone(env, kernel):
    cg = cgroups.create(env.host, "nucleus", "c1")
    pid = kernel.spawn()
    kernel.exit(pid)
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.attach(cg, pid)
    assert e.value.errno == errno.ESRCH and f"write '{pid}' to " in str(e.value)


# --- stats and oom ------------------------------------------------------------------------------


def test_stats_of_a_fresh_group(env, kernel):
    cg = cgroups.create(env.host, "nucleus", "c1")
    cgroups.attach(cg, kernel.spawn())
    s = cgroups.stats(cg)
    assert s["memory_current"] == 0 and s["memory_max"] is None
    assert s["pids_current"] == 1 and s["pids_max"] is None
    assert s["cpu_usage_usec"] == 0 and s["cpu_nr_throttled"] == 0
    assert s["oom_kills"] == 0


def test_stats_v2(v2):
    cg = cgroups.create(v2.host, "nucleus", "c1")
    cgroups.set_limits(cg, Limits(memory=64 * MiB, cpus=0.5, pids=30))
    d = v2.top / "nucleus/c1"
    (d / "memory.current").write_text("1048576\n")
    (d / "memory.peak").write_text("2097152\n")
    (d / "memory.swap.current").write_text("0\n")
    (d / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n"
                                "nr_periods 12\nnr_throttled 7\nthrottled_usec 3400\n"
                                "nr_bursts 0\nburst_usec 0\n")
    (d / "memory.events").write_text("low 0\nhigh 3\nmax 9\noom 1\noom_kill 1\n")
    assert cgroups.stats(cg) == {
        "memory_current": MiB, "memory_max": 64 * MiB,
        "memory_high": 64 * MiB * 9 // 10 // PAGE * PAGE, "memory_peak": 2 * MiB,
        "swap_current": 0, "swap_max": 0,
        "cpu_usage_usec": 1500, "cpu_user_usec": 1000, "cpu_system_usec": 500,
        "cpu_nr_periods": 12, "cpu_nr_throttled": 7, "cpu_throttled_usec": 3400,
        "pids_current": 0, "pids_max": 30, "pids_peak": 0, "oom_kills": 1,
    }


def test_stats_v1_converts_units(v1):
    cg = cgroups.create(v1.host, "nucleus", "c1")
    cgroups.set_limits(cg, Limits(memory=64 * MiB, swap=16 * MiB, pids=30))
    mem, cpu, acct = (v1.top / c / "nucleus/c1" for c in ("memory", "cpu", "cpuacct"))
    (mem / "memory.usage_in_bytes").write_text("1048576\n")
    (mem / "memory.memsw.usage_in_bytes").write_text("1572864\n")
    (mem / "memory.max_usage_in_bytes").write_text("4194304\n")
    (acct / "cpuacct.usage").write_text("2500000123\n")
    hz = os.sysconf("SC_CLK_TCK")
    (acct / "cpuacct.stat").write_text(f"user {2 * hz}\nsystem {hz // 2}\n")
    (cpu / "cpu.stat").write_text("nr_periods 10\nnr_throttled 8\nthrottled_time 640000000\n"
                                  "nr_bursts 0\nburst_time 0\n")
    s = cgroups.stats(cg)
    assert s["memory_current"] == MiB and s["memory_max"] == 64 * MiB
    assert s["memory_peak"] == 4 * MiB
    assert s["swap_current"] == MiB // 2 and s["swap_max"] == 16 * MiB
    assert s["cpu_usage_usec"] == 2500000
    assert s["cpu_user_usec"] == 2_000_000 and s["cpu_system_usec"] == 500_000
    assert (s["cpu_nr_periods"], s["cpu_nr_throttled"], s["cpu_throttled_usec"]) == (
        10, 8, 640000)
    assert s["pids_max"] == 30


def test_oom_killed(env):
    cg = cgroups.create(env.host, "nucleus", "c1")
    assert cgroups.oom_killed(cg) is False
    if cg.backend == "v2":
        path = Path(cg.dirs["memory"], "memory.events")
        path.write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 1\n")
    else:
        path = Path(cg.dirs["memory"], "memory.oom_control")
        path.write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    assert cgroups.oom_killed(cg) is True


# --- kill_all -----------------------------------------------------------------------------------


def test_kill_all_kills_the_group_and_nothing_else(env, kernel):
    cg = cgroups.create(env.host, "nucleus", "c1")
    members = [kernel.spawn() for _ in range(3)]
    outsider = kernel.spawn()
    for pid in members:
        cgroups.attach(cg, pid)
    cgroups.kill_all(cg)
    assert [kernel.alive(p) for p in members] == [False] * 3
    assert kernel.alive(outsider)
    assert cgroups.procs(cg) == []
    assert outsider not in [pid for pid, _ in kernel.signals]


def test_kill_all_v2_writes_cgroup_kill(v2, kernel):
    cg = cgroups.create(v2.host, "nucleus", "c1")
    cgroups.attach(cg, kernel.spawn())
    before = len(kernel.log)
    cgroups.kill_all(cg)
    assert kernel.log[before:] == [("write", f"{cg.path}/cgroup.kill", "1")]
    assert kernel.signals == []


def test_kill_all_v2_before_cgroup_kill_freezes_kills_and_thaws(kernel, tmp_path):
    env = build_v2(kernel, tmp_path, has_kill=False)
    cg = cgroups.create(env.host, "nucleus", "c1")
    pids = [kernel.spawn(), kernel.spawn()]
    for pid in pids:
        cgroups.attach(cg, pid)
    cgroups.kill_all(cg)
    writes = [(os.path.basename(p), v) for op, p, v in kernel.log if op == "write"]
    assert writes[-2:] == [("cgroup.freeze", "1"), ("cgroup.freeze", "0")]
    assert sorted(kernel.signals) == [(p, signal.SIGKILL) for p in pids]
    assert not any(kernel.alive(p) for p in pids)
    assert env.read("nucleus/c1/cgroup.freeze") == "0"


def test_kill_all_v1_kills_while_frozen_then_thaws(v1, kernel):
    cg = cgroups.create(v1.host, "nucleus", "c1")
    pids = [kernel.spawn(), kernel.spawn()]
    for pid in pids:
        cgroups.attach(cg, pid)
    cgroups.kill_all(cg)
    state = f"{cg.dirs['freezer']}/freezer.state"
    writes = [(p, v) for op, p, v in kernel.log if op == "write" and p == state]
    assert writes == [(state, "FROZEN"), (state, "THAWED")]
    assert sorted(kernel.signals) == [(p, signal.SIGKILL) for p in pids]
    assert not any(kernel.alive(p) for p in pids)
    assert v1.read("freezer/nucleus/c1/freezer.state") == "THAWED"


def test_kill_all_v1_without_a_freezer(kernel, tmp_path):
    env = build_hybrid(kernel, tmp_path, controllers=("memory", "cpu", "cpuacct", "pids"))
    cg = cgroups.create(env.host, "nucleus", "c1")
    assert "freezer" not in cg.dirs
    pid = kernel.spawn()
    cgroups.attach(cg, pid)
    cgroups.kill_all(cg)
    assert not kernel.alive(pid) and cgroups.procs(cg) == []


def test_kill_all_gives_up_after_the_timeout(env, kernel):
    cg = cgroups.create(env.host, "nucleus", "c1")
    stuck = kernel.spawn(unkillable=True)
    cgroups.attach(cg, stuck)
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.kill_all(cg, timeout=2.0)
    assert str(e.value) == (f"wait for {cg.path}/cgroup.procs: EBUSY (Device or resource busy): "
                            f"pids {stuck} still there after 2s")
    assert 2.0 <= kernel.clock < 2.1
    if "freezer" in cg.dirs:
        assert env.read("freezer/nucleus/c1/freezer.state") == "THAWED"


def test_kill_all_of_an_empty_or_removed_group(env, kernel):
    cg = cgroups.create(env.host, "nucleus", "c1")
    cgroups.kill_all(cg)
    cgroups.remove(cg)
    cgroups.kill_all(cg)
    assert kernel.signals == []


# --- remove and find_existing -------------------------------------------------------------------


def test_remove_leaves_nothing(env, kernel):
    host = env.host
    cg = cgroups.create(host, "nucleus/agents", "c1")
    cgroups.set_limits(cg, LIMITS)
    cgroups.attach(cg, kernel.spawn())
    cgroups.kill_all(cg)
    assert sorted(cgroups.remove(cg)) == sorted(set(cg.dirs.values()))
    assert cgroups.remove(cg) == []  # already gone
    assert all(g.endswith(("nucleus", "nucleus/agents")) for g in env.groups())
    removed = cgroups.remove_parent(host, "nucleus/agents")
    assert len(removed) == 2 * len({os.path.dirname(d) for d in cg.dirs.values()})
    assert env.groups() == set()


def test_remove_parent_keeps_a_parent_in_use(env):
    host = env.host
    a = cgroups.create(host, "nucleus", "a")
    cgroups.create(host, "nucleus", "b")
    cgroups.remove(a)
    assert cgroups.remove_parent(host, "nucleus") == []
    groups = env.groups()
    assert any(g.endswith("nucleus/b") for g in groups)
    assert all(g.endswith(("nucleus", "nucleus/b")) for g in groups)


def test_remove_a_populated_group_retries_then_names_it(env, kernel):
    cg = cgroups.create(env.host, "nucleus", "c1")
    cgroups.attach(cg, kernel.spawn())
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.remove(cg, retries=3)
    assert e.value.errno == errno.EBUSY
    assert str(e.value) == f"rmdir {e.value.path}: EBUSY (Device or resource busy)"
    assert e.value.path in cg.dirs.values()
    assert kernel.clock == pytest.approx(3 * cgroups.RMDIR_DELAY)


def test_find_existing_rebuilds_the_handle_for_cleanup(env):
    host = env.host
    assert cgroups.find_existing(host, "nucleus", "c1") is None
    cg = cgroups.create(host, "nucleus", "c1")
    assert cgroups.find_existing(host, "nucleus", "c1") == cg
    if cg.backend == "v1":  # as after a crash half-way through create
        gone = cg.dirs["pids"]
        cgroups.FILES.rmdir(gone)
        cg = cgroups.find_existing(host, "nucleus", "c1")
        assert cg is not None and set(cg.dirs) == {"memory", "cpu", "cpuacct", "blkio", "freezer"}
    cgroups.remove(cg)
    assert cgroups.find_existing(host, "nucleus", "c1") is None


def test_errors_survive_pickling():
    e = cgroups.CgroupError("write", "/x/memory.max", errno.EINVAL, value="12")
    back = pickle.loads(pickle.dumps(e))
    assert str(back) == str(e) == "write '12' to /x/memory.max: EINVAL (Invalid argument)"
    assert back.errno == errno.EINVAL and isinstance(back, OSError)
