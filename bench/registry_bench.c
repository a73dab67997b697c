/*
 * registry.c at scale: loads N registrations (default 1,000,000), then
 * measures lookups, grouped timestamp updates, synced registrations,
 * a dead-token deletion, a count, and the bytes per record on disk.
 *
 * usage: registry_bench [-k] [-c cache-MiB] [-d dir] [-g group] [-n records]
 *	-c	write DB_CONFIG with this cache size before opening
 *	-d	database directory (default: a new one under /tmp)
 *	-g	timestamp updates per registry_flush (one event-loop turn)
 *	-k	keep the directory
 */

#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <err.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "monalpushd.h"
#include "bench.h"

#define BENCH_RECORDS	1000000
#define BENCH_LOOKUPS	1000000
#define BENCH_MARKS	500000
#define BENCH_RUNS	3
#define BENCH_SYNCED	3000
#define BENCH_GROUP	1000
#define BENCH_APPS	2
#define NODE_UUID	36

struct node {
	char		 n_node[NODE_UUID + 1];
	uint8_t		 n_secret[SECRET_LEN];
};

static const char	*apps[BENCH_APPS] = { "monalProdiOS", "monalProdMac" };

static void
random_node(char *buf)
{
	uint32_t	 r[4];

	arc4random_buf(r, sizeof(r));
	snprintf(buf, NODE_UUID + 1, "%08X-%04X-4%03X-%04X-%04X%08X", r[0],
	    r[1] >> 16, r[1] & 0xfff, (r[2] >> 16 & 0x3fff) | 0x8000,
	    r[2] & 0xffff, r[3]);
}

static void
random_token(char *buf)
{
	uint8_t		 b[TOKEN_MIN / 2];
	size_t		 i;

	arc4random_buf(b, sizeof(b));
	for (i = 0; i < sizeof(b); i++)
		snprintf(buf + 2 * i, 3, "%02x", b[i]);
}

static long long
dir_bytes(const char *dir, const char *prefix)
{
	DIR		*d;
	struct dirent	*de;
	struct stat	 st;
	char		 path[PATH_MAX + 256];
	long long	 total = 0;

	if ((d = opendir(dir)) == NULL)
		err(1, "%s", dir);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || (prefix != NULL &&
		    strncmp(de->d_name, prefix, strlen(prefix)) != 0))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &st) == 0)
			total += (long long)st.st_blocks * 512;
	}
	closedir(d);
	return (total);
}

static void
peak_rss(void)
{
	FILE	*fp;
	char	 line[256];

	if ((fp = fopen("/proc/self/status", "r")) == NULL)
		return;
	while (fgets(line, sizeof(line), fp) != NULL)
		if (strncmp(line, "VmHWM:", 6) == 0)
			printf("peak resident memory (with %zu-byte test "
			    "array per node):%s", sizeof(struct node),
			    line + 6);
	fclose(fp);
}

static void
write_dbconfig(const char *dir, long mib)
{
	FILE	*fp;
	char	 path[PATH_MAX + 16];

	snprintf(path, sizeof(path), "%s/DB_CONFIG", dir);
	if ((fp = fopen(path, "w")) == NULL)
		err(1, "%s", path);
	fprintf(fp, "set_cachesize %ld %ld 1\n", mib / 1024,
	    (mib % 1024) * 1024 * 1024);
	fclose(fp);
}

static struct registry *
open_reg(const char *dir)
{
	struct registry	*reg;
	char		 ebuf[1024];

	if ((reg = registry_open(dir, NULL, NULL, ebuf, sizeof(ebuf))) ==
	    NULL)
		errx(1, "%s", ebuf);
	return (reg);
}

static void
must(struct registry *reg, int ret, const char *what)
{
	if (ret != REG_OK)
		errx(1, "%s: %s (%s)", what, registry_strerror(ret),
		    registry_errmsg(reg));
}

int
main(int argc, char *argv[])
{
	struct registry		*reg;
	struct reg_record	 rr, *recs;
	struct node		*nodes;
	const char		*errstr;
	char			 dir[PATH_MAX] = "", tmpl[] =
				    "/tmp/registry_bench.XXXXXX";
	char			 token[TOKEN_MIN + 1], node[NODE_UUID + 1];
	char			 cmd[PATH_MAX + 16];
	uint8_t			 secret[SECRET_LEN];
	uint64_t		 count;
	long			 cache = 0;
	size_t			 i, n = BENCH_RECORDS, group = BENCH_GROUP, nd;
	double			 t0, t;
	long long		 dbbytes, all;
	int			 ch, r, keep = 0;

	while ((ch = getopt(argc, argv, "c:d:g:kn:")) != -1) {
		switch (ch) {
		case 'c':
			cache = strtonum(optarg, 1, 65536, &errstr);
			if (errstr != NULL)
				errx(1, "-c %s: %s", optarg, errstr);
			break;
		case 'd':
			strlcpy(dir, optarg, sizeof(dir));
			break;
		case 'g':
			group = strtonum(optarg, 1, 1000000, &errstr);
			if (errstr != NULL)
				errx(1, "-g %s: %s", optarg, errstr);
			break;
		case 'k':
			keep = 1;
			break;
		case 'n':
			n = strtonum(optarg, 1000, 100000000, &errstr);
			if (errstr != NULL)
				errx(1, "-n %s: %s", optarg, errstr);
			break;
		default:
			fprintf(stderr, "usage: registry_bench [-k] "
			    "[-c cache-MiB] [-d dir] [-g group] "
			    "[-n records]\n");
			return (1);
		}
	}
	if (dir[0] == '\0') {
		if (mkdtemp(tmpl) == NULL)
			err(1, "mkdtemp");
		snprintf(dir, sizeof(dir), "%s/db", tmpl);
		if (mkdir(dir, 0700) == -1)
			err(1, "%s", dir);
	}
	if (cache != 0)
		write_dbconfig(dir, cache);
	if ((nodes = calloc(n, sizeof(*nodes))) == NULL)
		err(1, "calloc");

	reg = open_reg(dir);
	registry_bulkload(reg, 1);
	t0 = now();
	for (i = 0; i < n; i++) {
		random_node(nodes[i].n_node);
		random_token(token);
		must(reg, registry_register(reg, "apns", apps[i % BENCH_APPS],
		    nodes[i].n_node, token, "example.org", 1000,
		    nodes[i].n_secret), "register");
	}
	t = now() - t0;
	registry_bulkload(reg, 0);
	printf("load %zu records, unsynced commits: %.1f s, %.0f "
	    "registrations/s\n", n, t, n / t);
	t0 = now();
	must(reg, registry_checkpoint(reg), "checkpoint");
	printf("checkpoint after load: %.1f s\n", now() - t0);
	registry_close(reg);

	dbbytes = dir_bytes(dir, NULL) - dir_bytes(dir, "log.");
	all = dir_bytes(dir, NULL);
	printf("disk after checkpoint and close: %.1f MiB in nodes.db + "
	    "tokens.db = %.0f bytes/record (%.0f + %.0f); %.1f MiB with "
	    "the logs\n", dbbytes / 1048576.0, (double)dbbytes / n,
	    (double)dir_bytes(dir, REG_DB_NODES) / n,
	    (double)dir_bytes(dir, REG_DB_TOKENS) / n, all / 1048576.0);

	t0 = now();
	reg = open_reg(dir);
	printf("reopen with recovery: %.2f s\n", now() - t0);

	/* Warm the cache as a running daemon would be. */
	for (i = 0; i < n; i++)
		(void)registry_get(reg, nodes[i].n_node, &rr);

	for (r = 0; r < BENCH_RUNS; r++) {
		t0 = now();
		for (i = 0; i < BENCH_LOOKUPS; i++) {
			struct node *np = &nodes[arc4random_uniform(n)];

			must(reg, registry_lookup(reg, np->n_node,
			    "example.org", np->n_secret, &rr), "lookup");
		}
		t = now() - t0;
		printf("lookups (random node, domain and secret checked): "
		    "%.0f/s\n", BENCH_LOOKUPS / t);
	}

	for (r = 0; r < BENCH_RUNS; r++) {
		t0 = now();
		for (i = 0; i < BENCH_MARKS; i++) {
			must(reg, registry_mark_success(reg,
			    nodes[arc4random_uniform(n)].n_node,
			    2000 + r * BENCH_MARKS + i), "mark");
			if ((i + 1) % group == 0)
				must(reg, registry_flush(reg), "flush");
		}
		must(reg, registry_flush(reg), "flush");
		t = now() - t0;
		printf("timestamp updates, flushed every %zu, DB_TXN_NOSYNC: "
		    "%.0f/s\n", group, BENCH_MARKS / t);
	}

	t0 = now();
	for (i = 0; i < BENCH_SYNCED; i++) {
		random_node(node);
		random_token(token);
		must(reg, registry_register(reg, "apns", apps[0], node, token,
		    "example.org", 3000, secret), "register");
	}
	t = now() - t0;
	printf("registrations, DB_TXN_SYNC each: %.0f/s (%.2f ms each)\n",
	    BENCH_SYNCED / t, t * 1000 / BENCH_SYNCED);

	t0 = now();
	for (i = 0; i < BENCH_SYNCED; i++) {
		struct node *np = &nodes[arc4random_uniform(n)];

		random_token(token);
		must(reg, registry_register(reg, "apns", apps[0],
		    np->n_node, token, "example.org", 4000, secret),
		    "renew");
	}
	t = now() - t0;
	printf("renewals (token replaced), DB_TXN_SYNC each: %.0f/s\n",
	    BENCH_SYNCED / t);

	random_token(token);
	must(reg, registry_register(reg, "apns", apps[0], nodes[0].n_node,
	    token, "example.org", 5000, secret), "register");
	t0 = now();
	must(reg, registry_delete_by_token(reg, token, 6000000, &recs, &nd),
	    "delete by token");
	printf("delete by token: %zu node in %.2f ms\n", nd,
	    (now() - t0) * 1000);
	registry_records_free(recs, nd);

	t0 = now();
	must(reg, registry_count(reg, apps[0], &count), "count");
	printf("count of one app: %llu in %.2f s\n",
	    (unsigned long long)count, now() - t0);

	peak_rss();
	registry_close(reg);
	all = dir_bytes(dir, NULL);
	printf("disk at the end: %.1f MiB with the logs\n", all / 1048576.0);
	free(nodes);
	if (!keep && tmpl[0] != '\0' && strcmp(tmpl,
	    "/tmp/registry_bench.XXXXXX") != 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpl);
		(void)system(cmd);
	}
	return (0);
}
