/*
 * libFuzzer: what the ping probes take from outside. The first byte picks:
 *   0 ping_valid_host on a string: accepted hosts are 1..253 characters of
 *     [A-Za-z0-9.:%_-], never starting with '-' (no option injection)
 *   1 ping_echo_parse on a received datagram (exact-size buffer), flags
 *     and cookie from the input: never reads past it; what it accepts is
 *     an echo of the kind asked for and carries the cookie
 *   2 ping_echo_build + ping_echo_parse round trip: a reply made from our
 *     own request parses back to its id and sequence
 *   3 ping_checksum: a buffer carrying its own checksum sums to zero;
 *     ping_bucket/ping_bucket_le: the bucket of an RTT brackets it;
 *     ping_median lies within the samples
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ping.h"

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_ping: %s\n", what);
	abort();
}

static void host_case(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);
	size_t len;

	if (!s)
		return;
	memcpy(s, p, n);
	s[n] = 0;
	len = strlen(s);
	if (ping_valid_host(s)) {
		if (!len || len > PING_HOST_MAX || s[0] == '-')
			fail("valid_host: accepted a bad length or a leading '-'");
		for (size_t i = 0; i < len; i++)
			if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.:%_-",
				    s[i]))
				fail("valid_host: accepted a bad character");
	}
	free(s);
}

static void parse_case(const uint8_t *p, size_t n)
{
	uint64_t cookie;
	unsigned flags;
	uint8_t *pkt;
	uint16_t id, seq;

	if (n < 9)
		return;
	flags = p[0] & 7;
	memcpy(&cookie, p + 1, 8);
	p += 9;
	n -= 9;
	pkt = malloc(n ? n : 1);
	if (!pkt)
		return;
	memcpy(pkt, p, n);
	if (!ping_echo_parse(pkt, n, flags, cookie, &id, &seq)) {
		const uint8_t *icmp = pkt;
		size_t len = n;
		bool v6 = flags & PING_PARSE_V6, req = flags & PING_PARSE_REQUEST;

		if (flags & PING_PARSE_IPHDR) {
			icmp += (pkt[0] & 0xf) * 4;
			len -= (size_t)(pkt[0] & 0xf) * 4;
		}
		if (len < 8 || icmp[0] != (v6 ? (req ? 128 : 129) : (req ? 8 : 0)) || icmp[1])
			fail("echo_parse: accepted something not an echo of the kind asked for");
		if (len >= 16 && memcmp(icmp + 8, &cookie, 8))
			fail("echo_parse: accepted a foreign cookie");
		if (len < 16 && !req)
			fail("echo_parse: accepted a reply cut short");
		if (id != (icmp[4] << 8 | icmp[5]) || seq != (icmp[6] << 8 | icmp[7]))
			fail("echo_parse: id or sequence not the packet's");
	}
	free(pkt);
}

static void roundtrip_case(const uint8_t *p, size_t n)
{
	uint8_t buf[PING_ECHO_LEN];
	uint16_t id, seq, rid = 0, rseq = 0;
	uint64_t cookie;
	bool v6;

	if (n < 13)
		return;
	v6 = p[0] & 1;
	id = (uint16_t)(p[1] << 8 | p[2]);
	seq = (uint16_t)(p[3] << 8 | p[4]);
	memcpy(&cookie, p + 5, 8);
	if (ping_echo_build(buf, sizeof(buf) - 1, v6, id, seq, cookie))
		fail("echo_build: wrote into a buffer too small");
	if (ping_echo_build(buf, sizeof(buf), v6, id, seq, cookie) != PING_ECHO_LEN)
		fail("echo_build: wrong length");
	if (ping_echo_parse(buf, sizeof(buf), (v6 ? PING_PARSE_V6 : 0) | PING_PARSE_REQUEST, cookie,
			    &rid, &rseq) || rid != id || rseq != seq)
		fail("echo_build: our request does not parse back");
	/* The peer's answer: type "reply", IPv4 checksum redone. */
	buf[0] = v6 ? 129 : 0;
	if (!v6) {
		uint16_t c;

		buf[2] = buf[3] = 0;
		c = ping_checksum(buf, sizeof(buf));
		buf[2] = (uint8_t)(c >> 8);
		buf[3] = (uint8_t)c;
	}
	if (ping_echo_parse(buf, sizeof(buf), v6 ? PING_PARSE_V6 : 0, cookie, &rid, &rseq) ||
	    rid != id || rseq != seq)
		fail("echo_parse: the reply to our request is refused");
	if (!ping_echo_parse(buf, sizeof(buf), v6 ? PING_PARSE_V6 : 0, cookie ^ 1, &rid, &rseq))
		fail("echo_parse: a reply with another cookie is taken");
}

static void numbers_case(const uint8_t *p, size_t n)
{
	uint8_t *b;
	double v[64], lo = INFINITY, hi = -INFINITY, med, rtt;
	size_t k = 0;
	unsigned i;

	/* Checksum: put it into the first two bytes of an even-length copy. */
	b = malloc(n + 2);
	if (!b)
		return;
	b[0] = b[1] = 0;
	memcpy(b + 2, p, n);
	if (!(n & 1)) {
		uint16_t c = ping_checksum(b, n + 2);

		b[0] = (uint8_t)(c >> 8);
		b[1] = (uint8_t)c;
		if (ping_checksum(b, n + 2) != 0)
			fail("checksum: a buffer with its checksum does not sum to zero");
	}
	free(b);

	for (size_t j = 0; j + 4 <= n && k < 64; j += 4) {
		uint32_t u = (uint32_t)p[j] << 24 | (uint32_t)p[j + 1] << 16 | (uint32_t)p[j + 2] << 8 | p[j + 3];

		rtt = u / 1e8; /* 0 .. 43 s */
		i = ping_bucket(rtt);
		if (i > PING_EDGES || (i < PING_EDGES && !(rtt < ping_bucket_le(i))) ||
		    (i > 0 && !(rtt >= ping_bucket_le(i - 1))))
			fail("bucket: the RTT is not inside its bucket");
		v[k++] = rtt;
		lo = rtt < lo ? rtt : lo;
		hi = rtt > hi ? rtt : hi;
	}
	med = ping_median(v, k);
	if (k ? !(med >= lo && med <= hi) : !isnan(med))
		fail("median outside the samples");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 4) {
	case 0:
		host_case(data + 1, size - 1);
		break;
	case 1:
		parse_case(data + 1, size - 1);
		break;
	case 2:
		roundtrip_case(data + 1, size - 1);
		break;
	default:
		numbers_case(data + 1, size - 1);
		break;
	}
	return 0;
}
