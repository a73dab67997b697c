/*
 * The app server without streams: stanzas parsed by xml.c go into
 * appserver_stanza(), requests to the parent and replies to the peer
 * are captured by stand-ins for proc_compose() and s2s_send().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../appserver.c"
#include "regress.h"

static struct privsep	 test_ps;
struct privsep		*mp_ps = &test_ps;

static char		 out[65536];	/* the last reply sent */
static int		 nout;
static uint32_t		 req_type, req_id;
static union {
	struct reg_req	 rq;
	struct push_req	 pq;
}			 req;
static int		 nreq;

int
proc_compose(struct privsep *ps, enum mp_proc peer, uint32_t type,
    uint32_t peerid, int fd, const void *data, size_t len)
{
	req_type = type;
	req_id = peerid;
	memset(&req, 0, sizeof(req));
	memcpy(&req, data, len < sizeof(req) ? len : sizeof(req));
	nreq++;
	return (0);
}

uint64_t
s2s_current(void)
{
	return (7);
}

int
s2s_send_on(uint64_t stream, const char *local, const char *remote,
    const char *buf, size_t len)
{
	if (stream != 7)
		printf("# reply not on the request's stream\n");
	if (len >= sizeof(out))
		len = sizeof(out) - 1;
	memcpy(out, buf, len);
	out[len] = '\0';
	nout++;
	return (0);
}

static void
cb_open(void *arg, const struct xml_node *n)
{
}

static void
cb_stanza(void *arg, struct xml_node *n)
{
	appserver_stanza("push.localhost", "example.test", n);
}

static void
cb_close(void *arg)
{
}

static void
cb_error(void *arg, enum xml_error e, const char *msg)
{
	printf("# xml error %s: %s\n", xml_error_condition(e), msg);
}

static struct xml_stream *xs;

static void
feed(const char *stanza)
{
	out[0] = '\0';
	nout = 0;
	nreq = 0;
	if (xml_stream_feed(xs, stanza, strlen(stanza)) == -1)
		printf("# feed failed\n");
}

static int
has(const char *s)
{
	return (strstr(out, s) != NULL);
}

static void
reply(uint32_t type, const void *data, size_t len)
{
	struct imsg	 imsg;

	memset(&imsg, 0, sizeof(imsg));
	imsg.hdr.type = type;
	imsg.hdr.len = IMSG_HEADER_SIZE + len;
	imsg.hdr.peerid = req_id;
	imsg.fd = -1;
	imsg.data = malloc(len);
	memcpy(imsg.data, data, len);
	out[0] = '\0';
	nout = 0;
	if (appserver_reply(&imsg) != 0)
		printf("# appserver_reply refused type %u\n", type);
	free(imsg.data);
}

#define TOKEN64	"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define SECRET	"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

static const char *
register_iq(const char *id, const char *node, const char *token,
    const char *type)
{
	static char	 buf[4096];

	snprintf(buf, sizeof(buf),
	    "<iq type='set' from='user@example.test/monal' to='push.localhost'"
	    " id='%s'><command xmlns='http://jabber.org/protocol/commands'"
	    " node='v1-register-push' action='execute'>"
	    "<x xmlns='jabber:x:data' type='submit'>"
	    "<field var='FORM_TYPE'><value>" FORM_REGISTER "</value></field>"
	    "<field var='type'><value>%s</value></field>"
	    "<field var='node'><value>%s</value></field>"
	    "<field var='token'><value>%s</value></field>"
	    "</x></command></iq>", id, type, node, token);
	return (buf);
}

static const char *
publish_iq(const char *id, const char *node, const char *secret,
    const char *module, int body)
{
	static char	 buf[4096];
	char		 opts[512] = "";

	if (secret != NULL)
		snprintf(opts, sizeof(opts), "<field var='secret'><value>%s"
		    "</value></field>", secret);
	if (module != NULL)
		snprintf(opts + strlen(opts), sizeof(opts) - strlen(opts),
		    "<field var='pushModule'><value>%s</value></field>",
		    module);
	snprintf(buf, sizeof(buf),
	    "<iq type='set' from='example.test' to='push.localhost' id='%s'>"
	    "<pubsub xmlns='http://jabber.org/protocol/pubsub'>"
	    "<publish node='%s'><item>"
	    "<notification xmlns='urn:xmpp:push:0'>"
	    "<x xmlns='jabber:x:data' type='submit'>"
	    "<field var='FORM_TYPE'><value>urn:xmpp:push:summary</value></field>"
	    "<field var='message-count'><value>1</value></field>"
	    "%s</x></notification></item></publish>"
	    "<publish-options><x xmlns='jabber:x:data' type='submit'>"
	    "<field var='FORM_TYPE'><value>" FORM_PUBOPTS "</value></field>"
	    "%s</x></publish-options></pubsub></iq>", id, node,
	    body ? "<field var='last-message-body'><value>Secret words"
	    "</value></field>" : "", opts);
	return (buf);
}

int
main(void)
{
	struct xml_limits	 xl = { 65536, 32, 32 };
	struct xml_stream_cb	 cb = { cb_open, cb_stanza, cb_close,
				    cb_error };
	struct reg_res		 rs;
	struct push_res		 pr;
	const char		*hdr = "<stream:stream xmlns='jabber:server' "
	    "xmlns:stream='http://etherx.jabber.org/streams' "
	    "xmlns:db='jabber:server:dialback' to='push.localhost' "
	    "from='example.test' version='1.0'>";

	log_init(1, 0);
	xs = xml_stream_new(&xl, &cb, NULL);
	xml_stream_feed(xs, hdr, strlen(hdr));

	/* Service discovery and ping. */
	feed("<iq type='get' from='example.test' to='push.localhost' id='d1'>"
	    "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
	CHECK(has("type='result'") && has("id='d1'") &&
	    has("category='pubsub'") && has("type='push'"),
	    "disco#info: pubsub/push identity");
	CHECK(has("var='urn:xmpp:push:0'") &&
	    has("var='http://jabber.org/protocol/disco#info'") &&
	    has("var='http://jabber.org/protocol/commands'") &&
	    has("var='urn:xmpp:ping'"), "disco#info: the four features");
	CHECK(has("to='example.test'") && has("from='push.localhost'"),
	    "replies are addressed from our domain to the sender");
	feed("<iq type='get' from='example.test' to='push.localhost' id='d2'>"
	    "<query xmlns='http://jabber.org/protocol/disco#items' "
	    "node='http://jabber.org/protocol/commands'/></iq>");
	CHECK(has("node='v1-register-push'") && has("node='v1-unregister-push'"),
	    "disco#items lists the two commands");
	feed("<iq type='get' from='example.test' to='push.localhost' id='p1'>"
	    "<ping xmlns='urn:xmpp:ping'/></iq>");
	CHECK(nout == 1 && has("type='result'") && has("id='p1'"),
	    "ping: empty result");

	/* Unknown payloads, results and errors. */
	feed("<iq type='get' from='example.test' to='push.localhost' id='u1'>"
	    "<query xmlns='jabber:iq:version'/></iq>");
	CHECK(has("type='error'") && has("<service-unavailable"),
	    "unknown payload: service-unavailable");
	feed("<iq type='result' from='example.test' to='push.localhost' "
	    "id='r1'/>");
	CHECK(nout == 0, "IQ result: never answered");
	feed("<iq type='error' from='example.test' to='push.localhost' "
	    "id='r2'><error type='cancel'/></iq>");
	CHECK(nout == 0, "IQ error: never answered");
	feed("<message from='user@example.test' to='push.localhost'>"
	    "<body>hi</body></message><presence from='example.test'/>");
	CHECK(nout == 0 && nreq == 0, "message and presence ignored");

	/* Registration through the parent. */
	feed(register_iq("reg1", "dev-1", TOKEN64, "apns"));
	CHECK(nout == 0 && nreq == 1 && req_type == IMSG_REG_REQ,
	    "register: one request to the parent, no reply yet");
	CHECK(strcmp(req.rq.rq_node, "dev-1") == 0 &&
	    strcmp(req.rq.rq_token, TOKEN64) == 0 &&
	    strcmp(req.rq.rq_domain, "example.test") == 0 &&
	    strcmp(req.rq.rq_jid, "user@example.test") == 0,
	    "register: node, token, domain and the bare JID");
	memset(&rs, 0, sizeof(rs));
	memset(rs.rs_secret, 0xab, sizeof(rs.rs_secret));
	reply(IMSG_REG_RES, &rs, sizeof(rs));
	CHECK(has("type='result'") && has("id='reg1'") &&
	    has("status='complete'") && has("node='v1-register-push'"),
	    "register: result with status='complete'");
	CHECK(has("<value>push.localhost</value>") &&
	    has("<value>dev-1</value>") &&
	    has("<value>abababababababababababababababababababababababababababababababab</value>"),
	    "register: jid, node and the hex secret");
	CHECK(has("to='user@example.test/monal'"),
	    "register: reply goes to the full JID");

	feed(register_iq("reg2", "bad node!", TOKEN64, "apns"));
	CHECK(nreq == 0 && has("<bad-request") && has("type='modify'"),
	    "register: bad node is modify/bad-request");
	feed(register_iq("reg3", "dev-2", "abc", "apns"));
	CHECK(nreq == 0 && has("<bad-request") && has("<text"),
	    "register: bad token is bad-request with a text");
	feed(register_iq("reg4", "dev-2", TOKEN64, "gcm"));
	CHECK(nreq == 0 && has("<bad-request"), "register: type must be apns");
	feed("<iq type='set' from='u@example.test/r' to='push.localhost' "
	    "id='reg5'><command xmlns='http://jabber.org/protocol/commands' "
	    "node='v1-register-push' action='execute'/></iq>");
	CHECK(nreq == 0 && has("<bad-request"), "register: missing form");
	feed("<iq type='set' from='u@example.test/r' to='push.localhost' "
	    "id='c1'><command xmlns='http://jabber.org/protocol/commands' "
	    "node='something-else' action='execute'/></iq>");
	CHECK(has("<item-not-found"), "unknown command: item-not-found");

	/* Unregister: the form has no token. */
	feed("<iq type='set' from='u@example.test/r' to='push.localhost' "
	    "id='un1'><command xmlns='http://jabber.org/protocol/commands' "
	    "node='v1-unregister-push' action='execute'>"
	    "<x xmlns='jabber:x:data' type='submit'>"
	    "<field var='type'><value>apns</value></field>"
	    "<field var='node'><value>dev-1</value></field></x></command></iq>");
	CHECK(nreq == 1 && req_type == IMSG_UNREG_REQ,
	    "unregister: no token needed");
	memset(&rs, 0, sizeof(rs));
	rs.rs_error = REG_ENOTFOUND;
	reply(IMSG_UNREG_RES, &rs, sizeof(rs));
	CHECK(has("type='cancel'") && has("<item-not-found"),
	    "unregister of an unknown node: cancel/item-not-found");

	/* Publish: the decision crosses, the body does not. */
	feed(publish_iq("pub1", "dev-1", SECRET, NULL, 1));
	CHECK(nreq == 1 && req_type == IMSG_PUSH_REQ &&
	    req.pq.pq_has_secret && req.pq.pq_pushtype == PRIO_ALERT &&
	    strcmp(req.pq.pq_node, "dev-1") == 0 &&
	    req.pq.pq_secret[0] == 0x00 && req.pq.pq_secret[1] == 0x11,
	    "publish with a body: alert, node and the decoded secret");
	CHECK(memmem(&req, sizeof(req), "Secret words", 12) == NULL,
	    "publish: the message body does not reach the parent");
	memset(&pr, 0, sizeof(pr));
	pr.ps_outcome = PUSH_OK;
	reply(IMSG_PUSH_RES, &pr, sizeof(pr));
	CHECK(has("type='result'") && has("id='pub1'"), "publish: result");

	feed(publish_iq("pub2", "dev-1", SECRET, NULL, 0));
	CHECK(req.pq.pq_pushtype == PRIO_BACKGROUND,
	    "publish without a body: background");
	pr.ps_outcome = PUSH_NOT_FOUND;
	reply(IMSG_PUSH_RES, &pr, sizeof(pr));
	CHECK(has("type='cancel'") && has("<item-not-found"),
	    "publish, unknown node: cancel/item-not-found");
	feed(publish_iq("pub3", "dev-1", SECRET, NULL, 0));
	pr.ps_outcome = PUSH_TIMEOUT;
	reply(IMSG_PUSH_RES, &pr, sizeof(pr));
	CHECK(has("type='wait'") && has("<remote-server-timeout"),
	    "publish, APNs unreachable: wait/remote-server-timeout");
	feed(publish_iq("pub4", "dev-1", SECRET, NULL, 0));
	pr.ps_outcome = PUSH_RESOURCE;
	reply(IMSG_PUSH_RES, &pr, sizeof(pr));
	CHECK(has("type='wait'") && has("<resource-constraint"),
	    "publish, queue full: wait/resource-constraint");
	feed(publish_iq("pub5", "dev-1", SECRET, NULL, 0));
	pr.ps_outcome = PUSH_INTERNAL;
	reply(IMSG_PUSH_RES, &pr, sizeof(pr));
	CHECK(has("type='wait'") && has("<internal-server-error"),
	    "publish, operator error: wait/internal-server-error");
	feed(publish_iq("pub6", "dev-1", "nothex", NULL, 0));
	CHECK(nreq == 0 && has("<item-not-found"),
	    "publish with a malformed secret: item-not-found");
	feed(publish_iq("pub7", TOKEN64, NULL, "monalProdiOS", 1));
	CHECK(nreq == 1 && !req.pq.pq_has_secret &&
	    strcmp(req.pq.pq_app, "monalProdiOS") == 0,
	    "token mode publish: pushModule names the app");

	/* Many in flight, answered in any order. */
	{
		uint32_t	 ids[3];
		int		 i;

		for (i = 0; i < 3; i++) {
			char	 id[16];

			snprintf(id, sizeof(id), "m%d", i);
			feed(publish_iq(id, "dev-1", SECRET, NULL, 0));
			ids[i] = req_id;
		}
		pr.ps_outcome = PUSH_OK;
		req_id = ids[2];
		reply(IMSG_PUSH_RES, &pr, sizeof(pr));
		CHECK(has("id='m2'"), "third answered first");
		req_id = ids[0];
		reply(IMSG_PUSH_RES, &pr, sizeof(pr));
		CHECK(has("id='m0'"), "then the first");
		req_id = ids[1];
		reply(IMSG_PUSH_RES, &pr, sizeof(pr));
		CHECK(has("id='m1'"), "then the second");
	}

	/* Escaping: an id with quotes cannot break out of the attribute. */
	feed("<iq type='get' from='example.test' to='push.localhost' "
	    "id='x&apos;&lt;y'><ping xmlns='urn:xmpp:ping'/></iq>");
	CHECK(has("id='x&apos;&lt;y'"), "IQ id is escaped in the reply");

	xml_stream_free(xs);
	REGRESS_EXIT();
}
