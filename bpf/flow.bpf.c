// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * TC programs for the WAN interface: exact per-direction line totals.
 *
 * Passive by contract: every path returns TC_ACT_UNSPEC, which hands the
 * packet to the next filter (or, with none, lets it pass), and nothing here
 * writes to the packet.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "flow.h"
#include "parse.h"

#define TC_ACT_UNSPEC (-1)
#define VLAN_HLEN 4

/* Set by the loader before load. */
const volatile bool l3_dev = false; /* no link-layer header (ppp, tun, wg) */
const volatile __u8 ingress_dir = ISPMON_DIR_DOWNLOAD;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ISPMON_DIR_MAX);
	__type(key, __u32);
	__type(value, struct ispmon_dir_stats);
} dir_stats SEC(".maps");

static __always_inline int account(struct __sk_buff *skb, __u32 dir)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ispmon_dir_stats *st;
	struct pkt p = {};
	enum ispmon_l3 l3;
	__u64 segs, bytes;

	st = bpf_map_lookup_elem(&dir_stats, &dir);
	if (!st)
		return TC_ACT_UNSPEC;

	l3 = parse_pkt(data, data_end, l3_dev, bpf_ntohs(skb->protocol), &p);

	/* A GSO/GRO skb stands for gso_segs wire packets, each carrying its
	 * own copy of the headers. */
	segs = skb->gso_segs;
	/* Packets from tap, virtio or packet sockets may carry gso_size with
	 * gso_segs still 0 (the kernel fills it in later): derive it. */
	if (!segs && skb->gso_size && l3 != ISPMON_L3_MALFORMED && p.hdr_len &&
	    skb->len > p.hdr_len)
		segs = (skb->len - p.hdr_len + skb->gso_size - 1) / skb->gso_size;
	if (segs < 1)
		segs = 1;
	bytes = skb->len;
	if (segs > 1 && l3 != ISPMON_L3_MALFORMED)
		bytes += (segs - 1) * p.hdr_len;
	/* An offloaded VLAN tag lives in skb metadata, not in the data, but
	 * it is on the wire. */
	if (skb->vlan_present) {
		bytes += segs * VLAN_HLEN;
		p.vlan = 1;
	}

	/* Per-CPU entry: plain adds are safe, no other CPU writes it. */
	st->packets += segs;
	st->bytes += bytes;
	if (l3 < ISPMON_L3_MAX)
		st->l3_packets[l3] += segs;
	if (p.vlan)
		st->vlan_packets += segs;
	if (p.pppoe)
		st->pppoe_packets += segs;
	return TC_ACT_UNSPEC;
}

SEC("tc")
int tc_ingress(struct __sk_buff *skb)
{
	return account(skb, ingress_dir);
}

SEC("tc")
int tc_egress(struct __sk_buff *skb)
{
	return account(skb, ingress_dir ^ 1);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
