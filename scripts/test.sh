#!/usr/bin/env bash
# Runs every check and test of the project; exits non-zero on the first failure.
#   1. formatting and lints
#   2. unit, property, MockCluster, Tansu and binary-level tests (cargo test; installs the
#      Tansu broker if missing)
#   3. Prometheus rules: promtool syntax + unit tests, runbook anchors, generated PrometheusRule,
#      dashboard queries (installs promtool if missing)
#   4. Kubernetes manifests: kustomize render + offline schema validation (installs tools if missing)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

step "Tansu broker for the broker tests"
LOSSWATCH_TANSU=$(scripts/install-tansu.sh | tail -n 1)
export LOSSWATCH_TANSU

step "cargo test"
cargo test --locked

step "alert rules, runbook and dashboard queries"
scripts/check-alerts.sh

step "deployment manifests"
scripts/check-deploy.sh
