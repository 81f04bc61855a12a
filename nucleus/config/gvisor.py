"""`--runtime gvisor`: what a run under gVisor's runsc can honour, decided before anything
happens. Pure: it never probes the host.

runsc is the container's kernel: nucleus writes the OCI bundle (nucleus.plan.gvisor) and runsc
applies it inside its sandbox. What nucleus does itself in the native runtime and runsc cannot
be asked to do (nucleus's Landlock rules and capability policies, a seccomp trace, a port or
the workload's own notification as readiness, a user-mode network, a terminal) is refused,
naming the flag, rather than dropped.
"""

from __future__ import annotations

from collections.abc import Callable

from nucleus.config.container import ContainerConfig
from nucleus.errors import InvalidInput

# runsc's platforms: how the sandbox's kernel takes the workload's system calls. Debian's runsc
# (2022) has ptrace and kvm (no systrap); kvm needs /dev/kvm, and with it present on kernel 6.18
# its sandbox never started (runsc hung): it is tried before a run is planned on it.
PLATFORM = "ptrace"
HINT = "drop it, or run with --runtime native"

Check = Callable[[ContainerConfig], bool]


# (flag, whether the configuration uses it, why runsc cannot honour it)
REFUSED: tuple[tuple[str, Check, str], ...] = (
    ("--changes", lambda c: c.changes is not None,
     "the copy's changes are reported by a native run's supervisor, which keeps the copy"),
    ("-t/--tty", lambda c: c.tty, "runsc's terminal needs a console socket nucleus does not hand it yet"),
    ("--rootless", lambda c: c.rootless, "runsc runs here as root, with the container's ids mapped"),
    ("--time-namespace", lambda c: c.time_namespace, "the sandbox keeps its own clock"),
    ("--allow-chroot-fallback", lambda c: c.allow_chroot_fallback, "runsc makes the root itself"),
    ("--allow-degraded-security", lambda c: c.allow_degraded_security,
     "runsc applies the bundle whole or fails"),
    ("--seccomp-mode trace", lambda c: c.seccomp_mode == "trace",
     "the sandbox's system calls are gVisor's, not the workload's"),
    ("--seccomp-log-denied", lambda c: c.seccomp_log_denied, "the host kernel never sees the workload's calls"),
    ("--seccomp-default-action", lambda c: c.seccomp_default_action is not None,
     "without --seccomp-profile the workload's calls are gVisor's to answer"),
    ("--violations", lambda c: c.violations is not None, "refusals inside the sandbox are not reported to nucleus"),
    ("--caps-policy", lambda c: c.loaded_policies is not None and c.loaded_policies.caps is not None,
     "a gVisor container keeps no capability"),
    ("--landlock-policy", lambda c: c.loaded_policies is not None and c.loaded_policies.landlock is not None,
     "Landlock is the host kernel's; the sandbox's file system is gVisor's"),
    ("--secret", lambda c: bool(c.secrets), "secrets are staged on nucleus's own tmpfs, which runsc cannot bind"),
    ("--sysctl", lambda c: bool(c.sysctls), "the sandbox's kernel parameters are gVisor's, not the host kernel's"),
    ("--verify-context-integrity", lambda c: c.verify_context_integrity,
     "the copy is checked against its manifest inside a native run"),
    ("--verify-rootfs-attestation", lambda c: c.verify_rootfs_attestation, "not checked for runsc yet"),
    ("--require-kernel-lockdown", lambda c: c.require_kernel_lockdown is not None, "not checked for runsc yet"),
    ("--audit-log", lambda c: c.audit_log is not None, "the audit log follows the native machines"),
    ("--otlp-endpoint", lambda c: c.otlp_endpoint is not None, "the spans follow the native machines"),
    ("--io-limit", lambda c: bool(c.limits.io), "runsc does not apply block I/O limits"),
    ("--allow-exec", lambda c: bool(c.allow_exec), "it adjusts nucleus's own Landlock rules"),
    ("--network user", lambda c: c.network == "user",
     "a user-mode network is for runs without root, and runsc runs as root here: use --network bridge"),
    ("--attach", lambda c: bool(c.bridge.attach),
     "runsc's netstack takes the one interface of the namespace nucleus prepares for it"),
    ("--readiness-tcp", lambda c: c.service is not None and c.service.readiness.tcp is not None,
     "the port is gVisor's netstack's, in no network namespace of the host's to probe it in "
     "(use --readiness-cmd)"),
    ("--readiness-sd-notify", lambda c: c.service is not None and c.service.readiness.workload,
     "the notify socket is the host's, and runsc's gofer connects no host socket (runsc --host-uds)"),
    ("--service-mode", lambda c: c.service_mode != "agent",
     "strict-agent and production promise the native controls (Landlock, the seccomp program, the mount audit)"),
)


def refusal(config: ContainerConfig) -> InvalidInput | None:
    """The first option of `config` that a gVisor run cannot honour, as the error to raise."""
    for flag, used, why in REFUSED:
        if used(config):
            return InvalidInput(f"{flag} with --runtime gvisor: {why}", hint=HINT)
    return None

