"""What a workload may tell systemd through its supervisor (--readiness-sd-notify).

The workload never reaches the service manager's socket: the supervisor binds a socket of its
own into the container at SOCKET_INSIDE, reads what the workload sends there, and passes on
only READY=1 and STATUS= (printable, at most STATUS_MAX characters). Everything else the
protocol knows (STOPPING=1, WATCHDOG=trigger, EXTEND_TIMEOUT_USEC=, FDSTORE=1, MAINPID=, ...)
would let the workload steer its unit, and is dropped. Pure: the socket is
nucleus.effects.notify's.
"""

from __future__ import annotations

from typing import NamedTuple

from nucleus.config.secrets import FLAG as SECRET_FLAG
from nucleus.config.secrets import Secret
from nucleus.config.volumes import FLAG, Volume, under
from nucleus.errors import InvalidInput

SOCKET_INSIDE = "/run/nucleus/notify"
MESSAGE_MAX = 4096  # bytes of one datagram; a longer one is dropped whole
STATUS_MAX = 256  # characters of STATUS= passed on
SHOWN_MAX = 40  # characters of a dropped line shown in the warning


class Sorted(NamedTuple):
    """One datagram sorted: the fields passed on (in order), and the lines dropped (shortened
    and made printable, for the warning)."""

    passed: tuple[tuple[str, str], ...]
    dropped: tuple[str, ...]


def printable(text: str, limit: int) -> str:
    """`text` with every unprintable character left out, cut to `limit` characters."""
    return "".join(c for c in text if c.isprintable())[:limit]


def sort(message: bytes) -> Sorted:
    """The fields of `message` to pass on (READY=1, STATUS=...; each once) and those dropped."""
    passed: dict[str, str] = {}
    dropped: list[str] = []
    for line in message.decode(errors="replace").split("\n"):
        if not line:
            continue
        key, sep, value = line.partition("=")
        if sep and key == "READY" and value == "1" and key not in passed:
            passed[key] = value
        elif sep and key == "STATUS" and key not in passed:
            passed[key] = printable(value, STATUS_MAX)
        else:
            dropped.append(printable(line, SHOWN_MAX))
    return Sorted(tuple(passed.items()), tuple(dropped))


def place_refusal(volumes: tuple[Volume, ...], secrets: tuple[Secret, ...]) -> InvalidInput | None:
    """Why the relay's socket cannot be bound at SOCKET_INSIDE: a volume or a secret's DEST
    on it, above it or below it would hide it (or make its mount point in a host tree)."""
    for volume in volumes:
        if under(SOCKET_INSIDE, volume.target) or under(volume.target, SOCKET_INSIDE):
            return InvalidInput(f"{FLAG} {volume.given!r}: --readiness-sd-notify binds the workload's "
                                f"NOTIFY_SOCKET at {SOCKET_INSIDE}", hint="choose another container path")
    for secret in secrets:
        if under(SOCKET_INSIDE, secret.dest) or under(secret.dest, SOCKET_INSIDE):
            return InvalidInput(f"{SECRET_FLAG} '{secret.source}:{secret.dest}': --readiness-sd-notify binds "
                                f"the workload's NOTIFY_SOCKET at {SOCKET_INSIDE}", hint="choose another DEST")
    return None
