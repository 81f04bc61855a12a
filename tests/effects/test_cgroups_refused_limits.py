"""A limit the kernel refuses at run time, on the fake kernel, through the handler and the
resources machine: in agent mode that write alone is skipped and named in a warning, the others
are written; in the strict modes the step fails at that write. And what the release reports
when the OOM killer acted: the peak memory use, read before the group goes."""

from __future__ import annotations

import errno
import os

import pytest

from nucleus import vocab as v
from nucleus.config.resources import validate_limits
from nucleus.effects import cgroups
from nucleus.effects.handlers import handler_for
from nucleus.machines import resources
from tests.effects.cgroup_env import MiB
from tests.unit.machine_support import ok, run

LIMITS = dict(memory="64M", cpus="0.5", pids="20")
CPU_FILE = {"v2": "cpu.max", "v1": "cpu.cfs_quota_us"}
CPU_VALUE = {"v2": "50000 100000", "v1": "50000"}


def backend(env) -> str:
    return "v2" if env.layout.backend == "v2" else "v1"


def cpu_file(env, plan) -> str:
    return next(path for path, _, _ in plan.limits.writes if path.endswith("/" + CPU_FILE[backend(env)]))


def limited_to(env, plan) -> dict[str, str]:
    """The limits in force: memory and pids as the kernel holds them."""
    memory = dict(plan.dirs)["memory"]
    name = "memory.max" if backend(env) == "v2" else "memory.limit_in_bytes"
    pids = dict(plan.dirs)["pids"]
    return {"memory": env.read(os.path.relpath(os.path.join(memory, name), env.top)),
            "pids": env.read(os.path.relpath(os.path.join(pids, "pids.max"), env.top))}


def test_agent_mode_skips_only_the_refused_limit_and_warns_of_it(env, kernel):
    plan = env.plan(limits=validate_limits(**LIMITS))
    assert plan.limits.strict is False
    cgroups.create(plan.create)
    cpu = cpu_file(env, plan)
    # As a v1 parent with a smaller CFS quota of its own refuses a child's larger one.
    kernel.fail_next("write", cpu, errno.EINVAL)
    detail = handler_for(plan.limits)(None, plan.limits)
    assert v.skipped_writes(detail) == ((cpu, CPU_VALUE[backend(env)], "EINVAL (Invalid argument)"),)
    assert limited_to(env, plan) == {"memory": str(64 * MiB), "pids": "20"}  # still in force

    s = resources.initial(False, plan.create, plan.limits, plan.attach, plan.remove)
    s, intents = run(resources, s, v.ResBegin(), v.ResDone("create"), v.ResDone("limits", detail=detail))
    assert (s.phase, s.limited) == ("waiting", True)
    assert intents[2:] == [v.Warn(
        f"--cpus not applied: writing {CPU_VALUE[backend(env)]!r} to {cpu} failed: EINVAL "
        "(Invalid argument); running with the other limits")]


def test_each_refused_limit_gets_its_own_warning(env, kernel):
    plan = env.plan(limits=validate_limits(**LIMITS))
    cgroups.create(plan.create)
    pids = next(path for path, _, _ in plan.limits.writes if path.endswith("/pids.max"))
    kernel.fail_next("write", cpu_file(env, plan), errno.EINVAL)
    kernel.fail_next("write", pids, errno.ENOSPC)
    detail = cgroups.write_limits(plan.limits)
    s = resources.initial(False, plan.create, plan.limits, plan.attach, plan.remove)
    step = ok(resources.step(run(resources, s, v.ResBegin(), v.ResDone("create"))[0],
                             v.ResDone("limits", detail=detail)))
    assert [w.message.split(":")[0] for w in step.intents] == ["--cpus not applied", "--pids not applied"]
    assert all(isinstance(w, v.Warn) for w in step.intents)


def test_strict_modes_fail_the_step_at_the_refused_limit(env, kernel):
    plan = env.plan(limits=validate_limits(**LIMITS), strict=True)
    cgroups.create(plan.create)
    cpu = cpu_file(env, plan)
    kernel.fail_next("write", cpu, errno.EINVAL)
    with pytest.raises(cgroups.CgroupError) as e:
        handler_for(plan.limits)(None, plan.limits)
    assert str(e.value) == f"write {CPU_VALUE[backend(env)]!r} to {cpu}: EINVAL (Invalid argument)"
    s = resources.initial(True, plan.create, plan.limits, plan.attach, plan.remove)
    s, intents = run(resources, s, v.ResBegin(), v.ResDone("create"),
                     v.ResFailed("limits", errno.EINVAL, str(e.value)))
    assert (s.phase, s.held) == ("failed", True) and not any(isinstance(i, v.Warn) for i in intents)


def test_a_missing_optional_file_is_no_warning(v2):
    plan = v2.plan(limits=validate_limits(memory="64M"))
    cgroups.create(plan.create)
    os.unlink(v2.top / "nucleus/c1/memory.oom.group")  # kernels before 4.19
    assert cgroups.write_limits(plan.limits) == ""


def test_the_release_reports_the_oom_killer_with_the_peak(env, kernel):
    plan = env.up(limits=validate_limits(memory="64M"), pids=(kernel.spawn(),))
    events, key = plan.remove.oom
    with open(events) as f:
        text = f.read()
    with open(events, "w") as f:
        f.write(text.replace(f"{key} 0", f"{key} 1"))
    with open(plan.remove.peak, "w") as f:
        f.write(str(64 * MiB))
    detail = handler_for(plan.remove)(None, plan.remove)
    assert detail == f"oom-killed peak={64 * MiB}"
    assert env.groups() == set()
    s = resources.initial(False, plan.create, plan.limits, plan.attach, plan.remove)
    s, _ = run(resources, s, v.ResBegin(), v.ResDone("create"), v.ResDone("limits"), v.ResRelease(),
               v.ResDone("release", detail=detail))
    assert (s.phase, s.oom_killed, s.oom_peak) == ("released", True, 64 * MiB)


def test_without_the_oom_killer_the_release_reports_nothing(env, kernel):
    plan = env.up(limits=validate_limits(memory="64M"), pids=(kernel.spawn(),))
    assert handler_for(plan.remove)(None, plan.remove) is None
