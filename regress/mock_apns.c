/*
 * mock_apns: a stand-in for Apple's push service, for the tests and the
 * benchmarks.  HTTP/2 (nghttp2) over libtls on a libevent loop.  It checks
 * what APNs checks, answers with APNs' statuses and reasons, follows a
 * per-token script, and records what it saw.
 *
 * usage: mock_apns [-v] [-p port] -c cert -k key [-C ca] [-J pub -K keyid
 *	-T teamid] [-E maxage] [-m maxstreams] [-r record] [-s script]
 *	[-S stats]
 */

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/tree.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <err.h>
#include <errno.h>
#include <event.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <tls.h>

#ifndef __dead
#define __dead		__attribute__((__noreturn__))
#endif

#define MOCK_BACKLOG		1024
#define MOCK_MAX_CONNS		4096
#define MOCK_READ_BUF		65536
#define MOCK_OUT_BUF		65536
#define MOCK_CONN_WINDOW	(1 << 20)
#define MOCK_MAX_STREAMS	1000
#define MOCK_PATH_MAX		256
#define MOCK_TOKEN_MIN		64
#define MOCK_TOKEN_MAX		200
#define MOCK_AUTH_MAX		1024
#define MOCK_JWT_PART_MAX	512
#define MOCK_JWT_MAXAGE		3600
#define MOCK_UUID_LEN		36
#define MOCK_HDRVAL_MAX		256
#define MOCK_SHORTVAL_MAX	32
#define MOCK_PAYLOAD_MAX	4096
#define MOCK_PAYLOAD_VOIP_MAX	5120
#define MOCK_COLLAPSE_MAX	64
#define MOCK_RECORD_HDRS	8192
#define MOCK_RESP_MAX		192
#define MOCK_REASON_MAX		64
#define MOCK_STATUS_MAX		600
#define MOCK_SEEN_MAX		100000
#define MOCK_DEVICE_PREFIX	"/3/device/"

enum conn_state {
	CONN_HANDSHAKE,
	CONN_H2
};

/* st_flags */
#define ST_TOPIC	0x0001
#define ST_PRIO		0x0002
#define ST_EXPIR	0x0004
#define ST_APNSID	0x0008
#define ST_AUTH		0x0010
#define ST_PATHLONG	0x0020
#define ST_AUTHLONG	0x0040
#define ST_HDRSFULL	0x0080
#define ST_TIMER	0x0100
#define ST_DONE		0x0200
#define ST_PUSHTYPE	0x0400

struct conn;

struct stream {
	TAILQ_ENTRY(stream)	 st_entry;
	struct conn		*st_conn;
	struct event		 st_timer;
	int32_t			 st_id;
	unsigned int		 st_flags;
	size_t			 st_resplen;
	size_t			 st_respoff;
	size_t			 st_collapselen;
	size_t			 st_bodylen;
	size_t			 st_hdrslen;
	char			 st_method[MOCK_SHORTVAL_MAX];
	char			 st_path[MOCK_PATH_MAX];
	char			 st_apnsid[MOCK_UUID_LEN + 1];
	char			 st_pushtype[MOCK_SHORTVAL_MAX];
	char			 st_prio[MOCK_SHORTVAL_MAX];
	char			 st_expir[MOCK_SHORTVAL_MAX];
	char			 st_auth[MOCK_AUTH_MAX];
	char			 st_resp[MOCK_RESP_MAX];
	char			 st_body[MOCK_PAYLOAD_VOIP_MAX + 1];
	char			 st_hdrs[MOCK_RECORD_HDRS];
};
TAILQ_HEAD(streamlist, stream);

struct conn {
	TAILQ_ENTRY(conn)	 c_entry;
	struct streamlist	 c_streams;
	struct tls		*c_tls;
	nghttp2_session		*c_h2;
	struct event		 c_rev;
	struct event		 c_wev;
	enum conn_state		 c_state;
	int			 c_fd;
	unsigned int		 c_id;
	int			 c_hascert;
	int			 c_drop;
	int			 c_revon;
	int			 c_rblock;
	int			 c_wblock;
	size_t			 c_nstreams;
	const uint8_t		*c_pend;
	size_t			 c_pendlen;
	size_t			 c_outoff;
	size_t			 c_outlen;
	int			 c_jwtok;
	long long		 c_jwtiat;
	char			 c_jwt[MOCK_AUTH_MAX];
	uint8_t			 c_out[MOCK_OUT_BUF];
};
TAILQ_HEAD(connlist, conn);

enum rule_action {
	ACT_STATUS,
	ACT_DELAY,
	ACT_DROP,
	ACT_HANG
};

struct rule {
	RB_ENTRY(rule)		 r_entry;
	enum rule_action	 r_action;
	int			 r_status;
	int			 r_once;
	int			 r_used;
	long long		 r_ts;
	long long		 r_ms;
	char			 r_reason[MOCK_REASON_MAX];
	char			 r_token[MOCK_TOKEN_MAX + 1];
};
RB_HEAD(ruletree, rule);

static int	 rule_cmp(struct rule *, struct rule *);
RB_PROTOTYPE(ruletree, rule, r_entry, rule_cmp);
RB_GENERATE(ruletree, rule, r_entry, rule_cmp);

struct script {
	struct ruletree		 sc_rules;
	struct ruletree		 sc_seen;	/* tokens a "* once" hit */
	size_t			 sc_nseen;
	struct rule		 sc_default;
};

struct mock {
	struct tls		*m_tls;
	nghttp2_session_callbacks *m_cbs;
	EVP_PKEY		*m_jwtkey;
	const char		*m_keyid;
	const char		*m_teamid;
	long long		 m_maxage;
	const char		*m_cafile;
	unsigned int		 m_maxstreams;
	int			 m_verbose;
	FILE			*m_record;
	const char		*m_scriptfile;
	struct script		*m_script;
	const char		*m_statsfile;
	struct connlist		 m_conns;
	struct streamlist	 m_freestreams;
	size_t			 m_nconns;
	unsigned int		 m_connid;
	unsigned long long	 m_requests;
	unsigned long long	 m_connections;
	unsigned long long	 m_overlimit;
	unsigned long long	 m_goaways;
	unsigned long long	 m_drops;
	unsigned long long	 m_bystatus[MOCK_STATUS_MAX];
	uint8_t			 m_rbuf[MOCK_READ_BUF];
};

static struct mock	 env;

static const char *push_types[] = {
	"alert", "background", "location", "voip", "complication",
	"fileprovider", "mdm", "liveactivity", "pushtotalk", "widgets",
	"controls", NULL
};

static void	 conn_event(int, short, void *);
static void	 conn_close(struct conn *);
static void	 conn_kick(struct conn *);

static __dead void
usage(void)
{
	fprintf(stderr, "usage: mock_apns [-v] [-p port] -c cert -k key "
	    "[-C ca] [-J pub -K keyid -T teamid]\n"
	    "\t[-E maxage] [-m maxstreams] [-r record] [-s script] "
	    "[-S stats]\n");
	exit(1);
}

static long long
now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* JSON string escaping: the result goes into a bounded buffer. */
static int
json_esc(char *dst, size_t dstsz, size_t *off, const char *s, size_t len)
{
	static const char	 hex[] = "0123456789abcdef";
	size_t			 i, o = *off;
	unsigned char		 ch;

	for (i = 0; i < len; i++) {
		ch = s[i];
		if (o + 7 >= dstsz)
			return (-1);
		if (ch == '"' || ch == '\\') {
			dst[o++] = '\\';
			dst[o++] = ch;
		} else if (ch < 0x20 || ch == 0x7f) {
			dst[o++] = '\\';
			dst[o++] = 'u';
			dst[o++] = '0';
			dst[o++] = '0';
			dst[o++] = hex[ch >> 4];
			dst[o++] = hex[ch & 0xf];
		} else
			dst[o++] = ch;
	}
	*off = o;
	return (0);
}

static void
json_fput(FILE *fp, const char *s, size_t len)
{
	size_t		 i;
	unsigned char	 ch;

	putc('"', fp);
	for (i = 0; i < len; i++) {
		ch = s[i];
		if (ch == '"' || ch == '\\') {
			putc('\\', fp);
			putc(ch, fp);
		} else if (ch < 0x20 || ch == 0x7f)
			fprintf(fp, "\\u%04x", ch);
		else
			putc(ch, fp);
	}
	putc('"', fp);
}

/* Tiny JSON field readers, enough for JWT headers and claims. */
static const char *
json_field(const char *obj, const char *key)
{
	const char	*p = obj;
	size_t		 klen = strlen(key);

	while ((p = strchr(p, '"')) != NULL) {
		if (strncmp(p + 1, key, klen) == 0 && p[klen + 1] == '"') {
			p += klen + 2;
			while (isspace((unsigned char)*p))
				p++;
			if (*p != ':')
				return (NULL);
			p++;
			while (isspace((unsigned char)*p))
				p++;
			return (p);
		}
		p++;
	}
	return (NULL);
}

static int
json_str_is(const char *obj, const char *key, const char *want)
{
	const char	*v;
	size_t		 wlen = strlen(want);

	if ((v = json_field(obj, key)) == NULL || *v != '"')
		return (0);
	return (strncmp(v + 1, want, wlen) == 0 && v[wlen + 1] == '"');
}

static int
json_int(const char *obj, const char *key, long long *out)
{
	const char	*v;
	char		*ep;

	if ((v = json_field(obj, key)) == NULL ||
	    !isdigit((unsigned char)*v))
		return (-1);
	errno = 0;
	*out = strtoll(v, &ep, 10);
	if (errno != 0 || ep == v)
		return (-1);
	return (0);
}

static int
b64url_val(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return (ch - 'A');
	if (ch >= 'a' && ch <= 'z')
		return (ch - 'a' + 26);
	if (ch >= '0' && ch <= '9')
		return (ch - '0' + 52);
	if (ch == '-')
		return (62);
	if (ch == '_')
		return (63);
	return (-1);
}

/* Unpadded base64url, as JWT uses; returns the decoded length or -1. */
static ssize_t
b64url_decode(const char *s, size_t len, uint8_t *out, size_t outsz)
{
	uint32_t	 acc = 0;
	size_t		 i, o = 0;
	int		 bits = 0, v;

	if (len % 4 == 1)
		return (-1);
	for (i = 0; i < len; i++) {
		if ((v = b64url_val(s[i])) == -1)
			return (-1);
		acc = (acc << 6) | v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= outsz)
				return (-1);
			out[o++] = (acc >> bits) & 0xff;
		}
	}
	return (o);
}

static int
es256_verify(const char *msg, size_t msglen, const uint8_t *sig)
{
	ECDSA_SIG	*es = NULL;
	BIGNUM		*r = NULL, *s = NULL;
	EVP_MD_CTX	*md = NULL;
	unsigned char	*der = NULL;
	int		 derlen, ok = 0;

	if ((r = BN_bin2bn(sig, 32, NULL)) == NULL ||
	    (s = BN_bin2bn(sig + 32, 32, NULL)) == NULL ||
	    (es = ECDSA_SIG_new()) == NULL)
		goto done;
	if (ECDSA_SIG_set0(es, r, s) != 1)
		goto done;
	r = s = NULL;
	if ((derlen = i2d_ECDSA_SIG(es, &der)) <= 0)
		goto done;
	if ((md = EVP_MD_CTX_new()) == NULL)
		goto done;
	if (EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL,
	    env.m_jwtkey) != 1)
		goto done;
	ok = EVP_DigestVerify(md, der, derlen, (const unsigned char *)msg,
	    msglen) == 1;
 done:
	EVP_MD_CTX_free(md);
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	BN_free(r);
	BN_free(s);
	return (ok);
}

/* Checks format, key id, team and signature; fills in iat. */
static int
jwt_verify(const char *tok, long long *iat)
{
	const char	*d1, *d2;
	char		 hdr[MOCK_JWT_PART_MAX + 1], claims[MOCK_JWT_PART_MAX + 1];
	uint8_t		 sig[MOCK_JWT_PART_MAX];
	ssize_t		 n;

	if ((d1 = strchr(tok, '.')) == NULL ||
	    (d2 = strchr(d1 + 1, '.')) == NULL || strchr(d2 + 1, '.') != NULL)
		return (-1);
	if ((n = b64url_decode(tok, d1 - tok, (uint8_t *)hdr,
	    sizeof(hdr) - 1)) == -1)
		return (-1);
	hdr[n] = '\0';
	if ((n = b64url_decode(d1 + 1, d2 - d1 - 1, (uint8_t *)claims,
	    sizeof(claims) - 1)) == -1)
		return (-1);
	claims[n] = '\0';
	if ((n = b64url_decode(d2 + 1, strlen(d2 + 1), sig,
	    sizeof(sig))) != 64)
		return (-1);
	if (!json_str_is(hdr, "alg", "ES256") ||
	    !json_str_is(hdr, "kid", env.m_keyid) ||
	    !json_str_is(claims, "iss", env.m_teamid) ||
	    json_int(claims, "iat", iat) == -1)
		return (-1);
	if (!es256_verify(tok, d2 - tok, sig))
		return (-1);
	return (0);
}

/* Returns 0 when the request may go on, else 403 with its reason. */
static int
auth_check(struct conn *c, struct stream *st, const char **reason)
{
	const char	*tok;
	long long	 iat;

	if ((st->st_flags & ST_AUTH) == 0) {
		if (env.m_cafile != NULL && c->c_hascert)
			return (0);
		if (env.m_cafile != NULL || env.m_jwtkey != NULL) {
			*reason = "MissingProviderToken";
			return (403);
		}
		return (0);
	}
	*reason = "InvalidProviderToken";
	if (env.m_jwtkey == NULL || (st->st_flags & ST_AUTHLONG) ||
	    strncasecmp(st->st_auth, "bearer ", 7) != 0)
		return (403);
	tok = st->st_auth + 7;
	/* One signature check per connection and token, as APNs caches. */
	if (strcmp(tok, c->c_jwt) != 0) {
		strlcpy(c->c_jwt, tok, sizeof(c->c_jwt));
		c->c_jwtok = jwt_verify(tok, &iat) == 0;
		c->c_jwtiat = c->c_jwtok ? iat : 0;
	}
	if (!c->c_jwtok)
		return (403);
	if ((long long)time(NULL) - c->c_jwtiat > env.m_maxage) {
		*reason = "ExpiredProviderToken";
		return (403);
	}
	return (0);
}

static int
is_uuid(const char *s)
{
	size_t	 i;

	for (i = 0; i < MOCK_UUID_LEN; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return (0);
		} else if (!isxdigit((unsigned char)s[i]))
			return (0);
	}
	return (s[i] == '\0');
}

static void
uuid_make(char *dst)
{
	static const char	 hex[] = "0123456789ABCDEF";
	uint8_t			 b[16];
	size_t			 i, o = 0;

	arc4random_buf(b, sizeof(b));
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	for (i = 0; i < sizeof(b); i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			dst[o++] = '-';
		dst[o++] = hex[b[i] >> 4];
		dst[o++] = hex[b[i] & 0xf];
	}
	dst[o] = '\0';
}

static int
token_valid(const char *tok)
{
	size_t	 len;

	for (len = 0; tok[len] != '\0'; len++)
		if (!isxdigit((unsigned char)tok[len]))
			return (0);
	return (len >= MOCK_TOKEN_MIN && len <= MOCK_TOKEN_MAX);
}

static int
payload_check(struct stream *st, const char **reason)
{
	size_t		 max, b, e;
	const char	*p = st->st_body;

	max = strcmp(st->st_pushtype, "voip") == 0 ? MOCK_PAYLOAD_VOIP_MAX :
	    MOCK_PAYLOAD_MAX;
	if (st->st_bodylen > max) {
		*reason = "PayloadTooLarge";
		return (413);
	}
	for (b = 0; b < st->st_bodylen && isspace((unsigned char)p[b]); b++)
		;
	for (e = st->st_bodylen; e > b && isspace((unsigned char)p[e - 1]);
	    e--)
		;
	if (b == e) {
		*reason = "PayloadEmpty";
		return (400);
	}
	/* A tiny check: an object that names "aps" somewhere. */
	st->st_body[st->st_bodylen] = '\0';
	if (p[b] != '{' || p[e - 1] != '}' ||
	    json_field(p + b, "aps") == NULL) {
		*reason = "BadPayload";
		return (400);
	}
	return (0);
}

/* The checks APNs makes, in about its order; 0 when all pass. */
static int
request_check(struct conn *c, struct stream *st, const char **reason)
{
	const char	*tok, **pt, *ep;
	int		 status;
	long long	 v;

	if (strcmp(st->st_method, "POST") != 0) {
		*reason = "MethodNotAllowed";
		return (405);
	}
	if (strncmp(st->st_path, MOCK_DEVICE_PREFIX,
	    sizeof(MOCK_DEVICE_PREFIX) - 1) != 0) {
		*reason = "BadPath";
		return (404);
	}
	if ((st->st_flags & ST_APNSID) && !is_uuid(st->st_apnsid)) {
		*reason = "BadMessageId";
		return (400);
	}
	if ((status = auth_check(c, st, reason)) != 0)
		return (status);
	tok = st->st_path + sizeof(MOCK_DEVICE_PREFIX) - 1;
	if ((st->st_flags & ST_PATHLONG) || !token_valid(tok)) {
		*reason = "BadDeviceToken";
		return (400);
	}
	if ((st->st_flags & ST_TOPIC) == 0) {
		*reason = "MissingTopic";
		return (400);
	}
	*reason = "InvalidPushType";
	if ((st->st_flags & ST_PUSHTYPE) == 0)
		return (400);
	for (pt = push_types; *pt != NULL; pt++)
		if (strcmp(*pt, st->st_pushtype) == 0)
			break;
	if (*pt == NULL)
		return (400);
	if (st->st_flags & ST_PRIO) {
		*reason = "BadPriority";
		if (strcmp(st->st_prio, "5") != 0 &&
		    strcmp(st->st_prio, "10") != 0)
			return (400);
		if (strcmp(st->st_prio, "10") == 0 &&
		    strcmp(st->st_pushtype, "background") == 0)
			return (400);
	}
	if (st->st_flags & ST_EXPIR) {
		*reason = "BadExpirationDate";
		if (!isdigit((unsigned char)st->st_expir[0]))
			return (400);
		errno = 0;
		v = strtoll(st->st_expir, (char **)&ep, 10);
		if (errno != 0 || *ep != '\0' || v < 0)
			return (400);
	}
	if (st->st_collapselen > MOCK_COLLAPSE_MAX) {
		*reason = "BadCollapseId";
		return (400);
	}
	return (payload_check(st, reason));
}

static int
rule_cmp(struct rule *a, struct rule *b)
{
	return (strcmp(a->r_token, b->r_token));
}

static const char *
reason_default(int status)
{
	switch (status) {
	case 400:
		return ("BadRequest");
	case 403:
		return ("InvalidProviderToken");
	case 404:
		return ("BadPath");
	case 405:
		return ("MethodNotAllowed");
	case 410:
		return ("Unregistered");
	case 413:
		return ("PayloadTooLarge");
	case 429:
		return ("TooManyRequests");
	case 500:
		return ("InternalServerError");
	case 503:
		return ("ServiceUnavailable");
	}
	return ("Error");
}

static void
script_free(struct script *sc)
{
	struct rule	*r, *next;

	if (sc == NULL)
		return;
	RB_FOREACH_SAFE(r, ruletree, &sc->sc_rules, next) {
		RB_REMOVE(ruletree, &sc->sc_rules, r);
		free(r);
	}
	RB_FOREACH_SAFE(r, ruletree, &sc->sc_seen, next) {
		RB_REMOVE(ruletree, &sc->sc_seen, r);
		free(r);
	}
	free(sc);
}

/* ACTION [ARG...] from the words after the token; -1 when malformed. */
static int
rule_parse(struct rule *r, char **w, int nw)
{
	const char	*errstr;
	int		 i;

	if (nw >= 1 && strcmp(w[0], "once") == 0) {
		r->r_once = 1;
		w++;
		nw--;
	}
	if (nw < 1)
		return (-1);
	r->r_ts = -1;
	if (strcmp(w[0], "drop") == 0 && nw == 1)
		r->r_action = ACT_DROP;
	else if (strcmp(w[0], "hang") == 0 && nw == 1)
		r->r_action = ACT_HANG;
	else if (strcmp(w[0], "delay") == 0 && nw == 2) {
		r->r_action = ACT_DELAY;
		r->r_ms = strtonum(w[1], 0, 3600 * 1000, &errstr);
		if (errstr != NULL)
			return (-1);
	} else {
		r->r_action = ACT_STATUS;
		r->r_status = strtonum(w[0], 200, MOCK_STATUS_MAX - 1, &errstr);
		if (errstr != NULL || nw > 3)
			return (-1);
		strlcpy(r->r_reason, reason_default(r->r_status),
		    sizeof(r->r_reason));
		for (i = 1; i < nw; i++) {
			if (isdigit((unsigned char)w[i][0])) {
				r->r_ts = strtonum(w[i], 0, LLONG_MAX, &errstr);
				if (errstr != NULL)
					return (-1);
			} else if (strlcpy(r->r_reason, w[i],
			    sizeof(r->r_reason)) >= sizeof(r->r_reason))
				return (-1);
		}
	}
	return (0);
}

static struct script *
script_load(const char *path)
{
	struct script	*sc;
	struct rule	*r, *old;
	FILE		*fp;
	char		*line = NULL, *p, *w[5];
	size_t		 sz = 0, i;
	int		 nw, lineno = 0, bad = 0;

	if ((sc = calloc(1, sizeof(*sc))) == NULL)
		err(1, "%s", __func__);
	RB_INIT(&sc->sc_rules);
	RB_INIT(&sc->sc_seen);
	sc->sc_default.r_action = ACT_STATUS;
	sc->sc_default.r_status = 200;
	if (path == NULL)
		return (sc);
	if ((fp = fopen(path, "r")) == NULL) {
		warn("%s: %s", __func__, path);
		script_free(sc);
		return (NULL);
	}
	while (getline(&line, &sz, fp) != -1) {
		lineno++;
		if ((p = strchr(line, '#')) != NULL)
			*p = '\0';
		nw = 0;
		for (p = strtok(line, " \t\r\n"); p != NULL && nw < 5;
		    p = strtok(NULL, " \t\r\n"))
			w[nw++] = p;
		if (nw == 0)
			continue;
		if ((r = calloc(1, sizeof(*r))) == NULL)
			err(1, "%s", __func__);
		if (p != NULL || rule_parse(r, w + 1, nw - 1) == -1 ||
		    strlcpy(r->r_token, w[0], sizeof(r->r_token)) >=
		    sizeof(r->r_token)) {
			warnx("%s:%d: bad script line", path, lineno);
			bad = 1;
			free(r);
			continue;
		}
		for (i = 0; r->r_token[i] != '\0'; i++)
			r->r_token[i] = tolower((unsigned char)r->r_token[i]);
		if (strcmp(r->r_token, "*") == 0) {
			sc->sc_default = *r;
			free(r);
			continue;
		}
		if ((old = RB_INSERT(ruletree, &sc->sc_rules, r)) != NULL) {
			RB_REMOVE(ruletree, &sc->sc_rules, old);
			free(old);
			RB_INSERT(ruletree, &sc->sc_rules, r);
		}
	}
	free(line);
	fclose(fp);
	if (bad) {
		script_free(sc);
		return (NULL);
	}
	return (sc);
}

/* The rule for a token; a used "once" rule answers 200. */
static struct rule *
script_match(const char *tok)
{
	static struct rule	 ok = { .r_action = ACT_STATUS,
				    .r_status = 200 };
	struct script		*sc = env.m_script;
	struct rule		 key, *r, *seen;
	size_t			 i;

	if (RB_EMPTY(&sc->sc_rules) && !sc->sc_default.r_once &&
	    sc->sc_default.r_action == ACT_STATUS &&
	    sc->sc_default.r_status == 200)
		return (&sc->sc_default);
	for (i = 0; tok[i] != '\0' && i < MOCK_TOKEN_MAX; i++)
		key.r_token[i] = tolower((unsigned char)tok[i]);
	key.r_token[i] = '\0';
	if ((r = RB_FIND(ruletree, &sc->sc_rules, &key)) != NULL) {
		if (!r->r_once)
			return (r);
		if (r->r_used)
			return (&ok);
		r->r_used = 1;
		return (r);
	}
	r = &sc->sc_default;
	if (!r->r_once)
		return (r);
	if (RB_FIND(ruletree, &sc->sc_seen, &key) != NULL ||
	    sc->sc_nseen >= MOCK_SEEN_MAX)
		return (&ok);
	if ((seen = calloc(1, sizeof(*seen))) == NULL)
		err(1, "%s", __func__);
	strlcpy(seen->r_token, key.r_token, sizeof(seen->r_token));
	RB_INSERT(ruletree, &sc->sc_seen, seen);
	sc->sc_nseen++;
	return (r);
}

static void
stats_write(void)
{
	FILE		*fp;
	char		 tmp[PATH_MAX];
	const char	*sep = "";
	int		 i;

	if (env.m_statsfile == NULL)
		return;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.%d.tmp", env.m_statsfile,
	    (int)getpid()) >= sizeof(tmp)) {
		warnx("%s: path too long", __func__);
		return;
	}
	if ((fp = fopen(tmp, "w")) == NULL) {
		warn("%s: %s", __func__, tmp);
		return;
	}
	fprintf(fp, "{\"requests\":%llu,\"by_status\":{", env.m_requests);
	for (i = 0; i < MOCK_STATUS_MAX; i++) {
		if (env.m_bystatus[i] == 0)
			continue;
		fprintf(fp, "%s\"%d\":%llu", sep, i, env.m_bystatus[i]);
		sep = ",";
	}
	fprintf(fp, "},\"connections\":%llu,\"connections_open\":%zu,"
	    "\"streams_over_limit\":%llu,\"goaways_sent\":%llu,"
	    "\"drops\":%llu}\n", env.m_connections, env.m_nconns,
	    env.m_overlimit, env.m_goaways, env.m_drops);
	if (fclose(fp) == EOF || rename(tmp, env.m_statsfile) == -1) {
		warn("%s: %s", __func__, env.m_statsfile);
		unlink(tmp);
	}
}

static void
record_write(struct conn *c, struct stream *st, int status,
    const char *reason)
{
	FILE	*fp = env.m_record;
	size_t	 len;

	if (fp == NULL)
		return;
	fprintf(fp, "{\"time\":%lld,\"path\":", now_ms());
	json_fput(fp, st->st_path, strlen(st->st_path));
	fputs(",\"headers\":{", fp);
	/* st_hdrs holds "name":"value", pairs; drop the last comma. */
	len = st->st_hdrslen;
	if (len > 0)
		fwrite(st->st_hdrs, 1, len - 1, fp);
	fputs("},\"body\":", fp);
	len = st->st_bodylen < MOCK_PAYLOAD_VOIP_MAX ? st->st_bodylen :
	    MOCK_PAYLOAD_VOIP_MAX;
	json_fput(fp, st->st_body, len);
	fprintf(fp, ",\"status\":%d,\"conn\":%u,\"stream\":%d,\"method\":",
	    status, c->c_id, st->st_id);
	json_fput(fp, st->st_method, strlen(st->st_method));
	fputs(",\"reason\":", fp);
	json_fput(fp, reason ? reason : "", reason ? strlen(reason) : 0);
	fprintf(fp, ",\"body_len\":%zu}\n", st->st_bodylen);
	fflush(fp);
}

static ssize_t
resp_read(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len,
    uint32_t *flags, nghttp2_data_source *src, void *arg)
{
	struct stream	*st = src->ptr;
	size_t		 n = st->st_resplen - st->st_respoff;

	if (n > len)
		n = len;
	memcpy(buf, st->st_resp + st->st_respoff, n);
	st->st_respoff += n;
	if (st->st_respoff == st->st_resplen)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (n);
}

#define NV(n, v, vl)	{ (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, \
			    (vl), NGHTTP2_NV_FLAG_NO_COPY_NAME }

static int
stream_respond(struct conn *c, struct stream *st, int status,
    const char *reason, long long ts)
{
	nghttp2_data_provider	 dp, *dpp = NULL;
	char			 code[8];
	int			 n = 2, len;
	nghttp2_nv		 nva[] = {
		NV(":status", code, 0),
		NV("apns-id", st->st_apnsid, MOCK_UUID_LEN),
		NV("content-type", "application/json",
		    sizeof("application/json") - 1)
	};

	if ((st->st_flags & ST_APNSID) == 0 || !is_uuid(st->st_apnsid))
		uuid_make(st->st_apnsid);
	nva[0].valuelen = snprintf(code, sizeof(code), "%d", status);
	if (status != 200) {
		if (ts >= 0)
			len = snprintf(st->st_resp, sizeof(st->st_resp),
			    "{\"reason\":\"%s\",\"timestamp\":%lld}", reason,
			    ts);
		else
			len = snprintf(st->st_resp, sizeof(st->st_resp),
			    "{\"reason\":\"%s\"}", reason);
		if (len < 0 || (size_t)len >= sizeof(st->st_resp))
			len = snprintf(st->st_resp, sizeof(st->st_resp),
			    "{}");
		st->st_resplen = len;
		st->st_respoff = 0;
		dp.source.ptr = st;
		dp.read_callback = resp_read;
		dpp = &dp;
		n = 3;
	}
	if (status >= 0 && status < MOCK_STATUS_MAX)
		env.m_bystatus[status]++;
	if (env.m_verbose)
		fprintf(stderr, "conn %u stream %d: %d %s\n", c->c_id,
		    st->st_id, status, reason ? reason : "");
	return (nghttp2_submit_response(c->c_h2, st->st_id, nva, n, dpp));
}

static void
stream_delayed(int fd, short ev, void *arg)
{
	struct stream	*st = arg;
	struct conn	*c = st->st_conn;

	st->st_flags &= ~ST_TIMER;
	if (stream_respond(c, st, 200, NULL, -1) != 0) {
		conn_close(c);
		return;
	}
	conn_kick(c);
}

/* A whole request is in: check it, then do what the script says. */
static void
stream_request(struct conn *c, struct stream *st)
{
	struct rule	*r;
	struct timeval	 tv;
	const char	*reason = NULL;
	int		 status;
	long long	 ts;

	env.m_requests++;
	if ((status = request_check(c, st, &reason)) != 0) {
		record_write(c, st, status, reason);
		if (stream_respond(c, st, status, reason, -1) != 0)
			c->c_drop = 1;
		return;
	}
	r = script_match(st->st_path + sizeof(MOCK_DEVICE_PREFIX) - 1);
	switch (r->r_action) {
	case ACT_STATUS:
		status = r->r_status;
		reason = status == 200 ? NULL : r->r_reason;
		ts = -1;
		if (status == 410)
			ts = r->r_ts >= 0 ? r->r_ts : now_ms();
		record_write(c, st, status, reason);
		if (stream_respond(c, st, status, reason, ts) != 0) {
			c->c_drop = 1;
			return;
		}
		if (status == 503 && nghttp2_submit_goaway(c->c_h2,
		    NGHTTP2_FLAG_NONE, st->st_id, NGHTTP2_NO_ERROR,
		    (const uint8_t *)"{\"reason\":\"ServiceUnavailable\"}",
		    sizeof("{\"reason\":\"ServiceUnavailable\"}") - 1) != 0)
			c->c_drop = 1;
		break;
	case ACT_DELAY:
		record_write(c, st, 200, NULL);
		tv.tv_sec = r->r_ms / 1000;
		tv.tv_usec = (r->r_ms % 1000) * 1000;
		evtimer_set(&st->st_timer, stream_delayed, st);
		evtimer_add(&st->st_timer, &tv);
		st->st_flags |= ST_TIMER;
		break;
	case ACT_DROP:
		record_write(c, st, 0, "drop");
		env.m_drops++;
		c->c_drop = 1;
		break;
	case ACT_HANG:
		record_write(c, st, 0, "hang");
		break;
	}
}

static struct stream *
stream_get(struct conn *c, int32_t id)
{
	struct stream	*st;

	if ((st = TAILQ_FIRST(&env.m_freestreams)) != NULL)
		TAILQ_REMOVE(&env.m_freestreams, st, st_entry);
	else if ((st = malloc(sizeof(*st))) == NULL)
		return (NULL);
	st->st_conn = c;
	st->st_id = id;
	st->st_flags = 0;
	st->st_resplen = st->st_respoff = 0;
	st->st_collapselen = st->st_bodylen = st->st_hdrslen = 0;
	st->st_method[0] = st->st_path[0] = st->st_apnsid[0] = '\0';
	st->st_pushtype[0] = st->st_prio[0] = st->st_expir[0] = '\0';
	st->st_auth[0] = '\0';
	TAILQ_INSERT_TAIL(&c->c_streams, st, st_entry);
	c->c_nstreams++;
	return (st);
}

static void
stream_put(struct conn *c, struct stream *st)
{
	if (st->st_flags & ST_TIMER)
		evtimer_del(&st->st_timer);
	TAILQ_REMOVE(&c->c_streams, st, st_entry);
	c->c_nstreams--;
	TAILQ_INSERT_HEAD(&env.m_freestreams, st, st_entry);
}

static int
h2_begin_headers(nghttp2_session *h2, const nghttp2_frame *frame,
    void *arg)
{
	struct conn	*c = arg;
	struct stream	*st;

	if (frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return (0);
	if ((st = stream_get(c, frame->hd.stream_id)) == NULL)
		return (NGHTTP2_ERR_CALLBACK_FAILURE);
	if (c->c_nstreams > env.m_maxstreams)
		env.m_overlimit++;
	nghttp2_session_set_stream_user_data(h2, frame->hd.stream_id, st);
	return (0);
}

/* Copies a header value; a value too long becomes "?", never valid. */
static void
hdr_copy(char *dst, size_t dstsz, const uint8_t *v, size_t vlen)
{
	if (vlen >= dstsz) {
		strlcpy(dst, "?", dstsz);
		return;
	}
	memcpy(dst, v, vlen);
	dst[vlen] = '\0';
}

#define HDR_IS(s)	(namelen == sizeof(s) - 1 && memcmp(name, s, namelen) == 0)

static int
h2_header(nghttp2_session *h2, const nghttp2_frame *frame,
    const uint8_t *name, size_t namelen, const uint8_t *value,
    size_t valuelen, uint8_t flags, void *arg)
{
	struct stream	*st;
	size_t		 o;

	if (frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST ||
	    (st = nghttp2_session_get_stream_user_data(h2,
	    frame->hd.stream_id)) == NULL)
		return (0);
	if (namelen > 0 && name[0] == ':') {
		if (HDR_IS(":method"))
			hdr_copy(st->st_method, sizeof(st->st_method), value,
			    valuelen);
		else if (HDR_IS(":path")) {
			if (valuelen >= sizeof(st->st_path))
				st->st_flags |= ST_PATHLONG;
			hdr_copy(st->st_path, sizeof(st->st_path), value,
			    valuelen);
		}
		return (0);
	}
	if (HDR_IS("apns-topic"))
		st->st_flags |= ST_TOPIC;
	else if (HDR_IS("apns-push-type")) {
		st->st_flags |= ST_PUSHTYPE;
		hdr_copy(st->st_pushtype, sizeof(st->st_pushtype), value,
		    valuelen);
	} else if (HDR_IS("apns-priority")) {
		st->st_flags |= ST_PRIO;
		hdr_copy(st->st_prio, sizeof(st->st_prio), value, valuelen);
	} else if (HDR_IS("apns-expiration")) {
		st->st_flags |= ST_EXPIR;
		hdr_copy(st->st_expir, sizeof(st->st_expir), value, valuelen);
	} else if (HDR_IS("apns-id")) {
		st->st_flags |= ST_APNSID;
		hdr_copy(st->st_apnsid, sizeof(st->st_apnsid), value,
		    valuelen);
	} else if (HDR_IS("apns-collapse-id"))
		st->st_collapselen = valuelen;
	else if (HDR_IS("authorization")) {
		st->st_flags |= ST_AUTH;
		if (valuelen >= sizeof(st->st_auth))
			st->st_flags |= ST_AUTHLONG;
		hdr_copy(st->st_auth, sizeof(st->st_auth), value, valuelen);
	}
	if (env.m_record == NULL || (st->st_flags & ST_HDRSFULL))
		return (0);
	o = st->st_hdrslen;
	if (o + 1 >= sizeof(st->st_hdrs))
		goto full;
	st->st_hdrs[o++] = '"';
	if (json_esc(st->st_hdrs, sizeof(st->st_hdrs), &o,
	    (const char *)name, namelen) == -1 || o + 4 >= sizeof(st->st_hdrs))
		goto full;
	memcpy(st->st_hdrs + o, "\":\"", 3);
	o += 3;
	if (json_esc(st->st_hdrs, sizeof(st->st_hdrs), &o,
	    (const char *)value, valuelen) == -1 ||
	    o + 2 >= sizeof(st->st_hdrs))
		goto full;
	st->st_hdrs[o++] = '"';
	st->st_hdrs[o++] = ',';
	st->st_hdrslen = o;
	return (0);
 full:
	st->st_flags |= ST_HDRSFULL;
	return (0);
}

static int
h2_data(nghttp2_session *h2, uint8_t flags, int32_t id,
    const uint8_t *data, size_t len, void *arg)
{
	struct stream	*st;
	size_t		 room;

	if ((st = nghttp2_session_get_stream_user_data(h2, id)) == NULL)
		return (0);
	if (st->st_bodylen < MOCK_PAYLOAD_VOIP_MAX) {
		room = MOCK_PAYLOAD_VOIP_MAX - st->st_bodylen;
		memcpy(st->st_body + st->st_bodylen, data,
		    len < room ? len : room);
	}
	st->st_bodylen += len;
	return (0);
}

static int
h2_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *arg)
{
	struct conn	*c = arg;
	struct stream	*st;

	if ((frame->hd.type != NGHTTP2_HEADERS &&
	    frame->hd.type != NGHTTP2_DATA) ||
	    (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0)
		return (0);
	if ((st = nghttp2_session_get_stream_user_data(h2,
	    frame->hd.stream_id)) == NULL || (st->st_flags & ST_DONE))
		return (0);
	st->st_flags |= ST_DONE;
	stream_request(c, st);
	/* Stop at once: what follows a dropped request is never seen. */
	return (c->c_drop ? NGHTTP2_ERR_CALLBACK_FAILURE : 0);
}

static int
h2_invalid_frame(nghttp2_session *h2, const nghttp2_frame *frame,
    int lib_error, void *arg)
{
	struct conn	*c = arg;

	if (frame->hd.type != NGHTTP2_HEADERS)
		return (0);
	/*
	 * nghttp2 refuses streams over our SETTINGS itself: REFUSED_STREAM
	 * before the peer acknowledged them, a PROTOCOL_ERROR after.
	 */
	if (lib_error == NGHTTP2_ERR_REFUSED_STREAM ||
	    (lib_error == NGHTTP2_ERR_PROTO &&
	    c->c_nstreams >= env.m_maxstreams)) {
		env.m_overlimit++;
		if (env.m_verbose)
			fprintf(stderr, "conn %u: stream %d over the limit\n",
			    c->c_id, frame->hd.stream_id);
	}
	return (0);
}

static int
h2_frame_send(nghttp2_session *h2, const nghttp2_frame *frame, void *arg)
{
	if (frame->hd.type == NGHTTP2_GOAWAY)
		env.m_goaways++;
	return (0);
}

static int
h2_stream_close(nghttp2_session *h2, int32_t id, uint32_t error, void *arg)
{
	struct conn	*c = arg;
	struct stream	*st;

	if ((st = nghttp2_session_get_stream_user_data(h2, id)) == NULL)
		return (0);
	nghttp2_session_set_stream_user_data(h2, id, NULL);
	stream_put(c, st);
	return (0);
}

static void
h2_callbacks(void)
{
	nghttp2_session_callbacks	*cbs;

	if (nghttp2_session_callbacks_new(&cbs) != 0)
		errx(1, "%s: nghttp2_session_callbacks_new", __func__);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs,
	    h2_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, h2_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs,
	    h2_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs,
	    h2_frame_recv);
	nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs,
	    h2_invalid_frame);
	nghttp2_session_callbacks_set_on_frame_send_callback(cbs,
	    h2_frame_send);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs,
	    h2_stream_close);
	env.m_cbs = cbs;
}

static int
conn_start(struct conn *c)
{
	nghttp2_settings_entry	 iv[1];
	const char		*alpn;

	alpn = tls_conn_alpn_selected(c->c_tls);
	if (alpn == NULL || strcmp(alpn, "h2") != 0) {
		if (env.m_verbose)
			fprintf(stderr, "conn %u: no h2 in ALPN\n", c->c_id);
		return (-1);
	}
	c->c_hascert = tls_peer_cert_provided(c->c_tls);
	if (nghttp2_session_server_new(&c->c_h2, env.m_cbs, c) != 0)
		return (-1);
	iv[0].settings_id = NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS;
	iv[0].value = env.m_maxstreams;
	if (nghttp2_submit_settings(c->c_h2, NGHTTP2_FLAG_NONE, iv, 1) != 0 ||
	    nghttp2_session_set_local_window_size(c->c_h2, NGHTTP2_FLAG_NONE,
	    0, MOCK_CONN_WINDOW) != 0)
		return (-1);
	c->c_state = CONN_H2;
	if (env.m_verbose)
		fprintf(stderr, "conn %u: h2 up%s\n", c->c_id,
		    c->c_hascert ? ", client certificate" : "");
	return (0);
}

/* Moves nghttp2's output to the socket until done or blocked. */
static int
conn_flush(struct conn *c)
{
	ssize_t	 n;
	size_t	 len;

	for (;;) {
		while (c->c_outlen < sizeof(c->c_out)) {
			if (c->c_pendlen == 0) {
				n = nghttp2_session_mem_send(c->c_h2,
				    &c->c_pend);
				if (n < 0)
					return (-1);
				if (n == 0)
					break;
				c->c_pendlen = n;
			}
			len = sizeof(c->c_out) - c->c_outlen;
			if (len > c->c_pendlen)
				len = c->c_pendlen;
			memcpy(c->c_out + c->c_outlen, c->c_pend, len);
			c->c_outlen += len;
			c->c_pend += len;
			c->c_pendlen -= len;
		}
		c->c_wblock = 0;
		if (c->c_outoff == c->c_outlen)
			return (0);
		/* A retry after WANT_POLL* resends the same bytes first. */
		n = tls_write(c->c_tls, c->c_out + c->c_outoff,
		    c->c_outlen - c->c_outoff);
		if (n == TLS_WANT_POLLIN || n == TLS_WANT_POLLOUT) {
			c->c_wblock = n;
			return (0);
		}
		if (n == -1) {
			if (env.m_verbose)
				fprintf(stderr, "conn %u: write: %s\n",
				    c->c_id, tls_error(c->c_tls));
			return (-1);
		}
		c->c_outoff += n;
		if (c->c_outoff == c->c_outlen)
			c->c_outoff = c->c_outlen = 0;
	}
}

static int
conn_read(struct conn *c)
{
	ssize_t	 n, rv;

	if (c->c_wblock == TLS_WANT_POLLOUT)
		return (0);
	c->c_rblock = 0;
	for (;;) {
		n = tls_read(c->c_tls, env.m_rbuf, sizeof(env.m_rbuf));
		if (n == TLS_WANT_POLLIN)
			return (0);
		if (n == TLS_WANT_POLLOUT) {
			c->c_rblock = n;
			return (0);
		}
		if (n <= 0) {
			if (n == -1 && env.m_verbose)
				fprintf(stderr, "conn %u: read: %s\n",
				    c->c_id, tls_error(c->c_tls));
			return (-1);
		}
		rv = nghttp2_session_mem_recv(c->c_h2, env.m_rbuf, n);
		if (rv < 0 || c->c_drop) {
			if (env.m_verbose && !c->c_drop)
				fprintf(stderr, "conn %u: h2: %s\n", c->c_id,
				    nghttp2_strerror(rv));
			return (-1);
		}
		if (conn_flush(c) == -1)
			return (-1);
		if (c->c_wblock == TLS_WANT_POLLOUT)
			return (0);
	}
}

static void
conn_events(struct conn *c)
{
	int	 wantr, wantw;

	wantr = c->c_wblock != TLS_WANT_POLLOUT;
	wantw = c->c_wblock == TLS_WANT_POLLOUT ||
	    c->c_rblock == TLS_WANT_POLLOUT;
	if (wantr && !c->c_revon)
		event_add(&c->c_rev, NULL);
	else if (!wantr && c->c_revon)
		event_del(&c->c_rev);
	c->c_revon = wantr;
	if (wantw && !event_pending(&c->c_wev, EV_WRITE, NULL))
		event_add(&c->c_wev, NULL);
}

/* Flushes, and closes a session nghttp2 is done with. */
static void
conn_kick(struct conn *c)
{
	if (conn_flush(c) == -1) {
		conn_close(c);
		return;
	}
	if (!nghttp2_session_want_read(c->c_h2) &&
	    !nghttp2_session_want_write(c->c_h2) &&
	    c->c_outlen == 0 && c->c_pendlen == 0) {
		conn_close(c);
		return;
	}
	conn_events(c);
}

static void
conn_event(int fd, short ev, void *arg)
{
	struct conn	*c = arg;
	int		 rv;

	if (c->c_state == CONN_HANDSHAKE) {
		rv = tls_handshake(c->c_tls);
		if (rv == TLS_WANT_POLLIN || rv == TLS_WANT_POLLOUT) {
			c->c_rblock = rv;
			conn_events(c);
			return;
		}
		c->c_rblock = 0;
		if (rv == -1) {
			if (env.m_verbose)
				fprintf(stderr, "conn %u: handshake: %s\n",
				    c->c_id, tls_error(c->c_tls));
			c->c_drop = 1;
			conn_close(c);
			return;
		}
		if (conn_start(c) == -1) {
			conn_close(c);
			return;
		}
	}
	/* Drain a blocked write first: reading waits for it. */
	if (conn_flush(c) == -1 || conn_read(c) == -1) {
		conn_close(c);
		return;
	}
	conn_kick(c);
}

static void
conn_close(struct conn *c)
{
	struct stream	*st;

	if (env.m_verbose)
		fprintf(stderr, "conn %u: closed%s\n", c->c_id,
		    c->c_drop ? " (dropped)" : "");
	event_del(&c->c_rev);
	event_del(&c->c_wev);
	/* Best effort close_notify; a dropped connection gets none. */
	if (!c->c_drop && c->c_state == CONN_H2)
		(void)tls_close(c->c_tls);
	tls_free(c->c_tls);
	close(c->c_fd);
	if (c->c_h2 != NULL)
		nghttp2_session_del(c->c_h2);
	while ((st = TAILQ_FIRST(&c->c_streams)) != NULL)
		stream_put(c, st);
	TAILQ_REMOVE(&env.m_conns, c, c_entry);
	env.m_nconns--;
	free(c);
}

static void
listen_event(int fd, short ev, void *arg)
{
	struct conn	*c;
	int		 s, one = 1;

	for (;;) {
		if ((s = accept4(fd, NULL, NULL, SOCK_NONBLOCK |
		    SOCK_CLOEXEC)) == -1) {
			if (errno != EAGAIN && errno != EINTR &&
			    errno != ECONNABORTED)
				warn("%s: accept", __func__);
			return;
		}
		env.m_connections++;
		if (env.m_nconns >= MOCK_MAX_CONNS) {
			warnx("%s: too many connections", __func__);
			close(s);
			continue;
		}
		(void)setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one));
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			warn("%s", __func__);
			close(s);
			continue;
		}
		c->c_fd = s;
		c->c_id = ++env.m_connid;
		c->c_state = CONN_HANDSHAKE;
		TAILQ_INIT(&c->c_streams);
		if (tls_accept_socket(env.m_tls, &c->c_tls, s) == -1) {
			warnx("%s: %s", __func__, tls_error(env.m_tls));
			close(s);
			free(c);
			continue;
		}
		TAILQ_INSERT_TAIL(&env.m_conns, c, c_entry);
		env.m_nconns++;
		event_set(&c->c_rev, s, EV_READ | EV_PERSIST, conn_event, c);
		event_set(&c->c_wev, s, EV_WRITE, conn_event, c);
		event_add(&c->c_rev, NULL);
		c->c_revon = 1;
		if (env.m_verbose)
			fprintf(stderr, "conn %u: accepted\n", c->c_id);
	}
}

static void
signal_event(int sig, short ev, void *arg)
{
	struct script	*sc;

	switch (sig) {
	case SIGHUP:
		if ((sc = script_load(env.m_scriptfile)) == NULL) {
			warnx("script not reloaded");
			return;
		}
		script_free(env.m_script);
		env.m_script = sc;
		printf("script reloaded\n");
		fflush(stdout);
		break;
	case SIGUSR1:
		stats_write();
		printf("stats written\n");
		fflush(stdout);
		break;
	case SIGTERM:
	case SIGINT:
		stats_write();
		exit(0);
	}
}

static EVP_PKEY *
jwtkey_load(const char *path)
{
	EVP_PKEY	*pkey;
	FILE		*fp;

	if ((fp = fopen(path, "r")) == NULL)
		err(1, "%s", path);
	/* The public key, or the .p8 private key itself. */
	if ((pkey = PEM_read_PUBKEY(fp, NULL, NULL, NULL)) == NULL) {
		rewind(fp);
		pkey = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
	}
	fclose(fp);
	if (pkey == NULL || EVP_PKEY_base_id(pkey) != EVP_PKEY_EC)
		errx(1, "%s: not an EC key", path);
	return (pkey);
}

static struct tls *
tls_setup(const char *cert, const char *key, const char *ca)
{
	struct tls_config	*cfg;
	struct tls		*tls;

	if (tls_init() == -1)
		errx(1, "tls_init");
	if ((cfg = tls_config_new()) == NULL)
		errx(1, "tls_config_new");
	if (tls_config_set_keypair_file(cfg, cert, key) == -1 ||
	    tls_config_set_protocols(cfg, TLS_PROTOCOL_TLSv1_2 |
	    TLS_PROTOCOL_TLSv1_3) == -1 ||
	    tls_config_set_alpn(cfg, "h2") == -1)
		errx(1, "tls config: %s", tls_config_error(cfg));
	if (ca != NULL) {
		if (tls_config_set_ca_file(cfg, ca) == -1)
			errx(1, "%s: %s", ca, tls_config_error(cfg));
		/* Checked per request, to answer as APNs does. */
		tls_config_verify_client_optional(cfg);
	}
	if ((tls = tls_server()) == NULL)
		errx(1, "tls_server");
	if (tls_configure(tls, cfg) == -1)
		errx(1, "tls_configure: %s", tls_error(tls));
	tls_config_free(cfg);
	return (tls);
}

static int
listen_setup(int port)
{
	struct sockaddr_in	 sin;
	socklen_t		 len = sizeof(sin);
	int			 s, one = 1;

	if ((s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1)
		err(1, "socket");
	(void)setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(port);
	if (bind(s, (struct sockaddr *)&sin, sizeof(sin)) == -1)
		err(1, "bind port %d", port);
	if (listen(s, MOCK_BACKLOG) == -1)
		err(1, "listen");
	if (getsockname(s, (struct sockaddr *)&sin, &len) == -1)
		err(1, "getsockname");
	return (s);
}

int
main(int argc, char *argv[])
{
	struct event		 lev, sigev[4];
	struct sockaddr_in	 sin;
	socklen_t		 len = sizeof(sin);
	const char		*cert = NULL, *key = NULL, *jwtpub = NULL;
	const char		*recfile = NULL, *errstr;
	static const int	 sigs[] = { SIGHUP, SIGUSR1, SIGTERM, SIGINT };
	int			 ch, port = 0, s;
	size_t			 i;

	env.m_maxstreams = MOCK_MAX_STREAMS;
	env.m_maxage = MOCK_JWT_MAXAGE;
	while ((ch = getopt(argc, argv, "C:c:E:J:K:k:m:p:r:S:s:T:v")) != -1) {
		switch (ch) {
		case 'C':
			env.m_cafile = optarg;
			break;
		case 'c':
			cert = optarg;
			break;
		case 'E':
			env.m_maxage = strtonum(optarg, 0, LLONG_MAX, &errstr);
			if (errstr != NULL)
				errx(1, "-E %s: %s", optarg, errstr);
			break;
		case 'J':
			jwtpub = optarg;
			break;
		case 'K':
			env.m_keyid = optarg;
			break;
		case 'k':
			key = optarg;
			break;
		case 'm':
			env.m_maxstreams = strtonum(optarg, 1, UINT32_MAX >> 1,
			    &errstr);
			if (errstr != NULL)
				errx(1, "-m %s: %s", optarg, errstr);
			break;
		case 'p':
			port = strtonum(optarg, 0, 65535, &errstr);
			if (errstr != NULL)
				errx(1, "-p %s: %s", optarg, errstr);
			break;
		case 'r':
			recfile = optarg;
			break;
		case 'S':
			env.m_statsfile = optarg;
			break;
		case 's':
			env.m_scriptfile = optarg;
			break;
		case 'T':
			env.m_teamid = optarg;
			break;
		case 'v':
			env.m_verbose = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || cert == NULL || key == NULL)
		usage();
	if (jwtpub != NULL) {
		if (env.m_keyid == NULL || env.m_teamid == NULL)
			errx(1, "-J needs -K and -T");
		env.m_jwtkey = jwtkey_load(jwtpub);
	}
	if ((env.m_script = script_load(env.m_scriptfile)) == NULL)
		errx(1, "%s: bad script", env.m_scriptfile);
	if (recfile != NULL && (env.m_record = fopen(recfile, "a")) == NULL)
		err(1, "%s", recfile);
	TAILQ_INIT(&env.m_conns);
	TAILQ_INIT(&env.m_freestreams);
	signal(SIGPIPE, SIG_IGN);
	h2_callbacks();
	env.m_tls = tls_setup(cert, key, env.m_cafile);
	s = listen_setup(port);

	event_init();
	event_set(&lev, s, EV_READ | EV_PERSIST, listen_event, NULL);
	event_add(&lev, NULL);
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		signal_set(&sigev[i], sigs[i], signal_event, NULL);
		signal_add(&sigev[i], NULL);
	}
	if (getsockname(s, (struct sockaddr *)&sin, &len) == -1)
		err(1, "getsockname");
	printf("listening on 127.0.0.1 port %d\n", ntohs(sin.sin_port));
	fflush(stdout);
	event_dispatch();
	stats_write();
	return (0);
}
