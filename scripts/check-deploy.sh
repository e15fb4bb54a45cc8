#!/usr/bin/env bash
# Checks the Kubernetes manifests and the container image recipe of losswatch, offline:
#   - `kubectl kustomize deploy/base` renders (and deploy/overlays/* where the local kubectl's
#     kustomize is new enough for them);
#   - every rendered object validates against the Kubernetes OpenAPI schemas bundled with
#     kubernetes-validate, strictly (unknown fields fail). PodMonitor and PrometheusRule are CRDs
#     with no bundled schema: for those the schema step is skipped (and said so), but they must
#     parse, have apiVersion/kind/metadata, and are checked structurally;
#   - the security and operational settings the deployment relies on (non-root uid 65532,
#     read-only root, no privilege escalation, no capabilities, RuntimeDefault seccomp, probes,
#     grace period above the agent's drain grace, hostPath state, SASL credentials as Secret files, ...);
#   - the Dockerfile and .dockerignore basics (no Docker engine is needed).
# Installs what it needs when missing (kubectl from Debian's kubernetes-client, PyYAML,
# kubernetes-validate from PyPI). Idempotent; runs from any directory, as root on a fresh Debian
# bookworm, also with CI=true and no stdin.
# Last line: "check-deploy: N passed, M failed"; exit status 1 if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/common.sh

ensure_python_yaml
if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
  echo "installing kubernetes-validate (pip)"
  pip_install kubernetes-validate
fi
if ! command -v kubectl >/dev/null 2>&1; then
  echo "installing kubectl (apt: kubernetes-client)"
  apt_install kubernetes-client
fi
python3 -c 'import yaml, kubernetes_validate' || { echo "check-deploy: python modules missing after install" >&2; exit 2; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

kubectl_minor="$(kubectl version --client -o json 2>/dev/null \
  | python3 -c 'import json,re,sys; print(re.sub(r"\D","",json.load(sys.stdin)["clientVersion"]["minor"]))' 2>/dev/null || echo 0)"
echo "using kubectl client 1.${kubectl_minor} ($(command -v kubectl)), kubernetes-validate $(python3 -c 'import kubernetes_validate as k; print(k.version.__version__)' 2>/dev/null || echo '?')"

# Renders a kustomization and validates it; $2 = "base" enables the base-specific assertions.
check_kustomization() {
  local dir="$1" mode="$2" out
  out="$tmp/$(echo "$dir" | tr '/' '_').yaml"
  if kubectl kustomize "$dir" >"$out" 2>"$tmp/kustomize.err"; then
    ok "kubectl kustomize $dir renders"
  else
    cat "$tmp/kustomize.err"
    not_ok "kubectl kustomize $dir renders"
    return 0
  fi
  local rc=0
  python3 - "$out" "$mode" >"$tmp/validate" 2>&1 <<'PY' || rc=$?
import sys
import tomllib

import kubernetes_validate
import yaml

path, mode = sys.argv[1], sys.argv[2]
CRD_KINDS = {"PodMonitor", "PrometheusRule"}
# Oldest Kubernetes the manifests target, and the newest schemas the validator ships.
VERSIONS = sorted({"1.27.0", kubernetes_validate.latest_version()})


def say(good, what):
    print(("ok: " if good else "FAIL: ") + what)


with open(path, encoding="utf-8") as f:
    docs = [d for d in yaml.safe_load_all(f) if d is not None]

by_kind = {}
for d in docs:
    meta = d.get("metadata") or {}
    name = f"{d.get('kind')}/{meta.get('name')}"
    shape = isinstance(d, dict) and d.get("apiVersion") and d.get("kind") and meta.get("name")
    if not shape:
        say(False, f"{name}: has apiVersion, kind and metadata.name")
        continue
    by_kind.setdefault(d["kind"], []).append(d)
    if d["kind"] in CRD_KINDS:
        print(f"skip schema validation: {name} ({d['apiVersion']} is a CRD; no bundled schema)")
        say(isinstance(d.get("spec"), dict), f"{name}: parses, has apiVersion/kind/metadata and a spec")
        continue
    for v in VERSIONS:
        try:
            kubernetes_validate.validate(d, v, strict=True)
            say(True, f"{name}: valid against Kubernetes {v} schema (strict)")
        except Exception as e:  # ValidationError, SchemaNotFoundError, ...
            say(False, f"{name}: Kubernetes {v} schema: {getattr(e, 'message', e)}")

if mode != "base":
    sys.exit(0)

# ---- assertions on the base --------------------------------------------------------------------
def one(kind):
    items = by_kind.get(kind, [])
    say(len(items) == 1, f"exactly one {kind} (found {len(items)})")
    return items[0] if items else {}


ns = one("Namespace")
sa = one("ServiceAccount")
ds = one("DaemonSet")
svc = one("Service")
cm = one("ConfigMap")
pm = one("PodMonitor")
pr = one("PrometheusRule")
say("Secret" not in by_kind, "no Secret is committed in the manifests")

say(ns.get("metadata", {}).get("name") == "losswatch", "namespace is losswatch")
say(all(d.get("metadata", {}).get("namespace") == "losswatch" for d in docs if d.get("kind") != "Namespace"),
    "every namespaced object is in namespace losswatch")
say(sa.get("automountServiceAccountToken") is False, "ServiceAccount: automountServiceAccountToken false")
say(not any(k in by_kind for k in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")), "no RBAC objects")

# The agent's own config, as mounted.
conf_text = next(iter((cm.get("data") or {}).values()), "")
try:
    conf = tomllib.loads(conf_text)
    say(True, "ConfigMap: the config file parses as TOML")
except Exception as e:
    conf = {}
    say(False, f"ConfigMap: the config file parses as TOML: {e}")


def seconds(text):
    text = str(text).strip()
    for unit, mult in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return float(text[: -len(unit)]) * mult
    raise ValueError(text)


grace = seconds(conf.get("shutdown", {}).get("grace", "10s"))
listen_port = int(str(conf.get("http", {}).get("listen", ":0")).rsplit(":", 1)[1])
state_path = conf.get("state", {}).get("path", "")

spec = ds.get("spec", {})
pod = spec.get("template", {}).get("spec", {})
pod_labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
psc = pod.get("securityContext", {})
containers = {c["name"]: c for c in pod.get("containers", [])}
inits = {c["name"]: c for c in pod.get("initContainers", [])}
agent = containers.get("losswatch", {})
csc = agent.get("securityContext", {})

say(spec.get("selector", {}).get("matchLabels", {}).items() <= pod_labels.items(), "DaemonSet: selector matches the pod labels")
ru = spec.get("updateStrategy", {}).get("rollingUpdate", {})
say(str(ru.get("maxSurge", 0)) in ("0", "0%"), "DaemonSet: no maxSurge (two agents on one node would share the state file)")
say(pod.get("automountServiceAccountToken") is False, "pod: automountServiceAccountToken false")
tgps = pod.get("terminationGracePeriodSeconds", 30)
say(tgps > 10 and tgps > grace, f"pod: terminationGracePeriodSeconds {tgps} > 10 and > the agent's shutdown grace ({grace:g}s)")

say(psc.get("runAsNonRoot") is True and csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, "agent: runAsNonRoot")
say(csc.get("runAsUser", psc.get("runAsUser")) == 65532, "agent: runs as uid 65532")
say(csc.get("runAsGroup", psc.get("runAsGroup")) == 65532, "agent: runs as gid 65532")
say(csc.get("readOnlyRootFilesystem") is True, "agent: readOnlyRootFilesystem")
say(csc.get("allowPrivilegeEscalation") is False, "agent: allowPrivilegeEscalation false")
say("ALL" in (csc.get("capabilities", {}).get("drop") or []) and not csc.get("capabilities", {}).get("add"),
    "agent: capabilities drop ALL, add none")
say(csc.get("privileged") in (None, False), "agent: not privileged")
seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
say(seccomp == "RuntimeDefault" and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
    "agent and pod: seccompProfile RuntimeDefault")

ports = {p.get("name"): p for p in agent.get("ports", [])}
say(ports.get("http-metrics", {}).get("containerPort") == 9840 == listen_port,
    "agent: port http-metrics 9840, the port of [http] listen")
for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
    get = agent.get(probe, {}).get("httpGet", {})
    say(get.get("path") == path and get.get("port") in ("http-metrics", 9840), f"agent: {probe} GET {path} on http-metrics")

res = agent.get("resources", {})
say(res.get("requests") == {"cpu": "20m", "memory": "32Mi"} and res.get("limits") == {"cpu": "200m", "memory": "128Mi"},
    "agent: resources requests 20m/32Mi, limits 200m/128Mi")

env = {e["name"]: e for e in agent.get("env", [])}
say(not any(v in env for v in ("LOSSWATCH_KAFKA_SASL_USERNAME", "LOSSWATCH_KAFKA_SASL_PASSWORD")),
    "agent: SASL credentials not in env vars (they come from files)")
say(all("value" not in e or "PASSWORD" not in e["name"] for e in agent.get("env", [])), "agent: no literal password in env")
say(env.get("MALLOC_ARENA_MAX", {}).get("value") == "1" and env.get("MALLOC_TRIM_THRESHOLD_", {}).get("value") == "131072",
    "agent: glibc allocator settings the memory limit was measured with (MALLOC_ARENA_MAX=1, MALLOC_TRIM_THRESHOLD_=131072)")

mounts = {m["mountPath"]: m for m in agent.get("volumeMounts", [])}
volumes = {v["name"]: v for v in pod.get("volumes", [])}
args = agent.get("args", [])
cfg_path = args[args.index("--config") + 1] if "--config" in args else ""
cfg_dir = cfg_path.rsplit("/", 1)[0]
cfg_vol = volumes.get(mounts.get(cfg_dir, {}).get("name"), {})
say(cfg_vol.get("configMap", {}).get("name") == cm.get("metadata", {}).get("name") and mounts.get(cfg_dir, {}).get("readOnly") is True
    and cfg_path.rsplit("/", 1)[1] in (cm.get("data") or {}),
    f"agent: config {cfg_path} is the ConfigMap, mounted read-only")
state_dir = state_path.rsplit("/", 1)[0]
state_vol = volumes.get(mounts.get(state_dir, {}).get("name"), {})
say(state_vol.get("hostPath", {}) == {"path": "/var/lib/losswatch", "type": "DirectoryOrCreate"},
    f"agent: state {state_path} on hostPath /var/lib/losswatch (DirectoryOrCreate)")
say("/tmp" in mounts and "emptyDir" in volumes.get(mounts["/tmp"]["name"], {}), "agent: writable /tmp is an emptyDir")

# Credentials: every [kafka.secret_files] entry is a file of the mounted Secret.
secret_files = conf.get("kafka", {}).get("secret_files", {})
say({"sasl.username", "sasl.password"} <= set(secret_files), "config: sasl.username and sasl.password from [kafka.secret_files]")
for prop, file in sorted(secret_files.items()):
    d, f = file.rsplit("/", 1)
    vol = volumes.get(mounts.get(d, {}).get("name"), {}).get("secret", {})
    keys = [i.get("path") for i in vol.get("items", [])]
    say(vol.get("secretName") == "losswatch-kafka-credentials" and mounts.get(d, {}).get("readOnly") is True
        and f in keys and vol.get("optional") in (None, False),
        f"config: {prop} is file {f} of Secret losswatch-kafka-credentials, mounted read-only at {d} (not optional)")
    say(vol.get("defaultMode") == 0o440 and psc.get("fsGroup") == 65532,
        f"{prop}: secret file mode 0440, group 65532 (fsGroup): readable by the agent only")

chown = inits.get("state-dir-owner", {})
isc = chown.get("securityContext", {})
say(bool(chown) and isc.get("allowPrivilegeEscalation") is False and isc.get("readOnlyRootFilesystem") is True
    and isc.get("capabilities", {}).get("drop") == ["ALL"] and isc.get("capabilities", {}).get("add") == ["CHOWN"],
    "init state-dir-owner: only CAP_CHOWN, no privilege escalation, read-only root")
say(state_dir in [m["mountPath"] for m in chown.get("volumeMounts", [])] and "65532:65532" in chown.get("command", []),
    "init state-dir-owner: chowns the state directory to 65532:65532")
for name, c in {**containers, **inits}.items():
    sc = c.get("securityContext", {})
    say(sc.get("allowPrivilegeEscalation") is False and "ALL" in (sc.get("capabilities", {}).get("drop") or []),
        f"container {name}: allowPrivilegeEscalation false, drops ALL")

sp = (svc.get("spec") or {})
say(sp.get("clusterIP") == "None", "Service: headless")
say(any(p.get("name") == "http-metrics" and p.get("port") == 9840 for p in sp.get("ports", [])), "Service: port 9840 named http-metrics")
say(sp.get("selector", {}).items() <= pod_labels.items(), "Service: selects the agent pods")

pms = pm.get("spec", {})
eps = pms.get("podMetricsEndpoints", [])
say(pm.get("apiVersion") == "monitoring.coreos.com/v1", "PodMonitor: monitoring.coreos.com/v1")
say(any(e.get("port") == "http-metrics" and e.get("path", "/metrics") == "/metrics" for e in eps), "PodMonitor: scrapes /metrics on http-metrics")
say(pms.get("selector", {}).get("matchLabels", {}).items() <= pod_labels.items(), "PodMonitor: selects the agent pods")
say(pod_labels.get(pms.get("jobLabel", "")) == "losswatch", "PodMonitor: jobLabel gives job=\"losswatch\" (used by rules and dashboard)")

say(pr.get("apiVersion") == "monitoring.coreos.com/v1" and len(pr.get("spec", {}).get("groups", [])) > 0,
    "PrometheusRule: monitoring.coreos.com/v1 with rule groups")
PY
  count_lines "$tmp/validate"
  if [ "$rc" -ne 0 ]; then not_ok "validation of $dir crashed (exit $rc)"; fi
}

check_kustomization deploy/base base
for overlay in deploy/overlays/*/; do
  overlay="${overlay%/}"
  [ -f "$overlay/kustomization.yaml" ] || continue
  # Overlays use current kustomize syntax (directories in resources, patches); the kustomize
  # inside kubectl 1.20 (Debian bookworm's kubernetes-client) predates it.
  if [ "$kubectl_minor" -lt 21 ]; then
    echo "skip: $overlay needs kustomize v4+ (kubectl >= 1.21); this kubectl is 1.${kubectl_minor}"
    continue
  fi
  check_kustomization "$overlay" overlay
done

# ---- the agent accepts the base config ------------------------------------------------------
# The ConfigMap's TOML as rendered, with its [kafka.secret_files] paths moved into a scratch
# directory holding known values: `losswatch check-config` must accept it, resolve both files and
# print neither value.
rc=0
python3 - "$tmp/deploy_base.yaml" "$tmp/secrets" >"$tmp/config.toml" 2>"$tmp/config.err" <<'PY' || rc=$?
import os
import sys

import yaml

rendered, secrets = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(rendered, encoding="utf-8")) if d]
cm = next(d for d in docs if d.get("kind") == "ConfigMap")
text = next(iter(cm["data"].values()))
os.makedirs(secrets, exist_ok=True)
for key, value in (("username", "deploy-check-user"), ("password", "deploy-check-Secret-91x")):
    with open(os.path.join(secrets, key), "w", encoding="utf-8") as f:
        f.write(value + "\n")
print(text.replace("/var/run/secrets/losswatch/kafka", secrets))
PY
if [ "$rc" -ne 0 ]; then
  cat "$tmp/config.err"
  not_ok "the base ConfigMap's config could be extracted"
else
  bin=target/debug/losswatch
  [ -x "$bin" ] || cargo build --quiet --locked --bin losswatch
  if out="$("$bin" check-config --config "$tmp/config.toml" 2>&1)"; then
    ok "losswatch check-config accepts the base config with its secret files"
  else
    echo "$out"
    not_ok "losswatch check-config accepts the base config with its secret files"
  fi
  if grep -q "deploy-check-Secret-91x" <<<"$out"; then
    not_ok "check-config of the base config does not print the password"
  else
    ok "check-config of the base config does not print the password"
  fi
  rm -f "$tmp/secrets/username"
  if "$bin" check-config --config "$tmp/config.toml" >"$tmp/missing.out" 2>&1; then
    not_ok "a missing secret file is refused"
  else
    code=$?
    if [ "$code" -eq 64 ] && grep -q "kafka.secret_files" "$tmp/missing.out"; then
      ok "a missing secret file exits 64 naming kafka.secret_files"
    else
      cat "$tmp/missing.out"
      not_ok "a missing secret file exits 64 naming kafka.secret_files (exit $code)"
    fi
  fi
fi

# ---- Dockerfile and .dockerignore ------------------------------------------------------------
rc=0
python3 - >"$tmp/docker" 2>&1 <<'PY' || rc=$?
import json
import os
import re


def say(good, what):
    print(("ok: " if good else "FAIL: ") + what)


text = open("Dockerfile", encoding="utf-8").read()
lines = [l for l in re.sub(r"\\\n", " ", text).splitlines() if l.strip() and not l.lstrip().startswith("#")]
instr = [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if len(l.split(None, 1)) > 1 else "") for l in lines]
froms = [a for i, a in instr if i == "FROM"]
say(len(froms) >= 2 and froms[0].startswith("rust:1-bookworm") and froms[-1].startswith("debian:bookworm-slim"),
    "Dockerfile: multi-stage, rust:1-bookworm builder, debian:bookworm-slim runtime")
say(any(i == "RUN" and "cargo build --release --locked" in a for i, a in instr), "Dockerfile: cargo build --release --locked")
runtime = instr[max(k for k, (i, _) in enumerate(instr) if i == "FROM"):]
say(any(i == "RUN" and "libssl3" in a and "ca-certificates" in a for i, a in runtime), "Dockerfile: runtime has libssl3 and ca-certificates")
users = [a.strip() for i, a in runtime if i == "USER"]
say(bool(users) and users[-1].split(":")[0] == "65532", "Dockerfile: runs as uid 65532")
entry = [a for i, a in runtime if i == "ENTRYPOINT"]
cmd = [a for i, a in runtime if i == "CMD"]
say(bool(entry) and json.loads(entry[-1]) == ["/usr/local/bin/losswatch"], "Dockerfile: ENTRYPOINT [\"/usr/local/bin/losswatch\"]")
say(bool(cmd) and json.loads(cmd[-1]) == ["run", "--config", "/etc/losswatch/losswatch.toml"],
    "Dockerfile: CMD [\"run\",\"--config\",\"/etc/losswatch/losswatch.toml\"]")
copies = [a.split() for i, a in runtime if i == "COPY" and not a.startswith("--from")]
say(all(os.path.exists(c[-2]) for c in copies if len(c) >= 2), "Dockerfile: files copied from the context exist")

ignore = [l.strip() for l in open(".dockerignore", encoding="utf-8") if l.strip() and not l.startswith("#")]
say("target/" in ignore or "target" in ignore or "/target" in ignore, ".dockerignore: excludes target/")
say(".git/" in ignore or ".git" in ignore, ".dockerignore: excludes .git")
say(not any(p.rstrip("/") in ("src", "crates", "crates/rdkafka-sys", "deploy", "deploy/base", "Cargo.toml", "Cargo.lock") for p in ignore),
    ".dockerignore: keeps src/, crates/, Cargo.toml, Cargo.lock and deploy/base/ in the context")
builder = instr[:max(k for k, (i, _) in enumerate(instr) if i == "FROM")]
say(any(i == "COPY" and (a.split()[0] in (".", "crates", "crates/")) for i, a in builder),
    "Dockerfile: the builder copies crates/ (the patched librdkafka, [patch.crates-io] in Cargo.toml)")
PY
count_lines "$tmp/docker"
if [ "$rc" -ne 0 ]; then not_ok "Dockerfile check crashed (exit $rc)"; fi

echo "check-deploy: ${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
