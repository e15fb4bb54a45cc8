#!/usr/bin/env bash
# Runs every check and test of the project; exits non-zero on the first failure.
#   1. formatting and lints
#   2. unit, property, MockCluster, binary-level and real-broker tests (cargo test); the Tansu
#      broker the real-broker tests start is installed first (pinned, built once, then cached),
#      and stunnel, the TLS terminator the Kafka TLS tests put in front of it (installs if missing)
#   3. Prometheus rules: promtool syntax + unit tests, runbook anchors, generated PrometheusRule,
#      dashboard queries (installs promtool if missing)
#   4. the dashboard against live data: every query through a real Prometheus scraping the demo
#      agent with the rules loaded (installs prometheus if missing)
#   5. the status page in headless Chromium against the demo's loss schedule, and the demo's
#      own verdict (every stage loses messages; every count must equal what was injected)
#      (installs chromium if missing)
#   6. the pager path end to end: Tansu power loss -> agent -> Prometheus -> Alertmanager -> webhook,
#      and a clean run that must send nothing (installs prometheus, alertmanager, Tansu if missing)
#   7. TLS and basic auth of the endpoints: a real Prometheus scraping with and without the
#      password (installs prometheus, openssl, curl, Python bcrypt if missing)
#   8. Kubernetes manifests: kustomize render + offline schema validation (installs tools if missing)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "Tansu broker for the real-broker tests"
LOSSWATCH_TANSU="$(scripts/install-tansu.sh | tail -n1)"
export LOSSWATCH_TANSU
echo "using $("$LOSSWATCH_TANSU" --version 2>&1 | head -n1) at $LOSSWATCH_TANSU"

step "TLS terminator and openssl for the Kafka TLS tests"
LOSSWATCH_STUNNEL="$(scripts/install-tls-tools.sh | tail -n1)"
export LOSSWATCH_STUNNEL
echo "using $("$LOSSWATCH_STUNNEL" -version 2>&1 | grep -m1 '^stunnel') at $LOSSWATCH_STUNNEL, $(openssl version)"

step "cargo test"
cargo test --locked --workspace

step "alert rules, runbook and dashboard queries"
scripts/check-alerts.sh

step "dashboard queries against a live Prometheus"
scripts/check-dashboard-live.sh

step "status page in Chromium; the demo's loss stages counted exactly"
scripts/check-page.sh

step "pager path: broker power loss to webhook, clean run silent"
scripts/check-pager.sh

step "endpoints over TLS with basic auth, scraped by a real Prometheus"
scripts/check-web-config.sh

step "deployment manifests"
scripts/check-deploy.sh
