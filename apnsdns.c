/*
 * The addresses of an app's APNs host: IP literals directly, names
 * through libunbound on the caller's event base, A and AAAA records kept
 * for their TTL.  apns_dns_init() also reads the system CA bundle, as it
 * runs before chroot.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/tree.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event.h>
#include <nghttp2/nghttp2.h>
#include <tls.h>
#include <unbound.h>
#include <unbound-event.h>

#include "monalpushd.h"
#include "apns.h"

#define APNS_DNS_A		1
#define APNS_DNS_AAAA		28
#define APNS_DNS_IN		1

static struct ub_ctx	*apns_ub;
uint8_t			*apns_sysca;	/* read before chroot */
size_t			 apns_syscalen;

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
		h2_connfail(app, "%s: no address found", app->a_host);
		h2_retry_later(app);
		return;
	}
	if (app->a_dnsttl < APNS_DNS_TTL_MIN)
		app->a_dnsttl = APNS_DNS_TTL_MIN;
	app->a_dnsexpire = apns_mono_ms() + app->a_dnsttl * 1000;
	apns_kick(app);
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
void
apns_dns_start(struct apns_app *app)
{
	static const int	 types[2] = { APNS_DNS_A, APNS_DNS_AAAA };
	struct apns_dnsq	*q;
	int			 i, qid;

	if (apns_ub == NULL || (q = calloc(1, sizeof(*q))) == NULL) {
		h2_connfail(app, "%s: %s", app->a_host, apns_ub == NULL ?
		    "no resolver (apns_dns_init)" : strerror(errno));
		h2_retry_later(app);
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

int
apns_dns_literal(struct apns_app *app)
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

