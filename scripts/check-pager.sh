#!/usr/bin/env bash
# Checks the pager path end to end, with real parts on 127.0.0.1: a Tansu broker (memory://),
# the losswatch agent (`losswatch run`), Prometheus with alerts/losswatch.rules.yml, Alertmanager,
# and a webhook receiver (scripts/pager_path.py, which has the details):
#   - power-loss run: the broker is killed with SIGKILL and restarted empty on the same port; a
#     firing LosswatchProbesLost or LosswatchPartitionTruncated notification with a partition
#     label must reach the webhook; the time from the kill to the webhook call is printed;
#   - clean run of the same length, without the kill: the webhook must receive nothing.
# The agent is restarted if it dies, as under the DaemonSet; each restart is printed as a NOTE line
# and fails the run (with stock librdkafka the power-loss run had one: see scripts/pager_path.py).
# The two runs go side by side (SEQUENTIAL=1: one after the other).
# Installs what it needs when missing (prometheus and prometheus-alertmanager from Debian, Tansu
# with scripts/install-tansu.sh). Every process is stopped by PID on exit, also on failure.
# Environment: WARMUP (seconds before the kill, default 20), WINDOW (seconds after it, default 40).
# Last line: "check-pager: N passed, M failed"; exit status 1 if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/common.sh
. scripts/lib/live.sh

WARMUP=${WARMUP:-20}
WINDOW=${WINDOW:-40}

if ! command -v prometheus >/dev/null 2>&1; then
  echo "installing prometheus (apt: prometheus)"
  apt_install prometheus
fi
if ! command -v prometheus-alertmanager >/dev/null 2>&1; then
  echo "installing alertmanager (apt: prometheus-alertmanager)"
  apt_install prometheus-alertmanager
fi
command -v python3 >/dev/null 2>&1 || apt_install python3
for tool in prometheus prometheus-alertmanager python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "check-pager: $tool not found after install" >&2; exit 2; }
done
tansu="$(scripts/install-tansu.sh | tail -n 1)"
[ -x "$tansu" ] || { echo "check-pager: no tansu binary ($tansu)" >&2; exit 2; }
echo "using $(prometheus --version 2>&1 | head -n1)"
echo "using $(prometheus-alertmanager --version 2>&1 | head -n1)"
echo "using $("$tansu" --version 2>&1 | head -n1)"

cargo build --release --locked

tmp="$(mktemp -d)"
trap 'live_stop_all; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

seq_flag=()
if [ "${SEQUENTIAL:-0}" = 1 ]; then seq_flag=(--sequential); fi

live_start pager "$tmp/pager.out" python3 scripts/pager_path.py \
  --losswatch "$PWD/target/release/losswatch" --tansu "$tansu" \
  --prometheus "$(command -v prometheus)" --alertmanager "$(command -v prometheus-alertmanager)" \
  --rules alerts/losswatch.rules.yml --workdir "$tmp" --warmup "$WARMUP" --window "$WINDOW" \
  "${seq_flag[@]}"
rc=0
wait "$live_pid" || rc=$?
count_lines "$tmp/pager.out"
if [ "$rc" -ne 0 ]; then not_ok "scripts/pager_path.py exited $rc"; fi

echo "check-pager: ${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
