/*
 * ispmon: passive internet-line monitor for Linux routers.
 *
 * Start-up order keeps failures clean: everything that can be checked
 * without touching the kernel (flags, interface, BTF, listen port) is
 * checked before any BPF program is loaded, and programs are attached last,
 * so an error leaves nothing behind.
 */
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "capacity.h"
#include "config.h"
#include "devices.h"
#include "flow.skel.h"
#include "http.h"
#include "linestats.h"
#include "log.h"
#include "metrics.h"
#include "netif.h"
#include "ping.h"
#include "privs.h"
#include "speedtest.h"
#include "report.h"
#include "rtt.h"
#include "status.h"
#include "tc.h"
#include "tcpsock.h"
#include "webconfig.h"

#define EXIT_USAGE 2
#define KERNEL_BTF "/sys/kernel/btf/vmlinux"
#define SWEEP_INTERVAL_S 5.0
#define FAST_SAMPLE_MS 100 /* line rate sampling for capacity and peaks */
#define LINK_CHECK_MS 500 /* an interface back under its name is re-attached this fast */ /* flow-table sweep for idle and stale entries */
#define RTT_WINDOW_SLOT_S 10.0

/* One interface with its own instance of the TC programs and maps. */
struct hook {
	struct netif nif;
	bool lan;
	bool gone; /* the interface disappeared; we wait for it by name */
	struct flow_bpf *skel;
	struct tc_attachment tc;
};

struct ispmon {
	struct config cfg;
	struct hook hooks[1 + CONFIG_MAX_LAN]; /* [0] is the WAN interface */
	unsigned n_hooks;
	struct metrics_store store;
	struct http_server *http;
	struct web_config *web;
	struct devices *devices;
	struct linestats lines;
	struct rtt_reader *rtt;
	struct report report;
	struct ping *ping;
	struct speedtest *speed;
	struct tcpsock *tcp; /* the router's own TCP sockets, NULL: no hooks */
	/* What the speed-test thread asks of the line: guarded by line_lock,
	 * written by the collector (main thread). */
	pthread_mutex_t line_lock;
	double line_rate[ISPMON_DIR_MAX], line_peak[ISPMON_DIR_MAX];
	char gateway[64]; /* default ping target */
	double last_sweep;
	int sig_fd, timer_fd, fast_fd;
	struct capacity *capacity;
	struct status *status; /* the page at / and /api/status */
};

static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char msg[16384], q[4100];
	const char *tail = msg;
	int n;

	/* libbpf's warnings come in many lines (verifier logs); our own error
	 * line says what failed, the details are for --log-level debug. A
	 * verifier log ends with its reason: keep the end of a long one. */
	if (log_get_level() > LOG_DEBUG)
		return 0;
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		return 0;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	if (n > 2000)
		tail = msg + n - 2000;
	log_debug("libbpf", "level=%d detail=%s", (int)level, log_quote(q, sizeof(q), tail));
	return 0;
}

static double now_s(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int resolve_wan(struct ispmon *m)
{
	char name[IF_NAMESIZE] = "";
	int err;

	if (m->cfg.iface[0]) {
		snprintf(name, sizeof(name), "%s", m->cfg.iface);
	} else {
		FILE *r4 = fopen("/proc/net/route", "r");
		FILE *r6 = fopen("/proc/net/ipv6_route", "r");

		err = netif_default_route(r4, r6, name);
		if (r4)
			fclose(r4);
		if (r6)
			fclose(r6);
		if (err) {
			log_error("no default route to find the WAN interface; pass --iface IF", NULL);
			return err;
		}
	}
	err = netif_lookup(name, &m->hooks[0].nif);
	if (err) {
		log_error("interface not found", "iface=%s", name);
		return err;
	}
	m->n_hooks = 1;
	return 0;
}

/* LAN interfaces for per-device figures: given, or found by address. */
static int resolve_lan(struct ispmon *m)
{
	char found[CONFIG_MAX_LAN][IF_NAMESIZE];
	unsigned n;

	if (!m->cfg.max_devices)
		return 0;
	if (m->cfg.n_lan) {
		n = m->cfg.n_lan;
		memcpy(found, m->cfg.lan_iface, sizeof(found));
	} else {
		n = netif_find_lan(m->hooks[0].nif.name, found, CONFIG_MAX_LAN);
	}
	for (unsigned i = 0; i < n; i++) {
		struct hook *h = &m->hooks[m->n_hooks];
		int err;

		if (!strcmp(found[i], m->hooks[0].nif.name)) {
			log_error("a LAN interface cannot also be the WAN interface", "iface=%s",
				  found[i]);
			return -EINVAL;
		}
		err = netif_lookup(found[i], &h->nif);
		if (err) {
			log_error("LAN interface not found", "iface=%s", found[i]);
			return err;
		}
		h->lan = true;
		m->n_hooks++;
	}
	return 0;
}

static int check_btf(const struct config *cfg)
{
	const char *path = cfg->btf_path ? cfg->btf_path : KERNEL_BTF;
	struct btf *btf;

	btf = btf__parse(path, NULL);
	if (!btf) {
		int err = -errno;
		char q[300], why[128], qwhy[160];

		/* libbpf's own codes (e.g. "invalid format") are past errno's. */
		libbpf_strerror(err, why, sizeof(why));
		log_error(cfg->btf_path ? "cannot read the BTF file given with --btf"
					: "kernel BTF not found: needs CONFIG_DEBUG_INFO_BTF=y, or pass --btf FILE",
			  "path=%s err=%s", log_quote(q, sizeof(q), path),
			  log_quote(qwhy, sizeof(qwhy), why));
		return err;
	}
	btf__free(btf);
	return 0;
}

/*
 * Table sizes, before load. The device table is an LRU map: with a shared
 * LRU list each CPU keeps up to 128 free entries of its own, so it must be
 * that much larger than what it should hold (every device the collector
 * remembers) or it evicts early. The WAN instance never uses it (nor the cache in front of it).
 */
static int size_maps(const struct config *cfg, struct hook *h)
{
	int ncpus = libbpf_num_possible_cpus(), err;
	__u32 dev = h->lan ? DEVICES_TABLE_MAX + 128 * (__u32)(ncpus > 0 ? ncpus : 1) : 1;

	err = bpf_map__set_max_entries(h->skel->maps.flow_state, cfg->max_flows);
	if (!err)
		err = bpf_map__set_max_entries(h->skel->maps.pending, cfg->max_flows);
	if (!err)
		err = bpf_map__set_max_entries(h->skel->maps.devices, dev);
	if (!err && !h->lan)
		err = bpf_map__set_max_entries(h->skel->maps.dev_cache, 1);
	if (err)
		log_error("cannot size the BPF maps", "err=\"%s\"", strerror(-err));
	return err;
}

static int load_hook(struct ispmon *m, struct hook *h)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .btf_custom_path = m->cfg.btf_path);
	int err;

	h->skel = flow_bpf__open_opts(&opts);
	if (!h->skel) {
		err = -errno;
		log_error("cannot open the BPF object", "err=\"%s\"", strerror(-err));
		return err;
	}
	h->skel->rodata->l3_dev = h->nif.l3;
	/* On a LAN interface what arrives comes from a device: upload. */
	h->skel->rodata->ingress_dir = h->lan ? ISPMON_DIR_UPLOAD : ISPMON_DIR_DOWNLOAD;
	h->skel->rodata->lan_side = h->lan;
	err = size_maps(&m->cfg, h);
	if (!err)
		err = flow_bpf__load(h->skel);
	if (err == -EPERM || err == -EACCES) {
		log_error("permission denied loading BPF programs: run as root "
			  "(needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)", NULL);
		return err;
	}
	if (err) {
		log_error("cannot load the BPF programs (details with --log-level debug)",
			  "err=\"%s\"", strerror(-err));
		return err;
	}
	return 0;
}

static int attach_hook(struct hook *h)
{
	const char *stage = "";
	int err;

	err = tc_attach(h->nif.ifindex, bpf_program__fd(h->skel->progs.tc_ingress),
			bpf_program__fd(h->skel->progs.tc_egress), &h->tc, &stage);
	if (err) {
		log_error(err == -EPERM ? "permission denied attaching to the interface: run as root"
					: "cannot attach to the interface",
			  "iface=%s stage=\"%s\" err=\"%s\"", h->nif.name, stage, strerror(-err));
		return err;
	}
	log_info("attached", "iface=%s ifindex=%d side=%s link=%s mode=tc clsact=%s",
		 h->nif.name, h->nif.ifindex, h->lan ? "lan" : "wan",
		 h->nif.l3 ? "l3" : "ethernet", h->tc.qdisc_created ? "created" : "existing");
	return 0;
}

/* Kernel memory of one map, as the kernel accounts it in fdinfo. */
static uint64_t map_memlock(int fd)
{
	char path[64], line[128];
	unsigned long long v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "memlock: %llu", &v) == 1)
			break;
	fclose(f);
	return v;
}

/* Per map, summed over the interfaces (their tables differ in size), and
 * the TCP hooks' maps. */
static void map_memory(struct ispmon *m)
{
	const size_t cap = sizeof(m->report.map_names) / sizeof(m->report.map_names[0]);
	struct bpf_map *map;
	uint64_t total = 0;

	bpf_object__for_each_map(map, m->hooks[0].skel->obj) {
		const char *name = bpf_map__name(map);
		uint64_t v = 0;

		if (m->report.n_maps >= cap)
			break;
		for (unsigned i = 0; i < m->n_hooks; i++) {
			struct bpf_map *same = bpf_object__find_map_by_name(m->hooks[i].skel->obj, name);

			if (same)
				v += map_memlock(bpf_map__fd(same));
		}
		m->report.map_names[m->report.n_maps] = name;
		m->report.map_bytes[m->report.n_maps++] = v;
		total += v;
	}
	if (m->tcp)
		bpf_object__for_each_map(map, tcpsock_object(m->tcp)) {
			if (m->report.n_maps >= cap)
				break;
			m->report.map_names[m->report.n_maps] = bpf_map__name(map);
			m->report.map_bytes[m->report.n_maps] = map_memlock(bpf_map__fd(map));
			total += m->report.map_bytes[m->report.n_maps++];
		}
	log_info("bpf maps", "maps=%u interfaces=%u max_flows=%u memory_bytes=%llu",
		 m->report.n_maps, m->n_hooks, m->cfg.max_flows, (unsigned long long)total);
}

static int rtt_setup(struct ispmon *m)
{
	struct rtt_maps maps = {
		.hist_fd = bpf_map__fd(m->hooks[0].skel->maps.rtt_hist),
		.sum_fd = bpf_map__fd(m->hooks[0].skel->maps.rtt_sum),
		.counters_fd = bpf_map__fd(m->hooks[0].skel->maps.rtt_counters),
		.flow_counters_fd = bpf_map__fd(m->hooks[0].skel->maps.flow_counters),
		.flow_state_fd = bpf_map__fd(m->hooks[0].skel->maps.flow_state),
		.pending_fd = bpf_map__fd(m->hooks[0].skel->maps.pending),
	};

	return rtt_reader_new(&maps, RTT_WINDOW_SLOT_S, &m->rtt);
}

/* Read the maps and publish a fresh /metrics page. */
static void collect(struct ispmon *m, double *last)
{
	struct ispmon_dir_stats now[ISPMON_DIR_MAX];
	double t = now_s(CLOCK_MONOTONIC);
	struct mbuf b;
	int err;

	err = linestats_read(&m->lines, now);
	if (err) {
		m->report.collect_errors++;
		log_warn("cannot read line totals", "err=\"%s\"", strerror(-err));
	} else {
		report_update(&m->report, now, t - *last);
		*last = t;
		if (m->report.have_rate) {
			pthread_mutex_lock(&m->line_lock);
			for (int d = 0; d < ISPMON_DIR_MAX; d++) {
				m->line_rate[d] = m->report.rate_Bps[d];
				if (m->line_rate[d] > m->line_peak[d])
					m->line_peak[d] = m->line_rate[d];
			}
			pthread_mutex_unlock(&m->line_lock);
		}
	}
	err = rtt_reader_collect(m->rtt, t);
	if (err) {
		m->report.collect_errors++;
		log_warn("cannot read RTT maps", "err=\"%s\"", strerror(-err));
	} else {
		m->report.rtt = rtt_reader_view(m->rtt);
		capacity_interval(m->capacity, t,
				  rtt_reader_interval_median(m->rtt, ISPMON_LEG_WAN));
	}
	if (m->tcp && (err = tcpsock_collect(m->tcp, t))) {
		m->report.collect_errors++;
		log_warn("cannot read the TCP socket maps", "err=\"%s\"", strerror(-err));
	}
	if (m->devices) {
		for (unsigned i = 1; i < m->n_hooks; i++) {
			err = devices_read(m->devices, bpf_map__fd(m->hooks[i].skel->maps.devices),
					   bpf_map__fd(m->hooks[i].skel->maps.dev_cache));
			if (err) {
				m->report.collect_errors++;
				log_warn("cannot read the device maps", "err=\"%s\"", strerror(-err));
			}
		}
		devices_commit(m->devices, t);
	}
	if (t - m->last_sweep >= SWEEP_INTERVAL_S) {
		if (m->devices)
			devices_load_leases(m->devices, NULL); /* re-read if changed */
		rtt_reader_sweep(m->rtt, (uint64_t)(t * 1e9));
		m->last_sweep = t;
	}
	capacity_peak_commit(m->capacity, t, metrics_store_served(&m->store));
	status_collect(m->status, &m->report, t, now_s(CLOCK_REALTIME));
	mbuf_init(&b);
	report_render(&m->report, &b);
	status_render_metrics(m->status, &b);
	if (b.err) {
		log_warn("cannot render metrics", "err=\"%s\"", strerror(-b.err));
		mbuf_free(&b);
		return;
	}
	metrics_store_publish(&m->store, &b);
}

/* Ping probes, after everything else is up: a failure here is a warning,
 * the passive monitor runs on without them. */
static void ping_setup(struct ispmon *m)
{
	static const char *const public_resolvers[] = {"1.1.1.1", "9.9.9.9"};
	struct ping_opts o = {.interval_ms = m->cfg.ping_interval_ms,
			      .timeout_ms = m->cfg.ping_timeout_ms};
	int err;

	if (!o.interval_ms)
		return;
	if (m->cfg.n_ping) {
		for (unsigned i = 0; i < m->cfg.n_ping; i++)
			o.targets[o.n_targets++] = m->cfg.ping_targets[i];
	} else {
		FILE *r4 = fopen("/proc/net/route", "r");
		FILE *r6 = fopen("/proc/net/ipv6_route", "r");

		if (!netif_default_gateway(r4, r6, m->gateway, sizeof(m->gateway)) &&
		    ping_valid_host(m->gateway))
			o.targets[o.n_targets++] = m->gateway;
		else
			log_info("no default gateway to ping", NULL);
		if (r4)
			fclose(r4);
		if (r6)
			fclose(r6);
		for (unsigned i = 0; i < sizeof(public_resolvers) / sizeof(public_resolvers[0]); i++)
			o.targets[o.n_targets++] = public_resolvers[i];
	}
	err = ping_start(&o, &m->ping);
	if (err) {
		log_warn("cannot start the ping probes", "err=\"%s\"", strerror(-err));
		m->ping = NULL;
	}
	m->report.ping = m->ping;
}

/* Share of the line in use now, for postponing a speed test: the last
 * interval's rate over the highest rate seen, the larger direction. NaN
 * until the line has shown what it can carry (100 kB/s at least). */
static double line_busy(void *ctx)
{
	struct ispmon *m = ctx;
	double share = NAN;

	pthread_mutex_lock(&m->line_lock);
	for (int d = 0; d < ISPMON_DIR_MAX; d++) {
		double s;

		if (m->line_peak[d] < 100e3)
			continue;
		s = m->line_rate[d] / m->line_peak[d];
		if (isnan(share) || s > share)
			share = s;
	}
	pthread_mutex_unlock(&m->line_lock);
	return share;
}

/* Latency under load as the kernel sees the test's own connections. */
static void speed_rtt_conn(void *ctx, enum speedtest_dir dir, const char *local_ip,
			   int local_port, const char *remote_ip, int remote_port)
{
	tcpsock_watch_add(((struct ispmon *)ctx)->tcp, dir, local_ip, local_port, remote_ip,
			  remote_port);
}

static void speed_rtt_begin(void *ctx, enum speedtest_dir dir)
{
	tcpsock_watch_begin(((struct ispmon *)ctx)->tcp, dir);
}

static double speed_rtt_end(void *ctx, enum speedtest_dir dir, int64_t *retransmits)
{
	uint64_t n;
	double rtt;

	if (tcpsock_watch_end(((struct ispmon *)ctx)->tcp, dir, dir == SPEEDTEST_DOWNLOAD, &rtt, &n))
		*retransmits = (int64_t)n;
	return rtt;
}

static void speed_setup(struct ispmon *m)
{
	struct speedtest_hooks hooks = {.ctx = m, .line_busy = line_busy};
	int err;

	if (!m->cfg.speed.interval_s)
		return;
	if (m->tcp) {
		hooks.rtt_conn = speed_rtt_conn;
		hooks.rtt_begin = speed_rtt_begin;
		hooks.rtt_end = speed_rtt_end;
		hooks.rtt_source = "kernel";
	}
	err = speedtest_new(&m->cfg.speed, &hooks, &m->speed);
	if (!err)
		err = speedtest_start(m->speed);
	if (err) {
		log_warn("cannot start the speed tests", "err=\"%s\"", strerror(-err));
		speedtest_free(m->speed);
		m->speed = NULL;
		return;
	}
	log_info("speed tests", "servers=%u interval_s=%.0f budget_bytes=%llu",
		 m->cfg.speed.n_servers, m->cfg.speed.interval_s,
		 (unsigned long long)m->cfg.speed.budget_bytes);
	m->report.speed = m->speed;
}

static int setup_fds(struct ispmon *m)
{
	struct itimerspec its = {0};
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	m->sig_fd = signalfd(-1, &set, SFD_CLOEXEC);
	m->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	m->fast_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	if (m->sig_fd < 0 || m->timer_fd < 0 || m->fast_fd < 0)
		return -errno;
	{
		struct itimerspec fast = {.it_interval = {.tv_nsec = FAST_SAMPLE_MS * 1000000L},
					  .it_value = {.tv_nsec = FAST_SAMPLE_MS * 1000000L}};

		if (timerfd_settime(m->fast_fd, 0, &fast, NULL))
			return -errno;
	}
	its.it_interval.tv_sec = (time_t)(m->cfg.interval_ms / 1000);
	its.it_interval.tv_nsec = (long)(m->cfg.interval_ms % 1000) * 1000000L;
	its.it_value = its.it_interval;
	if (timerfd_settime(m->timer_fd, 0, &its, NULL))
		return -errno;
	return 0;
}

/*
 * An interface that went away and came back (a PPPoE redial, a bridge
 * rebuilt) has a new ifindex: attach the same programs again by name, so
 * the maps, and every count in them, carry on.
 */
static void check_links(struct ispmon *m)
{
	for (unsigned i = 0; i < m->n_hooks; i++) {
		struct hook *h = &m->hooks[i];
		int idx = (int)if_nametoindex(h->nif.name);
		struct netif nif;

		if (idx && idx == h->nif.ifindex)
			continue;
		if (!idx) {
			if (!h->gone)
				log_warn("interface gone, waiting for it to come back", "iface=%s",
					 h->nif.name);
			h->gone = true;
			continue;
		}
		if (netif_lookup(h->nif.name, &nif))
			continue;
		if (nif.l3 != h->nif.l3)
			log_warn("interface came back with another link type: restart ispmon to "
				 "parse it right", "iface=%s", nif.name);
		tc_detach(&h->tc); /* the old ifindex: nothing left to undo, mostly */
		h->nif.ifindex = nif.ifindex;
		if (attach_hook(h)) {
			h->nif.ifindex = 0; /* try again on the next check */
			continue;
		}
		h->gone = false;
		if (i == 0)
			m->report.ifindex = nif.ifindex;
	}
}

/* Device names from the leases files given, or found at the usual places.
 * A file that cannot be read leaves MAC labels, not an error. */
static void load_leases(struct ispmon *m)
{
	char found[CONFIG_MAX_LEASES][256];
	unsigned n = m->cfg.n_leases ? m->cfg.n_leases
				     : devices_find_leases_in("", found, CONFIG_MAX_LEASES);
	const char *added[CONFIG_MAX_LEASES];
	unsigned n_added = 0;

	/* All registered first, then read once, together. */
	for (unsigned i = 0; i < n; i++) {
		const char *path = m->cfg.n_leases ? m->cfg.leases[i] : found[i];
		int err = devices_add_leases(m->devices, path);

		if (err)
			log_warn("cannot use the leases file: its devices keep their MAC labels",
				 "path=%s err=\"%s\"", path, strerror(-err));
		else
			added[n_added++] = path;
	}
	devices_load_leases(m->devices, NULL);
	for (unsigned i = 0; i < n_added; i++) {
		int err = devices_leases_error(m->devices, i);

		if (err)
			log_warn("cannot read the leases file: its devices keep their MAC labels",
				 "path=%s err=\"%s\"", added[i], strerror(-err));
		else
			log_info("device names", "leases=%s", added[i]);
	}
}

/* Keep what re-attaching, reading the maps and detaching still need. */
static int drop_privileges(struct ispmon *m)
{
	uint64_t keep = privs_needed(bpf_map__fd(m->hooks[0].skel->maps.dir_stats));
	char names[128];
	int err = privs_drop(keep);

	if (err) {
		log_error("cannot drop capabilities", "err=\"%s\"", strerror(-err));
		return err;
	}
	log_info("capabilities dropped", "kept=%s", privs_names(keep, names, sizeof(names)));
	return 0;
}

static int run_loop(struct ispmon *m)
{
	struct pollfd pfd[3] = {{.fd = m->sig_fd, .events = POLLIN},
				{.fd = m->timer_fd, .events = POLLIN},
				{.fd = m->fast_fd, .events = POLLIN}};
	double last = now_s(CLOCK_MONOTONIC), last_link_check = last;

	collect(m, &last);
	for (;;) {
		double t;

		/* Wake at least twice a second to look after the interfaces. */
		if (poll(pfd, 3, LINK_CHECK_MS) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		t = now_s(CLOCK_MONOTONIC);
		if (t - last_link_check >= LINK_CHECK_MS / 1000.0) {
			check_links(m);
			last_link_check = t;
		}
		if (pfd[0].revents) {
			struct signalfd_siginfo si;

			if (read(m->sig_fd, &si, sizeof(si)) == sizeof(si))
				log_info("stopping", "signal=%s", strsignal((int)si.ssi_signo));
			return 0;
		}
		if (pfd[2].revents) {
			struct ispmon_dir_stats now[ISPMON_DIR_MAX];
			uint64_t ticks;

			/* Two per-CPU lookups: cheap enough ten times a second. */
			if (read(m->fast_fd, &ticks, sizeof(ticks)) == sizeof(ticks) &&
			    !linestats_read(&m->lines, now))
				capacity_sample(m->capacity, now_s(CLOCK_MONOTONIC), now);
		}
		if (pfd[1].revents) {
			uint64_t ticks;

			if (read(m->timer_fd, &ticks, sizeof(ticks)) == sizeof(ticks))
				collect(m, &last);
		}
	}
}

static void teardown(struct ispmon *m)
{
	/* The speed test's hooks read this struct: stop it first. */
	speedtest_free(m->speed);
	m->speed = NULL;
	m->report.speed = NULL;
	ping_stop(m->ping);
	m->ping = NULL;
	m->report.ping = NULL;
	tcpsock_free(m->tcp);
	m->tcp = NULL;
	m->report.tcp = NULL;
	for (unsigned i = 0; i < m->n_hooks; i++)
		tc_detach(&m->hooks[i].tc);
	http_server_stop(m->http);
	m->http = NULL;
	webconfig_free(m->web);
	m->web = NULL;
	linestats_free(&m->lines);
	rtt_reader_free(m->rtt);
	m->rtt = NULL;
	devices_free(m->devices);
	m->devices = NULL;
	for (unsigned i = 0; i < m->n_hooks; i++) {
		flow_bpf__destroy(m->hooks[i].skel);
		m->hooks[i].skel = NULL;
	}
	if (m->sig_fd >= 0)
		close(m->sig_fd);
	if (m->timer_fd >= 0)
		close(m->timer_fd);
	if (m->fast_fd >= 0)
		close(m->fast_fd);
	capacity_free(m->capacity);
	m->capacity = NULL;
	status_free(m->status);
	m->status = NULL;
	metrics_store_destroy(&m->store);
}

int main(int argc, char **argv)
{
	static struct ispmon m = {.sig_fd = -1, .timer_fd = -1, .fast_fd = -1,
				  .line_lock = PTHREAD_MUTEX_INITIALIZER};
	char err_msg[256];
	sigset_t set;
	int err;

	err = config_parse(argc, argv, &m.cfg, err_msg, sizeof(err_msg));
	if (err == CONFIG_EXIT_OK)
		return 0;
	if (err) {
		log_error(err_msg, NULL);
		return EXIT_USAGE;
	}
	log_set_level(m.cfg.log_level);
	libbpf_set_print(libbpf_log);

	/* Block the stop signals in every thread (libmicrohttpd's included)
	 * before any is started; the main loop takes them from a signalfd.
	 * A shell starts background jobs with SIGINT ignored: undo that. */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (metrics_store_init(&m.store))
		return 1;
	err = resolve_wan(&m);
	if (!err)
		err = resolve_lan(&m);
	if (!err)
		err = check_btf(&m.cfg);
	if (!err && m.cfg.web_config) {
		err = webconfig_load(m.cfg.web_config, &m.web, err_msg, sizeof(err_msg));
		if (err)
			log_error(err_msg, NULL);
		else
			log_info("web config", "path=%s tls=%s basic_auth_users=%u", m.cfg.web_config,
				 m.web->tls ? "on" : "off", m.web->n_users);
	}
	if (!err) {
		err = http_server_start(&m.cfg.listen, &m.store, m.web, &m.http);
		if (err)
			log_error("cannot listen", "addr=%s err=\"%s\"", m.cfg.listen.text,
				  strerror(-err));
	}
	for (unsigned i = 0; !err && i < m.n_hooks; i++)
		err = load_hook(&m, &m.hooks[i]);
	if (!err)
		err = linestats_init(&m.lines, bpf_map__fd(m.hooks[0].skel->maps.dir_stats));
	if (!err && m.n_hooks > 1) {
		err = devices_new(m.cfg.max_devices, &m.devices);
		if (!err)
			load_leases(&m);
	}
	if (!err)
		err = rtt_setup(&m);
	if (!err)
		err = capacity_new(&m.capacity);
	if (!err && !(err = status_new(&m.status)))
		http_server_set_provider(m.http, status_http_provider(m.status));
	if (!err)
		err = setup_fds(&m);
	if (!err)
		err = tcpsock_start(m.cfg.tcp_hooks, m.cfg.btf_path, &m.tcp);
	for (unsigned i = 0; !err && i < m.n_hooks; i++)
		err = attach_hook(&m.hooks[i]);
	if (err) {
		teardown(&m);
		return 1;
	}

	m.report = (struct report){
		.version = ISPMON_VERSION,
		.iface = m.hooks[0].nif.name,
		.ifindex = m.hooks[0].nif.ifindex,
		.l3_iface = m.hooks[0].nif.l3,
		.attach_mode = "tc",
		.start_time = now_s(CLOCK_REALTIME),
		.interval_s = (double)m.cfg.interval_ms / 1000.0,
	};
	for (unsigned i = 1; i < m.n_hooks; i++)
		m.report.lan_ifaces[m.report.n_lan++] = m.hooks[i].nif.name;
	m.report.devices = m.devices;
	m.report.tcp = m.tcp;
	m.report.capacity = m.capacity;
	m.report.plan_Bps[0] = m.cfg.plan_Bps[0];
	m.report.plan_Bps[1] = m.cfg.plan_Bps[1];
	map_memory(&m);
	log_info("serving metrics", "addr=%s interval_ms=%llu version=%s", m.cfg.listen.text,
		 (unsigned long long)m.cfg.interval_ms, ISPMON_VERSION);
	if (m.cfg.max_devices && m.n_hooks == 1)
		log_info("no LAN interface found: no per-device figures (pass --lan-iface IF)", NULL);
	ping_setup(&m);
	speed_setup(&m);
	/* Last: everything that needed privileges is done by now. */
	err = drop_privileges(&m);
	if (err) {
		teardown(&m);
		return 1;
	}

	err = run_loop(&m);
	if (!err) {
		double last = 0;

		/* One last read so the final log line has exact totals. */
		collect(&m, &last);
	}
	log_info("stopped", "download_bytes=%llu upload_bytes=%llu",
		 (unsigned long long)m.report.totals[ISPMON_DIR_DOWNLOAD].bytes,
		 (unsigned long long)m.report.totals[ISPMON_DIR_UPLOAD].bytes);
	teardown(&m);
	return err ? 1 : 0;
}
