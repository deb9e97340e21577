/*
 * Passive RTT: reads the kernel's histograms and counters, keeps a sliding
 * window for quantiles, and sweeps the flow tables for stale entries.
 */
#ifndef ISPMON_RTT_H
#define ISPMON_RTT_H

#include <linux/types.h>
#include <stdbool.h>
#include <stdint.h>

#include "flow.h"

#define RTT_WINDOW_SLOTS 7 /* snapshots kept for the quantile window */

struct rtt_hist {
	uint64_t b[ISPMON_RTT_SERIES][ISPMON_RTT_BUCKETS];
	uint64_t sum_ns[ISPMON_RTT_SERIES];
	uint64_t count[ISPMON_RTT_SERIES];
};

struct rtt_maps {
	int hist_fd, sum_fd, counters_fd, flow_counters_fd, flow_state_fd, pending_fd;
	uint32_t flow_entries, pending_entries; /* max_entries */
};

struct rtt_view {
	struct rtt_hist total;  /* since start */
	struct rtt_hist window; /* the last window_s seconds */
	double window_s;
	struct ispmon_rtt_counters counters[ISPMON_M_MAX];
	/* flow tables, from the last sweep */
	uint64_t flows_active, pending_active;
	uint64_t flows_expired, pending_stale[ISPMON_M_MAX];
	uint64_t flow_evictions, pending_evictions;
	uint64_t flows_created, flows_closed;
};

struct rtt_reader;

int rtt_reader_new(const struct rtt_maps *maps, double window_slot_s,
		   struct rtt_reader **out);
void rtt_reader_free(struct rtt_reader *r);
/* Read the maps into the view; now_s is CLOCK_MONOTONIC seconds. */
int rtt_reader_collect(struct rtt_reader *r, double now_s);
/* Median of one leg's samples (all methods) since the previous call, in
 * seconds; NaN when there were none. */
double rtt_reader_interval_median(struct rtt_reader *r, unsigned leg);
/* Delete idle flows and unanswered requests; count what is left. */
int rtt_reader_sweep(struct rtt_reader *r, uint64_t now_ns);
const struct rtt_view *rtt_reader_view(const struct rtt_reader *r);

/* q-quantile of one series in seconds by linear interpolation inside the
 * bucket; NaN when the series is empty. */
double rtt_quantile(const struct rtt_hist *h, unsigned series, double q);
/* The same over one series' buckets (ISPMON_RTT_BUCKETS of them). */
double rtt_quantile_buckets(const uint64_t *b, double q);

struct mbuf;
/* One series as a Prometheus histogram: name_bucket{labels,le} at every 4th
 * kernel bucket edge (4 per power of two from 64 us, so cumulative counts
 * stay exact) and +Inf, name_sum (sum_s) and name_count (= the +Inf
 * bucket). buckets: ISPMON_RTT_BUCKETS of them; labels: the series' own. */
void rtt_render_hist(struct mbuf *b, const char *name, const char *labels,
		     const uint64_t *buckets, double sum_s);

extern const char *const rtt_leg_names[ISPMON_LEG_MAX];
extern const char *const rtt_method_names[ISPMON_M_MAX];

#endif
