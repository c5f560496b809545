#!/usr/bin/env bash
# The defense leaderboard grid (`make leaderboard`): every alignment-stage defense, attacked through the sweep
# machinery (one sweep cell per aligned model × p × seed); every fine-tuning-stage defense on the SFT-aligned
# model; both post-fine-tuning repairs of the SFT-aligned model's attack cells; then `workbench leaderboard`.
# Hours on SmolLM2 with 2 CPU cores. Rerunning skips every step whose folder already holds a finished run.
# Override with environment variables, e.g. a smoke test:
#   MODEL=tiny-llama PRESET=tiny ALIGN="sft vaccine" FINETUNE=freeze OUT=/tmp/lb bash scripts/leaderboard_grid.sh
# An empty FINETUNE="" or POST="" skips that stage. TAR_FROM_SFT=N runs TAR as the paper does, as a phase of N
# steps on top of the SFT-aligned model (a full TAR alignment is ~2 h on 2 cores for SmolLM2).
set -euo pipefail
MODEL=${MODEL:-smollm2-135m-instruct}
PRESET=${PRESET:-full}
P=${P:-0.1}            # harmful ratios, comma-separated, written as `workbench sweep` keys them (0.1, not 0.10)
SEEDS=${SEEDS:-0}
OUT=${OUT:-runs/leaderboard-grid}
ALIGN=${ALIGN:-"sft vaccine t_vaccine repnoise booster tar"}
FINETUNE=${FINETUNE-"ldifs constrain_sft freeze freeze_plus ml_lr salora filtration saft safeinstr lisa ptst bea"}
POST=${POST-"safelora antidote"}
WB=${WB:-.venv/bin/workbench}

# run_in DIR CMD...: run CMD --out DIR (it writes one run folder into DIR) unless DIR holds a finished run already
run_in() {
  local dir=$1; shift
  if compgen -G "$dir/*/config.json" >/dev/null; then echo "done already: $dir"; else "$@" --out "$dir"; fi
}
latest() { local runs=("$1"/*/); local last=${runs[-1]}; echo "${last%/}"; }

case " $ALIGN " in *" sft "*) ;; *) echo "ALIGN must include sft (the baseline the other stages build on)"; exit 2;; esac
ALIGN="sft $(for d in $ALIGN; do [ "$d" = sft ] || printf '%s ' "$d"; done)"  # sft first: TAR_FROM_SFT builds on it
models=()
for d in $ALIGN; do
  if [ "$d" = tar ] && [ -n "${TAR_FROM_SFT:-}" ]; then
    run_in "$OUT/align/$d" "$WB" align --model "$(latest "$OUT/align/sft")" --defense tar --preset "$PRESET" \
      --max-steps "$TAR_FROM_SFT"
  else
    run_in "$OUT/align/$d" "$WB" align --model "$MODEL" --defense "$d" --preset "$PRESET"
  fi
  models+=(--model "$d=$(latest "$OUT/align/$d")")
done
"$WB" sweep "${models[@]}" --p "$P" --seeds "$SEEDS" --preset "$PRESET" --out "$OUT/sweep"

SFT=$(latest "$OUT/align/sft")
for p in ${P//,/ }; do
  for s in ${SEEDS//,/ }; do
    for d in $FINETUNE; do
      extra=()
      [ "$d" = freeze_plus ] && extra=(--method full)  # Freeze+ freezes all attention: LoRA on q/k/v/o has nothing left
      run_in "$OUT/defend/$d-p$p-s$s" "$WB" attack --model "$SFT" --p "$p" --seed "$s" --defense "$d" \
        --preset "$PRESET" "${extra[@]}"
    done
    attacked=$(latest "$OUT/sweep/cells/sft-harmful_ft-p$p-s$s")
    for d in $POST; do
      run_in "$OUT/repair/$d-p$p-s$s" "$WB" repair --defense "$d" --model "$attacked" --seed "$s"
    done
  done
done
"$WB" leaderboard --runs "$OUT"
