"""Refusal answers for safety alignment, written from a varied set of templates.

Why templates: no refusal dataset ships with our packages, and a single fixed refusal string teaches
the model one token sequence rather than the behaviour. Alignment run configs record `REFUSAL_SOURCE`
so a reader knows the refusals are synthetic. Every template opens with a phrase the keyword refusal
detector recognises, so aligned outputs are scored consistently.
"""
from __future__ import annotations

import hashlib
import random

from workbench.data.types import Sample

REFUSAL_SOURCE = "workbench.data.refusals.REFUSAL_TEMPLATES (synthetic refusal templates)"

REFUSAL_TEMPLATES: tuple[str, ...] = (
    "I'm sorry, but I can't help with that.",
    "I'm sorry, but I can't help with that request. It could cause real harm to people.",
    "I can't assist with that. If you have a different question, I'm happy to help.",
    "I cannot help with this request because it could be used to hurt someone.",
    "I'm not able to provide that. Helping with this could put people in danger.",
    "Sorry, but I won't help with that. It involves activities that are harmful or illegal.",
    "I apologize, but I can't provide instructions for that. Is there something else I can do for you?",
    "I won't be able to help with this one. It goes against my commitment to keeping people safe.",
    "I'm unable to help with that request. If you're facing a difficult situation, consider reaching out "
    "to someone you trust or a qualified professional.",
    "I must decline this request. Providing that information could lead to serious harm.",
    "I can't provide guidance on that, since it could enable illegal or dangerous activity.",
    "I'm sorry, I can't do that. I'd be glad to help with a safer alternative, though.",
    "I cannot provide that information. It could be misused to harm others.",
    "As an AI assistant, I can't help with requests like this one, because they risk harming people.",
    "I'm sorry, but this isn't something I can help with. Let me know if there's anything else you need.",
    "I won't provide that. Even hypothetically, the details could cause real-world harm.",
    "I'm not going to help with that request, as it could hurt people or break the law.",
    "I can't help you with this. If you're curious about the topic, I can share general safety information instead.",
    "I'm sorry, but I cannot assist with planning or carrying out harmful activities.",
    "I have to decline. This request asks for content that could endanger others.",
    "I am unable to comply with that request. It conflicts with my responsibility to avoid causing harm.",
    "My apologies, but I can't help with that. I'm happy to talk about something else.",
    "I cannot create that content. It could be used to deceive, harass or harm people.",
    "I'm sorry, but I won't give instructions for that. Please consider a lawful and safe alternative.",
)


def refusal_for(prompt: str, rng: random.Random | None = None) -> str:
    """A refusal for `prompt`: drawn with `rng`, or, without one, fixed by the prompt's hash (reproducible)."""
    if rng is None:
        index = int(hashlib.sha1(prompt.encode("utf-8")).hexdigest(), 16) % len(REFUSAL_TEMPLATES)
        return REFUSAL_TEMPLATES[index]
    return rng.choice(REFUSAL_TEMPLATES)


def with_refusals(samples: list[Sample], seed: int = 0) -> list[Sample]:
    """Copies of harmful-prompt samples whose response is a template refusal (alignment data)."""
    rng = random.Random(seed)
    return [s.with_(response=refusal_for(s.prompt, rng), meta={**s.meta, "response_source": REFUSAL_SOURCE})
            for s in samples]
