"""systemd's notification protocol (sd_notify(3)): one datagram of newline-separated
KEY=VALUE lines to the AF_UNIX socket named by NOTIFY_SOCKET, a path or, with a leading '@',
a name in the abstract namespace.

Under a Type=notify unit the supervisor is the unit's main process (systemd started it), so
READY=1 comes from it and names no MAINPID. With --readiness-sd-notify the workload speaks the
protocol to a `Relay`: a datagram socket of the supervisor's in the state directory, bound
into the container, whose messages the supervisor reads with their sender's credentials
(SO_PASSCRED) and passes on itself, as far as nucleus.config.notify lets them through. The
service manager's socket is never reachable from inside, and the unit needs no more than
NotifyAccess=main.
"""

from __future__ import annotations

import array
import contextlib
import errno
import math
import os
import select
import socket
import struct

from nucleus.config.notify import MESSAGE_MAX
from nucleus.effects import libc, process

RELAY_MODE = 0o622  # anyone who reaches it may send: only its directory's owner and the container do
_CREDENTIALS = struct.Struct("=iII")  # struct ucred: pid, uid, gid


def address(value: str) -> str | bytes:
    """NOTIFY_SOCKET as the address to send to: an abstract name as bytes with a NUL first."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


def valid(value: str) -> bool:
    return (value.startswith("@") and len(value) > 1) or value.startswith("/")


def send(notify_socket: str, fields: dict[str, str]) -> None:
    """Send `fields` as one datagram (OSError when the socket is gone or refuses it)."""
    if not valid(notify_socket):
        raise OSError(errno.EINVAL, f"NOTIFY_SOCKET {notify_socket!r} is neither a path nor '@name'")
    message = "".join(f"{key}={value}\n" for key, value in fields.items()).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto(message, address(notify_socket))


class Relay:
    """The socket the workload sends its notifications to, bound at `path` (mode RELAY_MODE)
    and opened O_PATH (`opened`) to be bound into the container; it wakes `wait` together with
    the supervisor's signals (process.WAITED, which the caller blocks)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        self.opened = self.signals = -1
        self.bound = False
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            self.sock.bind(path)
            self.bound = True
            os.chmod(path, RELAY_MODE)
            self.opened = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
            self.signals = libc.signalfd(process.WAITED)
        except BaseException:
            self.close()
            raise

    def wait(self, timeout: float) -> list[tuple[bytes, int]]:
        """Wait up to `timeout` seconds for a signal or a datagram; every datagram waiting, with
        its sender's pid (0: not known). A datagram longer than MESSAGE_MAX comes as b""."""
        poller = select.poll()
        poller.register(self.signals, select.POLLIN)
        poller.register(self.sock.fileno(), select.POLLIN)
        if not any(fd == self.sock.fileno() for fd, _ in poller.poll(math.ceil(timeout * 1000))):
            return []
        out: list[tuple[bytes, int]] = []
        space = socket.CMSG_SPACE(_CREDENTIALS.size)
        while True:
            try:
                data, ancillary, flags, _ = self.sock.recvmsg(MESSAGE_MAX, space)
            except (BlockingIOError, InterruptedError):
                return out
            pid = 0
            for level, kind, value in ancillary:
                if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS) and len(value) >= _CREDENTIALS.size:
                    pid = _CREDENTIALS.unpack_from(value)[0]
                elif (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS):
                    for fd in array.array("i", value[:len(value) - len(value) % 4]):
                        os.close(fd)  # descriptors are never kept (FDSTORE is not passed on)
            out.append((b"" if flags & socket.MSG_TRUNC else data, pid))

    def close(self, remove: bool = True) -> None:
        """Close it, and with `remove` remove its file (a detached run's foreground process
        leaves that to the supervisor)."""
        self.sock.close()
        for fd in (self.opened, self.signals):
            if fd >= 0:
                os.close(fd)
        self.opened = self.signals = -1
        if remove and self.bound:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def same_pid_namespace(pid: int, init_pid: int) -> bool | None:
    """Whether process `pid` is in the PID namespace of `init_pid`; None when it cannot be told
    (the process has ended, or sent no credentials)."""
    if pid <= 0:
        return None
    try:
        theirs = os.stat(f"/proc/{pid}/ns/pid")
        ours = os.stat(f"/proc/{init_pid}/ns/pid")
    except OSError:
        return None
    return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)
