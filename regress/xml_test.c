/*
 * The XML layer: stream header, stanza trees fed in any split, the
 * refused constructs (DTD, entities, PI, comments), the bounds, resets
 * and frees from inside callbacks, and the escaping writer.
 */

#include <sys/types.h>
#include <sys/queue.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "monalpushd.h"
#include "regress.h"

#define LOG_MAX		(256 * 1024)
#define TEST_STANZA_MAX	1024
#define TEST_DEPTH_MAX	32
#define TEST_ATTRS_MAX	32
#define QUICK_SEC	1.0	/* a refused attack must cost less than this */

#define HDR								\
	"<?xml version='1.0'?>"						\
	"<stream:stream xmlns='jabber:server' "				\
	"xmlns:stream='http://etherx.jabber.org/streams' "		\
	"xmlns:db='jabber:server:dialback' from='example.com' "		\
	"to='push.example.org' version='1.0' xml:lang='en'>"

enum act { ACT_NONE, ACT_FREE_STANZA, ACT_RESET_STANZA, ACT_FREE_OPEN,
	ACT_FREE_ERROR, ACT_FREE_CLOSE };

struct rec {
	struct xml_stream	*r_xs;
	char			*r_log;
	size_t			 r_len;
	int			 r_open;
	int			 r_stanza;
	int			 r_close;
	int			 r_error;
	enum xml_error		 r_err;
	enum act		 r_act;
	int			 r_freed;
	struct xml_node		*r_last;	/* kept when r_keep */
	int			 r_keep;
	struct xml_buf		*r_out;		/* stanzas written back */
};

static void
rlog(struct rec *r, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(r->r_log + r->r_len, LOG_MAX - r->r_len, fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < LOG_MAX - r->r_len)
		r->r_len += n;
}

static void
dump(struct rec *r, const struct xml_node *n)
{
	const struct xml_node	*c;
	int			 i;

	rlog(r, "{%s}%s[", n->xn_ns, n->xn_name);
	for (i = 0; i < n->xn_nattrs; i++)
		rlog(r, "{%s}%s=%s;", n->xn_attrs[i].xa_ns,
		    n->xn_attrs[i].xa_name, n->xn_attrs[i].xa_value);
	rlog(r, "](%zu:%s)<", n->xn_textlen, n->xn_text);
	TAILQ_FOREACH(c, &n->xn_children, xn_entry)
		dump(r, c);
	rlog(r, ">");
}

static void
cb_open(void *arg, const struct xml_node *n)
{
	struct rec	*r = arg;

	r->r_open++;
	rlog(r, "OPEN ");
	dump(r, n);
	rlog(r, "\n");
	if (r->r_act == ACT_FREE_OPEN) {
		xml_stream_free(r->r_xs);
		r->r_freed = 1;
	}
}

static void
cb_stanza(void *arg, struct xml_node *n)
{
	struct rec	*r = arg;

	r->r_stanza++;
	rlog(r, "STANZA ");
	dump(r, n);
	rlog(r, "\n");
	if (r->r_out != NULL)
		xml_buf_node(r->r_out, n);
	if (r->r_keep) {
		xml_node_free(r->r_last);
		r->r_last = n;
	} else
		xml_node_free(n);
	if (r->r_act == ACT_FREE_STANZA) {
		xml_stream_free(r->r_xs);
		r->r_freed = 1;
	} else if (r->r_act == ACT_RESET_STANZA)
		xml_stream_reset(r->r_xs);
}

static void
cb_close(void *arg)
{
	struct rec	*r = arg;

	r->r_close++;
	rlog(r, "CLOSE\n");
	if (r->r_act == ACT_FREE_CLOSE) {
		xml_stream_free(r->r_xs);
		r->r_freed = 1;
	}
}

static void
cb_error(void *arg, enum xml_error e, const char *msg)
{
	struct rec	*r = arg;

	r->r_error++;
	r->r_err = e;
	rlog(r, "ERROR %s\n", xml_error_condition(e));
	if (r->r_act == ACT_FREE_ERROR) {
		xml_stream_free(r->r_xs);
		r->r_freed = 1;
	}
}

static const struct xml_stream_cb cbs = {
	cb_open, cb_stanza, cb_close, cb_error
};

static void
rec_init(struct rec *r, size_t stanza_max)
{
	struct xml_limits	 xl;

	memset(r, 0, sizeof(*r));
	if ((r->r_log = calloc(1, LOG_MAX)) == NULL)
		abort();
	xl.xl_stanza_max = stanza_max;
	xl.xl_depth_max = TEST_DEPTH_MAX;
	xl.xl_attrs_max = TEST_ATTRS_MAX;
	if ((r->r_xs = xml_stream_new(&xl, &cbs, r)) == NULL)
		abort();
}

static void
rec_done(struct rec *r)
{
	if (!r->r_freed)
		xml_stream_free(r->r_xs);
	xml_node_free(r->r_last);
	free(r->r_log);
}

/* Feed in pieces of step bytes (0: all at once); last feed's result. */
static int
feed(struct rec *r, const char *s, size_t len, size_t step)
{
	size_t	 off, n;
	int	 rv = 0;

	if (step == 0)
		step = len;
	for (off = 0; off < len && !r->r_freed; off += n) {
		n = len - off < step ? len - off : step;
		if ((rv = xml_stream_feed(r->r_xs, s + off, n)) == -1)
			break;
	}
	return (rv);
}

/* Run one document; returns its log (malloc'd) and the record's counts. */
static char *
run(const char *doc, size_t len, size_t step, size_t stanza_max,
    struct rec *out)
{
	struct rec	 r;
	char		*log;

	rec_init(&r, stanza_max);
	feed(&r, doc, len, step);
	log = strdup(r.r_log);
	if (out != NULL) {
		*out = r;
		out->r_log = NULL;
	}
	rec_done(&r);
	return (log);
}

static enum xml_error
run_error(const char *doc, size_t stanza_max, int *nerrors)
{
	struct rec	 r;

	free(run(doc, strlen(doc), 0, stanza_max, &r));
	if (nerrors != NULL)
		*nerrors = r.r_error;
	return (r.r_error ? r.r_err : XMLE_NONE);
}

static const char stanzas[] =
	"<db:result from='example.com' to='push.example.org'>"
	"0123abcd</db:result>\n "
	"<iq type='set' from='example.com' to='push.example.org' id='p1'>"
	"<pubsub xmlns='http://jabber.org/protocol/pubsub'>"
	"<publish node='0AB3-77'><item>"
	"<notification xmlns='urn:xmpp:push:0'>"
	"<x xmlns='jabber:x:data' type='submit'>"
	"<field var='FORM_TYPE'><value>urn:xmpp:push:summary</value></field>"
	"<field var='message-count'><value>1</value></field>"
	"<field var='last-message-body'><value>New Message!</value></field>"
	"</x></notification></item></publish>"
	"<publish-options><x xmlns='jabber:x:data' type='submit'>"
	"<field var='FORM_TYPE'><value>"
	"http://jabber.org/protocol/pubsub#publish-options</value></field>"
	"<field var='secret'><value>s3cr3t</value></field>"
	"</x></publish-options></pubsub></iq>\r\n\t"
	"<message from='a@example.com' to='gdpr@push.example.org' "
	"xml:lang='de' type=\"chat\"><body>a &amp; b &lt; c &#65;&#x263A;"
	" &gt;&quot;&apos;<![CDATA[<not> &amp; markup]]></body>"
	"<x xmlns='urn:test' xmlns:t='urn:t' t:attr='v'/></message>"
	" ";

static void
test_trees(void)
{
	char		*doc, *all, *one, *seven;
	struct rec	 r;
	size_t		 len;

	if (asprintf(&doc, "%s%s</stream:stream>", HDR, stanzas) == -1)
		abort();
	len = strlen(doc);
	all = run(doc, len, 0, STANZA_MAX_DEFAULT, &r);
	CHECK(r.r_open == 1 && r.r_stanza == 3 && r.r_close == 1 &&
	    r.r_error == 0, "one feed: header, 3 stanzas, close, no error "
	    "(%d %d %d %d)", r.r_open, r.r_stanza, r.r_close, r.r_error);
	one = run(doc, len, 1, STANZA_MAX_DEFAULT, &r);
	CHECK(strcmp(all, one) == 0 && r.r_error == 0,
	    "byte by byte gives the same trees");
	seven = run(doc, len, 7, STANZA_MAX_DEFAULT, &r);
	CHECK(strcmp(all, seven) == 0, "7-byte pieces give the same trees");

	CHECK(strstr(all, "OPEN {http://etherx.jabber.org/streams}stream[") !=
	    NULL, "header element and namespace");
	CHECK(strstr(all, "{}from=example.com;") != NULL &&
	    strstr(all, "{}version=1.0;") != NULL,
	    "header attributes");
	CHECK(strstr(all, "{}xmlns=jabber:server;") != NULL &&
	    strstr(all, "{}xmlns:db=jabber:server:dialback;") != NULL,
	    "header namespace declarations as attributes");
	CHECK(strstr(all, "{http://www.w3.org/XML/1998/namespace}lang=en;") !=
	    NULL, "xml:lang on the header");
	CHECK(strstr(all, "STANZA {jabber:server:dialback}result[") != NULL &&
	    strstr(all, "](8:0123abcd)") != NULL, "db:result and its text");
	CHECK(strstr(all, "{jabber:x:data}field[{}var=secret;](0:)"
	    "<{jabber:x:data}value[](6:s3cr3t)<>>") != NULL,
	    "nested default namespaces");
	CHECK(strstr(all, "{http://www.w3.org/XML/1998/namespace}lang=de;") !=
	    NULL, "xml:lang on a stanza");
	CHECK(strstr(all, "{jabber:server}body[](36:a & b < c A\xe2\x98\xba"
	    " >\"'<not> &amp; markup)") != NULL,
	    "entities, character references and CDATA");
	CHECK(strstr(all, "{urn:test}x[{urn:t}attr=v;]") != NULL,
	    "prefixed attribute namespace");
	CHECK(strstr(all, "CLOSE\n") != NULL, "stream close");
	free(all);
	free(one);
	free(seven);
	free(doc);
}

static void
test_lookup(void)
{
	struct rec	 r;
	struct xml_node	*n, *c;
	char		*doc;

	rec_init(&r, STANZA_MAX_DEFAULT);
	r.r_keep = 1;
	if (asprintf(&doc, "%s<message xml:lang='de' type='chat'><body>hi"
	    "</body><x xmlns='urn:a'><body>no</body></x></message>", HDR) ==
	    -1)
		abort();
	feed(&r, doc, strlen(doc), 0);
	n = r.r_last;
	CHECK(n != NULL && strcmp(n->xn_name, "message") == 0,
	    "stanza kept by the callee");
	if (n != NULL) {
		CHECK(xml_node_attr(n, "type") != NULL &&
		    strcmp(xml_node_attr(n, "type"), "chat") == 0,
		    "xml_node_attr");
		CHECK(xml_node_attr(n, "lang") == NULL &&
		    strcmp(xml_node_attr_ns(n, XML_NS_XML, "lang"), "de") == 0,
		    "xml:lang only with its namespace");
		c = xml_node_child(n, XML_NS_SERVER, "body");
		CHECK(c != NULL && strcmp(c->xn_text, "hi") == 0,
		    "xml_node_child by namespace");
		c = xml_node_child(n, "urn:a", "body");
		CHECK(c == NULL, "xml_node_child: no match in another ns");
		c = xml_node_child(n, NULL, "x");
		CHECK(c != NULL && xml_node_child(c, "urn:a", "body") != NULL,
		    "xml_node_child any namespace");
		xml_node_free(c);	/* not a root: no effect */
	}
	rec_done(&r);
	free(doc);
}

static void
test_restricted(void)
{
	char		*doc, *laughs;
	struct timespec	 t0, t1;
	enum xml_error	 e;
	double		 sec;
	size_t		 i;
	int		 n;

	CHECK(run_error("<!DOCTYPE stream>" HDR, STANZA_MAX_DEFAULT, NULL) ==
	    XMLE_RESTRICTED, "DOCTYPE: restricted-xml");
	CHECK(run_error("<!DOCTYPE x [<!ENTITY a \"b\">]>" HDR,
	    STANZA_MAX_DEFAULT, NULL) == XMLE_RESTRICTED,
	    "internal entity: restricted-xml");
	CHECK(run_error("<!DOCTYPE x SYSTEM 'http://example.com/x.dtd'>" HDR,
	    STANZA_MAX_DEFAULT, NULL) == XMLE_RESTRICTED,
	    "external DTD: restricted-xml");

	laughs = malloc(4096);
	strlcpy(laughs, "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol "
	    "\"lol\">", 4096);
	for (i = 1; i < 10; i++) {
		char	 ent[256], ref[16];

		snprintf(ent, sizeof(ent), "<!ENTITY lol%zu \"", i);
		strlcat(laughs, ent, 4096);
		if (i == 1)
			strlcpy(ref, "&lol;", sizeof(ref));
		else
			snprintf(ref, sizeof(ref), "&lol%zu;", i - 1);
		for (n = 0; n < 10; n++)
			strlcat(laughs, ref, 4096);
		strlcat(laughs, "\">", 4096);
	}
	strlcat(laughs, "]><lolz>&lol9;</lolz>", 4096);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	e = run_error(laughs, STANZA_MAX_DEFAULT, &n);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	sec = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	CHECK(e == XMLE_RESTRICTED && n == 1 && sec < QUICK_SEC,
	    "billion laughs: restricted-xml, once, in %.4f s", sec);
	free(laughs);

	if (asprintf(&doc, "%s<?foo bar?>", HDR) == -1)
		abort();
	CHECK(run_error(doc, STANZA_MAX_DEFAULT, NULL) == XMLE_RESTRICTED,
	    "processing instruction in the stream: restricted-xml");
	free(doc);
	if (asprintf(&doc, "%s<iq><?foo bar?></iq>", HDR) == -1)
		abort();
	CHECK(run_error(doc, STANZA_MAX_DEFAULT, NULL) == XMLE_RESTRICTED,
	    "processing instruction in a stanza: restricted-xml");
	free(doc);
	if (asprintf(&doc, "%s<!-- hello -->", HDR) == -1)
		abort();
	CHECK(run_error(doc, STANZA_MAX_DEFAULT, NULL) == XMLE_RESTRICTED,
	    "comment in the stream: restricted-xml");
	free(doc);
	if (asprintf(&doc, "%s<iq><!-- x --></iq>", HDR) == -1)
		abort();
	CHECK(run_error(doc, STANZA_MAX_DEFAULT, NULL) == XMLE_RESTRICTED,
	    "comment in a stanza: restricted-xml");
	free(doc);
	CHECK(run_error("<!-- x -->" HDR, STANZA_MAX_DEFAULT, NULL) ==
	    XMLE_RESTRICTED, "comment before the header: restricted-xml");
	if (asprintf(&doc, "%s<iq>&undefined;</iq>", HDR) == -1)
		abort();
	CHECK(run_error(doc, STANZA_MAX_DEFAULT, NULL) ==
	    XMLE_NOT_WELL_FORMED, "undefined entity: not-well-formed");
	free(doc);
}

static void
test_malformed(void)
{
	struct rec	 r;
	char		*doc;
	int		 n;

	if (asprintf(&doc, "%s<a><b></a>", HDR) == -1)
		abort();
	CHECK(run_error(doc, STANZA_MAX_DEFAULT, &n) == XMLE_NOT_WELL_FORMED &&
	    n == 1, "<a><b></a>: not-well-formed, reported once");
	free(doc);
	CHECK(run_error("garbage\n", STANZA_MAX_DEFAULT, NULL) ==
	    XMLE_NOT_WELL_FORMED, "garbage before the header: not-well-formed");
	if (asprintf(&doc, "%s hello <iq/>", HDR) == -1)
		abort();
	CHECK(run_error(doc, STANZA_MAX_DEFAULT, NULL) ==
	    XMLE_NOT_WELL_FORMED, "text between stanzas: not-well-formed");
	free(doc);
	if (asprintf(&doc, "%s<iq>\xff\xfe</iq>", HDR) == -1)
		abort();
	CHECK(run_error(doc, STANZA_MAX_DEFAULT, NULL) ==
	    XMLE_NOT_WELL_FORMED, "invalid UTF-8: not-well-formed");
	free(doc);

	/* after the error: no more callbacks, feeding refused */
	rec_init(&r, STANZA_MAX_DEFAULT);
	if (asprintf(&doc, "%s<a><b></a><iq/>", HDR) == -1)
		abort();
	CHECK(feed(&r, doc, strlen(doc), 0) == -1, "feed returns -1");
	CHECK(xml_stream_feed(r.r_xs, "<iq/>", 5) == -1 &&
	    xml_stream_feed(r.r_xs, "</stream:stream>", 16) == -1 &&
	    r.r_error == 1 && r.r_stanza == 0 && r.r_close == 0,
	    "later feeds return -1 without callbacks");
	rec_done(&r);
	free(doc);
}

static void
test_bounds(void)
{
	struct rec	 r;
	char		*doc, *big, *s;
	size_t		 i;
	int		 n;

	/* 1 KiB stanza limit */
	big = malloc(4096);
	memset(big, 'x', 2000);
	big[2000] = '\0';
	if (asprintf(&doc, "%s<message><body>%s</body></message>", HDR,
	    big) == -1)
		abort();
	CHECK(run_error(doc, TEST_STANZA_MAX, &n) == XMLE_POLICY && n == 1,
	    "stanza over 1 KiB: policy-violation");
	free(run(doc, strlen(doc), 1, TEST_STANZA_MAX, &r));
	CHECK(r.r_error == 1 && r.r_err == XMLE_POLICY,
	    "stanza over 1 KiB byte by byte: policy-violation");
	free(doc);
	if (asprintf(&doc, "%s<message><body a='%s'/></message>", HDR,
	    big) == -1)
		abort();
	CHECK(run_error(doc, TEST_STANZA_MAX, NULL) == XMLE_POLICY,
	    "attribute over 1 KiB: policy-violation");
	free(doc);
	/* an unfinished start tag is bounded too */
	if (asprintf(&doc, "%s<message a='%s", HDR, big) == -1)
		abort();
	CHECK(run_error(doc, TEST_STANZA_MAX, NULL) == XMLE_POLICY,
	    "unfinished tag over 1 KiB: policy-violation");
	free(run(doc, strlen(doc), 100, TEST_STANZA_MAX, &r));
	CHECK(r.r_error == 1 && r.r_err == XMLE_POLICY,
	    "unfinished tag in pieces: policy-violation");
	free(doc);
	if (asprintf(&doc, "<stream:stream xmlns='jabber:server' "
	    "xmlns:stream='http://etherx.jabber.org/streams' a='%s'>",
	    big) == -1)
		abort();
	CHECK(run_error(doc, TEST_STANZA_MAX, NULL) == XMLE_POLICY,
	    "stream header over the limit: policy-violation");
	free(doc);
	/* many stanzas under the limit are fine */
	s = malloc(64 * 1024);
	strlcpy(s, HDR, 64 * 1024);
	for (i = 0; i < 100; i++)
		strlcat(s, "<iq type='get' id='x'><ping xmlns='urn:xmpp:ping'/>"
		    "</iq> ", 64 * 1024);
	free(run(s, strlen(s), 0, TEST_STANZA_MAX, &r));
	CHECK(r.r_error == 0 && r.r_stanza == 100,
	    "100 small stanzas under a 1 KiB limit");
	free(s);
	free(big);

	/* keep-alives on an idle stream never add up */
	rec_init(&r, TEST_STANZA_MAX);
	feed(&r, HDR, strlen(HDR), 0);
	for (i = 0; i < 20000; i++)
		if (xml_stream_feed(r.r_xs, " ", 1) == -1)
			break;
	CHECK(i == 20000 && r.r_error == 0,
	    "20000 whitespace keep-alives under a 1 KiB limit");
	rec_done(&r);

	/* depth */
	s = malloc(16 * 1024);
	strlcpy(s, HDR, 16 * 1024);
	for (i = 0; i < 1000; i++)
		strlcat(s, "<a>", 16 * 1024);
	CHECK(run_error(s, STANZA_MAX_DEFAULT, NULL) == XMLE_POLICY,
	    "depth 1000 with a bound of 32: policy-violation");
	strlcpy(s, HDR, 16 * 1024);
	for (i = 0; i < TEST_DEPTH_MAX - 1; i++)
		strlcat(s, "<a>", 16 * 1024);
	for (i = 0; i < TEST_DEPTH_MAX - 1; i++)
		strlcat(s, "</a>", 16 * 1024);
	free(run(s, strlen(s), 0, STANZA_MAX_DEFAULT, &r));
	CHECK(r.r_error == 0 && r.r_stanza == 1,
	    "depth 32 with a bound of 32 is fine");

	/* attributes and namespace declarations */
	strlcpy(s, HDR "<iq", 16 * 1024);
	for (i = 0; i < 100; i++) {
		char	 a[32];

		snprintf(a, sizeof(a), " a%zu='v'", i);
		strlcat(s, a, 16 * 1024);
	}
	strlcat(s, "/>", 16 * 1024);
	CHECK(run_error(s, STANZA_MAX_DEFAULT, NULL) == XMLE_POLICY,
	    "100 attributes with a bound of 32: policy-violation");
	strlcpy(s, HDR "<iq", 16 * 1024);
	for (i = 0; i < 100; i++) {
		char	 a[32];

		snprintf(a, sizeof(a), " xmlns:p%zu='u'", i);
		strlcat(s, a, 16 * 1024);
	}
	strlcat(s, "/>", 16 * 1024);
	CHECK(run_error(s, STANZA_MAX_DEFAULT, NULL) == XMLE_POLICY,
	    "100 namespace declarations: policy-violation");
	strlcpy(s, "<stream:stream xmlns='jabber:server' "
	    "xmlns:stream='http://etherx.jabber.org/streams'", 16 * 1024);
	for (i = 0; i < 100; i++) {
		char	 a[32];

		snprintf(a, sizeof(a), " a%zu='v'", i);
		strlcat(s, a, 16 * 1024);
	}
	strlcat(s, ">", 16 * 1024);
	CHECK(run_error(s, STANZA_MAX_DEFAULT, NULL) == XMLE_POLICY,
	    "100 attributes on the header: policy-violation");

	/* tiny elements cannot make the tree grow without bound */
	free(s);
	s = malloc(STANZA_MAX_DEFAULT + 1024);
	strlcpy(s, HDR "<iq>", STANZA_MAX_DEFAULT + 1024);
	for (i = 0; i < (STANZA_MAX_DEFAULT - 100) / 4; i++)
		strlcat(s, "<a/>", STANZA_MAX_DEFAULT + 1024);
	strlcat(s, "</iq>", STANZA_MAX_DEFAULT + 1024);
	free(run(s, strlen(s), 0, STANZA_MAX_DEFAULT, &r));
	CHECK(r.r_error == 1 && r.r_err == XMLE_POLICY,
	    "16000 empty elements: tree bound, policy-violation");
	free(s);
}

static void
test_namespace(void)
{
	CHECK(run_error("<stream:stream xmlns='jabber:server' "
	    "xmlns:stream='http://etherx.jabber.org/wrong'>",
	    STANZA_MAX_DEFAULT, NULL) == XMLE_INVALID_NS,
	    "wrong stream namespace: invalid-namespace");
	CHECK(run_error("<stream:foo xmlns='jabber:server' "
	    "xmlns:stream='http://etherx.jabber.org/streams'>",
	    STANZA_MAX_DEFAULT, NULL) == XMLE_INVALID_NS,
	    "wrong root name: invalid-namespace");
	CHECK(run_error("<stream:stream xmlns='jabber:client' "
	    "xmlns:stream='http://etherx.jabber.org/streams'>",
	    STANZA_MAX_DEFAULT, NULL) == XMLE_INVALID_NS,
	    "jabber:client: invalid-namespace");
	CHECK(run_error("<stream:stream "
	    "xmlns:stream='http://etherx.jabber.org/streams'>",
	    STANZA_MAX_DEFAULT, NULL) == XMLE_INVALID_NS,
	    "no default namespace: invalid-namespace");
	CHECK(run_error("<stream xmlns='http://etherx.jabber.org/streams'>",
	    STANZA_MAX_DEFAULT, NULL) == XMLE_INVALID_NS,
	    "stream namespace as the default: invalid-namespace");
	CHECK(run_error("<stream:stream xmlns='jabber:server'>",
	    STANZA_MAX_DEFAULT, NULL) == XMLE_NOT_WELL_FORMED,
	    "unbound prefix: not-well-formed");
}

static void
test_callbacks(void)
{
	struct rec	 r;
	char		*doc;
	int		 rv;

	/* STARTTLS: reset from the stanza, the rest of the feed dropped */
	rec_init(&r, STANZA_MAX_DEFAULT);
	r.r_act = ACT_RESET_STANZA;
	if (asprintf(&doc, "%s<starttls xmlns='urn:ietf:params:xml:ns:"
	    "xmpp-tls'/><iq type='get' id='injected'/>", HDR) == -1)
		abort();
	rv = feed(&r, doc, strlen(doc), 0);
	CHECK(rv == 0 && r.r_stanza == 1 && r.r_error == 0,
	    "reset from xc_stanza: bytes after it dropped");
	r.r_act = ACT_NONE;
	rv = feed(&r, HDR "<iq type='get' id='2'/>", strlen(HDR) + 23, 0);
	CHECK(rv == 0 && r.r_open == 2 && r.r_stanza == 2 && r.r_error == 0,
	    "a second header after the reset (%d %d %d)", r.r_open,
	    r.r_stanza, r.r_error);
	CHECK(strstr(r.r_log, "injected") == NULL, "injected stanza unseen");
	CHECK(xml_stream_reset(r.r_xs) == 0 &&
	    feed(&r, HDR, strlen(HDR), 1) == 0 && r.r_open == 3,
	    "reset outside a callback, header byte by byte");
	rec_done(&r);
	free(doc);

	/* free from inside callbacks */
	if (asprintf(&doc, "%s<iq id='1'/><iq id='2'/><iq id='3'/>"
	    "</stream:stream>", HDR) == -1)
		abort();
	rec_init(&r, STANZA_MAX_DEFAULT);
	r.r_act = ACT_FREE_STANZA;
	rv = xml_stream_feed(r.r_xs, doc, strlen(doc));
	CHECK(rv == -1 && r.r_freed && r.r_stanza == 1 && r.r_close == 0,
	    "free from xc_stanza: feed returns -1, nothing after");
	rec_done(&r);
	rec_init(&r, STANZA_MAX_DEFAULT);
	r.r_act = ACT_FREE_STANZA;
	rv = feed(&r, doc, strlen(doc), 1);
	CHECK(r.r_freed && r.r_stanza == 1, "free from xc_stanza, byte by "
	    "byte");
	rec_done(&r);
	rec_init(&r, STANZA_MAX_DEFAULT);
	r.r_act = ACT_FREE_OPEN;
	rv = xml_stream_feed(r.r_xs, doc, strlen(doc));
	CHECK(rv == -1 && r.r_freed && r.r_open == 1 && r.r_stanza == 0,
	    "free from xc_open");
	rec_done(&r);
	free(doc);
	if (asprintf(&doc, "%s</stream:stream>", HDR) == -1)
		abort();
	rec_init(&r, STANZA_MAX_DEFAULT);
	r.r_act = ACT_FREE_CLOSE;
	rv = xml_stream_feed(r.r_xs, doc, strlen(doc));
	CHECK(rv == -1 && r.r_freed && r.r_close == 1, "free from xc_close");
	rec_done(&r);
	free(doc);
	if (asprintf(&doc, "%s<a><b></a>", HDR) == -1)
		abort();
	rec_init(&r, STANZA_MAX_DEFAULT);
	r.r_act = ACT_FREE_ERROR;
	rv = xml_stream_feed(r.r_xs, doc, strlen(doc));
	CHECK(rv == -1 && r.r_freed && r.r_error == 1, "free from xc_error");
	rec_done(&r);
	free(doc);
}

/* A large tag arriving in pieces: no stall, no quadratic re-parse. */
static void
test_pieces(void)
{
	struct timespec	 t0, t1;
	struct rec	 r;
	char		*doc, *big, *all, *one;
	size_t		 hlen, cut;
	double		 sec;

	big = malloc(32 * 1024);
	memset(big, 'v', 32 * 1024 - 1);
	big[32 * 1024 - 1] = '\0';
	if (asprintf(&doc, "%s<iq a='%s'/>", HDR, big) == -1)
		abort();
	all = run(doc, strlen(doc), 0, STANZA_MAX_DEFAULT, &r);
	CHECK(r.r_stanza == 1 && r.r_error == 0, "32 KiB attribute at once");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	one = run(doc, strlen(doc), 1, STANZA_MAX_DEFAULT, &r);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	sec = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	CHECK(r.r_stanza == 1 && strcmp(all, one) == 0 && sec < QUICK_SEC,
	    "32 KiB attribute byte by byte: same tree in %.3f s", sec);
	free(all);
	free(one);

	/* the last few bytes of a big tag complete it at once */
	hlen = strlen(HDR);
	for (cut = strlen(doc) - 5; cut < strlen(doc); cut++) {
		rec_init(&r, STANZA_MAX_DEFAULT);
		feed(&r, doc, hlen + 2000, 0);
		feed(&r, doc + hlen + 2000, cut - hlen - 2000, 0);
		feed(&r, doc + cut, strlen(doc) - cut, 0);
		CHECK(r.r_stanza == 1 && r.r_error == 0,
		    "big tag in three pieces, cut %zu from the end: delivered",
		    strlen(doc) - cut);
		rec_done(&r);
	}
	free(doc);
	/* the 1500 + 500 case that expat's own deferral would hold back */
	if (asprintf(&doc, "%s<iq a='%.1990s'/>", HDR, big) == -1)
		abort();
	rec_init(&r, STANZA_MAX_DEFAULT);
	feed(&r, doc, hlen + 1500, 0);
	feed(&r, doc + hlen + 1500, strlen(doc) - hlen - 1500, 0);
	CHECK(r.r_stanza == 1, "2000-byte tag as 1500 + 500: delivered");
	rec_done(&r);
	free(doc);
	free(big);
}

/* Feed in random pieces; returns the log. */
static char *
run_random(const char *doc, size_t len, unsigned int seed, size_t maxstep)
{
	struct rec	 r;
	size_t		 off, n;
	char		*log;

	srandom(seed);
	rec_init(&r, STANZA_MAX_DEFAULT);
	for (off = 0; off < len; off += n) {
		n = 1 + random() % maxstep;
		if (n > len - off)
			n = len - off;
		if (xml_stream_feed(r.r_xs, doc + off, n) == -1)
			break;
	}
	log = strdup(r.r_log);
	rec_done(&r);
	return (log);
}

/* Quotes, '>' and "]]" where a naive scan for the end of a tag errs. */
static void
test_random(void)
{
	char		*doc, *big, *all, *log;
	unsigned int	 seed;
	size_t		 i, len;
	int		 same = 1, delivered = 1;
	struct rec	 r;

	big = malloc(3000);
	for (i = 0; i < 2999; i++)
		big[i] = "a>\"]b"[i % 5];
	big[2999] = '\0';
	if (asprintf(&doc, "%s%s<message a='%s' b=\"it's > '\"><body>"
	    "<![CDATA[it's \"x\" ]] > ]]]><![CDATA[%s]]>&gt;'\"</body>"
	    "</message><iq c='%s'/></stream:stream>", HDR, stanzas, big, big,
	    big) == -1)
		abort();
	len = strlen(doc);
	all = run(doc, len, 0, STANZA_MAX_DEFAULT, &r);
	CHECK(r.r_stanza == 5 && r.r_close == 1 && r.r_error == 0,
	    "tricky stanzas at once (%d %d)", r.r_stanza, r.r_error);
	for (seed = 1; seed <= 40; seed++) {
		log = run_random(doc, len, seed, seed < 20 ? 8 : 700);
		if (strcmp(log, all) != 0)
			same = 0;
		free(log);
	}
	CHECK(same, "40 random splits give the same trees");
	/* every split point of the last stanza delivers it at once */
	for (i = len - 3020; i < len - 16; i++) {
		rec_init(&r, STANZA_MAX_DEFAULT);
		feed(&r, doc, i, i % 4 == 0 ? 61 : 0);
		feed(&r, doc + i, len - 16 - i, 0);
		if (r.r_stanza != 5 || r.r_error != 0)
			delivered = 0;
		rec_done(&r);
	}
	CHECK(delivered, "a big tag split anywhere is delivered with its "
	    "last byte");
	free(all);
	free(doc);
	free(big);
}

static void
test_writer(void)
{
	struct xml_buf	 b;

	xml_buf_init(&b, 4096);
	xml_buf_open(&b, "iq", 0, "a", "&<>'\"", "skip", (char *)NULL,
	    "b", "x\ty\nz", (char *)NULL);
	xml_buf_text(&b, "&<>'\" \n");
	xml_buf_open(&b, "e", 1, "xmlns", "urn:x", (char *)NULL);
	xml_buf_raw(&b, "<raw/>");
	xml_buf_close(&b, "iq");
	CHECK(b.xb_error == 0 && strcmp(b.xb_buf, "<iq a='&amp;&lt;&gt;"
	    "&apos;&quot;' b='x&#9;y&#10;z'>&amp;&lt;&gt;&apos;&quot; \n"
	    "<e xmlns='urn:x'/><raw/></iq>") == 0 &&
	    b.xb_len == strlen(b.xb_buf),
	    "writer escapes all five in attributes and text");
	xml_buf_free(&b);

	xml_buf_init(&b, 16);
	xml_buf_text(&b, "0123456789");
	CHECK(b.xb_error == 0 && b.xb_len == 10, "under xb_max");
	xml_buf_text(&b, "&&");
	CHECK(b.xb_error == 1 && b.xb_len <= 16, "xb_max respected (%zu)",
	    b.xb_len);
	xml_buf_raw(&b, "x");
	CHECK(b.xb_error == 1 && b.xb_len <= 16, "stays in error");
	xml_buf_free(&b);

	xml_buf_init(&b, 64);
	xml_buf_text(&b, "a\x01" "b");
	CHECK(strcmp(b.xb_buf, "a\xef\xbf\xbd" "b") == 0,
	    "control characters XML cannot carry are replaced");
	xml_buf_free(&b);
}

static void
test_roundtrip(void)
{
	struct rec	 r;
	struct xml_buf	 b;
	char		*doc, *log1, *log2, *s1, *s2;

	if (asprintf(&doc, "%s%s", HDR, stanzas) == -1)
		abort();
	xml_buf_init(&b, STANZA_MAX_DEFAULT);
	xml_buf_raw(&b, HDR);
	rec_init(&r, STANZA_MAX_DEFAULT);
	r.r_out = &b;
	feed(&r, doc, strlen(doc), 0);
	log1 = strdup(r.r_log);
	rec_done(&r);
	CHECK(b.xb_error == 0, "xml_buf_node wrote three stanzas");
	CHECK(strstr(b.xb_buf, "<result xmlns='jabber:server:dialback'") !=
	    NULL, "namespace emitted where it differs from the parent");
	CHECK(strstr(b.xb_buf, "<iq type='set'") != NULL &&
	    strstr(b.xb_buf, "<item>") != NULL,
	    "no xmlns where it is inherited");
	CHECK(strstr(b.xb_buf, "xml:lang='de'") != NULL,
	    "xml:lang written with its prefix");
	log2 = run(b.xb_buf, b.xb_len, 0, STANZA_MAX_DEFAULT, &r);
	CHECK(r.r_stanza == 3 && r.r_error == 0,
	    "the writer's output parses again");
	s1 = strstr(log1, "STANZA");
	s2 = strstr(log2, "STANZA");
	CHECK(s1 != NULL && s2 != NULL && strcmp(s1, s2) == 0,
	    "round trip gives equal trees");
	free(log1);
	free(log2);
	free(doc);
	xml_buf_free(&b);
}

int
main(void)
{
	CHECK(strcmp(xml_error_condition(XMLE_NOT_WELL_FORMED),
	    "not-well-formed") == 0 &&
	    strcmp(xml_error_condition(XMLE_RESTRICTED), "restricted-xml") ==
	    0 && strcmp(xml_error_condition(XMLE_POLICY),
	    "policy-violation") == 0 &&
	    strcmp(xml_error_condition(XMLE_INVALID_NS),
	    "invalid-namespace") == 0 &&
	    strcmp(xml_error_condition(XMLE_NOMEM),
	    "internal-server-error") == 0, "error conditions");
	test_trees();
	test_lookup();
	test_restricted();
	test_malformed();
	test_bounds();
	test_namespace();
	test_callbacks();
	test_pieces();
	test_random();
	test_writer();
	test_roundtrip();
	REGRESS_EXIT();
}
