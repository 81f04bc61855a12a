"""The join plan (nucleus.plan.join): from what a container recorded when it started (its
JoinPolicy) and what is true of it now (its init's pid, the controls it runs without, whether it
is in its cgroup), every step of the Join machine with the data its intent carries."""

from __future__ import annotations

from dataclasses import replace

import pytest

from nucleus import vocab as v
from nucleus.driver import Driver, FakeExecutor
from nucleus.errors import InvalidInput
from nucleus.machines import join
from nucleus.plan.join import DEFAULT_COMMAND, JoinInputs, namespaces, plan
from nucleus.plan.run import JOIN_ORDER, JoinPolicy

RULES = (("/usr", ("execute", "read")), ("/tmp", ("create", "read", "remove", "write")))
PROCS = ("/sys/fs/cgroup/nucleus/c1/cgroup.procs",)


def policy(rootless: bool = True, seccomp_mode: str = "enforce") -> JoinPolicy:
    return JoinPolicy(
        rootless=rootless, namespaces=("user", "cgroup", "ipc", "uts", "net", "pid", "mnt"), seccomp_sha256="ab" * 32, seccomp_log_denied=True, seccomp_mode=seccomp_mode,
        caps_keep=("CAP_NET_BIND_SERVICE",), landlock_rules=RULES, landlock_min_abi=3,
        env=(("PATH", "/usr/bin"), ("HOME", "/home/agent")), cwd="/context", rlimits=(2048, 64, 65536),
        cgroup_procs=PROCS,
    )


def test_rootless_enters_the_user_namespace_first():
    """The user namespace owns the others: only inside it may the joining process enter them."""
    ns = namespaces(42, policy(True))
    assert [kind for kind, _ in ns] == ["user", "cgroup", "ipc", "uts", "net", "pid", "mnt"]
    assert ns[0] == ("user", "/proc/42/ns/user") and ns[-1] == ("mnt", "/proc/42/ns/mnt")


def test_privileged_enters_the_user_namespace_last():
    """The host's user namespace owns the others; the container's user namespace, entered last,
    takes every capability over them away."""
    ns = namespaces(7, policy(False))
    assert [kind for kind, _ in ns] == [k for k in JOIN_ORDER if k != "time"] + ["user"]
    assert all(path == f"/proc/7/ns/{kind}" for kind, path in ns)
    assert JOIN_ORDER.index("mnt") == len(JOIN_ORDER) - 1  # the mount namespace after the others


def test_only_the_namespaces_the_container_made_are_joined():
    """A container without a time namespace of its own shares the host's: joining it is not
    asked for (and EnterNamespaces refuses any namespace that is the joining process's own)."""
    timed = replace(policy(False), namespaces=("user", "ipc", "uts", "net", "pid", "time", "mnt"))
    assert [kind for kind, _ in namespaces(9, timed)] == ["ipc", "uts", "net", "pid", "time", "mnt", "user"]


@pytest.mark.parametrize("rootless", [False, True])
def test_every_step_carries_the_containers_own_restrictions(rootless):
    s = plan(policy(rootless), 42, 1000, ("/bin/ls", "-l"), frozenset(), in_cgroup=True, name="web")
    assert s.steps == (
        v.JoinSpawn(),
        v.JoinCgroup(PROCS),
        v.EnterNamespaces(namespaces(42, policy(rootless)), clear_groups=not rootless, pid=42, start=1000),
        v.JoinIdentity(),
        v.JoinFork(),
        v.JoinDropCapabilities(("CAP_NET_BIND_SERVICE",)),
        v.JoinLoadSeccomp("ab" * 32, True, "enforce"),
        v.JoinApplyLandlock(RULES, 3),
    )
    assert s.command == v.ExecCommand(("/bin/ls", "-l"), policy().env, "/context", (2048, 64, 65536))
    assert join.is_initial(s) and s.degradable == frozenset()


def test_host_roots_supplementary_groups_are_dropped_before_entering():
    privileged = plan(policy(False), 42, 1000, (), frozenset(), True).steps[2]
    rootless = plan(policy(True), 42, 1000, (), frozenset(), True).steps[2]
    assert (privileged.clear_groups, rootless.clear_groups) == (True, False)


def test_the_cgroup_is_joined_only_when_the_container_is_in_it():
    held = plan(policy(), 42, 1000, (), frozenset(), in_cgroup=True)
    assert held.steps[1] == v.JoinCgroup(PROCS)
    # Running without its cgroup (an optional cgroup that failed): the joining process stays
    # where it is, like the container's own processes; the step is still taken.
    free = plan(policy(), 42, 1000, (), frozenset(), in_cgroup=False)
    assert free.steps[1] == v.JoinCgroup(()) and free.steps[1].reports == ("join", "cgroup")


def test_without_a_command_the_shell_is_run():
    assert DEFAULT_COMMAND == ("/bin/sh",)
    assert plan(policy(), 42, 1000, (), frozenset(), True).command.argv == ("/bin/sh",)


def test_the_controls_the_container_runs_without_may_be_skipped():
    s = plan(policy(), 42, 1000, (), frozenset({"seccomp", "caps"}), True)
    assert s.degradable == {"seccomp"}  # caps are never run without


def test_a_container_in_seccomp_trace_mode_cannot_be_joined():
    with pytest.raises(InvalidInput, match="cannot attach to container 'web': it runs in seccomp trace mode") as e:
        plan(policy(seccomp_mode="trace"), 42, 1000, ("/bin/sh",), frozenset(), True, name="web")
    assert e.value.hint == "attach to a container started with --seccomp-mode enforce"


def test_join_inputs_plan_again_and_drive_the_join():
    inputs = JoinInputs(policy(False), 42, 1000, ("/bin/true",), frozenset({"landlock"}), True, "web")
    assert inputs.plan() == plan(policy(False), 42, 1000, ("/bin/true",), frozenset({"landlock"}), True, "web")
    ex = FakeExecutor(fail={"JoinApplyLandlock": (95, "Landlock is not supported")})
    d = Driver(join, inputs.plan(), ex)
    d.require(v.JoinBegin())
    assert (d.state.phase, d.state.degraded) == ("ready", {"landlock"})
    d.require(v.JoinStart())
    assert ex.performed[-1] == v.ExecCommand(("/bin/true",), policy().env, "/context", (2048, 64, 65536))


STREAM = "/run/nucleus/containers/c1.violations"


def test_a_recorded_container_s_stream_gets_the_joined_command_s_refusals_too():
    """With the container's stream: the spawn step starts a violation monitor writing there, the
    seccomp step loads the program's notify form (its listener goes to that monitor), and
    Landlock logs the denials of the program the command execs; the steps stay the Join
    machine's."""
    s = plan(policy(False), 42, 1000, ("/bin/true",), frozenset(), True, stream=STREAM)
    assert s.steps[0] == v.JoinSpawn(violations=STREAM)
    assert s.steps[6] == v.JoinLoadSeccomp("ab" * 32, True, "notify")
    assert s.steps[7] == v.JoinApplyLandlock(RULES, 3, log_new_exec=True)
    assert tuple(intent.reports for intent in s.steps) == tuple(("join", step) for step in join.PLAN)
    again = JoinInputs(policy(False), 42, 1000, ("/bin/true",), frozenset(), True, stream=STREAM)
    assert again.plan() == s


def test_without_a_program_no_monitor_is_started():
    """A record that names no seccomp program (its init runs without a filter, which the join
    checks against the kernel): nothing to notify, no monitor, and no Landlock denial logged
    that nothing would record."""
    s = plan(replace(policy(False), seccomp_sha256=""), 42, 1000, (), frozenset(), True, stream=STREAM)
    assert s.steps[0] == v.JoinSpawn() and s.steps[6] == v.JoinLoadSeccomp("", True, "enforce")
    assert s.steps[7] == v.JoinApplyLandlock(RULES, 3)

