/*
 * Active speed test (see speedtest.h for the method). One direction of one
 * server is a "direction run": its own curl multi handle with `streams`
 * easy handles (one HTTP/1.1 connection each) plus, without rtt hooks, one
 * CONNECT_ONLY handle timing TCP handshakes. The loop wakes at least every
 * SPEEDTEST_WINDOW_S to sample the bytes delivered, check stalls and caps,
 * and feed the meter that decides when the rate is stable.
 */
#include "speedtest.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

#ifndef ISPMON_VERSION
#define ISPMON_VERSION "dev"
#endif

#define RECV_BUFFER (128 * 1024)  /* curl's receive buffer per stream */
#define SEND_BUFFER (128 * 1024)  /* curl's upload buffer per stream */
#define HEADER_SLACK (64 * 1024)  /* request and response headers, per direction */
#define MAX_URL 2048
#define MAX_RTT_SAMPLES 512
#define PROBE_TIMEOUT_MS 2000
#define PATTERN_SIZE (64 * 1024)

const char *const speedtest_dir_names[SPEEDTEST_DIRS] = {"download", "upload"};

/* Failure reasons: a fixed set, so the failures counter stays bounded. */
enum reason {
	R_NONE,
	R_DNS,
	R_CONNECT,
	R_TLS,
	R_HTTP_4XX,
	R_HTTP_5XX,
	R_HTTP_OTHER,
	R_REDIRECT,
	R_STALLED,
	R_OVERSIZE,
	R_BYTE_CAP,
	R_CLOSED,
	R_PROTOCOL,
	R_TIMEOUT,
	R_TOO_SHORT,
	R_BAD_URL,
	R_OTHER,
	R_MAX
};
static const char *const reason_names[R_MAX] = {
	"",         "dns",      "connect",  "tls",       "http_4xx", "http_5xx",
	"http_other", "redirect", "stalled", "oversize", "byte_cap", "closed",
	"protocol", "timeout",  "too_short", "bad_url",  "other",
};

/* Why a run or direction did not happen (not failures). */
enum skip { SK_BUDGET, SK_BUSY, SK_CAPACITY_FRESH, SK_MAX };
static const char *const skip_names[SK_MAX] = {"budget", "busy", "capacity_fresh"};

/* ---- pure helpers ---------------------------------------------------- */

int speedtest_parse_bytes(const char *s, uint64_t *out)
{
	double v = 0, scale = 0.1, mul = 1;
	const char *p = s;
	int digits = 0;

	if (!s)
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++, digits++) {
		if (digits > 20)
			return -EINVAL;
		v = v * 10 + (*p - '0');
	}
	if (!digits)
		return -EINVAL;
	if (*p == '.') {
		int frac = 0;

		for (p++; isdigit((unsigned char)*p); p++, frac++) {
			if (frac < 9)
				v += (*p - '0') * scale;
			scale /= 10;
		}
		if (!frac)
			return -EINVAL;
	}
	if (*p) {
		static const char units[] = "kmgt";
		const char *u = strchr(units, tolower((unsigned char)*p));

		if (u) {
			int power = (int)(u - units) + 1;

			p++;
			if (*p == 'i') {
				mul = ldexp(1.0, 10 * power);
				p++;
			} else {
				mul = pow(1000.0, power);
			}
		}
		if (*p == 'B')
			p++;
		if (*p)
			return -EINVAL;
	}
	v *= mul;
	if (!(v < 18446744073709549568.0)) /* largest double below 2^64 */
		return -EINVAL;
	*out = (uint64_t)(v + 0.5);
	return 0;
}

static bool host_char(char c)
{
	return isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_';
}

int speedtest_url_label(const char *url, char *label, size_t cap, unsigned *port_out)
{
	unsigned def_port, port = 0;
	const char *p, *auth_end, *at, *host, *host_end, *q;
	char buf[SPEEDTEST_LABEL_MAX];
	size_t n = 0;

	if (!url)
		return -EINVAL;
	if (!strncasecmp(url, "http://", 7)) {
		def_port = 80;
		p = url + 7;
	} else if (!strncasecmp(url, "https://", 8)) {
		def_port = 443;
		p = url + 8;
	} else {
		return -EINVAL;
	}
	auth_end = p + strcspn(p, "/?#");
	/* userinfo@ never reaches a label */
	host = p;
	for (at = p; at < auth_end; at++)
		if (*at == '@')
			host = at + 1;
	if (*host == '[') {
		host_end = memchr(host, ']', (size_t)(auth_end - host));
		if (!host_end || host_end == host + 1)
			return -EINVAL;
		for (q = host + 1; q < host_end; q++)
			if (!isxdigit((unsigned char)*q) && *q != ':' && *q != '.')
				return -EINVAL;
		host_end++; /* keep the bracket */
	} else {
		host_end = host;
		while (host_end < auth_end && *host_end != ':') {
			if (!host_char(*host_end))
				return -EINVAL;
			host_end++;
		}
		if (host_end == host)
			return -EINVAL;
	}
	if (host_end < auth_end) {
		if (*host_end != ':')
			return -EINVAL;
		for (q = host_end + 1; q < auth_end; q++) {
			if (!isdigit((unsigned char)*q) || port > 65535)
				return -EINVAL;
			port = port * 10 + (unsigned)(*q - '0');
		}
		if (q == host_end + 1)
			port = 0; /* "host:" means the default port */
		else if (port == 0 || port > 65535)
			return -EINVAL;
	}
	if ((size_t)(host_end - host) >= sizeof(buf) - 7)
		return -EINVAL;
	for (q = host; q < host_end; q++)
		buf[n++] = (char)tolower((unsigned char)*q);
	if (port && port != def_port)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, ":%u", port);
	buf[n] = 0;
	if (n + 1 > cap)
		return -EINVAL;
	memcpy(label, buf, n + 1);
	if (port_out)
		*port_out = port ? port : def_port;
	return 0;
}

int speedtest_url_expand(const char *tmpl, uint64_t bytes, char *out, size_t cap)
{
	static const char key[] = "{bytes}";
	char num[24];
	size_t n = 0, nlen;
	int count = 0;

	nlen = (size_t)snprintf(num, sizeof(num), "%llu", (unsigned long long)bytes);
	while (*tmpl) {
		if (!strncmp(tmpl, key, sizeof(key) - 1)) {
			if (n + nlen >= cap)
				return -ENOSPC;
			memcpy(out + n, num, nlen);
			n += nlen;
			tmpl += sizeof(key) - 1;
			count++;
		} else {
			if (n + 1 >= cap)
				return -ENOSPC;
			out[n++] = *tmpl++;
		}
	}
	if (n >= cap)
		return -ENOSPC;
	out[n] = 0;
	return count;
}

static enum reason http_reason(long http)
{
	if (http >= 200 && http < 300)
		return R_NONE;
	if (http >= 400 && http < 500)
		return R_HTTP_4XX;
	if (http >= 500 && http < 600)
		return R_HTTP_5XX;
	return R_HTTP_OTHER;
}

static enum reason curl_reason(int code, long http, bool connected)
{
	switch (code) {
	case CURLE_OK:
	case CURLE_HTTP_RETURNED_ERROR:
		return http_reason(http);
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return R_DNS;
	case CURLE_COULDNT_CONNECT:
		return R_CONNECT;
	case CURLE_OPERATION_TIMEDOUT:
		return connected ? R_TIMEOUT : R_CONNECT;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_USE_SSL_FAILED:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_SHUTDOWN_FAILED:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CLIENTCERT:
		return R_TLS;
	case CURLE_TOO_MANY_REDIRECTS:
		return R_REDIRECT;
	case CURLE_FILESIZE_EXCEEDED:
		return R_OVERSIZE;
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE:
		return R_CLOSED;
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_BAD_CONTENT_ENCODING:
		return R_PROTOCOL;
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
		return R_BAD_URL;
	default:
		return R_OTHER;
	}
}

const char *speedtest_reason(int curl_code, long http_code, bool connected)
{
	return reason_names[curl_reason(curl_code, http_code, connected)];
}

/* ---- meter ---- */

void speedtest_meter_init(struct speedtest_meter *m, double grace_s, double window_s,
			  unsigned k, double tol, double min_measure_s)
{
	m->grace_s = grace_s;
	m->window_s = window_s;
	m->k = k ? k : 1;
	m->tol = tol;
	m->min_measure_s = min_measure_s;
	m->n = 0;
	m->ramp_end = -1;
	m->stable = false;
}

/* Are the k windows ending at sample `last` stable? Their mean (total
 * bytes over total time) goes to *mean. Window j runs from sample j-1 to j. */
static bool windows_stable(const struct speedtest_meter *m, unsigned last, double *mean)
{
	unsigned first;
	double dt;

	if (last < m->k)
		return false;
	first = last - m->k;
	dt = m->t[last] - m->t[first];
	if (dt <= 0)
		return false;
	*mean = (double)(m->b[last] - m->b[first]) / dt;
	if (!(*mean > 0))
		return false;
	for (unsigned j = first + 1; j <= last; j++) {
		double w = m->t[j] - m->t[j - 1], r;

		if (w <= 0)
			return false;
		r = (double)(m->b[j] - m->b[j - 1]) / w;
		if (fabs(r - *mean) > m->tol * *mean)
			return false;
	}
	return true;
}

bool speedtest_meter_add(struct speedtest_meter *m, double t, uint64_t b)
{
	unsigned last;
	double mean;

	if (m->n && !(t > m->t[m->n - 1]))
		return false;
	if (m->n == SPEEDTEST_METER_SAMPLES)
		return true;
	if (m->n && b < m->b[m->n - 1])
		b = m->b[m->n - 1];
	m->t[m->n] = t;
	m->b[m->n] = b;
	last = m->n++;
	if (m->ramp_end < 0 && last >= m->k && m->t[last - m->k] >= m->grace_s - 1e-9 &&
	    windows_stable(m, last, &mean))
		m->ramp_end = (int)(last - m->k);
	if (m->ramp_end >= 0) {
		double dt = m->t[last] - m->t[m->ramp_end];

		if (dt >= m->min_measure_s - 1e-9 && windows_stable(m, last, &mean)) {
			double all = (double)(m->b[last] - m->b[m->ramp_end]) / dt;

			if (all > 0 && fabs(mean - all) <= m->tol * all) {
				m->stable = true;
				return true;
			}
		}
	}
	return m->n == SPEEDTEST_METER_SAMPLES;
}

int speedtest_meter_result(const struct speedtest_meter *m, double *bps, double *from_s,
			   double *to_s)
{
	int from = m->ramp_end;
	double dt;

	if (from < 0) {
		for (unsigned i = 0; i < m->n; i++) {
			if (m->t[i] >= m->grace_s - 1e-9) {
				from = (int)i;
				break;
			}
		}
	}
	if (from < 0 || !m->n)
		return -ENODATA;
	dt = m->t[m->n - 1] - m->t[from];
	if (dt < 0.9 * m->window_s)
		return -ENODATA;
	*bps = (double)(m->b[m->n - 1] - m->b[from]) / dt;
	if (from_s)
		*from_s = m->t[from];
	if (to_s)
		*to_s = m->t[m->n - 1];
	return 0;
}

/* ---- budget and time ---- */

void speedtest_budget_init(struct speedtest_budget *b, uint64_t limit)
{
	b->limit = limit;
	b->day = 0;
	b->used = 0;
}

static void budget_roll(struct speedtest_budget *b, long day)
{
	if (day != b->day) {
		b->day = day;
		b->used = 0;
	}
}

bool speedtest_budget_allows(struct speedtest_budget *b, long day, uint64_t need)
{
	budget_roll(b, day);
	return !b->limit || (b->used <= b->limit && need <= b->limit - b->used);
}

void speedtest_budget_charge(struct speedtest_budget *b, long day, uint64_t bytes)
{
	budget_roll(b, day);
	b->used = b->used + bytes < b->used ? UINT64_MAX : b->used + bytes;
}

uint64_t speedtest_budget_used(const struct speedtest_budget *b, long day)
{
	return b->day == day ? b->used : 0;
}

long speedtest_days_from_civil(int y, unsigned m, unsigned d)
{
	struct tm tm = {
		.tm_year = y - 1900, .tm_mon = (int)m - 1, .tm_mday = (int)d, .tm_hour = 12,
	};
	time_t t = timegm(&tm);
	long s = (long)t - 12 * 3600;

	return s >= 0 ? s / 86400 : -((-s + 86399) / 86400);
}

long speedtest_local_day(time_t t)
{
	struct tm tm;

	if (!localtime_r(&t, &tm))
		return 0;
	return speedtest_days_from_civil(tm.tm_year + 1900, (unsigned)tm.tm_mon + 1,
					 (unsigned)tm.tm_mday);
}

double speedtest_next_delay(double interval_s, double jitter_s, double u)
{
	double d = interval_s + (2 * u - 1) * jitter_s, lo = interval_s / 2;

	if (lo < 1)
		lo = 1;
	return d < lo ? lo : d;
}

static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double real_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the instance ---- */

struct server {
	char *url[SPEEDTEST_DIRS]; /* download, upload (NULL: none) */
	bool templated[SPEEDTEST_DIRS];
	char label[SPEEDTEST_LABEL_MAX];
	char probe_url[SPEEDTEST_LABEL_MAX + 16]; /* http://host:port/ for handshake timing */
	/* Results, under speedtest.lock. */
	bool have[SPEEDTEST_DIRS];
	double bps[SPEEDTEST_DIRS];
	double duration[SPEEDTEST_DIRS];
	bool stable[SPEEDTEST_DIRS];
	int success; /* -1: never ran */
	uint64_t runs[SPEEDTEST_DIRS][2]; /* [success, failure] */
	uint64_t failures[R_MAX];
};

struct speedtest {
	struct speedtest_config cfg;
	struct speedtest_hooks hooks;
	struct server srv[SPEEDTEST_MAX_SERVERS];
	char *state_file;
	pthread_mutex_t lock;     /* everything below, and results */
	pthread_mutex_t run_lock; /* one test at a time */
	pthread_cond_t cond;      /* scheduler sleep (CLOCK_MONOTONIC) */
	pthread_t thread;
	bool thread_started;
	atomic_bool stopping;
	CURLM *cur_multi; /* the running test's, for curl_multi_wakeup */
	struct speedtest_budget budget;
	uint64_t data_used;
	uint64_t postponed;
	uint64_t skipped[SK_MAX];
	bool have_rtt[SPEEDTEST_DIRS];
	double loaded_rtt[SPEEDTEST_DIRS];
	int64_t retransmits[SPEEDTEST_DIRS]; /* of the last success, -1: unknown */
	double last_success; /* unix seconds, 0: never */
	unsigned last_server[SPEEDTEST_DIRS]; /* of the newest success per direction */
	bool running;
	bool curl_ready;
	uint64_t rng;
	unsigned next_server;
};

void speedtest_config_defaults(struct speedtest_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->streams = 4;
	cfg->max_time_s = 10;
	cfg->grace_s = 1;
	cfg->stall_s = 3;
	cfg->connect_timeout_s = 5;
	cfg->max_bytes = 200 * 1000 * 1000ULL;
	cfg->budget_bytes = 1000 * 1000 * 1000ULL;
	cfg->busy_share = 0.3;
	cfg->max_redirects = 5;
	cfg->interval_s = 6 * 3600;
	cfg->jitter_s = 6 * 360;
	cfg->first_delay_s = 60;
	cfg->postpone_s = 300;
	cfg->max_postpones = 12;
}

static int fail_check(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail_check(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (err && errlen)
		vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static bool finite_in(double v, double lo, double hi)
{
	return isfinite(v) && v >= lo && v <= hi;
}

int speedtest_config_check(const struct speedtest_config *c, char *err, size_t errlen)
{
	char labels[SPEEDTEST_MAX_SERVERS][SPEEDTEST_LABEL_MAX], tmp[SPEEDTEST_LABEL_MAX];

	if (c->n_servers > SPEEDTEST_MAX_SERVERS)
		return fail_check(err, errlen, "at most %d speed-test servers", SPEEDTEST_MAX_SERVERS);
	for (unsigned i = 0; i < c->n_servers; i++) {
		if (!c->urls[i])
			return fail_check(err, errlen, "server %u has no download URL", i + 1);
		if (strlen(c->urls[i]) >= MAX_URL - 24 ||
		    speedtest_url_label(c->urls[i], labels[i], sizeof(labels[i]), NULL))
			return fail_check(err, errlen, "bad speed-test URL '%.200s': want http(s)://HOST[:PORT]/...",
					  c->urls[i]);
		if (c->upload_urls[i] &&
		    (strlen(c->upload_urls[i]) >= MAX_URL - 24 ||
		     speedtest_url_label(c->upload_urls[i], tmp, sizeof(tmp), NULL)))
			return fail_check(err, errlen, "bad speed-test upload URL '%.200s': want http(s)://HOST[:PORT]/...",
					  c->upload_urls[i]);
		for (unsigned j = 0; j < i; j++)
			if (!strcmp(labels[i], labels[j]))
				return fail_check(err, errlen, "two speed-test URLs on server %s", labels[i]);
	}
	if (c->streams < 1 || c->streams > SPEEDTEST_MAX_STREAMS)
		return fail_check(err, errlen, "speed-test streams must be 1..%d", SPEEDTEST_MAX_STREAMS);
	if (!finite_in(c->grace_s, 0, 60))
		return fail_check(err, errlen, "speed-test grace must be 0..60 s");
	if (!finite_in(c->max_time_s, c->grace_s + SPEEDTEST_MIN_MEASURE_S, SPEEDTEST_MAX_TIME_LIMIT_S))
		return fail_check(err, errlen, "speed-test max time must be grace + %g s .. %g s",
				  SPEEDTEST_MIN_MEASURE_S, SPEEDTEST_MAX_TIME_LIMIT_S);
	if (!finite_in(c->stall_s, 0.5, SPEEDTEST_MAX_TIME_LIMIT_S))
		return fail_check(err, errlen, "speed-test stall timeout must be 0.5 .. %g s",
				  SPEEDTEST_MAX_TIME_LIMIT_S);
	if (!finite_in(c->connect_timeout_s, 0.1, SPEEDTEST_MAX_TIME_LIMIT_S))
		return fail_check(err, errlen, "speed-test connect timeout must be 0.1 .. %g s",
				  SPEEDTEST_MAX_TIME_LIMIT_S);
	if (c->max_bytes < 64 * 1024)
		return fail_check(err, errlen, "speed-test max bytes must be at least 64 KiB");
	if (!finite_in(c->busy_share, 0, 1e9))
		return fail_check(err, errlen, "speed-test busy share must be >= 0");
	if (c->max_redirects > 50)
		return fail_check(err, errlen, "speed-test redirects must be 0..50");
	if (c->ip_version != 0 && c->ip_version != 4 && c->ip_version != 6)
		return fail_check(err, errlen, "speed-test IP version must be 4, 6 or any");
	if (!finite_in(c->interval_s, 0, 366 * 86400.0) ||
	    (c->interval_s > 0 && c->interval_s < 1))
		return fail_check(err, errlen, "speed-test interval must be 0 (off) or 1 s .. 1 year");
	if (!finite_in(c->jitter_s, 0, 366 * 86400.0) || !finite_in(c->first_delay_s, 0, 366 * 86400.0) ||
	    !finite_in(c->postpone_s, 1, 366 * 86400.0))
		return fail_check(err, errlen, "speed-test jitter, first delay and postpone must be sane durations");
	return 0;
}

static uint64_t rng_next(struct speedtest *st)
{
	/* xorshift64*: plenty for schedule jitter */
	st->rng ^= st->rng >> 12;
	st->rng ^= st->rng << 25;
	st->rng ^= st->rng >> 27;
	return st->rng * 0x2545f4914f6cdd1dULL;
}

static double rng_u01(struct speedtest *st)
{
	return (double)(rng_next(st) >> 11) / 9007199254740992.0;
}

static void state_load(struct speedtest *st)
{
	FILE *f;
	long day;
	unsigned long long used;

	if (!st->state_file)
		return;
	f = fopen(st->state_file, "re");
	if (!f)
		return;
	if (fscanf(f, "ispmon-speedtest-budget day=%ld used=%llu", &day, &used) == 2 &&
	    day == speedtest_local_day(time(NULL))) {
		st->budget.day = day;
		st->budget.used = used;
		log_info("speedtest budget restored", "day_used_bytes=%llu", used);
	}
	fclose(f);
}

static void state_save(struct speedtest *st, long day, uint64_t used)
{
	char tmp[4096];
	FILE *f;
	int ok;

	if (!st->state_file)
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", st->state_file);
	f = fopen(tmp, "we");
	if (!f) {
		log_warn("cannot write speedtest state", "file=%s errno=%d", tmp, errno);
		return;
	}
	ok = fprintf(f, "ispmon-speedtest-budget day=%ld used=%llu\n", day,
		     (unsigned long long)used) > 0;
	ok = (fclose(f) == 0) && ok;
	if (!ok || rename(tmp, st->state_file)) {
		log_warn("cannot write speedtest state", "file=%s errno=%d", st->state_file, errno);
		unlink(tmp);
	}
}

static void free_servers(struct speedtest *st)
{
	for (unsigned i = 0; i < SPEEDTEST_MAX_SERVERS; i++)
		for (int d = 0; d < SPEEDTEST_DIRS; d++) {
			free(st->srv[i].url[d]);
			st->srv[i].url[d] = NULL;
		}
}

int speedtest_new(const struct speedtest_config *cfg, const struct speedtest_hooks *hooks,
		  struct speedtest **out)
{
	struct speedtest *st;
	char err[256];
	pthread_condattr_t ca;

	if (speedtest_config_check(cfg, err, sizeof(err))) {
		log_error("bad speed-test configuration", "reason=\"%s\"", err);
		return -EINVAL;
	}
	if (hooks && (!hooks->rtt_begin) != (!hooks->rtt_end)) {
		log_error("speed-test rtt hooks: both or neither", NULL);
		return -EINVAL;
	}
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->cfg = *cfg;
	if (hooks)
		st->hooks = *hooks;
	for (unsigned i = 0; i < cfg->n_servers; i++) {
		struct server *s = &st->srv[i];
		unsigned port = 0;
		char host[SPEEDTEST_LABEL_MAX];
		char *colon;

		s->success = -1;
		speedtest_url_label(cfg->urls[i], s->label, sizeof(s->label), &port);
		/* The label without its port, for the handshake-timing URL. */
		snprintf(host, sizeof(host), "%s", s->label);
		colon = strrchr(host, ':');
		if (colon && (host[0] != '[' || colon > strchr(host, ']')))
			*colon = 0;
		snprintf(s->probe_url, sizeof(s->probe_url), "http://%s:%u/", host, port);
		s->url[SPEEDTEST_DOWNLOAD] = strdup(cfg->urls[i]);
		s->url[SPEEDTEST_UPLOAD] = cfg->upload_urls[i] ? strdup(cfg->upload_urls[i]) : NULL;
		if (!s->url[SPEEDTEST_DOWNLOAD] || (cfg->upload_urls[i] && !s->url[SPEEDTEST_UPLOAD])) {
			free_servers(st);
			free(st);
			return -ENOMEM;
		}
		for (int d = 0; d < SPEEDTEST_DIRS; d++)
			s->templated[d] = s->url[d] && strstr(s->url[d], "{bytes}");
		st->cfg.urls[i] = s->url[SPEEDTEST_DOWNLOAD];
		st->cfg.upload_urls[i] = s->url[SPEEDTEST_UPLOAD];
	}
	st->state_file = cfg->state_file ? strdup(cfg->state_file) : NULL;
	st->cfg.state_file = st->state_file;
	speedtest_budget_init(&st->budget, cfg->budget_bytes);
	st->budget.day = speedtest_local_day(time(NULL));
	for (int d = 0; d < SPEEDTEST_DIRS; d++)
		st->retransmits[d] = -1;
	if (getrandom(&st->rng, sizeof(st->rng), GRND_NONBLOCK) != sizeof(st->rng))
		st->rng = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	st->rng |= 1;
	atomic_init(&st->stopping, false);
	pthread_mutex_init(&st->lock, NULL);
	pthread_mutex_init(&st->run_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&st->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
		log_error("libcurl initialisation failed", NULL);
		speedtest_free(st);
		return -EIO;
	}
	st->curl_ready = true;
	state_load(st);
	*out = st;
	return 0;
}

void speedtest_free(struct speedtest *st)
{
	if (!st)
		return;
	speedtest_stop(st);
	if (st->curl_ready)
		curl_global_cleanup();
	pthread_cond_destroy(&st->cond);
	pthread_mutex_destroy(&st->run_lock);
	pthread_mutex_destroy(&st->lock);
	free_servers(st);
	free(st->state_file);
	free(st);
}

const char *speedtest_server_label(const struct speedtest *st, unsigned i)
{
	return i < st->cfg.n_servers ? st->srv[i].label : "";
}

/* ---- one direction ---- */

static uint8_t pattern[PATTERN_SIZE];
static pthread_once_t pattern_once = PTHREAD_ONCE_INIT;

static void pattern_init(void)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL;

	for (size_t i = 0; i < sizeof(pattern); i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		pattern[i] = (uint8_t)(x >> 32);
	}
}

struct dir_run;

struct stream {
	struct dir_run *run;
	CURL *easy;
	bool active;      /* in the multi handle */
	bool finished;    /* no more requests */
	bool connected;   /* this request's connection is set up */
	int local_port;   /* of this request's connection */
	int fd;           /* its socket, -1: not found yet */
	unsigned requests;
	uint64_t req_size;  /* asked for (download) or body size (upload) */
	uint64_t req_limit; /* largest acceptable download body */
	uint64_t req_body;  /* download: body received; upload: body handed to curl */
	uint64_t rx;        /* bytes curl handed to the write callback, refused ones too */
	uint64_t done;      /* delivered payload of finished requests */
	uint64_t used;      /* data used by finished requests */
	uint64_t progress_v;
	double progress_t;
	enum reason fail;   /* set by a callback before it aborts the transfer */
	char errbuf[CURL_ERROR_SIZE];
};

struct dir_run {
	struct speedtest *st;
	const struct server *srv;
	enum speedtest_dir dir;
	CURLM *multi;
	struct curl_slist *headers;
	struct stream s[SPEEDTEST_MAX_STREAMS];
	unsigned n;
	int fds[4 * SPEEDTEST_MAX_STREAMS]; /* open sockets of the streams, -1 free */
	uint64_t cap, req_size;
	uint64_t body_total; /* download: accepted body bytes; upload: handed to curl */
	uint64_t committed;  /* sized requests: bytes asked for so far (refunds deducted) */
	bool capped;
	double t0;
	struct speedtest_meter meter;
	bool rtt_begun;
	CURL *probe;
	double probe_t;
	double rtt[MAX_RTT_SAMPLES];
	unsigned n_rtt;
	long http_code;
	enum reason fail;
	char detail[160];
};

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud)
{
	struct stream *s = ud;
	struct dir_run *r = s->run;
	size_t n = size * nmemb;

	(void)p;
	s->rx += n;
	if (r->dir == SPEEDTEST_UPLOAD) /* the upload's response body */
		return n;
	if (s->req_body + n > s->req_limit) {
		s->fail = R_OVERSIZE;
		return 0;
	}
	if (r->capped)
		return 0; /* ending anyway: no more bytes than the cap needs */
	s->req_body += n;
	r->body_total += n;
	/* Templated requests are sized to add up to the cap and end by
	 * themselves; a file of unknown size is cut here. */
	if (r->body_total >= r->cap && !r->srv->templated[SPEEDTEST_DOWNLOAD])
		r->capped = true;
	return n;
}

static size_t on_read(char *buf, size_t size, size_t nmemb, void *ud)
{
	struct stream *s = ud;
	struct dir_run *r = s->run;
	size_t n = size * nmemb, done = 0;
	uint64_t left = s->req_size - s->req_body;

	if (n > left)
		n = (size_t)left;
	while (done < n) {
		size_t off = (size_t)((s->req_body + done) % PATTERN_SIZE);
		size_t chunk = PATTERN_SIZE - off;

		if (chunk > n - done)
			chunk = n - done;
		memcpy(buf + done, pattern + off, chunk);
		done += chunk;
	}
	s->req_body += n;
	r->body_total += n;
	return n;
}

/* Called once the connection is set up, just before the request is sent. */
static int on_prereq(void *ud, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
		     int conn_local_port)
{
	struct stream *s = ud;
	const struct speedtest_hooks *h = &s->run->st->hooks;

	/* The daemon watches the connection in the kernel from here. */
	if (h->rtt_conn)
		h->rtt_conn(h->ctx, s->run->dir, conn_local_ip, conn_local_port, conn_primary_ip,
			    conn_primary_port);
	s->connected = true;
	s->progress_t = mono_now();
	s->local_port = conn_local_port;
	s->fd = -1;
	return CURL_PREREQFUNC_OK;
}

/* Sockets are tracked so that an upload's unacknowledged bytes can be read
 * (SIOCOUTQ): curl does not tell a running transfer's socket. */
static int on_sockopt(void *ud, curl_socket_t fd, curlsocktype purpose)
{
	struct dir_run *r = ((struct stream *)ud)->run;

	(void)purpose;
	for (size_t i = 0; i < sizeof(r->fds) / sizeof(r->fds[0]); i++) {
		if (r->fds[i] < 0) {
			r->fds[i] = fd;
			break;
		}
	}
	return CURL_SOCKOPT_OK;
}

static int on_closesocket(void *ud, curl_socket_t fd)
{
	struct dir_run *r = ((struct stream *)ud)->run;

	for (size_t i = 0; i < sizeof(r->fds) / sizeof(r->fds[0]); i++)
		if (r->fds[i] == fd)
			r->fds[i] = -1;
	for (unsigned i = 0; i < r->n; i++)
		if (r->s[i].fd == fd)
			r->s[i].fd = -1;
	return close(fd);
}

/* The socket of the stream's current connection, found by its local port. */
static int stream_fd(struct stream *s)
{
	const struct dir_run *r = s->run;

	if (s->fd >= 0 || !s->connected || s->local_port <= 0)
		return s->fd;
	for (size_t i = 0; i < sizeof(r->fds) / sizeof(r->fds[0]); i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int port = -1;

		if (r->fds[i] < 0 || getsockname(r->fds[i], (struct sockaddr *)&ss, &len))
			continue;
		if (ss.ss_family == AF_INET)
			port = ntohs(((const struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			port = ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port);
		if (port == s->local_port) {
			s->fd = r->fds[i];
			break;
		}
	}
	return s->fd;
}

static void set_common(const struct dir_run *r, CURL *e)
{
	const struct speedtest_config *c = &r->st->cfg;

	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	/* The line is measured, not a proxy from the environment. */
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	/* Never beyond the direction's time cap. */
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)(fmin(c->connect_timeout_s, c->max_time_s) * 1000));
	curl_easy_setopt(e, CURLOPT_IPRESOLVE,
			 c->ip_version == 4 ? CURL_IPRESOLVE_V4 :
			 c->ip_version == 6 ? CURL_IPRESOLVE_V6 : CURL_IPRESOLVE_WHATEVER);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "ispmon/" ISPMON_VERSION " speedtest");
}

static int stream_setup(struct dir_run *r, struct stream *s)
{
	const struct speedtest_config *c = &r->st->cfg;
	CURL *e = curl_easy_init();

	if (!e)
		return -ENOMEM;
	s->easy = e;
	s->run = r;
	s->fd = -1;
	set_common(r, e);
	curl_easy_setopt(e, CURLOPT_PRIVATE, s);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s->errbuf);
	/* One TCP connection per stream: no HTTP/2 multiplexing. */
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)c->max_redirects);
	/* A safety net only: the loop ends every transfer long before. */
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
			 (long)((c->max_time_s + c->connect_timeout_s + 5) * 1000));
	curl_easy_setopt(e, CURLOPT_BUFFERSIZE, (long)RECV_BUFFER);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
	curl_easy_setopt(e, CURLOPT_PREREQDATA, s);
	curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, on_sockopt);
	curl_easy_setopt(e, CURLOPT_SOCKOPTDATA, s);
	curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_closesocket);
	curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, s);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
	if (r->dir == SPEEDTEST_UPLOAD) {
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(e, CURLOPT_READDATA, s);
		curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, (long)SEND_BUFFER);
	}
	return 0;
}

/* Start the stream's next request; 0, 1 if the stream is finished, -errno. */
static int stream_start(struct dir_run *r, struct stream *s)
{
	const char *tmpl = r->srv->url[r->dir];
	char url[MAX_URL];
	/* A file of unknown size is cut by the bytes received; sized requests
	 * (uploads, "{bytes}" downloads) add up to the cap. */
	bool sized = r->dir == SPEEDTEST_UPLOAD || r->srv->templated[SPEEDTEST_DOWNLOAD];
	uint64_t spent = sized ? r->committed : r->body_total;
	uint64_t left = r->cap > spent ? r->cap - spent : 0, size;

	if (!left || s->requests >= SPEEDTEST_REQUESTS_PER_STREAM) {
		s->finished = true;
		return 1;
	}
	size = r->req_size < left ? r->req_size : left;
	if (speedtest_url_expand(tmpl, size, url, sizeof(url)) < 0)
		return -ENOSPC;
	s->req_size = size;
	s->req_body = 0;
	s->connected = false;
	s->local_port = 0;
	s->fd = -1;
	s->progress_v = 0;
	s->progress_t = mono_now();
	s->fail = R_NONE;
	s->errbuf[0] = 0;
	curl_easy_setopt(s->easy, CURLOPT_URL, url);
	if (r->dir == SPEEDTEST_DOWNLOAD) {
		bool templ = r->srv->templated[SPEEDTEST_DOWNLOAD];

		s->req_limit = templ ? size : UINT64_MAX;
		curl_easy_setopt(s->easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)(templ ? size : 0));
	} else {
		curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)size);
	}
	if (curl_multi_add_handle(r->multi, s->easy) != CURLM_OK)
		return -EIO;
	s->active = true;
	s->requests++;
	if (sized)
		r->committed += size;
	return 0;
}

/* Payload of the current request that has reached the other end. */
static uint64_t stream_delivered(struct stream *s)
{
	curl_off_t sent = 0;
	int fd, outq = 0;

	if (!s->active)
		return 0;
	if (s->run->dir == SPEEDTEST_DOWNLOAD)
		return s->req_body;
	/* Upload: written to the socket, minus what is not acknowledged yet. */
	if (curl_easy_getinfo(s->easy, CURLINFO_SIZE_UPLOAD_T, &sent) != CURLE_OK || sent < 0)
		return 0;
	fd = stream_fd(s);
	if (fd >= 0 && ioctl(fd, SIOCOUTQ, &outq) == 0 && outq > 0) {
		if ((curl_off_t)outq >= sent)
			return 0;
		sent -= outq;
	}
	return (uint64_t)sent;
}

/* Progress of the current request as curl sees it (stall detection). */
static uint64_t stream_progress(const struct stream *s)
{
	curl_off_t sent = 0;

	if (s->run->dir == SPEEDTEST_DOWNLOAD)
		return s->req_body;
	curl_easy_getinfo(s->easy, CURLINFO_SIZE_UPLOAD_T, &sent);
	return sent > 0 ? (uint64_t)sent : 0;
}

/* Data used by the current request so far: payload both ways and headers. */
static uint64_t stream_request_used(const struct stream *s)
{
	curl_off_t up = 0;
	long req = 0, hdr = 0;
	uint64_t n = s->rx;

	curl_easy_getinfo(s->easy, CURLINFO_REQUEST_SIZE, &req);
	curl_easy_getinfo(s->easy, CURLINFO_HEADER_SIZE, &hdr);
	if (s->run->dir == SPEEDTEST_UPLOAD)
		curl_easy_getinfo(s->easy, CURLINFO_SIZE_UPLOAD_T, &up);
	n += (uint64_t)(req > 0 ? req : 0) + (uint64_t)(hdr > 0 ? hdr : 0) +
	     (uint64_t)(up > 0 ? up : 0);
	return n;
}

/* Take the handle out of the multi and book what its request used. */
static void stream_stop(struct dir_run *r, struct stream *s, uint64_t delivered)
{
	long http = 0;

	if (!s->active)
		return;
	if (curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &http) == CURLE_OK && http)
		r->http_code = http;
	s->used += stream_request_used(s);
	s->done += delivered;
	s->rx = 0;
	curl_multi_remove_handle(r->multi, s->easy);
	s->active = false;
}

/* strlcpy: truncation of a diagnostic is fine. */
static void copy_text(char *dst, size_t cap, const char *src)
{
	size_t n = 0;

	for (; src && src[n] && n + 1 < cap; n++)
		dst[n] = src[n];
	dst[n] = 0;
}

static void set_failure(struct dir_run *r, enum reason why, const char *detail)
{
	if (r->fail != R_NONE)
		return;
	r->fail = why;
	copy_text(r->detail, sizeof(r->detail), detail);
}

static uint64_t run_delivered(struct dir_run *r)
{
	uint64_t sum = 0;

	for (unsigned i = 0; i < r->n; i++)
		sum += r->s[i].done + stream_delivered(&r->s[i]);
	return sum;
}

static void probe_start(struct dir_run *r, double now)
{
	CURL *e = curl_easy_init();

	if (!e)
		return;
	set_common(r, e);
	curl_easy_setopt(e, CURLOPT_URL, r->srv->probe_url);
	curl_easy_setopt(e, CURLOPT_CONNECT_ONLY, 1L);
	curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
	curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)PROBE_TIMEOUT_MS);
	curl_easy_setopt(e, CURLOPT_PRIVATE, NULL);
	if (curl_multi_add_handle(r->multi, e) != CURLM_OK) {
		curl_easy_cleanup(e);
		return;
	}
	r->probe = e;
	r->probe_t = now;
}

static void probe_finish(struct dir_run *r, CURLcode code)
{
	curl_off_t conn = 0, dns = 0;

	if (code == CURLE_OK && r->probe_t - r->t0 >= r->st->cfg.grace_s - 1e-9 &&
	    r->n_rtt < MAX_RTT_SAMPLES &&
	    curl_easy_getinfo(r->probe, CURLINFO_CONNECT_TIME_T, &conn) == CURLE_OK &&
	    curl_easy_getinfo(r->probe, CURLINFO_NAMELOOKUP_TIME_T, &dns) == CURLE_OK &&
	    conn > dns)
		r->rtt[r->n_rtt++] = (double)(conn - dns) / 1e6;
	curl_multi_remove_handle(r->multi, r->probe);
	curl_easy_cleanup(r->probe);
	r->probe = NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
	if (!n)
		return NAN;
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* A finished transfer: book it, start the next request or record the failure. */
static void handle_done(struct dir_run *r, CURL *e, CURLcode code)
{
	struct stream *s = NULL;
	long http = 0;
	enum reason why;

	curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&s);
	if (!s) {
		if (e == r->probe)
			probe_finish(r, code);
		return;
	}
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &http);
	if (http)
		r->http_code = http;
	why = s->fail != R_NONE ? s->fail : curl_reason(code, http, s->connected);
	if (r->capped && s->fail == R_NONE && (why == R_NONE || code == CURLE_WRITE_ERROR)) {
		/* The cap ended it: not the server's fault. */
		stream_stop(r, s, s->req_body);
		s->finished = true;
		return;
	}
	if (why != R_NONE) {
		stream_stop(r, s, 0);
		if (code == CURLE_OK || code == CURLE_HTTP_RETURNED_ERROR) {
			char msg[64];

			snprintf(msg, sizeof(msg), "HTTP status %ld", http);
			set_failure(r, why, msg);
		} else {
			set_failure(r, why, s->errbuf[0] ? s->errbuf : curl_easy_strerror(code));
		}
		return;
	}
	/* A complete request: all of it arrived (an upload is answered only
	 * once the server has read the whole body). A shorter download than
	 * asked for gives the rest back to the cap. */
	if (r->dir == SPEEDTEST_DOWNLOAD && r->srv->templated[SPEEDTEST_DOWNLOAD] &&
	    s->req_body < s->req_size)
		r->committed -= s->req_size - s->req_body;
	stream_stop(r, s, r->dir == SPEEDTEST_DOWNLOAD ? s->req_body : stream_progress(s));
	if (stream_start(r, s) < 0)
		set_failure(r, R_OTHER, "cannot start the next request");
}

/* Every window: stalls, the meter, the latency probe. true: stop (stable). */
static bool on_window(struct dir_run *r, double now)
{
	const struct speedtest_config *c = &r->st->cfg;
	const struct speedtest_hooks *h = &r->st->hooks;
	double t = now - r->t0;
	uint64_t delivered;

	for (unsigned i = 0; i < r->n; i++) {
		struct stream *s = &r->s[i];
		uint64_t v;

		if (!s->active || !s->connected)
			continue; /* the connect timeout covers the connect phase */
		v = stream_progress(s);
		if (v != s->progress_v) {
			s->progress_v = v;
			s->progress_t = now;
		} else if (now - s->progress_t >= c->stall_s) {
			char msg[96];

			snprintf(msg, sizeof(msg), "no data for %.1f s", now - s->progress_t);
			set_failure(r, R_STALLED, msg);
			return false;
		}
	}
	if (!r->rtt_begun && t >= c->grace_s - 1e-9) {
		r->rtt_begun = true;
		if (h->rtt_begin)
			h->rtt_begin(h->ctx, r->dir);
	}
	if (!h->rtt_end && !r->probe)
		probe_start(r, now);
	delivered = run_delivered(r);
	if (log_get_level() == LOG_DEBUG && r->meter.n)
		log_debug("speedtest window", "direction=%s t=%.3f bytes=%llu rate_Bps=%.0f",
			  speedtest_dir_names[r->dir], t, (unsigned long long)delivered,
			  (double)(delivered - r->meter.b[r->meter.n - 1]) /
			  (t - r->meter.t[r->meter.n - 1]));
	return speedtest_meter_add(&r->meter, t, delivered);
}

/* Run one direction; fills res (status OK or FAILED, or SKIPPED "stopped"). */
static void run_direction(struct speedtest *st, unsigned server, enum speedtest_dir dir,
			  struct speedtest_result *res)
{
	const struct speedtest_config *c = &st->cfg;
	struct dir_run *r = calloc(1, sizeof(*r));
	const char *end = "";
	double next_tick, now;
	bool stopped = false;

	memset(res, 0, sizeof(*res));
	res->reason = "";
	res->end = "";
	res->loaded_rtt_s = NAN;
	res->retransmits = -1;
	if (!r) {
		res->status = SPEEDTEST_FAILED;
		res->reason = reason_names[R_OTHER];
		snprintf(res->detail, sizeof(res->detail), "out of memory");
		return;
	}
	pthread_once(&pattern_once, pattern_init);
	r->st = st;
	r->srv = &st->srv[server];
	r->dir = dir;
	r->n = c->streams;
	r->cap = c->max_bytes;
	r->req_size = (c->max_bytes + c->streams - 1) / c->streams;
	for (size_t i = 0; i < sizeof(r->fds) / sizeof(r->fds[0]); i++)
		r->fds[i] = -1;
	speedtest_meter_init(&r->meter, c->grace_s, SPEEDTEST_WINDOW_S, SPEEDTEST_STABLE_WINDOWS,
			     SPEEDTEST_STABLE_TOL, SPEEDTEST_MIN_MEASURE_S);
	r->multi = curl_multi_init();
	r->headers = curl_slist_append(NULL, "Expect:");
	r->headers = r->headers ? curl_slist_append(r->headers, "Cache-Control: no-cache") : NULL;
	if (!r->multi || !r->headers)
		set_failure(r, R_OTHER, "libcurl setup failed");
	for (unsigned i = 0; i < r->n && r->fail == R_NONE; i++)
		if (stream_setup(r, &r->s[i]))
			set_failure(r, R_OTHER, "libcurl setup failed");

	pthread_mutex_lock(&st->lock);
	st->cur_multi = r->multi;
	st->running = true;
	pthread_mutex_unlock(&st->lock);

	r->t0 = now = mono_now();
	next_tick = r->t0 + SPEEDTEST_WINDOW_S;
	for (unsigned i = 0; i < r->n && r->fail == R_NONE; i++)
		if (stream_start(r, &r->s[i]) < 0)
			set_failure(r, R_OTHER, "cannot start a request");
	if (r->fail == R_NONE)
		speedtest_meter_add(&r->meter, 0, 0);
	while (r->fail == R_NONE) {
		CURLMsg *msg;
		int running = 0, left, wait_ms;
		bool any = false;

		if (atomic_load(&st->stopping)) {
			stopped = true;
			break;
		}
		wait_ms = (int)ceil((next_tick - now) * 1000);
		if (wait_ms < 0)
			wait_ms = 0;
		curl_multi_poll(r->multi, NULL, 0, wait_ms, NULL);
		curl_multi_perform(r->multi, &running);
		while ((msg = curl_multi_info_read(r->multi, &left)))
			if (msg->msg == CURLMSG_DONE)
				handle_done(r, msg->easy_handle, msg->data.result);
		if (r->fail != R_NONE)
			break;
		now = mono_now();
		if (r->capped) {
			speedtest_meter_add(&r->meter, now - r->t0, run_delivered(r));
			end = "byte_cap";
			break;
		}
		if (now >= next_tick) {
			if (on_window(r, now)) {
				end = r->meter.stable ? "stable" : "time_cap";
				break;
			}
			if (r->fail != R_NONE)
				break;
			while (next_tick <= now)
				next_tick += SPEEDTEST_WINDOW_S;
		}
		if (now - r->t0 >= c->max_time_s) {
			speedtest_meter_add(&r->meter, now - r->t0, run_delivered(r));
			end = "time_cap";
			break;
		}
		for (unsigned i = 0; i < r->n; i++)
			any = any || r->s[i].active;
		if (!any) {
			speedtest_meter_add(&r->meter, now - r->t0, run_delivered(r));
			end = (r->committed >= r->cap || r->body_total >= r->cap) ? "byte_cap" : "requests";
			break;
		}
	}
	now = mono_now();
	res->elapsed_s = now - r->t0;
	for (unsigned i = 0; i < r->n; i++) {
		if (!r->s[i].easy)
			continue;
		stream_stop(r, &r->s[i], 0);
		res->bytes_used += r->s[i].used;
		curl_easy_cleanup(r->s[i].easy);
	}
	if (r->probe) {
		curl_multi_remove_handle(r->multi, r->probe);
		curl_easy_cleanup(r->probe);
	}
	pthread_mutex_lock(&st->lock);
	st->cur_multi = NULL;
	st->running = false;
	pthread_mutex_unlock(&st->lock);
	if (r->multi)
		curl_multi_cleanup(r->multi);
	curl_slist_free_all(r->headers);

	if (st->hooks.rtt_end && r->rtt_begun)
		res->loaded_rtt_s = st->hooks.rtt_end(st->hooks.ctx, dir, &res->retransmits);
	else if (!st->hooks.rtt_end)
		res->loaded_rtt_s = median(r->rtt, r->n_rtt);
	res->http_code = r->http_code;
	res->end = end;
	if (stopped) {
		res->status = SPEEDTEST_SKIPPED;
		res->reason = "stopped";
		log_info("speedtest interrupted: stopping", "server=%s direction=%s elapsed_s=%.2f",
			 r->srv->label, speedtest_dir_names[dir], res->elapsed_s);
	} else if (r->fail != R_NONE) {
		res->status = SPEEDTEST_FAILED;
		res->reason = reason_names[r->fail];
		copy_text(res->detail, sizeof(res->detail), r->detail);
	} else {
		double from = 0, to = 0;

		if (speedtest_meter_result(&r->meter, &res->bytes_per_s, &from, &to) == 0) {
			res->status = SPEEDTEST_OK;
			res->ramp_s = from;
			res->measured_s = to - from;
		} else {
			res->status = SPEEDTEST_FAILED;
			res->reason = reason_names[!strcmp(end, "byte_cap") ? R_BYTE_CAP :
						   !strcmp(end, "requests") ? R_TOO_SHORT : R_TIMEOUT];
			snprintf(res->detail, sizeof(res->detail),
				 "nothing measured after the %.2f s grace period (ended by %s after %.2f s)",
				 c->grace_s, end, res->elapsed_s);
		}
	}
	free(r);
}

static enum reason reason_index(const char *name)
{
	for (int i = 0; i < R_MAX; i++)
		if (!strcmp(reason_names[i], name))
			return (enum reason)i;
	return R_OTHER;
}

static const char *rtt_source(const struct speedtest *st)
{
	if (!st->hooks.rtt_end)
		return "handshake";
	return st->hooks.rtt_source ? st->hooks.rtt_source : "hooks";
}

int speedtest_run_once(struct speedtest *st, unsigned server, unsigned dirs,
		       struct speedtest_result res[SPEEDTEST_DIRS])
{
	const struct speedtest_config *c = &st->cfg;
	struct server *srv;
	int status = SPEEDTEST_SKIPPED;
	bool attempted = false, all_ok = true;

	for (int d = 0; d < SPEEDTEST_DIRS; d++) {
		memset(&res[d], 0, sizeof(res[d]));
		res[d].reason = "";
		res[d].end = "";
		res[d].loaded_rtt_s = NAN;
		res[d].retransmits = -1;
	}
	if (server >= c->n_servers)
		return -EINVAL;
	srv = &st->srv[server];
	pthread_mutex_lock(&st->run_lock);
	if (atomic_load(&st->stopping)) {
		pthread_mutex_unlock(&st->run_lock);
		return -ECANCELED;
	}
	if (st->hooks.line_busy && c->busy_share < 1) {
		double share = st->hooks.line_busy(st->hooks.ctx);

		if (share > c->busy_share) {
			pthread_mutex_lock(&st->lock);
			st->postponed++;
			pthread_mutex_unlock(&st->lock);
			for (int d = 0; d < SPEEDTEST_DIRS; d++) {
				if (!(dirs & SPEEDTEST_DIR_BIT(d)) || !srv->url[d])
					continue;
				res[d].status = SPEEDTEST_POSTPONED;
				res[d].reason = "busy";
			}
			log_info("speedtest postponed: the line is busy", "server=%s busy_share=%.2f limit=%.2f",
				 srv->label, share, c->busy_share);
			pthread_mutex_unlock(&st->run_lock);
			return SPEEDTEST_POSTPONED;
		}
	}
	if (st->hooks.capacity_fresh && st->hooks.capacity_fresh(st->hooks.ctx)) {
		pthread_mutex_lock(&st->lock);
		st->skipped[SK_CAPACITY_FRESH]++;
		pthread_mutex_unlock(&st->lock);
		for (int d = 0; d < SPEEDTEST_DIRS; d++) {
			if (!(dirs & SPEEDTEST_DIR_BIT(d)) || !srv->url[d])
				continue;
			res[d].status = SPEEDTEST_SKIPPED;
			res[d].reason = skip_names[SK_CAPACITY_FRESH];
		}
		log_info("speedtest skipped: fresh passive capacity estimate", "server=%s", srv->label);
		pthread_mutex_unlock(&st->run_lock);
		return SPEEDTEST_SKIPPED;
	}
	for (int d = 0; d < SPEEDTEST_DIRS; d++) {
		/* Worst case: the cap, a receive buffer per stream, headers. */
		uint64_t need = c->max_bytes + (uint64_t)c->streams * RECV_BUFFER + HEADER_SLACK;
		struct speedtest_result *rs = &res[d];
		long day;
		bool allowed;
		uint64_t used_today;

		if (!(dirs & SPEEDTEST_DIR_BIT(d)) || !srv->url[d])
			continue;
		if (atomic_load(&st->stopping))
			break;
		day = speedtest_local_day(time(NULL));
		pthread_mutex_lock(&st->lock);
		allowed = speedtest_budget_allows(&st->budget, day, need);
		if (!allowed)
			st->skipped[SK_BUDGET]++;
		used_today = speedtest_budget_used(&st->budget, day);
		pthread_mutex_unlock(&st->lock);
		if (!allowed) {
			rs->status = SPEEDTEST_SKIPPED;
			rs->reason = skip_names[SK_BUDGET];
			log_info("speedtest skipped: daily budget", "server=%s direction=%s used_bytes=%llu "
				 "budget_bytes=%llu need_bytes=%llu", srv->label, speedtest_dir_names[d],
				 (unsigned long long)used_today, (unsigned long long)c->budget_bytes,
				 (unsigned long long)need);
			continue;
		}
		run_direction(st, server, (enum speedtest_dir)d, rs);
		day = speedtest_local_day(time(NULL));
		pthread_mutex_lock(&st->lock);
		speedtest_budget_charge(&st->budget, day, rs->bytes_used);
		used_today = speedtest_budget_used(&st->budget, day);
		st->data_used += rs->bytes_used;
		if (rs->status == SPEEDTEST_OK) {
			srv->have[d] = true;
			srv->bps[d] = rs->bytes_per_s;
			srv->stable[d] = !strcmp(rs->end, "stable");
			srv->duration[d] = rs->elapsed_s;
			srv->runs[d][0]++;
			st->last_server[d] = server;
			if (isfinite(rs->loaded_rtt_s)) {
				st->have_rtt[d] = true;
				st->loaded_rtt[d] = rs->loaded_rtt_s;
			}
			st->retransmits[d] = rs->retransmits;
			st->last_success = real_now();
		} else if (rs->status == SPEEDTEST_FAILED) {
			srv->runs[d][1]++;
			srv->failures[reason_index(rs->reason)]++;
		}
		pthread_mutex_unlock(&st->lock);
		state_save(st, day, used_today);
		if (rs->status == SPEEDTEST_OK) {
			attempted = true;
			log_info("speedtest", "server=%s direction=%s result=ok bytes_per_second=%.0f "
				 "loaded_rtt_ms=%.1f rtt_source=%s retransmits=%lld elapsed_s=%.2f ramp_s=%.2f "
				 "measured_s=%.2f end=%s bytes_used=%llu", srv->label, speedtest_dir_names[d],
				 rs->bytes_per_s, rs->loaded_rtt_s * 1e3, rtt_source(st),
				 (long long)rs->retransmits, rs->elapsed_s, rs->ramp_s, rs->measured_s, rs->end,
				 (unsigned long long)rs->bytes_used);
		} else if (rs->status == SPEEDTEST_FAILED) {
			char q[200];

			attempted = true;
			all_ok = false;
			log_warn("speedtest failed", "server=%s direction=%s reason=%s http_code=%ld "
				 "elapsed_s=%.2f bytes_used=%llu detail=%s", srv->label,
				 speedtest_dir_names[d], rs->reason, rs->http_code, rs->elapsed_s,
				 (unsigned long long)rs->bytes_used, log_quote(q, sizeof(q), rs->detail));
			/* The same host will not answer the upload either. */
			if (d == SPEEDTEST_DOWNLOAD && srv->url[SPEEDTEST_UPLOAD] &&
			    (!strcmp(rs->reason, "dns") || !strcmp(rs->reason, "connect") ||
			     !strcmp(rs->reason, "tls"))) {
				char up[SPEEDTEST_LABEL_MAX];

				if (!speedtest_url_label(srv->url[SPEEDTEST_UPLOAD], up, sizeof(up), NULL) &&
				    !strcmp(up, srv->label))
					break;
			}
		}
	}
	if (attempted) {
		pthread_mutex_lock(&st->lock);
		srv->success = all_ok;
		pthread_mutex_unlock(&st->lock);
		status = all_ok ? SPEEDTEST_OK : SPEEDTEST_FAILED;
	}
	pthread_mutex_unlock(&st->run_lock);
	return status;
}

/* ---- scheduler ---- */

static void sleep_until(struct speedtest *st, double when)
{
	struct timespec ts;
	double whole;

	ts.tv_nsec = (long)(modf(when, &whole) * 1e9);
	ts.tv_sec = (time_t)whole;
	pthread_mutex_lock(&st->lock);
	while (!atomic_load(&st->stopping) && mono_now() < when)
		if (pthread_cond_timedwait(&st->cond, &st->lock, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&st->lock);
}

static void *scheduler(void *arg)
{
	struct speedtest *st = arg;
	const struct speedtest_config *c = &st->cfg;
	struct speedtest_result res[SPEEDTEST_DIRS];
	unsigned postpones = 0;
	double next;

	pthread_mutex_lock(&st->lock);
	next = mono_now() + c->first_delay_s + rng_u01(st) * c->jitter_s;
	pthread_mutex_unlock(&st->lock);
	while (!atomic_load(&st->stopping)) {
		unsigned server;
		double u;
		int rc;

		sleep_until(st, next);
		if (atomic_load(&st->stopping))
			break;
		pthread_mutex_lock(&st->lock);
		server = st->next_server;
		pthread_mutex_unlock(&st->lock);
		rc = speedtest_run_once(st, server, SPEEDTEST_BOTH, res);
		if (rc == -ECANCELED)
			break;
		pthread_mutex_lock(&st->lock);
		u = rng_u01(st);
		if (rc == SPEEDTEST_POSTPONED && postpones < c->max_postpones) {
			postpones++;
			next = mono_now() + speedtest_next_delay(c->postpone_s, c->postpone_s / 10, u);
			pthread_mutex_unlock(&st->lock);
			continue;
		}
		if (rc == SPEEDTEST_POSTPONED)
			st->skipped[SK_BUSY]++;
		postpones = 0;
		st->next_server = (server + 1) % c->n_servers;
		next = mono_now() + speedtest_next_delay(c->interval_s, c->jitter_s, u);
		pthread_mutex_unlock(&st->lock);
	}
	return NULL;
}

int speedtest_start(struct speedtest *st)
{
	int err;

	if (!st->cfg.interval_s || !st->cfg.n_servers || st->thread_started)
		return 0;
	if (atomic_load(&st->stopping))
		return -ECANCELED;
	err = pthread_create(&st->thread, NULL, scheduler, st);
	if (err)
		return -err;
	st->thread_started = true;
	log_info("speedtest scheduled", "servers=%u interval_s=%.0f jitter_s=%.0f first_delay_s=%.0f",
		 st->cfg.n_servers, st->cfg.interval_s, st->cfg.jitter_s, st->cfg.first_delay_s);
	return 0;
}

void speedtest_stop(struct speedtest *st)
{
	pthread_mutex_lock(&st->lock);
	atomic_store(&st->stopping, true);
	if (st->cur_multi)
		curl_multi_wakeup(st->cur_multi);
	pthread_cond_broadcast(&st->cond);
	pthread_mutex_unlock(&st->lock);
	if (st->thread_started) {
		pthread_join(st->thread, NULL);
		st->thread_started = false;
	}
}

/* ---- rendering ---- */

void speedtest_render(struct speedtest *st, struct mbuf *b)
{
	const struct speedtest_config *c = &st->cfg;
	char labels[192];
	long day = speedtest_local_day(time(NULL));

	pthread_mutex_lock(&st->lock);
	prom_header(b, "ispmon_speedtest_bytes_per_second", "gauge",
		    "Payload rate of the last successful speed test, ramp-up excluded, by direction and server.");
	for (unsigned i = 0; i < c->n_servers; i++)
		for (int d = 0; d < SPEEDTEST_DIRS; d++) {
			if (!st->srv[i].have[d])
				continue;
			snprintf(labels, sizeof(labels), "direction=\"%s\",server=\"%s\"",
				 speedtest_dir_names[d], st->srv[i].label);
			prom_f64(b, "ispmon_speedtest_bytes_per_second", labels, st->srv[i].bps[d]);
		}
	prom_header(b, "ispmon_speedtest_stable", "gauge",
		    "1 if the last successful speed test stopped because its rate was stable, 0 if a cap ended it.");
	for (unsigned i = 0; i < c->n_servers; i++)
		for (int d = 0; d < SPEEDTEST_DIRS; d++) {
			if (!st->srv[i].have[d])
				continue;
			snprintf(labels, sizeof(labels), "direction=\"%s\",server=\"%s\"",
				 speedtest_dir_names[d], st->srv[i].label);
			prom_u64(b, "ispmon_speedtest_stable", labels, st->srv[i].stable[d]);
		}
	prom_header(b, "ispmon_speedtest_duration_seconds", "gauge",
		    "How long the last successful speed test of a direction took, connects included.");
	for (unsigned i = 0; i < c->n_servers; i++)
		for (int d = 0; d < SPEEDTEST_DIRS; d++) {
			if (!st->srv[i].have[d])
				continue;
			snprintf(labels, sizeof(labels), "direction=\"%s\",server=\"%s\"",
				 speedtest_dir_names[d], st->srv[i].label);
			prom_f64(b, "ispmon_speedtest_duration_seconds", labels, st->srv[i].duration[d]);
		}
	prom_header(b, "ispmon_speedtest_loaded_rtt_seconds", "gauge",
		    "Median round-trip time measured during the last successful speed test's load (latency under load).");
	for (int d = 0; d < SPEEDTEST_DIRS; d++) {
		if (!st->have_rtt[d])
			continue;
		snprintf(labels, sizeof(labels), "direction=\"%s\"", speedtest_dir_names[d]);
		prom_f64(b, "ispmon_speedtest_loaded_rtt_seconds", labels, st->loaded_rtt[d]);
	}
	prom_header(b, "ispmon_speedtest_rtt_source_info", "gauge",
		    "Where the loaded RTT comes from: kernel (the TCP hooks' view of the test's own "
		    "connections) or handshake (median TCP handshake time); the value is always 1.");
	mbuf_printf(b, "ispmon_speedtest_rtt_source_info{source=\"");
	mbuf_label_value(b, rtt_source(st));
	mbuf_printf(b, "\"} 1\n");
	prom_header(b, "ispmon_speedtest_retransmits", "gauge",
		    "Segments the last successful speed test's connections retransmitted during the load.");
	for (int d = 0; d < SPEEDTEST_DIRS; d++) {
		if (st->retransmits[d] < 0)
			continue;
		snprintf(labels, sizeof(labels), "direction=\"%s\"", speedtest_dir_names[d]);
		prom_u64(b, "ispmon_speedtest_retransmits", labels, (uint64_t)st->retransmits[d]);
	}
	if (st->last_success > 0) {
		prom_header(b, "ispmon_speedtest_timestamp_seconds", "gauge",
			    "Unix time of the last successful speed test.");
		prom_f64(b, "ispmon_speedtest_timestamp_seconds", NULL, floor(st->last_success));
	}
	prom_header(b, "ispmon_speedtest_runs_total", "counter",
		    "Speed tests run, by direction, server and result.");
	for (unsigned i = 0; i < c->n_servers; i++)
		for (int d = 0; d < SPEEDTEST_DIRS; d++)
			for (int ok = 0; ok < 2; ok++) {
				if (!st->srv[i].url[d])
					continue;
				snprintf(labels, sizeof(labels), "direction=\"%s\",result=\"%s\",server=\"%s\"",
					 speedtest_dir_names[d], ok ? "failure" : "success",
					 st->srv[i].label);
				prom_u64(b, "ispmon_speedtest_runs_total", labels, st->srv[i].runs[d][ok]);
			}
	prom_header(b, "ispmon_speedtest_data_used_bytes_total", "counter",
		    "Bytes the speed tests sent and received (payload and HTTP headers).");
	prom_u64(b, "ispmon_speedtest_data_used_bytes_total", NULL, st->data_used);
	prom_header(b, "ispmon_speedtest_budget_used_bytes", "gauge",
		    "Bytes the speed tests used today (local calendar day).");
	prom_u64(b, "ispmon_speedtest_budget_used_bytes", NULL, speedtest_budget_used(&st->budget, day));
	if (c->budget_bytes) {
		prom_header(b, "ispmon_speedtest_budget_bytes", "gauge",
			    "Daily speed-test data budget.");
		prom_u64(b, "ispmon_speedtest_budget_bytes", NULL, c->budget_bytes);
	}
	prom_header(b, "ispmon_speedtest_postponed_total", "counter",
		    "Speed tests postponed because the household was using the line.");
	prom_u64(b, "ispmon_speedtest_postponed_total", NULL, st->postponed);
	prom_header(b, "ispmon_speedtest_skipped_total", "counter",
		    "Speed tests (or directions) not run, by reason.");
	for (int k = 0; k < SK_MAX; k++) {
		snprintf(labels, sizeof(labels), "reason=\"%s\"", skip_names[k]);
		prom_u64(b, "ispmon_speedtest_skipped_total", labels, st->skipped[k]);
	}
	prom_header(b, "ispmon_speedtest_running", "gauge", "1 while a speed test runs.");
	prom_u64(b, "ispmon_speedtest_running", NULL, st->running);
	pthread_mutex_unlock(&st->lock);
}

void speedtest_render_probe_success(struct speedtest *st, struct mbuf *b)
{
	char labels[160];

	pthread_mutex_lock(&st->lock);
	for (unsigned i = 0; i < st->cfg.n_servers; i++) {
		if (st->srv[i].success < 0)
			continue;
		snprintf(labels, sizeof(labels), "probe=\"speedtest\",target=\"%s\"", st->srv[i].label);
		prom_u64(b, "ispmon_probe_success", labels, (uint64_t)st->srv[i].success);
	}
	pthread_mutex_unlock(&st->lock);
}

void speedtest_render_probe_failures(struct speedtest *st, struct mbuf *b)
{
	char labels[192];

	pthread_mutex_lock(&st->lock);
	for (unsigned i = 0; i < st->cfg.n_servers; i++)
		for (int k = 1; k < R_MAX; k++) {
			if (!st->srv[i].failures[k])
				continue;
			snprintf(labels, sizeof(labels), "probe=\"speedtest\",reason=\"%s\",target=\"%s\"",
				 reason_names[k], st->srv[i].label);
			prom_u64(b, "ispmon_probe_failures_total", labels, st->srv[i].failures[k]);
		}
	pthread_mutex_unlock(&st->lock);
}

void speedtest_snapshot(struct speedtest *st, struct speedtest_snap *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&st->lock);
	for (int d = 0; d < SPEEDTEST_DIRS; d++) {
		const struct server *srv = &st->srv[st->last_server[d]];

		out->have[d] = srv->have[d];
		out->bps[d] = srv->have[d] ? srv->bps[d] : NAN;
		snprintf(out->server[d], sizeof(out->server[d]), "%s", srv->have[d] ? srv->label : "");
		out->loaded_rtt_s[d] = st->have_rtt[d] ? st->loaded_rtt[d] : NAN;
	}
	out->last_success = st->last_success > 0 ? floor(st->last_success) : 0;
	out->running = st->running;
	pthread_mutex_unlock(&st->lock);
}
