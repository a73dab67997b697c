/*
 * The log API of every process.  Lines go to logd over imsg (the only
 * writer of log files); with -d they also go to stderr.  logd itself
 * hands its own lines to a local function instead of a channel.
 */

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "monalpushd.h"

static int		 log_debug_stderr = 1;
static int		 log_verbose;
static char		 log_proc[16] = "monalpushd";
static struct imsgev	*log_sink;
static void		(*log_local)(const struct log_msg *);
static void		(*log_local_event)(const struct log_event *);

static void	vlog(int, const char *, va_list)
		    __attribute__((format(printf, 2, 0)));

void
log_init(int debug, int verbose)
{
	log_debug_stderr = debug;
	log_verbose = verbose;
}

void
log_procinit(const char *name)
{
	if (name != NULL)
		strlcpy(log_proc, name, sizeof(log_proc));
}

void
log_setverbose(int v)
{
	log_verbose = v;
}

int
log_getverbose(void)
{
	return (log_verbose);
}

void
log_setsink(struct imsgev *iev)
{
	log_sink = iev;
}

void
log_setlocal(void (*fn)(const struct log_msg *),
    void (*efn)(const struct log_event *))
{
	log_local = fn;
	log_local_event = efn;
}

const char *
log_procname(void)
{
	return (log_proc);
}

const char *
log_level_name(int level)
{
	switch (level) {
	case LOG_LVL_WARN:
		return ("warning");
	case LOG_LVL_INFO:
		return ("info");
	default:
		return ("debug");
	}
}

/*
 * Peers control parts of what we log (domains, stream errors): no
 * control character may reach a file, where it could forge a line.
 */
void
log_sanitize(char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

/* Send only the used part of lm_text; logd checks the length. */
static void
log_send(struct log_msg *lm)
{
	size_t	 len;

	len = offsetof(struct log_msg, lm_text) + strlen(lm->lm_text) + 1;
	if (log_local != NULL)
		log_local(lm);
	else if (log_sink != NULL)
		imsg_compose_event(log_sink, IMSG_LOG, 0, 0, -1, lm, len);
	else if (!log_debug_stderr)
		fprintf(stderr, "%s: %s\n", lm->lm_proc, lm->lm_text);
}

static void
vlog(int level, const char *fmt, va_list ap)
{
	struct log_msg	 lm;
	int		 saved_errno = errno;

	if (level == LOG_LVL_DEBUG && log_verbose < 1)
		return;
	memset(&lm, 0, offsetof(struct log_msg, lm_text));
	lm.lm_level = level;
	lm.lm_time = time(NULL);
	strlcpy(lm.lm_proc, log_proc, sizeof(lm.lm_proc));
	vsnprintf(lm.lm_text, sizeof(lm.lm_text), fmt, ap);
	log_sanitize(lm.lm_text);
	if (log_debug_stderr) {
		fprintf(stderr, "%s %s: %s\n", lm.lm_proc, log_level_name(level),
		    lm.lm_text);
		fflush(stderr);
	}
	log_send(&lm);
	errno = saved_errno;
}

void
log_event(const struct log_event *le)
{
	if (log_debug_stderr) {
		fprintf(stderr, "%s event: %s%s%s%s%s\n", log_proc,
		    log_event_name(le->le_type),
		    le->le_jid[0] ? " jid=" : "", le->le_jid,
		    le->le_node[0] ? " node=" : "", le->le_node);
		fflush(stderr);
	}
	if (log_local_event != NULL)
		log_local_event(le);
	else if (log_sink != NULL)
		imsg_compose_event(log_sink, IMSG_LOG_EVENT, 0, 0, -1, le,
		    IMSG_TAIL_LEN(le, le_jid));
}

const char *
log_event_name(int type)
{
	switch (type) {
	case EV_REGISTER:
		return ("register");
	case EV_UNREGISTER:
		return ("unregister");
	case EV_PUSH:
		return ("push");
	case EV_TOKEN_DEAD:
		return ("token-dead");
	case EV_SAR_ERASE:
		return ("sar-erase");
	default:
		return ("unknown");
	}
}

static void
vlog_errno(int level, const char *fmt, va_list ap)
{
	char	 buf[LOG_LINE_MAX];
	int	 saved_errno = errno;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	log_msg_errno(level, buf, saved_errno);
}

void
log_msg_errno(int level, const char *msg, int err)
{
	logit(level, "%s: %s", msg, strerror(err));
}

void
logit(int level, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog(level, fmt, ap);
	va_end(ap);
}

void
log_warn(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog_errno(LOG_LVL_WARN, fmt, ap);
	va_end(ap);
}

void
log_warnx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_WARN, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_INFO, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_DEBUG, fmt, ap);
	va_end(ap);
}

/* The last line must reach logd before the process goes. */
static void
log_flush(void)
{
	if (log_sink != NULL)
		(void)imsgbuf_flush(&log_sink->ibuf);
}

void
fatal(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog_errno(LOG_LVL_WARN, fmt, ap);
	va_end(ap);
	log_flush();
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_WARN, fmt, ap);
	va_end(ap);
	log_flush();
	exit(1);
}
