"""The container's setup process: carries out the intents the supervisor sends over the sync pipe,
inside the new namespaces, and answers with what they produced.

Process roles: the supervisor forks the setup process; it unshares the namespaces and forks
PID 1 of the new PID namespace (ForkInit), reports that pid and exits; PID 1 then serves the rest
of the setup. On ExecWorkload, PID 1 forks the workload, closes everything it holds and stays as
the container's minimal init: it forwards signals to the workload, reaps orphans and exits with
the workload's status (128+N when the workload died of signal N).
"""

from __future__ import annotations

import errno as _errno
import fcntl
import os
import signal
import socket
import struct
import sys
from dataclasses import dataclass, field

# Everything the setup process runs must be imported before the fork: after pivot_root the
# runtime's own files are no longer reachable.
from nucleus import vocab as v
from nucleus.config.capabilities import capability_number
from nucleus.effects import caps, channel, fs, landlock, rlimits
from nucleus.effects import libc as k

# Signals the supervisor forwards and PID 1 passes on to the workload.
FORWARDED = (
    signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
    signal.SIGWINCH,
)
WAITED = set(FORWARDED) | {signal.SIGCHLD}

NAMESPACE_FLAGS = {
    "user": k.CLONE_NEWUSER, "pid": k.CLONE_NEWPID, "mount": k.CLONE_NEWNS, "net": k.CLONE_NEWNET,
    "uts": k.CLONE_NEWUTS, "ipc": k.CLONE_NEWIPC, "cgroup": k.CLONE_NEWCGROUP, "time": k.CLONE_NEWTIME,
}
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


@dataclass
class Workload:
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: str
    rlimits: tuple[int, int, int] | None = None  # NOFILE, NPROC, MEMLOCK


@dataclass
class Inside:
    """What the setup process holds besides the intents: the pipe ends, the compiled seccomp
    programs (by sha256, compiled before the fork), and the workload to exec."""

    req_fd: int
    resp_fd: int
    workload: Workload
    programs: dict[str, bytes] = field(default_factory=dict)
    is_init: bool = False
    trace_fd: int | None = None  # trace mode: the socket to hand the seccomp listener over


# --- isolation effects ---------------------------------------------------------------------------


def unshare(op: v.Unshare) -> None:
    flags = 0
    for name in op.namespaces:
        flags |= NAMESPACE_FLAGS[name]
    k.unshare(flags)


def set_hostname(op: v.SetHostname) -> None:
    k.sethostname(op.hostname)


def loopback_up(op: v.LoopbackUp) -> None:  # noqa: ARG001
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def enter_user_namespace(op: v.EnterUserNamespace) -> None:  # noqa: ARG001
    # Host root's supplementary groups would follow the process into the namespace (shown as
    # nogroup but still granting access): clear them while still allowed to.
    k.setgroups([])
    k.unshare(k.CLONE_NEWUSER)


def become_root(op: v.BecomeRoot) -> None:  # noqa: ARG001
    k.setresgid(0, 0, 0)
    k.setresuid(0, 0, 0)
    # A credential change clears the parent-death signal and resets dumpability: restore both.
    k.prctl(k.PR_SET_PDEATHSIG, signal.SIGKILL)
    caps.set_dumpable(False)


# --- security effects ----------------------------------------------------------------------------


def drop_capabilities(op: v.DropCapabilities) -> None:
    caps.drop_capabilities(frozenset(capability_number(name) for name in op.keep))
    caps.set_no_new_privs()


def make_loader(inside: Inside):
    def load_seccomp(op: v.LoadSeccomp) -> None:
        if inside.trace_fd is not None:
            # Trace mode: every syscall from here on (this init and the workload) is reported
            # to the supervisor's tracer and allowed. Imported by the supervisor before the fork.
            from nucleus.effects import seccomp_notify

            seccomp_notify.start_tracing(inside.trace_fd)
            os.close(inside.trace_fd)
            inside.trace_fd = None
            return
        program = inside.programs.get(op.program_sha256)
        if program is None:
            raise OSError(_errno.ENOENT, f"no compiled seccomp program {op.program_sha256[:12]}")
        caps.set_no_new_privs()
        k.seccomp_set_mode_filter(program, k.SECCOMP_FILTER_FLAG_LOG if op.log_denied else 0)

    return load_seccomp


def apply_landlock(op: v.ApplyLandlock) -> None:
    abi = landlock.abi_version()
    if abi < max(op.min_abi, 1):
        raise OSError(_errno.EOPNOTSUPP, f"Landlock ABI {abi} is below the required {max(op.min_abi, 1)}")
    landlock.restrict([(path, frozenset(access)) for path, access in op.rules])


# --- the serving loop -----------------------------------------------------------------------------


def _effects(inside: Inside) -> dict[str, object]:
    table: dict[str, object] = dict(fs.EFFECTS)
    table.update({
        "Unshare": unshare,
        "SetHostname": set_hostname,
        "LoopbackUp": loopback_up,
        "EnterUserNamespace": enter_user_namespace,
        "BecomeRoot": become_root,
        "DropCapabilities": drop_capabilities,
        "LoadSeccomp": make_loader(inside),
        "ApplyLandlock": apply_landlock,
    })
    return table


def serve(inside: Inside) -> None:
    """Serve intents until the workload is exec'd or the supervisor goes away. Never returns."""
    try:
        # Stays dumpable until BecomeRoot: an unprivileged supervisor must be able to write this
        # process's id maps (a non-dumpable process's /proc files belong to root). No workload
        # code exists before then.
        effects = _effects(inside)
        armed = False
        while True:
            try:
                batch = channel.receive(inside.req_fd)
            except (channel.ChannelClosed, OSError):
                os._exit(125)
            if not armed:
                # Die with the supervisor. PID 1 arms this only now: its parent at fork time was
                # the intermediate process, which has exited and been reaped before this message.
                k.prctl(k.PR_SET_PDEATHSIG, signal.SIGKILL)
                armed = True
            events: list[dict] = []
            became_init = False
            for item in batch:  # type: ignore[union-attr]
                intent = v.from_wire(item)
                if isinstance(intent, v.ForkInit):
                    became_init = _fork_init(inside, intent, events)
                    armed = not became_init
                    break
                if isinstance(intent, v.ExecWorkload):
                    _exec_workload(inside, events)  # never returns
                try:
                    effects[intent.name](intent)  # type: ignore[operator]
                except OSError as e:
                    events.append(v.to_wire(v.failed(intent, e.errno or 0, _describe(e))))
                    break
                except Exception as e:  # a bug or bad data: report it, never hang the supervisor
                    events.append(v.to_wire(v.failed(intent, 0, f"{type(e).__name__}: {e}")))
                    break
                done = v.done(intent)
                if done is not None:
                    events.append(v.to_wire(done))
            if not became_init:
                channel.send(inside.resp_fd, events)
    except BaseException as e:  # noqa: BLE001 - the setup process must never unwind into the CLI
        try:
            os.write(2, f"nucleus: setup process: {type(e).__name__}: {e}\n".encode())
        finally:
            os._exit(125)


def _describe(e: OSError) -> str:
    if isinstance(e, k.SyscallError):
        return str(e)
    name = _errno.errorcode.get(e.errno or 0, "?")
    where = f" {e.filename!r}" if e.filename else ""
    return f"{e.strerror or e}{where} ({name})"


def _fork_init(inside: Inside, intent: v.ForkInit, events: list[dict]) -> bool:
    """Fork PID 1. Returns True in PID 1 (which answers nothing for this batch); the
    intermediate process answers with PID 1's host pid and exits."""
    try:
        pid = os.fork()
    except OSError as e:
        events.append(v.to_wire(v.failed(intent, e.errno or 0, _describe(e))))
        return False
    if pid == 0:
        # PID 1 of the new namespace: serve the rest of the setup (its next message comes after
        # the supervisor has read the answer below and reaped the intermediate process).
        inside.is_init = True
        return True
    events.append(v.to_wire(v.IsoDone("fork_init", detail=str(pid))))
    channel.send(inside.resp_fd, events)
    os._exit(0)


def _exec_workload(inside: Inside, events: list[dict]) -> None:
    """Fork the workload, answer, drop every descriptor, and become the container's init."""
    w = inside.workload
    pid = os.fork()
    if pid == 0:
        _exec_child(w)
    channel.send(inside.resp_fd, events)
    k.close_range(3)
    _mini_init(pid)


def _exec_child(w: Workload) -> None:
    try:
        k.close_range(3)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, *FORWARDED):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        if w.rlimits is not None:
            rlimits.apply(*w.rlimits)  # capped at the hard limits this process may not raise
        os.chdir(w.cwd)
    except OSError as e:
        os.write(2, f"nucleus: cannot enter working directory {w.cwd!r}: {e.strerror}\n".encode())
        os._exit(126)
    try:
        os.execvpe(w.argv[0], list(w.argv), w.env)
    except OSError as e:
        code = 127 if e.errno in (_errno.ENOENT, _errno.ENOTDIR) else 126
        os.write(2, f"nucleus: cannot run {w.argv[0]!r}: {e.strerror}\n".encode())
        os._exit(code)


def exit_status(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


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
                try:
                    os.kill(target, info.si_signo)
                except ProcessLookupError:
                    pass
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


def _mini_init(workload: int) -> None:
    sys.stdout.flush()
    os._exit(wait_forwarding(workload, gone=0))
