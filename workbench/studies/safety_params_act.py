"""Step 6 of the safety-params study: when should a criterion act? Each criterion drives a defense at two stages,
and each defense is judged as every defense is, by the post-attack HS and FA of ordinary run folders.

    none               the preset's attack (`steps.attack`) on the aligned model, undefended: the reference
    fine-tuning        Freeze (`defenses.finetune.freeze`, `layers=[...]`) during the same attack, on the layers
                       holding the largest share of the criterion's top `act_k` % of all scored weights (ranked
                       globally, so the criterion decides where they lie; `act_layers` of them, default Freeze's
                       quarter of the depth). Layer-level: Freeze takes layers, not masks.
    post-fine-tuning   like Antidote: the criterion scores the *attacked* model (same calibration data) and its top
                       `act_k` % (`spec.group`) is zeroed; the pruned model is evaluated into an eval run. `delta`
                       stays the alignment update |W_aligned − W_base| and `random` the same seeded draw: controls.

All runs land under the study's act/ folder (attack, defend, eval kinds): the leaderboard and the explorer read
them like any other. Sizes (attack data, training, evaluation sets) are the preset's (`spec.preset`, else by the
model's name: "tiny" for tiny models, else "full").
"""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict
from tqdm.auto import tqdm

from workbench.analysis.wanda import prune
from workbench.config import DefenseSpec
from workbench.defenses.finetune.freeze import default_top_k
from workbench.evaluation.harness import evaluate
from workbench.models import load_model
from workbench.presets import default_preset, preset
from workbench.record import EvalRunSpec
from workbench.runs import Run, RunWriter, list_runs, model_ref
from workbench.steps import HARMFUL_SET_NAMES, attack
from workbench.studies.safety_params_criteria import CRITERIA, CriterionInputs
from workbench.studies.safety_params_masks import top_layers, top_masks
from workbench.vocabulary import FINE_TUNING, POST_FINE_TUNING


class ActRow(BaseModel):
    """One defense a criterion drove, judged after the attack. Rates in percent (None: not measured)."""

    model_config = ConfigDict(frozen=True)
    criterion: str  # or "none": the attack without defense
    stage: str  # "fine-tuning" (Freeze), "post-fine-tuning" (pruning), or "none"
    detail: str  # the frozen layers, or the share pruned
    run: str  # the run folder, relative to the study folder
    hs: float | None = None
    fa: float | None = None
    refusal_harmful: float | None = None


def _rates(run: Path, study: Path) -> dict:
    """HS, FA and refusal (percent) of a run's metrics.json, and its folder relative to the study."""
    m = Run(run).metrics
    fa = next((v for k, v in m.items() if k.startswith("fa_") and isinstance(v, dict) and "value" in v), None)

    def value(v):
        return v["value"] if isinstance(v, dict) and "value" in v else None

    return {"run": str(run.relative_to(study)) if run.is_relative_to(study) else str(run),
            "hs": value(m.get("hs")), "fa": value(fa), "refusal_harmful": value(m.get("refusal_harmful"))}


def preset_of(spec, model: str, base: str | None) -> str:
    """The preset of step 6: given, else by the name of the model at the bottom of the chain (tiny-* → tiny)."""
    return spec.preset or default_preset(str(base or model))


def freeze_layers(inputs: CriterionInputs, criterion: str, k: float, layers: list[int], n: int) -> list[int]:
    """The `n` layers holding most of the criterion's top k % of all scored weights (global ranking)."""
    (mask,) = top_masks(CRITERIA[criterion](inputs), [k], "global")
    return top_layers(mask, layers, n)


def prune_and_evaluate(criterion: str, attacked: Path, inputs: CriterionInputs, spec, eval_spec, folder: Path,
                       seed: int, progress: bool) -> Path:
    """Score the attacked model, zero its top `act_k` %, evaluate into an eval run under `folder`."""
    model, tok = load_model(attacked)
    scoring = CriterionInputs(model=model, safety=inputs.safety, utility=inputs.utility, refusal=inputs.refusal,
                              modules=inputs.modules, seed=seed, p=inputs.p, pq_grid=inputs.pq_grid,
                              pq_k=inputs.pq_k, pq_score=inputs.pq_score, aligned=inputs.aligned, base=inputs.base,
                              progress=progress)
    (mask,) = top_masks(CRITERIA[criterion](scoring), [spec.act_k], spec.group)
    rec = prune(scoring.model, mask)
    name = f"pruned-{criterion.replace('_', '-')}-k{spec.act_k:g}"
    # `model` is the attacked run where it was written (inside the study's staging folder until the study is
    # published); `attacked_run` names its folder, unique, so `runs.find_moved` finds it under the published study
    record = EvalRunSpec(eval=eval_spec, model=model_ref(str(attacked)), harmful_prompts=HARMFUL_SET_NAMES[
        eval_spec.harmful_set], attacked_run=attacked.name, pruned_by=criterion, pruned_percent=spec.act_k,
        pruned_group=spec.group, n_pruned=rec.n_zeroed)
    with RunWriter(folder, "eval", name, record, seed=seed) as run:
        ev = evaluate(scoring.model, tok, eval_spec, progress=progress, label=name)
        run.write_metrics(ev.metrics)
        run.write_samples(ev.samples)
    del model, scoring
    return run.final_path


def finished(folder: Path, kind: str, match) -> Path | None:
    """A finished run of `kind` directly under `folder` whose record satisfies `match(run)` (resuming the act step)."""
    found = [r for r in list_runs(folder, kind) if r.path.parent == folder and match(r)]
    return found[-1].path if found else None


def act(spec, model: str, base: str | None, layers: list[int], inputs: CriterionInputs, folder: Path | None,
        seed: int, progress: bool, resume: bool = False) -> list[ActRow]:
    """The rows of step 6, writing the attack / defend / eval runs under `folder` (`spec`: the study's Spec;
    `base`: the model the aligned `model` was aligned from, which names the preset; `inputs`: the study's criterion
    inputs on the aligned model). With `resume`, a run already finished there is reused and an interrupted one
    resumes from its checkpoint."""
    if folder is None:
        raise ValueError("the act step writes run folders: give it a folder")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    study = folder.parent
    p = preset(preset_of(spec, model, base), seed)
    n_layers = spec.act_layers or default_top_k(len(layers))
    if n_layers > len(layers):
        raise ValueError(f"act_layers={n_layers}: the model has only {len(layers)} layers")
    criteria = spec.act_criteria or spec.criteria
    def reuse(kind, match):
        return finished(folder, kind, match) if resume else None

    attacked = reuse("attack", lambda r: r.spec.attack == p.attack) or attack(
        p.attack, model, folder, seed, p.eval, resume=resume, progress=progress)
    rows = [ActRow(criterion="none", stage="none", detail="the attack, undefended", **_rates(attacked, study))]
    for name in tqdm(criteria, desc="act: defenses", disable=not progress, dynamic_ncols=True):
        chosen = freeze_layers(inputs, name, spec.act_k, layers, n_layers)
        freeze = DefenseSpec(name="freeze", params={"layers": chosen})
        defended = reuse("defend", lambda r, d=freeze: r.spec.defense == d) or attack(
            p.attack, model, folder, seed, p.eval, resume=resume, progress=progress, defense=freeze)
        rows.append(ActRow(criterion=name, stage=FINE_TUNING, detail=f"freeze layers {chosen}",
                           **_rates(defended, study)))
        pruned = reuse("eval", lambda r, c=name: getattr(r.spec, "pruned_by", None) == c
                       and getattr(r.spec, "pruned_percent", None) == spec.act_k) or prune_and_evaluate(
            name, attacked, inputs, spec, p.eval, folder, seed, progress)
        rows.append(ActRow(criterion=name, stage=POST_FINE_TUNING,
                           detail=f"prune top {spec.act_k:g}% ({spec.group})", **_rates(pruned, study)))
    return rows
