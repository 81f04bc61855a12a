"""A run's supervisor handing over to the keeper (nucleus/init/keeper.c, nucleus.app.keeper) on the
real kernel: once the workload has run a moment, the supervisor's pid executes the keeper, which
forwards signals to the container, starts the violation monitor when a refused call waits, and
executes the teardown when the container ends. What a user has is unchanged: the workload's
status, its signals, the violation stream, a teardown that leaves nothing behind, one trace of
the run that replay accepts; a keeper killed leaves what `nucleus rm --force` reclaims.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from nucleus.effects.process import KEEPER
from nucleus.trace import itf, replay
from tests.helpers import SANDBOX, Scope, describe, read_proc, wait_for, wait_for_line
from tests.kernel.audit_support import POLICY, audit_on  # noqa: F401 - a fixture
from tests.kernel.manage_support import ok, started
from tests.kernel.test_production_service import _children

pytestmark = [SANDBOX, pytest.mark.requires("keeper")]

TERM_7 = 'trap "echo got TERM; exit 7" TERM; echo ready; while :; do sleep 0.05; done'


@pytest.fixture
def scope():
    with Scope() as s:
        yield s


def _kept(pid: int) -> bool:
    """Whether process `pid` is the keeper now."""
    try:
        return os.readlink(f"/proc/{pid}/exe") == KEEPER
    except OSError:
        return False


def test_a_foreground_run_hands_over_and_keeps_its_signals_status_teardown_and_trace(scope, tmp_path):
    trace = tmp_path / "run.itf.json"
    proc = scope.popen(*scope.run_args("--trace", str(trace)), "--", *scope.sh(TERM_7),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, text=False)
    try:
        assert wait_for_line(proc.stdout, "ready") == ["ready"]
        assert wait_for(lambda: _kept(proc.pid), timeout=10), "the supervisor never became the keeper"
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out, err) == (7, b"got TERM\n", b"")
    scope.assert_clean()
    recorded = itf.load(str(trace))
    assert replay.replay(recorded) is None
    events = [m.get("event", {}).get("t") for m in recorded.state_meta]
    assert events.count("Start") == 1 and events[-2:] == ["CleanupDone", "Remove"], events
    checked = scope.nucleus("trace", "check", str(trace), timeout=300)
    assert checked.returncode == 0 and checked.stdout.endswith("1 of 1 traces are behaviours of their spec\n"), \
        describe(checked)


def test_a_detached_run_hands_over_and_stops_removes_as_before(scope):
    cid = started(scope, TERM_7, name="kept")
    supervisor = scope.record(cid)["supervisor_pid"]
    assert wait_for(lambda: _kept(supervisor), timeout=10), "the supervisor never became the keeper"
    ok(scope.nucleus("stop", "kept"), "kept\n")
    record = scope.wait_finished(cid)
    assert (record["status"], record["exit_code"]) == ("stopped", 7), record
    assert scope.log(cid) == "ready\ngot TERM\n"
    ok(scope.nucleus("rm", "kept"), "kept\n")
    scope.assert_clean()


REFUSED_TWICE = ('echo ready; read x; unshare -U true 2>/dev/null; echo "unshare $?"; '
                 'read y; unshare -U true 2>/dev/null; echo "again $?"')


def test_refusals_long_after_the_handover_are_answered_and_recorded(scope, tmp_path):
    copy = tmp_path / "violations.ndjson"
    proc = scope.popen(*scope.run_args("-i", "--violations", str(copy)), "--", *scope.sh(REFUSED_TWICE),
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, text=False)
    try:
        assert wait_for_line(proc.stdout, "ready") == ["ready"]
        assert wait_for(lambda: _kept(proc.pid), timeout=10), "the supervisor never became the keeper"
        assert _children(proc.pid) == [scope.record(_only_id(scope))["init_pid"]]  # no monitor yet
        proc.stdin.write(b"\n")
        assert wait_for_line(proc.stdout, "unshare 1") == ["unshare 1"]
        # The monitor it started has ended (nothing more to do): the next refusal starts another.
        assert wait_for(lambda: len(_children(proc.pid)) == 1, timeout=10), _children(proc.pid)
        proc.stdin.write(b"\n")
        out, err = proc.communicate(timeout=30)  # which closes its stdin
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out, err) == (0, b"again 1\n", b""), (out, err)
    found = [json.loads(line) for line in copy.read_text().splitlines()]
    assert [(r["layer"], r["operation"], r["action"]) for r in found] == [("seccomp", "unshare", "errno EPERM")] * 2, found
    scope.assert_clean()


def _after_the_handover(proc: subprocess.Popen) -> tuple[bytes, bytes]:
    """Once the workload says "ready" and the supervisor is the keeper, let the workload go on
    (a line on its stdin); its output and errors once it ends."""
    try:
        assert wait_for_line(proc.stdout, "ready") == ["ready"]
        assert wait_for(lambda: _kept(proc.pid), timeout=10), "the supervisor never became the keeper"
        proc.stdin.write(b"\n")
        return proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.usefixtures("audit_on")
def test_a_landlock_denial_after_the_handover_is_recorded(scope, tmp_path):
    policy = tmp_path / "landlock.toml"
    policy.write_text(POLICY)
    copy = tmp_path / "violations.ndjson"
    script = 'echo ready; read x; echo x 2>/dev/null > /tmp/x; echo "write $?"'
    proc = scope.popen(*scope.run_args("-i", "--landlock-policy", str(policy), "--violations", str(copy)), "--",
                       *scope.sh(script), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       bufsize=0, text=False)
    out, err = _after_the_handover(proc)
    assert (proc.returncode, out, err) == (0, b"write 2\n", b""), (out, err)  # sh: 2 is a failed redirection
    found = [json.loads(line) for line in copy.read_text().splitlines()]
    assert [(r["layer"], r["operation"], r["object"]) for r in found] == [("landlock", "write_file", "/tmp/x")], found
    scope.assert_clean()


def test_a_seccomp_kill_after_the_handover_is_said_as_before(scope):
    proc = scope.popen(*scope.run_args("-i", "--seccomp-default-action", "kill"), "--",
                       *scope.sh("echo ready; read x; exec unshare -U true"),
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, text=False)
    out, err = _after_the_handover(proc)
    assert (proc.returncode, out) == (128 + signal.SIGSYS, b""), (out, err)
    assert err.decode().startswith("blocked: unshare(CLONE_NEWUSER) "), err
    scope.assert_clean()


def _only_id(scope: Scope) -> str:
    (cid,) = scope.records()
    return cid


def test_a_keeper_killed_leaves_what_rm_force_reclaims(scope):
    cid = started(scope, TERM_7, name="orphan")
    supervisor = scope.record(cid)["supervisor_pid"]
    assert wait_for(lambda: _kept(supervisor), timeout=10), "the supervisor never became the keeper"
    os.kill(supervisor, signal.SIGKILL)
    assert wait_for(lambda: (p := read_proc(supervisor)) is None or not p.alive, timeout=10)
    listed = scope.nucleus("ps", "--all", "--format", "json")
    assert listed.returncode == 0, describe(listed)
    (row,) = json.loads(listed.stdout)
    assert row["status"].startswith("lost"), row
    ok(scope.nucleus("rm", "--force", "orphan"), "orphan\n")
    scope.assert_clean()
