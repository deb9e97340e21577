/*
 * The kernel's view of the router's own TCP sockets (bpf/sock.bpf.c): picks
 * the best hook the kernel allows (the attach ladder), reads the per-CPU
 * stats every interval, renders the ispmon_tcp_* families, and lets the
 * speed test read the RTT and retransmits of its own connections.
 *
 * Ladder (--tcp-hooks): auto tries fentry/fexit, then BTF tracepoints
 * (tp_btf), then raw tracepoints (raw_tp, CO-RE through --btf on kernels
 * without BTF), then kprobes; "tracepoint" means tp_btf then raw_tp. A rung
 * that fails to load or attach is destroyed and the next one tried.
 *
 * Thread safety: start/free/collect/render belong to the main thread; the
 * watch functions may be called from any other one (the speed test's).
 */
#ifndef ISPMON_TCPSOCK_H
#define ISPMON_TCPSOCK_H

#include <linux/types.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "metrics.h"
#include "sock.h"

enum tcpsock_mode {
	TCPSOCK_AUTO = 0,
	TCPSOCK_FENTRY,
	TCPSOCK_TRACEPOINT,
	TCPSOCK_KPROBE,
	TCPSOCK_OFF,
	TCPSOCK_MODES,
};

static inline const char *tcpsock_mode_name(enum tcpsock_mode m)
{
	static const char *const names[TCPSOCK_MODES] = {"auto", "fentry", "tracepoint", "kprobe",
							 "off"};

	return (unsigned)m < TCPSOCK_MODES ? names[m] : "?";
}

/* "auto", "fentry", "tracepoint", "kprobe" or "off": 0, else -1. */
static inline int tcpsock_parse_mode(const char *s, enum tcpsock_mode *out)
{
	for (unsigned m = 0; s && m < TCPSOCK_MODES; m++)
		if (!strcmp(s, tcpsock_mode_name((enum tcpsock_mode)m))) {
			*out = (enum tcpsock_mode)m;
			return 0;
		}
	return -1;
}

enum tcpsock_rung {
	TCPSOCK_RUNG_FENTRY = 0, /* fentry/fexit: BPF trampolines */
	TCPSOCK_RUNG_TP_BTF,     /* BTF-typed tracepoints */
	TCPSOCK_RUNG_RAW_TP,     /* raw tracepoints */
	TCPSOCK_RUNG_KPROBE,
	TCPSOCK_RUNGS,
};

/* "fentry", "tp_btf", "raw_tp", "kprobe". */
const char *tcpsock_rung_name(enum tcpsock_rung r);
/* The rungs mode tries, in order; how many (0 for off). */
unsigned tcpsock_ladder(enum tcpsock_mode mode, enum tcpsock_rung out[TCPSOCK_RUNGS]);

struct tcpsock;
struct bpf_object;

/*
 * Load and attach the first rung of mode's ladder that works. 0 with *out
 * set; 0 with *out NULL when mode is off or auto found no working rung
 * (a warning is logged); -errno with one error line when a forced mode
 * fails (nothing stays attached).
 */
int tcpsock_start(enum tcpsock_mode mode, const char *btf_path, struct tcpsock **out);
void tcpsock_free(struct tcpsock *t); /* detaches everything */
/* The rung in use ("tp_btf", ...). */
const char *tcpsock_attach_name(const struct tcpsock *t);
/* The loaded object (its maps, for their memory). */
struct bpf_object *tcpsock_object(const struct tcpsock *t);

/* Read the kernel's stats; now_s is CLOCK_MONOTONIC seconds. */
int tcpsock_collect(struct tcpsock *t, double now_s);
/* The ispmon_tcp_* families, HELP/TYPE included. */
void tcpsock_render(const struct tcpsock *t, struct mbuf *b);
/* Samples (no header) for the ispmon_bpf_attach_info family. */
void tcpsock_render_attach(const struct tcpsock *t, struct mbuf *b);

/*
 * Watching connections (the speed test's, one slot per direction): add
 * each connection as its socket sees it; begin marks the start of the
 * period, end returns the median of the RTT samples its connections gave
 * in between (the receiver's estimate when receiving, else srtt; the other
 * when the first has none; NaN when neither) and the segments they
 * retransmitted meanwhile (false: nothing measured, begin failed or was
 * not called), and forgets the slot's connections.
 */
#define TCPSOCK_WATCH_SLOTS ISPMON_TCP_WATCH_GROUPS
int tcpsock_watch_add(struct tcpsock *t, unsigned slot, const char *local_ip, int local_port,
		      const char *remote_ip, int remote_port);
void tcpsock_watch_begin(struct tcpsock *t, unsigned slot);
bool tcpsock_watch_end(struct tcpsock *t, unsigned slot, bool receiving, double *rtt_s,
		       uint64_t *retransmits);

/* ---- pure helpers, exported for the unit tests ---- */

/* The watch-map key for a connection given as address strings (IPv4,
 * IPv6, IPv4-mapped IPv6 folded to IPv4; a %scope suffix is ignored).
 * 0 or -EINVAL. */
int tcpsock_tuple(const char *local_ip, int local_port, const char *remote_ip, int remote_port,
		  struct ispmon_tcp_tuple *t);

/* What the exporter renders. */
struct tcpsock_view {
	struct ispmon_tcp_stats total[ISPMON_TCP_SCOPES];  /* since start */
	struct ispmon_tcp_stats window[ISPMON_TCP_SCOPES]; /* the last window_s */
	double window_s;
	uint64_t sockets; /* tracked now */
};
void tcpsock_render_view(const struct tcpsock_view *v, struct mbuf *b);
/* a -= b, field by field (counters since b). */
void tcpsock_stats_sub(struct ispmon_tcp_stats *a, const struct ispmon_tcp_stats *b);

#endif
