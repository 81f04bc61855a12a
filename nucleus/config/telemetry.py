"""OpenTelemetry spans of a run, from its audit entries (nucleus.config.audit), and the OTLP/HTTP
JSON document that carries them. Pure: times and span ids come in from the caller.

One trace per container, its id the container's id (32 hex digits, as a trace id is). The spans:

- ``nucleus.container``: from ``container_create`` to ``container_removed`` (or the supervisor's
  loss), the parent of the others;
- ``nucleus.setup``: to ``container_start`` (or the setup's failure), with an event per step of
  the machines (``namespaces_created``, ``seccomp_applied``, ...);
- ``nucleus.run``: from the start to ``container_exit`` (``nucleus.exit_status``), with the
  health events;
- ``nucleus.cleanup``: from the exit to ``cleanup_done``.

A span is handed over for export as soon as it ends, so a long-running service's setup is seen
when it starts; a health entry (layer ``health``) is also a short span of its own, exported at
once, so that a collector sees health as it changes rather than at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

ROOT, SETUP, RUN, CLEANUP = "nucleus.container", "nucleus.setup", "nucleus.run", "nucleus.cleanup"
INTERNAL = 1  # SpanKind
STATUS_OK, STATUS_ERROR = 1, 2


@dataclass
class Span:
    name: str
    span_id: str
    parent_id: str
    start_ns: int
    end_ns: int = 0
    attributes: dict[str, object] = field(default_factory=dict)
    events: list[tuple[str, int, dict[str, object]]] = field(default_factory=list)
    error: str | None = None


class Tracker:
    """Turns the audit entries of one container into spans; `feed` returns the spans that ended."""

    def __init__(self, container_id: str, new_id: Callable[[], str]) -> None:
        self.trace_id = container_id
        self.new_id = new_id
        self.open: dict[str, Span] = {}

    def _begin(self, name: str, ns: int, parent: str | None = ROOT) -> None:
        parent_id = self.open[parent].span_id if parent in self.open else ""
        self.open[name] = Span(name, self.new_id(), parent_id, ns)

    def _end(self, name: str, ns: int, error: str | None = None) -> list[Span]:
        span = self.open.pop(name, None)
        if span is None:
            return []
        span.end_ns, span.error = ns, error
        return [span]

    def feed(self, entry: dict[str, object], ns: int) -> list[Span]:
        kind, layer = str(entry.get("event", "")), str(entry.get("layer", ""))
        detail, error = str(entry.get("detail", "")), bool(entry.get("error"))
        ended: list[Span] = []
        if kind == "container_create":  # a service set up again: its previous run's spans end first
            ended += self.finish(ns)
            self._begin(ROOT, ns, None)
            self._begin(SETUP, ns)
        elif kind == "container_start":
            ended += self._end(SETUP, ns)
            self._begin(RUN, ns)
        elif kind in ("setup_failed", "container_abort"):
            ended += self._end(SETUP, ns, detail or kind)
        elif kind == "container_exit":
            if RUN in self.open:
                self.open[RUN].attributes["nucleus.exit_status"] = detail
            ended += self._end(RUN, ns) + self._end(SETUP, ns, detail or kind)
            self._begin(CLEANUP, ns)
        elif kind == "cleanup_done":
            ended += self._end(CLEANUP, ns)
        elif kind == "container_removed":
            ended += self.finish(ns)
        elif kind == "supervisor_lost":
            ended += self.finish(ns, "the supervisor was lost")
        else:
            attributes: dict[str, object] = {"nucleus.layer": layer, "nucleus.step": str(entry.get("step", ""))}
            if detail:
                attributes["nucleus.detail"] = detail
            target = next((self.open[n] for n in (SETUP, RUN, CLEANUP) if n in self.open), self.open.get(ROOT))
            if target is not None:
                target.events.append((kind, ns, attributes))
            if layer == "health":
                parent = target.span_id if target is not None else ""
                ended.append(Span(f"nucleus.health.{kind}", self.new_id(), parent, ns, ns, attributes, [],
                                  detail if error else None))
        return ended

    def finish(self, ns: int, error: str | None = None) -> list[Span]:
        """Every span still open, ended now (the children first)."""
        ended: list[Span] = []
        for name in (SETUP, RUN, CLEANUP, ROOT):
            ended += self._end(name, ns, error)
        return ended


def _value(value: object) -> dict[str, object]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    return {"stringValue": str(value)}


def _attributes(values: dict[str, object]) -> list[dict[str, object]]:
    return [{"key": k, "value": _value(v)} for k, v in values.items()]


def document(trace_id: str, spans: list[Span], resource: dict[str, object], version: str) -> dict[str, object]:
    """An ExportTraceServiceRequest in OTLP's JSON encoding (ids in hex, times as decimal strings)."""
    return {"resourceSpans": [{
        "resource": {"attributes": _attributes(resource)},
        "scopeSpans": [{
            "scope": {"name": "nucleus", "version": version},
            "spans": [{
                "traceId": trace_id, "spanId": s.span_id, "parentSpanId": s.parent_id, "name": s.name,
                "kind": INTERNAL, "startTimeUnixNano": str(s.start_ns), "endTimeUnixNano": str(s.end_ns),
                "attributes": _attributes(s.attributes),
                "events": [{"timeUnixNano": str(t), "name": n, "attributes": _attributes(a)} for n, t, a in s.events],
                "status": ({"code": STATUS_ERROR, "message": s.error} if s.error is not None else {"code": STATUS_OK}),
            } for s in spans],
        }],
    }]}


def resource(container_id: str, container_name: str, environ: dict[str, str], host: str, pid: int,
             version: str) -> dict[str, object]:
    """The standard resource attributes, OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES honoured."""
    values: dict[str, object] = {}
    for item in environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, eq, value = item.partition("=")
        if eq and key.strip():
            values[key.strip()] = value.strip()
    values.update({
        "service.name": environ.get("OTEL_SERVICE_NAME") or values.get("service.name") or "nucleus",
        "service.instance.id": container_id, "container.id": container_id, "container.name": container_name,
        "host.name": host, "process.pid": pid, "telemetry.sdk.name": "nucleus",
        "telemetry.sdk.language": "python", "telemetry.sdk.version": version,
    })
    return values


def endpoint(flag: str | None, environ: dict[str, str]) -> str | None:
    """Where the traces go: --otlp-endpoint, else OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (as is),
    else OTEL_EXPORTER_OTLP_ENDPOINT with /v1/traces; None for none."""
    if flag:
        return flag.rstrip("/") + "/v1/traces"
    if environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return base.rstrip("/") + "/v1/traces" if base else None
