"""Bugs planted in a copy of formal/ (tests/model/tla_cases.py) are caught by the built-in
checker as TLC catches them: the same invariant or property violated, with a counterexample of
the same length, a shortest one; and where a plant leaves a spec's checks holding, it holds."""

from __future__ import annotations

import pytest

from nucleus.tla.explore import format_violation
from tests.model.tla_cases import (
    BY_NAME,
    FORMAL,
    PLANT_CASES,
    PLANT_DEFINES,
    defines_for,
    planted,
    run,
)
from tools.tla.__main__ import main

# The conjunct of the invariant each plant makes false first, as the checker explains it.
WHY = {
    ("prepared-without-security", "System"): "Inv > RunningRequiresIsolation",
    ("strict-mode-degrades", "Security"): "Inv > StrictNeverDegraded",
    ("unshare-without-cgroup", "System"): "Inv > NamespacesInsideCgroup",
}


@pytest.mark.parametrize(("plant", "spec"), PLANT_CASES)
def test_a_planted_bug_gets_tlcs_verdict(plant, spec):
    model, result = run(spec, planted(plant), defines_for(spec, PLANT_DEFINES))
    expected = BY_NAME[plant].expected[spec]
    if expected is None:
        assert result.violation is None, format_violation(model, result.violation)
        return
    assert result.violation is not None, f"{plant} is not caught in {spec}"
    assert (result.violation.name, len(result.violation.trace)) == expected
    trace = result.violation.trace
    assert model.is_initial(trace[0])
    assert all(model.is_step(a, b) for a, b in zip(trace, trace[1:], strict=False))
    text = format_violation(model, result.violation)
    if result.violation.kind == "liveness":
        assert f"Temporal property {expected[0]} is violated by this behaviour of {expected[1]} states" in text
    elif (plant, spec) in WHY:
        assert f"Invariant {expected[0]} is violated ({WHY[plant, spec]} is FALSE) in state {expected[1]}" in text
        assert not all(holds(trace[-1]) for _, holds in model.invariants)
    else:
        assert f"Action property {expected[0]} is violated by step {expected[1] - 1} -> {expected[1]}" in text
    assert text.count("\nState ") == expected[1]


def test_the_plants_change_only_their_copy():
    for name, _ in PLANT_CASES:
        copy = planted(name)
        plant = BY_NAME[name]
        assert plant.new in (copy / f"{plant.module}.tla").read_text()
        assert plant.old in (FORMAL / f"{plant.module}.tla").read_text()


def test_check_command_fails_on_a_plant_and_shows_the_behaviour(capsys):
    copy = planted("removed-comes-back")
    assert main(["check", "--formal", str(copy), "--spec", "Lifecycle"]) == 1
    out = capsys.readouterr().out
    assert "Lifecycle   FAILED" in out
    assert "Action property NeverBackFromRemoved is violated by step 5 -> 6 of this behaviour:" in out
    assert 'State 6 (changed):\n  /\\ lc_status = "stopped"\n  /\\ lc_removed = FALSE' in out
    assert "1 of 1 specs FAILED" in out
