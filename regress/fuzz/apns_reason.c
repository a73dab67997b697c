/*
 * libFuzzer target: the APNs response body parser must never read or
 * write out of bounds, and always leave a terminated reason.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "monalpushd.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	*buf, reason[APNS_REASON_MAX];
	int64_t	 ts = 0;

	/* An exact-size copy, so ASan sees any read past the end. */
	if ((buf = malloc(size ? size : 1)) == NULL)
		return (0);
	memcpy(buf, data, size);
	memset(reason, 'x', sizeof(reason));
	if (apns_parse_reason(buf, size, reason, sizeof(reason), &ts) == 0 &&
	    memchr(reason, '\0', sizeof(reason)) == NULL)
		abort();
	free(buf);
	return (0);
}
