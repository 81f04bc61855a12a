"""Kernel parameters written inside a container (an OCI config's `linux.sysctl`): only those the
container's own namespaces hold, as runc allows them, so that no write reaches the host. Pure.

- IPC (nucleus always makes an IPC namespace): kernel.msgmax, msgmnb, msgmni, sem, shmall,
  shmmax, shmmni, shm_rmid_forced and fs.mqueue.*;
- network: net.*, with a network namespace of the container's own (not the host's network);
- UTS (always made): kernel.domainname; kernel.hostname is the config's `hostname` field.

A key is dotted (net.ipv4.ip_forward) or slashed (net/ipv4/ip_forward, sysctl(8)'s other form,
where a dot belongs to a name: net/ipv4/conf/eth0.100/forwarding). Each name becomes one path
component below the container's own /proc/sys: a '/' inside a dotted name is a '.' of the file's
name, never a directory, and no name is empty, '.' or '..'.
"""

from __future__ import annotations

import re

from nucleus.errors import InvalidInput

IPC = frozenset({"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                 "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"})
IPC_PREFIX = "fs.mqueue."
NET_PREFIX = "net."
UTS = frozenset({"kernel.domainname"})
# A name of /proc/sys: what the kernel's tables and network interface names use.
NAME_RE = re.compile(r"[A-Za-z0-9_:@+-][A-Za-z0-9_.:@+-]*")
MAX_VALUE = 4096  # a page: the most a /proc/sys file takes in one write


def dotted(key: str) -> str:
    """`key` in the dotted form: a slashed key's separators and dots swapped (as runc does)."""
    first = next((c for c in key if c in "./"), ".")
    return key if first == "." else key.translate(str.maketrans("./", "/."))


def names(key: str) -> tuple[str, ...]:
    """The path components below /proc/sys of a dotted key; ValueError when one is not a name."""
    parts = tuple(part.replace("/", ".") for part in key.split("."))
    for part in parts:
        if part in ("", ".", "..") or not NAME_RE.fullmatch(part):
            raise ValueError(f"{part!r} is not a name of /proc/sys")
    return parts


def check(key: str, value: str, where: str, own_network: bool) -> tuple[str, str]:
    """(dotted key, value) of one parameter (`where`: the field that holds it, for messages);
    InvalidInput when it is not held by the container's own namespaces, or not a name."""
    if not isinstance(value, str) or "\0" in value or len(value) > MAX_VALUE:
        raise InvalidInput(f"{where} {key!r}: the value {value!r} must be a string of at most {MAX_VALUE} "
                           "characters")
    name = dotted(key)
    try:
        names(name)
    except ValueError as e:
        raise InvalidInput(f"{where} {key!r}: {e}", hint="for example net.ipv4.ip_forward") from None
    if name in IPC or name.startswith(IPC_PREFIX) or name in UTS:
        return name, value
    if name.startswith(NET_PREFIX):
        if not own_network:
            raise InvalidInput(f"{where} {key!r}: is not allowed in the host's network namespace",
                               hint="give the container a network namespace of its own")
        return name, value
    if name == "kernel.hostname":
        raise InvalidInput(f"{where} {key!r}: conflicts with the hostname field", hint="set hostname instead")
    raise InvalidInput(f"{where} {key!r}: is not in a namespace of the container's own: writing it "
                       "would change the host", hint="nucleus writes net.*, fs.mqueue.*, kernel.domainname, "
                       "and kernel's msg*, sem and shm* parameters")


def path(proc: str, key: str) -> str:
    """The file of a checked dotted `key` below `proc`, the container's own /proc."""
    return "/".join((proc.rstrip("/"), "sys", *names(key)))


FLAG = "--sysctl"


def parse(values: tuple[str, ...], own_network: bool) -> tuple[tuple[str, str], ...]:
    """`nucleus run --sysctl KEY=VALUE` (repeatable), checked as linux.sysctl is; the last
    value of a key wins."""
    out: dict[str, str] = {}
    for text in values:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise InvalidInput(f"{FLAG} {text!r}: expected KEY=VALUE", hint=f"for example {FLAG} net.ipv4.ip_forward=1")
        name, checked = check(key, value, FLAG, own_network)
        out[name] = checked
    return tuple(out.items())
