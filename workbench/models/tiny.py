"""`tiny-llama`: a random, non-square Llama with a real tokenizer, built offline in code (for tests).

Why it exists: every step (training, generation, hooks, analyses) must be testable in seconds without the
real model. The tiny model has the same *architecture family* and chat format as SmolLM2-135M-Instruct
(Llama blocks, GQA, RoPE, tied embeddings, `<|im_start|>role\\n...<|im_end|>` chat template, pad = eos,
no BOS added by the tokenizer) but deliberately *non-square* shapes, so a transposed weight or a mixed-up
axis raises instead of silently working:

    vocab 512  ≠  d_model 64  ≠  d_mlp 176,   n_layers 4,   n_heads 4 / n_kv_heads 2,   d_head 16

The tokenizer is a byte-level BPE (any UTF-8 text encodes; vocab 512 = 3 special tokens + 256 bytes +
253 merges) trained in code on a built-in corpus. Special tokens use SmolLM2's ids: `<|endoftext|>` = 0,
`<|im_start|>` = 1 (bos), `<|im_end|>` = 2 (eos and pad).

Everything is deterministic: the same `seed` gives bit-identical weights and the same tokenizer.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from workbench.cache import cache_dir
from workbench.models.atomic import write_folder_atomically

TINY_NAME = "tiny-llama"
TINY_VOCAB = 512
TINY_SHAPES = dict(
    hidden_size=64,
    intermediate_size=176,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Same template as SmolLM2-135M-Instruct (including its default system turn), so chat formatting and
# "loss only on answers" code is exercised on the exact format the real model uses.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

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


def build_tiny_tokenizer(vocab_size: int = TINY_VOCAB):
    """Byte-level BPE tokenizer trained in code, wrapped as a HF fast tokenizer with the chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # deferred: tokenizers
    from transformers import PreTrainedTokenizerFast  # deferred: transformers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        padding_side="right",
    )
    hf_tok.chat_template = CHAT_TEMPLATE
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


def build_tiny_llama(seed: int = 0):
    """Build `(model, tokenizer)` in memory: random weights from `seed` (global RNG state untouched).

    model: `LlamaForCausalLM` in float32, eval mode, on CPU.
    """
    from transformers import LlamaForCausalLM  # deferred: transformers

    tokenizer = build_tiny_tokenizer()
    config = tiny_config(len(tokenizer))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.float().eval(), tokenizer


def save_tiny_llama(folder: str | Path, seed: int = 0) -> Path:
    """Build tiny-llama from `seed` and save it (safetensors + tokenizer) into `folder` atomically.

    The folder must be absent or empty; its content appears only once complete. Returns the folder.
    """
    folder = Path(folder)
    if (folder / "config.json").exists():
        raise ValueError(f"{folder} already holds a model; pick an empty folder")
    model, tokenizer = build_tiny_llama(seed)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "workbench_model.json").write_text(json.dumps({"name": TINY_NAME, "seed": seed}, indent=2))

    write_folder_atomically(folder, write)
    return folder


def ensure_tiny_llama(folder: str | Path | None = None, seed: int = 0) -> Path:
    """Folder holding tiny-llama (seed 0 by default): `<cache>/models/tiny-llama`, built on first use."""
    if folder is None:
        folder = cache_dir() / "models" / (TINY_NAME if seed == 0 else f"{TINY_NAME}-seed{seed}")
    folder = Path(folder)
    if not (folder / "config.json").exists():
        try:
            save_tiny_llama(folder, seed)
        except OSError:  # another process finished first: its folder is complete (atomic rename)
            if not (folder / "config.json").exists():
                raise
    return folder
