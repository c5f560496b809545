"""Fine-tune accuracy (FA): scoring a generated answer against a benign task's label."""
from __future__ import annotations

import re

from workbench.data.types import Sample


def score_sentiment(answer: str, label: str) -> bool:
    """Correct when the first sentiment word in the answer equals the label."""
    m = re.search(r"\b(positive|negative)\b", answer.lower())
    return bool(m) and m.group(1) == str(label).lower()


def score_integer(answer: str, label) -> bool:
    """GSM-style: correct when the last integer in the answer equals the label ("The answer is 42.")."""
    nums = re.findall(r"-?\d[\d,]*", answer)
    if not nums:
        return False
    try:
        return int(nums[-1].replace(",", "")) == int(label)
    except ValueError:
        return False


TASK_SCORERS = {"sst2": score_sentiment, "gsm_symbolic": score_integer, "gsm8k": score_integer}


def task_max_new_tokens(task: str) -> int:
    return 8 if task == "sst2" else 256


def score_task(task: str, sample: Sample, answer: str) -> bool:
    if task not in TASK_SCORERS:
        raise ValueError(f"no fine-tune-accuracy scorer for task {task!r}; known: {sorted(TASK_SCORERS)}")
    return TASK_SCORERS[task](answer, sample.label)
