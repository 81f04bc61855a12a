"""The immutable record every event and intent is: frozen-dataclass behaviour (fields from the
annotations, defaults, equality, hashing, a readable repr, pattern matching) without the per-class
code generation that made `dataclasses` the slowest import of `nucleus run`."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

R = TypeVar("R", bound="Record")


def record(cls: type[R]) -> type[R]:
    """Make a `Record` subclass from its annotations (fields with defaults; ClassVars skipped)."""
    names: list[str] = []
    defaults: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        for name, kind in klass.__dict__.get("__annotations__", {}).items():
            shown = kind if isinstance(kind, str) else repr(kind)
            if shown.startswith(("ClassVar", "typing.ClassVar")):
                continue
            if name not in names:
                names.append(name)
            if name in klass.__dict__:
                defaults[name] = klass.__dict__[name]
    cls._fields = tuple(names)
    cls._defaults = defaults
    # mypy allows __match_args__ only in a class body; here is where a record's fields are known.
    cls.__match_args__ = tuple(names)  # type: ignore[misc]
    return cls


class Record:
    """Immutable, compared and hashed by type and field values, like a frozen dataclass."""

    _fields: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}
    __match_args__: ClassVar[tuple[str, ...]]  # set by record(), for pattern matching

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        names = self._fields
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__} takes {len(names)} fields, got {len(args)}")
        values = dict(self._defaults)
        values.update(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key not in names:
                raise TypeError(f"{type(self).__name__} has no field {key!r}")
            if key in names[:len(args)]:
                raise TypeError(f"{type(self).__name__} got field {key!r} twice")
            values[key] = value
        for name in names:
            if name not in values:
                raise TypeError(f"{type(self).__name__} needs field {name!r}")
            object.__setattr__(self, name, values[name])

    @property
    def name(self) -> str:
        return type(self).__name__

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def replace(self: R, **changes: Any) -> R:
        current = dict(zip(self._fields, self.values(), strict=True))
        current.update(changes)
        return type(self)(**current)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.values() == other.values()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.values()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({inner})"


def field_names(obj: Record | type[Record]) -> tuple[str, ...]:
    return obj._fields

