/*
 * c_echo: a lean epoll echo server for the AccessGateway frame (shared/PROTOCOL.md).
 *
 * A reference peer for perf/run.sh: the fastest honest thing a small C server can
 * do with the same wire, so the gateway's figures have a floor to be read against.
 *
 *   - one worker thread per core (--threads), each with its own listening socket
 *     (SO_REUSEPORT: the kernel spreads new connections) and its own epoll set;
 *   - connections are edge-triggered (EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET, set
 *     once, never modified);
 *   - big reads: a 64 KiB buffer per connection while it holds bytes (taken from a
 *     per-thread pool, given back when the connection's buffer empties, so an idle
 *     connection costs only its small slot), read until the socket is drained (a read
 *     that does not fill the room drained it: the EAGAIN read after it is skipped);
 *   - frames are cut in place; the replies (identical frames) are gathered into one
 *     writev together with any bytes still pending from an earlier partial write;
 *     whatever the kernel does not take is kept and sent on the next EPOLLOUT;
 *   - a length < 18 or > --max-frame closes that connection only;
 *   - TCP_NODELAY on every connection.
 *
 * Build: cc -O2 -pthread -o c_echo echo.c
 * Usage: c_echo [--host 127.0.0.1] [--port 9200] [--threads N] [--max-frame BYTES]
 * Stops on SIGTERM or SIGINT with exit code 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define HEADER_SIZE 18u
#define BUF_SIZE (64u * 1024u)   /* one read block */
#define OUT_HIGH (4u << 20)      /* stop reading a connection whose unsent replies pass this */
#define MAX_EVENTS 512
#define POOL_MAX 64              /* free read buffers kept per thread */
#define ACCEPT_BATCH 256

static const char *g_host = "127.0.0.1";
static int g_port = 9200;
static int g_threads = 0;
static uint32_t g_max_frame = 1u << 20;

struct conn {
    uint8_t *in;       /* read buffer (NULL while the connection holds no bytes) */
    uint32_t in_len;   /* bytes held in `in` */
    uint32_t in_cap;   /* BUF_SIZE for a pool buffer, more for one frame larger than that */
    uint8_t *out;      /* replies the kernel has not taken yet */
    size_t out_off, out_len, out_cap;
    uint8_t open;
    uint8_t paused;    /* reading stopped until `out` drains */
};

struct worker {
    int id;
    int lfd;
    int epfd;
    uint8_t *pool[POOL_MAX];
    int pooled;
    pthread_t thread;
};

/* Indexed by fd: each fd belongs to exactly one worker, so no locking. */
static struct conn *g_conns;
static int g_max_fds;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static inline uint32_t load_be32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return ntohl(v);
}

static uint8_t *buf_get(struct worker *w) {
    if (w->pooled > 0) return w->pool[--w->pooled];
    uint8_t *b = malloc(BUF_SIZE);
    if (!b) die("malloc");
    return b;
}

static void buf_put(struct worker *w, struct conn *c) {
    if (c->in_cap == BUF_SIZE && w->pooled < POOL_MAX)
        w->pool[w->pooled++] = c->in;
    else
        free(c->in);
    c->in = NULL;
    c->in_len = 0;
    c->in_cap = 0;
}

static void conn_close(struct worker *w, int fd) {
    struct conn *c = &g_conns[fd];
    if (c->in) buf_put(w, c);
    free(c->out);
    memset(c, 0, sizeof *c);
    close(fd); /* also leaves the epoll set */
}

/* Appends bytes the kernel did not take to c->out, after what is already pending. */
static int out_append(struct conn *c, const uint8_t *src, size_t len) {
    if (len == 0) return 0;
    if (c->out_off > 0) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    size_t need = c->out_len + len;
    if (need > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : BUF_SIZE;
        while (cap < need) cap *= 2;
        uint8_t *n = realloc(c->out, cap);
        if (!n) return -1;
        c->out = n;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, src, len);
    c->out_len += len;
    return 0;
}

/* One writev: pending bytes first (order), then `len` new reply bytes. 0 ok, -1 close. */
static int send_replies(struct conn *c, int fd, const uint8_t *data, size_t len) {
    struct iovec iov[2];
    int n = 0;
    size_t pending = c->out_len - c->out_off;
    if (pending > 0) {
        iov[n].iov_base = c->out + c->out_off;
        iov[n].iov_len = pending;
        n++;
    }
    if (len > 0) {
        iov[n].iov_base = (void *)data;
        iov[n].iov_len = len;
        n++;
    }
    if (n == 0) return 0;
    ssize_t w;
    do {
        w = writev(fd, iov, n);
    } while (w < 0 && errno == EINTR);
    if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
        w = 0;
    }
    size_t sent = (size_t)w;
    if (sent < pending) {
        c->out_off += sent;
        return out_append(c, data, len);
    }
    sent -= pending;
    c->out_off = c->out_len = 0;
    return out_append(c, data + sent, len - sent);
}

/*
 * Cuts whole frames out of c->in, echoes them (they are contiguous, so the gathered
 * reply is a single range after any pending bytes), keeps the partial tail.
 * Returns 0, or -1 to close (bad length, write error).
 */
static int process(struct worker *w, struct conn *c, int fd) {
    (void)w;
    uint32_t pos = 0;
    while (c->in_len - pos >= 4) {
        uint32_t len = load_be32(c->in + pos);
        if (len < HEADER_SIZE || len > g_max_frame) return -1;
        if (c->in_len - pos < len) break;
        pos += len;
    }
    if (pos > 0 && send_replies(c, fd, c->in, pos) < 0) return -1;
    if (pos > 0) {
        c->in_len -= pos;
        if (c->in_len > 0) memmove(c->in, c->in + pos, c->in_len);
    }
    /* A frame larger than the buffer: give it a buffer of its own size. */
    if (c->in_len >= 4) {
        uint32_t len = load_be32(c->in);
        if (len > c->in_cap) {
            uint8_t *b = malloc(len);
            if (!b) return -1;
            memcpy(b, c->in, c->in_len);
            uint32_t held = c->in_len;
            buf_put(w, c);
            c->in = b;
            c->in_len = held;
            c->in_cap = len;
        }
    }
    return 0;
}

/*
 * Reads until the socket is drained. Returns 0, or -1 to close. `to_eagain`: read on
 * until EAGAIN or end-of-file even after a short read, because no further edge will
 * come (the peer shut its side, or a paused connection resumes).
 */
static int on_readable(struct worker *w, int fd, int to_eagain) {
    struct conn *c = &g_conns[fd];
    for (;;) {
        if (c->paused) return 0;
        if (!c->in) {
            c->in = buf_get(w);
            c->in_len = 0;
            c->in_cap = BUF_SIZE;
        }
        size_t room = c->in_cap - c->in_len;
        ssize_t n = read(fd, c->in + c->in_len, room);
        if (n > 0) {
            c->in_len += (uint32_t)n;
            if (process(w, c, fd) < 0) return -1;
            if (c->out_len - c->out_off > OUT_HIGH) c->paused = 1;
            /*
             * A read that did not fill the room emptied the socket's receive queue:
             * anything that arrives later raises a new edge, so the extra read()
             * that would only return EAGAIN is skipped.
             */
            if ((size_t)n < room && !to_eagain) break;
            continue;
        }
        if (n == 0) return -1;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        return -1;
    }
    if (c->in && c->in_len == 0) buf_put(w, c);
    return 0;
}

static int on_writable(struct worker *w, int fd) {
    struct conn *c = &g_conns[fd];
    if (c->out_len == c->out_off) return 0;
    if (send_replies(c, fd, NULL, 0) < 0) return -1;
    if (c->paused && c->out_len - c->out_off <= OUT_HIGH / 2) {
        c->paused = 0;
        /* Edge-triggered: bytes that arrived while paused raise no new edge. */
        return on_readable(w, fd, 1);
    }
    return 0;
}

static void on_accept(struct worker *w) {
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) perror("accept4");
            return; /* the listener is level-triggered: any backlog left wakes us again */
        }
        if (fd >= g_max_fds) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = &g_conns[fd];
        memset(c, 0, sizeof *c);
        c->open = 1;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.fd = fd};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            perror("epoll_ctl");
            c->open = 0;
            close(fd);
        }
    }
}

static int make_listener(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) die("SO_REUSEPORT");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    if (inet_pton(AF_INET, g_host, &a.sin_addr) != 1) {
        fprintf(stderr, "c_echo: bad --host %s (IPv4 only)\n", g_host);
        exit(2);
    }
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(fd, 4096) < 0) die("listen");
    return fd;
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(w->epfd, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            uint32_t e = events[i].events;
            if (fd == w->lfd) {
                on_accept(w);
                continue;
            }
            if (!g_conns[fd].open) continue;
            if (e & (EPOLLERR | EPOLLHUP)) {
                conn_close(w, fd);
                continue;
            }
            /* Writable first: pending replies leave before new ones are added. */
            if ((e & EPOLLOUT) && on_writable(w, fd) < 0) {
                conn_close(w, fd);
                continue;
            }
            if ((e & (EPOLLIN | EPOLLRDHUP)) && on_readable(w, fd, (e & EPOLLRDHUP) != 0) < 0) {
                conn_close(w, fd);
                continue;
            }
        }
    }
    return NULL;
}

static void usage(void) {
    fprintf(stderr, "usage: c_echo [--host 127.0.0.1] [--port 9200] [--threads N] [--max-frame BYTES]\n");
    exit(2);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) usage();
        if (!strcmp(a, "--host")) g_host = argv[++i];
        else if (!strcmp(a, "--port")) g_port = atoi(argv[++i]);
        else if (!strcmp(a, "--threads")) g_threads = atoi(argv[++i]);
        else if (!strcmp(a, "--max-frame")) g_max_frame = (uint32_t)strtoul(argv[++i], NULL, 10);
        else usage();
    }
    if (g_port <= 0 || g_port > 65535 || g_max_frame < HEADER_SIZE) usage();
    if (g_threads <= 0) g_threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (g_threads <= 0) g_threads = 1;

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) die("getrlimit");
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    g_max_fds = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1u << 20) ? (1 << 20) : (int)rl.rlim_cur;
    g_conns = calloc((size_t)g_max_fds, sizeof *g_conns);
    if (!g_conns) die("calloc");

    signal(SIGPIPE, SIG_IGN);
    /* Workers block the stop signals; main waits for them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    struct worker *workers = calloc((size_t)g_threads, sizeof *workers);
    if (!workers) die("calloc");
    for (int t = 0; t < g_threads; t++) {
        struct worker *w = &workers[t];
        w->id = t;
        w->lfd = make_listener();
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (w->epfd < 0) die("epoll_create1");
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = w->lfd};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->lfd, &ev) < 0) die("epoll_ctl listener");
    }
    for (int t = 0; t < g_threads; t++)
        if (pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]) != 0) die("pthread_create");

    printf("c_echo listening on %s:%d threads=%d max-frame=%u\n", g_host, g_port, g_threads, g_max_frame);
    fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);
    return 0; /* exit() ends the workers with the process */
}
