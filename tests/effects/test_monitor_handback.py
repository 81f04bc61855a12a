"""The violation monitor's hand-back to the supervisor (nucleus.effects.monitor.take_back,
nucleus.effects.refusals.serve) and what a monitor the keeper starts goes on from: the monitor
gives its descriptors up only once the supervisor confirms that it takes them (a supervisor that
gave up leaves it serving, nothing stranded in the socket, one that confirms late still gets it,
and one that got nothing usable leaves a monitor still serving to serve); a kill under way goes
with the hand-back; the hand-back is read whole however long, and a malformed one is refused;
the audit reader lets through only the types the monitor reads, and is not opened where
Landlock's denials are not logged; the host's audit records neither keep a monitor busy nor
idle; the saved state names the container's PID namespace as first seen and its own Landlock
domains only; the memory files the supervisor hands over are replaced all at once, sealed, and
checked before use."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from types import SimpleNamespace

import pytest

from nucleus import linux
from nucleus.app import keeper
from nucleus.effects import abi, executor, libc, monitor, process, refusals, seccomp_bpf, serve_wire
from nucleus.effects.refusals import Monitor, Sinks, _Event
from tests.effects.test_violation_monitor import DOMAIN, EOE, SYSCALL, datagram, feed, make_monitor


class Serving:
    """refusals.serve in a thread, its listener a pipe (closing its writing end is the
    container's end), with an audit event under way."""

    def __init__(self, audit_sock: socket.socket | None = None, *, idle: float | None = None,
                 deadline: float | None = None) -> None:
        self.monitor = Monitor(None, {}, Sinks(None, None))  # type: ignore[arg-type]
        self.listener, self.container = os.pipe()
        self.monitor.listener = self.listener
        self.monitor.events = {1: _Event(seen=time.monotonic())}  # written by a sweep IDLE seconds on
        self.supervisor, self.ctl = socket.socketpair()
        self.why: list[str] = []
        self.thread = threading.Thread(target=lambda: self.why.append(
            refusals.serve(None, audit_sock, self.monitor, self.ctl, idle, deadline)), daemon=True)

    def __enter__(self) -> Serving:
        self.thread.start()
        return self

    def end(self) -> list[str]:
        os.close(self.container)
        self.container = -1
        self.thread.join(10)
        return self.why

    def __exit__(self, *exc: object) -> None:
        self.thread.join(10)
        process.close(self.listener, self.container)
        self.supervisor.close()
        self.ctl.close()


def host_records(sock: socket.socket, until: threading.Event) -> threading.Thread:
    """Another process's audited calls, every 50 ms: none of them the container's."""
    def send() -> None:
        while not until.wait(0.05):
            sock.send(datagram((1300, SYSCALL), (1320, EOE)))

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    return sender


def test_a_monitor_not_ready_in_time_goes_on_serving_and_keeps_its_descriptors(monkeypatch):
    monkeypatch.setattr(monitor, "TAKE_BACK_WAIT", 0.05)  # given up before the event is swept
    with Serving() as serving:
        assert monitor.take_back(serving.supervisor) is None
        time.sleep(2 * refusals.IDLE)  # the event swept: ready now, but no longer asked
        assert serving.thread.is_alive()
        assert serving.end() == [refusals.DONE]
        serving.supervisor.setblocking(False)
        data, fds, _, _ = socket.recv_fds(serving.supervisor, 65536, 3)
        assert fds == [] and data in (b"", b"!")


def test_a_monitor_among_the_host_s_audit_records_is_still_ready_to_hand_back():
    reader, host = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    reader.setblocking(False)
    stop = threading.Event()
    sender = host_records(host, stop)
    with Serving(reader) as serving:
        try:
            held = monitor.take_back(serving.supervisor)
        finally:
            stop.set()
            sender.join()
        assert held is not None
        serving.thread.join(10)
        assert serving.why == [refusals.HANDED_BACK]
        assert held.listener is not None and held.audit is not None and held.copy is None
        assert os.path.samestat(os.fstat(held.listener), os.fstat(serving.listener))
        assert not os.get_inheritable(held.listener)
        held.close()
    for s in (reader, host):
        s.close()


def test_a_hand_back_longer_than_one_read_is_read_whole_and_names_only_the_container_s_domains():
    with Serving() as serving:
        serving.monitor.events = {}
        serving.monitor.init_pid, serving.monitor.pidns = 1, 4026531836
        serving.monitor.domains = {f"{n:x}": n % 2 == 0 for n in range(20000)}
        held = monitor.take_back(serving.supervisor)
        assert held is not None
        assert held.saved["domains"] == sorted(f"{n:x}" for n in range(0, 20000, 2))
        assert (held.saved["init_pid"], held.saved["pidns"]) == (1, 4026531836)
        held.close()


def test_a_kill_under_way_is_seen_through_before_the_hand_back():
    """A kill not seen through holds the hand-back until the sweep finishes it: the process it is
    for waits in its notification (a namespace's init ignores SIGSYS), and nothing would wake a
    monitor to send its SIGKILL once the keeper holds the listener."""
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid names no process once it is reaped
    with Serving() as serving:
        serving.monitor.events = {}
        serving.monitor.condemned = {7: (gone.pid, time.monotonic())}  # the sweep finds it gone
        held = monitor.take_back(serving.supervisor)
        assert held is not None
        serving.thread.join(10)
        assert serving.why == [refusals.HANDED_BACK]
        assert held.saved["condemned"] == []
        held.close()


def test_a_supervisor_that_confirms_late_still_gets_what_it_asked_for(monkeypatch):
    monkeypatch.setattr(monitor, "TAKE_BACK_WAIT", 0.05)  # the supervisor's limit, not the monitor's
    with Serving() as serving:
        serving.monitor.events = {}
        serving.supervisor.sendall(b"?")
        assert serving.supervisor.recv(1) == monitor.READY
        time.sleep(0.3)  # the supervisor stalls
        serving.supervisor.sendall(monitor.READY)
        reader = serve_wire.Reader(serving.supervisor)
        assert reader.next() is not None and len(reader.fds) == 1
        reader.close_fds()
        serving.thread.join(10)
        assert serving.why == [refusals.HANDED_BACK]


def test_a_monitor_still_serving_after_a_failed_hand_back_is_left_to_serve(monkeypatch):
    monkeypatch.setattr(executor, "REAP_WAIT", 0.1)
    supervisor, ctl = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # a monitor that confirms, hands back nothing usable and goes on
        try:
            ctl.recv(1)
            ctl.sendall(monitor.READY)
            ctl.recv(1)
            ctl.sendall(b"\0\0\0\x05{nope")
            time.sleep(60)
        finally:
            os._exit(0)
    ctl.close()
    ex = executor.Executor()
    ex.monitor, ex.monitor_ctl = pid, supervisor
    try:
        assert ex.take_back_monitor() is None
        assert (ex.monitor, ex.monitor_ctl) == (pid, None)
        assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # not killed
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


@pytest.mark.parametrize("message", [b"\0\0\0\x05{nope", b"\0\0\0\x09[1, 2, 3]", b"\0\0\0\x40{}"])
def test_a_malformed_hand_back_is_refused_and_what_came_with_it_closed(message):
    supervisor, ctl = socket.socketpair()
    r, w = os.pipe()

    def fake() -> None:
        ctl.recv(1)
        ctl.send(b"!")
        ctl.recv(1)
        socket.send_fds(ctl, [message], [r])
        ctl.close()

    thread = threading.Thread(target=fake)
    thread.start()
    with pytest.raises(ConnectionError, match="handed back nothing usable"):
        monitor.take_back(supervisor)
    thread.join()
    pipe = os.readlink(f"/proc/self/fd/{r}")
    # The pipe's two ends, and no third: what came was closed.
    assert sorted(int(fd) for fd in os.listdir("/proc/self/fd") if _names(fd) == pipe) == sorted((r, w))
    os.close(r)
    os.close(w)
    supervisor.close()


def _names(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def test_the_host_s_audit_records_do_not_keep_an_idle_monitor_going():
    reader, host = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    reader.setblocking(False)
    stop = threading.Event()
    sender = host_records(host, stop)
    m = Monitor(None, {}, Sinks(None, None))  # type: ignore[arg-type]
    why: list[str] = []
    thread = threading.Thread(target=lambda: why.append(refusals.serve(None, reader, m, None, 0.3)), daemon=True)
    thread.start()
    thread.join(10)
    stop.set()
    sender.join()
    assert why == [refusals.IDLE_END]
    for s in (reader, host):
        s.close()


def test_a_deadline_ends_a_monitor_whatever_comes():
    with Serving(deadline=time.monotonic() + 0.3) as serving:
        serving.thread.join(10)
        assert serving.why == [refusals.DEADLINE]


def test_a_later_monitor_keeps_the_pid_namespace_first_seen_and_the_container_s_domains(tmp_path):
    m, out = make_monitor(tmp_path, 0)
    # The init's pid names another process by now (this one): its namespace is not looked up again.
    m.resume({"sha": "", "init_pid": os.getpid(), "pidns": 12345, "domains": ["16d50d678"]}, None)
    assert (m.pidns, m.domains) == (12345, {"16d50d678": True})
    assert m.saved() == {"sha": "", "init_pid": os.getpid(), "pidns": 12345, "domains": ["16d50d678"],
                         "condemned": []}
    feed(m, (1424, DOMAIN.replace("16d50d678", "99").format(pid=1)), (1320, EOE))  # not the container's
    assert m.domains == {"16d50d678": True, "99": False}
    assert m.saved()["domains"] == ["16d50d678"]
    assert out.records() == []


def test_memory_files_are_replaced_at_once_sealed_and_close_on_exec():
    fd = process.memory_file("test")
    try:
        assert not os.get_inheritable(fd)
        for n in range(1, 200, 7):
            process.rewrite_memory_file(fd, b"x" * n * 100)
            assert process.read_memory_file(fd) == b"x" * n * 100
            process.rewrite_memory_file(fd, b"y")
            assert process.read_memory_file(fd) == b"y"
        assert os.fstat(fd).st_size < 2 * 200 * 100  # the former contents do not pile up
    finally:
        os.close(fd)
    sealed = process.memory_file("test", b"kept", sealed=True)
    try:
        with pytest.raises(PermissionError):
            process.rewrite_memory_file(sealed, b"changed")
        assert process.read_memory_file(sealed) == b"kept"
        assert fcntl.fcntl(sealed, fcntl.F_GET_SEALS) & fcntl.F_SEAL_WRITE
    finally:
        os.close(sealed)


def seccomp_listener() -> int:
    """A seccomp listener, from a child that installs a filter allowing everything (no call is
    ever notified) and passes it here."""
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            libc.prctl(linux.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            allow = struct.pack("=HBBI", 0x06, 0, 0, seccomp_bpf.SECCOMP_RET_ALLOW)  # ret ALLOW
            socket.send_fds(theirs, [b"x"], [libc.seccomp_set_mode_filter(allow, abi.SECCOMP_FILTER_FLAG_NEW_LISTENER)])
            code = 0
        finally:
            os._exit(code)
    try:
        assert os.waitpid(pid, 0)[1] == 0
        return socket.recv_fds(ours, 1, 1)[1][0]
    finally:
        ours.close()
        theirs.close()


def test_a_descriptor_a_monitor_file_names_is_used_only_while_it_is_the_same_file():
    listener, (audit, other_end), (r, w) = seccomp_listener(), socket.socketpair(), os.pipe()
    data = {"listener": listener, "audit": audit.fileno(), "copy": w,
            "ids": monitor.identities(listener, audit.fileno(), w)}
    assert monitor.kept(data) == {"listener": listener, "audit": audit.fileno(), "copy": w}
    os.close(w)
    other = os.open("/dev/null", os.O_WRONLY)  # the number taken by another file
    try:
        assert other == w
        assert monitor.kept(data) == {"listener": listener, "audit": audit.fileno(), "copy": None}
    finally:
        os.close(other)
    os.close(listener)
    # An eventfd where the listener was: anonymous inodes share a device, and inode numbers
    # are handed out again; it is told apart by its name.
    event = os.eventfd(0)
    try:
        assert event == listener
        data["ids"][0] = monitor.identities(event)[0]
        assert monitor.kept(data)["listener"] is None
        data["audit"], data["ids"][1] = r, monitor.identities(r)[0]  # the audit reader: a socket
        assert monitor.kept(data) == {"listener": None, "audit": None, "copy": None}
    finally:
        process.close(event, r)
        audit.close()
        other_end.close()


class Handing:
    """What nucleus.app.keeper.hand_over is given, with a monitor that hands back a pipe's end."""

    def __init__(self) -> None:
        self.config = SimpleNamespace(detach=False, limits=SimpleNamespace(memory=None))
        self.driver = SimpleNamespace(state={"phase": "running"})
        self.init_pid, self.monitor = os.getpid(), 1
        self.listener, self.container = os.pipe()
        self.asked = 0
        self.given: list[dict] = []
        self.warned: list[str] = []

    def take_back_monitor(self) -> dict:
        self.asked += 1
        self.monitor = None
        return {"listener": self.listener, "audit": None, "copy": None, "ids": [None, None, None], "saved": {}}

    def give_back_monitor(self, held: dict) -> None:
        self.given.append(held)
        self.monitor = 2

    def warn(self, message: str) -> None:
        self.warned.append(message)

    def hand_over(self) -> None:
        keeper.hand_over(self.config, self, self.driver, None, "/nonexistent", "0" * 32)  # type: ignore[arg-type]


def test_a_keeper_that_cannot_be_found_leaves_the_monitor_serving(monkeypatch):
    def missing() -> int:
        raise FileNotFoundError(2, "No such file or directory", process.KEEPER)

    monkeypatch.setattr(process, "open_keeper", missing)
    handing = Handing()
    before = sorted(os.listdir("/proc/self/fd"))
    handing.hand_over()
    assert (handing.asked, handing.monitor, handing.given) == (0, 1, [])
    assert handing.warned == [f"the supervisor stays: [Errno 2] No such file or directory: {process.KEEPER!r}"]
    assert sorted(os.listdir("/proc/self/fd")) == before
    process.close(handing.listener, handing.container)


def test_a_keeper_that_fails_to_execute_gives_what_was_handed_back_to_a_monitor_again(monkeypatch):
    def fails(keeper_fd: int, *args: object) -> None:
        raise OSError(errno.ENOEXEC, "Exec format error")

    monkeypatch.setattr(process, "become_keeper", fails)
    handing = Handing()
    before = sorted(os.listdir("/proc/self/fd"))
    handing.hand_over()
    assert (handing.asked, handing.monitor, [g["listener"] for g in handing.given]) == (1, 2, [handing.listener])
    assert handing.warned == ["the supervisor stays: [Errno 8] Exec format error"]
    assert sorted(os.listdir("/proc/self/fd")) == before  # the keeper's binary and memory files closed
    process.close(handing.listener, handing.container)


def test_the_audit_reader_s_filter_passes_only_the_types_the_monitor_reads():
    reader, host = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)  # the kernel runs it on any socket
    monitor.attach_filter(reader, monitor.audit_filter())
    reader.setblocking(False)
    # 0x1405, 0x2805: 1300 and 1320 with their bytes swapped
    kinds = (1300, 1320, 1423, 1424, 1327, 1100, 1400, 1425, 2, 0x1405, 0x2805)
    for kind in kinds:
        host.send(struct.pack("=IHHII", 20, kind, 0, 0, 0) + b"text")
    passed = []
    with contextlib.suppress(BlockingIOError):
        while True:
            passed.append(struct.unpack_from("=IH", reader.recv(64))[1])
    assert passed == [1300, 1320, 1423, 1424]
    for s in (reader, host):
        s.close()


def test_no_audit_reader_where_landlock_denials_are_not_logged(monkeypatch):
    from nucleus.effects import audit, landlock

    monkeypatch.setattr(landlock, "abi_version", lambda: monitor.LANDLOCK_LOGS - 1)
    monkeypatch.setattr(audit, "status", lambda: pytest.fail("audit asked about"))
    assert monitor.open_audit() is None
