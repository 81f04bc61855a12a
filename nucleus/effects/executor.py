"""The supervisor's executor: carries out host-side intents itself and sends the rest, in
batches, to the process the machine spawned (over the sync pipe); returns what they produced as
events, stopping at the first failure. Every failure comes back as the intent's Fail event: the
machine decides what happens next, and nothing here undoes work on its own.

The executor holds only process handles: the process serving the pipe, the container's init (or
the joined command), the tracer of seccomp trace mode. Management commands build one with the
init's pid from the container's record.
"""

from __future__ import annotations

import errno as _errno
import os
import signal
import socket
import sys
from collections.abc import Callable

from nucleus import linux
from nucleus import vocab as v
from nucleus.effects import channel, libc, process
from nucleus.effects.handlers import handler_for
from nucleus.effects.setup import SetupProcess, serve

# Intents after which the spawned process answers nothing: it became the command.
_UNANSWERED = (v.ExecCommand,)


def parse_fault(spec: str | None) -> tuple[str, int] | None:
    """NUCLEUS_FAIL_AT=Intent[#n]: make the nth such intent fail (tests of every failure path);
    NUCLEUS_PAUSE_AT=Intent[#n]: stop the supervisor (SIGSTOP) just before it (crash tests)."""
    if not spec:
        return None
    name, _, nth = spec.partition("#")
    return name, int(nth or "1")


def _stderr(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


class Executor:
    def __init__(self, programs: dict[str, bytes] | None = None, *,
                 fault: tuple[str, int] | None = None, pause: tuple[str, int] | None = None,
                 warn: Callable[[str], None] | None = None, init_pid: int | None = None,
                 init_start: int | None = None, init_identity: Callable[[int], bool] | None = None) -> None:
        # What the spawned process holds besides the intents: the compiled seccomp programs.
        self.setup = SetupProcess(programs=dict(programs or {}))
        self.fault = fault
        self.pause = pause
        self.warn = warn or _stderr
        self.counts: dict[str, int] = {}
        self.pid: int | None = None  # the process serving the sync pipe
        self.init_pid = init_pid  # the container's init (or the joined command's process)
        # A management command knows the init from a record: it is signalled only while it is
        # still the process that started then (its start time), never one that reused its pid,
        # and still passes `init_identity` (checked while a pidfd pins it).
        self.init_start = init_start
        self.init_identity = init_identity
        self.req_w: int | None = None
        self.resp_r: int | None = None
        self.tracer: tuple[int, str] | None = None  # (pid, log path) in seccomp trace mode

    # -- dispatch ---------------------------------------------------------------------------------
    def perform(self, intents: tuple[v.Intent, ...]) -> list[v.Event]:
        events: list[v.Event] = []
        batch: list[v.Intent] = []
        for intent in intents:
            n = self.counts[intent.name] = self.counts.get(intent.name, 0) + 1
            if self.pause is not None and self.pause == (intent.name, n):
                if batch:  # everything before the pause point is done first
                    events.extend(self._remote(tuple(batch)))
                    batch = []
                    if _failed(events):
                        return events
                # Tests of crash recovery stop here, then kill the supervisor.
                sys.stderr.write(f"paused {intent.name}\n")
                sys.stderr.flush()
                os.kill(os.getpid(), signal.SIGSTOP)
            injected = self.fault is not None and self.fault == (intent.name, n)
            if intent.where == "child" and not injected:
                batch.append(intent)
                continue
            if batch:
                events.extend(self._remote(tuple(batch)))
                batch = []
                if _failed(events):
                    return events
            if injected:
                events.extend(self._broken(intent, _errno.EIO, f"injected failure of {intent.name} #{n}"))
                return events
            events.extend(self._local(intent))
            if _failed(events):
                return events
        if batch:
            events.extend(self._remote(tuple(batch)))
        return events

    def _local(self, intent: v.Intent) -> list[v.Event]:
        try:
            detail = handler_for(intent)(self, intent)
        except Exception as e:  # noqa: BLE001 - every failure is an event; a bug too, never an unwinding
            errno = (e.errno or 0) if isinstance(e, OSError) else 0
            message = str(e) if isinstance(e, OSError) else f"{type(e).__name__}: {e}"
            return self._broken(intent, errno, message)
        done = v.done(intent, detail or "")
        return [done] if done is not None else []

    def _broken(self, intent: v.Intent, errno: int, message: str) -> list[v.Event]:
        """The failure of `intent` as its Fail event; an intent that reports nothing (its
        consequence arrives as an event of its own, such as Exit) is only warned of."""
        if intent.reports is None:
            self.warn(f"{intent.name} failed: {message}")
            return []
        return [v.failed(intent, errno, message)]

    def _remote(self, intents: tuple[v.Intent, ...]) -> list[v.Event]:
        if self.req_w is None or self.resp_r is None:
            return self._broken(intents[0], _errno.ESRCH, "no setup process")
        try:
            channel.send_intents(self.req_w, intents)
            if isinstance(intents[-1], _UNANSWERED):
                return []
            events = channel.receive_events(self.resp_r)
        except (channel.ChannelClosedError, OSError) as e:
            message, status = self._went_away(intents, e)
            if status is not None and isinstance(intents[-1], v.ExecWorkload):
                # The container's init died before its workload ran: the container has ended.
                return [v.Exit(process.exit_status(status), message)]
            return self._broken(intents[0], getattr(e, "errno", None) or _errno.EPIPE, message)
        done = events[-1] if events else None
        if isinstance(done, v.StepDone) and any(
                isinstance(i, v.ForkInit) and i.reports == (done.machine, done.step) for i in intents):
            # The intermediate process exits once it has answered; reap it. The forked one
            # serves from now on (and is the container's init, or the joined command).
            intermediate, self.pid = self.pid, int(done.detail)
            self.init_pid = self.pid
            if intermediate is not None:
                process.reap(intermediate)
        return events

    def _went_away(self, intents: tuple[v.Intent, ...], error: Exception) -> tuple[str, int | None]:
        """What became of the serving process, once its end of the pipe closed: reaped (it is
        this process's child) and its death described; and its wait status."""
        steps = intents[0].name if len(intents) == 1 else (
            f"{intents[0].name} or one of the {len(intents) - 1} steps after it")
        status = None if self.pid is None else _reap_soon(self.pid)
        if status is None:
            return f"the setup process went away during {steps}: {error}", None
        if self.init_pid == self.pid:
            self.init_pid = None
        self.pid = None
        return describe_death(status, steps), status

    # -- host effects -----------------------------------------------------------------------------
    def served_pid(self) -> int:
        if self.pid is None:
            raise OSError(_errno.ESRCH, "no process has been spawned")
        return self.pid

    def spawn(self, op: v.SpawnChild) -> None:
        """Fork the process that serves the child-side intents (a subreaper first, so that the
        process it forks later is reparented here). In trace mode the tracer comes first."""
        libc.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
        traced_end = None
        if op.trace_log:
            traced_end = self._start_tracer(op.trace_log)
            self.setup.trace_fd = traced_end
        try:
            self.pid, self.req_w, self.resp_r = process.serve_in_child(self._serve)
        finally:
            if traced_end is not None:  # only the container keeps its end
                os.close(traced_end)
                self.setup.trace_fd = None

    def _serve(self, req_fd: int, resp_fd: int) -> None:
        self.setup.req_fd, self.setup.resp_fd = req_fd, resp_fd
        serve(self.setup)

    def _start_tracer(self, log: str) -> int:
        from nucleus.effects import seccomp_tracer  # also what PID 1 uses after pivot_root

        tracer_end, traced_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.tracer = (seccomp_tracer.spawn_tracer(tracer_end, log), log)
        except OSError:
            traced_end.close()
            raise
        finally:
            tracer_end.close()
        return traced_end.detach()

    def send_signal(self, name: str) -> None:
        if self.init_pid is not None:  # gone meanwhile: its supervisor records the exit
            process.kill(self.init_pid, getattr(signal, f"SIG{name}"), self.init_start, self.init_identity)

    def cleanup(self) -> None:
        """End every process this executor started (the container's init takes its namespace
        down with it), close the pipe, and let the tracer finish."""
        if self.pid is not None and self.pid != self.init_pid:
            process.kill(self.pid)
            process.reap(self.pid)
        if self.init_pid is not None:
            process.kill(self.init_pid, start=self.init_start, identity=self.init_identity)
            process.reap(self.init_pid)
        self.pid = self.init_pid = None
        for fd in (self.req_w, self.resp_r):
            if fd is not None:
                os.close(fd)
        self.req_w = self.resp_r = None
        self._finish_tracer(quiet=True)

    def wait(self) -> int:
        """Wait for the container's init (or the joined command) while forwarding signals;
        return its exit status (the caller blocked process.WAITED)."""
        if self.init_pid is None:
            raise OSError(_errno.ESRCH, "nothing was started")
        target = self.init_pid
        code = process.wait_forwarding(target)
        self.init_pid = None
        if self.pid == target:
            self.pid = None
        self._finish_tracer()
        return code

    def _finish_tracer(self, quiet: bool = False) -> None:
        """The tracer ends once every traced process is gone (after the init was reaped)."""
        if self.tracer is None:
            return
        pid, log = self.tracer
        self.tracer = None
        status = process.reap(pid)
        if quiet:
            return
        from nucleus.config import seccomp_generate

        try:
            with open(log, "rb") as f:
                complete = seccomp_generate.summary(f.read()) is not None
        except OSError:
            complete = False
        if status not in (0, None) or not complete:
            self.warn(f"the seccomp trace in {log!r} is incomplete")


def _failed(events: list[v.Event]) -> bool:
    return bool(events) and v.is_failure(events[-1])


REAP_WAIT = 2.0  # seconds: a process whose pipe closed is about to be a zombie, if it is not yet


def _reap_soon(pid: int) -> int | None:
    """The wait status of a child that is ending (None if it does not end within REAP_WAIT, or
    is no child of this process)."""
    import time

    deadline = time.monotonic() + REAP_WAIT
    while True:
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if got:
            return status
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.005)


def describe_death(status: int, steps: str) -> str:
    """A setup process's end, as a user can act on it. SIGSYS is its own seccomp filter's kill
    (a profile that denies a call nucleus still makes once the filter is loaded: write to
    answer, the Landlock calls, ...); SIGKILL is the OOM killer when the container's cgroup
    counts a kill (said once the cgroup is released, see nucleus.app.run)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = _signal_name(sig)
        if sig == signal.SIGSYS:
            return (f"the setup process was killed by its own seccomp filter ({name}) during {steps}: "
                    "the profile denies a system call nucleus makes after loading it (such as write, "
                    "read, close_range, execve, or the Landlock calls)")
        return f"the setup process was killed by {name} during {steps}"
    return f"the setup process exited with status {os.WEXITSTATUS(status)} during {steps}"


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"
