"""What the System machine tests share: a container's initial state with planned intents, and
following setup and cleanup as the driver would, every invariant checked after every step."""

from __future__ import annotations

from nucleus import vocab as v
from nucleus.machines import filesystem, isolation, lifecycle, resources, security, system
from tests.unit.machine_support import CGROUP, PLAN, ok, run

WORKLOAD = v.ExecWorkload(("/bin/true",), (("PATH", "/usr/bin"),), "/", (1024, 64, 65536))


def sys_initial(
    rootless: bool = False, plan=PLAN, allow_chroot=False, allow_degraded=False, required=False,
    strict=False, audit=(),
) -> system.SystemState:
    return system.initial(
        isolation.initial(rootless=rootless),
        filesystem.initial(plan, "/new", allow_chroot=allow_chroot, audit=audit),
        security.initial(allow_degraded=allow_degraded, strict=strict),
        resources.initial(required, **CGROUP),
        lifecycle.initial(WORKLOAD),
    )


def follow(
    s: system.SystemState,
    fail: dict[str, v.Event] | None = None,
    stop_before: type[v.Event] | None = None,
    intents: list[v.Intent] | None = None,
) -> system.SystemState:
    """Take advance() until it stops (or would take a `stop_before` event), answering each intent
    as done or with a scripted failure; every invariant is checked after every step. The intents
    asked for are appended to `intents`."""
    pending: list[v.Event] = []
    fail = dict(fail or {})
    while True:
        e = pending.pop(0) if pending else system.advance(s)
        if e is None or (stop_before is not None and isinstance(e, stop_before)):
            return s
        r = ok(system.step(s, e))
        s = r.state
        for intent in r.intents:
            if intents is not None:
                intents.append(intent)
            if intent.name in fail:
                pending.append(fail.pop(intent.name))
                break
            d = v.done(intent)
            if d is not None:
                pending.append(d)
        broken = [name for name, check in system.all_invariants() if not check(s)]
        assert not broken, f"after {e!r}: {broken}"


def at_unshare_gate(required: bool = False, rootless: bool = False) -> system.SystemState:
    """Created, the cgroup limited, the setup process spawned: isolation waits before unshare."""
    s = ok(system.step(sys_initial(rootless, required=required), v.Create())).state
    s, _ = run(system, s, v.ResBegin(), v.ResDone("create"), v.ResDone("limits"), v.IsoBegin(),
               v.IsoDone("spawn"))
    assert (s.iso.phase, isolation.next_step(s.iso), s.res.phase) == ("waiting", "unshare", "waiting")
    return s
