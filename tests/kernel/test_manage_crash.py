"""Crash recovery on the real kernel: a supervisor killed at any step of a container's setup or
teardown, or while the container runs, leaves nothing that `nucleus rm --force` does not reclaim
(each test in a Scope of its own, as test_manage.py explains)."""

from __future__ import annotations

import os
import signal

import pytest

from tests.helpers import SANDBOX_WITH_PYTHON, Scope, describe, kill_paused, wait_for
from tests.kernel.manage_support import fails, gone, ok, ps_json, started, stopped_state

pytestmark = SANDBOX_WITH_PYTHON


@pytest.fixture
def scope():
    with Scope() as s:
        yield s


# Every step of a container's setup, in order (later occurrences: some mounts already exist),
# then the steps of its teardown.
SETUP_STEPS = [
    "CreateCgroup", "SetCgroupLimits", "SpawnChild", "AttachCgroup", "Unshare", "ForkInit",
    "SetHostname", "LoopbackUp", "SetPropagation", "MountFs", "MakeDirs", "MakeSymlinks",
    "BindMount", "WriteFile", "MountFs#2", "BindMount#3", "MountFs#4", "RemountFs", "MaskPaths",
    "RemountFs#3", "PivotRoot", "DetachOldRoot", "EnterUserNamespace", "WriteIdMaps",
    "BecomeRoot", "DropCapabilities", "LoadSeccomp", "ApplyLandlock", "ExecWorkload",
]
TEARDOWN_STEPS = ["Cleanup", "RemoveCgroup"]


def _crash_workload(scope: Scope, step: str) -> list[str]:
    # Past setup, the workload must end by itself for the teardown to begin.
    return scope.sh("exit 0" if step in TEARDOWN_STEPS else "echo ran; sleep 1000")


def _reclaim(scope: Scope, step: str) -> None:
    records = scope.records()
    assert len(records) == 1, f"paused at {step}: records {list(records)}"
    (cid, record), = records.items()
    removed = scope.nucleus("rm", "--force", cid)
    ok(removed, f"{record['name']}\n")
    scope.assert_clean()


@pytest.mark.parametrize("step", SETUP_STEPS + TEARDOWN_STEPS)
def test_supervisor_killed_at_any_step_then_rm_force_leaves_nothing(scope, step):
    proc = scope.popen(*scope.run_args("--memory", "64M"), "--", *_crash_workload(scope, step),
                       extra_env={"NUCLEUS_PAUSE_AT": step}, text=False, bufsize=0)
    kill_paused(proc, step)
    _reclaim(scope, step)


@pytest.mark.parametrize("step", SETUP_STEPS + TEARDOWN_STEPS)
def test_detached_supervisor_killed_at_any_step_then_rm_force_leaves_nothing(scope, step):
    name = step.partition("#")[0]
    cli = scope.popen(*scope.run_args("-d", "--memory", "64M"), "--", *_crash_workload(scope, step),
                      extra_env={"NUCLEUS_PAUSE_AT": step})
    try:
        cid = wait_for(lambda: next(iter(scope.records()), None), timeout=20)
        assert cid, f"no record appeared for a run paused at {step}"
        scope.wait_log(cid, lambda text: f"paused {name}\n" in text)
        supervisor = scope.record(cid)["supervisor_pid"]
        assert wait_for(lambda: stopped_state(supervisor)), f"the supervisor did not stop at {step}"
        os.kill(supervisor, signal.SIGKILL)
        assert wait_for(lambda: gone(supervisor))
        out, err = cli.communicate(timeout=30)
    finally:
        cli.kill()
        cli.wait()
    if step in TEARDOWN_STEPS:
        assert (cli.returncode, out) == (0, f"{cid}\n"), (cli.returncode, out, err)
    else:
        assert (cli.returncode, out, err) == (
            125, "", "error: the supervisor exited before the container started\n"
            f"hint: nucleus rm --force {scope.record(cid)['name']} reclaims what it left\n")
        row, = ps_json(scope, "--all")
        assert (row["status"], row["reason"]) == (
            "lost", "the supervisor is gone; nucleus rm --force cleans up")
    _reclaim(scope, step)


def test_supervisor_of_a_running_container_killed_then_rm_force_leaves_nothing(scope):
    cid = started(scope)
    supervisor = scope.record(cid)["supervisor_pid"]
    os.kill(supervisor, signal.SIGKILL)
    assert wait_for(lambda: gone(supervisor))
    row, = ps_json(scope, "--all")
    assert (row["id"], row["status"], row["reason"]) == (
        cid, "lost", "the supervisor is gone; nucleus rm --force cleans up")
    refused = scope.nucleus("rm", "web")
    assert refused.returncode == 125, describe(refused)
    assert refused.stderr.splitlines()[0] == "error: cannot remove container 'web': it is lost"
    fails(scope.nucleus("kill", "web"), 125, "error: cannot kill container 'web': it is lost\n")
    ok(scope.nucleus("rm", "--force", "web"), "web\n")
    scope.assert_clean()
