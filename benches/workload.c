/* Microbenchmarks run inside a sandbox and on the host: each prints the nanoseconds its loop took,
 * in wall time (CLOCK_MONOTONIC, a vDSO call) and in CPU time of the process (user + system,
 * CLOCK_PROCESS_CPUTIME_ID: what other tenants of a shared machine cannot inflate), then a
 * checksum bit so that the loop is not optimised away.
 *
 *   workload getppid N   N raw getppid(2) calls: syscall entry and the seccomp filter only
 *   workload stat N      N stat(2) of /usr/bin: a path walk (Landlock has no stat hook)
 *   workload open N      N open+read+close of /etc/hostname: Landlock's file_open hook
 *   workload cpu N       N rounds of an integer hash: no syscalls at all
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s getppid|stat|open|cpu N\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    long n = strtol(argv[2], NULL, 10);
    volatile uint64_t sink = 0;
    char buf[64];
    struct stat st;
    uint64_t c0 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
    uint64_t t0 = now_ns(CLOCK_MONOTONIC);
    if (strcmp(mode, "getppid") == 0) {
        for (long i = 0; i < n; i++)
            sink += (uint64_t)syscall(SYS_getppid);
    } else if (strcmp(mode, "stat") == 0) {
        for (long i = 0; i < n; i++) {
            if (stat("/usr/bin", &st) != 0) { perror("stat /usr/bin"); return 1; }
            sink += (uint64_t)st.st_ino;
        }
    } else if (strcmp(mode, "open") == 0) {
        for (long i = 0; i < n; i++) {
            int fd = open("/etc/hostname", O_RDONLY | O_CLOEXEC);
            if (fd < 0) { perror("open /etc/hostname"); return 1; }
            sink += (uint64_t)read(fd, buf, sizeof buf);
            close(fd);
        }
    } else if (strcmp(mode, "cpu") == 0) {
        uint64_t h = 1469598103934665603ull;
        for (long i = 0; i < n; i++) {
            h ^= (uint64_t)i;
            h *= 1099511628211ull;
            h ^= h >> 29;
        }
        sink = h;
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    uint64_t t1 = now_ns(CLOCK_MONOTONIC);
    uint64_t c1 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
    printf("%llu %llu %llu\n", (unsigned long long)(t1 - t0), (unsigned long long)(c1 - c0),
           (unsigned long long)(sink & 1));
    return 0;
}
