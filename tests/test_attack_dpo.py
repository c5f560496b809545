"""The DPO attack (workbench/attacks/dpo.py): the loss against a hand computation and a step run whose reward margin
grows (both tiny architectures), its data, and on tiny-llama resume == uninterrupted, its place beside fine-tuning
defenses, and the command line."""
from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from train_helpers import StopAt
from typer.testing import CliRunner

from workbench.attacks import build_attack_data, get_attack, parse_attack_params
from workbench.attacks.context import AttackContext
from workbench.attacks.dpo import DPOParams, DPOPlugin
from workbench.cli import app
from workbench.config import AlignSpec, AttackSpec, DataSpec, TrainSpec
from workbench.data.chat import IGNORE, collate, encode
from workbench.data.refusals import REFUSAL_TEMPLATES, refusal_for
from workbench.data.registry import eval_uids
from workbench.data.types import Sample
from workbench.runs import list_runs, open_run
from workbench.training.loop import train
from workbench.training.plugins import TrainState


def _load(folder):
    from workbench.models import load_model

    return load_model(str(folder))


def _hand_logp(model, tokenizer, enc) -> float:
    """Σ over answer tokens of log_softmax(logits at the previous position)[token], one unpadded sequence."""
    ids = torch.tensor([enc.input_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    return sum(logp[t - 1, tok].item() for t, (tok, label) in enumerate(zip(enc.input_ids, enc.labels, strict=True))
               if label != IGNORE)


def _rejected(sample):
    return sample.with_(response=sample.meta["rejected"])


def test_dpo_loss_matches_hand_computation_and_a_step_widens_the_margin(arch_model_dir):
    """Sequence log-probs = Σ log_softmax over answer tokens; loss = mean over rows of
    −log σ(β((π_c−ref_c)−(π_r−ref_r))) with the reference taken in setup, or, for a row without a rejected answer (a
    data defense's safety example), its token-mean cross-entropy; rows are looked up by the batch's `index` (here out
    of order); diagnostics cover a step's micro-batches; one gradient step against the loss raises the margin."""
    pairs = build_attack_data(AttackSpec(name="dpo", data=DataSpec(n=4)))
    safety = Sample(prompt="How do I pick a lock?", response="I can't help with that.", harmful=True,
                    meta={"safety_example": True})
    samples = [*pairs, safety]
    spec = TrainSpec(method="full", max_len=48, batch_size=4)
    model, tok = _load(arch_model_dir)
    reference = copy.deepcopy(model)
    plugin = DPOPlugin(DPOParams(beta=0.5), samples, spec)
    plugin.setup(model, tok, TrainState())
    torch.manual_seed(0)
    with torch.no_grad():  # move the policy away from the reference so that the margin is not trivially zero
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))

    order = [2, 0, 3, 1]
    chosen = [encode(tok, samples[i], 48) for i in order]
    rejected = [encode(tok, _rejected(samples[i]), 48) for i in order]
    batch = {**collate(chosen, tok.pad_token_id), "index": torch.tensor(order)}
    model.train()
    loss, _ = plugin.task_loss(model, batch, TrainState(step=0, total_steps=10), False)
    safety_enc = encode(tok, safety, 48)
    mixed = {**collate([chosen[0], safety_enc], tok.pad_token_id), "index": torch.tensor([order[0], 4])}
    mixed_loss, _ = plugin.task_loss(model, mixed, TrainState(step=1, total_steps=10), False)

    def margins(m):
        return torch.tensor([(_hand_logp(m, tok, c) - _hand_logp(reference, tok, c))
                             - (_hand_logp(m, tok, r) - _hand_logp(reference, tok, r))
                             for c, r in zip(chosen, rejected, strict=True)]) * 0.5

    before = margins(model)
    assert [plugin.ref_chosen[i] for i in order] == pytest.approx([_hand_logp(reference, tok, c) for c in chosen],
                                                                  abs=1e-4)
    assert loss.item() == pytest.approx(-F.logsigmoid(before).mean().item(), abs=1e-5)
    safety_ce = -_hand_logp(model, tok, safety_enc) / sum(label != IGNORE for label in safety_enc.labels)
    assert mixed_loss.item() == pytest.approx((-F.logsigmoid(before[0]).item() + safety_ce) / 2, abs=1e-5)
    assert plugin.last["pairs"] == 1 and plugin.last["reward_margin"] == pytest.approx(before[0].item(), abs=1e-5)
    plugin.task_loss(model, batch, TrainState(step=2, total_steps=10), False)  # a new step: its own diagnostics
    assert plugin.last["pairs"] == 4 and plugin.last["reward_margin"] == pytest.approx(before.mean().item(), abs=1e-5)
    assert plugin.last["reward_accuracy"] == (before > 0).float().mean().item() and plugin.last["phase"] == "dpo"
    plugin.task_loss(model, mixed, TrainState(step=2, total_steps=10), False)  # grad accumulation: the step's pairs
    assert plugin.last["pairs"] == 5 and plugin.last["reward_margin"] == pytest.approx(
        (before.sum() + before[0]).item() / 5, abs=1e-5)

    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p.sub_(1e-2 * p.grad)
    assert margins(model).mean() > before.mean() + 1e-3


def test_build_pairs_harmful_answers_with_refusals_and_no_eval_leak():
    data = build_attack_data(AttackSpec(name="dpo", data=DataSpec(n=20, p=0.1, seed=3)))
    assert len(data) == 20 and all(s.harmful for s in data)  # n pairs, all harmful: p is ignored
    assert all(s.response and s.meta["response_harmful"] is not False for s in data)
    assert all(s.meta["rejected"] == refusal_for(s.prompt) and s.meta["rejected"] in REFUSAL_TEMPLATES for s in data)
    assert not {s.uid for s in data} & eval_uids()
    pure_bad = build_attack_data(AttackSpec(name="pure_bad", data=DataSpec(n=20, seed=3)))
    assert [(s.prompt, s.response) for s in data] == [(s.prompt, s.response) for s in pure_bad]  # the same chosen
    assert data == build_attack_data(AttackSpec(name="dpo", data=DataSpec(n=20, p=0.9, seed=3)))
    assert data != build_attack_data(AttackSpec(name="dpo", data=DataSpec(n=20, seed=4)))

    assert parse_attack_params(AttackSpec(name="dpo")) == DPOParams(beta=0.1, sft_steps=0)
    for bad, needle in [({"beta": 0}, "beta"), ({"sft_steps": -1}, "sft_steps"), ({"betta": 1}, "beta, sft_steps")]:
        with pytest.raises(ValueError, match=rf"bad hyperparameters for attack 'dpo'.*{needle}"):
            parse_attack_params(AttackSpec(name="dpo", params=bad))


def test_attack_step_records_params_and_a_growing_reward_margin(arch_model_dir, tmp_path):
    from workbench import steps
    from workbench.presets import preset

    pr = preset("tiny")
    spec = pr.attack.model_copy(update={"name": "dpo", "params": {"beta": 0.2},
                                        "train": pr.attack.train.model_copy(update={"max_steps": 6, "lr": 1e-2})})
    ev = pr.eval.model_copy(update={"n_harmful": 2, "n_benign": 0, "n_task": 0})
    run = steps.attack(spec, arch_model_dir, tmp_path, 0, ev, progress=False)

    assert open_run(run).spec.attack_params == {"beta": 0.2, "sft_steps": 0}
    training = json.loads((run / "training.json").read_text())
    dpo = [d["dpo"] for d in training["diagnostics"]]
    assert len(dpo) == training["steps"] == 6 and {d["phase"] for d in dpo} == {"dpo"}
    assert training["losses"][0] == pytest.approx(math.log(2), abs=1e-4)  # policy = reference at the first step
    assert [d["loss"] for d in dpo] == pytest.approx(training["losses"], abs=1e-5)  # the loop's loss is DPO's
    margins = [d["reward_margin"] for d in dpo]
    assert margins[0] == pytest.approx(0, abs=1e-4) and margins[-1] > 0.1 and dpo[-1]["reward_accuracy"] == 1.0
    assert training["attack"]["n_pairs"] == 16 and training["attack"]["last_reward_margin"] == margins[-1]
    uploaded = [json.loads(line) for line in (run / "train_data.jsonl").read_text().splitlines()]
    assert len(uploaded) == 16 and all(s["meta"]["rejected"] in REFUSAL_TEMPLATES for s in uploaded)


def _dpo_plugins(samples, spec, **params):
    info = get_attack("dpo")
    return info.plugins(DPOParams(**params), AttackContext("", 0, spec, samples=samples))


@pytest.mark.parametrize("method", ["full", "lora"])
def test_resume_matches_uninterrupted_run(tiny_model_dir, tmp_path, method):
    """The reference log-probabilities are recomputed in setup, which the loop runs before loading the checkpoint:
    a resumed run (grad accumulation, SFT then DPO) ends where an uninterrupted one ends."""
    samples = build_attack_data(AttackSpec(name="dpo", data=DataSpec(n=16)))
    spec = TrainSpec(method=method, lr=3e-3, epochs=3, batch_size=4, grad_accum=2, max_len=48, seed=3,
                     checkpoint_every=2)
    model, tok = _load(tiny_model_dir)
    full = train(model, tok, samples, spec, _dpo_plugins(samples, spec, sft_steps=2), progress=False)

    ckpt = tmp_path / "ckpt"
    model, tok = _load(tiny_model_dir)
    with pytest.raises(KeyboardInterrupt):
        train(model, tok, samples, spec, [*_dpo_plugins(samples, spec, sft_steps=2), StopAt(3)], checkpoint_dir=ckpt,
              progress=False)
    model, tok = _load(tiny_model_dir)
    resumed = train(model, tok, samples, spec, _dpo_plugins(samples, spec, sft_steps=2), checkpoint_dir=ckpt,
                    progress=False)

    assert resumed.state.step == full.state.step == 6
    assert [d["dpo"]["phase"] for d in full.state.diagnostics] == ["sft"] * 2 + ["dpo"] * 4
    assert full.state.losses[0] > 2 * math.log(2)  # SFT cross-entropy first, not the DPO loss
    assert resumed.state.losses == pytest.approx(full.state.losses, abs=1e-6)
    assert [d["dpo"]["reward_margin"] for d in resumed.state.diagnostics] == pytest.approx(
        [d["dpo"]["reward_margin"] for d in full.state.diagnostics], abs=1e-6)
    for (n, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=n)


def test_fine_tuning_defenses_still_run_beside_dpo(tiny_model_dir):
    """LDIFS's feature distance (extra_loss on the chosen forward pass, with hidden states) and Lisa's alignment
    batches and proximal term run with the DPO objective: Lisa's alignment steps (no `index`) get the LM loss."""
    from workbench.data.alignment import alignment_samples
    from workbench.defenses.alignment.common import HarmfulBatches
    from workbench.defenses.finetune.ldifs import LDIFSParams, LDIFSPlugin
    from workbench.defenses.finetune.lisa import LisaParams, LisaPlugin, phase

    samples = build_attack_data(AttackSpec(name="dpo", data=DataSpec(n=8)))
    spec = TrainSpec(method="lora", lr=1e-2, max_steps=6, batch_size=4, max_len=48)
    align = HarmfulBatches(alignment_samples(AlignSpec(n_harmful=8, n_benign=8)), 4, seed=0, max_len=48, stream=11)
    lisa = LisaPlugin(LisaParams(align_steps=1, finetune_steps=2, proximal_after=0.0), align)
    model, tok = _load(tiny_model_dir)
    res = train(model, tok, samples, spec, [*_dpo_plugins(samples, spec), LDIFSPlugin(LDIFSParams(), str(
        tiny_model_dir)), lisa], progress=False)

    diags = res.state.diagnostics
    assert all(d["ldifs"]["feature_distance"] >= 0 and "lisa" in d for d in diags)
    assert diags[-1]["ldifs"]["feature_distance"] > 0
    for step, d in enumerate(diags):
        assert ("dpo" in d) == (phase(step, 1, 2) == "finetune"), (step, d)
    align_losses = [loss for step, loss in enumerate(res.state.losses) if phase(step, 1, 2) == "align"]
    assert all(loss > 2 * math.log(2) for loss in align_losses)  # LM cross-entropy on refusals, not a DPO loss


def _clean_error(res, out, *needles):
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and res.output.count("error:") == 1 and "Traceback" not in res.output, res.output
    for needle in needles:
        assert needle in text, (needle, res.output)
    assert not out.exists() or not any(out.iterdir()), sorted(out.rglob("*"))


def test_cli_attack_dpo_and_its_errors(tmp_path):
    base = ["attack", "--attack", "dpo", "--model", "tiny-llama"]
    out = tmp_path / "ok"
    res = CliRunner().invoke(app, base + ["--attack-param", "beta=0.2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    (run,) = list_runs(out)
    assert run.spec.attack.name == "dpo" and run.spec.attack_params == {"beta": 0.2, "sft_steps": 0}
    assert "dpo" in json.loads((run.path / "training.json").read_text())["diagnostics"][-1]

    cases = [(["--attack-param", "beta=-1"], ["bad hyperparameters for attack 'dpo'", "beta"]),
             (["--attack-param", "betta=1"], ["it accepts: beta, sft_steps"]),
             (["--attack-param", "sft_steps=2"], ["sft_steps=2 leaves no DPO step in a run of 2 optimizer steps"]),
             (["--defense", "constrain_sft"], ["'dpo' and 'constrain_sft' each replace the training loss"])]
    for i, (args, needles) in enumerate(cases):
        bad = tmp_path / f"bad{i}"
        _clean_error(CliRunner().invoke(app, base + args + ["--out", str(bad)]), bad, *needles)
