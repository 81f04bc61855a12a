"""The line a refused exec prints (nucleus.config.exec_refusal): the cause, in the kernel's order,
and the fix; "blocked:" only when a policy refused."""

from __future__ import annotations

import pytest

from nucleus.config.exec_refusal import DENIED, NOT_FOUND, Caller, Looked, interpreter_of, reason

ROOT = Caller(0, 0, ())
AGENT_RULES = (
    ("/usr", ("execute", "read")),
    ("/etc", ("read",)),
    ("/tmp", ("create", "read", "remove", "write")),
    ("/home/agent", ("create", "execute", "read", "remove", "write")),
    ("/context", ("create", "execute", "read", "remove", "write")),
)
AGENT_PLACES = (("/context", False), ("/home/agent", False), ("/tmp", True))
ALLOWABLE = ("/context", "/home/agent", "/tmp")


def binary(path: str, mount: str, noexec: bool = False, mode: int = 0o755, interpreter: str = "") -> Looked:
    return Looked(path, "file", mode, (0, 0), mount, noexec, interpreter)


def refused(*looked: Looked, command: str = "", rules=AGENT_RULES, places=AGENT_PLACES,
            allowable=ALLOWABLE, failure: str = DENIED, caller: Caller = ROOT) -> str:
    return reason(command or looked[0].path, failure, "Permission denied" if failure == DENIED else
                  "No such file or directory", looked, caller, rules, places, allowable)


def test_a_binary_on_a_noexec_mount_is_blocked_naming_the_mount_and_both_fixes():
    assert refused(binary("/tmp/a.out", "/tmp", noexec=True)) == (
        "blocked: /tmp/a.out cannot be executed: /tmp is mounted noexec; run it from /context or "
        "/home/agent, or pass --allow-exec /tmp")


def test_in_a_strict_mode_nowhere_else_runs_and_only_the_flag_is_offered():
    places = (("/context", True), ("/home/agent", True), ("/tmp", True))
    rules = tuple((p, tuple(a for a in access if a != "execute")) if p != "/usr" else (p, access)
                  for p, access in AGENT_RULES)
    assert refused(binary("/context/a.out", "/context", noexec=True), command="./a.out", rules=rules,
                   places=places) == (
        "blocked: /context/a.out cannot be executed: /context is mounted noexec; pass --allow-exec "
        "/context")


def test_a_place_landlock_refuses_is_not_offered_even_when_its_mount_allows_exec():
    rules = AGENT_RULES[:3] + (("/home/agent", ("create", "read", "remove", "write")),)
    assert refused(binary("/tmp/x", "/tmp", noexec=True), rules=rules, places=AGENT_PLACES[1:]) == (
        "blocked: /tmp/x cannot be executed: /tmp is mounted noexec; pass --allow-exec /tmp")


def test_landlock_refusing_is_blocked_naming_the_place():
    rules = tuple(r for r in AGENT_RULES if r[0] != "/context") + (("/context", ("read",)),)
    assert refused(binary("/context/tool", "/context"), command="tool", rules=rules) == (
        "blocked: /context/tool cannot be executed: Landlock's rules allow no execute in /context; "
        "run it from /home/agent, or pass --allow-exec /context")


def test_outside_every_place_only_where_to_run_is_offered():
    assert refused(binary("/etc/script", "/", mode=0o755)) == (
        "blocked: /etc/script cannot be executed: Landlock's rules allow no execute in /etc; run it "
        "from /context or /home/agent")


def test_without_landlock_only_the_mount_flags_decide():
    looked = binary("/tmp/a.out", "/tmp", noexec=True)
    assert refused(looked, rules=None).startswith("blocked: /tmp/a.out cannot be executed: /tmp is mounted noexec")
    assert refused(binary("/etc/script", "/"), rules=None) == "cannot run '/etc/script': Permission denied"


@pytest.mark.parametrize("mode,owner,caller,message", [
    (0o644, (0, 0), ROOT, "mode 0644, owner 0"),
    (0o701, (0, 0), Caller(1000, 1000), None),  # others may
    (0o710, (5, 1000), Caller(1000, 1000), None),  # the group may
    (0o710, (5, 7), Caller(1000, 1000, (7,)), None),  # a supplementary group may
    (0o710, (5, 7), Caller(1000, 1000), "mode 0710, owner 5"),
    (0o017, (1000, 1000), Caller(1000, 1000), "mode 0017, owner 1000"),  # the owner's bits decide
], ids=["no-x", "others", "group", "groups", "not-in-group", "owner-first"])
def test_the_execute_bit_is_read_as_the_kernel_reads_it(mode, owner, caller, message):
    looked = Looked("/context/run.sh", "file", mode, owner, "/context")
    got = refused(looked, command="./run.sh", caller=caller)
    if message is None:
        assert got == "cannot run './run.sh': Permission denied"
    else:
        assert got == (f"cannot run './run.sh': /context/run.sh is not executable ({message}); make it "
                       "executable (chmod +x) or run it through its interpreter")


def test_noexec_comes_before_the_mode_bits_and_they_before_landlock():
    looked = binary("/tmp/a", "/tmp", noexec=True, mode=0o644)
    assert refused(looked).startswith("blocked: /tmp/a cannot be executed: /tmp is mounted noexec")
    no_x = binary("/etc/passwd", "/", mode=0o644)
    assert refused(no_x).startswith("cannot run '/etc/passwd': /etc/passwd is not executable")


def test_a_script_whose_interpreter_is_refused_names_the_interpreter():
    script = binary("/context/run", "/context", interpreter="/tmp/py")
    interp = binary("/tmp/py", "/tmp", noexec=True)
    assert refused(script, interp, command="./run").startswith(
        "blocked: /tmp/py cannot be executed: /tmp is mounted noexec")
    interp = binary("/home/agent/py", "/home/agent", mode=0o600)
    assert refused(script, interp, command="./run").startswith(
        "cannot run './run': its interpreter /home/agent/py is not executable (mode 0600")


def test_a_missing_interpreter_is_named():
    script = binary("/context/run.sh", "/context", interpreter="/usr/bin/foo")
    assert refused(script, Looked("/usr/bin/foo"), command="./run.sh", failure=NOT_FOUND) == (
        "cannot run './run.sh': its interpreter /usr/bin/foo is not in the container")
    # Not found with no #! line, or nothing there: the kernel's word.
    assert refused(binary("/context/a.out", "/context"), command="a.out", failure=NOT_FOUND) == (
        "cannot run 'a.out': No such file or directory")
    assert refused(Looked("/nope"), command="/nope", failure=NOT_FOUND) == (
        "cannot run '/nope': No such file or directory")


def test_directories_and_devices_say_what_they_are():
    assert refused(Looked("/tmp", "dir", 0o1777, (0, 0), "/tmp", True)) == "cannot run '/tmp': /tmp is a directory"
    assert refused(Looked("/dev/null", "other", 0o666, (0, 0), "/dev/null", True)) == (
        "cannot run '/dev/null': /dev/null is not a regular file")


def test_other_failures_keep_the_kernels_word():
    assert reason("x", "", "Exec format error", (binary("/context/x", "/context"),), ROOT) == (
        "cannot run 'x': Exec format error")


@pytest.mark.parametrize("head,interpreter", [
    (b"#!/bin/sh\necho", "/bin/sh"),
    (b"#! /usr/bin/env python3 -u\n", "/usr/bin/env"),
    (b"#!\n", ""),
    (b"\x7fELF\x02\x01", ""),
    (b"", ""),
])
def test_the_interpreter_is_the_first_word_of_the_hashbang_line(head, interpreter):
    assert interpreter_of(head) == interpreter
