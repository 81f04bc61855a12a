"""The OCI machine's reachable states, walked exhaustively from formal/Oci.tla's initial state and
compared, step by step, with the spec itself as the built-in checker evaluates it: in every
reachable state the code accepts exactly the steps the spec allows, with the same successor, and
keeps every invariant; the intents it issues are the ones the runtime carries out."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest

from nucleus.machines import oci
from nucleus.machines.base import Refused, Step
from nucleus.tla.model import Model
from nucleus.vocab import oci as ov

FORMAL = Path(__file__).resolve().parents[2] / "formal"


def plain(value: object) -> object:
    return dict(value.m) if hasattr(value, "m") else value


@pytest.fixture(scope="module")
def walk() -> dict[str, list[tuple[ov.OciEvent, Step | Refused]]]:
    model = Model("Oci", FORMAL)
    names = model.variables
    at = names.index("event")
    seen: dict[str, list[tuple[ov.OciEvent, Step | Refused]]] = {}
    queue = deque(model.initial_states())
    for init in queue:
        assert oci.is_initial(oci.from_tla({"oci_status": init[names.index("oci_status")]}))
    while queue:
        spec_state = queue.popleft()
        status = spec_state[names.index("oci_status")]
        if status in seen:
            continue
        s = oci.from_tla({"oci_status": status})
        assert oci.to_tla(s) == {"oci_status": status}, "from_tla and to_tla disagree"
        outs = [(e, oci.step(s, e)) for e in oci.candidate_events(s)]
        seen[status] = outs
        code = {((e.name, e.tla_arg()), r.state.status) for e, r in outs if isinstance(r, Step)}
        allowed = {}
        for after in model.successors(spec_state):
            event = plain(after[at])
            allowed[((event["name"], event["arg"]), after[names.index("oci_status")])] = after
        assert code == set(allowed), f"the code and formal/Oci.tla disagree in {status}"
        queue.extend(allowed.values())
    return seen


def test_oci_agrees_with_spec_and_keeps_its_invariants(walk):
    assert set(walk) == set(oci.STATUSES)
    for status in walk:
        for inv in oci.INVARIANTS:
            assert inv(oci.OciState(status)), f"{inv.__name__} fails in {status}"


def test_oci_covers_every_action_and_refuses_with_a_reason(walk):
    taken = {e.name for outs in walk.values() for e, r in outs if isinstance(r, Step)}
    assert taken == {e.__name__ for e in ov.EVENTS}
    refused = dict(((status, e.name, e.tla_arg()), r) for status, outs in walk.items() for e, r in outs)
    assert refused[("stopped", "Start", "")] == Refused(
        "cannot start the container: it is stopped (start is allowed only from created)")
    assert refused[("running", "Delete", "")] == Refused(
        "cannot delete the container: it is running (delete is allowed only from created or stopped, "
        "or with --force while running)")


def test_each_operation_asks_the_runtime_for_what_runc_does(walk):
    intents = {(status, e.name, e.tla_arg()): r.intents for status, outs in walk.items() for e, r in outs
               if isinstance(r, Step)}
    assert intents[("created", "Start", "")] == (ov.Proceed(),)
    assert intents[("created", "Kill", "15")] == (ov.Cancel(15),)  # the waiting init never starts
    assert intents[("running", "Kill", "15")] == (ov.Signal(15),)
    assert intents[("running", "Exec", "")] == (ov.Join(),)
    assert intents[("running", "Delete", "force")] == (ov.Signal(oci.SIGKILL),)
    assert intents[("created", "Delete", "")] == (ov.Cancel(oci.SIGKILL),)
    assert intents[("stopped", "Delete", "")] == (ov.Release(),)
    assert intents[("creating", "CreateFailed", "")] == (ov.Release(),)
