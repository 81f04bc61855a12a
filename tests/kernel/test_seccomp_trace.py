"""Seccomp trace mode for real: record with user notification, generate, enforce.

Each test forks the program it traces: the child hands its listener over a socketpair with
start_tracing and execs; this process serves it. No `nucleus run` here: the round trip is the
effects and the generator, the same calls trace mode and `nucleus seccomp generate` make.
A watchdog (SIGALRM) kills the traced process and fails the test rather than hanging the suite.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass

import pytest

from nucleus.config import seccomp_generate as sg
from nucleus.config.policy import seccomp_profile as sp
from nucleus.effects import abi as nabi
from nucleus.effects import (
    seccomp,
    seccomp_bpf,
    seccomp_handoff,
    seccomp_names,
    seccomp_tracer,
)

TRACE = pytest.mark.requires("root", "seccomp")
ENFORCE = pytest.mark.requires("root", "seccomp", "pyseccomp")
PYTHON = "/usr/bin/python3"
WATCHDOG_S = 120

# A program whose only difference between two runs is one mkdir(2): traced with "-", it never
# makes that call.
MKDIR_SCRIPT = (
    "import os, sys\n"
    "os.write(1, b'started\\n')\n"
    "if sys.argv[1] != '-':\n"
    "    os.mkdir(sys.argv[1])\n"
    "os.write(1, b'done\\n')\n"
)


@dataclass
class Traced:
    code: int
    output: str
    ndjson: str
    pid: int
    seconds: float

    @property
    def events(self) -> list[dict]:
        return [e for e in map(json.loads, self.ndjson.splitlines()) if "syscall" in e]

    @property
    def summary(self) -> dict:
        return json.loads(self.ndjson.splitlines()[-1])["summary"]

    @property
    def names(self) -> set[str]:
        return {e["syscall"] for e in self.events}


@contextlib.contextmanager
def watchdog(*pids: int, seconds: int = WATCHDOG_S):
    def expired(signo, frame):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        raise TimeoutError(f"still running after {seconds} s: killed {pids}")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _child(out_path: str, body) -> int:
    """Fork a child with stdout and stderr on ``out_path`` that runs ``body()`` and never
    returns into pytest."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 127
        try:
            fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
            body()
        except BaseException as e:  # noqa: BLE001 - reported on the child's stderr
            os.write(2, f"child: {type(e).__name__}: {e}\n".encode())
        finally:
            os._exit(code)
    return pid


def trace(argv: list[str], tmp_path, *, linger: float | None = None, forward=()) -> Traced:
    out_path = str(tmp_path / "out.txt")
    parent_end, child_end = socket.socketpair()

    def body():
        parent_end.close()
        for sig in forward:
            signal.signal(sig, signal.SIG_DFL)
        seccomp_handoff.start_tracing(child_end)
        os.execv(argv[0], argv)

    pid = _child(out_path, body)
    child_end.close()
    try:
        with watchdog(pid):
            listener = seccomp_handoff.recv_fd(parent_end, timeout=30)
            ndjson = io.StringIO()
            start = time.monotonic()
            try:
                code = seccomp_tracer.run_until_exit(listener, pid, ndjson, linger=linger, forward=forward)
            finally:
                os.close(listener)
            seconds = time.monotonic() - start
    except BaseException:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        raise
    finally:
        parent_end.close()
    with open(out_path) as f:
        output = f.read()
    return Traced(code, output, ndjson.getvalue(), pid, seconds)


def enforce(profile: dict, argv: list[str], tmp_path) -> tuple[int, str]:
    """Run ``argv`` under ``profile`` compiled by nucleus.effects.seccomp: (wait status, output)."""
    program = seccomp.compile_profile(profile)
    out_path = str(tmp_path / "enforced.txt")

    def body():
        seccomp.load_program(program)
        os.execv(argv[0], argv)

    pid = _child(out_path, body)
    with watchdog(pid):
        _, status = os.waitpid(pid, 0)
    with open(out_path) as f:
        return status, f.read()


def untraced(argv: list[str], tmp_path) -> str:
    out_path = str(tmp_path / "plain.txt")
    pid = _child(out_path, lambda: os.execv(argv[0], argv))
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    with open(out_path) as f:
        return f.read()


def killed_by(status: int) -> int | None:
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else None


def exited(status: int) -> int | None:
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else None


# --- the filter ----------------------------------------------------------------------------------


def test_filter_layout():
    """Arch check, x32 check (x86_64), notify; the exemption matches one fd and one address
    exactly."""
    x32 = nabi.architecture().x32_syscall_bit is not None
    plain = seccomp_bpf.trace_filter()
    assert plain is seccomp_bpf.trace_filter()  # built once
    assert len(plain) == (5 + x32) * 8
    exempt = seccomp_bpf.trace_filter((7, 0x7F00_1234_5678))
    assert len(exempt) == (15 + x32) * 8
    words = [int.from_bytes(exempt[i + 4 : i + 8], "little") for i in range(0, len(exempt), 8)]
    assert {7, 0, 0x1234_5678, 0x7F00, nabi.syscall_number("sendmsg")} <= set(words)
    assert words[-2:] == [seccomp_bpf.SECCOMP_RET_USER_NOTIF, seccomp_bpf.SECCOMP_RET_KILL_PROCESS]


# --- round trips -------------------------------------------------------------------------------


@ENFORCE
def test_trace_ls_generate_and_enforce(tmp_path):
    expected = untraced(["/bin/ls", "/"], tmp_path)
    traced = trace(["/bin/ls", "/"], tmp_path)
    assert traced.code == 0, traced.output
    assert traced.output == expected
    events = traced.events
    assert {e["pid"] for e in events} == {traced.pid}
    assert all(e["arch"] == nabi.MACHINE and e["syscall"] == seccomp_names.syscall_name(e["nr"]) for e in events)
    assert {"execve", "getdents64", "write", "exit_group"} <= traced.names
    assert events[-1]["syscall"] == "exit_group"
    assert traced.summary == {"events": len(events), "syscalls": len(traced.names), "exit_status": 0}
    assert "sendmsg" not in traced.names  # the handoff is the one call not traced

    path = tmp_path / "ls.ndjson"
    path.write_text(traced.ndjson)
    with open(path) as f:
        profile = sg.generate([f], [str(path)])
    assert profile["syscalls"][0]["names"] == sorted(traced.names | set(sp.INIT_TIMED_CALLS))

    status, output = enforce(profile, ["/bin/ls", "/"], tmp_path)
    assert exited(status) == 0, output
    assert output == expected
    # A program that needs what ls never did is killed at once.
    status, output = enforce(profile, [PYTHON, "-I", "-c", "import os; os.mkdir('/nonexistent-x')"], tmp_path)
    assert killed_by(status) == signal.SIGSYS


@ENFORCE
def test_the_syscall_never_made_is_denied(tmp_path):
    argv = [PYTHON, "-I", "-c", MKDIR_SCRIPT]
    traced = trace(argv + ["-"], tmp_path)
    assert (traced.code, traced.output) == (0, "started\ndone\n")
    assert "mkdir" not in traced.names and "mkdirat" not in traced.names
    profile = sg.generate([traced.ndjson], ["python.ndjson"])

    status, output = enforce(profile, argv + ["-"], tmp_path)
    assert (exited(status), output) == (0, "started\ndone\n")

    target = tmp_path / "made-by-the-workload"
    status, output = enforce(profile, argv + [str(target)], tmp_path)
    assert killed_by(status) == signal.SIGSYS
    assert output == "started\n"  # it got exactly as far as the mkdir
    assert not target.exists()

    # Merging in a trace that made the call allows it.
    with_mkdir = trace(argv + [str(target)], tmp_path)
    assert with_mkdir.code == 0 and "mkdir" in with_mkdir.names
    target.rmdir()
    merged = sg.generate([traced.ndjson, with_mkdir.ndjson], ["a", "b"])
    status, output = enforce(merged, argv + [str(target)], tmp_path)
    assert (exited(status), output) == (0, "started\ndone\n")
    assert target.is_dir()


# --- processes, load, signals --------------------------------------------------------------------


@TRACE
def test_children_are_traced_and_complete(tmp_path):
    entries = len(untraced(["/bin/ls", "/"], tmp_path).splitlines())
    traced = trace(["/bin/sh", "-c", "ls / | wc -l"], tmp_path)
    assert traced.code == 0, traced.output
    assert traced.output.strip() == str(entries)
    pids = {e["pid"] for e in traced.events}
    assert len(pids) >= 3  # sh, ls, wc
    execs = [e["pid"] for e in traced.events if e["syscall"] == "execve"]
    assert len(set(execs)) >= 3
    assert traced.names & {"clone", "clone3", "fork", "vfork"}
    assert {"wait4", "pipe2"} <= traced.names or {"wait4", "pipe"} <= traced.names


@TRACE
def test_no_deadlock_under_load(tmp_path):
    loops = 10_000
    traced = trace([PYTHON, "-I", "-c", f"import os\nfor _ in range({loops}): os.getppid()\n"], tmp_path)
    assert traced.code == 0, traced.output
    assert sum(e["syscall"] == "getppid" for e in traced.events) == loops
    rate = traced.summary["events"] / traced.seconds
    sys.stdout.write(f"\ntraced {traced.summary['events']} syscalls at {rate:,.0f}/s\n")


@TRACE
def test_threads_are_traced(tmp_path):
    script = (
        "import os, threading\n"
        "def work():\n"
        "    for _ in range(2000): os.getppid()\n"
        "ts = [threading.Thread(target=work) for _ in range(4)]\n"
        "[t.start() for t in ts]\n"
        "[t.join() for t in ts]\n"
        "print('ok')\n"
    )
    traced = trace([PYTHON, "-I", "-c", script], tmp_path)
    assert (traced.code, traced.output) == (0, "ok\n")
    assert sum(e["syscall"] == "getppid" for e in traced.events) == 8000
    assert len({e["pid"] for e in traced.events}) >= 5  # the thread ids


@TRACE
def test_exit_status_of_a_failing_and_a_killed_program(tmp_path):
    assert trace(["/bin/sh", "-c", "exit 3"], tmp_path).code == 3
    traced = trace(["/bin/sh", "-c", "kill -KILL $$"], tmp_path)
    assert traced.code == 128 + signal.SIGKILL
    assert traced.summary["exit_status"] == 128 + signal.SIGKILL


@TRACE
def test_signals_are_forwarded(tmp_path):
    """A signal sent to the supervisor on purpose reaches the traced child, as wait_forwarding
    does; the helper keeps sending until it is stopped, so the test does not depend on timing."""
    me = os.getpid()
    previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    helper = os.fork()
    if helper == 0:  # pragma: no cover - runs in the child
        try:
            while True:
                time.sleep(0.2)
                os.kill(me, signal.SIGUSR1)
        finally:
            os._exit(0)
    try:
        traced = trace(["/bin/sleep", "60"], tmp_path, forward=(signal.SIGUSR1,))
    finally:
        os.kill(helper, signal.SIGKILL)
        os.waitpid(helper, 0)
        signal.signal(signal.SIGUSR1, previous)
    assert traced.code == 128 + signal.SIGUSR1
    assert traced.seconds < 60


@TRACE
def test_linger_bounds_serving_descendants_that_outlive_the_child(tmp_path):
    traced = trace(["/bin/sh", "-c", "/bin/sleep 30 & echo $!"], tmp_path, linger=0.3)
    orphan = int(traced.output)
    try:
        assert traced.code == 0
        assert traced.seconds < 30
        assert orphan in {e["pid"] for e in traced.events}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(orphan, signal.SIGKILL)


# --- the handoff and the low-level calls -----------------------------------------------------


@TRACE
def test_handle_and_a_task_killed_while_waiting(tmp_path):
    parent_end, child_end = socket.socketpair()

    def body():
        parent_end.close()
        seccomp_handoff.start_tracing(child_end)
        os.execv("/bin/true", ["true"])

    pid = _child(str(tmp_path / "out.txt"), body)
    child_end.close()
    with watchdog(pid):
        listener = seccomp_handoff.recv_fd(parent_end, timeout=30)
        try:
            tracer = seccomp_tracer.Tracer()
            # The first traced call: the child closing its copy of the listener.
            assert tracer.handle(listener) == {"syscall": "close", "nr": 3, "pid": pid, "arch": nabi.MACHINE}
            n = seccomp_tracer.receive(listener)
            assert n is not None and n.pid == pid
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)  # dies although its syscall was never answered
            assert killed_by(status) == signal.SIGKILL
            assert seccomp_tracer.allow(listener, n.id) is False  # ENOENT: the task is gone
            p = select.poll()
            p.register(listener, select.POLLIN)
            assert p.poll(5000)[0][1] & select.POLLHUP  # nobody uses the filter any more
        finally:
            os.close(listener)
            parent_end.close()


@TRACE
def test_a_child_that_dies_before_the_handoff(tmp_path):
    parent_end, child_end = socket.socketpair()
    pid = _child(str(tmp_path / "out.txt"), lambda: os._exit(126))
    child_end.close()
    with pytest.raises(ConnectionError, match="closed its socket before handing over"):
        seccomp_handoff.recv_fd(parent_end, timeout=30)
    parent_end.close()
    os.waitpid(pid, 0)


@TRACE
def test_recv_fd_times_out():
    a, b = socket.socketpair()
    with a, b, pytest.raises(TimeoutError, match="no seccomp listener received within 0.1 s"):
        seccomp_handoff.recv_fd(a, timeout=0.1)


@TRACE
def test_a_tracer_process_serves_until_the_last_traced_process_is_gone(tmp_path):
    """The shape for a supervisor busy with other things: spawn_tracer's process receives the
    listener and serves it until the listener hangs up; this process only waits."""
    log = tmp_path / "trace.ndjson"
    tracer_end, traced_end = socket.socketpair()
    tracer = seccomp_tracer.spawn_tracer(tracer_end, str(log))
    tracer_end.close()

    def traced_body():
        seccomp_handoff.start_tracing(traced_end)
        os.execv("/bin/sh", ["sh", "-c", "ls / | wc -l"])

    traced = _child(str(tmp_path / "out.txt"), traced_body)
    traced_end.close()
    with watchdog(traced, tracer):
        _, status = os.waitpid(traced, 0)
        _, tracer_status = os.waitpid(tracer, 0)
    assert exited(status) == 0
    assert exited(tracer_status) == 0
    assert oct(log.stat().st_mode & 0o777) == "0o600"
    lines = log.read_text().splitlines()
    assert json.loads(lines[-1])["summary"]["exit_status"] is None
    assert len({json.loads(line)["pid"] for line in lines[:-1]}) >= 3
    assert "wait4" in sg.generate([log.read_text()])["syscalls"][0]["names"]


@TRACE
def test_a_tracer_process_whose_traced_side_never_hands_over(tmp_path, capfd):
    log = tmp_path / "trace.ndjson"
    tracer_end, traced_end = socket.socketpair()
    tracer = seccomp_tracer.spawn_tracer(tracer_end, str(log))
    tracer_end.close()
    traced_end.close()  # the only other holder: as if the container died during setup
    with watchdog(tracer):
        _, status = os.waitpid(tracer, 0)
    assert exited(status) == 1
    assert "closed its socket before handing over a seccomp listener" in capfd.readouterr().err
    assert log.read_text() == ""  # no summary line: the trace is known to be incomplete


def test_spawn_tracer_reports_an_unwritable_log_before_forking(tmp_path):
    a, b = socket.socketpair()
    with a, b, pytest.raises(FileNotFoundError):
        seccomp_tracer.spawn_tracer(a, str(tmp_path / "missing" / "trace.ndjson"))


@TRACE
def test_recv_fd_refuses_an_fd_that_is_not_a_listener():
    a, b = socket.socketpair()
    with a, b, open("/dev/null") as f:
        seccomp_handoff.send_fd(b, f.fileno())
        with pytest.raises(ConnectionError, match="the fd received is '/dev/null', not 'anon_inode:seccomp notify'"):
            seccomp_handoff.recv_fd(a, timeout=5)
        seccomp_handoff.send_fd(b, f.fileno())
        fd = seccomp_handoff.recv_fd(a, timeout=5, expect=None)
        assert os.path.samestat(os.fstat(fd), os.fstat(f.fileno()))
        os.close(fd)


@TRACE
@pytest.mark.skipif(nabi.MACHINE != "x86_64", reason=f"the i386 and x32 ABIs are x86_64's, this is {nabi.MACHINE}")
@pytest.mark.parametrize("abi", ["i386", "x32"])
def test_other_abis_are_killed(tmp_path, abi):
    """Trace mode holds the same line as an x86_64-only profile: int 0x80 and x32 calls die."""
    x32_getpid = nabi.architecture("x86_64").x32_syscall_bit | 39

    def body():
        parent_end.close()
        seccomp_handoff.start_tracing(child_end)
        if abi == "x32":
            clib = ctypes.CDLL("libc.so.6", use_errno=True)
            clib.syscall(ctypes.c_long(x32_getpid))
        else:
            import mmap

            page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
            page.write(bytes.fromhex("b814000000" "cd80" "c3"))  # mov eax, 20 (getpid); int 0x80; ret
            address = ctypes.addressof(ctypes.c_char.from_buffer(page))
            ctypes.CFUNCTYPE(ctypes.c_int)(address)()
        os.write(1, b"survived\n")

    parent_end, child_end = socket.socketpair()
    pid = _child(str(tmp_path / "out.txt"), body)
    child_end.close()
    with watchdog(pid):
        listener = seccomp_handoff.recv_fd(parent_end, timeout=30)
        parent_end.close()
        try:
            code = seccomp_tracer.run_until_exit(listener, pid, None)
        finally:
            os.close(listener)
    assert code == 128 + signal.SIGSYS, (tmp_path / "out.txt").read_text()
