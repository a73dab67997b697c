/*
 * xmppe: XMPP server-to-server ingress and egress.  Runs chrooted in an
 * empty directory as the unprivileged user, with no file system at all
 * once sandboxed; the parent hands it the listening sockets and its
 * part of the configuration (domains with their key material, routes,
 * apps, limits) over imsg.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "monalpushd.h"

static int	xmppe_dispatch_parent(struct privsep *, enum mp_proc,
		    struct imsg *);

static const struct proc_dispatch xmppe_dispatch[] = {
	{ PROC_PARENT,	xmppe_dispatch_parent },
	{ PROC_XMPPE,	NULL }
};

static void
xmppe_conf_apply(struct privsep *ps, struct mp_conf *nconf)
{
	struct mp_listen	*l;
	struct mp_domain	*d;
	int			 nl = 0, nd = 0;

	if (ps->ps_conf != NULL) {
		TAILQ_FOREACH(l, &ps->ps_conf->c_listens, l_entry)
			if (l->l_fd != -1) {
				close(l->l_fd);
				l->l_fd = -1;
			}
		config_free(ps->ps_conf);
	}
	ps->ps_conf = nconf;
	TAILQ_FOREACH(l, &nconf->c_listens, l_entry)
		nl++;
	TAILQ_FOREACH(d, &nconf->c_domains, d_entry) {
		if (d->d_cert_len == 0 || d->d_key_len == 0)
			fatalx("%s: domain %s came without its key material",
			    __func__, d->d_name);
		nd++;
	}
	log_info("configuration: %d listener%s, %d domain%s", nl,
	    nl == 1 ? "" : "s", nd, nd == 1 ? "" : "s");
}

static int
xmppe_dispatch_parent(struct privsep *ps, enum mp_proc peer,
    struct imsg *imsg)
{
	struct mp_conf	*nconf;
	int		 v, r;

	switch (imsg->hdr.type) {
	case IMSG_LOG_VERBOSE:
		IMSG_SIZE_CHECK(imsg, &v);
		memcpy(&v, imsg->data, sizeof(v));
		log_setverbose(v);
		return (0);
	}
	if ((r = proc_conf_recv(ps, imsg, &nconf)) == -1)
		return (-1);
	if (r == 1)
		xmppe_conf_apply(ps, nconf);
	return (0);
}

void
xmppe_main(struct privsep *ps)
{
	proc_child_setup(ps, xmppe_dispatch, NULL);
	sandbox_xmppe();
	log_debug("started, pid %d", getpid());
	event_dispatch();
	fatalx("%s: event loop ended", __func__);
}
