#include "http.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "webconfig.h"

/* Bounds that keep slow or stuck clients from tying the server up. */
#define CONN_LIMIT 256
#define CONN_TIMEOUT_S 10
#define CONN_PER_IP 64 /* a quarter: one host cannot take every slot */

#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct http_server {
	struct MHD_Daemon *mhd;
	struct metrics_store *store;
	struct web_config *web; /* TLS and basic auth, or NULL */
	_Atomic(const struct http_provider *) provider; /* set while serving */
	int fd;
};

static const char landing[] =
	"<!DOCTYPE html>\n"
	"<html lang=\"en\"><head><meta charset=\"utf-8\">"
	"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
	"<title>ispmon</title></head>\n"
	"<body style=\"font-family:sans-serif;max-width:40em;margin:2em auto\">"
	"<h1>ispmon</h1>"
	"<p>Passive monitor of this router's internet line.</p>"
	"<p><a href=\"/metrics\">Metrics</a> (Prometheus text format)</p>"
	"</body></html>\n";

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status,
			     const char *type, void *body, size_t len,
			     enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(len, body, mode);
	if (!resp) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result text_reply(struct MHD_Connection *conn, unsigned status,
				  const char *msg)
{
	return reply(conn, status, "text/plain; charset=utf-8", (void *)msg,
		     strlen(msg), MHD_RESPMEM_PERSISTENT);
}

/* Basic auth from --web-config: every route, or none. */
static bool authorized(struct http_server *srv, struct MHD_Connection *conn)
{
	char *pass = NULL, *user;
	bool ok;

	if (!srv->web || !srv->web->auth)
		return true;
	user = MHD_basic_auth_get_username_password(conn, &pass);
	ok = webconfig_check_user(srv->web, user, pass);
	if (pass) {
		explicit_bzero(pass, strlen(pass));
		MHD_free(pass);
	}
	if (user)
		MHD_free(user);
	return ok;
}

static enum MHD_Result unauthorized(struct MHD_Connection *conn)
{
	static const char msg[] = "unauthorized\n";
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(sizeof(msg) - 1, (void *)msg,
					       MHD_RESPMEM_PERSISTENT);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
	/* 401 with WWW-Authenticate: Basic realm="ispmon" */
	ret = MHD_queue_basic_auth_fail_response(conn, "ispmon", resp);
	MHD_destroy_response(resp);
	return ret;
}

/* The signature is libmicrohttpd's. */
static enum MHD_Result handle(void *cls, struct MHD_Connection *conn,
			      const char *url, const char *method,
			      const char *version, const char *upload_data,
			      // cppcheck-suppress constParameter
			      size_t *upload_data_size, void **con_cls)
{
	struct http_server *srv = cls;
	const struct http_provider *prov;
	bool body = *upload_data_size != 0;

	/*
	 * The first call has the headers only. libmicrohttpd takes an answer
	 * given then as "early" and closes the connection after it: no
	 * keep-alive for any scrape. So a request without a body is answered
	 * on the second call; one with a body (none is wanted) is refused at
	 * once, unread, and its connection closed.
	 */
	if (!*con_cls) {
		const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
							     MHD_HTTP_HEADER_CONTENT_LENGTH);

		*con_cls = srv;
		body = (cl && strcmp(cl, "0")) ||
		       MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						   MHD_HTTP_HEADER_TRANSFER_ENCODING);
		if (!body)
			return MHD_YES;
	}
	if (!authorized(srv, conn))
		return unauthorized(conn);
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return text_reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
	/* Requests carry no body we want: refuse one rather than buffer it. */
	if (body)
		return text_reply(conn, MHD_HTTP_CONTENT_TOO_LARGE, "no request body expected\n");

	if (!strcmp(url, "/metrics")) {
		char *text;
		size_t len;
		int err = metrics_store_copy(srv->store, &text, &len);

		if (err == -ENODATA)
			return text_reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
					  "no data collected yet\n");
		if (err)
			return text_reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
					  "out of memory\n");
		return reply(conn, MHD_HTTP_OK, PROM_CONTENT_TYPE, text, len,
			     MHD_RESPMEM_MUST_FREE);
	}
	prov = atomic_load(&srv->provider);
	if (prov) {
		struct http_page page;
		int err = prov->get(prov->ctx, url, &page);

		if (!err)
			return reply(conn, MHD_HTTP_OK, page.type, page.body, page.len,
				     MHD_RESPMEM_MUST_FREE);
		if (err == -ENODATA)
			return text_reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
					  "no data collected yet\n");
		if (err != -ENOENT)
			return text_reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
	}
	if (!strcmp(url, "/"))
		return reply(conn, MHD_HTTP_OK, "text/html; charset=utf-8",
			     (void *)landing, sizeof(landing) - 1, MHD_RESPMEM_PERSISTENT);
	return text_reply(conn, MHD_HTTP_NOT_FOUND, "not found\n");
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512], q[600];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_debug("libmicrohttpd", "detail=%s", log_quote(q, sizeof(q), msg));
}

static int listen_socket(const struct listen_addr *addr)
{
	const struct sockaddr *sa = (const struct sockaddr *)&addr->ss;
	struct sockaddr_in any4 = {.sin_family = AF_INET};
	socklen_t len = addr->len;
	int one = 1, zero = 0, fd;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 && addr->any && errno == EAFNOSUPPORT) {
		/* No IPv6 on this host: all IPv4 addresses instead. */
		any4.sin_port = ((const struct sockaddr_in6 *)sa)->sin6_port;
		sa = (const struct sockaddr *)&any4;
		len = sizeof(any4);
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	}
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, addr->any ? &zero : &one,
			   sizeof(int));
	if (bind(fd, sa, len) || listen(fd, SOMAXCONN)) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int http_server_start(const struct listen_addr *addr, struct metrics_store *store,
		      struct web_config *web, struct http_server **out)
{
	unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
	struct MHD_OptionItem tls[3] = {{MHD_OPTION_END, 0, NULL}};
	struct http_server *srv;
	int fd;

	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	fd = listen_socket(addr);
	if (fd < 0) {
		free(srv);
		return fd;
	}
	srv->fd = fd;
	srv->store = store;
	srv->web = web;
	if (web && web->tls) {
		flags |= MHD_USE_TLS;
		tls[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, web->cert_pem};
		tls[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, web->key_pem};
	}
	/* One internal epoll thread: non-blocking I/O, so a slow client costs
	 * a connection slot, not a thread. */
	srv->mhd = MHD_start_daemon(flags, 0, NULL, NULL, handle, srv,
				    MHD_OPTION_LISTEN_SOCKET, fd,
				    MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONN_LIMIT,
				    MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)CONN_PER_IP,
				    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONN_TIMEOUT_S,
				    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				    MHD_OPTION_ARRAY, tls,
				    MHD_OPTION_END);
	if (!srv->mhd) {
		close(fd);
		free(srv);
		return -EIO;
	}
	*out = srv;
	return 0;
}

void http_server_set_provider(struct http_server *srv, const struct http_provider *p)
{
	atomic_store(&srv->provider, p);
}

void http_server_stop(struct http_server *srv)
{
	if (!srv)
		return;
	/* MHD_stop_daemon closes the listen socket it was given. */
	MHD_stop_daemon(srv->mhd);
	free(srv);
}
