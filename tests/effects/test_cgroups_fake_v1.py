"""The cgroup v1 plan carried out on a fake kernel (this machine's hybrid layout): a group in each
hierarchy nucleus uses, the memory limit before memsw, the freezer when removing, the stats."""

from __future__ import annotations

import errno
import os
import signal

import pytest

from nucleus.config.resources import IoLimit, Limits
from nucleus.effects import cgroups, probe
from tests.effects.cgroup_env import V1_USED, MiB, build_hybrid, build_v1
from tests.effects.fake_cgroupfs_rules import PAGE, V1_UNLIMITED

LIMITS = Limits(memory=512 * MiB, cpus=0.2, cpu_weight=100, pids=20,
                io=(IoLimit(8, 0, rbps=10 * MiB, wiops=100),))


def memory_writes(env, mark) -> list[tuple[str, str]]:
    return [(os.path.basename(path), value) for op, path, value in env.since(mark)
            if op == "write" and path.startswith("memory/")]


def test_create_makes_a_group_in_each_used_hierarchy(v1):
    plan = v1.plan()
    assert plan.backend == "v1"
    assert dict(plan.dirs) == {c: str(v1.top / c / "nucleus/c1") for c in V1_USED}
    mark = v1.mark()
    cgroups.create(plan.create)
    # Each parent it makes is marked as nucleus's: the release removes only marked parents.
    assert v1.since(mark) == [
        entry for c in V1_USED
        for entry in (("mkdir", f"{c}/nucleus", ""), ("setxattr", f"{c}/nucleus", "trusted.nucleus.parent=1"))
    ] + [("mkdir", f"{c}/nucleus/c1", "") for c in V1_USED]
    assert v1.groups() == {f"{c}/nucleus{leaf}" for c in V1_USED for leaf in ("", "/c1")}
    assert not (v1.top / "cpuset/nucleus").exists()  # cpuset is never used: no cpus/mems to copy


def test_limits(v1):
    v1.up(limits=LIMITS)
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


def test_the_memory_limit_goes_before_memsw(v1):
    """memsw may never be below the limit: a new group's memsw is unlimited, so the limit is
    written first and memsw (memory + swap) after it."""
    plan = v1.plan(limits=Limits(memory=64 * MiB, swap=16 * MiB))
    cgroups.create(plan.create)
    mark = v1.mark()
    cgroups.write_limits(plan.limits)
    assert memory_writes(v1, mark) == [
        ("memory.limit_in_bytes", str(64 * MiB)),
        ("memory.memsw.limit_in_bytes", str(80 * MiB)),
        ("memory.soft_limit_in_bytes", str(64 * MiB * 9 // 10))]
    assert v1.read("memory/nucleus/c1/memory.memsw.limit_in_bytes") == str(80 * MiB)
    # The other order is what the kernel refuses (EINVAL: memsw below the unlimited limit).
    other = v1.plan("c2", Limits(memory=64 * MiB))
    cgroups.create(other.create)
    memsw, limit = other.limits.writes[1][0], other.limits.writes[0][0]
    with pytest.raises(OSError) as e:
        cgroups.FILES.write(memsw, str(64 * MiB))
    assert e.value.errno == errno.EINVAL
    cgroups.FILES.write(limit, str(64 * MiB))


def test_without_a_memory_limit_memsw_goes_first(v1):
    plan = v1.plan()
    cgroups.create(plan.create)
    mark = v1.mark()
    cgroups.write_limits(plan.limits)
    assert memory_writes(v1, mark) == [
        ("memory.memsw.limit_in_bytes", "-1"), ("memory.limit_in_bytes", "-1"),
        ("memory.soft_limit_in_bytes", "-1")]
    for name in ("limit_in_bytes", "memsw.limit_in_bytes", "soft_limit_in_bytes"):
        assert v1.read(f"memory/nucleus/c1/memory.{name}") == str(V1_UNLIMITED)


def test_without_swap_accounting_memsw_is_skipped(kernel, tmp_path):
    env = build_hybrid(kernel, tmp_path, swap=False)
    plan = env.plan(limits=Limits(memory=64 * MiB))
    assert (plan.limits.writes[1][0].endswith("memory.memsw.limit_in_bytes"),
            plan.limits.writes[1][2]) == (True, True)
    cgroups.create(plan.create)
    mark = env.mark()
    cgroups.write_limits(plan.limits)
    assert memory_writes(env, mark) == [("memory.limit_in_bytes", str(64 * MiB)),
                                        ("memory.soft_limit_in_bytes", str(64 * MiB * 9 // 10))]
    # Unlimited memory: memsw "-1" first is optional too.
    plan = env.plan("c2")
    cgroups.create(plan.create)
    cgroups.write_limits(plan.limits)
    assert env.read("memory/nucleus/c2/memory.limit_in_bytes") == str(V1_UNLIMITED)


def test_swap_asked_for_needs_memsw_to_apply(v1):
    """With swap accounting, a --swap size is not optional: a memsw the kernel refuses fails."""
    plan = v1.plan(limits=Limits(memory=64 * MiB, swap=0), strict=True)
    assert plan.limits.writes[1][1:] == (str(64 * MiB), False)
    cgroups.create(plan.create)
    memsw = plan.limits.writes[1][0]
    os.unlink(memsw)  # as if swap accounting went away after the probe
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.write_limits(plan.limits)
    assert str(e.value) == f"write '67108864' to {memsw}: ENOENT (No such file or directory)"


def test_remove_kills_while_frozen_then_thaws(v1, kernel):
    pids = (kernel.spawn(), kernel.spawn())
    plan = v1.up(pids=pids)
    mark = v1.mark()
    cgroups.remove(plan.remove)
    changes = v1.since(mark)
    state = "freezer/nucleus/c1/freezer.state"
    assert changes[:2] == [("write", state, "FROZEN"), ("write", state, "THAWED")]
    assert changes[2:] == [("rmdir", f"{c}/nucleus/c1", "") for c in V1_USED] + [
        ("rmdir", f"{c}/nucleus", "") for c in V1_USED]
    assert sorted(kernel.signals) == [(p, signal.SIGKILL) for p in pids]
    assert not any(kernel.alive(p) for p in pids)
    assert v1.groups() == set()


def test_remove_without_a_freezer_kills_each_pid(kernel, tmp_path):
    env = build_hybrid(kernel, tmp_path, controllers=("memory", "cpu", "cpuacct", "pids"))
    plan = env.plan()
    assert "freezer" not in dict(plan.dirs) and plan.remove.freeze == ()
    pid = kernel.spawn()
    env.up(pids=(pid,))
    cgroups.remove(plan.remove)
    assert kernel.signals == [(pid, signal.SIGKILL)]
    assert not kernel.alive(pid) and env.groups() == set()


def test_comounted_hierarchies_end_to_end(kernel, tmp_path):
    env = build_v1(kernel, tmp_path)
    pid = kernel.spawn()
    plan = env.up(limits=Limits(cpus=0.5, cpu_weight=100), pids=(pid,))
    assert env.read("cpu,cpuacct/nucleus/c1/cpu.cfs_quota_us") == "50000"
    assert kernel.group_of(pid, str(env.top / "cpu,cpuacct")) == str(
        env.top / "cpu,cpuacct/nucleus/c1")
    assert cgroups.procs(plan.attach.procs) == [pid]
    cgroups.remove(plan.remove)
    assert env.groups() == set() and not kernel.alive(pid)


def test_stats_converts_units(v1):
    plan = v1.up(limits=Limits(memory=64 * MiB, swap=16 * MiB, pids=30))
    mem, cpu, acct = (v1.top / c / "nucleus/c1" for c in ("memory", "cpu", "cpuacct"))
    (mem / "memory.usage_in_bytes").write_text("1048576\n")
    (mem / "memory.memsw.usage_in_bytes").write_text("1572864\n")
    (mem / "memory.max_usage_in_bytes").write_text("4194304\n")
    (acct / "cpuacct.usage").write_text("2500000123\n")
    hz = os.sysconf("SC_CLK_TCK")
    (acct / "cpuacct.stat").write_text(f"user {2 * hz}\nsystem {hz // 2}\n")
    (cpu / "cpu.stat").write_text("nr_periods 10\nnr_throttled 8\nthrottled_time 640000000\n"
                                  "nr_bursts 0\nburst_time 0\n")
    s = probe.cgroup_stats(plan.backend, dict(plan.dirs))
    assert s["memory_current"] == MiB and s["memory_max"] == 64 * MiB
    assert s["memory_peak"] == 4 * MiB
    assert s["swap_current"] == MiB // 2 and s["swap_max"] == 16 * MiB
    assert s["cpu_usage_usec"] == 2500000
    assert s["cpu_user_usec"] == 2_000_000 and s["cpu_system_usec"] == 500_000
    assert (s["cpu_nr_periods"], s["cpu_nr_throttled"], s["cpu_throttled_usec"]) == (
        10, 8, 640000)
    assert s["pids_max"] == 30 and s["oom_kills"] == 0
