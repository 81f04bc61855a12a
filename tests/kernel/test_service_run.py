"""A long-running service on the real kernel: health checks joined into the container, health in
ps and inspect, restarts (after an unhealthy verdict, on failure, always) with the same record,
readiness gating systemd's READY=1, and stop ending a restart loop. Each test works in a Scope of
its own and ends with nothing of it left on the host."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time

import pytest

from tests.helpers import SANDBOX_WITH_PYTHON, Scope, describe, wait_for
from tests.kernel.manage_support import ok, row_of

pytestmark = SANDBOX_WITH_PYTHON

QUICK = ("--health-interval", "200ms", "--health-retries", "2", "--health-start-period", "0")
SERVICE = "touch /tmp/ok; echo ready; while :; do sleep 0.05; done"


@pytest.fixture
def scope():
    with Scope() as s:
        yield s


def _inspect(scope: Scope, cid: str) -> dict:
    result = scope.nucleus("inspect", cid)
    assert result.returncode == 0, describe(result)
    return json.loads(result.stdout)


def _service(scope: Scope, cid: str) -> dict:
    return (scope.record(cid) or {}).get("service") or {}


def test_an_unhealthy_service_shows_it_in_ps_and_inspect(scope):
    cid = scope.detach(scope.sh(SERVICE), "--name", "svc", "--health-cmd", "test -e /tmp/ok && echo fine",
                       *QUICK, "--health-on-unhealthy", "none")
    assert wait_for(lambda: _service(scope, cid).get("health") == "healthy", timeout=10), scope.record(cid)
    assert row_of(scope.nucleus("ps").stdout, cid)[2] == "running (healthy)"
    assert {"exit_code": 0, "output": "fine\n"}.items() <= _inspect(scope, cid)["service"]["log"][-1].items()
    ok(scope.nucleus("exec", "svc", "rm", "/tmp/ok"))
    assert wait_for(lambda: _service(scope, cid).get("health") == "unhealthy", timeout=10), scope.record(cid)
    assert row_of(scope.nucleus("ps").stdout, cid)[2] == "running (unhealthy)"
    seen = _inspect(scope, cid)
    assert seen["health"] == "unhealthy" and seen["status"] == "running"
    last = seen["service"]["log"][-1]
    assert last["exit_code"] == 1 and last["output"] == "" and not last["timed_out"]
    ok(scope.nucleus("rm", "--force", "svc"), "svc\n")
    scope.assert_clean()


def test_an_unhealthy_service_is_restarted_and_healthy_again(scope):
    cid = scope.detach(scope.sh(SERVICE), "--name", "svc", "--health-cmd", "test -e /tmp/ok", *QUICK,
                       "--restart", "always")
    assert wait_for(lambda: _service(scope, cid).get("health") == "healthy", timeout=10)
    first = scope.record(cid)["init_pid"]
    ok(scope.nucleus("exec", "svc", "rm", "/tmp/ok"))
    assert wait_for(lambda: _service(scope, cid).get("restarts") == 1
                    and _service(scope, cid).get("health") == "healthy", timeout=20), scope.record(cid)
    record = scope.record(cid)
    assert record["status"] == "running" and record["init_pid"] != first
    assert "unhealthy: 2 checks failed in a row" in scope.log(cid)
    table = scope.nucleus("ps")
    assert row_of(table.stdout, cid)[2] == "running (healthy, restarts 1)", describe(table)
    ok(scope.nucleus("stop", "svc"), "svc\n")
    record = scope.wait_finished(cid)
    assert record["service"]["restarts"] == 1 and record["service"]["phase"] == "finished"
    ok(scope.nucleus("rm", "svc"), "svc\n")
    scope.assert_clean()


def test_a_check_past_its_timeout_is_killed_with_everything_it_started(scope):
    cid = scope.detach(scope.sh(SERVICE), "--name", "svc", "--health-cmd", "sleep 61.25 & sleep 61.5",
                       "--health-timeout", "300ms", *QUICK, "--health-on-unhealthy", "none")
    assert wait_for(lambda: _service(scope, cid).get("health") == "unhealthy", timeout=15), scope.record(cid)
    log = _inspect(scope, cid)["service"]["log"]
    assert all(r["timed_out"] and r["exit_code"] == 137 for r in log), log
    assert "ran past its timeout (0.3s)" in log[-1]["output"]
    ok(scope.nucleus("rm", "--force", "svc"), "svc\n")
    # Only now, with the checks' own cgroup-less processes too: nothing of any check is left.
    scope.assert_clean()
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p).startswith("sleep\0" "61.")]


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            return f.read()
    except OSError:
        return ""


def test_on_failure_restarts_twice_then_stays_stopped_with_the_status(scope):
    result = scope.nucleus(*scope.run_args("--restart", "on-failure:2"), "--", *scope.sh("echo run; exit 3"))
    assert (result.returncode, result.stdout) == (3, "run\nrun\nrun\n"), describe(result)
    cid = scope.detach(scope.sh("echo run; exit 3"), "--name", "svc", "--restart", "on-failure:2")
    record = scope.wait_finished(cid)
    assert (record["exit_code"], record["service"]["restarts"]) == (3, 2)
    assert scope.log(cid) == "run\nrun\nrun\n"
    assert row_of(scope.nucleus("ps", "--all").stdout, cid)[2] == "stopped (3, restarts 2)"
    ok(scope.nucleus("rm", "svc"), "svc\n")
    scope.assert_clean()


def test_stop_during_the_backoff_ends_the_restarts(scope):
    cid = scope.detach(scope.sh("exit 1"), "--name", "svc", "--restart", "always")
    # 0.1 s doubling: the sixth restart waits 3.2 s.
    assert wait_for(lambda: _service(scope, cid).get("restarts", 0) >= 6, timeout=20), scope.record(cid)
    assert row_of(scope.nucleus("ps").stdout, cid)[2].startswith("restarting")
    restarts = _service(scope, cid)["restarts"]
    ok(scope.nucleus("stop", "svc"), "svc\n")
    record = scope.wait_finished(cid, timeout=5)
    time.sleep(0.5)
    assert scope.record(cid)["service"]["restarts"] == restarts and record["status"] == "stopped"
    ok(scope.nucleus("rm", "svc"), "svc\n")
    scope.assert_clean()


def test_readiness_tcp_gates_ready_on_the_notify_socket(scope):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            listener = ("import socket,time; time.sleep(1); s=socket.socket(); "
                        "s.bind(('127.0.0.1', 8080)); s.listen(); print('listening', flush=True); time.sleep(100)")
            cid = scope.detach(scope.python(listener), "--name", "svc", "--readiness-tcp", "8080",
                               "--sd-notify", extra_env={"NOTIFY_SOCKET": path})
            sock.settimeout(15)
            message = sock.recv(4096)
            # READY=1 arrives only once the workload listens (it said so before it could accept).
            assert scope.log(cid) == "listening\n"
            assert message.split(b"\n")[0] == b"READY=1", message
            assert _service(scope, cid)["ready"] is True
            sock.settimeout(0.5)
            with pytest.raises(TimeoutError):
                sock.recv(4096)  # once per service
    ok(scope.nucleus("rm", "--force", "svc"), "svc\n")
    scope.assert_clean()


def test_sd_notify_without_readiness_says_ready_once_started(scope):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            sock.settimeout(15)
            result = scope.nucleus(*scope.run_args("--sd-notify"), "--", *scope.sh("echo hi"),
                                   extra_env={"NOTIFY_SOCKET": path})
            assert (result.returncode, result.stdout) == (0, "hi\n"), describe(result)
            assert sock.recv(4096) == b"READY=1\nSTATUS=service started\n"
    scope.assert_clean()


@pytest.mark.parametrize(("flags", "message"), [
    (("--health-cmd", "true", "--health-interval", "soon"), "error: --health-interval 'soon': not a duration\n"),
    (("--health-timeout", "5s"), "error: --health-timeout '5s': there is no --health-cmd to apply it to\n"),
    (("--restart", "sometimes"), "error: --restart 'sometimes': expected no, on-failure[:N] or always\n"),
    (("--readiness-tcp", "70000"), "error: --readiness-tcp '70000': expected a whole number from 1 to 65535\n"),
])
def test_bad_service_flags_are_refused_before_anything_happens(scope, flags, message):
    result = scope.nucleus(*scope.run_args(*flags), "--", "/bin/true")
    assert result.returncode == 125 and result.stderr.startswith(message), describe(result)
    scope.assert_clean()
