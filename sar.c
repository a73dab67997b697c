/*
 * GDPR subject access, the parent's side (PROTOCOL.md section 6).
 * `sar request' makes a one-time code bound to a bare JID; a message
 * from that JID carrying the code (xmppe passes it on) verifies the JID
 * for a while; `sar export' and `sar erase' then have logd search its
 * files for the JID's event lines and export or erase the registrations
 * those lines name.  Codes live in this process's memory only, as
 * SHA-256 hashes, and are never logged; logd sees the JID, never a
 * code; apnse sees neither.
 */

#include <sys/types.h>
#include <sys/queue.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "monalpushd.h"

#define SAR_BASE32		"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
#define SAR_GROUP		4	/* code characters between dashes */
#define SAR_LOCALPART_MAX	1023	/* RFC 7622 */
#define SAR_EXPIRY_ENV		"MONALPUSHD_TEST_SAR_EXPIRY"

struct sar_pending {
	TAILQ_ENTRY(sar_pending) sp_entry;
	char			 sp_jid[JID_MAX + 1];
	uint8_t			 sp_hash[SHA256_DIGEST_LENGTH];
	int			 sp_hascode;
	int			 sp_tries;
	time_t			 sp_code_expires;
	time_t			 sp_verified_until;	/* 0: never */
};

/* One export or erase: logd's lines come in, then its END. */
struct sar_job {
	TAILQ_ENTRY(sar_job)	 sj_entry;
	uint32_t		 sj_id;		/* control client, logd peerid */
	uint32_t		 sj_type;	/* IMSG_CTL_SAR_EXPORT, _ERASE */
	char			 sj_jid[JID_MAX + 1];
	char			 sj_domain[DOMAIN_MAX + 1];
	char			(*sj_nodes)[NODE_MAX + 1];
	size_t			 sj_nnodes;
	size_t			 sj_nodes_size;
	uint64_t		 sj_lines;
	int			 sj_toomany;
};

/* What registry_export hands the callbacks. */
struct sar_walk {
	struct privsep		*sw_ps;
	struct sar_job		*sw_job;
	const char		**sw_erase;	/* erase: nodes of the domain */
	size_t			 sw_nerase;
	size_t			 sw_records;
};

static TAILQ_HEAD(, sar_pending) sar_pendings =
    TAILQ_HEAD_INITIALIZER(sar_pendings);
static TAILQ_HEAD(, sar_job)	 sar_jobs = TAILQ_HEAD_INITIALIZER(sar_jobs);
static size_t			 sar_npending, sar_njobs;

static time_t
sar_expiry(void)
{
#ifdef MONALPUSHD_TEST
	const char	*s, *errstr;
	long long	 v;

	/* Tests cannot wait a day for a code to expire. */
	if ((s = getenv(SAR_EXPIRY_ENV)) != NULL) {
		v = strtonum(s, 1, SAR_EXPIRY, &errstr);
		if (errstr == NULL)
			return (v);
	}
#endif
	return (SAR_EXPIRY);
}

static void
sar_fail(struct privsep *ps, uint32_t id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
sar_fail(struct privsep *ps, uint32_t id, const char *fmt, ...)
{
	char	 msg[512];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	control_imsg_reply(ps, id, IMSG_CTL_FAIL, msg, strlen(msg) + 1);
}

/* Berkeley DB asks for recovery: the restart of the daemon does it. */
static int
sar_reg_check(int r)
{
	if (r == REG_EPANIC)
		fatalx("registration database needs recovery; exiting so "
		    "that the restart recovers it");
	return (r);
}

/*
 * A bare JID, [localpart@]domain, with no resource and no blank or
 * control character (it goes into log lines and is matched as one
 * field of them).  The domain part is copied out.
 */
static int
sar_jid_check(const char *jid, char *domain, size_t len)
{
	const char	*p, *at, *d;

	if (*jid == '\0' || strlen(jid) > JID_MAX)
		return (-1);
	for (p = jid; *p != '\0'; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '/')
			return (-1);
	if ((at = strchr(jid, '@')) != NULL) {
		if (at == jid || at - jid > SAR_LOCALPART_MAX ||
		    strchr(at + 1, '@') != NULL)
			return (-1);
		d = at + 1;
	} else
		d = jid;
	if (*d == '\0' || strlen(d) > DOMAIN_MAX)
		return (-1);
	return (strlcpy(domain, d, len) < len ? 0 : -1);
}

/*
 * The value of the first field `name=' of a privacy event line
 * ("TIME event TYPE name=value ..."), or -1: operational lines have a
 * process name where events have "event", so they never match.
 */
int
sar_line_field(const char *line, const char *name, char *buf, size_t len)
{
	const char	*p, *e;
	size_t		 nlen = strlen(name), vlen;

	if ((p = strchr(line, ' ')) == NULL || strncmp(p, " event ", 7) != 0)
		return (-1);
	if ((p = strchr(p + 7, ' ')) == NULL)
		return (-1);
	while (*p == ' ') {
		p++;
		e = p + strcspn(p, " \n");
		if ((size_t)(e - p) > nlen && strncmp(p, name, nlen) == 0 &&
		    p[nlen] == '=') {
			vlen = e - p - nlen - 1;
			if (vlen >= len)
				return (-1);
			memcpy(buf, p + nlen + 1, vlen);
			buf[vlen] = '\0';
			return (0);
		}
		p = e;
	}
	return (-1);
}

static struct sar_pending *
sar_find(const char *jid)
{
	struct sar_pending	*sp;

	TAILQ_FOREACH(sp, &sar_pendings, sp_entry)
		if (strcasecmp(sp->sp_jid, jid) == 0)
			return (sp);
	return (NULL);
}

static void
sar_void_code(struct sar_pending *sp)
{
	explicit_bzero(sp->sp_hash, sizeof(sp->sp_hash));
	sp->sp_hascode = 0;
}

/* Forget the JIDs whose code and verification have both run out. */
static void
sar_expire(time_t now)
{
	struct sar_pending	*sp, *next;

	TAILQ_FOREACH_SAFE(sp, &sar_pendings, sp_entry, next) {
		if (sp->sp_hascode && now < sp->sp_code_expires)
			continue;
		if (now < sp->sp_verified_until)
			continue;
		TAILQ_REMOVE(&sar_pendings, sp, sp_entry);
		sar_npending--;
		freezero(sp, sizeof(*sp));
	}
}

static void
sar_request(struct privsep *ps, uint32_t id, const char *jid)
{
	struct mp_domain	*d;
	struct sar_pending	*sp;
	struct ctl_sar		 cs;
	uint8_t			 rnd[SAR_CODE_LEN];
	char			 code[SAR_CODE_LEN + 1];
	time_t			 now = time(NULL);
	size_t			 i, o;

	if ((d = TAILQ_FIRST(&ps->ps_conf->c_domains)) == NULL) {
		sar_fail(ps, id, "no domain is configured to receive the "
		    "confirmation message");
		return;
	}
	sar_expire(now);
	if ((sp = sar_find(jid)) == NULL) {
		if (sar_npending >= SAR_PENDING_MAX) {
			sar_fail(ps, id, "%d subject access requests are "
			    "pending; try again when some have expired",
			    SAR_PENDING_MAX);
			return;
		}
		if ((sp = calloc(1, sizeof(*sp))) == NULL) {
			sar_fail(ps, id, "out of memory");
			return;
		}
		strlcpy(sp->sp_jid, jid, sizeof(sp->sp_jid));
		TAILQ_INSERT_TAIL(&sar_pendings, sp, sp_entry);
		sar_npending++;
	}
	/* 5 bits of each random byte: 256 is a multiple of 32. */
	arc4random_buf(rnd, sizeof(rnd));
	for (i = 0; i < SAR_CODE_LEN; i++)
		code[i] = SAR_BASE32[rnd[i] & 31];
	code[SAR_CODE_LEN] = '\0';
	SHA256((const unsigned char *)code, SAR_CODE_LEN, sp->sp_hash);
	sp->sp_hascode = 1;
	sp->sp_tries = 0;
	sp->sp_code_expires = now + sar_expiry();
	sp->sp_verified_until = 0;

	memset(&cs, 0, sizeof(cs));
	strlcpy(cs.sr_jid, jid, sizeof(cs.sr_jid));
	snprintf(cs.sr_to, sizeof(cs.sr_to), SAR_LOCALPART "@%s", d->d_name);
	for (i = 0, o = 0; i < SAR_CODE_LEN; i++) {
		if (i > 0 && i % SAR_GROUP == 0)
			cs.sr_code[o++] = '-';
		cs.sr_code[o++] = code[i];
	}
	cs.sr_expires = sp->sp_code_expires;
	control_imsg_reply(ps, id, IMSG_CTL_SAR, &cs, sizeof(cs));
	control_imsg_reply(ps, id, IMSG_CTL_END, NULL, 0);
	explicit_bzero(rnd, sizeof(rnd));
	explicit_bzero(code, sizeof(code));
	explicit_bzero(&cs, sizeof(cs));
	log_info("sar: subject access request for %s, confirmation to %s@%s",
	    jid, SAR_LOCALPART, d->d_name);
}

/* xmppe passed on a message to gdpr@: a code from an authenticated JID. */
static void
sar_verify(const struct sar_verify *sv)
{
	struct sar_pending	*sp;
	uint8_t			 h[SHA256_DIGEST_LENGTH];
	time_t			 now = time(NULL);
	int			 ok;

	if ((sp = sar_find(sv->sv_jid)) == NULL) {
		/* Not a subject: its address is nobody's business here. */
		log_info("sar: a confirmation message from a JID without a "
		    "subject access request");
		return;
	}
	if (!sp->sp_hascode) {
		log_info("sar: a confirmation message from %s, which has no "
		    "code pending", sp->sp_jid);
		return;
	}
	if (now >= sp->sp_code_expires) {
		sar_void_code(sp);
		log_warnx("sar: an expired code from %s: it was not verified",
		    sp->sp_jid);
		sar_expire(now);
		return;
	}
	SHA256((const unsigned char *)sv->sv_code, strlen(sv->sv_code), h);
	ok = strlen(sv->sv_code) == SAR_CODE_LEN &&
	    CRYPTO_memcmp(h, sp->sp_hash, sizeof(h)) == 0;
	explicit_bzero(h, sizeof(h));
	if (!ok) {
		if (++sp->sp_tries >= SAR_TRIES_MAX) {
			sar_void_code(sp);
			log_warnx("sar: a wrong code from %s: it was not "
			    "verified, and after %d wrong codes the code is "
			    "void", sp->sp_jid, SAR_TRIES_MAX);
		} else
			log_warnx("sar: a wrong code from %s: it was not "
			    "verified", sp->sp_jid);
		return;
	}
	sar_void_code(sp);
	sp->sp_verified_until = now + sar_expiry();
	log_info("sar: %s verified by its confirmation message, for %lld "
	    "seconds", sp->sp_jid, (long long)sar_expiry());
}

static struct sar_job *
sar_job_find(uint32_t id)
{
	struct sar_job	*sj;

	TAILQ_FOREACH(sj, &sar_jobs, sj_entry)
		if (sj->sj_id == id)
			return (sj);
	return (NULL);
}

static void
sar_job_free(struct sar_job *sj)
{
	TAILQ_REMOVE(&sar_jobs, sj, sj_entry);
	sar_njobs--;
	free(sj->sj_nodes);
	freezero(sj, sizeof(*sj));
}

static void
sar_start(struct privsep *ps, uint32_t id, uint32_t type, const char *jid,
    const char *domain)
{
	struct sar_pending	*sp;
	struct sar_job		*sj;
	struct sar_search	 sh;
	time_t			 now = time(NULL);

	sar_expire(now);
	if ((sp = sar_find(jid)) == NULL || now >= sp->sp_verified_until) {
		sar_fail(ps, id, "%s is not verified: run sar request %s and "
		    "have the user send the code from that JID first", jid,
		    jid);
		return;
	}
	if (sar_job_find(id) != NULL) {
		sar_fail(ps, id, "a search is already running for this "
		    "client");
		return;
	}
	if (sar_njobs >= SAR_SEARCH_MAX) {
		sar_fail(ps, id, "%d log searches are running; try again",
		    SAR_SEARCH_MAX);
		return;
	}
	if ((sj = calloc(1, sizeof(*sj))) == NULL) {
		sar_fail(ps, id, "out of memory");
		return;
	}
	sj->sj_id = id;
	sj->sj_type = type;
	strlcpy(sj->sj_jid, jid, sizeof(sj->sj_jid));
	strlcpy(sj->sj_domain, domain, sizeof(sj->sj_domain));
	memset(&sh, 0, sizeof(sh));
	strlcpy(sh.sh_jid, jid, sizeof(sh.sh_jid));
	if (proc_compose(ps, PROC_LOGD, IMSG_SAR_SEARCH, id, -1, &sh,
	    sizeof(sh)) == -1) {
		freezero(sj, sizeof(*sj));
		sar_fail(ps, id, "logd is not running");
		return;
	}
	TAILQ_INSERT_TAIL(&sar_jobs, sj, sj_entry);
	sar_njobs++;
}

/* The control requests: sar request, export and erase. */
void
sar_ctl(struct privsep *ps, uint32_t id, struct imsg *imsg)
{
	struct ctl_req	 cr;
	char		 domain[DOMAIN_MAX + 1];

	if (IMSG_DATA_SIZE(imsg) != sizeof(cr)) {
		sar_fail(ps, id, "bad request");
		return;
	}
	memcpy(&cr, imsg->data, sizeof(cr));
	if (memchr(cr.cr_arg, '\0', sizeof(cr.cr_arg)) == NULL ||
	    sar_jid_check(cr.cr_arg, domain, sizeof(domain)) == -1) {
		sar_fail(ps, id, "not a bare JID (localpart@domain, no "
		    "resource)");
		return;
	}
	switch (imsg->hdr.type) {
	case IMSG_CTL_SAR_REQUEST:
		sar_request(ps, id, cr.cr_arg);
		break;
	case IMSG_CTL_SAR_EXPORT:
	case IMSG_CTL_SAR_ERASE:
		sar_start(ps, id, imsg->hdr.type, cr.cr_arg, domain);
		break;
	default:
		sar_fail(ps, id, "bad request");
		break;
	}
}

/* A node named by one of the JID's lines joins the set, once. */
static void
sar_job_node(struct sar_job *sj, const char *node)
{
	void	*p;
	size_t	 i, nsize;

	for (i = 0; i < sj->sj_nnodes; i++)
		if (strcmp(sj->sj_nodes[i], node) == 0)
			return;
	if (sj->sj_nnodes >= REG_NODESET_MAX) {
		sj->sj_toomany = 1;
		return;
	}
	if (sj->sj_nnodes == sj->sj_nodes_size) {
		nsize = sj->sj_nodes_size == 0 ? 16 : sj->sj_nodes_size * 2;
		if (nsize > REG_NODESET_MAX)
			nsize = REG_NODESET_MAX;
		if ((p = recallocarray(sj->sj_nodes, sj->sj_nodes_size, nsize,
		    sizeof(*sj->sj_nodes))) == NULL) {
			sj->sj_toomany = 1;
			return;
		}
		sj->sj_nodes = p;
		sj->sj_nodes_size = nsize;
	}
	strlcpy(sj->sj_nodes[sj->sj_nnodes++], node, sizeof(*sj->sj_nodes));
}

static void
sar_line(struct privsep *ps, uint32_t id, const char *line, size_t len)
{
	struct sar_job	*sj;
	char		 node[NODE_MAX + 1];

	if ((sj = sar_job_find(id)) == NULL)
		fatalx("%s: a log line for unknown search %u", __func__, id);
	sj->sj_lines++;
	if (sar_line_field(line, "node", node, sizeof(node)) == 0 &&
	    registry_check_node(node) == REG_OK)
		sar_job_node(sj, node);
	if (sj->sj_type == IMSG_CTL_SAR_EXPORT)
		control_imsg_reply(ps, id, IMSG_CTL_SAR_LINE, line, len);
}

/*
 * Only registrations of the JID's own domain: a node named by an old
 * line may since belong to another server's user.
 */
static int
sar_export_cb(const struct reg_record *rr, void *arg)
{
	struct sar_walk	*sw = arg;
	struct ctl_reg	 cg;

	if (strcasecmp(rr->rr_domain, sw->sw_job->sj_domain) != 0)
		return (0);
	memset(&cg, 0, sizeof(cg));
	strlcpy(cg.cg_node, rr->rr_node, sizeof(cg.cg_node));
	strlcpy(cg.cg_app, rr->rr_app, sizeof(cg.cg_app));
	strlcpy(cg.cg_type, rr->rr_type, sizeof(cg.cg_type));
	strlcpy(cg.cg_token, rr->rr_token, sizeof(cg.cg_token));
	strlcpy(cg.cg_domain, rr->rr_domain, sizeof(cg.cg_domain));
	cg.cg_registered = rr->rr_registered;
	cg.cg_renewed = rr->rr_renewed;
	cg.cg_last_success = rr->rr_last_success;
	cg.cg_last_error = rr->rr_last_error;
	control_imsg_reply(sw->sw_ps, sw->sw_job->sj_id, IMSG_CTL_REG, &cg,
	    sizeof(cg));
	sw->sw_records++;
	return (0);
}

static int
sar_erase_cb(const struct reg_record *rr, void *arg)
{
	struct sar_walk	*sw = arg;
	size_t		 i;

	if (strcasecmp(rr->rr_domain, sw->sw_job->sj_domain) != 0)
		return (0);
	/* registry_export walks the job's own nodes, in order. */
	for (i = 0; i < sw->sw_job->sj_nnodes; i++)
		if (strcmp(sw->sw_job->sj_nodes[i], rr->rr_node) == 0) {
			sw->sw_erase[sw->sw_nerase++] =
			    sw->sw_job->sj_nodes[i];
			break;
		}
	return (0);
}

static void
sar_erase(struct privsep *ps, struct sar_job *sj, const char **nodes,
    struct sar_walk *sw)
{
	struct ctl_sar_erased	 se;
	struct log_event	 le;
	size_t			 erased = 0;
	int			 r;

	if ((sj->sj_nnodes > 0 && (r = sar_reg_check(registry_export(
	    ps->ps_reg, nodes, sj->sj_nnodes, sar_erase_cb, sw))) !=
	    REG_OK) ||
	    (sw->sw_nerase > 0 && (r = sar_reg_check(registry_erase(
	    ps->ps_reg, sw->sw_erase, sw->sw_nerase, &erased))) != REG_OK)) {
		sar_fail(ps, sj->sj_id, "registrations: %s",
		    registry_strerror(r));
		return;
	}
	memset(&le, 0, sizeof(le));
	le.le_type = EV_SAR_ERASE;
	le.le_time = time(NULL);
	strlcpy(le.le_jid, sj->sj_jid, sizeof(le.le_jid));
	log_event(&le);
	memset(&se, 0, sizeof(se));
	se.se_lines = sj->sj_lines;
	se.se_erased = erased;
	control_imsg_reply(ps, sj->sj_id, IMSG_CTL_SAR_ERASED, &se,
	    sizeof(se));
	control_imsg_reply(ps, sj->sj_id, IMSG_CTL_OK, NULL, 0);
}

/* logd has searched every file: the records, then the end. */
static void
sar_end(struct privsep *ps, uint32_t id, const struct sar_end *sn)
{
	struct sar_job	*sj;
	struct sar_walk	 sw;
	const char	**nodes = NULL;
	size_t		 i;
	int		 r;

	if ((sj = sar_job_find(id)) == NULL)
		fatalx("%s: end of unknown search %u", __func__, id);
	if (sn->sn_lines != sj->sj_lines)
		fatalx("%s: logd sent %llu lines, says %llu", __func__,
		    (unsigned long long)sj->sj_lines,
		    (unsigned long long)sn->sn_lines);
	if (sn->sn_errors > 0) {
		sar_fail(ps, id, "logd could not read %u of its log files "
		    "(see its log); nothing was %s", sn->sn_errors,
		    sj->sj_type == IMSG_CTL_SAR_ERASE ? "erased" : "exported "
		    "from the registrations");
		goto done;
	}
	if (sj->sj_toomany) {
		sar_fail(ps, id, "the log lines name more than %d nodes (or "
		    "memory ran out); nothing was done", REG_NODESET_MAX);
		goto done;
	}
	if (sj->sj_nnodes > 0 && (nodes = reallocarray(NULL, sj->sj_nnodes,
	    sizeof(*nodes) * 2)) == NULL) {
		sar_fail(ps, id, "out of memory");
		goto done;
	}
	/* The first half names the nodes, the second collects erasures. */
	for (i = 0; i < sj->sj_nnodes; i++)
		nodes[i] = sj->sj_nodes[i];
	memset(&sw, 0, sizeof(sw));
	sw.sw_ps = ps;
	sw.sw_job = sj;
	(void)registry_flush(ps->ps_reg);
	if (sj->sj_type == IMSG_CTL_SAR_ERASE) {
		if (nodes != NULL)
			sw.sw_erase = nodes + sj->sj_nnodes;
		sar_erase(ps, sj, nodes, &sw);
		goto done;
	}
	if (sj->sj_nnodes > 0 && (r = sar_reg_check(registry_export(
	    ps->ps_reg, nodes, sj->sj_nnodes, sar_export_cb, &sw))) !=
	    REG_OK) {
		sar_fail(ps, id, "registrations: %s", registry_strerror(r));
		goto done;
	}
	control_imsg_reply(ps, id, IMSG_CTL_END, NULL, 0);
	log_info("sar: exported %llu log lines and %zu registrations of %s",
	    (unsigned long long)sj->sj_lines, sw.sw_records, sj->sj_jid);
 done:
	free(nodes);
	sar_job_free(sj);
}

/* From xmppe, the confirmation; from logd, the search's lines and end. */
int
parent_sar_dispatch(struct privsep *ps, enum mp_proc peer, struct imsg *imsg)
{
	struct sar_verify	 sv;
	struct sar_end		 sn;
	size_t			 len = IMSG_DATA_SIZE(imsg);

	switch (imsg->hdr.type) {
	case IMSG_SAR_VERIFY:
		if (peer != PROC_XMPPE)
			return (-1);
		IMSG_SIZE_CHECK(imsg, &sv);
		memcpy(&sv, imsg->data, sizeof(sv));
		explicit_bzero(imsg->data, sizeof(sv));
		IMSG_STR_CHECK(sv.sv_jid);
		IMSG_STR_CHECK(sv.sv_code);
		sar_verify(&sv);
		explicit_bzero(&sv, sizeof(sv));
		return (0);
	case IMSG_SAR_LINE:
		if (peer != PROC_LOGD)
			return (-1);
		if (len == 0 || len > SAR_LINE_MAX + 1 ||
		    strnlen(imsg->data, len) != len - 1)
			fatalx("%s: bad log line of %zu bytes", __func__, len);
		sar_line(ps, imsg->hdr.peerid, imsg->data, len);
		return (0);
	case IMSG_SAR_END:
		if (peer != PROC_LOGD)
			return (-1);
		IMSG_SIZE_CHECK(imsg, &sn);
		memcpy(&sn, imsg->data, sizeof(sn));
		sar_end(ps, imsg->hdr.peerid, &sn);
		return (0);
	}
	return (-1);
}
