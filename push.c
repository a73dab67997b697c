/*
 * The parent's half of the push path: registrations from xmppe are
 * committed before they are answered; publishes are checked against
 * the store (domain, secret), rate limited per device, handed to apnse,
 * and the outcome is written back (timestamps, dead tokens) before
 * xmppe is told what to answer.  Only the parent sees the whole
 * registration; apnse gets app, token and push type, nothing else.
 */

#include <sys/types.h>
#include <sys/tree.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "monalpushd.h"

#define PUSH_INFLIGHT_MAX	100000	/* requests waiting for apnse */
#define RATE_TABLE_MAX		100000	/* devices with a recent push */
#define BLOCK_TABLE_MAX		100000	/* dead tokens, token mode */
#define BLOCK_TTL		(7 * 86400)

struct push_inflight {
	RB_ENTRY(push_inflight)	 pi_entry;
	uint32_t		 pi_id;		/* to apnse */
	uint32_t		 pi_reqid;	/* from xmppe, 0: coalesced */
	int			 pi_mode;
	char			 pi_node[TOKEN_MAX + 1];
	char			 pi_token[TOKEN_MAX + 1];
	char			 pi_jid[JID_MAX + 1];
};

struct push_rate {
	RB_ENTRY(push_rate)	 pr_entry;
	char			 pr_key[TOKEN_MAX + 1];	/* node or token */
	int64_t			 pr_last_ms;
	int			 pr_scheduled;
	int			 pr_pushtype;
	int			 pr_mode;
	char			 pr_app[APP_NAME_MAX];
	char			 pr_token[TOKEN_MAX + 1];
	char			 pr_jid[JID_MAX + 1];
	struct event		 pr_ev;
};

struct push_block {
	RB_ENTRY(push_block)	 pb_entry;
	char			 pb_token[TOKEN_MAX + 1];
	time_t			 pb_expires;
};

static int
inflight_cmp(struct push_inflight *a, struct push_inflight *b)
{
	return (a->pi_id < b->pi_id ? -1 : a->pi_id > b->pi_id);
}

static int
rate_cmp(struct push_rate *a, struct push_rate *b)
{
	return (strcmp(a->pr_key, b->pr_key));
}

static int
block_cmp(struct push_block *a, struct push_block *b)
{
	return (strcmp(a->pb_token, b->pb_token));
}

RB_HEAD(inflight_tree, push_inflight);
RB_GENERATE(inflight_tree, push_inflight, pi_entry, inflight_cmp)
RB_HEAD(rate_tree, push_rate);
RB_GENERATE(rate_tree, push_rate, pr_entry, rate_cmp)
RB_HEAD(block_tree, push_block);
RB_GENERATE(block_tree, push_block, pb_entry, block_cmp)

static struct inflight_tree	 inflight = RB_INITIALIZER(&inflight);
static struct rate_tree		 rates = RB_INITIALIZER(&rates);
static struct block_tree	 blocks = RB_INITIALIZER(&blocks);
static size_t			 ninflight, nrates, nblocks;
static uint32_t			 next_id = 1;
static struct ctl_stats		 stats;

void
parent_push_stats(struct ctl_stats *st)
{
	*st = stats;
	st->st_inflight = ninflight;
	st->st_rate_entries = nrates;
	st->st_blocked = nblocks;
}

static int64_t
now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* Berkeley DB asks for recovery: the restart of the daemon does it. */
static int
reg_check(int r)
{
	if (r == REG_EPANIC)
		fatalx("registration database needs recovery; exiting so "
		    "that the restart recovers it");
	return (r);
}

static void
push_reply(struct privsep *ps, uint32_t reqid, int outcome)
{
	struct push_res	 res;

	if (reqid == 0)
		return;
	if (outcome == PUSH_NOT_FOUND)
		stats.st_not_found++;
	memset(&res, 0, sizeof(res));
	res.ps_outcome = outcome;
	proc_compose(ps, PROC_XMPPE, IMSG_PUSH_RES, reqid, -1, &res,
	    sizeof(res));
}

static void
push_event(int type, const char *jid, const char *node, const char *token,
    int status)
{
	struct log_event	 le;

	memset(&le, 0, sizeof(le));
	le.le_type = type;
	le.le_time = time(NULL);
	if (jid != NULL)
		strlcpy(le.le_jid, jid, sizeof(le.le_jid));
	if (node != NULL)
		strlcpy(le.le_node, node, sizeof(le.le_node));
	if (token != NULL)
		strlcpy(le.le_token, token, sizeof(le.le_token));
	le.le_status = status;
	log_event(&le);
}

/* Hand one request to apnse; reqid 0 is a coalesced, unanswered one. */
static int
push_send(struct privsep *ps, uint32_t reqid, int mode, const char *app,
    const char *node, const char *token, const char *jid, int pushtype)
{
	struct push_inflight	*pi;
	struct apns_send	 an;

	if (ninflight >= PUSH_INFLIGHT_MAX ||
	    (pi = calloc(1, sizeof(*pi))) == NULL) {
		push_reply(ps, reqid, PUSH_RESOURCE);
		return (-1);
	}
	do {
		pi->pi_id = next_id++;
	} while (pi->pi_id == 0 ||
	    RB_FIND(inflight_tree, &inflight, pi) != NULL);
	pi->pi_reqid = reqid;
	pi->pi_mode = mode;
	strlcpy(pi->pi_node, node, sizeof(pi->pi_node));
	strlcpy(pi->pi_token, token, sizeof(pi->pi_token));
	strlcpy(pi->pi_jid, jid, sizeof(pi->pi_jid));
	RB_INSERT(inflight_tree, &inflight, pi);
	ninflight++;
	stats.st_sent++;

	memset(&an, 0, sizeof(an));
	strlcpy(an.an_app, app, sizeof(an.an_app));
	strlcpy(an.an_token, token, sizeof(an.an_token));
	an.an_pushtype = pushtype;
	proc_compose(ps, PROC_APNSE, IMSG_APNS_SEND, pi->pi_id, -1, &an,
	    sizeof(an));
	return (0);
}

static void
rate_fire(int fd, short event, void *arg)
{
	struct push_rate	*pr = arg;

	pr->pr_scheduled = 0;
	pr->pr_last_ms = now_ms();
	(void)push_send(mp_ps, 0, pr->pr_mode, pr->pr_app, pr->pr_key,
	    pr->pr_token, pr->pr_jid, pr->pr_pushtype);
}

/* Forget devices whose interval has passed with nothing scheduled. */
static void
rate_expire(int64_t now, int64_t interval_ms)
{
	struct push_rate	*pr, *next;

	RB_FOREACH_SAFE(pr, rate_tree, &rates, next) {
		if (pr->pr_scheduled || now - pr->pr_last_ms < interval_ms)
			continue;
		RB_REMOVE(rate_tree, &rates, pr);
		nrates--;
		free(pr);
	}
}

/*
 * The rate limit: the first push goes at once; within the interval the
 * pushes are coalesced into one sent at its end.  Returns 1 when the
 * caller should send now, 0 when the push was coalesced (and answered),
 * -1 when the table is full (answered with resource-constraint).
 */
static int
push_rate(struct privsep *ps, uint32_t reqid, struct mp_app *app,
    const char *key, const char *token, const char *jid, int pushtype)
{
	struct push_rate	 find, *pr;
	struct timeval		 tv;
	int64_t			 now = now_ms(), wait;
	int64_t			 interval = app->a_ratelimit * 1000;

	if (interval <= 0)
		return (1);
	strlcpy(find.pr_key, key, sizeof(find.pr_key));
	if ((pr = RB_FIND(rate_tree, &rates, &find)) == NULL) {
		if (nrates >= RATE_TABLE_MAX)
			rate_expire(now, interval);
		if (nrates >= RATE_TABLE_MAX ||
		    (pr = calloc(1, sizeof(*pr))) == NULL) {
			push_reply(ps, reqid, PUSH_RESOURCE);
			return (-1);
		}
		strlcpy(pr->pr_key, key, sizeof(pr->pr_key));
		pr->pr_last_ms = now;
		evtimer_set(&pr->pr_ev, rate_fire, pr);
		RB_INSERT(rate_tree, &rates, pr);
		nrates++;
		return (1);
	}
	if (!pr->pr_scheduled && now - pr->pr_last_ms >= interval) {
		pr->pr_last_ms = now;
		return (1);
	}
	stats.st_coalesced++;
	/* Coalesce: an alert wins over a background push. */
	if (!pr->pr_scheduled || pushtype == PRIO_ALERT)
		pr->pr_pushtype = pushtype;
	strlcpy(pr->pr_app, app->a_name, sizeof(pr->pr_app));
	strlcpy(pr->pr_token, token, sizeof(pr->pr_token));
	strlcpy(pr->pr_jid, jid, sizeof(pr->pr_jid));
	pr->pr_mode = app->a_mode;
	if (!pr->pr_scheduled) {
		pr->pr_scheduled = 1;
		wait = pr->pr_last_ms + interval - now;
		if (wait < 0)
			wait = 0;
		tv.tv_sec = wait / 1000;
		tv.tv_usec = (wait % 1000) * 1000;
		evtimer_add(&pr->pr_ev, &tv);
	}
	push_reply(ps, reqid, PUSH_OK);
	return (0);
}

static int
push_blocked(const char *token)
{
	struct push_block	 find, *pb;

	strlcpy(find.pb_token, token, sizeof(find.pb_token));
	if ((pb = RB_FIND(block_tree, &blocks, &find)) == NULL)
		return (0);
	if (pb->pb_expires > time(NULL))
		return (1);
	RB_REMOVE(block_tree, &blocks, pb);
	nblocks--;
	free(pb);
	return (0);
}

static void
push_block(const char *token)
{
	struct push_block	*pb, *oldest = NULL;

	if (push_blocked(token))
		return;
	if (nblocks >= BLOCK_TABLE_MAX) {
		RB_FOREACH(pb, block_tree, &blocks)
			if (oldest == NULL ||
			    pb->pb_expires < oldest->pb_expires)
				oldest = pb;
		RB_REMOVE(block_tree, &blocks, oldest);
		free(oldest);
		nblocks--;
	}
	if ((pb = calloc(1, sizeof(*pb))) == NULL)
		return;
	strlcpy(pb->pb_token, token, sizeof(pb->pb_token));
	pb->pb_expires = time(NULL) + BLOCK_TTL;
	RB_INSERT(block_tree, &blocks, pb);
	nblocks++;
}

static void
push_request(struct privsep *ps, uint32_t reqid, struct push_req *pq)
{
	struct reg_record	 rr;
	struct mp_app		*app;
	char			 token[TOKEN_MAX + 1];
	int			 r;

	if (pq->pq_app[0] != '\0')
		app = config_app_find(ps->ps_conf, pq->pq_app);
	else
		app = config_app_default(ps->ps_conf);
	if (!pq->pq_has_secret && app != NULL && app->a_mode == APP_MODE_TOKEN) {
		/* Token mode: the node is the token; nothing is stored. */
		if (registry_check_token(pq->pq_node) != REG_OK ||
		    push_blocked(pq->pq_node)) {
			push_reply(ps, reqid, PUSH_NOT_FOUND);
			return;
		}
		if (push_rate(ps, reqid, app, pq->pq_node, pq->pq_node,
		    pq->pq_jid, pq->pq_pushtype) != 1)
			return;
		(void)push_send(ps, reqid, APP_MODE_TOKEN, app->a_name,
		    pq->pq_node, pq->pq_node, pq->pq_jid, pq->pq_pushtype);
		return;
	}
	if (!pq->pq_has_secret) {
		push_reply(ps, reqid, PUSH_NOT_FOUND);
		return;
	}
	r = reg_check(registry_lookup(ps->ps_reg, pq->pq_node,
	    pq->pq_domain, pq->pq_secret, &rr));
	explicit_bzero(pq->pq_secret, sizeof(pq->pq_secret));
	if (r != REG_OK) {
		if (r != REG_ENOTFOUND && r != REG_EWRONGDOMAIN &&
		    r != REG_EWRONGSECRET && r != REG_ENODE_EMPTY &&
		    r != REG_ENODE_LONG && r != REG_ENODE_CHAR) {
			log_warnx("push: lookup: %s", registry_strerror(r));
			push_reply(ps, reqid, PUSH_INTERNAL);
		} else {
			log_debug("push: node %s from %s: %s", pq->pq_node,
			    pq->pq_domain, registry_strerror(r));
			push_reply(ps, reqid, PUSH_NOT_FOUND);
		}
		return;
	}
	strlcpy(token, rr.rr_token, sizeof(token));
	if ((app = config_app_find(ps->ps_conf, rr.rr_app)) == NULL) {
		log_warnx("push: node %s belongs to app %s, which is no "
		    "longer configured", rr.rr_node, rr.rr_app);
		explicit_bzero(&rr, sizeof(rr));
		push_reply(ps, reqid, PUSH_INTERNAL);
		return;
	}
	explicit_bzero(&rr, sizeof(rr));
	if (app->a_priority != PRIO_AUTO)
		pq->pq_pushtype = app->a_priority;
	if (push_rate(ps, reqid, app, pq->pq_node, token, pq->pq_jid,
	    pq->pq_pushtype) != 1)
		return;
	(void)push_send(ps, reqid, APP_MODE_REGISTERED, app->a_name,
	    pq->pq_node, token, pq->pq_jid, pq->pq_pushtype);
}

static void
push_result(struct privsep *ps, uint32_t id, const struct apns_result *ar)
{
	struct push_inflight	 find, *pi;
	struct reg_record	*dead = NULL;
	size_t			 ndead = 0, i;
	int64_t			 ts;
	time_t			 now = time(NULL);
	int			 r, outcome;

	find.pi_id = id;
	if ((pi = RB_FIND(inflight_tree, &inflight, &find)) == NULL)
		fatalx("%s: result for unknown request %u", __func__, id);
	RB_REMOVE(inflight_tree, &inflight, pi);
	ninflight--;

	switch (ar->ar_kind) {
	case APNS_OK:
		stats.st_ok++;
		outcome = PUSH_OK;
		if (pi->pi_mode == APP_MODE_REGISTERED)
			(void)registry_mark_success(ps->ps_reg, pi->pi_node,
			    now);
		push_event(EV_PUSH, pi->pi_jid, pi->pi_node, NULL, 0);
		break;
	case APNS_DEAD_TOKEN:
		stats.st_dead++;
		outcome = PUSH_NOT_FOUND;
		push_event(EV_TOKEN_DEAD, NULL, pi->pi_node, pi->pi_token,
		    ar->ar_status);
		if (pi->pi_mode == APP_MODE_TOKEN) {
			push_block(pi->pi_token);
			break;
		}
		/* Without an APNs timestamp the token is dead as of now. */
		ts = ar->ar_timestamp > 0 ? ar->ar_timestamp :
		    (int64_t)now * 1000;
		r = reg_check(registry_delete_by_token(ps->ps_reg,
		    pi->pi_token, ts, &dead, &ndead));
		if (r != REG_OK) {
			log_warnx("push: dead token of node %s: %s",
			    pi->pi_node, registry_strerror(r));
			outcome = PUSH_INTERNAL;
			break;
		}
		stats.st_deleted += ndead;
		for (i = 0; i < ndead; i++)
			log_info("node %s deleted: APNs says its token is "
			    "dead (%d %s)", dead[i].rr_node, ar->ar_status,
			    ar->ar_reason);
		if (ndead == 0) {
			/* Renewed after Apple's timestamp: keep pushing. */
			log_info("node %s: token reported dead (%d %s) but "
			    "renewed since; kept", pi->pi_node, ar->ar_status,
			    ar->ar_reason);
			outcome = PUSH_INTERNAL;
		}
		registry_records_free(dead, ndead);
		break;
	case APNS_THROTTLED:
		stats.st_throttled++;
		outcome = PUSH_OK;
		if (pi->pi_mode == APP_MODE_REGISTERED)
			(void)registry_mark_error(ps->ps_reg, pi->pi_node, now);
		break;
	case APNS_QUEUE_FULL:
		stats.st_queue_full++;
		outcome = PUSH_RESOURCE;
		break;
	case APNS_OPERATOR:
		stats.st_operator++;
		log_warnx("operator alert: APNs refused a request: %d %s",
		    ar->ar_status, ar->ar_reason);
		outcome = PUSH_INTERNAL;
		if (pi->pi_mode == APP_MODE_REGISTERED)
			(void)registry_mark_error(ps->ps_reg, pi->pi_node, now);
		break;
	default:
		stats.st_transient++;
		outcome = PUSH_TIMEOUT;
		if (pi->pi_mode == APP_MODE_REGISTERED)
			(void)registry_mark_error(ps->ps_reg, pi->pi_node, now);
		break;
	}
	if (registry_pending(ps->ps_reg) > 0)
		parent_registry_kick(ps);
	push_reply(ps, pi->pi_reqid, outcome);
	free(pi);
}

static void
push_register(struct privsep *ps, uint32_t reqid, int type, struct reg_req *rq)
{
	struct reg_res		 res;
	struct reg_record	 rr;
	struct mp_app		*app;
	const char		*appname = rq->rq_app;
	int			 r;

	memset(&res, 0, sizeof(res));
	strlcpy(res.rs_node, rq->rq_node, sizeof(res.rs_node));
	if (type == IMSG_REG_REQ) {
		if (appname[0] == '\0' &&
		    (app = config_app_default(ps->ps_conf)) != NULL)
			appname = app->a_name;
		r = reg_check(registry_register(ps->ps_reg, rq->rq_type,
		    appname, rq->rq_node, rq->rq_token, rq->rq_domain,
		    time(NULL), res.rs_secret));
		if (r == REG_OK) {
			stats.st_registrations++;
			push_event(EV_REGISTER, rq->rq_jid, rq->rq_node,
			    rq->rq_token, 0);
		}
	} else {
		r = reg_check(registry_get(ps->ps_reg, rq->rq_node, &rr));
		if (r == REG_OK)
			r = reg_check(registry_unregister(ps->ps_reg,
			    rq->rq_node, rq->rq_type, rq->rq_domain));
		if (r == REG_OK) {
			stats.st_unregistrations++;
			push_event(EV_UNREGISTER, rq->rq_jid, rq->rq_node,
			    rr.rr_token, 0);
		}
		explicit_bzero(&rr, sizeof(rr));
	}
	res.rs_error = r;
	if (r != REG_OK)
		stats.st_reg_refused++;
	if (r != REG_OK)
		strlcpy(res.rs_text, registry_strerror(r), sizeof(res.rs_text));
	proc_compose(ps, PROC_XMPPE, type == IMSG_REG_REQ ? IMSG_REG_RES :
	    IMSG_UNREG_RES, reqid, -1, &res, sizeof(res));
	explicit_bzero(&res, sizeof(res));
}

/* Messages of the push path, from xmppe and apnse. */
int
parent_push_dispatch(struct privsep *ps, enum mp_proc peer,
    struct imsg *imsg)
{
	struct reg_req		 rq;
	struct push_req		 pq;
	struct apns_result	 ar;

	switch (imsg->hdr.type) {
	case IMSG_REG_REQ:
	case IMSG_UNREG_REQ:
		if (peer != PROC_XMPPE)
			return (-1);
		IMSG_SIZE_CHECK(imsg, &rq);
		memcpy(&rq, imsg->data, sizeof(rq));
		IMSG_STR_CHECK(rq.rq_jid);
		IMSG_STR_CHECK(rq.rq_domain);
		IMSG_STR_CHECK(rq.rq_type);
		IMSG_STR_CHECK(rq.rq_app);
		IMSG_STR_CHECK(rq.rq_node);
		IMSG_STR_CHECK(rq.rq_token);
		push_register(ps, imsg->hdr.peerid, imsg->hdr.type, &rq);
		return (0);
	case IMSG_PUSH_REQ:
		if (peer != PROC_XMPPE)
			return (-1);
		IMSG_TAIL_GET(imsg, &pq, pq_jid);
		explicit_bzero(imsg->data, IMSG_DATA_SIZE(imsg));
		IMSG_STR_CHECK(pq.pq_domain);
		IMSG_STR_CHECK(pq.pq_node);
		IMSG_STR_CHECK(pq.pq_app);
		stats.st_publishes++;
		push_request(ps, imsg->hdr.peerid, &pq);
		explicit_bzero(&pq, sizeof(pq));
		return (0);
	case IMSG_APNS_RESULT:
		if (peer != PROC_APNSE)
			return (-1);
		IMSG_SIZE_CHECK(imsg, &ar);
		memcpy(&ar, imsg->data, sizeof(ar));
		IMSG_STR_CHECK(ar.ar_reason);
		push_result(ps, imsg->hdr.peerid, &ar);
		return (0);
	}
	return (-1);
}
