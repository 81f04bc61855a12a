"""A bridged container through the driver with the fake executor: every network intent failed in
turn ends with the container failed and everything the network made torn down (the teardown
names exactly what was made, the failed step's own included); a clean run tears down the whole
bridge at cleanup. With an egress policy too: its rules and proxy come before the link is up."""

from __future__ import annotations

import pytest

from nucleus import vocab as v
from nucleus.driver import Driver, FakeExecutor
from nucleus.machines import filesystem, isolation, lifecycle, network, resources, security, system
from nucleus.machines.base import Step
from tests.model.walking import NET_EGRESS, NET_PLANNED
from tests.unit.machine_support import CGROUP
from tests.unit.system_support import WORKLOAD

NETWORKS = {"bridge": NET_PLANNED, "egress": {**NET_PLANNED, **NET_EGRESS}}


def bridged(kind: str, rootless: bool = False) -> system.SystemState:
    return system.initial(
        isolation.initial(rootless=rootless), filesystem.initial((v.MakeDirs("/new", ("etc",)),), "/new"),
        security.initial(), resources.initial(False, **CGROUP), lifecycle.initial(WORKLOAD),
        net=network.initial(**NETWORKS[kind]),
    )


def checked(d: Driver) -> None:
    broken = [name for name, check in system.all_invariants() if not check(d.state)]
    assert not broken, broken


def net_intents(kind: str) -> list[str]:
    ex = FakeExecutor()
    d = Driver(system, bridged(kind), ex)
    d.feed(v.Create())
    d.settle()
    return [i.name for i in ex.performed if i.reports is not None and i.reports[0] == "net"]


@pytest.mark.parametrize("kind", list(NETWORKS))
@pytest.mark.parametrize("rootless", [False, True])
def test_a_clean_run_sets_the_network_up_before_the_root_and_tears_it_down_last(kind, rootless):
    ex = FakeExecutor()
    d = Driver(system, bridged(kind, rootless), ex)
    d.feed(v.Create())
    d.settle()
    assert d.state.lc.status == "created" and d.state.net.phase == "ready"
    names = [i.name for i in ex.performed]
    # The network after loopback, before the root is built; its container side before the
    # user namespace is entered (the setup process still holds the host's capabilities).
    assert names.index("LoopbackUp") < names.index("NetBridge") < names.index("NetRoute") < names.index("MakeDirs")
    if not rootless:
        assert names.index("NetRoute") < names.index("EnterUserNamespace")
    for e in (v.Start(), v.Exit(0)):
        assert isinstance(d.feed(e), Step)
    d.settle()
    checked(d)
    assert (d.state.lc.cleaned, d.state.net.phase, d.state.net.held) == (True, "released", frozenset())
    teardown = ex.performed[-1]
    expected = ("bridge", "veth", "nat") + (("egress", "proxy") if kind == "egress" else ())
    assert isinstance(teardown, v.NetTeardown) and teardown.held == expected
    assert [i.name for i in ex.performed][-2:] == ["RemoveCgroup", "NetTeardown"]  # no process is left


@pytest.mark.parametrize("kind", list(NETWORKS))
def test_a_failure_at_every_network_step_removes_what_came_before(kind):
    keys = net_intents(kind)
    assert keys == [n for n in ("NetBridge", "NetVeth", "NetNat", "NetEgress", "NetProxy", "NetAddress",
                                "NetLinkUp", "NetRoute") if kind == "egress" or n not in ("NetEgress", "NetProxy")]
    for position, name in enumerate(keys):
        ex = FakeExecutor(fail={name: (1, f"{name} failed: Operation not permitted")})
        d = Driver(system, bridged(kind), ex)
        d.feed(v.Create())
        d.settle()
        checked(d)
        assert (d.state.lc.status, d.state.lc.cleaned, d.state.net.phase) == ("failed", True, "released"), name
        performed = [i.name for i in ex.performed]
        assert "ExecWorkload" not in performed and "FsBegin" not in performed
        host_made = [n for n in keys[:position + 1] if v.INTENTS[n].where == "host"]
        steps = tuple(v.INTENTS[n].reports[1] for n in host_made)
        teardown = ex.performed[-1]
        assert isinstance(teardown, v.NetTeardown) and teardown.held == steps, name
        assert performed[-3:-1] == ["Cleanup", "RemoveCgroup"]


def test_a_failed_teardown_leaks_until_rm_force_releases_again():
    ex = FakeExecutor(fail={"NetTeardown#1": (16, "Device or resource busy")})
    d = Driver(system, bridged("bridge"), ex)
    d.feed(v.Create())
    d.settle()
    for e in (v.Start(), v.Exit(0)):
        d.feed(e)
    d.settle()
    assert (d.state.lc.cleaned, d.state.net.phase) == (False, "leaked")
    assert system.advance(d.state) is None
    d.require(v.NetRelease())
    d.settle()
    assert (d.state.lc.cleaned, d.state.net.phase) == (True, "released")
    assert [i.name for i in ex.performed].count("NetTeardown") == 2


@pytest.mark.parametrize("name", ["NetBridge", "NetVeth", "NetNat", "NetAddress", "NetRoute"])
def test_rm_force_after_the_supervisor_died_during_a_network_step(name):
    """What `rm --force` does (Lost, then settle) abandons the step, and the teardown removes it
    with everything before it."""
    class Withholding(FakeExecutor):
        def perform(self, intents):
            if any(i.name == name for i in intents):
                self.performed.extend(intents)
                return []
            return super().perform(intents)

    d = Driver(system, bridged("bridge"), Withholding())
    d.feed(v.Create())
    d.settle()
    assert network.under_way(d.state.net) == v.INTENTS[name].reports[1]
    ex = FakeExecutor()
    d.executor = ex
    d.require(v.Lost())
    d.settle()
    checked(d)
    assert (d.state.lc.status, d.state.lc.cleaned, d.state.net.phase) == ("failed", True, "released")
    teardown = ex.performed[-1]
    assert isinstance(teardown, v.NetTeardown)
    assert set(teardown.held) == {s for s in network.HOST_STEPS if s in ("bridge", "veth", "nat")
                                  and network.BRIDGE_PLAN.index(s) <= network.BRIDGE_PLAN.index(
                                      v.INTENTS[name].reports[1])}
