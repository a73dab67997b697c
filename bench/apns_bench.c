/*
 * The APNs client alone (apns.c) against regress/mock_apns: keeps a
 * window of requests in flight on C connections and measures requests
 * per second and the latency from apns_send() to the callback.  The
 * mock is started by the caller (bench/run.sh) with -m WINDOW/C so that
 * apns.c needs all C connections to hold the window.
 *
 * usage: apns_bench -p port -d certdir [-c conns] [-w window]
 *	[-t seconds] [-W warmup] [-P mockpid]
 *
 * certdir holds ca.pem and push.localhost.{pem,key} from regress/ca.sh.
 * Prints one line of key=value pairs.
 */

#include <sys/types.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event.h>

#include "monalpushd.h"
#include "bench.h"

#define AB_WINDOW_DEFAULT	256
#define AB_WINDOW_MAX		65536
#define AB_SECONDS_DEFAULT	5
#define AB_WARMUP_DEFAULT	1
#define AB_TOKENS		4096	/* distinct device tokens */
#define AB_CONNECT_WAIT		10	/* seconds for the first answer */
#define AB_CORES		2	/* cpu0.. whose idle share is shown */

struct ab_slot {
	uint64_t	 sl_start;		/* ns, monotonic */
};

static struct event_base *ab_base;
static struct apns_app	*ab_app;
static struct ab_slot	*ab_slots;
static char		 ab_tokens[AB_TOKENS][TOKEN_MIN + 1];
static struct lat	 ab_lat;
static uint64_t		 ab_done, ab_bad, ab_next;
static int		 ab_measuring, ab_stopping;

static __attribute__((__noreturn__)) void
usage(void)
{
	fprintf(stderr, "usage: apns_bench -p port -d certdir [-c conns] "
	    "[-w window] [-t seconds] [-W warmup] [-P mockpid]\n");
	exit(1);
}

static uint8_t *
slurp(const char *dir, const char *name, size_t *len)
{
	char		 path[PATH_MAX];
	struct stat	 st;
	uint8_t		*p;
	int		 fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((fd = open(path, O_RDONLY)) == -1 || fstat(fd, &st) == -1)
		err(1, "%s", path);
	if ((p = malloc(st.st_size + 1)) == NULL)
		err(1, "%s", __func__);
	if (read(fd, p, st.st_size) != st.st_size)
		err(1, "%s", path);
	close(fd);
	p[st.st_size] = '\0';
	*len = st.st_size;
	return (p);
}

static void
send_slot(uint32_t id)
{
	ab_slots[id].sl_start = now_ns();
	if (apns_send(ab_app, id, ab_tokens[ab_next++ % AB_TOKENS],
	    PRIO_BACKGROUND) == -1)
		err(1, "apns_send");
}

static void
result_cb(uint32_t id, const struct apns_result *r, void *arg)
{
	uint64_t	 t = now_ns();

	if (ab_stopping)
		return;
	if (r->ar_kind != APNS_OK) {
		ab_bad++;
		if (ab_bad < 5)
			warnx("request %u: %s status %d %s", id,
			    apns_kind_name(r->ar_kind), r->ar_status,
			    r->ar_reason);
	}
	if (ab_measuring) {
		ab_done++;
		lat_add(&ab_lat, t - ab_slots[id].sl_start);
	}
	send_slot(id);
}

static void
stop_cb(int fd, short ev, void *arg)
{
	event_base_loopbreak(ab_base);
}

/* Run the loop for secs seconds. */
static void
run_for(double secs)
{
	struct event	 ev;
	struct timeval	 tv;

	tv.tv_sec = (time_t)secs;
	tv.tv_usec = (suseconds_t)((secs - tv.tv_sec) * 1e6);
	evtimer_assign(&ev, ab_base, stop_cb, NULL);
	evtimer_add(&ev, &tv);
	event_base_dispatch(ab_base);
	evtimer_del(&ev);
}

int
main(int argc, char *argv[])
{
	struct mp_app		 a;
	struct apns_opts	 o;
	struct apns_stats	 st;
	struct rusage		 ru0, ru1;
	const char		*dir = NULL;
	uint64_t		 t0, t1, done0;
	long long		 mcpu0 = -1, mcpu1 = -1;
	double			 secs, cpu;
	int			 ch, port = 0, conns = 1;
	int			 window = AB_WINDOW_DEFAULT;
	int			 seconds = AB_SECONDS_DEFAULT;
	int			 warmup = AB_WARMUP_DEFAULT, i;
	pid_t			 mockpid = 0;
	long			 hz = sysconf(_SC_CLK_TCK);
	unsigned long long	 tot0[AB_CORES], idle0[AB_CORES];
	unsigned long long	 tot1[AB_CORES], idle1[AB_CORES];

	while ((ch = getopt(argc, argv, "c:d:P:p:t:W:w:")) != -1) {
		switch (ch) {
		case 'c':
			conns = optnum(ch, optarg, 1, APNS_CONNS_MAX);
			break;
		case 'd':
			dir = optarg;
			break;
		case 'P':
			mockpid = optnum(ch, optarg, 1, INT_MAX);
			break;
		case 'p':
			port = optnum(ch, optarg, 1, 65535);
			break;
		case 't':
			seconds = optnum(ch, optarg, 1, 3600);
			break;
		case 'W':
			warmup = optnum(ch, optarg, 0, 3600);
			break;
		case 'w':
			window = optnum(ch, optarg, 1, AB_WINDOW_MAX);
			break;
		default:
			usage();
		}
	}
	if (dir == NULL || port == 0 || optind != argc)
		usage();
	signal(SIGPIPE, SIG_IGN);
	log_init(1, 0);
	log_procinit("apns_bench");
	if ((ab_base = event_base_new()) == NULL)
		errx(1, "event_base_new");

	for (i = 0; i < AB_TOKENS; i++)
		bench_token(ab_tokens[i]);
	memset(&a, 0, sizeof(a));
	strlcpy(a.a_name, "bench", sizeof(a.a_name));
	strlcpy(a.a_topic, "G7YU7X7KRJ.SworIM", sizeof(a.a_topic));
	strlcpy(a.a_host, "127.0.0.1", sizeof(a.a_host));
	a.a_port = port;
	a.a_auth = APP_AUTH_CERT;
	a.a_mutable = 1;
	a.a_expiration = EXPIRATION_DEFAULT;
	a.a_ca_mem = slurp(dir, "ca.pem", &a.a_ca_len);
	a.a_cert_mem = slurp(dir, "push.localhost.pem", &a.a_cert_len);
	a.a_key_mem = slurp(dir, "push.localhost.key", &a.a_key_len);
	apns_opts_default(&o);
	o.ao_max_conns = conns;
	o.ao_queue_max = window + 1;
	o.ao_retries = 0;
	if ((ab_app = apns_app_new(ab_base, &a, &o, result_cb, NULL)) == NULL)
		errx(1, "apns_app_new failed");
	if ((ab_slots = calloc(window, sizeof(*ab_slots))) == NULL)
		err(1, NULL);

	/* One request first: the connection is up when it is answered. */
	send_slot(0);
	for (i = 0; i < AB_CONNECT_WAIT * 10 && ab_next == 1; i++)
		run_for(0.1);
	if (ab_next == 1)
		errx(1, "no answer from the mock in %d s", AB_CONNECT_WAIT);
	for (i = 1; i < window; i++)
		send_slot(i);
	run_for(warmup > 0 ? warmup : 0.2);

	ab_measuring = 1;
	done0 = ab_done;
	getrusage(RUSAGE_SELF, &ru0);
	if (mockpid)
		mcpu0 = proc_cpu(mockpid);
	for (i = 0; i < AB_CORES; i++)
		stat_cpu(i, &tot0[i], &idle0[i]);
	t0 = now_ns();
	run_for(seconds);
	t1 = now_ns();
	getrusage(RUSAGE_SELF, &ru1);
	if (mockpid)
		mcpu1 = proc_cpu(mockpid);
	for (i = 0; i < AB_CORES; i++)
		stat_cpu(i, &tot1[i], &idle1[i]);
	ab_measuring = 0;
	apns_app_stats(ab_app, &st);
	ab_stopping = 1;
	apns_app_free(ab_app);

	secs = (t1 - t0) / 1e9;
	cpu = rusage_secs(&ru0, &ru1);
	lat_sort(&ab_lat);
	printf("apns_bench conns=%u/%d window=%d seconds=%.2f requests=%llu "
	    "rate=%.0f p50_us=%u p99_us=%u max_us=%llu errors=%llu "
	    "cpu_client=%.0f%%", st.as_conns, conns, window, secs,
	    (unsigned long long)(ab_done - done0), (ab_done - done0) / secs,
	    lat_pct(&ab_lat, 50), lat_pct(&ab_lat, 99),
	    (unsigned long long)ab_lat.l_max,
	    (unsigned long long)ab_bad, 100.0 * cpu / secs);
	if (mcpu0 >= 0 && mcpu1 >= 0)
		printf(" cpu_mock=%.0f%%",
		    100.0 * (mcpu1 - mcpu0) / hz / secs);
	for (i = 0; i < AB_CORES; i++)
		if (tot1[i] > tot0[i])
			printf(" idle_cpu%d=%.0f%%", i, 100.0 *
			    (idle1[i] - idle0[i]) / (tot1[i] - tot0[i]));
	printf("\n");
	return (ab_bad != 0);
}
