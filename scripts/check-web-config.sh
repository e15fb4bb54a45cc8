#!/usr/bin/env bash
# Checks TLS and basic auth of the endpoints with a real Prometheus, using a web-config file of
# the Prometheus exporter toolkit (--web.config.file):
#   - makes a test CA, a server certificate for 127.0.0.1 and a second, unrelated CA (openssl);
#     bcrypt hashes of the passwords with Python's bcrypt (an implementation independent of the
#     agent's), one as `$2y$` (htpasswd's prefix), one as `$2b$`;
#   - runs `losswatch demo --no-chaos --web.config.file web.yml` on a free loopback port;
#   - curl: the right password gets /metrics over TLS; no password and a wrong one get 401;
#     /livez and /readyz answer without a password; plain HTTP and the wrong CA are refused;
#   - a real Prometheus scrapes it with three jobs: the right password (must be up and store
#     samples), no password and a wrong one (must be down, with a 401);
#   - the password appears in no output of the agent.
# Installs what it needs when missing (prometheus, openssl and curl from Debian; bcrypt from PyPI).
# Every process it starts is stopped by PID on exit. Environment: BIN (agent binary; default: a
# release build), DEADLINE (seconds to wait for the first scrapes, default 60).
# Last line: "check-web-config: N passed, M failed"; exit status 1 if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/common.sh
. scripts/lib/live.sh

DEADLINE=${DEADLINE:-60}

command -v prometheus >/dev/null 2>&1 || { echo "installing prometheus (apt)"; apt_install prometheus; }
command -v openssl >/dev/null 2>&1 || { echo "installing openssl (apt)"; apt_install openssl; }
command -v curl >/dev/null 2>&1 || { echo "installing curl (apt)"; apt_install curl; }
command -v python3 >/dev/null 2>&1 || apt_install python3
python3 -c 'import bcrypt' 2>/dev/null || { echo "installing bcrypt (pip)"; pip_install bcrypt; }
python3 -c 'import bcrypt' || { echo "check-web-config: cannot import bcrypt" >&2; exit 2; }
echo "using $(prometheus --version 2>&1 | head -n1), $(openssl version)"

if [ -z "${BIN:-}" ]; then
  cargo build --release --locked
  BIN="$PWD/target/release/losswatch"
fi

tmp="$(mktemp -d)"
trap 'live_stop_all; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# Certificates: a CA, a server certificate it signs for 127.0.0.1, and an unrelated CA.
cd "$tmp"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=losswatch test CA" \
  -keyout ca.key -out ca.crt 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=other CA" \
  -keyout other.key -out other.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
  -extfile server.ext -out server.crt 2>/dev/null
cd - >/dev/null

password="wc-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
hash_y="$(python3 -c 'import bcrypt,sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(10)).decode().replace("$2b$", "$2y$", 1))' "$password")"
hash_b="$(python3 -c 'import bcrypt,sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(10)).decode())' "other-$password")"
# Relative paths: the toolkit resolves them from the web config's folder.
cat >"$tmp/web.yml" <<EOF
tls_server_config:
  cert_file: server.crt
  key_file: server.key
basic_auth_users:
  prometheus: '$hash_y'
  other: '$hash_b'
EOF

agent_port="$(free_port)"
live_start demo "$tmp/demo.log" "$BIN" demo --no-chaos --duration 1h --probe-interval 200ms \
  --listen "127.0.0.1:$agent_port" --web.config.file "$tmp/web.yml"
base="https://127.0.0.1:$agent_port"
for _ in $(seq 100); do
  curl -s -o /dev/null --cacert "$tmp/ca.crt" "$base/livez" && break
  sleep 0.2
done

code() { curl -s -o "$tmp/body" -w '%{http_code}' "$@" || true; }

c="$(code --cacert "$tmp/ca.crt" -u "prometheus:$password" "$base/metrics")"
if [ "$c" = 200 ] && grep -q '^losswatch_build_info' "$tmp/body"; then ok "right password: /metrics 200 over TLS"; else not_ok "right password: /metrics answered $c"; fi
c="$(code --cacert "$tmp/ca.crt" -u "other:other-$password" "$base/api/status")"
if [ "$c" = 200 ]; then ok "second user (\$2b\$ hash): /api/status 200"; else not_ok "second user: /api/status answered $c"; fi
for path in /metrics /api/status /api/losses; do
  c="$(code --cacert "$tmp/ca.crt" "$base$path")"
  if [ "$c" = 401 ]; then ok "no password: $path 401"; else not_ok "no password: $path answered $c"; fi
done
c="$(code --cacert "$tmp/ca.crt" -u "prometheus:wrong" "$base/metrics")"
if [ "$c" = 401 ]; then ok "wrong password: 401"; else not_ok "wrong password: answered $c"; fi
for path in /livez /readyz; do
  c="$(code --cacert "$tmp/ca.crt" "$base$path")"
  if [ "$c" = 200 ] || [ "$c" = 503 ]; then ok "$path open without a password ($c)"; else not_ok "$path answered $c"; fi
done
if curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$agent_port/livez"; then not_ok "plain HTTP was answered"; else ok "plain HTTP refused"; fi
if curl -s -o /dev/null --max-time 5 --cacert "$tmp/other.crt" "$base/livez"; then not_ok "a certificate of another CA was accepted by curl"; else ok "wrong CA: TLS verification fails"; fi

prom_port="$(free_port)"
job() {
  cat <<EOF
  - job_name: $1
    scheme: https
    tls_config:
      ca_file: $tmp/ca.crt
    static_configs:
      - targets: ['127.0.0.1:$agent_port']
EOF
  if [ -n "$2" ]; then
    cat <<EOF
    basic_auth:
      username: prometheus
      password: '$2'
EOF
  fi
}
{
  printf 'global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n'
  job good "$password"
  job nopassword ""
  job wrongpassword "not-$password"
} >"$tmp/prometheus.yml"
live_start prometheus "$tmp/prometheus.log" prometheus --config.file="$tmp/prometheus.yml" \
  --storage.tsdb.path="$tmp/prometheus-data" --web.listen-address="127.0.0.1:$prom_port"
if ! wait_http "http://127.0.0.1:$prom_port/-/ready" 30; then
  cat "$tmp/prometheus.log"
  not_ok "Prometheus not ready within 30s"
else
  python3 - "http://127.0.0.1:$prom_port" "$DEADLINE" >"$tmp/prom.out" 2>&1 <<'PY' || true
import json, sys, time, urllib.parse, urllib.request
prom, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
def q(expr):
    url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        return {s["metric"].get("job"): float(s["value"][1]) for s in json.load(r)["data"]["result"]}
def targets():
    with urllib.request.urlopen(prom + "/api/v1/targets", timeout=5) as r:
        return {t["labels"]["job"]: t for t in json.load(r)["data"]["activeTargets"]}
up = {}
while time.monotonic() < deadline:
    up = q("up")
    if len(up) == 3 and up.get("good") == 1 and q('count by (job) (losswatch_build_info)').get("good"):
        break
    time.sleep(1)
print(("ok: " if up.get("good") == 1 else "FAIL: ") + f"job good (TLS + right password) up={up.get('good')}")
samples = q('scrape_samples_scraped').get("good", 0)
print(("ok: " if samples > 50 else "FAIL: ") + f"job good stored {samples:.0f} samples per scrape")
t = targets()
for job in ("nopassword", "wrongpassword"):
    err = t.get(job, {}).get("lastError", "")
    good = up.get(job) == 0 and "401" in err
    print(("ok: " if good else "FAIL: ") + f"job {job} refused: up={up.get(job)} lastError={err!r}")
PY
  count_lines "$tmp/prom.out"
fi

for name in demo prometheus; do
  if ! live_alive "$name"; then tail -n 20 "$tmp/$name.log"; not_ok "$name exited during the check"; fi
done
live_stop_all
if grep -rqF -- "$password" "$tmp/demo.log"; then not_ok "the password appears in the agent's output"; else ok "the password appears in no output of the agent"; fi

echo "check-web-config: $passed passed, $failed failed"
[ "$failed" = 0 ]
