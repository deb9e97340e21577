#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mbuf_init(struct mbuf *b) { memset(b, 0, sizeof(*b)); }

void mbuf_free(struct mbuf *b)
{
	free(b->p);
	mbuf_init(b);
}

static int mbuf_reserve(struct mbuf *b, size_t extra)
{
	size_t cap;
	char *p;

	if (b->err)
		return b->err;
	if (b->len + extra + 1 <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 4096;
	while (cap < b->len + extra + 1)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p)
		return b->err = -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

void mbuf_printf(struct mbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (mbuf_reserve(b, 256))
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->err = -EINVAL;
		return;
	}
	if ((size_t)n >= b->cap - b->len) {
		if (mbuf_reserve(b, (size_t)n))
			return;
		va_start(ap, fmt);
		vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

void mbuf_label_value(struct mbuf *b, const char *s)
{
	size_t n = strlen(s);

	if (mbuf_reserve(b, 2 * n))
		return;
	for (; *s; s++) {
		if (*s == '\\' || *s == '"') {
			b->p[b->len++] = '\\';
			b->p[b->len++] = *s;
		} else if (*s == '\n') {
			b->p[b->len++] = '\\';
			b->p[b->len++] = 'n';
		} else {
			b->p[b->len++] = *s;
		}
	}
	b->p[b->len] = 0;
}

void prom_header(struct mbuf *b, const char *name, const char *type,
		 const char *help)
{
	mbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void prom_u64(struct mbuf *b, const char *name, const char *labels, uint64_t v)
{
	if (labels && *labels)
		mbuf_printf(b, "%s{%s} %llu\n", name, labels, (unsigned long long)v);
	else
		mbuf_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

void prom_f64(struct mbuf *b, const char *name, const char *labels, double v)
{
	char num[64];

	if (isnan(v))
		snprintf(num, sizeof(num), "NaN");
	else if (isinf(v))
		snprintf(num, sizeof(num), v > 0 ? "+Inf" : "-Inf");
	else
		snprintf(num, sizeof(num), "%.17g", v);
	if (labels && *labels)
		mbuf_printf(b, "%s{%s} %s\n", name, labels, num);
	else
		mbuf_printf(b, "%s %s\n", name, num);
}

int metrics_store_init(struct metrics_store *s)
{
	memset(s, 0, sizeof(*s));
	return -pthread_mutex_init(&s->lock, NULL);
}

void metrics_store_destroy(struct metrics_store *s)
{
	pthread_mutex_destroy(&s->lock);
	free(s->text);
	s->text = NULL;
}

void metrics_store_publish(struct metrics_store *s, struct mbuf *b)
{
	char *old;

	pthread_mutex_lock(&s->lock);
	old = s->text;
	s->text = b->p;
	s->len = b->len;
	s->served = false;
	pthread_mutex_unlock(&s->lock);
	free(old);
	mbuf_init(b);
}

int metrics_store_copy(struct metrics_store *s, char **text, size_t *len)
{
	int ret = 0;

	pthread_mutex_lock(&s->lock);
	if (!s->text) {
		ret = -ENODATA;
	} else {
		*text = malloc(s->len + 1);
		if (!*text) {
			ret = -ENOMEM;
		} else {
			memcpy(*text, s->text, s->len + 1);
			*len = s->len;
			s->served = true;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

bool metrics_store_served(struct metrics_store *s)
{
	bool served;

	pthread_mutex_lock(&s->lock);
	served = s->served;
	pthread_mutex_unlock(&s->lock);
	return served;
}
