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
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "flow.skel.h"
#include "http.h"
#include "linestats.h"
#include "log.h"
#include "metrics.h"
#include "netif.h"
#include "report.h"
#include "tc.h"

#define EXIT_USAGE 2
#define KERNEL_BTF "/sys/kernel/btf/vmlinux"

struct ispmon {
	struct config cfg;
	struct netif wan;
	struct metrics_store store;
	struct http_server *http;
	struct flow_bpf *flow;
	struct tc_attachment tc;
	struct linestats lines;
	struct report report;
	int sig_fd, timer_fd;
};

static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char msg[1024], q[1100];

	/* libbpf's warnings come in many lines (verifier logs); our own error
	 * line says what failed, the details are for --log-level debug. */
	if (log_get_level() > LOG_DEBUG)
		return 0;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_debug("libbpf", "level=%d detail=%s", (int)level, log_quote(q, sizeof(q), msg));
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
	err = netif_lookup(name, &m->wan);
	if (err) {
		log_error("interface not found", "iface=%s", name);
		return err;
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
		char q[300];

		log_error(cfg->btf_path ? "cannot read the BTF file given with --btf"
					: "kernel BTF not found: needs CONFIG_DEBUG_INFO_BTF=y, or pass --btf FILE",
			  "path=%s err=%s", log_quote(q, sizeof(q), path), strerror(-err));
		return err;
	}
	btf__free(btf);
	return 0;
}

static int load_bpf(struct ispmon *m)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .btf_custom_path = m->cfg.btf_path);
	int err;

	m->flow = flow_bpf__open_opts(&opts);
	if (!m->flow) {
		err = -errno;
		log_error("cannot open the BPF object", "err=\"%s\"", strerror(-err));
		return err;
	}
	m->flow->rodata->l3_dev = m->wan.l3;
	m->flow->rodata->ingress_dir = ISPMON_DIR_DOWNLOAD;
	err = flow_bpf__load(m->flow);
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

static int attach_bpf(struct ispmon *m)
{
	const char *stage = "";
	int err;

	err = tc_attach(m->wan.ifindex, bpf_program__fd(m->flow->progs.tc_ingress),
			bpf_program__fd(m->flow->progs.tc_egress), &m->tc, &stage);
	if (err) {
		log_error(err == -EPERM ? "permission denied attaching to the interface: run as root"
					: "cannot attach to the interface",
			  "iface=%s stage=\"%s\" err=\"%s\"", m->wan.name, stage, strerror(-err));
		return err;
	}
	log_info("attached", "iface=%s ifindex=%d link=%s mode=tc clsact=%s",
		 m->wan.name, m->wan.ifindex, m->wan.l3 ? "l3" : "ethernet",
		 m->tc.qdisc_created ? "created" : "existing");
	return 0;
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
	}
	mbuf_init(&b);
	report_render(&m->report, &b);
	if (b.err) {
		log_warn("cannot render metrics", "err=\"%s\"", strerror(-b.err));
		mbuf_free(&b);
		return;
	}
	metrics_store_publish(&m->store, &b);
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
	if (m->sig_fd < 0 || m->timer_fd < 0)
		return -errno;
	its.it_interval.tv_sec = (time_t)(m->cfg.interval_ms / 1000);
	its.it_interval.tv_nsec = (long)(m->cfg.interval_ms % 1000) * 1000000L;
	its.it_value = its.it_interval;
	if (timerfd_settime(m->timer_fd, 0, &its, NULL))
		return -errno;
	return 0;
}

static int run_loop(struct ispmon *m)
{
	struct pollfd pfd[2] = {{.fd = m->sig_fd, .events = POLLIN},
				{.fd = m->timer_fd, .events = POLLIN}};
	double last = now_s(CLOCK_MONOTONIC);

	collect(m, &last);
	for (;;) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (pfd[0].revents) {
			struct signalfd_siginfo si;

			if (read(m->sig_fd, &si, sizeof(si)) == sizeof(si))
				log_info("stopping", "signal=%s", strsignal((int)si.ssi_signo));
			return 0;
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
	tc_detach(&m->tc);
	http_server_stop(m->http);
	m->http = NULL;
	linestats_free(&m->lines);
	flow_bpf__destroy(m->flow);
	m->flow = NULL;
	if (m->sig_fd >= 0)
		close(m->sig_fd);
	if (m->timer_fd >= 0)
		close(m->timer_fd);
	metrics_store_destroy(&m->store);
}

int main(int argc, char **argv)
{
	static struct ispmon m = {.sig_fd = -1, .timer_fd = -1};
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
		err = check_btf(&m.cfg);
	if (!err) {
		err = http_server_start(&m.cfg.listen, &m.store, &m.http);
		if (err)
			log_error("cannot listen", "addr=%s err=\"%s\"", m.cfg.listen.text,
				  strerror(-err));
	}
	if (!err)
		err = load_bpf(&m);
	if (!err)
		err = linestats_init(&m.lines, bpf_map__fd(m.flow->maps.dir_stats));
	if (!err)
		err = setup_fds(&m);
	if (!err)
		err = attach_bpf(&m);
	if (err) {
		teardown(&m);
		return 1;
	}

	m.report = (struct report){
		.version = ISPMON_VERSION,
		.iface = m.wan.name,
		.ifindex = m.wan.ifindex,
		.l3_iface = m.wan.l3,
		.attach_mode = "tc",
		.start_time = now_s(CLOCK_REALTIME),
		.interval_s = (double)m.cfg.interval_ms / 1000.0,
	};
	log_info("serving metrics", "addr=%s interval_ms=%llu version=%s", m.cfg.listen.text,
		 (unsigned long long)m.cfg.interval_ms, ISPMON_VERSION);

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
