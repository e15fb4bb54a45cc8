#!/usr/bin/env bash
# Installs what the Kafka TLS tests (tests/tansu_tls.rs) need, idempotently: stunnel (the TLS
# terminator in front of Tansu, which serves plain TCP only) and openssl (the test CAs and
# certificates). Installs from Debian only what is missing. Prints the path of stunnel on
# stdout's last line.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/common.sh

find_stunnel() { command -v stunnel4 2>/dev/null || command -v stunnel 2>/dev/null || true; }

if [ -z "$(find_stunnel)" ]; then
  echo "installing stunnel4 (apt)" >&2
  apt_install stunnel4
fi
command -v openssl >/dev/null 2>&1 || { echo "installing openssl (apt)" >&2; apt_install openssl; }

bin="$(find_stunnel)"
[ -n "$bin" ] || { echo "stunnel not usable after installing stunnel4" >&2; exit 2; }
echo "$bin"
