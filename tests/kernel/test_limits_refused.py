"""Limits the host cannot honour, through `nucleus run` on the real kernel (issue 9).

Before anything starts, a value the host cannot take is refused as bad input (exit 125), naming
the flag, the value and what the host offers: a block device it does not have, more CPUs than
it has, a quota beyond what the kernel keeps. A limit the kernel still refuses at run time (here:
a CFS quota above its cgroup v1 parent's) drops only itself in agent mode, with a warning naming
it, while the other limits hold (the memory limit still stops an allocation); in strict-agent it
fails the run before the workload starts. A foreground workload the OOM killer ends is told so.

Every test works in a Scope of its own (tests.helpers): a private state directory and cgroup
parent, and nothing of either is left.
"""

from __future__ import annotations

import os
import re

import pytest

from tests.helpers import SANDBOX_WITH_PYTHON, Scope, describe

pytestmark = SANDBOX_WITH_PYTHON

CPU_V1 = "/sys/fs/cgroup/cpu"
ALLOCATE = "print('started', flush=True)\nb = bytearray(200 * 2**20)\nprint('survived')"
OOM = re.compile(r"nucleus: the workload was killed by the OOM killer \(memory limit 32 MiB, "
                 r"peak 3[12](\.\d)? MiB\)\n")


@pytest.fixture
def scope():
    with Scope() as s:
        yield s


def host_cpus() -> int:
    return len(os.sched_getaffinity(0))


def disks() -> str:
    found = sorted((n for n in os.listdir("/sys/dev/block")
                    if not os.path.exists(f"/sys/dev/block/{n}/partition")),
                   key=lambda d: tuple(map(int, d.split(":"))))
    return ", ".join(found)


@pytest.mark.parametrize("mode", ["agent", "strict-agent"])
def test_values_the_host_cannot_honour_are_refused_before_anything_starts(scope, mode):
    n = host_cpus()
    cases = [
        (["--memory", "64M", "--pids", "20", "--io-limit", "999:999 rbps=1M"],
         "error: --io-limit '999:999 rbps=1048576': this host has no block device 999:999\n"
         f"hint: this host's disks are {disks()} (lsblk -o NAME,MAJ:MIN lists them)\n"),
        (["--cpus", "1e12"], "error: --cpus '1e12': too large\nhint: the kernel's largest CPU quota "
         "is 175921860 CPUs; give at most the number of CPUs of the host\n"),
        (["--cpus", "1e308"], "error: --cpus '1e308': too large\nhint: the kernel's largest CPU "
         "quota is 175921860 CPUs; give at most the number of CPUs of the host\n"),
        (["--cpus", str(n + 1)], f"error: --cpus '{n + 1}': more than the {n} CPU{'s' if n != 1 else ''} "
         f"of this host\nhint: give at most {n} (the CPUs nucleus may run on here: its affinity "
         "and cpuset)\n"),
    ]
    for options, stderr in cases:
        result = scope.nucleus(*scope.run_args("--service-mode", mode, *options), "--",
                               *scope.sh("echo ran"))
        assert (result.returncode, result.stdout, result.stderr) == (125, "", stderr), describe(result)
    scope.assert_clean()


def test_a_foreground_oom_kill_is_told(scope):
    result = scope.nucleus(*scope.run_args("--memory", "32M"), "--", *scope.python(ALLOCATE))
    assert (result.returncode, result.stdout) == (137, "started\n"), describe(result)
    assert OOM.fullmatch(result.stderr), describe(result)
    scope.assert_clean()


def quota_capped_parent(scope: Scope) -> str:
    """The scope's cgroup parent made beforehand in the v1 cpu hierarchy with a quota of half a
    CPU: the kernel refuses a child's larger quota (EINVAL; cgroup v2 allows it)."""
    if not os.path.isfile(os.path.join(CPU_V1, "cpu.cfs_period_us")):
        pytest.skip(f"requires the cgroup v1 cpu hierarchy at {CPU_V1} (on cgroup v2 a child's "
                    "quota may exceed its parent's)")
    parent = os.path.join(CPU_V1, scope.cgroup_parent)
    os.mkdir(parent)
    with open(os.path.join(parent, "cpu.cfs_quota_us"), "w") as f:
        f.write("50000")
    return parent


def test_a_limit_refused_at_run_time_drops_only_itself_in_agent_mode(scope):
    parent = quota_capped_parent(scope)
    try:
        result = scope.nucleus(*scope.run_args("--memory", "32M", "--cpus", "1", "--pids", "20"),
                               "--", *scope.python(ALLOCATE))
        assert (result.returncode, result.stdout) == (137, "started\n"), describe(result)
        warning, oom = result.stderr.splitlines(keepends=True)
        assert re.fullmatch(
            rf"warning: --cpus not applied: writing '100000' to {parent}/[0-9a-f]{{32}}/"
            r"cpu\.cfs_quota_us failed: EINVAL \(Invalid argument\); running with the other "
            r"limits\n", warning), describe(result)
        assert OOM.fullmatch(oom), describe(result)  # the memory limit held
        assert os.listdir(parent) == [n for n in os.listdir(parent)
                                      if not os.path.isdir(os.path.join(parent, n))]
    finally:
        os.rmdir(parent)  # not nucleus's: it was there before the run
    scope.assert_clean()


def test_a_limit_refused_at_run_time_fails_a_strict_agent_run(scope):
    parent = quota_capped_parent(scope)
    try:
        result = scope.nucleus(*scope.run_args("--service-mode", "strict-agent", "--memory", "32M",
                                               "--cpus", "1"), "--", *scope.sh("echo ran"))
        assert (result.returncode, result.stdout) == (125, ""), describe(result)  # it never ran
        assert re.fullmatch(
            rf"error: setup failed at res\.limits: write '100000' to {parent}/[0-9a-f]{{32}}/"
            r"cpu\.cfs_quota_us: EINVAL \(Invalid argument\)\n", result.stderr), describe(result)
    finally:
        os.rmdir(parent)
    scope.assert_clean()
