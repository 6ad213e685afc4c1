import CTLS
import Glibc
import XCTest

/// The gateway's own TLS 1.3 record layer (Sources/CTLS/tls13_records.c, docs/TLS.md) against RFC 8448's
/// "Simple 1-RTT Handshake" trace (section 3: its application traffic secrets, keys, ivs and records), and
/// two record states facing each other for what the trace does not show: splits, sizes, partial writes,
/// KeyUpdate and bad records.
final class TLSRecordLayerTests: XCTestCase {
    // RFC 8448 section 3.
    static let clientSecret = hex("9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5")
    static let serverSecret = hex("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643")
    static let clientAppRecord = hex("""
        1703030043a23f7054b62c94d0affafe8228ba55cbefacea42f914aa66bcab3f2b9819a8a5b46b395bd54a9a20441e2b\
        62974e1f5a6292a2977014bd1e3deae63aeebb21694915e4
        """)
    static let serverAppRecord = hex("""
        17030300432e937e11ef4ac740e538ad36005fc4a46932fc3225d05f82aa1b36e30efaf97d90e6dffc602dcb501a59a8\
        fcc49c4bf2e5f0a21c0047c2abf332540dd032e167c2955d
        """)
    static let clientAlertRecord = hex("1703030013c9872760655666b74d7ff1153efd6db6d0b0e3")
    static let serverAlertRecord = hex("1703030013b58fd67166ebf599d24720cfbe7efa7a8864a9")
    static let payload = [UInt8](0...0x31)

    static func hex(_ text: String) -> [UInt8] {
        let digits = Array(text.filter(\.isHexDigit))
        return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(digits[$0...$0 + 1]), radix: 16)! }
    }

    /// A record state as the RFC's server: reading the client's records, writing its own, `written`
    /// records already sent (the trace's NewSessionTicket is the server's record 0).
    private func server(written: UInt64 = 1) -> gw_rec {
        var r = gw_rec()
        let started = gw_rec_start(&r, GW_REC_AES_128_GCM_SHA256, Self.clientSecret, Self.serverSecret, 32, written)
        XCTAssertEqual(started, 1)
        return r
    }

    /// Both ends of a connection: `a` writes what `b` reads, and back.
    private func pair(_ suite: gw_rec_suite) -> (gw_rec, gw_rec) {
        let length = suite == GW_REC_AES_256_GCM_SHA384 ? 48 : 32
        let one = (0..<length).map { UInt8($0) }, two = (0..<length).map { UInt8(200 - $0) }
        var a = gw_rec(), b = gw_rec()
        XCTAssertEqual(gw_rec_start(&a, suite, one, two, length, 0), 1)
        XCTAssertEqual(gw_rec_start(&b, suite, two, one, length, 0), 1)
        return (a, b)
    }

    /// Everything `r` reads from `bytes`, handed out `chunk` bytes a read (0: all at once) into a buffer of
    /// `capacity`, until it would block or ends; and how it stopped.
    private func readAll(_ r: inout gw_rec, _ bytes: [UInt8], chunk: Int = 0, capacity: Int = 65536, end: Bool = false)
        -> ([UInt8], gw_rec_status) {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: capacity)
        return bytes.withUnsafeBufferPointer { b in
            var source = gw_rec_source(fd: -1, end_after: end ? 1 : 0, bytes: b.baseAddress, length: b.count,
                                       position: 0, chunk: chunk)
            while true {
                var status = GW_REC_OK
                let n = gw_rec_read_from(&r, &source, &buffer, capacity, &status)
                if n < 0 { return (out, status) }
                XCTAssertGreaterThan(n, 0)
                out += buffer[0..<n]
            }
        }
    }

    private func sealAll(_ r: inout gw_rec, _ plain: [[UInt8]], room: Int = Int.max) -> [UInt8] {
        var sink = [UInt8](repeating: 0, count: plain.reduce(0) { $0 + $1.count } * 2 + 4096)
        var scratch = [UInt8](repeating: 0, count: 4 * GW_REC_MAX_SEALED)
        let capacity = sink.count
        let length = sink.withUnsafeMutableBufferPointer { s -> Int in
            var k = gw_rec_sink(fd: -1, bytes: s.baseAddress, capacity: capacity, length: 0, room: room)
            withIOVecs(plain) { iov in
                var status = GW_REC_OK
                let taken = gw_rec_write_to(&r, &k, iov.baseAddress, Int32(iov.count), &scratch, scratch.count,
                                            &status)
                XCTAssertEqual(taken, plain.reduce(0) { $0 + $1.count })
            }
            return k.length
        }
        return Array(sink[0..<length])
    }

    private func withIOVecs<R>(_ parts: [[UInt8]], _ body: (UnsafeBufferPointer<iovec>) -> R) -> R {
        let storage = parts.map { p -> UnsafeMutableRawPointer in
            let m = UnsafeMutableRawPointer.allocate(byteCount: max(p.count, 1), alignment: 1)
            p.withUnsafeBytes { m.copyMemory(from: $0.baseAddress!, byteCount: p.count) }
            return m
        }
        defer { storage.forEach { $0.deallocate() } }
        let iov = zip(storage, parts).map { iovec(iov_base: $0, iov_len: $1.count) }
        return iov.withUnsafeBufferPointer(body)
    }

    // MARK: RFC 8448

    func testTheKeyScheduleGivesRFC8448sKeysAndIVs() {
        var key = [UInt8](repeating: 0, count: 16), iv = [UInt8](repeating: 0, count: 12)
        XCTAssertEqual(gw_rec_expand_label(GW_REC_AES_128_GCM_SHA256, Self.serverSecret, "key", &key, 16), 1)
        XCTAssertEqual(gw_rec_expand_label(GW_REC_AES_128_GCM_SHA256, Self.serverSecret, "iv", &iv, 12), 1)
        XCTAssertEqual(key, Self.hex("9f02283b6c9c07efc26bb9f2ac92e356"))
        XCTAssertEqual(iv, Self.hex("cf782b88dd83549aadf1e984"))
        XCTAssertEqual(gw_rec_expand_label(GW_REC_AES_128_GCM_SHA256, Self.clientSecret, "key", &key, 16), 1)
        XCTAssertEqual(gw_rec_expand_label(GW_REC_AES_128_GCM_SHA256, Self.clientSecret, "iv", &iv, 12), 1)
        XCTAssertEqual(key, Self.hex("17422dda596ed5d9acd890e3c63f5051"))
        XCTAssertEqual(iv, Self.hex("5b78923dee08579033e523d9"))
    }

    func testRFC8448sRecordsOpenAndSealByteForByte() {
        var r = server()
        let (read, status) = readAll(&r, Self.clientAppRecord)
        XCTAssertEqual(read, Self.payload)
        XCTAssertEqual(status, GW_REC_WANT_READ)
        // The server's record 1 (after its NewSessionTicket): only the right sequence number gives these bytes.
        XCTAssertEqual(sealAll(&r, [Self.payload]), Self.serverAppRecord)
        let (after, closed) = readAll(&r, Self.clientAlertRecord)
        XCTAssertEqual(after, [])
        XCTAssertEqual(closed, GW_REC_CLOSED)
        var alert = [UInt8](repeating: 0, count: 64)
        alert.withUnsafeMutableBufferPointer { a in
            var k = gw_rec_sink(fd: -1, bytes: a.baseAddress, capacity: 64, length: 0, room: 64)
            gw_rec_close_notify_to(&r, &k)
            XCTAssertEqual(Array(a[0..<k.length]), Self.serverAlertRecord)
        }
        gw_rec_clear(&r)
    }

    func testAWrongSequenceNumberFailsTheFirstRecord() {
        for written: UInt64 in [0, 2] {
            var r = server(written: written)
            XCTAssertNotEqual(sealAll(&r, [Self.payload]), Self.serverAppRecord, "write sequence \(written)")
            gw_rec_clear(&r)
        }
        var late = server()
        late.read_seq = 1
        XCTAssertEqual(readAll(&late, Self.clientAppRecord).1, GW_REC_BAD_RECORD)
        gw_rec_clear(&late)
    }

    func testRecordsSplitAnywhereReadTheSame() {
        let stream = Self.clientAppRecord + Self.clientAlertRecord
        for chunk in [1, 2, 4, 5, 6, 71, 72, 73] {
            for capacity in [1, 7, 50, 4096] {
                var r = server()
                let (read, status) = readAll(&r, stream, chunk: chunk, capacity: capacity)
                XCTAssertEqual(read, Self.payload, "chunk \(chunk) capacity \(capacity)")
                XCTAssertEqual(status, GW_REC_CLOSED, "chunk \(chunk) capacity \(capacity)")
                gw_rec_clear(&r)
            }
        }
    }

    // MARK: both ends

    func testMaxSizeRecordsRoundTripInEverySuiteAtEverySplit() {
        let parts: [[UInt8]] = [Array(repeating: 7, count: 3), (0..<70000).map { UInt8(truncatingIfNeeded: $0 * 31) },
                                [], Array(repeating: 9, count: 16384), [1]]
        let plain = parts.flatMap { $0 }
        for suite in [GW_REC_AES_128_GCM_SHA256, GW_REC_AES_256_GCM_SHA384, GW_REC_CHACHA20_POLY1305_SHA256] {
            var (a, b) = pair(suite)
            let wire = sealAll(&a, parts)
            // 16384-byte records (the most a record may carry), the last one short.
            XCTAssertEqual(wire.count, plain.count + 22 * ((plain.count + 16383) / 16384), "\(suite)")
            for chunk in [0, 1000, 16389, 16411] {
                var reader = b
                let (read, status) = readAll(&reader, wire, chunk: chunk, capacity: 9000)
                XCTAssertEqual(read.count, plain.count, "\(suite) chunk \(chunk)")
                XCTAssertTrue(read == plain, "\(suite) chunk \(chunk)")
                XCTAssertEqual(status, GW_REC_WANT_READ)
                free(reader.in)
            }
            gw_rec_clear(&a)
            gw_rec_clear(&b)
        }
    }

    /// A socket that takes a few hundred bytes at a time: the record partly written is sealed again on the
    /// retry from the same bytes (nothing held), and the stream reads back whole.
    func testPartialWritesResumeWithTheSameBytes() {
        var (a, b) = pair(GW_REC_AES_128_GCM_SHA256)
        let plain = (0..<50000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        var wire = [UInt8](repeating: 0, count: 60000)
        var scratch = [UInt8](repeating: 0, count: 2 * GW_REC_MAX_SEALED)
        var offered = 0, calls = 0, sawPending = false
        wire.withUnsafeMutableBufferPointer { w in
            var k = gw_rec_sink(fd: -1, bytes: w.baseAddress, capacity: w.count, length: 0, room: 0)
            while offered < plain.count {
                calls += 1
                k.room = 777
                let rest = Array(plain[offered...])
                withIOVecs([rest]) { iov in
                    var status = GW_REC_OK
                    let taken = gw_rec_write_to(&a, &k, iov.baseAddress, 1, &scratch, scratch.count, &status)
                    XCTAssertGreaterThanOrEqual(taken, 0)
                    offered += taken
                }
                sawPending = sawPending || a.pending_plain > 0
                XCTAssertNil(a.held)
            }
            XCTAssertEqual(a.pending_plain, 0)
            let (read, _) = readAll(&b, Array(w[0..<k.length]))
            XCTAssertTrue(read == plain)
        }
        XCTAssertTrue(sawPending)
        XCTAssertGreaterThan(calls, 60)
        gw_rec_clear(&a)
        gw_rec_clear(&b)
    }

    func testKeyUpdateRotatesTheReadKeyAndAnswersWhenAsked() {
        var (client, server) = pair(GW_REC_CHACHA20_POLY1305_SHA256)
        var record = [UInt8](repeating: 0, count: 64)
        // The client asks for an update: its KeyUpdate under its old key, then data under its next one.
        let n = gw_rec_seal_record(&client, 22, [24, 0, 0, 1, 1] as [UInt8], 5, &record)
        var next = [UInt8](repeating: 0, count: 32)
        let clientWrite = withUnsafeBytes(of: client.write_secret) { Array($0[0..<32]) }
        XCTAssertEqual(gw_rec_expand_label(GW_REC_CHACHA20_POLY1305_SHA256, clientWrite, "traffic upd", &next, 32), 1)
        let peerRead = withUnsafeBytes(of: client.read_secret) { Array($0[0..<32]) }
        var updated = gw_rec()
        XCTAssertEqual(gw_rec_start(&updated, GW_REC_CHACHA20_POLY1305_SHA256, peerRead, next, 32, 0), 1)
        let data = sealAll(&updated, [Array("after the update".utf8)])
        let (read, status) = readAll(&server, Array(record[0..<n]) + data)
        XCTAssertEqual(String(decoding: read, as: UTF8.self), "after the update")
        XCTAssertEqual(status, GW_REC_WANT_READ)
        XCTAssertEqual(server.update_wanted, 1)
        // The server answers with its own KeyUpdate before its next record, which the client reads.
        let answer = sealAll(&server, [Array("reply".utf8)])
        XCTAssertEqual(server.update_wanted, 0)
        XCTAssertEqual(server.write_seq, 1)
        let (reply, _) = readAll(&updated, answer)
        XCTAssertEqual(String(decoding: reply, as: UTF8.self), "reply")
        for r in [client, server, updated] { var r = r; gw_rec_clear(&r) }
    }

    func testPaddingIsStrippedAndZeroLengthDataSkipped() {
        var (a, b) = pair(GW_REC_AES_128_GCM_SHA256)
        var wire: [UInt8] = []
        var record = [UInt8](repeating: 0, count: 128)
        // Content, its type, then padding: sealed as content whose own type byte is a zero of padding.
        var n = gw_rec_seal_record(&a, 0, Array("abc".utf8) + [23, 0, 0, 0], 7, &record)
        wire += record[0..<n]
        n = gw_rec_seal_record(&a, 23, nil, 0, &record)
        wire += record[0..<n]
        let (read, status) = readAll(&b, wire)
        XCTAssertEqual(String(decoding: read, as: UTF8.self), "abc")
        XCTAssertEqual(status, GW_REC_WANT_READ)
        gw_rec_clear(&a)
        gw_rec_clear(&b)
    }

    func testBadRecordsAreRefusedByCause() {
        func outcome(_ make: (inout gw_rec, inout [UInt8]) -> [UInt8]) -> gw_rec_status {
            var (a, b) = pair(GW_REC_AES_128_GCM_SHA256)
            var record = [UInt8](repeating: 0, count: 17000)
            let wire = make(&a, &record)
            let (read, status) = readAll(&b, wire, end: true)
            XCTAssertEqual(read, [])
            gw_rec_clear(&a)
            gw_rec_clear(&b)
            return status
        }
        func sealed(_ type: UInt8, _ bytes: [UInt8]) -> (inout gw_rec, inout [UInt8]) -> [UInt8] {
            { a, record in Array(record[0..<gw_rec_seal_record(&a, type, bytes, bytes.count, &record)]) }
        }
        func altered(_ change: @escaping (inout [UInt8]) -> Void) -> (inout gw_rec, inout [UInt8]) -> [UInt8] {
            { a, r in
                var w = sealed(23, [1, 2, 3])(&a, &r)
                change(&w)
                return w
            }
        }
        XCTAssertEqual(outcome(altered { $0[7] ^= 1 }), GW_REC_BAD_RECORD)
        XCTAssertEqual(outcome(altered { $0[0] = 22 }), GW_REC_PROTOCOL)  // outer type must be application_data
        XCTAssertEqual(outcome { _, _ in [23, 3, 3, 0x41, 0x01] + [UInt8](repeating: 0, count: 16641) },
                       GW_REC_PROTOCOL)  // longer than 2^14 + 256
        XCTAssertEqual(outcome(sealed(22, [4, 0, 0, 1, 0])), GW_REC_PROTOCOL)  // a NewSessionTicket from a client
        XCTAssertEqual(outcome(sealed(22, [24, 0, 0, 1])), GW_REC_PROTOCOL)  // a KeyUpdate cut short
        XCTAssertEqual(outcome(sealed(22, [24, 0, 0, 1, 2])), GW_REC_PROTOCOL)  // neither 0 nor 1
        XCTAssertEqual(outcome(sealed(21, [2, 40])), GW_REC_ALERT)  // handshake_failure
        XCTAssertEqual(outcome(sealed(21, [1, 0, 0])), GW_REC_PROTOCOL)  // an alert must be two bytes
        XCTAssertEqual(outcome(sealed(0, [0, 0])), GW_REC_PROTOCOL)  // all padding: no content type
        XCTAssertEqual(outcome(sealed(20, [1])), GW_REC_PROTOCOL)  // change_cipher_spec, protected
        XCTAssertEqual(outcome { _, _ in [23, 3, 3, 0, 16] + [UInt8](repeating: 0, count: 16) }, GW_REC_PROTOCOL)
        XCTAssertEqual(outcome(sealed(21, [1, 0])), GW_REC_CLOSED)  // close_notify
        XCTAssertEqual(outcome { _, _ in [] }, GW_REC_CLOSED)  // the end of the stream
    }
}
