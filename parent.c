/*
 * The privileged parent: owns the configuration, the listening sockets,
 * the key material, the registrations and the control socket; tells the
 * children their part of the configuration; shuts everything down when
 * any child dies.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <netinet/in.h>

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "monalpushd.h"

#define SHUTDOWN_GRACE_MS	700	/* then SIGKILL: exit within 1 s */

static int	parent_dispatch_logd(struct privsep *, enum mp_proc,
		    struct imsg *);
static int	parent_dispatch_child(struct privsep *, enum mp_proc,
		    struct imsg *);

static const struct proc_dispatch parent_dispatch[] = {
	{ PROC_LOGD,	parent_sar_dispatch },
	{ PROC_LOGD,	parent_dispatch_logd },
	{ PROC_XMPPE,	parent_sar_dispatch },
	{ PROC_XMPPE,	parent_dispatch_child },
	{ PROC_APNSE,	parent_dispatch_child },
	{ PROC_PARENT,	NULL }
};

static struct event	ev_sigterm, ev_sigint, ev_sighup, ev_sigchld;

static int
listen_bind(struct mp_listen *l)
{
	int	 fd, on = 1;
	socklen_t len;

	if ((fd = socket(l->l_ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) == -1) {
		log_warn("%s: socket", __func__);
		return (-1);
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (l->l_ss.ss_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on,
		    sizeof(on));
	len = l->l_ss.ss_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	if (bind(fd, (struct sockaddr *)&l->l_ss, len) == -1) {
		log_warn("%s: bind %s port %u", __func__, l->l_addr,
		    l->l_port);
		close(fd);
		return (-1);
	}
	if (listen(fd, 128) == -1) {
		log_warn("%s: listen", __func__);
		close(fd);
		return (-1);
	}
	return (fd);
}

static int
listen_same(const struct mp_listen *a, const struct mp_listen *b)
{
	return (a->l_port == b->l_port && a->l_tls == b->l_tls &&
	    strcmp(a->l_addr, b->l_addr) == 0);
}

/*
 * Bind the new configuration's listeners; those that the running
 * configuration already has keep their socket, so a reload does not
 * drop the port for a moment.
 */
static int
parent_listeners(struct mp_conf *old, struct mp_conf *new)
{
	struct mp_listen	*l, *o;

	TAILQ_FOREACH(l, &new->c_listens, l_entry) {
		l->l_fd = -1;
		if (old != NULL)
			TAILQ_FOREACH(o, &old->c_listens, l_entry)
				if (o->l_fd != -1 && listen_same(l, o)) {
					l->l_fd = o->l_fd;
					o->l_fd = -1;
					break;
				}
		if (l->l_fd == -1 && (l->l_fd = listen_bind(l)) == -1)
			return (-1);
	}
	return (0);
}

static void
parent_conf_free(struct mp_conf *conf)
{
	struct mp_listen	*l;

	if (conf == NULL)
		return;
	TAILQ_FOREACH(l, &conf->c_listens, l_entry)
		if (l->l_fd != -1) {
			close(l->l_fd);
			l->l_fd = -1;
		}
	config_free(conf);
}

static void
parent_conf_send(struct privsep *ps)
{
	proc_conf_send(ps, PROC_LOGD);
	proc_conf_send(ps, PROC_XMPPE);
	proc_conf_send(ps, PROC_APNSE);
}

int
parent_reload(struct privsep *ps)
{
	struct mp_conf	*nconf;

	log_info("reloading configuration %s", ps->ps_conffile);
	if ((nconf = parse_config(ps->ps_conffile, ps->ps_verbose)) == NULL) {
		log_warnx("reload failed: configuration %s has errors, "
		    "keeping the running one", ps->ps_conffile);
		return (-1);
	}
	if (config_load_keys(nconf) == -1) {
		log_warnx("reload failed: key material of %s could not be "
		    "loaded, keeping the running configuration",
		    ps->ps_conffile);
		parent_conf_free(nconf);
		return (-1);
	}
	if (parent_listeners(ps->ps_conf, nconf) == -1) {
		log_warnx("reload failed: cannot listen, keeping the running "
		    "configuration");
		/* Give the sockets we took back to the running one. */
		parent_conf_free(nconf);
		return (-1);
	}
	parent_conf_free(ps->ps_conf);
	ps->ps_conf = nconf;
	parent_conf_send(ps);
	log_info("configuration reloaded");
	return (0);
}

static const char *
exit_reason(int status, char *buf, size_t len)
{
	if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)",
		    WTERMSIG(status), strsignal(WTERMSIG(status)));
	else if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d",
		    WEXITSTATUS(status));
	else
		snprintf(buf, len, "stopped");
	return (buf);
}

static enum mp_proc
parent_child_by_pid(struct privsep *ps, pid_t pid)
{
	enum mp_proc	 p;

	for (p = PROC_XMPPE; p < PROC_MAX; p++)
		if (ps->ps_pid[p] == pid)
			return (p);
	return (PROC_PARENT);
}

/* Wait for the children but `keep' (PROC_PARENT: all); then kill. */
static void
parent_reap(struct privsep *ps, enum mp_proc keep, int wait_ms)
{
	struct timespec	 ts = { 0, 10 * 1000 * 1000 };
	enum mp_proc	 p;
	pid_t		 pid;
	int		 status, alive, waited = 0;
	char		 why[128];

	for (;;) {
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			p = parent_child_by_pid(ps, pid);
			if (p == PROC_PARENT)
				continue;
			ps->ps_pid[p] = 0;
			if (ps->ps_exiting != 1)
				log_warnx("%s %s", proc_name(p),
				    exit_reason(status, why, sizeof(why)));
		}
		for (alive = 0, p = PROC_XMPPE; p < PROC_MAX; p++)
			alive += p != keep && ps->ps_pid[p] != 0;
		if (alive == 0 || waited >= wait_ms)
			break;
		nanosleep(&ts, NULL);
		waited += 10;
	}
	if (wait_ms == 0)
		return;
	for (p = PROC_XMPPE; p < PROC_MAX; p++)
		if (p != keep && ps->ps_pid[p] != 0) {
			kill(ps->ps_pid[p], SIGKILL);
			(void)waitpid(ps->ps_pid[p], NULL, 0);
			ps->ps_pid[p] = 0;
		}
}

void
parent_shutdown(struct privsep *ps, int code)
{
	enum mp_proc	 p;

	if (code == 0)
		log_info("shutting down");
	else
		log_warnx("a child process is gone, shutting down");
	ps->ps_exiting = code == 0 ? 1 : 2;
	if (ps->ps_ievok[PROC_LOGD])
		(void)imsgbuf_flush(&ps->ps_iev[PROC_LOGD].ibuf);
	/* The network children first, logd last, so it records them. */
	for (p = PROC_XMPPE; p < PROC_LOGD; p++)
		if (ps->ps_pid[p] != 0)
			kill(ps->ps_pid[p], SIGTERM);
	parent_reap(ps, PROC_LOGD, SHUTDOWN_GRACE_MS / 2);
	log_setsink(NULL);
	if (ps->ps_pid[PROC_LOGD] != 0)
		kill(ps->ps_pid[PROC_LOGD], SIGTERM);
	parent_reap(ps, PROC_PARENT, SHUTDOWN_GRACE_MS / 2);
	parent_registry_close(ps);
	control_cleanup(ps->ps_conf->c_socket);
	exit(code);
}

static void
parent_sig(int sig, short event, void *arg)
{
	struct privsep	*ps = arg;

	switch (sig) {
	case SIGTERM:
	case SIGINT:
		parent_shutdown(ps, 0);
		break;
	case SIGHUP:
		(void)parent_reload(ps);
		break;
	case SIGCHLD:
		parent_reap(ps, PROC_MAX, 0);
		parent_shutdown(ps, 1);
		break;
	}
}

static int
parent_dispatch_logd(struct privsep *ps, enum mp_proc peer,
    struct imsg *imsg)
{
	struct log_stats	 ls;

	switch (imsg->hdr.type) {
	case IMSG_LOG_STATS:
		IMSG_SIZE_CHECK(imsg, &ls);
		memcpy(&ls, imsg->data, sizeof(ls));
		control_log_stats(ps, imsg->hdr.peerid, &ls);
		return (0);
	}
	return (parent_dispatch_child(ps, peer, imsg));
}

static int
parent_dispatch_child(struct privsep *ps, enum mp_proc peer,
    struct imsg *imsg)
{
	switch (imsg->hdr.type) {
	case IMSG_CTL_FAIL:
	case IMSG_CTL_OK:
	case IMSG_CTL_END:
	case IMSG_CTL_APNS:
	case IMSG_CTL_PEER:
		control_imsg_reply(ps, imsg->hdr.peerid, imsg->hdr.type,
		    imsg->data, IMSG_DATA_SIZE(imsg));
		return (0);
	}
	return (parent_registry_dispatch(ps, peer, imsg));
}

void
parent_main(struct privsep *ps)
{
	struct mp_conf	*conf = ps->ps_conf;

	setproctitle("parent");
	proc_evbase = event_init();
	signal_set(&ev_sigterm, SIGTERM, parent_sig, ps);
	signal_set(&ev_sigint, SIGINT, parent_sig, ps);
	signal_set(&ev_sighup, SIGHUP, parent_sig, ps);
	signal_set(&ev_sigchld, SIGCHLD, parent_sig, ps);
	signal_add(&ev_sigterm, NULL);
	signal_add(&ev_sigint, NULL);
	signal_add(&ev_sighup, NULL);
	signal_add(&ev_sigchld, NULL);
	signal(SIGPIPE, SIG_IGN);

	proc_listen(ps, parent_dispatch);
	log_setsink(&ps->ps_iev[PROC_LOGD]);

	if (config_load_keys(conf) == -1)
		fatalx("cannot load the key material of %s", ps->ps_conffile);
	if (parent_listeners(NULL, conf) == -1)
		fatalx("cannot listen on the configured addresses");
	if (parent_registry_open(ps) == -1)
		fatalx("cannot open the registration database");
	if (control_init(ps, conf->c_socket) == -1)
		fatalx("cannot create the control socket %s", conf->c_socket);
	control_listen(ps);
	parent_conf_send(ps);
	sandbox_parent();
	log_info("startup: monalpushd %s, configuration %s",
	    MONALPUSHD_VERSION, ps->ps_conffile);

	event_dispatch();
	parent_shutdown(ps, 1);
}

/*
 * The registrations: the parent alone opens the database, after the
 * children are forked, so no child holds one of its descriptors.
 */

#define REG_FLUSH_INTERVAL_MS	100	/* checkpoints, and a safety flush */

static struct event	 reg_flush_ev;
static struct event	 reg_turn_ev;	/* flush once per loop turn */
static int		 reg_turn_armed;
static time_t		 reg_last_checkpoint;

static int
parent_app_exists(const char *name, void *arg)
{
	struct privsep	*ps = arg;

	return (config_app_find(ps->ps_conf, name) != NULL);
}

static void
parent_registry_tick(int fd, short event, void *arg)
{
	struct privsep	*ps = arg;
	struct timeval	 tv = { 0, REG_FLUSH_INTERVAL_MS * 1000 };
	time_t		 now = time(NULL);
	int		 r;

	if (registry_pending(ps->ps_reg) > 0 &&
	    (r = registry_flush(ps->ps_reg)) != REG_OK) {
		if (r == REG_EPANIC)
			fatalx("registration database needs recovery; exiting "
			    "so that the restart recovers it");
		log_warnx("registry: timestamp updates: %s",
		    registry_strerror(r));
	}
	if (now - reg_last_checkpoint >= REG_CHECKPOINT_INTERVAL) {
		reg_last_checkpoint = now;
		if ((r = registry_checkpoint(ps->ps_reg)) != REG_OK)
			log_warnx("registry: checkpoint: %s",
			    registry_strerror(r));
	}
	evtimer_add(&reg_flush_ev, &tv);
}

static void
parent_registry_turn(int fd, short event, void *arg)
{
	struct privsep	*ps = arg;
	int		 r;

	reg_turn_armed = 0;
	if ((r = registry_flush(ps->ps_reg)) != REG_OK) {
		if (r == REG_EPANIC)
			fatalx("registration database needs recovery; exiting "
			    "so that the restart recovers it");
		log_warnx("registry: timestamp updates: %s",
		    registry_strerror(r));
	}
}

/*
 * Timestamp updates of one event-loop turn go into one unsynced
 * transaction at its end: small enough never to stall the loop, and
 * never a disk flush per push.
 */
void
parent_registry_kick(struct privsep *ps)
{
	struct timeval	 now = { 0, 0 };

	if (reg_turn_armed)
		return;
	reg_turn_armed = 1;
	evtimer_add(&reg_turn_ev, &now);
}

int
parent_registry_open(struct privsep *ps)
{
	const char	*dir = ps->ps_conf->c_database;
	char		 err[REG_ERRMSG_MAX];

	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		log_warn("database directory %s", dir);
		return (-1);
	}
	if ((ps->ps_reg = registry_open(dir, parent_app_exists, ps, err,
	    sizeof(err))) == NULL) {
		log_warnx("%s", err);
		return (-1);
	}
	reg_last_checkpoint = time(NULL);
	evtimer_set(&reg_flush_ev, parent_registry_tick, ps);
	evtimer_set(&reg_turn_ev, parent_registry_turn, ps);
	parent_registry_tick(-1, 0, ps);
	return (0);
}

void
parent_registry_close(struct privsep *ps)
{
	if (ps->ps_reg == NULL)
		return;
	(void)registry_flush(ps->ps_reg);
	registry_close(ps->ps_reg);
	ps->ps_reg = NULL;
}

int
parent_registry_dispatch(struct privsep *ps, enum mp_proc peer,
    struct imsg *imsg)
{
	return (parent_push_dispatch(ps, peer, imsg));
}

static void
ctl_reg_fill(struct ctl_reg *cg, const struct reg_record *rr, int verbose)
{
	memset(cg, 0, sizeof(*cg));
	strlcpy(cg->cg_node, rr->rr_node, sizeof(cg->cg_node));
	strlcpy(cg->cg_app, rr->rr_app, sizeof(cg->cg_app));
	strlcpy(cg->cg_type, rr->rr_type, sizeof(cg->cg_type));
	strlcpy(cg->cg_domain, rr->rr_domain, sizeof(cg->cg_domain));
	if (verbose)
		strlcpy(cg->cg_token, rr->rr_token, sizeof(cg->cg_token));
	else
		snprintf(cg->cg_token, sizeof(cg->cg_token), "%.8s...",
		    rr->rr_token);
	cg->cg_registered = rr->rr_registered;
	cg->cg_renewed = rr->rr_renewed;
	cg->cg_last_success = rr->rr_last_success;
	cg->cg_last_error = rr->rr_last_error;
}

struct ctl_walk {
	struct privsep	*cw_ps;
	uint32_t	 cw_id;
	int		 cw_verbose;
	int		 cw_napps;
	uint64_t	*cw_counts;	/* per configured app, in order */
};

/* One pass over the store counts every app and lists with -v. */
static int
parent_ctl_reg_cb(const struct reg_record *rr, void *arg)
{
	struct ctl_walk	*cw = arg;
	struct ctl_reg	 cg;
	struct mp_app	*a;
	int		 i = 0;

	TAILQ_FOREACH(a, &cw->cw_ps->ps_conf->c_apps, a_entry) {
		if (strcmp(a->a_name, rr->rr_app) == 0) {
			cw->cw_counts[i]++;
			break;
		}
		i++;
	}
	if (!cw->cw_verbose)
		return (0);
	ctl_reg_fill(&cg, rr, 1);
	control_imsg_reply(cw->cw_ps, cw->cw_id, IMSG_CTL_REG, &cg,
	    sizeof(cg));
	return (0);
}

static void
parent_ctl_fail(struct privsep *ps, uint32_t id, const char *fmt, ...)
{
	char	 msg[512];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	control_imsg_reply(ps, id, IMSG_CTL_FAIL, msg, strlen(msg) + 1);
}

/* The registration commands of monalpushctl. */
int
parent_registry_ctl(struct privsep *ps, uint32_t id, struct imsg *imsg)
{
	struct ctl_req		 cr;
	struct ctl_regcount	 rc;
	struct ctl_reg		 cg;
	struct reg_record	 rr;
	struct ctl_walk		 cw = { ps, id, 0, 0, NULL };
	int			 i;
	struct mp_app		*a;
	int			 r;

	switch (imsg->hdr.type) {
	case IMSG_CTL_SHOW_REGS:
	case IMSG_CTL_SHOW_NODE:
	case IMSG_CTL_UNREGISTER:
		break;
	default:
		return (-1);
	}
	if (IMSG_DATA_SIZE(imsg) != sizeof(cr) ||
	    memchr(((struct ctl_req *)imsg->data)->cr_arg, '\0',
	    sizeof(cr.cr_arg)) == NULL) {
		parent_ctl_fail(ps, id, "bad request");
		return (0);
	}
	memcpy(&cr, imsg->data, sizeof(cr));
	(void)registry_flush(ps->ps_reg);

	switch (imsg->hdr.type) {
	case IMSG_CTL_SHOW_REGS:
		TAILQ_FOREACH(a, &ps->ps_conf->c_apps, a_entry)
			cw.cw_napps++;
		if ((cw.cw_counts = calloc(cw.cw_napps + 1,
		    sizeof(*cw.cw_counts))) == NULL) {
			parent_ctl_fail(ps, id, "out of memory");
			return (0);
		}
		cw.cw_verbose = cr.cr_verbose;
		if ((r = registry_list(ps->ps_reg, parent_ctl_reg_cb, &cw)) !=
		    REG_OK) {
			free(cw.cw_counts);
			parent_ctl_fail(ps, id, "%s", registry_strerror(r));
			return (0);
		}
		i = 0;
		TAILQ_FOREACH(a, &ps->ps_conf->c_apps, a_entry) {
			memset(&rc, 0, sizeof(rc));
			strlcpy(rc.rc_app, a->a_name, sizeof(rc.rc_app));
			rc.rc_count = cw.cw_counts[i++];
			control_imsg_reply(ps, id, IMSG_CTL_REG_COUNT, &rc,
			    sizeof(rc));
		}
		free(cw.cw_counts);
		break;
	case IMSG_CTL_SHOW_NODE:
		if ((r = registry_get(ps->ps_reg, cr.cr_arg, &rr)) != REG_OK) {
			parent_ctl_fail(ps, id, "node %s: %s", cr.cr_arg,
			    registry_strerror(r));
			return (0);
		}
		ctl_reg_fill(&cg, &rr, cr.cr_verbose);
		explicit_bzero(&rr, sizeof(rr));
		control_imsg_reply(ps, id, IMSG_CTL_REG, &cg, sizeof(cg));
		break;
	case IMSG_CTL_UNREGISTER:
		if ((r = registry_get(ps->ps_reg, cr.cr_arg, &rr)) != REG_OK ||
		    (r = registry_unregister(ps->ps_reg, rr.rr_node,
		    rr.rr_type, rr.rr_domain)) != REG_OK) {
			parent_ctl_fail(ps, id, "node %s: %s", cr.cr_arg,
			    registry_strerror(r));
			return (0);
		}
		explicit_bzero(&rr, sizeof(rr));
		log_info("node %s unregistered by the operator", cr.cr_arg);
		control_imsg_reply(ps, id, IMSG_CTL_OK, NULL, 0);
		return (0);
	}
	control_imsg_reply(ps, id, IMSG_CTL_END, NULL, 0);
	return (0);
}
