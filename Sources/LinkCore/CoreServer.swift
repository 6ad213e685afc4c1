import Atomics
import GatewayCore
import Glibc
import Logging

/// Application logic of a core server: the top of the tree, where the
/// sessions of docs/LINK.md end. Every callback runs on the engine's Deal
/// stage, one at a time; one session's frames arrive in order.
public protocol CoreHandler: AnyObject {
    /// A session was announced (OPENED). A second OPENED for a session replaces it: `closed` first.
    func opened(_ session: CoreSession, peer: PeerAddress)
    /// A client frame arrived for `session`; `frame` is the whole link DATA frame,
    /// valid only during the call (`session.echo(frame)` sends it back without a copy).
    func received(_ frame: Frame, clientFrame: UnsafeRawBufferPointer, from session: CoreSession)
    /// The session is gone: CLOSED, LINK_DOWN, or its link closed. Called exactly once per session.
    func closed(_ session: CoreSession, cause: UInt8)
    /// One access node's answer to `queryPresence`; `query.seq` is what that call returned.
    func presence(_ query: LinkMessage.TreeWide, node: UInt32, count: UInt32)
    /// The access node dropped `count` pushes to `session` (push_overflow drop, past its
    /// max_queued_bytes) since it last said so: resend or resynchronise that user.
    func pushesDropped(_ session: CoreSession, count: UInt32)
    /// True when `tick` should run on every clock tick of the core's engine.
    var wantsTicks: Bool { get }
    /// A clock tick on the Deal stage: a core's scheduled work (`CoreServer.push` and the like).
    func tick(milliseconds: UInt64, server: CoreServer)
    /// The access node is moving `session` to its successor process (a hot restart, docs/HANDOVER.md):
    /// call `session.readyToMove()` once everything this core will send the session on this link is
    /// sent (after answers still pending for it). The default answers at once.
    func moving(_ session: CoreSession)
    /// The session moved (MOVED): it is now on `session`'s link, still bound and in its rooms.
    func moved(_ session: CoreSession)
}

extension CoreHandler {
    public func presence(_ query: LinkMessage.TreeWide, node: UInt32, count: UInt32) {}
    public func pushesDropped(_ session: CoreSession, count: UInt32) {}
    public var wantsTicks: Bool { false }
    public func tick(milliseconds: UInt64, server: CoreServer) {}
    public func moving(_ session: CoreSession) { session.readyToMove() }
    public func moved(_ session: CoreSession) {}
}

/// One session as a core sees it: its id and the link to answer on.
public struct CoreSession {
    public let id: SessionID
    let link: Connection
    unowned(unsafe) let server: CoreServer
    /// How the client reached its access node (`OpenedTransport`); set in `opened` only.
    public internal(set) var transport: UInt8 = OpenedTransport.tcp

    /// Sends `frame` (a DATA frame received for this session) back unchanged, without copying it.
    public func echo(_ frame: Frame) { link.forward(frame) }

    /// Sends a client frame to the session: `header.length` is computed from the body. False,
    /// nothing sent and counted (`CoreServer.tooLarge`), when the frame is longer than the
    /// access side takes (its max_frame, from its HELLO) or than this core's own.
    @discardableResult
    public func send(_ header: FrameHeader,
                     body: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)) -> Bool {
        server.sendData(header, body: body, to: self)
    }

    /// Closes the client once the frames sent to it before have been delivered (CLOSED downward).
    public func close() { server.closeSession(self) }

    /// Binds the session to `uid`: pushes to the uid reach it (BIND). Rebinding replaces the uid.
    public func bind(uid: UInt32) { server.send(.bind(id, uid: uid), about: id, on: link) }
    public func unbind() { server.send(.unbind(id), about: id, on: link) }
    public func join(room: UInt32) { server.send(.join(id, room: room), about: id, on: link) }
    public func leave(room: UInt32) { server.send(.leave(id, room: room), about: id, on: link) }

    /// Answers MOVING: nothing more will be sent to the session on this link (MOVE ready).
    public func readyToMove() { server.answerMoving(self) }
}

/// The upper side of the link protocol as a `GatewayHandler`: answers HELLO and
/// HEARTBEAT, checks every message, keeps the sessions of each link, and calls a
/// `CoreHandler`. Run it in a `Gateway` whose `max_frame` is the client limit
/// plus `LinkMessage.maxOverhead` (`CoreServer.config(...)` does that).
///
/// A link is never closed because its output is momentarily backed up: what the core
/// sends waits in the link's queue (bounded in bytes); `push`, `kick` and `queryPresence`
/// say false while a link is near that bound, so a core pushing on its own schedule waits.
public final class CoreServer: GatewayHandler {
    private let handler: CoreHandler
    private let node: UInt32
    private let clientMaxFrame: Int
    private let logger: Logger

    private struct LinkState {
        let connection: Connection
        var hello: LinkMessage.Hello?
        var sessions: Set<SessionID> = []
    }
    /// Sessions whose MOVING was answered, until their MOVED: out of their old link's sessions (its
    /// close does not end them), ended if no MOVED comes by the deadline (engine milliseconds).
    private var inTransit: [SessionID: UInt64] = [:]
    private var nowMilliseconds: UInt64 = 0
    /// How long a session answered MOVING may wait for its MOVED before it is ended.
    private let moveTimeoutMilliseconds: UInt64
    /// Deal-owned, like every handler's state. Changed on link and session events, not per frame.
    private var links: [ConnectionID: LinkState] = [:]
    private var sessionLinks: [SessionID: (link: Connection, number: UInt16)] = [:]
    /// Where `send` composes a DATA body (session id + client frame); one, reused.
    private let scratch: UnsafeMutableRawBufferPointer

    public private(set) var malformedLinks = 0
    /// Frames not sent because the node below does not take frames that long.
    public private(set) var tooLarge = 0
    /// PUSH_DROPPED notices heard, and the pushes they counted.
    public private(set) var pushDropNotices = 0
    /// MOVE: MOVING answered; MOVED that re-homed a session held here; MOVED for a session not held
    /// (opened as new); sessions ended between MOVING's answer and MOVED (timed out, or a CLOSED came).
    /// Atomic: read from other threads while the core runs.
    private let moveCounts = (answered: ManagedAtomic<Int>(0), movedIn: ManagedAtomic<Int>(0),
                              unknown: ManagedAtomic<Int>(0), lost: ManagedAtomic<Int>(0))
    public var movesAnswered: Int { moveCounts.answered.load(ordering: .relaxed) }
    public var movedIn: Int { moveCounts.movedIn.load(ordering: .relaxed) }
    public var movedUnknown: Int { moveCounts.unknown.load(ordering: .relaxed) }
    public var movesLost: Int { moveCounts.lost.load(ordering: .relaxed) }
    /// The seq of the next tree-wide message: from the start time in microseconds, so a
    /// restarted core's messages are newer than its old ones (docs/LINK.md).
    private var nextSeq: UInt64 = {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec / 1000)
    }()

    public init(handler: CoreHandler, node: UInt32, clientMaxFrame: Int, logger: Logger,
                moveTimeoutMilliseconds: UInt64 = 30_000) {
        self.handler = handler
        self.moveTimeoutMilliseconds = moveTimeoutMilliseconds
        self.node = node
        self.clientMaxFrame = clientMaxFrame
        self.logger = logger
        // A DATA body (session id + frame) or a whole PUSH (its 38 bytes + frame).
        scratch = .allocate(byteCount: LinkMessage.pushOverhead + clientMaxFrame, alignment: 8)
    }

    deinit { scratch.deallocate() }

    /// An engine configuration for a core: `config` with room for any link message around the
    /// largest client frame, and a link's share of output (each connection is a link here).
    public static func config(_ base: GatewayConfig, clientMaxFrame: Int) -> GatewayConfig {
        var config = base
        config.maxFrame = clientMaxFrame + LinkMessage.maxOverhead
        config.maxQueuedBytes = max(base.queueBound, 2 * config.maxFrame) * 16
        return config
    }

    public func opened(_ connection: Connection) {
        links[connection.id] = LinkState(connection: connection)
    }

    /// Always: sessions in transit have a deadline.
    public var wantsTicks: Bool { true }
    public func tick(milliseconds: UInt64) {
        nowMilliseconds = milliseconds
        if !inTransit.isEmpty { expireMoves() }
        if handler.wantsTicks { handler.tick(milliseconds: milliseconds, server: self) }
    }

    public func closed(_ connection: Connection, cause: CloseCause) {
        guard let state = links.removeValue(forKey: connection.id) else { return }
        for session in state.sessions { end(session, cause: UInt8(CloseCause.peer.rawValue)) }
    }

    public func received(_ frame: Frame, on connection: Connection) {
        let message: LinkMessage
        switch LinkMessage.decode(frame.bytes.baseAddress!, maxFrame: clientMaxFrame) {
        case .success(let m): message = m
        case .failure(let error): return malformed(connection, "\(error)")
        }
        let helloDone = links[connection.id]?.hello != nil
        switch message {
        case .hello(let hello):
            guard !helloDone else { return malformed(connection, "second HELLO") }
            answerHello(hello, on: connection)
        case _ where !helloDone:
            malformed(connection, "\(message) before HELLO")
        case .heartbeat:
            connection.forward(frame)
        case .opened(let id, let number, let peer, let transport):
            if sessionLinks[id] != nil { end(id, cause: UInt8(CloseCause.peer.rawValue)) }
            sessionLinks[id] = (connection, number)
            links[connection.id]?.sessions.insert(id)
            var session = CoreSession(id: id, link: connection, server: self)
            session.transport = transport
            handler.opened(session, peer: peer)
        case .data(let id, let length):
            guard sessionLinks[id] != nil else { return }  // never announced, or already closed
            let inner = UnsafeRawBufferPointer(rebasing: frame.bytes[LinkMessage.dataOverhead...])
            precondition(inner.count == Int(length))
            handler.received(frame, clientFrame: inner, from: CoreSession(id: id, link: connection, server: self))
        case .closed(let id, let cause):
            if sessionLinks[id] != nil { end(id, cause: cause) }
        case .linkDown(let downNode, let number):
            let gone = sessionLinks.filter { $0.key.node == downNode && $0.value.number == number }.map(\.key)
            for id in gone { end(id, cause: UInt8(CloseCause.peer.rawValue)) }
        case .presence(let query, let answering, let count):
            handler.presence(query, node: answering, count: count)
        case .pushDropped(let id, let count):
            guard let entry = sessionLinks[id] else { return }
            pushDropNotices += 1
            handler.pushesDropped(CoreSession(id: id, link: entry.link, server: self), count: count)
        case .move(let id, .moving, _, _, _):
            guard let entry = sessionLinks[id], entry.link.id == connection.id else {
                return answerMoving(CoreSession(id: id, link: connection, server: self))  // nothing owed here
            }
            handler.moving(CoreSession(id: id, link: connection, server: self))
        case .move(let id, .moved, let number, let peer, let transport):
            var session = CoreSession(id: id, link: connection, server: self)
            session.transport = transport
            guard let entry = sessionLinks[id] else {
                moveCounts.unknown.wrappingIncrement(ordering: .relaxed)  // its old link closed first: a new session
                sessionLinks[id] = (connection, number)
                links[connection.id]?.sessions.insert(id)
                return handler.opened(session, peer: peer)
            }
            links[entry.link.id]?.sessions.remove(id)
            inTransit.removeValue(forKey: id)
            sessionLinks[id] = (connection, number)
            links[connection.id]?.sessions.insert(id)
            moveCounts.movedIn.wrappingIncrement(ordering: .relaxed)
            handler.moved(session)
        case .bind, .unbind, .join, .leave, .push, .kick, .presenceQuery, .move:
            malformed(connection, "\(message) sent upward")
        }
    }

    private func answerHello(_ hello: LinkMessage.Hello, on connection: Connection) {
        var status = LinkMessage.HelloStatus.accepted
        if hello.version != LinkMessage.version {
            status = .unsupportedVersion
        } else if hello.role != NodeRole.access.rawValue && hello.role != NodeRole.aggregation.rawValue
                    || hello.maxFrame < FrameHeader.size {
            status = .roleRefused
        }
        var answer = LinkMessage.Hello(role: .core, node: node, link: hello.link,
                                       heartbeatMilliseconds: hello.heartbeatMilliseconds,
                                       maxFrame: UInt32(clientMaxFrame), features: LinkMessage.Feature.moves)
        answer.status = status.rawValue
        var bytes = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &bytes) { raw in
            LinkMessage.hello(answer).encode(into: raw.baseAddress!)
            connection.send(FrameHeader(decoding: raw.baseAddress!),
                            body: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(raw)[FrameHeader.size...]))
        }
        if status != .accepted {
            logger.warning(
                "refusing link from node \(hello.node): \(status) (version \(hello.version), role \(hello.role))")
            connection.close()
            return
        }
        links[connection.id]?.hello = hello
        logger.info("link up from node \(hello.node), link \(hello.link)")
    }

    private func malformed(_ connection: Connection, _ why: String) {
        malformedLinks += 1
        logger.warning("closing link \(connection.id): \(why)")
        connection.close()
    }

    private func end(_ id: SessionID, cause: UInt8) {
        guard let entry = sessionLinks.removeValue(forKey: id) else { return }
        if inTransit.removeValue(forKey: id) != nil {
            moveCounts.lost.wrappingIncrement(ordering: .relaxed)
            logger.warning("session \(id) ended while moving (cause \(cause)): no MOVED came for it")
        }
        links[entry.link.id]?.sessions.remove(id)
        handler.closed(CoreSession(id: id, link: entry.link, server: self), cause: cause)
    }

    // MARK: moves

    /// MOVE ready down the session's link; the session leaves that link's sessions until its MOVED.
    func answerMoving(_ session: CoreSession) {
        let ready = LinkMessage.move(session.id, .ready, link: 0, peer: PeerAddress(family: 0, port: 0, bytes: (0, 0)),
                                     transport: 0)
        var bytes = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &bytes) { raw in
            ready.encode(into: raw.baseAddress!)
            session.link.send(FrameHeader(decoding: raw.baseAddress!), body: UnsafeRawBufferPointer(
                start: raw.baseAddress! + FrameHeader.size, count: ready.encodedLength - FrameHeader.size))
        }
        moveCounts.answered.wrappingIncrement(ordering: .relaxed)
        guard let entry = sessionLinks[session.id], entry.link.id == session.link.id else { return }
        links[entry.link.id]?.sessions.remove(session.id)
        inTransit[session.id] = nowMilliseconds &+ moveTimeoutMilliseconds
    }

    /// Sessions answered MOVING whose MOVED has not come in time: their new process is gone.
    private func expireMoves() {
        let late = inTransit.filter { $0.value <= nowMilliseconds }.map(\.key)
        for id in late { end(id, cause: UInt8(CloseCause.peer.rawValue)) }
    }

    // MARK: from CoreSession

    func sendData(_ header: FrameHeader, body: UnsafeRawBufferPointer, to session: CoreSession) -> Bool {
        let length = FrameHeader.size + body.count
        guard length <= min(clientMaxFrame, links[session.link.id]?.hello.map { Int($0.maxFrame) } ?? 0) else {
            tooLarge += 1
            return false
        }
        var h = header
        h.length = UInt32(length)
        let p = scratch.baseAddress!
        session.id.encode(into: p)
        h.encode(into: p + SessionID.size)
        if body.count > 0 {
            (p + SessionID.size + FrameHeader.size).copyMemory(from: body.baseAddress!, byteCount: body.count)
        }
        session.link.send(FrameHeader(length: 0, seq: 0, cmd: LinkMessage.Command.data),
                          body: UnsafeRawBufferPointer(start: p, count: SessionID.size + length))
        return true
    }

    func closeSession(_ session: CoreSession) {
        guard sessionLinks[session.id] != nil else { return }
        var bytes = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &bytes) { raw in
            LinkMessage.closed(session.id, cause: 0).encode(into: raw.baseAddress!)
            session.link.send(FrameHeader(length: 0, seq: 0, cmd: LinkMessage.Command.closed),
                              body: UnsafeRawBufferPointer(start: raw.baseAddress! + FrameHeader.size, count: 16))
        }
        end(session.id, cause: Self.upstreamCause)
    }

    // MARK: users, rooms and push

    /// A message about one session (BIND, UNBIND, JOIN, LEAVE), on its link while the session is open.
    func send(_ message: LinkMessage, about session: SessionID, on link: Connection) {
        guard sessionLinks[session] != nil else { return }  // closed: nothing to tell
        var bytes = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &bytes) { raw in
            message.encode(into: raw.baseAddress!)
            link.send(FrameHeader(decoding: raw.baseAddress!), body: UnsafeRawBufferPointer(
                start: raw.baseAddress! + FrameHeader.size, count: message.encodedLength - FrameHeader.size))
        }
    }

    /// Sends a client frame to every session `scope` and `target` name, on every link up
    /// (each access node applies it once). The frame is composed once per link. False, and
    /// nothing sent, while a link is near its queue bound (back-pressure: try again at a later
    /// tick) or when the frame is longer than this core's max_frame (counted in `tooLarge`).
    /// A link whose node takes shorter frames is skipped, counted.
    @discardableResult
    public func push(_ scope: LinkMessage.Scope, target: UInt32, _ header: FrameHeader,
                     body: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)) -> Bool {
        let length = FrameHeader.size + body.count
        guard length <= clientMaxFrame else {
            tooLarge += 1
            return false
        }
        guard everyLinkHasRoom(for: LinkMessage.pushOverhead + length) else { return false }
        var h = header
        h.length = UInt32(length)
        let p = scratch.baseAddress!
        let tree = treeWide(scope, target)
        LinkMessage.push(tree, clientFrameLength: UInt32(length)).encode(into: p)
        h.encode(into: p + LinkMessage.pushOverhead)
        if body.count > 0 { (p + LinkMessage.pushOverhead + FrameHeader.size).copyMemory(from: body.baseAddress!,
                                                                                        byteCount: body.count) }
        sendOnEveryLink(p, length: LinkMessage.pushOverhead + length, clientFrame: length)
        return true
    }

    /// Room on every link for one more message of `length` bytes.
    private func everyLinkHasRoom(for length: Int) -> Bool {
        links.values.allSatisfy { $0.hello == nil || $0.connection.sendRoom >= length }
    }

    /// Closes every session the scope names once what is queued for it is sent.
    @discardableResult
    public func kick(_ scope: LinkMessage.Scope, target: UInt32) -> Bool {
        guard everyLinkHasRoom(for: 38) else { return false }
        sendTreeWide(.kick(treeWide(scope, target)))
        return true
    }

    /// Asks every access node for its count; answers come to `CoreHandler.presence` with this
    /// seq. Nil, and nothing sent, while a link has no room.
    @discardableResult
    public func queryPresence(_ scope: LinkMessage.Scope, target: UInt32) -> UInt64? {
        guard everyLinkHasRoom(for: 38) else { return nil }
        let tree = treeWide(scope, target)
        sendTreeWide(.presenceQuery(tree))
        return tree.seq
    }

    private func treeWide(_ scope: LinkMessage.Scope, _ target: UInt32) -> LinkMessage.TreeWide {
        nextSeq += 1
        return LinkMessage.TreeWide(scope: scope, target: target, origin: node, seq: nextSeq)
    }

    private func sendTreeWide(_ message: LinkMessage) {
        let p = scratch.baseAddress!
        message.encode(into: p)
        sendOnEveryLink(p, length: message.encodedLength, clientFrame: 0)
    }

    private func sendOnEveryLink(_ p: UnsafeMutableRawPointer, length: Int, clientFrame: Int) {
        let header = FrameHeader(decoding: p)
        let body = UnsafeRawBufferPointer(start: p + FrameHeader.size, count: length - FrameHeader.size)
        for state in links.values {
            guard let hello = state.hello else { continue }
            guard clientFrame <= Int(hello.maxFrame) else {
                tooLarge += 1
                continue
            }
            state.connection.send(header, body: body)
        }
    }

    /// The close cause of docs/LINK.md for a close the core asked for.
    public static let upstreamCause: UInt8 = 8
}
