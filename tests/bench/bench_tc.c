/*
 * Per-packet cost of ispmon's TC programs, measured with
 * bpf_prog_test_run_opts(repeat) on realistic packets, next to an empty TC
 * program run the same way (the floor). Prints one line per packet kind:
 *   kind ispmon_ns empty_ns overhead_ns ratio
 * Medians of several rounds; the machine is shared, so only the ratio and
 * the difference taken in the same run mean anything.
 */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_empty.skel.h"
#include "flow.skel.h"

#define REPEAT 200000
#define ROUNDS 7

struct pkt {
	uint8_t d[1600];
	size_t n;
};

static void put(struct pkt *p, const void *src, size_t n)
{
	memcpy(p->d + p->n, src, n);
	p->n += n;
}

static void put16(struct pkt *p, uint16_t v)
{
	v = htons(v);
	put(p, &v, 2);
}

static void put32(struct pkt *p, uint32_t v)
{
	v = htonl(v);
	put(p, &v, 4);
}

static void eth(struct pkt *p, uint16_t type)
{
	static const uint8_t macs[12] = {2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2};

	put(p, macs, sizeof(macs));
	put16(p, type);
}

/* IPv4 or IPv6 header for an L4 part of l4len bytes (checksums are not
 * checked by the TC programs and left zero). */
static void ip(struct pkt *p, int v6, uint8_t proto, size_t l4len)
{
	if (!v6) {
		uint8_t h[20] = {0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0,
				 198, 51, 100, 2, 203, 0, 113, 10};

		h[2] = (uint8_t)((20 + l4len) >> 8);
		h[3] = (uint8_t)(20 + l4len);
		put(p, h, sizeof(h));
	} else {
		uint8_t h[40] = {0x60, 0, 0, 0, 0, 0, proto, 64};

		h[4] = (uint8_t)(l4len >> 8);
		h[5] = (uint8_t)l4len;
		h[8] = 0x20, h[9] = 0x01, h[10] = 0x0d, h[11] = 0xb8, h[23] = 2;
		h[24] = 0x20, h[25] = 0x01, h[26] = 0x0d, h[27] = 0xb8, h[28] = 0, h[29] = 3, h[39] = 0x10;
		put(p, h, sizeof(h));
	}
}

static void tcp(struct pkt *p, int ts, uint8_t flags, size_t payload)
{
	size_t opt = ts ? 12 : 0;

	put16(p, 40000);
	put16(p, 443);
	put32(p, 1000);
	put32(p, 2000);
	put16(p, (uint16_t)(((20 + opt) / 4) << 12 | flags));
	put16(p, 65535);
	put32(p, 0);
	if (ts) {
		static const uint8_t o[4] = {1, 1, 8, 10};

		put(p, o, 4);
		put32(p, 123456);
		put32(p, 654321);
	}
	memset(p->d + p->n, 0xab, payload);
	p->n += payload;
}

static void build(struct pkt *p, const char *kind)
{
	memset(p, 0, sizeof(*p));
	if (!strncmp(kind, "lan_", 4))
		kind += 4; /* the same frames, through the LAN programs */
	if (!strcmp(kind, "tcp_data_ts")) {
		eth(p, 0x0800);
		ip(p, 0, 6, 32 + 1448);
		tcp(p, 1, 0x18, 1448);
	} else if (!strcmp(kind, "tcp_ack_ts")) {
		eth(p, 0x0800);
		ip(p, 0, 6, 32);
		tcp(p, 1, 0x10, 0);
	} else if (!strcmp(kind, "tcp_data_nots")) {
		eth(p, 0x0800);
		ip(p, 0, 6, 20 + 1460);
		tcp(p, 0, 0x18, 1460);
	} else if (!strcmp(kind, "udp_dns_reply")) {
		eth(p, 0x0800);
		ip(p, 0, 17, 8 + 60);
		put16(p, 53);
		put16(p, 40000);
		put16(p, 68);
		put16(p, 0);
		put16(p, 0x1234);
		memset(p->d + p->n, 0, 58);
		p->n += 58;
	} else if (!strcmp(kind, "ipv6_tcp_data_ts")) {
		eth(p, 0x86dd);
		ip(p, 1, 6, 32 + 1428);
		tcp(p, 1, 0x18, 1428);
	}
}

static double run(int fd, const struct pkt *p)
{
	uint8_t out[1600];
	LIBBPF_OPTS(bpf_test_run_opts, opts);

	opts.data_in = p->d;
	opts.data_size_in = (uint32_t)p->n;
	opts.data_out = out;
	opts.data_size_out = sizeof(out);
	opts.repeat = REPEAT;
	if (bpf_prog_test_run_opts(fd, &opts))
		return -1;
	/* Timed, but only if it stayed passive: the next filter's verdict,
	 * the packet as it came. */
	if ((int)opts.retval != -1 || opts.data_size_out != p->n || memcmp(out, p->d, p->n)) {
		fprintf(stderr, "bench_tc: a program changed the verdict (%d) or the packet\n",
			(int)opts.retval);
		return -1;
	}
	return opts.duration; /* mean ns per run */
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int main(void)
{
	/* lan: the programs as loaded on a LAN interface (per-device
	 * accounting; what arrives there comes from a device). */
	/* table: the programs with the burst shortcut off (bpf/rtt.h), so
	 * that the same packet takes the flow table's way, as the first packet
	 * of each new TSval does. */
	enum { WAN, LAN, TABLE };
	static const struct {
		const char *kind, *pkt;
		int ingress, inst;
	} cases[] = {
		{"tcp_data_ts", "tcp_data_ts", 0, WAN},
		{"tcp_ack_ts", "tcp_ack_ts", 1, WAN},
		{"tcp_data_nots", "tcp_data_nots", 0, WAN},
		{"udp_dns_reply", "udp_dns_reply", 1, WAN},
		{"ipv6_tcp_data_ts", "ipv6_tcp_data_ts", 0, WAN},
		{"lan_tcp_data_ts", "lan_tcp_data_ts", 1, LAN},
		{"lan_tcp_ack_ts", "lan_tcp_ack_ts", 0, LAN},
		{"table_tcp_data_ts", "tcp_data_ts", 0, TABLE},
		{"table_tcp_ack_ts", "tcp_ack_ts", 1, TABLE},
	};
	struct bench_empty_bpf *empty = bench_empty_bpf__open_and_load();
	struct flow_bpf *flow = flow_bpf__open_and_load();
	struct flow_bpf *lan = flow_bpf__open();
	struct flow_bpf *table = flow_bpf__open();

	if (lan) {
		lan->rodata->lan_side = true;
		lan->rodata->ingress_dir = 1; /* upload */
		if (flow_bpf__load(lan)) {
			flow_bpf__destroy(lan);
			lan = NULL;
		}
	}
	if (table) {
		table->rodata->tcp_shortcut = false;
		if (flow_bpf__load(table)) {
			flow_bpf__destroy(table);
			table = NULL;
		}
	}
	if (!empty || !flow || !lan || !table) {
		fprintf(stderr, "bench_tc: cannot load the BPF programs (root needed)\n");
		return 1;
	}
	printf("%-18s %10s %10s %12s %7s\n", "packet", "ispmon_ns", "empty_ns", "overhead_ns", "ratio");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct flow_bpf *o = cases[i].inst == LAN ? lan : cases[i].inst == TABLE ? table : flow;
		int fd = bpf_program__fd(cases[i].ingress ? o->progs.tc_ingress : o->progs.tc_egress);
		double a[ROUNDS], b[ROUNDS];
		struct pkt p;

		build(&p, cases[i].pkt);
		/* Interleave the two so drifts in machine load hit both. */
		for (int r = 0; r < ROUNDS; r++) {
			a[r] = run(fd, &p);
			b[r] = run(bpf_program__fd(empty->progs.tc_empty), &p);
			if (a[r] < 0 || b[r] < 0) {
				fprintf(stderr, "bench_tc: test run failed for %s\n", cases[i].kind);
				return 1;
			}
		}
		qsort(a, ROUNDS, sizeof(double), cmp);
		qsort(b, ROUNDS, sizeof(double), cmp);
		printf("%-18s %10.1f %10.1f %12.1f %7.2f\n", cases[i].kind, a[ROUNDS / 2],
		       b[ROUNDS / 2], a[ROUNDS / 2] - b[ROUNDS / 2],
		       b[ROUNDS / 2] > 0 ? a[ROUNDS / 2] / b[ROUNDS / 2] : 0);
	}
	flow_bpf__destroy(table);
	flow_bpf__destroy(lan);
	flow_bpf__destroy(flow);
	bench_empty_bpf__destroy(empty);
	return 0;
}
