#!/usr/bin/env bash
# One real agent under load: a Tansu broker (memory storage), `losswatch run` (release build)
# probing PARTITIONS canary partitions every INTERVAL, optionally beside
# examples/fleet_sim.rs writing the probes of FLEET - 1 other agents at the same interval, and
# a concurrent scraper of /metrics (scripts/lib/scrape_load.py, a bounded loop).
#
# After WARMUP seconds it samples the agent every SAMPLE seconds for DURATION seconds and prints
# one row per sample:
#   cpu_pct       utime + stime from /proc/PID/stat over the sample, % of one core
#   rss_mib       VmRSS at the end of the sample
#   sent/s acked/s received/s others/s   probes per second (losswatch_probes_*_total and
#                 losswatch_other_instance_probes_total)
#   rchar_kib/s   /proc/PID/io rchar per second: file reads only, NOT the fetched bytes
#                 (librdkafka reads its sockets with recvmsg, which rchar does not count)
#   rx_kib/s tx_kib/s   bytes the agent received from / sent to the broker per second, from
#                 the kernel's counters of its open connections to the broker's port
#                 (scripts/lib/sock_bytes.py, `ss -tinp`): rx is mostly fetch responses, tx
#                 mostly produce requests
#   writes/s      state-file transactions per second (losswatch_ledger_write_seconds_count)
#   fsyncs/s      fsync and fdatasync calls per second, from `strace -c -f` over the first sample
#                 only (strace slows what it traces; the other samples run without it)
#   state_kib     size of the state file with its WAL
#   pending       acked probes not yet read back (losswatch_probes_pending, summed)
# then a summary: mean CPU, peak RSS (VmHWM), RSS growth from the first to the last sample,
# the scraper's scrapes and p50/p99/max latency, and the loss counters (lost, foreign,
# duplicated, send failed), which must be 0.
#
# Environment: PARTITIONS (default 1000), INTERVAL (canary.probe_interval, default 100ms),
# FLEET (agents including the real one, default 1), WARMUP (default 30), DURATION (default
# 600), SAMPLE (default 30), SCRAPE_PAUSE (seconds between scrapes, default 0.05; 0 disables
# the scraper), STRACE (1 to count fsyncs in the first sample, default 1 if strace exists),
# MALLOC_ARENA_MAX and MALLOC_TRIM_THRESHOLD_ (the agent's glibc allocator; default 1 and
# 131072, what the image and the DaemonSet set).
# Exit status: non-zero if a build, the broker, the simulator or the agent fails, or if the
# agent counts a lost, foreign or duplicated probe or a failed send.
set -euo pipefail
cd "$(dirname "$0")/.."

PARTITIONS=${PARTITIONS:-1000}
INTERVAL=${INTERVAL:-100ms}
FLEET=${FLEET:-1}
WARMUP=${WARMUP:-30}
DURATION=${DURATION:-600}
SAMPLE=${SAMPLE:-30}
SCRAPE_PAUSE=${SCRAPE_PAUSE:-0.05}
if [ -z "${STRACE:-}" ]; then
  if command -v strace >/dev/null; then STRACE=1; else STRACE=0; fi
fi

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
  for _ in $(seq 1 400); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench-load: nothing listens on port $1" >&2
  exit 1
}
scrape() { curl -sf "http://127.0.0.1:$hport/metrics" >"$work/scrape" || { echo "bench-load: scrape failed" >&2; exit 1; }; }
metric() { # name -> sum over the series of the last scrape
  awk -v n="$1" '$1 == n || index($1, n "{") == 1 {s += $2} END {printf "%.0f", s + 0}' "$work/scrape"
}
ticks() { local st; st=$(cat "/proc/$1/stat"); read -r -a f <<<"${st##*) }"; echo $((f[11] + f[12])); }
rchar() { awk '/^rchar:/ {print $2}' "/proc/$1/io"; }
rss() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
sock() { python3 scripts/lib/sock_bytes.py "$ap" "$kport"; } # -> "rx tx sockets"
state_kib() { du -ck "$work"/state.db* 2>/dev/null | awk 'END {print $1}'; }
ms() { python3 -c "import re,sys; s=sys.argv[1]; m=re.fullmatch(r'(\d+)(ms|s)', s); print(int(m[1]) * (1 if m[2] == 'ms' else 1000))" "$1"; }

hz=$(getconf CLK_TCK)
kport=$(free_port)
"$tansu" broker --listener-url "tcp://127.0.0.1:$kport" --advertised-listener-url "tcp://127.0.0.1:$kport" \
  --storage-engine memory://tansu/ >"$work/tansu.log" 2>&1 &
tp=$!; pids="$pids $tp"
wait_port "$kport"
hport=$(free_port)
cat >"$work/agent.toml" <<TOML
[kafka]
bootstrap_servers = "127.0.0.1:$kport"
[canary]
topic = "losswatch-canary"
partitions = $PARTITIONS
replication_factor = 1
probe_interval = "$INTERVAL"
[http]
listen = "127.0.0.1:$hport"
[state]
path = "$work/state.db"
[lag]
mode = "off"
[audit]
mode = "off"
TOML
# glibc's allocator settings of the image and the DaemonSet (deploy/base/daemonset.yaml), unless
# the environment sets others.
LOSSWATCH_LOG=warn MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-1} MALLOC_TRIM_THRESHOLD_=${MALLOC_TRIM_THRESHOLD_:-131072} \
  "$bin" run --config "$work/agent.toml" >"$work/agent.log" 2>&1 &
ap=$!; pids="$pids $ap"
wait_port "$hport"
for _ in $(seq 1 300); do scrape; [ "$(metric losswatch_canary_partitions)" = "$PARTITIONS" ] && break; sleep 0.2; done
[ "$(metric losswatch_canary_partitions)" = "$PARTITIONS" ] || { echo "bench-load: the agent does not probe $PARTITIONS partitions" >&2; cat "$work/agent.log" >&2; exit 1; }
if [ "$FLEET" -gt 1 ]; then
  "$sim" "127.0.0.1:$kport" losswatch-canary $((FLEET - 1)) "$(ms "$INTERVAL")" $((WARMUP + DURATION + 10)) 2>"$work/sim.log" &
  pids="$pids $!"
fi
sleep "$WARMUP"
kill -0 "$ap" || { echo "bench-load: agent died" >&2; cat "$work/agent.log" >&2; exit 1; }
if [ "$SCRAPE_PAUSE" != 0 ]; then
  python3 scripts/lib/scrape_load.py "http://127.0.0.1:$hport/metrics" "$DURATION" "$SCRAPE_PAUSE" >"$work/scraper.out" &
  scraper=$!; pids="$pids $scraper"
fi

echo "bench-load: $PARTITIONS partitions, probe_interval $INTERVAL, fleet $FLEET, warmup ${WARMUP}s, ${DURATION}s in ${SAMPLE}s samples, scraper pause ${SCRAPE_PAUSE}s"
printf '%6s %8s %8s %8s %8s %10s %9s %10s %9s %9s %8s %8s %10s %8s\n' t_s cpu_pct rss_mib sent/s acked/s received/s others/s rchar_kib/s rx_kib/s tx_kib/s writes/s fsyncs/s state_kib pending
scrape
read -r x0 y0 _ <<<"$(sock)"
t0=$(ticks "$ap"); c0=$(rchar "$ap"); s0=$(metric losswatch_probes_sent_total); a0=$(metric losswatch_probes_acked_total)
r0=$(metric losswatch_probes_received_total); o0=$(metric losswatch_other_instance_probes_total); w0=$(metric losswatch_ledger_write_seconds_count)
first_rss=""; last_rss=""; cpu_sum=0; n=0; elapsed=0
while [ "$elapsed" -lt "$DURATION" ]; do
  fsyncs="-"
  if [ "$STRACE" = 1 ] && [ "$n" = 0 ]; then
    timeout -s INT "$SAMPLE" strace -c -f -e trace=fsync,fdatasync -p "$ap" -o "$work/strace.out" 2>/dev/null || true
    fsyncs=$(awk -v s="$SAMPLE" '$NF == "fsync" || $NF == "fdatasync" {c += $4} END {printf "%.1f", c / s}' "$work/strace.out")
  else
    sleep "$SAMPLE"
  fi
  elapsed=$((elapsed + SAMPLE)); n=$((n + 1))
  kill -0 "$ap" || { echo "bench-load: agent died" >&2; tail -n 50 "$work/agent.log" >&2; exit 1; }
  scrape
  t1=$(ticks "$ap"); c1=$(rchar "$ap"); s1=$(metric losswatch_probes_sent_total); a1=$(metric losswatch_probes_acked_total)
  r1=$(metric losswatch_probes_received_total); o1=$(metric losswatch_other_instance_probes_total); w1=$(metric losswatch_ledger_write_seconds_count)
  read -r x1 y1 _ <<<"$(sock)"
  cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$hz" -v s="$SAMPLE" 'BEGIN {printf "%.2f", (b - a) / hz / s * 100}')
  last_rss=$(rss "$ap"); [ -n "$first_rss" ] || first_rss=$last_rss
  # A connection closed during the sample took its bytes along: "-" rather than a wrong rate.
  srate() { if [ "$2" -ge "$1" ]; then rate "$1" "$2" 1024; else echo -; fi; }
  rate() { awk -v a="$1" -v b="$2" -v s="$SAMPLE" -v d="${3:-1}" 'BEGIN {printf "%.1f", (b - a) / s / d}'; }
  printf '%6s %8s %8s %8s %8s %10s %9s %10s %9s %9s %8s %8s %10s %8s\n' "$elapsed" "$cpu" "$last_rss" \
    "$(rate "$s0" "$s1")" "$(rate "$a0" "$a1")" "$(rate "$r0" "$r1")" "$(rate "$o0" "$o1")" \
    "$(rate "$c0" "$c1" 1024)" "$(srate "$x0" "$x1")" "$(srate "$y0" "$y1")" \
    "$(rate "$w0" "$w1")" "$fsyncs" "$(state_kib)" "$(metric losswatch_probes_pending)"
  cpu_sum=$(awk -v a="$cpu_sum" -v b="$cpu" 'BEGIN {print a + b}')
  t0=$t1; c0=$c1; s0=$s1; a0=$a1; r0=$r1; o0=$o1; w0=$w1; x0=$x1; y0=$y1
done
hwm=$(awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$ap/status")
[ -n "${scraper:-}" ] && { wait "$scraper" || true; }
lost=$(metric losswatch_probes_lost_total); foreign=$(metric losswatch_foreign_records_total)
dup=$(metric losswatch_probes_duplicated_total); failed=$(metric losswatch_probes_send_failed_total)
echo "summary: mean_cpu_pct=$(awk -v a="$cpu_sum" -v n="$n" 'BEGIN {printf "%.2f", a / n}') peak_rss_mib=$hwm rss_first_mib=$first_rss rss_last_mib=$last_rss lost=$lost foreign=$foreign duplicated=$dup send_failed=$failed"
[ -s "$work/scraper.out" ] && echo "scraper (concurrent with the run): $(cat "$work/scraper.out")"
[ "$lost" = 0 ] && [ "$foreign" = 0 ] && [ "$dup" = 0 ] && [ "$failed" = 0 ] || { echo "bench-load: the agent counted losses, foreign records, duplicates or failed sends" >&2; tail -n 30 "$work/agent.log" >&2; exit 1; }
