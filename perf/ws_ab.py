#!/usr/bin/env python3
"""WebSocket against TCP on the same gateway, and against a well-known WebSocket server
(perf/ws_echo_websockets.py: the `websockets` package from PyPI), with bin_test as the client:
(w1) load, 32 connections x 16 in flight x 512 B; (w2) ping-pong, one connection, 512 B.
Every run starts its server fresh; runs alternate gateway-TCP, gateway-WS, websockets; medians.

    perf/ws_ab.py [--bin .build/release] [--duration 5] [--reps 5]"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

from common import free_port

HERE = os.path.dirname(os.path.abspath(__file__))


def wait_listening(port):
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return
        except OSError:
            time.sleep(0.025)
    raise RuntimeError(f"nothing listening on {port}")


def server(kind, bindir):
    port = free_port()
    if kind == "websockets":
        proc = subprocess.Popen([sys.executable, os.path.join(HERE, "ws_echo_websockets.py"), "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        listen = f"ws://127.0.0.1:{port}/gw" if kind == "gateway-ws" else f"127.0.0.1:{port}"
        proc = subprocess.Popen([os.path.join(bindir, "gateway"), "--listen", listen, "--stats-interval", "0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port)
    return proc, port


def client(bindir, kind, port, scenario, duration):
    args = [os.path.join(bindir, "bin_test"), "client", "--port", str(port), "--duration", str(duration),
            "--json", "--quiet", "--size", "512"]
    args += ["--conns", "32", "--pipeline", "16"] if scenario == "w1" else ["--mode", "pingpong"]
    if kind != "gateway-tcp":
        args += ["--transport", "ws", "--ws-path", "/gw" if kind == "gateway-ws" else "/"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60)
    report = json.loads(out.stdout)
    if not report["ok"]:
        raise RuntimeError(f"{kind} {scenario}: {report['error_messages'][:3]}")
    return report


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=".build/release")
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    kinds = ["gateway-tcp", "gateway-ws", "websockets"]
    figures = {(s, k): [] for s in ("w1", "w2") for k in kinds}
    for _ in range(args.reps):
        for scenario in ("w1", "w2"):
            for kind in kinds:
                proc, port = server(kind, args.bin)
                try:
                    r = client(args.bin, kind, port, scenario, args.duration)
                finally:
                    proc.terminate()
                    proc.wait(10)
                figures[(scenario, kind)].append(r["replies_per_s"] if scenario == "w1" else r["latency_us"]["p50"])
    print(f"load: {os.getloadavg()}")
    for scenario, what in (("w1", "replies/s"), ("w2", "p50 us")):
        med = {k: statistics.median(figures[(scenario, k)]) for k in kinds}
        spread = {k: (min(figures[(scenario, k)]), max(figures[(scenario, k)])) for k in kinds}
        print(f"({scenario}) {what}: " + ", ".join(
            f"{k} {med[k]:,.1f} ({spread[k][0]:,.1f}-{spread[k][1]:,.1f})" for k in kinds))
        print(f"     ws/tcp {med['gateway-ws'] / med['gateway-tcp']:.2f}, "
              f"gateway-ws/websockets {med['gateway-ws'] / med['websockets']:.2f}")


if __name__ == "__main__":
    main()
