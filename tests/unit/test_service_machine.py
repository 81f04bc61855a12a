"""The Service machine (nucleus.machines.service): health states, the start period, unhealthy
after `retries` failures, restarts by policy with a bounded doubling backoff, and a stop that
ends every restart; plus a breadth-first walk of its reachable states at small bounds checking
the invariants."""

from __future__ import annotations

from nucleus.config.service import HealthCheck, Readiness, RestartPolicy, ServiceOptions
from nucleus.machines import service as m
from nucleus.machines.base import Refused
from nucleus.vocab import service as sv

HEALTH = HealthCheck("true", interval=1, timeout=1, retries=2, start_period=5)


def _run(options: ServiceOptions, *events):
    state, intents = m.initial(options), []
    for event in events:
        result = m.step(state, event)
        assert not isinstance(result, Refused), result
        state = result.state
        intents.extend(result.intents)
        assert all(inv(state) for inv in m.INVARIANTS), state
    return state, intents


def test_failures_within_the_start_period_do_not_count():
    state, _ = _run(ServiceOptions(HEALTH), sv.Started(), sv.CheckDone(1, early=True), sv.CheckDone(1, early=True))
    assert (state.health, state.streak) == ("starting", 0)


def test_retries_failures_in_a_row_make_it_unhealthy_and_stop_it():
    state, intents = _run(ServiceOptions(HEALTH, on_unhealthy="stop"), sv.Started(), sv.CheckDone(0, early=True),
                          sv.CheckDone(1))
    assert state.health == "healthy" and state.streak == 1 and intents == []
    state, intents = _run(ServiceOptions(HEALTH, on_unhealthy="stop"), sv.Started(), sv.CheckDone(0, early=True),
                          sv.CheckDone(1), sv.CheckDone(1, timed_out=True), sv.Ended(143, 8))
    assert state.health == "unhealthy" and state.stopping and state.phase == "finished"
    assert intents == [sv.Terminate("unhealthy: 2 checks failed in a row"), sv.Finish(143)]


def test_a_passing_check_resets_the_streak():
    state, _ = _run(ServiceOptions(HEALTH), sv.Started(), sv.CheckDone(1), sv.CheckDone(0))
    assert (state.health, state.streak) == ("healthy", 0)


def test_an_unhealthy_service_is_restarted_even_by_on_failure_and_healthy_again():
    options = ServiceOptions(HEALTH, "restart", RestartPolicy("on-failure", 1))
    state, intents = _run(options, sv.Started(), sv.CheckDone(1), sv.CheckDone(1),
                          sv.Ended(0, 8), sv.Started(), sv.CheckDone(0, early=True))
    assert (state.health, state.restarts, state.phase) == ("healthy", 1, "running")
    assert intents[1] == sv.RestartAfter(m.BACKOFF_FIRST)


def test_on_failure_n_restarts_n_times_and_never_after_success():
    options = ServiceOptions(restart=RestartPolicy("on-failure", 2))
    state, intents = _run(options, sv.Started(), sv.Ended(3, 0), sv.Started(), sv.Ended(3, 0),
                          sv.Started(), sv.Ended(3, 0))
    assert intents == [sv.RestartAfter(0.1), sv.RestartAfter(0.2), sv.Finish(3)]
    assert state.restarts == 2
    assert _run(options, sv.Started(), sv.Ended(0, 0))[1] == [sv.Finish(0)]


def test_the_backoff_doubles_to_its_bound_and_starts_over_after_a_long_run():
    options = ServiceOptions(restart=RestartPolicy("always"))
    events = [e for _ in range(10) for e in (sv.Started(), sv.Ended(1, 0.5))]
    _, intents = _run(options, *events)
    assert [i.delay for i in intents] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0]
    _, intents = _run(options, *events[:4], sv.Started(), sv.Ended(0, m.BACKOFF_RESET))
    assert intents[-1] == sv.RestartAfter(0.1)


def test_a_stop_ends_the_restarts_running_or_waiting():
    options = ServiceOptions(restart=RestartPolicy("always"))
    assert _run(options, sv.Started(), sv.StopAsked(), sv.Ended(143, 1))[1] == [sv.Finish(143)]
    state, intents = _run(options, sv.Started(), sv.Ended(1, 1), sv.StopAsked())
    assert state.phase == "finished" and intents[-1] == sv.Finish(-1)
    assert isinstance(m.step(state, sv.Started()), Refused)


def test_ready_is_said_once_per_service():
    started = ServiceOptions(restart=RestartPolicy("always"), sd_notify=True)
    _, intents = _run(started, sv.Started(), sv.Ended(1, 1), sv.Started())
    assert intents.count(sv.NotifyReady("started")) == 1
    gated = ServiceOptions(readiness=Readiness(tcp=8080), sd_notify=True)
    state, intents = _run(gated, sv.Started(), sv.Ready(), sv.Ready())
    assert intents == [sv.NotifyReady("ready")] and state.ready
    # The workload says READY=1 itself: the supervisor never does.
    _, intents = _run(ServiceOptions(readiness=Readiness(workload=True), sd_notify=True), sv.Started(), sv.Ready())
    assert intents == []


def test_every_reachable_state_keeps_the_invariants():
    events = (sv.Started(), sv.Ready(), sv.StopAsked(), sv.CheckDone(0), sv.CheckDone(1, early=True),
              sv.CheckDone(1), sv.Ended(0, 1), sv.Ended(1, 1), sv.Ended(1, 20))
    for options in (ServiceOptions(HEALTH, "restart", RestartPolicy("on-failure", 2)),
                    ServiceOptions(HEALTH, "stop"), ServiceOptions(HEALTH, "restart", RestartPolicy("always")),
                    ServiceOptions(readiness=Readiness(tcp=1), sd_notify=True)):
        seen = {m.initial(options)}
        frontier = list(seen)
        while frontier:
            state = frontier.pop()
            for event in events:
                result = m.step(state, event)
                if isinstance(result, Refused):
                    continue
                new = result.state
                assert all(inv(new) for inv in m.INVARIANTS), (state, event, new)
                # bounds: finitely many restarts and log entries to keep the walk small
                new = m.ServiceState(**{**new.__dict__, "log": ()})
                if new not in seen and new.restarts <= 4 and new.streak <= 4:
                    seen.add(new)
                    frontier.append(new)
        assert len(seen) > 5
