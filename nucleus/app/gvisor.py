"""`nucleus run --runtime gvisor`: the container's kernel is gVisor's runsc.

Validate, then act: what gVisor cannot honour is refused (nucleus.config.gvisor), runsc is found
and the host probed, the bundle planned (nucleus.plan.gvisor), all before the first change on the
host. Then the container's record is written (refusing a name in use), the supervisor detaches if
asked, and the Gvisor machine is driven: the bundle, with a bridge the network namespace and the
network (the Network machine, as for a native run), runsc run, the signals the supervisor gets
passed on as runsc kill, the workload's exit, and the cleanup (runsc delete, the network's
teardown, the namespace, then the bundle). An
interruption or a bug feeds Lost, and the machine decides the cleanup. A service's supervisor
(nucleus.app.service) waits for the workload instead, running its checks through runsc exec,
and sets the container up again as its restart policy says; `nucleus stop`, `kill` and
`rm` act on a detached one through the same machine (`kill`, `remove` here).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from nucleus.app import records
from nucleus.app.run import CONTEXT_HINT, Report, reported
from nucleus.app.run import _prepare_context as prepare_context
from nucleus.config import gvisor as rules
from nucleus.config.container import ContainerConfig
from nucleus.driver import Driver
from nucleus.effects import gvisor as runsc
from nucleus.effects import probe
from nucleus.effects.executor import parse_fault
from nucleus.effects.process import blocked, detach, process_start
from nucleus.effects.store import Store
from nucleus.errors import HostUnsupported, InvalidInput, RuntimeFailure, error_from_data
from nucleus.machines import gvisor, network
from nucleus.machines.base import Refused
from nucleus.plan import gvisor as gvisor_plan
from nucleus.plan import ids
from nucleus.plan import network as network_plan
from nucleus.plan.join import DEFAULT_COMMAND
from nucleus.trace.record import Recorder as TraceRecorder
from nucleus.vocab import gvisor as gv

RUNTIME = "gvisor"
# What `nucleus ps` shows of the machine's statuses (the native lifecycle's words).
STATUS = {"none": "creating", "creating": "creating", "running": "running", "stopped": "stopped",
          "failed": "failed", "removed": "removed"}


def _warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


def host(config: ContainerConfig, runsc_path: str, platform: str = rules.PLATFORM) -> tuple[gvisor_plan.Host, str]:
    """What the plan needs of the host, and the state directory; InvalidInput for a volume or
    context that is not there. A context to copy is opened, checked and measured as a native
    run's is (its size against --context-size, what the secret rules leave out)."""
    facts = probe.for_run(config, modes_need=False)
    for volume in config.volumes:
        if volume.owner is not None:
            raise InvalidInput(f"--volume {volume.host}:{volume.target}: an owner with --runtime gvisor: "
                               "its ids are mapped by runsc, not by nucleus", hint=rules.HINT)
    volumes, context, files = runsc.sources(config, facts.etc)
    copied = None
    if config.context is not None and config.context_mode == "copy":  # opened and measured as natively
        copied, _ = prepare_context(config, *probe.context(config.context, CONTEXT_HINT), probe.own_uid())
    start = ids.choose(config.id_range, facts.subordinate_ids)
    return gvisor_plan.Host(runsc=runsc_path, system=facts.system, etc=facts.etc,
                            id_start=start, volumes=volumes, context=context, copied=copied,
                            rootfs=facts.rootfs_realpath, store_paths=facts.store_paths,
                            files=files, platform=platform, network=network_plan.plan(config, facts),
                            state_root=facts.state_root), facts.state_root


def run(config: ContainerConfig, platform: str | None = None, trace_path: str | None = None,
        environ: dict[str, str] | None = None) -> int:
    """Run under runsc in the foreground (or, with config.detach, hand the container to a
    background supervisor once it has started, print its id and return 0); `platform`:
    --gvisor-platform (ptrace when not given); `trace_path`: --trace, the machine's steps as an
    ITF trace of formal/Gvisor.tla; `environ`: nucleus's environment (NOTIFY_SOCKET for
    --sd-notify, NUCLEUS_FAIL_AT for the tests of the failure paths)."""
    environ = environ or {}
    problem = rules.refusal(config)
    if problem is not None:
        raise problem
    if probe.identity().euid != 0:
        raise HostUnsupported("--runtime gvisor: runsc runs containers as root here",
                              hint="run nucleus as root, or use --runtime native (rootless)")
    probe.writable_file("--trace", trace_path)
    path = runsc.find_runsc()
    facts, state_root = host(config, path, platform or rules.PLATFORM)
    scratch = gvisor_plan.directory(f".platform-{records.new_id()}")
    unusable = runsc.platform_refusal(path, facts.platform, scratch)
    if unusable is not None:
        raise unusable
    policies = config.loaded_policies
    seccomp = policies.seccomp if policies is not None else None
    cid = records.new_id()
    plan = gvisor_plan.plan(config, facts, cid, seccomp)
    initial = gvisor.initial(plan, gvisor_plan.network_machine(config, facts, cid))
    store = Store(state_root)
    store.ensure()
    record = records.claim(store, _record(config, cid, initial, facts.network))
    trace = None if trace_path is None else TraceRecorder(
        gvisor, "Gvisor", trace_path, f"nucleus run --runtime gvisor {' '.join(config.argv)}")
    service = None
    if config.service is not None and config.service.supervised:
        from nucleus.app.service import Supervisor

        service = Supervisor(config.service, store, record, environ)
    fault = parse_fault(environ.get("NUCLEUS_FAIL_AT"))
    if not config.detach:
        return _supervise(store, record, initial, None, trace, service, fault)

    def background(report: Report) -> int:
        records.adopt(record, probe.own_pid())
        return reported(report, lambda r: _supervise(store, record, initial, r, trace, service, fault))

    answer = detach(store.log_sink(cid, config.log_max_size, config.log_max_files), background)
    if answer is not None and "ok" in answer:
        print(answer["ok"])
        return 0
    if store.read(cid) is None:
        store.delete(cid)
    if answer is None:
        raise RuntimeFailure("the supervisor exited before the container started",
                             hint=f"nucleus rm --force {record['name']} reclaims what it left")
    raise error_from_data(answer["error"])


def _record(config: ContainerConfig, cid: str, initial: gvisor.GvisorState,
            net: network_plan.NetworkPlan) -> dict[str, Any]:
    name = config.name or cid[:12]
    supervisor = probe.own_pid()
    record: dict[str, Any] = {
        "id": cid, "name": name, "status": "creating", "runtime": RUNTIME, "argv": list(config.argv),
        "created_at": time.time(), "creator_uid": probe.own_uid(), "supervisor_pid": supervisor,
        "supervisor_start": process_start(supervisor), "detached": config.detach,
        "hostname": gvisor_plan.hostname(config, cid), "rootless": False,
        "limits": {"memory": config.limits.memory, "cpus": config.limits.cpus, "pids": config.limits.pids},
        "cgroup_parent": config.limits.cgroup_parent,
        "machines": _machines(initial),
    }
    if net.mode != "none":
        record["network"] = network_plan.to_record(net)
    if config.detach:
        record["log"] = {"max_size": config.log_max_size, "max_files": config.log_max_files}
    return record


def _machines(state: gvisor.GvisorState) -> dict[str, Any]:
    """The machine's variables as the record keeps them (a set as a sorted list)."""
    return {k: sorted(x) if isinstance(x, frozenset) else x for k, x in gvisor.to_tla(state).items()}


class Recorder:
    """Keeps the record in step with the machine: written when its status changes or a part of
    the cleanup is done, deleted when the container is removed."""

    def __init__(self, store: Store, record: dict[str, Any], inner: TraceRecorder | None = None) -> None:
        self.store, self.doc, self.inner = store, record, inner

    def record(self, event: Any, state: gvisor.GvisorState, intents: tuple[Any, ...] = ()) -> None:
        if self.inner is not None:
            self.inner.record(event, state, intents)
        if event is None:
            return
        if state.status == "removed":
            self.store.delete(self.doc["id"])
            return
        fields: dict[str, Any] = {"status": STATUS[state.status], "machines": _machines(state)}
        if state.net.addresses and isinstance(self.doc.get("network"), dict):
            fields["network"] = {**self.doc["network"], "addresses": list(state.net.addresses)}
        if state.status == "running" and "started_at" not in self.doc:
            fields["started_at"] = time.time()
        if state.status in gvisor.ENDED:
            fields.setdefault("finished_at", self.doc.get("finished_at") or time.time())
            fields["exit_code"] = state.exit_code
            if state.exit_code is not None and state.exit_code > 128:
                fields["reason"] = f"killed by signal {state.exit_code - 128}"
            elif state.failure:
                fields["reason"] = state.failure
        self.doc.update(fields)
        with self.store.locked():
            self.store.write(self.doc)


def _supervise(store: Store, record: dict[str, Any], initial: gvisor.GvisorState, report: Any,
               trace: TraceRecorder | None = None, service: Any = None,
               fault: tuple[str, int] | None = None) -> int:
    """Run the container, and with a service (`service`, nucleus.app.service.Supervisor) run it
    again as its restart policy says, each run from the machine's initial state (the record is
    the same; the trace records the first run only)."""
    executor = runsc.GvisorExecutor(warn=_warn, fault=fault)
    driver = Driver(gvisor, initial, executor, Recorder(store, record, trace))
    try:
        with blocked():  # signals are taken synchronously; runsc starts with a clean mask
            while True:
                code, ran_for = _run_once(driver, executor, record, report, service)
                if service is None or not service.ended(code, ran_for) or not service.backoff():
                    break
                report = None
                service.fresh_record()
                driver = Driver(gvisor, initial, executor, Recorder(store, record))
            if not record["detached"]:  # a detached one stays, stopped, for ps --all and logs, until rm
                _remove(driver, record)
            elif not driver.state.gone:
                _left(record)
            return code
    except BaseException:
        _lost(driver, record)
        raise
    finally:
        if trace is not None:
            trace.write()


def _run_once(driver: Driver, executor: runsc.GvisorExecutor, record: dict[str, Any], report: Any,
              service: Any) -> tuple[int, float]:
    """One run to its end and its cleanup: the workload's status and how long it ran. The
    signals the supervisor is sent go on to the sandbox (runsc kill); with a service its
    supervisor waits, running the health checks and readiness commands (through runsc exec)."""
    _require(driver, gv.Create())
    if driver.state.status != "running":
        failure = driver.state.failure
        _remove(driver, record)
        restarts = service.state.restarts if service is not None else 0
        raise RuntimeFailure((f"restart {restarts} of the service: " if restarts else "")
                             + f"gVisor setup failed: {failure}")
    if report is not None:
        report({"ok": record["id"]})
    started = time.monotonic()

    def forward(name: str) -> None:
        driver.feed(gv.Kill(signal=name))

    if service is None:
        code = executor.wait_forwarding(forward)
    else:
        target = executor.runsc_pid
        assert target is not None
        code = service.wait(_Sandbox(forward), target,
                            lambda taken: forward(runsc.signal_name(taken.number)) if taken.sent else None)
        executor.runsc_pid = None
    ran_for = time.monotonic() - started
    _require(driver, gv.Exit(code=code))
    return code, ran_for


class _Sandbox:
    """What a service's supervisor asks of the run it waits for: a signal for the workload."""

    def __init__(self, forward: Callable[[str], None]) -> None:
        self.send_signal = forward


def _require(driver: Driver, event: gv.GvEvent) -> None:
    """Take `event`, then the Network machine's internal steps it enables (Begin, Release)."""
    driver.require(event)
    driver.settle()


def _remove(driver: Driver, record: dict[str, Any]) -> None:
    """Forget the container once its cleanup is complete; else say what is left."""
    if isinstance(driver.feed(gv.Remove()), Refused):
        _left(record)


def _left(record: dict[str, Any]) -> None:
    _warn(f"the gVisor container {record['name']!r} was not cleaned up completely; "
          f"nucleus rm --force {record['name']} tries again")


def _lost(driver: Driver, record: dict[str, Any]) -> None:
    """After an interruption or a bug: the machine decides the cleanup, then the container goes."""
    try:
        with blocked():
            if driver.state.status in gvisor.ACTIVE:
                driver.feed(gv.Lost())
                driver.settle()
            if driver.state.status in gvisor.ENDED:
                _remove(driver, record)
    except Exception as e:  # noqa: BLE001 - the original error is the one to report
        _warn(f"cleanup after the error failed: {e}; nucleus rm --force reclaims the rest")


# --- management: nucleus kill, stop and rm of a detached gVisor container ----------------------

def problem(record: dict[str, Any]) -> str | None:
    """Why `record` is not a gVisor container's record management can act on (None when it is)."""
    try:
        state = gvisor.from_tla(record["machines"])
    except (KeyError, TypeError, ValueError) as e:
        return f"its machine does not rebuild ({type(e).__name__}: {e})"
    if not all(inv(state) for inv in gvisor.INVARIANTS):
        return "its machine's variables are out of range"
    if record["status"] != STATUS.get(state.status):
        return f"its status {record['status']!r} is not its machine's ({state.status!r})"
    return None


def _driver(record: dict[str, Any], store: Store | None) -> Driver:
    """The container's machine from its record, with runsc's flags planned again from this
    host's state directory and the id (never taken from the record)."""
    base = gvisor_plan.directory(record["id"])
    plan = gvisor.GvisorPlan(bundle=gv.WriteBundle(directory=base), netns=gvisor_plan.netns(base),
                             runsc=(runsc.find_runsc(), "--root", f"{base}/runsc", "--log", f"{base}/{gvisor_plan.LOG}"),
                             cid=record["id"])
    # The network's teardown likewise: its names from the id, the bridge as the record has it.
    net = network.NetworkState(teardown=network_plan.teardown(
        network_plan.from_record(record.get("network")), record["id"], probe.identity().state_root))
    state = gvisor.from_tla(record["machines"], gvisor.initial(plan, net))
    return Driver(gvisor, state, runsc.GvisorExecutor(warn=_warn),
                  None if store is None else Recorder(store, record))


def kill(record: dict[str, Any], sig: str) -> None:
    result = _driver(record, None).feed(gv.Kill(signal=sig))
    if isinstance(result, Refused):
        raise RuntimeFailure(result.why.replace("the gVisor container", repr(record["name"])))


def exec_in(record: dict[str, Any], argv: list[str], options: Any, doing: str) -> int:
    """`nucleus exec` in a running gVisor container: runsc exec, as the user, in the directory
    and with the environment asked for (the workload's otherwise); the command's status."""
    if options.tty:
        raise InvalidInput(f"-t: cannot {doing} gVisor container {record['name']!r} with a terminal",
                           hint="runsc's terminal needs a console socket nucleus does not hand it yet")
    driver = _driver(record, None)
    executor = driver.executor
    assert isinstance(executor, runsc.GvisorExecutor)
    result = driver.feed(gv.Exec(command=tuple(argv) or DEFAULT_COMMAND, user=options.user or "", cwd=options.workdir or "",
                                 env=tuple(options.env), stdin=options.interactive))
    if isinstance(result, Refused):
        raise RuntimeFailure(result.why.replace("the gVisor container", repr(record["name"])))
    assert executor.exec_status is not None
    return executor.exec_status


def remove(record: dict[str, Any], store: Store) -> None:
    """What a supervisor that is gone left: the sandbox deleted, the bundle removed, the record."""
    driver = _driver(record, store)
    if driver.state.status in gvisor.ACTIVE:
        _require(driver, gv.Lost())
    elif driver.state.status in gvisor.ENDED and not driver.state.gone:
        _require(driver, gv.Sweep())
    if isinstance(driver.feed(gv.Remove()), Refused):
        raise RuntimeFailure(f"cannot remove container {record['name']!r}: its gVisor sandbox or bundle "
                             "could not be removed", hint="run nucleus rm --force again; the warning says why")
    store.delete(record["id"])
