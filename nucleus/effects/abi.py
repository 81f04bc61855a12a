"""The kernel's ABI as nucleus uses it: pure data, no calls.

Everything :mod:`nucleus.effects.libc` needs to know about a call without making it lives here:
the per-architecture syscall tables (:data:`ARCHITECTURES`, :func:`architecture`), the flag and
option constants of the calls (MS_*, MNT_*, SECCOMP_*, LANDLOCK_*, CLOSE_RANGE_*; CLONE_* and PR_*
are nucleus.linux's, shared with the configuration,
...), the rendering of flags as names for messages, and the errors (:class:`SyscallError`,
:class:`UnsupportedArchitecture`). Effects take their constants from here and make their calls
through ``libc``; a test can therefore replace every call of ``libc`` (tests/fakes/libc.py) and
still build the exact arguments the kernel would receive. This module imports no ctypes and
loads no library.
"""

from __future__ import annotations

import errno as _errno
import os
import resource
from collections.abc import Mapping

from nucleus import linux
from nucleus.errors import HostUnsupported

# libseccomp, by soname; a distribution that has no library path to search (NixOS) patches in
# its store path.
LIBSECCOMP = "libseccomp.so.2"

# --- architectures ------------------------------------------------------------------------------


class Arch:
    """One architecture's facts: its ``uname -m`` name, the AUDIT_ARCH_* value the kernel puts
    in ``struct seccomp_data.arch``, libseccomp's token for it, the x32 syscall bit (x86_64 only:
    an x32 call is a native number with that bit set) and the syscall numbers nucleus uses."""

    __slots__ = ("machine", "audit_arch", "seccomp_arch", "x32_syscall_bit", "syscalls")

    def __init__(
        self,
        machine: str,
        audit_arch: int,
        seccomp_arch: str,
        x32_syscall_bit: int | None,
        syscalls: Mapping[str, int],
    ) -> None:
        self.machine = machine
        self.audit_arch = audit_arch
        self.seccomp_arch = seccomp_arch
        self.x32_syscall_bit = x32_syscall_bit
        self.syscalls = syscalls

    def __repr__(self) -> str:
        return f"Arch({self.machine!r}, audit_arch={self.audit_arch:#x}, {self.seccomp_arch!r})"


# Only the calls glibc 2.36 has no wrapper for, whose wrapper does more than the syscall, or that
# are made by number for a reason of their own (sendmsg: the trace handoff, see PreparedSendFd;
# mount_setattr: glibc wraps it only from 2.36 on, and other libcs not at all).
# aarch64 uses the asm-generic numbers; from 424 on every architecture shares one numbering.
# tests/effects/test_syscall_tables.py checks each number and AUDIT_ARCH value with libseccomp.
ARCHITECTURES: dict[str, Arch] = {
    "x86_64": Arch(
        "x86_64",
        audit_arch=0xC000003E,  # EM_X86_64 (62) | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
        seccomp_arch="SCMP_ARCH_X86_64",
        x32_syscall_bit=0x40000000,  # __X32_SYSCALL_BIT
        syscalls={
            "sendmsg": 46,
            "capget": 125,
            "capset": 126,
            "pivot_root": 155,
            "seccomp": 317,
            "open_tree": 428,
            "move_mount": 429,
            "close_range": 436,
            "openat2": 437,
            "mount_setattr": 442,
            "landlock_create_ruleset": 444,
            "landlock_add_rule": 445,
            "landlock_restrict_self": 446,
        },
    ),
    "aarch64": Arch(
        "aarch64",
        audit_arch=0xC00000B7,  # EM_AARCH64 (183) | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
        seccomp_arch="SCMP_ARCH_AARCH64",
        x32_syscall_bit=None,
        syscalls={
            "pivot_root": 41,
            "capget": 90,
            "capset": 91,
            "sendmsg": 211,
            "seccomp": 277,
            "open_tree": 428,
            "move_mount": 429,
            "close_range": 436,
            "openat2": 437,
            "mount_setattr": 442,
            "landlock_create_ruleset": 444,
            "landlock_add_rule": 445,
            "landlock_restrict_self": 446,
        },
    ),
}

MACHINE = os.uname().machine  # this machine's architecture, as ``uname -m`` names it


class UnsupportedArchitecture(HostUnsupported):
    """This machine's architecture has no syscall table here, so nucleus makes no raw syscall
    on it (a number from another architecture's table would be a different call)."""

    def __init__(self, machine: str) -> None:
        supported = " and ".join(sorted(ARCHITECTURES))
        super().__init__(
            f"architecture {machine!r} is not supported: nucleus knows the syscall numbers of "
            f"{supported} only",
            hint=f"run nucleus on an {' or '.join(sorted(ARCHITECTURES))} machine",
        )
        self.machine = machine

    def __reduce__(self) -> tuple[type[UnsupportedArchitecture], tuple[str]]:
        return (type(self), (self.machine,))  # keeps the message when sent over a pipe


def architecture(machine: str | None = None) -> Arch:
    """The table of ``machine`` (default: this machine's, :data:`MACHINE`); raises
    UnsupportedArchitecture when there is none."""
    name = MACHINE if machine is None else machine
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise UnsupportedArchitecture(name) from None


def check_architecture() -> Arch:
    """This machine's table, or UnsupportedArchitecture: for the run path to call before it
    does anything, so an unsupported machine is refused up front rather than at the first raw
    syscall."""
    return architecture()


def syscall_number(name: str, machine: str | None = None) -> int:
    """The number of syscall ``name`` on ``machine`` (default: this one), from its table."""
    return architecture(machine).syscalls[name]


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

# mount_setattr(2): the *at flags it takes, and struct mount_attr's attributes
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_NO_AUTOMOUNT = 0x800
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_IDMAP = 0x100000
MOUNT_ATTR_NOSYMFOLLOW = 0x200000
MOUNT_ATTR_SIZE_VER0 = 32  # sizeof(struct mount_attr): four __u64

# open_tree(2) and move_mount(2): a detached copy of a mount tree, and attaching one
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4

# openat2(2): struct open_how's resolve flags
RESOLVE_NO_XDEV = 0x1
RESOLVE_NO_MAGICLINKS = 0x2
RESOLVE_NO_SYMLINKS = 0x4
RESOLVE_BENEATH = 0x8
RESOLVE_IN_ROOT = 0x10
OPEN_HOW_SIZE_VER0 = 24  # sizeof(struct open_how): three __u64

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

# --- signalfd(2) --------------------------------------------------------------------------------
SFD_NONBLOCK = os.O_NONBLOCK
SFD_CLOEXEC = os.O_CLOEXEC

# --- network interface ioctls (linux/sockios.h, linux/if.h) -------------------------------------
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3): the CLONE_NEW* type of a namespace file (Linux 4.11)

_CLONE_NAMES = tuple((name, value) for name, value in vars(linux).items()
                     if name.startswith("CLONE_NEW") and name != "CLONE_NEW_ALL")

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

_AT_NAMES = (
    ("AT_SYMLINK_NOFOLLOW", AT_SYMLINK_NOFOLLOW),
    ("AT_NO_AUTOMOUNT", AT_NO_AUTOMOUNT),
    ("AT_EMPTY_PATH", AT_EMPTY_PATH),
    ("AT_RECURSIVE", AT_RECURSIVE),
)

_MOUNT_ATTR_NAMES = (
    ("MOUNT_ATTR_RDONLY", MOUNT_ATTR_RDONLY),
    ("MOUNT_ATTR_NOSUID", MOUNT_ATTR_NOSUID),
    ("MOUNT_ATTR_NODEV", MOUNT_ATTR_NODEV),
    ("MOUNT_ATTR_NOEXEC", MOUNT_ATTR_NOEXEC),
    ("MOUNT_ATTR_NOATIME", MOUNT_ATTR_NOATIME),
    ("MOUNT_ATTR_STRICTATIME", MOUNT_ATTR_STRICTATIME),
    ("MOUNT_ATTR_NODIRATIME", MOUNT_ATTR_NODIRATIME),
    ("MOUNT_ATTR_IDMAP", MOUNT_ATTR_IDMAP),
    ("MOUNT_ATTR_NOSYMFOLLOW", MOUNT_ATTR_NOSYMFOLLOW),
)

_OPEN_TREE_NAMES = (
    ("OPEN_TREE_CLONE", OPEN_TREE_CLONE),
    ("OPEN_TREE_CLOEXEC", OPEN_TREE_CLOEXEC),
    *_AT_NAMES,
)

_RESOLVE_NAMES = (
    ("RESOLVE_NO_XDEV", RESOLVE_NO_XDEV),
    ("RESOLVE_NO_MAGICLINKS", RESOLVE_NO_MAGICLINKS),
    ("RESOLVE_NO_SYMLINKS", RESOLVE_NO_SYMLINKS),
    ("RESOLVE_BENEATH", RESOLVE_BENEATH),
    ("RESOLVE_IN_ROOT", RESOLVE_IN_ROOT),
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

# The options by number (not the sub-operations of PR_CAP_AMBIENT, which share numbers).
_PR_NAMES = {value: name for name, value in vars(linux).items()
             if name.startswith("PR_") and not name.startswith("PR_CAP_AMBIENT_")}


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


def at_flag_names(flags: int) -> str:
    """Render AT_* flags for a message: ``AT_RECURSIVE``."""
    return _flag_names(flags, _AT_NAMES)


def dirfd_name(fd: int) -> str:
    """A directory descriptor argument as a message shows it: ``AT_FDCWD``, or the number."""
    return "AT_FDCWD" if fd == AT_FDCWD else str(fd)


def mount_attr_names(attrs: int) -> str:
    """Render MOUNT_ATTR_* bits for a message: ``MOUNT_ATTR_RDONLY|MOUNT_ATTR_NOSUID``."""
    return _flag_names(attrs, _MOUNT_ATTR_NAMES)


def open_tree_flag_names(flags: int) -> str:
    """Render open_tree(2) flags for a message: ``OPEN_TREE_CLONE|AT_RECURSIVE``."""
    return _flag_names(flags, _OPEN_TREE_NAMES)


def resolve_flag_names(flags: int) -> str:
    """Render openat2(2) resolve flags for a message: ``RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS``."""
    return _flag_names(flags, _RESOLVE_NAMES)


def clone_flag_names(flags: int) -> str:
    """Render CLONE_NEW* flags for a message: ``CLONE_NEWNS|CLONE_NEWPID``."""
    return _flag_names(flags, _CLONE_NAMES)


def umount_flag_names(flags: int) -> str:
    """Render umount2(2) flags for a message: ``MNT_DETACH``."""
    return _flag_names(flags, _MNT_NAMES)


def seccomp_flag_names(flags: int) -> str:
    """Render SECCOMP_FILTER_FLAG_* flags for a message."""
    return _flag_names(flags, _SECCOMP_FLAG_NAMES)


def close_range_flag_names(flags: int) -> str:
    """Render CLOSE_RANGE_* flags for a message."""
    return _flag_names(flags, _CLOSE_RANGE_NAMES)


def prctl_option_name(option: int) -> str:
    """A prctl(2) option as a message shows it: ``PR_SET_NO_NEW_PRIVS``, or the number."""
    return _PR_NAMES.get(option, str(option))


_OPEN_NAMES = tuple(
    (name, getattr(os, name))
    for name in ("O_CREAT", "O_EXCL", "O_NOCTTY", "O_TRUNC", "O_APPEND", "O_NONBLOCK",
                 "O_DIRECTORY", "O_NOFOLLOW", "O_CLOEXEC", "O_PATH")
)
_ACCESS_MODES = {os.O_RDONLY: "O_RDONLY", os.O_WRONLY: "O_WRONLY", os.O_RDWR: "O_RDWR"}


def open_flag_names(flags: int) -> str:
    """Render open(2) flags for a message: ``O_RDONLY|O_CLOEXEC``; unknown bits in hex."""
    access = flags & os.O_ACCMODE
    rest = _flag_names(flags & ~os.O_ACCMODE, _OPEN_NAMES)
    head = _ACCESS_MODES.get(access, hex(access))
    return head if rest == "0" else f"{head}|{rest}"


_IOCTL_NAMES = {SIOCGIFFLAGS: "SIOCGIFFLAGS", SIOCSIFFLAGS: "SIOCSIFFLAGS", NS_GET_NSTYPE: "NS_GET_NSTYPE"}


def ioctl_request_name(request: int) -> str:
    """An ioctl(2) request as a message shows it: ``SIOCSIFFLAGS``, or the number in hex."""
    return _IOCTL_NAMES.get(request, hex(request))


# Every resource of setrlimit(2) by name (Python's module lacks RLIMIT_LOCKS, 10 on Linux).
RLIMITS = {name: getattr(resource, name) for name in dir(resource)
           if name.startswith("RLIMIT_") and name != "RLIMIT_OFILE"}  # OFILE: BSD's NOFILE
RLIMITS.setdefault("RLIMIT_LOCKS", 10)
_RLIMIT_NAMES = {number: name for name, number in RLIMITS.items()}


def rlimit_name(res: int) -> str:
    """A resource of getrlimit/setrlimit as a message shows it: ``RLIMIT_NOFILE``."""
    return _RLIMIT_NAMES.get(res, str(res))


def quoted(value: object) -> str:
    """An argument as it appears in a message: paths and strings quoted, None as NULL."""
    if value is None:
        return "NULL"
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, bytes):
        value = os.fsdecode(value)
    return repr(value) if isinstance(value, str) else str(value)


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
        return _errno.errorcode.get(self.errno or 0, f"errno {self.errno}")

    def __str__(self) -> str:
        return (
            f"{self.call}({', '.join(self.call_args)}) failed: {self.errno_name} ({self.strerror})"
        )

    def __reduce__(self) -> tuple[type[SyscallError], tuple[str, tuple[str, ...], int | None]]:
        return (type(self), (self.call, self.call_args, self.errno))  # keeps the message




# --- /proc/<pid>/stat ----------------------------------------------------------------------------
# Field numbers as proc(5) gives them (1-based; the command name in parentheses is field 2).
STAT_ARG_START = 48  # where the process's argument strings begin (kernel 3.5+)
STAT_ARG_END = 49
TASK_COMM_LEN = 16  # the kernel's task name, its NUL included (PR_SET_NAME)
