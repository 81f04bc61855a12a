"""-u, -t and -i in the plans (nucleus.plan.run, nucleus.plan.join): the user the caps step
switches to, the home and context that are the user's, the entries the generated /etc/passwd
gains, the terminal asked of the setup process and the workload, the caller's stdin; and the
same for `exec`, planned from what the container recorded. Pure."""

from __future__ import annotations

import dataclasses

import pytest

from nucleus import vocab as v
from nucleus.config.container import ContainerConfig
from nucleus.config.exec_options import ATTACH, ExecOptions
from nucleus.errors import InvalidInput
from nucleus.facts import UNIFIED, CgroupLayout, HostFacts
from nucleus.machines import security
from nucleus.plan import join as join_plan
from nucleus.plan.run import Artifacts, plan

V2 = CgroupLayout("v2", ((UNIFIED, "/sys/fs/cgroup"),), ("cpu", "memory", "pids"), ("cpu", "memory", "pids"),
                  None, "/sys/fs/cgroup")
SHA = "ab" * 32
BASE = 100000  # the first host id of a privileged run's range


def facts(euid: int = 0, **changes) -> HostFacts:
    base = HostFacts(arch="x86_64", euid=euid, egid=euid, state_root="/run/nucleus",
                     system=(("/usr", ""), ("/bin", "usr/bin")), cgroups=V2)
    return dataclasses.replace(base, **changes)


def config(**changes) -> ContainerConfig:
    return ContainerConfig(argv=("/bin/sh", "-c", "id"), **changes)


def written(p, path: str) -> str:
    return next(op.content for op in p.state.fs.plan if isinstance(op, v.WriteFile) and op.path.endswith(path))


def mount_data(p, target: str) -> str:
    return next(op.data for op in p.state.fs.plan if isinstance(op, v.MountFs) and op.target.endswith(target))


def caps_intent(p) -> v.Intent:
    return security.step(p.state.sec, v.SecBegin()).intents[0]


def test_without_u_nothing_changes():
    p = plan(config(), facts(), Artifacts(seccomp_sha256=SHA), "c1")
    assert caps_intent(p) == v.DropCapabilities(())
    assert dict(p.state.lc.workload.env)["HOME"] == "/home/agent" and p.join.user is None
    assert written(p, "/etc/passwd").count("\n") == 2


def test_a_numeric_uid_is_planned_as_that_user():
    p = plan(config(user="1000", context="/src"), facts(), Artifacts(seccomp_sha256=SHA), "c1")
    # The caps step switches to it (no supplementary groups), and `exec` does by default.
    assert caps_intent(p) == v.DropCapabilities((), (1000, 1000, ()))
    assert p.join.user == (1000, 1000, ())
    # Its home: HOME, the default working directory without a context, a tmpfs it owns.
    assert dict(p.state.lc.workload.env)["HOME"] == "/home/user"
    assert mount_data(p, "/home/user") == f"size=268435456,mode=0700,uid={BASE + 1000},gid={BASE + 1000}"
    # The copied context is its own too (git refuses a repository owned by someone else).
    copy = next(op for op in p.state.fs.plan if isinstance(op, v.CopyTree))
    assert copy.owner == (BASE + 1000, BASE + 1000)
    assert f"uid={BASE + 1000}" in mount_data(p, "/context")
    # whoami and id find it.
    assert written(p, "/etc/passwd").splitlines()[-1] == "user:x:1000:1000::/home/user:/bin/sh"
    assert written(p, "/etc/group").splitlines()[-1] == "user:x:1000:"
    # Host root's maps allow setgroups, so that the switch can set the groups.
    assert p.state.iso.uid_map == ((0, BASE, 65536),)


def test_nobody_keeps_its_entry_and_gets_the_default_home():
    p = plan(config(user="nobody"), facts(), Artifacts(seccomp_sha256=SHA), "c1")
    assert caps_intent(p) == v.DropCapabilities((), (65534, 65534, ()))
    assert dict(p.state.lc.workload.env)["HOME"] == "/home/agent"
    assert written(p, "/etc/passwd").count("\n") == 2  # nothing added
    assert "uid=165534" in mount_data(p, "/home/agent")


def test_a_rootless_run_refuses_a_uid_it_does_not_map():
    with pytest.raises(InvalidInput, match=r"--user '1000': uid 1000 is not mapped .*\(it maps 0\)"):
        plan(config(user="1000"), facts(1000), Artifacts(), "c1")
    assert caps_intent(plan(config(user="0"), facts(1000), Artifacts(), "c1")) == v.DropCapabilities(())


CLOSURE_PASSWD = "root:x:0:0::/root:/bin/sh\nalice:x:1000:100::/home/alice:/bin/sh\n"
CLOSURE_GROUP = "root:x:0:\nusers:x:100:\nwheel:x:10:alice\n"


def test_a_name_is_looked_up_in_the_closures_files():
    closure = facts(system=(("/usr", ""), ("/etc", "")), rootfs_realpath="/closure",
                    rootfs_accounts=(CLOSURE_PASSWD, CLOSURE_GROUP, ""))
    p = plan(config(user="alice", rootfs="/closure"), closure, Artifacts(seccomp_sha256=SHA), "c1")
    assert caps_intent(p) == v.DropCapabilities((), (1000, 100, (10,)))
    assert dict(p.state.lc.workload.env)["HOME"] == "/home/alice"
    assert not any(isinstance(op, v.WriteFile) and op.path.endswith("/etc/passwd") for op in p.state.fs.plan)
    assert p.join.accounts == (CLOSURE_PASSWD, CLOSURE_GROUP, "")
    with pytest.raises(InvalidInput, match=r"no user 'carol' in --rootfs '/closure': etc/passwd and etc/group"):
        plan(config(user="carol", rootfs="/closure"), closure, Artifacts(), "c1")


@pytest.mark.parametrize("tty,interactive,detach,stdin", [
    (False, False, False, False), (False, True, False, True), (True, False, False, False),
    (True, True, False, True), (True, True, True, False),  # detached: nobody's stdin to relay
])
def test_the_terminal_and_stdin_are_asked_of_the_workload(tty, interactive, detach, stdin):
    p = plan(config(tty=tty, interactive=interactive, detach=detach), facts(), Artifacts(), "c1")
    workload = p.state.lc.workload
    assert (workload.terminal, workload.stdin) == (tty, stdin)
    assert p.state.iso.terminal is tty  # the setup process gets the socket the master comes back on


# --- exec: the join plan -----------------------------------------------------------------------------


def policy(**changes):
    p = plan(config(context="/src", env=(("MODE", "run"),)), facts(), Artifacts(seccomp_sha256=SHA), "c1")
    return dataclasses.replace(p.join, **changes)


def joined(options: ExecOptions, **changes):
    state = join_plan.plan(policy(**changes), 42, 7, ("id",), frozenset(), True, "web", options)
    return state.steps, state.command


def test_attach_and_a_plain_exec_run_as_the_container_does():
    steps, command = joined(ExecOptions())
    assert steps[0] == v.JoinSpawn() and steps[5] == v.JoinDropCapabilities(())
    assert (command.cwd, command.cwd_required, command.terminal, command.stdin) == ("/context", False, False, False)
    assert joined(ATTACH)[1].stdin is True
    _, command = joined(ExecOptions(), user=(1000, 1000, ()))
    assert dict(command.env)["HOME"] == "/home/agent"


def test_exec_as_another_user_in_another_directory_with_more_environment_and_a_terminal():
    options = ExecOptions(user="nobody", workdir="/tmp", env=(("MODE", "file"), ("MODE", "flag"), ("X", "1")),
                          tty=True, interactive=True)
    steps, command = joined(options)
    assert steps[0] == v.JoinSpawn(terminal=True)
    assert steps[5] == v.JoinDropCapabilities((), (65534, 65534, ()))
    env = dict(command.env)
    assert (env["MODE"], env["X"], env["HOME"]) == ("flag", "1", "/")  # nobody has no home here
    assert (command.cwd, command.cwd_required, command.terminal, command.stdin) == ("/tmp", True, True, True)


def test_exec_u_refuses_what_the_container_does_not_know_or_map():
    with pytest.raises(InvalidInput, match="--user 'carol': no user 'carol' in the container's /etc/passwd"):
        joined(ExecOptions(user="carol"))
    with pytest.raises(InvalidInput, match="uid 1000 is not mapped"):
        joined(ExecOptions(user="1000"), id_maps=(((0, 1000, 1),), ((0, 1000, 1),)))
    # A number the container has no entry for: HOME is / (Docker's).
    _, command = joined(ExecOptions(user="2000"))
    assert dict(command.env)["HOME"] == "/"


def test_exec_u_of_the_workloads_own_user_keeps_its_home():
    p = plan(config(user="nobody"), facts(), Artifacts(seccomp_sha256=SHA), "c1")
    state = join_plan.plan(p.join, 42, 7, ("id",), frozenset(), True, "web", ExecOptions(user="65534"))
    assert state.steps[5] == v.JoinDropCapabilities((), (65534, 65534, ()))
    assert dict(state.command.env)["HOME"] == "/home/agent"  # the tmpfs the run made for it
