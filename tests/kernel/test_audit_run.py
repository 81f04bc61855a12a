"""--audit-log and OTLP export through `nucleus run`, on the real kernel: a line per step, in
order, to a file or to stderr with journald's priority; the run's spans received by an OTLP/HTTP
receiver the test starts on loopback (OpenTelemetry's own definitions parse them); a collector
that never answers does not keep the run from ending; bad input refused before anything runs."""

from __future__ import annotations

import json
import socket

import pytest

from tests.helpers import Scope, describe
from tests.otlp_support import Receiver

SANDBOX = pytest.mark.requires("root", "userns", "seccomp", "landlock")


@pytest.fixture
def scope():
    with Scope() as s:
        yield s


def events(lines: list[str]) -> list[str]:
    return [json.loads(line)["event"] for line in lines]


def subsequence(wanted: list[str], got: list[str]) -> bool:
    it = iter(got)
    return all(any(g == w for g in it) for w in wanted)


@SANDBOX
def test_the_audit_log_has_each_lifecycle_and_security_step_in_order(scope, tmp_path):
    log = tmp_path / "audit.jsonl"
    result = scope.nucleus(*scope.run_args("--audit-log", str(log)), "--", *scope.sh("exit 3"))
    assert result.returncode == 3, describe(result)
    lines = log.read_text().splitlines()
    got = events(lines)
    assert subsequence(["container_create", "namespaces_created", "root_pivoted", "capabilities_dropped",
                        "seccomp_applied", "landlock_applied", "security_prepared", "container_start",
                        "container_exit", "cleanup_done", "container_removed"], got), got
    first = json.loads(lines[0])
    assert first["container"]["name"] and len(first["container"]["id"]) == 32
    exit_line = json.loads(lines[got.index("container_exit")])
    assert (exit_line["detail"], exit_line["layer"], exit_line["error"]) == ("status 3", "lifecycle", False)
    assert oct(log.stat().st_mode & 0o777) == "0o600"
    scope.assert_clean()


@SANDBOX
def test_audit_to_stderr_carries_journald_priorities_and_names_the_failed_step(scope):
    result = scope.nucleus(*scope.run_args("--audit-log", "-"), "--", "true",
                           extra_env={"NUCLEUS_FAIL_AT": "LoadSeccomp"})
    assert result.returncode == 125, describe(result)
    audit = [line for line in result.stderr.splitlines() if line.startswith(("<3>", "<6>"))]
    failed = [json.loads(line[3:]) for line in audit if line.startswith("<3>")]
    assert any(e["event"] == "seccomp_failed" and "injected failure" in e["detail"] for e in failed), audit
    assert events([line[3:] for line in audit])[-1] == "container_removed"
    scope.assert_clean()


@SANDBOX
def test_the_spans_reach_an_otlp_receiver(scope):
    with Receiver() as receiver:
        result = scope.nucleus(*scope.run_args("--name", "traced", "--otlp-endpoint", receiver.url), "--",
                               *scope.sh("exit 0"), extra_env={"OTEL_SERVICE_NAME": "shop"})
    assert result.returncode == 0, describe(result)
    assert receiver.errors == []
    spans = receiver.spans()
    assert set(spans) == {"nucleus.setup", "nucleus.run", "nucleus.cleanup", "nucleus.container"}
    root = spans["nucleus.container"]
    assert len({s.trace_id for s in spans.values()}) == 1
    assert all(s.parent_span_id == root.span_id for n, s in spans.items() if n != "nucleus.container")
    assert {"seccomp_applied", "landlock_applied"} <= {e.name for e in spans["nucleus.setup"].events}
    resource = receiver.resource()
    assert (resource["service.name"], resource["container.name"]) == ("shop", "traced")
    assert resource["container.id"] == root.trace_id.hex()
    scope.assert_clean()


@SANDBOX
def test_a_collector_that_never_answers_does_not_hold_the_run(scope):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # connections queue; nothing is ever read or answered
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        result = scope.nucleus(*scope.run_args("--otlp-endpoint", url), "--", *scope.sh("echo ran"), timeout=60)
    finally:
        silent.close()
    assert (result.returncode, result.stdout) == (0, "ran\n"), describe(result)
    assert "warning: OTLP export to" in result.stderr, describe(result)
    scope.assert_clean()


@pytest.mark.parametrize("args, message", [
    (["--otlp-endpoint", "grpc://collector:4317"],
     "error: --otlp-endpoint 'grpc://collector:4317': an http:// or https:// URL with a host is needed (OTLP/HTTP)"),
    (["--audit-log", "/nonexistent/dir/audit.jsonl"], "error: --audit-log '/nonexistent/dir/audit.jsonl'"),
])
def test_bad_audit_and_telemetry_input_is_refused_before_anything_runs(args, message):
    with Scope() as scope:
        result = scope.nucleus(*scope.run_args(*args), "--", "true")
        assert result.returncode == 125 and result.stderr.startswith(message), describe(result)
        scope.assert_clean()


@SANDBOX
def test_secrets_are_named_once_mounted_and_their_bytes_never_logged(scope, tmp_path):
    source = tmp_path / "token"
    source.write_text("s3cr3t-value\n")
    source.chmod(0o600)
    log = tmp_path / "audit.jsonl"
    result = scope.nucleus(*scope.run_args("--audit-log", str(log), "--secret", f"{source}:/run/secrets/token"),
                           "--", "cat", "/run/secrets/token")
    assert (result.returncode, result.stdout) == (0, "s3cr3t-value\n"), describe(result)
    text = log.read_text()
    assert "s3cr3t" not in text
    named = [json.loads(line) for line in text.splitlines() if '"secrets_mounted"' in line]
    assert [(e["layer"], e["detail"]) for e in named] == [("secrets", "/run/secrets/token")]
    scope.assert_clean()
