"""Recorded runs are behaviours of System (`nucleus trace check`, nucleus/trace/check.py): Init
holds on the first state and each step is a Next step of the spec itself; a step the spec does
not allow is refused, naming it, its action and the variables that differ."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nucleus.trace import check

RECORDED = sorted((Path(__file__).resolve().parents[2] / "traces" / "recorded").glob("*.itf.json"))


def nucleus(*args):
    return subprocess.run([sys.executable, "-m", "nucleus", "trace", "check", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.name)
def test_every_recorded_run_is_a_behaviour_of_its_spec(path):
    verdict = check.check_file(str(path))
    assert verdict.ok, str(verdict)
    assert verdict.module in ("System", "Join") and verdict.steps > 5


def test_recorded_runs_exceed_the_model_bound_and_still_fit():
    runs = [p for p in RECORDED if json.loads(p.read_text())["#meta"]["module"] == "System"]
    assert runs
    assert all(json.loads(p.read_text())["states"][0]["fs_total"] > 3 for p in runs)


def edited(tmp_path, index, **changes):
    """A recorded run with state `index` edited by hand."""
    source = next(p for p in RECORDED if p.name.startswith("run-limits"))
    doc = json.loads(source.read_text())
    doc["states"][index].update(changes)
    out = tmp_path / "edited.itf.json"
    out.write_text(json.dumps(doc))
    return out, doc


def test_an_impossible_step_is_refused_naming_it(tmp_path):
    # The step after Prepared claims the container started while its security level changed.
    doc = json.loads(next(p for p in RECORDED if p.name.startswith("run-limits")).read_text())
    start = next(i for i, s in enumerate(doc["states"]) if s["event"]["name"] == "Start")
    path, _ = edited(tmp_path, start, lc_security="none")
    verdict = check.check_file(str(path))
    assert not verdict.ok and verdict.index == start and verdict.action == "lc.Start"
    assert verdict.differences == ('lc_security is "none" where the spec allows "enforced"',)
    proc = nucleus(str(path), str(RECORDED[0]))
    assert proc.returncode == 1
    assert f"step {start} (lc.Start) is not a step of System" in proc.stderr
    assert 'lc_security is "none"' in proc.stderr
    assert "1 of 2 traces are behaviours of their spec" in proc.stdout


def test_a_first_state_outside_init_is_refused(tmp_path):
    path, _ = edited(tmp_path, 0, lc_status="running")
    verdict = check.check_file(str(path))
    assert verdict.index == 0 and 'lc_status is "running" where the spec allows "none"' in verdict.differences


def test_the_cli_accepts_the_recorded_runs_and_refuses_unreadable_input(tmp_path):
    proc = nucleus(*map(str, RECORDED))
    assert proc.returncode == 0, proc.stderr
    assert f"{len(RECORDED)} of {len(RECORDED)} traces are behaviours" in proc.stdout
    bad = tmp_path / "bad.itf.json"
    bad.write_text("{not json")
    proc = nucleus(str(bad))
    assert proc.returncode == 125 and f"trace '{bad}': not JSON" in proc.stderr
    proc = nucleus("--formal", str(tmp_path / "absent"), str(RECORDED[0]))
    assert proc.returncode == 125 and "--formal" in proc.stderr


def test_a_run_with_more_attachments_is_checked_at_its_own_number(tmp_path):
    """The bridged run records one more attachment (net_extra 1): it is a behaviour of System
    at NetExtra 1, not at 0 (its attach step is none of that instance's), and a trace whose
    number changes on the way is no run's."""
    source = next(p for p in RECORDED if p.name.startswith("run-bridge"))
    doc = json.loads(source.read_text())
    assert {s["net_extra"] for s in doc["states"]} == {1}
    assert any(s["event"]["arg"] == "attach" for s in doc["states"])
    as_if_none = tmp_path / "none.itf.json"
    as_if_none.write_text(json.dumps({**doc, "states": [{**s, "net_extra": 0} for s in doc["states"]]}))
    verdict = check.check_file(str(as_if_none))
    assert not verdict.ok and verdict.action == "net.Done(attach)", str(verdict)
    changing = tmp_path / "changing.itf.json"
    changing.write_text(json.dumps({**doc, "states": [{**s, "net_extra": 2 if i else 1}
                                                      for i, s in enumerate(doc["states"])]}))
    with pytest.raises(check.Unreadable, match="net_extra changes within the trace"):
        check.check_file(str(changing))
