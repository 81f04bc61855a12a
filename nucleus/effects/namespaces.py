"""Namespace effects: create namespaces (run), join those a config names by path (a pod's) and a
container's (attach), share a container's with its OCI supervisor, write the id maps of a new user
namespace, and take on the identity inside it."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import struct
from collections.abc import Iterator

from nucleus import linux
from nucleus import vocab as v
from nucleus.effects import abi, caps, control, libc, process

FLAGS = {
    "user": linux.CLONE_NEWUSER, "pid": linux.CLONE_NEWPID, "mount": linux.CLONE_NEWNS,
    "mnt": linux.CLONE_NEWNS, "net": linux.CLONE_NEWNET, "uts": linux.CLONE_NEWUTS,
    "ipc": linux.CLONE_NEWIPC, "cgroup": linux.CLONE_NEWCGROUP, "time": linux.CLONE_NEWTIME,
}
_IFREQ = struct.Struct("16sH14x")


HOST = "/proc/1/ns"  # the host's namespaces: PID 1's


@contextlib.contextmanager
def _held() -> Iterator[list[tuple[str, int]]]:
    """The (kind, descriptor) of the namespaces opened to be joined, each closed at the end, in order."""
    fds: list[tuple[str, int]] = []
    try:
        yield fds
    finally:
        for _, fd in fds:
            libc.close(fd)


def _still_running(pid: int, start: int) -> None:
    """ESRCH unless `pid` is still the init that started at `start` (not gone, not reused)."""
    if process.process_start(pid) != start:
        raise OSError(errno.ESRCH, f"the container's init (pid {pid}) has ended")


def _setns(fds: list[tuple[str, int]]) -> None:
    for kind, fd in fds:
        libc.setns(fd, FLAGS[kind])


def unshare(op: v.Unshare) -> None:
    """Join the namespaces named by path, then make the new ones (as runc's nsexec does: a
    namespace made afterwards is the joined ones' peer, and a joined pid namespace is the one
    the init forked next is born in)."""
    join(op.joins, op.host)
    flags = 0
    for name in op.namespaces:
        flags |= FLAGS[name]
    libc.unshare(flags)


def join(joins: tuple[tuple[str, str, str], ...], host: bool) -> None:
    """setns into each (kind, path, field) in order, once every one is open and checked (so a
    bad path changes nothing): the path must be a namespace file of that kind, and not the
    host's own unless `host`. Nothing joined is ever torn down here: it belongs to its maker."""
    with _held() as fds:
        for kind, path, field in joins:
            fds.append((kind, namespace_file(kind, path, field, host)))
        _setns(fds)


def namespace_file(kind: str, path: str, field: str, host: bool) -> int:
    """`path` opened O_RDONLY|O_CLOEXEC for setns, where the kernel says it is a `kind`
    namespace (NS_GET_NSTYPE) and, unless `host`, not the host's. It is first opened O_PATH and must
    be a file of the kernel's namespace file system (the device of this process's own namespace
    files), so that a device, a FIFO or a file of a FUSE server is never opened for reading (an
    open that acts, or blocks); the descriptor for setns is that very file, reopened."""
    where = f"{field} {path!r}"
    try:
        anchor = libc.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as e:
        raise OSError(e.errno, f"{where}: cannot be opened ({e})") from None
    try:
        found = os.fstat(anchor)
        if not stat.S_ISREG(found.st_mode) or found.st_dev != os.stat(f"/proc/self/ns/{kind}").st_dev:
            raise OSError(errno.EINVAL, f"{where}: is not a namespace file")
        fd = libc.open(f"/proc/self/fd/{anchor}", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    finally:
        libc.close(anchor)
    try:
        try:
            nstype = libc.ioctl_value(fd, abi.NS_GET_NSTYPE)
        except OSError as e:
            raise OSError(errno.EINVAL, f"{where}: is not a namespace file ({e})") from None
        if nstype != FLAGS[kind]:
            raise OSError(errno.EINVAL, f"{where}: is a {abi.clone_flag_names(nstype)} namespace, "
                                        f"not a {kind} namespace ({abi.clone_flag_names(FLAGS[kind])})")
        mine = os.fstat(fd)
        if not host and (mine.st_dev, mine.st_ino) in host_namespaces(kind):
            raise OSError(errno.EPERM, f"{where}: is the host's own {kind} namespace: refusing to join it, "
                                       "which only the runtime's operator can allow")
    except BaseException:
        libc.close(fd)
        raise
    return fd


def host_namespaces(kind: str) -> set[tuple[int, int]]:
    """The (device, inode) of the host's `kind` namespace: this process's own (the runtime's,
    before it makes any) and PID 1's where this host lets it be seen (some hide PID 1's
    namespaces even from root: EACCES on Linux 6.18 here)."""
    found = set()
    for path in (f"/proc/self/ns/{kind}", f"{HOST}/{kind}"):
        try:
            st = os.stat(path)
        except PermissionError:
            continue
        found.add((st.st_dev, st.st_ino))
    return found


def set_hostname(op: v.SetHostname) -> None:
    """The new uts namespace's hostname; an empty one leaves a joined namespace's as its maker set it."""
    if op.hostname:
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
    _still_running(op.pid, op.start)
    with _held() as fds:
        for kind, path in op.namespaces:
            fds.append((kind, libc.open(path, os.O_RDONLY | os.O_CLOEXEC)))
        _still_running(op.pid, op.start)
        for kind, path in op.namespaces:
            if libc.readlink(path) == libc.readlink(f"/proc/self/ns/{kind}"):
                raise OSError(errno.EINVAL, f"{path} is this process's own {kind} namespace, not "
                                            "one the container made: refusing to join it")
        _still_running(op.pid, op.start)  # still the init after the comparison
        if op.clear_groups:
            libc.setgroups([])  # host root's groups must not follow into the container
        _setns(fds)


def share(pid: int, start: int | None, kinds: tuple[str, ...]) -> None:
    """This process joins the `kinds` namespaces of the container's init (`pid`, which started
    at `start`) that it does not share yet: an OCI supervisor, whose /proc/PID/ns files are what a
    pod's other containers are told to join. The init is checked to be that process after every
    namespace is open, so the descriptors are its namespaces and not those of a process that
    reused its pid."""
    if start is None:
        raise OSError(errno.ESRCH, f"the container's init (pid {pid}) has ended")
    with _held() as fds:
        for kind in kinds:
            path = f"/proc/{pid}/ns/{kind}"
            if libc.readlink(path) != libc.readlink(f"/proc/self/ns/{kind}"):
                fds.append((kind, libc.open(path, os.O_RDONLY | os.O_CLOEXEC)))
        _still_running(pid, start)
        _setns(fds)


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
