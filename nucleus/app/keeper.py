"""The handover to a keeper: what stays resident while a container runs.

Once the container is set up and its workload has run for GRACE seconds (a short command is torn
down by the supervisor that started it, at no extra cost), the supervisor of a run that qualifies
(`refusal`) becomes the keeper (nucleus/init/keeper.c) by exec: the same pid, so the container's
init stays its child and the record still names the supervisor. The keeper forwards signals to the
init, reaps, and holds the violation monitor's descriptors (the seccomp listener, the audit reader,
the user's copy of the stream), which the monitor hands back first
(nucleus.effects.monitor.take_back). When one of them is readable it starts a monitor
(nucleus.effects.monitor's `main`), which goes on from what the one before it saved, answers the
call that waits, and ends after IDLE_END seconds in which its container did nothing. When the init
ends, the keeper executes the teardown (`main` here) with its exit status: one last monitor waits
(a while at most) for the audit records still on their way (with an audit reader), then the System
machine is taken up where the supervisor left it (its state as the supervisor saved it), driven
through Exit, cleanup and removal as the supervisor would have, the record and the trace (the same
trace, states appended) written, and the workload's status as its own.

What the supervisor hands over travels in two memory files it leaves open across the exec: the
teardown's (`Resume`, sealed) and the monitor's (rewritten, all at once, by each monitor as it
ends). Nothing is left on disk: a keeper killed meanwhile leaves a record whose supervisor is gone,
which `nucleus rm --force` reclaims, as after any supervisor lost.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from nucleus.effects import process
from nucleus.frozen import frozen
from nucleus.plain import from_plain, to_plain

if TYPE_CHECKING:
    from nucleus.config.container import ContainerConfig
    from nucleus.driver import Driver
    from nucleus.effects.executor import Executor
    from nucleus.plan.run import RunPlan

GRACE = 0.1  # seconds a workload runs before its supervisor hands over to the keeper


def refusal(config: ContainerConfig, planned: RunPlan, executor: Executor, **kept_for: object) -> str | None:
    """Why this run's supervisor stays (None: it hands over to the keeper). `kept_for` names
    what else the supervisor serves while the container runs (a service, the audit log's
    recorder, `nucleus oci`'s gate, the context's tree, an injected fault): any of them keeps
    it."""
    held = [name for name, value in kept_for.items() if value]
    if held:
        return f"it serves {', '.join(held)}"
    if config.tty:
        return "it relays the terminal (-t)"
    if planned.network.mode != "none":
        return f"--network {planned.network.mode}: its helpers and its teardown stay with it"
    if executor.tracer is not None:
        return "seccomp trace mode: its tracer reports to it"
    if not process.keeper_built():
        return f"no keeper at {process.KEEPER!r} (make setup builds it)"
    return None


@frozen
class Resume:
    """What the teardown takes up: the container, where its store is, the System machine's
    state, the trace so far (its ITF document, None without --trace, and its path), the
    detached supervisor's logger (None in the foreground) and what the run says on exit."""

    cid: str
    state_root: str
    state: dict[str, Any]
    trace: dict[str, Any] | None
    trace_path: str | None
    logger: int | None
    detach: bool
    memory: int | None


def hand_over(config: ContainerConfig, executor: Executor, driver: Driver, trace: Any, store_root: str,
              cid: str) -> None:
    """Become the keeper; returns only when it did not happen, the supervisor then going on as
    before: what can fail (the keeper's binary, the memory files) is prepared before the violation
    monitor is asked for what it holds; the monitor may not be ready to hand it back (it goes on
    serving); and should the exec fail after all, what it handed back is served by a monitor
    forked again."""
    init_pid = executor.init_pid
    assert init_pid is not None
    resume = Resume(cid, store_root, to_plain(driver.state), None if trace is None else trace.dump(),
                    None if trace is None else trace.path, process.logger, config.detach, config.limits.memory)
    files: list[int] = []
    try:
        files.append(process.open_keeper())
        files.append(process.memory_file("nucleus-resume", json.dumps(to_plain(resume)).encode(), sealed=True))
        files.append(-1 if executor.monitor is None else process.memory_file("nucleus-monitor"))
    except OSError as e:
        process.close(*files)
        executor.warn(f"the supervisor stays: {e}")
        return
    keeper, teardown, monitor_file = files
    held = executor.take_back_monitor() if executor.monitor is not None else None
    if executor.monitor is not None:
        process.close(*files)  # not ready: it goes on serving, as this process on supervising
        return
    watched: list[int] = []
    inherited = [teardown]
    if held is None:
        monitor_file = -1  # none to hand down (the monitor, if any, ended without handing back)
    try:
        if held is not None:
            watched = [fd for fd in (held["listener"], held["audit"]) if fd is not None]
            inherited += [monitor_file, *(fd for fd in (*watched, held["copy"]) if fd is not None)]
            process.rewrite_memory_file(monitor_file, json.dumps(held).encode())
        process.become_keeper(keeper, init_pid, watched, inherited,
                              [*process.interpreter("nucleus.effects.monitor"), str(monitor_file)],
                              [*process.interpreter(__name__), str(teardown), str(monitor_file)])
    except OSError as e:
        executor.warn(f"the supervisor stays: {e}")
        if held is not None:
            executor.give_back_monitor(held)
    process.close(*files)


def main(argv: list[str]) -> None:
    """The interpreter the keeper executes once the init has ended: `FILE MONITOR_FILE STATUS`."""
    from nucleus.cli.entry import leave, report

    try:
        code = teardown(int(argv[0]), int(argv[1]), int(argv[2]))
    except Exception as e:  # noqa: BLE001 - said as the command would say it
        code = report(e)
    leave(code)


def teardown(fd: int, monitor_file: int, code: int) -> int:
    """The supervisor's end of a run, after the keeper: as nucleus.app.run's."""
    from nucleus import vocab as v
    from nucleus.app import records, run
    from nucleus.app import violations as app_violations
    from nucleus.driver import Driver
    from nucleus.effects.executor import Executor
    from nucleus.effects.store import Store
    from nucleus.errors import RuntimeFailure
    from nucleus.machines import system
    from nucleus.trace.record import Recorder

    resume = from_plain(Resume, json.loads(process.read_memory_file(fd)))
    process.close(fd)  # the monitor's file stays open for its last run (Executor.finish_kept_monitor)
    try:
        with process.blocked():
            store = Store(resume.state_root)
            record = store.read(resume.cid)
            if record is None:
                raise RuntimeFailure(f"the record of container {resume.cid[:12]} is gone: its teardown is "
                                     "left to `nucleus rm --force`")
            trace = None if resume.trace is None else Recorder.resumed(system, "System", resume.trace_path,
                                                                        resume.trace)
            executor = Executor()
            driver = Driver(system, from_plain(system.SystemState, resume.state), executor)
            driver.recorder = records.StateRecorder(store, record, lambda: None, trace)
            try:
                executor.finish_kept_monitor(monitor_file)
                app_violations.explain_death(store, resume.cid, code)
                driver.require(v.Exit(code))
                driver.settle()  # release the cgroup, then CleanupDone
                if not resume.detach:
                    run.remove(driver, resume.memory, code)
            except BaseException:
                run.lost(driver)
                raise
            finally:
                if trace is not None:
                    trace.write()
        return code
    finally:
        if resume.logger is not None:
            process.finish_logger(resume.logger)
