/*
 * httpload: HTTP/1.1 clients against one URL, for tests/test_stress.sh.
 *
 *   httpload load  --addr A:P --path P --clients N --duration S [--close-share F]
 *                  [--timeout-ms T] [--expect TEXT]
 *       N threads, each one request after the other for S seconds; a share F
 *       (default 0.5) of them opens a new connection per request
 *       ("Connection: close"), the rest keep theirs alive. Every response
 *       must be 200 with a Content-Length body that contains TEXT and ends
 *       with a newline.
 *   httpload probe --addr A:P --path P --count N [--interval-ms M] [--timeout-ms T]
 *                  [--expect TEXT]
 *       N scrapes one after the other, a new connection each (as Prometheus
 *       after an error), M ms apart: the latency a well-behaved client sees.
 *   httpload slow  --addr A:P --path P --partial N --noread N --duration S [--restall]
 *       N connections that send half a request and stall, and N that send
 *       a request with a tiny receive buffer and never read the answer; held
 *       for S seconds. With --restall a connection the server closed is
 *       opened again, so N stay stalled the whole time.
 *   httpload idle  --addr A:P --conns N --duration S
 *       N connections that send nothing.
 *
 * --src-spread N [--src-base B]: with the server on 127/8, client i connects
 * from 127.0.0.(B + i % N), so a per-address connection limit sees N hosts.
 *
 * Output: one line of key=value pairs on stdout (latencies in ms). Exit 0
 * when it ran (errors are counted, not fatal), 2 on bad usage. IPv4 only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RESP_MAX (64u << 20) /* a larger response is an error */
#define MAX_CONNS 4096

static struct sockaddr_in g_addr;
static const char *g_path = "/metrics";
static const char *g_expect;
static int g_timeout_ms = 5000;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
	struct timespec ts;

	if (s <= 0)
		return;
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	nanosleep(&ts, NULL);
}

/* ---- latency samples ----------------------------------------------------- */

struct samples {
	double *v;
	size_t n, cap;
};

static void samples_add(struct samples *s, double ms)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024;
		double *v = realloc(s->v, cap * sizeof(*v));

		if (!v)
			return;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = ms;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Sorts s; the q-quantile (nearest rank), NaN when empty. */
static double quantile(struct samples *s, double q)
{
	size_t i;

	if (!s->n)
		return NAN;
	qsort(s->v, s->n, sizeof(*s->v), cmp_double);
	i = (size_t)ceil(q * (double)s->n);
	return s->v[i ? i - 1 : 0];
}

/* ---- one HTTP exchange --------------------------------------------------- */

enum result {
	RES_OK,
	RES_CONNECT,  /* connect failed or refused */
	RES_SEND,     /* the request could not be written */
	RES_TIMEOUT,  /* no complete response in time */
	RES_CLOSED,   /* the server closed before a complete response */
	RES_STATUS,   /* not 200 */
	RES_BODY,     /* no Content-Length, or body without the expected text */
	RES_MAX,
};
static const char *const result_names[RES_MAX] = {"ok", "connect", "send", "timeout",
						 "closed", "status", "body"};

/* Client n's source address: 127.0.0.(g_src_base + n % g_src_spread) when
 * the server is on 127/8, so that a per-address connection limit on the
 * server sees several hosts. */
static unsigned g_src_spread, g_src_base = 1;

static int connect_to(int rcvbuf, unsigned n)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -1;
	if (g_src_spread && (ntohl(g_addr.sin_addr.s_addr) >> 24) == 127) {
		struct sockaddr_in src = {.sin_family = AF_INET};

		src.sin_addr.s_addr = htonl(0x7f000000u | ((g_src_base + n % g_src_spread) & 0xffffff));
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&src, sizeof(src))) {
			close(fd);
			return -1;
		}
	}
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&g_addr, sizeof(g_addr))) {
		close(fd);
		return -1;
	}
	return fd;
}

static bool send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* Read more into buf, waiting until deadline. >0 bytes, 0 EOF, -1 error,
 * -2 timeout. */
static ssize_t read_some(int fd, char *buf, size_t cap, double deadline)
{
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		double left = deadline - now_s();
		ssize_t r;
		int n;

		if (left <= 0)
			return -2;
		n = poll(&p, 1, (int)(left * 1000) + 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			continue;
		r = recv(fd, buf, cap, 0);
		if (r < 0 && errno == EINTR)
			continue;
		return r;
	}
}

struct conn_buf {
	char *p;
	size_t len, cap;
};

static bool reserve(struct conn_buf *b, size_t want)
{
	char *p;
	size_t cap;

	if (b->cap >= want)
		return true;
	cap = b->cap ? b->cap : 65536;
	while (cap < want)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p)
		return false;
	b->p = p;
	b->cap = cap;
	return true;
}

/* Value of a header in the head (headers end at head_len), or NULL. */
static const char *header(const char *head, size_t head_len, const char *name, size_t *vlen)
{
	size_t nlen = strlen(name);
	const char *p = memchr(head, '\n', head_len), *end = head + head_len;

	while (p && p + 1 < end) {
		const char *line = p + 1, *eol = memchr(line, '\n', (size_t)(end - line));

		if (!eol)
			break;
		if ((size_t)(eol - line) > nlen + 1 && !strncasecmp(line, name, nlen) &&
		    line[nlen] == ':') {
			const char *v = line + nlen + 1;

			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			*vlen = (size_t)(eol - v);
			if (*vlen && v[*vlen - 1] == '\r')
				(*vlen)--;
			return v;
		}
		p = eol;
	}
	return NULL;
}

/*
 * Send one GET and read its response. b keeps bytes that arrived after the
 * response (none expected: one request in flight). *server_close: the
 * response said "Connection: close".
 */
static enum result exchange(int fd, bool close_conn, struct conn_buf *b, bool *server_close,
			    size_t *body_len)
{
	char req[512];
	double deadline = now_s() + g_timeout_ms / 1000.0;
	size_t head_len = 0, want;
	const char *v;
	size_t vlen;
	int n;

	*server_close = close_conn;
	n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: ispmon\r\nUser-Agent: httpload\r\n%s\r\n",
		     g_path, close_conn ? "Connection: close\r\n" : "");
	if (!send_all(fd, req, (size_t)n))
		return RES_SEND;
	b->len = 0;
	for (;;) {
		ssize_t r;

		if (!reserve(b, b->len + 65536))
			return RES_BODY;
		if (b->len) {
			const char *e;

			b->p[b->len] = 0;
			e = memmem(b->p, b->len, "\r\n\r\n", 4);
			if (e) {
				head_len = (size_t)(e - b->p) + 4;
				break;
			}
		}
		if (b->len > 65536)
			return RES_BODY; /* headers that large are wrong */
		r = read_some(fd, b->p + b->len, b->cap - b->len - 1, deadline);
		if (r == -2) {
			if (getenv("HTTPLOAD_DEBUG"))
				fprintf(stderr, "httpload: timeout waiting for headers, %zu bytes in\n", b->len);
			return RES_TIMEOUT;
		}
		if (r <= 0)
			return RES_CLOSED;
		b->len += (size_t)r;
	}
	if (b->len < 12 || strncmp(b->p, "HTTP/1.", 7) || strncmp(b->p + 9, "200", 3))
		return RES_STATUS;
	v = header(b->p, head_len, "Connection", &vlen);
	if (v && vlen == 5 && !strncasecmp(v, "close", 5))
		*server_close = true;
	v = header(b->p, head_len, "Content-Length", &vlen);
	if (!v)
		return RES_BODY;
	*body_len = strtoull(v, NULL, 10);
	if (*body_len > RESP_MAX)
		return RES_BODY;
	want = head_len + *body_len;
	if (!reserve(b, want + 1))
		return RES_BODY;
	while (b->len < want) {
		ssize_t r = read_some(fd, b->p + b->len, want - b->len, deadline);

		if (r == -2) {
			if (getenv("HTTPLOAD_DEBUG"))
				fprintf(stderr, "httpload: timeout in the body, %zu of %zu bytes in\n",
					b->len, want);
			return RES_TIMEOUT;
		}
		if (r <= 0)
			return RES_CLOSED;
		b->len += (size_t)r;
	}
	if (b->len > want)
		return RES_BODY; /* bytes after the body: nothing else was asked */
	if (!*body_len || b->p[want - 1] != '\n')
		return RES_BODY;
	if (g_expect && !memmem(b->p + head_len, *body_len, g_expect, strlen(g_expect)))
		return RES_BODY;
	return RES_OK;
}

/* ---- load ------------------------------------------------------------------ */

struct worker {
	pthread_t th;
	unsigned idx;
	bool close_conn;
	double end;
	uint64_t res[RES_MAX];
	uint64_t bytes;
	struct samples lat;
};

static void *load_worker(void *arg)
{
	struct worker *w = arg;
	struct conn_buf b = {0};
	int fd = -1;

	while (now_s() < w->end) {
		bool server_close;
		size_t body = 0;
		double t0 = now_s();
		enum result r;

		if (fd < 0) {
			fd = connect_to(0, w->idx);
			if (fd < 0) {
				w->res[RES_CONNECT]++;
				sleep_s(0.01);
				continue;
			}
		}
		r = exchange(fd, w->close_conn, &b, &server_close, &body);
		w->res[r]++;
		if (r == RES_OK) {
			samples_add(&w->lat, (now_s() - t0) * 1000);
			w->bytes += body;
		}
		if (r != RES_OK || server_close) {
			close(fd);
			fd = -1;
		}
	}
	if (fd >= 0)
		close(fd);
	free(b.p);
	return NULL;
}

static void print_lat(const char *pfx, struct samples *s)
{
	printf(" %s_p50_ms=%.3f %s_p90_ms=%.3f %s_p99_ms=%.3f %s_max_ms=%.3f", pfx,
	       quantile(s, 0.5), pfx, quantile(s, 0.9), pfx, quantile(s, 0.99), pfx,
	       quantile(s, 1.0));
}

static int run_load(unsigned clients, double duration, double close_share)
{
	struct worker *w = calloc(clients, sizeof(*w));
	struct samples all = {0};
	uint64_t res[RES_MAX] = {0}, bytes = 0, errors = 0;
	unsigned n_close = (unsigned)lround(close_share * clients), started = 0;
	double t0 = now_s(), end = t0 + duration;

	if (!w)
		return 1;
	for (unsigned i = 0; i < clients; i++) {
		w[i].idx = i;
		w[i].close_conn = i % 2 ? i / 2 < n_close - n_close / 2 : i / 2 < n_close / 2;
		w[i].end = end;
		if (pthread_create(&w[i].th, NULL, load_worker, &w[i])) {
			fprintf(stderr, "httpload: cannot start thread %u\n", i);
			break;
		}
		started++;
	}
	for (unsigned i = 0; i < started; i++) {
		pthread_join(w[i].th, NULL);
		for (int r = 0; r < RES_MAX; r++)
			res[r] += w[i].res[r];
		bytes += w[i].bytes;
		for (size_t k = 0; k < w[i].lat.n; k++)
			samples_add(&all, w[i].lat.v[k]);
		free(w[i].lat.v);
	}
	for (int r = 1; r < RES_MAX; r++)
		errors += res[r];
	printf("clients=%u started=%u seconds=%.1f requests=%llu errors=%llu rps=%.0f body_bytes=%llu",
	       clients, started, now_s() - t0, (unsigned long long)(res[RES_OK] + errors),
	       (unsigned long long)errors, (double)res[RES_OK] / (now_s() - t0),
	       (unsigned long long)bytes);
	for (int r = 1; r < RES_MAX; r++)
		printf(" err_%s=%llu", result_names[r], (unsigned long long)res[r]);
	print_lat("lat", &all);
	printf("\n");
	free(all.v);
	free(w);
	return started == clients ? 0 : 1;
}

/* ---- probe ------------------------------------------------------------------ */

static int run_probe(unsigned count, int interval_ms)
{
	struct samples lat = {0};
	uint64_t res[RES_MAX] = {0}, errors = 0;
	size_t body = 0, last_body = 0;
	struct conn_buf b = {0};

	for (unsigned i = 0; i < count; i++) {
		double t0 = now_s();
		bool server_close;
		enum result r;
		int fd = connect_to(0, i);

		if (fd < 0) {
			r = RES_CONNECT;
		} else {
			r = exchange(fd, true, &b, &server_close, &body);
			close(fd);
		}
		res[r]++;
		if (r == RES_OK) {
			samples_add(&lat, (now_s() - t0) * 1000);
			last_body = body;
		} else {
			samples_add(&lat, (now_s() - t0) * 1000); /* failures count too */
		}
		if (i + 1 < count)
			sleep_s(interval_ms / 1000.0 - (now_s() - t0));
	}
	for (int r = 1; r < RES_MAX; r++)
		errors += res[r];
	printf("probes=%u ok=%llu errors=%llu page_bytes=%zu", count,
	       (unsigned long long)res[RES_OK], (unsigned long long)errors, last_body);
	for (int r = 1; r < RES_MAX; r++)
		printf(" err_%s=%llu", result_names[r], (unsigned long long)res[r]);
	print_lat("lat", &lat);
	printf("\n");
	free(lat.v);
	free(b.p);
	return 0;
}

/* ---- slow and idle clients ------------------------------------------------------ */

enum slow_kind { SLOW_PARTIAL, SLOW_NOREAD, SLOW_IDLE };

struct slow {
	unsigned idx;
	int fd;
	enum slow_kind kind;
	double opened;
};

static int slow_open(struct slow *s)
{
	static const char half[] = "GET /metrics HTTP/1.1\r\nHost: ispmon\r\nUser-Ag";

	s->fd = connect_to(s->kind == SLOW_NOREAD ? 2048 : 0, s->idx);
	if (s->fd < 0)
		return -1;
	s->opened = now_s();
	if (s->kind == SLOW_PARTIAL)
		return send_all(s->fd, half, sizeof(half) - 1) ? 0 : -1;
	if (s->kind == SLOW_NOREAD) {
		/* One keep-alive request whose answer is never read: with a
		 * tiny receive window the server cannot finish writing it.
		 * (libmicrohttpd does not pipeline: a second request in the
		 * same segment makes it answer with "Connection: close".) */
		char req[256];
		int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: ispmon\r\n\r\n", g_path);
		return send_all(s->fd, req, (size_t)n) ? 0 : -1;
	}
	return 0;
}

/* Has the server closed (or reset) this connection? Never reads. */
static bool slow_closed(const struct slow *s)
{
	struct pollfd p = {.fd = s->fd, .events = POLLRDHUP};

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static int run_slow(unsigned partial, unsigned noread, unsigned idle, double duration,
		    bool restall)
{
	unsigned n = partial + noread + idle, open_fail = 0;
	uint64_t closed[3] = {0}, reopened = 0;
	struct samples life[3] = {{0}};
	struct slow *s = calloc(n ? n : 1, sizeof(*s));
	double end = now_s() + duration;
	unsigned held_end[3] = {0};
	static const char *const kn[3] = {"partial", "noread", "idle"};

	if (!s || n > MAX_CONNS)
		return 1;
	for (unsigned i = 0; i < n; i++) {
		s[i].idx = i;
		s[i].kind = i < partial ? SLOW_PARTIAL : i < partial + noread ? SLOW_NOREAD : SLOW_IDLE;
		if (slow_open(&s[i])) {
			open_fail++;
			if (s[i].fd >= 0)
				close(s[i].fd);
			s[i].fd = -1;
		}
	}
	printf("# slow: %u connections open\n", n - open_fail);
	fflush(stdout);
	while (now_s() < end) {
		for (unsigned i = 0; i < n; i++) {
			if (s[i].fd < 0) {
				if (restall && !slow_open(&s[i]))
					reopened++;
				else if (s[i].fd >= 0) {
					close(s[i].fd);
					s[i].fd = -1;
				}
				continue;
			}
			if (slow_closed(&s[i])) {
				closed[s[i].kind]++;
				samples_add(&life[s[i].kind], (now_s() - s[i].opened) * 1000);
				close(s[i].fd);
				s[i].fd = -1;
			}
		}
		sleep_s(0.05);
	}
	for (unsigned i = 0; i < n; i++) {
		if (s[i].fd >= 0) {
			held_end[s[i].kind]++;
			close(s[i].fd);
		}
	}
	printf("conns=%u open_fail=%u reopened=%llu", n, open_fail, (unsigned long long)reopened);
	for (int k = 0; k < 3; k++) {
		printf(" %s_closed_by_server=%llu %s_open_at_end=%u", kn[k],
		       (unsigned long long)closed[k], kn[k], held_end[k]);
		if (life[k].n)
			printf(" %s_min_life_ms=%.0f %s_max_life_ms=%.0f", kn[k],
			       quantile(&life[k], 0), kn[k], quantile(&life[k], 1.0));
		free(life[k].v);
	}
	printf("\n");
	free(s);
	return 0;
}

/* ---- command line ------------------------------------------------------------------ */

static void usage(void)
{
	fprintf(stderr,
		"usage: httpload load|probe|slow|idle --addr IP:PORT [--path P] [--clients N]\n"
		"       [--duration S] [--close-share F] [--timeout-ms T] [--expect TEXT]\n"
		"       [--count N] [--interval-ms M] [--partial N] [--noread N] [--conns N]\n"
		"       [--src-spread N] [--src-base B] [--restall]\n");
	exit(2);
}

static bool parse_addr(const char *s, struct sockaddr_in *a)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	long port;

	if (!colon || (size_t)(colon - s) >= sizeof(host))
		return false;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	port = strtol(colon + 1, NULL, 10);
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)port);
	return port > 0 && port < 65536 && inet_pton(AF_INET, host, &a->sin_addr) == 1;
}

int main(int argc, char **argv)
{
	unsigned clients = 10, count = 10, partial = 0, noread = 0, conns = 0;
	double duration = 5, close_share = 0.5;
	int interval_ms = 100;
	bool restall = false, have_addr = false;
	const char *mode;

	if (argc < 2)
		usage();
	mode = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(o, "--restall")) {
			restall = true;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (!strcmp(o, "--addr"))
			have_addr = parse_addr(v, &g_addr);
		else if (!strcmp(o, "--path"))
			g_path = v;
		else if (!strcmp(o, "--expect"))
			g_expect = v;
		else if (!strcmp(o, "--clients"))
			clients = (unsigned)strtoul(v, NULL, 10);
		else if (!strcmp(o, "--duration"))
			duration = strtod(v, NULL);
		else if (!strcmp(o, "--close-share"))
			close_share = strtod(v, NULL);
		else if (!strcmp(o, "--timeout-ms"))
			g_timeout_ms = atoi(v);
		else if (!strcmp(o, "--count"))
			count = (unsigned)strtoul(v, NULL, 10);
		else if (!strcmp(o, "--interval-ms"))
			interval_ms = atoi(v);
		else if (!strcmp(o, "--partial"))
			partial = (unsigned)strtoul(v, NULL, 10);
		else if (!strcmp(o, "--noread"))
			noread = (unsigned)strtoul(v, NULL, 10);
		else if (!strcmp(o, "--src-spread"))
			g_src_spread = (unsigned)strtoul(v, NULL, 10);
		else if (!strcmp(o, "--src-base"))
			g_src_base = (unsigned)strtoul(v, NULL, 10);
		else if (!strcmp(o, "--conns"))
			conns = (unsigned)strtoul(v, NULL, 10);
		else
			usage();
	}
	if (!have_addr || strlen(g_path) > 200 || clients < 1 || clients > MAX_CONNS ||
	    !(duration > 0 && duration <= 3600) || !(close_share >= 0 && close_share <= 1) ||
	    g_timeout_ms < 1 || count > 1000000 || partial + noread + conns > MAX_CONNS)
		usage();
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(mode, "load"))
		return run_load(clients, duration, close_share);
	if (!strcmp(mode, "probe"))
		return run_probe(count, interval_ms);
	if (!strcmp(mode, "slow"))
		return run_slow(partial, noread, 0, duration, restall);
	if (!strcmp(mode, "idle"))
		return run_slow(0, 0, conns, duration, restall);
	usage();
	return 2;
}
