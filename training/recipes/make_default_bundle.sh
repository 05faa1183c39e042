#!/usr/bin/env bash
# Reproduce the shipped default bundle (kws_edge/default_bundle) from the data, with the real tools:
#   0. kws-train   the teachers: the MLPerf Tiny DS-CNN trained by the same recipe, seeds TEACHER_SEEDS
#   1. kws-train   with training/recipes/yes_no_real.toml, distilled from those teachers (--distill-from)
#   2. kws-convert int8 with one weight scale per tensor (window model + its streaming twin), checked
#      against the cortex-m7-tflm profile
#   3. finish_default_bundle.py: validation figures, unseen-word FA, thresholds chosen on a validation
#      tuning stream, FRR and FA/h on a separate validation report stream, attribution
#
# usage: bash training/recipes/make_default_bundle.sh [DATA] [WORK_DIR] [OUT_BUNDLE]
#   DATA        Speech Commands-layout folder (default ../shared/data/speech_commands_subset)
#   WORK_DIR    where the runs and the converted bundle go (default: a new temporary folder)
#   OUT_BUNDLE  the bundle to write (default kws_edge/default_bundle; with MODEL set, WORK_DIR/bundle)
# Environment: ALLOW_DIRTY=1 builds the shipped bundle from a tree with uncommitted changes (refused
#   otherwise; the manifest records the commit as "+dirty"); SEED overrides the recipe's seed; EPOCHS its epochs (teachers too; for quick checks only);
#   TEACHER_SEEDS the teachers' seeds (default "1 2 3"; empty: no distillation); MODEL trains another
#   architecture on the same recipe, without teachers (the references of RESULTS.md: MODEL=tiny_conv for
#   TensorFlow's micro_speech model, MODEL=ds_cnn_mlperf for the MLPerf Tiny DS-CNN). Those have no
#   streaming form, and a budget they exceed on the Cortex-M7 profile is recorded in the bundle rather than
#   stopping the run. They keep per-channel weight scales, as measured in RESULTS.md phase 4.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
data="${1:-../shared/data/speech_commands_subset}"
work="${2:-$(mktemp -d -t kws-default-XXXXXX)}"
extra=()
[[ -n "${SEED:-}" ]] && extra+=(--seed "$SEED")
[[ -n "${EPOCHS:-}" ]] && extra+=(--epochs "$EPOCHS")
convert_extra=(--streaming --per-tensor)
out="${3:-kws_edge/default_bundle}"
if [[ -n "${MODEL:-}" && "${MODEL}" != tcn ]]; then
    extra+=(--model "$MODEL")
    convert_extra=(--allow-over-budget)
    out="${3:-$work/bundle}"  # a reference never replaces the shipped bundle by default
fi
# A shipped bundle records the commit it was built from; it must be a clean one. Refuse to write
# kws_edge/default_bundle from a tree with uncommitted changes unless ALLOW_DIRTY=1 says so (the
# manifest then records the commit with "+dirty", truthfully).
repo="$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || true)"
if [[ -n "$repo" && "$(cd "$(dirname "$out")" 2>/dev/null && pwd)/$(basename "$out")" == "$repo/kws_edge/default_bundle" \
      && "${ALLOW_DIRTY:-0}" != 1 ]] && ! git -C "$repo" diff --quiet HEAD; then
    echo "error: the working tree has uncommitted changes; a shipped bundle is built from a clean commit" \
         "(commit or stash them, or set ALLOW_DIRTY=1 to build anyway: the manifest then says +dirty)" >&2
    [[ -z "${2:-}" ]] && rmdir "$work" 2>/dev/null
    exit 2
fi
mkdir -p "$work"
teachers=()
if [[ -z "${MODEL:-}" || "${MODEL}" == tcn ]]; then
    for s in ${TEACHER_SEEDS-1 2 3}; do
        echo "[0/3] kws-train teacher (ds_cnn_mlperf, seed $s) -> $work/teacher_s$s" >&2
        epochs=()
        [[ -n "${EPOCHS:-}" ]] && epochs=(--epochs "$EPOCHS")
        kws-train --data "$data" --config "$here/yes_no_real.toml" --model ds_cnn_mlperf --seed "$s" \
            --out "$work/teacher_s$s" --overwrite -q "${epochs[@]}" >&2
        teachers+=(--distill-from "$work/teacher_s$s")
    done
fi
echo "[1/3] kws-train -> $work/run" >&2
kws-train --data "$data" --config "$here/yes_no_real.toml" --out "$work/run" --overwrite -q "${extra[@]}" \
    "${teachers[@]}" >&2
echo "[2/3] kws-convert -> $work/converted" >&2
# The run's test split is tiny on the shared subset (its official-test speakers were removed), so the
# parity gate is loose here; finish_default_bundle.py measures float and int8 on the validation split.
kws-convert "$work/run" --device cortex-m7-tflm --out "$work/converted" --overwrite --no-measure \
    --max-accuracy-drop 10 --strip-names "${convert_extra[@]}" >&2
echo "[3/3] finish -> $out" >&2
python "$here/finish_default_bundle.py" --run "$work/run" --bundle "$work/converted" --data "$data" --out "$out"
