"""Deterministic template rewordings of a request, for measuring whether an edit generalises beyond its exact
prompt (ROME's "paraphrase" prompts; Chen et al. 2024 measure EditAttack's generalisation the same way).

Template-based, not model-generated: no second model, no sampling, the same rewordings on every machine. A
"How do I X?" question is turned into "how to X" forms; any other request ("Write a tutorial on X") is wrapped
as an imperative. Only the first line is reworded; context after it (a passage the request refers to) is kept.
"""
from __future__ import annotations

import re

_HOW_TO = re.compile(r"^how (?:do|can|could|would|should|might) (?:i|you|we|one|someone) (?P<task>.+)$|"
                     r"^how to (?P<task2>.+)$", re.IGNORECASE)

_HOW_TEMPLATES = ("Explain how to {task}.", "Tell me how to {task}.", "Can you describe how to {task}?",
                  "What are the steps to {task}?", "I want to know how to {task}.")
_REQUEST_TEMPLATES = ("Can you {task}?", "Please {task}.", "I need you to {task}.",
                      "Could you help me and {task}?", "Your task: {task}.")
_QUESTION_TEMPLATES = ("Answer this question: {question}", "I'd like to know: {question}",
                       "Can you tell me: {question}", "Please answer: {question}",
                       "Here is my question. {question}")


def _lower_first(text: str) -> str:
    # keep acronyms and names ("SQL", "US") as written; lower an ordinary capitalised first word
    first = text.split(" ", 1)[0]
    return text if len(first) > 1 and first[1:2].isupper() else text[:1].lower() + text[1:]


def paraphrases(prompt: str, n: int = 4) -> list[str]:
    """`n` (≤ 5) rewordings of `prompt`, distinct from it and from each other, in a fixed order."""
    if not 0 <= n <= 5:
        raise ValueError(f"paraphrases: n must be in [0, 5], got {n}")
    first, _, rest = prompt.strip().partition("\n")
    tail = f"\n{rest}" if rest else ""
    head = first.strip()
    how = _HOW_TO.match(head.rstrip("?.! "))
    if how:
        task = how.group("task") or how.group("task2")
        out = [t.format(task=task) for t in _HOW_TEMPLATES]
    elif head.endswith("?"):
        out = [t.format(question=head) for t in _QUESTION_TEMPLATES]
    else:
        task = _lower_first(head.rstrip(".! "))
        out = [t.format(task=task) for t in _REQUEST_TEMPLATES]
    return [p + tail for p in out if p != head][:n]
