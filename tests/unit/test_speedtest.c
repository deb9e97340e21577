/*
 * Unit tests of the speed test's logic that needs no network: byte sizes,
 * server labels, URL templates, failure reasons, the meter (ramp exclusion,
 * stability, stop rule), the daily budget and its reset at local midnight,
 * schedule jitter, configuration checks, and the run paths that end before
 * any connection (busy line, fresh capacity, budget, restored state).
 * Built with ASan/UBSan: make -C tests/tools unit-speedtest.
 */
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"
#include "log.h"
#include "metrics.h"
#include "speedtest.h"


static void test_parse_bytes(void)
{
	static const struct {
		const char *in;
		int ok;
		uint64_t v;
	} cases[] = {
		{"0", 1, 0},
		{"1000", 1, 1000},
		{"100M", 1, 100000000},
		{"100MB", 1, 100000000},
		{"1.5G", 1, 1500000000},
		{"1GiB", 1, 1073741824},
		{"64KiB", 1, 65536},
		{"64k", 1, 64000},
		{"2T", 1, 2000000000000ULL},
		{"10B", 1, 10},
		{"", 0, 0},
		{"M", 0, 0},
		{"-1", 0, 0},
		{"1.", 0, 0},
		{".5G", 0, 0},
		{"1X", 0, 0},
		{"1 M", 0, 0},
		{"1Mx", 0, 0},
		{"0x10", 0, 0},
		{"1e3", 0, 0},
		{"20000000T", 0, 0}, /* above 2^64 */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 12345;
		int err = speedtest_parse_bytes(cases[i].in, &v);

		check(cases[i].ok ? (!err && v == cases[i].v) : err == -EINVAL,
		      "bytes '%s' -> %s (got err %d, %llu)", cases[i].in,
		      cases[i].ok ? "value" : "rejected", err, (unsigned long long)v);
	}
}

static void test_url_label(void)
{
	static const struct {
		const char *url, *label;
		unsigned port;
	} cases[] = {
		{"http://203.0.113.10:8080/bytes/{bytes}", "203.0.113.10:8080", 8080},
		{"https://speed.cloudflare.com/__down?bytes={bytes}", "speed.cloudflare.com", 443},
		{"HTTPS://Speed.Example.NET:443/x", "speed.example.net", 443},
		{"http://example.com:80", "example.com", 80},
		{"http://example.com:/x", "example.com", 80},
		{"https://example.com:80/x", "example.com:80", 80},
		{"http://user:secret@example.com:8080/x", "example.com:8080", 8080},
		{"http://[2001:db8:3::10]:8080/bytes/1", "[2001:db8:3::10]:8080", 8080},
		{"https://[2001:DB8::1]/", "[2001:db8::1]", 443},
		{"http://a.b?x=1", "a.b", 80},
		{"http://a.b#frag", "a.b", 80},
		{"http://under_score.example/", "under_score.example", 80},
		/* rejected */
		{"ftp://example.com/", NULL, 0},
		{"example.com/x", NULL, 0},
		{"http:///x", NULL, 0},
		{"http://:8080/x", NULL, 0},
		{"http://example.com:0/", NULL, 0},
		{"http://example.com:65536/", NULL, 0},
		{"http://example.com:8o/", NULL, 0},
		{"http://exa mple.com/", NULL, 0},
		{"http://exa\"mple.com/", NULL, 0},
		{"http://[2001:db8::1/", NULL, 0},
		{"http://[]/", NULL, 0},
		{"http://[2001:db8::g]/", NULL, 0},
		{"http://[::1]x/", NULL, 0},
		{NULL, NULL, 0},
	};
	char longurl[300];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char label[SPEEDTEST_LABEL_MAX] = "";
		unsigned port = 0;
		int err = speedtest_url_label(cases[i].url, label, sizeof(label), &port);

		if (cases[i].label)
			check(!err && !strcmp(label, cases[i].label) && port == cases[i].port,
			      "label of '%s' = '%s' port %u (got '%s' %u, err %d)", cases[i].url,
			      cases[i].label, cases[i].port, label, port, err);
		else
			check(err == -EINVAL, "label of '%s' rejected (err %d)",
			      cases[i].url ? cases[i].url : "(null)", err);
	}
	memset(longurl, 0, sizeof(longurl));
	memcpy(longurl, "http://", 7);
	memset(longurl + 7, 'a', 100);
	check(speedtest_url_label(longurl, (char[SPEEDTEST_LABEL_MAX]){0}, SPEEDTEST_LABEL_MAX,
				  NULL) == -EINVAL,
	      "a 100-character host is rejected (label stays bounded)");
	{
		char small[8];

		check(speedtest_url_label("http://example.com/", small, sizeof(small), NULL) == -EINVAL,
		      "label longer than the buffer is rejected");
	}
}

static void test_url_expand(void)
{
	char out[64];
	int n;

	n = speedtest_url_expand("http://h/bytes/{bytes}", 25000000, out, sizeof(out));
	check(n == 1 && !strcmp(out, "http://h/bytes/25000000"), "expand {bytes}: '%s' (%d)", out, n);
	n = speedtest_url_expand("http://h/f.bin", 5, out, sizeof(out));
	check(n == 0 && !strcmp(out, "http://h/f.bin"), "no {bytes}: copied unchanged (%d)", n);
	n = speedtest_url_expand("{bytes}-{bytes}{byte}", 7, out, sizeof(out));
	check(n == 2 && !strcmp(out, "7-7{byte}"), "two {bytes}, '{byte}' kept: '%s'", out);
	n = speedtest_url_expand("http://h/{bytes}", 123456789, out, 12);
	check(n == -ENOSPC, "too small a buffer: -ENOSPC (%d)", n);
	n = speedtest_url_expand("", 1, out, 1);
	check(n == 0 && !out[0], "empty template into a 1-byte buffer");
}

static void test_reasons(void)
{
	static const struct {
		int code;
		long http;
		int connected;
		const char *want;
	} cases[] = {
		{CURLE_OK, 200, 1, ""},
		{CURLE_OK, 206, 1, ""},
		{CURLE_OK, 404, 1, "http_4xx"},
		{CURLE_OK, 413, 1, "http_4xx"},
		{CURLE_OK, 500, 1, "http_5xx"},
		{CURLE_OK, 503, 1, "http_5xx"},
		{CURLE_OK, 302, 1, "http_other"},
		{CURLE_OK, 0, 1, "http_other"},
		{CURLE_COULDNT_RESOLVE_HOST, 0, 0, "dns"},
		{CURLE_COULDNT_CONNECT, 0, 0, "connect"},
		{CURLE_OPERATION_TIMEDOUT, 0, 0, "connect"},
		{CURLE_OPERATION_TIMEDOUT, 0, 1, "timeout"},
		{CURLE_SSL_CONNECT_ERROR, 0, 0, "tls"},
		{CURLE_PEER_FAILED_VERIFICATION, 0, 0, "tls"},
		{CURLE_TOO_MANY_REDIRECTS, 302, 1, "redirect"},
		{CURLE_FILESIZE_EXCEEDED, 200, 1, "oversize"},
		{CURLE_RECV_ERROR, 0, 1, "closed"},
		{CURLE_SEND_ERROR, 0, 1, "closed"},
		{CURLE_GOT_NOTHING, 0, 1, "closed"},
		{CURLE_PARTIAL_FILE, 200, 1, "closed"},
		{CURLE_WEIRD_SERVER_REPLY, 0, 1, "protocol"},
		{CURLE_UNSUPPORTED_PROTOCOL, 0, 0, "bad_url"},
		{CURLE_OUT_OF_MEMORY, 0, 0, "other"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *r = speedtest_reason(cases[i].code, cases[i].http, cases[i].connected);

		check(!strcmp(r, cases[i].want), "curl %d http %ld%s -> '%s' (got '%s')",
		      cases[i].code, cases[i].http, cases[i].connected ? " connected" : "",
		      cases[i].want, r);
	}
}

/* Feed a meter samples every W s from t = 0 with rate(t) bytes/s; returns
 * the time of the sample that made it stop, or -1. */
static double feed(struct speedtest_meter *m, double until, double (*rate)(double t, void *arg),
		   void *arg)
{
	const double w = SPEEDTEST_WINDOW_S;
	double b = 0;

	if (speedtest_meter_add(m, 0, 0))
		return 0;
	for (double t = w; t <= until + 1e-9; t += w) {
		b += rate(t - w / 2, arg) * w;
		if (speedtest_meter_add(m, t, (uint64_t)llround(b)))
			return t;
	}
	return -1;
}

static void meter_defaults(struct speedtest_meter *m, double grace)
{
	speedtest_meter_init(m, grace, SPEEDTEST_WINDOW_S, SPEEDTEST_STABLE_WINDOWS,
			     SPEEDTEST_STABLE_TOL, SPEEDTEST_MIN_MEASURE_S);
}

static double rate_flat(double t, void *arg)
{
	(void)t;
	return *(double *)arg;
}

/* Slow start: doubling every 0.3 s from 50 kB/s up to 2.5 MB/s (at 1.69 s). */
static double rate_slowstart(double t, void *arg)
{
	double r = 50e3 * pow(2, t / 0.3), top = *(double *)arg;

	return r < top ? r : top;
}

/* +-20% every other window: never stable. */
static double rate_noisy(double t, void *arg)
{
	return *(double *)arg * (((int)floor(t / SPEEDTEST_WINDOW_S)) % 2 ? 1.2 : 0.8);
}

/* A step: `low` until 1.25 s, then 2 x low. */
static double rate_step(double t, void *arg)
{
	return *(double *)arg * (t < 1.25 ? 1 : 2);
}

static void test_meter(void)
{
	static struct speedtest_meter m; /* 16 KiB: not on the stack */
	double top = 2.5e6, bps = 0, from = 0, to = 0, stop;
	int err;

	/* A flat rate: the grace period alone is the ramp; the first stable
	 * run starts at grace, the stop comes SPEEDTEST_MIN_MEASURE_S later. */
	meter_defaults(&m, 1.0);
	stop = feed(&m, 10, rate_flat, &top);
	err = speedtest_meter_result(&m, &bps, &from, &to);
	check(fabs(stop - 2.0) < 1e-9 && m.stable && !err && fabs(from - 1.0) < 1e-9 &&
		      fabs(bps - top) < 1,
	      "flat 2.5 MB/s: stops at %.2f s (want 2.00), measured %.2f..%.2f s, %.0f B/s", stop,
	      from, to, bps);

	/* Slow start reaches the top at 0.3 * log2(50) = 1.69 s: the ramp
	 * goes on past the 1 s grace until the first stable run (1.75 s:
	 * the window before it is still 14% low). */
	meter_defaults(&m, 1.0);
	stop = feed(&m, 10, rate_slowstart, &top);
	err = speedtest_meter_result(&m, &bps, &from, &to);
	check(stop > 0 && !err && fabs(from - 1.75) < 1e-9 && fabs(bps - top) < 1 &&
		      fabs(stop - 2.75) < 1e-9,
	      "slow start: ramp excluded up to %.2f s (want 1.75, past the grace), %.0f B/s (want %.0f), stop %.2f s",
	      from, bps, top, stop);
	/* What including the ramp would have said. */
	{
		double whole = (double)m.b[m.n - 1] / m.t[m.n - 1];

		check(whole < 0.75 * top, "slow start: the whole transfer's mean %.0f B/s is %.0f%% low",
		      whole, 100 * (1 - whole / top));
	}

	/* Grace 0: a flat rate is stable from the start, still measured for
	 * at least SPEEDTEST_MIN_MEASURE_S. */
	meter_defaults(&m, 0);
	stop = feed(&m, 10, rate_flat, &top);
	check(fabs(stop - SPEEDTEST_MIN_MEASURE_S) < 1e-9 && m.ramp_end == 0,
	      "grace 0: stops after the minimum measured period (%.2f s)", stop);

	/* Noise: never stable, runs to the cap; the result is the mean after the grace. */
	meter_defaults(&m, 1.0);
	stop = feed(&m, 10, rate_noisy, &top);
	err = speedtest_meter_result(&m, &bps, &from, &to);
	check(stop < 0 && !m.stable && m.ramp_end < 0 && !err && fabs(from - 1.0) < 1e-9 &&
		      fabs(to - 10) < 1e-9 && fabs(bps - top) < 0.01 * top,
	      "+-20%% noise: never stable, mean after grace %.0f B/s over %.2f..%.2f s", bps, from, to);

	/* A step up right after the ramp ended (0.5 .. 1.25 s stable at
	 * 1 MB/s): the last windows are stable again at 2 MB/s from 2 s on,
	 * but the period's mean (0.75 + 2 (t - 1.25)) / (t - 0.5) MB/s only
	 * gets them within 5% of itself at t >= 8.4 s: the test goes on until
	 * the 8.5 s sample, and says (0.75 + 2 x 7.25) / 8 = 1.906 MB/s. */
	meter_defaults(&m, 0.5);
	top = 1e6;
	stop = feed(&m, 30, rate_step, &top);
	err = speedtest_meter_result(&m, &bps, &from, &to);
	check(fabs(stop - 8.5) < 1e-9 && !err && fabs(from - 0.5) < 1e-9 && fabs(bps - 1906250) < 1,
	      "step 1 -> 2 MB/s at 1.25 s: stops at %.2f s (want 8.50) when the mean %.0f B/s "
	      "is within 5%% of the last windows", stop, bps);

	/* Tolerance edges: windows repeating 1, 1, 1 + d MB/s deviate from
	 * the mean of any three by at most (2d/3) / (1 + d/3): 4.56% for
	 * d = 7% (stable), 5.19% for d = 8% (not). */
	for (int k = 0; k < 2; k++) {
		double d = k ? 0.08 : 0.07, b = 0;
		bool st = false;

		meter_defaults(&m, 0);
		speedtest_meter_add(&m, 0, 0);
		for (int i = 1; i <= 40 && !st; i++) {
			b += 1e6 * (i % 3 ? 1 : 1 + d) * SPEEDTEST_WINDOW_S;
			st = speedtest_meter_add(&m, i * SPEEDTEST_WINDOW_S, (uint64_t)b);
		}
		check(st == !k, "windows 1, 1, %.2f MB/s (max %.2f%% off their mean): %s", 1 + d,
		      100 * (2 * d / 3) / (1 + d / 3), st ? "stable" : "not stable");
	}

	/* Not enough after the grace: no result. */
	meter_defaults(&m, 1.0);
	speedtest_meter_add(&m, 0, 0);
	speedtest_meter_add(&m, 0.25, 1000);
	speedtest_meter_add(&m, 0.9, 5000);
	check(speedtest_meter_result(&m, &bps, NULL, NULL) == -ENODATA,
	      "byte cap before the grace ends: no result");
	speedtest_meter_add(&m, 1.0, 6000);
	speedtest_meter_add(&m, 1.1, 7000);
	check(speedtest_meter_result(&m, &bps, NULL, NULL) == -ENODATA,
	      "0.1 s after the grace (under one window): no result");
	speedtest_meter_add(&m, 1.3, 9000);
	err = speedtest_meter_result(&m, &bps, &from, &to);
	check(!err && fabs(bps - 3000 / 0.3) < 1e-6,
	      "0.3 s after the grace: %.0f B/s over %.2f..%.2f s", bps, from, to);

	/* Bad input: time going back is ignored, bytes going back clamped. */
	meter_defaults(&m, 0);
	speedtest_meter_add(&m, 0, 0);
	speedtest_meter_add(&m, 0.5, 1000);
	speedtest_meter_add(&m, 0.4, 999999);
	speedtest_meter_add(&m, 0.5, 999999);
	speedtest_meter_add(&m, 1.0, 10);
	check(m.n == 3 && m.b[2] == 1000, "an old time is ignored, fewer bytes clamped (n %u, b %llu)",
	      m.n, (unsigned long long)m.b[m.n - 1]);

	/* A full sample buffer stops the test. */
	meter_defaults(&m, 1.0);
	{
		bool full = false;

		for (unsigned i = 0; i <= SPEEDTEST_METER_SAMPLES && !full; i++)
			full = speedtest_meter_add(&m, i * 0.25, (uint64_t)i * (i % 2 ? 1000 : 3000));
		check(full && m.n == SPEEDTEST_METER_SAMPLES, "a full sample buffer ends the test");
	}
}

static void test_budget(void)
{
	struct speedtest_budget b;

	speedtest_budget_init(&b, 0);
	check(speedtest_budget_allows(&b, 100, UINT64_MAX), "limit 0: unlimited");
	speedtest_budget_charge(&b, 100, UINT64_MAX);
	speedtest_budget_charge(&b, 100, 5);
	check(speedtest_budget_used(&b, 100) == UINT64_MAX, "charges saturate instead of wrapping");

	speedtest_budget_init(&b, 1000);
	check(speedtest_budget_allows(&b, 7, 1000), "day 7: 1000 of 1000 allowed");
	check(!speedtest_budget_allows(&b, 7, 1001), "day 7: 1001 of 1000 refused");
	speedtest_budget_charge(&b, 7, 600);
	check(speedtest_budget_allows(&b, 7, 400) && !speedtest_budget_allows(&b, 7, 401),
	      "600 used: 400 more allowed, 401 refused");
	check(speedtest_budget_used(&b, 7) == 600 && speedtest_budget_used(&b, 8) == 0,
	      "used 600 on day 7, 0 on day 8");
	speedtest_budget_charge(&b, 7, 500); /* a test may overshoot a little */
	check(!speedtest_budget_allows(&b, 7, 0) && speedtest_budget_used(&b, 7) == 1100,
	      "overshot (1100 of 1000): nothing more today, not even 0 bytes");
	check(speedtest_budget_allows(&b, 8, 1000) && speedtest_budget_used(&b, 8) == 0,
	      "the next day starts from 0");
	speedtest_budget_charge(&b, 8, 10);
	check(speedtest_budget_used(&b, 8) == 10 && speedtest_budget_used(&b, 7) == 0,
	      "charges count for the new day only");
	check(speedtest_budget_allows(&b, 6, 1000), "a clock set back to an earlier day also resets");
}

static void test_days(void)
{
	static const struct {
		int y;
		unsigned m, d;
		long days;
	} cases[] = {
		{1970, 1, 1, 0},    {1970, 1, 2, 1},     {1969, 12, 31, -1}, {2000, 3, 1, 11017},
		{2024, 2, 29, 19782}, {2024, 3, 1, 19783}, {2100, 3, 1, 47541},
	};
	char *old = getenv("TZ") ? strdup(getenv("TZ")) : NULL;
	time_t t;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long d = speedtest_days_from_civil(cases[i].y, cases[i].m, cases[i].d);

		check(d == cases[i].days, "%04d-%02u-%02u is day %ld (got %ld)", cases[i].y, cases[i].m,
		      cases[i].d, cases[i].days, d);
	}
	/* The budget day turns at local midnight. 19782 = 2024-02-29. */
	t = (time_t)19782 * 86400 + 11 * 3600; /* 11:00 UTC */
	setenv("TZ", "UTC", 1);
	tzset();
	check(speedtest_local_day(t) == 19782, "11:00 UTC in UTC: same day");
	setenv("TZ", "UTC-14", 1); /* UTC+14: 01:00 the next day */
	tzset();
	check(speedtest_local_day(t) == 19783, "11:00 UTC at UTC+14: already the next day");
	setenv("TZ", "UTC+12", 1); /* UTC-12: 23:00 the day before */
	tzset();
	check(speedtest_local_day(t) == 19781, "11:00 UTC at UTC-12: still the day before");
	check(speedtest_local_day(t + 3600) == 19782, "an hour later at UTC-12: midnight passed");
	if (old) {
		setenv("TZ", old, 1);
		free(old);
	} else {
		unsetenv("TZ");
	}
	tzset();
}

static void test_next_delay(void)
{
	check(speedtest_next_delay(3600, 360, 0) == 3240, "u 0: interval - jitter");
	check(speedtest_next_delay(3600, 360, 0.5) == 3600, "u 0.5: interval");
	check(fabs(speedtest_next_delay(3600, 360, 0.999999) - 3960) < 0.01, "u -> 1: interval + jitter");
	check(speedtest_next_delay(3600, 3000, 0) == 1800, "jitter larger than half: never below interval/2");
	check(speedtest_next_delay(1, 5, 0) == 1, "never below 1 s");
	check(speedtest_next_delay(3600, 0, 0.9) == 3600, "no jitter: the interval");
}

static void test_config(void)
{
	struct speedtest_config c;
	char err[256];

	speedtest_config_defaults(&c);
	check(c.streams == 4 && c.max_time_s == 10 && c.grace_s == 1 && c.max_bytes == 200000000 &&
		      c.budget_bytes == 1000000000 && c.busy_share == 0.3 && c.interval_s == 21600,
	      "defaults: 4 streams, 10 s, grace 1 s, 200 MB, budget 1 GB, busy 0.3, every 6 h");
	check(!speedtest_config_check(&c, err, sizeof(err)), "defaults without servers are valid");
	c.urls[0] = "http://203.0.113.10:8080/bytes/{bytes}";
	c.upload_urls[0] = "http://203.0.113.10:8080/upload";
	c.urls[1] = "https://speed.cloudflare.com/__down?bytes={bytes}";
	c.n_servers = 2;
	check(!speedtest_config_check(&c, err, sizeof(err)), "two servers are valid");

#define BAD(what, stmt)                                                                 \
	do {                                                                            \
		struct speedtest_config b = c;                                          \
		stmt;                                                                   \
		err[0] = 0;                                                             \
		check(speedtest_config_check(&b, err, sizeof(err)) == -EINVAL && err[0], \
		      "rejected: %s (%s)", what, err);                                  \
	} while (0)
	BAD("ftp URL", b.urls[1] = "ftp://x/");
	BAD("bad upload URL", b.upload_urls[0] = "http://a b/");
	BAD("two URLs on one server", b.urls[1] = "http://203.0.113.10:8080/other");
	BAD("missing URL", b.urls[1] = NULL);
	BAD("9 servers", b.n_servers = 9);
	BAD("0 streams", b.streams = 0);
	BAD("17 streams", b.streams = 17);
	BAD("max time below grace + 1 s", b.max_time_s = 1.5);
	BAD("max time 121 s", b.max_time_s = 121);
	BAD("NaN grace", b.grace_s = NAN);
	BAD("stall 0.1 s", b.stall_s = 0.1);
	BAD("connect timeout 0", b.connect_timeout_s = 0);
	BAD("max bytes 1000", b.max_bytes = 1000);
	BAD("IP version 5", b.ip_version = 5);
	BAD("interval 0.5 s", b.interval_s = 0.5);
	BAD("negative jitter", b.jitter_s = -1);
#undef BAD
	{
		struct speedtest_config b = c;

		b.max_time_s = 3; /* below the default connect timeout: clamped at run time */
		check(!speedtest_config_check(&b, err, sizeof(err)),
		      "max time 3 s with the default 5 s connect timeout is fine");
	}
}

static double busy_share;
static bool fresh;
static double hook_busy(void *ctx)
{
	(void)ctx;
	return busy_share;
}
static bool hook_fresh(void *ctx)
{
	(void)ctx;
	return fresh;
}
static void hook_begin(void *ctx, enum speedtest_dir d)
{
	(void)ctx;
	(void)d;
}

static bool has(const struct mbuf *b, const char *s)
{
	return b->p && strstr(b->p, s);
}

static void render(struct speedtest *st, struct mbuf *b)
{
	mbuf_free(b);
	speedtest_render(st, b);
	speedtest_render_probe_success(st, b);
	speedtest_render_probe_failures(st, b);
}

/* Paths that end before any connection: nothing here touches the network
 * (the URLs point to a documentation address that is never contacted). */
static void test_runs_without_network(void)
{
	struct speedtest_config c;
	struct speedtest_hooks h = { .line_busy = hook_busy, .capacity_fresh = hook_fresh };
	struct speedtest_result res[SPEEDTEST_DIRS];
	struct speedtest *st = NULL;
	struct mbuf b;
	char state[] = "/tmp/test_speedtest.XXXXXX";
	int fd, rc;
	FILE *f;

	mbuf_init(&b);
	speedtest_config_defaults(&c);
	c.urls[0] = "http://192.0.2.200:8080/bytes/{bytes}";
	c.upload_urls[0] = "http://192.0.2.200:8080/upload";
	c.n_servers = 1;

	{
		struct speedtest_hooks half = { .rtt_begin = hook_begin };

		check(speedtest_new(&c, &half, &st) == -EINVAL, "rtt_begin without rtt_end is refused");
	}
	check(speedtest_new(&c, &h, &st) == 0, "speedtest_new");
	if (!st)
		return;
	check(!strcmp(speedtest_server_label(st, 0), "192.0.2.200:8080") &&
		      !strcmp(speedtest_server_label(st, 1), ""),
	      "server labels");
	render(st, &b);
	check(!b.err && has(&b, "# TYPE ispmon_speedtest_bytes_per_second gauge\n") &&
		      !has(&b, "ispmon_speedtest_bytes_per_second{") &&
		      has(&b, "ispmon_speedtest_data_used_bytes_total 0\n") &&
		      has(&b, "ispmon_speedtest_budget_bytes 1000000000\n") &&
		      !has(&b, "ispmon_speedtest_timestamp_seconds") && !has(&b, "ispmon_probe_success{"),
	      "before any run: headers, zero counters, no rate, no timestamp, no probe_success");

	busy_share = 0.9;
	rc = speedtest_run_once(st, 0, SPEEDTEST_BOTH, res);
	check(rc == SPEEDTEST_POSTPONED && res[0].status == SPEEDTEST_POSTPONED &&
		      !strcmp(res[0].reason, "busy") && res[1].status == SPEEDTEST_POSTPONED,
	      "line 90%% busy (limit 30%%): postponed");
	busy_share = NAN;
	fresh = true;
	rc = speedtest_run_once(st, 0, SPEEDTEST_DIR_BIT(SPEEDTEST_DOWNLOAD), res);
	check(rc == SPEEDTEST_SKIPPED && !strcmp(res[0].reason, "capacity_fresh") &&
		      res[1].status == SPEEDTEST_NOT_RUN,
	      "busy unknown (NaN) does not postpone; a fresh capacity estimate skips");
	fresh = false;
	check(speedtest_run_once(st, 1, SPEEDTEST_BOTH, res) == -EINVAL, "server index out of range");
	render(st, &b);
	check(has(&b, "ispmon_speedtest_postponed_total 1\n") &&
		      has(&b, "ispmon_speedtest_skipped_total{reason=\"capacity_fresh\"} 1\n") &&
		      has(&b, "ispmon_speedtest_data_used_bytes_total 0\n"),
	      "postponed and skipped are counted, no data used");
	speedtest_free(st);
	st = NULL;

	/* A restored state file: today's use already at the budget. */
	fd = mkstemp(state);
	f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		check(0, "mkstemp");
		mbuf_free(&b);
		return;
	}
	fprintf(f, "ispmon-speedtest-budget day=%ld used=999000000\n", speedtest_local_day(time(NULL)));
	fclose(f);
	c.state_file = state;
	check(speedtest_new(&c, NULL, &st) == 0, "speedtest_new with a state file");
	if (st) {
		rc = speedtest_run_once(st, 0, SPEEDTEST_BOTH, res);
		check(rc == SPEEDTEST_SKIPPED && !strcmp(res[0].reason, "budget") &&
			      !strcmp(res[1].reason, "budget"),
		      "999 MB of 1 GB used today (restored): both directions skipped, reason budget");
		render(st, &b);
		check(has(&b, "ispmon_speedtest_skipped_total{reason=\"budget\"} 2\n") &&
			      has(&b, "ispmon_speedtest_budget_used_bytes 999000000\n"),
		      "budget skips counted, today's use shown");
		speedtest_stop(st);
		check(speedtest_run_once(st, 0, SPEEDTEST_BOTH, res) == -ECANCELED,
		      "after speedtest_stop, run_once is cancelled");
		speedtest_free(st);
	}
	/* Yesterday's state does not count today. */
	f = fopen(state, "w");
	if (f) {
		fprintf(f, "ispmon-speedtest-budget day=%ld used=999000000\n",
			speedtest_local_day(time(NULL)) - 1);
		fclose(f);
	}
	st = NULL;
	if (speedtest_new(&c, NULL, &st) == 0) {
		render(st, &b);
		check(has(&b, "ispmon_speedtest_budget_used_bytes 0\n"), "yesterday's state file is not restored");
		speedtest_free(st);
	}
	unlink(state);
	mbuf_free(&b);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	log_set_level(LOG_WARN);
	test_parse_bytes();
	test_url_label();
	test_url_expand();
	test_reasons();
	test_meter();
	test_budget();
	test_days();
	test_next_delay();
	test_config();
	test_runs_without_network();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
