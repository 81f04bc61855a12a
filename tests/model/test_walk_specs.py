"""What all the walks rest on: the specs' constants, parameters and invariants are the code's."""

from __future__ import annotations

import re
from dataclasses import replace

from nucleus import vocab as v
from nucleus.machines import (
    filesystem,
    isolation,
    join,
    lifecycle,
    network,
    resources,
    security,
    system,
)
from nucleus.machines.base import Step
from tests.model.spec_constants import (
    CONTROLS,
    DEGRADABLE,
    ISO_STEPS,
    NET_BRIDGE_PLAN,
    NET_EGRESS_PLAN,
    NET_HOST_STEPS,
    NET_SETTLED,
    NET_STEPS,
    PARAMETERS,
    PRIVILEGED_PLAN,
    RES_SETTLED,
    RES_STEPS,
    RES_UNDER_WAY,
    ROOTLESS_PLAN,
    SIGNALS,
    spec_strings,
    spec_text,
)


def test_spec_constants_match_the_code():
    assert set(spec_strings("Security", "Controls")) == set(CONTROLS) == set(security.CONTROLS)
    assert security.CONTROLS == CONTROLS
    assert set(security.DEGRADABLE) == set(DEGRADABLE)
    assert isolation.PRIVILEGED_PLAN == PRIVILEGED_PLAN
    assert isolation.ROOTLESS_PLAN == ROOTLESS_PLAN
    assert set(ISO_STEPS) == set(PRIVILEGED_PLAN) | set(ROOTLESS_PLAN)
    assert set(lifecycle.STATUSES) == set(spec_strings("Lifecycle", "Statuses"))
    assert set(lifecycle.LEVELS) == set(spec_strings("Lifecycle", "Levels"))
    assert set(SIGNALS) <= set(lifecycle.SIGNALS)
    assert set(isolation.PHASES) == set(spec_strings("Isolation", "Phases"))
    assert set(filesystem.PHASES) == set(spec_strings("Filesystem", "Phases"))
    assert set(security.PHASES) == set(spec_strings("Security", "Phases"))
    assert set(resources.PHASES) == set(spec_strings("Resources", "Phases"))
    assert set(resources.STEPS) == set(RES_STEPS)
    assert resources.UNDER_WAY == RES_UNDER_WAY
    assert set(resources.SETTLED) == set(RES_SETTLED)
    releasable = {
        p for p in resources.PHASES
        if isinstance(resources.step(resources.ResourcesState(phase=p), v.ResRelease()), Step)
    }
    assert releasable == set(RES_SETTLED)
    assert network.BRIDGE_PLAN == tuple(n for n in NET_BRIDGE_PLAN if n not in ("attach", "join"))
    assert network.EGRESS_PLAN == tuple(n for n in NET_EGRESS_PLAN if n not in ("attach", "join"))
    more = network.NetworkState(bridged=True, extra=1)
    assert more.plan == NET_BRIDGE_PLAN and replace(more, egress=True).plan == NET_EGRESS_PLAN
    assert network.USER_PLAN == spec_strings("Network", "UserPlan")
    assert network.USER_EGRESS_PLAN == spec_strings("Network", "UserEgressPlan")
    assert set(network.STEPS) == set(NET_STEPS) and set(network.HOST_STEPS) == set(NET_HOST_STEPS)
    assert set(network.PHASES) == set(spec_strings("Network", "Phases"))
    assert set(network.SETTLED) == set(NET_SETTLED)
    assert set(lifecycle.ACTIVE) == {"creating", "created", "running"}
    lost = spec_text("Lifecycle").split("\nLost ==", 1)[1].split("\n\n", 1)[0]
    assert set(re.findall(r'"(\w+)"', lost.split("\\/")[1])) == set(lifecycle.ACTIVE) | {"failed"}


def test_spec_parameters_are_the_machines_configuration():
    assert PARAMETERS == {
        "lc": (),
        "iso": ("iso_rootless",),
        "fs": ("fs_allowChroot", "fs_audit"),
        "sec": ("sec_allowDegraded", "sec_strict", "sec_trace"),
        "res": ("res_required",),
        "net": ("net_bridged", "net_user", "net_egress"),
        "join": ("join_degradable",),
    }
    s = system.initial(
        isolation.initial(rootless=True),
        filesystem.initial((), "/new", allow_chroot=True, audit=(("/", ("nosuid",), True),)),
        security.initial(allow_degraded=True, strict=True),
        resources.initial(required=True),
    )
    values = system.to_tla(s)
    # Trace mode is never strict: sec_trace is the filter's mode, set apart.
    booleans = [p for m in ("iso", "fs", "sec", "res") for p in PARAMETERS[m] if p != "sec_trace"]
    assert all(values[p] is True for p in booleans) and values["sec_trace"] is False
    assert security.to_tla(security.initial(seccomp_mode="trace"))["sec_trace"] is True
    assert system.to_tla(system.initial(
        isolation.initial(), filesystem.initial((), "/new"), security.initial()
    )) == {**values, **{p: False for p in booleans}}
    assert join.to_tla(join.initial(join.placeholder().steps, join.placeholder().command,
                                    frozenset({"seccomp"})))["join_degradable"] == {"seccomp"}


def test_every_invariant_of_each_spec_has_a_function_of_the_same_name():
    for module, machine in (
        ("Lifecycle", lifecycle), ("Isolation", isolation), ("Filesystem", filesystem), ("Security", security),
        ("Resources", resources), ("Network", network), ("System", system), ("Join", join),
    ):
        inv = spec_text(module).split("\nInv ==", 1)[1].split("\n\n", 1)[0]
        names = {n for n in re.findall(r"\b([A-Z]\w+)\b", inv) if "!" not in n}
        names -= {"LC", "ISO", "FS", "SEC", "RES", "NET", "Inv"}
        coded = {f.__name__ for f in machine.INVARIANTS}
        assert names == coded, f"{module}: spec Inv names {sorted(names)}, code has {sorted(coded)}"
