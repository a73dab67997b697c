/*
 * The APNs client: per app a pool of HTTP/2 connections (h2.c), the
 * queue of requests waiting for a stream, their timeouts and retries,
 * the headers of each request, and the one result the caller gets.
 *
 * A request lives in exactly one place: the app's queue, or one
 * connection's stream tree.  Leaving either ends in a retry (back to the
 * queue) or in the one callback the caller gets.  A request that timed
 * out on a stream nghttp2 still knows is replaced by a copy for the retry
 * and stays behind as an orphan until nghttp2 closes the stream, so the
 * stream tree always says how many streams the peer sees.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/tree.h>

#include <netinet/in.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event.h>
#include <nghttp2/nghttp2.h>
#include <tls.h>

#include "monalpushd.h"
#include "apns.h"

int64_t
apns_mono_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

void
apns_opts_default(struct apns_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->ao_timeout = APNS_TIMEOUT_DEFAULT;
	o->ao_max_conns = APNS_CONNS_DEFAULT;
	o->ao_queue_max = APNS_QUEUE_DEFAULT;
	o->ao_retries = APNS_RETRIES_DEFAULT;
	o->ao_jwt_renew = APNS_JWT_RENEW_DEFAULT;
	o->ao_jwt_min_interval = APNS_JWT_MIN_INTERVAL;
}

/* Requests */

static void
req_free(struct apns_req *r)
{
	evtimer_del(&r->r_timer);
	free(r);
}

static void
req_arm(struct apns_req *r)
{
	evtimer_add(&r->r_timer, r->r_app->a_timeout);
}

static void
app_result(struct apns_app *app, uint32_t id, int status, const char *reason,
    int64_t ts, int kind)
{
	struct apns_result	 res;

	memset(&res, 0, sizeof(res));
	res.ar_status = status;
	strlcpy(res.ar_reason, reason, sizeof(res.ar_reason));
	res.ar_timestamp = ts;
	res.ar_kind = kind;
	app->a_stats.as_kind[kind]++;
	if (kind == APNS_OPERATOR || kind == APNS_TRANSIENT)
		snprintf(app->a_stats.as_lasterr,
		    sizeof(app->a_stats.as_lasterr), "%d %s", status, reason);
	app->a_cb(id, &res, app->a_cbarg);
}

static void
req_finish(struct apns_req *r, int status, const char *reason, int64_t ts,
    int kind)
{
	struct apns_app	*app = r->r_app;
	uint32_t	 id = r->r_id;

	req_free(r);
	app_result(app, id, status, reason, ts, kind);
}

static void
req_enqueue(struct apns_req *r, int head)
{
	struct apns_app	*app = r->r_app;

	r->r_conn = NULL;
	if (head)
		TAILQ_INSERT_HEAD(&app->a_queue, r, r_entry);
	else
		TAILQ_INSERT_TAIL(&app->a_queue, r, r_entry);
	app->a_nqueue++;
	apns_kick(app);
}

/* A try failed; counted tries are bounded, refused ones are replayed. */
void
apns_req_retry(struct apns_req *r, int counted, const char *why)
{
	struct apns_app	*app = r->r_app;

	if (counted)
		r->r_tries++;
	if (app->a_freeing || r->r_tries > app->a_opts.ao_retries) {
		req_finish(r, r->r_laststatus, why, 0, APNS_TRANSIENT);
		return;
	}
	if (counted) {
		app->a_stats.as_retries++;
		req_arm(r);
	}
	req_enqueue(r, 1);
}

static void
req_timeout(int fd, short ev, void *arg)
{
	struct apns_req		*r = arg, *n;
	struct apns_app		*app = r->r_app;
	struct apns_conn	*c = r->r_conn;

	if (c == NULL) {
		TAILQ_REMOVE(&app->a_queue, r, r_entry);
		app->a_nqueue--;
		apns_req_retry(r, 1, "timeout");
		return;
	}
	/* nghttp2 may still read r: leave it as an orphan, retry a copy. */
	r->r_avoid = c;
	if ((n = malloc(sizeof(*n))) == NULL) {
		log_warn("%s", __func__);
		r->r_orphan = 1;
		c->c_nlive--;
		app_result(app, r->r_id, 0, "timeout", 0, APNS_TRANSIENT);
	} else {
		memcpy(n, r, sizeof(*n));
		n->r_conn = NULL;
		n->r_bodylen = 0;
		n->r_status = 0;
		n->r_sent = 0;
		evtimer_assign(&n->r_timer, app->a_base, req_timeout, n);
		r->r_orphan = 1;
		c->c_nlive--;
		apns_req_retry(n, 1, "timeout");
	}
	h2_cancel(c, r->r_stream);
}

/* A stream ended: a response, a refusal, or a loss. */
/* Every response, retried ones too, by its HTTP status. */
static void
apns_count_status(struct apns_app *app, int status)
{
	static const int	 statuses[] = APNS_STATUSES;
	size_t			 i;

	for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
		if (statuses[i] == status)
			break;
	app->a_stats.as_status[i]++;
}

void
apns_req_end(struct apns_conn *c, struct apns_req *r, int how)
{
	struct apns_app	*app = c->c_app;
	char		 reason[APNS_REASON_MAX];
	int64_t		 ts = 0;
	int		 kind, renewed;

	h2_stream_remove(c, r);
	if (r->r_orphan) {
		free(r);
		return;
	}
	if (how == END_REFUSED) {
		req_enqueue(r, 1);
		return;
	}
	r->r_avoid = c;
	if (how == END_LOST || r->r_status == 0) {
		apns_req_retry(r, 1, "connection lost");
		return;
	}
	reason[0] = '\0';
	if (r->r_bodylen > 0 && apns_parse_reason(r->r_body, r->r_bodylen,
	    reason, sizeof(reason), &ts) == -1) {
		reason[0] = '\0';
		ts = 0;
	}
	if (r->r_status != 403 && r->r_status < 500)
		c->c_authok = 1;
	apns_count_status(app, r->r_status);
	kind = apns_classify(r->r_status, reason);
	r->r_laststatus = r->r_status;
	if (kind == APNS_TRANSIENT) {
		apns_req_retry(r, 1, reason[0] != '\0' ? reason :
		    "server error");
		return;
	}
	if (r->r_status == 403 && strcmp(reason, "ExpiredProviderToken") == 0 &&
	    app->a_jwt != NULL) {
		renewed = jwt_refresh(app->a_jwt, time(NULL),
		    app->a_opts.ao_jwt_renew,
		    app->a_opts.ao_jwt_min_interval, 1);
		if (renewed == 1) {
			snprintf(app->a_bearer, sizeof(app->a_bearer),
			    "bearer %s", jwt_token(app->a_jwt));
			log_info("app %s: provider token renewed after %s",
			    app->a_name, reason);
			apns_req_retry(r, 1, reason);
			return;
		}
	}
	if (kind == APNS_OPERATOR)
		log_warnx("app %s: APNs answered %d %s", app->a_name,
		    r->r_status, reason);
	req_finish(r, r->r_status, reason, kind == APNS_DEAD_TOKEN ? ts : 0,
	    kind);
}

/* Submitting */

#define NV(n, v, vl) { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, \
	(vl), NGHTTP2_NV_FLAG_NO_COPY_NAME }

static int
req_submit(struct apns_conn *c, struct apns_req *r)
{
	struct apns_app		*app = c->c_app;
	nghttp2_nv		 nv[12];
	nghttp2_data_provider	 dp;
	char			 path[sizeof("/3/device/") + TOKEN_MAX];
	char			 exp[24], clen[16];
	const char		*type, *prio, *topic;
	size_t			 n = 0;
	int32_t			 sid;

	switch (r->r_type) {
	case PRIO_ALERT:
		type = "alert";
		prio = "10";
		topic = app->a_topic;
		break;
	case PRIO_VOIP:
		type = "voip";
		prio = "10";
		topic = app->a_topic_voip;
		break;
	default:
		type = "background";
		prio = "5";
		topic = app->a_topic;
		break;
	}
	snprintf(path, sizeof(path), "/3/device/%s", r->r_token);
	snprintf(exp, sizeof(exp), "%lld", app->a_ttl > 0 ?
	    (long long)(time(NULL) + app->a_ttl) : 0LL);
	snprintf(clen, sizeof(clen), "%zu", app->a_paylen[r->r_type]);

	nv[n++] = (nghttp2_nv)NV(":method", "POST", 4);
	nv[n++] = (nghttp2_nv)NV(":scheme", "https", 5);
	nv[n++] = (nghttp2_nv)NV(":authority", app->a_authority,
	    strlen(app->a_authority));
	nv[n++] = (nghttp2_nv)NV(":path", path, strlen(path));
	nv[n++] = (nghttp2_nv)NV("apns-push-type", type, strlen(type));
	nv[n++] = (nghttp2_nv)NV("apns-priority", prio, strlen(prio));
	nv[n++] = (nghttp2_nv)NV("apns-topic", topic, strlen(topic));
	nv[n++] = (nghttp2_nv)NV("apns-expiration", exp, strlen(exp));
	if (app->a_collapse[0] != '\0')
		nv[n++] = (nghttp2_nv)NV("apns-collapse-id", app->a_collapse,
		    strlen(app->a_collapse));
	if (app->a_jwt != NULL)
		nv[n++] = (nghttp2_nv)NV("authorization", app->a_bearer,
		    strlen(app->a_bearer));
	nv[n++] = (nghttp2_nv)NV("content-type", "application/json", 16);
	nv[n++] = (nghttp2_nv)NV("content-length", clen, strlen(clen));

	memset(&dp, 0, sizeof(dp));
	dp.read_callback = h2_read_payload;
	r->r_sent = 0;
	r->r_status = 0;
	r->r_bodylen = 0;
	if ((sid = nghttp2_submit_request(c->c_h2, NULL, nv, n, &dp, NULL)) < 0)
		return (-1);
	r->r_stream = sid;
	r->r_conn = c;
	if (RB_INSERT(stream_tree, &c->c_streams, r) != NULL)
		fatalx("%s: stream %d twice", __func__, sid);
	c->c_nstreams++;
	c->c_nlive++;
	app->a_stats.as_sent++;
	return (0);
}

/* Dispatch: queued requests onto streams, new connections on demand */

static struct apns_conn *
app_pick(struct apns_app *app, struct apns_req *r)
{
	struct apns_conn	*c, *avoided = NULL;

	TAILQ_FOREACH(c, &app->a_conns, c_entry) {
		if (!h2_usable(c) || c->c_nstreams >= h2_limit(c))
			continue;
		if (c == r->r_avoid) {
			avoided = c;
			continue;
		}
		return (c);
	}
	return (avoided);
}

/* Open a connection only when every open one is at its peer's limit. */
static int
app_wants_conn(struct apns_app *app)
{
	struct apns_conn	*c;

	if (TAILQ_EMPTY(&app->a_queue) ||
	    app->a_nconns >= app->a_opts.ao_max_conns)
		return (0);
	TAILQ_FOREACH(c, &app->a_conns, c_entry) {
		if (c->c_goaway)
			continue;
		if (!c->c_settings)
			return (0);	/* one on its way */
		if (app->a_jwt != NULL && !c->c_authok)
			return (0);	/* token not proven yet */
		if (c->c_nstreams < h2_limit(c))
			return (0);
	}
	return (1);
}

void
apns_kick(struct apns_app *app)
{
	if (!app->a_freeing)
		event_active(&app->a_dispatchev, EV_WRITE, 1);
}

static void
app_dispatch(int fd, short ev, void *arg)
{
	struct apns_app		*app = arg;
	struct apns_conn	*c;
	struct apns_req		*r;
	int			 rv;

	if (app->a_jwt != NULL) {
		rv = jwt_refresh(app->a_jwt, time(NULL),
		    app->a_opts.ao_jwt_renew, app->a_opts.ao_jwt_min_interval,
		    0);
		if (rv == -1)
			log_warnx("app %s: cannot sign a provider token",
			    app->a_name);
		else if (rv == 1)
			snprintf(app->a_bearer, sizeof(app->a_bearer),
			    "bearer %s", jwt_token(app->a_jwt));
	}
	while ((r = TAILQ_FIRST(&app->a_queue)) != NULL) {
		if ((c = app_pick(app, r)) == NULL)
			break;
		TAILQ_REMOVE(&app->a_queue, r, r_entry);
		app->a_nqueue--;
		if (req_submit(c, r) == -1) {
			log_warnx("app %s: cannot submit a request on %s",
			    app->a_name, c->c_addr);
			req_enqueue(r, 1);
			h2_close(c, "submit failed");
			continue;
		}
		h2_kick(c);
	}
	if (app_wants_conn(app))
		h2_open(app);
}

static void
app_retry(int fd, short ev, void *arg)
{
	apns_kick(arg);
}

/* The API */

static int
app_tls(struct apns_app *app, const struct mp_app *a, char *err, size_t len)
{
	struct tls_config	*cfg;

	if ((cfg = tls_config_new()) == NULL) {
		snprintf(err, len, "tls_config_new failed");
		return (-1);
	}
	app->a_tls = cfg;
	if (tls_config_set_protocols(cfg, TLS_PROTOCOL_TLSv1_2 |
	    TLS_PROTOCOL_TLSv1_3) == -1 ||
	    tls_config_set_alpn(cfg, "h2") == -1)
		goto fail;
	if (a->a_ca_len > 0) {
		if (tls_config_set_ca_mem(cfg, a->a_ca_mem, a->a_ca_len) == -1)
			goto fail;
	} else if (apns_sysca != NULL && tls_config_set_ca_mem(cfg,
	    apns_sysca, apns_syscalen) == -1)
		goto fail;
	if (a->a_auth == APP_AUTH_CERT && tls_config_set_keypair_mem(cfg,
	    a->a_cert_mem, a->a_cert_len, a->a_key_mem, a->a_key_len) == -1)
		goto fail;
	return (0);
 fail:
	snprintf(err, len, "%s", tls_config_error(cfg));
	return (-1);
}

struct apns_app *
apns_app_new(struct event_base *base, const struct mp_app *a,
    const struct apns_opts *opts,
    void (*cb)(uint32_t, const struct apns_result *, void *), void *arg)
{
	struct apns_app	*app;
	struct timeval	 tv;
	char		 err[256], buf[APNS_PAYLOAD_VOIP_MAX + 1];
	int		 t, n;

	if (h2_callbacks() == -1)
		return (NULL);
	if ((app = calloc(1, sizeof(*app))) == NULL) {
		log_warn("%s", __func__);
		return (NULL);
	}
	app->a_base = base;
	if (opts != NULL)
		app->a_opts = *opts;
	else
		apns_opts_default(&app->a_opts);
	if (app->a_opts.ao_timeout <= 0)
		app->a_opts.ao_timeout = APNS_TIMEOUT_DEFAULT;
	if (app->a_opts.ao_max_conns <= 0 ||
	    app->a_opts.ao_max_conns > APNS_CONNS_MAX)
		app->a_opts.ao_max_conns = app->a_opts.ao_max_conns <= 0 ?
		    APNS_CONNS_DEFAULT : APNS_CONNS_MAX;
	if (app->a_opts.ao_queue_max <= 0)
		app->a_opts.ao_queue_max = APNS_QUEUE_DEFAULT;
	if (app->a_opts.ao_retries < 0)
		app->a_opts.ao_retries = 0;
	app->a_cb = cb;
	app->a_cbarg = arg;
	TAILQ_INIT(&app->a_queue);
	TAILQ_INIT(&app->a_conns);
	strlcpy(app->a_name, a->a_name, sizeof(app->a_name));
	strlcpy(app->a_host, a->a_host[0] != '\0' ? a->a_host :
	    a->a_env == APP_ENV_SANDBOX ? APNS_HOST_SANDBOX :
	    APNS_HOST_PRODUCTION, sizeof(app->a_host));
	app->a_port = a->a_port != 0 ? a->a_port : APNS_PORT_DEFAULT;
	if (app->a_port == APNS_PORT_DEFAULT)
		strlcpy(app->a_authority, app->a_host,
		    sizeof(app->a_authority));
	else if (strchr(app->a_host, ':') != NULL)
		snprintf(app->a_authority, sizeof(app->a_authority),
		    "[%s]:%u", app->a_host, app->a_port);
	else
		snprintf(app->a_authority, sizeof(app->a_authority), "%s:%u",
		    app->a_host, app->a_port);
	app->a_auth = a->a_auth;
	strlcpy(app->a_topic, a->a_topic, sizeof(app->a_topic));
	snprintf(app->a_topic_voip, sizeof(app->a_topic_voip), "%s.voip",
	    a->a_topic);
	strlcpy(app->a_collapse, a->a_collapse, sizeof(app->a_collapse));
	app->a_ttl = a->a_expiration;
	app->a_literal = apns_dns_literal(app);
	event_assign(&app->a_dispatchev, base, -1, 0, app_dispatch, app);
	evtimer_assign(&app->a_retryev, base, app_retry, app);
	tv.tv_sec = app->a_opts.ao_timeout;
	tv.tv_usec = 0;
	app->a_timeout = event_base_init_common_timeout(base, &tv);

	for (t = PRIO_ALERT; t <= PRIO_VOIP; t++) {
		n = apns_payload(t, a->a_mutable, buf, sizeof(buf));
		if (n == -1 || (app->a_payload[t] = strdup(buf)) == NULL) {
			snprintf(err, sizeof(err), "payload");
			goto fail;
		}
		app->a_paylen[t] = n;
	}
	if (app_tls(app, a, err, sizeof(err)) == -1)
		goto fail;
	if (a->a_auth == APP_AUTH_TOKEN) {
		if ((app->a_jwt = jwt_new(a->a_key_mem, a->a_key_len,
		    a->a_keyid, a->a_teamid, err, sizeof(err))) == NULL)
			goto fail;
		if (jwt_refresh(app->a_jwt, time(NULL),
		    app->a_opts.ao_jwt_renew,
		    app->a_opts.ao_jwt_min_interval, 0) == -1) {
			snprintf(err, sizeof(err), "cannot sign a token");
			goto fail;
		}
		snprintf(app->a_bearer, sizeof(app->a_bearer), "bearer %s",
		    jwt_token(app->a_jwt));
	} else if (a->a_auth != APP_AUTH_CERT || a->a_cert_len == 0 ||
	    a->a_key_len == 0) {
		snprintf(err, sizeof(err), "no credentials");
		goto fail;
	}
	return (app);
 fail:
	log_warnx("%s: app %s: %s", __func__, a->a_name, err);
	app->a_freeing = 1;
	apns_app_free(app);
	return (NULL);
}

static int
token_ok(const char *t)
{
	size_t	 n;

	for (n = 0; t[n] != '\0'; n++) {
		if (n >= TOKEN_MAX)
			return (0);
		if (!((t[n] >= '0' && t[n] <= '9') ||
		    (t[n] >= 'a' && t[n] <= 'f') ||
		    (t[n] >= 'A' && t[n] <= 'F')))
			return (0);
	}
	return (n >= TOKEN_MIN);
}

/*
 * Queue one push.  0: the callback will come, exactly once.  -1 and no
 * callback: errno ENOBUFS when the queue is full (answer wait at once),
 * EINVAL for a bad token or push type.
 */
int
apns_send(struct apns_app *app, uint32_t id, const char *token, int type)
{
	struct apns_req	*r;

	if (type < PRIO_ALERT || type > PRIO_VOIP || !token_ok(token)) {
		errno = EINVAL;
		return (-1);
	}
	if (app->a_nqueue >= (uint32_t)app->a_opts.ao_queue_max) {
		app->a_stats.as_kind[APNS_QUEUE_FULL]++;
		errno = ENOBUFS;
		return (-1);
	}
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return (-1);
	r->r_app = app;
	r->r_id = id;
	r->r_type = type;
	strlcpy(r->r_token, token, sizeof(r->r_token));
	evtimer_assign(&r->r_timer, app->a_base, req_timeout, r);
	req_arm(r);
	app->a_stats.as_requests++;
	req_enqueue(r, 0);
	return (0);
}

/* Every request still pending gets its callback, as transient. */
void
apns_app_free(struct apns_app *app)
{
	struct apns_conn	*c;
	struct apns_req		*r;
	int			 t;

	if (app == NULL)
		return;
	app->a_freeing = 1;
	event_del(&app->a_dispatchev);
	evtimer_del(&app->a_retryev);
	if (app->a_dnsq != NULL)
		app->a_dnsq->q_app = NULL;
	while ((c = TAILQ_FIRST(&app->a_conns)) != NULL)
		h2_close(c, "shutdown");
	while ((r = TAILQ_FIRST(&app->a_queue)) != NULL) {
		TAILQ_REMOVE(&app->a_queue, r, r_entry);
		app->a_nqueue--;
		req_finish(r, 0, "shutdown", 0, APNS_TRANSIENT);
	}
	for (t = 0; t <= PRIO_VOIP; t++)
		free(app->a_payload[t]);
	if (app->a_tls != NULL)
		tls_config_free(app->a_tls);
	jwt_free(app->a_jwt);
	free(app);
}

void
apns_app_stats(struct apns_app *app, struct apns_stats *st)
{
	struct apns_conn	*c;

	*st = app->a_stats;
	st->as_conns = st->as_streams = 0;
	TAILQ_FOREACH(c, &app->a_conns, c_entry) {
		st->as_conns++;
		st->as_streams += c->c_nlive;
	}
	st->as_queue = app->a_nqueue;
}
