"""The machines' parameters a run's service mode and trust level fix: formal/System.tla's
ModeParameters, computed from what the run asked for. Pure.

The strict modes (strict-agent, production) never degrade a control, never trace seccomp, never
fall back to a chroot and require their cgroup; production also audits its mounts, and a network
of its own denies egress by default. An untrusted workload is refused every weakening in every
mode. Validation refuses the flags that ask otherwise before anything runs; the mapping does not
rely on it: a weakening the mode or the trust level forbids is never passed on.
"""

from __future__ import annotations

from nucleus.config import modes
from nucleus.frozen import frozen


@frozen
class Parameters:
    """What the spec's parameters are for one run (the spec's variable in each comment)."""

    mode: str  # sys_mode
    strict: bool  # sec_strict: a control that cannot be applied stops the run
    allow_degraded: bool  # sec_allowDegraded
    trace: bool  # sec_trace: seccomp trace mode (the filter allows every call)
    cgroup_required: bool  # res_required
    audit: bool  # fs_audit: the sealed root's mounts checked before the workload runs
    allow_chroot: bool  # fs_allowChroot
    egress_denied: bool  # a bridge or user-mode network denies egress without a policy (net_egress)

    def to_tla(self) -> dict[str, object]:
        """The spec's variables these parameters set."""
        return {
            "sys_mode": self.mode, "sec_strict": self.strict, "sec_allowDegraded": self.allow_degraded,
            "sec_trace": self.trace, "res_required": self.cgroup_required, "fs_audit": self.audit,
            "fs_allowChroot": self.allow_chroot,
        }


def parameters(service_mode: str, trust_level: str = modes.DEFAULT_TRUST_LEVEL, *,
               allow_degraded_security: bool = False, allow_chroot_fallback: bool = False,
               seccomp_trace: bool = False) -> Parameters:
    """The parameters for `service_mode` and `trust_level` with the weakenings the run asked
    for (--allow-degraded-security, --allow-chroot-fallback, --seccomp-mode trace): honoured
    only in agent mode for a trusted workload."""
    strict = service_mode in modes.STRICT_MODES
    weakens = not strict and trust_level == modes.TRUSTED
    return Parameters(
        mode=service_mode, strict=strict,
        allow_degraded=weakens and allow_degraded_security,
        trace=weakens and seccomp_trace,
        cgroup_required=modes.cgroups_required(service_mode),
        audit=bool(modes.mount_audit(service_mode)),
        allow_chroot=weakens and allow_chroot_fallback,
        egress_denied=egress_denied(service_mode),
    )


def egress_denied(service_mode: str) -> bool:
    """Whether a network of the container's own denies egress without an --egress-* policy
    (row "Egress policy"): in production."""
    return service_mode == modes.PRODUCTION
