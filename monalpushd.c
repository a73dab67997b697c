/*
 * monalpushd: main.  Parses the command line and the configuration,
 * then forks the children before any secret or database is opened, so
 * that no child inherits them.
 */

#include <sys/types.h>

#include <err.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "monalpushd.h"

extern char	**environ;

static void __attribute__((noreturn))
usage(void)
{
	extern char	*__progname;

	fprintf(stderr, "usage: %s [-dnv] [-D macro=value] [-f file]\n",
	    __progname);
	exit(1);
}

int
main(int argc, char *argv[])
{
	static struct privsep	 ps;
	const char		*conffile = CONF_FILE;
	int			 ch, debug = 0, verbose = 0, noaction = 0;

	setproctitle_init(argc, argv, environ);
	log_init(1, 0);
	log_procinit("parent");

	while ((ch = getopt(argc, argv, "dD:f:nv")) != -1) {
		switch (ch) {
		case 'd':
			debug = 1;
			break;
		case 'D':
			if (cmdline_symset(optarg) < 0)
				errx(1, "could not parse macro definition %s",
				    optarg);
			break;
		case 'f':
			conffile = optarg;
			break;
		case 'n':
			noaction = 1;
			break;
		case 'v':
			verbose++;
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	if (argc > 0)
		usage();
	log_init(1, verbose);

	if ((ps.ps_conf = parse_config(conffile, verbose)) == NULL)
		exit(1);
	if (noaction) {
		if (config_load_keys(ps.ps_conf) == -1)
			exit(1);
		if (verbose) {
			config_print(stdout, ps.ps_conf);
			fprintf(stderr, "configuration OK\n");
		} else
			printf("configuration OK\n");
		exit(0);
	}

	if (geteuid() != 0)
		errx(1, "need root privileges");
	if ((ps.ps_pw = getpwnam(ps.ps_conf->c_user)) == NULL)
		errx(1, "unknown user %s", ps.ps_conf->c_user);
	/* Copy: getpwnam's buffer is not ours to keep. */
	{
		struct passwd	*pw;

		if ((pw = calloc(1, sizeof(*pw))) == NULL)
			err(1, NULL);
		*pw = *ps.ps_pw;
		if ((pw->pw_name = strdup(ps.ps_pw->pw_name)) == NULL)
			err(1, NULL);
		pw->pw_passwd = pw->pw_gecos = pw->pw_dir = pw->pw_shell = "";
		ps.ps_pw = pw;
	}

	ps.ps_debug = debug;
	ps.ps_verbose = verbose;
	ps.ps_conffile = conffile;
	ps.ps_proc = PROC_PARENT;
	mp_ps = &ps;
	log_init(debug, verbose);
	if (!debug && daemon(0, 0) == -1)
		err(1, "daemon");
	/* From now on a reload's errors must reach the log. */
	parse_errors_to_log(1);

	proc_fork_children(&ps);
	parent_main(&ps);
	return (0);
}
