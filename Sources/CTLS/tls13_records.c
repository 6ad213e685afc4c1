#include "tls13_records.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

enum { HEADER = 5, TAG = 16, NONCE = 12 };
enum { TYPE_ALERT = 21, TYPE_HANDSHAKE = 22, TYPE_DATA = 23 };
enum { KEY_UPDATE = 24 };

// MARK: suites and the key schedule

static const char *const cipher_names[] = {NULL, "AES-128-GCM", "AES-256-GCM", "ChaCha20-Poly1305"};
static const char *const digest_names[] = {NULL, "SHA256", "SHA384", "SHA256"};
static EVP_CIPHER *ciphers[4];
static pthread_once_t ciphers_once = PTHREAD_ONCE_INIT;

static void fetch_ciphers(void) {
    for (int i = 1; i < 4; i++) ciphers[i] = EVP_CIPHER_fetch(NULL, cipher_names[i], NULL);
}

gw_rec_suite gw_rec_suite_of(uint16_t id) {
    switch (id) {
    case 0x1301: return GW_REC_AES_128_GCM_SHA256;
    case 0x1302: return GW_REC_AES_256_GCM_SHA384;
    case 0x1303: return GW_REC_CHACHA20_POLY1305_SHA256;
    default: return GW_REC_NONE;
    }
}

static size_t hash_len_of(gw_rec_suite s) { return s == GW_REC_AES_256_GCM_SHA384 ? 48 : 32; }
static size_t key_len_of(gw_rec_suite s) { return s == GW_REC_AES_128_GCM_SHA256 ? 16 : 32; }

/// HKDF-Expand with an output no longer than the hash is one HMAC: T(1) = HMAC(secret, info || 0x01).
int gw_rec_expand_label(gw_rec_suite suite, const uint8_t *secret, const char *label, uint8_t *out,
                        size_t out_len) {
    if (suite < 1 || suite > 3) return 0;
    size_t hash_len = hash_len_of(suite), label_len = strlen(label);
    if (out_len > hash_len || label_len > 32) return 0;
    uint8_t info[2 + 1 + 6 + 32 + 1 + 1];
    size_t n = 0;
    info[n++] = (uint8_t)(out_len >> 8);
    info[n++] = (uint8_t)out_len;
    info[n++] = (uint8_t)(6 + label_len);
    memcpy(info + n, "tls13 ", 6);
    n += 6;
    memcpy(info + n, label, label_len);
    n += label_len;
    info[n++] = 0;  // no context
    info[n++] = 1;  // T(1)
    uint8_t mac[64];
    size_t mac_len = 0;
    if (!EVP_Q_mac(NULL, "HMAC", NULL, digest_names[suite], NULL, secret, hash_len, info, n, mac, sizeof mac,
                   &mac_len) || mac_len != hash_len) return 0;
    memcpy(out, mac, out_len);
    OPENSSL_cleanse(mac, sizeof mac);
    return 1;
}

static int derive(gw_rec_suite suite, const uint8_t *secret, uint8_t *key, uint8_t *iv) {
    return gw_rec_expand_label(suite, secret, "key", key, key_len_of(suite))
        && gw_rec_expand_label(suite, secret, "iv", iv, NONCE);
}

/// A KeyUpdate: the next generation of `secret` (in place), and its key and iv.
static int next_generation(gw_rec_suite suite, uint8_t *secret, uint8_t *key, uint8_t *iv) {
    uint8_t next[48];
    size_t hash_len = hash_len_of(suite);
    if (!gw_rec_expand_label(suite, secret, "traffic upd", next, hash_len)) return 0;
    memcpy(secret, next, hash_len);
    OPENSSL_cleanse(next, sizeof next);
    return derive(suite, secret, key, iv);
}

int gw_rec_start(gw_rec *r, gw_rec_suite suite, const uint8_t *read_secret, const uint8_t *write_secret,
                 size_t secret_len, uint64_t write_seq) {
    pthread_once(&ciphers_once, fetch_ciphers);
    if (suite < 1 || suite > 3 || !ciphers[suite] || secret_len != hash_len_of(suite)) return 0;
    gw_rec fresh;
    memset(&fresh, 0, sizeof fresh);
    fresh.suite = (uint8_t)suite;
    fresh.hash_len = (uint8_t)secret_len;
    fresh.key_len = (uint8_t)key_len_of(suite);
    fresh.write_seq = write_seq;
    memcpy(fresh.read_secret, read_secret, secret_len);
    memcpy(fresh.write_secret, write_secret, secret_len);
    int ok = derive(suite, fresh.read_secret, fresh.read_key, fresh.read_iv)
        && derive(suite, fresh.write_secret, fresh.write_key, fresh.write_iv);
    if (ok) *r = fresh;
    OPENSSL_cleanse(&fresh, sizeof fresh);
    return ok;
}

void gw_rec_clear(gw_rec *r) {
    free(r->in);
    free(r->held);
    OPENSSL_cleanse(r, sizeof *r);
}

// MARK: per-thread AEAD contexts, re-keyed per record (only the nonce when the key is the last one)

struct aead {
    EVP_CIPHER_CTX *ctx;
    int suite, encrypting;
    uint8_t key[32];
};

struct thread_aeads {
    struct aead seal, open;
};

static pthread_key_t aeads_key;
static pthread_once_t aeads_once = PTHREAD_ONCE_INIT;
static __thread struct thread_aeads *thread_aeads;

static void free_aeads(void *p) {
    struct thread_aeads *a = p;
    EVP_CIPHER_CTX_free(a->seal.ctx);
    EVP_CIPHER_CTX_free(a->open.ctx);
    OPENSSL_clear_free(a, sizeof *a);
}

static void make_aeads_key(void) { pthread_key_create(&aeads_key, free_aeads); }

static struct thread_aeads *aeads(void) {
    if (thread_aeads) return thread_aeads;
    pthread_once(&aeads_once, make_aeads_key);
    struct thread_aeads *a = OPENSSL_zalloc(sizeof *a);
    if (!a) return NULL;
    a->seal.ctx = EVP_CIPHER_CTX_new();
    a->open.ctx = EVP_CIPHER_CTX_new();
    if (!a->seal.ctx || !a->open.ctx) {
        free_aeads(a);
        return NULL;
    }
    pthread_setspecific(aeads_key, a);  // freed when the thread exits
    thread_aeads = a;
    return a;
}

static void nonce_for(const uint8_t *iv, uint64_t seq, uint8_t *nonce) {
    memcpy(nonce, iv, NONCE);
    for (int i = 0; i < 8; i++) nonce[NONCE - 1 - i] ^= (uint8_t)(seq >> (8 * i));
}

static int begin(struct aead *a, int suite, int encrypting, size_t key_len, const uint8_t *key,
                 const uint8_t *iv, uint64_t seq) {
    uint8_t nonce[NONCE];
    nonce_for(iv, seq, nonce);
    int ok;
    if (a->suite == suite && a->encrypting == encrypting && CRYPTO_memcmp(a->key, key, key_len) == 0) {
        ok = EVP_CipherInit_ex2(a->ctx, NULL, NULL, nonce, encrypting, NULL);
    } else {
        a->suite = 0;
        ok = EVP_CipherInit_ex2(a->ctx, ciphers[suite], key, nonce, encrypting, NULL);
        if (ok) {
            a->suite = suite;
            a->encrypting = encrypting;
            memcpy(a->key, key, key_len);
        }
    }
    return ok == 1;
}

// MARK: sealing

/// One record of type `type` around `len` plaintext bytes taken from the iovecs (from `skip` into
/// the first), into `out` (len + 22 bytes). The sealed length, or 0 on failure.
static size_t seal(gw_rec *r, struct aead *a, uint64_t seq, uint8_t type, const struct iovec *iov, size_t skip,
                   size_t len, uint8_t *out) {
    size_t body = len + 1 + TAG;
    out[0] = TYPE_DATA;
    out[1] = 3;
    out[2] = 3;
    out[3] = (uint8_t)(body >> 8);
    out[4] = (uint8_t)body;
    if (!begin(a, r->suite, 1, r->key_len, r->write_key, r->write_iv, seq)) return 0;
    int n = 0;
    if (EVP_EncryptUpdate(a->ctx, NULL, &n, out, HEADER) != 1) return 0;
    size_t done = 0;
    for (; done < len; iov++) {
        size_t piece = iov->iov_len - skip;
        if (piece > len - done) piece = len - done;
        if (piece > 0 && EVP_EncryptUpdate(a->ctx, out + HEADER + done, &n, (const uint8_t *)iov->iov_base + skip,
                                           (int)piece) != 1) return 0;
        done += piece;
        skip = 0;
    }
    if (EVP_EncryptUpdate(a->ctx, out + HEADER + len, &n, &type, 1) != 1) return 0;
    if (EVP_EncryptFinal_ex(a->ctx, out + HEADER + len + 1, &n) != 1) return 0;
    if (EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_GET_TAG, TAG, out + HEADER + len + 1) != 1) return 0;
    return HEADER + body;
}

size_t gw_rec_seal_record(gw_rec *r, uint8_t type, const void *bytes, size_t len, uint8_t *out) {
    struct thread_aeads *t = aeads();
    if (!t || len > GW_REC_MAX_PLAIN) return 0;
    struct iovec v = {.iov_base = (void *)bytes, .iov_len = len};
    size_t sealed = seal(r, &t->seal, r->write_seq, type, &v, 0, len, out);
    if (sealed > 0) r->write_seq++;
    return sealed;
}

// MARK: the socket, or memory

static long pull(gw_rec_source *s, uint8_t *buffer, size_t n) {
    if (s->fd >= 0) {
        while (1) {
            ssize_t got = recv(s->fd, buffer, n, 0);
            if (got >= 0 || errno != EINTR) return got;
        }
    }
    size_t left = s->length - s->position;
    if (left == 0) {
        if (s->end_after) return 0;
        errno = EAGAIN;
        return -1;
    }
    if (n > left) n = left;
    if (s->chunk > 0 && n > s->chunk) n = s->chunk;
    memcpy(buffer, s->bytes + s->position, n);
    s->position += n;
    return (long)n;
}

static long push(gw_rec_sink *k, const uint8_t *bytes, size_t n) {
    if (k->fd >= 0) {
        while (1) {
            ssize_t put = send(k->fd, bytes, n, MSG_NOSIGNAL);
            if (put >= 0 || errno != EINTR) return put;
        }
    }
    if (n > k->room) n = k->room;
    if (n > k->capacity - k->length) n = k->capacity - k->length;
    if (n == 0) {
        errno = EAGAIN;
        return -1;
    }
    memcpy(k->bytes + k->length, bytes, n);
    k->length += n;
    k->room -= n;
    return (long)n;
}

static gw_rec_status socket_status(long n) {
    if (n == 0) return GW_REC_CLOSED;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return GW_REC_WANT_READ;
    if (errno == ECONNRESET || errno == EPIPE) return GW_REC_RESET;
    return GW_REC_IO;
}

// MARK: reading

/// Opens the record at `rec` (header and `body` bytes) in place: its plaintext at rec + HEADER, its
/// length in `*plain`, its inner type in `*type`. GW_REC_OK or why not.
static gw_rec_status open_record(gw_rec *r, struct aead *a, uint8_t *rec, size_t body, size_t *plain,
                                 uint8_t *type) {
    if (rec[0] != TYPE_DATA || body < TAG + 1) return GW_REC_PROTOCOL;
    if (!begin(a, r->suite, 0, r->key_len, r->read_key, r->read_iv, r->read_seq)) return GW_REC_IO;
    int n = 0;
    size_t len = body - TAG;
    if (EVP_DecryptUpdate(a->ctx, NULL, &n, rec, HEADER) != 1
        || EVP_DecryptUpdate(a->ctx, rec + HEADER, &n, rec + HEADER, (int)len) != 1
        || EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_TAG, TAG, rec + HEADER + len) != 1
        || EVP_DecryptFinal_ex(a->ctx, rec + HEADER + len, &n) != 1) return GW_REC_BAD_RECORD;
    r->read_seq++;
    while (len > 0 && rec[HEADER + len - 1] == 0) len--;  // padding
    if (len == 0) return GW_REC_PROTOCOL;                 // no content type
    *type = rec[HEADER + len - 1];
    *plain = len - 1;
    return *plain > GW_REC_MAX_PLAIN ? GW_REC_PROTOCOL : GW_REC_OK;
}

/// A record that is not application data: an alert or post-handshake handshake messages.
static gw_rec_status control(gw_rec *r, uint8_t type, const uint8_t *p, size_t len) {
    if (type == TYPE_ALERT) {
        if (len != 2) return GW_REC_PROTOCOL;
        if (p[1] == 0) return GW_REC_CLOSED;  // close_notify
        return p[1] == 90 ? GW_REC_OK : GW_REC_ALERT;  // user_canceled: a close_notify follows
    }
    if (type != TYPE_HANDSHAKE || len == 0) return GW_REC_PROTOCOL;
    // Whole messages only: a KeyUpdate is five bytes, and no client splits one across records.
    for (size_t i = 0; i < len;) {
        if (len - i < 4) return GW_REC_PROTOCOL;
        size_t body = ((size_t)p[i + 1] << 16) | ((size_t)p[i + 2] << 8) | p[i + 3];
        if (p[i] != KEY_UPDATE || body != 1 || len - i - 4 < 1 || p[i + 4] > 1) return GW_REC_PROTOCOL;
        if (!next_generation(r->suite, r->read_secret, r->read_key, r->read_iv)) return GW_REC_IO;
        r->read_seq = 0;
        if (p[i + 4] == 1) __atomic_store_n(&r->update_wanted, 1, __ATOMIC_RELEASE);
        i += 5;
    }
    return GW_REC_OK;
}

static size_t body_length(const uint8_t *header) { return ((size_t)header[3] << 8) | header[4]; }

/// Hands out plaintext held in `r->in` (state 3).
static long hand_out(gw_rec *r, uint8_t *buffer, size_t capacity) {
    size_t n = r->in_len - r->in_have;
    if (n > capacity) n = capacity;
    memcpy(buffer, r->in + HEADER + r->in_have, n);
    r->in_have += (uint32_t)n;
    if (r->in_have == r->in_len) {
        free(r->in);
        r->in = NULL;
        r->in_state = 0;
        r->in_have = r->in_len = 0;
    }
    return (long)n;
}

/// Keeps the tail of a read that is not a whole record: up to 5 bytes in the slot, more in a buffer
/// of the record's size. GW_REC_OK, or why not.
static gw_rec_status keep_partial(gw_rec *r, const uint8_t *p, size_t n) {
    if (n < HEADER) {
        memcpy(r->in_header, p, n);
        r->in_have = (uint32_t)n;
        r->in_state = 1;
        return GW_REC_OK;
    }
    size_t body = body_length(p);
    if (body > GW_REC_MAX_BODY || p[0] != TYPE_DATA) return GW_REC_PROTOCOL;
    r->in = malloc(HEADER + body);
    if (!r->in) return GW_REC_IO;
    memcpy(r->in, p, n);
    r->in_have = (uint32_t)n;
    r->in_len = (uint32_t)(HEADER + body);
    r->in_state = 2;
    return GW_REC_OK;
}

/// Continues a partial record with exactly the bytes it lacks; GW_REC_OK once whole (state 2 with
/// in_have == in_len), WANT_READ while still partial, or why not.
static gw_rec_status complete_partial(gw_rec *r, gw_rec_source *s) {
    if (r->in_state == 1) {
        while (r->in_have < HEADER) {
            long got = pull(s, r->in_header + r->in_have, HEADER - r->in_have);
            if (got <= 0) return socket_status(got);
            r->in_have += (uint32_t)got;
        }
        uint8_t header[HEADER];
        memcpy(header, r->in_header, HEADER);
        r->in_state = 0;
        gw_rec_status st = keep_partial(r, header, HEADER);
        if (st != GW_REC_OK) return st;
    }
    while (r->in_have < r->in_len) {
        long got = pull(s, r->in + r->in_have, r->in_len - r->in_have);
        if (got <= 0) return socket_status(got);
        r->in_have += (uint32_t)got;
    }
    return GW_REC_OK;
}

long gw_rec_read_from(gw_rec *r, gw_rec_source *s, uint8_t *buffer, size_t capacity, gw_rec_status *status) {
    struct aead *a = NULL;
    while (1) {
        if (r->stopped) {
            *status = (gw_rec_status)r->stopped;
            return -1;
        }
        if (r->in_state == 3) return hand_out(r, buffer, capacity);
        if (!a) {
            struct thread_aeads *t = aeads();
            if (!t) {
                *status = GW_REC_IO;
                return -1;
            }
            a = &t->open;
        }
        gw_rec_status st;
        if (r->in_state != 0) {
            // A record begun in an earlier read: its missing bytes, read into its own buffer.
            st = complete_partial(r, s);
            if (st != GW_REC_OK) {
                if (st != GW_REC_WANT_READ) r->stopped = (uint8_t)st;
                *status = st;
                return -1;
            }
            size_t plain = 0;
            uint8_t type = 0;
            st = open_record(r, a, r->in, r->in_len - HEADER, &plain, &type);
            if (st == GW_REC_OK && type == TYPE_DATA && plain > 0) {
                r->in_state = 3;
                r->in_have = 0;
                r->in_len = (uint32_t)plain;
                continue;
            }
            if (st == GW_REC_OK && type != TYPE_DATA) st = control(r, type, r->in + HEADER, plain);
            free(r->in);
            r->in = NULL;
            r->in_state = 0;
            r->in_have = r->in_len = 0;
            if (st != GW_REC_OK) {
                r->stopped = (uint8_t)st;
                *status = st;
                return -1;
            }
            continue;
        }
        // Whole records are opened where they landed and their plaintext moved to the front.
        long got = pull(s, buffer, capacity);
        if (got <= 0) {
            st = socket_status(got);
            if (st != GW_REC_WANT_READ) r->stopped = (uint8_t)st;
            *status = st;
            return -1;
        }
        size_t n = (size_t)got, at = 0, out = 0;
        st = GW_REC_OK;
        while (at < n && st == GW_REC_OK) {
            size_t body = n - at < HEADER ? 0 : body_length(buffer + at);
            if (body > GW_REC_MAX_BODY) {
                st = GW_REC_PROTOCOL;
            } else if (n - at < HEADER || n - at < HEADER + body) {
                st = keep_partial(r, buffer + at, n - at);
                break;
            } else {
                size_t plain = 0;
                uint8_t type = 0;
                st = open_record(r, a, buffer + at, body, &plain, &type);
                if (st == GW_REC_OK && type == TYPE_DATA) {
                    memmove(buffer + out, buffer + at + HEADER, plain);
                    out += plain;
                } else if (st == GW_REC_OK) {
                    st = control(r, type, buffer + at + HEADER, plain);
                }
                at += HEADER + body;
            }
        }
        // The plaintext before a close_notify or a bad record is handed out first; nothing after counts.
        if (st != GW_REC_OK) r->stopped = (uint8_t)st;
        if (out > 0) return (long)out;
        if (st != GW_REC_OK) {
            *status = st;
            return -1;
        }
        // Only control records, or a partial one: read on.
    }
}

long gw_rec_read(gw_rec *r, int fd, uint8_t *buffer, size_t capacity, gw_rec_status *status) {
    gw_rec_source s = {.fd = fd};
    return gw_rec_read_from(r, &s, buffer, capacity, status);
}

// MARK: writing

/// Writes what is left of the held control record. 1 when none is left.
static int flush_held(gw_rec *r, gw_rec_sink *k, gw_rec_status *status) {
    while (r->held_off < r->held_len) {
        long put = push(k, r->held + r->held_off, r->held_len - r->held_off);
        if (put < 0) {
            *status = errno == EAGAIN || errno == EWOULDBLOCK ? GW_REC_WANT_WRITE
                : errno == EPIPE || errno == ECONNRESET ? GW_REC_RESET : GW_REC_IO;
            return 0;
        }
        r->held_off += (uint32_t)put;
    }
    free(r->held);
    r->held = NULL;
    r->held_len = r->held_off = 0;
    return 1;
}

/// Writes a sealed control record, holding whatever the socket does not take. 1 unless the socket failed.
static int write_control(gw_rec *r, gw_rec_sink *k, const uint8_t *record, size_t len, gw_rec_status *status) {
    long put = push(k, record, len);
    if (put < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            *status = errno == EPIPE || errno == ECONNRESET ? GW_REC_RESET : GW_REC_IO;
            return 0;
        }
        put = 0;
    }
    if ((size_t)put == len) return 1;
    r->held = malloc(len - (size_t)put);
    if (!r->held) {
        *status = GW_REC_IO;
        return 0;
    }
    memcpy(r->held, record + put, len - (size_t)put);
    r->held_len = (uint32_t)(len - (size_t)put);
    r->held_off = 0;
    return 1;
}

/// The KeyUpdate the peer asked for (update_not_requested), then our next write key.
static int send_key_update(gw_rec *r, gw_rec_sink *k, gw_rec_status *status) {
    static const uint8_t message[5] = {KEY_UPDATE, 0, 0, 1, 0};
    uint8_t record[HEADER + sizeof message + 1 + TAG];
    size_t len = gw_rec_seal_record(r, TYPE_HANDSHAKE, message, sizeof message, record);
    if (len == 0 || !next_generation(r->suite, r->write_secret, r->write_key, r->write_iv)) {
        *status = GW_REC_IO;
        return 0;
    }
    r->write_seq = 0;
    return write_control(r, k, record, len, status);
}

/// Moves an iovec cursor on by `n` bytes.
static void advance(const struct iovec **iov, int *count, size_t *skip, size_t n) {
    while (n > 0 && *count > 0) {
        size_t here = (*iov)->iov_len - *skip;
        if (n < here) {
            *skip += n;
            return;
        }
        n -= here;
        (*iov)++;
        (*count)--;
        *skip = 0;
    }
    while (*count > 0 && (*iov)->iov_len == *skip) {  // skip empty descriptors
        (*iov)++;
        (*count)--;
        *skip = 0;
    }
}

long gw_rec_write_to(gw_rec *r, gw_rec_sink *k, const struct iovec *iov, int count, uint8_t *scratch,
                     size_t scratch_len, gw_rec_status *status) {
    *status = GW_REC_OK;
    struct thread_aeads *t = aeads();
    if (!t || scratch_len < GW_REC_MAX_SEALED) {
        *status = GW_REC_IO;
        return -1;
    }
    struct aead *a = &t->seal;
    if (!flush_held(r, k, status)) return *status == GW_REC_WANT_WRITE ? 0 : -1;
    size_t total = 0, skip = 0;
    for (int i = 0; i < count; i++) total += iov[i].iov_len;
    advance(&iov, &count, &skip, 0);
    long taken = 0;
    if (r->pending_plain > 0) {
        // The record partly on the wire: sealed again from the same bytes under the same sequence
        // number, it is the same bytes; the rest of it goes out.
        if (total < r->pending_plain) {
            *status = GW_REC_IO;  // the caller broke the retry rule
            return -1;
        }
        size_t len = seal(r, a, r->write_seq, TYPE_DATA, iov, skip, r->pending_plain, scratch);
        if (len == 0) {
            *status = GW_REC_IO;
            return -1;
        }
        while (r->pending_written < len) {
            long put = push(k, scratch + r->pending_written, len - r->pending_written);
            if (put < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    *status = GW_REC_WANT_WRITE;
                    return 0;
                }
                *status = errno == EPIPE || errno == ECONNRESET ? GW_REC_RESET : GW_REC_IO;
                return -1;
            }
            r->pending_written += (uint32_t)put;
        }
        taken = r->pending_plain;
        advance(&iov, &count, &skip, r->pending_plain);
        r->pending_plain = r->pending_written = 0;
        r->write_seq++;
    }
    if (__atomic_load_n(&r->update_wanted, __ATOMIC_ACQUIRE)
        && __atomic_exchange_n(&r->update_wanted, 0, __ATOMIC_ACQ_REL)) {
        if (!send_key_update(r, k, status)) return -1;
        if (r->held) {
            *status = GW_REC_WANT_WRITE;
            return taken;
        }
    }
    while ((size_t)taken < total) {
        // As many records as the scratch holds, then one write.
        size_t filled = 0, records = 0, plains[16];
        const struct iovec *cursor = iov;
        int left_count = count;
        size_t cursor_skip = skip, offered = (size_t)taken;
        while (offered < total && records < 16 && scratch_len - filled >= GW_REC_MAX_SEALED) {
            size_t plain = total - offered < GW_REC_MAX_PLAIN ? total - offered : GW_REC_MAX_PLAIN;
            size_t len = seal(r, a, r->write_seq + records, TYPE_DATA, cursor, cursor_skip, plain, scratch + filled);
            if (len == 0) {
                *status = GW_REC_IO;
                return -1;
            }
            plains[records++] = plain;
            filled += len;
            offered += plain;
            advance(&cursor, &left_count, &cursor_skip, plain);
        }
        long put = push(k, scratch, filled);
        if (put < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                *status = GW_REC_WANT_WRITE;
                return taken;
            }
            *status = errno == EPIPE || errno == ECONNRESET ? GW_REC_RESET : GW_REC_IO;
            return -1;
        }
        size_t written = (size_t)put;
        for (size_t i = 0; i < records; i++) {
            size_t sealed = plains[i] + HEADER + 1 + TAG;
            if (written < sealed) {
                if (written > 0) {
                    r->pending_plain = (uint32_t)plains[i];
                    r->pending_written = (uint32_t)written;
                }
                *status = GW_REC_WANT_WRITE;
                return taken;
            }
            written -= sealed;
            taken += (long)plains[i];
            r->write_seq++;
            advance(&iov, &count, &skip, plains[i]);
        }
    }
    return taken;
}

long gw_rec_write(gw_rec *r, int fd, const struct iovec *iov, int count, uint8_t *scratch, size_t scratch_len,
                  gw_rec_status *status) {
    gw_rec_sink k = {.fd = fd};
    return gw_rec_write_to(r, &k, iov, count, scratch, scratch_len, status);
}

int gw_rec_write_small_to(gw_rec *r, gw_rec_sink *k, const void *bytes, size_t count) {
    gw_rec_status status = GW_REC_OK;
    if (count > 4096 || r->pending_plain > 0 || !flush_held(r, k, &status)) return 0;
    uint8_t record[HEADER + 4096 + 1 + TAG];
    size_t len = gw_rec_seal_record(r, TYPE_DATA, bytes, count, record);
    return len > 0 && write_control(r, k, record, len, &status);
}

int gw_rec_write_small(gw_rec *r, int fd, const void *bytes, size_t count) {
    gw_rec_sink k = {.fd = fd};
    return gw_rec_write_small_to(r, &k, bytes, count);
}

void gw_rec_close_notify_to(gw_rec *r, gw_rec_sink *k) {
    static const uint8_t alert[2] = {1, 0};  // warning, close_notify
    gw_rec_status status = GW_REC_OK;
    if (r->suite == 0 || r->pending_plain > 0 || !flush_held(r, k, &status)) return;
    uint8_t record[HEADER + sizeof alert + 1 + TAG];
    size_t len = gw_rec_seal_record(r, TYPE_ALERT, alert, sizeof alert, record);
    if (len == 0) return;
    if (push(k, record, len) < 0) return;  // best effort: the write side is shut next
}

void gw_rec_close_notify(gw_rec *r, int fd) {
    gw_rec_sink k = {.fd = fd};
    gw_rec_close_notify_to(r, &k);
}
