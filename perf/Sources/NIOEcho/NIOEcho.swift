// NIOEcho: a SwiftNIO echo server for the gateway frame (shared/PROTOCOL.md).
//
// A reference peer for perf/run.sh, built the way SwiftNIO is meant to be used:
//   - ServerBootstrap on a MultiThreadedEventLoopGroup (one loop per core by default),
//   - FrameDecoder (a ByteToMessageDecoder) cuts frames as zero-copy slices and
//     rejects a bad length (< 18 or > max-frame) by closing that one connection,
//   - EchoHandler writes every frame back and flushes once per read burst
//     (channelReadComplete), so many replies leave in one writev,
//   - TCP_NODELAY on every accepted connection.
import ArgumentParser
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The 18-byte header: length(4) seq(4) cmd(2) status(4) uid(4), big-endian.
let frameHeaderSize = 18

enum FrameError: Error {
    case badLength(UInt32)
}

/// Cuts the inbound byte stream into whole frames. Each frame goes up the pipeline
/// as a slice of the cumulation buffer (no copy). Framing never depends on how the
/// bytes were split across reads.
struct FrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    let maxFrame: UInt32

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        // The length field alone decides: check it as soon as its 4 bytes are here.
        guard let length = buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: UInt32.self) else {
            return .needMoreData
        }
        guard length >= UInt32(frameHeaderSize), length <= maxFrame else {
            throw FrameError.badLength(length)
        }
        guard let frame = buffer.readSlice(length: Int(length)) else {
            return .needMoreData
        }
        context.fireChannelRead(Self.wrapInboundOut(frame))
        return .continue
    }

    mutating func decodeLast(
        context: ChannelHandlerContext,
        buffer: inout ByteBuffer,
        seenEOF: Bool
    ) throws -> DecodingState {
        // Deliver whatever whole frames are left; a trailing partial frame is dropped.
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

/// Echoes every frame unchanged; one flush per read burst.
final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var pending = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
        pending = true
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if pending {
            pending = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A bad length (or any I/O error) closes this one connection only.
        context.close(promise: nil)
    }
}

@main
struct NIOEcho: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "NIOEcho",
        abstract: "SwiftNIO echo server for the AccessGateway frame (a perf/ reference peer)."
    )

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on.")
    var port = 9100

    @Option(help: "Event loops (default: the number of cores).")
    var threads: Int = System.coreCount

    @Option(name: .customLong("max-frame"), help: "Largest frame accepted, in bytes (header included).")
    var maxFrame: Int = 1 << 20

    @Option(help: "Listen backlog.")
    var backlog: Int32 = 4096

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard (1...65535).contains(port) else { throw ValidationError("--port must be 1...65535") }
        guard maxFrame >= frameHeaderSize, maxFrame <= Int(UInt32.max) else {
            throw ValidationError("--max-frame must be at least \(frameHeaderSize)")
        }
    }

    func run() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let maxFrame = UInt32(self.maxFrame)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: backlog)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // Up to 256 accepts per readiness event (NIO's default is 4): a burst of
            // connects (10,000 in perf's scenario (e)) drains the backlog quickly.
            .serverChannelOption(.maxMessagesPerRead, value: 256)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(
                minimum: 64, initial: 2048, maximum: 64 * 1024))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(FrameDecoder(maxFrame: maxFrame)))
                    try channel.pipeline.syncOperations.addHandler(EchoHandler())
                }
            }

        let channel = try bootstrap.bind(host: host, port: port).wait()
        print("NIOEcho listening on \(host):\(port) threads=\(threads) max-frame=\(maxFrame)")
        fflush(nil)  // all C streams: the line above reaches a log file at once
        // Runs until the process is signalled (perf/run.sh sends SIGTERM).
        try channel.closeFuture.wait()
        try group.syncShutdownGracefully()
    }
}
