/* Result lines for the BPF unit tests: a check with a name and, when it
 * fails, a detail built up with appendf(). */
#ifndef ISPMON_TEST_RESULT_H
#define ISPMON_TEST_RESULT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static int n_pass, n_fail;

static void check(bool ok, const char *name, const char *detail)
{
	if (ok) {
		n_pass++;
		printf("ok - %s\n", name);
	} else {
		n_fail++;
		printf("not ok - %s (%s)\n", name, detail && *detail ? detail : "failed");
	}
	fflush(stdout);
}

__attribute__((format(printf, 3, 4)))
static void appendf(char *dst, size_t size, const char *fmt, ...)
{
	size_t used = strlen(dst);
	va_list ap;

	if (used + 1 >= size)
		return;
	va_start(ap, fmt);
	vsnprintf(dst + used, size - used, fmt, ap);
	va_end(ap);
}

#endif
