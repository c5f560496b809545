"""The one training loop: full fine-tuning or LoRA, AdamW, gradient accumulation, resumable.

Read top to bottom: encode → (LoRA wrap) → param groups → for each step: micro-batches → task loss (`lm_loss`
or a plugin's) + the plugins' extra terms → backward (or a plugin's whole backward) → clip → AdamW → checkpoint.
Extension points are documented in `workbench.training.plugins`; defenses only ever add plugins.

Precision (`TrainSpec.dtype`, `workbench.precision`): in bfloat16 the trainable parameters and AdamW's state stay
float32 and every forward pass runs under `torch.autocast(dtype=bfloat16)`; LoRA also stores the frozen base in bf16
for the run (cast once after wrapping, not on every forward; the float32 originals come back before the merge). A
plugin with
`fp32_reason` makes the whole run float32. `state.dtype` (training.json's `dtype`) is the precision that ran.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from peft.helpers import disable_input_dtype_casting
from tqdm.auto import tqdm

from workbench.config import TrainSpec
from workbench.data.chat import bucketed_batches, collate, encode
from workbench.data.types import Sample
from workbench.precision import cast_params, contiguous_head_input, torch_dtype
from workbench.training.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from workbench.training.plugins import TrainPlugin, TrainState, check_one_objective, lm_loss


@dataclass
class TrainResult:
    model: torch.nn.Module  # plain HF model (LoRA merged)
    state: TrainState

    @property
    def summary(self) -> dict:
        s = self.state
        return {
            "steps": s.step, "final_loss": s.losses[-1] if s.losses else None,
            "first_loss": s.losses[0] if s.losses else None, "answer_tokens": s.tokens,
            "train_seconds": round(s.seconds, 2),
            "tokens_per_second": round(s.tokens / s.seconds, 1) if s.seconds else None, "dtype": s.dtype,
        }


def wrap_lora(model, spec: TrainSpec):
    from peft import LoraConfig, get_peft_model  # deferred: peft

    cfg = LoraConfig(r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout,
                     target_modules=list(spec.lora_targets), task_type="CAUSAL_LM", bias="none")
    return get_peft_model(model, cfg)


def adamw(groups: list[dict], spec: TrainSpec) -> torch.optim.AdamW:
    """Fused AdamW (one kernel over all tensors, as Trainer's default): several times faster optimizer
    steps than the per-tensor loop on CPU and GPU, which matters for full fine-tuning; foreach otherwise."""
    try:
        return torch.optim.AdamW(groups, lr=spec.lr, weight_decay=spec.weight_decay, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without a fused kernel
        return torch.optim.AdamW(groups, lr=spec.lr, weight_decay=spec.weight_decay)


def lr_factor(step: int, spec: TrainSpec, total: int) -> float:
    """Linear warm-up then linear decay to 10 % — a pure function of the step, so resume needs no state."""
    if spec.warmup_steps and step < spec.warmup_steps:
        return (step + 1) / spec.warmup_steps
    span = max(1, total - spec.warmup_steps)
    return max(0.1, 1.0 - 0.9 * (step - spec.warmup_steps) / span)


def total_steps(n_samples: int, spec: TrainSpec) -> int:
    """Optimizer steps of a run on `n_samples`: `max_steps`, or the epochs' worth of (accumulated) batches."""
    steps_per_epoch = math.ceil(math.ceil(n_samples / spec.batch_size) / spec.grad_accum)
    return spec.max_steps or steps_per_epoch * spec.epochs


def training_dtype(spec: TrainSpec, plugins) -> str:
    """The precision a run trains in: `spec.dtype`, or float32 when a plugin's mechanism needs it (`fp32_reason`)."""
    return "float32" if any(p.fp32_reason for p in plugins) else spec.dtype


def _micro_batches(encoded, spec: TrainSpec, pad_id: int):
    """Infinite stream of collated batches in a deterministic order. Each batch carries `index`, the positions of
    its rows in the training samples, so a plugin can look up what it keeps per sample (DPO's rejected answers and
    reference log-probabilities)."""
    lengths = [len(e) for e in encoded]
    epoch = 0
    while True:
        for idx in bucketed_batches(lengths, spec.batch_size, seed=spec.seed * 1000 + epoch):
            yield {**collate([encoded[i] for i in idx], pad_id), "index": torch.tensor(idx, dtype=torch.long)}
        epoch += 1


def train(model, tokenizer, samples: list[Sample], spec: TrainSpec, plugins: list[TrainPlugin] = (),
          checkpoint_dir: str | Path | None = None, progress: bool = True, desc: str = "train") -> TrainResult:
    """Fine-tune `model` on `samples`; returns the trained plain model (LoRA merged) and the loop state.

    With `checkpoint_dir`, a checkpoint is written every `spec.checkpoint_every` steps and on interrupt,
    and an existing one is resumed from, giving the same result as an uninterrupted run.
    """
    if not samples:
        raise ValueError("training data is empty")
    check_one_objective(plugins)  # before any work: setup may load reference models
    device = next(model.parameters()).device
    torch.manual_seed(spec.seed)
    encoded = [encode(tokenizer, s, spec.max_len, spec.system_prompt) for s in samples]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    if spec.method == "lora":
        model = wrap_lora(model, spec)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    model.train()
    state = TrainState(dtype=training_dtype(spec, plugins))
    low = torch_dtype(state.dtype) if state.dtype != "float32" else None
    precision = contextlib.ExitStack()  # LoRA: the frozen base in bf16 until the merge (module docstring)
    if low is not None and spec.method == "lora":
        precision.enter_context(cast_params([p for p in model.parameters() if not p.requires_grad], low))
    if low is not None:
        precision.enter_context(contiguous_head_input(model))
    if low is not None and spec.method == "lora":  # autocast runs the float32 adapters in bf16: no activation casts
        precision.enter_context(disable_input_dtype_casting(model))

    def forward_precision():
        """bf16: autocast around every forward pass (full fine-tuning: float32 weights; LoRA: the bf16 base and the
        float32 adapters, whose inputs peft then leaves in bf16)."""
        if low is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=low)

    # setup runs before a checkpoint is loaded: a plugin computing reference values from the model (DPO's reference
    # log-probabilities) sees the unmodified starting model on resume as well, in the precision training runs in
    try:
        with forward_precision():
            handles = [h for p in plugins for h in p.setup(model, tokenizer, state)]
    except BaseException:
        precision.close()
        raise

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = next((g for p in plugins if (g := p.param_groups(named, spec.lr)) is not None), None)
    if groups is None:
        groups = [{"params": [p for _, p in named], "lr": spec.lr}]
    grouped = {id(p) for g in groups for p in g["params"]}
    for _, p in named:
        if id(p) not in grouped:
            p.requires_grad_(False)  # left out of every group = frozen
    for g in groups:
        g.setdefault("base_lr", g["lr"])
    optimizer = adamw(groups, spec)

    total = total_steps(len(encoded), spec)
    state.total_steps = total
    ckpt = Path(checkpoint_dir) if checkpoint_dir else None
    if ckpt and has_checkpoint(ckpt):
        state = load_checkpoint(ckpt, model, optimizer)
        state.total_steps, state.dtype = total, training_dtype(spec, plugins)

    custom = [p for p in plugins if p.overrides_backward()]
    objective = [p for p in plugins if p.overrides_task_loss()]
    need_hidden = any(p.needs_hidden_states for p in plugins)

    stream = _micro_batches(encoded, spec, pad_id)
    for _ in range(state.micro):  # skip what a resumed run already consumed
        next(stream)
    bar = tqdm(total=total, initial=state.step, desc=desc, disable=not progress, unit="step", dynamic_ncols=True)
    t0 = time.perf_counter() - state.seconds
    try:
        while state.step < total:
            for g in optimizer.param_groups:
                g["lr"] = g["base_lr"] * lr_factor(state.step, spec, total)
            step_loss, step_tokens = 0.0, 0
            for _ in range(spec.grad_accum):
                batch = next(stream)
                state.micro += 1
                for p in plugins:
                    batch = p.next_batch(batch, state)
                batch = {k: v.to(device) for k, v in batch.items()}
                scale = 1.0 / spec.grad_accum
                if custom:
                    with forward_precision():
                        loss_val = custom[0].backward(model, batch, state, scale)
                else:
                    with forward_precision():
                        own = objective[0].task_loss(model, batch, state, need_hidden) if objective else None
                        loss, out = own if own is not None else lm_loss(model, batch, output_hidden_states=need_hidden)
                        total_loss = loss
                        for p in plugins:
                            extra = p.extra_loss(model, batch, out, state)
                            if extra is not None:
                                total_loss = total_loss + extra
                    (total_loss * scale).backward()
                    loss_val = loss.item()
                step_loss += loss_val * scale
                step_tokens += int((batch["labels"][:, 1:] != -100).sum())
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.tokens += step_tokens
            state.losses.append(step_loss)
            state.seconds = time.perf_counter() - t0
            # recorded before on_step_end: an interrupt raised there (Ctrl-C, a test's StopAt) checkpoints this step
            # with its diagnostics, so a resumed run's training.json equals an uninterrupted one's
            diag = {p.name: dict(p.last) for p in plugins if getattr(p, "last", None)}
            if diag:
                state.diagnostics.append({"step": state.step, **diag})
            for p in plugins:
                p.on_step_end(model, state)
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.3f}", tok_s=f"{state.tokens / max(state.seconds, 1e-9):.0f}")
            if ckpt and state.step % spec.checkpoint_every == 0 and state.step < total:
                save_checkpoint(ckpt, model, optimizer, state)
    except KeyboardInterrupt:
        if ckpt:
            optimizer.zero_grad(set_to_none=True)  # a half-accumulated step is redone on resume
            state.micro = state.step * spec.grad_accum
            save_checkpoint(ckpt, model, optimizer, state)
        raise
    finally:
        bar.close()
        for h in handles:
            h.remove()
        precision.close()  # the float32 base back: merged and saved as a float32 run would be

    model.eval()
    if spec.method == "lora":
        model = model.merge_and_unload()
    for p in model.parameters():
        p.requires_grad_(False)
    return TrainResult(model=model, state=state)
