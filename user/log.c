#include "log.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* The one piece of process-wide state in ispmon: the log threshold, set once
 * at start-up, read by every module. */
static enum log_level threshold = LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_parse_level(const char *s, enum log_level *out)
{
	for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (!strcasecmp(s, level_names[i])) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	if (!strcasecmp(s, "warning")) {
		*out = LOG_WARN;
		return 0;
	}
	return -1;
}

void log_set_level(enum log_level lvl) { threshold = lvl; }
enum log_level log_get_level(void) { return threshold; }

const char *log_quote(char *buf, unsigned long size, const char *s)
{
	unsigned long n = 0;

	if (size < 3) {
		if (size)
			buf[0] = 0;
		return buf;
	}
	buf[n++] = '"';
	for (; *s && n + 3 < size; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			buf[n++] = '\\';
			buf[n++] = (char)c;
		} else if (c == '\n' || c == '\t' || c == '\r') {
			buf[n++] = ' ';
		} else if (c >= 0x20) {
			buf[n++] = (char)c;
		}
	}
	/* Drop a trailing space left by libbpf's newline. */
	while (n > 1 && buf[n - 1] == ' ')
		n--;
	buf[n++] = '"';
	buf[n] = 0;
	return buf;
}

void log_vmsg(enum log_level lvl, const char *msg, const char *kvfmt, va_list ap)
{
	char line[2048], q[1024];
	struct timespec ts;
	struct tm tm;
	int n;

	if (lvl < threshold)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line),
		     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s msg=%s",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, level_names[lvl],
		     log_quote(q, sizeof(q), msg));
	if (n < 0)
		return;
	if (kvfmt && *kvfmt && (size_t)n < sizeof(line) - 2) {
		line[n++] = ' ';
		int m = vsnprintf(line + n, sizeof(line) - (size_t)n, kvfmt, ap);
		if (m > 0)
			n += m;
	}
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per line so lines from threads never interleave. */
	fwrite(line, 1, (size_t)n, stderr);
}

void log_msg(enum log_level lvl, const char *msg, const char *kvfmt, ...)
{
	va_list ap;

	va_start(ap, kvfmt);
	log_vmsg(lvl, msg, kvfmt, ap);
	va_end(ap);
}
