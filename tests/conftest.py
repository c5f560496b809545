"""Shared fixtures for the fast tests: tiny models saved once per session.

- `tiny_model_dir`: a temporary folder holding tiny-llama (seed 0) as safetensors + tokenizer, i.e. a plain
  HF folder that `load_model` accepts. Read-only by convention: copy it if a test must change it.
- `other_tiny_dir`: a second tiny-llama (seed 1): same tokenizer and shapes, different weights — the
  "attacked" model of cross-model analyses.
- `tiny_model`: `(model, tokenizer)` loaded from it (eval mode, CPU, float32). Session-scoped and shared:
  tests that train or modify weights must load their own copy with `load_model(tiny_model_dir)`.

Both architectures. A test that asks for `arch_model_dir`, `other_arch_dir`, `arch_model` or `arch_format`
instead runs once per tiny architecture in `TINY_ARCHS` (ids `[tiny-llama]`, `[tiny-gemma3]`): `tiny_arch` is the
registered name, the three model fixtures are the same as above for that architecture (tiny-llama's are the very
same folders and objects), and `arch_format` is its `workbench.models.chat_formats.ChatFormat` (what a test
compares the chat template's behaviour with). Models are built on first use, once per session.

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

TINY_ARCHS = ("tiny-llama", "tiny-gemma3")


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """`(name, seed) -> folder`: a tiny model saved on first request, then the same folder for the session."""
    from workbench.models import save_tiny

    folders = {}

    def get(name: str, seed: int = 0):
        if (name, seed) not in folders:
            leaf = name if seed == 0 else f"{name}-seed{seed}"
            folders[name, seed] = save_tiny(name, tmp_path_factory.mktemp("models") / leaf, seed)
        return folders[name, seed]

    return get


@pytest.fixture(scope="session")
def tiny_models(tiny_dirs):
    """`name -> (model, tokenizer)` loaded once from `tiny_dirs(name)` (seed 0); shared, do not modify."""
    from workbench.models import load_model

    loaded = {}

    def get(name: str):
        if name not in loaded:
            loaded[name] = load_model(tiny_dirs(name))
        return loaded[name]

    return get


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_dirs):
    """Folder with a saved tiny-llama (vocab 512, d_model 64, d_mlp 176, 4 layers, 4 heads / 2 KV heads)."""
    return tiny_dirs("tiny-llama")


@pytest.fixture(scope="session")
def other_tiny_dir(tiny_dirs):
    """A second tiny-llama (seed 1): same tokenizer and shapes as `tiny_model_dir`, different weights."""
    return tiny_dirs("tiny-llama", 1)


@pytest.fixture(scope="session")
def tiny_model(tiny_models):
    """`(model, tokenizer)` loaded from `tiny_model_dir`; shared by the session, do not modify it."""
    return tiny_models("tiny-llama")


@pytest.fixture(scope="session", params=TINY_ARCHS)
def tiny_arch(request) -> str:
    """The registered name of a tiny architecture; a test using it runs once per entry of `TINY_ARCHS`."""
    return request.param


@pytest.fixture
def arch_model_dir(tiny_arch, tiny_dirs):
    """`tiny_model_dir` for the architecture `tiny_arch` (seed 0)."""
    return tiny_dirs(tiny_arch)


@pytest.fixture
def other_arch_dir(tiny_arch, tiny_dirs):
    """`other_tiny_dir` for the architecture `tiny_arch` (seed 1: same tokenizer and shapes, other weights)."""
    return tiny_dirs(tiny_arch, 1)


@pytest.fixture
def arch_model(tiny_arch, tiny_models):
    """`tiny_model` for the architecture `tiny_arch`; shared by the session, do not modify it."""
    return tiny_models(tiny_arch)


@pytest.fixture
def arch_format(tiny_arch):
    """The chat format `tiny_arch`'s tokenizer was built with (`workbench.models.chat_formats`)."""
    from workbench.models.tiny import TINY_FORMATS

    return TINY_FORMATS[tiny_arch]
