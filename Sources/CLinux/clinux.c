#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <limits.h>
#include <sys/socket.h>
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
