#!/usr/bin/env python3
"""Issue 20's figures: a hot restart that hands live connections over (docs/HANDOVER.md), side by side
with the same run without a restart, alternating.

Three scenarios, each run --reps times as a pair (A, B) alternating:
  idle: gateway G1 (--control-socket) holds 10,000 idle connections (two `bin_test client --mode idle`
        processes of 5,000, each checking an echo before and after);
  busy: G1 serves 1,000 busy ones (`bin_test client --mode pingpong --conns 1000`, one 64 B request in
        flight each, every reply checked);
  forwarding: busy, with G1 and G2 forwarding to a `bin_test core` (--upstream): the sessions move too
        (MOVE, docs/LINK.md), each once the core has answered what it holds for it (--core-delay-us
        holds every answer that long; 0 by default). The core's summary must show every MOVING followed
        by MOVED and no session lost.
Half way through a run:
  B (hand-over): G2 starts with --take-over and takes the listeners and every connection.
  A (peer):      nothing happens.
Figures, medians (min-max):
  - the hand-over's time, as G1 logs it ("handed over N connections in X s": from holding accepting to
    the last batch confirmed);
  - busy: the clients' p99 round trip over the whole run, B against A (ratio of medians);
  - G1's CPU (user + system, /proc/PID/stat) from the take-over until it exits, against G1's CPU over
    a window of the same length in A's run (serving the same clients with no restart).
Every client must end clean (exit 0: no lost, reordered or failed reply, no connection lost).

    perf/handover_ab.py [--reps 5] [--duration 12] [--scenarios idle,busy,forwarding] [--core-delay-us 0]

Binaries: .build-perf/release/{gateway,bin_test} (swift build -c release --scratch-path .build-perf),
or --gateway/--bin-test. Traffic stays on 127.0.0.1; every wait is bounded.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import tempfile
import time

from common import cpu_seconds, loadavg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wait_for(path, pattern, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        with open(path) as f:
            m = re.search(pattern, f.read())
        if m:
            return m
        time.sleep(0.05)
    raise SystemExit(f"no '{pattern}' in {path} within {seconds} s")


SCENARIOS = {"idle": (10_000, 0), "busy": (0, 1_000), "forwarding": (0, 1_000)}


def start_core(args, workdir, name):
    """A `bin_test core` on a free port: (process, its log, "127.0.0.1:port")."""
    log = os.path.join(workdir, f"{name}.log")
    out = os.path.join(workdir, f"{name}.out")
    delay = ["--delay-us", str(args.core_delay_us)] if args.core_delay_us else []
    core = subprocess.Popen([args.bin_test, "core", "--port", "0"] + delay, stderr=open(log, "w"),
                            stdout=open(out, "w"))
    port = wait_for(log, r"echo core on 127\.0\.0\.1:(\d+)", 20).group(1)
    return core, out, f"127.0.0.1:{port}"


def core_summary(core, out):
    """Stops the core; its counts (opened=, closed=, moving=, moved=, moves_lost= ...)."""
    core.terminate()
    core.wait(timeout=20)
    with open(out) as f:
        line = [x for x in f.read().splitlines() if x.startswith("opened=")][-1]
    return {k: int(v) for k, v in (field.split("=") for field in line.split())}


def run(args, scenario, handover, workdir, rep):
    sock = f"/tmp/gw-handover-perf-{os.getpid()}-{rep}.sock"
    idle_n, busy_n = SCENARIOS[scenario]
    log1 = os.path.join(workdir, f"g1-{scenario}-{rep}-{handover}.log")
    common = ["--control-socket", sock, "--drain-timeout", "10", "--stats-interval", "0", "--max-connections", "15000"]
    core = None
    if scenario == "forwarding":
        core, core_out, upstream = start_core(args, workdir, f"core-{rep}-{handover}")
        common += ["--upstream", upstream]
    g1 = subprocess.Popen([args.gateway, "--port", "0"] + common, stderr=open(log1, "w"))
    port = wait_for(log1, r"listening on 127\.0\.0\.1:(\d+)", 20).group(1)
    if core:
        wait_for(log1, r": up \(node [\s\S]*: up \(node ", 20)  # both links, before any client
    client = [args.bin_test, "client", "--port", port, "--json", "--quiet", "--duration", str(args.duration)]
    clients = [subprocess.Popen(client + ["--mode", "idle", "--conns", str(idle_n // 2), "--grace", "20"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2 if idle_n else 0)]
    if busy_n:
        clients.append(subprocess.Popen(client + ["--mode", "pingpong", "--conns", str(busy_n), "--size", "64"],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    time.sleep(args.duration / 2)
    result = {}
    cpu0 = cpu_seconds(g1.pid)
    t0 = time.time()
    g2 = None
    if handover:
        log2 = os.path.join(workdir, f"g2-{scenario}-{rep}.log")
        g2 = subprocess.Popen([args.gateway, "--take-over", sock] + common, stderr=open(log2, "w"))
        last = cpu0
        while g1.poll() is None and time.time() - t0 < 30:
            now = cpu_seconds(g1.pid)
            last = now if now is not None else last
            time.sleep(0.01)
        result["old_cpu"] = last - cpu0
        result["old_wall"] = time.time() - t0
        m = wait_for(log1, r"handed over (\d+) connections in ([0-9.e-]+) s", 5)
        result["moved"], result["handover_s"] = int(m.group(1)), float(m.group(2))
    else:
        time.sleep(args.peer_window)
        result["old_cpu"] = cpu_seconds(g1.pid) - cpu0
        result["old_wall"] = time.time() - t0
    outs = [p.communicate(timeout=args.duration + 60) for p in clients]
    codes = [p.returncode for p in clients]
    if busy_n:
        summary = json.loads(outs[-1][0])
        result["p99_us"] = summary.get("p99_us") or summary.get("latency_us", {}).get("p99")
    result["clean"] = all(c == 0 for c in codes)
    if not result["clean"]:
        result["errors"] = [o[1].decode()[-400:] for o in outs]
    for p in [g2, g1]:
        if p and p.poll() is None:
            p.terminate()
            p.wait(timeout=20)
    if core:
        result["core"] = counts = core_summary(core, core_out)
        if handover:
            m = wait_for(log1, r"handed over (\d+) connections", 5)
            result["clean"] = result["clean"] and counts["moves_lost"] == 0 and counts["moved_unknown"] == 0 \
                and counts["moving"] == counts["moved"] == int(m.group(1))
    return result


def med(xs):
    return f"{statistics.median(xs):.4g} ({min(xs):.4g}-{max(xs):.4g})"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--duration", type=float, default=12)
    parser.add_argument("--peer-window", type=float, default=1.0, help="A's CPU window, seconds (B's is measured)")
    parser.add_argument("--gateway", default=os.environ.get("PERF_GATEWAY", f"{ROOT}/.build-perf/release/gateway"))
    parser.add_argument("--bin-test", default=os.environ.get("PERF_BIN_TEST", f"{ROOT}/.build-perf/release/bin_test"))
    parser.add_argument("--scenarios", default="idle,busy,forwarding",
                        help="comma-separated: idle (10,000), busy (1,000), forwarding (1,000 busy, to a core)")
    parser.add_argument("--core-delay-us", type=int, default=0, help="forwarding: the core holds each answer")
    args = parser.parse_args()
    for scenario in args.scenarios.split(","):
        print(f"== {scenario}: {SCENARIOS[scenario][0]} idle, {SCENARIOS[scenario][1]} busy connections")
        print(f"load average before: {loadavg()}", flush=True)
        a, b = [], []
        with tempfile.TemporaryDirectory() as workdir:
            for rep in range(args.reps):
                for handover in (False, True):
                    r = run(args, scenario, handover, workdir, rep)
                    (b if handover else a).append(r)
                    print(("B" if handover else "A"), rep, json.dumps(r), flush=True)
        print(f"load average after: {loadavg()}")
        report(a, b)


def report(a, b):
    print(f"clean runs: A {sum(r['clean'] for r in a)}/{len(a)}, B {sum(r['clean'] for r in b)}/{len(b)}")
    print(f"B connections moved: {med([r['moved'] for r in b])}")
    print(f"B hand-over time, s: {med([r['handover_s'] for r in b])}")
    if "core" in b[0]:
        cores = [r["core"] for r in b]
        print(f"B core: sessions moved {med([c['moved'] for c in cores])}, MOVING not followed by MOVED "
              f"{sum(c['moving'] - c['moved'] for c in cores)}, lost {sum(c['moves_lost'] for c in cores)}, "
              f"MOVED for a session not held {sum(c['moved_unknown'] for c in cores)}")
    if "p99_us" in a[0]:
        pa, pb = [r["p99_us"] for r in a], [r["p99_us"] for r in b]
        print(f"busy p99 round trip, us: A {med(pa)}  B {med(pb)}  "
              f"B/A {statistics.median(pb) / statistics.median(pa):.3g}")
    ca = [r["old_cpu"] / r["old_wall"] for r in a]
    cb = [r["old_cpu"] / r["old_wall"] for r in b]
    print(f"G1 CPU, cores: A (serving) {med(ca)}  B (from take-over to exit) {med(cb)}  "
          f"B/A {statistics.median(cb) / statistics.median(ca) if statistics.median(ca) else float('nan'):.3g}")
    print(f"G1 CPU seconds in B, take-over to exit: {med([r['old_cpu'] for r in b])} over "
          f"{med([r['old_wall'] for r in b])} s")

if __name__ == "__main__":
    main()
