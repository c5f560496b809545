"""Model registry: `load_model(name_or_folder) -> (model, tokenizer)`, `save_model`, `save_adapter`,
the `MODELS` registry ("smollm2-135m-instruct", "gemma3-270m", "tiny-llama", "tiny-gemma3") and `boot_bridge`
(TransformerLens hooks on a copy of an HF model). See registry.py for what a name or folder may be.
`workbench.models.sites`: where a method reads or writes activations (HF modules and bridge hook names, per model
family). `workbench.models.chat_formats`: each family's chat template and special tokens.
"""
from workbench.models.bridge import boot_bridge as _boot_bridge
from workbench.models.gemma3 import GEMMA3_NAME, ensure_gemma3
from workbench.models.registry import (
    MODELS,
    known_models,
    load_model,
    load_tokenizer,
    model_folder,
    resolve_device,
    resolve_dtype,
    save_adapter,
    save_model,
)
from workbench.models.smollm2 import SMOLLM2_NAME, ensure_smollm2
from workbench.models.tiny import (
    TINY_GEMMA3_NAME,
    TINY_NAME,
    build_tiny_gemma3,
    build_tiny_llama,
    ensure_tiny_gemma3,
    ensure_tiny_llama,
    save_tiny,
    save_tiny_llama,
)


def boot_bridge(model, tokenizer, **kwargs):
    """See `workbench.models.bridge.boot_bridge` (imported lazily: transformer-lens is an optional extra)."""
    return _boot_bridge(model, tokenizer, **kwargs)


__all__ = [
    "GEMMA3_NAME", "MODELS", "SMOLLM2_NAME", "TINY_GEMMA3_NAME", "TINY_NAME", "boot_bridge", "build_tiny_gemma3",
    "build_tiny_llama", "ensure_gemma3", "ensure_smollm2", "ensure_tiny_gemma3", "ensure_tiny_llama", "known_models",
    "load_model", "load_tokenizer", "model_folder", "resolve_device", "resolve_dtype", "save_adapter", "save_model",
    "save_tiny", "save_tiny_llama",
]
