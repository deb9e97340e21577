/*
 * The household status page. Once per collection interval the figures a
 * household asks about (is the internet up, how fast is it, how much
 * latency and whose, outages, who uses the line) are taken from the report
 * into a snapshot, and into a bounded history (user/history.h) for the
 * 24-hour charts. The HTML page (GET /, user/status_html.c) and its JSON
 * twin (GET /api/status, user/status_json.c) are rendered from the snapshot
 * when asked for and cached until the next interval: a request costs a copy,
 * and both carry the collection number, so they can be matched with the
 * /metrics page of the same collection.
 */
#ifndef ISPMON_STATUS_H
#define ISPMON_STATUS_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "devices.h"
#include "flow.h"
#include "history.h"
#include "http.h"
#include "metrics.h"
#include "outages.h"
#include "ping.h"
#include "report.h"
#include "speedtest.h"

#define STATUS_DEVICES 5        /* top devices shown, each with its chart */
#define STATUS_REASONS 8
#define STATUS_LOSS_WINDOW_S 300.0
#define STATUS_DAY_S 86400.0

/* Series of the history (two per device slot: download, upload). */
enum status_series {
	SS_DOWN, SS_UP,             /* throughput, bytes/s */
	SS_CAP_DOWN, SS_CAP_UP,     /* capacity estimate, bytes/s */
	SS_SPEED_DOWN, SS_SPEED_UP, /* speed-test results, bytes/s (one per test) */
	SS_RTT_WAN, SS_RTT_LAN,     /* window median per leg, seconds */
	SS_BLOAT,                   /* latency under load, seconds */
	SS_PING_RESOLVED,           /* pings answered or failed per interval */
	SS_PING_LOST,               /* pings failed per interval */
	SS_INET_UP,                 /* 1 up, 0 down per interval */
	SS_DEV0,
	SS_MAX = SS_DEV0 + 2 * STATUS_DEVICES
};

enum status_verdict { VERDICT_UNKNOWN, VERDICT_OK, VERDICT_DEGRADED, VERDICT_DOWN };

struct status_device {
	struct device_snap d;
	unsigned series; /* its download series; upload is the next */
};

/* Everything the page shows, as of one collection. */
struct status_snapshot {
	uint64_t collections; /* ispmon_collections_total of the same /metrics */
	double t_mono, t_real;
	double start_mono, start_real;
	double interval_s;
	char version[64];
	unsigned n_ifaces; /* [0] WAN, then LAN */
	char ifaces[1 + CONFIG_MAX_LAN][IF_NAMESIZE];

	bool have_rate;
	double rate[ISPMON_DIR_MAX];
	bool capacity_on;
	double capacity[ISPMON_DIR_MAX]; /* NaN: no estimate yet */
	unsigned evidence[ISPMON_DIR_MAX];
	double plan[ISPMON_DIR_MAX];     /* 0: not given */
	double bloat_s, idle_rtt_s, loaded_rtt_s; /* NaN: not known */
	char grade[4];

	bool speed_on;
	struct speedtest_snap speed;

	bool rtt_on;
	double rtt_s[ISPMON_LEG_MAX];         /* window median, NaN: no samples */
	uint64_t rtt_samples[ISPMON_LEG_MAX];
	double rtt_typical_s[ISPMON_LEG_MAX]; /* median of the chart's history */
	double rtt_window_s;

	bool ping_on;
	unsigned n_targets;
	struct ping_target_snap targets[PING_MAX_TARGETS];
	uint64_t lost_5m, resolved_5m; /* over the last STATUS_LOSS_WINDOW_S */

	struct outages outages;

	bool devices_on;
	unsigned n_devices, devices_seen;
	struct status_device dev[STATUS_DEVICES];

	enum status_verdict verdict;
	char headline[48];
	unsigned n_reasons;
	char reasons[STATUS_REASONS][200]; /* why: plain text */
	char summary[256];                 /* the last 24 h in a sentence */
};

struct status;

int status_new(struct status **out);
void status_free(struct status *st);
/* Gather one collection's figures; t_mono CLOCK_MONOTONIC, t_real unix s. */
void status_collect(struct status *st, const struct report *r, double t_mono, double t_real);
/* The families computed here that /metrics shows too: outages and the
 * median RTT per leg. */
void status_render_metrics(struct status *st, struct mbuf *b);
/* "/" (HTML) and "/api/status" (JSON) for the HTTP server. */
const struct http_provider *status_http_provider(struct status *st);

/* Renderers (pure: a snapshot and the history in, text out). */
void status_render_html(const struct status_snapshot *s, const struct history *h,
			struct mbuf *b);
void status_render_json(const struct status_snapshot *s, struct mbuf *b);

/* What the charts cover: the time since start rounded up to 5 min, 10 min,
 * ... 12 h, at most 24 h. */
double status_chart_span(const struct status_snapshot *s);

/* Text helpers shared by the renderers. */
extern const char *const status_verdict_names[4]; /* "unknown", "ok", ... */
/* 12.3 Mbit/s from bytes/s ("-" for NaN). */
void status_fmt_rate(char *buf, size_t len, double bytes_per_s);
/* 20.1 ms, 250 ms, 1.20 s ("-" for NaN). */
void status_fmt_rtt(char *buf, size_t len, double s);
/* 40 s, 3 min 20 s, 2 h 5 min, 24 h, 3 d 2 h. */
void status_fmt_duration(char *buf, size_t len, double s);
/* Local clock time of a unix time: 14:02, or "Mon 14:02" another day
 * than ref's. */
void status_fmt_clock(char *buf, size_t len, double t, double ref);
/* 1.2 GB from bytes. */
void status_fmt_bytes(char *buf, size_t len, double bytes);

#endif
