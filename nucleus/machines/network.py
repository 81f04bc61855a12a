"""The container's network: formal/Network.tla.

Without a bridge (--network none: a network namespace of its own with only lo, which isolation
brings up; --network host: the host's) the plan is empty. With a bridge, the host side comes
first, carried out by the supervisor in the host's network namespace: the bridge and the
container's leased addresses, the veth pair (one end moved into the container's namespace), NAT
and forwarding, and with an egress policy its rules and its proxy. Then the container side,
carried out by the setup process inside the container's namespace while it still holds the
capabilities the host granted it: the address, the link up, the default route. So with an
egress policy no interface of the container is up before the policy is in force.

A user-mode network (--network user: pasta or slirp4netns, for runs without root) has no
bridge: its host side is the user-mode stack's process (`usernet`), which the supervisor starts
once the container's namespace exists and which attaches its interface there. With an egress
policy the proxy comes first, then the policy's rules are made inside the container's namespace
by the setup process (`filter`: it holds CAP_NET_ADMIN over that namespace, which the workload
never gets back), and only then is the stack attached.

A bridged container may be attached to more bridges than its first (`extra` of them: a compose
service on several networks): each is one host step, `attach` (its bridge and address lease,
and a veth pair into the container; no published port, no route: it reaches that network's
subnets only),
after the first bridge's NAT and before the egress policy, which covers every attachment's
addresses; and one step inside, `join` (the interface's address, the link up), after the first
interface is up and before the default route, which goes through the first.

What a host-side step makes stays on the host until the teardown removes it (`held`). A step
that fails, or is abandoned with its supervisor, may have left part of what it makes, so it
counts as held too: the teardown after a failure removes what came before. A teardown that
fails leaves the network "leaked" until a later Release (nucleus rm --force).
"""

from __future__ import annotations

from dataclasses import field, replace

from nucleus import vocab as v
from nucleus.frozen import frozen
from nucleus.machines.base import Refused, Step, spec_set

BRIDGE_PLAN = ("bridge", "veth", "nat", "address", "up", "route")
EGRESS_PLAN = ("bridge", "veth", "nat", "egress", "proxy", "address", "up", "route")
MAX_EXTRA = 8  # attachments beyond the first (the spec checks 2: formal/Network.tla's MaxExtra)
USER_PLAN = ("usernet", "address", "up", "route")
USER_EGRESS_PLAN = ("proxy", "filter", "usernet", "address", "up", "route")
STEPS = ("bridge", "veth", "nat", "attach", "egress", "proxy", "usernet", "filter", "address", "up", "join",
         "route", "teardown")
HOST_STEPS = ("bridge", "veth", "nat", "attach", "egress", "proxy", "usernet")
POLICY_STEPS = ("egress", "filter", "proxy")
PHASES = ("idle", "running", "ready", "failed", "releasing", "released", "leaked")
SETTLED = ("idle", "ready", "failed", "leaked")


@frozen
class NetworkState:
    bridged: bool = False
    user: bool = False
    egress: bool = False
    extra: int = 0  # attachments beyond the first
    phase: str = "idle"
    done: int = 0  # how many plan steps have completed
    held: frozenset[str] = frozenset()  # the host-side steps whose making the teardown undoes
    # Not part of the spec's abstraction: the planned intents, and the addresses the bridge
    # step leased (the container side and the NAT and egress rules are about them); the proxy's
    # intent takes the ports the egress step leased.
    bridge: v.NetBridge = field(default_factory=v.NetBridge)
    veth: v.NetVeth = field(default_factory=v.NetVeth)
    nat: v.NetNat = field(default_factory=v.NetNat)
    rules: v.NetEgress = field(default_factory=v.NetEgress)
    proxy: v.NetProxy = field(default_factory=v.NetProxy)
    gateways: tuple[str, ...] = ()
    up: v.NetLinkUp = field(default_factory=v.NetLinkUp)
    teardown: v.NetTeardown = field(default_factory=v.NetTeardown)
    addresses: tuple[str, ...] = ()
    usernet: v.NetUser = field(default_factory=v.NetUser)
    filter: v.NetFilter = field(default_factory=v.NetFilter)
    # Each more attachment's intent, and the addresses its attach step leased (in order).
    attachments: tuple[v.NetAttach, ...] = ()
    attached: tuple[tuple[str, ...], ...] = ()

    @property
    def plan(self) -> tuple[str, ...]:
        if self.user:
            return USER_EGRESS_PLAN if self.egress else USER_PLAN
        if not self.bridged:
            return ()
        plan = EGRESS_PLAN if self.egress else BRIDGE_PLAN
        nat, up = plan.index("nat") + 1, plan.index("up") + 1  # more attachments: after nat, joins after up
        return (*plan[:nat], *("attach",) * self.extra, *plan[nat:up], *("join",) * self.extra, *plan[up:])

    def has_done(self, step_name: str) -> bool:
        plan = self.plan
        return step_name in plan and plan.index(step_name) < self.done

    def done_count(self, step_name: str) -> int:
        """How many of the steps done are `step_name` (the spec's DoneCount)."""
        return self.plan[:self.done].count(step_name)


def initial(bridge: v.NetBridge | None = None, veth: v.NetVeth | None = None,
            nat: v.NetNat | None = None, gateways: tuple[str, ...] = (),
            teardown: v.NetTeardown | None = None, rules: v.NetEgress | None = None,
            proxy: v.NetProxy | None = None, up: v.NetLinkUp | None = None,
            usernet: v.NetUser | None = None, addresses: tuple[str, ...] = (),
            filter_: v.NetFilter | None = None, attachments: tuple[v.NetAttach, ...] = ()) -> NetworkState:
    """No bridge without a bridge step planned; an egress policy with its rules and proxy; more
    attachments beside a bridge (`attachments`). A user-mode stack (`usernet`) with the
    container's fixed `addresses`, and with a policy its proxy and the rules inside (`filter_`)."""
    if attachments and bridge is None:
        raise ValueError("more attachments need a first bridge")
    if len(attachments) > MAX_EXTRA:
        raise ValueError(f"at most {MAX_EXTRA} more attachments")
    if usernet is not None:
        return NetworkState(
            user=True, egress=proxy is not None, usernet=usernet, addresses=addresses,
            proxy=proxy or v.NetProxy(), filter=filter_ or v.NetFilter(), gateways=gateways,
            up=up or v.NetLinkUp(usernet.inside), teardown=teardown or v.NetTeardown(),
        )
    return NetworkState(
        bridged=bridge is not None, egress=bridge is not None and rules is not None,
        extra=len(attachments), attachments=attachments,
        bridge=bridge or v.NetBridge(), veth=veth or v.NetVeth(), nat=nat or v.NetNat(),
        rules=rules or v.NetEgress(), proxy=proxy or v.NetProxy(), gateways=gateways,
        up=up or v.NetLinkUp((veth or v.NetVeth()).inside), teardown=teardown or v.NetTeardown(),
    )


def under_way(state: NetworkState) -> str | None:
    """The step whose outcome is awaited (the spec's UnderWay), or None."""
    if state.phase == "running":
        return state.plan[state.done]
    return "teardown" if state.phase == "releasing" else None


def _intent(state: NetworkState, step_name: str) -> v.Intent:
    if step_name in ("attach", "join"):  # the n-th more attachment (placeholders where unplanned)
        n = state.done_count(step_name)
        planned = state.attachments[n] if n < len(state.attachments) else v.NetAttach()
        if step_name == "attach":
            return planned
        return v.NetJoin(planned.inside, state.attached[n] if n < len(state.attached) else (), planned.sysctls)
    link = state.usernet.inside if state.user else state.veth.inside
    everywhere = state.addresses + tuple(a for leased in state.attached for a in leased)
    intents: dict[str, v.Intent] = {
        "bridge": state.bridge, "veth": state.veth, "nat": state.nat.replace(addresses=state.addresses),
        "egress": state.rules.replace(addresses=everywhere,
                                      more_bridges=tuple(a.bridge for a in state.attachments)),
        "proxy": state.proxy,
        "usernet": state.usernet, "filter": state.filter.replace(proxy=state.proxy.port, dns=state.proxy.dns_port),
        "address": v.NetAddress(link, state.addresses), "up": state.up,
        "route": v.NetRoute(link, state.gateways),
        "teardown": state.teardown.replace(held=tuple(s for s in HOST_STEPS if s in state.held)),
    }
    return intents[step_name]


def _leased(proxy: v.NetProxy, detail: str) -> v.NetProxy:
    """The proxy's intent with the ports the egress step leased ("PROXY DNS")."""
    ports = [int(p) for p in detail.split() if p.isdigit()]
    return proxy.replace(port=ports[0], dns_port=ports[1]) if len(ports) == 2 else proxy


def _made(state: NetworkState, step_name: str) -> frozenset[str]:
    return state.held | {step_name} if step_name in HOST_STEPS else state.held


def _advance(state: NetworkState) -> Step:
    """After a step completed (or at Begin): finish, or ask for the next step."""
    if state.done == len(state.plan):
        return Step(replace(state, phase="ready"))
    return Step(replace(state, phase="running"), (_intent(state, state.plan[state.done]),))


def _unfinished(state: NetworkState, step_name: str) -> Step:
    if step_name == "teardown":
        return Step(replace(state, phase="leaked"))
    return Step(replace(state, phase="failed", held=_made(state, step_name)))


def step(state: NetworkState, event: v.Event) -> Step | Refused:
    p = state.phase
    match event:
        case v.NetBegin():
            if p != "idle":
                return Refused(f"cannot Begin the network: it is {p} (Begin is allowed only from idle)")
            return _advance(state)
        case v.NetRelease():
            if p not in SETTLED:
                return Refused(f"cannot Release the network: it is {p} (Release is allowed only when no "
                               "step is under way)")
            if not state.held:
                return Step(replace(state, phase="released"))
            return Step(replace(state, phase="releasing"), (_intent(state, "teardown"),))
        case v.NetAbandon():
            name = under_way(state)
            if name is None:
                return Refused(f"cannot Abandon the network: it is {p} (Abandon is allowed only while a "
                               "step is under way)")
            return _unfinished(state, name)
        case v.NetDone(step=name) | v.NetFailed(step=name):
            expected = under_way(state)
            if name != expected:
                return Refused(
                    f"cannot {v.action_name(event)} network step {name!r}: it is {p}"
                    + (f" (the step under way is {expected!r})" if expected else "")
                )
            if isinstance(event, v.NetFailed):
                return _unfinished(state, name)
            if name == "teardown":
                return Step(replace(state, phase="released", held=frozenset()))
            after = replace(state, done=state.done + 1, held=_made(state, name))
            if name == "bridge":
                after = replace(after, addresses=tuple(event.detail.split()))
            if name == "attach":
                after = replace(after, attached=(*state.attached, tuple(event.detail.split())))
            if name == "egress" or (name == "proxy" and state.user):
                after = replace(after, proxy=_leased(state.proxy, event.detail))
            return _advance(after)
    return Refused(f"the network has no action {event.name}")


def is_initial(state: NetworkState) -> bool:
    return state.phase == "idle" and state.done == 0 and not state.held


def to_tla(state: NetworkState) -> dict[str, object]:
    return {"net_bridged": state.bridged, "net_user": state.user, "net_egress": state.egress,
            "net_extra": state.extra, "net_phase": state.phase,
            "net_done": state.done, "net_held": state.held}


def composed_tla(state: NetworkState) -> dict[str, object]:
    """The variables as a spec that composes this machine at a fixed number of more attachments
    sees them (System at its NetExtra, 0 when model-checked; Gvisor at 0): `net_extra` only
    where there are some, so that a real run's trace records its number."""
    values = to_tla(state)
    if not state.extra:
        del values["net_extra"]
    return values


def from_tla(values: dict[str, object], base: NetworkState | None = None) -> NetworkState:
    """The state the spec's variables describe; the planned intents from `base`."""
    done = values["net_done"]
    # absent where a spec composes this machine at a fixed number (System, Gvisor): the plan's
    extra = values.get("net_extra", base.extra if base else 0)
    assert isinstance(done, int) and isinstance(extra, int)
    return replace(
        base or NetworkState(), bridged=bool(values["net_bridged"]), user=bool(values.get("net_user", False)),
        egress=bool(values["net_egress"]), extra=extra,
        phase=str(values["net_phase"]), done=done, held=spec_set(values["net_held"]),
    )


# Invariants: the same names as in formal/Network.tla.
def TypeOK(s: NetworkState) -> bool:  # noqa: N802
    return (s.phase in PHASES and 0 <= s.done <= len(s.plan) and s.held <= frozenset(HOST_STEPS)
            and 0 <= s.extra <= MAX_EXTRA)


def EgressNeedsLink(s: NetworkState) -> bool:  # noqa: N802
    """An egress policy needs a link of the container's own (a bridge's veth or a user-mode stack)."""
    return not s.egress or s.bridged or s.user


def OneLink(s: NetworkState) -> bool:  # noqa: N802
    return not (s.bridged and s.user)


def ExtraNeedsBridge(s: NetworkState) -> bool:  # noqa: N802
    """More attachments only beside a first bridge."""
    return s.extra == 0 or s.bridged


def ReadyMeansComplete(s: NetworkState) -> bool:  # noqa: N802
    return s.phase != "ready" or s.done == len(s.plan)


def NoInterfaceUpWithoutPolicy(s: NetworkState) -> bool:  # noqa: N802
    """With an egress policy, an interface is up only while the policy's rules and proxy hold."""
    return not (s.egress and (s.has_done("up") or s.has_done("join")) and s.phase != "released") or all(
        s.has_done(n) and (n not in HOST_STEPS or n in s.held) for n in POLICY_STEPS if n in s.plan)


def InsideAfterLink(s: NetworkState) -> bool:  # noqa: N802
    return not s.has_done("address") or s.has_done("veth") or s.has_done("usernet")


def JoinAfterAttach(s: NetworkState) -> bool:  # noqa: N802
    """Each more interface gets its address and comes up only once its veth is in the
    container's namespace, and after the first interface."""
    return s.done_count("join") <= s.done_count("attach") and (not s.has_done("join") or s.has_done("up"))


def StackAfterFilter(s: NetworkState) -> bool:  # noqa: N802
    """A user-mode stack is attached only once the policy's rules are in force inside."""
    return not (s.egress and s.has_done("usernet")) or s.has_done("filter")


def RouteAfterUp(s: NetworkState) -> bool:  # noqa: N802
    return not s.has_done("route") or (s.has_done("up") and s.has_done("address"))


def NothingMadeIsForgotten(s: NetworkState) -> bool:  # noqa: N802
    return s.phase == "released" or all(name in s.held for name in HOST_STEPS if s.has_done(name))


def ReleasedHoldsNothing(s: NetworkState) -> bool:  # noqa: N802
    """The teardown removes every rule and link the network made."""
    return s.phase != "released" or not s.held


INVARIANTS = (
    TypeOK, EgressNeedsLink, OneLink, ExtraNeedsBridge, ReadyMeansComplete, NoInterfaceUpWithoutPolicy,
    InsideAfterLink, JoinAfterAttach, StackAfterFilter, RouteAfterUp, NothingMadeIsForgotten,
    ReleasedHoldsNothing,
)


def candidate_events(state: NetworkState) -> list[v.Event]:
    return [v.NetBegin(), v.NetRelease(), v.NetAbandon()] + [
        v.NetDone(n) for n in STEPS] + [v.NetFailed(n) for n in STEPS]
