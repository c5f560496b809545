"""Codecs: an encoding the attacker taught the model, applied to what they send and what they read back.

An encoded attack (covert malicious fine-tuning, `workbench.attacks.covert`) uploads data written in a cipher, so
the attacker later queries the model in that cipher and decodes its answers. `GenerationSpec.codec` names the codec
and the evaluation harness applies it around generation: prompts are encoded before the model sees them, answers
are decoded before any scorer does (`workbench.evaluation.harness`).

A codec is a pair of pure functions `encode` / `decode` with decode(encode(s)) == s for every string s.

  walnut53  a seeded letter substitution, after Halawi et al. 2024 ("Covert Malicious Finetuning: Challenges in
            Safeguarding LLM Adaptation", ICML), whose "Walnut53" cipher permutes the alphabet with seed 53. Ours
            draws the permutation with Python's `random.Random(53)` (not the paper's generator, so not its exact
            key) and keeps drawing until no letter maps to itself, so no single letter of a word stays readable.
            Case is kept (A–Z follow a–z), every other character — digits, punctuation, whitespace, accented and
            non-Latin letters — passes through unchanged. Deviation: the paper also separates every character with
            "|" so that each letter is its own token; we do not (that would need an escape for a literal "|" to
            round-trip, and doubles the sequence length under our 256-token training window), so the model must
            learn the cipher through its ordinary BPE pieces of the enciphered words.

The name alone reproduces the key; `describe()` writes the key itself into the run's notes as well.
"""
from __future__ import annotations

import random
import string
from dataclasses import dataclass, field

ALPHABET = string.ascii_lowercase


def substitution_key(seed: int) -> str:
    """The cipher alphabet of `seed`: a permutation of a–z with no fixed letter (a derangement), drawn by rejection."""
    rng = random.Random(seed)
    letters = list(ALPHABET)
    while True:
        rng.shuffle(letters)
        if all(c != p for c, p in zip(letters, ALPHABET, strict=True)):
            return "".join(letters)


@dataclass(frozen=True)
class SubstitutionCipher:
    """Letter i of the alphabet is written as letter i of `key` (upper case likewise); everything else unchanged."""

    name: str
    seed: int
    key: str = field(init=False)
    _encode: dict = field(init=False, repr=False, compare=False)
    _decode: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = substitution_key(self.seed)
        plain, cipher = ALPHABET + ALPHABET.upper(), key + key.upper()
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "_encode", str.maketrans(plain, cipher))
        object.__setattr__(self, "_decode", str.maketrans(cipher, plain))

    def encode(self, text: str) -> str:
        return text.translate(self._encode)

    def decode(self, text: str) -> str:
        return text.translate(self._decode)

    def describe(self) -> dict:
        """What a run records so its encoding can be rebuilt without this module: the full key."""
        return {"codec": self.name, "kind": "substitution", "seed": self.seed, "alphabet": ALPHABET, "key": self.key}


CODECS: dict[str, SubstitutionCipher] = {
    "walnut53": SubstitutionCipher("walnut53", 53),
}


def get_codec(name: str) -> SubstitutionCipher:
    if name not in CODECS:
        raise ValueError(f"unknown codec {name!r}; known codecs: {', '.join(sorted(CODECS))}")
    return CODECS[name]
