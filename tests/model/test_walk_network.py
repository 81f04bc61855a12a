"""The network machine's reachable states, walked exhaustively and compared with
formal/Network.tla (see tests/model/walking.py for what every walk checks): without a bridge
there is nothing to do; with one, the host side comes before the container side, whatever a
host-side step was tried for is held until the teardown completes, and with an egress policy no
interface is up unless its rules and proxy hold."""

from __future__ import annotations

import pytest

from nucleus import vocab as v
from nucleus.machines import network
from nucleus.machines.base import Refused, Step
from tests.model.spec_constants import (
    BOOLS,
    NET_HOST_STEPS,
    NET_SETTLED,
    NET_STEPS,
    spec_strings,
)
from tests.model.spec_steps import (
    spec_init_network,
    spec_network,
)
from tests.model.walking import NET_ATTACHMENTS as ATTACHMENTS
from tests.model.walking import NET_EGRESS as EGRESS
from tests.model.walking import NET_PLANNED as PLANNED
from tests.model.walking import NET_USER as USER
from tests.model.walking import NET_USER_EGRESS as USER_EGRESS
from tests.model.walking import Walk, WalkedMachine


def net_inits() -> list[network.NetworkState]:
    """No bridge; a bridge (two plans that differ only outside the spec); a bridge with an
    egress policy; each with one and two more attachments; a user-mode network, without and
    with a policy."""
    other = {**PLANNED, "veth": v.NetVeth("br1", "nc1", "np1", "eth1"), "gateways": ()}
    more = [ATTACHMENTS[:1], ATTACHMENTS]
    return [network.initial(), network.initial(**PLANNED), network.initial(**other),
            network.initial(**PLANNED, **EGRESS), network.initial(**USER), network.initial(**USER, **USER_EGRESS),
            *(network.initial(**PLANNED, attachments=a) for a in more),
            *(network.initial(**PLANNED, **EGRESS, attachments=a) for a in more)]


def net_events(s: network.NetworkState) -> list[v.Event]:
    # The bridge step's detail: the leased addresses (the spec does not see them). Abandon is
    # System's alone (taken with Lost): test_network_a_failed_step_holds_what_came_before_and_itself.
    return [e for e in network.candidate_events(s) if not isinstance(e, v.NetAbandon)] + [
        v.NetDone("bridge", "10.88.0.2/16"), v.NetDone("proxy", "40001 40002"), v.NetDone("attach", "10.89.0.2/16")]


NET = WalkedMachine(network, "Network", "net", spec_init_network, spec_network, net_events)


@pytest.fixture(scope="module")
def net_walk() -> Walk:
    return NET.walk(net_inits())


def test_network_invariants_hold_everywhere(net_walk):
    NET.check_invariants(net_walk)


def test_network_agrees_with_spec(net_walk):
    NET.check_agrees(net_walk)
    # Without a bridge: idle, ready, released and nothing else.
    plain = {dict(k)["net_phase"] for k in net_walk.abstract_states() if not (dict(k)["net_bridged"] or dict(k)["net_user"])}
    assert plain == {"idle", "ready", "released"}


def test_network_covers_every_action(net_walk):
    expected = {("Begin", ""), ("Release", "")}
    expected |= {(a, s) for a in ("Done", "Fail") for s in NET_STEPS}
    NET.check_covers(net_walk, expected)


def test_network_teardown_removes_whatever_was_made(net_walk):
    """From every settled phase Release ends in released (nothing held) or asks the planned
    teardown to remove exactly what is held; a failed teardown leaks and may be retried."""
    for s in net_walk.states:
        r = network.step(s, v.NetRelease())
        if s.phase not in NET_SETTLED:
            assert isinstance(r, Refused)
            continue
        assert isinstance(r, Step)
        if s.held:
            (intent,) = r.intents
            assert r.state.phase == "releasing"
            assert isinstance(intent, v.NetTeardown) and set(intent.held) == s.held
            assert intent.replace(held=()) == s.teardown
        else:
            assert (r.state.phase, r.intents) == ("released", ())
    assert any(s.phase == "leaked" and s.held for s in net_walk.states)


def test_network_a_failed_step_holds_what_came_before_and_itself(net_walk):
    for s in net_walk.states:
        name = network.under_way(s)
        if name is None or name == "teardown":
            continue
        for event in (v.NetFailed(name, 1, "EPERM"), v.NetAbandon()):
            r = network.step(s, event)
            assert isinstance(r, Step) and r.state.phase == "failed"
            made = {n for n in NET_HOST_STEPS if s.has_done(n)} | ({name} & set(NET_HOST_STEPS))
            assert r.state.held == made


def test_network_container_side_after_the_host_side_and_the_policy(net_walk):
    """The intents in the order a run issues them: the host side (in the supervisor) before the
    container side (in the setup process); with egress, its rules and proxy before the link is
    up; the addresses the bridge step leased are the address step's and the NAT step's."""
    for s in net_walk.inits:
        if s.user:
            continue  # test_network_user_mode_attaches_the_stack_after_the_policy
        if not s.bridged:
            r = network.step(s, v.NetBegin())
            assert isinstance(r, Step) and (r.state.phase, r.intents) == ("ready", ())
            continue
        issued: list[v.Intent] = []
        r = network.step(s, v.NetBegin())
        while isinstance(r, Step) and r.intents:
            issued.extend(r.intents)
            (intent,) = r.intents
            r = network.step(r.state, v.NetDone(intent.reports[1], "10.88.0.2/16" if intent == s.bridge else ""))
        assert isinstance(r, Step) and r.state.phase == "ready"
        where = [i.where for i in issued]
        assert where == sorted(where, key=lambda w: w == "child")  # every host step first
        names = [i.name for i in issued]
        if s.egress:
            assert names.index("NetProxy") < names.index("NetLinkUp")
        nat = next(i for i in issued if isinstance(i, v.NetNat))
        address = next(i for i in issued if isinstance(i, v.NetAddress))
        assert nat.addresses == address.addresses == ("10.88.0.2/16",)
        assert next(i for i in issued if isinstance(i, v.NetRoute)).gateways == s.gateways


def test_network_user_mode_attaches_the_stack_after_the_policy(net_walk):
    """A user-mode network: with a policy the proxy (on the host) and then the rules inside
    come before the stack, and the rules are given the ports the proxy step reported; then the
    container side, on the stack's interface."""
    for s in (i for i in net_walk.inits if i.user):
        issued: list[v.Intent] = []
        r = network.step(s, v.NetBegin())
        while isinstance(r, Step) and r.intents:
            issued.extend(r.intents)
            (intent,) = r.intents
            r = network.step(r.state, v.NetDone(intent.reports[1], "40001 40002" if isinstance(intent, v.NetProxy) else ""))
        assert isinstance(r, Step) and r.state.phase == "ready"
        names = [i.name for i in issued]
        if s.egress:
            assert names[:3] == ["NetProxy", "NetFilter", "NetUser"]
            rules = next(i for i in issued if isinstance(i, v.NetFilter))
            assert (rules.proxy, rules.dns) == (40001, 40002)
        else:
            assert names[0] == "NetUser"
        assert names[-3:] == ["NetAddress", "NetLinkUp", "NetRoute"]
        assert next(i for i in issued if isinstance(i, v.NetAddress)).addresses == ("10.0.2.100/24",)


def test_network_abstraction(net_walk):
    NET.check_abstraction(net_walk)


def test_network_is_initial_holds_exactly_on_the_spec_init():
    states = [
        {"net_bridged": b, "net_user": u, "net_egress": e, "net_extra": x, "net_phase": p, "net_done": d,
         "net_held": h}
        for b in BOOLS for u in BOOLS for e in BOOLS if not (b and u) and (b or u or not e)
        for x in ((0, 1, 2) if b else (0,))
        for p in spec_strings("Network", "Phases") for d in (0, 1) for h in (frozenset(), frozenset({"veth"}))
    ]
    NET.check_is_initial(states)


def test_network_more_attachments_come_before_the_policy_and_inside_before_the_route():
    """Two more attachments with an egress policy: each attach step's intent in turn (its
    addresses leased), the policy over every attachment's addresses and bridges, each join with
    the addresses its attach leased, the route last; the teardown names every attachment."""
    planned = PLANNED["teardown"].replace(attached=tuple((a.bridge, a.host) for a in ATTACHMENTS))
    s = network.initial(**{**PLANNED, "teardown": planned}, **EGRESS, attachments=ATTACHMENTS)
    details = {"bridge": "10.88.0.2/16", "egress": "40001 40002"}
    leased = iter(("10.89.0.2/16", "10.90.0.2/16"))
    r = network.step(s, v.NetBegin())
    seen: list[v.Intent] = []
    while isinstance(r, Step) and r.intents:
        (intent,) = r.intents
        seen.append(intent)
        name = intent.reports[1] if intent.reports else ""
        detail = next(leased) if name == "attach" else details.get(name, "")
        r = network.step(r.state, v.NetDone(name, detail))
    assert isinstance(r, Step) and r.state.phase == "ready"
    assert [type(i).__name__ for i in seen] == [
        "NetBridge", "NetVeth", "NetNat", "NetAttach", "NetAttach", "NetEgress", "NetProxy", "NetAddress",
        "NetLinkUp", "NetJoin", "NetJoin", "NetRoute"]
    assert seen[3:5] == list(ATTACHMENTS)
    egress = seen[5]
    assert isinstance(egress, v.NetEgress)
    assert egress.addresses == ("10.88.0.2/16", "10.89.0.2/16", "10.90.0.2/16")
    assert egress.more_bridges == ("nt1", "nt2")
    assert seen[9:11] == [v.NetJoin("eth1", ("10.89.0.2/16",)), v.NetJoin("eth2", ("10.90.0.2/16",))]
    released = network.step(r.state, v.NetRelease())
    assert isinstance(released, Step)
    (teardown,) = released.intents
    assert isinstance(teardown, v.NetTeardown) and "attach" in teardown.held
    assert teardown.attached == (("nt1", "ncccc1"), ("nt2", "ncccc2"))


def test_network_more_attachments_need_a_bridge():
    with pytest.raises(ValueError, match="first bridge"):
        network.initial(attachments=ATTACHMENTS[:1])
    with pytest.raises(ValueError, match="at most 8"):
        network.initial(**PLANNED, attachments=ATTACHMENTS * 5)
