"""The cgroup plan and effects on the real kernel: the probe's layout, the pure plan, and each
intent carried out (create, write limits, attach, stats, remove) with limits that hold, counters
that move, and nothing left.

Every group lives under a parent of its own (nucleus-test-<random>) below each hierarchy root,
and every plan is checked to touch nothing outside it before any effect runs (this process's
own groups, such as memory:/process_api, are never written). Only processes a test started are
attached, by pid; each test removes its group in a finally and checks that nothing is left. On
a v1/v2 hybrid host the v2 hierarchy is exercised for what it offers there (groups,
cgroup.procs, cgroup.kill) even when it has no resource controller.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import select
import subprocess
import sys
import time

import pytest

from nucleus import vocab as v
from nucleus.config.resources import IoLimit, Limits
from nucleus.effects import cgroups, probe, rlimits
from nucleus.facts import UNIFIED, CgroupLayout
from nucleus.plan import cgroups as plan_cgroups

pytestmark = pytest.mark.requires("root")

MiB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
V1_UNLIMITED = 9223372036854771712
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
GATE = "import sys; sys.stdin.buffer.read(1)\n"  # the workload starts once it is in the group


@pytest.fixture(scope="module")
def layout() -> CgroupLayout:
    found = probe.cgroup_layout()
    if found.backend == "none":
        pytest.skip(f"requires cgroups ({found.reason})")
    return found


@pytest.fixture
def parent() -> str:
    return f"nucleus-test-{secrets.token_hex(4)}"


def points(layout: CgroupLayout) -> set[str]:
    return {p for _, p in layout.mounts} | ({layout.unified} if layout.unified else set())


def leftovers(layout: CgroupLayout, parent: str) -> list[str]:
    return sorted(os.path.join(p, parent) for p in points(layout)
                  if os.path.exists(os.path.join(p, parent)))


def touched(plan: plan_cgroups.CgroupPlan) -> list[str]:
    """Every path the plan's intents write, make, read for removal or remove."""
    c, lim, rem = plan.create, plan.limits, plan.remove
    return [p for p in (*c.parents, *(f for f, _ in c.enable), *c.dirs, *(f for f, _, _ in lim.writes),
                        *plan.attach.procs, *rem.procs, rem.kill, *rem.freeze[::3], *rem.oom[:1],
                        *rem.dirs, *rem.parents) if p]


def private_plan(layout: CgroupLayout, parent: str, name: str, limits: Limits) -> plan_cgroups.CgroupPlan:
    """The plan, after checking that it stays below this test's parent in every hierarchy."""
    plan = plan_cgroups.plan(layout, parent, name, limits)
    below = tuple(os.path.join(p, parent) for p in points(layout))
    outside = [p for p in touched(plan) if not any(p == b or p.startswith(b + "/") for b in below)]
    assert outside == [] and touched(plan), outside
    assert not any("process_api" in p for p in touched(plan))
    return plan


@contextlib.contextmanager
def group(layout: CgroupLayout, parent: str, name: str, limits: Limits):
    """A planned group and the processes a test starts in it; on the way out the processes are
    killed by pid, the group removed with its RemoveCgroup, and nothing may be left."""
    plan = private_plan(layout, parent, name, limits)
    processes: list[subprocess.Popen] = []
    try:
        yield plan, processes
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
            for stream in (p.stdin, p.stdout, p.stderr):
                if stream is not None:
                    stream.close()
        try:
            cgroups.remove(plan.remove)  # descendants of our processes, then the directories
        finally:
            for directory in leftovers(layout, parent):  # only after a failure above
                for d, _, _ in sorted(os.walk(directory), key=lambda w: -w[0].count("/")):
                    with contextlib.suppress(OSError):
                        os.rmdir(d)
    assert leftovers(layout, parent) == []


def attach(plan: plan_cgroups.CgroupPlan, p: subprocess.Popen) -> None:
    assert p.pid > 1
    cgroups.attach(plan.attach, p.pid)


def gated(code: str, **kw) -> subprocess.Popen:
    """A Python process that waits on stdin before running ``code``."""
    return subprocess.Popen([PYTHON, "-c", GATE + code], stdin=subprocess.PIPE, **kw)


def start(p: subprocess.Popen) -> None:
    assert p.stdin is not None
    p.stdin.write(b"x")
    p.stdin.close()
    p.stdin = None


def stats(plan: plan_cgroups.CgroupPlan) -> dict[str, int | None]:
    return probe.cgroup_stats(plan.backend, dict(plan.dirs))


def block_device() -> IoLimit | None:
    """A throttle rule for a real disk of this machine (no loop, ram or zram device)."""
    for name in sorted(os.listdir("/sys/block")):
        if name.startswith(("loop", "ram", "zram", "dm-", "md")):
            continue
        with open(f"/sys/block/{name}/dev") as f:
            major, minor = map(int, f.read().split(":"))
        return IoLimit(major, minor, rbps=10 * MiB, wiops=100)
    return None


def applied(value: str, shown: str) -> bool:
    """Whether a control file shows the value written (sizes round down to a page; "no limit"
    reads back as the kernel spells it; io.max shows every key)."""
    if value == shown:
        return True
    if value in ("-1", "max"):
        return shown in ("-1", "max", str(V1_UNLIMITED))
    if value.isdigit() and shown.isdigit():
        return int(shown) == int(value) // PAGE * PAGE
    return set(value.split()) <= set(shown.split())


def test_lifecycle_leaves_nothing(layout, parent):
    io = block_device()
    io_controller = "io" if layout.backend == "v2" else "blkio"
    swap = 16 * MiB if layout.swap_accounting else None
    limits = Limits(memory=64 * MiB, swap=swap, cpus=0.5, cpu_weight=200, pids=50,
                    io=(io,) if io and io_controller in layout.controllers else ())
    with group(layout, parent, "c1", limits) as (plan, processes):
        cgroups.create(plan.create)
        assert all(os.path.isdir(d) for d in plan.create.dirs)
        cgroups.write_limits(plan.limits)
        for path, value, optional in plan.limits.writes:
            if optional and not os.path.exists(path):
                continue
            with open(path) as f:
                shown = f.read().strip()
            assert applied(value, shown), (path, value, shown)
        p = subprocess.Popen(["sleep", "60"])
        processes.append(p)
        attach(plan, p)
        assert cgroups.procs(plan.attach.procs) == [p.pid]
        with open(f"/proc/{p.pid}/cgroup") as f:
            lines = f.read().splitlines()
        inside = [line for line in lines if line.endswith(f":/{parent}/c1")]
        assert len(inside) == len(plan.create.dirs), lines  # one line per hierarchy
        s = stats(plan)
        print(f"\nstats: {s}")
        assert s["pids_current"] == 1 and s["pids_max"] == 50
        assert s["memory_max"] == 64 * MiB
        if swap is not None:
            assert s["swap_max"] == swap
        assert s["memory_current"] is not None and s["cpu_usage_usec"] is not None
        assert s["oom_kills"] == 0
        assert cgroups.remove(plan.remove) is False
        assert p.wait(timeout=10) == -9
        assert leftovers(layout, parent) == []


class FailingMkdir(cgroups.Files):
    """The real cgroupfs, except that one mkdir fails (as when cgroup.max.descendants is
    reached)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def mkdir(self, path: str) -> None:
        if path == self.path:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        super().mkdir(path)


def test_a_failed_create_is_removed_by_the_release(layout, parent, monkeypatch):
    with group(layout, parent, "c1", Limits()) as (plan, _):
        last = plan.create.dirs[-1]
        monkeypatch.setattr(cgroups, "FILES", FailingMkdir(last))
        with pytest.raises(cgroups.CgroupError) as e:
            cgroups.create(plan.create)
        monkeypatch.undo()
        assert str(e.value) == f"mkdir {last}: ENOSPC (No space left on device)"
        made = [d for d in plan.create.parents + plan.create.dirs if os.path.isdir(d)]
        assert len(made) == len(plan.create.parents) + len(plan.create.dirs) - 1
        assert cgroups.remove(plan.remove) is False  # what the resources machine does at release
        assert leftovers(layout, parent) == []


def test_allocating_past_the_memory_limit_is_oom_killed(layout, parent):
    with group(layout, parent, "oom", Limits(memory=32 * MiB, pids=16)) as (plan, processes):
        cgroups.create(plan.create)
        cgroups.write_limits(plan.limits)
        p = gated("b = b'x' * (200 * 2**20)\nprint('survived')\n", stdout=subprocess.PIPE)
        processes.append(p)
        attach(plan, p)
        start(p)
        out, _ = p.communicate(timeout=60)  # a few bytes at most: no deadlock on the pipe
        s = stats(plan)
        print(f"\nreturncode {p.returncode}, stats: {s}")
        assert p.returncode == -9 and out == b""
        assert s["oom_kills"] >= 1
        assert s["memory_peak"] is None or s["memory_peak"] <= 32 * MiB
        assert cgroups.remove(plan.remove) is True  # the release reports "oom-killed"


BOMB = """\
import errno, os, time
told = False
while True:
    try:
        os.fork()
    except OSError as e:
        if not told:
            os.write(1, (errno.errorcode[e.errno] + "\\n").encode())
            told = True
        time.sleep(0.005)
"""


def test_pids_limit_contains_a_fork_bomb(layout, parent):
    with group(layout, parent, "bomb", Limits(pids=20)) as (plan, processes):
        cgroups.create(plan.create)
        cgroups.write_limits(plan.limits)
        p = gated(BOMB, stdout=subprocess.PIPE)
        processes.append(p)
        attach(plan, p)
        start(p)
        assert p.stdout is not None
        ready, _, _ = select.select([p.stdout], [], [], 20)
        assert ready, "no fork failed within 20s"
        first = p.stdout.readline().decode().strip()
        deadline = time.monotonic() + 10
        while stats(plan)["pids_current"] != 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        s = stats(plan)
        with open(os.path.join(dict(plan.dirs)["pids"], "pids.events")) as f:
            events = dict(line.split() for line in f.read().splitlines())
        print(f"\nfirst fork error {first}, pids {s['pids_current']}/{s['pids_max']}, "
              f"peak {s['pids_peak']}, pids.events {events}")
        assert first == "EAGAIN"
        assert s["pids_current"] == 20 and s["pids_max"] == 20
        assert int(events["max"]) > 0
        assert len(cgroups.procs(plan.attach.procs)) == 20
        cgroups.remove(plan.remove)  # freezes (v1) or cgroup.kill (v2): no fork escapes
        assert cgroups.procs(plan.attach.procs) == []
        assert p.wait(timeout=10) == -9


def test_cpus_limit_throttles(layout, parent):
    with group(layout, parent, "cpu", Limits(cpus=0.2)) as (plan, processes):
        cgroups.create(plan.create)
        cgroups.write_limits(plan.limits)
        p = gated("import time\nt = time.monotonic()\nwhile time.monotonic() - t < 1.0: pass\n")
        processes.append(p)
        attach(plan, p)
        start(p)
        assert p.wait(timeout=30) == 0
        s = stats(plan)
        print(f"\nusage {s['cpu_usage_usec']}us, periods {s['cpu_nr_periods']}, "
              f"throttled {s['cpu_nr_throttled']} for {s['cpu_throttled_usec']}us")
        assert s["cpu_nr_periods"] > 0
        assert s["cpu_nr_throttled"] > 0 and s["cpu_throttled_usec"] > 0
        # A second of busy loop at 0.2 CPU: about 200 ms of CPU time, far from a full second.
        assert s["cpu_usage_usec"] < 600_000


def test_v2_hierarchy_groups_procs_and_cgroup_kill(layout, parent):
    if layout.unified is None:
        pytest.skip("requires a cgroup2 mount")
    if layout.backend == "v2":
        v2 = layout
    else:  # a hybrid host: the v2 hierarchy alone, with the controllers it offers (maybe none)
        with open(os.path.join(layout.unified, "cgroup.subtree_control")) as f:
            enabled = tuple(sorted(f.read().split()))
        v2 = CgroupLayout("v2", ((UNIFIED, layout.unified),), (), enabled, unified=layout.unified)
    with group(v2, parent, "c1", Limits()) as (plan, processes):
        leaf = os.path.join(layout.unified, parent, "c1")
        assert plan.create.dirs == (leaf,) and plan.remove.kill == f"{leaf}/cgroup.kill"
        cgroups.create(plan.create)
        p = subprocess.Popen(["sleep", "60"])
        processes.append(p)
        attach(plan, p)
        with open(f"/proc/{p.pid}/cgroup") as f:
            assert f"0::/{parent}/c1\n" in f.read()
        assert cgroups.procs(plan.attach.procs) == [p.pid]
        if layout.backend != "v2":
            with pytest.raises(cgroups.CgroupError) as e:  # strict: the first refused write fails
                cgroups.write_limits(v.SetCgroupLimits(plan.limits.writes, strict=True))
            print(f"\nwrite_limits on {layout.unified}: {e.value}")
            assert e.value.errno == errno.ENOENT and e.value.path == f"{leaf}/memory.max"
            # Best effort (agent mode): each refused write is skipped and reported.
            skipped = v.skipped_writes(cgroups.write_limits(plan.limits))
            assert skipped[0] == (f"{leaf}/memory.max", "max", "ENOENT (No such file or directory)")
        assert cgroups.remove(plan.remove) is False
        assert p.wait(timeout=10) == -9
        assert not os.path.exists(os.path.join(layout.unified, parent))


RLIMITS = """\
import json, resource
from nucleus.effects import rlimits
before = {n: resource.getrlimit(getattr(resource, "RLIMIT_" + n.upper()))
          for n in ("nofile", "nproc", "memlock")}
asked = rlimits.apply(nofile=10**9, nproc=10**9, memlock=2**50)
again = rlimits.apply(nofile=1024, nproc=512, memlock=65536)
after = {n: resource.getrlimit(getattr(resource, "RLIMIT_" + n.upper()))
         for n in ("nofile", "nproc", "memlock")}
print(json.dumps([before, asked, again, after]))
"""


def test_rlimits_above_the_hard_limit_are_capped_not_refused():
    import json

    out = subprocess.run([sys.executable, "-c", RLIMITS], capture_output=True, text=True,
                         timeout=30, cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                             os.path.abspath(__file__)))))
    assert out.returncode == 0, out.stderr
    before, asked, again, after = json.loads(out.stdout)
    print(f"\nhard limits before {before}; applied {asked}, then {again}")
    for name, (_soft, hard) in before.items():
        cap = hard if hard != -1 else {"nofile": 10**9, "nproc": 10**9, "memlock": 2**50}[name]
        assert asked[name] == [cap, cap]
    assert again == {"nofile": [1024, 1024], "nproc": [512, 512], "memlock": [65536, 65536]}
    assert after == again
    assert rlimits.RESOURCES  # the module is importable in the test process too
