#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_LISTEN ":8000"
#define DEFAULT_INTERVAL_MS 1000
#define MIN_INTERVAL_MS 50
#define MAX_INTERVAL_MS (3600 * 1000)
#define DEFAULT_MAX_DEVICES 32
#define DEFAULT_SPEED_URL "https://speed.cloudflare.com/__down?bytes={bytes}"
#define DEFAULT_SPEED_UPLOAD_URL "https://speed.cloudflare.com/__up"
#define MAX_MAX_DEVICES 1000
#define DEFAULT_MAX_FLOWS 16384
#define MIN_MAX_FLOWS 1024
#define MAX_MAX_FLOWS (1024 * 1024)
#define DEFAULT_PING_INTERVAL_MS 2000
#define DEFAULT_PING_TIMEOUT_MS 2000

static const char usage[] =
	"Usage: ispmon [OPTIONS]\n"
	"Passive internet-line monitor: eBPF on the WAN interface, Prometheus metrics.\n"
	"\n"
	"  -i, --iface IF         WAN interface to watch (default: the default-route one)\n"
	"      --lan-iface IF     LAN interface for per-device figures, repeatable (default: the\n"
	"                         interfaces with private IPv4 or ULA IPv6 addresses)\n"
	"      --leases FILE      DHCP leases naming the devices, dnsmasq's or odhcpd's format;\n"
	"                         up to 2 (default: dnsmasq's /tmp/dhcp.leases or elsewhere,\n"
	"                         and odhcpd's /tmp/hosts/odhcpd, when present)\n"
	"      --max-devices N    devices with their own labels, the rest are \"other\"\n"
	"                         (default 32; 0 turns per-device metrics and LAN hooks off)\n"
	"      --max-flows N      connections tracked at once for RTT, the oldest evicted past\n"
	"                         that (default 16384, 1024..1048576; ~180 bytes of kernel\n"
	"                         memory each, flow and pending tables)\n"
	"  -l, --listen ADDR:PORT address for /metrics (default " DEFAULT_LISTEN ", all addresses)\n"
	"      --web-config FILE  TLS and basic auth for the web endpoint (the Prometheus\n"
	"                         exporter toolkit's web-config.yml format, see README)\n"
	"  -n, --interval DUR     how often the kernel maps are read (default 1s; e.g. 500ms, 2s)\n"
	"      --log-level L      debug, info, warn or error (default info)\n"
	"      --btf FILE         kernel BTF to use instead of /sys/kernel/btf/vmlinux\n"
	"      --tcp-hooks MODE   how to hook the router's own TCP sockets: auto (default:\n"
	"                         fentry, else tracepoints, else kprobes), fentry, tracepoint,\n"
	"                         kprobe or off\n"
	"      --ping-target HOST ping this host name or address, repeatable (up to 8; default:\n"
	"                         the default gateway, 1.1.1.1 and 9.9.9.9)\n"
	"      --ping-interval DUR\n"
	"                         time between pings to each target (default 2s, 100ms..1h;\n"
	"                         0 turns pinging off)\n"
	"      --ping-timeout DUR how long a ping waits for its answer (default 2s, 10ms..30s)\n"
	"      --no-ping          no ping probes\n"
	"      --plan-download RATE, --plan-upload RATE\n"
	"                         the rates the household pays for, as the ISP quotes them\n"
	"                         (e.g. 100M = 100 Mbit/s), exported for alert rules\n"
	"      --speed-url URL    speed test download URL, repeatable (up to 8; \"{bytes}\" is\n"
	"                         replaced by the size asked for; default: a public server)\n"
	"      --speed-upload-url URL\n"
	"                         upload URL (POST) of the --speed-url before it\n"
	"      --speed-interval DUR  time between speed tests (default 6h, +-10% jitter;\n"
	"                         0 turns them off)\n"
	"      --no-speedtest     no speed tests\n"
	"      --speed-streams N  parallel connections per direction (default 4, 1..16)\n"
	"      --speed-max-time DUR  cap per direction (default 10s)\n"
	"      --speed-grace DUR  start of the load always excluded, slow start (default 1s)\n"
	"      --speed-max-bytes BYTES  payload cap per direction (default 200M)\n"
	"      --speed-budget BYTES  data per day for speed tests (default 1G, 0: unlimited)\n"
	"      --speed-busy-share F  postpone while the household uses more than this share\n"
	"                         of the line (default 0.3)\n"
	"      --speed-state FILE keep the day's budget use across restarts\n"
	"      --speed-first-delay DUR  first speed test after start (default 60s)\n"
	"  -h, --help             this text\n"
	"  -V, --version          print the version\n";

int parse_duration_ms(const char *s, uint64_t *out)
{
	char *end;
	double v, mult;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || !isfinite(v) || v < 0)
		return -EINVAL;
	if (!*end || !strcmp(end, "s"))
		mult = 1000;
	else if (!strcmp(end, "ms"))
		mult = 1;
	else if (!strcmp(end, "m"))
		mult = 60 * 1000;
	else if (!strcmp(end, "h"))
		mult = 3600 * 1000;
	else
		return -EINVAL;
	v *= mult;
	if (v > 1e12)
		return -ERANGE;
	*out = (uint64_t)(v + 0.5);
	return 0;
}

int parse_bitrate(const char *s, double *out)
{
	char *end;
	double v, mult = 1;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || !isfinite(v) || v <= 0)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': mult = 1e3; end++; break;
	case 'M': mult = 1e6; end++; break;
	case 'G': mult = 1e9; end++; break;
	default: break;
	}
	if (*end && strcmp(end, "bit") && strcmp(end, "bps") && strcmp(end, "bit/s") &&
	    strcmp(end, "b/s"))
		return -EINVAL;
	v *= mult;
	if (v > 1e12)
		return -ERANGE;
	*out = v;
	return 0;
}

static int parse_port(const char *s, uint16_t *port)
{
	char *end;
	unsigned long v;

	if (!*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v == 0 || v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

int parse_listen(const char *s, struct listen_addr *out)
{
	char host[64];
	const char *colon;
	size_t hlen;
	uint16_t port;
	int bracketed = s && s[0] == '[';

	memset(out, 0, sizeof(*out));
	if (!s || strlen(s) >= sizeof(out->text))
		return -EINVAL;
	if (bracketed) {
		const char *rb = strchr(s, ']');

		if (!rb || rb[1] != ':')
			return -EINVAL;
		hlen = (size_t)(rb - s - 1);
		colon = rb + 1;
		s++;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		hlen = (size_t)(colon - s);
	}
	if (hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hlen);
	host[hlen] = 0;
	/* An IPv6 address must be bracketed, or "::1:80" would be ambiguous. */
	if (!bracketed && strchr(host, ':'))
		return -EINVAL;
	if (parse_port(colon + 1, &port))
		return -EINVAL;

	if (!hlen || !strcmp(host, "*")) {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&out->ss;

		/* Dual-stack [::]; the server falls back to 0.0.0.0 when the
		 * host has IPv6 disabled. */
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		a6->sin6_addr = in6addr_any;
		out->len = sizeof(*a6);
		out->any = 1;
		snprintf(out->text, sizeof(out->text), ":%u", port);
		return 0;
	}
	if (!strcmp(host, "localhost"))
		strcpy(host, "127.0.0.1");
	{
		struct sockaddr_in *a4 = (struct sockaddr_in *)&out->ss;
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&out->ss;

		if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
			a4->sin_family = AF_INET;
			a4->sin_port = htons(port);
			out->len = sizeof(*a4);
			snprintf(out->text, sizeof(out->text), "%s:%u", host, port);
			return 0;
		}
		if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
			a6->sin6_family = AF_INET6;
			a6->sin6_port = htons(port);
			out->len = sizeof(*a6);
			snprintf(out->text, sizeof(out->text), "[%s]:%u", host, port);
			return 0;
		}
	}
	return -EINVAL;
}

enum {
	OPT_LOG_LEVEL = 0x100,
	OPT_BTF,
	OPT_LAN_IFACE,
	OPT_MAX_DEVICES,
	OPT_PING_TARGET,
	OPT_PING_INTERVAL,
	OPT_PING_TIMEOUT,
	OPT_NO_PING,
	OPT_SPEED_URL, OPT_SPEED_UPLOAD_URL, OPT_SPEED_INTERVAL, OPT_NO_SPEEDTEST,
	OPT_SPEED_STREAMS, OPT_SPEED_MAX_TIME, OPT_SPEED_GRACE, OPT_SPEED_MAX_BYTES,
	OPT_SPEED_BUDGET, OPT_SPEED_BUSY, OPT_SPEED_STATE, OPT_SPEED_FIRST,
	OPT_PLAN_DOWN, OPT_PLAN_UP, OPT_LEASES, OPT_TCP_HOOKS,
	OPT_MAX_FLOWS, OPT_WEB_CONFIG,
};

static const struct option long_opts[] = {
	{"iface", required_argument, NULL, 'i'},
	{"listen", required_argument, NULL, 'l'},
	{"interval", required_argument, NULL, 'n'},
	{"log-level", required_argument, NULL, OPT_LOG_LEVEL},
	{"btf", required_argument, NULL, OPT_BTF},
	{"tcp-hooks", required_argument, NULL, OPT_TCP_HOOKS},
	{"lan-iface", required_argument, NULL, OPT_LAN_IFACE},
	{"max-devices", required_argument, NULL, OPT_MAX_DEVICES},
	{"leases", required_argument, NULL, OPT_LEASES},
	{"ping-target", required_argument, NULL, OPT_PING_TARGET},
	{"ping-interval", required_argument, NULL, OPT_PING_INTERVAL},
	{"ping-timeout", required_argument, NULL, OPT_PING_TIMEOUT},
	{"no-ping", no_argument, NULL, OPT_NO_PING},
	{"speed-url", required_argument, NULL, OPT_SPEED_URL},
	{"plan-download", required_argument, NULL, OPT_PLAN_DOWN},
	{"plan-upload", required_argument, NULL, OPT_PLAN_UP},
	{"speed-upload-url", required_argument, NULL, OPT_SPEED_UPLOAD_URL},
	{"speed-interval", required_argument, NULL, OPT_SPEED_INTERVAL},
	{"no-speedtest", no_argument, NULL, OPT_NO_SPEEDTEST},
	{"speed-streams", required_argument, NULL, OPT_SPEED_STREAMS},
	{"speed-max-time", required_argument, NULL, OPT_SPEED_MAX_TIME},
	{"speed-grace", required_argument, NULL, OPT_SPEED_GRACE},
	{"speed-max-bytes", required_argument, NULL, OPT_SPEED_MAX_BYTES},
	{"speed-budget", required_argument, NULL, OPT_SPEED_BUDGET},
	{"speed-busy-share", required_argument, NULL, OPT_SPEED_BUSY},
	{"speed-state", required_argument, NULL, OPT_SPEED_STATE},
	{"speed-first-delay", required_argument, NULL, OPT_SPEED_FIRST},
	{"max-flows", required_argument, NULL, OPT_MAX_FLOWS},
	{"web-config", required_argument, NULL, OPT_WEB_CONFIG},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

static int valid_ifname(const char *s)
{
	return *s && strlen(s) < IF_NAMESIZE && !strchr(s, '/') && !strchr(s, ' ');
}

int config_parse(int argc, char **argv, struct config *cfg, char *err,
		 size_t errlen)
{
	bool no_ping = false, no_speed = false;
	struct speedtest_config *sp = &cfg->speed;
	uint64_t ms;
	int c;

	memset(cfg, 0, sizeof(*cfg));
	cfg->interval_ms = DEFAULT_INTERVAL_MS;
	cfg->log_level = LOG_INFO;
	cfg->max_devices = DEFAULT_MAX_DEVICES;
	cfg->max_flows = DEFAULT_MAX_FLOWS;
	cfg->ping_interval_ms = DEFAULT_PING_INTERVAL_MS;
	cfg->ping_timeout_ms = DEFAULT_PING_TIMEOUT_MS;
	speedtest_config_defaults(sp);
	parse_listen(DEFAULT_LISTEN, &cfg->listen);

	optind = 0; /* 0, not 1: also resets glibc's state from an earlier parse */
	opterr = 0; /* we report errors ourselves, in one line */
	while ((c = getopt_long(argc, argv, ":i:l:n:hV", long_opts, NULL)) != -1) {
		switch (c) {
		case 'i':
			if (!valid_ifname(optarg)) {
				snprintf(err, errlen, "invalid interface name '%s'", optarg);
				return -EINVAL;
			}
			strcpy(cfg->iface, optarg);
			break;
		case 'l':
			if (parse_listen(optarg, &cfg->listen)) {
				snprintf(err, errlen,
					 "invalid listen address '%s' (want ADDR:PORT, e.g. :8000 or [::1]:8000)",
					 optarg);
				return -EINVAL;
			}
			break;
		case 'n':
			if (parse_duration_ms(optarg, &cfg->interval_ms) ||
			    cfg->interval_ms < MIN_INTERVAL_MS ||
			    cfg->interval_ms > MAX_INTERVAL_MS) {
				snprintf(err, errlen,
					 "invalid interval '%s' (want a duration from 50ms to 1h, e.g. 1s)",
					 optarg);
				return -EINVAL;
			}
			break;
		case OPT_LOG_LEVEL:
			if (log_parse_level(optarg, &cfg->log_level)) {
				snprintf(err, errlen,
					 "invalid log level '%s' (want debug, info, warn or error)",
					 optarg);
				return -EINVAL;
			}
			break;
		case OPT_BTF:
			cfg->btf_path = optarg;
			break;
		case OPT_TCP_HOOKS:
			if (tcpsock_parse_mode(optarg, &cfg->tcp_hooks)) {
				snprintf(err, errlen,
					 "invalid --tcp-hooks '%.64s' (want auto, fentry, tracepoint, kprobe or off)",
					 optarg);
				return -EINVAL;
			}
			break;
		case OPT_LAN_IFACE:
			if (!valid_ifname(optarg)) {
				snprintf(err, errlen, "invalid interface name '%s'", optarg);
				return -EINVAL;
			}
			if (cfg->n_lan == CONFIG_MAX_LAN) {
				snprintf(err, errlen, "at most %d --lan-iface", CONFIG_MAX_LAN);
				return -EINVAL;
			}
			strcpy(cfg->lan_iface[cfg->n_lan++], optarg);
			break;
		case OPT_MAX_DEVICES: {
			char *end;
			unsigned long v;

			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || *optarg == '-' || v > MAX_MAX_DEVICES) {
				snprintf(err, errlen, "invalid --max-devices '%s' (want 0 to %d)",
					 optarg, MAX_MAX_DEVICES);
				return -EINVAL;
			}
			cfg->max_devices = (unsigned)v;
			break;
		}
		case OPT_MAX_FLOWS: {
			char *end;
			unsigned long v;

			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || *optarg == '-' || v < MIN_MAX_FLOWS ||
			    v > MAX_MAX_FLOWS) {
				snprintf(err, errlen, "invalid --max-flows '%s' (want %d to %d)",
					 optarg, MIN_MAX_FLOWS, MAX_MAX_FLOWS);
				return -EINVAL;
			}
			cfg->max_flows = (unsigned)v;
			break;
		}
		case OPT_WEB_CONFIG:
			if (!*optarg) {
				snprintf(err, errlen, "--web-config needs a file name");
				return -EINVAL;
			}
			cfg->web_config = optarg;
			break;
		case OPT_PING_TARGET:
			if (!ping_valid_host(optarg)) {
				snprintf(err, errlen,
					 "invalid --ping-target '%.64s' (want a host name or address)",
					 optarg);
				return -EINVAL;
			}
			for (unsigned i = 0; i < cfg->n_ping; i++)
				if (!strcmp(cfg->ping_targets[i], optarg)) {
					snprintf(err, errlen, "duplicate --ping-target '%s'", optarg);
					return -EINVAL;
				}
			if (cfg->n_ping == CONFIG_MAX_PING) {
				snprintf(err, errlen, "at most %d --ping-target", CONFIG_MAX_PING);
				return -EINVAL;
			}
			cfg->ping_targets[cfg->n_ping++] = optarg;
			break;
		case OPT_PING_INTERVAL:
			if (parse_duration_ms(optarg, &cfg->ping_interval_ms) ||
			    (cfg->ping_interval_ms &&
			     (cfg->ping_interval_ms < PING_MIN_INTERVAL_MS ||
			      cfg->ping_interval_ms > PING_MAX_INTERVAL_MS))) {
				snprintf(err, errlen,
					 "invalid --ping-interval '%s' (want 0 or a duration from 100ms to 1h)",
					 optarg);
				return -EINVAL;
			}
			break;
		case OPT_PING_TIMEOUT:
			if (parse_duration_ms(optarg, &cfg->ping_timeout_ms) ||
			    cfg->ping_timeout_ms < PING_MIN_TIMEOUT_MS ||
			    cfg->ping_timeout_ms > PING_MAX_TIMEOUT_MS) {
				snprintf(err, errlen,
					 "invalid --ping-timeout '%s' (want a duration from 10ms to 30s)",
					 optarg);
				return -EINVAL;
			}
			break;
		case OPT_NO_PING:
			no_ping = true;
			break;
		case OPT_SPEED_URL:
			if (sp->n_servers == SPEEDTEST_MAX_SERVERS) {
				snprintf(err, errlen, "at most %d --speed-url", SPEEDTEST_MAX_SERVERS);
				return -EINVAL;
			}
			sp->urls[sp->n_servers++] = optarg;
			break;
		case OPT_SPEED_UPLOAD_URL:
			if (!sp->n_servers) {
				snprintf(err, errlen, "--speed-upload-url must follow the --speed-url it belongs to");
				return -EINVAL;
			}
			sp->upload_urls[sp->n_servers - 1] = optarg;
			break;
		case OPT_SPEED_INTERVAL:
			if (parse_duration_ms(optarg, &ms) || ms > 7ULL * 24 * 3600 * 1000 ||
			    (ms && ms < 60 * 1000)) {
				snprintf(err, errlen,
					 "invalid --speed-interval '%s' (want 0 or a duration from 1m to 7d, e.g. 6h)",
					 optarg);
				return -EINVAL;
			}
			sp->interval_s = (double)ms / 1000.0;
			sp->jitter_s = sp->interval_s / 10;
			break;
		case OPT_NO_SPEEDTEST:
			no_speed = true;
			break;
		case OPT_SPEED_STREAMS: {
			char *end;
			unsigned long v;

			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || *optarg == '-' || !v ||
			    v > SPEEDTEST_MAX_STREAMS) {
				snprintf(err, errlen, "invalid --speed-streams '%s' (want 1 to %d)",
					 optarg, SPEEDTEST_MAX_STREAMS);
				return -EINVAL;
			}
			sp->streams = (unsigned)v;
			break;
		}
		case OPT_SPEED_MAX_TIME:
		case OPT_SPEED_GRACE:
			if (parse_duration_ms(optarg, &ms)) {
				snprintf(err, errlen, "invalid %s '%s' (want a duration, e.g. 10s)",
					 c == OPT_SPEED_GRACE ? "--speed-grace" : "--speed-max-time",
					 optarg);
				return -EINVAL;
			}
			if (c == OPT_SPEED_GRACE)
				sp->grace_s = (double)ms / 1000.0;
			else
				sp->max_time_s = (double)ms / 1000.0;
			break;
		case OPT_SPEED_MAX_BYTES:
		case OPT_SPEED_BUDGET:
			if (speedtest_parse_bytes(optarg, c == OPT_SPEED_BUDGET ? &sp->budget_bytes
										: &sp->max_bytes)) {
				snprintf(err, errlen, "invalid %s '%s' (want bytes, e.g. 200M or 1GiB)",
					 c == OPT_SPEED_BUDGET ? "--speed-budget" : "--speed-max-bytes",
					 optarg);
				return -EINVAL;
			}
			break;
		case OPT_SPEED_BUSY: {
			char *end;
			double v;

			errno = 0;
			v = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(v > 0 && v <= 1)) {
				snprintf(err, errlen,
					 "invalid --speed-busy-share '%s' (want a share above 0, at most 1)",
					 optarg);
				return -EINVAL;
			}
			sp->busy_share = v;
			break;
		}
		case OPT_LEASES:
			if (cfg->n_leases == CONFIG_MAX_LEASES) {
				snprintf(err, errlen, "at most %d --leases", CONFIG_MAX_LEASES);
				return -EINVAL;
			}
			cfg->leases[cfg->n_leases++] = optarg;
			break;
		case OPT_PLAN_DOWN:
		case OPT_PLAN_UP: {
			double bits;

			if (parse_bitrate(optarg, &bits)) {
				snprintf(err, errlen, "invalid %s '%s' (want a rate such as 100M or 20Mbit)",
					 c == OPT_PLAN_DOWN ? "--plan-download" : "--plan-upload", optarg);
				return -EINVAL;
			}
			cfg->plan_Bps[c == OPT_PLAN_DOWN ? 0 : 1] = bits / 8;
			break;
		}
		case OPT_SPEED_FIRST:
			if (parse_duration_ms(optarg, &ms) || ms > 24ULL * 3600 * 1000) {
				snprintf(err, errlen,
					 "invalid --speed-first-delay '%s' (want a duration up to 24h)",
					 optarg);
				return -EINVAL;
			}
			sp->first_delay_s = (double)ms / 1000.0;
			break;
		case OPT_SPEED_STATE:
			sp->state_file = optarg;
			break;
		case 'h':
			fputs(usage, stdout);
			return CONFIG_EXIT_OK;
		case 'V':
			printf("ispmon %s\n", ISPMON_VERSION);
			return CONFIG_EXIT_OK;
		case ':':
			snprintf(err, errlen, "option '%s' needs a value", argv[optind - 1]);
			return -EINVAL;
		default:
			snprintf(err, errlen, "unknown option '%s' (see --help)",
				 argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument '%s' (see --help)", argv[optind]);
		return -EINVAL;
	}
	if (no_ping)
		cfg->ping_interval_ms = 0;
	if (no_speed)
		sp->interval_s = 0;
	if (!sp->n_servers) {
		/* A public default, only used when no URL was given. */
		sp->urls[0] = DEFAULT_SPEED_URL;
		sp->upload_urls[0] = DEFAULT_SPEED_UPLOAD_URL;
		sp->n_servers = 1;
	}
	if (speedtest_config_check(sp, err, errlen))
		return -EINVAL;
	return CONFIG_RUN;
}
