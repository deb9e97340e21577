// dnsq: a bounded DNS query loop that measures round-trip times, the
// client side of the passive DNS RTT tests. Each query goes out from a new
// UDP socket connected to the server, so it gets a fresh kernel-chosen
// ephemeral source port (Linux picks it at random) and a random id, as a
// stub resolver does; the connected socket only accepts replies from the
// server's exact address and port. A reply counts when its id, QR bit and
// question match the query; anything else is ignored while the wait goes on.
// A reply is timed at its arrival in the kernel (SO_TIMESTAMPNS), not when
// dnsq gets to run, as a passive observer on the path would see it.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dnswire.h"

#define MAX_COUNT 100000
#define MAX_MS 60000

static const char usage_text[] =
	"usage: dnsq --server ADDR[:PORT] --count N --interval-ms MS [options]\n"
	"  Sends N queries (one every MS ms, start to start; later if a reply is\n"
	"  slower), each from a fresh UDP socket (new random source port) with a\n"
	"  random id, and waits for each reply before the next.\n"
	"  ADDR: 203.0.113.10, 203.0.113.10:53, 2001:db8:3::10, [2001:db8:3::10]:53\n"
	"  --timeout-ms MS   wait per query (default 1000, at most 60000)\n"
	"  --name NAME       name to ask for (default probe.example)\n"
	"  --type A|AAAA     query type (default A)\n"
	"  --verbose         add id, source port, rcode and first answer per reply\n"
	"output (stdout): per query 'rtt_ms=12.345', 'timeout' (no reply within the\n"
	"  timeout) or 'unreachable' (ICMP error); then 'sent=N received=M\n"
	"  median_ms=X' (X is '-' when nothing came back).\n"
	"exit: 0 if at least half the replies came back, 1 if not, 2 on bad usage.\n"
	"N <= 100000, MS <= 60000: the run ends within N * max(interval, timeout).\n";

static void usage_error(const char *fmt, const char *arg)
{
	fputs("dnsq: ", stderr);
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n%s", usage_text);
	exit(2);
}

static double ts_ms(const struct timespec *ts)
{
	return (double)ts->tv_sec * 1e3 + (double)ts->tv_nsec / 1e6;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts_ms(&ts);
}

static double real_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ts_ms(&ts);
}

static void sleep_until(double t_ms)
{
	for (;;) {
		double d = t_ms - now_ms();
		if (d <= 0)
			return;
		struct timespec ts = { .tv_sec = (time_t)(d / 1e3),
				       .tv_nsec = (long)((d - (double)(time_t)(d / 1e3) * 1e3) * 1e6) };
		nanosleep(&ts, NULL);
	}
}

static long parse_num(const char *s, long lo, long hi, const char *what)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		usage_error("bad %s", what);
	return v;
}

/* ADDR, ADDR:PORT, bare IPv6, [IPv6]:PORT -> sockaddr; 0 or -1. */
static int parse_server(const char *spec, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *port = NULL;
	const char *colon = strchr(spec, ':');
	if (spec[0] == '[') {
		const char *end = strchr(spec, ']');
		if (!end || (size_t)(end - spec - 1) >= sizeof(host))
			return -1;
		memcpy(host, spec + 1, (size_t)(end - spec - 1));
		host[end - spec - 1] = 0;
		if (end[1] == ':')
			port = end + 2;
		else if (end[1])
			return -1;
	} else if (colon && !strchr(colon + 1, ':')) { /* one colon: IPv4:PORT */
		if ((size_t)(colon - spec) >= sizeof(host))
			return -1;
		memcpy(host, spec, (size_t)(colon - spec));
		host[colon - spec] = 0;
		port = colon + 1;
	} else {
		if (strlen(spec) >= sizeof(host))
			return -1;
		strcpy(host, spec);
	}
	long p = 53;
	if (port) {
		char *end;
		p = strtol(port, &end, 10);
		if (!*port || *end || p < 1 || p > 65535)
			return -1;
	}
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)p);
		*len = sizeof(*s4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)p);
		*len = sizeof(*s6);
		return 0;
	}
	return -1;
}

static uint16_t random_id(void)
{
	uint16_t id;
	if (getrandom(&id, sizeof(id), 0) != (ssize_t)sizeof(id))
		id = (uint16_t)(now_ms() * 1000.0);
	return id;
}

/* Does r[0..len) answer the query with this id and question? On a match
 * sets *rcode and writes the first A/AAAA answer (if any) into ans. */
static int is_reply(const uint8_t *r, size_t len, uint16_t id, const struct dns_question *q,
		    int *rcode, char *ans, size_t anscap)
{
	struct dns_question rq;
	if (len < DNS_HDR_LEN || dns_get16(r) != id)
		return 0;
	uint16_t flags = dns_get16(r + 2);
	if (!(flags & DNS_QR) || (flags & DNS_OPCODE_MASK) || dns_get16(r + 4) != 1)
		return 0;
	long off = dns_parse_question(r, len, DNS_HDR_LEN, &rq);
	if (off < 0 || !dns_question_eq(q, &rq))
		return 0;
	*rcode = flags & DNS_RCODE_MASK;
	snprintf(ans, anscap, "-");
	for (unsigned i = 0, an = dns_get16(r + 6); i < an; i++) {
		off = dns_skip_name(r, len, (size_t)off);
		if (off < 0 || (size_t)off + 10 > len)
			break;
		uint16_t type = dns_get16(r + off), rdlen = dns_get16(r + off + 8);
		off += 10;
		if ((size_t)off + rdlen > len)
			break;
		if ((type == DNS_TYPE_A && rdlen == 4) || (type == DNS_TYPE_AAAA && rdlen == 16)) {
			inet_ntop(type == DNS_TYPE_A ? AF_INET : AF_INET6, r + off, ans, (socklen_t)anscap);
			break;
		}
		off += rdlen;
	}
	return 1;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	const char *server = NULL, *name = "probe.example";
	long count = -1, interval = -1, timeout = 1000;
	int verbose = 0;
	uint16_t qtype = DNS_TYPE_A;
	for (int i = 1; i < argc; i++) {
		const char *o = argv[i];
		if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
			fputs(usage_text, stdout);
			return 0;
		}
		if (!strcmp(o, "--verbose") || !strcmp(o, "-v")) {
			verbose = 1;
			continue;
		}
		if (i + 1 >= argc)
			usage_error("unknown or incomplete option '%s'", o);
		const char *v = argv[++i];
		if (!strcmp(o, "--server"))
			server = v;
		else if (!strcmp(o, "--count"))
			count = parse_num(v, 1, MAX_COUNT, "--count (1..100000)");
		else if (!strcmp(o, "--interval-ms"))
			interval = parse_num(v, 0, MAX_MS, "--interval-ms (0..60000)");
		else if (!strcmp(o, "--timeout-ms"))
			timeout = parse_num(v, 1, MAX_MS, "--timeout-ms (1..60000)");
		else if (!strcmp(o, "--name"))
			name = v;
		else if (!strcmp(o, "--type")) {
			if (!strcasecmp(v, "A"))
				qtype = DNS_TYPE_A;
			else if (!strcasecmp(v, "AAAA"))
				qtype = DNS_TYPE_AAAA;
			else
				usage_error("bad --type '%s': want A or AAAA", v);
		} else
			usage_error("unknown option '%s'", o);
	}
	if (!server || count < 0 || interval < 0)
		usage_error("%s", "need --server, --count and --interval-ms");

	struct sockaddr_storage srv;
	socklen_t srvlen;
	if (parse_server(server, &srv, &srvlen) < 0)
		usage_error("bad --server '%s': want ADDR, ADDR:PORT or [ADDR6]:PORT", server);
	struct dns_question q = { .qtype = qtype, .qclass = DNS_CLASS_IN };
	long nl = dns_encode_name(name, q.name, sizeof(q.name));
	if (nl < 0)
		usage_error("bad --name '%s'", name);
	q.name_len = (size_t)nl;

	setvbuf(stdout, NULL, _IOLBF, 0);
	double *rtts = calloc((size_t)count, sizeof(*rtts));
	if (!rtts) {
		fprintf(stderr, "dnsq: out of memory\n");
		return 1;
	}
	long received = 0;
	double start = now_ms();
	for (long i = 0; i < count; i++) {
		sleep_until(start + (double)i * (double)interval);
		uint8_t pkt[DNS_HDR_LEN + DNS_NAME_MAX + 4], r[4096];
		uint16_t id = random_id();
		memset(pkt, 0, DNS_HDR_LEN);
		dns_put16(pkt, id);
		dns_put16(pkt + 2, DNS_RD);
		dns_put16(pkt + 4, 1);
		long ql = dns_put_question(pkt + DNS_HDR_LEN, sizeof(pkt) - DNS_HDR_LEN, &q);

		int fd = socket(srv.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0), one = 1;
		if (fd >= 0)
			setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
		if (fd < 0 || connect(fd, (struct sockaddr *)&srv, srvlen) < 0) {
			fprintf(stderr, "dnsq: cannot reach %s: %s\n", server, strerror(errno));
			return 1;
		}
		unsigned sport = 0;
		struct sockaddr_storage me;
		socklen_t melen = sizeof(me);
		if (getsockname(fd, (struct sockaddr *)&me, &melen) == 0)
			sport = ntohs(me.ss_family == AF_INET ? ((struct sockaddr_in *)&me)->sin_port :
				      ((struct sockaddr_in6 *)&me)->sin6_port);

		const char *result = "timeout";
		char ans[INET6_ADDRSTRLEN] = "-";
		int rcode = -1;
		double t0r = real_ms(), t0 = now_ms(), deadline = t0 + (double)timeout, rtt = 0;
		if (send(fd, pkt, DNS_HDR_LEN + (size_t)ql, 0) < 0)
			result = "unreachable";
		while (strcmp(result, "timeout") == 0) {
			double left = deadline - now_ms();
			if (left <= 0)
				break;
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			int pr = poll(&pfd, 1, (int)left + 1);
			if (pr < 0 && errno != EINTR)
				break;
			if (pr <= 0)
				continue;
			union {
				struct cmsghdr h;
				/* cppcheck-suppress unusedStructMember ; sizes the union */
				char buf[CMSG_SPACE(sizeof(struct timespec))];
			} ctl;
			struct iovec iov = { .iov_base = r, .iov_len = sizeof(r) };
			struct msghdr mh = {
				.msg_iov = &iov, .msg_iovlen = 1,
				.msg_control = &ctl, .msg_controllen = sizeof(ctl),
			};
			ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT);
			double t1 = now_ms();
			if (n < 0) {
				if (errno == ECONNREFUSED || errno == EHOSTUNREACH ||
				    errno == ENETUNREACH || errno == EHOSTDOWN)
					result = "unreachable";
				continue;
			}
			if (is_reply(r, (size_t)n, id, &q, &rcode, ans, sizeof(ans))) {
				rtt = t1 - t0;
				/* The kernel's arrival stamp is on CLOCK_REALTIME: use it
				 * unless a clock step makes it implausible. */
				for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
					if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_TIMESTAMPNS)
						continue;
					struct timespec ts;
					memcpy(&ts, CMSG_DATA(c), sizeof(ts));
					double k = ts_ms(&ts) - t0r;
					if (k >= 0 && k <= rtt)
						rtt = k;
				}
				result = NULL;
				break;
			}
		}
		close(fd);
		if (!result) {
			rtts[received++] = rtt;
			if (verbose)
				printf("rtt_ms=%.3f id=%u sport=%u rcode=%d answer=%s\n", rtt, id, sport, rcode, ans);
			else
				printf("rtt_ms=%.3f\n", rtt);
		} else if (verbose) {
			printf("%s id=%u sport=%u\n", result, id, sport);
		} else {
			printf("%s\n", result);
		}
	}
	if (received) {
		qsort(rtts, (size_t)received, sizeof(*rtts), cmp_double);
		double med = received % 2 ? rtts[received / 2] :
			(rtts[received / 2 - 1] + rtts[received / 2]) / 2;
		printf("sent=%ld received=%ld median_ms=%.3f\n", count, received, med);
	} else {
		printf("sent=%ld received=0 median_ms=-\n", count);
	}
	free(rtts);
	return received * 2 >= count ? 0 : 1;
}
