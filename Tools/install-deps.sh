#!/usr/bin/env bash
# Installs what the build and tests need when missing: system packages (liburcu, OpenSSL 3, pkg-config, haproxy,
# chromium for the web page's test) and Python's websockets from PyPI (the WebSocket conformance test).
set -euo pipefail
missing=()
[ -f /usr/include/urcu-qsbr.h ] || [ -f /usr/include/x86_64-linux-gnu/urcu-qsbr.h ] || missing+=(liburcu-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
# TLS (docs/TLS.md): the library and headers; the command makes the tests' certificates.
[ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
command -v openssl >/dev/null || missing+=(openssl)
# The PROXY protocol tests run behind a real HAProxy.
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
# examples/web is tested in a real headless browser.
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}" >&2
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo_cmd apt-get update -qq
    $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Tests/python/ws_conformance.py: a conformant WebSocket client.
if ! python3 -c 'import websockets' 2>/dev/null; then
    echo "installing websockets (PyPI)" >&2
    python3 -m pip install -q websockets 2>/dev/null || python3 -m pip install -q --break-system-packages websockets
fi
