"""Frozen dataclasses without generated code.

`@dataclass(frozen=True)` writes `__init__`, `__repr__`, `__eq__` and `__hash__` for each class as
source text and compiles it with `exec` at import: for the run path's states, configuration,
facts and plans that was half of `nucleus run`'s import time (8 ms for a class of 60 fields on
a loaded machine). `@frozen` makes the same class — `dataclasses.fields`, `replace`, `asdict`,
pattern matching and `FrozenInstanceError` work as before, and so does mypy, through
`dataclass_transform` — with shared, generic methods instead: only the two small frozen-setattr
methods are still generated. Instances are built a few microseconds slower; nothing on the run
path builds enough of them for that to show.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")
_MISSING = dataclasses.MISSING


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
def frozen(cls: type[T]) -> type[T]:
    """`@dataclass(frozen=True)`, its methods shared rather than generated."""
    explicit = {name for name in ("__repr__", "__eq__") if name in cls.__dict__}
    own_hash = cls.__dict__.get("__hash__", _MISSING)
    keep_hash = not (own_hash is _MISSING or (own_hash is None and "__eq__" in cls.__dict__))
    made: Any = dataclasses.dataclass(frozen=True, init=False, repr=False, eq=False)(cls)  # cls itself
    fields = dataclasses.fields(made)
    # (name, default, default factory) of each argument of __init__, in order.
    made.__frozen_init__ = tuple(
        (f.name, f.default, f.default_factory) for f in fields if f.init)
    made.__frozen_shown__ = tuple(f.name for f in fields if f.repr)
    made.__frozen_compared__ = _values(tuple(f.name for f in fields if f.compare))
    made.__frozen_hashed__ = _values(tuple(
        f.name for f in fields if (f.compare if f.hash is None else f.hash)))
    made.__init__ = _init
    if "__repr__" not in explicit:
        made.__repr__ = _repr
    if "__eq__" not in explicit:
        made.__eq__ = _eq
    if not keep_hash:
        made.__hash__ = _hash
    return cls


def _values(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """The values of `names` of an instance, as a tuple (what the generated methods compare)."""
    if len(names) > 1:
        return attrgetter(*names)
    if names:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    return lambda obj: ()


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    spec: tuple[tuple[str, Any, Callable[[], Any] | Any], ...] = type(self).__frozen_init__
    if len(args) > len(spec):
        raise TypeError(f"{type(self).__qualname__}() takes {len(spec)} arguments, {len(args)} given")
    given = dict(kwargs)
    for index, (name, default, factory) in enumerate(spec):
        if index < len(args):
            if name in given:
                raise TypeError(f"{type(self).__qualname__}() got multiple values for argument {name!r}")
            value = args[index]
        elif name in given:
            value = given.pop(name)
        elif default is not _MISSING:
            value = default
        elif factory is not _MISSING:
            value = factory()
        else:
            raise TypeError(f"{type(self).__qualname__}() missing required argument: {name!r}")
        object.__setattr__(self, name, value)
    if given:
        raise TypeError(f"{type(self).__qualname__}() got an unexpected keyword argument {next(iter(given))!r}")
    post = getattr(self, "__post_init__", None)
    if post is not None:
        post()


def _repr(self: Any) -> str:
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in type(self).__frozen_shown__)
    return f"{type(self).__qualname__}({shown})"


def _eq(self: Any, other: Any) -> Any:  # a bool, or NotImplemented
    kind: Any = type(self)
    if other.__class__ is not kind:
        return NotImplemented
    return kind.__frozen_compared__(self) == kind.__frozen_compared__(other)


def _hash(self: Any) -> int:
    return hash(type(self).__frozen_hashed__(self))
