#include "report.h"

#include <stddef.h>
#include <math.h>
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

static void render_rtt(const struct rtt_view *v, struct mbuf *b)
{
	static const unsigned pct[] = {50, 90, 99};
	char labels[128];

	prom_header(b, "ispmon_passive_rtt_seconds", "histogram",
		    "Passive round-trip time of forwarded traffic by leg (wan: router-internet-router, "
		    "lan: router-device-router) and method.");
	for (unsigned s = 0; s < ISPMON_RTT_SERIES; s++) {
		snprintf(labels, sizeof(labels), "leg=\"%s\",method=\"%s\"",
			 rtt_leg_names[s / ISPMON_M_MAX], rtt_method_names[s % ISPMON_M_MAX]);
		rtt_render_hist(b, "ispmon_passive_rtt_seconds", labels, v->total.b[s],
				(double)v->total.sum_ns[s] / 1e9);
	}

	/* Not a summary: the window slides, so there is no _sum/_count to go
	 * with it; the label is "percentile" since "quantile" is a summary's. */
	prom_header(b, "ispmon_passive_rtt_percentile_seconds", "gauge",
		    "Passive RTT percentiles over the last window (ispmon_passive_rtt_window_seconds), "
		    "from the full-resolution kernel histogram.");
	for (unsigned s = 0; s < ISPMON_RTT_SERIES; s++)
		for (unsigned i = 0; i < sizeof(pct) / sizeof(pct[0]); i++) {
			double val = rtt_quantile(&v->window, s, pct[i] / 100.0);

			if (isnan(val))
				continue;
			snprintf(labels, sizeof(labels), "leg=\"%s\",method=\"%s\",percentile=\"%u\"",
				 rtt_leg_names[s / ISPMON_M_MAX], rtt_method_names[s % ISPMON_M_MAX], pct[i]);
			prom_f64(b, "ispmon_passive_rtt_percentile_seconds", labels, val);
		}
	prom_header(b, "ispmon_passive_rtt_window_samples", "gauge",
		    "RTT samples in the quantile window.");
	for (unsigned s = 0; s < ISPMON_RTT_SERIES; s++) {
		uint64_t n = 0;

		for (unsigned i = 0; i < ISPMON_RTT_BUCKETS; i++)
			n += v->window.b[s][i];
		snprintf(labels, sizeof(labels), "leg=\"%s\",method=\"%s\"",
			 rtt_leg_names[s / ISPMON_M_MAX], rtt_method_names[s % ISPMON_M_MAX]);
		prom_u64(b, "ispmon_passive_rtt_window_samples", labels, n);
	}
	prom_header(b, "ispmon_passive_rtt_window_seconds", "gauge",
		    "Length of the window the RTT quantiles cover.");
	prom_f64(b, "ispmon_passive_rtt_window_seconds", NULL, v->window_s);

	prom_header(b, "ispmon_passive_rtt_records_total", "counter",
		    "Requests remembered for RTT matching (data/SYN segments, DNS queries, echo requests).");
	for (int m = 0; m < ISPMON_M_MAX; m++) {
		snprintf(labels, sizeof(labels), "method=\"%s\"", rtt_method_names[m]);
		prom_u64(b, "ispmon_passive_rtt_records_total", labels, v->counters[m].records);
	}
	prom_header(b, "ispmon_passive_rtt_dropped_total", "counter",
		    "Requests that gave no RTT sample, by reason: rate_limited (per-flow limit), "
		    "ambiguous (retransmitted or repeated: Karn's rule), stale (no answer within 10 s).");
	for (int m = 0; m < ISPMON_M_MAX; m++) {
		const char *mn = rtt_method_names[m];

		mbuf_printf(b, "ispmon_passive_rtt_dropped_total{method=\"%s\",reason=\"rate_limited\"} %llu\n",
			    mn, (unsigned long long)v->counters[m].rate_limited);
		mbuf_printf(b, "ispmon_passive_rtt_dropped_total{method=\"%s\",reason=\"ambiguous\"} %llu\n",
			    mn, (unsigned long long)v->counters[m].ambiguous);
		mbuf_printf(b, "ispmon_passive_rtt_dropped_total{method=\"%s\",reason=\"stale\"} %llu\n",
			    mn, (unsigned long long)v->pending_stale[m]);
	}

	prom_header(b, "ispmon_flows_active", "gauge", "TCP flow directions tracked for RTT.");
	prom_u64(b, "ispmon_flows_active", NULL, v->flows_active);
	prom_header(b, "ispmon_rtt_pending_active", "gauge", "Requests waiting for their answer.");
	prom_u64(b, "ispmon_rtt_pending_active", NULL, v->pending_active);
	prom_header(b, "ispmon_flow_evictions_total", "counter",
		    "Entries the kernel's LRU tables evicted to make room (tables too small for the traffic).");
	prom_u64(b, "ispmon_flow_evictions_total", "map=\"flow_state\"", v->flow_evictions);
	prom_u64(b, "ispmon_flow_evictions_total", "map=\"pending\"", v->pending_evictions);
	prom_header(b, "ispmon_flows_expired_total", "counter",
		    "Flows removed after 120 s without a packet.");
	prom_u64(b, "ispmon_flows_expired_total", NULL, v->flows_expired);
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
		    "BPF programs attached, where and how; the value is always 1.");
	for (unsigned i = 0; i <= r->n_lan; i++) {
		const char *ifn = i ? r->lan_ifaces[i - 1] : r->iface;
		const char *side = i ? "lan" : "wan";

		mbuf_printf(b, "ispmon_bpf_attach_info{program=\"tc_ingress\",mode=\"%s\",iface=\"",
			    r->attach_mode);
		mbuf_label_value(b, ifn);
		mbuf_printf(b, "\",side=\"%s\"} 1\n", side);
		mbuf_printf(b, "ispmon_bpf_attach_info{program=\"tc_egress\",mode=\"%s\",iface=\"",
			    r->attach_mode);
		mbuf_label_value(b, ifn);
		mbuf_printf(b, "\",side=\"%s\"} 1\n", side);
	}
	if (r->tcp)
		tcpsock_render_attach(r->tcp, b);

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

	if (r->capacity)
		capacity_render(r->capacity, r->plan_Bps, b);
	if (r->rtt)
		render_rtt(r->rtt, b);
	if (r->devices)
		devices_render(r->devices, b);
	if (r->tcp)
		tcpsock_render(r->tcp, b);

	if (r->ping)
		ping_render(r->ping, b);
	/* Families every active probe shares: one header, each probe's
	 * samples under it (the text format wants a family in one piece). */
	if (r->speed)
		speedtest_render(r->speed, b);
	if (r->ping || r->speed) {
		prom_header(b, "ispmon_probe_success", "gauge",
			    "Whether the probe's newest attempt at the target with a result succeeded (1) or not (0).");
		if (r->ping)
			ping_render_success(r->ping, b);
		if (r->speed)
			speedtest_render_probe_success(r->speed, b);
		prom_header(b, "ispmon_probe_failures_total", "counter",
			    "Failed probe attempts by reason. ping: resolve (no address for the name), "
			    "timeout (no answer in time), unreachable (an ICMP error or no route), "
			    "error (anything else). speedtest: dns, connect, tls, http_4xx, http_5xx, "
			    "redirect, stalled, oversize, byte_cap, closed, timeout, ... (see README).");
		if (r->ping)
			ping_render_failures(r->ping, b);
		if (r->speed)
			speedtest_render_probe_failures(r->speed, b);
	}

	if (r->n_maps) {
		prom_header(b, "ispmon_bpf_map_memory_bytes", "gauge",
			    "Kernel memory of each BPF map, summed over the interfaces (memlock as the kernel accounts it).");
		for (unsigned i = 0; i < r->n_maps; i++) {
			snprintf(labels, sizeof(labels), "map=\"%s\"", r->map_names[i]);
			prom_u64(b, "ispmon_bpf_map_memory_bytes", labels, r->map_bytes[i]);
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
