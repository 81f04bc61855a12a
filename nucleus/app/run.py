"""`nucleus run`: compose the configuration, the host facts, the plan, the machines, the driver
and the executor.

Validate, then act: the configuration was validated by the caller; here the host is probed and
checked, the policies prepared (a seccomp profile that does not compile is refused here) and the
run planned, all before the first change on the host. Then the container's record is written
(refusing a name in use), the supervisor detaches if asked, and the System machine is driven
through setup, start, exit and cleanup. Every step that touches the host is an intent of a
machine; an interruption or a bug feeds Lost, and the machine decides the cleanup.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from nucleus import vocab as v
from nucleus.app import audit as app_audit
from nucleus.app import outputs, records
from nucleus.app import violations as app_violations
from nucleus.app.policyfiles import Policies
from nucleus.config import context as context_rules
from nucleus.config import mode_host, modes
from nucleus.config.container import CONTEXT_MOUNT, ContainerConfig
from nucleus.config.context import ContextSource, Resolved
from nucleus.config.volumes import VolumeSource
from nucleus.driver import Driver
from nucleus.effects import prepare, probe
from nucleus.effects.executor import Executor, parse_fault
from nucleus.effects.process import blocked, detach
from nucleus.effects.store import Store
from nucleus.errors import InvalidInput, NucleusError, RuntimeFailure, error_from_data
from nucleus.machines import lifecycle, resources, system
from nucleus.plain import to_plain
from nucleus.plan import promises
from nucleus.plan import run as run_plan

TYPE_CHECKING = False
if TYPE_CHECKING:
    from nucleus.effects.service import Relay

Report = Callable[[dict[str, Any]], None]


def modes_need_host(config: ContainerConfig) -> bool:
    """Plain agent mode degrades (or fails at the step) instead of probing up front: no
    probing on the hot path."""
    return not (config.service_mode == modes.AGENT and config.require_kernel_lockdown is None
                and config.trust_level == modes.TRUSTED)


def prepare_artifacts(config: ContainerConfig, context: tuple[Resolved, int] | None = None,
                      caller: int | None = None, snapshot: prepare.Manifest | None = None
                      ) -> tuple[run_plan.Artifacts, dict[str, bytes]]:
    """Compile (or take from the cache) the seccomp program, derive what the policy files
    choose, and open and measure the context (`context`: what the probe resolved, and its
    descriptor) for the caller's uid: everything here may refuse the run."""
    from nucleus.config.seccomp_default import default_profile

    pol: Policies = config.loaded_policies or Policies()
    _, token = prepare.architecture()
    programs: dict[str, bytes] = {}
    sha = ""
    if pol.seccomp is not None:
        sha, program = prepare.program(pol.seccomp, "--seccomp-profile", pol.seccomp_path)
        programs[sha] = program
    elif config.seccomp_mode == "enforce":
        action = modes.seccomp_default_action(config.service_mode, config.seccomp_default_action)
        # With a network (a bridge, the host's) the workload may read its links and routes
        # (NETLINK_ROUTE; changing them needs a capability it does not hold).
        sha, program = prepare.program(default_profile(networked=config.network != "none", arch=token,
                                                       default_action=action,
                                                       jit=modes.seccomp_jit(config.service_mode)))
        programs[sha] = program
    log_denied = config.seccomp_log_denied
    if pol.seccomp is not None:
        from nucleus.config.policy.seccomp_profile import logs_denied

        log_denied = log_denied or logs_denied(pol.seccomp)
    rules = None
    min_abi = 0
    if pol.landlock is not None:
        rules = tuple((path, tuple(sorted(access))) for path, access in pol.landlock.restrict_rules())
        min_abi = pol.landlock.min_abi
    manifest = source = None
    if context is not None:
        source, manifest = _prepare_context(config, *context, probe.own_uid() if caller is None else caller,
                                            snapshot)
    artifacts = run_plan.Artifacts(
        seccomp_sha256=sha, seccomp_log_denied=log_denied,
        caps_keep=tuple(pol.caps.names("bounding")) if pol.caps is not None else (),
        landlock_rules=rules, landlock_min_abi=min_abi, context_manifest=manifest, context=source)
    return artifacts, programs


CONTEXT_HINT = "pass an existing directory to populate /context from"


def _prepare_context(config: ContainerConfig, resolved: Resolved, path_fd: int, caller: int,
                     snapshot: prepare.Manifest | None = None
                     ) -> tuple[ContextSource, tuple[tuple[str, str], ...] | None]:
    """Refuse what is no context (nucleus.config.context); a bound one keeps the descriptor the
    probe opened. A copied one is opened for reading as the user it is read as, walked as the
    copy will walk it (refused if it would not fit --context-size, or needs an identity a
    --rootless run as root cannot take), and what the secret rules leave out is named."""
    problem = context_rules.refusal(resolved, caller)
    if problem is not None:
        prepare.close_context(path_fd)
        raise problem
    if config.context_mode != "copy":
        return ContextSource(resolved.path, path_fd), None
    read_as = context_rules.reader(resolved, caller)
    fd = prepare.open_context(resolved.given, path_fd, read_as)
    ignore = prepare.ignore_patterns(resolved.given, fd, read_as)
    include = (prepare.compile_patterns(list(config.context_include), "--context-include pattern {number}")
               if config.context_include else ())
    matcher = context_rules.Matcher(context_rules.exclusion_list(), ignore, include)
    measured, manifest = prepare.measure_context(resolved.given, fd, matcher, read_as,
                                                 config.verify_context_integrity, snapshot)
    rootless_root = caller == 0 and config.rootless
    for problem in (context_rules.size_refusal(resolved.given, measured,
                                               config.context_size or context_rules.DEFAULT_CONTEXT_SIZE),
                    context_rules.rootless_refusal(resolved.given, read_as, measured) if rootless_root else None):
        if problem is not None:
            prepare.close_context(fd)
            raise problem
    for path in config.allow_exec:
        rel = path[len(CONTEXT_MOUNT):].strip("/")
        if path.startswith(CONTEXT_MOUNT + "/") and (why := prepare.directory_below(fd, rel)) is not None:
            prepare.close_context(fd)
            raise InvalidInput(f"--allow-exec {path!r}: in the context {resolved.given!r}, {why}",
                               hint="name a directory the context has, or /context itself")
    notes = context_rules.left_out_lines(measured) if config.show_excluded else [
        note for note in (context_rules.left_out_note(measured),) if note is not None]
    for note in notes:
        sys.stderr.write(f"note: {note}\n")
    return ContextSource(resolved.path, fd, -1 if rootless_root else read_as, measured.identities,
                         ignore, include), manifest


def run(config: ContainerConfig, trace_path: str | None = None,
        environ: dict[str, str] | None = None, gate: Callable[[int], None] | None = None) -> int:
    """Run in the foreground (or, with config.detach, hand the container to a background
    supervisor once it has started, print its id and return 0). `gate`, when given, is called
    with the init's pid once the container is created, and returns when it is to start (an
    error it raises ends the container instead: `nucleus oci`'s create and start)."""
    environ = environ or {}
    if config.service is not None and config.service.readiness.workload:
        config = notify_socket_inside(config, environ)
    context = None if config.context is None else probe.context(config.context, CONTEXT_HINT)
    probe.writable_file("--trace", trace_path)
    probe.directory("--rootfs", config.rootfs,
                    "build one with the flake's lib.mkRootfs, or point at an unpacked tree")
    facts = probe.for_run(config, modes_need=modes_need_host(config))
    if modes_need_host(config):
        mode_host.validate_host(modes.from_container_spec(config), facts)
    if config.verify_rootfs_attestation and facts.rootfs_realpath is not None:
        prepare.rootfs_attested(facts.rootfs_realpath, facts.store_paths)
    config = run_plan.with_context(config, None if context is None else context[0].path)
    let_out = outputs.before_run(config, facts)
    artifacts, programs = prepare_artifacts(config, context, facts.euid, let_out.before)
    artifacts = replace(artifacts, volumes=let_out.volumes)
    init_image = prepare.compiled_init(modes.compiled_init_required(config.service_mode), environ)
    secrets = prepare.secret_sources(config.secrets, probe.own_uid())
    cid = records.new_id()
    otlp_url = app_audit.check(config, environ)

    copy = app_violations.open_copy(config)  # --violations FILE: refused before any change
    audit_log = app_audit.open_log(config)  # --audit-log FILE, likewise
    store = Store(facts.state_root)
    relay = None
    try:
        store.ensure()
        relay = open_relay(config, store, cid)
        if relay is not None:
            artifacts = replace(artifacts, volumes=(*artifacts.volumes, relay_volume(relay)))
        planned = run_plan.plan(config, facts, artifacts, cid)
        record = records.register(store, config, cid, planned, rootless=planned.join.rootless,
                                  creator=probe.own_uid(), supervisor=probe.own_pid())
    except BaseException:
        copy.discard()
        if audit_log is not None:
            audit_log.discard()
        if relay is not None:
            relay.close()
        raise
    auditor = app_audit.recorder(config, record, otlp_url, environ, audit_log)
    trace = None
    if trace_path is not None:
        from nucleus.trace.record import Recorder  # --trace only

        inputs = run_plan.RunInputs(replace(config, loaded_policies=None), facts, artifacts, cid)
        trace = Recorder(system, "System", trace_path, f"nucleus run {' '.join(config.argv)}",
                         to_plain(inputs))
    faults = (parse_fault(environ.get("NUCLEUS_FAIL_AT")), parse_fault(environ.get("NUCLEUS_PAUSE_AT")))

    monitor = app_violations.monitor_setup(config, record, planned, copy)

    def audited(inner: Any) -> Any:
        """The run's recorder: the audit log's in front of `inner` (the trace's, or none)."""
        return inner if auditor is None else auditor.over(inner)

    def supervise(report: Report | None) -> int:
        try:
            return supervise_runs(report)
        finally:
            if auditor is not None:
                auditor.close()
            if relay is not None:
                relay.close()

    def supervise_runs(report: Report | None) -> int:
        if config.service is None or not config.service.supervised:
            return _supervise(config, planned, store, record, programs, audited(trace), faults, report,
                              (let_out, artifacts.context), monitor=monitor, init_image=init_image,
                              secrets=secrets, gate=gate)
        from nucleus.app.service import Supervisor

        service = Supervisor(config.service, store, record, environ, relay, auditor)
        image, recorder, sources = init_image, trace, secrets
        counts: dict[str, int] = {}  # NUCLEUS_FAIL_AT=Intent#n counts across the restarts
        while True:
            try:
                code = _supervise(config, planned, store, record, programs, audited(recorder), faults, report,
                                  (let_out, artifacts.context), monitor=monitor, init_image=image,
                                  service=service, secrets=sources, counts=counts)
            except NucleusError as e:
                if service.state.restarts:
                    e.message = f"restart {service.state.restarts} of the service: {e.message}"
                    if config.detach:  # its log says it: nobody waits for its report any more
                        sys.stderr.write(f"nucleus: {e.message}\n")
                raise
            if not service.again or not service.backoff():
                return code
            service.fresh_record()
            # A fresh setup: the compiled init again (each run's init takes its own copy); the
            # trace records the first run only.
            image, recorder = prepare.compiled_init(modes.compiled_init_required(config.service_mode), environ), None
            sources = prepare.secret_sources(config.secrets, probe.own_uid())  # read again for it

    if not config.detach:
        return supervise(None)

    def background(report: Report) -> int:
        records.adopt(record, probe.own_pid())
        return reported(report, supervise)

    answer = detach(store.log_sink(cid, config.log_max_size, config.log_max_files), background)
    prepare.close_secrets(secrets)  # the background supervisor has its own descriptors
    if relay is not None:
        relay.close(remove=False)  # ... and the relay, whose file it removes
    if answer is not None and "ok" in answer:
        print(answer["ok"])
        return 0
    left = store.read(cid) is not None
    if not left:
        store.delete(cid)  # the supervisor removed the container: its log goes too
    if answer is None:
        raise RuntimeFailure("the supervisor exited before the container started",
                             hint=f"nucleus rm --force {record['name']} reclaims what it left" if left else None)
    raise error_from_data(answer["error"])


def reported(report: Report, supervise: Callable[[Report], int]) -> int:
    """A detached supervisor's run: its status, or its failure reported to the command waiting
    for its start (never unwound past the background process)."""
    try:
        return supervise(report)
    except NucleusError as e:
        report({"error": e.to_data()})
        return e.exit_code
    except BaseException as e:  # noqa: BLE001 - reported to the waiting command, never unwound
        report({"error": {"kind": "RuntimeFailure", "message": f"internal error: {type(e).__name__}: {e}",
                          "hint": "run again with --debug for the traceback, and report it",
                          "exit_code": 1}})
        return 1


def _supervise(config: ContainerConfig, planned: run_plan.RunPlan, store: Store, record: dict[str, Any],
               programs: dict[str, bytes], trace: Any,
               faults: tuple[tuple[str, int] | None, tuple[str, int] | None], report: Report | None,
               let_out: tuple[outputs.Outputs, ContextSource | None] | None = None,
               monitor: Any = None, init_image: int | None = None, service: Any = None,
               secrets: list[prepare.SecretSource] | None = None, counts: dict[str, int] | None = None,
               gate: Callable[[int], None] | None = None) -> int:
    out, context = let_out or (outputs.Outputs(), None)
    executor = Executor(programs, fault=faults[0], pause=faults[1],
                        keeps_trees=run_plan.keeps_context(config, planned.join.rootless), monitor=monitor,
                        netlink=planned.network.mode in ("bridge", "user"), init_image=init_image, secrets=secrets)
    if counts is not None:
        executor.counts = counts
    tree: int | None = None
    trouble: NucleusError | None = None
    recorder = records.StateRecorder(store, record, lambda: executor.init_pid, trace)
    driver = Driver(system, planned.state, executor, recorder)
    try:
        with blocked():  # signals are taken synchronously from here on; the workload gets a clean mask
            driver.require(v.Create())
            driver.settle()
            if driver.state.lc.status != "created":
                driver.require(v.Remove())
                raise RuntimeFailure(setup_failure(driver.history, driver.state.res.oom_killed))
            tree = executor.take_tree()
            if gate is not None:
                gate(executor.init_pid or 0)
            keep_promises(driver, executor.shown)
            driver.require(v.Start())
            never_ran = _never_ran(driver)
            if never_ran is None:
                if report is not None:
                    report({"ok": record["id"]})
                started = time.monotonic()
                code = wait_or_hand_over(config, planned, executor, driver, trace, store, record["id"],
                                         service, gate=gate, tree=tree, injected=faults != (None, None))
                ran_for = time.monotonic() - started
                app_violations.explain_death(store, record["id"], code)
                trouble = outputs.after_workload(config, out, tree, context, store, record["id"],
                                                 planned.join.rootless)
                tree = None
                driver.require(v.Exit(code))
            else:
                code = never_ran.code
            driver.settle()  # release the cgroup, then CleanupDone
            if service is not None and service.ended(code, 0.0 if never_ran is not None else ran_for):
                return code  # set up again, with the same record
            if never_ran is not None and config.detach:
                # No id was printed: the run failed, and the container goes with it.
                driver.require(v.Remove())
                raise _not_started(never_ran)
            if never_ran is not None and (never_ran.code not in (126, 127) or config.tty):
                # Its init died before the workload ran (the workload says its own exec failure,
                # but with -t it says it on a terminal nobody reads yet).
                sys.stderr.write(f"nucleus: {never_ran.reason}\n")
            if not config.detach:
                remove(driver, config.limits.memory, code)
                if trouble is not None:
                    raise trouble
            return code
    except BaseException:
        lost(driver)
        raise
    finally:
        if tree is not None:
            prepare.close_context(tree)
        if secrets:  # read and closed once the setup process was forked; else closed here
            prepare.close_secrets(secrets)
        if trace is not None:
            trace.write()


def wait_or_hand_over(config: ContainerConfig, planned: run_plan.RunPlan, executor: Executor, driver: Driver,
                      trace: Any, store: Store, cid: str, service: Any, *, gate: Callable[[int], None] | None,
                      tree: int | None, injected: bool) -> int:
    """The workload's exit status. A run that qualifies (nucleus.app.keeper.refusal) hands over
    to the keeper once its workload has run GRACE seconds, and this process goes on as the
    keeper, then as the teardown: this returns only for a workload that ended sooner, or when
    the handover did not happen."""
    if service is not None:
        return executor.wait(lambda pid: service.wait(executor, pid))
    from nucleus.app import keeper

    audited = False  # the audit log's recorder in front of the trace's, or alone
    if trace is not None:
        from nucleus.trace.record import Recorder

        audited = not isinstance(trace, Recorder)
    why = keeper.refusal(config, planned, executor, gate=gate, context=tree is not None, audit_log=audited,
                         injected_fault=injected)
    if why is None:
        code = executor.wait_until(time.monotonic() + keeper.GRACE)
        if code is not None:
            return code
        keeper.hand_over(config, executor, driver, trace, store.root, cid)
    return executor.wait()


def notify_socket_inside(config: ContainerConfig, environ: dict[str, str]) -> ContainerConfig:
    """--readiness-sd-notify: NOTIFY_SOCKET (where the supervisor passes the workload's READY=1
    on to) checked, and the workload's NOTIFY_SOCKET set to the relay's socket inside."""
    from nucleus.config import notify as notify_rules
    from nucleus.effects import service as host

    value = environ.get("NOTIFY_SOCKET", "")
    if not host.notify_socket_valid(value):
        raise InvalidInput(f"--readiness-sd-notify: NOTIFY_SOCKET is {value!r}, neither a socket's path nor '@name'",
                           hint="run under systemd (Type=notify), which sets it")
    problem = notify_rules.place_refusal(config.volumes, config.secrets)
    if problem is not None:
        raise problem
    return replace(config, env=(*config.env, ("NOTIFY_SOCKET", notify_rules.SOCKET_INSIDE)))


def open_relay(config: ContainerConfig, store: Store, cid: str) -> Relay | None:
    """--readiness-sd-notify: the socket the workload's notifications come to (a
    nucleus.effects.notify.Relay in the state directory), or None without it."""
    if config.service is None or not config.service.readiness.workload:
        return None
    from nucleus.effects import service as host

    path = store.notify_path(cid)
    try:
        return host.Relay(path)
    except OSError as e:
        raise RuntimeFailure(f"--readiness-sd-notify: cannot make the socket {path!r}: {e.strerror or e}") from None


def relay_volume(relay: Relay) -> VolumeSource:
    """The relay's socket as the plan binds it: read-only (a datagram is sent all the same),
    at nucleus.config.notify.SOCKET_INSIDE, never id-mapped (its mode lets anyone send)."""
    from nucleus.config.notify import SOCKET_INSIDE

    return VolumeSource(relay.path, SOCKET_INSIDE, False, relay.opened)


def remove(driver: Driver, memory: int | None, code: int) -> None:
    """A foreground container once it has ended and been cleaned up: removed, after saying
    whether the OOM killer acted (a detached container's `ps --all` says "oom-killed")."""
    oom = oom_message(driver.state.res, memory, code)
    if oom is not None:
        sys.stderr.write(oom + "\n")
    driver.require(v.Remove())


def lost(driver: Driver) -> None:
    """After an interruption or a bug: the machine decides what to end and release, as it does
    for a supervisor that died; then the container is removed."""
    try:
        with blocked():
            lc = driver.state.lc
            if lc.status in lifecycle.ACTIVE or (lc.status in ("stopped", "failed") and not lc.cleaned):
                driver.feed(v.Lost())
                driver.settle()
            if driver.state.lc.status in ("stopped", "failed") and driver.state.lc.cleaned:
                driver.feed(v.Remove())
    except Exception as e:  # noqa: BLE001 - the original error is the one to report
        sys.stderr.write(f"warning: cleanup after the error failed: {e}; "
                         "nucleus rm --force reclaims the rest\n")


def oom_message(res: resources.ResourcesState, memory: int | None, code: int) -> str | None:
    """What a foreground run says when the release saw the OOM killer act in the group."""
    if not res.oom_killed:
        return None
    what = ("the workload was killed by the OOM killer" if code == 128 + 9
            else "the OOM killer killed a process of the workload")
    figures = [f"memory limit {_size(memory)}" if memory is not None else "no memory limit of its own"]
    if res.oom_peak is not None:
        figures.append(f"peak {_size(res.oom_peak)}")
    return f"nucleus: {what} ({', '.join(figures)})"


def _size(n: int) -> str:
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def setup_failure(history: list[tuple[v.Event, tuple[v.Intent, ...]]], oom_killed: bool = False) -> str:
    """The failed step and why; with `oom_killed` (the cgroup's OOM count rose), that the OOM
    killer ended it."""
    oom = ("; the OOM killer acted in the container's cgroup: setting up needs more memory than "
           "its limit allows (a copied context is held in memory)") if oom_killed else ""
    for event, _ in reversed(history):
        if isinstance(event, v.StepFailed):
            return f"setup failed at {event.machine}.{event.step}: {event.message}{oom}"
    return f"setup failed{oom}"


def keep_promises(driver: Driver, shown: Callable[[str | None], Any]) -> None:
    """Production, just before Start: its promises checked once more against the machines'
    state and what the host shows (`shown`: nucleus.effects.promises.observe for the container's
    init); one not kept aborts the run, and the container is cleaned up and removed."""
    if not promises.checked(driver.state):
        return
    memory = promises.memory_limit(driver.state)
    unmet = promises.unmet(driver.state, promises.Observed(*shown(memory[0] if memory else None)))
    if not unmet:
        return
    driver.require(v.Abort())
    driver.settle()  # the cgroup, with the container's processes, and the network released
    driver.require(v.Remove())
    raise RuntimeFailure("production mode: the workload was not started: " + "; ".join(unmet),
                         hint="every row named is what --service-mode production promises; the container "
                              "was removed")


def _never_ran(driver: Driver) -> v.Exit | None:
    """The Exit that answered Start when the workload could not be started (its exec failed)."""
    if driver.state.lc.status == "running":
        return None
    for event, _ in reversed(driver.history):
        if isinstance(event, v.Exit):
            return event
    return None


def _not_started(exit_: v.Exit) -> RuntimeFailure:
    error = RuntimeFailure(
        exit_.reason or f"the workload could not be started (status {exit_.code})",
        hint=("the command is looked up on the container's PATH, inside the container"
              if exit_.code == 127 else None))
    error.exit_code = exit_.code
    return error
