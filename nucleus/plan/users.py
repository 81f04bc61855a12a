"""Who the workload runs as (`-u/--user`): a user and group of the container's /etc/passwd and
/etc/group (the generated files, or a --rootfs closure's, read by the probe), held against the
container's id maps. Pure.

The account decides the ids (setgroups to its supplementary groups, setgid, setuid, inside the
container's user namespace), the home (HOME, and the writable home directory, owned by the
user) and, for a numeric uid without an entry, the entries the generated files gain so that
`whoami`, `id`, git and pip find the user: `user:x:UID:GID::/home/user:/bin/sh` (and a group
`user` for a gid without one).
"""

from __future__ import annotations

import posixpath
import re

from nucleus.config import users
from nucleus.config.container import DEFAULT_HOME
from nucleus.errors import InvalidInput
from nucleus.frozen import frozen

IdMap = tuple[tuple[int, int, int], ...]
# (uid, gid, supplementary groups): what the caps step switches to (vocab DropCapabilities.user).
Switch = tuple[int, int, tuple[int, ...]]

GENERATED = "the container's generated /etc/passwd and /etc/group"
UNNAMED = "user"  # the name the generated files give a numeric uid (and gid) without an entry
UNNAMED_HOME = "/home/user"
# Directories that hold the container's own layout: never a home, whatever a passwd file says.
RESERVED = frozenset({"bin", "sbin", "usr", "lib", "lib32", "lib64", "nix", "etc", "dev", "proc",
                      "sys", "tmp", "run", "context"})
NO_HOME = "/nonexistent"  # the conventional "no home" (nobody's)
_ID = re.compile(r"[0-9]{1,10}")


@frozen
class Entry:
    name: str
    id: int
    gid: int = 0  # passwd: the primary group
    home: str = ""
    members: tuple[str, ...] = ()  # group: its members' names


@frozen
class Account:
    """The workload's user: ids, supplementary groups (mapped ones only), names and home."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    name: str = ""  # "" when the uid has no entry
    group_name: str = ""  # "" when the gid has no entry
    home: str = DEFAULT_HOME

    @property
    def switch(self) -> Switch | None:
        """What the caps step switches to; None for container root without groups (a run
        without -u: nothing changes)."""
        if (self.uid, self.gid, self.groups) == (0, 0, ()):
            return None
        return self.uid, self.gid, self.groups


def generated(root_home: str, account: Account | None = None) -> tuple[str, str]:
    """The generated /etc/passwd and /etc/group: root and nobody, and the entries a numeric
    uid or gid without one gains."""
    passwd = (f"root:x:0:0:root:{root_home}:/bin/sh\n"
              "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    group = "root:x:0:\nnogroup:x:65534:\n"
    if account is not None and not account.name:
        passwd += f"{UNNAMED}:x:{account.uid}:{account.gid}::{account.home}:/bin/sh\n"
    if account is not None and not account.group_name:
        group += f"{UNNAMED}:x:{account.gid}:\n"
    return passwd, group


def _entries(text: str, fields: int) -> list[Entry]:
    """The well-formed lines of a passwd (7 fields) or group (4 fields) file; others, and
    comments, are passed over as the C library does."""
    out = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) != fields or not parts[0] or not _ID.fullmatch(parts[2]):
            continue
        if fields == 7:
            if not _ID.fullmatch(parts[3]):
                continue
            out.append(Entry(parts[0], int(parts[2]), int(parts[3]), home=parts[5]))
        else:
            out.append(Entry(parts[0], int(parts[2]), members=tuple(m for m in parts[3].split(",") if m)))
    return out


def _mapped(value: int, id_map: IdMap) -> bool:
    return any(inside <= value < inside + count for inside, _, count in id_map)


def _shown(id_map: IdMap) -> str:
    return ", ".join(str(i) if c == 1 else f"{i}-{i + c - 1}" for i, _, c in id_map) or "none"


def usable_home(path: str) -> bool:
    """A home the container can have: absolute and normal, not the root, not "no home", and
    not inside one of the container's own directories (/usr, /etc, /tmp, /context, ...)."""
    return (path.startswith("/") and not path.startswith("//") and posixpath.normpath(path) == path
            and path not in ("/", NO_HOME) and path.split("/")[1] not in RESERVED)


def resolve(text: str, passwd: str, group: str, uid_map: IdMap, gid_map: IdMap, *,
            flag: str = "--user", where: str = GENERATED, problem: str = "",
            unnamed_home: str = UNNAMED_HOME, no_home: str = DEFAULT_HOME) -> Account:
    """The account `text` (-u's value) names in the files' text `passwd` and `group` (`where`
    says which they are; `problem`, why they could not be read, which matters only to a name).
    A name must have an entry; a number need not (its gid is then the uid, its home
    `unnamed_home`); an entry whose home is not `usable_home` gets `no_home`. Every id must be
    mapped in the container's user namespace. InvalidInput names the flag and the value."""
    spec = users.parse(text, flag)
    people, groups = _entries(passwd, 7), _entries(group, 4)

    def lookup(name: str, entries: list[Entry], what: str, file: str) -> Entry:
        for entry in entries:
            if entry.name == name:
                return entry
        why = f" ({problem})" if problem else ""
        raise InvalidInput(f"{flag} {text!r}: no {what} {name!r} in {where}{why}",
                           hint=f"name a {what} of the container's /etc/{file}, or give a number")

    if _ID.fullmatch(spec.user):
        uid = int(spec.user)
        person = next((e for e in people if e.id == uid), None)
    else:
        person = lookup(spec.user, people, "user", "passwd")
        uid = person.id
    if spec.group is None:
        gid = person.gid if person is not None else uid
    elif _ID.fullmatch(spec.group):
        gid = int(spec.group)
    else:
        gid = lookup(spec.group, groups, "group", "group").id
    for what, value, id_map in (("uid", uid, uid_map), ("gid", gid, gid_map)):
        if not _mapped(value, id_map):
            raise InvalidInput(
                f"{flag} {text!r}: {what} {value} is not mapped in the container's user namespace "
                f"(it maps {_shown(id_map)})",
                hint="a rootless run maps only the caller, as container root (uid 0); a run as "
                     "root maps 0-65535: run as root, or leave out -u")
    supplementary = () if person is None else tuple(sorted(
        {g.id for g in groups if person.name in g.members and g.id != gid and _mapped(g.id, gid_map)}))
    home = unnamed_home if person is None else person.home if usable_home(person.home) else no_home
    return Account(uid, gid, supplementary, person.name if person else "",
                   next((g.name for g in groups if g.id == gid), ""), home)


def with_groups(account: Account | None, groups: tuple[int, ...], gid_map: IdMap,
                where: str = "--group-add") -> Switch | None:
    """What the caps step switches to: the account's (None: container root) with `groups` (an
    OCI config's process.user.additionalGids) among its supplementary groups. Each must be
    mapped in the container's user namespace; InvalidInput names `where` and the gid."""
    for gid in groups:
        if not _mapped(gid, gid_map):
            raise InvalidInput(f"{where} {gid}: gid {gid} is not mapped in the container's user namespace "
                               f"(it maps {_shown(gid_map)})", hint="give groups of the container's own range")
    base = account or Account(0, 0, home="")
    if not groups:
        return base.switch
    return base.uid, base.gid, tuple(sorted(set(base.groups) | set(groups)))
