// The gateway's own TLS 1.3 record layer (RFC 8446 section 5), run after OpenSSL has finished a
// server handshake and been freed (docs/TLS.md, "Records after the handshake"). Per connection it
// keeps only keys, ivs, sequence numbers and the traffic secrets KeyUpdate needs; the AEAD contexts
// are per thread and re-keyed per record. A record split across reads is held (malloc'd) only while
// it is partial; a record partly written is re-sealed on the retry (AEAD is deterministic) rather
// than held.
//
// Threads: the read half (gw_rec_read*) is Receive's, the write half (gw_rec_write*, close_notify)
// is Send's; they share no field but `update_wanted`, which is atomic. Either may run at the same
// time as the other on one connection, with no lock.
#ifndef GATEWAY_TLS13_RECORDS_H
#define GATEWAY_TLS13_RECORDS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/// Largest plaintext of a record (2^14) and the largest record body we accept (2^14 + 256).
/// A sealed record of GW_REC_MAX_PLAIN bytes is GW_REC_MAX_SEALED: header, plaintext, content type, tag.
enum { GW_REC_MAX_PLAIN = 16384, GW_REC_MAX_BODY = 16384 + 256, GW_REC_MAX_SEALED = 5 + 16384 + 1 + 16 };

/// The suites the layer runs (by TLS 1.3 cipher-suite id); anything else stays on OpenSSL.
typedef enum {
    GW_REC_NONE = 0,
    GW_REC_AES_128_GCM_SHA256 = 1,
    GW_REC_AES_256_GCM_SHA384 = 2,
    GW_REC_CHACHA20_POLY1305_SHA256 = 3,
} gw_rec_suite;

typedef enum {
    GW_REC_OK = 0,
    /// Needs more bytes from the socket (it would block).
    GW_REC_WANT_READ,
    /// The socket is full.
    GW_REC_WANT_WRITE,
    /// The peer sent close_notify, or ended the stream.
    GW_REC_CLOSED,
    GW_REC_RESET,
    GW_REC_IO,
    /// A record that fails authentication (bad_record_mac).
    GW_REC_BAD_RECORD,
    /// A malformed or unexpected record or message (too long, an unknown type, a handshake message
    /// other than KeyUpdate, a fragmented alert or handshake message).
    GW_REC_PROTOCOL,
    /// The peer sent a fatal alert (any but close_notify and user_canceled).
    GW_REC_ALERT,
} gw_rec_status;

/// One connection's record state, 264 bytes on x86-64. All zero: not in use.
typedef struct gw_rec {
    uint8_t suite;                 // gw_rec_suite
    uint8_t hash_len;              // 32 or 48
    uint8_t key_len;               // 16 or 32
    uint8_t update_wanted;         // atomic: Receive sets after a KeyUpdate asking for ours, Send takes
    // Receive's.
    uint8_t in_state;              // 0 nothing held, 1 header partial, 2 body partial, 3 plaintext to hand out
    uint8_t in_header[5];
    uint8_t stopped;               // a gw_rec_status every later read answers (close_notify, a bad record)
    uint32_t in_have;              // state 1, 2: bytes held of the record; 3: plaintext handed out
    uint32_t in_len;               // state 2: the record's length with its header; 3: plaintext length
    uint8_t *in;                   // states 2, 3: the record (malloc'd; freed when done)
    uint64_t read_seq;
    uint8_t read_key[32], read_iv[12], read_secret[48];
    // Send's.
    uint64_t write_seq;
    uint32_t pending_plain;        // a data record partly written: its plaintext length (0: none)
    uint32_t pending_written;      // and how many of its sealed bytes are on the wire
    uint32_t held_len, held_off;   // a control record (KeyUpdate, a small write) not yet wholly written
    uint8_t *held;
    uint8_t write_key[32], write_iv[12], write_secret[48];
} gw_rec;

/// Where ciphertext comes from: a socket (`fd` >= 0), or memory (`fd` < 0: tests and the fuzz
/// target), handed out at most `chunk` bytes a call (0: no limit), then "would block" (or the end
/// of the stream when `end_after` is set).
typedef struct gw_rec_source {
    int fd;
    int end_after;
    const uint8_t *bytes;
    size_t length, position, chunk;
} gw_rec_source;

/// Where ciphertext goes: a socket, or memory taking at most `room` more bytes (tests).
typedef struct gw_rec_sink {
    int fd;
    uint8_t *bytes;
    size_t capacity, length, room;
} gw_rec_sink;

/// The suite for a TLS 1.3 cipher-suite id (0x1301...0x1303), or GW_REC_NONE.
gw_rec_suite gw_rec_suite_of(uint16_t id);

/// Starts `r` for `suite` from the application traffic secrets (each `hash_len` bytes: the peer's
/// for reading, ours for writing), with `write_seq` records already sent under ours. 1, or 0 if the
/// keys cannot be derived (r left unused).
int gw_rec_start(gw_rec *r, gw_rec_suite suite, const uint8_t *read_secret, const uint8_t *write_secret,
                 size_t secret_len, uint64_t write_seq);

/// Frees what `r` holds and wipes its keys (the reclaiming thread, when no other uses it).
void gw_rec_clear(gw_rec *r);

/// HKDF-Expand-Label(secret, label, "", out_len) for the suite's hash (out_len <= hash_len).
int gw_rec_expand_label(gw_rec_suite suite, const uint8_t *secret, const char *label, uint8_t *out, size_t out_len);

/// Send: one record of inner type `type` (23 data, 21 alert, 22 handshake) around `len` <= 2^14 bytes,
/// sealed under the write key and the next sequence number, into `out` (len + 22 bytes): its length,
/// or 0 on failure. The writers below use it for control records; tests and the fuzz target for any.
size_t gw_rec_seal_record(gw_rec *r, uint8_t type, const void *bytes, size_t len, uint8_t *out);

/// Receive: plaintext into `buffer` (> 0 bytes), or -1 with `*status` (WANT_READ when the socket
/// is drained; CLOSED at close_notify or the end of the stream). `capacity` must be at least 1.
/// Handles records split across reads, several per read, padding, alerts and KeyUpdate.
long gw_rec_read(gw_rec *r, int fd, uint8_t *buffer, size_t capacity, gw_rec_status *status);
long gw_rec_read_from(gw_rec *r, gw_rec_source *source, uint8_t *buffer, size_t capacity, gw_rec_status *status);

/// Send: seals the front of the `count` iovecs into records of up to 2^14 bytes (in `scratch`,
/// at least GW_REC_MAX_SEALED bytes; several records a write when it is larger) and writes them.
/// Returns the plaintext bytes taken (records wholly written), fewer than offered when the socket
/// filled (`*status` WANT_WRITE), or -1 with `*status` on failure. While `pending_plain` is set a
/// record is partly on the wire: the next call must begin with the same bytes (at least as many).
/// A KeyUpdate the peer asked for is sent before the next record.
long gw_rec_write(gw_rec *r, int fd, const struct iovec *iov, int count, uint8_t *scratch, size_t scratch_len,
                  gw_rec_status *status);
long gw_rec_write_to(gw_rec *r, gw_rec_sink *sink, const struct iovec *iov, int count, uint8_t *scratch,
                     size_t scratch_len, gw_rec_status *status);

/// Send: a data record is partly on the wire (the next write must begin with its bytes). A field read
/// here, not through Swift's `pointee`, which may copy the whole struct, Receive's half included.
static inline int gw_rec_holds_partial(const gw_rec *r) { return r->pending_plain > 0; }

/// Send (or Receive before the connection is ready): `count` <= 4096 bytes as one record, taken
/// whole (1) or not at all (0: a record partly written, or a socket error). What the socket does
/// not take at once is held and written before anything else.
int gw_rec_write_small(gw_rec *r, int fd, const void *bytes, size_t count);
int gw_rec_write_small_to(gw_rec *r, gw_rec_sink *sink, const void *bytes, size_t count);

/// Send, closing: a held control record, then close_notify, best effort (not after a data record
/// left partly written: the peer could not read it).
void gw_rec_close_notify(gw_rec *r, int fd);
void gw_rec_close_notify_to(gw_rec *r, gw_rec_sink *sink);

#endif
