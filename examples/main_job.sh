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
said="$(.venv/bin/python -c 'import json, sys; words = json.load(open(sys.argv[1]))["words"]; print(", ".join("%s at %.2f s" % (w["word"], w["start_s"]) for w in words))' "$out/sample.json")"
echo "== what was said in $out/sample.wav: $said"
echo "== what kws detect hears in it:"
.venv/bin/kws detect "$out/sample.wav" --bundle "$out/bundle"
echo "== main job finished in $(( $(date +%s) - start )) s; report: $out/report/report.html"
