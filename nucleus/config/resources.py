"""Resource limits: what a user asked for with --memory, --cpus, --pids, --io-limit and friends.

Pure: it parses and validates text and numbers, and never probes the host (whether a controller
exists, how many CPUs there are or which block devices are present is checked against the
probe's facts when the run is planned: nucleus.plan.cgroups). What is refused here is what no
host could take: every value that passes fits the type the kernel keeps it in (a CFS quota of
at most 2^44-1 µs, pids.max at most PID_MAX_LIMIT, sizes at most 2^63-1 bytes, I/O operations
per second in 32 bits). Every error names the flag (or the field given in ``labels``), the bad
value, and a hint where the fix is known, e.g.::

    error: --memory '12Q': not a size
    hint: use a number with an optional K, M, G or T suffix, e.g. 512M

Sizes are 1024-based: 1K = 1024 bytes, 1M = 1024K, and so on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from nucleus.errors import InvalidInput
from nucleus.frozen import frozen

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

CPU_PERIOD = 100_000  # microseconds: cpu.max "<quota> 100000", cpu.cfs_period_us
MIN_CPU_QUOTA = 1_000  # the kernel refuses a CFS quota below 1 ms
MIN_MEMORY = 6 * MIB  # below this most programs are killed while they start
PID_MAX_LIMIT = 4 * 1024 * 1024  # the kernel's PID_MAX_LIMIT on 64-bit
MAX_SIZE = (1 << 63) - 1
# The kernel's largest CFS quota: max_cfs_runtime, (1 << 44) - 1 µs (kernel/sched/core.c); a
# larger cpu.max or cpu.cfs_quota_us is EINVAL.
MAX_CPU_QUOTA = (1 << 44) - 1
MAX_CPUS = MAX_CPU_QUOTA // CPU_PERIOD
# blk-throttle keeps I/O operations per second in 32 bits: v1 truncates a larger value, v2
# clamps it.
MAX_IOPS = (1 << 32) - 1
# fs.nr_open's ceiling (INT_MAX rounded down to a multiple of 64): no larger NOFILE is possible.
MAX_NOFILE = 2_147_483_584
# Longer numbers are refused (or clamped before the range checks) without being converted:
# Python refuses to convert integers of more than 4300 digits, and no limit needs 25.
MAX_DIGITS = 25
CPU_WEIGHT_MIN, CPU_WEIGHT_MAX = 1, 10_000

DEFAULT_PIDS = 512
DEFAULT_NOFILE = 1024
DEFAULT_MEMLOCK = 64 * KIB
DEFAULT_CGROUP_PARENT = "nucleus"
MEMORY_HIGH_PERCENT = 90

# The cgroup of the machine's supervisor: never a parent of ours, at any depth.
RESERVED_CGROUP = "process_api"

SIZE_HINT = "use a number with an optional K, M, G or T suffix, e.g. 512M"
PARENT_HINT = "give a path below the hierarchy root, such as nucleus or nucleus/agents"
IO_HINT = 'use "MAJOR:MINOR key=value ...", e.g. --io-limit "8:0 rbps=10M wiops=100"'
IO_KEYS = ("riops", "wiops", "rbps", "wbps")

_SIZE_RE = re.compile(r"^(\d+)(?:\.(\d+))?\s*([kmgt]?)(?:i?b)?$", re.IGNORECASE)
_CPUS_RE = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?$", re.IGNORECASE)
_UNITS = {"": 1, "k": KIB, "m": MIB, "g": GIB, "t": 1024 * GIB}
_DEVICE_RE = re.compile(r"^(\d+):(\d+)$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

FLAGS = {
    "memory": "--memory",
    "memory_high": "--memory-high",
    "swap": "--swap",
    "cpus": "--cpus",
    "cpu_weight": "--cpu-weight",
    "pids": "--pids",
    "io": "--io-limit",
    "memlock": "--memlock",
    "cgroup_parent": "--cgroup-parent",
    "nofile": "--nofile",
}


class IoLimit(NamedTuple):
    """Throttling for one block device; None leaves that direction unlimited."""

    major: int
    minor: int
    riops: int | None = None
    wiops: int | None = None
    rbps: int | None = None
    wbps: int | None = None

    @property
    def device(self) -> str:
        return f"{self.major}:{self.minor}"


@frozen
class Limits:
    """The limits of one container. Sizes in bytes; None means unlimited.

    - ``memory_high`` defaults to 90% of ``memory``: the kernel reclaims and throttles there,
      before the hard limit kills anything.
    - ``swap`` is swap allowed on top of ``memory``; None disables swap when ``memory`` is set.
    - ``cpus`` becomes a CFS quota per 100 ms period; ``cpu_weight`` (1..10000, cgroup v2's
      scale) becomes cpu.shares on cgroup v1.
    - ``pids`` is also the NPROC rlimit; ``nofile`` and ``memlock`` are rlimits only.
    - ``cgroup_parent`` is relative to each hierarchy's root, without leading or trailing '/'.
    """

    memory: int | None = None
    memory_high: int | None = None
    swap: int | None = None
    cpus: float | None = None
    cpu_weight: int | None = None
    pids: int = DEFAULT_PIDS
    io: tuple[IoLimit, ...] = ()
    memlock: int = DEFAULT_MEMLOCK
    cgroup_parent: str = DEFAULT_CGROUP_PARENT
    nofile: int = DEFAULT_NOFILE

    def __post_init__(self) -> None:
        if self.memory is not None and self.memory_high is None:
            object.__setattr__(self, "memory_high", self.memory * MEMORY_HIGH_PERCENT // 100)

    @property
    def cpu_period(self) -> int:
        return CPU_PERIOD

    @property
    def cpu_quota(self) -> int | None:
        """Microseconds of CPU time per period, or None for no quota."""
        if self.cpus is None:
            return None
        return max(MIN_CPU_QUOTA, round(self.cpus * CPU_PERIOD))

    @property
    def cpu_shares(self) -> int | None:
        """cgroup v1 cpu.shares for ``cpu_weight``, mapped as runc and crun do."""
        if self.cpu_weight is None:
            return None
        return 2 + ((self.cpu_weight - 1) * 262142) // 9999

    @property
    def swap_max(self) -> int | None:
        """Swap allowed beyond ``memory`` (0: none), or None when memory is unlimited."""
        if self.memory is None:
            return None
        return self.swap if self.swap is not None else 0

    @property
    def memsw(self) -> int | None:
        """cgroup v1 memory.memsw.limit_in_bytes: memory plus swap."""
        if self.memory is None:
            return None
        return self.memory + (self.swap_max or 0)

    @property
    def nproc(self) -> int:
        return self.pids


# --- parsers ------------------------------------------------------------------------------------


def show(value: object) -> str:
    """A value as an error message quotes it: '512M', '1e308', '-1'; a long one shortened
    ('99999999…99999999'), and an integer too long for Python to convert to text described."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 12_000:
        return f"'<an integer of {int(value.bit_length() * 0.30103)} digits or more>'"
    text = str(value)
    return repr(text if len(text) <= 64 else f"{text[:40]}…{text[-12:]}")


def parse_size(text: str | int, flag: str) -> int:
    """Bytes from "512M", "1G", "1.5g", "100k" or "4096" (1024-based); InvalidInput otherwise."""
    too_large = InvalidInput(f"{flag} {show(text)}: too large", hint="at most 8388607T (2^63-1 bytes)")
    if isinstance(text, bool):
        raise InvalidInput(f"{flag} {text!r}: not a size", hint=SIZE_HINT)
    if isinstance(text, int):
        if text < 0:
            raise InvalidInput(f"{flag} {show(text)}: not a size", hint=SIZE_HINT)
        value = text
    else:
        raw = str(text)
        m = _SIZE_RE.fullmatch(raw.strip())
        if m is None:
            raise InvalidInput(f"{flag} {show(raw)}: not a size", hint=SIZE_HINT)
        whole, frac, unit = m.group(1).lstrip("0") or "0", m.group(2) or "", m.group(3).lower()
        if frac and not unit:
            raise InvalidInput(
                f"{flag} {show(raw)}: not a whole number of bytes",
                hint="give whole bytes, or a suffix such as 1.5K",
            )
        if len(whole) > MAX_DIGITS:
            raise too_large
        frac = frac[:MAX_DIGITS]  # digits beyond these cannot make a whole byte of difference
        scale = 10 ** len(frac)
        value = (int(whole) * scale + int(frac or "0")) * _UNITS[unit] // scale
    if value > MAX_SIZE:
        raise too_large
    return value


def _whole(value: object, label: str) -> int:
    """An integer from a number or its text; one of more than MAX_DIGITS digits comes back as
    a number just as far out of range (every caller checks the range)."""
    if isinstance(value, bool):
        raise InvalidInput(f"{label} {value!r}: not a whole number")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    m = re.fullmatch(r"([+-]?)(\d+)", text)
    if m is None:
        raise InvalidInput(f"{label} {show(value)}: not a whole number")
    sign, digits = m.group(1), m.group(2).lstrip("0") or "0"
    return int(sign + (digits if len(digits) <= MAX_DIGITS else "1" + "0" * MAX_DIGITS))


def _cpus(value: object, label: str) -> float:
    """A number of CPUs ("0.5", "2", "1.5e1", or a number from a file) whose CFS quota the
    kernel can take: at least 1 ms and at most MAX_CPU_QUOTA µs per 100 ms period."""
    cpus = math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            cpus = float(value)
        except OverflowError:  # an integer beyond any float
            cpus = math.inf
    elif isinstance(value, str) and _CPUS_RE.fullmatch(value.strip()):
        cpus = float(value.strip())  # a huge exponent gives inf
    if math.isnan(cpus) or (math.isinf(cpus) and not isinstance(value, (str, int))):
        raise InvalidInput(
            f"{label} {show(value)}: not a number", hint="give a number of CPUs such as 0.5 or 2"
        )
    if cpus <= 0:
        raise InvalidInput(f"{label} {show(value)}: must be more than 0")
    if cpus * CPU_PERIOD < MIN_CPU_QUOTA:
        raise InvalidInput(
            f"{label} {show(value)}: must be at least 0.01",
            hint="the kernel's smallest CPU quota is 1 ms per 100 ms period",
        )
    if not math.isfinite(cpus * CPU_PERIOD) or round(cpus * CPU_PERIOD) > MAX_CPU_QUOTA:
        raise InvalidInput(
            f"{label} {show(value)}: too large",
            hint=f"the kernel's largest CPU quota is {MAX_CPUS} CPUs; give at most the number "
            "of CPUs of the host",
        )
    return cpus


def parse_io_limit(text: str, flag: str = "--io-limit") -> IoLimit:
    """One device's throttling from "MAJ:MIN riops=N wiops=N rbps=N wbps=N" (any subset, at least
    one; rbps and wbps take sizes such as 10M; separators are spaces or commas)."""
    if not isinstance(text, str):
        raise InvalidInput(f"{flag} {show(text)}: not a device and its limits", hint=IO_HINT)
    raw = text
    words = [w for w in re.split(r"[\s,]+", raw.strip()) if w]
    if not words:
        raise InvalidInput(f"{flag} {show(raw)}: empty", hint=IO_HINT)
    m = _DEVICE_RE.match(words[0])
    if m is None or len(words[0]) > 2 * MAX_DIGITS:
        raise InvalidInput(
            f"{flag} {show(raw)}: {words[0]!r} is not a MAJOR:MINOR device number",
            hint="find it with: lsblk -o NAME,MAJ:MIN",
        )
    major, minor = int(m.group(1)), int(m.group(2))
    if major >= 1 << 12 or minor >= 1 << 20:
        raise InvalidInput(
            f"{flag} {show(raw)}: {words[0]!r} is not a MAJOR:MINOR device number",
            hint="majors are below 4096 and minors below 1048576",
        )
    values: dict[str, int] = {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep or key not in IO_KEYS:
            raise InvalidInput(
                f"{flag} {show(raw)}: unknown key {key!r}", hint="use riops, wiops, rbps or wbps"
            )
        if key in values:
            raise InvalidInput(f"{flag} {show(raw)}: {key} is given twice")
        if key.endswith("bps"):
            n = parse_size(value, f"{flag} {show(raw)}: {key}")
        else:
            n = _whole(value, f"{flag} {show(raw)}: {key}")
        if n <= 0:
            raise InvalidInput(
                f"{flag} {show(raw)}: {key} must be more than 0",
                hint="leave the key out for no limit in that direction",
            )
        if key.endswith("iops") and n > MAX_IOPS:
            raise InvalidInput(
                f"{flag} {show(raw)}: {key} must be at most {MAX_IOPS}",
                hint="the kernel counts I/O operations per second in 32 bits",
            )
        values[key] = n
    if not values:
        raise InvalidInput(f"{flag} {show(raw)}: no limit given", hint=IO_HINT)
    return IoLimit(major, minor, **values)


def parse_cgroup_parent(text: str, flag: str = "--cgroup-parent") -> str:
    """The parent path relative to each hierarchy's root ("/nucleus/" -> "nucleus")."""
    raw = str(text)
    if _CONTROL_RE.search(raw):
        raise InvalidInput(f"{flag} {raw!r}: holds a control character", hint=PARENT_HINT)
    path = raw.strip("/")
    if not path:
        raise InvalidInput(f"{flag} {raw!r}: is the hierarchy root", hint=PARENT_HINT)
    for part in path.split("/"):
        if part == "":
            raise InvalidInput(f"{flag} {raw!r}: has an empty path component", hint=PARENT_HINT)
        if part in (".", ".."):
            raise InvalidInput(f"{flag} {raw!r}: {part!r} is not allowed", hint=PARENT_HINT)
        if len(part.encode()) > 255:
            raise InvalidInput(f"{flag} {raw!r}: a path component is longer than 255 bytes")
    if RESERVED_CGROUP in path.lower():
        raise InvalidInput(
            f"{flag} {raw!r}: refused: {RESERVED_CGROUP!r} belongs to the machine's supervisor",
            hint=f"choose another parent, e.g. {DEFAULT_CGROUP_PARENT}",
        )
    return path


# --- validation ---------------------------------------------------------------------------------


def validate_limits(
    memory: str | int | None = None,
    memory_high: str | int | None = None,
    swap: str | int | None = None,
    cpus: str | float | None = None,
    cpu_weight: str | int | None = None,
    pids: str | int | None = DEFAULT_PIDS,
    io: Iterable[str] = (),
    memlock: str | int | None = DEFAULT_MEMLOCK,
    cgroup_parent: str | None = DEFAULT_CGROUP_PARENT,
    nofile: str | int | None = DEFAULT_NOFILE,
    labels: Mapping[str, str] | None = None,
) -> Limits:
    """Parse and check every limit as given on the command line (text) or in a file (numbers).

    Errors name the flag; ``labels`` renames fields for another source (e.g. a TOML file's
    dotted path). None for pids, memlock, cgroup_parent or nofile means the default.
    """
    name = {**FLAGS, **(labels or {})}

    mem = None if memory is None else parse_size(memory, name["memory"])
    if mem is not None and mem < MIN_MEMORY:
        raise InvalidInput(
            f"{name['memory']} {show(memory)}: must be at least 6M",
            hint="a smaller limit kills most programs while they start",
        )

    high = None if memory_high is None else parse_size(memory_high, name["memory_high"])
    if high is not None:
        if mem is None:
            raise InvalidInput(
                f"{name['memory_high']} {show(memory_high)}: needs {name['memory']}",
                hint=f"for example {name['memory']} 1G {name['memory_high']} 768M",
            )
        if high > mem:
            raise InvalidInput(
                f"{name['memory_high']} {show(memory_high)}: must not exceed "
                f"{name['memory']} {show(memory)}"
            )
        if high == 0:
            raise InvalidInput(f"{name['memory_high']} {show(memory_high)}: must be more than 0")

    swp = None if swap is None else parse_size(swap, name["swap"])
    if swp is not None and mem is None:
        raise InvalidInput(
            f"{name['swap']} {show(swap)}: needs {name['memory']}",
            hint=f"swap is allowed on top of the memory limit, e.g. "
            f"{name['memory']} 512M {name['swap']} 256M",
        )
    if mem is not None and swp is not None and mem + swp > MAX_SIZE:
        raise InvalidInput(f"{name['swap']} {show(swap)}: too large together with the memory limit")

    ncpus = None if cpus is None else _cpus(cpus, name["cpus"])

    weight = None
    if cpu_weight is not None:
        weight = _whole(cpu_weight, name["cpu_weight"])
        if not CPU_WEIGHT_MIN <= weight <= CPU_WEIGHT_MAX:
            raise InvalidInput(
                f"{name['cpu_weight']} {show(cpu_weight)}: must be between 1 and 10000",
                hint="100 is the default; 200 gets twice the CPU time of 100 under contention",
            )

    npids = DEFAULT_PIDS if pids is None else _whole(pids, name["pids"])
    if npids < 1:
        raise InvalidInput(
            f"{name['pids']} {show(pids)}: must be at least 1",
            hint="the container's first process counts as one",
        )
    if npids > PID_MAX_LIMIT:
        raise InvalidInput(
            f"{name['pids']} {show(pids)}: must be at most {PID_MAX_LIMIT}",
            hint="that is the kernel's largest pid number",
        )

    if isinstance(io, str):
        io = (io,)
    devices: dict[tuple[int, int], str] = {}
    parsed_io: list[IoLimit] = []
    for text in io:
        limit = parse_io_limit(text, name["io"])
        key = (limit.major, limit.minor)
        if key in devices:
            raise InvalidInput(
                f"{name['io']} {show(text)}: device {limit.device} is limited twice",
                hint=f"put all limits of one device in one {name['io']}",
            )
        devices[key] = text
        parsed_io.append(limit)

    lock = DEFAULT_MEMLOCK if memlock is None else parse_size(memlock, name["memlock"])

    parent = (
        DEFAULT_CGROUP_PARENT
        if cgroup_parent is None
        else parse_cgroup_parent(cgroup_parent, name["cgroup_parent"])
    )

    nfiles = DEFAULT_NOFILE if nofile is None else _whole(nofile, name["nofile"])
    if nfiles < 1:
        raise InvalidInput(f"{name['nofile']} {show(nofile)}: must be at least 1")
    if nfiles > MAX_NOFILE:
        raise InvalidInput(f"{name['nofile']} {show(nofile)}: must be at most {MAX_NOFILE}",
                           hint="that is the kernel's largest open-file limit (fs.nr_open)")

    return Limits(
        memory=mem,
        memory_high=high,
        swap=swp,
        cpus=ncpus,
        cpu_weight=weight,
        pids=npids,
        io=tuple(parsed_io),
        memlock=lock,
        cgroup_parent=parent,
        nofile=nfiles,
    )
