"""The service modes and trust levels mapped onto the specs' parameters (nucleus.plan.parameters),
compared with formal/System.tla's ModeParameters: every run the plan makes starts in one of the
spec's initial states, and production's own promises hold of its parameters. The mapping with a
bug planted (production not strict, its cgroup optional, the audit never requested, the chroot
fallback passed on, egress left open) fails the comparison."""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from nucleus.config import modes
from nucleus.config.container import ContainerConfig
from nucleus.facts import UNIFIED, CgroupLayout, HostFacts
from nucleus.machines import system
from nucleus.plan import parameters
from nucleus.plan.run import Artifacts, plan
from nucleus.tla.model import Model

FORMAL = Path(__file__).resolve().parents[2] / "formal"
# The variables ModeParameters constrains; the rest of an initial state is the same in every mode.
PARAMETERS = ("sys_mode", "sec_strict", "sec_allowDegraded", "sec_trace", "res_required", "fs_audit",
              "fs_allowChroot")
NETWORK = ("sys_mode", "net_bridged", "net_user", "net_egress")
V2 = CgroupLayout("v2", ((UNIFIED, "/sys/fs/cgroup"),), ("cpu", "memory", "pids"), ("cpu", "memory", "pids"),
                  None, "/sys/fs/cgroup")
FACTS = HostFacts(arch="x86_64", euid=1000, egid=100, state_root="/run/user/1000/nucleus",
                  system=(("/usr", ""), ("/bin", "usr/bin")), cgroups=V2)


@functools.cache
def spec_initial(names: tuple[str, ...]) -> frozenset[tuple[object, ...]]:
    """The spec's initial states, each seen through `names`."""
    model = Model("System", FORMAL, {"MaxMounts": "0"})
    index = [model.variables.index(n) for n in names]
    return frozenset(tuple(state[i] for i in index) for state in model.initial_states())


def requests() -> list[dict[str, object]]:
    """Every mode and trust level, with every combination of the weakening flags (validation
    refuses most of them outside agent mode; the mapping must not pass them on either way)."""
    out = []
    for mode, trust, degraded, chroot, trace in itertools.product(
            modes.SERVICE_MODES, modes.TRUST_LEVELS, (False, True), (False, True), (False, True)):
        out.append(dict(service_mode=mode, trust_level=trust, allow_degraded_security=degraded,
                        allow_chroot_fallback=chroot, seccomp_mode="trace" if trace else "enforce"))
    return out


def planned(request: dict[str, object]) -> tuple[object, ...]:
    """The spec's parameters of the run the plan makes for `request` (through nucleus.plan.run,
    as `nucleus run` plans it)."""
    config = ContainerConfig(argv=("/bin/true",), **request)  # type: ignore[arg-type]
    state = system.to_tla(plan(config, FACTS, Artifacts(seccomp_sha256="ab" * 32), "c1").state)
    return tuple(state[n] for n in PARAMETERS)


def outside_the_spec() -> list[str]:
    """The runs whose parameters are no initial state of the spec, and why."""
    allowed = spec_initial(PARAMETERS)
    found = []
    for request in requests():
        seen = planned(request)
        if seen not in allowed:
            found.append(f"{request}: {dict(zip(PARAMETERS, seen, strict=True))}")
    # A network of its own without an --egress-* policy: deny by default exactly where the spec says.
    networks = spec_initial(NETWORK)
    for mode, (bridged, user) in itertools.product(modes.SERVICE_MODES, ((True, False), (False, True))):
        seen = (mode, bridged, user, parameters.egress_denied(mode))
        if seen not in networks:
            found.append(f"{mode} on a {'bridge' if bridged else 'user-mode network'}: "
                         f"egress denied {seen[-1]}")
    return found


def test_every_mode_and_trust_level_maps_onto_an_initial_state_of_the_spec():
    assert outside_the_spec() == []


def test_every_mode_the_spec_has_is_planned_and_only_its_own_weakenings():
    # The other direction: each of the spec's parameter sets is a run the plan makes.
    assert {planned(r) for r in requests()} == spec_initial(PARAMETERS)


@pytest.mark.parametrize("mode", modes.SERVICE_MODES)
def test_an_untrusted_workload_is_never_weakened(mode):
    for request in requests():
        if request["service_mode"] == mode and request["trust_level"] == modes.UNTRUSTED:
            seen = dict(zip(PARAMETERS, planned(request), strict=True))
            assert not (seen["sec_allowDegraded"] or seen["sec_trace"] or seen["fs_allowChroot"]), request


def test_production_parameters_are_the_strictest():
    p = parameters.parameters(modes.PRODUCTION, allow_degraded_security=True, allow_chroot_fallback=True,
                              seccomp_trace=True)
    assert (p.strict, p.cgroup_required, p.audit, p.egress_denied) == (True, True, True, True)
    assert (p.allow_degraded, p.trace, p.allow_chroot) == (False, False, False)


def bug(mode: str, **wrong: object) -> Callable[..., parameters.Parameters]:
    """The mapping with `wrong` planted in `mode`'s parameters."""
    original = parameters.parameters

    def planted(service_mode: str, *args: object, **kwargs: object) -> parameters.Parameters:
        p = original(service_mode, *args, **kwargs)  # type: ignore[arg-type]
        return dataclasses.replace(p, **wrong) if service_mode == mode else p  # type: ignore[arg-type]
    return planted


@pytest.mark.parametrize("mode,wrong,found", [
    ("production", {"strict": False}, "'sec_strict': False"),
    ("production", {"cgroup_required": False}, "'res_required': False"),
    ("production", {"audit": False}, "'fs_audit': False"),
    ("production", {"allow_chroot": True}, "'fs_allowChroot': True"),
    ("strict-agent", {"cgroup_required": False}, "'res_required': False"),
    ("agent", {"cgroup_required": True}, "'res_required': True"),
])
def test_a_wrong_mapping_is_caught(monkeypatch, mode, wrong, found):
    monkeypatch.setattr(parameters, "parameters", bug(mode, **wrong))
    problems = outside_the_spec()
    assert problems and all(f"'service_mode': '{mode}'" in line for line in problems)
    assert all(found in line for line in problems)


def test_production_egress_left_open_is_caught(monkeypatch):
    monkeypatch.setattr(parameters, "egress_denied", lambda mode: False)
    assert outside_the_spec() == ["production on a bridge: egress denied False",
                                  "production on a user-mode network: egress denied False"]
