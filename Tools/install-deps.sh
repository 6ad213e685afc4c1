#!/usr/bin/env bash
# Installs the system packages the build and tests need (liburcu, OpenSSL 3, pkg-config, haproxy) when missing.
set -euo pipefail
missing=()
[ -f /usr/include/urcu-qsbr.h ] || [ -f /usr/include/x86_64-linux-gnu/urcu-qsbr.h ] || missing+=(liburcu-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
# TLS (docs/TLS.md): the library and headers; the command makes the tests' certificates.
[ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
command -v openssl >/dev/null || missing+=(openssl)
# The PROXY protocol tests run behind a real HAProxy.
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}" >&2
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo_cmd apt-get update -qq
    $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
