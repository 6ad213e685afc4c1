#!/usr/bin/env python3
"""Issue 11's checks, side by side in one run, alternating (the structure of limits_ab.py):

1. `--workers`: A = `gateway --workers 1` (one process, no master) against B = `gateway --workers 2`
   (a master and two four-thread workers, each on its own SO_REUSEPORT socket), at (a) 32 x 16 x
   512 B closed loop (replies/s), (c) 1,000 connections x 1 in flight x 64 B (replies/s) and (d)
   connection rate from 127.0.0.2-127.0.0.9 (connections/s).
   For B, how the connections spread across the workers (each worker's `accepted` on its exit line)
   and how the CPU does (/proc/PID/stat of each worker).
2. Scraping: A = `gateway --admin 127.0.0.1:P` with nobody scraping, B = the same with GET /metrics
   once a second during the run (every answer must be 200 and hold gateway_frames_in_total), at (a).
   Then one scrape's cost: its wall time with 32 and with 10,000 idle connections open, and the
   gateway's CPU per scrape with no load (100 scrapes against the same idle time without any).
3. Per-connection cost: VmRSS of one gateway with 0 and with 10,000 idle connections (bytes per
   connection; the kernel's slab growth per socket beside it), CPU per reply at (a), per accepted
   connection at (d), and per message with 10,000 connections each sending one 512 B message a
   second and every 10 s (open loop); each thread's share. From these, a 64-core projection.

4. The master's scrape (issue 17): one GET /metrics of `gateway --workers K --admin` for K = 2 and 8 (the
   master asks every worker and relabels) against one single gateway's own scrape, alternating: wall
   time per scrape, and CPU per scrape of every process of the set-up (less the same idle time's).

    perf/workers_ab.py [--reps 5] [--duration 3] [--sections workers,scrape,conn,masterscrape]

Binaries: .build-perf/release/{gateway,bin_test} (swift build -c release --product gateway
--scratch-path .build-perf, the same for bin_test), or --gateway/--bin-test (PERF_GATEWAY,
PERF_BIN_TEST). Traffic stays on 127.0.0.0/8; every wait is bounded. Prints medians (min-max),
ratios B/A of the medians and the min-max of the ratios paired run by run.
"""
import argparse
import http.client
import json
import os
import re
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from common import cpu_seconds, free_port, loadavg, status_kib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SOURCES = ",".join(f"127.0.0.{i}" for i in range(2, 10))
# The client command lines of (a) and (d), as perf/runner.py runs them.
LOAD = ["--mode", "load", "--conns", "32", "--pipeline", "16", "--size", "512"]
MANY = ["--mode", "load", "--conns", "1000", "--pipeline", "1", "--size", "64"]
CONNRATE = ["--mode", "connrate", "--conns", "16", "--pipeline", "1", "--size", "64", "--source", SOURCES]
IDLE_CONNS = 10_000
ARGS = None  # the parsed command line


# ---------------------------------------------------------------- /proc


def threads_cpu(pid):
    """{thread name: on-CPU seconds} from /proc/PID/task/*/schedstat (nanoseconds, live threads only)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                ns = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if not name.startswith("gw-"):
            name = "other"
        out[name] = out.get(name, 0.0) + ns / 1e9
    return out


def children(pid):
    kids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def count_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def slab_kib():
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) for line in f}
    return info.get("SReclaimable", 0) + info.get("SUnreclaim", 0)


SOCKET_CACHES = ("TCP", "sock_inode_cache", "filp", "dentry", "eventpoll_epi", "eventpoll_pwq")


def slab_bytes():
    """{cache: active objects x object size} from /proc/slabinfo (root); {} when unreadable."""
    out = {}
    try:
        with open("/proc/slabinfo") as f:
            for line in f.readlines()[2:]:
                x = line.split()
                out[x[0]] = int(x[1]) * int(x[3])
    except (OSError, ValueError, IndexError):
        pass
    return out


# ---------------------------------------------------------------- processes

def pinned(argv, cpus):
    # taskset execs the program, so the pid stays the program's own.
    return (["taskset", "-c", cpus] + argv) if cpus else argv


class Gateway:
    """One gateway set-up: started fresh, ready once every process logged "listening on"."""

    def __init__(self, workers=1, admin=False, extra=()):
        self.port = free_port()
        self.admin_port = free_port() if admin else None
        self.workers = workers
        argv = [ARGS.gateway, "--host", "127.0.0.1", "--port", str(self.port), "--stats-interval", "0",
                "--log-level", "notice"]
        if workers != 1:
            argv += ["--workers", str(workers)]
        if admin:
            argv += ["--admin", f"127.0.0.1:{self.admin_port}"]
        self.argv = argv + list(extra)
        self.log = tempfile.NamedTemporaryFile(prefix="workers_ab-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(pinned(self.argv, ARGS.server_cpus), stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"gateway exited at start ({self.proc.returncode}): {self.read_log()[-800:]}")
            if self.read_log().count("listening on") >= workers:
                break
            time.sleep(0.05)
        else:
            self.kill()
            sys.exit(f"gateway did not start in 20 s: {self.read_log()[-800:]}")
        self.pids = [self.proc.pid] + (children(self.proc.pid) if workers > 1 else [])
        if workers > 1 and len(self.pids) != workers + 1:
            self.kill()
            sys.exit(f"expected {workers} workers, found pids {self.pids}")

    def read_log(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def cpu(self):
        """CPU seconds of every process of the set-up (master and workers)."""
        return sum(cpu_seconds(p) or 0.0 for p in self.pids)

    def worker_cpu(self):
        return [cpu_seconds(p) or 0.0 for p in self.pids[1:]]

    def threads(self):
        out = {}
        for p in self.pids:
            for name, s in threads_cpu(p).items():
                out[name] = out.get(name, 0.0) + s
        return out

    def fds(self):
        return count_fds(self.pids[-1] if self.workers == 1 else self.pids[1])

    def stop(self):
        """SIGTERM (the master passes it on), SIGKILL after 15 s; returns {worker index: accepted}."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()
        accepted = {}
        for line in self.read_log().splitlines():
            m = re.search(r"stopped after \d+ s: open \d+, accepted (\d+)", line)
            if m:
                w = re.search(r"worker=(\d+)", line)
                accepted[int(w.group(1)) if w else 0] = int(m.group(1))
        self.log.close()
        os.unlink(self.log.name)
        return accepted

    def kill(self):
        for p in reversed(self.pids if hasattr(self, "pids") else [self.proc.pid]):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait(10)


def client_argv(port, shape, duration):
    return [ARGS.bin_test, "client", "--host", "127.0.0.1", "--port", str(port)] + shape + [
        "--duration", f"{duration:g}", "--json", "--quiet"]


def parse_client(proc_out, rc, argv):
    try:
        got = json.loads(proc_out[proc_out.index("{"):])
    except ValueError:
        sys.exit(f"bin_test printed no JSON (rc {rc}): {shlex.join(argv)}\n{proc_out[-500:]}")
    if rc != 0 or got.get("errors", 0) or got.get("connect_failures", 0):
        sys.exit(f"bin_test failed (rc {rc}, errors {got.get('errors')}, connect failures "
                 f"{got.get('connect_failures')}): {shlex.join(argv)} {got.get('error_messages')}")
    return got


def run_client(port, shape, duration):
    argv = client_argv(port, shape, duration)
    done = subprocess.run(pinned(argv, ARGS.client_cpus), capture_output=True, text=True, timeout=duration + 90)
    return parse_client(done.stdout, done.returncode, argv)


def start_client(port, shape, duration):
    argv = client_argv(port, shape, duration)
    return argv, subprocess.Popen(pinned(argv, ARGS.client_cpus), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_client(argv, proc, timeout):
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        sys.exit(f"bin_test overran {timeout} s: {shlex.join(argv)}")
    return parse_client(out, proc.returncode, argv)


def wait_fds(gw, target, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        n = gw.fds()
        if n is not None and n >= target:
            return n
        time.sleep(0.05)
    sys.exit(f"the gateway never held {target} descriptors in {timeout} s (has {gw.fds()})")


# ---------------------------------------------------------------- HTTP

class Scraper:
    """GET /metrics on one kept-alive connection; reconnects after an error."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def get(self, path="/metrics"):
        t0 = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            self.conn.request("GET", path)
            r = self.conn.getresponse()
            body = r.read()
            status = r.status
        except (OSError, http.client.HTTPException) as e:
            if self.conn:
                self.conn.close()
            self.conn = None
            return None, str(e).encode(), time.perf_counter() - t0
        return status, body, time.perf_counter() - t0

    def metrics_ok(self):
        status, body, elapsed = self.get()
        return status == 200 and b"gateway_frames_in_total" in body, elapsed, len(body)

    def close(self):
        if self.conn:
            self.conn.close()


class ScrapeLoop(threading.Thread):
    """One GET /metrics a second until stopped (at most `limit` of them)."""

    def __init__(self, port, limit):
        super().__init__(daemon=True)
        self.scraper = Scraper(port)
        self.limit = limit
        self.stopping = threading.Event()
        self.results = []  # (ok, seconds)

    def run(self):
        start = time.monotonic()
        for k in range(self.limit):
            delay = start + k - time.monotonic()
            if delay > 0 and self.stopping.wait(delay):
                break
            if self.stopping.is_set():
                break
            ok, elapsed, _ = self.scraper.metrics_ok()
            self.results.append((ok, elapsed))
        self.scraper.close()


# ---------------------------------------------------------------- formatting

def med(values):
    return statistics.median(values)


def fmt(values, spec=",.0f"):
    return f"{format(med(values), spec)} ({format(min(values), spec)}-{format(max(values), spec)})"


def ratio_line(a_values, b_values, spec=".3f"):
    """Ratio of medians, and the min-max (median) of the ratios paired by repetition."""
    paired = [b / a for a, b in zip(a_values, b_values) if a]
    return (f"{format(med(b_values) / med(a_values), spec)}",
            f"{format(min(paired), spec)}-{format(max(paired), spec)} (median {format(med(paired), spec)})")


def say(text=""):
    print(text, flush=True)


# ---------------------------------------------------------------- 1. workers

def section_workers(results):
    d = ARGS.duration
    shapes = {"a": LOAD, "c": MANY, "d": CONNRATE}
    runs = {(v, s): [] for v in ("w1", "w2") for s in shapes}
    say(f"[{time.strftime('%H:%M:%S')}] == 1. --workers 1 (A) vs --workers 2 (B), (a), (c) and (d),"
        f" {ARGS.reps} reps x {d:g} s, alternating")
    for rep in range(ARGS.reps):
        for scen, shape in shapes.items():
            for variant in ("w1", "w2"):
                gw = Gateway(workers=1 if variant == "w1" else 2)
                c0, w0, t0 = gw.cpu(), gw.worker_cpu(), gw.threads()
                got = run_client(gw.port, shape, d)
                c1, w1, t1 = gw.cpu(), gw.worker_cpu(), gw.threads()
                accepted = gw.stop()
                count = got["connections"] if scen == "d" else got["replies"]
                rate = got["connections_per_s"] if scen == "d" else got["replies_per_s"]
                rec = {"rate": rate, "count": count, "cpu_s": c1 - c0, "elapsed_s": got["duration_s"],
                       "worker_cpu_s": [b - a for a, b in zip(w0, w1)],
                       "threads_s": {k: t1.get(k, 0) - t0.get(k, 0) for k in t1},
                       "accepted": [accepted.get(i) for i in range(gw.workers)]}
                runs[(variant, scen)].append(rec)
                extra = ""
                if variant == "w2":
                    extra = f", accepted per worker {rec['accepted']}, CPU per worker " + \
                            "/".join(f"{x:.2f}" for x in rec["worker_cpu_s"]) + " s"
                say(f"  rep {rep + 1} ({scen}) {variant}: {rate:,.0f}/s, gateway CPU {rec['cpu_s']:.2f} s"
                    f" ({rec['cpu_s'] / max(rec['elapsed_s'], 1e-9):.2f} cores){extra}")
    results["workers"] = {f"{v}_{s}": r for (v, s), r in runs.items()}
    say()
    for scen, unit in (("a", "replies/s"), ("c", "replies/s"), ("d", "connections/s")):
        a = [r["rate"] for r in runs[("w1", scen)]]
        b = [r["rate"] for r in runs[("w2", scen)]]
        rm, rp = ratio_line(a, b)
        say(f"  ({scen}) {unit:13} --workers 1 {fmt(a)}   --workers 2 {fmt(b)}   B/A {rm} (paired {rp})")
        ca = [r["cpu_s"] / r["elapsed_s"] for r in runs[("w1", scen)]]
        cb = [r["cpu_s"] / r["elapsed_s"] for r in runs[("w2", scen)]]
        say(f"      gateway CPU, cores: --workers 1 {fmt(ca, '.2f')}   --workers 2 {fmt(cb, '.2f')}"
            " (master and workers)")
        per = "connection" if scen == "d" else "reply"
        ua = [r["cpu_s"] / r["count"] * 1e6 for r in runs[("w1", scen)]]
        ub = [r["cpu_s"] / r["count"] * 1e6 for r in runs[("w2", scen)]]
        say(f"      gateway CPU per {per}, us: --workers 1 {fmt(ua, '.2f')}   --workers 2 {fmt(ub, '.2f')}")
        for variant in ("w1", "w2"):
            rs = runs[(variant, scen)]
            names = sorted({n for r in rs for n in r["threads_s"]})
            share = {n: med([r["threads_s"].get(n, 0) / max(sum(r["threads_s"].values()), 1e-9) for r in rs])
                     for n in names}
            say(f"      thread shares of the gateway's CPU, {variant}: " + ", ".join(f"{n} {v:.0%}" for n, v in share.items()))
        shares = []
        for r in runs[("w2", scen)]:
            acc = [x or 0 for x in r["accepted"]]
            shares.append(max(acc) / sum(acc) if sum(acc) else float("nan"))
        cpu_shares = [max(r["worker_cpu_s"]) / sum(r["worker_cpu_s"]) for r in runs[("w2", scen)]
                      if sum(r["worker_cpu_s"]) > 0]
        say(f"      spread across the 2 workers: accepted {[r['accepted'] for r in runs[('w2', scen)]]};"
            f" busier worker's share of accepts {fmt(shares, '.2f')}, of worker CPU {fmt(cpu_shares, '.2f')}")
    say()


# ---------------------------------------------------------------- 2. scraping

def section_scrape(results):
    d = ARGS.duration
    runs = {"quiet": [], "scraped": []}
    scrapes = []
    say(f"[{time.strftime('%H:%M:%S')}] == 2. --admin, nobody scraping (A) vs GET /metrics once a second (B), at (a), {ARGS.reps} reps x {d:g} s")
    for rep in range(ARGS.reps):
        for variant in ("quiet", "scraped"):
            gw = Gateway(admin=True)
            loop = None
            if variant == "scraped":
                loop = ScrapeLoop(gw.admin_port, limit=int(d) + 10)
                loop.start()
            c0 = gw.cpu()
            got = run_client(gw.port, LOAD, d)
            c1 = gw.cpu()
            if loop:
                loop.stopping.set()
                loop.join(15)
                scrapes += loop.results
            gw.stop()
            runs[variant].append({"rate": got["replies_per_s"], "cpu_s": c1 - c0,
                                  "scrapes": len(loop.results) if loop else 0,
                                  "scrapes_ok": sum(ok for ok, _ in loop.results) if loop else 0})
            say(f"  rep {rep + 1} {variant}: {got['replies_per_s']:,.0f} replies/s"
                + (f", {len(loop.results)} scrapes, {sum(ok for ok, _ in loop.results)} ok" if loop else ""))
    a = [r["rate"] for r in runs["quiet"]]
    b = [r["rate"] for r in runs["scraped"]]
    rm, rp = ratio_line(a, b)
    n_ok = sum(ok for ok, _ in scrapes)
    say(f"  (a) replies/s: not scraped {fmt(a)}   scraped 1/s {fmt(b)}   B/A {rm} (paired {rp})")
    say(f"  scrapes during the load: {len(scrapes)}, {n_ok} answered 200 with gateway_frames_in_total;"
        f" wall time {fmt([s * 1e3 for _, s in scrapes], '.2f')} ms")

    # One scrape's wall time with 32 and with 10,000 idle connections open.
    timing = {}
    for conns, count, hold in ((32, 100, 4), (IDLE_CONNS, 30, 6)):
        times, sizes = [], []
        for rep in range(ARGS.reps):
            gw = Gateway(admin=True)
            base = gw.fds()
            argv, cp = start_client(gw.port, ["--mode", "idle", "--conns", str(conns), "--pipeline", "1",
                                              "--size", "64"], hold)
            wait_fds(gw, base + conns, 40)
            time.sleep(0.3)
            sc = Scraper(gw.admin_port)
            sc.metrics_ok()  # the connection and the first rendering
            for _ in range(count):
                ok, elapsed, size = sc.metrics_ok()
                if not ok:
                    sys.exit("a scrape failed")
                times.append(elapsed * 1e3)
                sizes.append(size)
            sc.close()
            finish_client(argv, cp, 60)
            gw.stop()
        times.sort()
        timing[conns] = {"median_ms": med(times), "p90_ms": times[int(len(times) * 0.9)],
                         "max_ms": times[-1], "count": len(times), "bytes": med(sizes)}
        say(f"  one GET /metrics with {conns:,} idle connections open: median {med(times):.2f} ms, "
            f"p90 {timing[conns]['p90_ms']:.2f} ms, max {times[-1]:.2f} ms over {len(times)} "
            f"(kept-alive connection; {med(sizes):,.0f} bytes)")

    # The gateway's CPU per scrape, no load: 100 scrapes, then as long with none.
    n = ARGS.scrapes
    per_tick, per_ns, idle_ns = [], [], []
    for rep in range(ARGS.reps):
        gw = Gateway(admin=True)
        sc = Scraper(gw.admin_port)
        sc.metrics_ok()
        time.sleep(0.5)
        c0, s0 = gw.cpu(), sum(gw.threads().values())
        t0 = time.monotonic()
        for k in range(n):
            ok, _, _ = sc.metrics_ok()
            if not ok:
                sys.exit("a scrape failed")
            pause = t0 + (k + 1) * 0.02 - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        window = time.monotonic() - t0
        c1, s1 = gw.cpu(), sum(gw.threads().values())
        time.sleep(window)
        c2, s2 = gw.cpu(), sum(gw.threads().values())
        sc.close()
        gw.stop()
        per_tick.append(((c1 - c0) - (c2 - c1)) / n * 1e6)
        per_ns.append(((s1 - s0) - (s2 - s1)) / n * 1e6)
        idle_ns.append((s2 - s1) / window * 1e3)
        say(f"  rep {rep + 1}: {n} scrapes in {window:.2f} s: gateway CPU {(s1 - s0) * 1e3:.1f} ms, the same "
            f"time idle {(s2 - s1) * 1e3:.1f} ms (schedstat); utime+stime {(c1 - c0) * 1e3:.0f} vs "
            f"{(c2 - c1) * 1e3:.0f} ms")
    say(f"  gateway CPU per scrape, no load: {fmt(per_ns, '.0f')} us (schedstat, ns clock); "
        f"{fmt(per_tick, '.0f')} us (utime+stime, {1e6 / TICK / n:.0f} us quantum); idle CPU "
        f"{fmt(idle_ns, '.2f')} ms/s")
    results["scrape"] = {"runs": runs, "scrapes": len(scrapes), "scrapes_ok": n_ok,
                         "scrape_ms_under_load": [s * 1e3 for _, s in scrapes], "timing": timing,
                         "cpu_per_scrape_us": per_ns, "cpu_per_scrape_ticks_us": per_tick,
                         "idle_cpu_ms_per_s": idle_ns}
    say()


# ---------------------------------------------------------------- 3. per connection

def section_conn(results):
    say(f"[{time.strftime('%H:%M:%S')}] == 3. per connection: {IDLE_CONNS:,} idle connections, memory and idle CPU; sparse traffic; {ARGS.reps} reps")
    mem = []
    for rep in range(ARGS.reps):
        gw = Gateway()
        time.sleep(0.5)
        pid = gw.pids[0]
        rss0, fds0 = status_kib(pid, "VmRSS"), gw.fds()
        e0, u0 = sum(gw.threads().values()), time.monotonic()
        time.sleep(3)
        empty = (sum(gw.threads().values()) - e0) / (time.monotonic() - u0)
        slab0, caches0 = slab_kib(), slab_bytes()
        argv, cp = start_client(gw.port, ["--mode", "idle", "--conns", str(IDLE_CONNS), "--pipeline", "1",
                                          "--size", "64"], 10)
        wait_fds(gw, fds0 + IDLE_CONNS, 40)
        time.sleep(0.5)
        rss1, slab1, caches1 = status_kib(pid, "VmRSS"), slab_kib(), slab_bytes()
        c0, t0 = sum(gw.threads().values()), time.monotonic()
        time.sleep(3)
        c1, t1 = sum(gw.threads().values()), time.monotonic()
        got = finish_client(argv, cp, 60)
        gw.stop()
        held = got.get("alive_after", IDLE_CONNS)
        rec = {"rss0_kib": rss0, "rss_held_kib": rss1, "bytes_per_conn": (rss1 - rss0) * 1024 / IDLE_CONNS,
               "slab_bytes_per_socket": (slab1 - slab0) * 1024 / (2 * IDLE_CONNS),
               "socket_caches_per_socket": {c: (caches1.get(c, 0) - caches0.get(c, 0)) / (2 * IDLE_CONNS)
                                            for c in SOCKET_CACHES},
               "idle_cpu_ms_per_s_empty": empty * 1e3, "idle_cpu_ms_per_s_held": (c1 - c0) / (t1 - t0) * 1e3,
               "idle_cpu_us_per_conn_s": ((c1 - c0) / (t1 - t0) - empty) / IDLE_CONNS * 1e6, "alive_after": held}
        mem.append(rec)
        say(f"  rep {rep + 1}: VmRSS {rss0:,} -> {rss1:,} KiB: {rec['bytes_per_conn']:,.0f} B per connection; "
            f"slab +{slab1 - slab0:,} KiB over {2 * IDLE_CONNS:,} sockets (both ends): "
            f"{rec['slab_bytes_per_socket']:,.0f} B each (socket caches "
            f"{sum(rec['socket_caches_per_socket'].values()):,.0f} B); idle gateway CPU {empty * 1e3:.2f} ms/s with none, "
            f"{rec['idle_cpu_ms_per_s_held']:.2f} ms/s holding them")

    # Slots: VmRSS at start with a table 4x larger.
    slots = []
    for rep in range(min(ARGS.reps, 3)):
        row = []
        for n in (100_000, 400_000):
            gw = Gateway(extra=["--max-connections", str(n)])
            time.sleep(0.5)
            row.append(status_kib(gw.pids[0], "VmRSS"))
            gw.stop()
        slots.append(row)
    slot_bytes = [(b - a) * 1024 / 300_000 for a, b in slots]
    say(f"  VmRSS at start, --max-connections 100,000 vs 400,000: {[tuple(r) for r in slots]} KiB: "
        f"{fmt(slot_bytes, '.1f')} B per slot reserved and touched at start")

    # Sparse traffic: 10,000 connections, each one 512 B message a second / every 10 s.
    sparse = {}
    for rate in (IDLE_CONNS // 10, IDLE_CONNS, 3 * IDLE_CONNS):
        recs = []
        for rep in range(ARGS.reps):
            gw = Gateway(admin=True)
            fds0 = gw.fds()
            argv, cp = start_client(gw.port, ["--mode", "load", "--conns", str(IDLE_CONNS), "--pipeline", "1",
                                              "--size", "512", "--rate", str(rate)], 12)
            wait_fds(gw, fds0 + IDLE_CONNS, 40)
            time.sleep(1.5)
            sc = Scraper(gw.admin_port)
            f0 = json.loads(sc.get("/stats")[1])["framesIn"]
            c0, th0, w0 = gw.cpu(), gw.threads(), time.monotonic()
            time.sleep(6)
            f1 = json.loads(sc.get("/stats")[1])["framesIn"]
            c1, th1, w1 = gw.cpu(), gw.threads(), time.monotonic()
            sc.close()
            got = finish_client(argv, cp, 60)
            gw.stop()
            frames = f1 - f0
            cpu_ns = sum(th1.values()) - sum(th0.values())
            recs.append({"frames": frames, "frames_per_s": frames / (w1 - w0), "window_s": w1 - w0, "cpu_s": cpu_ns, "cpu_ticks_s": c1 - c0,
                         "us_per_msg": cpu_ns / frames * 1e6, "cores": cpu_ns / (w1 - w0),
                         "threads_s": {k: th1.get(k, 0) - th0.get(k, 0) for k in th1},
                         "client_replies_per_s": got["replies_per_s"]})
            say(f"  rep {rep + 1} sparse {rate:,}/s over {IDLE_CONNS:,} connections: {frames:,} frames in "
                f"{w1 - w0:.1f} s, gateway CPU {cpu_ns:.2f} s ({cpu_ns / (w1 - w0):.2f} cores): "
                f"{cpu_ns / frames * 1e6:.1f} us per message")
        sparse[rate] = recs
    results["conn"] = {"memory": mem, "slots_kib": slots, "slot_bytes": slot_bytes,
                       "sparse": {str(k): v for k, v in sparse.items()}}
    say()
    b = [r["bytes_per_conn"] for r in mem]
    k = [r["slab_bytes_per_socket"] for r in mem]
    i = [r["idle_cpu_us_per_conn_s"] for r in mem]
    say(f"  VmRSS per idle connection {fmt(b)} B; kernel slab per socket {fmt(k)} B (machine-wide, noisy); "
        f"idle CPU {fmt(i, '.3f')} us per connection-second")
    say("  of which socket caches (slabinfo, per socket): " + ", ".join(
        f"{c} {med([r['socket_caches_per_socket'][c] for r in mem]):,.0f} B" for c in SOCKET_CACHES)
        + f"; sum {fmt([sum(r['socket_caches_per_socket'].values()) for r in mem])} B")
    for rate, recs in sparse.items():
        us = [r["us_per_msg"] for r in recs]
        names = sorted({n for r in recs for n in r["threads_s"]})
        share = {n: med([r["threads_s"].get(n, 0) / r["cpu_s"] for r in recs]) for n in names}
        say(f"  {rate:,} messages/s offered over {IDLE_CONNS:,} connections (carried "
            f"{fmt([r['frames_per_s'] for r in recs])}/s): {fmt(us, '.1f')} us gateway CPU per message;"
            f" {fmt([r['cores'] for r in recs], '.2f')} cores;"
            f" thread shares " + ", ".join(f"{n} {s:.0%}" for n, s in share.items()))
    say()


# ---------------------------------------------------------------- projection

def busiest_share(recs):
    """Median share of the gateway's CPU taken by its busiest thread (one thread is at most one core)."""
    return med([max(r["threads_s"].values()) / max(sum(r["threads_s"].values()), 1e-9) for r in recs])


def projection(results):
    """On paper: what one box of --box-cores cores and --box-mem-gib GiB would hold, from the figures
    measured here. Assumptions (none of them measured on this 2-core VM):
    - 16 GiB kept for the OS; every connection idle-sized (a 512 B message every 1-10 s holds socket
      buffers only while it passes); kernel memory per socket = this run's slab growth per socket;
    - 70 % of the cores for the gateway; the rest for softirq, NIC interrupts and the OS (loopback
      hides the NIC's cost, and each side's kernel work is partly charged to the other);
    - CPU per message as measured with one worker at 1,000 to 30,000 messages/s (it falls as the
      rate rises); the cheapest point is used as the optimistic end, the 10,000/s point as the
      pessimistic one; costs add linearly over workers (not shown: 2 cores cannot show it);
    - at sparse load one thread (Monitor, doing the others' work inline) carries nearly all of a
      worker's work, so a worker is held to one core: the workers count is sized from that."""
    if "conn" not in results or "workers" not in results:
        return
    conn, work = results["conn"], results["workers"]
    user = med([r["bytes_per_conn"] for r in conn["memory"]])
    kernel = med([r["slab_bytes_per_socket"] for r in conn["memory"]])
    slot = max(0.0, med(conn["slot_bytes"]))
    idle_us = max(0.0, med([r["idle_cpu_us_per_conn_s"] for r in conn["memory"]]))
    per_reply_a = med([r["cpu_s"] / r["count"] * 1e6 for r in work["w1_a"]])
    per_conn_d = med([r["cpu_s"] / r["count"] * 1e6 for r in work["w1_d"]])
    per_conn_d2 = med([r["cpu_s"] / r["count"] * 1e6 for r in work["w2_d"]])
    share_d = busiest_share(work["w1_d"])
    sparse = {int(k): (med([r["us_per_msg"] for r in v]), busiest_share(v)) for k, v in conn["sparse"].items()}
    mem_gib, cores, reserve_gib, usable = ARGS.box_mem_gib, ARGS.box_cores, 16, 0.7
    per = user + kernel + slot
    by_mem = (mem_gib - reserve_gib) * 2**30 / per
    budget = cores * usable
    best = min(us for us, _ in sparse.values())
    worst = sparse[IDLE_CONNS][0]
    top_share = max(sh for _, sh in sparse.values())
    w16 = 16
    w_all = int(budget)
    say("== projection for one box (on paper; the assumptions are the docstring of projection())")
    say(f"  memory per idle connection: {user:,.0f} B gateway VmRSS + {kernel:,.0f} B kernel slab + {slot:,.1f} B "
        f"table slot = {per:,.0f} B -> {mem_gib - reserve_gib} GiB holds {by_mem / 1e6:,.1f} M idle connections")
    say(f"  CPU: {cores} cores x {usable:.0%} = {budget:.1f} cores for the gateway; idle connections "
        f"{idle_us:.3f} us per connection-second (negligible)")
    say("  CPU per message, one worker: " + ", ".join(f"{us:.1f} us at {k:,}/s" for k, (us, _) in sorted(sparse.items()))
        + f"; busiest thread (Monitor) {top_share:.0%} at most")
    out = {"user_b": user, "kernel_b": kernel, "slot_b": slot, "per_conn_b": per, "by_mem": by_mem,
           "idle_us": idle_us, "per_reply_a_us": per_reply_a, "per_conn_d_us": per_conn_d,
           "per_conn_d_w2_us": per_conn_d2, "budget_cores": budget, "best_us": best, "worst_us": worst,
           "rates": {}}
    for label, workers in ((f"{w16} workers x 4 threads", w16), (f"{w_all} workers x 4 threads", w_all)):
        use = min(budget, workers * 1.0)  # a worker's busiest thread is one core at most
        lo, hi = use * 1e6 / worst, use * 1e6 / best
        say(f"  {label}: at most {use:.0f} cores busy -> {lo / 1e6:,.2f}-{hi / 1e6:,.2f} M messages/s "
            f"({worst:.1f}-{best:.1f} us each; {hi / workers / 1e3:,.0f} k/s per worker at the optimistic end, "
            f"measured up to {max(sparse) / 1e3:,.0f} k/s)")
        for period in (10, 1):
            c_lo = min(use * 1e6 / (worst / period + idle_us), by_mem)
            c_hi = min(use * 1e6 / (best / period + idle_us), by_mem)
            say(f"      one 512 B message per connection every {period:>2} s: {c_lo / 1e6:,.1f}-{c_hi / 1e6:,.1f} M "
                f"connections (memory bound {by_mem / 1e6:,.1f} M), {c_hi / workers / 1e3:,.0f} k per worker")
            out["rates"][f"{workers}w_{period}s"] = {"workers": workers, "cores": use, "msgs_lo": lo,
                                                     "msgs_hi": hi, "conns_lo": c_lo, "conns_hi": c_hi}
    say(f"  (at (a)'s pipelined {per_reply_a:.2f} us per reply the CPU bound would be far above the memory bound:"
        f" {budget * 1e6 / per_reply_a / 1e6:,.0f} M messages/s; sparse traffic does not batch like that)")
    accept_worker = 1e6 / (per_conn_d * share_d)
    held = min(by_mem, out["rates"][f"{w_all}w_10s"]["conns_hi"])
    for workers in (w16, w_all):
        rate = min(workers * accept_worker, budget * 1e6 / per_conn_d)
        say(f"  accepts: {per_conn_d:.1f} us per connection at (d) ({per_conn_d2:.1f} with 2 workers), Monitor "
            f"{share_d:.0%}: {workers} workers {rate / 1e3:,.0f} k/s -> {held / rate:,.0f} s to take back "
            f"{held / 1e6:,.1f} M connections")
    out.update({"accept_worker": accept_worker, "busiest_share_d": share_d})
    results["projection"] = out


# ---------------------------------------------------------------- 4. the master's scrape

def section_master_scrape(results):
    n = ARGS.scrapes
    counts = (1, 2, 8)
    runs = {k: [] for k in counts}
    say(f"[{time.strftime('%H:%M:%S')}] == 4. one GET /metrics: a single gateway's own against a master's with 2 and 8"
        f" workers, {ARGS.reps} reps x {n} scrapes, alternating")
    for rep in range(ARGS.reps):
        for k in counts:
            gw = Gateway(workers=k, admin=True)
            deadline = time.time() + 30
            while k > 1 and "admin endpoint for the box" not in gw.read_log() and time.time() < deadline:
                time.sleep(0.05)
            scraper = Scraper(gw.admin_port)
            ok, _, size = scraper.metrics_ok()  # the first builds the registries
            idle0 = gw.cpu()
            time.sleep(1.0)
            idle = gw.cpu() - idle0
            c0, t0 = gw.cpu(), time.perf_counter()
            walls = []
            for _ in range(n):
                good, elapsed, _ = scraper.metrics_ok()
                ok = ok and good
                walls.append(elapsed)
            took = time.perf_counter() - t0
            cpu = gw.cpu() - c0 - idle * took
            scraper.close()
            gw.stop()
            rec = {"ok": ok, "bytes": size, "wall_ms": med(walls) * 1e3, "cpu_ms": cpu / n * 1e3}
            runs[k].append(rec)
            say(f"  rep {rep + 1} workers {k}: {'200 with every series' if ok else 'FAILED'}, {size:,} bytes,"
                f" median {rec['wall_ms']:.2f} ms, CPU {rec['cpu_ms']:.2f} ms per scrape (every process)")
    results["masterscrape"] = {str(k): r for k, r in runs.items()}
    say()
    base_w = [r["wall_ms"] for r in runs[1]]
    base_c = [r["cpu_ms"] for r in runs[1]]
    for k in counts[1:]:
        w = [r["wall_ms"] for r in runs[k]]
        c = [r["cpu_ms"] for r in runs[k]]
        rm, rp = ratio_line(base_w, w)
        say(f"  {k} workers: wall ms {fmt(w, '.2f')} vs single {fmt(base_w, '.2f')}: ratio {rm} (paired {rp})")
        rm, rp = ratio_line(base_c, c)
        say(f"             CPU ms {fmt(c, '.2f')} vs single {fmt(base_c, '.2f')}: ratio {rm} (paired {rp})")
    say()


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--duration", type=float, default=3)
    ap.add_argument("--sections", default="workers,scrape,conn,masterscrape")
    ap.add_argument("--scrapes", type=int, default=100, help="scrapes per CPU-per-scrape measurement")
    ap.add_argument("--box-cores", type=int, default=64)
    ap.add_argument("--box-mem-gib", type=int, default=256)
    ap.add_argument("--gateway", default=os.environ.get("PERF_GATEWAY", os.path.join(ROOT, ".build-perf/release/gateway")))
    ap.add_argument("--bin-test", default=os.environ.get("PERF_BIN_TEST", os.path.join(ROOT, ".build-perf/release/bin_test")))
    ap.add_argument("--server-cpus", default=None, help="run the gateway under taskset -c LIST")
    ap.add_argument("--client-cpus", default=None, help="run bin_test under taskset -c LIST")
    ap.add_argument("--json-out", default=None, help="write every raw figure here")
    ap.add_argument("--from-json", default=None, help="print the projection from --json-out files (FILE[,FILE...]: later ones replace earlier sections); measure nothing")
    ARGS = ap.parse_args()
    if ARGS.reps < 1:
        sys.exit("--reps must be at least 1")
    for b in (ARGS.gateway, ARGS.bin_test):
        if not os.access(b, os.X_OK):
            sys.exit(f"missing binary {b}: swift build -c release --product gateway|bin_test --scratch-path .build-perf")
    # The idle client and the gateway each hold 10,000 descriptors: use the whole allowance.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if ARGS.from_json:
        merged = {}
        for path in ARGS.from_json.split(","):  # later files replace earlier files' sections
            with open(path) as f:
                merged.update({k: v for k, v in json.load(f).items() if k in ("workers", "scrape", "conn")})
        projection(merged)
        return
    sections = ARGS.sections.split(",")
    started = time.time()
    say(f"workers_ab: {shlex.join(sys.argv)}; nproc {os.cpu_count()}, open files {hard}, "
        f"load {loadavg()}, pinning server {ARGS.server_cpus or 'none'} client {ARGS.client_cpus or 'none'}")
    results = {"argv": sys.argv, "load_start": loadavg()}
    if "workers" in sections:
        section_workers(results)
    if "scrape" in sections:
        section_scrape(results)
    if "conn" in sections:
        section_conn(results)
    if "masterscrape" in sections:
        section_master_scrape(results)
    if "workers" in results and "conn" in results:
        projection(results)
    results["load_end"] = loadavg()
    results["minutes"] = (time.time() - started) / 60
    say(f"done in {results['minutes']:.1f} min; load {loadavg()}")
    if ARGS.json_out:
        with open(ARGS.json_out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
