/* One "ok - ..." / "not ok - ..." line per check, counted for the closing
 * "N passed, N failed" line; shared by the userspace unit tests. */
#ifndef ISPMON_TEST_TAP_H
#define ISPMON_TEST_TAP_H

#include <stdarg.h>
#include <stdio.h>

static int passed, failed;

static void check(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(int cond, const char *fmt, ...)
{
	va_list ap;

	printf(cond ? "ok - " : "not ok - ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (cond)
		passed++;
	else
		failed++;
}

#endif
