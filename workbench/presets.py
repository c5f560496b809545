"""The two size presets every step reads its default specs from: `full` (the real SmolLM2 workload) and `tiny`
(seconds, for tests and `--model tiny-llama`). Specs only, so evaluation splits and commands can read them without
importing the steps that run them."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from workbench.config import AlignSpec, AttackSpec, DataSpec, EvalSpec, GenerationSpec, TrainSpec
from workbench.precision import resolve_dtype


@dataclass(frozen=True)
class Preset:
    """`eval`: the reported test sets. `validation`: the sizes and judge of validation-split evaluations (choosing
    hyperparameters, stress studies), whose harmful prompts are AdvBench train-side prompts (`data.validation`,
    220 outside the full alignment mix): `full` keeps its 100 there while its test set grew to 300 standard
    benchmark prompts."""

    align: AlignSpec
    attack: AttackSpec
    eval: EvalSpec
    validation: EvalSpec
    quickstart: EvalSpec  # `make run`'s test sets: its workload stays fixed when the reported sets grow (#19)
    repair: str = "safelora"  # the quickstart's post-fine-tuning repair of the attacked model
    inside: dict = field(default_factory=dict)  # the quickstart's refusal-direction sizes (analysis Spec fields)

    def in_precision(self, dtype: str | None) -> Preset:
        """The same preset with every training and generation spec in `dtype` ("auto" resolved for this machine;
        None: as is). Steps that must stay float32 ignore it (`workbench.precision`); the refusal direction's
        selection screens its candidates in bf16 and re-scores those that could be chosen in float32, so its
        choice stays float32's (`refusal_direction.Spec.screen_dtype`)."""
        if dtype is None:
            return self
        chosen = resolve_dtype(dtype)

        def train(spec):
            return spec.model_copy(update={"train": spec.train.model_copy(update={"dtype": chosen})})

        def evaluation(spec: EvalSpec) -> EvalSpec:
            return spec.model_copy(update={"generation": spec.generation.model_copy(update={"dtype": chosen})})

        inside = {**self.inside, "screen_dtype": chosen} if chosen != "float32" else self.inside
        return replace(self, align=train(self.align), attack=train(self.attack), eval=evaluation(self.eval),
                       validation=evaluation(self.validation), quickstart=evaluation(self.quickstart), inside=inside)


def preset(name: str, seed: int = 0) -> Preset:
    if name == "full":
        train = TrainSpec(method="lora", lr=3e-4, epochs=2, batch_size=8, max_len=256, seed=seed)
        evaluation = dict(n_benign=100, task="sst2", n_task=100, seed=seed,
                          generation=GenerationSpec(max_new_tokens=32, batch_size=25, seed=seed))
        return Preset(
            align=AlignSpec(n_harmful=200, n_benign=400, train=train),
            attack=AttackSpec(name="harmful_ft", data=DataSpec(benign="sst2", harmful="harmful_qa", p=0.1, n=300,
                                                                seed=seed), train=train),
            eval=EvalSpec(n_harmful=300, harmful_set="standard", **evaluation),
            validation=EvalSpec(n_harmful=100, **evaluation),
            quickstart=EvalSpec(n_harmful=100, **evaluation),
            inside=dict(n_train=64, n_val=16, n_generate=16, layer_stride=2, n_samples=2),
        )
    if name == "tiny":
        train = TrainSpec(method="lora", lr=1e-3, epochs=1, batch_size=8, max_len=64, seed=seed, lora_r=4)
        evaluation = EvalSpec(n_harmful=8, n_benign=8, task="sst2", n_task=8, seed=seed, judge_embedder="hashing",
                              generation=GenerationSpec(max_new_tokens=8, batch_size=8, seed=seed))
        return Preset(
            align=AlignSpec(n_harmful=16, n_benign=16, train=train),
            attack=AttackSpec(name="harmful_ft", data=DataSpec(benign="sst2", harmful="harmful_qa", p=0.25, n=16,
                                                                seed=seed), train=train),
            eval=evaluation, validation=evaluation, quickstart=evaluation,
            inside=dict(n_train=4, n_val=2, n_generate=2, max_new_tokens=4, n_boot=100, n_samples=1),
        )
    raise ValueError(f"unknown preset {name!r}; use 'full' or 'tiny'")


def default_preset(model: str) -> str:
    return "tiny" if model.startswith("tiny") else "full"
