/*
 * Stanzas per second through the XML layer: N XEP-0357 publishes, each
 * with a random node, in one stream fed in 4 KiB pieces.  The same
 * bytes through a bare expat parser (counting elements only) give the
 * ceiling to compare with.
 */

#include <sys/types.h>
#include <sys/queue.h>

#include <expat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "monalpushd.h"
#include "bench.h"

#define BENCH_N_DEFAULT	200000
#define BENCH_N_MAX	10000000
#define BENCH_CHUNK	4096

static const char header[] =
	"<?xml version='1.0'?>"
	"<stream:stream xmlns='jabber:server' "
	"xmlns:stream='http://etherx.jabber.org/streams' "
	"xmlns:db='jabber:server:dialback' from='example.com' "
	"to='push.example.org' version='1.0'>";

static const char publish[] =
	"<iq type='set' from='example.com' to='push.example.org' id='%08x'>"
	BENCH_PUBSUB "</iq>\n";

static long	 nstanzas;
static long	 nelements;
static int	 failed;

static void
on_stanza(void *arg, struct xml_node *n)
{
	nstanzas++;
	xml_node_free(n);
}

static void
on_error(void *arg, enum xml_error e, const char *msg)
{
	fprintf(stderr, "xml_bench: %s: %s\n", xml_error_condition(e), msg);
	failed = 1;
}

static void XMLCALL
raw_start(void *arg, const XML_Char *name, const XML_Char **atts)
{
	nelements++;
}

static void XMLCALL
raw_end(void *arg, const XML_Char *name)
{
}

static void
hex(char *dst, size_t nbytes)
{
	static const char	 digits[] = "0123456789abcdef";
	unsigned char		 b[64];
	size_t			 i;

	arc4random_buf(b, nbytes);
	for (i = 0; i < nbytes; i++) {
		dst[i * 2] = digits[b[i] >> 4];
		dst[i * 2 + 1] = digits[b[i] & 0xf];
	}
	dst[nbytes * 2] = '\0';
}

int
main(int argc, char *argv[])
{
	struct xml_limits	 xl = { STANZA_MAX_DEFAULT, XML_DEPTH_DEFAULT,
				    XML_ATTRS_DEFAULT };
	struct xml_stream_cb	 cb = { NULL, on_stanza, NULL, on_error };
	struct xml_stream	*xs;
	XML_Parser		 p;
	const char		*errstr;
	char			*doc, node[NODE_MAX + 1];
	char			 secret[SECRET_HEX + 1];
	size_t			 len, off, n, cap;
	double			 t0, t_xml, t_raw;
	long			 i, count = BENCH_N_DEFAULT;

	if (argc > 1) {
		count = strtonum(argv[1], 1, BENCH_N_MAX, &errstr);
		if (errstr != NULL) {
			fprintf(stderr, "usage: xml_bench [count]: %s\n",
			    errstr);
			return (1);
		}
	}
	cap = sizeof(header) + count * (sizeof(publish) + 128);
	if ((doc = malloc(cap)) == NULL) {
		perror("malloc");
		return (1);
	}
	len = strlcpy(doc, header, cap);
	for (i = 0; i < count; i++) {
		hex(node, 16);		/* a UUID's worth */
		hex(secret, SECRET_LEN);
		len += snprintf(doc + len, cap - len, publish,
		    (unsigned int)i, node, secret);
	}

	if ((xs = xml_stream_new(&xl, &cb, NULL)) == NULL) {
		fprintf(stderr, "xml_stream_new failed\n");
		return (1);
	}
	t0 = now();
	for (off = 0; off < len && !failed; off += n) {
		n = len - off < BENCH_CHUNK ? len - off : BENCH_CHUNK;
		if (xml_stream_feed(xs, doc + off, n) == -1)
			break;
	}
	t_xml = now() - t0;
	xml_stream_free(xs);
	if (failed || nstanzas != count) {
		fprintf(stderr, "xml_bench: %ld of %ld stanzas\n", nstanzas,
		    count);
		return (1);
	}

	p = XML_ParserCreateNS("UTF-8", '\1');
	XML_SetElementHandler(p, raw_start, raw_end);
	t0 = now();
	for (off = 0; off < len; off += n) {
		n = len - off < BENCH_CHUNK ? len - off : BENCH_CHUNK;
		if (XML_Parse(p, doc + off, n, 0) != XML_STATUS_OK)
			break;
	}
	t_raw = now() - t0;
	XML_ParserFree(p);

	printf("xml: %ld stanzas (%zu bytes) in %.3f s: %.0f stanzas/s, "
	    "%.1f MB/s\n", count, len, t_xml, count / t_xml,
	    len / t_xml / 1e6);
	printf("raw expat, same input: %.3f s: %.0f stanzas/s "
	    "(%ld elements)\n", t_raw, count / t_raw, nelements);
	free(doc);
	return (0);
}
