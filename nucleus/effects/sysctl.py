"""Kernel parameters written inside the container (vocab WriteSysctl), through the container's
own /proc while the setup process is in the container's namespaces.

The file is opened with openat2 beneath the /proc mount's sys/ directory: no '..', no symlink
and no other mount on the way, so a key can only name a file of that procfs. Which keys may be
written at all (those the container's own namespaces hold) is decided before the run
(nucleus.config.sysctl).
"""

from __future__ import annotations

import os

from nucleus import vocab as v
from nucleus.config import sysctl as rules
from nucleus.effects import abi, libc

RESOLVE = abi.RESOLVE_BENEATH | abi.RESOLVE_NO_SYMLINKS | abi.RESOLVE_NO_MAGICLINKS | abi.RESOLVE_NO_XDEV


def write_sysctl(op: v.WriteSysctl) -> None:
    """Write `op.value` to `op.key`; an OSError names the key and the file."""
    relative = "/".join(rules.names(op.key))
    top = os.open(f"{op.proc.rstrip('/')}/sys", os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        try:
            fd = libc.openat2(top, relative, os.O_WRONLY | os.O_CLOEXEC, RESOLVE)
        except OSError as e:
            raise OSError(e.errno, f"sysctl {op.key!r}: cannot open /proc/sys/{relative}: "
                                   f"{os.strerror(e.errno or 0)}") from None
    finally:
        os.close(top)
    try:
        os.write(fd, op.value.encode())
    except OSError as e:
        raise OSError(e.errno, f"sysctl {op.key!r}: cannot write {op.value!r} to /proc/sys/{relative}: "
                               f"{os.strerror(e.errno or 0)}") from None
    finally:
        os.close(fd)
