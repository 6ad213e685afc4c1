#!/usr/bin/env bash
# perf/run.sh: build the gateway, bin_test and the two reference peers (SwiftNIO, C epoll)
# in release mode, run the same bin_test client against each server in turn, and write
# perf/RESULTS.md with pictures beside it. See perf/README.md.
#
#   perf/run.sh                      all scenarios, 5 s per run, 3 repetitions
#   perf/run.sh --quick              1 s per run, still 3 repetitions
#   perf/run.sh --scenarios a,b      only some scenarios
#   perf/run.sh --scenarios h,i      one hop: gateway --upstream vs HAProxy (installed when
#                                    missing), and three tiers and the direct echo beside them
#   perf/run.sh --scenarios j,k      push: broadcast deliveries/s, push latency to single uids
#
# Every flag has an environment twin (flags win): PERF_DURATION, PERF_REPS,
# PERF_IDLE_DURATION, PERF_SCENARIOS, PERF_CLIENT_THREADS, PERF_SERVER_CPUS,
# PERF_CLIENT_CPUS, PERF_RESULTS, PERF_SCRATCH. Binaries can be overridden
# with PERF_GATEWAY, PERF_BIN_TEST, PERF_NIO, PERF_C_ECHO (skips building that one).
set -uo pipefail

STARTED=$(date +%s.%N)
PERF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$PERF_DIR")

DURATION=${PERF_DURATION:-5}
REPS=${PERF_REPS:-3}
IDLE_DURATION=${PERF_IDLE_DURATION:-5}
SCENARIOS=${PERF_SCENARIOS:-a,b,c,d,e,f,g,h,i,j,k}
CLIENT_THREADS=${PERF_CLIENT_THREADS:-}
SERVER_CPUS=${PERF_SERVER_CPUS:-}
CLIENT_CPUS=${PERF_CLIENT_CPUS:-}
RESULTS=${PERF_RESULTS:-}
# The root package's build directory (swift build --scratch-path); empty: its .build.
SCRATCH=${PERF_SCRATCH:-}
RATE=""
BUILD=1
PLOTS=1
MICRO=0

usage() {
    cat <<'EOF'
usage: perf/run.sh [options]
  --duration S        seconds per run (default 5; env PERF_DURATION)
  --reps N            repetitions per server and scenario, at least 3 (default 3; env PERF_REPS)
  --quick             short runs: --duration 1 (repetitions stay at 3 or more)
  --idle-duration S   how long (e) holds its 10,000 connections (default 5; env PERF_IDLE_DURATION)
  --scenarios LIST    comma-separated subset of a,b,c,d,e,f,g,h,i,j,k (default all; env PERF_SCENARIOS)
  --client-threads T  pass --threads T to bin_test client (default: bin_test's own; env PERF_CLIENT_THREADS)
  --server-cpus LIST  run every server under taskset -c LIST (env PERF_SERVER_CPUS; default: no pinning)
  --client-cpus LIST  run bin_test under taskset -c LIST (env PERF_CLIENT_CPUS; default: no pinning)
  --rate R            (g) rate when (a) is not in this run
  --results FILE      write the report here instead of perf/RESULTS.md (relative to perf/; env PERF_RESULTS)
  --scratch-path DIR  build gateway and bin_test in DIR instead of .build (env PERF_SCRATCH)
  --no-build          use the binaries already built
  --no-plots          no PNGs (no matplotlib venv)
  --micro             also run the micro-benchmarks (swift package benchmark) into RESULTS.md
  -h, --help          this text
Scenarios: (a) 32x16x512 B  (b) ping-pong 64 B  (c) 1,000x1x64 B  (d) connection rate
           (e) 10,000 idle connections, memory  (f) gateway epoll vs poll, 8x64x1 KiB
           (g) open-loop latency at half of (a)'s gateway median
           (h) one hop, 32x16x512 B and ping-pong 64 B: gateway --upstream -> bin_test core
               vs HAProxy (mode tcp) -> c_echo; HAProxy is installed with apt-get when missing
           (i) three tiers (gateway -> gateway --role aggregation --poller poll -> bin_test core)
               and the direct echo (bin_test server) beside (h)'s gateway, in the same alternation
           (j) broadcast: 10,000 clients logged in on gateway --upstream, bin_test core pushing to
               all at 100/s: deliveries/s, beside the gateway's echo replies/s under (a)'s load
           (k) pushes to single uids at 100,000/s across 10,000 bound clients: latency through
               gateway --upstream alone and through an aggregation server (--poller poll) too
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --reps) REPS=$2; shift 2 ;;
        --quick) DURATION=1; shift ;;
        --idle-duration) IDLE_DURATION=$2; shift 2 ;;
        --scenarios) SCENARIOS=$2; shift 2 ;;
        --client-threads) CLIENT_THREADS=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --results) RESULTS=$2; shift 2 ;;
        --scratch-path) SCRATCH=$2; shift 2 ;;
        --server-cpus) SERVER_CPUS=$2; shift 2 ;;
        --client-cpus) CLIENT_CPUS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --no-plots) PLOTS=0; shift ;;
        --micro) MICRO=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
if [ "$REPS" -lt 3 ] 2>/dev/null; then
    echo "run.sh: --reps $REPS raised to 3 (medians need at least three runs)" >&2
    REPS=3
fi

say() { printf '[perf %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

STAMP=$(date -u +%Y%m%d-%H%M%S)
RUN_DIR="$PERF_DIR/runs/$STAMP"
mkdir -p "$RUN_DIR"
BUILD_NOTES="$RUN_DIR/build-notes.txt"
: > "$BUILD_NOTES"
note() { echo "$*" >> "$BUILD_NOTES"; say "$*"; }

# Both the client and the server of (e) hold 10,000 sockets: use the whole allowance.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------- build
# build NAME DIR PRODUCT [SWIFT BUILD OPTIONS]: swift build -c release --product PRODUCT in DIR, logged.
build() {
    local name=$1 dir=$2 product=$3 log="$RUN_DIR/build-$1.log" t0=$SECONDS
    shift 3
    local where=. plan="$dir/.build"
    [ "$dir" = "$ROOT" ] || where=${dir#"$ROOT"/}
    [ "$#" = 0 ] || plan=$2  # --scratch-path DIR
    say "building $product (release) in $where"
    local ok=0
    if (cd "$dir" && swift build -c release --product "$product" "$@") > "$log" 2>&1; then
        ok=1
    elif grep -q "because of missing inputs" "$log"; then
        # A source file of a path dependency was renamed: SwiftPM's cached build plan
        # still names the old file. Drop the plan once and build again.
        say "  stale build plan in $plan: re-planning"
        rm -f "$plan/release.yaml"
        (cd "$dir" && swift build -c release --product "$product" "$@") >> "$log" 2>&1 && ok=1
    fi
    if [ "$ok" = 1 ]; then
        say "  $product built in $((SECONDS - t0)) s"
    else
        note "$name: \`swift build -c release --product $product\` failed after $((SECONDS - t0)) s: $(grep -m1 -E 'error:' "$log" | cut -c1-200) (log: perf/runs/$STAMP/build-$name.log)"
    fi
}

# SwiftNIO only when a scenario runs it ((f), (h) to (k) do not); c_echo for (a)-(e), (g), (h).
NEED_NIO=0
printf ',%s,' "$SCENARIOS" | grep -qE ',[abcdeg],' && NEED_NIO=1
NEED_C=0
printf ',%s,' "$SCENARIOS" | grep -qE ',[abcdegh],' && NEED_C=1
ROOT_OPTIONS=()
[ -z "$SCRATCH" ] || ROOT_OPTIONS=(--scratch-path "$SCRATCH")
if [ "$BUILD" = 1 ]; then
    [ -n "${PERF_GATEWAY:-}" ] || build gateway "$ROOT" gateway "${ROOT_OPTIONS[@]}"
    [ -n "${PERF_BIN_TEST:-}" ] || build bin_test "$ROOT" bin_test "${ROOT_OPTIONS[@]}"
    [ -n "${PERF_NIO:-}" ] || [ "$NEED_NIO" = 0 ] || build NIOEcho "$PERF_DIR" NIOEcho
fi
ROOT_BIN=""
if [ -z "${PERF_GATEWAY:-}" ] || [ -z "${PERF_BIN_TEST:-}" ]; then
    ROOT_BIN=$(cd "$ROOT" && swift build -c release "${ROOT_OPTIONS[@]}" --show-bin-path 2>/dev/null)
fi
PERF_BIN="$PERF_DIR/.build/release"
[ "$NEED_NIO" = 0 ] || PERF_BIN=$(cd "$PERF_DIR" && swift build -c release --show-bin-path 2>/dev/null)
GATEWAY=${PERF_GATEWAY:-$ROOT_BIN/gateway}
BIN_TEST=${PERF_BIN_TEST:-$ROOT_BIN/bin_test}
NIO=${PERF_NIO:-$PERF_BIN/NIOEcho}
C_ECHO=${PERF_C_ECHO:-$PERF_DIR/.build/c_echo}
if [ "$NEED_C" = 1 ] && [ -z "${PERF_C_ECHO:-}" ] && { [ "$BUILD" = 1 ] || [ ! -x "$C_ECHO" ]; }; then
    mkdir -p "$PERF_DIR/.build"
    say "building c_echo: cc -O2 -pthread"
    if ! cc -O2 -pthread -o "$C_ECHO" "$PERF_DIR/peers/c_echo/echo.c" > "$RUN_DIR/build-c_echo.log" 2>&1; then
        note "c_echo: cc failed: $(head -c 200 "$RUN_DIR/build-c_echo.log")"
    fi
fi
needed=("$GATEWAY" "$BIN_TEST")
[ "$NEED_C" = 0 ] || needed+=("$C_ECHO")
[ "$NEED_NIO" = 0 ] || needed+=("$NIO")
for bin in "${needed[@]}"; do
    [ -x "$bin" ] || note "missing binary: $bin (its runs are recorded as failed)"
done

# ---------------------------------------------------------------- pictures: matplotlib in perf/.venv
PLOT_PY=""
if [ "$PLOTS" = 1 ]; then
    VENV="$PERF_DIR/.venv"
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV" > "$RUN_DIR/venv.log" 2>&1 || true
    fi
    if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
        say "installing matplotlib into perf/.venv"
        "$VENV/bin/python" -m pip install --quiet matplotlib >> "$RUN_DIR/venv.log" 2>&1 || true
    fi
    if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
        PLOT_PY="$VENV/bin/python"
    else
        say "matplotlib unavailable: no pictures (see perf/runs/$STAMP/venv.log)"
    fi
fi

# ---------------------------------------------------------------- micro-benchmarks (optional)
MICRO_OUT=""
if [ "$MICRO" = 1 ]; then
    MICRO_OUT="$RUN_DIR/micro.txt"
    say "running micro-benchmarks (swift package benchmark)"
    if ! (cd "$PERF_DIR" && swift package benchmark --no-progress) > "$MICRO_OUT" 2>&1; then
        note "micro-benchmarks failed (log: perf/runs/$STAMP/micro.txt)"
        MICRO_OUT=""
    fi
fi

# ---------------------------------------------------------------- measure and report
say "measuring: scenarios $SCENARIOS, $DURATION s per run, $REPS repetitions; raw output in perf/runs/$STAMP"
args=(--run-dir "$RUN_DIR" --gateway "$GATEWAY" --bin-test "$BIN_TEST" --nio "$NIO" --c-echo "$C_ECHO"
      --duration "$DURATION" --reps "$REPS" --idle-duration "$IDLE_DURATION" --scenarios "$SCENARIOS"
      --build-notes "$BUILD_NOTES" --started "$STARTED")
[ -n "$CLIENT_THREADS" ] && args+=(--client-threads "$CLIENT_THREADS")
[ -n "$RATE" ] && args+=(--rate "$RATE")
[ -n "$RESULTS" ] && args+=(--results "$RESULTS")
[ -n "$SERVER_CPUS" ] && args+=(--server-cpus "$SERVER_CPUS")
[ -n "$CLIENT_CPUS" ] && args+=(--client-cpus "$CLIENT_CPUS")
[ -n "$PLOT_PY" ] && args+=(--plot-python "$PLOT_PY")
[ "$PLOTS" = 0 ] && args+=(--no-plots)
[ -n "$MICRO_OUT" ] && args+=(--micro "$MICRO_OUT")
python3 "$PERF_DIR/runner.py" "${args[@]}"
rc=$?

ELAPSED=$(python3 -c "import time; print(f'{(time.time() - $STARTED) / 60:.1f}')")
say "done in $ELAPSED min (builds included): perf/${RESULTS:-RESULTS.md}"
exit $rc
