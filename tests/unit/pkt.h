/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Packet builders shared by the BPF unit tests (test_flow.c, test_rtt.c):
 * a byte buffer, Internet checksums, IPv4 (with options) and IPv6 (with
 * extension headers) around a transport payload, and Ethernet frames with
 * VLAN tags and PPPoE. Everything is written byte by byte in network order.
 * Header-only: static inline so a test that uses a subset builds warning-free.
 */
#ifndef ISPMON_TEST_PKT_H
#define ISPMON_TEST_PKT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUF_MAX 3584 /* test runs take up to 4096 - 64 - 320 bytes */
#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_ARP 0x0806
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define ETH_P_QINQ1 0x9100
#define ETH_P_PPP_DISC 0x8863
#define ETH_P_PPP_SES 0x8864
#define PPP_IP 0x0021
#define PPP_IPV6 0x0057
#define PPP_LCP 0xC021
#define P_HOPOPTS 0
#define P_ICMP 1
#define P_TCP 6
#define P_UDP 17
#define P_ROUTING 43
#define P_FRAGMENT 44
#define P_AH 51
#define P_ICMPV6 58
#define P_NONE 59
#define P_DSTOPTS 60
#define TH_SYN 0x02
#define TH_ACK 0x10
#define TH_PSH 0x08
#define TH_FIN 0x01
#define TH_RST 0x04

struct buf {
	uint8_t d[BUF_MAX];
	size_t n;
};

static inline void b_put(struct buf *b, const void *p, size_t n)
{
	if (b->n + n > sizeof(b->d)) {
		fprintf(stderr, "pkt.h: packet buffer overflow\n");
		exit(1);
	}
	memcpy(b->d + b->n, p, n);
	b->n += n;
}

static inline void b_u8(struct buf *b, uint8_t v)
{
	b_put(b, &v, 1);
}

static inline void b_u16(struct buf *b, uint16_t v)
{
	uint8_t x[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	b_put(b, x, 2);
}

static inline void b_u32(struct buf *b, uint32_t v)
{
	b_u16(b, (uint16_t)(v >> 16));
	b_u16(b, (uint16_t)v);
}

static inline void b_fill(struct buf *b, uint8_t v, size_t n)
{
	while (n--)
		b_u8(b, v);
}

static inline void set16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline uint16_t get16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

/* Internet checksum (RFC 1071): add 16-bit big-endian words, fold. */
static inline uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i + 1 < n; i += 2)
		sum += get16(p + i);
	if (n & 1)
		sum += (uint32_t)p[n - 1] << 8;
	return sum;
}

static inline uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* Where the L4 checksum lives, or -1. */
static inline int l4_csum_off(uint8_t proto)
{
	switch (proto) {
	case P_TCP:
		return 16;
	case P_UDP:
		return 6;
	case P_ICMP:
	case P_ICMPV6:
		return 2;
	default:
		return -1;
	}
}

static const uint8_t V4_SRC[4] = { 192, 0, 2, 10 };
static const uint8_t V4_DST[4] = { 198, 51, 100, 20 };
static const uint8_t V6_SRC[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10 };
static const uint8_t V6_DST[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20 };

struct v4opt {
	const uint8_t *src, *dst;   /* NULL: the defaults above */
	const uint8_t *opts;        /* IP options, a multiple of 4 bytes */
	size_t optlen;
	uint16_t frag;              /* flags + fragment offset field */
};

/* IPv4 packet around l4: correct header checksum, and the L4 checksum with
 * the pseudo header (for unfragmented packets). */
static inline void ipv4_pkt(struct buf *ip, uint8_t proto, const struct buf *l4,
			    const struct v4opt *o)
{
	static const struct v4opt none;
	const uint8_t *src, *dst;
	size_t hl;
	int co;

	if (!o)
		o = &none;
	src = o->src ? o->src : V4_SRC;
	dst = o->dst ? o->dst : V4_DST;
	hl = 20 + o->optlen;
	ip->n = 0;
	b_u8(ip, (uint8_t)(0x40 | hl / 4));
	b_u8(ip, 0);                           /* DSCP/ECN */
	b_u16(ip, (uint16_t)(hl + l4->n));     /* total length */
	b_u16(ip, 0x1c46);                     /* id */
	b_u16(ip, o->frag);
	b_u8(ip, 64);                          /* TTL */
	b_u8(ip, proto);
	b_u16(ip, 0);                          /* header checksum */
	b_put(ip, src, 4);
	b_put(ip, dst, 4);
	if (o->optlen)
		b_put(ip, o->opts, o->optlen);
	set16(ip->d + 10, csum_fold(csum_add(0, ip->d, hl)));
	b_put(ip, l4->d, l4->n);

	co = l4_csum_off(proto);
	if (co >= 0 && (o->frag & 0x3fff) == 0 && l4->n >= (size_t)co + 2) {
		uint8_t *p = ip->d + hl;
		uint32_t sum = 0;

		if (proto != P_ICMP) {
			sum = csum_add(sum, src, 4);
			sum = csum_add(sum, dst, 4);
			sum += proto;
			sum += (uint32_t)l4->n;
		}
		sum = csum_add(sum, p, l4->n);
		set16(p + co, csum_fold(sum));
	}
}

/* IPv6 extension headers, appended to ext. */
static inline void ext_opts(struct buf *ext, uint8_t next, size_t units)
{
	/* Hop-by-hop or destination options: (units + 1) * 8 bytes, PadN. */
	size_t len = (units + 1) * 8;

	b_u8(ext, next);
	b_u8(ext, (uint8_t)units);
	b_u8(ext, 1);                  /* PadN */
	b_u8(ext, (uint8_t)(len - 4));
	b_fill(ext, 0, len - 4);
}

static inline void ext_frag(struct buf *ext, uint8_t next, uint16_t offset8, bool more)
{
	b_u8(ext, next);
	b_u8(ext, 0);
	b_u16(ext, (uint16_t)(offset8 << 3 | (more ? 1 : 0)));
	b_u32(ext, 0xdeadbeef);        /* identification */
}

static inline void ext_routing(struct buf *ext, uint8_t next)
{
	/* Type 4 (SRH) with one segment: 24 bytes, hdrlen 2. */
	b_u8(ext, next);
	b_u8(ext, 2);
	b_u8(ext, 4);
	b_u8(ext, 0);                  /* segments left */
	b_fill(ext, 0, 4);
	b_put(ext, V6_DST, 16);
}

static inline void ext_ah(struct buf *ext, uint8_t next)
{
	/* AH with a 96-bit ICV: 24 bytes, payload len field (24 / 4) - 2 = 4. */
	b_u8(ext, next);
	b_u8(ext, 4);
	b_u16(ext, 0);
	b_u32(ext, 0x100);             /* SPI */
	b_u32(ext, 1);                 /* sequence */
	b_fill(ext, 0xcc, 12);
}

struct v6opt {
	const uint8_t *src;         /* NULL: V6_SRC */
	const uint8_t *dst;         /* NULL: V6_DST */
	const struct buf *ext;      /* extension headers, first one = nexthdr */
	uint8_t first;              /* next header of the fixed header if ext */
	uint8_t version;            /* 0: 6 */
};

static inline void ipv6_pkt(struct buf *ip, uint8_t proto, const struct buf *l4,
			    const struct v6opt *o)
{
	static const struct v6opt none;
	size_t extlen;
	int co;

	if (!o)
		o = &none;
	extlen = o->ext ? o->ext->n : 0;
	ip->n = 0;
	b_u32(ip, (uint32_t)(o->version ? o->version : 6) << 28 | 0x12345);
	b_u16(ip, (uint16_t)(extlen + l4->n));
	b_u8(ip, o->ext ? o->first : proto);
	b_u8(ip, 64);
	b_put(ip, o->src ? o->src : V6_SRC, 16);
	b_put(ip, o->dst ? o->dst : V6_DST, 16);
	if (o->ext)
		b_put(ip, o->ext->d, extlen);
	b_put(ip, l4->d, l4->n);

	co = l4_csum_off(proto);
	if (co >= 0 && proto != P_ICMP && l4->n >= (size_t)co + 2) {
		uint8_t *p = ip->d + 40 + extlen;
		uint32_t sum = csum_add(0, ip->d + 8, 32);

		sum += (uint32_t)l4->n;
		sum += proto;
		sum = csum_add(sum, p, l4->n);
		set16(p + co, csum_fold(sum));
	}
}

static const uint8_t MAC_DST[6] = { 0x02, 0x00, 0x5e, 0x00, 0x00, 0x01 };
static const uint8_t MAC_SRC[6] = { 0x02, 0x00, 0x5e, 0x00, 0x00, 0x02 };

/* Ethernet frame: tags (TPIDs, outermost first), then a PPPoE session
 * header when ppp_proto != 0 (ethertype is then ignored), then payload. */
static inline void eth_frame(struct buf *f, const uint16_t *tpids, int ntags,
			     uint16_t ppp_proto, uint16_t ethertype, const struct buf *payload)
{
	f->n = 0;
	b_put(f, MAC_DST, 6);
	b_put(f, MAC_SRC, 6);
	for (int i = 0; i < ntags; i++) {
		b_u16(f, tpids[i]);
		b_u16(f, (uint16_t)(100 + 10 * i)); /* PCP 0, DEI 0, VID */
	}
	if (ppp_proto) {
		b_u16(f, ETH_P_PPP_SES);
		b_u8(f, 0x11);                 /* version 1, type 1 */
		b_u8(f, 0x00);                 /* code: session data */
		b_u16(f, 0x2a2a);              /* session id */
		b_u16(f, (uint16_t)(payload->n + 2));
		b_u16(f, ppp_proto);
	} else {
		b_u16(f, ethertype);
	}
	b_put(f, payload->d, payload->n);
}

#endif /* ISPMON_TEST_PKT_H */
