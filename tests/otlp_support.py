"""An OTLP/HTTP receiver for tests: a loopback HTTP server that reads each POST to /v1/traces as
an ExportTraceServiceRequest, strictly (OpenTelemetry's own protobuf definitions, unknown fields
refused), after turning the JSON encoding's hex ids into protobuf JSON's base64, as a collector
does."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def parse(body: bytes) -> Any:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    doc = json.loads(body)
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if span.get(key):
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    return json_format.ParseDict(doc, trace_service_pb2.ExportTraceServiceRequest())


class Receiver:
    """Collects the spans posted to it: `spans` (name -> span message), `resources`."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.errors: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/json":
                        raise ValueError(f"{self.path} {self.headers.get('Content-Type')}")
                    receiver.requests.append(parse(body))
                    self.send_response(200)
                except Exception as e:  # noqa: BLE001 - reported to the test
                    receiver.errors.append(str(e))
                    self.send_response(400)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def spans(self) -> dict[str, Any]:
        return {s.name: s for r in self.requests for rs in r.resource_spans for ss in rs.scope_spans
                for s in ss.spans}

    def resource(self) -> dict[str, str]:
        return {a.key: a.value.string_value or str(a.value.int_value) for r in self.requests[:1]
                for rs in r.resource_spans for a in rs.resource.attributes}
