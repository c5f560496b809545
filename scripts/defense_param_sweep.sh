#!/usr/bin/env bash
# Choose an alignment-stage defense's hyperparameter on the validation split, never on the test prompts:
# for each value, align with it, run the same harmful fine-tuning attack, and evaluate the attacked model on the
# validation split (`workbench eval --validation`); then print the validation table to choose from. Only the
# chosen value's test-set numbers (the attack run's own metrics.json) are reported in docs.
#   DEFENSE=vaccine PARAM=rho VALUES="0.5 2 8" OUT=runs/rho-sweep bash scripts/defense_param_sweep.sh
# EXTRA="beta=1" adds fixed --param values to every run (and to the folder name); MAX_STEPS sets --max-steps;
# MODEL may be a run folder, e.g. continue TAR from its own aligned model for more outer steps:
#   MODEL=runs/.../align-tar-... DEFENSE=tar PARAM=inner_steps VALUES=4 MAX_STEPS=16 OUT=runs/tar-sweep bash ...
# Smoke test: MODEL=tiny-llama PRESET=tiny DEFENSE=vaccine PARAM=rho VALUES="0.5 2" OUT=/tmp/sw bash scripts/defense_param_sweep.sh
# Rerunning skips every step whose folder already holds a finished run.
set -euo pipefail
MODEL=${MODEL:-smollm2-135m-instruct}
PRESET=${PRESET:-full}
DEFENSE=${DEFENSE:?set DEFENSE, e.g. vaccine}
PARAM=${PARAM:?set PARAM, e.g. rho}
VALUES=${VALUES:?set VALUES, e.g. "0.5 2 8"}
P=${P:-0.1}
SEED=${SEED:-0}
OUT=${OUT:-runs/$DEFENSE-$PARAM-sweep}
EXTRA=${EXTRA:-}
MAX_STEPS=${MAX_STEPS:-}
WB=${WB:-.venv/bin/workbench}
PY=${PY:-.venv/bin/python}

run_in() {
  local dir=$1; shift
  if compgen -G "$dir/*/config.json" >/dev/null; then echo "done already: $dir"; else "$@" --out "$dir"; fi
}
latest() { local runs=("$1"/*/); local last=${runs[-1]}; echo "${last%/}"; }

extra_args=()
suffix=""
for kv in $EXTRA; do extra_args+=(--param "$kv"); suffix+=",$kv"; done
if [[ -n $MAX_STEPS ]]; then extra_args+=(--max-steps "$MAX_STEPS"); suffix+=",max_steps=$MAX_STEPS"; fi

for v in $VALUES; do
  d="$OUT/$PARAM=$v$suffix"
  run_in "$d/align" "$WB" align --model "$MODEL" --defense "$DEFENSE" --param "$PARAM=$v" "${extra_args[@]}" \
    --preset "$PRESET" --seed "$SEED"
  run_in "$d/attack" "$WB" attack --model "$(latest "$d/align")" --p "$P" --preset "$PRESET" --seed "$SEED"
  run_in "$d/validation" "$WB" eval --model "$(latest "$d/attack")" --validation --preset "$PRESET" --seed "$SEED"
done
"$PY" scripts/validation_table.py "$OUT"
