"""Probes for host features that tests declare with ``@pytest.mark.requires``.

Each probe returns (present, observed fact). Probes are cached: they look, never change.
"""

from __future__ import annotations

import functools
import os
import shutil

# Features the CI machine (Debian 12, kernel 6.x, root) is known to have.
EXPECTED = frozenset({
    "root", "userns", "seccomp", "landlock", "netns", "pyseccomp",
    # installed by `make setup`, so a CI run that lacks them is broken, not skippable
    "bin:gcc", "bin:runc", "bin:bwrap", "bin:unshare", "bin:runuser",
})


def _root() -> tuple[bool, str]:
    uid = os.geteuid()
    return uid == 0, f"euid {uid}"


def _userns() -> tuple[bool, str]:
    path = "/proc/sys/user/max_user_namespaces"
    try:
        with open(path) as f:
            n = int(f.read())
    except OSError as e:
        return False, f"{path}: {e.strerror}"
    return n > 0, f"max_user_namespaces {n}"


def _seccomp() -> tuple[bool, str]:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Seccomp:"):
                return True, line.strip()
    return False, "no Seccomp field in /proc/self/status"


def _landlock() -> tuple[bool, str]:
    from nucleus.effects import landlock

    abi = landlock.abi_version()
    return abi > 0, f"ABI {abi}"


def _netns() -> tuple[bool, str]:
    return os.path.exists("/proc/self/ns/net"), "/proc/self/ns/net"


def _pyseccomp() -> tuple[bool, str]:
    try:
        import pyseccomp  # noqa: F401
    except Exception as e:  # pragma: no cover - reported as the fact
        return False, f"import pyseccomp: {e}"
    return True, "importable"


def _binary(name: str) -> tuple[bool, str]:
    path = shutil.which(name)
    return path is not None, path or f"{name} not on PATH"


_PROBES = {
    "root": _root,
    "userns": _userns,
    "seccomp": _seccomp,
    "landlock": _landlock,
    "netns": _netns,
    "pyseccomp": _pyseccomp,
}


@functools.cache
def probe(feature: str) -> tuple[bool, str]:
    if feature.startswith("bin:"):
        return _binary(feature[4:])
    try:
        return _PROBES[feature]()
    except KeyError:
        return False, f"unknown feature {feature!r}"
