/*
 * Inbound s2s streams: accepting on the listeners, the stream header
 * and features, STARTTLS, SASL EXTERNAL, and the stanzas of
 * authenticated domains handed to appserver_stanza().
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

#include "monalpushd.h"
#include "s2s.h"

static uint64_t		 s2s_current_id;	/* stanza being handled */

static int
s2s_count_ip(const char *ip)
{
	struct s2s_conn	*c;
	int		 n = 0;

	TAILQ_FOREACH(c, &s2s_conns, sc_entry)
		if (c->sc_dir == S2S_IN && !(c->sc_flags & SC_DEAD) &&
		    strcmp(c->sc_ip, ip) == 0)
			n++;
	return (n);
}

void
s2s_listener_resume(int fd, short ev, void *arg)
{
	struct s2s_listener	*sl = arg;

	event_add(&sl->sl_ev, NULL);
}

void
s2s_accept_cb(int fd, short ev, void *arg)
{
	struct s2s_listener	*sl = arg;
	struct sockaddr_storage	 ss;
	socklen_t		 len;
	struct s2s_conn		*c;
	struct timeval		 tv = { S2S_ACCEPT_PAUSE, 0 };
	char			 ip[INET6_ADDRSTRLEN], addr[ADDR_MAX];
	int			 s, one = 1;

	for (;;) {
		len = sizeof(ss);
		if ((s = accept4(fd, (struct sockaddr *)&ss, &len,
		    SOCK_NONBLOCK | SOCK_CLOEXEC)) == -1) {
			if (errno == EMFILE || errno == ENFILE) {
				log_warn("%s: accept on %s", __func__,
				    sl->sl_name);
				event_del(&sl->sl_ev);
				evtimer_add(&sl->sl_pause, &tv);
			} else if (errno != EAGAIN && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warn("%s: accept on %s", __func__,
				    sl->sl_name);
			return;
		}
		/* Replies are small and latency matters: no Nagle delay. */
		(void)setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one));
		s2s_addr_str(&ss, ip, sizeof(ip), addr, sizeof(addr));
		if (s2s_nconns >= s2s_cf->c_conn_max ||
		    s2s_count_ip(ip) >= s2s_cf->c_conn_per_peer) {
			log_debug("s2s in %s: refused: connection bound", addr);
			s2s_st.ss_refused++;
			close(s);
			continue;
		}
		if ((c = s2s_conn_new(S2S_IN, s)) == NULL) {
			log_warnx("%s: out of memory", __func__);
			close(s);
			continue;
		}
		s2s_st.ss_accepted++;
		strlcpy(c->sc_ip, ip, sizeof(c->sc_ip));
		strlcpy(c->sc_addr, addr, sizeof(c->sc_addr));
		log_debug("s2s in %s: connected to %s%s", addr, sl->sl_name,
		    sl->sl_tls ? " (direct TLS)" : "");
		event_add(&c->sc_ev_r, NULL);
		if (sl->sl_tls) {
			c->sc_flags |= SC_DIRECT;
			if (s2s_srv == NULL) {
				s2s_kill(c, "no TLS configured");
				continue;
			}
			c->sc_flags |= SC_TLS_START;
			s2s_do(c);
		}
	}
}

static void
s2s_features_in(struct s2s_conn *c)
{
	struct xml_buf	 xb;
	int		 tls = (c->sc_flags & SC_TLS) != 0;
	int		 tlsreq = !tls && s2s_cf->c_starttls_required &&
			    s2s_srv != NULL;

	xml_buf_init(&xb, S2S_XMLBUF_MAX);
	xml_buf_raw(&xb, "<stream:features>");
	if (!tls && s2s_srv != NULL) {
		xml_buf_open(&xb, "starttls", 0, "xmlns", NS_TLS, (char *)NULL);
		if (tlsreq)
			xml_buf_raw(&xb, "<required/>");
		xml_buf_close(&xb, "starttls");
	}
	if (tls && !(c->sc_flags & SC_SASLED) && c->sc_remote[0] != '\0' &&
	    (c->sc_flags & SC_VERIFIED)) {
		xml_buf_open(&xb, "mechanisms", 0, "xmlns", NS_SASL,
		    (char *)NULL);
		xml_buf_raw(&xb, "<mechanism>EXTERNAL</mechanism>");
		xml_buf_close(&xb, "mechanisms");
	}
	if (!tlsreq) {
		xml_buf_open(&xb, "dialback", 0, "xmlns", NS_DB_FEAT,
		    (char *)NULL);
		xml_buf_raw(&xb, "<errors/></dialback>");
	}
	if (!c->sc_bidi)
		xml_buf_open(&xb, "bidi", 1, "xmlns", NS_BIDI_FEAT,
		    (char *)NULL);
	xml_buf_raw(&xb, "</stream:features>");
	s2s_write_xb(c, &xb);
}

void
s2s_open_in(struct s2s_conn *c, const struct xml_node *n)
{
	const char	*to, *from, *version;
	char		 dom[DOMAIN_MAX + 1];
	struct s2s_domain *sd;

	to = xml_node_attr(n, "to");
	from = xml_node_attr(n, "from");
	version = xml_node_attr(n, "version");
	c->sc_flags &= ~SC_HDR_SENT;
	if (to == NULL && (sd = TAILQ_FIRST(&s2s_domains)) != NULL)
		to = sd->sd_name;
	if (to == NULL || s2s_jid_domain(to, dom, sizeof(dom)) == -1 ||
	    (sd = s2s_ours(dom)) == NULL) {
		c->sc_local[0] = '\0';
		s2s_close(c, "host-unknown", to);
		return;
	}
	strlcpy(c->sc_local, sd->sd_name, sizeof(c->sc_local));
	if (from != NULL) {
		if (s2s_jid_domain(from, dom, sizeof(dom)) == -1 ||
		    strchr(from, '@') != NULL || strchr(from, '/') != NULL) {
			s2s_close(c, "invalid-from", "stream header");
			return;
		}
		if (c->sc_remote[0] != '\0' &&
		    strcmp(c->sc_remote, dom) != 0) {
			s2s_close(c, "invalid-from", "changed after restart");
			return;
		}
		strlcpy(c->sc_remote, dom, sizeof(c->sc_remote));
	}
	s2s_send_header(c);
	if ((c->sc_flags & SC_TLS) && c->sc_remote[0] != '\0' &&
	    !(c->sc_flags & (SC_VERIFIED | SC_SASLED)) &&
	    s2s_peer_verified(c, c->sc_remote))
		c->sc_flags |= SC_VERIFIED;
	if (version != NULL && strcmp(version, "1.0") >= 0)
		s2s_features_in(c);
}

int
s2s_authdom_add(struct s2s_conn *c, const char *remote, const char *local,
    int method)
{
	struct s2s_authdom	*ad;
	int			 first = c->sc_ndoms == 0;

	if (s2s_authed(c, remote, local))
		return (0);
	if (c->sc_ndoms >= S2S_DOMAINS_MAX ||
	    (ad = calloc(1, sizeof(*ad))) == NULL)
		return (-1);
	strlcpy(ad->ad_remote, remote, sizeof(ad->ad_remote));
	strlcpy(ad->ad_local, local, sizeof(ad->ad_local));
	ad->ad_method = method;
	TAILQ_INSERT_TAIL(&c->sc_doms, ad, ad_entry);
	c->sc_ndoms++;
	if (c->sc_auth == S2S_AUTH_NONE)
		c->sc_auth = method;
	if (c->sc_remote[0] == '\0')
		strlcpy(c->sc_remote, remote, sizeof(c->sc_remote));
	log_info("s2s in %s: %s authenticated for %s (%s, %s%s)", c->sc_addr,
	    remote, local, s2s_auth_name(method),
	    c->sc_tlsver[0] ? c->sc_tlsver : "no TLS",
	    c->sc_bidi ? ", bidi" : "");
	if (first && c->sc_npending == 0)
		s2s_timer(c, s2s_cf->c_idle_timeout);
	return (0);
}

static void
s2s_sasl_in(struct s2s_conn *c, struct xml_node *n)
{
	const char	*mech = xml_node_attr(n, "mechanism");
	char		 authz[2 * DOMAIN_MAX];
	struct xml_buf	 xb;
	const char	*cond = NULL;
	size_t		 tl;
	int		 len;

	if (mech == NULL || strcmp(mech, "EXTERNAL") != 0 ||
	    !(c->sc_flags & SC_VERIFIED) || (c->sc_flags & SC_SASLED))
		cond = "invalid-mechanism";
	else if (n->xn_textlen > 0 && strcmp(n->xn_text, "=") != 0) {
		/* an authzid, base64: it must name the stream's domain */
		tl = n->xn_textlen;
		if (tl % 4 != 0 || tl >= sizeof(authz) ||
		    (len = EVP_DecodeBlock((u_char *)authz,
		    (u_char *)n->xn_text, tl)) < 0)
			cond = "incorrect-encoding";
		else {
			len -= (n->xn_text[tl - 1] == '=') +
			    (n->xn_text[tl - 2] == '=');
			authz[len] = '\0';
			s2s_lower(authz);
			if (memchr(authz, '\0', len) != NULL)
				cond = "incorrect-encoding";
			else if (strcmp(authz, c->sc_remote) != 0)
				cond = "invalid-authzid";
		}
	}
	xml_buf_init(&xb, S2S_XMLBUF_MAX);
	if (cond != NULL) {
		xml_buf_open(&xb, "failure", 0, "xmlns", NS_SASL, (char *)NULL);
		xml_buf_open(&xb, cond, 1, (char *)NULL);
		xml_buf_close(&xb, "failure");
		log_info("s2s in %s (%s): SASL EXTERNAL refused: %s",
		    c->sc_addr, c->sc_remote, cond);
		s2s_write_xb(c, &xb);
		return;
	}
	xml_buf_open(&xb, "success", 1, "xmlns", NS_SASL, (char *)NULL);
	s2s_write_xb(c, &xb);
	c->sc_flags |= SC_SASLED;
	c->sc_flags &= ~SC_HDR_RECV;
	(void)s2s_authdom_add(c, c->sc_remote, c->sc_local, S2S_AUTH_EXTERNAL);
	xml_stream_reset(c->sc_xml);
}

/* Stanzas */

static void
s2s_stanza_in(struct s2s_conn *c, struct xml_node *n)
{
	const char		*from = xml_node_attr(n, "from");
	const char		*to = xml_node_attr(n, "to");
	char			 fdom[DOMAIN_MAX + 1], tdom[DOMAIN_MAX + 1];
	struct s2s_domain	*sd;
	struct s2s_authdom	*ad;

	if (c->sc_ndoms == 0) {
		xml_node_free(n);
		s2s_close(c, "not-authorized", "stanza before authentication");
		return;
	}
	if (from == NULL || to == NULL) {
		xml_node_free(n);
		s2s_close(c, "improper-addressing", "stanza without to/from");
		return;
	}
	if (s2s_jid_domain(to, tdom, sizeof(tdom)) == -1 ||
	    (sd = s2s_ours(tdom)) == NULL) {
		xml_node_free(n);
		s2s_close(c, "host-unknown", "stanza to a domain not ours");
		return;
	}
	if (s2s_jid_domain(from, fdom, sizeof(fdom)) == -1 ||
	    !s2s_authed(c, fdom, sd->sd_name)) {
		xml_node_free(n);
		s2s_close(c, "invalid-from", "from not authenticated");
		return;
	}
	TAILQ_FOREACH(ad, &c->sc_doms, ad_entry)
		if (strcmp(ad->ad_remote, fdom) == 0)
			break;
	if (ad == NULL) {
		xml_node_free(n);
		s2s_close(c, "invalid-from", "from not authenticated");
		return;
	}
	c->sc_nin++;
	s2s_st.ss_stanzas_in++;
	s2s_timer(c, s2s_cf->c_idle_timeout);
	log_debug("s2s in %s: %s from %s to %s", c->sc_addr, n->xn_name,
	    fdom, sd->sd_name);
	s2s_current_id = c->sc_id;
	appserver_stanza(sd->sd_name, ad->ad_remote, n);
	s2s_current_id = 0;
}

/* The stream the stanza being handled came in on; 0 outside of one. */
uint64_t
s2s_current(void)
{
	return (s2s_current_id);
}

void
s2s_xml_in(struct s2s_conn *c, struct xml_node *n)
{
	int	 tls = (c->sc_flags & SC_TLS) != 0;
	int	 tlsreq = !tls && s2s_cf->c_starttls_required;
	const char *type = xml_node_attr(n, "type");

	if (s2s_is(n, NS_TLS, "starttls")) {
		if (tls || s2s_srv == NULL) {
			s2s_write_str(c, "<failure xmlns='" NS_TLS "'/>");
			s2s_close(c, NULL, "STARTTLS not possible");
			return;
		}
		s2s_write_str(c, "<proceed xmlns='" NS_TLS "'/>");
		c->sc_flags |= SC_TLS_START;
		c->sc_flags &= ~SC_HDR_RECV;
		xml_stream_reset(c->sc_xml);
	} else if (s2s_is(n, NS_SASL, "auth"))
		s2s_sasl_in(c, n);
	else if (s2s_is(n, NS_BIDI, "bidi")) {
		c->sc_bidi = 1;
		log_debug("s2s in %s: bidi", c->sc_addr);
	} else if (strcmp(n->xn_ns, XML_NS_DIALBACK) == 0 && tlsreq)
		s2s_close(c, "policy-violation", "dialback before TLS");
	else if (s2s_is(n, XML_NS_DIALBACK, "result") && type == NULL)
		s2s_db_result_in(c, n);
	else if (s2s_is(n, XML_NS_DIALBACK, "verify") && type == NULL)
		s2s_db_verify_req(c, n);
	else if (strcmp(n->xn_ns, XML_NS_SERVER) == 0 &&
	    (strcmp(n->xn_name, "message") == 0 ||
	    strcmp(n->xn_name, "presence") == 0 ||
	    strcmp(n->xn_name, "iq") == 0)) {
		s2s_stanza_in(c, n);
		return;		/* n is given away or freed */
	} else if (strcmp(n->xn_ns, "jabber:client") == 0)
		s2s_close(c, "invalid-namespace", n->xn_name);
	else
		log_debug("s2s in %s: ignored element %s", c->sc_addr,
		    n->xn_name);
	xml_node_free(n);
}
