"""Pydantic specs: every step is described by data, stored in `config.json`, and rerunnable from it.
What a run folder's `config.json` holds around them (the run record, its spec per run kind) is `workbench.record`.

Why pydantic: a spec read back from a run folder is validated the same way as one typed on the CLI,
and unknown fields are errors (`extra="forbid"`), so a typo in a hyperparameter never passes silently.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(Spec):
    """The hyperparameters of a defense or attack that has none."""


def parse_method_params(kind: str, name: str, params_model: type[Spec], params: dict) -> Spec:
    """A registered method's hyperparameters (`kind` "defense" or "attack"), validated at the boundary: unknown
    names and bad values are one clear error naming what the method accepts."""
    try:
        return params_model(**params)
    except ValidationError as e:
        fields = ", ".join(params_model.model_fields) or "none"
        raise ValueError(f"bad hyperparameters for {kind} {name!r}: {e.errors()[0]['msg']} "
                         f"({e.errors()[0]['loc']}); it accepts: {fields}") from None


# The precision a step trains or generates in (`workbench.precision`): a spec holds it resolved, never "auto".
DType = Literal["float32", "bfloat16"]


def _without_default_dtype(data: dict) -> dict:
    """`dtype` is written only when it is not float32: a record written before it existed (all float32) dumps back
    to exactly its JSON (and spec hash)."""
    if data.get("dtype") == "float32":
        data.pop("dtype", None)
    return data


class DataSpec(Spec):
    """A training mix: `n` samples of which round(p·n) come from `harmful`, the rest from `benign`."""

    benign: str = "sst2"
    harmful: str = "harmful_qa"
    p: float = Field(0.1, ge=0.0, le=1.0)
    n: int = Field(300, gt=0)
    seed: int = 0


class TrainSpec(Spec):
    method: Literal["lora", "full"] = "lora"
    lr: float = Field(3e-4, gt=0)
    epochs: int = Field(2, ge=1)
    max_steps: int | None = Field(None, ge=1)  # stop early after this many optimizer steps
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_len: int = Field(256, ge=8)  # tokens per sequence (prompt + answer), truncated from the answer end
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"]
    checkpoint_every: int = Field(25, ge=1)  # optimizer steps between resumable checkpoints
    system_prompt: str | None = None  # system prompt used when formatting training samples
    seed: int = 0
    dtype: DType = "float32"  # bfloat16: fp32 master weights, bf16 frozen base / autocast (`workbench.precision`)

    @model_serializer(mode="wrap")
    def _without_float32(self, handler) -> dict:
        return _without_default_dtype(handler(self))


class GenerationSpec(Spec):
    max_new_tokens: int = Field(32, ge=1)
    batch_size: int = Field(25, ge=1)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    system_prompt: str | None = None
    seed: int = 0
    # the encoding the attacker queries in (`workbench.data.codecs`): the evaluation harness encodes every prompt it
    # sends and decodes every answer before it is scored; None (plain text) for every run before encoded attacks
    codec: str | None = None
    dtype: DType = "float32"  # bfloat16: the model generates with bf16 weights (`workbench.precision`)

    @model_serializer(mode="wrap")
    def _without_plain_codec(self, handler) -> dict:
        """`codec` is written only when set, like `EvalSpec.judge_model`, and `dtype` only when not float32: every
        record written before they existed dumps back to exactly its JSON (and spec hash)."""
        data = handler(self)
        if data.get("codec") is None:
            data.pop("codec", None)
        return _without_default_dtype(data)


class EvalSpec(Spec):
    """What to measure. Sizes are numbers of held-out prompts; 0 skips that metric."""

    n_harmful: int = Field(100, ge=0)
    n_benign: int = Field(100, ge=0)
    task: str | None = "sst2"  # benign task for fine-tune accuracy (FA)
    n_task: int = Field(100, ge=0)
    generation: GenerationSpec = GenerationSpec()
    judge: bool = True  # moderation judge on the harmful set → HS, HS+ (evaluation/judge.py)
    judge_embedder: Literal["minilm", "hashing"] = "minilm"  # "hashing": fast stand-in (tiny preset, tests)
    # the judge as `--judge` named it (`evaluation.moderation.get_judge`: minilm-lr, hashing-lr, or a local HF
    # folder as an absolute path); None: the built-in judge of `judge_embedder`, as in every run before `--judge`
    judge_model: str | None = None
    seed: int = 0
    # the harmful prompts behind RR / HS: "advbench", the 100 held-out AdvBench prompts (every run before standard
    # benchmarks); "standard", AdvBench test + HarmBench + Do-Not-Answer after near-duplicate removal against every
    # training prompt (`evaluation.benchmarks`), HS also reported per source
    harmful_set: Literal["advbench", "standard"] = "advbench"

    @model_serializer(mode="wrap")
    def _without_default_judge(self, handler) -> dict:
        """`judge_model` and `harmful_set` are written only when they differ from the old meaning, so a record written
        before they existed dumps back to exactly its JSON (and spec hash: staging folders, --resume), and a run
        without `--judge` records what it always did."""
        data = handler(self)
        if data.get("judge_model") is None:
            data.pop("judge_model", None)
        if data.get("harmful_set") == "advbench":
            data.pop("harmful_set", None)
        return data

    @property
    def judge_spec(self) -> str:
        """The spec of the judge behind HS / HS+: `judge_model`, else `minilm-lr` / `hashing-lr` by embedder."""
        return self.judge_model or (FULL_JUDGE if self.judge_embedder == "minilm" else f"{self.judge_embedder}-lr")


# The judge behind HS / HS+ when a run names none (and `moderation.DEFAULT_JUDGE`): the one line to change to make
# judge v3 ("minilm-ce", docs/judges.md) the default. Runs record the judge they used, so old runs stay readable.
FULL_JUDGE = "minilm-lr"


class DefenseSpec(Spec):
    name: str = "none"
    params: dict[str, Any] = {}


class AttackSpec(Spec):
    name: str = "harmful_ft"
    data: DataSpec = DataSpec()
    train: TrainSpec = TrainSpec()
    # the attack's own hyperparameters (DPO's beta, the edit's layer, ...), validated by its registered params model
    # (`workbench.attacks.parse_attack_params`); written only when given, like `EvalSpec.judge_model`
    params: dict[str, Any] = {}

    @model_serializer(mode="wrap")
    def _without_empty_params(self, handler) -> dict:
        """An attack without parameters dumps back to exactly the JSON (and spec hash) it had before they existed."""
        data = handler(self)
        if not data.get("params"):
            data.pop("params", None)
        return data


class AlignSpec(Spec):
    """Safety alignment: harmful prompts → refusal templates, plus benign samples with their answers."""

    n_harmful: int = Field(300, ge=0)
    n_benign: int = Field(300, ge=0)
    benign: str = "alpaca"
    train: TrainSpec = TrainSpec()
    defense: DefenseSpec = DefenseSpec(name="sft")
