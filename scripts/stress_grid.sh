#!/usr/bin/env bash
# The worst-case grid (issue #22, docs/robustness.md): `workbench stress` for SFT and the best two defenses of each
# stage in docs/ (alignment: repnoise, vaccine; fine-tuning: safeinstr, lisa; post-fine-tuning: safelora, antidote),
# K = 12 trials each, under both threat models where they apply: alignment-stage defenses under fine-tuning as a
# service and open weights; fine-tuning and post-fine-tuning defenses (on the SFT-aligned model) under the service
# only. Then the leaderboard with its worst-case columns, read together with the ordinary grid (BOARD).
# Rerunning resumes every study where it stopped (finished trials and report seeds are skipped, a killed trial is
# retried); an aligned model already in ALIGN_ROOT/<defense>/ is reused (e.g. ALIGN_ROOT=runs/leaderboard-grid/align).
# Days on SmolLM2 with 2 CPU cores (a trial trains up to 150 LoRA steps, then 100 validation prompts + 100 SST-2).
# Override with environment variables, e.g. a smoke test:
#   MODEL=tiny-llama PRESET=tiny K=2 DESIGN=2 ALIGN=sft FINETUNE=lisa POST=antidote OUT=/tmp/st bash scripts/stress_grid.sh
# An empty FINETUNE="" or POST="" skips that stage; THREATS="service" skips the open-weights studies.
set -euo pipefail
MODEL=${MODEL:-smollm2-135m-instruct}
PRESET=${PRESET:-full}
K=${K:-12}               # trials per study (the design's included)
DESIGN=${DESIGN:-8}      # configurations of the seeded design every defense faces first
SEED=${SEED:-0}
OUT=${OUT:-runs/stress-grid}
ALIGN_ROOT=${ALIGN_ROOT:-$OUT/align}
ALIGN=${ALIGN:-"sft repnoise vaccine"}
FINETUNE=${FINETUNE-"safeinstr lisa"}
POST=${POST-"safelora antidote"}
THREATS=${THREATS:-"service open"}
BACKEND=${BACKEND:-local}  # ray: trials of one study in parallel
BOARD=${BOARD-runs/leaderboard-grid}  # the ordinary grid whose rows get the worst-case column ("" : none)
WB=${WB:-.venv/bin/workbench}

# run_in DIR CMD...: run CMD --out DIR (it writes one run folder into DIR) unless DIR holds a finished run already
run_in() {
  local dir=$1; shift
  if compgen -G "$dir/*/config.json" >/dev/null; then echo "done already: $dir"; else "$@" --out "$dir"; fi
}
latest() { local runs=("$1"/*/); local last=${runs[-1]}; echo "${last%/}"; }
stress() { "$WB" stress --threat "$1" --budget "$K" --design-size "$DESIGN" --seed "$SEED" --preset "$PRESET" \
  --backend "$BACKEND" --out "$2" "${@:3}"; }

case " $ALIGN " in *" sft "*) ;; *) echo "ALIGN must include sft (the model the other stages defend)"; exit 2;; esac
for d in $ALIGN; do
  run_in "$ALIGN_ROOT/$d" "$WB" align --model "$MODEL" --defense "$d" --preset "$PRESET" --seed "$SEED"
  for threat in $THREATS; do
    stress "$threat" "$OUT/$threat/$d" --model "$(latest "$ALIGN_ROOT/$d")"
  done
done
SFT=$(latest "$ALIGN_ROOT/sft")
case " $THREATS " in *" service "*)
  for d in $FINETUNE $POST; do
    stress service "$OUT/service/$d" --model "$SFT" --defense "$d"
  done;;
esac
if [ -n "$BOARD" ] && [ -d "$BOARD" ]; then
  roots=(--runs "$BOARD" --runs "$OUT")
else  # no ordinary grid: one attack of the SFT model at the preset's defaults gives the board its rows
  run_in "$OUT/attack/sft" "$WB" attack --model "$SFT" --preset "$PRESET" --seed "$SEED"
  roots=(--runs "$OUT")
fi
"$WB" leaderboard "${roots[@]}" --out "$OUT/leaderboard"
