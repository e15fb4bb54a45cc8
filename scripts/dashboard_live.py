#!/usr/bin/env python3
"""Runs every query of a Grafana dashboard against a live Prometheus that scrapes a losswatch agent.

Used by scripts/check-dashboard-live.sh, which starts `losswatch demo` and Prometheus (with the
project's rules) first. Checks, printing one "ok: " or "FAIL: " line each:

  - every panel of the dashboard is classified below, either as a core panel (must show data) or
    as "data not required" (with the reason), and every classified title exists;
  - every rule group of the loaded rules evaluates without error;
  - every templating variable query (label_values(selector, label)) is accepted by Prometheus;
    the core variables return at least one value;
  - every panel query (targets[].expr, nested rows included) is accepted by Prometheus' HTTP API
    (/api/v1/query, status success), with every variable set to "All" (the dashboard's allValue,
    `.*`) and once more with each core variable set to one value that Prometheus has (only where
    the query uses that variable), as a user picking one topic, partition or broker would;
  - every query of a core panel returns at least one sample that is not NaN, in each of those
    selections. A trailing "or vector(0)" (a stat panel's fallback, which would always return
    data) is removed for this data check, so the metric itself has to be there.

Grafana's built-in variables are set for a 1 s scrape interval: $__rate_interval=10s,
$__interval=2s, $__range=1h. Results that are missing or invalid are retried until the deadline
(the agent and the rules need a few scrapes and evaluations), then reported.
"""

import argparse
import json
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

# Panels that must show data while an agent runs. Keys are panel titles.
CORE_PANELS = {
    "Probes lost",
    "Partition truncations",
    "Failed sends",
    "Probes expired unread",
    "Pending probes",
    "Oldest pending probe",
    "Lost probes by partition and leader broker",
    "Truncations by partition",
    "Probes sent, acknowledged, read back",
    "Failed sends by reason",
    "Send failure ratio by partition (5m)",
    "Late, duplicated and reordered probes",
    "End-to-end latency (send to read back)",
    "Acknowledgement latency",
    "End-to-end latency p99 by leader broker",
    "Acknowledgement latency p99 by leader broker",
    "Pending probes by partition",
    "Oldest pending probe age by partition",
    "Partition leader broker",
    "Scraped",
    "Ready",
    "Versions",
    # The demo's mock cluster answers no DescribeConfigs: the audit reports configs_unavailable.
    "Risky topic settings",
}

LAG = "consumer-group lag series exist only on an agent that polls consumer groups"
# Panels whose queries must be valid but may return nothing, and why.
DATA_NOT_REQUIRED = {
    "Lag by group and topic (messages)": LAG,
    "Lag by group and topic (seconds)": LAG,
    "Group status": LAG,
    "Members by group": LAG,
    "Messages expired unread by group": LAG,
    "Committed offset vs log start and end": LAG,
    "Lag poller": LAG,
    "Foreign records on the canary topic": "series appear only when a record that is not a probe is read",
}

# Latency per partition: only an agent with metrics.per_partition_histograms = true exports it.
# Core with --per-partition-histograms, data not required otherwise.
PER_PARTITION_PANELS = [
    "End-to-end latency p50 / p99 by partition (5m)",
    "Acknowledgement latency p50 / p99 by partition (5m)",
]
PER_PARTITION = "latency histograms carry a partition label only with metrics.per_partition_histograms = true"

# Variables that must have values while an agent runs; each is also tried with one value.
CORE_VARIABLES = ["topic", "partition", "broker"]
VARIABLES_DATA_NOT_REQUIRED = {"group": LAG}

BUILTIN = {
    "__rate_interval": "10s",
    "__interval": "2s",
    "__interval_ms": "2000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

VAR_RE = re.compile(r"\$\{(?P<a>\w+)(?::\w+)?\}|\[\[(?P<b>\w+)\]\]|\$(?P<c>\w+)")
FALLBACK_RE = re.compile(r"\s+or\s+vector\(0\)\s*$")


def grafana_regex_escape(value):
    # What Grafana does to a single selected value before putting it into a =~ matcher.
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\1", value)


class Prometheus:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def get(self, path, params):
        q = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{q}", timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            try:
                return json.load(e)
            except ValueError:
                return {"status": "error", "error": f"HTTP {e.code}"}
        except (urllib.error.URLError, OSError, ValueError) as e:
            return {"status": "error", "error": str(e)}

    def query(self, expr):
        return self.get("/api/v1/query", {"query": expr})


def samples(resp):
    """Number of series (or scalars) in a successful response whose value is not NaN."""
    data = resp.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind in ("scalar", "string"):
        return 0 if kind == "scalar" and math.isnan(float(result[1])) else 1
    n = 0
    for series in result or []:
        values = [series["value"]] if "value" in series else series.get("values", [])
        if any(not math.isnan(float(v[1])) for v in values):
            n += 1
    return n


def walk(panels, out):
    for p in panels:
        walk(p.get("panels", []), out)
        if p.get("type") == "row":
            continue
        out.append(p)


def substitute(expr, values, unknown):
    def repl(m):
        name = m.group("a") or m.group("b") or m.group("c")
        if name in BUILTIN:
            return BUILTIN[name]
        if name in values:
            return values[name]
        unknown.add(name)
        return m.group(0)

    return VAR_RE.sub(repl, expr)


def variable_query(v):
    q = v.get("query")
    q = q.get("query") if isinstance(q, dict) else q
    m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", q or "")
    return (m.group(1), m.group(2)) if m else (None, None)


def run_checks(prom, dash):
    """One attempt of every check; returns a list of (good, line)."""
    lines = []

    def say(good, what):
        lines.append((good, what))

    panels = []
    walk(dash.get("panels", []), panels)
    titles = {p.get("title") for p in panels}
    for p in panels:
        t = p.get("title")
        if (t in CORE_PANELS) == (t in DATA_NOT_REQUIRED):
            say(False, f"panel {p.get('id')} '{t}' must be in exactly one of CORE_PANELS and "
                       f"DATA_NOT_REQUIRED of {__file__}")
    for t in sorted(CORE_PANELS | set(DATA_NOT_REQUIRED)):
        if t not in titles:
            say(False, f"classified panel '{t}' is not in the dashboard")

    # Rules: every group evaluated, no rule in error.
    rules = prom.get("/api/v1/rules", {})
    groups = (rules.get("data") or {}).get("groups") or []
    if rules.get("status") != "success" or not groups:
        say(False, f"rules API: {rules.get('error') or 'no rule groups loaded'}")
    for g in groups:
        bad = [f"{r.get('name')}: {r.get('health')} {r.get('lastError') or ''}".strip()
               for r in g.get("rules", []) if r.get("health") != "ok" or r.get("lastError")]
        say(not bad, f"rule group {g['name']}: {len(g.get('rules', []))} rules evaluated"
            + (f"; not ok: {'; '.join(bad)}" if bad else " without error"))

    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    all_values = {name: ".*" for name in variables}

    # Variable queries, resolved as Grafana does (series matching the selector, one label).
    chosen = {}
    for name, v in variables.items():
        if v.get("type") != "query":
            continue
        selector, label = variable_query(v)
        if selector is None:
            say(False, f"variable {name}: query is not label_values(selector, label)")
            continue
        unknown = set()
        sel = substitute(selector, all_values, unknown)
        resp = prom.get("/api/v1/series", {"match[]": sel})
        if resp.get("status") != "success":
            say(False, f"variable {name}: {sel}: {resp.get('error')}")
            continue
        found = sorted({s[label] for s in resp["data"] if label in s})
        if v.get("regex"):
            found = [x for x in found if re.search(v["regex"], x)]
        if found:
            chosen[name] = found[0]
        if name in CORE_VARIABLES:
            say(bool(found) and not unknown,
                f"variable {name}: {len(found)} value(s) {found[:6]}"
                + (f"; unknown variables {sorted(unknown)}" if unknown else ""))
        elif name in VARIABLES_DATA_NOT_REQUIRED:
            say(not unknown, f"variable {name}: query accepted, {len(found)} value(s) "
                             f"(data not required: {VARIABLES_DATA_NOT_REQUIRED[name]})")
        else:
            say(False, f"variable {name}: not in CORE_VARIABLES nor VARIABLES_DATA_NOT_REQUIRED")
    for name in CORE_VARIABLES:
        if name not in variables:
            say(False, f"core variable {name} is not in the dashboard")

    # The selections every query is run with: All, then one value of each core variable.
    selections = [("All", all_values)]
    for name in CORE_VARIABLES:
        if name in chosen:
            values = dict(all_values)
            values[name] = grafana_regex_escape(chosen[name])
            selections.append((f"{name}={chosen[name]}", values))

    for p in panels:
        title = p.get("title")
        core = title in CORE_PANELS
        for t in p.get("targets", []):
            where = f"panel {p.get('id')} '{title}' {t.get('refId')}"
            expr = t.get("expr")
            if not expr:
                say(False, f"{where}: no expr")
                continue
            seen, problems, counts = set(), [], []
            for label, values in selections:
                unknown = set()
                q = substitute(expr, values, unknown)
                if unknown:
                    problems.append(f"unknown variables {sorted(unknown)}")
                if q in seen:
                    continue
                seen.add(q)
                resp = prom.query(q)
                if resp.get("status") != "success":
                    problems.append(f"[{label}] {resp.get('errorType', '')} {resp.get('error')}: {q}")
                    continue
                if core:
                    data_q = FALLBACK_RE.sub("", q)
                    if data_q != q:
                        resp = prom.query(data_q)
                        if resp.get("status") != "success":
                            problems.append(f"[{label}] {resp.get('error')}: {data_q}")
                            continue
                    n = samples(resp)
                    if n == 0:
                        problems.append(f"[{label}] no data: {data_q}")
                    counts.append(f"{label}: {n}")
                else:
                    counts.append(f"{label}: {samples(resp)}")
            kind = "core, data required" if core else \
                f"data not required: {DATA_NOT_REQUIRED.get(title, 'unclassified')}"
            detail = "; ".join(problems) if problems else \
                "valid, series with data per selection (" + ", ".join(counts) + ")"
            say(not problems, f"{where} [{kind}]: {detail}")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    ap.add_argument("--dashboard", required=True)
    ap.add_argument("--deadline", type=float, default=90, help="seconds to keep retrying")
    ap.add_argument("--per-partition-histograms", action="store_true",
                    help="the agent exports per-partition latency histograms: their panels are core")
    args = ap.parse_args()
    for title in PER_PARTITION_PANELS:
        if args.per_partition_histograms:
            CORE_PANELS.add(title)
        else:
            DATA_NOT_REQUIRED[title] = PER_PARTITION

    with open(args.dashboard, encoding="utf-8") as f:
        dash = json.load(f)
    prom = Prometheus(args.prometheus)

    # The agent must be scraped before anything else makes sense.
    start = time.monotonic()
    end = start + args.deadline
    while True:
        up = prom.query('up{job="losswatch"} == 1')
        if up.get("status") == "success" and samples(up) > 0:
            break
        if time.monotonic() > end:
            print(f"FAIL: Prometheus at {args.prometheus} has not scraped job=\"losswatch\" "
                  f"within {args.deadline:.0f}s: {up.get('error') or 'up is not 1'}")
            return 1
        time.sleep(0.5)

    attempt = 0
    while True:
        attempt += 1
        lines = run_checks(prom, dash)
        failed = sum(1 for good, _ in lines if not good)
        if failed == 0 or time.monotonic() > end:
            break
        time.sleep(2)
    print(f"{args.dashboard}: results of attempt {attempt}, {time.monotonic() - start:.1f}s after "
          f"the start of the check")
    for good, what in lines:
        print(("ok: " if good else "FAIL: ") + what)
    return 0


if __name__ == "__main__":
    sys.exit(main())
