"""Resource limits through `nucleus run`, on the real kernel: what a user asks for with --memory,
--pids, --cpus and friends holds inside the container, shows in the cgroup files and in
`nucleus ps` / `nucleus stats`, and nothing of the container's cgroup remains afterwards.

Every test works in a Scope of its own (tests.helpers): a private state directory, a private
cgroup parent (nucleus-test-<random>) and a marker on every workload's command line, so other
containers on the machine are never looked at.
"""

from __future__ import annotations

import json
import os
import re
import resource

import pytest

from tests.helpers import (
    SANDBOX_WITH_PYTHON,
    Scope,
    cgroup_mount_points,
    describe,
    wait_for,
)

pytestmark = SANDBOX_WITH_PYTHON

MiB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
V1_ROOT = "/sys/fs/cgroup"


@pytest.fixture
def scope():
    with Scope() as s:
        yield s


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def stats_of(scope: Scope, cid: str) -> dict:
    result = scope.nucleus("stats", "--format", "json", cid)
    assert result.returncode == 0, describe(result)
    rows = json.loads(result.stdout)
    assert [r["id"] for r in rows] == [cid], describe(result)
    return rows[0]


def ps_rows(scope: Scope, *options: str) -> list[dict]:
    result = scope.nucleus("ps", *options, "--format", "json")
    assert result.returncode == 0, describe(result)
    return json.loads(result.stdout)


def table_row(text: str, cid: str) -> str:
    rows = [line for line in text.splitlines() if line.startswith(cid[:12] + " ")]
    assert len(rows) == 1, f"no single row for {cid[:12]} in:\n{text}"
    return rows[0]


def v1_dir(scope: Scope, controller: str, cid: str) -> str:
    return os.path.join(V1_ROOT, controller, scope.cgroup_parent, cid)


def requires_v1() -> None:
    if not os.path.isdir(os.path.join(V1_ROOT, "memory")) or \
            os.path.join(V1_ROOT, "memory") not in cgroup_mount_points():
        pytest.skip("requires the cgroup v1 memory hierarchy at /sys/fs/cgroup/memory")


# --- memory -----------------------------------------------------------------------------------

ALLOCATE = "b = bytearray(200 * 2**20)\nprint('survived')"


def test_allocating_past_the_memory_limit_is_oom_killed(scope):
    result = scope.nucleus(*scope.run_args("--memory", "32M"), "--", *scope.python(ALLOCATE))
    assert result.returncode == 137, describe(result)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    scope.assert_clean()


def test_oom_kill_of_a_detached_container_is_listed(scope):
    cid = scope.detach(scope.python(ALLOCATE), "--memory", "32M", "--name", "hog")
    scope.wait_finished(cid)
    rows = ps_rows(scope, "--all")
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["id"], row["name"], row["status"], row["exit_code"], row.get("reason")) == \
        (cid, "hog", "stopped", 137, "oom-killed"), row
    table = scope.nucleus("ps", "--all")
    assert table.returncode == 0, describe(table)
    assert "stopped (137, oom-killed)" in table_row(table.stdout, cid)
    running = scope.nucleus("ps")
    assert running.returncode == 0 and cid[:12] not in running.stdout, describe(running)
    assert scope.container_cgroups(cid) == []  # released when it stopped
    assert scope.log(cid) == ""  # killed before it could print
    removed = scope.nucleus("rm", "hog")
    assert (removed.returncode, removed.stdout, removed.stderr) == (0, "hog\n", ""), describe(removed)
    scope.assert_clean()


# --- pids -------------------------------------------------------------------------------------

# Fork until the kernel says no; report the error and how many processes the container holds.
FORK_UNTIL_REFUSED = """\
import errno, json, os
r, w = os.pipe()
children = 0
while True:
    try:
        pid = os.fork()
    except OSError as e:
        err = errno.errorcode[e.errno]
        break
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    children += 1
inside = sum(1 for p in os.listdir("/proc") if p.isdigit())
os.close(w)
for _ in range(children):
    os.wait()
print(json.dumps({"error": err, "children": children, "processes": inside}))
"""

# Every process forks forever: the population only stops growing at the limit.
FORK_BOMB = """\
import os, time
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.01)
"""


def test_pids_limit_makes_fork_fail_with_eagain(scope):
    result = scope.nucleus(*scope.run_args("--pids", "20"), "--",
                           *scope.python(FORK_UNTIL_REFUSED), timeout=60)
    assert result.returncode == 0, describe(result)
    report = json.loads(result.stdout)
    print(f"\n{report}")
    assert report["error"] == "EAGAIN"
    # The container's own processes (its init, the workload, the children) fill the limit.
    assert report["processes"] == 20, report
    scope.assert_clean()


def test_pids_limit_contains_a_fork_bomb(scope):
    cid = scope.detach(scope.python(FORK_BOMB), "--pids", "20")
    full = wait_for(lambda: (s := stats_of(scope, cid))["pids_current"] == 20 and s, timeout=20)
    assert full, f"the bomb never filled its 20 pids: {stats_of(scope, cid)}"
    assert full["pids_max"] == 20 and full["status"] == "running"
    assert len(read(os.path.join(v1_dir(scope, "pids", cid), "cgroup.procs")).split()) == 20
    removed = scope.nucleus("rm", "--force", cid, timeout=60)
    assert (removed.returncode, removed.stdout) == (0, f"{cid[:12]}\n"), describe(removed)
    scope.assert_clean()


# --- cpu --------------------------------------------------------------------------------------

BUSY = "while True: pass"


def test_cpus_limit_throttles(scope):
    requires_v1()
    cid = scope.detach(scope.python(BUSY), "--cpus", "0.2")
    assert read(os.path.join(v1_dir(scope, "cpu", cid), "cpu.cfs_quota_us")) == "20000"
    assert read(os.path.join(v1_dir(scope, "cpu", cid), "cpu.cfs_period_us")) == "100000"
    throttled = wait_for(lambda: (s := stats_of(scope, cid))["cpu_nr_throttled"] and s, timeout=20)
    assert throttled, f"never throttled: {stats_of(scope, cid)}"
    print(f"\n{throttled}")
    assert throttled["cpu_nr_periods"] > 0
    assert throttled["cpu_nr_throttled"] > 0 and throttled["cpu_throttled_usec"] > 0
    table = scope.nucleus("stats", cid)
    assert table.returncode == 0, describe(table)
    header, row = table.stdout.splitlines()
    assert re.split(r"\s{2,}", header) == [
        "ID", "NAME", "STATUS", "MEMORY", "CPU TIME", "THROTTLED", "PIDS"], table.stdout
    assert int(re.split(r"\s{2,}", row)[5]) > 0, table.stdout
    removed = scope.nucleus("rm", "--force", cid)
    assert removed.returncode == 0, describe(removed)
    scope.assert_clean()


# --- the cgroup files -------------------------------------------------------------------------


def block_device() -> str | None:
    """MAJ:MIN of a real disk of this machine (no loop, ram or zram device)."""
    for name in sorted(os.listdir("/sys/block")):
        if not name.startswith(("loop", "ram", "zram", "dm-", "md")):
            return read(f"/sys/block/{name}/dev")
    return None


@pytest.mark.parametrize("swap", [None, "16M"], ids=["no-swap", "swap-16M"])
def test_limits_are_written_to_the_cgroup_files(scope, swap):
    requires_v1()
    device = block_device()
    options = ["--memory", "64M", "--pids", "33", "--cpus", "0.5", "--cpu-weight", "200"]
    if swap:
        options += ["--swap", swap]
    if device:
        options += ["--io-limit", f"{device} rbps=10M wiops=100"]
    cid = scope.detach(scope.sh("while :; do sleep 1; done"), *options)
    record = scope.wait_status(cid, "running")
    memory = v1_dir(scope, "memory", cid)
    assert "cgroup" not in record  # its paths are planned again from its id, never read back
    assert read(f"{memory}/memory.limit_in_bytes") == str(64 * MiB)
    if os.path.exists(f"{memory}/memory.memsw.limit_in_bytes"):
        # No swap unless asked: memory+swap is the memory limit itself.
        assert read(f"{memory}/memory.memsw.limit_in_bytes") == str(64 * MiB + (16 * MiB if swap else 0))
    assert read(f"{memory}/memory.soft_limit_in_bytes") == str(64 * MiB * 90 // 100 // PAGE * PAGE)
    cpu = v1_dir(scope, "cpu", cid)
    assert read(f"{cpu}/cpu.cfs_period_us") == "100000"
    assert read(f"{cpu}/cpu.cfs_quota_us") == "50000"
    assert read(f"{cpu}/cpu.shares") == str(2 + (200 - 1) * 262142 // 9999)
    assert read(os.path.join(v1_dir(scope, "pids", cid), "pids.max")) == "33"
    if device:
        blkio = v1_dir(scope, "blkio", cid)
        assert read(f"{blkio}/blkio.throttle.read_bps_device") == f"{device} {10 * MiB}"
        assert read(f"{blkio}/blkio.throttle.write_iops_device") == f"{device} 100"
    # The container's processes are in the group, in every hierarchy nucleus uses.
    for controller in ("memory", "cpu", "pids"):
        procs = read(os.path.join(v1_dir(scope, controller, cid), "cgroup.procs")).split()
        assert str(record["init_pid"]) in procs, (controller, procs)
    stats = stats_of(scope, cid)
    assert (stats["memory_max"], stats["pids_max"]) == (64 * MiB, 33), stats
    stopped = scope.nucleus("stop", "--timeout", "1", cid)
    assert stopped.returncode == 0, describe(stopped)
    removed = scope.nucleus("rm", cid)
    assert removed.returncode == 0, describe(removed)
    scope.assert_clean()


def test_parent_is_removed_only_once_empty(scope):
    first = scope.detach(scope.sh("while :; do sleep 1; done"))
    result = scope.nucleus(*scope.run_args(), "--", "true")
    assert result.returncode == 0, describe(result)
    # The foreground run's group is gone; the parent stays for the detached container.
    assert scope.container_cgroups(first) != []
    parent_children = {tuple(sorted(e.name for e in os.scandir(d) if e.is_dir()))
                       for d in scope.cgroup_dirs()}
    assert parent_children == {(first,)}, parent_children
    removed = scope.nucleus("rm", "--force", first)
    assert removed.returncode == 0, describe(removed)
    assert scope.cgroup_dirs() == []
    scope.assert_clean()


# --- rlimits ----------------------------------------------------------------------------------

RLIMITS = """\
import json, resource
print(json.dumps({n: resource.getrlimit(getattr(resource, "RLIMIT_" + n.upper()))
                  for n in ("nofile", "nproc", "memlock")}))
"""


def capped(want: int, res: int) -> int:
    _soft, hard = resource.getrlimit(res)  # nucleus inherits this process's limits
    return want if hard == resource.RLIM_INFINITY else min(want, hard)


@pytest.mark.parametrize("options,nproc,memlock", [
    ([], 512, 64 * 1024),
    (["--pids", "100"], 100, 64 * 1024),
    (["--pids", "4194304"], 4194304, 64 * 1024),
    (["--memlock", "1M"], 512, MiB),
    (["--memlock", "8T"], 512, 8 << 40),
], ids=["defaults", "pids-100", "pids-above-hard-limit", "memlock-1M", "memlock-above-hard-limit"])
def test_rlimits_inside(scope, options, nproc, memlock):
    result = scope.nucleus(*scope.run_args(*options), "--", *scope.python(RLIMITS))
    assert result.returncode == 0, describe(result)
    limits = json.loads(result.stdout)
    nproc = capped(nproc, resource.RLIMIT_NPROC)
    memlock = capped(memlock, resource.RLIMIT_MEMLOCK)
    assert limits == {"nofile": [1024, 1024], "nproc": [nproc, nproc],
                      "memlock": [memlock, memlock]}, limits
    scope.assert_clean()


def test_ulimit_in_a_shell(scope):
    result = scope.nucleus(*scope.run_args(), "--", *scope.sh("ulimit -n; ulimit -Hn; ulimit -l"))
    assert result.returncode == 0, describe(result)
    assert result.stdout == "1024\n1024\n64\n"
    scope.assert_clean()


# --- cgroup namespace -------------------------------------------------------------------------


def cgroup_lines(scope: Scope, *options: str) -> dict[str, str]:
    result = scope.nucleus(*scope.run_args(*options), "--", "cat", "/proc/self/cgroup")
    assert result.returncode == 0, describe(result)
    out = {}
    for line in result.stdout.splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") or [""]:
            out[c] = path
    return out


def test_cgroup_namespace_hides_host_paths(scope):
    lines = cgroup_lines(scope)
    assert lines and set(lines.values()) == {"/"}, lines
    scope.assert_clean()


def test_disable_cgroup_namespace_shows_host_paths(scope):
    requires_v1()
    lines = cgroup_lines(scope, "--disable-cgroup-namespace")
    used = {c: lines.get(c) for c in ("memory", "cpu", "pids")}
    ids = {re.fullmatch(rf"/{scope.cgroup_parent}/([0-9a-f]{{32}})", p or "") for p in used.values()}
    assert None not in ids, lines
    assert len({m.group(1) for m in ids}) == 1, lines  # one group, in every hierarchy
    scope.assert_clean()


# --- cgroup failures in agent mode ------------------------------------------------------------


@pytest.mark.parametrize("intent,step", [
    ("CreateCgroup", "create"), ("SetCgroupLimits", "limits"), ("AttachCgroup", "attach"),
])
def test_cgroup_failure_is_a_warning_in_agent_mode(scope, intent, step):
    result = scope.nucleus(*scope.run_args("--disable-cgroup-namespace", "--pids", "20"), "--",
                           *scope.sh("echo ran; grep :memory: /proc/self/cgroup"),
                           extra_env={"NUCLEUS_FAIL_AT": intent})
    assert result.returncode == 0, describe(result)
    assert result.stderr == (f"warning: cgroup {step} failed (injected failure of {intent} #1); "
                             "running without resource limits\n")
    ran, memory = result.stdout.splitlines()
    assert ran == "ran"
    assert f"/{scope.cgroup_parent}/" not in memory  # it ran outside any group of nucleus's
    scope.assert_clean()
