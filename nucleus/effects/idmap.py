"""Id-mapped mounts: a user namespace made only to be named by MOUNT_ATTR_IDMAP, and whether a
mount tree can be id-mapped (nucleus.config.volumes says why a volume is).

A user namespace needs a process to make it: a child unshares one, the parent writes its maps
and opens it through /proc, and the child exits. The descriptor keeps the namespace (nothing
runs in it); the setup process inherits it and maps a volume's ids through it.
"""

from __future__ import annotations

import errno
import os

from nucleus import linux
from nucleus import vocab as v
from nucleus.effects import abi, libc, namespaces, process


def userns(uid_map: v.IdMap, gid_map: v.IdMap) -> int:
    """A new user namespace with these maps, as a descriptor (close-on-exec)."""

    def child(go: int, ready: int) -> None:
        libc.unshare(linux.CLONE_NEWUSER)
        os.write(ready, b"u")
        os.read(go, 1)  # until the parent has opened the namespace (or gone)
        os._exit(0)

    pid, go, ready = process.serve_in_child(child)
    try:
        if os.read(ready, 1) != b"u":
            raise OSError(errno.EPERM, "the process making a user namespace for an id-mapped mount failed")
        namespaces.write_id_maps(v.WriteIdMaps(uid_map, gid_map), pid)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready)
        os.close(go)
        process.reap(pid)


def supported(opened: int, ns: int) -> bool:
    """Whether the mount tree of the object open at `opened` can be id-mapped through `ns`:
    tried on a detached copy of it, which goes when its descriptor is closed. False where a
    file system of the tree does not support id-mapped mounts (EINVAL)."""
    tree = libc.open_tree(opened, "", abi.OPEN_TREE_CLONE | abi.OPEN_TREE_CLOEXEC | abi.AT_EMPTY_PATH
                          | abi.AT_RECURSIVE)
    try:
        libc.mount_setattr(tree, "", abi.AT_EMPTY_PATH | abi.AT_RECURSIVE, abi.MOUNT_ATTR_IDMAP,
                           userns_fd=ns)
    except abi.SyscallError as e:
        if e.errno in (errno.EINVAL, errno.EOPNOTSUPP):
            return False
        raise
    finally:
        libc.close(tree)
    return True
