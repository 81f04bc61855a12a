"""Malformed security policy files through the command line: each is refused before anything
runs (exit 125) with one error naming the file, the field and the value, and a hint where the fix
is known; never a traceback."""

from __future__ import annotations

import hashlib

import pytest

from tests.helpers import describe, run_nucleus

ERRNO_HINT = "hint: an errno number such as 1 (EPERM) or 38 (ENOSYS), at most 4095"
CAP_HINT = "names are those of capabilities(7), with or without CAP_: NET_BIND_SERVICE"
ACCESS_RIGHTS = "read, write, execute, create, remove, readdir, ioctl_dev, all"

# (id, flag, file name, content, the error line after "error: <file>: ", the hint line or None
# when only its presence is checked)
CASES = [
    ("json-syntax", "--seccomp-profile", "p.json", '{"defaultAction": "SCMP_ACT_ERRNO",}',
     "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 36",
     "hint: check the syntax near that position (a missing comma or quote, a trailing comma)"),
    ("json-empty", "--seccomp-profile", "p.json", "",
     "not valid JSON: Expecting value at line 1 column 1", None),
    ("json-not-an-object", "--seccomp-profile", "p.json", "[]",
     "expected a JSON object (a seccomp profile), got an array",
     'hint: a profile starts with {"defaultAction": ...}'),
    ("json-not-utf8", "--seccomp-profile", "p.json", b'{"defaultAction": "\xff"}',
     "not UTF-8 text: byte 0xff at offset 19", "hint: save the JSON file as UTF-8"),
    ("seccomp-unknown-key", "--seccomp-profile", "p.json",
     '{"defaultAction": "SCMP_ACT_ERRNO", "syscals": []}',
     "syscals: unknown key",
     "hint: did you mean 'syscalls'? the keys of a seccomp profile are: defaultAction, "
     "defaultErrnoRet, architectures, archMap, flags, listenerPath, listenerMetadata, syscalls, "
     "newerSyscallsErrno"),
    ("seccomp-unknown-entry-key", "--seccomp-profile", "p.json",
     '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], '
     '"action": "SCMP_ACT_ALLOW", "arg": []}]}',
     "syscalls[0].arg: unknown key",
     "hint: did you mean 'args'? the keys of a syscalls entry are: names, name, action, errnoRet, "
     "args, comment, includes, excludes"),
    ("seccomp-unknown-action", "--seccomp-profile", "p.json",
     '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], '
     '"action": "SCMP_ACT_ALOW"}]}',
     "syscalls[0].action: unknown action 'SCMP_ACT_ALOW'",
     "hint: did you mean 'SCMP_ACT_ALLOW'? actions: SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL, "
     "SCMP_ACT_KILL_THREAD, SCMP_ACT_KILL_PROCESS, SCMP_ACT_TRAP, SCMP_ACT_LOG"),
    ("seccomp-unknown-default-action", "--seccomp-profile", "p.json",
     '{"defaultAction": "SCMP_ACT_DENY"}',
     "defaultAction: unknown action 'SCMP_ACT_DENY'", None),
    ("seccomp-refused-action", "--seccomp-profile", "p.json", '{"defaultAction": "SCMP_ACT_TRACE"}',
     "defaultAction: action 'SCMP_ACT_TRACE' is not supported: it hands the syscall to a ptrace "
     "tracer, and nucleus runs none (ptrace is denied)",
     "hint: deny with SCMP_ACT_ERRNO, or allow and log with SCMP_ACT_LOG"),
    ("seccomp-unknown-op", "--seccomp-profile", "p.json",
     '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": '
     '"SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQUAL"}]}]}',
     "syscalls[0].args[0].op: unknown comparison 'SCMP_CMP_EQUAL'", None),
    ("seccomp-unknown-arch", "--seccomp-profile", "p.json",
     '{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_46"]}',
     "architectures[0]: unknown architecture 'SCMP_ARCH_X86_46'", None),
    ("seccomp-errno-name", "--seccomp-profile", "p.json",
     '{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": "EPERM"}',
     "defaultErrnoRet: 'EPERM' is not an errno", ERRNO_HINT),
    ("seccomp-bad-syscall-name", "--seccomp-profile", "p.json",
     '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "Open At"], '
     '"action": "SCMP_ACT_ALLOW"}]}',
     "syscalls[0].names[1]: 'Open At' is not a syscall name",
     'hint: syscall names are lower-case, as in syscalls(2): "openat"'),
    ("seccomp-conflict", "--seccomp-profile", "p.json",
     '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": '
     '"SCMP_ACT_ALLOW"}, {"names": ["read"], "action": "SCMP_ACT_KILL_PROCESS"}]}',
     "syscalls[0] and syscalls[1]: conflicting actions for 'read' with no argument conditions: "
     "SCMP_ACT_ALLOW and SCMP_ACT_KILL_PROCESS",
     "hint: keep one of the two rules, or give them different argument conditions"),
    ("caps-toml-syntax", "--caps-policy", "c.toml", '[bounding\nkeep = ["CHOWN"]\n',
     "not valid TOML: Expected ']' at the end of a table declaration (at line 1, column 10)",
     "hint: check the syntax near that position"),
    ("caps-unknown-table", "--caps-policy", "c.toml", "[bounded]\nkeep = []\n",
     "bounded: unknown key",
     "hint: did you mean 'bounding'? the tables of a capability policy are: bounding, permitted, "
     "effective, inheritable, ambient"),
    ("caps-unknown-capability", "--caps-policy", "c.toml", '[bounding]\nkeep = ["CHOWN", "NET_BIND"]\n',
     "bounding.keep[1]: unknown capability 'NET_BIND'",
     f"hint: did you mean 'CAP_NET_BIND_SERVICE'? {CAP_HINT}"),
    ("caps-unknown-capability-prefixed", "--caps-policy", "c.toml", '[effective]\nkeep = ["CAP_CHOWNN"]\n',
     "effective.keep[0]: unknown capability 'CAP_CHOWNN'",
     f"hint: did you mean 'CAP_CHOWN'? {CAP_HINT}"),
    ("caps-not-a-name", "--caps-policy", "c.toml", "[bounding]\nkeep = [12]\n",
     "bounding.keep[0]: expected a capability name, got an integer 12", f"hint: {CAP_HINT}"),
    ("caps-outside-bounding", "--caps-policy", "c.toml", '[permitted]\nkeep = ["CHOWN"]\n',
     "permitted.keep: 'CAP_CHOWN' is not in bounding (none: the table is absent)",
     "hint: add it to [bounding] keep, or remove it from [permitted]"),
    ("landlock-toml-syntax", "--landlock-policy", "l.toml", 'min_abi = \n',
     "not valid TOML: Invalid value (at line 1, column 11)", None),
    ("landlock-unknown-key", "--landlock-policy", "l.toml", "min_abi = 1\nrule = []\n",
     "rule: unknown key",
     "hint: did you mean 'rules'? the keys of a Landlock policy are: min_abi, rules"),
    ("landlock-unknown-rule-key", "--landlock-policy", "l.toml",
     '[[rules]]\npath = "/usr"\nacess = ["read"]\n',
     "rules[0].acess: unknown key",
     "hint: did you mean 'access'? the keys of a rule are: path, access"),
    ("landlock-unknown-access", "--landlock-policy", "l.toml",
     '[[rules]]\npath = "/usr"\naccess = ["read", "exec"]\n',
     "rules[0].access[1]: unknown access right 'exec'",
     f"hint: did you mean 'execute'? access rights: {ACCESS_RIGHTS}"),
    ("landlock-relative-path", "--landlock-policy", "l.toml", '[[rules]]\npath = "usr"\naccess = ["read"]\n',
     "rules[0].path: 'usr' is not an absolute path",
     'hint: write the full path from /, e.g. "/etc/myservice"'),
    ("landlock-path-twice", "--landlock-policy", "l.toml",
     '[[rules]]\npath = "/usr"\naccess = ["read"]\n[[rules]]\npath = "/usr/"\naccess = ["execute"]\n',
     "rules[1].path: '/usr' is already given in rules[0]",
     "hint: merge the two access lists into one rule"),
    ("landlock-abi-zero", "--landlock-policy", "l.toml", "min_abi = 0\n",
     "min_abi: 0 is not a Landlock ABI version 1..", None),
]


@pytest.mark.parametrize("flag,name,content,error,hint", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_malformed_policy_file(tmp_path, flag, name, content, error, hint):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    result = run_nucleus(["run", flag, str(path), "--", "/bin/echo", "ran"])
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    lines = result.stderr.splitlines()
    if error.endswith(".."):  # a range whose upper end is the kernel's latest ABI
        assert lines[0].startswith(f"error: {path}: {error}"), describe(result)
    else:
        assert lines[0] == f"error: {path}: {error}", describe(result)
    # One error: at most a hint follows it.
    assert len(lines) <= 2, describe(result)
    if hint is not None:
        assert lines[1:] == [hint], describe(result)
    elif len(lines) == 2:
        assert lines[1].startswith("hint: "), describe(result)


def test_unknown_key_in_a_capability_table_suggests_keep(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[bounding]\nkeeep = ["CHOWN"]\n')
    result = run_nucleus(["run", "--caps-policy", str(path), "--", "/bin/echo", "ran"])
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    assert result.stderr == (f"error: {path}: bounding.keeep: unknown key\n"
                             "hint: did you mean 'keep'? the keys of [bounding] are: keep\n")


@pytest.mark.parametrize("flag", ["--seccomp-profile", "--caps-policy", "--landlock-policy"])
def test_missing_policy_file(tmp_path, flag):
    path = tmp_path / "absent"
    result = run_nucleus(["run", flag, str(path), "--", "/bin/echo", "ran"])
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    assert result.stderr == f"error: {flag} {str(path)!r}: No such file or directory\n"


def test_directory_as_policy_file(tmp_path):
    result = run_nucleus(["run", "--landlock-policy", str(tmp_path), "--", "/bin/echo", "ran"])
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    assert result.stderr == f"error: --landlock-policy {str(tmp_path)!r}: Is a directory\n"


@pytest.mark.parametrize("flag,name,content", [
    ("--seccomp-profile", "p.json", '{"defaultAction": "SCMP_ACT_ERRNO"}'),
    ("--landlock-policy", "l.toml", "min_abi = 1\n"),
])
@pytest.mark.parametrize("pin", ["not-a-hash", "z" * 64])
def test_non_hex_pin(tmp_path, flag, name, content, pin):
    path = tmp_path / name
    path.write_text(content)
    result = run_nucleus(["run", flag, str(path), f"{flag}-sha256", pin, "--", "/bin/echo", "ran"])
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    assert result.stderr == (f"error: {flag}-sha256 {pin!r}: not a sha256 (64 hexadecimal "
                             f"characters)\nhint: compute it with: sha256sum {path}\n")


def test_pin_is_checked_before_the_file_is_parsed(tmp_path):
    """A wrong pin on a malformed file reports the pin: the bytes are not the ones vouched for."""
    path = tmp_path / "p.json"
    path.write_text("{not json")
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    result = run_nucleus(["run", "--seccomp-profile", str(path), "--seccomp-profile-sha256",
                          "a" * 64, "--", "/bin/echo", "ran"])
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    assert result.stderr.splitlines()[0] == (
        f"error: --seccomp-profile-sha256: {str(path)!r} has sha256 {actual}, expected {'a' * 64}")


def test_seccomp_generate_names_the_trace_and_line(tmp_path):
    trace = tmp_path / "t.ndjson"
    trace.write_text('{"syscall": "read", "nr": 0, "pid": 1, "arch": "x86_64"}\nnot json\n')
    result = run_nucleus(["seccomp", "generate", str(trace), "-o", str(tmp_path / "p.json")])
    assert (result.returncode, result.stdout) == (125, ""), describe(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {trace}:2: not valid JSON: Expecting value (column 1)"], describe(result)
    assert not (tmp_path / "p.json").exists()
