/*
 * Asynchronous DNS for the outbound s2s streams: libunbound on the
 * process's event base.  SRV lookups for _xmpps-server (XEP-0368) and
 * _xmpp-server, A and AAAA for the targets.  Answers are handed over
 * from a zero timeout, never from inside the call that asked: unbound
 * answers /etc/hosts data before ub_resolve_event() returns.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unbound.h>
#include <unbound-event.h>

#include "monalpushd.h"

#define DNS_T_A		1
#define DNS_T_AAAA	28
#define DNS_T_SRV	33
#define DNS_C_IN	1
#define DNS_HDR_LEN	12
#define DNS_PTR_MAX	32	/* compression pointers followed per name */

struct dns_req;

struct dns_sub {
	struct dns_req	*ds_req;
	int		 ds_type;
	int		 ds_tls;		/* SRV: _xmpps-server */
	int		 ds_rcode;
	int		 ds_pending;
};

struct dns_req {
	int		 dr_kind;		/* DNS_SRV or DNS_ADDR */
	int		 dr_cancelled;
	int		 dr_pending;		/* unbound queries out */
	int		 dr_nsub;
	struct dns_sub	 dr_sub[2];
	uint16_t	 dr_port;
	struct dns_srv	 dr_srv[S2S_TARGETS_MAX];
	int		 dr_nsrv;
	int		 dr_nodot;		/* "." target: no service */
	struct sockaddr_storage dr_addr[S2S_ADDRS_MAX];
	int		 dr_naddr;
	void		(*dr_srvcb)(void *, struct dns_srv *, int);
	void		(*dr_addrcb)(void *, struct sockaddr_storage *, int);
	void		*dr_arg;
};
#define DNS_SRV		1
#define DNS_ADDR	2

static struct ub_ctx	*dns_ub;
static struct event_base *dns_base;

static void	 dns_answer(void *, int, void *, int, int, char *, int);
static void	 dns_deliver(int, short, void *);
static void	 dns_done(struct dns_req *);
static int	 dns_name(const uint8_t *, size_t, size_t *, char *, size_t);

int
dns_init(struct event_base *base)
{
	dns_base = base;
	if ((dns_ub = ub_ctx_create_event(base)) == NULL) {
		log_warnx("%s: ub_ctx_create_event failed", __func__);
		return (-1);
	}
	if (ub_ctx_resolvconf(dns_ub, NULL) != 0)
		log_warnx("%s: cannot read resolv.conf", __func__);
	if (ub_ctx_hosts(dns_ub, NULL) != 0)
		log_warnx("%s: cannot read hosts", __func__);
	return (0);
}

/*
 * unbound answers NXDOMAIN for the names RFC 6761 reserves (test. and
 * others) unless told otherwise; libunbound takes options only until its
 * first query, so a change on reload needs a restart.
 */
void
dns_zones(const struct mp_conf *conf, int first)
{
	char	 zone[DOMAIN_MAX + 2 + sizeof(" transparent")];
	int	 i;

	for (i = 0; i < DNS_ZONES_MAX && conf->c_dns_zones[i][0] != '\0';
	    i++) {
		if (!first) {
			log_warnx("dns transparent zone %s: takes effect at "
			    "the next start", conf->c_dns_zones[i]);
			continue;
		}
		snprintf(zone, sizeof(zone), "%s%s transparent",
		    conf->c_dns_zones[i],
		    conf->c_dns_zones[i][strlen(conf->c_dns_zones[i]) - 1] ==
		    '.' ? "" : ".");
		if (ub_ctx_set_option(dns_ub, "local-zone:", zone) != 0)
			log_warnx("%s: cannot make %s resolvable", __func__,
			    conf->c_dns_zones[i]);
	}
}

static struct dns_req *
dns_req_new(int kind, void *arg)
{
	struct dns_req	*r;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return (NULL);
	r->dr_kind = kind;
	r->dr_arg = arg;
	return (r);
}

static int
dns_ask(struct dns_req *r, const char *name, int type, int tls)
{
	struct dns_sub	*s = &r->dr_sub[r->dr_nsub++];

	s->ds_req = r;
	s->ds_type = type;
	s->ds_tls = tls;
	s->ds_pending = 1;
	r->dr_pending++;
	if (dns_ub == NULL || ub_resolve_event(dns_ub, name, type, DNS_C_IN,
	    s, dns_answer, NULL) != 0) {
		s->ds_pending = 0;
		s->ds_rcode = -1;
		r->dr_pending--;
		return (-1);
	}
	return (0);
}

struct dns_req *
dns_lookup_srv(const char *domain,
    void (*cb)(void *, struct dns_srv *, int), void *arg)
{
	struct dns_req	*r;
	char		 name[DOMAIN_MAX + 32];

	if ((r = dns_req_new(DNS_SRV, arg)) == NULL)
		return (NULL);
	r->dr_srvcb = cb;
	r->dr_pending = 1;	/* held while asking: answers may come at once */
	snprintf(name, sizeof(name), "_xmpps-server._tcp.%s", domain);
	(void)dns_ask(r, name, DNS_T_SRV, 1);
	snprintf(name, sizeof(name), "_xmpp-server._tcp.%s", domain);
	(void)dns_ask(r, name, DNS_T_SRV, 0);
	if (--r->dr_pending == 0)
		dns_done(r);
	return (r);
}

struct dns_req *
dns_lookup_addr(const char *host, uint16_t port,
    void (*cb)(void *, struct sockaddr_storage *, int), void *arg)
{
	struct dns_req		*r;
	struct sockaddr_in	*sin;
	struct sockaddr_in6	*sin6;

	if ((r = dns_req_new(DNS_ADDR, arg)) == NULL)
		return (NULL);
	r->dr_addrcb = cb;
	r->dr_port = port;
	r->dr_pending = 1;
	sin = (struct sockaddr_in *)&r->dr_addr[0];
	sin6 = (struct sockaddr_in6 *)&r->dr_addr[0];
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		r->dr_naddr = 1;
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		r->dr_naddr = 1;
	} else {
		(void)dns_ask(r, host, DNS_T_AAAA, 0);
		(void)dns_ask(r, host, DNS_T_A, 0);
	}
	if (--r->dr_pending == 0)
		dns_done(r);
	return (r);
}

/* The callback is not called after this; the request frees itself. */
void
dns_cancel(struct dns_req *r)
{
	if (r != NULL)
		r->dr_cancelled = 1;
}

static void
dns_done(struct dns_req *r)
{
	struct timeval	 tv = { 0, 0 };

	if (event_base_once(dns_base, -1, EV_TIMEOUT, dns_deliver, r,
	    &tv) == -1)
		fatalx("%s: event_base_once", __func__);
}

static int
dns_srv_cmp(const void *a, const void *b)
{
	const struct dns_srv	*x = a, *y = b;

	if (x->dv_tls != y->dv_tls)
		return (y->dv_tls - x->dv_tls);
	if (x->dv_prio != y->dv_prio)
		return (x->dv_prio - y->dv_prio);
	return (y->dv_weight - x->dv_weight);
}

static void
dns_deliver(int fd, short ev, void *arg)
{
	struct dns_req	*r = arg;

	if (!r->dr_cancelled) {
		if (r->dr_kind == DNS_SRV) {
			qsort(r->dr_srv, r->dr_nsrv, sizeof(r->dr_srv[0]),
			    dns_srv_cmp);
			r->dr_srvcb(r->dr_arg, r->dr_srv,
			    r->dr_nsrv == 0 && r->dr_nodot ? -1 : r->dr_nsrv);
		} else
			r->dr_addrcb(r->dr_arg, r->dr_addr, r->dr_naddr);
	}
	free(r);
}

static uint16_t
get16(const uint8_t *p)
{
	return ((uint16_t)p[0] << 8 | p[1]);
}

/* Reads a possibly compressed name at *off; *off moves past it. */
static int
dns_name(const uint8_t *pkt, size_t len, size_t *off, char *out,
    size_t outlen)
{
	size_t	 o = *off, n = 0, end = 0;
	int	 ptrs = 0, l;

	for (;;) {
		if (o >= len)
			return (-1);
		l = pkt[o];
		if ((l & 0xc0) == 0xc0) {
			if (o + 1 >= len || ++ptrs > DNS_PTR_MAX)
				return (-1);
			if (end == 0)
				end = o + 2;
			o = (size_t)(l & 0x3f) << 8 | pkt[o + 1];
			continue;
		}
		if (l & 0xc0)
			return (-1);
		o++;
		if (l == 0)
			break;
		if (o + l > len || n + l + 2 > outlen)
			return (-1);
		if (n > 0)
			out[n++] = '.';
		memcpy(out + n, pkt + o, l);
		n += l;
		o += l;
	}
	if (outlen == 0)
		return (-1);
	out[n] = '\0';
	*off = end ? end : o;
	return (0);
}

static void
dns_parse(struct dns_req *r, struct dns_sub *s, const uint8_t *pkt,
    size_t len)
{
	char			 name[DOMAIN_MAX + 1];
	size_t			 off = DNS_HDR_LEN;
	uint16_t		 qd, an, type, class, rdlen;
	struct dns_srv		*v;
	struct sockaddr_in	*sin;
	struct sockaddr_in6	*sin6;

	if (len < DNS_HDR_LEN)
		return;
	qd = get16(pkt + 4);
	an = get16(pkt + 6);
	while (qd-- > 0) {
		if (dns_name(pkt, len, &off, name, sizeof(name)) == -1 ||
		    off + 4 > len)
			return;
		off += 4;
	}
	while (an-- > 0) {
		if (dns_name(pkt, len, &off, name, sizeof(name)) == -1 ||
		    off + 10 > len)
			return;
		type = get16(pkt + off);
		class = get16(pkt + off + 2);
		rdlen = get16(pkt + off + 8);
		off += 10;
		if (off + rdlen > len)
			return;
		if (class != DNS_C_IN || type != s->ds_type) {
			off += rdlen;
			continue;
		}
		if (type == DNS_T_SRV && rdlen > 6 &&
		    r->dr_nsrv < S2S_TARGETS_MAX) {
			v = &r->dr_srv[r->dr_nsrv];
			v->dv_prio = get16(pkt + off);
			v->dv_weight = get16(pkt + off + 2);
			v->dv_port = get16(pkt + off + 4);
			v->dv_tls = s->ds_tls;
			off += 6;
			if (dns_name(pkt, len, &off, v->dv_host,
			    sizeof(v->dv_host)) == -1)
				return;
			if (v->dv_host[0] == '\0')
				r->dr_nodot = 1;
			else
				r->dr_nsrv++;
			continue;
		}
		if (type == DNS_T_A && rdlen == 4 &&
		    r->dr_naddr < S2S_ADDRS_MAX) {
			sin = (struct sockaddr_in *)&r->dr_addr[r->dr_naddr++];
			sin->sin_family = AF_INET;
			sin->sin_port = htons(r->dr_port);
			memcpy(&sin->sin_addr, pkt + off, 4);
		} else if (type == DNS_T_AAAA && rdlen == 16 &&
		    r->dr_naddr < S2S_ADDRS_MAX) {
			sin6 = (struct sockaddr_in6 *)
			    &r->dr_addr[r->dr_naddr++];
			sin6->sin6_family = AF_INET6;
			sin6->sin6_port = htons(r->dr_port);
			memcpy(&sin6->sin6_addr, pkt + off, 16);
		}
		off += rdlen;
	}
}

static void
dns_answer(void *arg, int rcode, void *pkt, int len, int sec, char *bogus,
    int ratelimited)
{
	struct dns_sub	*s = arg;
	struct dns_req	*r = s->ds_req;

	s->ds_pending = 0;
	s->ds_rcode = rcode;
	if (sec == 1)
		log_warnx("%s: bogus DNSSEC answer ignored", __func__);
	else if (rcode == 0 && pkt != NULL && len > 0 && !r->dr_cancelled)
		dns_parse(r, s, pkt, len);
	if (--r->dr_pending == 0)
		dns_done(r);
}
