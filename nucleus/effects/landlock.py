"""Landlock: restrict the calling process's filesystem access to a list of path-beneath rules.

Once ``restrict`` returns, the calling thread and everything it later starts can reach only what
the rules grant, for every right the ruleset handles; the restriction cannot be lifted. Files
opened before the call keep working.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Iterable

from nucleus.config import landlock_default as _ll
from nucleus.effects import libc
from nucleus.effects.abi import (  # by name: ``abi`` here is a Landlock ABI version
    LANDLOCK_CREATE_RULESET_VERSION,
    LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON,
    LANDLOCK_RULE_PATH_BENEATH,
    SyscallError,
)
from nucleus.linux import PR_SET_NO_NEW_PRIVS


def abi_version() -> int:
    """The Landlock ABI version of the running kernel; 0 when Landlock is not available
    (kernel without it, or the LSM not enabled at boot)."""
    try:
        return libc.landlock_create_ruleset(None, 0, LANDLOCK_CREATE_RULESET_VERSION)
    except SyscallError as e:
        if e.errno in (errno.ENOSYS, errno.EOPNOTSUPP):
            return 0
        raise


class Restricted:
    """What ``restrict`` enforced: the ABI used, the handled rights, the scopes, the rules
    applied as (path, rights) and the paths skipped as (path, reason)."""

    __slots__ = ("abi", "handled", "scoped", "applied", "skipped")

    def __init__(self, abi: int, handled: int, scoped: int, applied: Iterable[tuple[str, int]],
                 skipped: Iterable[tuple[str, str]]) -> None:
        self.abi = abi
        self.handled = handled
        self.scoped = scoped
        self.applied = tuple(applied)
        self.skipped = tuple(skipped)

    def __repr__(self) -> str:
        return (
            f"Restricted(abi={self.abi}, handled={self.handled:#x}, scoped={self.scoped:#x}, "
            f"applied={len(self.applied)}, skipped={list(self.skipped)!r})"
        )


def _ruleset_attr(abi: int, handled: int, scoped: int) -> bytes:
    # struct landlock_ruleset_attr { __u64 handled_access_fs; __u64 handled_access_net;
    # __u64 scoped; }: a kernel reads the prefix it knows (8 bytes before ABI 4, 16 before 6).
    if abi >= 6:
        return struct.pack("=QQQ", handled, 0, scoped)
    if abi >= 4:
        return struct.pack("=QQ", handled, 0)
    return struct.pack("=Q", handled)


def _rights(access: int | Iterable[str]) -> int:
    return access if isinstance(access, int) else _ll.access_mask(access)


def restrict(
    rules: Iterable[tuple[str, int | Iterable[str]]], *, handled: int | None = None,
    scope_signals: bool = True, abi: int | None = None, log_new_exec: bool = False,
) -> Restricted:
    """Enforce ``rules`` — (path, rights) pairs, rights a mask or a set of group names of
    ``nucleus.config.landlock_default`` — on the calling thread and its future children.

    - The ruleset handles ``handled`` (default: every filesystem right ABI ``abi`` knows;
      ``abi`` defaults to the running kernel's); rights the ABI does not know are masked off,
      so one rule list serves every kernel.
    - Each path is opened O_PATH|O_CLOEXEC (symlinks followed); a path that does not exist is
      skipped and reported, as is a rule left with no right. On a non-directory the rights are
      cut to those a file can carry (execute, write, read, truncate, ioctl_dev).
    - ABI >= 6 adds scopes: the process can no longer connect to abstract unix sockets created
      outside its Landlock domain (the host's, the runtime's) and, with ``scope_signals``, can
      no longer signal processes outside its domain; both work inside the domain.
    - no_new_privs is set first (idempotent): the kernel requires it from a process without
      CAP_SYS_ADMIN, and nucleus wants it in every case.
    - ``log_new_exec`` (ABI >= 7): the kernel audits the denials of the programs this process
      execs from now on, which it does not by default (LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON;
      nucleus restricts its own init and then execs the workload).

    Returns a ``Restricted``; raises SyscallError naming the failed call.
    """
    if abi is None:
        abi = abi_version()
    known = _ll.fs_rights_for_abi(abi)
    handled = known if handled is None else handled & known
    scoped = 0
    if abi >= 6:
        scoped = _ll.SCOPE_ABSTRACT_UNIX_SOCKET | (_ll.SCOPE_SIGNAL if scope_signals else 0)
    attr = _ruleset_attr(abi, handled, scoped)
    ruleset = libc.landlock_create_ruleset(attr, len(attr), 0)
    applied: list[tuple[str, int]] = []
    skipped: list[tuple[str, str]] = []
    try:
        for path, access in rules:
            wanted = _rights(access) & handled
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                skipped.append((path, "does not exist"))
                continue
            except OSError as e:
                raise SyscallError(
                    "open", (repr(path), "O_PATH|O_CLOEXEC"), e.errno or errno.EIO
                ) from e
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    wanted &= _ll.FILE_RIGHTS
                if not wanted:
                    skipped.append((path, f"no right left to grant at ABI {abi}"))
                    continue
                rule = struct.pack("=Qi", wanted, fd)  # struct landlock_path_beneath_attr, packed
                libc.landlock_add_rule(ruleset, LANDLOCK_RULE_PATH_BENEATH, rule, 0)
                applied.append((path, wanted))
            finally:
                os.close(fd)
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1)
        flags = LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON if log_new_exec and abi >= 7 else 0
        libc.landlock_restrict_self(ruleset, flags)
    finally:
        libc.close(ruleset)  # the ruleset fd came from the seam: it goes back through it
    return Restricted(abi, handled, scoped, applied, skipped)
