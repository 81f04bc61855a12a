"""A caller with a terminal, for the tests of -t: `nucleus` started on the slave side of a
pseudo-terminal (os.openpty), as the session leader with it as its controlling terminal (so
that the kernel sends it SIGWINCH and it is in the terminal's foreground), the test on the
master side, reading what nucleus prints and typing into it."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time

from tests.helpers import nucleus_argv, nucleus_env

WAIT = 20.0  # seconds to wait for output that must come


class Caller:
    def __init__(self, args: list[str], rows: int = 24, cols: int = 80,
                 extra_env: dict[str, str] | None = None) -> None:
        self.master, self.slave = os.openpty()
        self.resize(rows, cols)
        self.before = termios.tcgetattr(self.slave)
        self.output = b""

        def controlling_terminal() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(nucleus_argv(args), stdin=self.slave, stdout=self.slave,
                                     stderr=self.slave, env=nucleus_env(extra_env),
                                     preexec_fn=controlling_terminal)

    def resize(self, rows: int, cols: int) -> None:
        """The caller's window size (the kernel tells the terminal's foreground: SIGWINCH)."""
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def expect(self, text: bytes, timeout: float = WAIT) -> bytes:
        """Read until the output holds `text` (everything read so far is returned); fails with
        what was read when it does not come."""
        deadline = time.monotonic() + timeout
        while text not in self.output and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # every holder of the slave closed it
                break
            self.output += chunk
        assert text in self.output, f"waited for {text!r}; the terminal showed {self.output!r}"
        return self.output

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def mode(self) -> list:
        return termios.tcgetattr(self.slave)

    def raw(self) -> bool:
        """Whether the caller's terminal is in raw mode (no line editing, echo or signals)."""
        lflag = self.mode()[3]
        return not lflag & (termios.ICANON | termios.ECHO | termios.ISIG)

    def finish(self, timeout: float = WAIT) -> int:
        """Wait for nucleus (reading what it still prints) and close the terminal; its status."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:
                    break
        try:
            return self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        finally:
            self.after = termios.tcgetattr(self.slave)
            os.close(self.master)
            os.close(self.slave)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
