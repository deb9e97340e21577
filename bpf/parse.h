/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Header parser for the TC programs: link layer (Ethernet, 802.1Q/802.1ad,
 * PPPoE session, or none on L3 devices), IPv4 (with options) and IPv6 (with
 * extension headers), and the start of the transport header. Headers only:
 * nothing past the transport header is ever read.
 *
 * Direct packet access on the linear part of the skb. Forwarded traffic has
 * its headers there; a frame whose headers are not is counted as malformed
 * rather than pulled, because bpf_skb_pull_data() would change the skb.
 */
#ifndef ISPMON_PARSE_H
#define ISPMON_PARSE_H

/* Macros from UAPI headers, which vmlinux.h (BTF) cannot carry. */
#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define ETH_P_QINQ1 0x9100
#define ETH_P_PPP_SES 0x8864
#define PPP_IP 0x0021
#define PPP_IPV6 0x0057
#define IPPROTO_HOPOPTS 0
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_AH 51
#define IPPROTO_NONE 59
#define IPPROTO_DSTOPTS 60
#define IPPROTO_ICMPV6 58
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF

#define MAX_VLAN_TAGS 2
#define MAX_IPV6_EXT 6

struct pkt {
	struct ispmon_flow_key key; /* filled by rtt.h, not the parser */
	__u32 l3_off;    /* offset of the IP header from skb->data */
	__u32 l4_off;    /* offset of the transport header, 0 if none */
	__u32 l4_len;    /* transport header + payload, from the IP header */
	__u32 hdr_len;   /* all headers up to the transport payload */
	__u8 l4_proto;   /* IPPROTO_*, 255 when unknown */
	__u8 vlan;       /* an in-band VLAN tag was seen */
	__u8 pppoe;      /* PPPoE session frame */
	__u8 frag;       /* a non-first IP fragment: no transport header */
};

struct vlan_tag {
	__be16 tci;
	__be16 proto;
};

struct pppoe_ses {
	__u8 ver_type;
	__u8 code;
	__be16 session;
	__be16 length;
	__be16 ppp_proto;
};

/* Returns the ethertype of the network layer and sets *off past the link
 * layer, or 0 when the link layer is truncated. */
static __always_inline __u16 parse_l2(void *data, void *data_end, struct pkt *p,
				      __u32 *off)
{
	struct ethhdr *eth = data;
	__u16 proto;

	if ((void *)(eth + 1) > data_end)
		return 0;
	proto = bpf_ntohs(eth->h_proto);
	*off = sizeof(*eth);

#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		struct vlan_tag *tag = data + *off;

		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD &&
		    proto != ETH_P_QINQ1)
			break;
		if ((void *)(tag + 1) > data_end)
			return 0;
		p->vlan = 1;
		proto = bpf_ntohs(tag->proto);
		*off += sizeof(*tag);
	}

	if (proto == ETH_P_PPP_SES) {
		struct pppoe_ses *ses = data + *off;

		if ((void *)(ses + 1) > data_end)
			return 0;
		p->pppoe = 1;
		*off += sizeof(*ses);
		switch (bpf_ntohs(ses->ppp_proto)) {
		case PPP_IP:
			return ETH_P_IP;
		case PPP_IPV6:
			return ETH_P_IPV6;
		default:
			return ETH_P_PPP_SES; /* LCP, IPCP, ...: not IP */
		}
	}
	return proto;
}

static __always_inline int parse_ipv4(void *data, void *data_end, struct pkt *p)
{
	struct iphdr *ip = data + p->l3_off;
	__u32 ihl;

	if ((void *)(ip + 1) > data_end || ip->version != 4)
		return -1;
	ihl = ip->ihl * 4;
	if (ihl < sizeof(*ip) || bpf_ntohs(ip->tot_len) < ihl)
		return -1;
	if (data + p->l3_off + ihl > data_end)
		return -1;
	p->l4_proto = ip->protocol;
	p->l4_off = p->l3_off + ihl;
	p->l4_len = bpf_ntohs(ip->tot_len) - ihl;
	p->frag = (bpf_ntohs(ip->frag_off) & IP_OFFSET) != 0;
	return 0;
}

static __always_inline int parse_ipv6(void *data, void *data_end, struct pkt *p)
{
	struct ipv6hdr *ip6 = data + p->l3_off;
	__u32 off = p->l3_off + sizeof(*ip6);
	__u8 nh;

	if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
		return -1;
	nh = ip6->nexthdr;

#pragma unroll
	for (int i = 0; i < MAX_IPV6_EXT; i++) {
		struct ipv6_opt_hdr *ext = data + off;

		if (nh != IPPROTO_HOPOPTS && nh != IPPROTO_ROUTING &&
		    nh != IPPROTO_DSTOPTS && nh != IPPROTO_FRAGMENT &&
		    nh != IPPROTO_AH)
			break;
		if ((void *)(ext + 1) > data_end)
			return -1;
		if (nh == IPPROTO_FRAGMENT) {
			struct frag_hdr *fh = data + off;

			if ((void *)(fh + 1) > data_end)
				return -1;
			if (bpf_ntohs(fh->frag_off) & ~0x7)
				p->frag = 1;
			off += sizeof(*fh);
		} else if (nh == IPPROTO_AH) {
			off += ((__u32)ext->hdrlen + 2) * 4;
		} else {
			off += ((__u32)ext->hdrlen + 1) * 8;
		}
		nh = ext->nexthdr;
	}
	/* Still an extension header after the last allowed one: give up on
	 * the transport layer rather than guess. */
	if (nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING ||
	    nh == IPPROTO_DSTOPTS || nh == IPPROTO_FRAGMENT || nh == IPPROTO_AH)
		nh = 255;
	p->l4_proto = nh;
	p->l4_off = off;
	/* payload_len counts the extension headers too. */
	p->l4_len = bpf_ntohs(ip6->payload_len) - (off - p->l3_off - sizeof(*ip6));
	return 0;
}

/* Transport header length, or -1 when it is cut short. 0 for protocols whose
 * header we do not look at. */
static __always_inline int parse_l4(void *data, void *data_end, struct pkt *p)
{
	void *l4 = data + p->l4_off;

	if (p->frag || p->l4_proto == IPPROTO_NONE || p->l4_proto == 255)
		return 0;
	switch (p->l4_proto) {
	case IPPROTO_TCP: {
		struct tcphdr *th = l4;
		__u32 doff;

		if ((void *)(th + 1) > data_end)
			return -1;
		doff = th->doff * 4;
		if (doff < sizeof(*th) || l4 + doff > data_end)
			return -1;
		return doff;
	}
	case IPPROTO_UDP:
		if (l4 + sizeof(struct udphdr) > data_end)
			return -1;
		return sizeof(struct udphdr);
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if (l4 + 8 > data_end)
			return -1;
		return 8;
	default:
		return 0;
	}
}

/*
 * Classify a frame. l3_proto_hint is skb->protocol (host order), used on L3
 * devices where the packet starts at the IP header.
 */
static __always_inline enum ispmon_l3 parse_pkt(void *data, void *data_end,
						bool l3_dev, __u16 l3_proto_hint,
						struct pkt *p)
{
	__u32 off = 0;
	__u16 proto;
	int l4len;

	p->l4_proto = 255;
	if (l3_dev) {
		proto = l3_proto_hint;
	} else {
		proto = parse_l2(data, data_end, p, &off);
		if (!proto)
			return ISPMON_L3_MALFORMED;
	}
	p->l3_off = off;
	if (proto == ETH_P_IP) {
		if (parse_ipv4(data, data_end, p))
			return ISPMON_L3_MALFORMED;
	} else if (proto == ETH_P_IPV6) {
		if (parse_ipv6(data, data_end, p))
			return ISPMON_L3_MALFORMED;
	} else {
		return ISPMON_L3_OTHER;
	}
	l4len = parse_l4(data, data_end, p);
	if (l4len < 0)
		return ISPMON_L3_MALFORMED;
	p->hdr_len = p->l4_off + l4len;
	return proto == ETH_P_IP ? ISPMON_L3_IPV4 : ISPMON_L3_IPV6;
}

#endif /* ISPMON_PARSE_H */
