#!/usr/bin/env python3
"""Bytes per idle connection, WebSocket against TCP, on one gateway build: each run starts a fresh
gateway with a plain and a WebSocket listener, opens N idle connections of one kind (WebSocket ones
complete their handshake), and reads the gateway's resident memory (Rss of /proc/PID/smaps_rollup)
before and after. Runs alternate TCP, WS, TCP, WS ...; the figures are medians.

    perf/ws_memory.py [--gateway .build/release/gateway] [--conns 4000] [--reps 5]"""
import argparse
import socket
import statistics
import subprocess
import time

from common import free_port

REQUEST = (b"GET /gw HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def rss(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no Rss")


def connect(port, ws):
    s = socket.create_connection(("127.0.0.1", port))
    if ws:
        s.sendall(REQUEST)
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            chunk = s.recv(256)
            if not chunk:
                raise RuntimeError("closed during the handshake")
            head += chunk
        assert head.startswith(b"HTTP/1.1 101 "), head
    return s


def run(gateway, conns, ws):
    tcp_port, ws_port = free_port(), free_port()
    proc = subprocess.Popen([gateway, "--listen", f"127.0.0.1:{tcp_port}", "--listen", f"ws://127.0.0.1:{ws_port}/gw",
                             "--max-connections", str(conns + 100), "--idle-timeout", "0", "--stats-interval", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = ws_port if ws else tcp_port
        for _ in range(200):  # until it listens
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
        # Warm up: the pool, the first pages of the tables, the threads' stacks.
        warm = [connect(port, ws) for _ in range(100)]
        for s in warm:
            s.close()
        time.sleep(1)
        before = rss(proc.pid)
        held = [connect(port, ws) for _ in range(conns)]
        time.sleep(1)
        after = rss(proc.pid)
        for s in held:
            s.close()
        return (after - before) / conns
    finally:
        proc.terminate()
        proc.wait(10)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateway", default=".build/release/gateway")
    parser.add_argument("--conns", type=int, default=4000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    tcp, ws = [], []
    for _ in range(args.reps):
        tcp.append(run(args.gateway, args.conns, ws=False))
        ws.append(run(args.gateway, args.conns, ws=True))
    t, w = statistics.median(tcp), statistics.median(ws)
    print(f"{args.conns} idle connections, {args.reps} alternating runs, medians (min-max):")
    print(f"  TCP       {t:8.0f} B per connection ({min(tcp):.0f}-{max(tcp):.0f})")
    print(f"  WebSocket {w:8.0f} B per connection ({min(ws):.0f}-{max(ws):.0f})")
    print(f"  WebSocket - TCP: {w - t:+.0f} B per connection")


if __name__ == "__main__":
    main()
