/*
 * libFuzzer: the --web-config file (user/webconfig.c), a small strict
 * parser of a YAML subset. Each input is a whole file; it is parsed (no
 * file is read, no password checked):
 *   - no crash or sanitizer report
 *   - a refusal comes with a one-line reason starting "web config"
 *   - what is accepted is usable: TLS has both files, auth has users, each
 *     user name is non-empty, unique, without ':' or control characters,
 *     each hash is a 60-character bcrypt hash
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "webconfig.h"

static void fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_webconfig: %s: %.200s\n", what, detail ? detail : "");
	abort();
}

static int printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct web_config wc;
	char err[256];
	int r;

	err[0] = '\0';
	r = webconfig_parse((const char *)data, size, &wc, err, sizeof(err));
	if (r) {
		if (r != -EINVAL || strncmp(err, "web config", 10) || strchr(err, '\n'))
			fail("refusal without a one-line reason", err);
		return 0;
	}
	if (!wc.tls && !wc.auth)
		fail("accepted with nothing configured", NULL);
	if (wc.tls && (!wc.cert_file[0] || !wc.key_file[0] || !printable(wc.cert_file) ||
		       !printable(wc.key_file)))
		fail("TLS without usable cert_file and key_file", wc.cert_file);
	if (wc.auth != (wc.n_users > 0) || wc.n_users > WEBCONFIG_MAX_USERS)
		fail("auth on without users, or users without auth", NULL);
	for (unsigned i = 0; i < wc.n_users; i++) {
		const struct web_user *u = &wc.users[i];

		if (!u->name[0] || strchr(u->name, ':') || !printable(u->name))
			fail("unusable user name", u->name);
		if (strlen(u->hash) != WEBCONFIG_HASH_LEN || strncmp(u->hash, "$2", 2))
			fail("not a bcrypt hash", u->hash);
		for (unsigned j = 0; j < i; j++)
			if (!strcmp(wc.users[j].name, u->name))
				fail("duplicate user", u->name);
	}
	return 0;
}
