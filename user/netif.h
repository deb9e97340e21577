/* Interfaces: which one carries the default route, and what kind it is. */
#ifndef ISPMON_NETIF_H
#define ISPMON_NETIF_H

#include <net/if.h>
#include <stdbool.h>
#include <stdio.h>

struct netif {
	char name[IF_NAMESIZE];
	int ifindex;
	unsigned short arphrd; /* ARPHRD_* from /sys/class/net/IF/type */
	bool l3;               /* no link-layer header: ppp, tun, wireguard */
};

/*
 * Name of the interface holding the IPv4 default route with the lowest
 * metric, else the IPv6 one. The streams are /proc/net/route and
 * /proc/net/ipv6_route (passed in so tests can feed their own).
 * Returns 0 or -ENOENT.
 */
int netif_default_route(FILE *route4, FILE *route6, char name[IF_NAMESIZE]);

/*
 * Gateway address of the default route, as text for getaddrinfo: the IPv4
 * default route with a gateway and the lowest metric, else the IPv6 one
 * ("fe80::1%ppp0": link-local gateways carry their interface). Returns 0,
 * or -ENOENT when no default route has a gateway (point-to-point links such
 * as ppp0 often have none).
 */
int netif_default_gateway(FILE *route4, FILE *route6, char *buf, size_t len);

/* Fill nif for an existing interface; -ENODEV if there is none. */
int netif_lookup(const char *name, struct netif *nif);

/*
 * LAN interfaces: those (other than lo and wan) holding a private IPv4
 * (RFC 1918) or ULA IPv6 address. Returns how many names were written.
 */
unsigned netif_find_lan(const char *wan, char names[][IF_NAMESIZE], unsigned max);

/* Whether an ARPHRD_* type has no Ethernet-style header at TC. */
bool netif_arphrd_is_l3(unsigned short arphrd);

#endif
