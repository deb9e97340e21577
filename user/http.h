/* The web endpoint: /metrics and a landing page, served by libmicrohttpd. */
#ifndef ISPMON_HTTP_H
#define ISPMON_HTTP_H

#include "config.h"
#include "metrics.h"
#include "webconfig.h"

struct http_server;

/*
 * Bind and listen on addr, then serve from store in libmicrohttpd's own
 * thread. Binding happens here, before anything is attached, so a busy port
 * fails early. web (may be NULL): TLS and basic auth, used until
 * http_server_stop. Returns 0 or a negative errno.
 */
int http_server_start(const struct listen_addr *addr, struct metrics_store *store,
		      struct web_config *web, struct http_server **out);
void http_server_stop(struct http_server *srv);

#endif
