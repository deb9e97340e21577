#include "devices.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rtt.h"

#define RTT_SLOT_S 60.0 /* per-device RTT quantiles cover 60-120 s */
#define DEV_BATCH 64     /* device table entries read per system call */

struct dev_entry {
	struct ispmon_dev_key key;
	/* Two kernel parts, each summed over CPUs and interfaces: the LRU
	 * table's entry, which can be evicted and re-created, and the cache
	 * slots, which only grow. Each is read this round (map_now,
	 * slots_now) and kept as of the last commit (map, slots); a part not
	 * read this round (evicted, or a read that failed) keeps its last
	 * reading. last is both at the last commit; base what evicted
	 * incarnations counted. */
	struct ispmon_dev_stats map_now, map, slots_now, slots, last, base;
	bool map_seen, slots_seen; /* read this round */
	bool exported; /* has its own label */
	/* rate over the last commit interval, bytes/s per direction */
	double rate[ISPMON_DIR_MAX];
	/* totals at the last commit, for what to add to "other" */
	uint64_t folded_bytes[ISPMON_DIR_MAX], folded_packets[ISPMON_DIR_MAX];
	/* RTT window: histogram totals at the last two slot boundaries. */
	uint64_t slot_hist[2][ISPMON_LEG_MAX][ISPMON_DEV_RTT_BUCKETS];
	int lease; /* the lease naming it while labelled, or -1 */
};

/* A lease that can name a device. */
struct lease {
	uint8_t mac[6];
	bool has_mac;
	bool ambiguous;   /* another MAC's lease has the same name: unused */
	uint16_t name_id; /* the first lease with the same name */
	char name[33];
};

/* An IPv6 address (/128) or delegated prefix of a lease. */
struct lease_net {
	uint8_t addr[16];
	uint8_t plen;
	uint16_t lease;
};

struct devices {
	unsigned max_exported, n_exported;
	unsigned n;
	struct dev_entry *tab; /* DEVICES_TABLE_MAX entries */
	/* Traffic of devices while outside the top-N: only ever grows. */
	uint64_t other_bytes[ISPMON_DIR_MAX], other_packets[ISPMON_DIR_MAX];
	bool have_other;
	/* one batch read of the device table: DEV_BATCH keys x CPUs */
	struct ispmon_dev_key *batch_keys;
	struct ispmon_dev_stats *batch_vals;
	/* one batch read of the slot cache: slots x CPUs */
	struct ispmon_dev_slot *slots;
	__u32 *slot_keys;
	int ncpu;
	double last_slot, last_commit;
	/* Host names from the leases file: by MAC, and by the IPv6
	 * addresses (or delegated prefixes) of odhcpd's leases. */
	struct lease leases[DEVICES_TABLE_MAX];
	struct lease_net nets[DEVICES_TABLE_MAX];
	unsigned n_leases, n_nets;
	uint16_t name_uses[DEVICES_TABLE_MAX]; /* labelled devices per name */
	/* The leases files, read together (dnsmasq's for IPv4 and odhcpd's
	 * for IPv6 on OpenWrt), with what each was when last read. */
	struct leases_file {
		char path[256];
		struct timespec mtim;
		off_t size;
		ino_t ino;
		int err; /* of the last look at it */
	} files[DEVICES_LEASE_FILES];
	unsigned n_files;
};

int devices_new(unsigned max_devices, struct devices **out)
{
	struct devices *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	d->max_exported = max_devices;
	d->ncpu = libbpf_num_possible_cpus();
	d->last_slot = -1;
	d->tab = calloc(DEVICES_TABLE_MAX, sizeof(*d->tab));
	if (d->ncpu > 0) {
		d->slots = calloc((size_t)d->ncpu * ISPMON_DEV_CACHE_SLOTS, sizeof(*d->slots));
		d->batch_vals = calloc((size_t)d->ncpu * DEV_BATCH, sizeof(*d->batch_vals));
	}
	d->slot_keys = calloc(ISPMON_DEV_CACHE_SLOTS, sizeof(*d->slot_keys));
	d->batch_keys = calloc(DEV_BATCH, sizeof(*d->batch_keys));
	if (!d->tab || !d->slots || !d->slot_keys || !d->batch_keys || !d->batch_vals) {
		devices_free(d);
		return -ENOMEM;
	}
	*out = d;
	return 0;
}

void devices_free(struct devices *d)
{
	if (!d)
		return;
	free(d->tab);
	free(d->slots);
	free(d->slot_keys);
	free(d->batch_keys);
	free(d->batch_vals);
	free(d);
}

unsigned devices_count(const struct devices *d) { return d->n; }

static bool has_ipv6(const struct ispmon_dev_stats *s)
{
	return s->ipv6[0] || s->ipv6[1] || s->ipv6[2] || s->ipv6[3];
}

static uint64_t stats_bytes(const struct ispmon_dev_stats *s)
{
	return s->bytes[0] + s->bytes[1];
}

static void stats_add(struct ispmon_dev_stats *a, const struct ispmon_dev_stats *b)
{
	for (int i = 0; i < ISPMON_DIR_MAX; i++) {
		a->bytes[i] += b->bytes[i];
		a->packets[i] += b->packets[i];
	}
	for (int l = 0; l < ISPMON_LEG_MAX; l++) {
		a->rtt_sum_ns[l] += b->rtt_sum_ns[l];
		a->rtt_count[l] += b->rtt_count[l];
		for (unsigned i = 0; i < ISPMON_DEV_RTT_BUCKETS; i++)
			a->rtt_hist[l][i] += b->rtt_hist[l][i];
	}
	/* Addresses: the most recent sender wins, but a newer reading without
	 * an address of one family (a CPU that saw only the device's IPv6 or
	 * ARP packets) must not hide the other CPU's older one. */
	{
		bool newer = b->last_seen_ns >= a->last_seen_ns;

		if (b->ipv4 && (newer || !a->ipv4))
			a->ipv4 = b->ipv4;
		if (has_ipv6(b) && (newer || !has_ipv6(a)))
			memcpy(a->ipv6, b->ipv6, sizeof(a->ipv6));
		if (newer)
			a->last_seen_ns = b->last_seen_ns;
	}
}

static struct dev_entry *find(const struct devices *d, const struct ispmon_dev_key *k)
{
	for (unsigned i = 0; i < d->n; i++)
		if (!memcmp(&d->tab[i].key, k, sizeof(*k)))
			return &d->tab[i];
	return NULL;
}

static struct dev_entry *add(struct devices *d, const struct ispmon_dev_key *k)
{
	struct dev_entry *e;

	if (d->n == DEVICES_TABLE_MAX) {
		/* Full: forget the first device outside the top-N; what it
		 * did outside it is in "other" already. */
		unsigned victim = DEVICES_TABLE_MAX;

		for (unsigned i = 0; i < d->n; i++)
			if (!d->tab[i].exported) {
				victim = i;
				break;
			}
		if (victim == DEVICES_TABLE_MAX)
			return NULL;
		d->tab[victim] = d->tab[--d->n];
	}
	e = &d->tab[d->n++];
	memset(e, 0, sizeof(*e));
	e->key = *k;
	e->lease = -1;
	return e;
}

/* A reading of a device's LRU entry or of one of its cache slots. */
static void ingest(struct devices *d, const struct ispmon_dev_key *key,
		   const struct ispmon_dev_stats *sum, bool slot)
{
	struct dev_entry *e = find(d, key);
	struct ispmon_dev_stats *now;
	bool *seen;

	if (!e)
		e = add(d, key);
	if (!e)
		return;
	now = slot ? &e->slots_now : &e->map_now;
	seen = slot ? &e->slots_seen : &e->map_seen;
	if (!*seen)
		memset(now, 0, sizeof(*now));
	stats_add(now, sum);
	*seen = true;
}

/* The cache's slots hold whole devices of one CPU each: every used one is a
 * reading of its device. Slots are never given up, so nothing is lost. */
static int read_cache(struct devices *d, int fd)
{
	__u32 count = ISPMON_DEV_CACHE_SLOTS, out;
	int err;

	err = bpf_map_lookup_batch(fd, NULL, &out, d->slot_keys, d->slots, &count, NULL);
	if (err && err != -ENOENT)
		return err;
	for (__u32 i = 0; i < count && i < ISPMON_DEV_CACHE_SLOTS; i++)
		for (int c = 0; c < d->ncpu; c++) {
			const struct ispmon_dev_slot *s = &d->slots[(size_t)i * (size_t)d->ncpu + (size_t)c];

			if (s->used)
				ingest(d, &s->key, &s->st, true);
		}
	return 0;
}

/* One device's LRU entry: its value on every CPU. */
static void ingest_map(struct devices *d, const struct ispmon_dev_key *key,
		       const struct ispmon_dev_stats *pcpu)
{
	struct ispmon_dev_stats sum = {0};

	for (int c = 0; c < d->ncpu; c++)
		stats_add(&sum, &pcpu[c]);
	ingest(d, key, &sum, false);
}

/* The table in batches (kernel 5.6; the TC programs need 5.11): the kernel
 * goes bucket by bucket, so an entry present all along is read once, and
 * one evicted meanwhile costs nothing. A walk key by key starts over from
 * the first key whenever the key it stands on is evicted, and under heavy
 * churn did not get through. On an error the devices not read keep their
 * last reading. */
static int read_batch(struct devices *d, int fd)
{
	__u32 token = 0; /* where the next batch starts: the kernel reads it, then writes it */

	for (unsigned round = 0; round < 4 * DEVICES_TABLE_MAX; round++) {
		__u32 count = DEV_BATCH;
		int err = bpf_map_lookup_batch(fd, round ? &token : NULL, &token, d->batch_keys,
					       d->batch_vals, &count, NULL);

		if (err && err != -ENOENT)
			return err;
		for (__u32 i = 0; i < count && i < DEV_BATCH; i++)
			ingest_map(d, &d->batch_keys[i], &d->batch_vals[(size_t)i * (size_t)d->ncpu]);
		if (err == -ENOENT)
			return 0;
	}
	return -E2BIG;
}

int devices_read(struct devices *d, int map_fd, int cache_fd)
{
	int err = read_batch(d, map_fd);

	if (cache_fd >= 0) {
		int cerr = read_cache(d, cache_fd);

		err = err ? err : cerr;
	}
	return err;
}

void devices_ingest(struct devices *d, const struct ispmon_dev_key *key,
		    const struct ispmon_dev_stats *sum)
{
	ingest(d, key, sum, false);
}

static uint64_t total_bytes(const struct dev_entry *e)
{
	return e->base.bytes[0] + e->base.bytes[1] + e->last.bytes[0] + e->last.bytes[1];
}

/* Re-rank: fill free places with the largest outsiders, then let an
 * outsider replace the smallest member when clearly larger. */
static void rerank(struct devices *d)
{
	for (;;) {
		struct dev_entry *best = NULL, *worst = NULL;

		for (unsigned i = 0; i < d->n; i++) {
			struct dev_entry *e = &d->tab[i];

			if (!e->exported && (!best || total_bytes(e) > total_bytes(best)))
				best = e;
			if (e->exported && (!worst || total_bytes(e) < total_bytes(worst)))
				worst = e;
		}
		if (!best || !total_bytes(best))
			return;
		if (d->n_exported < d->max_exported) {
			best->exported = true;
			d->n_exported++;
			continue;
		}
		if (!worst || total_bytes(best) < total_bytes(worst) + total_bytes(worst) / 10 ||
		    total_bytes(best) < total_bytes(worst) + 1000000)
			return;
		worst->exported = false;
		best->exported = true;
	}
}

static void assign_names(struct devices *d);

void devices_commit(struct devices *d, double now_s)
{
	bool new_slot = d->last_slot < 0 || now_s - d->last_slot >= RTT_SLOT_S;

	for (unsigned i = 0; i < d->n; i++) {
		struct dev_entry *e = &d->tab[i];

		if (e->map_seen) {
			/* Fewer bytes than last time: the kernel evicted and
			 * re-created the entry; keep what the old one had. */
			if (stats_bytes(&e->map_now) < stats_bytes(&e->map))
				stats_add(&e->base, &e->map);
			e->map = e->map_now;
		}
		/* Slots only grow: fewer bytes is a batch read cut short. */
		if (e->slots_seen && stats_bytes(&e->slots_now) >= stats_bytes(&e->slots))
			e->slots = e->slots_now;
		if (e->map_seen || e->slots_seen) {
			e->last = e->map;
			stats_add(&e->last, &e->slots);
			e->map_seen = e->slots_seen = false;
		}
		if (new_slot) {
			struct ispmon_dev_stats tot = e->base;

			stats_add(&tot, &e->last);
			memcpy(e->slot_hist[0], e->slot_hist[1], sizeof(e->slot_hist[0]));
			memcpy(e->slot_hist[1], tot.rtt_hist, sizeof(e->slot_hist[1]));
		}
	}
	if (new_slot)
		d->last_slot = now_s;

	/* Rank first: a device labelled from now on has its whole total in
	 * its own series, so none of it may go to "other" as well. Traffic
	 * since the last commit of devices outside the top-N goes to "other". */
	rerank(d);
	for (unsigned i = 0; i < d->n; i++) {
		struct dev_entry *e = &d->tab[i];

		for (int k = 0; k < ISPMON_DIR_MAX; k++) {
			uint64_t b = e->base.bytes[k] + e->last.bytes[k];
			uint64_t p = e->base.packets[k] + e->last.packets[k];

			if (d->last_commit > 0 && now_s > d->last_commit && b >= e->folded_bytes[k])
				e->rate[k] = (double)(b - e->folded_bytes[k]) / (now_s - d->last_commit);

			if (!e->exported && (b > e->folded_bytes[k] || p > e->folded_packets[k])) {
				d->other_bytes[k] += b - e->folded_bytes[k];
				d->other_packets[k] += p - e->folded_packets[k];
				d->have_other = true;
			}
			e->folded_bytes[k] = b;
			e->folded_packets[k] = p;
		}
	}
	d->last_commit = now_s;
	assign_names(d);
}

/* A host name usable as a label: not "other" (everything outside the
 * top-N), not something that reads as an IPv4 label of another device. */
static bool valid_name(const char *s)
{
	struct in_addr a;

	if (!*s || strlen(s) > 32 || !strcmp(s, "*") || !strcmp(s, "-") || !strcmp(s, "other") ||
	    inet_pton(AF_INET, s, &a) == 1)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '.' || *s == '-' || *s == '_'))
			return false;
	return true;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Hex bytes, "0a1b2c" or "0a:1b:2c" (one style throughout): how many, or
 * -1 when malformed or longer than max. */
static int unhex(const char *s, uint8_t *out, size_t max)
{
	bool colons = strlen(s) > 2 && s[2] == ':';
	size_t n = 0;

	while (*s) {
		int hi = hexval(s[0]), lo = hi < 0 ? -1 : hexval(s[1]);

		if (lo < 0 || n == max)
			return -1;
		out[n++] = (uint8_t)(hi << 4 | lo);
		s += 2;
		if (colons && *s == ':' && s[1])
			s++;
		else if (*s && (colons || *s == ':'))
			return -1;
	}
	return (int)n;
}

static bool parse_mac(const char *s, uint8_t mac[6]) { return unhex(s, mac, 6) == 6; }

/*
 * The link-layer address inside a DUID (RFC 8415), when it has one of
 * Ethernet type: DUID-LLT (type 1: hardware type, time, address) or DUID-LL
 * (type 3: hardware type, address). It may be another interface's MAC than
 * the one the client uses now: addresses are matched as well.
 */
static bool duid_mac(const uint8_t *duid, int len, uint8_t mac[6])
{
	unsigned type, hw;

	if (len < 4)
		return false;
	type = (unsigned)duid[0] << 8 | duid[1];
	hw = (unsigned)duid[2] << 8 | duid[3];
	if (hw != 1)
		return false;
	if (type == 1 && len == 14) {
		memcpy(mac, duid + 8, 6);
		return true;
	}
	if (type == 3 && len == 10) {
		memcpy(mac, duid + 4, 6);
		return true;
	}
	return false;
}

static int lease_add(struct devices *d, const uint8_t *mac, const char *name)
{
	struct lease *l;
	size_t n = strlen(name);

	if (d->n_leases == DEVICES_TABLE_MAX || n >= sizeof(l->name))
		return -1;
	l = &d->leases[d->n_leases];
	memset(l, 0, sizeof(*l));
	if (mac) {
		memcpy(l->mac, mac, 6);
		l->has_mac = true;
	}
	memcpy(l->name, name, n + 1);
	return (int)d->n_leases++;
}

/* "ADDR/LEN" of the family (a bare address is a host route); false if
 * malformed. IPv4 ones are only checked. */
static bool parse_net(const char *tok, int family, struct lease_net *n)
{
	char tmp[INET6_ADDRSTRLEN], *end;
	const char *slash = strchr(tok, '/');
	size_t alen = slash ? (size_t)(slash - tok) : strlen(tok);
	long max = family == AF_INET6 ? 128 : 32, plen = max;

	if (alen >= sizeof(tmp))
		return false;
	memcpy(tmp, tok, alen);
	tmp[alen] = 0;
	if (slash) {
		errno = 0;
		plen = strtol(slash + 1, &end, 10);
		if (errno || end == slash + 1 || *end || slash[1] == '-' || slash[1] == '+' ||
		    plen > max)
			return false;
	}
	n->plen = (uint8_t)plen;
	return inet_pton(family, tmp, n->addr) == 1;
}

#define LEASE_TOKENS 24

/* A whole number in base, lo..hi, digits only (and a '-' for -1). */
static bool is_num(const char *s, int base, long long lo, long long hi)
{
	char *end;
	long long v;

	if (!strcmp(s, "-1"))
		return lo <= -1;
	if (hexval(*s) < 0)
		return false; /* no sign, no space */
	errno = 0;
	v = strtoll(s, &end, base);
	return !errno && !*end && v >= lo && v <= hi;
}

/* One lease and the IPv6 addresses or prefixes it holds (a name, or a MAC
 * and a name, or a name and its addresses: it needs something to know the
 * device by). */
static void lease_add_nets(struct devices *d, const uint8_t *mac, const char *name,
			   struct lease_net *nets, int n_nets)
{
	int i;

	if (!mac && !n_nets)
		return;
	i = lease_add(d, mac, name);
	for (int k = 0; i >= 0 && k < n_nets && d->n_nets < DEVICES_TABLE_MAX; k++) {
		nets[k].lease = (uint16_t)i;
		d->nets[d->n_nets++] = nets[k];
	}
}

/*
 * dnsmasq: "EXPIRY MAC IP NAME CLIENT-ID" for DHCPv4, and after its "duid"
 * line "EXPIRY IAID IPV6 NAME DUID" for DHCPv6 (IAID decimal, "T" first
 * for a temporary address; "*" for no name or no DUID). A DHCPv6 lease
 * names a device by its DUID's MAC when it has one, and by its address.
 */
static void parse_dnsmasq(struct devices *d, char **tok, int n)
{
	uint8_t mac[6], duid[130];
	struct lease_net net;
	int len;

	if (n < 4 || !valid_name(tok[3]))
		return;
	if (parse_mac(tok[1], mac)) {
		lease_add(d, mac, tok[3]);
		return;
	}
	if (n < 5 || !is_num(tok[0], 10, 0, INT64_MAX) ||
	    !is_num(tok[1] + (tok[1][0] == 'T'), 10, 0, UINT32_MAX) || strchr(tok[2], '/') ||
	    !parse_net(tok[2], AF_INET6, &net))
		return;
	len = strcmp(tok[4], "*") ? unhex(tok[4], duid, sizeof(duid)) : 0;
	if (len < 0)
		return;
	lease_add_nets(d, duid_mac(duid, len, mac) ? mac : NULL, tok[3], &net, 1);
}

/*
 * odhcpd's state file (OpenWrt /tmp/hosts/odhcpd), one lease a line:
 * "# IFACE DUID IAID NAME EXPIRY HOST-ID PREFIX-LEN ADDR/LEN..." with the
 * DUID in hex, "-" for no name and a "broken\x20" prefix for one the server
 * refused; odhcpd's own DHCPv4 leases have the client's MAC (hex) as DUID
 * and "ipv4" as IAID. Its hosts-style lines ("ADDR<tab>NAME...") are
 * skipped, as are lines with a malformed field: a name is only taken from
 * a whole lease.
 */
static void parse_odhcpd(struct devices *d, char **tok, int n)
{
	struct lease_net nets[LEASE_TOKENS];
	uint8_t duid[130], mac[6];
	bool v4 = n >= 4 && !strcmp(tok[3], "ipv4"), has_mac;
	int len, n_nets = 0;

	if (n < 8 || !valid_name(tok[4]) || (!v4 && !is_num(tok[3], 16, 0, UINT32_MAX)) ||
	    !is_num(tok[5], 10, -1, INT64_MAX) || !is_num(tok[6], 16, 0, INT64_MAX) ||
	    !is_num(tok[7], 10, 0, 128))
		return;
	len = unhex(tok[2], duid, sizeof(duid));
	if (len < 0)
		return;
	for (int t = 8; t < n; t++)
		if (!parse_net(tok[t], v4 ? AF_INET : AF_INET6, &nets[n_nets++]))
			return;
	if (v4) {
		/* Its address is the DHCPv4 one: the MAC says it all. */
		if (len != 6)
			return;
		memcpy(mac, duid, 6);
		has_mac = true;
		n_nets = 0;
	} else {
		has_mac = duid_mac(duid, len, mac);
	}
	lease_add_nets(d, has_mac ? mac : NULL, tok[4], nets, n_nets);
}

/* Names used by leases of two MACs are ambiguous; a name's id is its first
 * lease, so devices named alike through different leases can be told. */
static void leases_index(struct devices *d)
{
	for (unsigned i = 0; i < d->n_leases; i++) {
		struct lease *l = &d->leases[i];

		l->name_id = (uint16_t)i;
		for (unsigned j = 0; j < i; j++) {
			struct lease *o = &d->leases[j];

			if (strcmp(o->name, l->name))
				continue;
			if (l->name_id == i)
				l->name_id = (uint16_t)j;
			if (l->has_mac && o->has_mac && memcmp(l->mac, o->mac, 6))
				l->ambiguous = o->ambiguous = true;
		}
	}
}

static bool prefix_match(const uint8_t *a, const uint8_t *p, unsigned plen)
{
	unsigned bytes = plen / 8, bits = plen % 8;

	if (memcmp(a, p, bytes))
		return false;
	return !bits || !((a[bytes] ^ p[bytes]) & (uint8_t)(0xff << (8 - bits)));
}

/* The lease naming a device: its MAC's, else the one holding its IPv6
 * address (the longest prefix), or -1. */
static int lease_for(const struct devices *d, const struct ispmon_dev_key *k,
		     const struct ispmon_dev_stats *st)
{
	const uint8_t *a6 = NULL;
	int best = -1, best_len = -1;

	if (k->family == 0) {
		for (unsigned i = 0; i < d->n_leases; i++)
			if (d->leases[i].has_mac && !d->leases[i].ambiguous &&
			    !memcmp(d->leases[i].mac, k->addr, 6))
				return (int)i;
		if (st && has_ipv6(st))
			a6 = (const uint8_t *)st->ipv6;
	} else if (k->family == 6) {
		a6 = k->addr;
	}
	if (!a6)
		return -1;
	for (unsigned i = 0; i < d->n_nets; i++) {
		const struct lease_net *n = &d->nets[i];

		if (n->plen > best_len && !d->leases[n->lease].ambiguous &&
		    prefix_match(a6, n->addr, n->plen)) {
			best = n->lease;
			best_len = n->plen;
		}
	}
	return best;
}

static const struct ispmon_dev_stats *addr_stats(const struct dev_entry *e)
{
	return has_ipv6(&e->last) || !has_ipv6(&e->base) ? &e->last : &e->base;
}

/* Each labelled device's lease; a name that would label two devices at
 * once (two leases of one name, a prefix holding both) labels neither. */
static void assign_names(struct devices *d)
{
	memset(d->name_uses, 0, sizeof(d->name_uses));
	for (unsigned i = 0; i < d->n; i++) {
		struct dev_entry *e = &d->tab[i];

		e->lease = e->exported ? lease_for(d, &e->key, addr_stats(e)) : -1;
		if (e->lease >= 0)
			d->name_uses[d->leases[e->lease].name_id]++;
	}
	for (unsigned i = 0; i < d->n; i++) {
		struct dev_entry *e = &d->tab[i];

		if (e->lease >= 0 && d->name_uses[d->leases[e->lease].name_id] > 1)
			e->lease = -1;
	}
}

/* One leases file's lines into the lease tables. */
static int read_leases(struct devices *d, FILE *f)
{
	char line[1024];

	while (fgets(line, sizeof(line), f)) {
		char *tok[LEASE_TOKENS] = {0}, *save = NULL, *t;
		size_t len = strlen(line);
		int n = 0;

		/* Longer than the buffer: keep its whole fields, skip the rest. */
		if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
			int c;
			char *sp = strrchr(line, ' ');

			if (sp)
				*sp = 0;
			while ((c = getc(f)) != EOF && c != '\n')
				;
		}
		for (t = strtok_r(line, " \t\r\n", &save); t && n < LEASE_TOKENS;
		     t = strtok_r(NULL, " \t\r\n", &save))
			tok[n++] = t;
		if (n && !strcmp(tok[0], "#"))
			parse_odhcpd(d, tok, n);
		else
			parse_dnsmasq(d, tok, n);
	}
	return ferror(f) ? -EIO : 0;
}

/* Every file again when one of them changed: both servers replace their
 * file (rename), so a new inode, size or time tells. A file that is not
 * there (yet: the server starts later) counts as empty; each file's error
 * is kept, the first is returned, the other files are read all the same. */
static int reload_leases(struct devices *d)
{
	struct stat st[DEVICES_LEASE_FILES];
	bool changed = false;
	int err = 0;

	for (unsigned i = 0; i < d->n_files; i++) {
		struct leases_file *lf = &d->files[i];

		lf->err = stat(lf->path, &st[i]) ? -errno : 0;
		if (lf->err)
			memset(&st[i], 0, sizeof(st[i]));
		changed |= st[i].st_ino != lf->ino || st[i].st_size != lf->size ||
			   st[i].st_mtim.tv_sec != lf->mtim.tv_sec ||
			   st[i].st_mtim.tv_nsec != lf->mtim.tv_nsec;
	}
	if (changed) {
		d->n_leases = d->n_nets = 0;
		for (unsigned i = 0; i < d->n_files; i++) {
			struct leases_file *lf = &d->files[i];
			FILE *f = st[i].st_ino ? fopen(lf->path, "r") : NULL;

			if (f) {
				lf->err = read_leases(d, f);
				fclose(f);
			} else if (st[i].st_ino) {
				lf->err = -errno;
			}
			/* Read again next time if this time went wrong. */
			lf->ino = lf->err ? 0 : st[i].st_ino;
			lf->size = st[i].st_size;
			lf->mtim = st[i].st_mtim;
		}
		leases_index(d);
		assign_names(d);
	}
	for (unsigned i = 0; i < d->n_files && !err; i++)
		err = d->files[i].err;
	return err;
}

int devices_load_leases(struct devices *d, const char *path)
{
	if (path) {
		int err;

		d->n_files = 0;
		err = devices_add_leases(d, path);
		if (err)
			return err;
	}
	return reload_leases(d);
}

int devices_add_leases(struct devices *d, const char *path)
{
	struct leases_file *lf;

	if (d->n_files == DEVICES_LEASE_FILES)
		return -E2BIG;
	if (strlen(path) >= sizeof(lf->path))
		return -ENAMETOOLONG;
	lf = &d->files[d->n_files++];
	memset(lf, 0, sizeof(*lf));
	snprintf(lf->path, sizeof(lf->path), "%s", path);
	for (unsigned i = 0; i < d->n_files; i++)
		d->files[i].ino = 0; /* all read again, together, at the next load */
	return 0;
}

int devices_leases_error(const struct devices *d, unsigned i)
{
	return i < d->n_files ? d->files[i].err : -ENOENT;
}

/* root + path into buf when that file is readable there. */
static bool readable_at(const char *root, const char *path, char buf[256])
{
	int w = snprintf(buf, 256, "%s%s", root, path);

	return w > 0 && w < 256 && !access(buf, R_OK);
}

unsigned devices_find_leases_in(const char *root, char found[][256], unsigned max)
{
	/* dnsmasq's (OpenWrt's first, then Debian's and others'), then
	 * odhcpd's: the first of the former and the latter. */
	static const char *const dnsmasq[] = {"/tmp/dhcp.leases", "/var/lib/misc/dnsmasq.leases",
					      "/var/lib/dnsmasq/dnsmasq.leases"};
	unsigned n = 0;

	for (size_t i = 0; i < sizeof(dnsmasq) / sizeof(dnsmasq[0]) && n < max; i++)
		if (readable_at(root, dnsmasq[i], found[n])) {
			n++;
			break;
		}
	if (n < max && readable_at(root, "/tmp/hosts/odhcpd", found[n]))
		n++;
	return n;
}

/* Lease l's host name, or the key's label without one (l < 0). */
static void lease_name(const struct devices *d, int l, const struct ispmon_dev_key *k, char *buf,
		       size_t len)
{
	if (l >= 0)
		snprintf(buf, len, "%s", d->leases[l].name);
	else
		devices_label(k, buf, len);
}

static void name_of(const struct devices *d, const struct dev_entry *e, char *buf, size_t len)
{
	lease_name(d, e->exported ? e->lease : lease_for(d, &e->key, addr_stats(e)), &e->key, buf, len);
}

void devices_name(const struct devices *d, const struct ispmon_dev_key *k, char *buf, size_t len)
{
	const struct dev_entry *e = find(d, k);

	if (e)
		name_of(d, e, buf, len);
	else
		lease_name(d, lease_for(d, k, NULL), k, buf, len);
}

void devices_label(const struct ispmon_dev_key *k, char *buf, size_t len)
{
	if (k->family == 0)
		snprintf(buf, len, "%02x:%02x:%02x:%02x:%02x:%02x", k->addr[0], k->addr[1],
			 k->addr[2], k->addr[3], k->addr[4], k->addr[5]);
	else if (!inet_ntop(k->family == 4 ? AF_INET : AF_INET6, k->addr, buf, (socklen_t)len))
		snprintf(buf, len, "unknown");
}

/* Median of a device's RTT since the slot before last, in seconds. */
static double dev_median(const struct dev_entry *e, const struct ispmon_dev_stats *tot, int leg)
{
	uint64_t d[ISPMON_DEV_RTT_BUCKETS], n = 0, acc = 0;

	for (unsigned i = 0; i < ISPMON_DEV_RTT_BUCKETS; i++) {
		d[i] = tot->rtt_hist[leg][i] - e->slot_hist[0][leg][i];
		n += d[i];
	}
	if (!n)
		return NAN;
	for (unsigned i = 0; i < ISPMON_DEV_RTT_BUCKETS; i++) {
		double lo, hi;

		if (!d[i] || (double)(acc + d[i]) < n / 2.0) {
			acc += d[i];
			continue;
		}
		lo = (double)ispmon_rtt_bucket_lower_us((unsigned)i << ISPMON_DEV_RTT_SHIFT);
		hi = i + 1 < ISPMON_DEV_RTT_BUCKETS
			     ? (double)ispmon_rtt_bucket_lower_us((unsigned)(i + 1) << ISPMON_DEV_RTT_SHIFT)
			     : lo * 2;
		return (lo + (hi - lo) * ((n / 2.0 - (double)acc) / (double)d[i])) / 1e6;
	}
	return NAN;
}

void devices_render(const struct devices *d, struct mbuf *b)
{
	static const char *const dirs[ISPMON_DIR_MAX] = {"download", "upload"};
	bool have_other = d->have_other;
	char label[64], v4[INET_ADDRSTRLEN], v6[INET6_ADDRSTRLEN];

	prom_header(b, "ispmon_device_bytes_total", "counter",
		    "Bytes to (download) and from (upload) each LAN device, at the LAN interface.");
	for (unsigned i = 0; i < d->n; i++) {
		const struct dev_entry *e = &d->tab[i];
		struct ispmon_dev_stats tot = e->base;

		stats_add(&tot, &e->last);
		if (!e->exported)
			continue;
		name_of(d, e, label, sizeof(label));
		for (int k = 0; k < ISPMON_DIR_MAX; k++)
			mbuf_printf(b, "ispmon_device_bytes_total{device=\"%s\",direction=\"%s\"} %llu\n",
				    label, dirs[k], (unsigned long long)tot.bytes[k]);
	}
	if (have_other)
		for (int k = 0; k < ISPMON_DIR_MAX; k++)
			mbuf_printf(b, "ispmon_device_bytes_total{device=\"other\",direction=\"%s\"} %llu\n",
				    dirs[k], (unsigned long long)d->other_bytes[k]);

	prom_header(b, "ispmon_device_packets_total", "counter", "Packets to and from each LAN device.");
	for (unsigned i = 0; i < d->n; i++) {
		const struct dev_entry *e = &d->tab[i];
		struct ispmon_dev_stats tot = e->base;

		if (!e->exported)
			continue;
		stats_add(&tot, &e->last);
		name_of(d, e, label, sizeof(label));
		for (int k = 0; k < ISPMON_DIR_MAX; k++)
			mbuf_printf(b, "ispmon_device_packets_total{device=\"%s\",direction=\"%s\"} %llu\n",
				    label, dirs[k], (unsigned long long)tot.packets[k]);
	}
	if (have_other)
		for (int k = 0; k < ISPMON_DIR_MAX; k++)
			mbuf_printf(b, "ispmon_device_packets_total{device=\"other\",direction=\"%s\"} %llu\n",
				    dirs[k], (unsigned long long)d->other_packets[k]);

	prom_header(b, "ispmon_device_throughput_bytes_per_second", "gauge",
		    "A LAN device's rate over the last collection interval.");
	for (unsigned i = 0; i < d->n; i++) {
		const struct dev_entry *e = &d->tab[i];

		if (!e->exported)
			continue;
		name_of(d, e, label, sizeof(label));
		for (int k = 0; k < ISPMON_DIR_MAX; k++)
			mbuf_printf(b, "ispmon_device_throughput_bytes_per_second{device=\"%s\",direction=\"%s\"} %.1f\n",
				    label, dirs[k], e->rate[k]);
	}

	prom_header(b, "ispmon_device_rtt_seconds_total", "counter",
		    "Sum of a device's passive RTT samples by leg (divide its rate by the samples' rate for the mean).");
	prom_header(b, "ispmon_device_rtt_samples_total", "counter", "A device's passive RTT samples by leg.");
	prom_header(b, "ispmon_device_rtt_median_seconds", "gauge",
		    "Median passive RTT of a device's traffic by leg over the last 1-2 minutes.");
	for (unsigned i = 0; i < d->n; i++) {
		const struct dev_entry *e = &d->tab[i];
		struct ispmon_dev_stats tot = e->base;

		if (!e->exported)
			continue;
		stats_add(&tot, &e->last);
		name_of(d, e, label, sizeof(label));
		for (int l = 0; l < ISPMON_LEG_MAX; l++) {
			double med = dev_median(e, &tot, l);

			mbuf_printf(b, "ispmon_device_rtt_seconds_total{device=\"%s\",leg=\"%s\"} %.9g\n",
				    label, rtt_leg_names[l], (double)tot.rtt_sum_ns[l] / 1e9);
			mbuf_printf(b, "ispmon_device_rtt_samples_total{device=\"%s\",leg=\"%s\"} %llu\n",
				    label, rtt_leg_names[l], (unsigned long long)tot.rtt_count[l]);
			if (!isnan(med))
				mbuf_printf(b, "ispmon_device_rtt_median_seconds{device=\"%s\",leg=\"%s\"} %.9g\n",
					    label, rtt_leg_names[l], med);
		}
	}

	prom_header(b, "ispmon_device_info", "gauge",
		    "A LAN device's addresses as last seen; the value is always 1.");
	for (unsigned i = 0; i < d->n; i++) {
		const struct dev_entry *e = &d->tab[i];
		struct in6_addr a6;

		if (!e->exported)
			continue;
		name_of(d, e, label, sizeof(label));
		v4[0] = v6[0] = 0;
		if (e->last.ipv4)
			inet_ntop(AF_INET, &e->last.ipv4, v4, sizeof(v4));
		memcpy(&a6, e->last.ipv6, sizeof(a6));
		if (!IN6_IS_ADDR_UNSPECIFIED(&a6))
			inet_ntop(AF_INET6, &a6, v6, sizeof(v6));
		{
			char mac[64];

			devices_label(&e->key, mac, sizeof(mac));
			mbuf_printf(b, "ispmon_device_info{device=\"%s\",mac=\"%s\",ipv4=\"%s\",ipv6=\"%s\"} 1\n",
				    label, e->key.family == 0 ? mac : "", v4, v6);
		}
	}
	prom_header(b, "ispmon_devices_seen", "gauge", "LAN devices seen since start (labelled or in other).");
	prom_u64(b, "ispmon_devices_seen", NULL, d->n);
}

unsigned devices_snapshot(const struct devices *d, struct device_snap *out, unsigned max)
{
	unsigned n = 0;

	for (unsigned i = 0; i < d->n; i++) {
		const struct dev_entry *e = &d->tab[i];
		struct ispmon_dev_stats tot = e->base;
		uint64_t sum;
		unsigned j;

		if (!e->exported)
			continue;
		stats_add(&tot, &e->last);
		sum = tot.bytes[0] + tot.bytes[1];
		/* Insertion into the sorted top max. */
		for (j = n; j > 0 && out[j - 1].bytes[0] + out[j - 1].bytes[1] < sum; j--)
			if (j < max)
				out[j] = out[j - 1];
		if (j >= max)
			continue;
		name_of(d, e, out[j].name, sizeof(out[j].name));
		memcpy(out[j].bytes, tot.bytes, sizeof(out[j].bytes));
		memcpy(out[j].rate, e->rate, sizeof(out[j].rate));
		if (n < max)
			n++;
	}
	return n;
}
