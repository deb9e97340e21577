/*
 * libFuzzer: HTTP request handling. ispmon's own web server (user/http.c
 * on libmicrohttpd, its internal thread, the bounds ispmon sets) runs in
 * this process on 127.0.0.1 (the first free port from 18090; run it in a
 * network namespace of its own); each input is sent as the raw bytes of
 * one connection ("\r\n\r\n" added when it has none), then the write
 * side is closed and the answer read.
 *   - whatever it answers starts with an HTTP/1.x status line, and an
 *     answer that begins ends within 3 s (a whole Content-Length body, or
 *     the server closes)
 *   - every 256 inputs, a plain GET /metrics still gets the page (the
 *     server survived and kept serving)
 * Inputs of odd length go to a second server with basic auth on (a
 * --web-config with user "fuzz", password "pw"):
 *   - it answers 200 only to an input with a base64 run in it that
 *     decodes to that user's credentials "fuzz:pw" (decoded as leniently as
 *     a server may: "ZnV6ejpwdx==" is the same): no way around the check
 *   - every 256 inputs, it still refuses a GET without credentials (401
 *     with WWW-Authenticate) and serves one with them
 * Crashes and sanitizer reports in ispmon's handler (and anything it
 * hands libmicrohttpd) are caught as usual.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "webconfig.h"

/* bcrypt (cost 4) of "pw"; "fuzz:pw" in base64 */
#define AUTH_HASH "$2b$04$5zUh4EeJcFFw13xG44ecKeUp7PSIujUU/7.ihup1LGcd2aeW5j/tm"
#define AUTH_TOKEN "ZnV6ejpwdw=="

#define PAGE "# HELP ispmon_build_info fuzz\n# TYPE ispmon_build_info gauge\n" \
	     "ispmon_build_info{version=\"fuzz\"} 1\n"

static struct metrics_store store;
static struct http_server *srv, *asrv;
static struct web_config *web;
static struct sockaddr_in addr, aaddr;
static unsigned long inputs;

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_http: %s\n", what);
	abort();
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct listen_addr la;
	struct mbuf b;
	char text[32];

	log_set_level(LOG_ERROR);
	if (metrics_store_init(&store))
		fail("metrics_store_init");
	mbuf_init(&b);
	mbuf_printf(&b, "%s", PAGE);
	for (int i = 0; i < 200; i++)
		mbuf_printf(&b, "ispmon_fuzz_filler{n=\"%d\"} %d\n", i, i);
	metrics_store_publish(&store, &b);
	for (int port = 18090; port < 18190 && !srv; port++) {
		snprintf(text, sizeof(text), "127.0.0.1:%d", port);
		if (parse_listen(text, &la))
			fail("parse_listen");
		if (!http_server_start(&la, &store, NULL, &srv))
			addr = *(struct sockaddr_in *)&la.ss;
	}
	if (!srv)
		fail("no free port in 18090..18189 for the server");
	{
		char path[] = "/tmp/fuzz_http_web.XXXXXX", err[256];
		int fd = mkstemp(path);
		static const char cfg[] = "basic_auth_users:\n  fuzz: " AUTH_HASH "\n";

		if (fd < 0 || write(fd, cfg, sizeof(cfg) - 1) != (ssize_t)(sizeof(cfg) - 1))
			fail("write the web config");
		close(fd);
		if (webconfig_load(path, &web, err, sizeof(err)))
			fail(err);
		unlink(path);
	}
	for (int port = ntohs(addr.sin_port) + 1; port < 18190 && !asrv; port++) {
		snprintf(text, sizeof(text), "127.0.0.1:%d", port);
		if (parse_listen(text, &la))
			fail("parse_listen");
		if (!http_server_start(&la, &store, web, &asrv))
			aaddr = *(struct sockaddr_in *)&la.ss;
	}
	if (!asrv)
		fail("no free port for the server with basic auth");
	fprintf(stderr, "fuzz_http: serving on 127.0.0.1:%u, with basic auth on :%u\n",
		ntohs(addr.sin_port), ntohs(aaddr.sin_port));
	return 0;
}

/* Close with a reset: the server frees the slot at once (a plain FIN in
 * the middle of a request leaves it waiting for its 10 s timeout). */
static void abort_close(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/* Length of a whole response in out[0..got), or 0 if not all there yet. */
static size_t response_len(const char *out, size_t got)
{
	const char *end = memmem(out, got, "\r\n\r\n", 4), *cl;
	size_t head;

	if (!end)
		return 0;
	head = (size_t)(end - out) + 4;
	cl = memmem(out, head, "\r\nContent-Length: ", 18);
	if (!cl)
		return 0; /* no length: read to EOF */
	return head + strtoul(cl + 18, NULL, 10) <= got ? head + strtoul(cl + 18, NULL, 10) : 0;
}

/*
 * Send req (the server may cut it short), close our write side, then read
 * the answer: up to a whole response (Content-Length) or EOF. Nothing in
 * 20 ms: the request is incomplete (the server waits for more), and the
 * connection is reset. Returns the bytes read into out (up to
 * cap - 1, NUL-terminated), or -1 if an answer began but did not end
 * within 3 s.
 */
static ssize_t exchange(const struct sockaddr_in *to, const uint8_t *req, size_t n, char *out,
			size_t cap)
{
	double start = now_s();
	size_t got = 0, sent = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		fail("socket");
	if (connect(fd, (const struct sockaddr *)to, sizeof(*to)))
		fail("connect: the server is gone");
	while (sent < n && now_s() < start + 1) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		ssize_t w;

		if (poll(&p, 1, 100) <= 0)
			continue;
		w = send(fd, req + sent, n - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (w <= 0)
			break; /* the server closed early: fine */
		sent += (size_t)w;
	}
	shutdown(fd, SHUT_WR);
	start = now_s();
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		double left = (got ? 3.0 : 0.02) - (now_s() - start);
		ssize_t r;

		if (left <= 0) {
			abort_close(fd);
			/* A complete header block is an answer: a kept-alive
			 * connection after a HEAD (Content-Length, no body) or
			 * before a pipelined request stays open, it is not stuck. */
			if (got && !memmem(out, got, "\r\n\r\n", 4))
				return -1;
			if (got) {
				out[got] = 0;
				return (ssize_t)got;
			}
			out[0] = 0;
			return 0;
		}
		if (poll(&p, 1, (int)(left * 1000) + 1) <= 0)
			continue;
		if (got + 1 >= cap) {
			char sink[4096];

			r = recv(fd, sink, sizeof(sink), 0);
		} else {
			r = recv(fd, out + got, cap - 1 - got, 0);
			if (r > 0)
				got += (size_t)r;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || (got && response_len(out, got)))
			break;
	}
	out[got] = 0;
	abort_close(fd);
	return (ssize_t)got;
}

static int b64val(uint8_t c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Whether some maximal base64 run in data decodes to "fuzz:pw" (bits
 * past the last whole byte ignored). */
static bool has_credentials(const uint8_t *data, size_t size)
{
	for (size_t i = 0; i < size; i++) {
		uint8_t out[8];
		size_t n = 0, j;
		unsigned acc = 0, bits = 0;

		if (b64val(data[i]) < 0 || (i && b64val(data[i - 1]) >= 0))
			continue;
		for (j = i; j < size && b64val(data[j]) >= 0 && n <= 7; j++) {
			acc = acc << 6 | (unsigned)b64val(data[j]);
			bits += 6;
			if (bits >= 8) {
				bits -= 8;
				out[n++] = (uint8_t)(acc >> bits);
			}
		}
		if (n == 7 && !memcmp(out, "fuzz:pw", 7) && (j == size || b64val(data[j]) < 0))
			return true;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char out[65536];
	static const char plain[] = "GET /metrics HTTP/1.0\r\n\r\n";
	static const char authed[] = "GET /metrics HTTP/1.0\r\nAuthorization: Basic " AUTH_TOKEN
				     "\r\n\r\n";
	bool with_auth = size & 1, has_token = has_credentials(data, size);
	uint8_t *req = malloc(size + 4);
	ssize_t n;

	if (!req)
		return 0;
	/* Headers without their end only wait for the server's timeout:
	 * end them, so that most inputs get an answer (a request left
	 * incomplete on purpose still can, e.g. "\r\n\r" at the end). */
	memcpy(req, data, size);
	if (!memmem(data, size, "\r\n\r\n", 4)) {
		memcpy(req + size, "\r\n\r\n", 4);
		size += 4;
	}
	n = exchange(with_auth ? &aaddr : &addr, req, size, out, sizeof(out));
	free(req);
	if (n < 0)
		fail("an answer began but did not end within 3 s");
	if (n > 0 && (n < 12 || strncmp(out, "HTTP/1.", 7) || out[8] != ' '))
		fail("an answer without an HTTP/1.x status line");
	if (with_auth && n > 0 && !has_token && !strncmp(out + 9, "200", 3))
		fail("basic auth on: 200 to a request without the credentials");
	if (++inputs % 256 == 0) {
		n = exchange(&addr, (const uint8_t *)plain, sizeof(plain) - 1, out, sizeof(out));
		if (n < 12 || strncmp(out + 9, "200", 3) ||
		    !strstr(out, "ispmon_build_info{version=\"fuzz\"} 1"))
			fail("a plain GET /metrics no longer gets the page");
		n = exchange(&aaddr, (const uint8_t *)plain, sizeof(plain) - 1, out, sizeof(out));
		if (n < 12 || strncmp(out + 9, "401", 3) ||
		    !strstr(out, "WWW-Authenticate: Basic realm=\"ispmon\""))
			fail("basic auth on: a GET without credentials is not refused with 401");
		n = exchange(&aaddr, (const uint8_t *)authed, sizeof(authed) - 1, out, sizeof(out));
		if (n < 12 || strncmp(out + 9, "200", 3) ||
		    !strstr(out, "ispmon_build_info{version=\"fuzz\"} 1"))
			fail("basic auth on: a GET with the credentials no longer gets the page");
	}
	return 0;
}
