"""Chat formats: each model family's turn template and special tokens, kept in this one module.

A model's tokenizer carries its chat template. The rest of the workbench reads only that template, through
`workbench.data.chat`: how a prompt is formatted, which token closes an answer (the last token trained on,
derived from the template by `data.chat.end_of_turn_id`), and where generation stops (`data.chat.stop_token_ids`).
No other module spells a turn marker. This module holds what a *builder* needs when it makes or fixes a tokenizer:
the template text, the special tokens in id order (for tokenizers trained in code), and which of them are BOS,
EOS, pad and the end-of-turn marker. `tests/test_data.py` checks that what `data.chat` derives from each template
is the end-of-turn token declared here.

    CHATML_SMOLLM2   SmolLM2-135M-Instruct's ChatML, with its default system turn:
                     <|im_start|>system\\n...<|im_end|>\\n<|im_start|>user\\n...<|im_end|>\\n<|im_start|>assistant\\n
                     ANSWER<|im_end|>. No BOS on plain text (the template starts with <|im_start|>); EOS = pad =
                     end of turn = <|im_end|>.
    GEMMA_TURNS      Gemma's documented turn format (the Gemma 3 instruction-tuned template, text only):
                     <bos><start_of_turn>user\\n...<end_of_turn>\\n<start_of_turn>model\\nANSWER<end_of_turn>.
                     The assistant role is called "model"; a system message has no turn of its own and is put
                     before the first user message, separated by a blank line; message texts are trimmed. BOS is
                     added before plain text too (Gemma expects it); <end_of_turn> ends an answer, <eos> ends a
                     document, and generation stops at either.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChatFormat:
    """A family's chat template and special tokens. `special_tokens` are in id order from 0 (tokenizers built
    in code give them exactly these ids, as the real model's tokenizer does)."""

    name: str
    template: str  # Jinja, as `tokenizer.chat_template`
    special_tokens: tuple[str, ...]
    bos: str
    eos: str
    pad: str
    unk: str
    end_of_turn: str  # closes an answer: the last token trained on, and a generation stop token
    add_bos: bool  # whether the tokenizer puts `bos` before plain text

    def stop_tokens(self) -> tuple[str, ...]:
        """Tokens generation stops at: the end of turn, then EOS (once if they are the same token)."""
        return tuple(dict.fromkeys((self.end_of_turn, self.eos)))


# SmolLM2-135M-Instruct's template, including its default system turn, so that tiny-llama exercises chat
# formatting and "loss only on answers" on the exact format of the real model.
CHATML_SMOLLM2 = ChatFormat(
    name="chatml-smollm2",
    template=(
        "{% for message in messages %}"
        "{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
        "{% endif %}"
        "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
    bos="<|im_start|>", eos="<|im_end|>", pad="<|im_end|>", unk="<|endoftext|>", end_of_turn="<|im_end|>",
    add_bos=False,
)

# Gemma 3's instruction-tuned template (google/gemma-3-*-it tokenizer_config.json) without its image items.
# The ids are Gemma's own for <pad> 0, <eos> 1, <bos> 2, <unk> 3; the real tokenizer has <start_of_turn> 105 and
# <end_of_turn> 106, which tokenizers built in code number 4 and 5.
GEMMA_TURNS = ChatFormat(
    name="gemma-turns",
    template=(
        "{{ bos_token }}"
        "{%- if messages[0]['role'] == 'system' -%}"
        "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
        "{%- set loop_messages = messages[1:] -%}"
        "{%- else -%}"
        "{%- set first_user_prefix = '' -%}"
        "{%- set loop_messages = messages -%}"
        "{%- endif -%}"
        "{%- for message in loop_messages -%}"
        "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
        "{%- endif -%}"
        "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
        "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
        "{{ message['content'] | trim }}"
        "{{ '<end_of_turn>\n' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
    ),
    special_tokens=("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"),
    bos="<bos>", eos="<eos>", pad="<pad>", unk="<unk>", end_of_turn="<end_of_turn>",
    add_bos=True,
)

def token_id(tokenizer, token: str) -> int:
    """The id of one special token; ValueError when the tokenizer splits it or does not know it."""
    ids = tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1 or tokenizer.convert_ids_to_tokens(ids[0]) != token:
        raise ValueError(f"the tokenizer does not hold {token!r} as one token (it encodes to {ids})")
    return ids[0]


def apply_format(tokenizer, fmt: ChatFormat) -> None:
    """Give a loaded tokenizer the format's chat template (e.g. a GGUF that ships none), after checking that it
    already holds the format's special tokens as single tokens and that its BOS / EOS / pad agree."""
    for token in fmt.special_tokens:
        token_id(tokenizer, token)
    for role in ("bos", "eos", "pad"):
        have = getattr(tokenizer, f"{role}_token")
        if have != getattr(fmt, role):
            raise ValueError(f"the tokenizer's {role} token is {have!r}; the {fmt.name} format needs "
                             f"{getattr(fmt, role)!r}")
    tokenizer.chat_template = fmt.template


def stop_token_ids(tokenizer, fmt: ChatFormat) -> list[int]:
    """Ids of `fmt.stop_tokens()` in this tokenizer, for a model's `generation_config.eos_token_id`."""
    return [token_id(tokenizer, t) for t in fmt.stop_tokens()]
