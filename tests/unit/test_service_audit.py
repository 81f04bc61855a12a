"""What a service's supervisor writes to the audit log (nucleus.config.audit.service_notes) as the
Service machine steps: readiness once, health when it changes, the workload ended as unhealthy and
the restart that follows; a check that changes nothing says nothing."""

from __future__ import annotations

from nucleus.config import audit
from nucleus.config.service import HealthCheck, Readiness, RestartPolicy, ServiceOptions
from nucleus.machines import service as m
from nucleus.machines.base import Refused
from nucleus.vocab import service as sv

OPTIONS = ServiceOptions(HealthCheck("true", interval=1, timeout=1, retries=2, start_period=0),
                         on_unhealthy="restart", restart=RestartPolicy("on-failure", 3),
                         readiness=Readiness(exec="true"), sd_notify=True)


def notes(*events: object) -> list[list[tuple[str, bool, str]]]:
    """The notes of each step, in order."""
    state, out = m.initial(OPTIONS), []
    for event in events:
        result = m.step(state, event)
        assert not isinstance(result, Refused), result
        out.append(audit.service_notes(state, result.state, result.intents))
        state = result.state
    return out


def test_ready_healthy_unhealthy_terminated_restarting():
    assert notes(sv.Started(), sv.Ready(), sv.CheckDone(0), sv.CheckDone(0), sv.CheckDone(1),
                 sv.CheckDone(1, timed_out=True), sv.Ended(143, 4)) == [
        [],
        [("service_ready", False, "")],
        [("service_healthy", False, "check exit status 0")],
        [],  # still healthy
        [],  # one failure of two
        [("service_unhealthy", True, "2 checks failed in a row; last: check timed out"),
         ("service_terminated", True, "unhealthy: 2 checks failed in a row")],
        [("service_restarting", False, "restart 1 in 0.1s")],
    ]


def test_a_restarted_service_is_healthy_again_and_ready_only_once():
    steps = notes(sv.Started(), sv.Ready(), sv.CheckDone(0), sv.Ended(1, 2), sv.Started(), sv.Ready(),
                  sv.CheckDone(0))
    assert [kind for step in steps for kind, _, _ in step] == [
        "service_ready", "service_healthy", "service_restarting", "service_healthy"]


def test_the_notes_are_audit_lines_of_the_health_layer():
    (kind, error, detail), = notes(sv.Started(), sv.Ready())[1]
    line = audit.record("0" * 32, "web", "t", "health", kind, error=error, detail=detail)
    assert (line["layer"], line["event"], line["error"]) == ("health", "service_ready", False)
