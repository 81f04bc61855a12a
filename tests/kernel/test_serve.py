"""`nucleus serve` and `nucleus run --server` on the real kernel: stdio passed both ways, exit
statuses preserved, 50 concurrent requests, a caller of another uid served as that uid by a root
server (and refused as its cold run is), a caller the socket's permissions keep out, a server
that answers refused, a stale socket reclaimed, SIGTERM's shutdown and a SIGKILLed server whose
sandboxes `nucleus ps` and `rm --force` reclaim."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import Scope, nucleus_argv, nucleus_env, wait_for

pytestmark = pytest.mark.requires("root", "userns", "seccomp")

NOBODY = 65534


@pytest.fixture
def scope():
    with Scope() as s:
        yield s
        s.assert_clean()


@pytest.fixture
def place():
    top = tempfile.mkdtemp(prefix="nucleus-test-serve-")
    os.chmod(top, 0o755)
    yield top
    shutil.rmtree(top, ignore_errors=True)


class Server:
    def __init__(self, scope: Scope, socket_path: str, *options: str) -> None:
        self.path = socket_path
        self.proc = scope.popen("serve", "--socket", socket_path, *options)
        line = self.proc.stdout.readline()
        assert line == f"nucleus serve: listening on {socket_path}\n", (line, self.proc.stderr.read())

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.communicate(timeout=60)
        return self.proc.returncode


@pytest.fixture
def server(scope, place):
    s = Server(scope, os.path.join(place, "serve", "s.sock"))
    yield s
    assert s.stop() == 0
    assert not os.path.exists(s.path)


def warm(scope: Scope, server: Server, *args: str, **kw) -> subprocess.CompletedProcess:
    return scope.nucleus("run", "--server", server.path, "--cgroup-parent", scope.cgroup_parent, *args, **kw)


def test_stdio_both_ways_and_the_exit_status(scope, server):
    done = warm(scope, server, "-i", "--", "/bin/sh", "-c", "tr a-z A-Z; echo to-err >&2; exit 7",
                input="piped in\n", stdin=None)
    assert (done.returncode, done.stdout) == (7, "PIPED IN\n"), done.stderr
    assert done.stderr.endswith("to-err\n")
    cold = scope.nucleus(*scope.run_args("-i", "--", "/bin/sh", "-c", "tr a-z A-Z; exit 7"), input="piped in\n",
                         stdin=None)
    assert (cold.returncode, cold.stdout) == (done.returncode, done.stdout)


def test_a_refused_run_is_refused_as_the_cold_run_refuses_it(scope, server):
    args = ("--memory", "lots", "--", "/bin/true")
    done = warm(scope, server, *args)
    cold = scope.nucleus(*scope.run_args(*args))
    assert (done.returncode, done.stderr) == (cold.returncode, cold.stderr) == (125, cold.stderr)
    assert "--memory" in done.stderr


def test_fifty_concurrent_requests_each_get_their_own_output_and_status(scope, server):
    def one(i: int) -> subprocess.CompletedProcess:
        return warm(scope, server, "--", "/bin/sh", "-c", f"echo request-{i}; exit {i % 7}", timeout=300)

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, range(50)))
    for i, done in enumerate(results):
        assert (done.returncode, done.stdout) == (i % 7, f"request-{i}\n"), done.stderr


def test_a_resident_caller_asks_for_sandbox_after_sandbox_with_its_own_descriptors(scope, server, place):
    from nucleus.effects import serve_client

    with open(os.path.join(place, "vars"), "w") as f:
        f.write("GREETING\n")  # a bare key: its value is the caller's
    before = signal.getsignal(signal.SIGINT)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        for i in range(3):
            with open(os.path.join(place, f"out{i}"), "w+") as out:
                status = serve_client.call(  # the env file is found in the caller's cwd
                    server.path, ["--cgroup-parent", scope.cgroup_parent, "--env-file", "vars", "--",
                                  "/bin/sh", "-c", f'echo "$GREETING {i}"; exit {i}'],
                    (null, out.fileno(), out.fileno()), env={**nucleus_env(), "GREETING": "hello"}, cwd=place)
                out.seek(0)
                assert (status, out.read()) == (i, f"hello {i}\n")
    finally:
        os.close(null)
    assert signal.getsignal(signal.SIGINT) is before  # nothing forwarded, nothing changed
    with pytest.raises(Exception, match="no server listens there"):
        serve_client.call(os.path.join(place, "none.sock"), ["--", "/bin/true"])


def test_without_a_server_the_run_fails_naming_the_socket(scope, place):
    path = os.path.join(place, "none.sock")
    done = scope.nucleus("run", "--server", path, "--", "/bin/true")
    assert done.returncode == 125
    assert done.stderr == (f"error: --server {path!r}: no server listens there (the socket does not exist)\n"
                           "hint: start one with nucleus serve, or run without --server\n")


def test_a_second_server_is_refused_and_a_stale_socket_reclaimed(scope, server):
    second = scope.nucleus("serve", "--socket", server.path)
    assert second.returncode == 125
    assert f"--socket {server.path!r}: another server answers there" in second.stderr
    server.proc.send_signal(signal.SIGKILL)
    server.proc.communicate(timeout=30)
    assert os.path.exists(server.path)  # a crash leaves the socket's file
    stale = scope.nucleus("run", "--server", server.path, "--", "/bin/true")
    assert "its socket is stale" in stale.stderr and stale.returncode == 125
    server.proc = Server(scope, server.path).proc  # the successor reclaims it
    assert warm(scope, server, "--", "/bin/true").returncode == 0


def test_the_socket_is_the_owners_only(scope, server):
    mode = os.stat(server.path).st_mode & 0o777
    assert mode == 0o600 and os.stat(os.path.dirname(server.path)).st_mode & 0o777 == 0o700
    done = subprocess.run(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
                           *nucleus_argv(["run", "--server", server.path, "--", "/bin/true"])],
                          env=nucleus_env(), capture_output=True, text=True, timeout=60, cwd="/")
    assert done.returncode == 125
    assert f"--server {server.path!r}: permission denied" in done.stderr


def as_nobody(argv: list[str], home: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
                           *nucleus_argv(argv)],
                          env={"PATH": "/usr/bin:/bin", "HOME": home, "NUCLEUS_STATE_DIR": os.path.join(home, "state")},
                          capture_output=True, text=True, timeout=120, cwd="/", **kw)


def test_another_user_is_served_as_that_user_never_more(scope, place):
    home = os.path.join(place, "home")
    os.mkdir(home, 0o700)
    os.chown(home, NOBODY, NOBODY)
    srv = Server(scope, os.path.join(place, "group", "s.sock"), "--group", str(NOBODY))
    try:
        assert os.stat(srv.path).st_mode & 0o777 == 0o660 and os.stat(srv.path).st_gid == NOBODY
        ids = "cat /proc/self/uid_map; id -u"
        done = as_nobody(["run", "--server", srv.path, "--", "/bin/sh", "-c", ids], home)
        cold = as_nobody(["run", "--", "/bin/sh", "-c", ids], home)
        assert done.returncode == cold.returncode == 0, (done.stderr, cold.stderr)
        assert done.stdout == cold.stdout and done.stdout.split()[:2] == ["0", str(NOBODY)]
        bridge = ["--network", "bridge", "--", "/bin/true"]
        refused = as_nobody(["run", "--server", srv.path, *bridge], home)
        cold = as_nobody(["run", *bridge], home)
        assert refused.returncode == cold.returncode == 125
        assert "--network bridge needs root" in refused.stderr
        assert refused.stderr.splitlines()[-2:] == cold.stderr.splitlines()[-2:]
        assert os.listdir(os.path.join(home, "state", "containers")) == []  # the user's own state directory
    finally:
        assert srv.stop() == 0


def test_sigterm_ends_the_running_sandboxes_and_the_server(scope, server):
    client = scope.popen("run", "--server", server.path, "--cgroup-parent", scope.cgroup_parent, "--",
                         *scope.sh("echo up; sleep 300"))
    assert client.stdout.readline() == "up\n"
    assert server.stop() == 0
    out, err = client.communicate(timeout=60)
    assert client.returncode == 143, err  # the workload ended by SIGTERM, as a cold run's would
    assert not os.path.exists(server.path)


def test_a_killed_servers_sandbox_is_an_ordinary_container(scope, server, place):
    errors = open(os.path.join(place, "client.err"), "w+")  # the supervisor keeps the caller's stdio
    client = scope.popen("run", "--server", server.path, "--cgroup-parent", scope.cgroup_parent, "--",
                         *scope.sh("echo up; sleep 300"), stderr=errors)
    assert client.stdout.readline() == "up\n"
    server.proc.send_signal(signal.SIGKILL)
    server.proc.communicate(timeout=30)
    assert client.wait(timeout=60) == 125
    errors.seek(0)
    err = errors.read()
    errors.close()
    assert "the server closed the connection; its sandbox s1 goes on as an ordinary supervisor" in err
    listed = json.loads(scope.nucleus("ps", "--format", "json").stdout)
    assert [row["status"] for row in listed] == ["running"], listed
    removed = scope.nucleus("rm", "--force", listed[0]["id"])
    assert removed.returncode == 0, removed.stderr
    wait_for(lambda: not scope.leftovers(), timeout=10)
    assert client.stdout.read() == ""  # the supervisor is gone: nothing holds the caller's stdout
    client.stdout.close()
    server.proc = Server(scope, server.path).proc  # a successor reclaims the socket
