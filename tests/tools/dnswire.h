// dnswire.h: the few pieces of the DNS wire format (RFC 1035) that dnsd and
// dnsq share. Everything here checks bounds against the packet length; a
// function that meets something it does not understand returns -1.
#ifndef DNSWIRE_H
#define DNSWIRE_H

#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define DNS_HDR_LEN 12
#define DNS_NAME_MAX 255 /* wire length of a name, root label included */
#define DNS_TYPE_A 1
#define DNS_TYPE_AAAA 28
#define DNS_TYPE_ANY 255
#define DNS_CLASS_IN 1
#define DNS_CLASS_ANY 255

/* Header flag bits (second 16-bit word). */
#define DNS_QR 0x8000u
#define DNS_OPCODE_MASK 0x7800u
#define DNS_AA 0x0400u
#define DNS_TC 0x0200u
#define DNS_RD 0x0100u
#define DNS_RCODE_MASK 0x000fu

struct dns_question {
	uint8_t name[DNS_NAME_MAX]; /* wire form, uncompressed */
	size_t name_len;
	uint16_t qtype, qclass;
};

static inline uint16_t dns_get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline void dns_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* Parse the question at pkt[off..len): an uncompressed name (a pointer can
 * only point backwards, and before the first question there is no name),
 * type and class. Returns the offset after it, or -1. */
static inline long dns_parse_question(const uint8_t *pkt, size_t len, size_t off,
				      struct dns_question *q)
{
	size_t n = 0;
	for (;;) {
		if (off >= len)
			return -1;
		uint8_t l = pkt[off];
		if (l & 0xc0) /* compression pointer or reserved label type */
			return -1;
		if (off + 1 + l > len || n + 1 + l > DNS_NAME_MAX)
			return -1;
		memcpy(q->name + n, pkt + off, (size_t)l + 1);
		n += (size_t)l + 1;
		off += (size_t)l + 1;
		if (!l)
			break;
	}
	if (off + 4 > len)
		return -1;
	q->name_len = n;
	q->qtype = dns_get16(pkt + off);
	q->qclass = dns_get16(pkt + off + 2);
	return (long)(off + 4);
}

/* Write q at out[0..cap); returns bytes written or -1. */
static inline long dns_put_question(uint8_t *out, size_t cap, const struct dns_question *q)
{
	if (q->name_len + 4 > cap)
		return -1;
	memcpy(out, q->name, q->name_len);
	dns_put16(out + q->name_len, q->qtype);
	dns_put16(out + q->name_len + 2, q->qclass);
	return (long)(q->name_len + 4);
}

/* Same name (ASCII case-insensitive, RFC 4343), same type and class. */
static inline int dns_question_eq(const struct dns_question *a, const struct dns_question *b)
{
	if (a->name_len != b->name_len || a->qtype != b->qtype || a->qclass != b->qclass)
		return 0;
	for (size_t i = 0; i < a->name_len; i++)
		if (tolower(a->name[i]) != tolower(b->name[i]))
			return 0;
	return 1;
}

/* Text "www.example.net" (a trailing dot optional; "." is the root) to wire
 * form. Returns the wire length or -1 (empty label, label > 63, name > 255). */
static inline long dns_encode_name(const char *text, uint8_t *out, size_t cap)
{
	size_t n = 0;
	if (!strcmp(text, ".")) {
		text = "";
	}
	while (*text) {
		size_t l = strcspn(text, ".");
		if (l == 0 || l > 63 || n + 1 + l + 1 > cap || n + 1 + l + 1 > DNS_NAME_MAX)
			return -1;
		out[n] = (uint8_t)l;
		memcpy(out + n + 1, text, l);
		n += 1 + l;
		text += l;
		if (*text == '.')
			text++;
	}
	if (n + 1 > cap)
		return -1;
	out[n++] = 0;
	return (long)n;
}

/* Wire name to printable text for logs; unprintable bytes and dots inside a
 * label become '?'. Always NUL-terminates out (cap >= 2). */
static inline void dns_name_text(const uint8_t *name, size_t len, char *out, size_t cap)
{
	size_t o = 0, i = 0;
	if (len <= 1 || !name[0]) {
		snprintf(out, cap, ".");
		return;
	}
	while (i < len && name[i] && o + 2 < cap) {
		size_t l = name[i++];
		for (size_t k = 0; k < l && i < len && o + 2 < cap; k++, i++)
			out[o++] = (isgraph(name[i]) && name[i] != '.') ? (char)name[i] : '?';
		out[o++] = '.';
	}
	out[o] = 0;
}

/* Skip a possibly compressed name in a message; returns the offset after it
 * (after the first pointer, if any) or -1. */
static inline long dns_skip_name(const uint8_t *pkt, size_t len, size_t off)
{
	for (int labels = 0; labels < 128; labels++) {
		if (off >= len)
			return -1;
		uint8_t l = pkt[off];
		if ((l & 0xc0) == 0xc0)
			return off + 2 <= len ? (long)(off + 2) : -1;
		if (l & 0xc0)
			return -1;
		off += (size_t)l + 1;
		if (!l)
			return off <= len ? (long)off : -1;
	}
	return -1;
}

#endif
