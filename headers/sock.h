/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Structs and constants shared by bpf/sock.bpf.c (the kernel's view of the
 * router's own TCP sockets) and user/tcpsock.c. Plain __u64/__u32 only, as
 * in flow.h. The RTT histograms use flow.h's log-linear buckets.
 */
#ifndef ISPMON_SOCK_H
#define ISPMON_SOCK_H

#include "flow.h"

/* Which of the kernel's RTT estimates a sample is. */
enum ispmon_tcp_est {
	ISPMON_TCP_SRTT = 0,    /* sender's smoothed RTT (srtt_us): data it sent being acked */
	ISPMON_TCP_RCV_RTT = 1, /* receiver's estimate (rcv_rtt_est): data arriving */
	ISPMON_TCP_EST_MAX,
};

enum ispmon_tcp_event {
	ISPMON_TCP_EV_ACTIVE_OPEN = 0, /* connect(): SYN_SENT */
	ISPMON_TCP_EV_PASSIVE_OPEN,    /* accepted: SYN_RECV / ESTABLISHED from a listener */
	ISPMON_TCP_EV_EXISTING,        /* first seen already open (before ispmon started) */
	ISPMON_TCP_EV_CLOSED,          /* closed after it was established */
	ISPMON_TCP_EV_FAILED,          /* closed before it was established */
	ISPMON_TCP_EV_MAX,
};

/*
 * Stats groups: every socket counts in one scope (by its remote address),
 * and a socket the daemon watches (the speed test's) also in a watch group.
 */
enum ispmon_tcp_group {
	ISPMON_TCP_G_NETWORK = 0,  /* the remote end is another host */
	ISPMON_TCP_G_LOOPBACK = 1, /* 127/8, ::1, or the socket's own address */
	ISPMON_TCP_G_WATCH = 2,    /* first watch group */
	ISPMON_TCP_GROUPS = 4,
};
#define ISPMON_TCP_SCOPES 2
#define ISPMON_TCP_WATCH_GROUPS (ISPMON_TCP_GROUPS - ISPMON_TCP_G_WATCH)
#define ISPMON_TCP_WATCH_MAX 64 /* watched sockets at a time */

/* Connection lifetime buckets: upper edges (le) in ms, then one for the rest. */
#define ISPMON_TCP_DUR_EDGES 13
#define ISPMON_TCP_DUR_BUCKETS (ISPMON_TCP_DUR_EDGES + 1)

static inline __u64 ispmon_tcp_dur_edge_ms(__u32 i)
{
	switch (i) {
	case 0: return 10;
	case 1: return 100;
	case 2: return 500;
	case 3: return 1000;
	case 4: return 2500;
	case 5: return 5000;
	case 6: return 10000;
	case 7: return 30000;
	case 8: return 60000;
	case 9: return 300000;
	case 10: return 1800000;
	case 11: return 3600000;
	default: return 86400000;
	}
}

static inline __u32 ispmon_tcp_dur_bucket(__u64 us)
{
	__u32 i;

	for (i = 0; i < ISPMON_TCP_DUR_EDGES; i++)
		if (us <= ispmon_tcp_dur_edge_ms(i) * 1000)
			return i;
	return ISPMON_TCP_DUR_EDGES;
}

/* Congestion window (segments) buckets: le 1, 2, 4, ... 65536, +Inf. */
#define ISPMON_TCP_CWND_EDGES 17
#define ISPMON_TCP_CWND_BUCKETS (ISPMON_TCP_CWND_EDGES + 1)

static inline __u32 ispmon_tcp_cwnd_bucket(__u32 cwnd)
{
	__u32 v, b = 0;

	if (cwnd <= 1)
		return 0;
	/* ceil(log2(cwnd)) = floor(log2(cwnd - 1)) + 1, without clz. */
	v = cwnd - 1;
	if (v >> 16) { v >>= 16; b += 16; }
	if (v >> 8) { v >>= 8; b += 8; }
	if (v >> 4) { v >>= 4; b += 4; }
	if (v >> 2) { v >>= 2; b += 2; }
	if (v >> 1) { b += 1; }
	b += 1;
	return b < ISPMON_TCP_CWND_EDGES ? b : ISPMON_TCP_CWND_EDGES;
}

/* Per group, per CPU. RTT samples are taken at most once per RTT per socket. */
struct ispmon_tcp_stats {
	__u64 rtt_hist[ISPMON_TCP_EST_MAX][ISPMON_RTT_BUCKETS];
	__u64 rtt_sum_us[ISPMON_TCP_EST_MAX];
	__u64 cwnd_hist[ISPMON_TCP_CWND_BUCKETS]; /* sampled with srtt */
	__u64 cwnd_sum;
	__u64 dur_hist[ISPMON_TCP_DUR_BUCKETS];   /* closed connections with a known start */
	__u64 dur_sum_us;
	__u64 events[ISPMON_TCP_EV_MAX];
	__u64 bytes_acked;    /* tcp_sock.bytes_acked: sent and acknowledged */
	__u64 bytes_received; /* tcp_sock.bytes_received */
	__u64 retrans_segs;   /* tcp_sock.total_retrans: as RetransSegs counts them */
};

#define ISPMON_TCP_SF_ESTABLISHED 0x1

/* Per socket (keyed by its kernel address): what was already folded into
 * the stats, and when the next RTT samples are due. */
struct ispmon_tcp_sock {
	__u64 open_ns;        /* when it opened; 0: opened before ispmon */
	__u64 next_ns[ISPMON_TCP_EST_MAX];
	__u64 bytes_acked;    /* folded so far */
	__u64 bytes_received;
	__u64 sample_acked;   /* bytes_acked at the last srtt sample */
	__u64 sample_received;
	__u32 total_retrans;
	__u8 flags;
	__u8 scope;           /* ISPMON_TCP_G_NETWORK or _LOOPBACK */
	__u16 pad;
};

/* A connection as its socket sees it, for the watch map. IPv4 (also
 * IPv4-mapped IPv6) in word 0 with family 4. Ports in host order. */
struct ispmon_tcp_tuple {
	__u32 saddr[4]; /* local */
	__u32 daddr[4]; /* remote */
	__u16 sport;
	__u16 dport;
	__u8 family;
	__u8 pad[3];
};

#endif /* ISPMON_SOCK_H */
