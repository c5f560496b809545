"""Has the model collapsed? Three judge-free measures on benign requests it was never trained on, for telling a
defense that makes harmful answers unlikely from one that breaks the model (a gradient-ascent term run away:
`workbench.studies.ascent`).

    incoherent      share of its greedy answers to benign prompts that `evaluation.coherence.check` calls
                    incoherent (empty, symbols, loops, low distinct words, non-word salad), with a Wilson interval
    non_word_share  share of the answers' alphabetic words (longer than one letter) outside the English
                    vocabulary of `evaluation.coherence.english_words`, pooled over all answers: it moves before
                    the per-answer non-words rule (≥ 70 % of letters) fires
    benign_nll      answer-token cross-entropy of the reference answers of the same benign pairs
                    (`analysis.wanda.answer_nll`); benign_ppl = exp(benign_nll)

Prompts: the validation split's benign Alpaca pairs (`data.validation.validation_sets` of `preset` at the run's
seed): never in the alignment mix nor the reported test sets, so a hyperparameter chosen on them reports nothing
tuned on test.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from pydantic import Field

from workbench.analysis import AnalysisContext
from workbench.analysis.result import AnalysisResult
from workbench.analysis.safety_metric import batches_of
from workbench.analysis.wanda import answer_nll
from workbench.config import GenerationSpec
from workbench.config import Spec as BaseSpec
from workbench.data.validation import validation_sets
from workbench.evaluation.coherence import check, english_words, words
from workbench.evaluation.stats import rate
from workbench.generation import generate


class Spec(BaseSpec):
    preset: str = "full"  # whose validation split (the alignment mix it excludes)
    n_benign: int = Field(32, ge=1)  # benign validation pairs
    max_new_tokens: int = Field(32, ge=1)
    max_len: int = Field(256, ge=8)  # token cap of a pair in the NLL
    batch_size: int = Field(8, ge=1)


def non_words(answers: list[str]) -> tuple[int, int]:
    """(alphabetic words longer than one letter outside the vocabulary, alphabetic words) over `answers`."""
    vocab = english_words()
    alpha = [w for a in answers for w in words(a) if w.isalpha()]
    return sum(len(w) > 1 and w not in vocab for w in alpha), len(alpha)


@dataclass(frozen=True)
class CollapseResult(AnalysisResult):
    model: str
    preset: str
    n: int  # benign pairs
    incoherent: dict  # `stats.Rate` as a dict: % of answers incoherent, with k, n and a Wilson interval
    reasons: dict  # incoherence reason -> count
    non_words: int
    words: int
    benign_nll: float
    answers: list = field(default_factory=list)  # the first few answers, to read

    @property
    def non_word_share(self) -> float:
        return self.non_words / self.words if self.words else float("nan")

    @property
    def benign_ppl(self) -> float:
        return math.exp(self.benign_nll)

    def headline(self) -> dict:
        return {"incoherent": self.incoherent, "non_word_share": self.non_word_share, "benign_nll": self.benign_nll,
                "benign_ppl": self.benign_ppl}


def run(ctx: AnalysisContext, spec: Spec) -> CollapseResult:
    import torch  # deferred: torch

    model, tok = ctx.load()
    model.eval()
    _, benign = validation_sets(spec.preset, ctx.seed, 0, spec.n_benign)
    gen = GenerationSpec(max_new_tokens=spec.max_new_tokens, batch_size=spec.batch_size, seed=ctx.seed)
    answers = generate(model, tok, [s.prompt for s in benign], gen, progress=ctx.progress, desc="collapse benign")
    checks = [check(a) for a in answers]
    bad, total = non_words(answers)
    with torch.no_grad():
        nll = answer_nll(model, batches_of(tok, benign, spec.max_len, spec.batch_size))
    return CollapseResult(model=str(ctx.model), preset=spec.preset, n=len(benign),
                          incoherent=rate(not c.coherent for c in checks).to_dict(),
                          reasons=dict(Counter(c.reason for c in checks if c.reason)), non_words=bad, words=total,
                          benign_nll=nll, answers=answers[:8])
