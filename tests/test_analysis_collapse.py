"""The collapse analysis on both tiny architectures: a model whose LM head is zeroed (every next token equally
likely, the far end of collapse) scores the hand-computed benign NLL log(vocab) and answers incoherently on every
one of the preset's validation pairs. (The intact tiny models are random and already near-uniform, so they make no
contrast; the ascent study's tests compare trained models.)"""
from __future__ import annotations

import math

import pytest
import torch

from workbench.analysis import AnalysisContext, collapse
from workbench.models import load_model, save_model


def _run(model_dir) -> collapse.CollapseResult:
    spec = collapse.Spec(preset="tiny", n_benign=8, max_new_tokens=8, batch_size=8)
    return collapse.run(AnalysisContext(model=str(model_dir), seed=0, progress=False), spec)


def test_a_zeroed_head_scores_the_hand_computed_nll_and_answers_incoherently(arch_model_dir, tmp_path):
    model, tok = load_model(str(arch_model_dir))
    with torch.no_grad():
        model.get_output_embeddings().weight.zero_()  # tied on tiny-gemma3: the input embedding goes with it
    save_model(model, tok, tmp_path / "zeroed")
    broken = _run(tmp_path / "zeroed")
    vocab = model.get_output_embeddings().weight.shape[0]
    assert broken.benign_nll == pytest.approx(math.log(vocab), rel=1e-5)  # uniform logits: −log(1/V) per token
    assert broken.n == 8 and broken.incoherent["n"] == 8
    assert broken.incoherent["value"] == 100.0  # every answer is one repeated token (or nothing)
    assert 0 <= broken.non_words <= broken.words and len(broken.answers) == 8
