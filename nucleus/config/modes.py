"""Service modes and trust levels: which options a run may combine, and what the host must offer.

Pure: the request arrives as a :class:`ModeRequest` (what the run asked for) and host facts, when a
check needs them, as a :class:`HostFacts` gathered by the caller (``nucleus.effects.hostcheck``).
Nothing here probes the host.

Service modes (``--service-mode``):

- ``agent`` (default): ephemeral sandboxes. Controls that cannot be applied may be skipped with
  ``--allow-degraded-security``; ``--allow-chroot-fallback`` and ``--allow-host-network`` are
  honoured; cgroup limits are best-effort.
- ``strict-agent``: agent workloads with nothing weakened: degraded security, chroot fallback, host
  networking and seccomp trace mode are refused, bridge DNS must be explicit, and a run as root
  never maps container root to host root.
- ``production``: long-running services. Everything strict-agent refuses, plus: ``--memory`` and
  ``--cpus`` required, a pre-built Nix closure as root filesystem (``--rootfs /nix/store/...``),
  every policy file pinned by sha256, no dangerous capability in a caps policy, Landlock ABI 3 or
  later, cgroups required, /proc with ``hidepid=2`` and a mount audit after setup.

Trust levels (``--trust-level``) say whether the operator vouches for the workload:

- ``trusted`` (default): the options that weaken isolation do what they say, where the service
  mode allows them. The default does not weaken anything by itself: every weakening is its own
  opt-in flag.
- ``untrusted``: the workload may be hostile. Every option that weakens isolation is refused in
  every mode: ``--allow-degraded-security``, ``--allow-chroot-fallback``, host networking,
  ``--seccomp-mode trace`` (it runs the workload with no syscall filter), dangerous capabilities
  in a caps policy, and ``--rootless`` run by root (container root would be host root).
  nucleus does not switch runtimes on the trust level (gVisor is not integrated): untrusted runs
  natively with every control fail-closed.

Errors raised for a table row name the row of the reference's "Production Mode vs Agent Mode"
table, e.g.::

    error: --allow-degraded-security is forbidden in production mode (row "Degraded security": production forbids it)
    hint: drop --allow-degraded-security: in production mode a control that cannot be applied stops the run
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from nucleus.config.capabilities import CAPABILITY_NAMES
from nucleus.errors import HostUnsupported, InvalidInput

AGENT = "agent"
STRICT_AGENT = "strict-agent"
PRODUCTION = "production"
SERVICE_MODES = (AGENT, STRICT_AGENT, PRODUCTION)
DEFAULT_SERVICE_MODE = AGENT
STRICT_MODES = (STRICT_AGENT, PRODUCTION)  # modes that refuse every weakening

TRUSTED = "trusted"
UNTRUSTED = "untrusted"
TRUST_LEVELS = (TRUSTED, UNTRUSTED)
DEFAULT_TRUST_LEVEL = TRUSTED

NETWORK_MODES = ("none", "host", "bridge")  # the modes the rules know; only "none" runs today
SECCOMP_MODES = ("enforce", "trace")
CONTEXT_MODES = ("copy", "bind")
LOCKDOWN_LEVELS = ("none", "integrity", "confidentiality")  # weakest first
REQUIRABLE_LOCKDOWN = ("integrity", "confidentiality")
LOCKDOWN_PATH = "/sys/kernel/security/lockdown"

# Public resolvers an agent-mode bridge uses when --dns is not given; strict modes never do.
AGENT_DEFAULT_DNS = ("8.8.8.8", "8.8.4.4")

NIX_STORE = "/nix/store"
# A store entry: 32 characters of Nix's base32 (no e, o, u, t), '-', then the name.
_STORE_ENTRY_RE = re.compile(r"^[0-9abcdfghijklmnpqrsvwxyz]{32}-[A-Za-z0-9+\-_?=][A-Za-z0-9+\-._?=]*$")

PRODUCTION_MIN_LANDLOCK_ABI = 3  # ABI 3 is the first that can deny truncate(2)

# Capabilities production (and an untrusted workload) never keeps: each reaches past the
# container (kernel modules, raw I/O, ptrace, BPF, MAC policy) or undoes a file-permission check.
DANGEROUS_CAPABILITIES = frozenset({
    "CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_PTRACE", "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH", "CAP_SYS_BOOT", "CAP_MAC_ADMIN", "CAP_MAC_OVERRIDE", "CAP_SYS_PACCT",
    "CAP_LINUX_IMMUTABLE", "CAP_BPF", "CAP_PERFMON", "CAP_NET_RAW", "CAP_SETUID", "CAP_SETGID",
    "CAP_FOWNER",
})

# Policy file kinds: (file flag, pin flag).
POLICY_KINDS = {
    "seccomp": ("seccomp_profile", "seccomp_profile_sha256"),
    "caps": ("caps_policy", "caps_policy_sha256"),
    "landlock": ("landlock_policy", "landlock_policy_sha256"),
}

# How each field is named to the user; ``labels`` renames them for another source (a TOML file).
FLAGS = {
    "service_mode": "--service-mode",
    "trust_level": "--trust-level",
    "memory": "--memory",
    "cpus": "--cpus",
    "allow_degraded_security": "--allow-degraded-security",
    "allow_chroot_fallback": "--allow-chroot-fallback",
    "network": "--network",
    "allow_host_network": "--allow-host-network",
    "dns": "--dns",
    "seccomp_mode": "--seccomp-mode",
    "rootfs": "--rootfs",
    "seccomp_profile": "--seccomp-profile",
    "seccomp_profile_sha256": "--seccomp-profile-sha256",
    "caps_policy": "--caps-policy",
    "caps_policy_sha256": "--caps-policy-sha256",
    "landlock_policy": "--landlock-policy",
    "landlock_policy_sha256": "--landlock-policy-sha256",
    "verify_context_integrity": "--verify-context-integrity",
    "context": "--context",
    "context_mode": "--context-mode",
    "require_kernel_lockdown": "--require-kernel-lockdown",
    "rootless": "--rootless",
}


# --- the table ----------------------------------------------------------------------------------


class Row(NamedTuple):
    """One row of the modes table: what each mode does, and where nucleus enforces it.

    ``enforced``: "validation" (before anything runs), "host" (against host facts, before any
    effect), "runtime" (by the setup, fatal where the mode says so), "always" (every mode, by
    construction), "none" (no rule: optional everywhere) or "not yet" (see NOT_ENFORCED_YET).
    ``source``: "table" for the reference README's rows, "reference" for rules its code adds.
    """

    name: str
    agent: str
    strict_agent: str
    production: str
    enforced: str
    source: str = "table"

    def column(self, mode: str) -> str:
        return {AGENT: self.agent, STRICT_AGENT: self.strict_agent, PRODUCTION: self.production}[mode]


TABLE: tuple[Row, ...] = (
    Row("Service mode", "--service-mode agent (default)", "--service-mode strict-agent",
        "--service-mode production", "validation"),
    Row("Degraded security", "allowed with --allow-degraded-security", "forbidden", "forbidden",
        "validation"),
    Row("Chroot fallback", "allowed with --allow-chroot-fallback", "forbidden", "forbidden",
        "validation"),
    Row("Host networking", "allowed with --allow-host-network", "forbidden", "forbidden",
        "validation"),
    Row("Cgroup limits", "best-effort", "best-effort", "required (fatal on failure)", "host"),
    Row("Bridge DNS", "defaults to 8.8.8.8, 8.8.4.4", "must be configured explicitly",
        "must be configured explicitly", "validation"),
    Row("Rootfs", "host bind mounts (/bin, /usr, /lib, /nix)", "host bind mounts",
        "pre-built Nix closure (--rootfs /nix/store/...)", "validation"),
    Row("Egress policy", "optional", "optional", "deny-all default (fatal on apply failure)",
        "not yet"),
    Row("Memory limit", "optional", "optional", "required", "validation"),
    Row("CPU limit", "optional", "optional", "required", "validation", "reference"),
    Row("PID 1 init", "mini-init (reaps zombies, forwards signals)",
        "mini-init (reaps zombies, forwards signals)",
        "mini-init (reaps zombies, forwards signals)", "always"),
    Row("Secrets", "not supported yet", "not supported yet",
        "in-memory tmpfs with volatile zeroing", "not yet"),
    Row("/proc", "mounted normally (read-only)", "mounted normally (read-only)",
        "hidepid=2 (hides other users' processes)", "runtime"),
    Row("Mount audit", "skipped", "skipped", "post-setup flag verification (fatal)", "runtime"),
    Row("Seccomp trace mode", "allowed", "forbidden", "forbidden", "validation"),
    Row("Landlock ABI", "best-effort (required unless --allow-degraded-security)", "ABI 1 minimum",
        "ABI 3 minimum", "host"),
    Row("Health checks", "optional", "optional", "optional", "none"),
    Row("sd_notify", "optional", "optional", "optional", "none"),
    Row("Security policies", "optional", "optional", "optional, each pinned by sha256",
        "validation"),
    Row("Capabilities", "any, with a caps policy", "any, with a caps policy",
        "the 17 dangerous capabilities refused", "validation", "reference"),
    Row("User namespace", "--rootless as root maps container root to root",
        "container root always unprivileged", "container root always unprivileged", "host",
        "reference"),
    Row("Rootfs attestation", "optional", "optional", "required (--verify-rootfs-attestation)",
        "not yet", "reference"),
)
ROWS = {row.name: row for row in TABLE}


class Pending(NamedTuple):
    """A row nucleus cannot enforce yet, and why."""

    row: str
    rule: str
    reason: str


NOT_ENFORCED_YET: tuple[Pending, ...] = (
    Pending("Egress policy", "production: deny-all egress by default, fatal if the rules cannot "
            "be applied",
            "only --network none exists: a container has no egress at all, so the row holds "
            "trivially; --egress-allow and its enforcement arrive with bridge networking"),
    Pending("Secrets", "production: secrets on an in-memory tmpfs at /run/secrets, source "
            "buffers zeroed",
            "there is no --secret option yet; without it no secret enters a container"),
    Pending("Rootfs attestation", "production: a .nucleus-rootfs-sha256 manifest verified "
            "against the mounted rootfs (--verify-rootfs-attestation)",
            "manifest verification is not implemented; requiring it would refuse every "
            "production run"),
)


# --- the request --------------------------------------------------------------------------------


class PolicyFile(NamedTuple):
    """A policy file given to the run: kind ("seccomp", "caps" or "landlock"), its path, and
    whether its sha256 was pinned with the matching ``--*-sha256`` option."""

    kind: str
    path: str
    pinned: bool = False


@dataclass(frozen=True)
class ModeRequest:
    """What a run asked for, as far as the service mode and trust level care.

    ``memory_set``/``cpus_set``: whether --memory/--cpus were given. ``caps_kept``: every
    capability name any set of the caps policy keeps ("SYS_ADMIN" or "CAP_SYS_ADMIN").
    ``context``: the --context directory or None.
    """

    service_mode: str = DEFAULT_SERVICE_MODE
    trust_level: str = DEFAULT_TRUST_LEVEL
    memory_set: bool = False
    cpus_set: bool = False
    allow_degraded_security: bool = False
    allow_chroot_fallback: bool = False
    network: str = "none"
    allow_host_network: bool = False
    dns: tuple[str, ...] = ()
    seccomp_mode: str = "enforce"
    rootfs: str | None = None
    policies: tuple[PolicyFile, ...] = ()
    caps_kept: tuple[str, ...] = ()
    verify_context_integrity: bool = False
    context: str | None = None
    context_mode: str = "copy"
    require_kernel_lockdown: str | None = None
    rootless: bool = False


def from_container_spec(spec: object, **fields: object) -> ModeRequest:
    """A ModeRequest from a container spec's fields of the same names (``service_mode``,
    ``allow_degraded_security``, ``context``, ``limits.memory``...), overridden by ``fields``.
    Fields the spec does not have keep their defaults."""
    values: dict[str, object] = {}
    for name in ModeRequest.__dataclass_fields__:
        if hasattr(spec, name):
            values[name] = getattr(spec, name)
    limits = getattr(spec, "limits", None)
    if limits is not None:
        values["memory_set"] = getattr(limits, "memory", None) is not None
        values["cpus_set"] = getattr(limits, "cpus", None) is not None
    values.update(fields)
    for name in ("dns", "policies", "caps_kept"):
        if name in values:
            values[name] = tuple(values[name])  # type: ignore[arg-type]
    return ModeRequest(**values)  # type: ignore[arg-type]


# --- answers for the runtime --------------------------------------------------------------------


class MountRule(NamedTuple):
    """After setup, the mount at ``path`` must carry ``flags`` (names as in vocab: rdonly,
    nosuid, nodev, noexec). ``required``: the path must be a mount point at all."""

    path: str
    flags: tuple[str, ...]
    required: bool = True


_MOUNT_AUDIT = (
    MountRule("/", ("nosuid", "nodev")),
    # A closure may lack any of these; where one exists it must be read-only.
    MountRule("/bin", ("rdonly", "nosuid", "nodev"), required=False),
    MountRule("/usr", ("rdonly", "nosuid", "nodev"), required=False),
    MountRule("/etc", ("rdonly", "nosuid", "nodev"), required=False),
    MountRule("/proc", ("nosuid", "nodev", "noexec")),
    MountRule("/run/secrets", ("nosuid", "nodev", "noexec"), required=False),
)


def _mode(mode: str) -> str:
    if mode not in SERVICE_MODES:
        raise ValueError(f"unknown service mode {mode!r}; expected one of {', '.join(SERVICE_MODES)}")
    return mode


def min_landlock_abi(mode: str, allow_degraded_security: bool = False) -> int:
    """The lowest Landlock ABI the run accepts: 3 in production (row "Landlock ABI"), 0 in agent
    mode with --allow-degraded-security (Landlock is then best-effort), else 1."""
    if _mode(mode) == PRODUCTION:
        return PRODUCTION_MIN_LANDLOCK_ABI
    if mode == AGENT and allow_degraded_security:
        return 0
    return 1


def cgroups_required(mode: str) -> bool:
    """Whether a cgroup that cannot be created or limited stops the run (row "Cgroup limits").
    Otherwise the limits are best-effort: the runtime warns and runs without them."""
    return _mode(mode) == PRODUCTION


def proc_hidepid(mode: str) -> int:
    """The hidepid= value to mount /proc with (row "/proc"); 0 means leave the option out."""
    return 2 if _mode(mode) == PRODUCTION else 0


def mount_audit(mode: str) -> tuple[MountRule, ...]:
    """The mounts to verify after setup, before the workload runs (row "Mount audit"); a
    mismatch is fatal. Empty: no audit in this mode."""
    return _MOUNT_AUDIT if _mode(mode) == PRODUCTION else ()


def dns_servers(req: ModeRequest) -> tuple[str, ...]:
    """The resolvers a bridged container gets (row "Bridge DNS"): --dns, or in agent mode the
    public defaults. Strict modes never reach the default: validation refuses them first."""
    if req.dns:
        return tuple(req.dns)
    return AGENT_DEFAULT_DNS if req.service_mode == AGENT else ()


def parse_lockdown(line: str) -> str:
    """The active mode in /sys/kernel/security/lockdown's text, e.g. "none [integrity]
    confidentiality" -> "integrity". ValueError unless exactly one known mode is bracketed."""
    active = [w[1:-1] for w in line.split() if w.startswith("[") and w.endswith("]")]
    if len(active) != 1:
        raise ValueError(f"cannot read the lockdown mode from {line.strip()!r}: "
                         f"expected one mode in brackets")
    if active[0] not in LOCKDOWN_LEVELS:
        raise ValueError(f"unknown lockdown mode {active[0]!r} in {line.strip()!r}")
    return active[0]


def lockdown_satisfied(required: str | None, host_value_line: str | None) -> bool:
    """Whether the host's lockdown (the file's text, None if unreadable) is at least
    ``required`` (none < integrity < confidentiality). Unreadable or malformed: not satisfied."""
    if required is None:
        return True
    if required not in LOCKDOWN_LEVELS:
        raise ValueError(f"unknown lockdown mode {required!r}")
    if host_value_line is None:
        return False
    try:
        current = parse_lockdown(host_value_line)
    except ValueError:
        return False
    return LOCKDOWN_LEVELS.index(current) >= LOCKDOWN_LEVELS.index(required)


def store_path_problem(path: str) -> str | None:
    """Why ``path`` is not a path in a Nix store entry (/nix/store/<hash>-<name>[/...]), or None.
    Pure string check: the runtime repeats it on the resolved path."""
    if not path.startswith("/"):
        return "not an absolute path"
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        return "has '.' or '..' components"
    if parts[:2] != ["nix", "store"] or len(parts) < 3:
        return f"not under {NIX_STORE}"
    if not _STORE_ENTRY_RE.match(parts[2]):
        return f"{parts[2]!r} is not a store entry name (<32-character hash>-<name>)"
    return None


def _cap_name(name: str) -> str | None:
    key = name.strip().upper()
    if not key.startswith("CAP_"):
        key = "CAP_" + key
    return key if key in CAPABILITY_NAMES else None


# --- validation ---------------------------------------------------------------------------------


class Problem(NamedTuple):
    """One refusal: the message, a hint, and the table row it enforces ("" for none)."""

    message: str
    hint: str | None = None
    row: str = ""


def _choice(problems: list[Problem], name: Mapping[str, str], key: str, value: object,
            choices: tuple[str, ...]) -> None:
    if value not in choices:
        problems.append(Problem(f"{name[key]} {value!r}: expected one of {', '.join(choices)}"))


def _row(mode: str, row: str, rule: str) -> str:
    return f'(row "{row}": {mode} {rule})'


def _policy_label(req: ModeRequest, name: Mapping[str, str], kind: str) -> str:
    flag = name[POLICY_KINDS[kind][0]]
    for p in req.policies:
        if p.kind == kind:
            return f"{flag} {p.path!r}"
    return flag


def problems(req: ModeRequest, labels: Mapping[str, str] | None = None) -> list[Problem]:
    """Every refusal of ``req`` that needs no host fact, in table order, then the trust level's."""
    name = {**FLAGS, **(labels or {})}
    out: list[Problem] = []
    _choice(out, name, "service_mode", req.service_mode, SERVICE_MODES)
    _choice(out, name, "trust_level", req.trust_level, TRUST_LEVELS)
    _choice(out, name, "network", req.network, NETWORK_MODES)
    _choice(out, name, "seccomp_mode", req.seccomp_mode, SECCOMP_MODES)
    _choice(out, name, "context_mode", req.context_mode, CONTEXT_MODES)
    if req.require_kernel_lockdown is not None:
        _choice(out, name, "require_kernel_lockdown", req.require_kernel_lockdown,
                REQUIRABLE_LOCKDOWN)
    for p in req.policies:
        if p.kind not in POLICY_KINDS:
            out.append(Problem(f"unknown policy kind {p.kind!r} for {p.path!r}",
                               hint=f"expected one of {', '.join(POLICY_KINDS)}"))
    unknown_caps = [c for c in req.caps_kept if _cap_name(c) is None]
    if unknown_caps:
        out.append(Problem(
            f"{_policy_label(req, name, 'caps')}: unknown capability "
            f"{', '.join(repr(c) for c in unknown_caps)}",
            hint="use names such as NET_BIND_SERVICE or CAP_NET_BIND_SERVICE"))
    if out:
        return out  # the rules below read these fields

    mode = req.service_mode
    strict = mode in STRICT_MODES
    reported: set[str] = set()  # fields a mode row already refused, so trust does not repeat them

    def refuse(key: str, message: str, hint: str | None, row: str = "") -> None:
        reported.add(key)
        out.append(Problem(message, hint, row))

    if strict and req.allow_degraded_security:
        refuse("allow_degraded_security",
               f"{name['allow_degraded_security']} is forbidden in {mode} mode "
               f"{_row(mode, 'Degraded security', 'forbids it')}",
               f"drop {name['allow_degraded_security']}: in {mode} mode a control that cannot "
               f"be applied stops the run", "Degraded security")
    if strict and req.allow_chroot_fallback:
        refuse("allow_chroot_fallback",
               f"{name['allow_chroot_fallback']} is forbidden in {mode} mode "
               f"{_row(mode, 'Chroot fallback', 'forbids it')}",
               f"drop {name['allow_chroot_fallback']}: in {mode} mode a pivot_root failure "
               f"stops the run", "Chroot fallback")

    if strict and req.network == "host":
        refuse("network_host",
               f"{name['network']} 'host' is forbidden in {mode} mode "
               f"{_row(mode, 'Host networking', 'forbids it')}",
               f"use {name['network']} none",
               "Host networking")
    elif strict and req.allow_host_network:
        refuse("network_host",
               f"{name['allow_host_network']} is forbidden in {mode} mode "
               f"{_row(mode, 'Host networking', 'forbids it')}",
               f"drop {name['allow_host_network']}", "Host networking")
    elif req.network == "host" and not req.allow_host_network:
        refuse("network_host",
               f"{name['network']} 'host' needs {name['allow_host_network']} "
               f"{_row(mode, 'Host networking', 'allows it only with that flag')}",
               f"add {name['allow_host_network']} to share the host's network namespace, or "
               f"use {name['network']} none", "Host networking")

    if strict and req.network == "bridge" and not req.dns:
        refuse("dns",
               f"{name['network']} 'bridge' needs {name['dns']} in {mode} mode "
               f"{_row(mode, 'Bridge DNS', 'needs resolvers configured explicitly')}",
               f"name your resolvers, e.g. {name['dns']} 10.0.0.1 ({mode} mode never falls "
               f"back to public resolvers)", "Bridge DNS")

    if mode == PRODUCTION:
        if req.rootfs is None:
            refuse("rootfs",
                   f"{name['rootfs']} is required in production mode "
                   f"{_row(mode, 'Rootfs', 'runs a pre-built Nix closure, not host bind mounts')}",
                   f"build a closure and pass {name['rootfs']} {NIX_STORE}/<hash>-<name>",
                   "Rootfs")
        else:
            why = store_path_problem(req.rootfs)
            if why is not None:
                refuse("rootfs",
                       f"{name['rootfs']} {req.rootfs!r} is refused in production mode: {why} "
                       f"{_row(mode, 'Rootfs', f'needs a path under {NIX_STORE}')}",
                       f"pass the closure's store path, e.g. {name['rootfs']} "
                       f"{NIX_STORE}/<hash>-<name>", "Rootfs")
        if not req.memory_set:
            refuse("memory",
                   f"{name['memory']} is required in production mode "
                   f"{_row(mode, 'Memory limit', 'requires an explicit limit')}",
                   f"give a limit, e.g. {name['memory']} 1G", "Memory limit")
        if not req.cpus_set:
            refuse("cpus",
                   f"{name['cpus']} is required in production mode "
                   f"{_row(mode, 'CPU limit', 'requires an explicit limit')}",
                   f"give a limit, e.g. {name['cpus']} 2", "CPU limit")

    if strict and req.seccomp_mode == "trace":
        refuse("seccomp_trace",
               f"{name['seccomp_mode']} 'trace' is forbidden in {mode} mode "
               f"{_row(mode, 'Seccomp trace mode', 'forbids it')}",
               "trace is a development tool: record the trace in agent mode, generate a profile "
               f"with nucleus seccomp generate, then pass {name['seccomp_profile']}",
               "Seccomp trace mode")

    if mode == PRODUCTION:
        for p in req.policies:
            file_flag, pin_flag = (name[k] for k in POLICY_KINDS[p.kind])
            if not p.pinned:
                refuse(f"pin_{p.kind}",
                       f"{file_flag} {p.path!r} is not pinned: production mode requires "
                       f"{pin_flag} "
                       f"{_row(mode, 'Security policies', 'needs every policy file pinned by sha256')}",
                       f"pin it: {pin_flag} $(sha256sum {p.path} | cut -d' ' -f1)",
                       "Security policies")

    dangerous = sorted({c for c in (_cap_name(k) for k in req.caps_kept)
                        if c in DANGEROUS_CAPABILITIES})
    if mode == PRODUCTION and dangerous:
        refuse("caps",
               f"{_policy_label(req, name, 'caps')} keeps {', '.join(dangerous)}: refused in "
               f"production mode {_row(mode, 'Capabilities', 'refuses dangerous capabilities')}",
               "keep only what the service needs (e.g. CAP_NET_BIND_SERVICE); production never "
               f"keeps any of: {', '.join(sorted(DANGEROUS_CAPABILITIES))}", "Capabilities")

    if req.verify_context_integrity:
        if req.context is None:
            out.append(Problem(
                f"{name['verify_context_integrity']} needs {name['context']}",
                f"give the directory to copy in: {name['context']} DIR"))
        elif req.context_mode != "copy":
            out.append(Problem(
                f"{name['verify_context_integrity']} needs {name['context_mode']} copy, not "
                f"{req.context_mode!r}: a bind-mounted context is the live host directory, "
                f"there is no copy to verify",
                f"drop {name['context_mode']} {req.context_mode} or "
                f"{name['verify_context_integrity']}"))

    if req.trust_level == UNTRUSTED:
        untrusted = f"with {name['trust_level']} untrusted"
        vouch = f"pass {name['trust_level']} trusted if you vouch for the workload"
        if req.allow_degraded_security and "allow_degraded_security" not in reported:
            out.append(Problem(
                f"{name['allow_degraded_security']} is forbidden {untrusted}: an untrusted "
                f"workload never runs with a security control missing",
                f"drop {name['allow_degraded_security']}, or {vouch}"))
        if req.allow_chroot_fallback and "allow_chroot_fallback" not in reported:
            out.append(Problem(
                f"{name['allow_chroot_fallback']} is forbidden {untrusted}: a chroot can be "
                f"escaped where pivot_root cannot",
                f"drop {name['allow_chroot_fallback']}, or {vouch}"))
        if (req.network == "host" or req.allow_host_network) and "network_host" not in reported:
            flag = f"{name['network']} 'host'" if req.network == "host" else name["allow_host_network"]
            out.append(Problem(
                f"{flag} is forbidden {untrusted}: the workload would share the host's network "
                f"namespace", f"use {name['network']} none, or {vouch}"))
        if req.seccomp_mode == "trace" and "seccomp_trace" not in reported:
            out.append(Problem(
                f"{name['seccomp_mode']} 'trace' is forbidden {untrusted}: trace mode runs the "
                f"workload with no syscall filter",
                f"trace only programs you trust: {vouch}"))
        if dangerous and "caps" not in reported:
            out.append(Problem(
                f"{_policy_label(req, name, 'caps')} keeps {', '.join(dangerous)}: refused "
                f"{untrusted}", f"keep none of {', '.join(dangerous)}, or {vouch}"))
    return out


def check_mode(req: ModeRequest, labels: Mapping[str, str] | None = None) -> list[str]:
    """The messages of every refusal of ``req`` that needs no host fact; empty when it is fine."""
    return [p.message for p in problems(req, labels)]


def _raise(found: list[Problem], error: type[InvalidInput] | type[HostUnsupported]) -> None:
    if not found:
        return
    message = found[0].message
    if len(found) > 1:
        message += "".join(f"\nalso: {p.message}" for p in found[1:])
    raise error(message, hint=found[0].hint)


def validate_mode(req: ModeRequest, labels: Mapping[str, str] | None = None) -> ModeRequest:
    """Raise InvalidInput (exit 2) naming the first refusal (and listing the others); return
    ``req`` when it is fine. Runs before anything else, with no host fact."""
    _raise(problems(req, labels), InvalidInput)
    return req


# --- host facts ---------------------------------------------------------------------------------


class HostFacts(NamedTuple):
    """The facts the host checks need. None means "not probed": that check is skipped.

    ``lockdown``: the text of /sys/kernel/security/lockdown; when it was probed but could not be
    read, None with ``lockdown_error`` saying why. ``seccomp_filter``: the kernel accepts seccomp
    filters. ``rootfs_realpath``: --rootfs with every symlink resolved.
    """

    landlock_abi: int | None = None
    cgroup_backend: str | None = None  # "v2", "v1" or "none"
    cgroup_reason: str = ""
    lockdown: str | None = None
    lockdown_error: str = ""
    seccomp_filter: bool | None = None
    max_user_namespaces: int | None = None
    euid: int | None = None
    rootfs_realpath: str | None = None

    @property
    def lockdown_probed(self) -> bool:
        return self.lockdown is not None or bool(self.lockdown_error)


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

    if host.cgroup_backend == "none" and cgroups_required(mode):
        out.append(Problem(
            f"no usable cgroup hierarchy ({host.cgroup_reason or 'none found'}): refused in "
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
    if host.cgroup_backend is not None:
        usable = host.cgroup_backend in ("v1", "v2")
        detail = f"cgroup {host.cgroup_backend}"
        if not usable and host.cgroup_reason:
            detail += f" ({host.cgroup_reason})"
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


def rules_of(mode: str) -> list[tuple[Row, str]]:
    """The rows that constrain ``mode``, with that mode's column (for printing)."""
    _mode(mode)
    return [(row, row.column(mode)) for row in TABLE if row.enforced != "none"]
