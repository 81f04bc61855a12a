"""Joining a running container as a plan: from what the container recorded when it started (its
JoinPolicy) and what is true of it now (its init's pid, its controls that run degraded, whether
its cgroup exists), every step of the Join machine with the data its intent carries. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from nucleus import vocab as v
from nucleus.errors import InvalidInput
from nucleus.machines import join
from nucleus.plan.run import JOIN_ORDER, JoinPolicy

DEFAULT_COMMAND = ("/bin/sh",)


def namespaces(init_pid: int, policy: JoinPolicy) -> tuple[tuple[str, str], ...]:
    """The namespaces the container made, of its init, in the order they are entered: the user
    namespace first when it owns the others (rootless), last when it was entered last. A kind
    the container shares with the host (time without --time-namespace) is not joined."""
    others = tuple((kind, f"/proc/{init_pid}/ns/{kind}") for kind in JOIN_ORDER if kind in policy.namespaces)
    user = (("user", f"/proc/{init_pid}/ns/user"),)
    return user + others if policy.rootless else others + user


def plan(policy: JoinPolicy, init_pid: int, init_start: int, argv: tuple[str, ...],
         degraded: frozenset[str], in_cgroup: bool, name: str = "") -> join.JoinState:
    """Raises InvalidInput when the container cannot be joined with its own restrictions."""
    if policy.seccomp_mode == "trace":
        raise InvalidInput(
            f"cannot attach to container {name!r}: it runs in seccomp trace mode, whose filter "
            "reports to the container's own tracer", hint="attach to a container started with "
            "--seccomp-mode enforce")
    steps: tuple[v.Intent, ...] = (
        v.JoinSpawn(),
        v.JoinCgroup(policy.cgroup_procs if in_cgroup else ()),
        v.EnterNamespaces(namespaces(init_pid, policy), clear_groups=not policy.rootless,
                          pid=init_pid, start=init_start),
        v.JoinIdentity(),
        v.JoinFork(),
        v.JoinDropCapabilities(policy.caps_keep),
        v.JoinLoadSeccomp(policy.seccomp_sha256, policy.seccomp_log_denied),
        v.JoinApplyLandlock(policy.landlock_rules, policy.landlock_min_abi),
    )
    command = v.ExecCommand(argv or DEFAULT_COMMAND, policy.env, policy.cwd, policy.rlimits)
    return join.initial(steps, command, degradable=degraded)


@dataclass(frozen=True)
class JoinInputs:
    """Everything `plan` takes: what a recorded trace keeps so that replay can plan again."""

    policy: JoinPolicy
    init_pid: int
    init_start: int
    argv: tuple[str, ...]
    degraded: frozenset[str]
    in_cgroup: bool
    name: str = ""

    def plan(self) -> join.JoinState:
        return plan(self.policy, self.init_pid, self.init_start, self.argv, self.degraded,
                    self.in_cgroup, self.name)
