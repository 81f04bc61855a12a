"""A container run by gVisor's runsc (`nucleus run --runtime gvisor`): formal/Gvisor.tla.

The supervisor writes the OCI bundle, then `runsc run` makes the sandbox (runsc's state under
nucleus's own --root, its cgroups, its processes) and runs the workload. With a bridge, the
container's network namespace comes first (held by a process of the supervisor's, named in the
bundle), and the Network machine (`net`) makes the host side and the link, addresses and routes
in it before runsc run, whose netstack takes the link over. When the workload ends, when a
setup step fails, or when the supervisor is lost, the sandbox is deleted (runsc delete
--force), then the network released, then the namespace's process ended, then the bundle
removed; the container is removed only once nothing is left. A cleanup step that fails leaves
its part in place: Sweep (nucleus rm --force) tries again. The Network machine's Begin and
Release are internal steps (`advance`).
"""

from __future__ import annotations

from dataclasses import field, replace

from nucleus import vocab as v
from nucleus.frozen import frozen
from nucleus.machines import network
from nucleus.machines.base import Refused, Step, refuse
from nucleus.vocab import gvisor as gv

STATUSES = ("none", "creating", "running", "stopped", "failed", "removed")
STEPS = ("bundle", "netns", "run")
SIGNALS = ("TERM", "KILL", "INT", "HUP", "QUIT", "USR1", "USR2")
ENDED = ("stopped", "failed")
ACTIVE = ("creating", "running")


@frozen
class GvisorPlan:
    """What the machine asks of runsc, planned once (nucleus.plan.gvisor): the bundle to write,
    the run, and runsc's command line with its global flags (for kill and delete)."""

    bundle: gv.WriteBundle = field(default_factory=gv.WriteBundle)
    netns: gv.MakeNetns = field(default_factory=gv.MakeNetns)
    run: gv.RunSandbox = field(default_factory=gv.RunSandbox)
    runsc: tuple[str, ...] = ("runsc",)
    cid: str = "gvisor"

    def signal(self, sig: str) -> gv.SignalSandbox:
        return gv.SignalSandbox(argv=(*self.runsc, "kill", self.cid, sig))

    def exec(self, event: gv.Exec) -> gv.ExecSandbox:
        user = ("--user", event.user) if event.user else ()
        cwd = ("--cwd", event.cwd) if event.cwd else ()
        env = tuple(arg for key, value in event.env for arg in ("--env", f"{key}={value}"))
        return gv.ExecSandbox(argv=(*self.runsc, "exec", *user, *cwd, *env, self.cid, *event.command),
                              stdin=event.stdin)

    def delete(self) -> gv.DeleteSandbox:
        return gv.DeleteSandbox(argv=(*self.runsc, "delete", "--force", self.cid),
                                kill=(*self.runsc, "kill", "--all", self.cid, "KILL"))

    def unshare(self) -> gv.EndNetns:
        return gv.EndNetns(link=self.netns.link, holder=self.netns.holder)

    def remove(self) -> gv.RemoveBundle:
        return gv.RemoveBundle(directory=self.bundle.directory)


@frozen
class GvisorState:
    status: str = "none"
    bundle: bool = False
    sandbox: bool = False
    netns: bool = False
    net: network.NetworkState = field(default_factory=network.NetworkState)
    # Not part of the spec's abstraction: the plan, the workload's status, why a step failed.
    plan: GvisorPlan = field(default_factory=GvisorPlan)
    exit_code: int | None = None
    failure: str = ""

    @property
    def net_ready(self) -> bool:
        """The network is in place for runsc run (the spec's NetReady)."""
        return not self.net.bridged or self.net.phase == "ready"

    @property
    def net_gone(self) -> bool:
        """Nothing of the network is left (the spec's NetGone)."""
        return not self.net.bridged or self.net.phase == "released"

    @property
    def gone(self) -> bool:
        return not (self.bundle or self.sandbox or self.netns) and self.net_gone


def initial(plan: GvisorPlan, net: network.NetworkState | None = None) -> GvisorState:
    """`net`: the Network machine's initial state with a bridge (none: no network to make)."""
    return GvisorState(plan=plan, net=net or network.initial())


def _refuse(action: str, state: GvisorState, allowed: str) -> Refused:
    return refuse("the gVisor container", action, state.status, allowed)


def _cleanup(state: GvisorState) -> Step:
    """The next cleanup step of an ended container: the sandbox first, then the network (its
    Release is `advance`'s; a teardown under way is asked for again), then the namespace's
    process, then the bundle."""
    if state.sandbox:
        return Step(state, (state.plan.delete(),))
    if not state.net_gone:
        under_way = network.under_way(state.net) == "teardown"
        return Step(state, (network._intent(state.net, "teardown"),) if under_way else ())
    if state.netns:
        return Step(state, (state.plan.unshare(),))
    if state.bundle:
        return Step(state, (state.plan.remove(),))
    return Step(state)


def _run(state: GvisorState) -> Step:
    """runsc run, once the network is in place."""
    return Step(state, (state.plan.run,) if state.net_ready else ())


def _net(state: GvisorState, event: v.Event) -> Step | Refused:
    """A Network machine's event: its steps while creating (a failed one fails the container),
    its Release and teardown once ended with no sandbox left."""
    status = state.status
    if isinstance(event, v.NetBegin) and not (status == "creating" and state.netns):
        return _refuse("net.Begin", state, "while creating, in the container's network namespace")
    if isinstance(event, v.NetRelease) and not (status in ENDED and not state.sandbox and state.net.bridged):
        return _refuse("net.Release", state, "once ended, with a network and no sandbox left")
    if isinstance(event, (v.NetDone, v.NetFailed)):
        if (event.step == "teardown") != (status in ENDED) or status not in (*ENDED, "creating"):
            return _refuse(f"net.{v.action_name(event)}({event.step})", state,
                           "while creating, or its teardown once ended")
    if isinstance(event, v.NetAbandon):
        return Refused("cannot Abandon the gVisor container's network step: only Lost does")
    result = network.step(state.net, event)
    if isinstance(result, Refused):
        return result
    after = replace(state, net=result.state)
    if status == "creating":
        if isinstance(event, v.NetFailed):
            return _cleanup(replace(after, status="failed", failure=f"network step {event.step!r} failed"
                                    + (f": {event.message}" if event.message else "")))
        return Step(after, result.intents) if result.intents else _run(after)
    if result.intents:
        return Step(after, result.intents)
    return _cleanup(after) if result.state.phase == "released" else Step(after)


def step(state: GvisorState, event: v.Event) -> Step | Refused:
    if event.machine == "net":
        return _net(state, event)
    status = state.status
    match event:
        case gv.Create():
            if status != "none":
                return _refuse("Create", state, "from none")
            return Step(replace(state, status="creating"), (state.plan.bundle,))
        case gv.Written():
            if status != "creating" or state.bundle:
                return _refuse("Written", state, "while creating, before the bundle is written")
            after = replace(state, bundle=True)
            return Step(after, (state.plan.netns,)) if state.net.bridged else _run(after)
        case gv.Netns():
            if status != "creating" or not state.bundle or not state.net.bridged or state.netns:
                return _refuse("Netns", state, "while creating, with a bridge, once the bundle is written")
            return Step(replace(state, netns=True))
        case gv.Started():
            if status != "creating" or not state.bundle or state.sandbox or not state.net_ready:
                return _refuse("Started", state, "while creating, once the bundle is written and the network "
                                                 "is in place")
            return Step(replace(state, status="running", sandbox=True))
        case gv.Fail(step=name, message=message):
            if status != "creating" or name not in STEPS:
                return _refuse(f"Fail({name})", state, "while creating, at bundle, netns or run")
            under_way = {"bundle": not state.bundle,
                         "netns": state.bundle and state.net.bridged and not state.netns,
                         "run": state.bundle and not state.sandbox and state.net_ready}[name]
            if not under_way:
                return Refused(f"cannot Fail({name}) the gVisor container: that step is not under way")
            return _cleanup(replace(state, status="failed", sandbox=name == "run", failure=message))
        case gv.Exit(code=code):
            if status != "running":
                return _refuse("Exit", state, "while running")
            return _cleanup(replace(state, status="stopped", exit_code=code))
        case gv.Kill(signal=sig):
            if status != "running" or sig not in SIGNALS:
                return _refuse(f"Kill({sig})", state, f"while running, with one of {', '.join(SIGNALS)}")
            return Step(state, (state.plan.signal(sig),))
        case gv.Exec():
            if status != "running":
                return _refuse("Exec", state, "while running")
            return Step(state, (state.plan.exec(event),))
        case gv.Lost():
            if status not in ACTIVE:
                return _refuse("Lost", state, "while creating or running")
            net = state.net
            if network.under_way(net) is not None:
                dropped = network.step(net, v.NetAbandon())
                assert isinstance(dropped, Step)
                net = dropped.state
            return _cleanup(replace(state, status="failed", sandbox=state.bundle and state.net_ready, net=net))
        case gv.Deleted():
            if status not in ENDED or not state.sandbox:
                return _refuse("Deleted", state, "once ended, with a sandbox left")
            return _cleanup(replace(state, sandbox=False))
        case gv.Unshared():
            if status not in ENDED or not state.netns or state.sandbox or not state.net_gone:
                return _refuse("Unshared", state, "once ended, with the namespace's process and no sandbox "
                                                  "or network left")
            return _cleanup(replace(state, netns=False))
        case gv.Unbundled():
            if status not in ENDED or not state.bundle or state.sandbox or state.netns or not state.net_gone:
                return _refuse("Unbundled", state, "once ended, with the bundle and nothing else left")
            return Step(replace(state, bundle=False))
        case gv.Sweep():
            if status not in ENDED or state.gone:
                return _refuse("Sweep", state, "once ended, with something left")
            return _cleanup(state)
        case gv.Remove():
            if status not in ENDED or not state.gone:
                return _refuse("Remove", state, "once ended, with nothing left")
            return Step(replace(state, status="removed"))
    return Refused(f"the gVisor machine has no action {event.name}")


def advance(state: GvisorState) -> v.Event | None:
    """The Network machine's internal steps: Begin once the namespace is made, Release once the
    container has ended and no sandbox is left."""
    if state.status == "creating" and state.netns and state.net.phase == "idle":
        return v.NetBegin()
    if state.status in ENDED and not state.sandbox and state.net.bridged and state.net.phase in network.SETTLED:
        return v.NetRelease()
    return None


def is_initial(state: GvisorState) -> bool:
    return state.status == "none" and not (state.bundle or state.sandbox or state.netns) and network.is_initial(state.net)


def to_tla(state: GvisorState) -> dict[str, object]:
    return {"gv_status": state.status, "gv_bundle": state.bundle, "gv_sandbox": state.sandbox,
            "gv_netns": state.netns, **network.composed_tla(state.net)}


def from_tla(values: dict[str, object], base: GvisorState | None = None) -> GvisorState:
    """The state the spec's variables describe; the plans from `base` (placeholders without). A
    record written before gVisor containers had a network holds none of its variables: none."""
    base = base or GvisorState()
    net_values = {"net_bridged": False, "net_user": False, "net_egress": False, "net_phase": "idle", "net_done": 0,
                  "net_held": [], **{k: x for k, x in values.items() if k.startswith("net_")}}
    return replace(base, status=str(values["gv_status"]), bundle=bool(values["gv_bundle"]),
                   sandbox=bool(values["gv_sandbox"]), netns=bool(values.get("gv_netns", False)),
                   net=network.from_tla(net_values, base.net))


def candidate_events(state: GvisorState) -> list[v.Event]:
    return ([gv.Create(), gv.Written(), gv.Netns(), gv.Started(), gv.Exit(0), gv.Exit(1), gv.Exec(), gv.Lost(),
             gv.Deleted(), gv.Unshared(), gv.Unbundled(), gv.Sweep(), gv.Remove()]
            + [gv.Fail(step=s) for s in STEPS] + [gv.Kill(signal=s) for s in SIGNALS]
            + [v.NetBegin(), v.NetRelease()] + [v.NetDone(n) for n in network.STEPS]
            + [v.NetFailed(n) for n in network.STEPS])


# Invariants: the same names as in formal/Gvisor.tla.
def TypeOK(s: GvisorState) -> bool:  # noqa: N802
    return s.status in STATUSES and network.TypeOK(s.net)


def RunningHasSandbox(s: GvisorState) -> bool:  # noqa: N802
    return s.status != "running" or (s.sandbox and s.bundle and s.net_ready)


def SandboxNeedsBundle(s: GvisorState) -> bool:  # noqa: N802
    return not (s.sandbox or s.netns) or s.bundle


def NetworkInNamespace(s: GvisorState) -> bool:  # noqa: N802
    return s.net.phase in ("idle", "released") or s.netns


def RemovedLeavesNothing(s: GvisorState) -> bool:  # noqa: N802
    return s.status not in ("none", "removed") or (
        not (s.bundle or s.sandbox or s.netns) and s.net.phase in ("idle", "released") and not s.net.held)


INVARIANTS = (TypeOK, RunningHasSandbox, SandboxNeedsBundle, NetworkInNamespace, RemovedLeavesNothing)
