/*
 * libFuzzer: the DHCP leases file (dnsmasq format) that names the LAN
 * devices. Its lines come from the devices themselves (a DHCP client picks
 * its own host name), so the parser and the labels it yields get hostile
 * input. Each input is a leases file; the devices table is fed one device
 * per lease MAC found in the input (and a few without) and rendered:
 *   - no crash or sanitizer report in the parser or the renderer
 *   - every device label is a usable Prometheus label value (no quote,
 *     backslash or newline; not empty)
 *   - no two samples of a family share their labels (a duplicate series
 *     makes Prometheus drop samples), "other" included
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "devices.h"
#include "metrics.h"

#define MAX_DEVS 64

static void fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_leases: %s: %.200s\n", what, detail ? detail : "");
	abort();
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every sample line: labels well-formed, no sample twice. */
static void check_page(char *page)
{
	char **lines = NULL;
	size_t n = 0, cap = 0;

	for (char *l = strtok(page, "\n"); l; l = strtok(NULL, "\n")) {
		char *sp, *dev;

		if (l[0] == '#')
			continue;
		sp = strrchr(l, ' ');
		if (!sp)
			fail("sample without a value", l);
		*sp = 0; /* keep name{labels} */
		dev = strstr(l, "device=\"");
		if (dev) {
			char *end = strchr(dev + 8, '"');

			if (!end || end == dev + 8)
				fail("empty or unterminated device label", l);
			for (char *c = dev + 8; c < end; c++)
				if (*c == '\\' || (unsigned char)*c < 0x20)
					fail("device label needs escaping", l);
		}
		if (n == cap) {
			char **nl = realloc(lines, (cap = cap ? cap * 2 : 256) * sizeof(*lines));

			if (!nl)
				break;
			lines = nl;
		}
		lines[n++] = l;
	}
	qsort(lines, n, sizeof(*lines), cmp_str);
	for (size_t i = 1; i < n; i++)
		if (!strcmp(lines[i - 1], lines[i]))
			fail("duplicate series", lines[i]);
	free(lines);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ispmon_dev_key keys[MAX_DEVS];
	struct devices *d;
	char path[64];
	unsigned nk = 0;
	struct mbuf b;
	int fd;

	fd = memfd_create("leases", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size || devices_new(4, &d)) {
		close(fd);
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	devices_load_leases(d, path);

	/* Devices: every "xx:xx:xx:xx:xx:xx" in the input, then two more. */
	memset(keys, 0, sizeof(keys));
	for (size_t i = 0; i + 17 <= size && nk < MAX_DEVS - 2; i++) {
		unsigned m[6];
		char tmp[18];

		if (data[i + 2] != ':')
			continue;
		memcpy(tmp, data + i, 17);
		tmp[17] = 0;
		if (sscanf(tmp, "%2x:%2x:%2x:%2x:%2x:%2x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6)
			continue;
		for (int k = 0; k < 6; k++)
			keys[nk].addr[k] = (uint8_t)m[k];
		nk++;
	}
	keys[nk].addr[0] = 0x02;
	keys[nk++].addr[5] = 0xfe;
	keys[nk].addr[0] = 0x02;
	keys[nk++].addr[5] = 0xff;
	/* Two rounds, traffic growing: labels for the 4 largest, the rest in
	 * "other". */
	for (int round = 1; round <= 2; round++) {
		for (unsigned i = 0; i < nk; i++) {
			struct ispmon_dev_stats st;

			memset(&st, 0, sizeof(st));
			st.bytes[0] = (uint64_t)round * (1000 + 10 * i);
			st.bytes[1] = (uint64_t)round * 500;
			st.packets[0] = st.packets[1] = (uint64_t)round;
			devices_ingest(d, &keys[i], &st);
		}
		devices_commit(d, round);
	}
	mbuf_init(&b);
	devices_render(d, &b);
	if (!b.err && b.p)
		check_page(b.p);
	mbuf_free(&b);
	devices_free(d);
	close(fd);
	return 0;
}
