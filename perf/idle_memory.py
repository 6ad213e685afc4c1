#!/usr/bin/env python3
"""perf/idle_memory.py: bytes per idle connection at 10,000 and 19,000 connections.

Each server (the gateway on its defaults, c_echo with 1 thread) is started fresh; its VmRSS is read
before any client, then `bin_test client --mode idle` processes (each at most --per-process
connections, started one after another as the last one's are held: the open-files limit is 20,000
per process, and a listen backlog overflows at 19,000 connects at once) open their connections,
echo once on each and hold them. Two figures per run, VmRSS growth over the connections held:
- burst: the first sample once all are held (the server's descriptor count says so);
- settled, the figure: --settle seconds later, and then once two samples 1 s apart no longer fall
  by 1 % (at most --settle-max). The gateway's rings take storage for the one echo and give it back
  when empty; `RingPool.trim` returns those pages to the kernel once a second, so only the settled
  figure is what an idle connection costs.
What the growth contains, per run: the anonymous mappings that grew most between the two samples
(/proc/PID/smaps, by each mapping's virtual size: for the gateway on its defaults the slot table is
max_connections x the slot, the ring pool 2 x max_connections x 512 B).
A and B alternate run by run; medians over --reps. Python's standard library only.

    perf/idle_memory.py [--counts 10000,19000] [--reps 5] [--hold 22] [--settle 3] [--per-process 5000]
"""
import argparse, os, statistics, subprocess, sys, time, socket

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import loadavg, rss_kib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def mappings(pid):
    """Resident KiB of each mapping of `pid`: {start address: (virtual KiB, resident KiB, name)}."""
    found, start = {}, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and not head[0].endswith(":"):
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                start = lo
                found[lo] = [(hi - lo) // 1024, 0, head[5] if len(head) > 5 else "anon"]
            elif head[0] == "Rss:" and start is not None:
                found[start][1] = int(head[1])
    return found


def growth(before, after, count, top=4):
    """The mappings that grew most, as 'NAME of VIRT KiB: +B/conn'."""
    rows = []
    for start, (virt, rss, name) in after.items():
        grew = rss - (before[start][1] if start in before else 0)
        if grew > 0:
            rows.append((grew, virt, name))
    rows.sort(reverse=True)
    return ", ".join(f"{name} {virt:,} KiB: +{grew * 1024 / count:,.0f}" for grew, virt, name in rows[:top])


def settled_rss(pid, args):
    """VmRSS once it stops falling: after --settle s, two samples 1 s apart within 1 %."""
    time.sleep(args.settle)
    deadline = time.monotonic() + args.settle_max - args.settle
    last = rss_kib(pid)
    while time.monotonic() < deadline:
        time.sleep(1)
        now = rss_kib(pid)
        if now >= last * 0.99:
            return now
        last = now
    return None


def one_run(name, cmd, port, count, args):
    """(burst B/conn, settled B/conn, what grew) or (None, error)."""
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, server)
        time.sleep(0.5)
        base_fds, before, maps = fds(server.pid), rss_kib(server.pid), mappings(server.pid)
        # One client process at a time, the next once the last one's connections are all held: 19,000
        # connects at once overflow the listen backlog (somaxconn) and the clients give up on them.
        # Each from an address of its own (127.0.0.2, ...): one address's ephemeral ports ran out near 14,700.
        clients, opened = [], 0
        while opened < count:
            n = min(count - opened, args.per_process)
            clients.append(subprocess.Popen(
                [args.bin_test, "client", "--host", "127.0.0.1", "--port", str(port), "--mode", "idle",
                 "--conns", str(n), "--duration", str(args.hold), "--json",
                 "--source", f"127.0.0.{2 + len(clients)}"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
            opened += n
            deadline = time.monotonic() + 30
            while fds(server.pid) < base_fds + opened and clients[-1].poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        burst, settled, grew = None, None, ""
        while any(c.poll() is None for c in clients):
            if fds(server.pid) >= base_fds + count:
                burst = rss_kib(server.pid)
                settled = settled_rss(server.pid, args)
                if settled is not None and fds(server.pid) >= base_fds + count:
                    grew = growth(maps, mappings(server.pid), count)
                else:
                    settled = None
                break
            time.sleep(0.05)
        codes = [c.wait() for c in clients]
        if settled is None or any(codes):
            return None, f"{name} {count}: burst={burst} settled={settled} client exits {codes}"
        return ((burst - before) * 1024 / count, (settled - before) * 1024 / count, grew), None
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
    p.add_argument("--hold", type=int, default=22, help="seconds each client holds its connections")
    p.add_argument("--settle", type=float, default=3.0, help="seconds after all are held before sampling")
    p.add_argument("--settle-max", type=float, default=8.0, help="give up on a settled sample after this")
    p.add_argument("--per-process", type=int, default=5000)
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
                load = loadavg()
                if err:
                    notes.append(err)
                    print(f"{name} {count} rep {rep + 1}: {err}, load {load}", file=sys.stderr)
                    continue
                results.setdefault((name, count), []).append(value)
                print(f"{name} {count} rep {rep + 1}: burst {value[0]:,.0f} B/conn, settled {value[1]:,.0f} B/conn, "
                      f"load {load}; grew: {value[2]}", file=sys.stderr)
    print("| connections | gateway B/conn, settled | c_echo B/conn, settled | gateway / C | gateway at the burst |")
    print("|---|---|---|---|---|")
    for count in [int(c) for c in args.counts.split(",")]:
        g, c = results.get(("gateway", count), []), results.get(("c_echo", count), [])
        if g and c:
            gs, cs, gb = [v[1] for v in g], [v[1] for v in c], [v[0] for v in g]
            mg, mc = statistics.median(gs), statistics.median(cs)
            def cell(values):
                return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"
            print(f"| {count:,} | {cell(gs)} | {cell(cs)} | {mg / mc:.1f}x | {cell(gb)} |")
            median_run = sorted(g, key=lambda v: v[1])[len(g) // 2]
            print(f"- gateway at {count:,}, the median run's growth by mapping (B/conn): {median_run[2]}")
    for n in notes:
        print(f"- {n}")


if __name__ == "__main__":
    main()
