/*
 * c_udp_echo: a lean UDP echo server for the AccessGateway frame (docs/UDP.md), the peer for
 * perf/udp_ab.py. The same loop shape as the gateway's UDP path, with nothing else:
 *
 *   - one UDP socket per thread (--threads, default 1), SO_REUSEPORT, 4 MiB buffers asked;
 *   - a blocking recvmmsg of up to 32 datagrams, each checked to be whole frames of 18...--max-frame
 *     bytes (anything else is dropped, as the gateway drops it);
 *   - every valid datagram sent back unchanged to its source with one sendmmsg per batch
 *     (a datagram the socket cannot take is dropped, as the gateway drops it).
 *
 * No sessions, no address token, no idle timer, no threads handing work to each other: the floor
 * for a UDP echo on this machine.
 *
 * Build: cc -O2 -pthread -o c_udp_echo udp_echo.c
 * Usage: c_udp_echo [--host 127.0.0.1] [--port 9300] [--threads N] [--max-frame BYTES]
 * Stops on SIGTERM or SIGINT with exit code 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HEADER_SIZE 18u
#define BATCH 32
#define DATAGRAM 65536

static const char *g_host = "127.0.0.1";
static int g_port = 9300;
static int g_threads = 1;
static uint32_t g_max_frame = 1u << 20;

static int whole_frames(const uint8_t *p, size_t n) {
    size_t at = 0;
    if (n < HEADER_SIZE) return 0;
    while (at < n) {
        if (n - at < HEADER_SIZE) return 0;
        uint32_t len = (uint32_t)p[at] << 24 | (uint32_t)p[at + 1] << 16 | (uint32_t)p[at + 2] << 8 | p[at + 3];
        if (len < HEADER_SIZE || len > g_max_frame || len > n - at) return 0;
        at += len;
    }
    return 1;
}

static int open_socket(void) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int one = 1, size = 4 << 20;
    struct sockaddr_in a = {0};
    if (fd < 0) { perror("socket"); exit(1); }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)g_port);
    if (inet_pton(AF_INET, g_host, &a.sin_addr) != 1) { fprintf(stderr, "bad host %s\n", g_host); exit(2); }
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) { perror("bind"); exit(1); }
    return fd;
}

static void *worker(void *arg) {
    int fd = (int)(intptr_t)arg;
    static __thread uint8_t buffers[BATCH][DATAGRAM];
    struct mmsghdr in[BATCH], out[BATCH];
    struct iovec iov[BATCH], oiov[BATCH];
    struct sockaddr_in names[BATCH];
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iov[i].iov_base = buffers[i];
            iov[i].iov_len = DATAGRAM;
            memset(&in[i].msg_hdr, 0, sizeof in[i].msg_hdr);
            in[i].msg_hdr.msg_iov = &iov[i];
            in[i].msg_hdr.msg_iovlen = 1;
            in[i].msg_hdr.msg_name = &names[i];
            in[i].msg_hdr.msg_namelen = sizeof names[i];
        }
        /* Blocks for the first datagram, then takes whatever else is already there. */
        int n = recvmmsg(fd, in, BATCH, MSG_WAITFORONE, NULL);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("recvmmsg");
            return NULL;
        }
        int m = 0;
        for (int i = 0; i < n; i++) {
            if ((in[i].msg_hdr.msg_flags & MSG_TRUNC) || !whole_frames(buffers[i], in[i].msg_len)) continue;
            oiov[m].iov_base = buffers[i];
            oiov[m].iov_len = in[i].msg_len;
            memset(&out[m].msg_hdr, 0, sizeof out[m].msg_hdr);
            out[m].msg_hdr.msg_iov = &oiov[m];
            out[m].msg_hdr.msg_iovlen = 1;
            out[m].msg_hdr.msg_name = &names[i];
            out[m].msg_hdr.msg_namelen = in[i].msg_hdr.msg_namelen;
            m++;
        }
        int sent = 0;
        while (sent < m) {
            int k = sendmmsg(fd, out + sent, (unsigned)(m - sent), MSG_DONTWAIT);
            if (k > 0) { sent += k; continue; }
            if (k < 0 && errno == EINTR) continue;
            if (k < 0 && (errno == EAGAIN || errno == ENOBUFS)) break;  /* dropped, as UDP may */
            sent++;  /* this one refused: the rest go on */
        }
    }
    return NULL;
}

static void stop(int sig) { (void)sig; _exit(0); }

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--host")) g_host = argv[i + 1];
        else if (!strcmp(argv[i], "--port")) g_port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) g_threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-frame")) g_max_frame = (uint32_t)strtoul(argv[i + 1], NULL, 10);
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    if (g_threads < 1 || g_threads > 256) { fprintf(stderr, "--threads 1...256\n"); return 2; }
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    pthread_t threads[256];
    for (int t = 0; t < g_threads; t++) {
        int fd = open_socket();
        if (pthread_create(&threads[t], NULL, worker, (void *)(intptr_t)fd) != 0) { perror("pthread_create"); return 1; }
    }
    fprintf(stderr, "c_udp_echo on %s:%d, %d threads\n", g_host, g_port, g_threads);
    for (int t = 0; t < g_threads; t++) pthread_join(threads[t], NULL);
    return 0;
}
