"""The cgroup effects on the real kernel: limits that hold, counters that move, nothing left.

Every group lives under a parent of its own (nucleus-test-<random>) below each hierarchy root;
every test kills the processes it started, by pid, and removes its groups in a finally. On a
v1/v2 hybrid host the v2 hierarchy is exercised for what it offers there (groups, cgroup.procs,
cgroup.kill) even when it has no resource controller.
"""

from __future__ import annotations

import errno
import os
import secrets
import select
import subprocess
import sys
import time

import pytest

from nucleus.config.resources import IoLimit, Limits
from nucleus.effects import cgroups, rlimits

pytestmark = pytest.mark.requires("root")

MiB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
V1_UNLIMITED = 9223372036854771712
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
GATE = "import sys; sys.stdin.buffer.read(1)\n"  # the workload starts once it is in the group


@pytest.fixture(scope="module")
def host() -> cgroups.Host:
    h = cgroups.detect()
    if h.backend == "none":
        pytest.skip(f"requires cgroups ({h.reason})")
    return h


@pytest.fixture
def parent() -> str:
    return f"nucleus-test-{secrets.token_hex(4)}"


def gated(code: str, **kw) -> subprocess.Popen:
    """A Python process that waits on stdin before running ``code``."""
    return subprocess.Popen([PYTHON, "-c", GATE + code], stdin=subprocess.PIPE, **kw)


def start(p: subprocess.Popen) -> None:
    assert p.stdin is not None
    p.stdin.write(b"x")
    p.stdin.close()
    p.stdin = None


def leftovers(host: cgroups.Host, parent: str) -> list[str]:
    points = set(host.mounts.values()) | ({host.unified} if host.unified else set())
    return sorted(os.path.join(p, parent) for p in points
                  if os.path.exists(os.path.join(p, parent)))


def cleanup(host: cgroups.Host, cg: cgroups.Cgroup | None, parent: str,
            processes: list[subprocess.Popen]) -> None:
    for p in processes:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
    if cg is not None:
        if cgroups.procs(cg):  # descendants of our processes (the fork bomb's children)
            cgroups.kill_all(cg)
        cgroups.remove(cg)
    cgroups.remove_parent(host, parent)


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


def test_lifecycle_leaves_nothing(host, parent):
    io = block_device()
    limits = Limits(memory=64 * MiB, cpus=0.5, cpu_weight=200, pids=50,
                    io=(io,) if io else ())
    cg, processes = None, []
    try:
        cg = cgroups.create(host, parent, "c1")
        written = cgroups.set_limits(cg, limits)
        assert written
        for path, value in written:
            with open(path) as f:
                shown = f.read().strip()
            assert applied(value, shown), (path, value, shown)
        p = subprocess.Popen(["sleep", "60"])
        processes.append(p)
        cgroups.attach(cg, p.pid)
        assert cgroups.procs(cg) == [p.pid]
        s = cgroups.stats(cg)
        print(f"\nstats: {s}")
        assert s["pids_current"] == 1 and s["pids_max"] == 50
        assert s["memory_max"] == 64 * MiB
        assert s["memory_current"] is not None and s["cpu_usage_usec"] is not None
        assert cgroups.oom_killed(cg) is False
        cgroups.kill_all(cg)
        assert p.wait(timeout=10) == -9
        assert cgroups.procs(cg) == []
        assert sorted(cgroups.remove(cg)) == sorted(set(cg.dirs.values()))
        cg = None
        cgroups.remove_parent(host, parent)
        assert leftovers(host, parent) == []
    finally:
        cleanup(host, cg, parent, processes)
    assert leftovers(host, parent) == []


def test_allocating_past_the_memory_limit_is_oom_killed(host, parent):
    cg, processes = None, []
    try:
        cg = cgroups.create(host, parent, "oom")
        cgroups.set_limits(cg, Limits(memory=32 * MiB, pids=16))
        p = gated("b = b'x' * (200 * 2**20)\nprint('survived')\n", stdout=subprocess.PIPE)
        processes.append(p)
        cgroups.attach(cg, p.pid)
        start(p)
        out, _ = p.communicate(timeout=60)  # a few bytes at most: no deadlock on the pipe
        s = cgroups.stats(cg)
        print(f"\nreturncode {p.returncode}, stats: {s}")
        assert p.returncode == -9 and out == b""
        assert cgroups.oom_killed(cg) is True
        assert s["oom_kills"] >= 1
        assert s["memory_peak"] is None or s["memory_peak"] <= 32 * MiB
    finally:
        cleanup(host, cg, parent, processes)
    assert leftovers(host, parent) == []


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


def test_pids_limit_contains_a_fork_bomb(host, parent):
    cg, processes = None, []
    try:
        cg = cgroups.create(host, parent, "bomb")
        cgroups.set_limits(cg, Limits(pids=20))
        p = gated(BOMB, stdout=subprocess.PIPE)
        processes.append(p)
        cgroups.attach(cg, p.pid)
        start(p)
        assert p.stdout is not None
        ready, _, _ = select.select([p.stdout], [], [], 20)
        assert ready, "no fork failed within 20s"
        first = p.stdout.readline().decode().strip()
        deadline = time.monotonic() + 10
        while cgroups.stats(cg)["pids_current"] != 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        s = cgroups.stats(cg)
        events = cgroups._keyed(open(os.path.join(cg.dirs["pids"], "pids.events")).read())
        print(f"\nfirst fork error {first}, pids {s['pids_current']}/{s['pids_max']}, "
              f"peak {s['pids_peak']}, pids.events {events}")
        assert first == "EAGAIN"
        assert s["pids_current"] == 20 and s["pids_max"] == 20
        assert events["max"] > 0
        n = len(cgroups.procs(cg))
        cgroups.kill_all(cg)
        assert cgroups.procs(cg) == [] and n == 20
        assert p.wait(timeout=10) == -9
    finally:
        cleanup(host, cg, parent, processes)
    assert leftovers(host, parent) == []


def test_cpus_limit_throttles(host, parent):
    cg, processes = None, []
    try:
        cg = cgroups.create(host, parent, "cpu")
        cgroups.set_limits(cg, Limits(cpus=0.2))
        p = gated("import time\nt = time.monotonic()\nwhile time.monotonic() - t < 1.0: pass\n")
        processes.append(p)
        cgroups.attach(cg, p.pid)
        start(p)
        assert p.wait(timeout=30) == 0
        s = cgroups.stats(cg)
        print(f"\nusage {s['cpu_usage_usec']}us, periods {s['cpu_nr_periods']}, "
              f"throttled {s['cpu_nr_throttled']} for {s['cpu_throttled_usec']}us")
        assert s["cpu_nr_periods"] > 0
        assert s["cpu_nr_throttled"] > 0 and s["cpu_throttled_usec"] > 0
        # A second of busy loop at 0.2 CPU: about 200 ms of CPU time, far from a full second.
        assert s["cpu_usage_usec"] < 600_000
    finally:
        cleanup(host, cg, parent, processes)
    assert leftovers(host, parent) == []


def test_v2_hierarchy_groups_procs_and_cgroup_kill(host, parent):
    if host.unified is None:
        pytest.skip("requires a cgroup2 mount")
    if host.backend == "v2":
        v2 = host
    else:  # a hybrid host: the v2 hierarchy alone, with the controllers it offers (maybe none)
        v2 = cgroups.Host("v2", {"unified": host.unified}, frozenset(), host.unified)
    cg, processes = None, []
    try:
        cg = cgroups.create(v2, parent, "c1")
        assert cg.path == os.path.join(host.unified, parent, "c1")
        p = subprocess.Popen(["sleep", "60"])
        processes.append(p)
        cgroups.attach(cg, p.pid)
        with open(f"/proc/{p.pid}/cgroup") as f:
            assert f"0::/{parent}/c1\n" in f.read()
        assert cgroups.procs(cg) == [p.pid]
        if host.backend != "v2":
            with pytest.raises(cgroups.CgroupError) as e:
                cgroups.set_limits(cg, Limits())
            print(f"\nset_limits on {host.unified}: {e.value}")
            assert e.value.errno == errno.ENOENT
        cgroups.kill_all(cg)
        assert p.wait(timeout=10) == -9
        assert cgroups.remove(cg) == [cg.path]
        cg = None
        assert cgroups.remove_parent(v2, parent) == [os.path.join(host.unified, parent)]
    finally:
        cleanup(v2, cg, parent, processes)
    assert not os.path.exists(os.path.join(host.unified, parent))


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
