"""What the violation monitor (nucleus.effects.monitor) does, in its own process: answer each call
the container's seccomp filter hands over as the enforced program says, turn it and each Landlock
denial the audit records show into a line of the stream (nucleus.config.violations), and serve
until the container is gone. Imported only in the monitor, after its fork: nothing here is on
the supervisor's path.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import os
import select
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nucleus.config import violations
from nucleus.effects import logs, seccomp_bpf, seccomp_tracer
from nucleus.effects.seccomp_handoff import recv_listener
from nucleus.effects.seccomp_names import syscall_name

if TYPE_CHECKING:
    from nucleus.effects.audit import Record

IDLE = 0.2  # seconds between sweeps: unattributed audit events, kills that did not take
QUIET = 0.05  # seconds without an audit record before a finished container's monitor ends
QUIET_MAX = 1.0  # ... and at most this long after the container is gone
_SIGSYS_BIT = 1 << (signal.SIGSYS - 1)


class Sinks:
    """Where records go: the container's stream in the state directory (rotated, capped) and the
    user's copy (appended)."""

    def __init__(self, stream: logs.Writer | None, copy_fd: int | None) -> None:
        self.stream, self.copy_fd = stream, copy_fd

    def write(self, record: dict[str, object]) -> None:
        data = violations.line(record)
        if self.stream is not None:
            self.stream.write(data)
        if self.copy_fd is not None:
            with contextlib.suppress(OSError):  # a full disk drops the line, never the container
                os.write(self.copy_fd, data)


@dataclass
class _Event:
    """The audit records of one event, by serial."""

    records: list[Record] = field(default_factory=list)
    seen: float = 0.0


class Monitor:
    """The monitor's state: the listener once handed over, the program it consults, the
    container's init and PID namespace, the Landlock domains that are the container's."""

    def __init__(self, ctx: violations.Context, programs: dict[str, bytes], sinks: Sinks) -> None:
        self.ctx, self.programs, self.sinks = ctx, programs, sinks
        self.listener: int | None = None
        self.program = b""
        self.sha = ""
        self.init_pid = 0
        self.pidns: int | None = None
        self.domains: dict[str, bool] = {}
        self.events: dict[int, _Event] = {}
        # notification id -> (tgid, when it was signalled): a kill not yet seen through
        self.condemned: dict[int, tuple[int, float]] = {}
        self.activity = 0  # what this container did: calls answered, its domains and denials seen

    # -- seccomp ----------------------------------------------------------------------------------
    def take(self, fd: int, payload: bytes, pid: int) -> int:
        """The listener the container handed over, with the sha256 of its program and the
        init's pid; returns the listener."""
        sha = payload.decode("ascii", "replace")
        program = self.programs.get(sha)
        if program is None:
            os.close(fd)
            raise ConnectionError(_errno.EPROTO, f"no program {payload[:12]!r} to consult")
        self.listener, self.program, self.sha, self.init_pid = fd, program, sha, pid
        self.pidns = _pidns(pid)  # once, while the init surely runs: never again (its pid may be reused)
        return fd

    def busy(self) -> bool:
        """Whether something is under way: an audit event without its end, a kill not seen
        through."""
        return bool(self.events or self.condemned)

    def saved(self) -> dict[str, object]:
        """What a monitor started later for the same container goes on from (nucleus.app.keeper):
        the program consulted, the init and its PID namespace (as first seen: the init may be
        gone by then, its pid another process's), the Landlock domains that are the
        container's (only those: a domain not named is not its), and the kills not yet seen
        through (a process that survives its SIGSYS calls again: the monitor it wakes then
        kills it, and says so once)."""
        return {"sha": self.sha, "init_pid": self.init_pid, "pidns": self.pidns,
                "domains": sorted(d for d, ours in self.domains.items() if ours),
                "condemned": [[n, tgid, when] for n, (tgid, when) in sorted(self.condemned.items())]}

    def resume(self, saved: dict[str, object], listener: int | None) -> None:
        """Take up what `saved` says, with the listener handed down."""
        sha, init_pid, pidns, domains = saved["sha"], saved["init_pid"], saved["pidns"], saved["domains"]
        assert isinstance(sha, str) and isinstance(init_pid, int) and isinstance(domains, list)
        assert pidns is None or isinstance(pidns, int)
        self.sha, self.init_pid, self.pidns = sha, init_pid, pidns
        self.domains = {str(d): True for d in domains}
        condemned = saved.get("condemned", [])
        assert isinstance(condemned, list)
        self.condemned = {int(n): (int(tgid), float(when)) for n, tgid, when in condemned}
        self.program = self.programs.get(sha, b"")
        if listener is not None:
            if not self.program:
                raise ConnectionError(_errno.EPROTO, f"no program {sha[:12]!r} to consult")
            self.listener = listener

    def answer(self) -> None:
        assert self.listener is not None
        n = seccomp_tracer.receive(self.listener)
        if n is None:
            return
        self.activity += 1
        ret = seccomp_bpf.evaluate(self.program, seccomp_bpf.seccomp_data(n.nr, n.arch, n.ip, n.args))
        action = ret & seccomp_bpf.SECCOMP_RET_ACTION_FULL
        exe = _executable(n.pid)
        name = syscall_name(n.nr) or f"syscall {n.nr}"

        def record(kind: str, errno: int = 0) -> None:
            self.sinks.write(violations.seccomp_violation(
                self.ctx, when=timestamp(time.time()), pid=n.pid, executable=exe, syscall=name, args=n.args,
                ret_action=kind, errno=errno))

        # Each record is written before the answer: whatever the process does once refused (exit,
        # say why), its record is in the stream by then.
        if action == seccomp_bpf.SECCOMP_RET_ERRNO:
            errno = ret & seccomp_bpf.SECCOMP_RET_DATA
            record("errno", errno)
            seccomp_tracer.refuse(self.listener, n.id, errno)
        elif action in (seccomp_bpf.SECCOMP_RET_LOG, seccomp_bpf.SECCOMP_RET_ALLOW):
            if action == seccomp_bpf.SECCOMP_RET_LOG:
                record("logged")
            seccomp_tracer.allow(self.listener, n.id)
        else:  # a kill (the notify form hands over nothing else)
            tgid = _tgid(n.pid)
            again = any(t == tgid for t, _ in self.condemned.values())  # it survived a SIGSYS already
            if not again:
                record("kill")  # before the kill: the supervisor reads it once the workload died
            self.condemned[n.id] = (tgid, time.monotonic())
            self._kill(n.id, tgid, hard=again or _catches_sigsys(n.pid))

    def _kill(self, notification: int, tgid: int, hard: bool) -> None:
        """SIGSYS (SIGKILL when ``hard``) to the process, pinned by a pidfd while its call is
        still waiting: never to a process that reused the pid."""
        assert self.listener is not None
        try:
            pinned = os.pidfd_open(tgid)
        except OSError:
            self.condemned.pop(notification, None)
            return
        try:
            if seccomp_tracer.pending(self.listener, notification):
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(pinned, signal.SIGKILL if hard else signal.SIGSYS)
            else:
                self.condemned.pop(notification, None)
        finally:
            os.close(pinned)

    def sweep(self) -> None:
        """A kill that has not taken for IDLE seconds (SIGSYS ignored meanwhile) becomes
        SIGKILL; audit events left without their end for as long are written."""
        stale = time.monotonic() - IDLE
        for notification, (tgid, when) in list(self.condemned.items()):
            if when <= stale:
                self._kill(notification, tgid, True)
        for serial in [s for s, e in self.events.items() if e.seen < stale]:
            self._event(self.events.pop(serial).records)

    # -- Landlock ---------------------------------------------------------------------------------
    def audit(self, records: list[Record]) -> None:
        from nucleus.effects import audit

        for record in records:
            if record.type not in (audit.AUDIT_LANDLOCK_ACCESS, audit.AUDIT_LANDLOCK_DOMAIN,
                                   audit.AUDIT_SYSCALL, audit.AUDIT_EOE):
                continue
            event = self.events.setdefault(record.serial, _Event())
            event.seen = time.monotonic()
            if record.type == audit.AUDIT_EOE:
                self._event(self.events.pop(record.serial).records)
            else:
                event.records.append(record)

    def _event(self, records: list[Record]) -> None:
        from nucleus.effects import audit

        syscall = next((r.fields for r in records if r.type == audit.AUDIT_SYSCALL), {})
        for r in records:
            if r.type == audit.AUDIT_LANDLOCK_DOMAIN:
                domain = r.fields.get("domain", "")
                if r.fields.get("status") == "allocated":
                    self.domains[domain] = self._ours(_int(r.fields.get("pid")))
                    self.activity += self.domains[domain]
                elif r.fields.get("status") == "deallocated":
                    self.domains.pop(domain, None)
        for r in records:
            if r.type != audit.AUDIT_LANDLOCK_ACCESS or not self.domains.get(r.fields.get("domain", "")):
                continue
            self.activity += 1
            blockers = tuple(b for b in r.fields.get("blockers", "").split(",") if b)
            target = r.fields.get("path") or (f"pid {r.fields['opid']}" if "opid" in r.fields else "")
            self.sinks.write(violations.landlock_violation(
                self.ctx, when=timestamp(r.time), pid=_int(syscall.get("pid")), executable=syscall.get("exe", ""),
                blockers=blockers, path=target))

    def _ours(self, pid: int) -> bool:
        """Whether a Landlock domain made by `pid` is this monitor's: made by the process that
        handed the listener over (the container's init, or a joined command's process); for the
        container's monitor, also by another process of its PID namespace, but for a command
        joined into it (whose parent is outside that namespace): that command's own monitor
        records it, by its pid, even once it has exited."""
        if pid and pid == self.init_pid:
            return True
        if self.ctx.joined or self.pidns is None or pid <= 0 or _pidns(pid) != self.pidns:
            return False
        parent = _int(_status(pid).get("PPid", "").strip())  # 0: gone meanwhile, nothing to tell
        return parent > 0 and _pidns(parent) == self.pidns


def timestamp(seconds: float) -> str:
    """RFC 3339 in UTC with milliseconds: 2025-06-01T12:00:00.125Z."""
    whole, millis = divmod(round(seconds * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def _int(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 0


def _pidns(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return None


def _executable(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def _status(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            return dict(line.rstrip("\n").partition(":\t")[::2] for line in f)
    except OSError:
        return {}


def _tgid(pid: int) -> int:
    return _int(_status(pid).get("Tgid", "").strip()) or pid


def _catches_sigsys(pid: int) -> bool:
    """Whether SIGSYS would not end the task: blocked by it, ignored or caught by its process."""
    status = _status(pid)
    for key in ("SigBlk", "SigIgn", "SigCgt"):
        try:
            if int(status.get(key, "0"), 16) & _SIGSYS_BIT:
                return True
        except ValueError:
            return True
    return False


# Why `serve` returned: the container is gone, the supervisor took the listener back to hand
# it to its keeper (`ctl`), nothing this container did for `idle` seconds (a monitor the keeper
# started), or its `deadline` passed (the teardown's last monitor).
DONE, HANDED_BACK, IDLE_END, DEADLINE = "done", "handed back", "idle", "deadline"


def serve(handoff: socket.socket | None, audit_sock: socket.socket | None, monitor: Monitor,
          ctl: socket.socket | None = None, idle: float | None = None, deadline: float | None = None) -> str:
    """Serve until the container is gone (see the module's docstring); with `ctl`, until the
    supervisor asks for the listener back and confirms that it takes it (asked once the
    listener is held and no audit event is read in part: `hand_back`); with `idle`, until the container
    has done nothing for that long (the host's other audit records do not count); with
    `deadline` (a time.monotonic() value), until then at the latest."""
    poller = select.poll()
    if handoff is not None:
        poller.register(handoff, select.POLLIN)
    if monitor.listener is not None:
        poller.register(monitor.listener, select.POLLIN)
    if audit_sock is not None:
        poller.register(audit_sock, select.POLLIN)
    if ctl is not None:
        poller.register(ctl, select.POLLIN)
    done_at: float | None = None
    asked = False
    last_audit = last = time.monotonic()
    while True:
        now = time.monotonic()
        if done_at is not None and (audit_sock is None or now - last_audit >= QUIET or now - done_at >= QUIET_MAX):
            return DONE
        if deadline is not None and now >= deadline:
            return DEADLINE
        # A kill not seen through holds it up (IDLE at most, until the sweep sends SIGKILL): the
        # process it is for waits in its notification, and a namespace's init ignores SIGSYS, so
        # nothing would wake a monitor to finish it once the keeper holds the listener.
        if asked and not monitor.busy() and (monitor.listener is not None or handoff is None):
            assert ctl is not None
            if _confirmed(ctl):
                hand_back(ctl, audit_sock, monitor)
                return HANDED_BACK
            asked = False  # the supervisor gave up waiting and stays: serving goes on, as before it asked
        if idle is not None and done_at is None and not monitor.busy() and now - last >= idle:
            return IDLE_END
        wait = QUIET if done_at is not None else IDLE
        ready = dict(poller.poll(int(1000 * (wait if deadline is None else max(0.0, min(wait, deadline - now))))))
        # Swept on every turn, not only after a quiet spell: a container refused again and again
        # (or the host's other audit records) must not keep an event or a kill pending for ever.
        monitor.sweep()
        if not ready:
            continue
        activity = monitor.activity
        if ctl is not None and ctl.fileno() in ready:
            poller.unregister(ctl)
            asked = _asked(ctl)  # or the supervisor ended without a keeper
            last = time.monotonic()
        if handoff is not None and handoff.fileno() in ready:  # first: a Landlock record may name the init it carries
            got = recv_listener(handoff)
            poller.unregister(handoff)
            handoff = None
            last = time.monotonic()
            if got is None:
                if monitor.listener is None:
                    done_at = time.monotonic()
            else:
                listener = monitor.take(*got)
                poller.register(listener, select.POLLIN)
        if monitor.listener is not None and monitor.listener in ready:
            events = ready[monitor.listener]
            if events & select.POLLIN:
                monitor.answer()
            elif events & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                poller.unregister(monitor.listener)
                done_at = time.monotonic()
        if audit_sock is not None and audit_sock.fileno() in ready:
            from nucleus.effects import audit

            records, _ = audit.read(audit_sock)
            last_audit = time.monotonic()
            monitor.audit(records)
        if monitor.activity != activity:
            last = time.monotonic()


def _asked(ctl: socket.socket) -> bool:
    try:
        return bool(ctl.recv(1))
    except OSError:
        return False


def _confirmed(ctl: socket.socket) -> bool:
    """Tell the supervisor that what it asked for is ready, and whether it still takes it: it
    confirms, or it has given up (monitor.TAKE_BACK_WAIT) and shut its end down. Waited for
    without a limit of its own: one that ran out first would leave a supervisor that confirmed
    late waiting for what never comes."""
    from nucleus.effects.monitor import READY

    try:
        ctl.settimeout(None)
        ctl.sendall(READY)
        return ctl.recv(1) == READY
    except OSError:
        return False


def hand_back(ctl: socket.socket, audit_sock: socket.socket | None, monitor: Monitor) -> None:
    """Send the supervisor what its keeper holds from now on: the listener (when the
    container handed one over), the audit reader and the user's copy of the stream, with what a
    later monitor goes on from; one message framed as the serve protocol's (serve_wire)."""
    from nucleus.effects import serve_wire

    held = {"listener": monitor.listener, "audit": audit_sock.fileno() if audit_sock else None,
            "copy": monitor.sinks.copy_fd}
    ctl.settimeout(None)
    serve_wire.send(ctl, {**{key: fd is not None for key, fd in held.items()}, **monitor.saved()},
                    tuple(fd for fd in held.values() if fd is not None))


def run(setup: violations.Setup, stream: str, programs: dict[str, bytes], handoff: socket.socket | None,
        audit_sock: socket.socket | None, ctl: socket.socket | None = None,
        saved: tuple[dict[str, object], int | None] | None = None, idle: float | None = None,
        kept: frozenset[int] = frozenset(), deadline: float | None = None) -> tuple[str, Monitor]:
    """The monitor's life once forked: ignore the terminal's signals (it must outlive every
    process of the container to answer its last calls), keep only fds 0-2, its sockets and the
    stream's files, and serve. A monitor the keeper started (nucleus.app.keeper) goes on from
    what the one before it `saved`, with the listener it holds, and ends after `idle` seconds
    with nothing to do (or at `deadline`), keeping `kept` open meanwhile; returns why it ended,
    and the monitor (what a monitor after it goes on from: its `saved`)."""
    for sig in seccomp_tracer.TRACER_IGNORES:
        signal.signal(sig, signal.SIG_IGN)
    # Rotated only while the stream is there: `nucleus rm` removes it with the container. Shared
    # with the monitors of the commands joined into the container (nucleus exec).
    writer = logs.Writer(logs.Sink(stream, violations.MAX_STREAM_SIZE, violations.STREAM_FILES, stream),
                         shared=True)
    keep = {0, 1, 2, *kept} | {s.fileno() for s in (handoff, audit_sock, ctl) if s is not None}
    keep |= {writer.fd} if writer.fd is not None else set()
    keep |= {setup.copy_fd} if setup.copy_fd is not None else set()
    monitor = Monitor(setup.context, programs, Sinks(writer, setup.copy_fd))
    if saved is not None:
        monitor.resume(saved[0], saved[1])
        keep |= {saved[1]} if saved[1] is not None else set()
    seccomp_tracer.close_all_but(keep)
    return serve(handoff, audit_sock, monitor, ctl, idle, deadline), monitor
