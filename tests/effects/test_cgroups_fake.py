"""The cgroup effects carrying out the plan's intents on a fake kernel, for what both backends
share: each test runs on a pure cgroup v2 host and on this machine's v1/v2 hybrid. What differs
per backend is in test_cgroups_fake_v2.py and test_cgroups_fake_v1.py; the probe and the plan's
refusals in test_cgroup_layout.py."""

from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path

import pytest

from nucleus.config.resources import IoLimit, Limits
from nucleus.effects import cgroups, probe
from tests.effects.cgroup_env import MiB

# --- create ---------------------------------------------------------------------------------------


def test_create_makes_the_planned_directories(env):
    plan = env.plan(parent="nucleus/agents")
    cgroups.create(plan.create)
    made = {str(env.top / g) for g in env.groups()}
    assert made == set(plan.create.parents) | set(plan.create.dirs)
    assert set(plan.create.dirs) == {d for _, d in plan.dirs}
    assert all(d.endswith("/nucleus/agents/c1") for d in plan.create.dirs)


def test_create_refuses_an_existing_group(env):
    plan = env.plan()
    cgroups.create(plan.create)
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.create(plan.create)
    assert e.value.errno == errno.EEXIST
    assert str(e.value) == f"mkdir {plan.create.dirs[0]}: EEXIST (File exists)"


def test_failed_create_then_remove_leaves_nothing(env, kernel):
    """A create that fails part-way leaves what it made; the resources machine counts it as
    held and removes it with the same plan's RemoveCgroup at release."""
    plan = env.plan(parent="nucleus/agents")
    last = plan.create.dirs[-1]
    kernel.fail_next("mkdir", last, errno.ENOSPC)  # e.g. cgroup.max.descendants reached
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.create(plan.create)
    assert str(e.value) == f"mkdir {last}: ENOSPC (No space left on device)"
    assert len(env.groups()) == len(plan.create.parents) + len(plan.create.dirs) - 1
    assert cgroups.remove(plan.remove) is False
    assert env.groups() == set()
    assert kernel.signals == []


def test_failed_create_in_a_shared_parent_keeps_the_other_container(env, kernel):
    other = env.up("other", pids=(kernel.spawn(),))
    before = env.groups()
    plan = env.plan("c1")
    kernel.fail_next("mkdir", plan.create.dirs[-1], errno.ENOMEM)
    with pytest.raises(cgroups.CgroupError):
        cgroups.create(plan.create)
    cgroups.remove(plan.remove)
    assert env.groups() == before
    assert len(cgroups.procs(other.attach.procs)) == 1 and kernel.signals == []


# --- write_limits ---------------------------------------------------------------------------------


def test_limits_are_written_in_the_planned_order(env):
    plan = env.plan(limits=Limits(memory=64 * MiB, cpus=0.5, cpu_weight=100, pids=20))
    cgroups.create(plan.create)
    mark = env.mark()
    cgroups.write_limits(plan.limits)
    assert env.kernel.log[mark:] == [("write", path, value)
                                     for path, value, _ in plan.limits.writes]


def test_a_limit_the_kernel_refuses_names_op_file_value_and_errno(env):
    plan = env.plan(limits=Limits(pids=-5, io=(IoLimit(8, 0, rbps=MiB),)), strict=True)
    cgroups.create(plan.create)
    pids_max = next(path for path, _, _ in plan.limits.writes if path.endswith("/pids.max"))
    mark = env.mark()
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.write_limits(plan.limits)
    assert str(e.value) == f"write '-5' to {pids_max}: EINVAL (Invalid argument)"
    assert (e.value.op, e.value.path, e.value.value, e.value.errno) == (
        "write", pids_max, "-5", errno.EINVAL)
    planned = [path for path, _, _ in plan.limits.writes]
    assert [path for _, path, _ in env.kernel.log[mark:]] == planned[:planned.index(pids_max)]
    assert planned[-1] != pids_max  # the io limits after it were not written


def test_an_unknown_device_is_enodev(env):
    plan = env.plan(limits=Limits(io=(IoLimit(9, 9, rbps=1),)), strict=True)
    cgroups.create(plan.create)
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.write_limits(plan.limits)
    assert e.value.errno == errno.ENODEV and e.value.value.startswith("9:9 ")
    assert str(e.value) == f"write {e.value.value!r} to {e.value.path}: ENODEV (No such device)"


# --- attach and procs ---------------------------------------------------------------------------


def test_attach_moves_the_process_in_every_hierarchy(env, kernel):
    plan = env.up()
    pid, other = kernel.spawn(), kernel.spawn()
    cgroups.attach(plan.attach, pid)
    for directory in plan.create.dirs:
        assert kernel.group_of(pid, str(Path(directory).parent.parent)) == directory
    assert cgroups.procs(plan.attach.procs) == [pid]
    for h in kernel.hierarchies:  # hierarchies nucleus does not use keep it at their root
        if not any(d.startswith(h.point + "/") for d in plan.create.dirs):
            assert kernel.group_of(pid, h.point) == h.point
        assert kernel.group_of(other, h.point) == h.point


@pytest.mark.parametrize("pid", [1, 0, -1])
def test_attach_refuses_pid_1_and_below(env, kernel, pid):
    plan = env.up()
    mark = env.mark()
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.attach(plan.attach, pid)
    assert str(e.value) == (f"write '{pid}' to {plan.attach.procs[0]}: EINVAL (Invalid argument): "
                            "pid 1 and the kernel's threads are never moved")
    assert env.since(mark) == []


def test_attach_a_process_that_is_gone(env, kernel):
    plan = env.up()
    pid = kernel.spawn()
    kernel.exit(pid)
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.attach(plan.attach, pid)
    assert e.value.errno == errno.ESRCH
    assert str(e.value) == f"write '{pid}' to {plan.attach.procs[0]}: ESRCH (No such process)"


def test_procs_of_a_group_that_is_gone_is_empty(env):
    assert cgroups.procs(env.plan().attach.procs) == []


# --- stats ----------------------------------------------------------------------------------------


def test_stats_of_a_fresh_group(env, kernel):
    plan = env.up(pids=(kernel.spawn(),))
    s = probe.cgroup_stats(plan.backend, dict(plan.dirs))
    assert s["memory_current"] == 0 and s["memory_max"] is None
    assert s["pids_current"] == 1 and s["pids_max"] == 512
    assert s["cpu_usage_usec"] == 0 and s["cpu_nr_throttled"] == 0
    assert s["oom_kills"] == 0


# --- remove ---------------------------------------------------------------------------------------


def test_remove_kills_the_group_and_nothing_else_and_leaves_nothing(env, kernel):
    members = [kernel.spawn() for _ in range(3)]
    outsider = kernel.spawn()
    plan = env.up(parent="nucleus/agents", limits=Limits(memory=64 * MiB, pids=20),
                  pids=tuple(members))
    assert cgroups.remove(plan.remove) is False
    assert [kernel.alive(p) for p in members] == [False] * 3
    assert kernel.alive(outsider) and outsider not in [pid for pid, _ in kernel.signals]
    assert env.groups() == set()
    mark = env.mark()
    assert cgroups.remove(plan.remove) is False  # already gone: nothing to do
    assert env.since(mark) == []


def test_remove_keeps_a_parent_another_container_uses(env, kernel):
    a = env.up("a", parent="nucleus/agents", pids=(kernel.spawn(),))
    b = env.up("b", parent="nucleus/agents", pids=(kernel.spawn(),))
    cgroups.remove(a.remove)
    groups = env.groups()
    assert all(g.endswith(("nucleus", "nucleus/agents", "nucleus/agents/b")) for g in groups)
    assert {str(env.top / g) for g in groups} >= set(b.create.dirs)
    cgroups.remove(b.remove)
    assert env.groups() == set()


def test_remove_gives_up_on_a_process_that_does_not_die(env, kernel):
    stuck = kernel.spawn(unkillable=True)
    plan = env.up(pids=(stuck,))
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.remove(plan.remove, timeout=2.0)
    assert str(e.value) == (f"wait for {plan.remove.procs[0]}: EBUSY (Device or resource busy): "
                            f"pids {stuck} still there after 2s")
    assert 2.0 <= kernel.clock < 2.1
    assert {str(env.top / g) for g in env.groups()} >= set(plan.remove.dirs)  # left, not lost
    if plan.backend == "v1":
        assert env.read("freezer/nucleus/c1/freezer.state") == "THAWED"
    kernel.exit(stuck)
    cgroups.remove(plan.remove)  # a later release (rm --force, the sweep) finishes the job
    assert env.groups() == set()


def test_remove_retries_a_group_still_busy_with_an_exiting_process(env, kernel):
    plan = env.up(pids=(kernel.spawn(lingers=3),))
    cgroups.remove(plan.remove)
    assert env.groups() == set()
    frozen_poll = cgroups.POLL if plan.backend == "v1" else 0  # freezer.state reads FREEZING once
    assert kernel.clock == pytest.approx(len(plan.remove.dirs) * 3 * cgroups.RMDIR_DELAY
                                         + frozen_poll)


def test_remove_names_a_group_that_stays_busy(env, kernel):
    plan = env.up(pids=(kernel.spawn(lingers=cgroups.RMDIR_RETRIES + 1),))
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.remove(plan.remove)
    assert e.value.errno == errno.EBUSY and e.value.path == plan.remove.dirs[0]
    assert str(e.value) == f"rmdir {plan.remove.dirs[0]}: EBUSY (Device or resource busy)"
    assert Path(plan.remove.dirs[0]).is_dir()  # left for a later release, not lost


def test_remove_reports_the_oom_killer(env, kernel):
    plan = env.up(pids=(kernel.spawn(),))
    memory = Path(dict(plan.dirs)["memory"])
    if plan.backend == "v2":
        (memory / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n"
                                              "oom_group_kill 1\n")
    else:
        (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    assert probe.cgroup_stats(plan.backend, dict(plan.dirs))["oom_kills"] == 1
    assert cgroups.remove(plan.remove) is True
    assert env.groups() == set()


def test_remove_of_a_group_without_oom_kills_is_false(env, kernel):
    plan = env.up(pids=(kernel.spawn(),))
    assert cgroups.remove(plan.remove) is False


# --- errors ---------------------------------------------------------------------------------------


def test_errors_survive_pickling():
    e = cgroups.CgroupError("write", "/x/memory.max", errno.EINVAL, value="12", detail="why")
    back = pickle.loads(pickle.dumps(e))
    assert str(back) == str(e) == "write '12' to /x/memory.max: EINVAL (Invalid argument): why"
    assert back.errno == errno.EINVAL and isinstance(back, OSError)


def test_kill_never_signals_pid_1(env, kernel, monkeypatch):
    """Whatever a cgroup.procs file says, remove never signals pid 1 or below."""
    plan = env.up()
    Path(plan.remove.procs[0]).write_text("1\n")  # a file saying pid 1 is in the group
    sent = []
    monkeypatch.setattr(kernel, "kill", lambda pid, sig: sent.append((pid, sig)))
    with pytest.raises(cgroups.CgroupError):
        cgroups.remove(plan.remove, timeout=0.05)
    assert sent == []


# --- which parents are nucleus's ------------------------------------------------------------------


def test_a_parent_that_was_there_before_is_never_removed(env, kernel):
    """An administrator's parent (with limits of its own) was not made by nucleus: it carries no
    mark, and the release leaves it, empty or not."""
    plan = env.plan(parent="admin")
    for parent in plan.create.parents:
        kernel.mkdir(parent)
    cgroups.create(plan.create)
    assert cgroups.remove(plan.remove) is False
    assert env.groups() == {str(os.path.relpath(p, env.top)) for p in plan.create.parents}


def test_a_marked_parent_goes_with_the_last_container_whatever_made_it(env, kernel):
    """The container that made the parent may end first: the parent stays while another group
    is in it, and goes with the last one (it is nucleus's, whoever made it)."""
    first, second = env.plan("c1"), env.plan("c2")
    cgroups.create(first.create)
    cgroups.create(second.create)
    assert cgroups.remove(first.remove) is False
    assert env.groups() == {str(os.path.relpath(d, env.top)) for d in first.create.parents + second.create.dirs}
    assert cgroups.remove(second.remove) is False
    assert env.groups() == set()


def test_a_failed_create_leaves_no_marked_parent_behind(env, kernel):
    plan = env.plan(parent="nucleus/agents")
    kernel.fail_next("mkdir", plan.create.dirs[0], errno.ENOSPC)
    with pytest.raises(cgroups.CgroupError):
        cgroups.create(plan.create)
    assert cgroups.remove(plan.remove) is False  # what the resources machine does at release
    assert env.groups() == set()


def test_a_parent_that_cannot_be_marked_fails_the_creation(env, kernel):
    plan = env.plan()
    kernel.fail_next("setxattr", plan.create.parents[0], errno.EOPNOTSUPP)
    with pytest.raises(cgroups.CgroupError) as e:
        cgroups.create(plan.create)
    assert str(e.value).startswith(f"set attribute 'trusted.nucleus.parent=1' to {plan.create.parents[0]}: ENOTSUP (Operation not supported)")
