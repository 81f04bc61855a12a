"""The run plan (nucleus.plan.run): a container configuration, the host facts and the prepared
artifacts in; every machine's initial state out, with the data each intent will carry (id maps,
namespaces, the workload, the security controls, the cgroup writes, the mounts), and the policy a
later `attach` joins with. Pure: the same inputs always give the same plan."""

from __future__ import annotations

import dataclasses

import pytest

from nucleus import vocab as v
from nucleus.config import landlock_default, modes
from nucleus.config.container import ContainerConfig
from nucleus.config.resources import validate_limits
from nucleus.driver import Driver, FakeExecutor
from nucleus.errors import InvalidInput
from nucleus.facts import UNIFIED, CgroupLayout, HostFacts
from nucleus.machines import security, system
from nucleus.plan import cgroups
from nucleus.plan.ids import COUNT as SUBUID_COUNT
from nucleus.plan.ids import FIRST as SUBUID_BASE
from nucleus.plan.run import (
    Artifacts,
    JoinPolicy,
    RunInputs,
    plan,
    with_context,
)

V2 = CgroupLayout("v2", ((UNIFIED, "/sys/fs/cgroup"),), ("cpu", "memory", "pids"), ("cpu", "memory", "pids"),
                  None, "/sys/fs/cgroup")
SHA = "ab" * 32
RULES = (("/usr", ("execute", "read")), ("/data", ("read", "write")))
ROOT_AND_NOBODY = ("root:x:0:0:root:/home/agent:/bin/sh\n"
                   "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")


def facts(euid: int = 1000, egid: int = 100, **changes) -> HostFacts:
    base = HostFacts(arch="x86_64", euid=euid, egid=egid, state_root=f"/run/user/{euid}/nucleus",
                     system=(("/usr", ""), ("/bin", "usr/bin"), ("/lib", "usr/lib")), cgroups=V2)
    return dataclasses.replace(base, **changes)


def config(**changes) -> ContainerConfig:
    return ContainerConfig(argv=("/bin/sh", "-c", "echo hi"), **changes)


def security_intents(state: security.SecurityState) -> list[v.Intent]:
    """The three controls' intents, in order, as the machine issues them."""
    intents: list[v.Intent] = []
    step = security.step(state, v.SecBegin())
    for control in security.CONTROLS:
        intents.extend(step.intents)
        step = security.step(step.state, v.SecDone(control))
    return intents


def test_a_rootless_caller_maps_container_root_to_itself():
    p = plan(config(name="web"), facts(1000, 100), Artifacts(), "c1")
    iso = p.state.iso
    assert (iso.rootless, iso.uid_map, iso.gid_map) == (True, ((0, 1000, 1),), ((0, 100, 1),))
    assert p.join.rootless is True
    # What the container's root owns is created as the caller (root of the user namespace).
    home = [op for op in p.state.fs.plan if isinstance(op, v.MountFs) and op.target.endswith("/home/agent")]
    assert [op.data for op in home] == ["size=268435456,mode=0700,uid=0,gid=0"]


def test_host_root_maps_container_root_to_an_unprivileged_range():
    p = plan(config(), facts(0, 0), Artifacts(), "c1")
    iso = p.state.iso
    assert (iso.rootless, iso.uid_map, iso.gid_map) == (
        False, ((0, SUBUID_BASE, SUBUID_COUNT),), ((0, SUBUID_BASE, SUBUID_COUNT),),
    )
    assert (SUBUID_BASE, SUBUID_COUNT) == (100000, 65536) and p.join.rootless is False
    home = [op for op in p.state.fs.plan if isinstance(op, v.MountFs) and op.target.endswith("/home/agent")]
    assert [op.data for op in home] == ["size=268435456,mode=0700,uid=100000,gid=100000"]
    # --rootless as root: container root is host root's own ids, nothing more.
    p = plan(config(rootless=True), facts(0, 0), Artifacts(), "c1")
    assert (p.state.iso.rootless, p.state.iso.uid_map) == (True, ((0, 0, 1),))


def test_the_workload_is_planned_into_exec_workload():
    cfg = config(env=(("A", "1"), ("TERM", "dumb")), limits=validate_limits(pids=64, nofile=4096, memlock="1M"))
    p = plan(cfg, facts(), Artifacts(), "c1")
    workload = v.ExecWorkload(
        ("/bin/sh", "-c", "echo hi"),
        (("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"), ("HOME", "/home/agent"),
         ("TERM", "dumb"), ("A", "1")),
        "/home/agent",
        (4096, 64, 1 << 20),
        ("/home/agent", "/tmp"),  # the places --allow-exec may name, for a refused exec's reason
    )
    assert p.state.lc.workload == workload
    assert plan(config(workdir="/srv"), facts(), Artifacts(), "c1").state.lc.workload.cwd == "/srv"
    assert plan(config(context="/src"), facts(), Artifacts(), "c1").state.lc.workload.cwd == "/context"


def test_the_planned_run_goes_through_the_driver():
    p = plan(config(limits=validate_limits(memory="512M")), facts(), Artifacts(seccomp_sha256=SHA), "c1")
    ex = FakeExecutor()
    d = Driver(system, p.state, ex)
    d.require(v.Create())
    d.settle()
    assert (d.state.lc.status, d.state.lc.security) == ("created", "enforced")
    d.require(v.Start())
    assert ex.performed[-1] == p.state.lc.workload
    assert ex.performed[:2] == [p.cgroup.create, p.cgroup.limits]
    assert list(p.state.fs.plan) == [i for i in ex.performed if isinstance(i, v.FsOp)]


def test_security_parameters_come_from_the_artifacts():
    art = Artifacts(seccomp_sha256=SHA, seccomp_log_denied=True, caps_keep=("CAP_NET_BIND_SERVICE",),
                    landlock_rules=RULES, landlock_min_abi=2)
    p = plan(config(), facts(), art, "c1")
    # An enforced run's refusals are recorded: the program's notify form, Landlock logging on.
    assert security_intents(p.state.sec) == [
        v.DropCapabilities(("CAP_NET_BIND_SERVICE",)),
        v.LoadSeccomp(SHA, True, "notify"),
        v.ApplyLandlock(RULES, 2, log_new_exec=True),  # the policy's minimum beats the mode's (1)
    ]
    low = plan(config(), facts(), dataclasses.replace(art, landlock_min_abi=0), "c1")
    assert low.state.sec.landlock_min_abi == modes.min_landlock_abi("agent") == 1


def test_the_default_landlock_rules_follow_home_and_context():
    p = plan(config(home="/home/me"), facts(), Artifacts(seccomp_sha256=SHA), "c1")
    expected = tuple((path, tuple(sorted(access))) for path, access in
                     landlock_default.default_rules("/home/me", executable=("/home/me",)))
    assert p.state.sec.landlock_rules == expected
    # Agent mode: home and /context are executable, /tmp is not.
    assert ("/home/me", ("create", "execute", "read", "remove", "write")) in expected
    assert ("/tmp", ("create", "read", "remove", "write")) in expected
    copy = plan(config(context="/src"), facts(), Artifacts(), "c1").state.sec.landlock_rules
    bind = plan(config(context="/src", context_mode="bind"), facts(), Artifacts(), "c1").state.sec.landlock_rules
    assert ("/context", ("create", "execute", "read", "remove", "write")) in copy  # a private writable copy
    assert ("/context", ("execute", "read")) in bind  # the host's tree, read-only


def test_trace_mode_loads_the_notification_filter_and_spawns_the_tracer():
    cfg = config(seccomp_mode="trace", seccomp_log="/tmp/trace.ndjson")
    p = plan(cfg, facts(), Artifacts(seccomp_sha256="", seccomp_log_denied=False), "c1")
    assert p.state.iso.trace_log == "/tmp/trace.ndjson"
    intents = security_intents(p.state.sec)
    assert intents[1] == v.LoadSeccomp("", False, "trace")
    # A program prepared anyway is not loaded: the trace filter replaces it.
    p = plan(cfg, facts(), Artifacts(seccomp_sha256=SHA), "c1")
    assert (p.state.sec.program_sha256, p.state.sec.seccomp_mode) == ("", "trace")
    assert p.join.seccomp_mode == "trace"
    ex = FakeExecutor()
    d = Driver(system, p.state, ex)
    d.require(v.Create())
    d.settle()
    assert [i for i in ex.performed if isinstance(i, v.SpawnChild)] == [v.SpawnChild("/tmp/trace.ndjson")]
    assert p.state.iso.violations == "" and not p.state.sec.landlock_log  # no monitor in trace mode
    enforce = plan(config(), facts(), Artifacts(seccomp_sha256=SHA), "c1")
    assert (enforce.state.iso.trace_log, enforce.state.sec.seccomp_mode) == ("", "notify")
    # The monitor starts with the setup process, writing next to the container's record; a
    # later `attach` loads the plain program (its refusals are not recorded).
    assert enforce.state.iso.violations == "/run/user/1000/nucleus/containers/c1.violations"
    assert enforce.join.seccomp_mode == "enforce"


def test_the_join_policy_records_what_joining_takes():
    cfg = config(context="/src", env=(("A", "1"),), limits=validate_limits(pids=32))
    art = Artifacts(seccomp_sha256=SHA, seccomp_log_denied=True, caps_keep=("CAP_CHOWN",), landlock_rules=RULES,
                    landlock_min_abi=2)
    p = plan(cfg, facts(), art, "c1")
    assert p.join == JoinPolicy(
        rootless=True, namespaces=("user", "cgroup", "ipc", "uts", "net", "pid", "mnt"), seccomp_sha256=SHA, seccomp_log_denied=True, seccomp_mode="enforce",
        caps_keep=("CAP_CHOWN",), landlock_rules=RULES, landlock_min_abi=2, env=p.state.lc.workload.env,
        cwd="/context", rlimits=(1024, 32, 65536), cgroup_procs=("/sys/fs/cgroup/nucleus/c1/cgroup.procs",),
        places=("/context", "/home/agent", "/tmp"),
        # exec -u looks names up in the container's generated files, and holds ids to its maps.
        accounts=(ROOT_AND_NOBODY, "root:x:0:\nnogroup:x:65534:\n", ""),
        id_maps=(((0, 1000, 1),), ((0, 100, 1),)),
    )
    assert p.join.cgroup_procs == p.cgroup.attach.procs


@pytest.mark.parametrize("mode,strict,required,min_abi,hidepid", [
    ("agent", False, False, 1, ""), ("strict-agent", True, True, 1, ""), ("production", True, True, 3, "hidepid=2"),
])
def test_the_service_mode_sets_the_machines_configuration(mode, strict, required, min_abi, hidepid):
    p = plan(config(service_mode=mode), facts(), Artifacts(seccomp_sha256=SHA), "c1")
    assert (p.state.sec.strict, p.state.res.required, p.state.sec.landlock_min_abi) == (strict, required, min_abi)
    # A limit the kernel refuses fails the run exactly where cgroups are required.
    assert p.state.res.limits.strict == required
    audit = modes.mount_audit(mode, () if mode == "agent" else ("/home/agent", "/tmp"))
    assert p.state.fs.audit == tuple((r.path, tuple(r.flags), r.required) for r in audit)
    assert bool(p.state.fs.audit) == (mode == "production")
    proc = [op for op in p.state.fs.plan if isinstance(op, v.MountFs) and op.fstype == "proc"]
    assert [op.data for op in proc] == [hidepid]


def test_degraded_security_in_agent_mode_accepts_any_landlock_abi():
    p = plan(config(allow_degraded_security=True), facts(), Artifacts(), "c1")
    assert (p.state.sec.allow_degraded, p.state.sec.strict, p.state.sec.landlock_min_abi) == (True, False, 0)


def test_namespaces_hostname_and_where_the_root_is_built():
    p = plan(config(name="web"), facts(), Artifacts(), "c1")
    assert p.state.iso.namespaces == ("pid", "mount", "net", "uts", "ipc", "cgroup")
    assert p.state.iso.hostname == "web"
    assert p.rootfs_dir == "/run/user/1000/nucleus/rootfs" == p.state.fs.new_root
    p = plan(config(name="web", hostname="box", cgroup_namespace=False, time_namespace=True), facts(), Artifacts(), "c")
    assert (p.state.iso.namespaces, p.state.iso.hostname) == (("pid", "mount", "net", "uts", "ipc", "time"), "box")
    assert plan(config(), facts(), Artifacts(), "c1").state.iso.hostname == "nucleus"


def test_the_cgroup_plan_is_the_containers_own():
    cfg = config(limits=validate_limits(memory="512M", cgroup_parent="nucleus/agents"))
    p = plan(cfg, facts(), Artifacts(), "c-42")
    assert p.cgroup == cgroups.plan(V2, "nucleus/agents", "c-42", cfg.limits)
    res = p.state.res
    assert (res.create, res.limits, res.attach, res.remove) == (
        p.cgroup.create, p.cgroup.limits, p.cgroup.attach, p.cgroup.remove,
    )
    assert res.create.dirs == ("/sys/fs/cgroup/nucleus/agents/c-42",)


def test_a_limit_the_host_cannot_honour_is_refused_before_anything_happens():
    no_swap = dataclasses.replace(V2, swap_accounting=False)
    with pytest.raises(InvalidInput, match="--swap"):
        plan(config(limits=validate_limits(memory="512M", swap="1G")), facts(cgroups=no_swap), Artifacts(), "c1")


def test_the_context_is_copied_and_verified_when_a_manifest_is_given():
    manifest = (("main.py", "ab" * 32), ("lib", "dir"))
    p = plan(config(context="/src"), facts(), Artifacts(context_manifest=manifest), "c1")
    verify = [op for op in p.state.fs.plan if isinstance(op, v.VerifyTree)]
    assert [op.manifest for op in verify] == [manifest]
    assert not any(isinstance(op, v.VerifyTree) for op in plan(config(context="/src"), facts(), Artifacts(), "c1").state.fs.plan)


def test_the_plan_is_pure_and_run_inputs_plan_again():
    inputs = RunInputs(config(name="web", limits=validate_limits(memory="1G")), facts(),
                       Artifacts(seccomp_sha256=SHA, caps_keep=("CAP_CHOWN",)), "c1")
    assert inputs.plan() == inputs.plan() == plan(inputs.config, inputs.facts, inputs.artifacts, "c1")
    assert system.is_initial(inputs.plan().state)


def test_with_context_replaces_the_context_by_the_resolved_directory():
    cfg = config(context="src")
    assert with_context(cfg, None) is cfg
    assert with_context(cfg, "/home/me/src").context == "/home/me/src"


def test_a_plan_needs_the_callers_ids():
    with pytest.raises(ValueError, match="the caller's ids were not probed"):
        plan(config(), facts(euid=None, egid=None), Artifacts(), "c1")


def test_a_plan_needs_the_cgroup_layout():
    with pytest.raises(ValueError, match="cgroup"):
        plan(config(), facts(cgroups=None), Artifacts(), "c1")
