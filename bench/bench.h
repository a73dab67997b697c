/*
 * Helpers shared by the bench programs: clocks, latency samples, the
 * CPU and memory of processes from /proc, random tokens and the
 * XEP-0357 publish they send.  Each bench .c file is a program of its
 * own, so everything here is static; inline keeps a program that uses
 * only some of it free of unused-function warnings.
 *
 * Include after "monalpushd.h" (for TOKEN_MIN).
 */

#ifndef BENCH_H
#define BENCH_H

#include <sys/types.h>
#include <sys/resource.h>

#include <err.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LAT_FIRST		(1024 * 1024)	/* samples, first allocation */
#define LAT_MAX			(64 * 1024 * 1024)	/* samples kept */

/*
 * The pubsub element of a publish (PROTOCOL.md section 4) with two
 * %s: node and secret.  The caller wraps it in its <iq>.
 */
#define BENCH_PUBSUB							\
	"<pubsub xmlns='http://jabber.org/protocol/pubsub'>"		\
	"<publish node='%s'><item>"					\
	"<notification xmlns='urn:xmpp:push:0'>"			\
	"<x xmlns='jabber:x:data' type='submit'>"			\
	"<field var='FORM_TYPE'><value>urn:xmpp:push:summary</value>"	\
	"</field>"							\
	"<field var='message-count'><value>1</value></field>"		\
	"<field var='last-message-body'><value>New Message!</value>"	\
	"</field>"							\
	"</x></notification></item></publish>"				\
	"<publish-options><x xmlns='jabber:x:data' type='submit'>"	\
	"<field var='FORM_TYPE'><value>"				\
	"http://jabber.org/protocol/pubsub#publish-options</value></field>" \
	"<field var='secret'><value>%s</value></field>"			\
	"</x></publish-options></pubsub>"

/* Latencies in microseconds; the largest is kept past LAT_MAX too. */
struct lat {
	uint32_t	*l_us;
	size_t		 l_n, l_size;
	uint64_t	 l_max;
};

static inline uint64_t
now_ns(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec);
}

/* Monotonic seconds. */
static inline double
now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec + ts.tv_nsec / 1e9);
}

static inline void
lat_add(struct lat *l, uint64_t ns)
{
	uint32_t	*n;
	uint64_t	 us = ns / 1000;

	if (us > l->l_max)
		l->l_max = us;
	if (l->l_n == l->l_size) {
		if (l->l_size >= LAT_MAX)
			return;
		l->l_size = l->l_size ? l->l_size * 2 : LAT_FIRST;
		if ((n = reallocarray(l->l_us, l->l_size, sizeof(*n))) ==
		    NULL)
			err(1, "%s", __func__);
		l->l_us = n;
	}
	l->l_us[l->l_n++] = us > UINT32_MAX ? UINT32_MAX : us;
}

static inline int
lat_cmp(const void *a, const void *b)
{
	uint32_t	 x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x < y ? -1 : x > y);
}

/* Sort once, after the last lat_add() and before lat_pct(). */
static inline void
lat_sort(struct lat *l)
{
	qsort(l->l_us, l->l_n, sizeof(*l->l_us), lat_cmp);
}

static inline uint32_t
lat_pct(const struct lat *l, double p)
{
	if (l->l_n == 0)
		return (0);
	return (l->l_us[(size_t)(p / 100.0 * (l->l_n - 1) + 0.5)]);
}

/* User plus system seconds between two getrusage() calls. */
static inline double
rusage_secs(const struct rusage *ru0, const struct rusage *ru1)
{
	return ((ru1->ru_utime.tv_sec - ru0->ru_utime.tv_sec) +
	    (ru1->ru_stime.tv_sec - ru0->ru_stime.tv_sec) +
	    ((ru1->ru_utime.tv_usec - ru0->ru_utime.tv_usec) +
	    (ru1->ru_stime.tv_usec - ru0->ru_stime.tv_usec)) / 1e6);
}

/* utime + stime of a process in clock ticks, -1 when unreadable. */
static inline long long
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
	/* the name in parentheses may hold spaces: count from its end */
	if ((p = strrchr(buf, ')')) == NULL)
		return (-1);
	/* after ")": state is field 3; utime is field 14 */
	for (i = 2; i < 14 && p != NULL; i++)
		p = strchr(p + 1, ' ');
	if (p == NULL || sscanf(p + 1, "%lu %lu", &ut, &st) != 2)
		return (-1);
	return ((long long)(ut + st));
}

/* VmRSS in KiB, -1 when unreadable. */
static inline long
proc_rss(pid_t pid)
{
	char	 path[64], line[256];
	FILE	*fp;
	long	 kb = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((fp = fopen(path, "r")) == NULL)
		return (-1);
	while (fgets(line, sizeof(line), fp) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(fp);
	return (kb);
}

/*
 * Jiffies from /proc/stat, all and idle plus iowait, of the machine
 * (cpu -1) or of one core; zero when unreadable.
 */
static inline void
stat_cpu(int cpu, unsigned long long *total, unsigned long long *idle)
{
	unsigned long long	 v[8];
	char			 line[512], name[16];
	size_t			 len;
	FILE			*fp;
	int			 i, n;

	*total = *idle = 0;
	if (cpu == -1)
		len = strlcpy(name, "cpu", sizeof(name));
	else
		len = snprintf(name, sizeof(name), "cpu%d", cpu);
	if ((fp = fopen("/proc/stat", "r")) == NULL)
		return;
	while (fgets(line, sizeof(line), fp) != NULL) {
		if (strncmp(line, name, len) != 0 || line[len] != ' ')
			continue;
		n = sscanf(line + len, "%llu %llu %llu %llu %llu %llu %llu "
		    "%llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
		    &v[7]);
		for (i = 0; i < n; i++)
			*total += v[i];
		if (n >= 5)
			*idle = v[3] + v[4];
		break;
	}
	fclose(fp);
}

/* The number argument of option ch, or exit naming both. */
static inline long long
optnum(int ch, const char *arg, long long min, long long max)
{
	const char	*errstr;
	long long	 n;

	n = strtonum(arg, min, max, &errstr);
	if (errstr != NULL)
		errx(1, "-%c %s: %s", ch, arg, errstr);
	return (n);
}

/* A random device token of TOKEN_MIN hex digits; buf holds one more. */
static inline void
bench_token(char *buf)
{
	int	 i;

	for (i = 0; i < TOKEN_MIN; i++)
		buf[i] = "0123456789abcdef"[arc4random_uniform(16)];
	buf[TOKEN_MIN] = '\0';
}

#endif /* BENCH_H */
