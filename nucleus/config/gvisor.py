"""`--runtime gvisor`: what a run under gVisor's runsc can honour, decided before anything
happens. Pure: it never probes the host.

runsc is the container's kernel: nucleus writes the OCI bundle (nucleus.plan.gvisor) and runsc
applies it inside its sandbox. What nucleus does itself in the native runtime and runsc cannot
be asked to do (a copied context, nucleus's Landlock rules and capability policies, a seccomp
trace, health and readiness commands, a bridge or user-mode network, a terminal) is refused,
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


def _service(config: ContainerConfig) -> bool:
    return config.service is not None


# (flag, whether the configuration uses it, why runsc cannot honour it)
REFUSED: tuple[tuple[str, Check, str], ...] = (
    ("--context (--context-mode copy)", lambda c: c.context is not None and c.context_mode == "copy",
     "the filtered private copy is nucleus's own; under gVisor a context is bound read-only "
     "(--context-mode bind)"),
    ("--changes", lambda c: c.changes is not None, "it needs a copied context"),
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
    ("--verify-context-integrity", lambda c: c.verify_context_integrity, "it needs a copied context"),
    ("--verify-rootfs-attestation", lambda c: c.verify_rootfs_attestation, "not checked for runsc yet"),
    ("--require-kernel-lockdown", lambda c: c.require_kernel_lockdown is not None, "not checked for runsc yet"),
    ("--audit-log", lambda c: c.audit_log is not None, "the audit log follows the native machines"),
    ("--otlp-endpoint", lambda c: c.otlp_endpoint is not None, "the spans follow the native machines"),
    ("--io-limit", lambda c: bool(c.limits.io), "runsc does not apply block I/O limits"),
    ("--allow-exec", lambda c: bool(c.allow_exec), "it adjusts nucleus's own Landlock rules"),
    ("--network bridge", lambda c: c.network == "bridge", "runsc's netstack in nucleus's bridge is not wired yet"),
    ("--network user", lambda c: c.network == "user", "the user-mode stacks attach to a native container"),
    ("--health-cmd, --readiness-*, --restart, --sd-notify", _service,
     "service supervision runs commands in a native container"),
    ("--service-mode", lambda c: c.service_mode != "agent",
     "strict-agent and production promise the native controls (Landlock, the seccomp program, the mount audit)"),
)


def refusal(config: ContainerConfig) -> InvalidInput | None:
    """The first option of `config` that a gVisor run cannot honour, as the error to raise."""
    for flag, used, why in REFUSED:
        if used(config):
            return InvalidInput(f"{flag} with --runtime gvisor: {why}", hint=HINT)
    return None

