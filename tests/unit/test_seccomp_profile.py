"""Seccomp profile files as a whole: files that are not profiles, unknown keys, actions, errno
values, architectures, flags and the listener; and what good profiles, Docker's among them, mean
(tests/unit/policy_support.py says why the text is pinned)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nucleus.config.policy import seccomp_host as sh
from nucleus.config.policy import seccomp_profile as sp
from tests.helpers import DOCKER_PROFILE, NEEDS_DOCKER_PROFILE
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
    "flags, listenerPath, listenerMetadata, syscalls, newerSyscallsErrno"
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


# --- the container's init's timed calls -----------------------------------------------------------

def _normalized(default: str, *rules: dict[str, object]) -> dict[str, object]:
    doc = {"defaultAction": default, "syscalls": list(rules)}
    return sp.parse_seccomp_profile(json.dumps(doc).encode(), "p.json")


@pytest.mark.parametrize("default, rules, killed", [
    ("SCMP_ACT_KILL_PROCESS", [], ("kill", "rt_sigtimedwait")),
    ("SCMP_ACT_KILL", [{"names": ["kill"], "action": "SCMP_ACT_ALLOW"}], ("rt_sigtimedwait",)),
    ("SCMP_ACT_TRAP", [{"names": ["kill", "rt_sigtimedwait"], "action": "SCMP_ACT_ERRNO"}], ()),
    ("SCMP_ACT_ERRNO", [], ()),
    ("SCMP_ACT_ALLOW", [{"names": ["rt_sigtimedwait"], "action": "SCMP_ACT_KILL_THREAD"}],
     ("rt_sigtimedwait",)),
    # a condition on the arguments: the init's signal may be another
    ("SCMP_ACT_KILL_PROCESS", [{"names": ["kill", "rt_sigtimedwait"], "action": "SCMP_ACT_ALLOW",
                                "args": [{"index": 1, "value": 15, "op": "SCMP_CMP_EQ"}]}],
     ("kill", "rt_sigtimedwait")),
    ("SCMP_ACT_ERRNO", [{"names": ["kill"], "action": "SCMP_ACT_TRAP",
                         "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]}], ("kill",)),
])
def test_a_profile_that_may_kill_the_init_s_timed_calls_names_them(default, rules, killed):
    assert sp.kills_init(_normalized(default, *rules)) == killed


def test_the_init_s_timed_calls_are_calls_the_compiled_init_makes():
    source = (Path(__file__).parents[2] / "nucleus" / "init" / "init.c").read_text()
    made = set(re.findall(r"sys\(NR_([a-z0-9_]+)", source))
    assert set(sp.INIT_TIMED_CALLS) <= made, made
