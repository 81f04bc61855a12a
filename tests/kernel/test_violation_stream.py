"""The violation stream on the real kernel: a refusal by each layer (a seccomp-refused unshare and
netlink socket, a Landlock-denied write to a path a policy makes read-only while its mode bits
allow writing) becomes one JSON line, in --violations FILE and in `nucleus violations C`, with
the rule that refused it; under --seccomp-default-action kill the run says which call killed its
workload.

Landlock logs its denials only while the kernel's audit is enabled: the test that needs it turns
it on for its own duration (``audit_on``, tests/kernel/audit_support.py).
"""

from __future__ import annotations

import json
import os
import textwrap

import pytest

from tests.helpers import SANDBOX_WITH_PYTHON, SIGSYS_EXIT, Scope, describe, run_nucleus, wait_for
from tests.kernel.audit_support import POLICY, audit_on  # noqa: F401 - a fixture

pytestmark = SANDBOX_WITH_PYTHON


@pytest.fixture
def scope():
    with Scope() as s:
        yield s



WORKLOAD = textwrap.dedent("""\
    unshare -U true 2>/dev/null; echo "unshare $?"
    python3 -c 'import socket; socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 9)' 2>/dev/null; echo "netlink $?"
    echo x 2>/dev/null > /tmp/x; echo "write $?"
""")


def _records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def _by_operation(records: list[dict]) -> dict[str, dict]:
    return {r["operation"]: r for r in records}


@pytest.mark.usefixtures("audit_on")
def test_each_layer_s_refusal_is_one_line_with_its_rule(scope, tmp_path):
    policy = tmp_path / "landlock.toml"
    policy.write_text(POLICY)
    copy = tmp_path / "violations.ndjson"
    cid = scope.detach(["/bin/sh", "-c", WORKLOAD, scope.marker], "--name", "refused",
                       "--landlock-policy", str(policy), "--violations", str(copy))
    assert wait_for(lambda: (scope.record(cid) or {}).get("status") == "stopped", timeout=30)
    log = scope.nucleus("logs", "refused")
    assert log.stdout == "unshare 1\nnetlink 1\nwrite 2\n", describe(log)  # sh: 2 is a failed redirection

    found = _by_operation(_records(copy.read_text()))
    assert set(found) >= {"unshare", "socket", "write_file"}, found
    unshare, netlink, write = found["unshare"], found["socket"], found["write_file"]
    for r in (unshare, netlink, write):
        assert r["container"] == {"id": cid, "name": "refused"}
        assert r["pid"] > 0 and r["time"].endswith("Z") and r["hint"]
    assert (unshare["layer"], unshare["object"], unshare["action"]) == ("seccomp", "CLONE_NEWUSER", "errno EPERM")
    assert unshare["executable"] == "/usr/bin/unshare"
    assert unshare["rule"] == "unshare is never allowed by the default seccomp profile"
    assert (netlink["layer"], netlink["object"], netlink["action"]) == ("seccomp", "AF_NETLINK", "errno EAFNOSUPPORT")
    assert netlink["rule"] == "socket: only AF_UNIX, AF_INET and AF_INET6 sockets are allowed"
    assert (write["layer"], write["object"], write["action"]) == ("landlock", "/tmp/x", "errno EACCES")
    assert write["executable"].endswith("/dash") or write["executable"].endswith("/sh")
    assert write["rule"] == f"the Landlock policy {str(policy)!r} grants create, read beneath /tmp, not write"
    assert write["hint"] == f"grant write on /tmp/x in {str(policy)!r}"

    # The container keeps the same lines, and shows them as a table too.
    shown = scope.nucleus("violations", "refused", "--format", "json")
    assert shown.returncode == 0, describe(shown)
    assert _records(shown.stdout) == _records(copy.read_text())
    table = scope.nucleus("violations", "refused")
    assert table.returncode == 0 and table.stderr == "", describe(table)
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["TIME", "LAYER", "PID", "EXECUTABLE", "OPERATION", "ACTION", "RULE"]
    assert any("unshare(CLONE_NEWUSER)" in row and "never allowed" in row for row in rows), table.stdout
    assert any("write_file /tmp/x" in row and "landlock" in row for row in rows), table.stdout

    # Removing the container removes its stream; the user's copy stays.
    assert scope.nucleus("rm", "refused").returncode == 0
    assert not [n for n in os.listdir(scope.containers_dir) if n.startswith(cid)]
    assert copy.exists()


def test_follow_prints_each_refusal_until_the_container_stops(scope):
    # Whether the follower starts before or after a refusal, it prints each one once (the
    # records kept, then the new ones), and it ends when the container has stopped.
    script = "unshare -U true 2>/dev/null; sleep 0.5; unshare -n true 2>/dev/null; exit 3"
    cid = scope.detach(scope.sh(script), "--name", "follow")
    follower = scope.popen("violations", "--follow", "--format", "json", "follow")
    try:
        out, err = follower.communicate(timeout=30)
    finally:
        follower.kill()
    assert follower.returncode == 0, err
    assert [r["object"] for r in _records(out)] == ["CLONE_NEWUSER", "CLONE_NEWNET"], out
    assert scope.record(cid)["exit_code"] == 3


def test_kill_says_which_call_killed_the_workload(tmp_path):
    code = "import socket; socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 9)"
    result = run_nucleus(["run", "--seccomp-default-action", "kill", "--", "python3", "-c", code])
    assert result.returncode == SIGSYS_EXIT, describe(result)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, describe(result)
    assert lines[0].startswith("blocked: socket(AF_NETLINK) is not allowed by the seccomp policy; "), lines[0]


def test_an_unusable_violations_file_is_refused_before_anything_starts(scope, tmp_path):
    link = tmp_path / "link.ndjson"
    link.symlink_to(tmp_path / "elsewhere.ndjson")
    result = scope.nucleus(*scope.run_args("--violations", str(link)), "--", "true")
    assert result.returncode == 125, describe(result)
    assert result.stderr == (f"error: --violations {str(link)!r}: cannot be opened for appending: is a "
                             "symbolic link\nhint: name a regular file of your own in a directory you may write\n")
    assert not (tmp_path / "elsewhere.ndjson").exists()
    assert scope.records() == {}
    # A hard link to a file elsewhere: refused too, and the file is left as it was.
    target = tmp_path / "target"
    target.write_text("keep\n")
    os.link(target, tmp_path / "hard.ndjson")
    result = scope.nucleus(*scope.run_args("--violations", str(tmp_path / "hard.ndjson")), "--", "true")
    assert result.returncode == 125 and "has 2 names (hard links)" in result.stderr, describe(result)
    assert target.read_text() == "keep\n"


def test_seccomp_refusals_are_recorded_with_audit_off_too(tmp_path):
    """The seccomp layer does not depend on audit: user notification answers and records."""
    copy = tmp_path / "v.ndjson"
    result = run_nucleus(["run", "--violations", str(copy), "--", "sh", "-c", "unshare -U true; true"])
    assert result.returncode == 0, describe(result)
    (record,) = _records(copy.read_text())
    assert (record["layer"], record["operation"], record["object"]) == ("seccomp", "unshare", "CLONE_NEWUSER")


def test_nothing_is_recorded_for_a_run_that_refuses_nothing(tmp_path):
    copy = tmp_path / "v.ndjson"
    result = run_nucleus(["run", "--violations", str(copy), "--", "true"])
    assert result.returncode == 0, describe(result)
    assert copy.read_text() == ""


def test_log_allows_what_the_profile_does_not_name_and_records_it(tmp_path):
    # msgget (System V message queues) is in no rule of the default profile; unshare is refused
    # by one of its own, so log still refuses it.
    code = ("import ctypes; libc = ctypes.CDLL(None, use_errno=True); "
            "print(libc.syscall(68, 0, 0o600) >= 0, libc.syscall(272, 0x10000000), ctypes.get_errno())")
    copy = tmp_path / "v.ndjson"
    options = ["--seccomp-default-action", "log", "--violations", str(copy)]
    result = run_nucleus(["run", *options, "--", "python3", "-c", code])
    assert (result.returncode, result.stdout) == (0, "True -1 1\n"), describe(result)
    logged, refused = _records(copy.read_text())
    assert (logged["operation"], logged["action"]) == ("msgget", "logged")
    assert logged["rule"] == "msgget is not in the default seccomp allowlist (allowed: --seccomp-default-action log)"
    assert (refused["operation"], refused["action"]) == ("unshare", "errno EPERM")
    errno_run = run_nucleus(["run", "--", "python3", "-c", code])
    assert errno_run.stdout == "False -1 1\n", describe(errno_run)
