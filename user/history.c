#include "history.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#define MAX_POINTS 100000

/* 24 bytes: float extremes are plenty for a chart; the sum stays double so
 * counts added as values (ping replies) sum exactly. */
struct bucket {
	double sum;
	float min, max;
	uint32_t n;
	uint32_t slot1; /* slot number + 1 (mod 2^32); 0: never used */
};

struct history {
	unsigned n_series;
	struct history_tier tiers[HISTORY_TIERS];
	struct bucket *b[HISTORY_TIERS]; /* n_series x points each */
};

int history_new(unsigned n_series, const struct history_tier tiers[HISTORY_TIERS],
		struct history **out)
{
	struct history *h;

	if (!n_series || n_series > 1024)
		return -EINVAL;
	for (int i = 0; i < HISTORY_TIERS; i++)
		if (!(tiers[i].step_s >= 1) || !isfinite(tiers[i].step_s) || !tiers[i].points ||
		    tiers[i].points > MAX_POINTS ||
		    (i && tiers[i].step_s * tiers[i].points < tiers[i - 1].step_s * tiers[i - 1].points))
			return -EINVAL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->n_series = n_series;
	for (int i = 0; i < HISTORY_TIERS; i++) {
		h->tiers[i] = tiers[i];
		h->b[i] = calloc((size_t)n_series * tiers[i].points, sizeof(struct bucket));
		if (!h->b[i]) {
			history_free(h);
			return -ENOMEM;
		}
	}
	*out = h;
	return 0;
}

void history_free(struct history *h)
{
	if (!h)
		return;
	for (int i = 0; i < HISTORY_TIERS; i++)
		free(h->b[i]);
	free(h);
}

static uint64_t slot_of(const struct history *h, unsigned tier, double t)
{
	return t > 0 ? (uint64_t)floor(t / h->tiers[tier].step_s) : 0;
}

static struct bucket *bucket_at(const struct history *h, unsigned series, unsigned tier,
				uint64_t slot)
{
	unsigned p = h->tiers[tier].points;

	return &h->b[tier][(size_t)series * p + slot % p];
}

void history_add(struct history *h, unsigned series, double t, double v)
{
	if (series >= h->n_series || !isfinite(v) || !(t >= 0))
		return;
	for (unsigned k = 0; k < HISTORY_TIERS; k++) {
		uint64_t slot = slot_of(h, k, t);
		struct bucket *b = bucket_at(h, series, k, slot);
		uint32_t id = (uint32_t)(slot + 1);

		if (b->slot1 != id || !b->n) {
			/* The bucket still holds an older slot's values. */
			*b = (struct bucket){.slot1 = id, .min = (float)v, .max = (float)v};
		}
		b->sum += v;
		b->n++;
		if ((float)v < b->min)
			b->min = (float)v;
		if ((float)v > b->max)
			b->max = (float)v;
	}
}

void history_clear(struct history *h, unsigned series)
{
	if (series >= h->n_series)
		return;
	for (unsigned k = 0; k < HISTORY_TIERS; k++)
		for (unsigned i = 0; i < h->tiers[k].points; i++)
			h->b[k][(size_t)series * h->tiers[k].points + i] = (struct bucket){0};
}

/* Slots [first, last] of the buckets a read of (from, to] covers. */
static int slot_range(const struct history *h, unsigned tier, double from, double to,
		      uint64_t *first, uint64_t *last)
{
	uint64_t points = h->tiers[tier].points;

	if (!(to >= 0) || !(to >= from))
		return -1;
	*last = slot_of(h, tier, to);
	/* A bucket that starts at or before from is not "after from". */
	*first = from < 0 ? 0 : slot_of(h, tier, from) + 1;
	if (*last + 1 > points && *first < *last + 1 - points)
		*first = *last + 1 - points;
	return *first > *last ? -1 : 0;
}

unsigned history_read(const struct history *h, unsigned series, unsigned tier, double from,
		      double to, struct history_point *out, unsigned max)
{
	uint64_t first, last;
	unsigned n = 0;

	if (series >= h->n_series || tier >= HISTORY_TIERS || !max ||
	    slot_range(h, tier, from, to, &first, &last))
		return 0;
	/* Keep the newest max buckets: start late enough. */
	if (last - first + 1 > max)
		first = last + 1 - max;
	for (uint64_t s = first; s <= last; s++) {
		const struct bucket *b = bucket_at(h, series, tier, s);

		if (b->slot1 != (uint32_t)(s + 1) || !b->n)
			continue;
		out[n] = (struct history_point){
			.t = (double)s * h->tiers[tier].step_s,
			.mean = b->sum / b->n,
			.min = b->min,
			.max = b->max,
			.sum = b->sum,
			.n = b->n,
		};
		n++;
	}
	return n;
}

double history_sum(const struct history *h, unsigned series, unsigned tier, double from,
		   double to, unsigned *n)
{
	uint64_t first, last;
	double sum = 0;
	unsigned cnt = 0;

	if (series < h->n_series && tier < HISTORY_TIERS &&
	    !slot_range(h, tier, from, to, &first, &last))
		for (uint64_t s = first; s <= last; s++) {
			const struct bucket *b = bucket_at(h, series, tier, s);

			if (b->slot1 != (uint32_t)(s + 1))
				continue;
			sum += b->sum;
			cnt += b->n;
		}
	if (n)
		*n = cnt;
	return sum;
}

unsigned history_tier_for(const struct history *h, double span_s)
{
	for (unsigned k = 0; k < HISTORY_TIERS; k++)
		if (history_reach(h, k) >= span_s)
			return k;
	return HISTORY_TIERS - 1;
}

double history_step(const struct history *h, unsigned tier)
{
	return tier < HISTORY_TIERS ? h->tiers[tier].step_s : NAN;
}

double history_reach(const struct history *h, unsigned tier)
{
	return tier < HISTORY_TIERS ? h->tiers[tier].step_s * h->tiers[tier].points : NAN;
}
