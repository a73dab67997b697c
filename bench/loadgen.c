/*
 * An s2s load generator for monalpushd: the user's server side.  Opens
 * N streams (STARTTLS, XEP-0288 bidi, SASL EXTERNAL with a client
 * certificate), then pipelines XEP-0357 publishes (PROTOCOL.md section
 * 4) at a fixed rate or with a fixed window in flight, matches the IQ
 * replies by id and measures publishes per second and the latency from
 * the write of a publish to the read of its reply.
 *
 *	loadgen populate DBDIR N APP DOMAIN FILE
 *		registers N nodes with random tokens through registry.c
 *		(no daemon may have DBDIR open) and writes "node secret"
 *		lines to FILE.
 *	loadgen run -p port -d certdir -N nodefile [-c streams]
 *		[-r rate | -w window] [-t seconds] [-W warmup] [-a naddrs]
 *		[-q] [-P name=pid ...]
 *	loadgen idle -p port -d certdir [-c streams] [-a naddrs]
 *		[-P name=pid ...]
 *
 * certdir holds ca.pem and example.test.{pem,key} from regress/ca.sh;
 * the streams go from example.test to push.localhost on 127.0.0.1 (or
 * 127.0.0.1 .. 127.0.0.naddrs as source addresses).  -P names a
 * process whose CPU share over the measured interval (run) or whose
 * VmRSS before and after the streams came up (idle) is reported.
 * -q sets TCP_QUICKACK after every read, so that the daemon's writes
 * never wait for a delayed ACK of ours (a diagnosis of Nagle's
 * algorithm on its side).  Results are one line of key=value pairs.
 */

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event.h>
#include <tls.h>

#include "monalpushd.h"
#include "bench.h"

#define LG_FROM			"example.test"
#define LG_TO			"push.localhost"
#define LG_STREAMS_MAX		100000
#define LG_NODES_MAX		1000000
#define LG_SLOTS		(1 << 20)	/* publishes in flight, max */
#define LG_RBUF			(64 * 1024)
#define LG_WBUF_MAX		(8 * 1024 * 1024)
#define LG_CONNECTING_MAX	64	/* handshakes at once */
#define LG_PROCS_MAX		8
#define LG_TICK_US		1000	/* pacing timer for -r */
#define LG_SETUP_TIMEOUT	300	/* seconds for all streams to come up */
#define LG_DRAIN_TIMEOUT	10	/* seconds for the last replies */
#define LG_NOFILE		(LG_STREAMS_MAX + 1024)

enum lg_state {
	ST_HDR1,		/* plain header sent, waiting for features */
	ST_PROCEED,		/* starttls sent */
	ST_TLS,			/* handshake */
	ST_HDR2,		/* header over TLS sent */
	ST_AUTH,		/* bidi and auth sent */
	ST_HDR3,		/* header after SASL sent */
	ST_READY,
	ST_DEAD
};

struct lg_conn {
	int			 c_id;
	int			 c_fd;
	int			 c_state;
	int			 c_connected;
	struct tls		*c_tls;
	struct event		 c_rev;
	struct event		 c_wev;
	char			*c_rbuf;
	size_t			 c_rlen;
	char			*c_wbuf;
	size_t			 c_wlen, c_woff, c_wsize;
	int			 c_dirty;
	TAILQ_ENTRY(lg_conn)	 c_dentry;
};

struct lg_node {
	char			 n_node[NODE_MAX + 1];
	char			 n_secret[SECRET_HEX + 1];
};

struct lg_slot {
	uint64_t		 s_start;	/* ns; 0 = free */
	uint32_t		 s_seq;
};

struct lg_proc {
	const char		*p_name;
	pid_t			 p_pid;
	long long		 p_cpu0;
	long			 p_rss0;
};

static struct event_base	*lg_base;
static struct tls_config	*lg_tlscfg;
static struct lg_conn		*lg_conns;
static int			 lg_nconns, lg_nready, lg_nconnecting;
static int			 lg_nstarted, lg_ndead, lg_naddrs = 1;
static int			 lg_port;
static int			 lg_quickack;
static struct lg_node		*lg_nodes;
static size_t			 lg_nnodes;
static struct lg_slot		*lg_slots;
static uint32_t			 lg_seq;
static uint64_t			 lg_inflight, lg_sent, lg_replies;
static uint64_t			 lg_results, lg_errors, lg_unmatched;
static uint64_t			 lg_mreplies, lg_msent;
static int			 lg_window, lg_rate, lg_measuring, lg_stop;
static int			 lg_rr;
static uint64_t			 lg_t0;
static struct lat		 lg_lat;
static struct lg_proc		 lg_procs[LG_PROCS_MAX];
static int			 lg_nprocs;
static struct event		 lg_tickev;
static char			 lg_errcond[128];
static TAILQ_HEAD(, lg_conn)	 lg_dirty = TAILQ_HEAD_INITIALIZER(lg_dirty);

static const char lg_header[] =
	"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
	"xmlns:stream='http://etherx.jabber.org/streams' "
	"xmlns:db='jabber:server:dialback' from='" LG_FROM "' "
	"to='" LG_TO "' version='1.0'>";

/* PROTOCOL.md section 4: id, node, secret. */
static const char lg_publish[] =
	"<iq type='set' from='" LG_FROM "' to='" LG_TO "' id='%x'>"
	BENCH_PUBSUB "</iq>";

static void	 conn_event(int, short, void *);
static void	 conn_step(struct lg_conn *);
static void	 conns_start(void);

static __attribute__((__noreturn__)) void
usage(void)
{
	fprintf(stderr,
	    "usage: loadgen populate dbdir n app domain file\n"
	    "       loadgen run -p port -d certdir -N nodefile [-c streams] "
	    "[-r rate | -w window]\n"
	    "               [-t seconds] [-W warmup] [-a naddrs] [-q] "
	    "[-P name=pid ...]\n"
	    "       loadgen idle -p port -d certdir [-c streams] [-a naddrs] "
	    "[-P name=pid ...]\n");
	exit(1);
}

/* Processes watched */

static void
procs_add(const char *arg)
{
	char		*eq;
	const char	*errstr;

	if (lg_nprocs >= LG_PROCS_MAX || (eq = strchr(arg, '=')) == NULL)
		errx(1, "-P %s: want name=pid, at most %d", arg,
		    LG_PROCS_MAX);
	*eq = '\0';
	lg_procs[lg_nprocs].p_name = arg;
	lg_procs[lg_nprocs].p_pid = strtonum(eq + 1, 1, INT_MAX, &errstr);
	if (errstr != NULL)
		errx(1, "-P %s: pid %s", arg, errstr);
	lg_nprocs++;
}

/* Output */

static void
conn_dirty(struct lg_conn *c)
{
	if (!c->c_dirty) {
		c->c_dirty = 1;
		TAILQ_INSERT_TAIL(&lg_dirty, c, c_dentry);
	}
}

static void
conn_put(struct lg_conn *c, const char *buf, size_t len)
{
	size_t	 nsize;
	char	*n;

	if (c->c_wlen + len > c->c_wsize) {
		if (c->c_woff > 0) {
			memmove(c->c_wbuf, c->c_wbuf + c->c_woff,
			    c->c_wlen - c->c_woff);
			c->c_wlen -= c->c_woff;
			c->c_woff = 0;
		}
		nsize = c->c_wsize ? c->c_wsize : 4096;
		while (nsize < c->c_wlen + len)
			nsize *= 2;
		if (nsize > LG_WBUF_MAX)
			errx(1, "stream %d: output buffer over %d bytes: the "
			    "daemon does not read", c->c_id, LG_WBUF_MAX);
		if (nsize > c->c_wsize) {
			if ((n = realloc(c->c_wbuf, nsize)) == NULL)
				err(1, "%s", __func__);
			c->c_wbuf = n;
			c->c_wsize = nsize;
		}
	}
	memcpy(c->c_wbuf + c->c_wlen, buf, len);
	c->c_wlen += len;
	conn_dirty(c);
}

static void
conn_puts(struct lg_conn *c, const char *s)
{
	conn_put(c, s, strlen(s));
}

static void
conn_fail(struct lg_conn *c, const char *why)
{
	if (c->c_state == ST_DEAD)
		return;
	if (lg_ndead < 5)
		warnx("stream %d: %s", c->c_id, why);
	if (c->c_state == ST_READY)
		lg_nready--;
	else
		lg_nconnecting--;
	c->c_state = ST_DEAD;
	lg_ndead++;
	event_del(&c->c_rev);
	event_del(&c->c_wev);
	if (c->c_tls != NULL) {
		tls_free(c->c_tls);
		c->c_tls = NULL;
	}
	close(c->c_fd);
	c->c_fd = -1;
	c->c_wlen = c->c_woff = c->c_rlen = 0;
}

static void
conn_flush(struct lg_conn *c)
{
	ssize_t	 n;

	while (c->c_woff < c->c_wlen && c->c_state != ST_DEAD) {
		if (c->c_tls != NULL && c->c_state >= ST_HDR2)
			n = tls_write(c->c_tls, c->c_wbuf + c->c_woff,
			    c->c_wlen - c->c_woff);
		else {
			n = write(c->c_fd, c->c_wbuf + c->c_woff,
			    c->c_wlen - c->c_woff);
			if (n == -1 && errno == EAGAIN)
				n = TLS_WANT_POLLOUT;
		}
		if (n == TLS_WANT_POLLOUT) {
			event_add(&c->c_wev, NULL);
			return;
		}
		if (n == TLS_WANT_POLLIN)
			return;
		if (n < 0) {
			conn_fail(c, c->c_tls ? tls_error(c->c_tls) :
			    strerror(errno));
			return;
		}
		c->c_woff += n;
	}
	c->c_woff = c->c_wlen = 0;
}

static void
flush_dirty(void)
{
	struct lg_conn	*c;

	while ((c = TAILQ_FIRST(&lg_dirty)) != NULL) {
		TAILQ_REMOVE(&lg_dirty, c, c_dentry);
		c->c_dirty = 0;
		conn_flush(c);
	}
}

/* Publishes */

static struct lg_conn *
next_ready(void)
{
	int	 i;

	for (i = 0; i < lg_nconns; i++) {
		lg_rr = (lg_rr + 1) % lg_nconns;
		if (lg_conns[lg_rr].c_state == ST_READY)
			return (&lg_conns[lg_rr]);
	}
	return (NULL);
}

static int
publish_one(void)
{
	char		 buf[2048];
	struct lg_conn	*c;
	struct lg_node	*n;
	struct lg_slot	*s;
	uint32_t	 seq;
	int		 len;

	if (lg_inflight >= LG_SLOTS - 1 || (c = next_ready()) == NULL)
		return (-1);
	seq = ++lg_seq;
	s = &lg_slots[seq % LG_SLOTS];
	if (s->s_start != 0)
		return (-1);	/* that slot's reply never came */
	n = &lg_nodes[arc4random_uniform(lg_nnodes)];
	len = snprintf(buf, sizeof(buf), lg_publish, seq, n->n_node,
	    n->n_secret);
	conn_put(c, buf, len);
	s->s_seq = seq;
	s->s_start = now_ns();
	lg_inflight++;
	lg_sent++;
	if (lg_measuring)
		lg_msent++;
	return (0);
}

/* An attribute's value inside a start tag [p, end). */
static int
tag_attr(const char *p, const char *end, const char *name, char *out,
    size_t outlen)
{
	size_t		 nl = strlen(name), vl;
	const char	*q, *v;
	char		 quote;

	/* p is the '<' of the tag: every q below has a byte before it */
	for (q = p + 1; q + nl + 2 < end; q++) {
		if ((q[-1] != ' ' && q[-1] != '\t' && q[-1] != '\n') ||
		    strncmp(q, name, nl) != 0 || q[nl] != '=')
			continue;
		quote = q[nl + 1];
		if (quote != '\'' && quote != '"')
			continue;
		v = q + nl + 2;
		if ((q = memchr(v, quote, end - v)) == NULL)
			return (-1);
		vl = q - v;
		if (vl >= outlen)
			return (-1);
		memcpy(out, v, vl);
		out[vl] = '\0';
		return (0);
	}
	return (-1);
}

static void
reply_got(const char *type, const char *id)
{
	struct lg_slot	*s;
	unsigned long	 seq;
	char		*ep;
	uint64_t	 t;

	seq = strtoul(id, &ep, 16);
	s = &lg_slots[seq % LG_SLOTS];
	if (*ep != '\0' || s->s_start == 0 || s->s_seq != seq) {
		lg_unmatched++;
		return;
	}
	t = now_ns();
	lg_replies++;
	lg_inflight--;
	if (strcmp(type, "result") == 0)
		lg_results++;
	else
		lg_errors++;
	if (lg_measuring) {
		lg_mreplies++;
		lat_add(&lg_lat, t - s->s_start);
	}
	s->s_start = 0;
	if (lg_window > 0 && !lg_stop)
		(void)publish_one();
}

/* Take whole <iq> stanzas off the front of the read buffer. */
static void
stanzas_parse(struct lg_conn *c)
{
	char		*p = c->c_rbuf, *end = c->c_rbuf + c->c_rlen;
	char		*lt, *gt, *close, type[16], id[32], cond[64];
	char		 why[256];
	size_t		 used;

	for (;;) {
		while (p < end && (*p == ' ' || *p == '\n' || *p == '\t' ||
		    *p == '\r'))
			p++;
		if (p == end)
			break;
		if (*p != '<') {
			conn_fail(c, "text between stanzas");
			return;
		}
		lt = p;
		if ((gt = memchr(lt, '>', end - lt)) == NULL)
			break;
		if (end - lt >= 3 && strncmp(lt, "<iq", 3) == 0) {
			if (gt[-1] == '/')
				close = gt + 1;
			else if ((close = memmem(gt, end - gt, "</iq>", 5)) ==
			    NULL)
				break;
			else
				close += 5;
			if (tag_attr(lt, gt, "type", type, sizeof(type)) ==
			    -1 || tag_attr(lt, gt, "id", id, sizeof(id)) == -1)
				lg_unmatched++;
			else if (strcmp(type, "result") == 0 ||
			    strcmp(type, "error") == 0) {
				if (strcmp(type, "error") == 0 &&
				    lg_errcond[0] == '\0') {
					snprintf(cond, sizeof(cond), "%.*s",
					    (int)(close - gt > 63 ? 63 :
					    close - gt), gt);
					strlcpy(lg_errcond, cond,
					    sizeof(lg_errcond));
				}
				reply_got(type, id);
			}
			p = close;
			continue;
		}
		if (strncmp(lt, "<stream:error", 13) == 0 ||
		    strncmp(lt, "</stream:stream", 15) == 0) {
			snprintf(why, sizeof(why), "%.*s", (int)(end - lt > 200 ?
			    200 : end - lt), lt);
			conn_fail(c, why);
			return;
		}
		/* anything else (message, presence): skip to its end */
		if (gt[-1] == '/')
			p = gt + 1;
		else if ((close = memmem(gt, end - gt, "</", 2)) != NULL &&
		    (close = memchr(close, '>', end - close)) != NULL)
			p = close + 1;
		else
			break;
	}
	used = p - c->c_rbuf;
	memmove(c->c_rbuf, p, c->c_rlen - used);
	c->c_rlen -= used;
}

/* Stream set-up */

/* Drop the read buffer up to and including mark; 0 when found. */
static int
consume(struct lg_conn *c, const char *mark)
{
	char	*p;
	size_t	 used;

	if ((p = memmem(c->c_rbuf, c->c_rlen, mark, strlen(mark))) == NULL)
		return (-1);
	used = p - c->c_rbuf + strlen(mark);
	memmove(c->c_rbuf, c->c_rbuf + used, c->c_rlen - used);
	c->c_rlen -= used;
	return (0);
}

static int
has(struct lg_conn *c, const char *s)
{
	return (memmem(c->c_rbuf, c->c_rlen, s, strlen(s)) != NULL);
}

/* React to what was read during set-up. */
static void
conn_setup(struct lg_conn *c)
{
	char	 why[256];

	if (has(c, "<stream:error") || has(c, "<failure")) {
		snprintf(why, sizeof(why), "set-up refused: %.*s",
		    (int)(c->c_rlen > 200 ? 200 : c->c_rlen), c->c_rbuf);
		conn_fail(c, why);
		return;
	}
	switch (c->c_state) {
	case ST_HDR1:
		if (consume(c, "</stream:features>") == 0) {
			conn_puts(c, "<starttls xmlns='urn:ietf:params:xml:"
			    "ns:xmpp-tls'/>");
			c->c_state = ST_PROCEED;
		}
		break;
	case ST_PROCEED:
		if (consume(c, "<proceed") == 0) {
			c->c_rlen = 0;
			if ((c->c_tls = tls_client()) == NULL ||
			    tls_configure(c->c_tls, lg_tlscfg) == -1 ||
			    tls_connect_socket(c->c_tls, c->c_fd, LG_TO) ==
			    -1) {
				conn_fail(c, "TLS set-up");
				return;
			}
			c->c_state = ST_TLS;
			conn_step(c);
		}
		break;
	case ST_HDR2:
		if (consume(c, "</stream:features>") == 0) {
			conn_puts(c, "<bidi xmlns='urn:xmpp:bidi'/>"
			    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
			    "mechanism='EXTERNAL'>ZXhhbXBsZS50ZXN0</auth>");
			c->c_state = ST_AUTH;
		}
		break;
	case ST_AUTH:
		if (consume(c, "<success") == 0) {
			c->c_rlen = 0;
			conn_puts(c, lg_header);
			c->c_state = ST_HDR3;
		}
		break;
	case ST_HDR3:
		if (consume(c, "</stream:features>") == 0) {
			c->c_state = ST_READY;
			lg_nconnecting--;
			lg_nready++;
			conns_start();
		}
		break;
	}
}

/* The TLS handshake, then the header over TLS. */
static void
conn_step(struct lg_conn *c)
{
	int	 rv;

	rv = tls_handshake(c->c_tls);
	if (rv == TLS_WANT_POLLOUT) {
		event_add(&c->c_wev, NULL);
		return;
	}
	if (rv == TLS_WANT_POLLIN)
		return;
	if (rv == -1) {
		conn_fail(c, tls_error(c->c_tls));
		return;
	}
	c->c_state = ST_HDR2;
	conn_puts(c, lg_header);
}

static void
conn_read(struct lg_conn *c)
{
	ssize_t	 n;

	for (;;) {
		if (c->c_rlen == LG_RBUF) {
			conn_fail(c, "read buffer full");
			return;
		}
		if (c->c_tls != NULL && c->c_state >= ST_HDR2)
			n = tls_read(c->c_tls, c->c_rbuf + c->c_rlen,
			    LG_RBUF - c->c_rlen);
		else {
			n = read(c->c_fd, c->c_rbuf + c->c_rlen,
			    LG_RBUF - c->c_rlen);
			if (n == -1 && errno == EAGAIN)
				n = TLS_WANT_POLLIN;
		}
		if (n == TLS_WANT_POLLIN)
			return;
		if (n == TLS_WANT_POLLOUT) {
			event_add(&c->c_wev, NULL);
			return;
		}
		if (n <= 0) {
			conn_fail(c, n == 0 ? "closed by the daemon" :
			    c->c_tls ? tls_error(c->c_tls) : strerror(errno));
			return;
		}
		c->c_rlen += n;
		if (lg_quickack)
			(void)setsockopt(c->c_fd, IPPROTO_TCP, TCP_QUICKACK,
			    &lg_quickack, sizeof(lg_quickack));
		if (c->c_state == ST_READY)
			stanzas_parse(c);
		else {
			conn_setup(c);
			if (c->c_state == ST_TLS)
				return;
		}
		if (c->c_state == ST_DEAD)
			return;
	}
}

static void
conn_event(int fd, short ev, void *arg)
{
	struct lg_conn	*c = arg;
	int		 err = 0;
	socklen_t	 len = sizeof(err);

	if (c->c_state == ST_DEAD)
		return;
	if (!c->c_connected) {
		if (!(ev & EV_WRITE))
			return;
		c->c_connected = 1;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1 ||
		    err != 0) {
			conn_fail(c, strerror(err ? err : errno));
			return;
		}
		conn_puts(c, lg_header);
	}
	if (c->c_state == ST_TLS)
		conn_step(c);
	else
		conn_read(c);
	flush_dirty();
}

static void
conn_open(struct lg_conn *c)
{
	struct sockaddr_in	 sin, src;
	int			 one = 1;

	if ((c->c_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)) ==
	    -1)
		err(1, "socket (raise the file limit?)");
	setsockopt(c->c_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (lg_naddrs > 1) {
		memset(&src, 0, sizeof(src));
		src.sin_family = AF_INET;
		src.sin_addr.s_addr = htonl(INADDR_LOOPBACK +
		    c->c_id % lg_naddrs);
		if (bind(c->c_fd, (struct sockaddr *)&src, sizeof(src)) == -1)
			err(1, "bind %s", inet_ntoa(src.sin_addr));
	}
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(lg_port);
	if ((c->c_rbuf = malloc(LG_RBUF)) == NULL)
		err(1, NULL);
	c->c_state = ST_HDR1;
	lg_nconnecting++;
	event_assign(&c->c_rev, lg_base, c->c_fd, EV_READ | EV_PERSIST,
	    conn_event, c);
	event_assign(&c->c_wev, lg_base, c->c_fd, EV_WRITE, conn_event, c);
	if (connect(c->c_fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 &&
	    errno != EINPROGRESS) {
		conn_fail(c, strerror(errno));
		return;
	}
	event_add(&c->c_rev, NULL);
	event_add(&c->c_wev, NULL);
}

/* Keep at most LG_CONNECTING_MAX streams in set-up. */
static void
conns_start(void)
{
	while (lg_nstarted < lg_nconns &&
	    lg_nconnecting < LG_CONNECTING_MAX) {
		lg_conns[lg_nstarted].c_id = lg_nstarted;
		conn_open(&lg_conns[lg_nstarted]);
		lg_nstarted++;
	}
}

static void
loop_once(int ms)
{
	struct timeval	 tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(lg_base, &tv);
	event_base_dispatch(lg_base);
}

static void
streams_up(const char *certdir, int n)
{
	char		 path[PATH_MAX], key[PATH_MAX];
	uint64_t	 t0 = now_ns(), end;

	if (tls_init() == -1 || (lg_tlscfg = tls_config_new()) == NULL)
		errx(1, "tls_init");
	snprintf(path, sizeof(path), "%s/ca.pem", certdir);
	if (tls_config_set_ca_file(lg_tlscfg, path) == -1)
		errx(1, "%s: %s", path, tls_config_error(lg_tlscfg));
	snprintf(path, sizeof(path), "%s/%s.pem", certdir, LG_FROM);
	snprintf(key, sizeof(key), "%s/%s.key", certdir, LG_FROM);
	if (tls_config_set_keypair_file(lg_tlscfg, path, key) == -1)
		errx(1, "%s: %s", path, tls_config_error(lg_tlscfg));
	if ((lg_conns = calloc(n, sizeof(*lg_conns))) == NULL)
		err(1, NULL);
	lg_nconns = n;
	conns_start();
	end = t0 + (uint64_t)LG_SETUP_TIMEOUT * 1000000000ULL;
	while (lg_nready + lg_ndead < n && now_ns() < end)
		loop_once(100);
	if (lg_nready < n)
		errx(1, "%d of %d streams up, %d failed", lg_nready, n,
		    lg_ndead);
	fprintf(stderr, "loadgen: %d streams up in %.1f s\n", n,
	    (now_ns() - t0) / 1e9);
}

static void
nofile_raise(int n)
{
	struct rlimit	 rl;

	rl.rlim_cur = rl.rlim_max = n + 64 > LG_NOFILE ? n + 64 : LG_NOFILE;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
		getrlimit(RLIMIT_NOFILE, &rl);
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void
nodes_load(const char *file)
{
	FILE		*fp;
	char		 line[512];
	struct lg_node	*n;

	if ((fp = fopen(file, "r")) == NULL)
		err(1, "%s", file);
	if ((lg_nodes = calloc(LG_NODES_MAX, sizeof(*lg_nodes))) == NULL)
		err(1, NULL);
	while (lg_nnodes < LG_NODES_MAX && fgets(line, sizeof(line), fp)) {
		n = &lg_nodes[lg_nnodes];
		if (sscanf(line, "%128s %64s", n->n_node, n->n_secret) == 2)
			lg_nnodes++;
	}
	fclose(fp);
	if (lg_nnodes == 0)
		errx(1, "%s: no nodes", file);
}

/* Pacing for -r: as many publishes as the clock says are due. */
static void
tick_cb(int fd, short ev, void *arg)
{
	uint64_t	 due;

	if (lg_stop)
		return;
	due = (now_ns() - lg_t0) * (uint64_t)lg_rate / 1000000000ULL;
	while (lg_sent < due)
		if (publish_one() == -1)
			break;
	flush_dirty();
}

static void
procs_snap(void)
{
	int	 i;

	for (i = 0; i < lg_nprocs; i++) {
		lg_procs[i].p_cpu0 = proc_cpu(lg_procs[i].p_pid);
		lg_procs[i].p_rss0 = proc_rss(lg_procs[i].p_pid);
	}
}

static int
cmd_run(int seconds, int warmup)
{
	struct rusage	 ru0, ru1;
	struct timeval	 tv = { 0, LG_TICK_US };
	uint64_t	 t1, t2, end;
	double		 secs, cpu;
	long		 hz = sysconf(_SC_CLK_TCK);
	long long	 c1;
	unsigned long long tot0, idle0, tot1, idle1;
	int		 i;

	if ((lg_slots = calloc(LG_SLOTS, sizeof(*lg_slots))) == NULL)
		err(1, NULL);
	lg_t0 = now_ns();
	if (lg_rate > 0) {
		event_assign(&lg_tickev, lg_base, -1, EV_PERSIST, tick_cb,
		    NULL);
		evtimer_add(&lg_tickev, &tv);
	} else {
		for (i = 0; i < lg_window; i++)
			if (publish_one() == -1)
				break;
		flush_dirty();
	}
	if (warmup > 0)
		loop_once(warmup * 1000);
	lg_measuring = 1;
	getrusage(RUSAGE_SELF, &ru0);
	procs_snap();
	stat_cpu(-1, &tot0, &idle0);
	t1 = now_ns();
	end = t1 + (uint64_t)seconds * 1000000000ULL;
	while (now_ns() < end && lg_nready > 0)
		loop_once((end - now_ns()) / 1000000 + 1);
	t2 = now_ns();
	getrusage(RUSAGE_SELF, &ru1);
	stat_cpu(-1, &tot1, &idle1);
	secs = (t2 - t1) / 1e9;
	lg_measuring = 0;
	lg_stop = 1;
	for (i = 0; i < lg_nprocs; i++) {
		c1 = proc_cpu(lg_procs[i].p_pid);
		lg_procs[i].p_cpu0 = c1 - lg_procs[i].p_cpu0;
		lg_procs[i].p_rss0 = proc_rss(lg_procs[i].p_pid);
	}
	end = now_ns() + (uint64_t)LG_DRAIN_TIMEOUT * 1000000000ULL;
	while (lg_inflight > 0 && now_ns() < end && lg_nready > 0)
		loop_once(100);

	cpu = rusage_secs(&ru0, &ru1);
	lat_sort(&lg_lat);
	printf("loadgen streams=%d %s=%d seconds=%.2f sent=%llu "
	    "replies=%llu rate=%.0f offered=%.0f p50_us=%u p90_us=%u "
	    "p99_us=%u max_us=%llu results=%llu errors=%llu unmatched=%llu "
	    "lost=%llu cpu_loadgen=%.0f%%", lg_nready,
	    lg_rate > 0 ? "target" : "window",
	    lg_rate > 0 ? lg_rate : lg_window, secs,
	    (unsigned long long)lg_msent, (unsigned long long)lg_mreplies,
	    lg_mreplies / secs, lg_msent / secs, lat_pct(&lg_lat, 50),
	    lat_pct(&lg_lat, 90), lat_pct(&lg_lat, 99),
	    (unsigned long long)lg_lat.l_max,
	    (unsigned long long)lg_results, (unsigned long long)lg_errors,
	    (unsigned long long)lg_unmatched,
	    (unsigned long long)lg_inflight, 100.0 * cpu / secs);
	if (tot1 > tot0)
		printf(" machine_idle=%.0f%%", 100.0 * (idle1 - idle0) /
		    (tot1 - tot0));
	for (i = 0; i < lg_nprocs; i++)
		printf(" cpu_%s=%.0f%% rss_%s=%ld", lg_procs[i].p_name,
		    100.0 * lg_procs[i].p_cpu0 / hz / secs,
		    lg_procs[i].p_name, lg_procs[i].p_rss0);
	printf("\n");
	if (lg_errors > 0)
		fprintf(stderr, "loadgen: first error reply: %s\n",
		    lg_errcond);
	return (lg_errors > 0 || lg_inflight > 0 || lg_nready == 0);
}

static int
cmd_populate(int argc, char *argv[])
{
	struct registry	*reg;
	const char	*errstr;
	uint8_t		 secret[SECRET_LEN], rnd[16];
	char		 ebuf[REG_ERRMSG_MAX], node[NODE_MAX + 1];
	char		 token[TOKEN_MIN + 1];
	FILE		*fp;
	long long	 n, i;
	int		 j, r;
	time_t		 now = time(NULL);

	if (argc != 6)
		usage();
	n = strtonum(argv[2], 1, LG_NODES_MAX, &errstr);
	if (errstr != NULL)
		errx(1, "n %s: %s", argv[2], errstr);
	if ((reg = registry_open(argv[1], NULL, NULL, ebuf, sizeof(ebuf))) ==
	    NULL)
		errx(1, "%s: %s", argv[1], ebuf);
	if ((fp = fopen(argv[5], "w")) == NULL)
		err(1, "%s", argv[5]);
	registry_bulkload(reg, 1);
	for (i = 0; i < n; i++) {
		arc4random_buf(rnd, sizeof(rnd));
		rnd[6] = (rnd[6] & 0x0f) | 0x40;
		rnd[8] = (rnd[8] & 0x3f) | 0x80;
		snprintf(node, sizeof(node), "%02X%02X%02X%02X-%02X%02X-"
		    "%02X%02X-%02X%02X-%02X%02X%02X%02X%02X%02X", rnd[0],
		    rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7],
		    rnd[8], rnd[9], rnd[10], rnd[11], rnd[12], rnd[13],
		    rnd[14], rnd[15]);
		bench_token(token);
		if ((r = registry_register(reg, REG_TYPE_APNS, argv[3], node,
		    token, argv[4], now, secret)) != REG_OK)
			errx(1, "register %s: %s %s", node,
			    registry_strerror(r), registry_errmsg(reg));
		fprintf(fp, "%s ", node);
		for (j = 0; j < SECRET_LEN; j++)
			fprintf(fp, "%02x", secret[j]);
		fprintf(fp, "\n");
	}
	registry_bulkload(reg, 0);
	if ((r = registry_checkpoint(reg)) != REG_OK)
		errx(1, "checkpoint: %s", registry_strerror(r));
	registry_close(reg);
	if (fclose(fp) == EOF)
		err(1, "%s", argv[5]);
	return (0);
}

int
main(int argc, char *argv[])
{
	const char	*certdir = NULL, *nodefile = NULL, *cmd;
	int		 ch, streams = 1, seconds = 5, warmup = 1, i;
	long		 rss1;

	if (argc < 2)
		usage();
	cmd = argv[1];
	signal(SIGPIPE, SIG_IGN);
	log_init(1, 0);
	log_procinit("loadgen");
	if (strcmp(cmd, "populate") == 0)
		return (cmd_populate(argc - 1, argv + 1));
	if (strcmp(cmd, "run") != 0 && strcmp(cmd, "idle") != 0)
		usage();
	argc--;
	argv++;
	while ((ch = getopt(argc, argv, "a:c:d:N:P:p:qr:t:W:w:")) != -1) {
		switch (ch) {
		case 'a':
			lg_naddrs = optnum(ch, optarg, 1, 254);
			break;
		case 'c':
			streams = optnum(ch, optarg, 1, LG_STREAMS_MAX);
			break;
		case 'd':
			certdir = optarg;
			break;
		case 'N':
			nodefile = optarg;
			break;
		case 'P':
			procs_add(optarg);
			break;
		case 'p':
			lg_port = optnum(ch, optarg, 1, 65535);
			break;
		case 'q':
			lg_quickack = 1;
			break;
		case 'r':
			lg_rate = optnum(ch, optarg, 1, 10000000);
			break;
		case 't':
			seconds = optnum(ch, optarg, 1, 3600);
			break;
		case 'W':
			warmup = optnum(ch, optarg, 0, 3600);
			break;
		case 'w':
			lg_window = optnum(ch, optarg, 1, LG_SLOTS / 2);
			break;
		default:
			usage();
		}
	}
	if (optind != argc || certdir == NULL || lg_port == 0)
		usage();
	nofile_raise(streams);
	if ((lg_base = event_base_new()) == NULL)
		errx(1, "event_base_new");

	if (strcmp(cmd, "idle") == 0) {
		procs_snap();
		streams_up(certdir, streams);
		/* let the daemon finish what the last handshakes left */
		loop_once(500);
		printf("loadgen idle streams=%d", lg_nready);
		for (i = 0; i < lg_nprocs; i++) {
			rss1 = proc_rss(lg_procs[i].p_pid);
			printf(" rss_%s_before=%ld rss_%s_after=%ld "
			    "%s_per_stream=%.1f", lg_procs[i].p_name,
			    lg_procs[i].p_rss0, lg_procs[i].p_name, rss1,
			    lg_procs[i].p_name,
			    (rss1 - lg_procs[i].p_rss0) * 1024.0 / streams);
		}
		printf("\n");
		return (lg_nready != streams);
	}
	if (nodefile == NULL || (lg_rate == 0) == (lg_window == 0))
		usage();
	nodes_load(nodefile);
	streams_up(certdir, streams);
	return (cmd_run(seconds, warmup));
}
