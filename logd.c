/*
 * logd: the only process that writes logs.  Chrooted into the log
 * directory, it appends every process's lines to a daily file named by
 * the UTC date, and deletes the files older than the retention at start
 * and every hour.  A write error drops the line, counts it, and the
 * next line tries to open the file again: logging never stops service.
 * It is also the only reader: a subject access request has it search
 * its files for the privacy events of one JID, a bounded slice per turn
 * of the event loop, so logging goes on meanwhile.
 */

#include <sys/types.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "monalpushd.h"

#define LOGD_SEARCH_NODES 1024	/* nodes one JID's lines may name */
#define LOGD_BUF_SIZE	(64 * 1024)	/* gathered lines, one write */
#define LOGD_PREFIX	"monalpush-"
#define LOGD_SUFFIX	".log"
#define LOGD_NAMELEN	(sizeof(LOGD_PREFIX) - 1 + 10 + sizeof(LOGD_SUFFIX) - 1)
#define LOGD_SEARCH_STEP	1024	/* lines read per loop turn */
#define LOGD_SEARCH_QUEUE	256	/* messages queued to the parent */
#define LOGD_SEARCH_WAIT_MS	10	/* while the parent catches up */

/* One subject access search: the files in date order, one at a time. */
struct logd_search {
	TAILQ_ENTRY(logd_search) lq_entry;
	uint32_t		 lq_id;		/* the parent's search id */
	char			 lq_jid[JID_MAX + 1];
	char			 lq_files[SAR_FILES_MAX][LOGD_NAMELEN + 1];
	size_t			 lq_nfiles;
	size_t			 lq_next;
	FILE			*lq_fp;
	struct sar_end		 lq_end;
	int			 lq_pass;	/* 1: the JID's lines; 2: */
	char			 lq_domain[DOMAIN_MAX + 1]; /* its nodes' */
	char			 lq_nodes[LOGD_SEARCH_NODES][NODE_MAX + 1];
	size_t			 lq_nnodes;
};

struct logd {
	int		 ld_dirfd;
	int		 ld_fd;
	char		 ld_day[11];	/* YYYY-MM-DD of ld_fd */
	int		 ld_retention;
	struct log_stats ld_stats;
	char		 ld_buf[LOGD_BUF_SIZE];
	size_t		 ld_buflen;
	time_t		 ld_bufday;	/* a time in the day of ld_buf */
	uint64_t	 ld_bufcount[PROC_MAX];
	struct event	 ld_flush_ev;
	int		 ld_flush_armed;
	struct event	 ld_purge_ev;
	struct event	 ld_sigterm;
	struct event	 ld_sigusr1;
	struct event	 ld_sigusr2;
	struct event	 ld_search_ev;
	TAILQ_HEAD(, logd_search) ld_searches;
	size_t		 ld_nsearches;
};

static struct logd	 logd;
static enum mp_proc	 logd_source = PROC_LOGD;

static int	logd_dispatch(struct privsep *, enum mp_proc, struct imsg *);

static const struct proc_dispatch logd_dispatch_table[] = {
	{ PROC_PARENT,	logd_dispatch },
	{ PROC_XMPPE,	logd_dispatch },
	{ PROC_APNSE,	logd_dispatch },
	{ PROC_LOGD,	NULL }
};

static void
utc_day(time_t t, char *buf, size_t len)
{
	struct tm	 tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d", &tm);
}

static void
utc_stamp(time_t t, char *buf, size_t len)
{
	struct tm	 tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/*
 * The date of a file logd names, or -1: only those files are ever
 * touched by the purge.
 */
int
logd_filedate(const char *name, time_t *t)
{
	struct tm	 tm;
	const char	*p;

	if (strlen(name) != LOGD_NAMELEN ||
	    strncmp(name, LOGD_PREFIX, sizeof(LOGD_PREFIX) - 1) != 0 ||
	    strcmp(name + LOGD_NAMELEN - (sizeof(LOGD_SUFFIX) - 1),
	    LOGD_SUFFIX) != 0)
		return (-1);
	memset(&tm, 0, sizeof(tm));
	p = strptime(name + sizeof(LOGD_PREFIX) - 1, "%Y-%m-%d", &tm);
	if (p == NULL || strcmp(p, LOGD_SUFFIX) != 0)
		return (-1);
	*t = timegm(&tm);
	return (0);
}

/*
 * Delete the daily files dated `retention' days before today or
 * earlier: a file holds the lines of its whole day, so this is what
 * keeps every line younger than the retention (plus the purge
 * interval).
 */
int
logd_purge(int dirfd, time_t now, int retention, uint64_t *purged)
{
	DIR		*dir;
	struct dirent	*de;
	time_t		 fday, today;
	int		 fd, n = 0;

	today = now - now % 86400;
	if ((fd = dup(dirfd)) == -1)
		return (-1);
	if ((dir = fdopendir(fd)) == NULL) {
		close(fd);
		return (-1);
	}
	rewinddir(dir);
	while ((de = readdir(dir)) != NULL) {
		if (logd_filedate(de->d_name, &fday) == -1)
			continue;
		if (fday > today - (time_t)retention * 86400)
			continue;
		if (unlinkat(dirfd, de->d_name, 0) == 0) {
			n++;
			if (purged != NULL)
				(*purged)++;
		}
	}
	closedir(dir);
	return (n);
}

static void
logd_purge_cb(int fd, short event, void *arg)
{
	struct timeval	 tv = { LOG_PURGE_INTERVAL, 0 };
	int		 n;

	n = logd_purge(logd.ld_dirfd, time(NULL), logd.ld_retention,
	    &logd.ld_stats.ls_purged);
	if (n > 0)
		log_info("purged %d log file%s older than %d days", n,
		    n == 1 ? "" : "s", logd.ld_retention);
	evtimer_add(&logd.ld_purge_ev, &tv);
}

static int
logd_open(time_t now)
{
	char	 day[sizeof(logd.ld_day)], name[64];

	utc_day(now, day, sizeof(day));
	if (logd.ld_fd != -1 && strcmp(day, logd.ld_day) == 0)
		return (0);
	if (logd.ld_fd != -1)
		close(logd.ld_fd);
	snprintf(name, sizeof(name), LOGD_PREFIX "%s" LOGD_SUFFIX, day);
	logd.ld_fd = openat(logd.ld_dirfd, name,
	    O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (logd.ld_fd == -1)
		return (-1);
	strlcpy(logd.ld_day, day, sizeof(logd.ld_day));
	return (0);
}

/*
 * Lines are gathered and written once per event-loop turn (or when the
 * buffer fills or the day changes): one write(2) for a burst of pushes
 * instead of one per line.  A failed write drops the lines it carried
 * and counts them against the processes that sent them.
 */
static void
logd_flush(void)
{
	enum mp_proc	 p;
	size_t		 off = 0;
	ssize_t		 n;

	if (logd.ld_buflen == 0)
		return;
	if (logd_open(logd.ld_bufday) == -1)
		off = 0;
	else
		while (off < logd.ld_buflen) {
			n = write(logd.ld_fd, logd.ld_buf + off,
			    logd.ld_buflen - off);
			if (n <= 0) {
				/* A torn line must not run into the next. */
				if (off > 0 && logd.ld_buf[off - 1] != '\n')
					(void)write(logd.ld_fd, "\n", 1);
				close(logd.ld_fd);
				logd.ld_fd = -1;
				break;
			}
			off += n;
		}
	if (off < logd.ld_buflen)
		for (p = 0; p < PROC_MAX; p++)
			logd.ld_stats.ls_dropped[p] += logd.ld_bufcount[p];
	logd.ld_buflen = 0;
	memset(logd.ld_bufcount, 0, sizeof(logd.ld_bufcount));
}

static void
logd_flush_cb(int fd, short event, void *arg)
{
	logd.ld_flush_armed = 0;
	logd_flush();
}

static void
logd_append(time_t t, const char *line, size_t len)
{
	struct timeval	 now = { 0, 0 };

	logd.ld_stats.ls_lines[logd_source]++;
	if (logd.ld_buflen > 0 && (t / 86400 != logd.ld_bufday / 86400 ||
	    logd.ld_buflen + len > sizeof(logd.ld_buf)))
		logd_flush();
	if (len > sizeof(logd.ld_buf)) {
		logd.ld_stats.ls_dropped[logd_source]++;
		return;
	}
	if (logd.ld_buflen == 0)
		logd.ld_bufday = t;
	memcpy(logd.ld_buf + logd.ld_buflen, line, len);
	logd.ld_buflen += len;
	logd.ld_bufcount[logd_source]++;
	if (!logd.ld_flush_armed && event_initialized(&logd.ld_flush_ev)) {
		logd.ld_flush_armed = 1;
		evtimer_add(&logd.ld_flush_ev, &now);
	} else if (!event_initialized(&logd.ld_flush_ev))
		logd_flush();	/* before the event loop: at once */
}

static void
logd_line(const struct log_msg *lm)
{
	char	 stamp[32], line[LOG_LINE_MAX + 64];
	int	 n;

	utc_stamp(lm->lm_time, stamp, sizeof(stamp));
	n = snprintf(line, sizeof(line), "%s %s %s: %s\n", stamp, lm->lm_proc,
	    log_level_name(lm->lm_level), lm->lm_text);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	logd_append(lm->lm_time, line, n);
}

/*
 * Privacy events: exactly the fields the policy lists, as key=value
 * pairs, so that a subject access request can find a JID's lines.
 */
static void
logd_event(const struct log_event *le)
{
	char	 stamp[32], line[JID_MAX + NODE_MAX + TOKEN_MAX + 128];
	int	 n = -1;

	utc_stamp(le->le_time, stamp, sizeof(stamp));
	switch (le->le_type) {
	case EV_REGISTER:
	case EV_UNREGISTER:
		n = snprintf(line, sizeof(line),
		    "%s event %s jid=%s node=%s token=%s\n", stamp,
		    log_event_name(le->le_type), le->le_jid, le->le_node,
		    le->le_token);
		break;
	case EV_PUSH:
		n = snprintf(line, sizeof(line), "%s event push jid=%s "
		    "node=%s\n", stamp, le->le_jid, le->le_node);
		break;
	case EV_TOKEN_DEAD:
		n = snprintf(line, sizeof(line), "%s event token-dead "
		    "node=%s token=%s status=%d\n", stamp, le->le_node,
		    le->le_token, le->le_status);
		break;
	case EV_SAR_ERASE:
		n = snprintf(line, sizeof(line), "%s event sar-erase jid=%s\n",
		    stamp, le->le_jid);
		break;
	}
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	logd.ld_stats.ls_events++;
	logd_append(le->le_time, line, n);
}

static void
logd_recv_line(struct imsg *imsg)
{
	struct log_msg	 lm;
	size_t		 len = IMSG_DATA_SIZE(imsg);

	/* Only the used part of lm_text travels; it must end in NUL. */
	if (len <= offsetof(struct log_msg, lm_text) || len > sizeof(lm))
		fatalx("%s: bad log message length %zu", __func__, len);
	memcpy(&lm, imsg->data, len);
	if (((char *)&lm)[len - 1] != '\0')
		fatalx("%s: unterminated log message", __func__);
	IMSG_STR_CHECK(lm.lm_proc);
	log_sanitize(lm.lm_text);
	log_sanitize(lm.lm_proc);
	logd_line(&lm);
}

static void
logd_recv_event(struct imsg *imsg)
{
	struct log_event	 le;

	IMSG_TAIL_GET(imsg, &le, le_jid);
	IMSG_STR_CHECK(le.le_node);
	IMSG_STR_CHECK(le.le_token);
	log_sanitize(le.le_jid);
	log_sanitize(le.le_node);
	log_sanitize(le.le_token);
	logd_event(&le);
}

static int
logd_name_cmp(const void *a, const void *b)
{
	return (strcmp(a, b));
}

/* The files logd names, oldest first (their names sort by date). */
static void
logd_search_files(struct logd_search *lq)
{
	DIR		*dir;
	struct dirent	*de;
	time_t		 t;
	int		 fd;

	if ((fd = dup(logd.ld_dirfd)) == -1 ||
	    (dir = fdopendir(fd)) == NULL) {
		if (fd != -1)
			close(fd);
		log_warn("%s: log directory", __func__);
		lq->lq_end.sn_errors++;
		return;
	}
	rewinddir(dir);
	while ((de = readdir(dir)) != NULL) {
		if (logd_filedate(de->d_name, &t) == -1)
			continue;
		if (lq->lq_nfiles >= SAR_FILES_MAX) {
			log_warnx("%s: more than %d log files", __func__,
			    SAR_FILES_MAX);
			lq->lq_end.sn_errors++;
			break;
		}
		strlcpy(lq->lq_files[lq->lq_nfiles++], de->d_name,
		    sizeof(lq->lq_files[0]));
	}
	closedir(dir);
	qsort(lq->lq_files, lq->lq_nfiles, sizeof(lq->lq_files[0]),
	    logd_name_cmp);
}

/* The next file of the search; -1 when there is none. */
static int
logd_search_open(struct logd_search *lq)
{
	int	 fd;

	while (lq->lq_next < lq->lq_nfiles) {
		fd = openat(logd.ld_dirfd, lq->lq_files[lq->lq_next++],
		    O_RDONLY | O_CLOEXEC);
		if (fd == -1) {
			/* The hourly purge may have been first. */
			if (errno != ENOENT) {
				log_warn("%s: %s", __func__,
				    lq->lq_files[lq->lq_next - 1]);
				lq->lq_end.sn_errors++;
			}
			continue;
		}
		if ((lq->lq_fp = fdopen(fd, "r")) == NULL) {
			log_warn("%s: fdopen", __func__);
			close(fd);
			lq->lq_end.sn_errors++;
			continue;
		}
		lq->lq_end.sn_files++;
		return (0);
	}
	return (-1);
}

static void
logd_search_done(struct privsep *ps, struct logd_search *lq)
{
	proc_compose(ps, PROC_PARENT, IMSG_SAR_END, lq->lq_id, -1,
	    &lq->lq_end, sizeof(lq->lq_end));
	TAILQ_REMOVE(&logd.ld_searches, lq, lq_entry);
	logd.ld_nsearches--;
	freezero(lq, sizeof(*lq));
}

/*
 * One line of the current file into line, newline removed; 0 at the
 * end of the file.  A line longer than any logd writes is skipped, and
 * so is a last line without its newline.
 */
static int
logd_search_getline(struct logd_search *lq, char *line, size_t size)
{
	size_t	 len;
	int	 c;

	for (;;) {
		if (fgets(line, size, lq->lq_fp) == NULL) {
			if (ferror(lq->lq_fp)) {
				log_warn("%s: read", __func__);
				lq->lq_end.sn_errors++;
			}
			return (0);
		}
		len = strlen(line);
		if (len > 0 && line[len - 1] == '\n') {
			line[len - 1] = '\0';
			return (1);
		}
		if (len == size - 1)
			while ((c = getc(lq->lq_fp)) != EOF && c != '\n')
				;
	}
}

static int
logd_search_node(struct logd_search *lq, const char *node)
{
	size_t	 i;

	for (i = 0; i < lq->lq_nnodes; i++)
		if (strcmp(lq->lq_nodes[i], node) == 0)
			return (1);
	return (0);
}

/*
 * Pass 1: the event lines whose jid= is the JID; the nodes they name
 * are kept.  Pass 2: the push and token-dead lines of those nodes,
 * which a user's server logs under its domain: the times of the pushes
 * to the person's devices are theirs too.
 */
static int
logd_search_match(struct logd_search *lq, const char *line)
{
	char	 jid[JID_MAX + 1], node[NODE_MAX + 1];
	int	 hasjid, hasnode;

	hasjid = sar_line_field(line, "jid", jid, sizeof(jid)) == 0;
	hasnode = sar_line_field(line, "node", node, sizeof(node)) == 0;
	if (lq->lq_pass == 1) {
		if (!hasjid || strcasecmp(jid, lq->lq_jid) != 0)
			return (0);
		if (hasnode && !logd_search_node(lq, node)) {
			if (lq->lq_nnodes < LOGD_SEARCH_NODES)
				strlcpy(lq->lq_nodes[lq->lq_nnodes++], node,
				    sizeof(lq->lq_nodes[0]));
			else
				lq->lq_end.sn_errors++;
		}
		return (1);
	}
	if (!hasnode || !logd_search_node(lq, node) ||
	    (strstr(line, " event push ") == NULL &&
	    strstr(line, " event token-dead ") == NULL))
		return (0);
	/* Pass 1 had the JID's own; a push logged under its domain. */
	return (!hasjid || strcasecmp(jid, lq->lq_domain) == 0);
}

/* A slice of the oldest search; the timer brings the next one. */
static void
logd_search_step(int fd, short event, void *arg)
{
	struct privsep		*ps = arg;
	struct logd_search	*lq;
	struct timeval		 tv = { 0, 0 };
	char			 line[SAR_LINE_MAX + 2];
	int			 n;

	if ((lq = TAILQ_FIRST(&logd.ld_searches)) == NULL)
		return;
	/* The lines wait in memory until the parent reads them. */
	if (imsgbuf_queuelen(&ps->ps_iev[PROC_PARENT].ibuf) >
	    LOGD_SEARCH_QUEUE) {
		tv.tv_usec = LOGD_SEARCH_WAIT_MS * 1000;
		evtimer_add(&logd.ld_search_ev, &tv);
		return;
	}
	for (n = 0; n < LOGD_SEARCH_STEP; n++) {
		if (lq->lq_fp == NULL && logd_search_open(lq) == -1) {
			/* Then the pushes to the nodes those lines named. */
			if (lq->lq_pass == 1 && lq->lq_nnodes > 0) {
				lq->lq_pass = 2;
				lq->lq_next = 0;
				continue;
			}
			logd_search_done(ps, lq);
			break;
		}
		if (!logd_search_getline(lq, line, sizeof(line))) {
			fclose(lq->lq_fp);
			lq->lq_fp = NULL;
			continue;
		}
		if (!logd_search_match(lq, line))
			continue;
		proc_compose(ps, PROC_PARENT, IMSG_SAR_LINE, lq->lq_id, -1,
		    line, strlen(line) + 1);
		lq->lq_end.sn_lines++;
	}
	if (!TAILQ_EMPTY(&logd.ld_searches))
		evtimer_add(&logd.ld_search_ev, &tv);
}

static void
logd_search(struct privsep *ps, struct imsg *imsg)
{
	struct sar_search	 sh;
	struct logd_search	*lq;
	struct sar_end		 sn;
	char			*at;

	IMSG_SIZE_CHECK(imsg, &sh);
	memcpy(&sh, imsg->data, sizeof(sh));
	IMSG_STR_CHECK(sh.sh_jid);
	logd_flush();		/* the search reads the files */
	if (logd.ld_nsearches >= SAR_SEARCH_MAX ||
	    (lq = calloc(1, sizeof(*lq))) == NULL) {
		log_warnx("%s: cannot start one more search", __func__);
		memset(&sn, 0, sizeof(sn));
		sn.sn_errors = 1;
		proc_compose(ps, PROC_PARENT, IMSG_SAR_END,
		    imsg->hdr.peerid, -1, &sn, sizeof(sn));
		return;
	}
	lq->lq_id = imsg->hdr.peerid;
	strlcpy(lq->lq_jid, sh.sh_jid, sizeof(lq->lq_jid));
	lq->lq_pass = 1;
	if ((at = strchr(lq->lq_jid, '@')) != NULL)
		strlcpy(lq->lq_domain, at + 1, sizeof(lq->lq_domain));
	else
		strlcpy(lq->lq_domain, lq->lq_jid, sizeof(lq->lq_domain));
	logd_search_files(lq);
	TAILQ_INSERT_TAIL(&logd.ld_searches, lq, lq_entry);
	if (logd.ld_nsearches++ == 0)
		logd_search_step(-1, 0, ps);
}

static int
logd_dispatch(struct privsep *ps, enum mp_proc peer, struct imsg *imsg)
{
	struct mp_conf	*nconf;
	int		 v, r;

	logd_source = peer;
	switch (imsg->hdr.type) {
	case IMSG_LOG:
		logd_recv_line(imsg);
		break;
	case IMSG_LOG_EVENT:
		logd_recv_event(imsg);
		break;
	case IMSG_LOG_VERBOSE:
		IMSG_SIZE_CHECK(imsg, &v);
		memcpy(&v, imsg->data, sizeof(v));
		log_setverbose(v);
		break;
	case IMSG_LOG_STATS_REQ:
		if (peer != PROC_PARENT)
			return (-1);
		proc_compose(ps, PROC_PARENT, IMSG_LOG_STATS,
		    imsg->hdr.peerid, -1, &logd.ld_stats,
		    sizeof(logd.ld_stats));
		break;
	case IMSG_SAR_SEARCH:
		if (peer != PROC_PARENT)
			return (-1);
		logd_search(ps, imsg);
		break;
	default:
		if (peer != PROC_PARENT)
			return (-1);
		if ((r = proc_conf_recv(ps, imsg, &nconf)) == -1)
			return (-1);
		if (r == 1) {
			logd.ld_retention = nconf->c_retention;
			config_free(ps->ps_conf);
			ps->ps_conf = nconf;
			logd_purge_cb(-1, 0, NULL);
		}
		break;
	}
	logd_source = PROC_LOGD;
	return (0);
}

/* Take in what the others sent before they went, then go. */
static void
logd_drain(struct privsep *ps)
{
	struct imsg	 imsg;
	enum mp_proc	 p;
	ssize_t		 n;

	for (p = PROC_PARENT; p < PROC_LOGD; p++) {
		if (!ps->ps_ievok[p])
			continue;
		while ((n = imsgbuf_read(&ps->ps_iev[p].ibuf)) > 0)
			;
		while (imsg_get(&ps->ps_iev[p].ibuf, &imsg) > 0) {
			if (imsg.hdr.type == IMSG_LOG ||
			    imsg.hdr.type == IMSG_LOG_EVENT)
				(void)logd_dispatch(ps, p, &imsg);
			imsg_free(&imsg);
		}
	}
}

static void
logd_sig(int sig, short event, void *arg)
{
	struct privsep	*ps = arg;

	switch (sig) {
	case SIGTERM:
		ps->ps_exiting = 1;
		logd_drain(ps);
		log_info("exiting");
		logd_flush();
		exit(0);
#ifdef MONALPUSHD_TEST
	case SIGUSR1:
	case SIGUSR2:
		proc_test_forbidden(ps, sig);
		break;
#endif
	}
}

static void
logd_mkdir(struct privsep *ps, const char *dir)
{
	struct stat	 st;

	if (mkdir(dir, 0750) == -1 && errno != EEXIST)
		fatal("%s: mkdir %s", __func__, dir);
	if (stat(dir, &st) == -1)
		fatal("%s: stat %s", __func__, dir);
	if (!S_ISDIR(st.st_mode))
		fatalx("%s: %s is not a directory", __func__, dir);
	if (chown(dir, ps->ps_pw->pw_uid, ps->ps_pw->pw_gid) == -1 ||
	    chmod(dir, 0750) == -1)
		fatal("%s: chown %s", __func__, dir);
}

void
logd_main(struct privsep *ps)
{
	char	 dir[PATH_MAX];

	setproctitle("logd");
	log_procinit("logd");
	log_setlocal(logd_line, logd_event);
	logd.ld_fd = -1;
	logd.ld_retention = ps->ps_conf->c_retention;
	strlcpy(dir, ps->ps_conf->c_logdir, sizeof(dir));
	config_free(ps->ps_conf);
	ps->ps_conf = NULL;

	logd_mkdir(ps, dir);
	proc_privdrop(ps, dir);
	if ((logd.ld_dirfd = open(".", O_RDONLY | O_DIRECTORY |
	    O_CLOEXEC)) == -1)
		fatal("%s: open log directory", __func__);

	proc_evbase = event_init();
	signal_set(&logd.ld_sigterm, SIGTERM, logd_sig, ps);
	signal_add(&logd.ld_sigterm, NULL);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
#ifdef MONALPUSHD_TEST
	signal_set(&logd.ld_sigusr1, SIGUSR1, logd_sig, ps);
	signal_set(&logd.ld_sigusr2, SIGUSR2, logd_sig, ps);
	signal_add(&logd.ld_sigusr1, NULL);
	signal_add(&logd.ld_sigusr2, NULL);
#endif
	evtimer_set(&logd.ld_purge_ev, logd_purge_cb, NULL);
	evtimer_set(&logd.ld_flush_ev, logd_flush_cb, NULL);
	evtimer_set(&logd.ld_search_ev, logd_search_step, ps);
	TAILQ_INIT(&logd.ld_searches);
	proc_listen(ps, logd_dispatch_table);
	sandbox_logd("/");
	logd_purge_cb(-1, 0, NULL);
	log_debug("started, pid %d", getpid());

	event_dispatch();
	fatalx("%s: event loop ended", __func__);
}
