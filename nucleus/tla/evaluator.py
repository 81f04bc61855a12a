"""The evaluator: expressions compiled once into Python closures, then run on states.

A compiled expression is `fn(c, x, bn)`: `c` is the state (a tuple of the root module's
variables, see modules.py), `x` the next state where primed variables are read (a list, with
UNSET where not yet assigned), `bn` the values of bound names (quantifiers, parameters, LET).
Compiling resolves every name once, folds constant subexpressions (`Statuses`, `1..MaxSteps`),
and records each expression's level: 0 constant, 1 state, 2 action (primed), 3 temporal.

Two modes:

* value mode (`value`): the expression's value. Invariants, properties, and a Next step between
  two given states (trace conformance: Next with every primed variable bound) are evaluated so.
* action mode (`action`): every way of satisfying an action, as TLC finds successor states. The
  conjuncts of a /\\ are taken in order: `x' = e` assigns x' if it is not assigned yet (else
  compares), `x' \\in S` tries each element, `UNCHANGED <<x, y>>` assigns x' = x and y' = y; a
  conjunct of level 0 or 1 is a guard; \\/, \\E, IF, CASE, LET and definitions of level 2 are
  entered. Each complete assignment is passed to a continuation `k()`; assignments are undone on
  the way back. In Init mode the unprimed variables are the ones assigned.

Operator arguments are evaluated where the operator is applied (call by value), which is TLA+'s
meaning unless the operator primes its parameter; that is refused rather than got wrong.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from nucleus.tla import syntax as s
from nucleus.tla.builtins import (
    ALWAYS,
    BINARY,
    BUILT_IN,
    CONSTANTS,
    NAMED,
    STANDARD,
    TLC_ONLY,
    UNARY,
    equal,
    fn_apply,
    function_set,
    member,
    record_set,
)
from nucleus.tla.errors import EvalError, SpecError
from nucleus.tla.modules import Binding, ConstValue, Scope, Subst, VarRef
from nucleus.tla.values import Fn, Infinite, elements, seq, seq_items, show

CONST, STATE, ACTION, TEMPORAL = 0, 1, 2, 3
# The parts of a conjunction in action mode: a guard, `x' = e`, UNCHANGED variables, `x' \in S`,
# and a subaction entered with the rest of the conjunction as its continuation.
GUARD, ASSIGN, SAME, CHOOSE, ENTER = range(5)


class _Unset:
    def __repr__(self) -> str:
        return "<unassigned>"


UNSET: Any = _Unset()
EMPTY: dict[str, Any] = {}

Fn3 = Callable[[Any, Any, Any], Any]
Act = Callable[[Any, Any, Any, Callable[[], None]], None]


@dataclass(frozen=True)
class Code:
    fn: Fn3
    level: int
    static: bool  # no state and no bound names: folded into a constant


@dataclass(frozen=True)
class Env:
    """What the compiler knows about the place an expression is in."""
    locals: tuple[tuple[str, str, int], ...] = ()  # (name, kind, level); kind: value, param, thunk, op
    primed: bool = False
    init: bool = False  # Init mode: variables may be read before they are assigned
    # Parameters and LET definitions bound outside the innermost prime: their values were taken
    # unprimed, so `p'` would be wrong; refused (a definition primed as a whole is fine: its
    # arguments are primed where it is applied).
    unprimed: frozenset[str] = frozenset()

    def local(self, name: str) -> tuple[str, int] | None:
        for n, kind, level in reversed(self.locals):
            if n == name:
                return kind, level
        return None

    def bind(self, names: tuple[str, ...], kind: str = "value", level: int = CONST) -> Env:
        return replace(self, locals=self.locals + tuple((n, kind, level) for n in names),
                       unprimed=self.unprimed - set(names))


@functools.cache
def snake_case(name: str) -> str:
    """A syntax node's class name as the name of its compiling method: SetMap -> set_map."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def const(value: Any) -> Code:
    return Code(lambda c, x, bn: value, CONST, True)


class Thunk:
    """A LET definition without arguments: evaluated when first used."""

    __slots__ = ("bn", "c", "done", "fn", "value", "x")

    def __init__(self, fn: Fn3, c: Any, x: Any, bn: dict[str, Any]) -> None:
        self.fn, self.c, self.x, self.bn = fn, c, x, bn
        self.done = False
        self.value: Any = None

    def get(self) -> Any:
        if not self.done:
            self.value = self.fn(self.c, self.x, self.bn)
            self.done = True
        return self.value


class LetOp:
    """A LET definition with arguments."""

    __slots__ = ("bn", "fn", "params")

    def __init__(self, fn: Fn3, params: tuple[str, ...], bn: dict[str, Any]) -> None:
        self.fn, self.params, self.bn = fn, params, bn

    def __call__(self, c: Any, x: Any, args: list[Any]) -> Any:
        return self.fn(c, x, {**self.bn, **dict(zip(self.params, args, strict=True))})


def per_state(fn: Fn3) -> Fn3:
    """A state function evaluated once per state: `Plan`, `UnderWay`, `IsoNext` are read by many
    guards of one state's successors. The state is an immutable tuple, kept here while cached,
    so its identity is a safe key."""
    last: list[Any] = [None, None]

    def cached(c: Any, x: Any, bn: Any) -> Any:
        if c is last[0]:
            return last[1]
        value = fn(c, x, bn)
        if type(c) is tuple:
            last[0], last[1] = c, value
        return value
    return cached


def passes(pre: tuple[Fn3, ...], c: Any, x: Any) -> bool:
    """Whether an action's hoisted guards hold. Each is a state predicate that one of its
    conjuncts must satisfy and that reads no bound name: checked once before a quantifier's loop
    or an operator's arguments are built, it spares the work for the (many) actions that are not
    enabled. An error is not reported here but where the guard is evaluated in order."""
    for g in pre:
        try:
            if g(c, x, EMPTY) is False:
                return False
        except EvalError:
            return True
    return True


def mentions(e: Any, names: frozenset[str]) -> bool:
    """Whether expression `e` uses any of `names` (syntactically: bound names are lexical)."""
    if isinstance(e, s.Name | s.Apply):
        if e.name in names:
            return True
    elif isinstance(e, s.At):
        return "@" in names
    elif isinstance(e, s.Bound):
        return mentions(e.domain, names)
    if isinstance(e, tuple):
        return any(mentions(i, names) for i in e)
    if hasattr(e, "__dataclass_fields__"):
        return any(mentions(getattr(e, f), names) for f in e.__dataclass_fields__ if f != "at")
    return False


def truth(value: Any, where: str) -> bool:
    if value is True or value is False:
        return bool(value)
    raise EvalError(f"{where}: {show(value)} is not a Boolean")


class Compiler:
    """Compiles expressions of a loaded spec; definitions are compiled once per (scope, mode)."""

    def __init__(self, variables: tuple[str, ...]) -> None:
        self.variables = variables
        self._defs: dict[tuple[int, int, bool, bool], Code] = {}
        self._def_acts: dict[tuple[int, int, bool], Act] = {}
        self._compiling: set[tuple[int, int, bool, bool]] = set()
        self._cells: dict[tuple[int, int, bool, bool], list[Fn3]] = {}
        # An action's necessary guards that read no bound name (see `passes`).
        self._pre: dict[Act, tuple[Fn3, ...]] = {}

    # -- names ----------------------------------------------------------------------------

    def definition(self, d: s.Definition, scope: Scope, env: Env) -> Code:
        """A module-level definition's body, compiled with its parameters as bound names."""
        key = (id(d), id(scope), env.primed, env.init)
        found = self._defs.get(key)
        if found is not None:
            return found
        if key in self._compiling:  # RECURSIVE: called through a cell filled in below
            cell = self._cells.setdefault(key, [])
            return Code(lambda c, x, bn: cell[0](c, x, bn), ACTION, False)
        self._compiling.add(key)
        try:
            code = self.value(d.body, scope, Env(tuple((p, "param", CONST) for p in d.params),
                                                  env.primed, env.init))
        finally:
            self._compiling.discard(key)
        if not d.params and code.level == STATE and not env.init:
            code = Code(per_state(code.fn), STATE, False)
        if key in self._cells:
            self._cells[key].append(code.fn)
        self._defs[key] = code
        return code

    def instance_scope(self, path: tuple[str, ...], scope: Scope, at: s.Pos) -> Scope:
        for name in path:
            inner = scope.instances.get(name)
            if inner is None:
                raise SpecError(f"{scope.where(at)}: no instance {name} in {scope.module.name}")
            scope = inner
        return scope

    def variable(self, binding: Binding, name: str, env: Env) -> Code:
        if isinstance(binding, ConstValue):
            return const(binding.value)
        if isinstance(binding, Subst):
            return self.value(binding.expr, binding.scope, Env((), env.primed, env.init))
        i = binding.index
        if not env.primed and not env.init:
            return Code(lambda c, x, bn: c[i], STATE, False)
        # x' in the next state, or x in Init: either may not be assigned yet
        primed = env.primed
        unset = f"{name}' is read before it is assigned" if primed else f"{name} is read before Init assigns it"

        def read_assigned(c: Any, x: Any, bn: Any) -> Any:
            v = x[i] if primed else c[i]
            if v is UNSET:
                raise EvalError(unset)
            return v
        return Code(read_assigned, ACTION if primed else STATE, False)

    def call(self, body: Code, params: tuple[str, ...], args: list[Code], name: str,
             scope: Scope, at: s.Pos) -> Code:
        if len(args) != len(params):
            raise SpecError(f"{scope.where(at)}: {name} takes {len(params)} argument(s), not {len(args)}")
        fn = body.fn
        level = max([body.level, *(a.level for a in args)])
        static = body.level == CONST and all(a.static for a in args)
        if not params:  # the body reads no bound name of the caller: it is resolved lexically
            return body
        fns = [a.fn for a in args]
        if len(params) == 1:
            p0, f0 = params[0], fns[0]
            return self.fold(lambda c, x, bn: fn(c, x, {p0: f0(c, x, bn)}), level, static)
        pairs = list(zip(params, fns, strict=True))
        return self.fold(lambda c, x, bn: fn(c, x, {p: f(c, x, bn) for p, f in pairs}), level, static)

    def fold(self, fn: Fn3, level: int, static: bool) -> Code:
        if static:
            try:
                return const(fn(None, None, EMPTY))
            except EvalError:
                pass  # raised when (if ever) evaluated
        return Code(fn, level, False)

    def name(self, e: s.Name, scope: Scope, env: Env) -> Code:
        n = e.name
        local = env.local(n)
        if local is not None:
            kind, level = local
            self.primeable(n, scope, env, e.at)
            if kind == "thunk":
                return Code(lambda c, x, bn: bn[n].get(), level, False)
            if kind == "op":
                raise SpecError(f"{scope.where(e.at)}: {n} needs arguments")
            return Code(lambda c, x, bn: bn[n], level, False)
        found = scope.defs.get(n)
        if found is not None:
            d, dscope = found
            return self.call(self.definition(d, dscope, env), d.params, [], n, scope, e.at)
        if n in scope.vars:
            return self.variable(scope.vars[n], n, env)
        if n in scope.consts:
            return self.variable(scope.consts[n], n, env)
        if n in ALWAYS:
            return const(ALWAYS[n])
        if n in CONSTANTS:
            self.need(n, scope, e.at)
            return const(CONSTANTS[n])
        raise SpecError(f"{scope.where(e.at)}: unknown name {n}")

    @staticmethod
    def primeable(name: str, scope: Scope, env: Env, at: s.Pos) -> None:
        if name in env.unprimed:
            raise SpecError(f"{scope.where(at)}: priming {name}, a parameter or LET definition, is not supported")

    def need(self, op: str, scope: Scope, at: s.Pos) -> None:
        """Refuse a standard module's operator in a module that does not extend or instantiate it."""
        if op in BUILT_IN or op in scope.std:
            return
        home = next((m for m, names in STANDARD.items() if op in names), None)
        hint = f": it needs EXTENDS {home}" if home else ""
        raise SpecError(f"{scope.where(at)}: {op} is not defined in {scope.module.name}{hint}")

    def apply(self, e: s.Apply | s.InstanceRef, scope: Scope, env: Env) -> Code:
        args = [self.value(a, scope, env) for a in e.args]
        if isinstance(e, s.InstanceRef):
            inner = self.instance_scope(e.path, scope, e.at)
            found = inner.public.get(e.name)
            if found is None:
                raise SpecError(f"{scope.where(e.at)}: {inner.module.name} defines no {e.name}")
            d, dscope = found
            return self.call(self.definition(d, dscope, env), d.params, args, "!".join((*e.path, e.name)),
                             scope, e.at)
        n = e.name
        local = env.local(n)
        if local is not None:
            self.primeable(n, scope, env, e.at)
            if local[0] != "op":
                raise SpecError(f"{scope.where(e.at)}: {n} takes no arguments")
            fns = [a.fn for a in args]
            return Code(lambda c, x, bn: bn[n](c, x, [f(c, x, bn) for f in fns]), max(
                [local[1], *(a.level for a in args)]), False)
        found = scope.defs.get(n)
        if found is not None:
            d, dscope = found
            return self.call(self.definition(d, dscope, env), d.params, args, n, scope, e.at)
        if n in TLC_ONLY and n in scope.std:
            raise SpecError(f"{scope.where(e.at)}: {n} (module {TLC_ONLY[n]}) depends on TLC's run: "
                            "this checker does not evaluate it")
        if n in NAMED:
            self.need(n, scope, e.at)
            arity, op = NAMED[n]
            if arity != len(args):
                raise SpecError(f"{scope.where(e.at)}: {n} takes {arity} argument(s), not {len(args)}")
            fns = [a.fn for a in args]
            where = scope.where(e.at)

            def builtin(c: Any, x: Any, bn: Any) -> Any:
                try:
                    return op(*(f(c, x, bn) for f in fns))
                except EvalError as err:
                    raise EvalError(f"{where}: {err}") from None
            return self.fold(builtin, max([CONST, *(a.level for a in args)]), all(a.static for a in args))
        raise SpecError(f"{scope.where(e.at)}: unknown operator {n}")

    # -- value mode -----------------------------------------------------------------------

    def value(self, e: s.Expr, scope: Scope, env: Env) -> Code:
        method = getattr(self, "v_" + snake_case(type(e).__name__), None)
        if method is None:
            raise SpecError(f"{scope.where(e.at)}: {type(e).__name__} cannot be evaluated here")
        return method(e, scope, env)  # type: ignore[no-any-return]

    def v_num(self, e: s.Num, scope: Scope, env: Env) -> Code:
        return const(e.value)

    v_str = v_num
    v_bool = v_num

    def v_name(self, e: s.Name, scope: Scope, env: Env) -> Code:
        return self.name(e, scope, env)

    def v_apply(self, e: s.Apply, scope: Scope, env: Env) -> Code:
        return self.apply(e, scope, env)

    v_instance_ref = v_apply

    def v_op_call(self, e: s.OpCall, scope: Scope, env: Env) -> Code:
        self.need(e.op, scope, e.at)
        args = [self.value(a, scope, env) for a in e.args]
        level = max(a.level for a in args)
        static = all(a.static for a in args)
        where = scope.where(e.at)
        if len(args) == 1:
            op1, f = UNARY[e.op], args[0].fn

            def unary(c: Any, x: Any, bn: Any) -> Any:
                try:
                    return op1(f(c, x, bn))
                except EvalError as err:
                    raise EvalError(f"{where}: {err}") from None
            return self.fold(unary, level, static)
        a, b = args[0].fn, args[1].fn
        if e.op == "=>":
            return self.fold(lambda c, x, bn: not truth(a(c, x, bn), where) or truth(b(c, x, bn), where),
                             level, static)
        if e.op in ("\\in", "\\notin") and args[1].static:
            domain = b(None, None, EMPTY)
            if type(domain) is not frozenset and not isinstance(domain, Infinite):
                raise SpecError(f"{where}: {show(domain)} is not a set")
            if e.op == "\\in":
                return Code(lambda c, x, bn: a(c, x, bn) in domain, level, False)
            return Code(lambda c, x, bn: a(c, x, bn) not in domain, level, False)
        if e.op == "=" and args[1].static and type(b(None, None, EMPTY)) in (str, bool, int):
            v = b(None, None, EMPTY)
            t = type(v)

            def equal_const(c: Any, x: Any, bn: Any) -> bool:
                r = a(c, x, bn)
                if type(r) is t:
                    return bool(r == v)
                try:
                    return equal(r, v)
                except EvalError as err:
                    raise EvalError(f"{where}: {err}") from None
            return Code(equal_const, level, False)
        fast = self.fast_binary(e.op, a, b, where)
        if fast is not None:
            return self.fold(fast, level, static)
        op2 = BINARY[e.op]

        def binary(c: Any, x: Any, bn: Any) -> Any:
            try:
                return op2(a(c, x, bn), b(c, x, bn))
            except EvalError as err:
                raise EvalError(f"{where}: {err}") from None
        return self.fold(binary, level, static)

    @staticmethod
    def fast_binary(op: str, a: Fn3, b: Fn3, where: str) -> Fn3 | None:
        """=, # and integer arithmetic and comparison without the generic dispatch: values of the
        same kind are compared directly; anything else goes the checked way."""
        if op in ("=", "#"):
            same = op == "="

            def eq(c: Any, x: Any, bn: Any) -> bool:
                u, v = a(c, x, bn), b(c, x, bn)
                if type(u) is type(v):
                    return (u == v) is same
                try:
                    return equal(u, v) is same
                except EvalError as err:
                    raise EvalError(f"{where}: {err}") from None
            return eq
        pyop = {"+": int.__add__, "-": int.__sub__, "<": int.__lt__, "<=": int.__le__,
                ">": int.__gt__, ">=": int.__ge__}.get(op)
        if pyop is None:
            return None
        checked = BINARY[op]

        def arith(c: Any, x: Any, bn: Any) -> Any:
            u, v = a(c, x, bn), b(c, x, bn)
            if type(u) is int and type(v) is int:
                return pyop(u, v)
            try:
                return checked(u, v)
            except EvalError as err:
                raise EvalError(f"{where}: {err}") from None
        return arith

    def v_and(self, e: s.And, scope: Scope, env: Env) -> Code:
        return self.junction(e, scope, env, True)

    def v_or(self, e: s.Or, scope: Scope, env: Env) -> Code:
        return self.junction(e, scope, env, False)

    def junction(self, e: s.And | s.Or, scope: Scope, env: Env, conj: bool) -> Code:
        items = [self.value(i, scope, env) for i in e.items]
        fns = [i.fn for i in items]
        where = scope.where(e.at)
        stop = not conj  # /\ stops at the first FALSE, \/ at the first TRUE

        def junction(c: Any, x: Any, bn: Any) -> bool:
            for f in fns:
                v = f(c, x, bn)
                if v is stop:
                    return not conj
                if v is not conj:
                    truth(v, where)
            return conj
        return self.fold(junction, max(i.level for i in items), all(i.static for i in items))

    def v_prime(self, e: s.Prime, scope: Scope, env: Env) -> Code:
        if env.primed:
            raise SpecError(f"{scope.where(e.at)}: a primed expression primed again")
        outside = frozenset(n for n, kind, _ in env.locals if kind != "value")
        return self.value(e.expr, scope, replace(env, primed=True, unprimed=outside))

    def v_unchanged(self, e: s.Unchanged, scope: Scope, env: Env) -> Code:
        after = self.value(s.Prime(e.expr, e.at), scope, env).fn
        before = self.value(e.expr, scope, env).fn
        return Code(lambda c, x, bn: equal(after(c, x, bn), before(c, x, bn)), ACTION, False)

    def v_if(self, e: s.If, scope: Scope, env: Env) -> Code:
        cond, then, other = (self.value(p, scope, env) for p in (e.cond, e.then, e.other))
        fc, ft, fo = cond.fn, then.fn, other.fn
        where = scope.where(e.at)

        def if_(c: Any, x: Any, bn: Any) -> Any:
            return ft(c, x, bn) if truth(fc(c, x, bn), where) else fo(c, x, bn)
        parts = (cond, then, other)
        return self.fold(if_, max(p.level for p in parts), all(p.static for p in parts))

    def v_case(self, e: s.Case, scope: Scope, env: Env) -> Code:
        arms = [(self.value(g, scope, env), self.value(v, scope, env)) for g, v in e.arms]
        other = self.value(e.other, scope, env) if e.other is not None else None
        fns = [(g.fn, v.fn) for g, v in arms]
        fo = other.fn if other else None
        where = scope.where(e.at)

        def case(c: Any, x: Any, bn: Any) -> Any:
            for g, v in fns:
                if truth(g(c, x, bn), where):
                    return v(c, x, bn)
            if fo is None:
                raise EvalError(f"{where}: no arm of the CASE applies")
            return fo(c, x, bn)
        parts = [p for arm in arms for p in arm] + ([other] if other else [])
        return self.fold(case, max(p.level for p in parts), all(p.static for p in parts))

    def v_let(self, e: s.Let, scope: Scope, env: Env) -> Code:
        inner, defs = self.let_defs(e, scope, env)
        body = self.value(e.body, scope, inner)
        fb = body.fn

        def let(c: Any, x: Any, bn: Any) -> Any:
            return fb(c, x, self.bind_let(defs, c, x, bn))
        return Code(let, max([body.level, *(lvl for _, _, _, lvl in defs)]), False)

    def let_defs(self, e: s.Let, scope: Scope, env: Env) -> tuple[Env, list[tuple[str, tuple[str, ...], Fn3, int]]]:
        inner = env
        defs = []
        for d in e.defs:
            # a LET definition sees the earlier ones, and itself (recursively) as an action
            kind = "op" if d.params else "thunk"
            code = self.value(d.body, scope, inner.bind((d.name,), kind, ACTION).bind(d.params, "param"))
            inner = inner.bind((d.name,), kind, code.level)
            defs.append((d.name, d.params, code.fn, code.level))
        return inner, defs

    @staticmethod
    def bind_let(defs: list[tuple[str, tuple[str, ...], Fn3, int]], c: Any, x: Any, bn: dict[str, Any]) -> dict[str, Any]:
        bn2 = dict(bn)
        for name, params, fn, _ in defs:
            bn2[name] = LetOp(fn, params, bn2) if params else Thunk(fn, c, x, bn2)
        return bn2

    def bounds(self, bounds: tuple[s.Bound, ...], scope: Scope, env: Env) -> tuple[list[tuple[tuple[str, ...], bool, Code]], Env]:
        compiled = [(b.names, b.tuple_pattern, self.value(b.domain, scope, env)) for b in bounds]
        names = tuple(n for b in bounds for n in b.names)
        return compiled, env.bind(names)

    def bindings(self, compiled: list[tuple[tuple[str, ...], bool, Code]], where: str) -> Callable[[Any, Any, dict[str, Any]], Any]:
        """A function giving, in a state, every dict of bound names for these bounds."""
        if len(compiled) == 1 and len(compiled[0][0]) == 1 and not compiled[0][1]:
            name = compiled[0][0][0]
            code = compiled[0][2]
            if code.static:
                items = elements(code.fn(None, None, EMPTY), where)
                return lambda c, x, bn: ({**bn, name: v} for v in items)
            fd = code.fn
            return lambda c, x, bn: ({**bn, name: v} for v in elements(fd(c, x, bn), where))
        flat: list[tuple[str | tuple[str, ...], Fn3]] = []
        for names, pattern, code in compiled:
            for n in names:
                flat.append((names if pattern else n, code.fn))
                if pattern:
                    break

        def all_bindings(c: Any, x: Any, bn: dict[str, Any]) -> Any:
            domains = [elements(fd(c, x, bn), where) for _, fd in flat]
            for combo in itertools.product(*domains):
                bn2 = dict(bn)
                for (target, _), v in zip(flat, combo, strict=True):
                    if isinstance(target, tuple):
                        items = seq_items(v, where)
                        if len(items) != len(target):
                            raise EvalError(f"{where}: {show(v)} does not match <<{', '.join(target)}>>")
                        bn2.update(zip(target, items, strict=True))
                    else:
                        bn2[target] = v
                yield bn2
        return all_bindings

    def v_quant(self, e: s.Quant, scope: Scope, env: Env) -> Code:
        compiled, inner = self.bounds(e.bounds, scope, env)
        body = self.value(e.body, scope, inner)
        fb = body.fn
        where = scope.where(e.at)
        each = self.bindings(compiled, where)
        exists = e.kind == "\\E"

        def quant(c: Any, x: Any, bn: Any) -> bool:
            for bn2 in each(c, x, bn):
                if truth(fb(c, x, bn2), where) is exists:
                    return exists
            return not exists
        return self.fold(quant, self.level(compiled, body), self.closed(compiled, body, env))

    @staticmethod
    def level(compiled: list[tuple[tuple[str, ...], bool, Code]], *bodies: Code) -> int:
        return max([*(b.level for b in bodies), *(code.level for _, _, code in compiled)])

    @staticmethod
    def closed(compiled: list[tuple[tuple[str, ...], bool, Code]], body: Code, env: Env) -> bool:
        """A binder whose value is a constant: constant domains and body, no outer bound names."""
        return not env.locals and body.level == CONST and all(code.static for _, _, code in compiled)

    def v_choose(self, e: s.Choose, scope: Scope, env: Env) -> Code:
        compiled, inner = self.bounds((e.bound,), scope, env)
        code = self.value(e.body, scope, inner)
        body = code.fn
        where = scope.where(e.at)
        each = self.bindings(compiled, where)
        element = self.element(e.bound)

        def choose(c: Any, x: Any, bn: Any) -> Any:
            for bn2 in each(c, x, bn):
                if truth(body(c, x, bn2), where):
                    return element(bn2)
            raise EvalError(f"{where}: CHOOSE found no value")
        return self.fold(choose, self.level(compiled, code), self.closed(compiled, code, env))

    def v_set_enum(self, e: s.SetEnum, scope: Scope, env: Env) -> Code:
        return self.collection(e.items, scope, env, frozenset)

    def v_tuple(self, e: s.Tuple, scope: Scope, env: Env) -> Code:
        return self.collection(e.items, scope, env, seq)

    def collection(self, exprs: tuple[s.Expr, ...], scope: Scope, env: Env,
                   make: Callable[[Any], Any]) -> Code:
        """{a, b} or <<a, b>>: `make` builds the value from the items' values."""
        items = [self.value(i, scope, env) for i in exprs]
        fns = [i.fn for i in items]
        return self.fold(lambda c, x, bn: make(f(c, x, bn) for f in fns),
                         max([CONST, *(i.level for i in items)]), all(i.static for i in items))

    @staticmethod
    def element(bound: s.Bound) -> Callable[[dict[str, Any]], Any]:
        """The element a binding of `x \\in S` (or `<<x, y>> \\in S`) stands for."""
        names = bound.names
        if bound.tuple_pattern:
            return lambda bn: seq(bn[n] for n in names)
        return lambda bn: bn[names[0]]

    def v_set_map(self, e: s.SetMap, scope: Scope, env: Env) -> Code:
        compiled, inner = self.bounds(e.bounds, scope, env)
        code = self.value(e.expr, scope, inner)
        fe = code.fn
        each = self.bindings(compiled, scope.where(e.at))
        return self.fold(lambda c, x, bn: frozenset(fe(c, x, bn2) for bn2 in each(c, x, bn)),
                         self.level(compiled, code), self.closed(compiled, code, env))

    def v_set_filter(self, e: s.SetFilter, scope: Scope, env: Env) -> Code:
        compiled, inner = self.bounds((e.bound,), scope, env)
        code = self.value(e.pred, scope, inner)
        fp = code.fn
        where = scope.where(e.at)
        each = self.bindings(compiled, where)
        element = self.element(e.bound)
        return self.fold(
            lambda c, x, bn: frozenset(element(bn2) for bn2 in each(c, x, bn) if truth(fp(c, x, bn2), where)),
            self.level(compiled, code), self.closed(compiled, code, env))

    def v_record(self, e: s.Record, scope: Scope, env: Env) -> Code:
        fields = [(n, self.value(v, scope, env)) for n, v in e.fields]
        fns = [(n, v.fn) for n, v in fields]
        return self.fold(lambda c, x, bn: Fn({n: f(c, x, bn) for n, f in fns}),
                         max(v.level for _, v in fields), all(v.static for _, v in fields))

    def v_record_set(self, e: s.RecordSet, scope: Scope, env: Env) -> Code:
        fields = [(n, self.value(v, scope, env)) for n, v in e.fields]
        fns = [(n, v.fn) for n, v in fields]
        return self.fold(lambda c, x, bn: record_set([(n, f(c, x, bn)) for n, f in fns]),
                         max(v.level for _, v in fields), all(v.static for _, v in fields))

    def v_fn_cons(self, e: s.FnCons, scope: Scope, env: Env) -> Code:
        compiled, inner = self.bounds(e.bounds, scope, env)
        code = self.value(e.body, scope, inner)
        body = code.fn
        each = self.bindings(compiled, scope.where(e.at))
        names = tuple(n for b in e.bounds for n in b.names)
        level, closed = self.level(compiled, code), self.closed(compiled, code, env)
        if len(names) == 1 and not e.bounds[0].tuple_pattern:
            name = names[0]
            return self.fold(lambda c, x, bn: Fn({bn2[name]: body(c, x, bn2) for bn2 in each(c, x, bn)}),
                             level, closed)
        return self.fold(
            lambda c, x, bn: Fn({seq(bn2[n] for n in names): body(c, x, bn2) for bn2 in each(c, x, bn)}),
            level, closed)

    def v_fn_set(self, e: s.FnSet, scope: Scope, env: Env) -> Code:
        dom, cod = self.value(e.domain, scope, env), self.value(e.codomain, scope, env)
        fd, fc = dom.fn, cod.fn
        return self.fold(lambda c, x, bn: function_set(fd(c, x, bn), fc(c, x, bn)),
                         max(dom.level, cod.level), dom.static and cod.static)

    def v_fn_app(self, e: s.FnApp, scope: Scope, env: Env) -> Code:
        fn = self.value(e.fn, scope, env)
        args = [self.value(a, scope, env) for a in e.args]
        ff = fn.fn
        where = scope.where(e.at)
        level = max([fn.level, *(a.level for a in args)])
        static = fn.static and all(a.static for a in args)
        if len(args) == 1:
            fa = args[0].fn
            return self.fold(lambda c, x, bn: fn_apply(ff(c, x, bn), fa(c, x, bn), where), level, static)
        fns = [a.fn for a in args]
        return self.fold(lambda c, x, bn: fn_apply(ff(c, x, bn), seq(f(c, x, bn) for f in fns), where),
                         level, static)

    def v_field(self, e: s.Field, scope: Scope, env: Env) -> Code:
        rec = self.value(e.expr, scope, env)
        fr, name, where = rec.fn, e.name, scope.where(e.at)
        return self.fold(lambda c, x, bn: fn_apply(fr(c, x, bn), name, where), rec.level, rec.static)

    def v_except(self, e: s.Except, scope: Scope, env: Env) -> Code:
        base = self.value(e.fn, scope, env)
        where = scope.where(e.at)
        inner = env.bind(("@",))
        updates = []
        level = base.level
        for path, new in e.updates:
            codes = [k if isinstance(k, str) else self.value(k, scope, env) for k in path]
            keys = [k if isinstance(k, str) else k.fn for k in codes]
            code = self.value(new, scope, inner)
            level = max([level, code.level, *(k.level for k in codes if not isinstance(k, str))])
            updates.append((keys, code.fn))
        fb = base.fn

        def put(f: Any, keys: list[Any], new: Fn3, c: Any, x: Any, bn: dict[str, Any]) -> Any:
            key = keys[0] if isinstance(keys[0], str) else keys[0](c, x, bn)
            old = fn_apply(f, key, where)
            value = new(c, x, {**bn, "@": old}) if len(keys) == 1 else put(old, keys[1:], new, c, x, bn)
            return Fn({**f.m, key: value})

        def except_(c: Any, x: Any, bn: Any) -> Any:
            f = fb(c, x, bn)
            for keys, new in updates:
                f = put(f, keys, new, c, x, bn)
            return f
        return Code(except_, level, False)

    def v_at(self, e: s.At, scope: Scope, env: Env) -> Code:
        if env.local("@") is None:
            raise SpecError(f"{scope.where(e.at)}: @ outside an EXCEPT")
        return Code(lambda c, x, bn: bn["@"], CONST, False)

    # -- action mode ----------------------------------------------------------------------

    def action(self, e: s.Expr, scope: Scope, env: Env) -> Act:
        """Every way of satisfying `e` (an Init predicate with env.init, else an action)."""
        if isinstance(e, s.And):
            return self.conjunction(self.flatten(e), scope, env)
        if isinstance(e, s.Or):
            acts = [self.action(i, scope, env) for i in e.items]

            def disjunction(c: Any, x: Any, bn: Any, k: Callable[[], None]) -> None:
                for a in acts:
                    a(c, x, bn, k)
            return disjunction
        if isinstance(e, s.If):
            cond = self.value(e.cond, scope, env).fn
            then, other = self.action(e.then, scope, env), self.action(e.other, scope, env)
            where = scope.where(e.at)

            def if_(c: Any, x: Any, bn: Any, k: Callable[[], None]) -> None:
                (then if truth(cond(c, x, bn), where) else other)(c, x, bn, k)
            return if_
        if isinstance(e, s.Case):
            arms = [(self.value(g, scope, env).fn, self.action(v, scope, env)) for g, v in e.arms]
            fo = self.action(e.other, scope, env) if e.other is not None else None
            where = scope.where(e.at)

            def case(c: Any, x: Any, bn: Any, k: Callable[[], None]) -> None:
                for g, a in arms:
                    if truth(g(c, x, bn), where):
                        a(c, x, bn, k)
                        return
                if fo is None:
                    raise EvalError(f"{where}: no arm of the CASE applies")
                fo(c, x, bn, k)
            return case
        if isinstance(e, s.Let):
            inner, defs = self.let_defs(e, scope, env)
            body = self.action(e.body, scope, inner)
            return lambda c, x, bn, k: body(c, x, self.bind_let(defs, c, x, bn), k)
        if isinstance(e, s.Quant) and e.kind == "\\E":
            compiled, inner = self.bounds(e.bounds, scope, env)
            body_act = self.action(e.body, scope, inner)
            each = self.bindings(compiled, scope.where(e.at))
            pre = self._pre.get(body_act, ())

            def exists(c: Any, x: Any, bn: Any, k: Callable[[], None]) -> None:
                if pre and not passes(pre, c, x):
                    return
                for bn2 in each(c, x, bn):
                    body_act(c, x, bn2, k)
            self._pre[exists] = pre
            return exists
        called = self.called_action(e, scope, env)
        if called is not None:
            return called
        return self.conjunction([e], scope, env)

    def called_action(self, e: s.Expr, scope: Scope, env: Env) -> Act | None:
        """A definition applied in action position, entered (unless it is a plain predicate)."""
        if isinstance(e, s.Name | s.Apply) and env.local(e.name) is None and e.name in scope.defs:
            d, dscope = scope.defs[e.name]
        elif isinstance(e, s.InstanceRef):
            inner = self.instance_scope(e.path, scope, e.at)
            if e.name not in inner.public:
                return None
            d, dscope = inner.public[e.name]
        else:
            return None
        if self.value(e, scope, env).level < (STATE if env.init else ACTION):
            return None
        args = [self.value(a, scope, env) for a in getattr(e, "args", ())]
        if len(args) != len(d.params):
            raise SpecError(f"{scope.where(e.at)}: {d.name} takes {len(d.params)} argument(s), not {len(args)}")
        key = (id(d), id(dscope), env.init)
        body = self._def_acts.get(key)
        if body is None:
            body = self.action(d.body, dscope, Env(tuple((p, "param", CONST) for p in d.params), False, env.init))
            self._def_acts[key] = body
        params = d.params
        fns = [a.fn for a in args]
        pre = self._pre.get(body, ())
        if not params:
            return body
        if len(params) == 1:
            p0, f0 = params[0], fns[0]

            def enter1(c: Any, x: Any, bn: Any, k: Callable[[], None]) -> None:
                if not pre or passes(pre, c, x):
                    body(c, x, {p0: f0(c, x, bn)}, k)
            self._pre[enter1] = pre
            return enter1
        pairs = list(zip(params, fns, strict=True))

        def enter(c: Any, x: Any, bn: Any, k: Callable[[], None]) -> None:
            if not pre or passes(pre, c, x):
                body(c, x, {p: f(c, x, bn) for p, f in pairs}, k)
        self._pre[enter] = pre
        return enter

    @staticmethod
    def flatten(e: s.Expr) -> list[s.Expr]:
        if isinstance(e, s.And):
            return [i for item in e.items for i in Compiler.flatten(item)]
        return [e]

    def target(self, e: s.Expr, scope: Scope, env: Env) -> int | None:
        """The state variable `e` assigns in this mode (x' in Next, x in Init), if it is one."""
        if not env.init:
            if not isinstance(e, s.Prime):
                return None
            e = e.expr
        if not isinstance(e, s.Name) or env.local(e.name) is not None or e.name in scope.defs:
            return None
        binding = scope.vars.get(e.name)
        while isinstance(binding, Subst) and isinstance(binding.expr, s.Name):
            inner = binding.scope
            if binding.expr.name in inner.defs:
                return None
            binding = inner.vars.get(binding.expr.name)
        return binding.index if isinstance(binding, VarRef) else None

    def unchanged(self, e: s.Expr, scope: Scope) -> list[int] | None:
        """The state variables of `UNCHANGED e`, through tuples and definitions, if that is all it is
        (a literal, such as a variable an instance's WITH replaced by a number, is unchanged)."""
        if isinstance(e, s.Num | s.Str | s.Bool):
            return []
        if isinstance(e, s.Tuple):
            found: list[int] = []
            for item in e.items:
                more = self.unchanged(item, scope)
                if more is None:
                    return None
                found += more
            return found
        if isinstance(e, s.InstanceRef) and not e.args:
            inner = self.instance_scope(e.path, scope, e.at)
            if e.name in inner.public:
                d, dscope = inner.public[e.name]
                return self.unchanged(d.body, dscope) if not d.params else None
            return None
        if not isinstance(e, s.Name):
            return None
        if e.name in scope.defs:
            d, dscope = scope.defs[e.name]
            return self.unchanged(d.body, dscope) if not d.params else None
        binding = scope.vars.get(e.name)
        if isinstance(binding, VarRef):
            return [binding.index]
        if isinstance(binding, Subst):
            return self.unchanged(binding.expr, binding.scope)
        return None

    def conjunction(self, items: list[s.Expr], scope: Scope, env: Env) -> Act:
        parts: list[tuple[int, int, Any, str]] = []
        pre: list[Fn3] = []  # guards that hold whenever this conjunction is satisfied (see passes)
        bound = frozenset(n for n, _, _ in env.locals)
        for item in items:
            where = scope.where(item.at)
            if isinstance(item, s.OpCall) and item.op in ("=", "\\in"):
                i = self.target(item.args[0], scope, env)
                if i is not None:
                    rhs = self.value(item.args[1], scope, env).fn
                    parts.append((ASSIGN if item.op == "=" else CHOOSE, i, rhs, where))
                    continue
            if isinstance(item, s.Unchanged) and not env.init:
                same = self.unchanged(item.expr, scope)
                if same is not None:
                    if parts and parts[-1][0] == SAME:  # UNCHANGED x /\ UNCHANGED y: one part
                        same = [*parts.pop()[2], *same]
                    parts.append((SAME, -1, tuple(same), where))
                    continue
            code = self.value(item, scope, env)
            if code.level <= (CONST if env.init else STATE) or not isinstance(
                    item, s.Or | s.If | s.Case | s.Let | s.Quant | s.Name | s.Apply | s.InstanceRef):
                parts.append((GUARD, -1, code.fn, where))
                if code.level <= STATE and not env.init and not mentions(item, bound):
                    pre.append(code.fn)
            else:
                act = self.action(item, scope, env)
                parts.append((ENTER, -1, act, where))
                if not any(p[0] == ENTER for p in parts[:-1]):
                    pre += self._pre.get(act, ())
        n = len(parts)
        init = env.init
        variables = self.variables

        def run(i: int, c: Any, x: Any, bn: Any, k: Callable[[], None]) -> None:
            t = c if init else x
            undo: list[int] = []
            while i < n:
                kind, var, fn, where = parts[i]
                if kind == GUARD:
                    v = fn(c, x, bn)
                    if v is not True:
                        if v is False:
                            break
                        truth(v, where)
                elif kind == SAME:
                    clash = False
                    for var in fn:
                        old = t[var]
                        if old is UNSET:
                            t[var] = c[var]
                            undo.append(var)
                        elif old != c[var] or type(old) is not type(c[var]):
                            clash = True
                            break
                    if clash:
                        break
                elif kind == ASSIGN:
                    v = fn(c, x, bn)
                    old = t[var]
                    if old is UNSET:
                        t[var] = v
                        undo.append(var)
                    elif not (old == v and type(old) is type(v)) and not equal(old, v):
                        break
                elif kind == CHOOSE:
                    domain = fn(c, x, bn)
                    old = t[var]
                    if old is not UNSET:
                        if not member(old, domain):
                            break
                    else:
                        for v in elements(domain, f"{where}: {variables[var]}"):
                            t[var] = v
                            run(i + 1, c, x, bn, k)
                        t[var] = UNSET
                        break
                else:
                    fn(c, x, bn, functools.partial(run, i + 1, c, x, bn, k))
                    break
                i += 1
            else:
                k()
            for var in undo:
                t[var] = UNSET

        def conjunction(c: Any, x: Any, bn: Any, k: Callable[[], None]) -> None:
            run(0, c, x, bn, k)
        self._pre[conjunction] = tuple(pre)
        return conjunction
