/*
 * monalpushctl: the command line grammar.  Keywords match by unique
 * prefix; see parser.c for the token tables.
 */

#ifndef MONALPUSHCTL_PARSER_H
#define MONALPUSHCTL_PARSER_H

#include "monalpushd.h"

enum actions {
	NONE,
	SHOW_STATUS,
	SHOW_REGS,
	SHOW_NODE,
	SHOW_PEERS,
	SHOW_APNS,
	SHOW_STATS,
	UNREGISTER,
	RELOAD,
	LOG_VERBOSE,
	LOG_BRIEF,
	SAR_REQUEST,
	SAR_EXPORT,
	SAR_ERASE
};

struct parse_result {
	enum actions	 action;
	char		 arg[JID_MAX + 1];	/* NODE or JID, "" when none */
};

struct parse_result	*parse(int, char *[]);

#endif /* MONALPUSHCTL_PARSER_H */
