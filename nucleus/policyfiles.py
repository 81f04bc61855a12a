"""Loading the security policy files named on the command line: read each file once, check its
sha256 pin, and hand the bytes to the pure parsers in nucleus.config.policies."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from nucleus.errors import InvalidInput


@dataclass(frozen=True)
class Policies:
    seccomp: dict[str, Any] | None = None  # a normalized OCI profile
    seccomp_path: str | None = None
    caps: Any = None  # spec.policies.CapsPolicy
    landlock: Any = None  # spec.policies.LandlockPolicy
    files: tuple[Any, ...] = field(default_factory=tuple)  # modes.PolicyFile for each one given

    @property
    def caps_kept(self) -> tuple[str, ...]:
        if self.caps is None:
            return ()
        kept = set()
        for name in ("bounding", "permitted", "effective", "inheritable", "ambient"):
            kept |= set(self.caps.names(name))
        return tuple(sorted(kept))


def _read(path: str, flag: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InvalidInput(f"{flag} {path!r}: {e.strerror}") from e


def load(seccomp: str | None = None, seccomp_sha256: str | None = None,
         caps: str | None = None, caps_sha256: str | None = None,
         landlock: str | None = None, landlock_sha256: str | None = None) -> Policies:
    from nucleus.config import policies
    from nucleus.config.modes import PolicyFile

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
        data = _read(caps, "--caps-policy")
        if caps_sha256 is not None:
            policies.check_pin(caps, data, caps_sha256, "--caps-policy-sha256")
        caps_policy = policies.parse_caps_policy(data, caps)
    profile = None
    if seccomp is not None:
        data = _read(seccomp, "--seccomp-profile")
        if seccomp_sha256 is not None:
            policies.check_pin(seccomp, data, seccomp_sha256, "--seccomp-profile-sha256")
        uname = os.uname()
        profile = policies.parse_seccomp_profile(
            data, seccomp, arch=uname.machine,
            caps=caps_policy.bounding if caps_policy is not None else frozenset(), kernel=uname.release)
    landlock_policy = None
    if landlock is not None:
        data = _read(landlock, "--landlock-policy")
        if landlock_sha256 is not None:
            policies.check_pin(landlock, data, landlock_sha256, "--landlock-policy-sha256")
        landlock_policy = policies.parse_landlock_policy(data, landlock)
    return Policies(profile, seccomp, caps_policy, landlock_policy, tuple(files))
