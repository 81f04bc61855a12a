"""The built-in TLA+ checker (nucleus/tla) on the specs in formal/: it finds the states TLC
finds, every invariant and property of the .cfg files holds, and the traces TLC made (traces/,
not traces/recorded/) are still behaviours of the specs, so a spec change they no longer follow
fails here, without Java."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.model.tla_cases import DEFINES, FORMAL, STATES, defines_for, run
from tools.tla.__main__ import main
from tools.tla.check import conform
from tools.tla.errors import ToolError
from tools.tla.specs import ROOT, all_specs, formal_copy

TRACES = ROOT / "traces"


def test_every_spec_has_tlc_figures():
    assert set(all_specs()) == set(STATES), "a new spec needs its figures in tests/model/tla_cases.py"


@pytest.mark.parametrize("spec", list(STATES))
def test_the_checker_finds_the_states_tlc_finds(spec):
    model, result = run(spec, FORMAL, defines_for(spec, DEFINES))
    assert result.violation is None, result.violation.headline()
    assert (result.distinct, result.generated, result.depth) == STATES[spec]
    assert model.invariants and (model.action_properties or spec == "System")
    assert [p.name for p in model.leads_to] == LEADS_TO.get(spec, [])


# The liveness properties the .cfg files check, under their SPECIFICATION's fairness.
LEADS_TO = {"Lifecycle": ["CleanupEventually"], "Resources": ["ReleaseEnds"], "System": ["CleanupEventually"]}


def test_a_copy_for_tlc_asks_for_the_graph_alone_or_at_other_bounds(tmp_path):
    """What `verify` and `coverage` hand TLC: System's state graph without its properties and
    fairness, and its properties at smaller bounds."""
    graph = formal_copy("System", tmp_path / "graph", graph_only=True)
    assert (graph / "System.cfg").read_text().splitlines()[:3] == ["INIT Init", "NEXT Next", "INVARIANT Inv"]
    assert "PROPERTY" not in (graph / "System.cfg").read_text()
    assert (graph / "Lifecycle.cfg").read_text() == (FORMAL / "Lifecycle.cfg").read_text()
    bounded = formal_copy("System", tmp_path / "bounded", defines={"MaxMounts": "0"})
    assert "\nMaxMounts == 0\n" in (bounded / "Filesystem.tla").read_text()
    assert (bounded / "System.cfg").read_text() == (FORMAL / "System.cfg").read_text()
    with pytest.raises(ToolError, match="no definition NoSuch"):
        formal_copy("System", tmp_path / "none", defines={"NoSuch": "1"})


def test_check_command_reports_each_spec(capsys):
    assert main(["check", "--spec", "Lifecycle", "--spec", "Join"]) == 0
    out = capsys.readouterr().out
    for spec in ("Lifecycle", "Join"):
        distinct, generated, depth = STATES[spec]
        assert f"{spec:<11} ok {distinct:>7} distinct states ({generated} generated), depth {depth}" in out
    assert "[Inv, NeverBackFromRemoved, CleanupEventually]" in out
    assert "2 of 2 specs hold" in out


def test_check_command_refuses_an_unknown_definition(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["check", "--spec", "Security", "--define", "MaxMount=1"])
    assert exit_.value.code == 2
    assert "--define MaxMount: no such definition in Security or their modules" in capsys.readouterr().err


def test_verify_without_tlc_uses_the_builtin_checker(capsys):
    assert main(["verify", "--checker", "builtin", "--spec", "Security", "--spec", "Resources"]) == 0
    out = capsys.readouterr().out
    assert "checker: the built-in checker" in out and "checker: TLC" not in out
    assert "Security    ok      52 distinct states" in out
    assert "2 of 2 specs hold" in out


def test_committed_traces_are_behaviours_of_the_specs():
    verdicts = conform(TRACES)
    bad = [v for v in verdicts if not v.ok]
    assert not bad, f"{len(bad)} traces are not behaviours, e.g. {bad[0].path}: {bad[0].problem}"
    folders = {v.path.parent.name for v in verdicts}
    assert folders == set(all_specs()), folders
    assert all(v.steps > 0 for v in verdicts)


@pytest.fixture
def lifecycle_copy(tmp_path):
    copy = tmp_path / "formal"
    shutil.copytree(FORMAL, copy)
    return copy


def edit(path, old, new):
    text = path.read_text()
    assert text.count(old) == 1, f"{path.name} no longer has {old!r}"
    path.write_text(text.replace(old, new))


def test_a_changed_next_fails_the_traces_that_take_the_old_step(lifecycle_copy):
    # Kill may no longer forward TERM: the traces that forward it are not behaviours any more.
    edit(lifecycle_copy / "Lifecycle.tla", 'Signals == {"TERM", ', 'Signals == {')
    verdicts = conform(TRACES, lifecycle_copy, ["Lifecycle"])
    bad = [v for v in verdicts if not v.ok]
    assert bad and len(bad) < len(verdicts)
    for v in bad:
        assert "is not a Next step of Lifecycle" in v.problem
        assert '/\\ event = [arg |-> "TERM", m |-> "lc", name |-> "Kill"]' in v.problem


def test_a_changed_init_fails_every_trace(lifecycle_copy):
    edit(lifecycle_copy / "Lifecycle.tla", "    /\\ lc_cleaned = TRUE\n", "    /\\ lc_cleaned = FALSE\n")
    verdicts = conform(TRACES, lifecycle_copy, ["Lifecycle"])
    assert verdicts and all(v.problem.startswith("state 0 does not satisfy Init") for v in verdicts)


def test_a_tampered_trace_is_not_a_behaviour(tmp_path):
    source = TRACES / "Security" / "trace_w0_1.itf.json"
    doc = json.loads(source.read_text())
    last = doc["states"][-1]
    last["sec_strict"] = not last["sec_strict"]  # a parameter no step changes
    target = tmp_path / "Security" / source.name
    target.parent.mkdir()
    target.write_text(json.dumps(doc))
    (verdict,) = conform(tmp_path)
    steps = len(doc["states"]) - 1
    assert verdict.steps == steps
    assert verdict.problem.startswith(f"step {steps - 1} -> {steps} is not a Next step of Security")
    assert f"/\\ sec_strict = {'TRUE' if last['sec_strict'] else 'FALSE'}" in verdict.problem


def test_a_trace_with_other_variables_is_refused(tmp_path):
    source = TRACES / "Join" / "trace_w0_1.itf.json"
    doc = json.loads(source.read_text())
    del doc["states"][0]["join_done"]
    target = tmp_path / "Join" / source.name
    target.parent.mkdir()
    target.write_text(json.dumps(doc))
    (verdict,) = conform(tmp_path)
    assert "cannot read it: state 0 has the variables" in verdict.problem
    assert "(missing: join_done)" in verdict.problem
