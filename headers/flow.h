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
	/* TCP and UDP payload: what a speed test or iperf3 calls goodput
	 * (retransmissions included), for the capacity estimate. */
	__u64 payload_bytes;
};

/* --- passive RTT ---------------------------------------------------------- */

/*
 * Which share of the round trip a sample measures. At the WAN hook a request
 * recorded on egress and answered on ingress went router -> internet ->
 * router (WAN leg, the ISP's share); one recorded on ingress and answered on
 * egress went router -> household device -> router (LAN leg).
 */
enum ispmon_leg {
	ISPMON_LEG_WAN = 0,
	ISPMON_LEG_LAN = 1,
	ISPMON_LEG_MAX,
};

enum ispmon_method {
	ISPMON_M_TCP_TS = 0,  /* TCP timestamp option: TSval echoed as TSecr */
	ISPMON_M_TCP_SEQ = 1, /* TCP without timestamps: end seq -> ACK */
	ISPMON_M_DNS = 2,     /* DNS over UDP: query id -> response */
	ISPMON_M_ICMP = 3,    /* ICMP/ICMPv6 echo id/seq -> reply */
	ISPMON_M_MAX,
};

#define ISPMON_RTT_SERIES (ISPMON_LEG_MAX * ISPMON_M_MAX)

/*
 * Log-linear histogram of RTT in microseconds: 16 linear buckets of 4 us
 * below 64 us, then 16 buckets per power of two up to 2^24 us (16.8 s);
 * the last bucket also takes everything above. Bucket width is at most
 * 1/16 of its lower edge (6.25%), fine enough for a median within 5%.
 */
#define ISPMON_RTT_SUB_BITS 4
#define ISPMON_RTT_SUB (1u << ISPMON_RTT_SUB_BITS)
#define ISPMON_RTT_LIN_BITS 6 /* 2^6 = 64 us: end of the linear part */
#define ISPMON_RTT_OCTAVES 18 /* 2^6 .. 2^24 us */
#define ISPMON_RTT_BUCKETS (ISPMON_RTT_SUB + ISPMON_RTT_OCTAVES * ISPMON_RTT_SUB)

static inline __u32 ispmon_rtt_bucket(__u64 us)
{
	__u32 msb = 0;
	__u64 v = us;

	if (us < (1u << ISPMON_RTT_LIN_BITS))
		return (__u32)(us >> (ISPMON_RTT_LIN_BITS - ISPMON_RTT_SUB_BITS));
	/* floor(log2(us)) without a clz instruction (BPF has none). */
	if (v >> 32) { v >>= 32; msb += 32; }
	if (v >> 16) { v >>= 16; msb += 16; }
	if (v >> 8) { v >>= 8; msb += 8; }
	if (v >> 4) { v >>= 4; msb += 4; }
	if (v >> 2) { v >>= 2; msb += 2; }
	if (v >> 1) { msb += 1; }
	if (msb >= ISPMON_RTT_LIN_BITS + ISPMON_RTT_OCTAVES)
		return ISPMON_RTT_BUCKETS - 1;
	return ISPMON_RTT_SUB + (msb - ISPMON_RTT_LIN_BITS) * ISPMON_RTT_SUB +
	       (__u32)((us >> (msb - ISPMON_RTT_SUB_BITS)) & (ISPMON_RTT_SUB - 1));
}

/* Lower edge of a bucket in microseconds (the upper is the next one's). */
static inline __u64 ispmon_rtt_bucket_lower_us(__u32 idx)
{
	__u32 octave, sub;

	if (idx < ISPMON_RTT_SUB)
		return (__u64)idx << (ISPMON_RTT_LIN_BITS - ISPMON_RTT_SUB_BITS);
	octave = (idx - ISPMON_RTT_SUB) / ISPMON_RTT_SUB;
	sub = (idx - ISPMON_RTT_SUB) % ISPMON_RTT_SUB;
	return (__u64)(ISPMON_RTT_SUB + sub)
	       << (octave + ISPMON_RTT_LIN_BITS - ISPMON_RTT_SUB_BITS);
}

/* A flow in one direction, as the packet carries it. IPv4 addresses sit in
 * word 0 of the arrays; for ICMP both ports are 0. */
struct ispmon_flow_key {
	__u32 saddr[4];
	__u32 daddr[4];
	__u16 sport; /* network byte order */
	__u16 dport;
	__u8 proto;
	__u8 family; /* 4 or 6 */
	__u16 pad;
};

/* An outstanding request: TSval, DNS id or ICMP id<<16|seq, by method. */
struct ispmon_pending_key {
	struct ispmon_flow_key flow; /* the direction the request went */
	__u32 ident;
	__u32 method;
};

#define ISPMON_FS_TSVAL_SEEN 0x1
#define ISPMON_FS_SEQ_INIT 0x2
#define ISPMON_FS_PENDING 0x4 /* a SEQ/ACK measurement is outstanding */
#define ISPMON_FS_TSECR_SEEN 0x8
#define ISPMON_FS_ACK_SEEN 0x10

/* Per flow direction (the sender's): TCP state for both methods. */
struct ispmon_flow_state {
	__u64 last_seen_ns;
	__u64 last_record_ns; /* rate limit of TS records */
	__u64 pending_ts_ns;  /* SEQ/ACK: when pending_end left */
	__u32 last_tsval;
	__u32 highest_end;    /* highest sequence end sent */
	__u32 pending_end;
	__u32 flags;
	__u32 last_tsecr;     /* last TSecr this direction sent: echo shortcut */
	__u32 last_ack;       /* last ACK number it sent: the same shortcut */
};

/* Per method, per CPU. */
struct ispmon_rtt_counters {
	__u64 records;      /* requests remembered */
	__u64 samples;      /* answers matched: RTT samples */
	__u64 rate_limited; /* records skipped by the per-flow rate limit */
	__u64 ambiguous;    /* records dropped by Karn's rule (retransmission) */
};

struct ispmon_rtt_sum {
	__u64 sum_ns;
	__u64 count;
};

/* The TC programs' per-CPU shortcut for bursts of one TSval (bpf/rtt.h):
 * what this CPU last let through for a flow. */
#define ISPMON_SEEN_BITS 8

struct ispmon_tcp_seen {
	struct ispmon_flow_key key;
	__u32 tsval;
	__u32 tsecr;
	__u32 end; /* highest sequence end of the data it let through */
	__u32 valid;
};

/* Flow table bookkeeping, per CPU. */
struct ispmon_flow_counters {
	__u64 created;
	__u64 closed; /* deleted on RST */
};

/* --- per LAN device (the TC programs on a LAN interface) ------------------- */

/* Per-device RTT keeps every 4th kernel bucket edge: 4 per power of two. */
#define ISPMON_DEV_RTT_SHIFT 2
#define ISPMON_DEV_RTT_BUCKETS (ISPMON_RTT_BUCKETS >> ISPMON_DEV_RTT_SHIFT)

/* A household device: its MAC on Ethernet LANs (family 0, addr[0..5]), its
 * IP address on L3-only LAN interfaces (family 4 or 6). */
struct ispmon_dev_key {
	__u8 addr[16];
	__u8 family;
	__u8 pad[3];
} __attribute__((aligned(4))); /* compared as words in the TC programs */

/* Per CPU. Directions as on the WAN: download = towards the device. */
struct ispmon_dev_stats {
	__u64 bytes[ISPMON_DIR_MAX];
	__u64 packets[ISPMON_DIR_MAX];
	__u32 ipv6[4];    /* last IPv6 source address the device used */
	__u32 ipv4;       /* last IPv4 source address, network order */
	__u32 pad;
	__u64 last_seen_ns;
	__u64 rtt_sum_ns[ISPMON_LEG_MAX];
	__u64 rtt_count[ISPMON_LEG_MAX];
	__u64 rtt_hist[ISPMON_LEG_MAX][ISPMON_DEV_RTT_BUCKETS];
};

/*
 * A per-CPU, direct-mapped cache in front of the device table: a packet of
 * a device whose slot it owns on this CPU costs an array lookup instead of a
 * hash lookup. A slot is claimed by the first device that hashes to it and
 * kept (a household has a few dozen devices); the others share the LRU
 * table. Slots describe themselves, so userspace adds a device's slots on
 * every CPU to its table entry.
 */
#define ISPMON_DEV_CACHE_SLOTS 64

struct ispmon_dev_slot {
	struct ispmon_dev_key key;
	__u32 used;
	struct ispmon_dev_stats st;
};

static inline __u32 ispmon_dev_slot_of(const struct ispmon_dev_key *k)
{
	__u32 w = (__u32)k->addr[2] << 24 | (__u32)k->addr[3] << 16 |
		  (__u32)k->addr[4] << 8 | k->addr[5];

	/* The low bytes tell MACs (the NIC part) and addresses apart. */
	w ^= (__u32)k->addr[12] << 24 | (__u32)k->addr[13] << 16 |
	     (__u32)k->addr[14] << 8 | k->addr[15];
	return (w * 2654435761u) >> 26; /* 6 bits: ISPMON_DEV_CACHE_SLOTS */
}

#endif /* ISPMON_FLOW_H */
