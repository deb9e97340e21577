// hostport.h: "HOST:PORT" / "[V6]:PORT" / ":PORT" listen specs for the test
// servers (httpd, dnsd), resolved numerically for a passive socket.
#ifndef TESTS_TOOLS_HOSTPORT_H
#define TESTS_TOOLS_HOSTPORT_H

#include <netdb.h>
#include <string.h>
#include <sys/socket.h>

// Returns getaddrinfo's result for spec (free it with freeaddrinfo), or NULL
// with *gai_err set (0 for a malformed spec).
static inline struct addrinfo *hostport_resolve(const char *spec, int socktype, int *gai_err)
{
	char host[128];
	const char *port;
	struct addrinfo hints = {
		.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
		.ai_socktype = socktype,
	}, *ai = NULL;

	*gai_err = 0;
	if (spec[0] == '[') {
		const char *end = strchr(spec, ']');
		if (!end || end[1] != ':' || (size_t)(end - spec - 1) >= sizeof(host))
			return NULL;
		memcpy(host, spec + 1, (size_t)(end - spec - 1));
		host[end - spec - 1] = 0;
		port = end + 2;
	} else {
		const char *colon = strrchr(spec, ':');
		if (!colon || (size_t)(colon - spec) >= sizeof(host))
			return NULL;
		memcpy(host, spec, (size_t)(colon - spec));
		host[colon - spec] = 0;
		port = colon + 1;
	}
	*gai_err = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
	return *gai_err ? NULL : ai;
}

#endif
