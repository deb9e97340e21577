/* Reads the per-CPU line totals map of bpf/flow.bpf.c. */
#ifndef ISPMON_LINESTATS_H
#define ISPMON_LINESTATS_H

#include <linux/types.h>

#include "flow.h"

struct linestats {
	int map_fd;
	int ncpu;
	struct ispmon_dir_stats *percpu; /* scratch, ncpu entries */
};

int linestats_init(struct linestats *ls, int map_fd);
void linestats_free(struct linestats *ls);
/* Sum every CPU's slot for both directions into out. */
int linestats_read(struct linestats *ls, struct ispmon_dir_stats out[ISPMON_DIR_MAX]);
/* Add b into a, field by field. */
void linestats_add(struct ispmon_dir_stats *a, const struct ispmon_dir_stats *b);

#endif
