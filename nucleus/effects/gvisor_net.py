"""A gVisor container's network namespace (nucleus.vocab.gvisor's MakeNetns and EndNetns) and the
Network machine's intents carried out for it: the host side in the supervisor, as for a native
run (nucleus.effects.network), and the container side (its address, link and routes) in a
process forked into that namespace, since no process of the container's runs there before
runsc run, whose netstack then takes the link, its addresses and its routes over.

The namespace is held by a process of the supervisor's (the holder), which ends with it
(PR_SET_PDEATHSIG) or when EndNetns asks; the bundle names the namespace through a symlink to
/proc/PID/ns/net, and a file beside it keeps the holder's pid and start time, so that no later
process that reuses the pid is ever signalled.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import os
import signal
from collections.abc import Callable

from nucleus import linux
from nucleus import vocab as v
from nucleus.effects import libc, namespaces
from nucleus.effects.handlers import handler_for
from nucleus.effects.process import default_signals, kill, process_start
from nucleus.vocab import gvisor as gv
from nucleus.vocab.events import Event

MESSAGE = 4096  # the most of a failure's text the process inside sends back


def make_netns(intent: gv.MakeNetns) -> tuple[Event, int | None]:
    """Fork the holder into a network namespace of its own, then make `link` and `holder`;
    Netns and the holder's pid, or Fail at the netns step (and nothing of it left)."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.fork()
    except OSError as e:
        os.close(read_end)
        os.close(write_end)
        return gv.Fail(step="netns", message=f"cannot fork the namespace's process: {e.strerror}"), None
    if pid == 0:  # pragma: no cover - the holder
        _hold(write_end)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as ready:
        said = ready.read(MESSAGE)
    try:
        if said != b"ready":
            raise OSError(_errno.EIO, said.decode(errors="replace") or "it ended before it was ready")
        start = process_start(pid)
        os.symlink(f"/proc/{pid}/ns/net", intent.link)
        fd = os.open(intent.holder, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{pid} {start}\n")
    except OSError as e:
        os.kill(pid, signal.SIGKILL)  # a child not reaped yet: its pid is still its own
        os.waitpid(pid, 0)
        for path in (intent.link, intent.holder):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return gv.Fail(step="netns", message=f"cannot make the network namespace: {e.strerror or e}"), None
    return gv.Netns(pid=pid), pid


def _hold(report: int) -> None:  # pragma: no cover - runs in the forked holder
    """The holder: it ends with the supervisor, holds no descriptor of the supervisor's, enters
    a network namespace of its own (lo up), says so, and waits to be ended."""
    try:
        libc.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.dup2(report, 3)
        libc.close_range(4)
        libc.unshare(linux.CLONE_NEWNET)
        namespaces.loopback_up(v.LoopbackUp())  # runsc's netstack makes a loopback of an lo that is up
        default_signals()
        os.write(3, b"ready")
        os.close(3)
        while True:
            signal.pause()
    except BaseException as e:  # noqa: BLE001 - reported to the supervisor, whatever it is
        with contextlib.suppress(OSError):
            os.write(3, str(e).encode()[:MESSAGE])
    finally:
        os._exit(1)


def end_netns(intent: gv.EndNetns) -> Event:
    """End the holder (if it is still the process `holder` names) and remove `link` and `holder`:
    Unshared (a holder already gone, or never made, is fine)."""
    held: tuple[int, int] | None = None
    with contextlib.suppress(OSError, ValueError):  # none, or not a holder's: nothing is signalled
        with open(intent.holder) as f:
            pid_text, _, start_text = f.read().strip().partition(" ")
        held = int(pid_text), int(start_text)
    if held is not None:
        _end(*held)
    for path in (intent.link, intent.holder):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return gv.Unshared()


def _end(pid: int, start: int) -> None:
    """SIGKILL the holder while it is still the process that started at `start`, and reap it
    (the supervisor's child); any other process is left alone."""
    if process_start(pid) != start:
        return
    kill(pid, signal.SIGKILL, start)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


class NetworkSide:
    """What the network's handlers (nucleus.effects.handlers) ask of an executor: the process in
    the container's namespace (the holder), and no --violations copy (refused under gVisor)."""

    def __init__(self, holder: int | None) -> None:
        self.holder = holder

    def served_pid(self) -> int:
        if self.holder is None:
            raise OSError(_errno.ESRCH, "no network namespace has been made")
        return self.holder

    def take_egress_copy(self) -> None:
        return None


def perform(intent: v.Intent, holder: int | None) -> Event:
    """Carry out one Network machine intent: the host side here, the container side in a process
    forked into the namespace `holder` holds; its Done or Fail event."""
    side = NetworkSide(holder)
    detail = None
    try:
        if intent.where == "child":
            _inside(intent, side)
        else:
            detail = handler_for(intent)(side, intent)
    except Exception as e:  # noqa: BLE001 - every failure is an event
        code = (e.errno or 0) if isinstance(e, OSError) else 0
        message = str(e) if isinstance(e, OSError) else f"{type(e).__name__}: {e}"
        return v.failed(intent, code, message)
    done = v.done(intent, detail or "")
    assert done is not None  # every network intent reports
    return done


def _inside(intent: v.Intent, side: NetworkSide) -> None:
    """Run the intent's handler in a process forked into the container's network namespace."""
    path = f"/proc/{side.served_pid()}/ns/net"

    def inside() -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        libc.setns(fd, linux.CLONE_NEWNET)
        os.close(fd)
        handler_for(intent)(side, intent)

    forked(inside, "the process in the container's network namespace")


def forked(work: Callable[[], object], who: str) -> None:
    """Do `work` in a forked process (what it changes of its own process stays there); an
    OSError with what it raised when it fails."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked process
        code = 1
        try:
            os.close(read_end)
            work()
            code = 0
        except BaseException as e:  # noqa: BLE001 - reported to the supervisor
            with contextlib.suppress(OSError):
                os.write(write_end, str(e).encode()[:MESSAGE])
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        said = f.read(MESSAGE).decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise OSError(_errno.EIO, said or f"{who} ended ({status})")
