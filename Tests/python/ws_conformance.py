#!/usr/bin/env python3
"""A conformant WebSocket client (the `websockets` package from PyPI) against a gateway's
WebSocket listener: docs/WEBSOCKET.md, case by case. The gateway must echo (EchoHandler) and
run with max_frame 4096 and the allowed origin https://app.example. With --tls-ca the listener is
wss:// (docs/TLS.md) and every case runs over TLS, its certificate checked against that CA.

    ws_conformance.py --port P [--path /gw] [--tls-ca CA.pem]

Prints one line per case, then 'N passed, M failed'; exits 1 if any failed."""
import argparse
import asyncio
import os
import socket
import ssl
import struct
import sys

import websockets
from websockets.asyncio.client import connect as ws_connect

MAX_FRAME = 4096
# wss://: the client's TLS context (main sets it from --tls-ca), else None.
TLS = None


def connect(url, **kwargs):
    return ws_connect(url, ssl=TLS, **kwargs) if TLS else ws_connect(url, **kwargs)


async def open_raw(host, port):
    if TLS:
        return await asyncio.open_connection(host, port, ssl=TLS, server_hostname="localhost")
    return await asyncio.open_connection(host, port)


def frame(seq, body=b""):
    return struct.pack(">IIHII", 18 + len(body), seq, 7, 0, 1) + body


async def echoes(ws, payload, expected):
    await ws.send(payload)
    got = b""
    while len(got) < len(expected):
        got += await ws.recv()
    assert got == expected, f"got {got[:40]!r}... ({len(got)} bytes), want {len(expected)} bytes"


async def closed_with(ws, code):
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    except websockets.ConnectionClosed as e:
        got = e.rcvd.code if e.rcvd else None
        assert got == code, f"closed with {got} ({e}), want {code}"
        return
    raise AssertionError("not closed")


async def case_binary_messages(url):
    async with connect(url) as ws:
        await echoes(ws, frame(1, b"a") + frame(2, b"b" * 300), frame(1, b"a") + frame(2, b"b" * 300))
        await echoes(ws, frame(3), frame(3))


async def case_many_messages_in_flight(url):
    async with connect(url) as ws:
        frames = [frame(100 + i, os.urandom(MAX_FRAME - 18 - i)) for i in range(64)]
        for f in frames:
            await ws.send(f)  # all sent before any reply is read: replies pile up in the socket
        want = b"".join(frames)
        got = b""
        while len(got) < len(want):
            got += await asyncio.wait_for(ws.recv(), 5)
        assert got == want, f"{len(got)} bytes back, want {len(want)}"


async def case_fragmented_message(url):
    async with connect(url) as ws:
        f = frame(4, os.urandom(1000))
        await ws.send([f[:1], f[1:500], f[500:]])  # one message in three fragments
        got = b""
        while len(got) < len(f):
            got += await ws.recv()
        assert got == f


async def case_ping_pong(url):
    async with connect(url, ping_interval=None) as ws:
        for payload in [b"", b"abc", os.urandom(125)]:
            latency = await asyncio.wait_for(await ws.ping(payload), 5)
            assert latency >= 0
        await echoes(ws, frame(5), frame(5))


async def case_normal_close(url):
    async with connect(url) as ws:
        await echoes(ws, frame(6), frame(6))
        await ws.close(1000, "done")
        assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1000, ws.protocol.close_rcvd


async def case_application_close_code_echoed(url):
    async with connect(url) as ws:
        await ws.close(4321)
        assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 4321, ws.protocol.close_rcvd


async def case_text_message_1003(url):
    async with connect(url) as ws:
        await ws.send("a text message")
        await closed_with(ws, 1003)


async def case_oversized_message_1009(url):
    async with connect(url, max_size=None) as ws:
        await ws.send(frame(7, b"x" * (MAX_FRAME + 100 - 18)))
        await closed_with(ws, 1009)


async def case_oversized_fragments_1009(url):
    async with connect(url) as ws:
        body = b"y" * (MAX_FRAME - 18)
        await ws.send([frame(8, body)[:2000], frame(8, body)[2000:], b"zz"])
        await closed_with(ws, 1009)


async def case_bad_origin_403(url):
    try:
        async with connect(url, origin="https://evil.example"):
            pass
    except websockets.InvalidStatus as e:
        assert e.response.status_code == 403, e.response.status_code
        return
    raise AssertionError("an origin not listed was accepted")


async def case_allowed_origin(url):
    async with connect(url, origin="https://app.example") as ws:
        await echoes(ws, frame(9), frame(9))


async def raw_handshake(host, port, path):
    reader, writer = await open_raw(host, port)
    writer.write((f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return reader, writer


async def case_unmasked_frame_1002(url, host, port, path):
    reader, writer = await raw_handshake(host, port, path)
    f = frame(10)
    writer.write(bytes([0x82, len(f)]) + f)  # a client frame without a mask
    close = await asyncio.wait_for(reader.readexactly(4), 5)
    assert close[0] == 0x88 and struct.unpack(">H", close[2:4])[0] == 1002, close
    assert await asyncio.wait_for(reader.read(), 5) == b"", "the connection ends after the close frame"
    writer.close()


async def case_plain_tcp_frame_400(url, host, port, path):
    reader, writer = await open_raw(host, port)
    writer.write(frame(11, b"plain"))
    answer = await asyncio.wait_for(reader.read(), 5)  # until the gateway closes
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    writer.close()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/gw")
    parser.add_argument("--tls-ca")
    args = parser.parse_args()
    global TLS
    if args.tls_ca:
        TLS = ssl.create_default_context(cafile=args.tls_ca)
    url = f"{'wss' if TLS else 'ws'}://{args.host}:{args.port}{args.path}"
    cases = [(name, fn) for name, fn in globals().items() if name.startswith("case_")]
    passed = failed = 0
    for name, fn in cases:
        try:
            if fn.__code__.co_argcount == 1:
                await asyncio.wait_for(fn(url), 20)
            else:
                await asyncio.wait_for(fn(url, args.host, args.port, args.path), 20)
            print(f"PASS {name[5:]}")
            passed += 1
        except Exception as e:  # every failure is reported, the run goes on
            print(f"FAIL {name[5:]}: {type(e).__name__}: {e}")
            failed += 1
    print(f"{passed} passed, {failed} failed")
    sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
