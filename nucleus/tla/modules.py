"""Modules as the evaluator sees them: each one instantiated in a context (a `Scope`), with what
its names stand for.

* The root module's variables, with those of the modules it EXTENDS, are the state: variable i
  is `VarRef(i)`. Its constants take their values from the .cfg.
* `EXTENDS M` makes M's variables, constants and definitions the extending module's own (but for
  M's LOCAL ones).
* `N == INSTANCE M WITH x <- e` makes M's definitions `N!Op`, with each variable and constant of
  M replaced by the expression given (`Subst`), or, when none is given, by the symbol of the same
  name in the instantiating module (System's `LC == INSTANCE Lifecycle` shares `lc_status` and
  `event`). `INSTANCE M` without a name imports the definitions; LOCAL keeps them private.
* Standard modules (Naturals, Sequences, ..., TLC) bring operators (builtins.py), not files.

A definition can be overridden by name (`overrides`): the walks and CI check System with a
smaller `MaxMounts` than the spec's, without a copy of the spec.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from nucleus.tla import syntax as s
from nucleus.tla.builtins import STANDARD
from nucleus.tla.errors import SpecError
from nucleus.tla.parser import parse_module
from nucleus.tla.values import Value


@dataclass(frozen=True)
class VarRef:
    """A variable of the root module: its place in the state tuple."""
    index: int
    name: str


@dataclass(frozen=True)
class Subst:
    """A variable or constant replaced by an expression of the instantiating module."""
    expr: s.Expr
    scope: Scope


@dataclass(frozen=True)
class ConstValue:
    value: Value


Binding = VarRef | Subst | ConstValue


@dataclass(eq=False)
class Scope:
    """One module in one context: what each of its names stands for."""
    module: s.Module
    vars: dict[str, Binding]
    consts: dict[str, Binding]
    defs: dict[str, tuple[s.Definition, Scope]] = field(default_factory=dict)
    instances: dict[str, Scope] = field(default_factory=dict)
    std: set[str] = field(default_factory=set)
    # What a module that extends or instantiates this one sees.
    public: dict[str, tuple[s.Definition, Scope]] = field(default_factory=dict)
    public_instances: dict[str, Scope] = field(default_factory=dict)
    public_std: set[str] = field(default_factory=set)

    def where(self, at: s.Pos) -> str:
        return f"{self.module.path}:{at[0]}:{at[1]}"

    def has(self, name: str) -> bool:
        return name in self.defs or name in self.vars or name in self.consts


class Loader:
    """Reads modules from one directory (formal/, or a copy of it) and instantiates them."""

    def __init__(self, directory: Path, overrides: dict[str, s.Expr] | None = None) -> None:
        self.directory = directory
        self.overrides = dict(overrides or {})
        self.overridden: set[str] = set()
        self._modules: dict[str, s.Module] = {}

    def module(self, name: str) -> s.Module:
        if name not in self._modules:
            path = self.directory / f"{name}.tla"
            if not path.is_file():
                raise SpecError(f"no module {name}: {path} does not exist")
            mod = parse_module(path.read_text(), path)
            if mod.name != name:
                raise SpecError(f"{path}: the module is named {mod.name}, not {name}")
            self._modules[name] = self._override(mod)
        return self._modules[name]

    def _override(self, mod: s.Module) -> s.Module:
        for name, expr in self.overrides.items():
            d = mod.definitions.get(name)
            if d is not None:
                if d.params:
                    raise SpecError(f"{mod.path}: {name} takes arguments: it cannot be overridden by a value")
                mod.definitions[name] = dataclasses.replace(d, body=expr)
                self.overridden.add(name)
        return mod

    def declared(self, mod: s.Module, attr: str, seen: frozenset[str] = frozenset()) -> list[str]:
        """The variables (attr "variables") or constants of a module and of those it extends."""
        if mod.name in seen:
            raise SpecError(f"{mod.path}: EXTENDS loops back to {mod.name}")
        names: list[str] = []
        for ext in mod.extends:
            if ext not in STANDARD:
                names += [n for n in self.declared(self.module(ext), attr, seen | {mod.name}) if n not in names]
        return names + [n for n in getattr(mod, attr) if n not in names]

    def scope(self, mod: s.Module, bindings: dict[str, Binding], consts: dict[str, Binding],
              stack: tuple[str, ...] = ()) -> Scope:
        if mod.name in stack:
            raise SpecError(f"{mod.path}: module {mod.name} instantiates itself ({' -> '.join(stack)})")
        stack = (*stack, mod.name)
        scope = Scope(mod, bindings, consts)
        for ext in mod.extends:
            if ext in STANDARD:
                scope.std |= STANDARD[ext]
                scope.public_std |= STANDARD[ext]
                continue
            sub = self.scope(self.module(ext), bindings, consts, stack)
            scope.defs.update(sub.public)
            scope.public.update(sub.public)
            scope.instances.update(sub.public_instances)
            scope.public_instances.update(sub.public_instances)
            scope.std |= sub.public_std
            scope.public_std |= sub.public_std
        for inst in mod.instances:
            self._instance(scope, inst, stack)
        for d in mod.definitions.values():
            scope.defs[d.name] = (d, scope)
            if not d.local:
                scope.public[d.name] = (d, scope)
        return scope

    def _instance(self, scope: Scope, inst: s.Instance, stack: tuple[str, ...]) -> None:
        if inst.module in STANDARD:
            scope.std |= STANDARD[inst.module]
            if not inst.local:
                scope.public_std |= STANDARD[inst.module]
            return
        target = self.module(inst.module)
        given = dict(inst.substitutions)
        declared = {n: "variable" for n in self.declared(target, "variables")}
        declared.update({n: "constant" for n in self.declared(target, "constants")})
        for name in given:
            if name not in declared:
                raise SpecError(f"{scope.where(inst.at)}: {inst.module} has no variable or constant {name}")
        bound: dict[str, dict[str, Binding]] = {"variable": {}, "constant": {}}
        for name, what in declared.items():
            if name in given:
                binding: Binding = Subst(given[name], scope)
            elif name in scope.vars and what == "variable":
                binding = scope.vars[name]
            elif scope.has(name):
                binding = Subst(s.Name(name, inst.at), scope)
            else:
                raise SpecError(
                    f"{scope.where(inst.at)}: INSTANCE {inst.module} needs a substitute for its "
                    f"{what} {name} (WITH {name} <- ...), or a {name} in {scope.module.name}"
                )
            bound[what][name] = binding
        sub = self.scope(target, bound["variable"], bound["constant"], stack)
        if inst.name is not None:
            scope.instances[inst.name] = sub
            if not inst.local:
                scope.public_instances[inst.name] = sub
        else:
            scope.defs.update(sub.public)
            scope.instances.update(sub.public_instances)
            scope.std |= sub.public_std
            if not inst.local:
                scope.public.update(sub.public)
                scope.public_instances.update(sub.public_instances)
                scope.public_std |= sub.public_std
