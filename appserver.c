/*
 * The app server of xmppe: what the service answers once a stanza has
 * arrived on an authenticated stream.  Service discovery, ping, the
 * two ad-hoc commands of registered mode and the XEP-0357 publish.
 * Registrations and pushes go to the parent as requests matched by id;
 * many are in flight per stream and are answered in any order.  Only
 * the push decision (alert or background) leaves xmppe: never a body,
 * a sender or a count.
 */

#include <sys/types.h>
#include <sys/tree.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "monalpushd.h"

#define NS_STANZAS	"urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_DISCO_INFO	"http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS	"http://jabber.org/protocol/disco#items"
#define NS_COMMANDS	"http://jabber.org/protocol/commands"
#define NS_PING		"urn:xmpp:ping"
#define NS_PUBSUB	"http://jabber.org/protocol/pubsub"
#define NS_PUSH		"urn:xmpp:push:0"
#define NS_DATA		"jabber:x:data"
#define FORM_REGISTER	\
	"https://github.com/tmolitor-stud-tu/mod_push_appserver/#v1-register-push"
#define FORM_UNREGISTER	\
	"https://github.com/tmolitor-stud-tu/mod_push_appserver/#v1-unregister-push"
#define FORM_PUBOPTS	"http://jabber.org/protocol/pubsub#publish-options"
#define CMD_REGISTER	"v1-register-push"
#define CMD_UNREGISTER	"v1-unregister-push"

#define AS_PENDING_MAX	100000		/* requests waiting for the parent */
#define AS_ID_MAX	256		/* IQ id we echo back */
#define AS_REPLY_MAX	8192		/* one reply stanza */

struct as_pending {
	RB_ENTRY(as_pending)	 ap_entry;
	uint32_t		 ap_reqid;
	uint32_t		 ap_type;	/* IMSG_*_REQ */
	char			 ap_local[DOMAIN_MAX + 1];
	char			 ap_remote[DOMAIN_MAX + 1];
	char			 ap_to[JID_MAX + 1];	/* the IQ's from */
	char			 ap_id[AS_ID_MAX + 1];
	char			 ap_node[NODE_MAX + 1];
	uint64_t		 ap_stream;	/* the request came on it */
};

static int
pending_cmp(struct as_pending *a, struct as_pending *b)
{
	return (a->ap_reqid < b->ap_reqid ? -1 : a->ap_reqid > b->ap_reqid);
}

RB_HEAD(pending_tree, as_pending);
RB_GENERATE(pending_tree, as_pending, ap_entry, pending_cmp)

static struct pending_tree	 as_pending = RB_INITIALIZER(&as_pending);
static size_t			 as_npending;
static uint32_t			 as_nextid = 1;
static struct appserver_stats	 as_stats;

/* The addressing of a reply: from our domain to the IQ's sender. */
struct as_iq {
	uint64_t	 iq_stream;
	const char	*iq_local;
	const char	*iq_remote;
	const char	*iq_from;
	const char	*iq_id;
};

static void
as_send(const struct as_iq *iq, struct xml_buf *xb)
{
	if (xb->xb_error) {
		log_warnx("%s: reply to %s too large or out of memory",
		    __func__, iq->iq_remote);
		return;
	}
	as_stats.as_replies++;
	if (s2s_send_on(iq->iq_stream, iq->iq_local, iq->iq_remote,
	    xb->xb_buf, xb->xb_len) == -1)
		log_warnx("%s: cannot send a reply to %s", __func__,
		    iq->iq_remote);
}

static void
as_iq_open(struct xml_buf *xb, const struct as_iq *iq, const char *type,
    int empty)
{
	xml_buf_init(xb, AS_REPLY_MAX);
	xml_buf_open(xb, "iq", empty, "type", type, "from", iq->iq_local,
	    "to", iq->iq_from, "id", iq->iq_id, (char *)NULL);
}

static void
as_result_empty(const struct as_iq *iq)
{
	struct xml_buf	 xb;

	as_iq_open(&xb, iq, "result", 1);
	as_send(iq, &xb);
	xml_buf_free(&xb);
}

/* An error reply: type is cancel, modify, wait; text may be NULL. */
static void
as_error(const struct as_iq *iq, const char *type, const char *cond,
    const char *text)
{
	struct xml_buf	 xb;

	as_stats.as_errors++;
	as_iq_open(&xb, iq, "error", 0);
	xml_buf_open(&xb, "error", 0, "type", type, (char *)NULL);
	xml_buf_open(&xb, cond, 1, "xmlns", NS_STANZAS, (char *)NULL);
	if (text != NULL) {
		xml_buf_open(&xb, "text", 0, "xmlns", NS_STANZAS,
		    (char *)NULL);
		xml_buf_text(&xb, text);
		xml_buf_close(&xb, "text");
	}
	xml_buf_close(&xb, "error");
	xml_buf_close(&xb, "iq");
	as_send(iq, &xb);
	xml_buf_free(&xb);
}

static struct xml_node *
first_child(const struct xml_node *n)
{
	return (TAILQ_FIRST(&n->xn_children));
}

/*
 * The value of a field of a data form, or NULL.  Repeated fields and
 * values: the first one counts.
 */
static const char *
form_value(const struct xml_node *x, const char *var)
{
	struct xml_node	*f, *v;
	const char	*name;

	TAILQ_FOREACH(f, &x->xn_children, xn_entry) {
		if (strcmp(f->xn_name, "field") != 0 ||
		    (name = xml_node_attr(f, "var")) == NULL ||
		    strcmp(name, var) != 0)
			continue;
		if ((v = xml_node_child(f, NS_DATA, "value")) == NULL)
			return ("");
		return (v->xn_text);
	}
	return (NULL);
}

static struct xml_node *
form_find(const struct xml_node *parent, const char *formtype)
{
	struct xml_node	*x;
	const char	*ft;

	TAILQ_FOREACH(x, &parent->xn_children, xn_entry) {
		if (strcmp(x->xn_ns, NS_DATA) != 0 ||
		    strcmp(x->xn_name, "x") != 0)
			continue;
		ft = form_value(x, "FORM_TYPE");
		if (formtype == NULL || ft == NULL ||
		    strcmp(ft, formtype) == 0)
			return (x);
	}
	return (NULL);
}

static void
as_disco_info(const struct as_iq *iq, const struct xml_node *q)
{
	struct xml_buf	 xb;
	static const char *const features[] = {
		NS_PUSH, NS_DISCO_INFO, NS_COMMANDS, NS_PING
	};
	size_t		 i;

	if (xml_node_attr(q, "node") != NULL) {
		as_error(iq, "cancel", "item-not-found", NULL);
		return;
	}
	as_iq_open(&xb, iq, "result", 0);
	xml_buf_open(&xb, "query", 0, "xmlns", NS_DISCO_INFO, (char *)NULL);
	xml_buf_open(&xb, "identity", 1, "category", "pubsub", "type", "push",
	    "name", "monalpushd", (char *)NULL);
	for (i = 0; i < sizeof(features) / sizeof(features[0]); i++)
		xml_buf_open(&xb, "feature", 1, "var", features[i],
		    (char *)NULL);
	xml_buf_close(&xb, "query");
	xml_buf_close(&xb, "iq");
	as_send(iq, &xb);
	xml_buf_free(&xb);
}

static void
as_disco_items(const struct as_iq *iq, const struct xml_node *q)
{
	struct xml_buf	 xb;
	const char	*node = xml_node_attr(q, "node");

	as_iq_open(&xb, iq, "result", 0);
	xml_buf_open(&xb, "query", 0, "xmlns", NS_DISCO_ITEMS, "node", node,
	    (char *)NULL);
	if (node != NULL && strcmp(node, NS_COMMANDS) == 0) {
		xml_buf_open(&xb, "item", 1, "jid", iq->iq_local, "node",
		    CMD_REGISTER, "name", "Register a device for push",
		    (char *)NULL);
		xml_buf_open(&xb, "item", 1, "jid", iq->iq_local, "node",
		    CMD_UNREGISTER, "name", "Unregister a device",
		    (char *)NULL);
	} else if (node != NULL) {
		xml_buf_free(&xb);
		as_error(iq, "cancel", "item-not-found", NULL);
		return;
	}
	xml_buf_close(&xb, "query");
	xml_buf_close(&xb, "iq");
	as_send(iq, &xb);
	xml_buf_free(&xb);
}

static struct as_pending *
as_pending_new(const struct as_iq *iq, uint32_t type, const char *node)
{
	struct as_pending	*ap;

	if (as_npending >= AS_PENDING_MAX ||
	    (ap = calloc(1, sizeof(*ap))) == NULL)
		return (NULL);
	do {
		ap->ap_reqid = as_nextid++;
	} while (ap->ap_reqid == 0 ||
	    RB_FIND(pending_tree, &as_pending, ap) != NULL);
	ap->ap_type = type;
	strlcpy(ap->ap_local, iq->iq_local, sizeof(ap->ap_local));
	strlcpy(ap->ap_remote, iq->iq_remote, sizeof(ap->ap_remote));
	strlcpy(ap->ap_to, iq->iq_from, sizeof(ap->ap_to));
	strlcpy(ap->ap_id, iq->iq_id, sizeof(ap->ap_id));
	ap->ap_stream = iq->iq_stream;
	if (node != NULL)
		strlcpy(ap->ap_node, node, sizeof(ap->ap_node));
	RB_INSERT(pending_tree, &as_pending, ap);
	as_npending++;
	return (ap);
}

/* user@domain/resource -> user@domain, for the privacy log. */
static void
bare_jid(const char *jid, char *out, size_t len)
{
	char	*p;

	strlcpy(out, jid, len);
	if ((p = strchr(out, '/')) != NULL)
		*p = '\0';
}

static void
as_command(const struct as_iq *iq, const struct xml_node *cmd)
{
	const char		*node = xml_node_attr(cmd, "node");
	const char		*type, *dnode, *token, *app;
	const char		*action = xml_node_attr(cmd, "action");
	struct xml_node		*x;
	struct reg_req		 rq;
	struct as_pending	*ap;
	uint32_t		 imsgtype;
	int			 r;

	if (node == NULL || (strcmp(node, CMD_REGISTER) != 0 &&
	    strcmp(node, CMD_UNREGISTER) != 0)) {
		as_error(iq, "cancel", "item-not-found", "unknown command");
		return;
	}
	if (action != NULL && strcmp(action, "execute") != 0 &&
	    strcmp(action, "complete") != 0) {
		as_error(iq, "modify", "bad-request", "unsupported action");
		return;
	}
	imsgtype = strcmp(node, CMD_REGISTER) == 0 ? IMSG_REG_REQ :
	    IMSG_UNREG_REQ;
	if ((x = form_find(cmd, NULL)) == NULL) {
		as_error(iq, "modify", "bad-request", "missing data form");
		return;
	}
	type = form_value(x, "type");
	dnode = form_value(x, "node");
	token = form_value(x, "token");
	app = form_value(x, "pushModule");
	if (type == NULL || dnode == NULL ||
	    (imsgtype == IMSG_REG_REQ && token == NULL)) {
		as_error(iq, "modify", "bad-request", imsgtype ==
		    IMSG_REG_REQ ? "the form needs type, node and token" :
		    "the form needs type and node");
		return;
	}
	/* Refuse bad input here, with the store's own words. */
	if ((r = registry_check_node(dnode)) != REG_OK ||
	    (imsgtype == IMSG_REG_REQ &&
	    (r = registry_check_token(token)) != REG_OK)) {
		as_error(iq, "modify", "bad-request", registry_strerror(r));
		return;
	}
	if (strcmp(type, REG_TYPE_APNS) != 0) {
		as_error(iq, "modify", "bad-request",
		    registry_strerror(REG_ETYPE));
		return;
	}
	memset(&rq, 0, sizeof(rq));
	bare_jid(iq->iq_from, rq.rq_jid, sizeof(rq.rq_jid));
	strlcpy(rq.rq_domain, iq->iq_remote, sizeof(rq.rq_domain));
	strlcpy(rq.rq_type, type, sizeof(rq.rq_type));
	strlcpy(rq.rq_node, dnode, sizeof(rq.rq_node));
	if (token != NULL)
		strlcpy(rq.rq_token, token, sizeof(rq.rq_token));
	if (app != NULL && strlcpy(rq.rq_app, app, sizeof(rq.rq_app)) >=
	    sizeof(rq.rq_app)) {
		as_error(iq, "modify", "bad-request", "pushModule too long");
		return;
	}
	if ((ap = as_pending_new(iq, imsgtype, dnode)) == NULL) {
		as_error(iq, "wait", "resource-constraint", NULL);
		return;
	}
	proc_compose(mp_ps, PROC_PARENT, imsgtype, ap->ap_reqid, -1, &rq,
	    sizeof(rq));
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return (c - 'a' + 10);
	return (-1);
}

static int
secret_decode(const char *hex, uint8_t *out)
{
	size_t	 i;
	int	 hi, lo;

	if (strlen(hex) != SECRET_HEX)
		return (-1);
	for (i = 0; i < SECRET_LEN; i++) {
		if ((hi = hexval((unsigned char)hex[2 * i])) == -1 ||
		    (lo = hexval((unsigned char)hex[2 * i + 1])) == -1)
			return (-1);
		out[i] = hi << 4 | lo;
	}
	return (0);
}

static void
as_publish(const struct as_iq *iq, const struct xml_node *pubsub)
{
	struct xml_node		*pub, *item, *notif, *summary, *opts, *po;
	const char		*node, *secret, *module;
	struct push_req		 pq;
	struct as_pending	*ap;

	if ((pub = xml_node_child(pubsub, NS_PUBSUB, "publish")) == NULL ||
	    (node = xml_node_attr(pub, "node")) == NULL || *node == '\0') {
		as_error(iq, "modify", "bad-request", "no publish node");
		return;
	}
	if (strlen(node) > TOKEN_MAX) {
		as_error(iq, "cancel", "item-not-found", NULL);
		return;
	}
	memset(&pq, 0, sizeof(pq));
	strlcpy(pq.pq_domain, iq->iq_remote, sizeof(pq.pq_domain));
	bare_jid(iq->iq_from, pq.pq_jid, sizeof(pq.pq_jid));
	strlcpy(pq.pq_node, node, sizeof(pq.pq_node));

	/* The summary decides between alert and background, nothing else. */
	pq.pq_pushtype = PRIO_BACKGROUND;
	if ((item = xml_node_child(pub, NS_PUBSUB, "item")) != NULL &&
	    (notif = xml_node_child(item, NS_PUSH, "notification")) != NULL &&
	    (summary = form_find(notif, "urn:xmpp:push:summary")) != NULL &&
	    form_value(summary, "last-message-body") != NULL)
		pq.pq_pushtype = PRIO_ALERT;

	if ((opts = xml_node_child(pubsub, NS_PUBSUB, "publish-options")) !=
	    NULL && (po = form_find(opts, FORM_PUBOPTS)) != NULL) {
		if ((secret = form_value(po, "secret")) != NULL) {
			if (secret_decode(secret, pq.pq_secret) == -1) {
				as_error(iq, "cancel", "item-not-found", NULL);
				return;
			}
			pq.pq_has_secret = 1;
		}
		if ((module = form_value(po, "pushModule")) != NULL &&
		    strlcpy(pq.pq_app, module, sizeof(pq.pq_app)) >=
		    sizeof(pq.pq_app)) {
			as_error(iq, "cancel", "item-not-found", NULL);
			return;
		}
	}
	if ((ap = as_pending_new(iq, IMSG_PUSH_REQ, NULL)) == NULL) {
		explicit_bzero(&pq, sizeof(pq));
		as_error(iq, "wait", "resource-constraint", NULL);
		return;
	}
	as_stats.as_publishes++;
	proc_compose(mp_ps, PROC_PARENT, IMSG_PUSH_REQ, ap->ap_reqid, -1, &pq,
	    IMSG_TAIL_LEN(&pq, pq_jid));
	explicit_bzero(&pq, sizeof(pq));
}

static void
as_iq(const struct as_iq *iq, const char *type, struct xml_node *stanza)
{
	struct xml_node	*q = first_child(stanza);
	int		 get = strcmp(type, "get") == 0;

	if (q == NULL) {
		as_error(iq, "modify", "bad-request", "empty IQ");
		return;
	}
	if (get && strcmp(q->xn_ns, NS_DISCO_INFO) == 0 &&
	    strcmp(q->xn_name, "query") == 0)
		as_disco_info(iq, q);
	else if (get && strcmp(q->xn_ns, NS_DISCO_ITEMS) == 0 &&
	    strcmp(q->xn_name, "query") == 0)
		as_disco_items(iq, q);
	else if (get && strcmp(q->xn_ns, NS_PING) == 0 &&
	    strcmp(q->xn_name, "ping") == 0)
		as_result_empty(iq);
	else if (!get && strcmp(q->xn_ns, NS_COMMANDS) == 0 &&
	    strcmp(q->xn_name, "command") == 0)
		as_command(iq, q);
	else if (!get && strcmp(q->xn_ns, NS_PUBSUB) == 0 &&
	    strcmp(q->xn_name, "pubsub") == 0)
		as_publish(iq, q);
	else
		as_error(iq, "cancel", "service-unavailable", NULL);
}

void
appserver_stanza(const char *local, const char *remote,
    struct xml_node *stanza)
{
	struct as_iq	 iq;
	const char	*type;

	as_stats.as_stanzas++;
	if (strcmp(stanza->xn_name, "iq") != 0 ||
	    strcmp(stanza->xn_ns, XML_NS_SERVER) != 0) {
		/* Messages and presence to the service are ignored. */
		if (strcmp(stanza->xn_name, "message") == 0)
			appserver_message(local, remote, stanza);
		xml_node_free(stanza);
		return;
	}
	type = xml_node_attr(stanza, "type");
	iq.iq_stream = s2s_current();
	iq.iq_local = local;
	iq.iq_remote = remote;
	iq.iq_from = xml_node_attr(stanza, "from");
	iq.iq_id = xml_node_attr(stanza, "id");
	/* Results and errors are never answered; nor is garbage. */
	if (type == NULL || iq.iq_from == NULL || iq.iq_id == NULL ||
	    strlen(iq.iq_id) > AS_ID_MAX ||
	    (strcmp(type, "get") != 0 && strcmp(type, "set") != 0)) {
		xml_node_free(stanza);
		return;
	}
	as_iq(&iq, type, stanza);
	xml_node_free(stanza);
}

/*
 * The GDPR confirmation (PROTOCOL.md section 6): a message to
 * gdpr@LOCAL from a JID of the authenticated domain.  What its body
 * says goes to the parent, which knows the codes, and nowhere else:
 * never to a log.  Blanks and dashes are dropped and letters raised,
 * so the code may be typed as it was printed or not.
 */
void
appserver_message(const char *local, const char *remote,
    const struct xml_node *stanza)
{
	struct sar_verify	 sv;
	struct xml_node		*body;
	const char		*to, *from, *type, *domain, *p;
	char			 bare[JID_MAX + 1];
	size_t			 n, len;

	to = xml_node_attr(stanza, "to");
	from = xml_node_attr(stanza, "from");
	type = xml_node_attr(stanza, "type");
	if (to == NULL || from == NULL || strlen(to) > JID_MAX ||
	    strlen(from) > JID_MAX || (type != NULL &&
	    strcmp(type, "error") == 0))
		return;
	bare_jid(to, bare, sizeof(bare));
	len = sizeof(SAR_LOCALPART) - 1;
	if (strncasecmp(bare, SAR_LOCALPART "@", len + 1) != 0 ||
	    strcasecmp(bare + len + 1, local) != 0)
		return;
	memset(&sv, 0, sizeof(sv));
	bare_jid(from, sv.sv_jid, sizeof(sv.sv_jid));
	domain = (p = strchr(sv.sv_jid, '@')) != NULL ? p + 1 : sv.sv_jid;
	if (strcasecmp(domain, remote) != 0 ||
	    (body = xml_node_child(stanza, XML_NS_SERVER, "body")) == NULL)
		return;
	/* Too long to be a code: cut, so it cannot match. */
	for (p = body->xn_text, n = 0; *p != '\0' && n < SAR_CODE_MAX; p++)
		if (!isspace((unsigned char)*p) && *p != '-')
			sv.sv_code[n++] = toupper((unsigned char)*p);
	proc_compose(mp_ps, PROC_PARENT, IMSG_SAR_VERIFY, 0, -1, &sv,
	    sizeof(sv));
	explicit_bzero(&sv, sizeof(sv));
}

static void
as_secret_hex(const uint8_t *secret, char *hex)
{
	size_t	 i;

	for (i = 0; i < SECRET_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", secret[i]);
}

static void
as_field(struct xml_buf *xb, const char *var, const char *value)
{
	xml_buf_open(xb, "field", 0, "var", var, (char *)NULL);
	xml_buf_open(xb, "value", 0, (char *)NULL);
	xml_buf_text(xb, value);
	xml_buf_close(xb, "value");
	xml_buf_close(xb, "field");
}

static void
as_reg_reply(struct as_pending *ap, const struct as_iq *iq,
    const struct reg_res *rs)
{
	struct xml_buf	 xb;
	char		 hex[SECRET_HEX + 1], session[17];
	uint8_t		 sid[8];
	size_t		 i;
	int		 reg = ap->ap_type == IMSG_REG_REQ;

	switch (rs->rs_error) {
	case REG_OK:
		break;
	case REG_ENOTFOUND:
	case REG_EWRONGDOMAIN:
		as_error(iq, "cancel", "item-not-found", NULL);
		return;
	case REG_ENOSPC:
	case REG_ENOMEM:
	case REG_EDB:
		as_error(iq, "wait", "internal-server-error", NULL);
		return;
	default:
		as_error(iq, "modify", "bad-request", rs->rs_text);
		return;
	}
	arc4random_buf(sid, sizeof(sid));
	for (i = 0; i < sizeof(sid); i++)
		snprintf(session + 2 * i, 3, "%02x", sid[i]);
	as_iq_open(&xb, iq, "result", 0);
	xml_buf_open(&xb, "command", 0, "xmlns", NS_COMMANDS, "node",
	    reg ? CMD_REGISTER : CMD_UNREGISTER, "status", "complete",
	    "sessionid", session, (char *)NULL);
	xml_buf_open(&xb, "x", 0, "xmlns", NS_DATA, "type", "result",
	    (char *)NULL);
	as_field(&xb, "jid", ap->ap_local);
	as_field(&xb, "node", ap->ap_node);
	if (reg) {
		as_secret_hex(rs->rs_secret, hex);
		as_field(&xb, "secret", hex);
		explicit_bzero(hex, sizeof(hex));
	}
	xml_buf_close(&xb, "x");
	xml_buf_close(&xb, "command");
	xml_buf_close(&xb, "iq");
	as_send(iq, &xb);
	explicit_bzero(xb.xb_buf, xb.xb_len);
	xml_buf_free(&xb);
}

static void
as_push_reply(const struct as_iq *iq, const struct push_res *pr)
{
	switch (pr->ps_outcome) {
	case PUSH_OK:
		as_result_empty(iq);
		break;
	case PUSH_NOT_FOUND:
		as_error(iq, "cancel", "item-not-found", NULL);
		break;
	case PUSH_RESOURCE:
		as_error(iq, "wait", "resource-constraint", NULL);
		break;
	case PUSH_TIMEOUT:
		as_error(iq, "wait", "remote-server-timeout", NULL);
		break;
	default:
		as_error(iq, "wait", "internal-server-error", NULL);
		break;
	}
}

/* The parent's answer to a request; -1 when the type is not ours. */
int
appserver_reply(struct imsg *imsg)
{
	struct as_pending	 find, *ap;
	struct as_iq		 iq;
	struct reg_res		 rs;
	struct push_res		 pr;

	memset(&rs, 0, sizeof(rs));
	memset(&pr, 0, sizeof(pr));
	switch (imsg->hdr.type) {
	case IMSG_REG_RES:
	case IMSG_UNREG_RES:
		IMSG_SIZE_CHECK(imsg, &rs);
		memcpy(&rs, imsg->data, sizeof(rs));
		explicit_bzero(imsg->data, sizeof(rs));
		IMSG_STR_CHECK(rs.rs_text);
		break;
	case IMSG_PUSH_RES:
		IMSG_SIZE_CHECK(imsg, &pr);
		memcpy(&pr, imsg->data, sizeof(pr));
		break;
	default:
		return (-1);
	}
	find.ap_reqid = imsg->hdr.peerid;
	if ((ap = RB_FIND(pending_tree, &as_pending, &find)) == NULL)
		fatalx("%s: answer to unknown request %u", __func__,
		    imsg->hdr.peerid);
	RB_REMOVE(pending_tree, &as_pending, ap);
	as_npending--;
	iq.iq_stream = ap->ap_stream;
	iq.iq_local = ap->ap_local;
	iq.iq_remote = ap->ap_remote;
	iq.iq_from = ap->ap_to;
	iq.iq_id = ap->ap_id;
	if (imsg->hdr.type == IMSG_PUSH_RES)
		as_push_reply(&iq, &pr);
	else
		as_reg_reply(ap, &iq, &rs);
	explicit_bzero(&rs, sizeof(rs));
	free(ap);
	return (0);
}

void
appserver_getstats(struct appserver_stats *st)
{
	*st = as_stats;
	st->as_pending = as_npending;
}
