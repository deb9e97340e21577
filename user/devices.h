/*
 * Per-device accounting from the LAN interfaces' `devices` maps: merged
 * across interfaces, kept in a bounded table so counters never go back
 * when the kernel evicts an entry, exported for at most max_devices
 * devices (the first to show up) with the rest folded into "other".
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
/* Read one LAN interface's map; call for each, then devices_commit(). */
int devices_read(struct devices *d, int map_fd);
/* Fold this round's readings in; now_s is CLOCK_MONOTONIC seconds. */
void devices_commit(struct devices *d, double now_s);
void devices_render(const struct devices *d, struct mbuf *b);
unsigned devices_count(const struct devices *d);

/* Label for a device key: MAC "aa:bb:cc:dd:ee:ff" or its IP address. */
void devices_label(const struct ispmon_dev_key *k, char *buf, size_t len);

#endif
