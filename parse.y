/*
 * monalpush.conf(5) parser: a file stack for include, macros with $name
 * expansion and -D name=value, a sorted keyword table, errors printed as
 * file:line: message, and recovery at the end of a line so that every
 * error of a file is reported in one run.
 */

%{
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <tls.h>
#include <unistd.h>

#include "monalpushd.h"

#define INCLUDE_DEPTH_MAX	16	/* nested include files */
#define TOKEN_LEN_MAX		8192	/* one word or quoted string */
#define PUSHBACK_MAX		8192	/* characters of expanded macros */
#define EXPAND_MAX		256	/* macro expansions in one line */

/* Ranges of the numeric settings. */
#define RETENTION_MIN		1
#define STANZA_MIN		4096
#define XML_DEPTH_MIN		8
#define XML_DEPTH_MAX		256
#define XML_ATTRS_MIN		8
#define XML_ATTRS_MAX		256
#define CONN_MAX_MAX		1000000
#define TIMEOUT_MAX		86400
#define APNS_TIMEOUT_MAX	300
#define APNS_CONNS_MAX		64
#define APNS_QUEUE_MAX		1000000
#define EXPIRATION_MAX		(30 * 86400)	/* APNs stores for 30 days */
#define RATELIMIT_MAX		3600

struct file {
	TAILQ_ENTRY(file)	 f_entry;
	FILE			*f_stream;
	char			*f_name;
	int			 f_lineno;
	int			 f_nlpending;	/* count the line later */
	int			 f_atbol;	/* nothing yet on this line */
	int			 f_lastnl;	/* the last token was '\n' */
	int			 f_eof;
	int			 f_nexpand;	/* on this line: stops loops */
	char			 f_pushback[PUSHBACK_MAX];
	size_t			 f_npushback;
};

struct sym {
	TAILQ_ENTRY(sym)	 s_entry;
	int			 s_used;
	int			 s_persist;	/* from -D: the file cannot */
	char			*s_name;
	char			*s_val;
};

typedef struct {
	union {
		int64_t		 number;
		char		*string;
	} v;
	int	lineno;
} YYSTYPE;
#define YYSTYPE_IS_DECLARED 1

static TAILQ_HEAD(filehead, file) files = TAILQ_HEAD_INITIALIZER(files);
static TAILQ_HEAD(, sym)	 symhead = TAILQ_HEAD_INITIALIZER(symhead);
static struct file		*file, *topfile;
static struct mp_conf		*conf;
static struct mp_domain		*cur_domain;
static struct mp_app		*cur_app;
static int			 block_line;	/* where the block began */
static int			 block_errors;	/* the block had an error */
static int			 block_badname;	/* invalid or duplicate name */
static int			 errors, dropped_blocks, lexerr, verbose;
static int			 tok_first;	/* first token of its line */
static int			 tok_keyword;	/* it was a keyword */
static int			 tok_word;	/* an unquoted word */
static char			 tok_text[64];	/* for syntax errors */
static int			 prev_first, prev_word;	/* the token before */
static char			 prev_text[64];
static int			 errors_to_log;	/* else to stderr */

int		 yyparse(void);
int		 yylex(void);
int		 yyerror(const char *, ...)
		    __attribute__((format(printf, 1, 2)));
static int	 yyerror_line(int, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
static void	 syntax_error(void);
static void	 conf_msg(const char *, ...)
		    __attribute__((format(printf, 1, 2)));
static struct file *pushfile(const char *, int);
static int	 popfile(void);
static int	 symset(const char *, const char *, int);
static char	*symget(const char *);
static void	 symclear(int);

static int	 check_range(const char *, int64_t, int64_t, int64_t);
static int	 set_path(char *, size_t, const char *, const char *);
static int	 set_name(char *, size_t, const char *, const char *,
		    const char *);
static int	 valid_dns(const char *);
static void	 listen_add(const char *, int64_t, int);
static void	 domain_begin(char *);
static void	 domain_end(int);
static void	 app_begin(char *);
static void	 app_end(int);
static void	 app_auth(int);
static void	 route_add(char *, char *, int64_t);
static void	 dns_zone_add(const char *);
static int	 numeric_addr(const char *, char *, size_t);
static int	 strict_addr(const char *);

#define YYERROR_CALL(msg)	syntax_error()
%}

%token	ALERT APP APNS ATTRIBUTES AUTO BACKGROUND CA CERTIFICATE CHROOT
%token	COLLAPSE CONNECTIONS CONTROL DATABASE DEFAULT DEPTH DIRECTORY DNS DOMAIN
%token	ENVIRONMENT EXPIRATION FILENAME HANDSHAKE HOST IDLE INCLUDE KEY KEYID
%token	LIMIT LISTEN LOG MAX MODE MUTABLE NO ON OPTIONAL PEER PER PORT
%token	PRIORITY PRODUCTION QUEUE RATE REGISTERED REQUIRED RETENTION ROUTE
%token	SANDBOX SIZE SOCKET STANZA STARTTLS TEAMID TIMEOUT TLS TO TOKEN
%token	TOPIC TRANSPARENT USER VOIP XML YES ZONE ERROR
%token	<v.string>	STRING
%token	<v.number>	NUMBER
%type	<v.number>	yesno priority optls
%type	<v.string>	value
%destructor	{ free($$); }	<v.string>

%%

grammar		: /* empty */
		| grammar '\n'
		| grammar include
		| grammar varset '\n'
		| grammar main '\n'
		| grammar listen '\n'
		| grammar domain '\n'
		| grammar app '\n'
		| grammar route '\n'
		| grammar error '\n'		{ yyerrok; }
		;

include		: INCLUDE STRING '\n'		{
			struct file	*nfile;

			if ((nfile = pushfile($2, 1)) == NULL)
				yyerror_line(file->f_lineno, "cannot include "
				    "\"%s\": %s", $2, errno == ELOOP ?
				    "include files nested too deep" :
				    strerror(errno));
			else
				file = nfile;
			free($2);
		}
		;

varset		: STRING '=' value		{
			const char	*p;

			for (p = $1; *p != '\0'; p++)
				if (!isalnum((unsigned char)*p) && *p != '_')
					break;
			if (*p != '\0' || p == $1)
				yyerror("macro name \"%s\" is invalid: use "
				    "letters, digits and '_'", $1);
			else if (symset($1, $3, 0) == -1)
				yyerror("cannot store macro %s", $1);
			free($1);
			free($3);
		}
		;

value		: STRING
		| NUMBER			{
			if (asprintf(&$$, "%lld", (long long)$1) == -1)
				fatal("%s", __func__);
		}
		;

main		: USER STRING			{
			if (set_name(conf->c_user, sizeof(conf->c_user), $2,
			    "user", "-_.") == 0 && $2[0] == '\0')
				yyerror("user must not be empty");
			free($2);
		}
		| CHROOT STRING			{
			set_path(conf->c_chroot, sizeof(conf->c_chroot), $2,
			    "chroot");
			free($2);
		}
		| DATABASE STRING		{
			set_path(conf->c_database, sizeof(conf->c_database),
			    $2, "database");
			free($2);
		}
		| CONTROL SOCKET STRING		{
			set_path(conf->c_socket, sizeof(conf->c_socket), $3,
			    "control socket");
			free($3);
		}
		| LOG DIRECTORY STRING		{
			set_path(conf->c_logdir, sizeof(conf->c_logdir), $3,
			    "log directory");
			free($3);
		}
		| LOG RETENTION NUMBER		{
			if ($3 > LOG_RETENTION_MAX)
				yyerror("log retention %lld days is too long: "
				    "the privacy policy promises that logs "
				    "are kept at most two weeks (%d days)",
				    (long long)$3, LOG_RETENTION_MAX);
			else if (check_range("log retention", $3,
			    RETENTION_MIN, LOG_RETENTION_MAX) == 0)
				conf->c_retention = $3;
		}
		| CA FILENAME STRING		{
			set_path(conf->c_cafile, sizeof(conf->c_cafile), $3,
			    "ca file");
			free($3);
		}
		| DNS TRANSPARENT ZONE STRING	{
			dns_zone_add($4);
			free($4);
		}
		| STARTTLS REQUIRED		{
			conf->c_starttls_required = 1;
		}
		| STARTTLS OPTIONAL		{
			conf->c_starttls_required = 0;
		}
		| STARTTLS STRING		{
			yyerror("starttls \"%s\": use required or optional",
			    $2);
			free($2);
		}
		| MAX STANZA SIZE NUMBER	{
			if (check_range("max stanza size", $4, STANZA_MIN,
			    STANZA_MAX_LIMIT) == 0)
				conf->c_stanza_max = $4;
		}
		| MAX XML DEPTH NUMBER		{
			if (check_range("max xml depth", $4, XML_DEPTH_MIN,
			    XML_DEPTH_MAX) == 0)
				conf->c_xml_depth = $4;
		}
		| MAX XML ATTRIBUTES NUMBER	{
			if (check_range("max xml attributes", $4,
			    XML_ATTRS_MIN, XML_ATTRS_MAX) == 0)
				conf->c_xml_attrs = $4;
		}
		| MAX CONNECTIONS NUMBER	{
			if (check_range("max connections", $3, 1,
			    CONN_MAX_MAX) == 0)
				conf->c_conn_max = $3;
		}
		| MAX CONNECTIONS PER PEER NUMBER {
			if (check_range("max connections per peer", $5, 1,
			    CONN_MAX_MAX) == 0)
				conf->c_conn_per_peer = $5;
		}
		| HANDSHAKE TIMEOUT NUMBER	{
			if (check_range("handshake timeout", $3, 1,
			    TIMEOUT_MAX) == 0)
				conf->c_handshake_timeout = $3;
		}
		| IDLE TIMEOUT NUMBER		{
			if (check_range("idle timeout", $3, 1,
			    TIMEOUT_MAX) == 0)
				conf->c_idle_timeout = $3;
		}
		| APNS TIMEOUT NUMBER		{
			if (check_range("apns timeout", $3, 1,
			    APNS_TIMEOUT_MAX) == 0)
				conf->c_apns_timeout = $3;
		}
		| APNS CONNECTIONS NUMBER	{
			if (check_range("apns connections", $3, 1,
			    APNS_CONNS_MAX) == 0)
				conf->c_apns_conns = $3;
		}
		| APNS QUEUE NUMBER		{
			if (check_range("apns queue", $3, 1,
			    APNS_QUEUE_MAX) == 0)
				conf->c_apns_queue = $3;
		}
		;

listen		: LISTEN ON STRING PORT NUMBER optls {
			listen_add($3, $5, $6);
			free($3);
		}
		;

optls		: /* empty */			{ $$ = 0; }
		| TLS				{ $$ = 1; }
		;

domain		: domainstart '{' domainopts '}'	{ domain_end(0); }
		| domainstart '{' domainopts error '}'	{
			yyerrok;
			domain_end(1);
		}
		;

domainstart	: DOMAIN STRING			{ domain_begin($2); }
		;

domainopts	: /* empty */
		| domainopts '\n'
		| domainopts ';'
		| domainopts domainopt
		| domainopts error '\n'		{ yyerrok; block_errors = 1; }
		;

domainopt	: CERTIFICATE STRING		{
			if (cur_domain != NULL)
				set_path(cur_domain->d_cert,
				    sizeof(cur_domain->d_cert), $2,
				    "certificate");
			free($2);
		}
		| KEY STRING			{
			if (cur_domain != NULL)
				set_path(cur_domain->d_key,
				    sizeof(cur_domain->d_key), $2, "key");
			free($2);
		}
		;

app		: appstart '{' appopts '}'	{ app_end(0); }
		| appstart '{' appopts error '}' {
			yyerrok;
			app_end(1);
		}
		;

appstart	: APP STRING			{ app_begin($2); }
		;

appopts		: /* empty */
		| appopts '\n'
		| appopts ';'
		| appopts appopt
		| appopts error '\n'		{ yyerrok; block_errors = 1; }
		;

appopt		: TOPIC STRING			{
			if (set_name(cur_app->a_topic, sizeof(cur_app->a_topic),
			    $2, "topic", "-._") == 0 && $2[0] == '\0')
				yyerror("topic must not be empty");
			free($2);
		}
		| ENVIRONMENT PRODUCTION	{
			cur_app->a_env = APP_ENV_PRODUCTION;
		}
		| ENVIRONMENT SANDBOX		{
			cur_app->a_env = APP_ENV_SANDBOX;
		}
		| ENVIRONMENT STRING		{
			yyerror("environment \"%s\": use production or "
			    "sandbox", $2);
			free($2);
		}
		| HOST STRING			{
			set_name(cur_app->a_host, sizeof(cur_app->a_host), $2,
			    "host", "-.:");
			free($2);
		}
		| PORT NUMBER			{
			if (check_range("port", $2, 1, UINT16_MAX) == 0)
				cur_app->a_port = $2;
		}
		| CERTIFICATE STRING KEY STRING	{
			app_auth(APP_AUTH_CERT);
			set_path(cur_app->a_cert, sizeof(cur_app->a_cert), $2,
			    "certificate");
			set_path(cur_app->a_key, sizeof(cur_app->a_key), $4,
			    "key");
			free($2);
			free($4);
		}
		| TOKEN KEY STRING KEYID STRING TEAMID STRING {
			app_auth(APP_AUTH_TOKEN);
			set_path(cur_app->a_key, sizeof(cur_app->a_key), $3,
			    "token key");
			if (set_name(cur_app->a_keyid,
			    sizeof(cur_app->a_keyid), $5, "key-id", "") == 0 &&
			    $5[0] == '\0')
				yyerror("key-id must not be empty");
			if (set_name(cur_app->a_teamid,
			    sizeof(cur_app->a_teamid), $7, "team-id", "") ==
			    0 && $7[0] == '\0')
				yyerror("team-id must not be empty");
			free($3);
			free($5);
			free($7);
		}
		| CA STRING			{
			set_path(cur_app->a_cafile, sizeof(cur_app->a_cafile),
			    $2, "ca");
			free($2);
		}
		| PRIORITY priority		{ cur_app->a_priority = $2; }
		| PRIORITY STRING		{
			yyerror("priority \"%s\": use auto, alert, background "
			    "or voip", $2);
			free($2);
		}
		| MUTABLE yesno			{ cur_app->a_mutable = $2; }
		| MUTABLE STRING		{
			yyerror("mutable-content \"%s\": use yes or no", $2);
			free($2);
		}
		| COLLAPSE STRING		{
			set_name(cur_app->a_collapse,
			    sizeof(cur_app->a_collapse), $2, "collapse",
			    "-._:");
			free($2);
		}
		| EXPIRATION NUMBER		{
			if (check_range("expiration", $2, 0,
			    EXPIRATION_MAX) == 0)
				cur_app->a_expiration = $2;
		}
		| RATE LIMIT NUMBER		{
			if (check_range("rate limit", $3, 0,
			    RATELIMIT_MAX) == 0)
				cur_app->a_ratelimit = $3;
		}
		| MODE REGISTERED		{
			cur_app->a_mode = APP_MODE_REGISTERED;
		}
		| MODE TOKEN			{
			cur_app->a_mode = APP_MODE_TOKEN;
		}
		| MODE STRING			{
			yyerror("mode \"%s\": use registered or token", $2);
			free($2);
		}
		| DEFAULT			{
			struct mp_app	*a;

			TAILQ_FOREACH(a, &conf->c_apps, a_entry)
				if (a->a_default)
					yyerror("app \"%s\": app \"%s\" is "
					    "already the default",
					    cur_app->a_name, a->a_name);
			cur_app->a_default = 1;
		}
		;

priority	: AUTO				{ $$ = PRIO_AUTO; }
		| ALERT				{ $$ = PRIO_ALERT; }
		| BACKGROUND			{ $$ = PRIO_BACKGROUND; }
		| VOIP				{ $$ = PRIO_VOIP; }
		;

yesno		: YES				{ $$ = 1; }
		| NO				{ $$ = 0; }
		;

route		: ROUTE STRING TO STRING PORT NUMBER {
			route_add($2, $4, $6);
		}
		;

%%

/*
 * Names RFC 6761 reserves (test., invalid., ...) get NXDOMAIN from
 * libunbound itself; a private deployment or a test network may ask for
 * them to be looked up like any other zone.
 */
static void
dns_zone_add(const char *zone)
{
	size_t	 i;

	if (*zone == '\0' || strlen(zone) > DOMAIN_MAX ||
	    strspn(zone, "abcdefghijklmnopqrstuvwxyz0123456789-.") !=
	    strlen(zone)) {
		yyerror("dns transparent zone \"%s\": not a lowercase DNS "
		    "name", zone);
		return;
	}
	for (i = 0; i < DNS_ZONES_MAX; i++) {
		if (conf->c_dns_zones[i][0] == '\0') {
			strlcpy(conf->c_dns_zones[i], zone,
			    sizeof(conf->c_dns_zones[i]));
			return;
		}
		if (strcmp(conf->c_dns_zones[i], zone) == 0) {
			yyerror("dns transparent zone \"%s\" given twice",
			    zone);
			return;
		}
	}
	yyerror("more than %d dns transparent zones", DNS_ZONES_MAX);
}


struct keywords {
	const char	*k_name;
	int		 k_val;
};

/* Sorted by strcmp(3): looked up with bsearch(3). */
static const struct keywords keywords[] = {
	{ "alert",		ALERT },
	{ "apns",		APNS },
	{ "app",		APP },
	{ "attributes",		ATTRIBUTES },
	{ "auto",		AUTO },
	{ "background",		BACKGROUND },
	{ "ca",			CA },
	{ "certificate",	CERTIFICATE },
	{ "chroot",		CHROOT },
	{ "collapse",		COLLAPSE },
	{ "connections",	CONNECTIONS },
	{ "control",		CONTROL },
	{ "database",		DATABASE },
	{ "default",		DEFAULT },
	{ "depth",		DEPTH },
	{ "directory",		DIRECTORY },
	{ "dns",		DNS },
	{ "domain",		DOMAIN },
	{ "environment",	ENVIRONMENT },
	{ "expiration",		EXPIRATION },
	{ "file",		FILENAME },
	{ "handshake",		HANDSHAKE },
	{ "host",		HOST },
	{ "idle",		IDLE },
	{ "include",		INCLUDE },
	{ "key",		KEY },
	{ "key-id",		KEYID },
	{ "limit",		LIMIT },
	{ "listen",		LISTEN },
	{ "log",		LOG },
	{ "max",		MAX },
	{ "mode",		MODE },
	{ "mutable-content",	MUTABLE },
	{ "no",			NO },
	{ "on",			ON },
	{ "optional",		OPTIONAL },
	{ "peer",		PEER },
	{ "per",		PER },
	{ "port",		PORT },
	{ "priority",		PRIORITY },
	{ "production",		PRODUCTION },
	{ "queue",		QUEUE },
	{ "rate",		RATE },
	{ "registered",		REGISTERED },
	{ "required",		REQUIRED },
	{ "retention",		RETENTION },
	{ "route",		ROUTE },
	{ "sandbox",		SANDBOX },
	{ "size",		SIZE },
	{ "socket",		SOCKET },
	{ "stanza",		STANZA },
	{ "starttls",		STARTTLS },
	{ "team-id",		TEAMID },
	{ "timeout",		TIMEOUT },
	{ "tls",		TLS },
	{ "to",			TO },
	{ "token",		TOKEN },
	{ "topic",		TOPIC },
	{ "transparent",	TRANSPARENT },
	{ "user",		USER },
	{ "voip",		VOIP },
	{ "xml",		XML },
	{ "yes",		YES },
	{ "zone",		ZONE }
};

static int
kw_cmp(const void *k, const void *e)
{
	return (strcmp(k, ((const struct keywords *)e)->k_name));
}

static int
lookup(const char *s)
{
	const struct keywords	*p;

	p = bsearch(s, keywords, sizeof(keywords) / sizeof(keywords[0]),
	    sizeof(keywords[0]), kw_cmp);
	return (p != NULL ? p->k_val : STRING);
}

static int
vyyerror_line(int line, const char *fmt, va_list ap)
{
	char	 msg[LOG_LINE_MAX];

	errors++;
	if (cur_app != NULL || cur_domain != NULL)
		block_errors = 1;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	conf_msg("%s:%d: %s", file->f_name, line, msg);
	return (0);
}

/*
 * monalpushd -n prints errors plainly on stderr; the running daemon,
 * whose stderr may be /dev/null, logs them when it reloads.
 */
void
parse_errors_to_log(int on)
{
	errors_to_log = on;
}

static void
conf_msg(const char *fmt, ...)
{
	char	 msg[LOG_LINE_MAX];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (errors_to_log)
		log_warnx("%s", msg);
	else
		fprintf(stderr, "%s\n", msg);
}

int
yyerror(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vyyerror_line(file->f_lineno, fmt, ap);
	va_end(ap);
	return (0);
}

static int
yyerror_line(int line, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vyyerror_line(line, fmt, ap);
	va_end(ap);
	return (0);
}

/*
 * The lexer has already said what is wrong when it returned ERROR; the
 * word that begins a line is most likely a misspelt keyword.
 */
static void
syntax_error(void)
{
	if (lexerr)
		return;
	/* At the top level a word may begin "name = value". */
	if (prev_first && prev_word && cur_app == NULL && cur_domain == NULL &&
	    strcmp(tok_text, "=") != 0)
		yyerror("unknown keyword \"%s\"", prev_text);
	else if (tok_text[0] == '\0')
		yyerror("syntax error at end of line");
	else if (tok_first && !tok_keyword && cur_app != NULL)
		yyerror("unknown app keyword \"%s\"", tok_text);
	else if (tok_first && !tok_keyword && cur_domain != NULL)
		yyerror("unknown domain keyword \"%s\"", tok_text);
	else if (tok_first && !tok_keyword)
		yyerror("unknown keyword \"%s\"", tok_text);
	else if (tok_keyword)
		yyerror("syntax error: \"%s\" not expected here", tok_text);
	else
		yyerror("syntax error at \"%s\"", tok_text);
}

static int
lgetc(void)
{
	int	 c;

	if (file->f_npushback > 0)
		return ((unsigned char)file->f_pushback[--file->f_npushback]);
	if (file->f_eof)
		return (EOF);
	if ((c = getc(file->f_stream)) == EOF)
		file->f_eof = 1;
	return (c);
}

static void
lungetc(int c)
{
	if (c == EOF)
		return;
	if (file->f_npushback < sizeof(file->f_pushback))
		file->f_pushback[file->f_npushback++] = c;
}

/* Skip the rest of a line after a lexical error; the parser recovers. */
static int
findeol(void)
{
	int	 c, prev = 0;

	lexerr = 1;
	while ((c = lgetc()) != EOF) {
		if (c == '\n' && prev == '\\')
			file->f_lineno++;
		else if (c == '\n')
			break;
		prev = c;
	}
	lungetc(c);
	return (ERROR);
}

static int
in_word(int c)
{
	return (c != EOF && (isalnum(c) || strchr("-_.:/*%@+,[]", c) != NULL));
}

static int
expand_macro(void)
{
	char	 name[TOKEN_LEN_MAX];
	char	*val;
	size_t	 n = 0, len;
	int	 c;

	while ((c = lgetc()) != EOF && (isalnum(c) || c == '_')) {
		if (n + 1 >= sizeof(name)) {
			yyerror("macro name too long");
			return (-1);
		}
		name[n++] = c;
	}
	lungetc(c);
	name[n] = '\0';
	if (n == 0) {
		yyerror("'$' without a macro name");
		return (-1);
	}
	if ((val = symget(name)) == NULL) {
		yyerror("macro \"%s\" is not defined", name);
		return (-1);
	}
	len = strlen(val);
	if (++file->f_nexpand > EXPAND_MAX) {
		yyerror("macro \"%s\": too many expansions in one line, "
		    "does it expand to itself?", name);
		return (-1);
	}
	if (len > sizeof(file->f_pushback) - file->f_npushback) {
		yyerror("macro \"%s\" expands too far", name);
		return (-1);
	}
	while (len > 0)
		lungetc((unsigned char)val[--len]);
	return (0);
}

static void
set_tok_text(const char *s)
{
	strlcpy(tok_text, s, sizeof(tok_text));
}

static int
lex_quoted(int quote)
{
	char	 buf[TOKEN_LEN_MAX];
	size_t	 n = 0;
	int	 c, next;

	for (;;) {
		if ((c = lgetc()) == EOF || c == '\n') {
			lungetc(c);
			yyerror("unterminated quoted string");
			return (findeol());
		}
		if (c == quote)
			break;
		if (c == '\\') {
			next = lgetc();
			if (next != quote && next != '\\') {
				lungetc(next);
			} else
				c = next;
		}
		if (c == '\0') {
			yyerror("NUL byte in a quoted string");
			return (findeol());
		}
		if (n + 1 >= sizeof(buf)) {
			yyerror("string too long");
			return (findeol());
		}
		buf[n++] = c;
	}
	buf[n] = '\0';
	set_tok_text(buf);
	if ((yylval.v.string = strdup(buf)) == NULL) {
		yyerror("%s: %s", __func__, strerror(errno));
		return (findeol());
	}
	return (STRING);
}

static int
lex_word(int c)
{
	char		 buf[TOKEN_LEN_MAX];
	const char	*errstr;
	size_t		 n = 0;
	int		 tok, isnum = 1;

	do {
		if (n + 1 >= sizeof(buf)) {
			yyerror("word too long");
			return (findeol());
		}
		if (!isdigit(c) && !(c == '-' && n == 0))
			isnum = 0;
		buf[n++] = c;
	} while (in_word(c = lgetc()));
	lungetc(c);
	buf[n] = '\0';
	set_tok_text(buf);
	if (isnum && strcmp(buf, "-") != 0) {
		yylval.v.number = strtonum(buf, LLONG_MIN, LLONG_MAX, &errstr);
		if (errstr != NULL) {
			yyerror("number %s is %s", buf, errstr);
			return (findeol());
		}
		return (NUMBER);
	}
	if ((tok = lookup(buf)) != STRING) {
		tok_keyword = 1;
		return (tok);
	}
	if ((yylval.v.string = strdup(buf)) == NULL) {
		yyerror("%s: %s", __func__, strerror(errno));
		return (findeol());
	}
	return (STRING);
}

int
yylex(void)
{
	int	 c, next;

	prev_first = tok_first;
	prev_word = tok_word && !tok_keyword;
	strlcpy(prev_text, tok_text, sizeof(prev_text));
	tok_keyword = tok_word = 0;
	tok_text[0] = '\0';
 top:
	if (file->f_nlpending) {
		file->f_nlpending = 0;
		file->f_lineno++;
		file->f_atbol = 1;
		file->f_nexpand = 0;
		lexerr = 0;
	}
	while ((c = lgetc()) == ' ' || c == '\t' || c == '\r')
		;
	yylval.lineno = file->f_lineno;
	if (c == '\\') {
		if ((next = lgetc()) == '\n') {
			file->f_lineno++;
			goto top;
		}
		lungetc(next);
	}
	if (c == '#') {
		while ((c = lgetc()) != '\n' && c != EOF)
			;
	}
	if (c == '$') {
		if (expand_macro() == -1)
			return (findeol());
		goto top;
	}
	if (c == EOF) {
		/* A last line without a newline still ends a statement. */
		if (!file->f_lastnl) {
			file->f_lastnl = 1;
			tok_first = 0;
			return ('\n');
		}
		if (file == topfile || popfile() == EOF)
			return (0);
		goto top;
	}
	tok_first = file->f_atbol;
	file->f_atbol = 0;
	file->f_lastnl = 0;
	if (c == '\n') {
		file->f_nlpending = 1;
		file->f_lastnl = 1;
		tok_first = 0;
		return ('\n');
	}
	if (c == '"' || c == '\'')
		return (lex_quoted(c));
	if (in_word(c)) {
		tok_word = 1;
		return (lex_word(c));
	}
	tok_text[0] = c;
	tok_text[1] = '\0';
	if (c == '=' || c == '{' || c == '}' || c == ';')
		return (c);
	if (!isprint(c))
		snprintf(tok_text, sizeof(tok_text), "\\x%02x", c);
	return (c);
}

static struct file *
pushfile(const char *name, int included)
{
	struct file	*nfile;
	char		*path = NULL, *slash;
	int		 depth = 0;

	TAILQ_FOREACH(nfile, &files, f_entry)
		depth++;
	if (depth >= INCLUDE_DEPTH_MAX) {
		errno = ELOOP;
		return (NULL);
	}
	/* A relative include is relative to the including file. */
	if (included && name[0] != '/' &&
	    (slash = strrchr(file->f_name, '/')) != NULL) {
		if (asprintf(&path, "%.*s/%s", (int)(slash - file->f_name),
		    file->f_name, name) == -1)
			return (NULL);
	} else if ((path = strdup(name)) == NULL)
		return (NULL);
	if ((nfile = calloc(1, sizeof(*nfile))) == NULL) {
		free(path);
		return (NULL);
	}
	nfile->f_name = path;
	if ((nfile->f_stream = fopen(path, "r")) == NULL) {
		free(path);
		free(nfile);
		return (NULL);
	}
	nfile->f_lineno = 1;
	nfile->f_atbol = 1;
	nfile->f_lastnl = 1;
	TAILQ_INSERT_TAIL(&files, nfile, f_entry);
	return (nfile);
}

static int
popfile(void)
{
	struct file	*prev;

	if ((prev = TAILQ_PREV(file, filehead, f_entry)) != NULL)
		prev->f_atbol = 1;
	TAILQ_REMOVE(&files, file, f_entry);
	fclose(file->f_stream);
	free(file->f_name);
	free(file);
	file = prev;
	return (file != NULL ? 0 : EOF);
}

static int
symset(const char *name, const char *val, int persist)
{
	struct sym	*sym;

	TAILQ_FOREACH(sym, &symhead, s_entry)
		if (strcmp(name, sym->s_name) == 0)
			break;
	if (sym != NULL) {
		if (sym->s_persist)
			return (0);
		TAILQ_REMOVE(&symhead, sym, s_entry);
		free(sym->s_name);
		free(sym->s_val);
		free(sym);
	}
	if ((sym = calloc(1, sizeof(*sym))) == NULL)
		return (-1);
	if ((sym->s_name = strdup(name)) == NULL ||
	    (sym->s_val = strdup(val)) == NULL) {
		free(sym->s_name);
		free(sym);
		return (-1);
	}
	sym->s_persist = persist;
	TAILQ_INSERT_TAIL(&symhead, sym, s_entry);
	return (0);
}

int
cmdline_symset(char *s)
{
	char	*eq, *name;
	int	 ret;

	if ((eq = strchr(s, '=')) == NULL || eq == s)
		return (-1);
	if ((name = strndup(s, eq - s)) == NULL)
		return (-1);
	ret = symset(name, eq + 1, 1);
	free(name);
	return (ret);
}

static char *
symget(const char *name)
{
	struct sym	*sym;

	TAILQ_FOREACH(sym, &symhead, s_entry)
		if (strcmp(name, sym->s_name) == 0) {
			sym->s_used = 1;
			return (sym->s_val);
		}
	return (NULL);
}

/* Forget the file's macros; those from -D stay for the next reload. */
static void
symclear(int warn)
{
	struct sym	*sym, *next;

	for (sym = TAILQ_FIRST(&symhead); sym != NULL; sym = next) {
		next = TAILQ_NEXT(sym, s_entry);
		if (sym->s_persist) {
			sym->s_used = 0;
			continue;
		}
		if (warn && !sym->s_used)
			conf_msg("%s: warning: macro \"%s\" not used",
			    conf->c_file, sym->s_name);
		TAILQ_REMOVE(&symhead, sym, s_entry);
		free(sym->s_name);
		free(sym->s_val);
		free(sym);
	}
}

static int
check_range(const char *what, int64_t v, int64_t min, int64_t max)
{
	if (v < min) {
		yyerror("%s %lld is too small (at least %lld)", what,
		    (long long)v, (long long)min);
		return (-1);
	}
	if (v > max) {
		yyerror("%s %lld is too large (at most %lld)", what,
		    (long long)v, (long long)max);
		return (-1);
	}
	return (0);
}

static int
set_path(char *dst, size_t len, const char *path, const char *what)
{
	if (path[0] != '/') {
		yyerror("%s \"%s\": the path must be absolute", what, path);
		return (-1);
	}
	if (strlcpy(dst, path, len) >= len) {
		yyerror("%s \"%s\": the path is too long", what, path);
		return (-1);
	}
	return (0);
}

/* Letters, digits and the characters of extra; shorter than len. */
static int
set_name(char *dst, size_t len, const char *s, const char *what,
    const char *extra)
{
	const char	*p;

	for (p = s; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) &&
		    (extra == NULL || strchr(extra, *p) == NULL)) {
			yyerror("%s \"%s\" has an invalid character", what, s);
			return (-1);
		}
	if (strlcpy(dst, s, len) >= len) {
		yyerror("%s \"%s\" is too long (at most %zu characters)",
		    what, s, len - 1);
		return (-1);
	}
	return (0);
}

static int
valid_dns(const char *s)
{
	size_t	 label = 0, total = 0;

	for (; *s != '\0'; s++, total++) {
		if (*s == '.') {
			if (label == 0)
				return (0);
			label = 0;
			continue;
		}
		if (!isalnum((unsigned char)*s) && *s != '-')
			return (0);
		if (++label > 63)
			return (0);
	}
	return (total > 0 && total <= DOMAIN_MAX && label > 0);
}

static void
lowercase(char *s)
{
	for (; *s != '\0'; s++)
		*s = tolower((unsigned char)*s);
}

static void
listen_add(const char *addr, int64_t port, int tls)
{
	struct addrinfo	 hints, *res, *ai;
	struct mp_listen *l, *o;
	char		 sport[8], host[NI_MAXHOST];
	int		 error;

	if (check_range("port", port, 1, UINT16_MAX) == -1)
		return;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	snprintf(sport, sizeof(sport), "%lld", (long long)port);
	/* "*" is the wildcard address of each family. */
	if ((strcmp(addr, "*") != 0 && !strict_addr(addr)) ||
	    (error = getaddrinfo(strcmp(addr, "*") == 0 ? NULL : addr, sport,
	    &hints, &res)) != 0) {
		yyerror("listen on \"%s\": not an IPv4 or IPv6 address", addr);
		return;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > sizeof(l->l_ss))
			continue;
		if (getnameinfo(ai->ai_addr, ai->ai_addrlen, host,
		    sizeof(host), NULL, 0, NI_NUMERICHOST) != 0)
			continue;
		TAILQ_FOREACH(o, &conf->c_listens, l_entry)
			if (strcmp(o->l_addr, host) == 0 && o->l_port == port)
				break;
		if (o != NULL) {
			yyerror("listen on %s port %lld: already configured",
			    host, (long long)port);
			continue;
		}
		if ((l = calloc(1, sizeof(*l))) == NULL) {
			yyerror("%s: %s", __func__, strerror(errno));
			break;
		}
		memcpy(&l->l_ss, ai->ai_addr, ai->ai_addrlen);
		strlcpy(l->l_addr, host, sizeof(l->l_addr));
		l->l_port = port;
		l->l_tls = tls;
		l->l_fd = -1;
		TAILQ_INSERT_TAIL(&conf->c_listens, l, l_entry);
	}
	freeaddrinfo(res);
}

static void
domain_begin(char *name)
{
	block_line = file->f_lineno;
	block_errors = block_badname = 0;
	lowercase(name);
	if (!valid_dns(name)) {
		yyerror("domain \"%s\": not a valid domain name", name);
		block_badname = block_errors = 1;
	} else if (config_domain_find(conf, name) != NULL) {
		yyerror("domain \"%s\" is defined twice", name);
		block_badname = block_errors = 1;
	}
	if ((cur_domain = calloc(1, sizeof(*cur_domain))) == NULL)
		fatal("%s", __func__);
	strlcpy(cur_domain->d_name, name, sizeof(cur_domain->d_name));
	free(name);
}

static void
domain_end(int failed)
{
	struct mp_domain	*d = cur_domain;

	cur_domain = NULL;
	/* Keep a block with errors for the duplicate check only. */
	if (failed || block_errors)
		dropped_blocks++;
	else {
		if (d->d_cert[0] == '\0')
			yyerror_line(block_line, "domain \"%s\": no "
			    "certificate", d->d_name);
		if (d->d_key[0] == '\0')
			yyerror_line(block_line, "domain \"%s\": no key",
			    d->d_name);
	}
	if (block_badname) {
		free(d);
		return;
	}
	TAILQ_INSERT_TAIL(&conf->c_domains, d, d_entry);
}

static void
app_begin(char *name)
{
	struct mp_app	*a;
	const char	*p;

	block_line = file->f_lineno;
	block_errors = block_badname = 0;
	for (p = name; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) && strchr("-._", *p) == NULL)
			break;
	if (*p != '\0' || p == name || strlen(name) >= APP_NAME_MAX) {
		yyerror("app name \"%s\" is invalid: use 1 to %d letters, "
		    "digits, '-', '.' and '_'", name, APP_NAME_MAX - 1);
		block_badname = block_errors = 1;
	} else if (config_app_find(conf, name) != NULL) {
		yyerror("app \"%s\" is defined twice", name);
		block_badname = block_errors = 1;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL)
		fatal("%s", __func__);
	strlcpy(a->a_name, name, sizeof(a->a_name));
	a->a_env = APP_ENV_PRODUCTION;
	a->a_auth = APP_AUTH_NONE;
	a->a_priority = PRIO_AUTO;
	a->a_mutable = 1;
	a->a_expiration = EXPIRATION_DEFAULT;
	a->a_ratelimit = RATE_LIMIT_DEFAULT;
	a->a_mode = APP_MODE_REGISTERED;
	cur_app = a;
	free(name);
}

static void
app_auth(int auth)
{
	if (cur_app->a_auth != APP_AUTH_NONE && cur_app->a_auth != auth)
		yyerror("app \"%s\": certificate and token authentication "
		    "exclude each other", cur_app->a_name);
	cur_app->a_auth = auth;
}

static void
app_end(int failed)
{
	struct mp_app	*a = cur_app;
	const char	*name = a->a_name;

	cur_app = NULL;
	if (failed || block_errors)
		dropped_blocks++;
	else {
		if (a->a_topic[0] == '\0')
			yyerror_line(block_line, "app \"%s\": no topic",
			    name);
		if (a->a_auth == APP_AUTH_NONE)
			yyerror_line(block_line, "app \"%s\": no "
			    "authentication: use \"certificate PATH key "
			    "PATH\" or \"token key PATH key-id ID team-id "
			    "ID\"", name);
	}
	if (a->a_host[0] == '\0')
		strlcpy(a->a_host, a->a_env == APP_ENV_SANDBOX ?
		    CONF_APNS_HOST_SANDBOX : CONF_APNS_HOST_PRODUCTION,
		    sizeof(a->a_host));
	if (a->a_port == 0)
		a->a_port = CONF_APNS_PORT;
	if (a->a_cafile[0] == '\0')
		strlcpy(a->a_cafile, tls_default_ca_cert_file(),
		    sizeof(a->a_cafile));
	if (block_badname) {
		free(a);
		return;
	}
	TAILQ_INSERT_TAIL(&conf->c_apps, a, a_entry);
}

/* Dotted quads only: getaddrinfo(3) would take "10.1" as well. */
static int
strict_addr(const char *addr)
{
	struct in6_addr	 in6;
	struct in_addr	 in;

	return (inet_pton(AF_INET, addr, &in) == 1 ||
	    inet_pton(AF_INET6, addr, &in6) == 1);
}

static int
numeric_addr(const char *addr, char *out, size_t len)
{
	struct addrinfo	 hints, *res;
	int		 error;

	if (!strict_addr(addr))
		return (-1);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST;
	if (getaddrinfo(addr, NULL, &hints, &res) != 0)
		return (-1);
	error = getnameinfo(res->ai_addr, res->ai_addrlen, out, len, NULL, 0,
	    NI_NUMERICHOST);
	freeaddrinfo(res);
	return (error == 0 ? 0 : -1);
}

static void
route_add(char *domain, char *addr, int64_t port)
{
	struct mp_route	*r;
	char		 host[NI_MAXHOST];
	int		 bad = 0;

	lowercase(domain);
	if (!valid_dns(domain)) {
		yyerror("route \"%s\": not a valid domain name", domain);
		bad = 1;
	} else
		TAILQ_FOREACH(r, &conf->c_routes, r_entry)
			if (strcmp(r->r_domain, domain) == 0) {
				yyerror("route \"%s\" is defined twice",
				    domain);
				bad = 1;
				break;
			}
	if (numeric_addr(addr, host, sizeof(host)) == -1 ||
	    strlen(host) >= sizeof(r->r_addr)) {
		yyerror("route \"%s\" to \"%s\": not an IPv4 or IPv6 address",
		    domain, addr);
		bad = 1;
	}
	if (check_range("port", port, 1, UINT16_MAX) == -1)
		bad = 1;
	if (!bad) {
		if ((r = calloc(1, sizeof(*r))) == NULL)
			fatal("%s", __func__);
		strlcpy(r->r_domain, domain, sizeof(r->r_domain));
		strlcpy(r->r_addr, host, sizeof(r->r_addr));
		r->r_port = port;
		TAILQ_INSERT_TAIL(&conf->c_routes, r, r_entry);
	}
	free(domain);
	free(addr);
}

/* Checks that need the whole file; they have no line of their own. */
static void
conf_check(const char *name)
{
	struct mp_app		*a, *dflt = NULL;
	struct mp_listen	*l;
	int			 napps = 0;

	TAILQ_FOREACH(a, &conf->c_apps, a_entry) {
		napps++;
		if (a->a_default)
			dflt = a;
	}
	if (dropped_blocks == 0) {
		if (TAILQ_EMPTY(&conf->c_domains)) {
			conf_msg("%s: no domain is configured", name);
			errors++;
		}
		if (napps == 0) {
			conf_msg("%s: no app is configured", name);
			errors++;
		}
		if (napps > 1 && dflt == NULL) {
			conf_msg("%s: %d apps and none is marked "
			    "\"default\": a push without pushModule would "
			    "be ambiguous", name, napps);
			errors++;
		}
	}
	if (napps == 1)
		TAILQ_FIRST(&conf->c_apps)->a_default = 1;
	if (conf->c_conn_per_peer > conf->c_conn_max) {
		conf_msg("%s: max connections per peer %d exceeds "
		    "max connections %d", name, conf->c_conn_per_peer,
		    conf->c_conn_max);
		errors++;
	}
	if (TAILQ_EMPTY(&conf->c_listens)) {
		if ((l = calloc(1, sizeof(*l))) == NULL)
			fatal("%s", __func__);
		((struct sockaddr_in *)&l->l_ss)->sin_family = AF_INET;
		((struct sockaddr_in *)&l->l_ss)->sin_port =
		    htons(CONF_LISTEN_PORT);
		strlcpy(l->l_addr, "0.0.0.0", sizeof(l->l_addr));
		l->l_port = CONF_LISTEN_PORT;
		l->l_fd = -1;
		TAILQ_INSERT_TAIL(&conf->c_listens, l, l_entry);
	}
}

struct mp_conf *
parse_config(const char *filename, int opt_verbose)
{
	struct mp_conf	*c;

	if ((conf = config_new_empty()) == NULL) {
		conf_msg("%s: %s", __func__, strerror(errno));
		return (NULL);
	}
	errors = dropped_blocks = lexerr = 0;
	verbose = opt_verbose;
	cur_domain = NULL;
	cur_app = NULL;
	if (strlcpy(conf->c_file, filename, sizeof(conf->c_file)) >=
	    sizeof(conf->c_file)) {
		conf_msg("%s: file name too long", filename);
		config_free(conf);
		return (NULL);
	}
	file = NULL;
	if ((file = pushfile(filename, 0)) == NULL) {
		conf_msg("%s: %s", filename, strerror(errno));
		config_free(conf);
		return (NULL);
	}
	topfile = file;

	yyparse();
	/* An error in an included file may leave it open. */
	while (file != NULL)
		popfile();
	conf_check(filename);
	symclear(verbose && errors == 0);

	c = conf;
	conf = NULL;
	if (errors) {
		config_free(c);
		return (NULL);
	}
	return (c);
}
