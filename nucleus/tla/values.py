"""TLA+ values as hashable Python values, so that a state is a tuple that can be a dict key:

    TRUE, FALSE     bool          "a"            str
    42              int           {a, b}         frozenset
    functions, records and sequences (a function on 1..n)       Fn, a frozen mapping
    model values (a .cfg's `p = p`)                             ModelValue
    Nat, Int, STRING (only for membership)                      Infinite

`show` writes a value as TLC does (`<<"a", "b">>`, `[m |-> "lc"]`, `{1, 2}`); `sort_key` orders
values of one kind, which is the order sets are enumerated in (independent of hashing, so a run's
counterexample is the same every time); `from_itf` reads an ITF JSON value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nucleus.tla.errors import EvalError

Value = Any  # bool | int | str | frozenset | Fn | ModelValue | Infinite


class Fn:
    """A function: a record (string keys), a sequence (keys 1..n) or any other finite function.
    Frozen: its hash is computed once, and whether it is a sequence."""

    __slots__ = ("_hash", "_seq", "m")

    def __init__(self, m: dict[Any, Any]) -> None:
        self.m = m
        self._hash: int | None = None
        self._seq: bool | None = None

    def __eq__(self, other: object) -> bool:
        return type(other) is Fn and self.m == other.m

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self.m.items()))
        return self._hash

    def __repr__(self) -> str:
        return show(self)

    def is_sequence(self) -> bool:
        if self._seq is None:
            m = self.m
            self._seq = all(type(k) is int for k in m) and all(i in m for i in range(1, len(m) + 1))
        return self._seq


def seq(items: Iterable[Any]) -> Fn:
    return Fn(dict(enumerate(items, start=1)))


def seq_items(value: Any, what: str) -> list[Any]:
    """The elements of a sequence, in order."""
    if type(value) is not Fn or not value.is_sequence():
        raise EvalError(f"{what}: {show(value)} is not a sequence")
    return [value.m[i] for i in range(1, len(value.m) + 1)]


class ModelValue:
    """A model value: equal only to itself (the .cfg's `p = p`, `S = {p1, p2}`)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return type(other) is ModelValue and other.name == self.name

    def __hash__(self) -> int:
        return hash(("ModelValue", self.name))

    def __repr__(self) -> str:
        return self.name


class Infinite:
    """Nat, Int, STRING: sets that can be asked for membership, never enumerated."""

    __slots__ = ("name", "test")

    def __init__(self, name: str, test: Any) -> None:
        self.name = name
        self.test = test

    def __contains__(self, value: object) -> bool:
        return bool(self.test(value))

    def __repr__(self) -> str:
        return self.name


NAT = Infinite("Nat", lambda v: type(v) is int and v >= 0)
INT = Infinite("Int", lambda v: type(v) is int)
STRING = Infinite("STRING", lambda v: type(v) is str)
BOOLEAN = frozenset({False, True})

_KIND = {bool: 0, int: 1, str: 2, ModelValue: 3, frozenset: 4, Fn: 5}


def kind(value: Any) -> str:
    return {bool: "a Boolean", int: "an integer", str: "a string", ModelValue: "a model value",
            frozenset: "a set", Fn: "a function"}.get(type(value), "a value")


def sort_key(value: Any) -> Any:
    t = type(value)
    if t is str or t is int or t is bool:
        return (_KIND[t], value)
    if t is frozenset:
        return (4, len(value), sorted(map(sort_key, value)))
    if t is Fn:
        return (5, sorted((sort_key(k), sort_key(v)) for k, v in value.m.items()))
    if t is ModelValue:
        return (3, value.name)
    raise EvalError(f"{value!r} cannot be ordered")


# Sorted elements by the set's identity (the cache keeps the set alive, so its id stays its own):
# by equality, {0, 1} would find BOOLEAN's elements, as 0 == False and 1 == True in Python.
_sorted: dict[int, tuple[frozenset[Any], tuple[Any, ...]]] = {}


def elements(value: Any, what: str = "a set") -> tuple[Any, ...]:
    """A set's elements in sort_key order (cached for the constant sets the specs enumerate)."""
    if type(value) is not frozenset:
        if isinstance(value, Infinite):
            raise EvalError(f"{what}: {value.name} is infinite: it cannot be enumerated")
        raise EvalError(f"{what}: {show(value)} is not a set")
    found = _sorted.get(id(value))
    if found is not None and found[0] is value:
        return found[1]
    items = tuple(sorted(value, key=sort_key))
    if len(_sorted) < 10_000:
        _sorted[id(value)] = (value, items)
    return items


def show(value: Any) -> str:
    """A value as TLA+ (and TLC) writes it."""
    t = type(value)
    if t is bool:
        return "TRUE" if value else "FALSE"
    if t is str:
        text: str = value
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if t is int:
        return str(value)
    if t is frozenset:
        return "{" + ", ".join(show(v) for v in elements(value)) + "}"
    if t is Fn:
        if not value.m:
            return "<<>>"
        if value.is_sequence():
            return "<<" + ", ".join(show(value.m[i]) for i in range(1, len(value.m) + 1)) + ">>"
        keys = sorted(value.m, key=sort_key)
        if all(type(k) is str for k in keys):
            return "[" + ", ".join(f"{k} |-> {show(value.m[k])}" for k in keys) + "]"
        return "(" + " @@ ".join(f"{show(k)} :> {show(value.m[k])}" for k in keys) + ")"
    return repr(value)


def from_itf(value: Any, where: str = "") -> Any:
    """A value as ITF JSON (Apalache's ADR-015) writes it."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value  # not ADR-015 (integers are {"#bigint": "n"}), but unambiguous
    if isinstance(value, list):
        return seq(from_itf(v, where) for v in value)
    if isinstance(value, dict):
        if "#bigint" in value:
            return int(value["#bigint"])
        if "#set" in value:
            return frozenset(from_itf(v, where) for v in value["#set"])
        if "#tup" in value:
            return seq(from_itf(v, where) for v in value["#tup"])
        if "#map" in value:
            return Fn({from_itf(k, where): from_itf(v, where) for k, v in value["#map"]})
        if "#unserializable" in value:
            raise EvalError(f"{where}: an unserializable value {value['#unserializable']!r}")
        return Fn({k: from_itf(v, where) for k, v in value.items() if k != "#meta"})
    raise EvalError(f"{where}: {value!r} is not an ITF value")
