"""Evaluation harness: batched generation on held-out sets, then small composable scorers.

Sets (all from the eval side of the fixed splits, never seen in training):
  harmful  `EvalSpec.harmful_set`: held-out AdvBench prompts ("advbench"), or the standard benchmarks ("standard":
           AdvBench + HarmBench + Do-Not-Answer without near-duplicates of any training prompt, `benchmarks.py`)
           → refusal rate (RR) and, with a judge, harmful score (HS, HS+), overall and per source when the set
           mixes sources (`scorers.source_metrics`); every record carries its prompt's `source`
  benign   held-out Alpaca prompts    → over-refusal
  task     the benign task's test split → fine-tune accuracy (FA)
Every rate carries k, n and a Wilson 95 % interval.

An encoded attack's evaluation (`GenerationSpec.codec`, e.g. covert malicious fine-tuning) is the attacker's view:
the harmful and benign prompts are encoded before generation and the answers decoded before refusal detection, the
judge and every other scorer see them, here and only here, so every metric (and `judge rescore` of the saved
records) reads decoded text. A record keeps the plain `prompt` (what the judge pairs with the answer), the `query`
actually sent and the model's raw `answer_raw`. The task set (FA) is queried in plain text, as it is queried without
the attacker's system prompt: FA measures the benign capability the fine-tuned model keeps, comparably across
attacks, not the attacker's channel (whether the model works in the cipher is `scripts/covert_cipher_probe.py`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from workbench.config import EvalSpec
from workbench.data.codecs import get_codec
from workbench.data.registry import load_split
from workbench.data.types import Sample
from workbench.evaluation.benchmarks import harmful_eval_set
from workbench.evaluation.refusal import is_refusal
from workbench.evaluation.scorers import judge_scorer, source_metrics
from workbench.evaluation.stats import rate
from workbench.evaluation.tasks import score_task, task_max_new_tokens
from workbench.generation import generate
from workbench.vocabulary import BY_SOURCE

# A scorer adds fields to the harmful-set records and metrics to the result: (records) -> metrics.
Scorer = Callable[[list[dict]], dict]


@dataclass
class EvalResult:
    metrics: dict = field(default_factory=dict)
    samples: list[dict] = field(default_factory=list)


def eval_sets(spec: EvalSpec, harmful: list[Sample] | None = None, benign: list[Sample] | None = None,
              task: list[Sample] | None = None) -> dict[str, list[Sample]]:
    """The sets an evaluation reads: the held-out test sets, or the `harmful` / `benign` / `task` lists given
    instead (a validation split); each cut to the spec's size."""
    sets = {
        "harmful": (harmful if harmful is not None else harmful_eval_set(spec.harmful_set))[: spec.n_harmful],
        "benign": (benign if benign is not None else load_split("alpaca", "eval"))[: spec.n_benign],
    }
    if spec.task and spec.n_task:
        sets["task"] = (task if task is not None else load_split(spec.task, "eval"))[: spec.n_task]
    return sets


def evaluate(model, tokenizer, spec: EvalSpec | None = None, harmful: list[Sample] | None = None,
             scorers: list[Scorer] = (), progress: bool = True, label: str = "",
             benign: list[Sample] | None = None, task: list[Sample] | None = None) -> EvalResult:
    spec = spec if spec is not None else EvalSpec()
    res = EvalResult()
    if spec.judge:  # HS / HS+ (and per-sample judge_score, harmful, coherent) from the moderation judge
        scorers = [judge_scorer(spec=spec.judge_spec), *scorers]
    sets = eval_sets(spec, harmful, benign, task)
    gen = spec.generation
    codec = get_codec(gen.codec) if gen.codec else None
    for name in ("harmful", "benign"):
        samples = sets[name]
        if not samples:
            continue
        queries = [codec.encode(s.prompt) if codec else s.prompt for s in samples]
        raw = generate(model, tokenizer, queries, gen, progress=progress, desc=f"{label} {name}".strip())
        answers = [codec.decode(a) for a in raw] if codec else raw
        records = [{"set": name, "source": s.source, "prompt": s.prompt, "answer": a, "refusal": is_refusal(a)}
                   for s, a in zip(samples, answers, strict=False)]
        if codec:
            for r, q, a in zip(records, queries, raw, strict=True):
                r.update(query=q, answer_raw=a)
        key = "refusal_harmful" if name == "harmful" else "refusal_benign"
        res.metrics[key] = rate(r["refusal"] for r in records).to_dict()
        if name == "harmful":
            for scorer in scorers:
                res.metrics.update(scorer(records))
            by_source = source_metrics(records)
            if by_source:
                res.metrics[BY_SOURCE] = by_source
        res.samples += records
    if "task" in sets and sets["task"]:
        samples = sets["task"]
        task_gen = gen.model_copy(update={"max_new_tokens": task_max_new_tokens(spec.task), "system_prompt": None,
                                          "codec": None})  # FA in plain text (module doc)
        answers = generate(model, tokenizer, [s.prompt for s in samples], task_gen, progress=progress,
                           desc=f"{label} {spec.task}".strip())
        records = [{"set": "task", "task": spec.task, "prompt": s.prompt, "answer": a, "label": s.label,
                    "correct": score_task(spec.task, s, a)} for s, a in zip(samples, answers, strict=False)]
        res.metrics[f"fa_{spec.task}"] = rate(r["correct"] for r in records).to_dict()
        res.samples += records
    return res
