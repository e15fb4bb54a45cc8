#!/usr/bin/env bash
# Measures the CPU and memory of `losswatch demo` (the whole agent against the in-process mock
# cluster, 6 partitions, no chaos).
#
# Builds the release binary, runs the demo in the background and samples the process every
# second from /proc/PID/stat (utime + stime) and /proc/PID/status (VmRSS, VmHWM). Prints:
#   - average CPU over the run, in % of one core, from WARMUP seconds after start to the last
#     sample before the demo printed its final line (start-up and shutdown excluded);
#   - peak RSS (VmHWM, whole lifetime up to the last sample) in MiB;
#   - steady RSS (median VmRSS of the same samples as the CPU average) in MiB;
#   - how long the process lived, and when it printed its final line;
#   - the demo's final summary line.
# The CPU and RSS include librdkafka's mock brokers, which run in the same process.
#
# Environment: DURATION (default 60s), INTERVAL (probe interval per partition, default 1s),
# WARMUP (seconds, default 5).
# Exit status: non-zero if the build fails, if the demo exits non-zero (it does when any probe
# was lost or duplicated), or if its final line is missing or reports a loss or a duplicate.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-60s}
INTERVAL=${INTERVAL:-1s}
WARMUP=${WARMUP:-5}

cargo build --release --locked

bin=target/release/losswatch
log=$(mktemp)
samples=$(mktemp)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
  rm -f "$log" "$samples"
}
trap cleanup EXIT

hz=$(getconf CLK_TCK)
now() { date +%s.%N; }

t_start=$(now)
"$bin" demo --duration "$DURATION" --no-chaos --listen 127.0.0.1:0 \
  --probe-interval "$INTERVAL" >"$log" 2>&1 &
pid=$!

# One line per sample: seconds since start, utime+stime (ticks), VmRSS (kB), VmHWM (kB), and
# 1 once the final line has been printed (else 0).
while :; do
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || break
  status=$(cat "/proc/$pid/status" 2>/dev/null) || break
  t=$(now)
  fin=0
  grep -q '^final:' "$log" && fin=1
  # Fields after the command name, which is in parentheses and may contain spaces.
  read -r -a f <<<"${stat##*) }"
  state=${f[0]}
  [ "$state" = Z ] && break
  ticks=$((f[11] + f[12]))
  rss=$(awk '/^VmRSS:/ {print $2}' <<<"$status")
  hwm=$(awk '/^VmHWM:/ {print $2}' <<<"$status")
  [ -n "$rss" ] && [ -n "$hwm" ] || break
  echo "$(awk -v a="$t" -v b="$t_start" 'BEGIN {printf "%.3f", a - b}') $ticks $rss $hwm $fin" >>"$samples"
  sleep 1
done

rc=0
wait "$pid" || rc=$?
pid=""
lifetime=$(awk -v a="$(now)" -v b="$t_start" 'BEGIN {printf "%.1f", a - b}')

echo "demo --duration $DURATION --no-chaos --probe-interval $INTERVAL (6 partitions), exit $rc"
if [ "$rc" != 0 ]; then
  echo "bench-demo: demo failed (exit $rc); its output:" >&2
  cat "$log" >&2
  exit "$rc"
fi

final=$(grep '^final:' "$log" | tail -n 1 || true)
if [ -z "$final" ]; then
  echo "bench-demo: no final summary line; demo output:" >&2
  cat "$log" >&2
  exit 1
fi
if ! grep -q ' lost=0 ' <<<"$final " || ! grep -q ' dup=0 ' <<<"$final "; then
  echo "bench-demo: loss or duplicates reported: $final" >&2
  exit 1
fi

awk -v hz="$hz" -v warmup="$WARMUP" -v lifetime="$lifetime" '
  { t[NR] = $1; ticks[NR] = $2; rss[NR] = $3; hwm[NR] = $4; done[NR] = $5 }
  END {
    if (NR == 0) { print "bench-demo: no samples" > "/dev/stderr"; exit 1 }
    first = 0; last = 0; n = 0; final_at = -1
    for (i = 1; i <= NR; i++) {
      if (done[i]) { if (final_at < 0) final_at = t[i]; continue }
      if (t[i] >= warmup) { if (!first) first = i; last = i; steady[++n] = rss[i] }
    }
    if (!first || last == first) {
      print "bench-demo: run too short to measure after the warm-up" > "/dev/stderr"; exit 1
    }
    cpu = (ticks[last] - ticks[first]) / hz / (t[last] - t[first]) * 100
    # Median of the steady VmRSS samples (insertion sort; a few hundred samples at most).
    for (i = 2; i <= n; i++) {
      v = steady[i]; j = i - 1
      while (j >= 1 && steady[j] > v) { steady[j + 1] = steady[j]; j-- }
      steady[j + 1] = v
    }
    med = (n % 2) ? steady[(n + 1) / 2] : (steady[n / 2] + steady[n / 2 + 1]) / 2
    printf "samples: %d (%d after the first %ds and before the final line), measured over %.1f s\n", NR, n, warmup, t[last] - t[first]
    if (final_at >= 0) printf "process lived %.1f s; final line seen by the sample at %.1f s\n", lifetime, final_at
    else printf "process lived %.1f s\n", lifetime
    printf "cpu_avg_pct_of_one_core: %.1f\n", cpu
    printf "peak_rss_mib (VmHWM): %.1f\n", hwm[NR] / 1024
    printf "steady_rss_mib (median VmRSS): %.1f\n", med / 1024
  }' "$samples"
echo "$final"
