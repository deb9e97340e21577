/*
 * Passive line capacity and latency under load, from the household's own
 * traffic: the line rate sampled every ~100 ms, each collection interval
 * (~1 s) judged idle, loaded and/or saturated per direction, and
 *  - capacity: the median goodput (TCP/UDP payload) rate of the saturated
 *    intervals in the last 10 minutes, once at
 *    least CAPACITY_MIN_EVIDENCE such intervals exist (kept after that until
 *    new evidence replaces it);
 *  - bufferbloat: median WAN-leg RTT of loaded intervals minus that of idle
 *    ones, graded like DSLReports (A+ < 5 ms, A < 30, B < 60, C < 200,
 *    D < 400, F).
 * An interval is saturated in a direction when the WAN-leg RTT is inflated
 * over its idle baseline by max(2 ms, 5%) (a standing queue at the
 * bottleneck: CUBIC fills it, BBR keeps a small one) while that
 * direction carries bulk data (mean packet >= 400 B) at >= 50% of its
 * highest rate in the last hour. App-limited traffic builds no queue, so it
 * never counts, however steady it is.
 */
#ifndef ISPMON_CAPACITY_H
#define ISPMON_CAPACITY_H

#include <linux/types.h>
#include <stdbool.h>
#include <stdint.h>

#include "flow.h"
#include "metrics.h"

#define CAPACITY_MIN_EVIDENCE 5 /* saturated intervals before an estimate */

struct capacity;

int capacity_new(struct capacity **out);
void capacity_free(struct capacity *c);
/* Cumulative line counters at monotonic time t (seconds), every ~100 ms. */
void capacity_sample(struct capacity *c, double t, const struct ispmon_dir_stats now[ISPMON_DIR_MAX]);
/* End of a collection interval: the WAN-leg median RTT of the samples taken
 * in it (seconds, NaN if none). */
void capacity_interval(struct capacity *c, double t, double wan_rtt_s);
/*
 * Before rendering a page at time t: fold the 100 ms peaks since the last
 * page into the page's peak. shown_page_served says a scrape took the last
 * page; then the new peak covers only what came after it, else the window
 * grows. So each scrape sees the highest 100 ms rate since the previous one.
 */
void capacity_peak_commit(struct capacity *c, double t, bool shown_page_served);
/* The peak on the page (bytes/s) and the window it covers. */
double capacity_peak(const struct capacity *c, int dir, double *window_s);
/* plan: what the household pays for, bytes/s per direction (0: not given). */
void capacity_render(const struct capacity *c, const double plan[ISPMON_DIR_MAX], struct mbuf *b);

/* For tests: the estimate (bytes/s, NaN unset) and its evidence. */
double capacity_estimate(const struct capacity *c, int dir, unsigned *saturated_intervals);
double capacity_bufferbloat(const struct capacity *c, double *idle_s, double *loaded_s);
const char *capacity_grade(double bloat_s);

#endif
