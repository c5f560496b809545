"""Steps: align, attack, eval. Each reads models/data from registries and writes one run folder.

A training step's run folder holds the trained model (merged safetensors), its training curve, the exact
training data it saw (`train_data.jsonl`, with the harmful flag), and the evaluation of the result.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from workbench.config import AlignSpec, AttackSpec, DefenseSpec, EvalSpec, TrainSpec
from workbench.data.types import Sample
from workbench.evaluation.harness import evaluate
from workbench.runs import RunWriter
from workbench.training.loop import train


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def model_ref(name_or_path: str) -> str:
    """How a base model is recorded: registered names as is, folders as absolute paths."""
    p = Path(name_or_path)
    return str(p.resolve()) if p.exists() else name_or_path


def _train_and_eval(kind: str, name: str, base: str, samples: list[Sample], train_spec: TrainSpec,
                    eval_spec: EvalSpec, spec: dict, out: str | Path, seed: int, plugins: list = (),
                    resume: bool = False, progress: bool = True, notes: dict | None = None) -> Path:
    from workbench.models import load_model, save_model

    seed_everything(seed)
    model, tok = load_model(base)
    with RunWriter(out, kind, name, spec, seed=seed, resume=resume) as run:
        run.write_samples_file("train_data.jsonl", [s.to_dict() for s in samples])
        result = train(model, tok, samples, train_spec, list(plugins), checkpoint_dir=run.checkpoint_dir,
                       progress=progress, desc=f"{kind} {name}")
        save_model(result.model, tok, run.path / "model")
        run.write_json("model/base.json", {"base": model_ref(base), "method": train_spec.method})
        run.write_json("training.json", {**result.summary, "losses": result.state.losses, **(notes or {})})
        ev = evaluate(result.model, tok, eval_spec, progress=progress, label=name)
        run.write_metrics({**ev.metrics, "train": result.summary})
        run.write_samples(ev.samples)
    return run.final_path


def align(spec: AlignSpec, model: str, out: str | Path, seed: int = 0, eval_spec: EvalSpec = EvalSpec(),
          resume: bool = False, progress: bool = True) -> Path:
    from workbench.defenses import get_defense, parse_params
    from workbench.defenses.alignment.data import REFUSAL_SOURCE, alignment_samples

    info = get_defense(spec.defense.name, "alignment")
    params = parse_params(info, spec.defense.params)
    samples = alignment_samples(spec, seed)
    plugins = info.plugins(params, {"samples": samples, "model": model, "seed": seed, "train": spec.train})
    full = {"align": spec.model_dump(), "eval": eval_spec.model_dump(), "model": model_ref(model),
            "refusals": REFUSAL_SOURCE, "defense_params": params.model_dump()}  # resolved defaults too
    return _train_and_eval("align", spec.defense.name, model, samples, spec.train, eval_spec, full, out, seed,
                           plugins, resume, progress)


def attack(spec: AttackSpec, model: str, out: str | Path, seed: int = 0, eval_spec: EvalSpec = EvalSpec(),
           resume: bool = False, progress: bool = True, defense: DefenseSpec | None = None) -> Path:
    """Fine-tune on the attacker's data; with a fine-tuning-stage `defense` the provider defends (kind "defend")."""
    from workbench.attacks import build_attack_data, get_attack

    samples = build_attack_data(spec)
    if get_attack(spec.name).inference:  # the attacker queries with their persona system prompt
        gen = eval_spec.generation.model_copy(update=get_attack(spec.name).inference)
        eval_spec = eval_spec.model_copy(update={"generation": gen})
    name = f"{spec.name}-p{spec.data.p:g}-n{spec.data.n}" if spec.name == "harmful_ft" else f"{spec.name}-n{spec.data.n}"
    notes: dict = {"n_harmful_uploaded": sum(bool(s.harmful) for s in samples), "n_uploaded": len(samples)}
    plugins: list = []
    kind, resolved = "attack", None
    if defense is not None and defense.name not in ("none", ""):
        from workbench.defenses import get_defense, parse_params

        info = get_defense(defense.name, "finetune")
        params = parse_params(info, defense.params)
        resolved = params.model_dump()
        context = {"samples": samples, "model": model, "seed": seed, "train": spec.train, "notes": {}}
        if info.data is not None:
            samples = info.data(params, samples, context)
            context["samples"] = samples
        plugins = info.plugins(params, context)
        if info.inference is not None:
            gen = eval_spec.generation.model_copy(update=info.inference(params))
            eval_spec = eval_spec.model_copy(update={"generation": gen})
        notes.update(context["notes"])
        kind, name = "defend", f"{defense.name}-{name}"
    notes.update(n_harmful_trained=sum(bool(s.harmful) and not s.meta.get("safety_example") for s in samples),
                 n_safety_examples=sum(bool(s.meta.get("safety_example")) for s in samples), n_trained=len(samples))
    full = {"attack": spec.model_dump(), "eval": eval_spec.model_dump(), "model": model_ref(model),
            "defense": defense.model_dump() if defense else None,
            "defense_params": resolved}
    return _train_and_eval(kind, name, model, samples, spec.train, eval_spec, full, out, seed, plugins,
                           resume, progress, notes=notes)


def evaluate_model(model: str, out: str | Path, seed: int = 0, eval_spec: EvalSpec = EvalSpec(),
                   harmful: list[Sample] | None = None, name: str | None = None, progress: bool = True) -> Path:
    from workbench.models import load_model

    seed_everything(seed)
    m, tok = load_model(model)
    full = {"eval": eval_spec.model_dump(), "model": model_ref(model),
            "harmful_prompts": "custom" if harmful is not None else "advbench eval split"}
    name = name or Path(str(model)).name.replace("_", "-")
    with RunWriter(out, "eval", name, full, seed=seed) as run:
        ev = evaluate(m, tok, eval_spec, harmful=harmful, progress=progress, label=name)
        run.write_metrics(ev.metrics)
        run.write_samples(ev.samples)
    return run.final_path
