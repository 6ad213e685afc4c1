#!/usr/bin/env python3
"""Issue 10's cost checks, side by side in one run, alternating:

1. The hot path with every limit configured but not hit: `gateway` on its defaults
   against `gateway` with allow/deny lists, per-address limits, accept rate, flood
   limits, frame timeout and pending/buffer caps set far above what the load
   reaches; bin_test load (32 x 16 x 512 B, like (a)) and connrate (like (d)).
2. What a refused connection costs: gateway CPU seconds per connection for a
   connect-and-close loop against a gateway that denies 127.0.0.0/8, and against
   one that accepts (and serves nothing: the client closes at once).

    perf/limits_ab.py [--reps 5] [--duration 3] [--connects 4000]

Binaries: .build/release/gateway and .build/release/bin_test (swift build -c release).
Prints medians (min-max) and ratios, limits / plain and refused / accepted.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

from common import cpu_seconds, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GATEWAY = os.path.join(ROOT, ".build/release/gateway")
BIN_TEST = os.path.join(ROOT, ".build/release/bin_test")
LIMITS = ["--allow", "127.0.0.0/8,::1", "--deny", "10.0.0.0/8,192.168.0.0/16,2001:db8::/32",
          "--max-conns-per-ip", "100000", "--conn-rate-per-ip", "1000000", "--accept-rate", "10000000",
          "--flood-frames-per-s", "100000000", "--flood-bytes-per-s", "100000000000",
          "--frame-timeout", "30", "--max-pending-bytes", "1073741824", "--max-buffered-bytes", "4294967296"]


def start(extra):
    port = free_port()
    p = subprocess.Popen([GATEWAY, "--port", str(port), "--stats-interval", "0", "--log-level", "error"] + extra,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p, port
        except OSError:
            time.sleep(0.05)
    p.kill()
    sys.exit("gateway did not start")


def stop(p):
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()


def client(port, mode, duration):
    argv = [BIN_TEST, "client", "--port", str(port), "--duration", str(duration), "--json", "--quiet"]
    argv += (["--mode", "load", "--conns", "32", "--pipeline", "16", "--size", "512"] if mode == "load"
             else ["--mode", "connrate", "--conns", "16", "--size", "64"])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60).stdout
    got = json.loads(out[out.index("{"):])
    return got["connections_per_s"] if mode == "connrate" else got["replies_per_s"]


def connect_loop(port, count):
    """Connect and close `count` times; a refused connection is closed by the gateway at once."""
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.close()


def fmt(values):
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--duration", type=float, default=3)
    ap.add_argument("--connects", type=int, default=4000)
    a = ap.parse_args()
    results = {(v, m): [] for v in ("plain", "limits") for m in ("load", "connrate")}
    per_conn = {"accepted": [], "refused": []}
    for rep in range(a.reps):
        for variant in ("plain", "limits"):
            for mode in ("load", "connrate"):
                p, port = start(LIMITS if variant == "limits" else [])
                results[(variant, mode)].append(client(port, mode, a.duration))
                stop(p)
        for variant in ("accepted", "refused"):
            p, port = start(["--deny", "127.0.0.0/8"] if variant == "refused" else [])
            before = cpu_seconds(p.pid)
            connect_loop(port, a.connects)
            time.sleep(0.2)  # let the last closes be handled
            per_conn[variant].append((cpu_seconds(p.pid) - before) / a.connects * 1e6)
            stop(p)
        print(f"rep {rep + 1}: " + ", ".join(f"{v} {m} {results[(v, m)][-1]:,.0f}" for v, m in results)
              + f", us/conn accepted {per_conn['accepted'][-1]:.1f} refused {per_conn['refused'][-1]:.1f}",
              flush=True)
    print()
    for mode, unit in (("load", "replies/s"), ("connrate", "connections/s")):
        plain, limits = results[("plain", mode)], results[("limits", mode)]
        ratio = statistics.median(limits) / statistics.median(plain)
        print(f"{mode:9} {unit:14} plain {fmt(plain)}  limits {fmt(limits)}  limits/plain {ratio:.2f}")
    acc, ref = per_conn["accepted"], per_conn["refused"]
    print(f"gateway CPU per connection (us): accepted {statistics.median(acc):.1f} "
          f"({min(acc):.1f}-{max(acc):.1f}), refused {statistics.median(ref):.1f} ({min(ref):.1f}-{max(ref):.1f}), "
          f"refused/accepted {statistics.median(ref) / statistics.median(acc):.2f}")


if __name__ == "__main__":
    main()
