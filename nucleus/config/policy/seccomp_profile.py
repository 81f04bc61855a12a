"""Seccomp profiles, in the format of runc, Docker and Podman (OCI JSON):
``parse_seccomp_profile``.

``defaultAction``, ``defaultErrnoRet``, ``architectures`` or Docker's ``archMap``, ``flags``,
``listenerPath``/``listenerMetadata`` (accepted only empty), and ``syscalls`` entries of ``names``
(or the older ``name``), ``action``, ``errnoRet``, ``args``, ``comment`` and Docker's
``includes``/``excludes`` (``arches``, ``caps``, ``minKernel``), applied here for the host facts
given (``nucleus.config.policy.seccomp_host``).

Actions: ALLOW, ERRNO, KILL (= KILL_THREAD), KILL_THREAD, KILL_PROCESS, TRAP and LOG. TRACE is
refused (it needs a ptrace tracer, and ptrace is denied); NOTIFY is refused (nucleus runs no
user-notification agent), and so are the flags and fields that only serve it.

Arguments: several conditions on one argument index are ORed, conditions on different indexes are
ANDed (``nucleus.config.policy.seccomp_args`` says how, and how this compares with runc).

Conflicts are errors: two rules for one syscall with the same conditions and different actions,
and an unconditional rule next to a rule with a different action for the same syscall (libseccomp
lets the unconditional rule win, so the other would be dead).

The result is a fresh OCI-shaped dict: ``defaultAction`` (KILL spelled KILL_THREAD),
``defaultErrnoRet`` (ERRNO only, EPERM when not given), ``architectures`` (the native one first,
then those of the list or of ``archMap`` that run on this architecture), ``flags`` (only
``SECCOMP_FILTER_FLAG_LOG`` survives: it asks the loader to log denials), and ``syscalls`` rules of
``names``, ``action``, ``errnoRet`` (ERRNO only) and ``args`` (at most one condition per index),
deduplicated, in the order of the file. ``nucleus.effects.seccomp.compile_profile`` compiles it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from nucleus.config.policy.common import (
    _check_keys,
    _fail,
    _join,
    _kind,
    _known_hint,
    _list,
    _load_json,
    _show,
    _string,
)
from nucleus.config.policy.seccomp_args import (
    Condition,
    _condition,
    _describe,
    count_rules,
    expand_conditions,
)
from nucleus.config.policy.seccomp_host import (
    HOST_ARCHES,
    _applies,
    _architectures,
    _filter,
    _host_arch,
    _host_caps,
    _host_kernel,
)
from nucleus.errors import InvalidInput

# Spelled as the file spells them -> the name nucleus compiles.
SECCOMP_ACTIONS: dict[str, str] = {
    "SCMP_ACT_ALLOW": "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO": "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL": "SCMP_ACT_KILL_THREAD",  # libseccomp's SCMP_ACT_KILL is KILL_THREAD
    "SCMP_ACT_KILL_THREAD": "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_KILL_PROCESS": "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_TRAP": "SCMP_ACT_TRAP",
    "SCMP_ACT_LOG": "SCMP_ACT_LOG",
}
REFUSED_ACTIONS: dict[str, tuple[str, str]] = {
    "SCMP_ACT_TRACE": (
        "it hands the syscall to a ptrace tracer, and nucleus runs none (ptrace is denied)",
        "deny with SCMP_ACT_ERRNO, or allow and log with SCMP_ACT_LOG",
    ),
    "SCMP_ACT_NOTIFY": (
        "nucleus runs no seccomp user-notification agent",
        "deny with SCMP_ACT_ERRNO, or allow and log with SCMP_ACT_LOG",
    ),
}
SECCOMP_FLAG_LOG = "SECCOMP_FILTER_FLAG_LOG"
# The actions that end the caller (TRAP's SIGSYS too: the container's init has no handler for it).
KILLING_ACTIONS = frozenset({"SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP"})
# The container's init (nucleus/init/init.c) runs under the container's filter, and these of its
# calls happen only when timing has it so: rt_sigtimedwait once the workload outlives the init's
# first look, kill when a signal comes to forward. A trace may well not hold them, and a profile
# that kills them would end a container at random (its init killed, exit 137): every generated
# profile allows them, and a profile that would kill them is refused (an ERRNO rule is fine: the
# init then reaps without forwarding signals).
INIT_TIMED_CALLS = ("kill", "rt_sigtimedwait")
SECCOMP_FLAGS_ACCEPTED: dict[str, str] = {
    SECCOMP_FLAG_LOG: "kept: the filter is loaded with denials logged",
    # The filter is installed by the single-threaded setup process before exec, so every thread
    # of the workload inherits it; synchronizing other threads has nothing to do.
    "SECCOMP_FILTER_FLAG_TSYNC": "ignored: the setup process has a single thread",
}
SECCOMP_FLAGS_REFUSED: dict[str, str] = {
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": "it turns off the kernel's speculative store bypass "
    "mitigation for the workload",
    "SECCOMP_FILTER_FLAG_NEW_LISTENER": "nucleus runs no seccomp user-notification agent",
    "SECCOMP_FILTER_FLAG_TSYNC_ESRCH": "it serves only user notification, which nucleus does "
    "not run",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": "it serves only user notification, which nucleus "
    "does not run",
}


_TOP_KEYS = (
    "defaultAction",
    "defaultErrnoRet",
    "architectures",
    "archMap",
    "flags",
    "listenerPath",
    "listenerMetadata",
    "syscalls",
    # nucleus's own: the errno of every syscall newer than libseccomp's table (the default
    # profile's ENOSYS, so that a profile written from it keeps it; nucleus.effects.seccomp)
    "newerSyscallsErrno",
)
_SYSCALL_KEYS = ("names", "name", "action", "errnoRet", "args", "comment", "includes", "excludes")
_SYSCALL_NAME = re.compile(r"[a-z_][a-z0-9_]*")
MAX_ERRNO = 4095
EPERM = 1
MAX_RULES_PER_ENTRY = 256
ERRNO_HINT = "an errno number such as 1 (EPERM) or 38 (ENOSYS), at most 4095"


def _action(path: str, field: str, value: object) -> str:
    if isinstance(value, str) and value in SECCOMP_ACTIONS:
        return SECCOMP_ACTIONS[value]
    if isinstance(value, str) and value in REFUSED_ACTIONS:
        reason, hint = REFUSED_ACTIONS[value]
        raise _fail(path, field, f"action {value!r} is not supported: {reason}", hint=hint)
    if not isinstance(value, str):
        raise _fail(path, field, f"expected an action name, got {_kind(value)} {_show(value)}")
    raise _fail(
        path, field, f"unknown action {value!r}", hint=_known_hint(value, SECCOMP_ACTIONS, "actions")
    )


def _errno(
    path: str, field: str, obj: dict[str, object], key: str, action: str
) -> int | None:
    if key not in obj or obj[key] is None:
        return EPERM if action == "SCMP_ACT_ERRNO" else None
    if action != "SCMP_ACT_ERRNO":
        raise _fail(
            path,
            _join(field, key),
            f"{_show(obj[key])} given, but the action is {action}: an errno applies only to "
            "SCMP_ACT_ERRNO",
            hint=f"remove {key}, or make the action SCMP_ACT_ERRNO",
        )
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ERRNO:
        raise _fail(path, _join(field, key), f"{_show(value)} is not an errno", hint=ERRNO_HINT)
    return value


def _flags(path: str, profile: dict[str, object]) -> list[str]:
    kept: list[str] = []
    flags = _list(path, "flags", profile.get("flags"), "an array of SECCOMP_FILTER_FLAG_* names")
    for i, flag in enumerate(flags):
        field = f"flags[{i}]"
        if isinstance(flag, str) and flag in SECCOMP_FLAGS_REFUSED:
            raise _fail(
                path,
                field,
                f"flag {flag!r} is not supported: {SECCOMP_FLAGS_REFUSED[flag]}",
                hint="remove it",
            )
        if not (isinstance(flag, str) and flag in SECCOMP_FLAGS_ACCEPTED):
            known = [*SECCOMP_FLAGS_ACCEPTED, *SECCOMP_FLAGS_REFUSED]
            raise _fail(path, field, f"unknown flag {_show(flag)}",
                        hint=_known_hint(flag, known, "flags"))
        if flag == SECCOMP_FLAG_LOG:
            kept.append(flag)
    return sorted(set(kept))


def _listener(path: str, profile: dict[str, object]) -> None:
    for key in ("listenerPath", "listenerMetadata"):
        if key not in profile or profile[key] is None:
            continue
        value = _string(path, key, profile[key])
        if value:
            raise _fail(
                path,
                key,
                f"{_show(value)}: seccomp user notification is not supported (nucleus runs no "
                "notification agent)",
                hint=f"remove {key} and any SCMP_ACT_NOTIFY rule",
            )


def _names(path: str, field: str, entry: dict[str, object]) -> list[str]:
    if "names" in entry and "name" in entry:
        raise _fail(path, f"{field}.name", "given together with names",
                    hint="list every syscall in names")
    if "name" in entry:
        raw = [entry["name"]]
        where = [f"{field}.name"]
    elif "names" in entry:
        raw = _list(path, f"{field}.names", entry["names"], "an array of syscall names",
                    null_ok=False)
        if not raw:
            raise _fail(path, f"{field}.names", "empty", hint="list at least one syscall")
        where = [f"{field}.names[{i}]" for i in range(len(raw))]
    else:
        raise _fail(path, f"{field}.names", "missing",
                    hint="list the syscalls the rule is for, e.g. \"names\": [\"read\"]")
    names = []
    for name, at in zip(raw, where, strict=True):
        if not isinstance(name, str) or not _SYSCALL_NAME.fullmatch(name) or len(name) > 64:
            raise _fail(path, at, f"{_show(name)} is not a syscall name",
                        hint="syscall names are lower-case, as in syscalls(2): \"openat\"")
        names.append(name)
    return list(dict.fromkeys(names))


def _action_text(action: str, errno_ret: int | None) -> str:
    return f"{action} (errno {errno_ret})" if errno_ret is not None else action


def parse_seccomp_profile(
    data: bytes,
    path: str,
    *,
    arch: str = "x86_64",
    caps: Iterable[int | str] = frozenset(),
    kernel: tuple[int, int] | str | None = None,
) -> dict[str, Any]:
    """Validate an OCI/Docker seccomp profile and return it normalized (see the module's doc).

    Host facts, given by the caller: ``arch`` is the machine (``uname -m``); ``caps`` the
    capabilities the workload keeps (numbers or names), for Docker's ``includes.caps`` and
    ``excludes.caps``; ``kernel`` the running kernel as ``(major, minor)`` or a release string
    (``"6.1.0-18-amd64"``), for ``minKernel`` (None: assumed new enough for every minKernel).
    """
    host = _host_arch(arch)
    arch_names = HOST_ARCHES[host][2]
    kept_caps = _host_caps(caps)
    kernel_version = _host_kernel(kernel)

    profile = _load_json(data, path)
    if not isinstance(profile, dict):
        raise _fail(path, "", f"expected a JSON object (a seccomp profile), got {_kind(profile)}",
                    hint="a profile starts with {\"defaultAction\": ...}")
    _check_keys(path, "", profile, _TOP_KEYS, "the keys of a seccomp profile are")
    if "defaultAction" not in profile:
        raise _fail(path, "defaultAction", "missing",
                    hint="say what happens to a syscall no rule matches, e.g. "
                    "\"SCMP_ACT_ERRNO\" or \"SCMP_ACT_KILL_PROCESS\"")
    default = _action(path, "defaultAction", profile["defaultAction"])
    default_errno = _errno(path, "", profile, "defaultErrnoRet", default)
    architectures = _architectures(path, profile, host)
    flags = _flags(path, profile)
    _listener(path, profile)

    entries = _list(path, "syscalls", profile.get("syscalls"), "an array of rules")
    rules: list[dict[str, Any]] = []
    # (name, conditions) -> (entry index, action, errno): the first rule seen for it.
    seen: dict[tuple[str, tuple[Condition, ...]], tuple[int, str, int | None]] = {}
    for i, entry in enumerate(entries):
        field = f"syscalls[{i}]"
        if not isinstance(entry, dict):
            raise _fail(path, field, f"expected an object, got {_kind(entry)} {_show(entry)}")
        _check_keys(path, field, entry, _SYSCALL_KEYS, "the keys of a syscalls entry are")
        names = _names(path, field, entry)
        if "action" not in entry:
            raise _fail(path, f"{field}.action", "missing",
                        hint="e.g. \"SCMP_ACT_ALLOW\" or \"SCMP_ACT_ERRNO\"")
        action = _action(path, f"{field}.action", entry["action"])
        errno_ret = _errno(path, field, entry, "errnoRet", action)
        args = _list(path, f"{field}.args", entry.get("args"), "an array of conditions")
        conditions = [_condition(path, f"{field}.args[{j}]", a) for j, a in enumerate(args)]
        if "comment" in entry and entry["comment"] is not None:
            _string(path, f"{field}.comment", entry["comment"])
        includes = _filter(path, f"{field}.includes", entry.get("includes"))
        excludes = _filter(path, f"{field}.excludes", entry.get("excludes"))
        if not _applies(includes, excludes, arch_names, kept_caps, kernel_version):
            continue
        count = count_rules(conditions)
        if count > MAX_RULES_PER_ENTRY:
            raise _fail(
                path,
                f"{field}.args",
                f"the conditions expand to {count} rules (at most {MAX_RULES_PER_ENTRY})",
                hint="conditions on one index are ORed and multiply with those on the others: "
                "split the entry",
            )
        for conds in expand_conditions(conditions):
            fresh = []
            for name in names:
                key = (name, conds)
                if key in seen:
                    first, first_action, first_errno = seen[key]
                    if (first_action, first_errno) != (action, errno_ret):
                        raise _conflict(path, name, conds, seen[key], (i, action, errno_ret))
                    continue  # the same rule again
                seen[key] = (i, action, errno_ret)
                fresh.append(name)
            if fresh:
                rule: dict[str, Any] = {"names": fresh, "action": action}
                if errno_ret is not None:
                    rule["errnoRet"] = errno_ret
                if conds:
                    rule["args"] = [
                        {"index": c[0], "value": c[2], "valueTwo": c[3], "op": c[1]}
                        for c in conds
                    ]
                rules.append(rule)
    _check_shadowing(path, seen)

    out: dict[str, Any] = {"defaultAction": default}
    if default_errno is not None:
        out["defaultErrnoRet"] = default_errno
    out["architectures"] = architectures
    if flags:
        out["flags"] = flags
    out["syscalls"] = rules
    if profile.get("newerSyscallsErrno") is not None:
        newer = profile["newerSyscallsErrno"]
        if isinstance(newer, bool) or not isinstance(newer, int) or not 1 <= newer <= MAX_ERRNO:
            raise _fail(path, "newerSyscallsErrno", f"{_show(newer)} is not an errno 1..{MAX_ERRNO}",
                        hint="38 (ENOSYS) makes programs fall back to the older call")
        out["newerSyscallsErrno"] = newer
    return out


def _conflict(
    path: str,
    name: str,
    conds: tuple[Condition, ...],
    first: tuple[int, str, int | None],
    second: tuple[int, str, int | None],
) -> InvalidInput:
    return _fail(
        path,
        f"syscalls[{first[0]}] and syscalls[{second[0]}]",
        f"conflicting actions for {name!r} with {_describe(conds)}: "
        f"{_action_text(first[1], first[2])} and {_action_text(second[1], second[2])}",
        hint="keep one of the two rules, or give them different argument conditions",
    )


def _check_shadowing(
    path: str, seen: dict[tuple[str, tuple[Condition, ...]], tuple[int, str, int | None]]
) -> None:
    unconditional = {name: where for (name, conds), where in seen.items() if not conds}
    for (name, conds), where in seen.items():
        if not conds or name not in unconditional:
            continue
        plain = unconditional[name]
        if plain[1:] != where[1:]:
            raise _fail(
                path,
                f"syscalls[{plain[0]}] and syscalls[{where[0]}]",
                f"{name!r} has an unconditional {_action_text(plain[1], plain[2])} rule in "
                f"syscalls[{plain[0]}], which would override the "
                f"{_action_text(where[1], where[2])} rule for {_describe(conds)} in "
                f"syscalls[{where[0]}]",
                hint="libseccomp lets an unconditional rule win over conditional ones: remove "
                f"{name!r} from one of the two entries",
            )


def logs_denied(profile: dict[str, Any]) -> bool:
    """Whether a normalized profile asks for denials to be logged (SECCOMP_FILTER_FLAG_LOG):
    pass it as ``load_program(..., log_denied=...)``."""
    return SECCOMP_FLAG_LOG in (profile.get("flags") or ())


def kills_init(profile: dict[str, Any]) -> tuple[str, ...]:
    """The INIT_TIMED_CALLS a normalized profile may kill: by an unconditional rule, or, with no
    unconditional rule naming the call, by a conditional rule or the default action (the
    arguments decide, and the init's are not the profile's to choose)."""
    killed = []
    for name in INIT_TIMED_CALLS:
        rules = [rule for rule in profile["syscalls"] if name in rule["names"]]
        plain = [rule["action"] for rule in rules if not rule.get("args")]
        possible = plain or [rule["action"] for rule in rules] + [profile["defaultAction"]]
        if KILLING_ACTIONS.intersection(possible):
            killed.append(name)
    return tuple(killed)
