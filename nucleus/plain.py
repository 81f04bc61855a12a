"""Frozen dataclasses to and from JSON-able plain data, guided by their type annotations.

Recorded traces carry a run's inputs (its configuration, the host facts, the prepared artifacts)
so that replay can plan the run again; the state directory's records carry plans the same way.
Supported field types: None, bool, int, float, str, dataclasses, NamedTuples, the vocabulary's
events and intents (in their wire form), tuples (fixed or variadic), frozensets, dicts with
string keys, and unions of these with None.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from nucleus import vocab as v
from nucleus.vocab.record import Record

T = TypeVar("T")


def to_plain(value: Any) -> Any:
    if isinstance(value, Record):
        return v.to_wire(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [to_plain(item) for item in value]
    if isinstance(value, frozenset):
        return sorted(to_plain(item) for item in value)
    if isinstance(value, dict):
        return {str(key): to_plain(item) for key, item in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot turn {type(value).__name__} into plain data")


def from_plain(kind: Any, data: Any, where: str = "") -> Any:
    """Rebuild a value of type `kind` (a class or a typing form) from `to_plain`'s output. A
    value that does not fit raises ValueError naming its dotted path (`where`)."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if data is None and type(None) in options:
            return None
        others = [o for o in options if o is not type(None)]
        if len(others) != 1:
            raise TypeError(f"cannot rebuild a value of {kind}: ambiguous union")
        return from_plain(others[0], data, where)
    if kind is Any:
        return data
    if isinstance(kind, type) and issubclass(kind, Record):
        try:
            record = v.from_wire(_object(data, kind.__name__, where))
        except TypeError as e:
            raise ValueError(_at(where, str(e))) from None
        if not isinstance(record, kind):
            raise ValueError(_at(where, f"expected {kind.__name__}, got {record.name}"))
        return record
    if origin is tuple:
        args = typing.get_args(kind)
        items = _list(data, kind, where)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_plain(args[0], item, f"{where}[{i}]") for i, item in enumerate(items))
        if len(items) != len(args):
            raise ValueError(_at(where, f"expected {len(args)} items, got {len(items)}"))
        return tuple(from_plain(arg, item, f"{where}[{i}]")
                     for i, (arg, item) in enumerate(zip(args, items, strict=True)))
    if origin is frozenset:
        (arg,) = typing.get_args(kind)
        return frozenset(from_plain(arg, item, f"{where}[{i}]")
                         for i, item in enumerate(_list(data, kind, where)))
    if origin is dict:
        _, arg = typing.get_args(kind)
        return {key: from_plain(arg, item, _join(where, key))
                for key, item in _object(data, "an object", where).items()}
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        fields = _object(data, kind.__name__, where)
        hints = typing.get_type_hints(kind)
        known = [f for f in dataclasses.fields(kind) if f.init]
        unknown = set(fields) - {f.name for f in known}
        if unknown:
            raise ValueError(_at(where, f"{kind.__name__} has no field {sorted(unknown)[0]!r}"))
        for f in known:
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required and f.name not in fields:
                raise ValueError(_at(_join(where, f.name), f"missing (a field of {kind.__name__})"))
        return kind(**{name: from_plain(hints[name], item, _join(where, name))
                       for name, item in fields.items()})
    if isinstance(kind, type) and issubclass(kind, tuple) and hasattr(kind, "_fields"):
        hints = typing.get_type_hints(kind)
        items = _list(data, kind, where)
        if len(items) > len(kind._fields):
            raise ValueError(_at(where, f"{kind.__name__} has {len(kind._fields)} items, got {len(items)}"))
        return kind(*(from_plain(hints[name], item, _join(where, name))
                      for name, item in zip(kind._fields, items, strict=False)))
    if kind in (bool, int, str):
        if not isinstance(data, kind) or (kind is int and isinstance(data, bool)):
            raise ValueError(_at(where, f"expected {kind.__name__}, got {data!r}"))
        return data
    if kind is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise ValueError(_at(where, f"expected a number, got {data!r}"))
        return float(data)
    if kind is type(None):
        if data is not None:
            raise ValueError(_at(where, f"expected null, got {data!r}"))
        return None
    raise TypeError(f"cannot rebuild a value of {kind!r}")


def _at(where: str, problem: str) -> str:
    return f"{where}: {problem}" if where else problem


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _list(data: Any, kind: Any, where: str) -> list[Any]:
    if not isinstance(data, list):
        raise ValueError(_at(where, f"expected a list for {kind}, got {data!r}"))
    return data


def _object(data: Any, what: str, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(_at(where, f"expected an object for {what}, got {data!r}"))
    return data


def rebuild(kind: type[T], data: Any) -> T:
    value: T = from_plain(kind, data)
    return value
