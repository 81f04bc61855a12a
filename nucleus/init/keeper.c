/*
 * The keeper: what a run's supervisor becomes (by exec, so with the same pid, and the
 * container's init stays its child) once the container is set up and its workload has run a
 * while. It holds what the supervisor held and waits, in a few hundred KiB instead of two
 * interpreters' ~19 MiB:
 *
 *     keeper INIT_PID FDS -- MONITOR ARGV... -- TEARDOWN ARGV...
 *     keeper --when-readable FD -- ARGV...
 *
 * - It forwards the signals sent to it on purpose (kill, sigqueue, tkill: si_code <= 0) of
 *   SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH to the init, and reaps every
 *   child that ends (it is a subreaper, as the supervisor was).
 * - FDS, a comma-separated list of descriptors ("-": none), are the violation monitor's: the
 *   container's seccomp listener and the audit reader. When one becomes readable (a refused
 *   call waits for its answer, an audit record came) and no monitor runs, it starts the monitor
 *   (MONITOR ARGV, with an empty signal mask) and watches them no more until that monitor has
 *   exited: the waiting call is answered once the monitor is up, so nothing is lost. A
 *   descriptor that hangs up without data is dropped; a monitor that fails while the init runs
 *   has them closed. Each must be open when this program starts (exit 125 otherwise). The
 *   monitor inherits the teardown's memory file too (sealed: it cannot change it), and closes
 *   it with every descriptor not its own before it serves (nucleus.effects.refusals.run).
 * - When the init has ended (and a running monitor has finished too, or been killed REAP_WAIT
 *   seconds after the init was reaped) it executes TEARDOWN ARGV with the init's exit status
 *   appended (its exit code, or 128+N when signal N ended it): the
 *   supervisor's own teardown, which releases what the container held, writes its record and
 *   trace, and exits with that status.
 * - The audit reader is subscribed to every record of the host, filtered to the types the
 *   monitor reads (nucleus.effects.monitor.audit_filter): another container's Landlock denial
 *   or an audited call still starts a monitor, which finds it is not its container's and ends
 *   IDLE_END seconds later with exit status NOTHING_OURS. Telling them apart here would take the
 *   monitor's own parsing and /proc lookups in C. Instead the audit reader (the watched
 *   descriptor that is a socket) is then watched no more for a while, 1 s after the first such
 *   monitor and twice as long after each next one, up to 30 s, until a monitor finds something
 *   of its container's: the records wait in the reader's buffer (4 MiB) meanwhile, recorded
 *   late, not lost (unless they overflow it). The listener is watched throughout: a refused
 *   call starts a monitor at once, which reads the audit reader too.
 * - The init is signalled through a pidfd, never by pid: once it is reaped, its pid may name
 *   another process.
 *
 * The second form waits until FD is readable (or hung up) and executes ARGV: a detached
 * supervisor's logger (nucleus.effects.logs) waits so between bursts of output, as a few KiB
 * rather than an interpreter.
 *
 * The supervisor keeps the signals above and SIGCHLD blocked across both execs, so none sent
 * meanwhile is lost: they are read here from a signalfd, then inherited pending by the
 * teardown. Exit 125 (nucleus's own failure) when it cannot go on: the init is then killed
 * (its PID namespace goes with it) and what is left is a record with a supervisor gone, which
 * `nucleus rm --force` reclaims.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 8
#define REAP_WAIT_MS 2000 /* a monitor still running this long after the init was reaped is killed */
#define NOTHING_OURS 3 /* a monitor's exit status: it found nothing of its container's */
#define BACK_OFF_MS 1000 /* the audit reader unwatched after the first such monitor, */
#define BACK_OFF_MAX_MS 30000 /* twice as long after each next one, up to this */

static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};

static int fail(const char *what)
{
	dprintf(2, "nucleus: keeper: %s: %s\n", what, strerror(errno));
	return 125;
}

static int parse_int(const char *text, int *out)
{
	char *end;
	long value;

	errno = 0;
	value = strtol(text, &end, 10);
	if (errno || end == text || *end || value < 0 || value > 0x7fffffff)
		return -1;
	*out = (int)value;
	return 0;
}

static int parse_fds(char *text, int *fds)
{
	int n = 0;
	char *item, *save = NULL;

	if (strcmp(text, "-") == 0)
		return 0;
	for (item = strtok_r(text, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		if (n == MAX_FDS || parse_int(item, &fds[n]) < 0)
			return -1;
		n++;
	}
	return n;
}

static int init_fd = -1; /* the init's pidfd */

static void signal_init(int sig)
{
	syscall(SYS_pidfd_send_signal, init_fd, sig, NULL, 0);
}

/* Exit 125 once the init is killed: this program cannot go on. */
static int fail_killing(const char *what)
{
	int code = fail(what);

	signal_init(SIGKILL);
	return code;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* poll's timeout until `until` (a now_ms() value; -1: none) */
static int timeout(long long until)
{
	long long now = now_ms();

	return until < 0 ? -1 : until > now ? (int)(until - now) : 0;
}

static int status_of(int wstatus)
{
	return WIFSIGNALED(wstatus) ? 128 + WTERMSIG(wstatus) : WEXITSTATUS(wstatus);
}

/* A monitor that failed: the descriptors are closed, and the kernel fails every call the
 * filter refuses with ENOSYS from then on (still refused, no longer recorded), as when the
 * supervisor's monitor dies; rather than a call left waiting for an answer that never comes. */
static void drop(const int *fds, int *watched, int nfds)
{
	int i;

	dprintf(2, "nucleus: keeper: the violation monitor failed; refusals are no longer recorded\n");
	for (i = 0; i < nfds; i++) {
		if (watched[i])
			close(fds[i]);
		watched[i] = 0;
	}
}

static pid_t start_monitor(char **argv)
{
	/* Ignored before the exec (an ignored signal stays ignored across it), as the monitor
	 * ignores them itself: a terminal's ^C or hangup cannot end the recording meanwhile. */
	static const int ignored[] = { SIGINT, SIGQUIT, SIGHUP, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH, SIGPIPE };
	sigset_t none;
	pid_t keeper = getpid(), pid = fork();
	size_t i;

	if (pid != 0)
		return pid;
	for (i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++)
		signal(ignored[i], SIG_IGN);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != keeper)
		_exit(127);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execv(argv[0], argv);
	dprintf(2, "nucleus: keeper: cannot start the violation monitor %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

static int when_readable(int argc, char **argv)
{
	struct pollfd polled;
	int fd;

	if (argc < 5 || parse_int(argv[2], &fd) < 0 || strcmp(argv[3], "--") != 0) {
		dprintf(2, "usage: keeper --when-readable FD -- ARGV...\n");
		return 125;
	}
	polled.fd = fd;
	polled.events = POLLIN;
	while (poll(&polled, 1, -1) < 0) {
		if (errno != EINTR)
			return fail("poll");
	}
	execv(argv[4], &argv[4]);
	return fail("execv");
}

int main(int argc, char **argv)
{
	int init_pid, fds[MAX_FDS], watched[MAX_FDS], is_socket[MAX_FDS], nfds, i, sigfd, status = -1;
	char **monitor, **teardown, *arg;
	char code[16];
	pid_t running = 0;
	long long reaped_at = 0, back_off = 0, unwatched_until = 0;
	sigset_t mask;

	if (argc > 1 && strcmp(argv[1], "--when-readable") == 0)
		return when_readable(argc, argv);
	if (argc < 5 || parse_int(argv[1], &init_pid) < 0 || init_pid == 0 ||
	    (nfds = parse_fds(argv[2], fds)) < 0 || strcmp(argv[3], "--") != 0) {
		dprintf(2, "usage: keeper INIT_PID FDS -- MONITOR ARGV... -- TEARDOWN ARGV...\n");
		return 125;
	}
	monitor = &argv[4];
	for (i = 4; i < argc && strcmp(argv[i], "--") != 0; i++)
		;
	if (i >= argc - 1 || (nfds > 0 && i == 4)) {
		dprintf(2, "usage: keeper INIT_PID FDS -- MONITOR ARGV... -- TEARDOWN ARGV...\n");
		return 125;
	}
	argv[i] = NULL; /* the monitor's argv ends here */
	teardown = &argv[i + 1];
	for (i = 0; i < nfds; i++)
		watched[i] = 1;

	/* -1 (ESRCH) when the init was reaped already: it is then not a child, and the teardown
	 * is given 125, as below. */
	init_fd = (int)syscall(SYS_pidfd_open, init_pid, 0);
	for (i = 0; i < nfds; i++) {
		struct stat st;

		if (fstat(fds[i], &st) < 0)
			return fail_killing("a descriptor to watch");
		is_socket[i] = S_ISSOCK(st.st_mode); /* the audit reader; the listener is an anon inode */
	}

	sigemptyset(&mask);
	for (i = 0; i < (int)(sizeof(forwarded) / sizeof(forwarded[0])); i++)
		sigaddset(&mask, forwarded[i]);
	sigaddset(&mask, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		return fail_killing("sigprocmask");
	sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sigfd < 0)
		return fail_killing("signalfd");

	for (;;) {
		struct pollfd polled[MAX_FDS + 1];
		struct signalfd_siginfo info;
		int n = 0, slot[MAX_FDS + 1];
		pid_t pid;
		int wstatus;

		/* Reaped before each wait: a child that ended before this program ran is seen too. */
		while ((pid = waitpid(-1, &wstatus, WNOHANG)) > 0) {
			if (pid == init_pid) {
				status = status_of(wstatus);
				reaped_at = now_ms();
			} else if (pid == running) {
				running = 0;
				if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == NOTHING_OURS) {
					back_off = back_off ? (2 * back_off < BACK_OFF_MAX_MS ? 2 * back_off : BACK_OFF_MAX_MS)
							    : BACK_OFF_MS;
					unwatched_until = now_ms() + back_off;
				} else if (status_of(wstatus) == 0) {
					back_off = 0;
				} else if (status < 0) {
					/* After the init, the teardown's monitor takes them up (killed: see below). */
					drop(fds, watched, nfds);
				}
			}
		}
		if (pid < 0 && errno == ECHILD) {
			if (status < 0)
				status = 125; /* the init is not (any more) a child of this process */
			running = 0;
		}
		if (status >= 0 && running == 0)
			break;
		if (status >= 0 && now_ms() - reaped_at >= REAP_WAIT_MS) {
			/* Its own end is bounded (a deadline, IDLE_END) but not by what the host does
			 * meanwhile; a teardown is. What it left unwritten, the teardown's monitor writes. */
			kill(running, SIGKILL); /* an unreaped child: its pid is its own */
			reaped_at = now_ms(); /* and if SIGKILL could not end it either, again later */
		}

		polled[n].fd = sigfd;
		polled[n].events = POLLIN;
		slot[n++] = -1;
		for (i = 0; i < nfds && running == 0 && status < 0; i++) {
			if (!watched[i] || (is_socket[i] && now_ms() < unwatched_until))
				continue;
			polled[n].fd = fds[i];
			polled[n].events = POLLIN;
			slot[n++] = i;
		}
		if (poll(polled, n, timeout(status < 0 ? (running == 0 && unwatched_until > now_ms() ? unwatched_until : -1)
						       : reaped_at + REAP_WAIT_MS)) < 0) {
			if (errno == EINTR)
				continue;
			return status < 0 ? fail_killing("poll") : fail("poll");
		}
		for (i = 1; i < n; i++) {
			if (polled[i].revents & POLLIN) {
				if (running == 0) {
					running = start_monitor(monitor);
					if (running < 0) {
						running = 0;
						dprintf(2, "nucleus: keeper: cannot fork the violation monitor: %s\n",
							strerror(errno));
						/* backs off: the descriptors stay readable */
						nanosleep(&(struct timespec){ .tv_nsec = 100000000 }, NULL);
					}
				}
			} else if (polled[i].revents & (POLLHUP | POLLERR | POLLNVAL)) {
				watched[slot[i]] = 0;
			}
		}
		/* Forwarded: those sent on purpose (si_code <= 0: kill, sigqueue, tkill); a terminal's
		 * reach the workload's process group directly. SIGCHLD only wakes the loop. Only while
		 * the init is not reaped (its pidfd would fail then anyway). */
		while (read(sigfd, &info, sizeof(info)) == (ssize_t)sizeof(info)) {
			if (info.ssi_signo != SIGCHLD && info.ssi_code <= 0 && status < 0)
				signal_init((int)info.ssi_signo);
		}
	}

	for (i = 0; teardown[i]; i++)
		;
	arg = code;
	snprintf(code, sizeof(code), "%d", status);
	{
		char *args[i + 2];

		memcpy(args, teardown, (size_t)i * sizeof(char *));
		args[i] = arg;
		args[i + 1] = NULL;
		execv(args[0], args);
	}
	return fail("cannot execute the teardown");
}
