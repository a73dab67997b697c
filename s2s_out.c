/*
 * Outbound s2s streams, one per pair of our domain and a remote domain:
 * SRV and address lookups through dns.c (or a configured route), the
 * connect, STARTTLS or direct TLS (XEP-0368), SASL EXTERNAL with
 * dialback as the fallback, and the stanzas queued until it is ready.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/tree.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <tls.h>

#include "monalpushd.h"
#include "s2s.h"

static struct s2s_conn *
s2s_out_find(const char *local, const char *remote)
{
	struct s2s_conn	*c;

	TAILQ_FOREACH(c, &s2s_conns, sc_entry)
		if (c->sc_dir == S2S_OUT &&
		    !(c->sc_flags & (SC_DEAD | SC_CLOSING)) &&
		    strcmp(c->sc_local, local) == 0 &&
		    strcmp(c->sc_remote, remote) == 0)
			return (c);
	return (NULL);
}

static void	s2s_srv_cb(void *, struct dns_srv *, int);
static void	s2s_addr_cb(void *, struct sockaddr_storage *, int);
static void	s2s_connect_cb(int, short, void *);

struct s2s_conn *
s2s_out_get(const char *local, const char *remote)
{
	struct s2s_conn		*c;
	struct mp_route		*r;

	if ((c = s2s_out_find(local, remote)) != NULL)
		return (c);
	if (s2s_nconns >= s2s_cf->c_conn_max) {
		log_warnx("s2s out %s -> %s: connection bound reached", local,
		    remote);
		return (NULL);
	}
	if ((c = s2s_conn_new(S2S_OUT, -1)) == NULL)
		return (NULL);
	strlcpy(c->sc_local, local, sizeof(c->sc_local));
	strlcpy(c->sc_remote, remote, sizeof(c->sc_remote));
	c->sc_step = OUT_RESOLVE;
	TAILQ_FOREACH(r, &s2s_cf->c_routes, r_entry)
		if (strcasecmp(r->r_domain, remote) == 0)
			break;
	if (r != NULL) {
		strlcpy(c->sc_targets[0].dv_host, r->r_addr,
		    sizeof(c->sc_targets[0].dv_host));
		c->sc_targets[0].dv_port = r->r_port;
		c->sc_ntargets = 1;
		c->sc_target = -1;
		s2s_out_next(c);
	} else if ((c->sc_dns = dns_lookup_srv(remote, s2s_srv_cb, c)) ==
	    NULL)
		s2s_out_fail(c, "cannot resolve");
	return (c);
}

static void
s2s_srv_cb(void *arg, struct dns_srv *srv, int n)
{
	struct s2s_conn	*c = arg;
	int		 i;

	c->sc_dns = NULL;
	if (n < 0) {
		s2s_out_fail(c, "SRV says there is no XMPP service");
		return;
	}
	for (i = 0; i < n && i < S2S_TARGETS_MAX; i++)
		c->sc_targets[i] = srv[i];
	c->sc_ntargets = i;
	if (n == 0) {
		strlcpy(c->sc_targets[0].dv_host, c->sc_remote,
		    sizeof(c->sc_targets[0].dv_host));
		c->sc_targets[0].dv_port = S2S_PORT;
		c->sc_ntargets = 1;
	}
	c->sc_target = -1;
	s2s_out_next(c);
}

/* The next address of this target, or the next target. */
void
s2s_out_next(struct s2s_conn *c)
{
	struct dns_srv		*t;
	struct s2s_verify	*vf;
	socklen_t		 len;
	int			 s, one = 1;

	if (c->sc_fd != -1) {
		event_del(&c->sc_ev_r);
		event_del(&c->sc_ev_w);
		c->sc_flags &= ~SC_WEV;
		close(c->sc_fd);
		c->sc_fd = -1;
	}
	tls_free(c->sc_tls);
	c->sc_tls = NULL;
	c->sc_flags &= ~(SC_TLS | SC_HANDSHAKE | SC_TLS_START | SC_DIRECT |
	    SC_HDR_SENT | SC_HDR_RECV | SC_WANTW | SC_FEATS | SC_VERIFIED);
	c->sc_woff = c->sc_wlen = 0;
	c->sc_tlsver[0] = '\0';
	TAILQ_FOREACH(vf, &c->sc_verifies, vf_entry)
		vf->vf_sent = 0;
	if (c->sc_xml != NULL)
		xml_stream_reset(c->sc_xml);
	if (c->sc_target >= 0 && ++c->sc_addri < c->sc_naddrs) {
		t = &c->sc_targets[c->sc_target];
		s2s_addr_str(&c->sc_addrs[c->sc_addri], c->sc_ip,
		    sizeof(c->sc_ip), c->sc_addr, sizeof(c->sc_addr));
		if ((s = socket(c->sc_addrs[c->sc_addri].ss_family,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1) {
			snprintf(c->sc_err, sizeof(c->sc_err), "socket: %s",
			    strerror(errno));
			s2s_out_next(c);
			return;
		}
		(void)setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one));
		len = c->sc_addrs[c->sc_addri].ss_family == AF_INET ?
		    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
		c->sc_fd = s;
		c->sc_step = OUT_CONNECT;
		s2s_st.ss_connects++;
		event_set(&c->sc_ev_r, s, EV_READ | EV_PERSIST, s2s_io_cb, c);
		event_set(&c->sc_ev_w, s, EV_WRITE, s2s_connect_cb, c);
		if (connect(s, (struct sockaddr *)&c->sc_addrs[c->sc_addri],
		    len) == -1 && errno != EINPROGRESS) {
			snprintf(c->sc_err, sizeof(c->sc_err), "%s: %s",
			    c->sc_addr, strerror(errno));
			s2s_st.ss_connfail++;
			s2s_out_next(c);
			return;
		}
		event_add(&c->sc_ev_w, NULL);
		if (t->dv_tls)
			c->sc_flags |= SC_DIRECT;
		return;
	}
	if (++c->sc_target >= c->sc_ntargets) {
		s2s_out_fail(c, c->sc_err[0] ? c->sc_err : "no address");
		return;
	}
	t = &c->sc_targets[c->sc_target];
	c->sc_step = OUT_ADDRS;
	c->sc_naddrs = 0;
	c->sc_addri = -1;
	if ((c->sc_dns = dns_lookup_addr(t->dv_host, t->dv_port, s2s_addr_cb,
	    c)) == NULL)
		s2s_out_fail(c, "cannot resolve");
}

static void
s2s_addr_cb(void *arg, struct sockaddr_storage *ss, int n)
{
	struct s2s_conn	*c = arg;
	int		 i;

	c->sc_dns = NULL;
	for (i = 0; i < n && i < S2S_ADDRS_MAX; i++)
		c->sc_addrs[i] = ss[i];
	c->sc_naddrs = i;
	c->sc_addri = -1;
	if (n == 0)
		snprintf(c->sc_err, sizeof(c->sc_err), "%s: no address",
		    c->sc_targets[c->sc_target].dv_host);
	s2s_out_next(c);
}

static void
s2s_connect_cb(int fd, short ev, void *arg)
{
	struct s2s_conn	*c = arg;
	socklen_t	 len = sizeof(int);
	int		 err = 0;

	c->sc_flags &= ~SC_WEV;
	if (c->sc_flags & SC_DEAD)
		return;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err != 0) {
		snprintf(c->sc_err, sizeof(c->sc_err), "%s: %s", c->sc_addr,
		    strerror(err));
		s2s_st.ss_connfail++;
		s2s_out_next(c);
		return;
	}
	log_debug("s2s out %s -> %s: connected to %s%s", c->sc_local,
	    c->sc_remote, c->sc_addr,
	    (c->sc_flags & SC_DIRECT) ? " (direct TLS)" : "");
	event_set(&c->sc_ev_w, fd, EV_WRITE, s2s_io_cb, c);
	event_add(&c->sc_ev_r, NULL);
	if (c->sc_flags & SC_DIRECT) {
		c->sc_step = OUT_TLS;
		c->sc_flags |= SC_TLS_START;
	} else {
		c->sc_step = OUT_STREAM;
		s2s_send_header(c);
	}
	s2s_do(c);
}

/* No stream: drop what waits for it and tell who waits for dialback. */
void
s2s_out_fail(struct s2s_conn *c, const char *why)
{
	log_warnx("s2s out %s -> %s: failed: %s", c->sc_local, c->sc_remote,
	    why);
	s2s_kill(c, NULL);
}

static void
s2s_out_flush_queue(struct s2s_conn *c)
{
	struct s2s_qent	*qe;

	while ((qe = TAILQ_FIRST(&c->sc_queue)) != NULL) {
		TAILQ_REMOVE(&c->sc_queue, qe, qe_entry);
		c->sc_nqueue--;
		c->sc_nout++;
		s2s_st.ss_stanzas_out++;
		(void)s2s_write(c, qe->qe_buf, qe->qe_len);
		free(qe);
	}
}

void
s2s_out_ready(struct s2s_conn *c)
{
	c->sc_step = OUT_READY;
	log_info("s2s out %s -> %s: %s authenticated (%s, %s)", c->sc_local,
	    c->sc_remote, c->sc_addr, s2s_auth_name(c->sc_auth),
	    c->sc_tlsver[0] ? c->sc_tlsver : "no TLS");
	s2s_timer(c, s2s_cf->c_idle_timeout);
	s2s_out_flush_queue(c);
}

static void
s2s_features_out(struct s2s_conn *c, struct xml_node *n)
{
	struct xml_node		*mechs, *m;
	struct s2s_domain	*sd;
	struct xml_buf		 xb;
	char			 b64[(DOMAIN_MAX + 2) / 3 * 4 + 1];
	int			 ext = 0;

	if (!(c->sc_flags & SC_TLS)) {
		if (xml_node_child(n, NS_TLS, "starttls") == NULL) {
			s2s_close(c, NULL, "peer offers no STARTTLS");
			return;
		}
		xml_buf_init(&xb, S2S_XMLBUF_MAX);
		xml_buf_open(&xb, "starttls", 1, "xmlns", NS_TLS, (char *)NULL);
		s2s_write_xb(c, &xb);
		c->sc_step = OUT_STARTTLS;
		return;
	}
	if (c->sc_auth != S2S_AUTH_NONE) {
		s2s_out_ready(c);
		return;
	}
	c->sc_step = OUT_STREAM;
	c->sc_flags |= SC_FEATS;
	s2s_out_verifies(c);
	sd = s2s_ours(c->sc_local);
	if ((mechs = xml_node_child(n, NS_SASL, "mechanisms")) != NULL)
		TAILQ_FOREACH(m, &mechs->xn_children, xn_entry)
			if (strcmp(m->xn_name, "mechanism") == 0 &&
			    strcmp(m->xn_text, "EXTERNAL") == 0)
				ext = 1;
	if (ext && sd != NULL && sd->sd_fits &&
	    !(c->sc_flags & SC_EXT_FAILED)) {
		EVP_EncodeBlock((u_char *)b64, (u_char *)c->sc_local,
		    strlen(c->sc_local));
		xml_buf_init(&xb, S2S_XMLBUF_MAX);
		xml_buf_open(&xb, "auth", 0, "xmlns", NS_SASL,
		    "mechanism", "EXTERNAL", (char *)NULL);
		xml_buf_text(&xb, b64);
		xml_buf_close(&xb, "auth");
		s2s_write_xb(c, &xb);
		c->sc_step = OUT_AUTH_EXT;
		return;
	}
	s2s_out_dialback(c);
}

void
s2s_xml_out(struct s2s_conn *c, struct xml_node *n)
{
	const char	*type = xml_node_attr(n, "type");
	struct xml_node	*e;

	if (s2s_is(n, XML_NS_STREAM, "features"))
		s2s_features_out(c, n);
	else if (s2s_is(n, NS_TLS, "proceed") && c->sc_step == OUT_STARTTLS) {
		c->sc_flags |= SC_TLS_START;
		c->sc_step = OUT_TLS;
		xml_stream_reset(c->sc_xml);
	} else if (s2s_is(n, NS_TLS, "failure"))
		s2s_close(c, NULL, "STARTTLS refused");
	else if (s2s_is(n, NS_SASL, "success") && c->sc_step == OUT_AUTH_EXT) {
		c->sc_auth = S2S_AUTH_EXTERNAL;
		c->sc_step = OUT_STREAM;
		c->sc_flags &= ~SC_FEATS;
		xml_stream_reset(c->sc_xml);
		s2s_send_header(c);
	} else if (s2s_is(n, NS_SASL, "failure") &&
	    c->sc_step == OUT_AUTH_EXT) {
		log_info("s2s out %s -> %s: SASL EXTERNAL refused, trying "
		    "dialback", c->sc_local, c->sc_remote);
		c->sc_flags |= SC_EXT_FAILED;
		s2s_out_dialback(c);
	} else if (s2s_is(n, XML_NS_DIALBACK, "result") && type != NULL)
		s2s_db_result_res(c, n, type);
	else if (s2s_is(n, XML_NS_DIALBACK, "verify") && type != NULL)
		s2s_db_verify_res(c, n, type);
	else if (s2s_is(n, XML_NS_DIALBACK, "verify"))
		s2s_db_verify_req(c, n);
	else if (s2s_is(n, XML_NS_STREAM, "error")) {
		e = TAILQ_FIRST(&n->xn_children);
		log_info("s2s out %s -> %s: stream error %s", c->sc_local,
		    c->sc_remote, e != NULL ? e->xn_name : "?");
		s2s_kill(c, NULL);
	} else
		log_debug("s2s out %s -> %s: ignored element %s", c->sc_local,
		    c->sc_remote, n->xn_name);
	xml_node_free(n);
}
