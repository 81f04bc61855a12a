"""The built-in checker against TLC, live, where TLC is installed (the `tlc` feature: a
tla2tools.jar and java; optional: without them these tests skip): the same states for every spec at the
test suite's bounds, and the same verdicts on the planted bugs, with counterexamples of the same
length. Both must also still agree with the figures in tests/model/tla_cases.py."""

from __future__ import annotations

import re

import pytest

from tests import features
from tests.model.tla_cases import (
    BY_NAME,
    DEFINES,
    FORMAL,
    PLANT_CASES,
    PLANT_DEFINES,
    STATES,
    TLC_VERSION,
    defines_for,
    planted,
    run,
)
from tools.tla.checkers import find_tlc
from tools.tla.specs import formal_copy
from tools.tla.verify import tlc_check

pytestmark = pytest.mark.requires("tlc")


@pytest.fixture(scope="module")
def tlc():
    found = find_tlc(str(features.TLA2TOOLS))
    assert found is not None
    return found


def test_tlc_is_the_version_the_figures_come_from(tlc):
    # Another version may count differently: re-derive the figures (formal/README.md) if so.
    assert tlc.version() == TLC_VERSION


@pytest.mark.parametrize("spec", list(STATES))
def test_tlc_and_the_checker_find_the_same_states(spec, tlc, tmp_path):
    copy = formal_copy(spec, tmp_path / "formal", defines=DEFINES.get(spec))
    verdict = tlc_check(tlc, spec, 1, copy)  # one worker: TLC's depth is exact
    assert verdict.ok, verdict.detail
    _, result = run(spec, FORMAL, defines_for(spec, DEFINES))
    distinct, generated, depth = STATES[spec]
    # TLC writes large counts with thousands separators
    assert re.sub(r"(?<=\d),(?=\d{3})", "", verdict.summary) == f"{distinct} distinct states ({generated} generated), depth {depth}"
    assert (result.distinct, result.generated, result.depth) == STATES[spec]


@pytest.mark.parametrize(("plant", "spec"), PLANT_CASES)
def test_tlc_and_the_checker_agree_on_a_planted_bug(plant, spec, tlc, tmp_path):
    copy = formal_copy(spec, tmp_path / "formal", defines=PLANT_DEFINES.get(spec), source=planted(plant))
    verdict = tlc_check(tlc, spec, 1, copy)  # one worker: TLC's counterexamples are shortest
    _, result = run(spec, planted(plant), defines_for(spec, PLANT_DEFINES))
    theirs = None if verdict.ok else (verdict.violated, verdict.trace)
    ours = None if result.violation is None else (result.violation.name, len(result.violation.trace))
    assert theirs == ours == BY_NAME[plant].expected[spec], verdict.detail
