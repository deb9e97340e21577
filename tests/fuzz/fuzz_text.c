/*
 * libFuzzer: the escapers that carry outside text (host names, URLs,
 * interface and device names, libbpf/libmicrohttpd messages) into the log
 * and the Prometheus page.
 *   log_quote into a buffer of the size the first byte gives: always
 *     terminated inside it, one quoted value, no line break or control
 *     character, no unescaped quote (no log-line injection)
 *   mbuf_label_value: unescaping its output gives the input back, and no
 *     raw newline or unescaped quote ends up in the label
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_text: %s\n", what);
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t cap, n;
	char *s, *q;
	struct mbuf b;

	if (size < 1)
		return 0;
	cap = data[0];
	s = malloc(size);
	q = malloc(cap ? cap : 1);
	if (!s || !q) {
		free(s);
		free(q);
		return 0;
	}
	memcpy(s, data + 1, size - 1);
	s[size - 1] = 0;

	log_quote(q, cap, s);
	if (cap) {
		if (!memchr(q, 0, cap))
			fail("log_quote: not terminated inside the buffer");
		n = strlen(q);
		if (cap >= 3 && (n < 2 || q[0] != '"' || q[n - 1] != '"'))
			fail("log_quote: not one quoted value");
		for (size_t i = 1; i + 1 < n; i++) {
			if ((unsigned char)q[i] < 0x20)
				fail("log_quote: control character in the value");
			if (q[i] == '\\') {
				if (q[i + 1] != '\\' && q[i + 1] != '"')
					fail("log_quote: stray backslash");
				i++;
			} else if (q[i] == '"') {
				fail("log_quote: unescaped quote");
			}
		}
	}

	mbuf_init(&b);
	mbuf_label_value(&b, s);
	if (!b.err) {
		size_t j = 0, k = 0;

		if (b.len && (!b.p || b.p[b.len] != 0))
			fail("label_value: buffer not terminated");
		for (; j < b.len; j++, k++) {
			char c = b.p[j];

			if (c == '\n' || c == '"')
				fail("label_value: raw newline or quote");
			if (c == '\\') {
				j++;
				if (j >= b.len)
					fail("label_value: trailing backslash");
				c = b.p[j] == 'n' ? '\n' : b.p[j];
				if (b.p[j] != 'n' && b.p[j] != '\\' && b.p[j] != '"')
					fail("label_value: unknown escape");
			}
			if (s[k] != c)
				fail("label_value: does not unescape to its input");
		}
		if (s[k] != 0)
			fail("label_value: input cut short");
	}
	mbuf_free(&b);
	free(s);
	free(q);
	return 0;
}
