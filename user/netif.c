#include "netif.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <limits.h>
#include <net/if_arp.h>
#include <stdlib.h>
#include <string.h>

static int default_route4(FILE *f, char name[IF_NAMESIZE])
{
	char line[512], ifn[IF_NAMESIZE];
	unsigned long dest, mask, metric, best = ULONG_MAX;
	unsigned flags;
	int found = -ENOENT;

	/* Iface Destination Gateway Flags RefCnt Use Metric Mask ... (hex) */
	if (!fgets(line, sizeof(line), f))
		return -ENOENT;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%15s %lx %*x %x %*d %*d %lu %lx", ifn, &dest,
			   &flags, &metric, &mask) != 5)
			continue;
		/* RTF_UP (0x1); a default route has dest and mask 0. */
		if (dest || mask || !(flags & 0x1) || metric >= best)
			continue;
		best = metric;
		snprintf(name, IF_NAMESIZE, "%s", ifn);
		found = 0;
	}
	return found;
}

static int default_route6(FILE *f, char name[IF_NAMESIZE])
{
	char line[512], dst[33], ifn[IF_NAMESIZE];
	unsigned plen, flags;
	unsigned long metric, best = ULONG_MAX;
	int found = -ENOENT;

	/* dst plen src plen nexthop metric refcnt use flags iface */
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%32s %x %*s %*x %*s %lx %*x %*x %x %15s", dst,
			   &plen, &metric, &flags, ifn) != 5)
			continue;
		/* ::/0, up (RTF_UP), not the loopback reject route. */
		if (plen || strspn(dst, "0") != 32 || !(flags & 0x1) ||
		    !strcmp(ifn, "lo") || metric >= best)
			continue;
		best = metric;
		snprintf(name, IF_NAMESIZE, "%s", ifn);
		found = 0;
	}
	return found;
}

int netif_default_route(FILE *route4, FILE *route6, char name[IF_NAMESIZE])
{
	if (route4 && !default_route4(route4, name))
		return 0;
	if (route6 && !default_route6(route6, name))
		return 0;
	return -ENOENT;
}

#define RTF_UP_FLAG 0x1
#define RTF_GATEWAY_FLAG 0x2

static int gateway4(FILE *f, char *buf, size_t len)
{
	char line[512], ifn[IF_NAMESIZE];
	unsigned long dest, gw, mask, metric, best = ULONG_MAX;
	unsigned flags;
	int found = -ENOENT;

	if (!fgets(line, sizeof(line), f))
		return -ENOENT;
	while (fgets(line, sizeof(line), f)) {
		struct in_addr a;

		if (sscanf(line, "%15s %lx %lx %x %*d %*d %lu %lx", ifn, &dest, &gw, &flags,
			   &metric, &mask) != 6)
			continue;
		if (dest || mask || !gw || (flags & (RTF_UP_FLAG | RTF_GATEWAY_FLAG)) !=
						   (RTF_UP_FLAG | RTF_GATEWAY_FLAG) ||
		    metric >= best)
			continue;
		/* The kernel prints the address's bytes as one native-endian word. */
		a.s_addr = (uint32_t)gw;
		if (!inet_ntop(AF_INET, &a, buf, (socklen_t)len))
			continue;
		best = metric;
		found = 0;
	}
	return found;
}

static int gateway6(FILE *f, char *buf, size_t len)
{
	char line[512], dst[33], hop[33], ifn[IF_NAMESIZE];
	unsigned plen, flags;
	unsigned long metric, best = ULONG_MAX;
	int found = -ENOENT;

	while (fgets(line, sizeof(line), f)) {
		struct in6_addr a;
		char text[INET6_ADDRSTRLEN];
		unsigned b;

		if (sscanf(line, "%32s %x %*s %*x %32s %lx %*x %*x %x %15s", dst, &plen, hop,
			   &metric, &flags, ifn) != 6)
			continue;
		if (plen || strspn(dst, "0") != 32 || strlen(hop) != 32 ||
		    strspn(hop, "0") == 32 ||
		    (flags & (RTF_UP_FLAG | RTF_GATEWAY_FLAG)) != (RTF_UP_FLAG | RTF_GATEWAY_FLAG) ||
		    metric >= best)
			continue;
		for (b = 0; b < 16; b++) {
			unsigned v;

			if (sscanf(hop + 2 * b, "%2x", &v) != 1)
				break;
			a.s6_addr[b] = (uint8_t)v;
		}
		if (b < 16 || !inet_ntop(AF_INET6, &a, text, sizeof(text)))
			continue;
		if (IN6_IS_ADDR_LINKLOCAL(&a))
			snprintf(buf, len, "%s%%%s", text, ifn);
		else
			snprintf(buf, len, "%s", text);
		best = metric;
		found = 0;
	}
	return found;
}

int netif_default_gateway(FILE *route4, FILE *route6, char *buf, size_t len)
{
	if (route4 && !gateway4(route4, buf, len))
		return 0;
	if (route6 && !gateway6(route6, buf, len))
		return 0;
	return -ENOENT;
}

bool netif_arphrd_is_l3(unsigned short arphrd)
{
	switch (arphrd) {
	case ARPHRD_ETHER:
	case ARPHRD_LOOPBACK: /* lo carries a zeroed Ethernet header */
		return false;
	default:
		/* ARPHRD_PPP, ARPHRD_NONE (tun, wireguard), ARPHRD_RAWIP, ... */
		return true;
	}
}

int netif_lookup(const char *name, struct netif *nif)
{
	char path[64 + IF_NAMESIZE];
	unsigned type;
	FILE *f;
	int n;

	memset(nif, 0, sizeof(*nif));
	nif->ifindex = (int)if_nametoindex(name);
	if (!nif->ifindex)
		return -ENODEV;
	snprintf(nif->name, sizeof(nif->name), "%s", name);
	snprintf(path, sizeof(path), "/sys/class/net/%s/type", name);
	f = fopen(path, "r");
	if (!f)
		return -ENODEV;
	n = fscanf(f, "%u", &type);
	fclose(f);
	if (n != 1)
		return -EIO;
	nif->arphrd = (unsigned short)type;
	nif->l3 = netif_arphrd_is_l3(nif->arphrd);
	return 0;
}

static bool private_addr(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		uint32_t a = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);

		return (a >> 24) == 10 || (a >> 20) == (172 << 4 | 1) || (a >> 16) == (192 << 8 | 168);
	}
	if (sa->sa_family == AF_INET6)
		return (((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr[0] & 0xfe) == 0xfc;
	return false;
}

unsigned netif_find_lan(const char *wan, char names[][IF_NAMESIZE], unsigned max)
{
	struct ifaddrs *ifa, *i;
	unsigned n = 0;

	if (getifaddrs(&ifa))
		return 0;
	for (i = ifa; i && n < max; i = i->ifa_next) {
		bool dup = false;

		if (!i->ifa_addr || !i->ifa_name || !strcmp(i->ifa_name, "lo") ||
		    !strcmp(i->ifa_name, wan) || !private_addr(i->ifa_addr))
			continue;
		for (unsigned k = 0; k < n; k++)
			dup = dup || !strcmp(names[k], i->ifa_name);
		if (!dup)
			snprintf(names[n++], IF_NAMESIZE, "%s", i->ifa_name);
	}
	freeifaddrs(ifa);
	return n;
}
