#!/usr/bin/env python3
"""An awkward shape on release binaries, as a user's client meets it: TLS 1.3 clients with requests held at
a core (bin_test core --delay-us) when the core dies. Each TLS client that had frames on the link must hear
one upstream_lost with the seq of its last frame, a TLS client that sent nothing hears nothing, nobody is
closed, and each is answered no_upstream while the core is down. Exits 1 on any miss.
  python3 perf/tls_core_killed.py [--bin DIR] [--clients N]     (DIR: release binaries, default .build/release)
"""
import argparse, os, socket, ssl, struct, subprocess, sys, tempfile, time

from common import free_port, wait_port

HEADER = struct.Struct(">IIHII")
HEARTBEAT, UPSTREAM_LOST, NO_UPSTREAM, LOST_STATUS = 0xFF01, 0xFF03, 0xFFFFFF01, 0xFFFFFF04


def frame(seq, cmd=1, body=b""):
    return HEADER.pack(HEADER.size + len(body), seq, cmd, 0, 0) + body


def read_frame(s):
    head = b""
    while len(head) < HEADER.size:
        chunk = s.recv(HEADER.size - len(head))
        if not chunk:
            return None
        head += chunk
    length, seq, cmd, status, uid = HEADER.unpack(head)
    body = b""
    while len(body) < length - HEADER.size:
        chunk = s.recv(length - HEADER.size - len(body))
        if not chunk:
            return None
        body += chunk
    return seq, cmd, status, body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", ".build", "release"))
    ap.add_argument("--clients", type=int, default=50)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="tls-core-killed-")
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1"], check=True,
                   capture_output=True)
    core_port, port = free_port(), free_port()
    core = subprocess.Popen([os.path.join(a.bin, "bin_test"), "core", "--port", str(core_port), "--delay-us", "300000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gw = subprocess.Popen([os.path.join(a.bin, "gateway"), "--listen", f"tls://127.0.0.1:{port}", "--tls-cert", cert,
                           "--tls-key", key, "--upstream", f"127.0.0.1:{core_port}", "--stats-interval", "0"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    misses = []
    try:
        wait_port(core_port)
        wait_port(port)
        time.sleep(1)  # the links come up
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3

        def connect():
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20))
            s.settimeout(20)
            return s
        clients = [connect() for _ in range(a.clients)]
        quiet = connect()
        for i, c in enumerate(clients):
            c.sendall(b"".join(frame(1000 * i + k, body=bytes(32)) for k in range(3)))
        time.sleep(0.1)  # every request is at the core, held 0.3 s each
        core.kill()
        core.wait()
        for i, c in enumerate(clients):
            # Replies the core sent before it died may come first; then exactly one notice.
            c.sendall(frame(7, cmd=HEARTBEAT))
            notices = []
            while True:
                f = read_frame(c)
                if f is None:
                    misses.append(f"client {i}: closed")
                    break
                if f[1] == HEARTBEAT:
                    break
                if f[1] == UPSTREAM_LOST:
                    notices.append(f)
            if len(notices) != 1 or notices[0][2] != LOST_STATUS or notices[0][0] != 1000 * i + 2:
                misses.append(f"client {i}: notices {[(n[0], n[2]) for n in notices]}")
                continue
            c.sendall(frame(9, body=b"x"))
            f = read_frame(c)
            if f is None or f[2] != NO_UPSTREAM:
                misses.append(f"client {i}: while the core is down {f}")
        quiet.sendall(frame(8, cmd=HEARTBEAT))
        f = read_frame(quiet)
        if f is None or f[1] != HEARTBEAT:
            misses.append(f"the quiet client got {f}")
    finally:
        gw.terminate()
        gw.wait(10)
        core.kill()
    print(f"{a.clients} TLS 1.3 clients with 3 requests each held at a killed core: "
          f"{'every one told once, seq of its last frame, none closed' if not misses else misses[:5]}")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
