"""What the tests of the built-in TLA+ checker (nucleus/tla) expect, all of it TLC's
figures (formal/README.md says how they were made):

* STATES: every spec's distinct states, states generated and depth, at the bounds the test suite
  checks (`DEFINES`: System with MaxMounts = 0 rather than the spec's 3, which `make verify`
  checks: 1,432,704 states, tens of minutes for the built-in checker; the mount plan is the
  Filesystem spec's, checked at its full bounds on its own), liveness (`~>`) included;
* PLANTS: bugs planted in a copy of formal/, each a textual change of one module, and for every
  spec the change reaches, the invariant or property violated and the length in states of the
  shortest counterexample, or None where the spec's checks still hold. Plants are checked with
  System at MaxMounts = 0 (`PLANT_DEFINES`): the shortest counterexamples have no mounts, so
  their lengths are the same as at the spec's bounds (TLC gives the same at both).

The built-in checker's runs are cached: the live comparison with TLC reuses them.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from nucleus.tla.explore import Result, check
from nucleus.tla.model import Model

FORMAL = Path(__file__).resolve().parents[2] / "formal"

TLC_VERSION = "TLC2 Version 2026.12.03.185213 (rev: cc6b616)"
# spec -> (distinct states, states generated, depth of the breadth-first search)
STATES = {
    "Lifecycle": (60, 381, 6),
    "Isolation": (37, 37, 12),
    "Filesystem": (184, 184, 8),
    "Security": (52, 52, 5),
    "Resources": (66, 92, 10),
    "Network": (371, 444, 16),
    "System": (334_452, 951_536, 47),
    "Join": (94, 94, 12),
    "Service": (16_504, 69_013, 11),
    "Topology": (1_406, 2_420, 11),
    "Server": (2_242, 15_685, 13),
    "Gvisor": (328, 872, 20),
    "Oci": (16, 61, 5),
}
DEFINES: dict[str, dict[str, str]] = {"System": {"MaxMounts": "0"}}
PLANT_DEFINES: dict[str, dict[str, str]] = {"System": {"MaxMounts": "0"}}


@functools.cache
def run(spec: str, directory: Path = FORMAL, defines: tuple[tuple[str, str], ...] = ()) -> tuple[Model, Result]:
    """The built-in checker on one spec (once per spec, directory and definitions)."""
    model = Model(spec, directory, dict(defines))
    return model, check(model)


def defines_for(spec: str, table: dict[str, dict[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(table.get(spec, {}).items()))


@dataclass(frozen=True)
class Plant:
    name: str
    module: str
    old: str
    new: str
    # spec -> (what is violated, counterexample length in states), or None: no violation
    expected: dict[str, tuple[str, int] | None]

    def apply(self, directory: Path) -> Path:
        """A copy of formal/ in `directory` with the bug planted (formal/ itself is untouched)."""
        copy = directory / f"formal-{self.name}"
        if copy.exists():
            return copy
        shutil.copytree(FORMAL, copy)
        path = copy / f"{self.module}.tla"
        text = path.read_text()
        assert text.count(self.old) == 1, f"{self.name}: formal/{self.module}.tla no longer has {self.old!r}"
        path.write_text(text.replace(self.old, self.new))
        return copy


PLANTS = (
    # System: Prepared no longer waits for security to be locked.
    Plant(
        "prepared-without-security", "System",
        '\\/ /\\ sec_phase = "locked" /\\ Contained\n',
        '\\/ /\\ Contained\n',
        {"System": ("Inv", 5)},
    ),
    # Security: a strict mode degrades a failed seccomp or Landlock like any other mode.
    Plant(
        "strict-mode-degrades", "Security",
        "IF c \\in Degradable /\\ sec_allowDegraded /\\ ~sec_strict",
        "IF c \\in Degradable /\\ sec_allowDegraded",
        # System: its strict modes never allow degraded security (ModeParameters), so the
        # machine's fail-closed guard is Security's to check.
        {"Security": ("Inv", 4), "System": None},
    ),
    # Isolation: unshare is no longer a gate, so System's isolation unshares before the setup
    # process is in its cgroup. Isolation alone still holds.
    Plant(
        "unshare-without-cgroup", "Isolation",
        'IsGate(s) == s = "unshare" \\/ (s = "enter_user" /\\ ~iso_rootless)',
        'IsGate(s) == s = "enter_user" /\\ ~iso_rootless',
        {"Isolation": None, "System": ("Inv", 8)},
    ),
    # Lifecycle: a step that brings a removed container back. System does not take it.
    Plant(
        "removed-comes-back", "Lifecycle",
        '    \\/ Remove /\\ Ev("Remove", "")\n',
        '    \\/ Remove /\\ Ev("Remove", "")\n'
        '    \\/ /\\ lc_status = "removed" /\\ lc_status\' = "stopped" /\\ lc_removed\' = FALSE\n'
        '       /\\ UNCHANGED <<lc_security, lc_cleaned>> /\\ Ev("Revive", "")\n',
        {"Lifecycle": ("NeverBackFromRemoved", 6), "System": None},
    ),
    # Resources: a leaked cgroup's removal is never tried again, so a removal that failed once
    # is never retried, and never given up on either (a liveness bug: ReleaseEnds, under Spec's
    # fairness; the counterexample stutters in its last state).
    Plant(
        "release-never-retried", "Resources",
        'Settled == {"idle", "degraded", "failed", "waiting", "ready", "leaked"}',
        'Settled == {"idle", "degraded", "failed", "waiting", "ready"}',
        {"Resources": ("ReleaseEnds", 5)},
    ),
)

BY_NAME = {p.name: p for p in PLANTS}


@functools.cache
def planted(name: str) -> Path:
    """The copy of formal/ with plant `name` (made once per test run, removed at its end)."""
    tmp = Path(tempfile.mkdtemp(prefix="nucleus-plant-"))
    atexit.register(shutil.rmtree, tmp, True)
    return BY_NAME[name].apply(tmp)


PLANT_CASES = [(p.name, spec) for p in PLANTS for spec in p.expected]
