"""Namespace effects: create namespaces (run), join a container's (attach), write the id maps of
a new user namespace, and take on the identity inside it."""

from __future__ import annotations

import errno
import os
import socket
import struct

from nucleus import linux
from nucleus import vocab as v
from nucleus.effects import abi, caps, control, libc, process

FLAGS = {
    "user": linux.CLONE_NEWUSER, "pid": linux.CLONE_NEWPID, "mount": linux.CLONE_NEWNS,
    "mnt": linux.CLONE_NEWNS, "net": linux.CLONE_NEWNET, "uts": linux.CLONE_NEWUTS,
    "ipc": linux.CLONE_NEWIPC, "cgroup": linux.CLONE_NEWCGROUP, "time": linux.CLONE_NEWTIME,
}
_IFREQ = struct.Struct("16sH14x")


def unshare(op: v.Unshare) -> None:
    flags = 0
    for name in op.namespaces:
        flags |= FLAGS[name]
    libc.unshare(flags)


def set_hostname(op: v.SetHostname) -> None:
    libc.sethostname(op.hostname)


def loopback_up(_: v.LoopbackUp) -> None:
    """lo up in the process's network namespace; left alone when it is up already (the host's,
    with --network host: nothing of it is changed, and a rootless run could not)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = _IFREQ.unpack(libc.ioctl(s.fileno(), abi.SIOCGIFFLAGS, _IFREQ.pack(b"lo", 0)))[1]
        if not flags & abi.IFF_UP:
            libc.ioctl(s.fileno(), abi.SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | abi.IFF_UP))


def enter_user_namespace(_: v.EnterUserNamespace) -> None:
    # Host root's supplementary groups would follow the process into the namespace (shown as
    # nogroup but still granting access): clear them while still allowed to.
    libc.setgroups([])
    libc.unshare(linux.CLONE_NEWUSER)


def become_root(_: v.BecomeRoot) -> None:
    """Root of the new user namespace. The process stays dumpable until its capabilities are
    dropped (nucleus.effects.handlers): a user-mode network's stack, run as the caller, joins
    its namespaces through /proc/<pid>/ns, which the kernel opens only for a dumpable process
    (its memory still belongs to the host's user namespace). Nothing of the container runs
    before then."""
    libc.setresgid(0, 0, 0)
    libc.setresuid(0, 0, 0)
    caps.after_identity_change()
    caps.set_dumpable(True)


def join_identity(_: v.JoinIdentity) -> None:
    """Root of the container's user namespace for a joined command: non-dumpable throughout
    (no network stack joins it), dying with its parent."""
    libc.setresgid(0, 0, 0)
    libc.setresuid(0, 0, 0)
    caps.after_identity_change()


def enter_namespaces(op: v.EnterNamespaces) -> None:
    """Open every namespace first (the paths stop resolving once the mount namespace changes),
    then make sure they are the container's: the init is still the process that started at
    `op.start` (so the open descriptors are its namespaces, not those of a process that reused
    its pid after it ended), and none is this process's own (the host's). Only then setns into
    each, in order."""
    if process.process_start(op.pid) != op.start:
        raise OSError(errno.ESRCH, f"the container's init (pid {op.pid}) has ended")
    fds: list[tuple[str, int]] = []
    try:
        for kind, path in op.namespaces:
            fds.append((kind, libc.open(path, os.O_RDONLY | os.O_CLOEXEC)))
        if process.process_start(op.pid) != op.start:
            raise OSError(errno.ESRCH, f"the container's init (pid {op.pid}) has ended")
        for kind, path in op.namespaces:
            if libc.readlink(path) == libc.readlink(f"/proc/self/ns/{kind}"):
                raise OSError(errno.EINVAL, f"{path} is this process's own {kind} namespace, not "
                                            "one the container made: refusing to join it")
        if process.process_start(op.pid) != op.start:  # still the init after the comparison
            raise OSError(errno.ESRCH, f"the container's init (pid {op.pid}) has ended")
        if op.clear_groups:
            libc.setgroups([])  # host root's groups must not follow into the container
        for kind, fd in fds:
            libc.setns(fd, FLAGS[kind])
    finally:
        for _, fd in fds:
            libc.close(fd)


def write_id_maps(op: v.WriteIdMaps, pid: int) -> None:
    """Host side: setgroups (where the kernel has it), then the uid and gid maps of `pid`."""
    base = f"/proc/{pid}"
    try:
        write(f"{base}/setgroups", op.setgroups)
    except FileNotFoundError:
        pass
    write(f"{base}/uid_map", "".join(f"{a} {b} {c}\n" for a, b, c in op.uid_map))
    write(f"{base}/gid_map", "".join(f"{a} {b} {c}\n" for a, b, c in op.gid_map))


def write(path: str, text: str) -> None:
    """A control file's value; a failure names the file and the value."""
    try:
        control.write_once(path, text)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise OSError(e.errno, f"write {text.strip()!r} to {path}: {e.strerror}") from e
