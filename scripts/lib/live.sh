# shellcheck shell=bash
# Shared by the live checks (sourced after common.sh, not run): background processes that are
# killed by PID when the script exits, free loopback ports, waiting for an HTTP endpoint.
#
#   live_start NAME LOG CMD...   starts CMD in the background (stdout+stderr to LOG), remembers
#                                its PID under NAME (and in $live_pid)
#   live_alive NAME              true while that process runs
#   live_stop_all                SIGTERM to every process started here, SIGKILL after 5 s
#   free_port                    prints a free TCP port on 127.0.0.1
#   wait_http URL SECONDS        waits until URL answers 200; false after SECONDS
#
# Scripts install the cleanup with:  trap 'live_stop_all; rm -rf "$tmp"' EXIT
#                                     trap 'exit 130' INT TERM

live_names=()
live_pids=()
live_pid=""

live_start() {
  local name="$1" log="$2"
  shift 2
  "$@" >"$log" 2>&1 &
  live_pid=$!
  live_names+=("$name")
  live_pids+=("$live_pid")
}

live_pid_of() {
  local i
  for i in "${!live_names[@]}"; do
    if [ "${live_names[$i]}" = "$1" ]; then
      echo "${live_pids[$i]}"
      return 0
    fi
  done
  return 1
}

live_alive() {
  local pid
  pid="$(live_pid_of "$1")" || return 1
  kill -0 "$pid" 2>/dev/null
}

live_stop_all() {
  local pid
  for pid in "${live_pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for _ in $(seq 50); do
    local left=0
    for pid in "${live_pids[@]}"; do
      if kill -0 "$pid" 2>/dev/null; then left=1; fi
    done
    [ "$left" = 0 ] && break
    sleep 0.1
  done
  for pid in "${live_pids[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  live_pids=()
  live_names=()
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() {
  python3 - "$1" "$2" <<'PY'
import sys, time, urllib.request
url, limit = sys.argv[1], float(sys.argv[2])
end = time.monotonic() + limit
while True:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except Exception:
        pass
    if time.monotonic() > end:
        sys.exit(1)
    time.sleep(0.2)
PY
}
