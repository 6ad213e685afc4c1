#!/usr/bin/env python3
"""Side-by-side runner for perf/run.sh (standard library only).

Runs the same `bin_test client ... --json --hgrm FILE` against each server in
turn (A B C A B C ...), every server started fresh on 127.0.0.1 with a port of
its own and stopped after its run, then writes perf/RESULTS.md from the medians
and asks perf/plot.py (in perf/.venv) for the pictures.

Every run is bounded: the client gets a time limit, a server that does not stop
on SIGTERM is killed. A server that fails to start, a client that exits non-zero
or prints no JSON is recorded as a failed run, never a crash of the runner.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import cpu_seconds, status_kib

HOST = "127.0.0.1"
IDLE_CONNS = 10_000
# (j) and (k): clients logged in behind one access gateway, and what the core pushes to them. (j)
# offers BROADCAST_RATE x PUSH_CONNS deliveries/s, more than two shared cores deliver (100/s, 1 M/s,
# nearly all got through): clients that fall behind are closed (push_overflow close), errors noted.
PUSH_CONNS = 10_000
BROADCAST_RATE = 200
UID_PUSH_RATE = 100_000
# Seconds from the core's start to its first push: after the set-up's probe (a ping-pong, which pushes
# to all would disturb) and the clients' logins, which pushes already saturating the cores would delay.
PUSH_AFTER_S = 3

# --------------------------------------------------------------------------- scenarios


@dataclass
class Scenario:
    key: str
    title: str
    what: str
    servers: list[str]          # server variant names, in run order
    client: list[str]           # client flags (host/port/json/hgrm added per run)
    primary: str                # metric the ratios are about
    higher_is_better: bool
    duration: float | None = None  # None: the run's --duration
    notes: list[str] = field(default_factory=list)
    clients: dict[str, list[str]] = field(default_factory=dict)  # per server, instead of `client`
    # A push run with errors (slow consumers closed, say) still measured what was delivered.
    keep_errors: bool = False


# What a user selects (--scenarios) and the scenarios each selection runs: (h) and (i) are a
# load part and a ping-pong part each; (i) adds three tiers and the direct echo to (h)'s alternation.
SELECTABLE = "abcdefghijk"
HOP_KEYS = ("h", "hp")
# Set-ups of (j) and (k): a pushing core behind the gateway.
PUSH_SETUPS = ("broadcast", "push-access", "push-tiers")


def expand(selected: list[str]) -> list[str]:
    keys: list[str] = []
    for k in selected:
        if k in ("h", "i"):
            for part in HOP_KEYS:
                if part not in keys:
                    keys.append(part)
        elif k not in keys:
            keys.append(k)
    return keys


def hop_servers(selected: list[str]) -> list[str]:
    """(h): gateway (access) -> core and HAProxy -> C; (i): access -> aggregation -> core, and the
    direct echo, beside the gateway."""
    servers = ["access"]
    if "h" in selected:
        servers.append("haproxy")
    if "i" in selected:
        servers += ["tiers", "direct"]
    return servers


def scenarios(duration: float, idle_duration: float, selected: list[str] | None = None,
              echo_servers: list[str] | None = None, many: int = 1000) -> dict[str, Scenario]:
    """`echo_servers` replaces the servers of (a)-(d) (--servers); `many` is (c)'s connections (--many-conns)."""
    d = fmt_num(duration)
    hop = hop_servers(selected or ["h"])
    echo = echo_servers or ["gateway", "nio", "c"]
    push_timing = (f" The core pushes from {PUSH_AFTER_S} s after its start, when every client has logged in "
                   "(LOGIN, which the core answers with BIND); each bin_test thread counts the --duration seconds "
                   "from its first push. The server CPU column sums the core and the gateways from the first push on.")
    return {
        "a": Scenario(
            "a", "(a) throughput: 32 connections x 16 in flight x 512 B",
            "Closed loop: 32 connections, each keeping 16 requests of 512 bytes in flight; "
            "replies per second is the peak throughput.",
            echo,
            ["--mode", "load", "--conns", "32", "--pipeline", "16", "--size", "512", "--duration", d],
            "replies_per_s", True),
        "b": Scenario(
            "b", "(b) ping-pong: 1 connection, 64 B, one request at a time",
            "One connection, one 64-byte request in flight: the median round trip (p50) "
            "is the latency of an idle server.",
            echo,
            ["--mode", "pingpong", "--conns", "1", "--pipeline", "1", "--size", "64", "--duration", d],
            "p50_us", False),
        "c": Scenario(
            "c", f"(c) many connections: {many:,} connections x 1 in flight x 64 B",
            f"Closed loop over {many:,} connections with one 64-byte request each: the cost of "
            "readiness handling and hand-offs per connection.",
            echo,
            ["--mode", "load", "--conns", str(many), "--pipeline", "1", "--size", "64", "--duration", d],
            "replies_per_s", True),
        "d": Scenario(
            "d", "(d) connection rate",
            "Connect, one 64-byte echo, close, over and over on 16 concurrent connections: "
            "accepted connections per second. The client connects from 127.0.0.2 to 127.0.0.9 "
            "in turn: from one address the kernel's reuse of ports in TIME_WAIT caps every "
            "server alike at about 14,000 connections/s here.",
            echo,
            ["--mode", "connrate", "--conns", "16", "--pipeline", "1", "--size", "64", "--duration", d,
             "--source", ",".join(f"127.0.0.{i}" for i in range(2, 10))],
            "connections_per_s", True),
        "e": Scenario(
            "e", "(e) 10,000 idle connections: resident memory per connection",
            "bin_test opens 10,000 connections and holds them idle; the server's VmRSS "
            "(/proc/PID/status) is read before the client starts and while all connections "
            "are held; the difference over the connections held is the memory per connection.",
            ["gateway", "nio", "c"],
            ["--mode", "idle", "--conns", str(IDLE_CONNS), "--pipeline", "1", "--size", "64",
             "--duration", fmt_num(idle_duration)],
            "kib_per_conn", False, duration=idle_duration),
        "f": Scenario(
            "f", "(f) aggregation tier: 8 connections x 64 in flight x 1 KiB, epoll vs poll",
            "The aggregation server's shape (few connections, each very busy): the gateway "
            "with --poller epoll against the same gateway with --poller poll.",
            ["gateway-epoll", "gateway-poll"],
            ["--mode", "load", "--conns", "8", "--pipeline", "64", "--size", "1024", "--duration", d],
            "replies_per_s", True),
        "g": Scenario(
            "g", "(g) open-loop latency at half the peak rate",
            "Open loop (requests sent on a schedule, not on replies) at R requests per second, "
            "R = half of the gateway's median throughput in (a), same connection shape as (a); "
            "the latency percentiles are the figures.",
            ["gateway", "nio", "c"],
            ["--mode", "load", "--conns", "32", "--pipeline", "16", "--size", "512", "--duration", d],
            "p99_us", False),
        "h": Scenario(
            "h", "(h) one hop: 32 connections x 16 in flight x 512 B through a proxy",
            "The shape of (a) through one hop: the gateway in the access role "
            "(`gateway --upstream`) in front of the echo core `bin_test core`, against HAProxy "
            "in TCP mode (one frontend, one backend server) in front of the C echo peer"
            + (", and (i) beside them: three tiers (`gateway --upstream` -> `gateway --role aggregation "
               "--poller poll` -> `bin_test core`) and the direct echo `bin_test server` (no hop)"
               if "direct" in hop else "")
            + ". Each set-up's processes are started fresh for every run; the server CPU column "
            "is the sum over the set-up's processes (proxy and echo).",
            hop,
            ["--mode", "load", "--conns", "32", "--pipeline", "16", "--size", "512", "--duration", d],
            "replies_per_s", True),
        "hp": Scenario(
            "hp", "(h) one hop: ping-pong, 1 connection, 64 B",
            "The shape of (b) through the same set-ups as the load part of (h): the median "
            "round trip (p50) includes the hop.",
            hop,
            ["--mode", "pingpong", "--conns", "1", "--pipeline", "1", "--size", "64", "--duration", d],
            "p50_us", False),
        "j": Scenario(
            "j", f"(j) broadcast: {PUSH_CONNS:,} clients, pushes to all at {BROADCAST_RATE}/s",
            f"{PUSH_CONNS:,} clients logged in (`bin_test client --mode push`) on one access gateway "
            f"(`gateway --upstream`) in front of `bin_test core --push-rate {BROADCAST_RATE} --push-scope all` "
            f"(64-byte bodies): {BROADCAST_RATE * PUSH_CONNS:,} deliveries/s offered, more than the cores "
            "can deliver, so deliveries/s is the gateway's (and the load tool's) CPU-bound push throughput. "
            "Every push is checked for its content and recipient; latency is the core's send stamp to "
            "the client's read. Beside it, in the same alternation, the same gateway binary with its echo "
            "handler under (a)'s load (32 connections x 16 in flight x 512 B): replies/s." + push_timing,
            ["broadcast", "echo-ref"],
            [],
            "replies_per_s", True, keep_errors=True,
            clients={
                "broadcast": ["--mode", "push", "--conns", str(PUSH_CONNS), "--push-scope", "all",
                              "--duration", d],
                "echo-ref": ["--mode", "load", "--conns", "32", "--pipeline", "16", "--size", "512",
                             "--duration", d],
            }),
        "k": Scenario(
            "k", f"(k) push to single uids: {UID_PUSH_RATE:,}/s across {PUSH_CONNS:,} bound clients",
            f"{PUSH_CONNS:,} clients, each logged in as a uid of its own, and `bin_test core --push-rate "
            f"{UID_PUSH_RATE} --push-scope uid --push-uids {PUSH_CONNS}` pushing to the uids in turn "
            "(64-byte bodies; every client gets 10 pushes/s): latency from the core's send stamp to the "
            "client's read, through the access gateway alone (`gateway --upstream core`) and through an "
            "aggregation server and the access gateway (`gateway --role aggregation --poller poll "
            "--upstream core`, access `--upstream agg`)." + push_timing,
            ["push-access", "push-tiers"],
            ["--mode", "push", "--conns", str(PUSH_CONNS), "--push-scope", "uid", "--push-uids", str(PUSH_CONNS),
             "--duration", d],
            "p99_us", False, keep_errors=True),
    }


SERVER_LABEL = {
    "gateway": "gateway",
    "gateway-epoll": "gateway --poller epoll",
    "gateway-poll": "gateway --poller poll",
    "nio": "SwiftNIO (NIOEcho)",
    "c": "C epoll (c_echo)",
    "c1": "C epoll (c_echo --threads 1)",
    "prev": "gateway, an earlier build (--gateway-prev)",
    "access": "gateway --upstream -> bin_test core",
    "haproxy": "HAProxy (mode tcp) -> c_echo",
    "direct": "bin_test server (direct, no hop)",
    "tiers": "gateway -> gateway --role aggregation -> bin_test core",
    "broadcast": "gateway --upstream -> bin_test core pushing to all (deliveries/s)",
    "echo-ref": "gateway, echo handler, 32 x 16 x 512 B (replies/s)",
    "push-access": "gateway --upstream -> bin_test core",
    "push-tiers": "gateway -> gateway --role aggregation -> bin_test core",
}

HAPROXY_INSTALL = ("command -v haproxy || (apt-get update -qq && "
                   "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy)")


def haproxy_config(front_port: int, back_port: int) -> str:
    """One TCP frontend, one backend server; everything else HAProxy's defaults (threads: one per CPU)."""
    return f"""global
    log stderr format raw local0 err
    maxconn 4096

defaults
    mode tcp
    log global
    timeout connect 5s
    timeout client 120s
    timeout server 120s

frontend perf_front
    bind {HOST}:{front_port}
    default_backend perf_back

backend perf_back
    server echo {HOST}:{back_port}
"""

# --------------------------------------------------------------------------- helpers


def fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def log(msg: str) -> None:
    print(f"[perf {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def port_is_free(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Ports:
    """Hands out a fresh port for every server start, below the ephemeral range."""

    def __init__(self, base: int) -> None:
        self.next = base

    def take(self) -> int:
        for _ in range(2000):
            p = self.next
            self.next += 1
            if self.next > 32000:
                self.next = 20000
            if port_is_free(p):
                return p
        raise RuntimeError("no free port found")


def count_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def parse_json_stdout(text: str) -> dict | None:
    text = text.strip()
    if not text:
        return None
    try:
        obj = json.loads(text)
        return obj if isinstance(obj, dict) else None
    except json.JSONDecodeError:
        pass
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
                if isinstance(obj, dict):
                    return obj
            except json.JSONDecodeError:
                continue
    return None


def num(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if v == v else None  # drop NaN


# --------------------------------------------------------------------------- servers


class Server:
    def __init__(self, name: str, argv: list[str], port: int, logdir: Path, tag: str) -> None:
        self.name = name
        self.argv = argv
        self.port = port
        self.out_path = logdir / f"{tag}.server.out"
        self.err_path = logdir / f"{tag}.server.err"
        self.proc: subprocess.Popen | None = None

    def start(self, ready_timeout: float = 20.0) -> str | None:
        """Starts the server and waits until it accepts; returns an error text or None."""
        program = self.argv[3] if self.argv[0] == "taskset" else self.argv[0]
        if not Path(program).exists():
            return f"binary not built: {program}"
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL,
                stdout=open(self.out_path, "wb"), stderr=open(self.err_path, "wb"),
                start_new_session=True)
        except OSError as e:
            return f"could not start: {e}"
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return (f"exited with code {self.proc.returncode} before accepting connections: "
                        + tail(self.err_path, 3).replace("\n", " | "))
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    pass
                time.sleep(0.2)  # let it settle after the probe connection closed
                return None
            except OSError:
                time.sleep(0.05)
        self.stop()
        return f"not accepting on {HOST}:{self.port} after {ready_timeout:.0f} s"

    def stop(self) -> tuple[int | None, bool]:
        """SIGTERM, then SIGKILL after 10 s. Returns (exit code, killed)."""
        if self.proc is None:
            return None, False
        if self.proc.poll() is not None:
            return self.proc.returncode, False
        try:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout=10), False
        except subprocess.TimeoutExpired:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            return self.proc.returncode, True


# --------------------------------------------------------------------------- runner


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.perf = Path(args.perf_dir).resolve()
        self.rundir = Path(args.run_dir).resolve()
        self.rundir.mkdir(parents=True, exist_ok=True)
        self.ports = Ports(20000 + (os.getpid() % 50) * 200)
        self.selected = [k for k in args.scenarios.split(",") if k]
        self.keys = expand(self.selected)
        echo = [v for v in (args.servers or "").split(",") if v] or None
        self.scen = scenarios(args.duration, args.idle_duration, self.selected, echo, args.many_conns)
        self.haproxy: str | None = None
        self.haproxy_note = ""
        self.runs: list[dict] = []
        self.rate_note = ""
        self.machine = machine_info()  # once, as the run begins

    # ---- commands

    def server_argv(self, variant: str, port: int, scenario: str) -> list[str]:
        a = self.args
        base = ["--host", HOST, "--port", str(port)]
        if variant.startswith("gateway"):
            argv = [a.gateway] + base
            if variant == "gateway-epoll":
                argv += ["--poller", "epoll"]
            elif variant == "gateway-poll":
                argv += ["--poller", "poll"]
            # Defaults otherwise (100,000 connection slots, 300 s idle timeout): (e) fits.
            return argv
        if variant == "prev":
            return [a.gateway_prev] + base
        if variant == "nio":
            return [a.nio] + base
        if variant == "c":
            return [a.c_echo] + base
        if variant == "c1":
            return [a.c_echo, "--threads", "1"] + base
        if variant == "direct":
            return [a.bin_test, "server"] + base
        raise ValueError(variant)

    def setup(self, variant: str, port: int, tag: str) -> tuple[list[tuple[str, list[str], int]], list[Path]]:
        """The processes of one set-up in start order, (name, argv, port), the front (the one the
        client talks to) last; and the temporary files to remove after the run."""
        a = self.args
        if variant in PUSH_SETUPS:
            return self.push_setup(variant, port), []
        if variant == "echo-ref":
            return [("gateway", [a.gateway, "--host", HOST, "--port", str(port)], port)], []
        if variant == "access":
            core = self.ports.take()
            return [("core", [a.bin_test, "core", "--host", HOST, "--port", str(core)], core),
                    ("gateway", [a.gateway, "--host", HOST, "--port", str(port),
                                 "--upstream", f"{HOST}:{core}"], port)], []
        if variant == "tiers":
            core, aggregation = self.ports.take(), self.ports.take()
            return [("core", [a.bin_test, "core", "--host", HOST, "--port", str(core)], core),
                    ("aggregation", [a.gateway, "--role", "aggregation", "--poller", "poll", "--host", HOST,
                                     "--port", str(aggregation), "--upstream", f"{HOST}:{core}"], aggregation),
                    ("gateway", [a.gateway, "--host", HOST, "--port", str(port),
                                 "--upstream", f"{HOST}:{aggregation}"], port)], []
        if variant == "haproxy":
            back = self.ports.take()
            fd, cfg = tempfile.mkstemp(prefix=f"perf-{tag}-", suffix=".haproxy.cfg")
            with os.fdopen(fd, "w") as f:
                f.write(haproxy_config(port, back))
            return [("c_echo", [a.c_echo, "--host", HOST, "--port", str(back)], back),
                    ("haproxy", [self.haproxy or "haproxy", "-db", "-f", cfg], port)], [Path(cfg)]
        return [(variant, self.server_argv(variant, port, ""), port)], []

    def push_setup(self, variant: str, port: int) -> list[tuple[str, list[str], int]]:
        """(j) and (k): the pushing core, for push-tiers an aggregation server, and the access gateway."""
        a = self.args
        core = self.ports.take()
        if variant == "broadcast":
            push = ["--push-rate", str(BROADCAST_RATE), "--push-scope", "all"]
        else:
            push = ["--push-rate", str(UID_PUSH_RATE), "--push-scope", "uid", "--push-uids", str(PUSH_CONNS)]
        procs = [("core", [a.bin_test, "core", "--host", HOST, "--port", str(core)] + push
                  + ["--push-after", str(PUSH_AFTER_S)], core)]
        upstream = core
        if variant == "push-tiers":
            upstream = self.ports.take()
            procs.append(("aggregation", [a.gateway, "--role", "aggregation", "--poller", "poll", "--host", HOST,
                                          "--port", str(upstream), "--upstream", f"{HOST}:{core}"], upstream))
        procs.append(("gateway", [a.gateway, "--host", HOST, "--port", str(port),
                                  "--upstream", f"{HOST}:{upstream}"], port))
        return procs

    def ensure_haproxy(self) -> None:
        """Installs HAProxy when it is missing (the command in HAPROXY_INSTALL)."""
        if not any("haproxy" in self.scen[k].servers for k in self.keys):
            return
        found = shutil.which("haproxy")
        if not found:
            log(f"haproxy not found: {HAPROXY_INSTALL}")
            res = subprocess.run(["sh", "-c", HAPROXY_INSTALL], capture_output=True, text=True, timeout=900)
            (self.rundir / "haproxy-install.log").write_text(res.stdout + res.stderr)
            found = shutil.which("haproxy")
            if not found:
                self.haproxy_note = (f"haproxy could not be installed (`{HAPROXY_INSTALL}` exited "
                                     f"{res.returncode}; log: haproxy-install.log): its runs failed")
                log(self.haproxy_note)
                return
        self.haproxy = found
        version = sh([found, "-v"]).splitlines()
        self.haproxy_version = version[0] if version else ""
        log(f"using {found}: {self.haproxy_version}")

    def links_up(self, port: int, proc: subprocess.Popen, timeout: float = 15.0) -> str | None:
        """Polls until a short bin_test ping-pong through the set-up gets every reply with no error
        (the gateway answers no_upstream until a link is up). Returns an error text or None."""
        probe = [self.args.bin_test, "client", "--host", HOST, "--port", str(port), "--mode", "pingpong",
                 "--conns", "1", "--size", "64", "--count", "5", "--duration", "2", "--grace", "1",
                 "--json", "--quiet"]
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return f"exited with code {proc.returncode} while waiting for its upstream"
            try:
                res = subprocess.run(probe, capture_output=True, text=True, timeout=10)
                got = parse_json_stdout(res.stdout) or {}
                if res.returncode == 0 and num(got.get("errors")) == 0:
                    return None
                last = (res.stderr.strip().splitlines() or [""])[-1][:200]
            except (OSError, subprocess.TimeoutExpired) as e:
                last = str(e)
            time.sleep(0.1)
        return f"no clean ping-pong through {HOST}:{port} within {timeout:.0f} s: {last}"

    def client_argv(self, sc: Scenario, variant: str, port: int, hgrm: Path, rate: float | None) -> list[str]:
        argv = [self.args.bin_test, "client", "--host", HOST, "--port", str(port)] + sc.clients.get(variant, sc.client)
        if self.args.client_threads:
            argv += ["--threads", str(self.args.client_threads)]
        if rate is not None:
            argv += ["--rate", fmt_num(rate)]
        return argv + ["--json", "--hgrm", str(hgrm)]

    # ---- one run

    def run_one(self, sc: Scenario, variant: str, rep: int, rate: float | None) -> dict:
        """One run; whatever happens (even Ctrl-C), its server and client do not outlive it."""
        self.live: list[subprocess.Popen] = []
        self.temp_files: list[Path] = []
        try:
            return self._run_one(sc, variant, rep, rate)
        finally:
            for f in self.temp_files:
                f.unlink(missing_ok=True)
            for p in reversed(self.live):
                if p.poll() is None:
                    p.kill()
                    try:
                        p.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        pass

    def _run_one(self, sc: Scenario, variant: str, rep: int, rate: float | None) -> dict:
        port = self.ports.take()
        tag = f"{sc.key}-{variant}-r{rep}"
        hgrm = self.rundir / f"{tag}.hgrm"
        rec: dict = {"scenario": sc.key, "server": variant, "rep": rep, "port": port,
                     "ok": False, "error": None, "notes": [], "metrics": {}, "hgrm": None}
        procs, self.temp_files = self.setup(variant, port, tag)
        client = self.client_argv(sc, variant, port, hgrm, rate)
        # Optional placement: taskset execs the program, so the pid stays the server's own.
        if self.args.server_cpus:
            procs = [(n, ["taskset", "-c", self.args.server_cpus] + argv, p) for n, argv, p in procs]
        if self.args.client_cpus:
            client = ["taskset", "-c", self.args.client_cpus] + client
        chain = [Server(n, argv, p, self.rundir, tag if i == len(procs) - 1 else f"{tag}.{n}")
                 for i, (n, argv, p) in enumerate(procs)]
        server = chain[-1]
        rec["server_cmd"] = shlex.join(server.argv)
        rec["server_cmds"] = [shlex.join(s.argv) for s in chain]
        rec["client_cmd"] = shlex.join(client)
        for s in self.temp_files:
            if s.suffix == ".cfg":
                rec["haproxy_cfg"] = s.read_text()
        started: list[Server] = []
        pushing_at = time.monotonic() + PUSH_AFTER_S  # (j), (k): the core's first push, near enough
        for s in chain:
            err = s.start()
            if s.proc is not None:
                self.live.append(s.proc)
                started.append(s)
            if err:
                rec["error"] = f"{s.name} failed to start: {err}" if len(chain) > 1 else f"server failed to start: {err}"
                for t in reversed(started):
                    t.stop()
                return rec
        if sc.key in HOP_KEYS or variant in PUSH_SETUPS:
            err = self.links_up(port, server.proc)
            if err:
                rec["error"] = f"set-up not ready: {err}"
                for t in reversed(started):
                    t.stop()
                return rec
        pid = server.proc.pid
        pids = [s.proc.pid for s in chain]
        rss_before = status_kib(pid, "VmRSS")
        fds_before = count_fds(pid)
        cpu_before = [cpu_seconds(p) for p in pids]
        # Behind a pushing core the server CPU counts from its first push, not through the logins.
        cpu_from, cpu_rebased = time.monotonic(), variant not in PUSH_SETUPS
        run_seconds = sc.duration if sc.duration is not None else self.args.duration
        limit = run_seconds + (180 if sc.key == "e" else 60)
        out_path = self.rundir / f"{tag}.client.out"
        err_path = self.rundir / f"{tag}.client.err"
        samples: list[tuple[int, int]] = []  # (fds, rss KiB) while the client runs
        t0 = time.monotonic()
        timed_out = False
        with open(out_path, "wb") as out, open(err_path, "wb") as errf:
            try:
                proc = subprocess.Popen(client, stdin=subprocess.DEVNULL, stdout=out, stderr=errf,
                                        start_new_session=True)
            except OSError as e:
                rec["error"] = f"bin_test could not start: {e}"
                for t in reversed(chain):
                    t.stop()
                return rec
            self.live.append(proc)
            while proc.poll() is None:
                if time.monotonic() - t0 > limit:
                    timed_out = True
                    proc.kill()
                    proc.wait()
                    break
                if not cpu_rebased and time.monotonic() >= pushing_at:
                    cpu_before, cpu_from, cpu_rebased = [cpu_seconds(p) for p in pids], time.monotonic(), True
                if sc.key == "e":
                    fds, rss = count_fds(pid), status_kib(pid, "VmRSS")
                    if fds is not None and rss is not None:
                        samples.append((fds, rss))
                time.sleep(0.1 if sc.key == "e" else 0.05)
        wall = time.monotonic() - t0
        cpu_wall = time.monotonic() - cpu_from
        cpu_after = [cpu_seconds(p) for p in pids]
        server_alive = all(s.proc.poll() is None for s in chain)
        code, killed = server.stop()
        for s in reversed(chain[:-1]):  # the front first, then what it forwards to
            c2, k2 = s.stop()
            if k2:
                rec["notes"].append(f"{s.name} did not stop within 10 s of SIGTERM and was killed")
        rec["client_exit"] = proc.returncode
        rec["client_wall_s"] = round(wall, 3)
        rec["server_exit"] = code
        if killed:
            rec["notes"].append("server did not stop within 10 s of SIGTERM and was killed")
        elif not server_alive:
            rec["notes"].append(f"server exited (code {code}) before the client finished")
        elif code not in (0, None) and (variant.startswith("gateway")
                                        or variant in ("access", "tiers", "echo-ref") + PUSH_SETUPS):
            rec["notes"].append(f"gateway exited with code {code} on SIGTERM (expected 0)")
        if None not in cpu_before and None not in cpu_after and cpu_wall > 0:
            rec["metrics"]["server_cpu_cores"] = (sum(cpu_after) - sum(cpu_before)) / cpu_wall
        if variant in PUSH_SETUPS:
            self.push_counts(rec, chain)
        if timed_out:
            rec["error"] = f"bin_test did not finish within {limit:.0f} s and was killed"
            return rec
        result = parse_json_stdout(out_path.read_text(errors="replace"))
        if sc.keep_errors and proc.returncode == 1 and result and num(result.get("replies")):
            first = (result.get("error_messages") or ["(none printed)"])[0]
            rec["notes"].append(f"bin_test exited 1 on errors; first: {first[:200]}")
        elif proc.returncode != 0:
            rec["error"] = (f"bin_test exited with code {proc.returncode}: "
                            + tail(err_path, 3).replace("\n", " | "))
            if result:
                rec["raw"] = result
            return rec
        if result is None:
            rec["error"] = "bin_test printed no JSON object on stdout"
            return rec
        rec["raw"] = result
        m = rec["metrics"]
        for key in ("replies_per_s", "mb_per_s", "errors", "connections_per_s", "alive_before", "alive_after"):
            v = num(result.get(key))
            if v is not None:
                m[key] = v
        lat = result.get("latency_us") or {}
        for key in ("p50", "p90", "p99", "p999", "max"):
            v = num(lat.get(key))
            if v is not None:
                m[f"{key}_us"] = v
        if m.get("errors"):
            rec["notes"].append(f"bin_test counted {int(m['errors'])} errors")
        cf = num(result.get("connect_failures"))
        if cf:
            rec["notes"].append(f"bin_test counted {int(cf)} connect failures")
        if rate is not None and m.get("replies_per_s", 0) < 0.95 * rate:
            rec["notes"].append(f"open loop fell behind: {m.get('replies_per_s', 0):,.0f} replies/s "
                                f"for {rate:,.0f} scheduled (latency counts from the schedule)")
        if sc.key == "e":
            self.idle_memory(rec, rss_before, fds_before, samples)
        if hgrm.exists() and hgrm.stat().st_size > 0:
            rec["hgrm"] = str(hgrm)
        rec["ok"] = rec["error"] is None
        return rec

    def push_counts(self, rec: dict, chain: list[Server]) -> None:
        """The core's pushes (its summary line) and the slow consumers the access gateway closed
        (push overflow_closed in its stop line), for (j) and (k)."""
        m = rec["metrics"]
        found = re.search(r"pushes=(\d+)", chain[0].out_path.read_text(errors="replace")
                          if chain[0].out_path.exists() else "")
        if found:
            m["pushes_sent"] = int(found.group(1))
        stop = [line for line in tail(chain[-1].err_path, 20).splitlines() if "stopped after" in line]
        closed = re.search(r"overflow_closed (\d+)", stop[-1]) if stop else None
        m["overflow_closed"] = int(closed.group(1)) if closed else 0
        if m["overflow_closed"]:
            rec["notes"].append(f"the access gateway closed {m['overflow_closed']:,} clients as slow consumers "
                                "(push_overflow close)")

    def idle_memory(self, rec: dict, rss_before, fds_before, samples) -> None:
        m = rec["metrics"]
        if rss_before is None or fds_before is None or not samples:
            rec["error"] = "could not read the server's /proc status"
            return
        top_fds = max(f for f, _ in samples)
        # RSS at the last sample that held the most connections.
        rss_held = [r for f, r in samples if f == top_fds][-1]
        held = top_fds - fds_before
        m["rss_before_kib"] = rss_before
        m["rss_held_kib"] = rss_held
        m["conns_held"] = held
        if held <= 0:
            rec["error"] = "the server never held the idle connections"
            return
        m["kib_per_conn"] = (rss_held - rss_before) / held
        alive = m.get("alive_after")
        if alive is not None and alive < IDLE_CONNS:
            rec["notes"].append(f"only {int(alive)} of {IDLE_CONNS} connections alive at the end")

    # ---- whole measurement

    def gateway_peak(self) -> float | None:
        vals = [r["metrics"]["replies_per_s"] for r in self.runs
                if r["scenario"] == "a" and r["server"] == "gateway" and r["ok"]
                and "replies_per_s" in r["metrics"]]
        if vals:
            return statistics.median(vals)
        return None

    def measure(self) -> None:
        keys = self.keys
        self.ensure_haproxy()
        total_runs = sum(len(self.scen[k].servers) for k in keys) * self.args.reps
        est = sum(len(self.scen[k].servers) * ((self.scen[k].duration or self.args.duration) + 3)
                  for k in keys) * self.args.reps
        log(f"{total_runs} runs, about {est / 60:.1f} min of measuring")
        n = 0
        for key in keys:
            sc = self.scen[key]
            rate = None
            if key == "g":
                rate = self.pick_rate()
                if rate is None:
                    self.rate_note = ("skipped: no successful gateway run in (a), so the peak rate "
                                      "and half of it are unknown")
                    log(f"{sc.title}: {self.rate_note}")
                    continue
            for rep in range(1, self.args.reps + 1):
                for variant in sc.servers:
                    n += 1
                    rec = self.run_one(sc, variant, rep, rate)
                    if rate is not None:
                        rec["rate"] = rate
                    self.runs.append(rec)
                    self.save()
                    log(f"[{n}/{total_runs}] {key} rep {rep} {variant:14s} "
                        + (summarise(sc, rec) if rec["ok"] else f"FAILED: {rec['error']}"))
                    time.sleep(0.3)

    def pick_rate(self) -> float | None:
        peak = self.gateway_peak()
        if peak is None and "a" not in self.args.scenarios.split(",") and self.args.rate:
            self.rate_note = f"R = {fmt_num(self.args.rate)} given with --rate"
            return self.args.rate
        if peak is None:
            return None
        rate = float(int(peak / 2))
        self.rate_note = (f"R = {int(rate):,} requests/s = half of the gateway's median "
                          f"{peak:,.0f} replies/s in (a)")
        return rate

    def save(self) -> None:
        meta = self.meta()
        meta["loadavg_end"] = getattr(self, "loadavg_end", [])
        meta["measure_s"] = getattr(self, "measure_s", None)
        data = {"meta": meta, "runs": self.runs, "rate_note": self.rate_note}
        (self.rundir / "results.json").write_text(json.dumps(data, indent=1))

    def meta(self) -> dict:
        return self.machine | {
            "duration_s": self.args.duration, "reps": self.args.reps,
            "idle_duration_s": self.args.idle_duration, "scenarios": self.args.scenarios,
            "client_threads": self.args.client_threads,
            "servers": self.args.servers,
            "many_conns": self.args.many_conns,
            "server_cpus": self.args.server_cpus, "client_cpus": self.args.client_cpus,
            "keys": self.keys, "haproxy": getattr(self, "haproxy_version", ""),
            "haproxy_note": self.haproxy_note,
        }


def summarise(sc: Scenario, rec: dict) -> str:
    m = rec["metrics"]
    parts = []
    if sc.key == "e":
        if "kib_per_conn" in m:
            parts.append(f"{m['kib_per_conn']:.2f} KiB/conn ({int(m['conns_held'])} held)")
    elif sc.key == "d":
        parts.append(f"{m.get('connections_per_s', 0):,.0f} conn/s")
    else:
        what = "deliveries/s" if rec["server"] in PUSH_SETUPS else "replies/s"
        parts.append(f"{m.get('replies_per_s', 0):,.0f} {what}")
    if "p50_us" in m:
        parts.append(f"p50 {m['p50_us']:.1f} us p99 {m.get('p99_us', 0):.1f} us")
    if "server_cpu_cores" in m:
        parts.append(f"server {m['server_cpu_cores']:.2f} cores")
    for note in rec["notes"]:
        parts.append(f"note: {note}")
    return ", ".join(parts)


# --------------------------------------------------------------------------- machine


def sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_info() -> dict:
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = read_status_kib_file("/proc/meminfo", "MemTotal")
    return {
        "nproc": os.cpu_count(),
        "model": model or platform.processor(),
        "kernel": platform.release(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "mem_gib": round(mem / 1024 / 1024, 1) if mem else None,
        "swift": sh(["swift", "--version"]).splitlines()[0] if sh(["swift", "--version"]) else "",
        "cc": sh(["cc", "--version"]).splitlines()[0] if sh(["cc", "--version"]) else "",
        "loadavg": open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else [],
        "nofile": sh(["sh", "-c", "ulimit -n"]),
    }


def read_status_kib_file(path: str, key: str) -> int | None:
    try:
        for line in open(path):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


# --------------------------------------------------------------------------- report


METRIC_TEXT = {
    "replies_per_s": ("replies/s", "{:,.0f}"),
    "connections_per_s": ("connections/s", "{:,.0f}"),
    "mb_per_s": ("MB/s", "{:,.1f}"),
    "p50_us": ("p50 µs", "{:,.1f}"),
    "p90_us": ("p90 µs", "{:,.1f}"),
    "p99_us": ("p99 µs", "{:,.1f}"),
    "p999_us": ("p99.9 µs", "{:,.1f}"),
    "max_us": ("max µs", "{:,.0f}"),
    "kib_per_conn": ("KiB per connection", "{:,.2f}"),
    "server_cpu_cores": ("server CPU (cores)", "{:.2f}"),
    "rss_before_kib": ("VmRSS before, KiB", "{:,.0f}"),
    "rss_held_kib": ("VmRSS held, KiB", "{:,.0f}"),
    "conns_held": ("connections held", "{:,.0f}"),
    "pushes_sent": ("pushes sent (core)", "{:,.0f}"),
    "overflow_closed": ("slow consumers closed", "{:,.0f}"),
}

COLUMNS = {
    "a": ["replies_per_s", "mb_per_s", "p50_us", "p99_us", "p999_us", "server_cpu_cores"],
    "b": ["p50_us", "p90_us", "p99_us", "p999_us", "replies_per_s", "server_cpu_cores"],
    "c": ["replies_per_s", "p50_us", "p99_us", "p999_us", "server_cpu_cores"],
    "d": ["connections_per_s", "p50_us", "p99_us", "server_cpu_cores"],
    "e": ["kib_per_conn", "rss_before_kib", "rss_held_kib", "conns_held"],
    "f": ["replies_per_s", "mb_per_s", "p50_us", "p99_us", "p999_us", "server_cpu_cores"],
    "g": ["p50_us", "p90_us", "p99_us", "p999_us", "max_us", "replies_per_s", "server_cpu_cores"],
    "h": ["replies_per_s", "mb_per_s", "p50_us", "p99_us", "p999_us", "server_cpu_cores"],
    "hp": ["p50_us", "p90_us", "p99_us", "p999_us", "replies_per_s", "server_cpu_cores"],
    "j": ["replies_per_s", "p50_us", "p99_us", "p999_us", "server_cpu_cores", "pushes_sent", "overflow_closed"],
    "k": ["p50_us", "p99_us", "p999_us", "max_us", "replies_per_s", "server_cpu_cores", "overflow_closed"],
}


def stats(values: list[float]) -> tuple[float, float, float] | None:
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def cell(metric: str, values: list[float]) -> str:
    s = stats(values)
    if s is None:
        return "–"
    fmtr = METRIC_TEXT[metric][1]
    med, lo, hi = s
    if len(values) == 1:
        return fmtr.format(med)
    return f"{fmtr.format(med)} ({fmtr.format(lo)}–{fmtr.format(hi)})"


def values_of(runs: list[dict], scenario: str, server: str, metric: str) -> list[float]:
    return [r["metrics"][metric] for r in runs
            if r["scenario"] == scenario and r["server"] == server and r["ok"] and metric in r["metrics"]]


def ratio(a: list[float], b: list[float]) -> str:
    if not a or not b:
        return "–"
    mb = statistics.median(b)
    if mb == 0:
        return "–"
    return f"{statistics.median(a) / mb:.2f}"


def write_report(data: dict, scen: dict[str, Scenario], out: Path, pictures: list[str],
                 picture_error: str, perf_dir: Path, total_s: float | None, measure_s: float,
                 build_notes: list[str], micro: str) -> None:
    meta = data["meta"]
    runs = data["runs"]
    keys = meta.get("keys") or expand([k for k in meta["scenarios"].split(",") if k])
    L: list[str] = []
    w = L.append
    w("# perf results")
    w("")
    w(f"Written by `perf/run.sh` on {meta['date']}. "
      + (f"The whole run (builds, measuring, pictures) took {total_s / 60:.1f} min; " if total_s else "")
      + (f"measuring took {measure_s / 60:.1f} min." if measure_s else ""))
    w("")
    w(f"Each figure is the **median of {meta['reps']} runs**, with the min–max spread in brackets. "
      f"Runs alternate between the servers (A B C A B C ...); every run starts its server fresh on "
      f"127.0.0.1 with a port of its own and stops it after. Duration per run: "
      f"{fmt_num(meta['duration_s'])} s ((e) holds its connections {fmt_num(meta['idle_duration_s'])} s). "
      "Latencies are what bin_test measured from send to reply, in microseconds. "
      "Sizes are bin_test's `--size`, the frame body: every frame carries 18 header bytes more.")
    w("")
    w("## Machine")
    w("")
    w(f"- cores (nproc): {meta['nproc']}; model: {meta['model']}; memory: {meta.get('mem_gib')} GiB")
    w(f"- kernel: {meta['kernel']}; open files limit: {meta.get('nofile')}")
    w(f"- {meta.get('swift', '')}; {meta.get('cc', '')}")
    w(f"- load average (1, 5, 15 min) when the run began: {' '.join(meta.get('loadavg', []))}; "
      f"when it ended: {' '.join(meta.get('loadavg_end', [])) or '–'}. Client and server share "
      "these cores, so every figure includes the load tool's own cost; a 5-minute load well "
      "above what the run itself makes means other work was on the machine.")
    w(f"- placement: servers on CPUs {meta.get('server_cpus') or 'any (no taskset)'}, "
      f"bin_test on CPUs {meta.get('client_cpus') or 'any (no taskset)'}; the gateway runs its "
      "own threads, SwiftNIO and C one event loop per core")
    w(f"- date: {meta['date']}")
    w("")
    if build_notes:
        w("## Build problems")
        w("")
        for note in build_notes:
            w(f"- {note}")
        w("")

    # ---- summary
    w("## Summary")
    w("")
    w("Ratios are gateway ÷ C and gateway ÷ SwiftNIO on the medians"
      + ("; in (h), gateway ÷ HAProxy and gateway ÷ the direct echo" if "h" in keys else "")
      + ". For throughput a ratio above 1 "
      "means the gateway is faster; for latency and memory a ratio below 1 means the gateway is better.")
    w("")
    side_by_side = [k for k in keys if k in "abcdeg"]
    # With C run at one thread as well (--servers ...,c1), the ratio is against the better C median.
    with_c1 = any(r["server"] == "c1" for r in runs)
    if side_by_side and with_c1:
        w("| scenario | figure | gateway | SwiftNIO | C epoll, 2 threads | C epoll, 1 thread | gateway / best C "
          "| gateway / NIO |")
        w("|---|---|---:|---:|---:|---:|---:|---:|")
    elif side_by_side:
        w("| scenario | figure | gateway | SwiftNIO | C epoll | gateway / C | gateway / NIO |")
        w("|---|---|---:|---:|---:|---:|---:|")
    for key in side_by_side:
        sc = scen[key]
        if key in ("f",) + HOP_KEYS:
            continue
        if key == "g" and not any(r["scenario"] == "g" for r in runs):
            continue
        metrics = [sc.primary] + (["p50_us"] if key == "g" else [])
        for metric in metrics:
            g = values_of(runs, key, "gateway", metric)
            n = values_of(runs, key, "nio", metric)
            c = values_of(runs, key, "c", metric)
            if with_c1:
                c1 = values_of(runs, key, "c1", metric)
                best = max if sc.higher_is_better else min
                cs = [v for v in (c, c1) if v]
                best_c = best(cs, key=statistics.median) if cs else []
                w(f"| {sc.title.split(')')[0]}) | {METRIC_TEXT[metric][0]} | {cell(metric, g)} | "
                  f"{cell(metric, n)} | {cell(metric, c)} | {cell(metric, c1)} | {ratio(g, best_c)} | "
                  f"{ratio(g, n)} |")
                continue
            w(f"| {sc.title.split(')')[0]}) | {METRIC_TEXT[metric][0]} | {cell(metric, g)} | "
              f"{cell(metric, n)} | {cell(metric, c)} | {ratio(g, c)} | {ratio(g, n)} |")
    if "f" in keys:
        sc = scen["f"]
        e = values_of(runs, "f", "gateway-epoll", sc.primary)
        p = values_of(runs, "f", "gateway-poll", sc.primary)
        w("")
        w("| scenario | figure | gateway --poller epoll | gateway --poller poll | poll / epoll |")
        w("|---|---|---:|---:|---:|")
        for metric in ("replies_per_s", "p99_us"):
            e = values_of(runs, "f", "gateway-epoll", metric)
            p = values_of(runs, "f", "gateway-poll", metric)
            w(f"| (f) | {METRIC_TEXT[metric][0]} | {cell(metric, e)} | {cell(metric, p)} | {ratio(p, e)} |")
    if "h" in keys:
        if side_by_side or "f" in keys:
            w("")
        hop_summary(w, runs, scen["h"].servers)
    if "j" in keys or "k" in keys:
        if side_by_side or "f" in keys or "h" in keys:
            w("")
        push_summary(w, runs, keys)
    w("")

    # ---- pictures
    if pictures or picture_error:
        w("## Pictures")
        w("")
        if picture_error:
            w(f"No pictures: {picture_error}")
            w("")
        for pic in pictures:
            w(f"![{pic}]({pic})")
            w("")

    # ---- details
    w("## Scenarios in detail")
    w("")
    for key in keys:
        sc = scen[key]
        w(f"### {sc.title}")
        w("")
        w(sc.what)
        w("")
        if key == "g":
            w(data.get("rate_note") or "")
            w("")
        if key == "h" and meta.get("haproxy"):
            w(f"{meta['haproxy']}; its configuration:")
            w("")
            first = next((r for r in runs if r.get("haproxy_cfg")), None)
            cfg = first["haproxy_cfg"] if first else ""
            if cfg:
                cfg = cfg.replace(f":{first['port']}\n", ":PORT\n")
                back = back_port(first.get("server_cmds", []))
                if back:
                    cfg = cfg.replace(f":{back}\n", ":PORT2\n")
                w("(`HAPROXY_CFG` below, a temporary file written per run and removed after it; "
                  "PORT is the port the client uses, PORT2 the echo's behind it.)")
                w("")
                w("```")
                w(cfg.rstrip())
                w("```")
                w("")
        if key == "h" and meta.get("haproxy_note"):
            w(meta["haproxy_note"])
            w("")
        srv_runs = [r for r in runs if r["scenario"] == key]
        if not srv_runs:
            w("No runs.")
            w("")
            continue
        cols = COLUMNS[key]
        w("| server | runs ok | " + " | ".join(METRIC_TEXT[c][0] for c in cols) + " | errors |")
        w("|---|---:|" + "---:|" * len(cols) + "---:|")
        for variant in sc.servers:
            rr = [r for r in srv_runs if r["server"] == variant]
            ok = sum(1 for r in rr if r["ok"])
            errs = sum(int(r["metrics"].get("errors", 0)) for r in rr if r["ok"])
            w(f"| {SERVER_LABEL[variant]} | {ok}/{len(rr)} | "
              + " | ".join(cell(c, values_of(runs, key, variant, c)) for c in cols) + f" | {errs} |")
        w("")
        w("Commands, paths from the repository root (PORT is a fresh port for every run, PORT2 and on "
          "those of the processes behind it, N the repetition):")
        w("")
        w("```")
        seen = set()
        for variant in sc.servers:
            rr = [r for r in srv_runs if r["server"] == variant]
            if not rr:
                continue
            port = str(rr[0]["port"])
            cmds = rr[0].get("server_cmds", [rr[0]["server_cmd"]])
            # The ports of the set-up's processes behind the front, in start order: PORT2, PORT3, ...
            backs = [m.group(1) for c in cmds[:-1] if (m := re.search(r"--port (\d+)", c))]
            for cmd in cmds + [rr[0]["client_cmd"]]:
                cmd = cmd.replace(f"--port {port}", "--port PORT")
                for i, back in enumerate(backs):
                    cmd = cmd.replace(f"--port {back}", f"--port PORT{i + 2}").replace(f":{back}", f":PORT{i + 2}")
                cmd = re.sub(r"/\S*/perf-[^ ]*\.haproxy\.cfg", "HAPROXY_CFG", cmd)
                cmd = cmd.replace(str(perf_dir.parent) + "/", "")
                cmd = shlex_hgrm(cmd)
                if cmd not in seen:
                    seen.add(cmd)
                    w(cmd)
        w("```")
        w("")

    # ---- failures
    bad = [r for r in runs if not r["ok"] or r["notes"]]
    w("## Failures and notes")
    w("")
    if not bad:
        w("None: every run started its server, bin_test exited 0 with a JSON result, and every "
          "server stopped on SIGTERM.")
    for r in bad:
        what = r["error"] if not r["ok"] else "; ".join(r["notes"])
        if not r["ok"] and r["notes"]:
            what += " (" + "; ".join(r["notes"]) + ")"
        w(f"- ({r['scenario']}) {SERVER_LABEL[r['server']]}, run {r['rep']}: {what}")
    w("")
    if micro:
        w("## Micro-benchmarks")
        w("")
        w("`cd perf && swift package benchmark --no-progress` (ordo-one/benchmark):")
        w("")
        w("```")
        w(micro.rstrip())
        w("```")
        w("")
    w("Raw output (JSON per run, .hgrm files, server and client logs) stays in "
      "`perf/runs/` (not committed).")
    out.write_text("\n".join(L) + "\n")


def back_port(server_cmds: list[str]) -> str | None:
    """The port of what a two-process set-up forwards to (its first command's --port)."""
    if len(server_cmds) < 2:
        return None
    m = re.search(r"--port (\d+)", server_cmds[0])
    return m.group(1) if m else None


def hop_summary(w, runs: list[dict], servers: list[str]) -> None:
    """(h)/(i): the gateway as access hop against HAProxy, and against the direct echo."""
    cols = [s for s in ("access", "haproxy", "tiers", "direct") if s in servers]
    head = ["gateway --upstream -> core", "HAProxy -> C echo", "gateway / HAProxy",
            "three tiers (i)", "three tiers / gateway", "direct echo (no hop)", "gateway / direct"]
    keep = [True, "haproxy" in cols, "haproxy" in cols, "tiers" in cols, "tiers" in cols,
            "direct" in cols, "direct" in cols]
    w("| scenario | figure | " + " | ".join(h for h, k in zip(head, keep) if k) + " |")
    w("|---|---|" + "---:|" * sum(keep))
    for key, metric in (("h", "replies_per_s"), ("hp", "p50_us"), ("h", "p99_us")):
        g = values_of(runs, key, "access", metric)
        hx = values_of(runs, key, "haproxy", metric)
        t = values_of(runs, key, "tiers", metric)
        d = values_of(runs, key, "direct", metric)
        row = [cell(metric, g), cell(metric, hx), ratio(g, hx), cell(metric, t), ratio(t, g),
               cell(metric, d), ratio(g, d)]
        label = "(h) load" if key == "h" else "(h) ping-pong"
        w(f"| {label} | {METRIC_TEXT[metric][0]} | " + " | ".join(c for c, k in zip(row, keep) if k) + " |")


def push_summary(w, runs: list[dict], keys: list[str]) -> None:
    """(j): deliveries/s beside the same gateway's echo replies/s; (k): push latency, one tier and two."""
    w("| scenario | figure | A | B | B / A |")
    w("|---|---|---:|---:|---:|")
    if "j" in keys:
        b = values_of(runs, "j", "broadcast", "replies_per_s")
        e = values_of(runs, "j", "echo-ref", "replies_per_s")
        w(f"| (j) | A: echo replies/s (32 x 16 x 512 B), B: broadcast deliveries/s | "
          f"{cell('replies_per_s', e)} | {cell('replies_per_s', b)} | {ratio(b, e)} |")
    if "k" in keys:
        for metric in ("p50_us", "p99_us", "p999_us"):
            a = values_of(runs, "k", "push-access", metric)
            t = values_of(runs, "k", "push-tiers", metric)
            w(f"| (k) | {METRIC_TEXT[metric][0]}, A: access alone, B: aggregation + access | "
              f"{cell(metric, a)} | {cell(metric, t)} | {ratio(t, a)} |")


def shlex_hgrm(cmd: str) -> str:
    # Show the histogram file by its scenario/server name only.
    parts = cmd.split(" ")
    for i, p in enumerate(parts[:-1]):
        if p == "--hgrm":
            parts[i + 1] = "perf/runs/STAMP/" + Path(parts[i + 1]).name.replace("-r1.", "-rN.")
    return " ".join(parts)


# --------------------------------------------------------------------------- main


def make_pictures(args, rundir: Path, perf_dir: Path) -> tuple[list[str], str]:
    if args.no_plots:
        return [], "turned off with --no-plots"
    py = args.plot_python
    if not py or not Path(py).exists():
        return [], "matplotlib is not installed (perf/.venv could not be made)"
    try:
        res = subprocess.run([py, str(perf_dir / "plot.py"), "--results", str(rundir / "results.json"),
                              "--out-dir", str(perf_dir)], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return [], f"plot.py failed: {e}"
    (rundir / "plot.log").write_text(res.stdout + res.stderr)
    if res.returncode != 0:
        last = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ""
        return [], f"plot.py exited with code {res.returncode}: {last}"
    pics = [line.strip() for line in res.stdout.splitlines() if line.strip().endswith(".png")]
    return [Path(p).name for p in pics], ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--perf-dir", default=str(Path(__file__).resolve().parent))
    ap.add_argument("--run-dir", required=True, help="where raw output goes")
    ap.add_argument("--gateway", required=True)
    ap.add_argument("--bin-test", required=True)
    ap.add_argument("--nio", required=True)
    ap.add_argument("--c-echo", required=True)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--idle-duration", type=float, default=5.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--scenarios", default="a,b,c,d,e,f,g,h,i,j,k")
    ap.add_argument("--rate", type=float, default=None, help="(g) rate when (a) is not run")
    ap.add_argument("--client-threads", type=int, default=None)
    ap.add_argument("--servers", default=None,
                    help="servers of (a)-(d), comma-separated: gateway, nio, c (one thread a core), c1 (one thread), "
                    "prev (--gateway-prev)")
    ap.add_argument("--many-conns", type=int, default=1000, help="(c)'s connections")
    ap.add_argument("--gateway-prev", default=None, help="an earlier gateway build, server `prev` in --servers")
    ap.add_argument("--server-cpus", default=None, help="run servers under taskset -c LIST")
    ap.add_argument("--client-cpus", default=None, help="run bin_test under taskset -c LIST")
    ap.add_argument("--plot-python", default=None)
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--build-notes", default=None, help="file: one build problem a line")
    ap.add_argument("--micro", default=None, help="file with micro-benchmark output")
    ap.add_argument("--started", type=float, default=None, help="epoch seconds the whole run began")
    ap.add_argument("--results", default="RESULTS.md")
    ap.add_argument("--report-only", action="store_true", help="rewrite RESULTS.md from run-dir/results.json")
    args = ap.parse_args()
    if args.reps < 3:
        log(f"--reps {args.reps} raised to 3: medians need at least three runs")
        args.reps = 3
    keys = [k for k in args.scenarios.split(",") if k]
    unknown = [k for k in keys if k not in SELECTABLE]
    if unknown:
        print(f"unknown scenarios: {unknown}", file=sys.stderr)
        return 2

    runner = Runner(args)
    t0 = time.monotonic()
    if args.report_only:
        data = json.loads((runner.rundir / "results.json").read_text())
    else:
        runner.measure()
        runner.loadavg_end = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else []
        runner.measure_s = time.monotonic() - t0
        runner.save()
        data = json.loads((runner.rundir / "results.json").read_text())
    measure_s = float(data["meta"].get("measure_s") or 0.0)
    pics, pic_err = make_pictures(args, runner.rundir, runner.perf)
    notes = []
    if args.build_notes and Path(args.build_notes).exists():
        notes = [l.strip() for l in Path(args.build_notes).read_text().splitlines() if l.strip()]
    micro = Path(args.micro).read_text(errors="replace") if args.micro and Path(args.micro).exists() else ""
    if micro:
        micro = re.sub(r"\x1b\[[0-9;]*m", "", micro)  # no terminal colours in Markdown
        start = micro.find("Running Benchmarks")
        if start >= 0:  # drop the build lines before the tables
            micro = micro[micro.rfind("\n", 0, start) + 1:]
    total = (time.time() - args.started) if args.started else None
    out = runner.perf / args.results
    write_report(data, runner.scen, out, pics, pic_err, runner.perf, total, measure_s, notes, micro)
    log(f"wrote {out}")
    failed = sum(1 for r in data["runs"] if not r["ok"])
    if failed:
        log(f"{failed} of {len(data['runs'])} runs failed; see 'Failures and notes' in {out.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
