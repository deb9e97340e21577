// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * The kernel's view of the router's own TCP sockets (the speed test's
 * connections and any other service on the box): smoothed RTT, the
 * receiver's RTT estimate, cwnd, retransmits, bytes acked and received, and
 * a tcplife-like summary at close, aggregated here into per-CPU histograms
 * and counters.
 *
 * One set of handlers, hooked in one of four ways (the attach ladder; the
 * loader enables one rung's programs with bpf_program__set_autoload):
 *   fentry/fexit  tcp_rcv_established, tcp_retransmit_skb (exit), tcp_set_state
 *   tp_btf        tcp_probe, tcp_retransmit_skb, inet_sock_set_state
 *   raw_tp        the same tracepoints, for kernels without BTF (CO-RE from --btf)
 *   kprobe        tcp_rcv_established, tcp_retransmit_skb, tcp_set_state
 * Every field is read with BPF_CORE_READ, so one object serves them all on
 * every kernel.
 *
 * Tracing hooks are host-wide: only sockets in the network namespace ispmon
 * runs in count (netns_ino, set by the loader).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include "sock.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

/* Not in vmlinux.h: the kernel has them as an anonymous enum. */
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7

/* Set by the loader before load: the inode of /proc/self/ns/net. */
const volatile __u32 netns_ino = 0;

/* Watched sockets exist (userspace sets it): build the tuple only then. */
__u32 watching = 0;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* the struct sock's address */
	__type(value, struct ispmon_tcp_sock);
} socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ISPMON_TCP_GROUPS);
	__type(key, __u32);
	__type(value, struct ispmon_tcp_stats);
} tcp_stats SEC(".maps");

/* Sockets the daemon watches (the speed test's own), value = group. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ISPMON_TCP_WATCH_MAX);
	__type(key, struct ispmon_tcp_tuple);
	__type(value, __u32);
} watch SEC(".maps");

static __always_inline bool ours(const struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum) == netns_ino;
}

static __always_inline bool v4mapped(const __u32 a[4])
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff);
}

/* The connection's addresses and ports, IPv4-mapped IPv6 folded to IPv4. */
static __always_inline void sock_tuple(const struct sock *sk, struct ispmon_tcp_tuple *t)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	t->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	t->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		t->family = 4;
		t->saddr[0] = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		t->daddr[0] = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		return;
	}
	BPF_CORE_READ_INTO(&t->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32);
	BPF_CORE_READ_INTO(&t->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr32);
	t->family = 6;
	if (v4mapped(t->saddr) && v4mapped(t->daddr)) {
		t->family = 4;
		t->saddr[0] = t->saddr[3];
		t->daddr[0] = t->daddr[3];
		t->saddr[2] = t->saddr[3] = t->daddr[2] = t->daddr[3] = 0;
	}
}

/* Loopback: the remote end is this host (127/8, ::1, or our own address). */
static __always_inline __u8 sock_scope(const struct sock *sk)
{
	struct ispmon_tcp_tuple t = {};
	bool same;

	sock_tuple(sk, &t);
	if (t.family == 4)
		return (bpf_ntohl(t.daddr[0]) >> 24) == 127 || t.daddr[0] == t.saddr[0] ?
			       ISPMON_TCP_G_LOOPBACK : ISPMON_TCP_G_NETWORK;
	same = t.daddr[0] == t.saddr[0] && t.daddr[1] == t.saddr[1] &&
	       t.daddr[2] == t.saddr[2] && t.daddr[3] == t.saddr[3];
	if (same || (!t.daddr[0] && !t.daddr[1] && !t.daddr[2] && t.daddr[3] == bpf_htonl(1)))
		return ISPMON_TCP_G_LOOPBACK;
	return ISPMON_TCP_G_NETWORK;
}

static __always_inline struct ispmon_tcp_stats *group_stats(__u32 g)
{
	return bpf_map_lookup_elem(&tcp_stats, &g);
}

/* The watch group of a watched socket, or 0. */
static __always_inline __u32 watch_group(const struct sock *sk)
{
	struct ispmon_tcp_tuple t = {};
	__u32 *g;

	if (!watching)
		return 0;
	sock_tuple(sk, &t);
	g = bpf_map_lookup_elem(&watch, &t);
	return g && *g >= ISPMON_TCP_G_WATCH && *g < ISPMON_TCP_GROUPS ? *g : 0;
}

/* New state for a socket, its counters taken as already counted. */
static __always_inline struct ispmon_tcp_sock *track(const struct sock *sk, __u64 key,
						     __u64 open_ns, __u32 event)
{
	const struct tcp_sock *tp = (const void *)sk;
	struct ispmon_tcp_sock st = {};
	struct ispmon_tcp_stats *s;

	st.open_ns = open_ns;
	st.scope = sock_scope(sk);
	st.bytes_acked = st.sample_acked = BPF_CORE_READ(tp, bytes_acked);
	st.bytes_received = st.sample_received = BPF_CORE_READ(tp, bytes_received);
	st.total_retrans = BPF_CORE_READ(tp, total_retrans);
	if (event == ISPMON_TCP_EV_EXISTING)
		st.flags = ISPMON_TCP_SF_ESTABLISHED;
	if (bpf_map_update_elem(&socks, &key, &st, BPF_ANY))
		return NULL;
	s = group_stats(st.scope);
	if (s)
		s->events[event]++;
	return bpf_map_lookup_elem(&socks, &key);
}

/*
 * Histogram slots are indexed with a bound checked right where it is used,
 * behind barrier_var: older verifiers (6.1) lose the bound clang checked on
 * a copy of the register.
 */
static __always_inline void add_rtt(struct ispmon_tcp_stats *s, __u32 est, __u32 us)
{
	__u32 i = est * ISPMON_RTT_BUCKETS + ispmon_rtt_bucket(us);

	barrier_var(i);
	if (i >= ISPMON_TCP_EST_MAX * ISPMON_RTT_BUCKETS || est >= ISPMON_TCP_EST_MAX)
		return;
	((__u64 *)s->rtt_hist)[i]++;
	s->rtt_sum_us[est] += us;
}

static __always_inline void add_cwnd(struct ispmon_tcp_stats *s, __u32 cwnd)
{
	__u32 b = ispmon_tcp_cwnd_bucket(cwnd);

	barrier_var(b);
	if (b >= ISPMON_TCP_CWND_BUCKETS)
		return;
	s->cwnd_hist[b]++;
	s->cwnd_sum += cwnd;
}

/* What the sample step found, added to each group the socket counts in. */
struct fold {
	__u64 acked, received;
	__u32 retrans;
	__u32 srtt_us, rcv_rtt_us, cwnd; /* 0: no sample */
};

static __always_inline void add_fold(__u32 g, const struct fold *f)
{
	struct ispmon_tcp_stats *s = group_stats(g);

	if (!s)
		return;
	s->bytes_acked += f->acked;
	s->bytes_received += f->received;
	s->retrans_segs += f->retrans;
	if (f->srtt_us) {
		add_rtt(s, ISPMON_TCP_SRTT, f->srtt_us);
		add_cwnd(s, f->cwnd);
	}
	if (f->rcv_rtt_us)
		add_rtt(s, ISPMON_TCP_RCV_RTT, f->rcv_rtt_us);
}

/*
 * Fold the socket's counters into the stats (what grew since the last
 * fold) and, when due, take RTT samples: srtt once per RTT while the data
 * it sent is being acknowledged (only then is the estimate fresh), the
 * receiver's estimate once per RTT while data arrives.
 */
static __always_inline void fold(const struct sock *sk, struct ispmon_tcp_sock *st,
				 __u64 now, bool sample)
{
	const struct tcp_sock *tp = (const void *)sk;
	__u64 acked = BPF_CORE_READ(tp, bytes_acked);
	__u64 received = BPF_CORE_READ(tp, bytes_received);
	__u32 retrans = BPF_CORE_READ(tp, total_retrans);
	struct fold f = {};
	__u32 g;

	/* Counters only grow on one socket; anything else is a reused
	 * address we did not see close: start over from here. */
	if (acked >= st->bytes_acked)
		f.acked = acked - st->bytes_acked;
	if (received >= st->bytes_received)
		f.received = received - st->bytes_received;
	if (retrans >= st->total_retrans)
		f.retrans = retrans - st->total_retrans;
	st->bytes_acked = acked;
	st->bytes_received = received;
	st->total_retrans = retrans;

	if (sample) {
		__u32 srtt = BPF_CORE_READ(tp, srtt_us) >> 3;
		__u32 rcv = BPF_CORE_READ(tp, rcv_rtt_est.rtt_us) >> 3;
		/* An estimator without a value yet waits as long as the other. */
		__u32 other = srtt ? srtt : rcv ? rcv : 1000;

		if (now >= st->next_ns[ISPMON_TCP_SRTT]) {
			if (srtt && acked > st->sample_acked) {
				f.srtt_us = srtt;
				f.cwnd = BPF_CORE_READ(tp, snd_cwnd);
				st->sample_acked = acked;
			}
			st->next_ns[ISPMON_TCP_SRTT] = now + (__u64)(srtt ? srtt : other) * 1000;
		}
		if (now >= st->next_ns[ISPMON_TCP_RCV_RTT]) {
			if (rcv && received > st->sample_received) {
				f.rcv_rtt_us = rcv;
				st->sample_received = received;
			}
			st->next_ns[ISPMON_TCP_RCV_RTT] = now + (__u64)(rcv ? rcv : other) * 1000;
		}
	}
	if (!f.acked && !f.received && !f.retrans && !f.srtt_us && !f.rcv_rtt_us)
		return;
	add_fold(st->scope < ISPMON_TCP_SCOPES ? st->scope : ISPMON_TCP_G_NETWORK, &f);
	g = watch_group(sk);
	if (g)
		add_fold(g, &f);
}

/* A segment arrived on an established socket: the per-packet path, kept
 * to a lookup and two reads until a sample is due. */
static __always_inline int on_rcv(const struct sock *sk)
{
	const struct tcp_sock *tp = (const void *)sk;
	__u64 key = (__u64)sk, now;
	struct ispmon_tcp_sock *st;

	if (!ours(sk))
		return 0;
	st = bpf_map_lookup_elem(&socks, &key);
	if (!st) {
		st = track(sk, key, 0, ISPMON_TCP_EV_EXISTING);
		if (!st)
			return 0;
	}
	now = bpf_ktime_get_ns();
	if (now < st->next_ns[ISPMON_TCP_SRTT] && now < st->next_ns[ISPMON_TCP_RCV_RTT] &&
	    BPF_CORE_READ(tp, total_retrans) == st->total_retrans)
		return 0;
	fold(sk, st, now, true);
	return 0;
}

/* A retransmission: count it now (in the kprobe rung, where the kernel
 * has not counted it yet, at the socket's next event). */
static __always_inline int on_retrans(const struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct ispmon_tcp_sock *st;

	if (!ours(sk))
		return 0;
	st = bpf_map_lookup_elem(&socks, &key);
	if (!st) {
		st = track(sk, key, 0, ISPMON_TCP_EV_EXISTING);
		if (!st)
			return 0;
	}
	fold(sk, st, 0, false);
	return 0;
}

static __always_inline int on_state(const struct sock *sk, int old, int new)
{
	__u64 key = (__u64)sk, now;
	struct ispmon_tcp_sock *st;
	struct ispmon_tcp_stats *s;

	if (!ours(sk))
		return 0;
	now = bpf_ktime_get_ns();
	if (new == TCP_SYN_SENT) {
		track(sk, key, now, ISPMON_TCP_EV_ACTIVE_OPEN);
		return 0;
	}
	st = bpf_map_lookup_elem(&socks, &key);
	/* An accepted socket: tracked from SYN_RECV -> ESTABLISHED, which every
	 * rung sees (tcp_set_state is not called when the child is created in
	 * SYN_RECV) and by when its addresses are set. */
	if (!st && new == TCP_ESTABLISHED && old == TCP_SYN_RECV)
		st = track(sk, key, now, ISPMON_TCP_EV_PASSIVE_OPEN);
	if (!st)
		return 0;
	if (new == TCP_ESTABLISHED) {
		st->flags |= ISPMON_TCP_SF_ESTABLISHED;
		return 0;
	}
	if (new != TCP_CLOSE)
		return 0;
	fold(sk, st, now, false);
	s = group_stats(st->scope < ISPMON_TCP_SCOPES ? st->scope : ISPMON_TCP_G_NETWORK);
	if (s) {
		if (!(st->flags & ISPMON_TCP_SF_ESTABLISHED)) {
			s->events[ISPMON_TCP_EV_FAILED]++;
		} else {
			s->events[ISPMON_TCP_EV_CLOSED]++;
			if (st->open_ns && now > st->open_ns) {
				__u64 us = (now - st->open_ns) / 1000;
				__u32 b = ispmon_tcp_dur_bucket(us);

				barrier_var(b);
				if (b < ISPMON_TCP_DUR_BUCKETS)
					s->dur_hist[b]++;
				s->dur_sum_us += us;
			}
		}
	}
	bpf_map_delete_elem(&socks, &key);
	return 0;
}

/* --- rung 1: fentry/fexit (BPF trampolines) ------------------------------- */

SEC("fentry/tcp_rcv_established")
int BPF_PROG(fentry_tcp_rcv, struct sock *sk)
{
	return on_rcv(sk);
}

/* fexit: the kernel has counted the retransmission by then. */
SEC("fexit/tcp_retransmit_skb")
int BPF_PROG(fexit_tcp_retrans, struct sock *sk)
{
	return on_retrans(sk);
}

SEC("fentry/tcp_set_state")
int BPF_PROG(fentry_tcp_state, struct sock *sk, int state)
{
	return on_state(sk, BPF_CORE_READ(sk, __sk_common.skc_state), state);
}

/* --- rung 2: BTF-typed tracepoints ---------------------------------------- */

SEC("tp_btf/tcp_probe")
int BPF_PROG(tp_tcp_probe, struct sock *sk)
{
	return on_rcv(sk);
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tp_tcp_retrans, const struct sock *sk)
{
	return on_retrans(sk);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tp_sock_state, const struct sock *sk, int old, int new)
{
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	return on_state(sk, old, new);
}

/* --- rung 3: raw tracepoints (no kernel BTF needed to attach) ------------- */

SEC("raw_tp/tcp_probe")
int BPF_PROG(raw_tcp_probe, struct sock *sk)
{
	return on_rcv(sk);
}

SEC("raw_tp/tcp_retransmit_skb")
int BPF_PROG(raw_tcp_retrans, const struct sock *sk)
{
	return on_retrans(sk);
}

SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(raw_sock_state, const struct sock *sk, int old, int new)
{
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	return on_state(sk, old, new);
}

/* --- rung 4: kprobes ------------------------------------------------------ */

SEC("kprobe/tcp_rcv_established")
int BPF_KPROBE(kprobe_tcp_rcv, struct sock *sk)
{
	return on_rcv(sk);
}

SEC("kprobe/tcp_retransmit_skb")
int BPF_KPROBE(kprobe_tcp_retrans, struct sock *sk)
{
	return on_retrans(sk);
}

SEC("kprobe/tcp_set_state")
int BPF_KPROBE(kprobe_tcp_state, struct sock *sk, int state)
{
	return on_state(sk, BPF_CORE_READ(sk, __sk_common.skc_state), state);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
