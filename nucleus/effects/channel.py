"""The sync pipe between the supervisor and the container's setup process.

Messages are length-prefixed JSON: the supervisor sends a batch of intents, the setup process
answers with the events they produced. JSON (never pickle) because the far end may one day be
less trusted than the near one.
"""

from __future__ import annotations

import json
import os
import struct

from nucleus import vocab as v

_HEADER = struct.Struct("<I")
MAX_MESSAGE = 1 << 24


class ChannelClosedError(Exception):
    pass


def _read_exact(fd: int, n: int) -> bytes:
    chunks: list[bytes] = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            raise ChannelClosedError("the other end closed the sync pipe")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def send(fd: int, payload: object) -> None:
    data = json.dumps(payload, separators=(",", ":")).encode()
    buf = _HEADER.pack(len(data)) + data
    while buf:
        n = os.write(fd, buf)
        buf = buf[n:]


def receive(fd: int) -> object:
    (length,) = _HEADER.unpack(_read_exact(fd, _HEADER.size))
    if length > MAX_MESSAGE:
        raise ChannelClosedError(f"message of {length} bytes refused")
    return json.loads(_read_exact(fd, length))


def send_intents(fd: int, intents: tuple[v.Intent, ...]) -> None:
    send(fd, [v.to_wire(i) for i in intents])


def receive_events(fd: int) -> list[v.Event]:
    payload = receive(fd)
    assert isinstance(payload, list)
    return [v.from_wire(item) for item in payload]  # type: ignore[misc]
