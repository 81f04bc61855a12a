"""Loading the security policy files named on the command line: read each file once, check its
sha256 pin, and hand the bytes to the pure parsers in nucleus.config.policy."""

from __future__ import annotations

import json
from dataclasses import field
from typing import Any

from nucleus.effects import prepare
from nucleus.errors import InvalidInput
from nucleus.frozen import frozen


@frozen
class Policies:
    seccomp: dict[str, Any] | None = None  # a normalized OCI profile
    seccomp_path: str | None = None
    caps: Any = None  # config.policy.caps_policy.CapsPolicy
    landlock: Any = None  # config.policy.landlock_policy.LandlockPolicy
    files: tuple[Any, ...] = field(default_factory=tuple)  # modes.PolicyFile for each one given

    @property
    def caps_kept(self) -> tuple[str, ...]:
        if self.caps is None:
            return ()
        kept = set()
        for name in ("bounding", "permitted", "effective", "inheritable", "ambient"):
            kept |= set(self.caps.names(name))
        return tuple(sorted(kept))


def load(seccomp: str | None = None, seccomp_sha256: str | None = None,
         caps: str | None = None, caps_sha256: str | None = None,
         landlock: str | None = None, landlock_sha256: str | None = None) -> Policies:
    from nucleus.config.modes import PolicyFile
    from nucleus.config.policy.caps_policy import parse_caps_policy
    from nucleus.config.policy.landlock_policy import parse_landlock_policy
    from nucleus.config.policy.pins import check_pin
    from nucleus.config.policy.seccomp_profile import kills_init, parse_seccomp_profile

    files = []
    for flag, path, pin in (("--seccomp-profile", seccomp, seccomp_sha256),
                            ("--caps-policy", caps, caps_sha256),
                            ("--landlock-policy", landlock, landlock_sha256)):
        if pin is not None and path is None:
            raise InvalidInput(f"{flag}-sha256 given without {flag}")
        if path is not None:
            files.append(PolicyFile(flag.split("-")[2], path, pin is not None))

    caps_policy = None
    if caps is not None:
        data = prepare.read_file("--caps-policy", caps)
        if caps_sha256 is not None:
            check_pin(caps, data, caps_sha256, "--caps-policy-sha256")
        caps_policy = parse_caps_policy(data, caps)
    profile = None
    if seccomp is not None:
        data = prepare.read_file("--seccomp-profile", seccomp)
        if seccomp_sha256 is not None:
            check_pin(seccomp, data, seccomp_sha256, "--seccomp-profile-sha256")
        machine, _ = prepare.architecture()
        profile = parse_seccomp_profile(
            data, seccomp, arch=machine,
            caps=caps_policy.bounding if caps_policy is not None else frozenset(),
            kernel=prepare.kernel_release())
        killed = kills_init(profile)
        if killed:
            rule = json.dumps({"names": list(killed), "action": "SCMP_ACT_ALLOW"})
            raise InvalidInput(
                f"--seccomp-profile {seccomp!r}: it kills {' and '.join(killed)}, which the "
                "container's init calls to wait for the workload and to forward signals to it: "
                "the container would be killed at random, with its init",
                hint=f"allow them with a rule {rule} (SCMP_ACT_ERRNO will do too: the init then "
                "reaps without forwarding signals); `nucleus seccomp generate` adds them")
    landlock_policy = None
    if landlock is not None:
        data = prepare.read_file("--landlock-policy", landlock)
        if landlock_sha256 is not None:
            check_pin(landlock, data, landlock_sha256, "--landlock-policy-sha256")
        landlock_policy = parse_landlock_policy(data, landlock)
    return Policies(profile, seccomp, caps_policy, landlock_policy, tuple(files))
