#!/usr/bin/env bash
# Checks the status page (GET /) in a real browser, against the demo's loss schedule:
#   - runs `losswatch demo --duration 80s` (every stage loses messages) on a free loopback port;
#   - headless Chromium (Debian `chromium`) loads the page and dumps its DOM after the page's
#     script has fetched and rendered (--virtual-time-budget):
#       at ~10 s: one row per canary partition (6), the demo-app consumer group, and the audit
#                 findings (replication_factor_below_3 on demo-scratch, configs_unavailable);
#       at ~72 s: after the broker stage's power loss: loss events of kind "lost" and a
#                 non-zero "lost" card; partition rows again after the agent's restart;
#   - takes a screenshot at ~72 s (kept at $SCREENSHOT when set, e.g. docs/status-page.png);
#   - the demo must exit 0: its own verdict (every count equals what it injected) holds, and
#     that verdict must show losses injected at the producer, consumer and broker stages.
# Installs chromium from Debian when missing. Every process it starts is stopped by PID on exit.
# Environment: LOSSWATCH_BIN (binary to run; default: builds the release binary), SCREENSHOT.
# Last line: "check-page: N passed, M failed"; exit status 1 if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/common.sh
. scripts/lib/live.sh

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (apt: chromium)"
  apt_install chromium fonts-dejavu-core
fi
command -v chromium >/dev/null 2>&1 || { echo "check-page: chromium not found after install" >&2; exit 2; }
command -v python3 >/dev/null 2>&1 || apt_install python3
echo "using $(chromium --version 2>/dev/null | head -n1)"

bin="${LOSSWATCH_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --locked
  bin="$PWD/target/release/losswatch"
fi

tmp="$(mktemp -d)"
trap 'live_stop_all; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

port="$(free_port)"
url="http://127.0.0.1:$port/"
t0=$(date +%s)
live_start demo "$tmp/demo.log" "$bin" demo --duration 80s --listen "127.0.0.1:$port" \
  --state "$tmp/demo.db"
demo_pid=$live_pid
if ! wait_http "$url" 30; then
  cat "$tmp/demo.log"
  echo "check-page: the demo did not serve $url within 30s" >&2
  exit 1
fi

browser() {
  chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --disable-dev-shm-usage \
    --user-data-dir="$tmp/chrome" --virtual-time-budget=6000 "$@" 2>>"$tmp/chromium.log"
}

until_second() { # waits until SECONDS after the demo started
  local now
  now=$(($(date +%s) - t0))
  if [ "$now" -lt "$1" ]; then sleep $(($1 - now)); fi
}

# DOM checks: python reads the dumped DOM and prints ok:/FAIL: lines.
check_dom() {
  local file="$1" phase="$2"
  python3 - "$file" "$phase" >"$tmp/check.out" <<'PY'
import re, sys
dom, phase = open(sys.argv[1], encoding="utf-8").read(), sys.argv[2]
def check(cond, what):
    print(("ok: " if cond else "FAIL: ") + f"page at {phase}: {what}")
rows = set(re.findall(r'<tr data-partition="(\d+)"', dom))
check(rows == {str(p) for p in range(6)}, f"one row per canary partition (saw {sorted(rows)})")
check('data-loaded="1"' in dom, "the page's script fetched and rendered the agent's data")
if phase == "start":
    check('data-group="demo-app"' in dom, "consumer group demo-app listed")
    check('<tr data-risk="replication_factor_below_3"' in dom,
          "audit findings listed (demo-scratch has one replica)")
    check('<tr data-risk="configs_unavailable"' in dom,
          "audit findings say the mock's configs are unavailable")
else:
    lost = len(re.findall(r'<tr data-kind="lost"', dom))
    check(lost > 0, f"loss events of kind lost listed after the power loss ({lost} rows)")
    m = re.search(r'<div class="card bad"><div class="n">(\d+)</div><div class="l">lost · broker stage', dom)
    check(m is not None and int(m.group(1)) > 0, "the lost card shows the losses")
PY
  count_lines "$tmp/check.out"
}

until_second 10
browser --dump-dom "$url" >"$tmp/start.html" || true
check_dom "$tmp/start.html" start

until_second 72
browser --dump-dom "$url" >"$tmp/after.html" || true
check_dom "$tmp/after.html" "after the loss stages"
shot="${SCREENSHOT:-$tmp/page.png}"
browser --hide-scrollbars --window-size=1440,1120 --screenshot="$shot" "$url" >/dev/null || true
if [ -s "$shot" ]; then ok "screenshot taken ($shot)"; else not_ok "no screenshot"; fi

rc=0
wait "$demo_pid" || rc=$?
# The verdict must name every stage with something really injected, not an empty schedule.
python3 - "$tmp/demo.log" >"$tmp/verdict.out" <<'PY'
import re, sys
lines = [l for l in open(sys.argv[1], encoding="utf-8") if l.startswith("verdict: ")]
v = lines[-1] if lines else ""
def check(cond, what):
    print(("ok: " if cond else "FAIL: ") + what)
check(bool(v), "the demo printed its verdict line")
for stage, pattern in [
    ("producer stage", r"producer stage[^:]*: injected (\d+) send failures"),
    ("consumer stage", r"consumer stage[^:]*: injected (\d+) acked probes removed"),
    ("consumer stage (demo-app)", r"group demo-app: injected (\d+) messages"),
    ("broker stage", r"broker stage[^:]*: injected (\d+) acked probes destroyed"),
]:
    m = re.search(pattern, v)
    check(m is not None and int(m.group(1)) > 0, f"{stage}: something was injected and judged ({m.group(0) if m else 'missing'})")
PY
count_lines "$tmp/verdict.out"
if [ "$rc" -eq 0 ]; then
  ok "demo exited 0: $(grep '^verdict:' "$tmp/demo.log" | sed 's/.*| //')"
else
  grep -v '^20' "$tmp/demo.log" | tail -n 20
  not_ok "demo exited $rc"
fi

echo "check-page: ${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
