#include "ping.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/errqueue.h>
#include <linux/types.h>
#include <math.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "flow.h"
#include "log.h"

/* <linux/icmp.h> clashes with <net/if.h>; its raw-socket type filter. */
#define RAW_ICMP_FILTER 1
struct raw_icmp_filter {
	/* cppcheck-suppress unusedStructMember ; read by the kernel */
	uint32_t blocked; /* bit n set: drop ICMP type n */
};

/* seq = target index << 13 | per-target counter: a reply names its target
 * even when two targets share an address. */
#define SEQ_SHIFT 13
#define SEQ_MASK 0x1fffu
#define WINDOW_S 60       /* the median covers the last minute */
#define WINDOW_MAX 1024   /* > 60 s / PING_MIN_INTERVAL_MS */
#define RECV_BATCH 64     /* datagrams read per wake-up and socket */
#define MAX_SLEEP_S 1.0   /* wake at least this often to collect lookups */
#define RESOLVE_RETRY_MIN_S 5.0   /* failed lookups: 5 s, 10 s, ... 5 min */
#define RESOLVE_RETRY_MAX_S 300.0
#define RERESOLVE_MIN_S 60.0      /* a name that resolves: at most once a minute */
#define RERESOLVE_AFTER 3 /* failed probes in a row before a name is looked up again */

_Static_assert(PING_MAX_TARGETS <= (1u << (16 - SEQ_SHIFT)), "target index must fit in seq");
_Static_assert((SEQ_MASK + 1) % PING_SLOTS == 0, "slots must divide the counter space");
_Static_assert(PING_SLOTS > PING_MAX_TIMEOUT_MS / PING_MIN_INTERVAL_MS + 1, "slots too few");
_Static_assert(WINDOW_MAX > WINDOW_S * 1000 / PING_MIN_INTERVAL_MS, "window too small");

enum reason { R_RESOLVE, R_TIMEOUT, R_UNREACHABLE, R_ERROR, R_MAX };
static const char *const reason_names[R_MAX] = {"resolve", "timeout", "unreachable", "error"};

struct slot {
	double tx_mono;
	struct timespec tx_real; /* to compare with the kernel's receive stamp */
	uint16_t seq;
	bool busy;
};

/* One background lookup. Shared by the probe thread and the lookup thread;
 * whichever lets go last frees it, so ping_stop never waits for a resolver. */
struct job {
	atomic_int refs;
	atomic_bool done;
	char host[PING_HOST_MAX + 1];
	bool have4, have6; /* families with a socket: preferred */
	int gai_err, sys_err;
	struct sockaddr_storage addr;
	socklen_t alen;
};

struct target {
	char host[PING_HOST_MAX + 1];
	bool numeric;
	bool have_addr;
	struct sockaddr_storage addr;
	socklen_t alen;
	char addr_text[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];

	double next_send;
	uint16_t head, tail; /* counters of probes that may be in flight: [tail, head) */
	struct slot slots[PING_SLOTS];

	struct job *job;
	double job_started, next_resolve, resolve_backoff;
	bool resolve_failing; /* last lookup failed (logged once per episode) */
	unsigned fail_streak;

	uint64_t sent, received, failures[R_MAX];
	uint64_t hist[PING_EDGES + 1];
	double rtt_sum, last_rtt, jitter; /* jitter < 0: not yet */
	struct {
		double t, rtt;
	} win[WINDOW_MAX];
	unsigned win_start, win_n;
	int success; /* of the newest probe with a result; -1 before the first */
	double last_reply;  /* when the newest reply arrived (monotonic), 0: none */
	double answering_since; /* the first reply after failures or none */
	double result_tx; /* when that probe was sent */
	int logged;  /* state last logged: -1 none, 0 failing, 1 answering */
};

struct psock {
	int fd;
	bool raw;
	uint16_t id; /* raw sockets: ours to pick and to filter on */
};

struct ping {
	pthread_mutex_t lock; /* guards the targets: the thread writes, render reads */
	pthread_t thread;
	bool started;
	int stop_fd;
	struct psock s4, s6;
	uint64_t cookie;
	double interval_s, timeout_s;
	unsigned n;
	struct target *t;
	double scratch[WINDOW_MAX]; /* for the median, under lock */
};

/* --- pure helpers ---------------------------------------------------------- */

bool ping_valid_host(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	return n && n <= PING_HOST_MAX &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.:%_-") == n &&
	       s[0] != '-';
}

uint16_t ping_checksum(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint32_t sum = 0;

	for (; len > 1; p += 2, len -= 2)
		sum += (uint32_t)p[0] << 8 | p[1];
	if (len)
		sum += (uint32_t)p[0] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

size_t ping_echo_build(uint8_t *buf, size_t cap, bool v6, uint16_t id, uint16_t seq,
		       uint64_t cookie)
{
	if (cap < PING_ECHO_LEN)
		return 0;
	memset(buf, 0, PING_ECHO_LEN);
	buf[0] = v6 ? ICMP6_ECHO_REQUEST : ICMP_ECHO;
	put16(buf + 4, id);
	put16(buf + 6, seq);
	memcpy(buf + 8, &cookie, sizeof(cookie));
	for (size_t i = 16; i < PING_ECHO_LEN; i++)
		buf[i] = (uint8_t)i;
	if (!v6)
		put16(buf + 2, ping_checksum(buf, PING_ECHO_LEN));
	return PING_ECHO_LEN;
}

int ping_echo_parse(const uint8_t *buf, size_t len, unsigned flags, uint64_t cookie,
		    uint16_t *id, uint16_t *seq)
{
	bool v6 = flags & PING_PARSE_V6, req = flags & PING_PARSE_REQUEST;
	uint8_t want;

	if (flags & PING_PARSE_IPHDR) {
		size_t ihl;

		if (len < 20 || (buf[0] >> 4) != 4)
			return -EINVAL;
		ihl = (size_t)(buf[0] & 0xf) * 4;
		if (ihl < 20 || ihl > len)
			return -EINVAL;
		buf += ihl;
		len -= ihl;
	}
	if (v6)
		want = req ? ICMP6_ECHO_REQUEST : ICMP6_ECHO_REPLY;
	else
		want = req ? ICMP_ECHO : ICMP_ECHOREPLY;
	if (len < 8 || buf[0] != want || buf[1] != 0)
		return -EINVAL;
	/* A quoted request may be cut short; a reply must be whole. */
	if (len >= 16 && memcmp(buf + 8, &cookie, sizeof(cookie)))
		return -EINVAL;
	if (len < 16 && !req)
		return -EINVAL;
	/* ICMPv6 checksums cover a pseudo-header: the kernel checks those. */
	if (!v6 && !req && ping_checksum(buf, len) != 0)
		return -EINVAL;
	*id = get16(buf + 4);
	*seq = get16(buf + 6);
	return 0;
}

double ping_jitter_step(double jitter, double diff)
{
	if (jitter < 0)
		return fabs(diff);
	return jitter + (fabs(diff) - jitter) / 16.0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double ping_median(double *v, size_t n)
{
	if (!n)
		return NAN;
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double ping_bucket_le(unsigned i)
{
	if (i >= PING_EDGES)
		return INFINITY;
	return (double)ispmon_rtt_bucket_lower_us(ISPMON_RTT_SUB + 4 * i) / 1e6;
}

unsigned ping_bucket(double rtt_s)
{
	unsigned lo = 0, hi = PING_EDGES;

	/* First edge strictly above: the passive histogram's "< edge". */
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;

		if (rtt_s < ping_bucket_le(mid))
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* --- time ------------------------------------------------------------------ */

static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double ts_diff(const struct timespec *a, const struct timespec *b)
{
	return (double)(a->tv_sec - b->tv_sec) + (double)(a->tv_nsec - b->tv_nsec) / 1e9;
}

/* --- results --------------------------------------------------------------- */

static void addr_to_text(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char ifn[IF_NAMESIZE];

	buf[0] = 0;
	if (ss->ss_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, buf, (socklen_t)len);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)ss;
		size_t n;

		inet_ntop(AF_INET6, &a6->sin6_addr, buf, (socklen_t)len);
		n = strlen(buf);
		if (a6->sin6_scope_id && if_indextoname(a6->sin6_scope_id, ifn))
			snprintf(buf + n, len - n, "%%%s", ifn);
	}
}

/* A probe sent at tx failed. Results can come out of order (an old probe
 * times out after a newer one was answered): only the newest sets the state. */
static void failed(struct target *t, double tx, enum reason r, const char *detail)
{
	char q[160];

	t->failures[r]++;
	if (tx < t->result_tx)
		return;
	t->result_tx = tx;
	t->success = 0;
	t->fail_streak++;
	if (t->logged == 0)
		return;
	t->logged = 0;
	/* Once per episode: a warning, since the probe itself is the report. */
	log_warn("ping target failing", "target=%s address=%s reason=%s detail=%s", t->host,
		 t->addr_text[0] ? t->addr_text : "none", reason_names[r],
		 log_quote(q, sizeof(q), detail ? detail : ""));
}

static void answered(struct target *t, double tx, double now, double rtt)
{
	unsigned w;

	t->received++;
	t->hist[ping_bucket(rtt)]++;
	t->rtt_sum += rtt;
	if (t->received > 1)
		t->jitter = ping_jitter_step(t->jitter, rtt - t->last_rtt);
	t->last_rtt = rtt;
	t->last_reply = now;
	if (t->win_n == WINDOW_MAX) {
		t->win_start = (t->win_start + 1) % WINDOW_MAX;
		t->win_n--;
	}
	w = (t->win_start + t->win_n++) % WINDOW_MAX;
	t->win[w].t = now;
	t->win[w].rtt = rtt;
	if (tx < t->result_tx)
		return;
	t->result_tx = tx;
	if (t->success != 1)
		t->answering_since = now;
	t->success = 1;
	t->fail_streak = 0;
	if (t->logged != 1) {
		t->logged = 1;
		log_info("ping target answering", "target=%s address=%s rtt_ms=%.3f", t->host,
			 t->addr_text, rtt * 1e3);
	}
}

/* --- lookups --------------------------------------------------------------- */

static void job_put(struct job *j)
{
	if (j && atomic_fetch_sub(&j->refs, 1) == 1)
		free(j);
}

static int pick_addr(const struct addrinfo *res, bool have4, bool have6,
		     struct sockaddr_storage *ss, socklen_t *len)
{
	const struct addrinfo *first = NULL;

	/* The resolver's order (RFC 6724), but a family we can ping first. */
	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		bool usable = (ai->ai_family == AF_INET && have4) ||
			      (ai->ai_family == AF_INET6 && have6);

		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		if (ai->ai_addrlen > sizeof(*ss))
			continue;
		if (!first || usable) {
			first = ai;
			if (usable)
				break;
		}
	}
	if (!first)
		return -EAFNOSUPPORT;
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, first->ai_addr, first->ai_addrlen);
	*len = first->ai_addrlen;
	return 0;
}

static void *resolve_main(void *arg)
{
	struct job *j = arg;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM};
	struct addrinfo *res = NULL;

	j->gai_err = getaddrinfo(j->host, NULL, &hints, &res);
	j->sys_err = errno;
	if (!j->gai_err) {
		if (pick_addr(res, j->have4, j->have6, &j->addr, &j->alen))
			j->gai_err = EAI_ADDRFAMILY;
		freeaddrinfo(res);
	}
	atomic_store(&j->done, true);
	job_put(j);
	return NULL;
}

static void resolve_start(struct ping *p, struct target *t, double now)
{
	struct job *j = calloc(1, sizeof(*j));
	pthread_attr_t attr;
	pthread_t th;
	int err = ENOMEM;

	/* Until this one is done; resolve_collect sets the real time. */
	t->next_resolve = INFINITY;
	if (!j)
		goto fail;
	atomic_init(&j->refs, 2);
	atomic_init(&j->done, false);
	snprintf(j->host, sizeof(j->host), "%s", t->host);
	j->have4 = p->s4.fd >= 0;
	j->have6 = p->s6.fd >= 0;
	/* Detached: getaddrinfo cannot be cancelled, and stopping must not
	 * wait for a resolver that does not answer. */
	err = pthread_attr_init(&attr);
	if (err)
		goto fail;
	err = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (!err)
		err = pthread_create(&th, &attr, resolve_main, j);
	pthread_attr_destroy(&attr);
	if (err)
		goto fail;
	t->job = j;
	t->job_started = now;
	return;
fail:
	free(j);
	t->next_resolve = now + RESOLVE_RETRY_MIN_S;
	log_warn("cannot start a name lookup", "target=%s err=\"%s\"", t->host, strerror(err));
}

static void resolve_collect(struct target *t, double now)
{
	struct job *j = t->job;
	char text[sizeof(t->addr_text)];

	if (!j || !atomic_load(&j->done))
		return;
	t->job = NULL;
	if (j->gai_err) {
		t->next_resolve = now + t->resolve_backoff;
		t->resolve_backoff = fmin(t->resolve_backoff * 2, RESOLVE_RETRY_MAX_S);
		if (!t->resolve_failing) {
			char q[160];

			log_warn("cannot resolve ping target", "target=%s err=%s retry_s=%.0f",
				 t->host,
				 log_quote(q, sizeof(q), j->gai_err == EAI_SYSTEM ? strerror(j->sys_err)
										  : gai_strerror(j->gai_err)),
				 t->next_resolve - now);
		}
		t->resolve_failing = true;
		job_put(j);
		return;
	}
	t->resolve_failing = false;
	t->resolve_backoff = RESOLVE_RETRY_MIN_S;
	t->next_resolve = now + RERESOLVE_MIN_S;
	addr_to_text(&j->addr, text, sizeof(text));
	if (!t->have_addr || strcmp(text, t->addr_text))
		log_info("ping target resolved", "target=%s address=%s", t->host, text);
	/* Probes in flight to an old address still match by seq: harmless. */
	t->addr = j->addr;
	t->alen = j->alen;
	snprintf(t->addr_text, sizeof(t->addr_text), "%s", text);
	t->have_addr = true;
	job_put(j);
}

/* --- probes ---------------------------------------------------------------- */

static struct psock *sock_for(struct ping *p, const struct target *t)
{
	return t->addr.ss_family == AF_INET6 ? &p->s6 : &p->s4;
}

/* Errors that a send may return for an earlier ICMP error (sk_err) too. */
static bool icmpish(int e)
{
	return e == EHOSTUNREACH || e == ENETUNREACH || e == ECONNREFUSED || e == EHOSTDOWN ||
	       e == ENONET || e == EPROTO || e == EACCES;
}

static void send_probe(struct ping *p, unsigned idx, double now)
{
	struct target *t = &p->t[idx];
	struct psock *s;
	struct slot *sl;
	uint8_t pkt[PING_ECHO_LEN];
	uint16_t seq;
	ssize_t n = -1;
	int e = 0;

	if (!t->have_addr) {
		/* The first lookup gets one timeout's grace before it counts. */
		if (t->job && !t->resolve_failing && now - t->job_started < p->timeout_s)
			return;
		failed(t, now, R_RESOLVE, t->job ? "lookup in progress" : "no address");
		return;
	}
	t->sent++;
	s = sock_for(p, t);
	if (s->fd < 0) {
		failed(t, now, R_ERROR, t->addr.ss_family == AF_INET6 ? "no ICMPv6 socket"
								 : "no ICMP socket");
		return;
	}
	/* Ring full only if the limits were bypassed: the oldest is lost. */
	if ((uint16_t)(t->head - t->tail) >= PING_SLOTS) {
		struct slot *old = &t->slots[t->tail % PING_SLOTS];

		if (old->busy)
			failed(t, old->tx_mono, R_TIMEOUT, "no answer");
		old->busy = false;
		t->tail++;
	}
	seq = (uint16_t)(idx << SEQ_SHIFT | (t->head & SEQ_MASK));
	ping_echo_build(pkt, sizeof(pkt), t->addr.ss_family == AF_INET6, s->id, seq, p->cookie);
	sl = &t->slots[t->head % PING_SLOTS];
	/* A pending ICMP error (sk_err) of another probe fails the next send
	 * once: retry once, the error itself comes from the error queue. */
	for (int attempt = 0; attempt < 2; attempt++) {
		sl->tx_mono = mono_now();
		clock_gettime(CLOCK_REALTIME, &sl->tx_real);
		n = sendto(s->fd, pkt, sizeof(pkt), MSG_DONTWAIT, (struct sockaddr *)&t->addr,
			   t->alen);
		if (n >= 0)
			break;
		e = errno;
		if (!icmpish(e))
			break;
	}
	if (n < 0) {
		bool unreach = e == EHOSTUNREACH || e == ENETUNREACH || e == ENETDOWN ||
			       e == EHOSTDOWN || e == EADDRNOTAVAIL || e == ENONET;

		failed(t, sl->tx_mono, unreach ? R_UNREACHABLE : R_ERROR, strerror(e));
		return;
	}
	sl->seq = seq;
	sl->busy = true;
	t->head++;
}

static struct slot *match(struct ping *p, uint16_t seq, struct target **tp)
{
	unsigned idx = seq >> SEQ_SHIFT;
	struct slot *sl;

	if (idx >= p->n)
		return NULL;
	sl = &p->t[idx].slots[(seq & SEQ_MASK) % PING_SLOTS];
	if (!sl->busy || sl->seq != seq)
		return NULL;
	*tp = &p->t[idx];
	return sl;
}

static void read_replies(struct ping *p, struct psock *s, bool v6)
{
	uint8_t buf[1500];
	char cbuf[CMSG_SPACE(sizeof(struct timespec)) + 64];
	struct sockaddr_storage from;

	for (int i = 0; i < RECV_BATCH; i++) {
		struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
		struct msghdr msg = {.msg_name = &from, .msg_namelen = sizeof(from),
				     .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
		struct timespec rx = {0};
		bool have_rx = false;
		struct target *t;
		struct slot *sl;
		uint16_t id, seq;
		double now, rtt;
		ssize_t n;

		n = recvmsg(s->fd, &msg, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			continue; /* a pending ICMP error (sk_err): read on */
		}
		now = mono_now();
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS &&
			    c->cmsg_len >= CMSG_LEN(sizeof(rx))) {
				memcpy(&rx, CMSG_DATA(c), sizeof(rx));
				have_rx = true;
			}
		if (ping_echo_parse(buf, (size_t)n,
				    (v6 ? PING_PARSE_V6 : 0) | (s->raw && !v6 ? PING_PARSE_IPHDR : 0),
				    p->cookie, &id, &seq))
			continue;
		if (s->raw && id != s->id)
			continue; /* another program's ping */
		sl = match(p, seq, &t);
		if (!sl)
			continue; /* late (already counted lost) or duplicate */
		sl->busy = false;
		/* The kernel's receive stamp leaves out our own wake-up delay;
		 * the monotonic clock guards against wall-clock steps. */
		rtt = now - sl->tx_mono;
		if (have_rx) {
			double k = ts_diff(&rx, &sl->tx_real);

			if (k >= 0 && k <= rtt + 1e-3)
				rtt = k;
		}
		if (rtt > p->timeout_s)
			failed(t, sl->tx_mono, R_TIMEOUT, "answer after the timeout");
		else
			answered(t, sl->tx_mono, now, rtt);
	}
}

/* ICMP errors about our probes (IP_RECVERR): unreachable, TTL exceeded. */
static void read_errors(struct ping *p, struct psock *s, bool v6)
{
	uint8_t buf[576];
	char cbuf[512];
	struct sockaddr_storage from;

	for (int i = 0; i < RECV_BATCH; i++) {
		struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
		struct msghdr msg = {.msg_name = &from, .msg_namelen = sizeof(from),
				     .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
		const struct sock_extended_err *ee = NULL;
		struct sock_extended_err eev;
		struct target *t;
		struct slot *sl;
		uint16_t id, seq;
		enum reason r;
		char detail[64];
		ssize_t n;

		n = recvmsg(s->fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			continue;
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
			if (((c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR) ||
			     (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR)) &&
			    c->cmsg_len >= CMSG_LEN(sizeof(eev))) {
				memcpy(&eev, CMSG_DATA(c), sizeof(eev));
				ee = &eev;
			}
		if (!ee)
			continue;
		if (ping_echo_parse(buf, (size_t)n, (v6 ? PING_PARSE_V6 : 0) | PING_PARSE_REQUEST,
				    p->cookie, &id, &seq))
			continue;
		if (s->raw && id != s->id)
			continue;
		if (ee->ee_origin == SO_EE_ORIGIN_ICMP) {
			/* destination unreachable, time exceeded, parameter problem */
			if (ee->ee_type != 3 && ee->ee_type != 11 && ee->ee_type != 12)
				continue;
			r = R_UNREACHABLE;
		} else if (ee->ee_origin == SO_EE_ORIGIN_ICMP6) {
			/* destination unreachable, time exceeded, parameter problem */
			if (ee->ee_type != 1 && ee->ee_type != 3 && ee->ee_type != 4)
				continue;
			r = R_UNREACHABLE;
		} else if (ee->ee_origin == SO_EE_ORIGIN_LOCAL) {
			r = R_ERROR;
		} else {
			continue;
		}
		sl = match(p, seq, &t);
		if (!sl)
			continue;
		sl->busy = false;
		snprintf(detail, sizeof(detail), "icmp type %u code %u: %s", ee->ee_type, ee->ee_code,
			 strerror((int)ee->ee_errno));
		failed(t, sl->tx_mono, r, detail);
	}
}

/* Probes past their timeout, oldest first; returns the next deadline. */
static double expire(struct ping *p, struct target *t, double now)
{
	for (unsigned i = 0; i < PING_SLOTS && t->tail != t->head; i++) {
		struct slot *sl = &t->slots[t->tail % PING_SLOTS];

		if (sl->busy) {
			if (now < sl->tx_mono + p->timeout_s)
				return sl->tx_mono + p->timeout_s;
			sl->busy = false;
			failed(t, sl->tx_mono, R_TIMEOUT, "no answer");
		}
		t->tail++;
	}
	return INFINITY;
}

/* One round: answers first (so one that arrived in time is never declared
 * lost), then timeouts, lookups and sends. Returns when to wake next. */
static double step(struct ping *p)
{
	double now, wake;

	if (p->s4.fd >= 0) {
		read_errors(p, &p->s4, false);
		read_replies(p, &p->s4, false);
	}
	if (p->s6.fd >= 0) {
		read_errors(p, &p->s6, true);
		read_replies(p, &p->s6, true);
	}
	now = mono_now();
	wake = now + MAX_SLEEP_S;
	for (unsigned i = 0; i < p->n; i++) {
		struct target *t = &p->t[i];

		wake = fmin(wake, expire(p, t, now));
		resolve_collect(t, now);
		/* Names: look up when there is no address yet, and again after
		 * a run of failures (the address may have moved). */
		if (!t->numeric && !t->job && now >= t->next_resolve &&
		    (!t->have_addr || t->fail_streak >= RERESOLVE_AFTER))
			resolve_start(p, t, now);
		if (now >= t->next_send) {
			send_probe(p, i, now);
			t->next_send += p->interval_s;
			/* After a stall (suspend), skip the missed rounds. */
			if (t->next_send <= now)
				t->next_send = now + p->interval_s;
		}
		wake = fmin(wake, t->next_send);
		if (t->tail != t->head)
			wake = fmin(wake, expire(p, t, now));
	}
	return wake;
}

static void *ping_main(void *arg)
{
	struct ping *p = arg;

	for (;;) {
		struct pollfd pfd[3] = {{.fd = p->stop_fd, .events = POLLIN},
					{.fd = p->s4.fd, .events = POLLIN},
					{.fd = p->s6.fd, .events = POLLIN}};
		double wake, dt;
		int ms;

		pthread_mutex_lock(&p->lock);
		wake = step(p);
		pthread_mutex_unlock(&p->lock);
		dt = wake - mono_now();
		ms = dt <= 0 ? 0 : (int)ceil(dt * 1000);
		/* Negative fds are skipped by poll. */
		if (poll(pfd, 3, ms) < 0 && errno != EINTR) {
			log_error("ping: poll failed", "err=\"%s\"", strerror(errno));
			break;
		}
		if (pfd[0].revents)
			break;
	}
	return NULL;
}

/* --- start, stop ----------------------------------------------------------- */

static int open_socket(int family, struct psock *s, const char **mode)
{
	int proto = family == AF_INET ? IPPROTO_ICMP : IPPROTO_ICMPV6, one = 1;

	s->fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
	s->raw = false;
	if (s->fd < 0) {
		/* EACCES: net.ipv4.ping_group_range leaves our group out. */
		int derr = errno;

		s->fd = socket(family, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
		if (s->fd < 0) {
			*mode = "none";
			return derr == EAFNOSUPPORT ? -EAFNOSUPPORT : -errno;
		}
		s->raw = true;
		/* A raw socket sees every ICMP message to this host: only
		 * echo replies here; errors come through IP_RECVERR. */
		if (family == AF_INET) {
			struct raw_icmp_filter f = {.blocked = ~(1u << ICMP_ECHOREPLY)};

			setsockopt(s->fd, SOL_RAW, RAW_ICMP_FILTER, &f, sizeof(f));
		} else {
			struct icmp6_filter f;

			ICMP6_FILTER_SETBLOCKALL(&f);
			ICMP6_FILTER_SETPASS(ICMP6_ECHO_REPLY, &f);
			setsockopt(s->fd, IPPROTO_ICMPV6, ICMP6_FILTER, &f, sizeof(f));
		}
	}
	*mode = s->raw ? "raw" : "dgram";
	if (setsockopt(s->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) ||
	    (family == AF_INET ? setsockopt(s->fd, SOL_IP, IP_RECVERR, &one, sizeof(one))
			       : setsockopt(s->fd, SOL_IPV6, IPV6_RECVERR, &one, sizeof(one)))) {
		int err = -errno;

		close(s->fd);
		s->fd = -1;
		*mode = "none";
		return err;
	}
	return 0;
}

static const char *sock_mode(const struct psock *s)
{
	return s->fd < 0 ? "none" : s->raw ? "raw" : "dgram";
}

void ping_stop(struct ping *p)
{
	if (!p)
		return;
	if (p->started) {
		uint64_t one = 1;

		if (write(p->stop_fd, &one, sizeof(one)) != sizeof(one))
			log_warn("ping: cannot signal the probe thread", NULL);
		pthread_join(p->thread, NULL);
	}
	for (unsigned i = 0; p->t && i < p->n; i++)
		job_put(p->t[i].job);
	if (p->s4.fd >= 0)
		close(p->s4.fd);
	if (p->s6.fd >= 0)
		close(p->s6.fd);
	if (p->stop_fd >= 0)
		close(p->stop_fd);
	pthread_mutex_destroy(&p->lock);
	free(p->t);
	free(p);
}

static void init_target(struct ping *p, struct target *t, const char *host, unsigned i,
			double now)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM,
				 .ai_flags = AI_NUMERICHOST};
	struct addrinfo *res = NULL;

	snprintf(t->host, sizeof(t->host), "%s", host);
	t->success = -1;
	t->logged = -1;
	t->jitter = -1;
	t->resolve_backoff = RESOLVE_RETRY_MIN_S;
	/* Spread the targets over the interval rather than in one burst. */
	t->next_send = now + p->interval_s * i / p->n;
	/* Addresses need no lookup, and never another one. */
	if (!getaddrinfo(host, NULL, &hints, &res)) {
		t->numeric = true;
		if (!pick_addr(res, true, true, &t->addr, &t->alen)) {
			t->have_addr = true;
			addr_to_text(&t->addr, t->addr_text, sizeof(t->addr_text));
		}
		freeaddrinfo(res);
	}
}

int ping_start(const struct ping_opts *o, struct ping **out)
{
	const char *m4, *m6;
	struct ping *p;
	int err, e4, e6;
	double now = mono_now();

	if (!o->n_targets || o->n_targets > PING_MAX_TARGETS ||
	    o->interval_ms < PING_MIN_INTERVAL_MS || o->interval_ms > PING_MAX_INTERVAL_MS ||
	    o->timeout_ms < PING_MIN_TIMEOUT_MS || o->timeout_ms > PING_MAX_TIMEOUT_MS)
		return -EINVAL;
	for (unsigned i = 0; i < o->n_targets; i++)
		if (!ping_valid_host(o->targets[i]))
			return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->s4.fd = p->s6.fd = p->stop_fd = -1;
	err = -pthread_mutex_init(&p->lock, NULL);
	if (err) {
		free(p);
		return err;
	}
	p->n = o->n_targets;
	p->interval_s = (double)o->interval_ms / 1000.0;
	p->timeout_s = (double)o->timeout_ms / 1000.0;
	p->t = calloc(p->n, sizeof(*p->t));
	p->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!p->t || p->stop_fd < 0) {
		err = p->t ? -errno : -ENOMEM;
		goto fail;
	}
	if (getrandom(&p->cookie, sizeof(p->cookie), 0) != sizeof(p->cookie) ||
	    getrandom(&p->s4.id, sizeof(p->s4.id), 0) != sizeof(p->s4.id)) {
		err = -EIO;
		goto fail;
	}
	p->s6.id = p->s4.id;

	e4 = open_socket(AF_INET, &p->s4, &m4);
	e6 = open_socket(AF_INET6, &p->s6, &m6);
	if (e4)
		log_warn("no ICMP socket: IPv4 targets will fail", "err=\"%s\"", strerror(-e4));
	if (e6 && e6 != -EAFNOSUPPORT)
		log_warn("no ICMPv6 socket: IPv6 targets will fail", "err=\"%s\"", strerror(-e6));
	for (unsigned i = 0; i < p->n; i++)
		init_target(p, &p->t[i], o->targets[i], i, now);
	log_info("ping", "targets=%u interval_ms=%llu timeout_ms=%llu ipv4=%s ipv6=%s", p->n,
		 (unsigned long long)o->interval_ms, (unsigned long long)o->timeout_ms, m4, m6);

	err = -pthread_create(&p->thread, NULL, ping_main, p);
	if (err)
		goto fail;
	p->started = true;
	*out = p;
	return 0;
fail:
	ping_stop(p);
	return err;
}

/* --- rendering ------------------------------------------------------------- */

/* Median RTT of a target's replies in the last WINDOW_S; NaN without any.
 * Under p->lock (uses the scratch array). */
static double window_median(struct ping *p, const struct target *t, double now)
{
	size_t n = 0;

	for (unsigned k = 0; k < t->win_n; k++) {
		unsigned w = (t->win_start + k) % WINDOW_MAX;

		if (now - t->win[w].t <= WINDOW_S)
			p->scratch[n++] = t->win[w].rtt;
	}
	return ping_median(p->scratch, n);
}

/* Hosts are validated ([A-Za-z0-9.:%_-]): nothing in a label to escape. */
void ping_render(struct ping *p, struct mbuf *b)
{
	double now = mono_now();
	char lb[PING_HOST_MAX + 64];

	pthread_mutex_lock(&p->lock);
	prom_header(b, "ispmon_ping_socket_info", "gauge",
		    "ICMP socket per family: dgram (ping socket, net.ipv4.ping_group_range), "
		    "raw, or none; the value is always 1.");
	mbuf_printf(b, "ispmon_ping_socket_info{family=\"ipv4\",mode=\"%s\"} 1\n", sock_mode(&p->s4));
	mbuf_printf(b, "ispmon_ping_socket_info{family=\"ipv6\",mode=\"%s\"} 1\n", sock_mode(&p->s6));
	prom_header(b, "ispmon_ping_interval_seconds", "gauge", "Time between pings to a target.");
	prom_f64(b, "ispmon_ping_interval_seconds", NULL, p->interval_s);
	prom_header(b, "ispmon_ping_timeout_seconds", "gauge",
		    "How long a ping waits for its answer before it counts as lost.");
	prom_f64(b, "ispmon_ping_timeout_seconds", NULL, p->timeout_s);

	prom_header(b, "ispmon_ping_target_info", "gauge",
		    "Ping targets and the address they resolved to (empty: none yet); the value is always 1.");
	for (unsigned i = 0; i < p->n; i++)
		mbuf_printf(b, "ispmon_ping_target_info{target=\"%s\",address=\"%s\"} 1\n",
			    p->t[i].host, p->t[i].addr_text);

	prom_header(b, "ispmon_ping_sent_total", "counter",
		    "Echo requests sent (every probe of a target with an address; up to "
		    "timeout/interval of them may still be in flight).");
	for (unsigned i = 0; i < p->n; i++) {
		snprintf(lb, sizeof(lb), "target=\"%s\"", p->t[i].host);
		prom_u64(b, "ispmon_ping_sent_total", lb, p->t[i].sent);
	}
	prom_header(b, "ispmon_ping_received_total", "counter",
		    "Echo replies received within the timeout.");
	for (unsigned i = 0; i < p->n; i++) {
		snprintf(lb, sizeof(lb), "target=\"%s\"", p->t[i].host);
		prom_u64(b, "ispmon_ping_received_total", lb, p->t[i].received);
	}

	prom_header(b, "ispmon_ping_rtt_seconds", "histogram",
		    "Ping round-trip time (the passive RTT histogram's buckets).");
	for (unsigned i = 0; i < p->n; i++) {
		const struct target *t = &p->t[i];
		uint64_t acc = 0;

		for (unsigned k = 0; k < PING_EDGES; k++) {
			acc += t->hist[k];
			mbuf_printf(b, "ispmon_ping_rtt_seconds_bucket{target=\"%s\",le=\"%.9g\"} %llu\n",
				    t->host, ping_bucket_le(k), (unsigned long long)acc);
		}
		acc += t->hist[PING_EDGES];
		mbuf_printf(b, "ispmon_ping_rtt_seconds_bucket{target=\"%s\",le=\"+Inf\"} %llu\n",
			    t->host, (unsigned long long)acc);
		snprintf(lb, sizeof(lb), "target=\"%s\"", t->host);
		prom_f64(b, "ispmon_ping_rtt_seconds_sum", lb, t->rtt_sum);
		prom_u64(b, "ispmon_ping_rtt_seconds_count", lb, acc);
	}

	prom_header(b, "ispmon_ping_rtt_median_seconds", "gauge",
		    "Median ping RTT over the last 60 s (absent without replies in that time).");
	for (unsigned i = 0; i < p->n; i++) {
		double med = window_median(p, &p->t[i], now);

		if (isnan(med))
			continue;
		snprintf(lb, sizeof(lb), "target=\"%s\"", p->t[i].host);
		prom_f64(b, "ispmon_ping_rtt_median_seconds", lb, med);
	}
	prom_header(b, "ispmon_ping_jitter_seconds", "gauge",
		    "Ping jitter: smoothed mean difference of consecutive RTTs, J += (|D| - J) / 16 "
		    "as RFC 3550 (absent before two replies).");
	for (unsigned i = 0; i < p->n; i++) {
		if (p->t[i].jitter < 0)
			continue;
		snprintf(lb, sizeof(lb), "target=\"%s\"", p->t[i].host);
		prom_f64(b, "ispmon_ping_jitter_seconds", lb, p->t[i].jitter);
	}
	pthread_mutex_unlock(&p->lock);
}

void ping_render_success(struct ping *p, struct mbuf *b)
{
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < p->n; i++)
		if (p->t[i].success >= 0)
			mbuf_printf(b, "ispmon_probe_success{probe=\"ping\",target=\"%s\"} %d\n",
				    p->t[i].host, p->t[i].success);
	pthread_mutex_unlock(&p->lock);
}

void ping_render_failures(struct ping *p, struct mbuf *b)
{
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < p->n; i++)
		for (int r = 0; r < R_MAX; r++)
			mbuf_printf(b, "ispmon_probe_failures_total{probe=\"ping\",target=\"%s\",reason=\"%s\"} %llu\n",
				    p->t[i].host, reason_names[r],
				    (unsigned long long)p->t[i].failures[r]);
	pthread_mutex_unlock(&p->lock);
}

unsigned ping_snapshot(struct ping *p, struct ping_target_snap *out, unsigned max)
{
	double now = mono_now();
	unsigned n = 0;

	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < p->n && n < max; i++, n++) {
		const struct target *t = &p->t[i];
		struct ping_target_snap *o = &out[n];

		snprintf(o->host, sizeof(o->host), "%s", t->host);
		o->sent = t->sent;
		o->received = t->received;
		o->lost = t->failures[R_TIMEOUT] + t->failures[R_UNREACHABLE] + t->failures[R_ERROR];
		o->success = t->success;
		o->median_s = window_median(p, t, now);
		o->last_reply = t->last_reply;
		o->answering_since = t->success == 1 ? t->answering_since : 0;
	}
	pthread_mutex_unlock(&p->lock);
	return n;
}
