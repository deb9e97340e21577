/*
 * Per-device accounting from the LAN interfaces' `devices` maps: merged
 * across interfaces, kept in a bounded table so counters never go back
 * when the kernel evicts an entry, exported for the max_devices devices
 * with the most traffic; the rest are folded into "other".
 *
 * Counters stay counters while the top-N changes: a labelled device's
 * series is its own total, and "other" accumulates only the traffic of
 * devices while they are outside the top-N. A device enters the top-N only
 * when it has 10% (and 1 MB) more than the smallest member, so two devices
 * of similar traffic do not swap labels every interval.
 */
#ifndef ISPMON_DEVICES_H
#define ISPMON_DEVICES_H

#include <linux/types.h>
#include <stdint.h>

#include "flow.h"
#include "metrics.h"

#define DEVICES_TABLE_MAX 1024 /* devices remembered in userspace */

struct devices;

int devices_new(unsigned max_devices, struct devices **out);
void devices_free(struct devices *d);
/* Read one LAN interface's device table (map_fd) and per-CPU slot cache
 * (cache_fd, or -1 for none); call for each, then devices_commit(). */
int devices_read(struct devices *d, int map_fd, int cache_fd);
/* One device's reading from one interface (what devices_read feeds). */
void devices_ingest(struct devices *d, const struct ispmon_dev_key *key,
		    const struct ispmon_dev_stats *sum);
/* Fold this round's readings in; now_s is CLOCK_MONOTONIC seconds. */
void devices_commit(struct devices *d, double now_s);
void devices_render(const struct devices *d, struct mbuf *b);
unsigned devices_count(const struct devices *d);

/* A labelled device's figures, as /metrics shows them. */
struct device_snap {
	char name[64];
	uint64_t bytes[ISPMON_DIR_MAX];
	double rate[ISPMON_DIR_MAX]; /* bytes/s over the last commit interval */
};
/* The labelled devices with the most traffic (both directions since
 * start), largest first: at most max; returns how many. */
unsigned devices_snapshot(const struct devices *d, struct device_snap *out, unsigned max);

/* Label for a device key: MAC "aa:bb:cc:dd:ee:ff" or its IP address. */
void devices_label(const struct ispmon_dev_key *k, char *buf, size_t len);

/*
 * Names from a DHCP leases file, the format told per line:
 *  - dnsmasq's ("EXPIRY MAC IP NAME CLIENT-ID", also OpenWrt's
 *    /tmp/dhcp.leases): by MAC; its DHCPv6 lines ("EXPIRY IAID IPV6 NAME
 *    DUID", after its "duid" line) like odhcpd's;
 *  - odhcpd's state file (OpenWrt's /tmp/hosts/odhcpd, lines "# IFACE DUID
 *    IAID NAME EXPIRY ID LEN ADDR/LEN..."): by the MAC inside a DUID-LL or
 *    DUID-LLT of Ethernet type (or of an "ipv4" lease), else by the IPv6
 *    address (or delegated prefix) the device sends from. A device whose
 *    MAC has no lease is matched by address as well: a DUID may carry the
 *    MAC of another of the client's interfaces. A device using only other
 *    addresses (SLAAC, privacy addresses) keeps its MAC label.
 * Host names: letters, digits, '.', '-', '_', at most 32; a name claimed by
 * two MACs, or one that would label two devices at once, is not used.
 * Up to DEVICES_LEASE_FILES files are read together (OpenWrt: dnsmasq's
 * for IPv4, odhcpd's for IPv6). devices_load_leases(path) makes path the
 * only file and reads it; devices_add_leases() adds one to read at the
 * next load; devices_load_leases(NULL) reads them all (again when one of
 * them changed). 0 or -errno (the first file's error that has one);
 * devices_leases_error() tells file i's (in the order added).
 */
#define DEVICES_LEASE_FILES 2
int devices_load_leases(struct devices *d, const char *path);
int devices_add_leases(struct devices *d, const char *path);
int devices_leases_error(const struct devices *d, unsigned i);
/* The leases files at the usual places under root ("" for /, a scratch
 * directory in tests): the first of dnsmasq's, then odhcpd's, as found;
 * their paths into found; how many (at most max). */
unsigned devices_find_leases_in(const char *root, char found[][256], unsigned max);
/* A name's label; the MAC when there is no usable name. */
void devices_name(const struct devices *d, const struct ispmon_dev_key *k, char *buf, size_t len);

#endif
