// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * TC programs for the WAN interface (exact per-direction line totals and
 * passive RTT, rtt.h) and for LAN interfaces (the same, per device).
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

/* Set by the loader before load. */
const volatile bool l3_dev = false; /* no link-layer header (ppp, tun, wg) */
const volatile __u8 ingress_dir = ISPMON_DIR_DOWNLOAD;

#include "rtt.h"

#define TC_ACT_UNSPEC (-1)
#define VLAN_HLEN 4


struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ISPMON_DIR_MAX);
	__type(key, __u32);
	__type(value, struct ispmon_dir_stats);
} dir_stats SEC(".maps");

/* Per-device bytes on a LAN interface; creates the device on first sight. */
static __always_inline void account_device(void *data, void *data_end, struct pkt *p,
					   enum ispmon_l3 l3, bool ingress, __u32 dir,
					   __u64 segs, __u64 bytes)
{
	struct ispmon_dev_key dk = {};
	struct ispmon_dev_stats *dev;

	if (l3 != ISPMON_L3_IPV4 && l3 != ISPMON_L3_IPV6)
		return;
	if (p->l3_off > 64)
		return;
	if (l3 == ISPMON_L3_IPV4) {
		struct iphdr *ip = data + p->l3_off;

		if ((void *)(ip + 1) > data_end)
			return;
		p->key.family = 4;
		p->key.saddr[0] = ip->saddr;
		p->key.daddr[0] = ip->daddr;
	} else {
		struct ipv6hdr *ip6 = data + p->l3_off;

		if ((void *)(ip6 + 1) > data_end)
			return;
		p->key.family = 6;
		__builtin_memcpy(p->key.saddr, &ip6->saddr, 16);
		__builtin_memcpy(p->key.daddr, &ip6->daddr, 16);
	}
	if (!dev_key(data, data_end, &p->key, ingress, l3_dev, &dk))
		return;
	dev = dev_find(&dk, true);
	if (!dev)
		return;
	dev->bytes[dir & 1] += bytes;
	dev->packets[dir & 1] += segs;
	/* Only compared between interfaces: the coarse clock (a tick) is
	 * enough and costs a fraction of a clock read per packet. */
	dev->last_seen_ns = bpf_ktime_get_coarse_ns();
	/* The address the device sends from, for its label. */
	if (ingress) {
		if (p->key.family == 4)
			dev->ipv4 = p->key.saddr[0];
		else if ((p->key.saddr[0] & bpf_htonl(0xffc00000)) != bpf_htonl(0xfe800000))
			__builtin_memcpy(dev->ipv6, p->key.saddr, 16); /* not link-local */
	}
}

static __always_inline int account(struct __sk_buff *skb, bool ingress)
{
	__u32 dir = ingress ? ingress_dir : ingress_dir ^ 1;
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
	/* hdr_len covers the transport header: the rest of the IP packet is
	 * payload, for a GSO skb too (its IP length spans every segment). */
	if ((p.l4_proto == IPPROTO_TCP || p.l4_proto == IPPROTO_UDP) && !p.frag &&
	    (l3 == ISPMON_L3_IPV4 || l3 == ISPMON_L3_IPV6) && p.hdr_len > p.l4_off &&
	    p.l4_len >= p.hdr_len - p.l4_off && p.l4_len <= skb->len)
		st->payload_bytes += p.l4_len - (p.hdr_len - p.l4_off);

	if (lan_side)
		account_device(data, data_end, &p, l3, ingress, dir, segs, bytes);
	if (l3 == ISPMON_L3_IPV4 || l3 == ISPMON_L3_IPV6)
		rtt_packet(skb, &p, l3, ingress);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int tc_ingress(struct __sk_buff *skb)
{
	return account(skb, true);
}

SEC("tc")
int tc_egress(struct __sk_buff *skb)
{
	return account(skb, false);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
