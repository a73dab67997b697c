/*
 * monalpushctl's command line parser: every command, unique prefixes,
 * ambiguous, unknown, missing and superfluous words, argument checks.
 * parser.c is included whole: the regress programs link only
 * libmonalpushd.a, which does not hold the control tool's objects.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../monalpushctl/parser.c"
#include "regress.h"

#define ARGV_MAX	8
#define ERRBUF_SIZE	8192

static char	 errbuf[ERRBUF_SIZE];

/*
 * Parses a command line split at spaces; what the parser says on
 * stderr lands in errbuf.
 */
static struct parse_result *
run(const char *line)
{
	struct parse_result	*r;
	char			*argv[ARGV_MAX + 1], *copy, *p, *w;
	FILE			*tmp;
	size_t			 n;
	int			 argc = 0, saved;

	if ((copy = strdup(line)) == NULL)
		abort();
	for (p = copy; (w = strsep(&p, " ")) != NULL && argc < ARGV_MAX;)
		if (*w != '\0')
			argv[argc++] = w;
	argv[argc] = NULL;

	fflush(stderr);
	if ((tmp = tmpfile()) == NULL || (saved = dup(STDERR_FILENO)) == -1)
		abort();
	dup2(fileno(tmp), STDERR_FILENO);
	r = parse(argc, argv);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(tmp);
	n = fread(errbuf, 1, sizeof(errbuf) - 1, tmp);
	errbuf[n] = '\0';
	fclose(tmp);
	free(copy);
	return (r);
}

static void
ok(const char *line, enum actions action, const char *arg)
{
	struct parse_result	*r;

	r = run(line);
	CHECK(r != NULL && r->action == action && strcmp(r->arg, arg) == 0 &&
	    errbuf[0] == '\0', "\"%s\" parses to action %d arg \"%s\"", line,
	    action, arg);
}

static void
bad(const char *line, const char *msg, const char *choice)
{
	struct parse_result	*r;

	r = run(line);
	CHECK(r == NULL && strstr(errbuf, msg) != NULL,
	    "\"%s\" is refused with \"%s\"", line, msg);
	if (choice != NULL)
		CHECK(strstr(errbuf, "valid arguments:") != NULL &&
		    strstr(errbuf, choice) != NULL,
		    "\"%s\" lists the valid choice %s", line, choice);
}

int
main(void)
{
	char	 longnode[NODE_MAX + 2];
	char	*longjid, line[JID_MAX + 32];

	/* Every command, spelled out. */
	ok("show status", SHOW_STATUS, "");
	ok("show registrations", SHOW_REGS, "");
	ok("show node 0a1b-2C3d", SHOW_NODE, "0a1b-2C3d");
	ok("show peers", SHOW_PEERS, "");
	ok("show apns", SHOW_APNS, "");
	ok("show stats", SHOW_STATS, "");
	ok("unregister 0a1b-2C3d", UNREGISTER, "0a1b-2C3d");
	ok("reload", RELOAD, "");
	ok("log verbose", LOG_VERBOSE, "");
	ok("log brief", LOG_BRIEF, "");
	ok("sar request user@example.com", SAR_REQUEST, "user@example.com");
	ok("sar export user@example.com", SAR_EXPORT, "user@example.com");
	ok("sar erase user@example.com", SAR_ERASE, "user@example.com");

	/* Unique prefixes. */
	ok("sh statu", SHOW_STATUS, "");
	ok("sh reg", SHOW_REGS, "");
	ok("show n node1", SHOW_NODE, "node1");
	ok("sh p", SHOW_PEERS, "");
	ok("sh a", SHOW_APNS, "");
	ok("sh stats", SHOW_STATS, "");
	ok("u node1", UNREGISTER, "node1");
	ok("r", RELOAD, "");
	ok("l v", LOG_VERBOSE, "");
	ok("lo b", LOG_BRIEF, "");
	ok("sa r a@b", SAR_REQUEST, "a@b");
	ok("sar exp a@b", SAR_EXPORT, "a@b");
	ok("sar er example.com", SAR_ERASE, "example.com");

	/* Ambiguous prefixes name the word and list the choices. */
	bad("s status", "ambiguous argument: s", "  show");
	bad("s status", "ambiguous argument: s", "  sar");
	bad("show s", "ambiguous argument: s", "  stats");
	bad("show st", "ambiguous argument: st", "  status");
	bad("show stat", "ambiguous argument: stat", "  stats");
	bad("sar e a@b", "ambiguous argument: e", "  export");

	/* Unknown words. */
	bad("foo", "unknown argument: foo", "  reload");
	bad("show foo", "unknown argument: foo", "  registrations");
	bad("log loud", "unknown argument: loud", "  verbose");
	bad("reloadx", "unknown argument: reloadx", "  reload");
	bad("show statusx", "unknown argument: statusx", "  status");
	bad("", "missing argument: command", "  unregister");

	/* Missing words. */
	bad("show node", "missing argument: NODE", "  NODE");
	bad("unregister", "missing argument: NODE", "  NODE");
	bad("sar request", "missing argument: JID", "  JID");
	bad("sar export", "missing argument: JID", NULL);
	bad("sar erase", "missing argument: JID", NULL);
	bad("show", "missing argument after show", "  status");
	bad("log", "missing argument after log", "  brief");
	bad("sar", "missing argument after sar", "  request");

	/* Superfluous words. */
	bad("reload now", "superfluous argument: now", NULL);
	bad("show status x", "superfluous argument: x", NULL);
	bad("show node n1 n2", "superfluous argument: n2", NULL);
	bad("sar erase a@b c", "superfluous argument: c", NULL);

	/* Arguments are checked. */
	bad("show node a_b", "invalid NODE: a_b", NULL);
	bad("unregister a.b", "invalid NODE: a.b", NULL);
	memset(longnode, 'a', sizeof(longnode) - 1);
	longnode[sizeof(longnode) - 1] = '\0';
	snprintf(line, sizeof(line), "show node %s", longnode);
	bad(line, "invalid NODE", NULL);
	longnode[NODE_MAX] = '\0';
	snprintf(line, sizeof(line), "show node %s", longnode);
	ok(line, SHOW_NODE, longnode);
	bad("sar request a\tb", "invalid JID", NULL);
	if ((longjid = malloc(JID_MAX + 2)) == NULL)
		abort();
	memset(longjid, 'j', JID_MAX + 1);
	longjid[JID_MAX + 1] = '\0';
	snprintf(line, sizeof(line), "sar export %s", longjid);
	bad(line, "invalid JID", NULL);
	longjid[JID_MAX] = '\0';
	snprintf(line, sizeof(line), "sar export %s", longjid);
	ok(line, SAR_EXPORT, longjid);
	free(longjid);

	/* A keyword is not taken for an argument, nor the reverse. */
	ok("show node status", SHOW_NODE, "status");
	ok("unregister show", UNREGISTER, "show");

	REGRESS_EXIT();
}
