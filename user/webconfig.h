/*
 * --web-config FILE: TLS and basic auth for the web endpoint, in the
 * format of the Prometheus exporter toolkit's web-config.yml, this subset:
 *
 *   tls_server_config:
 *     cert_file: server.crt      # relative paths: to the config file
 *     key_file: server.key
 *   basic_auth_users:
 *     prometheus: $2y$10$...     # bcrypt hashes (htpasswd -nbB)
 *
 * Anything else (other keys, flow style, anchors, multi-line values) is an
 * error, so a setting that would be ignored can never look applied.
 */
#ifndef ISPMON_WEBCONFIG_H
#define ISPMON_WEBCONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define WEBCONFIG_MAX_USERS 64
#define WEBCONFIG_MAX_USER 64  /* bytes of a user name, with the NUL */
#define WEBCONFIG_HASH_LEN 60  /* $2b$NN$ + 22 salt + 31 hash characters */
#define WEBCONFIG_PATH_MAX 512

struct web_user {
	char name[WEBCONFIG_MAX_USER];
	char hash[WEBCONFIG_HASH_LEN + 1];
	unsigned char cached[32]; /* digest of the last password that matched */
	bool have_cached;
};

struct web_config {
	bool tls;
	char cert_file[WEBCONFIG_PATH_MAX], key_file[WEBCONFIG_PATH_MAX];
	char *cert_pem, *key_pem; /* read by webconfig_load */
	bool auth;
	struct web_user users[WEBCONFIG_MAX_USERS];
	unsigned n_users;
	struct webconfig_verifier *verifier; /* set up by webconfig_load */
};

/*
 * Parse text (len bytes, need not be NUL-terminated) into wc, which is
 * cleared first. Syntax and values only: no file is read. Returns 0 or
 * -EINVAL with a one-line reason in err.
 */
int webconfig_parse(const char *text, size_t len, struct web_config *wc, char *err,
		    size_t errlen);

/*
 * Read and parse path, then read and check the certificate and key (PEM,
 * and that they belong together). Returns 0 or a negative errno with a
 * one-line reason in err; *out is freed with webconfig_free.
 */
int webconfig_load(const char *path, struct web_config **out, char *err, size_t errlen);

/*
 * Whether user/pass are a configured pair. bcrypt is slow on purpose, so a
 * password that matched is remembered (as a salted digest) and the next
 * check of the same one is a digest comparison; an unknown user costs a
 * bcrypt run like a known one. Thread-safe.
 */
bool webconfig_check_user(struct web_config *wc, const char *user, const char *pass);

void webconfig_free(struct web_config *wc);

#endif
