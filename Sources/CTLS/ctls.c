#include "ctls.h"
#include "tls13_records.h"

#include <errno.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <openssl/core_names.h>

// MARK: errors

static __thread char last_reason[200];

const char *gw_tls_last_reason(void) { return last_reason; }

/// Takes the thread's error queue into `last_reason` (emptying it, as the next call needs) and
/// tells a refused version or certificate from any other protocol error.
static gw_tls_status take_errors(gw_tls_status fallback) {
    unsigned long e = ERR_peek_error();
    gw_tls_status status = fallback;
    if (e != 0 && ERR_GET_LIB(e) == ERR_LIB_SSL) {
        switch (ERR_GET_REASON(e)) {
        case SSL_R_UNSUPPORTED_PROTOCOL:
        case SSL_R_VERSION_TOO_LOW:
        case SSL_R_WRONG_SSL_VERSION:
        case SSL_R_NO_PROTOCOLS_AVAILABLE:
        case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
            status = GW_TLS_VERSION;
            break;
        case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        case SSL_R_CERTIFICATE_VERIFY_FAILED:
        case SSL_R_NO_CERTIFICATES_RETURNED:
        case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
        case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
        case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
            status = GW_TLS_CERTIFICATE;
            break;
        default:
            break;
        }
    }
    if (e != 0) {
        ERR_error_string_n(e, last_reason, sizeof last_reason);
    } else {
        snprintf(last_reason, sizeof last_reason, "%s", "no OpenSSL error recorded");
    }
    ERR_clear_error();
    return status;
}

static gw_tls_status status_of(SSL *ssl, int result) {
    switch (SSL_get_error(ssl, result)) {
    case SSL_ERROR_WANT_READ: return GW_TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE: return GW_TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN: return GW_TLS_CLOSED;
    case SSL_ERROR_SYSCALL: {
        int e = errno;
        take_errors(GW_TLS_IO);
        if (e == 0) return GW_TLS_CLOSED;
        if (e == ECONNRESET || e == EPIPE) return GW_TLS_RESET;
        snprintf(last_reason, sizeof last_reason, "%s", strerror(e));
        return GW_TLS_IO;
    }
    default:
        return take_errors(GW_TLS_PROTOCOL);
    }
}

static void describe(char *error, size_t error_len, const char *what, const char *path) {
    unsigned long e = ERR_peek_last_error();
    char reason[160] = "unknown reason";
    if (e != 0) ERR_error_string_n(e, reason, sizeof reason);
    snprintf(error, error_len, "%s %s: %s", what, path ? path : "", reason);
    ERR_clear_error();
}

// MARK: session-ticket keys (one set per engine, shared by its contexts, derived from a secret)

/// Keys for one epoch (an hour of wall-clock time by default): derived from the secret and the epoch
/// number, so processes given the same secret (workers, a hot-restarted process, other machines)
/// issue and accept the same tickets and rotate together without talking to each other.
struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
};

struct gw_tls_tickets {
    pthread_mutex_t lock;
    int references;
    unsigned char secret[64];
    size_t secret_len;
    uint64_t epoch;
    struct ticket_key current, previous;
};

static int derive(const unsigned char *secret, size_t secret_len, const char *label, uint64_t epoch,
                  unsigned char *out, size_t out_len) {
    unsigned char data[40];
    size_t label_len = strlen(label);
    memcpy(data, label, label_len);
    for (int i = 0; i < 8; i++) data[label_len + (size_t)i] = (unsigned char)(epoch >> (56 - 8 * i));
    unsigned char mac[32];
    size_t mac_len = 0;
    if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, secret, secret_len, data, label_len + 8, mac, sizeof mac,
                   &mac_len) || mac_len < out_len) return 0;
    memcpy(out, mac, out_len);
    OPENSSL_cleanse(mac, sizeof mac);
    return 1;
}

static int derive_key(const gw_tls_tickets *t, uint64_t epoch, struct ticket_key *k) {
    return derive(t->secret, t->secret_len, "gw ticket name ", epoch, k->name, sizeof k->name)
        && derive(t->secret, t->secret_len, "gw ticket aes  ", epoch, k->aes, sizeof k->aes)
        && derive(t->secret, t->secret_len, "gw ticket hmac ", epoch, k->hmac, sizeof k->hmac);
}

/// Both keys for `epoch` under `t`'s secret; the caller holds the lock. 0 if derivation failed (keys kept).
static int install(gw_tls_tickets *t, uint64_t epoch) {
    struct ticket_key current, previous;
    if (!derive_key(t, epoch, &current) || !derive_key(t, epoch - 1, &previous)) return 0;
    t->current = current;
    t->previous = previous;
    t->epoch = epoch;
    OPENSSL_cleanse(&current, sizeof current);
    OPENSSL_cleanse(&previous, sizeof previous);
    return 1;
}

gw_tls_tickets *gw_tls_tickets_new(const unsigned char *secret, size_t secret_len, uint64_t epoch) {
    gw_tls_tickets *t = OPENSSL_zalloc(sizeof *t);
    if (!t) return NULL;
    pthread_mutex_init(&t->lock, NULL);
    t->references = 1;
    if (secret && secret_len > 0) {
        t->secret_len = secret_len < sizeof t->secret ? secret_len : sizeof t->secret;
        memcpy(t->secret, secret, t->secret_len);
    } else if (RAND_bytes(t->secret, 32) == 1) {
        t->secret_len = 32;
    }
    if (t->secret_len == 0 || !install(t, epoch)) {
        gw_tls_tickets_release(t);
        return NULL;
    }
    return t;
}

int gw_tls_tickets_rekey(gw_tls_tickets *t, const unsigned char *secret, size_t secret_len) {
    if (!secret || secret_len == 0) return 0;
    pthread_mutex_lock(&t->lock);
    unsigned char old[64];
    size_t old_len = t->secret_len;
    memcpy(old, t->secret, sizeof old);
    t->secret_len = secret_len < sizeof t->secret ? secret_len : sizeof t->secret;
    memcpy(t->secret, secret, t->secret_len);
    int ok = install(t, t->epoch);
    if (!ok) {
        memcpy(t->secret, old, sizeof old);
        t->secret_len = old_len;
    }
    pthread_mutex_unlock(&t->lock);
    OPENSSL_cleanse(old, sizeof old);
    return ok;
}

int gw_tls_tickets_advance(gw_tls_tickets *t, uint64_t epoch) {
    pthread_mutex_lock(&t->lock);
    int ok = epoch <= t->epoch || install(t, epoch);
    pthread_mutex_unlock(&t->lock);
    return ok;
}

uint64_t gw_tls_tickets_epoch(gw_tls_tickets *t) {
    pthread_mutex_lock(&t->lock);
    uint64_t epoch = t->epoch;
    pthread_mutex_unlock(&t->lock);
    return epoch;
}

static void retain(gw_tls_tickets *t) {
    pthread_mutex_lock(&t->lock);
    t->references++;
    pthread_mutex_unlock(&t->lock);
}

void gw_tls_tickets_release(gw_tls_tickets *t) {
    if (!t) return;
    pthread_mutex_lock(&t->lock);
    int left = --t->references;
    pthread_mutex_unlock(&t->lock);
    if (left > 0) return;
    pthread_mutex_destroy(&t->lock);
    OPENSSL_clear_free(t, sizeof *t);
}

static int tickets_index = -1;

static void free_tickets(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    gw_tls_tickets_release(ptr);
}

static int ticket_callback(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cipher,
                           EVP_MAC_CTX *mac, int encrypt) {
    gw_tls_tickets *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tickets_index);
    if (!t) return 0;
    struct ticket_key k;
    int found = 1;
    pthread_mutex_lock(&t->lock);
    if (encrypt || memcmp(name, t->current.name, 16) == 0) {
        k = t->current;
    } else if (memcmp(name, t->previous.name, 16) == 0) {
        k = t->previous;
        found = 2;  // accepted, and renewed under the current key
    } else {
        found = 0;
    }
    pthread_mutex_unlock(&t->lock);
    if (found == 0) return 0;  // unknown key: a full handshake
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof k.hmac);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    int ok;
    if (encrypt) {
        memcpy(name, k.name, 16);
        ok = RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) == 1
            && EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, k.aes, iv) == 1
            && EVP_MAC_CTX_set_params(mac, params) == 1;
    } else {
        ok = EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, k.aes, iv) == 1
            && EVP_MAC_CTX_set_params(mac, params) == 1;
    }
    OPENSSL_cleanse(&k, sizeof k);
    return ok ? found : -1;
}

// MARK: handing a finished TLS 1.3 server connection to the gateway's record layer

/// What a server handshake leaves for gw_tls_detach: the application traffic secrets (from the key
/// log callback, OpenSSL's only public way out for them) and how many records went out under ours.
struct capture {
    uint8_t client[48], server[48];
    size_t client_len, server_len;
    int finished_sent;
    uint64_t records_after_finished;
};

static int capture_index = -1;

static void free_capture(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    if (ptr) OPENSSL_clear_free(ptr, sizeof(struct capture));
}

static struct capture *capture_of(const SSL *ssl) {
    struct capture *c = SSL_get_ex_data(ssl, capture_index);
    if (c) return c;
    c = OPENSSL_zalloc(sizeof *c);
    if (c && SSL_set_ex_data((SSL *)ssl, capture_index, c) != 1) {
        OPENSSL_free(c);
        return NULL;
    }
    return c;
}

static int hex_value(char h) {
    if (h >= '0' && h <= '9') return h - '0';
    if (h >= 'a' && h <= 'f') return h - 'a' + 10;
    if (h >= 'A' && h <= 'F') return h - 'A' + 10;
    return -1;
}

/// NSS key log lines: "LABEL <client random> <secret>", both in hex.
static void keylog_callback(const SSL *ssl, const char *line) {
    static const char client[] = "CLIENT_TRAFFIC_SECRET_0 ", server[] = "SERVER_TRAFFIC_SECRET_0 ";
    int is_client = strncmp(line, client, sizeof client - 1) == 0;
    if (!is_client && strncmp(line, server, sizeof server - 1) != 0) return;
    const char *hex = strchr(line + sizeof client - 1, ' ');
    struct capture *c = hex ? capture_of(ssl) : NULL;
    if (!c) return;
    uint8_t *out = is_client ? c->client : c->server;
    size_t n = 0;
    for (hex++; n < 48 && hex[0] && hex[1]; hex += 2) {
        int hi = hex_value(hex[0]), lo = hex_value(hex[1]);
        if (hi < 0 || lo < 0) return;
        out[n++] = (uint8_t)(hi << 4 | lo);
    }
    if (*hex) return;  // longer than any suite's secret: not ours to use
    if (is_client) c->client_len = n; else c->server_len = n;
}

/// Counts the records written after our Finished: they are under the server's application key
/// (OpenSSL switches right after Finished), so their count is the write sequence number at the switch.
/// A record's header is reported when it is sealed, our Finished once it is wholly written.
static void message_callback(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl,
                             void *arg) {
    (void)version; (void)arg;
    if (!write_p || !SSL_is_server(ssl)) return;
    if (content_type == SSL3_RT_HANDSHAKE && len > 0 && ((const uint8_t *)buf)[0] == SSL3_MT_FINISHED) {
        struct capture *c = capture_of(ssl);
        if (c) c->finished_sent = 1;
    } else if (content_type == SSL3_RT_HEADER) {
        struct capture *c = SSL_get_ex_data(ssl, capture_index);
        if (c && c->finished_sent) c->records_after_finished++;
    }
}

int gw_tls_detach(SSL *ssl, gw_rec *records) {
    struct capture *c = SSL_get_ex_data(ssl, capture_index);
    SSL_set_msg_callback(ssl, NULL);  // done with either way
    const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);
    gw_rec_suite suite = cipher ? gw_rec_suite_of(SSL_CIPHER_get_protocol_id(cipher)) : GW_REC_NONE;
    int ok = c && SSL_version(ssl) == TLS1_3_VERSION && suite != GW_REC_NONE && SSL_is_init_finished(ssl)
        && c->finished_sent && c->client_len == c->server_len && c->client_len > 0
        // Nothing read past the client's Finished (read-ahead is off for servers): its next record is 0.
        && !SSL_has_pending(ssl)
        && gw_rec_start(records, suite, c->client, c->server, c->client_len, c->records_after_finished);
    if (c) {
        SSL_set_ex_data(ssl, capture_index, NULL);
        OPENSSL_clear_free(c, sizeof *c);
    }
    return ok;
}

// MARK: server contexts

/// What the default context carries for SNI and ALPN; freed with it (ex_data), so a handshake
/// still running on a replaced context keeps it.
struct server_extras {
    int count;
    SSL_CTX **alternates;          // pairs after the first, each holding one reference
    unsigned char alpn[256];       // wire format: length-prefixed names
    size_t alpn_len;
};

static int extras_index = -1;
static pthread_once_t extras_once = PTHREAD_ONCE_INIT;

static void free_extras(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    struct server_extras *x = ptr;
    if (!x) return;
    for (int i = 0; i < x->count; i++) SSL_CTX_free(x->alternates[i]);
    OPENSSL_free(x->alternates);
    OPENSSL_free(x);
}

static void init_once(void) {
    extras_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_extras);
    tickets_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_tickets);
    capture_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, free_capture);
}

static int servername_callback(SSL *ssl, int *alert, void *arg) {
    (void)alert;
    struct server_extras *x = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name || !x) return SSL_TLSEXT_ERR_OK;
    X509 *first = SSL_CTX_get0_certificate(SSL_get_SSL_CTX(ssl));
    if (first && X509_check_host(first, name, strlen(name), 0, NULL) == 1) return SSL_TLSEXT_ERR_OK;
    for (int i = 0; i < x->count; i++) {
        X509 *cert = SSL_CTX_get0_certificate(x->alternates[i]);
        if (cert && X509_check_host(cert, name, strlen(name), 0, NULL) == 1) {
            SSL_set_SSL_CTX(ssl, x->alternates[i]);
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_OK;  // no match: the default pair answers
}

static int alpn_callback(SSL *ssl, const unsigned char **out, unsigned char *out_len, const unsigned char *in,
                         unsigned int in_len, void *arg) {
    (void)ssl;
    struct server_extras *x = arg;
    if (!x || x->alpn_len == 0) return SSL_TLSEXT_ERR_NOACK;
    unsigned char *selected = NULL;
    if (SSL_select_next_proto(&selected, out_len, x->alpn, (unsigned int)x->alpn_len, in, in_len)
        != OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_ALERT_FATAL;  // RFC 7301: no_application_protocol
    }
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}

static void common_settings(SSL_CTX *ctx) {
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
    // Idle connections give their record buffers back; writes are taken a record at a time and
    // retried from wherever the caller's copy of the bytes is now.
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE
                     | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    // Whole socket reads rather than a 5-byte header then the record.
    SSL_CTX_set_read_ahead(ctx, 1);
}

static SSL_CTX *server_pair(const char *cert, const char *key, const char *client_ca, gw_tls_tickets *tickets,
                            char *error, size_t error_len) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        describe(error, error_len, "SSL_CTX_new", "");
        return NULL;
    }
    common_settings(ctx);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    // TLS 1.3 connections leave OpenSSL once the handshake is done (gw_tls_detach): nothing may be
    // read past the client's Finished, and the secrets and our records after Finished are noted.
    SSL_CTX_set_read_ahead(ctx, 0);
    SSL_CTX_set_keylog_callback(ctx, keylog_callback);
    SSL_CTX_set_msg_callback(ctx, message_callback);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);  // tickets carry the sessions
    SSL_CTX_set_num_tickets(ctx, 1);
    retain(tickets);
    SSL_CTX_set_ex_data(ctx, tickets_index, tickets);  // released with the context
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_callback);
    static const unsigned char id[] = "accessgateway";
    SSL_CTX_set_session_id_context(ctx, id, sizeof id - 1);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        describe(error, error_len, "certificate", cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        describe(error, error_len, "key", key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        describe(error, error_len, "key does not match certificate", cert);
        goto fail;
    }
    if (client_ca) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca);
        if (!names || SSL_CTX_load_verify_locations(ctx, client_ca, NULL) != 1) {
            if (names) sk_X509_NAME_pop_free(names, X509_NAME_free);
            describe(error, error_len, "client CA", client_ca);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static int alpn_wire(const char *list, unsigned char *out, size_t capacity, size_t *out_len) {
    size_t n = 0;
    const char *p = list;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len > 255 || n + 1 + len > capacity) return 0;
        out[n++] = (unsigned char)len;
        memcpy(out + n, p, len);
        n += len;
        p += len + (comma ? 1 : 0);
    }
    *out_len = n;
    return n > 0;
}

SSL_CTX *gw_tls_server_context(const char *const *certs, const char *const *keys, int pairs,
                               const char *client_ca, const char *alpn, gw_tls_tickets *tickets,
                               char *error, size_t error_len) {
    pthread_once(&extras_once, init_once);
    if (pairs < 1) {
        snprintf(error, error_len, "no certificate and key given");
        return NULL;
    }
    SSL_CTX *first = server_pair(certs[0], keys[0], client_ca, tickets, error, error_len);
    if (!first) return NULL;
    struct server_extras *x = OPENSSL_zalloc(sizeof *x);
    if (!x || !(x->alternates = OPENSSL_zalloc(sizeof(SSL_CTX *) * (size_t)pairs))) {
        OPENSSL_free(x);
        SSL_CTX_free(first);
        snprintf(error, error_len, "out of memory");
        return NULL;
    }
    // From here the extras belong to `first` and go with it.
    SSL_CTX_set_ex_data(first, extras_index, x);
    for (int i = 1; i < pairs; i++) {
        SSL_CTX *ctx = server_pair(certs[i], keys[i], client_ca, tickets, error, error_len);
        if (!ctx) {
            SSL_CTX_free(first);
            return NULL;
        }
        x->alternates[x->count++] = ctx;
    }
    if (alpn && *alpn && !alpn_wire(alpn, x->alpn, sizeof x->alpn, &x->alpn_len)) {
        snprintf(error, error_len, "ALPN list '%s': names of 1...255 bytes, 255 bytes in all", alpn);
        SSL_CTX_free(first);
        return NULL;
    }
    SSL_CTX_set_tlsext_servername_callback(first, servername_callback);
    SSL_CTX_set_tlsext_servername_arg(first, x);
    for (int i = -1; i < x->count; i++) {
        SSL_CTX *ctx = i < 0 ? first : x->alternates[i];
        if (x->alpn_len > 0) SSL_CTX_set_alpn_select_cb(ctx, alpn_callback, x);
    }
    return first;
}

SSL_CTX *gw_tls_client_context(int verify, const char *ca, const char *cert, const char *key,
                               char *error, size_t error_len) {
    pthread_once(&extras_once, init_once);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        describe(error, error_len, "SSL_CTX_new", "");
        return NULL;
    }
    common_settings(ctx);
    if (verify) {
        int loaded = ca ? SSL_CTX_load_verify_locations(ctx, ca, NULL) : SSL_CTX_set_default_verify_paths(ctx);
        if (loaded != 1) {
            describe(error, error_len, "CA", ca ? ca : "(system store)");
            goto fail;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    if (cert && SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        describe(error, error_len, "certificate", cert);
        goto fail;
    }
    if (key && (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1)) {
        describe(error, error_len, "key", key);
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

void gw_tls_context_free(SSL_CTX *ctx) { SSL_CTX_free(ctx); }

// MARK: connections

SSL *gw_tls_new(SSL_CTX *ctx, int fd, int server, const char *server_name, const char *verify_name) {
    SSL *ssl = SSL_new(ctx);
    if (!ssl) {
        take_errors(GW_TLS_PROTOCOL);
        return NULL;
    }
    if (SSL_set_fd(ssl, fd) != 1) {
        take_errors(GW_TLS_PROTOCOL);
        SSL_free(ssl);
        return NULL;
    }
    if (server) {
        SSL_set_accept_state(ssl);
        return ssl;
    }
    SSL_set_connect_state(ssl);
    if (server_name && *server_name) SSL_set_tlsext_host_name(ssl, server_name);
    if (verify_name && *verify_name) {
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        if (X509_VERIFY_PARAM_set1_ip_asc(param, verify_name) != 1) SSL_set1_host(ssl, verify_name);
        ERR_clear_error();
    }
    return ssl;
}

void gw_tls_free(SSL *ssl) { SSL_free(ssl); }

gw_tls_status gw_tls_handshake(SSL *ssl) {
    int rc = SSL_do_handshake(ssl);
    return rc == 1 ? GW_TLS_OK : status_of(ssl, rc);
}

long gw_tls_read(SSL *ssl, void *buffer, size_t length, gw_tls_status *status) {
    size_t n = 0;
    int rc = SSL_read_ex(ssl, buffer, length, &n);
    if (rc == 1) return (long)n;
    *status = status_of(ssl, rc);
    return -1;
}

long gw_tls_write(SSL *ssl, const void *buffer, size_t length, gw_tls_status *status) {
    size_t n = 0;
    int rc = SSL_write_ex(ssl, buffer, length, &n);
    if (rc == 1) return (long)n;
    *status = status_of(ssl, rc);
    return -1;
}

void gw_tls_close_notify(SSL *ssl) {
    if (SSL_is_init_finished(ssl) && SSL_shutdown(ssl) < 0) ERR_clear_error();
}

int gw_tls_resumed(SSL *ssl) { return SSL_session_reused(ssl); }

const char *gw_tls_version(SSL *ssl) { return SSL_get_version(ssl); }
