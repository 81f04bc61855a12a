"""Service modes and trust levels: the table of what each mode does, the request a run makes, what
each mode asks of the runtime, and the readings the checks share (the kernel's lockdown text, Nix
store paths).

Pure: the request arrives as a :class:`ModeRequest` (what the run asked for); nothing here probes
the host. Which options a run may combine is checked by ``nucleus.config.mode_validation``; what
the host must offer, by ``nucleus.config.mode_host``.

Service modes (``--service-mode``):

- ``agent`` (default): ephemeral sandboxes. Controls that cannot be applied may be skipped with
  ``--allow-degraded-security``; ``--allow-chroot-fallback`` and ``--allow-host-network`` are
  honoured; cgroup limits are best-effort. /context and home are executable (nosuid, nodev;
  Landlock grants execute there), /tmp is not unless ``--allow-exec /tmp``.
- ``strict-agent``: agent workloads with nothing weakened: degraded security, chroot fallback, host
  networking and seccomp trace mode are refused, bridge DNS must be explicit, a run as root
  never maps container root to host root, and cgroups are required (a cgroup or a limit that
  cannot be applied fails the run; a rootless run needs a cgroup delegated to its user), and
  every writable place (/context, home, /tmp) is noexec unless ``--allow-exec PATH`` names it.
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
  in a caps policy, ``--rootless`` run by root (container root would be host root), and in
  strict-agent and production ``--allow-exec`` (their writable places stay noexec). In agent
  mode an untrusted workload still runs what it builds in /context and home, and
  ``--allow-exec`` is honoured: it adds a place to run from, not a way out of the sandbox.
  nucleus does not switch runtimes on the trust level (gVisor is not integrated): untrusted runs
  natively with every control fail-closed.

Errors raised for a table row name the row of the reference's "Production Mode vs Agent Mode"
table, e.g.::

    error: --allow-degraded-security is forbidden in production mode (row "Degraded security": production forbids it)
    hint: drop --allow-degraded-security: in production mode a control that cannot be applied stops the run
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, NamedTuple

from nucleus.frozen import frozen

if TYPE_CHECKING:
    from nucleus.config.egress import EgressPolicy

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

NETWORK_MODES = ("none", "host", "bridge", "user")  # nucleus.config.network
SECCOMP_MODES = ("enforce", "trace")
CONTEXT_MODES = ("copy", "bind")
LOCKDOWN_LEVELS = ("none", "integrity", "confidentiality")  # weakest first
REQUIRABLE_LOCKDOWN = ("integrity", "confidentiality")
LOCKDOWN_PATH = "/sys/kernel/security/lockdown"

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
    "seccomp_default_action": "--seccomp-default-action",
    "rootfs": "--rootfs",
    "verify_rootfs_attestation": "--verify-rootfs-attestation",
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
    "allow_exec": "--allow-exec",
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
    Row("Cgroup limits", "best-effort (a limit the kernel refuses is dropped with a warning)",
        "required (fatal on failure)", "required (fatal on failure)", "host"),
    Row("Bridge DNS", "--dns, else none (resolv.conf empty: no resolver is chosen for you)",
        "must be configured explicitly (--dns)", "must be configured explicitly (--dns)", "validation"),
    Row("Rootfs", "host bind mounts (/bin, /usr, /lib, /nix)", "host bind mounts",
        "pre-built Nix closure (--rootfs /nix/store/...)", "validation"),
    Row("Egress policy", "optional (--egress-*: deny by default once one is given)", "optional",
        "deny-all default on the bridge (fatal on apply failure)", "runtime"),
    Row("Memory limit", "optional", "optional", "required", "validation"),
    Row("CPU limit", "optional", "optional", "required", "validation", "reference"),
    Row("PID 1 init", "compiled mini-init (reaps zombies, forwards signals); the interpreter's "
        "init, with a warning, when the binary is absent",
        "compiled mini-init; the interpreter's init, with a warning, when the binary is absent",
        "compiled mini-init required", "host"),
    Row("Secrets", "--secret: in-memory tmpfs at /run/secrets (0500, files 0400), source buffers "
        "zeroed", "the same", "the same; -e and --env-file names that look like secrets refused",
        "runtime"),
    Row("/proc", "mounted normally (read-only)", "mounted normally (read-only)",
        "hidepid=2 (hides other users' processes)", "runtime"),
    Row("Mount audit", "skipped", "skipped", "post-setup flag verification (fatal)", "runtime"),
    Row("Seccomp trace mode", "allowed", "forbidden", "forbidden", "validation"),
    Row("Seccomp default action", "errno (EPERM); kill or log with --seccomp-default-action",
        "errno; kill allowed, log forbidden", "errno; kill allowed, log forbidden", "validation",
        "reference"),
    Row("Writable and executable memory", "allowed (JIT compilers: node, java)",
        "refused (mprotect W+X fails with EPERM)", "refused (mprotect W+X fails with EPERM)",
        "always", "reference"),
    Row("Landlock ABI", "best-effort (required unless --allow-degraded-security)", "ABI 1 minimum",
        "ABI 3 minimum", "host"),
    Row("Health checks", "optional (--health-cmd, joined into the container with its restrictions; "
        "unhealthy: stop, or restart with --restart)", "optional", "optional", "none"),
    Row("sd_notify", "optional (--sd-notify: READY=1 from the supervisor once ready, or from the "
        "workload with --readiness-sd-notify)", "optional", "optional", "none"),
    Row("Security policies", "optional", "optional", "optional, each pinned by sha256",
        "validation"),
    Row("Capabilities", "any, with a caps policy", "any, with a caps policy",
        "the 17 dangerous capabilities refused", "validation", "reference"),
    Row("User namespace", "--rootless as root maps container root to root",
        "container root always unprivileged", "container root always unprivileged", "host",
        "reference"),
    Row("Rootfs attestation", "optional", "optional", "required (--verify-rootfs-attestation)",
        "validation", "reference"),
    Row("Executable workspace", "/context and home (nosuid, nodev); /tmp noexec unless "
        "--allow-exec", "every writable place noexec unless --allow-exec",
        "every writable place noexec unless --allow-exec (audited)", "runtime", "reference"),
)
ROWS = {row.name: row for row in TABLE}


class Pending(NamedTuple):
    """A row nucleus cannot enforce yet, and why."""

    row: str
    rule: str
    reason: str


NOT_ENFORCED_YET: tuple[Pending, ...] = ()


# --- the request --------------------------------------------------------------------------------


class PolicyFile(NamedTuple):
    """A policy file given to the run: kind ("seccomp", "caps" or "landlock"), its path, and
    whether its sha256 was pinned with the matching ``--*-sha256`` option."""

    kind: str
    path: str
    pinned: bool = False


@frozen
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
    seccomp_default_action: str | None = None  # None: the mode's (seccomp_default_action())
    rootfs: str | None = None
    verify_rootfs_attestation: bool = False
    policies: tuple[PolicyFile, ...] = ()
    caps_kept: tuple[str, ...] = ()
    verify_context_integrity: bool = False
    context: str | None = None
    context_mode: str = "copy"
    require_kernel_lockdown: str | None = None
    rootless: bool = False
    allow_exec: tuple[str, ...] = ()  # --allow-exec paths
    egress: EgressPolicy | None = None  # the --egress-* flags (nucleus.config.egress), if any


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
    for name in ("dns", "policies", "caps_kept", "allow_exec"):
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


def seccomp_default_action(mode: str, requested: str | None = None) -> str:
    """What the default seccomp profile does with a call it does not allow (row "Seccomp default
    action"): ``requested`` (validation refuses "log" in the strict modes), else errno in every
    mode. errno rather than kill everywhere: a refused probe (capget, pkey_alloc, a netlink
    socket) fails the way a program expects, where a kill ends a service for a call it could
    do without; the violation stream records each refusal either way."""
    _mode(mode)
    return requested or "errno"


def seccomp_jit(mode: str) -> bool:
    """Whether the default seccomp profile lets memory be made writable and executable at once
    (row "Writable and executable memory"): in agent mode, where node and java run (their JIT
    compilers flip code pages to W+X with mprotect and abort when refused); never in the strict
    modes, where node runs with --jitless."""
    return _mode(mode) == AGENT


def cgroups_required(mode: str) -> bool:
    """Whether a cgroup that cannot be created or limited, or a limit the kernel refuses,
    stops the run (row "Cgroup limits"): in strict-agent and production. Otherwise the limits
    are best-effort: without a cgroup the runtime warns and runs without limits, and a limit
    the kernel refuses is dropped alone, with a warning naming it."""
    return _mode(mode) in STRICT_MODES


def compiled_init_required(mode: str) -> bool:
    """Whether a run refuses to start without the compiled init (row "PID 1 init"): in
    production. Otherwise PID 1 stays the interpreter that set the container up (the same
    duties, ~10 MiB more), with a warning."""
    return _mode(mode) == PRODUCTION


def proc_hidepid(mode: str) -> int:
    """The hidepid= value to mount /proc with (row "/proc"); 0 means leave the option out."""
    return 2 if _mode(mode) == PRODUCTION else 0


def mount_audit(mode: str, noexec: tuple[str, ...] = ()) -> tuple[MountRule, ...]:
    """The mounts to verify after setup, before the workload runs (row "Mount audit"); a
    mismatch is fatal. Empty: no audit in this mode. `noexec`: the writable places mounted
    noexec (row "Executable workspace": those --allow-exec does not name)."""
    if _mode(mode) != PRODUCTION:
        return ()
    return _MOUNT_AUDIT + tuple(MountRule(p, ("nosuid", "nodev", "noexec")) for p in noexec)


def workspace_executable(mode: str) -> bool:
    """Whether /context and home are executable without --allow-exec (row "Executable
    workspace"): in agent mode, where the workload builds and runs code; the strict modes keep
    every writable place noexec unless --allow-exec names it."""
    return _mode(mode) == AGENT


def dns_servers(req: ModeRequest) -> tuple[str, ...]:
    """The resolvers a container's resolv.conf names (row "Bridge DNS"): --dns, and nothing
    else in any mode: no resolver is ever chosen for the user (strict modes refuse a bridge
    without --dns before it runs)."""
    return tuple(req.dns)


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


def rules_of(mode: str) -> list[tuple[Row, str]]:
    """The rows that constrain ``mode``, with that mode's column (for printing)."""
    _mode(mode)
    return [(row, row.column(mode)) for row in TABLE if row.enforced != "none"]
