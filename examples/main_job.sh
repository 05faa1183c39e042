#!/usr/bin/env bash
# The main job on a fresh Debian machine: set-up, the whole pipeline on the built-in synthetic data
# (data -> train -> convert -> budget check -> evaluate -> benchmark -> bundle -> report), then
# detection on a synthesised sample recording, printing the events.
#   bash examples/main_job.sh [OUT_DIR]        (default runs/demo; re-running reuses unchanged stages)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/demo}"
bash examples/setup.sh
export TF_CPP_MIN_LOG_LEVEL=2
start=$(date +%s)
.venv/bin/kws pipeline --data synthetic --out "$out"
echo "== detections in $out/sample.wav (what was said: $(cat "$out/sample.json" 2>/dev/null | tr -d '\n' | cut -c1-200))"
.venv/bin/kws detect "$out/sample.wav" --bundle "$out/bundle"
echo "== main job finished in $(( $(date +%s) - start )) s; report: $out/report/report.html"
