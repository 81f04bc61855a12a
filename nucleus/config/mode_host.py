"""What the host must offer each service mode: the refusals of a valid request on a host
(``host_problems``, ``check_host``, ``validate_host``, after ``mode_validation`` and before any
effect), and what a host means for a run in each mode (``assess``, for ``nucleus check``).

Pure: the host facts arrive as a :class:`nucleus.facts.HostFacts` gathered by the caller
(``nucleus.effects.probe``); nothing here probes the host.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from nucleus.config.mode_validation import Problem, _raise, _row
from nucleus.config.modes import (
    AGENT,
    FLAGS,
    LOCKDOWN_PATH,
    NIX_STORE,
    PRODUCTION,
    REQUIRABLE_LOCKDOWN,
    STRICT_MODES,
    UNTRUSTED,
    ModeRequest,
    _mode,
    cgroups_required,
    lockdown_satisfied,
    min_landlock_abi,
    parse_lockdown,
    store_path_problem,
)
from nucleus.errors import HostUnsupported
from nucleus.facts import HostFacts


def host_problems(req: ModeRequest, host: HostFacts,
                  labels: Mapping[str, str] | None = None) -> list[Problem]:
    """Every refusal of a valid ``req`` on a host with ``host``'s facts."""
    name = {**FLAGS, **(labels or {})}
    mode = req.service_mode
    degraded_ok = mode == AGENT and req.allow_degraded_security
    out: list[Problem] = []

    if host.max_user_namespaces is not None and host.max_user_namespaces <= 0:
        out.append(Problem(
            "this host allows no user namespaces (user.max_user_namespaces is "
            f"{host.max_user_namespaces}); every nucleus container runs in one",
            "allow them: sysctl -w user.max_user_namespaces=15000"))

    if host.seccomp_filter is False and not degraded_ok:
        out.append(Problem(
            f"this kernel has no seccomp filters: refused in {mode} mode "
            f"{_row(mode, 'Degraded security', 'never runs without a syscall filter')}",
            "use a kernel built with CONFIG_SECCOMP_FILTER" + (
                f", or pass {name['allow_degraded_security']} to run without it"
                if mode == AGENT else ""), "Degraded security"))

    if host.landlock_abi is not None:
        need = min_landlock_abi(mode, req.allow_degraded_security)
        if host.landlock_abi < need:
            have = ("Landlock is not available on this host (ABI 0)" if host.landlock_abi == 0
                    else f"Landlock ABI {host.landlock_abi} is below {need}")
            rule = (f"requires ABI {need} minimum" if mode == PRODUCTION
                    else "needs Landlock unless degraded security is allowed"
                    if mode == AGENT else "needs Landlock")
            hint = ("ABI 3 (Linux 6.2) is the first that can deny truncate; use a newer kernel "
                    "with Landlock in the lsm= list" if mode == PRODUCTION
                    else "boot with Landlock in the lsm= list (Linux 5.13 or later)"
                    + (f", or pass {name['allow_degraded_security']}" if mode == AGENT else ""))
            out.append(Problem(f"{have}: refused in {mode} mode {_row(mode, 'Landlock ABI', rule)}",
                               hint, "Landlock ABI"))

    undelegated = _undelegated(host)
    if cgroups_required(mode) and undelegated is not None:
        out.append(Problem(
            f"{undelegated}: refused in {mode} mode "
            f"{_row(mode, 'Cgroup limits', 'requires cgroups; a failure is fatal')}",
            f"run it in a cgroup v2 group delegated to uid {host.euid}, e.g. with: systemd-run "
            "--user --scope -p Delegate=yes nucleus run ...; or run it as root",
            "Cgroup limits"))
    elif host.cgroups is not None and host.cgroups.unusable and cgroups_required(mode) \
            and not (_unprivileged(host) and host.cgroups.delegated):
        out.append(Problem(
            f"no usable cgroup hierarchy ({host.cgroups.unusable}): refused in "
            f"{mode} mode {_row(mode, 'Cgroup limits', 'requires cgroups; a failure is fatal')}",
            "mount cgroup2 with the memory, cpu and pids controllers (or v1 hierarchies for "
            "them)", "Cgroup limits"))

    required = req.require_kernel_lockdown
    if required is not None and host.lockdown_probed and not lockdown_satisfied(required, host.lockdown):
        flag = f"{name['require_kernel_lockdown']} {required!r}"
        if host.lockdown is None:
            out.append(Problem(
                f"{flag}: cannot read the kernel's lockdown mode"
                + (f" ({host.lockdown_error})" if host.lockdown_error else ""),
                f"mount securityfs at {LOCKDOWN_PATH.rsplit('/', 1)[0]}, or drop "
                f"{name['require_kernel_lockdown']}"))
        else:
            try:
                current = repr(parse_lockdown(host.lockdown))
            except ValueError as e:
                current = f"unreadable ({e})"
            out.append(Problem(
                f"{flag}: the kernel's lockdown mode is {current}",
                f"boot with lockdown={required} (kernel command line), or require less"))

    unprivileged_root = mode in STRICT_MODES or req.trust_level == UNTRUSTED
    if unprivileged_root and req.rootless and host.euid == 0:
        why = (f"refused in {mode} mode "
               f"{_row(mode, 'User namespace', 'keeps container root unprivileged')}"
               if mode in STRICT_MODES else f"refused with {name['trust_level']} untrusted")
        out.append(Problem(
            f"{name['rootless']} run as root would map container root to host root: {why}",
            f"drop {name['rootless']}: run as root, nucleus maps container root to an "
            "unprivileged uid range", "User namespace" if mode in STRICT_MODES else ""))

    if mode == PRODUCTION and req.rootfs is not None and host.rootfs_realpath is not None:
        outside = store_path_problem(host.rootfs_realpath)
        if outside is not None:
            out.append(Problem(
                f"{name['rootfs']} {req.rootfs!r} resolves to {host.rootfs_realpath!r}: {outside} "
                f"{_row(mode, 'Rootfs', f'needs a path under {NIX_STORE}')}",
                "pass the store path itself, not a link that leads out of the store", "Rootfs"))
    return out


def _unprivileged(host: HostFacts) -> bool:
    return host.euid is not None and host.euid != 0


def _undelegated(host: HostFacts) -> str | None:
    """Why a run by this caller, who is not root, has no cgroup it may make its group in; None
    when it has one, when the caller is root, or when delegation was not probed."""
    if not _unprivileged(host) or host.cgroups is None or host.cgroups.delegated \
            or not host.cgroups.delegation:
        return None
    return f"a rootless run (uid {host.euid}) has no cgroup of its own: {host.cgroups.delegation}"


def check_host(req: ModeRequest, host: HostFacts,
               labels: Mapping[str, str] | None = None) -> list[str]:
    return [p.message for p in host_problems(req, host, labels)]


def validate_host(req: ModeRequest, host: HostFacts,
                  labels: Mapping[str, str] | None = None) -> ModeRequest:
    """Raise HostUnsupported (exit 3) naming the first refusal; call after ``validate_mode``
    and before any effect."""
    _raise(host_problems(req, host, labels), HostUnsupported)
    return req


# --- what a host means for each mode (nucleus check) --------------------------------------------


class Finding(NamedTuple):
    """One line of ``nucleus check`` for one mode: the row, "ok", "refused", "warn" or "info",
    and a sentence."""

    row: str
    status: str
    detail: str


def assess(mode: str, host: HostFacts) -> list[Finding]:
    """What ``host`` means for a run in ``mode``: each host-dependent row, ok or refused."""
    _mode(mode)
    out: list[Finding] = []
    if host.max_user_namespaces is not None:
        ok = host.max_user_namespaces > 0
        out.append(Finding("User namespaces", "ok" if ok else "refused",
                           f"user.max_user_namespaces is {host.max_user_namespaces}"
                           + ("" if ok else "; every container needs one")))
    if host.seccomp_filter is not None:
        if host.seccomp_filter:
            out.append(Finding("Seccomp", "ok", "the kernel accepts seccomp filters"))
        elif mode == AGENT:
            out.append(Finding("Seccomp", "warn", "no seccomp filters: runs only with "
                               "--allow-degraded-security"))
        else:
            out.append(Finding("Seccomp", "refused", f"no seccomp filters; {mode} never runs "
                               "without a syscall filter"))
    if host.landlock_abi is not None:
        need = min_landlock_abi(mode)
        abi = host.landlock_abi
        if abi >= need:
            out.append(Finding("Landlock ABI", "ok", f"ABI {abi} (needs {need} or later)"))
        elif mode == AGENT:
            out.append(Finding("Landlock ABI", "warn", f"ABI {abi}: runs only with "
                               "--allow-degraded-security"))
        else:
            out.append(Finding("Landlock ABI", "refused", f"ABI {abi}; {mode} needs {need} or later"))
    undelegated = _undelegated(host)
    if undelegated is not None:
        if cgroups_required(mode):
            out.append(Finding("Cgroup limits", "refused", f"required; {undelegated}"))
        else:
            out.append(Finding("Cgroup limits", "warn", f"best-effort: limits will not apply; {undelegated}"))
    elif host.cgroups is not None and _unprivileged(host) and host.cgroups.delegated:
        how = "required" if cgroups_required(mode) else "best-effort"
        out.append(Finding("Cgroup limits", "ok", f"{how}; the cgroup v2 group "
                           f"{host.cgroups.delegated} is delegated to uid {host.euid}"))
    elif host.cgroups is not None:
        usable = host.cgroups.unusable is None
        detail = f"cgroup {host.cgroups.backend}"
        if not usable:
            detail += f" ({host.cgroups.unusable})"
        if usable:
            how = "required" if cgroups_required(mode) else "best-effort"
            out.append(Finding("Cgroup limits", "ok", f"{how}; {detail}"))
        elif cgroups_required(mode):
            out.append(Finding("Cgroup limits", "refused", f"required; {detail}"))
        else:
            out.append(Finding("Cgroup limits", "warn", f"best-effort: limits will not apply; {detail}"))
    if host.lockdown_probed:
        if host.lockdown is None:
            out.append(Finding("Kernel lockdown", "info", "unreadable"
                               + (f" ({host.lockdown_error})" if host.lockdown_error else "")
                               + ": --require-kernel-lockdown is refused"))
        else:
            try:
                current = parse_lockdown(host.lockdown)
            except ValueError as e:
                out.append(Finding("Kernel lockdown", "info", f"{e}: --require-kernel-lockdown "
                                   "is refused"))
            else:
                parts = [f"{level} {'satisfied' if lockdown_satisfied(level, host.lockdown) else 'refused'}"
                         for level in REQUIRABLE_LOCKDOWN]
                out.append(Finding("Kernel lockdown", "info",
                                   f"{current!r}: --require-kernel-lockdown " + ", ".join(parts)))
    if host.euid == 0 and mode in STRICT_MODES:
        out.append(Finding("User namespace", "info", "run as root: --rootless is refused "
                           "(container root stays unprivileged)"))
    return out
