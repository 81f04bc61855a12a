"""What a command run by `nucleus exec` is refused goes to its container's violation stream, as
its workload's refusals do: each refused call one line, with the joined process's pid (on the
host, as the trace of the exec records it) and the program it exec'd; under
--seccomp-default-action kill the exec says which call killed its command, whose status is 159;
Landlock's denials of the command are recorded once (by its monitor, not the container's too)."""

from __future__ import annotations

import json
import os

import pytest

from nucleus.trace import itf
from tests.helpers import (
    SANDBOX_PYTHON,
    SANDBOX_WITH_PYTHON,
    SIGSYS_EXIT,
    Scope,
    describe,
    wait_for,
)
from tests.kernel.audit_support import POLICY, audit_on  # noqa: F401 - a fixture

pytestmark = SANDBOX_WITH_PYTHON

READY = "echo ready; while :; do sleep 0.05; done"
NETLINK = "import socket; socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 9)"
NETLINK_ERRNO = f"""
try:
    {NETLINK}
except OSError as e:
    print(e.errno)
"""
BLOCKED_NETLINK = ("blocked: socket(AF_NETLINK) is not allowed by the seccomp policy; AF_NETLINK sockets "
                   "reach the kernel's own interfaces and stay refused; a --seccomp-profile that allows the "
                   "family is the only way")


@pytest.fixture
def scope():
    with Scope() as s:
        yield s
        s.assert_clean()


def started(scope: Scope, name: str, *options: str) -> str:
    cid = scope.detach(scope.sh(READY), "--name", name, *options)
    scope.wait_log(cid, lambda text: "ready" in text)
    return cid


def records(scope: Scope, name: str) -> list[dict]:
    shown = scope.nucleus("violations", "--format", "json", name)
    assert shown.returncode == 0 and shown.stderr == "", describe(shown)
    return [json.loads(line) for line in shown.stdout.splitlines()]


def joined_pid(trace: str) -> int:
    """The joined process's pid on the host: what the fork step reported, as the trace keeps it."""
    (pid,) = [meta["event"]["f"]["detail"] for meta in itf.load(trace).state_meta
              if meta.get("event", {}).get("t") == "JoinDone" and meta["event"]["f"]["step"] == "fork"]
    return int(pid)


def test_an_exec_command_s_refusals_are_in_the_container_s_stream(scope, tmp_path):
    cid = started(scope, "box")
    unshare_trace, netlink_trace = str(tmp_path / "unshare.itf.json"), str(tmp_path / "netlink.itf.json")
    unshare = scope.nucleus("exec", "--trace", unshare_trace, "box", "--", "unshare", "-U", "true")
    assert unshare.returncode == 1 and "Operation not permitted" in unshare.stderr, describe(unshare)
    netlink = scope.nucleus("exec", "--trace", netlink_trace, "box", "--", "python3", "-c", NETLINK_ERRNO)
    assert (netlink.returncode, netlink.stdout) == (0, "97\n"), describe(netlink)  # EAFNOSUPPORT, as in a run

    found = records(scope, "box")
    assert [(r["layer"], r["operation"], r["object"], r["action"], r["pid"], r["executable"]) for r in found] == [
        ("seccomp", "unshare", "CLONE_NEWUSER", "errno EPERM", joined_pid(unshare_trace), "/usr/bin/unshare"),
        ("seccomp", "socket", "AF_NETLINK", "errno EAFNOSUPPORT", joined_pid(netlink_trace),
         os.path.realpath(SANDBOX_PYTHON)),
    ], found
    assert all(r["container"] == {"id": cid, "name": "box"} and r["joined"] is True and r["hint"] for r in found), found
    assert found[0]["rule"] == "unshare is never allowed by the default seccomp profile"
    table = scope.nucleus("violations", "box")
    assert any("/usr/bin/unshare" in row and "unshare(CLONE_NEWUSER)" in row for row in table.stdout.splitlines()), \
        describe(table)
    assert scope.nucleus("rm", "--force", "box").returncode == 0


def test_under_kill_the_exec_says_which_call_killed_its_command(scope):
    started(scope, "killbox", "--seccomp-default-action", "kill")
    result = scope.nucleus("exec", "killbox", "--", "python3", "-c", NETLINK)
    assert (result.returncode, result.stdout, result.stderr) == (SIGSYS_EXIT, "", BLOCKED_NETLINK + "\n"), \
        describe(result)
    (killed,) = records(scope, "killbox")
    assert (killed["operation"], killed["action"]) == ("socket", "kill"), killed
    # Only the command was killed: the container runs on, and a command that is refused nothing
    # says nothing.
    fine = scope.nucleus("exec", "killbox", "--", "true")
    assert (fine.returncode, fine.stderr) == (0, ""), describe(fine)
    assert scope.record(killed["container"]["id"])["status"] == "running"
    assert scope.nucleus("rm", "--force", "killbox").returncode == 0


def test_a_process_the_command_leaves_behind_is_still_refused_once_the_exec_has_returned(scope):
    """Its calls were answered by the exec's monitor, which ends with the exec: from then on the
    kernel fails what the filter refuses with ENOSYS, without a record, as after a monitor's
    death."""
    started(scope, "left")
    script = ("(while [ ! -e /tmp/go ]; do sleep 0.05; done; unshare -U true 2>/tmp/err; echo $? > /tmp/rc) "
              ">/dev/null 2>&1 & echo started")
    leaving = scope.nucleus("exec", "left", "--", "sh", "-c", script)
    assert (leaving.returncode, leaving.stdout) == (0, "started\n"), describe(leaving)
    assert scope.nucleus("exec", "left", "--", "touch", "/tmp/go").returncode == 0
    assert wait_for(lambda: scope.nucleus("exec", "left", "--", "cat", "/tmp/rc").stdout == "1\n", timeout=10)
    err = scope.nucleus("exec", "left", "--", "cat", "/tmp/err")
    assert err.stdout == "unshare: unshare failed: Function not implemented\n", describe(err)
    assert records(scope, "left") == []
    assert scope.nucleus("rm", "--force", "left").returncode == 0


@pytest.mark.usefixtures("audit_on")
def test_the_command_s_landlock_denial_is_recorded_once(scope, tmp_path):
    policy = tmp_path / "landlock.toml"
    policy.write_text(POLICY)
    cid = started(scope, "walled", "--landlock-policy", str(policy))
    result = scope.nucleus("exec", "walled", "--", "sh", "-c", "echo x > /tmp/x")
    assert result.returncode == 2 and "Permission denied" in result.stderr, describe(result)
    # Stopped: the container's monitor too has read what audit still had on its way (a second
    # line for the same denial would be there by now).
    assert scope.nucleus("stop", "walled").returncode == 0
    scope.wait_finished(cid)
    (denied,) = records(scope, "walled")
    assert (denied["operation"], denied["object"], denied["action"]) == ("write_file", "/tmp/x", "errno EACCES")
    assert denied["executable"].endswith(("/dash", "/sh")) and denied["joined"] is True
    assert denied["rule"] == f"the Landlock policy {str(policy)!r} grants create, read beneath /tmp, not write"
    assert scope.nucleus("rm", "--force", "walled").returncode == 0
