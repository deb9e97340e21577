#include "status.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "capacity.h"
#include "rtt.h"

/* 10 s x 360: the last hour; 5 min x 288: the last day. 22 series x 648
 * buckets x 24 bytes: about 340 kB. */
static const struct history_tier tiers[HISTORY_TIERS] = {{10, 360}, {300, 288}};

#define TYPICAL_MIN_POINTS 10   /* history needed before "usually" means anything */
#define RTT_BAD_FACTOR 2.0      /* as the WanRttDegraded/LanLegDegraded alerts */
#define RTT_BAD_MIN_S 0.010     /* ... and at least this much over the usual */
#define LOSS_BAD 0.05           /* as HighPacketLoss */
#define LOSS_MIN_PROBES 50      /* pings resolved before loss can be judged */
#define PLAN_BAD 0.5            /* as SpeedBelowPlan */
#define RECENT_OUTAGE_S 900.0   /* "back since ..." for this long */
#define SCRATCH_POINTS 400      /* >= the buckets of any tier */

const char *const status_verdict_names[4] = {"unknown", "ok", "degraded", "down"};

struct page_cache {
	char *text;
	size_t len;
	uint64_t gen;
};

/* A device's chart: its series stay with it while it is among the top. */
struct dev_slot {
	char name[64];
	bool used;
	uint64_t seen_gen;
};

struct status {
	pthread_mutex_t lock; /* all below: collect (main thread) and pages (http) */
	struct history *h;
	struct status_snapshot snap; /* the current one */
	uint64_t gen;                /* collections gathered */
	struct page_cache html, json;
	struct http_provider provider;

	/* Only the collecting thread: */
	struct status_snapshot next;
	struct outages outages;
	bool have_start;
	double start_mono;
	bool have_ping_prev;
	uint64_t prev_received, prev_lost;
	double prev_speed_t;
	struct dev_slot slots[STATUS_DEVICES];
	struct rtt_hist merged; /* scratch: one leg's window, all methods */
	struct history_point pts[SCRATCH_POINTS];
	double vals[SCRATCH_POINTS];
};

/* ---- text helpers ---- */

/* v in the largest unit of units (steps of 1000) that keeps it under 1000,
 * to 3 significant digits; the base unit as a whole number. */
static void fmt_si(char *buf, size_t len, double v, const char *const *units, unsigned n)
{
	unsigned u = 0;

	if (!isfinite(v) || v < 0) {
		snprintf(buf, len, "-");
		return;
	}
	while (u + 1 < n && v >= 999.5) {
		v /= 1000;
		u++;
	}
	if (!u || v >= 99.95)
		snprintf(buf, len, "%.0f %s", v, units[u]);
	else if (v >= 9.995)
		snprintf(buf, len, "%.1f %s", v, units[u]);
	else
		snprintf(buf, len, "%.2f %s", v, units[u]);
}

void status_fmt_rate(char *buf, size_t len, double Bps)
{
	static const char *const units[] = {"bit/s", "kbit/s", "Mbit/s", "Gbit/s"};

	fmt_si(buf, len, Bps * 8, units, 4);
}

void status_fmt_bytes(char *buf, size_t len, double v)
{
	static const char *const units[] = {"B", "kB", "MB", "GB", "TB"};

	fmt_si(buf, len, v, units, 5);
}

void status_fmt_rtt(char *buf, size_t len, double s)
{
	if (!isfinite(s) || s < 0)
		snprintf(buf, len, "-");
	else if (s < 0.09995)
		snprintf(buf, len, "%.1f ms", s * 1e3);
	else if (s < 0.9995)
		snprintf(buf, len, "%.0f ms", s * 1e3);
	else
		snprintf(buf, len, "%.2f s", s);
}

void status_fmt_duration(char *buf, size_t len, double s)
{
	long v = isfinite(s) && s > 0 ? lround(s) : 0;

	if (v < 60)
		snprintf(buf, len, "%ld s", v);
	else if (v < 3600 && v % 60)
		snprintf(buf, len, "%ld min %ld s", v / 60, v % 60);
	else if (v < 3600)
		snprintf(buf, len, "%ld min", v / 60);
	else if (v < 86400 && v % 3600 / 60)
		snprintf(buf, len, "%ld h %ld min", v / 3600, v % 3600 / 60);
	else if (v <= 86400) /* a day is 24 h to a household */
		snprintf(buf, len, "%ld h", v / 3600);
	else if (v % 86400 / 3600)
		snprintf(buf, len, "%ld d %ld h", v / 86400, v % 86400 / 3600);
	else
		snprintf(buf, len, "%ld d", v / 86400);
}

void status_fmt_clock(char *buf, size_t len, double t, double ref)
{
	time_t a = (time_t)t, b = (time_t)ref;
	struct tm ta, tb;

	if (!isfinite(t) || !localtime_r(&a, &ta) || !localtime_r(&b, &tb)) {
		snprintf(buf, len, "-");
		return;
	}
	if (ta.tm_yday == tb.tm_yday && ta.tm_year == tb.tm_year)
		strftime(buf, len, "%H:%M:%S", &ta);
	else
		strftime(buf, len, "%a %H:%M", &ta);
}

/* ---- gathering ---- */

int status_new(struct status **out)
{
	struct status *st = calloc(1, sizeof(*st));
	int err;

	if (!st)
		return -ENOMEM;
	err = history_new(SS_MAX, tiers, &st->h);
	if (err) {
		free(st);
		return err;
	}
	err = -pthread_mutex_init(&st->lock, NULL);
	if (err) {
		history_free(st->h);
		free(st);
		return err;
	}
	outages_init(&st->outages);
	*out = st;
	return 0;
}

void status_free(struct status *st)
{
	if (!st)
		return;
	pthread_mutex_destroy(&st->lock);
	history_free(st->h);
	free(st->html.text);
	free(st->json.text);
	free(st);
}

/* One leg's median over the RTT window, all methods together. */
static double leg_median(struct status *st, const struct rtt_view *v, unsigned leg, uint64_t *n)
{
	memset(st->merged.b[0], 0, sizeof(st->merged.b[0]));
	*n = 0;
	for (unsigned m = 0; m < ISPMON_M_MAX; m++)
		for (unsigned b = 0; b < ISPMON_RTT_BUCKETS; b++) {
			uint64_t c = v->window.b[leg * ISPMON_M_MAX + m][b];

			st->merged.b[0][b] += c;
			*n += c;
		}
	return rtt_quantile(&st->merged, 0, 0.5);
}

static void gather_ping(struct status_snapshot *n, struct ping *p)
{
	n->ping_on = p != NULL;
	n->n_targets = p ? ping_snapshot(p, n->targets, PING_MAX_TARGETS) : 0;
}

static enum inet_state inet_state(const struct status_snapshot *n)
{
	bool failing = false;

	if (!n->ping_on)
		return INET_UNKNOWN;
	for (unsigned i = 0; i < n->n_targets; i++) {
		if (n->targets[i].success == 1)
			return INET_UP;
		if (n->targets[i].success == 0)
			failing = true;
	}
	return failing ? INET_DOWN : INET_UNKNOWN;
}

/* Round the time since start up to a chart span: 5 min .. 24 h. */
double status_chart_span(const struct status_snapshot *s)
{
	static const double spans[] = {300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200};
	double up = s->t_mono - s->start_mono;

	for (size_t i = 0; i < sizeof(spans) / sizeof(spans[0]); i++)
		if (up <= spans[i])
			return spans[i];
	return STATUS_DAY_S;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* The median of a series' bucket means over the chart's span. */
static double typical(struct status *st, unsigned series, double now, double span)
{
	unsigned tier = history_tier_for(st->h, span);
	unsigned n = history_read(st->h, series, tier, now - span, now, st->pts, SCRATCH_POINTS);
	double *v = st->vals;

	if (n < TYPICAL_MIN_POINTS)
		return NAN;
	for (unsigned i = 0; i < n; i++)
		v[i] = st->pts[i].mean;
	qsort(v, n, sizeof(v[0]), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The top devices keep their chart slots; a newcomer takes the slot of a
 * device no longer among them, and its old history is dropped. */
static void track_devices(struct status *st, struct status_snapshot *n, double t)
{
	uint64_t g = st->gen + 1;
	bool placed[STATUS_DEVICES] = {false};

	for (unsigned i = 0; i < n->n_devices; i++)
		for (unsigned j = 0; j < STATUS_DEVICES; j++)
			if (st->slots[j].used && !strcmp(st->slots[j].name, n->dev[i].d.name)) {
				st->slots[j].seen_gen = g;
				n->dev[i].series = SS_DEV0 + 2 * j;
				placed[i] = true;
				break;
			}
	for (unsigned i = 0; i < n->n_devices; i++) {
		unsigned best = STATUS_DEVICES;

		if (placed[i])
			continue;
		for (unsigned j = 0; j < STATUS_DEVICES; j++) {
			if (st->slots[j].seen_gen == g)
				continue;
			if (best == STATUS_DEVICES || !st->slots[j].used ||
			    (st->slots[best].used && st->slots[j].seen_gen < st->slots[best].seen_gen))
				best = j;
			if (!st->slots[j].used)
				break;
		}
		/* n_devices <= STATUS_DEVICES: there is always one. */
		history_clear(st->h, SS_DEV0 + 2 * best);
		history_clear(st->h, SS_DEV0 + 2 * best + 1);
		snprintf(st->slots[best].name, sizeof(st->slots[best].name), "%s", n->dev[i].d.name);
		st->slots[best].used = true;
		st->slots[best].seen_gen = g;
		n->dev[i].series = SS_DEV0 + 2 * best;
	}
	for (unsigned i = 0; i < n->n_devices; i++) {
		history_add(st->h, n->dev[i].series, t, n->dev[i].d.rate[0]);
		history_add(st->h, n->dev[i].series + 1, t, n->dev[i].d.rate[1]);
	}
}

/* When the internet went down (the last reply from any target) or came back
 * (the first reply again), as the probes tell; NaN: not known. */
static double change_time(const struct status_snapshot *n, enum inet_state inet)
{
	double at = NAN;

	for (unsigned i = 0; i < n->n_targets; i++) {
		const struct ping_target_snap *p = &n->targets[i];

		if (inet == INET_DOWN && p->last_reply > 0 && !(p->last_reply <= at))
			at = p->last_reply;
		if (inet == INET_UP && p->answering_since > 0 && !(p->answering_since >= at))
			at = p->answering_since;
	}
	return at;
}

static void record(struct status *st, struct status_snapshot *n, double t)
{
	uint64_t recv = 0, lost = 0;
	enum inet_state inet = inet_state(n);

	if (n->have_rate) {
		history_add(st->h, SS_DOWN, t, n->rate[0]);
		history_add(st->h, SS_UP, t, n->rate[1]);
	}
	history_add(st->h, SS_CAP_DOWN, t, n->capacity[0]);
	history_add(st->h, SS_CAP_UP, t, n->capacity[1]);
	history_add(st->h, SS_BLOAT, t, n->bloat_s);
	history_add(st->h, SS_RTT_WAN, t, n->rtt_s[ISPMON_LEG_WAN]);
	history_add(st->h, SS_RTT_LAN, t, n->rtt_s[ISPMON_LEG_LAN]);
	/* A new speed-test result: each direction whose figure changed. */
	if (n->speed_on && n->speed.last_success != st->prev_speed_t) {
		for (int d = 0; d < SPEEDTEST_DIRS; d++)
			if (n->speed.have[d] && (!st->snap.speed.have[d] ||
						 n->speed.bps[d] != st->snap.speed.bps[d]))
				history_add(st->h, SS_SPEED_DOWN + d, t, n->speed.bps[d]);
		st->prev_speed_t = n->speed.last_success;
	}
	for (unsigned i = 0; i < n->n_targets; i++) {
		recv += n->targets[i].received;
		lost += n->targets[i].lost;
	}
	if (n->ping_on && st->have_ping_prev && recv >= st->prev_received && lost >= st->prev_lost) {
		history_add(st->h, SS_PING_RESOLVED, t,
			    (double)(recv - st->prev_received + lost - st->prev_lost));
		history_add(st->h, SS_PING_LOST, t, (double)(lost - st->prev_lost));
	}
	st->have_ping_prev = n->ping_on;
	st->prev_received = recv;
	st->prev_lost = lost;
	if (inet != INET_UNKNOWN)
		history_add(st->h, SS_INET_UP, t, inet == INET_UP);
	if (n->ping_on)
		outages_update(&st->outages, t, n->t_real, inet, change_time(n, inet));
	n->outages = st->outages;
	track_devices(st, n, t);
}

static void reason(struct status_snapshot *n, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void reason(struct status_snapshot *n, const char *fmt, ...)
{
	va_list ap;

	if (n->n_reasons >= STATUS_REASONS)
		return;
	va_start(ap, fmt);
	vsnprintf(n->reasons[n->n_reasons++], sizeof(n->reasons[0]), fmt, ap);
	va_end(ap);
}

/* The pings' part of the story: who answers, and the loss. */
static void ping_reasons(struct status_snapshot *n, unsigned answering, unsigned failing)
{
	if (failing) {
		char names[120] = "";
		size_t used = 0;

		for (unsigned i = 0; i < n->n_targets && used < sizeof(names) - 1; i++)
			if (n->targets[i].success == 0)
				used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s",
							 used ? ", " : "", n->targets[i].host);
		reason(n, "%u of %u ping targets answer%s; %s %s not.", answering,
		       answering + failing, answering == 1 ? "s" : "", names,
		       failing == 1 ? "does" : "do");
	} else {
		reason(n, "%s %u ping target%s answer%s.", answering > 1 ? "All" : "The", answering,
		       answering > 1 ? "s" : "", answering > 1 ? "" : "s");
	}
}

static void judge_up(struct status_snapshot *n, unsigned answering, unsigned failing)
{
	static const char *const dir_words[ISPMON_DIR_MAX] = {"Download", "Upload"};
	const struct outage *last = outages_get(&n->outages, 0);
	bool bad = false;
	char a[32], b[32];

	ping_reasons(n, answering, failing);
	if (n->resolved_5m >= LOSS_MIN_PROBES &&
	    (double)n->lost_5m > LOSS_BAD * (double)n->resolved_5m) {
		reason(n, "%.0f%% of pings were lost in the last 5 minutes (%llu of %llu).",
		       100.0 * (double)n->lost_5m / (double)n->resolved_5m,
		       (unsigned long long)n->lost_5m, (unsigned long long)n->resolved_5m);
		bad = true;
	} else if (n->resolved_5m) {
		reason(n, "%llu of %llu pings lost in the last 5 minutes.",
		       (unsigned long long)n->lost_5m, (unsigned long long)n->resolved_5m);
	}
	for (unsigned l = 0; l < ISPMON_LEG_MAX; l++) {
		double now = n->rtt_s[l], usual = n->rtt_typical_s[l];

		if (!isfinite(now) || !isfinite(usual) || now <= RTT_BAD_FACTOR * usual ||
		    now - usual < RTT_BAD_MIN_S)
			continue;
		status_fmt_rtt(a, sizeof(a), now);
		status_fmt_rtt(b, sizeof(b), usual);
		if (l == ISPMON_LEG_WAN)
			reason(n, "Round trips to the internet take %s, usually %s: the delay is on the "
				  "ISP's side.", a, b);
		else
			reason(n, "Round trips inside the home take %s, usually %s: Wi-Fi or the home "
				  "network is slow.", a, b);
		bad = true;
	}
	if (n->grade[0] == 'D' || n->grade[0] == 'F') {
		status_fmt_rtt(a, sizeof(a), n->bloat_s);
		reason(n, "Latency under load grade %s: a busy line adds %s to every round trip.",
		       n->grade, a);
		bad = true;
	}
	for (int d = 0; d < ISPMON_DIR_MAX; d++) {
		double best = n->capacity[d];

		if (n->speed.have[d] && (!isfinite(best) || n->speed.bps[d] > best))
			best = n->speed.bps[d];
		if (!(n->plan[d] > 0) || !isfinite(best) || best >= PLAN_BAD * n->plan[d])
			continue;
		status_fmt_rate(a, sizeof(a), best);
		status_fmt_rate(b, sizeof(b), n->plan[d]);
		reason(n, "%s reaches %s, under half the %s plan.", dir_words[d], a, b);
		bad = true;
	}
	if (last && !last->ongoing && n->t_mono - last->end_mono <= RECENT_OUTAGE_S) {
		status_fmt_clock(a, sizeof(a), last->end_real, n->t_real);
		status_fmt_duration(b, sizeof(b), last->end_mono - last->start_mono);
		reason(n, "Back since %s after a %s outage.", a, b);
		bad = true;
	}
	n->verdict = bad ? VERDICT_DEGRADED : VERDICT_OK;
	snprintf(n->headline, sizeof(n->headline), bad ? "Internet degraded" : "Internet OK");
}

static void judge(struct status_snapshot *n)
{
	unsigned answering = 0, failing = 0;
	const struct outage *cur = outages_get(&n->outages, 0);
	char a[32], b[32];

	n->n_reasons = 0;
	for (unsigned i = 0; i < n->n_targets; i++) {
		answering += n->targets[i].success == 1;
		failing += n->targets[i].success == 0;
	}
	if (!n->ping_on) {
		n->verdict = VERDICT_UNKNOWN;
		snprintf(n->headline, sizeof(n->headline), "Status unknown");
		reason(n, "Ping probes are off (--no-ping): ispmon cannot tell whether the internet "
			  "answers.");
	} else if (!answering && !failing) {
		n->verdict = VERDICT_UNKNOWN;
		snprintf(n->headline, sizeof(n->headline), "Checking");
		reason(n, "Waiting for the first answers to ispmon's pings.");
	} else if (!answering) {
		n->verdict = VERDICT_DOWN;
		snprintf(n->headline, sizeof(n->headline), "Internet down");
		if (cur && cur->ongoing) {
			status_fmt_duration(a, sizeof(a), cur->end_mono - cur->start_mono);
			status_fmt_clock(b, sizeof(b), cur->start_real, n->t_real);
			reason(n, "None of the %u ping targets answers, for %s now (since %s).", failing,
			       a, b);
		} else {
			reason(n, "None of the %u ping targets answers.", failing);
		}
	} else {
		judge_up(n, answering, failing);
	}
}

static void summarize(struct status_snapshot *n)
{
	double up = n->t_mono - n->start_mono, secs, from;
	const struct outage *last;
	char when[64], a[32], b[32], c[32];
	unsigned cnt;

	status_fmt_duration(a, sizeof(a), up);
	if (up >= STATUS_DAY_S)
		snprintf(when, sizeof(when), "Last 24 h");
	else
		snprintf(when, sizeof(when), "Since ispmon started %s ago", a);
	if (!n->outages.known) {
		snprintf(n->summary, sizeof(n->summary), "%s: outages not known (%s).", when,
			 n->ping_on ? "no ping answers or failures yet" : "no ping probes");
		return;
	}
	from = n->t_mono - STATUS_DAY_S;
	cnt = outages_since(&n->outages, from, &secs);
	last = outages_get(&n->outages, 0);
	if (!cnt || !last) {
		snprintf(n->summary, sizeof(n->summary), "%s: no outages.", when);
		return;
	}
	status_fmt_duration(a, sizeof(a), secs);
	status_fmt_clock(b, sizeof(b), last->start_real, n->t_real);
	status_fmt_duration(c, sizeof(c), last->end_mono - last->start_mono);
	snprintf(n->summary, sizeof(n->summary), "%s: %u outage%s, %s in all; the last at %s, %s%s.",
		 when, cnt, cnt == 1 ? "" : "s", a, b, c, last->ongoing ? " so far" : "");
}

void status_collect(struct status *st, const struct report *r, double t, double t_real)
{
	struct status_snapshot *n = &st->next;
	double span;

	memset(n, 0, sizeof(*n));
	if (!st->have_start) {
		st->start_mono = t - (t_real - r->start_time);
		st->have_start = true;
	}
	n->collections = r->collections;
	n->t_mono = t;
	n->t_real = t_real;
	n->start_mono = st->start_mono;
	n->start_real = r->start_time;
	n->interval_s = r->interval_s;
	snprintf(n->version, sizeof(n->version), "%s", r->version ? r->version : "");
	snprintf(n->ifaces[n->n_ifaces++], IF_NAMESIZE, "%s", r->iface ? r->iface : "");
	for (unsigned i = 0; i < r->n_lan && i < CONFIG_MAX_LAN; i++)
		snprintf(n->ifaces[n->n_ifaces++], IF_NAMESIZE, "%s", r->lan_ifaces[i]);

	n->have_rate = r->have_rate;
	for (int d = 0; d < ISPMON_DIR_MAX; d++) {
		n->rate[d] = r->have_rate ? r->rate_Bps[d] : NAN;
		n->plan[d] = r->plan_Bps[d];
		n->capacity[d] = NAN;
	}
	n->bloat_s = n->idle_rtt_s = n->loaded_rtt_s = NAN;
	n->capacity_on = r->capacity != NULL;
	if (r->capacity) {
		for (int d = 0; d < ISPMON_DIR_MAX; d++)
			n->capacity[d] = capacity_estimate(r->capacity, d, &n->evidence[d]);
		n->bloat_s = capacity_bufferbloat(r->capacity, &n->idle_rtt_s, &n->loaded_rtt_s);
		snprintf(n->grade, sizeof(n->grade), "%s", capacity_grade(n->bloat_s));
	}
	n->speed_on = r->speed != NULL;
	if (r->speed)
		speedtest_snapshot(r->speed, &n->speed);
	else
		for (int d = 0; d < SPEEDTEST_DIRS; d++)
			n->speed.bps[d] = n->speed.loaded_rtt_s[d] = NAN;
	n->rtt_on = r->rtt != NULL;
	for (unsigned l = 0; l < ISPMON_LEG_MAX; l++)
		n->rtt_s[l] = r->rtt ? leg_median(st, r->rtt, l, &n->rtt_samples[l]) : NAN;
	n->rtt_window_s = r->rtt ? r->rtt->window_s : 0;
	gather_ping(n, r->ping);
	n->devices_on = r->devices != NULL;
	if (r->devices) {
		struct device_snap top[STATUS_DEVICES];

		n->n_devices = devices_snapshot(r->devices, top, STATUS_DEVICES);
		for (unsigned i = 0; i < n->n_devices; i++)
			n->dev[i].d = top[i];
		n->devices_seen = devices_count(r->devices);
	}

	pthread_mutex_lock(&st->lock);
	record(st, n, t);
	n->lost_5m = (uint64_t)history_sum(st->h, SS_PING_LOST, 0, t - STATUS_LOSS_WINDOW_S, t, NULL);
	n->resolved_5m =
		(uint64_t)history_sum(st->h, SS_PING_RESOLVED, 0, t - STATUS_LOSS_WINDOW_S, t, NULL);
	span = status_chart_span(n);
	n->rtt_typical_s[ISPMON_LEG_WAN] = typical(st, SS_RTT_WAN, t, span);
	n->rtt_typical_s[ISPMON_LEG_LAN] = typical(st, SS_RTT_LAN, t, span);
	judge(n);
	summarize(n);
	st->snap = *n;
	st->gen++;
	pthread_mutex_unlock(&st->lock);
}

void status_render_metrics(struct status *st, struct mbuf *b)
{
	pthread_mutex_lock(&st->lock);
	if (st->gen && st->snap.rtt_on) {
		char labels[32];

		prom_header(b, "ispmon_passive_rtt_median_seconds", "gauge",
			    "Median passive RTT of a leg over the quantile window, all methods together "
			    "(absent without samples).");
		for (unsigned l = 0; l < ISPMON_LEG_MAX; l++) {
			if (!isfinite(st->snap.rtt_s[l]))
				continue;
			snprintf(labels, sizeof(labels), "leg=\"%s\"", rtt_leg_names[l]);
			prom_f64(b, "ispmon_passive_rtt_median_seconds", labels, st->snap.rtt_s[l]);
		}
	}
	outages_render(&st->outages, b);
	pthread_mutex_unlock(&st->lock);
}

/* ---- pages ---- */

static int get_page(void *ctx, const char *url, struct http_page *page)
{
	struct status *st = ctx;
	bool html = !strcmp(url, "/");
	struct page_cache *c = html ? &st->html : &st->json;
	int err = 0;

	if (!html && strcmp(url, "/api/status"))
		return -ENOENT;
	pthread_mutex_lock(&st->lock);
	if (!st->gen) {
		err = -ENODATA;
	} else if (c->gen != st->gen || !c->text) {
		struct mbuf b;

		mbuf_init(&b);
		if (html)
			status_render_html(&st->snap, st->h, &b);
		else
			status_render_json(&st->snap, &b);
		if (b.err || !b.p) {
			err = b.err ? b.err : -ENOMEM;
			mbuf_free(&b);
		} else {
			free(c->text);
			c->text = b.p;
			c->len = b.len;
			c->gen = st->gen;
		}
	}
	if (!err) {
		page->body = malloc(c->len + 1);
		if (page->body) {
			memcpy(page->body, c->text, c->len + 1);
			page->len = c->len;
			page->type = html ? "text/html; charset=utf-8" : "application/json";
		} else {
			err = -ENOMEM;
		}
	}
	pthread_mutex_unlock(&st->lock);
	return err;
}

const struct http_provider *status_http_provider(struct status *st)
{
	st->provider = (struct http_provider){.get = get_page, .ctx = st};
	return &st->provider;
}
