"""The violation stream's records (nucleus.config.violations): their shape, the rule and the hint
each kind of refusal gets, and how they are shown."""

from __future__ import annotations

import json

from nucleus.config import violations as vi
from nucleus.config.landlock_default import default_rules

CID = "0123456789abcdef0123456789abcdef"
CTX = vi.Context(CID, "web", landlock_rules=tuple((p, tuple(sorted(a))) for p, a in default_rules("/home/agent")))
WHEN = "2025-06-01T12:00:00.125Z"


def seccomp(syscall, *args, action="errno", errno=1, ctx=CTX):
    return vi.seccomp_violation(ctx, when=WHEN, pid=42, executable="/usr/bin/python3.11", syscall=syscall,
                                args=args, ret_action=action, errno=errno)


def test_a_seccomp_record_has_every_field_in_order():
    record = seccomp("socket", 16, 3, 9, errno=97)
    assert list(record) == ["time", "container", "pid", "executable", "layer", "operation", "object",
                            "args", "action", "rule", "hint"]
    assert record["container"] == {"id": CID, "name": "web"}
    assert (record["layer"], record["operation"], record["object"]) == ("seccomp", "socket", "AF_NETLINK")
    assert record["args"] == ["0x10", "0x3", "0x9"]
    assert record["action"] == "errno EAFNOSUPPORT"
    assert record["rule"] == "socket: only AF_UNIX, AF_INET and AF_INET6 sockets are allowed"
    assert "--seccomp-profile" in record["hint"]


def test_the_salient_argument_of_each_filtered_call():
    assert vi.salient("unshare", (0x10000000 | 0x20000,)) == "CLONE_NEWNS|CLONE_NEWUSER"
    assert vi.salient("clone", (0x40000000 | 17,)) == "CLONE_NEWNET"
    assert vi.salient("setns", (3, 0x20000000)) == "CLONE_NEWPID"
    assert vi.salient("mprotect", (0, 4096, 7)) == "PROT_READ|PROT_WRITE|PROT_EXEC"
    assert vi.salient("ioctl", (0, 0xDEADBEEF00005412)) == "TIOCSTI"  # compared on 32 bits
    assert vi.salient("ioctl", (0, 0x1234)) == "0x1234"
    assert vi.salient("prctl", (35,)) == "PR_SET_MM"
    assert vi.salient("socket", (99,)) == "family 99"
    assert vi.salient("mount", (1, 2, 3)) == ""


def test_the_rule_names_what_refused_the_call():
    assert seccomp("unshare", 0x10000000)["rule"] == "unshare is never allowed by the default seccomp profile"
    assert seccomp("clone", 0x10000000 | 17)["rule"] == "clone may not create namespaces"
    assert seccomp("mprotect", 0, 4096, 7)["rule"].startswith("mprotect may not make memory writable and executable")
    assert seccomp("ioctl", 0, 0x5412)["hint"].startswith("TIOCSTI is refused on purpose")
    assert seccomp("prlimit64", 1, 7, 1)["rule"] == "prlimit64 is allowed only in the forms the default seccomp profile lists"
    unknown = seccomp("lookup_widget")
    assert unknown["rule"] == "lookup_widget is not in the default seccomp allowlist"
    assert "--seccomp-mode trace" in unknown["hint"] and "nucleus seccomp generate" in unknown["hint"]
    logged = seccomp("lookup_widget", action="logged")
    assert logged["action"] == "logged" and "--seccomp-default-action log" in logged["rule"]
    assert seccomp("unshare", action="kill")["action"] == "kill"


def test_a_profile_file_is_named_as_the_rule():
    ctx = vi.Context(CID, "web", seccomp_profile="/srv/ls.json")
    record = seccomp("unshare", 0x10000000, ctx=ctx)
    assert record["rule"] == "the seccomp profile '/srv/ls.json' answers unshare with errno EPERM"
    assert record["hint"] == "allow unshare in '/srv/ls.json'"


def landlock(blockers, path, ctx=CTX):
    return vi.landlock_violation(ctx, when=WHEN, pid=7, executable="/usr/bin/dash", blockers=blockers, path=path)


def test_a_landlock_record_names_the_rights_the_rules_grant():
    record = landlock(("fs.write_file",), "/usr/lib/x")
    assert (record["layer"], record["operation"], record["object"], record["action"]) == (
        "landlock", "write_file", "/usr/lib/x", "errno EACCES")
    assert record["rule"] == "the default Landlock rules grant execute, read beneath /usr, not write"
    assert record["hint"].startswith("write under /tmp, the home directory or a copied /context")
    outside = landlock(("fs.read_file",), "/srv/data")
    assert outside["rule"] == "the default Landlock rules grant readdir beneath /, not read"
    assert outside["hint"].startswith("bring files in with --context DIR")
    bare = vi.Context(CID, "web", landlock_rules=(("/usr", ("read",)),))
    assert landlock(("fs.read_file",), "/srv/data", ctx=bare)["rule"] == (
        "the default Landlock rules grant nothing on /srv/data")
    run = landlock(("fs.execute",), "/tmp/tool")
    assert "--allow-exec" in run["hint"] and run["rule"].endswith("beneath /tmp, not execute")
    scope = landlock(("scope.signal",), "pid 1")
    assert scope["action"] == "errno EPERM" and scope["rule"] == "Landlock scopes signals to the sandbox's own processes"


def test_a_rule_deeper_in_the_tree_adds_its_rights():
    rules = (("/", ("readdir",)), ("/srv", ("read",)), ("/srv/out", ("create", "write")))
    groups, by = vi.granted(rules, "/srv/out/file")
    assert groups == {"readdir", "read", "create", "write"} and by == ["/", "/srv", "/srv/out"]
    assert vi.granted(rules, "/srvx")[1] == ["/"]  # a prefix of the name is not a parent


def test_a_landlock_policy_file_is_named_with_the_hint_to_change_it():
    ctx = vi.Context(CID, "web", landlock_rules=(("/tmp", ("read",)),), landlock_policy="ll.toml")
    record = landlock(("fs.make_reg",), "/tmp", ctx=ctx)
    assert record["rule"] == "the Landlock policy 'll.toml' grants read beneath /tmp, not create"
    assert record["hint"] == "grant create on /tmp in 'll.toml'"


def test_lines_parse_back_and_a_broken_line_is_passed_over():
    records = [seccomp("unshare", 0x10000000), landlock(("fs.write_file",), "/usr/x")]
    data = b"".join(vi.line(r) for r in records)
    assert data.count(b"\n") == 2 and all(json.loads(raw) for raw in data.splitlines())
    assert vi.parse(data + b'{"cut": ' + b"\n" + b'{"layer": "other"}\n') == records


def test_the_blocked_line_and_the_table():
    record = seccomp("socket", 16, 3, 9, action="kill")
    assert vi.blocked(record) == ("blocked: socket(AF_NETLINK) is not allowed by the seccomp policy; "
                                  + record["hint"])
    row = vi.table_row(record)
    assert (row["time"], row["call"]) == ("12:00:00.125", "socket(AF_NETLINK)")
    assert vi.call(landlock(("fs.write_file",), "/usr/x")) == "write_file /usr/x"
    assert [key for key, _ in vi.TABLE_COLUMNS] == ["time", "layer", "pid", "executable", "call", "action", "rule"]


def test_the_stream_lives_next_to_the_record():
    assert vi.stream_path("/run/nucleus", CID) == f"/run/nucleus/containers/{CID}.violations"


def test_what_the_workload_named_is_shown_without_its_control_characters():
    record = landlock(("fs.write_file",), "/tmp/\x1b[2Jx\n")
    assert json.loads(vi.line(record))["object"] == "/tmp/\x1b[2Jx\n"  # the stream keeps it as it was
    row = vi.table_row(record)
    assert row["object"] == "/tmp/\\x1b[2Jx\\n" and row["call"] == "write_file /tmp/\\x1b[2Jx\\n"
    assert "\x1b" not in vi.blocked(record) and "\n" not in vi.blocked(record)
