/*
 * libFuzzer: the command line. The input is argv (NUL-separated, up to 64
 * arguments after "ispmon"); config_parse must either accept it with every
 * field in its documented range or refuse it with a one-line reason, and
 * never touch memory it does not own. Every argument also goes through
 * parse_duration_ms and parse_listen on its own.
 */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define MAX_ARGS 64

static void fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_config: %s (%s)\n", what, detail ? detail : "");
	abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* --help and --version print to stdout: keep the fuzzer's output
	 * readable. */
	if (!freopen("/dev/null", "w", stdout))
		return 0;
	return 0;
}

/*
 * glibc's getopt keeps a pointer into the last argv it parsed when that
 * parse stopped inside a cluster of short options ("-hV"). config_parse
 * resets optind to 1, which does not clear it; only optind = 0 does. In
 * ispmon config_parse runs once per process, so the harness resets getopt
 * itself before each input (see the report of issue 9).
 */
static void reset_getopt(void)
{
	static char arg0[] = "ispmon";
	char *av[] = {arg0, NULL};

	optind = 0;
	opterr = 0;
	getopt(1, av, "");
}

static void check_duration(const char *s)
{
	uint64_t ms = 12345;

	if (!parse_duration_ms(s, &ms) && ms > 1000000000000ULL + 1)
		fail("parse_duration_ms: value out of range", s);
}

static void check_listen(const char *s)
{
	struct listen_addr a;

	if (parse_listen(s, &a))
		return;
	if (!memchr(a.text, 0, sizeof(a.text)) || !a.text[0])
		fail("parse_listen: text not terminated or empty", s);
	if (a.len != sizeof(struct sockaddr_in) && a.len != sizeof(struct sockaddr_in6))
		fail("parse_listen: bad length", s);
	if (a.ss.ss_family == AF_INET) {
		if (!((struct sockaddr_in *)&a.ss)->sin_port)
			fail("parse_listen: port 0", s);
	} else if (a.ss.ss_family == AF_INET6) {
		if (!((struct sockaddr_in6 *)&a.ss)->sin6_port)
			fail("parse_listen: port 0", s);
	} else {
		fail("parse_listen: no family", s);
	}
}

static void check_config(const struct config *c)
{
	if (c->interval_ms < 50 || c->interval_ms > 3600 * 1000)
		fail("interval out of range", NULL);
	if (c->n_lan > CONFIG_MAX_LAN || c->n_ping > CONFIG_MAX_PING)
		fail("too many interfaces or targets", NULL);
	if (c->max_devices > 1000)
		fail("max_devices out of range", NULL);
	if (!memchr(c->iface, 0, sizeof(c->iface)))
		fail("iface not terminated", NULL);
	for (unsigned i = 0; i < c->n_lan; i++)
		if (!c->lan_iface[i][0] || !memchr(c->lan_iface[i], 0, sizeof(c->lan_iface[i])))
			fail("lan_iface empty or not terminated", NULL);
	for (unsigned i = 0; i < c->n_ping; i++)
		if (!ping_valid_host(c->ping_targets[i]))
			fail("invalid ping target accepted", c->ping_targets[i]);
	if (c->ping_interval_ms &&
	    (c->ping_interval_ms < PING_MIN_INTERVAL_MS || c->ping_interval_ms > PING_MAX_INTERVAL_MS))
		fail("ping interval out of range", NULL);
	if (c->ping_timeout_ms < PING_MIN_TIMEOUT_MS || c->ping_timeout_ms > PING_MAX_TIMEOUT_MS)
		fail("ping timeout out of range", NULL);
	if (c->speed.n_servers < 1 || c->speed.n_servers > SPEEDTEST_MAX_SERVERS)
		fail("speed-test servers out of range", NULL);
	for (unsigned i = 0; i < c->speed.n_servers; i++)
		if (!c->speed.urls[i])
			fail("speed-test server without URL", NULL);
	if (c->speed.streams < 1 || c->speed.streams > SPEEDTEST_MAX_STREAMS)
		fail("speed-test streams out of range", NULL);
	if (!memchr(c->listen.text, 0, sizeof(c->listen.text)))
		fail("listen text not terminated", NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1), *argv[MAX_ARGS + 2], err[256];
	static char arg0[] = "ispmon";
	struct config cfg;
	int argc = 1, rc;
	size_t i = 0;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = 0;
	argv[0] = arg0;
	while (i < size && argc <= MAX_ARGS) {
		argv[argc++] = buf + i;
		i += strlen(buf + i) + 1;
	}
	argv[argc] = NULL;
	for (int a = 1; a < argc; a++) {
		check_duration(argv[a]);
		check_listen(argv[a]);
	}

	reset_getopt();
	memset(err, 0x55, sizeof(err));
	rc = config_parse(argc, argv, &cfg, err, sizeof(err));
	if (rc == CONFIG_RUN)
		check_config(&cfg);
	else if (rc == -EINVAL && (!memchr(err, 0, sizeof(err)) || !err[0]))
		fail("refused without a one-line reason", NULL);
	else if (rc != CONFIG_EXIT_OK && rc != -EINVAL)
		fail("unexpected return value", NULL);
	free(buf);
	return 0;
}
