"""The service paths beside the common ones (tests/kernel/test_service_run.py): readiness by a
command, the workload's own READY=1 through the supervisor's relay, a foreground run ended by its
health check, a supervisor killed during the backoff, and a setup that fails in a restart. Each
test works in a Scope of its own and ends with nothing of it left on the host."""

from __future__ import annotations

import os
import signal
import socket
import tempfile

import pytest

from tests.helpers import SANDBOX_WITH_PYTHON, Scope, describe, wait_for
from tests.kernel.manage_support import ok

pytestmark = SANDBOX_WITH_PYTHON


@pytest.fixture
def scope():
    with Scope() as s:
        yield s


@pytest.fixture
def notify_socket():
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        path = os.path.join(tmp, "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            os.chmod(path, 0o777)
            sock.settimeout(15)
            yield path, sock


def _service(scope: Scope, cid: str) -> dict:
    return (scope.record(cid) or {}).get("service") or {}


def test_readiness_exec_gates_ready(scope, notify_socket):
    path, sock = notify_socket
    cid = scope.detach(scope.sh("sleep 1; echo made; touch /tmp/ready; while :; do sleep 0.05; done"),
                       "--name", "svc", "--readiness-exec", "test -e /tmp/ready", "--sd-notify",
                       extra_env={"NOTIFY_SOCKET": path})
    message = sock.recv(4096)
    assert message == b"READY=1\nSTATUS=service ready\n", message
    assert scope.log(cid) == "made\n"  # the command passed only once the file was there
    assert _service(scope, cid)["ready"] is True
    ok(scope.nucleus("rm", "--force", "svc"), "svc\n")
    scope.assert_clean()


def _run_notified(scope: Scope, path: str, code: str):
    """A foreground run of Python `code` with --readiness-sd-notify under the "systemd" at `path`."""
    return scope.nucleus(*scope.run_args("--readiness-sd-notify"), "--", *scope.python(code),
                         extra_env={"NOTIFY_SOCKET": path})


def test_readiness_sd_notify_passes_on_only_ready_and_status(scope, notify_socket):
    path, sock = notify_socket
    code = ("import os, socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
            "to = os.environ['NOTIFY_SOCKET']; "
            "s.sendto(b'WATCHDOG=trigger\\nMAINPID=1\\n', to); s.sendto(b'STOPPING=1\\n', to); "
            "s.sendto(b'READY=1\\nSTATUS=from the workload\\nEXTEND_TIMEOUT_USEC=1\\n', to); "
            "s.sendto(b'READY=1\\n', to); print(to)")
    result = _run_notified(scope, path, code)
    assert (result.returncode, result.stdout) == (0, "/run/nucleus/notify\n"), describe(result)
    # The messages were queued in order: once READY=1 arrives, the ones before it were dropped.
    assert sock.recv(4096) == b"READY=1\nSTATUS=from the workload\n"
    sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        sock.recv(4096)  # neither WATCHDOG=trigger, MAINPID=1, STOPPING=1 nor a second READY=1
    for line in ("WATCHDOG=trigger", "MAINPID=1", "STOPPING=1", "EXTEND_TIMEOUT_USEC=1"):
        assert f"warning: the workload's sd_notify '{line}' was not passed on" in result.stderr, result.stderr
    scope.assert_clean()


def test_readiness_sd_notify_binds_no_host_socket(scope, notify_socket):
    path, _ = notify_socket
    code = ("import os, stat; st = os.stat(os.environ['NOTIFY_SOCKET']); "
            "roots = [f[3] for f in (line.split() for line in open('/proc/self/mountinfo')) "
            "if f[4] == os.environ['NOTIFY_SOCKET']]; "
            "print(stat.S_ISSOCK(st.st_mode), oct(st.st_mode & 0o777), *roots)")
    result = _run_notified(scope, path, code)
    assert result.returncode == 0, describe(result)
    is_socket, mode, root = result.stdout.split()
    # The supervisor's own socket in the state directory, not the service manager's.
    assert (is_socket, mode) == ("True", "0o622")
    assert root.endswith(".notify") and "/containers/" in root and not root.endswith(path), root
    scope.assert_clean()


def test_a_detached_service_is_ready_when_its_workload_says_so(scope, notify_socket):
    path, sock = notify_socket
    code = ("import os, socket, time; time.sleep(0.5); s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
            "s.sendto(b'READY=1\\n', os.environ['NOTIFY_SOCKET']); time.sleep(600)")
    cid = scope.detach(scope.python(code), "--name", "svc", "--readiness-sd-notify",
                       extra_env={"NOTIFY_SOCKET": path})
    relay = os.path.join(scope.state_dir, "containers", f"{cid}.notify")
    assert os.path.exists(relay)
    assert sock.recv(4096) == b"READY=1\n"
    assert wait_for(lambda: _service(scope, cid).get("ready") is True)
    ok(scope.nucleus("rm", "--force", "svc"), "svc\n")
    assert not os.path.lexists(relay)
    scope.assert_clean()


def test_a_foreground_run_is_ended_by_its_health_check(scope):
    result = scope.nucleus(*scope.run_args("--health-cmd", "test -e /tmp/ok", "--health-interval", "200ms",
                                           "--health-retries", "2", "--health-start-period", "0"),
                           "--", *scope.sh("touch /tmp/ok; echo up; sleep 1; rm /tmp/ok; sleep 60"))
    assert (result.returncode, result.stdout) == (143, "up\n"), describe(result)
    assert "nucleus: unhealthy: 2 checks failed in a row; ending the workload\n" in result.stderr
    scope.assert_clean()


def test_a_supervisor_killed_during_the_backoff_is_reclaimed_by_rm(scope):
    cid = scope.detach(scope.sh("exit 1"), "--name", "svc", "--restart", "always")
    # 0.1 s doubling: from the fifth restart on, each waits 1.6 s or more.
    assert wait_for(lambda: _service(scope, cid).get("restarts", 0) >= 5
                    and _service(scope, cid).get("phase") == "waiting", timeout=20), scope.record(cid)
    os.kill(scope.record(cid)["supervisor_pid"], signal.SIGKILL)
    ok(scope.nucleus("rm", "--force", "svc"), "svc\n")
    scope.assert_clean()


def test_a_setup_failure_in_a_restart_ends_the_service_saying_so(scope):
    result = scope.nucleus(*scope.run_args("--restart", "on-failure:3"), "--", *scope.sh("echo run; exit 3"),
                           extra_env={"NUCLEUS_FAIL_AT": "DropCapabilities#2"})
    assert (result.returncode, result.stdout) == (125, "run\n"), describe(result)
    assert result.stderr.startswith("error: restart 1 of the service: setup failed at sec."), describe(result)
    scope.assert_clean()
