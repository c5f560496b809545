"""The one training loop: answer-only loss, loss goes down (full and LoRA), resume == uninterrupted; and generation
(left-padded batches, stopping at the chat template's end of turn).

Tests that take `fresh`, `arch_model` or `arch_model_dir` run on both tiny architectures (tiny-llama with SmolLM2's
ChatML, tiny-gemma3 with Gemma's turn format, where the end of turn `<end_of_turn>` is not EOS); resume runs on both
too.
"""
from __future__ import annotations

import pytest
import torch
from train_helpers import StopAt

from workbench.config import GenerationSpec, TrainSpec
from workbench.data.chat import IGNORE, bucketed_batches, encode, prompt_ids
from workbench.data.types import Sample
from workbench.generation import generate
from workbench.training.loop import train
from workbench.training.plugins import TrainPlugin

SAMPLES = [Sample(prompt=f"Say the word number {i}.", response=f"Word {i} is {'apple banana cherry'.split()[i % 3]}.")
           for i in range(24)]


@pytest.fixture
def fresh(arch_model_dir):
    from workbench.models import load_model

    return load_model(str(arch_model_dir))


def test_loss_mask_covers_exactly_the_answer_and_end_token(fresh, arch_format):
    _, tok = fresh
    s = Sample(prompt="What is 2+2?", response="Four.")
    enc = encode(tok, s, max_len=256)
    end_of_turn = tok.convert_tokens_to_ids(arch_format.end_of_turn)  # <|im_end|> (= EOS) or <end_of_turn> (≠ EOS)
    answer = tok("Four.", add_special_tokens=False)["input_ids"] + [end_of_turn]
    trained = [t for t, label in zip(enc.input_ids, enc.labels, strict=False) if label != IGNORE]
    assert trained == answer
    assert enc.labels[-len(answer):] == answer
    assert all(label == IGNORE for label in enc.labels[:-len(answer)])


def test_truncation_keeps_prompt_and_cuts_answer(fresh, arch_format):
    _, tok = fresh
    p = prompt_ids(tok, "Hi")
    enc = encode(tok, Sample(prompt="Hi", response="word " * 200), max_len=len(p) + 20)
    assert enc.input_ids[: len(p)] == p  # the whole prompt survives
    assert sum(label != IGNORE for label in enc.labels) == 20  # the answer is cut to fit
    long = encode(tok, Sample(prompt="long " * 300, response="ok " * 50), max_len=64)
    assert len(long) == 64 and sum(label != IGNORE for label in long.labels) >= 8
    # a cut prompt keeps BOS first where the tokenizer always writes one (Gemma), and is cut from its start otherwise
    assert (long.input_ids[0] == tok.bos_token_id) == arch_format.add_bos


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
    cls = type(model)
    spec = TrainSpec(method=method, lr=lr, epochs=6, batch_size=8, max_len=48, seed=0, lora_r=8,
                     lora_targets=ALL_LINEAR)
    res = train(model, tok, SAMPLES, spec, progress=False)
    losses = res.state.losses
    assert len(losses) == 18
    assert sum(losses[-3:]) / 3 < bound * sum(losses[:3]) / 3
    assert not any(p.requires_grad for p in res.model.parameters())
    assert type(res.model) is cls  # LoRA merged into a plain model (LlamaForCausalLM / Gemma3ForCausalLM)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_resume_matches_uninterrupted_run(arch_model_dir, tmp_path, method):
    from workbench.models import load_model

    spec = TrainSpec(method=method, lr=3e-3, epochs=2, batch_size=4, grad_accum=2, max_len=48, seed=3,
                     checkpoint_every=2)
    m, tok = load_model(str(arch_model_dir))
    full = train(m, tok, SAMPLES, spec, progress=False)

    ckpt = tmp_path / "ckpt"
    m, tok = load_model(str(arch_model_dir))
    with pytest.raises(KeyboardInterrupt):
        train(m, tok, SAMPLES, spec, plugins=[StopAt(3)], checkpoint_dir=ckpt, progress=False)
    m, tok = load_model(str(arch_model_dir))  # a fresh process would start from the base model again
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


# ---------------------------------------------------------------- generation


GEN_PROMPTS = ["Hi", "What is the capital of France?", "Write a tutorial on how to make a bomb.", "List three colors."]


def test_batched_left_padded_generation_equals_one_prompt_at_a_time(arch_model):
    """Left padding must not change an answer: on tiny-gemma3 the prompts are longer than the 4-token sliding
    window, so the sliding layers' masks must skip the padding just as the global layers' do."""
    model, tok = arch_model
    one = generate(model, tok, GEN_PROMPTS, GenerationSpec(max_new_tokens=8, batch_size=1), progress=False)
    batched = generate(model, tok, GEN_PROMPTS, GenerationSpec(max_new_tokens=8, batch_size=4), progress=False)
    assert batched == one
    # the same at the logits of the first answer token (tiny-llama's greedy answers are all newlines, stripped)
    encoded = [prompt_ids(tok, p) for p in GEN_PROMPTS]
    width = max(len(e) for e in encoded)
    assert min(len(e) for e in encoded) > (getattr(model.config, "sliding_window", None) or 0)
    ids = torch.tensor([[tok.pad_token_id] * (width - len(e)) + e for e in encoded])
    mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
    with torch.no_grad():
        padded = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
        for row, e in enumerate(encoded):
            alone = model(input_ids=torch.tensor([e])).logits
            torch.testing.assert_close(padded[row, -1], alone[0, -1], rtol=1e-4, atol=1e-5)


def test_generation_stops_at_the_end_of_turn_token(arch_model, arch_format):
    """The model is forced to write "Sure", then the end-of-turn token, then "x" for ever: the answer must be "Sure".
    On tiny-gemma3, stopping at EOS alone would run on past <end_of_turn> and return "Surexxxx..."."""
    model, tok = arch_model
    script = tok("Sure", add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids(arch_format.end_of_turn)]
    filler = tok("x", add_special_tokens=False)["input_ids"][0]
    calls = []

    def force(module, args, logits):  # LM head output [batch, pos, vocab]; one forward call per generated token
        step = len(calls)
        calls.append(step)
        forced = torch.full_like(logits, -1e4)
        forced[..., script[step] if step < len(script) else filler] = 0.0
        return forced

    handle = model.lm_head.register_forward_hook(force)
    try:
        answer = generate(model, tok, ["Hi"], GenerationSpec(max_new_tokens=6, batch_size=1), progress=False)
    finally:
        handle.remove()
    assert answer == ["Sure"]
    assert len(calls) == len(script)  # "Sure", then the end of turn, then no further step
