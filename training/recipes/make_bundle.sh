#!/usr/bin/env bash
# Reproduce a shipped bundle from the data, with the real tools (issue 18: two tiers).
#   0. kws-train   the teachers: training/recipes/yes_no_teacher.toml, seeds TEACHER_SEEDS (reused when WORK
#                  already holds a complete teacher run of the same recipe and seed)
#   1. kws-train   the tier's recipe (training/recipes/yes_no_<tier>.toml), distilled from those teachers
#   2. kws-convert int8 (window model + its streaming twin), checked against the tier's device profile
#   3. finish_bundle.py: validation figures, words heard as keywords, unseen-word FA, detector defaults
#      chosen on validation recordings (isolated keywords said once, a tuning stream), FRR and FA/h on a
#      separate >= 30-minute validation report stream, attribution
#
# usage: bash training/recipes/make_bundle.sh TIER [WORK_DIR] [OUT_BUNDLE]
#   TIER        default (kws_edge/default_bundle: the Raspberry Pi tier) or micro (kws_edge/micro_bundle:
#               the Cortex-M tier, model <= 24 KB, TFLite Micro arena <= 20 KB)
#   WORK_DIR    where the runs and the converted bundle go (default: a new temporary folder); give the same
#               one to both tiers and the teachers are trained once
#   OUT_BUNDLE  the bundle to write (default kws_edge/<tier>_bundle)
# Environment: DATA the dataset folders (default: ../shared/data/speech_commands_subset and
#   ../shared/data/speech_commands_more beside the repository); ALLOW_DIRTY=1 builds a shipped bundle from a
#   tree with uncommitted changes (refused otherwise; the manifest records the commit as "+dirty"); SEED
#   overrides the tier recipe's seed; EPOCHS every recipe's epochs (quick checks only); RECIPES the folder of
#   the yes_no_*.toml recipes (default: this one; the tests pass tiny ones); TEACHER_SEEDS the
#   teachers' seeds (default "1 2"; empty: no distillation); SPREAD_SEEDS more seeds of the tier's recipe,
#   trained and recorded with the tier's own seed as the bundle's seed spread (default none: no spread;
#   the shipped bundles: SPREAD_SEEDS=1); TUNE_MINUTES / REPORT_MINUTES the
#   lengths of the validation tuning and report streams (default 45 / 35; shorter for quick checks only).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
recipes="${RECIPES:-$here}"
repo_root="$(cd "$here/../.." && pwd)"
tier="${1:-}"
case "$tier" in
  default) device=raspberry-pi-zero-2-w; isolated=0.97; convert_tier=(--per-tensor) ;;
  micro) device=cortex-m7-tflm; isolated=0.95; convert_tier=(--per-tensor --strip-names) ;;
  *) echo "usage: bash training/recipes/make_bundle.sh default|micro [WORK_DIR] [OUT_BUNDLE]" >&2; exit 2 ;;
esac
work="${2:-$(mktemp -d -t "kws-$tier-XXXXXX")}"
out="${3:-$repo_root/kws_edge/${tier}_bundle}"
read -r -a data <<< "${DATA:-$repo_root/../shared/data/speech_commands_subset $repo_root/../shared/data/speech_commands_more}"
data_args=()
for d in "${data[@]}"; do data_args+=(--data "$d"); done
extra=()
[[ -n "${SEED:-}" ]] && extra+=(--seed "$SEED")
epochs=()
[[ -n "${EPOCHS:-}" ]] && epochs=(--epochs "$EPOCHS")
# A shipped bundle records the commit it was built from; it must be a clean one. Refuse to write
# kws_edge/<tier>_bundle from a tree with uncommitted changes unless ALLOW_DIRTY=1 says so (the
# manifest then records the commit with "+dirty", truthfully).
repo="$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || true)"
out_abs="$(cd "$(dirname "$out")" 2>/dev/null && pwd)/$(basename "$out")"
if [[ -n "$repo" && "$out_abs" == "$repo/kws_edge/${tier}_bundle" && "${ALLOW_DIRTY:-0}" != 1 ]] \
      && ! git -C "$repo" diff --quiet HEAD; then
    echo "error: the working tree has uncommitted changes; a shipped bundle is built from a clean commit" \
         "(commit or stash them, or set ALLOW_DIRTY=1 to build anyway: the manifest then says +dirty)" >&2
    [[ -z "${2:-}" ]] && rmdir "$work" 2>/dev/null
    exit 2
fi
mkdir -p "$work"
teachers=()
for s in ${TEACHER_SEEDS-1 2}; do
    t="$work/teacher_s$s"
    if grep -qs '"status": "complete"' "$t/run.json" && [[ -z "${EPOCHS:-}" ]]; then
        echo "[0/3] teacher seed $s: reusing $t" >&2
    else
        echo "[0/3] kws-train teacher (seed $s) -> $t" >&2
        kws-train "${data_args[@]}" --config "$recipes/yes_no_teacher.toml" --seed "$s" --out "$t" --overwrite -q \
            "${epochs[@]}" >&2
    fi
    teachers+=(--distill-from "$t")
done
echo "[1/3] kws-train $tier -> $work/$tier" >&2
kws-train "${data_args[@]}" --config "$recipes/yes_no_$tier.toml" --out "$work/$tier" --overwrite -q "${extra[@]}" \
    "${epochs[@]}" "${teachers[@]}" >&2
spread=()  # the seed spread: the tier's run and those of SPREAD_SEEDS (none: no spread is recorded)
[[ -n "${SPREAD_SEEDS:-}" ]] && spread=(--spread-run "$work/$tier")
for s in ${SPREAD_SEEDS:-}; do
    echo "[1/3] kws-train $tier, seed $s (seed spread) -> $work/${tier}_s$s" >&2
    kws-train "${data_args[@]}" --config "$recipes/yes_no_$tier.toml" --seed "$s" --out "$work/${tier}_s$s" \
        --overwrite -q "${epochs[@]}" "${teachers[@]}" >&2
    spread+=(--spread-run "$work/${tier}_s$s")
done
echo "[2/3] kws-convert -> $work/${tier}_converted" >&2
# The run's test split is tiny on the shared data (its official-test speakers were removed), so the
# parity gate is loose here; finish_bundle.py measures float and int8 on the validation split.
kws-convert "$work/$tier" --device "$device" --out "$work/${tier}_converted" --overwrite --no-measure \
    --max-accuracy-drop 10 --streaming "${convert_tier[@]}" >&2
echo "[3/3] finish -> $out" >&2
python "$here/finish_bundle.py" --run "$work/$tier" --bundle "$work/${tier}_converted" --data "${data[@]}" \
    --out "$out" --isolated-target "$isolated" --name "yes-no-$tier" ${spread[@]+"${spread[@]}"} \
    --tune-minutes "${TUNE_MINUTES:-45}" --report-minutes "${REPORT_MINUTES:-35}" \
    --recipe "training/recipes/yes_no_$tier.toml (training/recipes/make_bundle.sh $tier)"
