"""Processes: forking the processes a machine serves, detaching a supervisor, waiting for a
child while forwarding signals, and the exit status convention (128+N for signal N).

Signals are taken synchronously (sigwaitinfo) by every waiting process of nucleus: the caller
blocks WAITED first (`blocked`), and children reset their mask before exec.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

# Signals the supervisor forwards and the container's init passes on to the workload.
FORWARDED = (
    signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
    signal.SIGWINCH,
)
WAITED = frozenset(FORWARDED) | {signal.SIGCHLD}
# Signals a workload gets with their default action (Python ignores SIGPIPE and SIGXFSZ, and
# handles SIGINT; the forwarded ones may have been blocked or handled by the runtime).
DEFAULTED = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, *FORWARDED)


def exit_status(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128+N for death by signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def reap(pid: int) -> int | None:
    """Wait for a child; its exit status, or None when it was already reaped."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return None
    return exit_status(status)


def poll_exit(pid: int, gone: int = 125) -> int | None:
    """A child's exit status once it has exited (reaping it), None while it runs, `gone` when
    it is not (any more) a child of this process."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return gone
    return None if got == 0 else exit_status(status)


@contextlib.contextmanager
def blocked(signals: frozenset[int] = WAITED) -> Iterator[None]:
    """Block `signals` for the duration (children forked meanwhile inherit the mask)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def default_signals() -> None:
    """In a child about to exec: default dispositions and an empty mask."""
    for sig in DEFAULTED:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def wait_forwarding(target: int, gone: int = 125) -> int:
    """Wait for a child while forwarding signals to it (the caller has blocked WAITED), reaping
    any other child on the way (as PID 1 must); return its exit status, 128+N for signal N, or
    `gone` when there is no child left to wait for."""
    while True:
        info = signal.sigwaitinfo(WAITED)
        if info.si_signo != signal.SIGCHLD:
            # Signals raised by a terminal reach the workload's process group directly; pass on
            # only those sent on purpose (si_code <= 0: kill, sigqueue, tkill).
            if info.si_code <= 0:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(target, info.si_signo)
            continue
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return gone
            if pid == 0:
                break
            if pid == target:
                return exit_status(status)


def kill(pid: int, sig: int = signal.SIGKILL, start: int | None = None) -> None:
    """Signal a process; one already gone is fine. With `start` (its start time, as a record
    keeps it) the process is pinned with a pidfd first and signalled only if it is still the
    same process, never a later one that reused its pid. PID 1 and the kernel's threads are
    never signalled, whatever a record says."""
    if pid <= 1:
        raise OSError(errno.EPERM, f"refusing to signal pid {pid}")
    if start is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        return
    try:
        pinned = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if process_start(pid) == start:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pinned, sig)
    finally:
        os.close(pinned)


def process_start(pid: int) -> int | None:
    """The start time of a process (clock ticks since boot), to tell a pid from a reused one;
    None when the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ESRCH):
            return None
        raise
    rest = data[data.rindex(b")") + 2:].split()
    if rest[0] == b"Z":
        return None
    return int(rest[19])


def alive(pid: int | None, start: int | None) -> bool:
    return pid is not None and start is not None and process_start(pid) == start


def serve_in_child(serve: Callable[[int, int], object]) -> tuple[int, int, int]:
    """Fork a child that runs ``serve(request_fd, response_fd)`` and never returns from it;
    return (pid, the parent's request writer, the parent's response reader). Both pipes are
    close-on-exec."""
    req_r, req_w = os.pipe2(os.O_CLOEXEC)
    resp_r, resp_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(req_w)
            os.close(resp_r)
            serve(req_r, resp_w)
        finally:
            os._exit(125)
    os.close(req_r)
    os.close(resp_w)
    return pid, req_w, resp_r


# --- a detached supervisor ------------------------------------------------------------------------


def detach(log_path: str, body: Callable[[Callable[[dict[str, Any]], None]], int]) -> dict[str, Any] | None:
    """Run ``body(report)`` in a background process of its own session whose output goes to
    `log_path`, and return the first message it reports (a JSON object), or None when it ended
    without one. The background process exits with body's status; the caller does not wait for
    it beyond its report."""
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        code = 125
        try:
            os.close(r)
            os.setsid()
            null = os.open("/dev/null", os.O_RDONLY)
            log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            os.dup2(null, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(null)
            os.close(log)
            sent = False

            def report(message: dict[str, Any]) -> None:
                nonlocal sent
                if not sent:
                    sent = True
                    with contextlib.suppress(OSError):
                        os.write(w, json.dumps(message).encode())
                    os.close(w)

            code = body(report)
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    if not chunks:
        reap(pid)
        return None
    message: dict[str, Any] = json.loads(b"".join(chunks))
    if "error" in message:
        reap(pid)
    return message
