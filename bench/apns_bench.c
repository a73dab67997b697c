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

#define AB_WINDOW_DEFAULT	256
#define AB_WINDOW_MAX		65536
#define AB_SECONDS_DEFAULT	5
#define AB_WARMUP_DEFAULT	1
#define AB_TOKENS		4096	/* distinct device tokens */
#define AB_LAT_MAX		(64 * 1024 * 1024)	/* samples kept */
#define AB_CONNECT_WAIT		10	/* seconds for the first answer */

struct ab_slot {
	uint64_t	 sl_start;		/* ns, monotonic */
};

static struct event_base *ab_base;
static struct apns_app	*ab_app;
static struct ab_slot	*ab_slots;
static char		 ab_tokens[AB_TOKENS][TOKEN_MIN + 1];
static uint32_t		*ab_lat;		/* microseconds */
static size_t		 ab_nlat, ab_latsize;
static uint64_t		 ab_done, ab_bad, ab_next;
static int		 ab_measuring, ab_stopping;
static uint64_t		 ab_maxlat;

static __attribute__((__noreturn__)) void
usage(void)
{
	fprintf(stderr, "usage: apns_bench -p port -d certdir [-c conns] "
	    "[-w window] [-t seconds] [-W warmup] [-P mockpid]\n");
	exit(1);
}

static uint64_t
now_ns(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec);
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

/* utime + stime of a process in clock ticks, -1 when unreadable. */
static long long
proc_cpu(pid_t pid)
{
	char		 path[64], buf[1024], *p;
	unsigned long	 ut, st;
	ssize_t		 n;
	int		 fd, i;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY)) == -1)
		return (-1);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return (-1);
	buf[n] = '\0';
	if ((p = strrchr(buf, ')')) == NULL)
		return (-1);
	/* after ")": state is field 3; utime is field 14 */
	for (i = 2; i < 14 && p != NULL; i++)
		p = strchr(p + 1, ' ');
	if (p == NULL || sscanf(p + 1, "%lu %lu", &ut, &st) != 2)
		return (-1);
	return ((long long)(ut + st));
}

/* Idle share of CPUs 0 and 1 from /proc/stat: jiffies all, idle. */
static void
stat_cores(unsigned long long tot[2], unsigned long long idle[2])
{
	unsigned long long	 v[8];
	char			 line[512];
	FILE			*fp;
	int			 cpu, i, n;

	tot[0] = tot[1] = idle[0] = idle[1] = 0;
	if ((fp = fopen("/proc/stat", "r")) == NULL)
		return;
	while (fgets(line, sizeof(line), fp) != NULL) {
		n = sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu "
		    "%llu", &cpu, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
		    &v[6], &v[7]);
		if (n < 6 || cpu < 0 || cpu > 1)
			continue;
		for (i = 0; i < n - 1; i++)
			tot[cpu] += v[i];
		idle[cpu] = v[3] + v[4];
	}
	fclose(fp);
}

static void
lat_add(uint64_t ns)
{
	uint32_t	*n;
	uint64_t	 us = ns / 1000;

	if (us > ab_maxlat)
		ab_maxlat = us;
	if (ab_nlat == ab_latsize) {
		if (ab_latsize >= AB_LAT_MAX)
			return;
		ab_latsize = ab_latsize ? ab_latsize * 2 : 1024 * 1024;
		if ((n = reallocarray(ab_lat, ab_latsize, sizeof(*n))) ==
		    NULL)
			err(1, "%s", __func__);
		ab_lat = n;
	}
	ab_lat[ab_nlat++] = us > UINT32_MAX ? UINT32_MAX : us;
}

static int
lat_cmp(const void *a, const void *b)
{
	uint32_t	 x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x < y ? -1 : x > y);
}

static uint32_t
lat_pct(double p)
{
	size_t	 i;

	if (ab_nlat == 0)
		return (0);
	i = (size_t)(p / 100.0 * (ab_nlat - 1) + 0.5);
	return (ab_lat[i]);
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
		lat_add(t - ab_slots[id].sl_start);
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
	const char		*dir = NULL, *errstr;
	uint64_t		 t0, t1, done0;
	long long		 mcpu0 = -1, mcpu1 = -1;
	double			 secs, cpu;
	int			 ch, port = 0, conns = 1;
	int			 window = AB_WINDOW_DEFAULT;
	int			 seconds = AB_SECONDS_DEFAULT;
	int			 warmup = AB_WARMUP_DEFAULT, i, j;
	pid_t			 mockpid = 0;
	long			 hz = sysconf(_SC_CLK_TCK);
	unsigned long long	 tot0[2], idle0[2], tot1[2], idle1[2];

	while ((ch = getopt(argc, argv, "c:d:P:p:t:W:w:")) != -1) {
		switch (ch) {
		case 'c':
			conns = strtonum(optarg, 1, APNS_CONNS_MAX, &errstr);
			if (errstr != NULL)
				errx(1, "-c %s: %s", optarg, errstr);
			break;
		case 'd':
			dir = optarg;
			break;
		case 'P':
			mockpid = strtonum(optarg, 1, INT_MAX, &errstr);
			if (errstr != NULL)
				errx(1, "-P %s: %s", optarg, errstr);
			break;
		case 'p':
			port = strtonum(optarg, 1, 65535, &errstr);
			if (errstr != NULL)
				errx(1, "-p %s: %s", optarg, errstr);
			break;
		case 't':
			seconds = strtonum(optarg, 1, 3600, &errstr);
			if (errstr != NULL)
				errx(1, "-t %s: %s", optarg, errstr);
			break;
		case 'W':
			warmup = strtonum(optarg, 0, 3600, &errstr);
			if (errstr != NULL)
				errx(1, "-W %s: %s", optarg, errstr);
			break;
		case 'w':
			window = strtonum(optarg, 1, AB_WINDOW_MAX, &errstr);
			if (errstr != NULL)
				errx(1, "-w %s: %s", optarg, errstr);
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

	for (i = 0; i < AB_TOKENS; i++) {
		for (j = 0; j < TOKEN_MIN; j++)
			ab_tokens[i][j] = "0123456789abcdef"[arc4random_uniform(16)];
		ab_tokens[i][TOKEN_MIN] = '\0';
	}
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
	stat_cores(tot0, idle0);
	t0 = now_ns();
	run_for(seconds);
	t1 = now_ns();
	getrusage(RUSAGE_SELF, &ru1);
	if (mockpid)
		mcpu1 = proc_cpu(mockpid);
	stat_cores(tot1, idle1);
	ab_measuring = 0;
	apns_app_stats(ab_app, &st);
	ab_stopping = 1;
	apns_app_free(ab_app);

	secs = (t1 - t0) / 1e9;
	cpu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
	    (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
	    ((ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) +
	    (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec)) / 1e6;
	qsort(ab_lat, ab_nlat, sizeof(*ab_lat), lat_cmp);
	printf("apns_bench conns=%u/%d window=%d seconds=%.2f requests=%llu "
	    "rate=%.0f p50_us=%u p99_us=%u max_us=%llu errors=%llu "
	    "cpu_client=%.0f%%", st.as_conns, conns, window, secs,
	    (unsigned long long)(ab_done - done0), (ab_done - done0) / secs,
	    lat_pct(50), lat_pct(99), (unsigned long long)ab_maxlat,
	    (unsigned long long)ab_bad, 100.0 * cpu / secs);
	if (mcpu0 >= 0 && mcpu1 >= 0)
		printf(" cpu_mock=%.0f%%",
		    100.0 * (mcpu1 - mcpu0) / hz / secs);
	for (i = 0; i < 2; i++)
		if (tot1[i] > tot0[i])
			printf(" idle_cpu%d=%.0f%%", i, 100.0 *
			    (idle1[i] - idle0[i]) / (tot1[i] - tot0[i]));
	printf("\n");
	return (ab_bad != 0);
}
