/*
 * Bounded history of figures for the status page's charts. Each series has
 * one ring of fixed-width time buckets per tier (the status page uses 10 s x
 * 360 = the last hour and 5 min x 288 = the last day); a bucket keeps the
 * count, sum, minimum and maximum of the values added while it was current.
 * Memory is fixed when the history is made, adding a value costs one bucket
 * update per tier, and a bucket left behind by a gap (nothing added for a
 * while) is recognised by its slot number and never read as new.
 *
 * Times are seconds on one monotonic clock (CLOCK_MONOTONIC), never negative.
 */
#ifndef ISPMON_HISTORY_H
#define ISPMON_HISTORY_H

#include <stdint.h>

#define HISTORY_TIERS 2

struct history_tier {
	double step_s;   /* bucket width, >= 1 s */
	unsigned points; /* buckets kept, 1 .. 100000 */
};

struct history_point {
	double t;        /* start of the bucket */
	double mean, min, max, sum;
	unsigned n;      /* values added in it */
};

struct history;

/* tiers: finest first (each covers at least as long as the one before).
 * 0, -EINVAL or -ENOMEM. */
int history_new(unsigned n_series, const struct history_tier tiers[HISTORY_TIERS],
		struct history **out);
void history_free(struct history *h);

/* Add v at time t to every tier; NaN and infinities are not values (a gap). */
void history_add(struct history *h, unsigned series, double t, double v);
/* Forget every value of a series (a chart slot handed to another device). */
void history_clear(struct history *h, unsigned series);

/*
 * The buckets of one series and tier with values that start after from and
 * not after to (both times of history_add), oldest first; at most max of
 * them, the newest kept. Returns how many were written.
 */
unsigned history_read(const struct history *h, unsigned series, unsigned tier, double from,
		      double to, struct history_point *out, unsigned max);
/* The sum of the values in those buckets; *n gets how many values. */
double history_sum(const struct history *h, unsigned series, unsigned tier, double from,
		   double to, unsigned *n);

/* The finest tier that reaches back span seconds (the coarsest if none). */
unsigned history_tier_for(const struct history *h, double span_s);
double history_step(const struct history *h, unsigned tier);
/* How far back a tier reaches: step x points. */
double history_reach(const struct history *h, unsigned tier);

#endif
