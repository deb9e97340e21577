/* logfmt lines on stderr: ts=... level=... msg="..." key=value ... */
#ifndef ISPMON_LOG_H
#define ISPMON_LOG_H

#include <stdarg.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

int log_parse_level(const char *s, enum log_level *out);
void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);

/*
 * msg is quoted and escaped; kvfmt is a printf format for the trailing
 * key=value pairs (may be NULL). Values that may hold spaces or quotes go
 * through log_quote() first.
 */
void log_msg(enum log_level lvl, const char *msg, const char *kvfmt, ...)
	__attribute__((format(printf, 3, 4)));
void log_vmsg(enum log_level lvl, const char *msg, const char *kvfmt,
	      va_list ap) __attribute__((format(printf, 3, 0)));

/* Write s as a logfmt-safe quoted value into buf; returns buf. */
const char *log_quote(char *buf, unsigned long size, const char *s);

#define log_debug(msg, ...) log_msg(LOG_DEBUG, msg, __VA_ARGS__)
#define log_info(msg, ...) log_msg(LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...) log_msg(LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_msg(LOG_ERROR, msg, __VA_ARGS__)

#endif
