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
import stat
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nucleus import linux

# seccomp_handoff: the container's PID 1 installs the notify form and hands the listener over
# after pivot_root, where nothing more can be imported: imported here, before the fork.
from nucleus.effects import libc, seccomp_handoff  # noqa: F401

if TYPE_CHECKING:
    from nucleus.config.violations import Setup


def open_audit() -> socket.socket | None:
    """The audit reader, when the container's Landlock denials can be logged (Landlock ABI 7:
    the only records the monitor writes from), the host logs (audit enabled) and this process
    may read the records; None otherwise."""
    from nucleus.effects import audit, landlock

    try:
        if landlock.abi_version() < LANDLOCK_LOGS or not audit.status().enabled:
            return None
        reader = audit.open_reader()
    except OSError:
        return None
    # The host's records all come here (a multicast group has no filter of its own): those of
    # a type the monitor reads pass (`audit_filter`), the rest never wake it or its keeper.
    # Room for a burst of them while a kept container's monitor is still to be started, past the
    # host's rmem_max, as root may.
    with contextlib.suppress(OSError):
        attach_filter(reader, audit_filter())
        reader.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECV_BUFFER)
    return reader


RECV_BUFFER = 4 << 20  # bytes the audit reader may hold unread
SO_RCVBUFFORCE = 33  # <asm-generic/socket.h>; not in Python's socket module
SO_ATTACH_FILTER = 26  # <asm-generic/socket.h>
LANDLOCK_LOGS = 7  # the Landlock ABI whose denials are audited


def audit_filter() -> bytes:
    """A socket filter (classic BPF) passing the audit messages of the types the monitor reads
    (refusals.Monitor.audit) and dropping the rest: the message's type is the u16 at offset 4 of
    its nlmsghdr, in the host's byte order, which a filter's load reads as big-endian."""
    from nucleus.effects import audit

    kinds = (audit.AUDIT_SYSCALL, audit.AUDIT_EOE, audit.AUDIT_LANDLOCK_ACCESS, audit.AUDIT_LANDLOCK_DOMAIN)
    program = [struct.pack("=HBBI", BPF_LD_H_ABS, 0, 0, 4)]
    for i, kind in enumerate(kinds):  # to the last instruction, which keeps the message
        program.append(struct.pack("=HBBI", BPF_JEQ_K, len(kinds) - i, 0,
                                   int.from_bytes(kind.to_bytes(2, sys.byteorder), "big")))
    program += [struct.pack("=HBBI", BPF_RET_K, 0, 0, 0), struct.pack("=HBBI", BPF_RET_K, 0, 0, 0xFFFFFFFF)]
    return b"".join(program)


BPF_LD_H_ABS, BPF_JEQ_K, BPF_RET_K = 0x28, 0x15, 0x06  # <linux/bpf_common.h>


def attach_filter(sock: socket.socket, program: bytes) -> None:
    """SO_ATTACH_FILTER: the kernel drops what `program` does not pass before it is queued."""
    _count, _program, fprog = libc._sock_fprog(program)  # the struct sock_fprog seccomp's programs use
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog.raw)


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


TAKE_BACK_WAIT = 5.0  # seconds a monitor is given to finish what is under way and say it is ready
READY = b"!"  # the monitor's "ready to hand back", and the supervisor's "taken"


def take_back(ctl: socket.socket) -> Held | None:
    """Ask the monitor for what it holds, in two steps: it says when it is ready (no audit event
    read in part, no kill under way: a kill is seen through first), and hands its descriptors over only
    once this process confirms that it takes them (refusals.hand_back, waiting for that as long
    as this process has not shut `ctl` down). None when it is not ready within TAKE_BACK_WAIT:
    `ctl` is shut down, and the monitor goes on serving as before it was asked. Raises
    ConnectionError when the monitor, confirmed, handed back nothing usable (within
    TAKE_BACK_WAIT): `ctl` is shut down too, and a monitor that handed back has ended, with what
    it held."""
    from nucleus.effects import serve_wire

    try:
        ctl.settimeout(TAKE_BACK_WAIT)
        ctl.sendall(b"?")
        ready = ctl.recv(1) == READY
    except OSError:
        ready = False
    if not ready:
        with contextlib.suppress(OSError):
            ctl.shutdown(socket.SHUT_RDWR)
        return None
    reader = serve_wire.Reader(ctl)
    try:
        ctl.sendall(READY)
        message = reader.next()
        keys = ("listener", "audit", "copy")
        if message is None or len(reader.fds) != sum(bool(message.get(key)) for key in keys):
            raise serve_wire.WireError(f"{len(reader.fds)} descriptors for {str(message)[:80]}")
    except (OSError, serve_wire.WireError) as e:
        reader.close_fds()
        with contextlib.suppress(OSError):
            ctl.shutdown(socket.SHUT_RDWR)
        raise ConnectionError(f"the violation monitor handed back nothing usable ({e})") from e
    held = iter(reader.fds)
    given = {key: next(held) if message.pop(key) else None for key in keys}
    return Held(given["listener"], given["audit"], given["copy"], message)


def identities(*fds: int | None) -> list[list[int] | None]:
    """What each descriptor is (its device and inode), for `kept`."""
    return [None if fd is None else [(st := os.fstat(fd)).st_dev, st.st_ino] for fd in fds]


def kept(data: dict[str, Any]) -> dict[str, int | None]:
    """The listener, the audit reader and the user's copy a monitor file names (as
    Executor.take_back_monitor wrote it), each still open as that file: the keeper closes the
    ones a failed monitor watched, and their numbers may name other files since. An anonymous
    inode's device and inode do not tell it from another (an eventfd and an epoll share them):
    the listener must also be named as one, the audit reader be a socket."""
    out: dict[str, int | None] = {}
    for key, identity in zip(("listener", "audit", "copy"), data["ids"], strict=True):
        fd = data[key]
        try:
            same = fd is not None and identities(fd) == [identity] and _is(key, fd)
        except OSError:
            same = False
        out[key] = fd if same else None
    return out


LISTENER_NAME = "anon_inode:seccomp notify"  # what /proc/self/fd names a seccomp listener


def _is(key: str, fd: int) -> bool:
    """Whether `fd` is of the kind `key` names (the user's copy: any file)."""
    if key == "listener":
        return os.readlink(f"/proc/self/fd/{fd}") == LISTENER_NAME
    return key != "audit" or stat.S_ISSOCK(os.fstat(fd).st_mode)


IDLE_END = 2.0  # seconds a monitor the keeper started waits for more before it ends
# Its exit status when it ended so having found nothing of its container's (the host's audit
# records woke its keeper): the keeper then backs off watching the audit reader (keeper.c).
NOTHING_OURS = 3


def main(argv: list[str], deadline: float | None = None) -> None:
    """A monitor the keeper (nucleus.app.keeper) started, `FILE`: it takes up from the memory
    file where the last one left off (`Executor.take_back_monitor` wrote the first), serves
    until IDLE_END seconds pass without the container doing anything (or the container is gone,
    or `deadline` passes), and leaves there what the next one takes up; exits NOTHING_OURS when
    its container did nothing meanwhile."""
    import json

    from nucleus.effects import process

    def serve() -> int:
        fd = int(argv[0])
        data = json.loads(process.read_memory_file(fd))
        saved, ours = serve_kept(data, IDLE_END, frozenset({fd}), deadline)
        process.rewrite_memory_file(fd, json.dumps({**data, "saved": saved}).encode())
        return 0 if ours else NOTHING_OURS

    _as_monitor(serve)


def serve_again(data: dict[str, Any]) -> None:
    """In a child forked by the supervisor: serve what `data` names (as a monitor file holds it)
    until the container is gone, when the keeper could not take it (Executor.give_back_monitor)."""
    def serve() -> int:
        serve_kept(data, None, frozenset(), None)
        return 0

    _as_monitor(serve)


def _as_monitor(serve: Callable[[], int]) -> None:
    """Run `serve` as a monitor's life, dying with its parent; never returns: exits with what
    `serve` returns (1 when it fails)."""
    code = 1
    try:
        libc.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)  # dies with the keeper, as with the supervisor
        code = serve()
    except BaseException as e:  # noqa: BLE001 - said on stderr; the keeper closes what it watched
        with contextlib.suppress(OSError):
            os.write(2, f"nucleus: violation monitor: {type(e).__name__}: {e}\n".encode())
    finally:
        os._exit(code)


def serve_kept(data: dict[str, Any], idle: float | None, keep: frozenset[int],
               deadline: float | None) -> tuple[dict[str, object], bool]:
    """Serve what a monitor file names (refusals.run), keeping `keep` open; what the next
    monitor goes on from, and whether the container did anything meanwhile."""
    from nucleus.config import violations
    from nucleus.effects import refusals
    from nucleus.plain import from_plain

    context = from_plain(violations.Context, data["context"])
    fds = kept(data)
    audit = None if fds["audit"] is None else socket.socket(fileno=fds["audit"])
    saved = data["saved"]
    programs = {saved["sha"]: bytes.fromhex(data["program"])} if saved.get("sha") else {}
    _, served = refusals.run(violations.Setup(context, fds["copy"]), data["stream"], programs, None, audit,
                             saved=(saved, fds["listener"]), idle=idle, kept=keep, deadline=deadline)
    return served.saved(), served.activity > 0
