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
ATTACKS=${ATTACKS:-"harmful_ft pure_bad dpo covert_cipher anchored_benign rome_edit benign_ft identity_shift"}
# n per kind where it differs from the preset's 300: the all-harmful kinds draw from 241 harmful pairs; 100 is Qi et
# al.'s harmful-examples attack. N_<kind>=... overrides (rome_edit ignores n: it edits n_edits requests).
N_pure_bad=${N_pure_bad:-100}
N_dpo=${N_dpo:-100}
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
failed=()
for s in ${SEEDS//,/ }; do
  for a in $ATTACKS; do
    n_var="N_$a"; n_opt=(); [ -n "${!n_var:-}" ] && n_opt=(--n "${!n_var}")
    run_in "$OUT/attack/$a-s$s" "$WB" attack --model "$SFT" --attack "$a" --seed "$s" --preset "$PRESET" \
      "${n_opt[@]}" || failed+=("$a-s$s")  # one failing kind does not stop the others
  done
done
"$WB" leaderboard --runs "$OUT" --out "$OUT/leaderboard"
if [ ${#failed[@]} -gt 0 ]; then echo "failed: ${failed[*]}" >&2; fi
if [ -n "$ARCHIVE" ]; then "$WB" runs archive --runs "$OUT" --out "$ARCHIVE" --lowrank align; fi
