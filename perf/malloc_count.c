// A malloc counter to LD_PRELOAD into a release `gateway`: every malloc, calloc, realloc,
// posix_memalign, aligned_alloc, memalign and valloc in the process (every thread) adds one to a
// 64-bit counter kept in a shared file, /dev/shm/malloc_count.PID, that perf/isolation_ab.py reads
// while the gateway runs. The calls go on to glibc's own allocator (__libc_*), so nothing else
// changes. Built by isolation_ab.py: cc -O2 -shared -fPIC -o malloc_count.so malloc_count.c
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static uint64_t early;              // counts until the shared page is mapped
static uint64_t *counter = &early;

static inline void count(void) { __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED); }

__attribute__((constructor)) static void map_counter(void) {
    char path[64];
    snprintf(path, sizeof path, "/dev/shm/malloc_count.%d", (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096) != 0) return;
    void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (page == MAP_FAILED) return;
    *(uint64_t *)page = __atomic_load_n(&early, __ATOMIC_RELAXED);
    __atomic_store_n(&counter, (uint64_t *)page, __ATOMIC_RELEASE);
}

void *malloc(size_t n) { count(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { count(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { count(); return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }
void *memalign(size_t a, size_t n) { count(); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { count(); return __libc_memalign(a, n); }
void *valloc(size_t n) { count(); return __libc_memalign((size_t)sysconf(_SC_PAGESIZE), n); }
int posix_memalign(void **out, size_t a, size_t n) {
    count();
    void *p = __libc_memalign(a, n);
    if (!p) return 12;  // ENOMEM
    *out = p;
    return 0;
}
