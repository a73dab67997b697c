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
#include <time.h>
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

	/* s2s takes the new listeners and keeps the streams it has. */
	if (s2s_conf(ps->ps_conf, nconf) == -1) {
		if (ps->ps_conf == NULL)
			fatalx("%s: cannot apply the s2s configuration",
			    __func__);
		log_warnx("reload: the new certificates were refused; the "
		    "running ones stay in use");
	}
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

struct peer_walk {
	struct privsep	*pw_ps;
	uint32_t	 pw_id;
};

static void
xmppe_peer_cb(const struct s2s_peerinfo *pi, void *arg)
{
	struct peer_walk	*pw = arg;
	struct ctl_peer		 cp;

	memset(&cp, 0, sizeof(cp));
	strlcpy(cp.cp_domain, pi->pi_remote, sizeof(cp.cp_domain));
	strlcpy(cp.cp_local, pi->pi_local, sizeof(cp.cp_local));
	strlcpy(cp.cp_addr, pi->pi_addr, sizeof(cp.cp_addr));
	cp.cp_outbound = pi->pi_dir == S2S_OUT;
	strlcpy(cp.cp_tls, pi->pi_tls, sizeof(cp.cp_tls));
	strlcpy(cp.cp_auth, pi->pi_auth == S2S_AUTH_NONE ? "" :
	    s2s_auth_name(pi->pi_auth), sizeof(cp.cp_auth));
	cp.cp_bidi = pi->pi_bidi;
	cp.cp_started = time(NULL) - pi->pi_age;
	cp.cp_in = pi->pi_in;
	cp.cp_out = pi->pi_out;
	proc_compose(pw->pw_ps, PROC_PARENT, IMSG_CTL_PEER, pw->pw_id, -1,
	    &cp, sizeof(cp));
}

static int
xmppe_dispatch_parent(struct privsep *ps, enum mp_proc peer,
    struct imsg *imsg)
{
	struct peer_walk	 pw;

	if (appserver_reply(imsg) == 0)
		return (0);
	switch (imsg->hdr.type) {
	case IMSG_CTL_SHOW_PEERS:
		pw.pw_ps = ps;
		pw.pw_id = imsg->hdr.peerid;
		s2s_peers(xmppe_peer_cb, &pw);
		proc_compose(ps, PROC_PARENT, IMSG_CTL_END, pw.pw_id, -1,
		    NULL, 0);
		return (0);
	}
	return (proc_dispatch_common(ps, imsg, xmppe_conf_apply));
}

/* Before the chroot: libunbound reads resolv.conf and hosts here. */
static void
xmppe_prechroot(struct privsep *ps)
{
	if (s2s_init(proc_evbase) == -1)
		fatalx("%s: cannot set up the s2s layer", __func__);
}

void
xmppe_main(struct privsep *ps)
{
	proc_child_setup(ps, xmppe_dispatch, xmppe_prechroot);
	sandbox_xmppe();
	log_debug("started, pid %d", getpid());
	event_dispatch();
	fatalx("%s: event loop ended", __func__);
}
