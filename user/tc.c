#include "tc.h"

#include <bpf/libbpf.h>
#include <errno.h>
#include <string.h>

static int attach_one(int ifindex, enum bpf_tc_attach_point point, int fd,
		      __u32 *handle, __u32 *prio)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point);
	/* handle and priority 0: the kernel picks free ones, so we never
	 * replace somebody else's filter (e.g. an SQM setup). */
	LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = fd);
	int err;

	err = bpf_tc_attach(&hook, &opts);
	if (err)
		return err;
	*handle = opts.handle;
	*prio = opts.priority;
	return 0;
}

static void detach_one(int ifindex, enum bpf_tc_attach_point point, __u32 handle,
		       __u32 prio)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = handle, .priority = prio);

	/* The interface may be gone already; nothing to undo then. */
	bpf_tc_detach(&hook, &opts);
}

int tc_attach(int ifindex, int ingress_fd, int egress_fd,
	      struct tc_attachment *att, const char **stage)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex,
		    .attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS);
	int err;

	memset(att, 0, sizeof(*att));
	att->ifindex = ifindex;

	*stage = "create clsact qdisc";
	err = bpf_tc_hook_create(&hook);
	if (err && err != -EEXIST)
		return err;
	att->qdisc_created = !err;

	*stage = "attach tc ingress filter";
	err = attach_one(ifindex, BPF_TC_INGRESS, ingress_fd, &att->ingress_handle,
			 &att->ingress_prio);
	if (err)
		goto fail;
	att->ingress = true;

	*stage = "attach tc egress filter";
	err = attach_one(ifindex, BPF_TC_EGRESS, egress_fd, &att->egress_handle,
			 &att->egress_prio);
	if (err)
		goto fail;
	att->egress = true;
	return 0;
fail:
	tc_detach(att);
	return err;
}

void tc_detach(struct tc_attachment *att)
{
	if (att->ingress)
		detach_one(att->ifindex, BPF_TC_INGRESS, att->ingress_handle,
			   att->ingress_prio);
	if (att->egress)
		detach_one(att->ifindex, BPF_TC_EGRESS, att->egress_handle,
			   att->egress_prio);
	att->ingress = att->egress = false;
	if (att->qdisc_created) {
		LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = att->ifindex,
			    .attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS);

		bpf_tc_hook_destroy(&hook);
		att->qdisc_created = false;
	}
}
