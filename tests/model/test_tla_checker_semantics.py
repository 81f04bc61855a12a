"""What the built-in TLA+ checker evaluates beyond formal/'s specs, and how it fails: a sample of
operators checked against TLC's figures (tests/data/tla/Kitchen.tla), the .cfg's forms, and
the errors TLC also stops at, each named with its place."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nucleus.tla.errors import SpecError
from nucleus.tla.explore import Result, check, format_violation
from nucleus.tla.model import Model

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "tla"


def checked(tmp_path: Path, body: str, cfg: str, extends: str = "Naturals") -> tuple[Model, Result]:
    (tmp_path / "M.tla").write_text(f"---- MODULE M ----\nEXTENDS {extends}\n{body}\n====\n")
    (tmp_path / "M.cfg").write_text(cfg)
    model = Model("M", tmp_path)
    return model, check(model)


COUNTER = "VARIABLE x\nInit == x = 0\nNext == x < 3 /\\ x' = x + 1\n"


def test_the_sample_has_the_states_tlc_finds():
    # TLC2 Version 2026.12.02.133825: 336 distinct states, 1248 generated, depth 9; Inv and the
    # action property hold. The sample has CONSTANTS with model values, INSTANCE ... WITH,
    # SPECIFICATION, EXCEPT and @, LET, CASE, CHOOSE, SUBSET, UNION, \X, Seq, function and
    # record sets, :> and @@.
    model = Model("Kitchen", SAMPLE)
    result = check(model)
    assert result.violation is None
    assert (result.distinct, result.generated, result.depth) == (336, 1248, 9)
    assert [name for name, _ in model.action_properties] == ["ScoreMoves"]


def test_a_violated_invariant_has_a_shortest_counterexample(tmp_path):
    model, result = checked(tmp_path, COUNTER + "Small == x < 2\n", "INIT Init\nNEXT Next\nINVARIANT Small\n")
    assert result.violation is not None
    assert [s[0] for s in result.violation.trace] == [0, 1, 2]
    assert format_violation(model, result.violation).splitlines() == [
        "Invariant Small is violated in state 3 of this behaviour:",
        "State 1:", "  /\\ x = 0",
        "State 2 (changed):", "  /\\ x = 1",
        "State 3 (changed):", "  /\\ x = 2",
    ]


def test_a_deadlock_is_reported_unless_the_cfg_says_otherwise(tmp_path):
    _, result = checked(tmp_path, COUNTER, "INIT Init\nNEXT Next\n")
    assert result.violation is not None and result.violation.kind == "deadlock"
    assert result.violation.headline() == "Deadlock: state 4 of this behaviour has no successor"
    _, result = checked(tmp_path, COUNTER, "INIT Init\nNEXT Next\nCHECK_DEADLOCK FALSE\n")
    assert result.violation is None and result.distinct == 4


def test_properties_in_their_safety_forms(tmp_path):
    body = COUNTER + ("Up == [][x' > x]_x\nAlways == [](x <= 3)\nStart == x = 0\n"
                      "Both == Up /\\ Always\nDown == [][x' < x]_x\n")
    model, result = checked(tmp_path, body, "INIT Init\nNEXT Next\nPROPERTY Both Start\nCHECK_DEADLOCK FALSE\n")
    assert result.violation is None
    assert [n for n, _ in model.action_properties] == ["Both"]
    assert [n for n, _ in model.invariants] == ["Both"] and [n for n, _ in model.initial_checks] == ["Start"]
    _, result = checked(tmp_path, body, "INIT Init\nNEXT Next\nPROPERTY Down\nCHECK_DEADLOCK FALSE\n")
    assert result.violation is not None
    assert result.violation.headline() == "Action property Down is violated by step 1 -> 2 of this behaviour"


def test_liveness_other_than_leads_to_is_refused_not_skipped(tmp_path):
    with pytest.raises(SpecError, match="PROPERTY Live: only safety properties"):
        checked(tmp_path, COUNTER + "Live == <>(x = 3)\n", "INIT Init\nNEXT Next\nPROPERTY Live\n")
    body = COUNTER + "Spec == Init /\\ [][Next]_x /\\ SF_x(Next)\nLive == (x = 0) ~> (x = 3)\n"
    with pytest.raises(SpecError, match="strong fairness is not checked"):
        checked(tmp_path, body, "SPECIFICATION Spec\nPROPERTY Live\nCHECK_DEADLOCK FALSE\n")


LEADS_TO = "SPECIFICATION Spec\nPROPERTY Live\nCHECK_DEADLOCK FALSE\n"


def test_leads_to_without_fairness_fails_by_stuttering(tmp_path):
    body = COUNTER + "Spec == Init /\\ [][Next]_x\nLive == (x = 0) ~> (x = 3)\n"
    model, result = checked(tmp_path, body, LEADS_TO)
    assert result.violation is not None and result.violation.kind == "liveness"
    assert ([s[0] for s in result.violation.trace], result.violation.loop) == ([0], 0)
    assert format_violation(model, result.violation).splitlines() == [
        "Temporal property Live is violated by this behaviour of 1 states, which then stutters in state 1 "
        "forever:", "State 1:", "  /\\ x = 0", "Stuttering.",
    ]


def test_leads_to_holds_under_weak_fairness(tmp_path):
    body = COUNTER + "Spec == Init /\\ [][Next]_x /\\ WF_x(Next)\nLive == (x = 0) ~> (x = 3)\n"
    _, result = checked(tmp_path, body, LEADS_TO)
    assert result.violation is None and result.distinct == 4


# 0 and 1 alternate; from 1 the behaviour may also go to 2 (Go) and stay there.
TOGGLE = ("VARIABLE x\nInit == x = 0\nFlip == x < 2 /\\ x' = 1 - x\nGo == x = 1 /\\ x' = 2\n"
          "Next == Flip \\/ Go\nLive == (x = 0) ~> (x = 2)\n")


@pytest.mark.parametrize("fairness", ["WF_x(Next)", "WF_x(Flip) /\\ WF_x(Go)"])
def test_a_fair_cycle_that_never_reaches_q_is_a_counterexample(tmp_path, fairness):
    # Weak fairness is kept by going round 0 -> 1 -> 0 forever: Next is taken all the time, and
    # Go is disabled in 0 on every round (weak fairness asks only that it be taken when it
    # stays enabled).
    model, result = checked(tmp_path, TOGGLE + f"Spec == Init /\\ [][Next]_x /\\ {fairness}\n", LEADS_TO)
    assert result.violation is not None and result.violation.kind == "liveness"
    assert ([s[0] for s in result.violation.trace], result.violation.loop) == ([0, 1], 0)
    text = format_violation(model, result.violation)
    assert text.startswith("Temporal property Live is violated by this behaviour of 2 states, which then "
                           "goes back to state 1, round and round:")
    assert text.endswith("Back to state 1.")


# From 0 to 1, where y may tick forever while Go stays enabled.
TICKING = ("VARIABLES x, y\nInit == x = 0 /\\ y = 0\nStart == x = 0 /\\ x' = 1 /\\ y' = y\n"
           "Tick == x = 1 /\\ y' = 1 - y /\\ x' = x\nGo == x = 1 /\\ x' = 2 /\\ y' = y\n"
           "Next == Start \\/ Tick \\/ Go\nLive == (x = 0) ~> (x = 2)\n")


def test_a_cycle_that_keeps_a_fair_action_enabled_is_not_a_counterexample(tmp_path):
    spec = "Spec == Init /\\ [][Next]_<<x, y>> /\\ WF_<<x, y>>(Start) /\\ WF_<<x, y>>(Go)\n"
    _, result = checked(tmp_path, TICKING + spec, LEADS_TO)
    assert result.violation is None and result.distinct == 5
    # Without Go's fairness, ticking forever is a fair behaviour that never reaches 2.
    _, result = checked(tmp_path, TICKING + spec.replace(" /\\ WF_<<x, y>>(Go)", ""), LEADS_TO)
    assert result.violation is not None
    assert ([s for s in result.violation.trace], result.violation.loop) == ([(0, 0), (1, 0), (1, 1)], 1)


def test_constants_from_the_cfg(tmp_path):
    body = ("CONSTANTS Procs, N, Pick\nVARIABLE owner\nFirst == N\nInit == owner \\in Procs\n"
            "Next == \\E p \\in Procs : owner' = p\nOk == owner \\in Procs /\\ Pick = 2\n")
    cfg = "CONSTANTS\n  Procs = {p1, p2}\n  N = 2\n  Pick <- First\nINIT Init\nNEXT Next\nINVARIANT Ok\n"
    model, result = checked(tmp_path, body, cfg)
    assert result.violation is None and (result.distinct, result.generated) == (2, 6)
    assert sorted(model.show_state(s)[0] for s in model.initial_states()) == ["/\\ owner = p1", "/\\ owner = p2"]
    with pytest.raises(SpecError, match=r"M.cfg: no value for the constant\(s\) Pick"):
        checked(tmp_path, body, "CONSTANTS Procs = {p1}  N = 1\nINIT Init\nNEXT Next\n")


@pytest.mark.parametrize(("body", "message"), [
    # values of different kinds are not compared (TLC stops there too)
    (COUNTER.replace("x < 3", 'x # "a"'), r"M.tla:5:11: cannot compare an integer, 0, with a string, \"a\""),
    # a function applied outside its domain
    ("VARIABLE x\nInit == x = <<1>>\nNext == x' = <<x[2]>>\n", r"M.tla:5:17: 2 is not in the domain of <<1>>"),
    # a successor that Next leaves undetermined
    ("VARIABLES x, y\nInit == x = 0 /\\ y = 0\nNext == x' = 1\n", r"M: a Next step leaves y' undetermined"),
    # a primed variable read before it is assigned
    ("VARIABLE x\nInit == x = 0\nNext == x' > 0 /\\ x' = 1\n", r"x' is read before it is assigned"),
])
def test_an_expression_without_a_value_stops_the_check(tmp_path, body, message):
    _, result = checked(tmp_path, body, "INIT Init\nNEXT Next\nCHECK_DEADLOCK FALSE\n")
    assert result.violation is not None and result.violation.kind == "error"
    assert result.violation.headline().startswith("Error in state")
    assert re.search(message, result.violation.name), result.violation.name


def test_operators_need_their_standard_module(tmp_path):
    with pytest.raises(SpecError, match="M.tla:4:13: Len is not defined in M: it needs EXTENDS Sequences"):
        checked(tmp_path, "VARIABLE x\nInit == x = Len(<<>>)\nNext == x' = x\n", "INIT Init\nNEXT Next\n")


def test_tlc_only_operators_are_refused_where_evaluated():
    with pytest.raises(SpecError, match=r"TLCGet \(module TLC\) depends on TLC's run"):
        Model("LifecycleExport", Path(__file__).resolve().parents[2] / "formal")


def test_definitions_can_be_overridden(tmp_path):
    (tmp_path / "M.tla").write_text("---- MODULE M ----\nEXTENDS Naturals\n" + COUNTER.replace("3", "Bound")
                                    + "Bound == 3\n====\n")
    (tmp_path / "M.cfg").write_text("INIT Init\nNEXT Next\nCHECK_DEADLOCK FALSE\n")
    assert check(Model("M", tmp_path, {"Bound": "5"})).distinct == 6
    with pytest.raises(SpecError, match="--define Bonud: no such definition in M"):
        Model("M", tmp_path, {"Bonud": "5"})


def test_priming_a_definition_with_arguments(tmp_path):
    # Inc(y)' is Inc applied to y', so its parameter is read as given; Inc2(y) primes its own
    # parameter, which was taken unprimed: refused rather than got wrong.
    body = COUNTER + "Inc(y) == y + 1\nUp == [][Inc(x)' = Inc(x') /\\ x' > x]_x\n"
    _, result = checked(tmp_path, body, "INIT Init\nNEXT Next\nPROPERTY Up\nCHECK_DEADLOCK FALSE\n")
    assert result.violation is None and result.distinct == 4
    with pytest.raises(SpecError, match="M.tla:8:12: priming y, a parameter or LET definition, is not supported"):
        checked(tmp_path, body + "Inc2(y) == y'\nUp2 == [][Inc2(x) = x']_x\n",
                "INIT Init\nNEXT Next\nPROPERTY Up2\nCHECK_DEADLOCK FALSE\n")


def test_a_variable_an_instance_replaces_by_a_literal_is_unchanged(tmp_path):
    # TLC agrees: an instance whose variable y is WITH y <- 0 takes its UNCHANGED <<x, y>> steps.
    (tmp_path / "Inner.tla").write_text(
        "---- MODULE Inner ----\nEXTENDS Naturals\nVARIABLES x, y\n"
        "Step == x < 2 /\\ x' = x + 1 /\\ UNCHANGED y\nStay == x = 2 /\\ UNCHANGED <<x, y>>\n====\n")
    _, result = checked(tmp_path, "VARIABLE x\nI == INSTANCE Inner WITH y <- 0\n"
                        "Init == x = 0\nNext == I!Step \\/ I!Stay\n", "INIT Init\nNEXT Next\n")
    assert result.violation is None
    assert (result.distinct, result.generated) == (3, 4)
