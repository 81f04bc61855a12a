"""The cgroup plan (nucleus.plan.cgroups): from the limits asked for and the layout the probe
found, every directory made, every file written with its value and in its order, the files
that take the setup process's pid, and how the group is emptied and removed, on cgroup v2 and
v1; and the limits a host cannot honour as asked, refused before anything happens."""

from __future__ import annotations

import pytest

from nucleus import vocab as v
from nucleus.config.resources import Limits, validate_limits
from nucleus.errors import InvalidInput
from nucleus.facts import UNIFIED, CgroupLayout
from nucleus.plan.cgroups import PARENT_MARK, CgroupPlan, plan

ROOT = "/sys/fs/cgroup"
V2 = CgroupLayout("v2", ((UNIFIED, ROOT),), ("cpu", "io", "memory", "pids"), ("cpu", "io", "memory", "pids"),
                  None, ROOT, "cgroup2 at /sys/fs/cgroup offers cpu io memory pids")
V2_NO_IO = CgroupLayout("v2", ((UNIFIED, ROOT),), ("cpu", "memory", "pids"), ("cpu", "memory", "pids"), None, ROOT)
CPU = f"{ROOT}/cpu,cpuacct"
V1_MOUNTS = (("blkio", f"{ROOT}/blkio"), ("cpu", CPU), ("cpuacct", CPU), ("freezer", f"{ROOT}/freezer"),
             ("memory", f"{ROOT}/memory"), ("pids", f"{ROOT}/pids"))
V1 = CgroupLayout("v1", V1_MOUNTS, tuple(c for c, _ in V1_MOUNTS), swap_accounting=True, unified=f"{ROOT}/unified")
V1_BARE = CgroupLayout("v1", (("cpu", CPU), ("memory", f"{ROOT}/memory"), ("pids", f"{ROOT}/pids")),
                       ("cpu", "memory", "pids"), swap_accounting=False)
MIB = 1 << 20
DIR = f"{ROOT}/nucleus/c1"


def limits(**flags) -> Limits:
    """The limits as the command line gives them (--memory 512M, --io-limit "8:0 rbps=10M")."""
    return validate_limits(**flags)


def writes(p: CgroupPlan) -> list[tuple[str, str, bool]]:
    return list(p.limits.writes)


def values(p: CgroupPlan) -> dict[str, str]:
    """file name (relative to the container's directory) -> value."""
    return {path.split("/c1/", 1)[1]: value for path, value, _ in p.limits.writes}


def optional(p: CgroupPlan) -> set[str]:
    return {path.split("/c1/", 1)[1] for path, _, opt in p.limits.writes if opt}


# ---------------------------------------------------------------------------------------------
# cgroup v2


def test_v2_without_limits_writes_every_file_unlimited_in_order():
    p = plan(V2, "nucleus", "c1", limits())
    assert p.backend == "v2"
    assert writes(p) == [
        (f"{DIR}/memory.max", "max", False),
        (f"{DIR}/memory.high", "max", False),
        (f"{DIR}/memory.swap.max", "max", True),  # no swap accounting: nothing to write
        (f"{DIR}/memory.oom.group", "1", True),  # kernels before 4.19 lack it
        (f"{DIR}/cpu.max", "max 100000", False),
        (f"{DIR}/pids.max", "512", False),
    ]


def test_v2_memory_sets_the_limit_the_reclaim_point_and_no_swap():
    p = plan(V2, "nucleus", "c1", limits(memory="512M"))
    assert values(p)["memory.max"] == str(512 * MIB)
    assert values(p)["memory.high"] == str(512 * MIB * 90 // 100) == "483183820"
    assert values(p)["memory.swap.max"] == "0" and "memory.swap.max" in optional(p)
    assert values(plan(V2, "nucleus", "c1", limits(memory="1G", memory_high="768M")))["memory.high"] == str(768 * MIB)


def test_v2_swap_asked_for_must_apply():
    p = plan(V2, "nucleus", "c1", limits(memory="512M", swap="256M"))
    assert (f"{DIR}/memory.swap.max", str(256 * MIB), False) in writes(p)
    assert "memory.swap.max" not in optional(p)


@pytest.mark.parametrize("cpus,value", [("1.5", "150000 100000"), ("0.01", "1000 100000"), ("4", "400000 100000")])
def test_v2_cpus_is_a_quota_per_period(cpus, value):
    assert values(plan(V2, "nucleus", "c1", limits(cpus=cpus)))["cpu.max"] == value


def test_v2_cpu_weight_and_pids():
    p = plan(V2, "nucleus", "c1", limits(cpu_weight=200, pids=64))
    names = [path.rsplit("/", 1)[1] for path, _, _ in writes(p)]
    assert names.index("cpu.max") < names.index("cpu.weight") < names.index("pids.max")
    assert (values(p)["cpu.weight"], values(p)["pids.max"]) == ("200", "64")
    assert "cpu.weight" not in values(plan(V2, "nucleus", "c1", limits()))


def test_v2_io_limits_one_line_per_device_last():
    p = plan(V2, "nucleus", "c1", limits(io=["8:0 rbps=10M wiops=100", "8:16 riops=5 wbps=1K"]))
    assert writes(p)[-2:] == [
        (f"{DIR}/io.max", "8:0 rbps=10485760 wiops=100", False),
        (f"{DIR}/io.max", "8:16 wbps=1024 riops=5", False),
    ]


def test_v2_every_flag_together():
    p = plan(V2, "nucleus", "c1", limits(memory="1G", swap="512M", cpus="2", cpu_weight=50, pids=100,
                                        io=["259:0 wbps=1M"]))
    assert [(path.rsplit("/", 1)[1], value, opt) for path, value, opt in writes(p)] == [
        ("memory.max", str(1024 * MIB), False),
        ("memory.high", str(1024 * MIB * 9 // 10), False),
        ("memory.swap.max", str(512 * MIB), False),
        ("memory.oom.group", "1", True),
        ("cpu.max", "200000 100000", False),
        ("cpu.weight", "50", False),
        ("pids.max", "100", False),
        ("io.max", "259:0 wbps=1048576", False),
    ]


def test_v2_group_creation_enables_the_controllers_in_each_parent():
    p = plan(V2, "nucleus/agents", "c1", limits())
    directory = f"{ROOT}/nucleus/agents/c1"
    assert p.create == v.CreateCgroup(
        parents=(f"{ROOT}/nucleus", f"{ROOT}/nucleus/agents"),
        enable=((f"{ROOT}/nucleus/cgroup.subtree_control", "+cpu +io +memory +pids"),
                (f"{ROOT}/nucleus/agents/cgroup.subtree_control", "+cpu +io +memory +pids")),
        dirs=(directory,), mark=PARENT_MARK,
    )
    # The hierarchy root's own files are never written: only read by the probe.
    assert all(not path.startswith(f"{ROOT}/cgroup.") for path, _ in p.create.enable)
    assert all(path.startswith(directory + "/") for path, _, _ in writes(p))
    assert p.attach == v.AttachCgroup((f"{directory}/cgroup.procs",))
    assert p.dirs == ((UNIFIED, directory), ("cpu", directory), ("io", directory), ("memory", directory),
                      ("pids", directory))


def test_v2_removal_kills_freezes_notes_oom_and_removes_deepest_first():
    p = plan(V2, "a/b/c", "c1", limits())
    directory = f"{ROOT}/a/b/c/c1"
    assert p.remove == v.RemoveCgroup(
        procs=(f"{directory}/cgroup.procs",),
        kill=f"{directory}/cgroup.kill",
        freeze=(f"{directory}/cgroup.freeze", "1", "0", f"{directory}/cgroup.events", "frozen 1"),
        oom=(f"{directory}/memory.events", "oom_kill"),
        dirs=(directory,),
        parents=(f"{ROOT}/a/b/c", f"{ROOT}/a/b", f"{ROOT}/a"),
        mark=PARENT_MARK,
        peak=f"{directory}/memory.peak",  # read for the OOM message before the group goes
    )
    assert p.create.parents == (f"{ROOT}/a", f"{ROOT}/a/b", f"{ROOT}/a/b/c")  # made shallowest first


def test_v2_root_not_enabling_the_controllers_makes_creation_unavailable():
    layout = CgroupLayout("v2", ((UNIFIED, ROOT),), ("cpu", "memory", "pids"), ("cpu",), None, ROOT)
    p = plan(layout, "nucleus", "c1", limits(memory="512M"))
    assert p.create == v.CreateCgroup(unavailable=(
        "memory pids not enabled for the children of /sys/fs/cgroup; enable them on the host with: "
        "echo '+memory +pids' > /sys/fs/cgroup/cgroup.subtree_control"))
    assert (p.create.parents, p.create.enable, p.create.dirs) == ((), (), ())
    # What else is planned is unchanged (the resources machine never issues it: creation fails).
    assert values(p)["memory.max"] == str(512 * MIB)


def test_v2_swap_refused_without_swap_accounting():
    layout = CgroupLayout("v2", ((UNIFIED, ROOT),), ("cpu", "memory", "pids"), ("cpu", "memory", "pids"), False, ROOT)
    with pytest.raises(InvalidInput, match=r"--swap 268435456: swap accounting is off on this host") as e:
        plan(layout, "nucleus", "c1", limits(memory="512M", swap="256M"))
    assert e.value.hint == "boot with swapaccount=1 (cgroup v1), or drop --swap (no swap is allowed then)"
    plan(layout, "nucleus", "c1", limits(memory="512M"))  # no --swap: no swap, nothing refused


def test_v2_io_limit_refused_without_the_io_controller():
    with pytest.raises(InvalidInput, match=r"--io-limit 8:0: the io controller is not available under /sys/fs/cgroup") as e:
        plan(V2_NO_IO, "nucleus", "c1", limits(io=["8:0 rbps=1M"]))
    assert "drop --io-limit" in e.value.hint
    p = plan(V2_NO_IO, "nucleus", "c1", limits())
    assert p.create.enable == ((f"{ROOT}/nucleus/cgroup.subtree_control", "+cpu +memory +pids"),)


# ---------------------------------------------------------------------------------------------
# cgroup v1


def v1_dir(controller: str) -> str:
    return f"{dict(V1_MOUNTS)[controller]}/nucleus/c1"


def test_v1_without_limits_unlimits_memsw_before_the_limit():
    p = plan(V1, "nucleus", "c1", limits())
    memory, cpu, pids = v1_dir("memory"), v1_dir("cpu"), v1_dir("pids")
    assert writes(p) == [
        (f"{memory}/memory.memsw.limit_in_bytes", "-1", True),  # never below the limit: first
        (f"{memory}/memory.limit_in_bytes", "-1", False),
        (f"{memory}/memory.soft_limit_in_bytes", "-1", False),
        (f"{cpu}/cpu.cfs_period_us", "100000", False),
        (f"{cpu}/cpu.cfs_quota_us", "-1", False),
        (f"{pids}/pids.max", "512", False),
    ]


def test_v1_memory_limit_before_memsw():
    memory = v1_dir("memory")
    p = plan(V1, "nucleus", "c1", limits(memory="512M"))
    assert writes(p)[:3] == [
        (f"{memory}/memory.limit_in_bytes", str(512 * MIB), False),
        (f"{memory}/memory.memsw.limit_in_bytes", str(512 * MIB), True),  # no swap on top
        (f"{memory}/memory.soft_limit_in_bytes", "483183820", False),
    ]
    p = plan(V1, "nucleus", "c1", limits(memory="512M", swap="256M"))
    assert writes(p)[:2] == [
        (f"{memory}/memory.limit_in_bytes", str(512 * MIB), False),
        (f"{memory}/memory.memsw.limit_in_bytes", str(768 * MIB), False),  # asked for: must apply
    ]


@pytest.mark.parametrize("weight,shares", [(1, "2"), (100, "2597"), (10000, "262144")])
def test_v1_cpus_and_cpu_weight_as_cfs_quota_and_shares(weight, shares):
    cpu = v1_dir("cpu")
    p = plan(V1, "nucleus", "c1", limits(cpus="1.5", cpu_weight=weight, pids=64))
    assert writes(p)[3:] == [
        (f"{cpu}/cpu.cfs_period_us", "100000", False),
        (f"{cpu}/cpu.cfs_quota_us", "150000", False),
        (f"{cpu}/cpu.shares", shares, False),
        (f"{v1_dir('pids')}/pids.max", "64", False),
    ]


def test_v1_io_limits_one_throttle_file_per_key():
    blkio = v1_dir("blkio")
    p = plan(V1, "nucleus", "c1", limits(io=["8:0 riops=5 rbps=10M wiops=100 wbps=1M", "8:16 wbps=2K"]))
    assert writes(p)[-5:] == [
        (f"{blkio}/blkio.throttle.read_bps_device", "8:0 10485760", False),
        (f"{blkio}/blkio.throttle.write_bps_device", "8:0 1048576", False),
        (f"{blkio}/blkio.throttle.read_iops_device", "8:0 5", False),
        (f"{blkio}/blkio.throttle.write_iops_device", "8:0 100", False),
        (f"{blkio}/blkio.throttle.write_bps_device", "8:16 2048", False),
    ]


def test_v1_one_group_per_hierarchy():
    p = plan(V1, "nucleus", "c1", limits())
    own = (f"{ROOT}/blkio/nucleus/c1", f"{CPU}/nucleus/c1", f"{ROOT}/freezer/nucleus/c1",
           f"{ROOT}/memory/nucleus/c1", f"{ROOT}/pids/nucleus/c1")
    assert p.backend == "v1"
    assert p.create == v.CreateCgroup(parents=tuple(d.rsplit("/", 1)[0] for d in own), dirs=own,
                                      mark=PARENT_MARK)
    assert p.create.enable == () and p.create.unavailable == ""  # v1 has no subtree_control
    assert p.attach == v.AttachCgroup(tuple(f"{d}/cgroup.procs" for d in own))
    assert dict(p.dirs) == {c: f"{point}/nucleus/c1" for c, point in V1_MOUNTS}
    assert p.remove == v.RemoveCgroup(
        procs=p.attach.procs, kill="",
        freeze=(f"{ROOT}/freezer/nucleus/c1/freezer.state", "FROZEN", "THAWED",
                f"{ROOT}/freezer/nucleus/c1/freezer.state", "FROZEN"),
        oom=(f"{ROOT}/memory/nucleus/c1/memory.oom_control", "oom_kill"),
        dirs=own, parents=tuple(d.rsplit("/", 1)[0] for d in own), mark=PARENT_MARK,
        peak=f"{ROOT}/memory/nucleus/c1/memory.max_usage_in_bytes",
    )
    # The mark that tells nucleus's parents from others' is what cgroupfs keeps for root.
    assert PARENT_MARK == ("trusted.nucleus.parent", "1")


def test_v1_nested_parents_removed_deepest_first():
    p = plan(V1_BARE, "a/b", "c1", limits())
    points = (CPU, f"{ROOT}/memory", f"{ROOT}/pids")
    assert p.create.parents == tuple(f"{pt}/{sub}" for pt in points for sub in ("a", "a/b"))
    assert p.remove.parents == tuple(f"{pt}/a/b" for pt in points) + tuple(f"{pt}/a" for pt in points)
    assert p.remove.freeze == ()  # no freezer hierarchy: processes are killed one by one


def test_v1_swap_refused_without_swap_accounting():
    with pytest.raises(InvalidInput, match="--swap 268435456: swap accounting is off on this host, so swap cannot be limited"):
        plan(V1_BARE, "nucleus", "c1", limits(memory="512M", swap="256M"))


def test_v1_io_limit_refused_without_blkio():
    with pytest.raises(InvalidInput, match="--io-limit 8:0: this host has no blkio hierarchy") as e:
        plan(V1_BARE, "nucleus", "c1", limits(io=["8:0 rbps=1M"]))
    assert e.value.hint == "mount the cgroup v1 blkio controller, or drop --io-limit"


# ---------------------------------------------------------------------------------------------
# No usable hierarchy, and names


def test_no_hierarchy_makes_creation_unavailable_with_the_probes_reason():
    layout = CgroupLayout(reason="no cgroup v1 hierarchy for pids in /proc/self/mountinfo; no cgroup2 mount")
    p = plan(layout, "nucleus", "c1", limits(memory="512M", io=["8:0 rbps=1M"]))
    assert p == CgroupPlan(
        "none", (),
        v.CreateCgroup(unavailable="no usable cgroup hierarchy: no cgroup v1 hierarchy for pids in "
                       "/proc/self/mountinfo; no cgroup2 mount"),
        v.SetCgroupLimits(), v.AttachCgroup(), v.RemoveCgroup(),
    )


@pytest.mark.parametrize("parent,name", [("", "c1"), ("/", "c1"), ("a//b", "c1"), ("a/../b", "c1"),
                                         ("nucleus", ""), ("nucleus", ".."), ("nucleus", "a/b")])
def test_names_outside_the_parent_are_refused(parent, name):
    with pytest.raises(ValueError, match="not a cgroup path below a hierarchy root"):
        plan(V2, parent, name, limits())


def test_leading_and_trailing_slashes_of_the_parent_are_ignored():
    assert plan(V2, "/nucleus/", "c1", limits()) == plan(V2, "nucleus", "c1", limits())
