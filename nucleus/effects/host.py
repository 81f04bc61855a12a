"""The supervisor's executor: carries out host-side intents itself and sends the rest to the
container's setup process over the sync pipe."""

from __future__ import annotations

import errno as _errno
import os
import signal
import sys

from nucleus import vocab as v
from nucleus.effects import channel, inside
from nucleus.effects import libc as k


def parse_fault(spec: str | None) -> tuple[str, int] | None:
    """NUCLEUS_FAIL_AT=Intent[#n]: make the nth such intent fail (tests of every failure path);
    NUCLEUS_PAUSE_AT=Intent[#n]: stop the supervisor (SIGSTOP) just before it (crash tests)."""
    if not spec:
        return None
    name, _, nth = spec.partition("#")
    return name, int(nth or "1")


class HostExecutor:
    def __init__(self, setup: inside.Inside, fault: tuple[str, int] | None = None,
                 warn=None, limits=None, pause: tuple[str, int] | None = None) -> None:
        self.setup = setup
        self.fault = fault
        self.pause = pause
        self.limits = limits
        self.cgroup = None  # the container's cgroup handle, once created
        self.oom_killed = False
        self.warn = warn or (lambda message: sys.stderr.write(f"warning: {message}\n"))
        self.counts: dict[str, int] = {}
        self.pid: int | None = None  # the process serving the sync pipe (then PID 1)
        self.init_pid: int | None = None
        self.req_w: int | None = None
        self.resp_r: int | None = None

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
                events.append(v.failed(intent, _errno.EIO, f"injected failure of {intent.name} #{n}"))
                return events
            events.extend(self._local(intent))
            if _failed(events):
                return events
        if batch:
            events.extend(self._remote(tuple(batch)))
        return events

    def _local(self, intent: v.Intent) -> list[v.Event]:
        try:
            match intent:
                case v.SpawnChild():
                    self.spawn()
                case v.WriteIdMaps():
                    self.write_id_maps(intent)
                case v.Warn(message=message):
                    self.warn(message)
                case v.SendSignal(signal=name):
                    self.send_signal(name)
                case v.Cleanup():
                    self.cleanup()
                case v.CreateCgroup(parent=parent, cgroup=name):
                    self.create_cgroup(parent, name)
                case v.SetCgroupLimits():
                    from nucleus.effects import cgroups

                    cgroups.set_limits(self.cgroup, self.limits)
                case v.AttachCgroup():
                    from nucleus.effects import cgroups

                    cgroups.attach(self.cgroup, self.pid)
                case v.RemoveCgroup():
                    self.remove_cgroup()
                case _:
                    raise ValueError(f"no host effect for {intent.name}")
        except OSError as e:
            return [v.failed(intent, e.errno or 0, str(e))]
        done = v.done(intent)
        return [done] if done is not None else []

    def _remote(self, intents: tuple[v.Intent, ...]) -> list[v.Event]:
        if self.req_w is None or self.resp_r is None:
            return [v.failed(intents[0], _errno.ESRCH, "no setup process")]
        try:
            channel.send_intents(self.req_w, intents)
            events = channel.receive_events(self.resp_r)
        except (channel.ChannelClosed, OSError) as e:
            return [v.failed(intents[0], getattr(e, "errno", None) or _errno.EPIPE,
                             f"the setup process went away during {intents[0].name}: {e}")]
        for event in events:
            if isinstance(event, v.IsoDone) and event.step == "fork_init":
                # The intermediate process exits once it has answered; reap it.
                intermediate, self.pid = self.pid, int(event.detail)
                self.init_pid = self.pid
                if intermediate is not None:
                    _reap(intermediate)
        return events

    # -- host effects -----------------------------------------------------------------------------
    def spawn(self) -> None:
        k.prctl(k.PR_SET_CHILD_SUBREAPER, 1)
        req_r, req_w = os.pipe2(os.O_CLOEXEC)
        resp_r, resp_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            os.close(req_w)
            os.close(resp_r)
            self.setup.req_fd, self.setup.resp_fd = req_r, resp_w
            inside.serve(self.setup)  # never returns
        os.close(req_r)
        os.close(resp_w)
        if self.setup.trace_fd is not None:  # only the container keeps its end
            os.close(self.setup.trace_fd)
        self.pid, self.req_w, self.resp_r = pid, req_w, resp_r

    def create_cgroup(self, parent: str, name: str) -> None:
        from nucleus.effects import cgroups

        host = cgroups.detect()
        if host.backend == "none":
            raise OSError(_errno.ENOTSUP, f"no usable cgroup hierarchy: {host.reason}")
        self.cgroup_host, self.cgroup_parent = host, parent
        try:
            self.cgroup = cgroups.create(host, parent, name)
        except OSError:
            # Creation is all or nothing: undo the directories made before the failure.
            partial = cgroups.find_existing(host, parent, name)
            if partial is not None:
                cgroups.remove(partial)
            cgroups.remove_parent(host, parent)
            raise

    def remove_cgroup(self) -> None:
        """Kill whatever is left in the cgroup, note an OOM kill, then remove it."""
        from nucleus.effects import cgroups

        if self.cgroup is None:
            return
        try:
            self.oom_killed = self.oom_killed or cgroups.oom_killed(self.cgroup)
        except OSError:
            pass
        cgroups.kill_all(self.cgroup)
        cgroups.remove(self.cgroup)
        self.cgroup = None
        cgroups.remove_parent(self.cgroup_host, self.cgroup_parent)  # only where now empty

    def write_id_maps(self, op: v.WriteIdMaps) -> None:
        assert self.pid is not None
        base = f"/proc/{self.pid}"
        try:
            _write(f"{base}/setgroups", "deny")
        except FileNotFoundError:
            pass
        _write(f"{base}/uid_map", "".join(f"{a} {b} {c}\n" for a, b, c in op.uid_map))
        _write(f"{base}/gid_map", "".join(f"{a} {b} {c}\n" for a, b, c in op.gid_map))

    def send_signal(self, name: str) -> None:
        if self.init_pid is not None:
            try:
                os.kill(self.init_pid, getattr(signal, f"SIG{name}"))
            except ProcessLookupError:  # it ended meanwhile; its supervisor records the exit
                pass

    def cleanup(self) -> None:
        """End every process of the container (PID 1 takes its namespace down with it) and
        close the pipe. Mounts need no unmounting: they die with the mount namespace."""
        for pid in {self.pid, self.init_pid} - {None}:
            try:
                os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
            except ProcessLookupError:
                pass
            _reap(pid)  # type: ignore[arg-type]
        self.pid = self.init_pid = None
        for fd in (self.req_w, self.resp_r):
            if fd is not None:
                os.close(fd)
        self.req_w = self.resp_r = None

    def wait(self) -> int:
        """Wait for PID 1 while forwarding signals; return the workload's exit status."""
        assert self.init_pid is not None
        target = self.init_pid
        code = inside.wait_forwarding(target)
        self.init_pid = None
        if self.pid == target:
            self.pid = None
        return code


def _failed(events: list[v.Event]) -> bool:
    return bool(events) and isinstance(events[-1], (v.IsoFailed, v.FsFailed, v.SecFailed, v.ResFailed))


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    except OSError as e:
        raise OSError(e.errno, f"write {text.strip()!r} to {path}: {e.strerror}") from e
    finally:
        os.close(fd)
