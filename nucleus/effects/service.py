"""What a service's supervisor does on the host beside the System machine's runs: the check
processes (a health check, a readiness command, a TCP probe) and their process groups, waiting
for a signal until a deadline, reaping, and systemd's READY=1 (nucleus.effects.notify).

A check runs in a child of the supervisor that leads a process group of its own, so that every
process of the check (the joining processes, the shell, what it started) is ended at once with
that group: at its timeout, and when it ends, so that nothing it left in the background
outlives it. Its output goes to a memory file whose first bytes inspect shows.

The port is probed from a child forked for the purpose, which enters the network namespace of
the container's init (setns(2); the supervisor runs as the namespace's owner) and connects to
the loopback addresses there: what the workload listens on inside is reached whatever the
container's network (none, bridge). The supervisor's own namespaces never change.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass

from nucleus import linux
from nucleus.effects import libc, notify, process
from nucleus.frozen import frozen

OUTPUT_KEPT = 256  # bytes of a check's output kept for inspect
CONNECT_TIMEOUT = 1.0  # seconds one probe waits for a connection
STOPPING = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)  # no restart after one of these
# --readiness-sd-notify's socket and its checks (nucleus.effects.notify), for the supervisor.
Relay = notify.Relay
same_pid_namespace = notify.same_pid_namespace
notify_socket_valid = notify.valid


@dataclass
class Check:
    """A check under way: its process (and group), its output file (-1: none), and its
    deadline (time.monotonic())."""

    pid: int
    output: int
    deadline: float
    timed_out: bool = False


@frozen
class Taken:
    """A signal taken from the supervisor's queue."""

    number: int
    sent: bool  # sent on purpose (kill, sigqueue, tkill), not raised by a terminal

    @property
    def child(self) -> bool:
        return self.number == signal.SIGCHLD

    @property
    def stopping(self) -> bool:
        return self.number in STOPPING


def start_check(body: Callable[[], int], timeout: float, now: float) -> Check:
    """Fork a check that runs `body` (its exit status) with /dev/null as input and a memory
    file as output, in a process group of its own; its deadline is `now + timeout`."""
    output = os.memfd_create("nucleus-check", os.MFD_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        code = 125
        try:
            os.setpgid(0, 0)
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(output, 1)
            os.dup2(output, 2)
            libc.close_range(3)
            code = body()
        finally:
            os._exit(code)
    # Made here too: the group exists before the supervisor may have to end it.
    with contextlib.suppress(OSError):  # it has made the group itself, or exec'd, or ended
        os.setpgid(pid, pid)
    return Check(pid, output, now + timeout)


def tcp_probe(init_pid: int, port: int, now: float) -> Check:
    """Fork a probe that exits 0 when `port` accepts a TCP connection on 127.0.0.1 or ::1 in
    the network namespace of `init_pid`, 1 when it does not, 125 when it cannot enter it."""
    pid = os.fork()
    if pid != 0:
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        return Check(pid, -1, now + CONNECT_TIMEOUT * 3)
    code = 125
    try:
        os.setpgid(0, 0)  # ended as a check is, with its group
        process.default_signals()
        fd = os.open(f"/proc/{init_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        libc.setns(fd, linux.CLONE_NEWNET)
        os.close(fd)
        code = 1
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(CONNECT_TIMEOUT)
                sock.connect((host, port))
                code = 0
                break
    finally:
        os._exit(code)


def output_of(check: Check) -> str:
    """The first bytes the check wrote; its memory file is closed."""
    try:
        data = os.pread(check.output, OUTPUT_KEPT, 0)
    finally:
        close_output(check)
    return data.decode(errors="replace")


def close_output(check: Check) -> None:
    if check.output >= 0:
        os.close(check.output)
        check.output = -1


def kill_group(pgid: int) -> None:
    """SIGKILL every process of the process group `pgid` (a check and every process it started
    that did not leave the group), led by the check's process, which is not reaped yet; a
    group already gone is fine, and one its leader never made is left alone (it would be the
    supervisor's own)."""
    if pgid <= 1:
        raise OSError(1, f"refusing to signal process group {pgid!r}")
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pgid) == pgid:
            os.killpg(pgid, signal.SIGKILL)


def end_check(check: Check) -> int:
    """End a check under way (its whole group), reap it and close its output; its status."""
    kill_group(check.pid)
    status = process.reap(check.pid)
    close_output(check)
    return 137 if status is None else status


def take_signal(timeout: float) -> Taken | None:
    """The next of process.WAITED (the caller has blocked them) within `timeout` seconds."""
    info = signal.sigtimedwait(process.WAITED, timeout)
    return None if info is None else Taken(info.si_signo, info.si_code <= 0)


def forward(target: int, taken: Taken) -> None:
    """Pass a signal sent on purpose to the supervisor on to the workload `target`."""
    if taken.sent:
        process.kill(target, taken.number)


def reap_all(groups: tuple[Check | None, ...] = ()) -> list[tuple[int, int]]:
    """Every child that has ended, reaped: (pid, exit status). The group of a check in `groups`
    is ended while its leader is still a zombie (its pid, and so the group's id, cannot be
    taken meanwhile): nothing the check left in the background outlives it."""
    leaders = {c.pid for c in groups if c is not None}
    out: list[tuple[int, int]] = []
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return out
        if info is None or info.si_pid == 0:
            return out
        if info.si_pid in leaders:
            kill_group(info.si_pid)
        status = process.poll_exit(info.si_pid)
        out.append((info.si_pid, 137 if status is None else status))


def notify_ready(notify_socket: str, status: str) -> str | None:
    """Say READY=1 (and STATUS=) to the service manager at `notify_socket`; why not, if not."""
    return tell(notify_socket, {"READY": "1", "STATUS": status})


def tell(notify_socket: str, fields: dict[str, str]) -> str | None:
    """Send `fields` to the service manager at `notify_socket`; why not, if not."""
    try:
        notify.send(notify_socket, fields)
    except OSError as e:
        return f"sd_notify to {notify_socket!r} failed: {e.strerror or e}"
    return None
