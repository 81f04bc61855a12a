"""`nucleus run --server SOCK ...`: the run asked of a `nucleus serve` (nucleus.effects.serve) instead
of started cold. The same arguments go over the socket (without --server), with this process's
environment, working directory and umask, and its stdin, stdout and stderr as descriptors;
SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGWINCH are forwarded to the sandbox's supervisor as a
terminal would deliver them to a cold run; the exit status is the supervisor's. When no server
answers there, the run fails, naming the socket: it never falls back to a cold start."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
from typing import Any

from nucleus.effects import serve_wire as wire
from nucleus.errors import NucleusError, RuntimeFailure

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGWINCH)


def run(path: str, argv: list[str]) -> int:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise refused_connection(path, e) from None
    reader = wire.Reader(sock)
    umask = os.umask(0o022)
    os.umask(umask)
    wire.send(sock, {"op": "create", "argv": argv, "env": dict(os.environ),
                     "cwd": os.getcwd(), "umask": umask})
    s = _expect(path, reader, "created")["sandbox"]
    wire.send(sock, {"op": "start", "sandbox": s}, (0, 1, 2))
    _expect(path, reader, "started", s)
    wire.send(sock, {"op": "wait", "sandbox": s})

    def forward(number: int, _frame: object) -> None:
        wire.send(sock, {"op": "signal", "sandbox": s, "signal": number})

    for number in FORWARDED:
        signal.signal(number, forward)
    status = int(_expect(path, reader, "exited", s)["status"])
    for number in FORWARDED:
        signal.signal(number, signal.SIG_IGN)
    with contextlib.suppress(OSError):  # a server shutting down has dropped it already
        wire.send(sock, {"op": "remove", "sandbox": s})
        reader.next()
    sock.close()
    return status


def _expect(path: str, reader: wire.Reader, op: str, sandbox: str | None = None) -> dict[str, Any]:
    message = reader.next()
    if message is None:
        gone = "" if sandbox is None else (f"; its sandbox {sandbox} goes on as an ordinary "
                                           "supervisor, with its record")
        raise RuntimeFailure(f"--server {path!r}: the server closed the connection{gone}",
                             hint="nucleus ps lists the containers; nucleus rm --force removes one")
    if message.get("op") == "refused":
        raise RuntimeFailure(f"--server {path!r}: refused: {message.get('error')}")
    if message.get("op") != op:
        raise RuntimeFailure(f"--server {path!r}: the server answered {message.get('op')!r} to a "
                             f"request that expects {op!r}")
    return message


def refused_connection(path: str, e: OSError) -> NucleusError:
    """The caller's error when nothing serves at `path`."""
    why = {errno.ENOENT: "no server listens there (the socket does not exist)",
           errno.ECONNREFUSED: "no server listens there (its socket is stale)",
           errno.EACCES: "permission denied (the server serves its own uid, and a root server the "
                         "members of its --group)"}.get(e.errno or 0, e.strerror or str(e))
    return RuntimeFailure(f"--server {path!r}: {why}", hint="start one with nucleus serve, or run without --server")
