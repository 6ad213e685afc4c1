#!/usr/bin/env python3
"""An echo core server for the link protocol of docs/LINK.md (the upper side).

It accepts links from access or aggregation nodes, answers HELLO and HEARTBEAT,
tracks the sessions announced on each link and answers every DATA of a known
session with the identical frame. Python 3 standard library only; one thread
per link, because each link is one ordered stream and threads keep that obvious.

    python3 examples/echo_core.py --host 127.0.0.1 --port 9000 [--node-id 1]

Binding and push ("Users, rooms and push" in LINK.md). A few client commands
stand for what a real core would decide after authenticating a client:

    cmd 10 LOGIN  body [uid u32]   BIND the session to uid
    cmd 11 JOIN   body [room u32]  JOIN the room       cmd 12 LEAVE [room u32]
    cmd 13 LOGOUT (no body)        UNBIND the session
    cmd 20 PUSH   body [scope u8][target u32][payload...]
                                   PUSH to scope/target a client frame of cmd 99,
                                   seq = the request's seq, uid = target, body = payload
    cmd 21 KICK   body [scope u8][target u32]
                                   KICK every session scope/target names

Scopes: 1 = uid, 2 = room, 3 = access node id, 4 = all (target 0). BIND, UNBIND,
JOIN and LEAVE name one session, so they go back on the link the request came
on. PUSH and KICK name sessions anywhere in the tree, so they go on EVERY link
that is up, each copy with this core's node id as origin and the same seq (one
more than the last; the first is the start time in microseconds, so a restarted
core's messages are newer); the nodes on the way act on one copy and drop the
others. Each request is then echoed to its session, on its link, after the link
messages it caused: a client that has the echo knows the bind has been applied.
Any other frame is just echoed.

Hot restarts of an access node (MOVE, LINK.md): MOVING is answered at once (every
echo is sent before the next frame is read, so nothing is owed), and the session
leaves its link, so that link's close does not end it; MOVED on any link makes it
that link's session again (or opens it, if this core does not hold it). A session
answered MOVING and not MOVED within MOVE_TIMEOUT_S ends.

On SIGTERM or SIGINT it prints `opened=N closed=M data=K moved=V` and exits 0:
N = OPENED messages received (and MOVED for a session not held), M = sessions that
ended (by CLOSED, LINK_DOWN, their link closing, a repeated OPENED replacing them,
or a move that never came), K = DATA frames echoed (the requests above included;
the link messages they cause are not counted), V = sessions MOVED to a new link.
"""
import argparse
import signal
import socket
import struct
import sys
import threading
import time

HEADER = struct.Struct(">IIHII")  # length, seq, cmd, status, uid (PROTOCOL.md)
HEADER_SIZE = 18
SESSION_SIZE = 12
DATA_OVERHEAD = HEADER_SIZE + SESSION_SIZE

(HELLO, HEARTBEAT, OPENED, DATA, CLOSED, LINK_DOWN, BIND, UNBIND, JOIN, LEAVE, PUSH, KICK,
 PRESENCE_QUERY, PRESENCE, PUSH_DROPPED, MOVE) = range(0xFF10, 0xFF20)
# What may come up a link (DATA has its own check). The commands that only go down,
# BIND to PRESENCE_QUERY, are unknown here: receiving one is malformed.
FIXED_LENGTHS = {HELLO: 40, HEARTBEAT: 18, OPENED: 52, CLOSED: 34, LINK_DOWN: 24, PRESENCE: 46,
                 PUSH_DROPPED: 34, MOVE: 54}
MOVING, READY, MOVED = 1, 2, 3  # MOVE's kinds (byte 30); READY only goes down
FEATURE_MOVES = 1  # HELLO's features (byte 21): this core answers MOVE
MOVE_TIMEOUT_S = 30.0
VERSION = 2
ROLE_ACCESS, ROLE_AGGREGATION, ROLE_CORE = 1, 2, 3
STATUS_ACCEPTED, STATUS_BAD_VERSION, STATUS_ROLE_REFUSED = 0, 1, 2
HELLO_BODY = struct.Struct(">HBBIHIII")  # version, role, features, node, link, heartbeat_ms, max_frame, queue
TREE_WIDE = struct.Struct(">B3xIIQ")  # scope, reserved, target, origin, seq
TREE_WIDE_OVERHEAD = HEADER_SIZE + TREE_WIDE.size  # 38: a PUSH's client frame starts here
SCOPE_UID, SCOPE_ROOM, SCOPE_NODE, SCOPE_ALL = 1, 2, 3, 4

# The client commands of the docstring, and the cmd of a pushed frame.
LOGIN, JOIN_ROOM, LEAVE_ROOM, LOGOUT, PUSH_REQUEST, KICK_REQUEST = 10, 11, 12, 13, 20, 21
PUSHED = 99

# Before HELLO there is no heartbeat interval yet; a link that says nothing goes.
HELLO_TIMEOUT_S = 10.0


class Malformed(Exception):
    """A frame that breaks LINK.md: the link is closed for it."""


class Stats:
    """Counters shared by all link threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.opened = self.closed = self.data = self.moved = 0

    def add(self, opened=0, closed=0, data=0, moved=0):
        with self.lock:
            self.opened += opened
            self.closed += closed
            self.data += data
            self.moved += moved


class Tree:
    """The links that are up, shared by all link threads, and the seq of tree-wide messages."""

    def __init__(self, node_id):
        self.lock = threading.Lock()
        self.links = set()
        self.node_id = node_id
        self.seq = time.time_ns() // 1000  # start time in microseconds
        # Sessions answered MOVING, until their MOVED: session id -> deadline (time.monotonic()).
        self.in_transit = {}

    def depart(self, sid):
        with self.lock:
            self.in_transit[sid] = time.monotonic() + MOVE_TIMEOUT_S

    def arrive(self, sid):
        """True when the session was in transit (MOVED keeps it)."""
        with self.lock:
            return self.in_transit.pop(sid, None) is not None

    def expire(self):
        """Sessions whose MOVED never came (their new process died): how many ended."""
        now = time.monotonic()
        with self.lock:
            late = [sid for sid, deadline in self.in_transit.items() if deadline <= now]
            for sid in late:
                del self.in_transit[sid]
        return len(late)

    def add(self, link):
        with self.lock:
            self.links.add(link)

    def remove(self, link):
        # Waits for a tree-wide message being sent, so none is written to a closed socket.
        with self.lock:
            self.links.discard(link)

    def send(self, cmd, scope, target, client_frame=b""):
        """Sends PUSH (with its client frame) or KICK on every link that is up."""
        # Holding the lock while sending keeps the copies in seq order on every link.
        with self.lock:
            self.seq += 1
            frame = (HEADER.pack(TREE_WIDE_OVERHEAD + len(client_frame), 0, cmd, 0, 0)
                     + TREE_WIDE.pack(scope, target, self.node_id, self.seq) + client_frame)
            for link in self.links:
                try:
                    link.send(frame)
                except OSError as e:  # that link's own thread sees it end and cleans up
                    link.log(f"I/O error sending a tree-wide message ({e})")


class Link:
    """One accepted link: reads whole frames, answers them, owns its sessions."""

    def __init__(self, sock, peer, node_id, max_frame, stats, tree):
        self.sock, self.peer = sock, peer
        self.node_id, self.max_frame, self.stats, self.tree = node_id, max_frame, stats, tree
        self.buffer = bytearray()
        # Every thread writes with send(): its own link's thread, and any thread sending PUSH or KICK.
        self.send_lock = threading.Lock()
        # session id (12 opaque bytes) -> the access node's link number from OPENED,
        # which LINK_DOWN needs to find the sessions it ends.
        self.sessions = {}

    def log(self, message):
        print(f"echo_core: link {self.peer[0]}:{self.peer[1]}: {message}", file=sys.stderr, flush=True)

    def send(self, frame):
        """Writes one whole frame; safe from any thread."""
        with self.send_lock:
            try:
                self.sock.sendall(frame)
            except OSError:
                # Part of the frame may have gone: the stream is lost, so end the link
                # (its reader wakes up and closes it).
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                raise

    def read_exact(self, count):
        """Returns `count` bytes, or None on end of stream (framing never depends on reads)."""
        while len(self.buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        out = bytes(self.buffer[:count])
        del self.buffer[:count]
        return out

    def read_frame(self):
        header = self.read_exact(HEADER_SIZE)
        if header is None:
            return None
        length, _seq, cmd, status, _uid = HEADER.unpack(header)
        # Check the length before reading the body so a bad one cannot make us wait or allocate.
        if not HEADER_SIZE <= length <= self.max_frame + TREE_WIDE_OVERHEAD:
            raise Malformed(f"length {length}")
        if cmd == DATA:
            if length < DATA_OVERHEAD + HEADER_SIZE:
                raise Malformed(f"DATA of length {length}")
        elif cmd not in FIXED_LENGTHS:
            raise Malformed(f"unknown command 0x{cmd:04x}")
        elif length != FIXED_LENGTHS[cmd]:
            raise Malformed(f"command 0x{cmd:04x} with length {length}")
        body = self.read_exact(length - HEADER_SIZE)
        if body is None:
            return None
        if cmd == DATA:
            inner = struct.unpack_from(">I", body, SESSION_SIZE)[0]
            if inner != length - DATA_OVERHEAD or inner > self.max_frame:
                raise Malformed(f"DATA of length {length} carries a frame of length {inner}")
        return cmd, status, header + body

    def hello(self, frame):
        """Answers the lower side's HELLO; returns its heartbeat_ms, or None when refused."""
        # The lower side's max_frame bounds what may be sent down to it; every frame this core sends
        # down (an echo, a push of a request's payload) is no longer than one that came up, so it fits.
        version, role, _reserved, _node, link, heartbeat_ms, _max_frame, _queue = HELLO_BODY.unpack_from(
            frame, HEADER_SIZE)
        status = STATUS_ACCEPTED
        if version != VERSION:
            status = STATUS_BAD_VERSION
        elif role not in (ROLE_ACCESS, ROLE_AGGREGATION):  # only these connect upward
            status = STATUS_ROLE_REFUSED
        answer = HEADER.pack(40, 0, HELLO, status, 0) + HELLO_BODY.pack(
            VERSION, ROLE_CORE, FEATURE_MOVES, self.node_id, link, heartbeat_ms, self.max_frame, 0)
        self.send(answer)
        if status != STATUS_ACCEPTED:
            self.log(f"refused HELLO (version {version}, role {role}): status {status}")
            return None
        return heartbeat_ms

    def forget(self, session_ids):
        for sid in session_ids:
            del self.sessions[sid]
        self.stats.add(closed=len(session_ids))

    def act(self, sid, client_frame):
        """Does what a request of the docstring asks, before its echo is sent."""
        _length, seq, cmd, _status, _uid = HEADER.unpack_from(client_frame)
        body = client_frame[HEADER_SIZE:]
        if cmd in (LOGIN, JOIN_ROOM, LEAVE_ROOM) and len(body) >= 4:
            link_cmd = {LOGIN: BIND, JOIN_ROOM: JOIN, LEAVE_ROOM: LEAVE}[cmd]
            self.send(HEADER.pack(34, 0, link_cmd, 0, 0) + sid + body[:4])  # uid or room
        elif cmd == LOGOUT:
            self.send(HEADER.pack(30, 0, UNBIND, 0, 0) + sid)
        elif cmd in (PUSH_REQUEST, KICK_REQUEST) and len(body) >= 5:
            scope, target = struct.unpack_from(">BI", body)
            if scope not in (SCOPE_UID, SCOPE_ROOM, SCOPE_NODE, SCOPE_ALL):
                self.log(f"request with scope {scope}: not acted on")
            elif cmd == KICK_REQUEST:
                self.tree.send(KICK, scope, target)
            else:
                payload = body[5:]  # the request fits max_frame, so the pushed frame does too
                pushed = HEADER.pack(HEADER_SIZE + len(payload), seq, PUSHED, 0, target) + payload
                self.tree.send(PUSH, scope, target, pushed)

    def handle(self, cmd, frame):
        if cmd == HELLO:
            raise Malformed("second HELLO")  # the lower side sends it exactly once
        if cmd == HEARTBEAT:
            self.send(frame)
            late = self.tree.expire()
            if late:
                self.log(f"{late} sessions answered MOVING never MOVED: ended")
                self.stats.add(closed=late)
        elif cmd == OPENED:
            sid = frame[18:30]
            link = struct.unpack_from(">H", frame, 30)[0]
            if sid in self.sessions:  # a repeated OPENED replaces (closes) the old session
                self.forget([sid])
            self.sessions[sid] = link
            self.stats.add(opened=1)
        elif cmd == DATA:
            sid = frame[18:30]
            if sid in self.sessions:
                self.act(sid, frame[DATA_OVERHEAD:])
                # Counted before the echo: whoever has the echo finds it in the summary (SIGTERM's, on
                # the main thread, could otherwise come between the two).
                self.stats.add(data=1)
                self.send(frame)  # the echo: same session id, same client frame
            else:
                self.log("DATA for an unknown session, dropped")
        elif cmd == CLOSED:  # also for the sessions a KICK closed (cause 10)
            sid = frame[18:30]
            if sid in self.sessions:
                self.forget([sid])
            else:
                self.log("CLOSED for an unknown session, dropped")
        elif cmd == LINK_DOWN:
            node, link = struct.unpack_from(">IH", frame, 18)
            gone = [sid for sid, lk in self.sessions.items()
                    if lk == link and struct.unpack_from(">I", sid)[0] == node]
            self.forget(gone)
        elif cmd == PRESENCE:
            pass  # answers a PRESENCE_QUERY, which this core never sends
        elif cmd == MOVE:
            sid, kind = frame[18:30], frame[30]
            if kind == MOVING:  # every echo for it is sent already: it leaves this link, then the answer
                if self.sessions.pop(sid, None) is not None:
                    self.tree.depart(sid)
                self.send(HEADER.pack(54, 0, MOVE, 0, 0) + sid + bytes([READY]) + bytes(23))
            elif kind == MOVED:
                self.sessions[sid] = struct.unpack_from(">H", frame, 32)[0]
                if self.tree.arrive(sid):
                    self.stats.add(moved=1)
                else:
                    self.stats.add(opened=1)  # not held here (its old link closed first): a new session
            else:
                raise Malformed(f"MOVE kind {kind} sent upward")
        elif cmd == PUSH_DROPPED:  # the access node dropped pushes to this session (push_overflow drop)
            count = struct.unpack_from(">I", frame, 30)[0]
            self.log(f"{count} pushes dropped for a session")

    def run(self):
        try:
            self.sock.settimeout(HELLO_TIMEOUT_S)
            first = self.read_frame()
            if first is None:
                return
            if first[0] != HELLO:
                raise Malformed(f"command 0x{first[0]:04x} before HELLO")
            heartbeat_ms = self.hello(first[2])
            if heartbeat_ms is None:
                return
            # Silence for 3 heartbeat intervals means the lower side is gone.
            self.sock.settimeout(3 * heartbeat_ms / 1000 if heartbeat_ms else None)
            self.tree.add(self)  # the link is up: tree-wide messages go on it from now on
            while True:
                got = self.read_frame()
                if got is None:
                    return
                self.handle(got[0], got[2])
        except Malformed as e:
            self.log(f"malformed frame ({e}), closing")
        except socket.timeout:
            self.log("nothing received in time, closing")
        except OSError as e:
            self.log(f"I/O error ({e}), closing")
        finally:
            self.tree.remove(self)
            # Every session announced on this link is gone with it.
            self.forget(list(self.sessions))
            self.sock.close()


class Stop(Exception):
    """Raised in the main thread by SIGTERM/SIGINT."""


def main():
    parser = argparse.ArgumentParser(description="Echo core server for the link protocol (docs/LINK.md)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--node-id", type=int, default=1)
    parser.add_argument("--max-frame", type=int, default=1 << 20, help="client frame limit (PROTOCOL.md)")
    args = parser.parse_args()

    def stop(_signum, _frame):
        raise Stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    stats = Stats()
    tree = Tree(args.node_id)
    server = socket.create_server((args.host, args.port), reuse_port=False, backlog=128)
    host, port = server.getsockname()[:2]
    print(f"echo_core listening on {host}:{port}", flush=True)
    try:
        while True:
            sock, peer = server.accept()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = Link(sock, peer, args.node_id, args.max_frame, stats, tree)
            # Daemon threads: shutting down does not wait for links to end.
            threading.Thread(target=link.run, daemon=True).start()
    except Stop:
        pass
    finally:
        server.close()
    with stats.lock:
        print(f"opened={stats.opened} closed={stats.closed} data={stats.data} moved={stats.moved}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
