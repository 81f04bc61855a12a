"""Security policy files: seccomp profiles (OCI JSON), capability and Landlock policies (TOML),
and their sha256 pins.

Each parser takes the file's bytes and the path to name in messages, validates everything, and
returns a normalized value; any problem raises ``InvalidInput`` naming the file, the dotted field
path and the bad value, with a hint where the fix is known. Pure: the host facts a profile depends
on (architecture, kept capabilities, kernel version) are parameters; nothing here looks at the
host.

Seccomp (the format of runc, Docker and Podman)
    ``defaultAction``, ``defaultErrnoRet``, ``architectures`` or Docker's ``archMap``, ``flags``,
    ``listenerPath``/``listenerMetadata`` (accepted only empty), and ``syscalls`` entries of
    ``names`` (or the older ``name``), ``action``, ``errnoRet``, ``args``, ``comment`` and
    Docker's ``includes``/``excludes`` (``arches``, ``caps``, ``minKernel``), applied here for
    the host facts given.

    Actions: ALLOW, ERRNO, KILL (= KILL_THREAD), KILL_THREAD, KILL_PROCESS, TRAP and LOG.
    TRACE is refused (it needs a ptrace tracer, and ptrace is denied); NOTIFY is refused (nucleus
    runs no user-notification agent), and so are the flags and fields that only serve it.

    Arguments: several conditions on one argument index are ORed, conditions on different indexes
    are ANDed: ``[a0 == 1, a0 == 2, a1 == 5]`` means ``(a0 == 1 or a0 == 2) and a1 == 5`` and
    becomes the rules ``a0 == 1 and a1 == 5`` and ``a0 == 2 and a1 == 5``. When every repeated
    condition is on one index this is exactly runc's reading; where runc would also OR the
    conditions on the other indexes (a wider filter than the entry reads), nucleus keeps them
    ANDed.

    Conflicts are errors: two rules for one syscall with the same conditions and different
    actions, and an unconditional rule next to a rule with a different action for the same
    syscall (libseccomp lets the unconditional rule win, so the other would be dead).

    The result is a fresh OCI-shaped dict: ``defaultAction`` (KILL spelled KILL_THREAD),
    ``defaultErrnoRet`` (ERRNO only, EPERM when not given), ``architectures`` (the native one
    first, then those of the list or of ``archMap`` that run on this architecture),
    ``flags`` (only ``SECCOMP_FILTER_FLAG_LOG`` survives: it asks the loader to log denials), and
    ``syscalls`` rules of ``names``, ``action``, ``errnoRet`` (ERRNO only) and ``args`` (at most
    one condition per index), deduplicated, in the order of the file.
    ``nucleus.effects.seccomp.compile_profile`` compiles it.

Capabilities (TOML)
    Tables ``bounding``, ``permitted``, ``effective``, ``inheritable``, ``ambient``, each with
    ``keep = [names]`` (``"NET_BIND_SERVICE"``, ``"CAP_NET_BIND_SERVICE"``, any case). A missing
    table is derived: bounding = nothing (an empty file drops every capability), permitted =
    bounding, effective = permitted, inheritable = nothing, ambient = nothing. The kernel's
    rules are checked: permitted and inheritable within bounding, effective within permitted,
    ambient within permitted and inheritable.

Landlock (TOML)
    ``min_abi`` (1..7, default 1) and ``[[rules]]`` of an absolute ``path`` and an ``access``
    list of read, write, execute, create, remove, readdir, ioctl_dev and all (read does not imply
    execute). A path may appear in one rule only: two rules for one path are refused, so the
    rights of a path are read in one place.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nucleus.config import capabilities as _caps
from nucleus.config import landlock_default as _ll
from nucleus.config.modes import DANGEROUS_CAPABILITIES
from nucleus.errors import InvalidInput

MAX_POLICY_BYTES = 4 << 20

# --- sha256 pins ----------------------------------------------------------------------------------

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def sha256_of(data: bytes) -> str:
    """The lower-case hex sha256 of ``data`` (what ``sha256sum`` prints)."""
    import hashlib  # here, not at the top: it loads OpenSSL, and most runs pin nothing

    return hashlib.sha256(data).hexdigest()


def check_pin(path_label: str, data: bytes, expected_hex: str, flag: str) -> str:
    """Check the file's bytes against the pinned sha256 given with ``flag``; return the digest.

    The pin must be 64 hex digits (either case, surrounding blanks ignored). A mismatch raises
    InvalidInput printing both hashes.
    """
    pin = expected_hex.strip() if isinstance(expected_hex, str) else expected_hex
    if not isinstance(pin, str) or not _HEX64.fullmatch(pin):
        raise InvalidInput(
            f"{flag} {_show(expected_hex, 80)}: not a sha256 (64 hexadecimal characters)",
            hint=f"compute it with: sha256sum {path_label}",
        )
    actual = sha256_of(data)
    if actual != pin.lower():
        raise InvalidInput(
            f"{flag}: {path_label!r} has sha256 {actual}, expected {pin.lower()}",
            hint="the file is not the one that was pinned: review what changed, then pin the "
            f"new hash (sha256sum {path_label})",
        )
    return actual


# --- shared helpers -------------------------------------------------------------------------------


class _Object(dict):  # type: ignore[type-arg]
    """A JSON object that remembers the keys the file repeated (the last value wins)."""

    repeated: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object()
    repeated = []
    for key, value in pairs:
        if key in obj:
            repeated.append(key)
        obj[key] = value
    obj.repeated = tuple(repeated)
    return obj


def _show(value: object, limit: int = 60) -> str:
    """A value as the message quotes it: strings in quotes, the rest as JSON; escaped, so a
    message never carries a control character or a lone surrogate to the terminal."""
    try:
        if isinstance(value, str):
            text = repr(value)
        else:
            text = json.dumps(value, sort_keys=True, default=str)
    except (ValueError, TypeError, RecursionError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        # JSON objects are read as _Object; a plain dict comes from a TOML file.
        return "an object" if isinstance(value, _Object) else "a table"
    return type(value).__name__


def _fail(path: str, field: str, problem: str, hint: str | None = None) -> InvalidInput:
    where = f"{path}: {field}: " if field else f"{path}: "
    return InvalidInput(where + problem, hint=hint)


def _distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _shared_prefix(words: list[str]) -> str:
    if not words:
        return ""
    first, last = min(words), max(words)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


def _closest(word: str, known: Iterable[str]) -> str | None:
    """The known word the user most likely meant, or None. The prefix every known word shares
    (``SCMP_ACT_``) is set aside, then: the same letters in another case; the nearest word
    within one edit per three letters; a word that begins the other (three letters at least);
    a common beginning of four letters or more covering half the word."""
    if len(word) > 64:
        return None
    known = list(known)
    lowered = [k.lower() for k in known]
    shared = _shared_prefix(lowered) if len(set(lowered)) > 1 else ""
    low = word.lower()
    if shared and low.startswith(shared):
        low = low[len(shared) :]
    parts = [k[len(shared) :] for k in lowered]
    for candidate, part in zip(known, parts, strict=True):
        if part == low:
            return candidate
    best, best_d = None, max(1, len(low) // 3) + 1
    for candidate, part in zip(known, parts, strict=True):
        d = _distance(low, part)
        if d < best_d:
            best, best_d = candidate, d
    if best is not None:
        return best
    if len(low) >= 3:
        for candidate, part in zip(known, parts, strict=True):
            if part.startswith(low) or (low.startswith(part) and len(part) >= 3):
                return candidate
    for candidate, part in zip(known, parts, strict=True):
        common = len(_shared_prefix([low, part]))
        if common >= 4 and common * 2 >= len(low):
            return candidate
    return None


def _known_hint(word: object, known: Iterable[str], what: str) -> str:
    known = list(known)
    near = _closest(word, known) if isinstance(word, str) else None
    listing = f"{what}: {', '.join(known)}"
    return f"did you mean {near!r}? {listing}" if near else listing


def _check_keys(path: str, field: str, obj: dict, known: tuple[str, ...], what: str) -> None:
    repeated = getattr(obj, "repeated", ())
    if repeated:
        raise _fail(
            path, _join(field, repeated[0]), "key given twice", hint="keep one of the two"
        )
    for key in obj:
        if key not in known:
            raise _fail(
                path, _join(field, key), "unknown key", hint=_known_hint(key, known, what)
            )


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


def _join(field: str, key: str) -> str:
    """``field.key``; a key that is not a plain word is quoted: ``syscalls[0]['my key']``."""
    if not _PLAIN_KEY.fullmatch(key):
        return f"{field}[{_show(key)}]"
    return f"{field}.{key}" if field else key


def _text(data: object, path: str, kind: str) -> str:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"policy data must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_POLICY_BYTES:
        raise _fail(
            path,
            "",
            f"{len(data)} bytes is too large for a {kind} file (at most {MAX_POLICY_BYTES})",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _fail(
            path,
            "",
            f"not UTF-8 text: byte {data[e.start]:#04x} at offset {e.start}",
            hint=f"save the {kind} file as UTF-8",
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def _load_json(data: bytes, path: str) -> Any:
    text = _text(data, path, "JSON")

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    try:
        return json.loads(text, object_pairs_hook=_object_pairs, parse_constant=constant)
    except json.JSONDecodeError as e:
        raise _fail(
            path,
            "",
            f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
            hint="check the syntax near that position (a missing comma or quote, a trailing comma)",
        ) from None
    except ValueError as e:  # NaN/Infinity, or an integer too long to read
        raise _fail(path, "", f"not valid JSON: {e}") from None
    except RecursionError:
        raise _fail(path, "", "not valid JSON: nested too deeply") from None


def _load_toml(data: bytes, path: str) -> dict[str, Any]:
    import tomllib  # here, not at the top: only runs given a TOML policy pay for the parser

    text = _text(data, path, "TOML")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _fail(
            path, "", f"not valid TOML: {e}", hint="check the syntax near that position"
        ) from None
    except RecursionError:
        raise _fail(path, "", "not valid TOML: nested too deeply") from None
    except ValueError as e:  # an integer too long to read
        raise _fail(path, "", f"not valid TOML: {e}") from None


def _list(path: str, field: str, value: object, what: str, *, null_ok: bool = True) -> list:
    if value is None and null_ok:
        return []
    if not isinstance(value, list):
        raise _fail(path, field, f"expected {what}, got {_kind(value)} {_show(value)}")
    return value


def _string(path: str, field: str, value: object, what: str = "a string") -> str:
    if not isinstance(value, str):
        raise _fail(path, field, f"expected {what}, got {_kind(value)} {_show(value)}")
    return value


def _integer(path: str, field: str, value: object, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(path, field, f"{_show(value)} is not {what}")
    return value


# --- seccomp --------------------------------------------------------------------------------------

# Spelled as the file spells them -> the name nucleus compiles.
SECCOMP_ACTIONS: dict[str, str] = {
    "SCMP_ACT_ALLOW": "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO": "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL": "SCMP_ACT_KILL_THREAD",  # libseccomp's SCMP_ACT_KILL is KILL_THREAD
    "SCMP_ACT_KILL_THREAD": "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_KILL_PROCESS": "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_TRAP": "SCMP_ACT_TRAP",
    "SCMP_ACT_LOG": "SCMP_ACT_LOG",
}
REFUSED_ACTIONS: dict[str, tuple[str, str]] = {
    "SCMP_ACT_TRACE": (
        "it hands the syscall to a ptrace tracer, and nucleus runs none (ptrace is denied)",
        "deny with SCMP_ACT_ERRNO, or allow and log with SCMP_ACT_LOG",
    ),
    "SCMP_ACT_NOTIFY": (
        "nucleus runs no seccomp user-notification agent",
        "deny with SCMP_ACT_ERRNO, or allow and log with SCMP_ACT_LOG",
    ),
}
SECCOMP_OPS = (
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
)
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
SECCOMP_FLAG_LOG = "SECCOMP_FILTER_FLAG_LOG"
SECCOMP_FLAGS_ACCEPTED: dict[str, str] = {
    SECCOMP_FLAG_LOG: "kept: the filter is loaded with denials logged",
    # The filter is installed by the single-threaded setup process before exec, so every thread
    # of the workload inherits it; synchronizing other threads has nothing to do.
    "SECCOMP_FILTER_FLAG_TSYNC": "ignored: the setup process has a single thread",
}
SECCOMP_FLAGS_REFUSED: dict[str, str] = {
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": "it turns off the kernel's speculative store bypass "
    "mitigation for the workload",
    "SECCOMP_FILTER_FLAG_NEW_LISTENER": "nucleus runs no seccomp user-notification agent",
    "SECCOMP_FILTER_FLAG_TSYNC_ESRCH": "it serves only user notification, which nucleus does "
    "not run",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": "it serves only user notification, which nucleus "
    "does not run",
}

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

_TOP_KEYS = (
    "defaultAction",
    "defaultErrnoRet",
    "architectures",
    "archMap",
    "flags",
    "listenerPath",
    "listenerMetadata",
    "syscalls",
)
_SYSCALL_KEYS = ("names", "name", "action", "errnoRet", "args", "comment", "includes", "excludes")
_ARG_KEYS = ("index", "value", "valueTwo", "op")
_FILTER_KEYS = ("arches", "caps", "minKernel")
_ARCHMAP_KEYS = ("architecture", "subArchitectures")

_SYSCALL_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_KERNEL_VERSION = re.compile(r"(\d{1,6})\.(\d{1,6})")
_U64 = (1 << 64) - 1
MAX_ERRNO = 4095
EPERM = 1
MAX_RULES_PER_ENTRY = 256
ERRNO_HINT = "an errno number such as 1 (EPERM) or 38 (ENOSYS), at most 4095"


def _action(path: str, field: str, value: object) -> str:
    if isinstance(value, str) and value in SECCOMP_ACTIONS:
        return SECCOMP_ACTIONS[value]
    if isinstance(value, str) and value in REFUSED_ACTIONS:
        reason, hint = REFUSED_ACTIONS[value]
        raise _fail(path, field, f"action {value!r} is not supported: {reason}", hint=hint)
    if not isinstance(value, str):
        raise _fail(path, field, f"expected an action name, got {_kind(value)} {_show(value)}")
    raise _fail(
        path, field, f"unknown action {value!r}", hint=_known_hint(value, SECCOMP_ACTIONS, "actions")
    )


def _errno(
    path: str, field: str, obj: dict, key: str, action: str
) -> int | None:
    if key not in obj or obj[key] is None:
        return EPERM if action == "SCMP_ACT_ERRNO" else None
    if action != "SCMP_ACT_ERRNO":
        raise _fail(
            path,
            _join(field, key),
            f"{_show(obj[key])} given, but the action is {action}: an errno applies only to "
            "SCMP_ACT_ERRNO",
            hint=f"remove {key}, or make the action SCMP_ACT_ERRNO",
        )
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ERRNO:
        raise _fail(path, _join(field, key), f"{_show(value)} is not an errno", hint=ERRNO_HINT)
    return value


def _arch_name(path: str, field: str, value: object) -> str:
    if isinstance(value, str) and value in SECCOMP_ARCHES:
        return value
    raise _fail(
        path,
        field,
        f"unknown architecture {_show(value)}",
        hint=_known_hint(value, SECCOMP_ARCHES, "architectures"),
    )


def _architectures(path: str, profile: dict, host: str) -> list[str]:
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


def _flags(path: str, profile: dict) -> list[str]:
    kept: list[str] = []
    flags = _list(path, "flags", profile.get("flags"), "an array of SECCOMP_FILTER_FLAG_* names")
    for i, flag in enumerate(flags):
        field = f"flags[{i}]"
        if isinstance(flag, str) and flag in SECCOMP_FLAGS_REFUSED:
            raise _fail(
                path,
                field,
                f"flag {flag!r} is not supported: {SECCOMP_FLAGS_REFUSED[flag]}",
                hint="remove it",
            )
        if not (isinstance(flag, str) and flag in SECCOMP_FLAGS_ACCEPTED):
            known = [*SECCOMP_FLAGS_ACCEPTED, *SECCOMP_FLAGS_REFUSED]
            raise _fail(path, field, f"unknown flag {_show(flag)}",
                        hint=_known_hint(flag, known, "flags"))
        if flag == SECCOMP_FLAG_LOG:
            kept.append(flag)
    return sorted(set(kept))


def _listener(path: str, profile: dict) -> None:
    for key in ("listenerPath", "listenerMetadata"):
        if key not in profile or profile[key] is None:
            continue
        value = _string(path, key, profile[key])
        if value:
            raise _fail(
                path,
                key,
                f"{_show(value)}: seccomp user notification is not supported (nucleus runs no "
                "notification agent)",
                hint=f"remove {key} and any SCMP_ACT_NOTIFY rule",
            )


def _kernel_version(path: str, field: str, value: object) -> tuple[int, int]:
    m = _KERNEL_VERSION.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise _fail(path, field, f"{_show(value)} is not a kernel version",
                    hint="write it as MAJOR.MINOR, e.g. \"4.8\"")
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True)
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


def _names(path: str, field: str, entry: dict) -> list[str]:
    if "names" in entry and "name" in entry:
        raise _fail(path, f"{field}.name", "given together with names",
                    hint="list every syscall in names")
    if "name" in entry:
        raw = [entry["name"]]
        where = [f"{field}.name"]
    elif "names" in entry:
        raw = _list(path, f"{field}.names", entry["names"], "an array of syscall names",
                    null_ok=False)
        if not raw:
            raise _fail(path, f"{field}.names", "empty", hint="list at least one syscall")
        where = [f"{field}.names[{i}]" for i in range(len(raw))]
    else:
        raise _fail(path, f"{field}.names", "missing",
                    hint="list the syscalls the rule is for, e.g. \"names\": [\"read\"]")
    names = []
    for name, at in zip(raw, where, strict=True):
        if not isinstance(name, str) or not _SYSCALL_NAME.fullmatch(name) or len(name) > 64:
            raise _fail(path, at, f"{_show(name)} is not a syscall name",
                        hint="syscall names are lower-case, as in syscalls(2): \"openat\"")
        names.append(name)
    return list(dict.fromkeys(names))


Condition = tuple[int, str, int, int]  # (index, op, value, valueTwo)


def _condition(path: str, field: str, arg: object) -> Condition:
    if not isinstance(arg, dict):
        raise _fail(path, field, f"expected an object, got {_kind(arg)} {_show(arg)}")
    _check_keys(path, field, arg, _ARG_KEYS, "the keys of an argument condition are")
    if "index" not in arg:
        raise _fail(path, f"{field}.index", "missing", hint="the argument's position, 0..5")
    index = arg["index"]
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 5:
        raise _fail(path, f"{field}.index", f"{_show(index)} is not an argument index 0..5",
                    hint="a syscall has at most 6 arguments, numbered from 0")
    if "op" not in arg:
        raise _fail(path, f"{field}.op", "missing",
                    hint=_known_hint(None, SECCOMP_OPS, "comparisons"))
    op = arg["op"]
    if not (isinstance(op, str) and op in SECCOMP_OPS):
        raise _fail(path, f"{field}.op", f"unknown comparison {_show(op)}",
                    hint=_known_hint(op, SECCOMP_OPS, "comparisons"))
    values = []
    for key in ("value", "valueTwo"):
        v = arg.get(key)
        v = 0 if v is None else v
        values.append(
            _integer(path, f"{field}.{key}", v, 0, _U64, "an unsigned 64-bit integer")
        )
    value, value_two = values
    if op == "SCMP_CMP_MASKED_EQ":
        if value_two & ~value:
            raise _fail(
                path,
                f"{field}.valueTwo",
                f"{value_two:#x} has bits outside the mask {value:#x}, so the condition can "
                "never hold",
                hint="for SCMP_CMP_MASKED_EQ, value is the mask and valueTwo the expected "
                "masked result",
            )
    elif value_two:
        raise _fail(
            path,
            f"{field}.valueTwo",
            f"{value_two} given with {op}: valueTwo is used only by SCMP_CMP_MASKED_EQ",
            hint="remove valueTwo",
        )
    return index, op, value, value_two


def _by_index(conditions: Iterable[Condition]) -> dict[int, list[Condition]]:
    by_index: dict[int, list[Condition]] = {}
    for cond in conditions:
        group = by_index.setdefault(cond[0], [])
        if cond not in group:
            group.append(cond)
    return by_index


def count_rules(conditions: Iterable[Condition]) -> int:
    """How many rules ``expand_conditions`` makes of ``conditions``, without making them."""
    count = 1
    for group in _by_index(conditions).values():
        count *= len(group)
    return count


def expand_conditions(conditions: Iterable[Condition]) -> list[tuple[Condition, ...]]:
    """The rules that together mean ``conditions``: the conditions on one argument index are
    ORed, those on different indexes ANDed. Each rule has at most one condition per index, in
    index order; duplicates are dropped. No condition gives one rule with no condition."""
    by_index = _by_index(conditions)
    rules: list[tuple[Condition, ...]] = [()]
    for index in sorted(by_index):
        rules = [rule + (cond,) for rule in rules for cond in by_index[index]]
    return rules


_OP_TEXT = {
    "SCMP_CMP_NE": "!=",
    "SCMP_CMP_LT": "<",
    "SCMP_CMP_LE": "<=",
    "SCMP_CMP_EQ": "==",
    "SCMP_CMP_GE": ">=",
    "SCMP_CMP_GT": ">",
}


def _describe(conditions: tuple[Condition, ...]) -> str:
    if not conditions:
        return "no argument conditions"
    parts = []
    for index, op, value, value_two in conditions:
        if op == "SCMP_CMP_MASKED_EQ":
            parts.append(f"args[{index}] & {value:#x} == {value_two:#x}")
        else:
            parts.append(f"args[{index}] {_OP_TEXT[op]} {value}")
    return " and ".join(parts)


def _action_text(action: str, errno_ret: int | None) -> str:
    return f"{action} (errno {errno_ret})" if errno_ret is not None else action


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


def parse_seccomp_profile(
    data: bytes,
    path: str,
    *,
    arch: str = "x86_64",
    caps: Iterable[int | str] = frozenset(),
    kernel: tuple[int, int] | str | None = None,
) -> dict[str, Any]:
    """Validate an OCI/Docker seccomp profile and return it normalized (see the module's doc).

    Host facts, given by the caller: ``arch`` is the machine (``uname -m``); ``caps`` the
    capabilities the workload keeps (numbers or names), for Docker's ``includes.caps`` and
    ``excludes.caps``; ``kernel`` the running kernel as ``(major, minor)`` or a release string
    (``"6.1.0-18-amd64"``), for ``minKernel`` (None: assumed new enough for every minKernel).
    """
    host = _host_arch(arch)
    arch_names = HOST_ARCHES[host][2]
    kept_caps = _host_caps(caps)
    kernel_version = _host_kernel(kernel)

    profile = _load_json(data, path)
    if not isinstance(profile, dict):
        raise _fail(path, "", f"expected a JSON object (a seccomp profile), got {_kind(profile)}",
                    hint="a profile starts with {\"defaultAction\": ...}")
    _check_keys(path, "", profile, _TOP_KEYS, "the keys of a seccomp profile are")
    if "defaultAction" not in profile:
        raise _fail(path, "defaultAction", "missing",
                    hint="say what happens to a syscall no rule matches, e.g. "
                    "\"SCMP_ACT_ERRNO\" or \"SCMP_ACT_KILL_PROCESS\"")
    default = _action(path, "defaultAction", profile["defaultAction"])
    default_errno = _errno(path, "", profile, "defaultErrnoRet", default)
    architectures = _architectures(path, profile, host)
    flags = _flags(path, profile)
    _listener(path, profile)

    entries = _list(path, "syscalls", profile.get("syscalls"), "an array of rules")
    rules: list[dict[str, Any]] = []
    # (name, conditions) -> (entry index, action, errno): the first rule seen for it.
    seen: dict[tuple[str, tuple[Condition, ...]], tuple[int, str, int | None]] = {}
    for i, entry in enumerate(entries):
        field = f"syscalls[{i}]"
        if not isinstance(entry, dict):
            raise _fail(path, field, f"expected an object, got {_kind(entry)} {_show(entry)}")
        _check_keys(path, field, entry, _SYSCALL_KEYS, "the keys of a syscalls entry are")
        names = _names(path, field, entry)
        if "action" not in entry:
            raise _fail(path, f"{field}.action", "missing",
                        hint="e.g. \"SCMP_ACT_ALLOW\" or \"SCMP_ACT_ERRNO\"")
        action = _action(path, f"{field}.action", entry["action"])
        errno_ret = _errno(path, field, entry, "errnoRet", action)
        args = _list(path, f"{field}.args", entry.get("args"), "an array of conditions")
        conditions = [_condition(path, f"{field}.args[{j}]", a) for j, a in enumerate(args)]
        if "comment" in entry and entry["comment"] is not None:
            _string(path, f"{field}.comment", entry["comment"])
        includes = _filter(path, f"{field}.includes", entry.get("includes"))
        excludes = _filter(path, f"{field}.excludes", entry.get("excludes"))
        if not _applies(includes, excludes, arch_names, kept_caps, kernel_version):
            continue
        count = count_rules(conditions)
        if count > MAX_RULES_PER_ENTRY:
            raise _fail(
                path,
                f"{field}.args",
                f"the conditions expand to {count} rules (at most {MAX_RULES_PER_ENTRY})",
                hint="conditions on one index are ORed and multiply with those on the others: "
                "split the entry",
            )
        for conds in expand_conditions(conditions):
            fresh = []
            for name in names:
                key = (name, conds)
                if key in seen:
                    first, first_action, first_errno = seen[key]
                    if (first_action, first_errno) != (action, errno_ret):
                        raise _conflict(path, name, conds, seen[key], (i, action, errno_ret))
                    continue  # the same rule again
                seen[key] = (i, action, errno_ret)
                fresh.append(name)
            if fresh:
                rule: dict[str, Any] = {"names": fresh, "action": action}
                if errno_ret is not None:
                    rule["errnoRet"] = errno_ret
                if conds:
                    rule["args"] = [
                        {"index": c[0], "value": c[2], "valueTwo": c[3], "op": c[1]}
                        for c in conds
                    ]
                rules.append(rule)
    _check_shadowing(path, seen)

    out: dict[str, Any] = {"defaultAction": default}
    if default_errno is not None:
        out["defaultErrnoRet"] = default_errno
    out["architectures"] = architectures
    if flags:
        out["flags"] = flags
    out["syscalls"] = rules
    return out


def _conflict(
    path: str,
    name: str,
    conds: tuple[Condition, ...],
    first: tuple[int, str, int | None],
    second: tuple[int, str, int | None],
) -> InvalidInput:
    return _fail(
        path,
        f"syscalls[{first[0]}] and syscalls[{second[0]}]",
        f"conflicting actions for {name!r} with {_describe(conds)}: "
        f"{_action_text(first[1], first[2])} and {_action_text(second[1], second[2])}",
        hint="keep one of the two rules, or give them different argument conditions",
    )


def _check_shadowing(
    path: str, seen: dict[tuple[str, tuple[Condition, ...]], tuple[int, str, int | None]]
) -> None:
    unconditional = {name: where for (name, conds), where in seen.items() if not conds}
    for (name, conds), where in seen.items():
        if not conds or name not in unconditional:
            continue
        plain = unconditional[name]
        if plain[1:] != where[1:]:
            raise _fail(
                path,
                f"syscalls[{plain[0]}] and syscalls[{where[0]}]",
                f"{name!r} has an unconditional {_action_text(plain[1], plain[2])} rule in "
                f"syscalls[{plain[0]}], which would override the "
                f"{_action_text(where[1], where[2])} rule for {_describe(conds)} in "
                f"syscalls[{where[0]}]",
                hint="libseccomp lets an unconditional rule win over conditional ones: remove "
                f"{name!r} from one of the two entries",
            )


def logs_denied(profile: dict[str, Any]) -> bool:
    """Whether a normalized profile asks for denials to be logged (SECCOMP_FILTER_FLAG_LOG):
    pass it as ``load_program(..., log_denied=...)``."""
    return SECCOMP_FLAG_LOG in (profile.get("flags") or ())


# --- capabilities ---------------------------------------------------------------------------------

CAP_SETS = ("bounding", "permitted", "effective", "inheritable", "ambient")

# Refused in production: each one lets the workload leave its confinement or take over the
# host's resources (modules, raw I/O, mounts, tracing, BPF, any file's permissions, any uid).
# One list, kept with the service modes' rules.
DANGEROUS: frozenset[str] = DANGEROUS_CAPABILITIES

CAP_NAME_HINT = "names are those of capabilities(7), with or without CAP_: NET_BIND_SERVICE"


def _capability(path: str, field: str, value: object) -> int:
    if isinstance(value, str):
        try:
            return _caps.capability_number(value)
        except ValueError:
            pass
        key = value.strip().upper()
        near = _closest(key if key.startswith("CAP_") else "CAP_" + key, _caps.CAPABILITY_NAMES)
        hint = f"did you mean {near!r}? {CAP_NAME_HINT}" if near else CAP_NAME_HINT
        raise _fail(path, field, f"unknown capability {value!r}", hint=hint)
    raise _fail(path, field, f"expected a capability name, got {_kind(value)} {_show(value)}",
                hint=CAP_NAME_HINT)


def _names_of(numbers: Iterable[int]) -> list[str]:
    return [_caps.capability_name(n) for n in sorted(numbers)]


@dataclass(frozen=True)
class CapsPolicy:
    """The five capability sets, as capability numbers, after derivation and checks."""

    path: str
    bounding: frozenset[int]
    permitted: frozenset[int]
    effective: frozenset[int]
    inheritable: frozenset[int]
    ambient: frozenset[int]

    @property
    def keep(self) -> frozenset[int]:
        """The bounding set: every capability the workload can ever hold."""
        return self.bounding

    @property
    def simple(self) -> bool:
        """True when ``effects.caps.drop_capabilities(self.keep)`` applies the policy exactly
        (permitted = effective = bounding, nothing inheritable or ambient)."""
        return (
            self.permitted == self.effective == self.bounding
            and not self.inheritable
            and not self.ambient
        )

    def names(self, which: str) -> list[str]:
        """The names (``"CAP_NET_BIND_SERVICE"``) in one set, in number order."""
        if which not in CAP_SETS:
            raise ValueError(f"unknown capability set {which!r} (known: {', '.join(CAP_SETS)})")
        return _names_of(getattr(self, which))

    def mask(self, which: str) -> int:
        """One set as the 64-bit mask capset(2) and /proc/<pid>/status use."""
        self.names(which)  # validates ``which``
        return _caps.capability_mask(getattr(self, which))

    def dangerous(self) -> list[str]:
        """The DANGEROUS capabilities the policy keeps (in the bounding set), in number order."""
        return [name for name in self.names("bounding") if name in DANGEROUS]


def refuse_dangerous(policy: CapsPolicy, mode: str = "production") -> None:
    """InvalidInput naming the first DANGEROUS capability the policy keeps."""
    kept = policy.dangerous()
    if kept:
        raise InvalidInput(
            f"{policy.path}: bounding.keep: {kept[0]!r} is refused in {mode} mode "
            f"(dangerous capabilities kept: {', '.join(kept)})",
            hint=f"remove them from the policy, or run in another service mode than {mode}",
        )


def parse_caps_policy(data: bytes, path: str) -> CapsPolicy:
    """Validate a capability policy (TOML) and derive the missing sets (see the module's doc)."""
    doc = _load_toml(data, path)
    _check_keys(path, "", doc, CAP_SETS, "the tables of a capability policy are")
    given: dict[str, frozenset[int]] = {}
    for name in CAP_SETS:
        if name not in doc:
            continue
        table = doc[name]
        if not isinstance(table, dict):
            raise _fail(path, name, f"expected a table, got {_kind(table)} {_show(table)}",
                        hint=f"write it as [{name}] with keep = [...]")
        _check_keys(path, name, table, ("keep",), f"the keys of [{name}] are")
        if "keep" not in table:
            raise _fail(path, f"{name}.keep", "missing",
                        hint="list the capabilities to keep; keep = [] keeps none")
        keep = _list(path, f"{name}.keep", table["keep"], "an array of capability names",
                     null_ok=False)
        given[name] = frozenset(
            _capability(path, f"{name}.keep[{i}]", c) for i, c in enumerate(keep)
        )
    bounding = given.get("bounding", frozenset())
    permitted = given.get("permitted", bounding)
    effective = given.get("effective", permitted)
    inheritable = given.get("inheritable", frozenset())
    ambient = given.get("ambient", frozenset())
    derived = ("bounding" if "bounding" in given else "bounding (none: the table is absent)")
    checks = (
        ("permitted", permitted, bounding, derived,
         "add it to [bounding] keep, or remove it from [permitted]"),
        ("effective", effective, permitted, "permitted",
         "add it to [permitted] keep, or remove it from [effective]"),
        ("inheritable", inheritable, bounding, derived,
         "add it to [bounding] keep, or remove it from [inheritable]"),
        ("ambient", ambient, permitted, "permitted",
         "the kernel keeps an ambient capability only when it is permitted and inheritable"),
        ("ambient", ambient, inheritable, "inheritable",
         "the kernel keeps an ambient capability only when it is permitted and inheritable"),
    )
    for name, subset, superset, super_name, hint in checks:
        extra = subset - superset
        if extra:
            raise _fail(
                path,
                f"{name}.keep",
                f"{_names_of(extra)[0]!r} is not in {super_name}",
                hint=hint,
            )
    return CapsPolicy(path, bounding, permitted, effective, inheritable, ambient)


# --- Landlock ---------------------------------------------------------------------------------------

LANDLOCK_ACCESS = (
    "read", "write", "execute", "create", "remove", "readdir", "ioctl_dev", "all",
)  # fmt: skip
MIN_ABI_RANGE = (1, _ll.LATEST_ABI)
_LANDLOCK_TOP_KEYS = ("min_abi", "rules")
_LANDLOCK_RULE_KEYS = ("path", "access")
MAX_PATH = 4095


@dataclass(frozen=True)
class LandlockRule:
    path: str  # absolute, normalized
    access: frozenset[str]  # group names of LANDLOCK_ACCESS
    mask: int  # the LANDLOCK_ACCESS_FS_* bits (latest ABI; the effect masks to the kernel's)


@dataclass(frozen=True)
class LandlockPolicy:
    path: str
    min_abi: int
    rules: tuple[LandlockRule, ...]

    def restrict_rules(self) -> list[tuple[str, frozenset[str]]]:
        """The rules as ``nucleus.effects.landlock.restrict`` takes them."""
        return [(rule.path, rule.access) for rule in self.rules]


def _landlock_path(path: str, field: str, value: object) -> str:
    text = _string(path, field, value, "an absolute path")
    if not text.startswith("/"):
        raise _fail(path, field, f"{text!r} is not an absolute path",
                    hint="write the full path from /, e.g. \"/etc/myservice\"")
    if "\0" in text:
        raise _fail(path, field, f"{_show(text)} contains a NUL character")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _fail(path, field, f"{text!r} contains '..'",
                    hint="write the path without '..' components")
    normal = "/" + "/".join(parts)
    if len(normal) > MAX_PATH:
        raise _fail(path, field, f"{_show(text)} is longer than {MAX_PATH} bytes")
    return normal


def parse_landlock_policy(data: bytes, path: str) -> LandlockPolicy:
    """Validate a Landlock policy (TOML; see the module's doc)."""
    doc = _load_toml(data, path)
    _check_keys(path, "", doc, _LANDLOCK_TOP_KEYS, "the keys of a Landlock policy are")
    low, high = MIN_ABI_RANGE
    min_abi = 1
    if "min_abi" in doc:
        value = doc["min_abi"]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _fail(
                path,
                "min_abi",
                f"{_show(value)} is not a Landlock ABI version {low}..{high}",
                hint="ABI 1 came with Linux 5.13, 2 with 5.19, 3 with 6.2 (truncate), 5 with "
                "6.10 (ioctl on devices)",
            )
        min_abi = value
    raw_rules = doc.get("rules", [])
    if not isinstance(raw_rules, list):
        raise _fail(
            path,
            "rules",
            f"expected an array of [[rules]] tables, got {_kind(raw_rules)} {_show(raw_rules)}",
            hint="write each rule under [[rules]], with two brackets",
        )
    rules: list[LandlockRule] = []
    where: dict[str, int] = {}
    for i, raw in enumerate(raw_rules):
        field = f"rules[{i}]"
        if not isinstance(raw, dict):
            raise _fail(path, field, f"expected a table, got {_kind(raw)} {_show(raw)}",
                        hint="write each rule as [[rules]] with path = ... and access = [...]")
        _check_keys(path, field, raw, _LANDLOCK_RULE_KEYS, "the keys of a rule are")
        for key in _LANDLOCK_RULE_KEYS:
            if key not in raw:
                raise _fail(path, f"{field}.{key}", "missing",
                            hint="each rule needs path = \"/dir\" and access = [\"read\"]")
        rule_path = _landlock_path(path, f"{field}.path", raw["path"])
        if rule_path in where:
            raise _fail(
                path,
                f"{field}.path",
                f"{rule_path!r} is already given in rules[{where[rule_path]}]",
                hint="merge the two access lists into one rule",
            )
        where[rule_path] = i
        access = _list(path, f"{field}.access", raw["access"], "an array of access rights",
                       null_ok=False)
        if not access:
            raise _fail(path, f"{field}.access", "empty: the rule would grant nothing",
                        hint=f"list rights among {', '.join(LANDLOCK_ACCESS)}, or remove the rule")
        groups = []
        for j, right in enumerate(access):
            if not (isinstance(right, str) and right in LANDLOCK_ACCESS):
                raise _fail(path, f"{field}.access[{j}]", f"unknown access right {_show(right)}",
                            hint=_known_hint(right, LANDLOCK_ACCESS, "access rights"))
            groups.append(right)
        chosen = frozenset(groups)
        rules.append(LandlockRule(rule_path, chosen, _ll.access_mask(sorted(chosen))))
    return LandlockPolicy(path, min_abi, tuple(rules))
