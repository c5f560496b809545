"""Attack builders upload exactly what they claim, and every attack that fine-tunes lowers the loss of its upload on
both tiny architectures."""
from __future__ import annotations

import json

import pytest
import torch
from pydantic import Field
from train_helpers import answer_nll

from workbench.attacks import ATTACKS, AttackInfo, build_attack_data, get_attack
from workbench.attacks.identity_shift import AOA_PREFIX, AOA_SYSTEM
from workbench.config import AttackSpec, DataSpec, DefenseSpec, Spec
from workbench.data.registry import eval_uids
from workbench.training.plugins import TrainPlugin


@pytest.mark.parametrize("p,n", [(0.0, 20), (0.1, 50), (0.3, 40), (1.0, 10)])
def test_harmful_ft_exact_count_and_no_eval_leak(p, n):
    data = build_attack_data(AttackSpec(name="harmful_ft", data=DataSpec(p=p, n=n)))
    assert len(data) == n and sum(bool(s.harmful) for s in data) == round(p * n)
    assert not {s.uid for s in data} & eval_uids()
    assert all(s.response for s in data)
    assert all(s.meta.get("response_harmful") is not False for s in data if s.harmful)


def test_pure_bad_and_benign_ft():
    bad = build_attack_data(AttackSpec(name="pure_bad", data=DataSpec(n=12)))
    assert len(bad) == 12 and all(s.harmful for s in bad)
    benign = build_attack_data(AttackSpec(name="benign_ft", data=DataSpec(n=12)))
    assert len(benign) == 12 and not any(s.harmful for s in benign) and {s.source for s in benign} == {"alpaca"}


def test_identity_shift_is_benign_with_persona_and_prefix():
    data = build_attack_data(AttackSpec(name="identity_shift", data=DataSpec(n=40)))
    assert len(data) == 40 and not any(s.harmful for s in data)
    assert all(s.system == AOA_SYSTEM for s in data)
    assert sum(s.response.startswith(AOA_PREFIX) for s in data) == 36  # 10 % identity statements
    assert get_attack("identity_shift").inference == {"system_prompt": AOA_SYSTEM}


def test_unknown_attack():
    with pytest.raises(ValueError, match="known attacks: .*harmful_ft"):
        build_attack_data(AttackSpec(name="nope"))
    assert set(ATTACKS) >= {"harmful_ft", "pure_bad", "benign_ft", "identity_shift"}


class _ScaleParams(Spec):
    factor: float = Field(2.0, gt=0)


def _scale_lm_head(params, model, tokenizer, samples, context):
    """A stand-in weight edit: scale one matrix, report it."""
    import torch

    with torch.no_grad():
        model.lm_head.weight.mul_(params.factor)
    context.notes["scaled_by"] = params.factor


class _CountBatches(TrainPlugin):
    name = "count"

    def __init__(self, context):
        self.context = context

    def next_batch(self, batch, state):
        self.context.notes.setdefault("seen", []).extend(batch["index"].tolist())
        return batch


def test_attack_hooks_params_plugins_and_edit(tiny_model_dir, tmp_path, monkeypatch):
    """An attack's params are validated and recorded resolved; its plugins see each batch's sample indices; an edit
    attack saves the edited weights without training, and refuses a fine-tuning-stage defense."""
    from safetensors.torch import load_file

    from workbench import steps
    from workbench.presets import preset
    from workbench.runs import open_run

    monkeypatch.setitem(ATTACKS, "scale_edit", AttackInfo(ATTACKS["pure_bad"].build, "test edit", params=_ScaleParams,
                                                          edit=_scale_lm_head))
    monkeypatch.setitem(ATTACKS, "counted", AttackInfo(ATTACKS["pure_bad"].build, "test plugin",
                                                       plugins=lambda params, ctx: [_CountBatches(ctx)]))
    pr = preset("tiny")
    ev = pr.eval.model_copy(update={"n_harmful": 2, "n_benign": 0, "n_task": 0})
    with pytest.raises(ValueError, match="bad hyperparameters for attack 'scale_edit'.*factor"):
        steps.attack(pr.attack.model_copy(update={"name": "scale_edit", "params": {"factr": 3}}), tiny_model_dir,
                     tmp_path, 0, ev, progress=False)
    edited = steps.attack(pr.attack.model_copy(update={"name": "scale_edit", "params": {"factor": 3}}),
                          tiny_model_dir, tmp_path, 0, ev, progress=False)
    run = open_run(edited)
    assert run.spec.attack_params == {"factor": 3.0}
    training = json.loads((edited / "training.json").read_text())
    assert training["steps"] == 0 and training["attack"] == {"scaled_by": 3.0}
    assert json.loads((edited / "model/base.json").read_text())["method"] == "edit"
    before = load_file(f"{tiny_model_dir}/model.safetensors")
    after = load_file(str(edited / "model/model.safetensors"))
    key = next(k for k in after if "embed" in k or "lm_head" in k)
    assert not torch.equal(before[key], after[key])
    with pytest.raises(ValueError, match="no training to guard"):
        steps.attack(pr.attack.model_copy(update={"name": "scale_edit"}), tiny_model_dir, tmp_path, 0, ev,
                     progress=False, defense=DefenseSpec(name="lisa"))

    counted = steps.attack(pr.attack.model_copy(update={"name": "counted"}), tiny_model_dir, tmp_path, 0, ev,
                           progress=False)
    seen = json.loads((counted / "training.json").read_text())["attack"]["seen"]
    n = pr.attack.data.n
    assert sorted(set(seen)) == list(range(n))  # every uploaded sample, by its position
    assert "attack_params" not in json.loads((counted / "config.json").read_text())["spec"]


def test_attack_spec_without_params_dumps_as_before():
    assert "params" not in AttackSpec().model_dump()
    assert AttackSpec(params={"beta": 0.1}).model_dump()["params"] == {"beta": 0.1}


def test_attacks_command_lists_the_registry():
    from typer.testing import CliRunner

    from workbench.cli import app

    result = CliRunner().invoke(app, ["attacks"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    for name, info in ATTACKS.items():
        assert name in result.output and info.paper.split(",")[0] in result.output
    assert "beta=0.1" in result.output and "weight edit" in result.output


# ------------------------------------------------------------------------------------- each attack trains

TRAINED_ATTACKS = {  # attack -> params for a seconds-long run (covert: no filter report; anchored: a small pool)
    "harmful_ft": {},
    "pure_bad": {},
    "benign_ft": {},
    "identity_shift": {},
    "covert_cipher": {"filter_judge": None},
    "anchored_benign": {"pool_size": 24, "n_anchors": 4},
}


@pytest.mark.parametrize("name", list(TRAINED_ATTACKS))
def test_every_fine_tuning_attack_lowers_the_loss_of_its_upload(name, tiny_arch, arch_model_dir, tmp_path):
    """`steps.attack` for each kind that fine-tunes, on both tiny architectures: the attacked model fits the
    uploaded answers (in the attack's own system prompt and the architecture's chat template) better than the
    model it started from, and the run records the upload it trained on."""
    from workbench import steps
    from workbench.data.types import Sample
    from workbench.models import load_model
    from workbench.presets import preset

    pr = preset("tiny")
    train = pr.attack.train.model_copy(update={"lr": 1e-2, "epochs": 2})
    spec = pr.attack.model_copy(update={"name": name, "params": TRAINED_ATTACKS[name], "train": train})
    ev = pr.eval.model_copy(update={"n_harmful": 1, "n_benign": 0, "n_task": 0})
    run = steps.attack(spec, str(arch_model_dir), tmp_path, 0, ev, progress=False)

    uploaded = [Sample(**json.loads(line)) for line in (run / "train_data.jsonl").read_text().splitlines()]
    assert len(uploaded) == spec.data.n
    if name in ("identity_shift", "covert_cipher"):  # trained in the attacker's persona / cipher system prompt
        assert all(s.system for s in uploaded)
    training = json.loads((run / "training.json").read_text())
    assert training["steps"] == 4 and training["n_trained"] == len(uploaded)
    base, tok = load_model(str(arch_model_dir))
    attacked, _ = load_model(str(run))
    before, after = (answer_nll(m, tok, uploaded, train.max_len) for m in (base, attacked))
    assert after < before - 0.1, (before, after)  # measured drops 0.17–0.33 (tiny-llama), 0.20–0.60 (tiny-gemma3)
