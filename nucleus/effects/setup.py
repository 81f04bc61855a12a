"""The process a machine spawns to work inside the new (or joined) namespaces: it carries out the
child-side intents the supervisor sends over the sync pipe and answers with the events they
produced.

For `run`, the setup process unshares the namespaces and forks PID 1 of the new PID namespace
(ForkInit), reports that pid and exits; PID 1 then serves the rest of the setup. On
ExecWorkload, PID 1 forks the workload and learns through a close-on-exec pipe whether its exec
succeeded: if it did not, PID 1 answers with the lifecycle's Exit (127 or 126, with the reason)
and exits with that status; if it did, PID 1 answers nothing and becomes the container's
minimal init: it executes the compiled init (nucleus.effects.init_image, nucleus/init/init.c)
when the supervisor loaded one, else closes everything it holds and stays as it is; either
forwards signals to the workload, reaps orphans and exits with the workload's status. PID 1 shows nothing of the host: its command line (which was
the supervisor's, with the interpreter's and the state directory's paths) is overwritten with
"init" as soon as it exists. For `attach`, the joining process enters the container's
namespaces, forks into its PID namespace (JoinFork), and the forked process applies the
restrictions and execs the command in place (ExecCommand). Either command gets its stdin,
stdout and stderr last: a terminal of its own with -t (nucleus.effects.terminal), stdin
/dev/null without -i.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import os
import signal
import socket
import stat
import sys
from dataclasses import dataclass, field
from typing import Any, NoReturn, cast

from nucleus import linux
from nucleus import vocab as v
from nucleus.config import exec_refusal
from nucleus.config.workspace import place_of
from nucleus.effects import abi, channel, fs, init_image, libc, process, rlimits, secrets
from nucleus.effects.handlers import child_handler
from nucleus.errors import EXIT_FAILURE

LandlockRules = tuple[tuple[str, tuple[str, ...]], ...]


@dataclass
class SetupProcess:
    """What the spawned process holds besides the intents: the pipe ends, the compiled seccomp
    programs (by sha256, read before the fork: after pivot_root the host's files are out of
    reach), and in seccomp trace mode (or with a violation monitor) the socket to hand the filter's
    listener over."""

    req_fd: int = -1
    resp_fd: int = -1
    programs: dict[str, bytes] = field(default_factory=dict)
    trace_fd: int | None = None
    # PID 1's pipe (read end, write end; close-on-exec) on which the workload says its exec
    # failed; made when PID 1 starts, so that no new kind of system call is needed once the
    # container's seccomp filter is loaded.
    exec_report: tuple[int, int] | None = None
    # The socket on which KeepTree hands the supervisor a tree (made only when the plan keeps one).
    handover: socket.socket | None = None
    # With -t: the socket on which the workload hands the supervisor its terminal's master.
    terminal_fd: int | None = None
    # The Landlock rules this process applied (ApplyLandlock), None before: what a refused exec
    # is checked against.
    landlock: LandlockRules | None = None
    # The compiled init's memory file, which PID 1 executes once the workload runs
    # (nucleus.effects.init_image); None: PID 1 stays as it is.
    init_image: int | None = None
    # The --secret sources' bytes, read by the supervisor just before it forked this process
    # (WriteSecret overwrites each once written).
    secrets: list[bytearray] = field(default_factory=list)


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
                    exec_command(intent, landlock=setup.landlock, terminal_fd=setup.terminal_fd)  # never returns
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
        # Visible inside the container from now on: its command line and name say nothing of
        # the host (the joining process of attach shows the same until it execs the command).
        _hide_host("attach" if isinstance(intent, v.JoinFork) else "init")
        if not isinstance(intent, v.JoinFork):
            setup.exec_report = os.pipe2(os.O_CLOEXEC)
        # Its next message comes after the supervisor has read the answer below and reaped the
        # intermediate process.
        return True
    secrets.wipe(setup.secrets)  # PID 1 has its copy
    done = v.done(intent, str(pid))
    assert done is not None
    events.append(v.to_wire(done))
    channel.send(setup.resp_fd, events)
    os._exit(0)


def _hide_host(title: str) -> None:
    """Overwrite this process's command line and name (best effort: a process that cannot is
    still confined, only less discreet)."""
    try:
        libc.set_process_title(title)
        libc.set_process_name(title)
    except OSError as e:
        os.write(2, f"nucleus: warning: the container's {title} process keeps its command line: {e}\n".encode())


def _exec_workload(setup: SetupProcess, intent: v.ExecWorkload, events: list[dict[str, Any]]) -> None:
    """Fork the workload and wait until it has exec'd (its end of a close-on-exec pipe closes
    without a word) or failed to (it writes its status and reason there first). On failure,
    answer the lifecycle's Exit with them and exit with that status; on success, answer, drop
    every descriptor, and become the container's init. If the workload cannot be forked (the
    pids limit), init answers Exit 126 the same way."""
    try:
        failed_r, failed_w = setup.exec_report or os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
    except OSError as e:
        os.write(2, f"nucleus: cannot start the workload: {e.strerror}\n".encode())
        _exit_answer(setup, events, 126, f"cannot start the workload: {e.strerror}")
    if pid == 0:
        os.close(failed_r)
        exec_command(v.ExecCommand(intent.argv, intent.env, intent.cwd, intent.rlimits, intent.places,
                                   terminal=intent.terminal, stdin=intent.stdin,
                                   exact_rlimits=intent.exact_rlimits),
                     fallback_cwd=False, report_fd=failed_w, landlock=setup.landlock,
                     terminal_fd=setup.terminal_fd)
    os.close(failed_w)
    if setup.terminal_fd is not None:  # the workload's now: its end closes when it is gone
        os.close(setup.terminal_fd)
        setup.terminal_fd = None
    report = _read_report(failed_r)
    os.close(failed_r)
    if report:
        # The last line: the workload writes its reason before looking for the cause, and again
        # once it has found one.
        code, _, reason = report.decode(errors="replace").splitlines()[-1].partition(" ")
        status = process.reap(pid)
        if status is not None and status != int(code):
            # It died looking (at a call its seccomp filter kills): the reason is told here.
            os.write(2, f"nucleus: {reason}\n".encode())
        _exit_answer(setup, events, int(code), reason)
    channel.send(setup.resp_fd, events)
    sys.stdout.flush()
    if setup.init_image is not None:
        failed = init_image.become(setup.init_image, pid)
        os.write(2, f"nucleus: warning: the container's init stays the interpreter: cannot execute "
                    f"the compiled init: {failed.strerror}\n".encode())
    libc.close_range(3)
    os._exit(process.wait_forwarding(pid, gone=0))


def _stdio(op: v.ExecCommand, terminal_fd: int | None) -> None:
    """Descriptors 0, 1 and 2 as the command gets them: a terminal of its own (-t), or
    /dev/null as its stdin (without -i); else as they were inherited."""
    if op.terminal:
        if terminal_fd is None:
            raise OSError(_errno.EBADF, "no socket to hand the terminal over")
        from nucleus.effects import terminal  # imported by the supervisor before it forked

        terminal.become_controlled(terminal_fd)
    elif not op.stdin:
        null = os.open("/dev/null", os.O_RDONLY)
        if null != 0:
            os.dup2(null, 0)
            os.close(null)


def _read_report(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except InterruptedError:
            continue
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _exit_answer(setup: SetupProcess, events: list[dict[str, Any]], code: int, reason: str) -> NoReturn:
    """The workload never ran: answer ExecWorkload with Exit, and end the container."""
    events.append(v.to_wire(v.Exit(code, reason)))
    channel.send(setup.resp_fd, events)
    os._exit(code)


def exec_command(op: v.ExecCommand, fallback_cwd: bool = True, report_fd: int | None = None,
                 landlock: LandlockRules | None = None, terminal_fd: int | None = None) -> NoReturn:
    """In the process that becomes the command: rlimits, working directory, no descriptor
    beyond 0-2, default signals, exec. Exits 126 when the command cannot be invoked, 127 when
    it is not found, after writing "<status> <reason>" lines to `report_fd` (close-on-exec: it
    closes without a word when the exec succeeds). A refused exec's reason names its cause,
    found by looking at what was executed (`refused_exec`; `landlock`: the rules applied).
    Never returns."""

    def report(code: int, reason: str) -> None:
        if report_fd is not None:
            with contextlib.suppress(OSError):
                os.write(report_fd, f"{code} {reason}\n".encode())

    def fail(code: int, reason: str) -> NoReturn:
        report(code, reason)
        os.write(2, f"nucleus: {reason}\n".encode())
        os._exit(code)

    try:
        _stdio(op, terminal_fd)
    except OSError as e:  # nucleus's own failure, which the supervisor reports for a run
        reason = f"cannot give {op.argv[0]!r} {'a terminal' if op.terminal else 'its stdin'}: {e}"
        report(EXIT_FAILURE, reason)
        if report_fd is None:
            os.write(2, f"nucleus: {reason}\n".encode())
        os._exit(EXIT_FAILURE)
    if op.cwd_required:
        fallback_cwd = False
    try:
        if report_fd is None:
            libc.close_range(3)
        else:  # every descriptor but the report's (no dup: no call the workload's filter may lack)
            if report_fd > 3:
                libc.close_range(3, report_fd - 1)
            libc.close_range(report_fd + 1)
        process.default_signals()
        rlimits.apply(*op.rlimits, exact=op.exact_rlimits)  # nucleus's own capped at the hard limits
    except OSError as e:
        fail(126, f"cannot prepare {op.argv[0]!r}: {e}")
    try:
        os.chdir(op.cwd)
    except OSError as e:
        if not fallback_cwd:
            fail(126, f"cannot enter working directory {op.cwd!r}: {e.strerror}")
        os.chdir("/")
    try:
        os.execvpe(op.argv[0], list(op.argv), dict(op.env))
    except ValueError as e:
        fail(126, f"cannot run {op.argv[0]!r}: {e}")
    except OSError as e:
        code = 127 if e.errno in (_errno.ENOENT, _errno.ENOTDIR) else 126
        report(code, f"cannot run {op.argv[0]!r}: {e.strerror}")  # should looking be cut short
        fail(code, refused_exec(op, e, landlock))
    os._exit(126)  # execvpe returns only by raising


def refused_exec(op: v.ExecCommand, e: OSError, landlock: LandlockRules | None) -> str:
    """The reason a failed exec gives (nucleus.config.exec_refusal), from looking, in the
    process that tried, at the file it named (or found on PATH) and at its #! interpreter, at
    the writable places, and at the Landlock rules applied, their paths resolved."""
    command, places = op.argv[0], op.places
    plain = f"cannot run {command!r}: {e.strerror}"
    failure = (exec_refusal.NOT_FOUND if e.errno in (_errno.ENOENT, _errno.ENOTDIR) else
               exec_refusal.DENIED if e.errno in (_errno.EACCES, _errno.EPERM) else "")
    if not failure:
        return plain
    try:
        named = _executed(command, dict(op.env), e)
        looked = [_look(named)] if named else []
        if looked and looked[0].interpreter:
            looked.append(_look(looked[0].interpreter))
        rules = None if landlock is None else tuple(
            (os.path.realpath(path), access) for path, access in landlock)
        candidates = places + tuple(p for p, access in rules or () if "execute" in access
                                    and p not in places and place_of(p, places))
        writable = tuple((p, _noexec(p)) for p in candidates if os.path.isdir(p))
        return exec_refusal.reason(command, failure, e.strerror or str(e), tuple(looked),
                                   exec_refusal.Caller(os.geteuid(), os.getegid(), tuple(os.getgroups())),
                                   rules, writable, places)
    except OSError:
        return plain


def _executed(command: str, env: dict[str, str], e: OSError) -> str:
    """The file the exec tried: the command's own path, the one the exec named in its error,
    or the first of that name on PATH that exists ("" for none)."""
    if "/" in command:
        return command
    if e.errno not in (_errno.ENOENT, _errno.ENOTDIR) and e.filename:
        return str(e.filename)
    for where in env.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(where or ".", command)
        if os.path.lexists(path):
            return path
    return ""


def _look(path: str) -> exec_refusal.Looked:
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return exec_refusal.Looked(real)
    kind = "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
    holder = fs.holder_of(real, fs.mount_table())
    head = b""
    if kind == "file":
        with contextlib.suppress(OSError):
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                head = os.read(fd, exec_refusal.INTERPRETER_LINE)
            finally:
                os.close(fd)
    return exec_refusal.Looked(real, kind, stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid),
                               holder[0] if holder else "/", _noexec(real),
                               exec_refusal.interpreter_of(head))


def _noexec(path: str) -> bool:
    return bool(libc.statvfs(path).f_flag & os.ST_NOEXEC)
