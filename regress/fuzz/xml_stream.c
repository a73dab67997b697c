/*
 * libFuzzer target: an s2s stream of arbitrary bytes, fed in pieces
 * whose sizes the input chooses, through the stream parser with the
 * daemon's limits.  Stanzas are freed as the stream code frees them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "monalpushd.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int	errors;

static void
f_open(void *arg, const struct xml_node *n)
{
	(void)xml_node_attr(n, "to");
}

static void
f_stanza(void *arg, struct xml_node *n)
{
	struct xml_buf	 xb;

	xml_buf_init(&xb, 65536);
	xml_buf_node(&xb, n);	/* re-serialise: the writer is fuzzed too */
	xml_buf_free(&xb);
	xml_node_free(n);
}

static void
f_close(void *arg)
{
}

static void
f_error(void *arg, enum xml_error e, const char *msg)
{
	errors++;
	(void)xml_error_condition(e);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct xml_limits	 xl = { 4096, 16, 16 };
	struct xml_stream_cb	 cb = { f_open, f_stanza, f_close, f_error };
	struct xml_stream	*xs;
	size_t			 off = 0, n;

	if (size < 1)
		return (0);
	if ((xs = xml_stream_new(&xl, &cb, NULL)) == NULL)
		return (0);
	while (off < size) {
		n = 1 + data[off] % 64;
		off++;
		if (n > size - off)
			n = size - off;
		if (xml_stream_feed(xs, (const char *)data + off, n) == -1)
			break;
		off += n;
	}
	xml_stream_free(xs);
	return (0);
}
