/* Command line: parsing and validation, no side effects. */
#ifndef ISPMON_CONFIG_H
#define ISPMON_CONFIG_H

#include <net/if.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

#include "devices.h"
#include "log.h"
#include "ping.h"
#include "speedtest.h"
#include "tcpsock.h"

struct listen_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	int any; /* ":PORT": all addresses, both families where possible */
	char text[80];
};

#define CONFIG_MAX_LAN 4
#define CONFIG_MAX_LEASES DEVICES_LEASE_FILES /* dnsmasq's (IPv4) and odhcpd's (IPv6) */
#define CONFIG_MAX_PING PING_MAX_TARGETS

struct config {
	char iface[IF_NAMESIZE]; /* empty: the default-route interface */
	char lan_iface[CONFIG_MAX_LAN][IF_NAMESIZE];
	unsigned n_lan;       /* 0: find them (interfaces with private addresses) */
	unsigned max_devices; /* 0: no per-device metrics, no LAN hooks */
	/* DHCP leases files for device names; none given: look */
	const char *leases[CONFIG_MAX_LEASES];
	unsigned n_leases;
	unsigned max_flows;   /* entries of the flow and pending tables */
	struct listen_addr listen;
	const char *web_config; /* --web-config FILE, NULL: plain HTTP, no auth */
	uint64_t interval_ms;
	enum log_level log_level;
	const char *btf_path; /* custom kernel BTF, NULL: the running kernel's */
	/* Ping probes. No targets: the default gateway and public resolvers. */
	const char *ping_targets[CONFIG_MAX_PING]; /* point into argv */
	unsigned n_ping;
	uint64_t ping_interval_ms; /* 0: no pinging */
	uint64_t ping_timeout_ms;
	struct speedtest_config speed; /* URLs point into argv or are the defaults */
	double plan_Bps[2];            /* --plan-download/--plan-upload, 0: not given */
	enum tcpsock_mode tcp_hooks;   /* how to hook the router's own TCP sockets */
};

enum config_result {
	CONFIG_RUN = 0,     /* go on */
	CONFIG_EXIT_OK = 1, /* --help or --version was printed */
};

/*
 * Parse argv into cfg. Returns CONFIG_RUN, CONFIG_EXIT_OK, or -EINVAL with
 * a one-line reason in err.
 */
int config_parse(int argc, char **argv, struct config *cfg, char *err,
		 size_t errlen);

/* A line rate in bits per second as ISPs quote it: "100M", "100Mbit",
 * "1.5G", "512k", "250Mbps"; a bare number is bit/s. */
int parse_bitrate(const char *s, double *bits_per_s);
/* "1s", "250ms", "2m", "1h", "1.5s"; a bare number means seconds. */
int parse_duration_ms(const char *s, uint64_t *out);
/* ":8000", "0.0.0.0:8000", "[::1]:8000", "127.0.0.1:9100", "localhost:8000" */
int parse_listen(const char *s, struct listen_addr *out);

#endif
