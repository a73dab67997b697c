/*
 * One HTTP/2 connection to APNs: a non-blocking socket and libtls on the
 * app's event base, the nghttp2 session and its callbacks, the streams
 * in flight, flow-control windows, PING on quiet connections, GOAWAY,
 * and the connect with its back-off when it fails.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/tree.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event.h>
#include <nghttp2/nghttp2.h>
#include <tls.h>

#include "monalpushd.h"
#include "apns.h"

#define APNS_RBUF		(32 * 1024)
#define APNS_WBUF		(64 * 1024)
#define APNS_TICK		1	/* s: connect timeout, idle PING */

static nghttp2_session_callbacks	*apns_h2cb;

/* Streams */

static int
stream_cmp(struct apns_req *a, struct apns_req *b)
{
	return (a->r_stream < b->r_stream ? -1 : a->r_stream > b->r_stream);
}

RB_GENERATE(stream_tree, apns_req, r_node, stream_cmp)

/* Take a request off its stream: the tree entry, and the counters. */
void
h2_stream_remove(struct apns_conn *c, struct apns_req *r)
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
		apns_kick(c->c_app);
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

uint32_t
h2_limit(struct apns_conn *c)
{
	uint32_t	 max;

	max = nghttp2_session_get_remote_settings(c->c_h2,
	    NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
	/* Apple raises the limit after the first accepted token. */
	if (c->c_app->a_jwt != NULL && !c->c_authok && max > 1)
		max = 1;
	return (max);
}

int
h2_usable(struct apns_conn *c)
{
	return (c->c_state == CONN_UP && c->c_settings && !c->c_goaway);
}

/* The caller gave up on a stream: reset it. */
void
h2_cancel(struct apns_conn *c, int32_t sid)
{
	if (c->c_state != CONN_UP)
		return;
	nghttp2_submit_rst_stream(c->c_h2, NGHTTP2_FLAG_NONE, sid,
	    NGHTTP2_CANCEL);
	/* Quiet streams may mean a dead peer: ask it. */
	if (!c->c_pinged) {
		nghttp2_submit_ping(c->c_h2, NGHTTP2_FLAG_NONE, NULL);
		c->c_pinged = 1;
		c->c_pingsent = apns_mono_ms();
	}
	h2_kick(c);
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
		apns_req_end(c, r, END_REFUSED);
	else
		apns_req_end(c, r, r->r_status != 0 ? END_RESPONSE : END_LOST);
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
		apns_req_end(c, r, END_REFUSED);
	return (0);
}

static int
h2_on_frame(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
	struct apns_conn	*c = arg;
	struct apns_app		*app = c->c_app;

	c->c_lastrecv = apns_mono_ms();
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
		apns_kick(app);
		break;
	case NGHTTP2_GOAWAY:
		if (!c->c_goaway) {
			c->c_goaway = 1;
			app->a_nconns--;
			log_info("app %s: GOAWAY from %s, last stream %d, "
			    "error %u", app->a_name, c->c_addr,
			    f->goaway.last_stream_id, f->goaway.error_code);
		}
		apns_kick(app);
		break;
	}
	return (0);
}

ssize_t
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

int
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

/* Connections */

void
h2_kick(struct apns_conn *c)
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
void
h2_close(struct apns_conn *c, const char *why)
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
		h2_connfail(app, "%s: %s", c->c_addr, why);
	else if (!app->a_freeing && (c->c_nlive > 0 || !c->c_goaway))
		log_info("app %s: connection to %s closed: %s", app->a_name,
		    c->c_addr, why);
	while ((r = RB_ROOT(&c->c_streams)) != NULL) {
		h2_stream_remove(c, r);
		if (r->r_orphan)
			free(r);
		else {
			r->r_avoid = c;
			apns_req_retry(r, 1, why);
		}
	}
	conn_free(c);
	apns_kick(app);
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
			h2_close(c, strerror(err));
			return;
		}
		if (tls_connect_socket(c->c_tls, c->c_fd,
		    c->c_app->a_host) == -1) {
			h2_close(c, tls_error(c->c_tls));
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
			h2_close(c, tls_error(c->c_tls));
			return;
		}
		alpn = tls_conn_alpn_selected(c->c_tls);
		if (alpn == NULL || strcmp(alpn, "h2") != 0) {
			h2_close(c, "server did not select ALPN h2");
			return;
		}
		if (conn_h2_start(c) == -1) {
			h2_close(c, "cannot start an HTTP/2 session");
			return;
		}
		c->c_state = CONN_UP;
		c->c_lastrecv = apns_mono_ms();
		/* FALLTHROUGH */
	case CONN_UP:
		if (conn_read(c, &why) == -1) {
			h2_close(c, why);
			return;
		}
		if (conn_write(c) == -1) {
			h2_close(c, "HTTP/2 send failed");
			return;
		}
		if (c->c_goaway && c->c_nlive == 0) {
			h2_close(c, "GOAWAY");
			return;
		}
		if (!nghttp2_session_want_read(c->c_h2) &&
		    !nghttp2_session_want_write(c->c_h2))
			h2_close(c, "session ended");
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
		h2_close(c, "HTTP/2 send failed");
}

static void
conn_tick(int fd, short ev, void *arg)
{
	struct apns_conn	*c = arg;
	struct apns_app		*app = c->c_app;
	int64_t			 now = apns_mono_ms(), tmo;

	tmo = (int64_t)app->a_opts.ao_timeout * 1000;
	if (c->c_goaway && c->c_nlive == 0) {
		h2_close(c, "GOAWAY");
		return;
	}
	if (c->c_state != CONN_UP || !c->c_settings) {
		if (now - c->c_started >= tmo)
			h2_close(c, "connect timeout");
		return;
	}
	if (c->c_pinged) {
		if (now - c->c_pingsent >= tmo)
			h2_close(c, "no answer to PING");
		return;
	}
	if (now - c->c_lastrecv >= (int64_t)APNS_PING_IDLE * 1000) {
		nghttp2_submit_ping(c->c_h2, NGHTTP2_FLAG_NONE, NULL);
		c->c_pinged = 1;
		c->c_pingsent = now;
		h2_kick(c);
	}
}

/* Connecting, and the back-off when it fails */

void
h2_connfail(struct apns_app *app, const char *fmt, ...)
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
	app->a_nextconn = apns_mono_ms() + d / 2 + j;
}

void
h2_retry_later(struct apns_app *app)
{
	struct timeval	 tv;
	int64_t		 d;

	if (evtimer_pending(&app->a_retryev, NULL))
		return;
	d = app->a_nextconn - apns_mono_ms();
	if (d < 0)
		d = 0;
	tv.tv_sec = d / 1000;
	tv.tv_usec = (d % 1000) * 1000;
	evtimer_add(&app->a_retryev, &tv);
}

void
h2_open(struct apns_app *app)
{
	struct apns_conn	*c;
	struct sockaddr_storage	*ss;
	struct timeval		 tv;
	int64_t			 now = apns_mono_ms();
	int			 one = 1;

	if (now < app->a_nextconn) {
		h2_retry_later(app);
		return;
	}
	if (!app->a_literal &&
	    (app->a_naddrs == 0 || now >= app->a_dnsexpire)) {
		if (app->a_dnsq == NULL)
			apns_dns_start(app);
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
		h2_close(c, strerror(errno));
		return;
	}
	event_assign(&c->c_rev, app->a_base, c->c_fd, EV_READ | EV_PERSIST,
	    conn_io, c);
	event_assign(&c->c_wev, app->a_base, c->c_fd, EV_WRITE, conn_io, c);
	setsockopt(c->c_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if ((c->c_tls = tls_client()) == NULL ||
	    tls_configure(c->c_tls, app->a_tls) == -1) {
		h2_close(c, c->c_tls ? tls_error(c->c_tls) : "tls_client");
		return;
	}
	if (connect(c->c_fd, (struct sockaddr *)ss, ss->ss_family == AF_INET ?
	    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)) == -1 &&
	    errno != EINPROGRESS) {
		h2_close(c, strerror(errno));
		return;
	}
	c->c_state = CONN_CONNECTING;
	event_add(&c->c_wev, NULL);
}

