/*
 * libFuzzer: the DHCP leases file (dnsmasq's or odhcpd's format, told per
 * line) that names the LAN devices. Its lines come from the devices
 * themselves (a DHCP client picks its own host name and DUID), so the
 * parser and the labels it yields get hostile input. Each input is a
 * leases file; the devices table is fed one device per MAC found in the
 * input, one per IPv6 address found (by MAC, sending from it, and keyed by
 * it as on an L3 LAN), and a few more, and rendered:
 *   - no crash or sanitizer report in the parser or the renderer
 *   - every device label is a usable Prometheus label value (no quote,
 *     backslash or newline; not empty)
 *   - no two samples of a family share their labels (a duplicate series
 *     makes Prometheus drop samples), "other" included
 * Seeds of both formats are written into the corpus directory given
 * (LLVMFuzzerInitialize), so the fuzzer starts from whole leases.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices.h"
#include "metrics.h"

#define MAX_DEVS 96

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

static const char *const seeds[] = {
	/* dnsmasq, "other" as a host name, the duid line and DHCPv6 lines:
	 * DUID-LL, DUID-EN for a temporary address, no DUID */
	"1732560000 02:00:00:00:01:02 192.0.2.2 laptop 01:02:00:00:00:01:02\n"
	"1732560000 02:00:00:00:01:03 192.0.2.3 other *\n"
	"duid 00:01:00:01:2c:3a:1b:2c:02:00:00:00:00:fe\n"
	"1732560000 1234 2001:db8:1::50 v6host 00:03:00:01:02:00:00:00:01:04\n"
	"1732560000 T77 2001:db8:1::51 tmp-host 00:02:00:00:ab:11:01:02:03:04\n"
	"0 4294967295 2001:db8:1::52 noclid *\n",
	/* odhcpd: DUID-LLT, DUID-LL, DUID-EN by address, a delegated prefix,
	 * an IPv4 lease, a hosts line, a broken name, no name */
	"# lan0 000100012c3a1b2c020000000105 1a2b3c4d llt-host 1999999999 105 128 2001:db8:1::105/128\n"
	"# lan0 00030001020000000106 1 ll-host 0 106 128\n"
	"2001:db8:1::107\ten-host.lan\ten-host\n"
	"# lan0 00020000ab110102030405060708 3 en-host -1 107 128 2001:db8:1::107/128 2001:db8:1::1070/128\n"
	"# lan0 0004a1b2c3d4e5f60718293a4b5c6d7e8f90 4 router2 1999999999 40 62 2001:db8:1:40::/62\n"
	"# lan0 020000000108 ipv4 v4host 1999999999 c0000208 32 192.0.2.8/32\n"
	"# lan0 00020000ab11b0 c broken\\x20evil 1999999999 109 128 2001:db8:1::109/128\n"
	"# lan0 00020000ab11b1 d - 1999999999 10a 128 2001:db8:1::10a/128\n",
	/* both in one file, names shared across formats and devices */
	"1732560000 02:00:00:00:01:05 192.0.2.5 twin *\n"
	"# lan0 00020000ab110102 5 twin 1999999999 10b 128 2001:db8:1::10b/128\n"
	"# lan0 00020000ab110103 6 twin 1999999999 10c 64 2001:db8:1::/64\n"
	"# lan0 00030001020000000105 7 llt-host 1999999999 10d 128 ::/0\n",
};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	for (int i = 1; i < *argc; i++) {
		const char *dir = (*argv)[i];
		struct stat st;

		if (dir[0] == '-' || stat(dir, &st) || !S_ISDIR(st.st_mode))
			continue;
		for (size_t k = 0; k < sizeof(seeds) / sizeof(seeds[0]); k++) {
			char path[4096];
			FILE *f;

			snprintf(path, sizeof(path), "%s/seed-builtin-%zu", dir, k);
			f = fopen(path, "w");
			if (f) {
				fputs(seeds[k], f);
				fclose(f);
			}
		}
	}
	return 0;
}

/* Every IPv6 address in the input (words split at blanks and '/'). */
static unsigned find_ipv6(const uint8_t *data, size_t size, struct in6_addr *out, unsigned max)
{
	char word[INET6_ADDRSTRLEN];
	size_t len = 0;
	unsigned n = 0;

	for (size_t i = 0; i <= size && n < max; i++) {
		char c = i < size ? (char)data[i] : ' ';

		if (c == ' ' || c == '\t' || c == '\n' || c == '/' || c == 0) {
			word[len] = 0;
			if (len && strchr(word, ':') && inet_pton(AF_INET6, word, &out[n]) == 1)
				n++;
			len = 0;
		} else if (len < sizeof(word) - 1) {
			word[len++] = c;
		} else {
			len = 0;
		}
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ispmon_dev_stats addr_st[MAX_DEVS];
	struct in6_addr a6[16];
	unsigned n6;
	struct ispmon_dev_key keys[MAX_DEVS];
	struct devices *d;
	char path[64];
	unsigned nk = 0;
	struct mbuf b;
	int fd;

	fd = memfd_create("leases", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size || devices_new(8, &d)) {
		close(fd);
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	devices_load_leases(d, path);

	/* Devices: every "xx:xx:xx:xx:xx:xx" in the input, then two more. */
	memset(keys, 0, sizeof(keys));
	for (size_t i = 0; i + 17 <= size && nk < 62; i++) {
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
	/* Devices sending from each IPv6 address: by a MAC of their own, and
	 * keyed by the address (an L3 LAN). */
	memset(addr_st, 0, sizeof(addr_st));
	n6 = find_ipv6(data, size, a6, sizeof(a6) / sizeof(a6[0]));
	for (unsigned i = 0; i < n6 && nk + 2 <= MAX_DEVS; i++) {
		keys[nk].addr[0] = 0x06;
		keys[nk].addr[5] = (uint8_t)i;
		memcpy(addr_st[nk++].ipv6, &a6[i], 16);
		keys[nk].family = 6;
		memcpy(keys[nk++].addr, &a6[i], 16);
	}
	/* Two rounds, traffic growing: labels for the 8 largest, the rest in
	 * "other". */
	for (int round = 1; round <= 2; round++) {
		for (unsigned i = 0; i < nk; i++) {
			struct ispmon_dev_stats st;

			st = addr_st[i];
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
