"""`nucleus run --server SOCK ...`: the run asked of a `nucleus serve` (nucleus.effects.serve) instead
of started cold. The same arguments go over the socket (without --server), with this process's
environment, working directory and umask, and its stdin, stdout and stderr as descriptors;
SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGWINCH are forwarded to the sandbox's supervisor as a
terminal would deliver them to a cold run; the exit status is the supervisor's. When no server
answers there, the run fails, naming the socket: it never falls back to a cold start.

`call` is the same exchange for a program that stays resident and asks for sandbox after
sandbox (no signal forwarding: the caller signals through the connection itself). This module
is the whole of the client's work: it imports only the built-in socket object, signal and what
serve_wire needs (json, struct, array), not the run path nor typing."""

from __future__ import annotations

import _socket as socket
import errno
import os
import signal

from nucleus.effects import serve_wire as wire
from nucleus.errors import NucleusError, RuntimeFailure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGWINCH)


def run(path: str, argv: list[str]) -> int:
    """`nucleus run --server PATH ARGV`: this process's stdio, environment, directory and umask,
    its signals forwarded while the sandbox runs; the sandbox's exit status."""
    return call(path, argv, forward=FORWARDED)


def call(path: str, argv: list[str], fds: tuple[int, int, int] = (0, 1, 2),
         env: Mapping[str, str] | None = None, cwd: str | None = None,
         forward: tuple[int, ...] = ()) -> int:
    """One sandbox of the server at `path`: `argv` as `nucleus run` takes them, with `fds` as
    its stdin, stdout and stderr, `env` (this process's environment by default) and `cwd` (this
    process's directory); while it runs, the signals in `forward` are sent on to it (and
    ignored once it has exited). Its exit status, once the server has removed it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise refused_connection(path, e) from None
    try:
        return _exchange(path, sock, argv, fds, dict(os.environ if env is None else env),
                         cwd or os.getcwd(), forward)
    finally:
        sock.close()


def _exchange(path: str, sock: socket.socket, argv: list[str], fds: tuple[int, int, int],
              env: dict[str, str], cwd: str, forward: tuple[int, ...]) -> int:
    reader = wire.Reader(sock)
    umask = os.umask(0o022)
    os.umask(umask)
    wire.send(sock, {"op": "create", "argv": argv, "env": env, "cwd": cwd, "umask": umask})
    s = _expect(path, reader, "created")["sandbox"]
    wire.send(sock, {"op": "start", "sandbox": s}, fds)
    _expect(path, reader, "started", s)
    wire.send(sock, {"op": "wait", "sandbox": s})

    def on_signal(number: int, _frame: object) -> None:
        wire.send(sock, {"op": "signal", "sandbox": s, "signal": number})

    for number in forward:
        signal.signal(number, on_signal)
    status = int(_expect(path, reader, "exited", s)["status"])
    for number in forward:
        signal.signal(number, signal.SIG_IGN)
    try:  # a server shutting down has dropped it already
        wire.send(sock, {"op": "remove", "sandbox": s})
        reader.next()
    except OSError:
        pass
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
