/* Attach TC programs to an interface's clsact hooks, and take them off. */
#ifndef ISPMON_TC_H
#define ISPMON_TC_H

#include <stdbool.h>
#include <linux/types.h>

struct tc_attachment {
	int ifindex;
	bool qdisc_created; /* clsact was ours: remove it on detach */
	bool ingress, egress;
	__u32 ingress_handle, ingress_prio;
	__u32 egress_handle, egress_prio;
};

/*
 * Create clsact unless present, then attach both programs as
 * direct-action filters with kernel-chosen priority and handle. On failure
 * everything done so far is undone. Returns 0 or a negative errno; *stage
 * names the step that failed.
 */
int tc_attach(int ifindex, int ingress_fd, int egress_fd,
	      struct tc_attachment *att, const char **stage);
/* Remove our filters, and clsact if we created it. Safe to call twice. */
void tc_detach(struct tc_attachment *att);

#endif
