// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Unit test of the passive RTT logic (bpf/rtt.h) in the TC programs of
 * bpf/flow.bpf.c, run in the kernel with BPF_PROG_TEST_RUN on crafted packet
 * sequences.
 *
 * The household side is "lan", the internet side "wan": a packet from lan to
 * wan leaves through the WAN interface and runs through tc_egress, one from
 * wan to lan arrives and runs through tc_ingress. A request remembered on
 * egress and answered on ingress is a WAN-leg sample, the mirror a LAN-leg one.
 *
 * Every scenario starts from empty maps (one skeleton per rodata setting,
 * every map cleared and checked empty before each scenario) so that counts
 * are exact. It asserts, after the steps that matter and at the end:
 *  - the samples per (leg, method): rtt_sum count, and the rtt_hist total of
 *    that series, summed over all possible CPUs;
 *  - the per-method counters (records, samples, rate_limited, ambiguous)
 *    and, where a scenario is about them, the flow table counters;
 *  - where a value is asserted, the test sleeps between request and answer:
 *    the sample lies between the sleep and the time from the start of the
 *    request's run to the end of the answer's run (CLOCK_MONOTONIC, the
 *    clock of bpf_ktime_get_ns) plus CLOCK_SLACK_NS. That upper bound is
 *    causal, so it holds however late a busy machine wakes the test up, and
 *    the sample's histogram bucket is ispmon_rtt_bucket() of its value;
 *  - every run returns TC_ACT_UNSPEC and leaves the packet byte-identical.
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
#include <time.h>
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
#define MS 1000000ULL              /* ns */
#define SLEEP_MS 20                /* between a request and its answer */
#define CLOCK_SLACK_NS (2 * MS)    /* bpf_ktime_get_ns vs clock_gettime */
#define RATE_LIMIT_NS (50 * MS)    /* the rate-limited instance */

/* Short names for the series. */
enum {
	WAN = ISPMON_LEG_WAN,
	LAN = ISPMON_LEG_LAN,
	M_TS = ISPMON_M_TCP_TS,
	M_SEQ = ISPMON_M_TCP_SEQ,
	M_DNS = ISPMON_M_DNS,
	M_ICMP = ISPMON_M_ICMP,
};

static const char *const LEG_NAME[ISPMON_LEG_MAX] = { "wan", "lan" };
static const char *const M_NAME[ISPMON_M_MAX] = { "tcp_ts", "tcp_seq", "dns", "icmp" };

/* ---- result reporting ---------------------------------------------------- */


static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* ---- transport payloads ----------------------------------------------------- */

/* TCP options, appended to o. */
static void opt_nops(struct buf *o, int n)
{
	b_fill(o, 1, (size_t)n);
}

static void opt_ts(struct buf *o, uint32_t val, uint32_t ecr)
{
	b_u8(o, 8);
	b_u8(o, 10);
	b_u32(o, val);
	b_u32(o, ecr);
}

static void opt_mss(struct buf *o)
{
	b_u8(o, 2);
	b_u8(o, 4);
	b_u16(o, 1460);
}

static void opt_sackperm(struct buf *o)
{
	b_u8(o, 4);
	b_u8(o, 2);
}

static void opt_ws(struct buf *o)
{
	b_u8(o, 3);
	b_u8(o, 3);
	b_u8(o, 7);
}

static void opt_sack(struct buf *o, int blocks)
{
	b_u8(o, 5);
	b_u8(o, (uint8_t)(2 + 8 * blocks));
	for (int i = 0; i < blocks; i++) {
		b_u32(o, 0x30000000u + 3000u * (uint32_t)i);
		b_u32(o, 0x30000000u + 3000u * (uint32_t)i + 1448u);
	}
}

/* Pad to a multiple of 4 with EOL (zero) bytes, as stacks do. */
static void opt_end(struct buf *o)
{
	while (o->n % 4)
		b_u8(o, 0);
}

/*
 * What fills the bytes past the headers the programs may read (TCP payload,
 * the DNS message after its id and QR bit, the ICMP echo data): a fixed
 * pattern, or, with payload_noise set, bytes from a generator, so that a
 * program reading payload would count or match differently
 * (test_payload_blind).
 */
static bool payload_noise;
static uint32_t noise_state = 0x2545f491u;

static uint8_t payload_byte(size_t i, uint8_t pattern)
{
	if (!payload_noise)
		return (uint8_t)(pattern + i % 26);
	noise_state ^= noise_state << 13;
	noise_state ^= noise_state >> 17;
	noise_state ^= noise_state << 5;
	return (uint8_t)noise_state;
}

struct seg {
	uint32_t seq, ack;
	uint8_t flags;
	bool ts;                 /* NOP NOP TS(tsval, tsecr) */
	uint32_t tsval, tsecr;
	const struct buf *opts;  /* raw options instead (a multiple of 4 bytes) */
	size_t len;              /* payload bytes */
};

static void tcp_hdr(struct buf *b, uint16_t sport, uint16_t dport, const struct seg *s)
{
	const struct buf *opts = s->opts;
	struct buf std = { .n = 0 };

	if (!opts && s->ts) {
		opt_nops(&std, 2);
		opt_ts(&std, s->tsval, s->tsecr);
		opts = &std;
	}
	if (opts && (opts->n % 4 || opts->n > 40)) {
		fprintf(stderr, "test_rtt: bad TCP option length %zu\n", opts->n);
		exit(1);
	}
	b->n = 0;
	b_u16(b, sport);
	b_u16(b, dport);
	b_u32(b, s->seq);
	b_u32(b, s->ack);
	b_u8(b, (uint8_t)((5 + (opts ? opts->n : 0) / 4) << 4));
	b_u8(b, s->flags);
	b_u16(b, 65535);               /* window */
	b_u16(b, 0);                   /* checksum: the IP builder fills it in */
	b_u16(b, 0);                   /* urgent */
	if (opts)
		b_put(b, opts->d, opts->n);
	for (size_t i = 0; i < s->len; i++)
		b_u8(b, payload_byte(i, 'a'));
}

/* A DNS message for example.com/A: a query, or the response with one answer. */
static void dns_msg(struct buf *b, uint16_t id, bool response)
{
	static const uint8_t qname[] = { 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0 };

	size_t body;

	b->n = 0;
	b_u16(b, id);
	b_u16(b, response ? 0x8180 : 0x0100);  /* QR, RD, RA / RD */
	body = b->n - 1;                        /* what follows the QR bit's byte */
	b_u16(b, 1);                           /* QDCOUNT */
	b_u16(b, response ? 1 : 0);            /* ANCOUNT */
	b_u16(b, 0);
	b_u16(b, 0);
	b_put(b, qname, sizeof(qname));
	b_u16(b, 1);                           /* A */
	b_u16(b, 1);                           /* IN */
	if (response) {
		b_u16(b, 0xc00c);              /* name: pointer to the question */
		b_u16(b, 1);
		b_u16(b, 1);
		b_u32(b, 300);                 /* TTL */
		b_u16(b, 4);
		b_put(b, V4_DST, 4);
	}
	if (payload_noise)
		for (size_t i = body; i < b->n; i++)
			b->d[i] = payload_byte(i, 0);
}

static void udp_hdr(struct buf *b, uint16_t sport, uint16_t dport, const struct buf *payload)
{
	b->n = 0;
	b_u16(b, sport);
	b_u16(b, dport);
	b_u16(b, (uint16_t)(8 + payload->n));
	b_u16(b, 0);
	b_put(b, payload->d, payload->n);
}

static void icmp_hdr(struct buf *b, uint8_t type, uint16_t id, uint16_t seq)
{
	b->n = 0;
	b_u8(b, type);
	b_u8(b, 0);
	b_u16(b, 0);                   /* checksum: the IP builder fills it in */
	b_u16(b, id);
	b_u16(b, seq);
	for (size_t i = 0; i < 32; i++)
		b_u8(b, payload_byte(i, 0));
}

/* ---- connections and framing -------------------------------------------------- */

enum encap {
	ENC_ETH,          /* Ethernet */
	ENC_VLAN,         /* one 802.1Q tag */
	ENC_PPPOE,        /* PPPoE session */
	ENC_QINQ_PPPOE,   /* 802.1ad + 802.1Q, then PPPoE: the usual FTTH setup */
	ENC_BARE,         /* no link layer: an L3 device */
};

/* Two endpoints: lan (in the household) and wan (on the internet). */
struct conn {
	int family;                 /* 4 or 6 */
	enum encap encap;
	const uint8_t *lan, *wan;   /* 4 or 16 bytes */
	uint16_t lan_port, wan_port;
	const uint8_t *ipopts;      /* IPv4 options, a multiple of 4 bytes */
	size_t ipoptlen;
	const struct buf *v6ext;    /* IPv6 extension headers */
	uint8_t v6first;            /* type of the first one */
};

static const struct conn TCP4 = {
	.family = 4, .encap = ENC_ETH, .lan = V4_SRC, .wan = V4_DST,
	.lan_port = 40000, .wan_port = 443,
};
static const struct conn TCP6 = {
	.family = 6, .encap = ENC_ETH, .lan = V6_SRC, .wan = V6_DST,
	.lan_port = 40000, .wan_port = 443,
};
/* A client in the household asks a resolver on the internet. */
static const struct conn DNS4 = {
	.family = 4, .encap = ENC_ETH, .lan = V4_SRC, .wan = V4_DST,
	.lan_port = 40001, .wan_port = 53,
};
static const struct conn DNS6 = {
	.family = 6, .encap = ENC_ETH, .lan = V6_SRC, .wan = V6_DST,
	.lan_port = 40001, .wan_port = 53,
};
/* A resolver in the household asked from the internet. */
static const struct conn DNS4_LAN_SERVER = {
	.family = 4, .encap = ENC_ETH, .lan = V4_SRC, .wan = V4_DST,
	.lan_port = 53, .wan_port = 40001,
};
static const struct conn ICMP4 = {
	.family = 4, .encap = ENC_ETH, .lan = V4_SRC, .wan = V4_DST,
};
static const struct conn ICMP6 = {
	.family = 6, .encap = ENC_ETH, .lan = V6_SRC, .wan = V6_DST,
};

/* Frame a transport payload going lan -> wan (egress) or wan -> lan. */
static void frame(struct buf *f, const struct conn *c, bool egress, uint8_t proto,
		  const struct buf *l4)
{
	static const uint16_t tag_q[] = { ETH_P_8021Q };
	static const uint16_t tag_qinq[] = { ETH_P_8021AD, ETH_P_8021Q };
	const uint8_t *src = egress ? c->lan : c->wan;
	const uint8_t *dst = egress ? c->wan : c->lan;
	uint16_t ethertype = c->family == 4 ? ETH_P_IP : ETH_P_IPV6;
	uint16_t ppp = c->family == 4 ? PPP_IP : PPP_IPV6;
	struct buf l3;

	if (c->family == 4) {
		struct v4opt o = { .src = src, .dst = dst, .opts = c->ipopts,
				   .optlen = c->ipoptlen };

		ipv4_pkt(&l3, proto, l4, &o);
	} else {
		struct v6opt o = { .src = src, .dst = dst, .ext = c->v6ext,
				   .first = c->v6first };

		ipv6_pkt(&l3, proto, l4, &o);
	}
	switch (c->encap) {
	case ENC_VLAN:
		eth_frame(f, tag_q, 1, 0, ethertype, &l3);
		break;
	case ENC_PPPOE:
		eth_frame(f, NULL, 0, ppp, 0, &l3);
		break;
	case ENC_QINQ_PPPOE:
		eth_frame(f, tag_qinq, 2, ppp, 0, &l3);
		break;
	case ENC_BARE:
		*f = l3;
		break;
	case ENC_ETH:
	default:
		eth_frame(f, NULL, 0, 0, ethertype, &l3);
		break;
	}
}

/* ---- map snapshots ---------------------------------------------------------------- */

static int ncpus;

struct snap {
	struct ispmon_rtt_counters ctr[ISPMON_M_MAX];
	struct ispmon_rtt_sum sum[ISPMON_RTT_SERIES];
	__u64 hist[ISPMON_RTT_SERIES][ISPMON_RTT_BUCKETS];
	struct ispmon_flow_counters flows;
};

/* Sum over the CPUs of one per-CPU entry made of n_u64 __u64 fields (all
 * the values read here are), into out. */
static int read_percpu(int fd, __u32 key, __u64 *out, size_t n_u64, __u64 *scratch)
{
	if (bpf_map_lookup_elem(fd, &key, scratch))
		return -errno;
	memset(out, 0, n_u64 * sizeof(*out));
	for (int c = 0; c < ncpus; c++)
		for (size_t i = 0; i < n_u64; i++)
			out[i] += scratch[(size_t)c * n_u64 + i];
	return 0;
}

#define U64S(x) (sizeof(x) / sizeof(__u64))

static int read_snap(const struct flow_bpf *skel, struct snap *s)
{
	/* Largest value: the counters, 4 x u64 per CPU. */
	__u64 *scratch = calloc((size_t)ncpus, sizeof(struct ispmon_rtt_counters));
	int hist_fd = bpf_map__fd(skel->maps.rtt_hist);
	int err = 0;

	if (!scratch)
		return -ENOMEM;
	memset(s, 0, sizeof(*s));
	for (__u32 m = 0; m < ISPMON_M_MAX && !err; m++)
		err = read_percpu(bpf_map__fd(skel->maps.rtt_counters), m,
				  (__u64 *)&s->ctr[m], U64S(s->ctr[m]), scratch);
	for (__u32 i = 0; i < ISPMON_RTT_SERIES && !err; i++)
		err = read_percpu(bpf_map__fd(skel->maps.rtt_sum), i,
				  (__u64 *)&s->sum[i], U64S(s->sum[i]), scratch);
	for (__u32 i = 0; i < ISPMON_RTT_SERIES && !err; i++)
		for (__u32 b = 0; b < ISPMON_RTT_BUCKETS && !err; b++)
			err = read_percpu(hist_fd, i * ISPMON_RTT_BUCKETS + b, &s->hist[i][b], 1,
					  scratch);
	if (!err)
		err = read_percpu(bpf_map__fd(skel->maps.flow_counters), 0,
				  (__u64 *)&s->flows, U64S(s->flows), scratch);
	free(scratch);
	return err;
}

/* Zero every entry of a per-CPU array whose values are value_size bytes. */
static int zero_percpu_array(const struct bpf_map *map)
{
	size_t vs = bpf_map__value_size(map);
	__u32 n = bpf_map__max_entries(map);
	void *zero = calloc((size_t)ncpus, (vs + 7) / 8 * 8);
	int fd = bpf_map__fd(map), err = 0;

	if (!zero)
		return -ENOMEM;
	for (__u32 k = 0; k < n && !err; k++)
		if (bpf_map_update_elem(fd, &k, zero, BPF_ANY))
			err = -errno;
	free(zero);
	return err;
}

/* Delete every key of a hash map; 0 when it is empty afterwards. */
static int empty_hash(const struct bpf_map *map)
{
	size_t ks = bpf_map__key_size(map);
	void *key = calloc(1, ks);
	int fd = bpf_map__fd(map), err = 0;

	if (!key)
		return -ENOMEM;
	/* Restart from the first key after each deletion: the key a walk
	 * would continue from is gone. */
	while (!bpf_map_get_next_key(fd, NULL, key)) {
		if (bpf_map_delete_elem(fd, key)) {
			err = -errno;
			break;
		}
	}
	if (!err && errno != ENOENT)
		err = -errno;
	free(key);
	return err;
}

static int reset_maps(const struct flow_bpf *skel)
{
	const struct bpf_map *arrays[] = { skel->maps.rtt_hist, skel->maps.rtt_sum,
					   skel->maps.rtt_counters, skel->maps.flow_counters,
					   skel->maps.dir_stats, skel->maps.rtt_seen,
					   skel->maps.dev_cache };
	int err = 0;

	for (size_t i = 0; i < sizeof(arrays) / sizeof(arrays[0]) && !err; i++)
		err = zero_percpu_array(arrays[i]);
	if (!err)
		err = empty_hash(skel->maps.flow_state);
	if (!err)
		err = empty_hash(skel->maps.pending);
	return err;
}

/* ---- scenarios ------------------------------------------------------------------------ */

/* What the maps must hold; everything not named is zero. */
struct want {
	unsigned samples[ISPMON_LEG_MAX][ISPMON_M_MAX];
	unsigned records[ISPMON_M_MAX];
	unsigned rate_limited[ISPMON_M_MAX];
	unsigned ambiguous[ISPMON_M_MAX];
	bool flows;              /* also check the flow table counters: */
	unsigned created, closed;
};

struct scen {
	const struct flow_bpf *skel;
	const char *name;
	int runs, bad;
	char first_bad[256];
	uint64_t t_start, t_end;   /* CLOCK_MONOTONIC around the last run */
};

/* Skeletons, loaded once each, by rodata: rate limit 0, RATE_LIMIT_NS, and
 * rate limit 0 on an L3 device. */
enum inst_kind { INST_PLAIN, INST_RATE, INST_L3, INST_MAX };
static struct flow_bpf *insts[INST_MAX];
static bool inst_failed[INST_MAX];

static struct flow_bpf *get_inst(enum inst_kind k)
{
	static const char *const what[INST_MAX] = {
		"rtt_rate_limit_ns 0", "rtt_rate_limit_ns 50 ms", "rtt_rate_limit_ns 0, l3_dev"
	};
	char name[160], why[200];
	struct flow_bpf *skel;
	int err;

	if (insts[k] || inst_failed[k])
		return insts[k];
	snprintf(name, sizeof(name), "skeleton opens and loads (%s)", what[k]);
	skel = flow_bpf__open();
	if (!skel) {
		snprintf(why, sizeof(why), "open: %s", strerror(errno));
		check(false, name, why);
		inst_failed[k] = true;
		return NULL;
	}
	skel->rodata->rtt_rate_limit_ns = k == INST_RATE ? RATE_LIMIT_NS : 0;
	skel->rodata->l3_dev = k == INST_L3;
	err = flow_bpf__load(skel);
	snprintf(why, sizeof(why), "load: %s", strerror(-err));
	check(!err, name, why);
	if (err) {
		flow_bpf__destroy(skel);
		inst_failed[k] = true;
		return NULL;
	}
	insts[k] = skel;
	return skel;
}

static bool scen_open(struct scen *sc, const char *name, enum inst_kind k)
{
	struct snap *s;
	int err;

	memset(sc, 0, sizeof(*sc));
	sc->name = name;
	sc->skel = get_inst(k);
	if (!sc->skel)
		return false;
	err = reset_maps(sc->skel);
	s = malloc(sizeof(*s));
	if (!err)
		err = s ? read_snap(sc->skel, s) : -ENOMEM;
	if (!err) {
		static const struct snap zero;

		if (memcmp(s, &zero, sizeof(zero)))
			err = -EBUSY;
	}
	free(s);
	if (err) {
		char cname[256], why[200];

		snprintf(cname, sizeof(cname), "%s: maps reset before the scenario", name);
		snprintf(why, sizeof(why), "%s", err == -EBUSY ? "not all zero after reset" :
			 strerror(-err));
		check(false, cname, why);
		return false;
	}
	return true;
}

/* One packet through tc_egress (egress) or tc_ingress; verdict and packet
 * are checked for every run and reported per scenario. */
static void scen_run(struct scen *sc, bool egress, const struct buf *f)
{
	static uint8_t out[BUF_MAX + 256];
	const struct bpf_program *prog = egress ? sc->skel->progs.tc_egress :
						  sc->skel->progs.tc_ingress;
	char why[200] = "";

	LIBBPF_OPTS(bpf_test_run_opts, opts);
	memset(out, 0xa5, sizeof(out));
	opts.data_in = f->d;
	opts.data_size_in = (__u32)f->n;
	opts.data_out = out;
	opts.data_size_out = sizeof(out);
	opts.repeat = 1;

	sc->runs++;
	sc->t_start = mono_ns();
	if (bpf_prog_test_run_opts(bpf_program__fd(prog), &opts))
		snprintf(why, sizeof(why), "test run: %s", strerror(errno));
	sc->t_end = mono_ns();
	if (!why[0] && (int)opts.retval != TC_ACT_UNSPEC)
		snprintf(why, sizeof(why), "retval %d", (int)opts.retval);
	if (!why[0] && (opts.data_size_out != f->n || memcmp(out, f->d, f->n)))
		snprintf(why, sizeof(why), "packet changed (size_out %u, in %zu)",
			 opts.data_size_out, f->n);
	if (why[0] && sc->bad++ == 0)
		snprintf(sc->first_bad, sizeof(sc->first_bad), "run %d (%s): %s", sc->runs,
			 egress ? "egress" : "ingress", why);
}

static void tcp_tx(struct scen *sc, const struct conn *c, bool egress, const struct seg *s)
{
	struct buf l4, f;

	tcp_hdr(&l4, egress ? c->lan_port : c->wan_port, egress ? c->wan_port : c->lan_port, s);
	frame(&f, c, egress, P_TCP, &l4);
	scen_run(sc, egress, &f);
}

static void dns_tx(struct scen *sc, const struct conn *c, bool egress, uint16_t id,
		   bool response)
{
	struct buf msg, l4, f;

	dns_msg(&msg, id, response);
	udp_hdr(&l4, egress ? c->lan_port : c->wan_port, egress ? c->wan_port : c->lan_port,
		&msg);
	frame(&f, c, egress, P_UDP, &l4);
	scen_run(sc, egress, &f);
}

static void icmp_tx(struct scen *sc, const struct conn *c, bool egress, bool request,
		    uint16_t id, uint16_t seq)
{
	struct buf l4, f;
	uint8_t type;

	if (c->family == 4)
		type = request ? 8 : 0;
	else
		type = request ? 128 : 129;
	icmp_hdr(&l4, type, id, seq);
	frame(&f, c, egress, c->family == 4 ? P_ICMP : P_ICMPV6, &l4);
	scen_run(sc, egress, &f);
}

/* Compare the maps with w: samples per series (and histogram totals), then
 * the counters; two checks named after the scenario and the step. */
static void scen_expect(struct scen *sc, const char *step, const struct want *w)
{
	char name[512], why[1024] = "", desc[256] = "";
	struct snap *s = malloc(sizeof(*s));
	int err;

	if (!s) {
		check(false, sc->name, "out of memory");
		return;
	}
	err = read_snap(sc->skel, s);
	for (int l = 0; l < ISPMON_LEG_MAX; l++)
		for (int m = 0; m < ISPMON_M_MAX; m++)
			if (w->samples[l][m])
				appendf(desc, sizeof(desc), " %s/%s %u", LEG_NAME[l], M_NAME[m],
					w->samples[l][m]);
	snprintf(name, sizeof(name), "%s: %s%ssamples%s, other series 0", sc->name,
		 step ? step : "", step ? ": " : "", desc[0] ? desc : " none");
	if (err) {
		snprintf(why, sizeof(why), "reading maps: %s", strerror(-err));
		check(false, name, why);
		free(s);
		return;
	}
	for (int l = 0; l < ISPMON_LEG_MAX; l++) {
		for (int m = 0; m < ISPMON_M_MAX; m++) {
			int series = l * ISPMON_M_MAX + m;
			uint64_t total = 0;

			for (__u32 b = 0; b < ISPMON_RTT_BUCKETS; b++)
				total += s->hist[series][b];
			if (s->sum[series].count != w->samples[l][m])
				appendf(why, sizeof(why), "%s/%s count %llu want %u; ", LEG_NAME[l],
					M_NAME[m], (unsigned long long)s->sum[series].count,
					w->samples[l][m]);
			if (total != s->sum[series].count)
				appendf(why, sizeof(why), "%s/%s histogram total %llu != count %llu; ",
					LEG_NAME[l], M_NAME[m], (unsigned long long)total,
					(unsigned long long)s->sum[series].count);
			if (!s->sum[series].count && s->sum[series].sum_ns)
				appendf(why, sizeof(why), "%s/%s sum_ns %llu with no sample; ",
					LEG_NAME[l], M_NAME[m],
					(unsigned long long)s->sum[series].sum_ns);
		}
	}
	check(!why[0], name, why);

	desc[0] = 0;
	why[0] = 0;
	for (int m = 0; m < ISPMON_M_MAX; m++) {
		const struct ispmon_rtt_counters *c = &s->ctr[m];
		unsigned samples = w->samples[WAN][m] + w->samples[LAN][m];

		if (w->records[m] || w->rate_limited[m] || w->ambiguous[m])
			appendf(desc, sizeof(desc), " %s records %u rate_limited %u ambiguous %u;",
				M_NAME[m], w->records[m], w->rate_limited[m], w->ambiguous[m]);
		if (c->records != w->records[m] || c->samples != samples ||
		    c->rate_limited != w->rate_limited[m] || c->ambiguous != w->ambiguous[m])
			appendf(why, sizeof(why),
				"%s records %llu/%u samples %llu/%u rate_limited %llu/%u "
				"ambiguous %llu/%u (got/want); ", M_NAME[m],
				(unsigned long long)c->records, w->records[m],
				(unsigned long long)c->samples, samples,
				(unsigned long long)c->rate_limited, w->rate_limited[m],
				(unsigned long long)c->ambiguous, w->ambiguous[m]);
	}
	if (w->flows && (s->flows.created != w->created || s->flows.closed != w->closed))
		appendf(why, sizeof(why), "flows created %llu want %u, closed %llu want %u",
			(unsigned long long)s->flows.created, w->created,
			(unsigned long long)s->flows.closed, w->closed);
	if (w->flows)
		snprintf(name, sizeof(name), "%s: %s%scounters%s flows created %u closed %u, "
			 "rest 0", sc->name, step ? step : "", step ? ": " : "", desc,
			 w->created, w->closed);
	else
		snprintf(name, sizeof(name), "%s: %s%scounters%s rest 0", sc->name,
			 step ? step : "", step ? ": " : "", desc);
	check(!why[0], name, why);
	free(s);
}

/*
 * The value of the one sample of a series whose request ran at or after
 * t_req (a scen.t_start) and whose answer was the last run, min_ns after it
 * at least: in [min_ns, last run's end - t_req + slack], and counted in the
 * bucket ispmon_rtt_bucket() gives for it.
 */
static void scen_expect_rtt(struct scen *sc, int leg, int method, uint64_t t_req,
			    uint64_t min_ns)
{
	int series = leg * ISPMON_M_MAX + method;
	uint64_t max_ns = sc->t_end - t_req + CLOCK_SLACK_NS, rtt;
	char name[400], why[400] = "";
	struct snap *s = malloc(sizeof(*s));
	__u32 want_b;

	snprintf(name, sizeof(name), "%s: %s/%s sample >= %llu ms, within the request-to-answer "
		 "window, in its bucket", sc->name, LEG_NAME[leg], M_NAME[method],
		 (unsigned long long)(min_ns / MS));
	if (!s || read_snap(sc->skel, s)) {
		check(false, name, "reading maps failed");
		free(s);
		return;
	}
	if (s->sum[series].count != 1) {
		snprintf(why, sizeof(why), "%llu samples, want exactly 1",
			 (unsigned long long)s->sum[series].count);
		check(false, name, why);
		free(s);
		return;
	}
	rtt = s->sum[series].sum_ns;
	want_b = ispmon_rtt_bucket(rtt / 1000);
	if (rtt < min_ns || rtt > max_ns)
		appendf(why, sizeof(why), "rtt %.3f ms outside [%.3f, %.3f] ms; ",
			(double)rtt / MS, (double)min_ns / MS, (double)max_ns / MS);
	if (want_b >= ISPMON_RTT_BUCKETS || s->hist[series][want_b] != 1) {
		appendf(why, sizeof(why), "rtt %llu us belongs in bucket %u, histogram has:",
			(unsigned long long)(rtt / 1000), want_b);
		for (__u32 b = 0; b < ISPMON_RTT_BUCKETS; b++)
			if (s->hist[series][b])
				appendf(why, sizeof(why), " [%u]=%llu", b,
					(unsigned long long)s->hist[series][b]);
	}
	check(!why[0], name, why);
	printf("# rtt %.3f ms, allowed [%.3f, %.3f] ms, bucket %u from %llu us\n",
	       (double)rtt / MS, (double)min_ns / MS, (double)max_ns / MS, want_b,
	       (unsigned long long)ispmon_rtt_bucket_lower_us(want_b));
	free(s);
}

static void scen_close(struct scen *sc)
{
	char name[400], why[400];

	snprintf(name, sizeof(name), "%s: every run (%d) returns TC_ACT_UNSPEC, packet unchanged",
		 sc->name, sc->runs);
	snprintf(why, sizeof(why), "%d bad, first: %s", sc->bad, sc->first_bad);
	check(sc->bad == 0 && sc->runs > 0, name, why);
}

/* ---- TCP helpers ----------------------------------------------------------------------- */

#define C_ISN 0x10000000u          /* lan side's initial sequence number */
#define S_ISN 0x20000000u          /* wan side's */
#define C_TS 1000u                 /* lan side's first TSval */
#define S_TS 500000u               /* wan side's */
#define OLD_ECR 7u                 /* a TSecr nothing was recorded for */

/* A data segment with the timestamp option (ACK set, as mid-stream). */
static void ts_data(struct scen *sc, const struct conn *c, bool egress, uint32_t seq,
		    size_t len, uint32_t tsval)
{
	tcp_tx(sc, c, egress, &(struct seg){ .seq = seq, .ack = egress ? S_ISN : C_ISN,
					      .flags = TH_ACK | TH_PSH, .ts = true,
					      .tsval = tsval, .tsecr = OLD_ECR, .len = len });
}

/* A pure ACK with the timestamp option echoing tsecr. */
static void ts_ack(struct scen *sc, const struct conn *c, bool egress, uint32_t ack,
		   uint32_t tsval, uint32_t tsecr)
{
	tcp_tx(sc, c, egress, &(struct seg){ .seq = egress ? C_ISN : S_ISN, .ack = ack,
					      .flags = TH_ACK, .ts = true, .tsval = tsval,
					      .tsecr = tsecr });
}

/* The same without options (SEQ/ACK method). */
static void seq_data(struct scen *sc, const struct conn *c, bool egress, uint32_t seq,
		     size_t len)
{
	tcp_tx(sc, c, egress, &(struct seg){ .seq = seq, .ack = egress ? S_ISN : C_ISN,
					      .flags = TH_ACK | TH_PSH, .len = len });
}

static void seq_ack(struct scen *sc, const struct conn *c, bool egress, uint32_t ack)
{
	tcp_tx(sc, c, egress, &(struct seg){ .seq = egress ? C_ISN : S_ISN, .ack = ack,
					      .flags = TH_ACK });
}

/* SYN from lan (egress) and SYN-ACK from wan (ingress) echoing it, with a
 * SLEEP_MS pause; asserts the WAN sample's value. */
static void ts_syn_synack(struct scen *sc, const struct conn *c)
{
	uint64_t t;

	tcp_tx(sc, c, true, &(struct seg){ .seq = C_ISN, .flags = TH_SYN, .ts = true,
					   .tsval = C_TS });
	t = sc->t_start;
	sleep_ms(SLEEP_MS);
	tcp_tx(sc, c, false, &(struct seg){ .seq = S_ISN, .ack = C_ISN + 1,
					    .flags = TH_SYN | TH_ACK, .ts = true,
					    .tsval = S_TS, .tsecr = C_TS });
	scen_expect_rtt(sc, WAN, M_TS, t, SLEEP_MS * MS);
}

/* ---- TCP timestamps --------------------------------------------------------------------- */

static void test_ts_handshake(void)
{
	struct scen sc;
	uint64_t t;

	if (!scen_open(&sc, "tcp_ts: SYN egress, SYN-ACK ingress echoes its TSval", INST_PLAIN))
		return;
	ts_syn_synack(&sc, &TCP4);
	/* The SYN-ACK is remembered too: its echo (the handshake's last ACK,
	 * egress) measures the LAN leg. */
	scen_expect(&sc, NULL, &(struct want){ .samples[WAN][M_TS] = 1, .records[M_TS] = 2 });
	scen_close(&sc);

	if (!scen_open(&sc, "tcp_ts: handshake's last ACK egress echoes the SYN-ACK",
		       INST_PLAIN))
		return;
	tcp_tx(&sc, &TCP4, true, &(struct seg){ .seq = C_ISN, .flags = TH_SYN, .ts = true,
						.tsval = C_TS });
	tcp_tx(&sc, &TCP4, false, &(struct seg){ .seq = S_ISN, .ack = C_ISN + 1,
						 .flags = TH_SYN | TH_ACK, .ts = true,
						 .tsval = S_TS, .tsecr = C_TS });
	t = sc.t_start;
	sleep_ms(SLEEP_MS);
	ts_ack(&sc, &TCP4, true, S_ISN + 1, C_TS, S_TS);
	scen_expect_rtt(&sc, LAN, M_TS, t, SLEEP_MS * MS);
	scen_expect(&sc, NULL, &(struct want){ .samples[WAN][M_TS] = 1, .samples[LAN][M_TS] = 1,
					       .records[M_TS] = 2 });
	scen_close(&sc);
}

static void test_ts_data(void)
{
	struct scen sc;
	uint64_t t;

	if (!scen_open(&sc, "tcp_ts: data egress, ACK ingress echoes its TSval", INST_PLAIN))
		return;
	ts_data(&sc, &TCP4, true, C_ISN, 100, C_TS);           /* first seen: edge only */
	ts_data(&sc, &TCP4, true, C_ISN + 100, 100, C_TS + 1);
	t = sc.t_start;
	sleep_ms(SLEEP_MS);
	ts_ack(&sc, &TCP4, false, C_ISN + 200, S_TS, C_TS + 1);
	scen_expect_rtt(&sc, WAN, M_TS, t, SLEEP_MS * MS);
	scen_expect(&sc, NULL, &(struct want){ .samples[WAN][M_TS] = 1, .records[M_TS] = 1 });
	scen_close(&sc);

	if (!scen_open(&sc, "tcp_ts: data ingress, ACK egress echoes its TSval (LAN leg)",
		       INST_PLAIN))
		return;
	ts_data(&sc, &TCP4, false, S_ISN, 1448, S_TS);
	ts_data(&sc, &TCP4, false, S_ISN + 1448, 1448, S_TS + 1);
	t = sc.t_start;
	sleep_ms(SLEEP_MS);
	ts_ack(&sc, &TCP4, true, S_ISN + 2896, C_TS, S_TS + 1);
	scen_expect_rtt(&sc, LAN, M_TS, t, SLEEP_MS * MS);
	scen_expect(&sc, NULL, &(struct want){ .samples[LAN][M_TS] = 1, .records[M_TS] = 1 });
	scen_close(&sc);
}

static void test_ts_midstream(void)
{
	struct scen sc;

	if (!scen_open(&sc, "tcp_ts: flow first seen mid-stream", INST_PLAIN))
		return;
	ts_data(&sc, &TCP4, true, C_ISN, 100, C_TS);
	ts_ack(&sc, &TCP4, false, C_ISN + 100, S_TS, C_TS);
	scen_expect(&sc, "first data packet not remembered, its echo no sample",
		    &(struct want){ 0 });
	ts_data(&sc, &TCP4, true, C_ISN + 100, 100, C_TS);
	ts_ack(&sc, &TCP4, false, C_ISN + 200, S_TS, C_TS);
	scen_expect(&sc, "next packet with the same TSval neither",
		    &(struct want){ 0 });
	ts_data(&sc, &TCP4, true, C_ISN + 200, 100, C_TS + 1);
	scen_expect(&sc, "first TSval change remembered",
		    &(struct want){ .records[M_TS] = 1 });
	ts_ack(&sc, &TCP4, false, C_ISN + 300, S_TS, C_TS + 1);
	scen_expect(&sc, "its echo", &(struct want){ .samples[WAN][M_TS] = 1,
						     .records[M_TS] = 1 });
	scen_close(&sc);
}

static void test_ts_duplicates(void)
{
	struct scen sc;

	if (!scen_open(&sc, "tcp_ts: second data packet with the same TSval", INST_PLAIN))
		return;
	ts_data(&sc, &TCP4, true, C_ISN, 100, C_TS);
	ts_data(&sc, &TCP4, true, C_ISN + 100, 100, C_TS + 1);
	ts_data(&sc, &TCP4, true, C_ISN + 200, 100, C_TS + 1);
	scen_expect(&sc, "one record", &(struct want){ .records[M_TS] = 1 });
	ts_ack(&sc, &TCP4, false, C_ISN + 300, S_TS, C_TS + 1);
	scen_expect(&sc, NULL, &(struct want){ .samples[WAN][M_TS] = 1, .records[M_TS] = 1 });
	scen_close(&sc);

	if (!scen_open(&sc, "tcp_ts: echo matched twice (two ACKs with the same TSecr)",
		       INST_PLAIN))
		return;
	ts_data(&sc, &TCP4, true, C_ISN, 100, C_TS);
	ts_data(&sc, &TCP4, true, C_ISN + 100, 100, C_TS + 1);
	ts_ack(&sc, &TCP4, false, C_ISN + 150, S_TS, C_TS + 1);
	ts_ack(&sc, &TCP4, false, C_ISN + 200, S_TS, C_TS + 1);
	scen_expect(&sc, NULL, &(struct want){ .samples[WAN][M_TS] = 1, .records[M_TS] = 1 });
	scen_close(&sc);
}

static void test_ts_retrans_reorder(void)
{
	struct scen sc;

	if (!scen_open(&sc, "tcp_ts: retransmission with a new TSval", INST_PLAIN))
		return;
	ts_data(&sc, &TCP4, true, C_ISN, 100, C_TS);
	ts_data(&sc, &TCP4, true, C_ISN + 100, 100, C_TS + 1);
	ts_ack(&sc, &TCP4, false, C_ISN + 100, S_TS, C_TS + 1);  /* dup ACK: a sample */
	ts_data(&sc, &TCP4, true, C_ISN + 100, 100, C_TS + 2);   /* whole range resent */
	ts_data(&sc, &TCP4, true, C_ISN + 150, 100, C_TS + 3);   /* partly resent */
	scen_expect(&sc, "no record for resent ranges",
		    &(struct want){ .samples[WAN][M_TS] = 1, .records[M_TS] = 1 });
	ts_ack(&sc, &TCP4, false, C_ISN + 200, S_TS, C_TS + 2);
	ts_ack(&sc, &TCP4, false, C_ISN + 250, S_TS, C_TS + 3);
	scen_expect(&sc, "their echoes no sample",
		    &(struct want){ .samples[WAN][M_TS] = 1, .records[M_TS] = 1 });
	ts_data(&sc, &TCP4, true, C_ISN + 250, 100, C_TS + 4);
	ts_ack(&sc, &TCP4, false, C_ISN + 350, S_TS, C_TS + 4);
	scen_expect(&sc, "new data after them measured again",
		    &(struct want){ .samples[WAN][M_TS] = 2, .records[M_TS] = 2 });
	scen_close(&sc);

	if (!scen_open(&sc, "tcp_ts: reordered packets (older TSval)", INST_PLAIN))
		return;
	ts_data(&sc, &TCP4, true, C_ISN, 100, C_TS);
	ts_data(&sc, &TCP4, true, C_ISN + 200, 100, C_TS + 2);   /* overtook the next one */
	ts_data(&sc, &TCP4, true, C_ISN + 100, 100, C_TS + 1);   /* arrives late */
	ts_data(&sc, &TCP4, true, C_ISN + 300, 100, C_TS + 1);   /* new range, older TSval */
	scen_expect(&sc, "only the newest TSval remembered",
		    &(struct want){ .records[M_TS] = 1 });
	ts_ack(&sc, &TCP4, false, C_ISN + 100, S_TS, C_TS + 1);
	scen_expect(&sc, "echo of the older TSval no sample",
		    &(struct want){ .records[M_TS] = 1 });
	ts_ack(&sc, &TCP4, false, C_ISN + 400, S_TS, C_TS + 2);
	scen_expect(&sc, NULL, &(struct want){ .samples[WAN][M_TS] = 1, .records[M_TS] = 1 });
	scen_close(&sc);
}

/* The shortcut slot armed for a flow on some CPU with tsval: its end. */
static bool seen_slot(const struct scen *sc, uint32_t tsval, uint32_t *end)
{
	struct ispmon_tcp_seen *v = calloc((size_t)ncpus, sizeof(*v));
	bool found = false;

	for (__u32 k = 0; v && !found && k < bpf_map__max_entries(sc->skel->maps.rtt_seen); k++) {
		if (bpf_map_lookup_elem(bpf_map__fd(sc->skel->maps.rtt_seen), &k, v))
			break;
		for (int c = 0; c < ncpus && !found; c++)
			if (v[c].valid && v[c].tsval == tsval) {
				*end = v[c].end;
				found = true;
			}
	}
	free(v);
	return found;
}

/*
 * A burst of segments with one TSval takes the per-CPU shortcut (no flow
 * table lookup); what the flow table would have learnt from them, how far
 * the data went, must reach it with the next packet: a resend of the burst
 * under a new TSval is still a retransmission.
 */
static void test_ts_burst(void)
{
	struct scen sc;
	uint32_t end = 0;
	bool armed;

	if (!scen_open(&sc, "tcp_ts: a burst of one TSval (the per-CPU shortcut)", INST_PLAIN))
		return;
	ts_data(&sc, &TCP4, true, C_ISN, 100, C_TS);
	ts_data(&sc, &TCP4, true, C_ISN + 100, 100, C_TS);
	ts_data(&sc, &TCP4, true, C_ISN + 200, 100, C_TS);       /* the shortcut's */
	armed = seen_slot(&sc, C_TS, &end);
	check(armed && end == C_ISN + 300, "tcp_ts: the burst went the shortcut, which kept its end",
	      armed ? "armed, wrong end" : "no slot armed");
	ts_data(&sc, &TCP4, true, C_ISN + 200, 100, C_TS + 1);   /* that one resent */
	scen_expect(&sc, "the resent segment is no record",
		    &(struct want){ .flows = true, .created = 1 });
	ts_data(&sc, &TCP4, true, C_ISN + 300, 100, C_TS + 2);
	ts_ack(&sc, &TCP4, false, C_ISN + 400, S_TS, C_TS + 2);
	ts_ack(&sc, &TCP4, false, C_ISN + 400, S_TS, C_TS + 2);  /* its duplicate */
	scen_expect(&sc, "new data after it measured once",
		    &(struct want){ .samples[WAN][M_TS] = 1, .records[M_TS] = 1,
				    .flows = true, .created = 2 });
	scen_close(&sc);

	if (!scen_open(&sc, "tcp_ts: RST forgets the shortcut of both directions", INST_PLAIN))
		return;
	/* Two packets a side: the second arms the side's slot. */
	ts_data(&sc, &TCP4, true, C_ISN, 100, C_TS);
	ts_data(&sc, &TCP4, true, C_ISN + 100, 100, C_TS);
	ts_data(&sc, &TCP4, false, S_ISN, 100, S_TS);
	ts_data(&sc, &TCP4, false, S_ISN + 100, 100, S_TS);
	tcp_tx(&sc, &TCP4, false, &(struct seg){ .seq = S_ISN + 200, .ack = C_ISN + 200,
						 .flags = TH_RST | TH_ACK });
	/* The same TSval and TSecr again on both sides: new flows to the table. */
	ts_data(&sc, &TCP4, true, C_ISN + 200, 100, C_TS);
	ts_data(&sc, &TCP4, false, S_ISN + 200, 100, S_TS);
	scen_expect(&sc, "both seen as new", &(struct want){ .flows = true, .created = 4,
							     .closed = 2 });
	scen_close(&sc);
}

static void test_ts_pure_ack(void)
{
	struct scen sc;

	if (!scen_open(&sc, "tcp_ts: pure ACKs are never remembered", INST_PLAIN))
		return;
	/* A pure ACK of a flow we do not know creates nothing. */
	ts_ack(&sc, &TCP4, true, S_ISN, C_TS, OLD_ECR);
	scen_expect(&sc, "unknown flow", &(struct want){ 0 });
	ts_data(&sc, &TCP4, true, C_ISN, 100, C_TS + 1);
	ts_ack(&sc, &TCP4, true, S_ISN, C_TS + 2, OLD_ECR);     /* new TSval, no payload */
	ts_ack(&sc, &TCP4, false, C_ISN + 100, S_TS, C_TS + 2);
	scen_expect(&sc, "known flow, new TSval",
		    &(struct want){ 0 });
	scen_close(&sc);
}

/* TCP option layouts: SYN egress and SYN-ACK ingress both carry them. */
typedef void (*layout_fn)(struct buf *o, uint32_t val, uint32_t ecr);

static void lay_ts_first(struct buf *o, uint32_t v, uint32_t e)
{
	opt_ts(o, v, e);
	opt_nops(o, 2);
}

static void lay_linux_syn(struct buf *o, uint32_t v, uint32_t e)
{
	opt_mss(o);
	opt_sackperm(o);
	opt_ts(o, v, e);
	opt_nops(o, 1);
	opt_ws(o);
}

static void lay_mss_ws_sackperm(struct buf *o, uint32_t v, uint32_t e)
{
	opt_mss(o);
	opt_nops(o, 1);
	opt_ws(o);
	opt_sackperm(o);
	opt_ts(o, v, e);
}

static void lay_sack3(struct buf *o, uint32_t v, uint32_t e)
{
	opt_nops(o, 2);
	opt_sack(o, 3);
	opt_nops(o, 2);
	opt_ts(o, v, e);      /* ends at byte 40 */
}

static void lay_sack1(struct buf *o, uint32_t v, uint32_t e)
{
	opt_nops(o, 2);
	opt_sack(o, 1);
	opt_ts(o, v, e);
	opt_end(o);
}

static void lay_nops10(struct buf *o, uint32_t v, uint32_t e)
{
	opt_nops(o, 10);
	opt_ts(o, v, e);
}

static void lay_nops30(struct buf *o, uint32_t v, uint32_t e)
{
	opt_nops(o, 30);
	opt_ts(o, v, e);      /* the last 10 of 40 option bytes */
}

static void lay_unknown_kinds(struct buf *o, uint32_t v, uint32_t e)
{
	b_u8(o, 253);         /* experimental, 6 bytes */
	b_u8(o, 6);
	b_u32(o, 0xf989cafe);
	b_u8(o, 34);          /* fast open cookie, 10 bytes */
	b_u8(o, 10);
	b_fill(o, 0x5a, 8);
	opt_ts(o, v, e);
	opt_end(o);
}

static void lay_md5(struct buf *o, uint32_t v, uint32_t e)
{
	b_u8(o, 19);          /* TCP MD5 signature, 18 bytes */
	b_u8(o, 18);
	b_fill(o, 0xee, 16);
	opt_nops(o, 2);
	opt_ts(o, v, e);
	opt_end(o);
}

static void bad_len0(struct buf *o, uint32_t v, uint32_t e)
{
	b_u8(o, 2);           /* MSS with length 0 */
	b_u8(o, 0);
	opt_nops(o, 2);
	opt_ts(o, v, e);
	opt_end(o);
}

static void bad_len1(struct buf *o, uint32_t v, uint32_t e)
{
	b_u8(o, 2);
	b_u8(o, 1);
	opt_nops(o, 2);
	opt_ts(o, v, e);
	opt_end(o);
}

static void bad_ts_len0(struct buf *o, uint32_t v, uint32_t e)
{
	b_u8(o, 8);           /* a timestamp kind with length 0, then a good one */
	b_u8(o, 0);
	opt_nops(o, 2);
	opt_ts(o, v, e);
	opt_end(o);
}

static void bad_past_doff(struct buf *o, uint32_t v, uint32_t e)
{
	b_u8(o, 3);           /* window scale claiming 30 bytes of 16 */
	b_u8(o, 30);
	b_u8(o, 7);
	opt_nops(o, 1);
	opt_ts(o, v, e);      /* inside the claimed span */
	opt_end(o);
}

static void bad_eol_first(struct buf *o, uint32_t v, uint32_t e)
{
	opt_nops(o, 1);
	b_u8(o, 0);           /* EOL: the list ends here */
	opt_nops(o, 2);
	opt_ts(o, v, e);
	opt_end(o);
}

static void bad_ts_len12(struct buf *o, uint32_t v, uint32_t e)
{
	b_u8(o, 8);           /* timestamp kind, wrong length: skipped, not read */
	b_u8(o, 12);
	b_u32(o, v);
	b_u32(o, e);
	b_u16(o, 0);
}

static void bad_ts_cut(struct buf *o, uint32_t v, uint32_t e)
{
	/* doff leaves 8 option bytes: the timestamp's last 4 are payload. */
	opt_nops(o, 2);
	b_u8(o, 8);
	b_u8(o, 10);
	b_u32(o, v);
	(void)e;
}

static void bad_all_nops(struct buf *o, uint32_t v, uint32_t e)
{
	(void)v;
	(void)e;
	opt_nops(o, 40);
}

static void bad_kind_at_end(struct buf *o, uint32_t v, uint32_t e)
{
	(void)v;
	(void)e;
	opt_nops(o, 39);
	b_u8(o, 8);           /* timestamp kind as the last option byte */
}

struct layout {
	const char *name;
	layout_fn build;
	bool found;
	size_t payload;       /* bytes after the options */
};

static void test_ts_layouts(void)
{
	static const struct layout lays[] = {
		{ "TS first, NOPs after", lay_ts_first, true, 0 },
		{ "MSS, SACK-permitted, TS, NOP, WS (Linux SYN)", lay_linux_syn, true, 0 },
		{ "MSS, NOP, WS, SACK-permitted, TS", lay_mss_ws_sackperm, true, 0 },
		{ "NOP NOP, 3 SACK blocks, NOP NOP, TS (40 bytes)", lay_sack3, true, 0 },
		{ "NOP NOP, 1 SACK block, TS, EOL padding", lay_sack1, true, 0 },
		{ "10 NOPs, TS", lay_nops10, true, 0 },
		{ "30 NOPs, TS (last option bytes)", lay_nops30, true, 0 },
		{ "experimental and fast-open options, TS", lay_unknown_kinds, true, 0 },
		{ "MD5 signature, NOP NOP, TS", lay_md5, true, 0 },
		{ "malformed: option length 0 before TS", bad_len0, false, 0 },
		{ "malformed: option length 1 before TS", bad_len1, false, 0 },
		{ "malformed: TS kind with length 0 before TS", bad_ts_len0, false, 0 },
		{ "malformed: option length past doff, TS inside it", bad_past_doff, false, 0 },
		{ "malformed: EOL before TS", bad_eol_first, false, 0 },
		{ "malformed: TS kind with length 12", bad_ts_len12, false, 0 },
		{ "malformed: TS cut short by doff", bad_ts_cut, false, 4 },
		{ "malformed: 40 NOPs, no TS", bad_all_nops, false, 0 },
		{ "malformed: TS kind as the last option byte", bad_kind_at_end, false, 1 },
	};
	char name[200];

	for (size_t i = 0; i < sizeof(lays) / sizeof(lays[0]); i++) {
		const struct layout *ly = &lays[i];
		struct buf o1 = { .n = 0 }, o2 = { .n = 0 };
		struct scen sc;

		snprintf(name, sizeof(name), "tcp_ts options: %s", ly->name);
		if (!scen_open(&sc, name, INST_PLAIN))
			return;
		ly->build(&o1, C_TS, 0);
		ly->build(&o2, S_TS, C_TS);
		tcp_tx(&sc, &TCP4, true, &(struct seg){ .seq = C_ISN, .flags = TH_SYN,
							.opts = &o1, .len = ly->payload });
		tcp_tx(&sc, &TCP4, false, &(struct seg){ .seq = S_ISN,
							 .ack = C_ISN + 1 + (uint32_t)ly->payload,
							 .flags = TH_SYN | TH_ACK, .opts = &o2,
							 .len = ly->payload });
		if (ly->found)
			scen_expect(&sc, "found", &(struct want){ .samples[WAN][M_TS] = 1,
								  .records[M_TS] = 2 });
		else    /* no timestamps: the SEQ/ACK method takes the handshake */
			scen_expect(&sc, "not found, SEQ/ACK instead",
				    &(struct want){ .samples[WAN][M_SEQ] = 1,
						    .records[M_SEQ] = 2 });
		scen_close(&sc);
	}
}

/*
 * The rate-limit scenarios need two runs less than RATE_LIMIT_NS apart. A
 * stalled machine can break that: such an attempt is reported as a "#" line
 * and repeated (the maps are reset each time), at most RATE_ATTEMPTS times.
 */
#define RATE_ATTEMPTS 3

static bool rate_window_ok(struct scen *sc, uint64_t t_first)
{
	uint64_t span = sc->t_end - t_first;

	if (span < RATE_LIMIT_NS)
		return true;
	printf("# %s: runs meant 1 ms apart took %.1f ms, trying again\n", sc->name,
	       (double)span / MS);
	return false;
}

/* false: the timing was not met, nothing checked */
static bool rate_new_tsvals(void)
{
	struct scen sc;
	uint64_t t;

	if (!scen_open(&sc, "tcp_ts rate limit 50 ms: new TSvals 1 ms apart", INST_RATE))
		return true;
	ts_data(&sc, &TCP4, true, C_ISN, 100, C_TS);
	ts_data(&sc, &TCP4, true, C_ISN + 100, 100, C_TS + 1);
	t = sc.t_start;
	sleep_ms(1);
	ts_data(&sc, &TCP4, true, C_ISN + 200, 100, C_TS + 2);
	if (!rate_window_ok(&sc, t))
		return false;
	scen_expect(&sc, "recorded once",
		    &(struct want){ .records[M_TS] = 1, .rate_limited[M_TS] = 1 });
	ts_ack(&sc, &TCP4, false, C_ISN + 300, S_TS, C_TS + 2);
	scen_expect(&sc, "echo of the limited one no sample",
		    &(struct want){ .records[M_TS] = 1, .rate_limited[M_TS] = 1 });
	ts_ack(&sc, &TCP4, false, C_ISN + 300, S_TS, C_TS + 1);
	scen_expect(&sc, "echo of the recorded one a sample",
		    &(struct want){ .samples[WAN][M_TS] = 1, .records[M_TS] = 1,
				    .rate_limited[M_TS] = 1 });
	/* The other direction has its own limit. */
	ts_data(&sc, &TCP4, false, S_ISN, 100, S_TS);
	ts_data(&sc, &TCP4, false, S_ISN + 100, 100, S_TS + 1);
	scen_expect(&sc, "reverse direction limited on its own",
		    &(struct want){ .samples[WAN][M_TS] = 1, .records[M_TS] = 2,
				    .rate_limited[M_TS] = 1 });
	sleep_ms(60);
	ts_data(&sc, &TCP4, true, C_ISN + 300, 100, C_TS + 3);
	ts_ack(&sc, &TCP4, false, C_ISN + 400, S_TS + 1, C_TS + 3);
	scen_expect(&sc, "60 ms later recorded again",
		    &(struct want){ .samples[WAN][M_TS] = 2, .records[M_TS] = 3,
				    .rate_limited[M_TS] = 1 });
	scen_close(&sc);
	return true;
}

static bool rate_syn(void)
{
	struct scen sc;
	uint64_t t;

	if (!scen_open(&sc, "tcp_ts rate limit 50 ms: the SYN's record counts", INST_RATE))
		return true;
	tcp_tx(&sc, &TCP4, true, &(struct seg){ .seq = C_ISN, .flags = TH_SYN, .ts = true,
						.tsval = C_TS });
	t = sc.t_start;
	tcp_tx(&sc, &TCP4, false, &(struct seg){ .seq = S_ISN, .ack = C_ISN + 1,
						 .flags = TH_SYN | TH_ACK, .ts = true,
						 .tsval = S_TS, .tsecr = C_TS });
	ts_ack(&sc, &TCP4, true, S_ISN + 1, C_TS, S_TS);
	ts_data(&sc, &TCP4, true, C_ISN + 1, 100, C_TS + 1);
	if (!rate_window_ok(&sc, t))
		return false;
	scen_expect(&sc, NULL, &(struct want){ .samples[WAN][M_TS] = 1, .samples[LAN][M_TS] = 1,
					       .records[M_TS] = 2, .rate_limited[M_TS] = 1 });
	scen_close(&sc);
	return true;
}

static void test_ts_rate_limit(void)
{
	bool (*const scenarios[])(void) = { rate_new_tsvals, rate_syn };

	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
		int n = 0;

		while (!scenarios[i]() && ++n < RATE_ATTEMPTS)
			;
		check(n < RATE_ATTEMPTS, "tcp_ts rate limit: a machine fast enough to test it",
		      "every attempt stalled for 50 ms between two runs");
	}
}

static void test_ts_wrap_rst(void)
{
	struct scen sc;

	if (!scen_open(&sc, "tcp_ts: TSval and sequence numbers wrapping around 2^32",
		       INST_PLAIN))
		return;
	ts_data(&sc, &TCP4, true, 0xffffff00u, 100, 0xfffffffeu);
	ts_data(&sc, &TCP4, true, 0xffffff64u, 200, 0xffffffffu);  /* ends at 0x2c */
	ts_ack(&sc, &TCP4, false, 0x2c, S_TS, 0xffffffffu);
	ts_data(&sc, &TCP4, true, 0x2c, 100, 2);
	ts_ack(&sc, &TCP4, false, 0x90, S_TS, 2);
	ts_data(&sc, &TCP4, true, 0x2c, 100, 3);                  /* resent after the wrap */
	scen_expect(&sc, NULL, &(struct want){ .samples[WAN][M_TS] = 2, .records[M_TS] = 2 });
	scen_close(&sc);

	if (!scen_open(&sc, "tcp: RST forgets both directions", INST_PLAIN))
		return;
	ts_data(&sc, &TCP4, true, C_ISN, 100, C_TS);
	ts_data(&sc, &TCP4, false, S_ISN, 100, S_TS);
	tcp_tx(&sc, &TCP4, false, &(struct seg){ .seq = S_ISN + 100, .ack = C_ISN + 100,
						 .flags = TH_RST | TH_ACK });
	scen_expect(&sc, "closed 2", &(struct want){ .flows = true, .created = 2, .closed = 2 });
	ts_data(&sc, &TCP4, true, C_ISN + 100, 100, C_TS + 1);   /* mid-stream again */
	ts_data(&sc, &TCP4, true, C_ISN + 200, 100, C_TS + 2);
	scen_expect(&sc, "then seen as new", &(struct want){ .records[M_TS] = 1, .flows = true,
							     .created = 3, .closed = 2 });
	scen_close(&sc);
}

/*
 * A new connection on a 4-tuple whose previous connection ended with FIN a
 * moment ago: its flow state is still in the table (only RST deletes it;
 * userspace expires it after 120 s idle). The new SYN has a new random ISN
 * and TS offset, here both "older" than the old connection's: it must still
 * be remembered like the SYN of an unknown flow.
 */
static void reuse_close(struct scen *sc, bool ts)
{
	const uint32_t a = 0x70000000u, b = 0x60000000u;  /* old TSvals */

	tcp_tx(sc, &TCP4, true, &(struct seg){ .seq = C_ISN, .flags = TH_SYN, .ts = ts,
					       .tsval = a });
	tcp_tx(sc, &TCP4, false, &(struct seg){ .seq = S_ISN, .ack = C_ISN + 1,
						.flags = TH_SYN | TH_ACK, .ts = ts, .tsval = b,
						.tsecr = a });
	tcp_tx(sc, &TCP4, true, &(struct seg){ .seq = C_ISN + 1, .ack = S_ISN + 1,
					       .flags = TH_FIN | TH_ACK, .ts = ts,
					       .tsval = a + 1, .tsecr = b });
	tcp_tx(sc, &TCP4, false, &(struct seg){ .seq = S_ISN + 1, .ack = C_ISN + 2,
						.flags = TH_FIN | TH_ACK, .ts = ts,
						.tsval = b + 1, .tsecr = a + 1 });
	tcp_tx(sc, &TCP4, true, &(struct seg){ .seq = C_ISN + 2, .ack = S_ISN + 2,
					       .flags = TH_ACK, .ts = ts, .tsval = a + 1,
					       .tsecr = b + 1 });
}

/* The new connection: handshake, one data segment and its ACK. */
static void reuse_open(struct scen *sc, bool ts)
{
	const uint32_t c2 = C_ISN - 0x01000000u, s2 = S_ISN - 0x01000000u;

	tcp_tx(sc, &TCP4, true, &(struct seg){ .seq = c2, .flags = TH_SYN, .ts = ts,
					       .tsval = 0x100 });
	tcp_tx(sc, &TCP4, false, &(struct seg){ .seq = s2, .ack = c2 + 1,
						.flags = TH_SYN | TH_ACK, .ts = ts,
						.tsval = 0x200, .tsecr = 0x100 });
	tcp_tx(sc, &TCP4, true, &(struct seg){ .seq = c2 + 1, .ack = s2 + 1, .flags = TH_ACK,
					       .ts = ts, .tsval = 0x100, .tsecr = 0x200 });
	tcp_tx(sc, &TCP4, true, &(struct seg){ .seq = c2 + 1, .ack = s2 + 1,
					       .flags = TH_ACK | TH_PSH, .ts = ts,
					       .tsval = 0x101, .tsecr = 0x200, .len = 100 });
	tcp_tx(sc, &TCP4, false, &(struct seg){ .seq = s2 + 1, .ack = c2 + 101,
						.flags = TH_ACK, .ts = ts, .tsval = 0x201,
						.tsecr = 0x101 });
}

/* Regressions of two bugs found by these tests: a new connection on a
 * reused 4-tuple, and a TSval first carried by a pure ACK. */
static void test_known_bugs(void)
{
	struct scen sc;

	if (!scen_open(&sc, "tcp_ts: new connection on a 4-tuple closed by FIN", INST_PLAIN))
		return;
	reuse_close(&sc, true);
	scen_expect(&sc, "first connection", &(struct want){ .samples[WAN][M_TS] = 2,
							     .samples[LAN][M_TS] = 2,
							     .records[M_TS] = 4 });
	reuse_open(&sc, true);
	scen_expect(&sc, "second connection measured like a new one",
		    &(struct want){ .samples[WAN][M_TS] = 4, .samples[LAN][M_TS] = 3,
				    .records[M_TS] = 7 });
	scen_close(&sc);

	/* A TSval first carried by a pure ACK: the peer may echo it before
	 * the data packet with the same TSval leaves, so that data packet is
	 * not the first with its TSval and must not be remembered. */
	if (!scen_open(&sc, "tcp_ts: data packet reusing a pure ACK's TSval", INST_PLAIN))
		return;
	ts_data(&sc, &TCP4, true, C_ISN, 100, C_TS);
	ts_ack(&sc, &TCP4, true, S_ISN, C_TS + 1, S_TS);           /* pure ACK, new TSval */
	tcp_tx(&sc, &TCP4, false, &(struct seg){ .seq = S_ISN, .ack = C_ISN + 100,
						 .flags = TH_ACK, .ts = true, .tsval = S_TS + 1,
						 .tsecr = C_TS + 1, .len = 1448 });
	tcp_tx(&sc, &TCP4, true, &(struct seg){ .seq = C_ISN + 100, .ack = S_ISN + 1448,
						.flags = TH_ACK | TH_PSH, .ts = true,
						.tsval = C_TS + 1, .tsecr = S_TS + 1, .len = 100 });
	tcp_tx(&sc, &TCP4, false, &(struct seg){ .seq = S_ISN + 1448, .ack = C_ISN + 200,
						 .flags = TH_ACK, .ts = true, .tsval = S_TS + 1,
						 .tsecr = C_TS + 1, .len = 1448 });
	scen_expect(&sc, "not remembered", &(struct want){ 0 });
	scen_close(&sc);

	if (!scen_open(&sc, "tcp_seq: new connection on a 4-tuple closed by FIN", INST_PLAIN))
		return;
	reuse_close(&sc, false);
	scen_expect(&sc, "first connection", &(struct want){ .samples[WAN][M_SEQ] = 2,
							     .samples[LAN][M_SEQ] = 2,
							     .records[M_SEQ] = 4 });
	reuse_open(&sc, false);
	scen_expect(&sc, "second connection measured like a new one",
		    &(struct want){ .samples[WAN][M_SEQ] = 4, .samples[LAN][M_SEQ] = 3,
				    .records[M_SEQ] = 7 });
	scen_close(&sc);
}

/* ---- SEQ/ACK ----------------------------------------------------------------------------- */

static void test_seq(void)
{
	struct scen sc;
	uint64_t t;

	if (!scen_open(&sc, "tcp_seq: SYN egress, SYN-ACK ingress acks it", INST_PLAIN))
		return;
	tcp_tx(&sc, &TCP4, true, &(struct seg){ .seq = C_ISN, .flags = TH_SYN });
	t = sc.t_start;
	sleep_ms(SLEEP_MS);
	tcp_tx(&sc, &TCP4, false, &(struct seg){ .seq = S_ISN, .ack = C_ISN + 1,
						 .flags = TH_SYN | TH_ACK });
	scen_expect_rtt(&sc, WAN, M_SEQ, t, SLEEP_MS * MS);
	scen_expect(&sc, "WAN sample", &(struct want){ .samples[WAN][M_SEQ] = 1,
						       .records[M_SEQ] = 2 });
	t = sc.t_start;
	sleep_ms(SLEEP_MS);
	seq_ack(&sc, &TCP4, true, S_ISN + 1);
	scen_expect_rtt(&sc, LAN, M_SEQ, t, SLEEP_MS * MS);
	scen_expect(&sc, "last ACK egress: LAN sample",
		    &(struct want){ .samples[WAN][M_SEQ] = 1, .samples[LAN][M_SEQ] = 1,
				    .records[M_SEQ] = 2 });
	scen_close(&sc);

	if (!scen_open(&sc, "tcp_seq: data egress, ACK ingress covers it", INST_PLAIN))
		return;
	seq_data(&sc, &TCP4, true, C_ISN, 100);                  /* first seen: no record */
	scen_expect(&sc, "first segment of an unknown flow not remembered",
		    &(struct want){ 0 });
	seq_data(&sc, &TCP4, true, C_ISN + 100, 100);
	t = sc.t_start;
	sleep_ms(SLEEP_MS);
	seq_ack(&sc, &TCP4, false, C_ISN + 200);
	scen_expect_rtt(&sc, WAN, M_SEQ, t, SLEEP_MS * MS);
	scen_expect(&sc, NULL, &(struct want){ .samples[WAN][M_SEQ] = 1, .records[M_SEQ] = 1 });
	scen_close(&sc);

	if (!scen_open(&sc, "tcp_seq: delayed ACK covering two segments", INST_PLAIN))
		return;
	seq_data(&sc, &TCP4, true, C_ISN, 100);
	seq_data(&sc, &TCP4, true, C_ISN + 100, 100);
	t = sc.t_start;
	sleep_ms(SLEEP_MS);
	seq_data(&sc, &TCP4, true, C_ISN + 200, 100);
	sleep_ms(SLEEP_MS);
	seq_ack(&sc, &TCP4, false, C_ISN + 300);
	/* Timed from the first segment: one measurement outstanding. */
	scen_expect_rtt(&sc, WAN, M_SEQ, t, 2 * SLEEP_MS * MS);
	seq_ack(&sc, &TCP4, false, C_ISN + 300);
	scen_expect(&sc, NULL, &(struct want){ .samples[WAN][M_SEQ] = 1, .records[M_SEQ] = 1 });
	scen_close(&sc);

	if (!scen_open(&sc, "tcp_seq: ACK below the segment end", INST_PLAIN))
		return;
	seq_data(&sc, &TCP4, true, C_ISN, 100);
	seq_data(&sc, &TCP4, true, C_ISN + 100, 100);
	seq_ack(&sc, &TCP4, false, C_ISN + 100);
	seq_ack(&sc, &TCP4, false, C_ISN + 199);
	scen_expect(&sc, "no sample", &(struct want){ .records[M_SEQ] = 1 });
	seq_ack(&sc, &TCP4, false, C_ISN + 200);
	scen_expect(&sc, "the full ACK then samples",
		    &(struct want){ .samples[WAN][M_SEQ] = 1, .records[M_SEQ] = 1 });
	scen_close(&sc);

	if (!scen_open(&sc, "tcp_seq: retransmission before the ACK (Karn)", INST_PLAIN))
		return;
	seq_data(&sc, &TCP4, true, C_ISN, 100);
	seq_data(&sc, &TCP4, true, C_ISN + 100, 100);
	seq_data(&sc, &TCP4, true, C_ISN + 100, 100);
	scen_expect(&sc, "ambiguous", &(struct want){ .records[M_SEQ] = 1,
						      .ambiguous[M_SEQ] = 1 });
	seq_ack(&sc, &TCP4, false, C_ISN + 200);
	scen_expect(&sc, "its ACK no sample", &(struct want){ .records[M_SEQ] = 1,
							      .ambiguous[M_SEQ] = 1 });
	seq_data(&sc, &TCP4, true, C_ISN + 200, 100);
	seq_ack(&sc, &TCP4, false, C_ISN + 300);
	scen_expect(&sc, "new data measured again",
		    &(struct want){ .samples[WAN][M_SEQ] = 1, .records[M_SEQ] = 2,
				    .ambiguous[M_SEQ] = 1 });
	scen_close(&sc);

	if (!scen_open(&sc, "tcp_seq: SYN retransmitted before the SYN-ACK", INST_PLAIN))
		return;
	tcp_tx(&sc, &TCP4, true, &(struct seg){ .seq = C_ISN, .flags = TH_SYN });
	tcp_tx(&sc, &TCP4, true, &(struct seg){ .seq = C_ISN, .flags = TH_SYN });
	tcp_tx(&sc, &TCP4, false, &(struct seg){ .seq = S_ISN, .ack = C_ISN + 1,
						 .flags = TH_SYN | TH_ACK });
	scen_expect(&sc, NULL, &(struct want){ .records[M_SEQ] = 2, .ambiguous[M_SEQ] = 1 });
	scen_close(&sc);

	if (!scen_open(&sc, "tcp_seq: data ingress, ACK egress (LAN leg)", INST_PLAIN))
		return;
	seq_data(&sc, &TCP4, false, S_ISN, 1448);
	seq_data(&sc, &TCP4, false, S_ISN + 1448, 1448);
	t = sc.t_start;
	sleep_ms(SLEEP_MS);
	seq_ack(&sc, &TCP4, true, S_ISN + 2896);
	scen_expect_rtt(&sc, LAN, M_SEQ, t, SLEEP_MS * MS);
	scen_expect(&sc, NULL, &(struct want){ .samples[LAN][M_SEQ] = 1, .records[M_SEQ] = 1 });
	scen_close(&sc);

	if (!scen_open(&sc, "tcp_seq: segments across the 2^32 wrap", INST_PLAIN))
		return;
	seq_data(&sc, &TCP4, true, 0xffffff00u, 100);
	seq_data(&sc, &TCP4, true, 0xffffff64u, 200);               /* ends at 0x2c */
	seq_ack(&sc, &TCP4, false, 0x10);
	seq_ack(&sc, &TCP4, false, 0x2c);
	seq_data(&sc, &TCP4, true, 0xffffff64u, 200);               /* resent: no record */
	scen_expect(&sc, NULL, &(struct want){ .samples[WAN][M_SEQ] = 1, .records[M_SEQ] = 1 });
	scen_close(&sc);
}

/* ---- DNS and ICMP -------------------------------------------------------------------------- */

static void test_dns(void)
{
	struct scen sc;
	uint64_t t;

	if (!scen_open(&sc, "dns: query egress, response ingress", INST_PLAIN))
		return;
	dns_tx(&sc, &DNS4, true, 0x1234, false);
	t = sc.t_start;
	sleep_ms(SLEEP_MS);
	dns_tx(&sc, &DNS4, false, 0x1234, true);
	scen_expect_rtt(&sc, WAN, M_DNS, t, SLEEP_MS * MS);
	dns_tx(&sc, &DNS4, false, 0x1234, true);                 /* duplicate response */
	scen_expect(&sc, NULL, &(struct want){ .samples[WAN][M_DNS] = 1, .records[M_DNS] = 1 });
	scen_close(&sc);

	if (!scen_open(&sc, "dns: IPv6 query egress, response ingress", INST_PLAIN))
		return;
	dns_tx(&sc, &DNS6, true, 0xbeef, false);
	t = sc.t_start;
	sleep_ms(SLEEP_MS);
	dns_tx(&sc, &DNS6, false, 0xbeef, true);
	scen_expect_rtt(&sc, WAN, M_DNS, t, SLEEP_MS * MS);
	scen_expect(&sc, NULL, &(struct want){ .samples[WAN][M_DNS] = 1, .records[M_DNS] = 1 });
	scen_close(&sc);

	if (!scen_open(&sc, "dns: response with another id or port", INST_PLAIN))
		return;
	dns_tx(&sc, &DNS4, true, 0x1234, false);
	dns_tx(&sc, &DNS4, false, 0x1235, true);
	{
		struct conn other = DNS4;

		other.lan_port = 40002;
		dns_tx(&sc, &other, false, 0x1234, true);
	}
	scen_expect(&sc, "no sample", &(struct want){ .records[M_DNS] = 1 });
	dns_tx(&sc, &DNS4, false, 0x1234, true);
	scen_expect(&sc, "the right one still matches",
		    &(struct want){ .samples[WAN][M_DNS] = 1, .records[M_DNS] = 1 });
	scen_close(&sc);

	if (!scen_open(&sc, "dns: query repeated with the same id", INST_PLAIN))
		return;
	dns_tx(&sc, &DNS4, true, 0x4321, false);
	dns_tx(&sc, &DNS4, true, 0x4321, false);
	dns_tx(&sc, &DNS4, false, 0x4321, true);
	scen_expect(&sc, NULL, &(struct want){ .records[M_DNS] = 1, .ambiguous[M_DNS] = 1 });
	scen_close(&sc);

	if (!scen_open(&sc, "dns: query ingress to a household resolver (LAN leg)",
		       INST_PLAIN))
		return;
	dns_tx(&sc, &DNS4_LAN_SERVER, false, 0x0707, false);
	t = sc.t_start;
	sleep_ms(SLEEP_MS);
	dns_tx(&sc, &DNS4_LAN_SERVER, true, 0x0707, true);
	scen_expect_rtt(&sc, LAN, M_DNS, t, SLEEP_MS * MS);
	scen_expect(&sc, NULL, &(struct want){ .samples[LAN][M_DNS] = 1, .records[M_DNS] = 1 });
	scen_close(&sc);

	if (!scen_open(&sc, "dns: datagram to port 53 shorter than a DNS header", INST_PLAIN))
		return;
	{
		struct buf msg = { .n = 0 }, l4, f;

		b_u16(&msg, 0x5555);
		b_fill(&msg, 0, 9);                            /* 11 bytes */
		udp_hdr(&l4, DNS4.lan_port, 53, &msg);
		frame(&f, &DNS4, true, P_UDP, &l4);
		scen_run(&sc, true, &f);
	}
	scen_expect(&sc, NULL, &(struct want){ .records[M_DNS] = 0 });
	scen_close(&sc);
}

static void test_icmp(void)
{
	struct scen sc;
	uint64_t t;

	if (!scen_open(&sc, "icmp: IPv4 echo request egress, reply ingress", INST_PLAIN))
		return;
	icmp_tx(&sc, &ICMP4, true, true, 0x4242, 1);
	t = sc.t_start;
	sleep_ms(SLEEP_MS);
	icmp_tx(&sc, &ICMP4, false, false, 0x4242, 1);
	scen_expect_rtt(&sc, WAN, M_ICMP, t, SLEEP_MS * MS);
	scen_expect(&sc, NULL, &(struct want){ .samples[WAN][M_ICMP] = 1,
					       .records[M_ICMP] = 1 });
	scen_close(&sc);

	if (!scen_open(&sc, "icmp: ICMPv6 echo request egress, reply ingress", INST_PLAIN))
		return;
	icmp_tx(&sc, &ICMP6, true, true, 0x0101, 7);
	t = sc.t_start;
	sleep_ms(SLEEP_MS);
	icmp_tx(&sc, &ICMP6, false, false, 0x0101, 7);
	scen_expect_rtt(&sc, WAN, M_ICMP, t, SLEEP_MS * MS);
	scen_expect(&sc, NULL, &(struct want){ .samples[WAN][M_ICMP] = 1,
					       .records[M_ICMP] = 1 });
	scen_close(&sc);

	if (!scen_open(&sc, "icmp: reply with another seq or id", INST_PLAIN))
		return;
	icmp_tx(&sc, &ICMP4, true, true, 0x4242, 1);
	icmp_tx(&sc, &ICMP4, false, false, 0x4242, 2);
	icmp_tx(&sc, &ICMP4, false, false, 0x4243, 1);
	icmp_tx(&sc, &ICMP6, true, true, 0x4242, 1);
	icmp_tx(&sc, &ICMP6, false, false, 0x4242, 2);
	scen_expect(&sc, NULL, &(struct want){ .records[M_ICMP] = 2 });
	scen_close(&sc);

	if (!scen_open(&sc, "icmp: request ingress, reply egress (LAN leg)", INST_PLAIN))
		return;
	icmp_tx(&sc, &ICMP4, false, true, 0x0900, 3);
	t = sc.t_start;
	sleep_ms(SLEEP_MS);
	icmp_tx(&sc, &ICMP4, true, false, 0x0900, 3);
	scen_expect_rtt(&sc, LAN, M_ICMP, t, SLEEP_MS * MS);
	icmp_tx(&sc, &ICMP6, false, true, 0x0900, 3);
	icmp_tx(&sc, &ICMP6, true, false, 0x0900, 3);
	scen_expect(&sc, NULL, &(struct want){ .samples[LAN][M_ICMP] = 2,
					       .records[M_ICMP] = 2 });
	scen_close(&sc);
}

/* ---- encapsulations ----------------------------------------------------------------------- */

static void test_encaps(void)
{
	static const uint8_t rr_nop[8] = { 7, 7, 4, 0, 0, 0, 0, 1 }; /* record route, NOP */
	/* L3 device: a test run takes skb->protocol from bytes 12-13, inside
	 * the source address; these addresses make it IP / IPv6 both ways. */
	static const uint8_t l3_lan4[4] = { 8, 0, 2, 10 };
	static const uint8_t l3_wan4[4] = { 8, 0, 100, 20 };
	static const uint8_t l3_lan6[16] = { 0x20, 0x01, 0x0d, 0xb8, 0x86, 0xdd, 0, 0,
					     0, 0, 0, 0, 0, 0, 0, 0x10 };
	static const uint8_t l3_wan6[16] = { 0x20, 0x01, 0x0d, 0xb8, 0x86, 0xdd, 0, 0,
					     0, 0, 0, 0, 0, 0, 0, 0x20 };
	struct buf hbh = { .n = 0 };
	struct conn c;
	struct {
		const char *name;
		int family;
		enum encap encap;
		bool ipopts, v6ext;
	} cases[] = {
		{ "IPv6", 6, ENC_ETH, false, false },
		{ "IPv6 with hop-by-hop and destination options", 6, ENC_ETH, false, true },
		{ "802.1Q IPv4", 4, ENC_VLAN, false, false },
		{ "802.1Q IPv6", 6, ENC_VLAN, false, false },
		{ "PPPoE IPv4", 4, ENC_PPPOE, false, false },
		{ "802.1ad+802.1Q PPPoE IPv6", 6, ENC_QINQ_PPPOE, false, false },
		{ "IPv4 with IP options", 4, ENC_ETH, true, false },
		{ "802.1Q PPPoE IPv4 with IP options", 4, ENC_QINQ_PPPOE, true, false },
	};
	char name[200];
	struct scen sc;

	ext_opts(&hbh, P_DSTOPTS, 0);
	ext_opts(&hbh, P_TCP, 1);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		c = cases[i].family == 4 ? TCP4 : TCP6;
		c.encap = cases[i].encap;
		if (cases[i].ipopts) {
			c.ipopts = rr_nop;
			c.ipoptlen = sizeof(rr_nop);
		}
		if (cases[i].v6ext) {
			c.v6ext = &hbh;
			c.v6first = P_HOPOPTS;
		}
		snprintf(name, sizeof(name), "tcp_ts over %s", cases[i].name);
		if (!scen_open(&sc, name, INST_PLAIN))
			return;
		ts_syn_synack(&sc, &c);
		ts_data(&sc, &c, true, C_ISN + 1, 100, C_TS + 1);
		ts_ack(&sc, &c, false, C_ISN + 101, S_TS, C_TS + 1);
		scen_expect(&sc, NULL, &(struct want){ .samples[WAN][M_TS] = 2,
						       .records[M_TS] = 3 });
		scen_close(&sc);
	}

	if (!scen_open(&sc, "L3 device (no link layer): IPv4 tcp_ts, ICMPv6, DNS", INST_L3))
		return;
	c = TCP4;
	c.encap = ENC_BARE;
	c.lan = l3_lan4;
	c.wan = l3_wan4;
	ts_syn_synack(&sc, &c);
	c = ICMP6;
	c.encap = ENC_BARE;
	c.lan = l3_lan6;
	c.wan = l3_wan6;
	icmp_tx(&sc, &c, true, true, 0x0202, 1);
	icmp_tx(&sc, &c, false, false, 0x0202, 1);
	c = DNS4;
	c.encap = ENC_BARE;
	c.lan = l3_lan4;
	c.wan = l3_wan4;
	dns_tx(&sc, &c, true, 0x3333, false);
	dns_tx(&sc, &c, false, 0x3333, true);
	scen_expect(&sc, NULL, &(struct want){ .samples[WAN][M_TS] = 1,
					       .samples[WAN][M_ICMP] = 1,
					       .samples[WAN][M_DNS] = 1,
					       .records[M_TS] = 2, .records[M_ICMP] = 1,
					       .records[M_DNS] = 1 });
	scen_close(&sc);
}

/* ---- the histogram's bucket function ------------------------------------------------------ */

/* One value: monotonic after prev, inside its bucket's edges. */
static void bucket_value(uint64_t v, uint32_t *prev, uint64_t *mono_bad, uint64_t *first_mono,
			 uint64_t *range_bad, uint64_t *first_range)
{
	uint32_t b = ispmon_rtt_bucket(v);
	uint64_t lo, hi;
	bool last = b == ISPMON_RTT_BUCKETS - 1;

	if (b < *prev && !(*mono_bad)++)
		*first_mono = v;
	*prev = b;
	if (b >= ISPMON_RTT_BUCKETS) {
		if (!(*range_bad)++)
			*first_range = v;
		return;
	}
	lo = ispmon_rtt_bucket_lower_us(b);
	hi = last ? UINT64_MAX : ispmon_rtt_bucket_lower_us(b + 1);
	if ((v < lo || (!last && v >= hi)) && !(*range_bad)++)
		*first_range = v;
}

static void test_buckets(void)
{
	uint64_t mono_bad = 0, range_bad = 0, first_mono = 0, first_range = 0, w;
	char why[400];
	uint32_t prev = 0;

	/* Every value below 2^26 us (67 s, past the last edge), then each
	 * power of two up to 2^63 with its neighbours, then 2^64 - 1. */
	for (uint64_t v = 0; v < (1ULL << 26); v++)
		bucket_value(v, &prev, &mono_bad, &first_mono, &range_bad, &first_range);
	for (int e = 26; e < 64; e++)
		for (int d = -1; d <= 1; d++)
			bucket_value((1ULL << e) + (uint64_t)(int64_t)d, &prev, &mono_bad,
				     &first_mono, &range_bad, &first_range);
	bucket_value(UINT64_MAX, &prev, &mono_bad, &first_mono, &range_bad, &first_range);
	snprintf(why, sizeof(why), "%llu decreases, first at %llu us",
		 (unsigned long long)mono_bad, (unsigned long long)first_mono);
	check(!mono_bad, "bucket: ispmon_rtt_bucket is monotonic over 0 .. 2^64-1 us", why);
	snprintf(why, sizeof(why), "%llu values outside, first %llu us",
		 (unsigned long long)range_bad, (unsigned long long)first_range);
	check(!range_bad, "bucket: every value lies in [lower(b), lower(b+1)) of its bucket b",
	      why);

	why[0] = 0;
	for (uint32_t b = 0; b < ISPMON_RTT_BUCKETS; b++) {
		uint64_t lo = ispmon_rtt_bucket_lower_us(b);

		if (ispmon_rtt_bucket(lo) != b)
			appendf(why, sizeof(why), "bucket(lower(%u) = %llu) = %u; ", b,
				(unsigned long long)lo, ispmon_rtt_bucket(lo));
		if (b + 1 == ISPMON_RTT_BUCKETS)
			break;
		if (ispmon_rtt_bucket_lower_us(b + 1) <= lo) {
			appendf(why, sizeof(why), "lower(%u) <= lower(%u); ", b + 1, b);
			continue;
		}
		w = ispmon_rtt_bucket_lower_us(b + 1) - lo;
		if (lo < 64 && w != 4)
			appendf(why, sizeof(why), "linear bucket %u is %llu us wide; ", b,
				(unsigned long long)w);
		else if (lo >= 64 && w * 16 > lo)
			appendf(why, sizeof(why), "bucket %u [%llu, +%llu) wider than 6.25%%; ",
				b, (unsigned long long)lo, (unsigned long long)w);
	}
	check(!why[0], "bucket: each bucket starts at its lower edge; 4 us wide below 64 us, "
	      "at most 6.25% of the lower edge above", why);

	snprintf(why, sizeof(why), "lower(0) %llu, bucket(2^24-1) %u, bucket(2^24) %u, "
		 "bucket(2^64-1) %u, last %u", (unsigned long long)ispmon_rtt_bucket_lower_us(0),
		 ispmon_rtt_bucket((1ULL << 24) - 1), ispmon_rtt_bucket(1ULL << 24),
		 ispmon_rtt_bucket(UINT64_MAX), ISPMON_RTT_BUCKETS - 1);
	check(ispmon_rtt_bucket_lower_us(0) == 0 &&
	      ispmon_rtt_bucket((1ULL << 24) - 1) == ISPMON_RTT_BUCKETS - 1 &&
	      ispmon_rtt_bucket(1ULL << 24) == ISPMON_RTT_BUCKETS - 1 &&
	      ispmon_rtt_bucket(UINT64_MAX) == ISPMON_RTT_BUCKETS - 1,
	      "bucket: bucket 0 starts at 0; 16.3 s up to 2^64-1 us share the last bucket", why);
}

/* ---- setup --------------------------------------------------------------------------------- */

static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

static void test_rodata_default(void)
{
	struct flow_bpf *skel = flow_bpf__open();
	char why[100];

	if (!skel) {
		snprintf(why, sizeof(why), "open: %s", strerror(errno));
		check(false, "rodata: rtt_rate_limit_ns defaults to 10 ms", why);
		return;
	}
	snprintf(why, sizeof(why), "%llu ns",
		 (unsigned long long)skel->rodata->rtt_rate_limit_ns);
	check(skel->rodata->rtt_rate_limit_ns == 10 * MS,
	      "rodata: rtt_rate_limit_ns defaults to 10 ms", why);
	flow_bpf__destroy(skel);
}

/* ---- headers only ----------------------------------------------------------------------- */

struct blind_snap {
	struct snap s;
	struct ispmon_dir_stats dir[ISPMON_DIR_MAX];
	uint64_t hist_total[ISPMON_RTT_SERIES];
	unsigned flows, pending;
};

static unsigned count_keys(const struct bpf_map *map, size_t key_sz)
{
	char key[64], next[64];
	void *prev = NULL;
	unsigned n = 0;

	if (key_sz > sizeof(key))
		return 0;
	while (!bpf_map_get_next_key(bpf_map__fd(map), prev, next) && n < 100000) {
		memcpy(key, next, key_sz);
		prev = key;
		n++;
	}
	return n;
}

/* Every kind of exchange the programs measure, with payload past the
 * headers: TCP with timestamps both ways, TCP without (SEQ/ACK), DNS over
 * IPv4 and IPv6, ICMP echo. */
static bool blind_run(struct blind_snap *b)
{
	struct ispmon_dir_stats *v = calloc((size_t)ncpus, sizeof(*v));
	struct scen sc;
	bool ok;

	memset(b, 0, sizeof(*b));
	if (!v || !scen_open(&sc, payload_noise ? "headers only: noise past the headers"
						: "headers only: a pattern past the headers",
			     INST_PLAIN)) {
		free(v);
		return false;
	}
	ts_data(&sc, &TCP4, true, C_ISN, 1200, C_TS);
	ts_data(&sc, &TCP4, true, C_ISN + 1200, 1200, C_TS + 1);
	ts_ack(&sc, &TCP4, false, C_ISN + 2400, S_TS, C_TS + 1);
	ts_data(&sc, &TCP4, false, S_ISN, 1448, S_TS + 1);
	ts_data(&sc, &TCP4, false, S_ISN + 1448, 1448, S_TS + 2);
	ts_ack(&sc, &TCP4, true, S_ISN + 2896, C_TS + 2, S_TS + 2);
	seq_data(&sc, &TCP6, true, C_ISN, 700);
	seq_data(&sc, &TCP6, true, C_ISN + 700, 700);
	seq_ack(&sc, &TCP6, false, C_ISN + 1400);
	dns_tx(&sc, &DNS4, true, 0x1234, false);
	dns_tx(&sc, &DNS4, false, 0x1234, true);
	dns_tx(&sc, &DNS6, true, 0x4321, false);
	dns_tx(&sc, &DNS6, false, 0x4321, true);
	icmp_tx(&sc, &ICMP4, true, true, 0x4242, 1);
	icmp_tx(&sc, &ICMP4, false, false, 0x4242, 1);
	scen_close(&sc);
	ok = !read_snap(sc.skel, &b->s);
	for (__u32 d = 0; ok && d < ISPMON_DIR_MAX; d++) {
		ok = !read_percpu(bpf_map__fd(sc.skel->maps.dir_stats), d, (__u64 *)&b->dir[d],
				  U64S(b->dir[d]), (__u64 *)v);
	}
	for (int i = 0; i < ISPMON_RTT_SERIES; i++)
		for (__u32 k = 0; k < ISPMON_RTT_BUCKETS; k++)
			b->hist_total[i] += b->s.hist[i][k];
	b->flows = count_keys(sc.skel->maps.flow_state, sizeof(struct ispmon_flow_key));
	b->pending = count_keys(sc.skel->maps.pending, sizeof(struct ispmon_pending_key));
	free(v);
	return ok;
}

/*
 * The programs read headers only: the same exchanges with other bytes past
 * the headers leave every count the same (samples per series and method,
 * records, flows, pending requests, line counters). The RTT values
 * themselves differ with the clock and are not compared.
 */
static void test_payload_blind(void)
{
	struct blind_snap *a = calloc(2, sizeof(*a)), *b = a ? a + 1 : NULL;
	char why[400] = "";
	bool ok;

	if (!a) {
		check(false, "headers only", "out of memory");
		return;
	}
	payload_noise = false;
	ok = blind_run(a);
	payload_noise = true;
	ok = ok && blind_run(b);
	payload_noise = false;
	if (!ok) {
		check(false, "headers only: both runs read", "reading maps failed");
		free(a);
		return;
	}
	for (int m = 0; m < ISPMON_M_MAX; m++)
		if (!a->s.ctr[m].samples)
			appendf(why, sizeof(why), "no %s sample in the scenario; ", M_NAME[m]);
	check(!why[0], "headers only: the scenario measures tcp_ts, tcp_seq, dns and icmp", why);
	why[0] = 0;
	if (memcmp(a->s.ctr, b->s.ctr, sizeof(a->s.ctr)))
		appendf(why, sizeof(why), "method counters differ; ");
	for (int i = 0; i < ISPMON_RTT_SERIES; i++)
		if (a->s.sum[i].count != b->s.sum[i].count || a->hist_total[i] != b->hist_total[i])
			appendf(why, sizeof(why), "series %d: %llu vs %llu samples; ", i,
				(unsigned long long)a->s.sum[i].count,
				(unsigned long long)b->s.sum[i].count);
	if (memcmp(&a->s.flows, &b->s.flows, sizeof(a->s.flows)))
		appendf(why, sizeof(why), "flow counters differ; ");
	if (a->flows != b->flows || a->pending != b->pending)
		appendf(why, sizeof(why), "tables: %u/%u flows, %u/%u pending; ", a->flows, b->flows,
			a->pending, b->pending);
	check(!why[0], "headers only: other bytes past the headers, the same samples, records, "
		       "flows and pending requests", why);
	why[0] = 0;
	if (memcmp(a->dir, b->dir, sizeof(a->dir)))
		appendf(why, sizeof(why), "download %llu/%llu payload %llu/%llu bytes",
			(unsigned long long)a->dir[0].bytes, (unsigned long long)b->dir[0].bytes,
			(unsigned long long)a->dir[0].payload_bytes,
			(unsigned long long)b->dir[0].payload_bytes);
	check(!why[0] && a->dir[0].payload_bytes > 0 && a->dir[1].payload_bytes > 0,
	      "headers only: line counters (bytes, classes, payload bytes) identical", why);
	free(a);
}

int main(void)
{
	int ok;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (geteuid() != 0) {
		printf("skip: test_rtt needs root (BPF_PROG_TEST_RUN on TC programs)\n");
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

	test_buckets();
	test_rodata_default();
	test_ts_handshake();
	test_ts_data();
	test_ts_midstream();
	test_ts_duplicates();
	test_ts_retrans_reorder();
	test_ts_burst();
	test_ts_pure_ack();
	test_ts_layouts();
	test_ts_rate_limit();
	test_ts_wrap_rst();
	test_known_bugs();
	test_seq();
	test_dns();
	test_icmp();
	test_encaps();
	test_payload_blind();

	for (int k = 0; k < INST_MAX; k++)
		flow_bpf__destroy(insts[k]);
	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}
