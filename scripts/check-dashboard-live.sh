#!/usr/bin/env bash
# Checks the Grafana dashboard against live data:
#   - builds the release binary and runs `losswatch demo --no-chaos` (the whole agent against the
#     in-process mock cluster, 6 partitions) on a free loopback port, twice: with the default
#     per-broker latency histograms, then with --per-partition-histograms;
#   - starts a real Prometheus (temp data dir, free loopback port) that scrapes it every second
#     and evaluates alerts/losswatch.rules.yml every second;
#   - scripts/dashboard_live.py then runs every panel and variable query of each dashboard in
#     dashboards/ through Prometheus' HTTP API: every query must be accepted, core panels must
#     return data, consumer-group lag panels are listed there as "data not required"; every rule
#     group must evaluate without error.
# Installs what it needs when missing (prometheus from Debian). Every process it starts is
# stopped by PID on exit, also on failure or interrupt.
# Environment: DEADLINE (seconds to wait for data, default 90).
# Last line: "check-dashboard-live: N passed, M failed"; exit status 1 if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/common.sh
. scripts/lib/live.sh

DEADLINE=${DEADLINE:-90}

if ! command -v prometheus >/dev/null 2>&1; then
  echo "installing prometheus (apt: prometheus)"
  apt_install prometheus
fi
command -v prometheus >/dev/null 2>&1 || { echo "check-dashboard-live: prometheus not found after install" >&2; exit 2; }
command -v python3 >/dev/null 2>&1 || apt_install python3
echo "using $(prometheus --version 2>&1 | head -n1)"

cargo build --release --locked
bin="$PWD/target/release/losswatch"

tmp="$(mktemp -d)"
trap 'live_stop_all; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# One pass: the demo agent with the given flags, a fresh Prometheus, every dashboard.
check_mode() {
  local mode="$1"
  shift
  agent_port="$(free_port)"
  live_start demo "$tmp/demo.log" "$bin" demo --no-chaos --duration 1h --probe-interval 200ms \
    --listen "127.0.0.1:$agent_port" "$@"
  if ! wait_http "http://127.0.0.1:$agent_port/metrics" 30; then
    cat "$tmp/demo.log"
    echo "check-dashboard-live: the demo did not serve /metrics on port $agent_port within 30s" >&2
    return 1
  fi

  prom_port="$(free_port)"
  cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $PWD/alerts/losswatch.rules.yml
scrape_configs:
  - job_name: losswatch
    static_configs:
      - targets: ['127.0.0.1:$agent_port']
EOF
  live_start prometheus "$tmp/prometheus.log" prometheus --config.file="$tmp/prometheus.yml" \
    --storage.tsdb.path="$tmp/prometheus-data-$mode" --web.listen-address="127.0.0.1:$prom_port"
  if ! wait_http "http://127.0.0.1:$prom_port/-/ready" 30; then
    cat "$tmp/prometheus.log"
    echo "check-dashboard-live: Prometheus not ready on port $prom_port within 30s" >&2
    return 1
  fi

  for dash in dashboards/*.json; do
    rc=0
    python3 scripts/dashboard_live.py --prometheus "http://127.0.0.1:$prom_port" \
      --dashboard "$dash" --deadline "$DEADLINE" "$@" >"$tmp/out" 2>&1 || rc=$?
    sed "s/^\(ok\|FAIL\): /\1: [$mode] /" "$tmp/out" >"$tmp/out.$mode"
    count_lines "$tmp/out.$mode"
    if [ "$rc" -ne 0 ] && ! grep -q "^FAIL: " "$tmp/out"; then not_ok "$dash: live query check exited $rc"; fi
  done

  for name in demo prometheus; do
    if ! live_alive "$name"; then
      tail -n 20 "$tmp/$name.log"
      not_ok "$name exited during the check"
    fi
  done
  live_stop_all
}

check_mode default || not_ok "[default] setup failed"
# Per-partition latency histograms: the per-partition latency panels must show data too.
check_mode per-partition-histograms --per-partition-histograms || not_ok "[per-partition-histograms] setup failed"

echo "check-dashboard-live: ${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
