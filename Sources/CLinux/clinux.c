#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <limits.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <linux/filter.h>
#include "clinux.h"

int gw_accept4(int fd, struct sockaddr *addr, socklen_t *len) {
    return accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int gw_iov_max(void) { return IOV_MAX; }

int gw_pin_to_cpu(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

void gw_set_thread_name(const char *name) {
    pthread_setname_np(pthread_self(), name);
}

long gw_send_fds(int sock, const int *fds, int count, const void *data, size_t len) {
    if (count < 0 || count > GW_MAX_FDS) { errno = EINVAL; return -1; }
    union { char buf[CMSG_SPACE(GW_MAX_FDS * sizeof(int))]; struct cmsghdr align; } control;
    struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (count > 0) {
        memset(&control, 0, sizeof(control));
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(count * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(count * sizeof(int));
        memcpy(CMSG_DATA(c), fds, count * sizeof(int));
    }
    return sendmsg(sock, &msg, MSG_NOSIGNAL);
}

long gw_recv_fds(int sock, int *fds, int max, int *count, void *data, size_t len) {
    union { char buf[CMSG_SPACE(GW_MAX_FDS * sizeof(int))]; struct cmsghdr align; } control;
    struct iovec iov = { .iov_base = data, .iov_len = len };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                          .msg_controllen = sizeof(control.buf) };
    *count = 0;
    long n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) return n;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int got = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *in = (int *)CMSG_DATA(c);
        for (int i = 0; i < got; i++) {
            if (*count < max) fds[(*count)++] = in[i];
            else close(in[i]);  // more than asked for: not leaked
        }
    }
    return n;
}

int gw_set_parent_death_signal(int signal) { return prctl(PR_SET_PDEATHSIG, signal); }

int gw_reuseport_steer(int fd, unsigned count) {
    if (count == 0) { errno = EINVAL; return -1; }
    // A = random; A %= count; return A: the index of a socket in the group, in the order they joined.
    struct sock_filter code[] = {
        { BPF_LD | BPF_W | BPF_ABS, 0, 0, (unsigned)(SKF_AD_OFF + SKF_AD_RANDOM) },
        { BPF_ALU | BPF_MOD | BPF_K, 0, 0, count },
        { BPF_RET | BPF_A, 0, 0, 0 },
    };
    struct sock_fprog program = { .len = 3, .filter = code };
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &program, sizeof(program));
}

int gw_report_pipe(int ends[2]) { return pipe2(ends, O_CLOEXEC | O_NONBLOCK); }

int gw_random_memfd(const char *name, size_t len) {
    unsigned char bytes[64];
    if (len > sizeof bytes) {
        errno = EINVAL;
        return -1;
    }
    if (getrandom(bytes, len, 0) != (ssize_t)len) return -1;
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd >= 0 && pwrite(fd, bytes, len, 0) != (ssize_t)len) {
        int e = errno;
        close(fd);
        errno = e;
        fd = -1;
    }
    explicit_bzero(bytes, sizeof bytes);
    return fd;
}

int gw_affinity_count(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return -1;
    return CPU_COUNT(&set);
}

int gw_recvmmsg(int fd, struct gw_mmsghdr *messages, unsigned int count, int flags) {
    _Static_assert(sizeof(struct gw_mmsghdr) == sizeof(struct mmsghdr), "mmsghdr layout");
    return recvmmsg(fd, (struct mmsghdr *)messages, count, flags, NULL);
}

int gw_sendmmsg(int fd, struct gw_mmsghdr *messages, unsigned int count, int flags) {
    return sendmmsg(fd, (struct mmsghdr *)messages, count, flags);
}
