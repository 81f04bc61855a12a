"""Processes: forking the processes a machine serves, detaching a supervisor, waiting for a
child while forwarding signals, and the exit status convention (128+N for signal N).

Signals are taken synchronously (sigwaitinfo) by every waiting process of nucleus: the caller
blocks WAITED first (`blocked`), and children reset their mask before exec.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import signal
import struct
import sys
from collections.abc import Callable, Iterator
from typing import Any

from nucleus.effects import libc, logs

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
    status = wait_until(target, None, gone)
    assert status is not None
    return status


def wait_until(target: int, until: float | None, gone: int = 125) -> int | None:
    """As `wait_forwarding`, until `until` (a time.monotonic() value; None: for good): None when
    the child still runs then."""
    import time

    while True:
        if until is None:
            info = signal.sigwaitinfo(WAITED)
        else:
            got = signal.sigtimedwait(WAITED, max(0.0, until - time.monotonic()))
            if got is None:
                return None
            info = got
        if info.si_signo != signal.SIGCHLD:
            # Signals raised by a terminal reach the workload's process group directly; pass on
            # only those sent on purpose (si_code <= 0: kill, sigqueue, tkill).
            if info.si_code <= 0:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(target, info.si_signo)
            continue
        status = reap_children(target, gone)
        if status is not None:
            return status


def reap_children(target: int, gone: int = 125) -> int | None:
    """Reap every child that has ended (as PID 1 and a subreaper must); the exit status of
    `target` once it is among them, `gone` when no child is left, else None."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return gone
        if pid == 0:
            return None
        if pid == target:
            return exit_status(status)


_SIGINFO = struct.Struct("=IiiI")  # signalfd_siginfo: ssi_signo, ssi_errno, ssi_code, ssi_pid, ...
_SIGINFO_SIZE = 128


def read_signals(fd: int) -> list[tuple[int, int]]:
    """Every pending (signo, si_code) on a non-blocking signalfd."""
    out: list[tuple[int, int]] = []
    while True:
        try:
            data = os.read(fd, _SIGINFO_SIZE * 16)
        except (BlockingIOError, InterruptedError):
            return out
        if not data:
            return out
        for off in range(0, len(data) - _SIGINFO_SIZE + 1, _SIGINFO_SIZE):
            signo, _, code, _ = _SIGINFO.unpack_from(data, off)
            out.append((signo, code))


def kill(pid: int, sig: int = signal.SIGKILL, start: int | None = None,
         identity: Callable[[int], bool] | None = None) -> None:
    """Signal a process; one already gone is fine. With `start` (its start time, as a record
    keeps it) the process is pinned with a pidfd first and signalled only if it is still the
    same process, never a later one that reused its pid, and (with `identity`) only if it still
    passes that check, made while it is pinned. PID 1 and the kernel's threads are never
    signalled, whatever a record says."""
    if not _pid(pid) or pid <= 1:
        raise OSError(errno.EPERM, f"refusing to signal pid {pid!r}")
    if start is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        return
    try:
        pinned = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if process_start(pid) == start and (identity is None or identity(pid)):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pinned, sig)
    finally:
        os.close(pinned)


def _pid(value: object) -> bool:
    """Whether `value` can name a process (a record may hold anything)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1 << 31


def process_start(pid: int) -> int | None:
    """The start time of a process (clock ticks since boot), to tell a pid from a reused one;
    None when the process is gone or a zombie."""
    if not _pid(pid):
        return None
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


def pin(pid: int, start: int) -> int | None:
    """A pidfd of `pid` while it is still the process that started at `start` (never one that
    reused its pid), or None."""
    try:
        pinned = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    if process_start(pid) != start:
        os.close(pinned)
        return None
    return pinned


def alive(pid: object, start: object) -> bool:
    return _pid(pid) and isinstance(start, int) and process_start(pid) == start  # type: ignore[arg-type]


def session_leader(pid: object, start: object) -> bool:
    """Whether `pid` is still the process that started at `start` and leads a session of its
    own (as a detached supervisor does, see `detach`)."""
    if not alive(pid, start):
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    session = data[data.rindex(b")") + 2:].split()[3]  # field 6
    return session == str(pid).encode() and process_start(pid) == start  # type: ignore[arg-type]


def _status(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/status") as f:
            return {k: val.strip() for k, _, val in (line.partition(":") for line in f)}
    except OSError:
        return {}


def container_init(pid: object, start: object, cgroup_procs: tuple[str, ...] = (),
                   parent: int | None = None) -> bool:
    """Whether `pid` is still the process that started at `start` and is a container's init:
    PID 1 of a PID namespace below this one (and, when `cgroup_procs` names the container's
    cgroup, a member of it; when `parent` is given, that process's child: a supervisor is the
    subreaper its container's init was reparented to). A record may name any process; only one
    that passes this is signalled or joined."""
    if not alive(pid, start):
        return False
    assert isinstance(pid, int)
    status = _status(pid)
    nspid = status.get("NSpid", "").split()
    if len(nspid) < 2 or nspid[-1] != "1":
        return False
    if parent is not None and status.get("PPid") != str(parent):
        return False
    if cgroup_procs:
        from nucleus.effects import cgroups

        try:
            members = cgroups.procs(cgroup_procs)
        except OSError:
            return False
        if pid not in members:
            return False
    return process_start(pid) == start


def restrictions(pid: int) -> dict[str, int]:
    """What confines a process, from /proc/<pid>/status: its capability sets (CapBnd, CapPrm,
    CapEff, ...), NoNewPrivs and Seccomp (2: a filter); empty when it is gone."""
    from nucleus.effects import caps

    try:
        return caps.read_status_caps(pid)
    except OSError:
        return {}


def namespaces_apart(pid: int, kinds: tuple[str, ...]) -> tuple[str, ...] | None:
    """The kinds of namespace in which `pid` is not where this process is (its own); None when
    it is gone or its namespaces cannot be read."""
    apart = []
    for kind in kinds:
        try:
            theirs = os.readlink(f"/proc/{pid}/ns/{kind}")
        except FileNotFoundError:
            if not os.path.exists(f"/proc/self/ns/{kind}"):
                continue  # a kind this kernel lacks
            return None
        except OSError:
            return None
        if theirs != os.readlink(f"/proc/self/ns/{kind}"):
            apart.append(kind)
    return tuple(apart)


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


# What a run's supervisor becomes once its container runs (nucleus.app.keeper; `make setup` builds it).
KEEPER = os.path.join(os.path.dirname(os.path.dirname(__file__)), "init", "nucleus-keeper")


def keeper_built() -> bool:
    return os.access(KEEPER, os.X_OK)


def open_keeper() -> int:
    """The keeper's binary, opened (O_PATH) to be executed later by descriptor: what can fail
    in finding it fails before the supervisor gives anything up."""
    return os.open(KEEPER, os.O_PATH | os.O_CLOEXEC)


def become_keeper(keeper: int, init_pid: int, watched: list[int], inherited: list[int], monitor: list[str],
                  teardown: list[str]) -> None:
    """Execute the keeper (nucleus/init/keeper.c, opened by `open_keeper`) in this process: it
    keeps `init_pid`, starts `monitor` when one of `watched` is readable, and executes
    `teardown` with the init's status once it has ended. `inherited` stay open across the
    exec; should it fail, they are close-on-exec again."""
    for fd in inherited:
        os.set_inheritable(fd, True)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(keeper, [KEEPER, str(init_pid), ",".join(map(str, watched)) or "-", "--", *monitor, "--",
                           *teardown], os.environ)
    finally:
        for fd in inherited:
            os.set_inheritable(fd, False)


MFD_NOEXEC_SEAL = 0x0008  # Linux 6.3: a memory file that can never be executable
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
# A memory file's header: where its content is, and how long (`rewrite_memory_file`).
_HEADER = struct.Struct("=QQ")


def memory_file(name: str, data: bytes = b"", *, sealed: bool = False) -> int:
    """A close-on-exec memory file holding `data`, never executable, sealed against any change
    when `sealed`."""
    flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    try:
        fd = os.memfd_create(name, flags | MFD_NOEXEC_SEAL)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        fd = os.memfd_create(name, flags)  # before Linux 6.3
    try:
        rewrite_memory_file(fd, data)
        if sealed:
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_memory_file(fd: int) -> bytes:
    offset, length = _HEADER.unpack(_read_at(fd, _HEADER.size, 0))
    return _read_at(fd, length, offset)


def rewrite_memory_file(fd: int, data: bytes) -> None:
    """Replace what a memory file holds, all at once for its readers (a writer killed midway
    leaves what was there): the content is written where the current one is not, then the
    header, one write of 16 bytes, names it."""
    head = os.pread(fd, _HEADER.size, 0)
    offset, length = _HEADER.unpack(head) if len(head) == _HEADER.size else (_HEADER.size, 0)
    at = _HEADER.size if _HEADER.size + len(data) <= offset else max(offset + length, _HEADER.size)
    _write_at(fd, data, at)
    _write_at(fd, _HEADER.pack(at, len(data)), 0)
    if at < offset:
        os.ftruncate(fd, at + len(data))  # what was after it is no longer named


def _read_at(fd: int, size: int, offset: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.pread(fd, min(size - len(data), 1 << 20), offset + len(data))
        if not chunk:
            raise OSError(errno.EIO, f"a memory file cut short: {len(data)} of {size} bytes at {offset}")
        data += chunk
    return data


def _write_at(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def close(*fds: int) -> None:
    """Close each descriptor (-1: none)."""
    for fd in fds:
        if fd >= 0:
            os.close(fd)


def interpreter(module: str) -> list[str]:
    """The command line of a fresh interpreter, isolated and without site, that imports nucleus
    as this one does and calls `module`.main with its arguments."""
    return [sys.executable, "-I", "-S", "-c",
            f"import sys; sys.path[:0] = {sys.path!r}; from {module} import main; main(sys.argv[1:])"]


# --- a detached supervisor ------------------------------------------------------------------------

LOGGER_WAIT = 5.0  # seconds a detached supervisor waits for its logger to write the last output
# A detached supervisor's logger (its pid), for the teardown that finishes it after a keeper.
logger: int | None = None


def detach(sink: logs.Sink, body: Callable[[Callable[[dict[str, Any]], None]], int]) -> dict[str, Any] | None:
    """Run ``body(report)`` in a background process of its own session whose output (and that
    of every process it starts) goes through a pipe to a logger process that writes `sink`, and
    return the first message it reports (a JSON object), or None when it ended without one. The
    background process exits with body's status once its logger has written everything; the
    caller does not wait for it beyond its report."""
    global logger  # the background process's own, named for its teardown after a keeper
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        code = 125
        logger = None
        try:
            os.close(r)
            os.setsid()
            logger = _start_logger(sink)
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
            if logger is not None:
                finish_logger(logger)
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


def _start_logger(sink: logs.Sink) -> int:
    """Fork the logger, and make the pipe to it this process's stdout and stderr (stdin is
    /dev/null). The logger holds nothing but the pipe's reading end and its files: neither the
    caller's terminal nor the report pipe, so that nobody waits for it."""
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(out_r, 0)
            libc.close_range(1)
            # A fresh interpreter that imports the log's writer alone: a forked one would keep
            # the supervisor's pages (its share of them all, once the supervisor is a keeper).
            os.execv(sys.executable, [*interpreter("nucleus.effects.logs"), *map(str, dataclasses.astuple(sink))])
        finally:
            os._exit(0)
    os.close(out_r)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out_w, 1)
    os.dup2(out_w, 2)
    os.close(null)
    os.close(out_w)
    return pid


def finish_logger(pid: int) -> None:
    """Close this process's end of the log pipe and wait (a while) for the logger to drain it:
    every other writer (the container's processes) is gone by now."""
    import sys
    import time

    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    null = os.open("/dev/null", os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)
    deadline = time.monotonic() + LOGGER_WAIT
    while time.monotonic() < deadline:
        try:
            got, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # reaped already (by a wait for any child)
            return
        if got:
            return
        time.sleep(0.005)
