/*
 * apns.c against regress/mock_apns: the request on the wire, both kinds
 * of auth, each outcome class, retries, GOAWAY replay, the stream limit,
 * the queue bound, and exactly one callback per request.  Plus the
 * response body parser on malformed input.
 */

#include <sys/types.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event.h>

#include "monalpushd.h"
#include "regress.h"

#define NREQ		256
#define KID		"KEYID12345"
#define TEAM		"TEAM123456"
#define TOPIC		"org.example.monal"
#define RUN_MAX		15	/* seconds, any one phase */

static char		 dir[64];
static const char	*mock;
static struct event_base *base;

static struct {
	int		 n;
	struct apns_result res;
} got[NREQ];
static int		 ndone;

static void
cb(uint32_t id, const struct apns_result *r, void *arg)
{
	if (id >= NREQ)
		return;
	got[id].n++;
	got[id].res = *r;
	ndone++;
}

static void
reset(void)
{
	memset(got, 0, sizeof(got));
	ndone = 0;
}

static void
tok(char *buf, int i)
{
	snprintf(buf, TOKEN_MAX + 1, "%064x", i);
}

static uint8_t *
slurp(const char *name, size_t *len)
{
	char		 path[PATH_MAX];
	struct stat	 st;
	uint8_t		*p;
	int		 fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((fd = open(path, O_RDONLY)) == -1 || fstat(fd, &st) == -1 ||
	    (p = malloc(st.st_size + 1)) == NULL ||
	    read(fd, p, st.st_size) != st.st_size) {
		perror(path);
		exit(1);
	}
	close(fd);
	p[st.st_size] = '\0';
	*len = st.st_size;
	return (p);
}

static void
writefile(const char *name, const char *text)
{
	char	 path[PATH_MAX];
	FILE	*fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((fp = fopen(path, "w")) == NULL) {
		perror(path);
		exit(1);
	}
	fputs(text, fp);
	fclose(fp);
}

/* Start the mock with extra args; returns its port, pid in *pid. */
static int
mock_start(pid_t *pid, const char *tag, const char **args)
{
	char		 cert[PATH_MAX], key[PATH_MAX], rec[PATH_MAX];
	char		 stats[PATH_MAX], line[256];
	const char	*argv[32];
	struct pollfd	 pfd;
	size_t		 off = 0;
	int		 p[2], n = 0, port;
	ssize_t		 r;

	snprintf(cert, sizeof(cert), "%s/localhost.pem", dir);
	snprintf(key, sizeof(key), "%s/localhost.key", dir);
	snprintf(rec, sizeof(rec), "%s/%s.jsonl", dir, tag);
	snprintf(stats, sizeof(stats), "%s/%s.stats", dir, tag);
	argv[n++] = mock;
	argv[n++] = "-p";
	argv[n++] = "0";
	argv[n++] = "-c";
	argv[n++] = cert;
	argv[n++] = "-k";
	argv[n++] = key;
	argv[n++] = "-r";
	argv[n++] = rec;
	argv[n++] = "-S";
	argv[n++] = stats;
	while (*args != NULL && n < 31)
		argv[n++] = *args++;
	argv[n] = NULL;
	if (pipe(p) == -1 || (*pid = fork()) == -1) {
		perror("fork");
		exit(1);
	}
	if (*pid == 0) {
		dup2(p[1], STDOUT_FILENO);
		close(p[0]);
		close(p[1]);
		execv(mock, (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	pfd.fd = p[0];
	pfd.events = POLLIN;
	while (off < sizeof(line) - 1 && memchr(line, '\n', off) == NULL) {
		if (poll(&pfd, 1, 10000) <= 0 ||
		    (r = read(p[0], line + off, sizeof(line) - 1 - off)) <= 0)
			break;
		off += r;
	}
	line[off] = '\0';
	close(p[0]);
	if (sscanf(line, "listening on 127.0.0.1 port %d", &port) != 1) {
		printf("FAIL: mock %s did not start: '%s'\n", tag, line);
		kill(*pid, SIGTERM);
		exit(1);
	}
	return (port);
}

static void
mock_stop(pid_t pid)
{
	int	 st;

	kill(pid, SIGTERM);
	waitpid(pid, &st, 0);
}

/* Run the loop until want callbacks came or RUN_MAX passed. */
static int
run_for(int want, int secs)
{
	time_t	 end = time(NULL) + secs;

	while (ndone < want && time(NULL) < end) {
		struct timeval tv = { 0, 100000 };
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	return (ndone >= want);
}

static int
run(int want)
{
	return (run_for(want, RUN_MAX));
}

static void
app_init(struct mp_app *a, int port, int auth)
{
	static uint8_t	*ca, *cert, *key, *jwtkey;
	static size_t	 calen, certlen, keylen, jwtlen;

	if (ca == NULL) {
		ca = slurp("ca.pem", &calen);
		cert = slurp("client.pem", &certlen);
		key = slurp("client.key", &keylen);
		jwtkey = slurp("jwt.key", &jwtlen);
	}
	memset(a, 0, sizeof(*a));
	strlcpy(a->a_name, "test", sizeof(a->a_name));
	strlcpy(a->a_topic, TOPIC, sizeof(a->a_topic));
	strlcpy(a->a_host, "127.0.0.1", sizeof(a->a_host));
	a->a_port = port;
	a->a_auth = auth;
	a->a_ca_mem = ca;
	a->a_ca_len = calen;
	a->a_mutable = 1;
	a->a_expiration = 3600;
	if (auth == APP_AUTH_CERT) {
		a->a_cert_mem = cert;
		a->a_cert_len = certlen;
		a->a_key_mem = key;
		a->a_key_len = keylen;
	} else {
		a->a_key_mem = jwtkey;
		a->a_key_len = jwtlen;
		strlcpy(a->a_keyid, KID, sizeof(a->a_keyid));
		strlcpy(a->a_teamid, TEAM, sizeof(a->a_teamid));
	}
}

static void
opts_init(struct apns_opts *o, int timeout, int retries)
{
	apns_opts_default(o);
	o->ao_timeout = timeout;
	o->ao_retries = retries;
}

/* The record line of a token's request (the last one), or "". */
static int
record_line(const char *tag, const char *token, char *out, size_t outlen,
    int *count)
{
	char	 path[PATH_MAX], *line = NULL;
	size_t	 sz = 0;
	FILE	*fp;

	snprintf(path, sizeof(path), "%s/%s.jsonl", dir, tag);
	out[0] = '\0';
	*count = 0;
	if ((fp = fopen(path, "r")) == NULL)
		return (-1);
	while (getline(&line, &sz, fp) != -1)
		if (strstr(line, token) != NULL) {
			strlcpy(out, line, outlen);
			(*count)++;
		}
	free(line);
	fclose(fp);
	return (0);
}

static long long
stats_get(const char *tag, const char *key)
{
	char	 path[PATH_MAX], buf[4096], pat[64], *p;
	FILE	*fp;
	size_t	 n;

	snprintf(path, sizeof(path), "%s/%s.stats", dir, tag);
	if ((fp = fopen(path, "r")) == NULL)
		return (-1);
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	buf[n] = '\0';
	fclose(fp);
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	if ((p = strstr(buf, pat)) == NULL)
		return (-1);
	return (strtoll(p + strlen(pat), NULL, 10));
}

static void
test_parser(void)
{
	static const char	*bad[] = {
		"", "{", "}", "[]", "{\"reason\"}", "{\"reason\":}",
		"{\"reason\":\"x\"", "{\"reason\":\"x\",}",
		"{\"reason\":\"x\"}}",
		"{\"reason\":\"x\"} x", "{\"reason\":\"\\q\"}",
		"{\"reason\":\"\\u12\"}", "{\"reason\":\"a\nb\"}",
		"{\"reason\":{\"a\":1}}", "{\"reason\":[1]}",
		"{\"timestamp\":1.5}", "{\"timestamp\":-1}",
		"{\"timestamp\":1e3}", "{\"timestamp\":99999999999999999999}",
		"{\"timestamp\":01}", "{\"a\":tru}", "{\"a\":-}", "{\"a\":1.}",
		"{\"reason\":\"0123456789012345678901234567890123456789"
		    "01234567890123456789012345\"}",
		"{'reason':'x'}", "{\"reason\" \"x\"}", "{,}",
	};
	const char	*ok = "{\"reason\":\"Unregistered\",\"timestamp\":"
	    "1700000000123}";
	char		 reason[APNS_REASON_MAX], buf[256];
	const char	*p;
	int64_t		 ts;
	size_t		 i, n;
	int		 allfail, r;

	CHECK(apns_parse_reason(ok, strlen(ok), reason, sizeof(reason),
	    &ts) == 0 && strcmp(reason, "Unregistered") == 0 &&
	    ts == 1700000000123LL, "parse reason and timestamp");
	p = " { \"timestamp\" : 5 , \"x\":null,\"y\":-1.5e-3,"
	    "\"z\":true,\"reason\" : \"Bad\\u0044evice\\\"\" } ";
	r = apns_parse_reason(p, strlen(p), reason, sizeof(reason), &ts);
	CHECK(r == 0 && ts == 5 && strcmp(reason, "BadDevice\"") == 0,
	    "whitespace, other keys, escapes (%d '%s')", r, reason);
	CHECK(apns_parse_reason("{}", 2, reason, sizeof(reason), &ts) == 0 &&
	    reason[0] == '\0' && ts == 0, "empty object");
	allfail = 1;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (apns_parse_reason(bad[i], strlen(bad[i]), reason,
		    sizeof(reason), &ts) != -1) {
			printf("accepted: %s\n", bad[i]);
			allfail = 0;
		}
	CHECK(allfail, "%zu malformed bodies refused",
	    sizeof(bad) / sizeof(bad[0]));
	allfail = 1;
	for (n = 0; n < strlen(ok); n++)
		if (apns_parse_reason(ok, n, reason, sizeof(reason), &ts) != -1)
			allfail = 0;
	CHECK(allfail, "every truncation of a good body refused");
	CHECK(apns_parse_reason(ok, strlen(ok), reason, 5, &ts) == -1,
	    "reason longer than the buffer refused");
	/* Random mutations: only memory safety is asked (run with ASan). */
	srandom(1);
	for (i = 0; i < 200000; i++) {
		n = strlen(ok);
		memcpy(buf, ok, n);
		buf[random() % n] = random() & 0xff;
		buf[random() % n] = "{}\":,\\u0 e-.1"[random() % 14];
		apns_parse_reason(buf, random() % (n + 1), reason,
		    sizeof(reason), &ts);
	}
	CHECK(1, "200000 mutated bodies parsed without a crash");

	CHECK(apns_classify(200, "") == APNS_OK, "200 ok");
	CHECK(apns_classify(410, "ExpiredToken") == APNS_DEAD_TOKEN, "410");
	CHECK(apns_classify(400, "BadDeviceToken") == APNS_DEAD_TOKEN &&
	    apns_classify(400, "DeviceTokenNotForTopic") == APNS_DEAD_TOKEN,
	    "400 dead token reasons");
	CHECK(apns_classify(400, "BadTopic") == APNS_OPERATOR &&
	    apns_classify(403, "InvalidProviderToken") == APNS_OPERATOR &&
	    apns_classify(413, "PayloadTooLarge") == APNS_OPERATOR &&
	    apns_classify(429, "TooManyProviderTokenUpdates") == APNS_OPERATOR,
	    "operator classes");
	CHECK(apns_classify(429, "TooManyRequests") == APNS_THROTTLED, "429");
	CHECK(apns_classify(500, "") == APNS_TRANSIENT &&
	    apns_classify(503, "") == APNS_TRANSIENT, "500 503 transient");

	n = apns_payload(PRIO_ALERT, 1, buf, sizeof(buf));
	CHECK(n > 0 && strstr(buf, "\"mutable-content\":1}") != NULL &&
	    strstr(buf, "\"sound\":\"default\"") != NULL &&
	    apns_parse_reason(buf, n, reason, sizeof(reason), &ts) == -1,
	    "alert payload: %s", buf);
	n = apns_payload(PRIO_BACKGROUND, 1, buf, sizeof(buf));
	CHECK(strcmp(buf, "{\"aps\":{\"content-available\":1}}") == 0,
	    "background payload");
	n = apns_payload(PRIO_VOIP, 1, buf, sizeof(buf));
	CHECK(n > 0 && strstr(buf, "content-available") != NULL,
	    "voip payload: %s", buf);
	CHECK(apns_payload(PRIO_ALERT, 1, buf, 20) == -1,
	    "payload too large for its buffer refused");
}

static void
test_cert(void)
{
	struct apns_app		*app;
	struct apns_opts	 o;
	struct mp_app		 a;
	struct apns_stats	 st;
	char			 t[TOKEN_MAX + 1], line[8192], ca[PATH_MAX];
	const char		*args[] = { "-C", ca, NULL };
	long long		 expv;
	char			*p;
	pid_t			 pid;
	int			 port, cnt, i, ok;
	time_t			 now;

	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	reset();
	port = mock_start(&pid, "cert", args);
	app_init(&a, port, APP_AUTH_CERT);
	strlcpy(a.a_collapse, "c1", sizeof(a.a_collapse));
	opts_init(&o, 5, 2);
	app = apns_app_new(base, &a, &o, cb, NULL);
	CHECK(app != NULL, "cert app created");
	if (app == NULL)
		return;
	tok(t, 1);
	CHECK(apns_send(app, 1, t, PRIO_ALERT) == 0, "send alert");
	tok(t, 2);
	apns_send(app, 2, t, PRIO_BACKGROUND);
	tok(t, 3);
	apns_send(app, 3, t, PRIO_VOIP);
	CHECK(apns_send(app, 4, "abc", PRIO_ALERT) == -1 && errno == EINVAL,
	    "short token refused");
	now = time(NULL);
	CHECK(run(3), "three answers");
	ok = 1;
	for (i = 1; i <= 3; i++)
		if (got[i].n != 1 || got[i].res.ar_kind != APNS_OK ||
		    got[i].res.ar_status != 200)
			ok = 0;
	CHECK(ok, "cert auth: 200 -> APNS_OK, once each");

	tok(t, 1);
	record_line("cert", t, line, sizeof(line), &cnt);
	CHECK(cnt == 1, "alert recorded once");
	CHECK(strstr(line, "\"path\":\"/3/device/") != NULL &&
	    strstr(line, "\"method\":\"POST\"") != NULL, "POST /3/device/");
	CHECK(strstr(line, "\"apns-push-type\":\"alert\"") != NULL &&
	    strstr(line, "\"apns-priority\":\"10\"") != NULL &&
	    strstr(line, "\"apns-topic\":\"" TOPIC "\"") != NULL &&
	    strstr(line, "\"apns-collapse-id\":\"c1\"") != NULL,
	    "alert headers: %s", line);
	expv = (p = strstr(line, "\"apns-expiration\":\"")) ? strtoll(p + 19,
	    NULL, 10) : 0;
	CHECK(expv >= now + 3600 - 5 && expv <= now + 3600 + 5,
	    "apns-expiration absolute now + ttl (%lld)", expv);
	CHECK(strstr(line, "mutable-content\\\":1") != NULL &&
	    strstr(line, "authorization") == NULL,
	    "alert body, no authorization header");
	tok(t, 2);
	record_line("cert", t, line, sizeof(line), &cnt);
	CHECK(strstr(line, "\"apns-push-type\":\"background\"") != NULL &&
	    strstr(line, "\"apns-priority\":\"5\"") != NULL &&
	    strstr(line, "content-available") != NULL, "background headers");
	tok(t, 3);
	record_line("cert", t, line, sizeof(line), &cnt);
	CHECK(strstr(line, "\"apns-push-type\":\"voip\"") != NULL &&
	    strstr(line, "\"apns-priority\":\"10\"") != NULL &&
	    strstr(line, "\"apns-topic\":\"" TOPIC ".voip\"") != NULL,
	    "voip headers");
	apns_app_stats(app, &st);
	CHECK(st.as_conns == 1 && st.as_requests == 3 &&
	    st.as_kind[APNS_OK] == 3, "stats: 1 connection, 3 ok");
	apns_app_free(app);

	/* Without a client certificate the mock's TLS refuses us. */
	reset();
	app_init(&a, port, APP_AUTH_CERT);
	a.a_cert_mem = a.a_key_mem = NULL;
	a.a_cert_len = a.a_key_len = 0;
	opts_init(&o, 1, 0);
	app = apns_app_new(base, &a, &o, cb, NULL);
	CHECK(app == NULL, "cert app without a certificate refused");
	mock_stop(pid);
}

static void
test_token(void)
{
	struct apns_app		*app;
	struct apns_opts	 o;
	struct mp_app		 a;
	char			 t[TOKEN_MAX + 1], pub[PATH_MAX];
	char			 line[8192];
	const char		*args[] = { "-J", pub, "-K", KID, "-T", TEAM,
				    NULL };
	pid_t			 pid;
	int			 port, i, ok, cnt;

	snprintf(pub, sizeof(pub), "%s/jwt.pub", dir);
	reset();
	port = mock_start(&pid, "token", args);
	app_init(&a, port, APP_AUTH_TOKEN);
	opts_init(&o, 5, 2);
	app = apns_app_new(base, &a, &o, cb, NULL);
	CHECK(app != NULL, "token app created");
	for (i = 0; i < 20; i++) {
		tok(t, 100 + i);
		apns_send(app, i, t, PRIO_ALERT);
	}
	CHECK(run(20), "20 answers");
	for (ok = 1, i = 0; i < 20; i++)
		if (got[i].n != 1 || got[i].res.ar_kind != APNS_OK)
			ok = 0;
	CHECK(ok, "token auth: all APNS_OK");
	tok(t, 100);
	record_line("token", t, line, sizeof(line), &cnt);
	CHECK(strstr(line, "\"authorization\":\"bearer ey") != NULL,
	    "authorization bearer header sent");
	apns_app_free(app);
	kill(pid, SIGUSR1);
	for (i = 0; i < 500 && stats_get("token", "requests") < 20; i++)
		poll(NULL, 0, 10);
	CHECK(stats_get("token", "connections") == 1,
	    "token auth: no second connection before the token is proven");

	/* A key id the mock does not know: 403, an operator problem. */
	reset();
	app_init(&a, port, APP_AUTH_TOKEN);
	strlcpy(a.a_keyid, "WRONGKEY00", sizeof(a.a_keyid));
	app = apns_app_new(base, &a, &o, cb, NULL);
	tok(t, 200);
	apns_send(app, 0, t, PRIO_ALERT);
	CHECK(run(1) && got[0].res.ar_status == 403 &&
	    got[0].res.ar_kind == APNS_OPERATOR,
	    "wrong key id: 403 %s -> operator", got[0].res.ar_reason);
	apns_app_free(app);
	mock_stop(pid);
}

/* The mock calls tokens older than a second expired: one renewal. */
static void
test_expired(void)
{
	struct apns_app		*app;
	struct apns_opts	 o;
	struct mp_app		 a;
	char			 t[TOKEN_MAX + 1], pub[PATH_MAX];
	char			 line[8192];
	const char		*args[] = { "-J", pub, "-K", KID, "-T", TEAM,
				    "-E", "1", NULL };
	pid_t			 pid;
	int			 port, cnt;

	snprintf(pub, sizeof(pub), "%s/jwt.pub", dir);
	reset();
	port = mock_start(&pid, "expired", args);
	app_init(&a, port, APP_AUTH_TOKEN);
	opts_init(&o, 5, 2);
	o.ao_jwt_renew = 3600;
	o.ao_jwt_min_interval = 1;
	app = apns_app_new(base, &a, &o, cb, NULL);
	tok(t, 1);
	apns_send(app, 1, t, PRIO_ALERT);
	CHECK(run(1) && got[1].res.ar_kind == APNS_OK, "fresh token ok");
	run_for(NREQ, 2);	/* let the token age past the mock's -E 1 */
	tok(t, 2);
	apns_send(app, 2, t, PRIO_ALERT);
	CHECK(run(2) && got[2].res.ar_kind == APNS_OK,
	    "ExpiredProviderToken: renewed and retried, ok (%d %s)",
	    got[2].res.ar_status, got[2].res.ar_reason);
	record_line("expired", t, line, sizeof(line), &cnt);
	CHECK(cnt == 2, "two requests on the wire for it (%d)", cnt);
	apns_app_free(app);
	mock_stop(pid);
}

/* A name, not an IP literal: libunbound answers from /etc/hosts. */
static void
test_dns(void)
{
	struct apns_app		*app;
	struct apns_opts	 o;
	struct mp_app		 a;
	char			 t[TOKEN_MAX + 1];
	const char		*args[] = { NULL };
	pid_t			 pid;
	int			 port;

	if (apns_dns_init(base) == -1) {
		CHECK(0, "apns_dns_init");
		return;
	}
	reset();
	port = mock_start(&pid, "dns", args);
	app_init(&a, port, APP_AUTH_CERT);
	strlcpy(a.a_host, "localhost", sizeof(a.a_host));
	opts_init(&o, 5, 2);
	app = apns_app_new(base, &a, &o, cb, NULL);
	tok(t, 1);
	apns_send(app, 1, t, PRIO_ALERT);
	CHECK(run(1) && got[1].res.ar_kind == APNS_OK,
	    "host name resolved with libunbound, certificate name checked "
	    "(%d %s)", got[1].res.ar_status, got[1].res.ar_reason);
	apns_app_free(app);
	mock_stop(pid);
}

static void
test_script(void)
{
	struct apns_app		*app;
	struct apns_opts	 o;
	struct mp_app		 a;
	struct apns_stats	 st;
	char			 t[TOKEN_MAX + 1], script[4096];
	char			 path[PATH_MAX];
	char			 line[8192];
	const char		*args[] = { "-s", path, NULL };
	pid_t			 pid;
	int			 port, cnt;
	time_t			 start;

	/* Tokens 1..7: 410, 429, once 500, 400, once drop, hang, 500. */
	snprintf(script, sizeof(script),
	    "%064x 410 1700000000123\n%064x 429\n%064x once 500\n"
	    "%064x 400 BadDeviceToken\n%064x once drop\n%064x hang\n"
	    "%064x 500\n", 1, 2, 3, 4, 5, 6, 7);
	writefile("script", script);
	snprintf(path, sizeof(path), "%s/script", dir);
	reset();
	port = mock_start(&pid, "script", args);
	app_init(&a, port, APP_AUTH_CERT);
	opts_init(&o, 1, 1);
	app = apns_app_new(base, &a, &o, cb, NULL);
	/* The drop goes last, alone: it loses whatever shares its conn. */
	for (cnt = 1; cnt <= 7; cnt++) {
		if (cnt == 5)
			continue;
		tok(t, cnt);
		apns_send(app, cnt, t, PRIO_ALERT);
	}
	start = time(NULL);
	CHECK(run(6), "six answers");
	CHECK(time(NULL) - start <= 4, "hang answered within the timeouts");
	tok(t, 5);
	apns_send(app, 5, t, PRIO_ALERT);
	CHECK(run(7), "the seventh");
	CHECK(got[1].res.ar_kind == APNS_DEAD_TOKEN &&
	    got[1].res.ar_status == 410 &&
	    got[1].res.ar_timestamp == 1700000000123LL &&
	    strcmp(got[1].res.ar_reason, "Unregistered") == 0,
	    "410 -> dead token with its timestamp (%lld)",
	    (long long)got[1].res.ar_timestamp);
	CHECK(got[2].res.ar_kind == APNS_THROTTLED &&
	    strcmp(got[2].res.ar_reason, "TooManyRequests") == 0,
	    "429 -> throttled");
	tok(t, 3);
	record_line("script", t, line, sizeof(line), &cnt);
	CHECK(got[3].res.ar_kind == APNS_OK && cnt == 2,
	    "500 once: retried and ok (%d requests)", cnt);
	CHECK(got[4].res.ar_kind == APNS_DEAD_TOKEN &&
	    strcmp(got[4].res.ar_reason, "BadDeviceToken") == 0,
	    "400 BadDeviceToken -> dead token");
	tok(t, 5);
	record_line("script", t, line, sizeof(line), &cnt);
	CHECK(got[5].res.ar_kind == APNS_OK && cnt == 2,
	    "drop once: retried on a new connection and ok (%d)", cnt);
	tok(t, 6);
	record_line("script", t, line, sizeof(line), &cnt);
	CHECK(got[6].res.ar_kind == APNS_TRANSIENT && cnt == 2,
	    "hang: timeout, one retry, then transient (%d tries, %s)", cnt,
	    got[6].res.ar_reason);
	CHECK(got[7].res.ar_kind == APNS_TRANSIENT &&
	    got[7].res.ar_status == 500, "500 always: transient after retry");
	for (cnt = 1; cnt <= 7; cnt++)
		if (got[cnt].n != 1)
			break;
	CHECK(cnt == 8, "each request answered exactly once");
	apns_app_stats(app, &st);
	CHECK(st.as_retries >= 4 && st.as_kind[APNS_TRANSIENT] == 2,
	    "stats count retries and outcomes");
	apns_app_free(app);
	mock_stop(pid);
}

/* 503 with GOAWAY while many requests are in flight on that connection. */
static void
test_goaway(void)
{
	struct apns_app		*app;
	struct apns_opts	 o;
	struct mp_app		 a;
	char			 t[TOKEN_MAX + 1], path[PATH_MAX], s[256];
	const char		*args[] = { "-s", path, NULL };
	pid_t			 pid;
	int			 port, i, once, ok;

	snprintf(s, sizeof(s), "%064x once 503\n", 50);
	writefile("goaway", s);
	snprintf(path, sizeof(path), "%s/goaway", dir);
	reset();
	port = mock_start(&pid, "goaway", args);
	app_init(&a, port, APP_AUTH_CERT);
	opts_init(&o, 5, 2);
	o.ao_max_conns = 1;
	app = apns_app_new(base, &a, &o, cb, NULL);
	for (i = 0; i < 200; i++) {
		tok(t, i);
		apns_send(app, i, t, PRIO_BACKGROUND);
	}
	CHECK(run(200), "200 answers after 503 + GOAWAY (%d)", ndone);
	for (once = 1, ok = 1, i = 0; i < 200; i++) {
		if (got[i].n != 1)
			once = 0;
		if (got[i].res.ar_kind != APNS_OK)
			ok = 0;
	}
	CHECK(once, "every request answered exactly once");
	CHECK(ok, "all ok, the 503 one retried, the rest replayed");
	mock_stop(pid);
	CHECK(stats_get("goaway", "goaways_sent") >= 1, "mock sent GOAWAY");
	apns_app_free(app);
}

static void
test_limit(void)
{
	struct apns_app		*app;
	struct apns_opts	 o;
	struct mp_app		 a;
	char			 t[TOKEN_MAX + 1];
	const char		*args[] = { "-m", "5", NULL };
	pid_t			 pid;
	int			 port, i, ok;

	reset();
	port = mock_start(&pid, "limit", args);
	app_init(&a, port, APP_AUTH_CERT);
	opts_init(&o, 5, 2);
	o.ao_max_conns = 2;
	app = apns_app_new(base, &a, &o, cb, NULL);
	for (i = 0; i < 100; i++) {
		tok(t, i);
		apns_send(app, i, t, PRIO_ALERT);
	}
	CHECK(run(100), "100 answers with -m 5");
	for (ok = 1, i = 0; i < 100; i++)
		if (got[i].n != 1 || got[i].res.ar_kind != APNS_OK)
			ok = 0;
	CHECK(ok, "all ok once");
	apns_app_free(app);
	mock_stop(pid);
	CHECK(stats_get("limit", "streams_over_limit") == 0,
	    "mock saw no stream over its limit");
	CHECK(stats_get("limit", "connections") == 2,
	    "two connections, as max_conns allows (%lld)",
	    stats_get("limit", "connections"));
}

static void
test_queue_and_free(void)
{
	struct apns_app		*app;
	struct apns_opts	 o;
	struct mp_app		 a;
	char			 t[TOKEN_MAX + 1], path[PATH_MAX];
	const char		*args[] = { "-s", path, NULL };
	pid_t			 pid;
	int			 port, i, ok;

	writefile("hang", "* hang\n");
	snprintf(path, sizeof(path), "%s/hang", dir);
	reset();
	port = mock_start(&pid, "hang", args);
	app_init(&a, port, APP_AUTH_CERT);
	opts_init(&o, 10, 2);
	o.ao_queue_max = 5;
	app = apns_app_new(base, &a, &o, cb, NULL);
	for (ok = 1, i = 0; i < 5; i++) {
		tok(t, i);
		if (apns_send(app, i, t, PRIO_ALERT) != 0)
			ok = 0;
	}
	CHECK(ok, "five requests queued");
	tok(t, 5);
	CHECK(apns_send(app, 5, t, PRIO_ALERT) == -1 && errno == ENOBUFS,
	    "sixth refused: queue full");
	run_for(NREQ, 1);	/* runs its bound: everything hangs */
	CHECK(ndone == 0, "nothing answered while the mock hangs");
	apns_app_free(app);
	for (ok = 1, i = 0; i < 5; i++)
		if (got[i].n != 1 || got[i].res.ar_kind != APNS_TRANSIENT)
			ok = 0;
	CHECK(ok && got[5].n == 0,
	    "apns_app_free answers every pending request once");
	mock_stop(pid);
}

static void
test_refused(void)
{
	struct apns_app		*app;
	struct apns_opts	 o;
	struct mp_app		 a;
	char			 t[TOKEN_MAX + 1];
	pid_t			 pid;
	int			 port;
	const char		*args[] = { NULL };

	/* A port that was just free: nobody listens there. */
	port = mock_start(&pid, "gone", args);
	mock_stop(pid);
	reset();
	app_init(&a, port, APP_AUTH_CERT);
	opts_init(&o, 1, 0);
	app = apns_app_new(base, &a, &o, cb, NULL);
	tok(t, 1);
	apns_send(app, 1, t, PRIO_ALERT);
	CHECK(run(1) && got[1].res.ar_kind == APNS_TRANSIENT,
	    "connection refused: transient after retries (%s)",
	    got[1].res.ar_reason);
	apns_app_free(app);
}

int
main(void)
{
	char	 cmd[PATH_MAX + 64];

	signal(SIGPIPE, SIG_IGN);
	log_init(0, 0);
	log_procinit("apns_test");
	test_parser();

	mock = getenv("MOCK_APNS") ? getenv("MOCK_APNS") : "regress/mock_apns";
	if (access(mock, X_OK) == -1) {
		printf("SKIP: %s not built\n", mock);
		REGRESS_EXIT();
	}
	strlcpy(dir, "/tmp/apns_test.XXXXXX", sizeof(dir));
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return (1);
	}
	snprintf(cmd, sizeof(cmd), "sh regress/ca.sh %s localhost client",
	    dir);
	if (system(cmd) != 0) {
		printf("FAIL: regress/ca.sh\n");
		return (1);
	}
	base = event_base_new();
	test_cert();
	test_token();
	test_expired();
	test_dns();
	test_script();
	test_goaway();
	test_limit();
	test_queue_and_free();
	test_refused();
	event_base_free(base);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	system(cmd);
	REGRESS_EXIT();
}
