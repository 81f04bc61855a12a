"""The workload's exec, as PID 1 serves ExecWorkload (nucleus.effects.setup): through a
close-on-exec pipe it learns whether the exec succeeded; when it did not, it answers with the
lifecycle's Exit (127 or 126, with the reason) and exits with that status. And the executor's
account of a setup process that died (nucleus.effects.executor.describe_death). The serving
loop runs in a forked child, as tests/fakes/serving.py does; no privilege is needed."""

from __future__ import annotations

import os
import resource
import signal

import pytest

from nucleus import vocab as v
from nucleus.effects import process
from nucleus.effects.executor import describe_death
from tests.fakes.serving import serve_batch

ENV = (("PATH", "/usr/bin:/bin"),)


@pytest.mark.parametrize("argv,cwd,code,reason", [
    (("nucleus-no-such-command",), "/", 127, "cannot run 'nucleus-no-such-command': No such file or directory"),
    (("/nonexistent/x",), "/", 127, "cannot run '/nonexistent/x': No such file or directory"),
    (("/etc/passwd",), "/", 126, "cannot run '/etc/passwd': /etc/passwd is not executable (mode 0644, "
                                 "owner 0); make it executable (chmod +x) or run it through its interpreter"),
    (("true",), "/nonexistent", 126, "cannot enter working directory '/nonexistent': No such file or directory"),
], ids=["not-found", "no-directory", "not-executable", "no-workdir"])
def test_an_exec_that_fails_is_answered_with_exit(argv, cwd, code, reason):
    with process.blocked():
        events, status = serve_batch((v.ExecWorkload(argv, ENV, cwd, (1024, 512, 65536)),))
    assert events == [v.Exit(code, reason)]
    assert status == code


def test_an_exec_that_succeeds_is_answered_with_nothing_and_pid_1_takes_its_status():
    with process.blocked():  # PID 1 takes SIGCHLD synchronously, as in a container
        events, status = serve_batch((v.ExecWorkload(("sh", "-c", "exit 7"), ENV, "/", (1024, 512, 65536)),))
    assert (events, status) == ([], 7)


def test_the_workload_holds_no_descriptor_beyond_the_standard_three(tmp_path):
    out = tmp_path / "fds"
    script = f"ls /proc/self/fd > {out}"
    with process.blocked():
        events, status = serve_batch((v.ExecWorkload(("sh", "-c", script), ENV, "/", (1024, 512, 65536)),))
    assert (events, status) == ([], 0)
    # The shell's own fds: 0-2, and the one ls lists its directory with.
    assert sorted(int(n) for n in out.read_text().split()) == [0, 1, 2, 3]


@pytest.mark.parametrize("status,message", [
    (signal.SIGSYS, "the setup process was killed by its own seccomp filter (SIGSYS) during LoadSeccomp: the "
                    "profile denies a system call nucleus makes after loading it (such as write, read, "
                    "close_range, execve, or the Landlock calls)"),
    (signal.SIGKILL, "the setup process was killed by SIGKILL during LoadSeccomp"),
    (signal.SIGSEGV, "the setup process was killed by SIGSEGV during LoadSeccomp"),
    (125 << 8, "the setup process exited with status 125 during LoadSeccomp"),
])
def test_a_setup_process_death_is_described(status, message):
    assert describe_death(status, "LoadSeccomp") == message


def test_a_real_death_by_sigsys_reads_as_such():
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file
        os.kill(os.getpid(), signal.SIGSYS)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert describe_death(status, "ApplyLandlock").startswith(
        "the setup process was killed by its own seccomp filter (SIGSYS) during ApplyLandlock")
