/*
 * A test tool: fills or reads a registration database through the
 * registry API while no daemon has it open.
 *	regtool DIR register APP NODE TOKEN DOMAIN	prints the secret
 *	regtool DIR get NODE				prints the record
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "monalpushd.h"

int
main(int argc, char *argv[])
{
	struct registry		*reg;
	struct reg_record	 rr;
	uint8_t			 secret[SECRET_LEN];
	char			 err[REG_ERRMSG_MAX];
	int			 r = REG_OK;
	size_t			 i;

	log_init(1, 0);
	if (argc < 4) {
		fprintf(stderr, "usage: regtool dir register|get ...\n");
		return (2);
	}
	if ((reg = registry_open(argv[1], NULL, NULL, err, sizeof(err))) ==
	    NULL) {
		fprintf(stderr, "regtool: %s\n", err);
		return (1);
	}
	if (strcmp(argv[2], "register") == 0 && argc == 7) {
		r = registry_register(reg, REG_TYPE_APNS, argv[3], argv[4],
		    argv[5], argv[6], time(NULL), secret);
		if (r == REG_OK) {
			for (i = 0; i < SECRET_LEN; i++)
				printf("%02x", secret[i]);
			printf("\n");
		}
	} else if (strcmp(argv[2], "get") == 0 && argc == 4) {
		r = registry_get(reg, argv[3], &rr);
		if (r == REG_OK)
			printf("node=%s app=%s type=%s token=%s domain=%s "
			    "registered=%lld renewed=%lld last_success=%lld "
			    "last_error=%lld\n", rr.rr_node, rr.rr_app,
			    rr.rr_type, rr.rr_token, rr.rr_domain,
			    (long long)rr.rr_registered,
			    (long long)rr.rr_renewed,
			    (long long)rr.rr_last_success,
			    (long long)rr.rr_last_error);
	} else {
		fprintf(stderr, "regtool: bad arguments\n");
		r = REG_EDB;
	}
	if (r != REG_OK)
		fprintf(stderr, "regtool: %s\n", registry_strerror(r));
	registry_close(reg);
	return (r == REG_OK ? 0 : 1);
}
