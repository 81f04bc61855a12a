"""A service in production mode, end to end, in a closure made of this machine's own binaries
(tests.closure_support: dash, coreutils, python3 and what they load, under /nix/store paths the
test makes and removes), attested by `nucleus attest`:

- the compiled init is PID 1 and the workload its child;
- the service's secret is on the /run/secrets tmpfs, readable by the service's user only;
- readiness (an HTTP request answered) gates the READY=1 the test's own NOTIFY_SOCKET receives;
- the health check (the same request) turns unhealthy once the server stops answering, and the
  configured --restart sets the container up again, healthy;
- the audit log and the OTLP receiver the test starts on loopback see the lifecycle, the
  security steps, the secret's name and the health events;
- one byte changed in one file of the closure is refused before start, naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket

import pytest

from tests.closure_support import APP_UID, PYTHON, python_closure
from tests.helpers import SUBUID_BASE, Scope, describe, read_proc, wait_for
from tests.kernel.outputs_support import scope_fixture, secret_fixture  # noqa: F401 - fixtures
from tests.otlp_support import Receiver

pytestmark = pytest.mark.requires("root", "userns", "seccomp", "landlock", "mini-init")

LIMITS = ("--memory", "256M", "--cpus", "1")

# The service: it reads its secret, listens after a second (READY=1 must wait for it), answers
# GET / until it is asked GET /stop; from then on it accepts connections and never answers.
SERVER = r"""
import hashlib, http.server, os, time
with open("/run/secrets/api_key", "rb") as f:
    print("secret", hashlib.sha256(f.read()).hexdigest(), "parent", os.getppid(), flush=True)
silent = False
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global silent
        if silent:
            time.sleep(3600)
        silent = self.path == "/stop"
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")
    def log_message(self, *args):
        pass
time.sleep(1)
server = http.server.HTTPServer(("127.0.0.1", 8080), Handler)
print("listening", flush=True)
server.serve_forever()
"""


def request(path: str) -> str:
    return f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080{path}', timeout=2)"


PROBE = f'python3 -c "{request("/")}"'  # the health check and the readiness command


@pytest.fixture(scope="module")
def closure():
    with python_closure() as made:
        yield made


def production(rootfs: str) -> tuple[str, ...]:
    return ("--service-mode", "production", "--rootfs", rootfs, "--verify-rootfs-attestation", *LIMITS)


def service(scope: Scope, cid: str) -> dict:
    return (scope.record(cid) or {}).get("service") or {}


def exec_in(scope: Scope, *argv: str, user: str | None = None):
    return scope.nucleus("exec", *(("-u", user) if user else ()), "svc", *argv)


def events(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_production_service_end_to_end(closure, scope, secret, tmp_path):
    path, value = secret
    audit = tmp_path / "audit.jsonl"
    notify = tmp_path / "notify"
    with Receiver() as receiver, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify))
        sock.settimeout(60)
        cid = scope.detach(
            ["/usr/bin/python3", "-c", SERVER, scope.marker], *production(closure.rootfs), "--name", "svc",
            "--user", "app",
            "--secret", f"{path}:/run/secrets/api_key",
            "--health-cmd", PROBE, "--health-interval", "300ms", "--health-timeout", "3s",
            "--health-retries", "2", "--health-start-period", "3s", "--restart", "on-failure:3",
            "--readiness-exec", PROBE, "--sd-notify", "--audit-log", str(audit),
            "--otlp-endpoint", receiver.url,
            extra_env={"NOTIFY_SOCKET": str(notify), "OTEL_SERVICE_NAME": "shop"})
        # Readiness gates READY=1: it comes once the server answers, never before it listens.
        message = sock.recv(4096)
        assert message.split(b"\n")[0] == b"READY=1", message
        assert "listening\n" in scope.log(cid), scope.log(cid)
        assert service(scope, cid)["ready"] is True

        # The secret: read by the service (its digest in the log), on a tmpfs, the user's alone.
        digest = hashlib.sha256(value.encode()).hexdigest()
        assert scope.log(cid).startswith(f"secret {digest} parent 1\n"), scope.log(cid)
        shown = exec_in(scope, "stat", "-c", "%a %U %F", "/run/secrets", "/run/secrets/api_key")
        assert (shown.returncode, shown.stdout) == (0, "500 app directory\n400 app regular file\n"), describe(shown)
        mounts = exec_in(scope, "grep", " /run/secrets ", "/proc/self/mountinfo")
        assert mounts.stdout.split(" - ")[1].split()[0] == "tmpfs", describe(mounts)
        mine = exec_in(scope, "cat", "/run/secrets/api_key")
        assert (mine.returncode, mine.stdout) == (0, value), describe(mine)
        other = exec_in(scope, "cat", "/run/secrets/api_key", user="nobody")
        assert other.returncode != 0 and value not in other.stdout, describe(other)
        assert "Permission denied" in other.stderr, describe(other)

        # The compiled init is PID 1 (seen from the host: inside, hidepid=2 hides it), the
        # service its child, running as the service's user.
        record = scope.record(cid)
        init = record["init_pid"]
        assert os.readlink(f"/proc/{init}/exe") == "/memfd:init (deleted)"
        with open(f"/proc/{init}/comm") as f:
            assert f.read() == "init\n"
        workload = [p for p in map(read_proc, _children(init)) if p is not None and p.alive]
        assert [(p.uid, p.cmdline[:2]) for p in workload] == [(SUBUID_BASE + APP_UID, ("/usr/bin/python3", "-c"))]
        hidden = exec_in(scope, "cat", "/proc/1/comm")
        assert hidden.returncode != 0, describe(hidden)

        # Healthy, then silent: unhealthy, and the restart policy sets it up again.
        assert wait_for(lambda: service(scope, cid).get("health") == "healthy", timeout=30), scope.record(cid)
        stop = exec_in(scope, "python3", "-c", request("/stop"))
        assert stop.returncode == 0, describe(stop)
        assert wait_for(lambda: service(scope, cid).get("restarts") == 1
                        and service(scope, cid).get("health") == "healthy", timeout=60), scope.record(cid)
        assert scope.record(cid)["init_pid"] != init
        assert "unhealthy: 2 checks failed in a row" in scope.log(cid), scope.log(cid)
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(4096)  # READY=1 once per service, not again on the restart

        assert scope.nucleus("stop", "svc").returncode == 0
        scope.wait_finished(cid, timeout=30)
        removed = scope.nucleus("rm", "svc")
        assert removed.returncode == 0, describe(removed)

    # The audit log: every step in order, the secret named (never its bytes), health as it changed;
    # ready once, in the first run (before or after its first healthy check: the two race).
    lines = events(audit)
    kinds = [e["event"] for e in lines]
    assert _subsequence(["container_create", "namespaces_created", "root_pivoted", "secrets_mounted",
                         "mount_audit_passed", "capabilities_dropped", "seccomp_applied", "landlock_applied",
                         "container_start", "service_healthy", "service_unhealthy", "service_terminated",
                         "container_exit", "service_restarting", "container_create", "container_start",
                         "service_healthy", "container_exit", "cleanup_done"], kinds), " ".join(kinds)
    first_run = kinds[kinds.index("container_start"):kinds.index("service_unhealthy")]
    assert kinds.count("service_ready") == 1 and "service_ready" in first_run, " ".join(kinds)
    assert [e["detail"] for e in lines if e["event"] == "secrets_mounted"] == ["/run/secrets/api_key"] * 2
    assert value not in audit.read_text()
    unhealthy = next(e for e in lines if e["event"] == "service_unhealthy")
    assert (unhealthy["layer"], unhealthy["error"]) == ("health", True)

    # The receiver: the lifecycle's spans of both runs, a span per health event, one trace.
    assert receiver.errors == []
    names = [s.name for r in receiver.requests for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert names.count("nucleus.setup") == 2 and names.count("nucleus.run") == 2, names
    assert {"nucleus.health.service_ready", "nucleus.health.service_healthy",
            "nucleus.health.service_unhealthy"} <= set(names), names
    spans = receiver.spans()
    assert {"seccomp_applied", "landlock_applied", "secrets_mounted"} <= {e.name for e in spans["nucleus.setup"].events}
    assert {s.trace_id.hex() for s in spans.values()} == {cid}
    resource = receiver.resource()
    assert (resource["service.name"], resource["container.name"], resource["container.id"]) == ("shop", "svc", cid)
    scope.assert_clean()


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _subsequence(wanted: list[str], got: list[str]) -> bool:
    it = iter(got)
    return all(any(g == w for g in it) for w in wanted)


def test_one_byte_changed_in_the_closure_is_refused_before_start(closure, scope):
    run = scope.run_args(*production(closure.rootfs))
    result = scope.nucleus(*run, "--", "/usr/bin/python3", "-c", "print('attested')")
    assert (result.returncode, result.stdout) == (0, "attested\n"), describe(result)

    changed = os.path.join(closure.packages["python3"], "lib", PYTHON, "http", "server.py")
    with open(changed, "r+b") as f:
        original = f.read()
        f.seek(len(original) // 2)
        f.write(bytes([original[len(original) // 2] ^ 1]))
    try:
        result = scope.nucleus(*run, "--", "/usr/bin/python3", "-c", "print('attested')")
    finally:
        with open(changed, "wb") as f:
            f.write(original)
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    assert f"1 changed ('{changed}')" in result.stderr, describe(result)
    assert scope.records() == {}
    scope.assert_clean()
