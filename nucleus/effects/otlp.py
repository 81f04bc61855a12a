"""OTLP/HTTP export of a run's spans (nucleus.config.telemetry): each batch is posted by a process
forked for it, so a collector that is slow or gone never holds the supervisor. The run's last
batch is waited for at most BOUND seconds, then its process is killed with a warning: a dead
collector delays a container's exit by that much at most, and its start not at all.

The exporter is hand-written (http.client, JSON encoding) rather than the OpenTelemetry SDK: a
supervisor keeps no exporter threads, imports nothing it would not use, and needs no protobuf.
Nothing here is imported unless an endpoint is set.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from urllib.parse import unquote, urlsplit

BOUND = 2.0  # seconds the run's end waits for its last export
TIMEOUT = 2.0  # seconds one request may take (OTEL_EXPORTER_OTLP_TIMEOUT, in ms, lowers it)
IGNORED = (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST `body` to `url`; the HTTP status."""
    import http.client

    parts = urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname or "", parts.port, timeout=timeout)
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        conn.request("POST", path, body, {**headers, "Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


class Exporter:
    """Posts documents to `url`, each from a process of its own."""

    def __init__(self, url: str, headers: dict[str, str], environ: dict[str, str]) -> None:
        self.url, self.headers = url, headers
        self.timeout = TIMEOUT
        with contextlib.suppress(ValueError):
            self.timeout = min(TIMEOUT, int(environ.get("OTEL_EXPORTER_OTLP_TIMEOUT", "")) / 1000)
        self.pending: list[int] = []

    def send(self, document: dict[str, object]) -> None:
        from nucleus.effects.seccomp_tracer import helper_child

        body = json.dumps(document, separators=(",", ":")).encode()
        self._reap()
        parent = os.getpid()
        pid = os.fork()
        if pid != 0:
            self.pending.append(pid)
            return
        code = 1
        try:
            helper_child(parent, IGNORED, {2})
            status = post(self.url, body, self.headers, self.timeout)
            if 200 <= status < 300:
                code = 0
            else:
                os.write(2, f"warning: OTLP export to {self.url}: HTTP {status}\n".encode())
        except BaseException as e:  # noqa: BLE001 - a forked process never unwinds into its parent
            with contextlib.suppress(OSError):
                os.write(2, f"warning: OTLP export to {self.url}: {e}\n".encode())
        finally:
            os._exit(code)

    def _reap(self) -> None:
        for pid in list(self.pending):
            with contextlib.suppress(ChildProcessError):
                got, _ = os.waitpid(pid, os.WNOHANG)
                if got == 0:
                    continue
            self.pending.remove(pid)

    def close(self, bound: float = BOUND) -> None:
        """Wait at most `bound` seconds for the exports under way; kill what is left."""
        deadline = time.monotonic() + bound
        while self.pending and time.monotonic() < deadline:
            self._reap()
            if self.pending:
                time.sleep(0.01)
        for pid in self.pending:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            sys.stderr.write(f"warning: OTLP export to {self.url} abandoned after {bound:g} s\n")
        self.pending = []


def headers(environ: dict[str, str]) -> dict[str, str]:
    """OTEL_EXPORTER_OTLP_HEADERS (and _TRACES_HEADERS): key=value pairs, comma-separated,
    values percent-decoded."""
    out: dict[str, str] = {}
    for name in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"):
        for item in environ.get(name, "").split(","):
            key, eq, value = item.partition("=")
            if eq and key.strip():
                out[key.strip()] = unquote(value.strip())
    return out
