"""The serve protocol's framing (README: The warm path): each message is one JSON object,
UTF-8, preceded by its length as four bytes, big-endian; file descriptors travel as SCM_RIGHTS
ancillary data of the message they belong to (a start's stdin, stdout and stderr). The peer's
identity is the kernel's (SO_PEERCRED, SO_PEERGROUPS), never anything a message says.

The client imports this module on every `nucleus run --server`: it needs no more than the
built-in socket object (`_socket`; the `socket` module's wrapper brings selectors and more),
json, struct and array."""

from __future__ import annotations

import _socket as socket
import array
import json
import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

HEADER = struct.Struct(">I")
MAX_MESSAGE = 1 << 20  # bytes: an argv and an environment
MAX_FDS = 3
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux 4.13


class WireError(Exception):
    """The peer broke the framing (a message too long, not a JSON object)."""


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return HEADER.pack(len(body)) + body


def send(sock: socket.socket, message: dict[str, Any], fds: tuple[int, ...] = ()) -> None:
    """One message, with `fds` attached to its first byte; the whole of it (blocking)."""
    data = encode(message)
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sent = sock.sendmsg([data], rights)
    if sent < len(data):
        sock.sendall(data[sent:])


class Reader:
    """Messages and descriptors as they arrive on a stream socket (blocking or not)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.fds: list[int] = []
        self.closed = False

    def fill(self) -> None:
        """Read what is there; `closed` once the peer has shut its end."""
        space = socket.CMSG_SPACE(MAX_FDS * 4)
        try:
            data, ancillary, _flags, _ = self.sock.recvmsg(65536, space, socket.MSG_CMSG_CLOEXEC)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionResetError:
            data, ancillary = b"", []
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
                self.fds.extend(fds)
        if not data:
            self.closed = True
        self.buffer += data

    def take(self) -> dict[str, Any] | None:
        """The next whole message, or None until more arrives."""
        if len(self.buffer) < HEADER.size:
            return None
        (size,) = HEADER.unpack_from(self.buffer)
        if size > MAX_MESSAGE:
            raise WireError(f"a message of {size} bytes (at most {MAX_MESSAGE})")
        if len(self.buffer) < HEADER.size + size:
            return None
        body, self.buffer = self.buffer[HEADER.size:HEADER.size + size], self.buffer[HEADER.size + size:]
        try:
            message = json.loads(body)
        except ValueError as e:
            raise WireError(f"a message that is not JSON: {e}") from None
        if not isinstance(message, dict):
            raise WireError("a message that is not a JSON object")
        return message

    def next(self) -> dict[str, Any] | None:
        """Block until the next message; None when the peer closed the connection first."""
        while (message := self.take()) is None:
            if self.closed:
                return None
            self.fill()
        return message

    def close_fds(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def peer(sock: socket.socket) -> tuple[int, int, int, tuple[int, ...]]:
    """(pid, uid, gid, supplementary groups) of the process that connected, as the kernel saw
    it when it connected."""
    pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * 1024)
    except OSError:
        raw = b""
    groups = array.array("I")
    groups.frombytes(raw[:len(raw) - len(raw) % 4])
    return pid, uid, gid, tuple(groups)
