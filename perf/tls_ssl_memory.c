// What OpenSSL itself keeps for one idle server-side TLS connection, counted exactly: every OpenSSL
// allocation goes through CRYPTO_set_mem_functions, and the bytes still live after a full handshake
// and one echo (the gateway's server settings: SSL_MODE_RELEASE_BUFFERS, read-ahead, no session
// cache, one ticket) are listed by the line that made them. No malloc overhead, no fragmentation.
//
//   cc -O2 -o /tmp/tls_ssl_memory perf/tls_ssl_memory.c -lssl -lcrypto && /tmp/tls_ssl_memory CERT KEY [1.2]
#include <fcntl.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_TRACKED 100000
static void *ptrs[MAX_TRACKED];
static size_t sizes[MAX_TRACKED];
static const char *files[MAX_TRACKED];
static int lines[MAX_TRACKED];
static int tracking, tracked;

static void track(void *p, size_t n, const char *f, int l) {
    if (!tracking || !p || tracked == MAX_TRACKED) return;
    ptrs[tracked] = p;
    sizes[tracked] = n;
    files[tracked] = f;
    lines[tracked++] = l;
}
static void untrack(void *p) {
    for (int i = 0; i < tracked; i++) if (ptrs[i] == p) { ptrs[i] = NULL; return; }
}
static void *m(size_t n, const char *f, int l) { void *p = malloc(n); track(p, n, f, l); return p; }
static void *r(void *q, size_t n, const char *f, int l) {
    if (q) untrack(q);
    void *p = realloc(q, n);
    track(p, n, f, l);
    return p;
}
static void fr(void *q, const char *f, int l) { (void)f; (void)l; if (q) untrack(q); free(q); }

// Drives both ends until neither makes progress; only the server's allocations are tracked.
static void pump(SSL *server, SSL *client) {
    for (int k = 0; k < 20; k++) {
        tracking = 1;
        SSL_do_handshake(server);
        tracking = 0;
        SSL_do_handshake(client);
    }
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s CERT KEY [1.2]\n", argv[0]); return 2; }
    CRYPTO_set_mem_functions(m, r, fr);
    SSL_CTX *s = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION);
    SSL_CTX_set_mode(s, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(s, 1);
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(s, 1);
    if (SSL_CTX_use_certificate_chain_file(s, argv[1]) != 1 || SSL_CTX_use_PrivateKey_file(s, argv[2], SSL_FILETYPE_PEM) != 1) {
        fprintf(stderr, "cannot load %s / %s\n", argv[1], argv[2]);
        return 1;
    }
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    if (argc > 3 && strcmp(argv[3], "1.2") == 0) SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION);
    // Round 0 warms up what OpenSSL makes once per process (fetched algorithms, caches); round 1 counts.
    size_t at_new = 0;
    SSL *server = NULL;
    for (int round = 0; round < 2; round++) {
        tracked = 0;
        int fds[2];
        socketpair(AF_UNIX, SOCK_STREAM, 0, fds);
        fcntl(fds[0], F_SETFL, O_NONBLOCK);
        fcntl(fds[1], F_SETFL, O_NONBLOCK);
        SSL *client = SSL_new(c);
        SSL_set_fd(client, fds[1]);
        SSL_set_connect_state(client);
        SSL_do_handshake(client);
        tracking = 1;
        server = SSL_new(s);
        SSL_set_fd(server, fds[0]);
        SSL_set_accept_state(server);
        tracking = 0;
        at_new = 0;
        for (int i = 0; i < tracked; i++) if (ptrs[i]) at_new += sizes[i];
        pump(server, client);
        char buf[600];
        memset(buf, 1, 512);
        SSL_write(client, buf, 512);
        tracking = 1;
        int n = SSL_read(server, buf, sizeof buf);
        SSL_write(server, buf, n);
        tracking = 0;
        SSL_read(client, buf, sizeof buf);
    }
    size_t total = 0;
    for (int i = 0; i < tracked; i++) {
        if (!ptrs[i]) continue;
        printf("%6zu  %s:%d\n", sizes[i], files[i], lines[i]);
        total += sizes[i];
    }
    printf("%s: %zu bytes live in OpenSSL for one idle server connection (%zu of them from SSL_new)\n",
           SSL_get_version(server), total, at_new);
    return 0;
}
