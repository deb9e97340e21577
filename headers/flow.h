/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Structs and constants shared by bpf/flow.bpf.c and userspace.
 * Plain __u64/__u32 only: the BPF side gets them from vmlinux.h, userspace
 * from <linux/types.h>.
 */
#ifndef ISPMON_FLOW_H
#define ISPMON_FLOW_H

/* Direction as seen from the household: download arrives from the WAN. */
enum ispmon_dir {
	ISPMON_DIR_DOWNLOAD = 0,
	ISPMON_DIR_UPLOAD = 1,
	ISPMON_DIR_MAX,
};

/* What the parser made of a frame's network layer. */
enum ispmon_l3 {
	ISPMON_L3_IPV4 = 0,
	ISPMON_L3_IPV6 = 1,
	ISPMON_L3_OTHER = 2,     /* ARP, LLDP, PPPoE discovery, ... */
	ISPMON_L3_MALFORMED = 3, /* truncated or inconsistent headers */
	ISPMON_L3_MAX,
};

/*
 * Per-CPU, one entry per direction, never evicted: the exact line totals.
 * bytes are L2 frame bytes as the interface counts them (Ethernet header
 * included, FCS and preamble not); a GSO/GRO super-packet is counted as the
 * segments it stands for, each with its own headers, so the totals match
 * the wire whatever the offload settings.
 */
struct ispmon_dir_stats {
	__u64 packets;
	__u64 bytes;
	__u64 l3_packets[ISPMON_L3_MAX];
	__u64 vlan_packets;  /* carried at least one 802.1Q/802.1ad tag */
	__u64 pppoe_packets; /* PPPoE session frames */
};

#endif /* ISPMON_FLOW_H */
