"""Steps: align, attack, repair, eval. Each reads models/data from registries and writes one run folder.

A training step's run folder holds the trained model (merged safetensors), its training curve, the exact
training data it saw (`train_data.jsonl`, with the harmful flag), and the evaluation of the result.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError

from workbench.analysis import AnalysisContext, get_analysis
from workbench.attacks import get_attack, parse_attack_params
from workbench.attacks.context import AttackContext
from workbench.config import AlignSpec, AttackSpec, DefenseSpec, EvalSpec, TrainSpec
from workbench.data.alignment import alignment_samples
from workbench.data.refusals import REFUSAL_SOURCE
from workbench.data.types import Sample
from workbench.data.validation import validation_sets, validation_task_set
from workbench.defenses import get_defense, parse_params
from workbench.defenses.context import TrainingContext
from workbench.defenses.post.common import RepairContext
from workbench.evaluation.harness import evaluate
from workbench.evaluation.moderation import get_judge, resolve_spec
from workbench.machine import configure_threads
from workbench.models import load_model, save_model
from workbench.models.registry import MODELS, _base_reference, model_folder
from workbench.plots.export import export_all
from workbench.precision import resolve_dtype
from workbench.presets import preset
from workbench.record import AlignRunSpec, AttackedRun, AttackRunSpec, EvalRunSpec, RepairRunSpec, RunSpec
from workbench.runs import RunWriter, model_ref, open_run, run_kind
from workbench.training.loop import train
from workbench.training.plugins import check_one_objective
from workbench.vocabulary import ALIGNMENT, FINE_TUNING, POST_FINE_TUNING, analysis_key


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def begin_step(seed: int) -> None:
    """Every step starts the same way: threads for the cores this process may use (`workbench.machine`), then
    every random generator seeded."""
    configure_threads()
    seed_everything(seed)


def _train_and_eval(kind: str, name: str, base: str, samples: list[Sample], train_spec: TrainSpec,
                    eval_spec: EvalSpec, spec: RunSpec, out: str | Path, seed: int, plugins: list = (),
                    resume: bool = False, progress: bool = True, notes: dict | None = None,
                    edit: Callable | None = None) -> Path:
    """Train `base` on `samples` (or, with `edit(model, tokenizer)`, edit its weights in place instead), save and
    evaluate the result: one run folder."""
    begin_step(seed)
    model, tok = load_model(base)
    with RunWriter(out, kind, name, spec, seed=seed, resume=resume) as run:
        run.write_samples_file("train_data.jsonl", [s.to_dict() for s in samples])
        if edit is None:
            result = train(model, tok, samples, train_spec, list(plugins), checkpoint_dir=run.checkpoint_dir,
                           progress=progress, desc=f"{kind} {name}")
            model, summary, method = result.model, result.summary, train_spec.method
            curve = {"losses": result.state.losses, "diagnostics": result.state.diagnostics}
        else:
            started = time.perf_counter()
            edit(model, tok)
            summary = {"steps": 0, "train_seconds": round(time.perf_counter() - started, 2)}
            method, curve = "edit", {}
        save_model(model, tok, run.path / "model")
        run.write_json("model/base.json", {"base": model_ref(base), "method": method})
        run.write_json("training.json", {**summary, **curve, **(notes or {})})
        ev = evaluate(model, tok, eval_spec, progress=progress, label=name)
        extra = {k: notes[k] for k in ("data_defense_seconds",) if notes and k in notes}
        run.write_metrics({**ev.metrics, "train": {**summary, **extra}})
        run.write_samples(ev.samples)
    return run.final_path


def alignment_inputs(spec: AlignSpec, model: str, seed: int = 0) -> tuple:
    """(resolved defense params, alignment samples, training plugins) of an align step: what `align` trains
    with, and what the defense-cost benchmark times on the same data."""

    info = get_defense(spec.defense.name, ALIGNMENT)
    params = parse_params(info, spec.defense.params)
    samples = alignment_samples(spec, seed)
    plugins = info.plugins(params, TrainingContext(samples, model, seed, spec.train))
    return params, samples, plugins


def align(spec: AlignSpec, model: str, out: str | Path, seed: int = 0, eval_spec: EvalSpec | None = None,
          resume: bool = False, progress: bool = True) -> Path:
    eval_spec = eval_spec if eval_spec is not None else EvalSpec()
    params, samples, plugins = alignment_inputs(spec, model, seed)
    full = AlignRunSpec(align=spec, eval=eval_spec, model=model_ref(model), refusals=REFUSAL_SOURCE,
                        defense_params=params.model_dump())  # resolved defaults too
    return _train_and_eval("align", spec.defense.name, model, samples, spec.train, eval_spec, full, out, seed,
                           plugins, resume, progress)


def attack(spec: AttackSpec, model: str, out: str | Path, seed: int = 0, eval_spec: EvalSpec | None = None,
           resume: bool = False, progress: bool = True, defense: DefenseSpec | None = None) -> Path:
    """Fine-tune on the attacker's data (or apply the attack's weight edit); with a fine-tuning-stage `defense` the
    provider defends (kind "defend")."""
    eval_spec = eval_spec if eval_spec is not None else EvalSpec()
    info = get_attack(spec.name)
    attack_params = parse_attack_params(spec)
    attack_context = AttackContext(model, seed, spec.train, moderation=get_judge)
    samples = info.build(spec, attack_params, attack_context)
    if info.inference:  # the attacker queries with their persona system prompt / their encoding
        gen = eval_spec.generation.model_copy(update=info.inference)
        eval_spec = eval_spec.model_copy(update={"generation": gen})
    if info.fixed_p is None:  # the kind reads DataSpec.p (harmful_ft, covert_cipher)
        name = f"{spec.name}-p{spec.data.p:g}-n{spec.data.n}"
    else:
        name = f"{spec.name}-n{spec.data.n}"
    notes: dict = {"n_harmful_uploaded": sum(bool(s.harmful) for s in samples), "n_uploaded": len(samples)}
    defense_plugins: list = []
    kind, resolved = "attack", None
    if defense is not None and defense.name not in ("none", ""):
        if info.edit is not None:
            raise ValueError(f"attack {spec.name!r} edits the weights without fine-tuning: a fine-tuning-stage "
                             f"defense ({defense.name!r}) has no training to guard")
        info_d = get_defense(defense.name, FINE_TUNING)
        params = parse_params(info_d, defense.params)
        resolved = params.model_dump()
        context = TrainingContext(samples, model, seed, spec.train)
        if info_d.data is not None:
            started = time.perf_counter()
            samples = info_d.data(params, samples, context)
            context = replace(context, samples=samples)
            # a data defense (filtration judge, SAFT embeddings, …) runs before the training loop, so its
            # seconds are not in the loop's train_seconds; the leaderboard adds them to the defense's cost
            context.notes["data_defense_seconds"] = round(time.perf_counter() - started, 3)
        defense_plugins = info_d.plugins(params, context)
        if info_d.inference is not None:
            gen = eval_spec.generation.model_copy(update=info_d.inference(params))
            eval_spec = eval_spec.model_copy(update={"generation": gen})
        notes.update(context.notes)
        kind, name = "defend", f"{defense.name}-{name}"
    # the attack's own objective (DPO) is made after any data defense: its batches index the data actually trained on
    plugins: list = [] if info.plugins is None else info.plugins(attack_params,
                                                                 replace(attack_context, samples=samples))
    plugins += defense_plugins
    check_one_objective(plugins)  # e.g. DPO under constrain_sft: one clear error before any run folder is written
    notes.update(n_harmful_trained=sum(bool(s.harmful) and not s.meta.get("safety_example") for s in samples),
                 n_safety_examples=sum(bool(s.meta.get("safety_example")) for s in samples), n_trained=len(samples))
    edit = None
    if info.edit is not None:
        def edit(m, tok):
            info.edit(attack_params, m, tok, samples, attack_context)
    resolved_attack = {"attack_params": attack_params.model_dump()} if info.params.model_fields else {}
    full = AttackRunSpec(attack=spec, eval=eval_spec, model=model_ref(model), defense=defense,
                         defense_params=resolved, **resolved_attack)
    # the attack's report (selection scores, what a filter sees, the edit's effect) is filled by build, its plugins
    # and its edit; the dict is shared, so what the edit writes during the step still reaches training.json
    notes["attack"] = attack_context.notes
    return _train_and_eval(kind, name, model, samples, spec.train, eval_spec, full, out, seed, plugins,
                           resume, progress, notes=notes, edit=edit)


# how an eval run's record names its harmful prompts, by `EvalSpec.harmful_set` ("advbench eval split" as always)
HARMFUL_SET_NAMES = {"advbench": "advbench eval split", "standard": "standard benchmarks (advbench, harmbench, "
                     "donotanswer; near-duplicates of training prompts removed)"}


def evaluate_model(model: str, out: str | Path, seed: int = 0, eval_spec: EvalSpec | None = None,
                   harmful: list[Sample] | None = None, name: str | None = None, progress: bool = True,
                   benign: list[Sample] | None = None, sets: str | None = None,
                   task: list[Sample] | None = None) -> Path:
    """Evaluate a model into an eval run. `harmful` / `benign` / `task` replace the held-out sets; `sets` says in
    the config which prompts they are (default: "custom" for given harmful prompts)."""
    eval_spec = eval_spec if eval_spec is not None else EvalSpec()
    begin_step(seed)
    m, tok = load_model(model)
    prompts = sets or ("custom" if harmful is not None else HARMFUL_SET_NAMES[eval_spec.harmful_set])
    full = EvalRunSpec(eval=eval_spec, model=model_ref(model), harmful_prompts=prompts)
    name = name or Path(str(model)).name.replace("_", "-")
    with RunWriter(out, "eval", name, full, seed=seed) as run:
        ev = evaluate(m, tok, eval_spec, harmful=harmful, benign=benign, progress=progress, label=name, task=task)
        run.write_metrics(ev.metrics)
        run.write_samples(ev.samples)
    return run.final_path


REPAIRABLE = ("attack", "defend")  # run kinds whose model/ is a fine-tuned model a post-stage defense repairs


def repair(defense: str, params: dict, model: str, out: str | Path, seed: int = 0, eval_spec: EvalSpec | None = None,
           aligned: str | None = None, unaligned: str | None = None, progress: bool = True,
           judge: str | None = None, dtype: str | None = None) -> Path:
    """Repair a fine-tuned model with a post-fine-tuning defense; one run folder of kind "repair" holding the
    repaired model (merged safetensors), `repair.json` (what changed), the method's files, and its evaluation.

    `model`: an attack / defend run folder, an HF folder or a LoRA adapter folder. Defaults, read from run folders:
    `aligned` = the model the attack run fine-tuned (an adapter's base), `unaligned` = the model the aligned run
    started from. `eval_spec` None: the attacked run's recorded evaluation (same prompts, sizes, system prompt,
    precision).
    `judge` (a `moderation.get_judge` spec) replaces the judge of that evaluation, `dtype` (float32,
    bfloat16 or auto) its generation precision; the repair itself computes in float32 either way (see `precision`).
    """

    info = get_defense(defense, POST_FINE_TUNING)
    resolved = parse_params(info, params)
    run = _run_of(model)
    if run is not None and run.kind not in REPAIRABLE:
        raise ValueError(f"{model} is a '{run.kind}' run; repair takes the fine-tuned model of an "
                         f"{' or '.join(repr(k) for k in REPAIRABLE)} run (or any HF / LoRA adapter folder)")
    refs = _repair_references(info, model, run.base if run is not None else None, aligned, unaligned)
    recorded = run.spec.eval if run is not None else None
    if eval_spec is None:
        eval_spec = recorded or EvalSpec()
    elif recorded is not None:
        # the attacker's persona and encoding / the defense's inference prompt stay part of how this model is queried
        was, now = recorded.generation, eval_spec.generation
        kept = {k: v for k, v in (("system_prompt", was.system_prompt), ("codec", was.codec))
                if v and not getattr(now, k)}
        if kept:
            eval_spec = eval_spec.model_copy(update={"generation": now.model_copy(update=kept)})
    if judge is not None:
        eval_spec = eval_spec.model_copy(update={"judge": True, "judge_model": resolve_spec(judge)})
    if dtype is not None:
        eval_spec = eval_spec.model_copy(update={"generation": eval_spec.generation.model_copy(
            update={"dtype": resolve_dtype(dtype)})})
    train = run.attack.train if run is not None and run.attack is not None else None
    adapted = train.lora_targets if train is not None and train.method == "lora" else None

    begin_step(seed)
    ctx = RepairContext(attacked=str(model), aligned=refs.get("aligned"), unaligned=refs.get("unaligned"),
                        adapted_modules=adapted, seed=seed, progress=progress)
    t0 = time.perf_counter()
    result = info.repair(resolved, ctx)
    seconds = round(time.perf_counter() - t0, 2)

    name = f"{defense}-{run.name if run is not None else Path(str(model)).name}".replace("_", "-")
    full = RepairRunSpec(
        defense=DefenseSpec(name=defense, params=params), defense_params=resolved.model_dump(),
        model=model_ref(model), **{k: model_ref(v) if v else None for k, v in refs.items()},
        attacked_run=AttackedRun(kind=run.kind, name=run.name, defense=run.spec.defense) if run else None,
        attack=run.attack if run else None, eval=eval_spec)
    with RunWriter(out, "repair", name, full, seed=seed) as writer:
        save_model(result.model, result.tokenizer, writer.path / "model")
        writer.write_json("model/base.json", {"base": model_ref(model), "method": f"repair:{defense}"})
        writer.write_json("repair.json", {**result.report, "repair_seconds": seconds})
        for relpath, write in result.files.items():
            write(writer.path / relpath)
        ev = evaluate(result.model, result.tokenizer, eval_spec, progress=progress, label=name)
        writer.write_metrics({**ev.metrics, "repair": {"repair_seconds": seconds}})
        writer.write_samples(ev.samples)
    return writer.final_path


def _run_of(model: str | Path):
    """The run whose folder `model` is, or None for a registered name / HF / adapter folder."""
    return open_run(model) if run_kind(Path(str(model))) is not None else None


def _repair_references(info, model, base: str | None, aligned: str | None, unaligned: str | None) -> dict:
    """aligned / unaligned for a post-stage defense: given, or read from the run folders; explicit errors."""
    given = {"aligned": aligned, "unaligned": unaligned}
    extra = [k for k, v in given.items() if v and k not in info.references]
    if extra:
        raise ValueError(f"{info.name} does not use --{' / --'.join(extra)}: it repairs the fine-tuned model alone")
    if not info.references:
        return {}
    for key, ref in given.items():
        if ref is not None and str(ref) not in MODELS and not Path(str(ref)).is_dir():
            raise ValueError(f"--{key} {ref}: neither a registered model ({', '.join(sorted(MODELS))}) nor a folder")
    if aligned is None:
        folder = model_folder(model)
        if (folder / "adapter_config.json").exists():
            aligned = _base_reference(folder)
        elif base:  # the model the attack run fine-tuned
            aligned = base
        else:
            raise ValueError(f"{info.name} needs --aligned: {model} is not a run folder that records the model it "
                             f"was fine-tuned from; pass that aligned model (name, HF folder or align run folder)")
    if unaligned is None:
        aligned_run = _run_of(aligned)
        unaligned = aligned_run.base if aligned_run is not None else None
        if not unaligned:
            raise ValueError(f"{info.name} needs --unaligned: the aligned model {aligned} is not a run folder that "
                             f"records its base; pass the model before safety alignment (e.g. smollm2-135m-instruct)")
    if model_ref(aligned) == model_ref(unaligned):
        raise ValueError(f"--aligned and --unaligned are the same model ({aligned}): V = W_aligned − W_unaligned "
                         f"would be zero; pass the model before safety alignment as --unaligned")
    return {"aligned": str(aligned), "unaligned": str(unaligned)}


def run_analysis(name: str, model: str, compare: str | None, seed: int, out: Path, params: dict,
                 formats=("html", "png"), progress: bool = True) -> Path:
    """Run analysis `name` on `model` (and `compare`) → one analysis run folder `out`: config.json, result.json
    (+ tensors.safetensors), metrics.json (its headline numbers, if any) and figures/*.<format>."""

    name = analysis_key(name)  # recorded in the one spelling, whichever the command line used
    mod, plots = get_analysis(name)
    try:
        spec = mod.Spec(**params)
    except ValidationError as e:
        err = e.errors()[0]
        raise ValueError(f"bad parameter for analysis {name!r}: {err['loc']}: {err['msg']}; "
                         f"it accepts: {', '.join(mod.Spec.model_fields)}") from None
    cfg = {"analysis": name, "params": spec.model_dump(), "model": model_ref(model),
           "compare": model_ref(compare) if compare else None}
    begin_step(seed)
    with RunWriter(out.parent, "analysis", name, cfg, seed=seed, final=out) as run:
        ctx = AnalysisContext(model=model, compare=compare, seed=seed, progress=progress)
        result = mod.run(ctx, spec)
        result.save(run.path)
        headline = getattr(result, "headline", None)
        run.write_metrics(headline() if callable(headline) else {})
        export_all(plots.figures(result), run.path / "figures", formats)
    return run.final_path


def evaluate_validation(model: str, out: str | Path, preset_name: str, seed: int = 0, eval_spec: EvalSpec | None = None,
                        progress: bool = True, fa_unseen_by: Collection[str] | None = None) -> Path:
    """Evaluate a model on the validation split (harmful and benign prompts of `validation_sets`) into an eval run
    named `<model>-validation` under `out`: for choosing hyperparameters, never the reported test sets. No FA,
    unless `fa_unseen_by` gives the uids of the samples the model was fine-tuned on: then FA on the task's
    validation prompts that model never saw (`validation_task_set`). `eval_spec` gives sizes and generation
    (default: the preset's validation sizes). Returns the run folder."""

    spec = eval_spec if eval_spec is not None else preset(preset_name, seed).validation
    harmful, benign = validation_sets(preset_name, seed, spec.n_harmful, spec.n_benign)
    task = None
    if fa_unseen_by is None or not spec.task:
        spec = spec.model_copy(update={"n_task": 0})
    else:
        task = validation_task_set(preset_name, seed, spec.task, spec.n_task, fa_unseen_by)
    return evaluate_model(model, out, seed, spec, harmful=harmful, task=task,
                          name=Path(str(model)).name.replace("_", "-") + "-validation", progress=progress,
                          benign=benign, sets=f"validation split (preset {preset_name}, seed {seed})")
