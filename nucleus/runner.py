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
from nucleus.errors import InvalidInput, RuntimeFailure
from nucleus.spec.container import ContainerSpec

SUBUID_BASE = 100000
SUBUID_COUNT = 65536


@dataclass(frozen=True)
class HostFacts:
    euid: int
    egid: int
    state_root: str
    system: tuple[tuple[str, str], ...]


def state_root(euid: int) -> str:
    override = os.environ.get("NUCLEUS_STATE_DIR")
    if override:
        return override
    if euid == 0:
        return "/run/nucleus"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(runtime, "nucleus") if runtime else f"/tmp/nucleus-{euid}"


def gather_facts() -> HostFacts:
    from nucleus.spec.rootfs import SYSTEM_DIRS

    system = []
    for path in SYSTEM_DIRS:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            system.append((path, os.readlink(path)))
        elif stat.S_ISDIR(st.st_mode):
            system.append((path, ""))
    euid = os.geteuid()
    return HostFacts(euid, os.getegid(), state_root(euid), tuple(system))


def check_context(spec: ContainerSpec) -> str | None:
    """The context must be an existing directory; returns its absolute real path."""
    if spec.context is None:
        return None
    path = os.path.realpath(spec.context)
    if not os.path.exists(path):
        raise InvalidInput(f"--context {spec.context!r}: no such directory",
                           hint="pass an existing directory to populate /context from")
    if not os.path.isdir(path):
        raise InvalidInput(f"--context {spec.context!r}: not a directory")
    return path


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


def _program(cache_dir: str | None = None) -> bytes:
    from nucleus.effects import seccomp
    from nucleus.spec.seccomp_default import default_profile

    return seccomp.cached_program(default_profile(networked=False), cache_dir)


def build(spec: ContainerSpec, facts: HostFacts, context: str | None):
    """The System machine's initial state and the setup process's payload."""
    from dataclasses import replace

    from nucleus.effects.inside import Inside, Workload
    from nucleus.machines import filesystem, isolation, security, system
    from nucleus.spec import landlock_default
    from nucleus.spec.rootfs import HostLayout, plan

    rootless = spec.rootless or facts.euid != 0
    if rootless:
        uid_map: tuple[tuple[int, int, int], ...] = ((0, facts.euid, 1),)
        gid_map: tuple[tuple[int, int, int], ...] = ((0, facts.egid, 1),)
        owner = (0, 0)
    else:
        uid_map = gid_map = ((0, SUBUID_BASE, SUBUID_COUNT),)
        owner = (SUBUID_BASE, SUBUID_BASE)
    namespaces = ("pid", "mount", "net", "uts", "ipc", "cgroup") + (("time",) if spec.time_namespace else ())
    hostname = spec.hostname or spec.name or "nucleus"
    rootfs_dir = os.path.join(facts.state_root, "rootfs")
    if context is not None:
        spec = replace(spec, context=context)
    layout = HostLayout(system=facts.system, rootfs_dir=rootfs_dir, owner=owner)
    program = _program()
    sha = hashlib.sha256(program).hexdigest()
    rules = tuple((path, tuple(sorted(access))) for path, access in landlock_default.default_rules(
        spec.home, writable_context=spec.context is not None and spec.context_mode == "copy"))
    state = system.initial(
        isolation.initial(rootless=rootless, namespaces=namespaces, hostname=hostname,
                          uid_map=uid_map, gid_map=gid_map),
        filesystem.initial(plan(spec, layout, hostname), rootfs_dir, spec.allow_chroot_fallback),
        security.initial(spec.allow_degraded_security, program_sha256=sha, landlock_rules=rules),
    )
    payload = Inside(
        req_fd=-1, resp_fd=-1,
        workload=Workload(spec.argv, spec.environment(), spec.effective_workdir),
        programs={sha: program},
    )
    return state, payload, rootfs_dir


def _failure(history) -> str:
    for event, _ in reversed(history):
        if isinstance(event, (v.IsoFailed, v.FsFailed, v.SecFailed)):
            return f"setup failed at {event.machine}.{event.step}: {event.message}"
    return "setup failed"


def run(spec: ContainerSpec, trace_path: str | None = None) -> int:
    from nucleus.driver import Driver
    from nucleus.effects import inside
    from nucleus.effects.host import HostExecutor, parse_fault
    from nucleus.machines import system

    context = check_context(spec)
    check_trace(trace_path)
    facts = gather_facts()
    state, payload, rootfs_dir = build(spec, facts, context)
    os.makedirs(rootfs_dir, mode=0o700, exist_ok=True)

    recorder = None
    if trace_path is not None:
        from nucleus.itf import Recorder

        recorder = Recorder(system, "System", trace_path, f"nucleus run {' '.join(spec.argv)}")

    # Signals are taken synchronously (sigwaitinfo) from here on; the setup process inherits
    # the mask, and the workload gets a clean one.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, inside.WAITED)
    executor = HostExecutor(payload, parse_fault(os.environ.get("NUCLEUS_FAIL_AT")))
    driver = Driver(system, state, executor, recorder)
    try:
        driver.feed(v.Create())
        driver.settle()
        if driver.state.lc.status != "created":
            driver.feed(v.Remove())
            raise RuntimeFailure(_failure(driver.history))
        driver.feed(v.Start())
        code = executor.wait()
        driver.feed(v.Exit(code))
        driver.feed(v.Remove())
        return code
    finally:
        executor.cleanup()  # idempotent: kills and reaps anything still alive
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        if recorder is not None:
            recorder.write()
