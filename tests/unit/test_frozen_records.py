"""`nucleus.frozen.frozen` behaves as `dataclass(frozen=True)` does, class for class: the same
constructor (positions, keywords, defaults, factories, its errors), repr, equality, hash,
`replace`, `fields`, `asdict`, pattern matching, pickling and FrozenInstanceError."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from nucleus.frozen import frozen


@frozen
class Sample:
    name: str
    size: int = 0


def pair():
    """The same class made both ways."""
    def body(cls):
        cls.__annotations__ = {"name": "str", "size": "int", "tags": "tuple[str, ...]", "cache": "dict"}
        cls.size = 0
        cls.tags = dataclasses.field(default_factory=tuple)
        cls.cache = dataclasses.field(default=None, compare=False, hash=False, repr=False)
        return cls

    return frozen(body(type("Made", (), {}))), dataclasses.dataclass(frozen=True)(body(type("Made", (), {})))


@pytest.mark.parametrize(("args", "kwargs"), [
    (("a",), {}), (("a", 2), {}), (("a",), {"tags": ("x",)}), ((), {"name": "b", "size": 3, "cache": {}}),
])
def test_built_shown_compared_and_hashed_as_a_frozen_dataclass(args, kwargs):
    mine, theirs = pair()
    one, other = mine(*args, **kwargs), theirs(*args, **kwargs)
    assert repr(one) == repr(other)
    assert dataclasses.asdict(one) == dataclasses.asdict(other)
    assert one == mine(*args, **kwargs) and hash(one) == hash(mine(*args, **kwargs))
    assert hash(one) == hash(other)  # the same fields, in the same order
    assert one != other  # another class, as two dataclasses of different classes are
    assert one == mine(*args, **{**kwargs, "cache": {"ignored": 1}})  # compare=False


@pytest.mark.parametrize(("args", "kwargs"), [
    ((), {}), (("a", 1, (), None, 5), {}), (("a",), {"name": "b"}), (("a",), {"colour": 1}),
])
def test_bad_arguments_are_refused_as_the_generated_constructor_refuses_them(args, kwargs):
    mine, theirs = pair()
    with pytest.raises(TypeError):
        theirs(*args, **kwargs)
    with pytest.raises(TypeError):
        mine(*args, **kwargs)


def test_frozen_replaced_matched_pickled():
    mine, _ = pair()
    one = mine("a", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.size = 2
    assert dataclasses.replace(one, size=5) == mine("a", 5)
    assert [f.name for f in dataclasses.fields(one)] == ["name", "size", "tags", "cache"]
    assert copy.deepcopy(one) == one
    assert pickle.loads(pickle.dumps(Sample("a", 1))) == Sample("a", 1)
    match one:
        case mine(name, size):  # type: ignore[misc]
            assert (name, size) == ("a", 1)
    assert mine("a").tags is not None and mine("a").tags == ()


def test_methods_the_class_defines_are_kept_and_post_init_runs():
    seen = []

    @frozen
    class Own:
        x: int

        def __repr__(self) -> str:
            return "own"

        def __post_init__(self) -> None:
            seen.append(self.x)

    assert repr(Own(1)) == "own" and seen == [1] and hash(Own(1)) == hash(Own(1))
