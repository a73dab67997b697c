/*
 * The XML layer of the s2s streams: one incremental, namespace-aware
 * expat parser per stream, stanza trees allocated from a per-stanza
 * arena, and an escaping writer.
 *
 * Callbacks into the stream code happen from inside XML_Parse().  The
 * callee may reset or free the stream there (STARTTLS, a stream error):
 * both are then deferred until XML_Parse() has returned, and the rest of
 * the buffer being fed is dropped, as it must be after STARTTLS.
 */

#include <sys/types.h>
#include <sys/queue.h>

#include <expat.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monalpushd.h"

#define XML_SEP		'\x01'	/* "uri\1local": not a character of XML */
#define XML_ALIGN	16
#define XML_CHUNK_MIN	4096	/* first arena chunk of a tree */
#define XML_CHUNK_MAX	65536	/* arena chunks stop doubling here */
#define XML_TEXT_KEEP	1024	/* text scratch kept between stanzas */
#define XML_BUF_MIN	256

/*
 * Expat 2.6 (and distributions' backports into 2.5, Debian 12's among
 * them) may hold back a complete token until more input arrives, which
 * stalls a peer waiting for our answer.  We turn that off where it
 * exists and defer ourselves only input that cannot end a token.
 */
#pragma weak XML_SetReparseDeferralEnabled
XML_Bool	XML_SetReparseDeferralEnabled(XML_Parser, XML_Bool);

struct xml_chunk {
	struct xml_chunk	*xk_next;
	size_t			 xk_size;
	size_t			 xk_used;
};
#define XML_CHUNK_HDR	((sizeof(struct xml_chunk) + XML_ALIGN - 1) & \
			    ~(size_t)(XML_ALIGN - 1))

/* A tree owns its arena; its root is embedded, so the root finds it. */
struct xml_tree {
	struct xml_chunk	*xt_chunks;	/* newest first */
	size_t			 xt_mem;
	size_t			 xt_max;
	int			 xt_over;	/* xt_max would be crossed */
	struct xml_node		 xt_root;
};

struct xml_decl {
	struct xml_decl		*xd_next;
	char			*xd_name;	/* "xmlns" or "xmlns:prefix" */
	char			*xd_uri;
};

struct xml_text {
	char			*xt_buf;
	size_t			 xt_len;
	size_t			 xt_cap;
};

struct xml_stream {
	XML_Parser		 xs_parser;
	struct xml_limits	 xs_limits;
	struct xml_stream_cb	 xs_cb;
	void			*xs_arg;
	int			 xs_flags;
#define XS_BUSY		0x01	/* inside xml_stream_feed */
#define XS_INPARSE	0x02	/* inside XML_Parse */
#define XS_STOP		0x04	/* parser stopped: ignore events */
#define XS_FAILED	0x08	/* xc_error was called */
#define XS_RESET	0x10	/* reset requested from a callback */
#define XS_FREE		0x20	/* free requested from a callback */
	int			 xs_depth;
	int			 xs_nsdecls;	/* for the next element */
	struct xml_tree		*xs_tree;	/* header or stanza in work */
	struct xml_node		*xs_cur;
	struct xml_decl		*xs_decls;	/* of the header */
	struct xml_text		*xs_text;	/* scratch per depth */
	uint64_t		 xs_fed;	/* bytes given to expat */
	uint64_t		 xs_mark;	/* where pending input starts */
	uint64_t		 xs_lastend;	/* end of the last event */
	char			*xs_defer;
	size_t			 xs_deferlen;
	size_t			 xs_defercap;
	int			 xs_scan;	/* where markup ends: SCAN_* */
	int			 xs_scanmatch;
	enum xml_error		 xs_error;
	char			 xs_errmsg[128];
};

/* Just enough of a tokenizer to know where a markup token can end. */
enum {
	SCAN_TEXT,
	SCAN_LT,	/* after '<' */
	SCAN_BANG,	/* after "<!" */
	SCAN_TAG,	/* tag, XML declaration, or what we refuse anyway */
	SCAN_SQ,	/* in '...' of a tag */
	SCAN_DQ,	/* in "..." of a tag */
	SCAN_CDATA,
	SCAN_COMMENT
};

static struct xml_tree	*tree_new(size_t);
static void		*tree_alloc(struct xml_tree *, size_t);
static char		*tree_strdup(struct xml_tree *, const char *);
static void		 tree_free(struct xml_tree *);

static int	 stream_scan(struct xml_stream *, const char *, size_t);
static int	 stream_setup(struct xml_stream *);
static void	 stream_clear(struct xml_stream *);
static void	 stream_destroy(struct xml_stream *);
static int	 stream_parse(struct xml_stream *, const char *, size_t);
static int	 stream_finish(struct xml_stream *, int);
static void	 stream_fail(struct xml_stream *, enum xml_error,
		    const char *, ...) __attribute__((format(printf, 3, 4)));
static void	 stream_called(struct xml_stream *);
static uint64_t	 stream_event(struct xml_stream *);
static int	 stream_split(struct xml_tree *, const char *, char **,
		    char **);
static int	 stream_fill(struct xml_stream *, struct xml_node *,
		    const char *, const char **);
static void	 stream_header(struct xml_stream *, const char *,
		    const char **);

static void XMLCALL	 h_start(void *, const XML_Char *, const XML_Char **);
static void XMLCALL	 h_end(void *, const XML_Char *);
static void XMLCALL	 h_text(void *, const XML_Char *, int);
static void XMLCALL	 h_nsdecl(void *, const XML_Char *, const XML_Char *);
static void XMLCALL	 h_xmldecl(void *, const XML_Char *, const XML_Char *,
			    int);
static void XMLCALL	 h_doctype(void *, const XML_Char *, const XML_Char *,
			    const XML_Char *, int);
static void XMLCALL	 h_entity(void *, const XML_Char *, int,
			    const XML_Char *, int, const XML_Char *,
			    const XML_Char *, const XML_Char *,
			    const XML_Char *);
static void XMLCALL	 h_pi(void *, const XML_Char *, const XML_Char *);
static void XMLCALL	 h_comment(void *, const XML_Char *);
static int XMLCALL	 h_extref(XML_Parser, const XML_Char *,
			    const XML_Char *, const XML_Char *,
			    const XML_Char *);

/* Arena */

static struct xml_tree *
tree_new(size_t max)
{
	struct xml_chunk	*k;
	struct xml_tree		*t;
	size_t			 hdr;

	hdr = (sizeof(*t) + XML_ALIGN - 1) & ~(size_t)(XML_ALIGN - 1);
	if ((k = malloc(XML_CHUNK_MIN)) == NULL)
		return (NULL);
	k->xk_next = NULL;
	k->xk_size = XML_CHUNK_MIN;
	k->xk_used = XML_CHUNK_HDR + hdr;
	t = (struct xml_tree *)((char *)k + XML_CHUNK_HDR);
	memset(t, 0, sizeof(*t));
	t->xt_chunks = k;
	t->xt_mem = XML_CHUNK_MIN;
	t->xt_max = max < XML_CHUNK_MIN ? XML_CHUNK_MIN : max;
	TAILQ_INIT(&t->xt_root.xn_children);
	return (t);
}

static void *
tree_alloc(struct xml_tree *t, size_t len)
{
	struct xml_chunk	*k = t->xt_chunks;
	size_t			 size;
	void			*p;

	len = (len + XML_ALIGN - 1) & ~(size_t)(XML_ALIGN - 1);
	if (k->xk_size - k->xk_used < len) {
		size = k->xk_size < XML_CHUNK_MAX ? k->xk_size * 2 :
		    XML_CHUNK_MAX;
		if (size - XML_CHUNK_HDR < len)
			size = XML_CHUNK_HDR + len;
		if (size > t->xt_max - t->xt_mem) {
			t->xt_over = 1;
			return (NULL);
		}
		if ((k = malloc(size)) == NULL)
			return (NULL);
		k->xk_next = t->xt_chunks;
		k->xk_size = size;
		k->xk_used = XML_CHUNK_HDR;
		t->xt_chunks = k;
		t->xt_mem += size;
	}
	p = (char *)k + k->xk_used;
	k->xk_used += len;
	return (p);
}

static char *
tree_strdup(struct xml_tree *t, const char *s)
{
	size_t	 len = strlen(s) + 1;
	char	*p;

	if ((p = tree_alloc(t, len)) != NULL)
		memcpy(p, s, len);
	return (p);
}

static void
tree_free(struct xml_tree *t)
{
	struct xml_chunk	*k, *next;

	if (t == NULL)
		return;
	/* the last chunk holds *t itself */
	for (k = t->xt_chunks; k != NULL; k = next) {
		next = k->xk_next;
		free(k);
	}
}

void
xml_node_free(struct xml_node *n)
{
	/* nodes below a root belong to the root's arena */
	if (n == NULL || n->xn_parent != NULL)
		return;
	tree_free((struct xml_tree *)((char *)n -
	    offsetof(struct xml_tree, xt_root)));
}

/* Stream */

struct xml_stream *
xml_stream_new(const struct xml_limits *xl, const struct xml_stream_cb *cb,
    void *arg)
{
	struct xml_stream	*xs;

	if (xl->xl_depth_max < 1 || xl->xl_attrs_max < 0 ||
	    xl->xl_stanza_max == 0)
		return (NULL);
	if ((xs = calloc(1, sizeof(*xs))) == NULL)
		return (NULL);
	xs->xs_limits = *xl;
	xs->xs_cb = *cb;
	xs->xs_arg = arg;
	if ((xs->xs_text = calloc(xl->xl_depth_max + 1,
	    sizeof(*xs->xs_text))) == NULL)
		goto fail;
	if ((xs->xs_parser = XML_ParserCreateNS("UTF-8", XML_SEP)) == NULL)
		goto fail;
	if (stream_setup(xs) == -1)
		goto fail;
	return (xs);
 fail:
	stream_destroy(xs);
	return (NULL);
}

static int
stream_setup(struct xml_stream *xs)
{
	XML_Parser	 p = xs->xs_parser;

	XML_SetUserData(p, xs);
	XML_SetElementHandler(p, h_start, h_end);
	XML_SetCharacterDataHandler(p, h_text);
	XML_SetStartNamespaceDeclHandler(p, h_nsdecl);
	XML_SetXmlDeclHandler(p, h_xmldecl);
	XML_SetStartDoctypeDeclHandler(p, h_doctype);
	XML_SetEntityDeclHandler(p, h_entity);
	XML_SetProcessingInstructionHandler(p, h_pi);
	XML_SetCommentHandler(p, h_comment);
	XML_SetExternalEntityRefHandler(p, h_extref);
	if (!XML_SetParamEntityParsing(p, XML_PARAM_ENTITY_PARSING_NEVER))
		return (-1);
	if (XML_SetReparseDeferralEnabled != NULL &&
	    !XML_SetReparseDeferralEnabled(p, XML_FALSE))
		return (-1);
	return (0);
}

/* Forget the document: everything but the parser and the scratch. */
static void
stream_clear(struct xml_stream *xs)
{
	int	 i;

	tree_free(xs->xs_tree);
	xs->xs_tree = NULL;
	xs->xs_cur = NULL;
	xs->xs_decls = NULL;
	xs->xs_depth = 0;
	xs->xs_nsdecls = 0;
	xs->xs_fed = xs->xs_mark = xs->xs_lastend = 0;
	xs->xs_deferlen = 0;
	xs->xs_scan = SCAN_TEXT;
	xs->xs_scanmatch = 0;
	xs->xs_error = XMLE_NONE;
	xs->xs_errmsg[0] = '\0';
	xs->xs_flags = 0;
	for (i = 0; i <= xs->xs_limits.xl_depth_max; i++)
		xs->xs_text[i].xt_len = 0;
}

static void
stream_destroy(struct xml_stream *xs)
{
	int	 i;

	tree_free(xs->xs_tree);
	if (xs->xs_text != NULL) {
		for (i = 0; i <= xs->xs_limits.xl_depth_max; i++)
			free(xs->xs_text[i].xt_buf);
		free(xs->xs_text);
	}
	free(xs->xs_defer);
	if (xs->xs_parser != NULL)
		XML_ParserFree(xs->xs_parser);
	free(xs);
}

void
xml_stream_free(struct xml_stream *xs)
{
	if (xs == NULL)
		return;
	if (xs->xs_flags & XS_BUSY) {
		xs->xs_flags |= XS_FREE;
		stream_called(xs);
		return;
	}
	stream_destroy(xs);
}

int
xml_stream_reset(struct xml_stream *xs)
{
	if (xs->xs_flags & XS_BUSY) {
		xs->xs_flags |= XS_RESET;
		stream_called(xs);
		return (0);
	}
	stream_clear(xs);
	if (!XML_ParserReset(xs->xs_parser, "UTF-8"))
		return (-1);
	return (stream_setup(xs));
}

/* After a callback: stop parsing if the callee reset or freed us. */
static void
stream_called(struct xml_stream *xs)
{
	if ((xs->xs_flags & (XS_RESET | XS_FREE)) == 0 ||
	    (xs->xs_flags & XS_STOP))
		return;
	xs->xs_flags |= XS_STOP;
	if (xs->xs_flags & XS_INPARSE)
		XML_StopParser(xs->xs_parser, XML_FALSE);
}

static void
stream_fail(struct xml_stream *xs, enum xml_error e, const char *fmt, ...)
{
	va_list	 ap;

	if (xs->xs_flags & XS_STOP)
		return;
	xs->xs_error = e;
	va_start(ap, fmt);
	vsnprintf(xs->xs_errmsg, sizeof(xs->xs_errmsg), fmt, ap);
	va_end(ap);
	xs->xs_flags |= XS_STOP;
	if (xs->xs_flags & XS_INPARSE)
		XML_StopParser(xs->xs_parser, XML_FALSE);
}

int
xml_stream_feed(struct xml_stream *xs, const char *buf, size_t len)
{
	size_t	 need, cap;
	char	*p;
	int	 ends, rv;

	if (xs->xs_flags & (XS_FAILED | XS_BUSY))
		return (-1);
	xs->xs_flags |= XS_BUSY;

	/*
	 * Expat parses a partial token again from its start on every
	 * call; fed a large token in small pieces that is quadratic.
	 * Every event that completes a stanza ends a markup token, so
	 * input that ends none may wait while a large token is pending.
	 */
	ends = stream_scan(xs, buf, len);
	if (xs->xs_fed + xs->xs_deferlen - xs->xs_lastend >= XML_DEFER_MIN ||
	    xs->xs_deferlen > 0) {
		need = xs->xs_deferlen + len;
		if (need > xs->xs_defercap) {
			cap = xs->xs_defercap ? xs->xs_defercap : XML_DEFER_MIN;
			while (cap < need)
				cap *= 2;
			if ((p = realloc(xs->xs_defer, cap)) == NULL) {
				stream_fail(xs, XMLE_NOMEM, "out of memory");
				return (stream_finish(xs, 0));
			}
			xs->xs_defer = p;
			xs->xs_defercap = cap;
		}
		memcpy(xs->xs_defer + xs->xs_deferlen, buf, len);
		xs->xs_deferlen += len;
		if (!ends)
			return (stream_finish(xs, 0));
		rv = stream_parse(xs, xs->xs_defer, xs->xs_deferlen);
		xs->xs_deferlen = 0;
	} else
		rv = stream_parse(xs, buf, len);
	return (stream_finish(xs, rv));
}

/*
 * Follow the input as far as tags, quotes, CDATA sections and comments
 * go; returns 1 when a markup token ends in it.  Exact for everything a
 * stream may carry; what it gets wrong (quotes in a processing
 * instruction) is refused anyway.
 */
static int
stream_scan(struct xml_stream *xs, const char *buf, size_t len)
{
	static const char	 cdata[] = "[CDATA[";
	const char		*p = buf, *end = buf + len, *q;
	int			 ends = 0;

	while (p < end) {
		switch (xs->xs_scan) {
		case SCAN_TEXT:
			if ((q = memchr(p, '<', end - p)) == NULL)
				return (ends);
			p = q + 1;
			xs->xs_scan = SCAN_LT;
			continue;
		case SCAN_LT:
			xs->xs_scanmatch = 0;
			xs->xs_scan = *p == '!' ? SCAN_BANG : SCAN_TAG;
			if (*p == '!')
				p++;
			continue;
		case SCAN_BANG:
			if (xs->xs_scanmatch == 0 && *p == '-') {
				xs->xs_scan = SCAN_COMMENT;
				p++;
			} else if (*p == cdata[xs->xs_scanmatch]) {
				p++;
				if (cdata[++xs->xs_scanmatch] == '\0') {
					xs->xs_scanmatch = 0;
					xs->xs_scan = SCAN_CDATA;
				}
			} else
				xs->xs_scan = SCAN_TAG;
			continue;
		case SCAN_TAG:
			for (; p < end; p++)
				if (*p == '\'' || *p == '"' || *p == '>')
					break;
			if (p == end)
				return (ends);
			if (*p == '>') {
				ends = 1;
				xs->xs_scan = SCAN_TEXT;
			} else
				xs->xs_scan = *p == '"' ? SCAN_DQ : SCAN_SQ;
			p++;
			continue;
		case SCAN_SQ:
		case SCAN_DQ:
			if ((q = memchr(p, xs->xs_scan == SCAN_SQ ? '\'' : '"',
			    end - p)) == NULL)
				return (ends);
			p = q + 1;
			xs->xs_scan = SCAN_TAG;
			continue;
		case SCAN_CDATA:
		case SCAN_COMMENT:
			/* "]]>" or "-->": count the closing pair, then '>' */
			if (*p == '>' && xs->xs_scanmatch >= 2) {
				ends = 1;
				xs->xs_scan = SCAN_TEXT;
			} else if (*p == (xs->xs_scan == SCAN_CDATA ? ']' :
			    '-'))
				xs->xs_scanmatch++;
			else
				xs->xs_scanmatch = 0;
			p++;
			continue;
		}
	}
	return (ends);
}

static int
stream_parse(struct xml_stream *xs, const char *buf, size_t len)
{
	int	 n, st = XML_STATUS_OK;

	xs->xs_flags |= XS_INPARSE;
	do {
		n = len > INT_MAX ? INT_MAX : (int)len;
		st = XML_Parse(xs->xs_parser, buf, n, 0);
		xs->xs_fed += n;
		buf += n;
		len -= n;
	} while (st == XML_STATUS_OK && len > 0);
	xs->xs_flags &= ~XS_INPARSE;
	return (st == XML_STATUS_OK ? 0 : -1);
}

/* Report what happened during a feed, then act on deferred requests. */
static int
stream_finish(struct xml_stream *xs, int rv)
{
	XML_Parser	 p = xs->xs_parser;
	const char	*msg;
	uint64_t	 pending;

	if (xs->xs_flags & XS_FREE) {
		stream_destroy(xs);
		return (-1);
	}
	if (rv == -1 && (xs->xs_flags & XS_STOP) == 0) {
		/* newer error codes may have no string in an older library */
		if ((msg = XML_ErrorString(XML_GetErrorCode(p))) == NULL)
			msg = "parse error";
		stream_fail(xs, XMLE_NOT_WELL_FORMED, "line %lu column %lu: %s",
		    (unsigned long)XML_GetCurrentLineNumber(p),
		    (unsigned long)XML_GetCurrentColumnNumber(p), msg);
	}
	pending = xs->xs_fed + xs->xs_deferlen - xs->xs_mark;
	if (xs->xs_error == XMLE_NONE && (xs->xs_flags & XS_RESET) == 0 &&
	    pending > xs->xs_limits.xl_stanza_max)
		stream_fail(xs, XMLE_POLICY, "stanza over %zu bytes",
		    xs->xs_limits.xl_stanza_max);
	if (xs->xs_error != XMLE_NONE) {
		xs->xs_flags |= XS_FAILED;
		if (xs->xs_cb.xc_error != NULL)
			xs->xs_cb.xc_error(xs->xs_arg, xs->xs_error,
			    xs->xs_errmsg);
		if (xs->xs_flags & XS_FREE) {
			stream_destroy(xs);
			return (-1);
		}
		if (xs->xs_flags & XS_RESET) {
			xs->xs_flags &= ~XS_BUSY;
			xml_stream_reset(xs);
		} else
			xs->xs_flags &= ~XS_BUSY;
		return (-1);
	}
	xs->xs_flags &= ~XS_BUSY;
	if (xs->xs_flags & XS_RESET)
		return (xml_stream_reset(xs));
	return (0);
}

/* Note an event; returns the offset just after it. */
static uint64_t
stream_event(struct xml_stream *xs)
{
	XML_Index	 i = XML_GetCurrentByteIndex(xs->xs_parser);
	int		 n = XML_GetCurrentByteCount(xs->xs_parser);
	uint64_t	 end;

	if (i < 0)
		return (xs->xs_lastend);
	end = (uint64_t)i + (n > 0 ? (uint64_t)n : 0);
	if (end > xs->xs_lastend)
		xs->xs_lastend = end;
	return (end);
}

/* "uri\1local" or "local" into the tree, as namespace and local name. */
static int
stream_split(struct xml_tree *t, const char *s, char **ns, char **name)
{
	char	*p, *sep;

	if ((p = tree_strdup(t, s)) == NULL)
		return (-1);
	if ((sep = strchr(p, XML_SEP)) == NULL) {
		*ns = p + strlen(p);
		*name = p;
	} else {
		*sep = '\0';
		*ns = p;
		*name = sep + 1;
	}
	return (0);
}

static int
stream_fill(struct xml_stream *xs, struct xml_node *n, const char *name,
    const char **atts)
{
	struct xml_tree	*t = xs->xs_tree;
	struct xml_attr	*a;
	int		 i, nattrs;

	for (nattrs = 0; atts[nattrs * 2] != NULL; nattrs++)
		;
	TAILQ_INIT(&n->xn_children);
	n->xn_text = "";
	n->xn_textlen = 0;
	n->xn_nattrs = 0;
	n->xn_attrs = NULL;
	if (stream_split(t, name, &n->xn_ns, &n->xn_name) == -1)
		return (-1);
	if (nattrs == 0)
		return (0);
	if ((a = tree_alloc(t, nattrs * sizeof(*a))) == NULL)
		return (-1);
	for (i = 0; i < nattrs; i++) {
		if (stream_split(t, atts[i * 2], &a[i].xa_ns,
		    &a[i].xa_name) == -1 ||
		    (a[i].xa_value = tree_strdup(t, atts[i * 2 + 1])) == NULL)
			return (-1);
	}
	n->xn_attrs = a;
	n->xn_nattrs = nattrs;
	return (0);
}

static void
stream_nomem(struct xml_stream *xs)
{
	if (xs->xs_tree != NULL && xs->xs_tree->xt_over)
		stream_fail(xs, XMLE_POLICY, "stanza tree over %zu bytes",
		    xs->xs_tree->xt_max);
	else
		stream_fail(xs, XMLE_NOMEM, "out of memory");
}

static void
stream_header(struct xml_stream *xs, const char *name, const char **atts)
{
	struct xml_node	*n;
	struct xml_decl	*d;
	struct xml_attr	*a;
	const char	*defns = NULL;
	int		 i, ndecls = 0;

	if (xs->xs_tree == NULL && (xs->xs_tree =
	    tree_new(xs->xs_limits.xl_stanza_max * XML_TREE_FACTOR)) == NULL) {
		stream_nomem(xs);
		return;
	}
	n = &xs->xs_tree->xt_root;
	if (stream_fill(xs, n, name, atts) == -1) {
		stream_nomem(xs);
		return;
	}
	for (d = xs->xs_decls; d != NULL; d = d->xd_next) {
		ndecls++;
		if (strcmp(d->xd_name, "xmlns") == 0)
			defns = d->xd_uri;
	}
	if (strcmp(n->xn_ns, XML_NS_STREAM) != 0 ||
	    strcmp(n->xn_name, "stream") != 0) {
		stream_fail(xs, XMLE_INVALID_NS, "stream root is not "
		    "stream:stream");
		return;
	}
	if (defns == NULL || strcmp(defns, XML_NS_SERVER) != 0) {
		stream_fail(xs, XMLE_INVALID_NS, "default namespace is not "
		    XML_NS_SERVER);
		return;
	}
	/* the declarations become attributes "xmlns" and "xmlns:prefix" */
	if ((a = tree_alloc(xs->xs_tree,
	    (n->xn_nattrs + ndecls) * sizeof(*a))) == NULL) {
		stream_nomem(xs);
		return;
	}
	for (i = 0; i < n->xn_nattrs; i++)
		a[i] = n->xn_attrs[i];
	for (d = xs->xs_decls; d != NULL; d = d->xd_next, i++) {
		a[i].xa_ns = "";
		a[i].xa_name = d->xd_name;
		a[i].xa_value = d->xd_uri;
	}
	n->xn_attrs = a;
	n->xn_nattrs = i;
	if (xs->xs_cb.xc_open != NULL)
		xs->xs_cb.xc_open(xs->xs_arg, n);
	tree_free(xs->xs_tree);
	xs->xs_tree = NULL;
	xs->xs_decls = NULL;
	stream_called(xs);
}

/* Expat handlers */

static void XMLCALL
h_nsdecl(void *arg, const XML_Char *prefix, const XML_Char *uri)
{
	struct xml_stream	*xs = arg;
	struct xml_decl		*d;
	struct xml_tree		*t;
	size_t			 len;

	if (xs->xs_flags & XS_STOP)
		return;
	stream_event(xs);
	if (++xs->xs_nsdecls > xs->xs_limits.xl_attrs_max) {
		stream_fail(xs, XMLE_POLICY, "more than %d attributes",
		    xs->xs_limits.xl_attrs_max);
		return;
	}
	if (xs->xs_depth > 0)
		return;
	if ((t = xs->xs_tree) == NULL && (t = xs->xs_tree =
	    tree_new(xs->xs_limits.xl_stanza_max * XML_TREE_FACTOR)) == NULL) {
		stream_nomem(xs);
		return;
	}
	len = sizeof("xmlns:") + (prefix == NULL ? 0 : strlen(prefix));
	if ((d = tree_alloc(t, sizeof(*d))) == NULL ||
	    (d->xd_name = tree_alloc(t, len)) == NULL ||
	    (d->xd_uri = tree_strdup(t, uri == NULL ? "" : uri)) == NULL) {
		stream_nomem(xs);
		return;
	}
	snprintf(d->xd_name, len, "xmlns%s%s", prefix == NULL ? "" : ":",
	    prefix == NULL ? "" : prefix);
	d->xd_next = xs->xs_decls;
	xs->xs_decls = d;
}

static void XMLCALL
h_start(void *arg, const XML_Char *name, const XML_Char **atts)
{
	struct xml_stream	*xs = arg;
	struct xml_limits	*xl = &xs->xs_limits;
	struct xml_node		*n;
	uint64_t		 end;
	int			 nattrs;

	if (xs->xs_flags & XS_STOP)
		return;
	end = stream_event(xs);
	nattrs = XML_GetSpecifiedAttributeCount(xs->xs_parser) / 2;
	if (xs->xs_depth + 1 > xl->xl_depth_max) {
		stream_fail(xs, XMLE_POLICY, "deeper than %d elements",
		    xl->xl_depth_max);
		return;
	}
	if (nattrs + xs->xs_nsdecls > xl->xl_attrs_max) {
		stream_fail(xs, XMLE_POLICY, "more than %d attributes",
		    xl->xl_attrs_max);
		return;
	}
	xs->xs_nsdecls = 0;
	if (++xs->xs_depth == 2)
		xs->xs_mark = XML_GetCurrentByteIndex(xs->xs_parser);
	if (end - xs->xs_mark > xl->xl_stanza_max) {
		stream_fail(xs, XMLE_POLICY, "%s over %zu bytes",
		    xs->xs_depth == 1 ? "stream header" : "stanza",
		    xl->xl_stanza_max);
		return;
	}
	if (xs->xs_depth == 1) {
		stream_header(xs, name, atts);
		xs->xs_mark = end;
		return;
	}
	if (xs->xs_depth == 2) {
		if ((xs->xs_tree = tree_new(xl->xl_stanza_max *
		    XML_TREE_FACTOR)) == NULL) {
			stream_nomem(xs);
			return;
		}
		n = &xs->xs_tree->xt_root;
		n->xn_parent = NULL;
	} else if ((n = tree_alloc(xs->xs_tree, sizeof(*n))) == NULL) {
		stream_nomem(xs);
		return;
	} else {
		n->xn_parent = xs->xs_cur;
		TAILQ_INSERT_TAIL(&xs->xs_cur->xn_children, n, xn_entry);
	}
	if (stream_fill(xs, n, name, atts) == -1) {
		stream_nomem(xs);
		return;
	}
	xs->xs_text[xs->xs_depth].xt_len = 0;
	xs->xs_cur = n;
}

static void XMLCALL
h_end(void *arg, const XML_Char *name)
{
	struct xml_stream	*xs = arg;
	struct xml_text		*tx;
	struct xml_node		*n;
	struct xml_tree		*t;
	uint64_t		 end;

	if (xs->xs_flags & XS_STOP)
		return;
	end = stream_event(xs);
	if (xs->xs_depth == 1) {
		xs->xs_depth = 0;
		xs->xs_mark = xs->xs_lastend;
		if (xs->xs_cb.xc_close != NULL)
			xs->xs_cb.xc_close(xs->xs_arg);
		stream_called(xs);
		return;
	}
	if (end - xs->xs_mark > xs->xs_limits.xl_stanza_max) {
		stream_fail(xs, XMLE_POLICY, "stanza over %zu bytes",
		    xs->xs_limits.xl_stanza_max);
		return;
	}
	n = xs->xs_cur;
	tx = &xs->xs_text[xs->xs_depth];
	if (tx->xt_len > 0) {
		if ((n->xn_text = tree_alloc(xs->xs_tree, tx->xt_len + 1)) ==
		    NULL) {
			stream_nomem(xs);
			return;
		}
		memcpy(n->xn_text, tx->xt_buf, tx->xt_len);
		n->xn_text[tx->xt_len] = '\0';
		n->xn_textlen = tx->xt_len;
		if (tx->xt_cap > XML_TEXT_KEEP) {
			free(tx->xt_buf);
			tx->xt_buf = NULL;
			tx->xt_cap = 0;
		}
		tx->xt_len = 0;
	}
	xs->xs_cur = n->xn_parent;
	if (--xs->xs_depth > 1)
		return;
	t = xs->xs_tree;
	xs->xs_tree = NULL;
	xs->xs_mark = xs->xs_lastend;
	if (xs->xs_cb.xc_stanza != NULL)
		xs->xs_cb.xc_stanza(xs->xs_arg, &t->xt_root);
	else
		tree_free(t);
	stream_called(xs);
}

static void XMLCALL
h_text(void *arg, const XML_Char *s, int len)
{
	struct xml_stream	*xs = arg;
	struct xml_text		*tx;
	uint64_t		 end;
	size_t			 cap;
	char			*p;
	int			 i;

	if (xs->xs_flags & XS_STOP)
		return;
	end = stream_event(xs);
	if (xs->xs_depth <= 1) {
		for (i = 0; i < len; i++)
			if (strchr(" \t\r\n", s[i]) == NULL) {
				stream_fail(xs, XMLE_NOT_WELL_FORMED,
				    "text between stanzas");
				return;
			}
		xs->xs_mark = xs->xs_lastend;
		return;
	}
	if (end - xs->xs_mark > xs->xs_limits.xl_stanza_max) {
		stream_fail(xs, XMLE_POLICY, "stanza over %zu bytes",
		    xs->xs_limits.xl_stanza_max);
		return;
	}
	tx = &xs->xs_text[xs->xs_depth];
	if (tx->xt_len + len > tx->xt_cap) {
		cap = tx->xt_cap ? tx->xt_cap : 64;
		while (cap < tx->xt_len + len)
			cap *= 2;
		if ((p = realloc(tx->xt_buf, cap)) == NULL) {
			stream_fail(xs, XMLE_NOMEM, "out of memory");
			return;
		}
		tx->xt_buf = p;
		tx->xt_cap = cap;
	}
	memcpy(tx->xt_buf + tx->xt_len, s, len);
	tx->xt_len += len;
}

static void XMLCALL
h_xmldecl(void *arg, const XML_Char *version, const XML_Char *encoding,
    int standalone)
{
	struct xml_stream	*xs = arg;

	/* allowed; the parser reads UTF-8 whatever it says */
	stream_event(xs);
}

static void XMLCALL
h_doctype(void *arg, const XML_Char *name, const XML_Char *sysid,
    const XML_Char *pubid, int has_internal)
{
	stream_fail(arg, XMLE_RESTRICTED, "document type declaration");
}

static void XMLCALL
h_entity(void *arg, const XML_Char *name, int is_param,
    const XML_Char *value, int value_len, const XML_Char *base,
    const XML_Char *sysid, const XML_Char *pubid, const XML_Char *notation)
{
	stream_fail(arg, XMLE_RESTRICTED, "entity declaration");
}

static void XMLCALL
h_pi(void *arg, const XML_Char *target, const XML_Char *data)
{
	stream_fail(arg, XMLE_RESTRICTED, "processing instruction");
}

static void XMLCALL
h_comment(void *arg, const XML_Char *data)
{
	stream_fail(arg, XMLE_RESTRICTED, "comment");
}

static int XMLCALL
h_extref(XML_Parser p, const XML_Char *context, const XML_Char *base,
    const XML_Char *sysid, const XML_Char *pubid)
{
	return (XML_STATUS_ERROR);
}

/* Lookups */

const char *
xml_node_attr(const struct xml_node *n, const char *name)
{
	return (xml_node_attr_ns(n, "", name));
}

const char *
xml_node_attr_ns(const struct xml_node *n, const char *ns, const char *name)
{
	int	 i;

	for (i = 0; i < n->xn_nattrs; i++)
		if (strcmp(n->xn_attrs[i].xa_ns, ns) == 0 &&
		    strcmp(n->xn_attrs[i].xa_name, name) == 0)
			return (n->xn_attrs[i].xa_value);
	return (NULL);
}

struct xml_node *
xml_node_child(const struct xml_node *n, const char *ns, const char *name)
{
	struct xml_node	*c;

	TAILQ_FOREACH(c, &n->xn_children, xn_entry)
		if ((ns == NULL || strcmp(c->xn_ns, ns) == 0) &&
		    strcmp(c->xn_name, name) == 0)
			return (c);
	return (NULL);
}

const char *
xml_error_condition(enum xml_error e)
{
	switch (e) {
	case XMLE_NOT_WELL_FORMED:
		return ("not-well-formed");
	case XMLE_RESTRICTED:
		return ("restricted-xml");
	case XMLE_POLICY:
		return ("policy-violation");
	case XMLE_INVALID_NS:
		return ("invalid-namespace");
	default:
		return ("internal-server-error");
	}
}

/* Writer */

void
xml_buf_init(struct xml_buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->xb_max = max;
}

void
xml_buf_free(struct xml_buf *b)
{
	free(b->xb_buf);
	memset(b, 0, sizeof(*b));
}

static void
buf_add(struct xml_buf *b, const char *s, size_t len)
{
	size_t	 size;
	char	*p;

	if (b->xb_error)
		return;
	if (len > b->xb_max - b->xb_len) {
		b->xb_error = 1;
		return;
	}
	if (b->xb_len + len + 1 > b->xb_size) {
		size = b->xb_size ? b->xb_size : XML_BUF_MIN;
		while (size < b->xb_len + len + 1)
			size *= 2;
		if ((p = realloc(b->xb_buf, size)) == NULL) {
			b->xb_error = 1;
			return;
		}
		b->xb_buf = p;
		b->xb_size = size;
	}
	memcpy(b->xb_buf + b->xb_len, s, len);
	b->xb_len += len;
	b->xb_buf[b->xb_len] = '\0';
}

/*
 * Escape the five specials; in attributes also the white space a parser
 * would normalise.  Control characters XML cannot carry become U+FFFD.
 */
static void
buf_escape(struct xml_buf *b, const char *s, size_t len, int attr)
{
	const char	*rep, *run = s, *end = s + len;

	for (; s < end; s++) {
		switch (*s) {
		case '&':
			rep = "&amp;";
			break;
		case '<':
			rep = "&lt;";
			break;
		case '>':
			rep = "&gt;";
			break;
		case '\'':
			rep = "&apos;";
			break;
		case '"':
			rep = "&quot;";
			break;
		case '\r':
			rep = "&#13;";
			break;
		case '\n':
			rep = attr ? "&#10;" : NULL;
			break;
		case '\t':
			rep = attr ? "&#9;" : NULL;
			break;
		default:
			rep = (unsigned char)*s < 0x20 ? "\xef\xbf\xbd" : NULL;
			break;
		}
		if (rep == NULL)
			continue;
		buf_add(b, run, s - run);
		buf_add(b, rep, strlen(rep));
		run = s + 1;
	}
	buf_add(b, run, s - run);
}

void
xml_buf_raw(struct xml_buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

void
xml_buf_text(struct xml_buf *b, const char *s)
{
	buf_escape(b, s, strlen(s), 0);
}

static void
buf_attr(struct xml_buf *b, const char *prefix, const char *name,
    const char *value)
{
	buf_add(b, " ", 1);
	if (prefix != NULL) {
		buf_add(b, prefix, strlen(prefix));
		buf_add(b, ":", 1);
	}
	buf_add(b, name, strlen(name));
	buf_add(b, "='", 2);
	buf_escape(b, value, strlen(value), 1);
	buf_add(b, "'", 1);
}

void
xml_buf_open(struct xml_buf *b, const char *name, int close, ...)
{
	const char	*attr, *value;
	va_list		 ap;

	buf_add(b, "<", 1);
	buf_add(b, name, strlen(name));
	va_start(ap, close);
	while ((attr = va_arg(ap, const char *)) != NULL) {
		if ((value = va_arg(ap, const char *)) != NULL)
			buf_attr(b, NULL, attr, value);
	}
	va_end(ap);
	buf_add(b, close ? "/>" : ">", close ? 2 : 1);
}

void
xml_buf_close(struct xml_buf *b, const char *name)
{
	buf_add(b, "</", 2);
	buf_add(b, name, strlen(name));
	buf_add(b, ">", 1);
}

static void
buf_node(struct xml_buf *b, const struct xml_node *n, const char *pns)
{
	const struct xml_attr	*a;
	const struct xml_node	*c;
	char			 prefix[16];
	int			 i;

	buf_add(b, "<", 1);
	buf_add(b, n->xn_name, strlen(n->xn_name));
	if (strcmp(n->xn_ns, pns) != 0)
		buf_attr(b, NULL, "xmlns", n->xn_ns);
	for (i = 0; i < n->xn_nattrs; i++) {
		a = &n->xn_attrs[i];
		if (a->xa_ns[0] == '\0')
			buf_attr(b, NULL, a->xa_name, a->xa_value);
		else if (strcmp(a->xa_ns, XML_NS_XML) == 0)
			buf_attr(b, "xml", a->xa_name, a->xa_value);
		else {
			/* a prefix of our own, declared right here */
			snprintf(prefix, sizeof(prefix), "a%d", i);
			buf_attr(b, "xmlns", prefix, a->xa_ns);
			buf_attr(b, prefix, a->xa_name, a->xa_value);
		}
	}
	if (n->xn_textlen == 0 && TAILQ_EMPTY(&n->xn_children)) {
		buf_add(b, "/>", 2);
		return;
	}
	buf_add(b, ">", 1);
	buf_escape(b, n->xn_text, n->xn_textlen, 0);
	TAILQ_FOREACH(c, &n->xn_children, xn_entry)
		buf_node(b, c, n->xn_ns);
	xml_buf_close(b, n->xn_name);
}

void
xml_buf_node(struct xml_buf *b, const struct xml_node *n)
{
	buf_node(b, n, XML_NS_SERVER);
}
