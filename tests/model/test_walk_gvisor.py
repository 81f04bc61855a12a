"""The Gvisor machine's reachable states, walked exhaustively from the initial state of
formal/Gvisor.tla and compared, step by step, with the spec itself as the built-in checker
evaluates it (no transliteration): in every reachable state the code accepts exactly the steps
the spec allows, with the same successor variables, asks for the cleanup in the spec's order
(the sandbox, then the network, then the namespace's process, then the bundle), and keeps every
invariant."""

from __future__ import annotations

import pytest

from nucleus import vocab as v
from nucleus.machines import gvisor
from nucleus.machines.base import Step
from nucleus.vocab import gvisor as gv
from tests.model.walking import walk_spec


@pytest.fixture(scope="module")
def walk():
    return walk_spec("Gvisor", gvisor)


def test_gvisor_agrees_with_spec_and_keeps_its_invariants(walk):
    assert len(walk) == 171
    for values in walk:
        s = gvisor.from_tla(dict(values))
        for inv in gvisor.INVARIANTS:
            assert inv(s), f"{inv.__name__} fails in {dict(values)}"


def test_gvisor_covers_every_action_and_status(walk):
    taken = {(e.name, e.tla_arg(), r.state.status) for outs in walk.values() for e, r in outs if isinstance(r, Step)}
    # a user-mode network's steps, and more attachments': never under gVisor
    never = {"usernet", "filter", "attach", "join"}
    assert {(a, arg) for a, arg, _ in taken} == (
        {(e.name, e.tla_arg()) for e in gvisor.candidate_events(gvisor.GvisorState())
         if e.name != "Exit" and e.tla_arg() not in never}
        | {("Exit", "")})
    assert {s for _, _, s in taken} == set(gvisor.STATUSES) - {"none"}


def test_the_cleanup_goes_sandbox_network_namespace_bundle(walk):
    """Every step that ends with a sandbox left asks runsc to delete it; then the network is
    released (an internal step, `advance`) and torn down; the namespace's process is ended only
    once the network is released, and the bundle's removal is asked for only once nothing else
    is left."""
    for values, outs in walk.items():
        for event, r in outs:
            if not isinstance(r, Step):
                continue
            kinds = [type(i) for i in r.intents]
            s = r.state
            if s.status in gvisor.ENDED and event.name not in ("Unbundled", "Remove", "NetFailed"):
                expected = ([gv.DeleteSandbox] if s.sandbox else
                            [v.NetTeardown] if s.net.phase == "releasing" else
                            [] if not s.net_gone else
                            [gv.EndNetns] if s.netns else
                            [gv.RemoveBundle] if s.bundle else [])
                assert kinds == expected, (dict(values), event)
                if not s.sandbox and not s.net_gone and s.net.phase != "releasing":
                    assert gvisor.advance(s) == v.NetRelease(), (dict(values), event)
            if gv.EndNetns in kinds:
                assert not s.sandbox and s.net_gone, (dict(values), event)
            if gv.RemoveBundle in kinds:
                assert not s.sandbox and not s.netns and s.net_gone, (dict(values), event)


def test_runsc_runs_only_once_the_network_is_in_place(walk):
    for values, outs in walk.items():
        for event, r in outs:
            if isinstance(r, Step) and any(isinstance(i, gv.RunSandbox) for i in r.intents):
                assert r.state.net_ready and (r.state.netns or not r.state.net.bridged), (dict(values), event)


def test_a_signal_is_passed_to_runsc_kill_with_the_plan_s_flags():
    plan = gvisor.GvisorPlan(runsc=("/usr/bin/runsc", "--root", "/r"), cid="c1")
    s = gvisor.GvisorState(status="running", bundle=True, sandbox=True, plan=plan)
    r = gvisor.step(s, gv.Kill(signal="HUP"))
    assert isinstance(r, Step) and r.intents == (gv.SignalSandbox(argv=("/usr/bin/runsc", "--root", "/r", "kill", "c1", "HUP")),)
    refused = gvisor.step(s, gv.Remove())
    assert not isinstance(refused, Step) and "Remove is allowed only once ended" in refused.why
