/*
 * The container's init: what PID 1 becomes once the workload's exec has succeeded.
 *
 *     init <workload pid>
 *
 * It forwards the signals sent to it on purpose (kill, sigqueue, tkill: si_code <= 0) of
 * SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH to the workload, reaps every
 * process that ends in the container (orphans are reparented to PID 1), and exits with the
 * workload's status: its exit code, or 128+N when signal N ended it. Its exit takes the PID
 * namespace, and whatever still runs there, down with it.
 *
 * It is what the interpreter that served the container's setup did after that exec, in a few
 * KiB instead of an interpreter's ~10 MiB: no libc (freestanding, raw system calls, static, no
 * relocation), since it is executed from a sealed memory file inside a container whose root
 * may hold no C library, or another. The caller keeps the signals above and SIGCHLD blocked
 * across the exec, so none sent meanwhile is lost, and a workload that ended before this
 * program ran is reaped at its first look.
 *
 * It is not dumpable (its memory, environment and descriptors are closed to the workload),
 * reads "init" as its command line and name, and holds no descriptor at all, its standard
 * streams included: it never writes (nothing of its own to say once the workload runs), and
 * the workload's output is the workload's to close (a reader of the container's output sees
 * its end when the workload's processes have closed it, not only when this one exits).
 * tini and catatonit keep theirs to print their own errors; this init has none to print.
 *
 * Every system call it makes is in the default seccomp profile's allowlist (prctl with
 * PR_SET_DUMPABLE 0, PR_SET_NAME, PR_SET_PDEATHSIG; close_range; rt_sigprocmask;
 * rt_sigtimedwait; kill; wait4; exit_group). Should a profile of the user's refuse
 * rt_sigtimedwait, it still reaps and exits right, without forwarding.
 */

#define SIGHUP 1
#define SIGINT 2
#define SIGQUIT 3
#define SIGKILL 9
#define SIGUSR1 10
#define SIGUSR2 12
#define SIGTERM 15
#define SIGCHLD 17
#define SIGWINCH 28

#define PR_SET_PDEATHSIG 1
#define PR_SET_DUMPABLE 4
#define PR_SET_NAME 15
#define SIG_BLOCK 0
#define WNOHANG 1
#define EINTR 4
#define ECHILD 10
#define EAGAIN 11

#if defined(__x86_64__)
#define NR_rt_sigprocmask 14
#define NR_wait4 61
#define NR_kill 62
#define NR_rt_sigtimedwait 128
#define NR_prctl 157
#define NR_exit_group 231
#define NR_close_range 436

static long sys(long n, long a, long b, long c, long d) {
    long ret;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                     : "rcx", "r11", "memory");
    return ret;
}

__asm__(".text\n.global _start\n_start:\n"
        "  xor %rbp, %rbp\n  mov %rsp, %rdi\n  and $-16, %rsp\n  call start\n  hlt\n");
#elif defined(__aarch64__)
#define NR_rt_sigprocmask 135
#define NR_wait4 260
#define NR_kill 129
#define NR_rt_sigtimedwait 137
#define NR_prctl 167
#define NR_exit_group 94
#define NR_close_range 436

static long sys(long n, long a, long b, long c, long d) {
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
    return x0;
}

__asm__(".text\n.global _start\n_start:\n"
        "  mov x29, #0\n  mov x30, #0\n  mov x0, sp\n  bl start\n  brk #0\n");
#else
#error "the container's init is written for x86_64 and aarch64"
#endif

/* The kernel's siginfo: 128 bytes, signo, errno and code first. */
struct siginfo {
    int signo;
    int err;
    int code;
    int pad[29];
};

static const int FORWARDED[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
#define N_FORWARDED (int)(sizeof FORWARDED / sizeof FORWARDED[0])

static __attribute__((noreturn)) void leave(int code) {
    for (;;)
        sys(NR_exit_group, code, 0, 0, 0);
}

/* A wait status as a shell reports it. */
static int exit_status(int status) {
    int sig = status & 0x7f;
    return sig ? 128 + sig : (status >> 8) & 0xff;
}

/* Reap every child that has ended; the workload's status once it is among them, 0 when no
 * child is left (as the interpreter's init did), -1 while the workload runs. With `block`,
 * wait for the next one to end first. */
static int reap(long target, int block) {
    int options = block ? 0 : WNOHANG;
    for (;;) {
        int status = 0;
        long pid = sys(NR_wait4, -1, (long)&status, options, 0);
        if (pid == -EINTR)
            continue;
        if (pid == -ECHILD)
            return 0;
        if (pid <= 0)
            return -1;
        if (pid == target)
            return exit_status(status);
        options = WNOHANG;
    }
}

/* The argument strings, where /proc/<pid>/cmdline reads them, overwritten with "init", NULs,
 * and a last byte that is not one: the kernel then shows "init" alone (as setproctitle does),
 * and nothing of the workload's pid. */
static void retitle(int argc, char **argv) {
    char *start = argv[0], *end = argv[argc - 1];
    while (*end)
        end++;
    static const char title[] = "init";
    long size = end + 1 - start, i;
    if (size < (long)sizeof title + 1)
        return;
    for (i = 0; i < size; i++)
        start[i] = i < (long)sizeof title ? title[i] : 0;
    start[size - 1] = '.';
}

static long parse_pid(const char *s) {
    long n = 0;
    if (!s || !*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || n > 0x7fffffff / 10)
            return -1;
        n = n * 10 + (*s - '0');
    }
    return n > 0 ? n : -1;
}

__attribute__((used, noreturn)) void start(long *sp) {
    int argc = (int)sp[0];
    char **argv = (char **)(sp + 1);
    unsigned long mask = 1UL << (SIGCHLD - 1);
    struct siginfo info;
    long target, got;
    int i, status;

    sys(NR_prctl, PR_SET_DUMPABLE, 0, 0, 0);
    target = argc == 2 ? parse_pid(argv[1]) : -1;
    if (argc >= 1)
        retitle(argc, argv);
    /* The name after the command line: whoever reads "init" as the name reads it there too. */
    sys(NR_prctl, PR_SET_NAME, (long)"init", 0, 0);
    sys(NR_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0); /* die with the supervisor, as before */
    sys(NR_close_range, 0, ~0U, 0, 0);
    for (i = 0; i < N_FORWARDED; i++)
        mask |= 1UL << (FORWARDED[i] - 1);
    sys(NR_rt_sigprocmask, SIG_BLOCK, (long)&mask, 0, 8);
    if (target < 0)
        leave(125);
    status = reap(target, 0);
    if (status >= 0)
        leave(status);
    for (;;) {
        got = sys(NR_rt_sigtimedwait, (long)&mask, (long)&info, 0, 8);
        if (got == -EINTR || got == -EAGAIN)
            continue;
        if (got < 0) { /* refused by a profile: reap without forwarding */
            status = reap(target, 1);
            if (status >= 0)
                leave(status);
            continue;
        }
        if (got != SIGCHLD) {
            if (info.code <= 0)
                sys(NR_kill, target, got, 0, 0);
            continue;
        }
        status = reap(target, 0);
        if (status >= 0)
            leave(status);
    }
}
