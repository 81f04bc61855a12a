"""Host paths that nucleus binds, reads or writes for the caller outside a context: a volume's
source (-v), the destination of `--changes` and both ends of `nucleus cp` on the host. Pure
decisions on facts the probe gathered (nucleus.effects.probe.host_path): nothing here looks at
the host.

The rules, as README.md states them:

* **No symlink.** The path is walked one component at a time from "/" without following any
  symlink (a symlink anywhere on it is refused, naming it and where it points), and the object
  found then is the one used: nothing looks the path up again but to check that it still leads
  to that very object.
* **Never a system tree**, nor a shared root, a credentials directory, another user's home or a
  path through a directory anyone may write: the rules of a context
  (nucleus.config.context.place_refusal), one rule set.
* **Whose.** A volume and what `nucleus cp` copies into a container must be the caller's; a run
  as root may also use what belongs to the user sudo runs it for (SUDO_UID). Root writes a
  destination (`--changes`, `nucleus cp` to the host) only into a directory root or that user
  owns, and then as its owner (file-system ids and groups), so root never writes where the
  caller could not; an ordinary caller writes as itself and the kernel decides.
"""

from __future__ import annotations

import posixpath
from typing import NamedTuple

from nucleus.config.context import HOME_ROOTS, PathDir, place_refusal
from nucleus.errors import InvalidInput


class HostPath(NamedTuple):
    """What the probe found walking a host path without following symlinks."""

    given: str  # as the user wrote it
    path: str  # the absolute path walked (no symlink on it)
    chain: tuple[PathDir, ...]  # each directory from "/" down to the object's parent
    uid: int  # the object's owner, group and st_mode
    gid: int
    mode: int
    is_dir: bool
    aliases: tuple[str, ...] = ()  # system trees that are this very object (a bind mount)


class Destination(NamedTuple):
    """Where something is created on the host: in the directory open (O_PATH) at `parent`,
    under `name`, as the user `write_as` (-1: the caller's own identity); `given` is how the
    user named it."""

    parent: int
    name: str
    write_as: int
    given: str


def owners(caller: int, sudo_uid: int | None) -> tuple[int, ...]:
    """Whose paths uid `caller` may bind and copy in: its own; root's also the user sudo runs
    it for."""
    if caller == 0 and sudo_uid is not None and sudo_uid != 0:
        return (0, sudo_uid)
    return (caller,)


def _whose(caller: int, sudo_uid: int | None) -> str:
    allowed = owners(caller, sudo_uid)
    return (f"the caller's (uid {caller})" if len(allowed) == 1 else
            f"root's or those of uid {allowed[1]} (SUDO_UID)")


def refusal(shown: str, found: HostPath, caller: int, sudo_uid: int | None, what: str,
            writable: bool = False) -> InvalidInput | None:
    """Why `found` may not be a `what` ("volume", "source of a copy") of uid `caller`: the
    context's rules, then its kind and its owner. `shown` opens the message. Under sudo, root's
    own paths are lent read-only and only where everyone may read them: a `writable` one must
    be the sudo user's (root's writable would hand that user the host: /usr/local, /opt, ...)."""
    problem = place_refusal(shown, found.path, (*found.chain, PathDir(found.path, found.uid, found.mode)),
                            found.aliases, caller, what)
    if problem is not None:
        return problem
    if found.is_dir and posixpath.dirname(found.path) in HOME_ROOTS:
        return InvalidInput(f"{shown}: {found.path} is a home directory, which holds credentials "
                            f"(.ssh, .gnupg, ...); it is never a {what}",
                            hint="name the project directory inside it")
    if found.uid not in owners(caller, sudo_uid):
        return InvalidInput(f"{shown}: {found.path} belongs to uid {found.uid}; a {what} must be "
                            f"{_whose(caller, sudo_uid)}",
                            hint="copy what the workload needs into a directory of your own")
    if found.uid == 0 and caller == 0 and len(owners(caller, sudo_uid)) > 1:
        if writable:
            return InvalidInput(f"{shown}: {found.path} belongs to root; under sudo a writable {what} "
                                f"must be uid {sudo_uid}'s (SUDO_UID)",
                                hint="bind it read-only (:ro), or use a directory of your own")
        readable = 0o005 if found.is_dir else 0o004
        if found.mode & readable != readable:
            return InvalidInput(f"{shown}: {found.path} belongs to root and not everyone may read it "
                                f"(mode {found.mode & 0o7777:04o}); under sudo it is never a {what}",
                                hint="use a directory of your own")
    return None


def destination_refusal(shown: str, parent: HostPath, name: str, caller: int,
                        sudo_uid: int | None, what: str) -> InvalidInput | None:
    """Why `name` in the directory `parent` may not be created as a `what` ("destination of
    --changes") by uid `caller`: the context's rules for the new path, and for root a
    directory that root or the user sudo runs it for owns."""
    path = posixpath.join(parent.path, name)
    problem = place_refusal(shown, path, (*parent.chain, PathDir(parent.path, parent.uid, parent.mode),
                                          PathDir(path, caller, 0o700)), (), caller, what)
    if problem is not None:
        return problem
    if caller == 0 and parent.uid not in owners(caller, sudo_uid):
        return InvalidInput(f"{shown}: {parent.path} belongs to uid {parent.uid}; root writes a "
                            f"{what} only into a directory of its own or of the user sudo runs it "
                            "for (SUDO_UID)", hint="name a directory of yours")
    return None


def writer(caller: int, parent: HostPath) -> int:
    """Whose identity writes into `parent` (see destination_refusal): -1 for the caller's own
    (an ordinary caller, or root in root's directory), else the directory's owner."""
    return parent.uid if caller == 0 and parent.uid != 0 else -1
