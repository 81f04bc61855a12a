"""Probes for host features that tests declare with ``@pytest.mark.requires``.

Each probe returns (present, observed fact). Probes are cached: they look, never change.

A feature ``shared:PATH`` is the reference file ``../shared/PATH`` beside the repository (see
``shared_file``): the development checkout has it, a user's clone does not.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
from pathlib import Path

# Features the CI machine (Debian 12, kernel 6.x, root) is known to have.
EXPECTED = frozenset({
    "root", "userns", "seccomp", "landlock", "netns", "pyseccomp",
    # installed by `make setup`, so a CI run that lacks them is broken, not skippable
    "bin:gcc", "bin:runc", "bin:runsc", "bin:containerd", "bin:ctr", "bin:containerd-shim-runc-v2", "bin:bwrap", "bin:unshare", "bin:runuser", "mini-init", "keeper", "postgres",
    # the CI checkout has ../shared beside it
    "shared:reference/docker-default-seccomp.json",
})

# The folder beside the repository that holds the reference files.
SHARED = Path(__file__).resolve().parents[2] / "shared"


def shared_file(feature: str) -> Path:
    """The path of a ``shared:PATH`` feature; only a test that declares it may read it."""
    assert feature.startswith("shared:"), feature
    return SHARED / feature.removeprefix("shared:")


def label(feature: str) -> str:
    """The feature as a skip reason names it: ``shared:PATH`` is shown as ``../shared/PATH``."""
    if feature.startswith("shared:"):
        return "../shared/" + feature.removeprefix("shared:")
    return feature


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
    except Exception as e:  # noqa: BLE001 - whatever breaks the import is the fact  # pragma: no cover
        return False, f"import pyseccomp: {e}"
    return True, "importable"


def _binary(name: str) -> tuple[bool, str]:
    path = shutil.which(name)
    return path is not None, path or f"{name} not on PATH"


def _postgres() -> tuple[bool, str]:
    """A Debian PostgreSQL server (initdb, pg_ctl, postgres, pgbench), for the pgbench bench."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"))
    return bool(found), found[-1] if found else "no /usr/lib/postgresql/*/bin (apt-get install postgresql)"


def _mini_init() -> tuple[bool, str]:
    """The container's compiled init, built by `make setup` (`make init`)."""
    path = Path(__file__).resolve().parents[1] / "nucleus" / "init" / "nucleus-init"
    return path.is_file(), str(path) if path.is_file() else f"{path} not built (make init)"


def _keeper() -> tuple[bool, str]:
    """The supervisor's keeper, built by `make setup` (`make init`) beside the init."""
    path = Path(__file__).resolve().parents[1] / "nucleus" / "init" / "nucleus-keeper"
    return path.is_file(), str(path) if path.is_file() else f"{path} not built (make init)"


# TLC, the TLA+ model checker (Java): optional, not in EXPECTED (CI has no Java); where it is
# installed, the built-in checker's verdicts are compared with its own.
TLA2TOOLS = Path(os.environ.get("TLA2TOOLS") or "/opt/tla/tla2tools.jar")


def _tlc() -> tuple[bool, str]:
    if not TLA2TOOLS.is_file():
        return False, f"no {TLA2TOOLS} (set TLA2TOOLS to a tla2tools.jar)"
    if shutil.which("java") is None:
        return False, "no java on PATH"
    return True, str(TLA2TOOLS)


def _shared(feature: str) -> tuple[bool, str]:
    path = shared_file(feature)
    if path.is_file():
        return True, str(path)
    return False, "absent: a clone without the shared reference files"


_PROBES = {
    "root": _root,
    "userns": _userns,
    "seccomp": _seccomp,
    "landlock": _landlock,
    "netns": _netns,
    "pyseccomp": _pyseccomp,
    "tlc": _tlc,
    "mini-init": _mini_init,
    "keeper": _keeper,
    "postgres": _postgres,
}


@functools.cache
def probe(feature: str) -> tuple[bool, str]:
    if feature.startswith("bin:"):
        return _binary(feature[4:])
    if feature.startswith("shared:"):
        return _shared(feature)
    try:
        return _PROBES[feature]()
    except KeyError:
        return False, f"unknown feature {feature!r}"
