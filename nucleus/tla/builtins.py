"""The operators of TLA+ itself and of the standard modules the specs EXTEND or INSTANCE, on the
values of values.py. As TLC, they refuse values of the wrong kind (`1 = "a"`, `TRUE + 1`) rather
than answer FALSE: a spec that compares a string with an integer has a bug.

An operator of a standard module is available only in a module that extends or instantiates it
(`Len` needs Sequences, `+` Naturals). TLC-only operators that depend on the run (TLCGet, Trace,
JsonSerialize, ...) are known by name and refused where they would be evaluated, so that the
trace-export wrappers still parse and load.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from typing import Any

from nucleus.tla.errors import EvalError
from nucleus.tla.values import (
    BOOLEAN,
    INT,
    NAT,
    STRING,
    Fn,
    Infinite,
    ModelValue,
    elements,
    kind,
    seq,
    seq_items,
    show,
)

MAX_SET = 1 << 20  # the largest set SUBSET or [S -> T] builds


_NATURALS = frozenset({"+", "-", "*", "^", "<", ">", "<=", ">=", "\\div", "%", "..", "Nat"})
_SEQUENCES = frozenset({"Seq", "Len", "Append", "Head", "Tail", "SubSeq", "\\o"})
_FINITE_SETS = frozenset({"Cardinality", "IsFiniteSet"})
_TLC = frozenset({":>", "@@", "Print", "PrintT", "Assert", "ToString", "TLCEval", "Permutations",
                  "TLCGet", "TLCSet", "JavaTime", "RandomElement", "Any", "SortSeq"})
_TLC_EXT = frozenset({"Trace", "TLCDefer", "TLCModelValue", "CounterExample", "TLCNoOp", "AssertError",
                      "PickSuccessor", "TLCCache", "AssertEq", "ToTrace", "TLCGetOrDefault"})
_JSON = frozenset({"JsonSerialize", "JsonDeserialize", "ToJson", "ToJsonArray", "ToJsonObject",
                   "ndJsonSerialize", "ndJsonDeserialize"})

# The standard modules: the operators and constants each defines (with those it extends).
STANDARD: dict[str, frozenset[str]] = {
    "Naturals": _NATURALS,
    "Integers": _NATURALS | {"-.", "Int"},
    "Sequences": _SEQUENCES | _NATURALS,
    "FiniteSets": _FINITE_SETS | _SEQUENCES | _NATURALS,
    "TLC": _TLC | _FINITE_SETS | _SEQUENCES | _NATURALS,
    "TLCExt": _TLC_EXT | _TLC | _FINITE_SETS | _SEQUENCES | _NATURALS,
    "Json": _JSON | _SEQUENCES | _NATURALS,
}

# What depends on TLC's run (its statistics, the behaviour so far, files): refused, with this
# module named.
TLC_ONLY = {name: "TLC" for name in ("TLCGet", "TLCSet", "JavaTime", "RandomElement", "Any")}
TLC_ONLY.update({name: "TLCExt" for name in _TLC_EXT})
TLC_ONLY.update({name: "Json" for name in _JSON})

CONSTANTS: dict[str, Any] = {"Nat": NAT, "Int": INT}
ALWAYS = {"BOOLEAN": BOOLEAN, "STRING": STRING}


def _int(a: Any, op: str) -> int:
    if type(a) is not int:
        raise EvalError(f"{op} applied to {kind(a)}, {show(a)}")
    return a


def _set(a: Any, op: str) -> frozenset[Any]:
    if type(a) is not frozenset:
        raise EvalError(f"{op} applied to {kind(a)}, {show(a)}")
    return a


def _bool(a: Any, op: str) -> bool:
    if type(a) is not bool:
        raise EvalError(f"{op} applied to {kind(a)}, {show(a)}: a Boolean is needed")
    return a


def equal(a: Any, b: Any) -> bool:
    """a = b, refusing values of different kinds (but model values, unequal to all else)."""
    if type(a) is not type(b):
        if type(a) is ModelValue or type(b) is ModelValue:
            return False
        raise EvalError(f"cannot compare {kind(a)}, {show(a)}, with {kind(b)}, {show(b)}")
    return bool(a == b)


def member(a: Any, s: Any) -> bool:
    if type(s) is frozenset or isinstance(s, Infinite):
        return a in s
    raise EvalError(f"\\in: {show(s)} is not a set")


def _powerset(s: Any) -> frozenset[Any]:
    items = elements(s, "SUBSET")
    if len(items) > 20:
        raise EvalError(f"SUBSET of a set of {len(items)} elements is too large")
    return frozenset(
        frozenset(c) for r in range(len(items) + 1) for c in itertools.combinations(items, r)
    )


def _union(s: Any) -> frozenset[Any]:
    return frozenset().union(*(_set(x, "UNION") for x in elements(s, "UNION")))


def _domain(f: Any) -> frozenset[Any]:
    if type(f) is not Fn:
        raise EvalError(f"DOMAIN applied to {kind(f)}, {show(f)}")
    return frozenset(f.m)


def _range(a: Any, b: Any) -> frozenset[int]:
    return frozenset(range(_int(a, ".."), _int(b, "..") + 1))


def _concat(a: Any, b: Any) -> Any:
    if type(a) is str and type(b) is str:
        return a + b
    return seq(seq_items(a, "\\o") + seq_items(b, "\\o"))


def _colon_gt(a: Any, b: Any) -> Fn:
    return Fn({a: b})


def _double_at(f: Any, g: Any) -> Fn:
    if type(f) is not Fn or type(g) is not Fn:
        raise EvalError(f"@@ applied to {show(f)} and {show(g)}")
    return Fn({**g.m, **f.m})


def _product(a: Any, b: Any) -> frozenset[Fn]:
    return frozenset(seq((x, y)) for x in elements(a, "\\X") for y in elements(b, "\\X"))


def _div(a: Any, b: Any) -> int:
    if _int(b, "\\div") == 0:
        raise EvalError("division by zero")
    return _int(a, "\\div") // b  # type: ignore[no-any-return]


def _mod(a: Any, b: Any) -> int:
    if _int(b, "%") <= 0:
        raise EvalError(f"% by {b}")
    return _int(a, "%") % b  # type: ignore[no-any-return]


BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "=": equal,
    "#": lambda a, b: not equal(a, b),
    "\\in": member,
    "\\notin": lambda a, s: not member(a, s),
    "\\subseteq": lambda a, b: _set(a, "\\subseteq") <= _set(b, "\\subseteq"),
    "\\subset": lambda a, b: _set(a, "\\subset") < _set(b, "\\subset"),
    "\\supseteq": lambda a, b: _set(a, "\\supseteq") >= _set(b, "\\supseteq"),
    "\\cup": lambda a, b: _set(a, "\\cup") | _set(b, "\\cup"),
    "\\cap": lambda a, b: _set(a, "\\cap") & _set(b, "\\cap"),
    "\\": lambda a, b: _set(a, "\\") - _set(b, "\\"),
    "<=>": lambda a, b: _bool(a, "<=>") == _bool(b, "<=>"),
    "+": lambda a, b: _int(a, "+") + _int(b, "+"),
    "-": lambda a, b: _int(a, "-") - _int(b, "-"),
    "*": lambda a, b: _int(a, "*") * _int(b, "*"),
    "^": lambda a, b: _int(a, "^") ** _int(b, "^"),
    "<": lambda a, b: _int(a, "<") < _int(b, "<"),
    ">": lambda a, b: _int(a, ">") > _int(b, ">"),
    "<=": lambda a, b: _int(a, "<=") <= _int(b, "<="),
    ">=": lambda a, b: _int(a, ">=") >= _int(b, ">="),
    "\\div": _div,
    "%": _mod,
    "..": _range,
    "\\o": _concat,
    ":>": _colon_gt,
    "@@": _double_at,
    "\\X": _product,
}

UNARY: dict[str, Callable[[Any], Any]] = {
    "~": lambda a: not _bool(a, "~"),
    "-.": lambda a: -_int(a, "-"),
    "SUBSET": _powerset,
    "UNION": _union,
    "DOMAIN": _domain,
}

# Operators every module has (the rest need a standard module).
BUILT_IN = frozenset({"=", "#", "=>", "\\X", "\\in", "\\notin", "\\subseteq", "\\subset", "\\supseteq", "\\cup",
                      "\\cap", "\\", "<=>", "~", "SUBSET", "UNION", "DOMAIN"})


def _len(s: Any) -> int:
    return len(seq_items(s, "Len"))


def _append(s: Any, e: Any) -> Fn:
    return seq([*seq_items(s, "Append"), e])


def _head(s: Any) -> Any:
    items = seq_items(s, "Head")
    if not items:
        raise EvalError("Head of the empty sequence")
    return items[0]


def _tail(s: Any) -> Fn:
    items = seq_items(s, "Tail")
    if not items:
        raise EvalError("Tail of the empty sequence")
    return seq(items[1:])


def _subseq(s: Any, m: Any, n: Any) -> Any:
    m, n = _int(m, "SubSeq"), _int(n, "SubSeq")
    if type(s) is str:
        if m > n:
            return ""
        if m < 1 or n > len(s):
            raise EvalError(f"SubSeq({show(s)}, {m}, {n}): out of range")
        return s[m - 1:n]
    items = seq_items(s, "SubSeq")
    if m > n:
        return seq(())
    if m < 1 or n > len(items):
        raise EvalError(f"SubSeq({show(s)}, {m}, {n}): out of range")
    return seq(items[m - 1:n])


def _cardinality(s: Any) -> int:
    return len(_set(s, "Cardinality"))


def _print(out: Any, value: Any) -> Any:
    print(show(out), file=sys.stderr)
    return value


def _print_t(out: Any) -> bool:
    print(show(out), file=sys.stderr)
    return True


def _assert(cond: Any, message: Any) -> bool:
    if not _bool(cond, "Assert"):
        raise EvalError(f"Assert failed: {show(message)}")
    return True


def _permutations(s: Any) -> frozenset[Fn]:
    items = elements(s, "Permutations")
    return frozenset(Fn(dict(zip(items, p, strict=True))) for p in itertools.permutations(items))


def _seq_set(s: Any) -> Infinite:
    """Seq(S): every finite sequence over S (for membership: it cannot be enumerated)."""
    _set(s, "Seq")
    return Infinite(f"Seq({show(s)})", lambda v: type(v) is Fn and v.is_sequence() and all(e in s for e in v.m.values()))


NAMED: dict[str, tuple[int, Callable[..., Any]]] = {
    "Seq": (1, _seq_set),
    "Len": (1, _len),
    "Append": (2, _append),
    "Head": (1, _head),
    "Tail": (1, _tail),
    "SubSeq": (3, _subseq),
    "Cardinality": (1, _cardinality),
    "IsFiniteSet": (1, lambda s: type(s) is frozenset),
    "ToString": (1, show),
    "Print": (2, _print),
    "PrintT": (1, _print_t),
    "Assert": (2, _assert),
    "TLCEval": (1, lambda v: v),
    "Permutations": (1, _permutations),
}


def fn_apply(f: Any, key: Any, where: str) -> Any:
    if type(f) is not Fn:
        raise EvalError(f"{where}: {show(f)} is not a function")
    try:
        return f.m[key]
    except KeyError:
        raise EvalError(f"{where}: {show(key)} is not in the domain of {show(f)}") from None
    except TypeError:
        raise EvalError(f"{where}: {show(key)} cannot be a function's argument") from None


def function_set(domain: Any, codomain: Any) -> frozenset[Fn]:
    keys = elements(domain, "[S -> T]")
    values = elements(codomain, "[S -> T]")
    if len(values) ** len(keys) > MAX_SET:
        raise EvalError(f"[S -> T] with {len(values)}^{len(keys)} functions is too large")
    return frozenset(Fn(dict(zip(keys, combo, strict=True)))
                     for combo in itertools.product(values, repeat=len(keys)))


def record_set(fields: list[tuple[str, Any]]) -> frozenset[Fn]:
    names = [name for name, _ in fields]
    choices = [elements(value, "[a : S]") for _, value in fields]
    return frozenset(Fn(dict(zip(names, combo, strict=True))) for combo in itertools.product(*choices))
