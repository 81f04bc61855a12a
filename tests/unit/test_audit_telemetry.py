"""The audit log's lines (nucleus.config.audit) and the spans made of them
(nucleus.config.telemetry), checked against OpenTelemetry's own protobuf definitions."""

from __future__ import annotations

import itertools
import json

import pytest

from nucleus import vocab as v
from nucleus.config import audit, telemetry
from tests.otlp_support import parse

CID = "0123456789abcdef0123456789abcdef"


def entry(event: v.Event) -> dict[str, object]:
    return audit.from_event(CID, "web", "2026-01-01T00:00:00.000Z", event)


@pytest.mark.parametrize("event, layer, kind, error, detail", [
    (v.Create(), "lifecycle", "container_create", False, ""),
    (v.Prepared("degraded"), "lifecycle", "security_prepared", False, "degraded"),
    (v.Start(), "lifecycle", "container_start", False, ""),
    (v.Exit(3), "lifecycle", "container_exit", False, "status 3"),
    (v.Kill("TERM"), "lifecycle", "container_signal", False, "SIGTERM"),
    (v.Lost(), "lifecycle", "supervisor_lost", True, ""),
    (v.SecDone("seccomp"), "security", "seccomp_applied", False, ""),
    (v.SecFailed("landlock", 95, "not supported"), "security", "landlock_failed", True, "not supported"),
    (v.FsFailed("audit", 1, "/tmp is exec"), "filesystem", "mount_audit_failed", True, "/tmp is exec"),
    (v.IsoDone("hostname"), "isolation", "hostname_done", False, ""),
    (v.IsoBegin(), "isolation", "isolation_begin", False, ""),
])
def test_each_step_is_a_line_naming_its_layer_and_event(event, layer, kind, error, detail):
    e = entry(event)
    assert (e["layer"], e["event"], e["error"], e["detail"]) == (layer, kind, error, detail)
    assert e["container"] == {"id": CID, "name": "web"}
    assert e["step"].startswith(f"{event.machine}.")
    assert json.loads(audit.line(e)) == e


def test_secret_values_never_reach_a_line():
    e = audit.record(CID, "web", "t", "lifecycle", "container_exit",
                     detail="exec failed: API_TOKEN=abc123 DB_PASSWORD=hunter2 USER=me")
    assert e["detail"] == "exec failed: API_TOKEN=*** DB_PASSWORD=*** USER=me"


def test_journal_lines_carry_the_priority():
    assert audit.journal_line(entry(v.Lost())).startswith(b"<3>{")
    assert audit.journal_line(entry(v.Start())).startswith(b"<6>{")


def _run_spans(events):
    ids = (f"{n:016x}" for n in itertools.count(1))
    tracker = telemetry.Tracker(CID, lambda: next(ids))
    ended = []
    for ns, event in enumerate(events, 1):
        ended += tracker.feed(entry(event), ns * 1000)
    return ended


def test_a_run_makes_its_four_spans_in_one_trace_with_the_steps_as_events():
    spans = _run_spans([v.Create(), v.IsoDone("unshare"), v.SecDone("seccomp"), v.Prepared("enforced"),
                        v.Start(), v.Exit(0), v.ResDone("release"), v.CleanupDone(), v.Remove()])
    by = {s.name: s for s in spans}
    assert [s.name for s in spans] == [telemetry.SETUP, telemetry.RUN, telemetry.CLEANUP, telemetry.ROOT]
    root = by[telemetry.ROOT]
    assert all(s.parent_id == root.span_id for s in spans if s is not root) and root.parent_id == ""
    assert [n for n, _, _ in by[telemetry.SETUP].events] == ["namespaces_created", "seccomp_applied",
                                                           "security_prepared"]
    assert by[telemetry.RUN].attributes == {"nucleus.exit_status": "status 0"}
    assert (root.start_ns, root.end_ns) == (1000, 9000)
    doc = telemetry.document(CID, spans, telemetry.resource(CID, "web", {}, "host", 7, "0.1.0"), "0.1.0")
    request = parse(json.dumps(doc).encode())  # OpenTelemetry's definitions, unknown fields refused
    got = request.resource_spans[0].scope_spans[0].spans
    assert {s.trace_id.hex() for s in got} == {CID}
    assert got[3].status.code == telemetry.STATUS_OK


def test_a_failed_setup_and_a_lost_supervisor_end_their_spans_in_error():
    spans = _run_spans([v.Create(), v.SetupFailed("pivot_root: EINVAL"), v.Lost()])
    assert [(s.name, s.error) for s in spans] == [(telemetry.SETUP, "pivot_root: EINVAL"),
                                                  (telemetry.ROOT, "the supervisor was lost")]


def test_a_health_entry_is_a_span_of_its_own_at_once():
    ids = (f"{n:016x}" for n in itertools.count(1))
    tracker = telemetry.Tracker(CID, lambda: next(ids))
    tracker.feed(entry(v.Create()), 1)
    tracker.feed(entry(v.Start()), 2)
    ended = tracker.feed(audit.record(CID, "web", "t", "health", "unhealthy", error=True, detail="exit 1"), 3)
    assert [(s.name, s.error) for s in ended] == [("nucleus.health.unhealthy", "exit 1")]


@pytest.mark.parametrize("flag, environ, expected", [
    ("http://c:4318", {}, "http://c:4318/v1/traces"),
    (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}, "http://c:4318/v1/traces"),
    (None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/x"}, "http://c:4318/x"),
    (None, {}, None),
])
def test_the_endpoint_as_the_specification_names_it(flag, environ, expected):
    assert telemetry.endpoint(flag, environ) == expected


def test_urls_that_cannot_be_posted_to_are_named():
    from nucleus.effects.auditlog import url_problem

    assert url_problem("grpc://c:4317/v1/traces") is not None
    assert url_problem("http://c:99999/v1/traces") is not None
    assert url_problem("http://127.0.0.1:4318/v1/traces") is None


def test_resource_attributes_and_headers_from_the_environment():
    res = telemetry.resource(CID, "web", {"OTEL_SERVICE_NAME": "shop", "OTEL_RESOURCE_ATTRIBUTES": "team=a,x"},
                             "h", 1, "0.1.0")
    assert (res["service.name"], res["team"], res["container.id"]) == ("shop", "a", CID)
    from nucleus.effects.otlp import headers

    assert headers({"OTEL_EXPORTER_OTLP_HEADERS": "api-key=a%20b, x=1"}) == {"api-key": "a b", "x": "1"}
