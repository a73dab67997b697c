/*
 * The APNs client: per app a pool of HTTP/2 (nghttp2) connections over
 * non-blocking libtls sockets on the caller's libevent base.
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
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event.h>
#include <nghttp2/nghttp2.h>
#include <tls.h>
#include <unbound.h>
#include <unbound-event.h>

#include "monalpushd.h"

#define APNS_RBUF		(32 * 1024)
#define APNS_WBUF		(64 * 1024)
#define APNS_TICK		1	/* s: connect timeout, idle PING */
#define APNS_DNS_A		1
#define APNS_DNS_AAAA		28
#define APNS_DNS_IN		1

enum conn_state { CONN_CONNECTING, CONN_HANDSHAKE, CONN_UP };
enum req_end { END_RESPONSE, END_REFUSED, END_LOST };

struct apns_conn;

struct apns_req {
	RB_ENTRY(apns_req)	 r_node;		/* in c_streams */
	TAILQ_ENTRY(apns_req)	 r_entry;		/* in a_queue */
	struct apns_app		*r_app;
	struct apns_conn	*r_conn;		/* NULL while queued */
	const void		*r_avoid;	/* conn that failed it */
	struct event		 r_timer;
	uint32_t		 r_id;
	int32_t			 r_stream;
	int			 r_type;
	int			 r_tries;
	int			 r_orphan;
	int			 r_status;
	int			 r_laststatus;
	size_t			 r_sent;	/* payload bytes sent */
	size_t			 r_bodylen;
	char			 r_token[TOKEN_MAX + 1];
	char			 r_body[APNS_BODY_MAX];
};

RB_HEAD(stream_tree, apns_req);

struct apns_conn {
	TAILQ_ENTRY(apns_conn)	 c_entry;
	struct apns_app		*c_app;
	int			 c_state;
	int			 c_fd;
	struct tls		*c_tls;
	nghttp2_session		*c_h2;
	struct event		 c_rev;
	struct event		 c_wev;
	struct event		 c_flushev;
	struct event		 c_tick;
	struct stream_tree	 c_streams;
	struct apns_req		*c_last;	/* lookup cache */
	uint32_t		 c_nstreams;	/* orphans included */
	uint32_t		 c_nlive;
	int			 c_settings;
	int			 c_goaway;
	int			 c_authok;
	int			 c_pinged;
	int64_t			 c_started;	/* ms, monotonic */
	int64_t			 c_lastrecv;
	int64_t			 c_pingsent;
	uint8_t			*c_wbuf;
	size_t			 c_wlen;
	size_t			 c_woff;
	const uint8_t		*c_pend;	/* nghttp2's, unsent */
	size_t			 c_pendlen;
	char			 c_addr[INET6_ADDRSTRLEN + 8];
};

/* Outlives its app when that is freed mid-query: libunbound calls back. */
struct apns_dnsq {
	struct apns_app		*q_app;
	int			 q_pending;
};

struct apns_app {
	struct event_base	*a_base;
	struct apns_opts	 a_opts;
	void			(*a_cb)(uint32_t,
				    const struct apns_result *, void *);
	void			*a_cbarg;
	char			 a_name[APP_NAME_MAX];
	char			 a_host[DOMAIN_MAX + 1];
	char			 a_authority[DOMAIN_MAX + 10];
	uint16_t		 a_port;
	int			 a_auth;
	char			 a_topic[TOPIC_MAX];
	char			 a_topic_voip[TOPIC_MAX + 5];
	char			 a_collapse[COLLAPSE_MAX + 1];
	int64_t			 a_ttl;
	struct tls_config	*a_tls;
	struct jwt		*a_jwt;
	char			 a_bearer[JWT_MAX + 8];
	char			*a_payload[PRIO_VOIP + 1];
	size_t			 a_paylen[PRIO_VOIP + 1];
	TAILQ_HEAD(, apns_req)	 a_queue;
	uint32_t		 a_nqueue;
	TAILQ_HEAD(, apns_conn)	 a_conns;
	int			 a_nconns;		/* not draining */
	struct event		 a_dispatchev;
	struct event		 a_retryev;
	int			 a_fails;
	int64_t			 a_nextconn;	/* ms, back-off */
	const struct timeval	*a_timeout;	/* common timeout */
	struct sockaddr_storage	 a_addrs[APNS_DNS_ADDRS_MAX];
	int			 a_naddrs;
	int			 a_addri;
	int			 a_literal;
	int64_t			 a_dnsexpire;		/* ms */
	struct apns_dnsq	*a_dnsq;		/* NULL when idle */
	int64_t			 a_dnsttl;
	int			 a_freeing;
	struct apns_stats	 a_stats;
};

static int	 stream_cmp(struct apns_req *, struct apns_req *);
/* libbsd's tree.h wants __unused, which libbsd leaves undefined. */
#define __unused	__attribute__((__unused__))
RB_GENERATE_STATIC(stream_tree, apns_req, r_node, stream_cmp)
#undef __unused

static nghttp2_session_callbacks	*apns_h2cb;
static struct ub_ctx			*apns_ub;
static uint8_t				*apns_sysca;	/* read early */
static size_t				 apns_syscalen;

static void	 app_kick(struct apns_app *);
static void	 app_dispatch(int, short, void *);
static void	 app_connfail(struct apns_app *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
static void	 conn_open(struct apns_app *);
static void	 conn_close(struct apns_conn *, const char *);
static void	 conn_kick(struct apns_conn *);
static void	 req_retry(struct apns_req *, int, const char *);
static void	 req_timeout(int, short, void *);

static int
stream_cmp(struct apns_req *a, struct apns_req *b)
{
	return (a->r_stream < b->r_stream ? -1 : a->r_stream > b->r_stream);
}

static int64_t
mono_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

const char *
apns_kind_name(int kind)
{
	static const char *names[APNS_KIND_MAX] = { "ok", "dead-token",
	    "throttled", "operator", "transient", "queue-full" };

	if (kind < 0 || kind >= APNS_KIND_MAX)
		return ("unknown");
	return (names[kind]);
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

/*
 * The outcome classes of PROTOCOL.md section 5.  500 and 503 come back
 * as transient; the caller retries those before it reports them.
 */
int
apns_classify(int status, const char *reason)
{
	switch (status) {
	case 200:
		return (APNS_OK);
	case 410:
		return (APNS_DEAD_TOKEN);
	case 400:
		if (strcmp(reason, "BadDeviceToken") == 0 ||
		    strcmp(reason, "DeviceTokenNotForTopic") == 0)
			return (APNS_DEAD_TOKEN);
		return (APNS_OPERATOR);
	case 429:
		if (strcmp(reason, "TooManyProviderTokenUpdates") == 0)
			return (APNS_OPERATOR);
		return (APNS_THROTTLED);
	case 0:
	case 500:
	case 503:
		return (APNS_TRANSIENT);
	default:
		return (APNS_OPERATOR);
	}
}

/*
 * The response body: {"reason":"...","timestamp":N}.  A hand-written
 * parser rather than a JSON library: two fields of a body we cap at
 * APNS_BODY_MAX, no nesting, and every read checked against len, which
 * keeps it small enough to fuzz and to read.  Anything that is not one
 * flat JSON object of strings, numbers and literals is refused (-1).
 */
struct jp {
	const char	*p;
	const char	*end;
};

static void
jp_ws(struct jp *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' ||
	    *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static int
jp_hex(int c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	if (c >= 'a' && c <= 'f')
		return (c - 'a' + 10);
	if (c >= 'A' && c <= 'F')
		return (c - 'A' + 10);
	return (-1);
}

/* A string; out NULL skips it.  -1 on bad syntax or when out is short. */
static int
jp_string(struct jp *j, char *out, size_t outlen)
{
	size_t	 o = 0;
	int	 c, i, h, u;

	if (j->p >= j->end || *j->p != '"')
		return (-1);
	j->p++;
	for (;;) {
		if (j->p >= j->end)
			return (-1);
		c = (unsigned char)*j->p++;
		if (c == '"')
			break;
		if (c < 0x20)
			return (-1);
		if (c == '\\') {
			if (j->p >= j->end)
				return (-1);
			c = *j->p++;
			switch (c) {
			case '"': case '\\': case '/':
				break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'n': c = '\n'; break;
			case 'r': c = '\r'; break;
			case 't': c = '\t'; break;
			case 'u':
				if (j->end - j->p < 4)
					return (-1);
				for (u = 0, i = 0; i < 4; i++) {
					if ((h = jp_hex(j->p[i])) == -1)
						return (-1);
					u = u << 4 | h;
				}
				j->p += 4;
				/* Reasons are ASCII names; keep no more. */
				c = (u >= 0x20 && u < 0x7f) ? u : '?';
				break;
			default:
				return (-1);
			}
		}
		if (out != NULL) {
			if (o + 1 >= outlen)
				return (-1);
			out[o++] = c;
		}
	}
	if (out != NULL)
		out[o] = '\0';
	return (0);
}

/* A JSON number; *v gets it when it is a non-negative integer. */
static int
jp_number(struct jp *j, int64_t *v, int *isint)
{
	int64_t	 n = 0;
	int	 digits = 0, ovf = 0;

	*isint = 1;
	if (j->p < j->end && *j->p == '-') {
		*isint = 0;
		j->p++;
	}
	if (j->p < j->end && *j->p == '0') {
		j->p++;
		digits = 1;
	} else {
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
			if (n > (INT64_MAX - (*j->p - '0')) / 10)
				ovf = 1;
			else
				n = n * 10 + (*j->p - '0');
			j->p++;
			digits++;
		}
	}
	if (digits == 0)
		return (-1);
	if (j->p < j->end && *j->p == '.') {
		*isint = 0;
		j->p++;
		for (digits = 0; j->p < j->end && *j->p >= '0' &&
		    *j->p <= '9'; j->p++)
			digits++;
		if (digits == 0)
			return (-1);
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		*isint = 0;
		j->p++;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		for (digits = 0; j->p < j->end && *j->p >= '0' &&
		    *j->p <= '9'; j->p++)
			digits++;
		if (digits == 0)
			return (-1);
	}
	if (ovf)
		*isint = 0;
	*v = n;
	return (0);
}

static int
jp_literal(struct jp *j)
{
	static const char	*lits[] = { "true", "false", "null" };
	size_t			 i, n;

	for (i = 0; i < sizeof(lits) / sizeof(lits[0]); i++) {
		n = strlen(lits[i]);
		if ((size_t)(j->end - j->p) >= n &&
		    memcmp(j->p, lits[i], n) == 0) {
			j->p += n;
			return (0);
		}
	}
	return (-1);
}

int
apns_parse_reason(const char *buf, size_t len, char *reason, size_t reasonlen,
    int64_t *timestamp)
{
	struct jp	 j;
	char		 key[32];
	int64_t		 v;
	int		 isint, first = 1;

	if (reasonlen == 0)
		return (-1);
	reason[0] = '\0';
	*timestamp = 0;
	j.p = buf;
	j.end = buf + len;
	jp_ws(&j);
	if (j.p >= j.end || *j.p++ != '{')
		return (-1);
	for (;;) {
		jp_ws(&j);
		if (j.p >= j.end)
			return (-1);
		if (*j.p == '}' && first) {
			j.p++;
			break;
		}
		first = 0;
		/* Keys longer than ours are skipped as unknown. */
		if (jp_string(&j, key, sizeof(key)) == -1) {
			key[0] = '\0';
			if (jp_string(&j, NULL, 0) == -1)
				return (-1);
		}
		jp_ws(&j);
		if (j.p >= j.end || *j.p++ != ':')
			return (-1);
		jp_ws(&j);
		if (j.p >= j.end)
			return (-1);
		if (*j.p == '"') {
			if (strcmp(key, "reason") == 0) {
				if (jp_string(&j, reason, reasonlen) == -1) {
					reason[0] = '\0';
					return (-1);
				}
			} else if (jp_string(&j, NULL, 0) == -1)
				return (-1);
		} else if (*j.p == '-' || (*j.p >= '0' && *j.p <= '9')) {
			if (jp_number(&j, &v, &isint) == -1)
				return (-1);
			if (strcmp(key, "timestamp") == 0) {
				if (!isint)
					return (-1);
				*timestamp = v;
			}
		} else if (jp_literal(&j) == -1)
			return (-1);
		jp_ws(&j);
		if (j.p >= j.end)
			return (-1);
		if (*j.p == ',') {
			j.p++;
			continue;
		}
		if (*j.p++ != '}')
			return (-1);
		break;
	}
	jp_ws(&j);
	return (j.p == j.end ? 0 : -1);
}

/* Append s as a JSON string; -1 when it does not fit. */
static int
json_str(char *buf, size_t len, size_t *off, const char *s)
{
	static const char	 hex[] = "0123456789abcdef";
	size_t			 o = *off;
	unsigned char		 c;

	if (o + 1 >= len)
		return (-1);
	buf[o++] = '"';
	for (; *s != '\0'; s++) {
		c = *s;
		if (o + 7 >= len)
			return (-1);
		if (c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = c;
		} else if (c < 0x20) {
			memcpy(buf + o, "\\u00", 4);
			buf[o + 4] = hex[c >> 4];
			buf[o + 5] = hex[c & 15];
			o += 6;
		} else
			buf[o++] = c;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	*off = o;
	return (0);
}

static int
json_raw(char *buf, size_t len, size_t *off, const char *s)
{
	size_t	 n = strlen(s);

	if (*off + n >= len)
		return (-1);
	memcpy(buf + *off, s, n + 1);
	*off += n;
	return (0);
}

/*
 * Payloads carry nothing of the message: alerts a generic text that the
 * app's notification extension replaces, the others only wake the app.
 */
int
apns_payload(int type, int mutable, char *buf, size_t len)
{
	size_t	 off = 0, max;

	max = type == PRIO_VOIP ? APNS_PAYLOAD_VOIP_MAX : APNS_PAYLOAD_MAX;
	if (len > max + 1)
		len = max + 1;
	switch (type) {
	case PRIO_ALERT:
		if (json_raw(buf, len, &off, "{\"aps\":{\"alert\":{\"title\":")
		    == -1 || json_str(buf, len, &off, "New Message") == -1 ||
		    json_raw(buf, len, &off, ",\"body\":") == -1 ||
		    json_str(buf, len, &off, "You have a new message") == -1 ||
		    json_raw(buf, len, &off, "},\"sound\":\"default\"") == -1 ||
		    (mutable && json_raw(buf, len, &off,
		    ",\"mutable-content\":1") == -1) ||
		    json_raw(buf, len, &off, "}}") == -1)
			return (-1);
		break;
	case PRIO_BACKGROUND:
		if (json_raw(buf, len, &off,
		    "{\"aps\":{\"content-available\":1}}") == -1)
			return (-1);
		break;
	case PRIO_VOIP:
		if (json_raw(buf, len, &off,
		    "{\"aps\":{\"content-available\":1},\"voip\":1}") == -1)
			return (-1);
		break;
	default:
		return (-1);
	}
	return ((int)off);
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
	app_kick(app);
}

/* A try failed; counted tries are bounded, refused ones are replayed. */
static void
req_retry(struct apns_req *r, int counted, const char *why)
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

/* Take a request off its stream: the tree entry, and the counters. */
static void
stream_remove(struct apns_conn *c, struct apns_req *r)
{
	RB_REMOVE(stream_tree, &c->c_streams, r);
	if (c->c_last == r)
		c->c_last = NULL;
	c->c_nstreams--;
	if (!r->r_orphan)
		c->c_nlive--;
	r->r_conn = NULL;
	/* A stream is free: queued requests may go. */
	if (!TAILQ_EMPTY(&c->c_app->a_queue))
		app_kick(c->c_app);
}

static struct apns_req *
stream_find(struct apns_conn *c, int32_t sid)
{
	struct apns_req	 key;

	if (c->c_last != NULL && c->c_last->r_stream == sid)
		return (c->c_last);
	key.r_stream = sid;
	c->c_last = RB_FIND(stream_tree, &c->c_streams, &key);
	return (c->c_last);
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
		req_retry(r, 1, "timeout");
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
		req_retry(n, 1, "timeout");
	}
	if (c->c_state == CONN_UP) {
		nghttp2_submit_rst_stream(c->c_h2, NGHTTP2_FLAG_NONE,
		    r->r_stream, NGHTTP2_CANCEL);
		/* Quiet streams may mean a dead peer: ask it. */
		if (!c->c_pinged) {
			nghttp2_submit_ping(c->c_h2, NGHTTP2_FLAG_NONE, NULL);
			c->c_pinged = 1;
			c->c_pingsent = mono_ms();
		}
		conn_kick(c);
	}
}

/* A stream ended: a response, a refusal, or a loss. */
static void
req_end(struct apns_conn *c, struct apns_req *r, int how)
{
	struct apns_app	*app = c->c_app;
	char		 reason[APNS_REASON_MAX];
	int64_t		 ts = 0;
	int		 kind, renewed;

	stream_remove(c, r);
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
		req_retry(r, 1, "connection lost");
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
	kind = apns_classify(r->r_status, reason);
	r->r_laststatus = r->r_status;
	if (kind == APNS_TRANSIENT) {
		req_retry(r, 1, reason[0] != '\0' ? reason : "server error");
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
			req_retry(r, 1, reason);
			return;
		}
	}
	if (kind == APNS_OPERATOR)
		log_warnx("app %s: APNs answered %d %s", app->a_name,
		    r->r_status, reason);
	req_finish(r, r->r_status, reason, kind == APNS_DEAD_TOKEN ? ts : 0,
	    kind);
}

/* nghttp2 callbacks */

static int
h2_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
    size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
    void *arg)
{
	struct apns_conn	*c = arg;
	struct apns_req		*r;

	if (f->hd.type != NGHTTP2_HEADERS || namelen != 7 ||
	    memcmp(name, ":status", 7) != 0)
		return (0);
	if ((r = stream_find(c, f->hd.stream_id)) == NULL)
		return (0);
	if (valuelen == 3 && value[0] >= '1' && value[0] <= '5' &&
	    value[1] >= '0' && value[1] <= '9' &&
	    value[2] >= '0' && value[2] <= '9')
		r->r_status = (value[0] - '0') * 100 + (value[1] - '0') * 10 +
		    (value[2] - '0');
	/* 1xx are interim: the real status follows. */
	if (r->r_status < 200)
		r->r_status = 0;
	return (0);
}

static int
h2_on_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data,
    size_t len, void *arg)
{
	struct apns_conn	*c = arg;
	struct apns_req		*r;
	size_t			 n;

	if ((r = stream_find(c, sid)) == NULL)
		return (0);
	n = sizeof(r->r_body) - r->r_bodylen;
	if (len > n)
		len = n;
	memcpy(r->r_body + r->r_bodylen, data, len);
	r->r_bodylen += len;
	return (0);
}

static int
h2_on_close(nghttp2_session *s, int32_t sid, uint32_t error, void *arg)
{
	struct apns_conn	*c = arg;
	struct apns_req		*r;

	if ((r = stream_find(c, sid)) == NULL)
		return (0);
	if (r->r_status == 0 && error == NGHTTP2_REFUSED_STREAM)
		req_end(c, r, END_REFUSED);
	else
		req_end(c, r, r->r_status != 0 ? END_RESPONSE : END_LOST);
	return (0);
}

static int
h2_on_not_send(nghttp2_session *s, const nghttp2_frame *f, int err, void *arg)
{
	struct apns_conn	*c = arg;
	struct apns_req		*r;

	if (f->hd.type != NGHTTP2_HEADERS)
		return (0);
	if ((r = stream_find(c, f->hd.stream_id)) != NULL)
		req_end(c, r, END_REFUSED);
	return (0);
}

static int
h2_on_frame(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
	struct apns_conn	*c = arg;
	struct apns_app		*app = c->c_app;

	c->c_lastrecv = mono_ms();
	c->c_pinged = 0;
	switch (f->hd.type) {
	case NGHTTP2_SETTINGS:
		if (f->hd.flags & NGHTTP2_FLAG_ACK)
			break;
		if (!c->c_settings) {
			c->c_settings = 1;
			app->a_fails = 0;
			app->a_stats.as_connects++;
			log_debug("app %s: connected to %s", app->a_name,
			    c->c_addr);
		}
		app_kick(app);
		break;
	case NGHTTP2_GOAWAY:
		if (!c->c_goaway) {
			c->c_goaway = 1;
			app->a_nconns--;
			log_info("app %s: GOAWAY from %s, last stream %d, "
			    "error %u", app->a_name, c->c_addr,
			    f->goaway.last_stream_id, f->goaway.error_code);
		}
		app_kick(app);
		break;
	}
	return (0);
}

static ssize_t
h2_read_payload(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len,
    uint32_t *flags, nghttp2_data_source *src, void *arg)
{
	struct apns_conn	*c = arg;
	struct apns_app		*app = c->c_app;
	struct apns_req		*r;
	size_t			 n;

	if ((r = stream_find(c, sid)) == NULL)
		return (NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE);
	n = app->a_paylen[r->r_type] - r->r_sent;
	if (n > len)
		n = len;
	memcpy(buf, app->a_payload[r->r_type] + r->r_sent, n);
	r->r_sent += n;
	if (r->r_sent == app->a_paylen[r->r_type])
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return ((ssize_t)n);
}

static int
h2_callbacks(void)
{
	nghttp2_session_callbacks	*cb;

	if (apns_h2cb != NULL)
		return (0);
	if (nghttp2_session_callbacks_new(&cb) != 0)
		return (-1);
	nghttp2_session_callbacks_set_on_header_callback(cb, h2_on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb,
	    h2_on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb,
	    h2_on_close);
	nghttp2_session_callbacks_set_on_frame_not_send_callback(cb,
	    h2_on_not_send);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, h2_on_frame);
	apns_h2cb = cb;
	return (0);
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

static uint32_t
conn_limit(struct apns_conn *c)
{
	uint32_t	 max;

	max = nghttp2_session_get_remote_settings(c->c_h2,
	    NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
	/* Apple raises the limit after the first accepted token. */
	if (c->c_app->a_jwt != NULL && !c->c_authok && max > 1)
		max = 1;
	return (max);
}

static int
conn_usable(struct apns_conn *c)
{
	return (c->c_state == CONN_UP && c->c_settings && !c->c_goaway);
}

static struct apns_conn *
app_pick(struct apns_app *app, struct apns_req *r)
{
	struct apns_conn	*c, *avoided = NULL;

	TAILQ_FOREACH(c, &app->a_conns, c_entry) {
		if (!conn_usable(c) || c->c_nstreams >= conn_limit(c))
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
		if (c->c_nstreams < conn_limit(c))
			return (0);
	}
	return (1);
}

static void
app_kick(struct apns_app *app)
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
			conn_close(c, "submit failed");
			continue;
		}
		conn_kick(c);
	}
	if (app_wants_conn(app))
		conn_open(app);
}

/* Connections */

static void
conn_kick(struct apns_conn *c)
{
	event_active(&c->c_flushev, EV_WRITE, 1);
}

static void
conn_free(struct apns_conn *c)
{
	if (c->c_fd != -1) {
		event_del(&c->c_rev);
		event_del(&c->c_wev);
	}
	event_del(&c->c_flushev);
	event_del(&c->c_tick);
	if (c->c_h2 != NULL)
		nghttp2_session_del(c->c_h2);
	if (c->c_tls != NULL) {
		tls_close(c->c_tls);
		tls_free(c->c_tls);
	}
	if (c->c_fd != -1)
		close(c->c_fd);
	free(c->c_wbuf);
	free(c);
}

/*
 * Close a connection; what was in flight on it is retried elsewhere.  The
 * session is gone first, so no nghttp2 callback sees a freed request.
 */
static void
conn_close(struct apns_conn *c, const char *why)
{
	struct apns_app	*app = c->c_app;
	struct apns_req	*r;

	TAILQ_REMOVE(&app->a_conns, c, c_entry);
	if (!c->c_goaway)
		app->a_nconns--;
	if (c->c_h2 != NULL) {
		nghttp2_session_del(c->c_h2);
		c->c_h2 = NULL;
	}
	if (!c->c_settings && !app->a_freeing)
		app_connfail(app, "%s: %s", c->c_addr, why);
	else if (!app->a_freeing && (c->c_nlive > 0 || !c->c_goaway))
		log_info("app %s: connection to %s closed: %s", app->a_name,
		    c->c_addr, why);
	while ((r = RB_ROOT(&c->c_streams)) != NULL) {
		stream_remove(c, r);
		if (r->r_orphan)
			free(r);
		else {
			r->r_avoid = c;
			req_retry(r, 1, why);
		}
	}
	conn_free(c);
	app_kick(app);
}

/* Fill the write buffer from nghttp2 and write it; -1 on errors. */
static int
conn_write(struct apns_conn *c)
{
	ssize_t	 n;
	size_t	 k;

	for (;;) {
		while (c->c_wlen < APNS_WBUF) {
			if (c->c_pendlen == 0) {
				n = nghttp2_session_mem_send(c->c_h2,
				    &c->c_pend);
				if (n < 0)
					return (-1);
				if (n == 0)
					break;
				c->c_pendlen = n;
			}
			k = APNS_WBUF - c->c_wlen;
			if (k > c->c_pendlen)
				k = c->c_pendlen;
			memcpy(c->c_wbuf + c->c_wlen, c->c_pend, k);
			c->c_wlen += k;
			c->c_pend += k;
			c->c_pendlen -= k;
		}
		if (c->c_woff == c->c_wlen)
			return (0);
		n = tls_write(c->c_tls, c->c_wbuf + c->c_woff,
		    c->c_wlen - c->c_woff);
		if (n == TLS_WANT_POLLOUT) {
			event_add(&c->c_wev, NULL);
			return (0);
		}
		if (n == TLS_WANT_POLLIN)
			return (0);
		if (n == -1)
			return (-1);
		c->c_woff += n;
		if (c->c_woff == c->c_wlen)
			c->c_woff = c->c_wlen = 0;
	}
}

/* Read until libtls has nothing more; 0 ok, -1 lost (why set). */
static int
conn_read(struct apns_conn *c, const char **why)
{
	static uint8_t	 buf[APNS_RBUF];
	ssize_t		 n, rv;

	for (;;) {
		n = tls_read(c->c_tls, buf, sizeof(buf));
		if (n == TLS_WANT_POLLIN)
			return (0);
		if (n == TLS_WANT_POLLOUT) {
			event_add(&c->c_wev, NULL);
			return (0);
		}
		if (n == -1) {
			*why = tls_error(c->c_tls);
			return (-1);
		}
		if (n == 0) {
			*why = "closed by peer";
			return (-1);
		}
		if ((rv = nghttp2_session_mem_recv(c->c_h2, buf, n)) < 0) {
			*why = nghttp2_strerror((int)rv);
			return (-1);
		}
	}
}

static int
conn_h2_start(struct apns_conn *c)
{
	nghttp2_settings_entry	 iv[] = {
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, APNS_STREAM_WINDOW },
	};

	if (nghttp2_session_client_new(&c->c_h2, apns_h2cb, c) != 0)
		return (-1);
	if (nghttp2_submit_settings(c->c_h2, NGHTTP2_FLAG_NONE, iv,
	    sizeof(iv) / sizeof(iv[0])) != 0 ||
	    nghttp2_session_set_local_window_size(c->c_h2, NGHTTP2_FLAG_NONE,
	    0, APNS_CONN_WINDOW) != 0)
		return (-1);
	return (0);
}

static void
conn_io(int fd, short ev, void *arg)
{
	struct apns_conn	*c = arg;
	const char		*why = NULL, *alpn;
	int			 err, rv;
	socklen_t		 len;

	switch (c->c_state) {
	case CONN_CONNECTING:
		len = sizeof(err);
		if (getsockopt(c->c_fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
			err = errno;
		if (err == EINPROGRESS)
			return;
		if (err != 0) {
			conn_close(c, strerror(err));
			return;
		}
		if (tls_connect_socket(c->c_tls, c->c_fd,
		    c->c_app->a_host) == -1) {
			conn_close(c, tls_error(c->c_tls));
			return;
		}
		c->c_state = CONN_HANDSHAKE;
		event_add(&c->c_rev, NULL);
		/* FALLTHROUGH */
	case CONN_HANDSHAKE:
		rv = tls_handshake(c->c_tls);
		if (rv == TLS_WANT_POLLOUT) {
			event_add(&c->c_wev, NULL);
			return;
		}
		if (rv == TLS_WANT_POLLIN)
			return;
		if (rv == -1) {
			conn_close(c, tls_error(c->c_tls));
			return;
		}
		alpn = tls_conn_alpn_selected(c->c_tls);
		if (alpn == NULL || strcmp(alpn, "h2") != 0) {
			conn_close(c, "server did not select ALPN h2");
			return;
		}
		if (conn_h2_start(c) == -1) {
			conn_close(c, "cannot start an HTTP/2 session");
			return;
		}
		c->c_state = CONN_UP;
		c->c_lastrecv = mono_ms();
		/* FALLTHROUGH */
	case CONN_UP:
		if (conn_read(c, &why) == -1) {
			conn_close(c, why);
			return;
		}
		if (conn_write(c) == -1) {
			conn_close(c, "HTTP/2 send failed");
			return;
		}
		if (c->c_goaway && c->c_nlive == 0) {
			conn_close(c, "GOAWAY");
			return;
		}
		if (!nghttp2_session_want_read(c->c_h2) &&
		    !nghttp2_session_want_write(c->c_h2))
			conn_close(c, "session ended");
		return;
	}
}

static void
conn_flush(int fd, short ev, void *arg)
{
	struct apns_conn	*c = arg;

	if (c->c_state != CONN_UP)
		return;
	if (conn_write(c) == -1)
		conn_close(c, "HTTP/2 send failed");
}

static void
conn_tick(int fd, short ev, void *arg)
{
	struct apns_conn	*c = arg;
	struct apns_app		*app = c->c_app;
	int64_t			 now = mono_ms(), tmo;

	tmo = (int64_t)app->a_opts.ao_timeout * 1000;
	if (c->c_goaway && c->c_nlive == 0) {
		conn_close(c, "GOAWAY");
		return;
	}
	if (c->c_state != CONN_UP || !c->c_settings) {
		if (now - c->c_started >= tmo)
			conn_close(c, "connect timeout");
		return;
	}
	if (c->c_pinged) {
		if (now - c->c_pingsent >= tmo)
			conn_close(c, "no answer to PING");
		return;
	}
	if (now - c->c_lastrecv >= (int64_t)APNS_PING_IDLE * 1000) {
		nghttp2_submit_ping(c->c_h2, NGHTTP2_FLAG_NONE, NULL);
		c->c_pinged = 1;
		c->c_pingsent = now;
		conn_kick(c);
	}
}

static void
app_connfail(struct apns_app *app, const char *fmt, ...)
{
	va_list		 ap;
	int64_t		 d;
	uint32_t	 j;

	va_start(ap, fmt);
	vsnprintf(app->a_stats.as_lasterr, sizeof(app->a_stats.as_lasterr),
	    fmt, ap);
	va_end(ap);
	log_warnx("app %s: connection failed: %s", app->a_name,
	    app->a_stats.as_lasterr);
	app->a_stats.as_connfail++;
	app->a_addri++;
	if (app->a_fails < 16)
		app->a_fails++;
	d = (int64_t)APNS_BACKOFF_MIN_MS << (app->a_fails - 1);
	if (d > APNS_BACKOFF_MAX_MS)
		d = APNS_BACKOFF_MAX_MS;
	/* Full jitter over the upper half spreads many apps' retries. */
	j = arc4random_uniform((uint32_t)(d / 2) + 1);
	app->a_nextconn = mono_ms() + d / 2 + j;
}

static void
app_retry(int fd, short ev, void *arg)
{
	app_kick(arg);
}

/* DNS: IP literals directly, names through libunbound. */

static int
dns_skipname(const uint8_t *p, size_t len, size_t *off)
{
	size_t	 o = *off;

	for (;;) {
		if (o >= len)
			return (-1);
		if ((p[o] & 0xc0) == 0xc0) {
			o += 2;
			break;
		}
		if (p[o] & 0xc0)
			return (-1);
		if (p[o] == 0) {
			o++;
			break;
		}
		o += 1 + p[o];
	}
	if (o > len)
		return (-1);
	*off = o;
	return (0);
}

/* Take the A and AAAA records of an answer; -1 when it does not parse. */
static int
dns_answer(struct apns_app *app, const uint8_t *p, size_t len, uint16_t port)
{
	struct sockaddr_in	*sin;
	struct sockaddr_in6	*sin6;
	size_t			 off = 12;
	unsigned int		 qd, an, i, type, rdlen;
	uint32_t		 ttl;

	if (len < 12)
		return (-1);
	qd = p[4] << 8 | p[5];
	an = p[6] << 8 | p[7];
	for (i = 0; i < qd; i++) {
		if (dns_skipname(p, len, &off) == -1 || off + 4 > len)
			return (-1);
		off += 4;
	}
	for (i = 0; i < an; i++) {
		if (dns_skipname(p, len, &off) == -1 || off + 10 > len)
			return (-1);
		type = p[off] << 8 | p[off + 1];
		ttl = (uint32_t)p[off + 4] << 24 | (uint32_t)p[off + 5] << 16 |
		    (uint32_t)p[off + 6] << 8 | p[off + 7];
		rdlen = p[off + 8] << 8 | p[off + 9];
		off += 10;
		if (off + rdlen > len)
			return (-1);
		if (app->a_naddrs < APNS_DNS_ADDRS_MAX &&
		    ((type == APNS_DNS_A && rdlen == 4) ||
		    (type == APNS_DNS_AAAA && rdlen == 16))) {
			memset(&app->a_addrs[app->a_naddrs], 0,
			    sizeof(app->a_addrs[0]));
			if (type == APNS_DNS_A) {
				sin = (struct sockaddr_in *)
				    &app->a_addrs[app->a_naddrs];
				sin->sin_family = AF_INET;
				sin->sin_port = htons(port);
				memcpy(&sin->sin_addr, p + off, 4);
			} else {
				sin6 = (struct sockaddr_in6 *)
				    &app->a_addrs[app->a_naddrs];
				sin6->sin6_family = AF_INET6;
				sin6->sin6_port = htons(port);
				memcpy(&sin6->sin6_addr, p + off, 16);
			}
			app->a_naddrs++;
			if (ttl < (uint32_t)app->a_dnsttl)
				app->a_dnsttl = ttl;
		}
		off += rdlen;
	}
	return (0);
}

static void
app_retry_later(struct apns_app *app)
{
	struct timeval	 tv;
	int64_t		 d;

	if (evtimer_pending(&app->a_retryev, NULL))
		return;
	d = app->a_nextconn - mono_ms();
	if (d < 0)
		d = 0;
	tv.tv_sec = d / 1000;
	tv.tv_usec = (d % 1000) * 1000;
	evtimer_add(&app->a_retryev, &tv);
}

/* The last answer is in (or none will come): use what we got. */
static void
dns_release(struct apns_dnsq *q)
{
	struct apns_app	*app = q->q_app;

	if (--q->q_pending > 0)
		return;
	free(q);
	if (app == NULL)
		return;
	app->a_dnsq = NULL;
	if (app->a_naddrs == 0) {
		app_connfail(app, "%s: no address found", app->a_host);
		app_retry_later(app);
		return;
	}
	if (app->a_dnsttl < APNS_DNS_TTL_MIN)
		app->a_dnsttl = APNS_DNS_TTL_MIN;
	app->a_dnsexpire = mono_ms() + app->a_dnsttl * 1000;
	app_kick(app);
}

static void
dns_done(void *arg, int rcode, void *pkt, int len, int sec, char *bogus,
    int ratelimited)
{
	struct apns_dnsq	*q = arg;
	struct apns_app		*app = q->q_app;

	if (app != NULL && rcode == 0 && sec != 1 && pkt != NULL && len > 0 &&
	    dns_answer(app, pkt, len, app->a_port) == -1)
		log_warnx("app %s: bad DNS answer for %s", app->a_name,
		    app->a_host);
	dns_release(q);
}

/* libunbound may answer (from /etc/hosts) before ub_resolve_event returns. */
static void
dns_start(struct apns_app *app)
{
	static const int	 types[2] = { APNS_DNS_A, APNS_DNS_AAAA };
	struct apns_dnsq	*q;
	int			 i, qid;

	if (apns_ub == NULL || (q = calloc(1, sizeof(*q))) == NULL) {
		app_connfail(app, "%s: %s", app->a_host, apns_ub == NULL ?
		    "no resolver (apns_dns_init)" : strerror(errno));
		app_retry_later(app);
		return;
	}
	q->q_app = app;
	app->a_dnsq = q;
	app->a_naddrs = 0;
	app->a_addri = 0;
	app->a_dnsttl = INT32_MAX;
	q->q_pending = 1;	/* held while asking */
	for (i = 0; i < 2; i++) {
		q->q_pending++;
		if (ub_resolve_event(apns_ub, app->a_host, types[i],
		    APNS_DNS_IN, q, dns_done, &qid) != 0)
			q->q_pending--;
	}
	dns_release(q);
}

/*
 * Before chroot: read the resolver configuration and the system CA
 * bundle (for apps without their own) while /etc is still there.  The
 * queries then run on the event base, in this process.
 */
int
apns_dns_init(struct event_base *base)
{
	if (apns_sysca == NULL && (apns_sysca = tls_load_file(
	    tls_default_ca_cert_file(), &apns_syscalen, NULL)) == NULL)
		log_warnx("%s: cannot read %s", __func__,
		    tls_default_ca_cert_file());
	if (apns_ub != NULL)
		return (0);
	if ((apns_ub = ub_ctx_create_event(base)) == NULL) {
		log_warnx("%s: ub_ctx_create_event failed", __func__);
		return (-1);
	}
	if (ub_ctx_resolvconf(apns_ub, NULL) != 0)
		log_warnx("%s: cannot read resolv.conf", __func__);
	if (ub_ctx_hosts(apns_ub, NULL) != 0)
		log_warnx("%s: cannot read hosts", __func__);
	return (0);
}

static int
app_literal(struct apns_app *app)
{
	struct sockaddr_storage	*ss = &app->a_addrs[0];
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;

	memset(&app->a_addrs[0], 0, sizeof(app->a_addrs[0]));
	if (inet_pton(AF_INET, app->a_host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(app->a_port);
	} else if (inet_pton(AF_INET6, app->a_host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(app->a_port);
	} else
		return (0);
	app->a_naddrs = 1;
	return (1);
}

static void
conn_open(struct apns_app *app)
{
	struct apns_conn	*c;
	struct sockaddr_storage	*ss;
	struct timeval		 tv;
	int64_t			 now = mono_ms();
	int			 one = 1;

	if (now < app->a_nextconn) {
		app_retry_later(app);
		return;
	}
	if (!app->a_literal &&
	    (app->a_naddrs == 0 || now >= app->a_dnsexpire)) {
		if (app->a_dnsq == NULL)
			dns_start(app);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->c_wbuf = malloc(APNS_WBUF)) == NULL) {
		free(c);
		log_warn("%s", __func__);
		return;
	}
	c->c_app = app;
	c->c_fd = -1;
	c->c_started = now;
	RB_INIT(&c->c_streams);
	ss = &app->a_addrs[app->a_addri % app->a_naddrs];
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)ss)->sin_addr,
		    c->c_addr, sizeof(c->c_addr));
	else
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ss)->sin6_addr,
		    c->c_addr, sizeof(c->c_addr));
	snprintf(c->c_addr + strlen(c->c_addr),
	    sizeof(c->c_addr) - strlen(c->c_addr), ":%u", app->a_port);
	event_assign(&c->c_flushev, app->a_base, -1, 0, conn_flush, c);
	event_assign(&c->c_tick, app->a_base, -1, EV_PERSIST, conn_tick, c);
	TAILQ_INSERT_TAIL(&app->a_conns, c, c_entry);
	app->a_nconns++;
	tv.tv_sec = APNS_TICK;
	tv.tv_usec = 0;
	evtimer_add(&c->c_tick, &tv);

	if ((c->c_fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) == -1) {
		conn_close(c, strerror(errno));
		return;
	}
	event_assign(&c->c_rev, app->a_base, c->c_fd, EV_READ | EV_PERSIST,
	    conn_io, c);
	event_assign(&c->c_wev, app->a_base, c->c_fd, EV_WRITE, conn_io, c);
	setsockopt(c->c_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if ((c->c_tls = tls_client()) == NULL ||
	    tls_configure(c->c_tls, app->a_tls) == -1) {
		conn_close(c, c->c_tls ? tls_error(c->c_tls) : "tls_client");
		return;
	}
	if (connect(c->c_fd, (struct sockaddr *)ss, ss->ss_family == AF_INET ?
	    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)) == -1 &&
	    errno != EINPROGRESS) {
		conn_close(c, strerror(errno));
		return;
	}
	c->c_state = CONN_CONNECTING;
	event_add(&c->c_wev, NULL);
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
	app->a_literal = app_literal(app);
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
		conn_close(c, "shutdown");
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
