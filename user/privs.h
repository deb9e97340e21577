/* Dropping privileges once everything is set up. */
#ifndef ISPMON_PRIVS_H
#define ISPMON_PRIVS_H

#include <stddef.h>
#include <stdint.h>

/*
 * Capabilities (bit masks of CAP_* numbers) that what is left to do needs:
 * CAP_NET_ADMIN for tc (re-attach after a PPPoE redial, detach on exit),
 * and CAP_BPF only where the kernel refuses bpf() on held file descriptors
 * without it (before 5.19 with kernel.unprivileged_bpf_disabled set):
 * found by trying, in a probe thread without it, on bpf_fd (a map).
 */
uint64_t privs_needed(int bpf_fd);

/*
 * Keep only `keep` in the effective, permitted and bounding sets of every
 * thread of the process (capabilities are per thread: each one is made to
 * drop its own), clear the inheritable and ambient sets, lock the root
 * fix-ups off and set no_new_privs. Returns 0 or a negative errno.
 */
int privs_drop(uint64_t keep);

/* "cap_net_admin,cap_bpf" (or "none") into buf; returns buf. */
const char *privs_names(uint64_t caps, char *buf, size_t len);

#endif
