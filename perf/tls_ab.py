#!/usr/bin/env python3
"""Issue 19's figures: the gateway terminating TLS itself against HAProxy terminating TLS (`bind ...
ssl`, `mode tcp`) in front of the lean C echo server (perf/peers/c_echo), with the same ECDSA P-256
certificate, run side by side and alternating (A B A B ...), every reply checked by bin_test:

  load      32 x 16 x 512 B closed loop, replies/s
  pingpong  one connection, one request in flight, p50 latency (us)
  connrate  16 at a time: connect, full TLS handshake, one 64 B echo, close; connections/s
  idle      VmRSS per idle TLS connection (N connections opened at once by bin_test, one echo each,
            held: the peak, handshakes in flight included), against the same gateway's plain listener;
            HAProxy's (front + back side) beside it
  settled   the same with the N connections opened one after another (Python's ssl): what an idle
            TLS connection holds once no handshake is in flight (not in the default sections)

    perf/tls_ab.py [--reps 5] [--duration 3] [--idle 3000] [--sections load,pingpong,connrate,idle]

Binaries: .build-perf/release/{gateway,bin_test} (swift build -c release --product gateway
--scratch-path .build-perf, the same for bin_test) or --gateway/--bin-test; c_echo is compiled
from perf/peers/c_echo/echo.c into .build-perf/c_echo. Traffic stays on 127.0.0.0/8; every wait
is bounded. Prints medians (min-max) and the ratios gateway / HAProxy of the medians.
"""
import argparse
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "perf"))
from common import free_port, rss_kib, wait_port  # noqa: E402
from runner import HOST, haproxy_config  # noqa: E402  (the same HAProxy as the other scenarios)
SOURCES = ",".join(f"127.0.0.{i}" for i in range(2, 10))
CLIENT = {
    "load": ["--mode", "load", "--conns", "32", "--pipeline", "16", "--size", "512"],
    "pingpong": ["--mode", "pingpong", "--size", "512"],
    "connrate": ["--mode", "connrate", "--conns", "16", "--size", "64", "--source", SOURCES],
}


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class Bench:
    def __init__(self, args):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="perf-tls-")
        self.cert, self.key = f"{self.dir}/cert.pem", f"{self.dir}/key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                        "-keyout", self.key, "-out", self.cert], check=True, capture_output=True)
        with open(f"{self.dir}/combined.pem", "w") as f:
            f.write(open(self.cert).read() + open(self.key).read())
        self.locks = {}

    def gateway(self):
        tls, plain = free_port(), free_port()
        # The stats line every second: its "lock waits W of T" is the transport lock's contention.
        self.stats = open(f"{self.dir}/gateway.log", "w")
        p = subprocess.Popen([self.args.gateway, "--listen", f"tls://127.0.0.1:{tls}", "--listen", f"127.0.0.1:{plain}",
                              "--tls-cert", self.cert, "--tls-key", self.key, "--max-connections", "30000",
                              "--stats-interval", "1", "--tls-max-handshakes", "30000"],
                             stdout=subprocess.DEVNULL, stderr=self.stats)
        wait_port(tls)
        return [p], p, tls, plain

    def haproxy(self):
        front, back = free_port(), free_port()
        echo = subprocess.Popen([self.args.c_echo, "--host", "127.0.0.1", "--port", str(back)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cfg = f"{self.dir}/haproxy.cfg"
        with open(cfg, "w") as f:  # runner.py's HAProxy, its frontend terminating TLS (HAProxy's minimum: 1.2)
            f.write(haproxy_config(front, back).replace(f"bind {HOST}:{front}",
                                                        f"bind {HOST}:{front} ssl crt {self.dir}/combined.pem"))
        wait_port(back)
        h = subprocess.Popen(["haproxy", "-db", "-f", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(front)
        return [h, echo], h, front, None

    def client(self, port, extra, seconds):
        cmd = [self.args.bin_test, "client", "--port", str(port), "--tls", "--tls-ca", self.cert, "--tls-sni",
               "localhost", "--json", "--quiet", "--duration", str(seconds)] + extra
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
        line = [l for l in out.stdout.splitlines() if l.startswith("{")]
        if not line:
            raise RuntimeError(f"{' '.join(cmd)}: no JSON ({out.stderr[-300:]})")
        report = json.loads(line[-1])
        if not report["ok"]:
            raise RuntimeError(f"{' '.join(cmd)}: {report['error_messages'][:3]}")
        return report

    def measure(self, section, which):
        procs, main, port, plain = self.gateway() if which == "gateway" else self.haproxy()
        try:
            if section == "idle":
                return self.idle(main, port, plain)
            if section == "settled":
                return (self.settled(main, port, True), self.settled(main, plain, False) if plain else None)
            report = self.client(port, CLIENT[section], self.args.duration)
            if which == "gateway":
                self.contention(section)
            return {"load": report["replies_per_s"], "pingpong": report["latency_us"]["p50"],
                    "connrate": report.get("connections_per_s", 0)}[section]
        finally:
            stop(procs)

    def contention(self, section):
        """Transport-lock acquisitions that found it held, over those the stats lines counted so far."""
        self.stats.flush()
        waits = takes = 0
        for line in open(f"{self.dir}/gateway.log"):
            m = re.search(r"lock waits (\d+) of (\d+)", line)
            if m:
                waits, takes = waits + int(m.group(1)), takes + int(m.group(2))
        self.locks.setdefault(section, []).append((waits, takes))

    def settled(self, server, port, tls):
        """Bytes of RSS per idle connection opened one after another (no handshakes in flight at once):
        N connections from Python's ssl, one 530-byte echo each, held while RSS is read."""
        import ssl
        ctx = ssl.create_default_context(cafile=self.cert)
        frame = bytes([0, 0, 2, 18]) + bytes(526)
        before = rss_kib(server.pid)
        held = []
        for _ in range(self.args.idle):
            c = socket.create_connection(("127.0.0.1", port), timeout=30)
            if tls:
                c = ctx.wrap_socket(c, server_hostname="localhost")
            c.sendall(frame)
            got = b""
            while len(got) < len(frame):
                got += c.recv(4096)
            held.append(c)
        time.sleep(1)
        after = rss_kib(server.pid)
        for c in held:
            c.close()
        return (after - before) * 1024 / self.args.idle

    def idle(self, server, tls_port, plain_port):
        """KiB of the server's RSS per idle connection: N connections held while sampling."""
        def held(port, tls):
            before = rss_kib(server.pid)
            cmd = [self.args.bin_test, "client", "--port", str(port), "--mode", "idle", "--conns",
                   str(self.args.idle), "--threads", "2", "--duration", "4", "--grace", "30", "--quiet", "--json"]
            if tls:
                cmd += ["--tls"]
            c = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            peak = before
            deadline = time.monotonic() + 60
            while c.poll() is None and time.monotonic() < deadline:
                peak = max(peak, rss_kib(server.pid))
                time.sleep(0.1)
            out, _ = c.communicate(timeout=30)
            report = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
            if report["alive_after"] != self.args.idle:
                raise RuntimeError(f"idle: {report['alive_after']} of {self.args.idle} survived")
            return (peak - before) * 1024 / self.args.idle
        tls = held(tls_port, True)
        plain = held(plain_port, False) if plain_port else None
        return (tls, plain)


def summary(values):
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--duration", type=float, default=3)
    ap.add_argument("--idle", type=int, default=3000)  # under runner.py's HAProxy maxconn (4096)
    ap.add_argument("--sections", default="load,pingpong,connrate,idle")
    ap.add_argument("--gateway", default=os.environ.get("PERF_GATEWAY", f"{ROOT}/.build-perf/release/gateway"))
    ap.add_argument("--bin-test", default=os.environ.get("PERF_BIN_TEST", f"{ROOT}/.build-perf/release/bin_test"))
    ap.add_argument("--c-echo", default=f"{ROOT}/.build-perf/c_echo")
    args = ap.parse_args()
    args.reps = max(3, args.reps)
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    if not os.path.exists(args.c_echo):
        os.makedirs(os.path.dirname(args.c_echo), exist_ok=True)
        subprocess.run(["cc", "-O2", "-pthread", "-o", args.c_echo, f"{ROOT}/perf/peers/c_echo/echo.c"], check=True)
    bench = Bench(args)
    print(f"# perf/tls_ab.py --reps {args.reps} --duration {args.duration} --idle {args.idle}; "
          f"{os.cpu_count()} CPUs; {subprocess.run(['openssl', 'version'], capture_output=True, text=True).stdout.strip()}; "
          f"{subprocess.run(['haproxy', '-v'], capture_output=True, text=True).stdout.splitlines()[0]}")
    for section in args.sections.split(","):
        if section == "settled":
            runs = [bench.measure("settled", "gateway") for _ in range(args.reps)]
            hap = [bench.measure("settled", "haproxy")[0] for _ in range(args.reps)]
            tls, plain = [r[0] for r in runs], [r[1] for r in runs]
            print(f"settled idle, bytes per connection ({args.idle} opened one by one): gateway TLS {summary(tls)}, "
                  f"gateway plain (after the TLS ones, slots reused) {summary(plain)}; HAProxy {summary(hap)}")
            continue
        if section == "idle":
            tls, plain = [], []
            for _ in range(args.reps):
                t, p = bench.measure("idle", "gateway")
                tls.append(t)
                plain.append(p)
            hap = [bench.measure("idle", "haproxy")[0] for _ in range(args.reps)]
            print(f"idle, bytes per connection ({args.idle} connections): gateway TLS {summary(tls)}, "
                  f"gateway plain {summary(plain)}, TLS extra {statistics.median(tls) - statistics.median(plain):.0f}; "
                  f"HAProxy (front + back) {summary(hap)}")
            continue
        a, b, paired = [], [], []
        for _ in range(args.reps):
            a.append(bench.measure(section, "gateway"))
            b.append(bench.measure(section, "haproxy"))
            paired.append(a[-1] / b[-1] if b[-1] else float("nan"))
        unit = {"load": "replies/s", "pingpong": "p50 us", "connrate": "connections/s"}[section]
        print(f"{section} ({unit}): gateway {summary(a)}, HAProxy+c_echo {summary(b)}, "
              f"ratio {statistics.median(a) / statistics.median(b):.2f} (paired {min(paired):.2f}-{max(paired):.2f})")
        locks = bench.locks.get(section, [])
        if locks:
            print(f"    gateway transport-lock waits / acquisitions per run: "
                  + ", ".join(f"{w}/{t}" for w, t in locks))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
