/*
 * lanflood: IPv4/UDP frames from many household devices (one source MAC
 * each) sent out of one interface with AF_PACKET, for tests/test_stress.sh.
 *
 *   lanflood --iface IF --dst-mac MAC --dst-ip A [--devices N] [--frames F]
 *            [--rounds R] [--batch B] [--gap-ms G] [--mac-prefix XX]
 *            [--src-net A.B.C] [--dport P]
 *
 * Device i (0 <= i < N <= 65536) has the MAC 02:XX:00:00:i>>8:i&255 (unicast,
 * locally administered) and the address A.B.C.(10 + i % 240). A round sends
 * F frames from every device, B devices at a time with G ms between the
 * batches; R rounds follow one another. Frame sizes vary (60..(60+199)
 * bytes: Ethernet + IPv4 + UDP + payload, no FCS) and are summed exactly.
 *
 * Output: "frames=N bytes=B" (what the kernel accepted), exit 0; 1 when a
 * frame could not be sent after retries, 2 on bad usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void usage(void)
{
	fprintf(stderr, "usage: lanflood --iface IF --dst-mac MAC --dst-ip A [--devices N] [--frames F]\n"
			"       [--rounds R] [--batch B] [--gap-ms G] [--mac-prefix XX]\n"
			"       [--src-net A.B.C] [--dport P]\n");
	exit(2);
}

static void sleep_ms(double ms)
{
	struct timespec ts;

	if (ms <= 0)
		return;
	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)((ms - (double)ts.tv_sec * 1000) * 1e6);
	nanosleep(&ts, NULL);
}

static uint16_t csum(const uint8_t *p, size_t n)
{
	uint32_t sum = 0;

	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)p[i] << 8 | p[i + 1];
	if (n & 1)
		sum += (uint32_t)p[n - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* One frame from device dev; returns its length. */
static size_t build(uint8_t *f, const uint8_t dst_mac[6], unsigned mac_prefix, unsigned dev,
		    const uint8_t src_net[3], const uint8_t dst_ip[4], uint16_t dport, size_t payload,
		    uint16_t ip_id)
{
	uint8_t *ip = f + 14, *udp = ip + 20;
	size_t ip_len = 20 + 8 + payload;

	memcpy(f, dst_mac, 6);
	f[6] = 0x02;
	f[7] = (uint8_t)mac_prefix;
	f[8] = 0;
	f[9] = 0;
	f[10] = (uint8_t)(dev >> 8);
	f[11] = (uint8_t)dev;
	put16(f + 12, ETH_P_IP);
	memset(ip, 0, 20);
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)ip_len);
	put16(ip + 4, ip_id);
	ip[8] = 64;
	ip[9] = IPPROTO_UDP;
	memcpy(ip + 12, src_net, 3);
	ip[15] = (uint8_t)(10 + dev % 240);
	memcpy(ip + 16, dst_ip, 4);
	put16(ip + 10, csum(ip, 20));
	put16(udp, (uint16_t)(40000 + dev % 20000));
	put16(udp + 2, dport);
	put16(udp + 4, (uint16_t)(8 + payload));
	put16(udp + 6, 0); /* no UDP checksum (allowed over IPv4) */
	for (size_t i = 0; i < payload; i++)
		udp[8 + i] = (uint8_t)(dev + i);
	return 14 + ip_len;
}

int main(int argc, char **argv)
{
	const char *ifname = NULL;
	unsigned devices = 1000, frames = 1, rounds = 1, batch = 1000, mac_prefix = 0x1d;
	unsigned dport = 9;
	double gap_ms = 0;
	uint8_t dst_mac[6], dst_ip[4], src_net[3] = {192, 0, 2};
	bool have_mac = false, have_ip = false;
	struct sockaddr_ll sll = {0};
	unsigned long long n_frames = 0, n_bytes = 0;
	uint8_t frame[512];
	uint16_t ip_id = 1;
	int fd;

	for (int i = 1; i + 1 < argc; i += 2) {
		const char *o = argv[i], *v = argv[i + 1];
		unsigned m[6], a[4];

		if (!strcmp(o, "--iface")) {
			ifname = v;
		} else if (!strcmp(o, "--dst-mac")) {
			if (sscanf(v, "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6)
				usage();
			for (int k = 0; k < 6; k++)
				dst_mac[k] = (uint8_t)m[k];
			have_mac = true;
		} else if (!strcmp(o, "--dst-ip")) {
			have_ip = inet_pton(AF_INET, v, dst_ip) == 1;
		} else if (!strcmp(o, "--src-net")) {
			if (sscanf(v, "%u.%u.%u", &a[0], &a[1], &a[2]) != 3 || a[0] > 255 || a[1] > 255 ||
			    a[2] > 255)
				usage();
			for (int k = 0; k < 3; k++)
				src_net[k] = (uint8_t)a[k];
		} else if (!strcmp(o, "--devices")) {
			devices = (unsigned)strtoul(v, NULL, 10);
		} else if (!strcmp(o, "--frames")) {
			frames = (unsigned)strtoul(v, NULL, 10);
		} else if (!strcmp(o, "--rounds")) {
			rounds = (unsigned)strtoul(v, NULL, 10);
		} else if (!strcmp(o, "--batch")) {
			batch = (unsigned)strtoul(v, NULL, 10);
		} else if (!strcmp(o, "--gap-ms")) {
			gap_ms = strtod(v, NULL);
		} else if (!strcmp(o, "--mac-prefix")) {
			mac_prefix = (unsigned)strtoul(v, NULL, 16);
		} else if (!strcmp(o, "--dport")) {
			dport = (unsigned)strtoul(v, NULL, 10);
		} else {
			usage();
		}
	}
	if (argc % 2 == 0 || !ifname || !have_mac || !have_ip || !devices || devices > 65536 ||
	    !frames || frames > 1000 || !rounds || rounds > 1000 || !batch || mac_prefix > 255 ||
	    !dport || dport > 65535 || !(gap_ms >= 0 && gap_ms <= 10000))
		usage();

	fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0); /* protocol 0: send only */
	if (fd < 0) {
		perror("lanflood: socket");
		return 1;
	}
	sll.sll_family = AF_PACKET;
	sll.sll_ifindex = (int)if_nametoindex(ifname);
	sll.sll_halen = 6;
	memcpy(sll.sll_addr, dst_mac, 6);
	if (!sll.sll_ifindex) {
		fprintf(stderr, "lanflood: no interface %s\n", ifname);
		return 1;
	}
	for (unsigned r = 0; r < rounds; r++) {
		for (unsigned d0 = 0; d0 < devices; d0 += batch) {
			for (unsigned d = d0; d < devices && d < d0 + batch; d++) {
				for (unsigned k = 0; k < frames; k++) {
					size_t payload = 18 + (d * 7 + k * 13 + r * 29) % 200;
					size_t len = build(frame, dst_mac, mac_prefix, d, src_net, dst_ip,
							   (uint16_t)dport, payload, ip_id++);
					int tries = 0;

					/* ENOBUFS: the qdisc is full for a moment. */
					while (sendto(fd, frame, len, 0, (struct sockaddr *)&sll,
						      sizeof(sll)) != (ssize_t)len) {
						if ((errno != ENOBUFS && errno != EAGAIN) || ++tries > 1000) {
							perror("lanflood: sendto");
							printf("frames=%llu bytes=%llu\n", n_frames, n_bytes);
							return 1;
						}
						sleep_ms(1);
					}
					n_frames++;
					n_bytes += len;
					/* The receiving veth queues up to netdev_max_backlog
					 * frames per CPU: never come close. */
					if (n_frames % 200 == 0)
						sleep_ms(1);
				}
			}
			if (d0 + batch < devices || r + 1 < rounds)
				sleep_ms(gap_ms);
		}
	}
	close(fd);
	printf("frames=%llu bytes=%llu\n", n_frames, n_bytes);
	return 0;
}
