"""The supervisor's executor: carries out host-side intents itself and sends the rest, in
batches, to the process the machine spawned (over the sync pipe); returns what they produced as
events, stopping at the first failure. Every failure comes back as the intent's Fail event: the
machine decides what happens next, and nothing here undoes work on its own.

The executor holds only process handles: the process serving the pipe, the container's init (or
the joined command), the tracer of seccomp trace mode, and with -t the master of the workload's
terminal, which `wait` relays (nucleus.effects.terminal). Management commands build one with the
init's pid from the container's record.
"""

from __future__ import annotations

import array
import errno as _errno
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nucleus import linux
from nucleus import vocab as v
from nucleus.effects import channel, libc, process
from nucleus.effects.handlers import handler_for
from nucleus.effects.setup import SetupProcess, serve

if TYPE_CHECKING:
    from nucleus.effects.promises import Shown
    from nucleus.effects.terminal import Relay

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
                 init_start: int | None = None, init_identity: Callable[[int], bool] | None = None,
                 keeps_trees: bool = False, monitor: Any = None, netlink: bool = False,
                 init_image: int | None = None, secrets: list[Any] | None = None) -> None:
        # What the spawned process holds besides the intents: the compiled seccomp programs.
        self.setup = SetupProcess(programs=dict(programs or {}))
        # The compiled init's memory file (nucleus.effects.init_image), handed to the setup
        # process and closed here once it holds it; None: PID 1 stays the interpreter.
        self.init_image = init_image
        # The opened --secret sources (nucleus.effects.secrets.Source): read just before the
        # setup process is forked, the supervisor's copies overwritten right after.
        self.secret_sources = secrets or []
        # What the violation monitor is given (nucleus.config.violations.Setup), and its pid.
        self.monitor_setup = monitor
        self.monitor: int | None = None
        self.monitor_ctl: socket.socket | None = None  # where it hands back what it holds
        self.stream: str | None = None  # the violation stream the monitor writes
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
        # With `keeps_trees` (the plan has a KeepTree), a socket on which the setup process hands
        # over trees; those received wait in `trees` until the caller takes them.
        self.keeps_trees = keeps_trees
        self.handover: socket.socket | None = None
        self.trees: list[int] = []
        # With -t: the socket the workload's terminal comes back on, then the relay to it.
        self.terminal_sock: socket.socket | None = None
        self.terminal: Relay | None = None
        # With a bridge: rtnetlink's library, loaded once before the setup process is forked
        # (both use it: nucleus.effects.network).
        self.netlink = netlink
        # With a bridge, the egress process's own copy of the user's --violations FILE.
        self.egress_copy: int | None = None

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
            self._take_terminal(intents[-1])
            if isinstance(intents[-1], _UNANSWERED):
                return []
            events = channel.receive_events(self.resp_r)
            self._receive_trees()
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

    def _receive_trees(self) -> None:
        """Take every tree the setup process sent before it answered (KeepTree)."""
        space = socket.CMSG_LEN(4 * array.array("i").itemsize)
        while self.handover is not None:
            try:  # not socket.recv_fds: it drops its flags (CPython 3.11)
                _, ancillary, _, _ = self.handover.recvmsg(1, space, socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC)
            except BlockingIOError:
                return
            fds = array.array("i")
            for level, kind, data in ancillary:
                if (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS):
                    fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
            if not fds:
                return
            self.trees.extend(fds)

    def _take_terminal(self, last: v.Intent) -> None:
        """With ExecWorkload or ExecCommand asking for a terminal: take its master from the
        process about to become the command (which waits for it), set its window size, and
        keep it for the relay (`wait`). A process that ended without handing one over fails
        its own way (its exit, or PID 1's answer)."""
        if not isinstance(last, (v.ExecWorkload, v.ExecCommand)) or not last.terminal \
                or self.terminal_sock is None:
            return
        from nucleus.effects import terminal

        master = terminal.receive(self.terminal_sock)
        self.terminal_sock.close()
        self.terminal_sock = None
        if master is not None:
            self.terminal = terminal.Relay(master, last.stdin)

    def shown(self, memory_file: str | None) -> Shown:
        """What the host shows of production's promises for the container's init
        (nucleus.effects.promises)."""
        from nucleus.effects import promises

        return promises.observe(memory_file, self.init_pid or 0)

    def take_tree(self) -> int | None:
        """The tree the setup process handed over (the caller closes it), or None."""
        return self.trees.pop(0) if self.trees else None

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
        dead, self.pid = self.pid, None
        return describe_death(status, steps) + self._refused_to(dead), status

    def _refused_to(self, pid: int | None) -> str:
        """What the violation stream says the seccomp profile refused the setup process (a
        profile that refuses a call nucleus makes after loading it), as a clause; "" for none."""
        if self.stream is None or pid is None:
            return ""
        from nucleus.config import violations

        try:
            with open(self.stream, "rb") as f:
                records = violations.parse(f.read(violations.MAX_STREAM_SIZE))
        except OSError:
            return ""
        calls = dict.fromkeys(violations.call(r) for r in records if r.get("pid") == pid and r.get("layer") == "seccomp")
        if not calls:
            return ""
        return (f": the seccomp profile refused it {', '.join(calls)}, which nucleus calls after loading "
                "the profile")

    # -- host effects -----------------------------------------------------------------------------
    def take_egress_copy(self) -> int | None:
        """The --violations FILE's descriptor for the egress process, handed over once."""
        fd, self.egress_copy = self.egress_copy, None
        return fd

    def served_pid(self) -> int:
        if self.pid is None:
            raise OSError(_errno.ESRCH, "no process has been spawned")
        return self.pid

    def spawn(self, op: v.SpawnChild) -> None:
        """Fork the process that serves the child-side intents (a subreaper first, so that the
        process it forks later is reparented here). In trace mode the tracer comes first."""
        libc.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
        if self.netlink:
            from nucleus.effects import network  # noqa: F401 - loaded for the setup process too
        if self.keeps_trees:
            self.handover, self.setup.handover = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        terminal_end = None
        if op.terminal:
            from nucleus.effects import terminal  # noqa: F401 - the process inside uses it after pivot_root

            self.terminal_sock, terminal_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            self.setup.terminal_fd = terminal_end.fileno()
        traced_end = None
        if op.trace_log:
            traced_end = self._start_tracer(op.trace_log)
        elif op.violations:
            traced_end = self._start_monitor(op.violations)
            self.stream = op.violations
        self.setup.trace_fd = traced_end
        self.setup.init_image = self.init_image
        if self.secret_sources:
            from nucleus.effects import secrets

            self.setup.secrets = secrets.read_all(self.secret_sources)
        try:
            self.pid, self.req_w, self.resp_r = process.serve_in_child(self._serve)
        finally:
            if self.secret_sources:
                secrets.close(self.secret_sources)
                self.setup.secrets = []
            if self.init_image is not None:  # only the container keeps it
                os.close(self.init_image)
                self.init_image = self.setup.init_image = None
            if traced_end is not None:  # only the container keeps its end
                os.close(traced_end)
                self.setup.trace_fd = None
            if self.setup.handover is not None:
                self.setup.handover.close()
                self.setup.handover = None
            if terminal_end is not None:  # only the container keeps its end
                terminal_end.close()
                self.setup.terminal_fd = None

    def _serve(self, req_fd: int, resp_fd: int) -> None:
        self.setup.req_fd, self.setup.resp_fd = req_fd, resp_fd
        if self.handover is not None:  # the supervisor's end
            self.handover.close()
        if self.terminal_sock is not None:
            self.terminal_sock.close()
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

    def _start_monitor(self, stream: str) -> int:
        """Fork the violation monitor (nucleus.effects.monitor); the container's end of its
        handoff socket is returned. The user's copy of the stream is the monitor's alone."""
        from nucleus.effects import monitor  # also what PID 1 uses after pivot_root

        setup = self.monitor_setup
        if setup is None:
            raise OSError(_errno.EINVAL, "no description of the container for its violation monitor")
        if self.netlink and setup.copy_fd is not None and self.egress_copy is None:
            self.egress_copy = os.dup(setup.copy_fd)
        try:
            self.monitor, theirs, self.monitor_ctl = monitor.spawn(setup, stream, self.setup.programs)
        finally:
            if setup.copy_fd is not None:
                os.close(setup.copy_fd)
                setup.copy_fd = None
        return theirs

    def _finish_monitor(self) -> None:
        """The monitor ends once the container's last process is gone; it is reaped here (and
        killed if it has not ended within REAP_WAIT). Waiting for the init reaps every child
        that has ended, the monitor among them: one reaped already is left alone, never
        signalled (its pid may be another process's by now).

        A joined command's monitor ends as the command's last process does; when the command
        leaves processes behind in the container, it is ended after HANGUP_WAIT instead (what
        they are refused from then on fails with ENOSYS, as after a monitor's death: still
        refused, no longer recorded)."""
        if self.monitor_ctl is not None:
            self.monitor_ctl.close()
            self.monitor_ctl = None
        if self.monitor is None:
            return
        wait = HANGUP_WAIT if self.monitor_setup.context.joined else REAP_WAIT
        pid, self.monitor = self.monitor, None
        _end_within(pid, wait)

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
        self._finish_monitor()
        self.close_trees()
        self._close_terminal()

    def _close_terminal(self) -> None:
        if self.terminal_sock is not None:
            self.terminal_sock.close()
            self.terminal_sock = None
        if self.terminal is not None:
            self.terminal.close()
            self.terminal = None

    def close_trees(self) -> None:
        """Let go of every tree received and the socket they came on."""
        for tree in self.trees:
            os.close(tree)
        self.trees.clear()
        if self.handover is not None:
            self.handover.close()
            self.handover = None

    def wait(self, waiter: Callable[[int], int] | None = None) -> int:
        """Wait for the container's init (or the joined command) while forwarding signals;
        return its exit status (the caller blocked process.WAITED). `waiter`: what waits
        instead of process.wait_forwarding (a service's supervisor, nucleus.app.service)."""
        if self.init_pid is None:
            raise OSError(_errno.ESRCH, "nothing was started")
        target = self.init_pid
        if self.terminal is not None:  # relaying its terminal meanwhile (-t)
            try:
                code = self.terminal.run(target)
            finally:
                self._close_terminal()
        else:
            code = (waiter or process.wait_forwarding)(target)
        return self._waited(target, code)

    def wait_until(self, until: float) -> int | None:
        """As `wait` (without a terminal to relay or a service to supervise), until `until` (a
        time.monotonic() value): None when the container's init still runs then."""
        if self.init_pid is None:
            raise OSError(_errno.ESRCH, "nothing was started")
        target = self.init_pid
        code = process.wait_until(target, until)
        return None if code is None else self._waited(target, code)

    def take_back_monitor(self) -> dict[str, Any] | None:
        """What the violation monitor holds, handed back (see nucleus.app.keeper) and the
        monitor reaped: what a monitor started later (nucleus.effects.monitor.main) is given,
        its descriptors by number. None when it did not hand it back: it goes on as before (not
        ready in time, or still running after a hand-back that failed: never killed while it may
        serve), or (`monitor` None then) it ended without handing back anything usable."""
        from nucleus.effects import monitor
        from nucleus.plain import to_plain

        pid = self.monitor
        if pid is None or self.monitor_ctl is None:
            return None
        try:
            held = monitor.take_back(self.monitor_ctl)
        except ConnectionError as e:
            held = None
            # Never killed while it may still serve: one that has not ended goes on as before.
            if _ended_within(pid, REAP_WAIT):
                self.monitor = None
                self.warn(f"{e}: refusals are no longer recorded")
        if held is None:
            self.monitor_ctl.close()  # shut down: a monitor still running goes on, asked no more
            self.monitor_ctl = None
            return None
        _end_within(pid, REAP_WAIT)  # it ends once it has handed back
        self.monitor = None
        self.monitor_ctl.close()
        self.monitor_ctl = None
        sha = str(held.saved.get("sha", ""))
        return {"context": to_plain(self.monitor_setup.context), "stream": self.stream,
                "program": self.setup.programs.get(sha, b"").hex(), "listener": held.listener,
                "audit": held.audit, "copy": held.copy, "ids": monitor.identities(held.listener, held.audit, held.copy),
                "saved": held.saved}

    def give_back_monitor(self, held: dict[str, Any]) -> None:
        """What `take_back_monitor` handed back served by a monitor again, when the keeper could
        not take it: forked as the first one was, and ended as it is."""
        from nucleus.effects import monitor

        pid = os.fork()
        if pid == 0:
            monitor.serve_again(held)  # never returns
        self.monitor = pid
        process.close(*(held[key] for key in ("listener", "audit", "copy") if held[key] is not None))

    def finish_kept_monitor(self, monitor_file: int) -> None:
        """After the keeper (nucleus.app.keeper): the audit records still on their way once the
        container has ended, written by one last monitor (forked, given REAP_WAIT seconds, and
        killed should it take twice as long), as the supervisor's own monitor writes them
        before it ends. Nothing to wait for without an audit reader."""
        import json
        import time

        from nucleus.effects import monitor

        if monitor_file < 0 or monitor.kept(json.loads(process.read_memory_file(monitor_file)))["audit"] is None:
            return
        deadline = time.monotonic() + REAP_WAIT
        pid = os.fork()
        if pid == 0:
            monitor.main([str(monitor_file)], deadline)  # never returns
        _end_within(pid, 2 * REAP_WAIT)

    def _waited(self, target: int, code: int) -> int:
        self.init_pid = None
        if self.pid == target:
            self.pid = None
        self._finish_tracer()
        self._finish_monitor()
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
HANGUP_WAIT = 0.5  # seconds a joined command's monitor is given to end: the hang-up, the last audit records


def _end_within(pid: int, wait: float) -> None:
    """Reap child `pid`, killed if it has not ended within `wait` seconds; one reaped already is
    left alone, never signalled (its pid may be another process's by now)."""
    if not _ended_within(pid, wait):
        process.kill(pid)
        process.reap(pid)


def _ended_within(pid: int, wait: float) -> bool:
    """Whether child `pid` has ended within `wait` seconds (reaped then, or reaped already)."""
    if process.poll_exit(pid, gone=0) is not None:
        return True  # ended (reaped now), or reaped already
    # Still our unreaped child, so its pid cannot have been reused: pin it and wait.
    import select

    pinned = os.pidfd_open(pid)
    try:
        ended = bool(select.select([pinned], [], [], wait)[0])
    finally:
        os.close(pinned)
    if ended:
        process.reap(pid)
    return ended


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
