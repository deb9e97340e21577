/*
 * Internet outages, from the ping probes. The internet counts as up while at
 * least one ping target answers (its newest probe with a result succeeded),
 * down while every target with a result fails, and unknown before the first
 * result or without ping probes: the same as the dashboards' recording rule
 * ispmon:internet_up = max(ispmon_probe_success{probe="ping"}). An outage is
 * an episode of "down" between two known states. The collection interval
 * that first sees it down opens it, the one that sees the internet up again
 * (or the state unknown) closes it; the times are those the probes tell:
 * from the last reply before it to the first reply after it (so as exact as
 * the ping interval, not the collection interval plus the timeout). The
 * last OUTAGES_KEEP episodes are kept; the counters cover every one.
 */
#ifndef ISPMON_OUTAGES_H
#define ISPMON_OUTAGES_H

#include <stdbool.h>
#include <stdint.h>

#include "metrics.h"

#define OUTAGES_KEEP 64

enum inet_state { INET_UNKNOWN = -1, INET_DOWN = 0, INET_UP = 1 };

struct outage {
	double start_mono, start_real; /* CLOCK_MONOTONIC and unix seconds */
	double end_mono, end_real;     /* ongoing: the last update's times */
	bool ongoing;
};

struct outages {
	enum inet_state state;
	bool known;     /* a known state was ever seen */
	uint64_t count; /* episodes started */
	double done_s;  /* duration of the finished ones */
	struct outage ring[OUTAGES_KEEP];
	unsigned n, head; /* head: where the next one goes */
};

void outages_init(struct outages *o);
/* The state seen at (t_mono, t_real); call once per collection interval.
 * at_mono: when a change of state happened, as far as known (down: the last
 * reply; up: the first reply again), NaN: at t_mono. Kept within the time
 * since the previous outage and t_mono. */
void outages_update(struct outages *o, double t_mono, double t_real, enum inet_state s,
		    double at_mono);
/* The i-th newest episode (0: the newest), NULL past the last kept. */
const struct outage *outages_get(const struct outages *o, unsigned i);
/* Episodes overlapping (from_mono, now], and the seconds of them inside it. */
unsigned outages_since(const struct outages *o, double from_mono, double *seconds);
/* Seconds of every outage so far, the ongoing one up to its last update. */
double outages_total_s(const struct outages *o);
/* ispmon_internet_up, ispmon_outages_total, ispmon_outage_seconds_total,
 * ispmon_last_outage_{start,duration}_seconds. Nothing while nothing is
 * known (no ping probes): "no outage" would be a claim. */
void outages_render(const struct outages *o, struct mbuf *b);

#endif
