/*
 * Prometheus text exposition (format 0.0.4): a growable buffer with helpers
 * that write HELP/TYPE headers and samples, and a store that holds the last
 * rendered page for the HTTP server, so a scrape costs one copy.
 */
#ifndef ISPMON_METRICS_H
#define ISPMON_METRICS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mbuf {
	char *p;
	size_t len, cap;
	int err; /* sticky -ENOMEM: check once at the end */
};

void mbuf_init(struct mbuf *b);
void mbuf_free(struct mbuf *b);
void mbuf_printf(struct mbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Append s as an escaped label value (\\, \" and \n escaped). */
void mbuf_label_value(struct mbuf *b, const char *s);

/* "# HELP name help\n# TYPE name type\n" */
void prom_header(struct mbuf *b, const char *name, const char *type,
		 const char *help);
/* name{labels} value — labels is the preformatted inside of {} or NULL. */
void prom_u64(struct mbuf *b, const char *name, const char *labels, uint64_t v);
void prom_f64(struct mbuf *b, const char *name, const char *labels, double v);

struct metrics_store {
	pthread_mutex_t lock;
	char *text;
	size_t len;
	bool served; /* the current page was copied out at least once */
};

int metrics_store_init(struct metrics_store *s);
void metrics_store_destroy(struct metrics_store *s);
/* Take over b's text as the current page. */
void metrics_store_publish(struct metrics_store *s, struct mbuf *b);
/* A malloc'ed copy of the current page (NULL, -ENOMEM or -ENODATA). */
int metrics_store_copy(struct metrics_store *s, char **text, size_t *len);
/* Whether the current page has been copied out (scraped) since it was
 * published: per-scrape figures restart after a served page. */
bool metrics_store_served(struct metrics_store *s);

#endif
