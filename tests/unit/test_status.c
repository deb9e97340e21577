/*
 * Unit tests of the status page's modules: the history rings, the outage
 * episodes, the snapshot accessors of devices and ping, the status module
 * end to end through its HTTP provider, and the HTML and JSON renderers on
 * hostile strings and missing figures. Built with ASan/UBSan by `make unit`.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"
#include "devices.h"
#include "history.h"
#include "log.h"
#include "outages.h"
#include "ping.h"
#include "report.h"
#include "status.h"

static const struct history_tier tiers[HISTORY_TIERS] = {{10, 6}, {60, 5}};

static void test_history(void)
{
	struct history_point p[16];
	struct history *h;
	unsigned n, cnt;
	double sum;

	check(history_new(0, tiers, &h) == -EINVAL, "history: no series refused");
	{
		const struct history_tier bad[HISTORY_TIERS] = {{10, 6}, {10, 5}};
		const struct history_tier zero[HISTORY_TIERS] = {{0.5, 6}, {60, 5}};

		check(history_new(2, bad, &h) == -EINVAL, "history: a coarser tier must reach further");
		check(history_new(2, zero, &h) == -EINVAL, "history: steps under 1 s refused");
	}
	check(!history_new(3, tiers, &h), "history: 3 series, 10 s x 6 and 60 s x 5");

	/* Three values in bucket [100, 110), two in [110, 120), NaN ignored. */
	history_add(h, 0, 101, 4);
	history_add(h, 0, 105, 1);
	history_add(h, 0, 109.9, 7);
	history_add(h, 0, 111, 10);
	history_add(h, 0, 112, NAN);
	history_add(h, 0, 113, INFINITY);
	history_add(h, 0, 119, 20);
	history_add(h, 7, 119, 1); /* no such series: ignored */
	n = history_read(h, 0, 0, 0, 119.5, p, 16);
	check(n == 2 && p[0].t == 100 && p[0].n == 3 && p[0].mean == 4 && p[0].min == 1 &&
		      p[0].max == 7 && p[0].sum == 12,
	      "history: a bucket keeps count, mean, min, max and sum (n=%u mean=%g)", n,
	      n ? p[0].mean : NAN);
	check(n == 2 && p[1].t == 110 && p[1].n == 2 && p[1].mean == 15,
	      "history: NaN and infinity are not values");
	n = history_read(h, 0, 1, 0, 119.5, p, 16);
	check(n == 1 && p[0].t == 60 && p[0].n == 5 && p[0].sum == 42,
	      "history: the coarse tier has every value in its minute");
	check(history_read(h, 1, 0, 0, 119.5, p, 16) == 0, "history: an empty series reads empty");

	/* A gap of 3 buckets, then a value: the gap stays empty. */
	history_add(h, 0, 151, 5);
	n = history_read(h, 0, 0, 0, 155, p, 16);
	check(n == 3 && p[2].t == 150 && p[2].mean == 5, "history: a gap reads as missing buckets");
	/* Read only buckets starting after from. */
	n = history_read(h, 0, 0, 105, 155, p, 16);
	check(n == 2 && p[0].t == 110, "history: buckets starting at or before from are left out");
	n = history_read(h, 0, 0, 0, 155, p, 1);
	check(n == 1 && p[0].t == 150, "history: a short output keeps the newest");

	/* 6 points of 10 s: at t = 165 only [110, 160] are in reach, and the
	 * ring slot of 100 (reused by 160) must not read as 100's values. */
	history_add(h, 0, 161, 9);
	n = history_read(h, 0, 0, 0, 165, p, 16);
	check(n == 3 && p[0].t == 110 && p[2].t == 160 && p[2].n == 1 && p[2].mean == 9,
	      "history: the ring keeps the last 6 buckets, a reused slot starts afresh");
	/* Long after: the old buckets are stale, never read as new. */
	n = history_read(h, 0, 0, 1000, 1065, p, 16);
	check(n == 0, "history: after a long gap, nothing old is read as new");
	history_add(h, 0, 1161, 3); /* 1161 = 161 + 100 x 10: the same ring slot as 160 */
	n = history_read(h, 0, 0, 0, 1165, p, 16);
	check(n == 1 && p[0].t == 1160 && p[0].n == 1 && p[0].mean == 3,
	      "history: a bucket of an older slot is reset before it is reused");

	history_add(h, 2, 1161, 2);
	history_add(h, 2, 1162, 3);
	history_add(h, 2, 1171, 4);
	sum = history_sum(h, 2, 0, 1150, 1175, &cnt);
	check(sum == 9 && cnt == 3, "history: sum over a window (%g of %u values)", sum, cnt);
	sum = history_sum(h, 2, 0, 1160, 1175, &cnt);
	check(sum == 4 && cnt == 1, "history: the sum leaves out buckets starting at from");
	history_clear(h, 2);
	check(history_sum(h, 2, 0, 0, 1175, &cnt) == 0 && cnt == 0, "history: clear forgets a series");
	check(history_tier_for(h, 60) == 0 && history_tier_for(h, 61) == 1 &&
		      history_tier_for(h, 1e9) == 1,
	      "history: the finest tier that reaches back far enough");
	check(history_step(h, 1) == 60 && history_reach(h, 0) == 60, "history: step and reach");
	history_free(h);
}

static void test_outages(void)
{
	struct outages o;
	struct mbuf b;
	double secs;

	outages_init(&o);
	mbuf_init(&b);
	outages_render(&o, &b);
	check(b.len == 0, "outages: nothing rendered while nothing is known");
	mbuf_free(&b);
	outages_update(&o, 1, 1001, INET_UNKNOWN, NAN);
	check(!o.known && !o.count, "outages: unknown is not an outage");
	outages_update(&o, 2, 1002, INET_UP, NAN);
	outages_update(&o, 3, 1003, INET_DOWN, NAN);
	outages_update(&o, 4, 1004, INET_DOWN, NAN);
	check(o.count == 1 && outages_get(&o, 0)->ongoing && outages_total_s(&o) == 1,
	      "outages: an ongoing outage counts its time so far");
	outages_update(&o, 6, 1006, INET_UP, NAN);
	check(o.count == 1 && !outages_get(&o, 0)->ongoing && outages_total_s(&o) == 3 &&
		      outages_get(&o, 0)->start_real == 1003 && outages_get(&o, 0)->end_real == 1006,
	      "outages: down at 3, up at 6: one outage of 3 s");
	mbuf_init(&b);
	outages_render(&o, &b);
	check(strstr(b.p, "ispmon_internet_up 1\n") && strstr(b.p, "ispmon_outages_total 1\n") &&
		      strstr(b.p, "ispmon_outage_seconds_total 3\n") &&
		      strstr(b.p, "ispmon_last_outage_start_seconds 1003\n") &&
		      strstr(b.p, "ispmon_last_outage_duration_seconds 3\n") &&
		      strstr(b.p, "# TYPE ispmon_outages_total counter\n"),
	      "outages: metrics");
	mbuf_free(&b);
	/* Down, then unknown (the probes lost every result): ends there. */
	outages_update(&o, 10, 1010, INET_DOWN, NAN);
	outages_update(&o, 12, 1012, INET_UNKNOWN, NAN);
	check(o.count == 2 && !outages_get(&o, 0)->ongoing && outages_total_s(&o) == 5,
	      "outages: an unknown stretch ends an outage, is not counted as down");
	mbuf_init(&b);
	outages_render(&o, &b);
	check(!strstr(b.p, "ispmon_internet_up") && strstr(b.p, "ispmon_outages_total 2\n"),
	      "outages: no internet_up while unknown, the counters stay");
	mbuf_free(&b);
	check(outages_since(&o, 0, &secs) == 2 && secs == 5, "outages: since the start: 2, 5 s");
	check(outages_since(&o, 11, &secs) == 1 && secs == 1,
	      "outages: a window clips an episode that started before it (%g s)", secs);
	check(outages_since(&o, 12, &secs) == 0 && secs == 0, "outages: none in a later window");
	/* The probes' times: down since the last reply (18.4, before the
	 * collection at 20 saw it), up since the first reply again (24.3). */
	outages_update(&o, 20, 1020, INET_DOWN, 18.4);
	outages_update(&o, 22, 1022, INET_DOWN, 18.9);
	outages_update(&o, 26, 1026, INET_UP, 24.3);
	check(o.count == 3 && fabs(outages_get(&o, 0)->start_mono - 18.4) < 1e-9 &&
		      fabs(outages_get(&o, 0)->start_real - 1018.4) < 1e-9 &&
		      fabs(outages_get(&o, 0)->end_real - 1024.3) < 1e-9 &&
		      fabs(outages_total_s(&o) - 10.9) < 1e-9,
	      "outages: from the last reply before to the first reply after (5.9 s)");
	/* Hints out of range: never before the previous outage's end, never
	 * after the collection. */
	outages_update(&o, 30, 1030, INET_DOWN, 10);
	outages_update(&o, 32, 1032, INET_UP, 40);
	check(outages_get(&o, 0)->start_mono == 24.3 && outages_get(&o, 0)->end_mono == 32,
	      "outages: hints are kept between the previous outage and the collection");
	outages_init(&o);
	outages_update(&o, 1, 1001, INET_UP, NAN);
	outages_update(&o, 3, 1003, INET_DOWN, 2);
	outages_update(&o, 5, 1005, INET_UP, 4);
	outages_update(&o, 6, 1006, INET_DOWN, 3); /* a reply older than the last end */
	check(outages_get(&o, 0)->start_mono == 4, "outages: a new outage starts after the last one ended");
	outages_update(&o, 7, 1007, INET_UP, NAN);
	/* More episodes than kept: the counters go on, the oldest are dropped. */
	for (int i = 0; i < OUTAGES_KEEP + 10; i++) {
		outages_update(&o, 100 + 2 * i, 0, INET_DOWN, NAN);
		outages_update(&o, 101 + 2 * i, 0, INET_UP, NAN);
	}
	check(o.count == OUTAGES_KEEP + 12 && o.n == OUTAGES_KEEP && !outages_get(&o, OUTAGES_KEEP) &&
		      outages_get(&o, OUTAGES_KEEP - 1)->start_mono == 100 + 2 * 10 &&
		      outages_get(&o, 1)->end_mono == 101 + 2 * (OUTAGES_KEEP + 8),
	      "outages: the last %d are kept, every one is counted", OUTAGES_KEEP);
}

static void test_devices_snapshot(void)
{
	struct device_snap top[3];
	struct devices *d;
	unsigned n;

	check(!devices_new(4, &d), "devices: a table with a top-4");
	for (int i = 0; i < 5; i++) {
		struct ispmon_dev_key k = {.addr = {2, 0, 0, 0, 0, (uint8_t)(i + 1)}};
		struct ispmon_dev_stats s = {.bytes = {1000000u * (uint64_t)(i == 2 ? 9 : i + 1), 500}};

		devices_ingest(d, &k, &s);
	}
	devices_commit(d, 1);
	n = devices_snapshot(d, top, 3);
	/* Labelled: the 4 largest (9 MB, 5, 4, 2: not 1 MB); the top 3 of them. */
	check(n == 3 && !strcmp(top[0].name, "02:00:00:00:00:03") &&
		      !strcmp(top[1].name, "02:00:00:00:00:05") && !strcmp(top[2].name, "02:00:00:00:00:04") &&
		      top[0].bytes[0] == 9000000 && top[0].bytes[1] == 500,
	      "devices: the snapshot holds the labelled devices with the most traffic, largest first");
	devices_free(d);
}

static void test_ping_snapshot(void)
{
	/* Loopback only: a target that does not answer is the e2e tests' part
	 * (in their own namespaces; nothing leaves this host from here). */
	struct ping_opts o = {.targets = {"127.0.0.1", "::1"}, .n_targets = 2,
			      .interval_ms = 100, .timeout_ms = 200};
	struct ping_target_snap t[PING_MAX_TARGETS];
	struct ping *p;
	unsigned n = 0;

	if (geteuid() != 0 || ping_start(&o, &p)) {
		printf("# skipping the ping snapshot: needs root for the ICMP sockets\n");
		return;
	}
	for (int i = 0; i < 40; i++) {
		struct timespec ts = {0, 50000000};

		nanosleep(&ts, NULL);
		n = ping_snapshot(p, t, PING_MAX_TARGETS);
		if (n == 2 && t[0].received >= 3 && t[1].received >= 3)
			break;
	}
	ping_stop(p);
	check(n == 2 && !strcmp(t[0].host, "127.0.0.1") && t[0].success == 1 && t[0].received >= 3 &&
		      t[0].sent >= t[0].received && isfinite(t[0].median_s) && t[0].median_s < 0.1,
	      "ping: loopback answers in the snapshot (%llu of %llu, median %g s)",
	      n ? (unsigned long long)t[0].received : 0, n ? (unsigned long long)t[0].sent : 0,
	      n ? t[0].median_s : NAN);
	check(n == 2 && !strcmp(t[1].host, "::1") && t[1].success == 1 && t[1].lost == 0 &&
		      t[1].received + 1 >= t[1].sent,
	      "ping: the second target, in order, nothing lost");
}

/* A page through the provider, as the HTTP server asks for it. */
static char *page(struct status *st, const char *url, int *err)
{
	const struct http_provider *pv = status_http_provider(st);
	struct http_page pg = {0};

	*err = pv->get(pv->ctx, url, &pg);
	return *err ? NULL : pg.body;
}

static int write_file(char *path, const char *text)
{
	int fd = mkstemp(path);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;

	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

/* jq (a test dependency) parses json and the filter holds. */
static int jq_ok(const char *json, const char *filter)
{
	char in[] = "/tmp/ispmon-json-XXXXXX", prog[] = "/tmp/ispmon-jq-XXXXXX";
	int rc = -1;

	if (!json || !*json)
		return 0; /* jq -e passes on empty input */
	if (!write_file(in, json) && !write_file(prog, filter)) {
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "jq -e -f %s %s >/dev/null", prog, in);
		rc = system(cmd);
	}
	unlink(in);
	unlink(prog);
	return rc == 0;
}

static void test_status_module(void)
{
	struct report r = {.version = "9.9", .iface = "wan0", .attach_mode = "tc",
			   .interval_s = 1, .start_time = 1800000000, .n_lan = 1,
			   .lan_ifaces = {"lan0"}};
	struct ispmon_dir_stats s[ISPMON_DIR_MAX] = {0};
	struct status *st;
	struct mbuf b;
	char *html, *json, *again;
	int err;

	check(!status_new(&st), "status: new");
	check(!page(st, "/", &err) && err == -ENODATA, "status: no page before the first collection");
	check(!page(st, "/other", &err) && err == -ENOENT, "status: other paths are not served");
	for (int i = 0; i < 30; i++) {
		s[0].bytes += 2500000; /* 20 Mbit/s down */
		s[1].bytes += 125000;
		report_update(&r, s, 1);
		status_collect(st, &r, 1000 + i, 1800000000 + i);
	}
	html = page(st, "/", &err);
	json = page(st, "/api/status", &err);
	check(html && strstr(html, "<!DOCTYPE html>") && strstr(html, "data-collections=\"30\""),
	      "status: the page of collection 30");
	check(html && strstr(html, "data-metric=\"ispmon_passive_throughput_bytes_per_second"
				   "{direction=&quot;download&quot;}\" data-value=\"2500000\""),
	      "status: the throughput figure with its /metrics sample and value");
	check(html && strstr(html, "data-chart=\"c-throughput\" data-points=\"6\""),
	      "status: the throughput chart has its 30 s in 10 s buckets (2 lines x 3)");
	check(html && strstr(html, "data-state=\"unknown\"") && strstr(html, "--no-ping") &&
		      strstr(html, "outages not known"),
	      "status: without ping probes: verdict unknown, outages not known (never \"none\")");
	check(json && jq_ok(json, ".collections == 30 and .throughput_bytes_per_second.download == 2500000 "
				  "and .outages.known == false and .outages.internet_up == null "
				  "and .capacity.bytes_per_second.download == null and .ping.enabled == false"),
	      "status: /api/status is valid JSON with the same figures, unknowns null");
	again = page(st, "/", &err);
	check(html && again && !strcmp(html, again), "status: the same collection gives the same page");
	free(again);
	status_collect(st, &r, 1031, 1800000031);
	again = page(st, "/", &err);
	check(again && strstr(again, "data-collections=\"30\"") && html && strcmp(html, again),
	      "status: a new collection renders anew");
	free(again);
	mbuf_init(&b);
	status_render_metrics(st, &b);
	check(!b.p || !strstr(b.p, "ispmon_outages_total"), "status: no outage metrics without pings");
	mbuf_free(&b);
	free(html);
	free(json);
	status_free(st);
}

/* A snapshot with every string hostile and some figures missing. */
static void test_renderers(void)
{
	static const struct history_tier t[HISTORY_TIERS] = {{10, 360}, {300, 288}};
	static struct status_snapshot s;
	const char *evil = "<script>alert(\"x\")</script>&'";
	struct history *h;
	struct mbuf b;

	memset(&s, 0, sizeof(s));
	check(!history_new(SS_MAX, t, &h), "render: history");
	s.collections = 7;
	s.t_mono = 4000;
	s.start_mono = 400;
	s.t_real = 1800003600;
	s.start_real = 1800000000;
	s.interval_s = 1;
	snprintf(s.version, sizeof(s.version), "%s", evil);
	s.n_ifaces = 2;
	snprintf(s.ifaces[0], IF_NAMESIZE, "w<b>\"'&");
	snprintf(s.ifaces[1], IF_NAMESIZE, "lan\x01\xc3");
	s.have_rate = true;
	s.rate[0] = 1e6;
	s.rate[1] = NAN;
	s.capacity[0] = s.capacity[1] = NAN;
	s.bloat_s = s.idle_rtt_s = s.loaded_rtt_s = NAN;
	s.rtt_on = true;
	s.rtt_s[0] = 0.02;
	s.rtt_s[1] = NAN;
	s.rtt_typical_s[0] = s.rtt_typical_s[1] = NAN;
	s.speed_on = true;
	s.speed.bps[0] = s.speed.bps[1] = s.speed.loaded_rtt_s[0] = s.speed.loaded_rtt_s[1] = NAN;
	s.ping_on = true;
	s.n_targets = 1;
	snprintf(s.targets[0].host, sizeof(s.targets[0].host), "%s", evil);
	s.targets[0].success = 0;
	s.targets[0].median_s = NAN;
	outages_init(&s.outages);
	outages_update(&s.outages, 3000, 1800002600, INET_DOWN, NAN);
	outages_update(&s.outages, 3990, 1800003590, INET_DOWN, NAN);
	s.devices_on = true;
	s.n_devices = 1;
	snprintf(s.dev[0].d.name, sizeof(s.dev[0].d.name), "%s", evil);
	s.dev[0].series = SS_DEV0;
	s.verdict = VERDICT_DOWN;
	snprintf(s.headline, sizeof(s.headline), "Internet down");
	s.n_reasons = 1;
	snprintf(s.reasons[0], sizeof(s.reasons[0]), "None of %s answers.", evil);
	snprintf(s.summary, sizeof(s.summary), "%s", evil);
	/* Every ping of the last bucket lost: the loss axis ends at 100%. */
	history_add(h, SS_PING_RESOLVED, 3995, 4);
	history_add(h, SS_PING_LOST, 3995, 4);
	for (int i = 0; i < 100; i++) {
		history_add(h, SS_DOWN, 3000 + 10 * i, 1e6 + i);
		history_add(h, SS_DEV0, 3000 + 10 * i, 5e5);
		history_add(h, SS_INET_UP, 3000 + 10 * i, 0);
	}

	mbuf_init(&b);
	status_render_html(&s, h, &b);
	check(!b.err && b.p, "render: HTML");
	check(b.p && !strstr(b.p, "<script") && !strstr(b.p, "alert(\"") && !strstr(b.p, "<b>") &&
		      strstr(b.p, "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"),
	      "render: every hostile string is escaped (device, target, version, reasons)");
	check(b.p && strstr(b.p, "w&lt;b&gt;&quot;&#39;&amp;") && strstr(b.p, "lan??"),
	      "render: interface names escaped, control and non-ASCII bytes replaced");
	check(b.p && strstr(b.p, "data-metric=\"ispmon_device_throughput_bytes_per_second{device=&quot;"
				 "&lt;script&gt;"),
	      "render: a device name inside data-metric is escaped too");
	check(b.p && !strstr(b.p, "NaN") && !strstr(b.p, "nan") && !strstr(b.p, "inf\""),
	      "render: no NaN or infinity anywhere in the page");
	check(b.p && strstr(b.p, "data-chart=\"c-throughput\" data-points=\"100\"") &&
		      strstr(b.p, "data-chart=\"c-capacity\" data-points=\"0\"") && strstr(b.p, "No data yet"),
	      "render: the last hour of throughput: 100 buckets of 10 s; an empty chart says so");
	check(b.p && strstr(b.p, "data-chart=\"c-dev0\" data-points=\"100\"") &&
		      strstr(b.p, "class=\"st-down\""),
	      "render: the device's sparkline and the outage strip have their data");
	check(b.p && strstr(b.p, "Content-Security-Policy") && !strstr(b.p, "src=\"http") &&
		      !strstr(b.p, "<script") && strstr(b.p, "href=\"/metrics\"") &&
		      strstr(b.p, "name=\"viewport\"") && strstr(b.p, "http-equiv=\"refresh\""),
	      "render: self-contained, no scripts, links to /metrics, viewport and refresh");
	check(b.p && strstr(b.p, "data-chart=\"c-loss\" data-points=\"1\"") && strstr(b.p, ">100%</text>") &&
		      !strstr(b.p, ">200%</text>") && strstr(b.p, "<rect class=\"k-loss\""),
	      "render: a bucket with every ping lost: a full bar, the axis ends at 100%%");
	check(b.p && strstr(b.p, "<title id=\"c-throughput-t\">Throughput, last 1 h</title>") &&
		      strstr(b.p, "role=\"img\""),
	      "render: charts carry a title for screen readers");
	check(b.p && strstr(b.p, "data-state=\"down\"") && strstr(b.p, "ispmon_last_outage_duration_seconds") &&
		      strstr(b.p, "since "),
	      "render: down, with the ongoing outage listed");
	mbuf_free(&b);

	mbuf_init(&b);
	status_render_json(&s, &b);
	check(!b.err && b.p && jq_ok(b.p, ". != null"), "render: JSON parses (jq)");
	check(b.p && jq_ok(b.p, ".devices.top[0].device == \"<script>alert(\\\"x\\\")</script>&'\" "
				"and .ping.targets[0].target == .devices.top[0].device "
				"and .interfaces.wan == \"w<b>\\\"'&\" and .interfaces.lan[0] == \"lan\\u0001?\""),
	      "render: JSON strings escaped and intact");
	check(b.p && jq_ok(b.p, ".throughput_bytes_per_second.upload == null and .rtt.lan.median_seconds == null "
				"and .capacity.plan_bytes_per_second.download == null "
				"and .speedtest.download == null and .outages.internet_up == false "
				"and .outages.episodes[0].ongoing and .outages.episodes[0].end_seconds == null "
				"and .outages.episodes[0].duration_seconds == 990 and .verdict.state == \"down\""),
	      "render: JSON: unknown numbers are null, the ongoing outage has no end");
	mbuf_free(&b);
	history_free(h);
}

/* A day and more since start: the charts span 24 h in the 5-min tier. */
static void test_day(void)
{
	static const struct history_tier t[HISTORY_TIERS] = {{10, 360}, {300, 288}};
	static struct status_snapshot s;
	/* Now: 200 s into the 5-min bucket [300000, 300300). */
	const double now = 300200, from = now - STATUS_DAY_S;
	char first[32], last[32];
	const char *sp;
	struct history *h;
	struct mbuf b;

	memset(&s, 0, sizeof(s));
	check(!history_new(SS_MAX, t, &h), "day: history");
	s.collections = 90001;
	s.t_mono = now;
	s.start_mono = now - 90000; /* 25 h */
	s.t_real = 1800090000;
	s.start_real = 1800000000;
	s.interval_s = 1;
	s.n_ifaces = 1;
	snprintf(s.ifaces[0], IF_NAMESIZE, "wan0");
	s.have_rate = true;
	s.rate[0] = 2e6;
	s.rate[1] = 1e5;
	s.capacity[0] = s.capacity[1] = NAN;
	s.plan[0] = 6.25e6;
	s.plan[1] = 1.25e6;
	s.bloat_s = s.idle_rtt_s = s.loaded_rtt_s = NAN;
	s.rtt_s[0] = s.rtt_s[1] = s.rtt_typical_s[0] = s.rtt_typical_s[1] = NAN;
	s.speed_on = true;
	s.speed.bps[0] = s.speed.bps[1] = s.speed.loaded_rtt_s[0] = s.speed.loaded_rtt_s[1] = NAN;
	outages_init(&s.outages);
	snprintf(s.headline, sizeof(s.headline), "Status unknown");
	/* Download every minute for 25 h (1e6 + t B/s); a speed test 5 s ago. */
	for (double x = s.start_mono; x <= now; x += 60)
		history_add(h, SS_DOWN, x, 1e6 + x);
	history_add(h, SS_SPEED_DOWN, now - 5, 5e6);
	mbuf_init(&b);
	status_render_html(&s, h, &b);
	check(b.p && strstr(b.p, "data-chart=\"c-throughput\" data-points=\"288\" "
				 "data-lines=\"download:288 upload:0\""),
	      "day: 25 h up, the throughput chart has the 288 buckets of 5 min of the last 24 h");
	check(b.p && strstr(b.p, "<title id=\"c-throughput-t\">Throughput, last 24 h</title>"),
	      "day: the chart says what it spans");
	/* The oldest bucket read starts after from: [213900, 214200), drawn at
	 * its middle; the newest, [300000, now] so far, at the middle of that
	 * (mean of 300020 .. 300200 = 300110; axis top 2 MB/s). */
	snprintf(first, sizeof(first), "d=\"M%.1f ", (214050 - from) / STATUS_DAY_S * 320);
	snprintf(last, sizeof(last), "L%.1f %.1f\"", (300100 - from) / STATUS_DAY_S * 320,
		 84 - 72 * (1e6 + 300110) / 2e6);
	sp = b.p ? strstr(b.p, "<path class=\"ln k-download\" d=\"M") : NULL;
	check(sp && !strncmp(sp + strlen("<path class=\"ln k-download\" "), first, strlen(first)) &&
		      strstr(sp, last) && strstr(sp, last) < strstr(sp, "/>"),
	      "day: the oldest point at the middle of its bucket (%.*s), the newest at the middle of "
	      "its part so far (%.*s)", (int)strlen(first) - 5, first + 4, (int)strlen(last) - 2, last + 1);
	sp = b.p ? strstr(b.p, "data-chart=\"c-speedtest\"") : NULL;
	check(sp && strstr(sp, "data-lines=\"download:1 upload:0\"") &&
		      strstr(sp, "<circle class=\"dt k-download\" cx=\"316.8\""),
	      "day: a speed test in the newest bucket: its dot (r 3.2) wholly inside the chart");
	check(sp && strstr(sp, "<line class=\"ref k-download\"") &&
		      strstr(sp, "<line class=\"ref k-upload\"") &&
		      strstr(sp, "<line class=\"ref k-upload\"") < strstr(sp, "</svg>"),
	      "day: the speed-test chart has both plans");
	mbuf_free(&b);
	history_free(h);
}

static void test_formats(void)
{
	char buf[64];

	status_fmt_rate(buf, sizeof(buf), 2500000);
	check(!strcmp(buf, "20.0 Mbit/s"), "format: 2.5 MB/s is 20.0 Mbit/s (%s)", buf);
	status_fmt_rate(buf, sizeof(buf), 125);
	check(!strcmp(buf, "1.00 kbit/s"), "format: 125 B/s is 1.00 kbit/s (%s)", buf);
	status_fmt_rate(buf, sizeof(buf), NAN);
	check(!strcmp(buf, "-"), "format: an unknown rate is -");
	status_fmt_rtt(buf, sizeof(buf), 0.0201);
	check(!strcmp(buf, "20.1 ms"), "format: 20.1 ms (%s)", buf);
	status_fmt_rtt(buf, sizeof(buf), 0.250);
	check(!strcmp(buf, "250 ms"), "format: 250 ms (%s)", buf);
	status_fmt_duration(buf, sizeof(buf), 200);
	check(!strcmp(buf, "3 min 20 s"), "format: 200 s is 3 min 20 s (%s)", buf);
	status_fmt_duration(buf, sizeof(buf), 7500);
	check(!strcmp(buf, "2 h 5 min"), "format: 7500 s is 2 h 5 min (%s)", buf);
	status_fmt_duration(buf, sizeof(buf), 86400);
	check(!strcmp(buf, "24 h"), "format: a day is 24 h (%s)", buf);
	status_fmt_duration(buf, sizeof(buf), 93600);
	check(!strcmp(buf, "1 d 2 h"), "format: 93600 s is 1 d 2 h (%s)", buf);
	status_fmt_bytes(buf, sizeof(buf), 1234567);
	check(!strcmp(buf, "1.23 MB"), "format: 1.23 MB (%s)", buf);
}

int main(void)
{
	log_set_level(LOG_ERROR);
	setenv("TZ", "UTC", 1);
	test_history();
	test_outages();
	test_devices_snapshot();
	test_ping_snapshot();
	test_status_module();
	test_renderers();
	test_day();
	test_formats();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
