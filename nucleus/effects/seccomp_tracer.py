"""Seccomp trace mode, the supervisor's side: record every syscall a workload makes, through
seccomp user notification.

The kernel's audit records (``/dev/kmsg``) drop most events under load, so trace mode does not
log: it asks. The traced process installs a filter that returns ``SECCOMP_RET_USER_NOTIF`` for
every native syscall and kills the process on any other ABI (``nucleus.effects.seccomp_bpf``),
and hands the filter's listener fd to the supervisor (``nucleus.effects.seccomp_handoff``). Each
syscall then waits until the supervisor, holding the listener, has received it
(``SECCOMP_IOCTL_NOTIF_RECV``) and answered ``SECCOMP_USER_NOTIF_FLAG_CONTINUE``
(``SECCOMP_IOCTL_NOTIF_SEND``), which lets it run unchanged.

The supervisor takes the listener with ``seccomp_handoff.recv_fd`` and serves it here:
:func:`run_until_exit` (serve and reap one child, forwarding signals) or :func:`serve` (serve
until every traced process is gone, for a process that does nothing else; :func:`spawn_tracer`
forks such a process). Both write NDJSON, one object a line::

    {"syscall": "openat", "nr": 257, "pid": 4242, "arch": "x86_64"}
    ...
    {"summary": {"events": 1234, "syscalls": 41, "exit_status": 0}}

``arch`` is the machine's (``uname -m``: x86_64 or aarch64). The summary line comes last, only
when tracing ended normally; a trace without it was cut short. ``syscall`` is null for a number
neither libseccomp nor the built-in table knows (``nucleus.effects.seccomp_names``).

Reaping and the end of a trace: the kernel reports POLLHUP on the listener once no task uses the
filter any more, which happens when the last traced task has been *reaped* (a zombie still
counts). :func:`run_until_exit` therefore reaps its child itself and goes on serving until that
hang-up, so descendants that outlive the child keep being answered (``linger`` bounds this).

Importing this module imports the traced side too (``seccomp_handoff``), which the container's
PID 1 uses after pivot_root, when it can import nothing more.
"""

from __future__ import annotations

import errno as _errno
import json
import os
import select
import signal
import socket
import struct
from typing import TYPE_CHECKING, TextIO

from nucleus import linux
from nucleus.effects import abi, libc, process
from nucleus.effects.seccomp_handoff import recv_fd
from nucleus.effects.seccomp_names import syscall_name

if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import TypedDict

    class SyscallRecord(TypedDict):
        syscall: str | None
        nr: int
        pid: int
        arch: str

    class TraceSummary(TypedDict):
        events: int
        syscalls: int
        exit_status: int | None

# --- user notification ioctls (linux/seccomp.h; the same on x86_64 and aarch64) ---------------
SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100  # _IOWR('!', 0, struct seccomp_notif)  (80 bytes)
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101  # _IOWR('!', 1, struct seccomp_notif_resp)  (24 bytes)
SECCOMP_IOCTL_NOTIF_ID_VALID = 0x40082102  # _IOW('!', 2, __u64)
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
_NOTIF = struct.Struct("=QIIiIQ6Q")  # id, pid, flags, data.nr, data.arch, data.ip, data.args
_RESP = struct.Struct("=QqiI")  # id, val, error, flags
_ZERO_NOTIF = bytes(_NOTIF.size)

# Longest wait in the serving loops: a safety net for a SIGCHLD that never shows up, and the
# longest a quiet trace file stays unflushed.
IDLE_MS = 1000


# --- the supervisor's side -----------------------------------------------------------------------


class Notification:
    """One received notification: its cookie, the task's pid (in the receiver's pid namespace),
    the syscall number, arch and first arguments."""

    __slots__ = ("id", "pid", "nr", "arch", "args", "ip")

    def __init__(self, id: int, pid: int, nr: int, arch: int, args: tuple[int, ...], ip: int = 0) -> None:
        self.id, self.pid, self.nr, self.arch, self.args, self.ip = id, pid, nr, arch, args, ip

    def __repr__(self) -> str:
        return f"Notification(pid={self.pid}, nr={self.nr}, name={syscall_name(self.nr)!r})"


def _ioctl(fd: int, request: int, buf: bytearray) -> None:
    import fcntl

    while True:
        try:
            fcntl.ioctl(fd, request, buf, True)
            return
        except InterruptedError:
            continue


def receive(listener_fd: int) -> Notification | None:
    """SECCOMP_IOCTL_NOTIF_RECV: the next notification (blocks until there is one: poll the fd
    for POLLIN first). None when the task was killed before it could be received (ENOENT)."""
    buf = bytearray(_ZERO_NOTIF)  # the kernel wants the buffer zeroed
    try:
        _ioctl(listener_fd, SECCOMP_IOCTL_NOTIF_RECV, buf)
    except OSError as e:
        if e.errno == _errno.ENOENT:
            return None
        call = (str(listener_fd), "SECCOMP_IOCTL_NOTIF_RECV")
        raise abi.SyscallError("ioctl", call, e.errno or _errno.EIO) from e
    id_, pid, _, nr, arch, ip, *args = _NOTIF.unpack(buf)
    return Notification(id_, pid, nr, arch, tuple(args), ip)


def allow(listener_fd: int, notification_id: int) -> bool:
    """SECCOMP_IOCTL_NOTIF_SEND with SECCOMP_USER_NOTIF_FLAG_CONTINUE: the syscall runs as if
    never stopped. False when the task is gone (ENOENT: killed, or interrupted by a signal, in
    which case the kernel restarts the call and it is notified again)."""
    return _send(listener_fd, notification_id, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE)


def refuse(listener_fd: int, notification_id: int, errno: int) -> bool:
    """SECCOMP_IOCTL_NOTIF_SEND with an error: the syscall does not run and fails with
    ``errno``. False when the task is gone (as for :func:`allow`)."""
    return _send(listener_fd, notification_id, -errno, 0)


def _send(listener_fd: int, notification_id: int, error: int, flags: int) -> bool:
    buf = bytearray(_RESP.pack(notification_id, 0, error, flags))
    try:
        _ioctl(listener_fd, SECCOMP_IOCTL_NOTIF_SEND, buf)
    except OSError as e:
        if e.errno == _errno.ENOENT:
            return False
        call = (str(listener_fd), "SECCOMP_IOCTL_NOTIF_SEND")
        raise abi.SyscallError("ioctl", call, e.errno or _errno.EIO) from e
    return True


def pending(listener_fd: int, notification_id: int) -> bool:
    """SECCOMP_IOCTL_NOTIF_ID_VALID: whether the task is still waiting for this answer."""
    buf = bytearray(struct.pack("=Q", notification_id))
    try:
        _ioctl(listener_fd, SECCOMP_IOCTL_NOTIF_ID_VALID, buf)
    except OSError as e:
        if e.errno == _errno.ENOENT:
            return False
        raise abi.SyscallError("ioctl", (str(listener_fd), "SECCOMP_IOCTL_NOTIF_ID_VALID"), e.errno or _errno.EIO) from e
    return True


class Tracer:
    """Answers notifications and writes one NDJSON line per syscall to ``out`` (a text file,
    or None to only count)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out
        self.arch = abi.architecture().machine  # every syscall notified is native
        self.events = 0
        self.counts: dict[int, int] = {}
        self._prefix: dict[int, str] = {}

    def handle(self, listener_fd: int) -> SyscallRecord | None:
        """Receive one notification, let the syscall continue, record it. Returns the record
        ``{"syscall", "nr", "pid", "arch"}``, or None when the task died before it was received.
        A task that dies after being received is still recorded: it made the call."""
        n = receive(listener_fd)
        if n is None:
            return None
        allow(listener_fd, n.id)  # answered before anything else: the task is waiting
        self.events += 1
        self.counts[n.nr] = self.counts.get(n.nr, 0) + 1
        if self.out is not None:
            prefix = self._prefix.get(n.nr)
            if prefix is None:
                prefix = self._prefix[n.nr] = (
                    f'{{"syscall": {json.dumps(syscall_name(n.nr))}, "nr": {n.nr}, "pid": '
                )
            self.out.write(f'{prefix}{n.pid}, "arch": "{self.arch}"}}\n')
        return {"syscall": syscall_name(n.nr), "nr": n.nr, "pid": n.pid, "arch": self.arch}

    def names(self) -> list[str]:
        """The sorted names of the syscalls seen (unnamed numbers as ``nr:N``)."""
        return sorted(syscall_name(nr) or f"nr:{nr}" for nr in self.counts)

    def summary(self, exit_status: int | None = None) -> TraceSummary:
        return {"events": self.events, "syscalls": len(self.counts), "exit_status": exit_status}

    def write_summary(self, exit_status: int | None = None) -> None:
        if self.out is not None:
            self.out.write(json.dumps({"summary": self.summary(exit_status)}) + "\n")
            self.out.flush()

    def flush(self) -> None:
        if self.out is not None:
            self.out.flush()


def run_until_exit(
    listener_fd: int,
    child_pid: int,
    ndjson_out: TextIO | None,
    *,
    forward: Iterable[int] = (),
    linger: float | None = None,
    tracer: Tracer | None = None,
) -> int:
    """Serve ``listener_fd`` until ``child_pid`` (a child of the caller) has exited and every
    traced process is gone; reap the child; write the NDJSON events and the summary line to
    ``ndjson_out``. Returns the child's exit status (128+N for signal N, 125 if it was reaped
    elsewhere).

    No threads: one poll(2) on the listener and a signalfd for SIGCHLD and ``forward``. Those
    signals are blocked for the duration (the previous mask is restored); one of ``forward``
    sent on purpose (si_code <= 0: kill, sigqueue) is passed on to the child, like
    ``process.wait_forwarding`` does. ``linger`` bounds, in seconds, how long descendants that
    outlive the child are still served; None waits for all of them. The caller closes the
    listener; a traced process left behind then gets ENOSYS from every syscall.
    """
    tracer = tracer or Tracer(ndjson_out)
    signals = {signal.SIGCHLD, *forward}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    sfd = libc.signalfd(signals)
    status: int | None = None
    hung_up = False
    deadline: float | None = None
    try:
        poller = select.poll()
        poller.register(listener_fd, select.POLLIN)
        poller.register(sfd, select.POLLIN)
        status = process.poll_exit(child_pid)  # it may have exited before SIGCHLD was blocked
        while status is None or not hung_up:
            if status is not None and linger is not None:
                if deadline is None:
                    deadline = _now() + linger
                left = deadline - _now()
                if left <= 0:
                    break
                timeout = min(IDLE_MS, int(left * 1000) + 1)
            else:
                timeout = IDLE_MS
            ready = poller.poll(timeout)
            if not ready:
                tracer.flush()
                if status is None:
                    status = process.poll_exit(child_pid)
                continue
            for fd, ev in ready:
                if fd == listener_fd:
                    if ev & select.POLLIN:
                        tracer.handle(listener_fd)
                    elif ev & (select.POLLHUP | select.POLLERR):
                        hung_up = True
                        poller.unregister(listener_fd)
                    elif ev & select.POLLNVAL:
                        raise abi.SyscallError("poll", (str(listener_fd), "POLLIN"), _errno.EBADF)
                    continue
                for signo, code in process.read_signals(sfd):
                    if signo == signal.SIGCHLD:
                        if status is None:
                            status = process.poll_exit(child_pid)
                    elif code <= 0 and status is None:
                        try:
                            os.kill(child_pid, signo)
                        except ProcessLookupError:
                            pass
        tracer.write_summary(status)
    finally:
        os.close(sfd)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        tracer.flush()
    return 125 if status is None else status


def _now() -> float:
    import time

    return time.monotonic()


def serve(listener_fd: int, ndjson_out: TextIO | None, tracer: Tracer | None = None) -> Tracer:
    """Serve ``listener_fd`` until every traced process is gone (the listener hangs up), then
    write the summary line (without an exit status). For a process that does nothing else,
    such as a tracer process forked by the supervisor; it waits for nobody and forwards
    nothing."""
    tracer = tracer or Tracer(ndjson_out)
    poller = select.poll()
    poller.register(listener_fd, select.POLLIN)
    try:
        while True:
            ready = poller.poll(IDLE_MS)
            if not ready:
                tracer.flush()
                continue
            ev = ready[0][1]
            if ev & select.POLLIN:
                tracer.handle(listener_fd)
            elif ev & (select.POLLHUP | select.POLLERR):
                break
            else:
                raise abi.SyscallError("poll", (str(listener_fd), "POLLIN"), _errno.EBADF)
        tracer.write_summary(None)
    finally:
        tracer.flush()
    return tracer


# Signals a tracer process ignores: a terminal's ^C or a hang-up reaches the whole foreground
# process group, and the tracer must outlive every traced process to answer its last syscalls.
TRACER_IGNORES = (
    signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2,
    signal.SIGWINCH, signal.SIGPIPE,
)


def spawn_tracer(sock: socket.socket, log_path: str) -> int:
    """Fork a tracer process: it receives the listener on ``sock`` (the end that
    ``seccomp_handoff.start_tracing`` does not use), serves it with :func:`serve` until every
    traced process is gone, writing NDJSON to ``log_path``, and exits 0; 1 when no listener
    arrived or serving failed (the reason on stderr). Returns its pid; the caller reaps it.

    ``log_path`` is opened (created, truncated, 0600) before the fork, so an unwritable path
    raises OSError here. The tracer keeps only fds 0-2, ``sock`` and the log; it dies with the
    caller (PR_SET_PDEATHSIG), ignores TRACER_IGNORES and unblocks nothing else. The caller
    closes its copy of ``sock`` and of the other end once the traced side holds it.
    """
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    parent = os.getpid()
    try:
        pid = os.fork()
    except BaseException:
        os.close(log_fd)
        raise
    if pid != 0:
        os.close(log_fd)
        return pid
    code = 1
    try:
        helper_child(parent, TRACER_IGNORES, {0, 1, 2, sock.fileno(), log_fd})
        listener = recv_fd(sock)
        sock.close()
        with os.fdopen(log_fd, "w", encoding="ascii") as out:
            serve(listener, out)
        code = 0
    except BaseException as e:  # noqa: BLE001 - a forked process never unwinds into its parent
        try:
            os.write(2, f"nucleus: seccomp tracer: {e}\n".encode())
        except OSError:
            pass
    finally:
        os._exit(code)


def helper_child(parent: int, ignores: tuple[signal.Signals, ...], keep: set[int]) -> None:
    """In a helper process just forked from ``parent``: die with it (PR_SET_PDEATHSIG, and at
    once when it is gone already), ignore the signals ``ignores``, keep only the fds ``keep``."""
    libc.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)
    for sig in ignores:
        signal.signal(sig, signal.SIG_IGN)
    close_all_but(keep)


def close_all_but(keep: set[int]) -> None:
    first = 0
    for fd in sorted(keep):
        if fd > first:
            libc.close_range(first, fd - 1)
        first = fd + 1
    libc.close_range(first)

