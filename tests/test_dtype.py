"""Precision as a spec field (`workbench.precision`): the spec round-trips and float32 records keep their exact JSON;
"auto" resolves from the CPU flags it is given; bf16 training keeps float32 adapters over a bf16 base (and float32
weights under autocast for full fine-tuning) with a loss close to float32's; bf16 generation answers like float32;
the steps that must stay float32 do whatever the spec says; `--dtype` reaches the run record."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file
from typer.testing import CliRunner

from workbench.analysis import AnalysisContext, landscape
from workbench.analysis.safety_metric import batches_of, calibration_samples
from workbench.cli import app
from workbench.config import AttackSpec, EvalSpec, GenerationSpec, TrainSpec
from workbench.data.registry import load_split
from workbench.defenses.alignment.booster import BoosterPlugin
from workbench.defenses.alignment.t_vaccine import TVaccinePlugin
from workbench.defenses.alignment.vaccine import VaccineParams, VaccinePlugin
from workbench.generation import generate
from workbench.machine import cpu_flags
from workbench.models import load_model
from workbench.models.pruning import wanda_scores
from workbench.precision import cast_params, fp32_required, resolve_dtype
from workbench.runs import open_run, spec_hash
from workbench.training.loop import train
from workbench.training.plugins import TrainPlugin

RESULTS = Path(__file__).resolve().parents[1] / "results"
# bf16 keeps 8 significant bits: one rounding is ≤ 2⁻⁸ ≈ 0.4 % of a value. A loss over a few hundred tokens of a
# 4-layer model stays well within 1 % of float32's (measured: 2e-6 relative on tiny-llama, 1e-4 on tiny-gemma3).
LOSS_RTOL = 1e-2


# ------------------------------------------------------------------------------------------------ the spec

def test_dtype_round_trips_and_float32_is_not_written():
    train, gen = TrainSpec(dtype="bfloat16"), GenerationSpec(dtype="bfloat16")
    assert train.model_dump()["dtype"] == gen.model_dump()["dtype"] == "bfloat16"
    spec = AttackSpec(train=train)
    assert AttackSpec.model_validate(spec.model_dump()) == spec
    ev = EvalSpec(generation=gen)
    assert EvalSpec.model_validate(json.loads(json.dumps(ev.model_dump()))) == ev
    # float32 (the default) is not written: specs from before the field dump exactly as they did
    assert "dtype" not in TrainSpec().model_dump() and "dtype" not in GenerationSpec(dtype="float32").model_dump()
    assert TrainSpec.model_validate(TrainSpec(dtype="float32").model_dump()).dtype == "float32"
    with pytest.raises(ValidationError):  # a spec holds the resolved precision, never "auto"
        TrainSpec(dtype="auto")


# one archived run of each results/ folder written before `dtype` existed (tests/test_run_record.py reads them all);
# quickstart-dtype/ holds the bf16 runs of the equivalence table and gemma/ the bf16 Gemma quickstart, which record it
TRAINED_IN_BF16 = {"quickstart-dtype", "gemma"}
ARCHIVED = sorted({p.relative_to(RESULTS).parts[0]: p.parent for p in sorted(RESULTS.rglob("config.json"))
                   if "model" not in p.relative_to(RESULTS).parts
                   and p.relative_to(RESULTS).parts[0] not in TRAINED_IN_BF16}.values())


@pytest.mark.parametrize("folder", ARCHIVED, ids=lambda p: str(p.relative_to(RESULTS)))
def test_archived_configs_keep_their_json_and_hash(folder):
    raw = json.loads((folder / "config.json").read_text())
    run = open_run(folder)
    assert "dtype" not in json.dumps(raw["spec"])
    assert run.record.model_dump()["spec"] == raw["spec"]
    assert spec_hash({"spec": run.spec.model_dump(), "seed": run.seed}) == spec_hash({"spec": raw["spec"],
                                                                                      "seed": raw["seed"]})


CPUINFO = "model name\t: Some Xeon\nflags\t\t: fpu sse2 avx2 fma avx512f {extra}\n"


@pytest.mark.parametrize(("extra", "expected"), [
    ("amx_tile amx_bf16", "bfloat16"), ("avx512_bf16", "bfloat16"), ("", "float32"), ("avx512_vnni", "float32")])
def test_auto_resolves_from_the_cpu_flags_given(extra, expected):
    flags = cpu_flags(CPUINFO.format(extra=extra))
    assert resolve_dtype("auto", flags=flags) == expected
    assert resolve_dtype("bfloat16", flags=flags) == "bfloat16" and resolve_dtype("float32", flags=flags) == "float32"


def test_resolve_dtype_defaults_and_errors():
    assert resolve_dtype(None) == "float32"
    assert resolve_dtype("auto") in ("float32", "bfloat16")  # this machine's: whichever, never "auto"
    with pytest.raises(ValueError, match="float32, bfloat16, auto"):
        resolve_dtype("float16")


# ------------------------------------------------------------------------------------------------ training

class Inspect(TrainPlugin):
    """Records the dtypes of the trainable and the frozen parameters, and AdamW's state, at the end of each step."""

    name = "inspect"

    def __init__(self):
        self.seen: dict = {}

    def on_step_end(self, model, state):
        params = list(model.named_parameters())
        self.seen = {"trainable": {p.dtype for _, p in params if p.requires_grad},
                     "frozen": {p.dtype for _, p in params if not p.requires_grad},
                     "lora_names": {n for n, p in params if p.requires_grad}}


def _samples():
    return load_split("sst2", "train")[:16]


def _train(model_dir, method: str, dtype: str, plugins=()):
    model, tok = load_model(model_dir)
    spec = TrainSpec(method=method, max_steps=2, batch_size=8, max_len=64, lr=1e-3, dtype=dtype)
    return train(model, tok, _samples(), spec, list(plugins), progress=False)


def test_bf16_lora_keeps_fp32_adapters_on_a_bf16_base_and_the_loss(arch_model_dir):
    inspect = Inspect()
    bf16 = _train(arch_model_dir, "lora", "bfloat16", [inspect])
    fp32 = _train(arch_model_dir, "lora", "float32")
    assert inspect.seen["trainable"] == {torch.float32} and inspect.seen["frozen"] == {torch.bfloat16}
    assert all("lora_" in n for n in inspect.seen["lora_names"])
    assert bf16.state.dtype == "bfloat16" and bf16.summary["dtype"] == "bfloat16" and fp32.state.dtype == "float32"
    # the first loss is the same batch at the same (seeded) starting point: only the base's precision differs
    assert bf16.state.losses[0] == pytest.approx(fp32.state.losses[0], rel=LOSS_RTOL)
    assert bf16.state.losses[0] != fp32.state.losses[0]  # it did run in bf16
    # merged on the float32 base: unadapted weights are the originals bit for bit, everything float32
    original, _ = load_model(arch_model_dir)
    merged = dict(bf16.model.named_parameters())
    assert {p.dtype for p in merged.values()} == {torch.float32}
    untouched = [n for n in merged if "mlp" in n or "norm" in n]
    assert untouched and all(torch.equal(merged[n], dict(original.named_parameters())[n]) for n in untouched)


def test_bf16_full_fine_tuning_autocasts_with_fp32_weights(tiny_model_dir):
    inspect = Inspect()
    bf16 = _train(tiny_model_dir, "full", "bfloat16", [inspect])
    fp32 = _train(tiny_model_dir, "full", "float32")
    assert inspect.seen["trainable"] == {torch.float32} and inspect.seen["frozen"] == set()
    assert bf16.state.losses[0] == pytest.approx(fp32.state.losses[0], rel=LOSS_RTOL)
    assert bf16.state.losses[0] != fp32.state.losses[0]


def test_a_plugin_that_needs_fp32_trains_the_run_in_fp32(tiny_model_dir):
    """Vaccine (and Booster, T-Vaccine) declare `fp32_reason`: a bf16 spec then trains exactly as float32 does."""
    asked = _train(tiny_model_dir, "lora", "bfloat16", [VaccinePlugin(VaccineParams(rho=0.5))])
    fp32 = _train(tiny_model_dir, "lora", "float32", [VaccinePlugin(VaccineParams(rho=0.5))])
    assert asked.state.dtype == "float32" and asked.state.losses == fp32.state.losses
    assert BoosterPlugin.fp32_reason and TVaccinePlugin.fp32_reason and not TrainPlugin.fp32_reason


# ------------------------------------------------------------------------------------------------ generation

def test_bf16_generation_answers_like_fp32_and_leaves_the_model_as_it_was(arch_model_dir):
    model, tok = load_model(arch_model_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    prompts = [s.prompt for s in load_split("advbench", "eval")[:16]]
    spec = GenerationSpec(max_new_tokens=8, batch_size=8)
    fp32 = generate(model, tok, prompts, spec, progress=False)
    bf16 = generate(model, tok, prompts, spec.model_copy(update={"dtype": "bfloat16"}), progress=False)
    # random tiny models have near-tied logits, so an argmax may flip; most greedy answers agree (measured:
    # 16/16 on tiny-llama, 12/16 on tiny-gemma3)
    assert sum(a == b for a, b in zip(fp32, bf16, strict=True)) >= len(prompts) // 2
    assert all(p.dtype == torch.float32 and torch.equal(p, before[n]) for n, p in model.named_parameters())
    # the next-token logits differ by bf16 rounding only: within 5 % of their range
    ids = tok(prompts[:4], return_tensors="pt", padding=True)
    with torch.no_grad():
        ref = model(**ids).logits[:, -1]
        with cast_params(model.parameters(), torch.bfloat16):
            low = model(**ids).logits[:, -1].float()
    assert (low - ref).abs().max() <= 0.05 * (ref.max() - ref.min())


# ------------------------------------------------------------------------------------------------ stays fp32

def test_wanda_scores_are_computed_in_fp32_whatever_the_model_arrives_in(tiny_model_dir):
    low, tok = load_model(tiny_model_dir, dtype="bfloat16")
    rounded = fp32_required(load_model(tiny_model_dir, dtype="bfloat16")[0])  # the same weights, in float32
    batches = batches_of(tok, calibration_samples("utility", 4, 0), 32, 4)
    scores = wanda_scores(low, batches)
    assert {p.dtype for p in low.parameters()} == {torch.float32}  # upcast before scoring
    expected = wanda_scores(rounded, batches)
    assert scores.keys() == expected.keys() and all(torch.equal(scores[n], expected[n]) for n in scores)


def test_landscape_points_are_measured_in_fp32(tiny_model_dir):
    spec = landscape.Spec(slices=["1d"], n_points=3, n_prompts=4, metric="proxy", answers_kept=0)
    results = []
    for model in (load_model(tiny_model_dir, dtype="bfloat16"),
                  (fp32_required(load_model(tiny_model_dir, dtype="bfloat16")[0]), None)):
        ctx = AnalysisContext(model=str(tiny_model_dir), progress=False)
        ctx._cache["model"] = (model[0], load_model(tiny_model_dir)[1])
        results.append(landscape.run(ctx, spec))
        assert {p.dtype for p in model[0].parameters()} == {torch.float32}
    assert torch.equal(results[0].logodds_1d, results[1].logodds_1d)


# ------------------------------------------------------------------------------------------------ command line

def test_cli_dtype_reaches_the_record(tmp_path):
    res = CliRunner().invoke(app, ["attack", "--model", "tiny-llama", "--preset", "tiny", "--max-steps", "2",
                                   "--dtype", "bfloat16", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    run = open_run(next(p for p in tmp_path.iterdir() if p.name.startswith("attack-")))
    raw = json.loads((run.path / "config.json").read_text())
    assert raw["spec"]["attack"]["train"]["dtype"] == raw["spec"]["eval"]["generation"]["dtype"] == "bfloat16"
    assert json.loads((run.path / "training.json").read_text())["dtype"] == "bfloat16"
    # a repair evaluates as the attacked run did (bf16) unless --dtype says otherwise; Antidote's pruning is
    # computed in float32 either way, so both repaired models are the same weights
    repaired = {}
    for dtype in (None, "float32"):
        out = tmp_path / f"repair-{dtype}"
        res = CliRunner().invoke(app, ["repair", "--defense", "antidote", "--model", str(run.path), "--out", str(out)]
                                 + (["--dtype", dtype] if dtype else []))
        assert res.exit_code == 0, res.output
        (path,) = out.glob("repair-antidote-*")
        assert open_run(path).spec.eval.generation.dtype == (dtype or "bfloat16")
        repaired[dtype] = load_file(str(path / "model" / "model.safetensors"))
    assert all(torch.equal(t, repaired["float32"][n]) for n, t in repaired[None].items())
    # auto is recorded resolved: bfloat16 where this CPU multiplies it natively, else float32 (not written)
    res = CliRunner().invoke(app, ["eval", "--model", "tiny-llama", "--preset", "tiny", "--n-harmful", "2",
                                   "--n-benign", "2", "--n-task", "0", "--dtype", "auto", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    evaluated = open_run(next(p for p in tmp_path.iterdir() if p.name.startswith("eval-")))
    assert evaluated.spec.eval.generation.dtype == resolve_dtype("auto")
    bad = CliRunner().invoke(app, ["eval", "--model", "tiny-llama", "--dtype", "float16", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "unknown dtype 'float16'" in bad.output


def test_a_preset_in_bf16_sets_every_training_and_generation_spec():
    from workbench.presets import preset

    base = preset("tiny")
    assert base.in_precision(None) is base
    bf16 = base.in_precision("bfloat16")
    assert (bf16.align.train.dtype, bf16.attack.train.dtype) == ("bfloat16", "bfloat16")
    for spec in (bf16.eval, bf16.validation, bf16.quickstart):
        assert spec.generation.dtype == "bfloat16" and spec.n_harmful == base.eval.n_harmful
    assert base.align.train.dtype == "float32"  # the preset itself is not changed
    assert bf16.inside["screen_dtype"] == "bfloat16" and "screen_dtype" not in base.inside  # choice stays fp32's
    assert "screen_dtype" not in base.in_precision("float32").inside
    assert preset("tiny").in_precision("auto").align.train.dtype == resolve_dtype("auto")


def test_bf16_refusal_direction_selection_scores_like_fp32(arch_model_dir):
    """The selection ranks candidates by refusal-logit differences and filters them on next-token KL: in bf16 each
    score stays within 5 % of the fp32 scores' spread across candidates (measured: ≤ 1.4 %), each KL within 2 % of
    the filter's threshold, the same candidate is chosen here (on SmolLM2 a KL 2 % under the threshold crossed it:
    why bf16 stays opt-in), and the model is handed back as it was."""
    from workbench.analysis import common
    from workbench.analysis import refusal_direction as rd
    from workbench.models import boot_bridge

    model, tok = load_model(arch_model_dir)
    harmful, harmless = common.prompt_sets(8, "train", tok, 200)
    h, s = common.encode_prompts(tok, harmful), common.encode_prompts(tok, harmless)
    directions = rd.candidate_directions(boot_bridge(load_model(arch_model_dir)[0], tok), h, s, 2, 8)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    tokens = common.refusal_tokens(tok)
    fp32, bf16 = (rd.select_direction(model, directions, h, s, tokens,
                                      rd.Spec(positions=2, discard_last=0.0, dtype=dtype))
                  for dtype in ("float32", "bfloat16"))
    assert all(p.dtype == torch.float32 and torch.equal(p, before[n]) for n, p in model.named_parameters())
    for key in ("bypass", "induce"):
        ref, low = fp32[key], bf16[key]
        assert torch.equal(ref.isnan(), low.isnan()) and (~ref.isnan()).sum() >= 4
        values = ref[~ref.isnan()]
        assert (low - ref).nan_to_num().abs().max() <= 0.05 * (values.max() - values.min()), key
    assert (bf16["kl"] - fp32["kl"]).nan_to_num().abs().max() <= 0.02 * rd.Spec().kl_threshold
    assert bf16["selected"]["position_index"] == fp32["selected"]["position_index"]
    assert bf16["selected"]["layer"] == fp32["selected"]["layer"]


def test_auto_on_this_machine_needs_bf16_flags_and_a_faster_bf16_matmul(monkeypatch):
    """A bf16 flag without a faster bf16 matmul (an AVX512-BF16 Xeon without AMX measured 0.6×) stays float32."""
    import workbench.precision as precision

    monkeypatch.setattr(precision, "cpu_flags", lambda: ["avx2", "avx512_bf16"])
    monkeypatch.setattr(precision, "bf16_matmul_faster", lambda: False)
    assert precision.auto_dtype() == "float32"
    monkeypatch.setattr(precision, "bf16_matmul_faster", lambda: True)
    assert precision.auto_dtype() == "bfloat16"
    monkeypatch.setattr(precision, "cpu_flags", lambda: ["avx2"])
    assert precision.auto_dtype() == "float32"  # no bf16 unit: never measured
