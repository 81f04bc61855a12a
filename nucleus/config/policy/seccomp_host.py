"""The parts of a seccomp profile that depend on the host, applied for the host facts the
caller gives (nothing here looks at the host): the filter's architectures, from
``architectures`` or Docker's ``archMap`` (the native one first, then those a process on this
machine can use), and Docker's ``includes``/``excludes`` of a ``syscalls`` entry (``arches``,
``caps``, ``minKernel``): the entry applies when every include holds and no exclude does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from nucleus.config import capabilities as _caps
from nucleus.config.policy.caps_policy import _capability
from nucleus.config.policy.common import (
    _check_keys,
    _fail,
    _kind,
    _known_hint,
    _list,
    _show,
)
from nucleus.frozen import frozen

SECCOMP_ARCHES = (
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_SH",
    "SCMP_ARCH_SHEB",
)


# A machine (uname -m) -> its native SCMP architecture, the SCMP architectures whose syscalls a
# process on it can make, and the names Docker's includes/excludes give it (Go's GOARCH).
HOST_ARCHES: dict[str, tuple[str, tuple[str, ...], frozenset[str]]] = {
    "x86_64": (
        "SCMP_ARCH_X86_64",
        ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
        frozenset({"amd64", "x86_64"}),
    ),
    "aarch64": (
        "SCMP_ARCH_AARCH64",
        ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
        frozenset({"arm64", "aarch64"}),
    ),
    "riscv64": ("SCMP_ARCH_RISCV64", ("SCMP_ARCH_RISCV64",), frozenset({"riscv64"})),
    "s390x": ("SCMP_ARCH_S390X", ("SCMP_ARCH_S390X", "SCMP_ARCH_S390"), frozenset({"s390x"})),
    "ppc64le": ("SCMP_ARCH_PPC64LE", ("SCMP_ARCH_PPC64LE",), frozenset({"ppc64le"})),
}
# The architecture names Docker profiles use in includes/excludes.
DOCKER_ARCHES = (
    "386",
    "amd64",
    "arm",
    "arm64",
    "loong64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "mips64n32",
    "mips64len32",
    "ppc",
    "ppc64",
    "ppc64le",
    "riscv64",
    "s390",
    "s390x",
    "x86",
    "x86_64",
    "x32",
    "aarch64",
)
_FILTER_KEYS = ("arches", "caps", "minKernel")
_ARCHMAP_KEYS = ("architecture", "subArchitectures")
_KERNEL_VERSION = re.compile(r"(\d{1,6})\.(\d{1,6})")


def _arch_name(path: str, field: str, value: object) -> str:
    if isinstance(value, str) and value in SECCOMP_ARCHES:
        return value
    raise _fail(
        path,
        field,
        f"unknown architecture {_show(value)}",
        hint=_known_hint(value, SECCOMP_ARCHES, "architectures"),
    )


def _architectures(path: str, profile: dict[str, object], host: str) -> list[str]:
    native, compatible, _ = HOST_ARCHES[host]
    listed = [
        _arch_name(path, f"architectures[{i}]", a)
        for i, a in enumerate(_list(path, "architectures", profile.get("architectures"),
                                    "an array of SCMP_ARCH_* names"))
    ]
    arch_map = _list(path, "archMap", profile.get("archMap"), "an array of objects")
    mapped: list[str] = []
    for i, entry in enumerate(arch_map):
        field = f"archMap[{i}]"
        if not isinstance(entry, dict):
            raise _fail(path, field, f"expected an object, got {_kind(entry)} {_show(entry)}")
        _check_keys(path, field, entry, _ARCHMAP_KEYS, "the keys of an archMap entry are")
        if "architecture" not in entry:
            raise _fail(path, f"{field}.architecture", "missing",
                        hint="name the main architecture, e.g. \"SCMP_ARCH_X86_64\"")
        main = _arch_name(path, f"{field}.architecture", entry["architecture"])
        subs = [
            _arch_name(path, f"{field}.subArchitectures[{j}]", s)
            for j, s in enumerate(
                _list(path, f"{field}.subArchitectures", entry.get("subArchitectures"),
                      "an array of SCMP_ARCH_* names")
            )
        ]
        if main == native:  # entries for other machines are for other hosts
            mapped += [main, *subs]
    if listed and arch_map:
        raise _fail(
            path,
            "archMap",
            "given together with architectures",
            hint="use either architectures or archMap (as Docker requires)",
        )
    # The native architecture is always in the filter; other listed ones are kept when a
    # process on this machine can use them (x86_64: i386 via int 0x80, x32); the rest could
    # never match and are left out.
    chosen = [native] + [a for a in listed + mapped if a in compatible]
    return list(dict.fromkeys(chosen))


def _kernel_version(path: str, field: str, value: object) -> tuple[int, int]:
    m = _KERNEL_VERSION.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise _fail(path, field, f"{_show(value)} is not a kernel version",
                    hint="write it as MAJOR.MINOR, e.g. \"4.8\"")
    return int(m.group(1)), int(m.group(2))


@frozen
class _Filter:
    arches: frozenset[str]
    caps: frozenset[int]
    min_kernel: tuple[int, int] | None


def _filter(path: str, field: str, value: object) -> _Filter | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fail(path, field, f"expected an object, got {_kind(value)} {_show(value)}")
    _check_keys(path, field, value, _FILTER_KEYS, f"the keys of {field.rsplit('.', 1)[-1]} are")
    arches = []
    for i, a in enumerate(_list(path, f"{field}.arches", value.get("arches"), "an array")):
        if not (isinstance(a, str) and a in DOCKER_ARCHES):
            raise _fail(path, f"{field}.arches[{i}]", f"unknown architecture {_show(a)}",
                        hint=_known_hint(a, DOCKER_ARCHES, "Docker's architecture names"))
        arches.append(a)
    caps = []
    for i, c in enumerate(_list(path, f"{field}.caps", value.get("caps"), "an array")):
        caps.append(_capability(path, f"{field}.caps[{i}]", c))
    min_kernel = None
    if value.get("minKernel") is not None:
        min_kernel = _kernel_version(path, f"{field}.minKernel", value["minKernel"])
    return _Filter(frozenset(arches), frozenset(caps), min_kernel)


def _applies(
    includes: _Filter | None,
    excludes: _Filter | None,
    arch_names: frozenset[str],
    caps: frozenset[int],
    kernel: tuple[int, int] | None,
) -> bool:
    """Docker's reading: every include must hold, and no exclude may."""
    if includes is not None:
        if includes.arches and not includes.arches & arch_names:
            return False
        if not includes.caps <= caps:
            return False
        if includes.min_kernel is not None and kernel is not None and kernel < includes.min_kernel:
            return False
    if excludes is not None:
        if excludes.arches & arch_names:
            return False
        if excludes.caps & caps:
            return False
        if excludes.min_kernel is not None and (kernel is None or kernel >= excludes.min_kernel):
            return False
    return True


def _host_arch(arch: str) -> str:
    if arch not in HOST_ARCHES:
        raise ValueError(f"unsupported host architecture {arch!r} (known: {sorted(HOST_ARCHES)})")
    return arch


def _host_caps(caps: Iterable[int | str]) -> frozenset[int]:
    out = set()
    for c in caps:
        out.add(c if isinstance(c, int) else _caps.capability_number(c))
    return frozenset(out)


def _host_kernel(kernel: tuple[int, int] | str | None) -> tuple[int, int] | None:
    if kernel is None:
        return None
    if isinstance(kernel, str):
        m = re.match(r"(\d+)\.(\d+)", kernel)
        if m is None:
            raise ValueError(f"not a kernel release: {kernel!r}")
        return int(m.group(1)), int(m.group(2))
    return int(kernel[0]), int(kernel[1])
