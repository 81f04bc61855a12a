"""Fake hosts for the cgroup tests: a FakeKernel (tests/effects/fake_cgroupfs.py) with its
hierarchies mounted under a test's tmp_path, a mountinfo that lists them, and the steps the
resources machine takes, run on it through the probe, the pure plan and the effects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nucleus.config.resources import Limits
from nucleus.effects import cgroups, probe
from nucleus.facts import CgroupLayout
from nucleus.plan import cgroups as plan_cgroups
from tests.effects.fake_cgroupfs import FakeKernel

MiB = 1 << 20
V1_MACHINE = ("memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "freezer", "devices")
V1_USED = ("blkio", "cpu", "cpuacct", "freezer", "memory", "pids")


@dataclass
class Env:
    kernel: FakeKernel
    top: Path  # the fake /sys/fs/cgroup
    mountinfo: str

    @property
    def layout(self) -> CgroupLayout:
        return probe.cgroup_layout(self.mountinfo, root=str(self.top))

    def plan(self, name: str = "c1", limits: Limits | None = None,
             parent: str = "nucleus", strict: bool = False) -> plan_cgroups.CgroupPlan:
        return plan_cgroups.plan(self.layout, parent, name, limits or Limits(), strict=strict)

    def up(self, name: str = "c1", limits: Limits | None = None, parent: str = "nucleus",
           pids: tuple[int, ...] = (), strict: bool = True) -> plan_cgroups.CgroupPlan:
        """What the resources machine does up to "ready": create, write the limits (strict
        unless told: a refused write raises), attach."""
        p = self.plan(name, limits, parent, strict)
        cgroups.create(p.create)
        cgroups.write_limits(p.limits)
        for pid in pids:
            cgroups.attach(p.attach, pid)
        return p

    def read(self, *parts: str) -> str:
        return (self.top.joinpath(*parts)).read_text()

    def groups(self) -> set[str]:
        """Every group below a hierarchy root (relative to the fake /sys/fs/cgroup)."""
        roots = {h.point for h in self.kernel.hierarchies}
        return {os.path.relpath(d, self.top) for d, _s, _f in os.walk(self.top)
                if d not in roots and os.path.isfile(os.path.join(d, "cgroup.procs"))}

    def mark(self) -> int:
        """Where the kernel's log is now: ``since(mark)`` lists what changed after it."""
        return len(self.kernel.log)

    def since(self, mark: int) -> list[tuple[str, str, str]]:
        """Each call that changed the fake since ``mark``, with paths relative to the fake
        /sys/fs/cgroup: ("mkdir", "nucleus/c1", ""), ("write", "nucleus/c1/pids.max", "20")."""
        return [(op, os.path.relpath(path, self.top), value)
                for op, path, value in self.kernel.log[mark:]]


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
