#include "tcpsock.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "rtt.h"
#include "sock.skel.h"

#define WINDOW_SLOTS 7    /* snapshots kept for the percentile window */
#define WINDOW_SLOT_S 10.0
#define WATCH_PER_SLOT (ISPMON_TCP_WATCH_MAX / TCPSOCK_WATCH_SLOTS)
#define MAX_PROGS 3       /* programs per rung */

/* Every field of the stats is a __u64 counter: arithmetic over them as an array. */
_Static_assert(sizeof(struct ispmon_tcp_stats) % sizeof(__u64) == 0, "stats are u64 counters");
#define STATS_WORDS (sizeof(struct ispmon_tcp_stats) / sizeof(__u64))

static const char *const rung_names[TCPSOCK_RUNGS] = {"fentry", "tp_btf", "raw_tp", "kprobe"};
static const char *const scope_names[ISPMON_TCP_SCOPES] = {"network", "loopback"};
static const char *const est_names[ISPMON_TCP_EST_MAX] = {"srtt", "rcv_rtt"};
static const char *const event_names[ISPMON_TCP_EV_MAX] = {"active_open", "passive_open",
							   "existing", "closed", "failed"};

struct watch_slot {
	struct ispmon_tcp_tuple tuples[WATCH_PER_SLOT];
	unsigned n;
	bool begun;
	struct ispmon_tcp_stats start; /* the slot's group at begin */
};

struct tcpsock {
	struct sock_bpf *skel;
	enum tcpsock_rung rung;
	unsigned n_progs;
	const char *prog_names[MAX_PROGS];
	const char *prog_modes[MAX_PROGS]; /* "fentry", "fexit", "tp_btf", ... */
	int ncpu;
	void *pcpu; /* one lookup's worth: ncpu stats */

	struct tcpsock_view view;
	struct ispmon_tcp_stats ring[WINDOW_SLOTS][ISPMON_TCP_SCOPES];
	double ring_t[WINDOW_SLOTS];
	unsigned ring_n, ring_head;
	double last_slot_t;

	pthread_mutex_t watch_lock; /* the slots and the watch map */
	struct watch_slot slots[TCPSOCK_WATCH_SLOTS];
	void *watch_pcpu;           /* the watch side's own lookup buffer */
};

const char *tcpsock_rung_name(enum tcpsock_rung r)
{
	return (unsigned)r < TCPSOCK_RUNGS ? rung_names[r] : "?";
}

unsigned tcpsock_ladder(enum tcpsock_mode mode, enum tcpsock_rung out[TCPSOCK_RUNGS])
{
	unsigned n = 0;

	switch (mode) {
	case TCPSOCK_AUTO:
		for (unsigned r = 0; r < TCPSOCK_RUNGS; r++)
			out[n++] = (enum tcpsock_rung)r;
		break;
	case TCPSOCK_FENTRY:
		out[n++] = TCPSOCK_RUNG_FENTRY;
		break;
	case TCPSOCK_TRACEPOINT:
		out[n++] = TCPSOCK_RUNG_TP_BTF;
		out[n++] = TCPSOCK_RUNG_RAW_TP;
		break;
	case TCPSOCK_KPROBE:
		out[n++] = TCPSOCK_RUNG_KPROBE;
		break;
	default:
		break;
	}
	return n;
}

/* The --tcp-hooks value that names a rung. */
static const char *rung_mode(enum tcpsock_rung r)
{
	return r == TCPSOCK_RUNG_FENTRY ? "fentry" : r == TCPSOCK_RUNG_KPROBE ? "kprobe" : "tracepoint";
}

const char *tcpsock_attach_name(const struct tcpsock *t)
{
	return tcpsock_rung_name(t->rung);
}

struct bpf_object *tcpsock_object(const struct tcpsock *t)
{
	return t->skel->obj;
}

/* ---- the ladder ---- */

static struct bpf_program **rung_progs(struct sock_bpf *s, enum tcpsock_rung r, unsigned i)
{
	struct bpf_program **p[TCPSOCK_RUNGS][MAX_PROGS] = {
		{&s->progs.fentry_tcp_rcv, &s->progs.fexit_tcp_retrans, &s->progs.fentry_tcp_state},
		{&s->progs.tp_tcp_probe, &s->progs.tp_tcp_retrans, &s->progs.tp_sock_state},
		{&s->progs.raw_tcp_probe, &s->progs.raw_tcp_retrans, &s->progs.raw_sock_state},
		{&s->progs.kprobe_tcp_rcv, &s->progs.kprobe_tcp_retrans, &s->progs.kprobe_tcp_state},
	};

	return p[r][i];
}

/* The attach type as the section names it: "fexit/tcp_retransmit_skb" -> "fexit". */
static const char *section_mode(const struct bpf_program *p)
{
	static const char *const modes[] = {"fentry", "fexit", "tp_btf", "raw_tp", "kprobe"};
	const char *sec = bpf_program__section_name(p);

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		size_t n = strlen(modes[i]);

		if (!strncmp(sec, modes[i], n) && sec[n] == '/')
			return modes[i];
	}
	return "?";
}

static int netns_inode(__u32 *ino)
{
	struct stat st;

	if (stat("/proc/self/ns/net", &st))
		return -errno;
	*ino = (__u32)st.st_ino;
	return 0;
}

/* Open, load and attach one rung. 0, or -errno with the failing stage. */
static int try_rung(struct tcpsock *t, enum tcpsock_rung r, const char *btf_path, __u32 ino,
		    const char **stage)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .btf_custom_path = btf_path);
	struct sock_bpf *s;
	int err;

	*stage = "open";
	s = sock_bpf__open_opts(&opts);
	if (!s)
		return -errno;
	s->rodata->netns_ino = ino;
	for (unsigned q = 0; q < TCPSOCK_RUNGS; q++)
		for (unsigned i = 0; i < MAX_PROGS; i++)
			bpf_program__set_autoload(*rung_progs(s, (enum tcpsock_rung)q, i), q == r);
	*stage = "load";
	err = sock_bpf__load(s);
	if (!err) {
		*stage = "attach";
		err = sock_bpf__attach(s);
	}
	if (err) {
		sock_bpf__destroy(s);
		return err;
	}
	t->skel = s;
	t->rung = r;
	t->n_progs = MAX_PROGS;
	for (unsigned i = 0; i < MAX_PROGS; i++) {
		const struct bpf_program *p = *rung_progs(s, r, i);

		t->prog_names[i] = bpf_program__name(p);
		t->prog_modes[i] = section_mode(p);
	}
	return 0;
}

static int alloc_buffers(struct tcpsock *t)
{
	t->ncpu = libbpf_num_possible_cpus();
	if (t->ncpu <= 0)
		return -EINVAL;
	t->pcpu = calloc((size_t)t->ncpu, sizeof(struct ispmon_tcp_stats));
	t->watch_pcpu = calloc((size_t)t->ncpu, sizeof(struct ispmon_tcp_stats));
	return t->pcpu && t->watch_pcpu ? 0 : -ENOMEM;
}

int tcpsock_start(enum tcpsock_mode mode, const char *btf_path, struct tcpsock **out)
{
	enum tcpsock_rung ladder[TCPSOCK_RUNGS];
	unsigned n = tcpsock_ladder(mode, ladder);
	char tried[512] = "", q[600];
	size_t len = 0;
	struct tcpsock *t;
	__u32 ino = 0;
	int err;

	*out = NULL;
	if (!n) {
		log_info("tcp hooks", "mode=off");
		return 0;
	}
	err = netns_inode(&ino);
	if (err) {
		log_error("cannot read the network namespace (/proc/self/ns/net)", "err=\"%s\"",
			  strerror(-err));
		return err;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->watch_lock, NULL);
	t->last_slot_t = -1;
	err = alloc_buffers(t);
	if (err) {
		tcpsock_free(t);
		return err;
	}
	for (unsigned i = 0; i < n; i++) {
		const char *stage = "";
		int rerr = try_rung(t, ladder[i], btf_path, ino, &stage);

		if (!rerr) {
			log_info("tcp hooks", "mode=%s attach=%s requested=%s%s%s",
				 rung_mode(ladder[i]), tcpsock_rung_name(ladder[i]),
				 tcpsock_mode_name(mode), len ? " unavailable=" : "",
				 len ? log_quote(q, sizeof(q), tried) : "");
			*out = t;
			return 0;
		}
		log_debug("tcp hooks: rung failed", "attach=%s stage=%s err=\"%s\"",
			  tcpsock_rung_name(ladder[i]), stage, strerror(-rerr));
		if (len < sizeof(tried))
			len += (size_t)snprintf(tried + len, sizeof(tried) - len, "%s%s: %s: %s",
						len ? "; " : "", tcpsock_rung_name(ladder[i]), stage,
						strerror(-rerr));
		err = rerr;
	}
	tcpsock_free(t);
	if (mode == TCPSOCK_AUTO) {
		log_warn("no TCP hooks on this kernel: the speed test times TCP handshakes instead",
			 "tried=%s", log_quote(q, sizeof(q), tried));
		return 0;
	}
	log_error("cannot attach the TCP hooks: the kernel refused them (--tcp-hooks=auto picks "
		  "what it allows)", "mode=%s tried=%s", tcpsock_mode_name(mode),
		  log_quote(q, sizeof(q), tried));
	return err ? err : -EOPNOTSUPP;
}

void tcpsock_free(struct tcpsock *t)
{
	if (!t)
		return;
	sock_bpf__destroy(t->skel);
	pthread_mutex_destroy(&t->watch_lock);
	free(t->pcpu);
	free(t->watch_pcpu);
	free(t);
}

/* ---- reading ---- */

void tcpsock_stats_sub(struct ispmon_tcp_stats *a, const struct ispmon_tcp_stats *b)
{
	__u64 *x = (__u64 *)a;
	const __u64 *y = (const __u64 *)b;

	for (size_t i = 0; i < STATS_WORDS; i++)
		x[i] = x[i] >= y[i] ? x[i] - y[i] : 0;
}

/* One group summed over the CPUs, through buf (ncpu stats). */
static int read_group(int fd, int ncpu, void *buf, __u32 g, struct ispmon_tcp_stats *out)
{
	const __u64 *v = buf;

	if (bpf_map_lookup_elem(fd, &g, buf))
		return -errno;
	memset(out, 0, sizeof(*out));
	for (int c = 0; c < ncpu; c++) {
		__u64 *o = (__u64 *)out;

		for (size_t i = 0; i < STATS_WORDS; i++)
			o[i] += v[(size_t)c * STATS_WORDS + i];
	}
	return 0;
}

static uint64_t count_socks(const struct bpf_map *map)
{
	int fd = bpf_map__fd(map);
	uint64_t n = 0, max = bpf_map__max_entries(map);
	__u64 key, next;
	void *prev = NULL;

	while (n < max && !bpf_map_get_next_key(fd, prev, &next)) {
		key = next;
		prev = &key;
		n++;
	}
	return n;
}

int tcpsock_collect(struct tcpsock *t, double now)
{
	int fd = bpf_map__fd(t->skel->maps.tcp_stats);
	unsigned oldest;

	for (__u32 g = 0; g < ISPMON_TCP_SCOPES; g++) {
		int err = read_group(fd, t->ncpu, t->pcpu, g, &t->view.total[g]);

		if (err)
			return err;
	}
	t->view.sockets = count_socks(t->skel->maps.socks);
	if (t->last_slot_t < 0 || now - t->last_slot_t >= WINDOW_SLOT_S) {
		memcpy(t->ring[t->ring_head], t->view.total, sizeof(t->view.total));
		t->ring_t[t->ring_head] = now;
		t->ring_head = (t->ring_head + 1) % WINDOW_SLOTS;
		if (t->ring_n < WINDOW_SLOTS)
			t->ring_n++;
		t->last_slot_t = now;
	}
	oldest = (t->ring_head + WINDOW_SLOTS - t->ring_n) % WINDOW_SLOTS;
	for (unsigned s = 0; s < ISPMON_TCP_SCOPES; s++) {
		t->view.window[s] = t->view.total[s];
		tcpsock_stats_sub(&t->view.window[s], &t->ring[oldest][s]);
	}
	t->view.window_s = now - t->ring_t[oldest];
	return 0;
}

/* ---- rendering ---- */

/* The kernel's __u64 is another type than uint64_t here: copy, no cast. */
static void hist_copy(uint64_t dst[ISPMON_RTT_BUCKETS], const __u64 *h)
{
	for (unsigned i = 0; i < ISPMON_RTT_BUCKETS; i++)
		dst[i] = h[i];
}

static double hist_quantile(const __u64 *h, double q)
{
	uint64_t b[ISPMON_RTT_BUCKETS];

	hist_copy(b, h);
	return rtt_quantile_buckets(b, q);
}

static void render_rtt(const struct tcpsock_view *v, struct mbuf *b)
{
	static const unsigned pct[] = {50, 90, 99};
	char labels[96];

	prom_header(b, "ispmon_tcp_rtt_seconds", "histogram",
		    "The kernel's RTT estimates of the router's own TCP connections, sampled at most once "
		    "per RTT per connection: srtt (data it sent being acknowledged) and rcv_rtt (the "
		    "receiver's estimate, data arriving), by scope (network or loopback).");
	for (unsigned s = 0; s < ISPMON_TCP_SCOPES; s++)
		for (unsigned e = 0; e < ISPMON_TCP_EST_MAX; e++) {
			uint64_t h[ISPMON_RTT_BUCKETS];

			hist_copy(h, v->total[s].rtt_hist[e]);
			snprintf(labels, sizeof(labels), "estimator=\"%s\",scope=\"%s\"", est_names[e],
				 scope_names[s]);
			rtt_render_hist(b, "ispmon_tcp_rtt_seconds", labels, h,
					(double)v->total[s].rtt_sum_us[e] / 1e6);
		}
	prom_header(b, "ispmon_tcp_rtt_percentile_seconds", "gauge",
		    "Percentiles of those RTT samples over the last window (ispmon_tcp_rtt_window_seconds), "
		    "from the kernel's full-resolution histogram.");
	for (unsigned s = 0; s < ISPMON_TCP_SCOPES; s++)
		for (unsigned e = 0; e < ISPMON_TCP_EST_MAX; e++)
			for (unsigned i = 0; i < sizeof(pct) / sizeof(pct[0]); i++) {
				double q = hist_quantile(v->window[s].rtt_hist[e], pct[i] / 100.0);

				if (isnan(q))
					continue;
				snprintf(labels, sizeof(labels), "estimator=\"%s\",scope=\"%s\",percentile=\"%u\"",
					 est_names[e], scope_names[s], pct[i]);
				prom_f64(b, "ispmon_tcp_rtt_percentile_seconds", labels, q);
			}
	prom_header(b, "ispmon_tcp_rtt_window_samples", "gauge", "TCP RTT samples in the percentile window.");
	for (unsigned s = 0; s < ISPMON_TCP_SCOPES; s++)
		for (unsigned e = 0; e < ISPMON_TCP_EST_MAX; e++) {
			uint64_t n = 0;

			for (unsigned i = 0; i < ISPMON_RTT_BUCKETS; i++)
				n += v->window[s].rtt_hist[e][i];
			snprintf(labels, sizeof(labels), "estimator=\"%s\",scope=\"%s\"", est_names[e],
				 scope_names[s]);
			prom_u64(b, "ispmon_tcp_rtt_window_samples", labels, n);
		}
	prom_header(b, "ispmon_tcp_rtt_window_seconds", "gauge",
		    "Length of the window the TCP RTT percentiles cover.");
	prom_f64(b, "ispmon_tcp_rtt_window_seconds", NULL, v->window_s);
}

/* A histogram over fixed buckets: edges[i] is bucket i's upper edge (the
 * last bucket is +Inf); sum in the edges' unit. */
static void render_fixed_hist(struct mbuf *b, const char *name, const char *scope,
			      const __u64 *h, unsigned n_edges, const double *edges, double sum)
{
	uint64_t acc = 0;
	char labels[64];

	for (unsigned i = 0; i <= n_edges; i++) {
		acc += h[i];
		if (i < n_edges)
			mbuf_printf(b, "%s_bucket{scope=\"%s\",le=\"%.9g\"} %llu\n", name, scope, edges[i],
				    (unsigned long long)acc);
		else
			mbuf_printf(b, "%s_bucket{scope=\"%s\",le=\"+Inf\"} %llu\n", name, scope,
				    (unsigned long long)acc);
	}
	snprintf(labels, sizeof(labels), "scope=\"%s\"", scope);
	mbuf_printf(b, "%s_sum{%s} %.9g\n", name, labels, sum);
	mbuf_printf(b, "%s_count{%s} %llu\n", name, labels, (unsigned long long)acc);
}

static void scope_counter(struct mbuf *b, const struct tcpsock_view *v, const char *name,
			  const char *help, size_t off)
{
	char labels[48];

	prom_header(b, name, "counter", help);
	for (unsigned s = 0; s < ISPMON_TCP_SCOPES; s++) {
		__u64 x;

		memcpy(&x, (const char *)&v->total[s] + off, sizeof(x));
		snprintf(labels, sizeof(labels), "scope=\"%s\"", scope_names[s]);
		prom_u64(b, name, labels, x);
	}
}

void tcpsock_render_view(const struct tcpsock_view *v, struct mbuf *b)
{
	double dur_edges[ISPMON_TCP_DUR_EDGES], cwnd_edges[ISPMON_TCP_CWND_EDGES];
	char labels[96];

	for (unsigned i = 0; i < ISPMON_TCP_DUR_EDGES; i++)
		dur_edges[i] = (double)ispmon_tcp_dur_edge_ms(i) / 1e3;
	for (unsigned i = 0; i < ISPMON_TCP_CWND_EDGES; i++)
		cwnd_edges[i] = (double)(1u << i);

	render_rtt(v, b);
	scope_counter(b, v, "ispmon_tcp_retransmits_total",
		      "Segments the router's own TCP connections retransmitted (as RetransSegs counts them).",
		      offsetof(struct ispmon_tcp_stats, retrans_segs));
	scope_counter(b, v, "ispmon_tcp_bytes_acked_total",
		      "Bytes the router's own TCP connections sent that the other end acknowledged.",
		      offsetof(struct ispmon_tcp_stats, bytes_acked));
	scope_counter(b, v, "ispmon_tcp_bytes_received_total",
		      "Bytes the router's own TCP connections received in order.",
		      offsetof(struct ispmon_tcp_stats, bytes_received));
	prom_header(b, "ispmon_tcp_connections_total", "counter",
		    "The router's own TCP connections by event: active_open (connect), passive_open "
		    "(accepted), existing (first seen already open), closed (after being established), "
		    "failed (closed before).");
	for (unsigned s = 0; s < ISPMON_TCP_SCOPES; s++)
		for (unsigned e = 0; e < ISPMON_TCP_EV_MAX; e++) {
			snprintf(labels, sizeof(labels), "event=\"%s\",scope=\"%s\"", event_names[e],
				 scope_names[s]);
			prom_u64(b, "ispmon_tcp_connections_total", labels, v->total[s].events[e]);
		}
	prom_header(b, "ispmon_tcp_connection_duration_seconds", "histogram",
		    "Lifetime of the router's own TCP connections at close, from connect or accept "
		    "(connections open before ispmon started are left out).");
	for (unsigned s = 0; s < ISPMON_TCP_SCOPES; s++)
		render_fixed_hist(b, "ispmon_tcp_connection_duration_seconds", scope_names[s],
				  v->total[s].dur_hist, ISPMON_TCP_DUR_EDGES, dur_edges,
				  (double)v->total[s].dur_sum_us / 1e6);
	prom_header(b, "ispmon_tcp_cwnd_segments", "histogram",
		    "Congestion window of the router's own TCP connections, sampled with srtt.");
	for (unsigned s = 0; s < ISPMON_TCP_SCOPES; s++)
		render_fixed_hist(b, "ispmon_tcp_cwnd_segments", scope_names[s], v->total[s].cwnd_hist,
				  ISPMON_TCP_CWND_EDGES, cwnd_edges, (double)v->total[s].cwnd_sum);
	prom_header(b, "ispmon_tcp_sockets", "gauge",
		    "TCP sockets of the router's network namespace tracked by the kernel hooks now.");
	prom_u64(b, "ispmon_tcp_sockets", NULL, v->sockets);
}

void tcpsock_render(const struct tcpsock *t, struct mbuf *b)
{
	tcpsock_render_view(&t->view, b);
}

void tcpsock_render_attach(const struct tcpsock *t, struct mbuf *b)
{
	for (unsigned i = 0; i < t->n_progs; i++) {
		mbuf_printf(b, "ispmon_bpf_attach_info{program=\"");
		mbuf_label_value(b, t->prog_names[i]);
		mbuf_printf(b, "\",mode=\"%s\",iface=\"\",side=\"router\"} 1\n", t->prog_modes[i]);
	}
}

/* ---- watching the speed test's connections ---- */

static int parse_addr(const char *s, __u8 *family, __u32 a[4])
{
	char buf[INET6_ADDRSTRLEN + 8];
	const char *pct;
	size_t n;

	if (!s)
		return -EINVAL;
	pct = strchr(s, '%');
	n = pct ? (size_t)(pct - s) : strlen(s);
	if (n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, n);
	buf[n] = 0;
	memset(a, 0, 16);
	if (inet_pton(AF_INET, buf, &a[0]) == 1) {
		*family = 4;
		return 0;
	}
	if (inet_pton(AF_INET6, buf, a) != 1)
		return -EINVAL;
	*family = 6;
	if (!a[0] && !a[1] && a[2] == htonl(0xffff)) {
		*family = 4;
		a[0] = a[3];
		a[2] = a[3] = 0;
	}
	return 0;
}

int tcpsock_tuple(const char *local_ip, int local_port, const char *remote_ip, int remote_port,
		  struct ispmon_tcp_tuple *t)
{
	__u8 lf, rf;

	memset(t, 0, sizeof(*t));
	if (local_port <= 0 || local_port > 65535 || remote_port <= 0 || remote_port > 65535 ||
	    parse_addr(local_ip, &lf, t->saddr) || parse_addr(remote_ip, &rf, t->daddr) || lf != rf)
		return -EINVAL;
	t->family = lf;
	t->sport = (__u16)local_port;
	t->dport = (__u16)remote_port;
	return 0;
}

/* The number of watched connections, for the kernel's shortcut. */
static void set_watching(struct tcpsock *t)
{
	unsigned n = 0;

	for (unsigned i = 0; i < TCPSOCK_WATCH_SLOTS; i++)
		n += t->slots[i].n;
	__u32 zero = 0;

	t->skel->bss->watching = n;
	/* Through the map too: where the kernel cannot mmap arrays, libbpf's
	 * bss is a private copy. */
	bpf_map_update_elem(bpf_map__fd(t->skel->maps.bss), &zero, t->skel->bss, BPF_ANY);
}

int tcpsock_watch_add(struct tcpsock *t, unsigned slot, const char *local_ip, int local_port,
		      const char *remote_ip, int remote_port)
{
	struct ispmon_tcp_tuple tu;
	struct watch_slot *w;
	__u32 g = ISPMON_TCP_G_WATCH + slot;
	int err = 0;

	if (slot >= TCPSOCK_WATCH_SLOTS || tcpsock_tuple(local_ip, local_port, remote_ip,
							 remote_port, &tu))
		return -EINVAL;
	pthread_mutex_lock(&t->watch_lock);
	w = &t->slots[slot];
	for (unsigned i = 0; i < w->n; i++)
		if (!memcmp(&w->tuples[i], &tu, sizeof(tu)))
			goto out; /* a kept-alive connection, again */
	if (w->n == WATCH_PER_SLOT) {
		err = -ENOSPC;
		goto out;
	}
	if (bpf_map_update_elem(bpf_map__fd(t->skel->maps.watch), &tu, &g, BPF_ANY)) {
		err = -errno;
		goto out;
	}
	w->tuples[w->n++] = tu;
	set_watching(t);
out:
	pthread_mutex_unlock(&t->watch_lock);
	if (err)
		log_debug("tcp hooks: cannot watch a connection", "err=\"%s\"", strerror(-err));
	return err;
}

void tcpsock_watch_begin(struct tcpsock *t, unsigned slot)
{
	if (slot >= TCPSOCK_WATCH_SLOTS)
		return;
	pthread_mutex_lock(&t->watch_lock);
	t->slots[slot].begun = !read_group(bpf_map__fd(t->skel->maps.tcp_stats), t->ncpu,
					   t->watch_pcpu, ISPMON_TCP_G_WATCH + slot,
					   &t->slots[slot].start);
	pthread_mutex_unlock(&t->watch_lock);
}

bool tcpsock_watch_end(struct tcpsock *t, unsigned slot, bool receiving, double *rtt_s,
		       uint64_t *retransmits)
{
	bool measured = false;
	struct ispmon_tcp_stats *now;
	struct watch_slot *w;
	unsigned first = receiving ? ISPMON_TCP_RCV_RTT : ISPMON_TCP_SRTT;

	*rtt_s = NAN;
	*retransmits = 0;
	if (slot >= TCPSOCK_WATCH_SLOTS)
		return false;
	now = calloc(1, sizeof(*now));
	pthread_mutex_lock(&t->watch_lock);
	w = &t->slots[slot];
	if (now && w->begun &&
	    !read_group(bpf_map__fd(t->skel->maps.tcp_stats), t->ncpu, t->watch_pcpu,
			ISPMON_TCP_G_WATCH + slot, now)) {
		tcpsock_stats_sub(now, &w->start);
		*rtt_s = hist_quantile(now->rtt_hist[first], 0.5);
		if (isnan(*rtt_s))
			*rtt_s = hist_quantile(now->rtt_hist[!first], 0.5);
		*retransmits = now->retrans_segs;
		measured = true;
	}
	for (unsigned i = 0; i < w->n; i++)
		bpf_map_delete_elem(bpf_map__fd(t->skel->maps.watch), &w->tuples[i]);
	w->n = 0;
	w->begun = false;
	set_watching(t);
	pthread_mutex_unlock(&t->watch_lock);
	free(now);
	return measured;
}
