"""`-u/--user UID[:GID]` or `NAME[:GROUP]`: what the user asked for, checked for its form only.

Which ids a name stands for is the container's business (its /etc/passwd and /etc/group), and
which ids exist is its user namespace's: both are decided when the run or the join is planned
(nucleus.plan.users). Pure.
"""

from __future__ import annotations

import re

from nucleus.errors import InvalidInput
from nucleus.frozen import frozen

# A user or group name as shadow-utils accepts one (a trailing '$' for machine accounts).
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?")
ID_RE = re.compile(r"[0-9]{1,10}")
MAX_ID = 0xFFFFFFFE  # (uid_t)-1 means "unchanged" to the kernel: never an id
HINT = "give a user name or uid, and optionally a group, e.g. -u 1000, -u 1000:1000 or -u nobody"


@frozen
class UserSpec:
    """A user (a name, or a number) and an optional group (a name, or a number)."""

    user: str
    group: str | None = None


def parse(text: str, flag: str = "--user") -> UserSpec:
    """The parts of `text`; InvalidInput names the flag and the value."""
    user, sep, group = text.partition(":")
    parts = [("user", user)] + ([("group", group)] if sep else [])
    for what, part in parts:
        if not part:
            raise InvalidInput(f"{flag} {text!r}: the {what} is empty", hint=HINT)
        if ID_RE.fullmatch(part):
            if int(part) > MAX_ID:
                raise InvalidInput(f"{flag} {text!r}: {what} id {part} is out of range (at most {MAX_ID})",
                                   hint=HINT)
        elif not NAME_RE.fullmatch(part):
            raise InvalidInput(f"{flag} {text!r}: {part!r} is not a {what} name or id", hint=HINT)
    return UserSpec(user, group if sep else None)
