/*
 * Unit tests of the security modules: the web config parser and password
 * checks (user/webconfig.c), and dropping capabilities in every thread
 * (user/privs.c, in a child process so the rest keeps root).
 */
#include <bpf/bpf.h>
#include <dirent.h>
#include <errno.h>
#include <linux/capability.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "privs.h"
#include "tap.h"
#include "webconfig.h"

/* bcrypt of "secret" (cost 5) and of "pa:ss wörd" (cost 4). */
#define HASH_SECRET "$2y$05$lJel4kCNt1vjZd.oSY1VpOW2NkUGurG2wYTs/TMSIGwC/BpLxsKXK"
#define HASH_OTHER "$2b$04$xFXVedLF1ILBvN/IXVaFb.dCJFMDStCna5OTu1qBD6uYkoKgxsb0K"

static int parse(const char *text, struct web_config *wc, char *err, size_t errlen)
{
	err[0] = '\0';
	return webconfig_parse(text, strlen(text), wc, err, errlen);
}

static void test_parse_good(void)
{
	static struct web_config wc;
	char err[256];
	int r;

	r = parse("# ispmon\n"
		  "---\n"
		  "tls_server_config:\n"
		  "  cert_file: /etc/ispmon/server.crt   # comment\n"
		  "  key_file: \"server key.pem\"\n"
		  "\n"
		  "basic_auth_users:\n"
		  "    prometheus: " HASH_SECRET "\n"
		  "    'grafana#1': '" HASH_OTHER "'\r\n",
		  &wc, err, sizeof(err));
	check(r == 0 && wc.tls && wc.auth && wc.n_users == 2, "full config parses (%s)", err);
	check(!strcmp(wc.cert_file, "/etc/ispmon/server.crt") &&
		      !strcmp(wc.key_file, "server key.pem"),
	      "cert_file plain with a trailing comment, key_file quoted with a blank");
	check(!strcmp(wc.users[0].name, "prometheus") && !strcmp(wc.users[0].hash, HASH_SECRET) &&
		      !strcmp(wc.users[1].name, "grafana#1") &&
		      !strcmp(wc.users[1].hash, HASH_OTHER),
	      "users: plain and quoted names and hashes, CRLF line end");
	r = parse("basic_auth_users:\n  u: " HASH_SECRET, &wc, err, sizeof(err));
	check(r == 0 && !wc.tls && wc.auth && wc.n_users == 1,
	      "auth only, no final newline (%s)", err);
	r = parse("tls_server_config:\n cert_file: a\n key_file: b\n", &wc, err, sizeof(err));
	check(r == 0 && wc.tls && !wc.auth, "TLS only, one-space indent (%s)", err);
}

static void test_parse_bad(void)
{
	static const struct {
		const char *text, *want;
	} bad[] = {
		{"", "neither tls_server_config nor basic_auth_users"},
		{"# only a comment\n", "neither tls_server_config nor basic_auth_users"},
		{"tls_server_config:\n  cert_file: a\n", "needs both cert_file and key_file"},
		{"tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: x\n",
		 "line 4: unsupported tls_server_config key 'client_auth_type'"},
		{"http_server_config:\n  http2: true\n", "line 1: unsupported key 'http_server_config'"},
		{"tls_server_config: {cert_file: a, key_file: b}\n", "wants its settings on the lines below"},
		{"tls_server_config:\n\tcert_file: a\n", "line 2: tab in indentation"},
		{"tls_server_config:\n  cert_file: a\n    key_file: b\n", "line 3: inconsistent indentation"},
		{"  cert_file: a\n", "line 1: indented line outside a section"},
		{"tls_server_config:\n  cert_file:\n", "'cert_file' has no value"},
		{"tls_server_config:\n  cert_file: a\n  cert_file: b\n  key_file: c\n",
		 "line 3: duplicate key 'cert_file'"},
		{"tls_server_config:\n  cert_file: 'a\n", "unterminated quote"},
		{"tls_server_config:\n  cert_file: *anchor\n", "only plain or quoted scalars"},
		{"tls_server_config:\n  cert_file: \"a\\tb\"\n", "escapes and inner quotes"},
		{"basic_auth_users:\n", "basic_auth_users has no users"},
		{"basic_auth_users:\n  u: plaintext\n", "line 2: user 'u': not a bcrypt hash"},
		{"basic_auth_users:\n  u: $1$abc$defghijklmnopqrstuvwxyz\n", "not a bcrypt hash"},
		{"basic_auth_users:\n  u: $2y$03$lJel4kCNt1vjZd.oSY1VpOW2NkUGurG2wYTs/TMSIGwC/BpLxsKXK\n",
		 "not a bcrypt hash"},
		{"basic_auth_users:\n  u: $2y$05$lJel4kCNt1vjZd.oSY1VpOW2NkUGurG2wYTs/TMSIGwC/BpLxsKX!\n",
		 "not a bcrypt hash"},
		{"basic_auth_users:\n  u: " HASH_SECRET "\n  u: " HASH_OTHER "\n", "duplicate user 'u'"},
		{"basic_auth_users:\n  'a:b': " HASH_SECRET "\n", "has a ':'"},
		{"basic_auth_users:\n  - u\n", "lists are not supported"},
		{"basic_auth_users:\nbasic_auth_users:\n", "line 2: duplicate key 'basic_auth_users'"},
		{"tls_server_config\n", "line 1: want 'key: value'"},
		{"tls_server_config:\n  cert_file: a\n  key_file: b\nfoo\n", "line 4: want 'key: value'"},
	};
	static struct web_config wc;
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = parse(bad[i].text, &wc, err, sizeof(err));

		check(r == -EINVAL && strstr(err, bad[i].want) && !strchr(err, '\n') &&
			      !strncmp(err, "web config", 10),
		      "bad web config %zu: one-line error with '%s' (%s)", i, bad[i].want, err);
	}
	{
		char text[2100];

		snprintf(text, sizeof(text), "basic_auth_users:\n  %01500d: x\n", 0);
		check(parse(text, &wc, err, sizeof(err)) == -EINVAL && strstr(err, "line 2: longer than"),
		      "over-long line refused (%s)", err);
		memcpy(text, "basic_auth_users:\n  u\0: x\n", 26);
		check(webconfig_parse(text, 26, &wc, err, sizeof(err)) == -EINVAL && strstr(err, "NUL"),
		      "NUL byte refused (%s)", err);
	}
	{
		size_t n = 65 * 1024;
		char *big = malloc(n);

		if (!big)
			return;
		memset(big, '\n', n);
		check(webconfig_parse(big, n, &wc, err, sizeof(err)) == -EINVAL &&
			      strstr(err, "larger than"),
		      "a config over 64 kB refused (%s)", err);
		free(big);
	}
}

static void test_check_user(void)
{
	static const char path[] = "/tmp/ispmon-test-webconfig.yml";
	struct web_config *wc = NULL;
	char err[256] = "";
	FILE *f = fopen(path, "w");
	bool ok;

	if (!f) {
		check(0, "write %s", path);
		return;
	}
	fprintf(f, "basic_auth_users:\n  prom: %s\n  other: %s\n", HASH_SECRET, HASH_OTHER);
	fclose(f);
	check(!webconfig_load(path, &wc, err, sizeof(err)) && wc, "load a web config file (%s)", err);
	unlink(path);
	if (!wc)
		return;
	check(!webconfig_check_user(wc, "prom", "wrong") && !wc->users[0].have_cached,
	      "wrong password refused, nothing cached");
	check(webconfig_check_user(wc, "prom", "secret") && wc->users[0].have_cached,
	      "right password accepted and remembered");
	check(webconfig_check_user(wc, "prom", "secret"), "right password again (from the cache)");
	check(!webconfig_check_user(wc, "prom", "secret2") && !webconfig_check_user(wc, "prom", "secre") &&
		      !webconfig_check_user(wc, "prom", ""),
	      "near misses refused after a cached success");
	check(!webconfig_check_user(wc, "other", "secret"), "one user's password is not another's");
	check(webconfig_check_user(wc, "other", "pa:ss w\xc3\xb6rd"),
	      "password with a colon, a blank and UTF-8");
	check(!webconfig_check_user(wc, "nobody", "secret") && !webconfig_check_user(wc, "", "") &&
		      !webconfig_check_user(wc, NULL, NULL) && !webconfig_check_user(wc, "prom", NULL),
	      "unknown, empty and missing users refused");
	ok = webconfig_check_user(wc, "prom", "secret");
	check(ok, "still accepted after the refusals");
	webconfig_free(wc);

	err[0] = '\0';
	check(webconfig_load("/nonexistent/web.yml", &wc, err, sizeof(err)) == -ENOENT &&
		      strstr(err, "cannot read the web config '/nonexistent/web.yml'"),
	      "missing file: one-line error (%s)", err);
}

/* --- privileges ---------------------------------------------------------- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int stop;

static void *idle_thread(void *arg)
{
	pthread_mutex_lock(&lock);
	while (!stop)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
	return arg;
}

static unsigned long long status_hex(const char *path, const char *field)
{
	char line[256];
	unsigned long long v = ~0ULL;
	size_t n = strlen(field);
	FILE *f = fopen(path, "r");

	if (!f)
		return v;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, n) && line[n] == ':')
			v = strtoull(line + n + 1, NULL, 16);
	fclose(f);
	return v;
}

/* Every thread's sets are `want`, inheritable and ambient empty,
 * no_new_privs set. Returns the number of threads checked, -1 on a miss. */
static int all_threads(unsigned long long want)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	char path[300];
	int n = 0;

	if (!d)
		return -1;
	while (n >= 0 && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/status", e->d_name);
		if (status_hex(path, "CapEff") != want || status_hex(path, "CapPrm") != want ||
		    status_hex(path, "CapBnd") != want || status_hex(path, "CapInh") != 0 ||
		    status_hex(path, "CapAmb") != 0 || status_hex(path, "NoNewPrivs") != 1)
			n = -1;
		else
			n++;
	}
	closedir(d);
	return n;
}

/* In a child: exit status is a bit set of failed checks. */
static int privs_child(int map_fd)
{
	unsigned long long want = 1ULL << CAP_NET_ADMIN;
	uint64_t keep = privs_needed(map_fd);
	pthread_t t[3], late;
	int bad = 0, key = 0, n;
	long long val;

	for (int i = 0; i < 3; i++)
		pthread_create(&t[i], NULL, idle_thread, NULL);
	if (privs_drop(keep))
		bad |= 1;
	n = all_threads(keep);
	if (n != 4)
		bad |= 2;
	pthread_create(&late, NULL, idle_thread, NULL);
	if (all_threads(keep) != 5)
		bad |= 4;
	/* What privs_needed said is enough is enough: the map reads. */
	if (bpf_map_lookup_elem(map_fd, &key, &val))
		bad |= 8;
	/* Only what was kept: no raw socket, no new BPF map. */
	if (bpf_map_create(BPF_MAP_TYPE_ARRAY, NULL, 4, 8, 1, NULL) >= 0)
		bad |= 16;
	if (keep != want && keep != (want | 1ULL << CAP_BPF))
		bad |= 32;
	pthread_mutex_lock(&lock);
	stop = 1;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	pthread_join(late, NULL);
	return bad;
}

static void test_privs(void)
{
	int map_fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, NULL, 4, 8, 1, NULL);
	int st = 0;
	char names[64];
	pid_t pid;

	if (geteuid() != 0 || map_fd < 0) {
		printf("# privs: skipped, needs root and BPF\n");
		return;
	}
	printf("# privs: this kernel needs %s after setup\n",
	       privs_names(privs_needed(map_fd), names, sizeof(names)));
	fflush(stdout);
	pid = fork();
	if (pid == 0)
		_exit(privs_child(map_fd));
	waitpid(pid, &st, 0);
	st = WIFEXITED(st) ? WEXITSTATUS(st) : 255;
	check(!(st & 1), "privs_drop returns 0 (status %#x)", st);
	check(!(st & 2), "every thread (main and 3 others) keeps only what privs_needed said, "
			 "inheritable and ambient empty, no_new_privs");
	check(!(st & 4), "a thread started afterwards inherits the dropped sets");
	check(!(st & 8), "the map still reads with the capabilities kept");
	check(!(st & 16), "creating a BPF map fails afterwards");
	check(!(st & 32), "kept: cap_net_admin, and cap_bpf only where the kernel needs it");
	check(!strcmp(privs_names(1ULL << CAP_NET_ADMIN | 1ULL << CAP_BPF, names, sizeof(names)),
		      "cap_net_admin,cap_bpf") &&
		      !strcmp(privs_names(0, names, sizeof(names)), "none") &&
		      !strcmp(privs_names(1ULL << 45, names, sizeof(names)), "cap_45"),
	      "capability names for the log");
	close(map_fd);
}

int main(void)
{
	test_parse_good();
	test_parse_bad();
	test_check_user();
	test_privs();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
