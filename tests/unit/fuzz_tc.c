/*
 * Fuzz the TC programs' parser and RTT matching through
 * bpf_prog_test_run_opts: FUZZ_FRAMES (default 1,000,000) random and
 * mutated frames — truncated, bogus lengths, TCP option loops, nested
 * VLAN/PPPoE, long IPv6 extension chains, random bytes — alternately
 * through tc_ingress and tc_egress of a WAN and a LAN instance, until
 * that many have run. Every verdict must hand the packet on
 * (TC_ACT_UNSPEC) unchanged, and every counter must agree exactly with a
 * reference classifier written here from the header formats (not from the
 * BPF code): packets and bytes per direction, the class of each frame
 * (IPv4, IPv6, other, malformed), VLAN and PPPoE frames, TCP/UDP payload
 * bytes, and the LAN instance's per-device packets and bytes.
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flow.h"
#include "flow.skel.h"
#include "pkt.h"

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	/* xorshift64*: fixed seed, so a failure replays. */
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ULL;
}

static unsigned rn(unsigned n) { return n ? (unsigned)(rnd() % n) : 0; }

/* A well-formed seed frame of a random kind, to mutate. *opt is set to the
 * offset of its TCP options, 0 when it has none. */
static void seed(struct buf *f, size_t *opt)
{
	static const uint16_t tp[3] = {ETH_P_8021AD, ETH_P_8021Q, ETH_P_QINQ1};
	struct buf l4 = {0}, ip = {0}, ext = {0};
	struct v6opt o6 = {0};
	bool v6 = rn(2);
	size_t optlen = 0, tail = 0;
	uint8_t proto;

	switch (rn(4)) {
	case 0: { /* TCP with options, random flags, TS somewhere */
		unsigned nop = rn(12);
		size_t pay = rn(3) ? 0 : rn(1400);

		proto = P_TCP;
		optlen = (nop + 10 + 3) & ~3u;
		b_u16(&l4, (uint16_t)(1024 + rn(4)));
		b_u16(&l4, 443);
		b_u32(&l4, (uint32_t)(1000 + rn(4) * 1448));
		b_u32(&l4, (uint32_t)(2000 + rn(4) * 1448));
		b_u16(&l4, (uint16_t)(((20 + optlen) / 4) << 12 | (rn(64) & 0x3f)));
		b_u16(&l4, 65535);
		b_u32(&l4, 0);
		b_fill(&l4, 1, nop);
		b_u8(&l4, 8);
		b_u8(&l4, 10);
		b_u32(&l4, (uint32_t)(100 + rn(4)));
		b_u32(&l4, (uint32_t)(100 + rn(4)));
		b_fill(&l4, 0, optlen - nop - 10);
		b_fill(&l4, 0xab, pay);
		tail = optlen + pay; /* the options start this far from the end */
		break;
	}
	case 1: /* DNS query or response */
		proto = P_UDP;
		b_u16(&l4, rn(2) ? 53 : 40000);
		b_u16(&l4, rn(2) ? 40000 : 53);
		b_u16(&l4, 8 + 12);
		b_u16(&l4, 0);
		b_u16(&l4, (uint16_t)rn(8));
		b_fill(&l4, 0, 10);
		break;
	case 2: /* echo request or reply */
		proto = v6 ? P_ICMPV6 : P_ICMP;
		b_u8(&l4, (uint8_t)(v6 ? (rn(2) ? 128 : 129) : (rn(2) ? 8 : 0)));
		b_u8(&l4, 0);
		b_u16(&l4, 0);
		b_u16(&l4, 7);
		b_u16(&l4, (uint16_t)rn(8));
		b_fill(&l4, 0, rn(56));
		break;
	default: /* something else */
		proto = (uint8_t)rn(256);
		b_fill(&l4, (uint8_t)rn(256), rn(64));
		break;
	}
	if (v6) {
		/* Chains longer than the parser walks, on purpose; each header
		 * names the next, the last one the transport. */
		static const uint8_t kinds[5] = {P_HOPOPTS, P_DSTOPTS, P_ROUTING, P_FRAGMENT, P_AH};
		unsigned n = rn(8);
		uint8_t kind[8];

		for (unsigned i = 0; i < n; i++)
			kind[i] = kinds[rn(5)];
		for (unsigned i = 0; i < n; i++) {
			uint8_t next = i + 1 < n ? kind[i + 1] : proto;

			switch (kind[i]) {
			case P_FRAGMENT: /* a first fragment, or a later one */
				ext_frag(&ext, next, (uint16_t)(rn(2) ? 0 : 1 + rn(100)), rn(2));
				break;
			case P_AH:
				ext_ah(&ext, next);
				break;
			case P_ROUTING:
				ext_routing(&ext, next);
				break;
			default:
				ext_opts(&ext, next, rn(3));
				break;
			}
		}
		if (ext.n) {
			o6.ext = &ext;
			o6.first = kind[0];
		}
		ipv6_pkt(&ip, proto, &l4, &o6);
	} else {
		ipv4_pkt(&ip, proto, &l4, NULL);
	}
	if (rn(3) == 0)
		eth_frame(f, tp + rn(2), (int)rn(3), v6 ? PPP_IPV6 : PPP_IP, 0, &ip);
	else
		eth_frame(f, tp + rn(2), (int)rn(3), 0, v6 ? ETH_P_IPV6 : ETH_P_IP, &ip);
	*opt = optlen ? f->n - tail : 0;
}

static void mutate(struct buf *f, size_t opt)
{
	for (unsigned i = 0, n = rn(6); i < n && f->n; i++) {
		switch (rn(5)) {
		case 0: /* flip a bit in the headers */
			f->d[rn((unsigned)(f->n < 120 ? f->n : 120))] ^= (uint8_t)(1u << rn(8));
			break;
		case 1: /* a random byte anywhere */
			f->d[rn((unsigned)f->n)] = (uint8_t)rnd();
			break;
		case 2: /* truncate */
			f->n = ETH_HLEN + rn((unsigned)(f->n - ETH_HLEN + 1));
			break;
		case 3: { /* a length-looking field set to something extreme */
			size_t at = rn((unsigned)(f->n < 80 ? f->n : 80));

			if (at + 1 < f->n)
				set16(f->d + at, (uint16_t)(rn(2) ? 0xffff : rn(16)));
			break;
		}
		default: /* a TCP option length of zero or one: loops */
			if (opt && opt + 1 < f->n)
				f->d[opt + 1 + rn((unsigned)(f->n - opt - 1 < 12 ? f->n - opt - 1 : 12))] =
					(uint8_t)rn(2);
			break;
		}
	}
	if (f->n < ETH_HLEN)
		f->n = ETH_HLEN;
}

/* --- the reference classifier ------------------------------------------- */

/* What one frame should add to the counters. The rules are the header
 * formats plus what README and flow.h promise: at most two VLAN tags, a
 * PPPoE session's PPP protocol, IPv4 with options, at most six IPv6
 * extension headers, a transport header cut short is malformed, payload is
 * TCP/UDP bytes after the transport header of a first fragment. A type
 * field of zero (an 802.3 length of 0: no frame at all) is malformed. */
struct ref {
	int l3;            /* enum ispmon_l3 */
	bool vlan, pppoe;
	uint64_t payload;
	uint32_t l3_off;
};

static bool ext_hdr(unsigned nh)
{
	return nh == P_HOPOPTS || nh == P_ROUTING || nh == P_DSTOPTS || nh == P_FRAGMENT ||
	       nh == P_AH;
}

static void classify(const uint8_t *d, size_t n, struct ref *r)
{
	uint32_t off = ETH_HLEN, l4_off, l4_len, hdr = 0;
	unsigned proto, l4p;
	bool frag = false;

	memset(r, 0, sizeof(*r));
	r->l3 = ISPMON_L3_MALFORMED;
	if (n < ETH_HLEN)
		return;
	proto = get16(d + 12);
	for (int i = 0; i < 2 && (proto == ETH_P_8021Q || proto == ETH_P_8021AD ||
				  proto == ETH_P_QINQ1); i++) {
		if (off + 4 > n)
			return;
		r->vlan = true;
		proto = get16(d + off + 2);
		off += 4;
	}
	if (proto == ETH_P_PPP_SES) {
		if (off + 8 > n)
			return;
		r->pppoe = true;
		proto = get16(d + off + 6) == PPP_IP ? ETH_P_IP
			: get16(d + off + 6) == PPP_IPV6 ? ETH_P_IPV6 : ETH_P_PPP_SES; /* LCP, ... */
		off += 8;
	}
	if (!proto)
		return;
	r->l3_off = off;
	if (proto == ETH_P_IP) {
		uint32_t ihl, tot;

		if (off + 20 > n || d[off] >> 4 != 4)
			return;
		ihl = (d[off] & 15u) * 4;
		tot = get16(d + off + 2);
		if (ihl < 20 || tot < ihl || off + ihl > n)
			return;
		l4p = d[off + 9];
		l4_off = off + ihl;
		l4_len = tot - ihl;
		frag = (get16(d + off + 6) & 0x1fff) != 0;
	} else if (proto == ETH_P_IPV6) {
		uint32_t e = off + 40;
		int i;

		if (off + 40 > n || d[off] >> 4 != 6)
			return;
		l4p = d[off + 6];
		for (i = 0; i < 6 && ext_hdr(l4p); i++) {
			if (e + 2 > n)
				return;
			if (l4p == P_FRAGMENT) {
				if (e + 8 > n)
					return;
				frag |= (get16(d + e + 2) & ~7u) != 0;
				l4p = d[e];
				e += 8;
			} else {
				uint32_t len = l4p == P_AH ? (d[e + 1] + 2u) * 4 : (d[e + 1] + 1u) * 8;

				l4p = d[e];
				e += len;
			}
		}
		if (ext_hdr(l4p))
			l4p = 255;
		l4_off = e;
		/* As unsigned as the IP header's field: a chain longer than
		 * the payload length wraps, and is then no payload at all. */
		l4_len = get16(d + off + 4) - (e - off - 40);
	} else {
		r->l3 = ISPMON_L3_OTHER;
		return;
	}
	if (!frag && l4p != P_NONE && l4p != 255) {
		if (l4p == P_TCP) {
			if (l4_off + 20 > n)
				return;
			hdr = (d[l4_off + 12] >> 4) * 4u;
			if (hdr < 20 || l4_off + hdr > n)
				return;
		} else if (l4p == P_UDP || l4p == P_ICMP || l4p == P_ICMPV6) {
			hdr = 8;
			if (l4_off + hdr > n)
				return;
		}
	}
	r->l3 = proto == ETH_P_IP ? ISPMON_L3_IPV4 : ISPMON_L3_IPV6;
	if ((l4p == P_TCP || l4p == P_UDP) && !frag && hdr && l4_len >= hdr && l4_len <= n)
		r->payload = l4_len - hdr;
}

/* Distinct device MACs seen, to know the device table never had to evict. */
#define MACSET_BITS 16
static uint64_t macset[1u << MACSET_BITS];
static unsigned macs;

static void mac_add(const uint8_t *m)
{
	uint64_t k = 1; /* never 0: 0 marks a free slot */

	for (int i = 0; i < 6; i++)
		k = k << 8 | m[i];
	for (uint32_t h = (uint32_t)((k * 0x9e3779b97f4a7c15ULL) >> (64 - MACSET_BITS));;
	     h = (h + 1) & ((1u << MACSET_BITS) - 1)) {
		if (macset[h] == k)
			return;
		if (!macset[h]) {
			macset[h] = k;
			macs++;
			return;
		}
	}
}

static int sum_stats(int fd, struct ispmon_dir_stats out[ISPMON_DIR_MAX], int ncpu)
{
	struct ispmon_dir_stats *v = calloc((size_t)ncpu, sizeof(*v));

	if (!v)
		return -ENOMEM;
	memset(out, 0, sizeof(*out) * ISPMON_DIR_MAX);
	for (__u32 d = 0; d < ISPMON_DIR_MAX; d++) {
		if (bpf_map_lookup_elem(fd, &d, v)) {
			free(v);
			return -errno;
		}
		for (int c = 0; c < ncpu; c++) {
			out[d].packets += v[c].packets;
			out[d].bytes += v[c].bytes;
			for (int k = 0; k < ISPMON_L3_MAX; k++)
				out[d].l3_packets[k] += v[c].l3_packets[k];
			out[d].vlan_packets += v[c].vlan_packets;
			out[d].pppoe_packets += v[c].pppoe_packets;
			out[d].payload_bytes += v[c].payload_bytes;
		}
	}
	free(v);
	return 0;
}

/* Every device's packets and bytes per direction, summed over the per-CPU
 * cache slots and the LRU table (a device may have both). */
static int sum_devices(struct flow_bpf *s, int ncpu, uint64_t pk[2], uint64_t by[2])
{
	size_t slot_sz = sizeof(struct ispmon_dev_slot), st_sz = sizeof(struct ispmon_dev_stats);
	void *v = calloc((size_t)ncpu, slot_sz > st_sz ? slot_sz : st_sz);
	struct ispmon_dev_key key, next, *prev = NULL;
	int fd, err = 0;

	if (!v)
		return -ENOMEM;
	pk[0] = pk[1] = by[0] = by[1] = 0;
	fd = bpf_map__fd(s->maps.dev_cache);
	for (__u32 i = 0; i < ISPMON_DEV_CACHE_SLOTS && !err; i++) {
		if (bpf_map_lookup_elem(fd, &i, v)) {
			err = -errno;
			break;
		}
		for (int c = 0; c < ncpu; c++) {
			const struct ispmon_dev_slot *sl = (const void *)((char *)v + (size_t)c * slot_sz);

			if (!sl->used)
				continue;
			for (int d = 0; d < 2; d++) {
				pk[d] += sl->st.packets[d];
				by[d] += sl->st.bytes[d];
			}
		}
	}
	fd = bpf_map__fd(s->maps.devices);
	while (!err && !bpf_map_get_next_key(fd, prev, &next)) {
		if (bpf_map_lookup_elem(fd, &next, v)) {
			err = -errno;
			break;
		}
		for (int c = 0; c < ncpu; c++) {
			const struct ispmon_dev_stats *st = (const void *)((char *)v + (size_t)c * st_sz);

			for (int d = 0; d < 2; d++) {
				pk[d] += st->packets[d];
				by[d] += st->bytes[d];
			}
		}
		key = next;
		prev = &key;
	}
	free(v);
	return err;
}

int main(void)
{
	const char *env = getenv("FUZZ_FRAMES");
	unsigned long frames = env ? strtoul(env, NULL, 10) : 1000000;
	struct flow_bpf *sk[2];
	/* want[instance][direction] */
	struct ispmon_dir_stats want[2][ISPMON_DIR_MAX];
	uint64_t want_dev_pk[2] = {0}, want_dev_by[2] = {0};
	unsigned long bad_verdict = 0, changed = 0, refused = 0, ran = 0, tries = 0;
	int ncpu = libbpf_num_possible_cpus(), failed = 0, checks = 0;
	static uint8_t out[BUF_MAX];

	if (geteuid()) {
		printf("skip: needs root\n");
		return 77;
	}
	memset(want, 0, sizeof(want));
	for (int i = 0; i < 2; i++) {
		sk[i] = flow_bpf__open();
		if (!sk[i])
			return 1;
		sk[i]->rodata->lan_side = i == 1;
		sk[i]->rodata->ingress_dir = i == 1 ? ISPMON_DIR_UPLOAD : ISPMON_DIR_DOWNLOAD;
		sk[i]->rodata->rtt_rate_limit_ns = 0;
		/* Room for every MAC the mutations make up: no eviction, so
		 * per-device sums are exact (checked below). */
		bpf_map__set_max_entries(sk[i]->maps.devices, 1u << (MACSET_BITS - 1));
		if (flow_bpf__load(sk[i])) {
			printf("not ok - load the TC programs\n");
			return 1;
		}
	}
	/* Until FUZZ_FRAMES have run; the kernel's test-run checks refuse a
	 * few (frames shorter than it accepts), which are not counted. */
	while (ran < frames && tries < 3 * frames) {
		int inst = (int)(tries & 1), ingress = (int)((tries >> 1) & 1);
		struct flow_bpf *s = sk[inst];
		struct buf f;
		LIBBPF_OPTS(bpf_test_run_opts, opts);
		struct ispmon_dir_stats *w;
		struct ref r;
		size_t opt = 0;
		int dir;

		tries++;
		f.n = 0;
		if (rn(8) == 0) {
			f.n = ETH_HLEN + rn(200); /* pure garbage */
			for (size_t i = 0; i < f.n; i++)
				f.d[i] = (uint8_t)rnd();
		} else {
			seed(&f, &opt);
			mutate(&f, opt);
		}
		opts.data_in = f.d;
		opts.data_size_in = (uint32_t)f.n;
		opts.data_out = out;
		opts.data_size_out = sizeof(out);
		if (bpf_prog_test_run_opts(bpf_program__fd(ingress ? s->progs.tc_ingress
								    : s->progs.tc_egress),
					   &opts)) {
			refused++;
			continue;
		}
		ran++;
		if ((int)opts.retval != -1)
			bad_verdict++;
		if (opts.data_size_out != f.n || memcmp(out, f.d, f.n))
			changed++;
		dir = inst == 0 ? (ingress ? ISPMON_DIR_DOWNLOAD : ISPMON_DIR_UPLOAD)
				: (ingress ? ISPMON_DIR_UPLOAD : ISPMON_DIR_DOWNLOAD);
		classify(f.d, f.n, &r);
		w = &want[inst][dir];
		w->packets++;
		w->bytes += f.n;
		w->l3_packets[r.l3]++;
		w->vlan_packets += r.vlan;
		w->pppoe_packets += r.pppoe;
		w->payload_bytes += r.payload;
		if (inst == 1 && (r.l3 == ISPMON_L3_IPV4 || r.l3 == ISPMON_L3_IPV6) &&
		    r.l3_off <= 64) {
			const uint8_t *mac = ingress ? f.d + 6 : f.d;

			if (!(mac[0] & 1)) {
				mac_add(mac);
				want_dev_pk[dir & 1]++;
				want_dev_by[dir & 1] += f.n;
			}
		}
	}
	printf("# %lu frames ran, %lu refused by the kernel's test-run checks, %u device MACs\n",
	       ran, refused, macs);
#define CHECK(cond, ...)                                                                   \
	do {                                                                               \
		printf((cond) ? "ok - " : "not ok - ");                                    \
		printf(__VA_ARGS__);                                                       \
		printf("\n");                                                              \
		failed += !(cond);                                                         \
		checks++;                                                                  \
	} while (0)
	CHECK(ran == frames, "%lu frames ran (asked for %lu; %lu refused)", ran, frames, refused);
	CHECK(!bad_verdict, "every verdict is TC_ACT_UNSPEC (%lu not)", bad_verdict);
	CHECK(!changed, "every packet came out unchanged (%lu changed)", changed);
	for (int i = 0; i < 2; i++) {
		struct ispmon_dir_stats st[ISPMON_DIR_MAX];

		if (sum_stats(bpf_map__fd(sk[i]->maps.dir_stats), st, ncpu)) {
			CHECK(0, "read counters");
			continue;
		}
		for (int d = 0; d < ISPMON_DIR_MAX; d++) {
			const struct ispmon_dir_stats *g = &st[d], *e = &want[i][d];
			const char *in = i ? "LAN" : "WAN", *dn = d ? "upload" : "download";

			CHECK(g->packets == e->packets && g->bytes == e->bytes,
			      "%s instance, %s: counted %llu packets / %llu bytes, sent %llu / %llu", in,
			      dn, (unsigned long long)g->packets, (unsigned long long)g->bytes,
			      (unsigned long long)e->packets, (unsigned long long)e->bytes);
			CHECK(!memcmp(g->l3_packets, e->l3_packets, sizeof(g->l3_packets)),
			      "%s instance, %s: IPv4/IPv6/other/malformed %llu/%llu/%llu/%llu, "
			      "reference %llu/%llu/%llu/%llu",
			      in, dn, (unsigned long long)g->l3_packets[0],
			      (unsigned long long)g->l3_packets[1], (unsigned long long)g->l3_packets[2],
			      (unsigned long long)g->l3_packets[3], (unsigned long long)e->l3_packets[0],
			      (unsigned long long)e->l3_packets[1], (unsigned long long)e->l3_packets[2],
			      (unsigned long long)e->l3_packets[3]);
			CHECK(g->vlan_packets == e->vlan_packets && g->pppoe_packets == e->pppoe_packets,
			      "%s instance, %s: VLAN %llu, PPPoE %llu frames, reference %llu, %llu", in,
			      dn, (unsigned long long)g->vlan_packets,
			      (unsigned long long)g->pppoe_packets, (unsigned long long)e->vlan_packets,
			      (unsigned long long)e->pppoe_packets);
			CHECK(g->payload_bytes == e->payload_bytes,
			      "%s instance, %s: TCP/UDP payload %llu bytes, reference %llu", in, dn,
			      (unsigned long long)g->payload_bytes,
			      (unsigned long long)e->payload_bytes);
		}
	}
	{
		uint64_t pk[2], by[2];
		int err = sum_devices(sk[1], ncpu, pk, by);

		CHECK(!err && pk[0] == want_dev_pk[0] && pk[1] == want_dev_pk[1] &&
			      by[0] == want_dev_by[0] && by[1] == want_dev_by[1],
		      "LAN devices (%u MACs): download %llu packets / %llu bytes, upload %llu / %llu; "
		      "reference %llu / %llu, %llu / %llu",
		      macs, (unsigned long long)pk[0], (unsigned long long)by[0],
		      (unsigned long long)pk[1], (unsigned long long)by[1],
		      (unsigned long long)want_dev_pk[0], (unsigned long long)want_dev_by[0],
		      (unsigned long long)want_dev_pk[1], (unsigned long long)want_dev_by[1]);
	}
	flow_bpf__destroy(sk[0]);
	flow_bpf__destroy(sk[1]);
	printf("%d passed, %d failed\n", checks - failed, failed);
	return failed ? 1 : 0;
}
