/* The web endpoint: /metrics, pages of a provider (the status page) and a
 * landing page, served by libmicrohttpd. */
#ifndef ISPMON_HTTP_H
#define ISPMON_HTTP_H

#include "config.h"
#include "metrics.h"
#include "webconfig.h"

struct http_server;

/* A page some other module renders: the body is malloc'ed, freed by http. */
struct http_page {
	char *body;
	size_t len;
	const char *type; /* Content-Type, static */
};

/*
 * Pages besides /metrics: get() answers a URL path with 0 and the page,
 * -ENOENT for a path it does not serve, -ENODATA while it has nothing yet
 * (503) or another negative errno (500). Called from the server's thread.
 */
struct http_provider {
	int (*get)(void *ctx, const char *url, struct http_page *page);
	void *ctx;
};

/*
 * Bind and listen on addr, then serve from store in libmicrohttpd's own
 * thread. Binding happens here, before anything is attached, so a busy port
 * fails early. web (may be NULL): TLS and basic auth, used until
 * http_server_stop. Returns 0 or a negative errno.
 */
int http_server_start(const struct listen_addr *addr, struct metrics_store *store,
		      struct web_config *web, struct http_server **out);
/* Serve p's pages from now on (before the landing page at /); p must outlive
 * the server. */
void http_server_set_provider(struct http_server *srv, const struct http_provider *p);
void http_server_stop(struct http_server *srv);

#endif
