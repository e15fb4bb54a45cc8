#!/usr/bin/env bash
# What one real agent costs as the fleet around it grows: a Tansu broker (memory storage),
# `losswatch run` on a 6-partition canary topic (probe_interval 1s), and
# examples/fleet_sim.rs writing the probes of N - 1 other agents, each probing every partition
# at the interval it would use itself:
#   - fixed: every agent probes every second (no canary.fleet_probe_rate): the topic carries
#     N probes per partition per second, which every agent reads;
#   - fleet: canary.fleet_probe_rate = FLEET_RATE (default 1): each agent probes every
#     N / FLEET_RATE seconds, so the topic carries FLEET_RATE per partition per second.
# For each N and mode: the agent runs WARMUP seconds, then is measured for MEASURE seconds:
# CPU (utime + stime from /proc/PID/stat) as a share of one core, peak RSS (VmHWM), probes
# read per second (its own, losswatch_probes_received_total, plus other instances',
# losswatch_other_instance_probes_total) and their payload bytes per second (100 B each),
# the bytes per second it received from the broker over its open connections (the kernel's
# counters, scripts/lib/sock_bytes.py: fetch responses, plus produce acks and metadata),
# and what the agent says of the fleet (losswatch_fleet_agents, losswatch_probe_interval_seconds).
# Prints one line per run. The broker and the simulator run on the same machine.
#
# Environment: FLEET (agent counts, default "1 10 100 300"), MODES (default "fixed fleet"),
# WARMUP (default 20), MEASURE (default 40), FLEET_RATE (default 1).
# Exit status: non-zero if a build, the broker, the simulator or the agent fails, or if the
# agent counts any foreign record or lost probe.
set -euo pipefail
cd "$(dirname "$0")/.."

FLEET=${FLEET:-"1 10 100 300"}
MODES=${MODES:-"fixed fleet"}
WARMUP=${WARMUP:-20}
MEASURE=${MEASURE:-40}
FLEET_RATE=${FLEET_RATE:-1}
PARTITIONS=6

tansu=$(scripts/install-tansu.sh | tail -n 1)
cargo build --release --locked --bin losswatch --example fleet_sim
bin=target/release/losswatch
sim=target/release/examples/fleet_sim
work=$(mktemp -d)
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench-fleet: nothing listens on port $1" >&2
  exit 1
}
metric() { # name -> sum over series
  curl -sf "http://127.0.0.1:$hport/metrics" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 {s += $2} END {printf "%g", s + 0}'
}
ticks() { local st; st=$(cat "/proc/$1/stat"); read -r -a f <<<"${st##*) }"; echo $((f[11] + f[12])); }

hz=$(getconf CLK_TCK)
for n in $FLEET; do
  for mode in $MODES; do
    kport=$(free_port)
    "$tansu" broker --listener-url "tcp://127.0.0.1:$kport" --advertised-listener-url "tcp://127.0.0.1:$kport" \
      --storage-engine memory://tansu/ >"$work/tansu.log" 2>&1 &
    tp=$!; pids="$pids $tp"
    wait_port "$kport"
    hport=$(free_port)
    rate_line=""
    interval_ms=1000
    if [ "$mode" = fleet ]; then
      rate_line="fleet_probe_rate = $FLEET_RATE"
      interval_ms=$(python3 -c "print(max(1000, int($n / $FLEET_RATE * 1000)))")
    fi
    rm -f "$work"/state.db*
    cat >"$work/agent.toml" <<TOML
[kafka]
bootstrap_servers = "127.0.0.1:$kport"
[canary]
topic = "losswatch-canary"
partitions = $PARTITIONS
replication_factor = 1
probe_interval = "1s"
$rate_line
[http]
listen = "127.0.0.1:$hport"
[state]
path = "$work/state.db"
[lag]
mode = "off"
[audit]
mode = "off"
TOML
    LOSSWATCH_LOG=warn "$bin" run --config "$work/agent.toml" >"$work/agent.log" 2>&1 &
    ap=$!; pids="$pids $ap"
    wait_port "$hport"
    for _ in $(seq 1 100); do [ "$(metric losswatch_canary_partitions)" = "$PARTITIONS" ] && break; sleep 0.2; done
    sp=""
    if [ "$n" -gt 1 ]; then
      "$sim" "127.0.0.1:$kport" losswatch-canary $((n - 1)) "$interval_ms" $((WARMUP + MEASURE + 5)) 2>"$work/sim.log" &
      sp=$!; pids="$pids $sp"
    fi
    sleep "$WARMUP"
    kill -0 "$ap" || { echo "bench-fleet: agent died" >&2; cat "$work/agent.log" >&2; exit 1; }
    t0=$(ticks "$ap"); r0=$(metric losswatch_probes_received_total); o0=$(metric losswatch_other_instance_probes_total)
    read -r x0 _ <<<"$(python3 scripts/lib/sock_bytes.py "$ap" "$kport")"
    sleep "$MEASURE"
    t1=$(ticks "$ap"); r1=$(metric losswatch_probes_received_total); o1=$(metric losswatch_other_instance_probes_total)
    read -r x1 _ <<<"$(python3 scripts/lib/sock_bytes.py "$ap" "$kport")"
    # A connection closed during the run took its bytes along: "-" rather than a wrong rate.
    rx=-; [ "$x1" -ge "$x0" ] && rx=$(awk -v a="$x0" -v b="$x1" -v s="$MEASURE" 'BEGIN {printf "%.0f", (b - a) / s}')
    hwm=$(awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$ap/status")
    agents=$(metric losswatch_fleet_agents); every=$(metric losswatch_probe_interval_seconds)
    foreign=$(metric losswatch_foreign_records_total); lost=$(metric losswatch_probes_lost_total)
    own=$(awk -v a="$r0" -v b="$r1" -v s="$MEASURE" 'BEGIN {printf "%.1f", (b - a) / s}')
    others=$(awk -v a="$o0" -v b="$o1" -v s="$MEASURE" 'BEGIN {printf "%.1f", (b - a) / s}')
    printf 'N=%-4s %-6s cpu_pct=%s peak_rss_mib=%s own_probes_read_per_s=%s others_probes_read_per_s=%s payload_bytes_read_per_s=%s socket_bytes_received_per_s=%s fleet_agents=%s probe_interval_s=%s foreign=%s lost=%s\n' \
      "$n" "$mode" \
      "$(awk -v a="$t0" -v b="$t1" -v hz="$hz" -v s="$MEASURE" 'BEGIN {printf "%.2f", (b - a) / hz / s * 100}')" \
      "$hwm" "$own" "$others" "$(awk -v a="$own" -v b="$others" 'BEGIN {printf "%.0f", (a + b) * 100}')" "$rx" \
      "$agents" "$every" "$foreign" "$lost"
    [ "$foreign" = 0 ] && [ "$lost" = 0 ] || { echo "bench-fleet: foreign records or lost probes" >&2; exit 1; }
    kill "$ap"; wait "$ap" 2>/dev/null || true
    [ -n "$sp" ] && { kill "$sp" 2>/dev/null || true; wait "$sp" 2>/dev/null || true; }
    kill "$tp"; wait "$tp" 2>/dev/null || true
    pids=""
  done
done
