"""Finding a container by what a user typed: exact id, unique name, or unique id prefix. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nucleus.errors import InvalidInput

MIN_PREFIX = 3


def resolve(records: Iterable[Mapping[str, Any]], ref: str) -> Mapping[str, Any]:
    records = list(records)
    for r in records:
        if r["id"] == ref:
            return r
    named = [r for r in records if r.get("name") == ref]
    if len(named) == 1:
        return named[0]
    prefixed = [r for r in records if len(ref) >= MIN_PREFIX and str(r["id"]).startswith(ref)]
    if len(prefixed) == 1:
        return prefixed[0]
    if len(prefixed) > 1:
        ids = ", ".join(sorted(str(r["id"])[:12] for r in prefixed))
        raise InvalidInput(f"container {ref!r} is ambiguous: it prefixes {ids}",
                           hint="type more of the id, or use the name")
    raise InvalidInput(f"no container {ref!r}", hint="nucleus ps --all lists the containers")
