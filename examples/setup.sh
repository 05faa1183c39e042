#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for kws-edge development: system packages and a venv
# at .venv with the package installed editable. Idempotent; safe to re-run.
#   bash examples/setup.sh [EXTRAS]     (default extras: train,tts,audio,monitor,workstation,mlflow,dev)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-train,tts,audio,monitor,workstation,mlflow,dev}"
apt_packages=(libportaudio2 pulseaudio pulseaudio-utils alsa-utils chromium chromium-driver sox)
missing=()
for p in "${apt_packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
pip_quiet() {  # pip, with its output shown only when it fails
  local log; log=$(mktemp)
  if ! .venv/bin/python -m pip "$@" >"$log" 2>&1; then
    grep -v "is ignored" "$log" >&2; rm -f "$log"; echo "setup: pip $* failed" >&2; return 1
  fi
  rm -f "$log"
}
pip_quiet install -q --upgrade pip
echo "setup: installing kws-edge[$extras] into .venv"
pip_quiet install -q -e ".[$extras]"
.venv/bin/python -c "import kws_edge, sys; print('setup: kws-edge', kws_edge.__version__, 'ready in .venv (Python', sys.version.split()[0] + ')')"
