/*
 * The registration store, opened by the parent alone.
 *
 * A transactional Berkeley DB environment (write-ahead log, recovered at
 * every open) holds two B-trees: nodes.db maps a node to its record and
 * tokens.db, a secondary index that Berkeley DB maintains through
 * DB->associate, maps a packed token to the nodes that use it.
 *
 * Registrations, unregistrations and deletions are committed with the log
 * flushed to disk before the caller gets an answer.  Push timestamps are
 * buffered and written by registry_flush() in one transaction without a
 * log flush: losing the last seconds of them in a crash is allowed.
 *
 * Record layout version 1, all integers big-endian:
 *	u8 version
 *	u8 len, app
 *	u8 len, type
 *	u8 len, token (packed: TOKEN_MIN/2 .. TOKEN_MAX/2 bytes)
 *	secret (SECRET_LEN bytes)
 *	u8 len, registering domain
 *	i64 registered, i64 renewed, i64 last_success, i64 last_error
 */

#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <db.h>
#include <dirent.h>
#include <openssl/crypto.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "monalpushd.h"

enum reg_mark {
	REG_MARK_SUCCESS,
	REG_MARK_ERROR
};

struct reg_pending {
	char		 rp_node[NODE_MAX + 1];
	int		 rp_kind;
	int64_t		 rp_time;
};

struct registry {
	DB_ENV			*r_env;
	DB			*r_nodes;
	DB			*r_tokens;
	char			 r_dir[PATH_MAX];
	int			 r_lockfd;
	int			(*r_app_exists)(const char *, void *);
	void			*r_app_arg;
	int			 r_nosync;	/* bulk load only */
	struct reg_pending	*r_pending;
	size_t			 r_npending;
	time_t			 r_lastckp;	/* monotonic seconds */
	char			 r_dbmsg[REG_ERRMSG_MAX / 2]; /* from BDB */
	char			 r_errmsg[REG_ERRMSG_MAX];
};

struct reg_dbt {
	DBT		 rd_key;
	DBT		 rd_data;
	char		 rd_keybuf[NODE_MAX + 1];
	uint8_t		 rd_databuf[REG_RECORD_MAX];
};

static const char *reg_errstr[REG_ERR_MAX] = {
	[REG_OK] = "no error",
	[REG_ENODE_EMPTY] = "node is empty",
	[REG_ENODE_LONG] = "node is too long",
	[REG_ENODE_CHAR] = "node has a character outside [A-Za-z0-9-]",
	[REG_ETOKEN_ODD] = "token has an odd number of hex digits",
	[REG_ETOKEN_SHORT] = "token is too short",
	[REG_ETOKEN_LONG] = "token is too long",
	[REG_ETOKEN_HEX] = "token has a character that is not hex",
	[REG_ETYPE] = "unknown registration type",
	[REG_EAPP] = "unknown app",
	[REG_EDOMAIN] = "domain is empty or too long",
	[REG_ETIME] = "negative timestamp",
	[REG_ETOOMANY] = "too many nodes in one request",
	[REG_ENOTFOUND] = "node not found",
	[REG_EWRONGDOMAIN] = "node is registered by another domain",
	[REG_EWRONGSECRET] = "secret does not match",
	[REG_EVERSION] = "record of an unknown layout version",
	[REG_ECORRUPT] = "record does not decode",
	[REG_ENOSPC] = "disk full",
	[REG_ENOMEM] = "out of memory",
	[REG_EPANIC] = "database needs recovery, restart the daemon",
	[REG_EDB] = "database error",
};

static time_t
reg_monotime(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec);
}

static void
reg_errcall(const DB_ENV *env, const char *pfx, const char *msg)
{
	struct registry	*reg = env->app_private;

	if (reg != NULL)
		strlcpy(reg->r_dbmsg, msg, sizeof(reg->r_dbmsg));
}

/* Map a Berkeley DB error to ours, keeping the detail for registry_errmsg. */
static int
reg_dberr(struct registry *reg, const char *func, int ret)
{
	if (reg->r_dbmsg[0] != '\0')
		snprintf(reg->r_errmsg, sizeof(reg->r_errmsg), "%s: %s (%s)",
		    func, db_strerror(ret), reg->r_dbmsg);
	else
		snprintf(reg->r_errmsg, sizeof(reg->r_errmsg), "%s: %s",
		    func, db_strerror(ret));
	reg->r_dbmsg[0] = '\0';
	if (ret == ENOSPC)
		return (REG_ENOSPC);
	if (ret == ENOMEM)
		return (REG_ENOMEM);
	if (ret == DB_RUNRECOVERY)
		return (REG_EPANIC);
	return (REG_EDB);
}

const char *
registry_strerror(int code)
{
	if (code < 0 || code >= REG_ERR_MAX || reg_errstr[code] == NULL)
		return ("unknown registry error");
	return (reg_errstr[code]);
}

const char *
registry_errmsg(struct registry *reg)
{
	return (reg->r_errmsg);
}

int
registry_check_node(const char *node)
{
	size_t	 i, len;
	char	 c;

	len = strnlen(node, NODE_MAX + 1);
	if (len == 0)
		return (REG_ENODE_EMPTY);
	if (len > NODE_MAX)
		return (REG_ENODE_LONG);
	for (i = 0; i < len; i++) {
		c = node[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-'))
			return (REG_ENODE_CHAR);
	}
	return (REG_OK);
}

static int
reg_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	if (c >= 'a' && c <= 'f')
		return (c - 'a' + 10);
	if (c >= 'A' && c <= 'F')
		return (c - 'A' + 10);
	return (-1);
}

int
registry_check_token(const char *token)
{
	size_t	 i, len;

	len = strnlen(token, TOKEN_MAX + 1);
	if (len > TOKEN_MAX)
		return (REG_ETOKEN_LONG);
	if (len < TOKEN_MIN)
		return (REG_ETOKEN_SHORT);
	if (len % 2 != 0)
		return (REG_ETOKEN_ODD);
	for (i = 0; i < len; i++)
		if (reg_hexval(token[i]) == -1)
			return (REG_ETOKEN_HEX);
	return (REG_OK);
}

/* The token must have passed registry_check_token. */
static size_t
reg_token_pack(const char *hex, uint8_t *bin)
{
	size_t	 i, len;

	len = strlen(hex) / 2;
	for (i = 0; i < len; i++)
		bin[i] = reg_hexval(hex[2 * i]) << 4 |
		    reg_hexval(hex[2 * i + 1]);
	return (len);
}

static void
reg_token_unpack(const uint8_t *bin, size_t len, char *hex)
{
	static const char	 digits[] = "0123456789abcdef";
	size_t			 i;

	for (i = 0; i < len; i++) {
		hex[2 * i] = digits[bin[i] >> 4];
		hex[2 * i + 1] = digits[bin[i] & 0xf];
	}
	hex[2 * len] = '\0';
}

static int
reg_check_domain(const char *domain)
{
	size_t	 len;

	len = strnlen(domain, DOMAIN_MAX + 1);
	if (len == 0 || len > DOMAIN_MAX)
		return (REG_EDOMAIN);
	return (REG_OK);
}

static int
reg_check_app(struct registry *reg, const char *app)
{
	size_t	 len;

	len = strnlen(app, APP_NAME_MAX);
	if (len == 0 || len >= APP_NAME_MAX)
		return (REG_EAPP);
	if (reg->r_app_exists != NULL &&
	    !reg->r_app_exists(app, reg->r_app_arg))
		return (REG_EAPP);
	return (REG_OK);
}

static int
reg_check_type(const char *type)
{
	if (strcmp(type, REG_TYPE_APNS) != 0)
		return (REG_ETYPE);
	return (REG_OK);
}

static void
reg_put_i64(uint8_t *p, int64_t v)
{
	uint64_t	 u = (uint64_t)v;
	int		 i;

	for (i = 7; i >= 0; i--) {
		p[i] = u & 0xff;
		u >>= 8;
	}
}

static int64_t
reg_get_i64(const uint8_t *p)
{
	uint64_t	 u = 0;
	int		 i;

	for (i = 0; i < 8; i++)
		u = u << 8 | p[i];
	return ((int64_t)u);
}

static int
reg_put_str(uint8_t *buf, size_t *off, const void *s, size_t len)
{
	if (len > UINT8_MAX || *off + 1 + len > REG_RECORD_MAX)
		return (-1);
	buf[(*off)++] = len;
	memcpy(buf + *off, s, len);
	*off += len;
	return (0);
}

/* Returns the encoded length, 0 when the record does not fit. */
static size_t
reg_encode(const struct reg_record *rr, uint8_t *buf)
{
	uint8_t	 tok[REG_TOKEN_BYTES_MAX];
	size_t	 off = 0, toklen;

	toklen = reg_token_pack(rr->rr_token, tok);
	buf[off++] = REG_LAYOUT_VERSION;
	if (reg_put_str(buf, &off, rr->rr_app, strlen(rr->rr_app)) == -1 ||
	    reg_put_str(buf, &off, rr->rr_type, strlen(rr->rr_type)) == -1 ||
	    reg_put_str(buf, &off, tok, toklen) == -1)
		return (0);
	if (off + SECRET_LEN > REG_RECORD_MAX)
		return (0);
	memcpy(buf + off, rr->rr_secret, SECRET_LEN);
	off += SECRET_LEN;
	if (reg_put_str(buf, &off, rr->rr_domain,
	    strlen(rr->rr_domain)) == -1)
		return (0);
	if (off + 4 * 8 > REG_RECORD_MAX)
		return (0);
	reg_put_i64(buf + off, rr->rr_registered);
	reg_put_i64(buf + off + 8, rr->rr_renewed);
	reg_put_i64(buf + off + 16, rr->rr_last_success);
	reg_put_i64(buf + off + 24, rr->rr_last_error);
	return (off + 32);
}

/*
 * Finds a length-prefixed field at *off of 1..max bytes and steps over
 * it.
 */
static const uint8_t *
reg_get_str(const uint8_t *buf, size_t len, size_t *off, size_t max,
    size_t *flen)
{
	const uint8_t	*p;

	if (*off >= len)
		return (NULL);
	*flen = buf[*off];
	if (*flen == 0 || *flen > max || *off + 1 + *flen > len)
		return (NULL);
	p = buf + *off + 1;
	*off += 1 + *flen;
	return (p);
}

static int
reg_copy_str(char *dst, const uint8_t *src, size_t len)
{
	if (memchr(src, '\0', len) != NULL)
		return (-1);
	memcpy(dst, src, len);
	dst[len] = '\0';
	return (0);
}

/* Locates the packed token in an encoded record. */
static int
reg_token_field(const uint8_t *buf, size_t len, const uint8_t **tok,
    size_t *toklen)
{
	size_t	 off = 1, flen;

	if (len < 1)
		return (REG_ECORRUPT);
	if (buf[0] != REG_LAYOUT_VERSION)
		return (REG_EVERSION);
	if (reg_get_str(buf, len, &off, APP_NAME_MAX - 1, &flen) == NULL ||
	    reg_get_str(buf, len, &off, REG_TYPE_MAX - 1, &flen) == NULL ||
	    (*tok = reg_get_str(buf, len, &off, REG_TOKEN_BYTES_MAX,
	    toklen)) == NULL || *toklen < TOKEN_MIN / 2)
		return (REG_ECORRUPT);
	return (REG_OK);
}

static int
reg_decode(const uint8_t *buf, size_t len, struct reg_record *rr)
{
	const uint8_t	*p;
	size_t		 off = 1, flen;

	memset(rr, 0, sizeof(*rr));
	if (len < 1)
		return (REG_ECORRUPT);
	if (buf[0] != REG_LAYOUT_VERSION)
		return (REG_EVERSION);
	if ((p = reg_get_str(buf, len, &off, APP_NAME_MAX - 1, &flen)) ==
	    NULL || reg_copy_str(rr->rr_app, p, flen) == -1)
		return (REG_ECORRUPT);
	if ((p = reg_get_str(buf, len, &off, REG_TYPE_MAX - 1, &flen)) ==
	    NULL || reg_copy_str(rr->rr_type, p, flen) == -1)
		return (REG_ECORRUPT);
	if ((p = reg_get_str(buf, len, &off, REG_TOKEN_BYTES_MAX, &flen)) ==
	    NULL || flen < TOKEN_MIN / 2)
		return (REG_ECORRUPT);
	reg_token_unpack(p, flen, rr->rr_token);
	if (off + SECRET_LEN > len)
		return (REG_ECORRUPT);
	memcpy(rr->rr_secret, buf + off, SECRET_LEN);
	off += SECRET_LEN;
	if ((p = reg_get_str(buf, len, &off, DOMAIN_MAX, &flen)) == NULL ||
	    reg_copy_str(rr->rr_domain, p, flen) == -1)
		return (REG_ECORRUPT);
	if (off + 32 != len)
		return (REG_ECORRUPT);
	rr->rr_registered = reg_get_i64(buf + off);
	rr->rr_renewed = reg_get_i64(buf + off + 8);
	rr->rr_last_success = reg_get_i64(buf + off + 16);
	rr->rr_last_error = reg_get_i64(buf + off + 24);
	return (REG_OK);
}

/* DB->associate callback: the secondary key is the packed token. */
static int
reg_token_key(DB *sdb, const DBT *pkey, const DBT *pdata, DBT *skey)
{
	const uint8_t	*tok;
	size_t		 toklen;

	if (reg_token_field(pdata->data, pdata->size, &tok, &toklen) !=
	    REG_OK)
		return (EINVAL);
	memset(skey, 0, sizeof(*skey));
	skey->data = (void *)tok;
	skey->size = toklen;
	return (0);
}

static void
reg_dbt_init(struct reg_dbt *rd, const char *node)
{
	memset(rd, 0, sizeof(*rd));
	rd->rd_key.data = rd->rd_keybuf;
	rd->rd_key.ulen = sizeof(rd->rd_keybuf);
	rd->rd_key.flags = DB_DBT_USERMEM;
	if (node != NULL) {
		rd->rd_key.size = strlcpy(rd->rd_keybuf, node,
		    sizeof(rd->rd_keybuf));
	}
	rd->rd_data.data = rd->rd_databuf;
	rd->rd_data.ulen = sizeof(rd->rd_databuf);
	rd->rd_data.flags = DB_DBT_USERMEM;
}

/* Decodes the record a cursor or get left in rd. */
static int
reg_dbt_record(struct reg_dbt *rd, struct reg_record *rr)
{
	int	 ret;

	if (rd->rd_key.size == 0 || rd->rd_key.size > NODE_MAX)
		return (REG_ECORRUPT);
	if ((ret = reg_decode(rd->rd_databuf, rd->rd_data.size, rr)) !=
	    REG_OK)
		return (ret);
	memcpy(rr->rr_node, rd->rd_keybuf, rd->rd_key.size);
	rr->rr_node[rd->rd_key.size] = '\0';
	return (REG_OK);
}

static int
reg_get(struct registry *reg, DB_TXN *txn, const char *node,
    struct reg_record *rr, u_int32_t flags)
{
	struct reg_dbt	 rd;
	int		 ret;

	reg_dbt_init(&rd, node);
	ret = reg->r_nodes->get(reg->r_nodes, txn, &rd.rd_key, &rd.rd_data,
	    flags);
	if (ret == DB_NOTFOUND)
		return (REG_ENOTFOUND);
	if (ret == DB_BUFFER_SMALL)
		return (REG_ECORRUPT);
	if (ret != 0)
		return (reg_dberr(reg, __func__, ret));
	ret = reg_dbt_record(&rd, rr);
	explicit_bzero(rd.rd_databuf, sizeof(rd.rd_databuf));
	return (ret);
}

static int
reg_put(struct registry *reg, DB_TXN *txn, const struct reg_record *rr)
{
	struct reg_dbt	 rd;
	size_t		 len;
	int		 ret;

	reg_dbt_init(&rd, rr->rr_node);
	if ((len = reg_encode(rr, rd.rd_databuf)) == 0)
		return (REG_ECORRUPT);
	rd.rd_data.size = len;
	ret = reg->r_nodes->put(reg->r_nodes, txn, &rd.rd_key, &rd.rd_data,
	    0);
	explicit_bzero(rd.rd_databuf, sizeof(rd.rd_databuf));
	if (ret != 0)
		return (reg_dberr(reg, __func__, ret));
	return (REG_OK);
}

static int
reg_del(struct registry *reg, DB_TXN *txn, const char *node)
{
	struct reg_dbt	 rd;
	int		 ret;

	reg_dbt_init(&rd, node);
	ret = reg->r_nodes->del(reg->r_nodes, txn, &rd.rd_key, 0);
	if (ret == DB_NOTFOUND)
		return (REG_ENOTFOUND);
	if (ret != 0)
		return (reg_dberr(reg, __func__, ret));
	return (REG_OK);
}

static int
reg_begin(struct registry *reg, DB_TXN **txn)
{
	int	 ret;

	if ((ret = reg->r_env->txn_begin(reg->r_env, NULL, txn, 0)) != 0)
		return (reg_dberr(reg, __func__, ret));
	return (REG_OK);
}

static void
reg_abort(struct registry *reg, DB_TXN *txn)
{
	int	 ret;

	if ((ret = txn->abort(txn)) != 0)
		(void)reg_dberr(reg, __func__, ret);
}

/*
 * A durable commit flushes the log to disk before it returns; the others
 * leave it in the log buffer until a later durable commit, a checkpoint
 * or a full buffer writes it.
 */
static int
reg_commit(struct registry *reg, DB_TXN *txn, int durable)
{
	u_int32_t	 flags = DB_TXN_NOSYNC;
	int		 ret;

	if (durable && !reg->r_nosync)
		flags = DB_TXN_SYNC;
	if ((ret = txn->commit(txn, flags)) != 0)
		return (reg_dberr(reg, __func__, ret));
	return (REG_OK);
}

static int
reg_has_logs(const char *dir)
{
	DIR		*d;
	struct dirent	*de;
	int		 found = 0;

	if ((d = opendir(dir)) == NULL)
		return (0);
	while ((de = readdir(d)) != NULL)
		if (strncmp(de->d_name, "log.", 4) == 0) {
			found = 1;
			break;
		}
	closedir(d);
	return (found);
}

static int
reg_prepare_dir(const char *dir, char *err, size_t errlen)
{
	struct stat	 st;
	char		 path[PATH_MAX];

	if (stat(dir, &st) == -1) {
		if (errno != ENOENT || mkdir(dir, 0700) == -1) {
			snprintf(err, errlen, "database %s: %s", dir,
			    strerror(errno));
			return (-1);
		}
		return (0);
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "database %s: not a directory", dir);
		return (-1);
	}
	/* Never start empty over a log whose database has gone. */
	if (snprintf(path, sizeof(path), "%s/%s", dir, REG_DB_NODES) >=
	    (int)sizeof(path)) {
		snprintf(err, errlen, "database %s: path too long", dir);
		return (-1);
	}
	if (access(path, F_OK) == -1 && errno == ENOENT && reg_has_logs(dir)) {
		snprintf(err, errlen, "database %s: log files but no %s; "
		    "restore %s from backup, or remove the log files to "
		    "start empty", dir, REG_DB_NODES, REG_DB_NODES);
		return (-1);
	}
	return (0);
}

/*
 * Recovery rewrites the files under a process that would still use them:
 * one process at a time.
 */
static int
reg_lock_dir(struct registry *reg, char *err, size_t errlen)
{
	char	 path[PATH_MAX];

	if (snprintf(path, sizeof(path), "%s/%s", reg->r_dir, REG_LOCKFILE) >=
	    (int)sizeof(path)) {
		snprintf(err, errlen, "database %s: path too long", reg->r_dir);
		return (-1);
	}
	if ((reg->r_lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC,
	    0600)) == -1) {
		snprintf(err, errlen, "database %s: %s: %s", reg->r_dir, path,
		    strerror(errno));
		return (-1);
	}
	if (flock(reg->r_lockfd, LOCK_EX | LOCK_NB) == -1) {
		snprintf(err, errlen, "database %s: %s", reg->r_dir,
		    errno == EWOULDBLOCK ? "in use by another process" :
		    strerror(errno));
		return (-1);
	}
	return (0);
}

static int
reg_open_env(struct registry *reg, char *err, size_t errlen)
{
	DB_ENV		*env;
	u_int32_t	 flags;
	int		 ret;

	if ((ret = db_env_create(&env, 0)) != 0) {
		snprintf(err, errlen, "database %s: %s", reg->r_dir,
		    db_strerror(ret));
		return (-1);
	}
	reg->r_env = env;
	env->app_private = reg;
	env->set_errcall(env, reg_errcall);
	if ((ret = env->set_cachesize(env, 0, REG_CACHE_DEFAULT, 1)) != 0 ||
	    (ret = env->set_lg_bsize(env, REG_LOG_BUFFER)) != 0 ||
	    (ret = env->set_lk_max_locks(env, REG_LOCKS_MAX)) != 0 ||
	    (ret = env->set_lk_max_objects(env, REG_LOCKS_MAX)) != 0 ||
	    (ret = env->log_set_config(env, DB_LOG_AUTO_REMOVE, 1)) != 0) {
		snprintf(err, errlen, "database %s: %s", reg->r_dir,
		    db_strerror(ret));
		return (-1);
	}
	/*
	 * DB_PRIVATE keeps the regions in this process's memory; recovery
	 * needs only the log files, which are on disk.
	 */
	flags = DB_CREATE | DB_INIT_TXN | DB_INIT_LOG | DB_INIT_LOCK |
	    DB_INIT_MPOOL | DB_RECOVER | DB_PRIVATE;
	if ((ret = env->open(env, reg->r_dir, flags, 0600)) != 0) {
		if (ret == DB_RUNRECOVERY)
			snprintf(err, errlen, "database %s: recovery failed "
			    "(%s%s%s); restore from backup or run "
			    "db_recover -c -h %s", reg->r_dir, db_strerror(ret),
			    reg->r_dbmsg[0] ? ": " : "", reg->r_dbmsg,
			    reg->r_dir);
		else
			snprintf(err, errlen, "database %s: cannot open the "
			    "environment (%s%s%s); if it is damaged, restore "
			    "from backup or run db_recover -c -h %s",
			    reg->r_dir, db_strerror(ret),
			    reg->r_dbmsg[0] ? ": " : "", reg->r_dbmsg,
			    reg->r_dir);
		return (-1);
	}
	return (0);
}

static int
reg_open_db(struct registry *reg, DB **dbp, const char *file, int dup,
    char *err, size_t errlen)
{
	DB_ENV	*env = reg->r_env;
	DB	*db;
	int	 ret;

	if ((ret = db_create(&db, env, 0)) != 0)
		goto fail;
	*dbp = db;
	if ((dup && (ret = db->set_flags(db, DB_DUPSORT)) != 0) ||
	    (ret = db->set_pagesize(db, REG_PAGESIZE)) != 0)
		goto fail;
	if ((ret = db->open(db, NULL, file, NULL, DB_BTREE,
	    DB_CREATE | DB_AUTO_COMMIT | DB_READ_UNCOMMITTED, 0600)) != 0)
		goto fail;
	return (0);
 fail:
	snprintf(err, errlen, "database %s: cannot open %s (%s%s%s); restore "
	    "it from backup or check it with db_verify -h %s %s", reg->r_dir,
	    file, db_strerror(ret), reg->r_dbmsg[0] ? ": " : "", reg->r_dbmsg,
	    reg->r_dir, file);
	return (-1);
}

struct registry *
registry_open(const char *dir, int (*app_exists)(const char *, void *),
    void *arg, char *err, size_t errlen)
{
	struct registry	*reg;
	int		 ret;

	if (reg_prepare_dir(dir, err, errlen) == -1)
		return (NULL);
	if ((reg = calloc(1, sizeof(*reg))) == NULL ||
	    (reg->r_pending = calloc(REG_PENDING_MAX,
	    sizeof(*reg->r_pending))) == NULL) {
		snprintf(err, errlen, "%s: %s", __func__, strerror(errno));
		free(reg);
		return (NULL);
	}
	reg->r_lockfd = -1;
	if (strlcpy(reg->r_dir, dir, sizeof(reg->r_dir)) >=
	    sizeof(reg->r_dir)) {
		snprintf(err, errlen, "database %s: path too long", dir);
		goto fail;
	}
	reg->r_app_exists = app_exists;
	reg->r_app_arg = arg;
	reg->r_lastckp = reg_monotime();
	if (reg_lock_dir(reg, err, errlen) == -1 ||
	    reg_open_env(reg, err, errlen) == -1 ||
	    reg_open_db(reg, &reg->r_nodes, REG_DB_NODES, 0, err,
	    errlen) == -1 ||
	    reg_open_db(reg, &reg->r_tokens, REG_DB_TOKENS, 1, err,
	    errlen) == -1)
		goto fail;
	/* DB_CREATE rebuilds an empty index from the primary. */
	if ((ret = reg->r_nodes->associate(reg->r_nodes, NULL, reg->r_tokens,
	    reg_token_key, DB_CREATE | DB_AUTO_COMMIT)) != 0) {
		snprintf(err, errlen, "database %s: cannot associate the "
		    "token index (%s%s%s); restore from backup or run "
		    "db_recover -c -h %s", dir, db_strerror(ret),
		    reg->r_dbmsg[0] ? ": " : "", reg->r_dbmsg, dir);
		goto fail;
	}
	return (reg);
 fail:
	if (reg->r_tokens != NULL)
		reg->r_tokens->close(reg->r_tokens, 0);
	if (reg->r_nodes != NULL)
		reg->r_nodes->close(reg->r_nodes, 0);
	if (reg->r_env != NULL)
		reg->r_env->close(reg->r_env, 0);
	if (reg->r_lockfd != -1)
		close(reg->r_lockfd);
	free(reg->r_pending);
	free(reg);
	return (NULL);
}

void
registry_close(struct registry *reg)
{
	if (reg == NULL)
		return;
	(void)registry_flush(reg);
	(void)registry_checkpoint(reg);
	/* The secondary goes first: the primary still points at it. */
	reg->r_tokens->close(reg->r_tokens, 0);
	reg->r_nodes->close(reg->r_nodes, 0);
	reg->r_env->close(reg->r_env, 0);
	close(reg->r_lockfd);
	freezero(reg->r_pending, REG_PENDING_MAX * sizeof(*reg->r_pending));
	freezero(reg, sizeof(*reg));
}

void
registry_bulkload(struct registry *reg, int on)
{
	reg->r_nosync = on;
}

int
registry_checkpoint(struct registry *reg)
{
	int	 ret;

	reg->r_lastckp = reg_monotime();
	if ((ret = reg->r_env->txn_checkpoint(reg->r_env, 0, 0, 0)) != 0)
		return (reg_dberr(reg, __func__, ret));
	return (REG_OK);
}

static int
reg_check_reg(struct registry *reg, const char *type, const char *app,
    const char *node, const char *token, const char *domain)
{
	int	 ret;

	if ((ret = registry_check_node(node)) != REG_OK ||
	    (ret = registry_check_token(token)) != REG_OK ||
	    (ret = reg_check_type(type)) != REG_OK ||
	    (ret = reg_check_app(reg, app)) != REG_OK ||
	    (ret = reg_check_domain(domain)) != REG_OK)
		return (ret);
	return (REG_OK);
}

static void
reg_token_lower(const char *token, char *dst)
{
	size_t	 i;

	for (i = 0; token[i] != '\0'; i++)
		dst[i] = (token[i] >= 'A' && token[i] <= 'F') ?
		    token[i] - 'A' + 'a' : token[i];
	dst[i] = '\0';
}

static void
reg_wrong_domain(struct registry *reg, const struct reg_record *rr,
    const char *domain)
{
	snprintf(reg->r_errmsg, sizeof(reg->r_errmsg), "node %s belongs to "
	    "%s, not %s", rr->rr_node, rr->rr_domain, domain);
}

/*
 * The same node and type again keeps the secret and the time of
 * registration and takes the new token and app; a node owned by another
 * domain is refused.
 */
int
registry_register(struct registry *reg, const char *type, const char *app,
    const char *node, const char *token, const char *domain, int64_t now,
    uint8_t *secret)
{
	struct reg_record	 rr;
	DB_TXN			*txn;
	int			 ret;

	if ((ret = reg_check_reg(reg, type, app, node, token, domain)) !=
	    REG_OK)
		return (ret);
	(void)registry_flush(reg);
	if ((ret = reg_begin(reg, &txn)) != REG_OK)
		return (ret);
	ret = reg_get(reg, txn, node, &rr, DB_RMW);
	if (ret == REG_OK && strcasecmp(rr.rr_domain, domain) != 0) {
		reg_wrong_domain(reg, &rr, domain);
		ret = REG_EWRONGDOMAIN;
		goto fail;
	}
	if (ret == REG_OK && strcmp(rr.rr_type, type) == 0)
		rr.rr_renewed = now;
	else if (ret == REG_OK || ret == REG_ENOTFOUND) {
		memset(&rr, 0, sizeof(rr));
		strlcpy(rr.rr_node, node, sizeof(rr.rr_node));
		strlcpy(rr.rr_type, type, sizeof(rr.rr_type));
		strlcpy(rr.rr_domain, domain, sizeof(rr.rr_domain));
		arc4random_buf(rr.rr_secret, sizeof(rr.rr_secret));
		rr.rr_registered = now;
	} else
		goto fail;
	strlcpy(rr.rr_app, app, sizeof(rr.rr_app));
	reg_token_lower(token, rr.rr_token);
	if ((ret = reg_put(reg, txn, &rr)) != REG_OK)
		goto fail;
	if ((ret = reg_commit(reg, txn, 1)) != REG_OK)
		goto done;
	memcpy(secret, rr.rr_secret, SECRET_LEN);
	goto done;
 fail:
	reg_abort(reg, txn);
 done:
	explicit_bzero(&rr, sizeof(rr));
	return (ret);
}

int
registry_unregister(struct registry *reg, const char *node, const char *type,
    const char *domain)
{
	struct reg_record	 rr;
	DB_TXN			*txn;
	int			 ret;

	if ((ret = registry_check_node(node)) != REG_OK ||
	    (ret = reg_check_type(type)) != REG_OK ||
	    (ret = reg_check_domain(domain)) != REG_OK)
		return (ret);
	(void)registry_flush(reg);
	if ((ret = reg_begin(reg, &txn)) != REG_OK)
		return (ret);
	if ((ret = reg_get(reg, txn, node, &rr, DB_RMW)) != REG_OK)
		goto fail;
	if (strcmp(rr.rr_type, type) != 0) {
		ret = REG_ENOTFOUND;
		goto fail;
	}
	if (strcasecmp(rr.rr_domain, domain) != 0) {
		reg_wrong_domain(reg, &rr, domain);
		ret = REG_EWRONGDOMAIN;
		goto fail;
	}
	if ((ret = reg_del(reg, txn, node)) != REG_OK)
		goto fail;
	ret = reg_commit(reg, txn, 1);
	goto done;
 fail:
	reg_abort(reg, txn);
 done:
	explicit_bzero(&rr, sizeof(rr));
	return (ret);
}

/*
 * The push path.  Not found, wrong domain and wrong secret are told apart
 * for the log; the caller answers all three the same way.
 */
int
registry_lookup(struct registry *reg, const char *node, const char *domain,
    const uint8_t *secret, struct reg_record *rr)
{
	int	 ret;

	if ((ret = registry_check_node(node)) != REG_OK ||
	    (ret = reg_check_domain(domain)) != REG_OK)
		return (ret);
	/*
	 * No transaction is open between calls in the single-threaded
	 * parent, so a read without read locks sees only committed data.
	 */
	if ((ret = reg_get(reg, NULL, node, rr, DB_READ_UNCOMMITTED)) !=
	    REG_OK)
		return (ret);
	if (strcasecmp(rr->rr_domain, domain) != 0)
		ret = REG_EWRONGDOMAIN;
	/* libbsd 0.11 lacks timingsafe_bcmp; libcrypto's is constant time. */
	else if (CRYPTO_memcmp(rr->rr_secret, secret, SECRET_LEN) != 0)
		ret = REG_EWRONGSECRET;
	if (ret != REG_OK)
		explicit_bzero(rr, sizeof(*rr));
	return (ret);
}

int
registry_get(struct registry *reg, const char *node, struct reg_record *rr)
{
	int	 ret;

	if ((ret = registry_check_node(node)) != REG_OK)
		return (ret);
	return (reg_get(reg, NULL, node, rr, 0));
}

static int
reg_mark(struct registry *reg, const char *node, int kind, int64_t now)
{
	struct reg_pending	*rp;
	int			 ret = REG_OK;

	if ((ret = registry_check_node(node)) != REG_OK)
		return (ret);
	if (reg->r_npending == REG_PENDING_MAX)
		ret = registry_flush(reg);
	rp = &reg->r_pending[reg->r_npending++];
	strlcpy(rp->rp_node, node, sizeof(rp->rp_node));
	rp->rp_kind = kind;
	rp->rp_time = now;
	return (ret);
}

int
registry_mark_success(struct registry *reg, const char *node, int64_t now)
{
	return (reg_mark(reg, node, REG_MARK_SUCCESS, now));
}

int
registry_mark_error(struct registry *reg, const char *node, int64_t now)
{
	return (reg_mark(reg, node, REG_MARK_ERROR, now));
}

size_t
registry_pending(struct registry *reg)
{
	return (reg->r_npending);
}

/*
 * One cursor finds and rewrites the record: a get and a put would walk
 * the tree twice more.
 */
static int
reg_apply_pending(struct registry *reg, DB_TXN *txn,
    const struct reg_pending *rp)
{
	struct reg_dbt		 rd;
	struct reg_record	 rr;
	DBC			*c;
	int64_t			*ts;
	int			 ret, dbret;

	if ((dbret = reg->r_nodes->cursor(reg->r_nodes, txn, &c, 0)) != 0)
		return (reg_dberr(reg, __func__, dbret));
	reg_dbt_init(&rd, rp->rp_node);
	dbret = c->get(c, &rd.rd_key, &rd.rd_data, DB_SET | DB_RMW);
	if (dbret == DB_NOTFOUND)
		ret = REG_OK;		/* deleted since the push */
	else if (dbret != 0)
		ret = reg_dberr(reg, __func__, dbret);
	else if ((ret = reg_dbt_record(&rd, &rr)) == REG_OK) {
		ts = rp->rp_kind == REG_MARK_SUCCESS ? &rr.rr_last_success :
		    &rr.rr_last_error;
		if (*ts < rp->rp_time) {
			*ts = rp->rp_time;
			if ((rd.rd_data.size = reg_encode(&rr,
			    rd.rd_databuf)) == 0)
				ret = REG_ECORRUPT;
			else if ((dbret = c->put(c, &rd.rd_key, &rd.rd_data,
			    DB_CURRENT)) != 0)
				ret = reg_dberr(reg, __func__, dbret);
		}
		explicit_bzero(&rr, sizeof(rr));
	}
	explicit_bzero(rd.rd_databuf, sizeof(rd.rd_databuf));
	if ((dbret = c->close(c)) != 0 && ret == REG_OK)
		ret = reg_dberr(reg, __func__, dbret);
	return (ret);
}

/*
 * Writes the buffered timestamps in one transaction without a log flush.
 * They are dropped when that fails: they are the data we may lose.
 */
int
registry_flush(struct registry *reg)
{
	DB_TXN	*txn;
	size_t	 i;
	int	 ret = REG_OK;

	if (reg->r_npending > 0) {
		if ((ret = reg_begin(reg, &txn)) != REG_OK)
			goto done;
		for (i = 0; i < reg->r_npending; i++)
			if ((ret = reg_apply_pending(reg, txn,
			    &reg->r_pending[i])) != REG_OK)
				break;
		if (ret == REG_OK)
			ret = reg_commit(reg, txn, 0);
		else
			reg_abort(reg, txn);
	}
 done:
	reg->r_npending = 0;
	if (ret == REG_OK &&
	    reg_monotime() - reg->r_lastckp >= REG_CHECKPOINT_INTERVAL)
		ret = registry_checkpoint(reg);
	return (ret);
}

static int
reg_append(struct reg_record **recs, size_t *n, size_t *cap,
    const struct reg_record *rr)
{
	struct reg_record	*p;
	size_t			 ncap;

	if (*n == *cap) {
		ncap = *cap == 0 ? 8 : *cap * 2;
		if ((p = recallocarray(*recs, *cap, ncap, sizeof(*p))) == NULL)
			return (REG_ENOMEM);
		*recs = p;
		*cap = ncap;
	}
	(*recs)[(*n)++] = *rr;
	return (REG_OK);
}

void
registry_records_free(struct reg_record *recs, size_t n)
{
	if (recs != NULL)
		freezero(recs, n * sizeof(*recs));
}

/*
 * Collects, through the token index, the nodes the dead token may be
 * removed from: those neither registered nor renewed after APNs saw the
 * token die.
 */
static int
reg_dead_nodes(struct registry *reg, DB_TXN *txn, const char *token,
    int64_t ts, struct reg_record **recs, size_t *n, size_t *cap)
{
	struct reg_dbt		 rd;
	struct reg_record	 rr;
	DBC			*c;
	DBT			 skey;
	uint8_t			 tok[REG_TOKEN_BYTES_MAX];
	u_int32_t		 op = DB_SET;
	int			 ret, dbret;

	memset(&skey, 0, sizeof(skey));
	skey.data = tok;
	skey.size = reg_token_pack(token, tok);
	if ((dbret = reg->r_tokens->cursor(reg->r_tokens, txn, &c, 0)) != 0)
		return (reg_dberr(reg, __func__, dbret));
	reg_dbt_init(&rd, NULL);
	ret = REG_OK;
	while (*n < REG_NODESET_MAX) {
		dbret = c->pget(c, &skey, &rd.rd_key, &rd.rd_data,
		    op | DB_RMW);
		op = DB_NEXT_DUP;
		if (dbret == DB_NOTFOUND)
			break;
		if (dbret != 0) {
			ret = reg_dberr(reg, __func__, dbret);
			break;
		}
		if ((ret = reg_dbt_record(&rd, &rr)) != REG_OK)
			break;
		if (rr.rr_registered <= ts && rr.rr_renewed <= ts &&
		    (ret = reg_append(recs, n, cap, &rr)) != REG_OK)
			break;
	}
	explicit_bzero(&rr, sizeof(rr));
	explicit_bzero(rd.rd_databuf, sizeof(rd.rd_databuf));
	if ((dbret = c->close(c)) != 0 && ret == REG_OK)
		ret = reg_dberr(reg, __func__, dbret);
	return (ret);
}

/*
 * APNs answered 410 with a timestamp in milliseconds; we keep seconds, so
 * a node registered or renewed in the same second as the timestamp counts
 * as not later and is deleted.  At most REG_NODESET_MAX nodes go at once;
 * the next 410 takes the rest.  The caller frees *recs with
 * registry_records_free.
 */
int
registry_delete_by_token(struct registry *reg, const char *token,
    int64_t apns_ms, struct reg_record **recs, size_t *n)
{
	DB_TXN	*txn;
	size_t	 i, cap = 0;
	int64_t	 ts;
	int	 ret;

	*recs = NULL;
	*n = 0;
	if ((ret = registry_check_token(token)) != REG_OK)
		return (ret);
	if (apns_ms < 0)
		return (REG_ETIME);
	ts = apns_ms / 1000;
	(void)registry_flush(reg);
	if ((ret = reg_begin(reg, &txn)) != REG_OK)
		return (ret);
	if ((ret = reg_dead_nodes(reg, txn, token, ts, recs, n, &cap)) !=
	    REG_OK)
		goto fail;
	for (i = 0; i < *n; i++)
		if ((ret = reg_del(reg, txn, (*recs)[i].rr_node)) != REG_OK)
			goto fail;
	if (*n == 0) {
		reg_abort(reg, txn);
		return (REG_OK);
	}
	if ((ret = reg_commit(reg, txn, 1)) == REG_OK)
		return (REG_OK);
	goto drop;
 fail:
	reg_abort(reg, txn);
 drop:
	registry_records_free(*recs, cap);
	*recs = NULL;
	*n = 0;
	return (ret);
}

/*
 * Walks the primary in key order.  The callback must not change the
 * registry (the cursor holds locks); a non-zero return stops the walk.
 */
int
registry_list(struct registry *reg,
    int (*cb)(const struct reg_record *, void *), void *arg)
{
	struct reg_dbt		 rd;
	struct reg_record	 rr;
	DBC			*c;
	int			 ret = REG_OK, dbret;

	if ((dbret = reg->r_nodes->cursor(reg->r_nodes, NULL, &c, 0)) != 0)
		return (reg_dberr(reg, __func__, dbret));
	reg_dbt_init(&rd, NULL);
	for (;;) {
		dbret = c->get(c, &rd.rd_key, &rd.rd_data, DB_NEXT);
		if (dbret == DB_NOTFOUND)
			break;
		if (dbret != 0) {
			ret = reg_dberr(reg, __func__, dbret);
			break;
		}
		if ((ret = reg_dbt_record(&rd, &rr)) != REG_OK)
			break;
		if (cb(&rr, arg) != 0)
			break;
	}
	explicit_bzero(&rr, sizeof(rr));
	explicit_bzero(rd.rd_databuf, sizeof(rd.rd_databuf));
	if ((dbret = c->close(c)) != 0 && ret == REG_OK)
		ret = reg_dberr(reg, __func__, dbret);
	return (ret);
}

struct reg_counter {
	const char	*rc_app;
	uint64_t	 rc_n;
};

static int
reg_count_one(const struct reg_record *rr, void *arg)
{
	struct reg_counter	*rc = arg;

	if (rc->rc_app == NULL || strcmp(rc->rc_app, rr->rr_app) == 0)
		rc->rc_n++;
	return (0);
}

/* Counts the registrations of one app, or of all when app is NULL. */
int
registry_count(struct registry *reg, const char *app, uint64_t *n)
{
	struct reg_counter	 rc;
	int			 ret;

	rc.rc_app = app;
	rc.rc_n = 0;
	ret = registry_list(reg, reg_count_one, &rc);
	*n = rc.rc_n;
	return (ret);
}

static int
reg_check_nodes(const char **nodes, size_t n)
{
	size_t	 i;
	int	 ret;

	if (n > REG_NODESET_MAX)
		return (REG_ETOOMANY);
	for (i = 0; i < n; i++)
		if ((ret = registry_check_node(nodes[i])) != REG_OK)
			return (ret);
	return (REG_OK);
}

/* The records of a set of nodes, for a GDPR export; unknown ones skipped. */
int
registry_export(struct registry *reg, const char **nodes, size_t n,
    int (*cb)(const struct reg_record *, void *), void *arg)
{
	struct reg_record	 rr;
	size_t			 i;
	int			 ret;

	if ((ret = reg_check_nodes(nodes, n)) != REG_OK)
		return (ret);
	for (i = 0; i < n; i++) {
		ret = reg_get(reg, NULL, nodes[i], &rr, 0);
		if (ret == REG_ENOTFOUND) {
			ret = REG_OK;
			continue;
		}
		if (ret != REG_OK || cb(&rr, arg) != 0)
			break;
	}
	explicit_bzero(&rr, sizeof(rr));
	return (ret);
}

/* Erases a set of nodes in one durable transaction; unknown ones skipped. */
int
registry_erase(struct registry *reg, const char **nodes, size_t n,
    size_t *erased)
{
	DB_TXN	*txn;
	size_t	 i, count = 0;
	int	 ret;

	*erased = 0;
	if ((ret = reg_check_nodes(nodes, n)) != REG_OK)
		return (ret);
	(void)registry_flush(reg);
	if ((ret = reg_begin(reg, &txn)) != REG_OK)
		return (ret);
	for (i = 0; i < n; i++) {
		ret = reg_del(reg, txn, nodes[i]);
		if (ret == REG_ENOTFOUND)
			continue;
		if (ret != REG_OK) {
			reg_abort(reg, txn);
			return (ret);
		}
		count++;
	}
	if ((ret = reg_commit(reg, txn, 1)) == REG_OK)
		*erased = count;
	return (ret);
}
