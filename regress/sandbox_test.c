/*
 * The sandbox of each child, tried the way the daemon applies it:
 * chroot, drop to an unprivileged user, sandbox_<proc>(), then what the
 * process must still be able to do and what it must not.  Every act runs
 * in a fork of its own.  chroot and setuid need root; without it only the
 * Landlock probe runs and the rest is SKIPped.
 */

#include <sys/types.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "monalpushd.h"
#include "regress.h"

#define TEST_USER	"nobody"
#define TEST_TIMEOUT	5		/* seconds any child may take */
#define TEST_POLL_MS	(TEST_TIMEOUT * 1000)
#define TEST_LOGDIR	"/logs"		/* in logd's test chroot */
#define EXIT_SETUP	90		/* the child could not set up */
#define EXIT_UNEXPECTED	91		/* the act went otherwise */

struct tproc {
	const char	*tp_name;
	void		(*tp_sandbox)(void);
	const char	*tp_root;	/* NULL: no chroot, no privdrop */
	int		 tp_net;	/* AF_INET sockets and connect */
	int		 tp_logd;
};

static struct passwd	*test_pw;
static char		 test_logroot[] = "/tmp/sandbox_test.XXXXXX";
static struct event_base *test_base;

static void
sandbox_logd_test(void)
{
	sandbox_logd(TEST_LOGDIR);
}

/* The child's set-up in the daemon's order; sandbox last. */
static void
child_enter(const struct tproc *tp)
{
	struct rlimit	 rl = { 0, 0 };

	alarm(TEST_TIMEOUT);
	(void)setrlimit(RLIMIT_CORE, &rl);	/* SIGSYS dumps core */
	if (tp->tp_root != NULL) {
		if (chroot(tp->tp_root) == -1 || chdir("/") == -1) {
			perror("chroot");
			_exit(EXIT_SETUP);
		}
		if (setgroups(1, &test_pw->pw_gid) == -1 ||
		    setresgid(test_pw->pw_gid, test_pw->pw_gid,
		    test_pw->pw_gid) == -1 ||
		    setresuid(test_pw->pw_uid, test_pw->pw_uid,
		    test_pw->pw_uid) == -1) {
			perror("privdrop");
			_exit(EXIT_SETUP);
		}
	}
	if ((test_base = event_base_new()) == NULL)
		_exit(EXIT_SETUP);
	tp->tp_sandbox();
}

static pid_t
child_start(const struct tproc *tp, int (*act)(const struct tproc *,
    const void *), const void *arg)
{
	pid_t	 pid;

	fflush(stdout);
	if ((pid = fork()) == -1) {
		perror("fork");
		exit(1);
	}
	if (pid == 0) {
		child_enter(tp);
		_exit(act(tp, arg));
	}
	return (pid);
}

/* The child's alarm bounds this wait. */
static int
child_wait(pid_t pid)
{
	int	 status;

	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			return (-1);
	return (status);
}

static int
child_run(const struct tproc *tp, int (*act)(const struct tproc *,
    const void *), const void *arg)
{
	return (child_wait(child_start(tp, act, arg)));
}

#define EXITED_OK(st)	(WIFEXITED(st) && WEXITSTATUS(st) == 0)
#define KILLED_SYS(st)	(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS)

/* (a) the event loop: a descriptor over the socketpair, then use it */

struct loop {
	int		 lp_ctl;
	int		 lp_fd;		/* received */
	int		 lp_sock;
	uint16_t	 lp_port;
	int		 lp_ok;
	struct event	*lp_ev;
};

static void
loop_conn_cb(int s, short event, void *arg)
{
	struct loop	*lp = arg;
	int		 err = -1;
	socklen_t	 len = sizeof(err);

	if (getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
	    err == 0 && write(s, "tcp", 3) == 3)
		lp->lp_ok = 1;
	else
		fprintf(stderr, "connect: %s\n", strerror(err));
	close(s);
	event_base_loopbreak(test_base);
}

static void
loop_ctl_cb(int ctl, short event, void *arg)
{
	struct loop		*lp = arg;
	struct msghdr		 msg;
	struct iovec		 iov;
	struct cmsghdr		*cm;
	union {
		struct cmsghdr	 hdr;
		char		 buf[CMSG_SPACE(sizeof(int))];
	}			 cmsgbuf;
	struct sockaddr_in	 sin;

	memset(&msg, 0, sizeof(msg));
	iov.iov_base = &lp->lp_port;
	iov.iov_len = sizeof(lp->lp_port);
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = &cmsgbuf.buf;
	msg.msg_controllen = sizeof(cmsgbuf.buf);
	if (recvmsg(ctl, &msg, MSG_CMSG_CLOEXEC) != sizeof(lp->lp_port) ||
	    (cm = CMSG_FIRSTHDR(&msg)) == NULL ||
	    cm->cmsg_type != SCM_RIGHTS) {
		fprintf(stderr, "recvmsg: no descriptor\n");
		event_base_loopbreak(test_base);
		return;
	}
	memcpy(&lp->lp_fd, CMSG_DATA(cm), sizeof(int));
	if (write(lp->lp_fd, "hello", 5) != 5) {
		event_base_loopbreak(test_base);
		return;
	}
	if (lp->lp_port == 0) {
		lp->lp_ok = 1;
		event_base_loopbreak(test_base);
		return;
	}
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(lp->lp_port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((lp->lp_sock = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK,
	    0)) == -1 || (connect(lp->lp_sock, (struct sockaddr *)&sin,
	    sizeof(sin)) == -1 && errno != EINPROGRESS)) {
		perror("socket/connect");
		event_base_loopbreak(test_base);
		return;
	}
	lp->lp_ev = event_new(test_base, lp->lp_sock, EV_WRITE,
	    loop_conn_cb, lp);
	event_add(lp->lp_ev, NULL);
}

/* logd's daily work: create, append, sync, rename, list, remove. */
static int
logd_files(void)
{
	DIR		*d;
	struct dirent	*de;
	int		 fd, found = 0;

	if ((fd = open(TEST_LOGDIR "/day.log", O_WRONLY | O_APPEND |
	    O_CREAT | O_CLOEXEC, 0640)) == -1 ||
	    write(fd, "line\n", 5) != 5 || fsync(fd) == -1 ||
	    ftruncate(fd, 0) == -1 || close(fd) == -1) {
		perror("logd: write");
		return (-1);
	}
	if (rename(TEST_LOGDIR "/day.log", TEST_LOGDIR "/old.log") == -1) {
		perror("logd: rename");
		return (-1);
	}
	if ((d = opendir(TEST_LOGDIR)) == NULL) {
		perror("logd: opendir");
		return (-1);
	}
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, "old.log") == 0)
			found = 1;
	closedir(d);
	if (!found || unlink(TEST_LOGDIR "/old.log") == -1) {
		fprintf(stderr, "logd: readdir/unlink\n");
		return (-1);
	}
	return (0);
}

static int
act_loop(const struct tproc *tp, const void *arg)
{
	struct loop	 lp;
	struct event	*ev;

	memset(&lp, 0, sizeof(lp));
	lp.lp_ctl = *(const int *)arg;
	ev = event_new(test_base, lp.lp_ctl, EV_READ, loop_ctl_cb, &lp);
	event_add(ev, NULL);
	event_base_dispatch(test_base);
	if (!lp.lp_ok)
		return (EXIT_UNEXPECTED);
	if (tp->tp_logd && logd_files() == -1)
		return (EXIT_UNEXPECTED);
	return (0);
}

static int
send_fd(int sock, int fd, uint16_t port)
{
	struct msghdr	 msg;
	struct iovec	 iov;
	struct cmsghdr	*cm;
	union {
		struct cmsghdr	 hdr;
		char		 buf[CMSG_SPACE(sizeof(int))];
	}		 cmsgbuf;

	memset(&msg, 0, sizeof(msg));
	memset(&cmsgbuf, 0, sizeof(cmsgbuf));
	iov.iov_base = &port;
	iov.iov_len = sizeof(port);
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = &cmsgbuf.buf;
	msg.msg_controllen = sizeof(cmsgbuf.buf);
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return (sendmsg(sock, &msg, 0) == sizeof(port) ? 0 : -1);
}

/* Read exactly `want' within the time limit. */
static int
read_expect(int fd, const char *want)
{
	struct pollfd	 pfd = { fd, POLLIN, 0 };
	char		 buf[16];
	size_t		 len = strlen(want);
	ssize_t		 n;

	if (poll(&pfd, 1, TEST_POLL_MS) != 1)
		return (-1);
	if ((n = read(fd, buf, sizeof(buf))) != (ssize_t)len)
		return (-1);
	return (memcmp(buf, want, len) == 0 ? 0 : -1);
}

static void
test_loop(const struct tproc *tp)
{
	struct sockaddr_in	 sin;
	socklen_t		 slen = sizeof(sin);
	struct pollfd		 pfd;
	int			 sp[2], pp[2], lfd = -1, cfd = -1, st;
	int			 got_hello, got_tcp = 0;
	uint16_t		 port = 0;
	pid_t			 pid;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == -1 ||
	    pipe(pp) == -1) {
		CHECK(0, "%s: socketpair/pipe: %s", tp->tp_name,
		    strerror(errno));
		return;
	}
	if (tp->tp_net) {
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if ((lfd = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
		    bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
		    listen(lfd, 1) == -1 ||
		    getsockname(lfd, (struct sockaddr *)&sin, &slen) == -1) {
			CHECK(0, "%s: listener: %s", tp->tp_name,
			    strerror(errno));
			return;
		}
		port = ntohs(sin.sin_port);
	}
	fflush(stdout);
	if ((pid = fork()) == -1) {
		perror("fork");
		exit(1);
	}
	if (pid == 0) {
		/* Only the socketpair goes in, as in the daemon. */
		close(sp[0]);
		close(pp[0]);
		close(pp[1]);
		if (lfd != -1)
			close(lfd);
		child_enter(tp);
		_exit(act_loop(tp, &sp[1]));
	}
	close(sp[1]);
	if (send_fd(sp[0], pp[1], port) == -1)
		CHECK(0, "%s: sendmsg: %s", tp->tp_name, strerror(errno));
	close(pp[1]);
	got_hello = read_expect(pp[0], "hello") == 0;
	if (tp->tp_net) {
		pfd.fd = lfd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, TEST_POLL_MS) == 1 &&
		    (cfd = accept(lfd, NULL, NULL)) != -1)
			got_tcp = read_expect(cfd, "tcp") == 0;
	}
	st = child_wait(pid);
	CHECK(got_hello, "%s: event loop: recvmsg a descriptor, write to it",
	    tp->tp_name);
	if (tp->tp_net)
		CHECK(got_tcp, "%s: event loop: TCP connect to 127.0.0.1:%u",
		    tp->tp_name, port);
	CHECK(EXITED_OK(st), "%s: event loop child exits 0 (status %#x)",
	    tp->tp_name, st);
	close(sp[0]);
	close(pp[0]);
	if (cfd != -1)
		close(cfd);
	if (lfd != -1)
		close(lfd);
}

/* (b) one act each */

struct open_act {
	const char	*oa_path;
	int		 oa_flags;
	int		 oa_allowed;
};

static int
act_open(const struct tproc *tp, const void *arg)
{
	const struct open_act	*oa = arg;
	int			 fd;

	fd = open(oa->oa_path, oa->oa_flags, 0640);
	if ((fd != -1) != oa->oa_allowed) {
		fprintf(stderr, "%s: open %s: %s\n", tp->tp_name, oa->oa_path,
		    fd == -1 ? strerror(errno) : "allowed");
		return (EXIT_UNEXPECTED);
	}
	if (fd != -1 && (oa->oa_flags & O_CREAT))
		unlink(oa->oa_path);
	return (0);
}

static int
act_execve(const struct tproc *tp, const void *arg)
{
	char	*argv[] = { "sh", "-c", "true", NULL };

	execve("/bin/sh", argv, NULL);
	return (EXIT_UNEXPECTED);
}

static int
act_socket(const struct tproc *tp, const void *arg)
{
	int	 family = *(const int *)arg, allowed, fd;

	allowed = tp->tp_net && (family == AF_INET || family == AF_INET6);
	fd = socket(family, family == AF_PACKET ? SOCK_RAW : SOCK_DGRAM, 0);
	if (allowed)
		return (fd != -1 ? 0 : EXIT_UNEXPECTED);
	return (fd == -1 && errno == EAFNOSUPPORT ? 0 : EXIT_UNEXPECTED);
}

static int
act_connect(const struct tproc *tp, const void *arg)
{
	struct sockaddr_in	 sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	(void)connect(0, (struct sockaddr *)&sin, sizeof(sin));
	return (EXIT_UNEXPECTED);
}

static int
act_mmap_exec(const struct tproc *tp, const void *arg)
{
	void	*p;

	p = mmap(NULL, 4096, PROT_READ | PROT_EXEC,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return (p == MAP_FAILED && errno == EPERM ? 0 : EXIT_UNEXPECTED);
}

/*
 * Tell the parent we are sandboxed, then wait until it has looked:
 * fds are ready's write end, hold's read end, and the two ends the
 * parent keeps.
 */
static int
act_hold(const struct tproc *tp, const void *arg)
{
	const int	*fds = arg;
	char		 c = 'r';

	close(fds[2]);
	close(fds[3]);
	if (write(fds[0], &c, 1) != 1)
		return (EXIT_UNEXPECTED);
	(void)read(fds[1], &c, 1);
	return (0);
}

static int
status_has(pid_t pid, const char *line)
{
	char	 path[64], buf[4096];
	ssize_t	 n;
	int	 fd;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((fd = open(path, O_RDONLY)) == -1)
		return (0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return (0);
	buf[n] = '\0';
	return (strstr(buf, line) != NULL);
}

static void
test_status(const struct tproc *tp)
{
	int	 ready[2], hold[2], fds[4], st;
	char	 uidline[64];
	pid_t	 pid;

	if (pipe(ready) == -1 || pipe(hold) == -1) {
		CHECK(0, "%s: pipe: %s", tp->tp_name, strerror(errno));
		return;
	}
	fds[0] = ready[1];
	fds[1] = hold[0];
	fds[2] = hold[1];
	fds[3] = ready[0];
	pid = child_start(tp, act_hold, fds);
	close(ready[1]);
	close(hold[0]);
	CHECK(read_expect(ready[0], "r") == 0, "%s: child sandboxed",
	    tp->tp_name);
	CHECK(status_has(pid, "\nSeccomp:\t2\n"), "%s: Seccomp:\\t2",
	    tp->tp_name);
	CHECK(status_has(pid, "\nNoNewPrivs:\t1\n"), "%s: NoNewPrivs:\\t1",
	    tp->tp_name);
	if (tp->tp_root != NULL) {
		snprintf(uidline, sizeof(uidline), "\nUid:\t%u\t%u\t%u\t",
		    test_pw->pw_uid, test_pw->pw_uid, test_pw->pw_uid);
		CHECK(status_has(pid, uidline), "%s: runs as %s",
		    tp->tp_name, TEST_USER);
	}
	close(hold[1]);
	st = child_wait(pid);
	CHECK(EXITED_OK(st), "%s: held child exits 0 (status %#x)",
	    tp->tp_name, st);
	close(ready[0]);
}

static void
test_forbidden(const struct tproc *tp)
{
	static const int	 families[] = { AF_PACKET, AF_NETLINK, AF_UNIX,
				    AF_INET, AF_INET6 };
	static const char	*fnames[] = { "AF_PACKET", "AF_NETLINK",
				    "AF_UNIX", "AF_INET", "AF_INET6" };
	struct open_act		 oa;
	size_t			 i;
	int			 st, allowed;

	st = child_run(tp, act_execve, NULL);
	CHECK(KILLED_SYS(st), "%s: execve /bin/sh killed by SIGSYS "
	    "(status %#x)", tp->tp_name, st);

	for (i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
		allowed = tp->tp_net && (families[i] == AF_INET ||
		    families[i] == AF_INET6);
		st = child_run(tp, act_socket, &families[i]);
		CHECK(EXITED_OK(st), "%s: socket(%s) %s (status %#x)",
		    tp->tp_name, fnames[i], allowed ? "allowed" :
		    "fails with EAFNOSUPPORT", st);
	}

	st = child_run(tp, act_mmap_exec, NULL);
	CHECK(EXITED_OK(st), "%s: mmap PROT_EXEC fails with EPERM "
	    "(status %#x)", tp->tp_name, st);

	if (tp->tp_logd) {
		st = child_run(tp, act_connect, NULL);
		CHECK(KILLED_SYS(st), "%s: connect killed by SIGSYS "
		    "(status %#x)", tp->tp_name, st);
		oa.oa_path = "/outside.txt";
		oa.oa_flags = O_RDONLY;
		oa.oa_allowed = 0;
		st = child_run(tp, act_open, &oa);
		CHECK(EXITED_OK(st), "%s: open outside the log directory "
		    "fails", tp->tp_name);
		oa.oa_path = "/new.txt";
		oa.oa_flags = O_WRONLY | O_CREAT;
		st = child_run(tp, act_open, &oa);
		CHECK(EXITED_OK(st), "%s: create outside the log directory "
		    "fails", tp->tp_name);
		oa.oa_path = TEST_LOGDIR "/inside.txt";
		oa.oa_allowed = 1;
		st = child_run(tp, act_open, &oa);
		CHECK(EXITED_OK(st), "%s: create inside the log directory "
		    "succeeds", tp->tp_name);
	} else {
		oa.oa_path = "/etc/passwd";
		oa.oa_flags = O_RDONLY;
		oa.oa_allowed = 0;
		st = child_run(tp, act_open, &oa);
		CHECK(EXITED_OK(st), "%s: open /etc/passwd fails",
		    tp->tp_name);
	}
	/* The chroot's own root exists: only the sandbox can refuse it. */
	oa.oa_path = "/";
	oa.oa_flags = O_RDONLY | O_DIRECTORY;
	oa.oa_allowed = 0;
	st = child_run(tp, act_open, &oa);
	CHECK(EXITED_OK(st), "%s: open / fails", tp->tp_name);
}

static void
test_parent(void)
{
	struct tproc	 tp = { "parent", sandbox_parent, NULL, 0, 0 };
	struct open_act	 oa = { "/etc/passwd", O_RDONLY, 1 };
	int		 st;

	test_status(&tp);
	st = child_run(&tp, act_execve, NULL);
	CHECK(KILLED_SYS(st), "parent: execve /bin/sh killed by SIGSYS "
	    "(status %#x)", st);
	st = child_run(&tp, act_open, &oa);
	CHECK(EXITED_OK(st), "parent: still reads files (reload)");
}

static int
rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return (remove(path));
}

static int
setup_roots(void)
{
	char	 path[PATH_MAX];
	int	 fd;

	if (mkdir(MONALPUSHD_CHROOT, 0755) == -1 && errno != EEXIST)
		return (-1);
	if (mkdtemp(test_logroot) == NULL || chmod(test_logroot, 0755) == -1)
		return (-1);
	snprintf(path, sizeof(path), "%s%s", test_logroot, TEST_LOGDIR);
	if (mkdir(path, 0750) == -1 ||
	    chown(path, test_pw->pw_uid, test_pw->pw_gid) == -1)
		return (-1);
	/* Readable by anyone: only the sandbox keeps logd out. */
	snprintf(path, sizeof(path), "%s/outside.txt", test_logroot);
	if ((fd = open(path, O_WRONLY | O_CREAT, 0644)) == -1)
		return (-1);
	close(fd);
	/* And writable by logd's user, for the create outside. */
	return (chown(test_logroot, test_pw->pw_uid, test_pw->pw_gid));
}

int
main(void)
{
	struct tproc	 procs[] = {
		{ "xmppe", sandbox_xmppe, MONALPUSHD_CHROOT, 1, 0 },
		{ "apnse", sandbox_apnse, MONALPUSHD_CHROOT, 1, 0 },
		{ "logd", sandbox_logd_test, test_logroot, 0, 1 },
	};
	size_t		 i;
	int		 abi;

	log_init(1, 0);
	signal(SIGPIPE, SIG_IGN);
	abi = sandbox_landlock_abi();
	CHECK(abi >= 1, "landlock ABI %d", abi);

	if (geteuid() != 0) {
		printf("SKIP: sandbox: chroot and setuid need root\n");
		REGRESS_EXIT();
	}
	if ((test_pw = getpwnam(TEST_USER)) == NULL) {
		printf("SKIP: sandbox: no user %s\n", TEST_USER);
		REGRESS_EXIT();
	}
	if (setup_roots() == -1) {
		CHECK(0, "set up the chroots: %s", strerror(errno));
		if (test_logroot[strlen(test_logroot) - 1] != 'X')
			(void)nftw(test_logroot, rm_cb, 8,
			    FTW_DEPTH | FTW_PHYS);
		REGRESS_EXIT();
	}
	for (i = 0; i < sizeof(procs) / sizeof(procs[0]); i++) {
		test_loop(&procs[i]);
		test_status(&procs[i]);
		test_forbidden(&procs[i]);
	}
	test_parent();
	(void)nftw(test_logroot, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
	REGRESS_EXIT();
}
