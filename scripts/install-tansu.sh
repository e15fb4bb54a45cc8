#!/usr/bin/env bash
# Installs the Tansu broker the Tansu tests run against, pinned, idempotently.
# A fresh machine builds it once (about 9 minutes on 2 cores); afterwards the binary in
# ~/.cargo/bin is reused. Prints the path of the binary on stdout's last line.
set -euo pipefail

TANSU_VERSION=0.6.0
bin="${CARGO_HOME:-$HOME/.cargo}/bin/tansu"

have_version() {
  [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "$TANSU_VERSION"
}

if ! have_version; then
  echo "installing tansu $TANSU_VERSION (cargo install, features dynostore,libsql) ..." >&2
  cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore,libsql >&2
fi
have_version || { echo "tansu $TANSU_VERSION not usable at $bin" >&2; exit 2; }
echo "$bin"
