/* Everything /metrics shows, gathered once per interval, and its rendering. */
#ifndef ISPMON_REPORT_H
#define ISPMON_REPORT_H

#include <linux/types.h>
#include <stdbool.h>
#include <stdint.h>

#include "flow.h"
#include "metrics.h"
#include "capacity.h"
#include "config.h"
#include "devices.h"
#include "ping.h"
#include "rtt.h"
#include "speedtest.h"
#include "tcpsock.h"

struct report {
	const char *version;
	const char *iface;
	int ifindex;
	bool l3_iface;
	const char *attach_mode; /* "tc" */
	double start_time;       /* unix seconds */
	double interval_s;

	struct ispmon_dir_stats totals[ISPMON_DIR_MAX];
	bool have_rate;
	double rate_Bps[ISPMON_DIR_MAX]; /* bytes/s over the last interval */

	uint64_t collections;
	uint64_t collect_errors;

	const struct rtt_view *rtt; /* NULL until the first read */
	const struct devices *devices; /* NULL without LAN interfaces */
	struct speedtest *speed;       /* NULL: no speed tests */
	const struct capacity *capacity;
	double plan_Bps[ISPMON_DIR_MAX];
	struct ping *ping;             /* NULL without ping probes */
	const struct tcpsock *tcp;     /* NULL without the TCP socket hooks */
	/* LAN interfaces watched, besides iface. */
	unsigned n_lan;
	const char *lan_ifaces[CONFIG_MAX_LAN];

	/* Kernel memory of each BPF map (memlock), and their names. */
	unsigned n_maps;
	const char *map_names[32];
	uint64_t map_bytes[32];
};

/* Fold a new reading taken dt seconds after the previous one. */
void report_update(struct report *r, const struct ispmon_dir_stats now[ISPMON_DIR_MAX],
		   double dt);
void report_render(const struct report *r, struct mbuf *b);

#endif
