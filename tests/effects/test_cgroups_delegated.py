"""A rootless run in a cgroup delegated to its user, on the fake kernel (this machine cannot
offer one: its cgroup v2 hierarchy has no controller). The probe finds the caller's own group
on the unified hierarchy, the plan makes the container's group under it, and the effects move
nucleus itself to a leaf, enable the controllers, write the limits, attach and remove, all as
an ordinary user who may write nothing else. Where there is no such group, the strict modes
refuse the run before anything starts, saying why."""

from __future__ import annotations

import errno
import os

import pytest

from nucleus.config.mode_host import assess, check_host, host_problems
from nucleus.config.modes import ModeRequest
from nucleus.config.resources import Limits, validate_limits
from nucleus.effects import cgroups, probe
from nucleus.errors import InvalidInput
from nucleus.facts import HostFacts
from nucleus.plan import cgroups as plan_cgroups
from tests.effects.cgroup_env import MiB, build_hybrid, build_v2

UID = 1000
SCOPE = "user.slice/user-1000.slice/user@1000.service/app.slice/run-r1.scope"


def delegated_host(kernel, tmp_path, *, controllers="+cpu +io +memory +pids"):
    """A v2 host where uid 1000's scope is delegated to it, with nucleus (the supervisor, a
    fake process) in it; returns (env, the scope's directory, the supervisor's pid, the
    /proc/self/cgroup the supervisor would read)."""
    env = build_v2(kernel, tmp_path)
    path = env.top
    for part in SCOPE.split("/")[:-1]:
        path = path / part
        kernel.mkdir(str(path))
        kernel.write(str(path / "cgroup.subtree_control"), controllers)
    scope = str(path / SCOPE.rsplit("/", 1)[1])
    kernel.mkdir(scope)
    supervisor = kernel.spawn()
    kernel.write(os.path.join(scope, "cgroup.procs"), str(supervisor))
    kernel.delegate(scope)
    kernel.as_user(UID)
    proc_cgroup = tmp_path / "proc-self-cgroup"
    proc_cgroup.write_text(f"0::/{SCOPE}\n")
    return env, scope, supervisor, str(proc_cgroup)


def layout_of(env, proc_cgroup, supervisor):
    return probe.delegation(env.layout, UID, proc_cgroup, pid=supervisor)


def test_the_probe_finds_the_callers_delegated_group(kernel, tmp_path):
    env, scope, supervisor, proc_cgroup = delegated_host(kernel, tmp_path)
    layout = layout_of(env, proc_cgroup, supervisor)
    assert (layout.delegated, layout.delegated_controllers, layout.delegation) == (
        scope, ("cpu", "io", "memory", "pids"), "")


@pytest.mark.parametrize("case", ["not-delegated", "no-memory", "shared", "reserved"])
def test_the_probe_says_why_there_is_no_delegated_group(kernel, tmp_path, case):
    controllers = "+cpu +pids" if case == "no-memory" else "+cpu +io +memory +pids"
    env, scope, supervisor, proc_cgroup = delegated_host(kernel, tmp_path, controllers=controllers)
    if case == "not-delegated":
        kernel.delegated.clear()
    if case == "shared":
        kernel.as_user(0)
        shell = kernel.spawn()
        kernel.write(os.path.join(scope, "cgroup.procs"), str(shell))
        kernel.as_user(UID)
    if case == "reserved":
        with open(proc_cgroup, "w") as f:
            f.write("0::/process_api/x\n")
    layout = layout_of(env, proc_cgroup, supervisor)
    assert layout.delegated == ""
    assert layout.delegation == {
        "not-delegated": f"its cgroup {scope} is not delegated to uid {UID} (it may not write it)",
        "no-memory": f"its cgroup {scope} offers cpu pids (a group delegated to it needs cpu memory pids)",
        "shared": f"its cgroup {scope} holds other processes too (pids {supervisor + 1}); it needs "
                  "a group of its own",
        "reserved": f"its cgroup {env.top}/process_api/x belongs to the machine's supervisor",
    }[case]


def test_this_machines_hybrid_layout_offers_no_delegation(kernel, tmp_path):
    env = build_hybrid(kernel, tmp_path)
    proc_cgroup = tmp_path / "proc-self-cgroup"
    proc_cgroup.write_text("0::/\n")
    layout = probe.delegation(env.layout, UID, str(proc_cgroup), pid=1)
    assert layout.delegation == (f"its cgroup {env.top}/unified offers hugetlb (a group delegated "
                                 "to it needs cpu memory pids)")


def test_a_rootless_run_is_limited_in_its_delegated_group(kernel, tmp_path):
    env, scope, supervisor, proc_cgroup = delegated_host(kernel, tmp_path)
    layout = layout_of(env, proc_cgroup, supervisor)
    limits = validate_limits(memory="64M", pids=20, cpus="0.5")
    plan = plan_cgroups.plan(layout, "nucleus", "c1", limits, unprivileged=True, strict=True)
    group = f"{scope}/nucleus/c1"
    assert plan.backend == "v2" and dict(plan.dirs)["memory"] == group
    assert plan.create.mark == plan.remove.mark == ("user.nucleus.parent", "1")
    leaf = f"{scope}/{plan_cgroups.SUPERVISOR_LEAF}"

    mark = env.mark()
    cgroups.create(plan.create)
    rel = os.path.relpath(scope, env.top)
    assert env.since(mark) == [
        ("mkdir", f"{rel}/nucleus.supervisor", ""),
        ("write", f"{rel}/nucleus.supervisor/cgroup.procs", str(supervisor)),  # nucleus itself
        ("mkdir", f"{rel}/nucleus", ""),
        ("setxattr", f"{rel}/nucleus", "user.nucleus.parent=1"),
        ("write", f"{rel}/cgroup.subtree_control", "+cpu +io +memory +pids"),
        ("write", f"{rel}/nucleus/cgroup.subtree_control", "+cpu +io +memory +pids"),
        ("mkdir", f"{rel}/nucleus/c1", ""),
    ]
    assert kernel.group_of(supervisor, str(env.top)) == leaf
    assert cgroups.write_limits(plan.limits) == ""
    assert env.read(f"{rel}/nucleus/c1/memory.max") == str(64 * MiB)
    assert env.read(f"{rel}/nucleus/c1/pids.max") == "20"
    assert env.read(f"{rel}/nucleus/c1/cpu.max") == "50000 100000"
    setup = kernel.spawn()  # a child of the supervisor: it starts in the supervisor's group
    kernel.as_user(0)
    kernel.write(os.path.join(leaf, "cgroup.procs"), str(setup))
    kernel.as_user(UID)
    cgroups.attach(plan.attach, setup)
    assert kernel.group_of(setup, str(env.top)) == group

    assert cgroups.release(plan.remove) is None
    assert not kernel.alive(setup) and kernel.alive(supervisor)
    # The group and the parent nucleus made are gone; the leaf nucleus runs in stays (it goes
    # with the delegated group).
    assert [n for n in os.listdir(scope) if os.path.isdir(os.path.join(scope, n))] == ["nucleus.supervisor"]


def test_outside_a_delegated_group_the_user_may_write_nothing(kernel, tmp_path):
    """Without a delegated group the plan is root's, under the hierarchy root, which an
    ordinary user may not write: creation fails (agent mode warns and runs without limits)."""
    env, _scope, supervisor, proc_cgroup = delegated_host(kernel, tmp_path)
    kernel.delegated.clear()
    layout = layout_of(env, proc_cgroup, supervisor)
    plan = plan_cgroups.plan(layout, "nucleus", "c1", Limits(), unprivileged=True)
    assert plan.create.parents == (f"{env.top}/nucleus",)
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.create(plan.create)
    assert e.value.errno == errno.EACCES


def test_a_parent_named_like_the_leaf_is_refused(kernel, tmp_path):
    env, _scope, supervisor, proc_cgroup = delegated_host(kernel, tmp_path)
    layout = layout_of(env, proc_cgroup, supervisor)
    with pytest.raises(InvalidInput, match="'nucleus.supervisor' is where nucleus itself runs"):
        plan_cgroups.plan(layout, "nucleus.supervisor", "c1", Limits(), unprivileged=True)


def test_io_limits_need_the_io_controller_delegated(kernel, tmp_path):
    env, scope, supervisor, proc_cgroup = delegated_host(kernel, tmp_path,
                                                         controllers="+cpu +memory +pids")
    layout = layout_of(env, proc_cgroup, supervisor)
    assert layout.delegated_controllers == ("cpu", "memory", "pids")
    with pytest.raises(InvalidInput) as e:
        plan_cgroups.plan(layout, "nucleus", "c1", validate_limits(io=["8:0 rbps=1M"]), unprivileged=True)
    assert (e.value.message, e.value.hint) == (
        f"--io-limit 8:0: the io controller is not delegated to {scope}",
        "delegate it too (systemd: Delegate=yes), or drop --io-limit")


# --- the service modes --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["strict-agent", "production"])
def test_strict_modes_refuse_a_rootless_run_without_a_delegated_group(kernel, tmp_path, mode):
    env = build_hybrid(kernel, tmp_path)
    proc_cgroup = tmp_path / "proc-self-cgroup"
    proc_cgroup.write_text("0::/\n")
    host = HostFacts(euid=UID, cgroups=probe.delegation(env.layout, UID, str(proc_cgroup), pid=1))
    (problem,) = [p for p in host_problems(ModeRequest(service_mode=mode, rootless=True), host)
                  if p.row == "Cgroup limits"]
    assert problem.message == (
        f"a rootless run (uid {UID}) has no cgroup of its own: its cgroup {env.top}/unified offers "
        "hugetlb (a group delegated to it needs cpu memory pids): refused in "
        f'{mode} mode (row "Cgroup limits": {mode} requires cgroups; a failure is fatal)')
    assert problem.hint == (f"run it in a cgroup v2 group delegated to uid {UID}, e.g. with: "
                            "systemd-run --user --scope -p Delegate=yes nucleus run ...; or run it as root")
    assert check_host(ModeRequest(rootless=True), host) == []  # agent mode: a warning at run time
    (finding,) = [f for f in assess("agent", host) if f.row == "Cgroup limits"]
    assert finding.status == "warn"


def test_strict_modes_run_rootless_in_a_delegated_group(kernel, tmp_path):
    env, scope, supervisor, proc_cgroup = delegated_host(kernel, tmp_path)
    host = HostFacts(euid=UID, cgroups=layout_of(env, proc_cgroup, supervisor))
    assert check_host(ModeRequest(service_mode="strict-agent", rootless=True), host) == []
    (finding,) = [f for f in assess("strict-agent", host) if f.row == "Cgroup limits"]
    assert (finding.status, finding.detail) == (
        "ok", f"required; the cgroup v2 group {scope} is delegated to uid {UID}")


def test_management_commands_plan_a_rootless_groups_paths_again(kernel, tmp_path):
    """A record keeps the delegated group its run used; a management command plans the
    container's paths under it again, but only while that group is a cgroup2 group its caller
    owns (anything else in the record is ignored, and root's paths are planned)."""
    from nucleus.app import records

    env, scope, supervisor, proc_cgroup = delegated_host(kernel, tmp_path)
    layout = layout_of(env, proc_cgroup, supervisor)
    plan = plan_cgroups.plan(layout, "nucleus", "c1", Limits(), unprivileged=True)
    assert plan.delegated == (scope, ("cpu", "io", "memory", "pids"))
    kernel.as_user(0)
    record = {"id": "c1", "cgroup_parent": "nucleus",
              "cgroup_delegated": {"group": scope, "controllers": list(plan.delegated[1])}}
    owner = os.stat(scope).st_uid
    assert records.delegated_group(record, env.layout, euid=owner) == plan.delegated
    assert records.cgroup_dirs(record, env.layout) == (plan.backend, plan.dirs)
    root_plan = plan_cgroups.plan(env.layout, "nucleus", "c1", Limits())
    wanted = list(plan.delegated[1])
    for forged, euid in (({"group": scope, "controllers": wanted}, owner + 1),  # another owner's
                         ({"group": str(tmp_path), "controllers": ["memory"]}, owner),  # outside
                         ({"group": f"{scope}/../..", "controllers": ["memory"]}, owner),  # not normal
                         ({"group": scope, "controllers": ["memory", "freezer"]}, owner),  # not nucleus's
                         ({"group": 7, "controllers": []}, owner)):
        assert records.delegated_group({**record, "cgroup_delegated": forged}, env.layout, euid=euid) is None
    assert records.cgroup_dirs({"id": "c1", "cgroup_parent": "nucleus"}, env.layout) == \
        (root_plan.backend, root_plan.dirs)
