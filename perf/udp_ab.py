#!/usr/bin/env python3
"""UDP echo on the gateway against the lean C UDP echo (perf/peers/c_udp_echo/udp_echo.c: one thread,
recvmmsg / sendmmsg batches of 32, the same per-datagram check), with bin_test --transport udp as the
client: (u1) 32 sessions x 8 in flight x 1,000-byte frames, one frame per datagram each way, so
replies/s is datagrams/s; (u2) ping-pong, one session, 64-byte frames (p50 latency). Every run starts
its server fresh; runs alternate gateway, C; medians of --reps with min-max.

    perf/udp_ab.py [--bin .build/release] [--c-echo PATH] [--duration 5] [--reps 5]"""
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


def wait_echoing(port):
    """Until an 18-byte frame sent to the port comes back (after a token frame, from the gateway)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.05)
    frame = (18).to_bytes(4, "big") + bytes(14)
    try:
        for _ in range(400):
            s.sendto(frame, ("127.0.0.1", port))
            try:
                if s.recv(2048).endswith(frame):
                    return
            except socket.timeout:
                pass
        raise RuntimeError(f"nothing echoing on udp {port}")
    finally:
        s.close()


def server(kind, args):
    port = free_port(socket.SOCK_DGRAM)
    if kind == "c":
        cmd = [args.c_echo, "--port", str(port)]
    else:
        cmd = [os.path.join(args.bin, "gateway"), "--listen", f"udp://127.0.0.1:{port}", "--stats-interval", "0",
               "--log-level", "notice"]
    # The gateway's closing stats line says how many datagrams each recvmmsg and sendmmsg carried.
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_echoing(port)
    return proc, port


def client(args, port, scenario):
    cmd = [os.path.join(args.bin, "bin_test"), "client", "--transport", "udp", "--port", str(port),
           "--duration", str(args.duration), "--json", "--quiet"]
    cmd += ["--conns", "32", "--pipeline", "8", "--size", "1000"] if scenario == "u1" \
        else ["--mode", "pingpong", "--size", "64"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60)
    return json.loads(out.stdout)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=".build/release")
    parser.add_argument("--c-echo", default=os.path.join(HERE, ".build-c", "c_udp_echo"))
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    if not os.path.exists(args.c_echo):
        os.makedirs(os.path.dirname(args.c_echo), exist_ok=True)
        subprocess.run(["cc", "-O2", "-pthread", "-o", args.c_echo,
                        os.path.join(HERE, "peers", "c_udp_echo", "udp_echo.c")], check=True)
    kinds = ["gateway", "c"]
    figures = {(s, k): [] for s in ("u1", "u2") for k in kinds}
    faults = []
    batching = {}
    loads = [os.getloadavg()[0]]
    for _ in range(args.reps):
        for scenario in ("u1", "u2"):
            for kind in kinds:
                proc, port = server(kind, args)
                try:
                    r = client(args, port, scenario)
                finally:
                    proc.terminate()
                    _, log = proc.communicate(timeout=10)
                if kind == "gateway":
                    batching[scenario] = [l for l in log.splitlines() if "datagrams/call" in l][-1:]
                # A lost datagram is a fault to bin_test (a missing reply): counted, the figure kept.
                if not r["ok"]:
                    faults.append(f"{kind} {scenario}: {r['error_messages'][:1]}")
                figures[(scenario, kind)].append(r["replies_per_s"] if scenario == "u1" else r["latency_us"]["p50"])
        loads.append(os.getloadavg()[0])
    print(f"load average (1 min) during the runs: {min(loads):.1f}-{max(loads):.1f}")
    for scenario, what in (("u1", "datagrams/s each way"), ("u2", "ping-pong p50 us")):
        med = {k: statistics.median(figures[(scenario, k)]) for k in kinds}
        spread = {k: (min(figures[(scenario, k)]), max(figures[(scenario, k)])) for k in kinds}
        print(f"({scenario}) {what}: " + ", ".join(
            f"{k} {med[k]:,.1f} ({spread[k][0]:,.1f}-{spread[k][1]:,.1f})" for k in kinds)
            + f"; gateway/C {med['gateway'] / med['c']:.2f}")
    for scenario, lines in batching.items():
        for line in lines:
            print(f"({scenario}) gateway's last run: " + line[line.find("udp sessions"):])
    for f in faults:
        print("fault:", f)


if __name__ == "__main__":
    main()
