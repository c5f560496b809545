"""Shared fixtures for the fast tests: one tiny-llama saved once per session.

- `tiny_model_dir`: a temporary folder holding tiny-llama (seed 0) as safetensors + tokenizer, i.e. a plain
  HF folder that `load_model` accepts. Read-only by convention: copy it if a test must change it.
- `other_tiny_dir`: a second tiny-llama (seed 1): same tokenizer and shapes, different weights — the
  "attacked" model of cross-model analyses.
- `tiny_model`: `(model, tokenizer)` loaded from it (eval mode, CPU, float32). Session-scoped and shared:
  tests that train or modify weights must load their own copy with `load_model(tiny_model_dir)`.

Everything runs offline (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE) on 2 threads; WORKBENCH_CACHE is left as
set, so slow tests reuse the real model cache.
"""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WORKBENCH_THREADS"] = "1"  # steps set torch's threads from it (workbench.machine.configure_threads)

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # tiny models: one thread is fastest, and keeps parallel jobs from thrashing


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Folder with a saved tiny-llama (vocab 512, d_model 64, d_mlp 176, 4 layers, 4 heads / 2 KV heads)."""
    from workbench.models import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama", seed=0)


@pytest.fixture(scope="session")
def other_tiny_dir(tmp_path_factory):
    """A second tiny-llama (seed 1): same tokenizer and shapes as `tiny_model_dir`, different weights."""
    from workbench.models import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama-seed1", seed=1)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    """`(model, tokenizer)` loaded from `tiny_model_dir`; shared by the session, do not modify it."""
    from workbench.models import load_model

    return load_model(tiny_model_dir)
