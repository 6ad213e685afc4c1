#!/usr/bin/env python3
"""How Linux spreads connections over an SO_REUSEPORT group, without the gateway (issue 17).

N listening sockets on 127.0.0.1 in one group, as a master holds them; C connections opened one at a
time GAP seconds apart, or in a burst from T threads; then each socket's accept queue is counted.
The kernel's own placement (a hash of the four-tuple) against the gateway's steering program
(classic BPF: a random number modulo N, SO_ATTACH_REUSEPORT_CBPF). Prints, per run, the counts, and
at the end the worst deviation from the mean and how many runs fell outside +-25% of it.

    perf/reuseport_spread.py N C GAP hash|bpf THREADS RUNS
    perf/reuseport_spread.py 4 200 0 hash 8 100
"""
import ctypes
import socket
import struct
import sys
import threading
import time

SO_ATTACH_REUSEPORT_CBPF = 51
# BPF_LD|BPF_W|BPF_ABS of SKF_AD_OFF + SKF_AD_RANDOM; BPF_ALU|BPF_MOD|BPF_K; BPF_RET|BPF_A
RANDOM_LOAD = (0x20, 0, 0, (-0x1000 + 56) & 0xFFFFFFFF)


def steer(sock, n):
    code = [RANDOM_LOAD, (0x94, 0, 0, n), (0x16, 0, 0, 0)]
    buf = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in code))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, struct.pack("HL", len(code), ctypes.addressof(buf)))


def group(n, program):
    socks, port = [], 0
    for _ in range(n):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", port))
        s.listen(4096)
        port = s.getsockname()[1]
        socks.append(s)
    if program:
        steer(socks[0], n)
    return socks, port


def queued(socks):
    counts = []
    for s in socks:
        s.setblocking(False)
        k = 0
        while True:
            try:
                a, _ = s.accept()
            except BlockingIOError:
                break
            a.close()
            k += 1
        counts.append(k)
    return counts


def established(port):
    """Server-side connections to `port` in ESTABLISHED (state 01), queued or accepted."""
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return sum(1 for r in rows if r[1].endswith(f":{port:04X}") and r[3] == "01")


def run(n, conns, gap, program, threads):
    socks, port = group(n, program)
    clients, lock = [], threading.Lock()

    def connect(k):
        for _ in range(k):
            c = socket.create_connection(("127.0.0.1", port))
            with lock:
                clients.append(c)
            if gap:
                time.sleep(gap)
    ts = [threading.Thread(target=connect, args=(conns // threads,)) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    deadline = time.time() + 10  # until every handshake has finished, for at most 10 s
    while established(port) < conns and time.time() < deadline:
        time.sleep(0.01)
    counts = queued(socks)
    for c in clients + socks:
        c.close()
    return counts


def main():
    n, conns, gap, how, threads, runs = (int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4],
                                         int(sys.argv[5]), int(sys.argv[6]))
    worst, outside = 0.0, 0
    for r in range(runs):
        counts = run(n, conns, gap, how == "bpf", threads)
        mean = sum(counts) / n
        dev = max(abs(x - mean) / mean for x in counts)
        worst, outside = max(worst, dev), outside + (dev > 0.25)
        if r < 3:
            print(counts)
    print(f"N={n} connections={conns} gap={gap}s {how} threads={threads} runs={runs}: "
          f"worst deviation {worst:.0%}, outside +-25% in {outside} of {runs}")


if __name__ == "__main__":
    main()
