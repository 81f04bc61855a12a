"""Joining a running container as a plan: from what the container recorded when it started (its
JoinPolicy), what is true of it now (its init's pid, its controls that run degraded, whether
its cgroup exists) and what `exec` asks (ExecOptions), every step of the Join machine with the
data its intent carries. Pure.
"""

from __future__ import annotations

from dataclasses import field

from nucleus import vocab as v
from nucleus.config.exec_options import PLAIN, ExecOptions
from nucleus.errors import InvalidInput
from nucleus.frozen import frozen
from nucleus.machines import join
from nucleus.plan import users
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
         degraded: frozenset[str], in_cgroup: bool, name: str = "",
         options: ExecOptions = PLAIN, stream: str = "") -> join.JoinState:
    """Raises InvalidInput when the container cannot be joined with its own restrictions, or
    as `options` ask (a user it does not know).

    `stream`: the container's violation stream. The command's refusals are recorded there as
    the container's workload's are: it loads the notify form of the container's program, whose
    listener goes to a violation monitor of its own that the joining side starts with it
    (JoinSpawn) and that writes to that stream; and Landlock logs the denials of the program it
    execs, which that monitor records too. (A record that names no program: no monitor.)"""
    if policy.seccomp_mode == "trace":
        raise InvalidInput(
            f"cannot attach to container {name!r}: it runs in seccomp trace mode, whose filter "
            "reports to the container's own tracer", hint="attach to a container started with "
            "--seccomp-mode enforce")
    user, env = _user(policy, options)
    notify = bool(stream and policy.seccomp_sha256)
    steps: tuple[v.Intent, ...] = (
        v.JoinSpawn(terminal=options.tty, violations=stream if notify else ""),
        v.JoinCgroup(policy.cgroup_procs if in_cgroup else ()),
        v.EnterNamespaces(namespaces(init_pid, policy), clear_groups=not policy.rootless,
                          pid=init_pid, start=init_start),
        v.JoinIdentity(),
        v.JoinFork(),
        v.JoinDropCapabilities(policy.caps_keep, user),
        v.JoinLoadSeccomp(policy.seccomp_sha256, policy.seccomp_log_denied, "notify" if notify else "enforce"),
        v.JoinApplyLandlock(policy.landlock_rules, policy.landlock_min_abi, log_new_exec=notify),
    )
    command = v.ExecCommand(argv or DEFAULT_COMMAND, env, options.workdir or policy.cwd, policy.rlimits,
                            policy.places, terminal=options.tty, stdin=options.interactive,
                            cwd_required=options.workdir is not None)
    return join.initial(steps, command, degradable=degraded)


def _user(policy: JoinPolicy, options: ExecOptions) -> tuple[users.Switch | None, tuple[tuple[str, str], ...]]:
    """Who the command runs as (the container's workload's user unless -u names another: its
    home becomes HOME, / when it has none there, as Docker's), and its environment: the
    container's, then the options'."""
    env = dict(policy.env)
    user = policy.user
    if options.user is not None:
        passwd, group, problem = policy.accounts
        maps = policy.id_maps if policy.id_maps != ((), ()) else _maps_of(policy.rootless)
        account = users.resolve(options.user, passwd, group, *maps, where="the container's /etc/passwd "
                                "and /etc/group", problem=problem, unnamed_home="/", no_home="/")
        if account.uid != (policy.user or (0,))[0]:  # the workload's own user keeps its HOME
            env["HOME"] = account.home
        user = account.switch
    env.update(options.env)
    return user, tuple(env.items())


def _maps_of(rootless: bool) -> tuple[v.IdMap, v.IdMap]:
    """The container side of a record's id maps when it does not keep them: container root
    alone (rootless), or the 65536 ids of a run as root."""
    count = 1 if rootless else 65536
    return ((0, 0, count),), ((0, 0, count),)


@frozen
class JoinInputs:
    """Everything `plan` takes: what a recorded trace keeps so that replay can plan again."""

    policy: JoinPolicy
    init_pid: int
    init_start: int
    argv: tuple[str, ...]
    degraded: frozenset[str]
    in_cgroup: bool
    name: str = ""
    options: ExecOptions = field(default_factory=ExecOptions)
    stream: str = ""

    def plan(self) -> join.JoinState:
        return plan(self.policy, self.init_pid, self.init_start, self.argv, self.degraded,
                    self.in_cgroup, self.name, self.options, self.stream)
