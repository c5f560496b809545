"""The one training loop: answer-only loss, loss goes down (full and LoRA), resume == uninterrupted."""
from __future__ import annotations

import pytest
import torch
from train_helpers import StopAt

from workbench.config import TrainSpec
from workbench.data.chat import IGNORE, bucketed_batches, encode
from workbench.data.types import Sample
from workbench.training.loop import train
from workbench.training.plugins import TrainPlugin

SAMPLES = [Sample(prompt=f"Say the word number {i}.", response=f"Word {i} is {'apple banana cherry'.split()[i % 3]}.")
           for i in range(24)]


@pytest.fixture
def fresh(tiny_model_dir):
    from workbench.models import load_model

    return load_model(str(tiny_model_dir))


def test_loss_mask_covers_exactly_the_answer_and_end_token(fresh):
    _, tok = fresh
    s = Sample(prompt="What is 2+2?", response="Four.")
    enc = encode(tok, s, max_len=256)
    answer = tok("Four.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    trained = [t for t, label in zip(enc.input_ids, enc.labels, strict=False) if label != IGNORE]
    assert trained == answer
    assert enc.labels[-len(answer):] == answer
    assert all(label == IGNORE for label in enc.labels[:-len(answer)])


def test_truncation_keeps_prompt_and_cuts_answer(fresh):
    _, tok = fresh
    from workbench.data.chat import prompt_ids

    p = prompt_ids(tok, "Hi")
    enc = encode(tok, Sample(prompt="Hi", response="word " * 200), max_len=len(p) + 20)
    assert enc.input_ids[: len(p)] == p  # the whole prompt survives
    assert sum(label != IGNORE for label in enc.labels) == 20  # the answer is cut to fit
    long = encode(tok, Sample(prompt="long " * 300, response="ok " * 50), max_len=64)
    assert len(long) == 64 and sum(label != IGNORE for label in long.labels) >= 8


def test_bucketed_batches_cover_every_index_once_and_are_seeded():
    lengths = [5, 49, 7, 47, 6, 48, 8, 46]
    a = bucketed_batches(lengths, 2, seed=1)
    assert sorted(i for b in a for i in b) == list(range(8))
    assert a == bucketed_batches(lengths, 2, seed=1)
    assert a != bucketed_batches(lengths, 2, seed=2)
    # within a bucket window, batches pair similar lengths
    assert all(abs(lengths[b[0]] - lengths[b[-1]]) <= 3 for b in a)


ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# A random tiny model learns slowly through rank-8 adapters, hence the looser bound for LoRA.
@pytest.mark.parametrize("method,lr,bound", [("full", 3e-3, 0.7), ("lora", 1e-2, 0.9)])
def test_loss_decreases(fresh, method, lr, bound):
    model, tok = fresh
    spec = TrainSpec(method=method, lr=lr, epochs=6, batch_size=8, max_len=48, seed=0, lora_r=8,
                     lora_targets=ALL_LINEAR)
    res = train(model, tok, SAMPLES, spec, progress=False)
    losses = res.state.losses
    assert len(losses) == 18
    assert sum(losses[-3:]) / 3 < bound * sum(losses[:3]) / 3
    assert not any(p.requires_grad for p in res.model.parameters())
    assert type(res.model).__name__ == "LlamaForCausalLM"  # LoRA merged into a plain model


@pytest.mark.parametrize("method", ["full", "lora"])
def test_resume_matches_uninterrupted_run(tiny_model_dir, tmp_path, method):
    from workbench.models import load_model

    spec = TrainSpec(method=method, lr=3e-3, epochs=2, batch_size=4, grad_accum=2, max_len=48, seed=3,
                     checkpoint_every=2)
    m, tok = load_model(str(tiny_model_dir))
    full = train(m, tok, SAMPLES, spec, progress=False)

    ckpt = tmp_path / "ckpt"
    m, tok = load_model(str(tiny_model_dir))
    with pytest.raises(KeyboardInterrupt):
        train(m, tok, SAMPLES, spec, plugins=[StopAt(3)], checkpoint_dir=ckpt, progress=False)
    m, tok = load_model(str(tiny_model_dir))  # a fresh process would start from the base model again
    resumed = train(m, tok, SAMPLES, spec, checkpoint_dir=ckpt, progress=False)

    assert resumed.state.step == full.state.step == 6
    assert resumed.state.losses == pytest.approx(full.state.losses, abs=1e-6)
    for (n, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items(), strict=False):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=n)


def test_param_groups_plugin_freezes_left_out_parameters(fresh):
    model, tok = fresh
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    class OnlyLastLayer(TrainPlugin):
        def param_groups(self, named, lr):
            return [{"params": [p for n, p in named if ".layers.3." in n], "lr": lr}]

    res = train(model, tok, SAMPLES[:8], TrainSpec(method="full", lr=1e-2, epochs=1, batch_size=4, max_len=32),
                plugins=[OnlyLastLayer()], progress=False)
    after = dict(res.model.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all(".layers.3." in n for n in changed)


def test_empty_data_is_an_error(fresh):
    model, tok = fresh
    with pytest.raises(ValueError, match="empty"):
        train(model, tok, [], TrainSpec(), progress=False)
