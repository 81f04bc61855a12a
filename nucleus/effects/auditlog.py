"""The audit log's and the telemetry's effects: the recorder that writes a line per step of the
System machine (nucleus.config.audit) to the --audit-log file or to stderr, and feeds the
OpenTelemetry spans (nucleus.config.telemetry) to the OTLP exporter (nucleus.effects.otlp).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from nucleus.config import audit

FLAG = "--audit-log"


class AuditRecorder:
    """Writes every step of the System machine as an audit line and feeds the spans; `over`
    gives the recorder a run hands its driver (this one in front of the trace recorder)."""

    def __init__(self, container_id: str, container_name: str, fd: int | None = None,
                 journal: bool = False, telemetry: Telemetry | None = None,
                 secrets: tuple[str, ...] = ()) -> None:
        self.cid, self.name = container_id, container_name
        self.fd, self.journal, self.telemetry = fd, journal, telemetry
        self.secrets = secrets  # where the --secret files are inside: named once they are mounted
        self.unnamed = secrets  # ... and not named yet in this run
        self.failed = False

    def over(self, inner: Any) -> Chained:
        return Chained(self, inner)

    def record(self, event: Any, state: Any, intents: tuple[Any, ...] = ()) -> None:
        if event is None:
            return
        entry = audit.from_event(self.cid, self.name, _now(), event)
        self.emit(entry)
        if entry["event"] == "container_create":  # a service set up again names them again
            self.unnamed = self.secrets
        if self.unnamed and entry["step"] in ("fs.Done(pivot)", "fs.Done(chroot)"):  # the mounts are made
            self.note("secrets", "secrets_mounted", ", ".join(self.unnamed))
            self.unnamed = ()

    def note(self, layer: str, kind: str, detail: str = "", error: bool = False) -> None:
        """An entry of what no machine step says (the secrets mounted, a health check's result)."""
        self.emit(audit.record(self.cid, self.name, _now(), layer, kind, error=error, detail=detail))

    def emit(self, entry: dict[str, object]) -> None:
        if self.journal or self.fd is not None:
            data = audit.journal_line(entry) if self.journal else audit.line(entry)
            try:
                os.write(2 if self.fd is None else self.fd, data)
            except OSError as e:
                if not self.failed:
                    self.failed = True
                    sys.stderr.write(f"warning: {FLAG}: cannot write: {e.strerror}\n")
        if self.telemetry is not None:
            self.telemetry.feed(entry)

    def close(self) -> None:
        """At the supervisor's end: the last spans exported (bounded), the log closed."""
        if self.telemetry is not None:
            self.telemetry.close()
            self.telemetry = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Chained:
    """The audit recorder in front of a run's trace recorder (or of none)."""

    def __init__(self, auditor: AuditRecorder, inner: Any) -> None:
        self.auditor, self.inner = auditor, inner

    def record(self, event: Any, state: Any, intents: tuple[Any, ...] = ()) -> None:
        if self.inner is not None:
            self.inner.record(event, state, intents)
        self.auditor.record(event, state, intents)

    def write(self) -> None:
        if self.inner is not None:
            self.inner.write()


class Telemetry:
    """The spans of one container, exported as they end."""

    def __init__(self, container_id: str, container_name: str, url: str, environ: dict[str, str]) -> None:
        from nucleus import __version__
        from nucleus.config import telemetry
        from nucleus.effects.otlp import Exporter, headers

        self.cid, self.version = container_id, __version__
        self.tracker = telemetry.Tracker(container_id, lambda: os.urandom(8).hex())
        self.resource = telemetry.resource(container_id, container_name, environ, os.uname().nodename,
                                           os.getpid(), __version__)
        self.exporter = Exporter(url, headers(environ), environ)

    def feed(self, entry: dict[str, object]) -> None:
        self._send(self.tracker.feed(entry, time.time_ns()))

    def _send(self, spans: list[Any]) -> None:
        from nucleus.config import telemetry

        if spans:
            self.exporter.send(telemetry.document(self.cid, spans, self.resource, self.version))

    def close(self) -> None:
        self._send(self.tracker.finish(time.time_ns(), "the run ended before its container was removed"))
        self.exporter.close()


def _now() -> str:
    from nucleus.effects.refusals import timestamp

    return timestamp(time.time())


def recorder(container_id: str, container_name: str, fd: int | None, journal: bool, url: str | None,
             environ: dict[str, str], secrets: tuple[str, ...] = ()) -> AuditRecorder:
    telemetry = Telemetry(container_id, container_name, url, environ) if url is not None else None
    return AuditRecorder(container_id, container_name, fd, journal, telemetry, secrets)


def url_problem(url: str) -> str | None:
    """Why `url` cannot be exported to (None when it can)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port out of range raises here
    except ValueError as e:
        return str(e)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "an http:// or https:// URL with a host is needed (OTLP/HTTP)"
    return None
