"""The default seccomp allowlist, as an OCI (runc/Docker-shaped) profile.

A disallowed call is refused the way a program expects (``--seccomp-default-action``, see
``DEFAULT_ACTIONS``): by default it fails with EPERM, as under Docker's default profile, so a
runtime that probes a call it may not make (node's capget, V8's pkey_alloc, glibc's clone3)
carries on instead of dying with SIGSYS. ``kill`` kills the whole process instead
(SCMP_ACT_KILL_PROCESS); ``log`` allows the call and logs it. Some refusals carry the errno a
program handles: EAFNOSUPPORT for a socket family that is not allowed, ENOSYS for clone3 and for
every syscall newer than libseccomp's table (``NEWER_SYSCALLS_ERRNO``), so glibc and language
runtimes fall back to the older call. A syscall from any other architecture (int 0x80, x32) is
killed in every mode. The profile is built from these parts:

- ``BASE_SYSCALLS``: the 173 unconditional syscalls of the reference implementation;
- ``ADDED_SYSCALLS``: what glibc, coreutils, procps, bash, Python, node, git and curl need that
  the reference left out, each with the reason it is safe and the tool that needs it;
- ``NETWORK_SYSCALLS``: the reference's 10 socket calls; all of them are unconditional now (the
  network namespace, not seccomp, is the network boundary: a container without a network has
  only its own loopback, and loopback servers must work);
- argument-filtered rules for socket, ioctl, prctl, prlimit64, mprotect, pkey_mprotect,
  preadv2, pwritev2, clone and execveat, and clone3 answered with ENOSYS so glibc falls back to
  clone.

What stays refused whatever the default action says: ``NEVER_ALLOWED`` (namespaces, mounts,
ptrace, bpf, keyrings, io_uring, modules, ...), namespace flags on clone, AF_NETLINK and
AF_PACKET sockets (every family but AF_UNIX, AF_INET and AF_INET6), ioctl requests other than
the terminal's (TIOCSTI among them), PR_SET_MM and the other prctl options that change
privileges, and other architectures; and, but for JIT compilers in agent mode (``jit``),
writable-and-executable mprotect. Under ``log`` they are refused too: only the calls the profile
does not name at all are allowed and logged.

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
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWTIME,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_IS_SET,
    PR_CAPBSET_DROP,
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
    PR_SET_MM,
    PR_SET_NAME,
    PR_SET_NO_NEW_PRIVS,
    PR_SET_PDEATHSIG,
    PR_SET_SECUREBITS,
    PR_SET_VMA,
)

DEFAULT_ARCH = "SCMP_ARCH_X86_64"  # the architecture a profile names unless told otherwise

ALLOW = "SCMP_ACT_ALLOW"
ERRNO = "SCMP_ACT_ERRNO"
KILL_PROCESS = "SCMP_ACT_KILL_PROCESS"
LOG = "SCMP_ACT_LOG"

# --seccomp-default-action: what the profile does with a call it does not allow.
DEFAULT_ACTIONS: dict[str, str] = {"errno": ERRNO, "kill": KILL_PROCESS, "log": LOG}
DEFAULT_ACTION_NAME = "errno"
DEFAULT_ACTION = DEFAULT_ACTIONS[DEFAULT_ACTION_NAME]
# nucleus's own key of the default profile (a profile file may carry it too): the errno of every
# syscall number above the highest libseccomp's table names (nucleus.effects.seccomp).
NEWER_SYSCALLS_ERRNO = "newerSyscallsErrno"

EQ = "SCMP_CMP_EQ"
MASKED_EQ = "SCMP_CMP_MASKED_EQ"

# --- numeric constants used by the argument filters (x86_64 Linux uapi) -------------------------

EPERM = 1
ENOSYS = 38
EAFNOSUPPORT = 97

AF_UNIX = 1
AF_INET = 2
AF_INET6 = 10
AF_NETLINK = 16
NETLINK_ROUTE = 0
AF_MAX = 46  # one past the highest address family Linux 6.18 knows (AF_MCTP is 45)

PROT_WRITE = 0x2
PROT_EXEC = 0x4
PR_SET_SECCOMP = 22

NAMESPACE_FLAGS: dict[str, int] = {
    "CLONE_NEWNS": CLONE_NEWNS, "CLONE_NEWCGROUP": CLONE_NEWCGROUP, "CLONE_NEWUTS": CLONE_NEWUTS,
    "CLONE_NEWIPC": CLONE_NEWIPC, "CLONE_NEWUSER": CLONE_NEWUSER, "CLONE_NEWPID": CLONE_NEWPID,
    "CLONE_NEWNET": CLONE_NEWNET, "CLONE_NEWTIME": CLONE_NEWTIME,
}

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
    # A workload's own terminal (-t): tcdrain(3) is TCSBRK with a nonzero argument (Python's
    # termios.tcdrain, curses when it restores the terminal), tcflow(3) is TCXONC. A break on
    # a pseudo-terminal is a no-op; neither reaches past the terminal.
    "TCSBRK": 0x5409,
    "TCXONC": 0x540A,
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
# (traced on Debian 12: glibc 2.36, coreutils 9.1, procps 4.0.2, bash 5.2, CPython 3.11, node 20,
# git 2.39, curl 7.88), or is a newer form of an allowed call that a C library probes first.
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
    "bind": "servers: AF_UNIX (tmux, ssh-agent, language servers) and loopback TCP/UDP (python -m "
    "http.server, test fixtures); the network namespace decides what an address reaches",
    "listen": "servers, as for bind: the socket waits for connections",
    "accept": "servers, as for bind: takes a connection from a listening socket",
    "accept4": "servers, as for bind: accept with SOCK_CLOEXEC/SOCK_NONBLOCK",
    "shutdown": "half-closing stream sockets (curl, git's transports)",
    "setsockopt": "socket options (SO_REUSEADDR for servers, TCP_NODELAY for clients, SO_PASSCRED, "
    "buffer sizes); options that need a capability still need it",
    "setrlimit": "`ulimit` and resource.setrlimit on the caller; without CAP_SYS_RESOURCE a hard "
    "limit can only be lowered",
    "vfork": "Python's subprocess spawns with vfork(); it is clone(CLONE_VM|CLONE_VFORK), "
    "which the clone rule allows, and cannot create namespaces",
    "get_mempolicy": "procps ps probes NUMA policy at start; a pure query",
    "set_mempolicy": "procps ps sets and resets its own NUMA policy at start; moving other "
    "processes' pages (migrate_pages, move_pages) stays denied",
    "sendto": "send() and UDP: asyncio's self-pipe, glibc syslog(3), DNS stubs on loopback; the "
    "socket rule limits the families",
    "recvfrom": "recv() and UDP, as for sendto",
    "sendmsg": "sd_notify readiness messages and descriptor passing over AF_UNIX sockets",
    "recvmsg": "descriptor passing over AF_UNIX sockets; glibc's netlink address probe",
    "capget": "node reads its capability sets at start (and libcap's capsh, getpcaps); a query: "
    "every set is empty, and capset stays denied",
    "pkey_alloc": "V8 (node) asks for a memory protection key at start; a key guards only the "
    "caller's own pages (pkey_mprotect is filtered as mprotect is)",
    "pkey_free": "frees a key pkey_alloc gave",
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

# The reference's list of 10 network calls, allowed only with a network there; every one of them
# is in ADDED_SYSCALLS now.
NETWORK_SYSCALLS: tuple[str, ...] = (
    "sendto", "recvfrom", "sendmsg", "recvmsg", "shutdown", "bind", "listen", "accept", "accept4",
    "setsockopt",
)  # fmt: skip

# Allowed only with the argument checks of _argument_rules().
ARGUMENT_FILTERED_SYSCALLS: tuple[str, ...] = (
    "socket", "ioctl", "prctl", "prlimit64", "mprotect", "pkey_mprotect", "preadv2", "pwritev2", "clone",
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


def _argument_rules(networked: bool, deny: str, jit: bool) -> list[dict[str, object]]:
    rules: list[dict[str, object]] = []

    # socket(domain, type, protocol): AF_UNIX, AF_INET and AF_INET6. The network namespace is the
    # network boundary: without a network the container has only its own loopback, and servers
    # on it (python -m http.server, test fixtures) must work.
    for domain in (AF_UNIX, AF_INET, AF_INET6):
        rules.append(_rule("socket", _arg(0, EQ, domain)))
    # glibc's getaddrinfo (AI_ADDRCONFIG, the default with NULL hints) asks the kernel for the
    # host's addresses over AF_NETLINK/NETLINK_ROUTE. With a network it is allowed (changing
    # routes or links needs CAP_NET_ADMIN, which is dropped). Without one it fails softly with
    # EAFNOSUPPORT, which glibc handles, whatever the default action (a kill here would end
    # every curl).
    netlink_route = (_arg(0, EQ, AF_NETLINK), _arg(2, EQ, NETLINK_ROUTE))
    if networked:
        rules.append(_rule("socket", *netlink_route))
    elif deny != ERRNO:
        rules.append(_rule("socket", *netlink_route, action=ERRNO, errno_ret=EAFNOSUPPORT))
    # Every other family (AF_NETLINK, AF_PACKET, AF_VSOCK, AF_ALG, ...) is refused: with
    # EAFNOSUPPORT, the errno of a kernel built without it, which programs handle (under kill,
    # the process is killed). A number past the families Linux knows gets the default action,
    # as does another netlink protocol with a network (libseccomp cannot hold both rules for
    # AF_NETLINK). The domain is compared on 64 bits: garbage in the upper half matches no
    # allowed family.
    allowed = (AF_UNIX, AF_INET, AF_INET6) + ((AF_NETLINK,) if networked else ())
    refused = [f for f in range(AF_MAX) if f not in allowed]
    rules.append(_rule("socket", *(_arg(0, EQ, f) for f in refused), action=deny,
                       errno_ret=EAFNOSUPPORT if deny == ERRNO else None))

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

    # mprotect and pkey_mprotect(addr, len, prot[, pkey]): without `jit`, never writable and
    # executable at once (W^X). mmap itself is unconditional, as in the reference, so a fresh
    # PROT_WRITE|PROT_EXEC mapping is still possible: this stops turning existing pages W+X,
    # not every W+X page. With `jit` (agent mode) both are unconditional: V8 (node 20) flips its
    # code pages to PROT_READ|PROT_WRITE|PROT_EXEC with mprotect and aborts when that fails
    # (with any errno but ENOMEM), and its flags that avoid it do not run (seen on node
    # 20.20); HotSpot and LuaJIT do the same.
    wx = PROT_WRITE | PROT_EXEC
    for name in ("mprotect", "pkey_mprotect"):
        if jit:
            rules.append(_rule(name))
            continue
        for form in (0, PROT_WRITE, PROT_EXEC):
            rules.append(_rule(name, _arg(2, MASKED_EQ, wx, form)))

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
    rules.extend(_denied_forms(deny, jit))
    return rules


# The dangerous forms of the argument-filtered calls, refused explicitly with the profile's deny
# action. Under the errno and kill defaults they repeat the default (and compile to nothing);
# under `log`, whose default allows, they keep these forms refused.
DENIED_PRCTL_OPTIONS: dict[str, int] = {
    "PR_SET_MM": PR_SET_MM, "PR_SET_SECCOMP": PR_SET_SECCOMP,
    "PR_SET_SECUREBITS": PR_SET_SECUREBITS, "PR_CAPBSET_DROP": PR_CAPBSET_DROP,
}
DENIED_IOCTL_REQUESTS: dict[str, int] = {"TIOCSTI": TIOCSTI, "TIOCLINUX": 0x541C, "TIOCCONS": 0x541D}


def _denied_forms(deny: str, jit: bool) -> list[dict[str, object]]:
    errno_ret = EPERM if deny == ERRNO else None
    rules: list[dict[str, object]] = [
        {"names": sorted(NEVER_ALLOWED - {"clone3"}), "action": deny},
        # clone with any namespace flag (one condition per flag on one argument: OR).
        _rule("clone", *(_arg(0, MASKED_EQ, bit, bit) for bit in NAMESPACE_FLAGS.values()),
              action=deny, errno_ret=errno_ret),
        _rule("ioctl", *(_arg(1, MASKED_EQ, IOCTL_REQUEST_MASK, r) for r in DENIED_IOCTL_REQUESTS.values()),
              action=deny, errno_ret=errno_ret),
        _rule("prctl", *(_arg(0, EQ, o) for o in DENIED_PRCTL_OPTIONS.values()), action=deny,
              errno_ret=errno_ret),
        _rule("prctl", _arg(0, EQ, PR_SET_DUMPABLE), _arg(1, EQ, 1), action=deny, errno_ret=errno_ret),
        _rule("execveat", _arg(4, MASKED_EQ, AT_EMPTY_PATH, AT_EMPTY_PATH), action=deny,
              errno_ret=errno_ret),
    ]
    if not jit:
        wx = PROT_WRITE | PROT_EXEC
        rules += [_rule(name, _arg(2, MASKED_EQ, wx, wx), action=deny, errno_ret=errno_ret)
                  for name in ("mprotect", "pkey_mprotect")]
    if errno_ret is not None:
        rules[0]["errnoRet"] = errno_ret
    return rules


def unconditional_syscalls() -> tuple[str, ...]:
    """Every syscall allowed without conditions whatever the network mode, sorted."""
    return tuple(sorted(set(BASE_SYSCALLS) | set(ADDED_SYSCALLS)))


def default_profile(networked: bool, arch: str = DEFAULT_ARCH,
                    default_action: str = DEFAULT_ACTION_NAME, jit: bool = False) -> dict[str, object]:
    """The default profile as a fresh OCI seccomp dict (safe for the caller to modify), for the
    architecture ``arch`` (libseccomp's token, e.g. ``"SCMP_ARCH_AARCH64"``): the machine it
    will be loaded on. ``default_action`` is a key of DEFAULT_ACTIONS: what a call the profile
    does not allow gets (errno: EPERM). ``jit``: memory may be made writable and executable
    (JIT compilers: node, java), as agent mode allows (nucleus.config.modes.seccomp_jit)."""
    action = DEFAULT_ACTIONS[default_action]
    deny = KILL_PROCESS if action == KILL_PROCESS else ERRNO
    syscalls: list[dict[str, object]] = [{"names": list(unconditional_syscalls()), "action": ALLOW}]
    syscalls.extend(_argument_rules(networked, deny, jit))
    profile: dict[str, object] = {"defaultAction": action}
    if action == ERRNO:
        profile["defaultErrnoRet"] = EPERM
    profile.update({"architectures": [arch], "syscalls": syscalls, NEWER_SYSCALLS_ERRNO: ENOSYS})
    return profile
