"""`P ~> Q` under weak fairness, on the state graph the breadth-first search built.

`P ~> Q` fails when some reachable state satisfies P and not Q, and a fair behaviour goes on
from it without ever reaching Q. A behaviour that stays out of Q forever ends, in a finite graph,
by visiting one strongly connected component of the ¬Q states infinitely often (a single state
counts: the behaviour may stutter there). Weak fairness `WF_v(A)` asks that A be taken infinitely
often or be disabled infinitely often; a behaviour that goes round the whole component does the
most it can for that, so the component admits a fair behaviour exactly when, for every fairness
condition, it holds an <<A>>_v step between two of its states or a state where A is disabled.
The condition only grows with the component, so the maximal components are the ones to test.

A fairness condition is evaluated on the steps of the graph: A must be a sub-action of Next (as
the specs' are: one machine's steps), so that "A is enabled in s" is "one of s's steps is an
<<A>>_v step".
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nucleus.tla.model import Fairness, LeadsTo, State


@dataclass
class Graph:
    """The reachable states (by number, in the order found) and their steps."""

    states: list[State]
    ids: dict[State, int]
    first: array[int]  # first[i]: where state i's successors start in `targets` (one more entry at the end)
    targets: array[int]

    def successors(self, i: int) -> Sequence[int]:
        return self.targets[self.first[i]:self.first[i + 1]]


@dataclass
class Lasso:
    """A behaviour that violates a `~>` property: `trace`, then back to `trace[loop]`, round and
    round forever (when `loop` is the last state: stuttering there forever)."""

    trace: list[int]
    loop: int


def violation(graph: Graph, prop: LeadsTo, fairness: Sequence[Fairness],
              before: Callable[[int], int | None]) -> Lasso | None:
    """A fair behaviour from a P state that never reaches Q, or None if `prop` holds.
    `before(i)` is the state before i on a shortest behaviour from an initial state."""
    outside: dict[int, bool] = {}  # whether a state is outside Q (computed once, when needed)

    def out(i: int) -> bool:
        if i not in outside:
            outside[i] = not prop.q(graph.states[i])
        return outside[i]

    # The ¬Q states a P ∧ ¬Q state leads to without passing through Q, nearest first, with
    # how far each is from the nearest such P state.
    came_from: dict[int, int | None] = {}
    distance: dict[int, int] = {}
    queue: deque[int] = deque()
    for i, state in enumerate(graph.states):
        if prop.p(state) and out(i):
            came_from[i], distance[i] = None, 0
            queue.append(i)
    while queue:
        i = queue.popleft()
        for j in graph.successors(i):
            if j not in came_from and out(j):
                came_from[j], distance[j] = i, distance[i] + 1
                queue.append(j)
    fair = [c for c in _components(graph, came_from) if _fair(graph, c, fairness)]
    if not fair:
        return None
    # The counterexample through the fair component nearest a P state.
    entry = min((i for c in fair for i in c), key=lambda i: (distance[i], i))
    component = next(c for c in fair if entry in c)
    return _lasso(graph, component, entry, came_from, before)


def _components(graph: Graph, within: dict[int, int | None]) -> list[set[int]]:
    """The strongly connected components of the subgraph on `within` (Tarjan, without recursion)."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    found: list[set[int]] = []
    for root in within:
        if root in index:
            continue
        work = [(root, iter(graph.successors(root)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            i, edges = work[-1]
            for j in edges:
                if j not in within:
                    continue
                if j not in index:
                    index[j] = low[j] = len(index)
                    stack.append(j)
                    on_stack.add(j)
                    work.append((j, iter(graph.successors(j))))
                    break
                if j in on_stack:
                    low[i] = min(low[i], index[j])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[i])
                if low[i] == index[i]:
                    component = set()
                    while True:
                        j = stack.pop()
                        on_stack.discard(j)
                        component.add(j)
                        if j == i:
                            break
                    found.append(component)
    return found


def _fair(graph: Graph, component: set[int], fairness: Sequence[Fairness]) -> bool:
    for condition in fairness:
        satisfied = False
        for i in component:
            taken = [j for j in graph.successors(i) if j != i and condition.step(graph.states[i], graph.states[j])]
            if not taken or any(j in component for j in taken):
                satisfied = True  # disabled here, or taken inside the component
                break
        if not satisfied:
            return False
    return True


def _lasso(graph: Graph, component: set[int], entry: int, came_from: dict[int, int | None],
           before: Callable[[int], int | None]) -> Lasso:
    """Initial state -> a P state -> entry (the component's nearest state), then round every
    state of the component back to entry, so that its fair steps can all be taken (a component
    of one state: stuttering there)."""
    path = [entry]
    at: int | None = came_from[entry]
    while at is not None:
        path.append(at)
        at = came_from[at]
    while (earlier := before(path[-1])) is not None:
        path.append(earlier)
    path.reverse()
    loop = len(path) - 1
    if len(component) == 1:
        return Lasso(path, loop)
    here = entry
    for goal in [*sorted(component - {entry}), entry]:
        if goal != entry and goal in path[loop + 1:]:
            continue
        path += _path(graph, here, goal, component)
        here = goal
    return Lasso(path[:-1], loop)  # the last state's successor is path[loop]


def _path(graph: Graph, start: int, goal: int, component: set[int]) -> list[int]:
    """The states after `start` on a shortest path to `goal` (≠ start) inside `component`."""
    came: dict[int, int] = {start: start}
    queue = deque([start])
    while queue:
        i = queue.popleft()
        for j in graph.successors(i):
            if j in component and j not in came:
                came[j] = i
                if j == goal:
                    steps = [goal]
                    while came[steps[-1]] != start:
                        steps.append(came[steps[-1]])
                    return steps[::-1]
                queue.append(j)
    raise AssertionError("a strongly connected component is connected")
