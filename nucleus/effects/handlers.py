"""Which function carries out each intent: one table for every intent of the vocabulary.

An intent's `where` says which process runs its handler: the supervisor (`Executor`, host side)
or the process the machine spawned (`SetupProcess`, inside the namespaces). A handler takes that
process's context and the intent, does exactly what the intent says, and returns the detail its
Done event carries (or None); a failure raises OSError, which the caller turns into the intent's
Fail event. Three intents change which process serves (ForkInit, ExecWorkload, ExecCommand):
the serving loop carries them out itself (nucleus.effects.setup).
"""

from __future__ import annotations

import errno as _errno
import os
from collections.abc import Callable
from typing import Any

from nucleus import vocab as v
from nucleus.config.capabilities import capability_number
from nucleus.effects import abi, caps, cgroups, fs, landlock, libc, namespaces, secrets, sysctl

Handler = Callable[[Any, Any], "str | None"]


def _drop_capabilities(_: Any, op: v.DropCapabilities) -> None:
    caps.drop_capabilities(frozenset(capability_number(name) for name in op.keep), op.user)
    caps.set_dumpable(False)  # again: a rootless run's was dumpable for its network (become_root)
    caps.set_no_new_privs()


def _load_seccomp(setup: Any, op: v.LoadSeccomp) -> None:
    if op.mode == "trace":
        if setup.trace_fd is None:
            raise OSError(_errno.EBADF, "seccomp trace mode: no socket to the tracer")
        # Every syscall from here on (this process and the workload) is reported to the
        # supervisor's tracer and allowed. Imported by the supervisor before the fork.
        from nucleus.effects import seccomp_handoff

        seccomp_handoff.start_tracing(setup.trace_fd)
        os.close(setup.trace_fd)
        setup.trace_fd = None
        return
    program = setup.programs.get(op.program_sha256)
    if program is None:
        raise OSError(_errno.ENOENT, f"no compiled seccomp program {op.program_sha256[:12]}")
    if op.mode == "notify":
        if setup.trace_fd is None:
            raise OSError(_errno.EBADF, "seccomp: no socket to the violation monitor")
        # The calls the program refuses wait for the monitor, which answers them as the program
        # says and records them; the rest run as under the plain program.
        from nucleus.effects import seccomp_handoff

        seccomp_handoff.start_notifying(setup.trace_fd, program, op.program_sha256.encode(), op.log_denied)
        os.close(setup.trace_fd)
        setup.trace_fd = None
        return
    caps.set_no_new_privs()
    libc.seccomp_set_mode_filter(program, abi.SECCOMP_FILTER_FLAG_LOG if op.log_denied else 0)


def _apply_landlock(setup: Any, op: v.ApplyLandlock) -> None:
    abi_version = landlock.abi_version()
    need = max(op.min_abi, 1)
    if abi_version < need:
        raise OSError(_errno.EOPNOTSUPP, f"Landlock ABI {abi_version} is below the required {need}")
    landlock.restrict([(path, frozenset(access)) for path, access in op.rules], abi=abi_version,
                      log_new_exec=op.log_new_exec)
    setup.landlock = op.rules  # what a refused exec is checked against (nucleus.effects.setup)


def _remove_cgroup(_: Any, op: v.RemoveCgroup) -> str | None:
    return cgroups.release(op)


def _set_cgroup_limits(_: Any, op: v.SetCgroupLimits) -> str:
    return cgroups.write_limits(op)  # the writes it skipped, for the machine to warn of


def _network(name: str, with_pid: bool = False) -> Handler:
    """A handler of nucleus.effects.network, imported at its first use: only a bridge loads
    rtnetlink's library (the executor loads it before it spawns the setup process, which uses
    it too)."""
    def handler(ex: Any, op: Any) -> str | None:
        from nucleus.effects import network

        fn = getattr(network, name)
        result = fn(op, ex.served_pid()) if with_pid else fn(op)
        return result if isinstance(result, str) else None
    return handler


def _proxy(ex: Any, op: v.NetProxy) -> str | None:
    """The egress process, given the executor's copy of the --violations FILE (if any)."""
    from nucleus.effects import network

    return network.proxy(op, ex.take_egress_copy(), ex.served_pid() if op.inside_group else 0)


def _on(fn: Callable[[Any], object]) -> Handler:
    """A handler for an effect that needs only the intent."""
    def handler(_: Any, op: Any) -> None:
        fn(op)
    return handler


HANDLERS: dict[type[v.Intent], Handler] = {
    # host side (the supervisor): see nucleus.effects.executor for the process handles
    v.SpawnChild: lambda ex, op: ex.spawn(op),
    v.WriteIdMaps: lambda ex, op: namespaces.write_id_maps(op, ex.served_pid()),
    v.Warn: lambda ex, op: ex.warn(op.message),
    v.SendSignal: lambda ex, op: ex.send_signal(op.signal),
    v.Cleanup: lambda ex, op: ex.cleanup(),
    v.CreateCgroup: _on(cgroups.create),
    v.SetCgroupLimits: _set_cgroup_limits,
    v.AttachCgroup: lambda ex, op: cgroups.attach(op, ex.served_pid()),
    v.RemoveCgroup: _remove_cgroup,
    v.NetBridge: _network("bridge"),
    v.NetVeth: _network("veth", with_pid=True),
    v.NetAttach: _network("attach", with_pid=True),
    v.NetNat: _network("rules"),
    v.NetEgress: _network("egress"),
    v.NetProxy: _proxy,
    v.NetUser: _network("usernet", with_pid=True),
    v.NetTeardown: _network("teardown"),
    # inside (the setup process, or the joining process)
    v.Unshare: _on(namespaces.unshare),
    v.SetHostname: _on(namespaces.set_hostname),
    v.LoopbackUp: _on(namespaces.loopback_up),
    v.EnterUserNamespace: _on(namespaces.enter_user_namespace),
    v.BecomeRoot: _on(namespaces.become_root),
    v.JoinIdentity: _on(namespaces.join_identity),
    v.EnterNamespaces: _on(namespaces.enter_namespaces),
    **{cls: _on(effect) for cls, effect in fs.EFFECTS.items()},
    v.WriteSysctl: _on(sysctl.write_sysctl),
    v.KeepTree: lambda setup, op: fs.keep_tree(op, setup.handover),
    v.WriteSecret: lambda setup, op: secrets.write_secret(op, setup.secrets),
    v.BindSecret: _on(secrets.bind_secret),
    v.DropCapabilities: _drop_capabilities,
    v.LoadSeccomp: _load_seccomp,
    v.ApplyLandlock: _apply_landlock,
    v.NetFilter: _network("filter_rules"),
    v.NetJoin: _network("join"),
    v.NetAddress: _network("addresses"),
    v.NetLinkUp: _network("link_up"),
    v.NetRoute: _network("routes"),
}
# Carried out by the serving loop itself: they change which process serves.
SERVING_LOOP: tuple[type[v.Intent], ...] = (v.ForkInit, v.ExecWorkload, v.ExecCommand)


def handler_for(intent: v.Intent) -> Handler:
    """The handler of the intent's class, or of the class it specializes (JoinFork is a
    ForkInit that reports to the join machine)."""
    for cls in type(intent).__mro__:
        found = HANDLERS.get(cls)
        if found is not None:
            return found
    raise LookupError(f"no handler for {intent.name}")


def child_handler(intent: v.Intent) -> Handler:
    if intent.where != "child":
        raise LookupError(f"{intent.name} is carried out by the supervisor, not inside")
    return handler_for(intent)
