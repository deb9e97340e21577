// dnsd: a tiny authoritative-style DNS responder for the emulated internet.
// Every well-formed standard query, whatever the name, gets an answer with
// the same id and question: one A record (203.0.113.10) for A and ANY
// queries, one AAAA record (2001:db8:3::10) for AAAA queries, NODATA (no
// answer, NOERROR) for other types or classes; TTL 0, AA set. Anything else
// (too short, a response, another opcode, QDCOUNT != 1, a bad name) is
// ignored and logged. Replies leave from the address the query was sent to
// (IP_PKTINFO / IPV6_PKTINFO), so a NAT in front of the client matches them.
// Single-threaded, one datagram at a time, no state between queries.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dnswire.h"
#include "hostport.h"

#define MAX_LISTEN 8
#define ANSWER_IP4 "203.0.113.10"
#define ANSWER_IP6 "2001:db8:3::10"

static const char usage_text[] =
	"usage: dnsd --listen ADDR:PORT [--listen ADDR:PORT ...] [--quiet]\n"
	"  Answers every well-formed DNS query over UDP: A/ANY -> " ANSWER_IP4 ",\n"
	"  AAAA -> " ANSWER_IP6 ", other types NODATA; TTL 0.\n"
	"ADDR is IPv4 (203.0.113.10:53) or bracketed IPv6 ([2001:db8:3::10]:53);\n"
	"[::]:PORT serves both families. Logs one line per datagram on stderr\n"
	"unless --quiet.\n";

static int quiet;
static struct in_addr answer4;
static struct in6_addr answer6;

static void addr_text(const struct sockaddr_storage *ss, char *out, size_t cap)
{
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, out, (socklen_t)cap);
	else if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) /* IPv4 client of a [::] socket */
		inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], out, (socklen_t)cap);
	else
		inet_ntop(AF_INET6, &s6->sin6_addr, out, (socklen_t)cap);
}

/* Build the reply to query q[0..len) in r; returns its length, or -1 and
 * sets *why if the query is to be ignored. */
static long answer(const uint8_t *q, size_t len, uint8_t *r, size_t cap,
		   struct dns_question *qn, const char **why)
{
	if (len < DNS_HDR_LEN)
		return *why = "short", -1;
	uint16_t flags = dns_get16(q + 2);
	if (flags & DNS_QR)
		return *why = "not-a-query", -1;
	if (flags & DNS_OPCODE_MASK)
		return *why = "opcode", -1;
	if (dns_get16(q + 4) != 1 || dns_get16(q + 6) || dns_get16(q + 8))
		return *why = "counts", -1;
	/* Additional records (EDNS OPT) may follow; they are not echoed. A
	 * responder without EDNS answers without OPT (RFC 6891 7). */
	if (dns_parse_question(q, len, DNS_HDR_LEN, qn) < 0)
		return *why = "question", -1;

	int cls_ok = qn->qclass == DNS_CLASS_IN || qn->qclass == DNS_CLASS_ANY;
	uint16_t type = 0, rdlen = 0;
	const void *rdata = NULL;
	if (cls_ok && (qn->qtype == DNS_TYPE_A || qn->qtype == DNS_TYPE_ANY))
		type = DNS_TYPE_A, rdlen = 4, rdata = &answer4;
	else if (cls_ok && qn->qtype == DNS_TYPE_AAAA)
		type = DNS_TYPE_AAAA, rdlen = 16, rdata = &answer6;

	memcpy(r, q, 2); /* id */
	dns_put16(r + 2, (uint16_t)(DNS_QR | DNS_AA | (flags & DNS_RD)));
	dns_put16(r + 4, 1);
	dns_put16(r + 6, rdata ? 1 : 0);
	dns_put16(r + 8, 0);
	dns_put16(r + 10, 0);
	long n = dns_put_question(r + DNS_HDR_LEN, cap - DNS_HDR_LEN, qn);
	if (n < 0)
		return *why = "too-long", -1;
	size_t o = DNS_HDR_LEN + (size_t)n;
	if (rdata) {
		if (o + 12 + rdlen > cap)
			return *why = "too-long", -1;
		dns_put16(r + o, 0xc000 | DNS_HDR_LEN); /* name: pointer to the question */
		dns_put16(r + o + 2, type);
		dns_put16(r + o + 4, DNS_CLASS_IN);
		memset(r + o + 6, 0, 4); /* TTL 0: every lookup reaches us */
		dns_put16(r + o + 10, rdlen);
		memcpy(r + o + 12, rdata, rdlen);
		o += 12 + (size_t)rdlen;
	}
	return (long)o;
}

/* Receive and answer one datagram on fd. */
static void serve_one(int fd)
{
	uint8_t q[4096], r[512];
	union {
		struct cmsghdr h;
		/* cppcheck-suppress unusedStructMember ; sizes the union */
		char buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(struct in_pktinfo))];
	} ctl;
	struct sockaddr_storage peer;
	struct iovec iov = { .iov_base = q, .iov_len = sizeof(q) };
	struct msghdr mh = {
		.msg_name = &peer, .msg_namelen = sizeof(peer),
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = &ctl, .msg_controllen = sizeof(ctl),
	};
	ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT);
	if (n < 0)
		return; /* EAGAIN, EINTR, a queued ICMP error: nothing to do */

	/* Where the query was sent to: the reply's source. */
	struct in_pktinfo *pi4 = NULL;
	struct in6_pktinfo *pi6 = NULL;
	struct in_pktinfo v4;
	struct in6_pktinfo v6;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
			memcpy(&v4, CMSG_DATA(c), sizeof(v4));
			pi4 = &v4;
		} else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
			memcpy(&v6, CMSG_DATA(c), sizeof(v6));
			pi6 = &v6;
		}
	}

	struct dns_question qn;
	const char *why = NULL;
	char from[INET6_ADDRSTRLEN] = "?";
	addr_text(&peer, from, sizeof(from));
	int trunc = (mh.msg_flags & MSG_TRUNC) != 0;
	long rlen = trunc ? (why = "oversize", -1) : answer(q, (size_t)n, r, sizeof(r), &qn, &why);
	if (rlen < 0) {
		if (!quiet)
			fprintf(stderr, "dnsd: %s ignored %zd bytes: %s\n", from, n, why);
		return;
	}

	/* Send the reply with the query's destination as source. On a [::]
	 * socket an IPv4 query has an IPv4-mapped peer and IP_PKTINFO works
	 * as on an IPv4 socket. */
	union {
		struct cmsghdr h;
		/* cppcheck-suppress unusedStructMember ; sizes the union */
		char buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
	} sctl;
	memset(&sctl, 0, sizeof(sctl));
	struct iovec siov = { .iov_base = r, .iov_len = (size_t)rlen };
	struct msghdr sm = {
		.msg_name = &peer, .msg_namelen = mh.msg_namelen,
		.msg_iov = &siov, .msg_iovlen = 1,
		.msg_control = &sctl,
	};
	const struct sockaddr_in6 *p6 = (const struct sockaddr_in6 *)&peer;
	int peer_is_v4 = peer.ss_family == AF_INET || IN6_IS_ADDR_V4MAPPED(&p6->sin6_addr);
	struct cmsghdr *c = &sctl.h;
	if (peer_is_v4 && pi4) {
		struct in_pktinfo out = { .ipi_spec_dst = pi4->ipi_addr };
		c->cmsg_level = IPPROTO_IP;
		c->cmsg_type = IP_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(out));
		memcpy(CMSG_DATA(c), &out, sizeof(out));
		sm.msg_controllen = CMSG_SPACE(sizeof(out));
	} else if (pi6) {
		struct in6_pktinfo out = { .ipi6_addr = pi6->ipi6_addr };
		/* A link-local source is only meaningful with its interface. */
		if (IN6_IS_ADDR_LINKLOCAL(&pi6->ipi6_addr))
			out.ipi6_ifindex = pi6->ipi6_ifindex;
		c->cmsg_level = IPPROTO_IPV6;
		c->cmsg_type = IPV6_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(out));
		memcpy(CMSG_DATA(c), &out, sizeof(out));
		sm.msg_controllen = CMSG_SPACE(sizeof(out));
	} else {
		sm.msg_control = NULL; /* bound to one address: the kernel knows */
	}
	int sent = sendmsg(fd, &sm, MSG_DONTWAIT) == rlen;
	if (!quiet) {
		char to[INET6_ADDRSTRLEN] = "?", name[DNS_NAME_MAX * 2];
		if (pi4)
			inet_ntop(AF_INET, &pi4->ipi_addr, to, sizeof(to));
		else if (pi6 && IN6_IS_ADDR_V4MAPPED(&pi6->ipi6_addr))
			inet_ntop(AF_INET, &pi6->ipi6_addr.s6_addr[12], to, sizeof(to));
		else if (pi6)
			inet_ntop(AF_INET6, &pi6->ipi6_addr, to, sizeof(to));
		dns_name_text(qn.name, qn.name_len, name, sizeof(name));
		fprintf(stderr, "dnsd: %s query to %s id=%u type=%u name=%s %s\n", from, to,
			dns_get16(q), qn.qtype, name, sent ? "answered" : "send-failed");
	}
}

static int open_socket(const char *spec)
{
	int err;
	struct addrinfo *ai = hostport_resolve(spec, SOCK_DGRAM, &err);
	if (!ai && !err)
		return -1;
	if (!ai) {
		fprintf(stderr, "dnsd: bad listen address '%s': %s\n", spec, gai_strerror(err));
		exit(1);
	}
	int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int one = 1, zero = 0, bad = fd < 0;
	if (!bad) {
		/* IP_PKTINFO also works on an IPv6 socket, for its IPv4 clients. */
		bad |= setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) < 0;
		if (ai->ai_family == AF_INET6) {
			bad |= setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0;
			bad |= setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one)) < 0;
		}
	}
	if (bad || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		fprintf(stderr, "dnsd: cannot listen on %s: %s\n", spec, strerror(errno));
		exit(1);
	}
	freeaddrinfo(ai);
	return fd;
}

int main(int argc, char **argv)
{
	int fds[MAX_LISTEN], nl = 0;
	inet_pton(AF_INET, ANSWER_IP4, &answer4);
	inet_pton(AF_INET6, ANSWER_IP6, &answer6);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quiet")) {
			quiet = 1;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage_text, stdout);
			return 0;
		} else if (i + 1 < argc && !strcmp(argv[i], "--listen")) {
			if (nl == MAX_LISTEN) {
				fprintf(stderr, "dnsd: at most %d --listen\n", MAX_LISTEN);
				return 2;
			}
			int fd = open_socket(argv[++i]);
			if (fd < 0) {
				fprintf(stderr, "dnsd: bad listen address '%s': want ADDR:PORT or [ADDR6]:PORT\n", argv[i]);
				return 2;
			}
			fds[nl++] = fd;
		} else {
			fprintf(stderr, "dnsd: unknown or incomplete option '%s'\n%s", argv[i], usage_text);
			return 2;
		}
	}
	if (!nl) {
		fputs(usage_text, stderr);
		return 2;
	}
	setvbuf(stderr, NULL, _IOLBF, 0);
	fprintf(stderr, "dnsd: listening\n");
	struct pollfd pfd[MAX_LISTEN];
	for (int i = 0; i < nl; i++)
		pfd[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
	for (;;) {
		if (poll(pfd, (nfds_t)nl, -1) < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "dnsd: poll: %s\n", strerror(errno));
			return 1;
		}
		for (int i = 0; i < nl; i++)
			if (pfd[i].revents & (POLLIN | POLLERR))
				serve_one(fds[i]);
	}
}
