"""Security policy files: every message a user can get from a bad file, and what good files mean.

Each error names the file, the dotted field path and the bad value, and a hint where the fix is
known; the tests below pin the exact text, because the text is the interface.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from nucleus.config import capabilities as capspec
from nucleus.config import landlock_default as ll
from nucleus.config.policy import caps_policy as cp
from nucleus.config.policy import landlock_policy as lp
from nucleus.config.policy import pins
from nucleus.config.policy import seccomp_args as sa
from nucleus.config.policy import seccomp_host as sh
from nucleus.config.policy import seccomp_profile as sp
from nucleus.errors import InvalidInput
from tests.helpers import DOCKER_PROFILE, NEEDS_DOCKER_PROFILE

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "policies"

ALLOW = "SCMP_ACT_ALLOW"
ERRNO = "SCMP_ACT_ERRNO"
EQ = "SCMP_CMP_EQ"


def error(fn, *args, **kw) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        fn(*args, **kw)
    return info.value


def seccomp(doc, path="x.json", **facts) -> dict:
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return sp.parse_seccomp_profile(data, path, **facts)


def seccomp_error(doc, **facts) -> tuple[str, str | None]:
    e = error(seccomp, doc, **facts)
    return e.message, e.hint


def rule(names, action=ALLOW, **extra) -> dict:
    return {"names": list(names), "action": action, **extra}


def arg(index, value, op=EQ, **extra) -> dict:
    return {"index": index, "value": value, "op": op, **extra}


def profile(*rules, default=ERRNO, **extra) -> dict:
    return {"defaultAction": default, **extra, "syscalls": list(rules)}


# --- sha256 pins ---------------------------------------------------------------------------------

FLAG = "--seccomp-profile-sha256"


def test_sha256_of_is_sha256sum():
    assert pins.sha256_of(b"abc") == hashlib.sha256(b"abc").hexdigest()


def test_pin_match_returns_the_digest_and_accepts_upper_case():
    data = b'{"defaultAction": "SCMP_ACT_ALLOW"}'
    digest = hashlib.sha256(data).hexdigest()
    assert pins.check_pin("x.json", data, digest, FLAG) == digest
    assert pins.check_pin("x.json", data, f" {digest.upper()}\n", FLAG) == digest


@pytest.mark.parametrize(
    "pin, shown",
    [
        ("abc123", "'abc123'"),
        ("g" * 64, "'" + "g" * 64 + "'"),
        ("0" * 63, "'" + "0" * 63 + "'"),
        ("0" * 65, "'" + "0" * 65 + "'"),
        ("0" * 100, "'" + "0" * 76 + "..."),
        ("", "''"),
    ],
)
def test_pin_that_is_not_hex_is_refused(pin, shown):
    e = error(pins.check_pin, "x.json", b"{}", pin, FLAG)
    assert e.message == f"{FLAG} {shown}: not a sha256 (64 hexadecimal characters)"
    assert e.hint == "compute it with: sha256sum x.json"


def test_pin_mismatch_prints_both_hashes():
    data = b"{}"
    actual = hashlib.sha256(data).hexdigest()
    pinned = "ab" * 32
    e = error(pins.check_pin, "x.json", data, pinned.upper(), "--caps-policy-sha256")
    assert e.message == f"--caps-policy-sha256: 'x.json' has sha256 {actual}, expected {pinned}"
    assert e.hint == (
        "the file is not the one that was pinned: review what changed, then pin the new hash "
        "(sha256sum x.json)"
    )


# --- seccomp: files that are not profiles --------------------------------------------------------


@pytest.mark.parametrize(
    "data, message, hint",
    [
        (
            b'{"defaultAction": "SCMP_ACT_ALLOW",}',
            "x.json: not valid JSON: Expecting property name enclosed in double quotes at line 1 "
            "column 36",
            "check the syntax near that position (a missing comma or quote, a trailing comma)",
        ),
        (
            b"",
            "x.json: not valid JSON: Expecting value at line 1 column 1",
            "check the syntax near that position (a missing comma or quote, a trailing comma)",
        ),
        (b'{"defaultAction": NaN}', "x.json: not valid JSON: NaN is not a JSON number", None),
        (b"\xff{}", "x.json: not UTF-8 text: byte 0xff at offset 0", "save the JSON file as UTF-8"),
        (
            b"[]",
            "x.json: expected a JSON object (a seccomp profile), got an array",
            'a profile starts with {"defaultAction": ...}',
        ),
        (b"[" * 100000, "x.json: not valid JSON: nested too deeply", None),
    ],
)
def test_not_a_profile(data, message, hint):
    assert seccomp_error(data) == (message, hint)


def test_bom_is_accepted():
    data = "\ufeff" + json.dumps({"defaultAction": ALLOW})
    assert seccomp(data.encode())["defaultAction"] == ALLOW


def test_a_key_given_twice_is_refused():
    data = b'{"defaultAction": "SCMP_ACT_ALLOW", "defaultAction": "SCMP_ACT_ERRNO"}'
    assert seccomp_error(data) == ("x.json: defaultAction: key given twice", "keep one of the two")
    data = b'{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "names": ["a"]}]}'
    assert seccomp_error(data)[0] == "x.json: syscalls[0].names: key given twice"


# --- seccomp: unknown keys -------------------------------------------------------------------------

TOP_KEYS = (
    "the keys of a seccomp profile are: defaultAction, defaultErrnoRet, architectures, archMap, "
    "flags, listenerPath, listenerMetadata, syscalls"
)
ENTRY_KEYS = (
    "the keys of a syscalls entry are: names, name, action, errnoRet, args, comment, includes, "
    "excludes"
)


@pytest.mark.parametrize(
    "doc, message, hint",
    [
        (
            {"defaultActon": ALLOW},
            "x.json: defaultActon: unknown key",
            f"did you mean 'defaultAction'? {TOP_KEYS}",
        ),
        ({"defaultAction": ALLOW, "zzz": 1}, "x.json: zzz: unknown key", TOP_KEYS),
        ({"defaultAction": ALLOW, "my key": 1}, "x.json: ['my key']: unknown key", TOP_KEYS),
        (
            profile(rule(["read"]), rule(["a"]), rule(["b"]), {"names": ["c"], "acton": ALLOW}),
            "x.json: syscalls[3].acton: unknown key",
            f"did you mean 'action'? {ENTRY_KEYS}",
        ),
        (
            profile(rule(["read"], args=[{"index": 0, "value": 1, "op": EQ, "valu2": 3}])),
            "x.json: syscalls[0].args[0].valu2: unknown key",
            "did you mean 'value'? the keys of an argument condition are: index, value, "
            "valueTwo, op",
        ),
        (
            profile(rule(["read"], includes={"caps": [], "minkernel": "4.8"})),
            "x.json: syscalls[0].includes.minkernel: unknown key",
            "did you mean 'minKernel'? the keys of includes are: arches, caps, minKernel",
        ),
        (
            {"defaultAction": ALLOW, "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subs": []}]},
            "x.json: archMap[0].subs: unknown key",
            "the keys of an archMap entry are: architecture, subArchitectures",
        ),
    ],
)
def test_unknown_keys(doc, message, hint):
    assert seccomp_error(doc) == (message, hint)


# --- seccomp: actions, errno, architectures, flags -------------------------------------------------

ACTIONS = (
    "actions: SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL, SCMP_ACT_KILL_THREAD, "
    "SCMP_ACT_KILL_PROCESS, SCMP_ACT_TRAP, SCMP_ACT_LOG"
)
SOFT = "deny with SCMP_ACT_ERRNO, or allow and log with SCMP_ACT_LOG"


@pytest.mark.parametrize(
    "doc, message, hint",
    [
        ({}, "x.json: defaultAction: missing",
         'say what happens to a syscall no rule matches, e.g. "SCMP_ACT_ERRNO" or '
         '"SCMP_ACT_KILL_PROCESS"'),
        ({"defaultAction": "SCMP_ACT_ALOW"}, "x.json: defaultAction: unknown action 'SCMP_ACT_ALOW'",
         f"did you mean 'SCMP_ACT_ALLOW'? {ACTIONS}"),
        ({"defaultAction": "allow"}, "x.json: defaultAction: unknown action 'allow'",
         f"did you mean 'SCMP_ACT_ALLOW'? {ACTIONS}"),
        ({"defaultAction": 1}, "x.json: defaultAction: expected an action name, got an integer 1",
         None),
        (
            {"defaultAction": "SCMP_ACT_TRACE"},
            "x.json: defaultAction: action 'SCMP_ACT_TRACE' is not supported: it hands the syscall "
            "to a ptrace tracer, and nucleus runs none (ptrace is denied)",
            SOFT,
        ),
        (
            profile(rule(["read"]), rule(["ioctl"], "SCMP_ACT_NOTIFY")),
            "x.json: syscalls[1].action: action 'SCMP_ACT_NOTIFY' is not supported: nucleus runs "
            "no seccomp user-notification agent",
            SOFT,
        ),
        (
            profile(rule(["read"], "SCMP_ACT_FOO")),
            "x.json: syscalls[0].action: unknown action 'SCMP_ACT_FOO'",
            ACTIONS,
        ),
        (
            profile(rule(["read"], "SCMP_ACT_KILLPROCESS")),
            "x.json: syscalls[0].action: unknown action 'SCMP_ACT_KILLPROCESS'",
            f"did you mean 'SCMP_ACT_KILL_PROCESS'? {ACTIONS}",
        ),
        (profile({"names": ["read"]}), "x.json: syscalls[0].action: missing",
         'e.g. "SCMP_ACT_ALLOW" or "SCMP_ACT_ERRNO"'),
        (
            {"defaultAction": ALLOW, "defaultErrnoRet": 1},
            "x.json: defaultErrnoRet: 1 given, but the action is SCMP_ACT_ALLOW: an errno applies "
            "only to SCMP_ACT_ERRNO",
            "remove defaultErrnoRet, or make the action SCMP_ACT_ERRNO",
        ),
        (
            profile(rule(["read"], errnoRet=13)),
            "x.json: syscalls[0].errnoRet: 13 given, but the action is SCMP_ACT_ALLOW: an errno "
            "applies only to SCMP_ACT_ERRNO",
            "remove errnoRet, or make the action SCMP_ACT_ERRNO",
        ),
        (
            profile(rule(["read"], ERRNO, errnoRet=5000)),
            "x.json: syscalls[0].errnoRet: 5000 is not an errno",
            "an errno number such as 1 (EPERM) or 38 (ENOSYS), at most 4095",
        ),
        (
            profile(rule(["read"], ERRNO, errnoRet="EPERM")),
            "x.json: syscalls[0].errnoRet: 'EPERM' is not an errno",
            "an errno number such as 1 (EPERM) or 38 (ENOSYS), at most 4095",
        ),
    ],
)
def test_actions(doc, message, hint):
    assert seccomp_error(doc) == (message, hint)


ARCHES = "architectures: " + ", ".join(sh.SECCOMP_ARCHES)


@pytest.mark.parametrize(
    "doc, message, hint",
    [
        (
            {"defaultAction": ALLOW, "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"]},
            "x.json: architectures[1]: unknown architecture 'SCMP_ARCH_VAX'",
            ARCHES,
        ),
        (
            {"defaultAction": ALLOW, "architectures": ["x86_64"]},
            "x.json: architectures[0]: unknown architecture 'x86_64'",
            f"did you mean 'SCMP_ARCH_X86_64'? {ARCHES}",
        ),
        (
            {"defaultAction": ALLOW, "architectures": "SCMP_ARCH_X86_64"},
            "x.json: architectures: expected an array of SCMP_ARCH_* names, got a string "
            "'SCMP_ARCH_X86_64'",
            None,
        ),
        (
            {"defaultAction": ALLOW, "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                                                   "subArchitectures": ["SCMP_ARCH_I386"]}]},
            "x.json: archMap[0].subArchitectures[0]: unknown architecture 'SCMP_ARCH_I386'",
            ARCHES,
        ),
        (
            {"defaultAction": ALLOW, "archMap": [{"subArchitectures": []}]},
            "x.json: archMap[0].architecture: missing",
            'name the main architecture, e.g. "SCMP_ARCH_X86_64"',
        ),
        (
            {"defaultAction": ALLOW, "architectures": ["SCMP_ARCH_X86_64"],
             "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]},
            "x.json: archMap: given together with architectures",
            "use either architectures or archMap (as Docker requires)",
        ),
        (
            {"defaultAction": ALLOW, "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"]},
            "x.json: flags[0]: flag 'SECCOMP_FILTER_FLAG_SPEC_ALLOW' is not supported: it turns "
            "off the kernel's speculative store bypass mitigation for the workload",
            "remove it",
        ),
        (
            {"defaultAction": ALLOW, "flags": ["SECCOMP_FILTER_FLAG_LOGS"]},
            "x.json: flags[0]: unknown flag 'SECCOMP_FILTER_FLAG_LOGS'",
            "did you mean 'SECCOMP_FILTER_FLAG_LOG'? flags: SECCOMP_FILTER_FLAG_LOG, "
            "SECCOMP_FILTER_FLAG_TSYNC, SECCOMP_FILTER_FLAG_SPEC_ALLOW, "
            "SECCOMP_FILTER_FLAG_NEW_LISTENER, SECCOMP_FILTER_FLAG_TSYNC_ESRCH, "
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
        ),
        (
            {"defaultAction": ALLOW, "listenerPath": "/run/agent.sock"},
            "x.json: listenerPath: '/run/agent.sock': seccomp user notification is not supported "
            "(nucleus runs no notification agent)",
            "remove listenerPath and any SCMP_ACT_NOTIFY rule",
        ),
        (
            {"defaultAction": ALLOW, "listenerMetadata": 7},
            "x.json: listenerMetadata: expected a string, got an integer 7",
            None,
        ),
    ],
)
def test_architectures_flags_listener(doc, message, hint):
    assert seccomp_error(doc) == (message, hint)


def test_architectures_are_normalized():
    doc = {"defaultAction": ALLOW, "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"]}
    # The native one first; an architecture no process on this machine can use is left out.
    assert seccomp(doc)["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    assert seccomp({"defaultAction": ALLOW})["architectures"] == ["SCMP_ARCH_X86_64"]
    assert seccomp(doc, arch="aarch64")["architectures"] == ["SCMP_ARCH_AARCH64"]


def test_flags_and_listener_that_change_nothing_are_accepted():
    doc = {
        "defaultAction": ALLOW,
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"],
        "listenerPath": "",
        "listenerMetadata": "",
    }
    out = seccomp(doc)
    assert out["flags"] == ["SECCOMP_FILTER_FLAG_LOG"]
    assert sp.logs_denied(out) is True
    assert sp.logs_denied(seccomp({"defaultAction": ALLOW})) is False
    assert "listenerPath" not in out


# --- seccomp: syscall names and argument conditions ------------------------------------------------

NAME_HINT = 'syscall names are lower-case, as in syscalls(2): "openat"'
OPS = (
    "comparisons: SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_EQ, SCMP_CMP_GE, SCMP_CMP_GT, "
    "SCMP_CMP_MASKED_EQ"
)
U64 = "an unsigned 64-bit integer"


@pytest.mark.parametrize(
    "entry, message, hint",
    [
        ({"action": ALLOW}, "x.json: syscalls[0].names: missing",
         'list the syscalls the rule is for, e.g. "names": ["read"]'),
        (rule([]), "x.json: syscalls[0].names: empty", "list at least one syscall"),
        ({"names": "read", "action": ALLOW},
         "x.json: syscalls[0].names: expected an array of syscall names, got a string 'read'", None),
        (rule(["read", "Open File"]), "x.json: syscalls[0].names[1]: 'Open File' is not a syscall name",
         NAME_HINT),
        (rule(["read", 3]), "x.json: syscalls[0].names[1]: 3 is not a syscall name", NAME_HINT),
        ({"name": "read", "names": ["write"], "action": ALLOW},
         "x.json: syscalls[0].name: given together with names", "list every syscall in names"),
        (rule(["read"], args=[arg(6, 1)]), "x.json: syscalls[0].args[0].index: 6 is not an argument "
         "index 0..5", "a syscall has at most 6 arguments, numbered from 0"),
        (rule(["read"], args=[arg("0", 1)]), "x.json: syscalls[0].args[0].index: '0' is not an "
         "argument index 0..5", "a syscall has at most 6 arguments, numbered from 0"),
        (rule(["read"], args=[arg(True, 1)]), "x.json: syscalls[0].args[0].index: true is not an "
         "argument index 0..5", "a syscall has at most 6 arguments, numbered from 0"),
        (rule(["read"], args=[{"value": 1, "op": EQ}]), "x.json: syscalls[0].args[0].index: missing",
         "the argument's position, 0..5"),
        (rule(["read"], args=[arg(0, 1, "SCMP_CMP_LIKE")]),
         "x.json: syscalls[0].args[0].op: unknown comparison 'SCMP_CMP_LIKE'", OPS),
        (rule(["read"], args=[arg(0, 1, "SCMP_CMP_MASKEDEQ")]),
         "x.json: syscalls[0].args[0].op: unknown comparison 'SCMP_CMP_MASKEDEQ'",
         f"did you mean 'SCMP_CMP_MASKED_EQ'? {OPS}"),
        (rule(["read"], args=[{"index": 0, "value": 1}]), "x.json: syscalls[0].args[0].op: missing",
         OPS),
        (rule(["read"], args=[arg(0, -1)]),
         f"x.json: syscalls[0].args[0].value: -1 is not {U64}", None),
        (rule(["read"], args=[arg(0, 2**64)]),
         f"x.json: syscalls[0].args[0].value: 18446744073709551616 is not {U64}", None),
        (rule(["read"], args=[arg(0, 1.5)]),
         f"x.json: syscalls[0].args[0].value: 1.5 is not {U64}", None),
        (
            rule(["read"], args=[arg(0, 3, valueTwo=1)]),
            "x.json: syscalls[0].args[0].valueTwo: 1 given with SCMP_CMP_EQ: valueTwo is used only "
            "by SCMP_CMP_MASKED_EQ",
            "remove valueTwo",
        ),
        (
            rule(["read"], args=[arg(0, 0xF0, "SCMP_CMP_MASKED_EQ", valueTwo=0x1)]),
            "x.json: syscalls[0].args[0].valueTwo: 0x1 has bits outside the mask 0xf0, so the "
            "condition can never hold",
            "for SCMP_CMP_MASKED_EQ, value is the mask and valueTwo the expected masked result",
        ),
        (rule(["read"], args={"index": 0}),
         'x.json: syscalls[0].args: expected an array of conditions, got an object {"index": 0}',
         None),
        (rule(["read"], args=[7]), "x.json: syscalls[0].args[0]: expected an object, got an integer 7",
         None),
        (rule(["read"], comment=5), "x.json: syscalls[0].comment: expected a string, got an "
         "integer 5", None),
    ],
)
def test_syscall_entries(entry, message, hint):
    assert seccomp_error(profile(entry)) == (message, hint)


def test_too_many_combinations_are_refused():
    args = [arg(i, v) for i in range(4) for v in range(5)]  # 5^4 = 625 rules
    message, hint = seccomp_error(profile(rule(["read"], args=args)))
    assert message == "x.json: syscalls[0].args: the conditions expand to 625 rules (at most 256)"
    assert hint.startswith("conditions on one index are ORed")


# --- seccomp: includes / excludes -------------------------------------------------------------------


@pytest.mark.parametrize(
    "filt, message, hint",
    [
        ({"arches": ["amd65"]}, "x.json: syscalls[0].includes.arches[0]: unknown architecture "
         "'amd65'", None),
        ({"caps": ["CAP_SYS_ADMN"]}, "x.json: syscalls[0].includes.caps[0]: unknown capability "
         "'CAP_SYS_ADMN'", "did you mean 'CAP_SYS_ADMIN'? names are those of capabilities(7), "
         "with or without CAP_: NET_BIND_SERVICE"),
        ({"minKernel": "4"}, "x.json: syscalls[0].includes.minKernel: '4' is not a kernel version",
         'write it as MAJOR.MINOR, e.g. "4.8"'),
        ({"minKernel": 4.8}, "x.json: syscalls[0].includes.minKernel: 4.8 is not a kernel version",
         'write it as MAJOR.MINOR, e.g. "4.8"'),
    ],
)
def test_includes_errors(filt, message, hint):
    got = seccomp_error(profile(rule(["read"], includes=filt)))
    assert got[0] == message
    if hint is not None:
        assert got[1] == hint
    else:
        assert got[1].startswith("did you mean 'amd64'? Docker's architecture names: 386, amd64")


def _names_in(out) -> set[str]:
    return {n for r in out["syscalls"] for n in r["names"]}


def test_includes_and_excludes_follow_the_host_facts():
    doc = profile(
        rule(["arch_prctl"], includes={"arches": ["amd64", "x32"]}),
        rule(["arm_fadvise64_64"], includes={"arches": ["arm64"]}),
        rule(["ptrace"], includes={"minKernel": "4.8"}),
        rule(["bpf"], includes={"caps": ["CAP_SYS_ADMIN", "CAP_BPF"]}),
        rule(["clone3"], ERRNO, errnoRet=38, excludes={"caps": ["CAP_SYS_ADMIN"]}),
        rule(["old_call"], excludes={"minKernel": "5.0"}),
        rule(["not_s390"], excludes={"arches": ["s390x"]}),
    )
    assert _names_in(seccomp(doc, kernel=(4, 4))) == {"arch_prctl", "clone3", "old_call",
                                                      "not_s390"}
    assert _names_in(seccomp(doc, kernel="6.1.0-18-amd64")) == {"arch_prctl", "ptrace", "clone3",
                                                                "not_s390"}
    # kernel unknown: taken as new enough for every minKernel
    assert _names_in(seccomp(doc)) == {"arch_prctl", "ptrace", "clone3", "not_s390"}
    admin = seccomp(doc, caps=["SYS_ADMIN", 39], kernel=(6, 1))  # names or numbers
    assert _names_in(admin) == {"arch_prctl", "ptrace", "bpf", "not_s390"}
    # only one of the two capabilities an include names: not enough
    assert "bpf" not in _names_in(seccomp(doc, caps=["CAP_SYS_ADMIN"]))
    assert _names_in(seccomp(doc, arch="aarch64")) == {"arm_fadvise64_64", "ptrace", "clone3",
                                                       "not_s390"}
    assert "not_s390" not in _names_in(seccomp(doc, arch="s390x"))


def test_an_excluded_rule_is_still_validated():
    doc = profile(rule(["read"], "SCMP_ACT_NOPE", includes={"arches": ["s390x"]}))
    assert seccomp_error(doc)[0] == "x.json: syscalls[0].action: unknown action 'SCMP_ACT_NOPE'"


# --- seccomp: OR on one argument, AND across arguments ----------------------------------------------


def conds(out_rule) -> list[tuple]:
    return [(a["index"], a["op"], a["value"], a["valueTwo"]) for a in out_rule.get("args", [])]


def test_conditions_on_one_argument_are_ored():
    out = seccomp(profile(rule(["socket"], args=[arg(0, 1), arg(0, 2)])))
    assert [conds(r) for r in out["syscalls"]] == [[(0, EQ, 1, 0)], [(0, EQ, 2, 0)]]
    assert all(r["names"] == ["socket"] for r in out["syscalls"])


def test_conditions_on_different_arguments_are_anded():
    out = seccomp(profile(rule(["socket"], args=[arg(1, 1), arg(0, 2)])))
    assert [conds(r) for r in out["syscalls"]] == [[(0, EQ, 2, 0), (1, EQ, 1, 0)]]


def test_or_and_and_together():
    data = (DATA / "socket-or.seccomp.json").read_bytes()
    out = sp.parse_seccomp_profile(data, "socket-or.seccomp.json")
    # (AF_UNIX or AF_INET) and SOCK_STREAM: runc would also let any SOCK_STREAM socket through.
    assert [conds(r) for r in out["syscalls"]] == [
        [(0, EQ, 1, 0), (1, EQ, 1, 0)],
        [(0, EQ, 2, 0), (1, EQ, 1, 0)],
    ]


def test_expand_conditions():
    a, b, c, d = (0, EQ, 1, 0), (0, EQ, 2, 0), (2, EQ, 3, 0), (2, EQ, 4, 0)
    assert sa.expand_conditions([]) == [()]
    assert sa.expand_conditions([c, a]) == [(a, c)]
    assert sa.expand_conditions([a, b, a]) == [(a,), (b,)]
    assert sa.expand_conditions([a, c, b, d]) == [(a, c), (a, d), (b, c), (b, d)]
    assert sa.count_rules([a, c, b, d]) == 4 and sa.count_rules([]) == 1


# --- seccomp: duplicates and conflicts --------------------------------------------------------------


def test_identical_rules_are_merged():
    doc = profile(
        rule(["read", "write", "read"]),
        rule(["write", "close"]),
        rule(["socket"], args=[arg(0, 1)]),
        rule(["socket"], args=[arg(0, 1), arg(0, 2)]),
    )
    out = seccomp(doc)
    assert [(r["names"], conds(r)) for r in out["syscalls"]] == [
        (["read", "write"], []),
        (["close"], []),
        (["socket"], [(0, EQ, 1, 0)]),
        (["socket"], [(0, EQ, 2, 0)]),
    ]


CONFLICT_HINT = "keep one of the two rules, or give them different argument conditions"


def test_conflicting_actions_name_both_entries():
    doc = profile(
        rule(["read"]),
        rule(["socket"], args=[arg(0, 10)]),
        rule(["write"]),
        rule(["socket"], ERRNO, errnoRet=97, args=[arg(0, 10), arg(0, 11)]),
    )
    assert seccomp_error(doc) == (
        "x.json: syscalls[1] and syscalls[3]: conflicting actions for 'socket' with args[0] == 10: "
        "SCMP_ACT_ALLOW and SCMP_ACT_ERRNO (errno 97)",
        CONFLICT_HINT,
    )


def test_conflicting_errno_values():
    doc = profile(rule(["socket"], ERRNO), rule(["read", "socket"], ERRNO, errnoRet=13))
    assert seccomp_error(doc) == (
        "x.json: syscalls[0] and syscalls[1]: conflicting actions for 'socket' with no argument "
        "conditions: SCMP_ACT_ERRNO (errno 1) and SCMP_ACT_ERRNO (errno 13)",
        CONFLICT_HINT,
    )


def test_kill_is_kill_thread():
    doc = profile(rule(["getppid"], "SCMP_ACT_KILL"), rule(["getppid"], "SCMP_ACT_KILL_THREAD"))
    out = seccomp(doc, path="x.json")
    assert out["syscalls"] == [{"names": ["getppid"], "action": "SCMP_ACT_KILL_THREAD"}]


def test_an_unconditional_rule_may_not_shadow_a_conditional_one():
    doc = profile(rule(["socket"]), rule(["socket"], ERRNO, errnoRet=13, args=[arg(0, 10)]))
    assert seccomp_error(doc) == (
        "x.json: syscalls[0] and syscalls[1]: 'socket' has an unconditional SCMP_ACT_ALLOW rule in "
        "syscalls[0], which would override the SCMP_ACT_ERRNO (errno 13) rule for args[0] == 10 "
        "in syscalls[1]",
        "libseccomp lets an unconditional rule win over conditional ones: remove 'socket' from "
        "one of the two entries",
    )


def test_rules_excluded_for_this_host_do_not_conflict():
    doc = profile(
        rule(["clone"], includes={"caps": ["CAP_SYS_ADMIN"]}),
        rule(["clone"], args=[arg(0, 0x7E020000, "SCMP_CMP_MASKED_EQ")],
             excludes={"caps": ["CAP_SYS_ADMIN"]}),
        rule(["clone"], ERRNO, errnoRet=38, args=[arg(0, 1)], excludes={"caps": ["CAP_SYS_ADMIN"]}),
    )
    assert len(seccomp(doc)["syscalls"]) == 2
    assert seccomp(doc, caps=["CAP_SYS_ADMIN"])["syscalls"] == [
        {"names": ["clone"], "action": ALLOW}
    ]


# --- seccomp: good profiles -------------------------------------------------------------------------


def test_readme_example():
    out = sp.parse_seccomp_profile((DATA / "readme.seccomp.json").read_bytes(), "r.json")
    assert out == {
        "defaultAction": "SCMP_ACT_KILL_PROCESS",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {
                "names": ["read", "write", "close", "openat", "fstat", "mmap", "munmap", "brk",
                          "futex", "clock_gettime"],
                "action": ALLOW,
            }
        ],
    }


def test_old_single_name_form_and_nulls():
    doc = {
        "defaultAction": ERRNO,
        "defaultErrnoRet": None,
        "architectures": None,
        "flags": None,
        "syscalls": [{"name": "read", "action": ALLOW, "args": None, "comment": None,
                      "includes": None, "excludes": {}}],
    }
    assert seccomp(doc) == {
        "defaultAction": ERRNO,
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["read"], "action": ALLOW}],
    }


def test_normalization_is_deterministic_and_canonical():
    doc = profile(rule(["socket"], args=[arg(0, 2), {"op": EQ, "value": 1, "index": 1}]))
    a = seccomp(doc)
    b = seccomp(json.loads(json.dumps(doc)))
    assert a == b
    assert a["syscalls"][0]["args"] == [
        {"index": 0, "value": 2, "valueTwo": 0, "op": EQ},
        {"index": 1, "value": 1, "valueTwo": 0, "op": EQ},
    ]


def test_host_facts_are_checked():
    with pytest.raises(ValueError, match="unsupported host architecture 'vax'"):
        seccomp({"defaultAction": ALLOW}, arch="vax")
    with pytest.raises(ValueError, match="unknown capability 'CAP_NOPE'"):
        seccomp({"defaultAction": ALLOW}, caps=["CAP_NOPE"])


@pytest.fixture(scope="module")
def docker_bytes() -> bytes:
    return DOCKER_PROFILE.read_bytes()


@NEEDS_DOCKER_PROFILE
def test_docker_default_profile(docker_bytes):
    out = sp.parse_seccomp_profile(docker_bytes, "docker.json", kernel=(6, 1))
    assert out["defaultAction"] == ERRNO and out["defaultErrnoRet"] == 1
    # archMap: the x86_64 entry and its sub-architectures, nothing of the other machines
    assert out["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    rules = {(tuple(r["names"]), tuple(conds(r)), r["action"], r.get("errnoRet")) for r in
             out["syscalls"]}
    allowed = {n for r in out["syscalls"] if r["action"] == ALLOW and "args" not in r
               for n in r["names"]}
    assert {"read", "openat", "execve", "arch_prctl", "modify_ldt", "ptrace"} <= allowed
    # capability-gated calls are left out without the capability
    assert not {"mount", "unshare", "bpf", "reboot", "chroot", "perf_event_open"} & allowed
    assert not {"breakpoint", "s390_runtime_instr", "riscv_flush_icache"} & allowed
    assert (("clone3",), (), ERRNO, 38) in rules
    assert (("clone",), ((0, "SCMP_CMP_MASKED_EQ", 2114060288, 0),), ALLOW, None) in rules
    assert {c for (names, c, _, _) in rules if names == ("socket",)} == {
        ((0, "SCMP_CMP_LT", 38, 0),), ((0, EQ, 39, 0),), ((0, "SCMP_CMP_GT", 40, 0),)
    }
    assert all(r["names"] for r in out["syscalls"])
    json.dumps(out)  # plain data


@NEEDS_DOCKER_PROFILE
def test_docker_default_profile_with_capabilities(docker_bytes):
    out = sp.parse_seccomp_profile(
        docker_bytes, "docker.json", caps=["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"], kernel=(6, 1)
    )
    allowed = {n for r in out["syscalls"] if r["action"] == ALLOW and "args" not in r
               for n in r["names"]}
    assert {"mount", "unshare", "clone", "clone3", "bpf", "kcmp", "process_vm_readv"} <= allowed
    assert not any(r["action"] == ERRNO for r in out["syscalls"])  # clone3's ENOSYS is excluded
    old = sp.parse_seccomp_profile(docker_bytes, "docker.json", kernel="4.4.0")
    assert "ptrace" not in {n for r in old["syscalls"] for n in r["names"]}


# --- capabilities -------------------------------------------------------------------------------------

CAP_HINT = "names are those of capabilities(7), with or without CAP_: NET_BIND_SERVICE"
CAP_TABLES = "the tables of a capability policy are: bounding, permitted, effective, inheritable, ambient"


def caps(text: str, path="c.toml") -> cp.CapsPolicy:
    return cp.parse_caps_policy(text.encode(), path)


def caps_error(text: str) -> tuple[str, str | None]:
    e = error(caps, text)
    return e.message, e.hint


@pytest.mark.parametrize(
    "text, message, hint",
    [
        ("[bounding\nkeep = []\n", "c.toml: not valid TOML: Expected ']' at the end of a table "
         "declaration (at line 1, column 10)", "check the syntax near that position"),
        ("[bounds]\nkeep = []\n", "c.toml: bounds: unknown key", f"did you mean 'bounding'? {CAP_TABLES}"),
        ("[bounding]\nkeep = []\ndrop = []\n", "c.toml: bounding.drop: unknown key",
         "the keys of [bounding] are: keep"),
        ("[bounding]\nkeep = [\"NET_BIND\"]\n", "c.toml: bounding.keep[0]: unknown capability "
         "'NET_BIND'", f"did you mean 'CAP_NET_BIND_SERVICE'? {CAP_HINT}"),
        ("[ambient]\nkeep = [\"KILL\", \"CAP_FLY\"]\n", "c.toml: ambient.keep[1]: unknown "
         "capability 'CAP_FLY'", CAP_HINT),
        ("[bounding]\nkeep = [10]\n", "c.toml: bounding.keep[0]: expected a capability name, got "
         "an integer 10", CAP_HINT),
        ("[bounding]\nkeep = \"NET_BIND_SERVICE\"\n", "c.toml: bounding.keep: expected an array "
         "of capability names, got a string 'NET_BIND_SERVICE'", None),
        ("[bounding]\n", "c.toml: bounding.keep: missing",
         "list the capabilities to keep; keep = [] keeps none"),
        ("bounding = 3\n", "c.toml: bounding: expected a table, got an integer 3",
         "write it as [bounding] with keep = [...]"),
        ("[permitted]\nkeep = [\"KILL\"]\n", "c.toml: permitted.keep: 'CAP_KILL' is not in "
         "bounding (none: the table is absent)",
         "add it to [bounding] keep, or remove it from [permitted]"),
        ("[bounding]\nkeep = [\"KILL\"]\n[effective]\nkeep = [\"CHOWN\"]\n", "c.toml: "
         "effective.keep: 'CAP_CHOWN' is not in permitted",
         "add it to [permitted] keep, or remove it from [effective]"),
        ("[bounding]\nkeep = [\"KILL\"]\n[inheritable]\nkeep = [\"CHOWN\"]\n", "c.toml: "
         "inheritable.keep: 'CAP_CHOWN' is not in bounding",
         "add it to [bounding] keep, or remove it from [inheritable]"),
        ("[bounding]\nkeep = [\"KILL\"]\n[ambient]\nkeep = [\"KILL\"]\n", "c.toml: ambient.keep: "
         "'CAP_KILL' is not in inheritable",
         "the kernel keeps an ambient capability only when it is permitted and inheritable"),
        ("[bounding]\nkeep = [\"KILL\"]\n[permitted]\nkeep = []\n[inheritable]\nkeep = "
         "[\"KILL\"]\n[ambient]\nkeep = [\"KILL\"]\n", "c.toml: ambient.keep: 'CAP_KILL' is not "
         "in permitted",
         "the kernel keeps an ambient capability only when it is permitted and inheritable"),
    ],
)
def test_caps_errors(text, message, hint):
    assert caps_error(text) == (message, hint)


def test_caps_readme_example_drops_everything():
    policy = cp.parse_caps_policy((DATA / "readme.caps.toml").read_bytes(), "r.toml")
    for which in cp.CAP_SETS:
        assert getattr(policy, which) == frozenset()
    assert policy.simple and policy.keep == frozenset()
    assert caps("") == policy.__class__("c.toml", *[frozenset()] * 5)


def test_caps_missing_sets_follow_bounding():
    policy = cp.parse_caps_policy((DATA / "net-bind.caps.toml").read_bytes(), "n.toml")
    nbs = capspec.capability_number("NET_BIND_SERVICE")
    assert policy.bounding == policy.permitted == policy.effective == frozenset({nbs})
    assert policy.inheritable == policy.ambient == frozenset()
    assert policy.simple and policy.keep == frozenset({nbs})
    assert policy.names("effective") == ["CAP_NET_BIND_SERVICE"]
    assert policy.mask("bounding") == 1 << 10
    assert policy.dangerous() == []


def test_caps_all_five_tables_any_spelling():
    policy = cp.parse_caps_policy((DATA / "full.caps.toml").read_bytes(), "f.toml")
    assert policy.names("bounding") == ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert policy.names("permitted") == ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert policy.names("effective") == policy.names("inheritable") == policy.names("ambient") == [
        "CAP_NET_BIND_SERVICE"
    ]
    assert not policy.simple
    with pytest.raises(ValueError, match="unknown capability set 'bound'"):
        policy.names("bound")


def test_dangerous_capabilities():
    assert len(cp.DANGEROUS) == 17 and cp.DANGEROUS <= set(capspec.CAPABILITY_NAMES)
    policy = caps('[bounding]\nkeep = ["net_raw", "NET_BIND_SERVICE", "SYS_ADMIN"]\n')
    assert policy.dangerous() == ["CAP_NET_RAW", "CAP_SYS_ADMIN"]
    e = error(cp.refuse_dangerous, policy)
    assert e.message == (
        "c.toml: bounding.keep: 'CAP_NET_RAW' is refused in production mode (dangerous "
        "capabilities kept: CAP_NET_RAW, CAP_SYS_ADMIN)"
    )
    assert e.hint == "remove them from the policy, or run in another service mode than production"
    cp.refuse_dangerous(caps('[bounding]\nkeep = ["NET_BIND_SERVICE"]\n'))


# --- Landlock -----------------------------------------------------------------------------------------

RIGHTS = "access rights: read, write, execute, create, remove, readdir, ioctl_dev, all"


def landlock(text: str, path="l.toml") -> lp.LandlockPolicy:
    return lp.parse_landlock_policy(text.encode(), path)


def landlock_error(text: str) -> tuple[str, str | None]:
    e = error(landlock, text)
    return e.message, e.hint


@pytest.mark.parametrize(
    "text, message, hint",
    [
        ("min_abi = \n", "l.toml: not valid TOML: Invalid value (at line 1, column 11)",
         "check the syntax near that position"),
        ("min_ab = 3\n", "l.toml: min_ab: unknown key",
         "did you mean 'min_abi'? the keys of a Landlock policy are: min_abi, rules"),
        ("min_abi = 0\n", "l.toml: min_abi: 0 is not a Landlock ABI version 1..7",
         "ABI 1 came with Linux 5.13, 2 with 5.19, 3 with 6.2 (truncate), 5 with 6.10 (ioctl on "
         "devices)"),
        ("min_abi = \"3\"\n", "l.toml: min_abi: '3' is not a Landlock ABI version 1..7",
         "ABI 1 came with Linux 5.13, 2 with 5.19, 3 with 6.2 (truncate), 5 with 6.10 (ioctl on "
         "devices)"),
        ("[rules]\npath = \"/tmp\"\n", "l.toml: rules: expected an array of [[rules]] tables, got "
         "a table {\"path\": \"/tmp\"}", "write each rule under [[rules]], with two brackets"),
        ("[[rules]]\npath = \"/tmp\"\naccess = [\"read\", \"exec\"]\n",
         "l.toml: rules[0].access[1]: unknown access right 'exec'",
         f"did you mean 'execute'? {RIGHTS}"),
        ("[[rules]]\npath = \"/tmp\"\naccess = [\"READ\"]\n",
         "l.toml: rules[0].access[0]: unknown access right 'READ'", f"did you mean 'read'? {RIGHTS}"),
        ("[[rules]]\npath = \"/tmp\"\naccess = []\n",
         "l.toml: rules[0].access: empty: the rule would grant nothing",
         "list rights among read, write, execute, create, remove, readdir, ioctl_dev, all, or "
         "remove the rule"),
        ("[[rules]]\npath = \"/tmp\"\naccess = \"read\"\n",
         "l.toml: rules[0].access: expected an array of access rights, got a string 'read'", None),
        ("[[rules]]\npath = \"/tmp\"\n", "l.toml: rules[0].access: missing",
         "each rule needs path = \"/dir\" and access = [\"read\"]"),
        ("[[rules]]\npath = \"/tmp\"\naccess = [\"read\"]\nmode = 1\n",
         "l.toml: rules[0].mode: unknown key", "the keys of a rule are: path, access"),
        ("[[rules]]\npath = \"tmp\"\naccess = [\"read\"]\n",
         "l.toml: rules[0].path: 'tmp' is not an absolute path",
         "write the full path from /, e.g. \"/etc/myservice\""),
        ("[[rules]]\npath = 5\naccess = [\"read\"]\n",
         "l.toml: rules[0].path: expected an absolute path, got an integer 5", None),
        ("[[rules]]\npath = \"/srv/../etc\"\naccess = [\"read\"]\n",
         "l.toml: rules[0].path: '/srv/../etc' contains '..'",
         "write the path without '..' components"),
        ("[[rules]]\npath = \"/tmp\"\naccess = [\"read\"]\n[[rules]]\npath = \"//tmp/./\"\n"
         "access = [\"write\"]\n", "l.toml: rules[1].path: '/tmp' is already given in rules[0]",
         "merge the two access lists into one rule"),
    ],
)
def test_landlock_errors(text, message, hint):
    assert landlock_error(text) == (message, hint)


def test_landlock_readme_example():
    policy = lp.parse_landlock_policy((DATA / "readme.landlock.toml").read_bytes(), "r.toml")
    assert policy.min_abi == 3
    assert [(r.path, sorted(r.access)) for r in policy.rules] == [
        ("/bin", ["execute", "read"]),
        ("/etc/myservice", ["read"]),
        ("/run/secrets", ["read"]),
        ("/tmp", ["create", "read", "remove", "write"]),
    ]
    assert policy.restrict_rules()[1] == ("/etc/myservice", frozenset({"read"}))


def test_landlock_read_does_not_imply_execute():
    policy = landlock('[[rules]]\npath = "/srv/"\naccess = ["read"]\n')
    (only,) = policy.rules
    assert only.path == "/srv" and policy.min_abi == 1
    assert only.mask == ll.READ_FILE | ll.READ_DIR
    assert not only.mask & ll.EXECUTE
    every = landlock('[[rules]]\npath = "/"\naccess = ["all"]\n').rules[0]
    assert every.mask == ll.FS_RIGHTS_BY_ABI[ll.LATEST_ABI] and every.mask & ll.EXECUTE


def test_landlock_empty_policy_has_no_rules():
    assert landlock("").rules == () and landlock("min_abi = 7\n").min_abi == 7
