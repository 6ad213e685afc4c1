#!/usr/bin/env python3
"""TLS client probes for the gateway's TLS tests (Tests/GatewayCoreTests/TLS*Tests.swift), on
Python's ssl module alone. Each command prints one result line and exits 0, or prints
"error: ..." and exits 1. Every socket has a timeout, so a broken server fails a probe, not hangs it."""
import argparse
import socket
import ssl
import struct
import sys
import time
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)  # TLS 1.0 and 1.1 are asked for on purpose

TIMEOUT = 10
VERSIONS = {"1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1,
            "1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def frame(seq, size):
    body = bytes((seq * 31 + i) % 251 for i in range(size - 18))
    return struct.pack(">IIHII", size, seq, 1, 0, 7) + body


def context(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if args.ca:
        ctx.load_verify_locations(args.ca)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if args.version:
        v = VERSIONS[args.version]
        if v < ssl.TLSVersion.TLSv1_2:
            ctx.set_ciphers("ALL:@SECLEVEL=0")
        ctx.minimum_version = v
        ctx.maximum_version = v
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    if args.alpn:
        ctx.set_alpn_protocols(args.alpn.split(","))
    return ctx


def connect(args, ctx, session=None):
    raw = socket.create_connection(("127.0.0.1", args.port), timeout=TIMEOUT)
    if args.proxy:  # a PROXY v1 header in the clear, before the ClientHello
        raw.sendall(f"PROXY TCP4 {args.proxy} 127.0.0.1 40000 443\r\n".encode())
    return ctx.wrap_socket(raw, server_hostname=args.sni or "localhost", session=session)


def receive(s, n):
    got = bytearray()
    while len(got) < n:
        chunk = s.recv(min(1 << 20, n - len(got)))
        if not chunk:
            raise ConnectionError(f"closed after {len(got)} of {n} bytes")
        got += chunk
    return bytes(got)


def echo(s, sizes, seq=1):
    for size in sizes:
        request = frame(seq, size)
        s.sendall(request)
        reply = receive(s, size)
        if reply != request:
            raise ValueError(f"reply to the {size}-byte frame differs")
        seq += 1
    return seq


def cmd_echo(args):
    sizes = [int(x) for x in args.sizes.split(",")]
    with connect(args, context(args)) as s:
        echo(s, sizes)
        # Pipelined: several frames in one write, the replies read after.
        batch = b"".join(frame(100 + i, sizes[i % len(sizes)]) for i in range(8))
        s.sendall(batch)
        if receive(s, len(batch)) != batch:
            raise ValueError("pipelined replies differ")
        subject = dict(x[0] for x in s.getpeercert()["subject"]) if args.ca else {}
        print(f"ok {s.version()} cn={subject.get('commonName', '?')} alpn={s.selected_alpn_protocol()}")


def cmd_resume(args):
    """A session from --port, resumed --count times on --resume-port (default: the same port), each time
    with the newest ticket; prints resumed=True or False for one, else resumed=N/COUNT."""
    ctx = context(args)
    with connect(args, ctx) as s:
        echo(s, [100])  # the ticket arrives with (TLS 1.3: before) the first reply
        session = s.session
    if args.resume_port:
        args.port = args.resume_port
    resumed = 0
    for _ in range(args.count):
        with connect(args, ctx, session=session) as s:
            echo(s, [100])
            resumed += s.session_reused
            version = s.version()
            session = s.session
    print(f"resumed={resumed == 1} {version}" if args.count == 1 else f"resumed={resumed}/{args.count} {version}")


def cmd_refused(args):
    try:
        with connect(args, context(args)) as s:
            echo(s, [100])
            print(f"accepted {s.version()}")
    except (ssl.SSLError, ConnectionError, OSError) as e:
        print(f"refused {type(e).__name__}")


def client_hello(args):
    """The bytes of a real ClientHello, from an in-memory handshake that goes no further."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = context(args).wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def wait_closed(socks, seconds):
    """How many of `socks` the server closes within `seconds` (each read until end of stream)."""
    deadline = time.monotonic() + seconds
    closed = 0
    for s in socks:
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not s.recv(65536):
                    closed += 1
                    break
            except ConnectionResetError:
                closed += 1
                break
            except (socket.timeout, TimeoutError):
                return closed
    return closed


def cmd_stall(args):
    """A witness echoes; `silent` connections send nothing, `half` send a ClientHello and stop;
    all of those must be closed by the server while the witness keeps echoing."""
    with connect(args, context(args)) as witness:
        seq = echo(witness, [100, 5000])
        hello = client_hello(args)
        silent = [socket.create_connection(("127.0.0.1", args.port), timeout=TIMEOUT) for _ in range(args.silent)]
        half = []
        for _ in range(args.half):
            s = socket.create_connection(("127.0.0.1", args.port), timeout=TIMEOUT)
            s.sendall(hello)
            half.append(s)
        seq = echo(witness, [100], seq)
        closed_silent = wait_closed(silent, args.wait)
        closed_half = wait_closed(half, args.wait)
        echo(witness, [100, 5000], seq)
        for s in silent + half:
            s.close()
        print(f"closed silent={closed_silent} half={closed_half} witness=ok")


def cmd_abandon(args):
    """Sends a ClientHello, reads the server's first flight, and closes: a handshake stopped halfway."""
    s = socket.create_connection(("127.0.0.1", args.port), timeout=TIMEOUT)
    s.sendall(client_hello(args))
    first = s.recv(65536)
    s.close()
    print(f"abandoned after {len(first)} bytes")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["echo", "resume", "refused", "stall", "abandon"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca")
    p.add_argument("--sni")
    p.add_argument("--version", choices=sorted(VERSIONS))
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--alpn")
    p.add_argument("--sizes", default="18,100,5000,16400,70000")
    p.add_argument("--silent", type=int, default=0)
    p.add_argument("--half", type=int, default=0)
    p.add_argument("--wait", type=float, default=30)
    p.add_argument("--resume-port", type=int)
    p.add_argument("--proxy", help="send a PROXY v1 header naming this source address first")
    p.add_argument("--count", type=int, default=1)
    args = p.parse_args()
    try:
        {"echo": cmd_echo, "resume": cmd_resume, "refused": cmd_refused, "stall": cmd_stall,
         "abandon": cmd_abandon}[args.command](args)
    except Exception as e:  # one line, for the test's message
        print(f"error: {type(e).__name__}: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
