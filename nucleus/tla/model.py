"""A spec with its .cfg, compiled: its variables, Init and Next (to enumerate states, and to test
given states and steps), and what the .cfg asks to check.

Properties are checked in the forms safety takes: `[][A]_v` (every step is an A step or leaves v
unchanged: an action property, checked on every transition), `[]P` for a state predicate P (an
invariant), a state predicate (true in every initial state), and conjunctions of these; and one
liveness form, `P ~> Q` for state predicates P and Q, under the weak fairness (`WF_v(A)`) of a
SPECIFICATION, A a sub-action of Next (nucleus/tla/liveness.py). Any other liveness property, and
strong fairness, is refused, not skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nucleus.tla import syntax as s
from nucleus.tla.config import Config, read_config
from nucleus.tla.errors import EvalError, SpecError
from nucleus.tla.evaluator import EMPTY, STATE, UNSET, Compiler, Env, truth
from nucleus.tla.modules import Binding, ConstValue, Loader, Scope, Subst, VarRef
from nucleus.tla.parser import parse_expression
from nucleus.tla.values import Fn, ModelValue, Value, seq, show

State = tuple[Value, ...]
StatePredicate = Callable[[State], bool]
StepPredicate = Callable[[State, State], bool]


@dataclass(frozen=True)
class LeadsTo:
    """A `P ~> Q` property of the .cfg."""

    name: str
    p: StatePredicate
    q: StatePredicate


@dataclass(frozen=True)
class Fairness:
    """`WF_v(A)` of the SPECIFICATION: `step` holds of the <<A>>_v steps (A steps that change v)."""

    text: str
    step: StepPredicate

NOWHERE: s.Pos = (0, 0)


def literal(e: s.Expr, where: str) -> Value:
    """A .cfg value: numbers, strings, Booleans, model values (bare names), sets, tuples, records."""
    if isinstance(e, s.Num | s.Str | s.Bool):
        return e.value
    if isinstance(e, s.Name):
        return ModelValue(e.name)
    if isinstance(e, s.OpCall) and e.op == "-." and isinstance(e.args[0], s.Num):
        return -e.args[0].value
    if isinstance(e, s.SetEnum):
        return frozenset(literal(i, where) for i in e.items)
    if isinstance(e, s.Tuple):
        return seq(literal(i, where) for i in e.items)
    if isinstance(e, s.Record):
        return Fn({n: literal(v, where) for n, v in e.fields})
    raise SpecError(f"{where}: a .cfg value must be a literal (number, string, set, tuple, record)")


class Model:
    def __init__(self, spec: str, directory: Path, overrides: Mapping[str, str] | None = None,
                 config: Config | None = None, require_overrides: bool = True) -> None:
        self.spec = spec
        self.directory = directory
        loader = Loader(directory, {n: parse_expression(v, f"--define {n}") for n, v in (overrides or {}).items()})
        mod = loader.module(spec)
        self.config = config or read_config(directory / f"{spec}.cfg")
        self.variables: tuple[str, ...] = tuple(loader.declared(mod, "variables"))
        consts: dict[str, Binding] = {}
        declared = loader.declared(mod, "constants")
        for name, expr in self.config.constants.items():
            if name not in declared:
                raise SpecError(f"{self.config.path}: {name} is not a CONSTANT of {spec}")
            consts[name] = ConstValue(literal(expr, self.config.path))
        self.scope: Scope = loader.scope(mod, {v: VarRef(i, v) for i, v in enumerate(self.variables)}, consts)
        for name, target in self.config.substitutions.items():
            if name not in declared:
                raise SpecError(f"{self.config.path}: {name} is not a CONSTANT of {spec}")
            consts[name] = Subst(s.Name(target, NOWHERE), self.scope)
        missing = [c for c in declared if c not in consts]
        if missing:
            raise SpecError(f"{self.config.path}: no value for the constant(s) {', '.join(missing)}")
        self.overridden = frozenset(loader.overridden)  # the overrides this spec has a definition for
        unused = set(loader.overrides) - loader.overridden
        if unused and require_overrides:
            raise SpecError(f"--define {', '.join(sorted(unused))}: no such definition in {spec} or its modules")
        self.compiler = Compiler(self.variables)
        self.fairness: list[Fairness] = []
        init, step = self._init_next()
        self._init_act = self.compiler.action(init, self.scope, Env(init=True))
        self._next_act = self.compiler.action(step, self.scope, Env())
        self._init_value = self.compiler.value(init, self.scope, Env()).fn
        self._next_value = self.compiler.value(step, self.scope, Env()).fn
        self.invariants: list[tuple[str, StatePredicate]] = [
            (n, self.state_predicate(s.Name(n, NOWHERE), f"INVARIANT {n}")) for n in self.config.invariants
        ]
        self.initial_checks: list[tuple[str, StatePredicate]] = []
        self.action_properties: list[tuple[str, StepPredicate]] = []
        self.leads_to: list[LeadsTo] = []
        for name in self.config.properties:
            self._property(name, s.Name(name, NOWHERE), self.scope)
        self.constraints = [self.state_predicate(s.Name(n, NOWHERE), f"CONSTRAINT {n}")
                            for n in self.config.constraints]
        self.action_constraints = [self.step_predicate(s.Name(n, NOWHERE), self.scope)
                                   for n in self.config.action_constraints]
        for assumption in mod.assumptions:
            if not truth(self.compiler.value(assumption, self.scope, Env()).fn((), None, EMPTY), spec):
                raise SpecError(f"{mod.path}: an ASSUME does not hold")

    # -- what the .cfg names --------------------------------------------------------------

    def definition(self, name: str, scope: Scope) -> tuple[s.Definition, Scope]:
        found = scope.defs.get(name)
        if found is None:
            raise SpecError(f"{self.config.path}: {scope.module.name} defines no {name}")
        return found

    def _init_next(self) -> tuple[s.Expr, s.Expr]:
        if self.config.specification is None:
            assert self.config.init is not None and self.config.next is not None
            for name in (self.config.init, self.config.next):
                self.definition(name, self.scope)
            return s.Name(self.config.init, NOWHERE), s.Name(self.config.next, NOWHERE)
        d, scope = self.definition(self.config.specification, self.scope)
        inits: list[s.Expr] = []
        nexts: list[s.Expr] = []
        for item in Compiler.flatten(d.body):
            if isinstance(item, s.Temporal) and item.op == "[]" and isinstance(item.args[0], s.BoxAction):
                nexts.append(item.args[0].action)
            elif isinstance(item, s.Temporal) and item.op in ("WF", "SF"):
                self._fairness(item, scope)
            elif isinstance(item, s.Name) and self._fairness_definition(item.name, scope):
                continue
            else:
                inits.append(item)
        if len(nexts) != 1 or scope is not self.scope:
            raise SpecError(f"{self.config.path}: SPECIFICATION {d.name} is not Init /\\ [][Next]_v")
        return s.And(tuple(inits), d.at), nexts[0]

    def _fairness_definition(self, name: str, scope: Scope) -> bool:
        """Whether `name` is a definition made of fairness conditions only (taken if so)."""
        found = scope.defs.get(name)
        if found is None or found[0].params:
            return False
        items = Compiler.flatten(found[0].body)
        if not all(isinstance(i, s.Temporal) and i.op in ("WF", "SF") for i in items):
            return False
        for item in items:
            assert isinstance(item, s.Temporal)
            self._fairness(item, found[1])
        return True

    def _fairness(self, e: s.Temporal, scope: Scope) -> None:
        sub, action = e.args
        text = f"{e.op}_{sub.name if isinstance(sub, s.Name) else '<<...>>'}(...) at line {e.at[0]}"
        if e.op == "SF":
            raise SpecError(f"{self.config.path}: {text}: strong fairness is not checked by this checker")
        taken = self.step_predicate(action, scope)
        unchanged = self.step_predicate(s.Unchanged(sub, e.at), scope)
        self.fairness.append(Fairness(text, lambda a, b: not unchanged(a, b) and taken(a, b)))

    def state_predicate(self, e: s.Expr, what: str, scope: Scope | None = None) -> StatePredicate:
        code = self.compiler.value(e, scope or self.scope, Env())
        if code.level > STATE:
            raise SpecError(f"{self.config.path}: {what} is not a state predicate")
        fn = code.fn
        return lambda state: truth(fn(state, None, EMPTY), what)

    def step_predicate(self, e: s.Expr, scope: Scope) -> StepPredicate:
        fn = self.compiler.value(e, scope, Env()).fn
        return lambda state, after: truth(fn(state, after, EMPTY), "an action property")

    def _property(self, name: str, e: s.Expr, scope: Scope) -> None:
        if isinstance(e, s.And):
            for item in e.items:
                self._property(name, item, scope)
            return
        if isinstance(e, s.Name) and e.name in scope.defs:
            d, dscope = scope.defs[e.name]
            if not d.params:
                self._property(name, d.body, dscope)
                return
        if isinstance(e, s.Temporal) and e.op == "[]" and isinstance(e.args[0], s.BoxAction):
            box = e.args[0]
            either = s.Or((box.action, s.Unchanged(box.sub, box.at)), box.at)
            self.action_properties.append((name, self.step_predicate(either, scope)))
            return
        if isinstance(e, s.Temporal) and e.op == "~>":
            p, q = (self.state_predicate(x, f"PROPERTY {name}: each side of ~>", scope) for x in e.args)
            self.leads_to.append(LeadsTo(name, p, q))
            return
        if isinstance(e, s.Temporal) and e.op == "[]":
            self.invariants.append((name, self.state_predicate(e.args[0], f"PROPERTY {name}", scope)))
            return
        if not isinstance(e, s.Temporal | s.BoxAction | s.AngleAction):
            code = self.compiler.value(e, scope, Env())
            if code.level <= STATE:
                self.initial_checks.append((name, self.state_predicate(e, f"PROPERTY {name}", scope)))
                return
        raise SpecError(
            f"{self.config.path}: PROPERTY {name}: only safety properties ([][A]_v, []P) and P ~> Q "
            "are checked by this checker"
        )

    # -- states ---------------------------------------------------------------------------

    def initial_states(self) -> list[State]:
        found: list[State] = []
        state = [UNSET] * len(self.variables)

        def emit() -> None:
            self._complete(state, "Init")
            found.append(tuple(state))
        self._init_act(state, None, EMPTY, emit)
        return list(dict.fromkeys(found))

    def successors(self, state: State) -> list[State]:
        """Every state Next leads to from `state` (with repetitions, as TLC generates them)."""
        found: list[State] = []
        after = [UNSET] * len(self.variables)

        def emit() -> None:
            if UNSET in after:
                self._complete(after, "Next")
            found.append(tuple(after))
        self._next_act(state, after, EMPTY, emit)
        return found

    def _complete(self, values: list[Any], what: str) -> None:
        missing = [v for v, x in zip(self.variables, values, strict=True) if x is UNSET]
        if missing:
            primes = "'" if what == "Next" else ""
            raise EvalError(f"{self.spec}: a {what} step leaves {', '.join(m + primes for m in missing)} undetermined")

    def is_initial(self, state: State) -> bool:
        """Init with the variables bound to `state`."""
        return truth(self._init_value(state, None, EMPTY), "Init")

    def is_step(self, state: State, after: State) -> bool:
        """Next with the unprimed variables bound to `state` and the primed ones to `after`."""
        return truth(self._next_value(state, after, EMPTY), "Next")

    def explain(self, name: str, state: State) -> list[str]:
        """The chain of definitions down to the false conjunct of a violated invariant:
        ["Inv", "LC!Inv", "SecuredBeforeRun"]."""
        chain = [name]
        d, scope = self.definition(name, self.scope)
        while not d.params:
            false = None
            for item in Compiler.flatten(d.body):
                code = self.compiler.value(item, scope, Env())
                if code.level <= STATE and code.fn(state, None, EMPTY) is False:
                    false = item
                    break
            if isinstance(false, s.Name) and false.name in scope.defs:
                d, scope = scope.defs[false.name]
                chain.append(false.name)
            elif isinstance(false, s.InstanceRef) and not false.args:
                inner = self.compiler.instance_scope(false.path, scope, false.at)
                d, scope = inner.public[false.name]
                chain.append("!".join((*false.path, false.name)))
            else:
                break
        return chain

    def show_state(self, state: State, before: State | None = None) -> list[str]:
        """`/\\ x = v` lines: every variable, or those that differ from `before`."""
        return [f"/\\ {n} = {show(v)}" for i, (n, v) in enumerate(zip(self.variables, state, strict=True))
                if before is None or before[i] != v or type(before[i]) is not type(v)]
