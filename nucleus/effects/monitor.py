"""The violation monitor: a process the supervisor forks next to the container, which answers the
calls the container's seccomp filter refuses and turns every refusal, seccomp's and Landlock's,
into a line of the violation stream (``nucleus.config.violations``).

Seccomp: user notification, not audit. Audit was tried (kernel 6.18): it is off unless a host
turns it on, so nothing at all is logged there without changing a host setting; with it on,
SECCOMP_FILTER_FLAG_LOG gives AUDIT_SECCOMP records (1326) that hold the syscall's number but not
its arguments (a socket's family, clone's flags: the rule that refused it cannot be named) nor
the errno returned, and arrive after the fact. So the container installs the notify form of its enforced
program (``seccomp_bpf.notify_filter``) and hands the listener here
(``seccomp_handoff.start_notifying``, the program's sha256 as the message). Allowed calls never
leave the kernel: the program returns ALLOW from the same instructions as before, at no extra
cost. A refused call waits here until it is answered: the monitor runs the original program on
the call (``seccomp_bpf.evaluate``) and does what the policy says, an errno
(SECCOMP_IOCTL_NOTIF_SEND with the error), an allowed and logged call (``log``:
SECCOMP_USER_NOTIF_FLAG_CONTINUE), or a kill. A kill is the process killed with SIGSYS, as the
kernel's SECCOMP_RET_KILL_PROCESS does, unless the task blocks, ignores or catches SIGSYS (then
SIGKILL): the call never runs, as it is never answered. The record is written before the
answer, so a supervisor that sees its workload die (or a workload that exits on the error) finds
the reason in the stream. Should the monitor die, the kernel fails every call the filter refuses
with ENOSYS: still refused, no longer recorded (and a kill is then an error).

Measured (2 cores, other work running): a refused call costs about 57 µs round trip, against
0.4 µs for one the kernel answers itself (clone3's ENOSYS) and 0.5 µs for an allowed getppid;
``nucleus run -- /bin/true`` takes 163 ms (median of 60) with the monitor and 158 ms without,
5 ms of CPU more: its fork (the supervisor's pages copied on write), the audit query and its
own work. What runs only in the monitor is imported after the fork (``refusals``).

Landlock: audit records (``nucleus.effects.audit``), when the host has audit enabled and the
monitor may read them (CAP_AUDIT_READ). The container's init restricts itself with
LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON (ABI 7), so the workload it execs is logged. A record is
the container's when its Landlock domain was made by the container's init (whose pid the handoff
carries in its credentials) or by a process in the container's PID namespace.

The monitor ends once every process of the container is gone (the listener hangs up), after the
audit records still on their way have arrived (a short quiet spell), or when the handoff socket
closes without a listener (the container never got that far). It dies with the supervisor.
Once the workload has run a moment, the supervisor asks for the listener, the audit reader and
the user's copy back (`take_back`) to hand them to its keeper, which starts a monitor of its own
(nucleus.app.keeper) whenever one of them is readable.

A command joined into the container (`nucleus exec`) loads the notify form of the same program
and hands its listener to a monitor of its own, forked by the exec command the same way and
writing to the same stream, its records marked ``joined``. A Landlock domain the command's
process makes is that monitor's (by its pid, which the handoff carries), not the container's
monitor's, though the process is in the container's PID namespace: the two never record one
denial twice, and the command's are recorded even when it has exited by the time they are read.
The joined command's monitor ends as the command's last process does, and dies with the exec
command.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nucleus import linux

# seccomp_handoff: the container's PID 1 installs the notify form and hands the listener over
# after pivot_root, where nothing more can be imported: imported here, before the fork.
from nucleus.effects import libc, seccomp_handoff  # noqa: F401

if TYPE_CHECKING:
    from nucleus.config.violations import Setup


def open_audit() -> socket.socket | None:
    """The audit reader, when the host logs (audit enabled) and this process may read the
    records; None otherwise."""
    from nucleus.effects import audit

    try:
        if not audit.status().enabled:
            return None
        return audit.open_reader()
    except OSError:
        return None


def spawn(setup: Setup, stream: str, programs: dict[str, bytes]) -> tuple[int, int, socket.socket]:
    """Fork the monitor, writing the container's stream to ``stream`` (and the user's copy);
    return its pid, the container's end of the handoff socket (the caller passes it to the
    setup process, and closes it once that process holds it) and the socket on which the
    monitor hands the listener back (`take_back`). The audit reader is opened and subscribed
    here, before the container exists, so that no record of it is missed. The monitor keeps
    only fds 0-2, its sockets and the stream's files."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # the handoff carries the init's pid
    ctl, ctl_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    audit_sock = open_audit()
    parent = os.getpid()
    try:
        pid = os.fork()
    except BaseException:
        for s in (ours, theirs, audit_sock, ctl, ctl_theirs):
            if s is not None:
                s.close()
        raise
    if pid != 0:
        ours.close()
        ctl_theirs.close()
        if audit_sock is not None:
            audit_sock.close()
        return pid, theirs.detach(), ctl
    code = 1
    try:
        libc.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)
        theirs.close()
        ctl.close()
        from nucleus.effects import refusals  # the monitor's own work: imported here only

        refusals.run(setup, stream, programs, ours, audit_sock, ctl_theirs)
        code = 0
    except BaseException as e:  # noqa: BLE001 - a forked process never unwinds into its parent
        with contextlib.suppress(OSError):
            os.write(2, f"nucleus: violation monitor: {type(e).__name__}: {e}\n".encode())
    finally:
        os._exit(code)


@dataclass
class Held:
    """What a monitor handed back to the supervisor (`take_back`): the listener (None when the
    container handed none over), the audit reader, the user's copy of the stream, and what a
    later monitor goes on from."""

    listener: int | None
    audit: int | None
    copy: int | None
    saved: dict[str, object]

    def close(self) -> None:
        for fd in (self.listener, self.audit, self.copy):
            if fd is not None:
                os.close(fd)


TAKE_BACK_WAIT = 5.0  # seconds a monitor is given to finish what is under way and hand back


def take_back(ctl: socket.socket) -> Held | None:
    """Ask the monitor for what it holds; None when it does not answer in time (it goes on)."""
    import json

    try:
        ctl.settimeout(TAKE_BACK_WAIT)
        ctl.sendall(b"!")
        data, fds, _, _ = socket.recv_fds(ctl, 65536, 3)
    except OSError:
        return None
    if not data:
        return None
    message = json.loads(data)
    keys = ("listener", "audit", "copy")
    if len(fds) != sum(bool(message.get(key)) for key in keys):
        for fd in fds:
            os.close(fd)
        return None
    held = iter(fds)
    given = {key: next(held) if message.pop(key) else None for key in keys}
    return Held(given["listener"], given["audit"], given["copy"], message)


IDLE_END = 2.0  # seconds a monitor the keeper started waits for more before it ends


def main(argv: list[str]) -> None:
    """A monitor the keeper (nucleus.app.keeper) started, `FILE`: it takes up from the memory
    file where the last one left off (`Executor.take_back_monitor` wrote the first), serves
    until IDLE_END seconds pass with nothing to do (or the container is gone), and leaves there
    what the next one takes up."""
    import json

    from nucleus.config import violations
    from nucleus.effects import process, refusals
    from nucleus.plain import from_plain

    code = 1
    try:
        libc.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)  # dies with the keeper, as with the supervisor
        fd = int(argv[0])
        data = json.loads(process.read_memory_file(fd))
        context = from_plain(violations.Context, data["context"])
        audit = None if data["audit"] is None else socket.socket(fileno=data["audit"])
        saved = data["saved"]
        programs = {saved["sha"]: bytes.fromhex(data["program"])} if saved.get("sha") else {}
        _, saved = refusals.run(violations.Setup(context, data["copy"]), data["stream"], programs, None, audit,
                                saved=(saved, data["listener"]), idle=IDLE_END, kept=frozenset({fd}))
        process.rewrite_memory_file(fd, json.dumps({**data, "saved": saved}).encode())
        code = 0
    except BaseException as e:  # noqa: BLE001 - said on stderr; the keeper closes what it watched
        with contextlib.suppress(OSError):
            os.write(2, f"nucleus: violation monitor: {type(e).__name__}: {e}\n".encode())
    finally:
        os._exit(code)
