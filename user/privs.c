#include "privs.h"

#include <bpf/bpf.h>
#include <dirent.h>
#include <errno.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BIT(c) (1ULL << (c))
#define MAX_THREADS 256
#define ACK_TIMEOUT_MS 2000

/*
 * What each thread does to itself, in a signal handler on the other
 * threads: only raw system calls there. The request is written before the
 * first signal is sent and read-only until the last one is answered.
 */
static struct {
	uint64_t keep;
	int last_cap;
	atomic_int acks;
	atomic_int err;
} req;

static int caps_get(uint64_t *eff)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d))
		return -errno;
	*eff = d[0].effective | (uint64_t)d[1].effective << 32;
	return 0;
}

static int caps_set(uint64_t keep)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2] = {
		{.effective = (uint32_t)keep, .permitted = (uint32_t)keep},
		{.effective = (uint32_t)(keep >> 32), .permitted = (uint32_t)(keep >> 32)},
	};

	return syscall(SYS_capset, &h, d) ? -errno : 0;
}

/* This thread only. The bounding set and the securebits need CAP_SETPCAP:
 * without it (started with fewer capabilities) they stay, which no_new_privs
 * makes harmless, as nothing can be gained through exec any more. */
static int drop_self(uint64_t keep, int last_cap)
{
	uint64_t eff = 0;
	int err = caps_get(&eff);

	if (err)
		return err;
	if (eff & BIT(CAP_SETPCAP)) {
		for (int c = 0; c <= last_cap; c++)
			if (!(keep & BIT(c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) && errno != EINVAL)
				return -errno;
		/* uid 0 gets no capabilities back through exec or setuid. */
		if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED |
						     SECBIT_KEEP_CAPS_LOCKED, 0, 0, 0))
			return -errno;
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL)
		return -errno;
	err = caps_set(keep & eff);
	if (err)
		return err;
	return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ? -errno : 0;
}

static void on_signal(int sig)
{
	int saved = errno, err = drop_self(req.keep, req.last_cap), none = 0;

	if (err)
		atomic_compare_exchange_strong(&req.err, &none, err);
	atomic_fetch_add(&req.acks, 1);
	errno = saved;
}

static int last_cap(void)
{
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "r");
	int v = CAP_LAST_CAP;

	if (f) {
		if (fscanf(f, "%d", &v) != 1 || v < 0 || v > 63)
			v = CAP_LAST_CAP;
		fclose(f);
	}
	return v;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* Signal one thread and wait for its answer; a thread that exits first
 * needs nothing dropped. */
static int drop_thread(pid_t pid, pid_t tid, int sig)
{
	int before = atomic_load(&req.acks);

	if (syscall(SYS_tgkill, pid, tid, sig))
		return errno == ESRCH ? 0 : -errno;
	for (int t = 0; t < ACK_TIMEOUT_MS; t++) {
		if (atomic_load(&req.acks) != before)
			return 0;
		if (syscall(SYS_tgkill, pid, tid, 0) && errno == ESRCH)
			return 0;
		sleep_ms(1);
	}
	return -ETIMEDOUT; /* the thread blocks the signal */
}

/* One pass over the threads not yet done; *found: how many were new. */
static int drop_pass(pid_t *done, unsigned *n_done, int sig, unsigned *found)
{
	pid_t pid = getpid(), self = (pid_t)syscall(SYS_gettid);
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int err = 0;

	*found = 0;
	if (!d)
		return -errno;
	while (!err && (e = readdir(d))) {
		pid_t tid = (pid_t)atoi(e->d_name);
		unsigned i;

		if (tid <= 0 || tid == self)
			continue;
		for (i = 0; i < *n_done && done[i] != tid; i++)
			;
		if (i < *n_done)
			continue;
		if (*n_done == MAX_THREADS) {
			err = -E2BIG;
			break;
		}
		err = drop_thread(pid, tid, sig);
		done[(*n_done)++] = tid;
		(*found)++;
	}
	closedir(d);
	return err;
}

int privs_drop(uint64_t keep)
{
	struct sigaction sa = {.sa_handler = on_signal}, old;
	pid_t done[MAX_THREADS];
	unsigned n_done = 0, found;
	int sig, err = -EAGAIN;

	req.keep = keep;
	req.last_cap = last_cap();
	atomic_store(&req.acks, 0);
	atomic_store(&req.err, 0);
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	/* A real-time signal nobody uses (valgrind, for one, keeps the
	 * highest for itself and refuses it). */
	for (sig = SIGRTMAX; sig >= SIGRTMIN; sig--) {
		if (sigaction(sig, NULL, &old) || old.sa_handler != SIG_DFL ||
		    (old.sa_flags & SA_SIGINFO))
			continue;
		if (!sigaction(sig, &sa, NULL)) {
			err = 0;
			break;
		}
	}
	if (err)
		return err;
	/* A thread started meanwhile by one not yet done shows up in the
	 * next pass; one started by a done thread inherits the dropped set. */
	do
		err = drop_pass(done, &n_done, sig, &found);
	while (!err && found);
	sigaction(sig, &old, NULL);
	if (!err)
		err = atomic_load(&req.err);
	if (!err)
		err = drop_self(keep, req.last_cap);
	return err;
}

struct probe {
	uint64_t keep;
	int fd;
	int ok;
};

/* A thread of its own: capabilities are per thread, so it can try what a
 * dropped process could do without taking anything from the others. */
static void *probe_thread(void *arg)
{
	struct probe *p = arg;
	struct bpf_map_info info;
	__u32 len = sizeof(info);
	unsigned char key[256];

	memset(&info, 0, sizeof(info));
	if (caps_set(p->keep))
		return NULL;
	p->ok = !bpf_obj_get_info_by_fd(p->fd, &info, &len) && info.key_size <= sizeof(key) &&
		(!bpf_map_get_next_key(p->fd, NULL, key) || errno == ENOENT);
	return NULL;
}

uint64_t privs_needed(int bpf_fd)
{
	uint64_t keep = BIT(CAP_NET_ADMIN), eff = 0;
	struct probe p = {.fd = bpf_fd};
	pthread_t t;

	/* Nothing can be kept that is not there to begin with. */
	if (caps_get(&eff))
		return 0;
	p.keep = keep & eff;
	if (bpf_fd >= 0 && !pthread_create(&t, NULL, probe_thread, &p))
		pthread_join(t, NULL);
	if (!p.ok)
		keep |= last_cap() >= CAP_BPF ? BIT(CAP_BPF) : BIT(CAP_SYS_ADMIN);
	return keep & eff;
}

const char *privs_names(uint64_t caps, char *buf, size_t len)
{
	static const struct {
		int cap;
		const char *name;
	} names[] = {{CAP_NET_ADMIN, "cap_net_admin"}, {CAP_NET_RAW, "cap_net_raw"},
		     {CAP_BPF, "cap_bpf"}, {CAP_PERFMON, "cap_perfmon"},
		     {CAP_SYS_ADMIN, "cap_sys_admin"}};
	size_t off = 0;

	if (!len)
		return buf;
	buf[0] = '\0';
	for (int c = 0; c < 64; c++) {
		const char *name = NULL;
		char num[16];
		int n;

		if (!(caps & BIT(c)))
			continue;
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (names[i].cap == c)
				name = names[i].name;
		if (!name) {
			snprintf(num, sizeof(num), "cap_%d", c);
			name = num;
		}
		n = snprintf(buf + off, len - off, "%s%s", off ? "," : "", name);
		if (n < 0 || (size_t)n >= len - off)
			break;
		off += (size_t)n;
	}
	if (!off)
		snprintf(buf, len, "none");
	return buf;
}
