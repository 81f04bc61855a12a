"""`nucleus exec` and `nucleus attach` (`exec -i` without options): run a command inside a
running container with the container's own restrictions, as the user, in the directory, with the
environment and the terminal asked for. The container's lifecycle is asked first (Attach is allowed only while it runs);
then the Join machine, planned from what the container recorded when it started, is driven
through the same executor as a run: the joining process enters the cgroup and namespaces, takes
the container's identity, and gets its capability sets, its seccomp program (the very program,
by hash, from this host's cache) and its Landlock rules before the command is exec'd.

What the command is refused goes to the container's violation stream, as its workload's does:
the joining side starts a violation monitor of its own, which answers and records the
command's refused calls for as long as the command runs (nucleus.plan.join), and says, as a run
does, which refusal killed the command.
"""

from __future__ import annotations

from dataclasses import replace

from nucleus import vocab as v
from nucleus.app import manage, records
from nucleus.app import violations as app_violations
from nucleus.config.capabilities import capability_number
from nucleus.config.container import env_key_refused
from nucleus.config.exec_options import ATTACH, ExecOptions
from nucleus.driver import Driver
from nucleus.effects import prepare, probe
from nucleus.effects.executor import Executor
from nucleus.effects.process import alive, blocked, namespaces_apart, restrictions
from nucleus.effects.store import Store
from nucleus.errors import RuntimeFailure
from nucleus.machines import join, system
from nucleus.machines.base import Refused
from nucleus.plain import to_plain
from nucleus.plan.join import JoinInputs
from nucleus.plan.run import JOIN_ORDER, JoinPolicy
from nucleus.trace.record import Recorder


def attach(ref: str, argv: list[str], trace_path: str | None = None,
           options: ExecOptions = ATTACH, verb: str = "attach") -> int:
    """Join the container `ref` and run `argv` there; its exit status (`verb` names the command
    in what the trace records)."""
    probe.writable_file("--trace", trace_path)
    doing = "attach to" if verb == "attach" else f"{verb} in"
    record = manage.find(ref)
    name = record["name"]
    manage.authorize(record, "attach")
    if not manage.supervisor_alive(record):
        raise RuntimeFailure(f"cannot {doing} container {name!r}: it is {manage.view(record)['status']}")
    if record.get("runtime") == "gvisor":  # runsc joins its own sandbox
        from nucleus.app import gvisor

        return gvisor.exec_in(record, argv, options, doing)
    container = manage.container_driver(record, action=doing)  # its init, confirmed
    result = container.feed(v.Attach())
    if isinstance(result, Refused):
        raise RuntimeFailure(result.why.replace("the container", repr(name)))
    init, start = record.get("init_pid"), record.get("init_start")
    if not isinstance(init, int) or not isinstance(start, int) or not alive(init, start):
        raise RuntimeFailure(f"cannot {doing} container {name!r}: its init process is gone")
    policy = records.join_policy(record)
    if policy is None:
        raise RuntimeFailure(f"cannot {doing} container {name!r}: its record says nothing of its "
                             "restrictions", hint="it was started by another nucleus version")
    policy = checked_policy(policy, init, container.state, name, doing)
    if policy.rootless and probe.identity().euid != 0:
        raise RuntimeFailure(
            f"cannot {doing} container {name!r}: it runs rootless, and joining a rootless "
            "container is not supported yet (its processes are not dumpable, so their namespaces "
            "cannot be opened by their own user)",
            hint="run the container as root (its root is then an unprivileged uid) to attach to it")
    machines = record["machines"]
    store = Store(probe.identity().state_root)
    inputs = JoinInputs(policy, init, start, tuple(argv), frozenset(machines.get("sec_degraded") or ()),
                        machines.get("res_phase") == "ready", name, options,
                        stream=store.violations_path(record["id"]))
    state = inputs.plan()
    programs: dict[str, bytes] = {}
    if policy.seccomp_sha256:
        program = prepare.program_by_sha256(policy.seccomp_sha256)
        if program is None:
            raise RuntimeFailure(
                f"cannot {doing} container {name!r}: its seccomp program "
                f"{policy.seccomp_sha256[:12]} is not in this host's seccomp cache",
                hint="the cache was cleared since the container started; attach is refused rather "
                     "than joining with another filter")
        programs[policy.seccomp_sha256] = program
    trace = None
    if trace_path is not None:
        trace = Recorder(join, "Join", trace_path, f"nucleus {verb} {name} {' '.join(argv)}".rstrip(),
                         to_plain(inputs))
    executor = Executor(programs, monitor=app_violations.join_setup(record, policy))
    driver = Driver(join, state, executor, trace)
    try:
        with blocked():
            driver.require(v.JoinBegin())
            if driver.state.phase != "ready":
                raise RuntimeFailure(f"cannot {doing} container {name!r}: {_failure(driver.history)}")
            with app_violations.Since(store, record["id"]) as since:
                pid = executor.init_pid
                driver.require(v.JoinStart())
                code = executor.wait()
                since.explain_death(code, pid)
            driver.require(v.JoinExit(code))
            return code
    finally:
        if trace is not None:
            trace.write()


def checked_policy(policy: JoinPolicy, init: int, state: system.SystemState, name: str,
                   doing: str = "attach to") -> JoinPolicy:
    """The record's join policy, held against what the kernel says of the container's init (a
    joined command never gets more than the container's workload has): the namespaces to enter
    are those in which the init is apart from this process, the cgroup is the one planned from
    the container's id, the capabilities kept must be in the init's bounding set, a seccomp
    filter must be named if the init runs under one, and the environment holds no variable a
    run would refuse."""

    def refuse(why: str) -> RuntimeFailure:
        return RuntimeFailure(f"cannot {doing} container {name!r}: {why}",
                              hint="its record does not match the running container; nothing was joined")

    apart = namespaces_apart(init, ("user", *JOIN_ORDER))
    confinement = restrictions(init)
    if apart is None or not confinement:
        raise refuse("its init process cannot be examined")
    if "user" not in apart or "pid" not in apart:
        raise refuse("its init shares this process's user or PID namespace")
    bounding = confinement.get("CapBnd", 0)
    for cap in policy.caps_keep:
        try:
            number = capability_number(cap)
        except ValueError as e:
            raise refuse(str(e)) from None
        if not bounding >> number & 1:
            raise refuse(f"its record keeps {cap}, which its init does not have")
    if confinement.get("Seccomp") == 2 and not policy.seccomp_sha256:
        raise refuse("its init runs under a seccomp filter and its record names none")
    for key, _ in policy.env:
        if env_key_refused(key):
            raise refuse(f"its record sets {key!r}, which a run refuses")
    in_cgroup = state.res.attach.procs if state.res.phase == "ready" else ()
    return replace(policy, namespaces=apart, cgroup_procs=in_cgroup)


def _failure(history: list[tuple[v.Event, tuple[v.Intent, ...]]]) -> str:
    for event, _ in reversed(history):
        if isinstance(event, v.JoinFailed):
            return f"joining failed at {event.step}: {event.message}"
    return "joining failed"
