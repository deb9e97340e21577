#include "capacity.h"
#include "log.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SAT_RING 6000             /* saturated 100 ms rates kept: 10 min */
#define WINDOW_S 600.0            /* evidence older than this expires */
#define RTT_RING 600              /* interval RTT medians kept per class */
#define REF_DECAY_S 3600.0        /* the "highest rate" reference fades in 1 h */
#define BULK_PKT_BYTES 400.0
#define MIN_LOADED_BPS 125000.0   /* 1 Mbit/s: below, a line is never "loaded" */
#define IDLE_BPS 12500.0          /* 100 kbit/s: always "idle" below */
#define INFLATED_MIN_S 0.002     /* RTT this far over the idle baseline ... */
#define INFLATED_SHARE 0.05       /* ... and this share of it: a standing queue */
#define RTT_CARRY_S 3.0           /* an interval without RTT samples uses the last */
#define IDLE_SETTLE_S 2.0         /* idle this long before an interval sets the baseline */

struct sat { double t, rate; };

struct capacity {
	bool have_prev;
	double prev_t;
	struct ispmon_dir_stats prev[ISPMON_DIR_MAX];
	/* the current interval */
	double int_start;
	struct ispmon_dir_stats int_start_stats[ISPMON_DIR_MAX];
	bool have_int_start;
	/* Highest 100 ms rate: since the last page was rendered (acc), and
	 * as shown on that page (shown, covering peak_since..peak_rendered_t). */
	double peak_acc[ISPMON_DIR_MAX], peak_shown[ISPMON_DIR_MAX];
	double peak_since, peak_rendered_t;
	/* per direction */
	double ref[ISPMON_DIR_MAX];     /* highest interval rate, decaying */
	struct sat sat[ISPMON_DIR_MAX][SAT_RING];
	unsigned sat_n[ISPMON_DIR_MAX], sat_head[ISPMON_DIR_MAX];
	double sat_iv_t[ISPMON_DIR_MAX][RTT_RING]; /* when saturated intervals ended */
	unsigned sat_iv_n[ISPMON_DIR_MAX], sat_iv_head[ISPMON_DIR_MAX];
	double estimate[ISPMON_DIR_MAX], estimate_t[ISPMON_DIR_MAX];
	unsigned evidence[ISPMON_DIR_MAX];
	uint64_t saturated_total[ISPMON_DIR_MAX];
	/* RTT by utilisation */
	double idle_rtt[RTT_RING], loaded_rtt[RTT_RING];
	unsigned idle_n, idle_head, loaded_n, loaded_head;
	uint64_t intervals_idle, intervals_loaded;
	double last_rtt, last_rtt_t;
	/* Start of the current run of idle intervals, NAN while loaded; at
	 * start, quiet since ever as far as anyone knows. */
	double idle_since;
};

int capacity_new(struct capacity **out)
{
	struct capacity *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	for (int d = 0; d < ISPMON_DIR_MAX; d++)
		c->estimate[d] = NAN;
	c->idle_since = -INFINITY;
	*out = c;
	return 0;
}

void capacity_free(struct capacity *c) { free(c); }

void capacity_sample(struct capacity *c, double t, const struct ispmon_dir_stats now[ISPMON_DIR_MAX])
{
	if (!c->have_int_start) {
		c->int_start = t;
		memcpy(c->int_start_stats, now, sizeof(c->int_start_stats));
		c->have_int_start = true;
	}
	if (c->have_prev && t > c->prev_t) {
		for (int d = 0; d < ISPMON_DIR_MAX; d++) {
			double l2 = (double)(now[d].bytes - c->prev[d].bytes) / (t - c->prev_t);

			if (l2 > c->peak_acc[d])
				c->peak_acc[d] = l2;
		}
	}
	memcpy(c->prev, now, sizeof(c->prev));
	c->prev_t = t;
	c->have_prev = true;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median_of(const double *v, unsigned n)
{
	double tmp[RTT_RING];

	if (!n)
		return NAN;
	memcpy(tmp, v, n * sizeof(double));
	qsort(tmp, n, sizeof(double), cmp_double);
	return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

static void push(double *ring, unsigned *n, unsigned *head, double v)
{
	ring[*head] = v;
	*head = (*head + 1) % RTT_RING;
	if (*n < RTT_RING)
		(*n)++;
}

static void update_estimate(struct capacity *c, int d, double t)
{
	static double tmp[SAT_RING];
	unsigned n = 0, ev = 0;

	for (unsigned i = 0; i < c->sat_iv_n[d]; i++)
		if (t - c->sat_iv_t[d][i] <= WINDOW_S)
			ev++;
	c->evidence[d] = ev;
	if (ev < CAPACITY_MIN_EVIDENCE)
		return; /* keep the previous estimate, if any */
	for (unsigned i = 0; i < c->sat_n[d]; i++)
		if (t - c->sat[d][i].t <= WINDOW_S)
			tmp[n++] = c->sat[d][i].rate;
	if (!n)
		return;
	qsort(tmp, n, sizeof(double), cmp_double);
	c->estimate[d] = n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
	c->estimate_t[d] = t;
}

/* The idle RTT baseline: the median of idle intervals, or before there is
 * any, the smallest loaded one (a queue only ever adds delay). */
static double baseline(const struct capacity *c)
{
	double b = median_of(c->idle_rtt, c->idle_n);

	if (isnan(b))
		for (unsigned i = 0; i < c->loaded_n; i++)
			if (isnan(b) || c->loaded_rtt[i] < b)
				b = c->loaded_rtt[i];
	return b;
}

void capacity_interval(struct capacity *c, double t, double rtt)
{
	double rate[ISPMON_DIR_MAX], pkt[ISPMON_DIR_MAX], gp[ISPMON_DIR_MAX], dt = t - c->int_start;
	bool idle = true, loaded = false, inflated, sat[ISPMON_DIR_MAX], own_rtt = !isnan(rtt);
	double base;

	if (!c->have_prev || !c->have_int_start || dt <= 0.05)
		return;
	for (int d = 0; d < ISPMON_DIR_MAX; d++) {
		uint64_t bytes = c->prev[d].bytes - c->int_start_stats[d].bytes;
		uint64_t pkts = c->prev[d].packets - c->int_start_stats[d].packets;

		rate[d] = (double)bytes / dt;
		pkt[d] = pkts ? (double)bytes / (double)pkts : 0;
		/* The reference fades so a slower line later is judged fairly. */
		c->ref[d] *= exp(-dt / REF_DECAY_S);
		if (rate[d] > c->ref[d])
			c->ref[d] = rate[d];
		if (rate[d] >= IDLE_BPS && rate[d] >= 0.1 * c->ref[d])
			idle = false;
		if (rate[d] >= MIN_LOADED_BPS && rate[d] >= 0.7 * c->ref[d])
			loaded = true;
	}
	/* WAN-leg samples come from requests leaving to the internet: a
	 * download alone (pure ACKs) gives none, so an interval without any
	 * borrows the last one from the seconds before (pings, DNS, web
	 * requests keep them coming). */
	if (!isnan(rtt)) {
		c->last_rtt = rtt;
		c->last_rtt_t = t;
	} else if (c->last_rtt_t > 0 && t - c->last_rtt_t <= RTT_CARRY_S) {
		rtt = c->last_rtt;
	}
	base = baseline(c);
	/* Loss-based senders (CUBIC) fill the bottleneck queue; BBR keeps it
	 * short, a few percent over the base RTT: both must count. */
	inflated = !isnan(rtt) && !isnan(base) && rtt > base + fmax(INFLATED_MIN_S, INFLATED_SHARE * base);
	for (int d = 0; d < ISPMON_DIR_MAX; d++) {
		/* Whole-interval goodput: on the upload side the router sits
		 * before the bottleneck and sees the sender's bursts; over a
		 * second they average out to what the bottleneck lets through. */
		gp[d] = (double)(c->prev[d].payload_bytes - c->int_start_stats[d].payload_bytes) / dt;
		sat[d] = inflated && pkt[d] >= BULK_PKT_BYTES && rate[d] >= MIN_LOADED_BPS &&
			 rate[d] >= 0.5 * c->ref[d];
		if (sat[d]) {
			c->sat[d][c->sat_head[d]] = (struct sat){t, gp[d]};
			c->sat_head[d] = (c->sat_head[d] + 1) % SAT_RING;
			if (c->sat_n[d] < SAT_RING)
				c->sat_n[d]++;
			c->sat_iv_t[d][c->sat_iv_head[d]] = t;
			c->sat_iv_head[d] = (c->sat_iv_head[d] + 1) % RTT_RING;
			if (c->sat_iv_n[d] < RTT_RING)
				c->sat_iv_n[d]++;
			c->saturated_total[d]++;
		}
		update_estimate(c, d, t);
	}
	log_debug("capacity interval", "rtt_ms=%.1f base_ms=%.1f down_Bps=%.0f up_Bps=%.0f down_goodput_Bps=%.0f up_goodput_Bps=%.0f down_pkt=%.0f up_pkt=%.0f idle=%d loaded=%d inflated=%d down_saturated=%d up_saturated=%d",
		  rtt * 1e3, base * 1e3, rate[0], rate[1], gp[0], gp[1], pkt[0], pkt[1], idle, loaded,
		  inflated, sat[0], sat[1]);
	/* The idle baseline takes only an interval's own samples, after the
	 * line has been quiet a while: a queue filled by an upload drains
	 * after the router stops sending (the interval looks idle), and a
	 * carried sample may come from the load before. */
	if (!idle)
		c->idle_since = NAN;
	else if (isnan(c->idle_since))
		c->idle_since = c->int_start;
	if (!isnan(rtt)) {
		if (idle) {
			if (own_rtt && c->int_start - c->idle_since >= IDLE_SETTLE_S) {
				push(c->idle_rtt, &c->idle_n, &c->idle_head, rtt);
				c->intervals_idle++;
			}
		} else if (loaded) {
			push(c->loaded_rtt, &c->loaded_n, &c->loaded_head, rtt);
			c->intervals_loaded++;
		}
	}
	c->int_start = t;
	memcpy(c->int_start_stats, c->prev, sizeof(c->int_start_stats));
}

double capacity_estimate(const struct capacity *c, int dir, unsigned *evidence)
{
	if (evidence)
		*evidence = c->evidence[dir];
	return c->estimate[dir];
}

const char *capacity_grade(double b)
{
	if (isnan(b))
		return "";
	if (b < 0.005)
		return "A+";
	if (b < 0.030)
		return "A";
	if (b < 0.060)
		return "B";
	if (b < 0.200)
		return "C";
	if (b < 0.400)
		return "D";
	return "F";
}

double capacity_bufferbloat(const struct capacity *c, double *idle_s, double *loaded_s)
{
	double idle = median_of(c->idle_rtt, c->idle_n);
	double loaded = c->loaded_n >= CAPACITY_MIN_EVIDENCE ? median_of(c->loaded_rtt, c->loaded_n) : NAN;

	if (idle_s)
		*idle_s = idle;
	if (loaded_s)
		*loaded_s = loaded;
	return loaded - idle < 0 ? 0 : loaded - idle; /* NaN stays NaN */
}

void capacity_peak_commit(struct capacity *c, double t, bool shown_page_served)
{
	/* A scrape took the page rendered at peak_rendered_t: the next page's
	 * peak starts there, so consecutive scrapes see adjoining windows and
	 * no 100 ms sample is missed. Otherwise the window keeps growing. */
	if (c->peak_rendered_t == 0)
		c->peak_since = c->peak_rendered_t = t;
	for (int d = 0; d < ISPMON_DIR_MAX; d++) {
		double v = c->peak_acc[d];

		if (!shown_page_served && c->peak_shown[d] > v)
			v = c->peak_shown[d];
		c->peak_shown[d] = v;
		c->peak_acc[d] = 0;
	}
	if (shown_page_served)
		c->peak_since = c->peak_rendered_t;
	c->peak_rendered_t = t;
}

double capacity_peak(const struct capacity *c, int dir, double *window_s)
{
	if (window_s)
		*window_s = c->peak_rendered_t - c->peak_since;
	return c->peak_shown[dir];
}

void capacity_render(const struct capacity *c, const double plan[ISPMON_DIR_MAX], struct mbuf *b)
{
	static const char *const dirs[ISPMON_DIR_MAX] = {"download", "upload"};
	double idle, loaded, bloat;
	char labels[64];

	prom_header(b, "ispmon_passive_throughput_peak_bytes_per_second", "gauge",
		    "Highest 100 ms WAN rate (L2 bytes) since the previous scrape "
		    "(ispmon_passive_throughput_peak_window_seconds).");
	for (int d = 0; d < ISPMON_DIR_MAX; d++) {
		snprintf(labels, sizeof(labels), "direction=\"%s\"", dirs[d]);
		prom_f64(b, "ispmon_passive_throughput_peak_bytes_per_second", labels, c->peak_shown[d]);
	}
	prom_header(b, "ispmon_passive_throughput_peak_window_seconds", "gauge",
		    "The time the peak rates cover: from the page the previous scrape took up to this one.");
	prom_f64(b, "ispmon_passive_throughput_peak_window_seconds", NULL,
		 c->peak_rendered_t - c->peak_since);
	prom_header(b, "ispmon_passive_capacity_bytes_per_second", "gauge",
		    "Passive line capacity estimate: median goodput (TCP/UDP payload) of the saturated "
		    "intervals of the last 10 min; absent until there is evidence.");
	for (int d = 0; d < ISPMON_DIR_MAX; d++) {
		if (isnan(c->estimate[d]))
			continue;
		snprintf(labels, sizeof(labels), "direction=\"%s\"", dirs[d]);
		prom_f64(b, "ispmon_passive_capacity_bytes_per_second", labels, c->estimate[d]);
	}
	prom_header(b, "ispmon_passive_capacity_saturated_intervals", "gauge",
		    "Saturated intervals in the last 10 min: the evidence behind the capacity estimate.");
	for (int d = 0; d < ISPMON_DIR_MAX; d++) {
		snprintf(labels, sizeof(labels), "direction=\"%s\"", dirs[d]);
		prom_u64(b, "ispmon_passive_capacity_saturated_intervals", labels, c->evidence[d]);
	}
	prom_header(b, "ispmon_passive_saturated_intervals_total", "counter",
		    "Intervals judged saturated (inflated WAN RTT with bulk traffic near the line's peak).");
	for (int d = 0; d < ISPMON_DIR_MAX; d++) {
		snprintf(labels, sizeof(labels), "direction=\"%s\"", dirs[d]);
		prom_u64(b, "ispmon_passive_saturated_intervals_total", labels, c->saturated_total[d]);
	}
	prom_header(b, "ispmon_passive_capacity_age_seconds", "gauge",
		    "Seconds since the capacity estimate last had new evidence.");
	for (int d = 0; d < ISPMON_DIR_MAX; d++) {
		if (isnan(c->estimate[d]))
			continue;
		snprintf(labels, sizeof(labels), "direction=\"%s\"", dirs[d]);
		prom_f64(b, "ispmon_passive_capacity_age_seconds", labels, c->prev_t - c->estimate_t[d]);
	}
	if (plan[0] > 0 || plan[1] > 0) {
		prom_header(b, "ispmon_plan_bytes_per_second", "gauge",
			    "The rate the household pays for (--plan-download/--plan-upload).");
		for (int d = 0; d < ISPMON_DIR_MAX; d++) {
			if (plan[d] <= 0)
				continue;
			snprintf(labels, sizeof(labels), "direction=\"%s\"", dirs[d]);
			prom_f64(b, "ispmon_plan_bytes_per_second", labels, plan[d]);
		}
	}
	prom_header(b, "ispmon_passive_rtt_intervals_total", "counter",
		    "Collection intervals with WAN-leg RTT samples, by utilisation.");
	prom_u64(b, "ispmon_passive_rtt_intervals_total", "load=\"idle\"", c->intervals_idle);
	prom_u64(b, "ispmon_passive_rtt_intervals_total", "load=\"loaded\"", c->intervals_loaded);
	bloat = capacity_bufferbloat(c, &idle, &loaded);
	if (!isnan(idle)) {
		prom_header(b, "ispmon_passive_rtt_idle_seconds", "gauge",
			    "Median WAN-leg RTT of idle intervals (the last 600).");
		prom_f64(b, "ispmon_passive_rtt_idle_seconds", NULL, idle);
	}
	if (!isnan(loaded)) {
		prom_header(b, "ispmon_passive_rtt_loaded_seconds", "gauge",
			    "Median WAN-leg RTT of loaded intervals (>= 70% of the line's peak rate; the last 600).");
		prom_f64(b, "ispmon_passive_rtt_loaded_seconds", NULL, loaded);
	}
	if (!isnan(bloat)) {
		prom_header(b, "ispmon_bufferbloat_seconds", "gauge",
			    "Latency under load: loaded minus idle median WAN-leg RTT.");
		prom_f64(b, "ispmon_bufferbloat_seconds", NULL, bloat);
		prom_header(b, "ispmon_bufferbloat_grade_info", "gauge",
			    "Bufferbloat grade (A+ < 5 ms, A < 30, B < 60, C < 200, D < 400, F); always 1.");
		mbuf_printf(b, "ispmon_bufferbloat_grade_info{grade=\"%s\"} 1\n", capacity_grade(bloat));
	}
}
