"""The container's cgroup as a plan: from the limits asked for and the cgroup layout the probe
found, every directory to make, every file to write (with its value, in order), the files that
take the setup process's pid, and how the group is emptied and removed. Pure: the resources
machine issues these intents and a trace records them.

Groups are made only below the caller's parent (e.g. ``nucleus``) under each hierarchy's root;
no file outside the parent's directories is ever written (the hierarchy roots are only read, by
the probe). cpuset is never used on v1, so new groups need no cpus/mems copied from a parent.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from nucleus import vocab as v
from nucleus.config.resources import Limits
from nucleus.errors import InvalidInput
from nucleus.facts import UNIFIED, CgroupLayout

V2_REQUIRED = ("cpu", "memory", "pids")
# The extended attribute nucleus sets on a parent group it makes: the release removes a parent
# only when it carries it (cgroupfs keeps trusted.* attributes, v1 and v2 alike).
PARENT_MARK = ("trusted.nucleus.parent", "1")
V1_IO_FILES = (
    ("rbps", "blkio.throttle.read_bps_device"),
    ("wbps", "blkio.throttle.write_bps_device"),
    ("riops", "blkio.throttle.read_iops_device"),
    ("wiops", "blkio.throttle.write_iops_device"),
)


@dataclass(frozen=True)
class CgroupPlan:
    """The backend, each controller's directory (for `nucleus stats`), and the four intents."""

    backend: str
    dirs: tuple[tuple[str, str], ...]  # (controller, directory); on v2 also (UNIFIED, directory)
    create: v.CreateCgroup
    limits: v.SetCgroupLimits
    attach: v.AttachCgroup
    remove: v.RemoveCgroup


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


def plan(layout: CgroupLayout, parent: str, name: str, limits: Limits) -> CgroupPlan:
    """Raises InvalidInput for a limit this host cannot honour as asked (--swap without swap
    accounting)."""
    parts = _parts(parent, name)
    if layout.backend == "v2":
        return _plan_v2(layout, parts, name, limits)
    if layout.backend == "v1":
        return _plan_v1(layout, parts, name, limits)
    unavailable = v.CreateCgroup(unavailable=f"no usable cgroup hierarchy: {layout.reason}")
    return CgroupPlan("none", (), unavailable, v.SetCgroupLimits(), v.AttachCgroup(), v.RemoveCgroup())


def _swap_refused(layout: CgroupLayout, limits: Limits) -> None:
    if limits.swap is not None and layout.swap_accounting is False:
        raise InvalidInput(
            f"--swap {limits.swap}: swap accounting is off on this host, so swap cannot be limited",
            hint="boot with swapaccount=1 (cgroup v1), or drop --swap (no swap is allowed then)")


def _plan_v2(layout: CgroupLayout, parts: list[str], name: str, limits: Limits) -> CgroupPlan:
    _swap_refused(layout, limits)
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
        if "io" not in layout.controllers:
            raise InvalidInput(f"--io-limit {io.device}: the io controller is not available under {point}",
                               hint="enable it for the hierarchy root's children, or drop --io-limit")
        keys = " ".join(f"{k}={getattr(io, k)}" for k in ("rbps", "wbps", "riops", "wiops")
                        if getattr(io, k) is not None)
        writes.append((file("io.max"), f"{io.device} {keys}", False))
    procs = (file("cgroup.procs"),)
    remove = v.RemoveCgroup() if create.unavailable else v.RemoveCgroup(
        procs=procs, kill=file("cgroup.kill"),
        freeze=(file("cgroup.freeze"), "1", "0", file("cgroup.events"), "frozen 1"),
        oom=(file("memory.events"), "oom_kill"), dirs=(directory,), parents=_deepest_first(parents),
        mark=PARENT_MARK)
    dirs = ((UNIFIED, directory),) + tuple((c, directory) for c in wanted)
    return CgroupPlan("v2", dirs, create, v.SetCgroupLimits(tuple(writes)), v.AttachCgroup(procs), remove)


def _plan_v1(layout: CgroupLayout, parts: list[str], name: str, limits: Limits) -> CgroupPlan:
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
                            dirs=_deepest_first(own), parents=_deepest_first(parents), mark=PARENT_MARK)
    return CgroupPlan("v1", tuple(sorted(dirs.items())), create, v.SetCgroupLimits(tuple(writes)),
                      v.AttachCgroup(procs), remove)
