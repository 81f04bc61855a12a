"""Raw Linux syscalls for x86_64: the one ctypes module of nucleus.

CPython 3.11 has no ``os.unshare``, ``os.setns``, ``mount``, ``pivot_root``, capabilities,
seccomp or Landlock calls, so every one of them goes through this module. Each function performs
exactly one call and raises :class:`SyscallError` when it fails; the message names the call, its
arguments (flags spelled as names) and the errno, e.g.::

    mount('tmpfs', '/x', 'tmpfs', MS_NOSUID|MS_NODEV, 'size=1g') failed: EPERM (Operation not permitted)

Importing the module is cheap: ctypes and libc are loaded on the first call, libc by its soname.
"""

from __future__ import annotations

import errno as _errno
import os

# --- syscall numbers (x86_64) -------------------------------------------------------------------
# Only the calls glibc 2.36 has no wrapper for, or whose wrapper does more than the syscall.
SYS_capget = 125
SYS_capset = 126
SYS_pivot_root = 155
SYS_seccomp = 317
SYS_close_range = 436
SYS_landlock_create_ruleset = 444
SYS_landlock_add_rule = 445
SYS_landlock_restrict_self = 446

# --- namespaces (clone/unshare/setns flags) -----------------------------------------------------
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEW_ALL = (
    CLONE_NEWTIME
    | CLONE_NEWNS
    | CLONE_NEWCGROUP
    | CLONE_NEWUTS
    | CLONE_NEWIPC
    | CLONE_NEWUSER
    | CLONE_NEWPID
    | CLONE_NEWNET
)

# --- mount(2) flags -----------------------------------------------------------------------------
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_POSIXACL = 1 << 16
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

# umount2(2) flags
MNT_FORCE = 1
MNT_DETACH = 2
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8

# --- prctl(2) options ---------------------------------------------------------------------------
PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_NAME = 15
PR_GET_NAME = 16
PR_GET_SECCOMP = 21
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_GET_SECUREBITS = 27
PR_SET_SECUREBITS = 28
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_IS_SET = 1
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_LOWER = 3
PR_CAP_AMBIENT_CLEAR_ALL = 4

# --- capget/capset ------------------------------------------------------------------------------
LINUX_CAPABILITY_VERSION_3 = 0x20080522

# --- seccomp(2) ---------------------------------------------------------------------------------
SECCOMP_SET_MODE_STRICT = 0
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_GET_ACTION_AVAIL = 2
SECCOMP_GET_NOTIF_SIZES = 3
SECCOMP_FILTER_FLAG_TSYNC = 1 << 0
SECCOMP_FILTER_FLAG_LOG = 1 << 1
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 1 << 2
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_FILTER_FLAG_TSYNC_ESRCH = 1 << 4
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5
BPF_MAXINSNS = 4096
BPF_INSN_SIZE = 8  # sizeof(struct sock_filter)

# --- Landlock syscalls --------------------------------------------------------------------------
LANDLOCK_CREATE_RULESET_VERSION = 1 << 0
LANDLOCK_CREATE_RULESET_ERRATA = 1 << 1
LANDLOCK_RULE_PATH_BENEATH = 1
LANDLOCK_RULE_NET_PORT = 2
LANDLOCK_RESTRICT_SELF_LOG_SAME_EXEC_OFF = 1 << 0  # ABI 7
LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON = 1 << 1  # ABI 7
LANDLOCK_RESTRICT_SELF_LOG_SUBDOMAINS_OFF = 1 << 2  # ABI 7

# --- close_range(2) -----------------------------------------------------------------------------
CLOSE_RANGE_UNSHARE = 1 << 1
CLOSE_RANGE_CLOEXEC = 1 << 2
CLOSE_RANGE_MAX = 0xFFFFFFFF  # ~0U: "to the last descriptor"

_CLONE_NAMES = (
    ("CLONE_NEWTIME", CLONE_NEWTIME),
    ("CLONE_NEWNS", CLONE_NEWNS),
    ("CLONE_NEWCGROUP", CLONE_NEWCGROUP),
    ("CLONE_NEWUTS", CLONE_NEWUTS),
    ("CLONE_NEWIPC", CLONE_NEWIPC),
    ("CLONE_NEWUSER", CLONE_NEWUSER),
    ("CLONE_NEWPID", CLONE_NEWPID),
    ("CLONE_NEWNET", CLONE_NEWNET),
)

_MS_NAMES = (
    ("MS_RDONLY", MS_RDONLY),
    ("MS_NOSUID", MS_NOSUID),
    ("MS_NODEV", MS_NODEV),
    ("MS_NOEXEC", MS_NOEXEC),
    ("MS_SYNCHRONOUS", MS_SYNCHRONOUS),
    ("MS_REMOUNT", MS_REMOUNT),
    ("MS_MANDLOCK", MS_MANDLOCK),
    ("MS_DIRSYNC", MS_DIRSYNC),
    ("MS_NOSYMFOLLOW", MS_NOSYMFOLLOW),
    ("MS_NOATIME", MS_NOATIME),
    ("MS_NODIRATIME", MS_NODIRATIME),
    ("MS_BIND", MS_BIND),
    ("MS_MOVE", MS_MOVE),
    ("MS_REC", MS_REC),
    ("MS_SILENT", MS_SILENT),
    ("MS_POSIXACL", MS_POSIXACL),
    ("MS_UNBINDABLE", MS_UNBINDABLE),
    ("MS_PRIVATE", MS_PRIVATE),
    ("MS_SLAVE", MS_SLAVE),
    ("MS_SHARED", MS_SHARED),
    ("MS_RELATIME", MS_RELATIME),
    ("MS_STRICTATIME", MS_STRICTATIME),
    ("MS_LAZYTIME", MS_LAZYTIME),
)

_MNT_NAMES = (
    ("MNT_FORCE", MNT_FORCE),
    ("MNT_DETACH", MNT_DETACH),
    ("MNT_EXPIRE", MNT_EXPIRE),
    ("UMOUNT_NOFOLLOW", UMOUNT_NOFOLLOW),
)

_SECCOMP_FLAG_NAMES = (
    ("SECCOMP_FILTER_FLAG_TSYNC", SECCOMP_FILTER_FLAG_TSYNC),
    ("SECCOMP_FILTER_FLAG_LOG", SECCOMP_FILTER_FLAG_LOG),
    ("SECCOMP_FILTER_FLAG_SPEC_ALLOW", SECCOMP_FILTER_FLAG_SPEC_ALLOW),
    ("SECCOMP_FILTER_FLAG_NEW_LISTENER", SECCOMP_FILTER_FLAG_NEW_LISTENER),
    ("SECCOMP_FILTER_FLAG_TSYNC_ESRCH", SECCOMP_FILTER_FLAG_TSYNC_ESRCH),
    ("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV),
)

_CLOSE_RANGE_NAMES = (
    ("CLOSE_RANGE_UNSHARE", CLOSE_RANGE_UNSHARE),
    ("CLOSE_RANGE_CLOEXEC", CLOSE_RANGE_CLOEXEC),
)

_PR_NAMES = {
    PR_SET_PDEATHSIG: "PR_SET_PDEATHSIG",
    PR_GET_PDEATHSIG: "PR_GET_PDEATHSIG",
    PR_GET_DUMPABLE: "PR_GET_DUMPABLE",
    PR_SET_DUMPABLE: "PR_SET_DUMPABLE",
    PR_SET_NAME: "PR_SET_NAME",
    PR_GET_NAME: "PR_GET_NAME",
    PR_GET_SECCOMP: "PR_GET_SECCOMP",
    PR_CAPBSET_READ: "PR_CAPBSET_READ",
    PR_CAPBSET_DROP: "PR_CAPBSET_DROP",
    PR_GET_SECUREBITS: "PR_GET_SECUREBITS",
    PR_SET_SECUREBITS: "PR_SET_SECUREBITS",
    PR_SET_CHILD_SUBREAPER: "PR_SET_CHILD_SUBREAPER",
    PR_GET_CHILD_SUBREAPER: "PR_GET_CHILD_SUBREAPER",
    PR_SET_NO_NEW_PRIVS: "PR_SET_NO_NEW_PRIVS",
    PR_GET_NO_NEW_PRIVS: "PR_GET_NO_NEW_PRIVS",
    PR_CAP_AMBIENT: "PR_CAP_AMBIENT",
}


def _flag_names(flags: int, table: tuple[tuple[str, int], ...]) -> str:
    if flags == 0:
        return "0"
    names = []
    rest = flags
    for name, bit in table:
        if flags & bit:
            names.append(name)
            rest &= ~bit
    if rest:
        names.append(hex(rest))
    return "|".join(names)


def mount_flag_names(flags: int) -> str:
    """Render mount(2) flags for a message: ``MS_NOSUID|MS_NODEV``; unknown bits in hex."""
    return _flag_names(flags, _MS_NAMES)


def clone_flag_names(flags: int) -> str:
    """Render CLONE_NEW* flags for a message: ``CLONE_NEWNS|CLONE_NEWPID``."""
    return _flag_names(flags, _CLONE_NAMES)


def umount_flag_names(flags: int) -> str:
    return _flag_names(flags, _MNT_NAMES)


class SyscallError(OSError):
    """A syscall failed. ``errno`` and ``strerror`` are set as for OSError; ``call`` is the
    syscall's name and ``call_args`` the rendered arguments, so the message reads like the call::

        unshare(CLONE_NEWUSER) failed: EPERM (Operation not permitted)
    """

    def __init__(self, call: str, call_args: tuple[str, ...], err: int) -> None:
        super().__init__(err, os.strerror(err))
        self.call = call
        self.call_args = tuple(call_args)

    @property
    def errno_name(self) -> str:
        return _errno.errorcode.get(self.errno, f"errno {self.errno}")

    def __str__(self) -> str:
        return (
            f"{self.call}({', '.join(self.call_args)}) failed: {self.errno_name} ({self.strerror})"
        )

    def __reduce__(self):  # keeps the message when sent over a pipe with pickle
        return (type(self), (self.call, self.call_args, self.errno))


def _q(value: object) -> str:
    """An argument as it appears in a message: paths and strings quoted, None as NULL."""
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        value = os.fsdecode(value)
    return repr(value) if isinstance(value, str) else str(value)


# --- libc, loaded on first use ------------------------------------------------------------------

_lib = None


def _libc():
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

        raise SyscallError(call, args, ctypes.get_errno())
    return ret


def _path(p: str | bytes | os.PathLike | None) -> bytes | None:
    return None if p is None else os.fsencode(p)


def _raw(nr: int, *args) -> int:
    """syscall(nr, args...) with every integer passed as a full 64-bit long."""
    import ctypes

    conv = []
    for a in args:
        if a is None:
            conv.append(ctypes.c_void_p(None))
        elif isinstance(a, int):
            # Interpret as unsigned 64-bit so values >= 2**63 keep their bits.
            conv.append(ctypes.c_ulong(a & 0xFFFFFFFFFFFFFFFF))
        else:
            conv.append(a)
    ctypes.set_errno(0)
    return _libc().syscall(ctypes.c_long(nr), *conv)


# --- namespaces ---------------------------------------------------------------------------------


def unshare(flags: int) -> None:
    """unshare(2): move the calling process into new namespaces."""
    import ctypes

    _check(_libc().unshare(ctypes.c_int(flags)), "unshare", clone_flag_names(flags))


def setns(fd: int, nstype: int = 0) -> None:
    """setns(2): join the namespace referred to by ``fd``."""
    import ctypes

    _check(
        _libc().setns(ctypes.c_int(fd), ctypes.c_int(nstype)),
        "setns",
        str(fd),
        clone_flag_names(nstype),
    )


# --- mounts -------------------------------------------------------------------------------------


def mount(
    source: str | bytes | None,
    target: str | bytes | os.PathLike,
    fstype: str | bytes | None,
    flags: int,
    data: str | bytes | None = None,
) -> None:
    """mount(2)."""
    import ctypes

    ret = _libc().mount(
        _path(source),
        _path(target),
        _path(fstype),
        ctypes.c_ulong(flags),
        None if data is None else os.fsencode(data),
    )
    _check(
        ret,
        "mount",
        _q(source),
        _q(os.fsdecode(target)),
        _q(fstype),
        mount_flag_names(flags),
        _q(data),
    )


def umount2(target: str | bytes | os.PathLike, flags: int = 0) -> None:
    """umount2(2)."""
    import ctypes

    ret = _libc().umount2(_path(target), ctypes.c_int(flags))
    _check(ret, "umount2", _q(os.fsdecode(target)), umount_flag_names(flags))


def pivot_root(new_root: str | bytes | os.PathLike, put_old: str | bytes | os.PathLike) -> None:
    """pivot_root(2), by syscall number: glibc has no wrapper."""
    ret = _raw(SYS_pivot_root, _path(new_root), _path(put_old))
    _check(ret, "pivot_root", _q(os.fsdecode(new_root)), _q(os.fsdecode(put_old)))


# --- UTS ----------------------------------------------------------------------------------------


def sethostname(name: str) -> None:
    """sethostname(2) (in the caller's UTS namespace)."""
    import ctypes

    raw = name.encode()
    _check(_libc().sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname", _q(name))


def setdomainname(name: str) -> None:
    """setdomainname(2) (in the caller's UTS namespace)."""
    import ctypes

    raw = name.encode()
    _check(_libc().setdomainname(raw, ctypes.c_size_t(len(raw))), "setdomainname", _q(name))


# --- process attributes -------------------------------------------------------------------------


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2); returns the call's result (the answer of the PR_GET_* options)."""
    import ctypes

    ctypes.set_errno(0)
    ret = _libc().prctl(
        ctypes.c_int(option),
        ctypes.c_ulong(arg2),
        ctypes.c_ulong(arg3),
        ctypes.c_ulong(arg4),
        ctypes.c_ulong(arg5),
    )
    return _check(
        ret,
        "prctl",
        _PR_NAMES.get(option, str(option)),
        str(arg2),
        str(arg3),
        str(arg4),
        str(arg5),
    )


def _cap_buffers():
    import ctypes
    import struct

    header = ctypes.create_string_buffer(struct.pack("=Ii", LINUX_CAPABILITY_VERSION_3, 0), 8)
    data = ctypes.create_string_buffer(24)  # two struct __user_cap_data_struct
    return header, data


def capget() -> tuple[int, int, int]:
    """capget(2) for the calling thread: (effective, permitted, inheritable) as 64-bit masks."""
    import struct

    header, data = _cap_buffers()
    _check(_raw(SYS_capget, header, data), "capget", "v3", "pid 0")
    e0, p0, i0, e1, p1, i1 = struct.unpack("=6I", data.raw)
    return e0 | e1 << 32, p0 | p1 << 32, i0 | i1 << 32


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) for the calling thread, with the v3 (64-bit) header."""
    import ctypes
    import struct

    header, _ = _cap_buffers()
    lo, hi = 0xFFFFFFFF, 32
    data = ctypes.create_string_buffer(
        struct.pack(
            "=6I",
            effective & lo,
            permitted & lo,
            inheritable & lo,
            effective >> hi & lo,
            permitted >> hi & lo,
            inheritable >> hi & lo,
        ),
        24,
    )
    _check(
        _raw(SYS_capset, header, data),
        "capset",
        f"effective={effective:#x}",
        f"permitted={permitted:#x}",
        f"inheritable={inheritable:#x}",
    )


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


def setgroups(groups: list[int] | tuple[int, ...]) -> None:
    """setgroups(2); ``setgroups([])`` clears the supplementary groups."""
    import ctypes

    arr = (ctypes.c_uint * max(len(groups), 1))(*groups)
    ret = _libc().setgroups(ctypes.c_size_t(len(groups)), arr)
    _check(ret, "setgroups", repr(list(groups)))


# --- seccomp ------------------------------------------------------------------------------------


def seccomp_set_mode_filter(bpf: bytes, flags: int = 0) -> int:
    """Install a classic-BPF seccomp program with one seccomp(2) call.

    ``bpf`` is the raw array of ``struct sock_filter`` (8 bytes each) as exported by libseccomp.
    The kernel requires no_new_privs or CAP_SYS_ADMIN. Returns the syscall's result (0, or a
    listener fd with SECCOMP_FILTER_FLAG_NEW_LISTENER).
    """
    import ctypes
    import struct

    count, rest = divmod(len(bpf), BPF_INSN_SIZE)
    if rest or not 0 < count <= BPF_MAXINSNS:
        raise ValueError(
            f"seccomp program of {len(bpf)} bytes is not 1..{BPF_MAXINSNS} "
            f"instructions of {BPF_INSN_SIZE} bytes"
        )
    program = ctypes.create_string_buffer(bytes(bpf), len(bpf))
    # struct sock_fprog { unsigned short len; /* 6 bytes padding */ struct sock_filter *filter; }
    fprog = ctypes.create_string_buffer(struct.pack("=H6xQ", count, ctypes.addressof(program)), 16)
    ret = _raw(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, fprog)
    return _check(
        ret,
        "seccomp",
        "SECCOMP_SET_MODE_FILTER",
        _flag_names(flags, _SECCOMP_FLAG_NAMES),
        f"<{count} instructions>",
    )


# --- Landlock -----------------------------------------------------------------------------------


def landlock_create_ruleset(attr: bytes | None, size: int, flags: int = 0) -> int:
    """landlock_create_ruleset(2). With ``attr=None, size=0,
    flags=LANDLOCK_CREATE_RULESET_VERSION`` it returns the ABI version; otherwise a ruleset fd."""
    import ctypes

    buf = None if attr is None else ctypes.create_string_buffer(attr, len(attr))
    ret = _raw(SYS_landlock_create_ruleset, buf, size, flags)
    shown = "NULL" if attr is None else f"0x{attr.hex()}"
    return _check(ret, "landlock_create_ruleset", shown, str(size), str(flags))


def landlock_add_rule(ruleset_fd: int, rule_type: int, attr: bytes, flags: int = 0) -> None:
    """landlock_add_rule(2); ``attr`` is the packed rule struct."""
    import ctypes

    buf = ctypes.create_string_buffer(attr, len(attr))
    ret = _raw(SYS_landlock_add_rule, ruleset_fd, rule_type, buf, flags)
    _check(ret, "landlock_add_rule", str(ruleset_fd), str(rule_type), f"0x{attr.hex()}", str(flags))


def landlock_restrict_self(ruleset_fd: int, flags: int = 0) -> None:
    """landlock_restrict_self(2): enforce the ruleset on the calling thread (and its future
    children). Requires no_new_privs or CAP_SYS_ADMIN."""
    ret = _raw(SYS_landlock_restrict_self, ruleset_fd, flags)
    _check(ret, "landlock_restrict_self", str(ruleset_fd), str(flags))


# --- file descriptors ---------------------------------------------------------------------------


def close_range(first: int, last: int = CLOSE_RANGE_MAX, flags: int = 0) -> None:
    """close_range(2). Where the kernel lacks it (ENOSYS before 5.9, EINVAL for
    CLOSE_RANGE_CLOEXEC before 5.11) the same effect is produced from /proc/self/fd."""
    ret = _raw(SYS_close_range, first, last, flags)
    if ret == 0:
        return
    import ctypes

    err = ctypes.get_errno()
    if err not in (_errno.ENOSYS, _errno.EINVAL) or flags & CLOSE_RANGE_UNSHARE:
        raise SyscallError(
            "close_range", (str(first), str(last), _flag_names(flags, _CLOSE_RANGE_NAMES)), err
        )
    _close_range_fallback(first, last, flags)


def _close_range_fallback(first: int, last: int, flags: int) -> None:
    try:
        names = os.listdir("/proc/self/fd")
    except OSError as e:
        raise SyscallError("listdir", ("'/proc/self/fd'",), e.errno or _errno.EIO) from e
    fds = sorted(int(n) for n in names)
    for fd in fds:
        if fd < first or fd > last:
            continue
        try:
            if flags & CLOSE_RANGE_CLOEXEC:
                os.set_inheritable(fd, False)
            else:
                os.close(fd)
        except OSError as e:
            if e.errno != _errno.EBADF:  # the listing's own descriptor, already closed
                raise SyscallError("close", (str(fd),), e.errno or _errno.EIO) from e
