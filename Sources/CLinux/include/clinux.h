// Linux calls that Swift's Glibc module does not export, as small inline wrappers.
#ifndef GATEWAY_CLINUX_H
#define GATEWAY_CLINUX_H

#include <stdint.h>
#include <errno.h>
#include <unistd.h>
#include <sched.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <sys/random.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/futex.h>
#include <limits.h>
#include <malloc.h>

static inline int gw_errno(void) { return errno; }

// malloc_trim(3): Glibc's module does not show <malloc.h>. Gives malloc's free pages to the kernel.
static inline int gw_malloc_trim(void) { return malloc_trim(0); }

// getrandom(2): Glibc's module does not show <sys/random.h>.
static inline long gw_getrandom(void *buffer, size_t length) { return (long)getrandom(buffer, length, 0); }

static inline int gw_futex_wait(uint32_t *addr, uint32_t expected) {
    return (int)syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static inline int gw_futex_wake(uint32_t *addr, int count) {
    return (int)syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, count, NULL, NULL, 0);
}

// accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC (declared only under _GNU_SOURCE).
int gw_accept4(int fd, struct sockaddr *addr, socklen_t *len);

// recvmmsg and sendmmsg (declared only under _GNU_SOURCE), on messages laid out as struct mmsghdr.
struct gw_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
};
int gw_recvmmsg(int fd, struct gw_mmsghdr *messages, unsigned int count, int flags);
int gw_sendmmsg(int fd, struct gw_mmsghdr *messages, unsigned int count, int flags);

// IOV_MAX: the most iovecs one writev takes.
int gw_iov_max(void);

static inline void gw_cpu_relax(void) { __asm__ __volatile__("pause" ::: "memory"); }

// POLLRDHUP is defined only under _GNU_SOURCE.
static const short GW_POLLRDHUP = 0x2000;

// Names the calling thread (pthread_setname_np, a GNU extension).
void gw_set_thread_name(const char *name);

// How many CPUs the process may run on (sched_getaffinity); -1 with errno on failure.
int gw_affinity_count(void);

// Pin the calling thread to one CPU; returns 0 or an errno value.
int gw_pin_to_cpu(int cpu);

// A worker process asks for `signal` when its master dies (prctl PR_SET_PDEATHSIG; variadic in C).
int gw_set_parent_death_signal(int signal);

// A pipe for a worker's report to its master, both ends close-on-exec and non-blocking (pipe2 is a
// GNU extension Glibc's module does not show). Returns 0 or -1 with errno.
int gw_report_pipe(int ends[2]);

// A close-on-exec memory file holding `len` random bytes (getrandom, memfd_create: GNU extensions
// Glibc's module does not show), for a secret passed to child processes by descriptor alone.
// Returns the descriptor, or -1 with errno.
int gw_random_memfd(const char *name, size_t len);

// Most descriptors one message carries (SCM_MAX_FD).
#define GW_MAX_FDS 253

// One message on a Unix stream socket carrying `count` descriptors (SCM_RIGHTS) and `len` bytes
// (at least one). Returns sendmsg's result; -1 with errno on failure.
long gw_send_fds(int sock, const int *fds, int count, const void *data, size_t len);

// Receives one message of up to `len` bytes and up to `max` descriptors, which arrive close-on-exec;
// `*count` is set to how many came. Returns recvmsg's result (0: end of stream).
long gw_recv_fds(int sock, int *fds, int max, int *count, void *data, size_t len);

// Steers the SO_REUSEPORT group of listening socket `fd`: each new connection goes to one of the
// group's first `count` sockets (in the order they joined), chosen at random (SO_ATTACH_REUSEPORT_CBPF).
// Returns setsockopt's result.
int gw_reuseport_steer(int fd, unsigned count);

#endif
