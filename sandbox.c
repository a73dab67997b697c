/*
 * The sandbox of each process, applied last in its set-up, after chroot
 * and the privilege drop.
 *
 * OpenBSD: pledge(2) and unveil(2).
 * Linux: no_new_privs, Landlock for the file system (the ABI probed at
 * run time, not taken from the headers), and a seccomp-bpf filter per
 * process: an allow list with a killing default for the children, a
 * short deny list for the parent.  A kernel without Landlock or seccomp
 * is reported once in the log and the process goes on with the rest.
 */

#include <sys/types.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "monalpushd.h"

#ifdef __OpenBSD__

void
sandbox_parent(void)
{
	/*
	 * Reload re-reads the configuration and keys and may bind new
	 * listeners; the database and the control socket stay open.
	 */
	if (pledge("stdio rpath wpath cpath fattr flock unix inet dns "
	    "sendfd proc", NULL) == -1)
		fatal("%s: pledge", __func__);
}

/* xmppe and apnse: the network, descriptors from the parent, no files. */
static void
sandbox_network(const char *who)
{
	if (unveil("/", "") == -1 || unveil(NULL, NULL) == -1)
		fatal("%s: unveil", who);
	if (pledge("stdio inet dns recvfd", NULL) == -1)
		fatal("%s: pledge", who);
}

void
sandbox_xmppe(void)
{
	sandbox_network(__func__);
}

void
sandbox_apnse(void)
{
	sandbox_network(__func__);
}

void
sandbox_logd(const char *logdir)
{
	if (unveil(logdir, "rwc") == -1)
		fatal("%s: unveil %s", __func__, logdir);
	if (unveil(NULL, NULL) == -1)
		fatal("%s: unveil", __func__);
	if (pledge("stdio rpath wpath cpath", NULL) == -1)
		fatal("%s: pledge", __func__);
}

int
sandbox_landlock_abi(void)
{
	return (-1);
}

#elif defined(__linux__)

#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <endian.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include "landlock.h"

#if defined(__x86_64__)
#define SB_AUDIT_ARCH		AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SB_AUDIT_ARCH		AUDIT_ARCH_AARCH64
#endif

#ifdef SANDBOX_DEBUG
#define SB_RET_DENY		SECCOMP_RET_TRAP
#else
#define SB_RET_DENY		SECCOMP_RET_KILL_PROCESS
#endif

#define SB_FILTER_MAX		1024	/* instructions; the kernel: 4096 */

#if __BYTE_ORDER == __LITTLE_ENDIAN
#define SB_ARG_LO(i)	(offsetof(struct seccomp_data, args) +		\
			    (i) * sizeof(uint64_t))
#else
#define SB_ARG_LO(i)	(offsetof(struct seccomp_data, args) +		\
			    (i) * sizeof(uint64_t) + sizeof(uint32_t))
#endif

/*
 * One filter rule.  Rules are tried in table order, so the rules of one
 * system call with arguments stand together, the permissive ones first,
 * and the hot calls of the event loop lead each table.  Arguments are
 * compared on their low 32 bits, which is all an int or a flag word has.
 */
enum sb_op {
	SB_ALLOW,		/* the call */
	SB_ALLOW_EQ,		/* the call if argument sr_arg == sr_val */
	SB_ALLOW_NOBITS,	/* the call if argument sr_arg & sr_val is 0 */
	SB_ERRNO,		/* fail the call with errno sr_val */
	SB_DENY			/* kill (SANDBOX_DEBUG: trap) */
};

struct sb_rule {
	enum sb_op	 sr_op;
	int		 sr_nr;
	int		 sr_arg;
	uint32_t	 sr_val;
};

#define ALLOW(call)		{ SB_ALLOW, __NR_##call, 0, 0 }
#define ALLOW_EQ(call, a, v)	{ SB_ALLOW_EQ, __NR_##call, (a), (v) }
#define ALLOW_NOBITS(call, a, m) { SB_ALLOW_NOBITS, __NR_##call, (a), (m) }
#define ERRNO(call, e)		{ SB_ERRNO, __NR_##call, 0, (e) }
#define DENY(call)		{ SB_DENY, __NR_##call, 0, 0 }

/*
 * What every child needs: the event loop (libevent on epoll), imsg over
 * its socketpairs, malloc, time, randomness, signals and exit.  glibc
 * may take either the old or the new call, so both are listed where an
 * architecture has both.
 */
static const struct sb_rule sb_stdio[] = {
#ifdef __NR_epoll_wait
	ALLOW(epoll_wait),
#endif
	ALLOW(epoll_pwait),
#ifdef __NR_epoll_pwait2
	ALLOW(epoll_pwait2),
#endif
	ALLOW(read),
	ALLOW(write),
	ALLOW(readv),
	ALLOW(writev),
	ALLOW(recvmsg),
	ALLOW(sendmsg),
	ALLOW(recvfrom),
	ALLOW(sendto),
	ALLOW(epoll_ctl),
	ALLOW(clock_gettime),
	ALLOW(gettimeofday),
#ifdef __NR_time
	ALLOW(time),
#endif
	ALLOW(clock_getres),
#ifdef __NR_poll
	ALLOW(poll),
#endif
	ALLOW(ppoll),
#ifdef __NR_select
	ALLOW(select),
#endif
	ALLOW(pselect6),
	ALLOW(close),
	ALLOW(fcntl),
	ALLOW_EQ(ioctl, 1, FIONREAD),	/* libevent sizes its reads */
	ERRNO(ioctl, ENOTTY),		/* isatty() and the like */
	ALLOW(brk),
	ALLOW_NOBITS(mmap, 2, PROT_EXEC),
	ERRNO(mmap, EPERM),
	ALLOW_NOBITS(mprotect, 2, PROT_EXEC),
	ERRNO(mprotect, EPERM),
	ALLOW(munmap),
	ALLOW(mremap),
	ALLOW(madvise),
	ALLOW(futex),
	ALLOW(getrandom),
	ALLOW(getpid),
	ALLOW(gettid),
	ALLOW(getuid),
	ALLOW(geteuid),
	ALLOW(getgid),
	ALLOW(getegid),
#ifdef __NR_fstat
	ALLOW(fstat),
#endif
	ALLOW(newfstatat),
	ALLOW(statx),
	ALLOW(lseek),
	ALLOW(dup),
#ifdef __NR_dup2
	ALLOW(dup2),
#endif
	ALLOW(dup3),
#ifdef __NR_pipe
	ALLOW(pipe),
#endif
	ALLOW(pipe2),
	ALLOW(eventfd2),
#ifdef __NR_epoll_create
	ALLOW(epoll_create),
#endif
	ALLOW(epoll_create1),
	ALLOW(timerfd_create),
	ALLOW(timerfd_settime),
	ALLOW(getsockopt),
	ALLOW(shutdown),
	ALLOW(rt_sigaction),
	ALLOW(rt_sigprocmask),
	ALLOW(rt_sigreturn),
	ALLOW(sigaltstack),
	ALLOW(tgkill),			/* abort(3); Landlock scopes it */
	ALLOW(nanosleep),
	ALLOW(clock_nanosleep),
	ALLOW(sched_yield),
	ALLOW(uname),
	ALLOW(sysinfo),			/* libssl: a cache sized by memory */
	ALLOW(restart_syscall),
	ALLOW(exit),
	ALLOW(exit_group),
};

/*
 * The network children.  Their file system is nothing at all: opening
 * fails as the kernel would (OpenSSL and libunbound probe for files and
 * cope), Landlock stands behind it.  Only IPv4 and IPv6 sockets: other
 * families fail with EAFNOSUPPORT, as on a kernel without them, so a
 * library that probes one goes on and a test can see the refusal.  bind
 * is for libunbound's randomised UDP ports; Landlock forbids a TCP bind.
 */
static const struct sb_rule sb_xmppe[] = {
	ALLOW(connect),
	ALLOW(accept4),
	ALLOW(accept),
	ALLOW(setsockopt),
	ALLOW(getsockname),
	ALLOW(getpeername),
	ALLOW_EQ(socket, 0, AF_INET),
	ALLOW_EQ(socket, 0, AF_INET6),
	ERRNO(socket, EAFNOSUPPORT),
	ALLOW(bind),
	ERRNO(openat, EACCES),
#ifdef __NR_open
	ERRNO(open, EACCES),
#endif
};

static const struct sb_rule sb_apnse[] = {
	ALLOW(connect),
	ALLOW(setsockopt),
	ALLOW(getsockname),
	ALLOW(getpeername),
	ALLOW_EQ(socket, 0, AF_INET),
	ALLOW_EQ(socket, 0, AF_INET6),
	ERRNO(socket, EAFNOSUPPORT),
	ALLOW(bind),
	ERRNO(openat, EACCES),
#ifdef __NR_open
	ERRNO(open, EACCES),
#endif
};

/*
 * logd: files beneath its directory (Landlock decides which paths) and
 * no network at all.
 */
static const struct sb_rule sb_logd[] = {
	ALLOW(openat),
#ifdef __NR_open
	ALLOW(open),
#endif
	ALLOW(fsync),
	ALLOW(fdatasync),
	ALLOW(ftruncate),
	ALLOW(getdents64),
	ALLOW(unlinkat),
#ifdef __NR_unlink
	ALLOW(unlink),
#endif
	ALLOW(renameat),
	ALLOW(renameat2),
#ifdef __NR_rename
	ALLOW(rename),
#endif
	ERRNO(socket, EAFNOSUPPORT),
};

/*
 * The parent forks, binds, opens the database and reads any
 * configured path on reload, so an allow list would be a guess; it
 * gets no_new_privs and this deny list of what it never does.
 */
static const struct sb_rule sb_parent[] = {
	DENY(execve),
	DENY(execveat),
	DENY(ptrace),
	DENY(process_vm_readv),
	DENY(process_vm_writev),
	DENY(bpf),
	DENY(perf_event_open),
	DENY(userfaultfd),
	DENY(kexec_load),
	DENY(kexec_file_load),
	DENY(init_module),
	DENY(finit_module),
	DENY(delete_module),
	DENY(mount),
	DENY(umount2),
	DENY(pivot_root),
	DENY(swapon),
	DENY(swapoff),
	DENY(reboot),
	DENY(setns),
	DENY(unshare),
	DENY(keyctl),
	DENY(add_key),
	DENY(request_key),
	DENY(open_by_handle_at),
#ifdef __NR_iopl
	DENY(iopl),
	DENY(ioperm),
#endif
};

#define SB_NITEMS(a)		(sizeof(a) / sizeof((a)[0]))

struct sb_prog {
	struct sock_filter	 sp_insn[SB_FILTER_MAX];
	unsigned short		 sp_len;
};

static int	 sb_ll_abi = -2;	/* not probed yet */
static int	 sb_ll_errno;

static void
sb_nnp(void)
{
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		fatal("%s: PR_SET_NO_NEW_PRIVS", __func__);
}

int
sandbox_landlock_abi(void)
{
	long	 abi;

	if (sb_ll_abi == -2) {
		abi = syscall(__NR_landlock_create_ruleset, NULL, 0,
		    LANDLOCK_CREATE_RULESET_VERSION);
		if (abi < 0) {
			sb_ll_errno = errno;
			sb_ll_abi = -1;
		} else
			sb_ll_abi = abi;
	}
	return (sb_ll_abi);
}

static uint64_t
sb_ll_fs_rights(int abi)
{
	uint64_t	 r;

	r = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
	    LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR |
	    LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
	    LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR |
	    LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK |
	    LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
	    LANDLOCK_ACCESS_FS_MAKE_SYM;
	if (abi >= 2)
		r |= LANDLOCK_ACCESS_FS_REFER;
	if (abi >= 3)
		r |= LANDLOCK_ACCESS_FS_TRUNCATE;
	if (abi >= 5)
		r |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
	return (r);
}

/*
 * Handle every file system right the kernel knows and allow `allow'
 * beneath `path' only (no path: no file system at all).  `netdeny' are
 * the TCP rights to take away, from ABI 4; from ABI 6 the process can
 * neither reach abstract UNIX sockets nor signal outside its domain.
 */
static void
sb_landlock(const char *path, uint64_t allow, uint64_t netdeny)
{
	struct compat_landlock_ruleset_attr	 attr;
	struct landlock_path_beneath_attr	 pb;
	size_t					 size;
	int					 abi, rfd;

	if ((abi = sandbox_landlock_abi()) == -1) {
		log_warnx("landlock not available: %s",
		    strerror(sb_ll_errno));
		return;
	}
	memset(&attr, 0, sizeof(attr));
	attr.handled_access_fs = sb_ll_fs_rights(abi);
	size = COMPAT_LANDLOCK_ATTR_SIZE_FS;
	if (abi >= 4) {
		attr.handled_access_net = netdeny;
		size = COMPAT_LANDLOCK_ATTR_SIZE_NET;
	}
	if (abi >= 6) {
		attr.scoped = LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET |
		    LANDLOCK_SCOPE_SIGNAL;
		size = COMPAT_LANDLOCK_ATTR_SIZE_SCOPE;
	}
	if ((rfd = syscall(__NR_landlock_create_ruleset, &attr, size,
	    0)) == -1)
		fatal("%s: landlock_create_ruleset (ABI %d)", __func__, abi);

	if (path != NULL) {
		memset(&pb, 0, sizeof(pb));
		pb.allowed_access = allow & attr.handled_access_fs;
		if ((pb.parent_fd = open(path, O_PATH | O_DIRECTORY |
		    O_CLOEXEC)) == -1)
			fatal("%s: open %s", __func__, path);
		if (syscall(__NR_landlock_add_rule, rfd,
		    LANDLOCK_RULE_PATH_BENEATH, &pb, 0) == -1)
			fatal("%s: landlock_add_rule %s", __func__, path);
		close(pb.parent_fd);
	}
	if (syscall(__NR_landlock_restrict_self, rfd, 0) == -1)
		fatal("%s: landlock_restrict_self", __func__);
	close(rfd);
	log_debug("%s: landlock ABI %d", __func__, abi);
}

static void
sb_emit(struct sb_prog *p, uint16_t code, uint32_t k, uint8_t jt,
    uint8_t jf)
{
	struct sock_filter	*f;

	if (p->sp_len >= SB_FILTER_MAX)
		fatalx("%s: filter longer than %d", __func__, SB_FILTER_MAX);
	f = &p->sp_insn[p->sp_len++];
	f->code = code;
	f->k = k;
	f->jt = jt;
	f->jf = jf;
}

/* The accumulator holds the call number on entry and on exit. */
static void
sb_compile_rule(struct sb_prog *p, const struct sb_rule *r)
{
	uint16_t	 ret = BPF_RET | BPF_K;
	uint16_t	 ldarg = BPF_LD | BPF_W | BPF_ABS;
	uint16_t	 jeq = BPF_JMP | BPF_JEQ | BPF_K;

	switch (r->sr_op) {
	case SB_ALLOW:
		sb_emit(p, jeq, r->sr_nr, 0, 1);
		sb_emit(p, ret, SECCOMP_RET_ALLOW, 0, 0);
		break;
	case SB_ERRNO:
		sb_emit(p, jeq, r->sr_nr, 0, 1);
		sb_emit(p, ret, SECCOMP_RET_ERRNO |
		    (r->sr_val & SECCOMP_RET_DATA), 0, 0);
		break;
	case SB_DENY:
		sb_emit(p, jeq, r->sr_nr, 0, 1);
		sb_emit(p, ret, SB_RET_DENY, 0, 0);
		break;
	case SB_ALLOW_EQ:
	case SB_ALLOW_NOBITS:
		sb_emit(p, jeq, r->sr_nr, 0, 4);
		sb_emit(p, ldarg, SB_ARG_LO(r->sr_arg), 0, 0);
		if (r->sr_op == SB_ALLOW_EQ)
			sb_emit(p, jeq, r->sr_val, 0, 1);
		else
			sb_emit(p, BPF_JMP | BPF_JSET | BPF_K, r->sr_val,
			    1, 0);
		sb_emit(p, ret, SECCOMP_RET_ALLOW, 0, 0);
		sb_emit(p, ldarg, offsetof(struct seccomp_data, nr), 0, 0);
		break;
	}
}

#ifdef SANDBOX_DEBUG
/* Name the call the filter refused, then go: a debugging aid only. */
static void
sb_sigsys(int sig, siginfo_t *si, void *ctx)
{
	static const char	 pfx[] = "sandbox: forbidden system call ";
	char			 buf[sizeof(pfx) + 16], *p;
	unsigned int		 nr = (unsigned int)si->si_syscall;
	char			 digits[12];
	int			 n = 0;

	memcpy(buf, pfx, sizeof(pfx) - 1);
	p = buf + sizeof(pfx) - 1;
	do {
		digits[n++] = '0' + nr % 10;
		nr /= 10;
	} while (nr > 0);
	while (n > 0)
		*p++ = digits[--n];
	*p++ = '\n';
	(void)write(STDERR_FILENO, buf, p - buf);
	_exit(128 + SIGSYS);
}
#endif

/*
 * Build and load one filter: the architecture check, x32 refused, the
 * stdio rules when `stdio', the process's own rules, then `dflt'.
 */
#ifndef SB_AUDIT_ARCH
static void
sb_seccomp(const char *name, int stdio, const struct sb_rule *rules,
    size_t nrules, uint32_t dflt)
{
	log_warnx("seccomp: no filter for this architecture, %s runs "
	    "without one", name);
}
#else
static void
sb_seccomp(const char *name, int stdio, const struct sb_rule *rules,
    size_t nrules, uint32_t dflt)
{
	static struct sb_prog	 prog;
	struct sock_fprog	 fp;
	uint32_t		 act = SECCOMP_RET_KILL_PROCESS;
	size_t			 i;

	if (syscall(__NR_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &act) == -1) {
		log_warnx("seccomp not available: %s", strerror(errno));
		return;
	}
#ifdef SANDBOX_DEBUG
	{
		struct sigaction	 sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = sb_sigsys;
		sa.sa_flags = SA_SIGINFO;
		if (sigaction(SIGSYS, &sa, NULL) == -1)
			fatal("%s: sigaction", __func__);
		log_warnx("%s: SANDBOX_DEBUG build: refused calls trap",
		    name);
	}
#endif
	prog.sp_len = 0;
	sb_emit(&prog, BPF_LD | BPF_W | BPF_ABS,
	    offsetof(struct seccomp_data, arch), 0, 0);
	sb_emit(&prog, BPF_JMP | BPF_JEQ | BPF_K, SB_AUDIT_ARCH, 1, 0);
	sb_emit(&prog, BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS, 0, 0);
	sb_emit(&prog, BPF_LD | BPF_W | BPF_ABS,
	    offsetof(struct seccomp_data, nr), 0, 0);
#ifdef __X32_SYSCALL_BIT
	sb_emit(&prog, BPF_JMP | BPF_JGE | BPF_K, __X32_SYSCALL_BIT, 0, 1);
	sb_emit(&prog, BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS, 0, 0);
#endif
	if (stdio)
		for (i = 0; i < SB_NITEMS(sb_stdio); i++)
			sb_compile_rule(&prog, &sb_stdio[i]);
	for (i = 0; i < nrules; i++)
		sb_compile_rule(&prog, &rules[i]);
	sb_emit(&prog, BPF_RET | BPF_K, dflt, 0, 0);

	memset(&fp, 0, sizeof(fp));
	fp.len = prog.sp_len;
	fp.filter = prog.sp_insn;
	if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER,
	    SECCOMP_FILTER_FLAG_TSYNC, &fp) != 0)
		fatal("%s: seccomp %s", __func__, name);
	log_debug("%s: seccomp filter for %s, %u instructions", __func__,
	    name, prog.sp_len);
}
#endif

void
sandbox_parent(void)
{
	sb_nnp();
	sb_seccomp("parent", 0, sb_parent, SB_NITEMS(sb_parent),
	    SECCOMP_RET_ALLOW);
	log_info("sandbox: parent has no_new_privs and a deny list, "
	    "no Landlock: reload reads configured paths");
}

void
sandbox_xmppe(void)
{
	sb_nnp();
	sb_landlock(NULL, 0, LANDLOCK_ACCESS_NET_BIND_TCP);
	sb_seccomp("xmppe", 1, sb_xmppe, SB_NITEMS(sb_xmppe), SB_RET_DENY);
}

void
sandbox_apnse(void)
{
	sb_nnp();
	sb_landlock(NULL, 0, LANDLOCK_ACCESS_NET_BIND_TCP);
	sb_seccomp("apnse", 1, sb_apnse, SB_NITEMS(sb_apnse), SB_RET_DENY);
}

void
sandbox_logd(const char *logdir)
{
	sb_nnp();
	sb_landlock(logdir, LANDLOCK_ACCESS_FS_READ_FILE |
	    LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_DIR |
	    LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_REG |
	    LANDLOCK_ACCESS_FS_TRUNCATE,
	    LANDLOCK_ACCESS_NET_BIND_TCP | LANDLOCK_ACCESS_NET_CONNECT_TCP);
	sb_seccomp("logd", 1, sb_logd, SB_NITEMS(sb_logd), SB_RET_DENY);
}

#else
#error "sandbox.c: no sandbox for this system"
#endif
