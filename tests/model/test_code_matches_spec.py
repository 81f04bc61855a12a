"""The code takes exactly the steps the specs allow, in both directions: from every reachable
state of each machine's spec (the built-in checker's, at the .cfg's bounds), the set of (action,
argument, outcome) the machine accepts equals the set Next allows (tests/model/spec_steps.py).

System is compared on a stated subset: MaxMounts = 0 (the mount plan is the Filesystem's alone,
compared in full there) and, from its 96 initial states (the service modes fix most parameters:
ModeParameters), a pairwise covering (every two parameters take every pair of values they take
together in Init in some start): 12 starts, some 15,800 states.
"""

from __future__ import annotations

import pytest

from nucleus.machines import system
from tests.model.spec_steps import MACHINES, assert_same_steps, graph, spec_init

SINGLE = ("Lifecycle", "Isolation", "Filesystem", "Security", "Resources", "Network", "Join", "Service", "Server",
          "Topology")
SYSTEM_DEFINES = (("MaxMounts", "0"),)
SYSTEM_STARTS = 0  # the pairwise covering alone


def system_graph():
    return graph("System", defines=SYSTEM_DEFINES, starts=SYSTEM_STARTS)


@pytest.mark.parametrize("spec", SINGLE)
def test_the_machine_takes_exactly_the_specs_steps(spec):
    g = graph(spec)
    assert len(g.steps) > 10 and all(g.steps[s] for s in g.initial)
    assert_same_steps(MACHINES[spec], g)


def test_the_system_takes_exactly_the_specs_steps():
    g = system_graph()
    assert len(g.initial) == 12 and len(g.steps) > 4000
    assert_same_steps(system, g)


def test_the_system_sample_covers_every_pair_of_parameter_values():
    g = system_graph()
    names = ("sys_mode", "iso_rootless", "fs_allowChroot", "fs_audit", "sec_allowDegraded", "sec_strict",
             "sec_trace", "res_required", "net_bridged", "net_user", "net_egress")
    starts = [g.values(s) for s in g.initial]
    init = spec_init("System", SYSTEM_DEFINES)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert {(s[a], s[b]) for s in starts} == {(s[a], s[b]) for s in init}, (a, b)
    assert {s["sys_mode"] for s in starts} == {"agent", "strict-agent", "production"}
    labels = {label for steps in g.steps.values() for label, _ in steps}
    assert ("lc", "Kill", "USR1") in labels
    assert {("lc", "Prepared", level) for level in ("enforced", "degraded", "traced")} <= labels
