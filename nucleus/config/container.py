"""The container spec: what a user asked for, validated before anything happens.

Validation is pure: it never probes the host. Every error names the flag (or file and dotted
field), the bad value, and a hint where the fix is known.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import field
from typing import Any

from nucleus.config import changes as changes_rules
from nucleus.config import context as context_rules
from nucleus.config import network as network_rules
from nucleus.config import secrets as secret_rules
from nucleus.config import users
from nucleus.config import volumes as volume_rules
from nucleus.config.egress import EgressPolicy
from nucleus.config.modes import SERVICE_MODES, TRUST_LEVELS
from nucleus.config.network import Bridge
from nucleus.config.resources import Limits, parse_size
from nucleus.config.secrets import Secret
from nucleus.config.service import ServiceOptions
from nucleus.config.tmpfs import Tmpfs
from nucleus.config.volumes import Volume, under
from nucleus.errors import InvalidInput
from nucleus.frozen import frozen

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
HOSTNAME_LABEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Variables that make the dynamic loader run or reveal code chosen by the caller.
REFUSED_ENV = frozenset({
    "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "LD_DEBUG", "LD_DEBUG_OUTPUT", "LD_PROFILE",
    "LD_PROFILE_OUTPUT", "LD_DYNAMIC_WEAK", "LD_SHOW_AUXV", "LD_BIND_NOT", "LD_ORIGIN_PATH",
    "GCONV_PATH", "GLIBC_TUNABLES", "HOSTALIASES", "LOCALDOMAIN", "RES_OPTIONS", "NLSPATH",
    "MALLOC_CHECK_", "MALLOC_TRACE",
})

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_HOME = "/home/agent"
CONTEXT_MOUNT = "/context"
CONTEXT_MODES = ("copy", "bind")
DEFAULT_ROOTFS_SIZE = 1 << 30
# A detached container's log keeps at most 20 MiB: two files of 10 MiB (Docker's json-file
# driver calls the limits max-size and max-file).
DEFAULT_LOG_MAX_SIZE = 10 << 20
DEFAULT_LOG_MAX_FILES = 2
MIN_LOG_SIZE = 4096
MAX_LOG_FILES = 100


@frozen
class ContainerConfig:
    argv: tuple[str, ...]
    name: str | None = None
    hostname: str | None = None
    context: str | None = None
    context_mode: str = "copy"
    env: tuple[tuple[str, str], ...] = ()
    workdir: str | None = None
    rootless: bool = False
    time_namespace: bool = False
    allow_degraded_security: bool = False
    allow_chroot_fallback: bool = False
    service_mode: str = "agent"
    home: str = DEFAULT_HOME
    rootfs_size: int = DEFAULT_ROOTFS_SIZE
    term: str = "xterm"
    user: str | None = None  # -u: a user (and group) of the container's /etc/passwd (nucleus.config.users)
    tty: bool = False  # -t: the workload's stdin, stdout and stderr are a pseudo-terminal of its own
    interactive: bool = False  # -i: the workload reads the caller's stdin (else /dev/null)
    limits: Limits = field(default_factory=Limits)
    cgroup_namespace: bool = True
    detach: bool = False
    log_max_size: int = DEFAULT_LOG_MAX_SIZE  # a detached container's log: a new file past this size
    log_max_files: int = DEFAULT_LOG_MAX_FILES  # ... and at most this many files kept
    trust_level: str = "trusted"
    require_kernel_lockdown: str | None = None
    verify_context_integrity: bool = False
    context_size: int | None = None  # --context-size (None: nucleus.config.context's default)
    context_include: tuple[str, ...] = ()  # --context-include patterns
    show_excluded: bool = False
    seccomp_mode: str = "enforce"
    seccomp_log: str | None = None
    seccomp_log_denied: bool = False
    # --seccomp-default-action (None: the service mode's, nucleus.config.modes) and --violations FILE
    seccomp_default_action: str | None = None
    violations: str | None = None
    audit_log: str | None = None  # --audit-log FILE, or "-" for stderr (nucleus.config.audit)
    otlp_endpoint: str | None = None  # --otlp-endpoint URL (nucleus.config.telemetry)
    rootfs: str | None = None
    verify_rootfs_attestation: bool = False  # the closure checked against its manifest first
    id_range: int | None = None  # the first host id of a privileged container's range (--id-range)
    allow_exec: tuple[str, ...] = ()  # --allow-exec: more trees to execute in (nucleus.config.workspace)
    volumes: tuple[Volume, ...] = ()  # -v/--volume (nucleus.config.volumes)
    secrets: tuple[Secret, ...] = ()  # --secret (nucleus.config.secrets)
    tmpfs: tuple[Tmpfs, ...] = ()  # --tmpfs (nucleus.config.tmpfs)
    changes: str | None = None  # --changes OUT (nucleus.config.changes)
    changes_max_size: int | None = None  # --changes-max-size (None: the default)
    # --network, --allow-host-network, --dns, and the bridge's flags (nucleus.config.network)
    network: str = network_rules.NONE
    allow_host_network: bool = False
    dns: tuple[str, ...] = ()
    bridge: Bridge = field(default_factory=Bridge)
    # --egress-allow/-tcp-port/-udp-port/-domain (nucleus.config.egress); None: no flag given
    egress: EgressPolicy | None = None
    extra_hosts: tuple[tuple[str, str], ...] = ()  # --add-host: (name, address) lines of /etc/hosts
    labels: tuple[tuple[str, str], ...] = ()  # --label: kept in the record (nucleus compose's)
    loaded_policies: Any = None  # nucleus.policyfiles.Policies, loaded from the policy files
    # --health-*, --restart, --readiness-*, --sd-notify (nucleus.config.service); None: none given
    service: ServiceOptions | None = None
    # An OCI config's linux.sysctl: (dotted key, value), keys of the container's own namespaces
    # only (nucleus.config.sysctl), written inside before the workload runs.
    sysctls: tuple[tuple[str, str], ...] = ()
    groups: tuple[int, ...] = ()  # process.user.additionalGids: more supplementary groups (container gids)
    # process.rlimits: (RLIMIT_*, soft, hard), set as given in place of nucleus's own for that
    # resource (-1: unlimited)
    rlimits: tuple[tuple[str, int, int], ...] = ()
    root_propagation: str = ""  # linux.rootfsPropagation (nucleus.effects.fs.PROPAGATION, "r" for the tree)
    # An OCI config's namespaces named by path: (kind as /proc/<pid>/ns names it, path, the field
    # that named it), joined in place of new ones; the host's own only with join_host_namespaces.
    namespace_paths: tuple[tuple[str, str, str], ...] = ()
    join_host_namespaces: bool = False

    @property
    def effective_workdir(self) -> str:
        if self.workdir:
            return self.workdir
        return CONTEXT_MOUNT if self.context else self.home

    def environment(self) -> dict[str, str]:
        """The workload's environment: PATH, HOME, TERM, then the user's -e values."""
        env = {"PATH": DEFAULT_PATH, "HOME": self.home, "TERM": self.term}
        env.update(dict(self.env))
        return env


ENV_NAME_HINT = "names start with a letter or underscore and hold letters, digits and underscores"
LOADER_HINT = "bake libraries into the context or rootfs instead"


def env_key_refused(key: str) -> bool:
    """Whether a variable name is one a run refuses: not a name, or one of the loader's (the
    rules -e, --env-file and a record's environment share)."""
    return not ENV_KEY_RE.fullmatch(key) or key in REFUSED_ENV or key.startswith("LD_")


def parse_env(values: tuple[str, ...] | list[str], flag: str = "--env") -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for raw in values:
        key, sep, value = raw.partition("=")
        if not sep:
            raise InvalidInput(
                f"{flag} {raw!r}: expected KEY=VALUE", hint=f"write {flag} {raw}=value"
            )
        if not ENV_KEY_RE.fullmatch(key):
            raise InvalidInput(f"{flag} {raw!r}: {key!r} is not a valid variable name", hint=ENV_NAME_HINT)
        if env_key_refused(key):
            raise InvalidInput(
                f"{flag} {raw!r}: {key} is refused: it changes how the dynamic loader loads code",
                hint=LOADER_HINT,
            )
        if "\0" in value:
            raise InvalidInput(f"{flag} {raw!r}: the value holds a NUL byte")
        out.append((key, value))
    return tuple(out)


def parse_id_range(text: str | None, flag: str = "--id-range") -> int | None:
    """The first host id of a container's range, as given."""
    if text is None:
        return None
    if not text.strip().isdigit():
        raise InvalidInput(f"{flag} {text!r}: not a host id", hint=f"give the first id, e.g. {flag} 300000")
    return int(text.strip())


def parse_log_limits(max_size: str | None, max_files: str | None, detach: bool) -> tuple[int, int]:
    """--log-max-size and --log-max-files (only with --detach: a foreground run's output goes
    to its terminal); the defaults where not given."""
    for flag, value in (("--log-max-size", max_size), ("--log-max-files", max_files)):
        if value is not None and not detach:
            raise InvalidInput(f"{flag} {value!r}: only with --detach",
                               hint="a foreground run's output goes to the terminal, not to a log")
    size = DEFAULT_LOG_MAX_SIZE if max_size is None else parse_size(max_size, "--log-max-size")
    if size < MIN_LOG_SIZE:
        raise InvalidInput(f"--log-max-size {max_size!r}: must be at least 4K")
    files = DEFAULT_LOG_MAX_FILES
    if max_files is not None:
        if not max_files.strip().isdigit():
            raise InvalidInput(f"--log-max-files {max_files!r}: not a whole number")
        files = int(max_files.strip())
        if not 1 <= files <= MAX_LOG_FILES:
            raise InvalidInput(f"--log-max-files {max_files!r}: must be between 1 and {MAX_LOG_FILES}",
                               hint="1 keeps one file, emptied when it is full")
    return size, files


def _validate_violations(spec: ContainerConfig) -> None:
    """--seccomp-default-action and --violations (nucleus.config.violations)."""
    from nucleus.config.seccomp_default import DEFAULT_ACTIONS

    action = spec.seccomp_default_action
    if action is not None and action not in DEFAULT_ACTIONS:
        raise InvalidInput(f"--seccomp-default-action {action!r}: expected one of {', '.join(DEFAULT_ACTIONS)}")
    if action is not None and spec.seccomp_mode == "trace":
        raise InvalidInput(f"--seccomp-default-action {action!r}: not with --seccomp-mode trace, which "
                           "allows every call", hint="drop one of the two")
    if spec.violations is None:
        return
    if not spec.violations or "\0" in spec.violations:
        raise InvalidInput(f"--violations {spec.violations!r}: not a usable path")
    if spec.seccomp_mode == "trace":
        raise InvalidInput(f"--violations {spec.violations!r}: not with --seccomp-mode trace, which "
                           "refuses no call", hint="record the trace first, then run with the profile "
                           "it makes and --violations")


# The top-level directories of the container's own layout: a home is never one or below one.
LAYOUT_DIRS = frozenset({"bin", "sbin", "usr", "lib", "lib32", "lib64", "nix", "etc", "dev", "proc",
                         "sys", "tmp", "run", "context"})


def home_refusal(home: str) -> str | None:
    """Why `home` cannot be the container's home (HOME, its writable directory), or None."""
    if not home.startswith("/") or home.startswith("//") or posixpath.normpath(home) != home:
        return "must be an absolute path without '..' or '//'"
    if home == "/" or home.split("/")[1] in LAYOUT_DIRS:
        return "is / or a system directory of the container's own"
    return None


def validate(spec: ContainerConfig) -> ContainerConfig:
    """Check every field; raise InvalidInput naming the flag and value. Returns the spec."""
    if not spec.argv:
        raise InvalidInput(
            "no command given", hint="put the command after --, e.g. nucleus run -- /bin/sh -c 'id'"
        )
    if any("\0" in a for a in spec.argv):
        raise InvalidInput("the command holds a NUL byte")
    if not spec.argv[0]:
        raise InvalidInput("the command '' is empty: there is no program to run",
                           hint="name the program after --, e.g. nucleus run -- /bin/sh -c 'id'")
    if spec.name is not None and not NAME_RE.match(spec.name):
        raise InvalidInput(
            f"--name {spec.name!r}: not a valid container name",
            hint="use 1-64 characters: letters, digits, '_', '.', '-', starting with a letter or digit",
        )
    if spec.hostname is not None:
        labels = spec.hostname.split(".")
        if len(spec.hostname) > 64 or not all(HOSTNAME_LABEL_RE.match(label) for label in labels):
            raise InvalidInput(
                f"--hostname {spec.hostname!r}: not a valid host name",
                hint="use letters, digits and '-' in dot-separated labels, at most 64 characters",
            )
    if spec.context_mode not in CONTEXT_MODES:
        raise InvalidInput(
            f"--context-mode {spec.context_mode!r}: expected one of {', '.join(CONTEXT_MODES)}"
        )
    if spec.context is not None and (spec.context == "" or "\0" in spec.context):
        raise InvalidInput(f"--context {spec.context!r}: not a usable path")
    context_rules.validate(spec.context, spec.context_mode, spec.context_size, spec.context_include,
                           spec.show_excluded)
    if spec.context_mode == "bind" and spec.context is None:
        raise InvalidInput("--context-mode bind needs --context DIR: there is no context to bind",
                           hint="add --context DIR, or drop --context-mode")
    if spec.workdir is not None and not spec.workdir.startswith("/"):
        raise InvalidInput(
            f"--workdir {spec.workdir!r}: must be an absolute path inside the container",
            hint=f"for example --workdir {CONTEXT_MOUNT}",
        )
    if spec.service_mode not in SERVICE_MODES:
        raise InvalidInput(
            f"--service-mode {spec.service_mode!r}: expected one of {', '.join(SERVICE_MODES)}"
        )
    if spec.trust_level not in TRUST_LEVELS:
        raise InvalidInput(f"--trust-level {spec.trust_level!r}: expected one of {', '.join(TRUST_LEVELS)}")
    if spec.seccomp_mode not in ("enforce", "trace"):
        raise InvalidInput(f"--seccomp-mode {spec.seccomp_mode!r}: expected enforce or trace")
    if spec.seccomp_mode == "trace" and not spec.seccomp_log:
        raise InvalidInput("--seccomp-mode trace needs --seccomp-log FILE",
                           hint="nucleus run --seccomp-mode trace --seccomp-log trace.ndjson -- CMD")
    if spec.seccomp_log and spec.seccomp_mode != "trace":
        raise InvalidInput(f"--seccomp-log {spec.seccomp_log!r}: only with --seccomp-mode trace")
    _validate_violations(spec)
    home = home_refusal(spec.home)
    if home is not None:
        raise InvalidInput(f"HOME {spec.home!r}: {home}")
    for key, _ in spec.env:
        if env_key_refused(key):
            raise InvalidInput(f"--env {key!r}: refused")
    if spec.user is not None:
        users.parse(spec.user)
    volume_rules.validate(spec.volumes + spec.tmpfs, spec.home, CONTEXT_MOUNT if spec.context else None,
                          spec.rootfs is not None)
    for fs in spec.tmpfs:
        if spec.secrets and under(fs.target, secret_rules.SECRETS_DIR):
            raise InvalidInput(f"--tmpfs {fs.given!r}: {fs.target} is where --secret puts its files",
                               hint=f"choose a path outside {secret_rules.SECRETS_DIR}")
    secret_place = secret_rules.place_refusal(spec.secrets, spec.volumes, CONTEXT_MOUNT if spec.context else None)
    if secret_place is not None:
        raise secret_place
    changes_rules.validate(spec.changes, spec.context, spec.context_mode, spec.changes_max_size)
    network_rules.validate(spec.network, spec.bridge, spec.dns)
    if spec.id_range is not None and spec.rootless:
        raise InvalidInput(f"--id-range {spec.id_range}: a --rootless container maps its root to the caller",
                           hint="drop one of --id-range and --rootless")
    return spec
