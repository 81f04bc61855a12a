"""`nucleus seccomp generate` as a pure function: traces in, a minimal deterministic profile out."""

from __future__ import annotations

import json

import pytest

from nucleus.config import seccomp_generate as sg
from nucleus.errors import InvalidInput


def event(name: str, nr: int = 0, pid: int = 100) -> str:
    return json.dumps({"syscall": name, "nr": nr, "pid": pid, "arch": "x86_64"})


def trace(*names: str, summary: bool = True) -> str:
    lines = [event(n, i) for i, n in enumerate(names)]
    if summary:
        lines.append(json.dumps({"summary": {"events": len(names), "syscalls": len(set(names)), "exit_status": 0}}))
    return "\n".join(lines) + "\n"


def error(traces, sources=None) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        sg.generate(traces, sources)
    return info.value


def test_profile_allows_exactly_the_names_seen_and_the_init_s_timed_calls_sorted_and_unique():
    profile = sg.generate([trace("write", "read", "execve", "read", "exit_group")], ["t.ndjson"])
    assert profile == {
        "defaultAction": "SCMP_ACT_KILL_PROCESS",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["execve", "exit_group", "kill", "read", "rt_sigtimedwait", "write"],
                      "action": "SCMP_ACT_ALLOW"}],
    }


def test_a_trace_holding_the_init_s_calls_names_each_once():
    profile = sg.generate([trace("rt_sigtimedwait", "kill", "wait4")])
    assert profile["syscalls"][0]["names"] == ["kill", "rt_sigtimedwait", "wait4"]


def test_dump_is_byte_identical_for_the_same_names_in_any_order():
    a = sg.dump(sg.generate([trace("read", "write", "openat", "close")]))
    b = sg.dump(sg.generate([trace("close", "close", "openat", "write", "read", summary=False)]))
    assert a == b
    assert a.endswith("}\n") and not a.endswith("\n\n")
    assert json.loads(a) == sg.generate([trace("read", "write", "openat", "close")])


def test_dump_format_is_stable():
    text = sg.dump(sg.generate([trace("write", "read")]))
    assert text == (
        "{\n"
        '  "architectures": [\n'
        '    "SCMP_ARCH_X86_64"\n'
        "  ],\n"
        '  "defaultAction": "SCMP_ACT_KILL_PROCESS",\n'
        '  "syscalls": [\n'
        "    {\n"
        '      "action": "SCMP_ACT_ALLOW",\n'
        '      "names": [\n'
        '        "kill",\n'
        '        "read",\n'
        '        "rt_sigtimedwait",\n'
        '        "write"\n'
        "      ]\n"
        "    }\n"
        "  ]\n"
        "}\n"
    )


def test_merging_traces_is_the_union_and_order_independent():
    one = trace("read", "write", "exit_group")
    two = trace("openat", "read", "mmap")
    merged = sg.generate([one, two], ["one", "two"])
    assert merged["syscalls"][0]["names"] == ["exit_group", "kill", "mmap", "openat", "read",
                                                "rt_sigtimedwait", "write"]
    assert sg.dump(merged) == sg.dump(sg.generate([two, one], ["two", "one"]))


def test_traces_may_be_lines_bytes_or_file_objects(tmp_path):
    path = tmp_path / "t.ndjson"
    path.write_text(trace("read", "write"))
    with open(path, "rb") as f:
        from_file = sg.generate([f], [str(path)])
    from_lines = sg.generate([trace("write", "read").splitlines()])
    from_bytes = sg.generate([trace("read", "write").encode()])
    assert sg.dump(from_file) == sg.dump(from_lines) == sg.dump(from_bytes)


def test_blank_lines_and_crlf_are_accepted():
    text = "\r\n" + event("read") + "\r\n\r\n   \n" + event("write") + "\r\n"
    assert sg.generate([text])["syscalls"][0]["names"] == ["kill", "read", "rt_sigtimedwait", "write"]


def test_events_without_optional_fields_are_accepted():
    assert sg.generate(['{"syscall": "read"}'])["syscalls"][0]["names"] == ["kill", "read", "rt_sigtimedwait"]


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"syscall": "read"', "a.ndjson:2: not valid JSON: Expecting ',' delimiter (column 19)"),
        ("not json", "a.ndjson:2: not valid JSON: Expecting value (column 1)"),
        ('["read"]', "a.ndjson:2: expected a JSON object, got an array"),
        ("42", "a.ndjson:2: expected a JSON object, got a number"),
        ('{"name": "read"}', "a.ndjson:2: expected a syscall event (a 'syscall' field) or a summary line, got the fields ['name']"),
        ('{"syscall": 0}', "a.ndjson:2: field 'syscall': 0 is not a syscall name"),
        ('{"syscall": "Read"}', "a.ndjson:2: field 'syscall': 'Read' is not a syscall name"),
        ('{"syscall": "read; rm"}', "a.ndjson:2: field 'syscall': 'read; rm' is not a syscall name"),
        ('{"syscall": "read", "arch": "aarch64"}', "a.ndjson:2: field 'arch': 'aarch64' is not supported"),
        ('{"syscall": "read", "nr": -1}', "a.ndjson:2: field 'nr': expected a syscall number, got -1"),
        ('{"syscall": "read", "nr": "0"}', "a.ndjson:2: field 'nr': expected a syscall number, got '0'"),
        ('{"syscall": null, "nr": 470}', "a.ndjson:2: syscall number 470 has no name, and a profile can allow syscalls only by name"),
        ('{"summary": 3}', "a.ndjson:2: field 'summary': expected an object, got a number"),
    ],
)
def test_malformed_lines_name_the_file_and_line(line, message):
    text = event("read") + "\n" + line + "\n" + event("write") + "\n"
    err = error([text], ["a.ndjson"])
    assert err.message == message
    assert err.exit_code == 125


def test_the_error_names_the_right_trace_when_merging():
    err = error([trace("read"), trace("write"), event("read") + "\n{oops\n"], ["one", "two", "three"])
    assert err.message.startswith("three:2: not valid JSON")
    assert err.hint == sg.FORMAT_HINT


def test_bytes_that_are_not_utf8():
    err = error([event("read").encode() + b"\n\xff\xfe\n"], ["b.ndjson"])
    assert err.message == "b.ndjson:2: not UTF-8 text (byte 1)"


def test_a_trace_without_events_is_refused():
    summary_only = json.dumps({"summary": {"events": 0, "syscalls": 0, "exit_status": 0}}) + "\n"
    assert error([trace("read"), summary_only], ["good", "empty.ndjson"]).message == "empty.ndjson: no syscall events"
    assert error([""], ["blank"]).message == "blank: no syscall events"


def test_no_trace_at_all_is_refused():
    assert error([]).message == "no trace given"


def test_default_source_names():
    assert error([trace("read"), "x\n"]).message.startswith("<trace 2>:1: not valid JSON")


def test_summary_tells_a_complete_trace_from_a_cut_one():
    assert sg.summary(trace("read", "write")) == {"events": 2, "syscalls": 2, "exit_status": 0}
    assert sg.summary(trace("read", "write").encode().splitlines(keepends=True)) == {
        "events": 2, "syscalls": 2, "exit_status": 0,
    }
    assert sg.summary(trace("read", "write", summary=False)) is None
    assert sg.summary(trace("read") + event("write") + "\n") is None  # events after it: cut
    assert sg.summary("") is None
    assert sg.summary(event("read") + "\n{broken") is None


# --- the architecture ------------------------------------------------------------------------------


def arm_trace(*names: str) -> str:
    return "".join(json.dumps({"syscall": n, "nr": 0, "pid": 1, "arch": "aarch64"}) + "\n" for n in names)


def test_the_profile_is_for_the_architecture_the_trace_was_recorded_on():
    assert sg.generate([arm_trace("read", "write")])["architectures"] == ["SCMP_ARCH_AARCH64"]
    assert sg.generate([trace("read")])["architectures"] == ["SCMP_ARCH_X86_64"]
    # Events without an "arch" take the others'; none at all: x86_64, as before.
    assert sg.generate(['{"syscall": "read"}\n' + arm_trace("write")])["architectures"] == ["SCMP_ARCH_AARCH64"]
    assert sg.generate(['{"syscall": "read"}'])["architectures"] == ["SCMP_ARCH_X86_64"]


def test_one_architecture_per_profile():
    err = error([trace("read"), arm_trace("write")], ["x86.ndjson", "arm.ndjson"])
    assert err.message == "arm.ndjson:1: field 'arch': 'aarch64' is not supported"
    assert err.hint == ("the profile is for x86_64, the architecture of the events before it; a "
                        "profile is for one architecture: generate one per architecture")


def test_the_caller_can_name_the_architecture():
    assert sg.generate(['{"syscall": "read"}'], arch="aarch64")["architectures"] == ["SCMP_ARCH_AARCH64"]
    with pytest.raises(InvalidInput) as info:
        sg.generate([trace("read")], ["t"], arch="aarch64")
    assert info.value.message == "t:1: field 'arch': 'x86_64' is not supported"
    assert info.value.hint.startswith("the profile is for aarch64, as asked;")
    with pytest.raises(InvalidInput) as info:
        sg.generate([trace("read")], arch="riscv64")
    assert info.value.message == "architecture 'riscv64' is not supported"


def test_an_architecture_trace_mode_never_records_is_refused():
    err = error([event("read") + "\n" + '{"syscall": "read", "arch": "riscv64"}\n'], ["r"])
    assert err.message == "r:2: field 'arch': 'riscv64' is not supported"
    assert err.hint == "nucleus traces and generates profiles for aarch64 and x86_64 only"
    assert error(['{"syscall": "read", "arch": null}'], ["n"]).message == "n:1: field 'arch': None is not supported"
