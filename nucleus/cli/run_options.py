"""The options of `nucleus run`, as a table: each flag's names, value, default and help once, and
the one function that turns the parsed values into a validated ContainerConfig.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from nucleus.frozen import frozen

F = TypeVar("F", bound=Callable[..., Any])


@frozen
class Flag:
    names: tuple[str, ...]
    help: str
    metavar: str | None = None
    default: str | None = None
    choices: tuple[str, ...] = ()
    switch: bool = False  # a flag without a value
    multiple: bool = False

    @property
    def dest(self) -> str:
        return self.names[-1].lstrip("-").replace("-", "_")


RUN_FLAGS: tuple[Flag, ...] = (
    Flag(("--name",), "Container name (letters, digits, '_', '.', '-')."),
    Flag(("--hostname",), "Host name inside the container [default: the name, or nucleus]."),
    Flag(("--context",), "Directory to populate /context from.", metavar="DIR"),
    Flag(("--context-mode",), "copy: a private writable copy without secrets and VCS junk; bind: "
         "the host tree, read-only.", default="copy", choices=("copy", "bind")),
    Flag(("-e", "--env"), "Set an environment variable.", metavar="KEY=VALUE", multiple=True),
    Flag(("--workdir",), "Working directory inside [default: /context with --context, else home].",
         metavar="PATH"),
    Flag(("--env-file",), "Read variables from a file of KEY=VALUE lines (repeatable; -e wins).",
         metavar="FILE", multiple=True),
    Flag(("-u", "--user"), "Run as this user of the container's /etc/passwd: UID[:GID] or NAME[:GROUP].",
         metavar="USER"),
    Flag(("-t", "--tty"), "Give the workload a terminal of its own (a pseudo-terminal inside).", switch=True),
    Flag(("-i", "--interactive"), "Keep stdin open to the workload (else it reads /dev/null).", switch=True),
    Flag(("--rootless",), "Map container root to the caller instead of an unprivileged range.", switch=True),
    Flag(("--id-range",), "First host id of the container's 65536 ids [default: the first range "
         "from 100000 that /etc/subuid and /etc/subgid leave free].", metavar="START"),
    Flag(("--time-namespace",), "Give the container its own time namespace.", switch=True),
    Flag(("--allow-degraded-security",), "Run even if seccomp or Landlock cannot be applied (a "
         "warning instead of an error).", switch=True),
    Flag(("--allow-chroot-fallback",), "Fall back to chroot if pivot_root fails.", switch=True),
    Flag(("--runtime",), "native: nucleus's own namespaces, seccomp and Landlock; gvisor: gVisor's runsc "
         "is the container's kernel (ptrace platform; see README: gVisor).", default="native",
         choices=("native", "gvisor")),
    Flag(("--gvisor-platform",), "How runsc takes the workload's system calls, with --runtime gvisor: "
         "ptrace, or kvm (checked first: refused where it does not start a sandbox) [default: ptrace].",
         choices=("ptrace", "kvm")),
    Flag(("--trace",), "Record the run's state transitions as an ITF trace.", metavar="FILE"),
    Flag(("-d", "--detach"), "Print the id once the workload has started and leave it running; "
         "output goes to its log.", switch=True),
    Flag(("--memory",), "Memory limit, e.g. 512M (the OOM killer acts above it).", metavar="SIZE"),
    Flag(("--swap",), "Swap allowed on top of --memory [default: none].", metavar="SIZE"),
    Flag(("--cpus",), "CPU time, in CPUs (e.g. 0.5).", metavar="N"),
    Flag(("--cpu-weight",), "Relative CPU share under contention [default: 100].", metavar="1-10000"),
    Flag(("--pids",), "Maximum number of processes.", metavar="N", default="512"),
    Flag(("--io-limit",), "Block I/O limits for one device (repeatable).",
         metavar="'MAJ:MIN riops=N wbps=N ...'", multiple=True),
    Flag(("--memlock",), "Locked-memory limit.", metavar="SIZE", default="64K"),
    Flag(("--cgroup-parent",), "Parent cgroup, under each hierarchy's root.", metavar="PATH",
         default="nucleus"),
    Flag(("--disable-cgroup-namespace",), "Show the host's cgroup paths inside.", switch=True),
    Flag(("--service-mode",), "Which invariants are enforced (see README: Service modes).",
         default="agent", choices=("agent", "strict-agent", "production")),
    Flag(("--trust-level",), "untrusted refuses every option that weakens isolation.",
         default="trusted", choices=("trusted", "untrusted")),
    Flag(("--require-kernel-lockdown",), "Refuse to start unless the kernel's lockdown is at least this.",
         choices=("integrity", "confidentiality")),
    Flag(("--verify-context-integrity",), "Hash the context before the copy and check /context "
         "against it.", switch=True),
    Flag(("--seccomp-mode",), "trace: allow every syscall and record it (with --seccomp-log) for "
         "seccomp generate.", default="enforce", choices=("enforce", "trace")),
    Flag(("--seccomp-log",), "Where trace mode writes its NDJSON record.", metavar="FILE"),
    Flag(("--seccomp-log-denied",), "Ask the kernel to log denied syscalls.", switch=True),
    Flag(("--seccomp-default-action",), "What the default profile does with a call it does not "
         "allow: errno (EPERM), kill (SIGSYS) or log (allow and record) [default: errno].",
         choices=("errno", "kill", "log")),
    Flag(("--violations",), "Also append every refused operation (one JSON line each) to FILE.",
         metavar="FILE"),
    Flag(("--audit-log",), "Append one JSON line per lifecycle and security step to FILE ('-': "
         "stderr, with the priority journald reads).", metavar="FILE"),
    Flag(("--otlp-endpoint",), "Export the run's spans over OTLP/HTTP to this collector "
         "[default: $OTEL_EXPORTER_OTLP_ENDPOINT].", metavar="URL"),
    Flag(("--rootfs",), "Take /bin /usr /lib /etc /nix from this closure, read-only.", metavar="DIR"),
    Flag(("--verify-rootfs-attestation",), "Check the --rootfs closure against its "
         ".nucleus-rootfs-sha256 manifest (nucleus attest) before it is mounted.", switch=True),
    Flag(("--seccomp-profile",), "OCI seccomp profile (JSON) instead of the default.", metavar="FILE"),
    Flag(("--seccomp-profile-sha256",), "Refuse to start unless the profile has this sha256.", metavar="HEX"),
    Flag(("--caps-policy",), "Capability policy (TOML) instead of dropping all.", metavar="FILE"),
    Flag(("--caps-policy-sha256",), "Refuse to start unless the caps policy has this sha256.", metavar="HEX"),
    Flag(("--landlock-policy",), "Landlock rules (TOML) instead of the defaults.", metavar="FILE"),
    Flag(("--landlock-policy-sha256",), "Refuse to start unless the Landlock policy has this sha256.",
         metavar="HEX"),
    Flag(("--debug",), "Show tracebacks for errors.", switch=True),
    Flag(("--context-size",), "Largest copy of the context (the size of its tmpfs) [default: 1G].",
         metavar="SIZE"),
    Flag(("--context-include",), "Copy what the rules would leave out that matches this "
         ".gitignore-style pattern (repeatable).", metavar="PATTERN", multiple=True),
    Flag(("--show-excluded",), "List every entry a copied context leaves out, with its rule.",
         switch=True),
    Flag(("-v", "--volume"), "Bind a host directory or file of yours: HOST:CONTAINER[:ro|rw] "
         "(repeatable; default rw).", metavar="HOST:CONTAINER[:MODE]", multiple=True),
    Flag(("--secret",), "Give the workload this host file at DEST, on an in-memory tmpfs at "
         "/run/secrets (0400, its user's; a DEST elsewhere is bound from there) (repeatable).",
         metavar="SRC:DEST", multiple=True),
    Flag(("--tmpfs",), "An empty in-memory file system at PATH, gone with the container; OPTIONS: "
         "size=SIZE (default 64M), mode=OCTAL (0755), owner=USER[:GROUP] (repeatable).",
         metavar="PATH[:OPTIONS]", multiple=True),
    Flag(("--sysctl",), "Set a kernel parameter of the container's own namespaces inside: net.* (not "
         "with --network host), kernel.msg*, sem, shm*, fs.mqueue.*, kernel.domainname (repeatable).",
         metavar="KEY=VALUE", multiple=True),
    Flag(("--changes",), "When the workload ends, write what it changed in a copied /context to OUT "
         "(a directory, or a patch if OUT ends in .patch or .diff).", metavar="OUT"),
    Flag(("--changes-max-size",), "Largest file --changes brings back [default: 16M].", metavar="SIZE"),
    Flag(("--log-max-size",), "With --detach: start a new log file past this size [default: 10M].",
         metavar="SIZE"),
    Flag(("--log-max-files",), "With --detach: log files kept, the current one included [default: 2].",
         metavar="N"),
    Flag(("--allow-exec",), "Let the workload execute files in this writable place or a directory "
         "below one: /context, home, /tmp (repeatable).", metavar="PATH", multiple=True),
    # The network (nucleus.config.network).
    Flag(("--network",), "none: only lo; bridge: a veth to the host's bridge, with NAT; user: a "
         "user-mode stack, without root (pasta or slirp4netns); host: the host's network (agent "
         "mode, with --allow-host-network) [default: none; bridge in production with -p or "
         "egress].", choices=("none", "bridge", "user", "host")),
    Flag(("--user-net",), "The user-mode stack of --network user [default: auto, pasta where "
         "installed, else slirp4netns].", choices=("auto", "pasta", "slirp4netns")),
    Flag(("--allow-host-network",), "Allow --network host (agent mode only).", switch=True),
    Flag(("--bridge-name",), "The host's bridge for --network bridge [default: nucleus0].", metavar="NAME"),
    Flag(("--subnet",), "The bridge's IPv4 or IPv6 network, one of each at most [default: "
         "10.88.0.0/16 and fd00:6e75::/64].", metavar="CIDR", multiple=True),
    Flag(("--attach",), "One more interface on this bridge, with an address of each subnet; no "
         "route through it (repeatable, at most 8; with --network bridge).", metavar="BRIDGE=CIDR[,CIDR]",
         multiple=True),
    Flag(("--nat-backend",), "Make NAT and forwarding rules with nft or iptables [default: auto, nft "
         "where present].", choices=("auto", "nft", "iptables")),
    Flag(("-p", "--publish"), "Forward a host port to the container: [IP:]HOST:CONTAINER[/tcp|udp] "
         "(repeatable; with --network bridge or user).", metavar="[IP:]HOST:CONTAINER", multiple=True),
    Flag(("--dns",), "A resolver for /etc/resolv.conf inside (repeatable, at most 3) [default: none].",
         metavar="ADDR", multiple=True),
    # Egress (nucleus.config.egress): deny by default once any is given; with --network bridge.
    Flag(("--egress-allow",), "Allow egress to this IPv4 or IPv6 network; any IPv6 one allows IPv6 "
         "(repeatable; needs --network bridge).", metavar="CIDR", multiple=True),
    Flag(("--egress-tcp-port",), "Open only these TCP ports of allowed destinations, a port or "
         "FIRST-LAST (repeatable; needs --network bridge).", metavar="PORT", multiple=True),
    Flag(("--egress-udp-port",), "Open only these UDP ports of allowed networks (repeatable; needs "
         "--network bridge).", metavar="PORT", multiple=True),
    Flag(("--egress-domain",), "Allow this host name through the proxy; *.example.org: every name "
         "below example.org, not itself (repeatable; needs --network bridge).", metavar="NAME",
         multiple=True),
    # Names and labels (nucleus.config.hosts).
    Flag(("--add-host",), "Add NAME with ADDR to the container's /etc/hosts (repeatable).",
         metavar="NAME:ADDR", multiple=True),
    Flag(("--label",), "Keep KEY=VALUE in the container's record; inspect shows it (repeatable).",
         metavar="KEY=VALUE", multiple=True),
    # A long-running service (nucleus.config.service): durations in seconds, or 500ms, 30s, 1m.
    Flag(("--health-cmd",), "Check the service's health with this command, run by /bin/sh -c "
         "inside the container as the workload's user, with its restrictions.", metavar="CMD"),
    Flag(("--health-interval",), "Time between checks [default: 30].", metavar="DURATION"),
    Flag(("--health-timeout",), "A check running longer fails and is killed [default: 5].",
         metavar="DURATION"),
    Flag(("--health-retries",), "Failed checks in a row that make it unhealthy [default: 3].",
         metavar="N"),
    Flag(("--health-start-period",), "Failures this soon after the start do not count [default: 5].",
         metavar="DURATION"),
    Flag(("--health-on-unhealthy",), "What an unhealthy service gets: restart (as --restart allows), "
         "stop, or none [default: restart with a --restart policy, else stop].",
         choices=("restart", "stop", "none")),
    Flag(("--restart",), "Set the container up again when it ends: no, on-failure[:N] (a status "
         "other than 0, at most N times) or always; stop, kill and rm end it [default: no].",
         metavar="POLICY"),
    Flag(("--readiness-exec",), "The service is ready once this command succeeds inside.", metavar="CMD"),
    Flag(("--readiness-tcp",), "The service is ready once this port accepts a connection inside.",
         metavar="PORT"),
    Flag(("--sd-notify",), "Send READY=1 to $NOTIFY_SOCKET (systemd Type=notify) once the service "
         "is ready (or has started, without a readiness flag).", switch=True),
    # The warm path (nucleus.app.serve_client).
    Flag(("--server",), "Have the `nucleus serve` listening on this socket run it: the same "
         "flags, stdio, environment and working directory, a fork instead of a cold start.",
         metavar="SOCK"),
    Flag(("--readiness-sd-notify",), "Bind $NOTIFY_SOCKET into the container (at "
         "/run/nucleus/notify.sock, as NOTIFY_SOCKET) for the workload to send READY=1 itself.",
         switch=True),
)


def click_options(command: F) -> F:
    """Decorate a click command with every run flag, in the table's order."""
    import click  # not at the top: `nucleus run` parses the table without click (run_args)

    for flag in reversed(RUN_FLAGS):
        kwargs: dict[str, Any] = {"help": flag.help}
        if flag.switch:
            kwargs["is_flag"] = True
        else:
            kwargs["metavar"] = flag.metavar
            kwargs["multiple"] = flag.multiple
            if flag.choices:
                kwargs["type"] = click.Choice(list(flag.choices))
                kwargs.pop("metavar")
            if flag.default is not None:
                kwargs["default"] = flag.default
                kwargs["show_default"] = True
        command = click.option(*flag.names, flag.dest, **kwargs)(command)
    return command


def start(command: tuple[str, ...], opts: Mapping[str, Any]) -> int:
    """`nucleus run` with its parsed options: the workload's exit status."""
    import os

    if opts.get("runtime", "native") != "native":
        return _start_gvisor(command, opts)
    if opts.get("gvisor_platform"):
        from nucleus.errors import InvalidInput

        raise InvalidInput(f"--gvisor-platform {opts['gvisor_platform']!r}: only with --runtime gvisor")
    if opts.get("server"):
        import sys

        from nucleus.cli.run_args import without
        from nucleus.effects import serve_client

        args = sys.argv[sys.argv.index("run") + 1:] if "run" in sys.argv else []
        return serve_client.run(opts["server"], without(args, "--server"))
    from nucleus.app.run import run

    config = to_config(command, opts, os.environ.get("TERM") or "xterm")
    return run(config, trace_path=opts["trace"], environ=dict(os.environ))


def _start_gvisor(command: tuple[str, ...], opts: Mapping[str, Any]) -> int:
    """`nucleus run --runtime gvisor`: the same configuration, run by runsc (nucleus.app.gvisor)."""
    import os

    from nucleus.errors import InvalidInput

    if opts.get("server"):
        raise InvalidInput("--server with --runtime gvisor: not supported", hint="drop it, or run with --runtime native")
    from nucleus.app.gvisor import run

    return run(to_config(command, opts, os.environ.get("TERM") or "xterm"), opts.get("gvisor_platform"),
               opts.get("trace"), environ=dict(os.environ))


_POLICY_FLAGS = ("seccomp_profile", "seccomp_profile_sha256", "caps_policy", "caps_policy_sha256",
                 "landlock_policy", "landlock_policy_sha256")


def to_config(command: tuple[str, ...], opts: Mapping[str, Any], term: str,
              environ: Mapping[str, str] | None = None) -> Any:
    """The validated ContainerConfig of `nucleus run`'s parsed options (policy and environment
    files read and checked, the service mode's rules applied): a refusal raises InvalidInput
    naming the flag. `environ`: the caller's environment (a bare KEY of an --env-file)."""
    import os

    from nucleus.app import envfiles, policyfiles
    from nucleus.config import egress, mode_validation, modes, network, service, sysctl
    from nucleus.config import secrets as secret_rules
    from nucleus.config.container import (
        ContainerConfig,
        parse_env,
        parse_id_range,
        parse_log_limits,
        validate,
    )
    from nucleus.config.hosts import parse_add_hosts, parse_labels
    from nucleus.config.resources import parse_size, validate_limits
    from nucleus.config.tmpfs import parse as parse_tmpfs
    from nucleus.config.volumes import parse as parse_volume
    from nucleus.config.workspace import parse_allow_exec

    log_size, log_files = parse_log_limits(opts["log_max_size"], opts["log_max_files"], opts["detach"])
    config = validate(ContainerConfig(
        argv=tuple(command), name=opts["name"], hostname=opts["hostname"], context=opts["context"],
        context_mode=opts["context_mode"], workdir=opts["workdir"],
        env=envfiles.load(opts["env_file"], os.environ if environ is None else environ) + parse_env(opts["env"]),
        user=opts["user"], tty=opts["tty"], interactive=opts["interactive"],
        rootless=opts["rootless"], id_range=parse_id_range(opts["id_range"]),
        time_namespace=opts["time_namespace"],
        allow_degraded_security=opts["allow_degraded_security"],
        allow_chroot_fallback=opts["allow_chroot_fallback"], term=term,
        limits=validate_limits(memory=opts["memory"], swap=opts["swap"], cpus=opts["cpus"],
                               cpu_weight=opts["cpu_weight"], pids=opts["pids"], io=opts["io_limit"],
                               memlock=opts["memlock"], cgroup_parent=opts["cgroup_parent"]),
        cgroup_namespace=not opts["disable_cgroup_namespace"], detach=opts["detach"],
        log_max_size=log_size, log_max_files=log_files,
        service_mode=opts["service_mode"], trust_level=opts["trust_level"],
        require_kernel_lockdown=opts["require_kernel_lockdown"],
        verify_context_integrity=opts["verify_context_integrity"],
        context_size=None if opts["context_size"] is None else parse_size(opts["context_size"],
                                                                          "--context-size"),
        context_include=tuple(opts["context_include"]), show_excluded=opts["show_excluded"],
        seccomp_mode=opts["seccomp_mode"],
        seccomp_log=opts["seccomp_log"], seccomp_log_denied=opts["seccomp_log_denied"],
        seccomp_default_action=opts["seccomp_default_action"], violations=opts["violations"],
        audit_log=opts["audit_log"], otlp_endpoint=opts["otlp_endpoint"],
        rootfs=opts["rootfs"], verify_rootfs_attestation=opts["verify_rootfs_attestation"],
        volumes=tuple(parse_volume(text) for text in opts["volume"]), changes=opts["changes"],
        secrets=secret_rules.parse(tuple(opts["secret"])),
        tmpfs=tuple(parse_tmpfs(text) for text in opts["tmpfs"]),
        changes_max_size=None if opts["changes_max_size"] is None else parse_size(
            opts["changes_max_size"], "--changes-max-size"),
        egress=egress.parse(tuple(opts["egress_allow"]), tuple(opts["egress_tcp_port"]),
                            tuple(opts["egress_udp_port"]), tuple(opts["egress_domain"])),
        extra_hosts=parse_add_hosts(tuple(opts["add_host"])), labels=parse_labels(tuple(opts["label"])),
    ))
    config = replace(config, allow_exec=parse_allow_exec(tuple(opts["allow_exec"]), config))
    given = tuple(("-e", key) for key, _ in parse_env(opts["env"]))
    secret_rules.refuse_secret_environment(
        config.service_mode == modes.PRODUCTION,
        given + tuple(("--env-file", key) for key, _ in config.env if ("-e", key) not in given))
    mode, bridge, dns = network.parse(
        opts["network"], network.Bridge(opts["bridge_name"], tuple(opts["subnet"]), opts["nat_backend"],
                                        tuple(opts["publish"]), opts["user_net"], tuple(opts["attach"])),
        tuple(opts["dns"]), opts["service_mode"], config.egress)
    config = replace(config, network=mode, allow_host_network=opts["allow_host_network"], dns=dns,
                     bridge=bridge, sysctls=sysctl.parse(tuple(opts["sysctl"]), mode != network.HOST))
    config = replace(config, service=service.parse(
        opts["health_cmd"], opts["health_interval"], opts["health_timeout"], opts["health_retries"],
        opts["health_start_period"], opts["health_on_unhealthy"], opts["restart"], opts["readiness_exec"],
        opts["readiness_tcp"], opts["sd_notify"], opts["readiness_sd_notify"], tty=opts["tty"]))
    if any(opts[name] for name in _POLICY_FLAGS):
        loaded = policyfiles.load(*(opts[name] for name in _POLICY_FLAGS))
        config = replace(config, loaded_policies=loaded)
        mode_validation.validate_mode(modes.from_container_spec(config, policies=loaded.files,
                                                                caps_kept=loaded.caps_kept))
    else:
        mode_validation.validate_mode(modes.from_container_spec(config))
    return config
