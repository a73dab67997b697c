/*
 * The control socket, served by the parent: one request per message
 * from monalpushctl, answered with records and an END, OK or FAIL.
 * Only root may talk to it.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "monalpushd.h"

struct ctl_conn {
	TAILQ_ENTRY(ctl_conn)	 cc_entry;
	uint32_t		 cc_id;
	struct imsgev		 cc_iev;
	struct privsep		*cc_ps;
};

static TAILQ_HEAD(, ctl_conn) ctl_conns = TAILQ_HEAD_INITIALIZER(ctl_conns);
static struct event	 ctl_ev;
static int		 ctl_fd = -1;
static int		 ctl_nconns;
static uint32_t		 ctl_nextid = 1;

static void	control_dispatch(int, short, void *);

int
control_init(struct privsep *ps, const char *path)
{
	struct sockaddr_un	 sun;
	int			 fd;
	mode_t			 old;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlcpy(sun.sun_path, path, sizeof(sun.sun_path)) >=
	    sizeof(sun.sun_path)) {
		log_warnx("%s: control socket path too long: %s", __func__,
		    path);
		return (-1);
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1) {
		log_warn("%s: socket", __func__);
		return (-1);
	}
	/* A socket that answers belongs to a running daemon: keep it. */
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
		log_warnx("%s: %s is in use by a running monalpushd",
		    __func__, path);
		close(fd);
		return (-1);
	}
	close(fd);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1) {
		log_warn("%s: socket", __func__);
		return (-1);
	}
	if (unlink(path) == -1 && errno != ENOENT) {
		log_warn("%s: unlink %s", __func__, path);
		close(fd);
		return (-1);
	}
	old = umask(S_IXUSR | S_IXGRP | S_IWOTH | S_IROTH | S_IXOTH);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		log_warn("%s: bind %s", __func__, path);
		umask(old);
		close(fd);
		return (-1);
	}
	umask(old);
	if (chmod(path, 0660) == -1 || listen(fd, CONTROL_CLIENTS_MAX) == -1) {
		log_warn("%s: %s", __func__, path);
		close(fd);
		unlink(path);
		return (-1);
	}
	ctl_fd = fd;
	(void)ps;
	return (0);
}

void
control_cleanup(const char *path)
{
	if (ctl_fd == -1)
		return;
	close(ctl_fd);
	ctl_fd = -1;
	(void)unlink(path);
}

static struct ctl_conn *
control_find(uint32_t id)
{
	struct ctl_conn	*c;

	TAILQ_FOREACH(c, &ctl_conns, cc_entry)
		if (c->cc_id == id)
			return (c);
	return (NULL);
}

static void
control_close(struct ctl_conn *c)
{
	event_del(&c->cc_iev.ev);
	close(c->cc_iev.ibuf.fd);
	imsgbuf_clear(&c->cc_iev.ibuf);
	TAILQ_REMOVE(&ctl_conns, c, cc_entry);
	ctl_nconns--;
	free(c);
}

static void
control_accept(int fd, short event, void *arg)
{
	struct privsep	*ps = arg;
	struct ctl_conn	*c;
	uid_t		 uid;
	gid_t		 gid;
	int		 s;

	if ((s = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) ==
	    -1) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_warn("%s: accept", __func__);
		return;
	}
	if (getpeereid(s, &uid, &gid) == -1 || uid != 0) {
		log_warnx("%s: refused a control client with uid %d",
		    __func__, (int)uid);
		close(s);
		return;
	}
	if (ctl_nconns >= CONTROL_CLIENTS_MAX) {
		log_warnx("%s: too many control clients", __func__);
		close(s);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_warn("%s", __func__);
		close(s);
		return;
	}
	c->cc_id = ctl_nextid++;
	if (ctl_nextid == 0)
		ctl_nextid = 1;
	c->cc_ps = ps;
	imsgbuf_init(&c->cc_iev.ibuf, s);
	c->cc_iev.handler = control_dispatch;
	c->cc_iev.data = c;
	c->cc_iev.events = EV_READ;
	event_set(&c->cc_iev.ev, s, EV_READ, control_dispatch, &c->cc_iev);
	event_add(&c->cc_iev.ev, NULL);
	TAILQ_INSERT_TAIL(&ctl_conns, c, cc_entry);
	ctl_nconns++;
}

void
control_listen(struct privsep *ps)
{
	event_set(&ctl_ev, ctl_fd, EV_READ | EV_PERSIST, control_accept, ps);
	event_add(&ctl_ev, NULL);
}

void
control_imsg_reply(struct privsep *ps, uint32_t id, uint32_t type,
    const void *data, size_t len)
{
	struct ctl_conn	*c;

	if ((c = control_find(id)) == NULL)
		return;		/* the client went away meanwhile */
	imsg_compose_event(&c->cc_iev, type, 0, 0, -1, data, len);
}

static void
control_fail(struct ctl_conn *c, const char *msg)
{
	imsg_compose_event(&c->cc_iev, IMSG_CTL_FAIL, 0, 0, -1, msg,
	    strlen(msg) + 1);
}

/* logd's counters arrived: one record per process, then END. */
void
control_log_stats(struct privsep *ps, uint32_t id, const struct log_stats *ls)
{
	struct ctl_status	 cs;
	enum mp_proc		 p;

	for (p = PROC_PARENT; p < PROC_MAX; p++) {
		memset(&cs, 0, sizeof(cs));
		strlcpy(cs.cs_name, proc_name(p), sizeof(cs.cs_name));
		cs.cs_pid = ps->ps_pid[p];
		cs.cs_started = ps->ps_started[p];
		strlcpy(cs.cs_conffile, ps->ps_conffile,
		    sizeof(cs.cs_conffile));
		cs.cs_log_lines = ls->ls_lines[p];
		cs.cs_log_dropped = ls->ls_dropped[p];
		cs.cs_verbose = log_getverbose();
		control_imsg_reply(ps, id, IMSG_CTL_STATUS, &cs, sizeof(cs));
	}
	control_imsg_reply(ps, id, IMSG_CTL_END, NULL, 0);
}

static void
control_request(struct ctl_conn *c, struct imsg *imsg)
{
	struct privsep	*ps = c->cc_ps;
	struct ctl_stats st;
	enum mp_proc	 p;
	int32_t		 v;

	switch (imsg->hdr.type) {
	case IMSG_CTL_SHOW_STATUS:
		if (proc_compose(ps, PROC_LOGD, IMSG_LOG_STATS_REQ, c->cc_id,
		    -1, NULL, 0) == -1)
			control_fail(c, "logd is not running");
		break;
	case IMSG_CTL_SHOW_APNS:
	case IMSG_CTL_SHOW_PEERS:
		p = imsg->hdr.type == IMSG_CTL_SHOW_APNS ? PROC_APNSE :
		    PROC_XMPPE;
		if (proc_compose(ps, p, imsg->hdr.type, c->cc_id, -1, NULL,
		    0) == -1)
			control_fail(c, "the process is not running");
		break;
	case IMSG_CTL_SHOW_STATS:
		parent_push_stats(&st);
		st.st_started = ps->ps_started[PROC_PARENT];
		imsg_compose_event(&c->cc_iev, IMSG_CTL_STATS, 0, 0, -1, &st,
		    sizeof(st));
		imsg_compose_event(&c->cc_iev, IMSG_CTL_END, 0, 0, -1, NULL, 0);
		break;
	case IMSG_CTL_RELOAD:
		if (parent_reload(ps) == 0)
			imsg_compose_event(&c->cc_iev, IMSG_CTL_OK, 0, 0, -1,
			    NULL, 0);
		else
			control_fail(c, "reload failed: the configuration has "
			    "errors (see the log); the running one is kept");
		break;
	case IMSG_CTL_LOG_VERBOSE:
		if (IMSG_DATA_SIZE(imsg) != sizeof(v)) {
			control_fail(c, "bad request");
			break;
		}
		memcpy(&v, imsg->data, sizeof(v));
		log_setverbose(v);
		ps->ps_verbose = v;
		for (p = PROC_XMPPE; p < PROC_MAX; p++)
			proc_compose(ps, p, IMSG_LOG_VERBOSE, 0, -1, &v,
			    sizeof(v));
		log_info("log level set to %s", v ? "verbose" : "brief");
		imsg_compose_event(&c->cc_iev, IMSG_CTL_OK, 0, 0, -1, NULL, 0);
		break;
	case IMSG_CTL_SAR_REQUEST:
	case IMSG_CTL_SAR_EXPORT:
	case IMSG_CTL_SAR_ERASE:
		sar_ctl(ps, c->cc_id, imsg);
		break;
	default:
		if (parent_registry_ctl(ps, c->cc_id, imsg) == -1)
			control_fail(c, "request not supported by this daemon");
		break;
	}
}

static void
control_dispatch(int fd, short event, void *arg)
{
	struct imsgev	*iev = arg;
	struct ctl_conn	*c = iev->data;
	struct imsg	 imsg;
	ssize_t		 n;

	if (event & EV_READ) {
		n = imsgbuf_read(&iev->ibuf);
		if ((n == -1 && errno != EAGAIN && errno != EINTR) || n == 0) {
			control_close(c);
			return;
		}
	}
	if (event & EV_WRITE) {
		if (imsgbuf_write(&iev->ibuf) == -1) {
			control_close(c);
			return;
		}
	}
	for (;;) {
		if ((n = imsg_get(&iev->ibuf, &imsg)) == -1) {
			control_close(c);
			return;
		}
		if (n == 0)
			break;
		control_request(c, &imsg);
		imsg_free(&imsg);
	}
	imsg_event_add(iev);
}
