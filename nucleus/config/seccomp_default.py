"""The default seccomp allowlist, as an OCI (runc/Docker-shaped) profile.

Anything not listed kills the whole process (SCMP_ACT_KILL_PROCESS); a syscall from any other
architecture (int 0x80, x32) is killed too. The profile is built from four parts:

- ``BASE_SYSCALLS``: the 173 unconditional syscalls of the reference implementation;
- ``ADDED_SYSCALLS``: what glibc, coreutils, procps, bash and Python need that the reference left
  out, each with the reason it is safe and the tool that needs it;
- ``NETWORK_SYSCALLS``: the reference's 10 socket calls allowed only when the container has a
  network (those already made unconditional by ``ADDED_SYSCALLS`` are not repeated);
- argument-filtered rules for socket, ioctl, prctl, prlimit64, mprotect, preadv2, pwritev2,
  clone and execveat, and clone3 answered with ENOSYS so glibc falls back to clone.

Several conditions on one argument are written as separate rules (OR); several conditions in one
rule are ANDed. For SCMP_CMP_MASKED_EQ, ``value`` is the mask and ``valueTwo`` the expected result
(the OCI convention, as runc reads it).

The names are those of x86_64, the reference's; on aarch64 libseccomp resolves a name the
architecture lacks (open, arch_prctl, ...) to a pseudo number that adds no rule. The profile names
one architecture, the caller's (``default_profile(networked, arch)``): this module does not probe
the machine; the effects side passes ``nucleus.effects.abi.architecture().seccomp_arch``.

This module is data only: no I/O, standard library only.
"""

from __future__ import annotations

from nucleus.linux import (
    CLONE_NEW_ALL,
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_IS_SET,
    PR_CAPBSET_READ,
    PR_GET_CHILD_SUBREAPER,
    PR_GET_DUMPABLE,
    PR_GET_NAME,
    PR_GET_NO_NEW_PRIVS,
    PR_GET_PDEATHSIG,
    PR_GET_SECCOMP,
    PR_GET_SECUREBITS,
    PR_GET_TID_ADDRESS,
    PR_SET_CHILD_SUBREAPER,
    PR_SET_DUMPABLE,
    PR_SET_NAME,
    PR_SET_NO_NEW_PRIVS,
    PR_SET_PDEATHSIG,
    PR_SET_VMA,
)

DEFAULT_ARCH = "SCMP_ARCH_X86_64"  # the architecture a profile names unless told otherwise
DEFAULT_ACTION = "SCMP_ACT_KILL_PROCESS"

ALLOW = "SCMP_ACT_ALLOW"
ERRNO = "SCMP_ACT_ERRNO"

EQ = "SCMP_CMP_EQ"
MASKED_EQ = "SCMP_CMP_MASKED_EQ"

# --- numeric constants used by the argument filters (x86_64 Linux uapi) -------------------------

ENOSYS = 38
EAFNOSUPPORT = 97

AF_UNIX = 1
AF_INET = 2
AF_INET6 = 10
AF_NETLINK = 16
NETLINK_ROUTE = 0

PROT_WRITE = 0x2
PROT_EXEC = 0x4

AT_EMPTY_PATH = 0x1000


# ioctl(2) requests a terminal-using program needs. The kernel takes the request as a 32-bit
# `unsigned int`, so the filter compares only the low 32 bits of the register (MASKED_EQ with
# 0xFFFFFFFF): garbage in the upper half neither bypasses nor breaks the check.
IOCTL_REQUEST_MASK = 0xFFFFFFFF
IOCTL_REQUESTS: dict[str, int] = {
    "TCGETS": 0x5401,
    "TCSETS": 0x5402,
    "TCSETSW": 0x5403,
    "TCSETSF": 0x5404,
    "TCFLSH": 0x540B,
    "TIOCSCTTY": 0x540E,  # stealing a tty (arg 1) still needs CAP_SYS_ADMIN
    "TIOCGPGRP": 0x540F,
    "TIOCSPGRP": 0x5410,
    "TIOCGWINSZ": 0x5413,
    "TIOCSWINSZ": 0x5414,
    "FIONREAD": 0x541B,
    "FIONBIO": 0x5421,
    "TIOCGSID": 0x5429,
    "TCGETS2": 0x802C542A,
    # The termios2 forms of TCSETS/TCSETSW/TCSETSF, which are allowed: same effect, larger
    # struct (arbitrary baud rates); C libraries that read with TCGETS2 write with these.
    "TCSETS2": 0x402C542B,
    "TCSETSW2": 0x402C542C,
    "TCSETSF2": 0x402C542D,
    # A pseudo-terminal: posix_openpt/grantpt/unlockpt/ptsname and the race-free peer open.
    "TIOCGPTN": 0x80045430,
    "TIOCSPTLCK": 0x40045431,
    "TIOCGPTPEER": 0x5441,
    "FIONCLEX": 0x5450,
    "FIOCLEX": 0x5451,
    # cp (coreutils >= 9.0 defaults to --reflink=auto) tries to share the source's extents with
    # the destination first; it needs the same fds and rights as copy_file_range (allowed).
    "FICLONE": 0x40049409,
}
# Deliberately absent, among all others: TIOCSTI (0x5412, pushes input into the terminal's
# queue: typing commands into the parent's shell), TIOCLINUX (0x541C), TIOCCONS (0x541D).
TIOCSTI = 0x5412

# prctl(2) options allowed with any arguments: see PRCTL_OPTIONS.

PRCTL_OPTIONS: dict[str, int] = {
    "PR_SET_PDEATHSIG": PR_SET_PDEATHSIG,
    "PR_GET_PDEATHSIG": PR_GET_PDEATHSIG,
    "PR_GET_DUMPABLE": PR_GET_DUMPABLE,
    "PR_SET_NAME": PR_SET_NAME,  # thread names (pthread_setname_np on the calling thread)
    "PR_GET_NAME": PR_GET_NAME,
    "PR_GET_SECCOMP": PR_GET_SECCOMP,
    "PR_CAPBSET_READ": PR_CAPBSET_READ,  # libcap and procps probe the bounding set at start
    "PR_GET_SECUREBITS": PR_GET_SECUREBITS,  # read-only; libcap's cap_get_secbits
    "PR_SET_CHILD_SUBREAPER": PR_SET_CHILD_SUBREAPER,  # tini, dumb-init, supervisors
    "PR_GET_CHILD_SUBREAPER": PR_GET_CHILD_SUBREAPER,
    "PR_SET_NO_NEW_PRIVS": PR_SET_NO_NEW_PRIVS,  # can only be set, never cleared
    "PR_GET_NO_NEW_PRIVS": PR_GET_NO_NEW_PRIVS,
    "PR_GET_TID_ADDRESS": PR_GET_TID_ADDRESS,
    "PR_SET_VMA": PR_SET_VMA,  # glibc names its anonymous mappings (malloc arenas, stacks)
}
# Left out on purpose: PR_SET_MM (rewrites the mm's argv/env/exe pointers, the reference allowed
# it), PR_SET_SECCOMP, PR_SET_SECUREBITS, PR_CAPBSET_DROP, PR_CAP_AMBIENT other than IS_SET,
# PR_SET_DUMPABLE 1 (see below), PR_SET_PTRACER, PR_SET_TSC/PR_SET_SPECULATION_CTRL,
# PR_SET_THP_DISABLE and every option not named here.

# (option, arg2) pairs: allowed only with exactly this second argument.
PRCTL_OPTION_ARGS: dict[str, tuple[int, int]] = {
    # Query one ambient capability; raising/lowering/clearing stays denied.
    "PR_CAP_AMBIENT/PR_CAP_AMBIENT_IS_SET": (PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET),
    # PR_SET_DUMPABLE 0 only: ssh-agent and gpg-agent make themselves non-dumpable to protect
    # their keys, and killing them for hardening themselves would be wrong. Setting it back to 1
    # stays denied.
    "PR_SET_DUMPABLE/0": (PR_SET_DUMPABLE, 0),
}

# --- the syscall lists ----------------------------------------------------------------------------

# The reference's unconditional allowlist on x86_64 (173 names).
BASE_SYSCALLS: tuple[str, ...] = (
    "access", "arch_prctl", "brk", "chdir", "chmod", "chown", "clock_getres", "clock_gettime",
    "clock_nanosleep", "close", "close_range", "connect", "copy_file_range", "dup", "dup2",
    "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_wait", "eventfd",
    "eventfd2", "execve", "exit", "exit_group", "faccessat", "faccessat2", "fadvise64",
    "fallocate", "fchdir", "fchmod", "fchmodat", "fchown", "fchownat", "fcntl", "fdatasync",
    "fgetxattr", "flistxattr", "flock", "fstat", "fstatfs", "fsync", "ftruncate", "futex",
    "get_robust_list", "getcpu", "getcwd", "getdents", "getdents64", "getegid", "geteuid",
    "getgid", "getgroups", "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid",
    "getrandom", "getresgid", "getresuid", "getrlimit", "getrusage", "getsockname", "getsockopt",
    "gettid", "gettimeofday", "getuid", "getxattr", "io_destroy", "io_getevents", "io_setup",
    "io_submit", "kill", "landlock_add_rule", "landlock_create_ruleset",
    "landlock_restrict_self", "lchown", "lgetxattr", "link", "linkat", "listxattr", "llistxattr",
    "lseek", "lstat", "madvise", "mkdir", "mkdirat", "mlock", "mlock2", "mmap", "mremap", "msync",
    "munlock", "munmap", "nanosleep", "newfstatat", "open", "openat", "pipe", "pipe2", "poll",
    "ppoll", "pread64", "preadv", "pselect6", "pwrite64", "pwritev", "read", "readlink",
    "readlinkat", "readv", "rename", "renameat", "renameat2", "restart_syscall", "rmdir", "rseq",
    "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn",
    "rt_sigsuspend", "rt_sigtimedwait", "sched_getaffinity", "sched_getparam",
    "sched_getscheduler", "sched_setaffinity", "sched_yield", "select", "semctl", "semget",
    "semop", "semtimedop", "sendfile", "set_robust_list", "set_tid_address", "setitimer",
    "setpgid", "setsid", "shmat", "shmctl", "shmdt", "shmget", "sigaltstack", "signalfd",
    "signalfd4", "socketpair", "splice", "stat", "statfs", "statx", "symlink", "symlinkat",
    "sync_file_range", "tee", "tgkill", "timerfd_create", "timerfd_gettime", "timerfd_settime",
    "times", "truncate", "umask", "uname", "unlink", "unlinkat", "wait4", "waitid", "write",
    "writev",
)  # fmt: skip

# Unconditional additions. Each one was seen killing a common program under the reference list
# (traced on Debian 12: glibc 2.36, coreutils 9.1, procps 4.0.2, bash 5.2, CPython 3.11), or is
# a newer form of an allowed call that a C library probes first. With a KILL default a probe is
# fatal, where a missing syscall would have returned ENOSYS.
ADDED_SYSCALLS: dict[str, str] = {
    "alarm": "signal.alarm() in Python and alarm in Perl use the alarm syscall on x86_64; it is "
    "setitimer(ITIMER_REAL), which is allowed",
    "creat": "GNU tar creates its archive with creat(); it is open(O_CREAT|O_WRONLY|O_TRUNC)",
    "utimensat": "touch, cp -p, tar extraction and os.utime set timestamps with it; same "
    "permission checks as writing the file",
    "getpriority": "nice and ps read priorities; a pure query of processes the caller can see",
    "setpriority": "nice(1); without CAP_SYS_NICE a process can only lower its own priority",
    "sched_get_priority_max": "pure query of a constant; glibc's priority-protect mutexes use it",
    "sched_get_priority_min": "pure query of a constant; glibc's priority-protect mutexes use it",
    "sysinfo": "glibc's sysconf(_SC_PHYS_PAGES) behind sort(1) and Python's memory probes; it "
    "reports what /proc/meminfo, /proc/loadavg and /proc/uptime already show",
    "timer_create": "timeout(1) arms a POSIX per-process timer (like setitimer/timerfd, allowed)",
    "timer_settime": "timeout(1), with timer_create",
    "timer_gettime": "the rest of the POSIX timer API, with timer_create",
    "timer_getoverrun": "the rest of the POSIX timer API, with timer_create",
    "timer_delete": "the rest of the POSIX timer API, with timer_create",
    "bind": "AF_UNIX servers (tmux, ssh-agent, language servers); socket() allows only AF_UNIX "
    "without a network, so this reaches no network",
    "listen": "AF_UNIX servers, as for bind",
    "accept": "AF_UNIX servers, as for bind",
    "accept4": "AF_UNIX servers, as for bind",
    "shutdown": "half-closing AF_UNIX stream sockets",
    "setsockopt": "socket options on AF_UNIX sockets (SO_PASSCRED, buffer sizes)",
    "setrlimit": "`ulimit` and resource.setrlimit on the caller; without CAP_SYS_RESOURCE a hard "
    "limit can only be lowered",
    "vfork": "Python's subprocess spawns with vfork(); it is clone(CLONE_VM|CLONE_VFORK), "
    "which the clone rule allows, and cannot create namespaces",
    "get_mempolicy": "procps ps probes NUMA policy at start; a pure query",
    "set_mempolicy": "procps ps sets and resets its own NUMA policy at start; moving other "
    "processes' pages (migrate_pages, move_pages) stays denied",
    "sendto": "send() on AF_UNIX sockets: asyncio's self-pipe, glibc syslog(3); the socket rule "
    "limits domains to AF_UNIX without a network",
    "recvfrom": "recv() on AF_UNIX sockets: asyncio's self-pipe",
    "sendmsg": "sd_notify readiness messages and descriptor passing over AF_UNIX sockets",
    "recvmsg": "descriptor passing over AF_UNIX sockets; glibc's netlink address probe",
    "fchmodat2": "glibc >= 2.39 calls it first for fchmodat(AT_SYMLINK_NOFOLLOW); same checks "
    "as fchmodat",
    "pidfd_open": "Python >= 3.12 asyncio probes os.pidfd_open to choose its child watcher; "
    "names only processes visible in the PID namespace",
    "pidfd_send_signal": "kill(2) through a pidfd; the same permission checks as kill",
    "fsetxattr": "install(1) and cp -a set the POSIX ACL / extended attributes of the file they "
    "write; without CAP_SYS_ADMIN or CAP_SETFCAP only user.* attributes and ACLs of files the "
    "caller owns can be set",
    "setxattr": "setfacl(1) and cp -a: fsetxattr by path, same checks",
    "lsetxattr": "cp -a on symlinks: fsetxattr on the link itself, same checks",
}

# Allowed only when the container has a network (the reference's list of 10).
NETWORK_SYSCALLS: tuple[str, ...] = (
    "sendto", "recvfrom", "sendmsg", "recvmsg", "shutdown", "bind", "listen", "accept", "accept4",
    "setsockopt",
)  # fmt: skip

# Allowed only with the argument checks of _argument_rules().
ARGUMENT_FILTERED_SYSCALLS: tuple[str, ...] = (
    "socket", "ioctl", "prctl", "prlimit64", "mprotect", "preadv2", "pwritev2", "clone",
    "execveat", "setresuid", "setresgid", "mknod", "mknodat",
)  # fmt: skip

# Never allowed by the default profile, whatever the mode. `seccomp` itself is here: a nested
# filter could only narrow what is allowed, but each filter goes through the kernel's
# cBPF-to-eBPF translation and JIT, attack surface the workload does not need; programs that
# sandbox themselves can use Landlock, which is allowed.
# setresuid/setresgid and mknod/mknodat are allowed only in narrow forms (see _argument_rules).
NEVER_ALLOWED: frozenset[str] = frozenset(
    {
        "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "ptrace", "bpf",
        "keyctl", "add_key", "request_key", "userfaultfd", "io_uring_setup", "io_uring_enter",
        "io_uring_register", "memfd_create", "memfd_secret", "init_module", "finit_module",
        "delete_module", "kexec_load", "kexec_file_load", "perf_event_open", "process_vm_readv",
        "process_vm_writev", "setuid", "setgid", "setreuid", "setregid", "setfsuid", "setfsgid", "setgroups", "capset",
        "open_by_handle_at", "name_to_handle_at", "swapon", "swapoff", "reboot", "acct",
        "quotactl", "quotactl_fd", "lookup_dcookie", "iopl", "ioperm", "personality", "fsopen",
        "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr", "seccomp",
        "modify_ldt", "kcmp", "pidfd_getfd", "process_madvise", "migrate_pages", "move_pages",
        "mbind", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "syslog",
        "sethostname", "setdomainname", "vhangup", "uselib", "ustat", "sysfs", "_sysctl",
        "nfsservctl", "fanotify_init", "clone3",
    }
)  # fmt: skip


S_IFMT = 0o170000
S_IFIFO = 0o010000


def _arg(index: int, op: str, value: int, value_two: int = 0) -> dict[str, object]:
    return {"index": index, "value": value, "valueTwo": value_two, "op": op}


def _rule(
    name: str, *args: dict[str, object], action: str = ALLOW, errno_ret: int | None = None
) -> dict[str, object]:
    rule: dict[str, object] = {"names": [name], "action": action}
    if args:
        rule["args"] = list(args)
    if errno_ret is not None:
        rule["errnoRet"] = errno_ret
    return rule


def _argument_rules(networked: bool) -> list[dict[str, object]]:
    rules: list[dict[str, object]] = []

    # socket(domain, type, protocol): AF_UNIX, plus AF_INET/AF_INET6 with a network.
    domains = (AF_UNIX, AF_INET, AF_INET6) if networked else (AF_UNIX,)
    for domain in domains:
        rules.append(_rule("socket", _arg(0, EQ, domain)))
    # glibc's getaddrinfo (AI_ADDRCONFIG, the default with NULL hints) asks the kernel for the
    # host's addresses over AF_NETLINK/NETLINK_ROUTE. With a network it is allowed (changing
    # routes or links needs CAP_NET_ADMIN, which is dropped). Without one it fails softly with
    # EAFNOSUPPORT, which glibc handles, instead of killing `getent ahosts localhost`.
    netlink = (_arg(0, EQ, AF_NETLINK), _arg(2, EQ, NETLINK_ROUTE))
    if networked:
        rules.append(_rule("socket", *netlink))
    else:
        rules.append(_rule("socket", *netlink, action=ERRNO, errno_ret=EAFNOSUPPORT))

    # ioctl(fd, request, arg): the terminal and pty requests above, compared on 32 bits.
    for request in IOCTL_REQUESTS.values():
        rules.append(_rule("ioctl", _arg(1, MASKED_EQ, IOCTL_REQUEST_MASK, request)))

    # prctl(option, arg2, ...)
    for option in PRCTL_OPTIONS.values():
        rules.append(_rule("prctl", _arg(0, EQ, option)))
    for option, arg2 in PRCTL_OPTION_ARGS.values():
        rules.append(_rule("prctl", _arg(0, EQ, option), _arg(1, EQ, arg2)))

    # prlimit64(pid, resource, new_limit, old_limit): reading only (new_limit NULL). glibc's
    # getrlimit is prlimit64 with a NULL new_limit.
    rules.append(_rule("prlimit64", _arg(2, EQ, 0)))
    # ... or setting the caller's own limits (pid 0): without CAP_SYS_RESOURCE a hard limit can
    # only be lowered, so this is what `ulimit -n N` and resource.setrlimit need.
    rules.append(_rule("prlimit64", _arg(0, EQ, 0)))

    # setresuid/setresgid(r, e, s) with r and s unchanged (-1): GNU make 4.3 runs recipes through
    # posix_spawn(POSIX_SPAWN_RESETIDS), whose child calls setresuid(-1, getuid(), -1). Without
    # CAP_SETUID the effective id can only become the caller's own real or saved id.
    unchanged = 0xFFFFFFFF
    for name in ("setresuid", "setresgid"):
        rules.append(_rule(name, _arg(0, MASKED_EQ, unchanged, unchanged),
                           _arg(2, MASKED_EQ, unchanged, unchanged)))

    # mknod/mknodat: FIFOs only (mkfifo); never device nodes, sockets or regular files.
    rules.append(_rule("mknod", _arg(1, MASKED_EQ, S_IFMT, S_IFIFO)))
    rules.append(_rule("mknodat", _arg(2, MASKED_EQ, S_IFMT, S_IFIFO)))

    # mprotect(addr, len, prot): never writable and executable at once (W^X). mmap itself is
    # unconditional, as in the reference, so a fresh PROT_WRITE|PROT_EXEC mapping is still
    # possible: this stops turning existing pages W+X, not every W+X page.
    wx = PROT_WRITE | PROT_EXEC
    for allowed in (0, PROT_WRITE, PROT_EXEC):
        rules.append(_rule("mprotect", _arg(2, MASKED_EQ, wx, allowed)))

    # preadv2/pwritev2(fd, iov, iovcnt, pos_l, pos_h, flags): no RWF_* flags.
    rules.append(_rule("preadv2", _arg(5, EQ, 0)))
    rules.append(_rule("pwritev2", _arg(5, EQ, 0)))

    # clone(flags, ...): fork and threads, never a new namespace. clone3 passes its flags in
    # memory the filter cannot read, hence the ENOSYS below.
    rules.append(_rule("clone", _arg(0, MASKED_EQ, CLONE_NEW_ALL, 0)))

    # execveat(dirfd, path, argv, envp, flags): no AT_EMPTY_PATH (executing an fd, e.g. a
    # memfd or an O_PATH descriptor passed in from outside).
    rules.append(_rule("execveat", _arg(4, MASKED_EQ, AT_EMPTY_PATH, 0)))

    # clone3: glibc >= 2.34 tries it first for threads and posix_spawn and falls back to clone
    # on ENOSYS.
    rules.append(_rule("clone3", action=ERRNO, errno_ret=ENOSYS))
    return rules


def unconditional_syscalls() -> tuple[str, ...]:
    """Every syscall allowed without conditions whatever the network mode, sorted."""
    return tuple(sorted(set(BASE_SYSCALLS) | set(ADDED_SYSCALLS)))


def network_only_syscalls() -> tuple[str, ...]:
    """The syscalls the network adds to the unconditional list, sorted."""
    return tuple(sorted(set(NETWORK_SYSCALLS) - set(unconditional_syscalls())))


def default_profile(networked: bool, arch: str = DEFAULT_ARCH) -> dict[str, object]:
    """The default profile as a fresh OCI seccomp dict (safe for the caller to modify), for the
    architecture ``arch`` (libseccomp's token, e.g. ``"SCMP_ARCH_AARCH64"``): the machine it
    will be loaded on."""
    syscalls: list[dict[str, object]] = [{"names": list(unconditional_syscalls()), "action": ALLOW}]
    if networked and network_only_syscalls():
        syscalls.append({"names": list(network_only_syscalls()), "action": ALLOW})
    syscalls.extend(_argument_rules(networked))
    return {
        "defaultAction": DEFAULT_ACTION,
        "architectures": [arch],
        "syscalls": syscalls,
    }
