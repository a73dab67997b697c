/*
 * The grammar of monalpushctl as token tables, in the shape of
 * relayctl's and bgpctl's parsers: each word of the command line is
 * matched against one table, by exact word or unique prefix, and the
 * matching token names the table for the next word.
 */

#include <err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parser.h"

enum token_type {
	ENDTOKEN,			/* closes every table */
	KEYWORD,
	NODE,				/* a registration node */
	JID				/* a bare JID or a domain */
};

struct token {
	enum token_type		 type;
	const char		*keyword;	/* the word, or the argument's name */
	int			 value;		/* action, NONE to keep the last */
	const struct token	*next;		/* NULL: the command is complete */
};

static const struct token t_main[];
static const struct token t_show[];
static const struct token t_log[];
static const struct token t_sar[];
static const struct token t_node[];
static const struct token t_jid[];

static const struct token t_main[] = {
	{ KEYWORD,	"log",		NONE,		t_log },
	{ KEYWORD,	"reload",	RELOAD,		NULL },
	{ KEYWORD,	"sar",		NONE,		t_sar },
	{ KEYWORD,	"show",		NONE,		t_show },
	{ KEYWORD,	"unregister",	UNREGISTER,	t_node },
	{ ENDTOKEN,	"",		NONE,		NULL }
};

static const struct token t_show[] = {
	{ KEYWORD,	"apns",		SHOW_APNS,	NULL },
	{ KEYWORD,	"node",		SHOW_NODE,	t_node },
	{ KEYWORD,	"peers",	SHOW_PEERS,	NULL },
	{ KEYWORD,	"registrations", SHOW_REGS,	NULL },
	{ KEYWORD,	"stats",	SHOW_STATS,	NULL },
	{ KEYWORD,	"status",	SHOW_STATUS,	NULL },
	{ ENDTOKEN,	"",		NONE,		NULL }
};

static const struct token t_log[] = {
	{ KEYWORD,	"brief",	LOG_BRIEF,	NULL },
	{ KEYWORD,	"verbose",	LOG_VERBOSE,	NULL },
	{ ENDTOKEN,	"",		NONE,		NULL }
};

static const struct token t_sar[] = {
	{ KEYWORD,	"erase",	SAR_ERASE,	t_jid },
	{ KEYWORD,	"export",	SAR_EXPORT,	t_jid },
	{ KEYWORD,	"request",	SAR_REQUEST,	t_jid },
	{ ENDTOKEN,	"",		NONE,		NULL }
};

static const struct token t_node[] = {
	{ NODE,		"NODE",		NONE,		NULL },
	{ ENDTOKEN,	"",		NONE,		NULL }
};

static const struct token t_jid[] = {
	{ JID,		"JID",		NONE,		NULL },
	{ ENDTOKEN,	"",		NONE,		NULL }
};

static struct parse_result	 res;

static const struct token	*match_token(const char *, const char *,
				    const struct token *);
static int			 match_arg(const struct token *, const char *);
static void			 show_valid_args(const struct token *);

/*
 * Returns the parsed command, or NULL after telling the user on stderr
 * what was wrong and which words would have been valid.
 */
struct parse_result *
parse(int argc, char *argv[])
{
	const struct token	*table = t_main, *match;
	const char		*prev = NULL;

	memset(&res, 0, sizeof(res));
	while (table != NULL) {
		match = match_token(argc > 0 ? argv[0] : NULL, prev, table);
		if (match == NULL)
			return (NULL);
		if (match->value != NONE)
			res.action = match->value;
		prev = argv[0];
		argc--;
		argv++;
		table = match->next;
	}
	if (argc > 0) {
		warnx("superfluous argument: %s", argv[0]);
		return (NULL);
	}
	return (&res);
}

static const struct token *
match_token(const char *word, const char *prev, const struct token *table)
{
	const struct token	*t, *match = NULL;
	size_t			 len;
	int			 n = 0;

	if (word == NULL) {
		if (table[0].type == KEYWORD) {
			if (prev == NULL)
				warnx("missing argument: command");
			else
				warnx("missing argument after %s", prev);
		} else
			warnx("missing argument: %s", table[0].keyword);
		show_valid_args(table);
		return (NULL);
	}
	len = strlen(word);
	for (t = table; t->type != ENDTOKEN; t++) {
		if (t->type != KEYWORD) {
			if (match_arg(t, word) == -1)
				return (NULL);
			return (t);
		}
		if (strcmp(word, t->keyword) == 0)
			return (t);
		if (len > 0 && strncmp(word, t->keyword, len) == 0) {
			match = t;
			n++;
		}
	}
	if (n == 1)
		return (match);
	warnx("%s argument: %s", n > 1 ? "ambiguous" : "unknown", word);
	show_valid_args(table);
	return (NULL);
}

/* A daemon checks again; this catches typing errors before connecting. */
static int
match_arg(const struct token *t, const char *word)
{
	const unsigned char	*p;
	size_t			 len = strlen(word);

	switch (t->type) {
	case NODE:
		if (len == 0 || len > NODE_MAX)
			goto bad;
		for (p = (const unsigned char *)word; *p != '\0'; p++)
			if (!((*p >= 'a' && *p <= 'z') ||
			    (*p >= 'A' && *p <= 'Z') ||
			    (*p >= '0' && *p <= '9') || *p == '-'))
				goto bad;
		break;
	case JID:
		if (len == 0 || len > JID_MAX)
			goto bad;
		for (p = (const unsigned char *)word; *p != '\0'; p++)
			if (*p <= ' ' || *p == 0x7f)
				goto bad;
		break;
	default:
		goto bad;
	}
	strlcpy(res.arg, word, sizeof(res.arg));
	return (0);
 bad:
	if (t->type == NODE)
		warnx("invalid %s: %s (1 to %d characters of A-Z, a-z, 0-9 "
		    "and -)", t->keyword, word, NODE_MAX);
	else
		warnx("invalid %s: %s (1 to %d characters, no spaces or "
		    "control characters)", t->keyword, word, JID_MAX);
	return (-1);
}

static void
show_valid_args(const struct token *table)
{
	const struct token	*t;

	fprintf(stderr, "valid arguments:\n");
	for (t = table; t->type != ENDTOKEN; t++)
		fprintf(stderr, "  %s\n", t->keyword);
}
