"""Seccomp with a listener, the container's side: install the trace filter (trace mode) or the
notify form of the enforced program (a container whose refusals are recorded), and hand its
listener to the supervisor's tracer or violation monitor; and both ends of that handoff
(:func:`send_fd`, :func:`recv_fd`).

The traced process calls :func:`start_tracing` with its end of a unix socket right before
execve: no_new_privs, the filter (``nucleus.effects.seccomp_bpf``), the listener fd handed over
with SCM_RIGHTS, the listener closed. From then on each of its syscalls (the execve first) waits
until the supervisor, holding the listener, has received and answered it
(``nucleus.effects.seccomp_tracer``). The filter is inherited across fork, clone and execve, so
every descendant is traced too.

The one exemption. A filter can only be installed by the process itself, and the listener fd it
returns is still in that process when the filter is already in force: the sendmsg that hands it
over would wait for a supervisor that cannot answer before it receives the fd. So the filter
allows exactly that call without notification: ``sendmsg`` whose first argument is the handoff
socket's fd *and* whose second is the address of the ``msghdr`` built for the handoff (both full
64-bit compares). After execve that address belongs to a new, randomised address space, so a
workload's own sendmsg is always traced. Nothing else is exempt.

The window. Between the seccomp(2) call and that sendmsg the code makes no other syscall: both
calls are prepared beforehand (``libc.prepare_seccomp_filter`` and ``libc.PreparedSendFd``: the
numbers looked up, the arguments and the msghdr built, so making them only enters ``syscall(2)``),
the garbage collector is paused (a finalizer may close a file) and every signal is blocked (a
handler's rt_sigreturn would wait for a supervisor that does not hold the listener yet). Nothing
that holds the prepared buffers is freed in the window either: freeing or growing memory could
make a syscall (munmap, brk) that the filter holds before the listener is served.

This module runs in the container's PID 1 after pivot_root, where nothing more can be imported:
the supervisor imports it before the fork (``seccomp_tracer`` imports it).
"""

from __future__ import annotations

import errno as _errno
import gc
import os
import signal
import socket
import struct
from typing import TYPE_CHECKING

from nucleus import linux
from nucleus.effects import abi, libc
from nucleus.effects.seccomp_bpf import notify_filter, trace_filter

if TYPE_CHECKING:
    from collections.abc import Callable

_installed: list[libc.PreparedSyscall] = []


def install_trace_filter(exempt: tuple[int, int] | None = None) -> int:
    """In the calling process: set no_new_privs, install :func:`trace_filter` with
    ``SECCOMP_FILTER_FLAG_NEW_LISTENER`` and return the listener fd (close-on-exec).

    From the moment this returns, every syscall of the process (but an exempted handoff) waits
    until someone serves the listener: hand it over with no syscall in between, as
    :func:`start_tracing` does.
    """
    return _install(trace_filter(exempt), 0)


def _install(code: bytes, extra_flags: int) -> int:
    libc.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    flags = abi.SECCOMP_FILTER_FLAG_NEW_LISTENER | extra_flags
    call, count = libc.prepare_seccomp_filter(code, flags)
    # Kept alive, and stored before the call: freeing or growing memory after it could make a
    # syscall (munmap, brk) that the filter holds before the listener is served.
    _installed.append(call)
    fd, err = call()
    if fd < 0:
        raise abi.SyscallError(
            "seccomp",
            ("SECCOMP_SET_MODE_FILTER", abi.seccomp_flag_names(flags), f"<{count} instructions>"),
            err,
        )
    return fd


def start_tracing(sock: socket.socket | int) -> None:
    """The traced process's side, right before execve: install the trace filter and hand its
    listener to the supervisor over ``sock`` (a connected AF_UNIX socket; the supervisor reads
    it with :func:`recv_fd`), then close the listener here.

    On return the filter is in force and served; the caller's execve is the next traced call.
    Raises SyscallError when the filter cannot be installed (nothing has changed then but
    no_new_privs). If the handoff itself fails (the supervisor's end is gone) the process can
    make no further syscall that returns: it stays blocked until killed, as a process whose
    supervisor died is (nucleus arms PR_SET_PDEATHSIG for that).
    """
    _hand_over(sock, trace_filter, b"L", 0)


def start_notifying(sock: socket.socket | int, program: bytes, payload: bytes, log_denied: bool = False) -> None:
    """Like :func:`start_tracing`, for an enforced ``program``: install its notify form
    (``seccomp_bpf.notify_filter``: the calls it refuses wait for the violation monitor, the rest
    run as before) and hand the listener over with ``payload`` (the program's sha256, so the
    monitor knows which program to consult). ``log_denied`` adds SECCOMP_FILTER_FLAG_LOG."""
    flags = abi.SECCOMP_FILTER_FLAG_LOG if log_denied else 0
    _hand_over(sock, lambda exempt: notify_filter(program, exempt), payload, flags)


def _hand_over(sock: socket.socket | int, build: Callable[[tuple[int, int]], bytes], payload: bytes,
               flags: int) -> None:
    sock_fd = sock if isinstance(sock, int) else sock.fileno()
    handoff = libc.PreparedSendFd(sock_fd, payload)
    code = build((sock_fd, handoff.address))
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    # A collection in the window could run a finalizer that closes a file: a syscall.
    collecting = gc.isenabled()
    gc.disable()
    try:
        listener = _install(code, flags)
    except BaseException:
        if collecting:
            gc.enable()
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        raise
    ret, err = handoff.send(listener)
    # Served from here on.
    if collecting:
        gc.enable()
    os.close(listener)
    signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    if ret < 0:
        raise abi.SyscallError("sendmsg", (str(sock_fd), "SCM_RIGHTS", str(listener)), err)


def send_fd(sock: socket.socket, fd: int) -> None:
    """Send ``fd`` over a connected AF_UNIX socket (SCM_RIGHTS) with a one-byte message. Not for
    a traced process's own listener: use :func:`start_tracing`, whose send is exempt."""
    socket.send_fds(sock, [b"L"], [fd])


SECCOMP_LISTENER = "anon_inode:seccomp notify"  # what /proc/self/fd/N links to for a listener


def recv_fd(
    sock: socket.socket, timeout: float | None = None, expect: str | None = SECCOMP_LISTENER
) -> int:
    """Receive one fd sent by :func:`send_fd` or :func:`start_tracing` (close-on-exec here).

    Raises ConnectionError when the peer closed its end without sending (the traced process
    died before installing the filter) or, with ``expect``, when the fd is not what
    /proc/self/fd says it should be (by default: a seccomp listener); TimeoutError after
    ``timeout`` seconds.
    """
    previous = sock.gettimeout()
    sock.settimeout(timeout)
    try:
        msg, fds, flags, _ = socket.recv_fds(sock, 1, 1, socket.MSG_CMSG_CLOEXEC)
    except TimeoutError as e:
        raise TimeoutError(
            _errno.ETIMEDOUT, f"no seccomp listener received within {timeout} s"
        ) from e
    finally:
        sock.settimeout(previous)
    for extra in fds[1:]:
        os.close(extra)
    if not fds:
        if flags & socket.MSG_CTRUNC:
            raise ConnectionError(_errno.EPROTO, "the seccomp listener was truncated (MSG_CTRUNC)")
        raise ConnectionError(
            _errno.ECONNRESET,
            "the traced process closed its socket before handing over a seccomp listener"
            if not msg else "a message without a seccomp listener arrived on the handoff socket",
        )
    return _checked(fds[0], expect)


def _checked(fd: int, expect: str | None) -> int:
    if expect is not None:
        try:
            what = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            what = expect  # no /proc to ask
        if what != expect:
            os.close(fd)
            raise ConnectionError(_errno.EPROTO, f"the fd received is {what!r}, not {expect!r}")
    return fd


_UCRED = struct.Struct("=iII")  # struct ucred: pid, uid, gid
PAYLOAD_MAX = 64


def recv_listener(sock: socket.socket) -> tuple[int, bytes, int] | None:
    """Receive the listener :func:`start_notifying` sends: (the listener, close-on-exec here;
    the payload; the sender's pid in this process's PID namespace, which the kernel attaches
    because ``sock`` has SO_PASSCRED set, or 0). None when the peer closed its end without
    sending. Raises ConnectionError for a message that holds no seccomp listener."""
    space = socket.CMSG_SPACE(4) + socket.CMSG_SPACE(_UCRED.size)
    msg, ancillary, flags, _ = sock.recvmsg(PAYLOAD_MAX, space, socket.MSG_CMSG_CLOEXEC)
    fds: list[int] = []
    pid = 0
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += struct.unpack(f"={len(data) // 4}i", data[: len(data) // 4 * 4])
        elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = _UCRED.unpack_from(data)[0]
    for extra in fds[1:]:
        os.close(extra)
    if not fds:
        if not msg and not flags & socket.MSG_CTRUNC:
            return None
        raise ConnectionError(_errno.EPROTO, "a message without a seccomp listener arrived on the handoff socket")
    return _checked(fds[0], SECCOMP_LISTENER), msg, pid
