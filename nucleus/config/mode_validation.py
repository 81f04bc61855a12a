"""Which options a run may combine: every refusal of a
:class:`~nucleus.config.modes.ModeRequest` that needs no host fact, in the order of the service
modes' table, then the trust level's (``problems``, ``check_mode``, ``validate_mode``). It runs
before anything else. Pure: nothing here probes the host.

A refusal that enforces a table row names the row (see ``nucleus.config.modes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from nucleus.config import egress
from nucleus.config.capabilities import CAPABILITY_NAMES
from nucleus.config.modes import (
    CONTEXT_MODES,
    DANGEROUS_CAPABILITIES,
    FLAGS,
    NETWORK_MODES,
    NIX_STORE,
    POLICY_KINDS,
    PRODUCTION,
    REQUIRABLE_LOCKDOWN,
    SECCOMP_MODES,
    SERVICE_MODES,
    STRICT_MODES,
    TRUST_LEVELS,
    UNTRUSTED,
    ModeRequest,
    store_path_problem,
)
from nucleus.errors import HostUnsupported, InvalidInput


def _cap_name(name: str) -> str | None:
    key = name.strip().upper()
    if not key.startswith("CAP_"):
        key = "CAP_" + key
    return key if key in CAPABILITY_NAMES else None


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

    if strict and req.network in ("bridge", "user") and not req.dns:
        refuse("dns",
               f"{name['network']} {req.network!r} needs {name['dns']} in {mode} mode "
               f"{_row(mode, 'Bridge DNS', 'needs resolvers configured explicitly')}",
               f"name your resolvers, e.g. {name['dns']} 10.0.0.1 ({mode} mode never falls "
               f"back to public resolvers)", "Bridge DNS")
    egress_problem = egress.network_problem(req.egress, req.network)
    if egress_problem is not None:
        out.append(Problem(*egress_problem))
    caps_problem = egress.caps_problem(egress.in_force(req.egress, mode == PRODUCTION), req.network,
                                       tuple(c for c in map(_cap_name, req.caps_kept) if c is not None),
                                       _policy_label(req, name, "caps"), req.rootless)
    if caps_problem is not None:
        out.append(Problem(*caps_problem))

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
        if req.rootfs is not None and not req.verify_rootfs_attestation:
            refuse("rootfs_attestation",
                   f"{name['verify_rootfs_attestation']} is required in production mode "
                   f"{_row(mode, 'Rootfs attestation', 'runs a closure only as it was attested')}",
                   f"attest the closure when it is built (nucleus attest DIR) and add "
                   f"{name['verify_rootfs_attestation']}", "Rootfs attestation")
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
    if strict and req.seccomp_default_action == "log":
        refuse("seccomp_log",
               f"{name['seccomp_default_action']} 'log' is forbidden in {mode} mode "
               f"{_row(mode, 'Seccomp default action', 'forbids log: it allows what the profile refuses')}",
               f"use {name['seccomp_default_action']} errno (or kill); try a workload under log in "
               "agent mode", "Seccomp default action")
    if req.seccomp_default_action is not None and any(p.kind == "seccomp" for p in req.policies):
        out.append(Problem(
            f"{name['seccomp_default_action']} {req.seccomp_default_action!r} applies to the default "
            f"profile: {_policy_label(req, name, 'seccomp')} keeps its own defaultAction",
            f"drop {name['seccomp_default_action']}, or set defaultAction in the profile"))

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

    if req.verify_rootfs_attestation and req.rootfs is None and "rootfs" not in reported:
        out.append(Problem(
            f"{name['verify_rootfs_attestation']} needs {name['rootfs']}: without a closure there "
            "is nothing to verify", f"give the closure: {name['rootfs']} DIR"))
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
        if req.seccomp_default_action == "log" and "seccomp_log" not in reported:
            out.append(Problem(
                f"{name['seccomp_default_action']} 'log' is forbidden {untrusted}: it allows every "
                f"call the profile does not name", f"use errno or kill, or {vouch}"))
        if dangerous and "caps" not in reported:
            out.append(Problem(
                f"{_policy_label(req, name, 'caps')} keeps {', '.join(dangerous)}: refused "
                f"{untrusted}", f"keep none of {', '.join(dangerous)}, or {vouch}"))
        if req.allow_exec and strict:
            out.append(Problem(
                f"{name['allow_exec']} {req.allow_exec[0]!r} is forbidden {untrusted} in {mode} "
                f"mode: an untrusted workload runs nothing from a place it can write "
                f"(row \"Executable workspace\")",
                f"drop {name['allow_exec']}, use --service-mode agent (/context and home are "
                f"executable there), or {vouch}"))
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
