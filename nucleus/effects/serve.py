"""`nucleus serve`'s effects: the socket, the connections, the forks, the signals and the
reaping, and the executor of the Server machine's intents (nucleus.vocab.server). The loop
reads what happens (a connection, a message, a supervisor's exit, SIGTERM, the deadline) and
hands each as an event to `feed`, which the application wires to the machine's driver
(nucleus.app.serve); it decides nothing itself. One process, no threads: a selector over the
listening socket, the connections, a pidfd per supervisor and the signal wake-up pipe. The
server forks its supervisors itself (nucleus.effects.serve_child): it holds nothing but
modules, a few sockets and pidfds, so a separate template process would copy the same pages.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nucleus.effects import serve_wire as wire
from nucleus.errors import InvalidInput, RuntimeFailure
from nucleus.vocab import server as sv

SIGNALS = range(1, signal.NSIG)
Feed = Callable[[Any], "str | None"]  # an event to the machine; why it was refused, or None


@dataclass(eq=False)
class Connection:
    sock: socket.socket
    reader: wire.Reader
    peer: tuple[int, int, int, tuple[int, ...]]
    request: dict[str, Any] | None = None
    sandbox: str | None = None
    status: int | None = None
    waiting: bool = False
    fds: list[int] = field(default_factory=list)


@dataclass(eq=False)
class Child:
    pid: int
    pidfd: int
    conn: Connection | None


def listen(path: str, group: int | None) -> tuple[socket.socket, int]:
    """Bind the server's socket (see _listen); refused, naming --socket, where it cannot be."""
    try:
        return _listen(path, group)
    except OSError as e:
        raise RuntimeFailure(f"--socket {path!r}: cannot listen there: {e.strerror}") from None


def _listen(path: str, group: int | None) -> tuple[socket.socket, int]:
    """Bind the socket (0600; 0660 and the group's with `group`) in a directory of the server's
    that no one else may write; a socket nothing answers on (a crashed server's) is replaced,
    one that answers is refused. Returns the socket and the inode of its file."""
    from nucleus.effects import store

    directory = os.path.dirname(os.path.abspath(path))
    if not store.owned(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        store.owned(directory)
    if group is not None:
        os.chown(directory, -1, group)
        os.chmod(directory, stat.S_IMODE(os.stat(directory).st_mode) | 0o010)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise InvalidInput(f"--socket {path!r}: it exists and is not a socket", hint="name another path")
        probe_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe_sock.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)  # stale: its server is gone
        else:
            raise RuntimeFailure(f"--socket {path!r}: another server answers there",
                                 hint="stop it first, or give this one another --socket")
        finally:
            probe_sock.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    if group is not None:
        os.chown(path, -1, group)
        os.chmod(path, 0o660)
    sock.listen(128)
    return sock, os.lstat(path).st_ino


class Server:
    """The server's effects: the executor of the Server machine's intents."""

    def __init__(self, path: str, listener: socket.socket, inode: int, grace: float,
                 body: Callable[[list[str]], int]) -> None:
        self.path, self.listener, self.inode, self.grace, self.body = path, listener, inode, grace, body
        self.selector = selectors.DefaultSelector()
        self.children: dict[str, Child] = {}
        self.conns: dict[str, Connection] = {}
        self.current: Connection | None = None
        self.deadline: float | None = None
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.uid = os.geteuid()
        self.feed: Feed = lambda event: None  # the machine's, set by the application
        self.phase: Callable[[], str] = lambda: "serving"
        # From here on SIGTERM, SIGINT and SIGHUP wait in the pipe for the loop.
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(number, lambda *_: None)

    # --- the intents ----------------------------------------------------------------------
    def perform(self, intents: tuple[Any, ...]) -> list[Any]:
        out: list[Any] = []
        for intent in intents:
            match intent:
                case sv.Accept(sandbox=s):
                    assert self.current is not None
                    self.current.sandbox = s
                    self.conns[s] = self.current
                    self._send(self.current, {"op": "created", "sandbox": s})
                case sv.Deny(why=why):
                    assert self.current is not None
                    self._send(self.current, {"op": "refused", "error": why})
                case sv.Spawn(sandbox=s):
                    out.extend(self._spawn(s))
                case sv.Forward(sandbox=s, signal=number):
                    child = self.children.get(s)
                    if child is not None:
                        with contextlib.suppress(ProcessLookupError):
                            signal.pidfd_send_signal(child.pidfd, number)
                case sv.Report(sandbox=s, status=status):
                    conn = self.conns.get(s)
                    if conn is not None:
                        conn.status = status
                        if conn.waiting:
                            self._send(conn, {"op": "exited", "sandbox": s, "status": status})
                case sv.Release(sandbox=s):
                    conn = self.conns.pop(s, None)
                    if conn is not None:
                        conn.sandbox = None
                        if conn.reader.closed:
                            self._drop(conn)
                case sv.CloseListener():
                    self.selector.unregister(self.listener)
                    self.listener.close()
                case sv.Unlink():
                    with contextlib.suppress(OSError):
                        if os.lstat(self.path).st_ino == self.inode:
                            os.unlink(self.path)
        return out

    def _spawn(self, s: str) -> list[Any]:
        conn = self.conns[s]
        assert conn.request is not None
        try:
            pid = os.fork()
        except OSError as e:
            self._send(conn, {"op": "refused", "error": f"cannot fork the supervisor: {e.strerror}"})
            return [sv.Exited(s, 125)]
        if pid == 0:
            from nucleus.effects import serve_child

            try:
                serve_child.become(conn.request, conn.peer, conn.fds, self.body)
            finally:  # never back into the server's loop
                os._exit(125)
        for fd in conn.fds:
            os.close(fd)
        conn.fds = []
        pidfd = os.pidfd_open(pid)
        child = Child(pid, pidfd, conn)
        self.children[s] = child
        self.selector.register(pidfd, selectors.EVENT_READ, ("child", s))
        self._send(conn, {"op": "started", "sandbox": s, "pid": pid})
        return []

    # --- the loop -------------------------------------------------------------------------
    def serve(self) -> int:
        self.selector.register(self.listener, selectors.EVENT_READ, ("listen", None))
        self.selector.register(self.wake_r, selectors.EVENT_READ, ("signal", None))
        while self.phase() != "stopped":
            timeout = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
            for key, _ in self.selector.select(timeout):
                kind, what = key.data
                if kind == "listen":
                    self._accept()
                elif kind == "signal":
                    self._signalled()
                elif kind == "child":
                    self._reap(what)
                else:
                    self._readable(what)
            if self.deadline is not None and time.monotonic() >= self.deadline \
                    and self.phase() == "draining":
                self.feed(sv.Deadline())
        return 0

    def _signalled(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.wake_r, 256)
        if self.phase() == "serving":
            self.feed(sv.Shutdown())
            self.deadline = time.monotonic() + self.grace

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            conn = Connection(sock, wire.Reader(sock), wire.peer(sock))
            self.selector.register(sock, selectors.EVENT_READ, ("conn", conn))

    def _reap(self, s: str) -> None:
        child = self.children.pop(s)
        self.selector.unregister(child.pidfd)
        _, status = os.waitpid(child.pid, 0)
        os.close(child.pidfd)
        code = os.waitstatus_to_exitcode(status)
        self.feed(sv.Exited(s, code if code >= 0 else 128 - code))

    def _readable(self, conn: Connection) -> None:
        conn.reader.fill()
        try:
            while (message := conn.reader.take()) is not None:
                self._message(conn, message)
        except wire.WireError as e:
            self._send(conn, {"op": "refused", "error": f"a broken message: {e}"})
            conn.reader.closed = True
        if conn.reader.closed:
            self.selector.unregister(conn.sock)
            if conn.sandbox is not None:
                self.feed(sv.Hangup(conn.sandbox))
            if conn.sandbox is None or conn.sandbox not in self.conns:
                self._drop(conn)

    def _message(self, conn: Connection, message: dict[str, Any]) -> None:
        op = message.get("op")
        s = conn.sandbox
        if op == "create":
            problem = None if s is None else f"this connection has its sandbox, {s}"
            problem = problem or _request_problem(message)
            if problem is not None:
                self._send(conn, {"op": "refused", "error": problem})
                return
            conn.request = message
            self.current = conn
            try:
                self.feed(sv.Create(sv.OWNER if conn.peer[1] == self.uid else sv.OTHER))
            finally:
                self.current = None
            return
        if s is None or message.get("sandbox") != s:
            self._send(conn, {"op": "refused", "error": f"{op!r}: no sandbox {message.get('sandbox')!r} "
                                                        "on this connection"})
            return
        event: Any
        if op == "start":
            conn.fds, conn.reader.fds = conn.reader.fds, []
            if len(conn.fds) != 3:
                self._send(conn, {"op": "refused", "error": f"start: {len(conn.fds)} descriptors "
                                                            "(stdin, stdout and stderr: 3)"})
                self._close_fds(conn)
                return
            event = sv.Start(s)
        elif op == "signal":
            number = message.get("signal")
            if not isinstance(number, int) or number not in SIGNALS:
                self._send(conn, {"op": "refused", "error": f"signal: {number!r} is no signal number"})
                return
            event = sv.Signal(s, number)
        elif op == "wait":
            if conn.status is not None:
                self._send(conn, {"op": "exited", "sandbox": s, "status": conn.status})
            conn.waiting = True
            return
        elif op == "remove":
            event = sv.Remove(s)
        else:
            self._send(conn, {"op": "refused", "error": f"no operation {op!r} (create, start, signal, "
                                                        "wait, remove)"})
            return
        why = self.feed(event)
        if op == "start":
            self._close_fds(conn)
        if why is not None:
            self._send(conn, {"op": "refused", "error": why})
        elif op == "remove":
            self._send(conn, {"op": "removed", "sandbox": s})

    def _close_fds(self, conn: Connection) -> None:
        for fd in conn.fds:
            os.close(fd)
        conn.fds = []

    def _send(self, conn: Connection, message: dict[str, Any]) -> None:
        if conn.reader.closed:
            return
        try:
            conn.sock.setblocking(True)
            wire.send(conn.sock, message)
        except OSError:
            conn.reader.closed = True  # the hangup is seen when the connection is read
        finally:
            with contextlib.suppress(OSError):
                conn.sock.setblocking(False)

    def _drop(self, conn: Connection) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(conn.sock)
        conn.reader.close_fds()
        self._close_fds(conn)
        conn.sock.close()


def _request_problem(message: dict[str, Any]) -> str | None:
    argv, env, cwd = message.get("argv"), message.get("env"), message.get("cwd")
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        return "create: argv must be a list of strings"
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        return "create: env must be an object of strings"
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        return "create: cwd must be an absolute path"
    if not isinstance(message.get("umask", 0o022), int):
        return "create: umask must be a number"
    return None
