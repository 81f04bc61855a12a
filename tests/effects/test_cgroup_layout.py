"""The probe's cgroup layout (nucleus.effects.probe.cgroup_layout) read from fake mountinfo and
fake hierarchies, what the pure plan refuses on such hosts, and the fake kernel's own rules."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from nucleus.config.resources import IoLimit, Limits
from nucleus.effects import cgroups, probe
from nucleus.errors import InvalidInput
from nucleus.facts import UNIFIED, CgroupLayout
from tests.effects.cgroup_env import V1_USED, MiB, build_hybrid, build_v1, build_v2
from tests.effects.fake_cgroupfs_rules import PAGE

# --- the probe ----------------------------------------------------------------------------------


def test_pure_v2(v2, kernel):
    top = str(v2.top)
    assert v2.layout == CgroupLayout(
        backend="v2", mounts=((UNIFIED, top),), controllers=("cpu", "io", "memory", "pids"),
        root_enabled=("cpu", "io", "memory", "pids"), swap_accounting=None, unified=top,
        reason=f"cgroup2 at {top} offers cpu cpuset hugetlb io memory misc pids rdma")
    assert kernel.log == []  # the probe only reads


def test_hybrid_picks_v1_with_mounts_from_mountinfo(v1, kernel):
    layout = v1.layout
    assert layout.backend == "v1"
    assert layout.mounts == tuple((c, str(v1.top / c)) for c in V1_USED)
    assert layout.controllers == V1_USED  # not cpuset, devices or the systemd named hierarchy
    assert layout.mount("memory") == str(v1.top / "memory")
    assert layout.root_enabled == ()
    assert layout.swap_accounting is True  # memory.memsw.limit_in_bytes at the memory root
    assert layout.unified == str(v1.top / "unified")
    assert layout.reason == (f"cgroup v1 hierarchies for blkio cpu cpuacct freezer memory pids; "
                             f"cgroup2 at {v1.top / 'unified'} offers hugetlb")
    assert kernel.log == []


def test_hybrid_without_swap_accounting(kernel, tmp_path):
    env = build_hybrid(kernel, tmp_path, swap=False)
    assert (env.layout.backend, env.layout.swap_accounting) == ("v1", False)


def test_pure_v1_with_comounted_cpu_and_cpuacct(kernel, tmp_path):
    env = build_v1(kernel, tmp_path)
    layout = env.layout
    assert layout.backend == "v1"
    assert layout.mount("cpu") == layout.mount("cpuacct") == str(env.top / "cpu,cpuacct")
    assert layout.unified is None
    assert layout.reason.endswith("; no cgroup2 mount")
    plan = env.plan()
    dirs = dict(plan.dirs)
    assert dirs["cpu"] == dirs["cpuacct"] == str(env.top / "cpu,cpuacct/nucleus/c1")
    assert len(plan.create.dirs) == len(plan.attach.procs) == 5  # one group for the pair


def test_v2_lacking_pids_and_no_v1_is_none(kernel, tmp_path):
    env = build_v2(kernel, tmp_path, offered=("cpu", "memory", "io"), enabled=("cpu", "memory"))
    layout = env.layout
    assert (layout.backend, layout.mounts, layout.controllers) == ("none", (), ())
    assert layout.unified == str(env.top)
    assert layout.reason == (f"no cgroup v1 hierarchy for cpu, memory, pids in {env.mountinfo}; "
                             f"cgroup2 at {env.top} offers cpu io memory")


def test_v1_missing_a_required_controller(kernel, tmp_path):
    env = build_hybrid(kernel, tmp_path, controllers=("memory", "cpu", "cpuacct"))
    layout = env.layout
    assert layout.backend == "none"
    assert layout.reason.startswith(f"no cgroup v1 hierarchy for pids in {env.mountinfo}; ")


def test_io_is_used_only_when_the_root_enables_it(kernel, tmp_path):
    env = build_v2(kernel, tmp_path, enabled=("cpu", "memory", "pids"))
    assert env.layout.controllers == env.layout.root_enabled == ("cpu", "memory", "pids")


def test_root_enabled_is_what_the_root_enables(kernel, tmp_path):
    env = build_v2(kernel, tmp_path, enabled=("cpu", "pids"))
    layout = env.layout
    assert layout.backend == "v2"  # offered is enough to pick v2; the plan then refuses
    assert layout.controllers == ("cpu", "memory", "pids")
    assert layout.root_enabled == ("cpu", "pids")


def test_reads_escaped_mount_points(kernel, tmp_path):
    top = tmp_path / "sys" / "fs" / "cgroup v2"
    kernel.mount_v2(top)
    mountinfo = kernel.mountinfo(tmp_path / "mountinfo")
    assert "cgroup\\040v2" in Path(mountinfo).read_text()
    layout = probe.cgroup_layout(mountinfo, root=str(top))
    assert layout.backend == "v2" and layout.mount(UNIFIED) == str(top)


def test_prefers_mounts_under_root(kernel, tmp_path):
    elsewhere = kernel.mount_v2(tmp_path / "elsewhere" / "cgroup")
    top = tmp_path / "sys" / "fs" / "cgroup"
    kernel.mount_v2(top)
    mountinfo = kernel.mountinfo(tmp_path / "mountinfo")
    assert probe.cgroup_layout(mountinfo, root=str(top)).mount(UNIFIED) == str(top)
    assert probe.cgroup_layout(mountinfo, root=elsewhere).mount(UNIFIED) == elsewhere


def test_ignores_a_hierarchy_hidden_by_a_later_mount(kernel, tmp_path):
    top = tmp_path / "sys" / "fs" / "cgroup"
    kernel.mount_v2(top)
    mountinfo = kernel.mountinfo(
        tmp_path / "mountinfo", extra=f"90 31 0:90 / {top} rw,relatime - tmpfs tmpfs rw\n")
    layout = probe.cgroup_layout(mountinfo, root=str(top))
    assert layout.backend == "none" and layout.unified is None
    assert layout.reason.endswith("; no cgroup2 mount")


def test_ignores_hierarchies_below_a_later_mount(kernel, tmp_path):
    env = build_hybrid(kernel, tmp_path)
    assert env.layout.backend == "v1"
    with open(env.mountinfo, "a") as f:  # a tmpfs over /sys/fs/cgroup hides them all
        f.write(f"91 31 0:91 / {env.top} rw,relatime - tmpfs tmpfs rw\n")
    assert (env.layout.backend, env.layout.unified) == ("none", None)


def test_a_missing_mountinfo_is_no_backend_with_the_reason(kernel, tmp_path):
    # Was a CgroupError from cgroups.detect; the probe now reports it as a fact.
    missing = str(tmp_path / "nope")
    assert probe.cgroup_layout(missing) == CgroupLayout(reason=f"{missing} is missing")


# --- what the plan refuses, and where it never goes ---------------------------------------------


def test_plan_on_a_host_without_cgroups_fails_at_create_touching_nothing(kernel, tmp_path):
    env = build_v2(kernel, tmp_path, offered=("cpu", "memory", "io"), enabled=("cpu", "memory"))
    plan = env.plan()
    assert plan.backend == "none" and plan.dirs == ()
    assert plan.create.unavailable == f"no usable cgroup hierarchy: {env.layout.reason}"
    mark = env.mark()
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.create(plan.create)
    assert e.value.errno == errno.EOPNOTSUPP
    assert str(e.value) == ("create cgroup: ENOTSUP (Operation not supported): "
                            f"no usable cgroup hierarchy: {env.layout.reason}")
    assert cgroups.remove(plan.remove) is False  # the release that follows has nothing to do
    assert env.since(mark) == [] and env.groups() == set()


def test_plan_v2_refuses_when_the_root_does_not_enable_a_controller(kernel, tmp_path):
    env = build_v2(kernel, tmp_path, enabled=("cpu", "pids"))
    control = env.top / "cgroup.subtree_control"
    plan = env.plan()
    assert plan.create.unavailable == (
        f"memory not enabled for the children of {env.top}; enable them on the host with: "
        f"echo '+memory' > {control}")
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.create(plan.create)
    assert str(e.value).endswith(f"(Operation not supported): {plan.create.unavailable}")
    cgroups.remove(plan.remove)
    assert control.read_text() == "cpu pids"  # nucleus never writes the root's files
    assert kernel.log == [] and env.groups() == set()


def test_plan_refuses_swap_without_swap_accounting(kernel, tmp_path):
    env = build_hybrid(kernel, tmp_path, swap=False)
    with pytest.raises(InvalidInput) as e:
        env.plan(limits=Limits(memory=64 * MiB, swap=0))
    assert str(e.value) == ("--swap 0: swap accounting is off on this host, so swap cannot be "
                            "limited")
    assert e.value.hint == "boot with swapaccount=1 (cgroup v1), or drop --swap (no swap is allowed then)"


@pytest.mark.parametrize("host", ["v2 without io", "v1 without blkio"])
def test_plan_refuses_io_limits_without_the_controller(kernel, tmp_path, host):
    if host == "v2 without io":
        env = build_v2(kernel, tmp_path, enabled=("cpu", "memory", "pids"))
        message = f"--io-limit 8:0: the io controller is not available under {env.top}"
    else:
        env = build_hybrid(kernel, tmp_path, controllers=("memory", "cpu", "cpuacct", "pids"))
        message = "--io-limit 8:0: this host has no blkio hierarchy"
    with pytest.raises(InvalidInput) as e:
        env.plan(limits=Limits(io=(IoLimit(8, 0, rbps=MiB),)))
    assert str(e.value) == message and e.value.hint.endswith("or drop --io-limit")


@pytest.mark.parametrize("parent, name", [("", "c"), ("..", "c"), ("a//b", "c"), ("a/./b", "c"),
                                          ("a", "x/y"), ("a", ".."), ("a", "")])
def test_plan_refuses_paths_outside_the_parent(env, parent, name):
    with pytest.raises(ValueError, match="not a cgroup path below a hierarchy root"):
        env.plan(name, parent=parent)


def test_plan_writes_only_below_the_parent(env):
    plan = env.plan(limits=Limits(memory=64 * MiB, cpus=1, cpu_weight=10, pids=9))
    below = {f"{point}/nucleus" for _, point in env.layout.mounts}
    touched = [*plan.create.parents, *(path for path, _ in plan.create.enable), *plan.create.dirs,
               *(path for path, _, _ in plan.limits.writes), *plan.attach.procs,
               *plan.remove.procs, plan.remove.kill, *plan.remove.freeze[::3],
               plan.remove.oom[0], *plan.remove.dirs, *plan.remove.parents]
    outside = [p for p in touched
               if p and not any(p == b or p.startswith(b + "/") for b in below)]
    assert outside == [] and len(touched) > 10


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


def test_fake_lingering_exit_and_injected_faults(v2, kernel):
    kernel.mkdir(str(v2.top / "g"))
    pid = kernel.spawn(lingers=2)
    kernel.write(str(v2.top / "g/cgroup.procs"), str(pid))
    kernel.exit(pid)
    assert v2.read("g/cgroup.procs") == ""
    for _ in range(2):
        with pytest.raises(OSError) as e:
            kernel.rmdir(str(v2.top / "g"))
        assert e.value.errno == errno.EBUSY
    kernel.fail_next("rmdir", v2.top / "g", errno.EIO)
    with pytest.raises(OSError) as e:
        kernel.rmdir(str(v2.top / "g"))
    assert e.value.errno == errno.EIO
    kernel.rmdir(str(v2.top / "g"))
    assert v2.groups() == set()
