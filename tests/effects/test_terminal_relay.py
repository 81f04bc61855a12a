"""The supervisor's side of -t (nucleus.effects.terminal) on a pseudo-terminal of the test's
own (no container, any user): everything the workload wrote before it ended reaches stdout,
its exit status comes back, the end of the caller's input is the terminal's end of file, and
raw mode is restored whatever happens. tests/kernel/test_terminal_run.py runs it for real."""

from __future__ import annotations

import os
import termios

import pytest

from nucleus.effects import process, terminal


def workload(slave: int, body) -> int:
    """Fork a child that runs body(slave) and exits with its result."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = body(slave)
        finally:
            os._exit(code)
    return pid


def test_all_output_is_relayed_and_the_status_comes_back(capfd):
    master, slave = os.openpty()
    data = b"x" * 200_000 + b"end\n"

    def write_and_go(fd: int) -> int:
        os.write(fd, data)  # more than the terminal buffers: the relay must read while it runs
        return 5

    with process.blocked():
        pid = workload(slave, write_and_go)
        os.close(slave)
        relay = terminal.Relay(master, stdin=False)
        status = relay.run(pid)
        relay.close()
    assert status == 5
    out = capfd.readouterr().out
    assert out.endswith("end\r\n") and out.count("x") == 200_000


def test_the_end_of_stdin_is_the_terminals_end_of_file(capfd):
    master, slave = os.openpty()
    r, w = os.pipe()
    os.write(w, b"one\ntwo")  # the last line is not ended: the first EOF ends it, the second is EOF
    os.close(w)

    def read_to_eof(fd: int) -> int:
        lines = 0
        while os.read(fd, 1024):
            lines += 1
        return lines

    with process.blocked():
        pid = workload(slave, read_to_eof)
        os.close(slave)
        relay = terminal.Relay(master, stdin=False)
        relay.stdin = r
        status = relay.run(pid)
        relay.close()
    os.close(r)
    assert status == 2  # "one\n", "two": two reads, then end of file
    assert "one\r\ntwo" in capfd.readouterr().out  # the terminal's echo


def test_raw_mode_is_restored_after_an_error():
    master, slave = os.openpty()
    before = termios.tcgetattr(slave)
    with pytest.raises(RuntimeError), terminal.raw(slave):
        assert not termios.tcgetattr(slave)[3] & termios.ICANON
        raise RuntimeError("the relay failed")
    assert termios.tcgetattr(slave) == before
    os.close(master)
    os.close(slave)


def test_raw_mode_leaves_what_is_no_terminal_alone():
    r, w = os.pipe()
    with terminal.raw(r), terminal.raw(None):
        pass
    os.close(r)
    os.close(w)
