"""The syscalls entries of seccomp profiles: syscall names and argument conditions, includes and
excludes against the host's facts, OR on one argument and AND across arguments, and duplicate
and conflicting rules (tests/unit/policy_support.py says why the text is pinned)."""

from __future__ import annotations

import pytest

from nucleus.config.policy import seccomp_args as sa
from nucleus.config.policy import seccomp_profile as sp
from tests.unit.policy_support import (
    ALLOW,
    DATA,
    EQ,
    ERRNO,
    arg,
    conds,
    profile,
    rule,
    seccomp,
    seccomp_error,
)

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

