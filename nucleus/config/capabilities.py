"""Linux capability names and numbers (linux/capability.h, up to CAP_CHECKPOINT_RESTORE)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: keeps the import free for the hot path
    from collections.abc import Iterable

CAPABILITY_NAMES: dict[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}

CAPABILITY_BY_NUMBER: dict[int, str] = {n: name for name, n in CAPABILITY_NAMES.items()}

CAP_LAST_KNOWN = max(CAPABILITY_BY_NUMBER)


def capability_number(name: str) -> int:
    """The number of a capability named ``"SYS_ADMIN"``, ``"CAP_SYS_ADMIN"`` or in lower case.

    Raises ValueError naming the bad value when the name is unknown.
    """
    key = name.strip().upper()
    if not key.startswith("CAP_"):
        key = "CAP_" + key
    try:
        return CAPABILITY_NAMES[key]
    except KeyError:
        raise ValueError(f"unknown capability {name!r}") from None


def capability_name(number: int) -> str:
    """The name (``"CAP_SYS_ADMIN"``) of a capability number; ValueError when unknown."""
    try:
        return CAPABILITY_BY_NUMBER[number]
    except KeyError:
        raise ValueError(f"unknown capability number {number!r}") from None


def capability_mask(numbers: Iterable[int]) -> int:
    """The 64-bit mask with the bit of every capability number in ``numbers`` set."""
    mask = 0
    for n in numbers:
        mask |= 1 << n
    return mask


def capability_names_of(mask: int) -> list[str]:
    """The names of the capabilities set in ``mask`` (unknown bits as ``"cap_<n>"``)."""
    out = []
    n = 0
    while mask >> n:
        if mask >> n & 1:
            out.append(CAPABILITY_BY_NUMBER.get(n, f"cap_{n}"))
        n += 1
    return out
