"""Seccomp trace mode, the traced process's side: install the trace filter and hand its listener
to the supervisor; and both ends of that handoff (:func:`send_fd`, :func:`recv_fd`).

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

from nucleus import linux
from nucleus.effects import abi, libc
from nucleus.effects.seccomp_bpf import trace_filter

_installed: list[libc.PreparedSyscall] = []


def install_trace_filter(exempt: tuple[int, int] | None = None) -> int:
    """In the calling process: set no_new_privs, install :func:`trace_filter` with
    ``SECCOMP_FILTER_FLAG_NEW_LISTENER`` and return the listener fd (close-on-exec).

    From the moment this returns, every syscall of the process (but an exempted handoff) waits
    until someone serves the listener: hand it over with no syscall in between, as
    :func:`start_tracing` does.
    """
    libc.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    flags = abi.SECCOMP_FILTER_FLAG_NEW_LISTENER
    call, count = libc.prepare_seccomp_filter(trace_filter(exempt), flags)
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
    sock_fd = sock if isinstance(sock, int) else sock.fileno()
    handoff = libc.PreparedSendFd(sock_fd)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    # A collection in the window could run a finalizer that closes a file: a syscall.
    collecting = gc.isenabled()
    gc.disable()
    try:
        listener = install_trace_filter((sock_fd, handoff.address))
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
    fd = fds[0]
    if expect is not None:
        try:
            what = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            what = expect  # no /proc to ask
        if what != expect:
            os.close(fd)
            raise ConnectionError(_errno.EPROTO, f"the fd received is {what!r}, not {expect!r}")
    return fd
