#!/usr/bin/env bash
# Builds the libFuzzer targets in Fuzz/ with swiftc (not SwiftPM, so `swift test`
# never sees them) into .build-fuzz/, then runs each for [seconds] (default 60)
# on one core, with a corpus in .build-fuzz/corpus-NAME seeded with valid frames.
#   Tools/fuzz.sh [seconds] [target...]    targets: frame link cidr proxy settings wsframe wshandshake
#                                          workers handover datagram tlsrecord (default: all)
#   Tools/fuzz.sh --long [target...]       each target to FUZZ_RUNS inputs (default 10,000,000),
#                                          however long that takes: for a background run outside CI,
#                                          e.g. `nice -n 19 Tools/fuzz.sh --long` (Fuzz/README.md)
# Prints the inputs each target ran; exits non-zero if a target crashed (the
# crashing input is left in .build-fuzz/crash-NAME/, the log in .build-fuzz/NAME.log).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=0
if [ "${1:-}" = "--long" ]; then
    RUNS=${FUZZ_RUNS:-10000000}
    SECONDS_PER_TARGET=0
else
    SECONDS_PER_TARGET=${1:-60}
fi
ALL_TARGETS=(frame link cidr proxy settings wsframe wshandshake workers handover datagram tlsrecord)
TARGETS=("${@:2}")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")
for t in "${TARGETS[@]}"; do
    [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || { echo "unknown target $t (targets: ${ALL_TARGETS[*]})"; exit 2; }
done
want() { [[ " ${TARGETS[*]} " == *" $1 "* ]]; }
ROOT=$PWD
OUT=.build-fuzz
W=Sources/GatewayCore
ATOMICS=.build/checkouts/swift-atomics/Sources
LOGGING=.build/checkouts/swift-log/Sources/Logging
mkdir -p "$OUT/mods/CLinux"

if [ ! -d "$ATOMICS/Atomics" ] || [ ! -d "$LOGGING" ]; then swift package resolve; fi

# --- swift-atomics as a standalone module (cached) ---------------------------
if [ ! -f "$OUT/mods/Atomics.swiftmodule" ] || [ ! -f "$OUT/Atomics.o" ] || [ ! -f "$OUT/AtomicsShims.o" ]; then
    echo "== building Atomics"
    mapfile -t ATOMICS_SRC < <(find "$ATOMICS/Atomics" -name '*.swift' | sort)
    swiftc -parse-as-library -O -wmo -module-name Atomics -enable-experimental-feature BuiltinModule \
        -I "$ATOMICS/_AtomicsShims/include" "${ATOMICS_SRC[@]}" \
        -emit-module -emit-module-path "$OUT/mods/Atomics.swiftmodule" -c -o "$OUT/Atomics.o"
    clang -O2 -c -I "$ATOMICS/_AtomicsShims/include" "$ATOMICS/_AtomicsShims/src/_AtomicsShims.c" -o "$OUT/AtomicsShims.o"
fi
# --- swift-log as a standalone module (cached), for the settings target's Logger.Level ---
if want settings && { [ ! -f "$OUT/mods/Logging.swiftmodule" ] || [ ! -f "$OUT/Logging.o" ]; }; then
    echo "== building Logging"
    mapfile -t LOGGING_SRC < <(find "$LOGGING" -name '*.swift' | sort)
    swiftc -parse-as-library -O -wmo -module-name Logging -package-name swift_log \
        -enable-upcoming-feature ExistentialAny -enable-upcoming-feature MemberImportVisibility \
        -enable-upcoming-feature InternalImportsByDefault "${LOGGING_SRC[@]}" \
        -emit-module -emit-module-path "$OUT/mods/Logging.swiftmodule" -c -o "$OUT/Logging.o"
fi
# CLinux (for SpinLock's gw_cpu_relax, a static inline): a module map over the package's header.
cat > "$OUT/mods/CLinux/module.modulemap" <<EOF
module CLinux {
  header "$ROOT/$W/../CLinux/include/clinux.h"
  export *
}
EOF

SWIFTC=(swiftc -sanitize=fuzzer,address -use-ld=lld -parse-as-library -O -g
        -I "$OUT/mods" -I "$OUT/mods/CLinux" -I "$ATOMICS/_AtomicsShims/include")
LINK=("$OUT/Atomics.o" "$OUT/AtomicsShims.o")

if want frame; then
    echo "== building frame-fuzzer"; rm -f "$OUT/frame-fuzzer"
    "${SWIFTC[@]}" -module-name FuzzFrames \
        $W/Wire/FrameCutter.swift $W/Wire/FrameHeader.swift $W/Wire/FrameAssembly.swift \
        $W/Memory/Chunk.swift $W/Memory/ChunkPool.swift $W/Sync/SpinLock.swift \
        Fuzz/FrameFuzzer.swift "${LINK[@]}" -o "$OUT/frame-fuzzer" 2>&1 | grep -v 'Cannot export local symbol' || true
    [ -x "$OUT/frame-fuzzer" ] || { echo "frame-fuzzer build failed"; exit 2; }
fi

if want link; then
    echo "== building link-fuzzer"; rm -f "$OUT/link-fuzzer"
    "${SWIFTC[@]}" -module-name FuzzLink \
        $W/Wire/FrameCutter.swift $W/Wire/FrameHeader.swift $W/Wire/LinkMessage.swift \
        $W/Connections/ConnectionID.swift \
        Fuzz/LinkFuzzer.swift -o "$OUT/link-fuzzer" 2>&1 | grep -v 'Cannot export local symbol' || true
    [ -x "$OUT/link-fuzzer" ] || { echo "link-fuzzer build failed"; exit 2; }
fi

if want cidr; then
    echo "== building cidr-fuzzer"; rm -f "$OUT/cidr-fuzzer"
    "${SWIFTC[@]}" -module-name FuzzCIDR \
        $W/Wire/FrameHeader.swift $W/Wire/LinkMessage.swift $W/Connections/ConnectionID.swift $W/Protection/CIDR.swift \
        Fuzz/CIDRFuzzer.swift -o "$OUT/cidr-fuzzer" 2>&1 | grep -v 'Cannot export local symbol' || true
    [ -x "$OUT/cidr-fuzzer" ] || { echo "cidr-fuzzer build failed"; exit 2; }
fi

if want proxy; then
    echo "== building proxy-fuzzer"; rm -f "$OUT/proxy-fuzzer"
    "${SWIFTC[@]}" -module-name FuzzProxy \
        $W/Wire/FrameHeader.swift $W/Wire/LinkMessage.swift $W/Connections/ConnectionID.swift $W/Protection/CIDR.swift \
        $W/Protection/ProxyHeader.swift Fuzz/ProxyFuzzer.swift -o "$OUT/proxy-fuzzer" 2>&1 \
        | grep -v 'Cannot export local symbol' || true
    [ -x "$OUT/proxy-fuzzer" ] || { echo "proxy-fuzzer build failed"; exit 2; }
fi

if want datagram; then
    echo "== building datagram-fuzzer"; rm -f "$OUT/datagram-fuzzer"
    "${SWIFTC[@]}" -module-name FuzzDatagram \
        $W/Wire/FrameHeader.swift $W/Wire/LinkMessage.swift $W/Connections/ConnectionID.swift \
        $W/UDP/DatagramSplitter.swift $W/UDP/DatagramPacker.swift \
        $W/Memory/Chunk.swift $W/Memory/ChunkPool.swift $W/Sync/SpinLock.swift \
        Fuzz/DatagramFuzzer.swift "${LINK[@]}" -o "$OUT/datagram-fuzzer" 2>&1 | grep -v 'Cannot export local symbol' || true
    [ -x "$OUT/datagram-fuzzer" ] || { echo "datagram-fuzzer build failed"; exit 2; }
fi

# The TLS 1.3 record reader is C: clang, the system libcrypto.
if want tlsrecord; then
    echo "== building tlsrecord-fuzzer"; rm -f "$OUT/tlsrecord-fuzzer"
    clang -fsanitize=fuzzer,address -O1 -g -I Sources/CTLS/include Sources/CTLS/tls13_records.c \
        Fuzz/TLSRecordFuzzer.c -lcrypto -o "$OUT/tlsrecord-fuzzer" 2>&1 | grep -v "Cannot export local symbol" || true
    [ -x "$OUT/tlsrecord-fuzzer" ] || { echo "tlsrecord-fuzzer build failed"; exit 2; }
fi

WS=$W/WebSocket
if want wsframe; then
    echo "== building wsframe-fuzzer"; rm -f "$OUT/wsframe-fuzzer"
    "${SWIFTC[@]}" -module-name FuzzWSFrame $W/Wire/FrameHeader.swift $WS/WebSocketFrame.swift \
        $WS/WebSocketReader.swift $WS/FrameFollower.swift Fuzz/WebSocketFrameFuzzer.swift -o "$OUT/wsframe-fuzzer" \
        2>&1 | grep -v 'Cannot export local symbol' || true
    [ -x "$OUT/wsframe-fuzzer" ] || { echo "wsframe-fuzzer build failed"; exit 2; }
fi

if want wshandshake; then
    echo "== building wshandshake-fuzzer"; rm -f "$OUT/wshandshake-fuzzer"
    "${SWIFTC[@]}" -module-name FuzzWSHandshake $WS/WebSocketHandshake.swift $WS/SHA1.swift $WS/Base64.swift \
        Fuzz/WebSocketHandshakeFuzzer.swift -o "$OUT/wshandshake-fuzzer" 2>&1 | grep -v 'Cannot export local symbol' || true
    [ -x "$OUT/wshandshake-fuzzer" ] || { echo "wshandshake-fuzzer build failed"; exit 2; }
fi

# The settings parsers live in GatewayCLI: copies without `import GatewayCore` (one module here),
# with the GatewayCore files they need and swift-log.
if want settings; then
    echo "== building settings-fuzzer"; rm -f "$OUT/settings-fuzzer"
    GEN="$OUT/gen"; mkdir -p "$GEN"
    for f in SettingParsers.swift JSONLogHandler.swift HotRestart/HandoverLine.swift; do
        sed '/^import GatewayCore$/d' "Sources/GatewayCLI/$f" > "$GEN/$(basename "$f")"
    done
    "${SWIFTC[@]}" -module-name FuzzSettings \
        $W/Wire/FrameHeader.swift $W/Wire/LinkMessage.swift $W/Connections/ConnectionID.swift $W/Protection/CIDR.swift \
        $W/GatewayConfig.swift $W/TLS/TLSSettings.swift \
        "$GEN/SettingParsers.swift" "$GEN/JSONLogHandler.swift" "$GEN/HandoverLine.swift" \
        Fuzz/SettingsFuzzer.swift "$OUT/Logging.o" -o "$OUT/settings-fuzzer" 2>&1 | grep -v 'Cannot export local symbol' || true
    [ -x "$OUT/settings-fuzzer" ] || { echo "settings-fuzzer build failed"; exit 2; }
fi

# What a master reads from its workers: copies of GatewayCLI's and GatewayAdmin's files (one module here).
if want workers; then
    echo "== building workers-fuzzer"; rm -f "$OUT/workers-fuzzer"
    "${SWIFTC[@]}" -module-name FuzzWorkers \
        Sources/GatewayCLI/Workers/WorkerReport.swift Sources/GatewayCLI/Workers/LoopbackHTTP.swift \
        Sources/GatewayAdmin/MetricsMerge.swift Fuzz/WorkerWireFuzzer.swift -o "$OUT/workers-fuzzer" 2>&1 \
        | grep -v 'Cannot export local symbol' || true
    [ -x "$OUT/workers-fuzzer" ] || { echo "workers-fuzzer build failed"; exit 2; }
fi

# What a new process reads in a hand-over: the batch header and the connection records.
if want handover; then
    echo "== building handover-fuzzer"; rm -f "$OUT/handover-fuzzer"
    "${SWIFTC[@]}" -module-name FuzzHandover \
        $W/Wire/FrameHeader.swift $W/Wire/LinkMessage.swift $W/Connections/ConnectionID.swift \
        $W/Handover/MovedConnection.swift $W/Handover/MovedSession.swift \
        Sources/GatewayCLI/Handover/BatchWire.swift \
        Fuzz/HandoverFuzzer.swift -o "$OUT/handover-fuzzer" 2>&1 | grep -v 'Cannot export local symbol' || true
    [ -x "$OUT/handover-fuzzer" ] || { echo "handover-fuzzer build failed"; exit 2; }
fi

# --- seeds ----------------------------------------------------------------------
# Big-endian helpers producing printf escapes.
be32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(( ($1 >> 24) & 255 )) $(( ($1 >> 16) & 255 )) $(( ($1 >> 8) & 255 )) $(( $1 & 255 )); }
be16() { printf '\\x%02x\\x%02x' $(( ($1 >> 8) & 255 )) $(( $1 & 255 )); }
zeros() { local i; for ((i = 0; i < $1; i++)); do printf '\\x00'; done; }
# hdr LENGTH SEQ CMD STATUS UID
hdr() { be32 "$1"; be32 "$2"; be16 "$3"; be32 "$4"; be32 "$5"; }
seed() { printf "$2" > "$1"; }  # seed FILE ESCAPES

C="$OUT/corpus-frame"; mkdir -p "$C"
seed "$C/seed-empty-body"  "$(hdr 18 1 1 0 7)"
seed "$C/seed-body"        "$(hdr 26 2 5 0 7)hello!!!"
seed "$C/seed-heartbeat"   "$(hdr 18 3 0xFF01 0 0)"
seed "$C/seed-three"       "$(hdr 20 0x0102 2 0 1)ab$(hdr 18 0x0a05 3 0 1)$(hdr 300 0x1133 4 0 1)$(zeros 282)"
seed "$C/seed-partial"     "$(hdr 40 0x0010 9 0 2)0123456789$(hdr 18 0 1 0 2)"
seed "$C/seed-bad"         "$(hdr 18 0x0003 1 0 3)$(hdr 5 0 1 0 3)"
seed "$C/seed-1100"        "$(hdr 1100 0x0280 6 0x0200 4)$(zeros 1082)"

L="$OUT/corpus-link"; mkdir -p "$L"
SID="$(be32 3)$(be32 17)$(be32 2)"
HELLO="$(hdr 32 0 0xFF10 0 0)$(be16 1)\\x01\\x00$(be32 3)$(be16 0)$(be32 1000)"
HB="$(hdr 18 0 0xFF11 0 0)"
OPENED="$(hdr 52 0 0xFF12 0 0)$SID$(be16 0)\\x04\\x00$(be16 40000)\\x7f\\x00\\x00\\x01$(zeros 12)"
DATA="$(hdr 56 0 0xFF13 0 0)$SID$(hdr 26 9 5 0 42)hello!!!"
CLOSED="$(hdr 34 0 0xFF14 0 0)$SID\\x00\\x00\\x00\\x00"
DOWN="$(hdr 24 0 0xFF15 0 0)$(be32 3)$(be16 1)"
seed "$L/seed-hello" "$HELLO"
seed "$L/seed-heartbeat" "$HB"
seed "$L/seed-opened" "$OPENED"
seed "$L/seed-data" "$DATA"
seed "$L/seed-closed" "$CLOSED"
seed "$L/seed-linkdown" "$DOWN"
seed "$L/seed-session" "$HELLO$OPENED$DATA$HB$CLOSED$DOWN"
MOVING="$(hdr 54 0 0xFF1F 0 0)$SID\\x01$(zeros 23)"
MOVED="$(hdr 54 0 0xFF1F 0 0)$SID\\x03\\x00$(be16 1)\\x04\\x00$(be16 40000)\\x7f\\x00\\x00\\x01$(zeros 12)"
seed "$L/seed-move" "$MOVING$(hdr 54 0 0xFF1F 0 0)$SID\\x02$(zeros 23)$MOVED"
TREE="\x02\x00\x00\x00$(be32 5)$(be32 1)$(be32 0)$(be32 77)"
seed "$L/seed-bind" "$(hdr 34 0 0xFF16 0 0)$SID$(be32 42)"
seed "$L/seed-unbind" "$(hdr 30 0 0xFF17 0 0)$SID"
seed "$L/seed-join" "$(hdr 34 0 0xFF18 0 0)$SID$(be32 5)"
seed "$L/seed-push" "$(hdr 64 0 0xFF1A 0 0)$TREE$(hdr 26 9 99 0 5)hello!!!"
seed "$L/seed-kick" "$(hdr 38 0 0xFF1B 0 0)$TREE"
seed "$L/seed-presence" "$(hdr 38 0 0xFF1C 0 0)$TREE$(hdr 46 0 0xFF1D 0 0)$TREE$(be32 3)$(be32 2)"

P="$OUT/corpus-cidr"; mkdir -p "$P"
for c in 10.0.0.0/8 127.0.0.1 0.0.0.0/0 ::1 2001:db8::/32 fe80::1/64 ::ffff:10.0.0.1/120 1.2.3.4/33 ::/0; do
    printf '%s' "$c" > "$P/seed-$(printf '%s' "$c" | tr '/:' '__')"
done

X="$OUT/corpus-proxy"; mkdir -p "$X"
printf 'PROXY TCP4 192.168.1.7 10.0.0.1 56324 443\r\nrest' > "$X/seed-v1-tcp4"
printf 'PROXY TCP6 2001:db8::5 ::1 4000 80\r\n' > "$X/seed-v1-tcp6"
printf 'PROXY UNKNOWN\r\n' > "$X/seed-v1-unknown"
printf '\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x0a\x01\x02\x03\x0a\x00\x00\x01\x1f\x90\x01\xbb' > "$X/seed-v2-ipv4"
printf '\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00' > "$X/seed-v2-local"

# settings: byte 0 = parser (+ 9 x variant), then the text; list items separated by \xff.
S="$OUT/corpus-settings"; mkdir -p "$S"
n=0
for s in '\x00\x00 7000' '\x00\x01100000' '\x00\x0a604800' '\x00\x05-1' '\x00\x17+1099511627776' \
         '\x00\x1a\x80\x00\x00\x00\x00\x00\x00\x00\x7f\xff\xff\xff\xff\xff\xff\xff-9223372036854775808' \
         '\x01127.0.0.1' '\x0a 10.1.2.3\n' '\x01256.0.0.1' '\x01localhost' \
         '\x02127.0.0.1:7000,[::1]:7001' '\x0b0.0.0.0:0\xff[::]:65535' '\x02[::ffff:10.0.0.1]:80' '\x02::1:80' \
         '\x02127.0.0.1:65536' '\x03true' '\x0c OFF ' '\x15Yes' '\x030' '\x03maybe' \
         '\x0410.0.0.0/8,2001:db8::/32,::1' '\x0d192.168.0.0/16\xfffe80::/10' '\x041.2.3.4/33' \
         '\x05127.0.0.1:7100,127.0.0.2:7100' '\x05127.0.0.1:7100\xff10.0.0.1:1' '\x05127.0.0.1:0' \
         '\x06epoll' '\x0f Aggregation' '\x06drop' '\x06json' '\x06warning' '\x06critical\n' \
         '\x07TAKEOVER 1' '\x07LISTENERS 2 GENERATION 7' '\x07LISTENERS 64 GENERATION 4294967295' '\x07STARTED' \
         '\x07DRAINING 3600' '\x07REFUSED already handed over' '\x07TAKEOVER 1 ' '\x07LISTENERS 65 GENERATION 1' \
         '\x08\x00\x00\x00\x00\x01' '\x08\x01\x00\x00\x00\x02\x00\x00\x00\x07' '\x08\x02' '\x08\x03\x00\x00\x0e\x10' \
         '\x08\x04no thanks'; do
    n=$((n + 1)); printf '%b' "$s" > "$S/seed-$n"
done

W2="$OUT/corpus-wsframe"; mkdir -p "$W2"
# byte 0: limit and side; bytes 1-8: split points; then client frames (mask 01 02 03 04).
seed "$W2/seed-binary"   "\x00\x00\x05\x00\x09\x00\x0d\x00\x11\x82\x92\x01\x02\x03\x04$(printf '\\x%02x' 1 2 3 40 1 2 3 1 1 3 3 4 1 2 3 4 1 2)"
seed "$W2/seed-fragments" "\x00\x00\x03\x00\x07\x00\x0b\x00\x0f\x02\x82\x01\x02\x03\x04\x01\x02\x89\x80\x01\x02\x03\x04\x80\x80\x05\x06\x07\x08"
seed "$W2/seed-close"    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x88\x82\x01\x02\x03\x04\x02\xea"
seed "$W2/seed-text"     "\x01\x00\x00\x00\x00\x00\x00\x00\x00\x81\x82\x01\x02\x03\x04hi"
seed "$W2/seed-shape"    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x93\x10\x05\x20\x30\x07\x02\x31\x22\x01\x08\x04"

H="$OUT/corpus-wshandshake"; mkdir -p "$H"
KEY='Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
seed "$H/seed-ok" "\x01GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${KEY}Sec-WebSocket-Version: 13\r\n\r\n"
seed "$H/seed-origin" "\x00GET /ws?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n${KEY}Sec-WebSocket-Version: 13\r\nOrigin: https://example.com\r\n\r\n"
seed "$H/seed-version" "\x00GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${KEY}Sec-WebSocket-Version: 8\r\n\r\n"
seed "$H/seed-post" "\x00POST /ws HTTP/1.1\r\n\r\n"

# workers: byte 0 = parser (+ 3 x variant: for the merge, where the text splits in two).
K="$OUT/corpus-workers"; mkdir -p "$K"
printf '\x00READY 40641' > "$K/seed-ready"
printf '\x00FAILED invalid max_frame' > "$K/seed-failed"
printf '\x01HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello' > "$K/seed-sized"
printf '\x01HTTP/1.1 503 No\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n' > "$K/seed-chunked"
printf '\x3e# HELP a_total A.\n# TYPE a_total counter\na_total 3\n# TYPE b gauge\nb{s="up"} 1.0\n# TYPE a_total counter\na_total 4\n' \
    > "$K/seed-merge"

# handover: byte 0 = the record count; then a batch header, or records (flags, family, port, 16 address
# bytes, input and output lengths, the bytes).
H="$OUT/corpus-handover"; mkdir -p "$H"
REC="\x01\x04$(be16 40000)\x7f\x00\x00\x01$(zeros 12)$(be32 5)$(be32 3)helloabc"
seed "$H/seed-one" "\x01$REC"
seed "$H/seed-two" "\x02$REC\x00\x06$(be16 1)$(zeros 16)$(be32 0)$(be32 0)"
seed "$H/seed-header" "\x00GWHB$(be32 200)$(be32 0)$(be32 4096)"

# datagram: bytes 4-16 of a first frame's seq/cmd/status steer the cuts, limits and token.
D="$OUT/corpus-datagram"; mkdir -p "$D"
seed "$D/seed-one"    "$(hdr 26 0x01020304 5 0x0506 7)hello!!!"
seed "$D/seed-token"  "$(hdr 26 0 0xFF04 0 0)\x01\x02\x03\x04\x05\x06\x07\x08$(hdr 18 1 1 0 7)"
seed "$D/seed-three"  "$(hdr 60 0x0a0b0c0d 2 0x01ff 1)$(zeros 42)$(hdr 18 2 1 0 1)$(hdr 200 3 1 0 1)$(zeros 182)"
seed "$D/seed-big"    "$(hdr 1500 0x00ff00ff 9 0x0103 2)$(zeros 1482)$(hdr 18 5 1 0 2)"
seed "$D/seed-runt"   "\x00\x00\x00\x12\x00"

# tlsrecord: byte 0 = suite (+ 0x80: a script sealed into records), 1 = read size, 2 = buffer; then raw
# records, or ops: 0/1 data (two length bytes), 2 padded, 3 KeyUpdate (+ 0x80 asks for ours), 4 close_notify.
R="$OUT/corpus-tlsrecord"; mkdir -p "$R"
seed "$R/seed-script" "\x81\x05\x03\x00\x00\x40\x81\x1a\x01\x12\x34\x04"
seed "$R/seed-big" "\x82\x00\x40\x01\x40\x00\x03\x00\x00\x10\x04"
seed "$R/seed-raw" "\x00\x03\x01\x17\x03\x03\x00\x13$(zeros 19)\x17\x03\x03\x40\x00"
# --- run --------------------------------------------------------------------------
status=0
summary=()
for name in "${TARGETS[@]}"; do
    crash="$OUT/crash-$name"; mkdir -p "$crash"
    log="$OUT/$name.log"
    if [ "$RUNS" -gt 0 ]; then
        echo "== running $name-fuzzer for $RUNS inputs (log: $log)"
        limit=(-runs="$RUNS")
    else
        echo "== running $name-fuzzer for ${SECONDS_PER_TARGET}s (log: $log)"
        limit=(-max_total_time="$SECONDS_PER_TARGET")
    fi
    set +e
    # No Swift backtracer: under ASan it is itself reported (its memory server) and left running.
    SWIFT_BACKTRACE=enable=no "$OUT/$name-fuzzer" "$OUT/corpus-$name" "${limit[@]}" -print_final_stats=1 \
        -max_len=8192 -artifact_prefix="$crash/" > "$log" 2>&1
    rc=$?
    set -e
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
    [ -n "$runs" ] || runs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#' || true)
    secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' | tail -1 || true)
    if [ $rc -eq 72 ]; then
        # libFuzzer's exit on SIGINT (-interrupted_exit_code): a long run stopped early, nothing found.
        status=1
        summary+=("$name: interrupted after ${runs:-?} inputs, clean so far")
    elif [ $rc -ne 0 ]; then
        status=1
        echo "!! $name-fuzzer CRASHED (rc $rc) after ${runs:-?} inputs; artifacts in $crash/:"
        ls "$crash"
        grep -E 'ERROR|Fatal error|precondition|^ *#[0-9]+ 0x' "$log" | head -40
        summary+=("$name: CRASH after ${runs:-?} inputs")
    else
        summary+=("$name: ${runs:-?} inputs clean in ${secs:-?}s (corpus $(ls "$OUT/corpus-$name" | wc -l) files)")
    fi
done
echo "== summary"
printf '%s\n' "${summary[@]}"
exit $status
