#!/usr/bin/env bash
# The SmolLM2 numbers of docs/analyses-refusal.md and docs/analyses-landscape.md, from the archived SFT-aligned
# model: attack it once (harmful_ft, p = 0.1, n = 300, the grid's cell), then run every analysis the two pages
# report on the pair. Each step writes one run folder and is skipped when that folder exists (the workbench
# publishes a folder only when it is whole), so an interrupted run resumes by running this again.
#
#   ALIGN=results/defense-grid/align/sft/align-sft-20261129-163350 OUT=runs/smollm2-analyses \
#       bash scripts/smollm2_analyses.sh [STEP ...]      # no STEP: all of them, in the order below
#   workbench runs archive --runs runs/smollm2-analyses --out results/smollm2-analyses
#
# Another model's pair, e.g. Gemma 3 270M's quickstart (docs/quickstart.md): ATTACKED names its attacked run, so
# the attack step is skipped: ALIGN=<align run> ATTACKED=<attack run> OUT=runs/gemma-analyses bash ... landscape
set -euo pipefail
ALIGN=${ALIGN:-results/defense-grid/align/sft/align-sft-20261129-163350}
OUT=${OUT:-runs/smollm2-analyses}
WB=${WB:-workbench}
mkdir -p "$OUT"

attacked() { if [ -n "${ATTACKED:-}" ]; then echo "$ATTACKED"; else ls -d "$OUT"/attack/attack-*/ 2>/dev/null | head -1; fi; }

step_attack() {
    [ -n "$(attacked)" ] || $WB attack --model "$ALIGN" --p 0.1 --n 300 --preset full --out "$OUT/attack"
}

# analyze NAME ANALYSIS [workbench analyze options]: skipped when $OUT/NAME exists.
analyze() {
    local name=$1 what=$2; shift 2
    if [ -d "$OUT/$name" ]; then echo "skip $name"; return; fi
    echo "== $name ($(date -u +%H:%M:%S))"
    $WB analyze "$what" "$@" --out "$OUT/$name"
}

step_refusal() {
    local X; X=$(attacked)
    analyze refusal-probing probing --model "$ALIGN" --compare "$X" -p n_train=64 -p n_eval=32
    analyze refusal-direction-aligned refusal-direction --model "$ALIGN" -p n_train=64 -p n_val=16 \
        -p n_generate=32 -p layer_stride=2 -p kl_threshold=0.25 -p 'generate_for=["model"]'
    analyze refusal-direction-compare refusal-direction --model "$ALIGN" --compare "$X" -p n_train=64 -p n_val=16 \
        -p n_generate=32 -p "direction_from=\"$OUT/refusal-direction-aligned\"" -p 'generate_for=["compare"]'
    analyze refusal-logit-attribution logit-attribution --model "$ALIGN" --compare "$X" -p n_prompts=32
    analyze refusal-patching-cross patching --model "$ALIGN" --compare "$X" -p n_prompts=32 \
        -p 'components=["resid","attn","mlp","window"]' -p within=none -p cross=aligned_into_attacked
    analyze refusal-patching-within patching --model "$ALIGN" -p n_prompts=16 -p positions=6 \
        -p 'components=["resid","resid_pos"]' -p within=harmful_into_harmless -p cross=none
    analyze refusal-patching-reverse patching --model "$ALIGN" --compare "$X" -p n_prompts=16 \
        -p 'components=["resid","attn","mlp","window"]' -p within=none -p cross=attacked_into_aligned
    analyze refusal-patching-heads patching --model "$ALIGN" --compare "$X" -p n_prompts=16 \
        -p 'components=["heads"]' -p within=none -p cross=aligned_into_attacked
    # the shipped (non-aligned) model's probe, and the paper's recipe without the massive-activation fix
    analyze refusal-probing-shipped probing --model smollm2-135m-instruct -p n_train=64 -p n_eval=32
    analyze refusal-direction-aligned-raw refusal-direction --model "$ALIGN" -p n_train=64 -p n_val=16 \
        -p n_generate=32 -p layer_stride=2 -p massive_factor=null -p 'generate_for=["model"]'
}

step_landscape() {
    local X; X=$(attacked)
    analyze landscape-aligned-1d landscape --model "$ALIGN" -p span=0.2 -p n_directions=3
    analyze landscape-attacked-1d landscape --model "$X" -p span=0.2 -p n_directions=3
    analyze landscape-line landscape --model "$ALIGN" --compare "$X" -p 'slices=["line"]'
    analyze landscape-aligned-2d landscape --model "$ALIGN" -p 'slices=["2d"]' -p span=0.15 -p grid_points=11
}

step_wanda() {
    analyze wanda-setdiff wanda --model "$ALIGN" -p n_eval_prompts=64 -p n_utility=64 -p judge=true \
        -p safety_only_baseline=true
}

step_drift() {
    analyze drift-sweep drift --model "$ALIGN" -p mode=sweep -p 'ps=[0.0,0.1,0.3,1.0]' -p n=240 -p max_steps=40 \
        -p every=8 -p judge=true -p n_eval_prompts=32 -p max_new_tokens=16
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(attack refusal wanda landscape drift)
for s in "${steps[@]}"; do "step_$s"; done
echo "done ($(date -u +%H:%M:%S))"
