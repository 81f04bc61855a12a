"""The driver: runs a machine against an executor and records every step.

The CLI, the model tests and trace replay all go through `Driver`, so tests exercise the
production path. An executor is any object with `perform(intents) -> list[Event]`: it carries
out the intents in order and returns the observations, stopping after the first failure; the
driver feeds those back into the machine.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from nucleus import vocab as v
from nucleus.errors import RuntimeFailure
from nucleus.machines.base import Refused, Step


class Executor(Protocol):
    def perform(self, intents: tuple[v.Intent, ...]) -> list[v.Event]: ...


class Recorder(Protocol):
    def record(self, event: v.Event | None, state: Any, intents: tuple[v.Intent, ...] = ()) -> None: ...


@dataclass
class Driver:
    machine: Any  # a machines.* module: step, advance (optional), to_tla
    state: Any
    executor: Executor
    recorder: Recorder | None = None
    history: list[tuple[v.Event, tuple[v.Intent, ...]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.recorder is not None:
            self.recorder.record(None, self.state)

    def feed(self, event: v.Event) -> Step | Refused:
        """Take one event; on success carry out its intents and feed back what they report."""
        pending: deque[v.Event] = deque([event])
        first: Step | Refused | None = None
        while pending:
            current = pending.popleft()
            result = self.machine.step(self.state, current)
            if first is None:
                first = result
            if isinstance(result, Refused):
                if current is event:
                    return result
                raise RuntimeFailure(f"internal: an observation was refused: {result.why}")
            self.state = result.state
            self.history.append((current, result.intents))
            if self.recorder is not None:
                self.recorder.record(current, self.state, result.intents)
            if result.intents:
                pending.extend(self.executor.perform(result.intents))
        assert first is not None
        return first

    def require(self, event: v.Event) -> Step:
        """Feed an event the caller knows the machine accepts now; a refusal is a bug."""
        result = self.feed(event)
        if isinstance(result, Refused):
            raise RuntimeFailure(f"internal: {event.name} was refused: {result.why}")
        return result

    def settle(self) -> None:
        """Take internal events (machine.advance) until the machine has nothing more to do."""
        advance = getattr(self.machine, "advance", None)
        if advance is None:
            return
        while (event := advance(self.state)) is not None:
            result = self.feed(event)
            if isinstance(result, Refused):  # advance only names enabled events
                raise RuntimeFailure(f"internal: advance named a disabled event: {result.why}")


class FakeExecutor:
    """Records intents and reports success, or a scripted failure for chosen intents.

    `fail` maps an intent name to (errno, message); the nth occurrence can be targeted with
    "Name#n" (1-based). Used by the model tests.
    """

    def __init__(self, fail: dict[str, tuple[int, str]] | None = None) -> None:
        self.fail = dict(fail or {})
        for key in self.fail:
            if key.split("#")[0] not in v.REPORTING:
                raise ValueError(
                    f"cannot script a failure of {key!r}: only {', '.join(sorted(v.REPORTING))} report outcomes"
                )
        self.performed: list[v.Intent] = []
        self._counts: dict[str, int] = {}

    def perform(self, intents: tuple[v.Intent, ...]) -> list[v.Event]:
        events: list[v.Event] = []
        for intent in intents:
            self.performed.append(intent)
            n = self._counts[intent.name] = self._counts.get(intent.name, 0) + 1
            scripted = self.fail.get(f"{intent.name}#{n}") or self.fail.get(intent.name)
            if scripted is not None and intent.reports is not None:
                events.append(v.failed(intent, scripted[0], scripted[1]))
                return events
            observed = v.done(intent)
            if observed is not None:
                events.append(observed)
        return events
