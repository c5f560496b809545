"""RepNoise: representation noising (Rosati et al., "Representation Noising: A Defence Mechanism Against
Harmful Finetuning", NeurIPS 2024, arXiv:2405.14577).

Remove the information about harmful answers from the hidden representations, so that fine-tuning has little
to recover. With f the alignment (retain) loss and, on a harmful Q→A batch, z_l the MLP outputs of layer l:

    L = f(w)  +  β · (1/L) Σ_l MMD²( z_l , N(0, I) )  −  α · log( 1 + (1/L) Σ_l CE_l )

- noise term: MMD² between the harmful answer tokens' MLP outputs (points in R^d_model) and as many standard
  Gaussian samples, with the authors' kernel: a sum of 5 Gaussian kernels whose bandwidths are the mean
  pairwise squared distance × 2^{-2..2}. We use the *unbiased* estimator (diagonal excluded), so it is ≈ 0
  when z_l is Gaussian, and each answer *token* is one point (the authors flatten each whole padded sequence
  into one point, giving batch-size-many points of dimension pos·d_model).
- ascent term: CE_l = cross-entropy of the harmful answers read off layer l with the logit lens
  (lm_head(norm(resid_post_l))), the last layer being the real logits; −α·log(1 + ·) pushes it up, gently.
  The authors average over all L+1 hidden states including the embeddings (which LoRA cannot change) and
  count the final layer twice; we average over the L layer outputs once each.
- f: our alignment mix (refusals + benign answers). The authors pair every harmful answer with a refusal to
  the same prompt; here the refusals come from the alignment batch instead.

Defaults: α = 0.1, β = 0.001 (the setting the Booster / T-Vaccine authors use for RepNoise on Llama-2 with
LoRA; the RepNoise paper's full fine-tuning uses α = 1). For CPU cost on SmolLM2 (30 layers × 49k vocab), the
logit-lens CE_l of the L−1 intermediate layers is estimated on a random subset of at most `lens_tokens` answer
tokens (an unbiased estimate of the mean), and the MMD on at most `mmd_tokens` tokens; the last layer uses
every answer token. Randomness is seeded by (seed, micro-batch), so resumed runs match.
Harmful data: `harmful_qa` train split (the authors: BeaverTails harmful pairs).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from workbench.config import Spec
from workbench.defenses.alignment.ascent_losses import log1p_term
from workbench.defenses.alignment.common import HarmfulBatches, answer_mask, device_of, harmful_batches
from workbench.defenses.context import TrainingContext
from workbench.models.sites import sites_of
from workbench.training.plugins import TrainPlugin, TrainState


class RepNoiseParams(Spec):
    alpha: float = Field(0.1, ge=0)  # α: weight of the harmful-loss ascent term
    beta: float = Field(0.001, ge=0)  # β: weight of the noise (MMD) term
    harmful: str = "harmful_qa"  # dataset of harmful Q→A pairs
    harmful_batch_size: int | None = Field(None, ge=1)  # None = the training batch size
    mmd_tokens: int = Field(256, ge=2)  # answer tokens (points) per MMD estimate
    lens_tokens: int = Field(64, ge=1)  # answer tokens per intermediate logit-lens CE


def mmd(x: torch.Tensor, y: torch.Tensor, kernel_mul: float = 2.0, kernel_num: int = 5) -> torch.Tensor:
    """Unbiased MMD² between samples x `[n, d]` and y `[m, d]` under the authors' multi-bandwidth Gaussian kernel."""
    z = torch.cat([x, y]).float()
    sq = z.pow(2).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2 * z @ z.T).clamp_min(0)
    n_all = z.size(0)
    base = (d2.detach().sum() / (n_all * n_all - n_all)).clamp_min(1e-12) / kernel_mul ** (kernel_num // 2)
    k = sum(torch.exp(-d2 / (base * kernel_mul ** i)) for i in range(kernel_num))
    n, m = x.size(0), y.size(0)
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    return ((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
            - 2 * kxy.mean())


def noise_loss(acts: list[torch.Tensor], generator: torch.Generator | None = None) -> torch.Tensor:
    """(1/L) Σ_l MMD²(acts[l], N(0, I)); each acts[l] is `[n_tokens, d_model]`."""
    total = 0.0
    for a in acts:
        gauss = torch.randn(a.shape, generator=generator, dtype=torch.float32).to(a.device)
        total = total + mmd(a, gauss)
    return total / len(acts)


class RepNoisePlugin(TrainPlugin):
    name = "repnoise"

    def __init__(self, params: RepNoiseParams, harmful: HarmfulBatches, seed: int):
        self.params, self.harmful, self.seed = params, harmful, seed
        self.last: dict = {}

    def setup(self, model, tokenizer, state: TrainState) -> list:
        self.harmful.setup(tokenizer)
        return []

    def extra_loss(self, model, batch: dict, outputs, state: TrainState) -> torch.Tensor:
        p = self.params
        hb = self.harmful.get(state.micro, device_of(model))
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + state.micro)
        sites = sites_of(model)
        with sites.capture(model, "mlp_out") as mlp, sites.capture(model, "resid_post") as resid:
            out = model(input_ids=hb["input_ids"], attention_mask=hb["attention_mask"], use_cache=False)
        n_layers = sites.n_layers

        # noise: answer tokens' MLP outputs → Gaussian   (answer tokens = unshifted loss mask)
        tok = (hb["labels"] != -100).nonzero(as_tuple=True)
        pick = torch.randperm(tok[0].numel(), generator=gen)[: p.mmd_tokens].to(tok[0].device)
        rows, cols = tok[0][pick], tok[1][pick]
        noise = noise_loss([mlp[layer][rows, cols] for layer in range(n_layers)], gen)

        # ascent: harmful answers' CE at every layer (logit lens below the top)
        mask = answer_mask(hb)
        targets = hb["labels"][:, 1:][mask]
        ces = [F.cross_entropy(out.logits[:, :-1][mask].float(), targets)]
        lens_pick = torch.randperm(targets.numel(), generator=gen)[: p.lens_tokens].to(targets.device)
        norm, head = sites.module(model, "final_norm"), sites.module(model, "lm_head")
        for layer in range(n_layers - 1):
            h = resid[layer][:, :-1][mask][lens_pick]
            ces.append(F.cross_entropy(head(norm(h)).float(), targets[lens_pick]))
        harmful_ce = torch.stack(ces).mean()
        self.last = {"noise": noise.item(), "harmful_ce": harmful_ce.item(), "final_ce": ces[0].item()}
        return p.beta * noise + p.alpha * log1p_term(harmful_ce)


def plugins(params: RepNoiseParams, context: TrainingContext) -> list[TrainPlugin]:
    return [RepNoisePlugin(params, harmful_batches(params, context, params.harmful_batch_size),
                           seed=context.seed)]
