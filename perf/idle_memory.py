#!/usr/bin/env python3
"""perf/idle_memory.py: bytes per idle connection at 10,000 and 19,000 connections.

Each server (the gateway on its defaults, c_echo with 1 thread) is started fresh; its VmRSS is read
before any client, then `bin_test client --mode idle` processes (each at most --per-process
connections: the open-files limit is 20,000 per process) open their connections, echo once on
each and hold them; VmRSS is sampled while all are held (the server's descriptor count says so) and
the growth per connection is the figure. The gateway is sampled a second past the moment all are
held, so that rings still held after the one echo have had ticks to go back (perf/RESULTS.md).
A and B alternate run by run; medians over --reps. Python's standard library only.

    perf/idle_memory.py [--counts 10000,19000] [--reps 5] [--hold 6] [--per-process 9500]
"""
import argparse, os, statistics, subprocess, sys, time, socket, json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_listening(port, proc, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not listen")


def one_run(name, cmd, port, count, args):
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, server)
        time.sleep(0.5)
        base_fds, before = fds(server.pid), rss_kib(server.pid)
        clients, left, k = [], count, 0
        while left > 0:
            n = min(left, args.per_process)
            clients.append(subprocess.Popen(
                [args.bin_test, "client", "--host", "127.0.0.1", "--port", str(port), "--mode", "idle",
                 "--conns", str(n), "--duration", str(args.hold), "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
            left -= n
            k += 1
        held, held_at = None, None
        while any(c.poll() is None for c in clients):
            if fds(server.pid) >= base_fds + count:
                if held_at is None:
                    held_at = time.monotonic()
                if time.monotonic() - held_at >= args.settle:
                    held = rss_kib(server.pid)
                    break
            time.sleep(0.05)
        codes = [c.wait() for c in clients]
        if held is None or any(codes):
            return None, f"{name} {count}: held={held} client exits {codes}"
        return (held - before) * 1024 / count, None
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--counts", default="10000,19000")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--hold", type=int, default=6, help="seconds each client holds its connections")
    p.add_argument("--settle", type=float, default=1.0, help="seconds after all are held before sampling")
    p.add_argument("--per-process", type=int, default=9500)
    p.add_argument("--gateway", default=os.environ.get("PERF_GATEWAY", f"{ROOT}/.build-perf/release/gateway"))
    p.add_argument("--bin-test", default=os.environ.get("PERF_BIN_TEST", f"{ROOT}/.build-perf/release/bin_test"))
    p.add_argument("--c-echo", default=os.environ.get("PERF_C_ECHO", f"{ROOT}/perf/.build/c_echo"))
    args = p.parse_args()
    servers = [("gateway", lambda port: [args.gateway, "--host", "127.0.0.1", "--port", str(port)]),
               ("c_echo", lambda port: [args.c_echo, "--host", "127.0.0.1", "--port", str(port), "--threads", "1"])]
    results, notes, port = {}, [], 9600
    for count in [int(c) for c in args.counts.split(",")]:
        for rep in range(args.reps):
            for name, cmd in servers:
                port += 1
                value, err = one_run(name, cmd(port), port, count, args)
                load = open("/proc/loadavg").read().split()[:3]
                if err:
                    notes.append(err)
                else:
                    results.setdefault((name, count), []).append(value)
                print(f"{name} {count} rep {rep + 1}: {value if value is None else round(value)} B/conn, "
                      f"load {' '.join(load)}", file=sys.stderr)
    print("| connections | gateway B/conn | c_echo B/conn | gateway ÷ C |")
    print("|---|---|---|---|")
    for count in [int(c) for c in args.counts.split(",")]:
        g, c = results.get(("gateway", count), []), results.get(("c_echo", count), [])
        if g and c:
            mg, mc = statistics.median(g), statistics.median(c)
            print(f"| {count:,} | {mg:,.0f} ({min(g):,.0f}-{max(g):,.0f}) | {mc:,.0f} ({min(c):,.0f}-{max(c):,.0f}) "
                  f"| {mg / mc:.1f}x |")
    for n in notes:
        print(f"- {n}")


if __name__ == "__main__":
    main()
