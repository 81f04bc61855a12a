"""Raw Linux calls: the one ctypes module of nucleus, and the seam every effect calls through.

Every call CPython 3.11 lacks (unshare, setns, mount, mount_setattr, open_tree, move_mount,
openat2, pivot_root, setfsuid,
capabilities, seccomp, Landlock, close_range, signalfd), the few calls into libseccomp and the prepared calls of seccomp trace mode
are here; so are the calls an effect would otherwise make through ``os`` that need privileges or
change the calling process (chown, chroot, chdir, the descriptors of setns, rlimits, ...). A test
can thus replace every public function of this module with a recording fake (tests/fakes/libc.py)
and check an effect's calls without root. Constants, syscall tables and errors are data and live
in :mod:`nucleus.effects.abi`: this module holds calls only, and no other module of nucleus
imports ctypes or opens a shared library.

Each function performs exactly one call and raises ``abi.SyscallError`` when it fails; the
message names the call, its arguments (flags spelled as names) and the errno, e.g.::

    mount('tmpfs', '/x', 'tmpfs', MS_NOSUID|MS_NODEV, 'size=1g') failed: EPERM (Operation not permitted)

A syscall made by number takes its number from the running machine's table and raises
``abi.UnsupportedArchitecture`` on a machine without one, before anything reaches the kernel.
Importing the module is cheap: ctypes and the libraries are loaded on first use, each by its
soname (never through ``ctypes.util.find_library``, which forks).
"""

from __future__ import annotations

import errno as _errno
import os
import typing
from collections.abc import Callable, Iterable
from typing import TypeVar, cast

from nucleus.effects import abi

if typing.TYPE_CHECKING:  # ctypes itself is imported on first use, inside the calls
    import ctypes
    from typing import Literal

    _Buffer = ctypes.Array[ctypes.c_char]

_T = TypeVar("_T")

# --- libc, loaded on first use ------------------------------------------------------------------

_lib: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        import ctypes

        lib = ctypes.CDLL("libc.so.6", use_errno=True)
        lib.syscall.restype = ctypes.c_long
        _lib = lib
    return _lib


def _check(ret: int, call: str, *args: str) -> int:
    if ret == -1:
        import ctypes

        raise abi.SyscallError(call, args, ctypes.get_errno())
    return ret


def _path(p: str | bytes | os.PathLike[str] | os.PathLike[bytes] | None) -> bytes | None:
    return None if p is None else os.fsencode(p)


def _raw(name: str, *args: object) -> int:
    """syscall(<the number of ``name`` on this machine>, args...) with every integer passed as a
    full 64-bit long. Raises UnsupportedArchitecture, before any call, on a machine without a
    syscall table. An argument that is not an integer or None (a buffer, a pointer, bytes) goes
    to ctypes as it is."""
    nr = abi.syscall_number(name)
    import ctypes
    conv = [  # integers as unsigned 64-bit, so that values >= 2**63 keep their bits
        ctypes.c_void_p(None) if a is None
        else ctypes.c_ulong(a & 0xFFFFFFFFFFFFFFFF) if isinstance(a, int) else a
        for a in args
    ]
    ctypes.set_errno(0)
    ret: int = _libc().syscall(ctypes.c_long(nr), *conv)  # restype c_long: an int
    return ret


# --- namespaces ---------------------------------------------------------------------------------


def unshare(flags: int) -> None:
    """unshare(2): move the calling process into new namespaces."""
    import ctypes
    _check(_libc().unshare(ctypes.c_int(flags)), "unshare", abi.clone_flag_names(flags))


def setns(fd: int, nstype: int = 0) -> None:
    """setns(2): join the namespace referred to by ``fd``."""
    import ctypes
    ret = _libc().setns(ctypes.c_int(fd), ctypes.c_int(nstype))
    _check(ret, "setns", str(fd), abi.clone_flag_names(nstype))


# --- mounts -------------------------------------------------------------------------------------


def mount(
    source: str | bytes | None,
    target: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    fstype: str | bytes | None,
    flags: int,
    data: str | bytes | None = None,
) -> None:
    """mount(2)."""
    import ctypes
    ret = _libc().mount(_path(source), _path(target), _path(fstype), ctypes.c_ulong(flags),
                        _path(data))
    _check(ret, "mount", abi.quoted(source), abi.quoted(target), abi.quoted(fstype),
           abi.mount_flag_names(flags), abi.quoted(data))


def umount2(target: str | bytes | os.PathLike[str] | os.PathLike[bytes], flags: int = 0) -> None:
    """umount2(2)."""
    import ctypes
    ret = _libc().umount2(_path(target), ctypes.c_int(flags))
    _check(ret, "umount2", abi.quoted(target), abi.umount_flag_names(flags))


def pivot_root(
    new_root: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    put_old: str | bytes | os.PathLike[str] | os.PathLike[bytes],
) -> None:
    """pivot_root(2), by syscall number: glibc has no wrapper."""
    ret = _raw("pivot_root", _path(new_root), _path(put_old))
    _check(ret, "pivot_root", abi.quoted(new_root), abi.quoted(put_old))


def mount_setattr(dirfd: int, path: str | bytes | os.PathLike[str] | os.PathLike[bytes], flags: int,
                  attr_set: int, attr_clr: int = 0, propagation: int = 0, userns_fd: int = 0) -> None:
    """mount_setattr(2), by syscall number: change the attributes of the mount at ``path``
    (relative to ``dirfd``), and with AT_RECURSIVE of every mount below it too, in one call.
    ``attr_set``/``attr_clr`` are MOUNT_ATTR_* bits (struct mount_attr, size VER0)."""
    import ctypes
    import struct
    attr = ctypes.create_string_buffer(
        struct.pack("=4Q", attr_set, attr_clr, propagation, userns_fd), abi.MOUNT_ATTR_SIZE_VER0)
    ret = _raw("mount_setattr", dirfd, _path(path), flags, attr, abi.MOUNT_ATTR_SIZE_VER0)
    _check(ret, "mount_setattr", abi.dirfd_name(dirfd), abi.quoted(path), abi.at_flag_names(flags),
           f"{{attr_set={abi.mount_attr_names(attr_set)}, attr_clr={abi.mount_attr_names(attr_clr)}, "
           f"propagation={abi.mount_flag_names(propagation)}, userns_fd={userns_fd}}}")


def open_tree(dirfd: int, path: str | bytes | os.PathLike[str] | os.PathLike[bytes], flags: int) -> int:
    """open_tree(2), by syscall number: with OPEN_TREE_CLONE, a detached copy of the mount at
    ``path`` (relative to ``dirfd``; with AT_RECURSIVE, of every mount below it too); returns
    its descriptor."""
    ret = _raw("open_tree", dirfd, _path(path), flags)
    return _check(ret, "open_tree", abi.dirfd_name(dirfd), abi.quoted(path), abi.open_tree_flag_names(flags))


def move_mount(from_dirfd: int, from_path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
               to_dirfd: int, to_path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
               flags: int) -> None:
    """move_mount(2), by syscall number: attach the (detached) mount at ``from_path`` onto
    ``to_path``."""
    ret = _raw("move_mount", from_dirfd, _path(from_path), to_dirfd, _path(to_path), flags)
    _check(ret, "move_mount", abi.dirfd_name(from_dirfd), abi.quoted(from_path),
           abi.dirfd_name(to_dirfd), abi.quoted(to_path), hex(flags))


def openat2(dirfd: int, path: str | bytes | os.PathLike[str] | os.PathLike[bytes], flags: int,
            resolve: int, mode: int = 0) -> int:
    """openat2(2), by syscall number: open ``path`` relative to ``dirfd`` with ``flags`` (O_*),
    resolving it as ``resolve`` (RESOLVE_*) says; returns the descriptor."""
    import ctypes
    import struct
    how = ctypes.create_string_buffer(struct.pack("=3Q", flags, mode, resolve), abi.OPEN_HOW_SIZE_VER0)
    ret = _raw("openat2", dirfd, _path(path), how, abi.OPEN_HOW_SIZE_VER0)
    return _check(ret, "openat2", abi.dirfd_name(dirfd), abi.quoted(path),
                  f"{{flags={abi.open_flag_names(flags)}, mode={mode:#o}, "
                  f"resolve={abi.resolve_flag_names(resolve)}}}")


# --- UTS ----------------------------------------------------------------------------------------


def sethostname(name: str) -> None:
    """sethostname(2) (in the caller's UTS namespace)."""
    import ctypes
    raw = name.encode()
    _check(_libc().sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname", abi.quoted(name))


def setdomainname(name: str) -> None:
    """setdomainname(2) (in the caller's UTS namespace)."""
    import ctypes
    raw = name.encode()
    _check(_libc().setdomainname(raw, ctypes.c_size_t(len(raw))), "setdomainname", abi.quoted(name))


# --- process attributes -------------------------------------------------------------------------


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2); returns the call's result (the answer of the PR_GET_* options)."""
    import ctypes
    ctypes.set_errno(0)
    args = (ctypes.c_ulong(a) for a in (arg2, arg3, arg4, arg5))
    ret = _libc().prctl(ctypes.c_int(option), *args)
    return _check(ret, "prctl", abi.prctl_option_name(option), str(arg2), str(arg3), str(arg4),
                  str(arg5))


def _cap_buffers() -> tuple[_Buffer, _Buffer]:
    import ctypes
    import struct
    header = ctypes.create_string_buffer(struct.pack("=Ii", abi.LINUX_CAPABILITY_VERSION_3, 0), 8)
    data = ctypes.create_string_buffer(24)  # two struct __user_cap_data_struct
    return header, data


def capget() -> tuple[int, int, int]:
    """capget(2) for the calling thread: (effective, permitted, inheritable) as 64-bit masks."""
    import struct
    header, data = _cap_buffers()
    _check(_raw("capget", header, data), "capget", "v3", "pid 0")
    e0, p0, i0, e1, p1, i1 = struct.unpack("=6I", data.raw)
    return e0 | e1 << 32, p0 | p1 << 32, i0 | i1 << 32


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) for the calling thread, with the v3 (64-bit) header."""
    import ctypes
    import struct
    header, _ = _cap_buffers()
    lo, hi = 0xFFFFFFFF, 32
    masks = (effective, permitted, inheritable)
    data = ctypes.create_string_buffer(
        struct.pack("=6I", *(m & lo for m in masks), *(m >> hi & lo for m in masks)), 24
    )
    _check(_raw("capset", header, data), "capset", f"effective={effective:#x}",
           f"permitted={permitted:#x}", f"inheritable={inheritable:#x}")


def setresuid(ruid: int, euid: int, suid: int) -> None:
    """setresuid(2) through glibc, which applies it to every thread of the process."""
    import ctypes
    ret = _libc().setresuid(ctypes.c_uint(ruid), ctypes.c_uint(euid), ctypes.c_uint(suid))
    _check(ret, "setresuid", str(ruid), str(euid), str(suid))


def setresgid(rgid: int, egid: int, sgid: int) -> None:
    """setresgid(2) through glibc, which applies it to every thread of the process."""
    import ctypes
    ret = _libc().setresgid(ctypes.c_uint(rgid), ctypes.c_uint(egid), ctypes.c_uint(sgid))
    _check(ret, "setresgid", str(rgid), str(egid), str(sgid))


def setfsuid(uid: int) -> int:
    """setfsuid(2): the uid the calling thread's filesystem permission checks use; returns the
    previous one. The call reports no error, so the new value is read back (setfsuid(-1)
    changes nothing and answers the current one): SyscallError(EPERM) when the kernel kept the
    old one (the caller lacks CAP_SETUID, or ``uid`` is not mapped in its user namespace).
    Switching away from 0 clears the filesystem capabilities (DAC_OVERRIDE, ...) from the
    effective set; switching back restores them from the permitted set."""
    import ctypes
    lib = _libc()
    previous: int = lib.setfsuid(ctypes.c_uint(uid))
    current: int = lib.setfsuid(ctypes.c_uint(0xFFFFFFFF))
    if current != uid:
        raise abi.SyscallError("setfsuid", (str(uid),), _errno.EPERM)
    return previous


def setfsgid(gid: int) -> int:
    """setfsgid(2): the gid of the calling thread's filesystem permission checks; returns the
    previous one. Read back as for setfsuid: SyscallError(EPERM) when the kernel kept the old
    one."""
    import ctypes
    lib = _libc()
    previous: int = lib.setfsgid(ctypes.c_uint(gid))
    current: int = lib.setfsgid(ctypes.c_uint(0xFFFFFFFF))
    if current != gid:
        raise abi.SyscallError("setfsgid", (str(gid),), _errno.EPERM)
    return previous


def setgroups(groups: list[int] | tuple[int, ...]) -> None:
    """setgroups(2); ``setgroups([])`` clears the supplementary groups."""
    import ctypes
    arr = (ctypes.c_uint * max(len(groups), 1))(*groups)
    ret = _libc().setgroups(ctypes.c_size_t(len(groups)), arr)
    _check(ret, "setgroups", repr(list(groups)))


# --- seccomp ------------------------------------------------------------------------------------


def _sock_fprog(bpf: bytes) -> tuple[int, _Buffer, _Buffer]:
    """(instruction count, program buffer, struct sock_fprog buffer) for ``bpf``; the fprog
    points into the program, so both must stay alive while the kernel may read them."""
    import ctypes
    import struct
    count, rest = divmod(len(bpf), abi.BPF_INSN_SIZE)
    if rest or not 0 < count <= abi.BPF_MAXINSNS:
        raise ValueError(
            f"seccomp program of {len(bpf)} bytes is not 1..{abi.BPF_MAXINSNS} "
            f"instructions of {abi.BPF_INSN_SIZE} bytes"
        )
    program = ctypes.create_string_buffer(bytes(bpf), len(bpf))
    # struct sock_fprog { unsigned short len; /* 6 bytes padding */ struct sock_filter *filter; }
    fprog = ctypes.create_string_buffer(struct.pack("=H6xQ", count, ctypes.addressof(program)), 16)
    return count, program, fprog


def seccomp_set_mode_filter(bpf: bytes, flags: int = 0) -> int:
    """Install a classic-BPF seccomp program with one seccomp(2) call.

    ``bpf`` is the raw array of ``struct sock_filter`` (8 bytes each) as exported by libseccomp.
    The kernel requires no_new_privs or CAP_SYS_ADMIN. Returns the syscall's result (0, or a
    listener fd with SECCOMP_FILTER_FLAG_NEW_LISTENER).
    """
    count, _program, fprog = _sock_fprog(bpf)
    ret = _raw("seccomp", abi.SECCOMP_SET_MODE_FILTER, flags, fprog)
    return _check(ret, "seccomp", "SECCOMP_SET_MODE_FILTER", abi.seccomp_flag_names(flags),
                  f"<{count} instructions>")



def seccomp_get_action_avail(action: int) -> None:
    """seccomp(SECCOMP_GET_ACTION_AVAIL, 0, &action): returns when the kernel knows the return
    action ``action`` (a SECCOMP_RET_* value); SyscallError otherwise, with EOPNOTSUPP when it
    does not know it."""
    import ctypes
    value = ctypes.c_uint32(action)
    ret = _raw("seccomp", abi.SECCOMP_GET_ACTION_AVAIL, 0, ctypes.byref(value))
    _check(ret, "seccomp", "SECCOMP_GET_ACTION_AVAIL", "0", f"{action:#x}")


# --- prepared calls (seccomp trace mode) ----------------------------------------------------------
# Trace mode installs a filter that holds every syscall of the process until a supervisor answers
# it, and the supervisor can only answer once it holds the filter's listener fd, which the process
# itself must send it. Between the seccomp(2) that installs the filter and the sendmsg(2) that hands
# the listener over, the process must therefore make no other syscall: a held syscall there would
# wait for a supervisor that cannot answer yet. So both calls are prepared here in advance (number
# looked up, arguments converted, buffers allocated, the msghdr at a fixed address that the filter
# exempts) and calling them only enters libc's syscall(2): no lookup, no allocation that could grow
# the heap (brk, mmap), no other syscall. The caller (nucleus.effects.seccomp_handoff) does the
# rest: it pauses the garbage collector and blocks every signal around the window.


class PreparedSyscall:
    """One syscall(2) with its number and every argument converted in advance, so that making it
    allocates nothing and makes no other syscall. Integer arguments become C longs; ``keep``
    holds the buffers the arguments point to, alive as long as the call is."""

    __slots__ = ("name", "_fn", "_errno", "_args", "_keep")

    def __init__(self, name: str, *args: object, keep: tuple[object, ...] = ()) -> None:
        import ctypes

        self.name = name
        self._fn = _libc().syscall
        self._errno = ctypes.get_errno
        self._args = (
            ctypes.c_long(abi.syscall_number(name)),
            *(ctypes.c_long(a) if isinstance(a, int) else a for a in args),
        )
        self._keep = keep

    def __call__(self) -> tuple[int, int]:
        """Make the call: (result, errno), errno 0 unless the result is -1."""
        ret: int = self._fn(*self._args)  # restype c_long: an int
        return ret, (self._errno() if ret == -1 else 0)


def prepare_seccomp_filter(bpf: bytes, flags: int = 0) -> tuple[PreparedSyscall, int]:
    """``seccomp(SECCOMP_SET_MODE_FILTER, flags, <bpf>)`` prepared (see PreparedSyscall), and the
    program's instruction count. Calling it installs the program; with
    SECCOMP_FILTER_FLAG_NEW_LISTENER its result is the listener fd. It holds the program."""
    import ctypes
    count, program, fprog = _sock_fprog(bpf)
    call = PreparedSyscall(
        "seccomp",
        abi.SECCOMP_SET_MODE_FILTER,
        flags,
        ctypes.c_void_p(ctypes.addressof(fprog)),
        keep=(program, fprog),
    )
    return call, count


class PreparedSendFd:
    """``sendmsg(sock_fd, msg, MSG_NOSIGNAL)`` passing one fd (SCM_RIGHTS) with a short message
    (``payload``, one byte by default), prepared (see PreparedSyscall). ``address`` is where the
    msghdr lives, fixed for the object's life, so that a seccomp filter can exempt exactly this
    call by its first two arguments; :meth:`send` fills in the fd (a store into the buffer, no
    syscall) and makes it."""

    def __init__(self, sock_fd: int, payload: bytes = b"L") -> None:
        import ctypes
        import socket

        class Iovec(ctypes.Structure):
            _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

        class Msghdr(ctypes.Structure):
            _fields_ = [
                ("name", ctypes.c_void_p),
                ("namelen", ctypes.c_uint32),
                ("iov", ctypes.c_void_p),
                ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p),
                ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int),
            ]

        class Cmsg(ctypes.Structure):  # struct cmsghdr + one int, padded to CMSG_SPACE(4)
            _fields_ = [
                ("len", ctypes.c_size_t),
                ("level", ctypes.c_int),
                ("type", ctypes.c_int),
                ("fd", ctypes.c_int),
                ("pad", ctypes.c_int),
            ]

        self.sock_fd = sock_fd
        self._byte = ctypes.create_string_buffer(payload, len(payload))
        self._iov = Iovec(ctypes.addressof(self._byte), len(payload))
        self._cmsg = Cmsg(16 + 4, socket.SOL_SOCKET, socket.SCM_RIGHTS, -1, 0)
        self._msg = Msghdr(
            None, 0, ctypes.addressof(self._iov), 1,
            ctypes.addressof(self._cmsg), ctypes.sizeof(self._cmsg), 0,
        )
        self.address: int = ctypes.addressof(self._msg)
        self._send = PreparedSyscall(
            "sendmsg", sock_fd, ctypes.c_void_p(self.address), socket.MSG_NOSIGNAL
        )

    def send(self, fd: int) -> tuple[int, int]:
        """Send ``fd``: (result, errno) as PreparedSyscall returns them."""
        self._cmsg.fd = fd  # a store into the buffer: no syscall
        return self._send()


# --- signals ------------------------------------------------------------------------------------

_SIGSET_BYTES = 128  # glibc's sigset_t


def signalfd(signals: Iterable[int]) -> int:
    """signalfd(-1, {signals}, SFD_NONBLOCK|SFD_CLOEXEC) through glibc: a new non-blocking,
    close-on-exec fd to read ``signals`` from (the caller blocks them)."""
    import ctypes
    numbers = sorted(int(s) for s in signals)
    mask = bytearray(_SIGSET_BYTES)
    for signo in numbers:
        bit = signo - 1
        mask[bit // 8] |= 1 << (bit % 8)
    buf = ctypes.create_string_buffer(bytes(mask), _SIGSET_BYTES)
    fd: int = _libc().signalfd(-1, buf, abi.SFD_NONBLOCK | abi.SFD_CLOEXEC)  # int by default
    if fd < 0:
        raise abi.SyscallError(
            "signalfd", ("-1", repr(numbers), "SFD_NONBLOCK|SFD_CLOEXEC"), ctypes.get_errno()
        )
    return fd


# --- libseccomp (loaded on first use; pyseccomp is needed only to compile) ------------------------

_seccomp_lib: ctypes.CDLL | Literal[False] | None = None  # abi.LIBSECCOMP; False: cannot load
_seccomp_version: str | None = None
# seccomp_syscall_resolve_num_arch (restype c_void_p: an address or None); False when unavailable
_resolve_num: Callable[[int, int], int | None] | Literal[False] | None = None


def _libseccomp() -> ctypes.CDLL | None:
    global _seccomp_lib
    if _seccomp_lib is None:
        import ctypes

        try:
            _seccomp_lib = ctypes.CDLL(abi.LIBSECCOMP)
        except OSError:
            _seccomp_lib = False
    return _seccomp_lib or None


def libseccomp_version() -> str:
    """The version of the libseccomp.so.2 on this host ("2.5.4"), or "unavailable"; without
    importing pyseccomp."""
    global _seccomp_version
    if _seccomp_version is None:
        lib = _libseccomp()
        if lib is None:
            _seccomp_version = "unavailable"
        else:
            import ctypes

            class _Version(ctypes.Structure):
                _fields_ = [
                    ("major", ctypes.c_uint),
                    ("minor", ctypes.c_uint),
                    ("micro", ctypes.c_uint),
                ]

            lib.seccomp_version.restype = ctypes.POINTER(_Version)
            v = lib.seccomp_version().contents
            _seccomp_version = f"{v.major}.{v.minor}.{v.micro}"
    return _seccomp_version


def libseccomp_syscall_name(nr: int, audit_arch: int) -> str | None:
    """libseccomp's name of syscall ``nr`` on the architecture ``audit_arch`` (an AUDIT_ARCH_*
    value, :attr:`Arch.audit_arch`); None when libseccomp does not know the number or is not
    installed (or too old to have ``seccomp_syscall_resolve_num_arch``)."""
    global _resolve_num
    import ctypes
    if _resolve_num is None:
        lib = _libseccomp()
        try:
            fn = None if lib is None else lib.seccomp_syscall_resolve_num_arch
        except AttributeError:
            fn = None
        if fn is None:
            _resolve_num = False
        else:
            fn.restype = ctypes.c_void_p
            fn.argtypes = [ctypes.c_uint32, ctypes.c_int]
            _libc().free.argtypes = [ctypes.c_void_p]
            _resolve_num = fn
    if _resolve_num is False:
        return None
    ptr = _resolve_num(audit_arch, nr)
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr).decode("ascii")
    finally:
        _libc().free(ptr)  # the name is the caller's to free


# --- Landlock -----------------------------------------------------------------------------------


def landlock_create_ruleset(attr: bytes | None, size: int, flags: int = 0) -> int:
    """landlock_create_ruleset(2). With ``attr=None, size=0,
    flags=LANDLOCK_CREATE_RULESET_VERSION`` it returns the ABI version; otherwise a ruleset fd."""
    import ctypes
    buf = None if attr is None else ctypes.create_string_buffer(attr, len(attr))
    ret = _raw("landlock_create_ruleset", buf, size, flags)
    shown = "NULL" if attr is None else f"0x{attr.hex()}"
    return _check(ret, "landlock_create_ruleset", shown, str(size), str(flags))


def landlock_add_rule(ruleset_fd: int, rule_type: int, attr: bytes, flags: int = 0) -> None:
    """landlock_add_rule(2); ``attr`` is the packed rule struct."""
    import ctypes
    buf = ctypes.create_string_buffer(attr, len(attr))
    ret = _raw("landlock_add_rule", ruleset_fd, rule_type, buf, flags)
    _check(ret, "landlock_add_rule", str(ruleset_fd), str(rule_type), f"0x{attr.hex()}", str(flags))


def landlock_restrict_self(ruleset_fd: int, flags: int = 0) -> None:
    """landlock_restrict_self(2): enforce the ruleset on the calling thread (and its future
    children). Requires no_new_privs or CAP_SYS_ADMIN."""
    ret = _raw("landlock_restrict_self", ruleset_fd, flags)
    _check(ret, "landlock_restrict_self", str(ruleset_fd), str(flags))


# --- file descriptors ---------------------------------------------------------------------------


def close_range(first: int, last: int = abi.CLOSE_RANGE_MAX, flags: int = 0) -> None:
    """close_range(2). Where the kernel lacks it (ENOSYS before 5.9, EINVAL for
    CLOSE_RANGE_CLOEXEC before 5.11) the same effect is produced from /proc/self/fd."""
    ret = _raw("close_range", first, last, flags)
    if ret == 0:
        return
    import ctypes
    err = ctypes.get_errno()
    if err not in (_errno.ENOSYS, _errno.EINVAL) or flags & abi.CLOSE_RANGE_UNSHARE:
        raise abi.SyscallError(
            "close_range", (str(first), str(last), abi.close_range_flag_names(flags)), err
        )
    _close_range_fallback(first, last, flags)


def _close_range_fallback(first: int, last: int, flags: int) -> None:
    try:
        names = os.listdir("/proc/self/fd")
    except OSError as e:
        raise abi.SyscallError("listdir", ("'/proc/self/fd'",), e.errno or _errno.EIO) from e
    fds = sorted(int(n) for n in names)
    for fd in fds:
        if fd < first or fd > last:
            continue
        try:
            if flags & abi.CLOSE_RANGE_CLOEXEC:
                os.set_inheritable(fd, False)
            else:
                os.close(fd)
        except OSError as e:
            if e.errno != _errno.EBADF:  # the listing's own descriptor, already closed
                raise abi.SyscallError("close", (str(fd),), e.errno or _errno.EIO) from e


# --- calls made through os ----------------------------------------------------------------------
# Here although os has them: they need privileges or change the calling process, so an effect's
# every such call goes through this seam. Ordinary file reads and writes stay in the effects.


def _os(call: str, args: tuple[str, ...], fn: Callable[..., _T], *params: object) -> _T:
    try:
        return fn(*params)
    except OSError as e:
        raise abi.SyscallError(call, args, e.errno or _errno.EIO) from None


_Path = str | os.PathLike[str]


def chown(path: _Path, uid: int, gid: int) -> None:
    """chown(2): the owner of ``path`` (a symlink there is followed)."""
    _os("chown", (abi.quoted(path), str(uid), str(gid)), os.chown, path, uid, gid)


def lchown(path: _Path, uid: int, gid: int) -> None:
    """lchown(2): the owner of ``path`` itself, a symlink included."""
    _os("lchown", (abi.quoted(path), str(uid), str(gid)), os.lchown, path, uid, gid)


def chroot(path: _Path) -> None:
    """chroot(2): the calling process's root directory."""
    _os("chroot", (abi.quoted(path),), os.chroot, path)


def chdir(path: _Path) -> None:
    """chdir(2): the calling process's working directory."""
    _os("chdir", (abi.quoted(path),), os.chdir, path)


def statvfs(path: _Path) -> os.statvfs_result:
    """statvfs(3): among others the flags (``f_flag``, ST_*) of the mount holding ``path``."""
    return _os("statvfs", (abi.quoted(path),), os.statvfs, path)


def readlink(path: _Path) -> str:
    """readlink(2): e.g. a namespace's identity, ``mnt:[4026531841]``, from /proc/<pid>/ns."""
    return os.fsdecode(_os("readlink", (abi.quoted(path),), os.readlink, path))


def open(path: _Path, flags: int, mode: int = 0o777) -> int:
    """open(2): a descriptor for a call of this module (a namespace file for setns)."""
    return _os("open", (abi.quoted(path), abi.open_flag_names(flags)), os.open, path, flags, mode)


def close(fd: int) -> None:
    """close(2) of a descriptor that a call of this module returned (open, a Landlock ruleset)."""
    _os("close", (str(fd),), os.close, fd)


def ioctl(fd: int, request: int, arg: bytes) -> bytes:
    """ioctl(2) with an in/out buffer (a struct ifreq); returns the buffer as the kernel left it."""
    import fcntl
    shown = (str(fd), abi.ioctl_request_name(request), f"0x{arg.hex()}")
    return cast(bytes, _os("ioctl", shown, fcntl.ioctl, fd, request, arg))  # a bytes arg: bytes


def ioctl_value(fd: int, request: int) -> int:
    """ioctl(2) without an argument; returns the call's result (NS_GET_NSTYPE's namespace type)."""
    import fcntl
    return _os("ioctl", (str(fd), abi.ioctl_request_name(request)), fcntl.ioctl, fd, request, 0)


def getrlimit(res: int) -> tuple[int, int]:
    """getrlimit(2): (soft, hard) of the calling process."""
    import resource
    return _os("getrlimit", (abi.rlimit_name(res),), resource.getrlimit, res)


def setrlimit(res: int, soft: int, hard: int) -> None:
    """setrlimit(2) of the calling process; lowering a hard limit cannot be undone."""
    import resource
    shown = (abi.rlimit_name(res), f"{{{soft}, {hard}}}")
    try:
        _os("setrlimit", shown, resource.setrlimit, res, (soft, hard))
    except ValueError:  # soft above hard, or a value the C type cannot hold
        raise abi.SyscallError("setrlimit", shown, _errno.EINVAL) from None


# --- the process's own title ----------------------------------------------------------------------


def set_process_title(title: str) -> None:
    """Overwrite the calling process's argument strings, where /proc/<pid>/cmdline reads them
    (from ``arg_start`` to ``arg_end`` of /proc/self/stat), with ``title`` and a NUL, the rest
    with NULs and a last byte that is not one: the kernel then shows the title alone, as
    setproctitle(3) does, and nothing of the original's length. The argument strings are never
    read again (Python keeps copies of them)."""
    import ctypes
    stat_path = "/proc/self/stat"
    fd = _os("open", (abi.quoted(stat_path), "O_RDONLY"), os.open, stat_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = _os("read", (abi.quoted(stat_path),), os.read, fd, 4096)
    finally:
        os.close(fd)
    fields = data[data.rindex(b")") + 2:].split()
    start, end = int(fields[abi.STAT_ARG_START - 3]), int(fields[abi.STAT_ARG_END - 3])
    raw = title.encode()
    if not start or end - start < 2:
        raise abi.SyscallError("set_process_title", (abi.quoted(title),), _errno.EINVAL)
    raw = raw[:end - start - 2]
    area = raw + b"\0" * (end - start - len(raw) - 1) + b"."
    ctypes.memmove(start, area, len(area))


def set_process_name(name: str) -> None:
    """prctl(PR_SET_NAME, name): the calling thread's name (/proc/<pid>/comm), at most 15 bytes."""
    import ctypes

    from nucleus import linux
    buf = ctypes.create_string_buffer(name.encode()[:abi.TASK_COMM_LEN - 1], abi.TASK_COMM_LEN)
    ret = _libc().prctl(ctypes.c_int(linux.PR_SET_NAME), buf, ctypes.c_ulong(0), ctypes.c_ulong(0),
                        ctypes.c_ulong(0))
    _check(ret, "prctl", "PR_SET_NAME", abi.quoted(name))
