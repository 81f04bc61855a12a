"""The container's cgroup as a plan: from the limits asked for and the cgroup layout the probe
found, every directory to make, every file to write (with its value, in order), the files that
take the setup process's pid, and how the group is emptied and removed. Pure: the resources
machine issues these intents and a trace records them.

Groups are made only below the caller's parent (e.g. ``nucleus``) under each hierarchy's root;
no file outside the parent's directories is ever written (the hierarchy roots are only read, by
the probe). cpuset is never used on v1, so new groups need no cpus/mems copied from a parent.

A caller that is not root makes its group under the cgroup v2 group delegated to it, where the
probe found one (e.g. ``systemd-run --user --scope -p Delegate=yes``): there nucleus also
writes the delegated group's own cgroup.subtree_control, after moving its processes (nucleus
itself) to a leaf of their own (SUPERVISOR_LEAF).

The values are those the kernel accepts (nucleus.config.resources bounds each one by the type
the kernel keeps it in), and `check_host` refuses what this host cannot honour before anything
is made. What a write the kernel still refuses means is the SetCgroupLimits intent's `strict`.
"""

from __future__ import annotations

import posixpath
from dataclasses import replace

from nucleus import vocab as v
from nucleus.config.resources import CPU_PERIOD, IoLimit, Limits, show
from nucleus.errors import InvalidInput
from nucleus.facts import UNIFIED, CgroupLayout, HostFacts
from nucleus.frozen import frozen

V2_REQUIRED = ("cpu", "memory", "pids")
# The extended attribute nucleus sets on a parent group it makes: the release removes a parent
# only when it carries it (cgroupfs keeps trusted.* attributes, v1 and v2 alike).
PARENT_MARK = ("trusted.nucleus.parent", "1")
# In a group delegated to an ordinary user: trusted.* needs CAP_SYS_ADMIN, and cgroupfs keeps
# user.* attributes (Linux 5.7+).
USER_PARENT_MARK = ("user.nucleus.parent", "1")
# In a delegated group, where nucleus moves the group's own processes (itself): a group that
# enables controllers for its children may hold no process (cgroup v2's no-internal-process
# rule).
SUPERVISOR_LEAF = "nucleus.supervisor"
V1_IO_FILES = (
    ("rbps", "blkio.throttle.read_bps_device"),
    ("wbps", "blkio.throttle.write_bps_device"),
    ("riops", "blkio.throttle.read_iops_device"),
    ("wiops", "blkio.throttle.write_iops_device"),
)
# The flag whose value each planned control file carries (for a warning about a write the
# kernel refused at run time).
FLAG_OF = {
    "memory.max": "--memory", "memory.high": "--memory", "memory.oom.group": "--memory",
    "memory.swap.max": "--swap", "cpu.max": "--cpus", "cpu.weight": "--cpu-weight",
    "pids.max": "--pids", "io.max": "--io-limit",
    "memory.limit_in_bytes": "--memory", "memory.soft_limit_in_bytes": "--memory",
    "memory.memsw.limit_in_bytes": "--swap", "cpu.cfs_period_us": "--cpus",
    "cpu.cfs_quota_us": "--cpus", "cpu.shares": "--cpu-weight",
    **{control: "--io-limit" for _, control in V1_IO_FILES},
}


@frozen
class CgroupPlan:
    """The backend, each controller's directory (for `nucleus stats`), and the four intents."""

    backend: str
    dirs: tuple[tuple[str, str], ...]  # (controller, directory); on v2 also (UNIFIED, directory)
    create: v.CreateCgroup
    limits: v.SetCgroupLimits
    attach: v.AttachCgroup
    remove: v.RemoveCgroup
    # Under a group delegated to the caller: that group and the controllers it offers, which a
    # record keeps so that management commands plan the same paths again.
    delegated: tuple[str, tuple[str, ...]] | None = None


def flag_of(path: str) -> str:
    """The flag a planned control file's value comes from ("" for none known)."""
    return FLAG_OF.get(posixpath.basename(path), "")


def _parts(parent: str, name: str) -> list[str]:
    parts = parent.strip("/").split("/")
    if parts == [""] or any(p in ("", ".", "..") for p in parts) or name in ("", ".", "..") \
            or "/" in name:
        raise ValueError(f"not a cgroup path below a hierarchy root: {parent!r}/{name!r}")
    return parts


def _deepest_first(paths: list[str]) -> tuple[str, ...]:
    return tuple(sorted(set(paths), key=lambda d: (-d.count("/"), d)))


def _max(value: int | None) -> str:
    return "max" if value is None else str(value)


def plan_run(facts: HostFacts, limits: Limits, name: str, *, strict: bool) -> CgroupPlan:
    """The plan of a run's group: `plan` with what the probe found (the layout, the CPUs and
    block devices the values are checked against, whether the caller is root)."""
    if facts.cgroups is None:
        raise ValueError("a run is planned with the cgroup layout probed")
    return plan(facts.cgroups, limits.cgroup_parent, name, limits, strict=strict, cpus=facts.cpus,
                devices=facts.block_devices, unprivileged=facts.euid not in (None, 0))


def plan(layout: CgroupLayout, parent: str, name: str, limits: Limits, *, strict: bool = False,
         cpus: int | None = None, devices: tuple[tuple[str, str], ...] | None = None,
         unprivileged: bool = False) -> CgroupPlan:
    """Raises InvalidInput for a limit this host cannot honour as asked (see `check_host`;
    --swap without swap accounting; --io-limit without an io controller).

    ``strict``: a write the kernel refuses at run time fails the run (the service mode requires
    cgroups); otherwise the limits step skips it and reports it. ``unprivileged``: the caller
    is not root; its group goes under the cgroup delegated to it where the probe found one
    (``layout.delegated``), else where root's would (which an administrator may have made
    writable for it)."""
    check_host(limits, cpus, devices)
    parts = _parts(parent, name)
    if unprivileged and layout.delegated:
        return _plan_delegated(layout, parts, name, limits, strict)
    if layout.backend == "v2":
        return _plan_v2(layout, parts, name, limits, strict)
    if layout.backend == "v1":
        return _plan_v1(layout, parts, name, limits, strict)
    unavailable = v.CreateCgroup(unavailable=f"no usable cgroup hierarchy: {layout.reason}")
    return CgroupPlan("none", (), unavailable, v.SetCgroupLimits(strict=strict), v.AttachCgroup(),
                      v.RemoveCgroup())


def _number(value: float) -> str:
    return show(f"{value:.15g}")


def io_text(io: IoLimit) -> str:
    """An --io-limit as text again: "8:0 rbps=10485760 wiops=100"."""
    keys = " ".join(f"{k}={getattr(io, k)}" for k in ("rbps", "wbps", "riops", "wiops")
                    if getattr(io, k) is not None)
    return f"{io.device} {keys}"


def check_host(limits: Limits, cpus: int | None,
               devices: tuple[tuple[str, str], ...] | None) -> None:
    """Refuse a value this host cannot honour, naming the flag, the value and what the host
    offers: a CPU quota beyond the CPUs this process may run on; an I/O limit for a block
    device the host does not have, or for a partition (blk-throttle limits whole disks). A fact
    that was not probed (None) is not checked."""
    if cpus is not None and limits.cpus is not None and limits.cpu_quota is not None \
            and limits.cpu_quota > cpus * CPU_PERIOD:
        raise InvalidInput(
            f"--cpus {_number(limits.cpus)}: more than the {cpus} CPU{'s' if cpus != 1 else ''} "
            "of this host",
            hint=f"give at most {cpus} (the CPUs nucleus may run on here: its affinity and cpuset)")
    if devices is None:
        return
    disks = dict(devices)
    for io in limits.io:
        disk = disks.get(io.device)
        if disk is None:
            whole = sorted({d for _, d in devices}, key=lambda d: tuple(map(int, d.split(":"))))
            listed = f"this host's disks are {', '.join(whole)}" if whole else "this host has none"
            raise InvalidInput(
                f"--io-limit {show(io_text(io))}: this host has no block device {io.device}",
                hint=f"{listed} (lsblk -o NAME,MAJ:MIN lists them)")
        if disk != io.device:
            raise InvalidInput(
                f"--io-limit {show(io_text(io))}: {io.device} is a partition; I/O limits apply "
                "to whole disks",
                hint=f"limit its disk instead: --io-limit '{disk} ...'")


def _swap_refused(layout: CgroupLayout, limits: Limits) -> None:
    if limits.swap is not None and layout.swap_accounting is False:
        raise InvalidInput(
            f"--swap {limits.swap}: swap accounting is off on this host, so swap cannot be limited",
            hint="boot with swapaccount=1 (cgroup v1), or drop --swap (no swap is allowed then)")


def _plan_v2(layout: CgroupLayout, parts: list[str], name: str, limits: Limits,
             strict: bool) -> CgroupPlan:
    point = layout.mount(UNIFIED)
    wanted = sorted(layout.controllers)
    directory = posixpath.join(point, *parts, name)
    parents = [posixpath.join(point, *parts[:depth]) for depth in range(1, len(parts) + 1)]
    if layout.unusable:
        create = v.CreateCgroup(unavailable=layout.unusable)
    else:
        plus = " ".join(f"+{c}" for c in wanted)
        create = v.CreateCgroup(
            parents=tuple(parents),
            enable=tuple((posixpath.join(p, "cgroup.subtree_control"), plus) for p in parents) if wanted else (),
            dirs=(directory,), mark=PARENT_MARK)
    return _v2(layout, limits, strict, directory, parents, create, wanted, PARENT_MARK,
               missing_io=(f"the io controller is not available under {point}",
                           "enable it for the hierarchy root's children, or drop --io-limit"))


def _plan_delegated(layout: CgroupLayout, parts: list[str], name: str, limits: Limits,
                    strict: bool) -> CgroupPlan:
    """Under the caller's delegated group: nucleus moves its own processes to a leaf, enables
    the controllers in the delegated group and in each parent it makes, and marks the parents
    with a user.* attribute."""
    top = layout.delegated
    if parts[0] == SUPERVISOR_LEAF:
        raise InvalidInput(f"--cgroup-parent {show('/'.join(parts))}: {SUPERVISOR_LEAF!r} is where "
                           f"nucleus itself runs in the delegated cgroup {top}",
                           hint="choose another parent, e.g. nucleus")
    wanted = sorted(layout.delegated_controllers)
    directory = posixpath.join(top, *parts, name)
    parents = [posixpath.join(top, *parts[:depth]) for depth in range(1, len(parts) + 1)]
    plus = " ".join(f"+{c}" for c in wanted)
    leaf = posixpath.join(top, SUPERVISOR_LEAF)
    create = v.CreateCgroup(
        parents=tuple(parents),
        enable=tuple((posixpath.join(p, "cgroup.subtree_control"), plus) for p in [top, *parents]),
        dirs=(directory,), mark=USER_PARENT_MARK,
        vacate=(posixpath.join(top, "cgroup.procs"), leaf, posixpath.join(leaf, "cgroup.procs")))
    planned = _v2(layout, limits, strict, directory, parents, create, wanted, USER_PARENT_MARK,
                  missing_io=(f"the io controller is not delegated to {top}",
                              "delegate it too (systemd: Delegate=yes), or drop --io-limit"))
    return replace(planned, delegated=(top, tuple(wanted)))


def _v2(layout: CgroupLayout, limits: Limits, strict: bool, directory: str, parents: list[str],
        create: v.CreateCgroup, wanted: list[str], mark: tuple[str, str],
        missing_io: tuple[str, str]) -> CgroupPlan:
    _swap_refused(layout, limits)

    def file(name: str) -> str:
        return posixpath.join(directory, name)

    writes: list[v.CgroupWrite] = [
        (file("memory.max"), _max(limits.memory), False),
        (file("memory.high"), _max(limits.memory_high), False),
        # Without swap accounting there is no swap.max to zero; a swap size asked for must apply.
        (file("memory.swap.max"), _max(limits.swap_max), limits.swap is None),
        (file("memory.oom.group"), "1", True),  # kernels before 4.19 lack it
        (file("cpu.max"), f"{_max(limits.cpu_quota)} {limits.cpu_period}", False),
    ]
    if limits.cpu_weight is not None:
        writes.append((file("cpu.weight"), str(limits.cpu_weight), False))
    writes.append((file("pids.max"), str(limits.pids), False))
    for io in limits.io:
        if "io" not in wanted:
            raise InvalidInput(f"--io-limit {io.device}: {missing_io[0]}", hint=missing_io[1])
        writes.append((file("io.max"), io_text(io), False))
    procs = (file("cgroup.procs"),)
    remove = v.RemoveCgroup() if create.unavailable else v.RemoveCgroup(
        procs=procs, kill=file("cgroup.kill"),
        freeze=(file("cgroup.freeze"), "1", "0", file("cgroup.events"), "frozen 1"),
        oom=(file("memory.events"), "oom_kill"), dirs=(directory,), parents=_deepest_first(parents),
        mark=mark, peak=file("memory.peak"))
    dirs = ((UNIFIED, directory),) + tuple((c, directory) for c in wanted)
    return CgroupPlan("v2", dirs, create, v.SetCgroupLimits(tuple(writes), strict), v.AttachCgroup(procs),
                      remove)


def _plan_v1(layout: CgroupLayout, parts: list[str], name: str, limits: Limits,
             strict: bool) -> CgroupPlan:
    _swap_refused(layout, limits)
    points = sorted(set(point for _, point in layout.mounts))
    dirs = {controller: posixpath.join(point, *parts, name) for controller, point in layout.mounts}
    parents = [posixpath.join(point, *parts[:depth]) for point in points for depth in range(1, len(parts) + 1)]
    own = sorted(set(dirs.values()))
    create = v.CreateCgroup(parents=tuple(parents), dirs=tuple(own), mark=PARENT_MARK)

    def file(controller: str, name: str) -> str:
        return posixpath.join(dirs[controller], name)

    limit = file("memory", "memory.limit_in_bytes")
    memsw = file("memory", "memory.memsw.limit_in_bytes")
    writes: list[v.CgroupWrite] = []
    if limits.memory is None:
        writes += [(memsw, "-1", True), (limit, "-1", False)]  # memsw first: never below the limit
    else:
        # A new group's memsw is unlimited, so the limit goes first and memsw (>= it) follows.
        writes += [(limit, str(limits.memory), False),
                   (memsw, str(limits.memsw), limits.swap is None)]
    # v1 has no memory.high; the soft limit is where reclaim pushes back first.
    writes.append((file("memory", "memory.soft_limit_in_bytes"),
                   "-1" if limits.memory_high is None else str(limits.memory_high), False))
    writes.append((file("cpu", "cpu.cfs_period_us"), str(limits.cpu_period), False))
    writes.append((file("cpu", "cpu.cfs_quota_us"),
                   "-1" if limits.cpu_quota is None else str(limits.cpu_quota), False))
    if limits.cpu_shares is not None:
        writes.append((file("cpu", "cpu.shares"), str(limits.cpu_shares), False))
    writes.append((file("pids", "pids.max"), str(limits.pids), False))
    for io in limits.io:
        if "blkio" not in dirs:
            raise InvalidInput(f"--io-limit {io.device}: this host has no blkio hierarchy",
                               hint="mount the cgroup v1 blkio controller, or drop --io-limit")
        for key, control in V1_IO_FILES:
            value = getattr(io, key)
            if value is not None:
                writes.append((file("blkio", control), f"{io.device} {value}", False))
    procs = tuple(posixpath.join(d, "cgroup.procs") for d in own)
    freezer = dirs.get("freezer")
    freeze = () if freezer is None else (
        posixpath.join(freezer, "freezer.state"), "FROZEN", "THAWED",
        posixpath.join(freezer, "freezer.state"), "FROZEN")
    remove = v.RemoveCgroup(procs=procs, freeze=freeze,
                            oom=(file("memory", "memory.oom_control"), "oom_kill"),
                            dirs=_deepest_first(own), parents=_deepest_first(parents), mark=PARENT_MARK,
                            peak=file("memory", "memory.max_usage_in_bytes"))
    return CgroupPlan("v1", tuple(sorted(dirs.items())), create, v.SetCgroupLimits(tuple(writes), strict),
                      v.AttachCgroup(procs), remove)
