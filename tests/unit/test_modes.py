"""Service modes and trust levels: every row of the modes table that validation can check, the
host checks against given facts, and the lockdown parser."""

from __future__ import annotations

import pytest

from nucleus.config import mode_host as mh
from nucleus.config import mode_validation as mv
from nucleus.config import modes as m
from nucleus.config.modes import ModeRequest, PolicyFile
from nucleus.errors import HostUnsupported, InvalidInput
from nucleus.facts import CgroupLayout, HostFacts

STORE_ROOTFS = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-my-service-rootfs"
PINNED = (PolicyFile("seccomp", "svc.json", True), PolicyFile("caps", "svc.caps.toml", True),
          PolicyFile("landlock", "svc.landlock.toml", True))


def production(**fields) -> ModeRequest:
    """A production request that passes validation, changed by ``fields``."""
    base = dict(service_mode="production", memory_set=True, cpus_set=True, rootfs=STORE_ROOTFS,
                verify_rootfs_attestation=True)
    base.update(fields)
    return ModeRequest(**base)


def refusal(req: ModeRequest, labels=None) -> InvalidInput:
    with pytest.raises(InvalidInput) as e:
        mv.validate_mode(req, labels)
    assert e.value.exit_code == 125
    return e.value


# --- agent mode allows every flag -----------------------------------------------------------


def test_agent_mode_allows_every_flag():
    req = ModeRequest(
        service_mode="agent", trust_level="trusted", allow_degraded_security=True,
        allow_chroot_fallback=True, network="host", allow_host_network=True,
        seccomp_mode="trace", rootfs="/srv/rootfs",
        policies=(PolicyFile("seccomp", "p.json"), PolicyFile("caps", "c.toml")),
        caps_kept=("SYS_ADMIN", "CAP_NET_RAW"), verify_context_integrity=True, context="./ctx",
        require_kernel_lockdown="integrity", rootless=True)
    assert mv.check_mode(req) == []
    assert mv.validate_mode(req) is req


def test_the_defaults_are_agent_and_trusted_and_valid():
    req = ModeRequest()
    assert (req.service_mode, req.trust_level) == ("agent", "trusted")
    assert mv.check_mode(req) == []


def test_a_complete_production_request_is_valid():
    assert mv.check_mode(production(policies=PINNED, caps_kept=("NET_BIND_SERVICE",),
                                   network="bridge", dns=("10.0.0.1",),
                                   require_kernel_lockdown="integrity")) == []


def test_a_strict_agent_with_nothing_weakened_is_valid():
    assert mv.check_mode(ModeRequest(service_mode="strict-agent", network="bridge",
                                    dns=("10.0.0.1",), caps_kept=("SYS_ADMIN",))) == []


# --- the rows, one by one, with their exact messages ---------------------------------------


@pytest.mark.parametrize("mode", ["strict-agent", "production"])
def test_row_degraded_security(mode):
    req = production(service_mode=mode, allow_degraded_security=True)
    e = refusal(req)
    assert e.message == (f'--allow-degraded-security is forbidden in {mode} mode '
                         f'(row "Degraded security": {mode} forbids it)')
    assert e.hint == (f"drop --allow-degraded-security: in {mode} mode a control that cannot be "
                      f"applied stops the run")


@pytest.mark.parametrize("mode", ["strict-agent", "production"])
def test_row_chroot_fallback(mode):
    e = refusal(production(service_mode=mode, allow_chroot_fallback=True))
    assert e.message == (f'--allow-chroot-fallback is forbidden in {mode} mode '
                         f'(row "Chroot fallback": {mode} forbids it)')
    assert e.hint == (f"drop --allow-chroot-fallback: in {mode} mode a pivot_root failure stops "
                      f"the run")


@pytest.mark.parametrize("mode", ["strict-agent", "production"])
def test_row_host_networking_flag(mode):
    e = refusal(production(service_mode=mode, allow_host_network=True))
    assert e.message == (f'--allow-host-network is forbidden in {mode} mode '
                         f'(row "Host networking": {mode} forbids it)')
    assert e.hint == "drop --allow-host-network"


@pytest.mark.parametrize("mode", ["strict-agent", "production"])
def test_row_host_networking_mode_is_reported_once(mode):
    e = refusal(production(service_mode=mode, network="host", allow_host_network=True))
    assert e.message == (f"--network 'host' is forbidden in {mode} mode "
                         f'(row "Host networking": {mode} forbids it)')
    assert e.hint == "use --network none"


def test_row_host_networking_in_agent_mode_needs_the_flag():
    e = refusal(ModeRequest(network="host"))
    assert e.message == ("--network 'host' needs --allow-host-network "
                         '(row "Host networking": agent allows it only with that flag)')
    assert e.hint == ("add --allow-host-network to share the host's network namespace, or use "
                      "--network none")


def test_row_memory_limit():
    e = refusal(production(memory_set=False))
    assert e.message == ('--memory is required in production mode '
                         '(row "Memory limit": production requires an explicit limit)')
    assert e.hint == "give a limit, e.g. --memory 1G"
    assert mv.check_mode(ModeRequest(service_mode="strict-agent")) == []


def test_cpu_limit_required_in_production():
    e = refusal(production(cpus_set=False))
    assert e.message == ('--cpus is required in production mode '
                         '(row "CPU limit": production requires an explicit limit)')
    assert e.hint == "give a limit, e.g. --cpus 2"


@pytest.mark.parametrize("mode", ["strict-agent", "production"])
def test_row_bridge_dns(mode):
    e = refusal(production(service_mode=mode, network="bridge"))
    assert e.message == (f"--network 'bridge' needs --dns in {mode} mode "
                         f'(row "Bridge DNS": {mode} needs resolvers configured explicitly)')
    assert e.hint == (f"name your resolvers, e.g. --dns 10.0.0.1 ({mode} mode never falls back "
                      f"to public resolvers)")


def test_bridge_dns_is_never_chosen_for_the_user():
    assert mv.check_mode(ModeRequest(network="bridge")) == []
    assert m.dns_servers(ModeRequest(network="bridge")) == ()
    assert m.dns_servers(ModeRequest(network="bridge", dns=("10.0.0.1",))) == ("10.0.0.1",)
    assert m.dns_servers(production(network="bridge")) == ()


def test_row_rootfs_required():
    e = refusal(production(rootfs=None))
    assert e.message == ('--rootfs is required in production mode (row "Rootfs": production runs '
                         'a pre-built Nix closure, not host bind mounts)')
    assert e.hint == "build a closure and pass --rootfs /nix/store/<hash>-<name>"


@pytest.mark.parametrize("path, why", [
    ("/srv/rootfs", "not under /nix/store"),
    ("nix/store/0123456789abcdfghijklmnpqrsvwxyz-x", "not an absolute path"),
    ("/nix/store/../../etc", "has '.' or '..' components"),
    ("/nix/store", "not under /nix/store"),
    ("/nix/store/...-my-service-rootfs",
     "'...-my-service-rootfs' is not a store entry name (<32-character hash>-<name>)"),
    ("/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x",
     "'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x' is not a store entry name (<32-character hash>-<name>)"),
])
def test_row_rootfs_must_be_a_store_path(path, why):
    e = refusal(production(rootfs=path))
    assert e.message == (f"--rootfs {path!r} is refused in production mode: {why} "
                         f'(row "Rootfs": production needs a path under /nix/store)')
    assert e.hint == "pass the closure's store path, e.g. --rootfs /nix/store/<hash>-<name>"


def test_store_paths_accepted():
    for path in (STORE_ROOTFS, STORE_ROOTFS + "/", STORE_ROOTFS + "/sub/dir",
                 "//nix//store/0123456789abcdfghijklmnpqrsvwxyz-a.b+c_d?=e"):
        assert m.store_path_problem(path) is None, path


@pytest.mark.parametrize("mode", ["strict-agent", "production"])
def test_row_seccomp_trace_mode(mode):
    e = refusal(production(service_mode=mode, seccomp_mode="trace"))
    assert e.message == (f"--seccomp-mode 'trace' is forbidden in {mode} mode "
                         f'(row "Seccomp trace mode": {mode} forbids it)')
    assert e.hint == ("trace is a development tool: record the trace in agent mode, generate a "
                      "profile with nucleus seccomp generate, then pass --seccomp-profile")


@pytest.mark.parametrize("kind, flag", [("seccomp", "--seccomp-profile"),
                                        ("caps", "--caps-policy"),
                                        ("landlock", "--landlock-policy")])
def test_row_security_policies_must_be_pinned_in_production(kind, flag):
    e = refusal(production(policies=(PolicyFile(kind, "svc.policy", pinned=False),)))
    assert e.message == (f"{flag} 'svc.policy' is not pinned: production mode requires "
                         f"{flag}-sha256 (row \"Security policies\": production needs every "
                         f"policy file pinned by sha256)")
    assert e.hint == f"pin it: {flag}-sha256 $(sha256sum svc.policy | cut -d' ' -f1)"
    assert mv.check_mode(ModeRequest(service_mode="strict-agent",
                                    policies=(PolicyFile(kind, "svc.policy"),))) == []


def test_row_capabilities_dangerous_refused_in_production():
    req = production(policies=(PolicyFile("caps", "svc.caps.toml", True),),
                     caps_kept=("net_bind_service", "SYS_ADMIN", "CAP_NET_RAW"))
    e = refusal(req)
    assert e.message == ("--caps-policy 'svc.caps.toml' keeps CAP_NET_RAW, CAP_SYS_ADMIN: refused "
                         'in production mode (row "Capabilities": production refuses dangerous '
                         "capabilities)")
    assert e.hint.startswith("keep only what the service needs (e.g. CAP_NET_BIND_SERVICE); "
                             "production never keeps any of: CAP_BPF, CAP_DAC_OVERRIDE, ")


def test_the_seventeen_dangerous_capabilities():
    assert len(m.DANGEROUS_CAPABILITIES) == 17
    for cap in sorted(m.DANGEROUS_CAPABILITIES):
        e = refusal(production(caps_kept=(cap.removeprefix("CAP_").lower(),)))
        assert e.message.startswith(f"--caps-policy keeps {cap}: refused in production mode")
    harmless = ("CAP_NET_BIND_SERVICE", "CAP_CHOWN", "CAP_KILL", "CAP_SYS_NICE")
    assert mv.check_mode(production(caps_kept=harmless)) == []


def test_unknown_capability_is_named():
    e = refusal(ModeRequest(policies=(PolicyFile("caps", "c.toml"),), caps_kept=("CAP_FLY",)))
    assert e.message == "--caps-policy 'c.toml': unknown capability 'CAP_FLY'"


def test_every_problem_is_listed_first_one_with_its_hint():
    e = refusal(ModeRequest(service_mode="production", allow_degraded_security=True))
    assert e.message.splitlines() == [
        '--allow-degraded-security is forbidden in production mode (row "Degraded security": '
        'production forbids it)',
        'also: --rootfs is required in production mode (row "Rootfs": production runs a '
        'pre-built Nix closure, not host bind mounts)',
        'also: --memory is required in production mode (row "Memory limit": production '
        'requires an explicit limit)',
        'also: --cpus is required in production mode (row "CPU limit": production requires '
        'an explicit limit)',
    ]
    assert e.hint.startswith("drop --allow-degraded-security")
    rows = [p.row for p in mv.problems(ModeRequest(service_mode="production",
                                                  allow_degraded_security=True))]
    assert rows == ["Degraded security", "Rootfs", "Memory limit", "CPU limit"]


def test_labels_rename_fields_for_a_file():
    labels = {"memory": "services.web.memory", "cpus": "services.web.cpus",
              "rootfs": "services.web.rootfs"}
    e = refusal(ModeRequest(service_mode="production"), labels)
    assert e.message.splitlines()[0] == (
        'services.web.rootfs is required in production mode (row "Rootfs": production runs a '
        'pre-built Nix closure, not host bind mounts)')


# --- choices ----------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value, message", [
    ("service_mode", "prod", "--service-mode 'prod': expected one of agent, strict-agent, production"),
    ("trust_level", "maybe", "--trust-level 'maybe': expected one of trusted, untrusted"),
    ("network", "slirp", "--network 'slirp': expected one of none, host, bridge, user"),
    ("seccomp_mode", "log", "--seccomp-mode 'log': expected one of enforce, trace"),
    ("context_mode", "overlay", "--context-mode 'overlay': expected one of copy, bind"),
    ("require_kernel_lockdown", "none",
     "--require-kernel-lockdown 'none': expected one of integrity, confidentiality"),
])
def test_bad_choices_are_named(field, value, message):
    assert refusal(ModeRequest(**{field: value})).message == message


# --- context integrity ------------------------------------------------------------------------


def test_verify_context_integrity_needs_a_copied_context():
    e = refusal(ModeRequest(verify_context_integrity=True))
    assert (e.message, e.hint) == ("--verify-context-integrity needs --context",
                                   "give the directory to copy in: --context DIR")
    e = refusal(ModeRequest(verify_context_integrity=True, context="ctx", context_mode="bind"))
    assert e.message == ("--verify-context-integrity needs --context-mode copy, not 'bind': a "
                         "bind-mounted context is the live host directory, there is no copy to "
                         "verify")
    assert e.hint == "drop --context-mode bind or --verify-context-integrity"
    assert mv.check_mode(ModeRequest(verify_context_integrity=True, context="ctx")) == []


# --- trust level ------------------------------------------------------------------------------


@pytest.mark.parametrize("fields, message", [
    (dict(allow_degraded_security=True),
     "--allow-degraded-security is forbidden with --trust-level untrusted: an untrusted workload "
     "never runs with a security control missing"),
    (dict(allow_chroot_fallback=True),
     "--allow-chroot-fallback is forbidden with --trust-level untrusted: a chroot can be escaped "
     "where pivot_root cannot"),
    (dict(network="host", allow_host_network=True),
     "--network 'host' is forbidden with --trust-level untrusted: the workload would share the "
     "host's network namespace"),
    (dict(allow_host_network=True),
     "--allow-host-network is forbidden with --trust-level untrusted: the workload would share "
     "the host's network namespace"),
    (dict(seccomp_mode="trace"),
     "--seccomp-mode 'trace' is forbidden with --trust-level untrusted: trace mode runs the "
     "workload with no syscall filter"),
    (dict(caps_kept=("SYS_PTRACE",)),
     "--caps-policy keeps CAP_SYS_PTRACE: refused with --trust-level untrusted"),
])
def test_untrusted_refuses_every_weakening_in_agent_mode(fields, message):
    e = refusal(ModeRequest(trust_level="untrusted", **fields))
    assert e.message == message
    assert "pass --trust-level trusted if you vouch for the workload" in e.hint
    assert mv.check_mode(ModeRequest(trust_level="trusted", **fields)) == []


def test_untrusted_does_not_repeat_a_mode_refusal():
    e = refusal(production(trust_level="untrusted", allow_degraded_security=True))
    assert e.message == ('--allow-degraded-security is forbidden in production mode '
                         '(row "Degraded security": production forbids it)')


def test_untrusted_without_weakening_is_valid():
    assert mv.check_mode(ModeRequest(trust_level="untrusted", context="ctx",
                                    verify_context_integrity=True)) == []


# --- answers for the runtime ------------------------------------------------------------------


def test_runtime_answers_per_mode():
    assert [m.min_landlock_abi(x) for x in m.SERVICE_MODES] == [1, 1, 3]
    assert m.min_landlock_abi("agent", allow_degraded_security=True) == 0
    assert [m.cgroups_required(x) for x in m.SERVICE_MODES] == [False, True, True]
    assert [m.proc_hidepid(x) for x in m.SERVICE_MODES] == [0, 0, 2]
    assert m.mount_audit("agent") == m.mount_audit("strict-agent") == ()
    audit = {r.path: r for r in m.mount_audit("production")}
    assert audit["/bin"].flags == ("rdonly", "nosuid", "nodev") and not audit["/bin"].required
    assert audit["/"].required and audit["/proc"].required
    assert audit["/proc"].flags == ("nosuid", "nodev", "noexec")
    assert not audit["/run/secrets"].required
    with pytest.raises(ValueError, match="unknown service mode 'prod'"):
        m.cgroups_required("prod")


def test_table_names_every_row_of_the_reference_table():
    reference = ["Service mode", "Degraded security", "Chroot fallback", "Host networking",
                 "Cgroup limits", "Bridge DNS", "Rootfs", "Egress policy", "Memory limit",
                 "PID 1 init", "Secrets", "/proc", "Mount audit", "Seccomp trace mode",
                 "Landlock ABI", "Health checks", "sd_notify", "Security policies"]
    table_rows = [r.name for r in m.TABLE if r.source == "table"]
    assert table_rows == reference
    assert {p.row for p in m.NOT_ENFORCED_YET} == {r.name for r in m.TABLE if r.enforced == "not yet"}
    assert all(p.reason for p in m.NOT_ENFORCED_YET)


def test_from_container_spec_reads_matching_fields():
    from nucleus.config.container import ContainerConfig
    from nucleus.config.resources import validate_limits

    spec = ContainerConfig(argv=("true",), context="ctx", context_mode="bind",
                         allow_chroot_fallback=True, limits=validate_limits(memory="1G"))
    req = m.from_container_spec(spec, trust_level="untrusted", dns=["10.0.0.1"])
    assert (req.context, req.context_mode, req.allow_chroot_fallback) == ("ctx", "bind", True)
    assert (req.memory_set, req.cpus_set, req.trust_level, req.dns) == (True, False, "untrusted",
                                                                        ("10.0.0.1",))


# --- lockdown ---------------------------------------------------------------------------------


@pytest.mark.parametrize("line, mode", [
    ("none [integrity] confidentiality", "integrity"),
    ("[none] integrity confidentiality\n", "none"),
    ("none integrity [confidentiality]", "confidentiality"),
])
def test_parse_lockdown(line, mode):
    assert m.parse_lockdown(line) == mode


@pytest.mark.parametrize("line", ["", "none integrity confidentiality",
                                  "[none] [integrity] confidentiality", "none [paranoid]"])
def test_parse_lockdown_refuses_malformed_text(line):
    with pytest.raises(ValueError):
        m.parse_lockdown(line)


@pytest.mark.parametrize("required, line, ok", [
    (None, None, True),
    ("integrity", "none [integrity] confidentiality", True),
    ("integrity", "none integrity [confidentiality]", True),
    ("confidentiality", "none [integrity] confidentiality", False),
    ("confidentiality", "none integrity [confidentiality]", True),
    ("integrity", "[none] integrity confidentiality", False),
    ("integrity", None, False),
    ("integrity", "garbage", False),
])
def test_lockdown_satisfied(required, line, ok):
    assert m.lockdown_satisfied(required, line) is ok


# --- host checks ------------------------------------------------------------------------------

GOOD_HOST = HostFacts(landlock_abi=7, cgroups=CgroupLayout("v1"), lockdown="none [integrity] confidentiality",
                      seccomp_filter=True, max_user_namespaces=1000, euid=0)


def host_refusal(req: ModeRequest, host: HostFacts) -> HostUnsupported:
    with pytest.raises(HostUnsupported) as e:
        mh.validate_host(req, host)
    assert e.value.exit_code == 125
    return e.value


def test_a_good_host_refuses_nothing():
    for req in (ModeRequest(), ModeRequest(service_mode="strict-agent"),
                production(require_kernel_lockdown="integrity")):
        assert mh.check_host(req, GOOD_HOST) == []


def test_nothing_probed_nothing_refused():
    assert mh.check_host(production(require_kernel_lockdown="confidentiality", rootless=True),
                        HostFacts()) == []


def test_host_landlock_abi_below_production_minimum():
    host = HostFacts(landlock_abi=2)
    e = host_refusal(production(), host)
    assert e.message == ('Landlock ABI 2 is below 3: refused in production mode '
                         '(row "Landlock ABI": production requires ABI 3 minimum)')
    assert e.hint.startswith("ABI 3 (Linux 6.2) is the first that can deny truncate")
    assert mh.check_host(ModeRequest(), host) == []


def test_host_without_landlock():
    host = HostFacts(landlock_abi=0)
    e = host_refusal(ModeRequest(), host)
    assert e.message == ('Landlock is not available on this host (ABI 0): refused in agent mode '
                         '(row "Landlock ABI": agent needs Landlock unless degraded security is '
                         'allowed)')
    assert e.hint.endswith(", or pass --allow-degraded-security")
    assert mh.check_host(ModeRequest(allow_degraded_security=True), host) == []


def test_host_cgroups_required_in_the_strict_modes():
    host = HostFacts(cgroups=CgroupLayout("none", reason="no cgroup v1 hierarchy for memory"))
    e = host_refusal(production(), host)
    assert e.message == ("no usable cgroup hierarchy (no cgroup v1 hierarchy for memory): refused "
                         'in production mode (row "Cgroup limits": production requires cgroups; '
                         "a failure is fatal)")
    e = host_refusal(ModeRequest(service_mode="strict-agent"), host)
    assert e.message == ("no usable cgroup hierarchy (no cgroup v1 hierarchy for memory): refused "
                         'in strict-agent mode (row "Cgroup limits": strict-agent requires cgroups; '
                         "a failure is fatal)")
    assert mh.check_host(ModeRequest(), host) == []


def test_a_v2_root_that_does_not_enable_the_controllers_is_no_usable_hierarchy():
    layout = CgroupLayout("v2", mounts=(("unified", "/sys/fs/cgroup"),),
                          controllers=("cpu", "memory", "pids"), root_enabled=("cpu",))
    e = host_refusal(production(), HostFacts(cgroups=layout))
    assert e.message == (
        "no usable cgroup hierarchy (memory pids not enabled for the children of /sys/fs/cgroup; "
        "enable them on the host with: echo '+memory +pids' > /sys/fs/cgroup/cgroup.subtree_control): "
        'refused in production mode (row "Cgroup limits": production requires cgroups; a failure '
        "is fatal)")
    enabled = HostFacts(cgroups=CgroupLayout("v2", mounts=layout.mounts, controllers=layout.controllers,
                                             root_enabled=("cpu", "io", "memory", "pids")))
    assert mh.check_host(production(), enabled) == []


def test_host_lockdown():
    e = host_refusal(ModeRequest(require_kernel_lockdown="confidentiality"), GOOD_HOST)
    assert e.message == ("--require-kernel-lockdown 'confidentiality': the kernel's lockdown mode "
                         "is 'integrity'")
    assert e.hint == "boot with lockdown=confidentiality (kernel command line), or require less"
    unreadable = HostFacts(lockdown_error="securityfs not mounted")
    e = host_refusal(ModeRequest(require_kernel_lockdown="integrity"), unreadable)
    assert e.message == ("--require-kernel-lockdown 'integrity': cannot read the kernel's lockdown "
                         "mode (securityfs not mounted)")


def test_host_rootless_as_root():
    e = host_refusal(ModeRequest(service_mode="strict-agent", rootless=True), GOOD_HOST)
    assert e.message == ("--rootless run as root would map container root to host root: refused "
                         'in strict-agent mode (row "User namespace": strict-agent keeps container '
                         "root unprivileged)")
    e = host_refusal(ModeRequest(trust_level="untrusted", rootless=True), GOOD_HOST)
    assert e.message == ("--rootless run as root would map container root to host root: refused "
                         "with --trust-level untrusted")
    assert mh.check_host(ModeRequest(rootless=True), GOOD_HOST) == []
    not_root = HostFacts(euid=1000)
    assert mh.check_host(production(rootless=True), not_root) == []


def test_host_rootfs_resolving_out_of_the_store():
    host = HostFacts(rootfs_realpath="/srv/evil")
    e = host_refusal(production(), host)
    assert e.message == (f"--rootfs {STORE_ROOTFS!r} resolves to '/srv/evil': not under /nix/store "
                         '(row "Rootfs": production needs a path under /nix/store)')


def test_host_without_seccomp_or_user_namespaces():
    host = HostFacts(seccomp_filter=False, max_user_namespaces=0)
    found = mh.check_host(ModeRequest(service_mode="strict-agent"), host)
    assert found == [
        "this host allows no user namespaces (user.max_user_namespaces is 0); every nucleus "
        "container runs in one",
        'this kernel has no seccomp filters: refused in strict-agent mode (row "Degraded '
        'security": strict-agent never runs without a syscall filter)',
    ]
    assert mh.check_host(ModeRequest(allow_degraded_security=True),
                        HostFacts(seccomp_filter=False)) == []


def test_assess_per_mode():
    host = HostFacts(landlock_abi=2, cgroups=CgroupLayout("none", reason="none here"),
                     lockdown="none [integrity] confidentiality", seccomp_filter=True)
    agent = {f.row: f for f in mh.assess("agent", host)}
    prod = {f.row: f for f in mh.assess("production", host)}
    assert (agent["Landlock ABI"].status, prod["Landlock ABI"].status) == ("ok", "refused")
    assert (agent["Cgroup limits"].status, prod["Cgroup limits"].status) == ("warn", "refused")
    assert prod["Kernel lockdown"].detail == ("'integrity': --require-kernel-lockdown integrity "
                                              "satisfied, confidentiality refused")
