#!/usr/bin/env bash
# perf/profile.sh: where the time goes, the gateway beside the lean C echo server.
#
#   perf/profile.sh callgrind [--count N] [--conns C] [--pipeline D] [--size B]
#       Each server under valgrind's callgrind, instrumentation switched on only once it listens:
#       bin_test client sends exactly N requests; instructions (user space, every thread) per reply,
#       the gateway's ÷ C's, and the top functions of each. Noise-free: the same count gives the
#       same figure on a loaded machine.
#   perf/profile.sh cpuclock [--seconds S] [--conns C] [--pipeline D] [--size B]
#       `perf record -e cpu-clock -g` on each server for S seconds of closed-loop load (this VM has
#       no hardware counters): the share of samples in the kernel and in user space, and the top
#       symbols (Swift names demangled).
#   perf/profile.sh syscalls [--count N] [--conns C] [--pipeline D] [--size B]
#       `perf stat` on each server (every thread) while bin_test sends exactly N requests: system
#       calls by name, context switches and CPU time, each per reply. The kernel's share is where
#       cpuclock puts the time; this says which calls and wake-ups make it. C runs with 1 and 2 threads.
#
# Binaries: PERF_GATEWAY, PERF_BIN_TEST (default .build-perf/release/), PERF_C_ECHO (built here).
# Output under perf/runs/profile-STAMP/.
set -euo pipefail
PERF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$PERF_DIR")
MODE=${1:-callgrind}; shift || true
COUNT=20000 CONNS=32 PIPELINE=16 SIZE=512 SECONDS_=5
while [ $# -gt 0 ]; do
    case "$1" in
        --count) COUNT=$2; shift 2 ;;
        --conns) CONNS=$2; shift 2 ;;
        --pipeline) PIPELINE=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        --seconds) SECONDS_=$2; shift 2 ;;
        *) echo "profile.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
GATEWAY=${PERF_GATEWAY:-$ROOT/.build-perf/release/gateway}
BIN_TEST=${PERF_BIN_TEST:-$ROOT/.build-perf/release/bin_test}
C_ECHO=${PERF_C_ECHO:-$PERF_DIR/.build/c_echo}
if [ -z "${PERF_C_ECHO:-}" ]; then
    mkdir -p "$PERF_DIR/.build"
    cc -O2 -g -pthread -o "$C_ECHO" "$PERF_DIR/peers/c_echo/echo.c"
fi
OUT="$PERF_DIR/runs/profile-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/summary.txt"

wait_listening() {  # PORT
    for _ in $(seq 1 600); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "profile.sh: nothing listens on $1" >&2; return 1
}

# server NAME PORT: the command line of each server (C with one thread: the client shares the cores).
server() {
    case "$1" in
        gateway) echo "$GATEWAY --host 127.0.0.1 --port $2" ;;
        c) echo "$C_ECHO --host 127.0.0.1 --port $2 --threads 1" ;;
        c2) echo "$C_ECHO --host 127.0.0.1 --port $2 --threads 2" ;;
    esac
}

client() {  # PORT EXTRA...
    local port=$1; shift
    "$BIN_TEST" client --host 127.0.0.1 --port "$port" --mode load --conns "$CONNS" --pipeline "$PIPELINE" \
        --size "$SIZE" "$@" --json
}

replies_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["replies"])' "$1"; }

case "$MODE" in
callgrind)
    port=9300
    for name in gateway c; do
        port=$((port + 1))
        # shellcheck disable=SC2046
        valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.$name" \
            $(server $name $port) > "$OUT/$name.log" 2>&1 &
        pid=$!
        wait_listening $port
        callgrind_control -i on $pid > /dev/null
        client $port --count "$COUNT" --duration 600 > "$OUT/client-$name.json"
        callgrind_control -i off $pid > /dev/null
        kill -TERM $pid; wait $pid || true
        replies=$(replies_of "$OUT/client-$name.json")
        callgrind_annotate --inclusive=no "$OUT/callgrind.$name" 2>/dev/null | swift demangle --simplified \
            > "$OUT/annotate.$name.txt"
        ir=$(grep -m1 'PROGRAM TOTALS' "$OUT/annotate.$name.txt" | tr -d ',' | awk '{print $1}')
        echo "$name: $ir instructions over $replies replies = $((ir / replies)) per reply" | tee -a "$OUT/summary.txt"
        eval "ir_$name=$ir replies_$name=$replies"
    done
    python3 -c "print(f'gateway / C instructions per reply: {($ir_gateway/$replies_gateway)/($ir_c/$replies_c):.2f}')" \
        | tee -a "$OUT/summary.txt"
    ;;
cpuclock)
    port=9400
    for name in gateway c; do
        port=$((port + 1))
        # shellcheck disable=SC2046
        $(server $name $port) > "$OUT/$name.log" 2>&1 &
        pid=$!
        wait_listening $port
        client $port --duration $((SECONDS_ + 2)) > "$OUT/client-$name.json" &
        cpid=$!
        sleep 1
        perf record -e cpu-clock -g -p $pid -o "$OUT/perf.$name.data" -- sleep "$SECONDS_" > /dev/null 2>&1
        wait $cpid || true
        kill -TERM $pid; wait $pid || true
        perf report -i "$OUT/perf.$name.data" --no-children --sort dso,sym --stdio 2>/dev/null \
            | swift demangle --simplified > "$OUT/report.$name.txt"
        # awk reads to the end: `head` would stop perf report with SIGPIPE, and pipefail the script.
        perf report -i "$OUT/perf.$name.data" --no-children --sort dso --stdio -g none 2>/dev/null \
            | awk '/%/ && n < 8 { print; n++ }' | sed "s/^/$name dso: /" | tee -a "$OUT/summary.txt"
        echo "$name: $(replies_of "$OUT/client-$name.json") replies" | tee -a "$OUT/summary.txt"
    done
    ;;
syscalls)
    port=9500
    calls="read readv recvfrom write writev sendmsg epoll_wait epoll_pwait epoll_ctl futex sched_yield"
    events="context-switches,cpu-migrations,task-clock,raw_syscalls:sys_enter"
    for c in $calls; do events="$events,syscalls:sys_enter_$c"; done
    for name in gateway c c2; do
        port=$((port + 1))
        # shellcheck disable=SC2046
        $(server $name $port) > "$OUT/$name.log" 2>&1 &
        pid=$!
        wait_listening $port
        perf stat -x, -e "$events" -p $pid -o "$OUT/stat.$name.csv" &
        spid=$!
        sleep 0.5
        client $port --count "$COUNT" --duration 600 > "$OUT/client-$name.json"
        kill -INT $spid; wait $spid || true
        kill -TERM $pid; wait $pid || true
        replies=$(replies_of "$OUT/client-$name.json")
        python3 - "$OUT/stat.$name.csv" "$replies" "$name" <<'PY' | tee -a "$OUT/summary.txt"
import sys
path, replies, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
parts = []
for line in open(path):
    f = line.strip().split(",")
    if len(f) < 3 or not f[0].replace(".", "").isdigit():
        continue
    event = f[2].replace("syscalls:sys_enter_", "").replace("raw_syscalls:sys_enter", "all syscalls")
    value = float(f[0])
    if event == "task-clock":  # milliseconds of CPU over all threads
        parts.append(f"cpu {value * 1000 / replies:.2f} us")
    elif value:
        parts.append(f"{event} {value / replies:.3f}")
print(f"{name} ({replies} replies), per reply: " + ", ".join(parts))
PY
    done
    ;;
*) echo "profile.sh: mode is callgrind, cpuclock or syscalls" >&2; exit 2 ;;
esac
echo "output: $OUT"
