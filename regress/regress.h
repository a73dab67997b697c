/*
 * Tiny harness for the unit tests: each check prints one PASS or FAIL
 * line, which regress/run.sh counts.
 */
#ifndef REGRESS_H
#define REGRESS_H

#include <stdio.h>

static int regress_failed;

#define CHECK(cond, ...) do {						\
	if (cond) {							\
		printf("PASS: ");					\
	} else {							\
		printf("FAIL: %s:%d: ", __FILE__, __LINE__);		\
		regress_failed++;					\
	}								\
	printf(__VA_ARGS__);						\
	printf("\n");							\
	fflush(stdout);							\
} while (0)

#define REGRESS_EXIT()	return (regress_failed ? 1 : 0)

#endif
