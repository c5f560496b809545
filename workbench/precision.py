"""Precision: what a spec's `dtype` means, what "auto" resolves to, and the steps that stay float32 whatever it says.

`TrainSpec.dtype` and `GenerationSpec.dtype` are "float32" (every run before they existed; the default, not
written to config.json) or "bfloat16". "auto" is accepted where a spec is built (`--dtype auto`) and resolved here
before any run is written, so a record always names the precision that ran (`resolve_dtype`):

    auto  →  bfloat16 where the hardware multiplies bf16 natively — a CPU with AMX-BF16 or AVX512-BF16 (the flags
             `workbench.machine` reads from /proc/cpuinfo), or a CUDA GPU that supports bf16 when the model runs
             on one — else float32 (bf16 without those units is emulated, and slower than float32).

Training in bfloat16 (`training.loop`, the recipe of mixed-precision training: Micikevicius et al. 2018, "Mixed
Precision Training", with bf16 as Kalamkar et al. 2019, "A Study of BFLOAT16 for Deep Learning Training"):
trainable parameters and AdamW's state stay float32 ("master weights") and every forward runs under
`torch.autocast(dtype=bfloat16)`. LoRA also stores the frozen base in bf16, cast once when training starts
(`cast_params`), and turns off peft's cast of each adapter's input to the adapter's float32 (under autocast the
adapters multiply in bf16, so that cast would only copy every activation twice); the float32 originals are kept
aside and put back before the merge, so the saved model is the float32 base plus the float32 delta, as a float32
run would save it. Full fine-tuning keeps float32 weights that autocast casts per product. Generation in bfloat16
stores the weights in bf16 for the call and gives the float32 originals back afterwards.

Where bfloat16 is not safe (8 significant bits, about 3 decimal digits), the step runs in float32 whatever the
spec says:
- Booster's h(w) − h(w') and Vaccine's / T-Vaccine's activation perturbation: a difference of two nearby losses and a
  normalised gradient step, both of the size of bf16's rounding; these plugins declare `fp32_reason` and the
  training loop then trains the whole run in float32 (recorded as `dtype` in training.json).
- the landscape's points, Wanda / Antidote scores and SafeLoRA's projection scores: tiny weight perturbations and
  products of weights and activation norms, compared across models; these never read the spec and upcast any model
  handed to them (`fp32_required`).
- the judge: it loads its own model in float32 and never reads the generation spec.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator

from workbench.config import DType
from workbench.machine import cpu_flags

DTYPE_CHOICES = ("float32", "bfloat16", "auto")  # what `--dtype` accepts
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # x86 units that multiply bf16 natively


def auto_dtype(flags: Iterable[str] | None = None, device: str = "cpu") -> DType:
    """bfloat16 where `device` multiplies bf16 natively, else float32. `flags`: a CPU's flags to decide from alone;
    by default this machine's (`machine.cpu_flags`), confirmed by `bf16_matmul_faster`; `device` "cuda" asks the
    GPU instead (`torch.cuda.is_bf16_supported`)."""
    if device.startswith("cuda"):
        import torch  # deferred: torch

        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    if not set(cpu_flags() if flags is None else flags) & set(BF16_CPU_FLAGS):
        return "float32"
    # Given flags decide alone. On this machine the flag is not enough: a 2-core Intel Xeon with AVX512-BF16 but no
    # AMX multiplied bf16 at 0.6× its float32 rate (docs/benchmarks.md), so bf16 must also measure faster.
    return "bfloat16" if flags is not None or bf16_matmul_faster() else "float32"


def matmul_seconds(size: int, dtype, reps: int = 3, device: str = "cpu") -> float:
    """Fastest of `reps` `size`² products after one untimed warm-up (kernels chosen, caches filled): the
    micro-benchmark estimate least disturbed by other load on the machine."""
    import time

    import torch  # deferred: torch

    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    a @ b
    best = float("inf")
    for _ in range(max(1, reps)):
        sync()
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


@functools.lru_cache(maxsize=1)
def bf16_matmul_faster(size: int = 1024, reps: int = 3) -> bool:
    """Whether this CPU multiplies `size`² matrices faster in bfloat16 than in float32 (well under a second where
    bf16 is native). Measured once per process."""
    import torch  # deferred: torch

    return matmul_seconds(size, torch.bfloat16, reps) < matmul_seconds(size, torch.float32, reps)


def resolve_dtype(name: str | None, flags: Iterable[str] | None = None, device: str = "cpu") -> DType:
    """The precision `name` asks for, "auto" resolved (`auto_dtype`); None is float32. ValueError for another name.
    The steps run their models on the CPU, so "auto" reads the CPU flags unless `device` says otherwise."""
    if name is None:
        return "float32"
    if name not in DTYPE_CHOICES:
        raise ValueError(f"unknown dtype {name!r}; use one of {', '.join(DTYPE_CHOICES)}")
    return auto_dtype(flags, device) if name == "auto" else name


def torch_dtype(name: DType):
    import torch  # deferred: torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


@contextlib.contextmanager
def cast_params(params: Iterable, dtype) -> Iterator[None]:
    """Store every floating parameter of `params` in `dtype` inside the block (cast once, not on every forward),
    then give each back the very tensor it held: bit-exact, no float32 → bf16 → float32 round trip."""
    kept = []
    for p in params:
        if p.is_floating_point() and p.dtype != dtype:
            kept.append((p, p.data))
            p.data = p.data.to(dtype)
    try:
        yield
    finally:
        for p, data in kept:
            p.data = data


@contextlib.contextmanager
def contiguous_head_input(model) -> Iterator[None]:
    """Inside the block the LM head gets a contiguous input. Why: HF's `logits_to_keep` hands the head a slice of
    the hidden states (batch × kept positions × hidden) that cannot be viewed as 2-D, so `matmul` broadcasts the
    head's weight over the batch, and in bfloat16 on the CPU the batched product then materialises that expanded
    weight (batch × vocab × hidden, gigabytes per call) where float32 reads it strided. A contiguous input makes it
    one 2-D product. Used only for bfloat16, so float32 runs compute exactly as before."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        yield
        return
    handle = head.register_forward_pre_hook(lambda _module, args: (args[0].contiguous(), *args[1:]))
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def weights_in(model, dtype: DType) -> Iterator[None]:
    """Inference in `dtype` inside the block: bfloat16 stores the model's weights in bf16 (cast once, the float32
    tensors given back afterwards, `cast_params`) with the LM head's input made contiguous
    (`contiguous_head_input`); float32 leaves the model exactly as it was handed in."""
    if dtype == "float32":
        yield
        return
    with cast_params(model.parameters(), torch_dtype(dtype)), contiguous_head_input(model):
        yield


def fp32_required(model):
    """`model` with every floating parameter and buffer in float32 (upcast in place where needed), for the steps
    that must not run in bfloat16 (module docstring): whatever precision the model was handed in, they compute in
    float32."""
    import torch  # deferred: torch

    if any(t.is_floating_point() and t.dtype != torch.float32
           for t in (*model.parameters(), *model.buffers())):
        model.float()
    return model
