/*
 * The status page's figures as JSON (GET /api/status), for scripts: the
 * same snapshot as the HTML page, names after the /metrics families where
 * there is one. Numbers that are not known are null, never NaN.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "rtt.h"
#include "status.h"

static const char *const dir_names[ISPMON_DIR_MAX] = {"download", "upload"};

/* A writer that puts the commas between members and elements. */
struct jw {
	struct mbuf *b;
	bool comma;
};

static void jstr(struct mbuf *b, const char *s)
{
	const char *run = s;

	mbuf_printf(b, "\"");
	for (;; s++) {
		unsigned char c = (unsigned char)*s;

		if (c && c != '"' && c != '\\' && c >= 0x20 && c < 0x7f)
			continue;
		if (s > run)
			mbuf_printf(b, "%.*s", (int)(s - run), run);
		if (!c)
			break;
		if (c == '"' || c == '\\')
			mbuf_printf(b, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			mbuf_printf(b, "\\u%04x", c);
		else
			mbuf_printf(b, "?"); /* not ASCII: nothing shown is (see status_html.c) */
		run = s + 1;
	}
	mbuf_printf(b, "\"");
}

/* The next member's "key": (k NULL: the next array element). */
static void key(struct jw *w, const char *k)
{
	if (w->comma)
		mbuf_printf(w->b, ",");
	w->comma = true;
	if (k)
		mbuf_printf(w->b, "\"%s\":", k);
}

static void jopen(struct jw *w, const char *k, char c)
{
	key(w, k);
	mbuf_printf(w->b, "%c", c);
	w->comma = false;
}

static void jclose(struct jw *w, char c)
{
	mbuf_printf(w->b, "%c", c);
	w->comma = true;
}

static void num(struct jw *w, const char *k, double v)
{
	key(w, k);
	if (isfinite(v))
		mbuf_printf(w->b, "%.17g", v);
	else
		mbuf_printf(w->b, "null");
}

static void u64(struct jw *w, const char *k, uint64_t v)
{
	key(w, k);
	mbuf_printf(w->b, "%llu", (unsigned long long)v);
}

/* true, false, or null for "not known" (< 0). */
static void tri(struct jw *w, const char *k, int v)
{
	key(w, k);
	mbuf_printf(w->b, v < 0 ? "null" : v ? "true" : "false");
}

static void text(struct jw *w, const char *k, const char *v)
{
	key(w, k);
	if (v)
		jstr(w->b, v);
	else
		mbuf_printf(w->b, "null");
}

static void per_dir(struct jw *w, const char *k, const double v[ISPMON_DIR_MAX])
{
	jopen(w, k, '{');
	for (int d = 0; d < ISPMON_DIR_MAX; d++)
		num(w, dir_names[d], v[d]);
	jclose(w, '}');
}

static void speedtest(struct jw *w, const struct status_snapshot *s)
{
	const struct speedtest_snap *sp = &s->speed;

	jopen(w, "speedtest", '{');
	tri(w, "enabled", s->speed_on);
	tri(w, "running", sp->running);
	num(w, "timestamp_seconds", sp->last_success > 0 ? sp->last_success : NAN);
	for (int d = 0; d < SPEEDTEST_DIRS; d++) {
		if (!sp->have[d]) {
			text(w, dir_names[d], NULL);
			continue;
		}
		jopen(w, dir_names[d], '{');
		num(w, "bytes_per_second", sp->bps[d]);
		text(w, "server", sp->server[d]);
		num(w, "loaded_rtt_seconds", sp->loaded_rtt_s[d]);
		jclose(w, '}');
	}
	jclose(w, '}');
}

static void ping(struct jw *w, const struct status_snapshot *s)
{
	jopen(w, "ping", '{');
	tri(w, "enabled", s->ping_on);
	num(w, "window_seconds", STATUS_LOSS_WINDOW_S);
	u64(w, "lost", s->lost_5m);
	u64(w, "resolved", s->resolved_5m);
	num(w, "loss_ratio", s->resolved_5m ? (double)s->lost_5m / (double)s->resolved_5m : NAN);
	jopen(w, "targets", '[');
	for (unsigned i = 0; i < s->n_targets; i++) {
		const struct ping_target_snap *t = &s->targets[i];

		jopen(w, NULL, '{');
		text(w, "target", t->host);
		key(w, "success");
		mbuf_printf(w->b, t->success < 0 ? "null" : "%d", t->success);
		num(w, "rtt_median_seconds", t->median_s);
		u64(w, "sent", t->sent);
		u64(w, "received", t->received);
		u64(w, "lost", t->lost);
		jclose(w, '}');
	}
	jclose(w, ']');
	jclose(w, '}');
}

static void outages(struct jw *w, const struct status_snapshot *s)
{
	const struct outages *o = &s->outages;
	double day_s = 0;
	unsigned day_n = outages_since(o, s->t_mono - STATUS_DAY_S, &day_s);

	jopen(w, "outages", '{');
	tri(w, "known", o->known);
	tri(w, "internet_up", o->state == INET_UNKNOWN ? -1 : o->state == INET_UP);
	if (o->known) {
		u64(w, "total", o->count);
		num(w, "seconds_total", outages_total_s(o));
		u64(w, "last_24h", day_n);
		num(w, "seconds_last_24h", day_s);
		jopen(w, "episodes", '[');
		for (unsigned i = 0; i < OUTAGES_KEEP && outages_get(o, i); i++) {
			const struct outage *e = outages_get(o, i);

			jopen(w, NULL, '{');
			num(w, "start_seconds", e->start_real);
			num(w, "end_seconds", e->ongoing ? NAN : e->end_real);
			num(w, "duration_seconds", e->end_mono - e->start_mono);
			tri(w, "ongoing", e->ongoing);
			jclose(w, '}');
		}
		jclose(w, ']');
	}
	jclose(w, '}');
}

static void devices(struct jw *w, const struct status_snapshot *s)
{
	jopen(w, "devices", '{');
	tri(w, "enabled", s->devices_on);
	u64(w, "seen", s->devices_seen);
	jopen(w, "top", '[');
	for (unsigned i = 0; i < s->n_devices; i++) {
		const struct device_snap *d = &s->dev[i].d;
		double bytes[ISPMON_DIR_MAX] = {(double)d->bytes[0], (double)d->bytes[1]};

		jopen(w, NULL, '{');
		text(w, "device", d->name);
		per_dir(w, "throughput_bytes_per_second", d->rate);
		per_dir(w, "bytes_total", bytes);
		jclose(w, '}');
	}
	jclose(w, ']');
	jclose(w, '}');
}

void status_render_json(const struct status_snapshot *s, struct mbuf *b)
{
	struct jw w = {.b = b};
	double plan[ISPMON_DIR_MAX];

	jopen(&w, NULL, '{');
	text(&w, "version", s->version);
	u64(&w, "collections", s->collections);
	num(&w, "time_seconds", s->t_real);
	num(&w, "start_time_seconds", s->start_real);
	num(&w, "interval_seconds", s->interval_s);
	jopen(&w, "interfaces", '{');
	text(&w, "wan", s->ifaces[0]);
	jopen(&w, "lan", '[');
	for (unsigned i = 1; i < s->n_ifaces; i++)
		text(&w, NULL, s->ifaces[i]);
	jclose(&w, ']');
	jclose(&w, '}');

	jopen(&w, "verdict", '{');
	text(&w, "state", status_verdict_names[s->verdict]);
	text(&w, "headline", s->headline);
	jopen(&w, "reasons", '[');
	for (unsigned i = 0; i < s->n_reasons; i++)
		text(&w, NULL, s->reasons[i]);
	jclose(&w, ']');
	text(&w, "summary", s->summary);
	jclose(&w, '}');

	per_dir(&w, "throughput_bytes_per_second", s->rate);
	jopen(&w, "capacity", '{');
	per_dir(&w, "bytes_per_second", s->capacity);
	for (int d = 0; d < ISPMON_DIR_MAX; d++)
		plan[d] = s->plan[d] > 0 ? s->plan[d] : NAN;
	per_dir(&w, "plan_bytes_per_second", plan);
	jopen(&w, "saturated_intervals", '{');
	for (int d = 0; d < ISPMON_DIR_MAX; d++)
		u64(&w, dir_names[d], s->evidence[d]);
	jclose(&w, '}');
	jclose(&w, '}');

	speedtest(&w, s);

	jopen(&w, "rtt", '{');
	num(&w, "window_seconds", s->rtt_on ? s->rtt_window_s : NAN);
	for (unsigned l = 0; l < ISPMON_LEG_MAX; l++) {
		jopen(&w, rtt_leg_names[l], '{');
		num(&w, "median_seconds", s->rtt_s[l]);
		u64(&w, "samples", s->rtt_samples[l]);
		num(&w, "typical_seconds", s->rtt_typical_s[l]);
		jclose(&w, '}');
	}
	jclose(&w, '}');

	jopen(&w, "bufferbloat", '{');
	num(&w, "seconds", s->bloat_s);
	text(&w, "grade", s->grade[0] ? s->grade : NULL);
	num(&w, "idle_rtt_seconds", s->idle_rtt_s);
	num(&w, "loaded_rtt_seconds", s->loaded_rtt_s);
	jclose(&w, '}');

	ping(&w, s);
	outages(&w, s);
	devices(&w, s);
	jclose(&w, '}');
	mbuf_printf(b, "\n");
}
