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

struct dev_entry {
	struct ispmon_dev_key key;
	/* Kernel reading this round (summed over CPUs and interfaces), the
	 * previous one, and what earlier evicted incarnations had counted. */
	struct ispmon_dev_stats now, last, base;
	bool seen;     /* read this round */
	unsigned read_pass; /* the last devices_read() walk that read it */
	bool exported; /* has its own label */
	/* rate over the last commit interval, bytes/s per direction */
	double rate[ISPMON_DIR_MAX];
	/* totals at the last commit, for what to add to "other" */
	uint64_t folded_bytes[ISPMON_DIR_MAX], folded_packets[ISPMON_DIR_MAX];
	/* RTT window: histogram totals at the last two slot boundaries. */
	uint64_t slot_hist[2][ISPMON_LEG_MAX][ISPMON_DEV_RTT_BUCKETS];
};

struct devices {
	unsigned max_exported, n_exported;
	unsigned n;
	struct dev_entry *tab; /* DEVICES_TABLE_MAX entries */
	/* Traffic of devices while outside the top-N: only ever grows. */
	uint64_t other_bytes[ISPMON_DIR_MAX], other_packets[ISPMON_DIR_MAX];
	bool have_other;
	struct ispmon_dev_stats *pcpu;
	/* one batch read of the slot cache: slots x CPUs */
	struct ispmon_dev_slot *slots;
	__u32 *slot_keys;
	int ncpu;
	unsigned pass; /* devices_read() walks so far */
	double last_slot, last_commit;
	/* host names by MAC, from the leases file */
	struct lease { uint8_t mac[6]; char name[33]; } leases[DEVICES_TABLE_MAX];
	unsigned n_leases;
	char leases_path[256];
	time_t leases_mtime;
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
		d->pcpu = calloc((size_t)d->ncpu, sizeof(*d->pcpu));
		d->slots = calloc((size_t)d->ncpu * ISPMON_DEV_CACHE_SLOTS, sizeof(*d->slots));
	}
	d->slot_keys = calloc(ISPMON_DEV_CACHE_SLOTS, sizeof(*d->slot_keys));
	if (!d->tab || !d->pcpu || !d->slots || !d->slot_keys) {
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
	free(d->pcpu);
	free(d->slots);
	free(d->slot_keys);
	free(d);
}

unsigned devices_count(const struct devices *d) { return d->n; }

static bool has_ipv6(const struct ispmon_dev_stats *s)
{
	return s->ipv6[0] || s->ipv6[1] || s->ipv6[2] || s->ipv6[3];
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

static struct dev_entry *find(struct devices *d, const struct ispmon_dev_key *k)
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
	return e;
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
				devices_ingest(d, &s->key, &s->st);
		}
	return 0;
}

int devices_read(struct devices *d, int map_fd, int cache_fd)
{
	struct ispmon_dev_key key, next;
	void *prev = NULL;
	unsigned steps = 0;

	d->pass++;
	/* An entry evicted under the walk makes the kernel start it over
	 * from the first key: keys already read come again. Take each once
	 * (and bound the walk). */
	while (!bpf_map_get_next_key(map_fd, prev, &next) && steps++ < 4 * DEVICES_TABLE_MAX) {
		struct ispmon_dev_stats sum = {0};
		struct dev_entry *e;

		key = next;
		prev = &key;
		e = find(d, &key);
		if (e && e->read_pass == d->pass)
			continue;
		if (bpf_map_lookup_elem(map_fd, &key, d->pcpu))
			continue; /* evicted meanwhile */
		for (int c = 0; c < d->ncpu; c++)
			stats_add(&sum, &d->pcpu[c]);
		devices_ingest(d, &key, &sum);
		e = find(d, &key);
		if (e)
			e->read_pass = d->pass;
	}
	return cache_fd >= 0 ? read_cache(d, cache_fd) : 0;
}

void devices_ingest(struct devices *d, const struct ispmon_dev_key *key,
		    const struct ispmon_dev_stats *sum)
{
	struct dev_entry *e = find(d, key);

	if (!e)
		e = add(d, key);
	if (!e)
		return;
	if (!e->seen)
		memset(&e->now, 0, sizeof(e->now));
	stats_add(&e->now, sum);
	e->seen = true;
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

void devices_commit(struct devices *d, double now_s)
{
	bool new_slot = d->last_slot < 0 || now_s - d->last_slot >= RTT_SLOT_S;

	for (unsigned i = 0; i < d->n; i++) {
		struct dev_entry *e = &d->tab[i];

		if (e->seen) {
			/* Fewer bytes than last time: the kernel evicted and
			 * re-created the entry; keep what the old one had. */
			if (e->now.bytes[0] + e->now.bytes[1] < e->last.bytes[0] + e->last.bytes[1])
				stats_add(&e->base, &e->last);
			e->last = e->now;
			e->seen = false;
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
}

static bool valid_name(const char *s)
{
	/* "other" is the label of everything outside the top-N. */
	if (!*s || strlen(s) > 32 || !strcmp(s, "*") || !strcmp(s, "other"))
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '.' || *s == '-' || *s == '_'))
			return false;
	return true;
}

int devices_load_leases(struct devices *d, const char *path)
{
	char line[512], mac[32], name[128];
	struct stat st;
	FILE *f;

	if (path && path != d->leases_path)
		snprintf(d->leases_path, sizeof(d->leases_path), "%s", path);
	if (!d->leases_path[0])
		return 0;
	if (stat(d->leases_path, &st))
		return -errno;
	if (st.st_mtime == d->leases_mtime && d->n_leases)
		return 0;
	f = fopen(d->leases_path, "r");
	if (!f)
		return -errno;
	d->n_leases = 0;
	while (fgets(line, sizeof(line), f) && d->n_leases < DEVICES_TABLE_MAX) {
		struct lease *l = &d->leases[d->n_leases];
		unsigned m[6];
		bool dup = false;

		if (sscanf(line, "%*s %31s %*s %127s", mac, name) != 2 ||
		    sscanf(mac, "%2x:%2x:%2x:%2x:%2x:%2x", &m[0], &m[1], &m[2], &m[3], &m[4],
			   &m[5]) != 6 ||
		    !valid_name(name))
			continue;
		for (int i = 0; i < 6; i++)
			l->mac[i] = (uint8_t)m[i];
		/* Two devices calling themselves the same: label neither. */
		for (unsigned i = 0; i < d->n_leases; i++)
			if (!strcmp(d->leases[i].name, name)) {
				d->leases[i].name[0] = 0;
				dup = true;
			}
		if (dup)
			continue;
		/* valid_name() allowed at most 32 characters. */
		memcpy(l->name, name, strnlen(name, sizeof(l->name) - 1));
		l->name[strnlen(name, sizeof(l->name) - 1)] = 0;
		d->n_leases++;
	}
	fclose(f);
	d->leases_mtime = st.st_mtime;
	return 0;
}

const char *devices_find_leases(void)
{
	static const char *const paths[] = {"/tmp/dhcp.leases", "/var/lib/misc/dnsmasq.leases",
					    "/var/lib/dnsmasq/dnsmasq.leases"};

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (!access(paths[i], R_OK))
			return paths[i];
	return NULL;
}

void devices_name(const struct devices *d, const struct ispmon_dev_key *k, char *buf, size_t len)
{
	if (k->family == 0)
		for (unsigned i = 0; i < d->n_leases; i++)
			if (d->leases[i].name[0] && !memcmp(d->leases[i].mac, k->addr, 6)) {
				snprintf(buf, len, "%s", d->leases[i].name);
				return;
			}
	devices_label(k, buf, len);
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
		devices_name(d, &e->key, label, sizeof(label));
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
		devices_name(d, &e->key, label, sizeof(label));
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
		devices_name(d, &e->key, label, sizeof(label));
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
		devices_name(d, &e->key, label, sizeof(label));
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
		devices_name(d, &e->key, label, sizeof(label));
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
		devices_name(d, &e->key, out[j].name, sizeof(out[j].name));
		memcpy(out[j].bytes, tot.bytes, sizeof(out[j].bytes));
		memcpy(out[j].rate, e->rate, sizeof(out[j].rate));
		if (n < max)
			n++;
	}
	return n;
}
