"""The violation stream: one JSON object a line for every operation a sandbox refused, whichever
layer refused it, with the rule that did and a hint that says which flag or policy would allow it.

A line holds::

    {"time": "2025-06-01T12:00:00.125Z", "container": {"id": "<32 hex>", "name": "web"},
     "pid": 4242, "executable": "/usr/bin/python3.11", "layer": "seccomp",
     "operation": "socket", "object": "AF_NETLINK", "args": ["0x10", "0x3", "0x0", ...],
     "action": "errno EAFNOSUPPORT",
     "rule": "socket: only AF_UNIX, AF_INET and AF_INET6 sockets are allowed",
     "hint": "..."}

- ``layer``: "seccomp" (a system call the filter refused), "landlock" (a file access or a
  scope Landlock denied) or "egress" (a connection or a name lookup the egress policy refused:
  ``nucleus.config.egress``; its ``pid`` is 0 and ``client`` the sandbox's address and port).
- ``operation`` and ``object``: the system call and its salient argument (the address family,
  the namespace flags, the protection, the ioctl request, the prctl option); for Landlock the
  access right (``write_file``, ``execute``, ``make_reg``, ...) and the path.
- ``action``: what the process got: "errno EPERM", "kill" (SIGSYS), "logged" (allowed and
  recorded, under ``--seccomp-default-action log``).
- ``pid``: the process's pid on the host (0 when unknown); ``executable``: its program;
  ``time``: when it was refused, RFC 3339 in UTC with milliseconds.
- ``joined``: true on a record of a command joined into the container (`nucleus exec`,
  `attach`), which its own monitor wrote; absent otherwise.

This module is pure: the records come in as values (a time, a pid, a syscall's number and name,
an audit record's fields) from ``nucleus.effects.monitor``; it decides only what a denial means.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from nucleus.config import seccomp_default as sd
from nucleus.frozen import frozen
from nucleus.linux import CLONE_NEW_ALL

LAYERS = ("seccomp", "landlock", "egress")
SIGSYS = 31  # the signal of a seccomp kill (these numbers are the same on x86_64 and aarch64)
SIGKILL = 9  # ... for a process that would survive SIGSYS
MAX_STREAM_SIZE = 1 << 20  # bytes a container keeps, in each of two files (the newest, the one before)
STREAM_FILES = 2

_ERRNO_NAMES = {1: "EPERM", 13: "EACCES", 38: "ENOSYS", 95: "EOPNOTSUPP", 97: "EAFNOSUPPORT"}

ADDRESS_FAMILIES = (
    "AF_UNSPEC", "AF_UNIX", "AF_INET", "AF_AX25", "AF_IPX", "AF_APPLETALK", "AF_NETROM",
    "AF_BRIDGE", "AF_ATMPVC", "AF_X25", "AF_INET6", "AF_ROSE", "AF_DECnet", "AF_NETBEUI",
    "AF_SECURITY", "AF_KEY", "AF_NETLINK", "AF_PACKET", "AF_ASH", "AF_ECONET", "AF_ATMSVC",
    "AF_RDS", "AF_SNA", "AF_IRDA", "AF_PPPOX", "AF_WANPIPE", "AF_LLC", "AF_IB", "AF_MPLS",
    "AF_CAN", "AF_TIPC", "AF_BLUETOOTH", "AF_IUCV", "AF_RXRPC", "AF_ISDN", "AF_PHONET",
    "AF_IEEE802154", "AF_CAIF", "AF_ALG", "AF_NFC", "AF_VSOCK", "AF_KCM", "AF_QIPCRTR", "AF_SMC",
    "AF_XDP", "AF_MCTP",
)  # fmt: skip
_PROT = {"PROT_READ": 0x1, "PROT_WRITE": 0x2, "PROT_EXEC": 0x4}
_PRCTL = {number: name for name, number in {**sd.PRCTL_OPTIONS, **sd.DENIED_PRCTL_OPTIONS}.items()}
_IOCTL = {number: name for name, number in {**sd.IOCTL_REQUESTS, **sd.DENIED_IOCTL_REQUESTS}.items()}
_NAMESPACE_CALLS = ("clone", "unshare", "setns")


@frozen
class Context:
    """What a denial is described against: the container, the seccomp profile (a profile
    file's path, or None for the default profile with its default action) and the Landlock
    rules in force (a policy file's path, or None for the defaults)."""

    container_id: str
    container_name: str
    seccomp_profile: str | None = None
    seccomp_default_action: str = sd.DEFAULT_ACTION_NAME
    landlock_rules: tuple[tuple[str, tuple[str, ...]], ...] = ()
    landlock_policy: str | None = None
    # The monitor of a command joined into the container (nucleus exec): its records say so.
    joined: bool = False


@dataclass
class Setup:
    """What a run gives its violation monitor: the context its records carry, and the
    --violations FILE the caller opened (a descriptor the monitor takes over, or None)."""

    context: Context
    copy_fd: int | None = None


def stream_path(state_root: str, cid: str) -> str:
    """Where a container's stream is kept: next to its record in the state directory."""
    return f"{state_root}/containers/{cid}.violations"


def _flags(value: int, names: dict[str, int]) -> str:
    shown = [name for name, bit in names.items() if value & bit]
    rest = value & ~sum(names.values())
    return "|".join(shown + ([hex(rest)] if rest else [])) or "0"


def salient(syscall: str, args: tuple[int, ...]) -> str:
    """The argument of a call that the default profile's rules look at, as a user reads it."""
    args = tuple(args) + (0,) * (6 - len(args))
    if syscall in ("socket", "socketpair"):
        family = args[0]
        return ADDRESS_FAMILIES[family] if 0 <= family < len(ADDRESS_FAMILIES) else f"family {family}"
    if syscall in _NAMESPACE_CALLS:
        flags = args[1] if syscall == "setns" else args[0]
        return _flags(flags & CLONE_NEW_ALL, sd.NAMESPACE_FLAGS) if flags & CLONE_NEW_ALL else hex(flags)
    if syscall in ("mprotect", "pkey_mprotect"):
        return _flags(args[2], _PROT)
    if syscall == "ioctl":
        request = args[1] & sd.IOCTL_REQUEST_MASK
        return _IOCTL.get(request, hex(request))
    if syscall == "prctl":
        return _PRCTL.get(args[0], f"option {args[0]}")
    return ""


def _action(ret_action: str, errno: int) -> str:
    if ret_action == "errno":
        return f"errno {_ERRNO_NAMES.get(errno, errno)}"
    return ret_action


def call(record: dict[str, object]) -> str:
    """``socket(AF_NETLINK)``, ``write_file /usr/x``: a record's operation and object."""
    operation, obj = record.get("operation", "?"), record.get("object", "")
    if record.get("layer") == "seccomp":
        return f"{operation}({obj})"
    return f"{operation} {obj}" if obj else str(operation)


# --- seccomp --------------------------------------------------------------------------------------

_TRACE_HINT = ("record what the program needs with --seccomp-mode trace --seccomp-log FILE, make a "
               "profile with nucleus seccomp generate, and pass it with --seccomp-profile")


def seccomp_rule(ctx: Context, syscall: str, args: tuple[int, ...], action: str) -> tuple[str, str]:
    """(the rule that refused the call, a hint) under the context's profile."""
    if ctx.seccomp_profile is not None:
        return (f"the seccomp profile {ctx.seccomp_profile!r} answers {syscall} with {action}",
                f"allow {syscall} in {ctx.seccomp_profile!r}")
    obj = salient(syscall, args)
    if syscall in sd.NEVER_ALLOWED:
        return (f"{syscall} is never allowed by the default seccomp profile",
                "no flag allows it: the sandbox makes no namespaces, mounts, keys, modules or "
                f"tracers of its own; a --seccomp-profile that allows {syscall} is the only way")
    if syscall == "socket":
        return ("socket: only AF_UNIX, AF_INET and AF_INET6 sockets are allowed",
                f"{obj} sockets reach the kernel's own interfaces and stay refused; a "
                "--seccomp-profile that allows the family is the only way")
    if syscall == "clone":
        return ("clone may not create namespaces",
                "the sandbox makes no namespaces of its own; threads and fork are allowed")
    if syscall == "mprotect":
        return ("mprotect may not make memory writable and executable at once (W^X)",
                "write the code first, then mprotect it PROT_READ|PROT_EXEC; or a "
                "--seccomp-profile that allows it")
    if syscall == "ioctl":
        return ("ioctl allows only the terminal, pseudo-terminal and file-clone requests",
                f"{obj} is refused on purpose (TIOCSTI pushes input into a terminal)" if obj in
                sd.DENIED_IOCTL_REQUESTS else "a --seccomp-profile that allows the request")
    if syscall in sd.ARGUMENT_FILTERED_SYSCALLS:
        return (f"{syscall} is allowed only in the forms the default seccomp profile lists",
                f"a --seccomp-profile that allows this form of {syscall}")
    logged = " (allowed: --seccomp-default-action log)" if action == "logged" else ""
    return (f"{syscall} is not in the default seccomp allowlist{logged}", _TRACE_HINT)


def seccomp_violation(ctx: Context, *, when: str, pid: int, executable: str, syscall: str,
                      args: tuple[int, ...], ret_action: str, errno: int = 0) -> dict[str, object]:
    """The record of one refused call: ``ret_action`` is "errno" (with ``errno``), "kill" or
    "logged"."""
    action = _action(ret_action, errno)
    rule, hint = seccomp_rule(ctx, syscall, args, action)
    return _record(ctx, when, pid, executable, "seccomp", syscall, salient(syscall, args), action,
                   rule, hint, args=[hex(a) for a in args])


# --- Landlock -------------------------------------------------------------------------------------

# The user-facing group a kernel's blocker name belongs to (landlock_default.ACCESS_GROUPS).
_GROUP_OF = {
    "execute": "execute", "write_file": "write", "truncate": "write", "read_file": "read",
    "read_dir": "read", "remove_dir": "remove", "remove_file": "remove", "make_char": "create",
    "make_dir": "create", "make_reg": "create", "make_sock": "create", "make_fifo": "create",
    "make_block": "create", "make_sym": "create", "refer": "create", "ioctl_dev": "ioctl_dev",
}


def granted(rules: tuple[tuple[str, tuple[str, ...]], ...], path: str) -> tuple[set[str], list[str]]:
    """The access groups Landlock grants on ``path`` (rights add up down a tree) and the rule
    paths that grant them."""
    groups: set[str] = set()
    by: list[str] = []
    for rule_path, access in rules:
        if path == rule_path or path.startswith(rule_path.rstrip("/") + "/"):
            groups |= set(access)
            by.append(rule_path)
    return groups, by


def landlock_rule(ctx: Context, blockers: tuple[str, ...], path: str) -> tuple[str, str]:
    """(the rule that refused the access, a hint)."""
    scopes = [b for b in blockers if b.startswith("scope.")]
    if scopes:
        what = "signals" if "scope.signal" in scopes else "abstract unix sockets"
        return (f"Landlock scopes {what} to the sandbox's own processes",
                "nothing outside the sandbox can be reached this way; no flag changes it")
    wanted = sorted({_GROUP_OF.get(b.split(".", 1)[-1], b) for b in blockers})
    groups, by = granted(ctx.landlock_rules, path)
    source = (f"the Landlock policy {ctx.landlock_policy!r} grants" if ctx.landlock_policy
              else "the default Landlock rules grant")
    if by:
        shown = groups - {"all", "all_except_execute"} - ({"readdir"} if "read" in groups else set())
        held = ", ".join(sorted(shown)) or "nothing"
        rule = f"{source} {held} beneath {by[-1]}, not {', '.join(wanted)}"
    else:
        rule = f"{source} nothing on {path}"
    if ctx.landlock_policy:
        return rule, f"grant {', '.join(wanted)} on {path} in {ctx.landlock_policy!r}"
    if wanted == ["execute"]:
        hint = ("run programs from the system directories, or from a writable place that "
                "--allow-exec names; a --landlock-policy can grant execute")
    elif set(wanted) & {"write", "create", "remove"}:
        hint = ("write under /tmp, the home directory or a copied /context; a --landlock-policy "
                "can grant write beneath a path")
    else:
        hint = "bring files in with --context DIR; a --landlock-policy can grant read beneath a path"
    return rule, hint


def landlock_violation(ctx: Context, *, when: str, pid: int, executable: str,
                       blockers: tuple[str, ...], path: str) -> dict[str, object]:
    """The record of one denied access: ``blockers`` as the kernel names them ("fs.write_file",
    "scope.signal"), ``path`` the file (or the peer, for a scope)."""
    rule, hint = landlock_rule(ctx, blockers, path)
    operation = ",".join(b.split(".", 1)[-1] for b in blockers)
    errno = 1 if any(b.startswith("scope.") for b in blockers) else 13
    return _record(ctx, when, pid, executable, "landlock", operation, path, _action("errno", errno), rule, hint)


# --- egress ---------------------------------------------------------------------------------------


def egress_violation(ctx: Context, *, when: str, operation: str, obj: str, action: str, rule: str,
                     hint: str, client: str, note: str = "") -> dict[str, object]:
    """The record of one refused connection or lookup: ``operation`` "connect" (CONNECT, SOCKS5,
    or a TCP connection the firewall dropped), "http" (a plain HTTP request), "lookup" (DNS) or
    "send" (a UDP datagram the firewall dropped), ``obj`` what was asked ("other.test:443",
    "other.test A", "192.0.2.7:5433/tcp"), ``action`` what the client got ("403", "REFUSED",
    "SOCKS5 reply 2", "dropped"), the rule and hint of the policy's verdict, and a ``note`` on
    how the record was made where one is due; the requester is known by its ``client`` address."""
    extra = {"client": client, **({"note": note} if note else {})}
    return _record(ctx, when, 0, "", "egress", operation, obj, action, rule, hint, **extra)


def _record(ctx: Context, when: str, pid: int, executable: str, layer: str, operation: str,
            obj: str, action: str, rule: str, hint: str, **extra: object) -> dict[str, object]:
    record: dict[str, object] = {
        "time": when, "container": {"id": ctx.container_id, "name": ctx.container_name},
        "pid": pid, "executable": executable, "layer": layer, "operation": operation, "object": obj,
    }
    record.update(extra)
    if ctx.joined:
        record["joined"] = True
    record.update({"action": action, "rule": rule, "hint": hint})
    return record


# --- reading and showing --------------------------------------------------------------------------


def line(record: dict[str, object]) -> bytes:
    """One record as the stream holds it."""
    return json.dumps(record, separators=(", ", ": "), ensure_ascii=True).encode() + b"\n"


def parse(data: bytes) -> list[dict[str, object]]:
    """The records of a stream (a line that is not a record, such as one cut by a full disk, is
    passed over)."""
    out = []
    for raw in data.splitlines():
        try:
            record = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(record, dict) and record.get("layer") in LAYERS:
            out.append(record)
    return out


def shown(value: object) -> str:
    """A value as a terminal may print it: the workload names its files and programs, so a
    control character (an escape sequence) is written out, never sent."""
    text = str(value)
    return text if text.isprintable() else "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def blocked(record: dict[str, object]) -> str:
    """The one line a run prints when a refusal explains how its workload died: "blocked:
    socket(AF_NETLINK) is not allowed by the seccomp policy; <hint>"."""
    return shown(f"blocked: {call(record)} is not allowed by the {record.get('layer')} policy; {record.get('hint')}")


TABLE_COLUMNS = (("time", "TIME"), ("layer", "LAYER"), ("pid", "PID"), ("executable", "EXECUTABLE"),
                 ("call", "OPERATION"), ("action", "ACTION"), ("rule", "RULE"))


def table_row(record: dict[str, object]) -> dict[str, object]:
    """A record as `nucleus violations --format table` shows it (printable only)."""
    row = {key: shown(value) for key, value in record.items() if isinstance(value, (str, int))}
    return {**row, "time": str(record.get("time", ""))[11:23], "call": shown(call(record))}
