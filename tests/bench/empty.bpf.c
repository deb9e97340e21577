// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* The floor for the per-packet benchmark: a TC program that does nothing
 * but hand the packet on, run the same way as ispmon's. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("tc")
int tc_empty(struct __sk_buff *skb)
{
	return -1; /* TC_ACT_UNSPEC */
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
