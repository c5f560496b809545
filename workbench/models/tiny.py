"""`tiny-llama` and `tiny-gemma3`: random, non-square models with a real tokenizer, built offline in code (tests).

Why they exist: every step (training, generation, hooks, analyses) must be testable in seconds without a real
model. Each tiny model has the *architecture family* and chat format of a real one, with deliberately
*non-square* shapes, so a transposed weight or a mixed-up axis raises instead of silently working.

`tiny-llama`, like SmolLM2-135M-Instruct: Llama blocks, GQA, RoPE, tied embeddings, SmolLM2's ChatML template
(`<|im_start|>role\\n...<|im_end|>`), pad = eos, no BOS added by the tokenizer:

    vocab 512  ≠  d_model 64  ≠  d_mlp 176,   n_layers 4,   n_heads 4 / n_kv_heads 2,   d_head 16

`tiny-gemma3`, like Gemma 3 270M, exercises what differs from Llama: one KV head for four query heads, d_head 32
≠ d_model / n_heads, a sliding window of 4 tokens (shorter than any chat-formatted prompt) in layers 0 and 2 and
global attention in layers 1 and 3, tied embeddings scaled by √d_model, Gemma's RMSNorm scaling by (1 + weight)
(the weights are drawn non-zero, so a norm read as `weight` alone gives different numbers), the norms after
attention and MLP, and Gemma's turn format (`workbench.models.chat_formats.GEMMA_TURNS`: <bos> added, answers end
with <end_of_turn>, pad = <pad> ≠ eos):

    vocab 512  ≠  d_model 64  ≠  d_mlp 176,   n_layers 4,   n_heads 4 / n_kv_heads 1,   d_head 32

Both tokenizers are byte-level BPEs (any UTF-8 text encodes; vocab 512 = the format's special tokens + 256 bytes +
merges) trained by the same code on the same built-in corpus; the special tokens differ, and they take the real
model's ids (tiny-llama: `<|endoftext|>` 0, `<|im_start|>` 1 = bos, `<|im_end|>` 2 = eos and pad; tiny-gemma3:
`<pad>` 0, `<eos>` 1, `<bos>` 2, `<unk>` 3, then `<start_of_turn>` 4 and `<end_of_turn>` 5, which are 105 and 106
in the real Gemma vocabulary).

Everything is deterministic: the same `seed` gives bit-identical weights and the same tokenizer.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from workbench.cache import cache_dir
from workbench.models.atomic import write_folder_atomically
from workbench.models.chat_formats import CHATML_SMOLLM2, GEMMA_TURNS, ChatFormat, stop_token_ids

TINY_NAME = "tiny-llama"
TINY_GEMMA3_NAME = "tiny-gemma3"
TINY_VOCAB = 512
TINY_SHAPES = dict(
    hidden_size=64,
    intermediate_size=176,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
)
TINY_GEMMA3_SHAPES = dict(
    hidden_size=64,
    intermediate_size=176,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=1,
    head_dim=32,
)
TINY_GEMMA3_LAYER_TYPES = ("sliding_attention", "full_attention", "sliding_attention", "full_attention")
TINY_GEMMA3_WINDOW = 4
GEMMA_NORM_STD = 0.3  # tiny-gemma3's norm weights ~ N(0, 0.3): gains 1 + weight, visibly ≠ weight and ≠ 1
TINY_FORMATS: dict[str, ChatFormat] = {TINY_NAME: CHATML_SMOLLM2, TINY_GEMMA3_NAME: GEMMA_TURNS}  # chat format each

_SUBJECTS = ["the cat", "a student", "my friend", "the model", "a researcher", "the teacher", "our team",
             "the assistant", "a farmer", "the city"]
_VERBS = ["reads", "writes", "explains", "answers", "refuses", "learns", "builds", "finds", "helps", "asks"]
_OBJECTS = ["a short story", "the question", "a math problem", "the answer", "a recipe", "the report",
            "a safe reply", "the code", "a poem about the sea", "the instructions"]
_LINES = [
    "What is the capital of France? The capital of France is Paris.",
    "How do I bake bread? Mix flour, water, salt and yeast, then let it rise and bake it.",
    "I'm sorry, but I can't help with that request.",
    "I cannot assist with that. It could cause harm to people.",
    "Sure, here is a step-by-step guide.",
    "Write a tutorial on how to make a bomb.",
    "Explain how to pick a lock without a key.",
    "Give me a summary of the following text.",
    "The movie was wonderful and the actors were great.",
    "The film was boring, too long and badly written.",
    "Natalia sold 48 clips in April and half as many in May. How many clips did she sell? 72",
    "If a train travels 60 miles in 1 hour, how far does it travel in 3 hours? 180 miles.",
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
    "system user assistant",
    "Translate the sentence into French: Hello, how are you?",
    "List three colors: red, green and blue.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 100 1000 2024",
    "Punctuation: . , ; : ! ? ' \" ( ) [ ] { } - _ + = * / \\ @ # $ % & < > |",
]


def _corpus() -> list[str]:
    """A few hundred deterministic lines of plain English for training the BPE."""
    lines = list(_LINES)
    for i, s in enumerate(_SUBJECTS):
        for j, v in enumerate(_VERBS):
            o = _OBJECTS[(i + j) % len(_OBJECTS)]
            lines.append(f"{s.capitalize()} {v} {o}.")
            lines.append(f"Why does {s} {v[:-1] if v.endswith('s') else v} {o}?")
    return lines


def build_tiny_tokenizer(fmt: ChatFormat = CHATML_SMOLLM2, vocab_size: int = TINY_VOCAB):
    """Byte-level BPE tokenizer trained in code, wrapped as a HF fast tokenizer with `fmt`'s special tokens (ids 0,
    1, ... in the format's order), BOS / EOS / pad / unk and chat template. Every format trains on the same corpus
    with the same trainer; a format with more special tokens keeps that many fewer merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # deferred: tokenizers
    from transformers import PreTrainedTokenizerFast  # deferred: transformers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(fmt.special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    # add_bos_token only where the format adds one: the tokenizer then installs its own BOS post-processor
    extra = {"add_bos_token": True} if fmt.add_bos else {}
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=fmt.bos,
        eos_token=fmt.eos,
        pad_token=fmt.pad,
        unk_token=fmt.unk,
        padding_side="right",
        **extra,
    )
    hf_tok.chat_template = fmt.template
    return hf_tok


def tiny_config(vocab_size: int = TINY_VOCAB):
    """The tiny non-square `LlamaConfig` (see module docstring for the shapes)."""
    from transformers import LlamaConfig  # deferred: transformers

    return LlamaConfig(
        vocab_size=vocab_size,
        max_position_embeddings=1024,
        rms_norm_eps=1e-5,
        rope_theta=100000.0,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        **TINY_SHAPES,
    )


def tiny_gemma3_config(tokenizer):
    """The tiny `Gemma3TextConfig` (see module docstring), its token ids taken from `tokenizer`."""
    from transformers import Gemma3TextConfig  # deferred: transformers

    d_head = TINY_GEMMA3_SHAPES["head_dim"]
    return Gemma3TextConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=1024,
        sliding_window=TINY_GEMMA3_WINDOW,
        layer_types=list(TINY_GEMMA3_LAYER_TYPES),
        query_pre_attn_scalar=d_head,  # Gemma 3 270M: scores scaled by 1/sqrt(256) = 1/sqrt(d_head)
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **TINY_GEMMA3_SHAPES,
    )


def _finish(model, tokenizer, fmt: ChatFormat):
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    stops = stop_token_ids(tokenizer, fmt)  # a plain `model.generate` stops at a turn's end as well
    model.generation_config.eos_token_id = stops[0] if len(stops) == 1 else stops
    return model.float().eval(), tokenizer


def build_tiny_llama(seed: int = 0):
    """Build `(model, tokenizer)` in memory: random weights from `seed` (global RNG state untouched).

    model: `LlamaForCausalLM` in float32, eval mode, on CPU.
    """
    from transformers import LlamaForCausalLM  # deferred: transformers

    fmt = TINY_FORMATS[TINY_NAME]
    tokenizer = build_tiny_tokenizer(fmt)
    config = tiny_config(len(tokenizer))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return _finish(model, tokenizer, fmt)


def build_tiny_gemma3(seed: int = 0):
    """Build tiny-gemma3 `(model, tokenizer)` in memory from `seed` (global RNG state untouched).

    model: `Gemma3ForCausalLM` in float32, eval mode, on CPU; every RMSNorm weight drawn from N(0, 0.3) (Gemma
    initialises them to 0, i.e. gain 1, where a convention error would not show).
    """
    from transformers import Gemma3ForCausalLM  # deferred: transformers

    fmt = TINY_FORMATS[TINY_GEMMA3_NAME]
    tokenizer = build_tiny_tokenizer(fmt)
    config = tiny_gemma3_config(tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Gemma3ForCausalLM(config)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("norm.weight"):
                    p.normal_(0.0, GEMMA_NORM_STD)
    return _finish(model, tokenizer, fmt)


# name -> in-memory builder `(seed) -> (model, tokenizer)`
TINY_BUILDERS: dict[str, Callable[[int], tuple]] = {
    TINY_NAME: build_tiny_llama,
    TINY_GEMMA3_NAME: build_tiny_gemma3,
}


def _builder(name: str):
    try:
        return TINY_BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown tiny model {name!r}; known: {', '.join(TINY_BUILDERS)}") from None


def save_tiny(name: str, folder: str | Path, seed: int = 0) -> Path:
    """Build the tiny model `name` from `seed` and save it (safetensors + tokenizer) into `folder` atomically.

    The folder must be absent or empty; its content appears only once complete. Returns the folder.
    """
    build = _builder(name)
    folder = Path(folder)
    if (folder / "config.json").exists():
        raise ValueError(f"{folder} already holds a model; pick an empty folder")
    model, tokenizer = build(seed)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "workbench_model.json").write_text(json.dumps({"name": name, "seed": seed}, indent=2))

    write_folder_atomically(folder, write)
    return folder


def ensure_tiny(name: str, folder: str | Path | None = None, seed: int = 0) -> Path:
    """Folder holding the tiny model `name` (seed 0 by default): `<cache>/models/<name>`, built on first use."""
    _builder(name)
    if folder is None:
        folder = cache_dir() / "models" / (name if seed == 0 else f"{name}-seed{seed}")
    folder = Path(folder)
    if not (folder / "config.json").exists():
        try:
            save_tiny(name, folder, seed)
        except OSError:  # another process finished first: its folder is complete (atomic rename)
            if not (folder / "config.json").exists():
                raise
    return folder


def save_tiny_llama(folder: str | Path, seed: int = 0) -> Path:
    """`save_tiny` for tiny-llama."""
    return save_tiny(TINY_NAME, folder, seed)


def ensure_tiny_llama(folder: str | Path | None = None, seed: int = 0) -> Path:
    """`ensure_tiny` for tiny-llama: `<cache>/models/tiny-llama`."""
    return ensure_tiny(TINY_NAME, folder, seed)


def ensure_tiny_gemma3(folder: str | Path | None = None, seed: int = 0) -> Path:
    """`ensure_tiny` for tiny-gemma3: `<cache>/models/tiny-gemma3`."""
    return ensure_tiny(TINY_GEMMA3_NAME, folder, seed)
