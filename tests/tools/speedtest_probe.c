// speedtest_probe: run ispmon's speed test (user/speedtest.c) once from the
// command line, without the rest of ispmon. Prints one "result ..." line per
// direction and run on stderr (with ispmon's log lines), and the metrics
// text (speedtest_render plus the shared probe families) on stdout.
// Exit status: 0 every direction tried succeeded, 1 one failed, 3 nothing
// was tried (skipped or postponed), 2 usage error.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "speedtest.h"

static const char usage_text[] =
	"usage: speedtest_probe --url URL [--upload-url URL] [--url URL [--upload-url URL]]...\n"
	"         [--server N|all] [--direction download|upload|both] [--runs N]\n"
	"         [--streams N] [--max-time S] [--grace S] [--stall S] [--connect-timeout S]\n"
	"         [--max-bytes BYTES] [--budget BYTES] [--redirects N] [--ipv4|--ipv6]\n"
	"         [--busy SHARE] [--busy-limit SHARE] [--capacity-fresh] [--hook-rtt MS]\n"
	"         [--state FILE] [--schedule SECONDS --interval S] [--log-level L]\n"
	"  --url is a download URL ({bytes} = request size), --upload-url the upload\n"
	"  URL (POST) of the --url before it. --busy makes the line_busy hook return\n"
	"  SHARE; --hook-rtt makes the rtt hooks report MS instead of the built-in\n"
	"  handshake timing. --schedule runs the scheduler thread (first run at once,\n"
	"  then every --interval) for SECONDS, then stops it and reports stop_s.\n";

struct hook_ctx {
	double busy;     /* NaN: no line_busy hook */
	bool fresh;
	double rtt_ms;   /* NaN: no rtt hooks */
	int rtt_begins;
};

static double hook_busy(void *ctx) { return ((struct hook_ctx *)ctx)->busy; }
static bool hook_fresh(void *ctx) { return ((struct hook_ctx *)ctx)->fresh; }
static void hook_rtt_begin(void *ctx, enum speedtest_dir dir)
{
	(void)dir;
	((struct hook_ctx *)ctx)->rtt_begins++;
}
static double hook_rtt_end(void *ctx, enum speedtest_dir dir, int64_t *retransmits)
{
	(void)dir;
	(void)retransmits;
	return ((struct hook_ctx *)ctx)->rtt_ms / 1e3;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int num(const char *s, double lo, double hi, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static const char *status_name(enum speedtest_status s)
{
	switch (s) {
	case SPEEDTEST_OK: return "ok";
	case SPEEDTEST_FAILED: return "failed";
	case SPEEDTEST_SKIPPED: return "skipped";
	case SPEEDTEST_POSTPONED: return "postponed";
	default: return "not_run";
	}
}

static void print_result(unsigned run, const char *server, int dir, const struct speedtest_result *r)
{
	fprintf(stderr,
		"result run=%u server=%s direction=%s status=%s reason=%s bytes_per_second=%.0f "
		"loaded_rtt_s=%.6f elapsed_s=%.3f ramp_s=%.3f measured_s=%.3f end=%s bytes_used=%llu "
		"http_code=%ld\n",
		run, server, speedtest_dir_names[dir], status_name(r->status),
		r->reason[0] ? r->reason : "-", r->bytes_per_s, r->loaded_rtt_s, r->elapsed_s, r->ramp_s,
		r->measured_s, r->end[0] ? r->end : "-", (unsigned long long)r->bytes_used, r->http_code);
}

int main(int argc, char **argv)
{
	struct speedtest_config cfg;
	struct hook_ctx hc = { .busy = NAN, .rtt_ms = NAN };
	struct speedtest_hooks hooks = { .ctx = &hc };
	struct speedtest *st;
	unsigned dirs = SPEEDTEST_BOTH, runs = 1;
	int server = -1, worst = 3; /* -1: all */
	double schedule_s = 0, v;
	char err[256];
	struct mbuf b;

	speedtest_config_defaults(&cfg);
	cfg.interval_s = 0;
	cfg.budget_bytes = 0;
	setvbuf(stderr, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *arg = i + 1 < argc ? argv[i + 1] : NULL;
		bool used = true;

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage_text, stdout);
			return 0;
		} else if (!strcmp(a, "--ipv4")) {
			cfg.ip_version = 4;
			used = false;
		} else if (!strcmp(a, "--ipv6")) {
			cfg.ip_version = 6;
			used = false;
		} else if (!strcmp(a, "--capacity-fresh")) {
			hc.fresh = true;
			hooks.capacity_fresh = hook_fresh;
			used = false;
		} else if (!arg) {
			fprintf(stderr, "speedtest_probe: unknown or incomplete option '%s'\n%s", a, usage_text);
			return 2;
		} else if (!strcmp(a, "--url")) {
			if (cfg.n_servers == SPEEDTEST_MAX_SERVERS)
				goto bad;
			cfg.urls[cfg.n_servers++] = arg;
		} else if (!strcmp(a, "--upload-url")) {
			if (!cfg.n_servers)
				goto bad;
			cfg.upload_urls[cfg.n_servers - 1] = arg;
		} else if (!strcmp(a, "--server")) {
			if (!strcmp(arg, "all"))
				server = -1;
			else if (!num(arg, 0, SPEEDTEST_MAX_SERVERS - 1, &v))
				server = (int)v;
			else
				goto bad;
		} else if (!strcmp(a, "--direction")) {
			if (!strcmp(arg, "download"))
				dirs = SPEEDTEST_DIR_BIT(SPEEDTEST_DOWNLOAD);
			else if (!strcmp(arg, "upload"))
				dirs = SPEEDTEST_DIR_BIT(SPEEDTEST_UPLOAD);
			else if (!strcmp(arg, "both"))
				dirs = SPEEDTEST_BOTH;
			else
				goto bad;
		} else if (!strcmp(a, "--runs")) {
			if (num(arg, 1, 100, &v))
				goto bad;
			runs = (unsigned)v;
		} else if (!strcmp(a, "--streams")) {
			if (num(arg, 0, 1000, &v))
				goto bad;
			cfg.streams = (unsigned)v;
		} else if (!strcmp(a, "--max-time")) {
			if (num(arg, 0, 1e6, &cfg.max_time_s))
				goto bad;
		} else if (!strcmp(a, "--grace")) {
			if (num(arg, 0, 1e6, &cfg.grace_s))
				goto bad;
		} else if (!strcmp(a, "--stall")) {
			if (num(arg, 0, 1e6, &cfg.stall_s))
				goto bad;
		} else if (!strcmp(a, "--connect-timeout")) {
			if (num(arg, 0, 1e6, &cfg.connect_timeout_s))
				goto bad;
		} else if (!strcmp(a, "--max-bytes")) {
			if (speedtest_parse_bytes(arg, &cfg.max_bytes))
				goto bad;
		} else if (!strcmp(a, "--budget")) {
			if (speedtest_parse_bytes(arg, &cfg.budget_bytes))
				goto bad;
		} else if (!strcmp(a, "--redirects")) {
			if (num(arg, 0, 1000, &v))
				goto bad;
			cfg.max_redirects = (unsigned)v;
		} else if (!strcmp(a, "--busy")) {
			if (num(arg, 0, 1, &hc.busy))
				goto bad;
			hooks.line_busy = hook_busy;
		} else if (!strcmp(a, "--busy-limit")) {
			if (num(arg, 0, 1e6, &cfg.busy_share))
				goto bad;
		} else if (!strcmp(a, "--hook-rtt")) {
			if (num(arg, 0, 1e6, &hc.rtt_ms))
				goto bad;
			hooks.rtt_begin = hook_rtt_begin;
			hooks.rtt_end = hook_rtt_end;
		} else if (!strcmp(a, "--state")) {
			cfg.state_file = arg;
		} else if (!strcmp(a, "--schedule")) {
			if (num(arg, 0.1, 3600, &schedule_s))
				goto bad;
		} else if (!strcmp(a, "--interval")) {
			if (num(arg, 0, 1e9, &cfg.interval_s))
				goto bad;
		} else if (!strcmp(a, "--log-level")) {
			enum log_level lvl;

			if (log_parse_level(arg, &lvl))
				goto bad;
			log_set_level(lvl);
		} else {
			fprintf(stderr, "speedtest_probe: unknown option '%s'\n%s", a, usage_text);
			return 2;
		}
		if (used)
			i++;
		continue;
bad:
		fprintf(stderr, "speedtest_probe: bad value for %s: '%s'\n", a, arg);
		return 2;
	}
	if (!cfg.n_servers) {
		fputs(usage_text, stderr);
		return 2;
	}
	if (server >= (int)cfg.n_servers) {
		fprintf(stderr, "speedtest_probe: --server %d: only %u servers\n", server, cfg.n_servers);
		return 2;
	}
	if (schedule_s > 0) {
		if (!cfg.interval_s)
			cfg.interval_s = 3600;
		cfg.first_delay_s = 0;
		cfg.jitter_s = 0;
	}
	if (speedtest_config_check(&cfg, err, sizeof(err))) {
		fprintf(stderr, "speedtest_probe: %s\n", err);
		return 2;
	}
	if (speedtest_new(&cfg, &hooks, &st))
		return 1;

	if (schedule_s > 0) {
		struct timespec ts = { .tv_sec = (time_t)schedule_s,
				       .tv_nsec = (long)((schedule_s - floor(schedule_s)) * 1e9) };
		double t;

		if (speedtest_start(st)) {
			fprintf(stderr, "speedtest_probe: cannot start the scheduler\n");
			speedtest_free(st);
			return 1;
		}
		nanosleep(&ts, NULL);
		t = now_s();
		speedtest_stop(st);
		fprintf(stderr, "result schedule stop_s=%.3f\n", now_s() - t);
		worst = 0;
	} else {
		for (unsigned run = 1; run <= runs; run++) {
			for (unsigned s = 0; s < cfg.n_servers; s++) {
				struct speedtest_result res[SPEEDTEST_DIRS];
				int rc;

				if (server >= 0 && s != (unsigned)server)
					continue;
				rc = speedtest_run_once(st, s, dirs, res);
				if (rc < 0) {
					fprintf(stderr, "speedtest_probe: run failed: %s\n", strerror(-rc));
					speedtest_free(st);
					return 1;
				}
				for (int d = 0; d < SPEEDTEST_DIRS; d++) {
					if (!(dirs & SPEEDTEST_DIR_BIT(d)))
						continue;
					print_result(run, speedtest_server_label(st, s), d, &res[d]);
					if (res[d].status == SPEEDTEST_FAILED)
						worst = 1;
					else if (res[d].status == SPEEDTEST_OK && worst == 3)
						worst = 0;
				}
			}
		}
	}
	if (!isnan(hc.rtt_ms))
		fprintf(stderr, "result hooks rtt_begins=%d\n", hc.rtt_begins);

	mbuf_init(&b);
	speedtest_render(st, &b);
	prom_header(&b, "ispmon_probe_success", "gauge", "1 if the probe's last run succeeded.");
	speedtest_render_probe_success(st, &b);
	prom_header(&b, "ispmon_probe_failures_total", "counter", "Failed probe runs by reason.");
	speedtest_render_probe_failures(st, &b);
	if (b.err) {
		fprintf(stderr, "speedtest_probe: out of memory\n");
		worst = 1;
	} else {
		fwrite(b.p, 1, b.len, stdout);
	}
	mbuf_free(&b);
	speedtest_free(st);
	return worst;
}
