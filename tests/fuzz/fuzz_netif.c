/*
 * libFuzzer: the route tables ispmon reads to find its WAN interface and
 * the gateway to ping. The input is /proc/net/route, a NUL, then
 * /proc/net/ipv6_route (either may be empty: no such file); its first byte
 * also sets the size of the gateway buffer (1..80). Names must come back
 * NUL-terminated within IF_NAMESIZE, gateways within the buffer, as an
 * address inet_pton takes (an IPv6 link-local one with "%iface").
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netif.h"

static void fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_netif: %s (%s)\n", what, detail ? detail : "");
	abort();
}

static FILE *open_mem(const uint8_t *p, size_t n)
{
	/* fmemopen refuses a size of 0: an empty table is a missing file. */
	return n ? fmemopen((void *)p, n, "r") : NULL;
}

static void check_gateway(const char *gw, size_t cap)
{
	char addr[64];
	const char *pct;
	struct in6_addr a6;
	struct in_addr a4;
	size_t n;

	if (!memchr(gw, 0, cap))
		fail("gateway not terminated in its buffer", NULL);
	/* A buffer too small for the text gets what fits (snprintf); only
	 * whole texts are checked further (ispmon's buffer holds any). */
	if (strlen(gw) + 1 >= cap)
		return;
	n = strlen(gw);
	if (!n)
		fail("empty gateway", NULL);
	pct = strchr(gw, '%');
	if (pct)
		n = (size_t)(pct - gw);
	if (n >= sizeof(addr))
		fail("gateway address too long", gw);
	memcpy(addr, gw, n);
	addr[n] = 0;
	if (inet_pton(AF_INET, addr, &a4) != 1 && inet_pton(AF_INET6, addr, &a6) != 1)
		fail("gateway is no address", gw);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t n4 = nul ? (size_t)(nul - data) : size;
	size_t n6 = nul ? size - n4 - 1 : 0;
	const uint8_t *p6 = nul ? nul + 1 : data + size;
	size_t cap = size ? (size_t)data[0] % 80 + 1 : 64;
	char name[IF_NAMESIZE + 8], *gw = malloc(cap);
	FILE *r4 = open_mem(data, n4), *r6 = open_mem(p6, n6);

	memset(name, 0x55, sizeof(name));
	if (!netif_default_route(r4, r6, name) &&
	    (!memchr(name, 0, IF_NAMESIZE) || !name[0]))
		fail("interface name empty or not terminated", NULL);
	if (r4)
		rewind(r4);
	if (r6)
		rewind(r6);
	if (gw && !netif_default_gateway(r4, r6, gw, cap))
		check_gateway(gw, cap);
	if (r4)
		fclose(r4);
	if (r6)
		fclose(r6);
	free(gw);
	if (size >= 2)
		(void)netif_arphrd_is_l3((unsigned short)(data[0] | data[1] << 8));
	return 0;
}
