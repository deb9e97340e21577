#include "report.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

static const char *const dir_names[ISPMON_DIR_MAX] = {"download", "upload"};
static const char *const l3_names[ISPMON_L3_MAX] = {"ipv4", "ipv6", "other",
						    "malformed"};

void report_update(struct report *r, const struct ispmon_dir_stats now[ISPMON_DIR_MAX],
		   double dt)
{
	for (int d = 0; d < ISPMON_DIR_MAX; d++) {
		/* Map counters only grow; a smaller value means a reload we
		 * did not see, so skip the rate rather than report a spike. */
		if (r->collections && dt > 0 && now[d].bytes >= r->totals[d].bytes)
			r->rate_Bps[d] = (double)(now[d].bytes - r->totals[d].bytes) / dt;
		r->totals[d] = now[d];
	}
	r->have_rate = r->collections > 0 && dt > 0;
	r->collections++;
}

static void dir_counter(struct mbuf *b, const char *name, const char *help,
			const struct report *r, size_t field_off)
{
	char labels[64];

	prom_header(b, name, "counter", help);
	for (int d = 0; d < ISPMON_DIR_MAX; d++) {
		uint64_t v;

		memcpy(&v, (const char *)&r->totals[d] + field_off, sizeof(v));
		snprintf(labels, sizeof(labels), "direction=\"%s\"", dir_names[d]);
		prom_u64(b, name, labels, v);
	}
}

void report_render(const struct report *r, struct mbuf *b)
{
	char labels[128];

	prom_header(b, "ispmon_build_info", "gauge", "ispmon build; the value is always 1.");
	mbuf_printf(b, "ispmon_build_info{version=\"");
	mbuf_label_value(b, r->version);
	mbuf_printf(b, "\"} 1\n");

	prom_header(b, "ispmon_start_time_seconds", "gauge",
		    "Unix time ispmon started.");
	prom_f64(b, "ispmon_start_time_seconds", NULL, r->start_time);

	prom_header(b, "ispmon_wan_interface_info", "gauge",
		    "The WAN interface watched; the value is always 1.");
	mbuf_printf(b, "ispmon_wan_interface_info{iface=\"");
	mbuf_label_value(b, r->iface);
	mbuf_printf(b, "\",ifindex=\"%d\",link=\"%s\"} 1\n", r->ifindex,
		    r->l3_iface ? "l3" : "ethernet");

	prom_header(b, "ispmon_bpf_attach_info", "gauge",
		    "BPF programs attached and how; the value is always 1.");
	snprintf(labels, sizeof(labels), "program=\"tc_ingress\",mode=\"%s\"", r->attach_mode);
	prom_u64(b, "ispmon_bpf_attach_info", labels, 1);
	snprintf(labels, sizeof(labels), "program=\"tc_egress\",mode=\"%s\"", r->attach_mode);
	prom_u64(b, "ispmon_bpf_attach_info", labels, 1);

	dir_counter(b, "ispmon_passive_bytes_total",
		    "Bytes crossing the WAN interface (L2 frames as the interface counts them).",
		    r, offsetof(struct ispmon_dir_stats, bytes));
	dir_counter(b, "ispmon_passive_packets_total",
		    "Packets crossing the WAN interface (GSO/GRO aggregates counted as segments).",
		    r, offsetof(struct ispmon_dir_stats, packets));

	prom_header(b, "ispmon_passive_protocol_packets_total", "counter",
		    "Packets on the WAN interface by network protocol as parsed.");
	for (int d = 0; d < ISPMON_DIR_MAX; d++)
		for (int i = 0; i < ISPMON_L3_MAX; i++) {
			snprintf(labels, sizeof(labels), "direction=\"%s\",protocol=\"%s\"",
				 dir_names[d], l3_names[i]);
			prom_u64(b, "ispmon_passive_protocol_packets_total", labels,
				 r->totals[d].l3_packets[i]);
		}
	dir_counter(b, "ispmon_passive_vlan_packets_total",
		    "Packets on the WAN interface that carried a VLAN tag.", r,
		    offsetof(struct ispmon_dir_stats, vlan_packets));
	dir_counter(b, "ispmon_passive_pppoe_packets_total",
		    "PPPoE session packets on the WAN interface.", r,
		    offsetof(struct ispmon_dir_stats, pppoe_packets));

	if (r->have_rate) {
		prom_header(b, "ispmon_passive_throughput_bytes_per_second", "gauge",
			    "WAN throughput over the last collection interval.");
		for (int d = 0; d < ISPMON_DIR_MAX; d++) {
			snprintf(labels, sizeof(labels), "direction=\"%s\"", dir_names[d]);
			prom_f64(b, "ispmon_passive_throughput_bytes_per_second", labels,
				 r->rate_Bps[d]);
		}
	}

	prom_header(b, "ispmon_collect_interval_seconds", "gauge",
		    "How often the kernel maps are read.");
	prom_f64(b, "ispmon_collect_interval_seconds", NULL, r->interval_s);
	prom_header(b, "ispmon_collections_total", "counter",
		    "Reads of the kernel maps.");
	prom_u64(b, "ispmon_collections_total", NULL, r->collections);
	prom_header(b, "ispmon_collect_errors_total", "counter",
		    "Failed reads of the kernel maps.");
	prom_u64(b, "ispmon_collect_errors_total", NULL, r->collect_errors);
}
