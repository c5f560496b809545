#!/usr/bin/env bash
# The attack grid (docs/attacks.md): every attack kind of the registry against one SFT-aligned model, then the
# leaderboard (PREFIX_vs_attack.md pairs each kind with harmful_ft p = 0.1 on the same prompts) and the archive of
# the records into results/attacks-grid. Hours on SmolLM2 with 2 CPU cores; rerunning skips every finished step.
# Override with environment variables, e.g. a smoke test:
#   MODEL=tiny-llama PRESET=tiny ATTACKS="harmful_ft pure_bad" OUT=/tmp/ag ARCHIVE="" bash scripts/attacks_grid.sh
# docs/attacks.md was made with SFT=$(ls -d results/defense-grid/align/sft/*/) bash scripts/attacks_grid.sh
set -euo pipefail
MODEL=${MODEL:-smollm2-135m-instruct}
PRESET=${PRESET:-full}
SEEDS=${SEEDS:-0}
OUT=${OUT:-runs/attacks-grid}
ATTACKS=${ATTACKS:-"harmful_ft pure_bad benign_ft identity_shift dpo covert_cipher anchored_benign rome_edit"}
ARCHIVE=${ARCHIVE-results/attacks-grid}
WB=${WB:-.venv/bin/workbench}

run_in() {
  local dir=$1; shift
  if compgen -G "$dir/*/config.json" >/dev/null; then echo "done already: $dir"; else "$@" --out "$dir"; fi
}
latest() { local runs=("$1"/*/); local last=${runs[-1]}; echo "${last%/}"; }

# SFT=FOLDER attacks an existing aligned run (e.g. the defense grid's archived SFT model, results/defense-grid/align/
# sft/*: its low-rank delta loads like the original) instead of aligning MODEL here.
if [ -z "${SFT:-}" ]; then
  run_in "$OUT/align/sft" "$WB" align --model "$MODEL" --defense sft --preset "$PRESET"
  SFT=$(latest "$OUT/align/sft")
fi
for s in ${SEEDS//,/ }; do
  for a in $ATTACKS; do
    run_in "$OUT/attack/$a-s$s" "$WB" attack --model "$SFT" --attack "$a" --seed "$s" --preset "$PRESET"
  done
done
"$WB" leaderboard --runs "$OUT" --out "$OUT/leaderboard"
if [ -n "$ARCHIVE" ]; then "$WB" runs archive --runs "$OUT" --out "$ARCHIVE" --lowrank align; fi
