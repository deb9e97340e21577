/*
 * Unit tests of the userspace modules that need no kernel: flag parsing,
 * default-route discovery, logfmt quoting, Prometheus rendering. Built with
 * ASan/UBSan by `make unit`.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/stat.h>

#include "tap.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "netif.h"
#include "ping.h"
#include "report.h"
#include "rtt.h"
#include "devices.h"
#include "capacity.h"
#include "tcpsock.h"


static void test_duration(void)
{
	static const struct {
		const char *in;
		int ok;
		uint64_t ms;
	} cases[] = {
		{"1s", 1, 1000},   {"250ms", 1, 250}, {"2", 1, 2000},   {"1.5s", 1, 1500},
		{"2m", 1, 120000}, {"1h", 1, 3600000}, {"", 0, 0},       {"-1s", 0, 0},
		{"1x", 0, 0},      {"s", 0, 0},       {"nan", 0, 0},    {"inf", 0, 0},
		{"1e30s", 0, 0},   {"10 s", 0, 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t ms = 0;
		int err = parse_duration_ms(cases[i].in, &ms);

		check(cases[i].ok ? (!err && ms == cases[i].ms) : err != 0,
		      "duration '%s' -> %s", cases[i].in,
		      cases[i].ok ? "value" : "rejected");
	}
}

static void test_listen(void)
{
	struct listen_addr a;

	check(!parse_listen(":8000", &a) && a.any && a.ss.ss_family == AF_INET6 &&
		      ntohs(((struct sockaddr_in6 *)&a.ss)->sin6_port) == 8000,
	      "listen :8000 is dual-stack any");
	check(!parse_listen("127.0.0.1:9100", &a) && a.ss.ss_family == AF_INET &&
		      !a.any && !strcmp(a.text, "127.0.0.1:9100"),
	      "listen 127.0.0.1:9100");
	check(!parse_listen("[::1]:8000", &a) && a.ss.ss_family == AF_INET6 && !a.any &&
		      !strcmp(a.text, "[::1]:8000"),
	      "listen [::1]:8000");
	check(!parse_listen("localhost:8000", &a) && a.ss.ss_family == AF_INET,
	      "listen localhost:8000");
	check(!parse_listen("[2001:db8::1]:80", &a), "listen [2001:db8::1]:80");
	const char *bad[] = {"8000", ":0", ":65536", ":-1", ":80x", "1.2.3:80",
			     "[::1:80", "[::1]80", "host.example:80", ":", "", "::1:80"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		check(parse_listen(bad[i], &a) != 0, "listen '%s' rejected", bad[i]);
}

static int parse(char *err, size_t errlen, struct config *cfg, ...)
{
	char *argv[16] = {"ispmon"};
	int argc = 1;
	va_list ap;
	char *s;

	va_start(ap, cfg);
	while ((s = va_arg(ap, char *)) && argc < 15)
		argv[argc++] = s;
	va_end(ap);
	argv[argc] = NULL;
	return config_parse(argc, argv, cfg, err, errlen);
}

static void test_config(void)
{
	struct config cfg;
	char err[256];
	int r;

	r = parse(err, sizeof(err), &cfg, (char *)NULL);
	check(r == CONFIG_RUN && !cfg.iface[0] && cfg.interval_ms == 1000 &&
		      cfg.listen.any && cfg.log_level == LOG_INFO,
	      "defaults: default-route iface, :8000, 1s, info");
	r = parse(err, sizeof(err), &cfg, "--iface", "eth1", "-l", "127.0.0.1:9", "--interval",
		  "200ms", "--log-level", "debug", "--btf", "/x", (char *)NULL);
	check(r == CONFIG_RUN && !strcmp(cfg.iface, "eth1") && cfg.interval_ms == 200 &&
		      cfg.log_level == LOG_DEBUG && cfg.btf_path && !strcmp(cfg.btf_path, "/x"),
	      "all flags parsed");
	r = parse(err, sizeof(err), &cfg, "--iface=wan0", (char *)NULL);
	check(r == CONFIG_RUN && !strcmp(cfg.iface, "wan0"), "--iface=VALUE form");
	check(cfg.max_devices == 32 && cfg.n_lan == 0, "per-device defaults: 32 devices, LAN found");
	r = parse(err, sizeof(err), &cfg, "--lan-iface", "br-lan", "--lan-iface", "wlan0",
		  "--max-devices", "0", (char *)NULL);
	check(r == CONFIG_RUN && cfg.n_lan == 2 && !strcmp(cfg.lan_iface[1], "wlan0") &&
		      cfg.max_devices == 0,
	      "--lan-iface repeats, --max-devices 0 turns devices off");
	check(cfg.max_flows == 16384 && !cfg.web_config, "defaults: 16384 flows, no web config");
	r = parse(err, sizeof(err), &cfg, "--max-flows", "65536", "--web-config", "/etc/w.yml",
		  (char *)NULL);
	check(r == CONFIG_RUN && cfg.max_flows == 65536 && !strcmp(cfg.web_config, "/etc/w.yml"),
	      "--max-flows 65536 --web-config FILE");
	r = parse(err, sizeof(err), &cfg, "--max-flows", "1024", (char *)NULL);
	check(r == CONFIG_RUN && cfg.max_flows == 1024, "--max-flows 1024, the smallest");
	r = parse(err, sizeof(err), &cfg, "--max-flows", "1048576", (char *)NULL);
	check(r == CONFIG_RUN && cfg.max_flows == 1048576, "--max-flows 1048576, the largest");
	r = parse(err, sizeof(err), &cfg, "--lan-iface", "a", "--lan-iface", "b", "--lan-iface",
		  "c", "--lan-iface", "d", "--lan-iface", "e", (char *)NULL);
	check(r == -EINVAL && strstr(err, "at most 4"), "at most 4 LAN interfaces (%s)", err);

	static const struct {
		const char *a, *b, *want;
	} bad[] = {
		{"--bogus", NULL, "unknown option '--bogus'"},
		{"--iface", NULL, "needs a value"},
		{"--iface", "averyveryverylongname", "invalid interface name"},
		{"--iface", "a/b", "invalid interface name"},
		{"--listen", "nope", "invalid listen address 'nope'"},
		{"--interval", "10ms", "invalid interval '10ms'"},
		{"--interval", "2h", "invalid interval"},
		{"--log-level", "loud", "invalid log level 'loud'"},
		{"extra", NULL, "unexpected argument 'extra'"},
		{"--lan-iface", "a b", "invalid interface name"},
		{"--max-devices", "-1", "invalid --max-devices"},
		{"--max-devices", "1001", "invalid --max-devices"},
		{"--max-devices", "x", "invalid --max-devices"},
		{"--ping-target", "", "invalid --ping-target"},
		{"--ping-target", "bad host", "invalid --ping-target"},
		{"--ping-target", "a\"b", "invalid --ping-target"},
		{"--ping-target", "-x", "invalid --ping-target"},
		{"--ping-interval", "50ms", "invalid --ping-interval '50ms'"},
		{"--ping-interval", "2h", "invalid --ping-interval"},
		{"--ping-interval", "fast", "invalid --ping-interval"},
		{"--ping-timeout", "0", "invalid --ping-timeout '0'"},
		{"--ping-timeout", "31s", "invalid --ping-timeout"},
		{"--ping-target", NULL, "needs a value"},
		{"--max-flows", "1023", "invalid --max-flows '1023' (want 1024 to 1048576)"},
		{"--max-flows", "1048577", "invalid --max-flows"},
		{"--max-flows", "-5", "invalid --max-flows"},
		{"--max-flows", "64k", "invalid --max-flows"},
		{"--web-config", "", "--web-config needs a file name"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		r = parse(err, sizeof(err), &cfg, bad[i].a, bad[i].b, (char *)NULL);
		check(r == -EINVAL && strstr(err, bad[i].want) && !strchr(err, '\n'),
		      "bad flags %s %s -> one-line error (%s)", bad[i].a,
		      bad[i].b ? bad[i].b : "", err);
	}
}

static void test_config_ping(void)
{
	struct config cfg;
	char err[256];
	int r;

	r = parse(err, sizeof(err), &cfg, (char *)NULL);
	check(r == CONFIG_RUN && cfg.n_ping == 0 && cfg.ping_interval_ms == 2000 &&
		      cfg.ping_timeout_ms == 2000,
	      "ping defaults: default targets, every 2s, 2s timeout");
	r = parse(err, sizeof(err), &cfg, "--ping-target", "192.0.2.1", "--ping-target",
		  "2001:db8::1", "--ping-target=host.example", "--ping-target", "fe80::1%eth0",
		  "--ping-interval", "200ms", "--ping-timeout", "1.5s", (char *)NULL);
	check(r == CONFIG_RUN && cfg.n_ping == 4 && !strcmp(cfg.ping_targets[0], "192.0.2.1") &&
		      !strcmp(cfg.ping_targets[2], "host.example") &&
		      !strcmp(cfg.ping_targets[3], "fe80::1%eth0") && cfg.ping_interval_ms == 200 &&
		      cfg.ping_timeout_ms == 1500,
	      "--ping-target repeats, --ping-interval, --ping-timeout");
	r = parse(err, sizeof(err), &cfg, "--ping-target", "192.0.2.1", "--no-ping", (char *)NULL);
	check(r == CONFIG_RUN && cfg.ping_interval_ms == 0, "--no-ping turns pinging off");
	r = parse(err, sizeof(err), &cfg, "--no-ping", "--ping-interval", "1s", (char *)NULL);
	check(r == CONFIG_RUN && cfg.ping_interval_ms == 0, "--no-ping wins over --ping-interval");
	r = parse(err, sizeof(err), &cfg, "--ping-interval", "0", (char *)NULL);
	check(r == CONFIG_RUN && cfg.ping_interval_ms == 0, "--ping-interval 0 turns pinging off");
	r = parse(err, sizeof(err), &cfg, "--ping-target", "a", "--ping-target", "a", (char *)NULL);
	check(r == -EINVAL && strstr(err, "duplicate --ping-target 'a'"), "duplicate target (%s)", err);
	r = parse(err, sizeof(err), &cfg, "--ping-target", "a", "--ping-target", "b", "--ping-target",
		  "c", "--ping-target", "d", "--ping-target", "e", "--ping-target", "f",
		  "--ping-target", "g", (char *)NULL);
	check(r == CONFIG_RUN && cfg.n_ping == 7, "7 targets");
	{
		char *argv[] = {"ispmon", "--ping-target", "a", "--ping-target", "b", "--ping-target",
				"c", "--ping-target", "d", "--ping-target", "e", "--ping-target",
				"f", "--ping-target", "g", "--ping-target", "h", "--ping-target",
				"i", NULL};

		r = config_parse(19, argv, &cfg, err, sizeof(err));
		check(r == -EINVAL && strstr(err, "at most 8 --ping-target"), "at most 8 targets (%s)",
		      err);
	}
	{
		char longname[300];

		memset(longname, 'a', sizeof(longname) - 1);
		longname[sizeof(longname) - 1] = 0;
		r = parse(err, sizeof(err), &cfg, "--ping-target", longname, (char *)NULL);
		check(r == -EINVAL && strstr(err, "invalid --ping-target") && strlen(err) < 200,
		      "overlong target rejected, message short (%zu)", strlen(err));
	}
}

static FILE *mem(const char *s)
{
	return fmemopen((void *)s, strlen(s), "r");
}

static void test_default_route(void)
{
	static const char r4[] =
		"Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
		"eth1\t00000000\t010012AC\t0003\t0\t0\t200\t00000000\t0\t0\t0\n"
		"eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
		"eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
	static const char r4_none[] =
		"Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
		"eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
	static const char r6[] =
		"20010db8000000000000000000000000 40 00000000000000000000000000000000 00 "
		"00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n"
		"00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
		"fe800000000000000000000000000001 00000400 00000001 00000000 00000003 ppp0\n"
		"00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
		"00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n";
	char name[IF_NAMESIZE];
	FILE *a, *b;

	a = mem(r4);
	b = mem(r6);
	check(!netif_default_route(a, b, name) && !strcmp(name, "eth0"),
	      "IPv4 default route with the lowest metric wins (%s)", name);
	fclose(a);
	fclose(b);
	a = mem(r4_none);
	b = mem(r6);
	check(!netif_default_route(a, b, name) && !strcmp(name, "ppp0"),
	      "IPv6 default route when IPv4 has none (%s)", name);
	fclose(a);
	fclose(b);
	a = mem(r4_none);
	check(netif_default_route(a, NULL, name) == -ENOENT, "no default route -> ENOENT");
	fclose(a);

	char gw[64];

	a = mem(r4);
	b = mem(r6);
	check(!netif_default_gateway(a, b, gw, sizeof(gw)) && !strcmp(gw, "192.168.0.1"),
	      "IPv4 gateway of the lowest-metric default route (%s)", gw);
	fclose(a);
	fclose(b);
	a = mem(r4_none);
	b = mem(r6);
	check(!netif_default_gateway(a, b, gw, sizeof(gw)) && !strcmp(gw, "fe80::1%ppp0"),
	      "IPv6 link-local gateway with its interface (%s)", gw);
	fclose(a);
	fclose(b);
	static const char r4_ppp[] =
		"Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
		"ppp0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n";
	static const char r6_global[] =
		"00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
		"20010db8000000000000000000000001 00000400 00000001 00000000 00000003 eth9\n";
	a = mem(r4_ppp);
	b = mem(r6_global);
	check(!netif_default_gateway(a, b, gw, sizeof(gw)) && !strcmp(gw, "2001:db8::1"),
	      "ppp0 without an IPv4 gateway: the IPv6 one (%s)", gw);
	fclose(a);
	fclose(b);
	a = mem(r4_ppp);
	check(netif_default_gateway(a, NULL, gw, sizeof(gw)) == -ENOENT,
	      "point-to-point default route: no gateway");
	fclose(a);

	check(netif_lookup("no-such-if0", &(struct netif){0}) == -ENODEV,
	      "unknown interface -> ENODEV");
	check(!netif_arphrd_is_l3(1) && netif_arphrd_is_l3(512) && netif_arphrd_is_l3(65534),
	      "ARPHRD: ether has L2, ppp and none are L3");
}

static void test_log_quote(void)
{
	char buf[64];

	check(!strcmp(log_quote(buf, sizeof(buf), "a \"b\"\\c\n"), "\"a \\\"b\\\"\\\\c\""),
	      "logfmt quoting escapes quotes and backslashes, drops newlines");
	check(strlen(log_quote(buf, 8, "0123456789abcdef")) < 8, "logfmt quoting truncates safely");
}

static void test_metrics(void)
{
	struct mbuf b;

	mbuf_init(&b);
	mbuf_label_value(&b, "a\"b\\c\nd");
	check(b.len && !strcmp(b.p, "a\\\"b\\\\c\\nd"), "label value escaping");
	mbuf_free(&b);

	/* Growth well past the initial capacity. */
	for (int i = 0; i < 10000; i++)
		mbuf_printf(&b, "line %d\n", i);
	check(!b.err && strstr(b.p, "line 9999\n") != NULL, "buffer grows");
	mbuf_free(&b);

	prom_f64(&b, "x", NULL, NAN);
	prom_f64(&b, "y", "a=\"1\"", INFINITY);
	prom_u64(&b, "z", NULL, 18446744073709551615ULL);
	check(!strcmp(b.p, "x NaN\ny{a=\"1\"} +Inf\nz 18446744073709551615\n"),
	      "special float values and u64 max");
	mbuf_free(&b);

	struct metrics_store st;
	char *text;
	size_t len;

	metrics_store_init(&st);
	check(metrics_store_copy(&st, &text, &len) == -ENODATA, "empty store -> ENODATA");
	mbuf_printf(&b, "hello\n");
	metrics_store_publish(&st, &b);
	check(!metrics_store_copy(&st, &text, &len) && len == 6 && !strcmp(text, "hello\n"),
	      "store publishes and copies");
	free(text);
	metrics_store_destroy(&st);
}

static void test_report(void)
{
	struct report r = {.version = "1.2\"x", .iface = "wan0", .ifindex = 3,
			   .attach_mode = "tc", .interval_s = 1};
	struct ispmon_dir_stats s[ISPMON_DIR_MAX] = {0};
	struct mbuf b;

	s[ISPMON_DIR_DOWNLOAD].bytes = 1000;
	s[ISPMON_DIR_UPLOAD].bytes = 10;
	report_update(&r, s, 0.5);
	check(!r.have_rate, "no rate after the first reading");
	s[ISPMON_DIR_DOWNLOAD].bytes = 3000;
	s[ISPMON_DIR_DOWNLOAD].packets = 7;
	s[ISPMON_DIR_UPLOAD].bytes = 110;
	s[ISPMON_DIR_UPLOAD].l3_packets[ISPMON_L3_IPV6] = 4;
	report_update(&r, s, 0.5);
	check(r.have_rate && fabs(r.rate_Bps[ISPMON_DIR_DOWNLOAD] - 4000) < 1e-9 &&
		      fabs(r.rate_Bps[ISPMON_DIR_UPLOAD] - 200) < 1e-9,
	      "rate = delta bytes / dt");

	mbuf_init(&b);
	report_render(&r, &b);
	check(!b.err, "render ok");
	check(strstr(b.p, "ispmon_passive_bytes_total{direction=\"download\"} 3000\n") != NULL,
	      "download bytes rendered");
	check(strstr(b.p, "ispmon_passive_packets_total{direction=\"download\"} 7\n") != NULL,
	      "download packets rendered");
	check(strstr(b.p, "ispmon_passive_protocol_packets_total{direction=\"upload\",protocol=\"ipv6\"} 4\n") != NULL,
	      "per-protocol packets rendered");
	check(strstr(b.p, "ispmon_passive_throughput_bytes_per_second{direction=\"upload\"} 200\n") != NULL,
	      "throughput rendered");
	check(strstr(b.p, "ispmon_build_info{version=\"1.2\\\"x\"} 1\n") != NULL,
	      "build info label escaped");
	check(strstr(b.p, "# TYPE ispmon_passive_bytes_total counter\n") != NULL,
	      "counter TYPE line");
	mbuf_free(&b);
}

static void test_rtt_buckets(void)
{
	int mono = 1, inside = 1, narrow = 1;
	uint32_t prev = 0;

	for (uint64_t us = 0; us < 40000000; us += us < 5000 ? 1 : us / 997) {
		uint32_t b = ispmon_rtt_bucket(us);

		mono &= b >= prev;
		prev = b;
		if (b + 1 < ISPMON_RTT_BUCKETS)
			inside &= us >= ispmon_rtt_bucket_lower_us(b) &&
				  us < ispmon_rtt_bucket_lower_us(b + 1);
		else
			inside &= us >= ispmon_rtt_bucket_lower_us(b);
	}
	for (uint32_t b = ISPMON_RTT_SUB; b + 1 < ISPMON_RTT_BUCKETS; b++) {
		uint64_t lo = ispmon_rtt_bucket_lower_us(b), hi = ispmon_rtt_bucket_lower_us(b + 1);

		narrow &= (double)(hi - lo) <= 0.0625 * (double)lo + 1e-9;
	}
	check(mono, "RTT bucket index grows with the value");
	check(inside, "every RTT value lies inside its bucket's edges");
	check(narrow, "RTT buckets above 64 us are at most 6.25%% wide");
	check(ispmon_rtt_bucket(50000000) == ISPMON_RTT_BUCKETS - 1, "RTT above 16.8 s goes to the last bucket");
}

static void test_rtt_quantile(void)
{
	static struct rtt_hist h;
	double med;

	memset(&h, 0, sizeof(h));
	check(isnan(rtt_quantile(&h, 0, 0.5)), "quantile of an empty series is NaN");
	/* 100 samples at 10.3 ms, 100 at 40.4 ms, 1 at 3 s. */
	h.b[1][ispmon_rtt_bucket(10300)] += 100;
	h.b[1][ispmon_rtt_bucket(40400)] += 100;
	h.b[1][ispmon_rtt_bucket(3000000)] += 1;
	med = rtt_quantile(&h, 1, 0.25);
	check(fabs(med - 0.0103) < 0.0103 * 0.05, "p25 %.5f within 5%% of 10.3 ms", med);
	med = rtt_quantile(&h, 1, 0.75);
	check(fabs(med - 0.0404) < 0.0404 * 0.05, "p75 %.5f within 5%% of 40.4 ms", med);
	med = rtt_quantile(&h, 1, 1.0);
	check(med > 2.8 && med < 3.2, "p100 %.3f is the 3 s outlier's bucket", med);
	check(isnan(rtt_quantile(&h, 0, 0.5)), "other series stay empty");
}

static void test_ping_wire(void)
{
	static const uint8_t rfc1071[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
	const uint64_t cookie = 0x0123456789abcdefULL;
	uint8_t pkt[PING_ECHO_LEN], ip[20 + PING_ECHO_LEN];
	uint16_t id = 0, seq = 0;

	check(ping_checksum(rfc1071, sizeof(rfc1071)) == 0x220d, "RFC 1071 checksum example");
	check(ping_checksum(rfc1071, 3) == (uint16_t) ~(0x0001 + 0xf200), "odd-length checksum");
	check(ping_echo_build(pkt, sizeof(pkt) - 1, false, 1, 2, cookie) == 0,
	      "echo build refuses a short buffer");
	check(ping_echo_build(pkt, sizeof(pkt), false, 0xbeef, 0x2001, cookie) == PING_ECHO_LEN &&
		      pkt[0] == 8 && pkt[1] == 0 && ping_checksum(pkt, sizeof(pkt)) == 0,
	      "IPv4 echo request: type 8, valid checksum");
	check(ping_echo_parse(pkt, sizeof(pkt), PING_PARSE_REQUEST, cookie, &id, &seq) == 0 &&
		      id == 0xbeef && seq == 0x2001,
	      "request parses back (id %#x seq %#x)", id, seq);
	check(ping_echo_parse(pkt, sizeof(pkt), 0, cookie, &id, &seq) == -EINVAL,
	      "a request is not a reply");
	/* The reply a host sends: type 0, checksum adjusted. */
	pkt[0] = 0;
	pkt[2] = pkt[3] = 0;
	{
		uint16_t c = ping_checksum(pkt, sizeof(pkt));

		pkt[2] = (uint8_t)(c >> 8);
		pkt[3] = (uint8_t)c;
	}
	id = seq = 0;
	check(!ping_echo_parse(pkt, sizeof(pkt), 0, cookie, &id, &seq) && id == 0xbeef &&
		      seq == 0x2001,
	      "IPv4 echo reply parses");
	check(ping_echo_parse(pkt, sizeof(pkt), 0, cookie + 1, &id, &seq) == -EINVAL,
	      "reply with another cookie is not ours");
	check(ping_echo_parse(pkt, 15, 0, cookie, &id, &seq) == -EINVAL, "truncated reply rejected");
	memset(ip, 0, sizeof(ip));
	ip[0] = 0x45;
	memcpy(ip + 20, pkt, sizeof(pkt));
	check(!ping_echo_parse(ip, sizeof(ip), PING_PARSE_IPHDR, cookie, &id, &seq) && seq == 0x2001,
	      "reply behind an IPv4 header (raw socket)");
	ip[0] = 0x4f; /* IHL 60 > what is there before the ICMP header */
	check(ping_echo_parse(ip, 40, PING_PARSE_IPHDR, cookie, &id, &seq) == -EINVAL,
	      "bad IHL rejected");
	ip[0] = 0x65;
	check(ping_echo_parse(ip, sizeof(ip), PING_PARSE_IPHDR, cookie, &id, &seq) == -EINVAL,
	      "not IPv4 rejected");
	pkt[20] ^= 0x40;
	check(ping_echo_parse(pkt, sizeof(pkt), 0, cookie, &id, &seq) == -EINVAL,
	      "corrupted IPv4 reply fails its checksum");

	check(ping_echo_build(pkt, sizeof(pkt), true, 7, 0x4003, cookie) == PING_ECHO_LEN &&
		      pkt[0] == 128 && pkt[2] == 0 && pkt[3] == 0,
	      "ICMPv6 echo request: type 128, checksum left to the kernel");
	check(!ping_echo_parse(pkt, 8, PING_PARSE_V6 | PING_PARSE_REQUEST, cookie, &id, &seq) &&
		      seq == 0x4003,
	      "request quoted in an ICMPv6 error, cut after 8 bytes");
	pkt[0] = 129;
	check(!ping_echo_parse(pkt, sizeof(pkt), PING_PARSE_V6, cookie, &id, &seq) && id == 7 &&
		      seq == 0x4003,
	      "ICMPv6 echo reply parses");
	pkt[1] = 1;
	check(ping_echo_parse(pkt, sizeof(pkt), PING_PARSE_V6, cookie, &id, &seq) == -EINVAL,
	      "non-zero code rejected");

	check(ping_valid_host("192.0.2.1") && ping_valid_host("fe80::1%eth0") &&
		      ping_valid_host("one.one.one.one") && ping_valid_host("my_host-1"),
	      "valid hosts");
	check(!ping_valid_host("") && !ping_valid_host(NULL) && !ping_valid_host("a b") &&
		      !ping_valid_host("a/b") && !ping_valid_host("-v") && !ping_valid_host("x\"y"),
	      "invalid hosts");
}

static void test_ping_stats(void)
{
	double v[] = {5, 1, 4, 2, 3}, w[] = {4, 1, 3, 2}, j = -1;
	int mono = 1, inside = 1;

	check(ping_median(v, 5) == 3, "median of 5");
	check(ping_median(w, 4) == 2.5, "median of 4: mean of the middle two");
	check(isnan(ping_median(w, 0)), "median of none is NaN");

	j = ping_jitter_step(j, 0.004);
	check(fabs(j - 0.004) < 1e-12, "first RTT difference sets the jitter");
	j = ping_jitter_step(j, -0.020);
	check(fabs(j - (0.004 + (0.020 - 0.004) / 16)) < 1e-12, "then J += (|D| - J) / 16");
	for (int i = 0; i < 400; i++)
		j = ping_jitter_step(j, i % 2 ? 0.001 : -0.001);
	check(fabs(j - 0.001) < 1e-6, "jitter converges to the mean |D| (%.6f)", j);

	for (unsigned i = 1; i < PING_EDGES; i++)
		mono &= ping_bucket_le(i) > ping_bucket_le(i - 1);
	check(mono, "bucket edges increase");
	check(fabs(ping_bucket_le(0) - 64e-6) < 1e-12 && isinf(ping_bucket_le(PING_EDGES)),
	      "edges from 64 us, then +Inf");
	for (double r = 1e-6; r < 20; r *= 1.01) {
		unsigned b = ping_bucket(r);

		inside &= r < ping_bucket_le(b) && (b == 0 || r >= ping_bucket_le(b - 1));
	}
	check(inside, "every RTT falls below its bucket's edge and not below the previous");
	check(ping_bucket(0) == 0 && ping_bucket(100) == PING_EDGES, "tiny and huge RTTs");
	check(ping_bucket(0.030) > 0 && ping_bucket_le(ping_bucket(0.030)) - 0.030 < 0.005,
	      "30 ms lands in a bucket at most 4.1 ms wide");
}

/* Whether /etc/hosts names localhost: then looking it up sends nothing. */
static bool localhost_in_hosts(void)
{
	char line[256];
	bool found = false;
	FILE *f = fopen("/etc/hosts", "r");

	while (f && !found && fgets(line, sizeof(line), f))
		found = !strncmp(line, "127.0.0.1", 9) && strstr(line, " localhost") != NULL;
	if (f)
		fclose(f);
	return found;
}

/* The whole module on loopback (nothing leaves the host). */
static void test_ping_loopback(void)
{
	struct ping_opts o = {.targets = {"127.0.0.1", "::1", "localhost"}, .n_targets = 2,
			      .interval_ms = 100, .timeout_ms = 500};
	struct ping *p = NULL;
	struct mbuf b;
	int err;

	check(ping_start(&(struct ping_opts){.n_targets = 0, .interval_ms = 100, .timeout_ms = 500},
			 &p) == -EINVAL,
	      "ping_start: no targets -> EINVAL");
	check(ping_start(&(struct ping_opts){.targets = {"a b"}, .n_targets = 1, .interval_ms = 100,
					     .timeout_ms = 500},
			 &p) == -EINVAL,
	      "ping_start: bad host -> EINVAL");
	check(ping_start(&(struct ping_opts){.targets = {"x"}, .n_targets = 1, .interval_ms = 100,
					     .timeout_ms = 60000},
			 &p) == -EINVAL,
	      "ping_start: timeout past the limit -> EINVAL");
	if (geteuid() != 0) {
		printf("# skipping the loopback ping: needs root\n");
		return;
	}
	/* A name, through the background lookup. */
	if (localhost_in_hosts())
		o.n_targets = 3;
	err = ping_start(&o, &p);
	check(!err && p, "ping_start on 127.0.0.1 and ::1 (%d)", err);
	if (err)
		return;
	nanosleep(&(struct timespec){.tv_sec = 1, .tv_nsec = 200000000}, NULL);
	mbuf_init(&b);
	ping_render(p, &b);
	ping_render_success(p, &b);
	ping_render_failures(p, &b);
	ping_stop(p);
	check(!b.err && b.p, "ping render ok");
	if (!b.p)
		return;
	for (unsigned i = 0; i < o.n_targets; i++) {
		const char *t = o.targets[i];
		char key[96];
		const char *at;
		unsigned long long sent = 0, recv = 0;

		snprintf(key, sizeof(key), "ispmon_ping_sent_total{target=\"%s\"} ", t);
		at = strstr(b.p, key);
		if (at)
			sent = strtoull(at + strlen(key), NULL, 10);
		snprintf(key, sizeof(key), "ispmon_ping_received_total{target=\"%s\"} ", t);
		at = strstr(b.p, key);
		if (at)
			recv = strtoull(at + strlen(key), NULL, 10);
		check(sent >= 8 && sent <= 14 && recv + 1 >= sent && recv <= sent,
		      "%s: %llu sent, %llu received", t, sent, recv);
		snprintf(key, sizeof(key), "ispmon_probe_success{probe=\"ping\",target=\"%s\"} 1\n", t);
		check(strstr(b.p, key) != NULL, "%s: probe success", t);
		snprintf(key, sizeof(key), "ispmon_ping_rtt_median_seconds{target=\"%s\"} ", t);
		at = strstr(b.p, key);
		check(at && strtod(at + strlen(key), NULL) < 0.005, "%s: median RTT below 5 ms", t);
	}
	check(strstr(b.p, "ispmon_ping_socket_info{family=\"ipv4\",mode=\"") != NULL,
	      "socket mode exported");
	mbuf_free(&b);
}

/* Sample value of `name` from a rendered page, or -1. */
static long long sample(const struct mbuf *b, const char *name)
{
	const char *p = strstr(b->p, name);

	return p ? atoll(p + strlen(name)) : -1;
}

static void test_devices_topn(void)
{
	struct ispmon_dev_key k[3] = {0};
	struct ispmon_dev_stats s = {0};
	uint64_t down[3] = {0};
	long long other_prev = 0;
	struct devices *d;
	struct mbuf b;
	int mono = 1;

	check(!devices_new(2, &d), "device table with a top-2");
	for (int i = 0; i < 3; i++) {
		k[i].addr[0] = 2;
		k[i].addr[5] = (uint8_t)(i + 1);
	}
	/* Rounds: device 3 starts small and overtakes device 2 by far. */
	for (int round = 0; round < 10; round++) {
		down[0] += 5000000;
		down[1] += 2000000;
		down[2] += round < 3 ? 100000 : 8000000;
		for (int i = 0; i < 3; i++) {
			memset(&s, 0, sizeof(s));
			s.bytes[ISPMON_DIR_DOWNLOAD] = down[i];
			devices_ingest(d, &k[i], &s);
		}
		devices_commit(d, round);
		mbuf_init(&b);
		devices_render(d, &b);
		{
			long long o = sample(&b, "ispmon_device_bytes_total{device=\"other\",direction=\"download\"} ");

			if (o >= 0) {
				mono &= o >= other_prev;
				other_prev = o;
			}
		}
		if (round == 1)
			check(strstr(b.p, "device=\"02:00:00:00:00:01\"") &&
				      strstr(b.p, "device=\"02:00:00:00:00:02\"") &&
				      !strstr(b.p, "device=\"02:00:00:00:00:03\""),
			      "round 2: the two largest devices are labelled");
		if (round == 9) {
			check(strstr(b.p, "device=\"02:00:00:00:00:03\"") &&
				      !strstr(b.p, "device=\"02:00:00:00:00:02\",direction"),
			      "round 10: the device that overtook replaced the smaller one");
			check(sample(&b, "ispmon_device_bytes_total{device=\"02:00:00:00:00:03\",direction=\"download\"} ") ==
				      (long long)down[2],
			      "a labelled device's counter is its whole total");
		}
		mbuf_free(&b);
	}
	check(mono && other_prev > 0, "\"other\" only grows while the ranking changes (%lld)", other_prev);
	devices_free(d);
}

/* Write text to path; 0 on success. */
static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	int err = !f || fputs(text, f) < 0;

	if (f && fclose(f))
		err = 1;
	return err;
}

/* A MAC-keyed device 02:00:00:00:00:<last> sending from IPv6 a6 (or none),
 * with traffic so it gets a label. */
static void lease_dev(struct devices *d, struct ispmon_dev_key *k, uint8_t last, const char *a6)
{
	struct ispmon_dev_stats s = {0};

	memset(k, 0, sizeof(*k));
	k->addr[0] = 2;
	k->addr[5] = last;
	s.bytes[ISPMON_DIR_DOWNLOAD] = 1000000 + last;
	s.packets[ISPMON_DIR_DOWNLOAD] = 1000;
	if (a6)
		inet_pton(AF_INET6, a6, s.ipv6);
	devices_ingest(d, k, &s);
}

/* A device's name; four calls may share a message. */
static const char *name_for(struct devices *d, const struct ispmon_dev_key *k)
{
	static char names[4][64];
	static unsigned next;
	char *name = names[next++ % 4];

	devices_name(d, k, name, 64);
	return name;
}

/* Both leases formats, malformed lines, and the search of the usual paths. */
static void test_leases(void)
{
	char root[] = "/tmp/ispmon-leases-XXXXXX", path[512], found[2][256];
	int err;
	struct ispmon_dev_key k[16], k6 = {0};
	struct devices *d;
	struct mbuf b;

	check(mkdtemp(root) != NULL, "scratch root for leases files");
	check(!devices_new(16, &d), "device table for the leases tests");
	lease_dev(d, &k[0], 0x01, NULL);
	lease_dev(d, &k[1], 0x03, NULL);
	lease_dev(d, &k[2], 0x05, NULL);
	lease_dev(d, &k[3], 0x06, NULL);
	lease_dev(d, &k[4], 0x07, NULL);
	lease_dev(d, &k[5], 0x11, "2001:db8:1::999");  /* DUID-LLT, another address */
	lease_dev(d, &k[6], 0x12, NULL);               /* DUID-LL */
	lease_dev(d, &k[7], 0x13, NULL);               /* DUID-LLT of another hw type */
	lease_dev(d, &k[8], 0x14, "2001:db8:1::14");   /* DUID-EN: by address */
	lease_dev(d, &k[9], 0x16, "2001:db8:1:42::1"); /* inside a delegated prefix */
	lease_dev(d, &k[10], 0x15, NULL);              /* odhcpd's own DHCPv4 lease */
	lease_dev(d, &k[11], 0x17, "2001:db8:1::17");  /* malformed lines only */
	lease_dev(d, &k[12], 0x18, "2001:db8:1::18");  /* DUID-EN, its name taken */
	k6.family = 6;
	inet_pton(AF_INET6, "2001:db8:1::14", k6.addr);
	devices_commit(d, 1);

	/* dnsmasq, with its DHCPv6 lines (by the DUID's MAC, or the address). */
	snprintf(path, sizeof(path), "%s/dnsmasq.leases", root);
	check(!write_file(path,
			  "1700000000 02:00:00:00:00:01 192.0.2.11 laptop 01:02:00:00:00:00:01\n"
			  "1700000000 02:00:00:00:00:02 192.0.2.12 bad\"name *\n"
			  "garbage line\n"
			  "1700000000 02:00:00:00:00:03 192.0.2.13 twin *\n"
			  "1700000000 02:00:00:00:00:04 192.0.2.14 twin *\n"
			  "1700000000 02:00:00:00:00:05 192.0.2.15 twin *\n"
			  "1700000000 02:00:00:00:00:06 192.0.2.16 192.0.2.99 *\n"
			  "1700000000 02:00:00:00:00:07 192.0.2.17 - *\n"
			  "duid 00:01:00:01:2c:3a:1b:2c:02:00:00:00:00:fe\n"
			  "1700000000 1234 2001:db8:1::14 v6host 00:03:00:01:02:00:00:00:00:14\n"
			  "1700000000 T77 2001:db8:1::999 tmp-host 00:02:00:00:ab:11:01:02:03:04\n"
			  "0 4294967295 2001:db8:1::17 noclid *\n"
			  "1700000000 12x4 2001:db8:1::18 bad-iaid 00:02:00:00:ab:11:01:02:03:05\n"
			  "1700000000 5 2001:db8:1::18/64 bad-addr 00:02:00:00:ab:11:01:02:03:05\n"
			  "1700000000 5 2001:db8:1:42::1 bad-duid 00:02:00:00:ab:1\n"
			  "1700000000 5 2001:db8:1::16 * 00:03:00:01:02:00:00:00:00:16\n"
			  "1700000000 2:0:0:0:0:14 192.0.2.18 short *\n"),
	      "dnsmasq leases file written");
	check(!devices_load_leases(d, path), "dnsmasq leases file read");
	check(!strcmp(name_for(d, &k[0]), "laptop"), "dnsmasq: a device with a lease is named by it (%s)",
	      name_for(d, &k[0]));
	check(!strcmp(name_for(d, &k[1]), "02:00:00:00:00:03") && !strcmp(name_for(d, &k[2]), "02:00:00:00:00:05"),
	      "dnsmasq: a name three MACs claim is not used, the third claimant's neither (%s, %s)",
	      name_for(d, &k[1]), name_for(d, &k[2]));
	check(!strcmp(name_for(d, &k[3]), "02:00:00:00:00:06") && !strcmp(name_for(d, &k[4]), "02:00:00:00:00:07"),
	      "dnsmasq: a name that reads as an IPv4 address, or \"-\", is not used (%s, %s)",
	      name_for(d, &k[3]), name_for(d, &k[4]));
	check(!strcmp(name_for(d, &k[8]), "v6host"),
	      "dnsmasq DHCPv6: a DUID-LL names by its MAC; a MAC without two digits a byte is no lease (%s)",
	      name_for(d, &k[8]));
	check(!strcmp(name_for(d, &k[5]), "tmp-host") && !strcmp(name_for(d, &k[11]), "noclid"),
	      "dnsmasq DHCPv6: a DUID-EN (temporary address) and no DUID name by the address (%s, %s)",
	      name_for(d, &k[5]), name_for(d, &k[11]));
	check(!strcmp(name_for(d, &k[12]), "02:00:00:00:00:18") && !strcmp(name_for(d, &k[9]), "02:00:00:00:00:16"),
	      "dnsmasq DHCPv6: a bad IAID, a prefix for an address, odd DUID hex or no name: no lease (%s, %s)",
	      name_for(d, &k[12]), name_for(d, &k[9]));

	/* odhcpd: every kind of lease, and malformed ones. */
	snprintf(path, sizeof(path), "%s/odhcpd", root);
	check(!write_file(path,
			  /* DUID-LLT, Ethernet: by the MAC inside */
			  "# lan0 000100012c3a1b2c020000000011 1a2b3c4d llt-host 1999999999 111 128 2001:db8:1::111/128\n"
			  /* DUID-LL, Ethernet, no address (expired) */
			  "# lan0 00030001020000000012 1 ll-host 0 112 128\n"
			  /* DUID-LLT of hardware type 6: no MAC taken */
			  "# lan0 000100062c3a1b2c020000000013 2 hw6-host 1999999999 113 128\n"
			  /* DUID-EN: by address; hosts-style line before it */
			  "2001:db8:1::14\ten-host.lan\ten-host\n"
			  "# lan0 00020000ab110102030405060708 3 en-host -1 114 128 2001:db8:1::14/128 2001:db8:1::1400/128\n"
			  /* DUID-UUID with a delegated prefix */
			  "# lan0 0004a1b2c3d4e5f60718293a4b5c6d7e8f90 4 router2 1999999999 40 62 2001:db8:1:40::/62\n"
			  /* odhcpd's own DHCPv4 lease */
			  "# lan0 020000000015 ipv4 v4host 1999999999 c0000215 32 192.0.2.21/32\n"
			  "192.0.2.21\tv4host\n"
			  /* malformed, each naming 02:..:17 or 2001:db8:1::17 */
			  "# lan0 000300010200000000170 5 odd-hex 1999999999 117 128 2001:db8:1::17/128\n"
			  "# lan0 00020000ab11aa 6 bad-addr 1999999999 117 128 2001:db8:1::zz/128\n"
			  "# lan0 00020000ab11ab 7 bad-len 1999999999 117 128 2001:db8:1::17/129\n"
			  "# lan0 00020000ab11ac 8 neg-len 1999999999 117 128 2001:db8:1::17/-1\n"
			  "# lan0 00020000ab11ad zz bad-iaid 1999999999 117 128 2001:db8:1::17/128\n"
			  "# lan0 00020000ab11ae 9 bad-expiry soon 117 128 2001:db8:1::17/128\n"
			  "# lan0 00030001020000000017 a short 1999999999\n"
			  "# lan0 00020000ab11af b - 1999999999 117 128 2001:db8:1::17/128\n"
			  "# lan0 00020000ab11b0 c broken\\x20evil 1999999999 117 128 2001:db8:1::17/128\n"
			  "# lan0 00020000ab11b1 d no-addr 1999999999 117 128\n"
			  "# lan0 020000000017 ipv4 v4-short 1999999999 c0000217 32 192.0.2.23/32 extra\n"
			  "# lan0 0200000000 ipv4 v4-bad-mac 1999999999 c0000217 32 192.0.2.23/32\n"
			  /* a name one MAC's lease and an address lease share */
			  "# lan0 00020000ab11c0 e laptop 1999999999 118 128 2001:db8:1::18/128\n"),
	      "odhcpd state file written");
	check(!devices_load_leases(d, path), "odhcpd state file read (the format told per line)");
	check(!strcmp(name_for(d, &k[5]), "llt-host"), "odhcpd: DUID-LLT of Ethernet type names by its MAC (%s)",
	      name_for(d, &k[5]));
	check(!strcmp(name_for(d, &k[6]), "ll-host"), "odhcpd: DUID-LL names by its MAC, without addresses (%s)",
	      name_for(d, &k[6]));
	check(!strcmp(name_for(d, &k[7]), "02:00:00:00:00:13"),
	      "odhcpd: a DUID-LLT of another hardware type gives no MAC (%s)", name_for(d, &k[7]));
	check(!strcmp(name_for(d, &k[8]), "en-host"), "odhcpd: DUID-EN names the device sending from its address (%s)",
	      name_for(d, &k[8]));
	check(!strcmp(name_for(d, &k6), "en-host"), "odhcpd: an L3 device keyed by that address too (%s)",
	      name_for(d, &k6));
	check(!strcmp(name_for(d, &k[9]), "router2"), "odhcpd: a delegated prefix names the device inside it (%s)",
	      name_for(d, &k[9]));
	check(!strcmp(name_for(d, &k[10]), "v4host"), "odhcpd: its DHCPv4 lease names by MAC (%s)",
	      name_for(d, &k[10]));
	check(!strcmp(name_for(d, &k[11]), "02:00:00:00:00:17"),
	      "odhcpd: malformed leases (odd hex, bad address, prefix > 128 or < 0, bad IAID or expiry, "
	      "short, \"-\", broken\\x20, no address, bad MAC) name nothing (%s)", name_for(d, &k[11]));
	check(!strcmp(name_for(d, &k[0]), "02:00:00:00:00:01"),
	      "a re-read file replaces the names of the one before (%s)", name_for(d, &k[0]));
	check(!strcmp(name_for(d, &k[12]), "laptop"), "an address lease's name is used (%s)", name_for(d, &k[12]));
	mbuf_init(&b);
	devices_render(d, &b);
	check(b.p && strstr(b.p, "ispmon_device_bytes_total{device=\"router2\",direction=\"download\"}") &&
		      strstr(b.p, "ispmon_device_info{device=\"en-host\",mac=\"02:00:00:00:00:14\",ipv4=\"\",ipv6=\"2001:db8:1::14\"} 1"),
	      "the page carries the odhcpd names");
	mbuf_free(&b);

	/* Two labelled devices inside one prefix: the name labels neither. */
	lease_dev(d, &k[13], 0x19, "2001:db8:1:41::1");
	devices_commit(d, 2);
	check(!strcmp(name_for(d, &k[9]), "02:00:00:00:00:16") && !strcmp(name_for(d, &k[13]), "02:00:00:00:00:19"),
	      "a name that would label two devices labels neither (%s, %s)", name_for(d, &k[9]),
	      name_for(d, &k[13]));
	check(devices_load_leases(d, "/nonexistent/leases") == -ENOENT, "a missing leases file is an error");
	unlink(path);
	snprintf(path, sizeof(path), "%s/dnsmasq.leases", root);
	unlink(path);

	/* The usual places, under a scratch root: the first of dnsmasq's,
	 * then odhcpd's; both read together (OpenWrt has both). */
	check(devices_find_leases_in(root, found, 2) == 0, "no leases file under an empty root");
	snprintf(path, sizeof(path), "%s/tmp", root);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/tmp/hosts", root);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/tmp/hosts/odhcpd", root);
	check(!write_file(path, "# lan0 00030001020000000001 1 found-me 1999999999 1 128\n") &&
		      devices_find_leases_in(root, found, 2) == 1 && !strcmp(found[0], path),
	      "auto-discovery finds odhcpd's /tmp/hosts/odhcpd (%s)", found[0]);
	check(!devices_load_leases(d, found[0]) && !strcmp(name_for(d, &k[0]), "found-me"),
	      "and it names the device (%s)", name_for(d, &k[0]));
	snprintf(path, sizeof(path), "%s/tmp/dhcp.leases", root);
	check(!write_file(path, "1700000000 02:00:00:00:00:03 192.0.2.13 from-dnsmasq *\n") &&
		      devices_find_leases_in(root, found, 2) == 2 && !strcmp(found[0], path) &&
		      strstr(found[1], "/tmp/hosts/odhcpd"),
	      "OpenWrt's /tmp/dhcp.leases comes first, odhcpd's second (%s, %s)", found[0], found[1]);
	check(devices_find_leases_in(root, found, 1) == 1 && !strcmp(found[0], path),
	      "asked for one: dnsmasq's (%s)", found[0]);
	devices_find_leases_in(root, found, 2);
	/* Each step first, then its check: arguments are evaluated in no
	 * set order. */
	err = devices_load_leases(d, found[0]);
	err = err ? err : devices_add_leases(d, found[1]);
	check(!err && !strcmp(name_for(d, &k[1]), "from-dnsmasq") && !strcmp(name_for(d, &k[0]), "02:00:00:00:00:01"),
	      "a file added is read at the next load (%s, %s)", name_for(d, &k[1]), name_for(d, &k[0]));
	err = err ? err : devices_load_leases(d, NULL);
	check(!err && !strcmp(name_for(d, &k[0]), "found-me") && !strcmp(name_for(d, &k[1]), "from-dnsmasq"),
	      "both files name their devices (%s from odhcpd's, %s from dnsmasq's)", name_for(d, &k[0]),
	      name_for(d, &k[1]));
	check(devices_add_leases(d, found[1]) == -E2BIG, "a third file is refused");
	err = write_file(path, "1700000000 02:00:00:00:00:03 192.0.2.13 renamed *\n");
	err = err ? err : devices_load_leases(d, NULL);
	check(!err && !strcmp(name_for(d, &k[1]), "renamed") && !strcmp(name_for(d, &k[0]), "found-me"),
	      "one file changed: both read again (%s, %s)", name_for(d, &k[1]), name_for(d, &k[0]));
	unlink(path);
	err = devices_load_leases(d, NULL);
	check(err == -ENOENT && !strcmp(name_for(d, &k[0]), "found-me") &&
		      !strcmp(name_for(d, &k[1]), "02:00:00:00:00:03"),
	      "one file gone: an error, and the other still names its device (%s, %s)", name_for(d, &k[0]),
	      name_for(d, &k[1]));
	check(devices_leases_error(d, 0) == -ENOENT && devices_leases_error(d, 1) == 0 &&
		      devices_leases_error(d, 2) == -ENOENT,
	      "the error is the gone file's, not the other's (%d, %d)", devices_leases_error(d, 0),
	      devices_leases_error(d, 1));
	snprintf(path, sizeof(path), "%s/tmp/hosts/odhcpd", root);
	unlink(path);
	snprintf(path, sizeof(path), "%s/tmp/hosts", root);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/tmp", root);
	rmdir(path);
	rmdir(root);
	devices_free(d);
}

/* Feed one second of synthetic line traffic: `rate` L2 bytes/s of
 * 1500-byte packets (payload 1448 each) in dir, ACKs the other way. */
static void feed_second(struct capacity *c, struct ispmon_dir_stats s[2], double *t, int dir,
			double rate, double rtt)
{
	for (int i = 0; i < 10; i++) {
		uint64_t pkts = (uint64_t)(rate / 10 / 1500);

		s[dir].bytes += pkts * 1500;
		s[dir].packets += pkts;
		s[dir].payload_bytes += pkts * 1448;
		s[!dir].bytes += pkts / 2 * 66;
		s[!dir].packets += pkts / 2;
		*t += 0.1;
		capacity_sample(c, *t, s);
	}
	capacity_interval(c, *t, rtt);
}

static void test_capacity(void)
{
	struct ispmon_dir_stats s[2] = {0};
	struct capacity *c;
	unsigned ev = 0;
	double t = 0, est, idle, loaded, bloat;

	check(!capacity_new(&c), "capacity estimator");
	capacity_sample(c, t, s);
	for (int i = 0; i < 10; i++)
		feed_second(c, s, &t, 0, 2000, 0.040); /* idle, pings */
	for (int i = 0; i < 20; i++)
		feed_second(c, s, &t, 0, 250000, 0.0402); /* app-limited 2 Mbit/s, no queue */
	est = capacity_estimate(c, ISPMON_DIR_DOWNLOAD, &ev);
	check(isnan(est) && ev == 0, "steady app-limited traffic without a queue gives no estimate");
	capacity_free(c);

	/* A fresh line: idle, then saturated, then app-limited again. */
	memset(s, 0, sizeof(s));
	t = 0;
	check(!capacity_new(&c), "capacity estimator, second line");
	capacity_sample(c, t, s);
	for (int i = 0; i < 10; i++)
		feed_second(c, s, &t, 0, 2000, 0.040);
	for (int i = 0; i < 10; i++)
		feed_second(c, s, &t, 0, 2500000, 0.090); /* saturated: a queue of 50 ms */
	est = capacity_estimate(c, ISPMON_DIR_DOWNLOAD, &ev);
	check(fabs(est - 2500000.0 * 1448 / 1500) < 2500000 * 0.01 && ev == 10,
	      "saturated intervals give the goodput (%.0f B/s, %u intervals)", est, ev);
	check(isnan(capacity_estimate(c, ISPMON_DIR_UPLOAD, &ev)),
	      "the ACK direction is not taken for saturated");
	for (int i = 0; i < 10; i++)
		feed_second(c, s, &t, 0, 250000, 0.040);
	check(capacity_estimate(c, ISPMON_DIR_DOWNLOAD, NULL) == est,
	      "app-limited traffic afterwards leaves the estimate unchanged");
	bloat = capacity_bufferbloat(c, &idle, &loaded);
	check(fabs(idle - 0.040) < 1e-9 && fabs(loaded - 0.090) < 1e-9 && fabs(bloat - 0.050) < 1e-9,
	      "bufferbloat = loaded minus idle median (%.3f - %.3f)", loaded, idle);
	capacity_free(c);

	/* An upload into a deep queue, then quiet: the router stops sending
	 * at once (the intervals look idle) while the queue drains for two
	 * seconds, and the next two have no sample of their own (the last
	 * one carried). None of them may move the idle baseline. */
	check(!capacity_new(&c), "capacity estimator, a second one");
	memset(s, 0, sizeof(s));
	t = 0;
	capacity_sample(c, t, s);
	feed_second(c, s, &t, 1, 2000, 0.040);
	capacity_bufferbloat(c, &idle, NULL);
	check(fabs(idle - 0.040) < 1e-9,
	      "just started, quiet: the first interval sets the idle baseline (%.3f s)", idle);
	for (int i = 0; i < 3; i++)
		feed_second(c, s, &t, 1, 2000, 0.040);
	for (int i = 0; i < 5; i++)
		feed_second(c, s, &t, 1, 2500000, 0.600);
	feed_second(c, s, &t, 1, 2000, 0.500); /* draining: quiet, yet 500 ms */
	feed_second(c, s, &t, 1, 2000, 0.450);
	feed_second(c, s, &t, 1, 2000, NAN);   /* no sample: the 450 ms carried */
	feed_second(c, s, &t, 1, 2000, NAN);
	capacity_bufferbloat(c, &idle, NULL);
	check(fabs(idle - 0.040) < 1e-9,
	      "a queue draining after an upload, and samples carried from it, leave the idle baseline (%.3f s)",
	      idle);
	for (int i = 0; i < 12; i++)
		feed_second(c, s, &t, 1, 2000, 0.041);
	capacity_bufferbloat(c, &idle, NULL);
	check(fabs(idle - 0.041) < 1e-9, "quiet a while with samples of its own: the baseline follows (%.3f s)",
	      idle);
	{
		/* Each threshold and just under it (seconds). */
		static const struct { double s; const char *g; } grades[] = {
			{0, "A+"},       {0.00499, "A+"}, {0.005, "A"},   {0.02999, "A"},
			{0.030, "B"},    {0.05999, "B"},  {0.060, "C"},   {0.19999, "C"},
			{0.200, "D"},    {0.39999, "D"},  {0.400, "F"},   {5, "F"},
		};

		for (size_t i = 0; i < sizeof(grades) / sizeof(grades[0]); i++)
			check(!strcmp(capacity_grade(grades[i].s), grades[i].g), "grade of %g ms is %s (%s)",
			      grades[i].s * 1e3, grades[i].g, capacity_grade(grades[i].s));
		check(!strcmp(capacity_grade(NAN), ""), "no grade without a bufferbloat figure");
	}
	capacity_free(c);
	{
		double v;

		check(!parse_bitrate("100M", &v) && v == 100e6, "plan rate 100M = 100 Mbit/s");
		check(!parse_bitrate("20Mbit", &v) && v == 20e6 && !parse_bitrate("512k", &v) &&
			      v == 512e3 && !parse_bitrate("1.5Gbps", &v) && v == 1.5e9,
		      "plan rate units");
		check(parse_bitrate("fast", &v) && parse_bitrate("-1M", &v) && parse_bitrate("10MB", &v),
		      "bad plan rates rejected");
	}
}

/* Peaks per scrape: each page shows the highest 100 ms rate since the page
 * the previous scrape took; unscraped pages let the window grow. */
static void test_capacity_peak(void)
{
	struct ispmon_dir_stats s[2] = {0};
	struct metrics_store store;
	struct capacity *c;
	struct mbuf b;
	double t = 100, w, p; /* 1/8 s steps: exact in binary */
	char *text;
	size_t len;

	check(!capacity_new(&c) && !metrics_store_init(&store), "peak: estimator and page store");
	capacity_sample(c, t, s);
	capacity_peak_commit(c, t, metrics_store_served(&store));
	/* 1 s at 800 kB/s with one 125 ms burst at 4 MB/s. */
	for (int i = 0; i < 8; i++) {
		s[0].bytes += i == 3 ? 500000 : 100000;
		t += 0.125;
		capacity_sample(c, t, s);
	}
	capacity_peak_commit(c, t, metrics_store_served(&store));
	p = capacity_peak(c, 0, &w);
	check(p == 4e6 && w == 1.0, "the burst is the peak (%.0f B/s over %.2f s)", p, w);
	mbuf_init(&b);
	capacity_render(c, (double[2]){0, 0}, &b);
	metrics_store_publish(&store, &b);
	for (int i = 0; i < 8; i++) {
		s[0].bytes += 100000;
		t += 0.125;
		capacity_sample(c, t, s);
	}
	/* Nobody scraped the page with the burst: the next one still has it. */
	check(!metrics_store_served(&store), "an unscraped page is not served");
	capacity_peak_commit(c, t, metrics_store_served(&store));
	p = capacity_peak(c, 0, &w);
	check(p == 4e6 && w == 2.0, "unscraped: the window grows and keeps the burst (%.0f B/s over %.2f s)",
	      p, w);
	mbuf_init(&b);
	capacity_render(c, (double[2]){0, 0}, &b);
	check(b.p && strstr(b.p, "ispmon_passive_throughput_peak_bytes_per_second{direction=\"download\"} 4000000\n") &&
		      strstr(b.p, "ispmon_passive_throughput_peak_window_seconds 2\n"),
	      "the page shows the peak and its window");
	metrics_store_publish(&store, &b);
	check(!metrics_store_copy(&store, &text, &len) && metrics_store_served(&store),
	      "a scrape marks the page served");
	free(text);
	for (int i = 0; i < 8; i++) {
		s[0].bytes += 200000;
		t += 0.125;
		capacity_sample(c, t, s);
	}
	capacity_peak_commit(c, t, metrics_store_served(&store));
	p = capacity_peak(c, 0, &w);
	check(p == 1.6e6 && w == 1.0,
	      "after a scrape the window restarts at the scraped page (%.0f B/s over %.2f s)", p, w);
	metrics_store_destroy(&store);
	capacity_free(c);
}

static void test_config_tcp_hooks(void)
{
	static const char *const modes[] = {"auto", "fentry", "tracepoint", "kprobe", "off"};
	struct config cfg;
	char err[256];
	int r;

	r = parse(err, sizeof(err), &cfg, (char *)NULL);
	check(r == CONFIG_RUN && cfg.tcp_hooks == TCPSOCK_AUTO, "--tcp-hooks defaults to auto");
	for (unsigned i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		r = parse(err, sizeof(err), &cfg, "--tcp-hooks", modes[i], (char *)NULL);
		check(r == CONFIG_RUN && cfg.tcp_hooks == (enum tcpsock_mode)i &&
			      !strcmp(tcpsock_mode_name(cfg.tcp_hooks), modes[i]),
		      "--tcp-hooks %s", modes[i]);
	}
	r = parse(err, sizeof(err), &cfg, "--tcp-hooks=kprobe", (char *)NULL);
	check(r == CONFIG_RUN && cfg.tcp_hooks == TCPSOCK_KPROBE, "--tcp-hooks=VALUE form");
	static const char *const bad[] = {"", "tp_btf", "Auto", "kprobes", "fentry,kprobe"};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		r = parse(err, sizeof(err), &cfg, "--tcp-hooks", bad[i], (char *)NULL);
		check(r == -EINVAL && strstr(err, "invalid --tcp-hooks") && !strchr(err, '\n'),
		      "--tcp-hooks '%s' -> one-line error (%s)", bad[i], err);
	}
	r = parse(err, sizeof(err), &cfg, "--tcp-hooks", (char *)NULL);
	check(r == -EINVAL && strstr(err, "needs a value"), "--tcp-hooks without a value (%s)", err);
}

static void test_tcpsock_ladder(void)
{
	static const struct {
		enum tcpsock_mode mode;
		const char *want;
	} cases[] = {
		{TCPSOCK_AUTO, "fentry tp_btf raw_tp kprobe"},
		{TCPSOCK_FENTRY, "fentry"},
		{TCPSOCK_TRACEPOINT, "tp_btf raw_tp"},
		{TCPSOCK_KPROBE, "kprobe"},
		{TCPSOCK_OFF, ""},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum tcpsock_rung rungs[TCPSOCK_RUNGS];
		unsigned n = tcpsock_ladder(cases[i].mode, rungs);
		char got[64] = "";

		for (unsigned k = 0; k < n; k++)
			snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", k ? " " : "",
				 tcpsock_rung_name(rungs[k]));
		check(!strcmp(got, cases[i].want), "ladder for %s: '%s'",
		      tcpsock_mode_name(cases[i].mode), got);
	}
}

static void test_tcpsock_tuple(void)
{
	struct ispmon_tcp_tuple t, u;

	check(!tcpsock_tuple("198.51.100.2", 40000, "203.0.113.10", 8080, &t) && t.family == 4 &&
		      t.saddr[0] == htonl(0xc6336402) && t.daddr[0] == htonl(0xcb00710a) &&
		      !t.saddr[1] && !t.daddr[3] && t.sport == 40000 && t.dport == 8080,
	      "IPv4 tuple: addresses in word 0, ports in host order");
	check(!tcpsock_tuple("2001:db8:2::2", 1, "2001:db8:3::10", 65535, &t) && t.family == 6 &&
		      t.saddr[0] == htonl(0x20010db8) && t.daddr[3] == htonl(0x10),
	      "IPv6 tuple");
	check(!tcpsock_tuple("::ffff:198.51.100.2", 40000, "::ffff:203.0.113.10", 8080, &u) &&
		      !tcpsock_tuple("198.51.100.2", 40000, "203.0.113.10", 8080, &t) &&
		      !memcmp(&t, &u, sizeof(t)),
	      "IPv4-mapped IPv6 folds to the IPv4 tuple (as the kernel side does)");
	check(!tcpsock_tuple("fe80::1%eth0", 5, "fe80::2%eth0", 6, &t) && t.family == 6 &&
		      t.saddr[0] == htonl(0xfe800000),
	      "a %%scope suffix is ignored");
	check(tcpsock_tuple("198.51.100.2", 1, "2001:db8::1", 2, &t) == -EINVAL,
	      "mixed families rejected");
	check(tcpsock_tuple("198.51.100.2", 0, "203.0.113.10", 80, &t) == -EINVAL &&
		      tcpsock_tuple("198.51.100.2", 1, "203.0.113.10", 65536, &t) == -EINVAL,
	      "ports outside 1..65535 rejected");
	check(tcpsock_tuple("example.com", 1, "203.0.113.10", 80, &t) == -EINVAL &&
		      tcpsock_tuple(NULL, 1, "203.0.113.10", 80, &t) == -EINVAL,
	      "names and NULL rejected");
}

static void test_tcpsock_buckets(void)
{
	int ok_cwnd = 1, ok_dur = 1;

	for (uint32_t c = 0; c < 200000; c += c < 70000 ? 1 : 997) {
		uint32_t b = ispmon_tcp_cwnd_bucket(c);

		if (b < ISPMON_TCP_CWND_EDGES)
			ok_cwnd &= c <= (1u << b) && (b == 0 || c > (1u << (b - 1)));
		else
			ok_cwnd &= c > (1u << (ISPMON_TCP_CWND_EDGES - 1));
	}
	check(ok_cwnd, "cwnd buckets: le 2^b holds every cwnd, the rest in +Inf");
	check(ispmon_tcp_cwnd_bucket(1) == 0 && ispmon_tcp_cwnd_bucket(2) == 1 &&
		      ispmon_tcp_cwnd_bucket(3) == 2 && ispmon_tcp_cwnd_bucket(4) == 2 &&
		      ispmon_tcp_cwnd_bucket(65536) == 16 && ispmon_tcp_cwnd_bucket(65537) == 17 &&
		      ispmon_tcp_cwnd_bucket(0xffffffffu) == 17,
	      "cwnd bucket edges 1, 2, 4, ..., 65536, +Inf");
	for (uint64_t us = 0; us < 100000000000ULL; us = us * 3 / 2 + 1) {
		uint32_t b = ispmon_tcp_dur_bucket(us);

		if (b < ISPMON_TCP_DUR_EDGES)
			ok_dur &= us <= ispmon_tcp_dur_edge_ms(b) * 1000 &&
				  (b == 0 || us > ispmon_tcp_dur_edge_ms(b - 1) * 1000);
		else
			ok_dur &= us > ispmon_tcp_dur_edge_ms(ISPMON_TCP_DUR_EDGES - 1) * 1000;
	}
	check(ok_dur, "duration buckets: each lifetime under its bucket's edge, above the one before");
	check(ispmon_tcp_dur_bucket(10000) == 0 && ispmon_tcp_dur_bucket(10001) == 1 &&
		      ispmon_tcp_dur_bucket(86400000001ULL) == ISPMON_TCP_DUR_EDGES,
	      "duration edges: 10 ms inclusive, beyond a day in +Inf");
}

static void test_tcpsock_render(void)
{
	static struct tcpsock_view v;
	struct ispmon_tcp_stats *n = &v.total[ISPMON_TCP_G_NETWORK];
	struct ispmon_tcp_stats a = {0}, b0 = {0};
	struct mbuf b;
	const char *p;
	double q;

	memset(&v, 0, sizeof(v));
	n->rtt_hist[ISPMON_TCP_SRTT][ispmon_rtt_bucket(40100)] = 90;
	n->rtt_hist[ISPMON_TCP_SRTT][ispmon_rtt_bucket(300000)] = 10;
	n->rtt_sum_us[ISPMON_TCP_SRTT] = 90 * 40100 + 10 * 300000;
	n->retrans_segs = 7;
	n->bytes_acked = 3000542;
	n->events[ISPMON_TCP_EV_ACTIVE_OPEN] = 4;
	n->events[ISPMON_TCP_EV_CLOSED] = 4;
	n->dur_hist[ispmon_tcp_dur_bucket(1500000)] = 4;
	n->dur_sum_us = 6000000;
	n->cwnd_hist[ispmon_tcp_cwnd_bucket(10)] = 100;
	n->cwnd_sum = 1000;
	v.total[ISPMON_TCP_G_LOOPBACK].events[ISPMON_TCP_EV_PASSIVE_OPEN] = 2;
	v.window[ISPMON_TCP_G_NETWORK] = *n;
	v.window_s = 60;
	v.sockets = 3;
	mbuf_init(&b);
	tcpsock_render_view(&v, &b);
	check(!b.err, "TCP view renders");
	check(strstr(b.p, "# TYPE ispmon_tcp_rtt_seconds histogram\n") &&
		      strstr(b.p, "ispmon_tcp_rtt_seconds_count{estimator=\"srtt\",scope=\"network\"} 100\n") &&
		      strstr(b.p, "ispmon_tcp_rtt_seconds_bucket{estimator=\"srtt\",scope=\"network\",le=\"+Inf\"} 100\n") &&
		      strstr(b.p, "ispmon_tcp_rtt_seconds_count{estimator=\"rcv_rtt\",scope=\"loopback\"} 0\n"),
	      "RTT histogram per estimator and scope, _count = +Inf bucket");
	p = strstr(b.p, "ispmon_tcp_rtt_seconds_bucket{estimator=\"srtt\",scope=\"network\",le=\"0.04096\"}");
	check(p && !strncmp(strchr(p, '}'), "} 90\n", 5), "cumulative bucket le 40.96 ms holds the 90 samples at 40.1 ms");
	p = strstr(b.p, "ispmon_tcp_rtt_percentile_seconds{estimator=\"srtt\",scope=\"network\",percentile=\"50\"} ");
	q = p ? strtod(strchr(p, '}') + 2, NULL) : 0;
	check(fabs(q - 0.0401) < 0.0401 * 0.05, "srtt p50 %.5f within 5%% of 40.1 ms (full resolution)", q);
	check(!strstr(b.p, "percentile_seconds{estimator=\"rcv_rtt\""), "no percentile without samples");
	check(strstr(b.p, "ispmon_tcp_retransmits_total{scope=\"network\"} 7\n") &&
		      strstr(b.p, "ispmon_tcp_bytes_acked_total{scope=\"network\"} 3000542\n") &&
		      strstr(b.p, "ispmon_tcp_connections_total{event=\"active_open\",scope=\"network\"} 4\n") &&
		      strstr(b.p, "ispmon_tcp_connections_total{event=\"passive_open\",scope=\"loopback\"} 2\n") &&
		      strstr(b.p, "ispmon_tcp_sockets 3\n"),
	      "counters by scope and event, the socket gauge");
	check(strstr(b.p, "ispmon_tcp_connection_duration_seconds_bucket{scope=\"network\",le=\"1\"} 0\n") &&
		      strstr(b.p, "ispmon_tcp_connection_duration_seconds_bucket{scope=\"network\",le=\"2.5\"} 4\n") &&
		      strstr(b.p, "ispmon_tcp_connection_duration_seconds_sum{scope=\"network\"} 6\n"),
	      "duration histogram in seconds");
	check(strstr(b.p, "ispmon_tcp_cwnd_segments_bucket{scope=\"network\",le=\"8\"} 0\n") &&
		      strstr(b.p, "ispmon_tcp_cwnd_segments_bucket{scope=\"network\",le=\"16\"} 100\n") &&
		      strstr(b.p, "ispmon_tcp_cwnd_segments_bucket{scope=\"network\",le=\"+Inf\"} 100\n"),
	      "cwnd histogram in segments");
	mbuf_free(&b);

	a.retrans_segs = 5;
	a.rtt_hist[1][3] = 9;
	b0.retrans_segs = 2;
	b0.rtt_hist[1][3] = 10;
	tcpsock_stats_sub(&a, &b0);
	check(a.retrans_segs == 3 && a.rtt_hist[1][3] == 0, "stats difference, never below 0");
}

int main(void)
{
	log_set_level(LOG_ERROR);
	test_duration();
	test_listen();
	test_config();
	test_config_ping();
	test_default_route();
	test_log_quote();
	test_metrics();
	test_report();
	test_rtt_buckets();
	test_rtt_quantile();
	test_devices_topn();
	test_leases();
	test_capacity();
	test_capacity_peak();
	test_ping_wire();
	test_ping_stats();
	test_ping_loopback();
	test_config_tcp_hooks();
	test_tcpsock_ladder();
	test_tcpsock_tuple();
	test_tcpsock_buckets();
	test_tcpsock_render();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
