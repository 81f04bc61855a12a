"""Breadth-first model checking: every reachable state once, invariants on each new state, action
properties on every step, as TLC's exhaustive mode does, so the counts compare with TLC's:

    distinct   the reachable states
    generated  the initial states plus every successor computed (repeats included)
    depth      the number of BFS levels (the longest shortest behaviour, in states)

Breadth-first order makes a counterexample a shortest behaviour to the violation. A `~>`
property is checked once every state is found, on the graph of the search
(nucleus/tla/liveness.py).
"""

from __future__ import annotations

import time
from array import array
from dataclasses import dataclass, field

from nucleus.tla import liveness
from nucleus.tla.errors import EvalError
from nucleus.tla.model import Model, State


@dataclass
class Violation:
    kind: str  # "invariant", "property", "liveness", "deadlock", "error"
    name: str  # the .cfg's name; for an error, the message
    trace: list[State]
    detail: list[str] = field(default_factory=list)  # the false conjunct's definitions
    loop: int | None = None  # liveness: the trace goes on from its last state to trace[loop]

    def headline(self) -> str:
        n = len(self.trace)
        if self.kind == "invariant":
            why = f" ({' > '.join(self.detail)} is FALSE)" if len(self.detail) > 1 else ""
            return f"Invariant {self.name} is violated{why} in state {n} of this behaviour"
        if self.kind == "property":
            return f"Action property {self.name} is violated by step {n - 1} -> {n} of this behaviour"
        if self.kind == "liveness":
            assert self.loop is not None
            then = (f"then stutters in state {n} forever" if self.loop == n - 1
                    else f"then goes back to state {self.loop + 1}, round and round")
            return f"Temporal property {self.name} is violated by this behaviour of {n} states, which {then}"
        if self.kind == "deadlock":
            return f"Deadlock: state {n} of this behaviour has no successor"
        return f"Error in state {n} of this behaviour: {self.name}" if n else f"Error {self.name}"


@dataclass
class Result:
    spec: str
    distinct: int
    generated: int
    depth: int
    seconds: float
    violation: Violation | None = None

    @property
    def ok(self) -> bool:
        return self.violation is None

    def summary(self) -> str:
        return (f"{self.distinct:,} distinct states ({self.generated:,} generated), depth {self.depth}, "
                f"{self.seconds:.1f} s")


def check(model: Model) -> Result:
    """Explore `model` breadth-first; stop at the first violation."""
    start = time.monotonic()
    parent: dict[State, State | None] = {}
    generated = 0
    depth = 0

    def result(violation: Violation | None = None) -> Result:
        return Result(model.spec, len(parent), generated, depth, time.monotonic() - start, violation)

    def trace_to(state: State) -> list[State]:
        states: list[State] = []
        at: State | None = state
        while at is not None:
            states.append(at)
            at = parent[at]
        return states[::-1]

    def broken(state: State) -> Violation | None:
        for name, holds in model.invariants:
            if not holds(state):
                detail = model.explain(name, state) if name in model.config.invariants else [name]
                return Violation("invariant", name, trace_to(state), detail)
        return None

    # The state graph, kept for `~>` properties: states numbered in the order found (which is
    # also the order they are expanded in), and each one's successors.
    graph = liveness.Graph([], {}, array("q"), array("q")) if model.leads_to else None

    def number(state: State) -> None:
        if graph is not None:
            graph.ids[state] = len(graph.states)
            graph.states.append(state)

    frontier: list[State] = []
    try:
        for state in model.initial_states():
            generated += 1
            if state in parent or not all(c(state) for c in model.constraints):
                continue
            parent[state] = None
            number(state)
            depth = 1
            for name, holds in model.initial_checks:
                if not holds(state):
                    return result(Violation("property", name, [state]))
            violation = broken(state)
            if violation:
                return result(violation)
            frontier.append(state)
    except EvalError as e:
        return result(Violation("error", f"evaluating Init: {e}", []))
    while frontier:
        following: list[State] = []
        for state in frontier:
            try:
                successors = model.successors(state)
            except EvalError as e:
                return result(Violation("error", f"evaluating Next: {e}", trace_to(state)))
            if not successors and model.config.check_deadlock:
                return result(Violation("deadlock", "", trace_to(state)))
            if graph is not None:
                assert graph.ids[state] == len(graph.first)
                graph.first.append(len(graph.targets))
            for after in successors:
                if model.action_constraints and not all(c(state, after) for c in model.action_constraints):
                    continue
                generated += 1
                for name, allows in model.action_properties:
                    if not allows(state, after):
                        return result(Violation("property", name, [*trace_to(state), after]))
                if after in parent:
                    if graph is not None:
                        graph.targets.append(graph.ids[after])
                    continue
                if model.constraints and not all(c(after) for c in model.constraints):
                    continue
                parent[after] = state
                number(after)
                if graph is not None:
                    graph.targets.append(graph.ids[after])
                violation = broken(after)
                if violation:
                    depth += 1
                    return result(violation)
                following.append(after)
        frontier = following
        if frontier:
            depth += 1
    if graph is not None:
        graph.first.append(len(graph.targets))
        return result(_leads_to(model, graph, parent))
    return result()


def _leads_to(model: Model, graph: liveness.Graph, parent: dict[State, State | None]) -> Violation | None:
    """The first `~>` property that fails, with a behaviour that shows it."""
    def before(i: int) -> int | None:
        at = parent[graph.states[i]]
        return None if at is None else graph.ids[at]
    try:
        for prop in model.leads_to:
            lasso = liveness.violation(graph, prop, model.fairness, before)
            if lasso is not None:
                trace = [graph.states[i] for i in lasso.trace]
                return Violation("liveness", prop.name, trace, loop=lasso.loop)
    except EvalError as e:
        return Violation("error", f"evaluating a temporal property: {e}", [])
    return None


def format_violation(model: Model, violation: Violation) -> str:
    """The violation and its behaviour: the first state in full, then each step's changes."""
    lines = [violation.headline() + ":"]
    before: State | None = None
    for n, state in enumerate(violation.trace, start=1):
        lines.append(f"State {n}:" if before is None else f"State {n} (changed):")
        lines += ["  " + line for line in model.show_state(state, before)] or ["  (nothing changed)"]
        before = state
    if violation.loop is not None:
        lines.append("Stuttering." if violation.loop == len(violation.trace) - 1
                     else f"Back to state {violation.loop + 1}.")
    return "\n".join(lines)
