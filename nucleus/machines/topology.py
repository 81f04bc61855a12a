"""A topology's services brought up, reconciled and brought down (`nucleus compose`):
formal/Topology.tla.

Each service has a status: absent, starting (its `run -d` under way), started, healthy (its
health check passed), stopping (its stop and removal under way). The machine acts on one
service at a time, in the topology's dependency order, while it awaits the health checks of
services already started.

`up` first stops what must go, last in dependency order first: a running service no longer in
the file, or one whose configuration changed (`stale`). Then it starts every service of the
file that is not running, each once its dependencies are started, or healthy where its
depends_on asks for it. A failure (a start refused, a health check that did not pass in time)
rolls back what this `up` started, unless `keep_going`: then the failed service is stopped,
its dependents never start and the rest keep running. `down` stops every running service,
dependents before their dependencies. A service that runs unchanged is never stopped by `up`.
"""

from __future__ import annotations

from dataclasses import replace

from nucleus.frozen import frozen
from nucleus.machines.base import Refused, Step, spec_set
from nucleus.vocab import topology as t

STATUSES = ("absent", "starting", "started", "healthy", "stopping")
PHASES = ("idle", "up", "rollback", "down", "running", "partial", "failed", "stopped")
SETTLED = ("idle", "running", "partial", "failed", "stopped")
LIVE = ("started", "healthy")
BUSY = ("starting", "stopping")

Dependency = tuple[str, str, str]  # (service, the service it depends on, "started" | "healthy")


@frozen
class TopologyState:
    # The graph (the spec fixes one; a topology file gives its own): the services in dependency
    # order, the dependencies, the services with a health check.
    order: tuple[str, ...] = ()
    deps: tuple[Dependency, ...] = ()
    health_checked: frozenset[str] = frozenset()
    # The spec's variables.
    wanted: frozenset[str] = frozenset()  # the services of the file
    stale: frozenset[str] = frozenset()  # running services of the file whose configuration changed
    keep_going: bool = False
    phase: str = "idle"
    statuses: tuple[str, ...] = ()  # one per service of `order`
    started: frozenset[str] = frozenset()  # what this up started
    failed: frozenset[str] = frozenset()  # what failed in this up

    def status(self, service: str) -> str:
        return self.statuses[self.order.index(service)]

    def with_status(self, service: str, status: str) -> TopologyState:
        i = self.order.index(service)
        return replace(self, statuses=self.statuses[:i] + (status,) + self.statuses[i + 1:])

    def live(self) -> frozenset[str]:
        return frozenset(s for s, st in zip(self.order, self.statuses, strict=True) if st in LIVE)

    def busy(self) -> bool:
        return any(st in BUSY for st in self.statuses)

    def awaited(self) -> frozenset[str]:
        """The services whose health check up waits for: in the file, started, not to be stopped."""
        return frozenset(s for s in self.health_checked & self.wanted
                         if self.status(s) == "started" and s not in self.stale)

    def satisfied(self, dependency: str, condition: str) -> bool:
        status = self.status(dependency)
        return status == "healthy" if condition == "healthy" else status in LIVE

    def gate_open(self, service: str) -> bool:
        return all(self.satisfied(d, c) for s, d, c in self.deps if s == service)


def initial(order: tuple[str, ...], deps: tuple[Dependency, ...], health_checked: frozenset[str],
            wanted: frozenset[str], running: dict[str, str], stale: frozenset[str] = frozenset(),
            keep_going: bool = False) -> TopologyState:
    """The topology before a command: `running` maps each service that runs to "started" or,
    when its health check passes, "healthy"."""
    unknown = (set(running) | wanted | stale | {x for dep in deps for x in dep[:2]}) - set(order)
    if unknown:
        raise ValueError(f"services outside the order {order}: {sorted(unknown)}")
    return TopologyState(order=order, deps=deps, health_checked=frozenset(health_checked), wanted=wanted,
                         stale=stale & frozenset(running), keep_going=keep_going,
                         statuses=tuple(running.get(s, "absent") for s in order))


def _doomed(s: TopologyState, phase: str) -> frozenset[str]:
    if phase == "up":
        return frozenset(x for x in s.live() if x not in s.wanted or x in s.stale or x in s.failed)
    if phase == "rollback":
        return s.live() & s.started
    return s.live()


def _ready(s: TopologyState, phase: str) -> tuple[str, ...]:
    if phase != "up":
        return ()
    return tuple(x for x in s.order if x in s.wanted and s.status(x) == "absent" and x not in s.failed
                 and s.gate_open(x))


def _finished(s: TopologyState, phase: str) -> str:
    if phase == "up":
        return "running" if not s.failed else "partial"
    return "failed" if phase == "rollback" else "stopped"


def _advance(s: TopologyState, phase: str, intents: tuple[t.Intent, ...] = ()) -> Step:
    """What comes next in `phase`: wait for the start or stop under way, stop one service (the
    last in dependency order), start one (the first), wait for health checks, or finish."""
    s = replace(s, phase=phase)
    doomed = _doomed(s, phase)
    ready = _ready(s, phase)
    if s.busy() or (not doomed and not ready and phase == "up" and s.awaited()):
        return Step(s, intents)
    if doomed:
        victim = [x for x in s.order if x in doomed][-1]
        return Step(s.with_status(victim, "stopping"), intents + (t.StopService(victim),))
    if ready:
        chosen = ready[0]
        return Step(replace(s.with_status(chosen, "starting"), started=s.started | {chosen}),
                    intents + (t.StartService(chosen),))
    return Step(replace(s, phase=_finished(s, phase)), intents)


def _refuse(event: t.ServiceEvent, s: TopologyState, allowed: str) -> Refused:
    where = f"it is {s.status(event.service)}" if event.service in s.order else "no such service"
    return Refused(f"cannot {event.name} {event.service!r}: {where} while the topology is {s.phase} "
                   f"({event.name} is allowed only {allowed})")


def step(s: TopologyState, event: t.Event) -> Step | Refused:
    match event:
        case t.Up():
            if s.phase not in SETTLED:
                return Refused(f"cannot bring the topology up: an {s.phase} is under way")
            fresh = replace(s, started=frozenset(), failed=frozenset())
            waits = tuple(t.AwaitHealthy(x) for x in s.order if x in fresh.awaited())
            return _advance(fresh, "up", waits)
        case t.Down():
            if s.phase not in SETTLED:
                return Refused(f"cannot bring the topology down: an {s.phase} is under way")
            return _advance(s, "down")
        case t.ServiceEvent(service=name) if name not in s.order:
            return Refused(f"the topology has no service {name!r}")
        case t.Started(service=name):
            if s.phase not in ("up", "rollback") or s.status(name) != "starting":
                return _refuse(event, s, "while its start is under way")
            after = s.with_status(name, "started")
            waits = (t.AwaitHealthy(name),) if name in after.awaited() else ()
            return _advance(after, s.phase, waits)
        case t.Healthy(service=name):
            if s.phase not in ("up", "rollback") or name not in s.awaited():
                return _refuse(event, s, "while its health check is awaited")
            return _advance(s.with_status(name, "healthy"), s.phase)
        case t.Failed(service=name):
            if s.phase not in ("up", "rollback") or not (s.status(name) == "starting" or name in s.awaited()):
                return _refuse(event, s, "while it starts or its health check is awaited")
            phase = "rollback" if s.phase == "up" and not s.keep_going else s.phase
            after = s.with_status(name, "absent" if s.status(name) == "starting" else "started")
            return _advance(replace(after, failed=s.failed | {name}), phase)
        case t.Stopped(service=name):
            if s.phase not in ("up", "rollback", "down") or s.status(name) != "stopping":
                return _refuse(event, s, "while its stop is under way")
            return _advance(replace(s.with_status(name, "absent"), stale=s.stale - {name}), s.phase)
    return Refused(f"the topology has no action {event.name}")


def is_initial(s: TopologyState) -> bool:
    return (s.phase == "idle" and not s.started and not s.failed
            and all(st in ("absent", "started", "healthy") for st in s.statuses)
            and all(s.status(x) != "healthy" or x in s.health_checked for x in s.order)
            and s.stale <= s.live() & s.wanted
            and all(d in s.wanted for x, d, _ in s.deps if x in s.wanted))


def to_tla(s: TopologyState) -> dict[str, object]:
    return {"topo_wanted": s.wanted, "topo_stale": s.stale, "topo_keep_going": s.keep_going,
            "topo_phase": s.phase, "topo_svc": dict(zip(s.order, s.statuses, strict=True)),
            "topo_started": s.started, "topo_failed": s.failed}


def placeholder() -> TopologyState:
    """The spec's graph (db; api waits for db healthy; web for api started), nothing running:
    what the model tests and trace replay drive."""
    return initial(("db", "api", "web"), (("api", "db", "healthy"), ("web", "api", "started")),
                   frozenset({"db"}), frozenset(), {})


def from_tla(values: dict[str, object], base: TopologyState | None = None) -> TopologyState:
    """The state the spec's variables describe, on the graph of `base` (the spec's without one)."""
    base = base or placeholder()
    svc = values["topo_svc"]
    if not isinstance(svc, dict):  # a trace's function value
        svc = dict(getattr(svc, "m", {}))
    return replace(base, wanted=spec_set(values["topo_wanted"]), stale=spec_set(values["topo_stale"]),
                   keep_going=bool(values["topo_keep_going"]), phase=str(values["topo_phase"]),
                   statuses=tuple(str(svc[x]) for x in base.order),
                   started=spec_set(values["topo_started"]), failed=spec_set(values["topo_failed"]))


# Invariants: the same names as in formal/Topology.tla.
def TypeOK(s: TopologyState) -> bool:  # noqa: N802
    services = set(s.order)
    return (s.wanted <= services and s.stale <= services and s.phase in PHASES
            and len(s.statuses) == len(s.order) and all(st in STATUSES for st in s.statuses)
            and s.started <= services and s.failed <= services)


def OneAtATime(s: TopologyState) -> bool:  # noqa: N802
    return sum(st in BUSY for st in s.statuses) <= 1


def StartsAfterDependencies(s: TopologyState) -> bool:  # noqa: N802
    return all(s.status(x) != "starting" or s.satisfied(d, c) for x, d, c in s.deps)


def DownStopsDependentsFirst(s: TopologyState) -> bool:  # noqa: N802
    return s.phase != "down" or all(s.status(d) != "stopping" or s.status(x) == "absent" for x, d, _ in s.deps)


def ReconcileKeepsUnchanged(s: TopologyState) -> bool:  # noqa: N802
    return s.phase != "up" or all(s.status(x) != "stopping" or x not in s.wanted or x in s.stale or x in s.failed
                                  for x in s.order)


def RollbackStopsOnlyItsOwn(s: TopologyState) -> bool:  # noqa: N802
    return s.phase != "rollback" or all(
        s.status(x) != "stopping" or x in s.started or x not in s.wanted or x in s.stale for x in s.order)


def FailureStopsWhatUpStarted(s: TopologyState) -> bool:  # noqa: N802
    return s.phase != "failed" or all(s.status(x) == "absent" for x in s.started)


def PartialOnlyKeepGoing(s: TopologyState) -> bool:  # noqa: N802
    return s.phase != "partial" or (s.keep_going and bool(s.failed))


def RunningMeansWanted(s: TopologyState) -> bool:  # noqa: N802
    return s.phase != "running" or all(
        s.status(x) == (("healthy" if x in s.health_checked else "started") if x in s.wanted else "absent")
        for x in s.order)


def StoppedMeansNothingRuns(s: TopologyState) -> bool:  # noqa: N802
    return s.phase != "stopped" or all(st == "absent" for st in s.statuses)


INVARIANTS = (TypeOK, OneAtATime, StartsAfterDependencies, DownStopsDependentsFirst, ReconcileKeepsUnchanged,
              RollbackStopsOnlyItsOwn, FailureStopsWhatUpStarted, PartialOnlyKeepGoing, RunningMeansWanted,
              StoppedMeansNothingRuns)


def candidate_events(s: TopologyState) -> list[t.Event]:
    return [t.Up(), t.Down()] + [cls(x) for x in s.order for cls in (t.Started, t.Healthy, t.Failed, t.Stopped)]
