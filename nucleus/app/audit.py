"""A run's audit log and telemetry, as the run asks for them: --audit-log FILE (or `-`: stderr,
for journald) and an OTLP endpoint (--otlp-endpoint, or OpenTelemetry's environment variables),
each checked and opened before anything changes on the host. The recorder itself is
nucleus.effects.auditlog's; without either, nothing of it is imported.
"""

from __future__ import annotations

import sys
from typing import Any

from nucleus.config.container import ContainerConfig
from nucleus.errors import InvalidInput

FLAG = "--audit-log"
OTLP_FLAG = "--otlp-endpoint"


def check(config: ContainerConfig, environ: dict[str, str]) -> str | None:
    """The OTLP endpoint of the run (None: none), refused as bad input when it is no URL."""
    if config.otlp_endpoint is None and not any(k.startswith("OTEL_EXPORTER_OTLP") for k in environ):
        return None
    from nucleus.config import telemetry
    from nucleus.effects.auditlog import url_problem

    url = telemetry.endpoint(config.otlp_endpoint, environ)
    if url is None:
        return None
    problem = url_problem(url)
    if problem is not None:
        where = f"{OTLP_FLAG} {config.otlp_endpoint!r}" if config.otlp_endpoint else f"the OTLP endpoint {url!r}"
        raise InvalidInput(f"{where}: {problem}", hint="e.g. --otlp-endpoint http://127.0.0.1:4318")
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol not in (None, "", "http/json"):
        sys.stderr.write(f"warning: OTLP protocol {protocol!r}: nucleus exports http/json, which an OTLP/HTTP "
                         "collector accepts on the same endpoint\n")
    return url


def open_log(config: ContainerConfig) -> Any:
    """The --audit-log FILE, opened for appending before anything changes on the host (an
    AppendFile; None without one, or for stderr)."""
    if config.audit_log in (None, "-"):
        return None
    from nucleus.effects.prepare import AppendFile

    return AppendFile(FLAG, config.audit_log)


def recorder(config: ContainerConfig, record: dict[str, Any], url: str | None, environ: dict[str, str],
             log: Any) -> Any:
    """The run's audit recorder (nucleus.effects.auditlog); None when there is neither an audit
    log nor an endpoint."""
    if config.audit_log is None and url is None:
        return None
    from nucleus.effects import auditlog

    return auditlog.recorder(record["id"], record["name"], None if log is None else log.fd,
                             config.audit_log == "-", url, environ, tuple(s.dest for s in config.secrets))
