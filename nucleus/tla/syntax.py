"""The syntax tree of a TLA+ module, as the parser builds it and the evaluator compiles it.

Every expression node has `at`, its (line, column) in the module, for error messages. Built-in
operators (`=`, `\\in`, `+`, `DOMAIN`, ...) are all `OpCall`s named by their canonical spelling;
the /\\ and \\/ of a bullet list and their infix forms are the same `And` / `Or`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Pos = tuple[int, int]


@dataclass(frozen=True)
class Num:
    value: int
    at: Pos


@dataclass(frozen=True)
class Str:
    value: str
    at: Pos


@dataclass(frozen=True)
class Bool:
    value: bool
    at: Pos


@dataclass(frozen=True)
class Name:
    """An identifier: a variable, constant, bound name, definition without arguments, or one of
    BOOLEAN, STRING, Nat, Int."""
    name: str
    at: Pos


@dataclass(frozen=True)
class Apply:
    """`Op(a, b)`: a definition or standard operator with arguments."""
    name: str
    args: tuple[Expr, ...]
    at: Pos


@dataclass(frozen=True)
class InstanceRef:
    """`LC!Prepared(level)`: a definition of a named instance (`LC == INSTANCE Lifecycle`);
    `path` is the chain of instance names."""
    path: tuple[str, ...]
    name: str
    args: tuple[Expr, ...]
    at: Pos


@dataclass(frozen=True)
class OpCall:
    op: str
    args: tuple[Expr, ...]
    at: Pos


@dataclass(frozen=True)
class And:
    items: tuple[Expr, ...]
    at: Pos


@dataclass(frozen=True)
class Or:
    items: tuple[Expr, ...]
    at: Pos


@dataclass(frozen=True)
class Prime:
    expr: Expr
    at: Pos


@dataclass(frozen=True)
class Unchanged:
    expr: Expr
    at: Pos


@dataclass(frozen=True)
class If:
    cond: Expr
    then: Expr
    other: Expr
    at: Pos


@dataclass(frozen=True)
class Case:
    arms: tuple[tuple[Expr, Expr], ...]
    other: Expr | None
    at: Pos


# `x \in S`, or `<<a, b>> \in S` (a tuple of names: the set's elements are taken apart).
@dataclass(frozen=True)
class Bound:
    names: tuple[str, ...]
    tuple_pattern: bool
    domain: Expr


@dataclass(frozen=True)
class Quant:
    kind: str  # "\\E" or "\\A"
    bounds: tuple[Bound, ...]
    body: Expr
    at: Pos


@dataclass(frozen=True)
class Choose:
    bound: Bound
    body: Expr
    at: Pos


@dataclass(frozen=True)
class SetEnum:
    items: tuple[Expr, ...]
    at: Pos


@dataclass(frozen=True)
class SetMap:
    """`{e : x \\in S}`"""
    expr: Expr
    bounds: tuple[Bound, ...]
    at: Pos


@dataclass(frozen=True)
class SetFilter:
    """`{x \\in S : P}`"""
    bound: Bound
    pred: Expr
    at: Pos


@dataclass(frozen=True)
class Tuple:
    items: tuple[Expr, ...]
    at: Pos


@dataclass(frozen=True)
class Record:
    fields: tuple[tuple[str, Expr], ...]
    at: Pos


@dataclass(frozen=True)
class RecordSet:
    """`[a : S, b : T]`"""
    fields: tuple[tuple[str, Expr], ...]
    at: Pos


@dataclass(frozen=True)
class FnCons:
    """`[x \\in S |-> e]`"""
    bounds: tuple[Bound, ...]
    body: Expr
    at: Pos


@dataclass(frozen=True)
class FnSet:
    """`[S -> T]`"""
    domain: Expr
    codomain: Expr
    at: Pos


@dataclass(frozen=True)
class FnApp:
    fn: Expr
    args: tuple[Expr, ...]
    at: Pos


@dataclass(frozen=True)
class Field:
    expr: Expr
    name: str
    at: Pos


@dataclass(frozen=True)
class Except:
    """`[f EXCEPT ![a].b = e, ...]`: each update is a path of keys (an Expr for `[a]`, a str for
    `.b`) and the new value, in which `@` is the old one."""
    fn: Expr
    updates: tuple[tuple[tuple[Expr | str, ...], Expr], ...]
    at: Pos


@dataclass(frozen=True)
class At:
    """`@` in an EXCEPT update: the value being replaced."""
    at: Pos


@dataclass(frozen=True)
class Let:
    defs: tuple[Definition, ...]
    body: Expr
    at: Pos


@dataclass(frozen=True)
class BoxAction:
    """`[A]_v`: A or v unchanged."""
    action: Expr
    sub: Expr
    at: Pos


@dataclass(frozen=True)
class AngleAction:
    """`<<A>>_v`: A and v changed."""
    action: Expr
    sub: Expr
    at: Pos


@dataclass(frozen=True)
class Temporal:
    """`[]F`, `<>F`, `F ~> G`, `WF_v(A)`, `SF_v(A)`, `ENABLED A`: parsed, not checked (but for
    `[][A]_v` and `[]P` as properties)."""
    op: str
    args: tuple[Expr, ...]
    at: Pos


Expr = (
    Num | Str | Bool | Name | Apply | InstanceRef | OpCall | And | Or | Prime | Unchanged | If | Case
    | Quant | Choose | SetEnum | SetMap | SetFilter | Tuple | Record | RecordSet | FnCons | FnSet
    | FnApp | Field | Except | At | Let | BoxAction | AngleAction | Temporal
)


@dataclass(frozen=True)
class Definition:
    name: str
    params: tuple[str, ...]
    body: Expr
    local: bool
    at: Pos


@dataclass(frozen=True)
class Instance:
    """`N == INSTANCE M WITH a <- e` (name None: `INSTANCE M`, its definitions imported)."""
    name: str | None
    module: str
    substitutions: tuple[tuple[str, Expr], ...]
    local: bool
    at: Pos


@dataclass
class Module:
    name: str
    path: str
    extends: list[str] = field(default_factory=list)
    variables: list[str] = field(default_factory=list)
    constants: list[str] = field(default_factory=list)
    definitions: dict[str, Definition] = field(default_factory=dict)
    instances: list[Instance] = field(default_factory=list)
    recursive: set[str] = field(default_factory=set)
    assumptions: list[Expr] = field(default_factory=list)
