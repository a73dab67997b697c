/*
 * monalpushctl: the control tool of monalpushd.  It sends one request
 * over the control socket and prints the records that come back, until
 * an END, OK or FAIL record; with -j as one JSON document.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <err.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "monalpushd.h"
#include "parser.h"

#define CTL_REPLY_TIMEOUT	60	/* seconds of silence before giving up */
#define CTL_APPS_MAX		1024	/* per-app counts kept for the summary */
#define JSON_DEPTH_MAX		8
#define TIME_STR_LEN		32	/* ISO 8601 or an uptime like 1d2h3m4s */

struct ctl_cmd {
	enum actions	 cc_action;
	const char	*cc_name;
	uint32_t	 cc_type;	/* IMSG_NONE: no such request yet */
};

static const struct ctl_cmd ctl_cmds[] = {
	{ SHOW_STATUS,	"show status",		IMSG_CTL_SHOW_STATUS },
	{ SHOW_REGS,	"show registrations",	IMSG_CTL_SHOW_REGS },
	{ SHOW_NODE,	"show node",		IMSG_CTL_SHOW_NODE },
	{ SHOW_PEERS,	"show peers",		IMSG_CTL_SHOW_PEERS },
	{ SHOW_APNS,	"show apns",		IMSG_CTL_SHOW_APNS },
	{ SHOW_STATS,	"show stats",		IMSG_CTL_SHOW_STATS },
	{ UNREGISTER,	"unregister",		IMSG_CTL_UNREGISTER },
	{ RELOAD,	"reload",		IMSG_CTL_RELOAD },
	{ LOG_VERBOSE,	"log verbose",		IMSG_CTL_LOG_VERBOSE },
	{ LOG_BRIEF,	"log brief",		IMSG_CTL_LOG_VERBOSE },
	{ SAR_REQUEST,	"sar request",		IMSG_CTL_SAR_REQUEST },
	{ SAR_EXPORT,	"sar export",		IMSG_CTL_SAR_EXPORT },
	{ SAR_ERASE,	"sar erase",		IMSG_CTL_SAR_ERASE },
};

struct json_level {
	int		 jl_first;	/* no member printed yet */
	int		 jl_array;
};

struct app_count {
	char		 ac_app[APP_NAME_MAX];
	uint64_t	 ac_count;
};

static int			 jflag;
static int			 vflag;
static const char		*sockname = MONALPUSHD_SOCKET;
static struct parse_result	*res;
static time_t			 now;

/* What has been printed so far, for the lazy headers and the summary. */
static int			 nrecords;
static uint64_t			 nlines;	/* sar export */
static char			 conffile[PATH_MAX];
static int32_t			 daemon_verbose;
static struct app_count		*apps;
static size_t			 napps;

static struct json_level	 json_stack[JSON_DEPTH_MAX];
static int			 json_depth = -1;	/* -1: not begun */

static void		 usage(void) __attribute__((noreturn));
static const struct ctl_cmd *cmd_find(enum actions);
static int		 ctl_connect(const char *);
static void		 ctl_request(struct imsgbuf *, const struct ctl_cmd *);
static void		 ctl_replies(struct imsgbuf *, const struct ctl_cmd *);
static int		 ctl_reply(const struct ctl_cmd *, struct imsg *);
static void		 ctl_fail(struct imsg *)
			    __attribute__((noreturn));
static void		 show_status(struct imsg *);
static void		 show_status_end(void);
static void		 show_reg(const struct ctl_cmd *, struct imsg *);
static void		 show_regcount(struct imsg *);
static void		 show_regs_end(void);
static void		 show_ok(const struct ctl_cmd *);
static void		 show_apns(struct imsg *);
static void		 show_stats(struct imsg *);
static void		 show_peer(struct imsg *);
static void		 show_list_end(const char *, const char *);
static void		 show_sar(struct imsg *);
static void		 show_sar_line(struct imsg *);
static void		 show_sar_reg(const struct ctl_cmd *, struct imsg *);
static void		 show_sar_export_end(void);
static void		 show_sar_erased(struct imsg *);
static void		 sanitize(char *);
static const char	*fmt_time(int64_t, char *, size_t);
static const char	*fmt_uptime(int64_t, char *, size_t);
static size_t		 utf8_len(const unsigned char *);
static void		 json_begin(void);
static void		 json_finish(void);
static void		 json_open(const char *, int);
static void		 json_close(void);
static void		 json_key(const char *);
static void		 json_putstr(const char *);
static void		 json_str(const char *, const char *);
static void		 json_int(const char *, int64_t);
static void		 json_uint(const char *, uint64_t);
static void		 json_time(const char *, int64_t);

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: monalpushctl [-jv] [-s socket] command "
	    "[argument ...]\n");
	exit(1);
}

int
main(int argc, char *argv[])
{
	const struct ctl_cmd	*cmd;
	struct imsgbuf		*ibuf;
	int			 ch, fd;

	log_init(1, 0);
	log_procinit("monalpushctl");

	while ((ch = getopt(argc, argv, "js:v")) != -1) {
		switch (ch) {
		case 'j':
			jflag = 1;
			break;
		case 's':
			sockname = optarg;
			break;
		case 'v':
			vflag = 1;
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0)
		usage();

	if ((res = parse(argc, argv)) == NULL)
		exit(1);
	cmd = cmd_find(res->action);
	if (cmd->cc_type == IMSG_NONE)
		errx(1, "%s: not supported by this daemon", cmd->cc_name);

#ifdef __OpenBSD__
	if (pledge("stdio unix", NULL) == -1)
		err(1, "pledge");
#endif
	fd = ctl_connect(sockname);
#ifdef __OpenBSD__
	if (pledge("stdio", NULL) == -1)
		err(1, "pledge");
#endif
	now = time(NULL);

	/* The read buffer is large: keep it off the stack. */
	if ((ibuf = calloc(1, sizeof(*ibuf))) == NULL)
		err(1, NULL);
	imsgbuf_init(ibuf, fd);
	ctl_request(ibuf, cmd);
	ctl_replies(ibuf, cmd);

	imsgbuf_clear(ibuf);
	free(ibuf);
	free(apps);
	close(fd);
	if (fflush(stdout) == EOF || ferror(stdout))
		err(1, "stdout");
	return (0);
}

static const struct ctl_cmd *
cmd_find(enum actions action)
{
	size_t	 i;

	for (i = 0; i < sizeof(ctl_cmds) / sizeof(ctl_cmds[0]); i++)
		if (ctl_cmds[i].cc_action == action)
			return (&ctl_cmds[i]);
	errx(1, "%s: no command for action %d", __func__, action);
}

static int
ctl_connect(const char *path)
{
	struct sockaddr_un	 sun;
	int			 fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlcpy(sun.sun_path, path, sizeof(sun.sun_path)) >=
	    sizeof(sun.sun_path))
		errx(1, "socket path too long: %s", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		err(1, "socket");
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1)
		err(1, "connect %s", path);
	return (fd);
}

static void
ctl_request(struct imsgbuf *ibuf, const struct ctl_cmd *cmd)
{
	struct ctl_req	 cr;
	int32_t		 v;
	const void	*data = NULL;
	size_t		 len = 0;

	switch (cmd->cc_action) {
	case LOG_VERBOSE:
	case LOG_BRIEF:
		v = cmd->cc_action == LOG_VERBOSE;
		data = &v;
		len = sizeof(v);
		break;
	case SHOW_REGS:
	case SHOW_NODE:
	case UNREGISTER:
	case SAR_REQUEST:
	case SAR_EXPORT:
	case SAR_ERASE:
		memset(&cr, 0, sizeof(cr));
		cr.cr_verbose = vflag;
		strlcpy(cr.cr_arg, res->arg, sizeof(cr.cr_arg));
		data = &cr;
		len = sizeof(cr);
		break;
	default:
		break;
	}
	if (imsg_compose(ibuf, cmd->cc_type, 0, 0, -1, data, len) == -1)
		err(1, "%s: imsg_compose", __func__);
	if (imsgbuf_flush(ibuf) == -1)
		err(1, "write %s", sockname);
}

static void
ctl_replies(struct imsgbuf *ibuf, const struct ctl_cmd *cmd)
{
	struct pollfd	 pfd;
	struct imsg	 imsg;
	ssize_t		 n;
	int		 done = 0;

	while (!done) {
		pfd.fd = ibuf->fd;
		pfd.events = POLLIN;
		switch (poll(&pfd, 1, CTL_REPLY_TIMEOUT * 1000)) {
		case -1:
			if (errno == EINTR)
				continue;
			err(1, "poll");
		case 0:
			errx(1, "%s: no reply from %s in %d seconds",
			    cmd->cc_name, sockname, CTL_REPLY_TIMEOUT);
		}
		if ((n = imsgbuf_read(ibuf)) == -1) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			err(1, "read %s", sockname);
		}
		if (n == 0)
			errx(1, "%s: the daemon closed the connection before "
			    "the end of its reply%s", cmd->cc_name,
			    geteuid() != 0 ? " (only root may use it)" : "");
		while (!done) {
			if ((n = imsg_get(ibuf, &imsg)) == -1)
				err(1, "%s: bad reply", cmd->cc_name);
			if (n == 0)
				break;
			done = ctl_reply(cmd, &imsg);
			imsg_free(&imsg);
		}
	}
}

/* Returns 1 on the record that ends the reply. */
static int
ctl_reply(const struct ctl_cmd *cmd, struct imsg *imsg)
{
	switch (imsg->hdr.type) {
	case IMSG_CTL_FAIL:
		ctl_fail(imsg);
		/* NOTREACHED */
	case IMSG_CTL_OK:
	case IMSG_CTL_END:
		if (IMSG_DATA_SIZE(imsg) != 0)
			errx(1, "%s: type %u: bad length %zu, want 0", __func__,
			    imsg->hdr.type, IMSG_DATA_SIZE(imsg));
		switch (cmd->cc_action) {
		case SHOW_STATUS:
			show_status_end();
			break;
		case SHOW_REGS:
		case SHOW_NODE:
			show_regs_end();
			break;
		case SHOW_APNS:
			show_list_end("apps", "no apps configured");
			break;
		case SHOW_STATS:
			if (jflag)
				json_finish();
			break;
		case SHOW_PEERS:
			show_list_end("peers", "no streams");
			break;
		case SAR_REQUEST:
			if (nrecords == 0)
				errx(1, "%s: the daemon sent no code",
				    cmd->cc_name);
			if (jflag)
				json_finish();
			break;
		case SAR_EXPORT:
			show_sar_export_end();
			break;
		case SAR_ERASE:
			if (nrecords == 0)
				errx(1, "%s: the daemon sent no count",
				    cmd->cc_name);
			if (jflag)
				json_finish();
			break;
		default:
			show_ok(cmd);
			break;
		}
		return (1);
	case IMSG_CTL_STATUS:
		if (cmd->cc_action != SHOW_STATUS)
			break;
		show_status(imsg);
		return (0);
	case IMSG_CTL_REG:
		if (cmd->cc_action == SAR_EXPORT) {
			show_sar_reg(cmd, imsg);
			return (0);
		}
		if (cmd->cc_action != SHOW_REGS && cmd->cc_action != SHOW_NODE)
			break;
		show_reg(cmd, imsg);
		return (0);
	case IMSG_CTL_SAR:
		if (cmd->cc_action != SAR_REQUEST)
			break;
		show_sar(imsg);
		return (0);
	case IMSG_CTL_SAR_LINE:
		if (cmd->cc_action != SAR_EXPORT)
			break;
		show_sar_line(imsg);
		return (0);
	case IMSG_CTL_SAR_ERASED:
		if (cmd->cc_action != SAR_ERASE)
			break;
		show_sar_erased(imsg);
		return (0);
	case IMSG_CTL_REG_COUNT:
		if (cmd->cc_action != SHOW_REGS)
			break;
		show_regcount(imsg);
		return (0);
	case IMSG_CTL_STATS:
		if (cmd->cc_action != SHOW_STATS)
			break;
		show_stats(imsg);
		return (0);
	case IMSG_CTL_APNS:
		if (cmd->cc_action != SHOW_APNS)
			break;
		show_apns(imsg);
		return (0);
	case IMSG_CTL_PEER:
		if (cmd->cc_action != SHOW_PEERS)
			break;
		show_peer(imsg);
		return (0);
	}
	errx(1, "%s: unexpected reply of type %u", cmd->cc_name,
	    imsg->hdr.type);
}

static void __attribute__((noreturn))
ctl_fail(struct imsg *imsg)
{
	char	*msg = imsg->data;
	size_t	 len = IMSG_DATA_SIZE(imsg);

	if (len == 0 || msg[len - 1] != '\0')
		errx(1, "%s: unterminated message of %zu bytes", __func__, len);
	sanitize(msg);
	if (jflag && json_depth >= 0)
		json_finish();
	fflush(stdout);
	errx(1, "%s", msg);
}

static void
show_status(struct imsg *imsg)
{
	struct ctl_status	 cs;
	char			 up[TIME_STR_LEN];

	IMSG_SIZE_CHECK(imsg, &cs);
	memcpy(&cs, imsg->data, sizeof(cs));
	IMSG_STR_CHECK(cs.cs_name);
	IMSG_STR_CHECK(cs.cs_conffile);
	if (nrecords++ == 0) {
		strlcpy(conffile, cs.cs_conffile, sizeof(conffile));
		daemon_verbose = cs.cs_verbose;
	}

	if (jflag) {
		if (nrecords == 1) {
			json_begin();
			json_open("processes", '[');
		}
		json_open(NULL, '{');
		json_str("name", cs.cs_name);
		json_int("pid", cs.cs_pid);
		json_time("started", cs.cs_started);
		json_int("uptime", cs.cs_started == 0 || now < cs.cs_started ?
		    0 : now - cs.cs_started);
		json_uint("log_lines", cs.cs_log_lines);
		json_uint("log_dropped", cs.cs_log_dropped);
		json_int("verbose", cs.cs_verbose);
		json_close();
		return;
	}
	sanitize(cs.cs_name);
	if (nrecords == 1)
		printf("%-10s %8s %-14s %12s %10s\n", "PROCESS", "PID",
		    "UPTIME", "LOG LINES", "DROPPED");
	printf("%-10s %8" PRId32 " %-14s %12" PRIu64 " %10" PRIu64 "\n",
	    cs.cs_name, cs.cs_pid, fmt_uptime(cs.cs_started, up, sizeof(up)),
	    cs.cs_log_lines, cs.cs_log_dropped);
}

static void
show_status_end(void)
{
	if (jflag) {
		json_begin();
		if (json_depth == 0)
			json_open("processes", '[');
		json_close();
		json_str("conffile", nrecords > 0 ? conffile : NULL);
		json_int("verbose", daemon_verbose);
		json_finish();
		return;
	}
	if (nrecords == 0) {
		printf("no processes reported\n");
		return;
	}
	sanitize(conffile);
	printf("\nconfiguration file: %s\n", conffile);
	printf("logging: %s\n", daemon_verbose ? "verbose" : "brief");
}

static void
show_reg(const struct ctl_cmd *cmd, struct imsg *imsg)
{
	struct ctl_reg	 cg;
	char		 t[4][TIME_STR_LEN];

	IMSG_SIZE_CHECK(imsg, &cg);
	memcpy(&cg, imsg->data, sizeof(cg));
	IMSG_STR_CHECK(cg.cg_node);
	IMSG_STR_CHECK(cg.cg_app);
	IMSG_STR_CHECK(cg.cg_type);
	IMSG_STR_CHECK(cg.cg_token);
	IMSG_STR_CHECK(cg.cg_domain);
	nrecords++;

	if (jflag) {
		if (nrecords == 1) {
			json_begin();
			json_open("registrations", '[');
		}
		json_open(NULL, '{');
		json_str("node", cg.cg_node);
		json_str("app", cg.cg_app);
		json_str("type", cg.cg_type);
		json_str("domain", cg.cg_domain);
		json_str("token", cg.cg_token);
		json_time("registered", cg.cg_registered);
		json_time("renewed", cg.cg_renewed);
		json_time("last_success", cg.cg_last_success);
		json_time("last_error", cg.cg_last_error);
		json_close();
		return;
	}
	sanitize(cg.cg_node);
	sanitize(cg.cg_app);
	sanitize(cg.cg_type);
	sanitize(cg.cg_token);
	sanitize(cg.cg_domain);
	fmt_time(cg.cg_registered, t[0], sizeof(t[0]));
	fmt_time(cg.cg_renewed, t[1], sizeof(t[1]));
	fmt_time(cg.cg_last_success, t[2], sizeof(t[2]));
	fmt_time(cg.cg_last_error, t[3], sizeof(t[3]));

	if (cmd->cc_action == SHOW_NODE || cmd->cc_action == SAR_EXPORT) {
		if (nrecords > 1)
			printf("\n");
		printf("node:          %s\n", cg.cg_node);
		printf("app:           %s\n", cg.cg_app);
		printf("type:          %s\n", cg.cg_type);
		printf("domain:        %s\n", cg.cg_domain);
		printf("token:         %s\n", cg.cg_token);
		printf("registered:    %s\n", t[0]);
		printf("renewed:       %s\n", t[1]);
		printf("last success:  %s\n", t[2]);
		printf("last error:    %s\n", t[3]);
		return;
	}
	/* The token goes last: its length varies. */
	if (nrecords == 1)
		printf("%-36s %-16s %-24s %-20s %-20s %-20s %-20s %s\n",
		    "NODE", "APP", "DOMAIN", "REGISTERED", "RENEWED",
		    "LAST SUCCESS", "LAST ERROR", "TOKEN");
	printf("%-36s %-16s %-24s %-20s %-20s %-20s %-20s %s\n",
	    cg.cg_node, cg.cg_app, cg.cg_domain, t[0], t[1], t[2], t[3],
	    cg.cg_token);
}

static void
show_regcount(struct imsg *imsg)
{
	struct ctl_regcount	 rc;
	struct app_count	*ac;

	IMSG_SIZE_CHECK(imsg, &rc);
	memcpy(&rc, imsg->data, sizeof(rc));
	IMSG_STR_CHECK(rc.rc_app);
	if (napps >= CTL_APPS_MAX)
		errx(1, "%s: more than %d apps in the reply", __func__,
		    CTL_APPS_MAX);
	if ((ac = recallocarray(apps, napps, napps + 1, sizeof(*apps))) ==
	    NULL)
		err(1, "%s", __func__);
	apps = ac;
	ac = &apps[napps++];
	strlcpy(ac->ac_app, rc.rc_app, sizeof(ac->ac_app));
	ac->ac_count = rc.rc_count;
}

/* Counts come last: the nodes stream, the few counts are kept. */
static void
show_regs_end(void)
{
	uint64_t	 total = 0;
	size_t		 i;

	if (jflag) {
		json_begin();
		if (nrecords == 0 && (res->action == SHOW_NODE || vflag))
			json_open("registrations", '[');
		if (json_depth > 0)
			json_close();
		if (res->action == SHOW_REGS) {
			json_open("apps", '[');
			for (i = 0; i < napps; i++) {
				json_open(NULL, '{');
				json_str("app", apps[i].ac_app);
				json_uint("count", apps[i].ac_count);
				json_close();
				total += apps[i].ac_count;
			}
			json_close();
			json_uint("total", total);
		}
		json_finish();
		return;
	}
	if (res->action == SHOW_NODE) {
		if (nrecords == 0)
			printf("node %s: no registration\n", res->arg);
		return;
	}
	if (nrecords > 0)
		printf("\n");
	printf("%-32s %13s\n", "APP", "REGISTRATIONS");
	for (i = 0; i < napps; i++) {
		sanitize(apps[i].ac_app);
		printf("%-32s %13" PRIu64 "\n", apps[i].ac_app,
		    apps[i].ac_count);
		total += apps[i].ac_count;
	}
	printf("%-32s %13" PRIu64 "\n", "total", total);
}

static void
show_ok(const struct ctl_cmd *cmd)
{
	char	 msg[sizeof(res->arg) + 64];

	switch (cmd->cc_action) {
	case RELOAD:
		strlcpy(msg, "reload request sent", sizeof(msg));
		break;
	case LOG_VERBOSE:
	case LOG_BRIEF:
		snprintf(msg, sizeof(msg), "logging set to %s",
		    cmd->cc_action == LOG_VERBOSE ? "verbose" : "brief");
		break;
	case UNREGISTER:
		snprintf(msg, sizeof(msg), "node %s unregistered", res->arg);
		break;
	default:
		strlcpy(msg, "done", sizeof(msg));
		break;
	}
	if (!jflag) {
		printf("%s\n", msg);
		return;
	}
	json_begin();
	json_str("command", cmd->cc_name);
	if (cmd->cc_action == UNREGISTER)
		json_str("node", res->arg);
	json_str("result", "ok");
	json_str("message", msg);
	json_finish();
}

/*
 * The daemon's strings reach a terminal: no control characters, C1
 * ones included, and no broken UTF-8.
 */
static void
sanitize(char *s)
{
	unsigned char	*p = (unsigned char *)s;
	size_t		 n;

	while (*p != '\0') {
		if (*p < 0x20 || *p == 0x7f)
			*p++ = '?';
		else if (*p < 0x80)
			p++;
		else if ((n = utf8_len(p)) == 0)
			*p++ = '?';
		else if (p[0] == 0xc2 && p[1] < 0xa0) {
			*p++ = '?';
			*p++ = '?';
		} else
			p += n;
	}
}

static const char *
fmt_time(int64_t t, char *buf, size_t len)
{
	struct tm	 tm;
	time_t		 tt = t;

	if (t == 0) {
		strlcpy(buf, "-", len);
		return (buf);
	}
	if (gmtime_r(&tt, &tm) == NULL ||
	    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, len, "%" PRId64, t);
	return (buf);
}

static const char *
fmt_uptime(int64_t started, char *buf, size_t len)
{
	int64_t	 s, d, h, m;

	if (started == 0) {
		strlcpy(buf, "-", len);
		return (buf);
	}
	s = now > started ? now - started : 0;
	d = s / 86400;
	h = s / 3600 % 24;
	m = s / 60 % 60;
	s %= 60;
	if (d > 0)
		snprintf(buf, len, "%" PRId64 "d%" PRId64 "h%" PRId64 "m%"
		    PRId64 "s", d, h, m, s);
	else if (h > 0)
		snprintf(buf, len, "%" PRId64 "h%" PRId64 "m%" PRId64 "s",
		    h, m, s);
	else if (m > 0)
		snprintf(buf, len, "%" PRId64 "m%" PRId64 "s", m, s);
	else
		snprintf(buf, len, "%" PRId64 "s", s);
	return (buf);
}

/*
 * JSON in the manner of bgpctl -j: one document, objects and arrays
 * nested at most JSON_DEPTH_MAX deep, printed as they come.
 */
static void
json_begin(void)
{
	if (json_depth >= 0)
		return;
	printf("{");
	json_depth = 0;
	json_stack[0].jl_first = 1;
	json_stack[0].jl_array = 0;
}

static void
json_finish(void)
{
	while (json_depth > 0)
		json_close();
	printf("\n}\n");
	json_depth = -1;
}

/* A comma before all but the first member, then the name if any. */
static void
json_key(const char *name)
{
	if (!json_stack[json_depth].jl_first)
		printf(",");
	json_stack[json_depth].jl_first = 0;
	printf("\n%*s", (json_depth + 1) * 2, "");
	if (name != NULL) {
		json_putstr(name);
		printf(": ");
	}
}

static void
json_open(const char *name, int c)
{
	if (json_depth + 1 >= JSON_DEPTH_MAX)
		errx(1, "%s: too deep", __func__);
	json_key(name);
	printf("%c", c);
	json_depth++;
	json_stack[json_depth].jl_first = 1;
	json_stack[json_depth].jl_array = c == '[';
}

static void
json_close(void)
{
	struct json_level	*jl;

	if (json_depth <= 0)
		errx(1, "%s: nothing open", __func__);
	jl = &json_stack[json_depth--];
	if (!jl->jl_first)
		printf("\n%*s", (json_depth + 1) * 2, "");
	printf("%c", jl->jl_array ? ']' : '}');
}

/* Length of the valid UTF-8 sequence at p, 0 when it is not one. */
static size_t
utf8_len(const unsigned char *p)
{
	uint32_t	 cp;
	size_t		 n, i;

	if (*p >= 0xc2 && *p <= 0xdf) {
		n = 2;
		cp = *p & 0x1f;
	} else if (*p >= 0xe0 && *p <= 0xef) {
		n = 3;
		cp = *p & 0x0f;
	} else if (*p >= 0xf0 && *p <= 0xf4) {
		n = 4;
		cp = *p & 0x07;
	} else
		return (0);
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return (0);
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return (0);
	return (n);
}

/* Invalid UTF-8 becomes U+FFFD, so the document is always valid. */
static void
json_putstr(const char *s)
{
	const unsigned char	*p = (const unsigned char *)s;
	size_t			 n;

	printf("\"");
	while (*p != '\0') {
		if (*p == '"' || *p == '\\') {
			printf("\\%c", *p++);
		} else if (*p == '\n') {
			printf("\\n");
			p++;
		} else if (*p == '\t') {
			printf("\\t");
			p++;
		} else if (*p < 0x20 || *p == 0x7f) {
			printf("\\u%04x", *p++);
		} else if (*p < 0x80) {
			printf("%c", *p++);
		} else if ((n = utf8_len(p)) > 0) {
			fwrite(p, 1, n, stdout);
			p += n;
		} else {
			printf("\\ufffd");
			p++;
		}
	}
	printf("\"");
}

static void
json_str(const char *name, const char *s)
{
	json_key(name);
	if (s == NULL)
		printf("null");
	else
		json_putstr(s);
}

static void
json_int(const char *name, int64_t v)
{
	json_key(name);
	printf("%" PRId64, v);
}

static void
json_uint(const char *name, uint64_t v)
{
	json_key(name);
	printf("%" PRIu64, v);
}

/* UNIX seconds, and the same as ISO 8601 (null when never). */
static void
json_time(const char *name, int64_t t)
{
	char	 key[64], buf[TIME_STR_LEN];

	json_int(name, t);
	snprintf(key, sizeof(key), "%s_iso", name);
	json_str(key, t == 0 ? NULL : fmt_time(t, buf, sizeof(buf)));
}

/* show apns: one record per app, from apnse. */
static void
show_apns(struct imsg *imsg)
{
	static const int statuses[] = APNS_STATUSES;
	struct ctl_apns	 ca;
	char		 key[16];
	int		 i;

	IMSG_SIZE_CHECK(imsg, &ca);
	memcpy(&ca, imsg->data, sizeof(ca));
	IMSG_STR_CHECK(ca.ca_app);
	IMSG_STR_CHECK(ca.ca_lasterr);
	nrecords++;
	if (jflag) {
		if (nrecords == 1) {
			json_begin();
			json_open("apps", '[');
		}
		json_open(NULL, '{');
		json_str("app", ca.ca_app);
		json_uint("connections", ca.ca_conns);
		json_uint("in_flight", ca.ca_streams);
		json_uint("queued", ca.ca_queue);
		json_uint("requests", ca.ca_requests);
		json_uint("retries", ca.ca_retries);
		json_uint("ok", ca.ca_ok);
		json_uint("dead_token", ca.ca_dead);
		json_uint("throttled", ca.ca_throttled);
		json_uint("operator", ca.ca_operator);
		json_uint("transient", ca.ca_transient);
		json_uint("queue_full", ca.ca_queue_full);
		json_open("by_status", '{');
		for (i = 0; i < APNS_NSTATUS; i++) {
			if (i < APNS_NSTATUS - 1)
				snprintf(key, sizeof(key), "%d", statuses[i]);
			else
				strlcpy(key, "other", sizeof(key));
			json_uint(key, ca.ca_status[i]);
		}
		json_close();
		json_str("last_error", ca.ca_lasterr);
		json_close();
		return;
	}
	sanitize(ca.ca_app);
	sanitize(ca.ca_lasterr);
	if (nrecords > 1)
		printf("\n");
	printf("app %s\n", ca.ca_app);
	printf("  connections %u, in flight %u, queued %u\n", ca.ca_conns,
	    ca.ca_streams, ca.ca_queue);
	printf("  requests %" PRIu64 ", retries %" PRIu64 "\n",
	    ca.ca_requests, ca.ca_retries);
	printf("  ok %" PRIu64 ", dead token %" PRIu64 ", throttled %" PRIu64
	    ", operator %" PRIu64 ", transient %" PRIu64 ", queue full %"
	    PRIu64 "\n", ca.ca_ok, ca.ca_dead, ca.ca_throttled,
	    ca.ca_operator, ca.ca_transient, ca.ca_queue_full);
	printf("  responses by status:");
	for (i = 0; i < APNS_NSTATUS; i++)
		if (ca.ca_status[i] > 0) {
			if (i < APNS_NSTATUS - 1)
				printf(" %d: %" PRIu64, statuses[i],
				    ca.ca_status[i]);
			else
				printf(" other: %" PRIu64, ca.ca_status[i]);
		}
	printf("\n");
	printf("  last error: %s\n", ca.ca_lasterr[0] ? ca.ca_lasterr : "-");
}

/* show peers: one record per s2s stream, from xmppe. */
static void
show_peer(struct imsg *imsg)
{
	struct ctl_peer	 cp;
	char		 age[32];

	IMSG_SIZE_CHECK(imsg, &cp);
	memcpy(&cp, imsg->data, sizeof(cp));
	IMSG_STR_CHECK(cp.cp_domain);
	IMSG_STR_CHECK(cp.cp_local);
	IMSG_STR_CHECK(cp.cp_addr);
	IMSG_STR_CHECK(cp.cp_tls);
	IMSG_STR_CHECK(cp.cp_auth);
	nrecords++;
	if (jflag) {
		if (nrecords == 1) {
			json_begin();
			json_open("peers", '[');
		}
		json_open(NULL, '{');
		json_str("domain", cp.cp_domain);
		json_str("local", cp.cp_local);
		json_str("address", cp.cp_addr);
		json_str("direction", cp.cp_outbound ? "out" : "in");
		json_str("tls", cp.cp_tls);
		json_str("auth", cp.cp_auth);
		json_int("bidi", cp.cp_bidi);
		json_time("started", cp.cp_started);
		json_uint("stanzas_in", cp.cp_in);
		json_uint("stanzas_out", cp.cp_out);
		json_close();
		return;
	}
	sanitize(cp.cp_domain);
	sanitize(cp.cp_local);
	sanitize(cp.cp_addr);
	sanitize(cp.cp_tls);
	sanitize(cp.cp_auth);
	if (nrecords == 1)
		printf("%-28s %-3s %-8s %-9s %-4s %-10s %8s %8s %s\n",
		    "DOMAIN", "DIR", "TLS", "AUTH", "BIDI", "AGE", "IN", "OUT",
		    "ADDRESS");
	fmt_uptime(cp.cp_started, age, sizeof(age));
	printf("%-28s %-3s %-8s %-9s %-4s %-10s %8" PRIu64 " %8" PRIu64
	    " %s\n", cp.cp_domain, cp.cp_outbound ? "out" : "in",
	    cp.cp_tls[0] ? cp.cp_tls : "-", cp.cp_auth[0] ? cp.cp_auth : "-",
	    cp.cp_bidi ? "yes" : "no", age, cp.cp_in, cp.cp_out, cp.cp_addr);
}

static void
show_list_end(const char *name, const char *none)
{
	if (jflag) {
		json_begin();
		if (nrecords == 0)
			json_open(name, '[');
		json_finish();
		return;
	}
	if (nrecords == 0)
		printf("%s\n", none);
}

/* sar request: the address to write to and the code. */
static void
show_sar(struct imsg *imsg)
{
	struct ctl_sar	 cs;
	char		 t[TIME_STR_LEN];

	IMSG_SIZE_CHECK(imsg, &cs);
	memcpy(&cs, imsg->data, sizeof(cs));
	IMSG_STR_CHECK(cs.sr_jid);
	IMSG_STR_CHECK(cs.sr_to);
	IMSG_STR_CHECK(cs.sr_code);
	if (nrecords++ > 0)
		errx(1, "%s: more than one code", __func__);
	if (jflag) {
		json_begin();
		json_str("jid", cs.sr_jid);
		json_str("to", cs.sr_to);
		json_str("code", cs.sr_code);
		json_time("expires", cs.sr_expires);
	} else {
		sanitize(cs.sr_jid);
		sanitize(cs.sr_to);
		sanitize(cs.sr_code);
		printf("jid:      %s\n", cs.sr_jid);
		printf("write to: %s\n", cs.sr_to);
		printf("code:     %s\n", cs.sr_code);
		printf("expires:  %s\n", fmt_time(cs.sr_expires, t,
		    sizeof(t)));
		printf("\nThe user sends the code as the body of a message "
		    "from %s\nto %s before it expires.  The message verifies "
		    "the JID\nfor sar export and sar erase, for as long "
		    "again.\n", cs.sr_jid, cs.sr_to);
	}
	explicit_bzero(&cs, sizeof(cs));
}

/* sar export: the log lines first, as they come. */
static void
show_sar_line(struct imsg *imsg)
{
	char	*line = imsg->data;
	size_t	 len = IMSG_DATA_SIZE(imsg);

	if (len == 0 || strnlen(line, len) != len - 1)
		errx(1, "%s: bad log line of %zu bytes", __func__, len);
	if (nrecords > 0)
		errx(1, "%s: a log line after the registrations", __func__);
	if (jflag) {
		if (nlines++ == 0) {
			json_begin();
			json_str("jid", res->arg);
			json_open("lines", '[');
		}
		json_str(NULL, line);
		return;
	}
	sanitize(line);
	if (nlines++ == 0)
		printf("log lines naming %s:\n", res->arg);
	printf("%s\n", line);
}

/* sar export: then the registrations those lines name. */
static void
show_sar_reg(const struct ctl_cmd *cmd, struct imsg *imsg)
{
	if (jflag && nrecords == 0) {
		json_begin();
		if (nlines == 0) {
			json_str("jid", res->arg);
			json_open("lines", '[');
		}
		json_close();
	} else if (!jflag && nrecords == 0)
		printf("%sregistrations named by those lines:\n",
		    nlines > 0 ? "\n" : "");
	show_reg(cmd, imsg);
}

static void
show_sar_export_end(void)
{
	if (jflag) {
		json_begin();
		if (nlines == 0 && nrecords == 0) {
			json_str("jid", res->arg);
			json_open("lines", '[');
		}
		if (nrecords == 0) {
			json_close();
			json_open("registrations", '[');
		}
		json_finish();
		return;
	}
	if (nlines == 0)
		printf("no log lines name %s\n", res->arg);
	if (nrecords == 0)
		printf("%sno registrations\n", nlines > 0 ? "\n" : "");
}

/* sar erase: how many registrations went. */
static void
show_sar_erased(struct imsg *imsg)
{
	struct ctl_sar_erased	 se;

	IMSG_SIZE_CHECK(imsg, &se);
	memcpy(&se, imsg->data, sizeof(se));
	if (nrecords++ > 0)
		errx(1, "%s: more than one count", __func__);
	if (jflag) {
		json_begin();
		json_str("command", "sar erase");
		json_str("jid", res->arg);
		json_uint("log_lines", se.se_lines);
		json_uint("erased", se.se_erased);
		json_str("result", "ok");
		return;
	}
	printf("%s: %" PRIu64 " registration%s erased (%" PRIu64
	    " log line%s named it)\n", res->arg, se.se_erased,
	    se.se_erased == 1 ? "" : "s", se.se_lines,
	    se.se_lines == 1 ? "" : "s");
}

/* show stats: the parent's push counters since start. */
static void
show_stats(struct imsg *imsg)
{
	struct ctl_stats	 st;
	char			 up[32];
	size_t			 i;
	const struct {
		const char	*name;
		const char	*label;
		uint64_t	*v;
	} f[] = {
		{ "registrations", "registrations", &st.st_registrations },
		{ "unregistrations", "unregistrations",
		    &st.st_unregistrations },
		{ "registrations_refused", "registrations refused",
		    &st.st_reg_refused },
		{ "publishes", "publishes", &st.st_publishes },
		{ "not_found", "item-not-found", &st.st_not_found },
		{ "coalesced", "coalesced (rate limit)", &st.st_coalesced },
		{ "sent", "sent to APNs", &st.st_sent },
		{ "ok", "APNs ok", &st.st_ok },
		{ "dead_token", "dead tokens", &st.st_dead },
		{ "deleted", "registrations deleted", &st.st_deleted },
		{ "throttled", "throttled by APNs", &st.st_throttled },
		{ "operator", "operator errors", &st.st_operator },
		{ "transient", "transient failures", &st.st_transient },
		{ "queue_full", "queue full", &st.st_queue_full },
		{ "in_flight", "in flight now", &st.st_inflight },
		{ "rate_entries", "rate limit entries now",
		    &st.st_rate_entries },
		{ "blocked_tokens", "blocked tokens now", &st.st_blocked },
	};

	IMSG_SIZE_CHECK(imsg, &st);
	memcpy(&st, imsg->data, sizeof(st));
	if (jflag) {
		json_begin();
		json_time("started", st.st_started);
		for (i = 0; i < sizeof(f) / sizeof(f[0]); i++)
			json_uint(f[i].name, *f[i].v);
		return;
	}
	printf("%-28s %s\n", "up", fmt_uptime(st.st_started, up,
	    sizeof(up)));
	for (i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		printf("%-28s %" PRIu64 "\n", f[i].label, *f[i].v);
}
