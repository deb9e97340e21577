// httpd: minimal HTTP/1.1 test server for the emulated internet. One forked
// child per connection (a bad request can only take down its own child),
// Connection: close on every reply.
//   GET /bytes/N          N bytes of a deterministic pattern (see --gen)
//   POST|PUT /upload      consume the body (Content-Length or chunked) and
//                         reply "received=N crc32=XXXXXXXX"
//   GET /status/CODE      reply with that status code
//   GET /                 "ok" (readiness checks)
//   POST /webhook         with --sink FILE: append the body (Content-Length,
//                         at most 1 MiB) and a newline to FILE, reply "ok";
//                         a stand-in for an alert receiver (Alertmanager's
//                         webhook_configs), one JSON document per line
// Misbehaviour on purpose (speed-test fault tests):
//   GET /redirect-loop    302 to itself, forever
//   GET /stall            200 with Content-Length 1 GiB, then not a byte (the
//                         child waits until the client goes, at most 120 s)
//   GET /forever          200 without Content-Length, the pattern until the
//                         client goes (whatever it asked for)
//   POST /upload-refuse   413 at once, without reading the body
//   POST /upload-close    read up to 64 KiB of the body, then reset the
//                         connection (no reply)
//   a TLS ClientHello     (https:// to this plain port) a plain-text 400 at
//                         once, which the client's TLS layer cannot parse
// A query string ("?...") is ignored when routing.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <zlib.h>

#include "hostport.h"

#define MAX_LISTEN 8
#define MAX_LINE 8192          /* request line or one header line */
#define MAX_HEADERS 100
#define MAX_BYTES (1ULL << 40) /* largest /bytes/N and Content-Length */
#define IO_TIMEOUT_S 30
#define CHUNK (256 * 1024)
#define STALL_MAX_S 120
#define ABORT_CONN (-1) /* serve(): reset the connection, no reply */

static const char usage_text[] =
	"usage: httpd --listen ADDR:PORT [--listen ADDR:PORT ...] [--quiet] [--sink FILE]\n"
	"       httpd --gen N        write the N-byte test pattern to stdout\n"
	"       httpd --crc32 FILE   print the crc32 of FILE ('-' = stdin) as 8 hex digits\n"
	"ADDR is IPv4 (203.0.113.10:8080) or bracketed IPv6 ([2001:db8::1]:8080);\n"
	"[::]:PORT serves both families. --sink FILE: POST /webhook bodies are\n"
	"appended to FILE, one per line.\n";

static int quiet;
static const char *sink_path; /* --sink: where POST /webhook bodies go */
#define SINK_MAX (1 << 20)

/* The pattern: 8-byte little-endian words, word i = splitmix64(i). Any prefix
 * of a longer stream equals a shorter stream, so --gen N checks /bytes/N. */
static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* Fill buf with pattern bytes [pos, pos+len); pos must be a multiple of 8. */
static void pattern_fill(uint64_t pos, uint8_t *buf, size_t len)
{
	uint64_t w = pos / 8;
	for (size_t i = 0; i < len; i += 8, w++) {
		uint64_t v = splitmix64(w);
		for (size_t k = 0; k < 8 && i + k < len; k++)
			buf[i + k] = (uint8_t)(v >> (8 * k));
	}
}

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Writes `n` pattern bytes; returns 0 or -1 on write error. */
static int write_pattern(int fd, uint64_t n)
{
	static uint8_t buf[CHUNK];
	for (uint64_t pos = 0; pos < n;) {
		size_t len = n - pos < CHUNK ? (size_t)(n - pos) : CHUNK;
		pattern_fill(pos, buf, len);
		if (write_all(fd, buf, len) < 0)
			return -1;
		pos += len;
	}
	return 0;
}

/* Parse a decimal byte count; rejects signs, junk and values above MAX_BYTES. */
static int parse_count(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	if (!*s)
		return -1;
	for (; *s; s++) {
		if (!isdigit((unsigned char)*s))
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > MAX_BYTES)
			return -1;
	}
	*out = v;
	return 0;
}

/* ---- connection handling ---- */

struct conn {
	int fd;
	size_t pos, end;
	char buf[64 * 1024];
};

static ssize_t fill(struct conn *c)
{
	c->pos = 0;
	for (;;) {
		ssize_t n = read(c->fd, c->buf, sizeof(c->buf));
		if (n < 0 && errno == EINTR)
			continue;
		c->end = n > 0 ? (size_t)n : 0;
		return n;
	}
}

/* Read one line without its CR LF into out (NUL-terminated).
 * Returns length, or -1 on EOF/error/too long. */
static int read_line(struct conn *c, char *out, size_t max)
{
	size_t n = 0;
	for (;;) {
		if (c->pos == c->end && fill(c) <= 0)
			return -1;
		char ch = c->buf[c->pos++];
		if (ch == '\n')
			break;
		if (n + 1 >= max)
			return -1;
		out[n++] = ch;
	}
	if (n && out[n - 1] == '\r')
		n--;
	out[n] = 0;
	return (int)n;
}

/* Consume exactly n body bytes, updating count and crc. */
static int read_body(struct conn *c, uint64_t n, uint64_t *count, uLong *crc)
{
	while (n) {
		if (c->pos == c->end && fill(c) <= 0)
			return -1;
		size_t avail = c->end - c->pos;
		size_t take = n < avail ? (size_t)n : avail;
		*crc = crc32(*crc, (const Bytef *)c->buf + c->pos, (uInt)take);
		c->pos += take;
		*count += take;
		n -= take;
	}
	return 0;
}

/* Read exactly n body bytes into out. */
static int read_body_into(struct conn *c, size_t n, char *out)
{
	while (n) {
		if (c->pos == c->end && fill(c) <= 0)
			return -1;
		size_t avail = c->end - c->pos;
		size_t take = n < avail ? n : avail;
		memcpy(out, c->buf + c->pos, take);
		c->pos += take;
		out += take;
		n -= take;
	}
	return 0;
}

static int read_chunked(struct conn *c, uint64_t *count, uLong *crc)
{
	char line[1024];
	for (;;) {
		if (read_line(c, line, sizeof(line)) < 0)
			return -1;
		uint64_t size = 0;
		int digits = 0;
		for (const char *p = line; isxdigit((unsigned char)*p); p++, digits++) {
			if (digits >= 11) /* 16^11 > MAX_BYTES */
				return -1;
			size = size * 16 + (uint64_t)(isdigit((unsigned char)*p) ?
				*p - '0' : (tolower((unsigned char)*p) - 'a' + 10));
		}
		if (!digits || *count + size > MAX_BYTES)
			return -1;
		if (!size)
			break;
		if (read_body(c, size, count, crc) < 0 || read_line(c, line, sizeof(line)) != 0)
			return -1;
	}
	/* Trailer section ends with an empty line. */
	for (int i = 0; i < MAX_HEADERS; i++) {
		int n = read_line(c, line, sizeof(line));
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
	}
	return -1;
}

static const char *reason(int code)
{
	switch (code) {
	case 200: return "OK";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Status";
	}
}

/* Status line and headers; extra (may be "") is inserted verbatim, each of
 * its lines ending in CR LF. len UINT64_MAX: no Content-Length (the body
 * ends when the connection closes). */
static int send_head_extra(int fd, int code, const char *type, uint64_t len, const char *extra)
{
	char h[1024], clen[64] = "";
	if (len != UINT64_MAX)
		snprintf(clen, sizeof(clen), "Content-Length: %llu\r\n", (unsigned long long)len);
	int n = snprintf(h, sizeof(h),
		"HTTP/1.1 %d %s\r\nServer: ispmon-test-httpd\r\n"
		"Content-Type: %s\r\n%s%sConnection: close\r\n\r\n",
		code, reason(code), type, clen, extra);
	if (n < 0 || (size_t)n >= sizeof(h))
		return -1;
	return write_all(fd, h, (size_t)n);
}

static int send_head(int fd, int code, const char *type, uint64_t len)
{
	return send_head_extra(fd, code, type, len, "");
}

/* /stall: wait, sending nothing, until the peer closes (or errs) or
 * STALL_MAX_S pass. */
static void stall(struct conn *c)
{
	for (int waited = 0; waited < STALL_MAX_S * 10; waited++) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		int r = poll(&p, 1, 100);
		if (r < 0 && errno != EINTR)
			return;
		if (r > 0 && fill(c) <= 0) /* EOF, reset or 30 s read timeout */
			return;
	}
}

/* /forever: the pattern until a write fails; returns the bytes written. */
static uint64_t stream_forever(int fd)
{
	static uint8_t buf[CHUNK];
	uint64_t pos = 0;
	while (pos < MAX_BYTES) {
		pattern_fill(pos, buf, CHUNK);
		if (write_all(fd, buf, CHUNK) < 0)
			break;
		pos += CHUNK;
	}
	return pos;
}

static int reply(int fd, int code, const char *body)
{
	if (send_head(fd, code, "text/plain", strlen(body)) < 0)
		return -1;
	return write_all(fd, body, strlen(body));
}

/* Serve one request; returns the status code sent (for the log line). */
static int serve(struct conn *c, char *method, char *target, uint64_t *sent)
{
	char line[MAX_LINE];
	*sent = 0;
	if (c->pos == c->end && fill(c) <= 0)
		return reply(c->fd, 400, "bad request line\n"), 400;
	if (c->buf[c->pos] == 0x16) { /* TLS handshake record: a ClientHello */
		snprintf(method, 16, "TLS");
		return reply(c->fd, 400, "this is a plain HTTP port\n"), 400;
	}
	if (read_line(c, line, sizeof(line)) <= 0)
		return reply(c->fd, 400, "bad request line\n"), 400;
	char ver[16];
	if (sscanf(line, "%15s %255s %15s", method, target, ver) != 3 ||
	    strncmp(ver, "HTTP/1.", 7))
		return reply(c->fd, 400, "bad request line\n"), 400;

	uint64_t clen = 0;
	int has_clen = 0, chunked = 0, expect = 0, i;
	for (i = 0; i < MAX_HEADERS; i++) {
		int n;

		if ((n = read_line(c, line, sizeof(line))) < 0)
			return reply(c->fd, 400, "bad header\n"), 400;
		if (n == 0)
			break;
		char *val = strchr(line, ':');
		if (!val)
			return reply(c->fd, 400, "bad header\n"), 400;
		*val++ = 0;
		val += strspn(val, " \t");
		if (!strcasecmp(line, "Content-Length")) {
			if (parse_count(val, &clen) < 0)
				return reply(c->fd, 413, "bad or too large Content-Length\n"), 413;
			has_clen = 1;
		} else if (!strcasecmp(line, "Transfer-Encoding")) {
			chunked = strcasestr(val, "chunked") != NULL;
		} else if (!strcasecmp(line, "Expect")) {
			expect = strcasestr(val, "100-continue") != NULL;
		}
	}
	if (i == MAX_HEADERS)
		return reply(c->fd, 400, "too many headers\n"), 400;

	char path[256];
	snprintf(path, sizeof(path), "%.*s", (int)strcspn(target, "?"), target);
	int is_get = !strcmp(method, "GET");
	int is_post = !strcmp(method, "POST") || !strcmp(method, "PUT");
	if (!strcmp(path, "/upload-refuse")) {
		if (!is_post)
			return reply(c->fd, 405, "use POST or PUT\n"), 405;
		return reply(c->fd, 413, "upload refused\n"), 413;
	}
	if (!strcmp(path, "/upload-close")) {
		if (!is_post)
			return reply(c->fd, 405, "use POST or PUT\n"), 405;
		uint64_t count = 0, want = 64 * 1024;
		uLong crc = crc32(0L, Z_NULL, 0);
		if (has_clen && clen < want)
			want = clen;
		struct timeval tv = { .tv_sec = 1 };
		setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		read_body(c, want, &count, &crc); /* whatever arrives within 1 s */
		*sent = count;
		return ABORT_CONN;
	}
	if (!strcmp(path, "/webhook")) {
		if (!is_post)
			return reply(c->fd, 405, "use POST or PUT\n"), 405;
		if (!sink_path)
			return reply(c->fd, 404, "no --sink given\n"), 404;
		if (chunked || !has_clen)
			return reply(c->fd, 411, "need Content-Length\n"), 411;
		if (clen > SINK_MAX)
			return reply(c->fd, 413, "body over 1 MiB\n"), 413;
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		if (expect && write_all(c->fd, cont, sizeof(cont) - 1) < 0)
			return 0;
		char *body = malloc((size_t)clen + 1);
		if (!body)
			return reply(c->fd, 500, "out of memory\n"), 500;
		if (read_body_into(c, (size_t)clen, body) < 0) {
			free(body);
			return reply(c->fd, 400, "truncated body\n"), 400;
		}
		body[clen] = '\n';
		/* One write with O_APPEND: concurrent children never interleave. */
		int fd = open(sink_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		int r = fd < 0 ? -1 : write_all(fd, body, (size_t)clen + 1);
		if (fd >= 0)
			close(fd);
		free(body);
		*sent = clen;
		if (r < 0)
			return reply(c->fd, 500, "cannot write the sink file\n"), 500;
		return reply(c->fd, 200, "ok\n"), 200;
	}
	if (!strcmp(path, "/upload")) {
		if (strcmp(method, "POST") && strcmp(method, "PUT"))
			return reply(c->fd, 405, "use POST or PUT\n"), 405;
		if (!chunked && !has_clen)
			return reply(c->fd, 411, "need Content-Length or chunked\n"), 411;
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		if (expect && write_all(c->fd, cont, sizeof(cont) - 1) < 0)
			return 0;
		uint64_t count = 0;
		uLong crc = crc32(0L, Z_NULL, 0);
		int r = chunked ? read_chunked(c, &count, &crc) : read_body(c, clen, &count, &crc);
		if (r < 0)
			return reply(c->fd, 400, "truncated or malformed body\n"), 400;
		char body[96];
		snprintf(body, sizeof(body), "received=%llu crc32=%08lx\n",
			(unsigned long long)count, (unsigned long)crc);
		*sent = count;
		return reply(c->fd, 200, body), 200;
	}
	if (!is_get)
		return reply(c->fd, 405, "method not allowed\n"), 405;
	if (!strcmp(path, "/"))
		return reply(c->fd, 200, "ok\n"), 200;
	if (!strcmp(path, "/redirect-loop"))
		return send_head_extra(c->fd, 302, "text/plain", 0, "Location: /redirect-loop\r\n"), 302;
	if (!strcmp(path, "/stall")) {
		if (send_head(c->fd, 200, "application/octet-stream", 1ULL << 30) == 0)
			stall(c);
		return 200;
	}
	if (!strcmp(path, "/forever")) {
		if (send_head_extra(c->fd, 200, "application/octet-stream", UINT64_MAX, "") == 0)
			*sent = stream_forever(c->fd);
		return 200;
	}
	if (!strncmp(path, "/bytes/", 7)) {
		uint64_t len;
		if (parse_count(path + 7, &len) < 0)
			return reply(c->fd, 400, "want /bytes/N with N <= 2^40\n"), 400;
		if (send_head(c->fd, 200, "application/octet-stream", len) == 0 &&
		    write_pattern(c->fd, len) == 0)
			*sent = len;
		return 200;
	}
	if (!strncmp(path, "/status/", 8)) {
		uint64_t code;
		if (parse_count(path + 8, &code) < 0 || code < 200 || code > 599)
			return reply(c->fd, 400, "want /status/CODE with 200 <= CODE <= 599\n"), 400;
		char body[64];
		snprintf(body, sizeof(body), "status %d\n", (int)code);
		/* 204 and 304 must not carry a body. */
		if (code == 204 || code == 304)
			return send_head(c->fd, (int)code, "text/plain", 0), (int)code;
		return reply(c->fd, (int)code, body), (int)code;
	}
	return reply(c->fd, 404, "not found\n"), 404;
}

static void handle(int fd, const struct sockaddr_storage *peer)
{
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	static struct conn c;
	c.fd = fd;
	char method[16] = "-", target[256] = "-";
	uint64_t bytes;
	int code = serve(&c, method, target, &bytes);
	if (!quiet) {
		for (char *p = method; *p; p++) /* garbage requests make garbage logs */
			*p = isgraph((unsigned char)*p) ? *p : '?';
		for (char *p = target; *p; p++)
			*p = isgraph((unsigned char)*p) ? *p : '?';
		char host[INET6_ADDRSTRLEN] = "?";
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)peer)->sin6_addr;
		if (peer->ss_family == AF_INET)
			inet_ntop(AF_INET, &((const struct sockaddr_in *)peer)->sin_addr, host, sizeof(host));
		else if (IN6_IS_ADDR_V4MAPPED(a6)) /* IPv4 client of a [::] listener */
			inet_ntop(AF_INET, &a6->s6_addr[12], host, sizeof(host));
		else
			inet_ntop(AF_INET6, a6, host, sizeof(host));
		fprintf(stderr, "httpd: %s %s %s %d %llu\n", host, method, target,
			code == ABORT_CONN ? 0 : code, (unsigned long long)bytes);
	}
	if (code == ABORT_CONN) { /* RST: linger 0 */
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(fd);
		return;
	}
	/* Half-close and drain briefly so unread request bytes don't turn the
	 * close into a RST that destroys the reply in flight. */
	shutdown(fd, SHUT_WR);
	tv.tv_sec = 1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (int i = 0; i < 64 && read(fd, c.buf, sizeof(c.buf)) > 0; i++)
		;
	close(fd);
}

static int open_listener(const char *spec)
{
	int err;
	struct addrinfo *ai = hostport_resolve(spec, SOCK_STREAM, &err);
	if (!ai && !err)
		return -1;
	if (!ai) {
		fprintf(stderr, "httpd: bad listen address '%s': %s\n", spec, gai_strerror(err));
		exit(1);
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1, zero = 0;
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6) /* [::] serves IPv4 too */
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	}
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0) {
		fprintf(stderr, "httpd: cannot listen on %s: %s\n", spec, strerror(errno));
		exit(1);
	}
	freeaddrinfo(ai);
	return fd;
}

static int cmd_crc32(const char *path)
{
	int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : 0;
	if (fd < 0) {
		fprintf(stderr, "httpd: cannot open %s: %s\n", path, strerror(errno));
		return 1;
	}
	static unsigned char buf[CHUNK];
	uLong crc = crc32(0L, Z_NULL, 0);
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "httpd: cannot read %s: %s\n", path, strerror(errno));
			return 1;
		}
		if (n == 0)
			break;
		crc = crc32(crc, buf, (uInt)n);
	}
	printf("%08lx\n", (unsigned long)crc);
	return 0;
}

int main(int argc, char **argv)
{
	int lfd[MAX_LISTEN], nl = 0;
	signal(SIGPIPE, SIG_IGN);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quiet")) {
			quiet = 1;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage_text, stdout);
			return 0;
		} else if (i + 1 < argc && !strcmp(argv[i], "--gen")) {
			uint64_t n;
			if (parse_count(argv[i + 1], &n) < 0) {
				fprintf(stderr, "httpd: bad --gen count '%s'\n", argv[i + 1]);
				return 1;
			}
			if (write_pattern(1, n) < 0) {
				fprintf(stderr, "httpd: write to stdout: %s\n", strerror(errno));
				return 1;
			}
			return 0;
		} else if (i + 1 < argc && !strcmp(argv[i], "--sink")) {
			sink_path = argv[++i];
		} else if (i + 1 < argc && !strcmp(argv[i], "--crc32")) {
			return cmd_crc32(argv[i + 1]);
		} else if (i + 1 < argc && !strcmp(argv[i], "--listen")) {
			if (nl == MAX_LISTEN) {
				fprintf(stderr, "httpd: at most %d --listen\n", MAX_LISTEN);
				return 1;
			}
			int fd = open_listener(argv[++i]);
			if (fd < 0) {
				fprintf(stderr, "httpd: bad listen address '%s': want ADDR:PORT or [ADDR6]:PORT\n", argv[i]);
				return 1;
			}
			lfd[nl++] = fd;
		} else {
			fprintf(stderr, "httpd: unknown or incomplete option '%s'\n%s", argv[i], usage_text);
			return 2;
		}
	}
	if (!nl) {
		fputs(usage_text, stderr);
		return 2;
	}
	signal(SIGCHLD, SIG_IGN); /* children reap themselves */
	setvbuf(stderr, NULL, _IOLBF, 0);
	struct pollfd pfd[MAX_LISTEN];
	for (int i = 0; i < nl; i++)
		pfd[i] = (struct pollfd){ .fd = lfd[i], .events = POLLIN };
	for (;;) {
		if (poll(pfd, (nfds_t)nl, -1) < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "httpd: poll: %s\n", strerror(errno));
			return 1;
		}
		for (int i = 0; i < nl; i++) {
			if (!(pfd[i].revents & POLLIN))
				continue;
			struct sockaddr_storage peer;
			socklen_t plen = sizeof(peer);
			int fd = accept4(lfd[i], (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
			if (fd < 0)
				continue; /* ECONNABORTED, EMFILE...: keep serving */
			pid_t pid = fork();
			if (pid == 0) {
				for (int k = 0; k < nl; k++)
					close(lfd[k]);
				handle(fd, &peer);
				_exit(0);
			}
			if (pid < 0)
				fprintf(stderr, "httpd: fork: %s\n", strerror(errno));
			close(fd);
		}
	}
}
