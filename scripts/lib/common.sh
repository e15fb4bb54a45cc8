# Shared by scripts/check-*.sh (sourced, not run): idempotent installs of the tools a check
# needs, and the ok/FAIL counting behind each script's closing "N passed, M failed" line.
# Works as root on a fresh Debian bookworm, with CI=true and no stdin.

export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_NO_INPUT=1

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# pip into whatever python3 is first on PATH; Debian's own python3 needs --break-system-packages.
pip_install() {
  if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "installing pip (apt: python3-pip)"
    apt_install python3-pip
  fi
  python3 -m pip install -q "$@" 2>/dev/null || python3 -m pip install -q --break-system-packages "$@"
}

# python3 with PyYAML.
ensure_python_yaml() {
  if ! command -v python3 >/dev/null 2>&1; then
    echo "installing python3 (apt)"
    apt_install python3 python3-yaml
  fi
  if ! python3 -c 'import yaml' 2>/dev/null; then
    echo "installing PyYAML (pip)"
    pip_install pyyaml || apt_install python3-yaml
  fi
  python3 -c 'import yaml' || { echo "cannot import yaml with $(command -v python3)" >&2; exit 2; }
}

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok: $*"; }
not_ok() { failed=$((failed + 1)); echo "FAIL: $*"; }
# Adds the ok:/FAIL: lines printed by an embedded python check to the counts.
count_lines() {
  local file="$1"
  cat "$file"
  passed=$((passed + $(grep -c '^ok: ' "$file" || true)))
  failed=$((failed + $(grep -c '^FAIL: ' "$file" || true)))
}
