"""The comparison of the code with the specs (test_code_matches_spec.py) fails when either
side changes: bugs planted in a copy of formal/ (the spec moves, the code does not) and in the
machines (monkeypatched: the code moves, the spec does not)."""

from __future__ import annotations

import shutil

import pytest

from nucleus import vocab as v
from nucleus.machines import lifecycle, system
from nucleus.machines.base import Step
from tests.model.spec_steps import FORMAL, MACHINES, differences, graph
from tests.model.test_code_matches_spec import SYSTEM_DEFINES, SYSTEM_STARTS
from tests.model.tla_cases import planted


def planted_copy(tmp_path, module, old, new):
    copy = tmp_path / "formal"
    shutil.copytree(FORMAL, copy)
    path = copy / f"{module}.tla"
    text = path.read_text()
    assert text.count(old) == 1, f"formal/{module}.tla no longer has {old!r}"
    path.write_text(text.replace(old, new))
    return copy


def system_differences(formal=FORMAL):
    return differences(system, graph("System", formal, SYSTEM_DEFINES, SYSTEM_STARTS))


def test_a_guard_of_prepared_dropped_from_the_spec_is_caught():
    found = system_differences(planted("prepared-without-security"))
    assert found and all("lc.Prepared(" in line for line in found)
    assert "the spec takes [lc.Prepared(" in found[0]


def test_a_strict_mode_allowed_to_degrade_is_caught():
    copy = planted("strict-mode-degrades")
    found = differences(MACHINES["Security"], graph("Security", copy))
    assert found and all("sec_strict=True" in line for line in found)
    assert any("sec.Fail(seccomp)" in line for line in found)
    # System's strict modes never allow degraded security (ModeParameters): only Security's
    # comparison sees the plant.


def test_the_unshare_gate_no_longer_waiting_for_the_cgroup_is_caught(tmp_path):
    copy = planted_copy(tmp_path, "System", 'IF IsoNext = "unshare" THEN Contained', 'IF IsoNext = "unshare" THEN TRUE')
    found = system_differences(copy)
    assert found and all("iso.Resume()" in line and "iso_done=1" in line for line in found)
    # The gate taken out of Isolation itself: Isolation's and System's comparisons both fail.
    copy = planted("unshare-without-cgroup")
    assert differences(MACHINES["Isolation"], graph("Isolation", copy))
    assert system_differences(copy)


def test_a_step_added_to_the_lifecycle_is_caught():
    found = differences(lifecycle, graph("Lifecycle", planted("removed-comes-back")))
    assert len(found) == 4  # removed, at each security level it can be removed with
    assert all("the spec takes [lc.Revive() -> lc_status='stopped', lc_removed=False]" in line for line in found)


def test_a_signal_the_spec_does_not_send_is_caught(tmp_path):
    copy = planted_copy(tmp_path, "Lifecycle", '"USR1", ', "")
    found = differences(lifecycle, graph("Lifecycle", copy))
    assert found and all("the code takes [lc.Kill(USR1) -> unchanged]" in line for line in found)


def test_code_that_starts_a_stopped_container_is_caught(monkeypatch):
    step = lifecycle.step

    def starts_from_stopped(state, event):
        if isinstance(event, v.Start) and state.status == "stopped":
            return Step(lifecycle.replace(state, status="running"))
        return step(state, event)
    monkeypatch.setattr(lifecycle, "step", starts_from_stopped)
    found = differences(lifecycle, graph("Lifecycle"))
    assert found and all("lc_status='stopped'" in line and "the code takes [lc.Start() -> lc_status='running']" in line
                         for line in found)
    assert system_differences()


def test_code_that_forwards_a_signal_the_spec_does_not_is_caught(monkeypatch):
    monkeypatch.setattr(lifecycle, "SIGNALS", (*lifecycle.SIGNALS, "STOP"))
    found = differences(lifecycle, graph("Lifecycle"))
    assert found and all("the code takes [lc.Kill(STOP) -> unchanged]" in line for line in found)


@pytest.mark.parametrize("spec", ["Lifecycle", "Security"])
def test_the_unplanted_specs_agree(spec):
    assert differences(MACHINES[spec], graph(spec)) == []
