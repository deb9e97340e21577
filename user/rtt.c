#include "rtt.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "metrics.h"

#define FLOW_IDLE_NS (120ULL * 1000000000ULL)  /* a flow silent this long is gone */
#define PENDING_STALE_NS (10ULL * 1000000000ULL) /* matches rtt.h in bpf/ */

const char *const rtt_leg_names[ISPMON_LEG_MAX] = {"wan", "lan"};
const char *const rtt_method_names[ISPMON_M_MAX] = {"tcp_ts", "tcp_seq", "dns", "icmp"};

struct rtt_reader {
	struct rtt_maps maps;
	int ncpu;
	uint64_t *pcpu; /* ncpu u64 slots, or ncpu structs for counters */
	void *pcpu_big; /* batch buffer: every histogram key for every CPU */
	__u32 *keys;
	bool batch_ok;

	struct rtt_view view;
	/* Window: snapshots of the cumulative histogram every slot_s. */
	struct rtt_hist *ring;
	double ring_t[RTT_WINDOW_SLOTS];
	unsigned ring_n, ring_head;
	double slot_s, last_slot_t;
	struct rtt_hist prev_interval; /* total at the last interval median */
	struct rtt_hist scratch;
	/* Sweep totals. */
	uint64_t expired, stale[ISPMON_M_MAX];
};

static const __u32 n_hist = ISPMON_RTT_SERIES * ISPMON_RTT_BUCKETS;

int rtt_reader_new(const struct rtt_maps *maps, double slot_s, struct rtt_reader **out)
{
	struct rtt_reader *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->maps = *maps;
	r->ncpu = libbpf_num_possible_cpus();
	r->slot_s = slot_s;
	r->last_slot_t = -1;
	r->batch_ok = true;
	if (r->ncpu <= 0) {
		free(r);
		return -EINVAL;
	}
	r->pcpu = calloc((size_t)r->ncpu, sizeof(struct ispmon_rtt_counters));
	r->pcpu_big = calloc((size_t)r->ncpu * n_hist, sizeof(__u64));
	r->keys = calloc(n_hist, sizeof(__u32));
	r->ring = calloc(RTT_WINDOW_SLOTS, sizeof(*r->ring));
	if (!r->pcpu || !r->pcpu_big || !r->keys || !r->ring) {
		rtt_reader_free(r);
		return -ENOMEM;
	}
	*out = r;
	return 0;
}

void rtt_reader_free(struct rtt_reader *r)
{
	if (!r)
		return;
	free(r->pcpu);
	free(r->pcpu_big);
	free(r->keys);
	free(r->ring);
	free(r);
}

const struct rtt_view *rtt_reader_view(const struct rtt_reader *r) { return &r->view; }

/* The whole histogram in one syscall where the kernel can batch arrays. */
static int read_hist(struct rtt_reader *r, struct rtt_hist *h)
{
	const __u64 *vals = r->pcpu_big;
	__u32 count = n_hist, out_batch = 0;
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	int err = -EOPNOTSUPP;

	if (r->batch_ok) {
		err = bpf_map_lookup_batch(r->maps.hist_fd, NULL, &out_batch, r->keys,
					   r->pcpu_big, &count, &opts);
		/* ENOENT: the batch reached the end, which is success here. */
		if ((err && errno != ENOENT) || count != n_hist) {
			r->batch_ok = false;
			err = -EOPNOTSUPP;
		} else {
			err = 0;
		}
	}
	if (err) {
		/* Older kernels: one lookup per key. */
		for (__u32 k = 0; k < n_hist; k++) {
			if (bpf_map_lookup_elem(r->maps.hist_fd, &k,
						(__u64 *)r->pcpu_big + (size_t)k * r->ncpu))
				return -errno;
			r->keys[k] = k;
		}
	}
	memset(h->b, 0, sizeof(h->b));
	for (__u32 i = 0; i < n_hist; i++) {
		__u32 k = r->keys[i];
		uint64_t sum = 0;

		if (k >= n_hist)
			continue;
		for (int c = 0; c < r->ncpu; c++)
			sum += vals[(size_t)i * r->ncpu + c];
		h->b[k / ISPMON_RTT_BUCKETS][k % ISPMON_RTT_BUCKETS] = sum;
	}
	return 0;
}

static int read_sums(struct rtt_reader *r, struct rtt_hist *h)
{
	struct ispmon_rtt_sum *v = (struct ispmon_rtt_sum *)r->pcpu;

	for (__u32 s = 0; s < ISPMON_RTT_SERIES; s++) {
		if (bpf_map_lookup_elem(r->maps.sum_fd, &s, v))
			return -errno;
		h->sum_ns[s] = h->count[s] = 0;
		for (int c = 0; c < r->ncpu; c++) {
			h->sum_ns[s] += v[c].sum_ns;
			h->count[s] += v[c].count;
		}
	}
	return 0;
}

static int read_counters(struct rtt_reader *r)
{
	struct ispmon_rtt_counters *v = (struct ispmon_rtt_counters *)r->pcpu;
	struct ispmon_flow_counters *f = (struct ispmon_flow_counters *)r->pcpu;
	__u32 zero = 0;

	for (__u32 m = 0; m < ISPMON_M_MAX; m++) {
		struct ispmon_rtt_counters *o = &r->view.counters[m];

		if (bpf_map_lookup_elem(r->maps.counters_fd, &m, v))
			return -errno;
		memset(o, 0, sizeof(*o));
		for (int c = 0; c < r->ncpu; c++) {
			o->records += v[c].records;
			o->samples += v[c].samples;
			o->rate_limited += v[c].rate_limited;
			o->ambiguous += v[c].ambiguous;
		}
	}
	if (bpf_map_lookup_elem(r->maps.flow_counters_fd, &zero, f))
		return -errno;
	r->view.flows_created = r->view.flows_closed = 0;
	for (int c = 0; c < r->ncpu; c++) {
		r->view.flows_created += f[c].created;
		r->view.flows_closed += f[c].closed;
	}
	return 0;
}

static void window_update(struct rtt_reader *r, double now)
{
	const struct rtt_hist *cur = &r->view.total, *old;
	unsigned oldest;

	if (r->last_slot_t < 0 || now - r->last_slot_t >= r->slot_s) {
		r->ring[r->ring_head] = *cur;
		r->ring_t[r->ring_head] = now;
		r->ring_head = (r->ring_head + 1) % RTT_WINDOW_SLOTS;
		if (r->ring_n < RTT_WINDOW_SLOTS)
			r->ring_n++;
		r->last_slot_t = now;
	}
	oldest = (r->ring_head + RTT_WINDOW_SLOTS - r->ring_n) % RTT_WINDOW_SLOTS;
	old = &r->ring[oldest];
	for (unsigned s = 0; s < ISPMON_RTT_SERIES; s++) {
		for (unsigned b = 0; b < ISPMON_RTT_BUCKETS; b++)
			r->view.window.b[s][b] = cur->b[s][b] - old->b[s][b];
		r->view.window.sum_ns[s] = cur->sum_ns[s] - old->sum_ns[s];
		r->view.window.count[s] = cur->count[s] - old->count[s];
	}
	r->view.window_s = now - r->ring_t[oldest];
}

int rtt_reader_collect(struct rtt_reader *r, double now_s)
{
	int err;

	err = read_hist(r, &r->view.total);
	if (!err)
		err = read_sums(r, &r->view.total);
	if (!err)
		err = read_counters(r);
	if (err)
		return err;
	window_update(r, now_s);
	return 0;
}

/* Evicted = what went in, less what left in ways we know, less what is
 * still there. Never let it go backwards: the inputs are read at slightly
 * different times. */
static void update_evictions(uint64_t *ev, uint64_t in, uint64_t out, uint64_t active)
{
	if (in > out + active && in - out - active > *ev)
		*ev = in - out - active;
}

int rtt_reader_sweep(struct rtt_reader *r, uint64_t now_ns)
{
	struct ispmon_flow_key fk, fnext;
	struct ispmon_pending_key pk, pnext;
	struct ispmon_flow_state st;
	uint64_t n = 0, ts, in = 0, out = 0;
	void *prev;

	/* Deleting the current key while walking restarts the walk in some
	 * kernels; fetch the next key first. */
	prev = NULL;
	while (!bpf_map_get_next_key(r->maps.flow_state_fd, prev, &fnext)) {
		fk = fnext;
		prev = &fk;
		if (bpf_map_lookup_elem(r->maps.flow_state_fd, &fk, &st))
			continue;
		if (now_ns > st.last_seen_ns && now_ns - st.last_seen_ns > FLOW_IDLE_NS) {
			if (!bpf_map_delete_elem(r->maps.flow_state_fd, &fk))
				r->expired++;
			continue;
		}
		n++;
	}
	r->view.flows_active = n;
	r->view.flows_expired = r->expired;

	n = 0;
	prev = NULL;
	while (!bpf_map_get_next_key(r->maps.pending_fd, prev, &pnext)) {
		pk = pnext;
		prev = &pk;
		if (bpf_map_lookup_elem(r->maps.pending_fd, &pk, &ts))
			continue;
		if (now_ns > ts && now_ns - ts > PENDING_STALE_NS) {
			if (!bpf_map_delete_elem(r->maps.pending_fd, &pk) &&
			    pk.method < ISPMON_M_MAX)
				r->stale[pk.method]++;
			continue;
		}
		n++;
	}
	r->view.pending_active = n;
	memcpy(r->view.pending_stale, r->stale, sizeof(r->stale));

	update_evictions(&r->view.flow_evictions, r->view.flows_created,
			 r->view.flows_closed + r->expired, r->view.flows_active);
	for (int m = 0; m < ISPMON_M_MAX; m++) {
		if (m == ISPMON_M_TCP_SEQ)
			continue; /* lives in flow_state, not in pending */
		in += r->view.counters[m].records;
		out += r->view.counters[m].samples + r->view.counters[m].ambiguous + r->stale[m];
	}
	update_evictions(&r->view.pending_evictions, in, out, r->view.pending_active);
	return 0;
}

double rtt_reader_interval_median(struct rtt_reader *r, unsigned leg)
{
	struct rtt_hist *delta = &r->scratch;
	double med;

	memset(delta, 0, sizeof(*delta));
	for (unsigned m = 0; m < ISPMON_M_MAX; m++) {
		unsigned s = leg * ISPMON_M_MAX + m;

		for (unsigned b = 0; b < ISPMON_RTT_BUCKETS; b++)
			delta->b[0][b] += r->view.total.b[s][b] - r->prev_interval.b[s][b];
	}
	med = rtt_quantile(delta, 0, 0.5);
	r->prev_interval = r->view.total;
	return med;
}

double rtt_quantile_buckets(const uint64_t *b, double q)
{
	uint64_t total = 0, acc = 0;
	double rank;

	for (unsigned i = 0; i < ISPMON_RTT_BUCKETS; i++)
		total += b[i];
	if (!total)
		return NAN;
	rank = q * (double)total;
	for (unsigned i = 0; i < ISPMON_RTT_BUCKETS; i++) {
		uint64_t n = b[i];
		double lo, hi;

		if (!n || (double)(acc + n) < rank) {
			acc += n;
			continue;
		}
		lo = (double)ispmon_rtt_bucket_lower_us(i);
		hi = i + 1 < ISPMON_RTT_BUCKETS ? (double)ispmon_rtt_bucket_lower_us(i + 1) : lo * 1.0625;
		return (lo + (hi - lo) * ((rank - (double)acc) / (double)n)) / 1e6;
	}
	return (double)ispmon_rtt_bucket_lower_us(ISPMON_RTT_BUCKETS - 1) / 1e6;
}

double rtt_quantile(const struct rtt_hist *h, unsigned series, double q)
{
	return rtt_quantile_buckets(h->b[series], q);
}

/* A subset of the kernel's 16 edges per power of two. */
static bool export_edge(unsigned upper_idx)
{
	return upper_idx >= ISPMON_RTT_SUB && (upper_idx - ISPMON_RTT_SUB) % 4 == 0;
}

void rtt_render_hist(struct mbuf *b, const char *name, const char *labels,
		     const uint64_t *buckets, double sum_s)
{
	char key[128];
	uint64_t acc = 0;

	for (unsigned i = 0; i + 1 < ISPMON_RTT_BUCKETS; i++) {
		acc += buckets[i];
		if (!export_edge(i + 1))
			continue;
		mbuf_printf(b, "%s_bucket{%s,le=\"%.9g\"} %llu\n", name, labels,
			    (double)ispmon_rtt_bucket_lower_us(i + 1) / 1e6, (unsigned long long)acc);
	}
	acc += buckets[ISPMON_RTT_BUCKETS - 1];
	mbuf_printf(b, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, (unsigned long long)acc);
	snprintf(key, sizeof(key), "%s_sum", name);
	prom_f64(b, key, labels, sum_s);
	/* _count from the buckets, so it always equals the +Inf bucket. */
	snprintf(key, sizeof(key), "%s_count", name);
	prom_u64(b, key, labels, acc);
}
