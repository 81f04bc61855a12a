"""The signals a user may send to a container (`nucleus kill`), by name or number."""

from __future__ import annotations

from nucleus.errors import InvalidInput

# The numbers are Linux's on every architecture nucleus runs on (x86_64 and aarch64 share them).
NUMBERS = {"HUP": 1, "INT": 2, "QUIT": 3, "KILL": 9, "USR1": 10, "USR2": 12, "TERM": 15, "WINCH": 28}
SENDABLE = ("TERM", "INT", "HUP", "QUIT", "USR1", "USR2", "WINCH", "KILL")


def parse_signal(text: str, flag: str = "--signal") -> str:
    """The name of a signal given as NAME, SIGNAME or its number (case-insensitive)."""
    name = text.upper().removeprefix("SIG")
    if name.isdigit():
        by_number = {number: known for known, number in NUMBERS.items()}
        name = by_number.get(int(name), text)
    if name not in SENDABLE:
        raise InvalidInput(f"{flag} {text!r}: not a signal nucleus sends",
                           hint=f"use one of {', '.join(SENDABLE)} (with or without SIG, or its number)")
    return name
