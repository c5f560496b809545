"""Model registry: one name or folder in, `(model, tokenizer)` out.

`load_model` accepts
  * a registered name (`MODELS`): "smollm2-135m-instruct" (the real model), "gemma3-270m" (Gemma 3 270M (Q4_K_M,
    dequantized), the second family; needs `make setup-gemma`), "tiny-llama" and "tiny-gemma3" (tests);
  * any local Hugging Face causal-LM folder (`config.json` + `*.safetensors` + tokenizer files);
  * a run folder (`runs/<kind>-<name>-<ts>/`), whose `model/` sub-folder holds either full weights
    (as above) or a LoRA adapter: `adapter_config.json` + `adapter_model.safetensors` + `base_model.json`
    (`{"base": "<registered name | folder>"}`). The base is loaded with `load_model` (recursively), the
    adapter applied with peft and merged, so callers always get a plain `PreTrainedModel`;
  * a low-rank delta folder (`lowrank_delta.safetensors` + `base_model.json`, lowrank.py): base + left @ right
    per changed matrix, as `workbench runs archive` keeps LoRA-trained align runs.

Only safetensors are read (never pickle). Models come back in `eval()` mode, float32, on CPU unless a device
is asked for. Adding a model = one builder (a function returning a local HF folder, usually cached under
`<cache>/models/<name>`) + one line in `MODELS`.
"""
from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch

from workbench.models.atomic import write_folder_atomically
from workbench.models.gemma3 import GEMMA3_NAME, ensure_gemma3
from workbench.models.lowrank import BASE_REFERENCE_FILE, LOWRANK_FILE, apply_lowrank
from workbench.models.smollm2 import SMOLLM2_NAME, ensure_smollm2
from workbench.models.tiny import TINY_GEMMA3_NAME, TINY_NAME, ensure_tiny_gemma3, ensure_tiny_llama
from workbench.runs import run_kind

# name -> builder returning a local HF folder (materialized once, then cached).
MODELS: dict[str, Callable[[], Path]] = {
    SMOLLM2_NAME: ensure_smollm2,
    GEMMA3_NAME: ensure_gemma3,
    TINY_NAME: ensure_tiny_llama,
    TINY_GEMMA3_NAME: ensure_tiny_gemma3,
}

_EXPECTED = (
    "expected a registered model name ({names}), a Hugging Face model folder (config.json + *.safetensors "
    "+ tokenizer files), a LoRA adapter folder (adapter_config.json + adapter_model.safetensors + "
    f"{BASE_REFERENCE_FILE}), or a run folder with a model/ sub-folder holding one of those"
)


def known_models() -> list[str]:
    """Registered model names."""
    return sorted(MODELS)


def _expected() -> str:
    return _EXPECTED.format(names=", ".join(repr(n) for n in known_models()))


def resolve_device(device: str | torch.device | None) -> torch.device:
    """None/"cpu" -> CPU; "auto" -> CUDA when available else CPU; "cuda[:i]" -> CUDA or a ValueError."""
    if device is None:
        return torch.device("cpu")
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} asked for, but CUDA is not available; use 'cpu' or 'auto'")
    return device


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """None -> float32; accepts torch dtypes or names such as "bfloat16"."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16', 'float16'")
    return resolved


def model_folder(name_or_path: str | os.PathLike) -> Path:
    """The folder `load_model` would read: a registered name's cached folder, or a run's `model/`."""
    key = str(name_or_path)
    if key in MODELS:
        return Path(MODELS[key]())
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        raise ValueError(f"unknown model {key!r}: not a registered name and not a folder; {_expected()}")
    if (path / "model").is_dir():  # a run folder (its own config.json is the run spec, not a model)
        path = path / "model"
    elif (kind := run_kind(path)) is not None:
        raise ValueError(f"{path} is a run folder of kind '{kind}', which holds no model/ (align, attack, defend and "
                         f"repair runs do); pass one of those, a model folder or a registered name")
    return path


def holds_model(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds a model `load_model` can read: merged safetensors, a LoRA adapter or a low-rank delta
    (an archived run's model/ folder holds none of them unless it was archived as a delta)."""
    folder = Path(folder)
    return folder.is_dir() and (any(folder.glob("*.safetensors")) or (folder / "adapter_config.json").is_file()
                                or (folder / LOWRANK_FILE).is_file())


def load_tokenizer(name_or_path: str | os.PathLike, padding_side: str | None = None):
    """Only the tokenizer of a model (no weights read). pad = eos when the tokenizer has no pad token."""
    folder = model_folder(name_or_path)
    delta = (folder / "adapter_config.json").exists() or (folder / LOWRANK_FILE).exists()
    if delta and not (folder / "tokenizer_config.json").exists():
        return load_tokenizer(_base_reference(folder), padding_side)
    return _load_tokenizer_from(folder, padding_side)


def load_model(
    name_or_path: str | os.PathLike,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    *,
    padding_side: str | None = None,
    _depth: int = 0,
):
    """Load `(model, tokenizer)` from a registered name, an HF folder, an adapter folder or a run folder.

    device: None -> CPU, "auto" -> CUDA if available, or an explicit torch device.
    dtype: None -> float32.
    padding_side: set on the tokenizer ("left" for batched generation); None keeps the saved one.
    Returns the model in eval mode and its tokenizer (pad token always set).
    Raises ValueError for an unknown name or a missing/corrupt folder, saying what is expected.
    """
    if _depth > 8:
        raise ValueError(f"{name_or_path}: adapter base references loop or nest deeper than 8 levels")
    folder = model_folder(name_or_path)
    device, dtype = resolve_device(device), resolve_dtype(dtype)

    if (folder / "adapter_config.json").exists():
        model, tokenizer = _load_adapter(folder, device, dtype, padding_side, _depth)
    elif (folder / LOWRANK_FILE).exists():
        model, tokenizer = _load_lowrank(folder, device, dtype, padding_side, _depth)
    else:
        model, tokenizer = _load_full(folder, device, dtype, padding_side)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


def _load_full(folder: Path, device: torch.device, dtype: torch.dtype, padding_side: str | None):
    from transformers import AutoModelForCausalLM  # deferred: transformers

    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder}: no config.json; {_expected()}")
    if not any(folder.glob("*.safetensors")):
        found = sorted(p.name for p in folder.iterdir())
        hint = " (pickle checkpoints are never loaded; re-save with safetensors)" if any(
            n.endswith((".bin", ".pt", ".pth", ".ckpt")) for n in found) else ""
        raise ValueError(f"{folder}: no *.safetensors weights{hint}; found {found}; {_expected()}")
    tokenizer = _load_tokenizer_from(folder, padding_side)
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, use_safetensors=True)
    except Exception as err:  # corrupt json / truncated safetensors / shape mismatch
        raise ValueError(f"{folder}: could not load the model ({type(err).__name__}: {err}); {_expected()}") from err
    return model.to(device), tokenizer


def _load_tokenizer_from(folder: Path, padding_side: str | None):
    from transformers import AutoTokenizer  # deferred: transformers

    if not (folder / "tokenizer_config.json").is_file() and not (folder / "tokenizer.json").is_file():
        raise ValueError(f"{folder}: no tokenizer files (tokenizer.json / tokenizer_config.json); {_expected()}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as err:
        raise ValueError(f"{folder}: could not load the tokenizer ({type(err).__name__}: {err})") from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if padding_side is not None:
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        tokenizer.padding_side = padding_side
    return tokenizer


def _base_reference(folder: Path) -> str:
    """The base model of an adapter: `base_model.json` {"base": ...}, else peft's base_model_name_or_path."""
    ref_file = folder / BASE_REFERENCE_FILE
    try:
        if ref_file.exists():
            base = json.loads(ref_file.read_text())["base"]
        else:
            base = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{folder}: unreadable base reference ({err}); {_expected()}") from err
    if not base:
        raise ValueError(f"{folder}: LoRA adapter without a base reference; write {BASE_REFERENCE_FILE} "
                         '{"base": "<registered name or folder>"} next to adapter_config.json')
    if base in MODELS or Path(base).is_absolute():
        return base
    return str((folder / base).resolve())  # relative paths are relative to the adapter folder


def _load_adapter(folder: Path, device, dtype, padding_side, depth: int):
    from peft import PeftModel  # deferred: peft

    if not (folder / "adapter_model.safetensors").is_file():
        raise ValueError(f"{folder}: adapter_config.json without adapter_model.safetensors "
                         f"(pickle adapters are never loaded); {_expected()}")
    base = _base_reference(folder)
    model, tokenizer = load_model(base, device=device, dtype=dtype, padding_side=padding_side, _depth=depth + 1)
    if (folder / "tokenizer_config.json").exists():
        tokenizer = _load_tokenizer_from(folder, padding_side)
    try:
        model = PeftModel.from_pretrained(model, folder, is_trainable=False).merge_and_unload()
    except Exception as err:
        raise ValueError(f"{folder}: could not apply the LoRA adapter to base {base!r} "
                         f"({type(err).__name__}: {err})") from err
    return model, tokenizer


def _load_lowrank(folder: Path, device, dtype, padding_side, depth: int):
    from safetensors.torch import load_file  # deferred: safetensors

    base = _base_reference(folder)
    model, tokenizer = load_model(base, device=device, dtype=dtype, padding_side=padding_side, _depth=depth + 1)
    try:
        factors = load_file(str(folder / LOWRANK_FILE), device=str(device))
        apply_lowrank(model, factors)
    except Exception as err:  # truncated file, or a delta for another architecture
        raise ValueError(f"{folder}: could not apply the low-rank delta to base {base!r} "
                         f"({type(err).__name__}: {err})") from err
    return model, tokenizer


def save_model(model, tokenizer, folder: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Save full weights (safetensors) + tokenizer into `folder`, atomically; returns the folder.

    A peft model is merged first, on a deep copy (the caller's model keeps its adapter), so the folder is
    always a plain HF folder that `load_model` reads. Use `save_adapter` to keep only the LoRA weights.
    """
    from peft import PeftModel  # deferred: peft

    if isinstance(model, PeftModel):
        model = copy.deepcopy(model).merge_and_unload()

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return write_folder_atomically(Path(folder), write, overwrite)


def save_adapter(peft_model, tokenizer, folder: str | os.PathLike, base: str | os.PathLike,
                 *, overwrite: bool = False) -> Path:
    """Save a peft model's adapter (adapter_model.safetensors) + tokenizer + `base_model.json` atomically.

    base: what `load_model` should load underneath: a registered name, or a folder (stored as an absolute
    path). `load_model(folder)` then returns the merged model.
    """
    base_str = str(base)
    if base_str not in MODELS:
        base_path = Path(base).expanduser()
        if not base_path.is_dir():
            raise ValueError(f"base {base_str!r} is neither a registered name ({', '.join(known_models())}) "
                             "nor an existing folder")
        base_str = str(base_path.resolve())

    def write(tmp: Path) -> None:
        peft_model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / BASE_REFERENCE_FILE).write_text(json.dumps({"base": base_str}, indent=2))

    return write_folder_atomically(Path(folder), write, overwrite)
