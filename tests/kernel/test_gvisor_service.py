"""A long-running service under `--runtime gvisor` on this machine's runsc: the health checks and
the readiness command run in the sandbox through `runsc exec`, an unhealthy service is restarted
(a new sandbox, the same record), --restart on-failure runs it again as often as it says, stop
ends the loop, --sd-notify says READY=1 once the readiness command succeeds, and what gVisor
cannot serve (a TCP port as readiness, the workload's own notification) is refused by name."""

from __future__ import annotations

import os
import socket
import tempfile

import pytest

from tests.gvisor_support import gvisor_scope
from tests.helpers import describe, wait_for
from tests.kernel.manage_support import ok, row_of
from tests.kernel.test_service_run import QUICK, SERVICE, _service

pytestmark = pytest.mark.requires("root", "bin:runsc")



@pytest.fixture
def scope():
    with gvisor_scope() as s:
        yield s


def test_health_checks_run_in_the_sandbox_and_an_unhealthy_one_is_restarted(scope):
    cid = scope.detach(scope.sh(SERVICE), "--runtime", "gvisor", "--name", "gv-svc",
                       "--health-cmd", "test -e /tmp/ok && echo fine", *QUICK, "--restart", "always",
                       "--readiness-exec", "test -e /tmp/ok")
    # Each check is a runsc exec: a sandbox's first ones take their time.
    assert wait_for(lambda: _service(scope, cid).get("health") == "healthy", timeout=60), scope.record(cid)
    service = _service(scope, cid)
    assert service["ready"] is True and service["log"][-1]["output"] == "fine\n", service
    ok(scope.nucleus("exec", "gv-svc", "/bin/rm", "/tmp/ok"))  # /tmp is the sandbox's own
    assert wait_for(lambda: _service(scope, cid).get("restarts") == 1
                    and _service(scope, cid).get("health") == "healthy", timeout=90), scope.record(cid)
    record = scope.record(cid)
    assert record["status"] == "running" and record["runtime"] == "gvisor", record
    assert "unhealthy: 2 checks failed in a row" in scope.log(cid)
    assert row_of(scope.nucleus("ps").stdout, cid)[2] == "running (healthy, restarts 1)"
    ok(scope.nucleus("stop", "gv-svc", timeout=60), "gv-svc\n")
    record = scope.wait_finished(cid)
    assert record["service"]["restarts"] == 1 and record["service"]["phase"] == "finished", record
    ok(scope.nucleus("rm", "gv-svc", timeout=60), "gv-svc\n")
    assert scope.record(cid) is None


def test_restart_on_failure_runs_it_again_as_often_as_it_says(scope):
    # runsc's gofer opens a volume as the container's mapped root: every directory above it
    # must let that id through (pytest's tmp_path is root's alone).
    with tempfile.TemporaryDirectory(prefix="nucleus-test-gvisor-") as out:
        os.chmod(out, 0o777)
        result = scope.nucleus(*scope.run_args("--runtime", "gvisor", "--restart", "on-failure:2", "-v",
                                               f"{out}:/out:rw"),
                               "--", *scope.sh("echo run >> /out/runs; exit 3"), timeout=180)
        assert result.returncode == 3, describe(result)
        with open(os.path.join(out, "runs")) as f:
            assert f.read() == "run\nrun\nrun\n"
    assert scope.nucleus("ps", "--all", "--format", "json").stdout.strip() == "[]"


@pytest.mark.parametrize(("flag", "named"), [(("--readiness-tcp", "8080"), "--readiness-tcp"),
                                            (("--readiness-sd-notify",), "--readiness-sd-notify")])
def test_what_gvisor_cannot_serve_is_refused_by_name(scope, flag, named):
    result = scope.nucleus(*scope.run_args("--runtime", "gvisor", *flag), "--", "/bin/true",
                           extra_env={"NOTIFY_SOCKET": "/run/nothing-here.sock"})
    assert result.returncode == 125 and f"{named} with --runtime gvisor: " in result.stderr, describe(result)


def test_sd_notify_says_ready_once_the_readiness_command_succeeds(scope):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            sock.settimeout(60)
            result = scope.nucleus(*scope.run_args("--runtime", "gvisor", "--sd-notify", "--readiness-exec",
                                                   "test -e /tmp/up"),
                                   "--", *scope.sh("touch /tmp/up; sleep 3; echo hi"),
                                   extra_env={"NOTIFY_SOCKET": path}, timeout=120)
            assert (result.returncode, result.stdout) == (0, "hi\n"), describe(result)
            assert sock.recv(4096).split(b"\n")[0] == b"READY=1"
