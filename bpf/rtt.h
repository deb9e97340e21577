/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Passive RTT from forwarded traffic, included by flow.bpf.c so that one TC
 * program per hook parses each packet once.
 *
 * A packet may be a request (remembered with the time it passed) and an
 * answer (matched against a request that passed the other way). Where the
 * request passed decides the leg: remembered on egress, answered on
 * ingress = WAN leg; remembered on ingress, answered on egress = LAN leg.
 *
 *  tcp_ts   data/SYN packets remember (flow, TSval); a reverse packet whose
 *           TSecr echoes it answers. Only the first packet carrying a TSval
 *           counts; a flow first seen mid-stream waits for the first TSval
 *           change; retransmissions and reordered packets never remember;
 *           at most one record per flow and rate_limit_ns.
 *  tcp_seq  flows without timestamps: one outstanding segment end E per
 *           flow; the first ACK >= E answers. A retransmission that covers
 *           E cancels it (Karn's rule).
 *  dns      UDP to port 53 remembers (flow, id); the response answers. A
 *           repeated query with the same id cancels it.
 *  icmp     echo request remembers (flow, id/seq); the reply answers.
 *
 * Only headers are read (for DNS: the 2-byte id of the DNS header).
 */
#ifndef ISPMON_RTT_H
#define ISPMON_RTT_H

#define TCPOPT_EOL 0
#define TCPOPT_NOP 1
#define TCPOPT_TIMESTAMP 8
#define TCPOLEN_TIMESTAMP 10
#define MAX_TCP_OPTS 40 /* option bytes in the largest TCP header */
#define DNS_PORT 53
#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129
#define PENDING_MAX_AGE_NS (10ULL * 1000000000ULL) /* older answers are no RTT */

#ifndef ISPMON_FLOW_ENTRIES
#define ISPMON_FLOW_ENTRIES 16384
#endif
#ifndef ISPMON_PENDING_ENTRIES
#define ISPMON_PENDING_ENTRIES 16384
#endif

#ifndef ISPMON_DEV_ENTRIES
#define ISPMON_DEV_ENTRIES 512
#endif

/* Set by the loader. */
const volatile __u64 rtt_rate_limit_ns = 10 * 1000 * 1000;
/* On a LAN interface: per-device accounting, and the legs swap (an answer
 * leaving towards the device closes a request that went to the internet). */
const volatile bool lan_side = false;
/* The per-CPU shortcut for bursts of one TSval (rtt_seen); make bench turns
 * it off to measure the flow table's way for the same packets. */
const volatile bool tcp_shortcut = true;

/* Where a sample is taken: its leg and, on a LAN interface, its device
 * (looked up only when a sample is taken: most packets give none). */
struct rtt_at {
	__u32 leg;
	bool has_dev;
	struct ispmon_dev_key dk;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, ISPMON_DEV_ENTRIES);
	__type(key, struct ispmon_dev_key);
	__type(value, struct ispmon_dev_stats);
} devices SEC(".maps");

/* In front of devices, per CPU: see ISPMON_DEV_CACHE_SLOTS. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ISPMON_DEV_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct ispmon_dev_slot);
} dev_cache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ISPMON_FLOW_ENTRIES);
	__type(key, struct ispmon_flow_key);
	__type(value, struct ispmon_flow_state);
} flow_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ISPMON_PENDING_ENTRIES);
	__type(key, struct ispmon_pending_key);
	__type(value, __u64);
} pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ISPMON_RTT_SERIES * ISPMON_RTT_BUCKETS);
	__type(key, __u32);
	__type(value, __u64);
} rtt_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ISPMON_RTT_SERIES);
	__type(key, __u32);
	__type(value, struct ispmon_rtt_sum);
} rtt_sum SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ISPMON_M_MAX);
	__type(key, __u32);
	__type(value, struct ispmon_rtt_counters);
} rtt_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ispmon_flow_counters);
} flow_counters SEC(".maps");

/*
 * What this CPU last let through for a TCP flow with timestamps: its TSval
 * and TSecr, once the flow's state holds both. A TSval stays the same for a
 * clock tick (1 ms on Linux) while a burst of segments carries it, and so
 * does the TSecr of their ACKs: such a packet can neither remember nor
 * answer anything and only moves the highest sequence sent, which the slot
 * keeps until the next packet of the flow takes the flow table's way. This
 * spares most packets of a busy flow the hash lookup. Direct-mapped; a
 * colliding flow takes the slot over.
 */
#define SEEN_MAX_AHEAD (16u << 20) /* bytes: 1 ms at 100 Gbit/s is 12.5 MB */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1 << ISPMON_SEEN_BITS);
	__type(key, __u32);
	__type(value, struct ispmon_tcp_seen);
} rtt_seen SEC(".maps");

/* Keys are compared as words (without branches): no memcmp in BPF. The
 * keys' sizes are multiples of 4, their alignment at least 4. */
typedef __u32 __attribute__((may_alias)) rtt_word;

static __always_inline bool words_eq(const void *a, const void *b, const int bytes)
{
	const rtt_word *x = a, *y = b;
	__u32 d = 0;

#pragma unroll
	for (int i = 0; i < bytes / 4; i++)
		d |= x[i] ^ y[i];
	return !d;
}

static __always_inline bool flow_key_eq(const struct ispmon_flow_key *a,
					const struct ispmon_flow_key *b)
{
	return words_eq(a, b, sizeof(*a));
}

static __always_inline bool dev_key_eq(const struct ispmon_dev_key *a,
				       const struct ispmon_dev_key *b)
{
	return words_eq(a, b, sizeof(*a));
}

static __always_inline __u32 seen_slot_of(const struct ispmon_flow_key *k)
{
	__u32 w = k->saddr[0] ^ k->saddr[3] ^ k->daddr[0] ^ k->daddr[3] ^
		  ((__u32)k->sport << 16 | k->dport);

	return (w * 2654435761u) >> (32 - ISPMON_SEEN_BITS);
}

/* An all-zero device entry to create new ones from: too big for the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ispmon_dev_stats);
} dev_zero SEC(".maps");

/* A device's counters on this CPU: its cache slot when it owns one (or the
 * slot is free and create is set), else its LRU entry, created if asked. */
static __always_inline struct ispmon_dev_stats *dev_find(const struct ispmon_dev_key *dk,
							 bool create)
{
	__u32 idx = ispmon_dev_slot_of(dk), k0 = 0;
	struct ispmon_dev_slot *slot = bpf_map_lookup_elem(&dev_cache, &idx);
	struct ispmon_dev_stats *dev, *zero;

	if (slot) {
		if (slot->used && dev_key_eq(&slot->key, dk))
			return &slot->st;
		if (!slot->used && create) {
			/* A new slot is all zero: only the key to write. */
			__builtin_memcpy(&slot->key, dk, sizeof(*dk));
			slot->used = 1;
			return &slot->st;
		}
	}
	dev = bpf_map_lookup_elem(&devices, dk);
	if (dev || !create)
		return dev;
	zero = bpf_map_lookup_elem(&dev_zero, &k0);
	if (!zero)
		return NULL;
	bpf_map_update_elem(&devices, dk, zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&devices, dk);
}

/* Wrap-around safe sequence/timestamp comparisons (RFC 1982 style). */
static __always_inline bool before32(__u32 a, __u32 b) { return (__s32)(a - b) < 0; }
static __always_inline bool after32(__u32 a, __u32 b) { return (__s32)(b - a) < 0; }

static __always_inline struct ispmon_rtt_counters *counters(__u32 method)
{
	return bpf_map_lookup_elem(&rtt_counters, &method);
}

static __always_inline void reverse_key(const struct ispmon_flow_key *k,
					struct ispmon_flow_key *r)
{
	__builtin_memcpy(r->saddr, k->daddr, sizeof(r->saddr));
	__builtin_memcpy(r->daddr, k->saddr, sizeof(r->daddr));
	r->sport = k->dport;
	r->dport = k->sport;
	r->proto = k->proto;
	r->family = k->family;
	r->pad = 0;
}

static __always_inline void rtt_sample(const struct rtt_at *at, __u32 method, __u64 rtt_ns)
{
	__u32 leg = at->leg & 1;
	__u32 series = leg * ISPMON_M_MAX + method;
	__u32 bucket = ispmon_rtt_bucket(rtt_ns / 1000);
	__u32 idx = series * ISPMON_RTT_BUCKETS + bucket;
	struct ispmon_dev_stats *dev = at->has_dev ? dev_find(&at->dk, false) : NULL;
	struct ispmon_rtt_counters *c;
	struct ispmon_rtt_sum *s;
	__u64 *n;

	if (dev) {
		__u32 db = bucket >> ISPMON_DEV_RTT_SHIFT;

		if (db > ISPMON_DEV_RTT_BUCKETS - 1)
			db = ISPMON_DEV_RTT_BUCKETS - 1;
		dev->rtt_hist[leg][db]++;
		dev->rtt_sum_ns[leg] += rtt_ns;
		dev->rtt_count[leg]++;
	}
	/* The line-wide histograms come from the WAN interface only; a LAN
	 * interface sees the same flows and would count them twice. */
	if (lan_side)
		return;
	n = bpf_map_lookup_elem(&rtt_hist, &idx);
	if (n)
		*n += 1;
	s = bpf_map_lookup_elem(&rtt_sum, &series);
	if (s) {
		s->sum_ns += rtt_ns;
		s->count++;
	}
	c = counters(method);
	if (c)
		c->samples++;
}

/* Remember a request; on a duplicate (same ident in flight) cancel both,
 * since the answer could belong to either. */
static __always_inline void remember(const struct ispmon_flow_key *flow, __u32 ident,
				     __u32 method, __u64 now, bool cancel_dup)
{
	struct ispmon_pending_key pk = {.ident = ident, .method = method};
	struct ispmon_rtt_counters *c = counters(method);

	pk.flow = *flow;
	if (!bpf_map_update_elem(&pending, &pk, &now, BPF_NOEXIST)) {
		if (c)
			c->records++;
		return;
	}
	if (cancel_dup) {
		bpf_map_delete_elem(&pending, &pk);
		if (c)
			c->ambiguous++;
	}
}

/* The clock is read only when a packet needs it: most packets of a bulk
 * flow neither remember nor answer anything. */
static __always_inline __u64 clock_ns(__u64 *now)
{
	if (!*now)
		*now = bpf_ktime_get_ns();
	return *now;
}

/* Match an answer: the request went the reverse way of this packet. */
static __always_inline void answer(const struct ispmon_flow_key *flow, __u32 ident,
				   __u32 method, const struct rtt_at *at, __u64 *nowp)
{
	struct ispmon_pending_key pk = {.ident = ident, .method = method};
	__u64 *t, now;

	reverse_key(flow, &pk.flow);
	t = bpf_map_lookup_elem(&pending, &pk);
	if (!t)
		return;
	now = clock_ns(nowp);
	if (now > *t && now - *t < PENDING_MAX_AGE_NS)
		rtt_sample(at, method, now - *t);
	bpf_map_delete_elem(&pending, &pk);
}

/*
 * Find the timestamp option; any valid layout is walked. The walk steps a
 * constant byte index and jumps to the next option start, so every packet
 * access has a constant offset from base: the verifier checks 40 small
 * steps instead of a pointer that moves by packet-controlled amounts.
 */
static __always_inline bool tcp_ts_opt(void *data_end, __u8 *base, __u32 optlen,
				       __u32 *tsval, __u32 *tsecr)
{
	__u32 next = 0;

	/* The layout every Linux, BSD and Apple stack sends on data and ACKs:
	 * NOP, NOP, timestamps. */
	if (optlen >= 12 && (void *)(base + 12) <= data_end && base[0] == TCPOPT_NOP &&
	    base[1] == TCPOPT_NOP && base[2] == TCPOPT_TIMESTAMP && base[3] == TCPOLEN_TIMESTAMP) {
		*tsval = (__u32)base[4] << 24 | (__u32)base[5] << 16 | (__u32)base[6] << 8 | base[7];
		*tsecr = (__u32)base[8] << 24 | (__u32)base[9] << 16 | (__u32)base[10] << 8 | base[11];
		return true;
	}

#pragma unroll
	for (__u32 i = 0; i < MAX_TCP_OPTS; i++) {
		__u8 kind, len;

		if (i != next)
			continue; /* inside the previous option */
		if (i >= optlen || (void *)(base + i + 1) > data_end)
			return false;
		kind = base[i];
		if (kind == TCPOPT_EOL)
			return false;
		if (kind == TCPOPT_NOP) {
			next = i + 1;
			continue;
		}
		if ((void *)(base + i + 2) > data_end)
			return false;
		len = base[i + 1];
		if (len < 2)
			return false;
		if (kind == TCPOPT_TIMESTAMP && len == TCPOLEN_TIMESTAMP) {
			if (i + TCPOLEN_TIMESTAMP > optlen ||
			    (void *)(base + i + TCPOLEN_TIMESTAMP) > data_end)
				return false;
			*tsval = (__u32)base[i + 2] << 24 | (__u32)base[i + 3] << 16 |
				 (__u32)base[i + 4] << 8 | base[i + 5];
			*tsecr = (__u32)base[i + 6] << 24 | (__u32)base[i + 7] << 16 |
				 (__u32)base[i + 8] << 8 | base[i + 9];
			return true;
		}
		next = i + len;
	}
	return false;
}

static __always_inline void rtt_tcp(struct __sk_buff *skb, void *data, void *data_end,
				    struct pkt *p, const struct rtt_at *at, __u64 *nowp)
{
	struct tcphdr *th = data + p->l4_off;
	struct ispmon_flow_state *st, fresh = {};
	struct ispmon_flow_key rkey;
	struct ispmon_flow_counters *fc;
	struct ispmon_rtt_counters *c;
	struct ispmon_tcp_seen *seen;
	__u32 doff, plen, seq, ack, end, tsval = 0, tsecr = 0, zero = 0, idx;
	bool has_ts, syn, fin, new_range, retrans, newer_ts, data_or_syn, burst, mine;
	__u64 now;

	if (p->l4_off > 0x3fff || (void *)(th + 1) > data_end)
		return;
	doff = th->doff * 4;
	if (doff < sizeof(*th))
		return;
	/* GRO/BIG TCP may leave the IP length unusable: fall back to skb. */
	plen = p->l4_len;
	if (plen > skb->len || plen < doff)
		plen = skb->len > p->l4_off + doff ? skb->len - p->l4_off : doff;
	plen -= doff;
	has_ts = tcp_ts_opt(data_end, (__u8 *)(th + 1), doff - sizeof(*th), &tsval, &tsecr);
	seq = bpf_ntohl(th->seq);
	ack = bpf_ntohl(th->ack_seq);
	syn = th->syn;
	fin = th->fin;
	data_or_syn = plen || syn || fin;
	end = seq + plen + syn + fin;

	/* 0. The same TSval and TSecr as the flow's last packet on this CPU
	 * (see rtt_seen): nothing to do but note how far the data went. */
	idx = seen_slot_of(&p->key);
	seen = bpf_map_lookup_elem(&rtt_seen, &idx);
	burst = has_ts && th->ack && !syn && !fin && !th->rst;
	mine = tcp_shortcut && seen && seen->valid && flow_key_eq(&seen->key, &p->key);
	if (mine && burst && seen->tsval == tsval && seen->tsecr == tsecr) {
		if (plen && after32(end, seen->end))
			seen->end = end;
		return;
	}
	if (mine)
		seen->valid = 0; /* this packet goes the flow table's way */

	fc = bpf_map_lookup_elem(&flow_counters, &zero);
	if (th->rst) {
		reverse_key(&p->key, &rkey);
		idx = seen_slot_of(&rkey);
		seen = bpf_map_lookup_elem(&rtt_seen, &idx);
		if (seen && flow_key_eq(&seen->key, &rkey))
			seen->valid = 0;
		if (!bpf_map_delete_elem(&flow_state, &p->key) && fc)
			fc->closed++;
		if (!bpf_map_delete_elem(&flow_state, &rkey) && fc)
			fc->closed++;
		return;
	}
	st = bpf_map_lookup_elem(&flow_state, &p->key);
	/* Ahead, and by no more than a burst: a slot left behind on a CPU
	 * the flow moved off may be 2^31 behind by now, which looks ahead. */
	if (mine && st && (st->flags & ISPMON_FS_SEQ_INIT) && after32(seen->end, st->highest_end) &&
	    seen->end - st->highest_end < SEEN_MAX_AHEAD)
		st->highest_end = seen->end;

	/* 1. As an answer to the reverse direction. Only the first packet
	 * echoing a TSecr can match: the rest of a burst skips the lookup. */
	if (th->ack) {
		if (has_ts) {
			if (tsecr && !(st && (st->flags & ISPMON_FS_TSECR_SEEN) &&
				       st->last_tsecr == tsecr)) {
				answer(&p->key, tsecr, ISPMON_M_TCP_TS, at, nowp);
				if (st) {
					st->last_tsecr = tsecr;
					st->flags |= ISPMON_FS_TSECR_SEEN;
				}
			}
		} else if (!(st && (st->flags & ISPMON_FS_ACK_SEEN) && st->last_ack == ack)) {
			/* The same ACK again (data flowing the other way only)
			 * cannot close anything new. */
			struct ispmon_flow_state *rst;

			if (st) {
				st->last_ack = ack;
				st->flags |= ISPMON_FS_ACK_SEEN;
			}
			reverse_key(&p->key, &rkey);
			rst = bpf_map_lookup_elem(&flow_state, &rkey);
			if (rst && (rst->flags & ISPMON_FS_PENDING) &&
			    !before32(ack, rst->pending_end)) {
				rst->flags &= ~ISPMON_FS_PENDING;
				now = clock_ns(nowp);
				if (now > rst->pending_ts_ns &&
				    now - rst->pending_ts_ns < PENDING_MAX_AGE_NS)
					rtt_sample(at, ISPMON_M_TCP_SEQ,
						   now - rst->pending_ts_ns);
			}
		}
	}

	/* 2. As a request. */
	/* A SYN that does not repeat the one this state began with opens a new
	 * connection on a reused 4-tuple: start over as for an unknown flow. */
	if (!st || !(st->flags & ISPMON_FS_SEQ_INIT) || (syn && end != st->highest_end)) {
		/* New to us. Mid-stream we cannot tell a retransmission from
		 * new data, nor the first packet of a TSval: only a SYN is
		 * remembered now, anything else from the next change on.
		 * A sender of pure ACKs gets an entry too, for the echo
		 * shortcut above, but its sequence space starts at its first
		 * data. */
		if (!data_or_syn && (!has_ts || st))
			goto done;
		now = clock_ns(nowp);
		fresh.last_seen_ns = now;
		if (has_ts) {
			fresh.last_tsecr = tsecr;
			fresh.flags = ISPMON_FS_TSECR_SEEN;
		}
		if (data_or_syn) {
			fresh.highest_end = end;
			fresh.flags |= ISPMON_FS_SEQ_INIT;
			if (has_ts) {
				fresh.last_tsval = tsval;
				fresh.flags |= ISPMON_FS_TSVAL_SEEN;
			}
		}
		if (syn) {
			if (has_ts) {
				fresh.last_record_ns = now;
				remember(&p->key, tsval, ISPMON_M_TCP_TS, now, true);
			} else {
				fresh.pending_end = end;
				fresh.pending_ts_ns = now;
				fresh.flags |= ISPMON_FS_PENDING;
				c = counters(ISPMON_M_TCP_SEQ);
				if (c)
					c->records++;
			}
		}
		if (st) {
			*st = fresh;
		} else if (!bpf_map_update_elem(&flow_state, &p->key, &fresh, BPF_NOEXIST) && fc) {
			fc->created++;
		}
		goto done;
	}
	if (!data_or_syn) {
		/* A pure ACK is never remembered (nobody answers it promptly),
		 * but the peer may echo its TSval at once: a data packet with
		 * the same TSval later is not the first to carry it. */
		if (has_ts && (!(st->flags & ISPMON_FS_TSVAL_SEEN) ||
			       after32(tsval, st->last_tsval))) {
			st->last_tsval = tsval;
			st->flags |= ISPMON_FS_TSVAL_SEEN;
		}
		goto done;
	}

	/* Entirely new sequence space, or (partly) sent before? */
	new_range = after32(end, st->highest_end) && !before32(seq, st->highest_end);
	retrans = !new_range;
	if (after32(end, st->highest_end))
		st->highest_end = end;
	if (retrans && (st->flags & ISPMON_FS_PENDING) && before32(seq, st->pending_end)) {
		/* Karn: the ACK could answer either copy. */
		st->flags &= ~ISPMON_FS_PENDING;
		c = counters(ISPMON_M_TCP_SEQ);
		if (c)
			c->ambiguous++;
	}

	if (has_ts) {
		newer_ts = !(st->flags & ISPMON_FS_TSVAL_SEEN) || after32(tsval, st->last_tsval);
		if (!newer_ts)
			goto done; /* same TSval as before, or reordered */
		st->last_tsval = tsval;
		st->flags |= ISPMON_FS_TSVAL_SEEN;
		/* TSvals tick at least every few ms while a flow is busy:
		 * often enough to keep the idle sweep away. */
		now = clock_ns(nowp);
		st->last_seen_ns = now;
		if (retrans)
			goto done;
		if (now - st->last_record_ns < rtt_rate_limit_ns) {
			c = counters(ISPMON_M_TCP_TS);
			if (c)
				c->rate_limited++;
			goto done;
		}
		st->last_record_ns = now;
		remember(&p->key, tsval, ISPMON_M_TCP_TS, now, true);
		goto done;
	}

	/* No timestamps: SEQ/ACK with one outstanding measurement, which an
	 * ACK that never comes must not block forever. While one is out, most
	 * segments only refresh the idle clock and check that age: a tick's
	 * precision (the coarse clock, several times cheaper) does for both;
	 * signed, since it may lag the precise clock by a tick. */
	if (!new_range)
		goto done;
	if (st->flags & ISPMON_FS_PENDING) {
		now = bpf_ktime_get_coarse_ns();
		st->last_seen_ns = now;
		if ((__s64)(now - st->pending_ts_ns) < (__s64)PENDING_MAX_AGE_NS)
			goto done;
	}
	now = clock_ns(nowp);
	st->last_seen_ns = now;
	st->pending_end = end;
	st->pending_ts_ns = now;
	st->flags |= ISPMON_FS_PENDING;
	c = counters(ISPMON_M_TCP_SEQ);
	if (c)
		c->records++;
done:
	/* Arm the slot once the flow table holds this TSval and TSecr: a
	 * repeat would change nothing there but the highest end. */
	if (tcp_shortcut && seen && burst && st &&
	    (st->flags & (ISPMON_FS_SEQ_INIT | ISPMON_FS_TSVAL_SEEN | ISPMON_FS_TSECR_SEEN |
			  ISPMON_FS_PENDING)) ==
		    (ISPMON_FS_SEQ_INIT | ISPMON_FS_TSVAL_SEEN | ISPMON_FS_TSECR_SEEN) &&
	    st->last_tsval == tsval && st->last_tsecr == tsecr) {
		seen->key = p->key;
		seen->tsval = tsval;
		seen->tsecr = tsecr;
		seen->end = st->highest_end;
		seen->valid = 1;
	}
}

static __always_inline void rtt_dns(void *data, void *data_end, struct pkt *p,
				    const struct rtt_at *at, __u64 *now)
{
	__u8 *dns = data + p->l4_off + sizeof(struct udphdr);
	__u16 id;
	bool response;

	if (p->l4_off > 0x3fff || (void *)(dns + 3) > data_end)
		return;
	/* 12-byte DNS header at least; we read its id and the QR bit only.
	 * QR, not the ports, tells a query from a response: servers talking
	 * to each other use port 53 on both ends. */
	if (p->l4_len < sizeof(struct udphdr) + 12)
		return;
	id = (__u16)dns[0] << 8 | dns[1];
	response = dns[2] & 0x80;
	if (!response && p->key.dport == bpf_htons(DNS_PORT))
		remember(&p->key, id, ISPMON_M_DNS, clock_ns(now), true);
	else if (response && p->key.sport == bpf_htons(DNS_PORT))
		answer(&p->key, id, ISPMON_M_DNS, at, now);
}

static __always_inline void rtt_icmp(void *data, void *data_end, struct pkt *p,
				     const struct rtt_at *at, __u64 *now)
{
	struct {
		__u8 type;
		__u8 code;
		__be16 csum;
		__be16 id;
		__be16 seq;
	} *ic = data + p->l4_off;
	bool v6 = p->l4_proto == IPPROTO_ICMPV6;
	__u32 ident;

	if (p->l4_off > 0x3fff || (void *)(ic + 1) > data_end)
		return;
	ident = ((__u32)bpf_ntohs(ic->id) << 16) | bpf_ntohs(ic->seq);
	if (ic->type == (v6 ? ICMPV6_ECHO_REQUEST : ICMP_ECHO))
		remember(&p->key, ident, ISPMON_M_ICMP, clock_ns(now), true);
	else if (ic->type == (v6 ? ICMPV6_ECHO_REPLY : ICMP_ECHOREPLY))
		answer(&p->key, ident, ISPMON_M_ICMP, at, now);
}

/* Flow key from the headers parse_pkt() found; false if they moved. */
static __always_inline bool rtt_key(void *data, void *data_end, struct pkt *p,
				    struct ispmon_flow_key *k, __u32 family)
{
	k->family = family;
	k->proto = p->l4_proto;
	if (family == 4) {
		struct iphdr *ip = data + p->l3_off;

		if ((void *)(ip + 1) > data_end)
			return false;
		k->saddr[0] = ip->saddr;
		k->daddr[0] = ip->daddr;
	} else {
		struct ipv6hdr *ip6 = data + p->l3_off;

		if ((void *)(ip6 + 1) > data_end)
			return false;
		__builtin_memcpy(k->saddr, &ip6->saddr, 16);
		__builtin_memcpy(k->daddr, &ip6->daddr, 16);
	}
	if (p->l4_proto == IPPROTO_TCP || p->l4_proto == IPPROTO_UDP) {
		__be16 *ports = data + p->l4_off;

		if ((void *)(ports + 2) > data_end)
			return false;
		k->sport = ports[0];
		k->dport = ports[1];
	}
	return true;
}

/* The device end of a packet on a LAN interface: the sender when it
 * arrives (ingress), the receiver when it leaves. By MAC where frames have
 * one, else by IP address. False for group addresses. */
static __always_inline bool dev_key(void *data, void *data_end,
				    const struct ispmon_flow_key *k, bool ingress,
				    bool l3, struct ispmon_dev_key *dk)
{
	if (!l3) {
		struct ethhdr *eth = data;
		__u8 *mac;

		if ((void *)(eth + 1) > data_end)
			return false;
		mac = ingress ? eth->h_source : eth->h_dest;
		if (mac[0] & 1)
			return false; /* multicast or broadcast */
		__builtin_memcpy(dk->addr, mac, 6);
		dk->family = 0;
		return true;
	}
	__builtin_memcpy(dk->addr, ingress ? k->saddr : k->daddr, 16);
	dk->family = k->family;
	return true;
}

/*
 * A global (non-inlined) function: the verifier checks it once with unknown
 * offsets instead of once per path through the link-layer parser, which
 * would multiply the option walk's states past its limit.
 * meta = l4_proto | family << 8 | ingress << 16 | l3_dev << 17. 64-bit arguments: a 32-bit
 * one gets zero-extended into a fresh register after its bounds check, and
 * the verifier loses the bound.
 */
__noinline int rtt_handle(struct __sk_buff *skb, __u64 l3_off, __u64 l4_off,
			  __u64 l4_len, __u64 meta)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 family = (meta >> 8) & 0xff;
	bool ingress = (meta >> 16) & 1;
	/* On the WAN interface an answer arriving (ingress) closes a request
	 * that left to the internet: WAN leg. On a LAN interface it is the
	 * other way round. */
	struct rtt_at at = {.leg = ingress != lan_side ? ISPMON_LEG_WAN : ISPMON_LEG_LAN};
	struct pkt p = {};
	__u64 now = 0;

	if (!skb || l3_off > 64 || l4_off > 0x3fff || (family != 4 && family != 6))
		return 0;
	barrier_var(l3_off);
	barrier_var(l4_off);
	p.l3_off = l3_off;
	p.l4_off = l4_off;
	p.l4_len = l4_len;
	p.l4_proto = meta & 0xff;
	if (!rtt_key(data, data_end, &p, &p.key, family))
		return 0;
	if (lan_side)
		at.has_dev = dev_key(data, data_end, &p.key, ingress, (meta >> 17) & 1, &at.dk);
	switch (p.l4_proto) {
	case IPPROTO_TCP:
		rtt_tcp(skb, data, data_end, &p, &at, &now);
		break;
	case IPPROTO_UDP:
		rtt_dns(data, data_end, &p, &at, &now);
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		rtt_icmp(data, data_end, &p, &at, &now);
		break;
	default:
		break;
	}
	return 0;
}

static __always_inline void rtt_packet(struct __sk_buff *skb, struct pkt *p,
				       enum ispmon_l3 l3, bool ingress)
{
	if (p->frag || (p->l4_proto != IPPROTO_TCP && p->l4_proto != IPPROTO_UDP &&
			p->l4_proto != IPPROTO_ICMP && p->l4_proto != IPPROTO_ICMPV6))
		return;
	rtt_handle(skb, p->l3_off, p->l4_off, p->l4_len,
		   p->l4_proto | (l3 == ISPMON_L3_IPV4 ? 4 : 6) << 8 | (__u32)ingress << 16 |
			   (__u32)l3_dev << 17);
}

#endif /* ISPMON_RTT_H */
