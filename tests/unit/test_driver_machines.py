"""The driver with each machine of its own: the lifecycle, the resources, and the join (what
`nucleus attach` drives: every step through the executor, then the command, then cleanup);
`require`, which turns a refusal the caller did not expect into an internal error."""

from __future__ import annotations

import pytest

from nucleus import vocab as v
from nucleus.driver import Driver, FakeExecutor
from nucleus.errors import RuntimeFailure
from nucleus.machines import join, lifecycle, resources
from nucleus.machines.base import Refused, Step
from nucleus.plan import join as join_plan
from nucleus.plan.run import JoinPolicy
from tests.unit.machine_support import CGROUP, REMOVE

POLICY = JoinPolicy(
    rootless=True, namespaces=("user", "cgroup", "ipc", "uts", "net", "pid", "mnt"), seccomp_sha256="cd" * 32, seccomp_log_denied=False, seccomp_mode="enforce",
    caps_keep=("CAP_CHOWN",), landlock_rules=(("/usr", ("execute", "read")),), landlock_min_abi=1,
    env=(("PATH", "/usr/bin"),), cwd="/context", rlimits=(1024, 64, 65536),
    cgroup_procs=("/sys/fs/cgroup/nucleus/c1/cgroup.procs",),
)
JOIN_INTENTS = [
    "JoinSpawn", "JoinCgroup", "EnterNamespaces", "JoinIdentity", "JoinFork", "JoinDropCapabilities",
    "JoinLoadSeccomp", "JoinApplyLandlock",
]


def test_lifecycle_alone_through_the_driver():
    ex = FakeExecutor()
    d = Driver(lifecycle, lifecycle.initial(), ex)
    assert isinstance(d.feed(v.Start()), Refused) and d.state == lifecycle.initial()
    d.feed(v.Create())
    d.settle()  # the lifecycle has no advance: nothing happens on its own
    assert d.state.status == "creating"
    d.feed(v.SetupFailed())
    assert ex.performed == [v.Cleanup()]
    assert d.state.cleaned is False  # the Cleanup intent reports nothing
    d.feed(v.CleanupDone())
    assert d.state.cleaned is True


@pytest.mark.parametrize("required", [False, True])
def test_resources_alone_through_the_driver(required):
    ex = FakeExecutor(fail={"SetCgroupLimits": (22, "Invalid argument")})
    d = Driver(resources, resources.initial(required, **CGROUP), ex)
    assert isinstance(d.feed(v.ResAttach()), Refused) and ex.performed == []
    d.feed(v.ResBegin())  # the executor reports each step and the machine asks for the next
    d.settle()
    assert [i.name for i in ex.performed] == ["CreateCgroup", "SetCgroupLimits"] + ([] if required else ["Warn"])
    assert (d.state.phase, d.state.held, d.state.limited) == ("failed" if required else "degraded", True, False)
    d.feed(v.ResRelease())
    assert ex.performed[-1] == REMOVE
    assert (d.state.phase, d.state.held) == ("released", False)
    ex = FakeExecutor()
    d = Driver(resources, resources.initial(required), ex)
    for e in (v.ResBegin(), v.ResAttach(), v.ResRelease()):
        assert isinstance(d.feed(e), Step)
    assert [i.name for i in ex.performed] == ["CreateCgroup", "SetCgroupLimits", "AttachCgroup", "RemoveCgroup"]
    assert d.state.phase == "released"


def test_require_returns_the_step_and_raises_on_a_refusal():
    d = Driver(lifecycle, lifecycle.initial(), FakeExecutor())
    step = d.require(v.Create())
    assert isinstance(step, Step) and step.state.status == "creating"
    with pytest.raises(RuntimeFailure, match=(
        r"internal: Start was refused: cannot Start the container: it is creating "
        r"\(Start is allowed only from created\)")):
        d.require(v.Start())
    assert d.state.status == "creating" and len(d.history) == 1




def a_join(degraded: frozenset[str] = frozenset()) -> join.JoinState:
    return join_plan.plan(POLICY, 42, 1000, ("/bin/sh", "-c", "id"), degraded, in_cgroup=True, name="web")


def test_a_join_through_the_driver():
    ex = FakeExecutor()
    d = Driver(join, a_join(), ex)
    d.require(v.JoinBegin())
    d.settle()  # the join has no advance: its steps are driven by their outcomes
    assert d.state.phase == "ready" and d.state.done == len(join.PLAN)
    assert [i.name for i in ex.performed] == JOIN_INTENTS
    assert list(ex.performed) == list(a_join().steps)
    d.require(v.JoinStart())
    assert ex.performed[-1] == v.ExecCommand(("/bin/sh", "-c", "id"), POLICY.env, "/context", POLICY.rlimits)
    d.require(v.JoinExit(7))
    assert (d.state.phase, d.state.exit_code, ex.performed[-1]) == ("exited", 7, v.Cleanup())
    assert [type(e).__name__ for e, _ in d.history] == (
        ["JoinBegin"] + ["JoinDone"] * len(join.PLAN) + ["JoinStart", "JoinExit"]
    )


@pytest.mark.parametrize("index", range(len(join.PLAN)))
def test_a_join_fails_at_any_step_and_never_runs_the_command(index):
    name = JOIN_INTENTS[index]
    ex = FakeExecutor(fail={name: (1, f"{name}: Operation not permitted")})
    d = Driver(join, a_join(), ex)
    d.require(v.JoinBegin())
    assert (d.state.phase, d.state.done) == ("failed", index)
    assert [i.name for i in ex.performed] == JOIN_INTENTS[: index + 1] + ["Cleanup"]
    assert d.history[-1][0] == v.JoinFailed(join.PLAN[index], 1, f"{name}: Operation not permitted")
    assert isinstance(d.feed(v.JoinStart()), Refused)
    assert not any(isinstance(i, v.ExecCommand) for i in ex.performed)


def test_a_join_skips_what_the_container_runs_without():
    ex = FakeExecutor(fail={"JoinLoadSeccomp": (22, "Invalid argument"), "JoinApplyLandlock": (95, "no")})
    d = Driver(join, a_join(frozenset({"seccomp", "landlock"})), ex)
    d.require(v.JoinBegin())
    assert (d.state.phase, d.state.degraded) == ("ready", {"seccomp", "landlock"})
    assert [i.message.split(" could")[0] for i in ex.performed if isinstance(i, v.Warn)] == ["seccomp", "landlock"]
    ex = FakeExecutor(fail={"JoinApplyLandlock": (95, "no")})
    d = Driver(join, a_join(frozenset({"seccomp"})), ex)
    d.require(v.JoinBegin())
    assert (d.state.phase, ex.performed[-1]) == ("failed", v.Cleanup())


def test_a_join_through_the_driver_refuses_to_start_twice():
    d = Driver(join, a_join(), FakeExecutor())
    d.require(v.JoinBegin())
    d.require(v.JoinStart())
    with pytest.raises(RuntimeFailure, match=r"internal: JoinStart was refused: cannot Start the joining command"):
        d.require(v.JoinStart())
    assert isinstance(d.feed(v.JoinExit(0)), Step)
