"""The cgroup v2 plan carried out on a fake kernel: the subtree_control enabling in nucleus's own
parents, the files and values written, cgroup.kill and the freeze fallback, the stats."""

from __future__ import annotations

import errno
import os
import signal

import pytest

from nucleus.config.resources import IoLimit, Limits
from nucleus.effects import cgroups, probe
from tests.effects.cgroup_env import MiB, build_v2
from tests.effects.fake_cgroupfs_rules import PAGE

ALL = "cpu io memory pids"
LIMITS = Limits(memory=512 * MiB, cpus=0.2, cpu_weight=100, pids=20,
                io=(IoLimit(8, 0, rbps=10 * MiB, wiops=100),))


def test_create_enables_controllers_in_its_own_parents_only(v2):
    root_control = v2.read("cgroup.subtree_control")
    plan = v2.plan(parent="nucleus/agents")
    assert plan.backend == "v2"
    leaf = str(v2.top / "nucleus/agents/c1")
    assert dict(plan.dirs) == {"unified": leaf, "cpu": leaf, "io": leaf, "memory": leaf,
                               "pids": leaf}
    mark = v2.mark()
    cgroups.create(plan.create)
    assert v2.since(mark) == [
        ("mkdir", "nucleus", ""),
        ("setxattr", "nucleus", "trusted.nucleus.parent=1"),
        ("mkdir", "nucleus/agents", ""),
        ("setxattr", "nucleus/agents", "trusted.nucleus.parent=1"),
        ("write", "nucleus/cgroup.subtree_control", "+cpu +io +memory +pids"),
        ("write", "nucleus/agents/cgroup.subtree_control", "+cpu +io +memory +pids"),
        ("mkdir", "nucleus/agents/c1", ""),
    ]
    assert v2.read("cgroup.subtree_control") == root_control
    assert v2.read("nucleus/cgroup.subtree_control") == ALL
    assert v2.read("nucleus/agents/cgroup.subtree_control") == ALL
    assert v2.read("nucleus/agents/c1/cgroup.controllers") == ALL
    assert v2.read("nucleus/agents/c1/cgroup.subtree_control") == ""
    for name in ("memory.max", "memory.swap.max", "cpu.max", "pids.max", "io.max", "cgroup.kill"):
        assert (v2.top / "nucleus/agents/c1" / name).is_file()


def test_a_second_container_enables_again_without_changing_anything(v2, kernel):
    # The old code skipped controllers a parent already enabled; the plan writes the same
    # "+..." again, which the kernel takes as a no-op, even with the first group populated.
    v2.up("c1", parent="nucleus/agents", pids=(kernel.spawn(),))
    mark = v2.mark()
    cgroups.create(v2.plan("c2", parent="nucleus/agents").create)
    assert [(op, path) for op, path, _ in v2.since(mark)] == [
        ("write", "nucleus/cgroup.subtree_control"),
        ("write", "nucleus/agents/cgroup.subtree_control"),
        ("mkdir", "nucleus/agents/c2"),
    ]
    assert v2.read("nucleus/agents/cgroup.subtree_control") == ALL


def test_a_parent_holding_a_process_cannot_enable_and_release_cleans_up(v2, kernel):
    """No internal processes on v2: a pre-existing parent with a process of its own cannot
    enable controllers for its children. The release removes what the failed create made and
    keeps the parent, which is not nucleus's."""
    kernel.mkdir(str(v2.top / "nucleus"))
    squatter = kernel.spawn()
    kernel.write(str(v2.top / "nucleus/cgroup.procs"), str(squatter))
    plan = v2.plan(parent="nucleus/agents")
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.create(plan.create)
    control = v2.top / "nucleus/cgroup.subtree_control"
    assert str(e.value) == (f"write '+cpu +io +memory +pids' to {control}: "
                            "EBUSY (Device or resource busy)")
    assert v2.groups() == {"nucleus", "nucleus/agents"}
    assert cgroups.remove(plan.remove) is False
    assert v2.groups() == {"nucleus"} and kernel.alive(squatter)


def test_limits(v2):
    plan = v2.up(limits=LIMITS)
    d = "nucleus/c1"
    assert v2.read(d, "memory.max") == str(512 * MiB)
    assert v2.read(d, "memory.high") == str(512 * MiB * 9 // 10 // PAGE * PAGE)
    assert v2.read(d, "memory.swap.max") == "0"
    assert v2.read(d, "memory.oom.group") == "1"
    assert v2.read(d, "cpu.max") == "20000 100000"
    assert v2.read(d, "cpu.weight") == "100"
    assert v2.read(d, "pids.max") == "20"
    assert v2.read(d, "io.max") == "8:0 rbps=10485760 wbps=max riops=max wiops=100"
    assert [(os.path.basename(p), optional) for p, _, optional in plan.limits.writes] == [
        ("memory.max", False), ("memory.high", False), ("memory.swap.max", True),
        ("memory.oom.group", True), ("cpu.max", False), ("cpu.weight", False),
        ("pids.max", False), ("io.max", False)]


def test_limits_without_a_memory_limit_and_with_swap(v2):
    v2.up("a")
    assert [v2.read("nucleus/a", f) for f in ("memory.max", "memory.high", "memory.swap.max",
                                               "cpu.max", "pids.max", "cpu.weight")] == [
        "max", "max", "max", "max 100000", "512", "100"]
    plan = v2.up("b", limits=Limits(memory=64 * MiB, swap=32 * MiB))
    assert v2.read("nucleus/b", "memory.swap.max") == str(32 * MiB)
    assert (f"{v2.top}/nucleus/b/memory.swap.max", str(32 * MiB), False) in plan.limits.writes


def test_without_swap_accounting(kernel, tmp_path):
    env = build_v2(kernel, tmp_path, swap=False)
    assert env.layout.swap_accounting is None  # a v2 root does not say; the write does
    plan = env.plan("a", Limits(memory=64 * MiB))
    cgroups.create(plan.create)
    mark = env.mark()
    cgroups.write_limits(plan.limits)  # memory.swap.max is optional without --swap: skipped
    written = [os.path.basename(path) for _, path, _ in env.since(mark)]
    assert "memory.swap.max" not in written and "pids.max" in written
    plan = env.plan("b", Limits(memory=64 * MiB, swap=MiB), strict=True)
    cgroups.create(plan.create)
    with pytest.raises(cgroups.CgroupError) as e:  # --swap asked for must apply
        cgroups.write_limits(plan.limits)
    assert str(e.value) == (f"write '1048576' to {env.top}/nucleus/b/memory.swap.max: "
                            "ENOENT (No such file or directory)")


def test_a_kernel_without_memory_oom_group_skips_it(v2):
    """memory.oom.group is optional (kernels before 4.19 lack it); the writes after it go on."""
    plan = v2.plan(limits=Limits(memory=64 * MiB, pids=30))
    cgroups.create(plan.create)
    os.unlink(v2.top / "nucleus/c1/memory.oom.group")
    mark = v2.mark()
    cgroups.write_limits(plan.limits)
    assert [os.path.basename(path) for _, path, _ in v2.since(mark)] == [
        "memory.max", "memory.high", "memory.swap.max", "cpu.max", "pids.max"]
    assert v2.read("nucleus/c1/pids.max") == "30"


def test_remove_writes_cgroup_kill(v2, kernel):
    pids = (kernel.spawn(), kernel.spawn())
    plan = v2.up(parent="nucleus/agents", pids=pids)
    mark = v2.mark()
    assert cgroups.remove(plan.remove) is False
    assert v2.since(mark) == [
        ("write", "nucleus/agents/c1/cgroup.kill", "1"),
        ("rmdir", "nucleus/agents/c1", ""),
        ("rmdir", "nucleus/agents", ""),
        ("rmdir", "nucleus", ""),
    ]
    assert kernel.signals == []  # the kernel killed them, not a signal per pid
    assert not any(kernel.alive(p) for p in pids)


def test_remove_before_cgroup_kill_freezes_kills_and_thaws(kernel, tmp_path):
    env = build_v2(kernel, tmp_path, has_kill=False)  # kernels before 5.14
    pids = (kernel.spawn(), kernel.spawn())
    plan = env.up(pids=pids)
    assert not (env.top / "nucleus/c1/cgroup.kill").exists()
    mark = env.mark()
    cgroups.remove(plan.remove)
    assert env.since(mark) == [
        ("write", "nucleus/c1/cgroup.freeze", "1"),
        ("write", "nucleus/c1/cgroup.freeze", "0"),
        ("rmdir", "nucleus/c1", ""),
        ("rmdir", "nucleus", ""),
    ]
    assert sorted(kernel.signals) == [(p, signal.SIGKILL) for p in pids]
    assert not any(kernel.alive(p) for p in pids)


def test_stats(v2):
    plan = v2.up(limits=Limits(memory=64 * MiB, cpus=0.5, pids=30))
    d = v2.top / "nucleus/c1"
    (d / "memory.current").write_text("1048576\n")
    (d / "memory.peak").write_text("2097152\n")
    (d / "memory.swap.current").write_text("0\n")
    (d / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n"
                                "nr_periods 12\nnr_throttled 7\nthrottled_usec 3400\n"
                                "nr_bursts 0\nburst_usec 0\n")
    (d / "memory.events").write_text("low 0\nhigh 3\nmax 9\noom 1\noom_kill 1\n")
    assert probe.cgroup_stats(plan.backend, dict(plan.dirs)) == {
        "memory_current": MiB, "memory_max": 64 * MiB,
        "memory_high": 64 * MiB * 9 // 10 // PAGE * PAGE, "memory_peak": 2 * MiB,
        "swap_current": 0, "swap_max": 0,
        "cpu_usage_usec": 1500, "cpu_user_usec": 1000, "cpu_system_usec": 500,
        "cpu_nr_periods": 12, "cpu_nr_throttled": 7, "cpu_throttled_usec": 3400,
        "pids_current": 0, "pids_max": 30, "pids_peak": 0, "oom_kills": 1,
    }


def test_stats_of_a_group_without_the_memory_controller_reads_what_there_is(v2):
    """A group of the v2 hierarchy alone (as on a hybrid host): cpu.stat is in every group."""
    directory = str(v2.top / "g")
    cgroups.FILES.mkdir(directory)
    s = probe.cgroup_stats("v2", {"unified": directory})
    assert s["cpu_usage_usec"] == 0 and s["memory_current"] is None and s["pids_max"] is None
    with pytest.raises(cgroups.CgroupError) as e:
        probe.cgroup_stats("v2", {"unified": str(v2.top / "gone")})
    assert e.value.errno == errno.ENOENT
