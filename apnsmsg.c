/*
 * The texts of APNs: the payloads we send, the reason in the body of an
 * answer, and the outcome class of a status and reason.  No I/O and no
 * state here, so the parser can be fuzzed alone.
 */

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "monalpushd.h"

const char *
apns_kind_name(int kind)
{
	static const char *names[APNS_KIND_MAX] = { "ok", "dead-token",
	    "throttled", "operator", "transient", "queue-full" };

	if (kind < 0 || kind >= APNS_KIND_MAX)
		return ("unknown");
	return (names[kind]);
}

/*
 * The outcome classes of PROTOCOL.md section 5.  500 and 503 come back
 * as transient; the caller retries those before it reports them.
 */
int
apns_classify(int status, const char *reason)
{
	switch (status) {
	case 200:
		return (APNS_OK);
	case 410:
		return (APNS_DEAD_TOKEN);
	case 400:
		if (strcmp(reason, "BadDeviceToken") == 0 ||
		    strcmp(reason, "DeviceTokenNotForTopic") == 0)
			return (APNS_DEAD_TOKEN);
		return (APNS_OPERATOR);
	case 429:
		if (strcmp(reason, "TooManyProviderTokenUpdates") == 0)
			return (APNS_OPERATOR);
		return (APNS_THROTTLED);
	case 0:
	case 500:
	case 503:
		return (APNS_TRANSIENT);
	default:
		return (APNS_OPERATOR);
	}
}

/*
 * The response body: {"reason":"...","timestamp":N}.  A hand-written
 * parser rather than a JSON library: two fields of a body we cap at
 * APNS_BODY_MAX, no nesting, and every read checked against len, which
 * keeps it small enough to fuzz and to read.  Anything that is not one
 * flat JSON object of strings, numbers and literals is refused (-1).
 */
struct jp {
	const char	*p;
	const char	*end;
};

static void
jp_ws(struct jp *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' ||
	    *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static int
jp_hex(int c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	if (c >= 'a' && c <= 'f')
		return (c - 'a' + 10);
	if (c >= 'A' && c <= 'F')
		return (c - 'A' + 10);
	return (-1);
}

/* A string; out NULL skips it.  -1 on bad syntax or when out is short. */
static int
jp_string(struct jp *j, char *out, size_t outlen)
{
	size_t	 o = 0;
	int	 c, i, h, u;

	if (j->p >= j->end || *j->p != '"')
		return (-1);
	j->p++;
	for (;;) {
		if (j->p >= j->end)
			return (-1);
		c = (unsigned char)*j->p++;
		if (c == '"')
			break;
		if (c < 0x20)
			return (-1);
		if (c == '\\') {
			if (j->p >= j->end)
				return (-1);
			c = *j->p++;
			switch (c) {
			case '"': case '\\': case '/':
				break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'n': c = '\n'; break;
			case 'r': c = '\r'; break;
			case 't': c = '\t'; break;
			case 'u':
				if (j->end - j->p < 4)
					return (-1);
				for (u = 0, i = 0; i < 4; i++) {
					if ((h = jp_hex(j->p[i])) == -1)
						return (-1);
					u = u << 4 | h;
				}
				j->p += 4;
				/* Reasons are ASCII names; keep no more. */
				c = (u >= 0x20 && u < 0x7f) ? u : '?';
				break;
			default:
				return (-1);
			}
		}
		if (out != NULL) {
			if (o + 1 >= outlen)
				return (-1);
			out[o++] = c;
		}
	}
	if (out != NULL)
		out[o] = '\0';
	return (0);
}

/* A JSON number; *v gets it when it is a non-negative integer. */
static int
jp_number(struct jp *j, int64_t *v, int *isint)
{
	int64_t	 n = 0;
	int	 digits = 0, ovf = 0;

	*isint = 1;
	if (j->p < j->end && *j->p == '-') {
		*isint = 0;
		j->p++;
	}
	if (j->p < j->end && *j->p == '0') {
		j->p++;
		digits = 1;
	} else {
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
			if (n > (INT64_MAX - (*j->p - '0')) / 10)
				ovf = 1;
			else
				n = n * 10 + (*j->p - '0');
			j->p++;
			digits++;
		}
	}
	if (digits == 0)
		return (-1);
	if (j->p < j->end && *j->p == '.') {
		*isint = 0;
		j->p++;
		for (digits = 0; j->p < j->end && *j->p >= '0' &&
		    *j->p <= '9'; j->p++)
			digits++;
		if (digits == 0)
			return (-1);
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		*isint = 0;
		j->p++;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		for (digits = 0; j->p < j->end && *j->p >= '0' &&
		    *j->p <= '9'; j->p++)
			digits++;
		if (digits == 0)
			return (-1);
	}
	if (ovf)
		*isint = 0;
	*v = n;
	return (0);
}

static int
jp_literal(struct jp *j)
{
	static const char	*lits[] = { "true", "false", "null" };
	size_t			 i, n;

	for (i = 0; i < sizeof(lits) / sizeof(lits[0]); i++) {
		n = strlen(lits[i]);
		if ((size_t)(j->end - j->p) >= n &&
		    memcmp(j->p, lits[i], n) == 0) {
			j->p += n;
			return (0);
		}
	}
	return (-1);
}

int
apns_parse_reason(const char *buf, size_t len, char *reason, size_t reasonlen,
    int64_t *timestamp)
{
	struct jp	 j;
	char		 key[32];
	int64_t		 v;
	int		 isint, first = 1;

	if (reasonlen == 0)
		return (-1);
	reason[0] = '\0';
	*timestamp = 0;
	j.p = buf;
	j.end = buf + len;
	jp_ws(&j);
	if (j.p >= j.end || *j.p++ != '{')
		return (-1);
	for (;;) {
		jp_ws(&j);
		if (j.p >= j.end)
			return (-1);
		if (*j.p == '}' && first) {
			j.p++;
			break;
		}
		first = 0;
		/* Keys longer than ours are skipped as unknown. */
		if (jp_string(&j, key, sizeof(key)) == -1) {
			key[0] = '\0';
			if (jp_string(&j, NULL, 0) == -1)
				return (-1);
		}
		jp_ws(&j);
		if (j.p >= j.end || *j.p++ != ':')
			return (-1);
		jp_ws(&j);
		if (j.p >= j.end)
			return (-1);
		if (*j.p == '"') {
			if (strcmp(key, "reason") == 0) {
				if (jp_string(&j, reason, reasonlen) == -1) {
					reason[0] = '\0';
					return (-1);
				}
			} else if (jp_string(&j, NULL, 0) == -1)
				return (-1);
		} else if (*j.p == '-' || (*j.p >= '0' && *j.p <= '9')) {
			if (jp_number(&j, &v, &isint) == -1)
				return (-1);
			if (strcmp(key, "timestamp") == 0) {
				if (!isint)
					return (-1);
				*timestamp = v;
			}
		} else if (jp_literal(&j) == -1)
			return (-1);
		jp_ws(&j);
		if (j.p >= j.end)
			return (-1);
		if (*j.p == ',') {
			j.p++;
			continue;
		}
		if (*j.p++ != '}')
			return (-1);
		break;
	}
	jp_ws(&j);
	return (j.p == j.end ? 0 : -1);
}

/* Append s as a JSON string; -1 when it does not fit. */
static int
json_str(char *buf, size_t len, size_t *off, const char *s)
{
	static const char	 hex[] = "0123456789abcdef";
	size_t			 o = *off;
	unsigned char		 c;

	if (o + 1 >= len)
		return (-1);
	buf[o++] = '"';
	for (; *s != '\0'; s++) {
		c = *s;
		if (o + 7 >= len)
			return (-1);
		if (c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = c;
		} else if (c < 0x20) {
			memcpy(buf + o, "\\u00", 4);
			buf[o + 4] = hex[c >> 4];
			buf[o + 5] = hex[c & 15];
			o += 6;
		} else
			buf[o++] = c;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	*off = o;
	return (0);
}

static int
json_raw(char *buf, size_t len, size_t *off, const char *s)
{
	size_t	 n = strlen(s);

	if (*off + n >= len)
		return (-1);
	memcpy(buf + *off, s, n + 1);
	*off += n;
	return (0);
}

/*
 * Payloads carry nothing of the message: alerts a generic text that the
 * app's notification extension replaces, the others only wake the app.
 */
int
apns_payload(int type, int mutable, char *buf, size_t len)
{
	size_t	 off = 0, max;

	max = type == PRIO_VOIP ? APNS_PAYLOAD_VOIP_MAX : APNS_PAYLOAD_MAX;
	if (len > max + 1)
		len = max + 1;
	switch (type) {
	case PRIO_ALERT:
		if (json_raw(buf, len, &off, "{\"aps\":{\"alert\":{\"title\":")
		    == -1 || json_str(buf, len, &off, "New Message") == -1 ||
		    json_raw(buf, len, &off, ",\"body\":") == -1 ||
		    json_str(buf, len, &off, "You have a new message") == -1 ||
		    json_raw(buf, len, &off, "},\"sound\":\"default\"") == -1 ||
		    (mutable && json_raw(buf, len, &off,
		    ",\"mutable-content\":1") == -1) ||
		    json_raw(buf, len, &off, "}}") == -1)
			return (-1);
		break;
	case PRIO_BACKGROUND:
		if (json_raw(buf, len, &off,
		    "{\"aps\":{\"content-available\":1}}") == -1)
			return (-1);
		break;
	case PRIO_VOIP:
		if (json_raw(buf, len, &off,
		    "{\"aps\":{\"content-available\":1},\"voip\":1}") == -1)
			return (-1);
		break;
	default:
		return (-1);
	}
	return ((int)off);
}
