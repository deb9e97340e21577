#include "outages.h"

#include <math.h>
#include <string.h>

void outages_init(struct outages *o)
{
	memset(o, 0, sizeof(*o));
	o->state = INET_UNKNOWN;
}

static struct outage *newest(struct outages *o)
{
	return o->n ? &o->ring[(o->head + OUTAGES_KEEP - 1) % OUTAGES_KEEP] : NULL;
}

static double clamp(double v, double lo, double hi)
{
	return !isfinite(v) || v > hi ? hi : v < lo ? lo : v;
}

void outages_update(struct outages *o, double t_mono, double t_real, enum inet_state s,
		    double at_mono)
{
	struct outage *cur = newest(o);

	if (cur && cur->ongoing) {
		/* Ends as soon as the internet is seen up, or can no longer be
		 * seen at all: an unknown stretch is not counted as down. */
		double end = s == INET_UP ? clamp(at_mono, cur->start_mono, t_mono) : t_mono;

		cur->end_mono = end;
		cur->end_real = t_real - (t_mono - end);
		if (s != INET_DOWN) {
			cur->ongoing = false;
			o->done_s += cur->end_mono - cur->start_mono;
		}
	} else if (s == INET_DOWN) {
		double start = clamp(at_mono, cur ? cur->end_mono : -INFINITY, t_mono);
		double start_real = t_real - (t_mono - start);

		o->ring[o->head] = (struct outage){.start_mono = start, .start_real = start_real,
						   .end_mono = t_mono, .end_real = t_real,
						   .ongoing = true};
		o->head = (o->head + 1) % OUTAGES_KEEP;
		if (o->n < OUTAGES_KEEP)
			o->n++;
		o->count++;
	}
	if (s != INET_UNKNOWN)
		o->known = true;
	o->state = s;
}

const struct outage *outages_get(const struct outages *o, unsigned i)
{
	if (i >= o->n)
		return NULL;
	return &o->ring[(o->head + OUTAGES_KEEP - 1 - i) % OUTAGES_KEEP];
}

unsigned outages_since(const struct outages *o, double from_mono, double *seconds)
{
	const struct outage *e;
	unsigned n = 0;
	double s = 0;

	for (unsigned i = 0; (e = outages_get(o, i)); i++) {
		if (e->end_mono <= from_mono && !e->ongoing)
			break; /* newest first: the rest are older still */
		n++;
		s += e->end_mono - (e->start_mono > from_mono ? e->start_mono : from_mono);
	}
	if (seconds)
		*seconds = s;
	return n;
}

double outages_total_s(const struct outages *o)
{
	const struct outage *cur = outages_get(o, 0);

	return o->done_s + (cur && cur->ongoing ? cur->end_mono - cur->start_mono : 0);
}

void outages_render(const struct outages *o, struct mbuf *b)
{
	const struct outage *last = outages_get(o, 0);

	if (!o->known)
		return;
	if (o->state != INET_UNKNOWN) {
		prom_header(b, "ispmon_internet_up", "gauge",
			    "1 while at least one ping target answers, 0 while none does (absent: not known).");
		prom_u64(b, "ispmon_internet_up", NULL, o->state == INET_UP);
	}
	prom_header(b, "ispmon_outages_total", "counter",
		    "Internet outages (every ping target failing) since ispmon started.");
	prom_u64(b, "ispmon_outages_total", NULL, o->count);
	prom_header(b, "ispmon_outage_seconds_total", "counter",
		    "Seconds of internet outage since ispmon started, the ongoing one included.");
	prom_f64(b, "ispmon_outage_seconds_total", NULL, outages_total_s(o));
	if (last) {
		prom_header(b, "ispmon_last_outage_start_seconds", "gauge",
			    "Unix time the last outage started.");
		prom_f64(b, "ispmon_last_outage_start_seconds", NULL, last->start_real);
		prom_header(b, "ispmon_last_outage_duration_seconds", "gauge",
			    "How long the last outage lasted (an ongoing one: so far).");
		prom_f64(b, "ispmon_last_outage_duration_seconds", NULL,
			 last->end_mono - last->start_mono);
	}
}
