// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Unit test of the TC programs in bpf/flow.bpf.c, run in the kernel with
 * BPF_PROG_TEST_RUN on packets built here byte by byte.
 *
 * For every run: the program returns TC_ACT_UNSPEC (-1), the packet comes
 * back byte-identical, and the per-CPU dir_stats map moves by exactly the
 * expected amounts in exactly one direction.
 *
 * Test-run facts this file relies on (net/bpf/test_run.c):
 *  - for SCHED_CLS the skb covers the whole buffer: skb->data is the first
 *    byte passed in and skb->len == data_size_in (>= 14, else EINVAL);
 *  - skb->protocol is always eth_type_trans() of the first 14 bytes, even
 *    for a packet meant to be bare IP (ctx ifindex picks another device but
 *    not another parser); ctx (struct __sk_buff) can set only mark,
 *    priority, ingress_ifindex, ifindex, cb, tstamp, wire_len, gso_segs,
 *    gso_size and hwtstamp: not protocol, not an offloaded VLAN tag, so the
 *    skb->vlan_present path cannot be reached from here;
 *  - recent kernels (6.18.y here) refuse with EINVAL a buffer whose bytes
 *    12-13 say IPv4/IPv6 but that is too short for that IP header: see
 *    kernel_refuses(). L3-device mode is tested with bare packets whose
 *    bytes 12-13 (inside the source address) read 0x0800 / 0x86DD.
 *
 * Output: "ok - name" / "not ok - name (detail)" per check, then
 * "N passed, M failed". Exit 0 all passed, 1 any failed, 77 skipped.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "flow.h"
#include "flow.skel.h"

#include "pkt.h"
#include "result.h"

#define TC_ACT_UNSPEC (-1)

/* ---- result reporting ---------------------------------------------------- */

static int n_skip;


/* ---- packet building: transport headers (IP and link layer: pkt.h) ------- */

/* TCP header; with ts, NOP NOP TS(kind 8, len 10) makes doff 8. The
 * checksum is filled in by the IP layer builder. */
static void tcp_seg(struct buf *b, uint16_t sport, uint16_t dport, uint8_t flags,
		    bool ts, size_t payload)
{
	b->n = 0;
	b_u16(b, sport);
	b_u16(b, dport);
	b_u32(b, 0x01020304);          /* seq */
	b_u32(b, flags & TH_ACK ? 0x0a0b0c0d : 0);
	b_u8(b, (uint8_t)((ts ? 8 : 5) << 4));
	b_u8(b, flags);
	b_u16(b, 64240);               /* window */
	b_u16(b, 0);                   /* checksum */
	b_u16(b, 0);                   /* urgent */
	if (ts) {
		b_u8(b, 1);
		b_u8(b, 1);
		b_u8(b, 8);
		b_u8(b, 10);
		b_u32(b, 0x11223344);  /* TSval */
		b_u32(b, 0x55667788);  /* TSecr */
	}
	for (size_t i = 0; i < payload; i++)
		b_u8(b, (uint8_t)('a' + i % 26));
}

static void udp_dgram(struct buf *b, uint16_t sport, uint16_t dport, size_t payload)
{
	b->n = 0;
	b_u16(b, sport);
	b_u16(b, dport);
	b_u16(b, (uint16_t)(8 + payload));
	b_u16(b, 0);
	for (size_t i = 0; i < payload; i++)
		b_u8(b, (uint8_t)i);
}

static void icmp_echo(struct buf *b, uint8_t type, size_t payload)
{
	b->n = 0;
	b_u8(b, type);
	b_u8(b, 0);
	b_u16(b, 0);
	b_u16(b, 0x4242);  /* id */
	b_u16(b, 1);       /* seq */
	for (size_t i = 0; i < payload; i++)
		b_u8(b, (uint8_t)i);
}


static void arp_request(struct buf *b)
{
	b->n = 0;
	b_u16(b, 1);           /* Ethernet */
	b_u16(b, ETH_P_IP);
	b_u8(b, 6);
	b_u8(b, 4);
	b_u16(b, 1);           /* request */
	b_put(b, MAC_SRC, 6);
	b_put(b, V4_SRC, 4);
	b_fill(b, 0, 6);
	b_put(b, V4_DST, 4);
	b_fill(b, 0, 18);      /* pad to the 60-byte minimum */
}

static void lcp_echo(struct buf *b)
{
	b->n = 0;
	b_u8(b, 9);            /* Echo-Request */
	b_u8(b, 1);            /* identifier */
	b_u16(b, 8);
	b_u32(b, 0x01020304);  /* magic */
}

/* ---- running the programs ------------------------------------------------- */

struct inst {
	struct flow_bpf *skel;
	const char *tag;       /* prefix of check names */
	int ingress_dir;
	bool l3_dev;
};

static int ncpus;

static int read_stats(const struct inst *in, struct ispmon_dir_stats out[ISPMON_DIR_MAX])
{
	struct ispmon_dir_stats *per = calloc((size_t)ncpus, sizeof(*per));
	int fd = bpf_map__fd(in->skel->maps.dir_stats);
	int err = 0;

	if (!per)
		return -ENOMEM;
	memset(out, 0, sizeof(*out) * ISPMON_DIR_MAX);
	for (__u32 k = 0; k < ISPMON_DIR_MAX && !err; k++) {
		if (bpf_map_lookup_elem(fd, &k, per)) {
			err = -errno;
			break;
		}
		for (int c = 0; c < ncpus; c++) {
			out[k].packets += per[c].packets;
			out[k].bytes += per[c].bytes;
			for (int l = 0; l < ISPMON_L3_MAX; l++)
				out[k].l3_packets[l] += per[c].l3_packets[l];
			out[k].vlan_packets += per[c].vlan_packets;
			out[k].pppoe_packets += per[c].pppoe_packets;
		}
	}
	free(per);
	return err;
}

static void stats_sub(struct ispmon_dir_stats *d, const struct ispmon_dir_stats *a,
		      const struct ispmon_dir_stats *b)
{
	d->packets = a->packets - b->packets;
	d->bytes = a->bytes - b->bytes;
	for (int l = 0; l < ISPMON_L3_MAX; l++)
		d->l3_packets[l] = a->l3_packets[l] - b->l3_packets[l];
	d->vlan_packets = a->vlan_packets - b->vlan_packets;
	d->pppoe_packets = a->pppoe_packets - b->pppoe_packets;
}

struct result {
	int err;              /* 0 or -errno from the test run / map reads */
	int retval;
	__u32 size_out;
	bool same;            /* data_out == data_in, same length */
	struct ispmon_dir_stats delta[ISPMON_DIR_MAX];
};

/* Run one packet through tc_ingress (egress false) or tc_egress. gso_segs
 * and gso_size go in through ctx (struct __sk_buff) when either is set. */
static void run_pkt(const struct inst *in, bool egress, const uint8_t *pkt, size_t len,
		    __u32 gso_segs, __u32 gso_size, struct result *r)
{
	struct ispmon_dir_stats before[ISPMON_DIR_MAX], after[ISPMON_DIR_MAX];
	static uint8_t out[BUF_MAX + 256];
	struct __sk_buff skb;
	struct bpf_program *prog;
	int err;

	memset(r, 0, sizeof(*r));
	memset(out, 0xa5, sizeof(out));
	memset(&skb, 0, sizeof(skb));
	skb.gso_segs = gso_segs;
	skb.gso_size = gso_size;

	/* Fields set one by one rather than in the macro: cppcheck cannot
	 * parse designated initializers inside an unknown macro. */
	LIBBPF_OPTS(bpf_test_run_opts, opts);
	opts.data_in = pkt;
	opts.data_size_in = (__u32)len;
	opts.data_out = out;
	opts.data_size_out = sizeof(out);
	opts.repeat = 1;
	if (gso_segs || gso_size) {
		opts.ctx_in = &skb;
		opts.ctx_size_in = sizeof(skb);
	}

	prog = egress ? in->skel->progs.tc_egress : in->skel->progs.tc_ingress;
	err = read_stats(in, before);
	if (err) {
		r->err = err;
		return;
	}
	if (bpf_prog_test_run_opts(bpf_program__fd(prog), &opts)) {
		r->err = -errno;
		return;
	}
	r->retval = (int)opts.retval;
	r->size_out = opts.data_size_out;
	r->same = opts.data_size_out == len && memcmp(out, pkt, len) == 0;
	err = read_stats(in, after);
	if (err) {
		r->err = err;
		return;
	}
	for (int d = 0; d < ISPMON_DIR_MAX; d++)
		stats_sub(&r->delta[d], &after[d], &before[d]);
}

/* What one run must add to the counters. */
struct want {
	int l3;               /* enum ispmon_l3 */
	bool vlan, pppoe;
	__u64 segs;           /* packets, and the per-class/vlan/pppoe step */
	__u64 bytes;
};

static int dir_of(const struct inst *in, bool egress)
{
	return egress ? in->ingress_dir ^ 1 : in->ingress_dir;
}

static const char *l3_name(int l3)
{
	static const char *const names[] = { "ipv4", "ipv6", "other", "malformed" };

	return l3 >= 0 && l3 < ISPMON_L3_MAX ? names[l3] : "?";
}

/* Empty why when the counters moved exactly as w says. */
static void diff_counters(const struct result *r, int dir, const struct want *w,
			  char *why, size_t n)
{
	for (int d = 0; d < ISPMON_DIR_MAX; d++) {
		const struct ispmon_dir_stats *s = &r->delta[d];
		bool mine = d == dir;
		__u64 segs = mine ? w->segs : 0;
		const char *dn = d == ISPMON_DIR_DOWNLOAD ? "download" : "upload";

		if (s->packets != segs)
			appendf(why, n, "%s packets +%llu want +%llu; ", dn,
				(unsigned long long)s->packets, (unsigned long long)segs);
		if (s->bytes != (mine ? w->bytes : 0))
			appendf(why, n, "%s bytes +%llu want +%llu; ", dn,
				(unsigned long long)s->bytes,
				(unsigned long long)(mine ? w->bytes : 0));
		for (int l = 0; l < ISPMON_L3_MAX; l++) {
			__u64 want = mine && l == w->l3 ? segs : 0;

			if (s->l3_packets[l] != want)
				appendf(why, n, "%s l3[%s] +%llu want +%llu; ", dn, l3_name(l),
					(unsigned long long)s->l3_packets[l],
					(unsigned long long)want);
		}
		if (s->vlan_packets != (mine && w->vlan ? segs : 0))
			appendf(why, n, "%s vlan +%llu want +%llu; ", dn,
				(unsigned long long)s->vlan_packets,
				(unsigned long long)(mine && w->vlan ? segs : 0));
		if (s->pppoe_packets != (mine && w->pppoe ? segs : 0))
			appendf(why, n, "%s pppoe +%llu want +%llu; ", dn,
				(unsigned long long)s->pppoe_packets,
				(unsigned long long)(mine && w->pppoe ? segs : 0));
	}
}

/* Recent kernels (this 6.18.y has the net/bpf/test_run.c change "reject
 * short IPv4/IPv6 inputs") refuse with EINVAL a buffer whose bytes 12-13
 * say IPv4 or IPv6 but that has less than 20 / 40 bytes after byte 14. Such
 * a frame never reaches the program: it is not a program failure. Short IP
 * headers behind a VLAN tag or PPPoE still run (the kernel looks only at
 * bytes 12-13), which is how those paths are covered. */
static bool kernel_refuses(const uint8_t *pkt, size_t len)
{
	uint16_t t = get16(pkt + 12);

	return (t == ETH_P_IP && len < ETH_HLEN + 20) ||
	       (t == ETH_P_IPV6 && len < ETH_HLEN + 40);
}

/* One packet, three checks: verdict, packet untouched, counters. */
static void expect_pkt(const struct inst *in, bool egress, const char *what,
		       const struct buf *pkt, __u32 gso_segs, __u32 gso_size,
		       const struct want *w)
{
	char name[256], why[512] = "";
	struct result r;

	run_pkt(in, egress, pkt->d, pkt->n, gso_segs, gso_size, &r);
	snprintf(name, sizeof(name), "%s%s %s (%zu bytes)", in->tag,
		 egress ? "egress" : "ingress", what, pkt->n);
	if (r.err == -EINVAL && kernel_refuses(pkt->d, pkt->n)) {
		n_skip++;
		printf("# skip - %s (the kernel's test run refuses a short IP header)\n", name);
		return;
	}
	if (r.err) {
		snprintf(why, sizeof(why), "test run: %s", strerror(-r.err));
		check(false, name, why);
		return;
	}
	snprintf(why, sizeof(why), "retval %d", r.retval);
	snprintf(name, sizeof(name), "%s%s %s (%zu bytes): returns TC_ACT_UNSPEC",
		 in->tag, egress ? "egress" : "ingress", what, pkt->n);
	check(r.retval == TC_ACT_UNSPEC, name, why);

	snprintf(why, sizeof(why), "data_size_out %u, data_size_in %zu%s", r.size_out,
		 pkt->n, r.size_out == pkt->n ? ", contents differ" : "");
	snprintf(name, sizeof(name), "%s%s %s (%zu bytes): packet unchanged",
		 in->tag, egress ? "egress" : "ingress", what, pkt->n);
	check(r.same, name, why);

	why[0] = 0;
	diff_counters(&r, dir_of(in, egress), w, why, sizeof(why));
	snprintf(name, sizeof(name), "%s%s %s (%zu bytes): counters %s +%llu pkt +%llu B%s%s",
		 in->tag, egress ? "egress" : "ingress", what, pkt->n, l3_name(w->l3),
		 (unsigned long long)w->segs, (unsigned long long)w->bytes,
		 w->vlan ? " vlan" : "", w->pppoe ? " pppoe" : "");
	check(!why[0], name, why);
}

/* A loop of many runs reported as one check: the first failure and a count. */
struct agg {
	int runs, bad, refused;
	char first[512];
};

static void agg_run(struct agg *a, const struct inst *in, bool egress, const uint8_t *pkt,
		    size_t len, __u32 gso_segs, const struct want *w)
{
	char why[400] = "";
	struct result r;

	a->runs++;
	run_pkt(in, egress, pkt, len, gso_segs, gso_segs ? 1000 : 0, &r);
	if (r.err == -EINVAL && kernel_refuses(pkt, len)) {
		a->refused++;
		return;
	}
	if (r.err)
		snprintf(why, sizeof(why), "test run: %s", strerror(-r.err));
	else if (r.retval != TC_ACT_UNSPEC)
		snprintf(why, sizeof(why), "retval %d", r.retval);
	else if (!r.same)
		snprintf(why, sizeof(why), "packet modified (size_out %u)", r.size_out);
	else
		diff_counters(&r, dir_of(in, egress), w, why, sizeof(why));
	if (why[0] && a->bad++ == 0)
		snprintf(a->first, sizeof(a->first), "first at len %zu gso %u: %s", len,
			 gso_segs, why);
}

static void agg_report(const struct agg *a, const char *what)
{
	char detail[600], name[400];

	snprintf(name, sizeof(name), "%s: %d runs", what, a->runs - a->refused);
	if (a->refused)
		appendf(name, sizeof(name), " (+%d the kernel refuses: short IP header)",
			a->refused);
	snprintf(detail, sizeof(detail), "%d of %d runs failed; %s", a->bad, a->runs, a->first);
	check(a->bad == 0 && a->runs > a->refused, name, a->runs ? detail : "no runs");
}

/* ---- an independent model of the classification, for the fuzz runs -------- */

static bool is_tpid(uint16_t t)
{
	return t == ETH_P_8021Q || t == ETH_P_8021AD || t == ETH_P_QINQ1;
}

static bool is_v6_ext(unsigned nh)
{
	return nh == P_HOPOPTS || nh == P_ROUTING || nh == P_DSTOPTS ||
	       nh == P_FRAGMENT || nh == P_AH;
}

/* The documented semantics of bpf/parse.h: link layer up to two tags and a
 * PPPoE session header; IPv4 (options) / IPv6 (up to six extension
 * headers); transport header must be complete for TCP, UDP, ICMP(v6);
 * everything not IP is other; any cut or inconsistent header is malformed.
 * Returns the class, sets the flags and the header length. */
static int model(const uint8_t *p, size_t n, bool l3_dev, uint16_t hint, struct want *w,
		 size_t *hdr_len)
{
	size_t off = 0, l4off;
	unsigned nh, l4len = 0;
	bool frag = false;
	uint16_t proto;

	w->vlan = w->pppoe = false;
	*hdr_len = 0;
	if (l3_dev) {
		proto = hint;
	} else {
		if (n < ETH_HLEN)
			return ISPMON_L3_MALFORMED;
		proto = get16(p + 12);
		off = ETH_HLEN;
		for (int i = 0; i < 2 && is_tpid(proto); i++) {
			if (off + 4 > n)
				return ISPMON_L3_MALFORMED;
			w->vlan = true;
			proto = get16(p + off + 2);
			off += 4;
		}
		if (proto == ETH_P_PPP_SES) {
			uint16_t pp;

			if (off + 8 > n)
				return ISPMON_L3_MALFORMED;
			w->pppoe = true;
			pp = get16(p + off + 6);
			off += 8;
			proto = pp == PPP_IP ? ETH_P_IP : pp == PPP_IPV6 ? ETH_P_IPV6 : 0;
		}
	}
	if (proto == ETH_P_IP) {
		size_t ihl;

		if (off + 20 > n || p[off] >> 4 != 4)
			return ISPMON_L3_MALFORMED;
		ihl = (size_t)(p[off] & 15) * 4;
		if (ihl < 20 || get16(p + off + 2) < ihl || off + ihl > n)
			return ISPMON_L3_MALFORMED;
		nh = p[off + 9];
		frag = (get16(p + off + 6) & 0x1fff) != 0;
		l4off = off + ihl;
	} else if (proto == ETH_P_IPV6) {
		if (off + 40 > n || p[off] >> 4 != 6)
			return ISPMON_L3_MALFORMED;
		nh = p[off + 6];
		l4off = off + 40;
		for (int i = 0; i < 6 && is_v6_ext(nh); i++) {
			const uint8_t *e = p + l4off;

			if (l4off + 2 > n)
				return ISPMON_L3_MALFORMED;
			if (nh == P_FRAGMENT) {
				if (l4off + 8 > n)
					return ISPMON_L3_MALFORMED;
				if (get16(e + 2) & 0xfff8)
					frag = true;
				l4off += 8;
			} else if (nh == P_AH) {
				l4off += ((size_t)e[1] + 2) * 4;
			} else {
				l4off += ((size_t)e[1] + 1) * 8;
			}
			nh = e[0];
		}
		if (is_v6_ext(nh))
			nh = 255;
	} else {
		return ISPMON_L3_OTHER;
	}

	if (!frag && nh != P_NONE && nh != 255) {
		if (nh == P_TCP) {
			if (l4off + 20 > n)
				return ISPMON_L3_MALFORMED;
			l4len = (unsigned)(p[l4off + 12] >> 4) * 4;
			if (l4len < 20 || l4off + l4len > n)
				return ISPMON_L3_MALFORMED;
		} else if (nh == P_UDP || nh == P_ICMP || nh == P_ICMPV6) {
			l4len = 8;
			if (l4off + l4len > n)
				return ISPMON_L3_MALFORMED;
		}
	}
	*hdr_len = l4off + l4len;
	return proto == ETH_P_IP ? ISPMON_L3_IPV4 : ISPMON_L3_IPV6;
}

/* Expected counters for a run of len bytes through the model. */
static void model_want(const uint8_t *p, size_t n, bool l3_dev, uint16_t hint,
		       __u32 gso_segs, struct want *w)
{
	size_t hl;

	w->l3 = model(p, n, l3_dev, hint, w, &hl);
	w->segs = gso_segs > 1 ? gso_segs : 1;
	w->bytes = n;
	if (w->segs > 1 && w->l3 != ISPMON_L3_MALFORMED)
		w->bytes += (w->segs - 1) * hl;
}

/* What skb->protocol a test run gives a buffer: eth_type_trans() of its
 * first 14 bytes (802.3 length fields become ETH_P_802_3/802_2, never IP). */
static uint16_t testrun_protocol(const uint8_t *p)
{
	uint16_t t = get16(p + 12);

	return t >= 0x0600 ? t : 0x0001;
}

/* ---- fixed-seed PRNG (xorshift64*) ----------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 0x2545f4914f6cdd1dULL) >> 32);
}

static uint32_t rnd_below(uint32_t n)
{
	return rnd() % n;
}

static uint8_t rnd_of(const uint8_t *set, size_t n)
{
	return set[rnd_below((uint32_t)n)];
}

/* Random IP header chain appended to f: plausible versions, header
 * lengths and next headers, random values everywhere else. proto 0: none. */
static void fuzz_ip(struct buf *f, uint16_t proto)
{
	static const uint8_t nhs[] = { P_TCP, P_UDP, P_ICMP, P_ICMPV6, P_HOPOPTS, P_ROUTING,
				       P_FRAGMENT, P_AH, P_DSTOPTS, P_NONE, 47, 132 };
	size_t full;

	if (proto == ETH_P_IP) {
		unsigned ihl = rnd_below(8) ? 5 + rnd_below(11) : rnd_below(16);
		size_t start = f->n, hl = ihl * 4 > 20 ? ihl * 4 : 20;

		b_u8(f, (uint8_t)((rnd_below(8) ? 4 : rnd_below(16)) << 4 | ihl));
		b_u8(f, 0);
		b_u16(f, rnd_below(8) ? (uint16_t)(ihl * 4 + rnd_below(1400)) : (uint16_t)rnd());
		b_u16(f, (uint16_t)rnd());
		b_u16(f, rnd_below(4) ? 0x4000 : (uint16_t)rnd());
		b_u8(f, 64);
		b_u8(f, rnd_of(nhs, sizeof(nhs)));
		while (f->n < start + hl)
			b_u8(f, (uint8_t)rnd());
	} else if (proto == ETH_P_IPV6) {
		uint8_t nh = rnd_of(nhs, sizeof(nhs));

		b_u8(f, (uint8_t)((rnd_below(8) ? 6 : rnd_below(16)) << 4));
		for (int i = 0; i < 5; i++)
			b_u8(f, (uint8_t)rnd());
		b_u8(f, nh);
		for (int i = 0; i < 33; i++)
			b_u8(f, (uint8_t)rnd());
		/* Up to eight extension headers, short ones mostly. */
		for (int i = 0; i < 8 && is_v6_ext(nh); i++) {
			uint8_t next = rnd_of(nhs, sizeof(nhs));
			size_t len, start = f->n;

			if (nh == P_FRAGMENT) {
				len = 8;
			} else {
				uint8_t hl = rnd_below(8) ? (uint8_t)rnd_below(3) : (uint8_t)rnd();

				len = nh == P_AH ? ((size_t)hl + 2) * 4 : ((size_t)hl + 1) * 8;
			}
			if (f->n + len + 128 > BUF_MAX)
				break;
			b_u8(f, next);
			if (nh == P_FRAGMENT) {
				b_u8(f, 0);
				b_u16(f, rnd_below(2) ? (uint16_t)rnd_below(2) : (uint16_t)rnd());
			} else {
				b_u8(f, (uint8_t)(nh == P_AH ? len / 4 - 2 : len / 8 - 1));
			}
			while (f->n < start + len)
				b_u8(f, (uint8_t)rnd());
			nh = next;
		}
	}
	/* Transport header and payload: random. */
	full = f->n + rnd_below(80);
	while (f->n < full)
		b_u8(f, (uint8_t)rnd());
}

/* Cut half of the frames at a random length, never below 14 bytes. */
static void fuzz_cut(struct buf *f)
{
	if (rnd_below(2))
		f->n = ETH_HLEN + rnd_below((uint32_t)(f->n - ETH_HLEN + 1));
	if (f->n < ETH_HLEN)
		f->n = ETH_HLEN;
}

/* A random Ethernet frame along the paths the parser takes: plausible
 * ethertypes, tags, PPPoE, then fuzz_ip(). */
static void fuzz_frame(struct buf *f)
{
	static const uint16_t types[] = { ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q, ETH_P_8021AD,
					  ETH_P_QINQ1, ETH_P_PPP_SES, ETH_P_ARP, 0x0042 };
	uint16_t proto;

	f->n = 0;
	for (int i = 0; i < 12; i++)
		b_u8(f, (uint8_t)rnd());
	proto = types[rnd_below(sizeof(types) / sizeof(types[0]))];
	if (rnd_below(16) == 0)
		proto = (uint16_t)rnd();
	for (int t = 0; t < 3 && is_tpid(proto); t++) {
		b_u16(f, proto);
		b_u16(f, (uint16_t)rnd());
		proto = types[rnd_below(sizeof(types) / sizeof(types[0]))];
	}
	if (proto == ETH_P_PPP_SES) {
		static const uint16_t pp[] = { PPP_IP, PPP_IPV6, PPP_LCP, 0x8021 };
		uint16_t ppp = pp[rnd_below(4)];

		b_u16(f, proto);
		b_u8(f, 0x11);
		b_u8(f, 0);
		b_u16(f, (uint16_t)rnd());
		b_u16(f, (uint16_t)rnd());
		b_u16(f, ppp);
		proto = ppp == PPP_IP ? ETH_P_IP : ppp == PPP_IPV6 ? ETH_P_IPV6 : 0;
	} else {
		b_u16(f, proto);
	}
	fuzz_ip(f, proto);
	fuzz_cut(f);
}

/* A random bare IP packet for an L3 device. Bytes 12-13 (inside the source
 * address) are set to the matching ethertype most of the time, so that the
 * test run's eth_type_trans() gives the skb->protocol a real L3 device
 * would; otherwise they stay random (protocol not IP: other). */
static void fuzz_bare(struct buf *f)
{
	uint16_t proto = rnd_below(2) ? ETH_P_IP : ETH_P_IPV6;

	f->n = 0;
	fuzz_ip(f, proto);
	while (f->n < ETH_HLEN)
		b_u8(f, (uint8_t)rnd());
	if (rnd_below(8))
		set16(f->d + 12, proto);
	fuzz_cut(f);
}

/* ---- test groups ------------------------------------------------------------ */

static struct want want_of(int l3, bool vlan, bool pppoe, size_t bytes)
{
	struct want w = { .l3 = l3, .vlan = vlan, .pppoe = pppoe, .segs = 1, .bytes = bytes };

	return w;
}

static const uint16_t TAG_Q[] = { ETH_P_8021Q };
static const uint16_t TAG_QINQ[] = { ETH_P_8021AD, ETH_P_8021Q };
static const uint16_t TAG_3[] = { ETH_P_8021AD, ETH_P_8021Q, ETH_P_8021Q };
static const uint16_t TAG_9100[] = { ETH_P_QINQ1, ETH_P_8021Q };

static const uint8_t IPOPT_RR_NOP[8] = {
	7, 7, 4, 0, 0, 0, 0,   /* record route, one slot */
	1                      /* NOP */
};

static void test_checksum_helper(void)
{
	/* Known header: 4500 0073 0000 4000 4011 xxxx c0a8 0001 c0a8 00c7 -> b861. */
	static const uint8_t h[20] = { 0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0, 0,
				       0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0, 0xc7 };
	struct buf l4 = { .n = 0 }, ip;
	char why[64];
	uint16_t c = csum_fold(csum_add(0, h, sizeof(h)));

	snprintf(why, sizeof(why), "got %#06x", c);
	check(c == 0xb861, "helper: IPv4 header checksum of a known header is 0xb861", why);

	tcp_seg(&l4, 40000, 443, TH_ACK, true, 10);
	ipv4_pkt(&ip, P_TCP, &l4, &(struct v4opt){ .opts = IPOPT_RR_NOP, .optlen = 8 });
	c = csum_fold(csum_add(0, ip.d, 28));
	snprintf(why, sizeof(why), "header sums to %#06x", c);
	check(c == 0, "helper: built IPv4 header with options verifies", why);
}

/* The fixed cases, through both programs of one instance. */
static void test_fixed(const struct inst *in)
{
	struct buf l4, l3, f, ext;
	struct v4opt o4;
	struct v6opt o6;

	for (int e = 0; e <= 1; e++) {
		bool eg = e;

		/* IPv4 TCP with the timestamp option. */
		tcp_seg(&l4, 40000, 443, TH_ACK | TH_PSH, true, 100);
		ipv4_pkt(&l3, P_TCP, &l4, NULL);
		eth_frame(&f, NULL, 0, 0, ETH_P_IP, &l3);
		expect_pkt(in, eg, "ipv4/tcp+ts", &f, 0, 0,
			   &(struct want){ ISPMON_L3_IPV4, false, false, 1, f.n });

		/* IPv4 SYN, no options, minimum frame size (padded). */
		tcp_seg(&l4, 40000, 80, TH_SYN, false, 0);
		ipv4_pkt(&l3, P_TCP, &l4, NULL);
		eth_frame(&f, NULL, 0, 0, ETH_P_IP, &l3);
		b_fill(&f, 0, 60 - f.n);
		expect_pkt(in, eg, "ipv4/tcp syn padded to 60", &f, 0, 0,
			   &(struct want){ ISPMON_L3_IPV4, false, false, 1, 60 });

		/* IPv4 with IP options (IHL 7) carrying TCP. */
		tcp_seg(&l4, 40000, 443, TH_ACK, true, 20);
		memset(&o4, 0, sizeof(o4));
		o4.opts = IPOPT_RR_NOP;
		o4.optlen = sizeof(IPOPT_RR_NOP);
		ipv4_pkt(&l3, P_TCP, &l4, &o4);
		eth_frame(&f, NULL, 0, 0, ETH_P_IP, &l3);
		expect_pkt(in, eg, "ipv4+options/tcp", &f, 0, 0,
			   &(struct want){ ISPMON_L3_IPV4, false, false, 1, f.n });

		/* IPv4 UDP (DNS-sized). */
		udp_dgram(&l4, 5353, 53, 40);
		ipv4_pkt(&l3, P_UDP, &l4, NULL);
		eth_frame(&f, NULL, 0, 0, ETH_P_IP, &l3);
		expect_pkt(in, eg, "ipv4/udp", &f, 0, 0,
			   &(struct want){ ISPMON_L3_IPV4, false, false, 1, f.n });

		/* IPv4 ICMP echo. */
		icmp_echo(&l4, 8, 56);
		ipv4_pkt(&l3, P_ICMP, &l4, NULL);
		eth_frame(&f, NULL, 0, 0, ETH_P_IP, &l3);
		expect_pkt(in, eg, "ipv4/icmp echo", &f, 0, 0,
			   &(struct want){ ISPMON_L3_IPV4, false, false, 1, f.n });

		/* IPv4 non-first fragment: 8 bytes of payload, no TCP header. */
		l4.n = 0;
		b_fill(&l4, 0x77, 8);
		memset(&o4, 0, sizeof(o4));
		o4.frag = 185;  /* offset 1480, MF clear */
		ipv4_pkt(&l3, P_TCP, &l4, &o4);
		eth_frame(&f, NULL, 0, 0, ETH_P_IP, &l3);
		expect_pkt(in, eg, "ipv4 non-first fragment", &f, 0, 0,
			   &(struct want){ ISPMON_L3_IPV4, false, false, 1, f.n });

		/* Full-size IPv4 TCP frame (1514 bytes). */
		tcp_seg(&l4, 443, 40000, TH_ACK, true, 1448);
		ipv4_pkt(&l3, P_TCP, &l4, NULL);
		eth_frame(&f, NULL, 0, 0, ETH_P_IP, &l3);
		expect_pkt(in, eg, "ipv4/tcp full-size", &f, 0, 0,
			   &(struct want){ ISPMON_L3_IPV4, false, false, 1, f.n });

		/* IPv6 TCP. */
		tcp_seg(&l4, 40000, 443, TH_ACK, true, 200);
		ipv6_pkt(&l3, P_TCP, &l4, NULL);
		eth_frame(&f, NULL, 0, 0, ETH_P_IPV6, &l3);
		expect_pkt(in, eg, "ipv6/tcp+ts", &f, 0, 0,
			   &(struct want){ ISPMON_L3_IPV6, false, false, 1, f.n });

		/* IPv6 ICMPv6 echo. */
		icmp_echo(&l4, 128, 56);
		ipv6_pkt(&l3, P_ICMPV6, &l4, NULL);
		eth_frame(&f, NULL, 0, 0, ETH_P_IPV6, &l3);
		expect_pkt(in, eg, "ipv6/icmpv6 echo", &f, 0, 0,
			   &(struct want){ ISPMON_L3_IPV6, false, false, 1, f.n });

		/* IPv6 hop-by-hop + fragment (first fragment, MF set) + TCP. */
		ext.n = 0;
		ext_opts(&ext, P_FRAGMENT, 0);
		ext_frag(&ext, P_TCP, 0, true);
		tcp_seg(&l4, 40000, 443, TH_ACK, true, 64);
		memset(&o6, 0, sizeof(o6));
		o6.ext = &ext;
		o6.first = P_HOPOPTS;
		ipv6_pkt(&l3, P_TCP, &l4, &o6);
		eth_frame(&f, NULL, 0, 0, ETH_P_IPV6, &l3);
		expect_pkt(in, eg, "ipv6 hbh+frag(first)/tcp", &f, 0, 0,
			   &(struct want){ ISPMON_L3_IPV6, false, false, 1, f.n });

		/* IPv6 hop-by-hop + non-first fragment: no TCP header follows. */
		ext.n = 0;
		ext_opts(&ext, P_FRAGMENT, 1);
		ext_frag(&ext, P_TCP, 181, false);
		l4.n = 0;
		b_fill(&l4, 0x66, 8);
		ipv6_pkt(&l3, P_TCP, &l4, &o6);
		eth_frame(&f, NULL, 0, 0, ETH_P_IPV6, &l3);
		expect_pkt(in, eg, "ipv6 hbh+frag(non-first)", &f, 0, 0,
			   &(struct want){ ISPMON_L3_IPV6, false, false, 1, f.n });

		/* IPv6 routing + destination options + AH + UDP. */
		ext.n = 0;
		ext_routing(&ext, P_DSTOPTS);
		ext_opts(&ext, P_AH, 2);
		ext_ah(&ext, P_UDP);
		udp_dgram(&l4, 4500, 4500, 30);
		o6.first = P_ROUTING;
		ipv6_pkt(&l3, P_UDP, &l4, &o6);
		eth_frame(&f, NULL, 0, 0, ETH_P_IPV6, &l3);
		expect_pkt(in, eg, "ipv6 rh+dst+ah/udp", &f, 0, 0,
			   &(struct want){ ISPMON_L3_IPV6, false, false, 1, f.n });

		/* IPv6 with seven extension headers: more than the parser
		 * follows, still IPv6 (transport unknown). */
		ext.n = 0;
		for (int i = 0; i < 6; i++)
			ext_opts(&ext, P_DSTOPTS, 0);
		ext_opts(&ext, P_TCP, 0);
		tcp_seg(&l4, 1, 2, TH_ACK, false, 0);
		o6.first = P_HOPOPTS;
		ipv6_pkt(&l3, P_TCP, &l4, &o6);
		eth_frame(&f, NULL, 0, 0, ETH_P_IPV6, &l3);
		expect_pkt(in, eg, "ipv6 with 7 ext headers", &f, 0, 0,
			   &(struct want){ ISPMON_L3_IPV6, false, false, 1, f.n });

		/* IPv6 no next header. */
		l4.n = 0;
		ipv6_pkt(&l3, P_NONE, &l4, NULL);
		eth_frame(&f, NULL, 0, 0, ETH_P_IPV6, &l3);
		expect_pkt(in, eg, "ipv6 no next header", &f, 0, 0,
			   &(struct want){ ISPMON_L3_IPV6, false, false, 1, f.n });

		/* 802.1Q and QinQ. */
		tcp_seg(&l4, 40000, 443, TH_ACK, true, 50);
		ipv4_pkt(&l3, P_TCP, &l4, NULL);
		eth_frame(&f, TAG_Q, 1, 0, ETH_P_IP, &l3);
		expect_pkt(in, eg, "802.1Q ipv4/tcp", &f, 0, 0,
			   &(struct want){ ISPMON_L3_IPV4, true, false, 1, f.n });
		eth_frame(&f, TAG_QINQ, 2, 0, ETH_P_IP, &l3);
		expect_pkt(in, eg, "802.1ad+802.1Q ipv4/tcp", &f, 0, 0,
			   &(struct want){ ISPMON_L3_IPV4, true, false, 1, f.n });
		eth_frame(&f, TAG_9100, 2, 0, ETH_P_IP, &l3);
		expect_pkt(in, eg, "0x9100+802.1Q ipv4/tcp", &f, 0, 0,
			   &(struct want){ ISPMON_L3_IPV4, true, false, 1, f.n });
		eth_frame(&f, TAG_3, 3, 0, ETH_P_IP, &l3);
		expect_pkt(in, eg, "three VLAN tags (more than followed)", &f, 0, 0,
			   &(struct want){ ISPMON_L3_OTHER, true, false, 1, f.n });
		ipv6_pkt(&l3, P_TCP, &l4, NULL);
		eth_frame(&f, TAG_Q, 1, 0, ETH_P_IPV6, &l3);
		expect_pkt(in, eg, "802.1Q ipv6/tcp", &f, 0, 0,
			   &(struct want){ ISPMON_L3_IPV6, true, false, 1, f.n });
		arp_request(&l3);
		eth_frame(&f, TAG_Q, 1, 0, ETH_P_ARP, &l3);
		expect_pkt(in, eg, "802.1Q arp", &f, 0, 0,
			   &(struct want){ ISPMON_L3_OTHER, true, false, 1, f.n });

		/* PPPoE session: IPv4, IPv6, LCP; also under a VLAN (the usual
		 * FTTH setup), and PPPoE discovery (not a session frame). */
		ipv4_pkt(&l3, P_TCP, &l4, NULL);
		eth_frame(&f, NULL, 0, PPP_IP, 0, &l3);
		expect_pkt(in, eg, "pppoe ipv4/tcp", &f, 0, 0,
			   &(struct want){ ISPMON_L3_IPV4, false, true, 1, f.n });
		eth_frame(&f, TAG_Q, 1, PPP_IP, 0, &l3);
		expect_pkt(in, eg, "802.1Q pppoe ipv4/tcp", &f, 0, 0,
			   &(struct want){ ISPMON_L3_IPV4, true, true, 1, f.n });
		ipv6_pkt(&l3, P_TCP, &l4, NULL);
		eth_frame(&f, NULL, 0, PPP_IPV6, 0, &l3);
		expect_pkt(in, eg, "pppoe ipv6/tcp", &f, 0, 0,
			   &(struct want){ ISPMON_L3_IPV6, false, true, 1, f.n });
		lcp_echo(&l3);
		eth_frame(&f, NULL, 0, PPP_LCP, 0, &l3);
		expect_pkt(in, eg, "pppoe lcp echo", &f, 0, 0,
			   &(struct want){ ISPMON_L3_OTHER, false, true, 1, f.n });
		l3.n = 0;
		b_u8(&l3, 0x11);
		b_u8(&l3, 0x09);               /* PADI */
		b_u16(&l3, 0);
		b_u16(&l3, 4);
		b_u32(&l3, 0x01010000);        /* Service-Name, empty */
		eth_frame(&f, NULL, 0, 0, ETH_P_PPP_DISC, &l3);
		expect_pkt(in, eg, "pppoe discovery (PADI)", &f, 0, 0,
			   &(struct want){ ISPMON_L3_OTHER, false, false, 1, f.n });

		/* ARP and a bare 14-byte frame. */
		arp_request(&l3);
		eth_frame(&f, NULL, 0, 0, ETH_P_ARP, &l3);
		expect_pkt(in, eg, "arp request", &f, 0, 0,
			   &(struct want){ ISPMON_L3_OTHER, false, false, 1, f.n });
		l3.n = 0;
		eth_frame(&f, NULL, 0, 0, ETH_P_ARP, &l3);
		expect_pkt(in, eg, "14-byte arp header only", &f, 0, 0,
			   &(struct want){ ISPMON_L3_OTHER, false, false, 1, 14 });
		eth_frame(&f, NULL, 0, 0, ETH_P_IP, &l3);
		expect_pkt(in, eg, "14-byte frame claiming ipv4", &f, 0, 0,
			   &(struct want){ ISPMON_L3_MALFORMED, false, false, 1, 14 });
		/* The same behind a tag, which the kernel lets through. */
		eth_frame(&f, TAG_Q, 1, 0, ETH_P_IP, &l3);
		expect_pkt(in, eg, "18-byte 802.1Q frame claiming ipv4", &f, 0, 0,
			   &(struct want){ ISPMON_L3_MALFORMED, true, false, 1, 18 });
		eth_frame(&f, TAG_Q, 1, 0, ETH_P_IPV6, &l3);
		b_fill(&f, 0x60, 39);
		expect_pkt(in, eg, "802.1Q ipv6 header cut at 39", &f, 0, 0,
			   &(struct want){ ISPMON_L3_MALFORMED, true, false, 1, f.n });
		eth_frame(&f, NULL, 0, PPP_IP, 0, &l3);
		b_fill(&f, 0x45, 19);
		expect_pkt(in, eg, "pppoe ipv4 header cut at 19", &f, 0, 0,
			   &(struct want){ ISPMON_L3_MALFORMED, false, true, 1, f.n });
		l3.n = 0;
		b_u16(&l3, 0xffff);
		eth_frame(&f, TAG_QINQ, 2, 0, ETH_P_PPP_SES, &l3);
		expect_pkt(in, eg, "qinq pppoe header cut at 2", &f, 0, 0,
			   &(struct want){ ISPMON_L3_MALFORMED, true, false, 1, f.n });
		l3.n = 0;
		b_u16(&l3, 0x0064);
		eth_frame(&f, TAG_Q, 1, 0, ETH_P_8021Q, &l3);
		f.n -= 2;                              /* inner tag cut after its TCI */
		expect_pkt(in, eg, "802.1Q + inner tag cut short", &f, 0, 0,
			   &(struct want){ ISPMON_L3_MALFORMED, true, false, 1, f.n });

		/* Inconsistent headers. */
		tcp_seg(&l4, 40000, 443, TH_ACK, false, 10);
		ipv4_pkt(&l3, P_TCP, &l4, NULL);
		l3.d[0] = 0x65;                        /* version 6 in an IPv4 frame */
		eth_frame(&f, NULL, 0, 0, ETH_P_IP, &l3);
		expect_pkt(in, eg, "ipv4 ethertype, IP version 6", &f, 0, 0,
			   &(struct want){ ISPMON_L3_MALFORMED, false, false, 1, f.n });
		ipv6_pkt(&l3, P_TCP, &l4, NULL);
		l3.d[0] = 0x45;                        /* version 4 in an IPv6 frame */
		eth_frame(&f, NULL, 0, 0, ETH_P_IPV6, &l3);
		expect_pkt(in, eg, "ipv6 ethertype, IP version 4", &f, 0, 0,
			   &(struct want){ ISPMON_L3_MALFORMED, false, false, 1, f.n });
		memset(&o6, 0, sizeof(o6));
		o6.version = 4;
		ipv6_pkt(&l3, P_TCP, &l4, &o6);
		eth_frame(&f, NULL, 0, PPP_IPV6, 0, &l3);
		expect_pkt(in, eg, "pppoe ipv6, IP version 4", &f, 0, 0,
			   &(struct want){ ISPMON_L3_MALFORMED, false, true, 1, f.n });
		for (int ihl = 0; ihl < 5; ihl += 4) {
			char what[64];

			ipv4_pkt(&l3, P_TCP, &l4, NULL);
			l3.d[0] = (uint8_t)(0x40 | ihl);
			eth_frame(&f, NULL, 0, 0, ETH_P_IP, &l3);
			snprintf(what, sizeof(what), "ipv4 IHL %d", ihl);
			expect_pkt(in, eg, what, &f, 0, 0,
				   &(struct want){ ISPMON_L3_MALFORMED, false, false, 1, f.n });
		}
		ipv4_pkt(&l3, P_TCP, &l4, NULL);
		l3.d[0] = 0x4f;                        /* IHL 15: 60 bytes, only 50 there */
		eth_frame(&f, NULL, 0, 0, ETH_P_IP, &l3);
		expect_pkt(in, eg, "ipv4 IHL 15 past the end", &f, 0, 0,
			   &(struct want){ ISPMON_L3_MALFORMED, false, false, 1, f.n });
		ipv4_pkt(&l3, P_TCP, &l4, NULL);
		set16(l3.d + 2, 19);                   /* total length < header length */
		eth_frame(&f, NULL, 0, 0, ETH_P_IP, &l3);
		expect_pkt(in, eg, "ipv4 total length 19", &f, 0, 0,
			   &(struct want){ ISPMON_L3_MALFORMED, false, false, 1, f.n });
		for (int doff = 0; doff <= 15; doff += 4) {
			char what[64];

			if (doff == 8)
				doff = 15;             /* 0, 4: too small; 15: past the end */
			ipv4_pkt(&l3, P_TCP, &l4, NULL);
			l3.d[20 + 12] = (uint8_t)(doff << 4);
			eth_frame(&f, NULL, 0, 0, ETH_P_IP, &l3);
			snprintf(what, sizeof(what), "ipv4 tcp doff %d", doff);
			expect_pkt(in, eg, what, &f, 0, 0,
				   &(struct want){ ISPMON_L3_MALFORMED, false, false, 1, f.n });
		}
		tcp_seg(&l4, 40000, 443, TH_ACK, false, 0);
		l4.d[12] = 0x40;                       /* doff 4 */
		ipv6_pkt(&l3, P_TCP, &l4, NULL);
		eth_frame(&f, NULL, 0, 0, ETH_P_IPV6, &l3);
		expect_pkt(in, eg, "ipv6 tcp doff 4", &f, 0, 0,
			   &(struct want){ ISPMON_L3_MALFORMED, false, false, 1, f.n });
		udp_dgram(&l4, 53, 53, 0);
		l4.n = 6;                              /* UDP header cut short */
		ipv4_pkt(&l3, P_UDP, &l4, NULL);
		eth_frame(&f, NULL, 0, 0, ETH_P_IP, &l3);
		expect_pkt(in, eg, "ipv4 udp header cut at 6", &f, 0, 0,
			   &(struct want){ ISPMON_L3_MALFORMED, false, false, 1, f.n });
	}
}

/* Every prefix of a frame, 14 bytes up to the whole: below hdr_len
 * (the end of the transport header) it is malformed, at or past it the
 * class of the whole frame; vlan/pppoe flags count once their header is
 * complete, as documented by the parser. */
static void test_truncation(const struct inst *in, const char *what, const struct buf *f,
			    int l3, size_t hdr_len, size_t vlan_at, size_t pppoe_at)
{
	char name[160];

	for (int e = 0; e <= 1; e++) {
		struct agg a = { 0 };

		for (size_t len = ETH_HLEN; len <= f->n; len++) {
			struct want w = want_of(len < hdr_len ? ISPMON_L3_MALFORMED : l3,
					  vlan_at && len >= vlan_at,
					  pppoe_at && len >= pppoe_at, len);

			agg_run(&a, in, e, f->d, len, 0, &w);
		}
		snprintf(name, sizeof(name),
			 "%s%s %s cut at every length 14..%zu, malformed below %zu", in->tag,
			 e ? "egress" : "ingress", what, f->n, hdr_len);
		agg_report(&a, name);
	}
}

static void test_truncations(const struct inst *in)
{
	struct buf l4, l3, f, ext;
	struct v6opt o6 = { 0 };

	tcp_seg(&l4, 40000, 443, TH_ACK | TH_PSH, true, 40);
	ipv6_pkt(&l3, P_TCP, &l4, NULL);
	eth_frame(&f, NULL, 0, 0, ETH_P_IPV6, &l3);
	test_truncation(in, "eth/ipv6/tcp+ts", &f, ISPMON_L3_IPV6, 14 + 40 + 32, 0, 0);

	{
		struct v4opt o4 = { .opts = IPOPT_RR_NOP, .optlen = sizeof(IPOPT_RR_NOP) };

		ipv4_pkt(&l3, P_TCP, &l4, &o4);
		eth_frame(&f, NULL, 0, 0, ETH_P_IP, &l3);
		test_truncation(in, "eth/ipv4+options/tcp+ts", &f, ISPMON_L3_IPV4,
				14 + 28 + 32, 0, 0);
		/* Behind a tag the kernel runs the short-IP-header lengths too. */
		eth_frame(&f, TAG_Q, 1, 0, ETH_P_IP, &l3);
		test_truncation(in, "802.1Q/ipv4+options/tcp+ts", &f, ISPMON_L3_IPV4,
				18 + 28 + 32, 18, 0);
	}

	ext.n = 0;
	ext_opts(&ext, P_FRAGMENT, 0);
	ext_frag(&ext, P_TCP, 0, true);
	o6.ext = &ext;
	o6.first = P_HOPOPTS;
	ipv6_pkt(&l3, P_TCP, &l4, &o6);
	eth_frame(&f, TAG_QINQ, 2, PPP_IPV6, 0, &l3);
	test_truncation(in, "qinq/pppoe/ipv6+hbh+frag/tcp+ts", &f, ISPMON_L3_IPV6,
			14 + 8 + 8 + 40 + 16 + 32, 18, 30);
}

static void test_fuzz(const struct inst *in, int count)
{
	char name[160];
	struct agg a = { 0 };
	int classes[ISPMON_L3_MAX] = { 0 };
	struct buf f;

	for (int i = 0; i < count; i++) {
		__u32 gso = rnd_below(4) == 0 ? 2 + rnd_below(60) : 0;
		bool eg = rnd_below(2);
		struct want w;

		if (in->l3_dev)
			fuzz_bare(&f);
		else
			fuzz_frame(&f);
		model_want(f.d, f.n, in->l3_dev, testrun_protocol(f.d), gso, &w);
		classes[w.l3]++;
		agg_run(&a, in, eg, f.d, f.n, gso, &w);
	}
	snprintf(name, sizeof(name),
		 "%s%d fixed-seed random frames match the parser model "
		 "(ipv4 %d, ipv6 %d, other %d, malformed %d; a quarter GSO)",
		 in->tag, count, classes[0], classes[1], classes[2], classes[3]);
	agg_report(&a, name);
}

static void test_gso(const struct inst *in)
{
	struct buf l4, l3, f, ext;
	struct v6opt o6 = { 0 };

	for (int e = 0; e <= 1; e++) {
		bool eg = e;

		/* 10 segments of 1448 bytes: one 14+20+32 header each on the wire. */
		tcp_seg(&l4, 443, 40000, TH_ACK, true, 1448 * 2);
		ipv4_pkt(&l3, P_TCP, &l4, NULL);
		eth_frame(&f, NULL, 0, 0, ETH_P_IP, &l3);
		expect_pkt(in, eg, "GSO ipv4/tcp+ts segs 10 size 1448", &f, 10, 1448,
			   &(struct want){ ISPMON_L3_IPV4, false, false, 10,
					   f.n + 9 * (14 + 20 + 32) });

		udp_dgram(&l4, 443, 40000, 1200 * 2);
		ipv6_pkt(&l3, P_UDP, &l4, NULL);
		eth_frame(&f, TAG_Q, 1, 0, ETH_P_IPV6, &l3);
		expect_pkt(in, eg, "GSO 802.1Q ipv6/udp segs 4 size 1200", &f, 4, 1200,
			   &(struct want){ ISPMON_L3_IPV6, true, false, 4,
					   f.n + 3 * (18 + 40 + 8) });

		tcp_seg(&l4, 443, 40000, TH_ACK, false, 1400 * 2);
		ext.n = 0;
		ext_opts(&ext, P_TCP, 0);
		o6.ext = &ext;
		o6.first = P_HOPOPTS;
		ipv6_pkt(&l3, P_TCP, &l4, &o6);
		eth_frame(&f, TAG_QINQ, 2, PPP_IPV6, 0, &l3);
		expect_pkt(in, eg, "GSO qinq/pppoe/ipv6+hbh/tcp segs 3", &f, 3, 1400,
			   &(struct want){ ISPMON_L3_IPV6, true, true, 3,
					   f.n + 2 * (22 + 8 + 40 + 8 + 20) });

		/* Six extension headers is the most the parser follows: the
		 * TCP header after them counts; after seven the transport is
		 * unknown and a segment's header is taken to end after the
		 * sixth (an undercount of 8 + 20 bytes per extra segment that
		 * no real traffic should hit). */
		for (int next = 6; next <= 7; next++) {
			char what[96];

			ext.n = 0;
			for (int i = 0; i < next - 1; i++)
				ext_opts(&ext, P_DSTOPTS, 0);
			ext_opts(&ext, P_TCP, 0);
			tcp_seg(&l4, 443, 40000, TH_ACK, false, 1000 * 2);
			o6.ext = &ext;
			o6.first = P_HOPOPTS;
			ipv6_pkt(&l3, P_TCP, &l4, &o6);
			eth_frame(&f, NULL, 0, 0, ETH_P_IPV6, &l3);
			snprintf(what, sizeof(what), "GSO ipv6 with %d ext headers/tcp segs 2", next);
			expect_pkt(in, eg, what, &f, 2, 1000,
				   &(struct want){ ISPMON_L3_IPV6, false, false, 2,
						   f.n + 14 + 40 + 8 * 6 +
						   (next == 6 ? 20 : 0) });
			if (next == 6) {
				f.d[14 + 40 + 48 + 12] = 0x40; /* doff 4 */
				expect_pkt(in, eg, "ipv6 with 6 ext headers, tcp doff 4", &f, 0, 0,
					   &(struct want){ ISPMON_L3_MALFORMED, false, false, 1,
							   f.n });
			}
		}

		/* gso_segs 1 is one packet, no extra headers. */
		tcp_seg(&l4, 443, 40000, TH_ACK, true, 500);
		ipv4_pkt(&l3, P_TCP, &l4, NULL);
		eth_frame(&f, NULL, 0, 0, ETH_P_IP, &l3);
		expect_pkt(in, eg, "GSO segs 1", &f, 1, 1448,
			   &(struct want){ ISPMON_L3_IPV4, false, false, 1, f.n });

		/* Segments of a frame the parser cannot read: packets are
		 * counted, no header bytes are made up. */
		f.d[14] = 0x44;  /* IHL 4 */
		expect_pkt(in, eg, "GSO segs 5 on a malformed frame", &f, 5, 100,
			   &(struct want){ ISPMON_L3_MALFORMED, false, false, 5, f.n });
		arp_request(&l3);
		eth_frame(&f, NULL, 0, 0, ETH_P_ARP, &l3);
		expect_pkt(in, eg, "GSO segs 3 on a non-IP frame", &f, 3, 10,
			   &(struct want){ ISPMON_L3_OTHER, false, false, 3, f.n });
	}
}

/* L3 device mode: the packet starts at the IP header and the class comes
 * from skb->protocol. A test run sets skb->protocol with eth_type_trans()
 * on the first 14 bytes, which for a bare IP packet are IP header fields:
 * bytes 12-13 are the 1st-2nd octets of the IPv4 source address, the 5th-6th
 * of the IPv6 one. A source 8.0.x.x (IPv4) or 2001:db8:86dd:: (IPv6) makes
 * the kernel give ETH_P_IP / ETH_P_IPV6, as a real L3 device would. */
static void test_l3_dev(const struct inst *in)
{
	static const uint8_t v4_src_ip[4] = { 8, 0, 2, 10 };
	static const uint8_t v6_src_ip6[16] = { 0x20, 0x01, 0x0d, 0xb8, 0x86, 0xdd, 0, 0,
						0, 0, 0, 0, 0, 0, 0, 0x10 };
	struct buf l4, l3, ext;
	struct v4opt o4 = { .src = v4_src_ip };
	struct v6opt o6 = { .src = v6_src_ip6 };

	for (int e = 0; e <= 1; e++) {
		bool eg = e;

		tcp_seg(&l4, 40000, 443, TH_ACK, true, 100);
		ipv4_pkt(&l3, P_TCP, &l4, &o4);
		expect_pkt(in, eg, "bare ipv4/tcp+ts (src 8.0.2.10 -> protocol IP)", &l3, 0, 0,
			   &(struct want){ ISPMON_L3_IPV4, false, false, 1, l3.n });
		expect_pkt(in, eg, "bare ipv4/tcp+ts GSO segs 10", &l3, 10, 1448,
			   &(struct want){ ISPMON_L3_IPV4, false, false, 10,
					   l3.n + 9 * (20 + 32) });

		o4.opts = IPOPT_RR_NOP;
		o4.optlen = sizeof(IPOPT_RR_NOP);
		udp_dgram(&l4, 53, 5353, 100);
		ipv4_pkt(&l3, P_UDP, &l4, &o4);
		expect_pkt(in, eg, "bare ipv4+options/udp", &l3, 0, 0,
			   &(struct want){ ISPMON_L3_IPV4, false, false, 1, l3.n });
		o4.opts = NULL;
		o4.optlen = 0;

		tcp_seg(&l4, 40000, 443, TH_ACK, true, 100);
		ipv6_pkt(&l3, P_TCP, &l4, &o6);
		expect_pkt(in, eg, "bare ipv6/tcp+ts (src 2001:db8:86dd:: -> protocol IPv6)",
			   &l3, 0, 0, &(struct want){ ISPMON_L3_IPV6, false, false, 1, l3.n });

		ext.n = 0;
		ext_opts(&ext, P_FRAGMENT, 0);
		ext_frag(&ext, P_TCP, 0, true);
		o6.ext = &ext;
		o6.first = P_HOPOPTS;
		ipv6_pkt(&l3, P_TCP, &l4, &o6);
		expect_pkt(in, eg, "bare ipv6 hbh+frag/tcp GSO segs 4", &l3, 4, 1000,
			   &(struct want){ ISPMON_L3_IPV6, false, false, 4,
					   l3.n + 3 * (40 + 16 + 32) });
		o6.ext = NULL;

		/* Cut inside the TCP header: malformed. */
		tcp_seg(&l4, 40000, 443, TH_ACK, true, 0);
		ipv4_pkt(&l3, P_TCP, &l4, &o4);
		l3.n = 20 + 16;
		expect_pkt(in, eg, "bare ipv4, tcp header cut at 16", &l3, 0, 0,
			   &(struct want){ ISPMON_L3_MALFORMED, false, false, 1, l3.n });

		/* With a documentation source address the test run's
		 * skb->protocol is 0xc000 (not IP): other. On a real L3 device
		 * the driver sets skb->protocol, so this is a test-run artifact
		 * that shows the class really comes from skb->protocol. */
		ipv4_pkt(&l3, P_TCP, &l4, NULL);
		expect_pkt(in, eg, "bare ipv4 src 192.0.2.10 -> test-run protocol 0xc000: other",
			   &l3, 0, 0, &(struct want){ ISPMON_L3_OTHER, false, false, 1, l3.n });
	}
	{
		struct buf f;

		tcp_seg(&l4, 40000, 443, TH_ACK, true, 40);
		ipv6_pkt(&l3, P_TCP, &l4, &o6);
		f = l3;
		test_truncation(in, "bare ipv6/tcp+ts", &f, ISPMON_L3_IPV6, 40 + 32, 0, 0);
		ipv4_pkt(&l3, P_TCP, &l4, &o4);
		f = l3;
		test_truncation(in, "bare ipv4/tcp+ts", &f, ISPMON_L3_IPV4, 20 + 32, 0, 0);
	}
}

/* ---- setup -------------------------------------------------------------------- */

static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG || getenv("TEST_FLOW_QUIET"))
		return 0;
	return vfprintf(stderr, fmt, ap);
}

static bool open_inst(struct inst *in, const char *tag, bool l3_dev, int ingress_dir)
{
	char name[128], why[256];
	int err;

	memset(in, 0, sizeof(*in));
	in->tag = tag;
	in->l3_dev = l3_dev;
	in->ingress_dir = ingress_dir;
	snprintf(name, sizeof(name), "%sskeleton opens and loads (l3_dev %d, ingress_dir %s)",
		 tag, l3_dev, ingress_dir == ISPMON_DIR_DOWNLOAD ? "download" : "upload");
	in->skel = flow_bpf__open();
	if (!in->skel) {
		snprintf(why, sizeof(why), "open: %s", strerror(errno));
		check(false, name, why);
		return false;
	}
	in->skel->rodata->l3_dev = l3_dev;
	in->skel->rodata->ingress_dir = (__u8)ingress_dir;
	err = flow_bpf__load(in->skel);
	snprintf(why, sizeof(why), "load: %s", strerror(-err));
	check(!err, name, why);
	if (err) {
		flow_bpf__destroy(in->skel);
		in->skel = NULL;
		return false;
	}
	return true;
}

int main(void)
{
	struct inst wan, lan, l3;
	int ok;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (geteuid() != 0) {
		printf("skip: test_flow needs root (BPF_PROG_TEST_RUN on TC programs)\n");
		return 77;
	}
	libbpf_set_print(quiet_print);
	ok = libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SCHED_CLS, NULL);
	if (ok != 1) {
		printf("skip: cannot load a SCHED_CLS BPF program here (%s)\n",
		       ok < 0 ? strerror(-ok) :
		       "no CAP_BPF/CAP_SYS_ADMIN or CAP_NET_ADMIN, or no BPF in this kernel");
		return 77;
	}
	ncpus = libbpf_num_possible_cpus();
	if (ncpus <= 0) {
		printf("skip: cannot count possible CPUs (%s)\n", strerror(-ncpus));
		return 77;
	}

	test_checksum_helper();

	/* WAN interface, default rodata: ingress = download. */
	if (open_inst(&wan, "", false, ISPMON_DIR_DOWNLOAD)) {
		test_fixed(&wan);
		test_gso(&wan);
		test_truncations(&wan);
		test_fuzz(&wan, 5000);
		flow_bpf__destroy(wan.skel);
	}

	/* LAN interface: ingress comes from the household = upload. */
	if (open_inst(&lan, "lan: ", false, ISPMON_DIR_UPLOAD)) {
		struct buf l4, l3b, f;

		tcp_seg(&l4, 40000, 443, TH_ACK, true, 100);
		ipv4_pkt(&l3b, P_TCP, &l4, NULL);
		eth_frame(&f, NULL, 0, 0, ETH_P_IP, &l3b);
		for (int e = 0; e <= 1; e++) {
			expect_pkt(&lan, e, "ipv4/tcp+ts", &f, 0, 0,
				   &(struct want){ ISPMON_L3_IPV4, false, false, 1, f.n });
			expect_pkt(&lan, e, "ipv4/tcp+ts GSO segs 10", &f, 10, 1448,
				   &(struct want){ ISPMON_L3_IPV4, false, false, 10,
						   f.n + 9 * (14 + 20 + 32) });
		}
		eth_frame(&f, TAG_Q, 1, PPP_IP, 0, &l3b);
		expect_pkt(&lan, true, "802.1Q pppoe ipv4/tcp", &f, 0, 0,
			   &(struct want){ ISPMON_L3_IPV4, true, true, 1, f.n });
		test_fuzz(&lan, 1000);
		flow_bpf__destroy(lan.skel);
	}

	/* L3 device (ppp0, wg, tun): no link-layer header. */
	if (open_inst(&l3, "l3dev: ", true, ISPMON_DIR_DOWNLOAD)) {
		test_l3_dev(&l3);
		test_fuzz(&l3, 3000);
		flow_bpf__destroy(l3.skel);
	}

	if (n_skip)
		printf("# %d skipped (not runnable on this kernel)\n", n_skip);
	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}
