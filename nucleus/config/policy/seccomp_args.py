"""Argument conditions of seccomp rules (a ``syscalls`` entry's ``args``): each condition
checked, and an entry's conditions expanded into the rules that mean them.

Several conditions on one argument index are ORed, conditions on different indexes are ANDed:
``[a0 == 1, a0 == 2, a1 == 5]`` means ``(a0 == 1 or a0 == 2) and a1 == 5`` and becomes the rules
``a0 == 1 and a1 == 5`` and ``a0 == 2 and a1 == 5``. When every repeated condition is on one index
this is exactly runc's reading; where runc would also OR the conditions on the other indexes (a
wider filter than the entry reads), nucleus keeps them ANDed.
"""

from __future__ import annotations

from collections.abc import Iterable

from nucleus.config.policy.common import (
    _check_keys,
    _fail,
    _integer,
    _kind,
    _known_hint,
    _show,
)

SECCOMP_OPS = (
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
)
_ARG_KEYS = ("index", "value", "valueTwo", "op")
_U64 = (1 << 64) - 1


Condition = tuple[int, str, int, int]  # (index, op, value, valueTwo)


def _condition(path: str, field: str, arg: object) -> Condition:
    if not isinstance(arg, dict):
        raise _fail(path, field, f"expected an object, got {_kind(arg)} {_show(arg)}")
    _check_keys(path, field, arg, _ARG_KEYS, "the keys of an argument condition are")
    if "index" not in arg:
        raise _fail(path, f"{field}.index", "missing", hint="the argument's position, 0..5")
    index = arg["index"]
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 5:
        raise _fail(path, f"{field}.index", f"{_show(index)} is not an argument index 0..5",
                    hint="a syscall has at most 6 arguments, numbered from 0")
    if "op" not in arg:
        raise _fail(path, f"{field}.op", "missing",
                    hint=_known_hint(None, SECCOMP_OPS, "comparisons"))
    op = arg["op"]
    if not (isinstance(op, str) and op in SECCOMP_OPS):
        raise _fail(path, f"{field}.op", f"unknown comparison {_show(op)}",
                    hint=_known_hint(op, SECCOMP_OPS, "comparisons"))
    values = []
    for key in ("value", "valueTwo"):
        v = arg.get(key)
        v = 0 if v is None else v
        values.append(
            _integer(path, f"{field}.{key}", v, 0, _U64, "an unsigned 64-bit integer")
        )
    value, value_two = values
    if op == "SCMP_CMP_MASKED_EQ":
        if value_two & ~value:
            raise _fail(
                path,
                f"{field}.valueTwo",
                f"{value_two:#x} has bits outside the mask {value:#x}, so the condition can "
                "never hold",
                hint="for SCMP_CMP_MASKED_EQ, value is the mask and valueTwo the expected "
                "masked result",
            )
    elif value_two:
        raise _fail(
            path,
            f"{field}.valueTwo",
            f"{value_two} given with {op}: valueTwo is used only by SCMP_CMP_MASKED_EQ",
            hint="remove valueTwo",
        )
    return index, op, value, value_two


def _by_index(conditions: Iterable[Condition]) -> dict[int, list[Condition]]:
    by_index: dict[int, list[Condition]] = {}
    for cond in conditions:
        group = by_index.setdefault(cond[0], [])
        if cond not in group:
            group.append(cond)
    return by_index


def count_rules(conditions: Iterable[Condition]) -> int:
    """How many rules ``expand_conditions`` makes of ``conditions``, without making them."""
    count = 1
    for group in _by_index(conditions).values():
        count *= len(group)
    return count


def expand_conditions(conditions: Iterable[Condition]) -> list[tuple[Condition, ...]]:
    """The rules that together mean ``conditions``: the conditions on one argument index are
    ORed, those on different indexes ANDed. Each rule has at most one condition per index, in
    index order; duplicates are dropped. No condition gives one rule with no condition."""
    by_index = _by_index(conditions)
    rules: list[tuple[Condition, ...]] = [()]
    for index in sorted(by_index):
        rules = [rule + (cond,) for rule in rules for cond in by_index[index]]
    return rules


_OP_TEXT = {
    "SCMP_CMP_NE": "!=",
    "SCMP_CMP_LT": "<",
    "SCMP_CMP_LE": "<=",
    "SCMP_CMP_EQ": "==",
    "SCMP_CMP_GE": ">=",
    "SCMP_CMP_GT": ">",
}


def _describe(conditions: tuple[Condition, ...]) -> str:
    if not conditions:
        return "no argument conditions"
    parts = []
    for index, op, value, value_two in conditions:
        if op == "SCMP_CMP_MASKED_EQ":
            parts.append(f"args[{index}] & {value:#x} == {value_two:#x}")
        else:
            parts.append(f"args[{index}] {_OP_TEXT[op]} {value}")
    return " and ".join(parts)
