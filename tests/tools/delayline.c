// delayline: userspace WAN emulator between two interfaces (the kernel here
// has no netem). Frames received on A leave B after delay-ab, frames received
// on B leave A after delay-ba, in order. One thread per direction owns its
// queue, so the hot path takes no locks. A frame's delay counts from the
// kernel's receive timestamp, so the time this process takes to wake up and
// read it is not added on top (measured here: ~0.05-0.1 ms per crossing).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SLOT_MAX 2048 /* MTU 1500 + headers; bigger frames mean offloads are on */
#define RX_BATCH 64   /* frames drained before due frames get a turn */
#define SOCK_BUF (64 << 20)

static const char usage_text[] =
	"usage: delayline --a IF --b IF [options]\n"
	"  Forwards every frame received on A out of B after delay-ab, and B->A\n"
	"  after delay-ba, preserving order. Interfaces need no addresses.\n"
	"  --delay-ab-ms F   one-way delay A->B in milliseconds (default 0)\n"
	"  --delay-ba-ms F   one-way delay B->A in milliseconds (default 0)\n"
	"  --queue N         frames queued per direction before dropping (default 16384)\n"
	"  --stats FILE      where counters are written on SIGUSR2 and on exit\n"
	"  --ctl FILE        control file, re-read on SIGUSR1 (and at start if present)\n"
	"  --no-rt           do not try SCHED_FIFO for the forwarding threads\n"
	"control file: one line \"AB_MS BA_MS [up|down [AB_LOSS BA_LOSS]]\". 'down'\n"
	"  drops every frame (link outage) until a later 'up'; a loss in percent\n"
	"  (0-100, default 0) drops that share of frames at random, as they arrive.\n"
	"  After applying it, the line is written\n"
	"  back to FILE.applied so callers can wait until the change took effect.\n"
	"signals: SIGUSR1 re-read control file, SIGUSR2 write stats,\n"
	"  SIGTERM/SIGINT write stats and exit 0.\n";

struct dir_stats {
	atomic_ullong fwd_frames, fwd_bytes;
	atomic_ullong drop_full, drop_down, drop_oversize, drop_tx, drop_tx_bytes, drop_loss;
	atomic_ullong rx_ts_fallback; /* frames timed at recv() instead of by the kernel */
	unsigned long long drop_kernel; /* rx socket overflow; main thread only */
};

struct slot {
	uint64_t due_ns;
	uint16_t off, len; /* frame is data[off .. off+len) */
	uint8_t data[SLOT_MAX];
};

struct dir {
	const char *name;     /* "ab" or "ba" */
	int rx_fd, tx_fd;     /* packet sockets of the source and sink interface */
	atomic_llong delay_ns;
	atomic_uint loss;     /* frames dropped at random, per 2^32 */
	uint64_t rng;         /* xorshift64 state, this direction's thread only */
	struct slot *q;
	uint32_t cap, head, count;
	uint64_t last_due;    /* due times never go backwards: keeps order */
	struct dir_stats st;
	int warned_oversize;
};

static struct dir dirs[2];
static atomic_int link_down;
static const char *stats_path, *ctl_path;
static int use_rt = 1;

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("delayline: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long long ms_to_ns(const char *s, const char *what)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || *end || v < 0 || v > 3600e3)
		die("bad %s '%s': want milliseconds between 0 and 3600000", what, s);
	return (long long)(v * 1e6 + 0.5);
}

static void set_int_opt(int fd, int level, int opt, int val, const char *what)
{
	if (setsockopt(fd, level, opt, &val, sizeof(val)) < 0)
		die("setsockopt %s: %s", what, strerror(errno));
}

static int open_if(const char *ifname)
{
	unsigned idx = if_nametoindex(ifname);
	if (!idx)
		die("no interface '%s': %s", ifname, strerror(errno));
	/* Protocol 0 receives nothing until bind() names the interface. */
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("packet socket: %s", strerror(errno));
	/* Big buffers absorb line-rate bursts while the thread is sending. */
	set_int_opt(fd, SOL_SOCKET, SO_RCVBUFFORCE, SOCK_BUF, "SO_RCVBUFFORCE");
	set_int_opt(fd, SOL_SOCKET, SO_SNDBUFFORCE, SOCK_BUF, "SO_SNDBUFFORCE");
	/* Kernel receive timestamps: a frame's delay counts from its arrival,
	 * not from when this thread got around to reading it. */
	set_int_opt(fd, SOL_SOCKET, SO_TIMESTAMPNS, 1, "SO_TIMESTAMPNS");
	/* Keep the qdisc in the path so tc shaping on the egress side applies. */
	set_int_opt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, 0, "PACKET_QDISC_BYPASS");
	/* The receive path moves VLAN tags out of the frame into metadata
	 * before packet sockets see it; auxdata hands them back to re-insert. */
	set_int_opt(fd, SOL_PACKET, PACKET_AUXDATA, 1, "PACKET_AUXDATA");
	/* Our own transmissions must not come back as input (older kernels lack
	 * this option; the pkttype check in the loop covers them). */
	int one = 1;
	setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
	struct sockaddr_ll sll = {
		.sll_family = AF_PACKET,
		.sll_protocol = htons(ETH_P_ALL),
		.sll_ifindex = (int)idx,
	};
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0)
		die("bind to %s: %s", ifname, strerror(errno));
	return fd;
}

/* The arrival time on CLOCK_MONOTONIC from the kernel's receive timestamp
 * (CLOCK_REALTIME), or 0 if it is missing or implausible. Frames from a
 * local TCP socket in another namespace may carry their departure time on
 * CLOCK_MONOTONIC instead (EDT, kept across veth): accepted too. Only a
 * stamp within the last 100 ms counts; a clock step makes it fall back. */
#define TS_WINDOW_NS 100000000ull

static uint64_t arrival_ns(const struct timespec *ts, uint64_t now)
{
	struct timespec real, mono;
	clock_gettime(CLOCK_REALTIME, &real);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	int64_t off = ((int64_t)real.tv_sec - mono.tv_sec) * 1000000000 + (real.tv_nsec - mono.tv_nsec);
	int64_t t = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
	const uint64_t cand[2] = { (uint64_t)(t - off), (uint64_t)t };
	for (int i = 0; i < 2; i++)
		if (cand[i] <= now && now - cand[i] < TS_WINDOW_NS)
			return cand[i];
	return 0;
}

/* Receive one frame into s and set s->due_ns to its arrival time; returns
 * 1 if queue-worthy, 0 if skipped, -1 on EAGAIN. */
static int recv_frame(struct dir *d, struct slot *s)
{
	union {
		struct cmsghdr h;
		/* cppcheck-suppress unusedStructMember ; sizes the union */
		char buf[CMSG_SPACE(sizeof(struct tpacket_auxdata)) + CMSG_SPACE(sizeof(struct timespec))];
	} ctl;
	struct sockaddr_ll from;
	/* Leave room for a VLAN tag we may have to put back. */
	struct iovec iov = { .iov_base = s->data + 4, .iov_len = SLOT_MAX - 4 };
	struct msghdr mh = {
		.msg_name = &from, .msg_namelen = sizeof(from),
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = &ctl, .msg_controllen = sizeof(ctl),
	};
	ssize_t n = recvmsg(d->rx_fd, &mh, MSG_DONTWAIT | MSG_TRUNC);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return -1;
		die("recv (%s): %s", d->name, strerror(errno));
	}
	if (from.sll_pkttype == PACKET_OUTGOING)
		return 0;
	if ((size_t)n > iov.iov_len || n < ETH_HLEN) {
		atomic_fetch_add(&d->st.drop_oversize, 1);
		if (!d->warned_oversize++)
			fprintf(stderr, "delayline: %s: dropping %zd-byte frame; "
				"turn off gso/gro/tso on the path\n", d->name, n);
		return 0;
	}
	uint8_t *frame = s->data + 4;
	uint64_t now = now_ns(), arrived = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
			struct timespec ts;
			memcpy(&ts, CMSG_DATA(c), sizeof(ts));
			arrived = arrival_ns(&ts, now);
			continue;
		}
		if (c->cmsg_level != SOL_PACKET || c->cmsg_type != PACKET_AUXDATA)
			continue;
		struct tpacket_auxdata aux;
		memcpy(&aux, CMSG_DATA(c), sizeof(aux));
		if (!(aux.tp_status & TP_STATUS_VLAN_VALID))
			continue;
		uint16_t tpid = (aux.tp_status & TP_STATUS_VLAN_TPID_VALID) ?
			aux.tp_vlan_tpid : ETH_P_8021Q;
		uint16_t tag[2] = { htons(tpid), htons(aux.tp_vlan_tci) };
		frame = s->data;
		memmove(frame, frame + 4, 12); /* MACs move forward, tag follows */
		memcpy(frame + 12, tag, 4);
		n += 4;
	}
	s->off = (uint16_t)(frame - s->data);
	s->len = (uint16_t)n;
	if (!arrived) {
		atomic_fetch_add(&d->st.rx_ts_fallback, 1);
		arrived = now;
	}
	s->due_ns = arrived;
	return 1;
}

static void send_frame(struct dir *d, const struct slot *s)
{
	if (atomic_load(&link_down)) {
		atomic_fetch_add(&d->st.drop_down, 1);
		return;
	}
	/* Never block: a full qdisc (shaping) is a tail drop, as on a real link. */
	for (;;) {
		ssize_t n = send(d->tx_fd, s->data + s->off, s->len, MSG_DONTWAIT);
		if (n == (ssize_t)s->len) {
			atomic_fetch_add(&d->st.fwd_frames, 1);
			atomic_fetch_add(&d->st.fwd_bytes, s->len);
			return;
		}
		if (n < 0 && errno == EINTR)
			continue;
		atomic_fetch_add(&d->st.drop_tx, 1);
		atomic_fetch_add(&d->st.drop_tx_bytes, s->len);
		return;
	}
}

/* Timer wake-ups here come ~50-150 us late (VM, idle states). The thread
 * learns that latency, sleeps until due minus it, and spins the short rest:
 * frames leave on time without spinning whole delays. */
#define WAKE_LAT_MAX_NS 200000

static void *run_dir(void *arg)
{
	struct dir *d = arg;
	prctl(PR_SET_TIMERSLACK, 1UL); /* wake-ups at the deadline, not 50 us later */
	if (use_rt) {
		struct sched_param sp = { .sched_priority = 10 };
		pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp); /* best effort */
	}
	struct pollfd pfd = { .fd = d->rx_fd, .events = POLLIN };
	uint64_t wake_lat = 50000;
	for (;;) {
		uint64_t now = now_ns();
		while (d->count) {
			uint64_t due = d->q[d->head].due_ns;
			if (due > now) {
				if (due - now > wake_lat)
					break;
				while ((now = now_ns()) < due)
					;
			}
			send_frame(d, &d->q[d->head]);
			d->head = (d->head + 1) % d->cap;
			d->count--;
		}
		struct timespec ts, *tmo = NULL;
		uint64_t target = 0;
		if (d->count) {
			target = d->q[d->head].due_ns - wake_lat; /* > now, see above */
			ts.tv_sec = (time_t)((target - now) / 1000000000u);
			ts.tv_nsec = (long)((target - now) % 1000000000u);
			tmo = &ts;
		}
		int r = ppoll(&pfd, 1, tmo, NULL);
		if (r < 0 && errno != EINTR)
			die("ppoll (%s): %s", d->name, strerror(errno));
		if (r == 0 && tmo) {
			/* Timed out: learn how late the wake-up was (EWMA, 1/8). */
			uint64_t t = now_ns(), late = t > target ? t - target : 0;
			int64_t delta = (int64_t)late - (int64_t)wake_lat;
			wake_lat = (uint64_t)((int64_t)wake_lat + delta / 8);
			if (wake_lat > WAKE_LAT_MAX_NS)
				wake_lat = WAKE_LAT_MAX_NS;
		}
		if (r <= 0)
			continue;
		for (int i = 0; i < RX_BATCH; i++) {
			static __thread struct slot spill;
			int full = d->count == d->cap;
			struct slot *s = full ? &spill : &d->q[(d->head + d->count) % d->cap];
			int got = recv_frame(d, s);
			if (got < 0)
				break;
			if (!got)
				continue;
			if (atomic_load(&link_down)) {
				atomic_fetch_add(&d->st.drop_down, 1);
				continue;
			}
			if (full) {
				atomic_fetch_add(&d->st.drop_full, 1);
				continue;
			}
			uint32_t loss = atomic_load(&d->loss);
			if (loss) {
				d->rng ^= d->rng << 13;
				d->rng ^= d->rng >> 7;
				d->rng ^= d->rng << 17;
				if ((uint32_t)(d->rng >> 32) < loss) {
					atomic_fetch_add(&d->st.drop_loss, 1);
					continue;
				}
			}
			uint64_t due = s->due_ns + (uint64_t)atomic_load(&d->delay_ns);
			if (due < d->last_due)
				due = d->last_due;
			d->last_due = s->due_ns = due;
			d->count++;
		}
	}
	return NULL;
}

static void write_stats(void)
{
	char buf[1024];
	size_t off = 0;
	for (int i = 0; i < 2; i++) {
		struct dir *d = &dirs[i];
		struct dir_stats *s = &d->st;
		/* Reading PACKET_STATISTICS resets it: accumulate. */
		struct tpacket_stats ks;
		socklen_t len = sizeof(ks);
		if (getsockopt(d->rx_fd, SOL_PACKET, PACKET_STATISTICS, &ks, &len) == 0)
			s->drop_kernel += ks.tp_drops;
		unsigned long long full = atomic_load(&s->drop_full),
			down = atomic_load(&s->drop_down),
			over = atomic_load(&s->drop_oversize),
			tx = atomic_load(&s->drop_tx), kern = s->drop_kernel,
			loss = atomic_load(&s->drop_loss);
		off += (size_t)snprintf(buf + off, sizeof(buf) - off,
			"%s fwd_frames=%llu fwd_bytes=%llu dropped_frames=%llu "
			"drop_queue_full=%llu drop_link_down=%llu drop_oversize=%llu "
			"drop_tx=%llu drop_tx_bytes=%llu drop_kernel=%llu drop_loss=%llu delay_ms=%.3f "
			"rx_ts_fallback=%llu\n",
			d->name, atomic_load(&s->fwd_frames), atomic_load(&s->fwd_bytes),
			full + down + over + tx + kern + loss, full, down, over, tx,
			atomic_load(&s->drop_tx_bytes), kern, loss,
			(double)atomic_load(&d->delay_ns) / 1e6, atomic_load(&s->rx_ts_fallback));
	}
	fputs(buf, stderr);
	if (!stats_path)
		return;
	/* Write then rename: readers never see a half-written file. */
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", stats_path);
	FILE *f = fopen(tmp, "w");
	if (!f || fputs(buf, f) < 0 || fclose(f) != 0 || rename(tmp, stats_path) < 0)
		fprintf(stderr, "delayline: cannot write stats to %s: %s\n",
			stats_path, strerror(errno));
}

/* Apply the control file; on a malformed file keep the old settings. */
static void read_ctl(int must_exist)
{
	FILE *f = fopen(ctl_path, "r");
	if (!f) {
		if (must_exist || errno != ENOENT)
			fprintf(stderr, "delayline: cannot read %s: %s\n", ctl_path, strerror(errno));
		return;
	}
	char line[256] = "", ab[64], ba[64], state[16] = "up", lab[32] = "0", lba[32] = "0";
	char *ok = fgets(line, sizeof(line), f);
	fclose(f);
	line[strcspn(line, "\r\n")] = 0;
	int n = ok ? sscanf(line, "%63s %63s %15s %31s %31s", ab, ba, state, lab, lba) : 0;
	if (n < 2 || n == 4 || (strcmp(state, "up") && strcmp(state, "down"))) {
		fprintf(stderr, "delayline: ignoring control line '%s': "
			"want 'AB_MS BA_MS [up|down [AB_LOSS BA_LOSS]]'\n", line);
		return;
	}
	char *e1, *e2, *e3, *e4;
	double a = strtod(ab, &e1), b = strtod(ba, &e2), la = strtod(lab, &e3), lb = strtod(lba, &e4);
	if (*e1 || *e2 || a < 0 || b < 0 || a > 3600e3 || b > 3600e3) {
		fprintf(stderr, "delayline: ignoring control line '%s': bad delay\n", line);
		return;
	}
	if (*e3 || *e4 || !(la >= 0 && la <= 100) || !(lb >= 0 && lb <= 100)) {
		fprintf(stderr, "delayline: ignoring control line '%s': loss wants 0-100 %%\n", line);
		return;
	}
	atomic_store(&dirs[0].delay_ns, (long long)(a * 1e6 + 0.5));
	atomic_store(&dirs[1].delay_ns, (long long)(b * 1e6 + 0.5));
	atomic_store(&dirs[0].loss, (uint32_t)(la / 100 * 4294967295.0));
	atomic_store(&dirs[1].loss, (uint32_t)(lb / 100 * 4294967295.0));
	atomic_store(&link_down, !strcmp(state, "down"));
	fprintf(stderr, "delayline: ab=%.3fms ba=%.3fms link %s loss ab=%g%% ba=%g%%\n", a, b, state, la, lb);

	char path[4096], tmp[4096];
	snprintf(path, sizeof(path), "%s.applied", ctl_path);
	snprintf(tmp, sizeof(tmp), "%s.applied.tmp", ctl_path);
	f = fopen(tmp, "w");
	if (!f || fprintf(f, "%s\n", line) < 0 || fclose(f) != 0 || rename(tmp, path) < 0)
		fprintf(stderr, "delayline: cannot write %s: %s\n", path, strerror(errno));
}

static void init_dir(struct dir *d, const char *name, int rx, int tx, long long delay, uint32_t cap)
{
	d->name = name;
	d->rx_fd = rx;
	d->tx_fd = tx;
	atomic_store(&d->delay_ns, delay);
	d->rng = (now_ns() ^ (uintptr_t)d) | 1; /* any non-zero seed */
	d->cap = cap;
	/* calloc leaves untouched pages unmapped: a large queue costs little. */
	d->q = calloc(cap, sizeof(*d->q));
	if (!d->q)
		die("cannot allocate a %u-frame queue", cap);
}

int main(int argc, char **argv)
{
	/* Signals are taken by the main thread only, with sigwaitinfo; blocked
	 * from the start so an early SIGUSR1 waits instead of killing us.
	 * Worker threads inherit the mask. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	const char *ifa = NULL, *ifb = NULL;
	long long dab = 0, dba = 0;
	unsigned long cap = 16384;
	for (int i = 1; i < argc; i++) {
		const char *o = argv[i];
		if (!strcmp(o, "--no-rt")) {
			use_rt = 0;
			continue;
		}
		if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
			fputs(usage_text, stdout);
			return 0;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "delayline: unknown or incomplete option '%s'\n%s", o, usage_text);
			return 2;
		}
		const char *v = argv[++i];
		if (!strcmp(o, "--a"))
			ifa = v;
		else if (!strcmp(o, "--b"))
			ifb = v;
		else if (!strcmp(o, "--delay-ab-ms"))
			dab = ms_to_ns(v, "--delay-ab-ms");
		else if (!strcmp(o, "--delay-ba-ms"))
			dba = ms_to_ns(v, "--delay-ba-ms");
		else if (!strcmp(o, "--stats"))
			stats_path = v;
		else if (!strcmp(o, "--ctl"))
			ctl_path = v;
		else if (!strcmp(o, "--queue")) {
			char *end;
			cap = strtoul(v, &end, 10);
			if (*end || cap < 1 || cap > (1u << 20))
				die("bad --queue '%s': want 1..1048576 frames", v);
		} else {
			fprintf(stderr, "delayline: unknown option '%s'\n%s", o, usage_text);
			return 2;
		}
	}
	if (!ifa || !ifb || !strcmp(ifa, ifb)) {
		fprintf(stderr, "delayline: need two different interfaces --a and --b\n%s", usage_text);
		return 2;
	}

	int fa = open_if(ifa), fb = open_if(ifb);
	init_dir(&dirs[0], "ab", fa, fb, dab, (uint32_t)cap);
	init_dir(&dirs[1], "ba", fb, fa, dba, (uint32_t)cap);
	if (ctl_path)
		read_ctl(0);

	for (int i = 0; i < 2; i++) {
		pthread_t t;
		int err = pthread_create(&t, NULL, run_dir, &dirs[i]);
		if (err)
			die("pthread_create: %s", strerror(err));
	}
	fprintf(stderr, "delayline: forwarding %s <-> %s\n", ifa, ifb);

	for (;;) {
		int sig = sigwaitinfo(&set, NULL);
		if (sig == SIGUSR1 || sig == SIGHUP) {
			if (ctl_path)
				read_ctl(1);
		} else if (sig == SIGUSR2) {
			write_stats();
		} else if (sig == SIGTERM || sig == SIGINT) {
			write_stats();
			fflush(NULL);
			_exit(0);
		}
	}
}
