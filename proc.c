/*
 * The process house: socketpairs between the parent and its children
 * and from each network child to logd, the fork, the privilege drop,
 * the dispatch loop of every channel, and the configuration handshake
 * (reset, objects, done) that the parent repeats on every reload.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "monalpushd.h"

struct privsep		*mp_ps;
struct event_base	*proc_evbase;

static const char *const proc_names[PROC_MAX] = {
	[PROC_PARENT] = "parent",
	[PROC_XMPPE] = "xmppe",
	[PROC_APNSE] = "apnse",
	[PROC_LOGD] = "logd",
};

/* Which pairs of processes talk: the parent with all, and logd with all. */
static int
proc_pair(enum mp_proc a, enum mp_proc b)
{
	if (a == b)
		return (0);
	return (a == PROC_PARENT || b == PROC_PARENT ||
	    a == PROC_LOGD || b == PROC_LOGD);
}

struct proc_chan {
	struct privsep			*pc_ps;
	enum mp_proc			 pc_peer;
	const struct proc_dispatch	*pc_table;
};
static struct proc_chan	 proc_chans[PROC_MAX];
static int		 proc_fds[PROC_MAX][PROC_MAX];

const char *
proc_name(enum mp_proc p)
{
	if ((unsigned)p >= PROC_MAX)
		return ("unknown");
	return (proc_names[p]);
}

static void
proc_keep_fds(enum mp_proc self)
{
	enum mp_proc	 a, b;

	for (a = 0; a < PROC_MAX; a++)
		for (b = 0; b < PROC_MAX; b++) {
			if (!proc_pair(a, b) || a == self)
				continue;
			if (proc_fds[a][b] != -1)
				close(proc_fds[a][b]);
			proc_fds[a][b] = -1;
		}
}

void
proc_fork_children(struct privsep *ps)
{
	enum mp_proc	 a, b, c;
	int		 sp[2];
	pid_t		 pid;
	void		(*mains[PROC_MAX])(struct privsep *) = {
		[PROC_XMPPE] = xmppe_main,
		[PROC_APNSE] = apnse_main,
		[PROC_LOGD] = logd_main,
	};

	for (a = 0; a < PROC_MAX; a++)
		for (b = 0; b < PROC_MAX; b++)
			proc_fds[a][b] = -1;
	for (a = 0; a < PROC_MAX; a++)
		for (b = a + 1; b < PROC_MAX; b++) {
			if (!proc_pair(a, b))
				continue;
			if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
			    SOCK_CLOEXEC, 0, sp) == -1)
				fatal("%s: socketpair", __func__);
			proc_fds[a][b] = sp[0];
			proc_fds[b][a] = sp[1];
		}

	ps->ps_pid[PROC_PARENT] = getpid();
	ps->ps_started[PROC_PARENT] = time(NULL);
	/* logd first, so the others' first lines have a reader. */
	for (c = PROC_LOGD; c >= PROC_XMPPE; c--) {
		switch (pid = fork()) {
		case -1:
			fatal("%s: fork", __func__);
		case 0:
			ps->ps_proc = c;
			ps->ps_pid[c] = getpid();
			ps->ps_started[c] = time(NULL);
			proc_keep_fds(c);
			mains[c](ps);
			_exit(0);
		default:
			ps->ps_pid[c] = pid;
			ps->ps_started[c] = time(NULL);
			break;
		}
	}
	proc_keep_fds(PROC_PARENT);
}

void
proc_privdrop(struct privsep *ps, const char *root)
{
	struct passwd	*pw = ps->ps_pw;

	if (chroot(root) == -1)
		fatal("%s: chroot %s", __func__, root);
	if (chdir("/") == -1)
		fatal("%s: chdir /", __func__);
	if (setgroups(1, &pw->pw_gid) == -1 ||
	    setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) == -1 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) == -1)
		fatal("%s: cannot drop privileges to %s", __func__,
		    pw->pw_name);
}

/*
 * Set up one imsgev per peer of this process on the current event
 * base.  Called after event_init() in each process.
 */
void
proc_listen(struct privsep *ps, const struct proc_dispatch *table)
{
	enum mp_proc	 p;
	struct imsgev	*iev;

	for (p = 0; p < PROC_MAX; p++) {
		if (!proc_pair(ps->ps_proc, p) ||
		    proc_fds[ps->ps_proc][p] == -1)
			continue;
		iev = &ps->ps_iev[p];
		imsgbuf_init(&iev->ibuf, proc_fds[ps->ps_proc][p]);
		proc_chans[p].pc_ps = ps;
		proc_chans[p].pc_peer = p;
		proc_chans[p].pc_table = table;
		iev->handler = proc_dispatch_cb;
		iev->data = &proc_chans[p];
		iev->events = EV_READ;
		ps->ps_ievok[p] = 1;
		event_set(&iev->ev, iev->ibuf.fd, iev->events, iev->handler,
		    iev);
		event_add(&iev->ev, NULL);
	}
}

static void
proc_peer_gone(struct privsep *ps, enum mp_proc peer)
{
	struct imsgev	*iev = &ps->ps_iev[peer];

	event_del(&iev->ev);
	ps->ps_ievok[peer] = 0;
	if (ps->ps_proc == PROC_PARENT) {
		/* SIGCHLD tells the rest; do not spin on the EOF. */
		return;
	}
	if (peer == PROC_LOGD)
		log_setsink(NULL);
	/* Only the parent's going ends a child; the parent sees the rest. */
	if (peer == PROC_PARENT)
		exit(0);
}

void
proc_dispatch_cb(int fd, short event, void *arg)
{
	struct imsgev		*iev = arg;
	struct proc_chan	*pc = iev->data;
	struct privsep		*ps = pc->pc_ps;
	const struct proc_dispatch *pd;
	struct imsg		 imsg;
	ssize_t			 n;
	int			 handled;

	if (event & EV_READ) {
		n = imsgbuf_read(&iev->ibuf);
		if (n == -1 && errno != EAGAIN && errno != EINTR) {
			if (errno != ECONNRESET)
				log_warn("%s: read from %s", __func__,
				    proc_name(pc->pc_peer));
			proc_peer_gone(ps, pc->pc_peer);
			return;
		}
		if (n == 0) {
			proc_peer_gone(ps, pc->pc_peer);
			return;
		}
	}
	if (event & EV_WRITE) {
		if (imsgbuf_write(&iev->ibuf) == -1) {
			if (errno != EPIPE)
				log_warn("%s: write to %s", __func__,
				    proc_name(pc->pc_peer));
			proc_peer_gone(ps, pc->pc_peer);
			return;
		}
	}
	for (;;) {
		if ((n = imsg_get(&iev->ibuf, &imsg)) == -1)
			fatal("%s: bad message from %s", __func__,
			    proc_name(pc->pc_peer));
		if (n == 0)
			break;
		handled = 0;
		for (pd = pc->pc_table; pd->pd_fn != NULL; pd++) {
			if (pd->pd_peer != pc->pc_peer)
				continue;
			if (pd->pd_fn(ps, pc->pc_peer, &imsg) == 0) {
				handled = 1;
				break;
			}
		}
		if (!handled)
			fatalx("%s: %s sent unexpected message type %u",
			    __func__, proc_name(pc->pc_peer), imsg.hdr.type);
		imsg_free(&imsg);
	}
	if (ps->ps_ievok[pc->pc_peer])
		imsg_event_add(iev);
}

int
proc_compose(struct privsep *ps, enum mp_proc peer, uint32_t type,
    uint32_t peerid, int fd, const void *data, size_t len)
{
	if (!ps->ps_ievok[peer]) {
		if (fd != -1)
			close(fd);
		return (-1);
	}
	/* Only a bug (a payload too large) or ENOMEM fails here. */
	if (imsg_compose_event(&ps->ps_iev[peer], type, peerid, 0, fd,
	    data, len) == -1)
		fatal("%s: type %u to %s", __func__, type, proc_name(peer));
	return (0);
}

static void
proc_blob_send(struct privsep *ps, enum mp_proc peer, int kind,
    const char *owner, const uint8_t *mem, size_t len)
{
	struct conf_blob	 cb;
	struct iovec		 iov[2];
	size_t			 off, n;

	if (mem == NULL || len == 0)
		return;
	for (off = 0; off < len; off += n) {
		n = len - off;
		if (n > BLOB_CHUNK)
			n = BLOB_CHUNK;
		memset(&cb, 0, sizeof(cb));
		cb.cb_kind = kind;
		strlcpy(cb.cb_owner, owner, sizeof(cb.cb_owner));
		cb.cb_total = len;
		cb.cb_offset = off;
		cb.cb_len = n;
		iov[0].iov_base = &cb;
		iov[0].iov_len = sizeof(cb);
		iov[1].iov_base = (void *)(mem + off);
		iov[1].iov_len = n;
		if (imsg_composev_event(&ps->ps_iev[peer], IMSG_CONF_BLOB, 0,
		    0, -1, iov, 2) == -1)
			fatal("%s: compose", __func__);
	}
}

/* Send a child its part of the configuration: reset, objects, done. */
void
proc_conf_send(struct privsep *ps, enum mp_proc peer)
{
	struct mp_conf		*conf = ps->ps_conf, c;
	struct mp_listen	*l, lc;
	struct mp_domain	*d, dc;
	struct mp_app		*a, ac;
	struct mp_route		*r;
	int			 fd;

	if (!ps->ps_ievok[peer])
		return;
	c = *conf;
	c.c_ca_mem = NULL;
	c.c_ca_len = 0;
	proc_compose(ps, peer, IMSG_CONF_START, 0, -1, &c, sizeof(c));
	if (peer == PROC_XMPPE) {
		TAILQ_FOREACH(l, &conf->c_listens, l_entry) {
			if ((fd = dup(l->l_fd)) == -1)
				fatal("%s: dup", __func__);
			lc = *l;
			lc.l_fd = -1;
			proc_compose(ps, peer, IMSG_CONF_LISTEN, 0, fd, &lc,
			    sizeof(lc));
		}
		TAILQ_FOREACH(d, &conf->c_domains, d_entry) {
			dc = *d;
			dc.d_cert_mem = dc.d_key_mem = NULL;
			dc.d_cert_len = dc.d_key_len = 0;
			proc_compose(ps, peer, IMSG_CONF_DOMAIN, 0, -1, &dc,
			    sizeof(dc));
			proc_blob_send(ps, peer, BLOB_DOMAIN_CERT, d->d_name,
			    d->d_cert_mem, d->d_cert_len);
			proc_blob_send(ps, peer, BLOB_DOMAIN_KEY, d->d_name,
			    d->d_key_mem, d->d_key_len);
		}
		TAILQ_FOREACH(r, &conf->c_routes, r_entry)
			proc_compose(ps, peer, IMSG_CONF_ROUTE, 0, -1, r,
			    sizeof(*r));
		proc_blob_send(ps, peer, BLOB_PEER_CA, "", conf->c_ca_mem,
		    conf->c_ca_len);
	}
	/* xmppe needs the apps too: names, modes and priorities. */
	if (peer == PROC_XMPPE || peer == PROC_APNSE) {
		TAILQ_FOREACH(a, &conf->c_apps, a_entry) {
			ac = *a;
			ac.a_cert_mem = ac.a_key_mem = ac.a_ca_mem = NULL;
			ac.a_cert_len = ac.a_key_len = ac.a_ca_len = 0;
			proc_compose(ps, peer, IMSG_CONF_APP, 0, -1, &ac,
			    sizeof(ac));
			if (peer != PROC_APNSE)
				continue;
			proc_blob_send(ps, peer, BLOB_APP_CERT, a->a_name,
			    a->a_cert_mem, a->a_cert_len);
			proc_blob_send(ps, peer, BLOB_APP_KEY, a->a_name,
			    a->a_key_mem, a->a_key_len);
			proc_blob_send(ps, peer, BLOB_APP_CA, a->a_name,
			    a->a_ca_mem, a->a_ca_len);
		}
	}
	proc_compose(ps, peer, IMSG_CONF_END, 0, -1, NULL, 0);
}

static int
blob_append(uint8_t **mem, size_t *len, const struct conf_blob *cb,
    const uint8_t *data)
{
	uint8_t	*p;

	if (cb->cb_offset != *len || cb->cb_total < cb->cb_offset + cb->cb_len)
		return (-1);
	if (*mem == NULL && (*mem = calloc(1, cb->cb_total + 1)) == NULL)
		fatal("%s", __func__);
	p = *mem;
	memcpy(p + cb->cb_offset, data, cb->cb_len);
	*len += cb->cb_len;
	return (0);
}

static int
proc_blob_recv(struct mp_conf *conf, struct imsg *imsg)
{
	struct conf_blob	 cb;
	struct mp_domain	*d;
	struct mp_app		*a;
	const uint8_t		*data = imsg->data;
	size_t			 len = IMSG_DATA_SIZE(imsg);

	if (len < sizeof(cb))
		fatalx("%s: short blob", __func__);
	memcpy(&cb, data, sizeof(cb));
	IMSG_STR_CHECK(cb.cb_owner);
	if (cb.cb_len != len - sizeof(cb) || cb.cb_len > BLOB_CHUNK)
		fatalx("%s: bad blob length", __func__);
	data += sizeof(cb);
	switch (cb.cb_kind) {
	case BLOB_DOMAIN_CERT:
	case BLOB_DOMAIN_KEY:
		if ((d = config_domain_find(conf, cb.cb_owner)) == NULL)
			fatalx("%s: blob for unknown domain", __func__);
		if (cb.cb_kind == BLOB_DOMAIN_CERT)
			return (blob_append(&d->d_cert_mem, &d->d_cert_len,
			    &cb, data));
		return (blob_append(&d->d_key_mem, &d->d_key_len, &cb, data));
	case BLOB_APP_CERT:
	case BLOB_APP_KEY:
	case BLOB_APP_CA:
		if ((a = config_app_find(conf, cb.cb_owner)) == NULL)
			fatalx("%s: blob for unknown app", __func__);
		if (cb.cb_kind == BLOB_APP_CERT)
			return (blob_append(&a->a_cert_mem, &a->a_cert_len,
			    &cb, data));
		if (cb.cb_kind == BLOB_APP_KEY)
			return (blob_append(&a->a_key_mem, &a->a_key_len,
			    &cb, data));
		return (blob_append(&a->a_ca_mem, &a->a_ca_len, &cb, data));
	case BLOB_PEER_CA:
		return (blob_append(&conf->c_ca_mem, &conf->c_ca_len, &cb,
		    data));
	default:
		return (-1);
	}
}

/*
 * Collect the configuration messages; returns 1 and hands over the new
 * configuration at IMSG_CONF_END, 0 while it is being built, -1 when
 * the message is not a configuration message.
 */
int
proc_conf_recv(struct privsep *ps, struct imsg *imsg, struct mp_conf **out)
{
	static struct mp_conf	*nconf;
	struct mp_listen	*l;
	struct mp_domain	*d;
	struct mp_app		*a;
	struct mp_route		*r;

	switch (imsg->hdr.type) {
	case IMSG_CONF_START:
		IMSG_SIZE_CHECK(imsg, nconf);
		if (nconf != NULL)
			config_free(nconf);
		if ((nconf = calloc(1, sizeof(*nconf))) == NULL)
			fatal("%s", __func__);
		memcpy(nconf, imsg->data, sizeof(*nconf));
		nconf->c_ca_mem = NULL;
		nconf->c_ca_len = 0;
		TAILQ_INIT(&nconf->c_listens);
		TAILQ_INIT(&nconf->c_domains);
		TAILQ_INIT(&nconf->c_apps);
		TAILQ_INIT(&nconf->c_routes);
		return (0);
	case IMSG_CONF_LISTEN:
	case IMSG_CONF_DOMAIN:
	case IMSG_CONF_APP:
	case IMSG_CONF_ROUTE:
	case IMSG_CONF_BLOB:
	case IMSG_CONF_END:
		if (nconf == NULL)
			fatalx("%s: configuration object before start",
			    __func__);
		break;
	default:
		return (-1);
	}

	switch (imsg->hdr.type) {
	case IMSG_CONF_LISTEN:
		if ((l = calloc(1, sizeof(*l))) == NULL)
			fatal("%s", __func__);
		IMSG_SIZE_CHECK(imsg, l);
		memcpy(l, imsg->data, sizeof(*l));
		IMSG_STR_CHECK(l->l_addr);
		l->l_fd = imsg->fd;
		TAILQ_INSERT_TAIL(&nconf->c_listens, l, l_entry);
		break;
	case IMSG_CONF_DOMAIN:
		if ((d = calloc(1, sizeof(*d))) == NULL)
			fatal("%s", __func__);
		IMSG_SIZE_CHECK(imsg, d);
		memcpy(d, imsg->data, sizeof(*d));
		IMSG_STR_CHECK(d->d_name);
		d->d_cert_mem = d->d_key_mem = NULL;
		d->d_cert_len = d->d_key_len = 0;
		TAILQ_INSERT_TAIL(&nconf->c_domains, d, d_entry);
		break;
	case IMSG_CONF_APP:
		if ((a = calloc(1, sizeof(*a))) == NULL)
			fatal("%s", __func__);
		IMSG_SIZE_CHECK(imsg, a);
		memcpy(a, imsg->data, sizeof(*a));
		IMSG_STR_CHECK(a->a_name);
		IMSG_STR_CHECK(a->a_topic);
		a->a_cert_mem = a->a_key_mem = a->a_ca_mem = NULL;
		a->a_cert_len = a->a_key_len = a->a_ca_len = 0;
		TAILQ_INSERT_TAIL(&nconf->c_apps, a, a_entry);
		break;
	case IMSG_CONF_ROUTE:
		if ((r = calloc(1, sizeof(*r))) == NULL)
			fatal("%s", __func__);
		IMSG_SIZE_CHECK(imsg, r);
		memcpy(r, imsg->data, sizeof(*r));
		IMSG_STR_CHECK(r->r_domain);
		IMSG_STR_CHECK(r->r_addr);
		TAILQ_INSERT_TAIL(&nconf->c_routes, r, r_entry);
		break;
	case IMSG_CONF_BLOB:
		if (proc_blob_recv(nconf, imsg) == -1)
			fatalx("%s: bad configuration blob", __func__);
		break;
	case IMSG_CONF_END:
		*out = nconf;
		nconf = NULL;
		(void)ps;
		return (1);
	}
	return (0);
}

/*
 * What every child takes from the parent alike: the log level and its
 * part of the configuration.  -1 when the message is neither.
 */
int
proc_dispatch_common(struct privsep *ps, struct imsg *imsg,
    void (*apply)(struct privsep *, struct mp_conf *))
{
	struct mp_conf	*nconf;
	int32_t		 v;
	int		 r;

	if (imsg->hdr.type == IMSG_LOG_VERBOSE) {
		IMSG_SIZE_CHECK(imsg, &v);
		memcpy(&v, imsg->data, sizeof(v));
		log_setverbose(v);
		return (0);
	}
	if ((r = proc_conf_recv(ps, imsg, &nconf)) == -1)
		return (-1);
	if (r == 1)
		apply(ps, nconf);
	return (0);
}

static void
proc_child_sig(int sig, short event, void *arg)
{
	struct privsep	*ps = arg;

	switch (sig) {
	case SIGTERM:
	case SIGINT:
		ps->ps_exiting = 1;
		if (ps->ps_proc == PROC_XMPPE)
			s2s_shutdown();
		log_debug("exiting");
		if (ps->ps_ievok[PROC_LOGD])
			(void)imsgbuf_flush(&ps->ps_iev[PROC_LOGD].ibuf);
		exit(0);
#ifdef MONALPUSHD_TEST
	case SIGUSR1:
	case SIGUSR2:
		proc_test_forbidden(ps, sig);
		break;
#endif
	}
}

/*
 * The fixed order of a network child: the event base, what must still
 * be read from the file system (resolv.conf), chroot, drop privileges,
 * channels.  The caller sandboxes itself last.
 */
void
proc_child_setup(struct privsep *ps, const struct proc_dispatch *table,
    void (*prechroot)(struct privsep *))
{
	static struct event	 ev_term, ev_int, ev_usr1, ev_usr2;
	const char		*name = proc_name(ps->ps_proc);
	char			 root[PATH_MAX];

	setproctitle("%s", name);
	log_procinit(name);
	strlcpy(root, ps->ps_conf->c_chroot, sizeof(root));
	config_free(ps->ps_conf);	/* its part comes over imsg */
	ps->ps_conf = NULL;

	proc_evbase = event_init();
	if (prechroot != NULL)
		prechroot(ps);
	proc_privdrop(ps, root);
	signal_set(&ev_term, SIGTERM, proc_child_sig, ps);
	signal_set(&ev_int, SIGINT, proc_child_sig, ps);
	signal_add(&ev_term, NULL);
	signal_add(&ev_int, NULL);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
#ifdef MONALPUSHD_TEST
	signal_set(&ev_usr1, SIGUSR1, proc_child_sig, ps);
	signal_set(&ev_usr2, SIGUSR2, proc_child_sig, ps);
	signal_add(&ev_usr1, NULL);
	signal_add(&ev_usr2, NULL);
#else
	(void)ev_usr1;
	(void)ev_usr2;
#endif
	proc_listen(ps, table);
	log_setsink(&ps->ps_iev[PROC_LOGD]);
}

#ifdef MONALPUSHD_TEST
static void
test_report(const char *what, int ret)
{
	if (ret == -1)
		log_info("test: %s: denied: %s", what, strerror(errno));
	else
		log_info("test: %s: allowed", what);
}

/*
 * Test builds only: on SIGUSR1 try the acts the sandbox must forbid and
 * log each outcome; on SIGUSR2 try execve, which must kill us.
 */
void
proc_test_forbidden(struct privsep *ps, int sig)
{
	char	*argv[] = { "sh", "-c", "true", NULL };
	int	 fd;

	if (sig == SIGUSR2) {
		log_info("test: execve /bin/sh");
		(void)imsgbuf_flush(&ps->ps_iev[PROC_LOGD].ibuf);
		execve("/bin/sh", argv, NULL);
		test_report("execve /bin/sh", -1);
		return;
	}
	fd = open("/etc/passwd", O_RDONLY);
	test_report("open /etc/passwd", fd);
	if (fd != -1)
		close(fd);
	fd = open("/", O_RDONLY | O_DIRECTORY);
	test_report("open /", fd);
	if (fd != -1)
		close(fd);
	if (ps->ps_proc == PROC_LOGD) {
		fd = open("test-inside.tmp", O_WRONLY | O_CREAT, 0600);
		test_report("create in log directory", fd);
		if (fd != -1) {
			close(fd);
			unlink("test-inside.tmp");
		}
		fd = socket(AF_INET, SOCK_STREAM, 0);
		test_report("socket AF_INET", fd);
		if (fd != -1)
			close(fd);
	}
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	test_report("socket AF_UNIX", fd);
	if (fd != -1)
		close(fd);
	fd = socket(AF_NETLINK, SOCK_RAW, 0);
	test_report("socket AF_NETLINK", fd);
	if (fd != -1)
		close(fd);
	fd = socket(AF_PACKET, SOCK_RAW, 0);
	test_report("socket AF_PACKET", fd);
	if (fd != -1)
		close(fd);
	log_info("test: uid %d gid %d", (int)getuid(), (int)getgid());
}
#endif
