/*
 * apnse: the APNs egress.  Turns the parent's push requests into HTTP/2
 * requests to Apple through apns.c and answers each with exactly one
 * result.  Runs chrooted in an empty directory as the unprivileged
 * user, with no file system once sandboxed; the parent hands it the
 * apps with their credentials over imsg.  It never sees a JID, a
 * secret or a node: only app, token and push type.
 */

#include <sys/types.h>
#include <sys/queue.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "monalpushd.h"

/*
 * Each app keeps its own copy of its settings and credentials, which its
 * APNs client refers to; so a reload that leaves an app unchanged keeps
 * its connections without touching the client.
 */
struct apnse_app {
	TAILQ_ENTRY(apnse_app)	 aa_entry;
	struct mp_app		 aa_conf;
	struct apns_app		*aa_apns;
};

static TAILQ_HEAD(, apnse_app) apnse_apps = TAILQ_HEAD_INITIALIZER(apnse_apps);
static struct privsep	*apnse_ps;
static struct event_base *apnse_base;

static int	apnse_dispatch_parent(struct privsep *, enum mp_proc,
		    struct imsg *);

static const struct proc_dispatch apnse_dispatch[] = {
	{ PROC_PARENT,	apnse_dispatch_parent },
	{ PROC_APNSE,	NULL }
};

static void
apnse_result(uint32_t id, const struct apns_result *ar, void *arg)
{
	proc_compose(apnse_ps, PROC_PARENT, IMSG_APNS_RESULT, id, -1, ar,
	    sizeof(*ar));
}

static void
apnse_fail(uint32_t id, int kind, const char *reason)
{
	struct apns_result	 ar;

	memset(&ar, 0, sizeof(ar));
	ar.ar_kind = kind;
	strlcpy(ar.ar_reason, reason, sizeof(ar.ar_reason));
	apnse_result(id, &ar, NULL);
}

static int
mem_same(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	return (alen == blen && (alen == 0 || memcmp(a, b, alen) == 0));
}

/*
 * An app whose connection settings did not change keeps its pool, so a
 * reload neither drops connections nor fails requests in flight.
 */
static int
app_same(const struct mp_app *a, const struct mp_app *b)
{
	return (strcmp(a->a_topic, b->a_topic) == 0 &&
	    a->a_env == b->a_env && strcmp(a->a_host, b->a_host) == 0 &&
	    a->a_port == b->a_port && a->a_auth == b->a_auth &&
	    strcmp(a->a_keyid, b->a_keyid) == 0 &&
	    strcmp(a->a_teamid, b->a_teamid) == 0 &&
	    a->a_mutable == b->a_mutable &&
	    strcmp(a->a_collapse, b->a_collapse) == 0 &&
	    a->a_expiration == b->a_expiration &&
	    mem_same(a->a_cert_mem, a->a_cert_len, b->a_cert_mem,
	    b->a_cert_len) &&
	    mem_same(a->a_key_mem, a->a_key_len, b->a_key_mem, b->a_key_len) &&
	    mem_same(a->a_ca_mem, a->a_ca_len, b->a_ca_mem, b->a_ca_len));
}

static uint8_t *
memdup(const uint8_t *p, size_t len)
{
	uint8_t	*q;

	if (p == NULL || len == 0)
		return (NULL);
	if ((q = malloc(len + 1)) == NULL)
		fatal("%s", __func__);
	memcpy(q, p, len);
	q[len] = '\0';
	return (q);
}

static void
app_copy(struct mp_app *dst, const struct mp_app *src)
{
	*dst = *src;
	dst->a_cert_mem = memdup(src->a_cert_mem, src->a_cert_len);
	dst->a_key_mem = memdup(src->a_key_mem, src->a_key_len);
	dst->a_ca_mem = memdup(src->a_ca_mem, src->a_ca_len);
}

static void
app_clear(struct mp_app *a)
{
	free(a->a_cert_mem);
	free(a->a_ca_mem);
	freezero(a->a_key_mem, a->a_key_len);
	explicit_bzero(a, sizeof(*a));
}

static void
apnse_opts(const struct mp_conf *conf, struct apns_opts *ao)
{
	apns_opts_default(ao);
	if (conf->c_apns_timeout > 0)
		ao->ao_timeout = conf->c_apns_timeout;
	if (conf->c_apns_conns > 0)
		ao->ao_max_conns = conf->c_apns_conns;
	if (conf->c_apns_queue > 0)
		ao->ao_queue_max = conf->c_apns_queue;
}

static void
apnse_conf_apply(struct privsep *ps, struct mp_conf *nconf)
{
	TAILQ_HEAD(, apnse_app)	 nlist = TAILQ_HEAD_INITIALIZER(nlist);
	struct apnse_app	*aa, *next;
	struct mp_app		*a;
	struct apns_opts	 ao;
	int			 na = 0, kept = 0;

	apnse_opts(nconf, &ao);
	TAILQ_FOREACH(a, &nconf->c_apps, a_entry) {
		if (a->a_key_len == 0)
			fatalx("%s: app %s came without its credentials",
			    __func__, a->a_name);
		na++;
		TAILQ_FOREACH(aa, &apnse_apps, aa_entry)
			if (strcmp(aa->aa_conf.a_name, a->a_name) == 0)
				break;
		if (aa != NULL && ps->ps_conf != NULL &&
		    ps->ps_conf->c_apns_timeout == nconf->c_apns_timeout &&
		    ps->ps_conf->c_apns_conns == nconf->c_apns_conns &&
		    ps->ps_conf->c_apns_queue == nconf->c_apns_queue &&
		    app_same(&aa->aa_conf, a)) {
			TAILQ_REMOVE(&apnse_apps, aa, aa_entry);
			/* Settings the client does not use may change. */
			aa->aa_conf.a_priority = a->a_priority;
			aa->aa_conf.a_ratelimit = a->a_ratelimit;
			aa->aa_conf.a_mode = a->a_mode;
			aa->aa_conf.a_default = a->a_default;
			kept++;
		} else {
			if ((aa = calloc(1, sizeof(*aa))) == NULL)
				fatal("%s", __func__);
			app_copy(&aa->aa_conf, a);
			aa->aa_apns = apns_app_new(apnse_base, &aa->aa_conf,
			    &ao, apnse_result, NULL);
			if (aa->aa_apns == NULL)
				fatalx("%s: app %s: cannot set up its APNs "
				    "client", __func__, a->a_name);
		}
		TAILQ_INSERT_TAIL(&nlist, aa, aa_entry);
	}
	/* Apps that went away: their requests in flight are answered. */
	TAILQ_FOREACH_SAFE(aa, &apnse_apps, aa_entry, next) {
		TAILQ_REMOVE(&apnse_apps, aa, aa_entry);
		apns_app_free(aa->aa_apns);
		app_clear(&aa->aa_conf);
		free(aa);
	}
	TAILQ_CONCAT(&apnse_apps, &nlist, aa_entry);
	if (ps->ps_conf != NULL)
		config_free(ps->ps_conf);
	ps->ps_conf = nconf;
	log_info("configuration: %d app%s (%d kept)", na, na == 1 ? "" : "s",
	    kept);
}

static void
apnse_send(struct imsg *imsg)
{
	struct apns_send	 an;
	struct apnse_app	*aa;
	uint32_t		 id = imsg->hdr.peerid;

	IMSG_SIZE_CHECK(imsg, &an);
	memcpy(&an, imsg->data, sizeof(an));
	IMSG_STR_CHECK(an.an_app);
	IMSG_STR_CHECK(an.an_token);
	TAILQ_FOREACH(aa, &apnse_apps, aa_entry)
		if (strcmp(aa->aa_conf.a_name, an.an_app) == 0)
			break;
	if (aa == NULL) {
		apnse_fail(id, APNS_OPERATOR, "UnknownApp");
		return;
	}
	if (apns_send(aa->aa_apns, id, an.an_token, an.an_pushtype) == -1) {
		if (errno == ENOBUFS)
			apnse_fail(id, APNS_QUEUE_FULL, "QueueFull");
		else
			apnse_fail(id, APNS_OPERATOR, "BadRequest");
	}
}

/* monalpushctl show apns: one record per app, then the end. */
static void
apnse_show(struct privsep *ps, uint32_t id)
{
	struct apnse_app	*aa;
	struct apns_stats	 st;
	struct ctl_apns		 ca;

	TAILQ_FOREACH(aa, &apnse_apps, aa_entry) {
		apns_app_stats(aa->aa_apns, &st);
		memset(&ca, 0, sizeof(ca));
		strlcpy(ca.ca_app, aa->aa_conf.a_name, sizeof(ca.ca_app));
		ca.ca_conns = st.as_conns;
		ca.ca_streams = st.as_streams;
		ca.ca_queue = st.as_queue;
		ca.ca_requests = st.as_requests;
		ca.ca_retries = st.as_retries;
		ca.ca_ok = st.as_kind[APNS_OK];
		ca.ca_dead = st.as_kind[APNS_DEAD_TOKEN];
		ca.ca_throttled = st.as_kind[APNS_THROTTLED];
		ca.ca_operator = st.as_kind[APNS_OPERATOR];
		ca.ca_transient = st.as_kind[APNS_TRANSIENT];
		ca.ca_queue_full = st.as_kind[APNS_QUEUE_FULL];
		memcpy(ca.ca_status, st.as_status, sizeof(ca.ca_status));
		strlcpy(ca.ca_lasterr, st.as_lasterr, sizeof(ca.ca_lasterr));
		proc_compose(ps, PROC_PARENT, IMSG_CTL_APNS, id, -1, &ca,
		    sizeof(ca));
	}
	proc_compose(ps, PROC_PARENT, IMSG_CTL_END, id, -1, NULL, 0);
}

static int
apnse_dispatch_parent(struct privsep *ps, enum mp_proc peer,
    struct imsg *imsg)
{

	switch (imsg->hdr.type) {
	case IMSG_APNS_SEND:
		apnse_send(imsg);
		return (0);
	case IMSG_CTL_SHOW_APNS:
		apnse_show(ps, imsg->hdr.peerid);
		return (0);
	}
	return (proc_dispatch_common(ps, imsg, apnse_conf_apply));
}

/* Before the chroot: libunbound reads resolv.conf and hosts here. */
static void
apnse_prechroot(struct privsep *ps)
{
	apnse_base = proc_evbase;
	if (apns_dns_init(apnse_base) == -1)
		log_warnx("apnse: no DNS resolver; only IP addresses work as "
		    "APNs hosts");
}

void
apnse_main(struct privsep *ps)
{
	apnse_ps = ps;
	proc_child_setup(ps, apnse_dispatch, apnse_prechroot);
	sandbox_apnse();
	log_debug("started, pid %d", getpid());
	event_dispatch();
	fatalx("%s: event loop ended", __func__);
}
