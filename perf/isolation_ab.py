#!/usr/bin/env python3
"""Issue 16's performance checks: two builds side by side, alternating run by run (A B A B ...).

A is the baseline build, B the build under test; each is a directory holding release `gateway`
and `bin_test` binaries. Every set-up is started fresh for every run on 127.0.0.1 with ports of
its own, as perf/runner.py does. Sections (--sections, comma-separated):

  echo      (a)'s shape: gateway with its echo handler, `bin_test client --conns 32 --pipeline 16
            --size 512`, replies/s.
  forward   (h)'s load shape: client -> `gateway --upstream` -> `bin_test core`, 32 x 16 x 512 B,
            replies/s. Measuring starts once a 5-request ping-pong gets every reply (runner.py's probe).
  push      (j): 10,000 clients (`bin_test client --mode push --push-scope all`) log in on one access
            gateway in front of `bin_test core --push-rate 200 (--push-rate) --push-scope all --push-after 3`,
            deliveries/s over the client's window (it opens at the first push), and the push latency
            (core's send stamp to the client's read); slow consumers the gateway closed, its peak VmHWM.
  witness   a witness `bin_test client --mode pingpong --conns 1 --size 64` on a gateway with
            `--upstream-links 1` in front of `bin_test core`, alone and with a non-reader on the same
            gateway (this script run as `--nonreader PORT SECONDS`: connects, sends 60 KB frames the
            whole time, never reads; reconnects when closed, or with --nonreader-once stays away once
            closed). p50/p99/max round trip, replies, errors. --witness-control adds the witness beside
            the same sender reading its replies (what the bulk traffic alone costs the witness).
  mallocs-echo, mallocs-forward, mallocs-push (not in the default set)
            allocations in the real gateway process under load: the gateway runs with
            perf/malloc_count.c preloaded (LD_PRELOAD; every malloc, calloc, realloc and aligned
            allocation of every thread counted in /dev/shm/malloc_count.PID) and `--admin`; over a
            window in the middle of the load the script reads the counter and /metrics, and prints
            mallocs per echoed frame (gateway_frames_in_total), per forwarded request
            (gateway_forwarded_total up; each one's reply comes down too) and per delivered push
            (gateway_push_deliveries_total; --alloc-push-conns clients, --alloc-push-rate broadcasts/s),
            with the idle rate (one second before the load) beside it.

The load tool is one `bin_test` for both builds (--client-bin-test, default B's): its sources are the
same in both builds, so only the servers differ. Each build's `bin_test core` is its own (the link
protocol may differ between builds). For each figure it prints the median (min-max) of A and B, the
ratio B/A of the medians, and the ratios paired by repetition; --json-out keeps every run.

    perf/isolation_ab.py --a DIR_A --b DIR_B [--reps 5] [--duration 3] [--sections echo,forward,push,witness]

Python's standard library only. Traffic stays on 127.0.0.0/8; every wait is bounded. The push
section holds 10,000 descriptors in the client and as many in the gateway (limit 20,000 each).
"""
import argparse
import json
import os
import re
import resource
import shlex
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

from common import cpu_seconds, free_port, loadavg, status_kib

HOST = "127.0.0.1"
LOAD = ["--mode", "load", "--conns", "32", "--pipeline", "16", "--size", "512"]
PUSH_CONNS = 10_000
BROADCAST_RATE = 200
PUSH_AFTER_S = 3
NONREADER_FRAME = 60 * 1024  # total frame length, header included
ARGS = None


# ---------------------------------------------------------------- the non-reader

def nonreader(port, seconds, reads=False, once=False):
    """Connects, sends 60 KB echo frames (cmd 1) for `seconds`, never reads. When the gateway closes
    it, connects again. Prints one JSON line: bytes and frames sent, connections, closes seen.
    With `reads` (the control), a second thread reads and discards everything that comes back.
    With `once`, it does not reconnect: once closed, it stays away for the rest of the run."""
    import threading
    got = [0]

    def drain(sock):
        try:
            while True:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    return
                got[0] += len(chunk)
        except OSError:
            return
    body = bytes(NONREADER_FRAME - 18)
    sent = frames = connects = closes = 0
    seq = 0
    end = time.monotonic() + seconds
    s = None
    pending = b""
    while time.monotonic() < end:
        if s is None and once and connects:
            time.sleep(0.05)
            continue
        if s is None:
            try:
                s = socket.create_connection((HOST, port), timeout=1)
                if reads:
                    threading.Thread(target=drain, args=(s,), daemon=True).start()
                else:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # read nothing, hold little
                s.settimeout(0.2)
                connects += 1
                pending = b""
            except OSError:
                time.sleep(0.01)
                continue
        if not pending:
            seq += 1
            pending = struct.pack(">IIHII", NONREADER_FRAME, seq, 1, 0, 0) + body
        try:
            n = s.send(pending)
            sent += n
            pending = pending[n:]
            if not pending:
                frames += 1
        except socket.timeout:
            continue  # the gateway is not reading us now: keep trying until the end
        except OSError:
            closes += 1
            s.close()
            s = None
            time.sleep(0.01)
    if s is not None:
        s.close()
    print(json.dumps({"bytes_sent": sent, "frames_sent": frames, "connects": connects, "closes": closes,
                      "bytes_read": got[0]}))


# ---------------------------------------------------------------- processes

class Proc:
    """One server process, logs in the run directory; ready once it accepts a connection."""

    def __init__(self, name, argv, port, tag):
        self.name, self.argv, self.port = name, argv, port
        self.log = os.path.join(ARGS.logdir, f"{tag}.{name}.log")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=open(self.log, "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_accepting(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): {self.tail()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    pass
                time.sleep(0.2)
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} not accepting on {self.port} after {timeout:.0f} s")

    def tail(self, n=4):
        try:
            with open(self.log, errors="replace") as f:
                return " | ".join(f.read().splitlines()[-n:])
        except OSError:
            return ""

    def text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def stop(self):
        """SIGTERM, SIGKILL after 10 s; returns (exit code, killed)."""
        if self.proc.poll() is not None:
            return self.proc.returncode, False
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10), False
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            return self.proc.returncode, True


def client_argv(port, flags):
    return [ARGS.client_bin_test, "client", "--host", HOST, "--port", str(port)] + flags + ["--json", "--quiet"]


def parse_json(text):
    start = text.find("{")
    if start < 0:
        return None
    try:
        return json.loads(text[start:])
    except ValueError:
        return None


def links_up(port, timeout=15.0):
    """runner.py's probe: a 5-request ping-pong through the set-up with every reply and no error."""
    probe = client_argv(port, ["--mode", "pingpong", "--conns", "1", "--size", "64", "--count", "5",
                               "--duration", "2", "--grace", "1"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            res = subprocess.run(probe, capture_output=True, text=True, timeout=10)
            got = parse_json(res.stdout) or {}
            if res.returncode == 0 and got.get("errors") == 0:
                return
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"no clean ping-pong through {HOST}:{port} within {timeout:.0f} s")


def run_client(argv, limit, server_pids, cpu_from_s=0.0, hwm_pid=None):
    """Runs the load tool to its end (killed past `limit` s); returns (json or None, exit code, CPU
    cores of the server processes from `cpu_from_s` seconds after the start, wall s, timed out)."""
    t0 = time.monotonic()
    out = tempfile.TemporaryFile()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    cpu0, c0 = [cpu_seconds(p) for p in server_pids], t0
    rebased = cpu_from_s <= 0
    timed_out = False
    while proc.poll() is None:
        now = time.monotonic()
        if now - t0 > limit:
            timed_out = True
            proc.kill()
            proc.wait()
            break
        if not rebased and now - t0 >= cpu_from_s:
            cpu0, c0, rebased = [cpu_seconds(p) for p in server_pids], now, True
        time.sleep(0.05)
    cpu1, c1 = [cpu_seconds(p) for p in server_pids], time.monotonic()
    cores = None
    if None not in cpu0 and None not in cpu1 and c1 > c0:
        cores = [(b - a) / (c1 - c0) for a, b in zip(cpu0, cpu1)]  # per process; the gateway is last
    out.seek(0)
    return parse_json(out.read().decode(errors="replace")), proc.returncode, cores, c1 - t0, timed_out


# ---------------------------------------------------------------- one run per section

def bins(side):
    d = ARGS.a if side == "A" else ARGS.b
    return os.path.join(d, "gateway"), os.path.join(d, "bin_test")


def run_echo(side, rep):
    gateway, _ = bins(side)
    port = free_port()
    gw = Proc("gateway", [gateway, "--host", HOST, "--port", str(port)], port, f"echo-{side}-r{rep}")
    try:
        gw.wait_accepting()
        got, code, cores, wall, to = run_client(client_argv(port, LOAD + ["--duration", str(ARGS.duration)]),
                                                ARGS.duration + 60, [gw.proc.pid])
    finally:
        exit_code, killed = gw.stop()
    return result(got, code, cores, to, {"gateway_exit": exit_code, "killed": killed})


def run_forward(side, rep):
    gateway, bin_test = bins(side)
    core_port, port = free_port(), free_port()
    tag = f"forward-{side}-r{rep}"
    core = Proc("core", [bin_test, "core", "--host", HOST, "--port", str(core_port)], core_port, tag)
    gw = None
    try:
        core.wait_accepting()
        gw = Proc("gateway", [gateway, "--host", HOST, "--port", str(port), "--upstream", f"{HOST}:{core_port}"],
                  port, tag)
        gw.wait_accepting()
        links_up(port)
        got, code, cores, wall, to = run_client(client_argv(port, LOAD + ["--duration", str(ARGS.duration)]),
                                                ARGS.duration + 60, [core.proc.pid, gw.proc.pid])
    finally:
        exit_code = gw.stop()[0] if gw else None
        core.stop()
    return result(got, code, cores, to, {"gateway_exit": exit_code})


def run_push(side, rep):
    gateway, bin_test = bins(side)
    core_port, port = free_port(), free_port()
    tag = f"push-{side}-r{rep}"
    core = Proc("core", [bin_test, "core", "--host", HOST, "--port", str(core_port), "--push-rate",
                         str(ARGS.push_rate), "--push-scope", "all", "--push-after", str(PUSH_AFTER_S)],
                core_port, tag)
    start = time.monotonic()
    gw = None
    extra = {}
    try:
        core.wait_accepting()
        gw = Proc("gateway", [gateway, "--host", HOST, "--port", str(port), "--upstream", f"{HOST}:{core_port}"],
                  port, tag)
        gw.wait_accepting()
        links_up(port)
        argv = client_argv(port, ["--mode", "push", "--conns", str(PUSH_CONNS), "--push-scope", "all",
                                  "--duration", str(ARGS.duration)])
        # Server CPU from the core's first push on, as runner.py counts it.
        got, code, cores, wall, to = run_client(argv, ARGS.duration + 90, [core.proc.pid, gw.proc.pid],
                                                cpu_from_s=max(0.0, PUSH_AFTER_S - (time.monotonic() - start)))
        extra["gateway_vmhwm_kib"] = status_kib(gw.proc.pid, "VmHWM")
    finally:
        exit_code = gw.stop()[0] if gw else None
        core.stop()
    extra["gateway_exit"] = exit_code
    found = re.search(r"pushes=(\d+)", core.text())
    extra["pushes_sent"] = int(found.group(1)) if found else None
    if gw:
        stop = [line for line in gw.text().splitlines() if "stopped after" in line]
        closed = re.search(r"overflow_closed (\d+)", stop[-1]) if stop else None
        extra["overflow_closed"] = int(closed.group(1)) if closed else 0
        extra["gateway_stop_line"] = stop[-1][-600:] if stop else None
    return result(got, code, cores, to, extra, keep_errors=True)


def run_witness(side, rep, hostile):
    """hostile: None (the witness alone), "nr" (beside a non-reader) or "rd" (the control: beside a
    client sending the same 60 KB frames that reads its replies)."""
    gateway, bin_test = bins(side)
    core_port, port = free_port(), free_port()
    tag = f"witness-{side}-{hostile or 'alone'}-r{rep}"
    core = Proc("core", [bin_test, "core", "--host", HOST, "--port", str(core_port)], core_port, tag)
    gw = nr = None
    extra = {}
    try:
        core.wait_accepting()
        gw = Proc("gateway", [gateway, "--host", HOST, "--port", str(port), "--upstream", f"{HOST}:{core_port}",
                              "--upstream-links", "1"], port, tag)
        gw.wait_accepting()
        links_up(port)
        if hostile:
            reads = ["reads"] if hostile == "rd" else ["once"] if ARGS.nonreader_once else []
            nr = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--nonreader", str(port),
                                   str(ARGS.duration + ARGS.nonreader_lead + 1)] + reads,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                  start_new_session=True)
            time.sleep(ARGS.nonreader_lead)  # its queue fills before the witness starts
        argv = client_argv(port, ["--mode", "pingpong", "--conns", "1", "--size", "64",
                                  "--duration", str(ARGS.duration)])
        got, code, cores, wall, to = run_client(argv, ARGS.duration + ARGS.witness_limit,
                                                [core.proc.pid, gw.proc.pid])
        extra["client_wall_s"] = round(wall, 2)
        if nr:
            try:
                out, _ = nr.communicate(timeout=ARGS.duration + ARGS.nonreader_lead + 15)
                extra["nonreader"] = parse_json(out)
            except subprocess.TimeoutExpired:
                nr.kill()
                nr.wait()
                extra["nonreader"] = "did not finish"
    finally:
        if nr and nr.poll() is None:
            nr.kill()
            nr.wait()
        exit_code = gw.stop()[0] if gw else None
        core.stop()
    log_text = (gw.text() if gw else "") + core.text()
    extra["gateway_exit"] = exit_code
    before_stop = (gw.text() if gw else "").split("SIGTERM")[0]
    extra["links_down_before_stop"] = len(re.findall(r"link \d+ to \S+ down", before_stop))
    extra["slow_consumer_logged"] = log_text.count("slow_consumer")
    stop = [line for line in (gw.text() if gw else "").splitlines() if "stopped after" in line]
    extra["gateway_stop_line"] = stop[-1][-600:] if stop else None
    return result(got, code, cores, to, extra, keep_errors=True)


# ---------------------------------------------------------------- allocations

def build_counter():
    """Compiles perf/malloc_count.c into the log directory; returns the .so path."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "malloc_count.c")
    so = os.path.join(ARGS.logdir, "malloc_count.so")
    if not os.path.exists(so):
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", so, src], check=True)
    return so


def mallocs_of(pid):
    with open(f"/dev/shm/malloc_count.{pid}", "rb") as f:
        return struct.unpack("<Q", f.read(8))[0]


def metrics(admin_port):
    """The gateway's /metrics as {name{labels}: value}."""
    with socket.create_connection((HOST, admin_port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    out = {}
    for text in data.decode(errors="replace").split("\r\n\r\n", 1)[-1].splitlines():
        if text and not text.startswith("#"):
            name, _, value = text.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


ALLOC_COUNTS = {  # what one unit of work is, per shape: the /metrics counter that counts it
    "echo": "gateway_frames_in_total",
    "forward": 'gateway_forwarded_total{direction="up"}',
    "push": "gateway_push_deliveries_total",
}


def run_mallocs(side, rep, shape):
    """The gateway under malloc_count.so with its admin endpoint; mallocs over a window in the middle
    of the load (scrape, read the counter ... read the counter, scrape) per unit of ALLOC_COUNTS, and
    the idle rate (mallocs/s) over one second before the load starts."""
    gateway, bin_test = bins(side)
    so = build_counter()
    port, admin, core_port = free_port(), free_port(), free_port()
    tag = f"mallocs-{shape}-{side}-r{rep}"
    core = gw = None
    procs = []
    rec = {}
    env_argv = ["env", f"LD_PRELOAD={so}"]
    try:
        argv = [gateway, "--host", HOST, "--port", str(port), "--admin", f"{HOST}:{admin}", "--stats-interval", "0"]
        if shape != "echo":
            push = (["--push-rate", str(ARGS.alloc_push_rate), "--push-scope", "all", "--push-after",
                     str(PUSH_AFTER_S)] if shape == "push" else [])
            core = Proc("core", [bin_test, "core", "--host", HOST, "--port", str(core_port)] + push, core_port, tag)
            procs.append(core)
            core.wait_accepting()
            argv += ["--upstream", f"{HOST}:{core_port}"]
        started = time.monotonic()
        gw = Proc("gateway", env_argv + argv, port, tag)
        procs.append(gw)
        gw.wait_accepting()
        pid = gw.proc.pid  # env execs the gateway: the pid is the gateway's own
        if shape != "echo":
            links_up(port)
        m0, t0 = mallocs_of(pid), time.monotonic()
        time.sleep(1.0)
        rec["idle_mallocs_per_s"] = (mallocs_of(pid) - m0) / (time.monotonic() - t0)
        if shape == "push":
            flags = ["--mode", "push", "--conns", str(ARGS.alloc_push_conns), "--push-scope", "all"]
            lead = max(0.0, PUSH_AFTER_S - (time.monotonic() - started)) + 1.0
        else:
            flags, lead = LOAD, 1.0
        duration = ARGS.duration + lead + 0.5
        client = subprocess.Popen(client_argv(port, flags + ["--duration", f"{duration:.1f}"]),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        time.sleep(lead)
        s1 = metrics(admin)
        m1, t1 = mallocs_of(pid), time.monotonic()
        time.sleep(ARGS.duration)
        m2, t2 = mallocs_of(pid), time.monotonic()
        s2 = metrics(admin)
        out, _ = client.communicate(timeout=duration + 90)
        got = parse_json(out.decode(errors="replace")) or {}
        units = s2.get(ALLOC_COUNTS[shape], 0) - s1.get(ALLOC_COUNTS[shape], 0)
        rec.update({"mallocs": m2 - m1, "units": units, "window_s": round(t2 - t1, 2),
                    "mallocs_per_unit": (m2 - m1) / units if units else None,
                    "units_per_s": units / (t2 - t1), "client_exit": client.returncode,
                    "client_errors": got.get("errors"), "ok": units > 0})
        if shape == "forward":
            rec["down"] = s2.get('gateway_forwarded_total{direction="down"}', 0) - \
                s1.get('gateway_forwarded_total{direction="down"}', 0)
    finally:
        for p in reversed(procs):
            p.stop()
        if gw:
            try:
                os.unlink(f"/dev/shm/malloc_count.{gw.proc.pid}")
            except OSError:
                pass
    return rec


def result(got, code, cores, timed_out, extra, keep_errors=False):
    rec = {"client_exit": code, "timed_out": timed_out, "server_cpu_cores": sum(cores) if cores else None,
           "gateway_cpu_cores": cores[-1] if cores else None, **extra}
    if got:
        lat = got.get("latency_us") or {}
        rec.update({"replies_per_s": got.get("replies_per_s"), "replies": got.get("replies"),
                    "errors": got.get("errors"), "p50_us": lat.get("p50"), "p99_us": lat.get("p99"),
                    "p999_us": lat.get("p999"), "max_us": lat.get("max"),
                    "error_messages": (got.get("error_messages") or [])[:3]})
    rec["ok"] = bool(got) and not timed_out and (code == 0 or (keep_errors and code == 1 and bool(got.get("replies"))))
    return rec


# ---------------------------------------------------------------- report

def fmt(values, digits=0):
    if not values:
        return "n/a"
    f = f"{{:,.{digits}f}}"
    return f"{f.format(statistics.median(values))} ({f.format(min(values))}-{f.format(max(values))})"


def column(runs, key, metric):
    return [r[metric] for r in runs.get(key, []) if r.get("ok") and r.get(metric) is not None]


def paired(runs, ka, kb, metric):
    out = []
    for ra, rb in zip(runs.get(ka, []), runs.get(kb, [])):
        if ra.get("ok") and rb.get("ok") and ra.get(metric) and rb.get(metric) is not None:
            out.append(rb[metric] / ra[metric])
    return out


def line(runs, label, ka, kb, metric, digits=0, per_cpu=False, names=("A", "B")):
    a, b = column(runs, ka, metric), column(runs, kb, metric)
    ratio = statistics.median(b) / statistics.median(a) if a and b and statistics.median(a) else float("nan")
    pr = paired(runs, ka, kb, metric)
    prs = ", ".join(f"{x:.2f}" for x in pr)
    na, nb = names
    text = (f"{label:44} {na} {fmt(a, digits):>34}  {nb} {fmt(b, digits):>34}  {nb}/{na} {ratio:.3f}  "
            f"paired [{prs}]")
    if per_cpu:
        for cpu, what in (("server_cpu_cores", "all server processes"), ("gateway_cpu_cores", "the gateway")):
            ea = [r[metric] / r[cpu] for r in runs.get(ka, []) if r.get("ok") and r.get(cpu)]
            eb = [r[metric] / r[cpu] for r in runs.get(kb, []) if r.get("ok") and r.get(cpu)]
            if ea and eb:
                text += (f"\n{'  per CPU-second of ' + what:44} A {fmt(ea):>34}  B {fmt(eb):>34}  "
                         f"B/A {statistics.median(eb) / statistics.median(ea):.3f}")
    return text


def report(runs):
    print(f"\nload average at the end: {loadavg()}")
    sections = ARGS.sections.split(",")
    if "echo" in sections:
        print(line(runs, "echo 32x16x512 replies/s", "echo-A", "echo-B", "replies_per_s", per_cpu=True))
        print(line(runs, "echo server CPU (cores)", "echo-A", "echo-B", "server_cpu_cores", 2))
    if "forward" in sections:
        print(line(runs, "forward 32x16x512 replies/s", "forward-A", "forward-B", "replies_per_s", per_cpu=True))
        print(line(runs, "forward server CPU (cores, core+gateway)", "forward-A", "forward-B", "server_cpu_cores", 2))
    if "push" in sections:
        print(line(runs, "push 10k deliveries/s", "push-A", "push-B", "replies_per_s", per_cpu=True))
        for m in ("p50_us", "p99_us", "server_cpu_cores", "gateway_cpu_cores", "overflow_closed", "gateway_vmhwm_kib"):
            print(line(runs, f"push {m}", "push-A", "push-B", m, 2 if "cpu" in m else 0))
    if "witness" in sections:
        for side in ARGS.witness_sides.split(","):
            for m in ("p50_us", "p99_us", "max_us", "replies"):
                print(line(runs, f"witness {side} {m}", f"witness-{side}-alone", f"witness-{side}-nr", m, 1,
                           names=("alone", "with-non-reader")))
                if ARGS.witness_control:
                    print(line(runs, f"witness {side} {m}", f"witness-{side}-alone", f"witness-{side}-rd", m, 1,
                               names=("alone", "with-reader")))
                    print(line(runs, f"witness {side} {m}", f"witness-{side}-rd", f"witness-{side}-nr", m, 1,
                               names=("with-reader", "with-non-reader")))
        for m in ("p50_us", "p99_us"):
            print(line(runs, f"witness alone {m}", "witness-A-alone", "witness-B-alone", m, 1))
            print(line(runs, f"witness with non-reader {m}", "witness-A-nr", "witness-B-nr", m, 1))
        for key in sorted(k for k in runs if k.startswith("witness")):
            for r in runs[key]:
                if not r.get("ok") or r.get("errors"):
                    print(f"  {key}: ok={r.get('ok')} exit={r.get('client_exit')} timed_out={r.get('timed_out')} "
                          f"replies={r.get('replies')} errors={r.get('errors')} {r.get('error_messages')}")
    for shape in ("echo", "forward", "push"):
        if f"mallocs-{shape}" in sections:
            for side in ("A", "B"):
                rs = [r for r in runs.get(f"mallocs-{shape}-{side}", []) if r.get("ok")]
                total, units = sum(r["mallocs"] for r in rs), sum(r["units"] for r in rs)
                print(f"mallocs {shape:8} {side}: {total:,} mallocs over {units:,.0f} {ALLOC_COUNTS[shape]} "
                      f"= {total / units if units else float('nan'):.6f} per unit; per run "
                      f"{[r['mallocs'] for r in rs]}; idle mallocs/s "
                      f"{[round(r['idle_mallocs_per_s'], 1) for r in rs]}; "
                      f"units/s {fmt([r['units_per_s'] for r in rs])}")
    bad = [(k, i, r) for k, rs in runs.items() for i, r in enumerate(rs) if not r.get("ok")]
    for k, i, r in bad:
        why = {x: r.get(x) for x in ("client_exit", "timed_out", "errors", "error", "error_messages")}
        print(f"  not ok: {k} run {i + 1}: {json.dumps(why)}")


def main():
    global ARGS
    if len(sys.argv) in (4, 5) and sys.argv[1] == "--nonreader":
        nonreader(int(sys.argv[2]), float(sys.argv[3]), reads=sys.argv[4:] == ["reads"],
                  once=sys.argv[4:] == ["once"])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="directory of build A's gateway and bin_test (baseline)")
    ap.add_argument("--b", required=True, help="directory of build B's gateway and bin_test (under test)")
    ap.add_argument("--client-bin-test", help="bin_test that runs the load (default: B's)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--duration", type=float, default=3)
    ap.add_argument("--sections", default="echo,forward,push,witness",
                    help="echo,forward,push,witness and mallocs-echo,mallocs-forward,mallocs-push")
    ap.add_argument("--witness-sides", default="A,B", help="builds the witness section runs (A,B or B)")
    ap.add_argument("--witness-limit", type=float, default=60,
                    help="seconds past --duration before a witness client is killed (a stall on A)")
    ap.add_argument("--witness-control", action="store_true",
                    help="also the witness beside a client that sends the same 60 KB frames and reads")
    ap.add_argument("--nonreader-once", action="store_true",
                    help="the non-reader does not reconnect once the gateway closes it")
    ap.add_argument("--nonreader-lead", type=float, default=1.0, help="seconds the non-reader runs first")
    ap.add_argument("--push-rate", type=int, default=BROADCAST_RATE,
                    help="broadcasts/s in the push section (runner.py's (j): 200, to 10,000 clients)")
    ap.add_argument("--alloc-push-conns", type=int, default=1000, help="clients in the mallocs-push section")
    ap.add_argument("--alloc-push-rate", type=int, default=100, help="broadcasts/s in the mallocs-push section")
    ap.add_argument("--logdir", help="server logs (default: a new temporary directory)")
    ap.add_argument("--json-out")
    ARGS = ap.parse_args()
    ARGS.client_bin_test = ARGS.client_bin_test or os.path.join(ARGS.b, "bin_test")
    ARGS.logdir = ARGS.logdir or tempfile.mkdtemp(prefix="isolation_ab-")
    os.makedirs(ARGS.logdir, exist_ok=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    sections = ARGS.sections.split(",")
    print(f"A {ARGS.a}\nB {ARGS.b}\nclient {ARGS.client_bin_test}\nlogs {ARGS.logdir}\n"
          f"reps {ARGS.reps} duration {ARGS.duration} s, sections {ARGS.sections}; load average {loadavg()}",
          flush=True)
    runs = {}
    for rep in range(ARGS.reps):
        plan = []
        for name, fn in (("echo", run_echo), ("forward", run_forward), ("push", run_push)):
            if name in sections:
                plan += [(f"{name}-{side}", lambda s=side, f=fn: f(s, rep)) for side in ("A", "B")]
        for shape in ("echo", "forward", "push"):
            if f"mallocs-{shape}" in sections:
                plan += [(f"mallocs-{shape}-{side}", lambda s=side, sh=shape: run_mallocs(s, rep, sh))
                         for side in ("A", "B")]
        if "witness" in sections:
            for hostile in [None, "nr"] + (["rd"] if ARGS.witness_control else []):
                for side in ARGS.witness_sides.split(","):
                    key = f"witness-{side}-{hostile or 'alone'}"
                    plan.append((key, lambda s=side, h=hostile: run_witness(s, rep, h)))
        for key, fn in plan:
            t0 = time.monotonic()
            try:
                rec = fn()
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                rec = {"ok": False, "error": str(e)}
            rec["rep"] = rep + 1
            rec["seconds"] = round(time.monotonic() - t0, 1)
            runs.setdefault(key, []).append(rec)
            brief = {k: rec.get(k) for k in ("replies_per_s", "p50_us", "p99_us", "max_us", "errors",
                                             "server_cpu_cores", "overflow_closed", "ok", "error")
                     if rec.get(k) is not None}
            print(f"rep {rep + 1} {key}: {json.dumps(brief)}", flush=True)
    report(runs)
    if ARGS.json_out:
        with open(ARGS.json_out, "w") as f:
            json.dump({"argv": shlex.join(sys.argv), "a": ARGS.a, "b": ARGS.b, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
