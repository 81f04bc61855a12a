"""The workload's terminal (`-t`): a pseudo-terminal of the container's own devpts, and the
supervisor's relay between it and the caller.

Inside, the process about to become the command (as its user, every restriction in force)
opens /dev/ptmx (the container's private devpts: the terminal is /dev/pts/N there, and ttyname
works), becomes a session leader with the terminal as its controlling terminal and as its
stdin, stdout and stderr, and hands the master to the supervisor over a unix socket
(SCM_RIGHTS). It waits for the supervisor's word before it goes on: the supervisor sets the
window size first, so the command sees it from its first instruction.

The supervisor copies the caller's stdin (with -i) to the master and the master's output to its
own stdout, follows the caller's window size (SIGWINCH), and forwards the other signals to the
workload (it is no longer in the caller's terminal's process group). When its stdin is the
foreground terminal it is put in raw mode for the duration, and always restored. Without a
terminal (a program's pipes) nothing changes modes; the end of its stdin is passed on as the
terminal's end-of-file character.

This module is imported by the supervisor before it forks (termios is an extension module the
container cannot import once its root has changed).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import socket
import struct
import termios
import tty
from collections.abc import Iterator

from nucleus.config.seccomp_default import IOCTL_REQUESTS
from nucleus.effects import libc, process, seccomp_handoff

PTMX = "/dev/ptmx"  # inside the container: a link to pts/ptmx, its own devpts instance
PTS = "/dev/pts"
TIOCGPTN = IOCTL_REQUESTS["TIOCGPTN"]
TIOCSPTLCK = IOCTL_REQUESTS["TIOCSPTLCK"]
_INT = struct.Struct("i")
_WINSIZE = 8  # struct winsize: four unsigned shorts
CHUNK = 65536
TAKEN = b"T"  # the supervisor's word: the master is taken and the window size set


# --- inside: the process that becomes the command -----------------------------------------------


def become_controlled(sock_fd: int) -> None:
    """Give the calling process a new terminal as its controlling terminal and as 0, 1 and 2,
    and hand the master over `sock_fd`; returns once the supervisor has taken it (OSError when
    it did not, or a call failed). `sock_fd` is closed."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fileno=sock_fd)
    try:
        master = os.open(PTMX, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            fcntl.ioctl(master, TIOCSPTLCK, _INT.pack(0))
            (number,) = _INT.unpack(fcntl.ioctl(master, TIOCGPTN, _INT.pack(0)))
            os.setsid()
            slave = os.open(f"{PTS}/{number}", os.O_RDWR | os.O_NOCTTY)
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            seccomp_handoff.send_fd(sock, master)
            if sock.recv(1) != TAKEN:
                raise OSError(errno.EPIPE, "the supervisor did not take the terminal")
        finally:
            os.close(master)
    finally:
        sock.close()
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


# --- the supervisor's side ----------------------------------------------------------------------


def receive(sock: socket.socket) -> int | None:
    """The master the process inside hands over, once it has its window size (the caller's,
    where the caller has a terminal); None when that process ended without handing one."""
    try:
        master = seccomp_handoff.recv_fd(sock, expect=None)
    except ConnectionError:
        return None
    try:
        fcntl.ioctl(master, TIOCGPTN, _INT.pack(0))  # only a terminal's master answers this
        source = caller_terminal()
        if source is not None:
            copy_size(source, master)
        sock.sendall(TAKEN)
    except OSError:
        os.close(master)
        return None
    return master


def caller_terminal() -> int | None:
    """The first of the supervisor's stdin, stdout and stderr that is a terminal."""
    return next((fd for fd in (0, 1, 2) if os.isatty(fd)), None)


def copy_size(source: int, master: int) -> None:
    """The caller's window size onto the workload's terminal (the kernel then sends SIGWINCH
    to its foreground process group)."""
    fcntl.ioctl(master, termios.TIOCSWINSZ, fcntl.ioctl(source, termios.TIOCGWINSZ, bytes(_WINSIZE)))


@contextlib.contextmanager
def raw(fd: int | None) -> Iterator[None]:
    """Raw mode on `fd` for the duration, when it is a terminal whose foreground this process
    is in (a background job would be stopped by the change); the previous mode is restored
    whatever happens."""
    if fd is None or not os.isatty(fd) or not _foreground(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSADRAIN)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _foreground(fd: int) -> bool:
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:  # not this process's controlling terminal: no job control can stop it
        return True


class Relay:
    """Copies between the caller and the workload's terminal while waiting for `target`."""

    def __init__(self, master: int, stdin: bool) -> None:
        self.master = master
        self.stdin: int | None = 0 if stdin else None
        self.out: int | None = 1
        self.pending = b""  # input not yet written to the terminal
        self.last = b"\n"  # the last byte written to it (whether a line is under way)

    def run(self, target: int) -> int:
        """Relay until `target` (a child) has exited and its output is drained; its exit status
        (the caller blocked process.WAITED)."""
        sfd = libc.signalfd(process.WAITED)
        os.set_blocking(self.master, False)
        try:
            with raw(self.stdin):
                status = self._loop(target, sfd)
                self._drain()
            return status
        finally:
            os.close(sfd)

    def close(self) -> None:
        os.close(self.master)

    def _loop(self, target: int, sfd: int) -> int:
        poller = select.poll()
        poller.register(sfd, select.POLLIN)
        master_open = True
        while True:
            if master_open:
                poller.register(self.master, select.POLLIN | (select.POLLOUT if self.pending else 0))
            if self.stdin is not None:
                if master_open and len(self.pending) < CHUNK:
                    poller.register(self.stdin, select.POLLIN)
                else:  # the workload is not reading (or nothing can any more): wait
                    with contextlib.suppress(KeyError):
                        poller.unregister(self.stdin)
            for fd, ev in poller.poll():
                if fd == sfd:
                    status = self._signals(sfd, target)
                    if status is not None:
                        return status
                elif fd == self.master:
                    master_open = self._from_master(ev)
                    if not master_open:
                        poller.unregister(self.master)
                elif fd == self.stdin and not self._from_stdin():
                    poller.unregister(fd)
                    self.stdin = None

    def _signals(self, sfd: int, target: int) -> int | None:
        for signo, _ in process.read_signals(sfd):
            if signo == signal.SIGCHLD:
                status = process.reap_children(target)
                if status is not None:
                    return status
            elif signo == signal.SIGWINCH:
                source = caller_terminal()
                if source is not None:
                    with contextlib.suppress(OSError):
                        copy_size(source, self.master)
            else:  # the workload is in a session of its own: the caller's terminal cannot reach it
                with contextlib.suppress(ProcessLookupError):
                    os.kill(target, signo)
        return None

    def _from_master(self, ev: int) -> bool:
        """Output to the caller, pending input to the terminal; False once nothing holds the
        terminal open any more."""
        if ev & select.POLLOUT and self.pending:
            try:
                written = os.write(self.master, self.pending)
                self.last = self.pending[written - 1:written] or self.last
                self.pending = self.pending[written:]
            except BlockingIOError:
                pass
            except OSError:
                self.pending = b""
        if ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
            return self._read_master()
        return True

    def _read_master(self) -> bool:
        try:
            data = os.read(self.master, CHUNK)
        except BlockingIOError:
            return True
        except OSError as e:
            if e.errno == errno.EIO:  # every holder of the terminal closed it
                return False
            raise
        if not data:
            return False
        self._write_out(data)
        return True

    def _drain(self) -> None:
        """What the workload wrote before it ended."""
        with contextlib.suppress(OSError):
            while self._read_master_ready():
                pass

    def _read_master_ready(self) -> bool:
        try:
            data = os.read(self.master, CHUNK)
        except BlockingIOError:
            return False
        if data:
            self._write_out(data)
        return bool(data)

    def _write_out(self, data: bytes) -> None:
        while data and self.out is not None:
            try:
                data = data[os.write(self.out, data):]
            except BlockingIOError:
                select.select([], [self.out], [])
            except OSError:
                self.out = None  # the caller stopped reading: the rest is dropped

    def _from_stdin(self) -> bool:
        """Input for the terminal; False at the end of stdin (passed on as the terminal's
        end-of-file character: twice when a line is under way, which the first one ends)."""
        assert self.stdin is not None
        try:
            data = os.read(self.stdin, CHUNK)
        except OSError:
            data = b""
        if data:
            self.pending += data
            return True
        with contextlib.suppress(OSError, termios.error):
            eof = termios.tcgetattr(self.master)[6][termios.VEOF]
            self.pending += eof if self.last == b"\n" and not self.pending else eof * 2
        return False
