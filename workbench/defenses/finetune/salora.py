"""SaLoRA: LoRA whose updates never touch a fixed safety subspace of the aligned model (Li, Si, Backes, Zhang &
Wang, "SaLoRA: Safety-Alignment Preserved Low-Rank Adaptation", ICLR 2025, arXiv:2501.01765).

LoRA fine-tuning breaks alignment by changing the features that safety relies on. SaLoRA inserts a fixed
"safety module" C in front of every adapter's output, h = W x + s · C B A x, with C = I − U Uᵀ built from the
aligned model on safety data, so the update s · C B A never changes a layer's output inside span(U).

Exactly what we compute, per LoRA-adapted linear layer W (`[d_out, d_in]`, e.g. every q/k/v/o projection):
  1. safety features: Y = W X on the safety data — `n_safety` AdvBench train prompts answered with template
     refusals (`common.refusal_samples`), chat-formatted like training; X = the layer's inputs at every
     non-padding token of prompt + refusal, computed by the aligned model (adapters disabled);
  2. U = the top-k left singular vectors of Yᵀ (`[d_out, k]`, k = `rank`, capped at d_out), i.e. the top-k
     eigenvectors of the uncentred output Gram matrix Σ_t y_t y_tᵀ (float64) — the layer's dominant output
     directions on safety data;
  3. the adapter's update is kept in the orthogonal complement: every gradient of B (`[d_out, r]`) is projected,
     ∇B ← (I − U Uᵀ) ∇B (what C in the forward pass does to the gradient), and after every optimizer step
     B ← (I − U Uᵀ) B (AdamW's element-wise scaling would otherwise leak out of the complement). B starts at 0,
     so at every step Uᵀ B = 0 and Uᵀ ΔW = s · Uᵀ B A = 0 exactly (up to float rounding), and C B = B: the
     trained adapter *is* SaLoRA's C B A, and merging it (the loop merges LoRA at the end) keeps the property.

Deviations: SaLoRA also initialises A and B from the task data ("task-specific initialisation"); we keep peft's
default initialisation (A random, B = 0). The safety data are our refusal templates, not the paper's
harmful-prompt set. Requires LoRA (`--method lora`, the default): the plugin needs adapters to project.
Defaults: k = 8 directions per layer, 64 safety examples — for SmolLM2 (d_out 576 for q/o, 192 for k/v)
roughly the paper's ratio of safety rank to width; not tuned here.
"""
from __future__ import annotations

import torch
from pydantic import Field

from workbench.config import Spec
from workbench.data.chat import collate, encode
from workbench.defenses.context import TrainingContext
from workbench.defenses.finetune.common import device_of, refusal_samples
from workbench.models.sites import strip_peft
from workbench.training.plugins import TrainPlugin, TrainState


class SaLoRAParams(Spec):
    rank: int = Field(8, ge=1)  # k: safety directions per adapted layer
    n_safety: int = Field(64, ge=1)  # safety examples (harmful prompt → refusal) that define the subspace
    batch_size: int = Field(8, ge=1)  # batch size for collecting the safety features


def lora_modules(model) -> dict[str, torch.nn.Module]:
    """peft LoRA layers (name → module with `base_layer`, `lora_A`, `lora_B`) of the active adapter."""
    return {n: m for n, m in model.named_modules()
            if hasattr(m, "base_layer") and hasattr(m, "lora_B") and len(getattr(m, "lora_B", {})) > 0}


def _adapter(module) -> str:
    return next(iter(module.lora_B.keys()))


@torch.no_grad()
def output_gram(model, modules: dict[str, torch.nn.Module], batches: list[dict]) -> dict[str, torch.Tensor]:
    """Σ over non-padding tokens of y yᵀ (float64 `[d_out, d_out]`) with y = base_layer(x), adapters disabled."""
    grams = {n: None for n in modules}
    current: dict = {}

    def make(name):
        def hook(module, args, output):
            y = output[current["mask"]].double()  # [tokens, d_out]
            g = y.T @ y
            grams[name] = g if grams[name] is None else grams[name] + g
        return hook

    handles = [m.base_layer.register_forward_hook(make(n)) for n, m in modules.items()]
    was_training = model.training
    model.eval()
    try:
        with model.disable_adapter():
            for b in batches:
                current["mask"] = b["attention_mask"].bool()
                model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return grams


def top_directions(gram: torch.Tensor, k: int) -> torch.Tensor:
    """The top-k eigenvectors of a symmetric PSD matrix, `[d, k]` (float64), largest eigenvalue first."""
    vals, vecs = torch.linalg.eigh(gram)
    k = min(k, gram.shape[0])
    return vecs[:, vals.argsort(descending=True)[:k]].contiguous()


class SaLoRAPlugin(TrainPlugin):
    name = "salora"

    def __init__(self, params: SaLoRAParams, samples, max_len: int = 256, system_prompt: str | None = None,
                 report: dict | None = None):
        self.params, self.samples, self.max_len, self.system_prompt = params, samples, max_len, system_prompt
        self.report = report if report is not None else {}
        self.bases: dict[str, torch.Tensor] = {}  # merged-model module name → U `[d_out, k]`
        self._proj: list[tuple[torch.nn.Parameter, torch.Tensor]] = []  # (B weight, U in B's dtype/device)

    def setup(self, model, tokenizer, state: TrainState) -> list:
        modules = lora_modules(model)
        if not modules:
            raise ValueError("salora needs LoRA adapters: train with --method lora")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        enc = [encode(tokenizer, s, self.max_len, self.system_prompt) for s in self.samples]
        device = device_of(model)
        batches = [{k: v.to(device) for k, v in collate(enc[i:i + self.params.batch_size], pad).items()}
                   for i in range(0, len(enc), self.params.batch_size)]
        grams = output_gram(model, modules, batches)
        handles = []
        for name, module in modules.items():
            B = module.lora_B[_adapter(module)].weight  # [d_out, r]
            U = top_directions(grams[name], self.params.rank)
            self.bases[strip_peft(name)] = U.float().cpu()
            U = U.to(device=B.device, dtype=B.dtype)
            self._proj.append((B, U))
            handles.append(B.register_hook(lambda g, U=U: g - U @ (U.T @ g)))
        self.project()
        self.report.update(n_layers_projected=len(modules), rank=self.params.rank, n_safety=len(self.samples))
        return handles

    @torch.no_grad()
    def project(self) -> None:
        """B ← (I − U Uᵀ) B for every adapter."""
        for B, U in self._proj:
            B.sub_(U @ (U.T @ B))

    def on_step_end(self, model, state: TrainState) -> None:
        self.project()


def plugins(params: SaLoRAParams, context: TrainingContext) -> list[TrainPlugin]:
    train = context.train
    if train.method != "lora":
        raise ValueError("salora projects LoRA updates: use --method lora (it cannot run with --method full)")
    report = context.notes.setdefault("salora", {})
    samples = refusal_samples(params.n_safety, context.seed)
    return [SaLoRAPlugin(params, samples, train.max_len, train.system_prompt, report)]
