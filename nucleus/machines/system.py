"""One container's setup and life: formal/System.tla composes the six machines (lifecycle,
isolation, filesystem, security, resources, network).

Each step is one machine's step; the coupling between machines lives in guards (which must hold
before a machine's event is accepted) and in `advance`, which names the next internal event the
driver should take. A real `nucleus run` is a behaviour of this machine. The service mode
(`mode`) fixes the machines' parameters (formal/System.tla's ModeParameters, computed by
nucleus.plan.parameters); production's promises are invariants of the composition.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from nucleus import vocab as v
from nucleus.frozen import frozen
from nucleus.machines import filesystem, isolation, lifecycle, network, resources, security
from nucleus.machines.base import Refused, Step

MACHINES: dict[str, Any] = {
    "lc": lifecycle, "iso": isolation, "fs": filesystem, "sec": security, "res": resources,
    "net": network,
}
SETTLING = ("creating", "limiting", "waiting", "attaching")


@frozen
class SystemState:
    lc: lifecycle.LifecycleState
    iso: isolation.IsolationState
    fs: filesystem.FilesystemState
    sec: security.SecurityState
    res: resources.ResourcesState
    net: network.NetworkState = network.NetworkState()
    mode: str = "agent"  # the service mode: "agent", "strict-agent" or "production"

    def failed(self) -> bool:
        return "failed" in (self.iso.phase, self.fs.phase, self.sec.phase, self.res.phase, self.net.phase)

    def contained(self) -> bool:
        """The container's processes may run: in their cgroup, or knowingly without one."""
        return self.res.phase in ("ready", "degraded")


def initial(
    iso: isolation.IsolationState, fs: filesystem.FilesystemState, sec: security.SecurityState,
    res: resources.ResourcesState | None = None, lc: lifecycle.LifecycleState | None = None,
    net: network.NetworkState | None = None, mode: str = "agent",
) -> SystemState:
    return SystemState(lc or lifecycle.initial(), iso, fs, sec, res or resources.initial(),
                       net or network.initial(), mode)


def _guard(s: SystemState, event: v.Event) -> str | None:
    """Why the composition does not allow this event now, or None."""
    match event:
        case v.ResBegin():
            if s.lc.status != "creating":
                return "the cgroup is created only while the container is creating"
        case v.ResAttach():
            if not s.iso.has_done("spawn"):
                return "there is no setup process to move into the cgroup yet"
        case v.ResRelease():
            if s.lc.status not in ("stopped", "failed"):
                return "the cgroup is released only once the container has stopped or failed"
        case v.ResAbandon():
            return "a cgroup step is abandoned only when the supervisor is lost (Lost)"
        case v.CleanupDone():
            if s.res.phase != "released":
                return "cleanup is done only once the cgroup is released"
            if s.net.phase != "released":
                return "cleanup is done only once the network is torn down"
        case v.IsoBegin():
            if s.lc.status != "creating":
                return "isolation begins only while the container is creating"
            if s.res.phase not in ("waiting", "degraded"):
                return "isolation begins once the cgroup is limited (or knowingly skipped)"
        case v.FsBegin():
            if not s.iso.has_done("loopback"):
                return "the filesystem is built only inside the new namespaces (after loopback is up)"
            if s.net.phase != "ready":
                return "the filesystem is built once the network is in place"
        case v.NetBegin():
            if s.lc.status != "creating":
                return "the network is set up only while the container is creating"
            if not s.iso.has_done("loopback"):
                return "the network is set up only inside the new namespaces (after loopback is up)"
        case v.NetRelease():
            if s.lc.status not in ("stopped", "failed"):
                return "the network is torn down only once the container has stopped or failed"
            if s.res.phase != "released":
                return "the network is torn down only once the cgroup, with every process, is gone"
        case v.NetAbandon():
            return "a network step is abandoned only when the supervisor is lost (Lost)"
        case v.IsoResume():
            if isolation.next_step(s.iso) == "unshare":
                if not s.contained():
                    return "namespaces are created only once the setup process is in its cgroup"
            elif s.fs.phase != "sealed":
                return "the user namespace is entered only after the root filesystem is sealed"
        case v.SecBegin():
            if s.iso.phase != "ready" or s.fs.phase != "sealed":
                return "security controls are applied only once isolation is ready and the root is sealed"
        case v.Prepared(level=level):
            if s.sec.phase != "locked":
                return "the container is prepared only when every security control is in force"
            if not s.contained():
                return "the container is prepared only inside its cgroup (or knowingly without one)"
            if level != s.sec.level:
                return f"the security level is {s.sec.level!r}, not {level!r}"
        case v.SetupFailed():
            if not s.failed():
                return "setup has not failed"
    return None


def step(s: SystemState, event: v.Event) -> Step | Refused:
    why = _guard(s, event)
    if why is not None:
        return Refused(
            f"cannot {v.action_name(event)} ({event.machine}): {why} (the container is "
            f"{s.lc.status}; isolation {s.iso.phase}, filesystem {s.fs.phase}, security {s.sec.phase}, "
            f"cgroup {s.res.phase}" + (f", network {s.net.phase})" if s.net.plan else ")")
        )
    module = MACHINES[event.machine]
    result = module.step(getattr(s, event.machine), event)
    if isinstance(result, Refused):
        return result
    after = replace(s, **{event.machine: result.state})
    intents = result.intents
    if isinstance(event, v.Lost):
        # The lost supervisor was carrying out a cgroup or a network step: it will never report.
        # The process taking the cleanup over tries a cgroup given up on afresh.
        if s.res.phase in resources.UNDER_WAY:
            abandoned = resources.step(s.res, v.ResAbandon())
            assert isinstance(abandoned, Step)
            after, intents = replace(after, res=abandoned.state), intents + abandoned.intents
        else:
            after = replace(after, res=resources.reclaim(s.res))
        if network.under_way(s.net) is not None:
            dropped = network.step(s.net, v.NetAbandon())
            assert isinstance(dropped, Step)
            after, intents = replace(after, net=dropped.state), intents + dropped.intents
    return Step(after, intents)


def advance(s: SystemState) -> v.Event | None:
    """The next internal event the driver takes, if any (setup and cleanup proceed on their own)."""
    if s.lc.status in ("stopped", "failed") and not s.lc.cleaned:
        if s.res.phase in resources.SETTLED and not resources.gave_up(s.res):
            return v.ResRelease()  # a leaked cgroup's removal is tried again, a few times
        if s.res.phase != "released":
            return None  # a step under way, or cleanup gave up on the cgroup: rm --force retries
        if s.net.phase in ("idle", "ready", "failed"):
            return v.NetRelease()
        if s.net.phase == "released":
            return v.CleanupDone()
        return None  # a step under way, or the network leaked: a later rm --force retries
    if s.lc.status != "creating":
        return None
    if s.failed():
        return v.SetupFailed()
    if s.res.phase == "idle":
        return v.ResBegin()
    if s.iso.phase == "idle" and s.res.phase in ("waiting", "degraded"):
        return v.IsoBegin()
    if s.res.phase == "waiting" and s.iso.has_done("spawn"):
        return v.ResAttach()
    if s.iso.phase == "waiting" and isolation.next_step(s.iso) == "unshare" and s.contained():
        return v.IsoResume()
    if s.net.phase == "idle" and s.iso.has_done("loopback"):
        return v.NetBegin()
    if s.fs.phase == "idle" and s.iso.has_done("loopback") and s.net.phase == "ready":
        return v.FsBegin()
    if s.iso.phase == "waiting" and isolation.next_step(s.iso) == "enter_user" and s.fs.phase == "sealed":
        return v.IsoResume()
    if s.sec.phase == "idle" and s.iso.phase == "ready" and s.fs.phase == "sealed":
        return v.SecBegin()
    if s.sec.phase == "locked" and s.contained():
        return v.Prepared(s.sec.level)
    return None


def is_initial(s: SystemState) -> bool:
    return all(module.is_initial(getattr(s, name)) for name, module in MACHINES.items())


def to_tla(s: SystemState) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, module in MACHINES.items():  # the network as formal/System.tla composes it, at NetExtra
        out.update((network.composed_tla if module is network else module.to_tla)(getattr(s, name)))
    out["sys_mode"] = s.mode
    return out


def from_tla(values: dict[str, object], base: SystemState | None = None) -> SystemState:
    """The state the spec's variables describe; each machine's parameters from `base`."""
    parts = SystemState(*(module.from_tla(values, getattr(base, name) if base else None)
                          for name, module in MACHINES.items()))
    return replace(parts, mode=str(values["sys_mode"]))


# Invariants: the same names as in formal/System.tla (plus each machine's own).
def RunningRequiresIsolation(s: SystemState) -> bool:  # noqa: N802
    return s.lc.status not in ("created", "running") or (s.iso.phase == "ready" and s.fs.phase == "sealed")


def RunningRequiresSecurity(s: SystemState) -> bool:  # noqa: N802
    return s.lc.status not in ("created", "running") or s.sec.phase == "locked"


def LevelMatchesControls(s: SystemState) -> bool:  # noqa: N802
    return s.lc.status not in ("created", "running") or s.lc.security == s.sec.level


def UserNamespaceAfterSeal(s: SystemState) -> bool:  # noqa: N802
    return s.iso.rootless or not s.iso.has_done("enter_user") or s.fs.phase == "sealed"


def FailureNeverRuns(s: SystemState) -> bool:  # noqa: N802
    return not s.failed() or s.lc.status in ("creating", "failed", "removed")


def SecurityOnlyInside(s: SystemState) -> bool:  # noqa: N802
    return s.sec.phase == "idle" or (s.iso.phase in ("ready", "failed") and s.fs.phase == "sealed")


def RunningRequiresContainment(s: SystemState) -> bool:  # noqa: N802
    return s.lc.status not in ("created", "running") or s.contained()


def NamespacesInsideCgroup(s: SystemState) -> bool:  # noqa: N802
    return not s.iso.has_done("unshare") or s.res.phase not in ("idle",) + SETTLING


def CleanedMeansReleased(s: SystemState) -> bool:  # noqa: N802
    return not (s.lc.status in ("stopped", "failed", "removed") and s.lc.cleaned) or (
        s.res.phase == "released" and s.net.phase == "released"
    )


def RunningRequiresNetwork(s: SystemState) -> bool:  # noqa: N802
    return s.lc.status not in ("created", "running") or s.net.phase == "ready"


def NetworkInsideNamespaces(s: SystemState) -> bool:  # noqa: N802
    return not s.net.has_done("veth") or s.iso.has_done("unshare")


def NetworkOutlivesProcesses(s: SystemState) -> bool:  # noqa: N802
    """The network is torn down only once no process of the container is left."""
    return s.net.phase not in ("releasing", "released") or s.res.phase == "released"


def serving(s: SystemState) -> bool:
    """The workload may run: the container is created or running."""
    return s.lc.status in ("created", "running")


def ProductionEnforced(s: SystemState) -> bool:  # noqa: N802
    """Production runs with every control enforced: none degraded, seccomp never traced."""
    return s.mode != "production" or not serving(s) or s.lc.security == "enforced"


def ProductionLimited(s: SystemState) -> bool:  # noqa: N802
    """Production runs in its cgroup with its limits (the memory limit among them) written."""
    return s.mode != "production" or not serving(s) or (s.res.phase == "ready" and s.res.limited)


def ProductionAudited(s: SystemState) -> bool:  # noqa: N802
    """Production runs in a root it pivoted into (never a chroot), its mounts audited."""
    return s.mode != "production" or not serving(s) or (s.fs.audited and not s.fs.chrooted)


def ProductionEgressDenied(s: SystemState) -> bool:  # noqa: N802
    """Production on a network of its own runs with its egress policy in force."""
    if s.mode != "production" or not serving(s) or not (s.net.bridged or s.net.user):
        return True
    return s.net.egress and all(s.net.has_done(n) for n in network.POLICY_STEPS if n in s.net.plan)


INVARIANTS = (
    RunningRequiresIsolation, RunningRequiresSecurity, LevelMatchesControls, UserNamespaceAfterSeal,
    FailureNeverRuns, SecurityOnlyInside, RunningRequiresContainment, NamespacesInsideCgroup,
    CleanedMeansReleased, RunningRequiresNetwork, NetworkInsideNamespaces, NetworkOutlivesProcesses,
    ProductionEnforced, ProductionLimited, ProductionAudited, ProductionEgressDenied,
)


def all_invariants() -> list[tuple[str, Any]]:
    """(name, check(SystemState)) for the composition's and every machine's invariants."""
    checks: list[tuple[str, Any]] = [(f.__name__, f) for f in INVARIANTS]
    for name, module in MACHINES.items():
        for inv in module.INVARIANTS:
            checks.append((f"{name}.{inv.__name__}", lambda s, inv=inv, name=name: inv(getattr(s, name))))
    return checks


def candidate_events(s: SystemState) -> list[v.Event]:
    events: list[v.Event] = []
    for name, module in MACHINES.items():
        events.extend(module.candidate_events(getattr(s, name)))
    return events
