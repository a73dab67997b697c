/*
 * The s2s streams of xmppe.  Inbound streams come from the listeners the
 * parent bound; outbound streams are made on demand per pair of our
 * domain and a remote domain, for replies and for dialback checks.
 * Everything is non-blocking on the process's event base.
 *
 * This file holds the connections: their state shared by the s2s
 * files, making and freeing them, the write buffer, stream headers and
 * errors, the XML callbacks, the timers, and s2s_send().  The inbound
 * side is s2s_in.c, the outbound side s2s_out.c, the socket and TLS
 * I/O s2s_io.c, dialback dialback.c, certificate checks s2s_cert.c,
 * set-up and reloads s2s_conf.c.
 *
 * A connection is never freed from inside one of its own callbacks: it
 * is marked dead and reaped from a zero timeout, so that the XML parser
 * and libtls are never freed under their own feet.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/tree.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tls.h>

#include "monalpushd.h"
#include "s2s.h"

static int	 s2s_conn_cmp(struct s2s_conn *, struct s2s_conn *);
RB_GENERATE(s2s_tree, s2s_conn, sc_node, s2s_conn_cmp)

struct s2s_tree				 s2s_byid = RB_INITIALIZER(&s2s_byid);
struct s2s_conns			 s2s_conns =
					    TAILQ_HEAD_INITIALIZER(s2s_conns);
struct s2s_domains			 s2s_domains =
					    TAILQ_HEAD_INITIALIZER(s2s_domains);
struct mp_conf				*s2s_cf;
struct s2s_server			*s2s_srv;
X509_STORE				*s2s_store;
int					 s2s_nconns;
struct s2s_stats			 s2s_st;
uint8_t					 s2s_secret[S2S_SECRET_LEN];
static uint64_t				 s2s_nextid = 1;

static void	 s2s_timer_cb(int, short, void *);
static void	 s2s_reap_cb(int, short, void *);
static void	 s2s_xml_open(void *, const struct xml_node *);
static void	 s2s_xml_stanza(void *, struct xml_node *);
static void	 s2s_xml_close(void *);
static void	 s2s_xml_error(void *, enum xml_error, const char *);

static const struct xml_stream_cb s2s_xml_cb = {
	s2s_xml_open, s2s_xml_stanza, s2s_xml_close, s2s_xml_error
};

static int
s2s_conn_cmp(struct s2s_conn *a, struct s2s_conn *b)
{
	return (a->sc_id < b->sc_id ? -1 : a->sc_id > b->sc_id);
}

const char *
s2s_auth_name(int a)
{
	switch (a) {
	case S2S_AUTH_EXTERNAL:
		return ("external");
	case S2S_AUTH_DIALBACK:
		return ("dialback");
	default:
		return ("none");
	}
}

const char *
s2s_dirname(const struct s2s_conn *c)
{
	return (c->sc_dir == S2S_IN ? "in" : "out");
}

/* Helpers: domains, JIDs */

static int
s2s_domain_valid(const char *s)
{
	size_t		 len = strlen(s);
	const u_char	*p;

	if (len == 0 || len > DOMAIN_MAX)
		return (0);
	for (p = (const u_char *)s; *p != '\0'; p++)
		if (*p <= ' ' || strchr("@/<>'\"&\\", *p) != NULL)
			return (0);
	return (1);
}

void
s2s_lower(char *s)
{
	for (; *s != '\0'; s++)
		*s = tolower((u_char)*s);
}

/* The domain part of a JID, lowercased, without a trailing dot. */
int
s2s_jid_domain(const char *jid, char *out, size_t outlen)
{
	const char	*start, *end, *at;
	size_t		 len;

	if ((end = strchr(jid, '/')) == NULL)
		end = jid + strlen(jid);
	start = jid;
	if ((at = memchr(jid, '@', end - jid)) != NULL)
		start = at + 1;
	len = end - start;
	if (len > 0 && start[len - 1] == '.')
		len--;
	if (len == 0 || len >= outlen)
		return (-1);
	memcpy(out, start, len);
	out[len] = '\0';
	s2s_lower(out);
	return (s2s_domain_valid(out) ? 0 : -1);
}

struct s2s_domain *
s2s_ours(const char *name)
{
	struct s2s_domain	*sd;

	TAILQ_FOREACH(sd, &s2s_domains, sd_entry)
		if (strcasecmp(sd->sd_name, name) == 0)
			return (sd);
	return (NULL);
}

/* Connections */

int
s2s_authed(struct s2s_conn *c, const char *remote, const char *local)
{
	struct s2s_authdom	*ad;

	TAILQ_FOREACH(ad, &c->sc_doms, ad_entry)
		if (strcasecmp(ad->ad_remote, remote) == 0 &&
		    (local == NULL || strcasecmp(ad->ad_local, local) == 0))
			return (1);
	return (0);
}

void
s2s_timer(struct s2s_conn *c, int secs)
{
	struct timeval	 tv = { secs, 0 };

	evtimer_add(&c->sc_ev_t, &tv);
}

static void
s2s_want_write(struct s2s_conn *c)
{
	if ((c->sc_flags & (SC_DEAD | SC_WEV)) || c->sc_fd == -1)
		return;
	if (c->sc_dir == S2S_OUT && c->sc_step < OUT_TLS)
		return;
	c->sc_flags |= SC_WEV;
	event_add(&c->sc_ev_w, NULL);
}

struct s2s_conn *
s2s_conn_new(int dir, int fd)
{
	struct s2s_conn		*c;
	struct xml_limits	 xl;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return (NULL);
	xl.xl_stanza_max = s2s_cf->c_stanza_max;
	xl.xl_depth_max = s2s_cf->c_xml_depth;
	xl.xl_attrs_max = s2s_cf->c_xml_attrs;
	if ((c->sc_xml = xml_stream_new(&xl, &s2s_xml_cb, c)) == NULL) {
		free(c);
		return (NULL);
	}
	c->sc_id = s2s_nextid++;
	c->sc_dir = dir;
	c->sc_fd = fd;
	c->sc_started = time(NULL);
	TAILQ_INIT(&c->sc_doms);
	TAILQ_INIT(&c->sc_queue);
	TAILQ_INIT(&c->sc_verifies);
	evtimer_set(&c->sc_ev_t, s2s_timer_cb, c);
	evtimer_set(&c->sc_ev_reap, s2s_reap_cb, c);
	if (fd != -1) {
		event_set(&c->sc_ev_r, fd, EV_READ | EV_PERSIST, s2s_io_cb, c);
		event_set(&c->sc_ev_w, fd, EV_WRITE, s2s_io_cb, c);
	}
	RB_INSERT(s2s_tree, &s2s_byid, c);
	TAILQ_INSERT_TAIL(&s2s_conns, c, sc_entry);
	s2s_nconns++;
	if (dir == S2S_IN)
		s2s_st.ss_in++;
	else
		s2s_st.ss_out++;
	s2s_timer(c, s2s_cf->c_handshake_timeout);
	return (c);
}

static void
s2s_server_unref(struct s2s_server *sv)
{
	if (sv == NULL || --sv->sv_refs > 0 || sv->sv_current)
		return;
	tls_free(sv->sv_tls);
	tls_config_free(sv->sv_cfg);
	free(sv);
}

/* No new connections from it; freed once the last one is gone. */
void
s2s_server_retire(struct s2s_server *sv)
{
	if (sv == NULL)
		return;
	sv->sv_current = 0;
	if (sv->sv_refs == 0) {
		tls_free(sv->sv_tls);
		tls_config_free(sv->sv_cfg);
		free(sv);
	}
}

static void
s2s_conn_free(struct s2s_conn *c)
{
	struct s2s_authdom	*ad;
	struct s2s_verify	*vf;
	struct s2s_qent		*qe;

	if (c->sc_nqueue > 0) {
		log_warnx("s2s out %s -> %s: %d stanza%s dropped",
		    c->sc_local, c->sc_remote, c->sc_nqueue,
		    c->sc_nqueue == 1 ? "" : "s");
		s2s_st.ss_dropped += c->sc_nqueue;
	}
	while ((qe = TAILQ_FIRST(&c->sc_queue)) != NULL) {
		TAILQ_REMOVE(&c->sc_queue, qe, qe_entry);
		free(qe);
	}
	while ((vf = TAILQ_FIRST(&c->sc_verifies)) != NULL) {
		TAILQ_REMOVE(&c->sc_verifies, vf, vf_entry);
		s2s_db_answer(vf->vf_in, vf->vf_orig, vf->vf_recv, "error");
		s2s_verify_free(vf);
	}
	while ((ad = TAILQ_FIRST(&c->sc_doms)) != NULL) {
		TAILQ_REMOVE(&c->sc_doms, ad, ad_entry);
		free(ad);
	}
	if (c->sc_dns != NULL)
		dns_cancel(c->sc_dns);
	evtimer_del(&c->sc_ev_t);
	evtimer_del(&c->sc_ev_reap);
	if (c->sc_fd != -1) {
		event_del(&c->sc_ev_r);
		event_del(&c->sc_ev_w);
		close(c->sc_fd);
	}
	tls_free(c->sc_tls);
	s2s_server_unref(c->sc_srv);
	xml_stream_free(c->sc_xml);
	free(c->sc_wbuf);
	RB_REMOVE(s2s_tree, &s2s_byid, c);
	TAILQ_REMOVE(&s2s_conns, c, sc_entry);
	s2s_nconns--;
	if (c->sc_dir == S2S_IN)
		s2s_st.ss_in--;
	else
		s2s_st.ss_out--;
	free(c);
}

static void
s2s_reap_cb(int fd, short ev, void *arg)
{
	s2s_conn_free(arg);
}

/* Drop the connection now; it is freed from the event loop. */
void
s2s_kill(struct s2s_conn *c, const char *why)
{
	struct timeval	 tv = { 0, 0 };

	if (c->sc_flags & SC_DEAD)
		return;
	if (why != NULL)
		log_info("s2s %s %s%s%s%s: closed: %s", s2s_dirname(c),
		    c->sc_addr[0] ? c->sc_addr : "-",
		    c->sc_remote[0] ? " (" : "", c->sc_remote,
		    c->sc_remote[0] ? ")" : "", why);
	c->sc_flags |= SC_DEAD;
	if (c->sc_fd != -1) {
		event_del(&c->sc_ev_r);
		event_del(&c->sc_ev_w);
	}
	evtimer_del(&c->sc_ev_t);
	evtimer_add(&c->sc_ev_reap, &tv);
}

int
s2s_write(struct s2s_conn *c, const char *buf, size_t len)
{
	size_t	 need, size;
	char	*p;

	if (c->sc_flags & SC_DEAD)
		return (-1);
	if (c->sc_woff > 0 && c->sc_woff == c->sc_wlen)
		c->sc_woff = c->sc_wlen = 0;
	if (c->sc_wlen - c->sc_woff + len > S2S_WBUF_MAX) {
		s2s_kill(c, "peer does not read: output bound crossed");
		return (-1);
	}
	if (c->sc_woff > 0 && c->sc_wlen + len > c->sc_wsize) {
		memmove(c->sc_wbuf, c->sc_wbuf + c->sc_woff,
		    c->sc_wlen - c->sc_woff);
		c->sc_wlen -= c->sc_woff;
		c->sc_woff = 0;
	}
	need = c->sc_wlen + len;
	if (need > c->sc_wsize) {
		size = c->sc_wsize ? c->sc_wsize : 1024;
		while (size < need)
			size *= 2;
		if ((p = realloc(c->sc_wbuf, size)) == NULL) {
			s2s_kill(c, "out of memory");
			return (-1);
		}
		c->sc_wbuf = p;
		c->sc_wsize = size;
	}
	memcpy(c->sc_wbuf + c->sc_wlen, buf, len);
	c->sc_wlen += len;
	s2s_want_write(c);
	return (0);
}

void
s2s_write_xb(struct s2s_conn *c, struct xml_buf *xb)
{
	if (xb->xb_error)
		s2s_kill(c, "cannot build an element");
	else
		(void)s2s_write(c, xb->xb_buf, xb->xb_len);
	xml_buf_free(xb);
}

void
s2s_write_str(struct s2s_conn *c, const char *s)
{
	(void)s2s_write(c, s, strlen(s));
}

/*
 * Stream error, then the end of the stream; the output is flushed and
 * the connection closed.  cond NULL: just end the stream.
 */
void
s2s_close(struct s2s_conn *c, const char *cond, const char *why)
{
	struct xml_buf	 xb;

	if (c->sc_flags & (SC_DEAD | SC_CLOSING))
		return;
	if (c->sc_dir == S2S_IN && !(c->sc_flags & SC_HDR_SENT))
		s2s_send_header(c);
	if (cond != NULL) {
		xml_buf_init(&xb, S2S_XMLBUF_MAX);
		xml_buf_raw(&xb, "<stream:error>");
		xml_buf_open(&xb, cond, 1, "xmlns", NS_STREAMS, (char *)NULL);
		xml_buf_raw(&xb, "</stream:error>");
		s2s_write_xb(c, &xb);
	}
	s2s_write_str(c, "</stream:stream>");
	log_info("s2s %s %s%s%s%s: closing%s%s%s%s", s2s_dirname(c),
	    c->sc_addr[0] ? c->sc_addr : "-",
	    c->sc_remote[0] ? " (" : "", c->sc_remote,
	    c->sc_remote[0] ? ")" : "", cond ? ": " : "", cond ? cond : "",
	    why ? ": " : "", why ? why : "");
	c->sc_flags |= SC_CLOSING;
	s2s_timer(c, S2S_LINGER);
	s2s_want_write(c);
}

void
s2s_send_header(struct s2s_conn *c)
{
	struct xml_buf	 xb;
	uint8_t		 rnd[S2S_ID_LEN];
	size_t		 i;
	int		 in = c->sc_dir == S2S_IN;

	if (in) {
		arc4random_buf(rnd, sizeof(rnd));
		for (i = 0; i < sizeof(rnd); i++)
			snprintf(c->sc_sid + i * 2, 3, "%02x", rnd[i]);
	}
	xml_buf_init(&xb, S2S_XMLBUF_MAX);
	xml_buf_raw(&xb, "<?xml version='1.0'?>");
	xml_buf_open(&xb, "stream:stream", 0, "xmlns", XML_NS_SERVER,
	    "xmlns:stream", XML_NS_STREAM, "xmlns:db", XML_NS_DIALBACK,
	    "from", c->sc_local[0] ? c->sc_local : NULL,
	    "to", c->sc_remote[0] ? c->sc_remote : NULL,
	    "id", in ? c->sc_sid : NULL, "version", "1.0", (char *)NULL);
	c->sc_flags |= SC_HDR_SENT;
	s2s_write_xb(c, &xb);
}

void
s2s_addr_str(const struct sockaddr_storage *ss, char *ip, size_t iplen,
    char *addr, size_t addrlen)
{
	const struct sockaddr_in	*sin = (const void *)ss;
	const struct sockaddr_in6	*sin6 = (const void *)ss;
	int				 port = 0;

	ip[0] = '\0';
	if (ss->ss_family == AF_INET) {
		inet_ntop(AF_INET, &sin->sin_addr, ip, iplen);
		port = ntohs(sin->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, iplen);
		port = ntohs(sin6->sin6_port);
	}
	snprintf(addr, addrlen, "%s port %d", ip, port);
}

static void
s2s_xml_open(void *arg, const struct xml_node *n)
{
	struct s2s_conn	*c = arg;
	const char	*id, *version;

	if (c->sc_flags & (SC_DEAD | SC_CLOSING))
		return;
	c->sc_flags |= SC_HDR_RECV;
	if (c->sc_dir == S2S_IN) {
		s2s_open_in(c, n);
		return;
	}
	id = xml_node_attr(n, "id");
	version = xml_node_attr(n, "version");
	if (version == NULL || strcmp(version, "1.0") < 0) {
		s2s_close(c, NULL, "peer speaks no XMPP 1.0");
		return;
	}
	if (id != NULL && strlen(id) <= S2S_SID_MAX)
		strlcpy(c->sc_sid, id, sizeof(c->sc_sid));
	else
		c->sc_sid[0] = '\0';
}

int
s2s_is(const struct xml_node *n, const char *ns, const char *name)
{
	return (strcmp(n->xn_ns, ns) == 0 && strcmp(n->xn_name, name) == 0);
}

static void
s2s_xml_stanza(void *arg, struct xml_node *n)
{
	struct s2s_conn	*c = arg;

	if (c->sc_flags & (SC_DEAD | SC_CLOSING)) {
		xml_node_free(n);
		return;
	}
	if (c->sc_dir == S2S_IN) {
		if (s2s_is(n, XML_NS_STREAM, "error")) {
			log_info("s2s in %s: stream error from the peer",
			    c->sc_addr);
			xml_node_free(n);
			s2s_kill(c, NULL);
			return;
		}
		s2s_xml_in(c, n);
	} else
		s2s_xml_out(c, n);
}

static void
s2s_xml_close(void *arg)
{
	struct s2s_conn	*c = arg;

	if (c->sc_flags & (SC_DEAD | SC_CLOSING))
		return;
	s2s_close(c, NULL, "closed by the peer");
}

static void
s2s_xml_error(void *arg, enum xml_error e, const char *msg)
{
	struct s2s_conn	*c = arg;

	if (c->sc_flags & (SC_DEAD | SC_CLOSING))
		return;
	s2s_close(c, xml_error_condition(e), msg);
}

static void
s2s_timer_cb(int fd, short ev, void *arg)
{
	struct s2s_conn	*c = arg;

	if (c->sc_flags & SC_DEAD)
		return;
	if (c->sc_flags & SC_CLOSING) {
		s2s_kill(c, NULL);
		return;
	}
	if (c->sc_dir == S2S_OUT && c->sc_step != OUT_READY) {
		if (c->sc_step < OUT_TLS || !(c->sc_flags & SC_HDR_SENT))
			s2s_out_fail(c, c->sc_err[0] ? c->sc_err :
			    "timed out");
		else
			s2s_close(c, "connection-timeout", "handshake");
		return;
	}
	if (c->sc_dir == S2S_IN && (c->sc_ndoms == 0 || c->sc_npending > 0)) {
		if (!(c->sc_flags & SC_TLS) && (c->sc_flags & SC_DIRECT))
			s2s_kill(c, "handshake timeout");
		else if (c->sc_flags & SC_HANDSHAKE)
			s2s_kill(c, "TLS handshake timeout");
		else
			s2s_close(c, "connection-timeout",
			    "handshake timeout");
		return;
	}
	s2s_close(c, NULL, "idle");
}

/* API */

int
s2s_send(const char *local, const char *remote, const char *buf, size_t len)
{
	return (s2s_send_on(0, local, remote, buf, len));
}

/*
 * A reply goes back on the bidi stream its request came in on (id)
 * while that stream lives, so a peer sees its answers in order on one
 * stream; else on any bidi stream from that domain, else on our own.
 */
int
s2s_send_on(uint64_t id, const char *local, const char *remote,
    const char *buf, size_t len)
{
	struct s2s_conn		*c = NULL, key;
	struct s2s_domain	*sd;
	struct s2s_qent		*qe;
	char			 rdom[DOMAIN_MAX + 1];

	if (s2s_cf == NULL || (sd = s2s_ours(local)) == NULL ||
	    strlcpy(rdom, remote, sizeof(rdom)) >= sizeof(rdom))
		return (-1);
	s2s_lower(rdom);
	if (id != 0) {
		key.sc_id = id;
		c = RB_FIND(s2s_tree, &s2s_byid, &key);
		if (c != NULL && !(c->sc_dir == S2S_IN && c->sc_bidi &&
		    !(c->sc_flags & (SC_DEAD | SC_CLOSING)) &&
		    s2s_authed(c, rdom, sd->sd_name)))
			c = NULL;
	}
	if (c == NULL)
		TAILQ_FOREACH(c, &s2s_conns, sc_entry)
			if (c->sc_dir == S2S_IN && c->sc_bidi &&
			    !(c->sc_flags & (SC_DEAD | SC_CLOSING)) &&
			    s2s_authed(c, rdom, sd->sd_name))
				break;
	if (c == NULL && (c = s2s_out_get(sd->sd_name, rdom)) == NULL)
		return (-1);
	if (c->sc_flags & SC_DEAD)
		return (-1);
	if (c->sc_dir == S2S_IN || c->sc_step == OUT_READY) {
		c->sc_nout++;
		s2s_st.ss_stanzas_out++;
		if (c->sc_npending == 0)
			s2s_timer(c, s2s_cf->c_idle_timeout);
		return (s2s_write(c, buf, len));
	}
	if (c->sc_nqueue >= S2S_QUEUE_MAX ||
	    (qe = malloc(sizeof(*qe) + len)) == NULL) {
		log_warnx("s2s out %s -> %s: queue full, stanza dropped",
		    c->sc_local, c->sc_remote);
		s2s_st.ss_dropped++;
		return (-1);
	}
	qe->qe_len = len;
	memcpy(qe->qe_buf, buf, len);
	TAILQ_INSERT_TAIL(&c->sc_queue, qe, qe_entry);
	c->sc_nqueue++;
	return (0);
}

void
s2s_peers(void (*cb)(const struct s2s_peerinfo *, void *), void *arg)
{
	struct s2s_peerinfo	 pi;
	struct s2s_conn		*c;
	time_t			 now = time(NULL);

	TAILQ_FOREACH(c, &s2s_conns, sc_entry) {
		if (c->sc_flags & SC_DEAD)
			continue;
		memset(&pi, 0, sizeof(pi));
		pi.pi_id = c->sc_id;
		pi.pi_dir = c->sc_dir;
		strlcpy(pi.pi_local, c->sc_local, sizeof(pi.pi_local));
		strlcpy(pi.pi_remote, c->sc_remote, sizeof(pi.pi_remote));
		pi.pi_ndomains = c->sc_dir == S2S_IN ? c->sc_ndoms :
		    c->sc_step == OUT_READY;
		strlcpy(pi.pi_addr, c->sc_addr, sizeof(pi.pi_addr));
		strlcpy(pi.pi_tls, c->sc_tlsver, sizeof(pi.pi_tls));
		pi.pi_auth = c->sc_auth;
		pi.pi_bidi = c->sc_bidi;
		pi.pi_age = now - c->sc_started;
		pi.pi_in = c->sc_nin;
		pi.pi_out = c->sc_nout;
		cb(&pi, arg);
	}
}

void
s2s_getstats(struct s2s_stats *st)
{
	*st = s2s_st;
}
