/*
 * libFuzzer: the speed test's text helpers. The first byte picks one:
 *   0 speedtest_parse_bytes: a value it accepts prints back as itself
 *   1 speedtest_url_label into a buffer of exactly the size the second
 *     byte gives: the label fits, is lowercase, has no '@' (userinfo
 *     never shows), and the port is 1..65535
 *   2 speedtest_url_expand into a buffer of exactly that size, with the
 *     byte count from the next 8 bytes: the output fits and has no
 *     "{bytes}" left
 *   3 the rate meter on (time, bytes) pairs from the input: any result is
 *     a finite, non-negative rate over a period inside the samples
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "speedtest.h"

static void fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_speedtest: %s (%s)\n", what, detail ? detail : "");
	abort();
}

static void bytes_case(const char *s)
{
	uint64_t v, back;
	char num[32];

	if (speedtest_parse_bytes(s, &v))
		return;
	/* Exact as long as a double holds the integer. */
	snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
	if (v < (1ULL << 53) && (speedtest_parse_bytes(num, &back) || back != v))
		fail("parse_bytes: a value does not read back as itself", s);
}

static void label_case(const char *url, size_t cap)
{
	char *label = malloc(cap ? cap : 1);
	unsigned port = 0;

	if (!label)
		return;
	if (!speedtest_url_label(url, label, cap, &port)) {
		if (!cap || !memchr(label, 0, cap))
			fail("url_label: label overruns its buffer", url);
		if (!label[0])
			fail("url_label: empty label", url);
		if (strchr(label, '@'))
			fail("url_label: userinfo in the label", url);
		for (const char *p = label; *p; p++)
			if (isupper((unsigned char)*p))
				fail("url_label: not lowercase", url);
		if (!port || port > 65535)
			fail("url_label: bad port", url);
	}
	free(label);
}

static void expand_case(const char *tmpl, size_t cap, uint64_t bytes)
{
	char *out = malloc(cap ? cap : 1);
	int n;

	if (!out)
		return;
	n = speedtest_url_expand(tmpl, bytes, out, cap);
	if (n >= 0) {
		if (!cap || !memchr(out, 0, cap))
			fail("url_expand: output overruns its buffer", tmpl);
		if (strstr(out, "{bytes}") && !strstr(tmpl, "{bytes{bytes}"))
			fail("url_expand: {bytes} left in the output", tmpl);
	} else if (n != -ENOSPC) {
		fail("url_expand: unexpected error", tmpl);
	}
	free(out);
}

static void meter_case(const uint8_t *p, size_t n)
{
	struct speedtest_meter *m = malloc(sizeof(*m));
	double bps, from, to, t = 0;
	uint64_t b = 0;

	if (!m || n < 4) {
		free(m);
		return;
	}
	speedtest_meter_init(m, p[0] / 64.0, 0.05 + p[1] / 100.0, p[2] % 8,
			     p[3] / 255.0, SPEEDTEST_MIN_MEASURE_S);
	for (size_t i = 4; i + 3 <= n; i += 3) {
		/* Small steps in time (some zero or back), bytes by 0..65535. */
		t += ((int)p[i] - 16) / 100.0;
		b += (uint64_t)p[i + 1] << 8 | p[i + 2];
		if (speedtest_meter_add(m, t, b))
			break;
	}
	if (!speedtest_meter_result(m, &bps, &from, &to)) {
		if (!isfinite(bps) || bps < 0)
			fail("meter: rate not finite or negative", NULL);
		if (!(from <= to) || from < m->t[0] || to > m->t[m->n - 1])
			fail("meter: period outside the samples", NULL);
	}
	free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;
	size_t skip;

	if (size < 1)
		return 0;
	skip = data[0] % 4 == 2 ? 10 : 2;
	if (size < skip)
		return 0;
	if (data[0] % 4 == 3) {
		meter_case(data + 1, size - 1);
		return 0;
	}
	s = malloc(size - skip + 1);
	if (!s)
		return 0;
	memcpy(s, data + skip, size - skip);
	s[size - skip] = 0;
	switch (data[0] % 4) {
	case 0:
		bytes_case(s);
		break;
	case 1:
		label_case(s, data[1]);
		break;
	case 2: {
		uint64_t bytes = 0;

		for (int i = 0; i < 8; i++)
			bytes = bytes << 8 | data[2 + i];
		expand_case(s, data[1] * 2u, bytes);
		break;
	}
	}
	free(s);
	return 0;
}
