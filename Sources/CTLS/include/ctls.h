// OpenSSL 3 glue for the gateway's TLS transport: contexts (certificates, SNI, ALPN, client CAs,
// session-ticket keys) and per-connection calls whose results are one small enum instead of
// SSL_get_error plus the thread's error queue.
#ifndef GATEWAY_CTLS_H
#define GATEWAY_CTLS_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>
#include "tls13_records.h"

/// What a TLS call came to, when it did not move bytes.
typedef enum {
    GW_TLS_OK = 0,
    /// Needs more bytes: the socket had none left (it returned EAGAIN).
    GW_TLS_WANT_READ,
    /// The socket's send buffer is full.
    GW_TLS_WANT_WRITE,
    /// The peer closed (close_notify, or end of stream).
    GW_TLS_CLOSED,
    /// The peer reset the connection.
    GW_TLS_RESET,
    /// Another socket error.
    GW_TLS_IO,
    /// Bytes that are not TLS, or break it (a malformed ClientHello, a bad record, no shared cipher).
    GW_TLS_PROTOCOL,
    /// A protocol version below TLS 1.2 (or none in common).
    GW_TLS_VERSION,
    /// The peer's certificate was missing or failed verification.
    GW_TLS_CERTIFICATE,
} gw_tls_status;

/// Session-ticket keys: one set per engine, shared by its server contexts (each holds a reference).
typedef struct gw_tls_tickets gw_tls_tickets;

/// Keys derived from `secret` (at most 64 bytes used; NULL or empty: 32 random bytes, this set alone
/// knows them) for `epoch`: tickets are issued under the epoch's key and accepted under it and the
/// previous epoch's. Two sets from the same secret at the same epoch issue and accept the same tickets.
/// NULL when out of memory or randomness.
gw_tls_tickets *gw_tls_tickets_new(const unsigned char *secret, size_t secret_len, uint64_t epoch);

/// A new secret at the current epoch (a changed key file): tickets under the old one make a full
/// handshake. 0 (and the old keys kept) if the keys cannot be derived.
int gw_tls_tickets_rekey(gw_tls_tickets *tickets, const unsigned char *secret, size_t secret_len);

/// Moves to `epoch` if it is later than the current one (never back); 0 if the keys cannot be derived.
int gw_tls_tickets_advance(gw_tls_tickets *tickets, uint64_t epoch);

uint64_t gw_tls_tickets_epoch(gw_tls_tickets *tickets);

/// Drops the caller's reference.
void gw_tls_tickets_release(gw_tls_tickets *tickets);

/// A server context from `pairs` certificate chain / private key PEM files: the first pair is the
/// default, SNI picks another whose certificate names match. TLS 1.2 and 1.3 only, no
/// renegotiation, stateless session tickets under `tickets` (which it retains), no session cache.
/// `client_ca` (or NULL) requires and verifies client certificates; `alpn` (or NULL) is a
/// comma-separated protocol list. NULL on failure, with the reason in `error`.
SSL_CTX *gw_tls_server_context(const char *const *certs, const char *const *keys, int pairs,
                               const char *client_ca, const char *alpn, gw_tls_tickets *tickets,
                               char *error, size_t error_len);

/// A client context: verifies the server against `ca` (a PEM file) when `verify`, else against the
/// system's store; `verify` 0 checks nothing (load tool only). `cert`/`key` (or NULL) for mTLS.
SSL_CTX *gw_tls_client_context(int verify, const char *ca, const char *cert, const char *key,
                               char *error, size_t error_len);

void gw_tls_context_free(SSL_CTX *ctx);

/// One connection on `fd` (non-blocking; the caller keeps owning readiness and the descriptor).
/// A client sends `server_name` as SNI (may be NULL) and, when verifying, checks the certificate
/// against `verify_name` (a host name or IP address; may be NULL). NULL when out of memory.
SSL *gw_tls_new(SSL_CTX *ctx, int fd, int server, const char *server_name, const char *verify_name);

void gw_tls_free(SSL *ssl);

/// Advances the handshake: GW_TLS_OK once it is complete.
gw_tls_status gw_tls_handshake(SSL *ssl);

/// Decrypted bytes into `buffer` (> 0), or -1 with `*status` saying why none.
long gw_tls_read(SSL *ssl, void *buffer, size_t length, gw_tls_status *status);

/// Encrypts and sends up to `length` bytes: how many were taken (> 0), or -1 with `*status`. After
/// GW_TLS_WANT_WRITE the next call must begin with the same bytes (it may pass more).
long gw_tls_write(SSL *ssl, const void *buffer, size_t length, gw_tls_status *status);

/// Sends close_notify if the socket takes it; never waits for the peer's.
void gw_tls_close_notify(SSL *ssl);

/// A server connection whose TLS 1.3 handshake just finished (gw_tls_handshake returned OK): starts
/// `records` with its application traffic keys and sequence numbers and returns 1, after which the
/// caller frees `ssl` and runs the records itself (tls13_records.h). 0 (TLS 1.2, a suite the record
/// layer does not run, bytes read ahead): the connection stays on OpenSSL.
int gw_tls_detach(SSL *ssl, gw_rec *records);

/// 1 if the session was resumed from a ticket.
int gw_tls_resumed(SSL *ssl);

/// The protocol version negotiated, e.g. "TLSv1.3".
const char *gw_tls_version(SSL *ssl);

/// The reason for the calling thread's last failure, for a log line.
const char *gw_tls_last_reason(void);

#endif
