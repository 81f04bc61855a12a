"""`nucleus run`: compose the spec, the host facts, the machines, the driver and the executor.

Order: validate (pure) -> gather host facts and check them (still nothing changed) -> plan ->
drive the System machine through setup -> start -> wait -> cleanup. Any failure or interruption
after the setup process exists ends in Cleanup, which leaves nothing on the host.
"""

from __future__ import annotations

import hashlib
import os
import signal
import stat
from dataclasses import dataclass

from nucleus import vocab as v
from nucleus.config.container import ContainerConfig
from nucleus.errors import InvalidInput, RuntimeFailure

SUBUID_BASE = 100000
SUBUID_COUNT = 65536


@dataclass(frozen=True)
class HostFacts:
    euid: int
    egid: int
    state_root: str
    system: tuple[tuple[str, str], ...]
    store_paths: tuple[str, ...] = ()


def state_root(euid: int) -> str:
    override = os.environ.get("NUCLEUS_STATE_DIR")
    if override:
        return override
    if euid == 0:
        return "/run/nucleus"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(runtime, "nucleus") if runtime else f"/tmp/nucleus-{euid}"


def gather_facts(rootfs: str | None = None) -> HostFacts:
    """Which system directories exist (on the host, or in the --rootfs closure)."""
    from nucleus.config.rootfs import ROOTFS_DIRS, STORE_PATHS_FILE, SYSTEM_DIRS

    system = []
    for path in ROOTFS_DIRS if rootfs else SYSTEM_DIRS:
        try:
            st = os.lstat(f"{rootfs}{path}" if rootfs else path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            system.append((path, os.readlink(f"{rootfs}{path}" if rootfs else path)))
        elif stat.S_ISDIR(st.st_mode):
            system.append((path, ""))
    store_paths: tuple[str, ...] = ()
    if rootfs:
        try:
            with open(os.path.join(rootfs, STORE_PATHS_FILE)) as f:
                store_paths = tuple(sorted({line.strip() for line in f if line.strip()}))
        except FileNotFoundError:
            pass
        for store_path in store_paths:
            if not store_path.startswith("/nix/store/") or ".." in store_path.split("/") or not os.path.isdir(store_path):
                raise InvalidInput(f"--rootfs {rootfs!r}: {STORE_PATHS_FILE} names {store_path!r}, "
                                   "which is not a directory under /nix/store")
    euid = os.geteuid()
    return HostFacts(euid, os.getegid(), state_root(euid), tuple(system), store_paths)


def _existing_dir(flag: str, value: str | None, hint: str) -> str | None:
    """A directory named by a flag must exist; returns its absolute real path."""
    if value is None:
        return None
    path = os.path.realpath(value)
    if not os.path.exists(path):
        raise InvalidInput(f"{flag} {value!r}: no such directory", hint=hint)
    if not os.path.isdir(path):
        raise InvalidInput(f"{flag} {value!r}: not a directory")
    return path


def check_rootfs(spec: ContainerConfig) -> str | None:
    return _existing_dir("--rootfs", spec.rootfs,
                         "build one with the flake's lib.mkRootfs, or point at an unpacked tree")


def check_context(spec: ContainerConfig) -> str | None:
    return _existing_dir("--context", spec.context, "pass an existing directory to populate /context from")


def check_trace(path: str | None) -> None:
    """The trace is written when the run ends: where it goes must be writable now."""
    if path is None:
        return
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InvalidInput(f"--trace {path!r}: no such directory {parent!r}",
                           hint="create the directory first, or write the trace elsewhere")
    if os.path.isdir(path):
        raise InvalidInput(f"--trace {path!r}: is a directory", hint="name a file to write the trace to")
    if not os.access(parent, os.W_OK):
        raise InvalidInput(f"--trace {path!r}: directory {parent!r} is not writable")


def _compile_policy(profile: dict, path: str | None) -> bytes:
    from nucleus.effects import seccomp

    try:
        return seccomp.cached_program(profile)
    except ValueError as e:
        raise InvalidInput(f"--seccomp-profile {path!r}: {e}") from e


def _context_manifest(spec: ContainerConfig) -> tuple[tuple[str, str], ...] | None:
    """--verify-context-integrity: hash the source context now; the copy is checked against it."""
    if not (spec.verify_context_integrity and spec.context and spec.context_mode == "copy"):
        return None
    from nucleus.config.context import exclusion_list
    from nucleus.effects import integrity

    return tuple(sorted(integrity.manifest(spec.context, exclusion_list()).items()))


def check_host(spec: ContainerConfig) -> None:
    """What the service mode needs from this host (Landlock ABI, cgroups, lockdown, ...), checked
    before anything is changed; a missing feature exits 3."""
    from nucleus.config import modes

    if spec.service_mode == "agent" and spec.require_kernel_lockdown is None and spec.trust_level == "trusted":
        return  # agent mode degrades (or fails at the step) instead: no probing on the hot path
    from nucleus.effects import cgroups, hostcheck

    host = cgroups.detect()
    req = modes.from_container_spec(spec)
    modes.validate_host(req, hostcheck.run_facts(req, host.backend, host.reason))


def _program(cache_dir: str | None = None) -> bytes:
    from nucleus.config.seccomp_default import default_profile
    from nucleus.effects import seccomp

    return seccomp.cached_program(default_profile(networked=False), cache_dir)


def build(spec: ContainerConfig, facts: HostFacts, context: str | None, cid: str = ""):
    """The System machine's initial state and the setup process's payload."""
    from dataclasses import replace

    from nucleus.config import landlock_default, modes
    from nucleus.config.rootfs import HostLayout, plan
    from nucleus.effects.inside import Inside, Workload
    from nucleus.machines import filesystem, isolation, resources, security, system

    rootless = spec.rootless or facts.euid != 0
    if rootless:
        uid_map: tuple[tuple[int, int, int], ...] = ((0, facts.euid, 1),)
        gid_map: tuple[tuple[int, int, int], ...] = ((0, facts.egid, 1),)
        owner = (0, 0)
    else:
        uid_map = gid_map = ((0, SUBUID_BASE, SUBUID_COUNT),)
        owner = (SUBUID_BASE, SUBUID_BASE)
    namespaces = ("pid", "mount", "net", "uts", "ipc") + (("cgroup",) if spec.cgroup_namespace else ()) + (
        ("time",) if spec.time_namespace else ())
    hostname = spec.hostname or spec.name or "nucleus"
    rootfs_dir = os.path.join(facts.state_root, "rootfs")
    if context is not None:
        spec = replace(spec, context=context)
    pol = spec.loaded_policies
    layout = HostLayout(system=facts.system, rootfs_dir=rootfs_dir, owner=owner,
                        hidepid=modes.proc_hidepid(spec.service_mode),
                        rootfs=os.path.realpath(spec.rootfs) if spec.rootfs else None,
                        store_paths=facts.store_paths, context_manifest=_context_manifest(spec))
    if pol is not None and pol.seccomp is not None:
        program = _compile_policy(pol.seccomp, pol.seccomp_path)
    else:
        program = _program()
    sha = hashlib.sha256(program).hexdigest()
    if pol is not None and pol.landlock is not None:
        rules = tuple((path, tuple(sorted(access))) for path, access in pol.landlock.restrict_rules())
        min_abi = max(modes.min_landlock_abi(spec.service_mode, spec.allow_degraded_security), pol.landlock.min_abi)
    else:
        rules = tuple((path, tuple(sorted(access))) for path, access in landlock_default.default_rules(
            spec.home, writable_context=spec.context is not None and spec.context_mode == "copy"))
        min_abi = modes.min_landlock_abi(spec.service_mode, spec.allow_degraded_security)
    keep = ()
    if pol is not None and pol.caps is not None:
        keep = tuple(pol.caps.names("bounding"))
    log_denied = spec.seccomp_log_denied
    if pol is not None and pol.seccomp is not None:
        from nucleus.config.policies import logs_denied

        log_denied = log_denied or logs_denied(pol.seccomp)
    state = system.initial(
        isolation.initial(rootless=rootless, namespaces=namespaces, hostname=hostname,
                          uid_map=uid_map, gid_map=gid_map),
        filesystem.initial(plan(spec, layout, hostname), rootfs_dir, spec.allow_chroot_fallback,
                           audit=tuple((r.path, tuple(r.flags), r.required) for r in modes.mount_audit(spec.service_mode))),
        security.initial(spec.allow_degraded_security, strict=spec.service_mode != "agent",
                         program_sha256=sha, landlock_rules=rules,
                         log_denied=log_denied, landlock_min_abi=min_abi, keep_caps=keep),
        resources.initial(required=modes.cgroups_required(spec.service_mode), name=cid,
                          parent=spec.limits.cgroup_parent, limits=spec.limits),
    )
    payload = Inside(
        req_fd=-1, resp_fd=-1,
        workload=Workload(spec.argv, spec.environment(), spec.effective_workdir,
                          (spec.limits.nofile, spec.limits.nproc, spec.limits.memlock)),
        programs={sha: program},
    )
    return state, payload, rootfs_dir


def _failure(history) -> str:
    for event, _ in reversed(history):
        if isinstance(event, (v.IsoFailed, v.FsFailed, v.SecFailed, v.ResFailed)):
            return f"setup failed at {event.machine}.{event.step}: {event.message}"
    return "setup failed"


class StateRecorder:
    """Keeps the container's record in the state directory in step with its lifecycle: written
    whenever the lifecycle status changes, with the whole System abstraction so that another
    process (ps, stop, rm --force) can rebuild the machine."""

    def __init__(self, store, record: dict, executor, inner=None) -> None:
        self.store, self.doc, self.executor, self.inner = store, record, executor, inner
        self.status: tuple[str, bool] | None = None

    def record(self, event, state) -> None:
        from nucleus.machines import system

        if self.inner is not None:
            self.inner.record(event, state)
        # Written when the lifecycle changes status or a cgroup comes to be held or released: a
        # later rm --force rebuilds the machine from this (and sweeps for a cgroup created just
        # before a crash).
        key = (state.lc.status, state.res.held, state.lc.cleaned)
        if key == self.status:
            return
        self.status = key
        import time

        fields = {
            "status": state.lc.status, "security": state.lc.security,
            "machines": _plain_tla(system.to_tla(state)),
        }
        ex = self.executor
        if ex.init_pid is not None:
            from nucleus.effects.store import process_start

            fields["init_pid"] = ex.init_pid
            fields["init_start"] = process_start(ex.init_pid)
        if ex.cgroup is not None:
            fields["cgroup"] = {"backend": ex.cgroup.backend, "dirs": dict(ex.cgroup.dirs)}
        if state.lc.status == "running":
            fields["started_at"] = time.time()
        if state.lc.status in ("stopped", "failed"):
            fields["finished_at"] = time.time()
            fields["exit_code"] = state.lc.exit_code
        if state.lc.status == "removed":
            self.store.delete(self.doc["id"])
            return
        self.doc.update(fields)
        with self.store.locked():
            self.store.write(self.doc)



def _plain_tla(values: dict) -> dict:
    return {k: sorted(val) if isinstance(val, (set, frozenset)) else val for k, val in values.items()}


def new_id() -> str:
    import secrets

    return secrets.token_hex(16)


def register(store, spec: ContainerConfig, cid: str, log_path: str | None) -> dict:
    """Write the container's first record, refusing a name already taken. Under the store lock,
    so two concurrent runs cannot take the same name."""
    import time

    from nucleus.effects.store import process_start

    name = spec.name or cid[:12]
    record = {
        "id": cid, "name": name, "status": "creating", "argv": list(spec.argv),
        "created_at": time.time(), "creator_uid": os.getuid(), "supervisor_pid": os.getpid(),
        "supervisor_start": process_start(os.getpid()), "detached": spec.detach,
        "log_path": log_path, "hostname": spec.hostname or name, "rootless": spec.rootless or os.geteuid() != 0,
        "limits": {"memory": spec.limits.memory, "cpus": spec.limits.cpus, "pids": spec.limits.pids},
        "cgroup_parent": spec.limits.cgroup_parent,
    }
    with store.locked():
        for other in store.all():
            if other.get("name") == name:
                raise InvalidInput(
                    f"--name {name!r}: a container with this name exists ({other['id'][:12]}, {other.get('status')})",
                    hint=f"pick another name, or remove it first: nucleus rm --force {name}",
                )
        store.write(record)
    return record


def _start_tracer(spec: ContainerConfig, payload) -> int:
    """Trace mode: a tracer process serves the container's seccomp notifications, writing one
    NDJSON line per syscall to --seccomp-log."""
    import socket

    from nucleus.effects import seccomp_notify  # also what PID 1 uses after pivot_root

    tracer_end, traced_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        pid = seccomp_notify.spawn_tracer(tracer_end, spec.seccomp_log)
    except OSError as e:
        traced_end.close()
        raise InvalidInput(f"--seccomp-log {spec.seccomp_log!r}: {e.strerror or e}") from e
    finally:
        tracer_end.close()
    payload.trace_fd = traced_end.detach()
    return pid


def _finish_tracer(pid: int, log: str | None, quiet: bool = False) -> None:
    """The tracer ends once every traced process is gone (after PID 1 was reaped)."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        status = 0
    if quiet:
        return
    from nucleus.config import seccomp_generate

    try:
        with open(log, "rb") as f:  # type: ignore[arg-type]
            complete = seccomp_generate.summary(f.read()) is not None
    except OSError:
        complete = False
    if status != 0 or not complete:
        import sys

        sys.stderr.write(f"warning: the seccomp trace in {log!r} is incomplete\n")


def run(spec: ContainerConfig, trace_path: str | None = None) -> int:
    """Run in the foreground (or, with spec.detach, hand the container to a background
    supervisor once it has started and return 0)."""
    context = check_context(spec)
    check_trace(trace_path)
    check_host(spec)
    rootfs = check_rootfs(spec)
    facts = gather_facts(rootfs)
    from nucleus.effects.store import Store

    store = Store(facts.state_root)
    cid = new_id()
    if not spec.detach:
        return _supervise(spec, facts, context, store, cid, trace_path, ready_fd=None, log_path=None)

    store.ensure()
    log_path = store.log_path(cid)
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the supervisor: a session of its own, output to the container's log
        code = 125
        try:
            os.close(r)
            os.setsid()
            null = os.open("/dev/null", os.O_RDONLY)
            log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            os.dup2(null, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(null)
            os.close(log)
            code = _supervise(spec, facts, context, store, cid, trace_path, ready_fd=w, log_path=log_path)
        except BaseException as e:  # noqa: BLE001 - report to the waiting CLI, never unwind
            message = e.render() if hasattr(e, "render") else f"error: {type(e).__name__}: {e}"
            try:
                os.write(w, f"fail {getattr(e, 'exit_code', 1)} {message}".encode())
            except OSError:
                pass
            code = getattr(e, "exit_code", 1)
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    answer = b"".join(chunks).decode()
    if answer.startswith("ok "):
        print(answer[3:].strip())
        return 0
    os.waitpid(pid, 0)
    if store.read(cid) is None:  # refused before its record was written: only its log is left
        store.delete(cid)
    code, message = 1, "error: the supervisor exited before the container started"
    if answer.startswith("fail "):
        word, _, message = answer[5:].partition(" ")
        code = int(word)
    if message.startswith("error: "):
        message = message[7:]
    error = RuntimeFailure(message.split("\nhint: ")[0], hint=message.split("\nhint: ")[1] if "\nhint: " in message else None)
    error.exit_code = code
    raise error


def _supervise(spec, facts, context, store, cid, trace_path, ready_fd, log_path) -> int:
    from nucleus.driver import Driver
    from nucleus.effects import inside
    from nucleus.effects.host import HostExecutor, parse_fault
    from nucleus.machines import system

    record = register(store, spec, cid, log_path)
    try:
        state, payload, rootfs_dir = build(spec, facts, context, cid)
        os.makedirs(rootfs_dir, mode=0o700, exist_ok=True)
        # What `nucleus attach` needs to give a joining process the workload's restrictions.
        record.update(env=payload.workload.env, workdir=payload.workload.cwd,
                      rlimits=list(payload.workload.rlimits or ()),
                      landlock_rules=[[p, list(a)] for p, a in state.sec.landlock_rules],
                      seccomp_sha256=state.sec.program_sha256, rootless=state.iso.rootless)
    except BaseException:
        store.delete(cid)
        raise

    trace = None
    if trace_path is not None:
        from nucleus.trace.itf import Recorder

        trace = Recorder(system, "System", trace_path, f"nucleus run {' '.join(spec.argv)}")

    # Signals are taken synchronously (sigwaitinfo) from here on; the setup process inherits
    # the mask, and the workload gets a clean one.
    tracer = None
    if spec.seccomp_mode == "trace":
        tracer = _start_tracer(spec, payload)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, inside.WAITED)
    executor = HostExecutor(payload, parse_fault(os.environ.get("NUCLEUS_FAIL_AT")), limits=spec.limits,
                            pause=parse_fault(os.environ.get("NUCLEUS_PAUSE_AT")))
    removed = False
    try:
        recorder = StateRecorder(store, record, executor, trace)
        driver = Driver(system, state, executor, recorder)
        driver.feed(v.Create())
        driver.settle()
        if driver.state.lc.status != "created":
            driver.settle()
            driver.feed(v.Remove())
            raise RuntimeFailure(_failure(driver.history))
        driver.feed(v.Start())
        if ready_fd is not None:
            os.write(ready_fd, f"ok {cid}\n".encode())
            os.close(ready_fd)
            ready_fd = None
        code = executor.wait()
        if tracer is not None:
            _finish_tracer(tracer, spec.seccomp_log)
            tracer = None
        driver.feed(v.Exit(code))
        driver.settle()  # release the cgroup, then CleanupDone
        if executor.oom_killed:
            record["reason"] = "oom-killed"
        elif code > 128:
            record["reason"] = f"killed by signal {code - 128}"
        if record.get("reason"):
            with store.locked():
                store.write(record)
        if not spec.detach and driver.state.lc.cleaned:
            driver.feed(v.Remove())
        removed = not spec.detach
        return code
    except BaseException:
        removed = True  # a failed or interrupted run leaves no record behind
        raise
    finally:
        if tracer is not None:
            _finish_tracer(tracer, spec.seccomp_log, quiet=True)
        if removed:
            store.delete(cid)
        executor.cleanup()  # idempotent: kills and reaps anything still alive
        if executor.cgroup is not None:  # an interruption before the release: do it now
            try:
                executor.remove_cgroup()
            except OSError as e:
                executor.warn(f"could not remove cgroup {executor.cgroup.path}: {e}")
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        if trace is not None:
            trace.write()
        if ready_fd is not None:
            os.close(ready_fd)
