"""The process a machine spawns to work inside the new (or joined) namespaces: it carries out the
child-side intents the supervisor sends over the sync pipe and answers with the events they
produced.

For `run`, the setup process unshares the namespaces and forks PID 1 of the new PID namespace
(ForkInit), reports that pid and exits; PID 1 then serves the rest of the setup. On
ExecWorkload, PID 1 forks the workload, closes everything it holds and stays as the container's
minimal init: it forwards signals to the workload, reaps orphans and exits with the workload's
status. For `attach`, the joining process enters the container's namespaces, forks into its PID
namespace (JoinFork), and the forked process applies the restrictions and execs the command in
place (ExecCommand).
"""

from __future__ import annotations

import errno as _errno
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Any, cast

from nucleus import linux
from nucleus import vocab as v
from nucleus.effects import abi, channel, libc, process, rlimits
from nucleus.effects.handlers import child_handler


@dataclass
class SetupProcess:
    """What the spawned process holds besides the intents: the pipe ends, the compiled seccomp
    programs (by sha256, read before the fork: after pivot_root the host's files are out of
    reach), and in seccomp trace mode the socket to hand the filter's listener over."""

    req_fd: int = -1
    resp_fd: int = -1
    programs: dict[str, bytes] = field(default_factory=dict)
    trace_fd: int | None = None


def serve(setup: SetupProcess) -> None:
    """Serve intents until the workload is exec'd or the supervisor goes away. Never returns."""
    try:
        # Stays dumpable until BecomeRoot: an unprivileged supervisor must be able to write this
        # process's id maps (a non-dumpable process's /proc files belong to root). No workload
        # code exists before then.
        armed = False
        while True:
            try:
                batch = channel.receive(setup.req_fd)
            except (channel.ChannelClosedError, OSError):
                os._exit(125)
            if not armed:
                # Die with the supervisor. PID 1 arms this only now: its parent at fork time was
                # the intermediate process, which has exited and been reaped before this message.
                libc.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
                armed = True
            assert isinstance(batch, list)
            events: list[dict[str, Any]] = []
            forked = False
            for item in batch:
                # The supervisor sends intents only (channel.send_intents).
                intent = cast("v.Intent", v.from_wire(item))
                if isinstance(intent, v.ForkInit):
                    forked = _fork(setup, intent, events)
                    armed = not forked
                    break
                if isinstance(intent, v.ExecWorkload):
                    _exec_workload(setup, intent, events)  # never returns
                if isinstance(intent, v.ExecCommand):
                    exec_command(intent)  # never returns
                try:
                    detail = child_handler(intent)(setup, intent)
                except OSError as e:
                    events.append(v.to_wire(v.failed(intent, e.errno or 0, describe(e))))
                    break
                except Exception as e:  # noqa: BLE001 - a bug or bad data: report it, never hang the supervisor
                    events.append(v.to_wire(v.failed(intent, 0, f"{type(e).__name__}: {e}")))
                    break
                done = v.done(intent, detail or "")
                if done is not None:
                    events.append(v.to_wire(done))
            if not forked:
                channel.send(setup.resp_fd, events)
    except BaseException as e:  # noqa: BLE001 - the spawned process must never unwind into the CLI
        try:
            os.write(2, f"nucleus: setup process: {type(e).__name__}: {e}\n".encode())
        finally:
            os._exit(125)


def describe(e: OSError) -> str:
    """An OSError as the event's message: a SyscallError names its call; others their file."""
    if isinstance(e, abi.SyscallError):
        return str(e)
    name = _errno.errorcode.get(e.errno or 0, "?")
    where = f" {e.filename!r}" if e.filename else ""
    return f"{e.strerror or e}{where} ({name})"


def _fork(setup: SetupProcess, intent: v.ForkInit, events: list[dict[str, Any]]) -> bool:
    """Fork the process that continues serving. Returns True in it (it answers nothing for this
    batch); the parent answers with the new process's host pid and exits."""
    try:
        pid = os.fork()
    except OSError as e:
        events.append(v.to_wire(v.failed(intent, e.errno or 0, describe(e))))
        return False
    if pid == 0:
        # Its next message comes after the supervisor has read the answer below and reaped the
        # intermediate process.
        return True
    done = v.done(intent, str(pid))
    assert done is not None
    events.append(v.to_wire(done))
    channel.send(setup.resp_fd, events)
    os._exit(0)


def _exec_workload(setup: SetupProcess, intent: v.ExecWorkload, events: list[dict[str, Any]]) -> None:
    """Fork the workload, answer, drop every descriptor, and become the container's init. If
    the workload cannot be forked (the pids limit), init exits 126: the run ends with that."""
    try:
        pid = os.fork()
    except OSError as e:
        os.write(2, f"nucleus: cannot start the workload: {e.strerror}\n".encode())
        os._exit(126)
    if pid == 0:
        exec_command(v.ExecCommand(intent.argv, intent.env, intent.cwd, intent.rlimits), fallback_cwd=False)
    channel.send(setup.resp_fd, events)
    libc.close_range(3)
    sys.stdout.flush()
    os._exit(process.wait_forwarding(pid, gone=0))


def exec_command(op: v.ExecCommand, fallback_cwd: bool = True) -> None:
    """In the process that becomes the command: rlimits, working directory, no descriptor
    beyond 0-2, default signals, exec. Exits 126 when the command cannot be invoked, 127 when
    it is not found. Never returns."""
    try:
        libc.close_range(3)
        process.default_signals()
        rlimits.apply(*op.rlimits)  # capped at the hard limits this process may not raise
    except OSError as e:
        os.write(2, f"nucleus: cannot prepare {op.argv[0]!r}: {e}\n".encode())
        os._exit(126)
    try:
        os.chdir(op.cwd)
    except OSError as e:
        if not fallback_cwd:
            os.write(2, f"nucleus: cannot enter working directory {op.cwd!r}: {e.strerror}\n".encode())
            os._exit(126)
        os.chdir("/")
    try:
        os.execvpe(op.argv[0], list(op.argv), dict(op.env))
    except OSError as e:
        code = 127 if e.errno in (_errno.ENOENT, _errno.ENOTDIR) else 126
        os.write(2, f"nucleus: cannot run {op.argv[0]!r}: {e.strerror}\n".encode())
        os._exit(code)
