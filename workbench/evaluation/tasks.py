"""Fine-tune accuracy (FA): scoring a generated answer against a benign task's label or reference.

  sst2                  first "positive"/"negative" in the answer equals the label
  gsm_symbolic, gsm8k   exact integer answer (`score_integer`)
  alpaca                instruction following: not a refusal, coherent, recalls the reference (`score_instruction`)
"""
from __future__ import annotations

import re

from workbench.data.types import Sample
from workbench.evaluation.coherence import is_coherent
from workbench.evaluation.refusal import is_refusal


def score_sentiment(answer: str, label: str) -> bool:
    """Correct when the first sentiment word in the answer equals the label."""
    m = re.search(r"\b(positive|negative)\b", answer.lower())
    return bool(m) and m.group(1) == str(label).lower()


_NUMBER = r"-?\$?\d[\d,]*(?:\.\d+)?"
_FINAL = re.compile(r"(?:answer is|answer:|####|\\boxed\{)\s*\**\s*(" + _NUMBER + ")", re.IGNORECASE)


def _as_number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").replace("$", ""))
    except ValueError:
        return None


def score_integer(answer: str, label) -> bool:
    """GSM-style exact integer answer. The answer's final number is the last one stated as "the answer
    is N" / "Answer: N" / "#### N" / "\\boxed{N}" if any, else the last number in the text; thousands
    separators, "$" and a zero fraction are accepted ("$1,200.00" == 1200), anything else must match."""
    marked = _FINAL.findall(answer)
    nums = marked or re.findall(_NUMBER, answer)
    if not nums:
        return False
    value = _as_number(nums[-1])
    try:
        return value is not None and value == int(label)
    except (TypeError, ValueError):
        return False


# Instruction following (Alpaca), judge-free. Correct ⇔ the answer is not a refusal, is coherent
# (coherence.py), and recalls ≥ IF_MIN_RECALL of the reference's *novel* content words: lower-cased words
# of the reference answer, minus stopwords, minus words already in the instruction (so parroting the
# prompt earns nothing; if that leaves nothing, all of the reference's content words count). Its calibration
# on Alpaca eval (unrelated answers, partial and full references) is in docs/calibration.md.
IF_MIN_RECALL = 0.2
_STOPWORDS = frozenset(
    "a an the and or but if then else of to in on at by for with from as is are was were be been being it its "
    "this that these those there here i you he she we they me him her us them my your his our their what which "
    "who whom whose when where why how not no yes do does did done so than too very can could should would may "
    "might will shall must also just about into over under more most some any each other such only own same few "
    "all both".split())
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS}


def reference_recall(answer: str, reference: str, prompt: str = "") -> float:
    """Share of the reference's novel content words (not in the prompt) that the answer contains."""
    ref = content_words(reference)
    novel = ref - content_words(prompt) or ref
    if not novel:
        return 1.0
    return len(novel & content_words(answer)) / len(novel)


def score_instruction(answer: str, reference: str, prompt: str = "") -> bool:

    return (not is_refusal(answer) and is_coherent(answer)
            and reference_recall(answer, reference, prompt) >= IF_MIN_RECALL)


# Each scorer: (answer, sample) -> correct?
TASK_SCORERS = {
    "sst2": lambda answer, s: score_sentiment(answer, s.label),
    "gsm_symbolic": lambda answer, s: score_integer(answer, s.label),
    "gsm8k": lambda answer, s: score_integer(answer, s.label),
    "alpaca": lambda answer, s: score_instruction(answer, s.response or "", s.prompt),
}


def task_max_new_tokens(task: str) -> int:
    # 16: models not yet tuned on the task answer in a sentence ("The sentiment of this sentence is positive").
    return 16 if task == "sst2" else 256


def score_task(task: str, sample: Sample, answer: str) -> bool:
    if task not in TASK_SCORERS:
        raise ValueError(f"no fine-tune-accuracy scorer for task {task!r}; known: {sorted(TASK_SCORERS)}")
    return TASK_SCORERS[task](answer, sample)
