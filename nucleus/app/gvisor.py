"""`nucleus run --runtime gvisor`: the container's kernel is gVisor's runsc.

Validate, then act: what gVisor cannot honour is refused (nucleus.config.gvisor), runsc is found
and the host probed, the bundle planned (nucleus.plan.gvisor), all before the first change on the
host. Then the container's record is written (refusing a name in use), the supervisor detaches if
asked, and the Gvisor machine is driven: the bundle, runsc run, the signals the supervisor gets
passed on as runsc kill, the workload's exit, and the cleanup (runsc delete, then the bundle). An
interruption or a bug feeds Lost, and the machine decides the cleanup; `nucleus stop`, `kill` and
`rm` act on a detached one through the same machine (`kill`, `remove` here).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from nucleus.app import records
from nucleus.app.run import Report, reported
from nucleus.config import gvisor as rules
from nucleus.config.container import ContainerConfig
from nucleus.driver import Driver
from nucleus.effects import gvisor as runsc
from nucleus.effects import probe
from nucleus.effects.process import blocked, detach, process_start
from nucleus.effects.store import Store
from nucleus.errors import HostUnsupported, InvalidInput, RuntimeFailure, error_from_data
from nucleus.machines import gvisor
from nucleus.machines.base import Refused
from nucleus.plan import gvisor as gvisor_plan
from nucleus.plan import ids
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
    context that is not there."""
    facts = probe.for_run(config, modes_need=False)
    for volume in config.volumes:
        if volume.owner is not None:
            raise InvalidInput(f"--volume {volume.host}:{volume.target}: an owner with --runtime gvisor: "
                               "its ids are mapped by runsc, not by nucleus", hint=rules.HINT)
    volumes, context, files = runsc.sources(config, facts.etc)
    start = ids.choose(config.id_range, facts.subordinate_ids)
    return gvisor_plan.Host(runsc=runsc_path, system=facts.system, etc=facts.etc,
                            id_start=start, volumes=volumes, context=context,
                            rootfs=facts.rootfs_realpath, store_paths=facts.store_paths,
                            files=files, platform=platform), facts.state_root


def run(config: ContainerConfig, platform: str | None = None, trace_path: str | None = None) -> int:
    """Run under runsc in the foreground (or, with config.detach, hand the container to a
    background supervisor once it has started, print its id and return 0); `platform`:
    --gvisor-platform (ptrace when not given); `trace_path`: --trace, the machine's steps as an
    ITF trace of formal/Gvisor.tla."""
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
    store = Store(state_root)
    store.ensure()
    record = records.claim(store, _record(config, cid, plan))
    trace = None if trace_path is None else TraceRecorder(
        gvisor, "Gvisor", trace_path, f"nucleus run --runtime gvisor {' '.join(config.argv)}")
    if not config.detach:
        return _supervise(store, record, plan, None, trace)

    def background(report: Report) -> int:
        records.adopt(record, probe.own_pid())
        return reported(report, lambda r: _supervise(store, record, plan, r, trace))

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


def _record(config: ContainerConfig, cid: str, plan: gvisor.GvisorPlan) -> dict[str, Any]:
    name = config.name or cid[:12]
    supervisor = probe.own_pid()
    record: dict[str, Any] = {
        "id": cid, "name": name, "status": "creating", "runtime": RUNTIME, "argv": list(config.argv),
        "created_at": time.time(), "creator_uid": probe.own_uid(), "supervisor_pid": supervisor,
        "supervisor_start": process_start(supervisor), "detached": config.detach,
        "hostname": gvisor_plan.hostname(config, cid), "rootless": False,
        "limits": {"memory": config.limits.memory, "cpus": config.limits.cpus, "pids": config.limits.pids},
        "cgroup_parent": config.limits.cgroup_parent,
        "machines": gvisor.to_tla(gvisor.initial(plan)),
    }
    if config.detach:
        record["log"] = {"max_size": config.log_max_size, "max_files": config.log_max_files}
    return record


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
        fields: dict[str, Any] = {"status": STATUS[state.status], "machines": gvisor.to_tla(state)}
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


def _supervise(store: Store, record: dict[str, Any], plan: gvisor.GvisorPlan, report: Any,
               trace: TraceRecorder | None = None) -> int:
    executor = runsc.GvisorExecutor(warn=_warn)
    driver = Driver(gvisor, gvisor.initial(plan), executor, Recorder(store, record, trace))
    try:
        with blocked():  # signals are taken synchronously; runsc starts with a clean mask
            driver.require(gv.Create())
            if driver.state.status != "running":
                failure = driver.state.failure
                _remove(driver, record)
                raise RuntimeFailure(f"gVisor setup failed: {failure}")
            if report is not None:
                report({"ok": record["id"]})
            # The signals the supervisor is sent go on to the sandbox (runsc kill).
            code = executor.wait_forwarding(lambda name: driver.feed(gv.Kill(signal=name)))
            driver.require(gv.Exit(code=code))
            if not record["detached"]:  # a detached one stays, stopped, for ps --all and logs, until rm
                _remove(driver, record)
            elif driver.state.bundle or driver.state.sandbox:
                _left(record)
            return code
    except BaseException:
        _lost(driver, record)
        raise
    finally:
        if trace is not None:
            trace.write()


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
    plan = gvisor.GvisorPlan(bundle=gv.WriteBundle(directory=base),
                             runsc=(runsc.find_runsc(), "--root", f"{base}/runsc", "--log", f"{base}/{gvisor_plan.LOG}"),
                             cid=record["id"])
    state = gvisor.from_tla(record["machines"], gvisor.initial(plan))
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
        driver.require(gv.Lost())
    elif driver.state.status in gvisor.ENDED and (driver.state.bundle or driver.state.sandbox):
        driver.require(gv.Sweep())
    if isinstance(driver.feed(gv.Remove()), Refused):
        raise RuntimeFailure(f"cannot remove container {record['name']!r}: its gVisor sandbox or bundle "
                             "could not be removed", hint="run nucleus rm --force again; the warning says why")
    store.delete(record["id"])
