#include "linestats.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int linestats_init(struct linestats *ls, int map_fd)
{
	memset(ls, 0, sizeof(*ls));
	ls->ncpu = libbpf_num_possible_cpus();
	if (ls->ncpu <= 0)
		return ls->ncpu ? ls->ncpu : -EINVAL;
	/* Per-CPU values come back 8-byte aligned; the struct is all u64. */
	ls->percpu = calloc((size_t)ls->ncpu, sizeof(*ls->percpu));
	if (!ls->percpu)
		return -ENOMEM;
	ls->map_fd = map_fd;
	return 0;
}

void linestats_free(struct linestats *ls)
{
	free(ls->percpu);
	ls->percpu = NULL;
}

void linestats_add(struct ispmon_dir_stats *a, const struct ispmon_dir_stats *b)
{
	a->packets += b->packets;
	a->bytes += b->bytes;
	for (int i = 0; i < ISPMON_L3_MAX; i++)
		a->l3_packets[i] += b->l3_packets[i];
	a->vlan_packets += b->vlan_packets;
	a->pppoe_packets += b->pppoe_packets;
	a->payload_bytes += b->payload_bytes;
}

int linestats_read(struct linestats *ls, struct ispmon_dir_stats out[ISPMON_DIR_MAX])
{
	memset(out, 0, sizeof(*out) * ISPMON_DIR_MAX);
	for (__u32 dir = 0; dir < ISPMON_DIR_MAX; dir++) {
		if (bpf_map_lookup_elem(ls->map_fd, &dir, ls->percpu))
			return -errno;
		for (int cpu = 0; cpu < ls->ncpu; cpu++)
			linestats_add(&out[dir], &ls->percpu[cpu]);
	}
	return 0;
}
