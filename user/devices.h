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
 * Names from a DHCP leases file, dnsmasq format ("expiry mac ip name id",
 * also OpenWrt's /tmp/dhcp.leases): a device whose MAC has a lease is
 * labelled by its host name (letters, digits, '.', '-', '_'; a name two
 * devices share is not used). Re-read when the file changes. 0 or -errno.
 */
int devices_load_leases(struct devices *d, const char *path);
/* The first leases file found at the usual places, or NULL. */
const char *devices_find_leases(void);
/* A name's label; the MAC when there is no usable name. */
void devices_name(const struct devices *d, const struct ispmon_dev_key *k, char *buf, size_t len);

#endif
