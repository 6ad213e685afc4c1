// libFuzzer target for the gateway's TLS 1.3 record reader (Sources/CTLS/tls13_records.c). Built with
// clang by Tools/fuzz.sh (target `tlsrecord`), never by SwiftPM.
//
// Byte 0 picks the suite and the mode, byte 1 the size of each socket read (0: everything at once),
// byte 2 the reader's buffer. Then:
//   raw:    the rest is the ciphertext stream as a client might send it: read whole and read in pieces,
//           the plaintext and the way the reading stopped must be the same, and no more plaintext than
//           bytes came;
//   sealed: the rest is a script a writer seals into records (application data of chosen lengths,
//           padded records, empty ones, KeyUpdates asking or not, a close_notify, a flipped byte); the
//           reader in pieces must give back exactly the data sealed before the end (or before the
//           flipped byte, then fail), follow every KeyUpdate, and note each request for ours.
#include "tls13_records.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { STREAM = 1 << 18 };

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s (line %d)\n", #c, __LINE__); abort(); } } while (0)

static uint8_t wire[STREAM], expected[STREAM], got[STREAM], buffer[1 << 15];

static gw_rec_status read_all(gw_rec *r, const uint8_t *bytes, size_t len, size_t chunk, size_t capacity,
                              size_t *out) {
    gw_rec_source s = {.fd = -1, .end_after = 1, .bytes = bytes, .length = len, .chunk = chunk};
    *out = 0;
    while (1) {
        gw_rec_status status = GW_REC_OK;
        long n = gw_rec_read_from(r, &s, buffer, capacity, &status);
        if (n < 0) return status;
        CHECK(n > 0 && (size_t)n <= capacity && *out + (size_t)n <= STREAM);
        memcpy(got + *out, buffer, (size_t)n);
        *out += (size_t)n;
    }
}

static void start(gw_rec *r, gw_rec_suite suite, uint8_t read, uint8_t write) {
    uint8_t a[48], b[48];
    memset(a, read, sizeof a);
    memset(b, write, sizeof b);
    size_t len = suite == GW_REC_AES_256_GCM_SHA384 ? 48 : 32;
    CHECK(gw_rec_start(r, suite, a, b, len, 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    gw_rec_suite suite = (gw_rec_suite)(1 + data[0] % 3);
    int sealed = data[0] & 0x80;
    size_t chunk = data[1], capacity = 1 + (size_t)data[2] * 97;
    data += 3;
    size -= 3;
    if (!sealed) {
        gw_rec whole, pieces;
        start(&whole, suite, 1, 2);
        start(&pieces, suite, 1, 2);
        size_t n_whole = 0, n_pieces = 0;
        gw_rec_status s_whole = read_all(&whole, data, size, 0, sizeof buffer, &n_whole);
        static uint8_t first[STREAM];
        memcpy(first, got, n_whole);
        gw_rec_status s_pieces = read_all(&pieces, data, size, chunk, capacity, &n_pieces);
        CHECK(s_whole == s_pieces && n_whole == n_pieces && n_whole <= size);
        CHECK(memcmp(first, got, n_whole) == 0);
        gw_rec_clear(&whole);
        gw_rec_clear(&pieces);
        return 0;
    }
    gw_rec writer, reader;
    start(&writer, suite, 2, 1);
    start(&reader, suite, 1, 2);
    size_t len = 0, plain = 0, requests = 0, at = 0;
    int ends = 0, broken = 0;
    static uint8_t content[GW_REC_MAX_PLAIN + 8];
    while (at < size && !ends && !broken && len + GW_REC_MAX_SEALED + 64 < STREAM) {
        uint8_t op = data[at++];
        size_t n = 0;
        switch (op % 6) {
        case 0:  // application data, up to 2^14 bytes
        case 1: {
            size_t want = at + 1 < size ? ((size_t)data[at] << 8 | data[at + 1]) % (GW_REC_MAX_PLAIN + 1) : 0;
            at += 2;
            for (size_t i = 0; i < want; i++) content[i] = (uint8_t)(i * 131 + op);
            n = gw_rec_seal_record(&writer, 23, content, want, wire + len);
            memcpy(expected + plain, content, want);
            plain += want;
            break;
        }
        case 2: {  // padded: content, its type, zeros
            size_t want = op >> 3, pad = op & 7;
            for (size_t i = 0; i < want; i++) content[i] = (uint8_t)(i + 1);
            content[want] = 23;
            memset(content + want + 1, 0, pad);
            n = gw_rec_seal_record(&writer, 0, content, want + 1 + pad, wire + len);
            memcpy(expected + plain, content, want);
            plain += want;
            break;
        }
        case 3: {  // KeyUpdate, then the writer's next generation
            uint8_t message[5] = {24, 0, 0, 1, (uint8_t)(op >> 7)};
            n = gw_rec_seal_record(&writer, 22, message, sizeof message, wire + len);
            uint8_t next[48], read_secret[48];
            size_t hash = writer.hash_len;
            memcpy(read_secret, writer.read_secret, hash);
            CHECK(gw_rec_expand_label(suite, writer.write_secret, "traffic upd", next, hash));
            gw_rec_clear(&writer);
            CHECK(gw_rec_start(&writer, suite, read_secret, next, hash, 0));
            requests += op >> 7;
            break;
        }
        case 4: {  // close_notify
            static const uint8_t alert[2] = {1, 0};
            n = gw_rec_seal_record(&writer, 21, alert, 2, wire + len);
            ends = 1;
            break;
        }
        default:  // a byte flipped somewhere in a data record
            content[0] = op;
            n = gw_rec_seal_record(&writer, 23, content, 1, wire + len);
            wire[len + 5 + (op >> 3) % (n - 5)] ^= (uint8_t)(1 + (op & 7));  // in the body: the length holds
            broken = 1;
            break;
        }
        CHECK(n > 0);
        len += n;
    }
    size_t out = 0;
    gw_rec_status status = read_all(&reader, wire, len, chunk, capacity, &out);
    CHECK(out == plain);
    CHECK(memcmp(got, expected, plain) == 0);
    CHECK(broken ? status == GW_REC_BAD_RECORD || status == GW_REC_PROTOCOL : status == GW_REC_CLOSED);
    CHECK(broken || reader.update_wanted == (requests > 0));
    gw_rec_clear(&writer);
    gw_rec_clear(&reader);
    return 0;
}
