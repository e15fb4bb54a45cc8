#!/usr/bin/env bash
# Checks the Prometheus side of losswatch:
#   - alerts/losswatch.rules.yml is valid (promtool check rules);
#   - every unit test file in alerts/tests/ passes (promtool test rules);
#   - every alert has a severity (page|ticket), a summary, a description and a runbook_url whose
#     anchor exists in alerts/RUNBOOK.md, and is tested both firing and silent;
#   - deploy/base/prometheusrule.yaml is what scripts/gen-prometheusrule.py generates;
#   - every query of dashboards/losswatch-overview.json parses as PromQL once Grafana's variables
#     are substituted.
# Installs what it needs when missing (promtool from Debian's prometheus package, PyYAML).
# Idempotent; runs from any directory, as root on a fresh Debian bookworm, also with CI=true and
# no stdin. Last line: "check-alerts: N passed, M failed"; exit status 1 if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/common.sh

ensure_promtool() {
  if ! command -v promtool >/dev/null 2>&1; then
    echo "installing promtool (apt: prometheus)"
    apt_install prometheus
  fi
  command -v promtool >/dev/null 2>&1 || { echo "check-alerts: promtool not found after install" >&2; exit 2; }
}

ensure_python_yaml
ensure_promtool
echo "using $(promtool --version 2>&1 | head -n1)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Runs a command quietly; shows its output only when it fails.
check() {
  local what="$1"
  shift
  if "$@" >"$tmp/out" 2>&1; then
    ok "$what"
  else
    cat "$tmp/out"
    not_ok "$what"
  fi
}

RULES=alerts/losswatch.rules.yml

# 1. Syntax of the rules.
check "promtool check rules $RULES" promtool check rules "$RULES"

# 2. Unit tests, one file at a time so that a failure names its file.
shopt -s nullglob
test_files=(alerts/tests/*.yml)
if [ "${#test_files[@]}" -eq 0 ]; then
  not_ok "no unit test files in alerts/tests/"
fi
for f in "${test_files[@]}"; do
  check "promtool test rules $f" promtool test rules "$f"
done

# 3. Alert metadata, runbook anchors, test coverage of every alert.
meta_rc=0
python3 - "$RULES" alerts/RUNBOOK.md "${test_files[@]}" >"$tmp/meta" 2>&1 <<'PY' || meta_rc=$?
import re
import sys

import yaml

rules_path, runbook_path, test_paths = sys.argv[1], sys.argv[2], sys.argv[3:]
URL = "https://github.com/losswatch/losswatch/blob/main/alerts/RUNBOOK.md#"


def say(good, what):
    print(("ok: " if good else "FAIL: ") + what)


def slug(heading):
    # GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes.
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


with open(runbook_path, encoding="utf-8") as f:
    runbook = f.read()
in_code = False
anchors = set()
headings = []
for line in runbook.splitlines():
    if line.startswith("```"):
        in_code = not in_code
        continue
    m = None if in_code else re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
    if m:
        anchors.add(slug(m.group(2)))
        headings.append((len(m.group(1)), m.group(2)))

with open(rules_path, encoding="utf-8") as f:
    groups = yaml.safe_load(f)["groups"]
alerts = [r for g in groups for r in g["rules"] if "alert" in r]
names = [a["alert"] for a in alerts]
say(len(names) == len(set(names)), f"alert names are unique ({len(names)} alerts)")

fires, silent = {}, {}
for path in test_paths:
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    for t in doc.get("tests", []):
        for case in t.get("alert_rule_test", []) or []:
            target = fires if case.get("exp_alerts") else silent
            target.setdefault(case["alertname"], []).append(path)

for a in alerts:
    name = a["alert"]
    labels = a.get("labels") or {}
    ann = a.get("annotations") or {}
    problems = []
    if labels.get("severity") not in ("page", "ticket"):
        problems.append(f"severity {labels.get('severity')!r} is not page or ticket")
    if labels.get("stage") not in ("producer", "broker", "consumer", "agent"):
        problems.append(f"stage {labels.get('stage')!r} is not producer, broker, consumer or agent")
    for key in ("summary", "description", "runbook_url"):
        if not ann.get(key):
            problems.append(f"no {key} annotation")
    url = ann.get("runbook_url", "")
    if url and not url.startswith(URL):
        problems.append(f"runbook_url {url} does not start with {URL}")
    anchor = url.split("#", 1)[1] if "#" in url else ""
    if anchor != name.lower():
        problems.append(f"runbook anchor #{anchor} is not #{name.lower()}")
    if anchor not in anchors:
        problems.append(f"runbook anchor #{anchor} has no heading in {runbook_path}")
    if name not in fires:
        problems.append("no unit test where it fires")
    if name not in silent:
        problems.append("no unit test where it stays silent")
    say(not problems, f"alert {name}: " + ("; ".join(problems) if problems else
        f"severity={labels['severity']}, runbook #{anchor}, tested firing and silent"))

# Every alert section of the runbook belongs to an alert that exists.
for level, text in headings:
    if level == 3 and text.startswith("Losswatch"):
        say(text in names, f"runbook section '{text}' matches an alert")

# Links inside the runbook point at headings that exist.
bad = sorted({l for l in re.findall(r"\]\(#([^)]+)\)", runbook) if l not in anchors})
say(not bad, "runbook internal links resolve" + (f": missing {', '.join(bad)}" if bad else ""))
PY
count_lines "$tmp/meta"
if [ "$meta_rc" -ne 0 ]; then not_ok "alert metadata check crashed (exit $meta_rc)"; fi

# 4. The generated PrometheusRule is up to date and loads as rules.
if python3 scripts/gen-prometheusrule.py --output "$tmp/prometheusrule.yaml" >"$tmp/out" 2>&1; then
  if diff -u deploy/base/prometheusrule.yaml "$tmp/prometheusrule.yaml" >"$tmp/diff"; then
    ok "deploy/base/prometheusrule.yaml is up to date"
  else
    cat "$tmp/diff"
    not_ok "deploy/base/prometheusrule.yaml differs from the generator's output: run scripts/gen-prometheusrule.py"
  fi
  python3 - "$tmp/prometheusrule.yaml" "$tmp/from-prometheusrule.yml" <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
yaml.safe_dump({"groups": doc["spec"]["groups"]}, open(sys.argv[2], "w", encoding="utf-8"), sort_keys=False)
PY
  check "PrometheusRule spec.groups pass promtool check rules" promtool check rules "$tmp/from-prometheusrule.yml"
else
  cat "$tmp/out"
  not_ok "scripts/gen-prometheusrule.py failed"
fi

# 5. Every dashboard query parses once Grafana's variables are substituted.
for dash in dashboards/*.json; do
  dash_rc=0
  python3 - "$dash" "$tmp/dashboard-rules.yml" >"$tmp/dash" 2>&1 <<'PY' || dash_rc=$?
import json
import re
import sys

import yaml

path, out = sys.argv[1], sys.argv[2]
with open(path, encoding="utf-8") as f:
    dash = json.load(f)

problems = []
for key, want in (("uid", "losswatch-overview"), ("schemaVersion", 39)):
    if path.endswith("losswatch-overview.json") and dash.get(key) != want:
        problems.append(f"{key} is {dash.get(key)!r}, want {want!r}")

variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
ds = variables.get("datasource")
if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
    problems.append("no datasource variable of type datasource for prometheus")

BUILTIN = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h",
           "__range_s": "3600", "__range_ms": "3600000", "__interval_ms": "60000"}


def substitute(expr, where):
    def repl(m):
        name = m.group("a") or m.group("b") or m.group("c")
        if name in BUILTIN:
            return BUILTIN[name]
        if name in variables:
            return ".*"
        problems.append(f"{where}: unknown variable ${name}")
        return ".*"
    s = re.sub(r"\$\{(?P<a>\w+)(?::\w+)?\}|\[\[(?P<b>\w+)\]\]|\$(?P<c>\w+)", repl, expr)
    if "$" in s:
        problems.append(f"{where}: unsubstituted '$' left in {s!r}")
    return s


queries = []


def walk(panels):
    for p in panels:
        walk(p.get("panels", []))
        pds = (p.get("datasource") or {}).get("uid")
        if p.get("type") != "row" and pds != "${datasource}":
            problems.append(f"panel {p.get('id')} '{p.get('title')}' datasource uid is {pds!r}, want ${{datasource}}")
        for t in p.get("targets", []):
            where = f"panel {p.get('id')} '{p.get('title')}' target {t.get('refId')}"
            if not t.get("expr"):
                problems.append(f"{where}: empty expr")
                continue
            queries.append((f"panel_{p.get('id')}_{t.get('refId')}", substitute(t["expr"], where)))


walk(dash.get("panels", []))
for name, v in variables.items():
    if v.get("type") != "query":
        continue
    q = v.get("query")
    q = q.get("query") if isinstance(q, dict) else q
    m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", q or "")
    if not m:
        problems.append(f"variable {name}: query {q!r} is not label_values(selector, label)")
        continue
    queries.append((f"variable_{name}", substitute(m.group(1), f"variable {name}")))

rules = [{"record": f"dashboard:{n}", "expr": e} for n, e in queries]
with open(out, "w", encoding="utf-8") as f:
    yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, f, sort_keys=False)
for p in problems:
    print("FAIL: " + p)
if not problems:
    print(f"ok: {path}: uid, data source variable and variables of every query")
print(f"{len(queries)} queries extracted from {path}")
PY
  count_lines "$tmp/dash"
  if [ "$dash_rc" -ne 0 ]; then
    not_ok "$dash: query extraction crashed (exit $dash_rc)"
    continue
  fi
  n="$(sed -n 's/^\([0-9]*\) queries extracted.*/\1/p' "$tmp/dash")"
  check "$dash: all ${n} queries parse (promtool check rules)" promtool check rules "$tmp/dashboard-rules.yml"
done

echo "check-alerts: ${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
