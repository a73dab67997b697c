/*
 * registry.c under kill -9: a child registers nodes in a loop and writes
 * each one to a pipe only after registry_register() returned.  We kill it
 * after a random number of acknowledgements, recover the environment and
 * check that every acknowledged node is there with its secret, that the
 * token index matches the primary, and that both files verify.
 *
 * usage: registry_crash_test [rounds [max-acks]]	(soak: 500 2000)
 */

#include <sys/types.h>
#include <sys/wait.h>

#include <db.h>
#include <err.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "monalpushd.h"
#include "regress.h"

#define CRASH_ROUNDS	20
#define CRASH_ACKS_MAX	300	/* regular run: a few seconds in all */
#define CRASH_NODES_MAX	200000
#define CRASH_APP	"monalProdiOS"
#define CRASH_DOMAIN	"crash.example"
#define ACK_LINE	(NODE_MAX + SECRET_HEX + 3)

struct ack {
	char		 a_node[NODE_MAX + 1];
	uint8_t		 a_secret[SECRET_LEN];
};

static struct ack	*acks;
static size_t		 nacks, acks_cap;
static char		 tmpdir[] = "/tmp/registry_crash.XXXXXX";
static char		 dbdir[PATH_MAX];

static void
hex(const uint8_t *p, size_t len, char *out)
{
	size_t	 i;

	for (i = 0; i < len; i++)
		snprintf(out + 2 * i, 3, "%02x", p[i]);
}

static int
unhex(const char *s, uint8_t *p, size_t len)
{
	unsigned int	 v;
	size_t		 i;

	for (i = 0; i < len; i++) {
		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return (-1);
		p[i] = v;
	}
	return (0);
}

static void
child(int round, int fd)
{
	struct registry	*reg;
	char		 ebuf[1024], node[NODE_MAX + 1], token[TOKEN_MIN + 1];
	char		 line[ACK_LINE], sh[SECRET_HEX + 1];
	uint8_t		 secret[SECRET_LEN];
	int		 i, ret;

	if ((reg = registry_open(dbdir, NULL, NULL, ebuf, sizeof(ebuf))) ==
	    NULL) {
		fprintf(stderr, "child: %s\n", ebuf);
		_exit(2);
	}
	for (i = 0; i < CRASH_NODES_MAX; i++) {
		snprintf(node, sizeof(node), "crash-%d-%d", round, i);
		snprintf(token, sizeof(token), "%064x", round * 1000000 + i);
		if ((ret = registry_register(reg, "apns", CRASH_APP, node,
		    token, CRASH_DOMAIN, 1000 + i, secret)) != REG_OK) {
			fprintf(stderr, "child: %s: %s\n",
			    registry_strerror(ret), registry_errmsg(reg));
			_exit(3);
		}
		/* Grouped timestamps may be lost, and must not harm. */
		if (i % 3 == 0)
			(void)registry_mark_success(reg, node, 2000 + i);
		if (i % 7 == 0)
			(void)registry_flush(reg);
		hex(secret, SECRET_LEN, sh);
		snprintf(line, sizeof(line), "%s %s\n", node, sh);
		if (write(fd, line, strlen(line)) != (ssize_t)strlen(line))
			_exit(4);
	}
	_exit(0);
}

static int
add_ack(char *line)
{
	struct ack	*a;
	char		*sp;

	if (nacks == acks_cap) {
		if ((a = recallocarray(acks, acks_cap, acks_cap + 4096,
		    sizeof(*acks))) == NULL)
			return (-1);
		acks = a;
		acks_cap += 4096;
	}
	line[strcspn(line, "\n")] = '\0';
	if ((sp = strchr(line, ' ')) == NULL || strlen(sp + 1) != SECRET_HEX)
		return (-1);
	*sp = '\0';
	if (strlcpy(acks[nacks].a_node, line, sizeof(acks[nacks].a_node)) >=
	    sizeof(acks[nacks].a_node) ||
	    unhex(sp + 1, acks[nacks].a_secret, SECRET_LEN) == -1)
		return (-1);
	nacks++;
	return (0);
}

/* Runs one child and kills it after `want' acknowledgements. */
static int
crash_round(int round, size_t want)
{
	FILE	*fp;
	char	 line[ACK_LINE];
	size_t	 got = 0;
	pid_t	 pid;
	int	 p[2], status;

	if (pipe(p) == -1)
		return (-1);
	fflush(stdout);
	if ((pid = fork()) == -1)
		return (-1);
	if (pid == 0) {
		close(p[0]);
		child(round, p[1]);
	}
	close(p[1]);
	fp = fdopen(p[0], "r");
	while (got < want && fgets(line, sizeof(line), fp) != NULL) {
		if (add_ack(line) == -1)
			break;
		got++;
	}
	kill(pid, SIGKILL);
	/* Lines already in the pipe were acknowledged too. */
	while (fgets(line, sizeof(line), fp) != NULL)
		if (add_ack(line) == -1)
			break;
	fclose(fp);
	if (waitpid(pid, &status, 0) == -1)
		return (-1);
	if (got < want) {
		printf("child ended early: status %d\n", status);
		return (-1);
	}
	return (0);
}

static int
verify_file(const char *file)
{
	DB	*db;
	char	 path[PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s/%s", dbdir, file);
	if (db_create(&db, NULL, 0) != 0)
		return (-1);
	/* DB->verify destroys the handle whatever it returns. */
	return (db->verify(db, path, NULL, NULL, 0) == 0 ? 0 : -1);
}

static int64_t
file_records(const char *file)
{
	DB		*db;
	DB_BTREE_STAT	*st;
	char		 path[PATH_MAX + 32];
	int64_t		 n = -1;

	snprintf(path, sizeof(path), "%s/%s", dbdir, file);
	if (db_create(&db, NULL, 0) != 0)
		return (-1);
	if (db->open(db, NULL, path, NULL, DB_BTREE, DB_RDONLY, 0) == 0 &&
	    db->stat(db, NULL, &st, 0) == 0) {
		n = st->bt_ndata;
		free(st);
	}
	db->close(db, 0);
	return (n);
}

static int
check_round(int round, int rounds)
{
	struct registry		*reg;
	struct reg_record	 rr;
	char			 ebuf[1024];
	uint64_t		 count;
	size_t			 i, missing = 0;
	int64_t			 nodes, tokens;

	if ((reg = registry_open(dbdir, NULL, NULL, ebuf, sizeof(ebuf))) ==
	    NULL) {
		CHECK(0, "round %d: recovery: %s", round, ebuf);
		return (-1);
	}
	for (i = 0; i < nacks; i++)
		if (registry_lookup(reg, acks[i].a_node, CRASH_DOMAIN,
		    acks[i].a_secret, &rr) != REG_OK) {
			if (missing++ == 0)
				printf("missing: %s\n", acks[i].a_node);
		}
	(void)registry_count(reg, NULL, &count);
	registry_close(reg);
	nodes = file_records(REG_DB_NODES);
	tokens = file_records(REG_DB_TOKENS);
	if (missing != 0 || count < nacks || count > nacks + round + 1 ||
	    nodes != (int64_t)count || tokens != nodes ||
	    verify_file(REG_DB_NODES) == -1 ||
	    verify_file(REG_DB_TOKENS) == -1) {
		CHECK(0, "round %d: %zu acknowledged, %zu missing, %llu "
		    "stored, files %lld/%lld records", round, nacks, missing,
		    (unsigned long long)count, (long long)nodes,
		    (long long)tokens);
		return (-1);
	}
	if (round == rounds - 1 || rounds <= CRASH_ROUNDS)
		CHECK(1, "round %d: %zu acknowledged nodes all present, "
		    "%llu stored, index matches, files verify", round, nacks,
		    (unsigned long long)count);
	return (0);
}

int
main(int argc, char *argv[])
{
	const char	*errstr;
	char		 cmd[PATH_MAX + 16];
	int		 round, rounds = CRASH_ROUNDS, acksmax = CRASH_ACKS_MAX;

	if (argc > 1 && (rounds = strtonum(argv[1], 1, 100000,
	    &errstr)) == 0)
		errx(1, "rounds %s: %s", argv[1], errstr);
	if (argc > 2 && (acksmax = strtonum(argv[2], 1, CRASH_NODES_MAX / 2,
	    &errstr)) == 0)
		errx(1, "max-acks %s: %s", argv[2], errstr);
	if (mkdtemp(tmpdir) == NULL)
		err(1, "mkdtemp");
	snprintf(dbdir, sizeof(dbdir), "%s/db", tmpdir);
	signal(SIGPIPE, SIG_IGN);
	for (round = 0; round < rounds; round++) {
		if (crash_round(round, 1 + arc4random_uniform(acksmax)) ==
		    -1) {
			CHECK(0, "round %d: child failed", round);
			break;
		}
		if (check_round(round, rounds) == -1)
			break;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	(void)system(cmd);
	REGRESS_EXIT();
}
