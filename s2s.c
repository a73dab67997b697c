/*
 * The s2s streams of xmppe.  Inbound streams come from the listeners the
 * parent bound; outbound streams are made on demand per pair of our
 * domain and a remote domain, for replies and for dialback checks.
 * Everything is non-blocking on the process's event base.
 *
 * A connection is never freed from inside one of its own callbacks: it
 * is marked dead and reaped from a zero timeout, so that the XML parser
 * and libtls are never freed under their own feet.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/tree.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <tls.h>

#include "monalpushd.h"

#define NS_TLS		"urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL		"urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_STREAMS	"urn:ietf:params:xml:ns:xmpp-streams"
#define NS_STANZAS	"urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_BIDI		"urn:xmpp:bidi"
#define NS_BIDI_FEAT	"urn:xmpp:features:bidi"
#define NS_DB_FEAT	"urn:xmpp:features:dialback"

#define S2S_SECRET_LEN	32
#define S2S_DBKEY_MAX	1024	/* a dialback key a peer may send */
#define S2S_SID_MAX	128	/* a stream id a peer may send */
#define S2S_XMLBUF_MAX	4096	/* our own stream-level elements */
#define S2S_READS	8	/* reads per event, then let others run */
#define S2S_ERR_MAX	(ADDR_MAX + 512)
#define S2S_ACCEPT_PAUSE 1	/* seconds a listener rests after EMFILE */

enum s2s_step {			/* outbound */
	OUT_RESOLVE,
	OUT_ADDRS,		/* looking up a target's addresses */
	OUT_CONNECT,
	OUT_TLS,		/* handshake (direct or after STARTTLS) */
	OUT_STREAM,		/* header sent, waiting for features */
	OUT_STARTTLS,		/* waiting for proceed */
	OUT_AUTH_EXT,		/* SASL EXTERNAL sent */
	OUT_AUTH_DB,		/* db:result sent */
	OUT_READY
};

struct s2s_domain {
	TAILQ_ENTRY(s2s_domain)	 sd_entry;
	char			 sd_name[DOMAIN_MAX + 1];
	struct tls_config	*sd_cli;	/* STARTTLS */
	struct tls_config	*sd_cli_alpn;	/* direct TLS */
	int			 sd_fits;	/* cert names the domain */
};
TAILQ_HEAD(s2s_domains, s2s_domain);

/* A TLS server context lives as long as a connection made from it. */
struct s2s_server {
	struct tls		*sv_tls;
	struct tls_config	*sv_cfg;
	int			 sv_refs;
	int			 sv_current;
};

struct s2s_listener {
	TAILQ_ENTRY(s2s_listener) sl_entry;
	int			 sl_fd;
	int			 sl_tls;
	char			 sl_name[ADDR_MAX + 16];
	struct event		 sl_ev;
	struct event		 sl_pause;
};

struct s2s_authdom {
	TAILQ_ENTRY(s2s_authdom) ad_entry;
	char			 ad_remote[DOMAIN_MAX + 1];
	char			 ad_local[DOMAIN_MAX + 1];
	int			 ad_method;
};

/* A dialback check on an outbound stream for an inbound db:result. */
struct s2s_verify {
	TAILQ_ENTRY(s2s_verify)	 vf_entry;
	uint64_t		 vf_in;		/* inbound connection */
	char			 vf_orig[DOMAIN_MAX + 1];
	char			 vf_recv[DOMAIN_MAX + 1];
	char			 vf_sid[S2S_SID_MAX + 1];
	char			*vf_key;
	int			 vf_sent;
};

struct s2s_qent {
	TAILQ_ENTRY(s2s_qent)	 qe_entry;
	size_t			 qe_len;
	char			 qe_buf[];
};

struct s2s_conn {
	RB_ENTRY(s2s_conn)	 sc_node;
	TAILQ_ENTRY(s2s_conn)	 sc_entry;
	uint64_t		 sc_id;
	int			 sc_dir;
	int			 sc_fd;
	int			 sc_flags;
#define SC_DEAD		0x0001
#define SC_CLOSING	0x0002
#define SC_HDR_SENT	0x0004	/* our header of this document */
#define SC_HDR_RECV	0x0008
#define SC_TLS		0x0010	/* TLS is up */
#define SC_HANDSHAKE	0x0020
#define SC_TLS_START	0x0040	/* start TLS once the output is out */
#define SC_WANTW	0x0080
#define SC_EXT_FAILED	0x0100
#define SC_VERIFIED	0x0200	/* peer certificate valid for sc_remote */
#define SC_WEV		0x0400	/* write event added */
#define SC_DIRECT	0x0800	/* XEP-0368 */
#define SC_SASLED	0x1000	/* SASL done: no more mechanisms */
#define SC_FEATS	0x2000	/* outbound: features after TLS came */
	struct tls		*sc_tls;
	struct s2s_server	*sc_srv;
	struct event		 sc_ev_r;
	struct event		 sc_ev_w;
	struct event		 sc_ev_t;
	struct event		 sc_ev_reap;
	struct xml_stream	*sc_xml;
	char			*sc_wbuf;
	size_t			 sc_woff;
	size_t			 sc_wlen;
	size_t			 sc_wsize;
	char			 sc_local[DOMAIN_MAX + 1];
	char			 sc_remote[DOMAIN_MAX + 1];
	char			 sc_sid[S2S_SID_MAX + 1];
	char			 sc_addr[ADDR_MAX];
	char			 sc_ip[INET6_ADDRSTRLEN];
	char			 sc_tlsver[16];
	int			 sc_auth;
	int			 sc_bidi;
	TAILQ_HEAD(, s2s_authdom) sc_doms;
	int			 sc_ndoms;
	int			 sc_npending;	/* inbound db:results out */
	time_t			 sc_started;
	uint64_t		 sc_nin;
	uint64_t		 sc_nout;

	/* outbound */
	int			 sc_step;
	struct dns_req		*sc_dns;
	struct dns_srv		 sc_targets[S2S_TARGETS_MAX];
	int			 sc_ntargets;
	int			 sc_target;
	struct sockaddr_storage	 sc_addrs[S2S_ADDRS_MAX];
	int			 sc_naddrs;
	int			 sc_addri;
	char			 sc_err[S2S_ERR_MAX];
	TAILQ_HEAD(, s2s_qent)	 sc_queue;
	int			 sc_nqueue;
	TAILQ_HEAD(, s2s_verify) sc_verifies;
	int			 sc_nverify;
};

static int	 s2s_conn_cmp(struct s2s_conn *, struct s2s_conn *);
RB_HEAD(s2s_tree, s2s_conn);
RB_PROTOTYPE(s2s_tree, s2s_conn, sc_node, s2s_conn_cmp)
RB_GENERATE(s2s_tree, s2s_conn, sc_node, s2s_conn_cmp)

static struct s2s_tree			 s2s_byid = RB_INITIALIZER(&s2s_byid);
static TAILQ_HEAD(, s2s_conn)		 s2s_conns =
					    TAILQ_HEAD_INITIALIZER(s2s_conns);
static TAILQ_HEAD(, s2s_listener)	 s2s_listeners =
					    TAILQ_HEAD_INITIALIZER(s2s_listeners);
static struct s2s_domains		 s2s_domains =
					    TAILQ_HEAD_INITIALIZER(s2s_domains);
static struct mp_conf			*s2s_cf;
static struct s2s_server		*s2s_srv;
static X509_STORE			*s2s_store;
static uint64_t				 s2s_nextid = 1;
static uint64_t		 s2s_current_id;	/* stanza being handled */
static int				 s2s_nconns;
static struct s2s_stats			 s2s_st;
static uint8_t				 s2s_secret[S2S_SECRET_LEN];
static struct event_base		*s2s_base;

static void	 s2s_accept_cb(int, short, void *);
static void	 s2s_io_cb(int, short, void *);
static void	 s2s_connect_cb(int, short, void *);
static void	 s2s_timer_cb(int, short, void *);
static void	 s2s_reap_cb(int, short, void *);
static void	 s2s_do(struct s2s_conn *);
static void	 s2s_kill(struct s2s_conn *, const char *);
static void	 s2s_close(struct s2s_conn *, const char *, const char *);
static int	 s2s_write(struct s2s_conn *, const char *, size_t);
static void	 s2s_out_next(struct s2s_conn *);
static void	 s2s_out_fail(struct s2s_conn *, const char *);
static void	 s2s_out_ready(struct s2s_conn *);
static void	 s2s_send_header(struct s2s_conn *);
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

static const char *
s2s_dirname(const struct s2s_conn *c)
{
	return (c->sc_dir == S2S_IN ? "in" : "out");
}

/* Helpers: domains, JIDs, keys, certificates */

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

static void
s2s_lower(char *s)
{
	for (; *s != '\0'; s++)
		*s = tolower((u_char)*s);
}

/* The domain part of a JID, lowercased, without a trailing dot. */
static int
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

static struct s2s_domain *
s2s_ours(const char *name)
{
	struct s2s_domain	*sd;

	TAILQ_FOREACH(sd, &s2s_domains, sd_entry)
		if (strcasecmp(sd->sd_name, name) == 0)
			return (sd);
	return (NULL);
}

int
s2s_dialback_key(const uint8_t *secret, size_t secretlen, const char *recv,
    const char *orig, const char *sid, char *out, size_t outlen)
{
	uint8_t		 h[SHA256_DIGEST_LENGTH], mac[EVP_MAX_MD_SIZE];
	char		 hex[SHA256_DIGEST_LENGTH * 2 + 1], *msg;
	unsigned int	 maclen = 0;
	size_t		 i;
	int		 len;

	if (outlen < S2S_KEY_HEX + 1)
		return (-1);
	SHA256(secret, secretlen, h);
	for (i = 0; i < sizeof(h); i++)
		snprintf(hex + i * 2, 3, "%02x", h[i]);
	if ((len = asprintf(&msg, "%s %s %s", recv, orig, sid)) == -1)
		return (-1);
	if (HMAC(EVP_sha256(), hex, sizeof(hex) - 1, (u_char *)msg, len,
	    mac, &maclen) == NULL || maclen != SHA256_DIGEST_LENGTH) {
		free(msg);
		return (-1);
	}
	free(msg);
	for (i = 0; i < maclen; i++)
		snprintf(out + i * 2, 3, "%02x", mac[i]);
	explicit_bzero(hex, sizeof(hex));
	explicit_bzero(h, sizeof(h));
	return (0);
}

static X509_STORE *
s2s_store_new(const uint8_t *ca, size_t calen)
{
	X509_STORE		*st;
	STACK_OF(X509_INFO)	*infos;
	X509_INFO		*xi;
	BIO			*bio;
	int			 i, n = 0;

	if (ca == NULL || calen == 0)
		return (NULL);
	if ((bio = BIO_new_mem_buf(ca, calen)) == NULL)
		return (NULL);
	infos = PEM_X509_INFO_read_bio(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (infos == NULL)
		return (NULL);
	if ((st = X509_STORE_new()) == NULL) {
		sk_X509_INFO_pop_free(infos, X509_INFO_free);
		return (NULL);
	}
	for (i = 0; i < sk_X509_INFO_num(infos); i++) {
		xi = sk_X509_INFO_value(infos, i);
		if (xi->x509 != NULL && X509_STORE_add_cert(st, xi->x509) == 1)
			n++;
	}
	sk_X509_INFO_pop_free(infos, X509_INFO_free);
	if (n == 0) {
		X509_STORE_free(st);
		return (NULL);
	}
	return (st);
}

/*
 * XEP-0178: the chain verifies against the peers' CA bundle and the
 * leaf names the domain (RFC 6125: DNS-IDs, the CN only without them,
 * a wildcard only as the whole leftmost label).  Any purpose: Let's
 * Encrypt certificates carry only serverAuth, and an OpenSSL client
 * check would refuse them.
 */
static int
s2s_chain_check(X509_STORE *st, const uint8_t *pem, size_t len,
    const char *name, char *err, size_t errlen)
{
	STACK_OF(X509)	*chain = NULL;
	X509_STORE_CTX	*ctx = NULL;
	X509		*leaf = NULL, *x;
	BIO		*bio;
	uint32_t	 xku;
	int		 ok = 0;

	snprintf(err, errlen, "no certificate");
	if (st == NULL || pem == NULL || len == 0)
		return (0);
	if ((bio = BIO_new_mem_buf(pem, len)) == NULL ||
	    (chain = sk_X509_new_null()) == NULL)
		goto done;
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (leaf == NULL)
			leaf = x;
		else if (sk_X509_push(chain, x) == 0) {
			X509_free(x);
			goto done;
		}
	}
	ERR_clear_error();
	if (leaf == NULL)
		goto done;
	if ((ctx = X509_STORE_CTX_new()) == NULL ||
	    X509_STORE_CTX_init(ctx, st, leaf, chain) != 1)
		goto done;
	X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_ANY);
	if (X509_verify_cert(ctx) != 1) {
		snprintf(err, errlen, "%s", X509_verify_cert_error_string(
		    X509_STORE_CTX_get_error(ctx)));
		goto done;
	}
	xku = X509_get_extended_key_usage(leaf);
	if ((xku & (XKU_SSL_SERVER | XKU_SSL_CLIENT)) == 0) {
		snprintf(err, errlen, "neither serverAuth nor clientAuth");
		goto done;
	}
	if (X509_check_host(leaf, name, strlen(name),
	    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) != 1) {
		snprintf(err, errlen, "certificate does not name %s", name);
		goto done;
	}
	ok = 1;
 done:
	ERR_clear_error();
	X509_STORE_CTX_free(ctx);
	X509_free(leaf);
	sk_X509_pop_free(chain, X509_free);
	BIO_free(bio);
	return (ok);
}

int
s2s_cert_check(const uint8_t *pem, size_t len, const char *ca, size_t calen,
    const char *name, char *err, size_t errlen)
{
	X509_STORE	*st;
	int		 ok;

	if ((st = s2s_store_new((const uint8_t *)ca, calen)) == NULL) {
		snprintf(err, errlen, "no CA");
		return (0);
	}
	ok = s2s_chain_check(st, pem, len, name, err, errlen);
	X509_STORE_free(st);
	return (ok);
}

/* Our own certificate for a domain: does it name the domain? */
static int
s2s_cert_fits(const uint8_t *pem, size_t len, const char *name)
{
	X509	*x;
	BIO	*bio;
	int	 ok = 0;

	if ((bio = BIO_new_mem_buf(pem, len)) == NULL)
		return (0);
	if ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		ok = X509_check_host(x, name, strlen(name),
		    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1;
		X509_free(x);
	}
	BIO_free(bio);
	ERR_clear_error();
	return (ok);
}

static int
s2s_peer_verified(struct s2s_conn *c, const char *name)
{
	const uint8_t	*pem;
	size_t		 len;
	char		 err[S2S_ERR_MAX];

	if (c->sc_tls == NULL || s2s_store == NULL)
		return (0);
	if ((pem = tls_peer_cert_chain_pem(c->sc_tls, &len)) == NULL)
		return (0);
	if (s2s_chain_check(s2s_store, pem, len, name, err, sizeof(err)))
		return (1);
	log_info("s2s %s %s: certificate not valid for %s: %s",
	    s2s_dirname(c), c->sc_addr, name, err);
	return (0);
}

/* Connections */

static int
s2s_authed(struct s2s_conn *c, const char *remote, const char *local)
{
	struct s2s_authdom	*ad;

	TAILQ_FOREACH(ad, &c->sc_doms, ad_entry)
		if (strcasecmp(ad->ad_remote, remote) == 0 &&
		    (local == NULL || strcasecmp(ad->ad_local, local) == 0))
			return (1);
	return (0);
}

static void
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

static struct s2s_conn *
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
static void
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
s2s_verify_free(struct s2s_verify *vf)
{
	if (vf->vf_key != NULL)
		freezero(vf->vf_key, strlen(vf->vf_key));
	free(vf);
}

static void	s2s_db_answer(uint64_t, const char *, const char *,
		    const char *);

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
static void
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

static int
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

static void
s2s_write_xb(struct s2s_conn *c, struct xml_buf *xb)
{
	if (xb->xb_error)
		s2s_kill(c, "cannot build an element");
	else
		(void)s2s_write(c, xb->xb_buf, xb->xb_len);
	xml_buf_free(xb);
}

static void
s2s_write_str(struct s2s_conn *c, const char *s)
{
	(void)s2s_write(c, s, strlen(s));
}

/*
 * Stream error, then the end of the stream; the output is flushed and
 * the connection closed.  cond NULL: just end the stream.
 */
static void
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

static void
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

/* Inbound */

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

static void
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
s2s_listener_resume(int fd, short ev, void *arg)
{
	struct s2s_listener	*sl = arg;

	event_add(&sl->sl_ev, NULL);
}

static void
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

static void
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

static int
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

/* Outbound streams, found or made */

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

static struct s2s_conn *
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
static void
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
static void
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

static void
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
s2s_out_verifies(struct s2s_conn *c)
{
	struct s2s_verify	*vf;
	struct xml_buf		 xb;

	if (!(c->sc_flags & SC_FEATS))
		return;
	TAILQ_FOREACH(vf, &c->sc_verifies, vf_entry) {
		if (vf->vf_sent)
			continue;
		vf->vf_sent = 1;
		xml_buf_init(&xb, S2S_XMLBUF_MAX + S2S_DBKEY_MAX);
		xml_buf_open(&xb, "db:verify", 0, "from", vf->vf_recv,
		    "to", vf->vf_orig, "id", vf->vf_sid, (char *)NULL);
		xml_buf_text(&xb, vf->vf_key);
		xml_buf_close(&xb, "db:verify");
		s2s_write_xb(c, &xb);
	}
}

static void	s2s_out_dialback(struct s2s_conn *);

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

static void
s2s_out_dialback(struct s2s_conn *c)
{
	struct xml_buf		 xb;
	char			 key[S2S_KEY_HEX + 1];

	if (c->sc_sid[0] == '\0') {
		s2s_close(c, NULL, "no stream id for dialback");
		return;
	}
	if (s2s_dialback_key(s2s_secret, sizeof(s2s_secret), c->sc_remote,
	    c->sc_local, c->sc_sid, key, sizeof(key)) == -1) {
		s2s_close(c, NULL, "cannot make a dialback key");
		return;
	}
	xml_buf_init(&xb, S2S_XMLBUF_MAX);
	xml_buf_open(&xb, "db:result", 0, "from", c->sc_local,
	    "to", c->sc_remote, (char *)NULL);
	xml_buf_text(&xb, key);
	xml_buf_close(&xb, "db:result");
	explicit_bzero(key, sizeof(key));
	s2s_write_xb(c, &xb);
	c->sc_step = OUT_AUTH_DB;
}

/* Dialback */

/* Answer an inbound db:result: valid, invalid or an error. */
static void
s2s_db_answer(uint64_t id, const char *orig, const char *recv,
    const char *type)
{
	struct s2s_conn	 key, *c;
	struct xml_buf	 xb;

	key.sc_id = id;
	if ((c = RB_FIND(s2s_tree, &s2s_byid, &key)) == NULL ||
	    (c->sc_flags & (SC_DEAD | SC_CLOSING)))
		return;
	if (c->sc_npending > 0)
		c->sc_npending--;
	xml_buf_init(&xb, S2S_XMLBUF_MAX);
	if (strcmp(type, "valid") == 0 &&
	    s2s_authdom_add(c, orig, recv, S2S_AUTH_DIALBACK) == -1)
		type = "invalid";
	if (strcmp(type, "error") == 0) {
		xml_buf_open(&xb, "db:result", 0, "from", recv, "to", orig,
		    "type", "error", (char *)NULL);
		xml_buf_raw(&xb, "<error type='cancel'>");
		xml_buf_open(&xb, "remote-server-not-found", 1, "xmlns",
		    NS_STANZAS, (char *)NULL);
		xml_buf_raw(&xb, "</error></db:result>");
		log_info("s2s in %s: dialback for %s: authoritative server "
		    "not reached", c->sc_addr, orig);
	} else {
		xml_buf_open(&xb, "db:result", 1, "from", recv, "to", orig,
		    "type", type, (char *)NULL);
		if (strcmp(type, "valid") != 0)
			log_info("s2s in %s: dialback for %s: %s", c->sc_addr,
			    orig, type);
	}
	s2s_write_xb(c, &xb);
	if (c->sc_ndoms > 0 && c->sc_npending == 0)
		s2s_timer(c, s2s_cf->c_idle_timeout);
}

static void
s2s_db_error(struct s2s_conn *c, const char *elem, const char *from,
    const char *to, const char *id, const char *etype, const char *cond)
{
	struct xml_buf	 xb;

	xml_buf_init(&xb, S2S_XMLBUF_MAX);
	xml_buf_open(&xb, elem, 0, "from", from, "to", to, "id", id,
	    "type", "error", (char *)NULL);
	xml_buf_open(&xb, "error", 0, "type", etype, (char *)NULL);
	xml_buf_open(&xb, cond, 1, "xmlns", NS_STANZAS, (char *)NULL);
	xml_buf_close(&xb, "error");
	xml_buf_close(&xb, elem);
	s2s_write_xb(c, &xb);
}

/* Receiving role: check an originating domain's key with its server. */
static void
s2s_db_result_in(struct s2s_conn *c, struct xml_node *n)
{
	const char		*from = xml_node_attr(n, "from");
	const char		*to = xml_node_attr(n, "to");
	char			 orig[DOMAIN_MAX + 1], recv[DOMAIN_MAX + 1];
	struct s2s_domain	*sd;
	struct s2s_conn		*out;
	struct s2s_verify	*vf;

	if (from == NULL || to == NULL ||
	    s2s_jid_domain(from, orig, sizeof(orig)) == -1 ||
	    strchr(from, '@') != NULL || strchr(from, '/') != NULL ||
	    s2s_jid_domain(to, recv, sizeof(recv)) == -1) {
		s2s_db_error(c, "db:result", to, from, NULL, "modify",
		    "bad-request");
		return;
	}
	if ((sd = s2s_ours(recv)) == NULL) {
		s2s_db_error(c, "db:result", to, from, NULL, "cancel",
		    "item-not-found");
		return;
	}
	if (s2s_authed(c, orig, sd->sd_name)) {
		s2s_db_answer(c->sc_id, orig, sd->sd_name, "valid");
		return;
	}
	if (n->xn_textlen == 0 || n->xn_textlen > S2S_DBKEY_MAX ||
	    c->sc_sid[0] == '\0') {
		s2s_db_error(c, "db:result", sd->sd_name, orig, NULL,
		    "modify", "bad-request");
		return;
	}
	if (c->sc_npending >= S2S_VERIFY_MAX ||
	    c->sc_ndoms >= S2S_DOMAINS_MAX) {
		s2s_db_error(c, "db:result", sd->sd_name, orig, NULL, "wait",
		    "resource-constraint");
		return;
	}
	if ((out = s2s_out_get(sd->sd_name, orig)) == NULL ||
	    (out->sc_flags & SC_DEAD) || out->sc_nverify >= S2S_VERIFY_MAX ||
	    (vf = calloc(1, sizeof(*vf))) == NULL) {
		s2s_db_error(c, "db:result", sd->sd_name, orig, NULL,
		    "cancel", "remote-server-not-found");
		return;
	}
	if ((vf->vf_key = strdup(n->xn_text)) == NULL) {
		free(vf);
		s2s_db_error(c, "db:result", sd->sd_name, orig, NULL, "wait",
		    "resource-constraint");
		return;
	}
	vf->vf_in = c->sc_id;
	strlcpy(vf->vf_orig, orig, sizeof(vf->vf_orig));
	strlcpy(vf->vf_recv, sd->sd_name, sizeof(vf->vf_recv));
	strlcpy(vf->vf_sid, c->sc_sid, sizeof(vf->vf_sid));
	TAILQ_INSERT_TAIL(&out->sc_verifies, vf, vf_entry);
	out->sc_nverify++;
	c->sc_npending++;
	log_debug("s2s in %s: dialback for %s: asking its server",
	    c->sc_addr, orig);
	s2s_out_verifies(out);
}

/* Authoritative role: was this key ours? */
static void
s2s_db_verify_req(struct s2s_conn *c, struct xml_node *n)
{
	const char		*from = xml_node_attr(n, "from");
	const char		*to = xml_node_attr(n, "to");
	const char		*id = xml_node_attr(n, "id");
	char			 recv[DOMAIN_MAX + 1], orig[DOMAIN_MAX + 1];
	char			 key[S2S_KEY_HEX + 1];
	struct s2s_domain	*sd;
	struct xml_buf		 xb;
	int			 valid;

	if (from == NULL || to == NULL || id == NULL ||
	    strlen(id) > S2S_SID_MAX ||
	    s2s_jid_domain(from, recv, sizeof(recv)) == -1 ||
	    s2s_jid_domain(to, orig, sizeof(orig)) == -1) {
		s2s_db_error(c, "db:verify", to, from, id, "modify",
		    "bad-request");
		return;
	}
	if ((sd = s2s_ours(orig)) == NULL) {
		s2s_db_error(c, "db:verify", to, from, id, "cancel",
		    "item-not-found");
		return;
	}
	if (s2s_dialback_key(s2s_secret, sizeof(s2s_secret), recv,
	    sd->sd_name, id, key, sizeof(key)) == -1) {
		s2s_db_error(c, "db:verify", to, from, id, "wait",
		    "internal-server-error");
		return;
	}
	valid = n->xn_textlen == S2S_KEY_HEX &&
	    CRYPTO_memcmp(key, n->xn_text, S2S_KEY_HEX) == 0;
	explicit_bzero(key, sizeof(key));
	log_info("s2s %s %s: dialback verify from %s for %s: %s",
	    s2s_dirname(c), c->sc_addr, recv, sd->sd_name,
	    valid ? "valid" : "invalid");
	xml_buf_init(&xb, S2S_XMLBUF_MAX);
	xml_buf_open(&xb, "db:verify", 1, "from", sd->sd_name, "to", recv,
	    "id", id, "type", valid ? "valid" : "invalid", (char *)NULL);
	s2s_write_xb(c, &xb);
}

/* The answer to one of our db:verify requests. */
static void
s2s_db_verify_res(struct s2s_conn *c, struct xml_node *n, const char *type)
{
	const char		*from = xml_node_attr(n, "from");
	const char		*to = xml_node_attr(n, "to");
	const char		*id = xml_node_attr(n, "id");
	struct s2s_verify	*vf;

	if (from == NULL || to == NULL || id == NULL)
		return;
	TAILQ_FOREACH(vf, &c->sc_verifies, vf_entry)
		if (vf->vf_sent && strcasecmp(vf->vf_orig, from) == 0 &&
		    strcasecmp(vf->vf_recv, to) == 0 &&
		    strcmp(vf->vf_sid, id) == 0)
			break;
	if (vf == NULL) {
		log_debug("s2s out %s -> %s: unexpected db:verify answer",
		    c->sc_local, c->sc_remote);
		return;
	}
	TAILQ_REMOVE(&c->sc_verifies, vf, vf_entry);
	c->sc_nverify--;
	if (strcmp(type, "valid") != 0 && strcmp(type, "invalid") != 0)
		type = "error";
	s2s_db_answer(vf->vf_in, vf->vf_orig, vf->vf_recv, type);
	s2s_verify_free(vf);
}

/* The answer to our own db:result on an outbound stream. */
static void
s2s_db_result_res(struct s2s_conn *c, struct xml_node *n, const char *type)
{
	if (c->sc_step != OUT_AUTH_DB)
		return;
	if (strcmp(type, "valid") == 0) {
		c->sc_auth = S2S_AUTH_DIALBACK;
		s2s_out_ready(c);
	} else
		s2s_close(c, NULL, strcmp(type, "invalid") == 0 ?
		    "dialback refused" : "dialback error");
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

static int
s2s_is(const struct xml_node *n, const char *ns, const char *name)
{
	return (strcmp(n->xn_ns, ns) == 0 && strcmp(n->xn_name, name) == 0);
}

static void
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

static void
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

/* I/O */

static void
s2s_tls_done(struct s2s_conn *c)
{
	const char	*v;

	c->sc_flags &= ~SC_HANDSHAKE;
	c->sc_flags |= SC_TLS;
	if ((v = tls_conn_version(c->sc_tls)) != NULL)
		strlcpy(c->sc_tlsver, v, sizeof(c->sc_tlsver));
	if (c->sc_dir == S2S_IN) {
		log_debug("s2s in %s: %s%s%s", c->sc_addr, c->sc_tlsver,
		    tls_conn_servername(c->sc_tls) ? ", SNI " : "",
		    tls_conn_servername(c->sc_tls) ?
		    tls_conn_servername(c->sc_tls) : "");
		return;
	}
	if (s2s_peer_verified(c, c->sc_remote))
		c->sc_flags |= SC_VERIFIED;
	log_debug("s2s out %s -> %s: %s, certificate %s", c->sc_local,
	    c->sc_remote, c->sc_tlsver,
	    (c->sc_flags & SC_VERIFIED) ? "verified" : "not verified");
	c->sc_step = OUT_STREAM;
	s2s_send_header(c);
}

static int
s2s_tls_start(struct s2s_conn *c)
{
	struct s2s_domain	*sd;
	struct tls		*ctx;

	c->sc_flags &= ~SC_TLS_START;
	if (c->sc_dir == S2S_IN) {
		if (s2s_srv == NULL ||
		    tls_accept_socket(s2s_srv->sv_tls, &c->sc_tls,
		    c->sc_fd) == -1) {
			s2s_kill(c, "TLS accept failed");
			return (-1);
		}
		c->sc_srv = s2s_srv;
		s2s_srv->sv_refs++;
	} else {
		if ((sd = s2s_ours(c->sc_local)) == NULL ||
		    (ctx = tls_client()) == NULL) {
			s2s_out_fail(c, "no TLS client");
			return (-1);
		}
		if (tls_configure(ctx, (c->sc_flags & SC_DIRECT) ?
		    sd->sd_cli_alpn : sd->sd_cli) == -1 ||
		    tls_connect_socket(ctx, c->sc_fd, c->sc_remote) == -1) {
			snprintf(c->sc_err, sizeof(c->sc_err), "TLS: %s",
			    tls_error(ctx));
			tls_free(ctx);
			s2s_out_fail(c, c->sc_err);
			return (-1);
		}
		c->sc_tls = ctx;
	}
	c->sc_flags |= SC_HANDSHAKE;
	return (0);
}

/* Returns -1 when the connection is gone or waits for the socket. */
static int
s2s_handshake(struct s2s_conn *c)
{
	int	 r;

	if ((r = tls_handshake(c->sc_tls)) == TLS_WANT_POLLOUT) {
		c->sc_flags |= SC_WANTW;
		return (-1);
	}
	if (r == TLS_WANT_POLLIN)
		return (-1);
	if (r == -1) {
		if (c->sc_dir == S2S_OUT && c->sc_step != OUT_READY) {
			snprintf(c->sc_err, sizeof(c->sc_err),
			    "%s: TLS handshake: %s", c->sc_addr,
			    tls_error(c->sc_tls));
			s2s_out_next(c);
		} else {
			log_info("s2s in %s: TLS handshake: %s", c->sc_addr,
			    tls_error(c->sc_tls));
			s2s_kill(c, NULL);
		}
		return (-1);
	}
	s2s_tls_done(c);
	return (0);
}

static void
s2s_read(struct s2s_conn *c)
{
	char	 buf[S2S_READ_CHUNK];
	ssize_t	 n;
	int	 i;

	for (i = 0; i < S2S_READS; i++) {
		if (c->sc_flags & (SC_DEAD | SC_TLS_START | SC_HANDSHAKE))
			return;
		if (c->sc_tls != NULL) {
			n = tls_read(c->sc_tls, buf, sizeof(buf));
			if (n == TLS_WANT_POLLIN)
				return;
			if (n == TLS_WANT_POLLOUT) {
				c->sc_flags |= SC_WANTW;
				return;
			}
			if (n == -1) {
				log_info("s2s %s %s: TLS read: %s",
				    s2s_dirname(c), c->sc_addr,
				    tls_error(c->sc_tls));
				s2s_kill(c, NULL);
				return;
			}
		} else if ((n = read(c->sc_fd, buf, sizeof(buf))) == -1) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			s2s_kill(c, strerror(errno));
			return;
		}
		if (n == 0) {
			s2s_kill(c, (c->sc_flags & SC_CLOSING) ? NULL :
			    "connection closed by the peer");
			return;
		}
		if (c->sc_flags & SC_CLOSING)
			continue;
		(void)xml_stream_feed(c->sc_xml, buf, n);
	}
	/* libtls may hold decrypted data the socket no longer shows */
	if (!(c->sc_flags & SC_DEAD))
		event_active(&c->sc_ev_r, EV_READ, 1);
}

static int
s2s_flush(struct s2s_conn *c)
{
	ssize_t	 n;

	while (c->sc_woff < c->sc_wlen) {
		if (c->sc_tls != NULL) {
			n = tls_write(c->sc_tls, c->sc_wbuf + c->sc_woff,
			    c->sc_wlen - c->sc_woff);
			if (n == TLS_WANT_POLLOUT) {
				c->sc_flags |= SC_WANTW;
				return (0);
			}
			if (n == TLS_WANT_POLLIN)
				return (0);
			if (n == -1) {
				log_info("s2s %s %s: TLS write: %s",
				    s2s_dirname(c), c->sc_addr,
				    tls_error(c->sc_tls));
				s2s_kill(c, NULL);
				return (-1);
			}
		} else if ((n = write(c->sc_fd, c->sc_wbuf + c->sc_woff,
		    c->sc_wlen - c->sc_woff)) == -1) {
			if (errno == EAGAIN || errno == EINTR) {
				c->sc_flags |= SC_WANTW;
				return (0);
			}
			s2s_kill(c, strerror(errno));
			return (-1);
		}
		c->sc_woff += n;
	}
	c->sc_woff = c->sc_wlen = 0;
	return (0);
}

static void
s2s_do(struct s2s_conn *c)
{
	int	 r;

	c->sc_flags &= ~SC_WANTW;
	for (;;) {
		if (c->sc_flags & SC_DEAD)
			return;
		if ((c->sc_flags & SC_TLS_START) && c->sc_woff == c->sc_wlen) {
			if (s2s_tls_start(c) == -1)
				return;
		}
		if (c->sc_flags & SC_HANDSHAKE) {
			if (s2s_handshake(c) == -1)
				break;
			continue;
		}
		if (c->sc_tls == NULL && (c->sc_flags & SC_TLS_START) == 0 &&
		    (c->sc_flags & SC_DIRECT) && c->sc_dir == S2S_IN)
			break;
		s2s_read(c);
		if (c->sc_flags & SC_DEAD)
			return;
		if (s2s_flush(c) == -1)
			return;
		if ((c->sc_flags & SC_TLS_START) && c->sc_woff == c->sc_wlen)
			continue;
		break;
	}
	if ((c->sc_flags & SC_CLOSING) && c->sc_woff == c->sc_wlen &&
	    !(c->sc_flags & SC_HANDSHAKE)) {
		if (c->sc_tls != NULL) {
			r = tls_close(c->sc_tls);
			if (r == TLS_WANT_POLLOUT)
				c->sc_flags |= SC_WANTW;
			if (r == TLS_WANT_POLLIN || r == TLS_WANT_POLLOUT)
				goto events;
		}
		s2s_kill(c, NULL);
		return;
	}
 events:
	if ((c->sc_flags & SC_WANTW) && !(c->sc_flags & SC_WEV)) {
		c->sc_flags |= SC_WEV;
		event_add(&c->sc_ev_w, NULL);
	}
}

static void
s2s_io_cb(int fd, short ev, void *arg)
{
	struct s2s_conn	*c = arg;

	if (ev & EV_WRITE)
		c->sc_flags &= ~SC_WEV;
	if (c->sc_flags & SC_DEAD)
		return;
	s2s_do(c);
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

int
s2s_init(struct event_base *base)
{
	s2s_base = base;
	if (tls_init() == -1) {
		log_warnx("%s: tls_init failed", __func__);
		return (-1);
	}
	arc4random_buf(s2s_secret, sizeof(s2s_secret));
	return (dns_init(base));
}

static struct tls_config *
s2s_tls_config(const struct mp_domain *d, const char *alpn)
{
	struct tls_config	*cfg;

	if ((cfg = tls_config_new()) == NULL)
		return (NULL);
	if (tls_config_set_protocols(cfg, TLS_PROTOCOL_TLSv1_2 |
	    TLS_PROTOCOL_TLSv1_3) == -1 ||
	    (alpn != NULL && tls_config_set_alpn(cfg, alpn) == -1) ||
	    (d != NULL && tls_config_set_keypair_mem(cfg, d->d_cert_mem,
	    d->d_cert_len, d->d_key_mem, d->d_key_len) == -1)) {
		log_warnx("%s: %s", __func__, tls_config_error(cfg));
		tls_config_free(cfg);
		return (NULL);
	}
	return (cfg);
}

static void
s2s_domains_free(struct s2s_domains *head)
{
	struct s2s_domain	*sd;

	while ((sd = TAILQ_FIRST(head)) != NULL) {
		TAILQ_REMOVE(head, sd, sd_entry);
		tls_config_free(sd->sd_cli);
		tls_config_free(sd->sd_cli_alpn);
		free(sd);
	}
}

static struct s2s_server *
s2s_server_new(struct mp_conf *conf)
{
	struct s2s_server	*sv;
	struct mp_domain	*d;

	if ((d = TAILQ_FIRST(&conf->c_domains)) == NULL)
		return (NULL);
	if ((sv = calloc(1, sizeof(*sv))) == NULL)
		return (NULL);
	if ((sv->sv_cfg = s2s_tls_config(d, S2S_ALPN)) == NULL)
		goto fail;
	while ((d = TAILQ_NEXT(d, d_entry)) != NULL)
		if (tls_config_add_keypair_mem(sv->sv_cfg, d->d_cert_mem,
		    d->d_cert_len, d->d_key_mem, d->d_key_len) == -1) {
			log_warnx("%s: %s: %s", __func__, d->d_name,
			    tls_config_error(sv->sv_cfg));
			goto fail;
		}
	/* We check the peer's chain ourselves: see s2s_chain_check. */
	if (conf->c_ca_len > 0) {
		tls_config_verify_client_optional(sv->sv_cfg);
		tls_config_insecure_noverifycert(sv->sv_cfg);
	}
	if ((sv->sv_tls = tls_server()) == NULL ||
	    tls_configure(sv->sv_tls, sv->sv_cfg) == -1) {
		log_warnx("%s: %s", __func__, sv->sv_tls ?
		    tls_error(sv->sv_tls) : "tls_server");
		goto fail;
	}
	sv->sv_current = 1;
	return (sv);
 fail:
	tls_free(sv->sv_tls);
	tls_config_free(sv->sv_cfg);
	free(sv);
	return (NULL);
}

int
s2s_conf(struct mp_conf *old, struct mp_conf *conf)
{
	struct s2s_domains	 doms = TAILQ_HEAD_INITIALIZER(doms);
	struct s2s_domain	*sd;
	struct s2s_listener	*sl;
	struct s2s_server	*sv = NULL;
	struct mp_domain	*d;
	struct mp_listen	*l;
	X509_STORE		*st = NULL;
	int			 rv = -1;

	if (old == NULL || memcmp(old->c_dns_zones, conf->c_dns_zones,
	    sizeof(conf->c_dns_zones)) != 0)
		dns_zones(conf, old == NULL);
	TAILQ_FOREACH(d, &conf->c_domains, d_entry) {
		if ((sd = calloc(1, sizeof(*sd))) == NULL)
			goto fail;
		TAILQ_INSERT_TAIL(&doms, sd, sd_entry);
		strlcpy(sd->sd_name, d->d_name, sizeof(sd->sd_name));
		s2s_lower(sd->sd_name);
		if ((sd->sd_cli = s2s_tls_config(d, NULL)) == NULL ||
		    (sd->sd_cli_alpn = s2s_tls_config(d, S2S_ALPN)) == NULL)
			goto fail;
		tls_config_insecure_noverifycert(sd->sd_cli);
		tls_config_insecure_noverifyname(sd->sd_cli);
		tls_config_insecure_noverifycert(sd->sd_cli_alpn);
		tls_config_insecure_noverifyname(sd->sd_cli_alpn);
		sd->sd_fits = s2s_cert_fits(d->d_cert_mem, d->d_cert_len,
		    d->d_name);
		if (!sd->sd_fits)
			log_warnx("%s: the certificate of %s does not name "
			    "it: no SASL EXTERNAL", __func__, d->d_name);
	}
	if (!TAILQ_EMPTY(&conf->c_domains) &&
	    (sv = s2s_server_new(conf)) == NULL)
		goto fail;
	if (conf->c_ca_len > 0 &&
	    (st = s2s_store_new(conf->c_ca_mem, conf->c_ca_len)) == NULL) {
		log_warnx("%s: no certificate in the CA bundle", __func__);
		goto fail;
	}

	/* Commit: old streams keep what they were made with. */
	s2s_domains_free(&s2s_domains);
	TAILQ_CONCAT(&s2s_domains, &doms, sd_entry);
	s2s_server_retire(s2s_srv);
	s2s_srv = sv;
	X509_STORE_free(s2s_store);
	s2s_store = st;
	rv = 0;
 adopt:
	/* The limits, routes and listeners of the new one in any case. */
	s2s_cf = conf;

	while ((sl = TAILQ_FIRST(&s2s_listeners)) != NULL) {
		TAILQ_REMOVE(&s2s_listeners, sl, sl_entry);
		event_del(&sl->sl_ev);
		evtimer_del(&sl->sl_pause);
		free(sl);
	}
	TAILQ_FOREACH(l, &conf->c_listens, l_entry) {
		if (l->l_fd == -1)
			continue;
		if ((sl = calloc(1, sizeof(*sl))) == NULL)
			fatal("%s", __func__);
		sl->sl_fd = l->l_fd;
		sl->sl_tls = l->l_tls;
		snprintf(sl->sl_name, sizeof(sl->sl_name), "%s port %u",
		    l->l_addr, l->l_port);
		event_set(&sl->sl_ev, l->l_fd, EV_READ | EV_PERSIST,
		    s2s_accept_cb, sl);
		evtimer_set(&sl->sl_pause, s2s_listener_resume, sl);
		event_add(&sl->sl_ev, NULL);
		TAILQ_INSERT_TAIL(&s2s_listeners, sl, sl_entry);
		log_debug("s2s: listening on %s%s", sl->sl_name,
		    sl->sl_tls ? " (direct TLS)" : "");
	}
	(void)old;
	return (rv);
 fail:
	s2s_domains_free(&doms);
	s2s_server_retire(sv);
	X509_STORE_free(st);
	if (s2s_cf == NULL) {
		log_warnx("%s: configuration not applied", __func__);
		return (-1);
	}
	log_warnx("%s: TLS material not applied: the previous stays",
	    __func__);
	goto adopt;
}

void
s2s_shutdown(void)
{
	struct s2s_conn		*c;
	struct s2s_listener	*sl;

	TAILQ_FOREACH(sl, &s2s_listeners, sl_entry)
		event_del(&sl->sl_ev);
	TAILQ_FOREACH(c, &s2s_conns, sc_entry) {
		if ((c->sc_flags & (SC_DEAD | SC_CLOSING)) || c->sc_fd == -1 ||
		    (c->sc_flags & SC_HANDSHAKE) ||
		    (c->sc_tls == NULL && (c->sc_flags & SC_DIRECT)) ||
		    (c->sc_dir == S2S_OUT && !(c->sc_flags & SC_HDR_SENT)))
			continue;
		s2s_close(c, "system-shutdown", "shutting down");
		(void)s2s_flush(c);
		if (c->sc_tls != NULL && !(c->sc_flags & SC_DEAD))
			(void)tls_close(c->sc_tls);
	}
}
