#include "webconfig.h"

#include <crypt.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#define MAX_LINE 1024
#define MAX_CONFIG_BYTES (64 * 1024)
#define MAX_PEM_BYTES (1024 * 1024)

/* Verifies passwords; one lock because crypt_data is large (32 kB) and
 * the web server checks one request at a time anyway. */
struct webconfig_verifier {
	pthread_mutex_t lock;
	struct crypt_data cd;
	unsigned char salt[16];
};

enum section { SEC_NONE, SEC_TLS, SEC_USERS };

struct parser {
	struct web_config *wc;
	char *err;
	size_t errlen;
	unsigned line;
	enum section sec;
	int sec_indent; /* 0: not known yet */
	bool seen_tls, seen_users;
};

__attribute__((format(printf, 2, 3))) static int fail(struct parser *p, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (p->line)
		snprintf(p->err, p->errlen, "web config line %u: %s", p->line, msg);
	else
		snprintf(p->err, p->errlen, "web config: %s", msg);
	return -EINVAL;
}

/* A plain or quoted scalar; quoted ones have no escapes here. *s is
 * trimmed already. Returns 0 and the text in out. */
static int scalar(struct parser *p, const char *s, size_t n, char *out, size_t outlen,
		  const char *what)
{
	if (n && (s[0] == '\'' || s[0] == '"')) {
		if (n < 2 || s[n - 1] != s[0])
			return fail(p, "%s: unterminated quote", what);
		s++;
		n -= 2;
		if (memchr(s, s[-1], n) || memchr(s, '\\', n))
			return fail(p, "%s: escapes and inner quotes are not supported", what);
	} else if (n && strchr("&*!|>[]{}%@`", s[0])) {
		return fail(p, "%s: only plain or quoted scalars are supported", what);
	}
	if (n >= outlen)
		return fail(p, "%s: longer than %zu bytes", what, outlen - 1);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return fail(p, "%s: control character", what);
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

/* $2a$, $2b$ or $2y$, a cost of 04 to 31, 53 characters of bcrypt's
 * base64. */
static bool valid_bcrypt(const char *h)
{
	static const char b64[] = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	int cost;

	if (strlen(h) != WEBCONFIG_HASH_LEN || h[0] != '$' || h[1] != '2' ||
	    !strchr("aby", h[2]) || !h[2] || h[3] != '$' || h[4] < '0' || h[4] > '9' ||
	    h[5] < '0' || h[5] > '9' || h[6] != '$')
		return false;
	cost = (h[4] - '0') * 10 + (h[5] - '0');
	if (cost < 4 || cost > 31)
		return false;
	for (int i = 7; i < WEBCONFIG_HASH_LEN; i++)
		if (!strchr(b64, h[i]) || !h[i])
			return false;
	return true;
}

static int entry(struct parser *p, const char *key, const char *val, size_t vlen)
{
	struct web_config *wc = p->wc;

	if (p->sec == SEC_TLS) {
		char *dst;

		if (!strcmp(key, "cert_file"))
			dst = wc->cert_file;
		else if (!strcmp(key, "key_file"))
			dst = wc->key_file;
		else
			return fail(p, "unsupported tls_server_config key '%s' (ispmon knows "
				       "cert_file and key_file)", key);
		if (*dst)
			return fail(p, "duplicate key '%s'", key);
		if (scalar(p, val, vlen, dst, WEBCONFIG_PATH_MAX, key))
			return -EINVAL;
		if (!*dst)
			return fail(p, "%s is empty", key);
		return 0;
	}
	/* basic_auth_users: a user name and its hash. */
	{
		struct web_user *u;

		if (strchr(key, ':'))
			return fail(p, "user name '%s' has a ':' (basic auth cannot carry it)", key);
		for (unsigned i = 0; i < wc->n_users; i++)
			if (!strcmp(wc->users[i].name, key))
				return fail(p, "duplicate user '%s'", key);
		if (wc->n_users == WEBCONFIG_MAX_USERS)
			return fail(p, "more than %d users", WEBCONFIG_MAX_USERS);
		u = &wc->users[wc->n_users];
		if (strlen(key) >= sizeof(u->name))
			return fail(p, "user name longer than %zu bytes", sizeof(u->name) - 1);
		if (vlen > 2 * WEBCONFIG_HASH_LEN ||
		    scalar(p, val, vlen, u->hash, sizeof(u->hash), "password hash")) {
			if (vlen > 2 * WEBCONFIG_HASH_LEN)
				return fail(p, "user '%s': not a bcrypt hash", key);
			return -EINVAL;
		}
		if (!valid_bcrypt(u->hash))
			return fail(p, "user '%s': not a bcrypt hash (want $2y$/$2b$/$2a$, e.g. "
				       "from htpasswd -nbB)", key);
		snprintf(u->name, sizeof(u->name), "%s", key);
		wc->n_users++;
		return 0;
	}
}

/* Drop a comment: '#' at the start or after a blank, outside quotes. */
static size_t strip_comment(const char *s, size_t n)
{
	char q = 0;

	for (size_t i = 0; i < n; i++) {
		if (q) {
			if (s[i] == q)
				q = 0;
		} else if (s[i] == '\'' || s[i] == '"') {
			if (!i || s[i - 1] == ' ' || s[i - 1] == ':')
				q = s[i];
		} else if (s[i] == '#' && (!i || s[i - 1] == ' ' || s[i - 1] == '\t')) {
			return i;
		}
	}
	return n;
}

static int parse_line(struct parser *p, const char *s, size_t n)
{
	char key[WEBCONFIG_MAX_USER];
	const char *colon, *v;
	size_t indent = 0;

	if (memchr(s, '\0', n))
		return fail(p, "NUL byte");
	if (n && s[n - 1] == '\r')
		n--;
	n = strip_comment(s, n);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	while (indent < n && s[indent] == ' ')
		indent++;
	if (indent == n)
		return 0; /* blank or comment */
	if (s[indent] == '\t')
		return fail(p, "tab in indentation (YAML allows spaces only)");
	if (!indent && n == 3 && !memcmp(s, "---", 3) && !p->seen_tls && !p->seen_users)
		return 0; /* document start */
	s += indent;
	n -= indent;
	if (s[0] == '-')
		return fail(p, "lists are not supported");
	/* key: value, the key plain or quoted */
	if (s[0] == '\'' || s[0] == '"') {
		const char *end = memchr(s + 1, s[0], n - 1);

		if (!end || (size_t)(end - s) + 1 >= n || end[1] != ':')
			return fail(p, "want 'key: value'");
		colon = end + 1;
		if (scalar(p, s, (size_t)(colon - s), key, sizeof(key), "key"))
			return -EINVAL;
	} else {
		colon = memchr(s, ':', n);
		while (colon && (size_t)(colon - s) + 1 < n && colon[1] != ' ')
			colon = memchr(colon + 1, ':', n - (size_t)(colon + 1 - s));
		if (!colon)
			return fail(p, "want 'key: value'");
		size_t klen = (size_t)(colon - s);

		while (klen && s[klen - 1] == ' ')
			klen--;
		if (scalar(p, s, klen, key, sizeof(key), "key"))
			return -EINVAL;
	}
	if (!*key)
		return fail(p, "empty key");
	v = colon + 1;
	while ((size_t)(v - s) < n && *v == ' ')
		v++;

	if (!indent) {
		if ((size_t)(v - s) != n)
			return fail(p, "'%s' wants its settings on the lines below, indented", key);
		if (!strcmp(key, "tls_server_config")) {
			if (p->seen_tls)
				return fail(p, "duplicate key '%s'", key);
			p->seen_tls = true;
			p->sec = SEC_TLS;
		} else if (!strcmp(key, "basic_auth_users")) {
			if (p->seen_users)
				return fail(p, "duplicate key '%s'", key);
			p->seen_users = true;
			p->sec = SEC_USERS;
		} else {
			return fail(p, "unsupported key '%s' (ispmon knows tls_server_config and "
				       "basic_auth_users)", key);
		}
		p->sec_indent = 0;
		return 0;
	}
	if (p->sec == SEC_NONE)
		return fail(p, "indented line outside a section");
	if (!p->sec_indent)
		p->sec_indent = (int)indent;
	else if ((int)indent != p->sec_indent)
		return fail(p, "inconsistent indentation");
	if ((size_t)(v - s) == n)
		return fail(p, "'%s' has no value", key);
	return entry(p, key, v, n - (size_t)(v - s));
}

int webconfig_parse(const char *text, size_t len, struct web_config *wc, char *err,
		    size_t errlen)
{
	struct parser p = {.wc = wc, .err = err, .errlen = errlen};
	size_t off = 0;

	memset(wc, 0, sizeof(*wc));
	if (len > MAX_CONFIG_BYTES)
		return fail(&p, "larger than %d bytes", MAX_CONFIG_BYTES);
	while (off < len) {
		const char *nl = memchr(text + off, '\n', len - off);
		size_t n = nl ? (size_t)(nl - (text + off)) : len - off;

		p.line++;
		if (n > MAX_LINE)
			return fail(&p, "longer than %d bytes", MAX_LINE);
		if (parse_line(&p, text + off, n))
			return -EINVAL;
		off += n + 1;
	}
	p.line = 0;
	if (p.seen_tls && (!*wc->cert_file || !*wc->key_file))
		return fail(&p, "tls_server_config needs both cert_file and key_file");
	if (p.seen_users && !wc->n_users)
		return fail(&p, "basic_auth_users has no users");
	if (!p.seen_tls && !p.seen_users)
		return fail(&p, "neither tls_server_config nor basic_auth_users is set");
	wc->tls = p.seen_tls;
	wc->auth = p.seen_users;
	return 0;
}

/* The whole file, NUL-terminated, at most max bytes. */
static int read_file(const char *path, size_t max, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t n;

	if (!f)
		return -errno;
	buf = malloc(max + 2);
	if (!buf) {
		fclose(f);
		return -ENOMEM;
	}
	n = fread(buf, 1, max + 1, f);
	if (ferror(f)) {
		fclose(f);
		free(buf);
		return -EIO;
	}
	fclose(f);
	if (n > max) {
		free(buf);
		return -EFBIG;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

/* Relative paths are taken from the config file's directory, as the
 * exporter toolkit does. */
static void resolve(const char *config_path, char *file)
{
	const char *slash = strrchr(config_path, '/');
	char tmp[WEBCONFIG_PATH_MAX];

	if (file[0] == '/' || !slash)
		return;
	if (snprintf(tmp, sizeof(tmp), "%.*s/%s", (int)(slash - config_path), config_path,
		     file) < (int)sizeof(tmp))
		memcpy(file, tmp, sizeof(tmp));
}

static int load_pem(const char *what, const char *path, char **out, char *err, size_t errlen)
{
	size_t len;
	int e = read_file(path, MAX_PEM_BYTES, out, &len);

	if (e) {
		snprintf(err, errlen, "web config: cannot read %s '%s': %s", what, path,
			 e == -EFBIG ? "larger than 1 MiB" : strerror(-e));
		return e;
	}
	return 0;
}

/* The same check the TLS server makes on start, but with its reason. */
static int check_tls(const struct web_config *wc, char *err, size_t errlen)
{
	gnutls_certificate_credentials_t cred;
	gnutls_datum_t cert = {(unsigned char *)wc->cert_pem, (unsigned)strlen(wc->cert_pem)};
	gnutls_datum_t key = {(unsigned char *)wc->key_pem, (unsigned)strlen(wc->key_pem)};
	int r;

	if (gnutls_certificate_allocate_credentials(&cred) < 0) {
		snprintf(err, errlen, "web config: out of memory");
		return -ENOMEM;
	}
	r = gnutls_certificate_set_x509_key_mem2(cred, &cert, &key, GNUTLS_X509_FMT_PEM, NULL, 0);
	gnutls_certificate_free_credentials(cred);
	if (r < 0) {
		snprintf(err, errlen, "web config: certificate '%s' with key '%s': %s",
			 wc->cert_file, wc->key_file, gnutls_strerror(r));
		return -EINVAL;
	}
	return 0;
}

int webconfig_load(const char *path, struct web_config **out, char *err, size_t errlen)
{
	struct web_config *wc = calloc(1, sizeof(*wc));
	char *text = NULL;
	size_t len;
	int e;

	if (!wc) {
		snprintf(err, errlen, "web config: out of memory");
		return -ENOMEM;
	}
	e = read_file(path, MAX_CONFIG_BYTES, &text, &len);
	if (e) {
		snprintf(err, errlen, "cannot read the web config '%s': %s", path,
			 e == -EFBIG ? "larger than 64 kB" : strerror(-e));
		free(wc);
		return e;
	}
	e = webconfig_parse(text, len, wc, err, errlen);
	free(text);
	if (!e && wc->tls) {
		resolve(path, wc->cert_file);
		resolve(path, wc->key_file);
		e = load_pem("cert_file", wc->cert_file, &wc->cert_pem, err, errlen);
		if (!e)
			e = load_pem("key_file", wc->key_file, &wc->key_pem, err, errlen);
		if (!e)
			e = check_tls(wc, err, errlen);
	}
	if (!e && wc->auth) {
		wc->verifier = calloc(1, sizeof(*wc->verifier));
		if (!wc->verifier) {
			snprintf(err, errlen, "web config: out of memory");
			e = -ENOMEM;
		} else {
			pthread_mutex_init(&wc->verifier->lock, NULL);
			if (getrandom(wc->verifier->salt, sizeof(wc->verifier->salt), 0) !=
			    (ssize_t)sizeof(wc->verifier->salt)) {
				e = -errno;
				snprintf(err, errlen, "web config: no random bytes: %s", strerror(-e));
			}
		}
	}
	if (e) {
		webconfig_free(wc);
		return e;
	}
	*out = wc;
	return 0;
}

static bool same(const void *a, const void *b, size_t n)
{
	const volatile unsigned char *x = a, *y = b;
	unsigned char d = 0;

	for (size_t i = 0; i < n; i++)
		d |= x[i] ^ y[i];
	return !d;
}

/* Salted digest of the pair, for the cache of passwords that matched. */
static int digest(const struct webconfig_verifier *v, const char *user, const char *pass,
		  unsigned char out[32])
{
	gnutls_hash_hd_t h;

	if (gnutls_hash_init(&h, GNUTLS_DIG_SHA256) < 0)
		return -ENOMEM;
	gnutls_hash(h, v->salt, sizeof(v->salt));
	gnutls_hash(h, user, strlen(user) + 1);
	gnutls_hash(h, pass, strlen(pass));
	gnutls_hash_deinit(h, out);
	return 0;
}

bool webconfig_check_user(struct web_config *wc, const char *user, const char *pass)
{
	struct webconfig_verifier *v = wc->verifier;
	struct web_user *u = NULL;
	unsigned char d[32];
	const char *h;
	bool ok, have_digest;

	if (!v || !user || !pass || !wc->n_users)
		return false;
	for (unsigned i = 0; i < wc->n_users; i++)
		if (!strcmp(wc->users[i].name, user))
			u = &wc->users[i];
	have_digest = !digest(v, user, pass, d);
	pthread_mutex_lock(&v->lock);
	if (u && have_digest && u->have_cached && same(d, u->cached, sizeof(d))) {
		pthread_mutex_unlock(&v->lock);
		return true;
	}
	/* An unknown user is checked against a known user's hash, at its cost,
	 * so that the time taken does not tell which names exist. */
	h = crypt_rn(pass, u ? u->hash : wc->users[0].hash, &v->cd, sizeof(v->cd));
	ok = u && h && strlen(h) == WEBCONFIG_HASH_LEN && same(h, u->hash, WEBCONFIG_HASH_LEN);
	if (ok && have_digest) {
		memcpy(u->cached, d, sizeof(d));
		u->have_cached = true;
	}
	pthread_mutex_unlock(&v->lock);
	return ok;
}

void webconfig_free(struct web_config *wc)
{
	if (!wc)
		return;
	if (wc->verifier) {
		pthread_mutex_destroy(&wc->verifier->lock);
		explicit_bzero(wc->verifier, sizeof(*wc->verifier));
		free(wc->verifier);
	}
	if (wc->key_pem) {
		explicit_bzero(wc->key_pem, strlen(wc->key_pem));
		free(wc->key_pem);
	}
	free(wc->cert_pem);
	free(wc);
}
