"""The escape-attempt section of the benchmarks: the probe's lines parsed, the table rendered, the
section's schema, and one real run inside nucleus and the reference beside it."""

from __future__ import annotations

import json

import pytest

from benches import escape_probe, escapes, report, runtimes, schema
from benches.session import Session
from tests.benches.test_plumbing import synthetic


def _line(attempt: str, outcome: str, errno: str | None = None, signal: str | None = None,
          detail: str = "") -> str:
    return json.dumps({"attempt": attempt, "outcome": outcome, "errno": errno, "signal": signal,
                       "detail": detail})


def test_parse_keeps_the_probe_lines_only():
    text = "\n".join([
        "nucleus: a runtime's own line",
        _line("keyctl", "blocked", "EPERM"),
        "[1, 2]",
        json.dumps({"attempt": "bpf", "outcome": "maybe"}),
        _line("mount a tmpfs", "allowed", detail="mounted"),
        "{not json",
        json.dumps({"attempt": "reboot", "outcome": "blocked", "signal": "SIGSYS"}),
    ])
    assert escapes.parse(text) == {
        "keyctl": {"outcome": "blocked", "errno": "EPERM", "signal": None, "detail": ""},
        "mount a tmpfs": {"outcome": "allowed", "errno": None, "signal": None, "detail": "mounted"},
        "reboot": {"outcome": "blocked", "errno": None, "signal": "SIGSYS", "detail": ""},
    }


@pytest.mark.parametrize("entry, text", [
    ({"outcome": "blocked", "errno": "EPERM", "signal": None, "detail": ""}, "blocked (EPERM)"),
    ({"outcome": "blocked", "errno": None, "signal": "SIGSYS", "detail": "killed"}, "blocked (SIGSYS)"),
    ({"outcome": "blocked", "errno": None, "signal": None, "detail": "own root"}, "blocked (own root)"),
    ({"outcome": "allowed", "errno": None, "signal": None, "detail": "succeeded"}, "**allowed**"),
    ({"outcome": "allowed", "errno": "EINVAL", "signal": None, "detail": ""}, "**allowed** (EINVAL)"),
    ({"outcome": "skipped", "errno": None, "signal": None, "detail": "a route | b"}, "n/a (a route \\| b)"),
    ({"outcome": "error", "errno": None, "signal": "SIGALRM", "detail": "killed"}, "error (SIGALRM)"),
    (None, "n/a"),
])
def test_cell_says_blocked_allowed_or_na(entry, text):
    assert escapes.cell(entry) == text


def _section() -> dict:
    ok = lambda outcome, errno=None: {"outcome": outcome, "errno": errno, "signal": None, "detail": ""}  # noqa: E731
    return {
        "command": escapes.COMMAND, "attempts": ["mount a tmpfs", "keyctl"], "reference": "kernel",
        "results": {
            "kernel": {"label": "kernel", "command": "unshare", "status": "ok",
                       "attempts": {"mount a tmpfs": ok("allowed"), "keyctl": ok("allowed", "EINVAL")}},
            "nucleus": {"label": "nucleus run", "command": "nucleus run", "status": "ok",
                        "attempts": {"mount a tmpfs": ok("blocked", "EPERM")}},
            "nspawn": {"label": "systemd-nspawn", "command": "", "status": "n/a",
                       "error": "systemd-nspawn not installed", "attempts": {}},
        },
    }


def test_table_has_a_row_per_attempt_and_a_column_per_runtime():
    md = escapes.table(_section())
    rows = [ln for ln in md if ln.startswith("|")]
    assert rows[0] == "| attempt | kernel | nucleus run | systemd-nspawn |"
    assert rows[2] == "| mount a tmpfs | **allowed** | blocked (EPERM) | n/a |"
    assert rows[3] == "| keyctl | **allowed** (EINVAL) | n/a | n/a |"  # an attempt without an answer
    assert len(rows) == 4 and all(r.count("|") == 5 for r in rows)
    assert "n/a: systemd-nspawn: systemd-nspawn not installed" in md


def test_section_follows_the_schema_and_is_in_the_report():
    result = synthetic()
    assert schema.validate(result) == []  # results written before the section have none
    result["escapes"] = _section()
    assert schema.validate(result) == []
    assert "| mount a tmpfs | **allowed** | blocked (EPERM) | n/a |" in report.render(result)
    del result["escapes"]["results"]["kernel"]["attempts"]["keyctl"]["errno"]
    assert schema.validate(result) == ["$.escapes.results.kernel.attempts.keyctl.errno: missing"]
    result["escapes"] = {"status": "skipped", "error": "not selected (--only)"}
    assert schema.validate(result) == []


@pytest.mark.parametrize("err, invalid, outcome", [
    ("0", frozenset(), ("allowed", None, "succeeded")),
    ("EPERM", escape_probe.ARGUMENT_ERRORS, ("blocked", "EPERM", "")),
    ("EINVAL", escape_probe.ARGUMENT_ERRORS, ("allowed", "EINVAL", "the kernel answered the invalid argument")),
    ("EINVAL", frozenset(), ("blocked", "EINVAL", "")),  # a valid argument refused
])
def test_probe_tells_the_kernels_answer_from_a_refusal(err, invalid, outcome):
    assert escape_probe.answer(err, invalid=invalid) == outcome


ROUTES = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"


@pytest.mark.parametrize("rows, routed", [
    ([], False),
    (["eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0"], True),  # default route
    (["eth0\t0000000A\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0"], False),  # 10.0.0.0/8
    (["eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0"], True),  # 192.0.2.0/24
])
def test_egress_is_attempted_only_without_a_route(rows, routed):
    assert escape_probe.routed(ROUTES + "\n".join(rows), escape_probe.EGRESS_ADDRESS) is routed


def test_every_shared_call_is_an_attempt():
    names = escapes.attempts()
    assert len(names) == len(set(names))
    assert set(escape_probe.RAW) | set(escape_probe.BENCH_RAW) <= set(names)
    assert escape_probe.INVALID <= set(names)


@pytest.mark.requires("root", "userns", "bin:unshare")
def test_probe_runs_in_nucleus_and_the_reference_and_leaves_nothing():
    session = Session(need_mntns=False)
    with session as ctx:
        nucleus = runtimes.ALL["nucleus"](ctx)
        nucleus.check()
        section = escapes.measure(ctx, {"nucleus": nucleus}, {}, log=lambda msg: None)
    runtimes.stop_servers()
    assert session.leftovers()["clean"], json.dumps(session.leftovers())
    problems: list[str] = []
    schema._check(section, schema.ESCAPES, "$.escapes", problems)
    assert problems == []
    kernel, inside = section["results"]["kernel"], section["results"]["nucleus"]
    assert kernel["status"] == inside["status"] == "ok", section
    assert set(kernel["attempts"]) == set(inside["attempts"]) == set(section["attempts"])
    assert [e for e in inside["attempts"].values() if e["outcome"] == "error"] == []
    # root with every capability mounts; nucleus's workload does not
    assert kernel["attempts"]["mount a tmpfs"]["outcome"] == "allowed"
    assert inside["attempts"]["mount a tmpfs"] == {"outcome": "blocked", "errno": "EPERM", "signal": None,
                                                   "detail": ""}
    assert section["results"]["runc"] == {**section["results"]["runc"], "status": "n/a", "error": "not checked"}
