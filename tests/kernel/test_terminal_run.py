"""-t and -i on the real kernel: the workload's terminal is one of the container's own devpts
(/dev/pts/0, its controlling terminal, ttyname works), it gets the caller's window size and
follows it, the caller's terminal is in raw mode while it runs and restored whatever the end;
from a program (pipes, no terminal) the same works without changing any mode. Without -i the
workload's stdin is /dev/null; with it, the caller's."""

from __future__ import annotations

import pytest

from tests.helpers import SANDBOX, Scope, describe, run_nucleus
from tests.kernel.terminal_support import Caller

pytestmark = SANDBOX


@pytest.fixture
def caller():
    made: list[Caller] = []

    def start(*args: str, rows: int = 24, cols: int = 80) -> Caller:
        made.append(Caller(list(args), rows, cols))
        return made[-1]

    yield start
    for c in made:
        c.kill()


def test_the_terminal_is_the_containers_own_without_a_caller_terminal():
    """From a program: stdout is a pipe, and the workload still has a terminal of its own."""
    result = run_nucleus(["run", "-t", "--", "sh", "-c",
                          "tty; test -t 0 && test -t 1 && test -t 2 && echo all-three; "
                          "ps -o tty= -p $$; readlink /proc/self/fd/1"])
    assert result.returncode == 0, describe(result)
    # (The terminal turns each newline into CR LF, as any terminal's output does; text mode
    # reads CR LF back as a newline.)
    assert result.stdout == "/dev/pts/0\nall-three\npts/0\n/dev/pts/0\n", describe(result)
    assert result.stderr == ""


def test_the_workload_leads_a_session_with_its_terminal_as_controlling_terminal():
    code = ("import os; session = open('/proc/self/stat').read().rsplit(')', 1)[1].split()[3]; "
            "fd = os.open('/dev/tty', os.O_RDWR); "
            "print(session == str(os.getpid()), os.tcgetpgrp(fd) == os.getpgrp(), os.ttyname(0))")
    result = run_nucleus(["run", "-t", "--", "/usr/bin/python3", "-c", code])
    assert result.returncode == 0, describe(result)
    assert result.stdout == "True True /dev/pts/0\n", describe(result)


def test_window_size_raw_mode_input_and_a_resize(caller):
    """The size the caller's terminal has is the workload's from its first instruction; the
    caller's terminal is raw while it runs (keys reach the workload, echoed by its terminal);
    a resize of the caller's terminal reaches the workload's (SIGWINCH there); afterwards the
    caller's terminal is as it was."""
    c = caller("run", "-t", "-i", "--", "sh", "-c",
               "trap 'stty size; exit 0' WINCH; stty size; read line; echo got:$line; "
               "while :; do sleep 0.05; done", rows=33, cols=111)
    c.expect(b"33 111\r\n")
    assert c.raw(), c.mode()
    c.send(b"hello\r")
    c.expect(b"got:hello\r\n")
    c.resize(44, 122)
    c.expect(b"44 122\r\n")
    assert c.finish() == 0, c.output
    assert c.after == c.before


@pytest.mark.parametrize("argv,status", [
    (["sh", "-c", "exit 3"], 3),
    (["sh", "-c", "kill -KILL $$"], 137),
    (["nucleus-no-such-command"], 127),
], ids=["exit-3", "killed", "not-found"])
def test_the_callers_terminal_is_restored_after_a_run_that_fails(caller, argv, status):
    c = caller("run", "-t", "-i", "--", *argv)
    assert c.finish() == status, c.output
    assert c.after == c.before
    if status == 127:  # said on the caller's terminal, not lost in the workload's
        assert b"nucleus: cannot run 'nucleus-no-such-command': No such file or directory" in c.output


def test_without_i_the_terminal_gets_no_input_and_no_raw_mode(caller):
    c = caller("run", "-t", "--", "sh", "-c", "stty size; echo done")
    # Not raw: the caller's terminal adds its own CR to the workload's terminal's CR LF.
    c.expect(b"done\r")
    assert c.finish() == 0 and c.after == c.before
    assert b"24 80\r" in c.output


def test_a_programs_stdin_reaches_the_terminal_and_its_end_ends_the_input():
    result = run_nucleus(["run", "-t", "-i", "--", "sh", "-c", "while read l; do echo got:$l; done; echo eof"],
                         input="one\ntwo\n", stdin=None)
    assert result.returncode == 0, describe(result)
    # The input is echoed by the workload's terminal, then read line by line; its end reaches
    # the workload as the terminal's end of file.
    assert result.stdout == "one\ntwo\ngot:one\ngot:two\neof\n", describe(result)


def test_stdin_is_dev_null_without_i_and_the_callers_with_it():
    without = run_nucleus(["run", "--", "sh", "-c", "readlink /proc/self/fd/0; cat"], input="hello\n", stdin=None)
    assert (without.returncode, without.stdout) == (0, "/dev/null\n"), describe(without)
    with_i = run_nucleus(["run", "-i", "--", "cat"], input="hello\n", stdin=None)
    assert (with_i.returncode, with_i.stdout) == (0, "hello\n"), describe(with_i)


def test_tiocsti_is_refused_on_the_workloads_terminal():
    """Pushing input into a terminal (typing into whoever reads it) stays refused."""
    code = "import fcntl, termios; fcntl.ioctl(0, termios.TIOCSTI, b'x'); print('pushed')"
    result = run_nucleus(["run", "-t", "--", "/usr/bin/python3", "-c", code])
    assert result.returncode != 0 and "pushed" not in result.stdout, describe(result)


def test_a_detached_terminal_writes_to_the_log():
    with Scope() as scope:
        cid = scope.detach(["sh", "-c", "tty; echo up"], "-t", "--name", "tty-log")
        scope.wait_finished(cid)
        assert scope.log(cid).replace("\r\n", "\n").endswith("/dev/pts/0\nup\n"), scope.log(cid)
        assert scope.nucleus("rm", "tty-log").returncode == 0
        scope.assert_clean()

