/*
 * Fuzz the TC programs' parser and RTT matching through
 * bpf_prog_test_run_opts: FUZZ_FRAMES (default 1,000,000) random and
 * mutated frames — truncated, bogus lengths, TCP option loops, nested
 * VLAN/PPPoE, long IPv6 extension chains, random bytes — alternately
 * through tc_ingress and tc_egress of a WAN and a LAN instance. Every
 * verdict must hand the packet on (TC_ACT_UNSPEC) unchanged, and the line
 * counters must account for every frame and byte exactly.
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

/* A well-formed seed frame of a random kind, to mutate. */
static void seed(struct buf *f)
{
	static const uint16_t tp[3] = {ETH_P_8021AD, ETH_P_8021Q, ETH_P_QINQ1};
	struct buf l4 = {0}, ip = {0}, ext = {0};
	struct v6opt o6 = {0};
	bool v6 = rn(2);
	uint8_t proto;

	switch (rn(4)) {
	case 0: { /* TCP with options, random flags, TS somewhere */
		unsigned nop = rn(12);
		size_t optlen, pay = rn(3) ? 0 : rn(1400);

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
		for (unsigned i = 0, n = rn(8); i < n; i++) {
			/* Chains longer than the parser walks, on purpose. */
			if (i + 1 < n) {
				static const uint8_t kinds[3] = {P_HOPOPTS, P_DSTOPTS, P_ROUTING};

				ext_opts(&ext, kinds[rn(3)], rn(3));
			} else
				ext_opts(&ext, proto, rn(2));
		}
		if (ext.n) {
			o6.ext = &ext;
			o6.first = P_DSTOPTS;
		}
		ipv6_pkt(&ip, proto, &l4, &o6);
	} else {
		ipv4_pkt(&ip, proto, &l4, NULL);
	}
	if (rn(3) == 0)
		eth_frame(f, tp + rn(2), (int)rn(3), v6 ? PPP_IPV6 : PPP_IP, 0, &ip);
	else
		eth_frame(f, tp + rn(2), (int)rn(3), 0, v6 ? ETH_P_IPV6 : ETH_P_IP, &ip);
}

static void mutate(struct buf *f)
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
		default: /* TCP option-length zero/one: loops */
			if (f->n > 60)
				f->d[54 + rn(6)] = (uint8_t)rn(2);
			break;
		}
	}
	if (f->n < ETH_HLEN)
		f->n = ETH_HLEN;
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
		}
	}
	free(v);
	return 0;
}

int main(void)
{
	const char *env = getenv("FUZZ_FRAMES");
	unsigned long frames = env ? strtoul(env, NULL, 10) : 1000000;
	struct flow_bpf *sk[2];
	uint64_t want_pkts[2][ISPMON_DIR_MAX] = {{0}}, want_bytes[2][ISPMON_DIR_MAX] = {{0}};
	unsigned long bad_verdict = 0, changed = 0, refused = 0, ran = 0;
	int ncpu = libbpf_num_possible_cpus(), failed = 0;
	static uint8_t out[BUF_MAX];

	if (geteuid()) {
		printf("skip: needs root\n");
		return 77;
	}
	for (int i = 0; i < 2; i++) {
		sk[i] = flow_bpf__open();
		if (!sk[i])
			return 1;
		sk[i]->rodata->lan_side = i == 1;
		sk[i]->rodata->ingress_dir = i == 1 ? ISPMON_DIR_UPLOAD : ISPMON_DIR_DOWNLOAD;
		sk[i]->rodata->rtt_rate_limit_ns = 0;
		if (flow_bpf__load(sk[i])) {
			printf("not ok - load the TC programs\n");
			return 1;
		}
	}
	for (unsigned long n = 0; n < frames; n++) {
		int inst = (int)(n & 1), ingress = (int)((n >> 1) & 1);
		struct flow_bpf *s = sk[inst];
		struct buf f;
		LIBBPF_OPTS(bpf_test_run_opts, opts);
		int dir;

		f.n = 0;
		if (rn(8) == 0) {
			f.n = ETH_HLEN + rn(200); /* pure garbage */
			for (size_t i = 0; i < f.n; i++)
				f.d[i] = (uint8_t)rnd();
		} else {
			seed(&f);
			mutate(&f);
		}
		opts.data_in = f.d;
		opts.data_size_in = (uint32_t)f.n;
		opts.data_out = out;
		opts.data_size_out = sizeof(out);
		if (bpf_prog_test_run_opts(bpf_program__fd(ingress ? s->progs.tc_ingress
								    : s->progs.tc_egress),
					   &opts)) {
			/* The kernel itself refuses some frames (short IP headers). */
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
		want_pkts[inst][dir]++;
		want_bytes[inst][dir] += f.n;
	}
	printf("# %lu frames: %lu ran, %lu refused by the kernel's test-run checks\n", frames, ran,
	       refused);
#define CHECK(cond, ...)                                                                   \
	do {                                                                               \
		printf((cond) ? "ok - " : "not ok - ");                                    \
		printf(__VA_ARGS__);                                                       \
		printf("\n");                                                              \
		failed += !(cond);                                                         \
	} while (0)
	CHECK(ran > frames / 2, "most frames ran (%lu of %lu)", ran, frames);
	CHECK(!bad_verdict, "every verdict is TC_ACT_UNSPEC (%lu not)", bad_verdict);
	CHECK(!changed, "every packet came out unchanged (%lu changed)", changed);
	for (int i = 0; i < 2; i++) {
		struct ispmon_dir_stats st[ISPMON_DIR_MAX];

		if (sum_stats(bpf_map__fd(sk[i]->maps.dir_stats), st, ncpu)) {
			CHECK(0, "read counters");
			continue;
		}
		for (int d = 0; d < ISPMON_DIR_MAX; d++) {
			CHECK(st[d].packets == want_pkts[i][d] && st[d].bytes == want_bytes[i][d],
			      "%s instance, %s: counted %llu packets / %llu bytes, sent %llu / %llu",
			      i ? "LAN" : "WAN", d ? "upload" : "download",
			      (unsigned long long)st[d].packets, (unsigned long long)st[d].bytes,
			      (unsigned long long)want_pkts[i][d], (unsigned long long)want_bytes[i][d]);
		}
	}
	flow_bpf__destroy(sk[0]);
	flow_bpf__destroy(sk[1]);
	printf("%d passed, %d failed\n", 3 + 4 - failed, failed);
	return failed ? 1 : 0;
}
