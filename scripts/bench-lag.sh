#!/usr/bin/env bash
# Measures one consumer-group lag poll of the real agent against a Tansu broker (memory
# storage), at several scales: GROUPS groups x 10 partitions each (ten groups per
# 10-partition topic), 5 records per partition, every group committed on every partition of
# its topic.
#
# For each scale: starts a fresh broker on a free loopback port, sets the groups up with
# examples/lag_bench_setup.rs, starts `losswatch run` with lag.mode = "always", and samples
# the agent every 0.25 s: its debug log (each poll's wall time, group-partitions and stages)
# and /proc/PID (VmRSS, VmHWM, utime+stime). /metrics is scraped every SCRAPE seconds, as a
# Prometheus would, so RSS includes rendering every series.
# Prints per scale:
#   - the first poll (it searches every topic for each new group's commits) and the median
#     of the following polls (known topics only), in seconds;
#   - agent CPU seconds per poll interval over the steady polls (polling, the canary and the
#     scrapes);
#   - the size and time of the last scrape, and the stages of the last poll;
#   - steady RSS (VmRSS after the last poll) and peak RSS (VmHWM), MiB;
#   - new TCP connections to the broker after the first poll: every client-side socket to the
#     broker's port (`ss -tan`, any state: a connection the agent closed stays in TIME-WAIT for
#     a minute, so none is missed between two samples) whose local port was not there when the
#     first poll ended, counted until the last poll (POLLS - 1 polls). Only the agent talks
#     to the broker once the setup is done;
#   - a baseline with lag.mode = "off" against the largest setup (the canary alone).
# The broker runs on the same machine and its CPU competes with the agent's.
#
# Environment: SCALES (group counts, default "10 100 1000"), POLLS (polls measured per scale,
# default 6: the first and 5 steady ones), INTERVAL (lag.interval, default 15s), SCRAPE (seconds between scrapes,
# default 15), CONCURRENCY (lag.concurrency, default: the config's default).
# Exit status: non-zero if a build, the setup or the agent fails, or if a poll does not export
# exactly GROUPS x 10 group-partitions.
set -euo pipefail
cd "$(dirname "$0")/.."

SCALES=${SCALES:-"10 100 1000"}
POLLS=${POLLS:-6}
INTERVAL=${INTERVAL:-15s}
SCRAPE=${SCRAPE:-15}
PARTITIONS=10

tansu=$(scripts/install-tansu.sh | tail -n 1)
cargo build --release --locked --bin losswatch --example lag_bench_setup
bin=target/release/losswatch
setup=target/release/examples/lag_bench_setup
work=$(mktemp -d)
tansu_pid="" agent_pid=""
cleanup() {
  for p in $agent_pid $tansu_pid; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench-lag: nothing listens on port $1" >&2
  exit 1
}

start_broker() {
  kport=$(free_port)
  "$tansu" broker --listener-url "tcp://127.0.0.1:$kport" --advertised-listener-url "tcp://127.0.0.1:$kport" \
    --storage-engine memory://tansu/ >"$work/tansu.log" 2>&1 &
  tansu_pid=$!
  wait_port "$kport"
}

# Local ports of the client-side sockets to the broker, any state.
client_ports() {
  ss -tanH "dst 127.0.0.1:$kport" | awk '{split($4, a, ":"); print a[length(a)]}' | sort -u
}

# run_agent MODE GROUPS: starts the agent and samples it until POLLS polls are done (or,
# with mode off, for 20 s). Prints one result line, and the stages of the last poll.
run_agent() {
  local mode=$1 groups=$2
  local hport
  hport=$(free_port)
  rm -f "$work"/state.db*
  cat >"$work/agent.toml" <<TOML
[kafka]
bootstrap_servers = "127.0.0.1:$kport"
[canary]
topic = "losswatch-canary"
partitions = 1
replication_factor = 1
[http]
listen = "127.0.0.1:$hport"
[state]
path = "$work/state.db"
[lag]
mode = "$mode"
interval = "$INTERVAL"
${CONCURRENCY:+concurrency = $CONCURRENCY}
TOML
  LOSSWATCH_LOG=losswatch::lag::poller=debug,warn "$bin" run --config "$work/agent.toml" >"$work/agent.log" 2>&1 &
  agent_pid=$!
  wait_port "$hport"
  local hz polls t0 last_scrape=0 scrape_s="-" scrape_bytes="-" cpu_first="" cpu_last="" seen=0
  : >"$work/ports.first"
  : >"$work/ports.later"
  hz=$(getconf CLK_TCK)
  t0=$(date +%s)
  while :; do
    kill -0 "$agent_pid" 2>/dev/null || { echo "bench-lag: agent died:" >&2; cat "$work/agent.log" >&2; exit 1; }
    local now stat
    now=$(date +%s)
    if [ $((now - last_scrape)) -ge "$SCRAPE" ]; then
      read -r scrape_bytes scrape_s < <(curl -sf -o /dev/null -w '%{size_download} %{time_total}\n' "http://127.0.0.1:$hport/metrics")
      last_scrape=$now
    fi
    stat=$(cat "/proc/$agent_pid/stat")
    read -r -a f <<<"${stat##*) }"
    polls=$(grep -c 'lag poll done' "$work/agent.log" || true)
    if [ "$polls" -ge 1 ]; then
      client_ports >>"$work/ports.later"
    fi
    if [ "$polls" -gt "$seen" ]; then
      [ "$seen" = 0 ] && client_ports >"$work/ports.first"
      seen=$polls
      [ "$polls" = 1 ] && cpu_first=$((f[11] + f[12]))
      cpu_last=$((f[11] + f[12]))
      [ "$polls" -ge "$POLLS" ] && break
    fi
    if [ "$mode" = off ] && [ $((now - t0)) -ge 20 ]; then break; fi
    [ $((now - t0)) -lt 900 ] || { echo "bench-lag: timed out" >&2; exit 1; }
    sleep 0.25
  done
  local rss hwm
  rss=$(awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$agent_pid/status")
  hwm=$(awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$agent_pid/status")
  kill "$agent_pid"
  wait "$agent_pid" 2>/dev/null || true
  agent_pid=""
  if [ "$mode" = off ]; then
    printf '%-28s %s\n' "baseline (lag.mode = off)" "steady_rss_mib=$rss peak_rss_mib=$hwm"
    return
  fi
  local durations steady cpu gp conns
  conns=$(sort -u "$work/ports.later" | comm -13 <(sort -u "$work/ports.first") - | wc -l)
  durations=$(sed -n 's/.*lag poll done.*seconds=\([0-9.]*\).*/\1/p' "$work/agent.log" | awk '{printf "%.3f ", $1}')
  gp=$(sed -n 's/.*lag poll done.*group_partitions=\([0-9]*\).*/\1/p' "$work/agent.log" | sort -u)
  if [ "$gp" != $((groups * PARTITIONS)) ]; then
    echo "bench-lag: polls exported $gp group-partitions, expected $((groups * PARTITIONS))" >&2
    exit 1
  fi
  steady=$(echo "$durations" | tr ' ' '\n' | sed 1d | sed '/^$/d' | sort -n |
    awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}')
  cpu=$(awk -v a="$cpu_last" -v b="$cpu_first" -v n="$((POLLS - 1))" -v hz="$hz" 'BEGIN {printf "%.2f", (a - b) / hz / n}')
  printf '%-28s first_poll_s=%s steady_poll_s=%s (polls: %s) agent_cpu_s_per_interval=%s steady_rss_mib=%s peak_rss_mib=%s scrape=%sB/%ss broker_connections_at_first_poll=%s new_connections_after_first_poll=%s\n' \
    "$groups groups x $PARTITIONS = $((groups * PARTITIONS))" "${durations%% *}" "$steady" "${durations% }" "$cpu" "$rss" "$hwm" "$scrape_bytes" "$scrape_s" "$(wc -l <"$work/ports.first")" "$conns"
  echo "    last poll: $(grep 'lag poll stages' "$work/agent.log" | tail -n 1 | sed 's/.*stages=//')"
}

for g in $SCALES; do
  start_broker
  "$setup" "127.0.0.1:$kport" "$g" "$PARTITIONS" 5 2>"$work/setup.log" || { cat "$work/setup.log" >&2; exit 1; }
  run_agent always "$g"
  last=$g
  if [ "$g" = "$(echo $SCALES | awk '{print $NF}')" ]; then run_agent off "$last"; fi
  kill "$tansu_pid"
  wait "$tansu_pid" 2>/dev/null || true
  tansu_pid=""
done
