/*
 * registry.c: every operation, every input refusal, durability across a
 * reopen, the dead-token rule both ways, and a full disk (root only).
 */

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <db.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "monalpushd.h"
#include "regress.h"

#define APP		"monalProdiOS"
#define DOMAIN		"example.org"
#define TOKEN_A		"A1B2C3D4E5F60718293A4B5C6D7E8F90" \
			"0123456789ABCDEF0123456789ABCDEF"
#define TOKEN_A_LOWER	"a1b2c3d4e5f60718293a4b5c6d7e8f90" \
			"0123456789abcdef0123456789abcdef"
#define TOKEN_B		"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" \
			"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define TOKEN_C		"cccccccccccccccccccccccccccccccc" \
			"cccccccccccccccccccccccccccccccc"
#define NODE1		"6E3B2C1A-1111-4C4C-9D9D-0123456789AB"
#define NODE2		"node-two"
#define NODE3		"node-three"

static char	 tmpdir[] = "/tmp/registry_test.XXXXXX";
static char	 dbdir[PATH_MAX];

static int
app_exists(const char *app, void *arg)
{
	return (strcmp(app, APP) == 0 || strcmp(app, "monalSandbox") == 0);
}

static struct registry *
open_reg(void)
{
	struct registry	*reg;
	char		 err[1024];

	if ((reg = registry_open(dbdir, app_exists, NULL, err,
	    sizeof(err))) == NULL)
		printf("registry_open: %s\n", err);
	return (reg);
}

static void
test_inputs(struct registry *reg)
{
	uint8_t	 secret[SECRET_LEN];
	char	 longnode[NODE_MAX + 2], tok[TOKEN_MAX + 4];

	memset(longnode, 'a', sizeof(longnode) - 1);
	longnode[sizeof(longnode) - 1] = '\0';
	CHECK(registry_register(reg, "apns", APP, longnode, TOKEN_B, DOMAIN,
	    1, secret) == REG_ENODE_LONG, "node of NODE_MAX+1 refused");
	longnode[NODE_MAX] = '\0';
	CHECK(registry_check_node(longnode) == REG_OK,
	    "node of NODE_MAX accepted");
	CHECK(registry_register(reg, "apns", APP, "", TOKEN_B, DOMAIN, 1,
	    secret) == REG_ENODE_EMPTY, "empty node refused");
	CHECK(registry_register(reg, "apns", APP, "a/b", TOKEN_B, DOMAIN, 1,
	    secret) == REG_ENODE_CHAR, "node with / refused");
	CHECK(registry_check_node("a b") == REG_ENODE_CHAR &&
	    registry_check_node("a.b") == REG_ENODE_CHAR &&
	    registry_check_node("a_b") == REG_ENODE_CHAR &&
	    registry_check_node("\xc3\xa9") == REG_ENODE_CHAR,
	    "node with space, dot, underscore, UTF-8 refused");

	memset(tok, 'a', sizeof(tok));
	tok[TOKEN_MIN + 1] = '\0';
	CHECK(registry_register(reg, "apns", APP, NODE3, tok, DOMAIN, 1,
	    secret) == REG_ETOKEN_ODD, "odd-length token refused");
	tok[TOKEN_MIN - 2] = '\0';
	CHECK(registry_register(reg, "apns", APP, NODE3, tok, DOMAIN, 1,
	    secret) == REG_ETOKEN_SHORT, "short token refused");
	CHECK(registry_check_token("") == REG_ETOKEN_SHORT,
	    "empty token refused");
	memset(tok, 'a', sizeof(tok));
	tok[TOKEN_MAX + 2] = '\0';
	CHECK(registry_register(reg, "apns", APP, NODE3, tok, DOMAIN, 1,
	    secret) == REG_ETOKEN_LONG, "long token refused");
	tok[TOKEN_MAX] = '\0';
	CHECK(registry_check_token(tok) == REG_OK,
	    "token of TOKEN_MAX accepted");
	tok[TOKEN_MIN] = '\0';
	tok[5] = 'g';
	CHECK(registry_register(reg, "apns", APP, NODE3, tok, DOMAIN, 1,
	    secret) == REG_ETOKEN_HEX, "non-hex token refused");
	CHECK(registry_register(reg, "fcm", APP, NODE3, TOKEN_B, DOMAIN, 1,
	    secret) == REG_ETYPE, "type fcm refused");
	CHECK(registry_register(reg, "APNS", APP, NODE3, TOKEN_B, DOMAIN, 1,
	    secret) == REG_ETYPE, "type APNS refused");
	CHECK(registry_register(reg, "apns", "otherApp", NODE3, TOKEN_B,
	    DOMAIN, 1, secret) == REG_EAPP, "unknown app refused");
	CHECK(registry_register(reg, "apns", "", NODE3, TOKEN_B, DOMAIN, 1,
	    secret) == REG_EAPP, "empty app refused");
	CHECK(registry_register(reg, "apns", APP, NODE3, TOKEN_B, "", 1,
	    secret) == REG_EDOMAIN, "empty domain refused");
	CHECK(registry_get(reg, NODE3, &(struct reg_record){ 0 }) ==
	    REG_ENOTFOUND, "no refused registration was stored");
}

static void
test_register(struct registry *reg)
{
	struct reg_record	 rr;
	uint8_t			 s1[SECRET_LEN], s2[SECRET_LEN];
	uint8_t			 zero[SECRET_LEN] = { 0 };
	size_t			 n;
	struct reg_record	*recs;

	CHECK(registry_register(reg, "apns", APP, NODE1, TOKEN_A, DOMAIN,
	    1000, s1) == REG_OK, "register a new node");
	CHECK(memcmp(s1, zero, SECRET_LEN) != 0, "secret is not zero");
	CHECK(registry_get(reg, NODE1, &rr) == REG_OK, "get the new node");
	CHECK(strcmp(rr.rr_node, NODE1) == 0 && strcmp(rr.rr_app, APP) == 0 &&
	    strcmp(rr.rr_type, "apns") == 0 &&
	    strcmp(rr.rr_domain, DOMAIN) == 0, "node, app, type, domain kept");
	CHECK(strcmp(rr.rr_token, TOKEN_A_LOWER) == 0,
	    "token stored in lowercase");
	CHECK(memcmp(rr.rr_secret, s1, SECRET_LEN) == 0, "secret stored");
	CHECK(rr.rr_registered == 1000 && rr.rr_renewed == 0 &&
	    rr.rr_last_success == 0 && rr.rr_last_error == 0,
	    "timestamps of a new registration");

	CHECK(registry_register(reg, "apns", "monalSandbox", NODE1, TOKEN_B,
	    DOMAIN, 2000, s2) == REG_OK, "register the same node again");
	CHECK(memcmp(s1, s2, SECRET_LEN) == 0, "re-registration keeps secret");
	CHECK(registry_get(reg, NODE1, &rr) == REG_OK &&
	    rr.rr_registered == 1000 && rr.rr_renewed == 2000,
	    "re-registration keeps registered, sets renewed");
	CHECK(strcmp(rr.rr_token, TOKEN_B) == 0 &&
	    strcmp(rr.rr_app, "monalSandbox") == 0,
	    "re-registration replaces token and app");

	/* The old token must no longer reach the node through the index. */
	CHECK(registry_delete_by_token(reg, TOKEN_A_LOWER, INT64_MAX / 2,
	    &recs, &n) == REG_OK && n == 0 && recs == NULL,
	    "old token no longer finds the node");
	CHECK(registry_get(reg, NODE1, &rr) == REG_OK, "node still there");

	CHECK(registry_register(reg, "apns", APP, NODE1, TOKEN_A, "evil.test",
	    3000, s2) == REG_EWRONGDOMAIN,
	    "another domain cannot take the node");
	CHECK(strstr(registry_errmsg(reg), DOMAIN) != NULL &&
	    strstr(registry_errmsg(reg), "evil.test") != NULL,
	    "message names both domains: %s", registry_errmsg(reg));
	CHECK(registry_get(reg, NODE1, &rr) == REG_OK &&
	    strcmp(rr.rr_token, TOKEN_B) == 0 && rr.rr_renewed == 2000,
	    "refused takeover changed nothing");
	explicit_bzero(&rr, sizeof(rr));
}

static void
test_lookup(struct registry *reg)
{
	struct reg_record	 rr;
	uint8_t			 secret[SECRET_LEN];

	CHECK(registry_get(reg, NODE1, &rr) == REG_OK, "get for the secret");
	memcpy(secret, rr.rr_secret, SECRET_LEN);
	memset(&rr, 0, sizeof(rr));
	CHECK(registry_lookup(reg, NODE1, DOMAIN, secret, &rr) == REG_OK &&
	    strcmp(rr.rr_token, TOKEN_B) == 0 &&
	    strcmp(rr.rr_app, "monalSandbox") == 0 &&
	    strcmp(rr.rr_type, "apns") == 0, "lookup returns app, token, type");
	CHECK(registry_lookup(reg, NODE1, "EXAMPLE.org", secret, &rr) ==
	    REG_OK, "domains compare without case");
	CHECK(registry_lookup(reg, NODE1, "other.org", secret, &rr) ==
	    REG_EWRONGDOMAIN, "lookup from another domain refused");
	secret[SECRET_LEN - 1] ^= 1;
	CHECK(registry_lookup(reg, NODE1, DOMAIN, secret, &rr) ==
	    REG_EWRONGSECRET, "wrong secret refused");
	CHECK(registry_lookup(reg, "no-such-node", DOMAIN, secret, &rr) ==
	    REG_ENOTFOUND, "unknown node not found");
	CHECK(registry_lookup(reg, "bad node", DOMAIN, secret, &rr) ==
	    REG_ENODE_CHAR, "lookup checks the node");
}

static void
test_marks(struct registry *reg)
{
	struct reg_record	 rr;
	int			 i, ok;

	CHECK(registry_mark_success(reg, NODE1, 5000) == REG_OK &&
	    registry_mark_error(reg, NODE1, 5001) == REG_OK &&
	    registry_mark_success(reg, "gone-node", 5000) == REG_OK,
	    "marks buffered");
	CHECK(registry_pending(reg) == 3, "three marks pending");
	CHECK(registry_get(reg, NODE1, &rr) == REG_OK &&
	    rr.rr_last_success == 0 && rr.rr_last_error == 0,
	    "marks not written before the flush");
	CHECK(registry_flush(reg) == REG_OK && registry_pending(reg) == 0,
	    "flush");
	CHECK(registry_get(reg, NODE1, &rr) == REG_OK &&
	    rr.rr_last_success == 5000 && rr.rr_last_error == 5001,
	    "marks visible after the flush");
	CHECK(registry_get(reg, "gone-node", &rr) == REG_ENOTFOUND,
	    "a mark does not create a node");
	CHECK(registry_mark_success(reg, NODE1, 4000) == REG_OK &&
	    registry_flush(reg) == REG_OK && registry_get(reg, NODE1, &rr) ==
	    REG_OK && rr.rr_last_success == 5000,
	    "an older mark does not move a timestamp back");

	ok = 1;
	for (i = 0; i <= REG_PENDING_MAX; i++)
		if (registry_mark_success(reg, NODE1, 6000 + i) != REG_OK)
			ok = 0;
	CHECK(ok && registry_pending(reg) == 1,
	    "a full buffer flushes itself (%zu pending)",
	    registry_pending(reg));
	CHECK(registry_get(reg, NODE1, &rr) == REG_OK &&
	    rr.rr_last_success == 6000 + REG_PENDING_MAX - 1,
	    "the full buffer was written");
	CHECK(registry_mark_success(reg, "a b", 1) == REG_ENODE_CHAR,
	    "marks check the node");
	(void)registry_flush(reg);
}

static void
test_dead_token(struct registry *reg)
{
	struct reg_record	*recs;
	struct reg_record	 rr;
	uint8_t			 s[SECRET_LEN];
	size_t			 n;

	/* NODE2 registered at 5000, never renewed. */
	CHECK(registry_register(reg, "apns", APP, NODE2, TOKEN_C, DOMAIN,
	    5000, s) == REG_OK, "register node two");
	CHECK(registry_delete_by_token(reg, TOKEN_C, 4999999, &recs, &n) ==
	    REG_OK && n == 0, "410 older than the registration keeps it");
	CHECK(registry_delete_by_token(reg, TOKEN_C, 5000999, &recs, &n) ==
	    REG_OK && n == 1, "410 in the same second deletes");
	CHECK(n == 1 && strcmp(recs[0].rr_node, NODE2) == 0 &&
	    strcmp(recs[0].rr_token, TOKEN_C) == 0,
	    "deleted node and token returned");
	registry_records_free(recs, n);
	CHECK(registry_get(reg, NODE2, &rr) == REG_ENOTFOUND,
	    "node two deleted");

	/* Renewed later than the 410: kept; earlier: deleted. */
	CHECK(registry_register(reg, "apns", APP, NODE2, TOKEN_C, DOMAIN,
	    1000, s) == REG_OK && registry_register(reg, "apns", APP, NODE2,
	    TOKEN_C, DOMAIN, 7000, s) == REG_OK, "register, renew at 7000");
	CHECK(registry_delete_by_token(reg, TOKEN_C, 6000000, &recs, &n) ==
	    REG_OK && n == 0, "410 older than the renewal keeps it");
	CHECK(registry_delete_by_token(reg, TOKEN_C, 8000000, &recs, &n) ==
	    REG_OK && n == 1, "410 newer than the renewal deletes");
	registry_records_free(recs, n);

	/* Two nodes share a token; hex in upper case finds them. */
	CHECK(registry_register(reg, "apns", APP, NODE2, TOKEN_C, DOMAIN,
	    100, s) == REG_OK && registry_register(reg, "apns", APP, NODE3,
	    TOKEN_C, DOMAIN, 100, s) == REG_OK, "two nodes, one token");
	CHECK(registry_delete_by_token(reg, "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"
	    "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC", 200000, &recs, &n) == REG_OK &&
	    n == 2, "both nodes of the token deleted");
	registry_records_free(recs, n);
	CHECK(registry_get(reg, NODE2, &rr) == REG_ENOTFOUND &&
	    registry_get(reg, NODE3, &rr) == REG_ENOTFOUND, "both gone");
	CHECK(registry_delete_by_token(reg, TOKEN_C, -1, &recs, &n) ==
	    REG_ETIME, "negative timestamp refused");
	CHECK(registry_delete_by_token(reg, "abc", 1, &recs, &n) ==
	    REG_ETOKEN_SHORT, "dead token checked");
	CHECK(registry_get(reg, NODE1, &rr) == REG_OK,
	    "other tokens untouched");
}

static int
collect(const struct reg_record *rr, void *arg)
{
	int	*count = arg;

	(*count)++;
	return (0);
}

static int
stop_first(const struct reg_record *rr, void *arg)
{
	int	*count = arg;

	(*count)++;
	return (1);
}

static void
test_sets(struct registry *reg)
{
	const char	*nodes[] = { NODE2, NODE3, "absent-node" };
	const char	*bad[] = { NODE2, "bad/node" };
	uint8_t		 s[SECRET_LEN];
	uint64_t	 n;
	size_t		 erased;
	int		 count;

	CHECK(registry_register(reg, "apns", APP, NODE2, TOKEN_A, DOMAIN,
	    100, s) == REG_OK && registry_register(reg, "apns", APP, NODE3,
	    TOKEN_C, "other.org", 100, s) == REG_OK, "two more nodes");
	CHECK(registry_count(reg, NULL, &n) == REG_OK && n == 3,
	    "count all: %llu", (unsigned long long)n);
	CHECK(registry_count(reg, APP, &n) == REG_OK && n == 2,
	    "count one app: %llu", (unsigned long long)n);
	CHECK(registry_count(reg, "monalSandbox", &n) == REG_OK && n == 1,
	    "count the other app");
	count = 0;
	CHECK(registry_list(reg, collect, &count) == REG_OK && count == 3,
	    "list walks every record");
	count = 0;
	CHECK(registry_list(reg, stop_first, &count) == REG_OK && count == 1,
	    "list stops when the callback says so");
	count = 0;
	CHECK(registry_export(reg, nodes, 3, collect, &count) == REG_OK &&
	    count == 2, "export finds the known nodes of a set");
	CHECK(registry_export(reg, bad, 2, collect, &count) ==
	    REG_ENODE_CHAR, "export checks every node");
	CHECK(registry_erase(reg, bad, 2, &erased) == REG_ENODE_CHAR,
	    "erase checks every node first");
	CHECK(registry_get(reg, NODE2, &(struct reg_record){ 0 }) == REG_OK,
	    "a refused erase erased nothing");
	CHECK(registry_erase(reg, nodes, 3, &erased) == REG_OK &&
	    erased == 2, "erase a set");
	CHECK(registry_count(reg, NULL, &n) == REG_OK && n == 1,
	    "one node left");
	CHECK(registry_erase(reg, nodes, REG_NODESET_MAX + 1, &erased) ==
	    REG_ETOOMANY, "erase of too many nodes refused");
}

static void
test_unregister(struct registry *reg)
{
	uint8_t		 s[SECRET_LEN];

	CHECK(registry_unregister(reg, "no-such-node", "apns", DOMAIN) ==
	    REG_ENOTFOUND, "unregister an unknown node");
	CHECK(registry_register(reg, "apns", APP, NODE2, TOKEN_A, DOMAIN,
	    100, s) == REG_OK, "register to unregister");
	CHECK(registry_unregister(reg, NODE2, "apns", "evil.test") ==
	    REG_EWRONGDOMAIN, "unregister from another domain refused");
	CHECK(strstr(registry_errmsg(reg), DOMAIN) != NULL,
	    "message names the registering domain: %s", registry_errmsg(reg));
	CHECK(registry_unregister(reg, NODE2, "fcm", DOMAIN) == REG_ETYPE,
	    "unregister checks the type");
	CHECK(registry_unregister(reg, NODE2, "apns", DOMAIN) == REG_OK,
	    "unregister");
	CHECK(registry_get(reg, NODE2, &(struct reg_record){ 0 }) ==
	    REG_ENOTFOUND, "unregistered node gone");
	CHECK(registry_unregister(reg, NODE2, "apns", DOMAIN) ==
	    REG_ENOTFOUND, "second unregister: not found");
}

static void
test_strerror(void)
{
	int	 i, j, ok = 1;

	for (i = 0; i < REG_ERR_MAX; i++)
		for (j = i + 1; j < REG_ERR_MAX; j++)
			if (strcmp(registry_strerror(i),
			    registry_strerror(j)) == 0)
				ok = 0;
	CHECK(ok, "every error code has its own message");
	CHECK(strcmp(registry_strerror(REG_ERR_MAX),
	    "unknown registry error") == 0, "out of range code");
}

/* Writes a record of layout version 2 behind the registry's back. */
static int
plant_future_record(const char *node)
{
	DB_ENV	*env;
	DB	*db;
	DBT	 key, data;
	uint8_t	 rec[64] = { 2 };
	int	 ret;

	if (db_env_create(&env, 0) != 0)
		return (-1);
	ret = env->open(env, dbdir, DB_CREATE | DB_INIT_TXN | DB_INIT_LOG |
	    DB_INIT_LOCK | DB_INIT_MPOOL | DB_RECOVER | DB_PRIVATE, 0600);
	if (ret == 0)
		ret = db_create(&db, env, 0);
	if (ret == 0)
		ret = db->open(db, NULL, REG_DB_NODES, NULL, DB_BTREE,
		    DB_AUTO_COMMIT, 0600);
	if (ret == 0) {
		memset(&key, 0, sizeof(key));
		memset(&data, 0, sizeof(data));
		key.data = (void *)node;
		key.size = strlen(node);
		data.data = rec;
		data.size = sizeof(rec);
		ret = db->put(db, NULL, &key, &data, DB_AUTO_COMMIT);
		db->close(db, 0);
	}
	env->close(env, 0);
	return (ret == 0 ? 0 : -1);
}

static void
test_reopen(struct registry **regp)
{
	struct reg_record	 rr;
	uint8_t			 s[SECRET_LEN], s2[SECRET_LEN];
	char			 path[PATH_MAX + 32], err[1024];
	int			 fd;

	CHECK(registry_register(*regp, "apns", APP, "durable-node", TOKEN_A,
	    DOMAIN, 42, s) == REG_OK, "register before close");
	CHECK(registry_mark_success(*regp, "durable-node", 43) == REG_OK,
	    "mark before close");
	registry_close(*regp);
	CHECK(plant_future_record("future-node") == 0,
	    "plant a record of layout version 2");
	*regp = open_reg();
	CHECK(*regp != NULL, "reopen");
	if (*regp == NULL)
		return;
	CHECK(registry_get(*regp, "durable-node", &rr) == REG_OK &&
	    memcmp(rr.rr_secret, s, SECRET_LEN) == 0 &&
	    rr.rr_registered == 42 && rr.rr_last_success == 43,
	    "record and pending mark survive close and reopen");
	CHECK(registry_get(*regp, NODE1, &rr) == REG_OK,
	    "earlier node survives");
	CHECK(registry_open(dbdir, NULL, NULL, err, sizeof(err)) == NULL &&
	    strstr(err, "in use") != NULL, "a second open is refused: %s",
	    err);
	CHECK(registry_get(*regp, "future-node", &rr) == REG_EVERSION,
	    "record of an unknown version refused");
	CHECK(registry_register(*regp, "apns", APP, "future-node", TOKEN_A,
	    DOMAIN, 1, s2) == REG_EVERSION,
	    "unknown version is not overwritten");

	snprintf(path, sizeof(path), "%s/not-a-dir", tmpdir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	CHECK(registry_open(path, NULL, NULL, err, sizeof(err)) == NULL &&
	    strstr(err, path) != NULL, "a file is no database: %s", err);

	snprintf(path, sizeof(path), "%s/garbage", tmpdir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/garbage/%s", tmpdir, REG_DB_NODES);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	(void)write(fd, "this is not a btree, not at all; no no no", 41);
	close(fd);
	snprintf(path, sizeof(path), "%s/garbage", tmpdir);
	CHECK(registry_open(path, NULL, NULL, err, sizeof(err)) == NULL &&
	    strstr(err, path) != NULL && strstr(err, "backup") != NULL,
	    "damaged database refused: %s", err);

	snprintf(path, sizeof(path), "%s/lost", tmpdir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/lost/log.0000000001", tmpdir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	snprintf(path, sizeof(path), "%s/lost", tmpdir);
	CHECK(registry_open(path, NULL, NULL, err, sizeof(err)) == NULL &&
	    strstr(err, path) != NULL, "logs without a database refused: %s",
	    err);
}

/*
 * In a private mount namespace: a small tmpfs, filled up.  Registrations
 * fail with REG_ENOSPC and change nothing; once space is back they work,
 * and the database reopens with everything committed.
 */
static int
enospc_child(void)
{
	struct registry	*reg;
	struct reg_record rr;
	char		 mnt[PATH_MAX], db[PATH_MAX + 8], fill[PATH_MAX + 8];
	char		 node[32], err[1024], buf[4096];
	uint8_t		 s[SECRET_LEN];
	uint64_t	 n;
	int		 fd, i, ret, committed = 0;

	snprintf(mnt, sizeof(mnt), "%s/tmpfs", tmpdir);
	if (mkdir(mnt, 0700) == -1 || unshare(CLONE_NEWNS) == -1 ||
	    mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) == -1 ||
	    mount("tmpfs", mnt, "tmpfs", 0, "size=32m") == -1) {
		printf("SKIP: disk full test: no tmpfs in a private mount "
		    "namespace (%s)\n", strerror(errno));
		return (0);
	}
	snprintf(db, sizeof(db), "%s/db", mnt);
	snprintf(fill, sizeof(fill), "%s/fill", mnt);
	if ((reg = registry_open(db, NULL, NULL, err, sizeof(err))) == NULL) {
		CHECK(0, "open on tmpfs: %s", err);
		return (1);
	}
	CHECK(registry_register(reg, "apns", APP, "before-full", TOKEN_A,
	    DOMAIN, 1, s) == REG_OK, "register before the disk fills");
	memset(buf, 0, sizeof(buf));
	fd = open(fill, O_WRONLY | O_CREAT, 0600);
	while (write(fd, buf, sizeof(buf)) == sizeof(buf))
		;
	ret = REG_OK;
	for (i = 0; i < 10000 && ret == REG_OK; i++) {
		snprintf(node, sizeof(node), "full-%d", i);
		if ((ret = registry_register(reg, "apns", APP, node, TOKEN_A,
		    DOMAIN, 2, s)) == REG_OK)
			committed++;
	}
	CHECK(ret == REG_ENOSPC, "full disk: %s (%s)", registry_strerror(ret),
	    registry_errmsg(reg));
	CHECK(registry_get(reg, node, &rr) == REG_ENOTFOUND,
	    "the failed registration is not there");
	CHECK(registry_register(reg, "apns", APP, "still-full", TOKEN_A,
	    DOMAIN, 2, s) == REG_ENOSPC, "still full");
	CHECK(registry_lookup(reg, "before-full", DOMAIN, s, &rr) ==
	    REG_EWRONGSECRET && registry_get(reg, "before-full", &rr) ==
	    REG_OK, "reads work on a full disk");
	close(fd);
	unlink(fill);
	CHECK(registry_register(reg, "apns", APP, "after-full", TOKEN_A,
	    DOMAIN, 3, s) == REG_OK, "register once space is back");
	CHECK(registry_count(reg, NULL, &n) == REG_OK &&
	    n == (uint64_t)committed + 2, "count %llu, want %d",
	    (unsigned long long)n, committed + 2);
	registry_close(reg);
	if ((reg = registry_open(db, NULL, NULL, err, sizeof(err))) == NULL) {
		CHECK(0, "reopen after a full disk: %s", err);
		return (1);
	}
	CHECK(registry_count(reg, NULL, &n) == REG_OK &&
	    n == (uint64_t)committed + 2 && registry_get(reg, "after-full",
	    &rr) == REG_OK && registry_get(reg, "still-full", &rr) ==
	    REG_ENOTFOUND, "reopen after a full disk keeps what committed");
	registry_close(reg);
	umount(mnt);
	return (regress_failed ? 1 : 0);
}

static void
test_enospc(void)
{
	pid_t	 pid;
	int	 status, ret;

	if (geteuid() != 0) {
		printf("SKIP: disk full test needs root\n");
		return;
	}
	fflush(stdout);
	if ((pid = fork()) == -1) {
		CHECK(0, "fork: %s", strerror(errno));
		return;
	}
	if (pid == 0) {
		ret = enospc_child();
		fflush(stdout);
		_exit(ret);
	}
	if (waitpid(pid, &status, 0) == -1 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0)
		regress_failed++;
}

int
main(void)
{
	struct registry	*reg;
	char		 cmd[PATH_MAX + 16];

	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return (1);
	}
	snprintf(dbdir, sizeof(dbdir), "%s/db", tmpdir);
	reg = open_reg();
	CHECK(reg != NULL, "open a new registry");
	if (reg == NULL)
		return (1);
	test_inputs(reg);
	test_register(reg);
	test_lookup(reg);
	test_marks(reg);
	test_dead_token(reg);
	test_sets(reg);
	test_unregister(reg);
	test_strerror();
	test_reopen(&reg);
	registry_close(reg);
	test_enospc();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	(void)system(cmd);
	REGRESS_EXIT();
}
