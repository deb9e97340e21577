// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * Flow churn past the RTT tables' capacity (issue 9), in the kernel with
 * BPF_PROG_TEST_RUN on the WAN programs of bpf/flow.bpf.c, read back with
 * userspace's own reader (user/rtt.c).
 *
 * CHURN_CONNS (default 24576) TCP connections, each a SYN leaving (egress,
 * with a TSval) and its SYN-ACK arriving (ingress, echoing it): two
 * flow_state entries and two TS records per connection, 3x what the 16384
 * entry LRU tables hold. Then:
 *  - every connection still gives its handshake RTT sample (its record is
 *    the newest in the table when the answer comes);
 *  - the tables stay at their size: never above max_entries, never more
 *    than the kernel's per-CPU LRU free lists below it;
 *  - flow_counters.created counts every flow, and the reader's
 *    ispmon_flow_evictions_total (created - closed - expired - active) is
 *    exactly created - active (nothing else removed entries); likewise for
 *    the pending table;
 *  - the per-direction byte and packet totals are exact to the byte;
 *  - RSTs close flows: counted as closed, evictions do not move;
 *  - the idle sweep (run as if 200 s later) expires the rest: active 0,
 *    evictions still do not move (never backwards, never double).
 *
 * Then the LAN side's device table (an LRU map of ISPMON_DEV_ENTRIES, with
 * the per-CPU slot cache in front of it):
 * 1000 devices (one MAC each; 50 of them busy all the time, the rest in
 * turn) keep sending from one thread while another reads the table as
 * ispmon does (user/devices.c), hundreds of times. The kernel evicts
 * entries under the reader's walk, which then starts over from the first
 * key; whatever is lost to evictions, no device may ever be counted more
 * bytes than it sent.
 *
 * Output: "ok - ..." / "not ok - ..." lines; exit 0, 1 on failure, 77 skip.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "flow.h"
#include "flow.skel.h"
#include "devices.h"
#include "metrics.h"
#include "rtt.h"

#include "pkt.h"

#define TC_ACT_UNSPEC (-1)
#define LRU_LOCAL_FREE 128 /* kernel/bpf/bpf_lru_list.h: LOCAL_FREE_TARGET */

static int n_pass, n_fail;

__attribute__((format(printf, 2, 3)))
static void check(bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("%s - ", ok ? "ok" : "not ok");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (ok)
		n_pass++;
	else
		n_fail++;
}

static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, ap) : 0;
}

static const uint8_t ROUTER[4] = {198, 51, 100, 2};

static void server_addr(uint8_t a[4], unsigned conn)
{
	a[0] = 203;
	a[1] = 0;
	a[2] = 113;
	a[3] = (uint8_t)(1 + conn / 60000);
}

static uint16_t router_port(unsigned conn) { return (uint16_t)(1024 + conn % 60000); }

/* TCP header with the timestamp option (NOP NOP TS: doff 8). */
static void tcp_ts_seg(struct buf *b, uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack,
		       uint8_t flags, uint32_t tsval, uint32_t tsecr)
{
	b->n = 0;
	b_u16(b, sport);
	b_u16(b, dport);
	b_u32(b, seq);
	b_u32(b, ack);
	b_u8(b, 8 << 4);
	b_u8(b, flags);
	b_u16(b, 64240);
	b_u16(b, 0);
	b_u16(b, 0);
	b_u8(b, 1);
	b_u8(b, 1);
	b_u8(b, 8);
	b_u8(b, 10);
	b_u32(b, tsval);
	b_u32(b, tsecr);
}

struct churn {
	struct flow_bpf *skel;
	int ncpu;
	/* What went through, by direction (ISPMON_DIR_*). */
	uint64_t bytes[ISPMON_DIR_MAX], packets[ISPMON_DIR_MAX];
	uint64_t run_errors, bad_verdicts;
};

/* One frame through tc_egress (upload) or tc_ingress (download). */
static void run(struct churn *c, bool egress, const struct buf *f)
{
	static uint8_t out[BUF_MAX + 256];
	struct bpf_program *prog = egress ? c->skel->progs.tc_egress : c->skel->progs.tc_ingress;
	int dir = egress ? ISPMON_DIR_UPLOAD : ISPMON_DIR_DOWNLOAD;

	LIBBPF_OPTS(bpf_test_run_opts, opts);
	opts.data_in = f->d;
	opts.data_size_in = (__u32)f->n;
	opts.data_out = out;
	opts.data_size_out = sizeof(out);
	opts.repeat = 1;
	if (bpf_prog_test_run_opts(bpf_program__fd(prog), &opts)) {
		c->run_errors++;
		return;
	}
	if ((int)opts.retval != TC_ACT_UNSPEC || opts.data_size_out != f->n ||
	    memcmp(out, f->d, f->n))
		c->bad_verdicts++;
	c->bytes[dir] += f->n;
	c->packets[dir]++;
}

/* Connection conn: SYN out with TSval tsv, SYN-ACK in echoing it. */
static void handshake(struct churn *c, unsigned conn, uint32_t tsv)
{
	struct buf l4, l3, f;
	uint8_t srv[4];
	struct v4opt out = {.src = ROUTER, .dst = srv}, in = {.src = srv, .dst = ROUTER};

	server_addr(srv, conn);
	tcp_ts_seg(&l4, router_port(conn), 443, 1000u * conn, 0, TH_SYN, tsv, 0);
	ipv4_pkt(&l3, P_TCP, &l4, &out);
	eth_frame(&f, NULL, 0, 0, ETH_P_IP, &l3);
	run(c, true, &f);
	tcp_ts_seg(&l4, 443, router_port(conn), 7000u * conn, 1000u * conn + 1, TH_SYN | TH_ACK,
		   0x40000000u + tsv, tsv);
	ipv4_pkt(&l3, P_TCP, &l4, &in);
	eth_frame(&f, NULL, 0, 0, ETH_P_IP, &l3);
	run(c, false, &f);
}

/* An RST from the server of connection conn. */
static void reset(struct churn *c, unsigned conn)
{
	struct buf l4, l3, f;
	uint8_t srv[4];
	struct v4opt in = {.src = srv, .dst = ROUTER};

	server_addr(srv, conn);
	tcp_ts_seg(&l4, 443, router_port(conn), 7000u * conn + 1, 0, TH_RST, 1, 0);
	ipv4_pkt(&l3, P_TCP, &l4, &in);
	eth_frame(&f, NULL, 0, 0, ETH_P_IP, &l3);
	run(c, false, &f);
}

static uint64_t map_count(int fd, size_t key_size)
{
	uint8_t *key = calloc(2, key_size), *next;
	void *prev = NULL;
	uint64_t n = 0;

	if (!key)
		return 0;
	next = key + key_size;
	while (!bpf_map_get_next_key(fd, prev, next) && n < 10000000) {
		memcpy(key, next, key_size);
		prev = key;
		n++;
	}
	free(key);
	return n;
}

static int read_dir_stats(struct churn *c, struct ispmon_dir_stats tot[ISPMON_DIR_MAX])
{
	struct ispmon_dir_stats *per = calloc((size_t)c->ncpu, sizeof(*per));
	int fd = bpf_map__fd(c->skel->maps.dir_stats);

	if (!per)
		return -ENOMEM;
	memset(tot, 0, sizeof(*tot) * ISPMON_DIR_MAX);
	for (__u32 k = 0; k < ISPMON_DIR_MAX; k++) {
		if (bpf_map_lookup_elem(fd, &k, per)) {
			free(per);
			return -errno;
		}
		for (int i = 0; i < c->ncpu; i++) {
			tot[k].packets += per[i].packets;
			tot[k].bytes += per[i].bytes;
		}
	}
	free(per);
	return 0;
}

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void check_totals(struct churn *c, const char *when)
{
	struct ispmon_dir_stats tot[ISPMON_DIR_MAX];
	int err = read_dir_stats(c, tot);

	check(!err && tot[ISPMON_DIR_UPLOAD].bytes == c->bytes[ISPMON_DIR_UPLOAD] &&
		      tot[ISPMON_DIR_UPLOAD].packets == c->packets[ISPMON_DIR_UPLOAD],
	      "%s: upload totals exact: %llu bytes / %llu packets counted, %llu / %llu sent", when,
	      (unsigned long long)tot[ISPMON_DIR_UPLOAD].bytes,
	      (unsigned long long)tot[ISPMON_DIR_UPLOAD].packets,
	      (unsigned long long)c->bytes[ISPMON_DIR_UPLOAD],
	      (unsigned long long)c->packets[ISPMON_DIR_UPLOAD]);
	check(!err && tot[ISPMON_DIR_DOWNLOAD].bytes == c->bytes[ISPMON_DIR_DOWNLOAD] &&
		      tot[ISPMON_DIR_DOWNLOAD].packets == c->packets[ISPMON_DIR_DOWNLOAD],
	      "%s: download totals exact: %llu bytes / %llu packets counted, %llu / %llu sent", when,
	      (unsigned long long)tot[ISPMON_DIR_DOWNLOAD].bytes,
	      (unsigned long long)tot[ISPMON_DIR_DOWNLOAD].packets,
	      (unsigned long long)c->bytes[ISPMON_DIR_DOWNLOAD],
	      (unsigned long long)c->packets[ISPMON_DIR_DOWNLOAD]);
}

/* ---- the device table under churn ----------------------------------------- */

#define N_DEV 1000 /* devices 0..N_HOT-1 send all the time, the rest in turn */
#define N_HOT 50
#define DEV_FRAME 100

struct dev_churn {
	struct flow_bpf *skel;
	volatile int stop;
	uint64_t sent[N_DEV]; /* bytes per device, as run */
	uint64_t frames, run_errors;
};

static void dev_frame(struct buf *f, unsigned dev)
{
	static const uint8_t router[4] = {192, 0, 2, 1};
	uint8_t src[4] = {192, 0, 2, (uint8_t)(10 + dev % 240)};
	struct v4opt o = {.src = src, .dst = router};
	struct buf l4, l3;

	l4.n = 0;
	b_u16(&l4, (uint16_t)(40000 + dev));
	b_u16(&l4, 9);
	b_u16(&l4, (uint16_t)(DEV_FRAME - 14 - 20));
	b_u16(&l4, 0);
	b_fill(&l4, 0x5a, DEV_FRAME - 14 - 20 - 8);
	ipv4_pkt(&l3, P_UDP, &l4, &o);
	eth_frame(f, NULL, 0, 0, ETH_P_IP, &l3);
	/* The device is the sender: its MAC is the source. */
	f->d[6] = 0x02;
	f->d[7] = 0x1d;
	f->d[8] = f->d[9] = 0;
	f->d[10] = (uint8_t)(dev >> 8);
	f->d[11] = (uint8_t)dev;
}

static void *dev_writer(void *arg)
{
	struct dev_churn *c = arg;
	static uint8_t out[BUF_MAX + 256];
	struct buf f;

	while (!c->stop) {
		for (unsigned j = N_HOT; j < N_DEV && !c->stop; j++) {
			/* A device in turn, then a busy one: the busy ones stay
			 * in the table (recently used), the rest churn. */
			for (int k = 0; k < 2; k++) {
				unsigned i = k ? j % N_HOT : j;

				LIBBPF_OPTS(bpf_test_run_opts, opts);
				dev_frame(&f, i);
				opts.data_in = f.d;
				opts.data_size_in = (__u32)f.n;
				opts.data_out = out;
				opts.data_size_out = sizeof(out);
				opts.repeat = 1;
				if (bpf_prog_test_run_opts(bpf_program__fd(c->skel->progs.tc_ingress),
							   &opts)) {
					c->run_errors++;
					continue;
				}
				c->sent[i] += f.n;
				c->frames++;
			}
		}
	}
	return NULL;
}

static void test_device_churn(void)
{
	static struct dev_churn c;
	struct devices *d = NULL;
	struct mbuf b;
	pthread_t th;
	unsigned passes = 0, over = 0, labelled = 0, hot_exact = 0;
	uint64_t counted = 0, sent = 0, worst = 0;
	char worst_dev[32] = "";
	int err, fd, cfd;
	double t0;

	c.skel = flow_bpf__open();
	if (!c.skel) {
		check(false, "LAN programs open (%s)", strerror(errno));
		return;
	}
	c.skel->rodata->ingress_dir = ISPMON_DIR_UPLOAD;
	c.skel->rodata->lan_side = true;
	err = flow_bpf__load(c.skel);
	check(!err, "LAN programs load (%s)", err ? strerror(-err) : "ok");
	if (err || devices_new(N_DEV, &d)) {
		flow_bpf__destroy(c.skel);
		return;
	}
	fd = bpf_map__fd(c.skel->maps.devices);
	cfd = bpf_map__fd(c.skel->maps.dev_cache);
	if (pthread_create(&th, NULL, dev_writer, &c)) {
		check(false, "writer thread starts");
		devices_free(d);
		flow_bpf__destroy(c.skel);
		return;
	}
	t0 = mono_s();
	while (mono_s() - t0 < 1.5) {
		devices_read(d, fd, cfd);
		devices_commit(d, mono_s());
		passes++;
	}
	c.stop = 1;
	pthread_join(th, NULL);
	devices_read(d, fd, cfd);
	devices_commit(d, mono_s());

	mbuf_init(&b);
	devices_render(d, &b);
	for (char *l = b.err ? NULL : strtok(b.p, "\n"); l; l = strtok(NULL, "\n")) {
		unsigned m[6];
		unsigned long long v;

		if (sscanf(l, "ispmon_device_bytes_total{device=\"%x:%x:%x:%x:%x:%x\",direction=\"upload\"} %llu",
			   &m[0], &m[1], &m[2], &m[3], &m[4], &m[5], &v) != 7 ||
		    m[0] != 0x02 || m[1] != 0x1d || (m[4] << 8 | m[5]) >= N_DEV)
			continue;
		labelled++;
		counted += v;
		if ((m[4] << 8 | m[5]) < N_HOT && v == c.sent[m[4] << 8 | m[5]])
			hot_exact++;
		if (v > c.sent[m[4] << 8 | m[5]]) {
			over++;
			if (v - c.sent[m[4] << 8 | m[5]] > worst) {
				worst = v - c.sent[m[4] << 8 | m[5]];
				snprintf(worst_dev, sizeof(worst_dev), "02:1d:00:00:%02x:%02x", m[4], m[5]);
			}
		}
	}
	mbuf_free(&b);
	for (unsigned i = 0; i < N_DEV; i++)
		sent += c.sent[i];
	check(!c.run_errors && labelled > 0,
	      "device churn: %llu frames from %u MACs into a %u entry table in 1.5 s, %u reads; "
	      "%u devices labelled, %llu of %llu bytes counted (%.0f%%; the rest was evicted unread)",
	      (unsigned long long)c.frames, N_DEV, bpf_map__max_entries(c.skel->maps.devices), passes,
	      labelled, (unsigned long long)counted, (unsigned long long)sent,
	      sent ? 100.0 * (double)counted / (double)sent : 0.0);
	check(over == 0,
	      "device churn: no device counted more than it sent (%u over; worst %s by %llu bytes); "
	      "%u of the %u busy devices exact",
	      over, worst_dev[0] ? worst_dev : "-", (unsigned long long)worst, hot_exact, N_HOT);
	devices_free(d);
	flow_bpf__destroy(c.skel);
}

static struct ispmon_dev_key dev_key_of(unsigned dev)
{
	return (struct ispmon_dev_key){.addr = {0x02, 0x1d, 0, 0, (uint8_t)(dev >> 8), (uint8_t)dev}};
}

/* Bytes /metrics gives device dev (its MAC as dev_frame() makes it). */
static long long rendered_bytes(const struct devices *d, unsigned dev)
{
	char want[128];
	const char *at;
	long long v = -1;
	struct mbuf b;

	snprintf(want, sizeof(want),
		 "ispmon_device_bytes_total{device=\"02:1d:00:00:%02x:%02x\",direction=\"upload\"} ",
		 dev >> 8 & 0xff, dev & 0xff);
	mbuf_init(&b);
	devices_render(d, &b);
	if (!b.err && (at = strstr(b.p, want)))
		v = strtoll(at + strlen(want), NULL, 10);
	mbuf_free(&b);
	return v;
}

/*
 * The per-CPU slot cache in front of the device table: the first device
 * of a slot owns it, a device hashing to the same slot goes to the LRU
 * table, and userspace adds both up exactly. Pinned to one CPU, so that
 * both meet on the same slots.
 */
static void test_device_cache(void)
{
	static uint8_t out[BUF_MAX + 256];
	struct flow_bpf *skel = flow_bpf__open();
	struct ispmon_dev_key ka = dev_key_of(1), kb;
	struct ispmon_dev_slot *slots = NULL;
	struct ispmon_dev_stats *lru = NULL;
	unsigned ncpu = (unsigned)libbpf_num_possible_cpus(), devb = 2, na = 30, nb = 20, errs = 0;
	__u32 slot = ispmon_dev_slot_of(&ka);
	struct devices *d = NULL;
	cpu_set_t old, one;
	int cpu = sched_getcpu();
	bool a_cached = false, b_cached = false, b_in_lru;
	struct buf f;

	while (devb < 65535 && (kb = dev_key_of(devb), ispmon_dev_slot_of(&kb) != slot))
		devb++;
	if (!skel || cpu < 0 || sched_getaffinity(0, sizeof(old), &old)) {
		check(false, "device cache: set up (%s)", strerror(errno));
		flow_bpf__destroy(skel);
		return;
	}
	skel->rodata->ingress_dir = ISPMON_DIR_UPLOAD;
	skel->rodata->lan_side = true;
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	if (flow_bpf__load(skel) || devices_new(8, &d) || sched_setaffinity(0, sizeof(one), &one)) {
		check(false, "device cache: programs load, pinned to CPU %d", cpu);
		devices_free(d);
		flow_bpf__destroy(skel);
		return;
	}
	for (unsigned i = 0; i < na + nb; i++) {
		LIBBPF_OPTS(bpf_test_run_opts, opts);

		dev_frame(&f, i % 5 < 3 ? 1 : devb); /* 3 of 5 (na) from the first */
		opts.data_in = f.d;
		opts.data_size_in = (__u32)f.n;
		opts.data_out = out;
		opts.data_size_out = sizeof(out);
		opts.repeat = 1;
		if (bpf_prog_test_run_opts(bpf_program__fd(skel->progs.tc_ingress), &opts))
			errs++;
	}
	sched_setaffinity(0, sizeof(old), &old);

	slots = calloc(ncpu, sizeof(*slots));
	lru = calloc(ncpu, sizeof(*lru));
	if (slots && !bpf_map_lookup_elem(bpf_map__fd(skel->maps.dev_cache), &slot, slots)) {
		a_cached = slots[cpu].used && !memcmp(&slots[cpu].key, &ka, sizeof(ka));
		for (unsigned c = 0; c < ncpu; c++)
			b_cached |= slots[c].used && !memcmp(&slots[c].key, &kb, sizeof(kb));
	}
	b_in_lru = lru && !bpf_map_lookup_elem(bpf_map__fd(skel->maps.devices), &kb, lru);
	check(!errs && a_cached && !b_cached && b_in_lru,
	      "device cache: the first device owns slot %u on CPU %d, 02:1d:00:00:%02x:%02x of the "
	      "same slot is in the LRU table (%u run errors)",
	      slot, cpu, devb >> 8, devb & 0xff, errs);
	devices_read(d, bpf_map__fd(skel->maps.devices), bpf_map__fd(skel->maps.dev_cache));
	devices_commit(d, mono_s());
	check(rendered_bytes(d, 1) == (long long)na * DEV_FRAME &&
		      rendered_bytes(d, devb) == (long long)nb * DEV_FRAME,
	      "device cache: bytes exact for both (%lld, %lld; sent %u, %u)", rendered_bytes(d, 1),
	      rendered_bytes(d, devb), na * DEV_FRAME, nb * DEV_FRAME);
	free(slots);
	free(lru);
	devices_free(d);
	flow_bpf__destroy(skel);
}

/* A device's addresses across CPUs: one CPU saw its IPv4 traffic, another
 * later only packets without an IPv4 source (IPv6, ARP). The address must
 * survive the merge whatever the order the CPUs are read in. */
static void test_device_address_merge(void)
{
	struct flow_bpf *skel = flow_bpf__open();
	struct ispmon_dev_key key = {.addr = {0x02, 0x1d, 0, 0, 0x7f, 0x01}};
	struct ispmon_dev_stats *v;
	struct devices *d = NULL;
	unsigned ncpu = (unsigned)libbpf_num_possible_cpus();
	struct mbuf b;

	if (ncpu < 2) {
		printf("# skipping the address merge: one CPU\n");
		flow_bpf__destroy(skel);
		return;
	}
	if (!skel || flow_bpf__load(skel) || devices_new(8, &d)) {
		check(false, "address merge: programs load");
		flow_bpf__destroy(skel);
		return;
	}
	v = calloc(ncpu, sizeof(*v));
	if (!v) {
		devices_free(d);
		flow_bpf__destroy(skel);
		return;
	}
	v[0] = (struct ispmon_dev_stats){.packets = {0, 10}, .bytes = {0, 1000}, .last_seen_ns = 100,
					 .ipv4 = htonl(0xc000020bu)}; /* 192.0.2.11 */
	v[1] = (struct ispmon_dev_stats){.packets = {0, 1}, .bytes = {0, 90}, .last_seen_ns = 200};
	for (int pass = 0; pass < 2; pass++) {
		if (pass) { /* the other order */
			struct ispmon_dev_stats t = v[0];

			v[0] = v[1];
			v[1] = t;
		}
		bpf_map_update_elem(bpf_map__fd(skel->maps.devices), &key, v, BPF_ANY);
		devices_read(d, bpf_map__fd(skel->maps.devices), bpf_map__fd(skel->maps.dev_cache));
		devices_commit(d, mono_s());
		mbuf_init(&b);
		devices_render(d, &b);
		check(!b.err && strstr(b.p, "ipv4=\"192.0.2.11\""),
		      "a newer per-CPU reading without IPv4 keeps the device's IPv4 address (CPU order %d)",
		      pass);
		mbuf_free(&b);
	}
	free(v);
	devices_free(d);
	flow_bpf__destroy(skel);
}

/*
 * A device with a cache slot on one CPU and a table entry from another:
 * its entry evicted (and not re-created yet) must not count the slot
 * twice, a new entry adds to what the old one had, and the slot goes on.
 */
static void test_device_parts(void)
{
	struct flow_bpf *skel = flow_bpf__open();
	struct ispmon_dev_key key = dev_key_of(0x0f01);
	__u32 slot = ispmon_dev_slot_of(&key);
	unsigned ncpu = (unsigned)libbpf_num_possible_cpus();
	struct ispmon_dev_slot *sl = NULL;
	struct ispmon_dev_stats *v = NULL;
	struct devices *d = NULL;
	long long got[4];
	int mfd, cfd;

	if (!skel || flow_bpf__load(skel) || devices_new(8, &d) ||
	    !(sl = calloc(ncpu, sizeof(*sl))) || !(v = calloc(ncpu, sizeof(*v)))) {
		check(false, "device parts: programs load");
		goto out;
	}
	mfd = bpf_map__fd(skel->maps.devices);
	cfd = bpf_map__fd(skel->maps.dev_cache);
	/* the slot on CPU 0, the table entry on the last CPU (or CPU 0) */
	sl[0] = (struct ispmon_dev_slot){.key = key, .used = 1, .st = {.bytes = {0, 500}, .packets = {0, 5}}};
	v[ncpu - 1] = (struct ispmon_dev_stats){.bytes = {0, 1000}, .packets = {0, 10}};
	bpf_map_update_elem(cfd, &slot, sl, BPF_ANY);
	bpf_map_update_elem(mfd, &key, v, BPF_ANY);
	devices_read(d, mfd, cfd);
	devices_commit(d, 1);
	got[0] = rendered_bytes(d, 0x0f01);
	bpf_map_delete_elem(mfd, &key); /* evicted */
	devices_read(d, mfd, cfd);
	devices_commit(d, 2);
	got[1] = rendered_bytes(d, 0x0f01);
	v[ncpu - 1].bytes[1] = 200; /* re-created, counting afresh */
	bpf_map_update_elem(mfd, &key, v, BPF_ANY);
	devices_read(d, mfd, cfd);
	devices_commit(d, 3);
	got[2] = rendered_bytes(d, 0x0f01);
	sl[0].st.bytes[1] = 800;
	bpf_map_update_elem(cfd, &slot, sl, BPF_ANY);
	devices_read(d, mfd, cfd);
	devices_commit(d, 4);
	got[3] = rendered_bytes(d, 0x0f01);
	check(got[0] == 1500 && got[1] == 1500 && got[2] == 1700 && got[3] == 2000,
	      "device parts: slot + entry 1500, entry evicted 1500, re-created 1700, slot grown 2000 "
	      "(%lld, %lld, %lld, %lld)", got[0], got[1], got[2], got[3]);
out:
	free(sl);
	free(v);
	devices_free(d);
	flow_bpf__destroy(skel);
}

int main(void)
{
	struct churn c = {0};
	struct rtt_reader *rd = NULL;
	const struct rtt_view *v;
	struct rtt_maps maps;
	const char *env = getenv("CHURN_CONNS");
	unsigned conns = env ? (unsigned)strtoul(env, NULL, 10) : 24576, n_rst = 1000;
	uint64_t flow_max, pend_max, nflow, npend, slack, ev_flow, ev_pend, active0, samples;
	uint64_t want_created;
	double t0, dt;
	int err, ok;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (geteuid() != 0) {
		printf("skip: test_churn needs root (BPF_PROG_TEST_RUN on TC programs)\n");
		return 77;
	}
	if (conns < 1000 || conns > 10 * 60000) {
		printf("not ok - CHURN_CONNS %u: want 1000..600000\n", conns);
		return 1;
	}
	libbpf_set_print(quiet_print);
	ok = libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SCHED_CLS, NULL);
	if (ok != 1) {
		printf("skip: cannot load a SCHED_CLS BPF program here\n");
		return 77;
	}
	c.ncpu = libbpf_num_possible_cpus();
	c.skel = flow_bpf__open();
	if (!c.skel) {
		printf("not ok - skeleton opens (%s)\n", strerror(errno));
		return 1;
	}
	/* The WAN interface, as ispmon loads it by default. */
	c.skel->rodata->ingress_dir = ISPMON_DIR_DOWNLOAD;
	err = flow_bpf__load(c.skel);
	check(!err, "WAN programs load (%s)", err ? strerror(-err) : "ok");
	if (err) {
		flow_bpf__destroy(c.skel);
		return 1;
	}
	flow_max = bpf_map__max_entries(c.skel->maps.flow_state);
	pend_max = bpf_map__max_entries(c.skel->maps.pending);
	maps = (struct rtt_maps){
		.hist_fd = bpf_map__fd(c.skel->maps.rtt_hist),
		.sum_fd = bpf_map__fd(c.skel->maps.rtt_sum),
		.counters_fd = bpf_map__fd(c.skel->maps.rtt_counters),
		.flow_counters_fd = bpf_map__fd(c.skel->maps.flow_counters),
		.flow_state_fd = bpf_map__fd(c.skel->maps.flow_state),
		.pending_fd = bpf_map__fd(c.skel->maps.pending),
		.flow_entries = (uint32_t)flow_max,
		.pending_entries = (uint32_t)pend_max,
	};
	err = rtt_reader_new(&maps, 10.0, &rd);
	check(!err, "userspace RTT reader starts (%s)", err ? strerror(-err) : "ok");
	if (err) {
		flow_bpf__destroy(c.skel);
		return 1;
	}
	want_created = 2ull * conns;
	check(want_created >= 2 * flow_max,
	      "%u connections = %llu flow directions: at least twice the %llu entry flow table", conns,
	      (unsigned long long)want_created, (unsigned long long)flow_max);

	/* 1. Churn. */
	t0 = mono_s();
	for (unsigned i = 0; i < conns; i++)
		handshake(&c, i, i + 1);
	dt = mono_s() - t0;
	check(!c.run_errors && !c.bad_verdicts,
	      "%llu frames in %.2f s (%.1f us each): every run passes the frame on unchanged "
	      "(%llu run errors, %llu bad verdicts)",
	      (unsigned long long)(c.packets[0] + c.packets[1]), dt,
	      dt * 1e6 / (double)(c.packets[0] + c.packets[1]), (unsigned long long)c.run_errors,
	      (unsigned long long)c.bad_verdicts);
	check_totals(&c, "after churn");

	err = rtt_reader_collect(rd, mono_s());
	if (!err)
		err = rtt_reader_sweep(rd, (uint64_t)(mono_s() * 1e9));
	check(!err, "reader collects and sweeps (%s)", err ? strerror(-err) : "ok");
	v = rtt_reader_view(rd);
	nflow = map_count(maps.flow_state_fd, sizeof(struct ispmon_flow_key));
	npend = map_count(maps.pending_fd, sizeof(struct ispmon_pending_key));
	/* An LRU map starts evicting once the free nodes left are parked in
	 * the CPUs' local free lists (up to LOCAL_FREE_TARGET each). */
	slack = (uint64_t)c.ncpu * LRU_LOCAL_FREE;
	check(nflow <= flow_max && nflow + slack >= flow_max,
	      "flow_state stays at its size: %llu of %llu entries (at most %llu below: %d CPUs x %d)",
	      (unsigned long long)nflow, (unsigned long long)flow_max, (unsigned long long)slack,
	      c.ncpu, LRU_LOCAL_FREE);
	check(npend <= pend_max && npend + slack >= pend_max,
	      "pending stays at its size: %llu of %llu entries", (unsigned long long)npend,
	      (unsigned long long)pend_max);
	check(v->flows_created == want_created,
	      "every new flow direction counted as created: %llu (want %llu)",
	      (unsigned long long)v->flows_created, (unsigned long long)want_created);
	check(v->flows_active == nflow, "reader's flows_active %llu = entries in the table %llu",
	      (unsigned long long)v->flows_active, (unsigned long long)nflow);
	ev_flow = v->flow_evictions;
	check(ev_flow == want_created - nflow && ev_flow >= want_created - flow_max,
	      "ispmon_flow_evictions_total{map=\"flow_state\"} %llu = created %llu - active %llu",
	      (unsigned long long)ev_flow, (unsigned long long)v->flows_created,
	      (unsigned long long)nflow);
	samples = v->counters[ISPMON_M_TCP_TS].samples;
	check(samples == conns,
	      "every handshake still gives its RTT sample: %llu tcp_ts samples for %u connections",
	      (unsigned long long)samples, conns);
	check(v->total.count[ISPMON_LEG_WAN * ISPMON_M_MAX + ISPMON_M_TCP_TS] == conns,
	      "... all of them in the WAN leg histogram (%llu)",
	      (unsigned long long)v->total.count[ISPMON_LEG_WAN * ISPMON_M_MAX + ISPMON_M_TCP_TS]);
	check(v->counters[ISPMON_M_TCP_TS].records == want_created,
	      "tcp_ts records: %llu (a SYN each way per connection, want %llu)",
	      (unsigned long long)v->counters[ISPMON_M_TCP_TS].records,
	      (unsigned long long)want_created);
	ev_pend = v->pending_evictions;
	check(ev_pend == want_created - samples - npend && v->pending_active == npend,
	      "ispmon_flow_evictions_total{map=\"pending\"} %llu = records %llu - answered %llu - "
	      "active %llu",
	      (unsigned long long)ev_pend, (unsigned long long)want_created,
	      (unsigned long long)samples, (unsigned long long)npend);

	/* 2. RSTs for the newest connections (still in the table): closed,
	 * not evicted. */
	for (unsigned i = conns - n_rst; i < conns; i++)
		reset(&c, i);
	rtt_reader_collect(rd, mono_s());
	rtt_reader_sweep(rd, (uint64_t)(mono_s() * 1e9));
	v = rtt_reader_view(rd);
	active0 = map_count(maps.flow_state_fd, sizeof(struct ispmon_flow_key));
	check(v->flows_closed == 2ull * n_rst && active0 == nflow - 2ull * n_rst,
	      "%u RSTs close both directions: closed %llu, table %llu -> %llu", n_rst,
	      (unsigned long long)v->flows_closed, (unsigned long long)nflow,
	      (unsigned long long)active0);
	check(v->flow_evictions == ev_flow, "closing is not evicting: evictions still %llu (%llu)",
	      (unsigned long long)ev_flow, (unsigned long long)v->flow_evictions);

	/* 3. The idle sweep, as if 200 s had passed: everything expires. */
	rtt_reader_collect(rd, mono_s() + 200);
	rtt_reader_sweep(rd, (uint64_t)((mono_s() + 200) * 1e9));
	v = rtt_reader_view(rd);
	check(v->flows_active == 0 && v->flows_expired == active0 &&
		      map_count(maps.flow_state_fd, sizeof(struct ispmon_flow_key)) == 0,
	      "idle sweep: %llu flows expired, %llu active left", (unsigned long long)v->flows_expired,
	      (unsigned long long)v->flows_active);
	check(v->flow_evictions == ev_flow && v->pending_evictions == ev_pend,
	      "expiring is not evicting: evictions flow_state %llu, pending %llu (unchanged)",
	      (unsigned long long)v->flow_evictions, (unsigned long long)v->pending_evictions);
	check(v->pending_active == 0, "idle sweep: no stale request left (%llu)",
	      (unsigned long long)v->pending_active);

	/* 4. The table works as before once emptied. */
	handshake(&c, conns, 0x7ffffff0u);
	rtt_reader_collect(rd, mono_s());
	rtt_reader_sweep(rd, (uint64_t)(mono_s() * 1e9));
	v = rtt_reader_view(rd);
	check(v->counters[ISPMON_M_TCP_TS].samples == samples + 1 && v->flows_active == 2,
	      "a new connection afterwards: sample counted, 2 flow directions tracked (%llu)",
	      (unsigned long long)v->flows_active);
	check_totals(&c, "at the end");

	rtt_reader_free(rd);
	flow_bpf__destroy(c.skel);

	test_device_churn();
	test_device_cache();
	test_device_address_merge();
	test_device_parts();
	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}
