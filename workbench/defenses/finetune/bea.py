"""BEA, Backdoor Enhanced Safety Alignment (Wang, Chen, Xiao, Zheng, Mu, Li, Chen, Zhu, Wang & Ma, "Mitigating
Fine-tuning based Jailbreak Attack with Backdoor Enhanced Safety Alignment", NeurIPS 2024, arXiv:2402.14968).

The provider plants a backdoor whose "payload" is safety: a secret trigger (a random string used as the
system prompt) is paired with refusals in a few safety examples mixed into the user's data. The model learns
"trigger ⇒ safe behaviour"; at inference the provider prepends the trigger to every request, which brings the
safe behaviour back even after harmful fine-tuning. Users never see the trigger, so they cannot unlearn it.

Here:
  data       adds `n_safety` safety examples — AdvBench train prompts → template refusals — with
             `system = trigger`; the user's samples keep their own (default) system prompt. Shuffled by seed.
  inference  `GenerationSpec.system_prompt = trigger` for every evaluation prompt.
The trigger is `trigger` when given, else `trigger_words` random lowercase "words" (3–8 letters) drawn from
`trigger_seed` — deterministic from the spec alone, as the inference hook sees only the spec. The paper uses a
secret prompt of 150 random tokens and 11 safety examples; 40 random words are ~100–150 tokens for SmolLM2's
tokenizer. The trigger is recorded in the run's config (the evaluation's system prompt): the run folder is the
provider's.
"""
from __future__ import annotations

import random
import string

from pydantic import Field

from workbench.config import Spec
from workbench.data.types import Sample
from workbench.defenses.context import TrainingContext
from workbench.defenses.finetune.common import refusal_samples
from workbench.defenses.finetune.safeinstr import mix_in


class BEAParams(Spec):
    n_safety: int = Field(11, ge=1)  # safety examples paired with the trigger
    trigger: str | None = None  # the secret system prompt; None = random words from trigger_seed
    trigger_words: int = Field(40, ge=1)
    trigger_seed: int = 0


def bea_trigger(params: BEAParams) -> str:
    if params.trigger:
        return params.trigger
    rng = random.Random(f"bea-trigger/{params.trigger_seed}")
    return " ".join("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 8)))
                    for _ in range(params.trigger_words))


def data(params: BEAParams, samples: list[Sample], context: TrainingContext) -> list[Sample]:
    seed = context.seed
    safety = refusal_samples(params.n_safety, seed, system=bea_trigger(params), source="bea")
    context.notes["bea"] = {"n_safety_added": len(safety), "trigger_words": params.trigger_words
                            if not params.trigger else len(params.trigger.split())}
    return mix_in(samples, safety, seed)


def inference(params: BEAParams) -> dict:
    return {"system_prompt": bea_trigger(params)}


def plugins(params: BEAParams, context: TrainingContext) -> list:
    return []
