"""Plain data (nucleus.plain): what a recorded trace keeps of a run's inputs, and what a
container's record keeps of its plan, comes back as the same values, through JSON; data that
does not fit the types is refused with a message saying what was expected."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from nucleus import vocab as v
from nucleus.config.container import ContainerConfig
from nucleus.config.resources import IoLimit, Limits, validate_limits
from nucleus.facts import UNIFIED, CgroupLayout, HostFacts
from nucleus.plain import from_plain, rebuild, to_plain
from nucleus.plan import cgroups
from nucleus.plan.join import JoinInputs
from nucleus.plan.run import Artifacts, JoinPolicy, RunInputs

V2 = CgroupLayout("v2", ((UNIFIED, "/sys/fs/cgroup"),), ("cpu", "io", "memory", "pids"), ("cpu", "memory", "pids"),
                  None, "/sys/fs/cgroup", "cgroup2 at /sys/fs/cgroup offers cpu io memory pids")
V1 = CgroupLayout("v1", (("cpu", "/sys/fs/cgroup/cpu"), ("memory", "/sys/fs/cgroup/memory"),
                         ("pids", "/sys/fs/cgroup/pids")), ("cpu", "memory", "pids"), swap_accounting=True)
LIMITS = validate_limits(memory="512M", swap="256M", cpus="1.5", cpu_weight=200, pids=64,
                         io=["8:0 rbps=10M wiops=100", "259:1 riops=5"], nofile=4096, cgroup_parent="nucleus/agents")
CONFIG = ContainerConfig(
    argv=("/bin/sh", "-c", "echo hi"), name="web", hostname="box", context="/src", env=(("A", "1"), ("B", "")),
    workdir="/srv", rootless=True, time_namespace=True, service_mode="production", limits=LIMITS,
    seccomp_mode="trace", seccomp_log="/tmp/t.ndjson", require_kernel_lockdown="integrity",
)
FACTS = HostFacts(arch="aarch64", euid=1000, egid=100, state_root="/run/user/1000/nucleus",
                  system=(("/usr", ""), ("/bin", "usr/bin")), store_paths=("/nix/store/abc-x",), cgroups=V2,
                  landlock_abi=4, lockdown="none [integrity] confidentiality", seccomp_filter=True,
                  max_user_namespaces=63000, rootfs_realpath="/nix/store/abc-rootfs")
POLICY = JoinPolicy(
    rootless=False, namespaces=("user", "cgroup", "ipc", "uts", "net", "pid", "mnt"), seccomp_sha256="ab" * 32, seccomp_log_denied=True, seccomp_mode="enforce",
    caps_keep=("CAP_CHOWN",), landlock_rules=(("/usr", ("execute", "read")),), landlock_min_abi=3,
    env=(("PATH", "/bin"),), cwd="/", rlimits=(1024, 64, 65536), cgroup_procs=("/g/cgroup.procs",),
)


def through_json(kind: Any, value: Any) -> Any:
    data = json.loads(json.dumps(to_plain(value)))
    return from_plain(kind, data)


def test_container_config_with_limits_and_io_round_trips():
    back = through_json(ContainerConfig, CONFIG)
    assert back == CONFIG
    assert back.limits.io == (IoLimit(8, 0, wiops=100, rbps=10 << 20), IoLimit(259, 1, riops=5))
    assert type(back.limits.io[0]) is IoLimit and back.limits.io[0].device == "8:0"
    assert back.limits.cpus == 1.5 and back.limits.memory_high == LIMITS.memory_high
    assert through_json(ContainerConfig, ContainerConfig(argv=("/bin/true",))) == ContainerConfig(argv=("/bin/true",))


def test_limits_plain_form():
    data = to_plain(LIMITS)
    assert data["io"] == [[8, 0, None, 100, 10485760, None], [259, 1, 5, None, None, None]]
    assert data["cpus"] == 1.5 and data["cgroup_parent"] == "nucleus/agents"
    assert rebuild(Limits, {**data, "cpus": 2}).cpus == 2.0  # a whole number of CPUs in JSON


@pytest.mark.parametrize("layout", [V2, V1, CgroupLayout(reason="no cgroup2 mount"), None], ids=["v2", "v1", "none", "unprobed"])
def test_host_facts_with_a_cgroup_layout_round_trip(layout):
    facts = dataclasses.replace(FACTS, cgroups=layout)
    back = through_json(HostFacts, facts)
    assert back == facts and back.cgroups == layout
    assert back.cgroup_backend == (None if layout is None else layout.backend)
    assert through_json(HostFacts, HostFacts()) == HostFacts()  # nothing probed: every None kept


@pytest.mark.parametrize("layout", [V2, V1, CgroupLayout(reason="none")], ids=["v2", "v1", "none"])
def test_a_cgroup_plan_with_its_intents_round_trips(layout):
    p = cgroups.plan(layout, "nucleus", "c1", validate_limits(memory="512M", pids=64))
    data = json.loads(json.dumps(to_plain(p)))
    assert data["create"]["t"] == "CreateCgroup"  # intents travel in their wire form
    back = from_plain(cgroups.CgroupPlan, data)
    assert back == p
    assert isinstance(back.limits, v.SetCgroupLimits) and hash(back.limits) == hash(p.limits)


def test_join_policy_and_join_inputs_round_trip():
    assert through_json(JoinPolicy, POLICY) == POLICY
    inputs = JoinInputs(POLICY, 42, 1000, ("/bin/sh",), frozenset({"seccomp", "landlock"}), True, "web")
    data = json.loads(json.dumps(to_plain(inputs)))
    assert data["degraded"] == ["landlock", "seccomp"]  # a set as a sorted list
    back = from_plain(JoinInputs, data)
    assert back == inputs and back.plan() == inputs.plan()


def test_run_inputs_round_trip_and_plan_the_same_run():
    inputs = RunInputs(ContainerConfig(argv=("/bin/true",), limits=validate_limits(memory="1G")),
                       FACTS, Artifacts(seccomp_sha256="cd" * 32, landlock_rules=(("/", ("readdir",)),)), "c1")
    back = through_json(RunInputs, inputs)
    assert back == inputs
    assert back.plan() == inputs.plan()


# ---------------------------------------------------------------------------------------------
# Bad data


@pytest.mark.parametrize("kind,data,message", [
    (ContainerConfig, {"argv": ["/bin/sh"], "bogus": 1}, "ContainerConfig has no field 'bogus'"),
    (ContainerConfig, {"argv": "/bin/sh"}, r"expected a list for tuple\[str, \.\.\.\], got '/bin/sh'"),
    (ContainerConfig, {"argv": ["/bin/sh"], "rootless": 1}, "expected bool, got 1"),
    (ContainerConfig, {"argv": ["/bin/sh"], "name": 5}, "expected str, got 5"),
    (ContainerConfig, ["/bin/sh"], "expected an object for ContainerConfig"),
    (Limits, {"cpus": "two"}, "expected a number, got 'two'"),
    (Limits, {"pids": True}, "expected int, got True"),
    (Limits, {"pids": None}, "expected int, got None"),
    (JoinPolicy, {**to_plain(POLICY), "rlimits": [1024, 64]}, r"^rlimits: expected 3 items, got 2$"),
    (HostFacts, {"cgroups": "v2"}, "expected an object for CgroupLayout, got 'v2'"),
    (cgroups.CgroupPlan, {**to_plain(cgroups.plan(V2, "n", "c", Limits())), "attach": v.to_wire(v.SetCgroupLimits())},
     "expected AttachCgroup, got SetCgroupLimits"),
    (cgroups.CgroupPlan, {**to_plain(cgroups.plan(V2, "n", "c", Limits())), "attach": {"t": "Reboot", "f": {}}},
     "unknown message type 'Reboot'"),
    (JoinInputs, {**to_plain(JoinInputs(POLICY, 2, 1000, (), frozenset(), True)), "degraded": "seccomp"},
     "expected a list for frozenset"),
])
def test_bad_data_is_refused_with_what_was_expected(kind, data, message):
    with pytest.raises(ValueError, match=message):
        from_plain(kind, data)


def test_what_cannot_be_plain_data_is_refused():
    with pytest.raises(TypeError, match="cannot turn object into plain data"):
        to_plain(object())
    with pytest.raises(TypeError, match="cannot rebuild a value of"):
        from_plain(complex, 1)
    with pytest.raises(TypeError, match="ambiguous union"):
        from_plain(int | str, 1)


def test_a_missing_field_is_refused_by_name():
    with pytest.raises(ValueError, match="argv"):
        from_plain(ContainerConfig, {"name": "web"})


def test_a_named_tuple_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="IoLimit"):
        from_plain(IoLimit, [8, 0, 1, 2, 3, 4, 999])


def test_an_error_names_the_field_where_the_bad_value_is():
    with pytest.raises(ValueError, match=r"limits\.pids"):
        from_plain(ContainerConfig, {"argv": ["/bin/sh"], "limits": {"pids": "many"}})
