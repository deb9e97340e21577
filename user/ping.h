/*
 * Active ICMP echo probes. One thread pings every target on its own
 * schedule (IPv4 and IPv6; a ping socket where net.ipv4.ping_group_range
 * allows it, a raw socket otherwise) and keeps per target: sent and
 * received counters, failures by reason, an RTT histogram, the median over
 * the last 60 s and the jitter. Names are looked up in the background, so a
 * slow or dead resolver never holds the probes up.
 */
#ifndef ISPMON_PING_H
#define ISPMON_PING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

#define PING_MAX_TARGETS 8
#define PING_HOST_MAX 253            /* longest host name or address text */
#define PING_MIN_INTERVAL_MS 100
#define PING_MAX_INTERVAL_MS (3600 * 1000)
#define PING_MIN_TIMEOUT_MS 10
#define PING_MAX_TIMEOUT_MS 30000    /* keeps probes in flight below PING_SLOTS */
#define PING_SLOTS 512               /* probes in flight per target */

struct ping_opts {
	const char *targets[PING_MAX_TARGETS]; /* host names or addresses, copied */
	unsigned n_targets;
	uint64_t interval_ms, timeout_ms;
};

struct ping;

/*
 * Open the sockets and start the probe thread (it inherits the caller's
 * signal mask). Unresolvable or unreachable targets are not errors: they
 * show up as failures. Returns 0, -EINVAL for bad options, or -errno.
 */
int ping_start(const struct ping_opts *o, struct ping **out);
/* Stop the thread and free everything; NULL is fine. */
void ping_stop(struct ping *p);

/* The ping_* metric families, with their HELP/TYPE lines. */
void ping_render(struct ping *p, struct mbuf *b);
/* Samples only (probe="ping") of the families every probe shares; the
 * caller writes their headers: ispmon_probe_success (once a target has a
 * result) and ispmon_probe_failures_total{reason}. */
void ping_render_success(struct ping *p, struct mbuf *b);
void ping_render_failures(struct ping *p, struct mbuf *b);

/* One target's figures at a moment, for the status page. */
struct ping_target_snap {
	char host[PING_HOST_MAX + 1];
	uint64_t sent, received;
	uint64_t lost;   /* probes sent that failed: timeout, unreachable, error */
	int success;     /* newest result: 1 answered, 0 failed, -1 none yet */
	double median_s; /* over the last 60 s, NaN without replies */
	/* CLOCK_MONOTONIC seconds, 0: none. When the newest reply arrived,
	 * and (answering now) the first reply after failures or none. */
	double last_reply, answering_since;
};
/* The first max targets, in the order given; returns how many. */
unsigned ping_snapshot(struct ping *p, struct ping_target_snap *out, unsigned max);

/* A host as --ping-target takes it: 1..PING_HOST_MAX of [A-Za-z0-9.:%_-]. */
bool ping_valid_host(const char *s);

/* --- pure helpers, exposed for the unit tests ----------------------------- */

/* Internet checksum (RFC 1071) of data, as a host-order value. */
uint16_t ping_checksum(const void *data, size_t len);

#define PING_ECHO_LEN 64 /* ICMP header + 56 bytes, as ping(8) sends */

/* An echo request (ICMPv6 if v6) carrying cookie; the IPv4 checksum is
 * filled in (the kernel does ICMPv6's). Returns PING_ECHO_LEN, or 0 if cap
 * is too small. */
size_t ping_echo_build(uint8_t *buf, size_t cap, bool v6, uint16_t id, uint16_t seq,
		       uint64_t cookie);

#define PING_PARSE_V6 0x1      /* ICMPv6 */
#define PING_PARSE_IPHDR 0x2   /* starts with an IPv4 header (raw IPv4 socket) */
#define PING_PARSE_REQUEST 0x4 /* our own request, as an ICMP error quotes it */

/*
 * Check that buf holds an echo reply (or, with PING_PARSE_REQUEST, an echo
 * request) carrying cookie, and a valid checksum where it can be checked
 * (IPv4). A quoted request may be cut after its 8-byte header; the cookie
 * is then not checked. Returns 0 and id and seq, or -EINVAL.
 */
int ping_echo_parse(const uint8_t *buf, size_t len, unsigned flags, uint64_t cookie,
		    uint16_t *id, uint16_t *seq);

/* RFC 3550 style jitter: J += (|D| - J) / 16 with D the difference of two
 * consecutive RTTs; jitter < 0 means none yet, and the first D sets J. */
double ping_jitter_step(double jitter, double diff);

/* Median of v[0..n) (v gets sorted); NaN when n is 0. */
double ping_median(double *v, size_t n);

/* Histogram buckets: the passive RTT histogram's edges (4 per power of two,
 * 64 us .. 14.7 s) plus +Inf. ping_bucket gives the index of the first
 * edge above rtt_s, PING_EDGES for +Inf. */
#define PING_EDGES 72
unsigned ping_bucket(double rtt_s);
double ping_bucket_le(unsigned i);

#endif
