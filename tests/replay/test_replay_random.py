"""Behaviours of the specs that TLC's traces (traces/<Spec>) may miss, through the trace replay
(nucleus.trace.replay): random behaviours of each spec, taken by the built-in checker and written
as ITF, agree with the machine step by step; a step changed by hand is named where it is."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from nucleus.tla.model import Model
from nucleus.tla.values import Fn
from nucleus.trace import itf, replay

FORMAL = Path(__file__).resolve().parents[2] / "formal"


def plain(value: object) -> object:
    if isinstance(value, Fn):
        return {k: plain(x) for k, x in value.m.items()}
    return value


def walks(spec: str, count: int, depth: int, seed: int) -> list[list[dict[str, object]]]:
    model = Model(spec, FORMAL)
    rng, inits, out = random.Random(seed), model.initial_states(), []
    for _ in range(count):
        states = [rng.choice(inits)]
        while len(states) <= depth and (after := model.successors(states[-1])):
            states.append(rng.choice(after))
        out.append([{n: plain(x) for n, x in zip(model.variables, s, strict=True)} for s in states])
    return out


# spec -> (seed, depth, the action whose step is forged, a variable changed there, its forged value)
CASES = {
    "Service": (11, 25, "Ended", "svc_phase", "starting"),
    "Topology": (7, 30, "Started", "topo_phase", "down"),
    "Server": (14, 25, "Crash", "srv_socket", "live"),
    "Gvisor": (5, 12, "Deleted", "gv_sandbox", True),
    "Oci": (3, 12, "Start", "oci_status", "stopped"),
}


@pytest.mark.parametrize("spec", sorted(CASES))
def test_random_behaviours_replay_and_a_forged_step_is_named(spec):
    seed, depth, action, variable, forged = CASES[spec]
    runs = walks(spec, 40, depth, seed)
    for i, states in enumerate(runs):
        assert replay.replay(itf.parse(itf.dump(spec, states), f"walk-{i}")) is None, states
    states = next(b for b in runs if any(s["event"]["name"] == action for s in b))
    index = next(i for i, s in enumerate(states) if s["event"]["name"] == action)
    states[index] = {**states[index], variable: forged}
    divergence = replay.replay(itf.parse(itf.dump(spec, states), "forged"))
    assert divergence is not None and divergence.index == index and variable in divergence.message, divergence
