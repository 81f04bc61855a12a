"""`nucleus seccomp generate`: a minimal OCI seccomp profile from syscall traces.

A trace is NDJSON as ``nucleus run --seccomp-mode trace --seccomp-log FILE`` writes it
(nucleus.effects.seccomp_tracer): one object per syscall event, and a final summary line::

    {"syscall": "openat", "nr": 257, "pid": 4242, "arch": "x86_64"}
    {"summary": {"events": 1234, "syscalls": 41, "exit_status": 0}}

The profile allows exactly the names seen, in every trace given, with the two calls of the
container's init that only timing makes (``INIT_TIMED_CALLS``: rt_sigtimedwait when the
workload outlives the init's first look, kill when a signal comes to forward; the init runs under
the same filter), and kills the process on anything else::

    {"architectures": ["SCMP_ARCH_X86_64"], "defaultAction": "SCMP_ACT_KILL_PROCESS",
     "syscalls": [{"action": "SCMP_ACT_ALLOW", "names": ["close", "execve", ...]}]}

KILL_PROCESS rather than ERRNO(EPERM) as the default: a call the trace never saw is then a loud,
unmistakable SIGSYS (exit 159) at the place it happens, not an EPERM a program may swallow or
turn into a misleading message; it is also the reference's default.

One architecture per profile: the machine the trace was recorded on, as its events name it
(``"arch"``, ``uname -m``: x86_64 or aarch64; trace mode kills any other ABI, so a trace never
holds two). The caller may name it instead (``generate(..., arch=...)``); an event naming another
one is refused. This module does not probe the machine.

Pure: the caller reads the files; :func:`generate` takes their text (or lines) and the names to
use in messages, and :func:`dump` renders the profile byte-for-byte the same for the same
input. Every error is an InvalidInput naming the trace and the line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

from nucleus.config.policy.seccomp_profile import INIT_TIMED_CALLS
from nucleus.errors import InvalidInput

DEFAULT_ACTION = "SCMP_ACT_KILL_PROCESS"
ALLOW = "SCMP_ACT_ALLOW"
# The machines trace mode runs on (a trace's "arch", uname -m) and the architecture a profile for
# each names: the pairs of nucleus.effects.abi's tables (a test checks), repeated here because
# this module is pure.
ARCHITECTURES = {"aarch64": "SCMP_ARCH_AARCH64", "x86_64": "SCMP_ARCH_X86_64"}
DEFAULT_ARCH = "x86_64"  # for traces none of whose events names an architecture
NAME_RE = re.compile(r"[a-z_][a-z0-9_]*\Z")
FORMAT_HINT = (
    "each line of a trace is one JSON object as `nucleus run --seccomp-mode trace` writes it, "
    'e.g. {"syscall": "read", "nr": 0, "pid": 1, "arch": "x86_64"}'
)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _lines(trace: str | bytes | Iterable[str | bytes]) -> Iterable[str | bytes]:
    if isinstance(trace, str):
        return trace.split("\n")
    if isinstance(trace, bytes):
        return trace.split(b"\n")
    return trace


_SUPPORTED_HINT = "nucleus traces and generates profiles for " + " and ".join(ARCHITECTURES) + " only"


class _Arch:
    """The architecture of the profile being generated: given by the caller, or the first
    event's that names one (None until then)."""

    def __init__(self, machine: str | None) -> None:
        self.machine = machine
        self.given = machine is not None

    def check(self, obj: dict[str, object], where: str) -> None:
        if "arch" not in obj:
            return
        arch = obj["arch"]
        if not isinstance(arch, str) or arch not in ARCHITECTURES:
            raise InvalidInput(f"{where}: field 'arch': {arch!r} is not supported",
                               hint=_SUPPORTED_HINT)
        if self.machine is None:
            self.machine = arch
        elif arch != self.machine:
            why = "as asked" if self.given else "the architecture of the events before it"
            raise InvalidInput(
                f"{where}: field 'arch': {arch!r} is not supported",
                hint=f"the profile is for {self.machine}, {why}; a profile is for one "
                "architecture: generate one per architecture",
            )


def _event(line: str | bytes, where: str, arch: _Arch) -> str | None:
    """The syscall name of one trace line; None for a blank or summary line."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as e:
            message = f"{where}: not UTF-8 text (byte {e.start + 1})"
            raise InvalidInput(message, hint=FORMAT_HINT) from e
    text = line.strip()
    if not text:
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        message = f"{where}: not valid JSON: {e.msg} (column {e.colno})"
        raise InvalidInput(message, hint=FORMAT_HINT) from e
    if not isinstance(obj, dict):
        raise InvalidInput(f"{where}: expected a JSON object, got {_kind(obj)}", hint=FORMAT_HINT)
    if "syscall" not in obj:
        if "summary" in obj:
            if not isinstance(obj["summary"], dict):
                raise InvalidInput(
                    f"{where}: field 'summary': expected an object, got {_kind(obj['summary'])}"
                )
            return None
        raise InvalidInput(
            f"{where}: expected a syscall event (a 'syscall' field) or a summary line, "
            f"got the fields {sorted(obj)!r}",
            hint=FORMAT_HINT,
        )
    arch.check(obj, where)
    nr = obj.get("nr")
    if "nr" in obj and (not isinstance(nr, int) or isinstance(nr, bool) or nr < 0):
        raise InvalidInput(f"{where}: field 'nr': expected a syscall number, got {nr!r}")
    name = obj["syscall"]
    if name is None and isinstance(nr, int):
        raise InvalidInput(
            f"{where}: syscall number {nr} has no name, and a profile can allow syscalls only "
            "by name",
            hint="the traced program made a syscall newer than nucleus's table; "
            "add its name to the profile by hand",
        )
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidInput(f"{where}: field 'syscall': {name!r} is not a syscall name")
    return name


def generate(
    traces: Iterable[str | bytes | Iterable[str | bytes]],
    sources: Sequence[str] | None = None,
    *,
    arch: str | None = None,
) -> dict[str, object]:
    """The minimal profile allowing every syscall named in ``traces``.

    Each trace is its whole text or an iterable of its lines (a file object will do);
    ``sources[i]`` names trace i in messages (default ``<trace N>``). Blank lines and summary
    lines are skipped. ``arch`` is the machine the profile is for (a key of ARCHITECTURES); by
    default the one the events name, DEFAULT_ARCH when none does. Raises InvalidInput for a
    malformed line (``SOURCE:LINE: ...``), an event of another architecture, a trace without a
    single syscall event, or no trace at all.
    """
    if arch is not None and arch not in ARCHITECTURES:
        raise InvalidInput(f"architecture {arch!r} is not supported", hint=_SUPPORTED_HINT)
    profile_arch = _Arch(arch)
    names: set[str] = set()
    count = 0
    for i, trace in enumerate(traces):
        source = sources[i] if sources is not None and i < len(sources) else f"<trace {i + 1}>"
        seen = 0
        for lineno, line in enumerate(_lines(trace), start=1):
            name = _event(line, f"{source}:{lineno}", profile_arch)
            if name is not None:
                names.add(name)
                seen += 1
        if not seen:
            raise InvalidInput(
                f"{source}: no syscall events",
                hint="record one with nucleus run --seccomp-mode trace --seccomp-log FILE",
            )
        count += 1
    if not count:
        raise InvalidInput("no trace given", hint="name one or more NDJSON trace files")
    return {
        "defaultAction": DEFAULT_ACTION,
        "architectures": [ARCHITECTURES[profile_arch.machine or DEFAULT_ARCH]],
        "syscalls": [{"names": sorted(names.union(INIT_TIMED_CALLS)), "action": ALLOW}],
    }


def summary(trace: str | bytes | Iterable[str | bytes]) -> dict[str, object] | None:
    """The summary object of a trace's last non-blank line, or None when the trace has none:
    then the recording was cut short (the supervisor or tracer died) and the trace may miss
    syscalls. Lines are not validated here; :func:`generate` does that."""
    last: str | bytes = ""
    for line in _lines(trace):
        if line.strip():
            last = line
    try:
        obj = json.loads(last)
    except (ValueError, TypeError):
        return None
    found = obj.get("summary") if isinstance(obj, dict) else None
    return found if isinstance(found, dict) else None


def dump(profile: dict[str, object]) -> str:
    """The profile as the file to write: sorted keys, two-space indent, one name a line, and a
    trailing newline, so equal profiles are equal bytes and a review diff shows one line per
    syscall."""
    return json.dumps(profile, indent=2, sort_keys=True, ensure_ascii=True) + "\n"
