"""Boot a TransformerLens 4.x `TransformerBridge` on a *copy* of a loaded HF model, so analyses address
activations by hook name (`blocks.{L}.hook_resid_post`) while the HF model stays untouched.

Why a copy: booting replaces the HF model's sub-modules with bridge components and switches it to eager
attention, in place. `boot_bridge` deep-copies model and tokenizer first; the caller's model keeps its
modules, weights, attention implementation and logits (tested).

No compatibility mode: TransformerLens-style hook names already exist on a plain bridge, and
`enable_compatibility_mode()` would fold the RMSNorm weights and centre weights, changing the activations
away from the HF model's. Here bridge logits equal HF logits (max |Δ| ≈ 2e-7 on tiny-llama, ≈ 3e-5 on
SmolLM2: eager vs sdpa kernels).

Tokens: `bridge.cfg.default_prepend_bos` is set to whether the HF tokenizer itself puts BOS before plain text,
so `bridge.to_tokens(text)` gives the same ids as the HF tokenizer: False for SmolLM2 / tiny-llama (no BOS; the
chat template starts with `<|im_start|>`), True for Gemma (`<bos>` first). Best practice: build ids with the HF
tokenizer / chat template and pass the id tensor `[batch, pos]` to `bridge(...)`, `run_with_cache`,
`run_with_hooks`.

Which hook name holds which site (resid_pre / resid_post / attn_out / mlp_out / head_in) for a model family:
`workbench.models.sites` (`sites_of(model).hook_name(kind, layer)`); analyses ask it rather than spell names.

Hook names exposed (tiny-llama: n_layers 4, d_model 64, n_heads 4, n_kv_heads 2, d_head 16, d_mlp 176,
d_vocab 512; SmolLM2 has the same names with L < 30). Shapes for input `[batch, pos]`:

    hook_embed                          [batch, pos, d_model]      token embedding (also embed.hook_in/out)
    rotary_emb.hook_cos / hook_sin      rotary tables
    blocks.{L}.hook_resid_pre           [batch, pos, d_model]      residual stream entering block L
    blocks.{L}.ln1.hook_scale           [batch, pos, 1]            RMSNorm scale (1/rms)
    blocks.{L}.ln1.hook_normalized      [batch, pos, d_model]      (also ln1.hook_in / ln1.hook_out)
    blocks.{L}.attn.hook_q              [batch, pos, n_heads, d_head]
    blocks.{L}.attn.hook_k / hook_v     [batch, pos, n_kv_heads, d_head]   (GQA: not repeated)
    blocks.{L}.attn.hook_rot_q / hook_rot_k   q/k after RoPE
    blocks.{L}.attn.hook_cos / hook_sin
    blocks.{L}.attn.hook_attn_scores    [batch, n_heads, query_pos, key_pos]   pre-softmax (masked)
    blocks.{L}.attn.hook_pattern        [batch, n_heads, query_pos, key_pos]   softmax
    blocks.{L}.attn.hook_z              [batch, pos, n_heads, d_head]      per-head output before W_O
    blocks.{L}.attn.{q,k,v,o}.hook_in / hook_out,  blocks.{L}.attn.hook_in / hook_out
    blocks.{L}.hook_attn_out            [batch, pos, d_model]
    blocks.{L}.hook_resid_mid           [batch, pos, d_model]      after attention, before the MLP
    blocks.{L}.ln2.hook_scale / hook_normalized / hook_in / hook_out
    blocks.{L}.mlp.hook_pre             [batch, pos, d_mlp]        gate projection, before SiLU
    blocks.{L}.mlp.hook_pre_linear      [batch, pos, d_mlp]        up projection
    blocks.{L}.mlp.hook_post            [batch, pos, d_mlp]        SiLU(gate) * up, input of W_out
    blocks.{L}.mlp.{gate,in,out}.hook_in / hook_out,  blocks.{L}.mlp.hook_in / hook_out
    blocks.{L}.hook_mlp_out             [batch, pos, d_model]
    blocks.{L}.hook_resid_post          [batch, pos, d_model]      residual after block L (= HF decoder
                                                                   layer L output; also blocks.{L}.hook_out)
    ln_final.hook_scale / hook_normalized / hook_in / hook_out     final RMSNorm
    unembed.hook_in / unembed.hook_out, hook_unembed  [batch, pos, d_vocab]   logits

Weights by TransformerLens name: `bridge.W_E, W_U, W_Q, W_K, W_V, W_O, W_in, W_gate, W_out`; sizes in
`bridge.cfg` (n_layers, d_model, n_heads, d_head, d_mlp, d_vocab).
"""
from __future__ import annotations

import copy

import torch


def boot_bridge(model, tokenizer, *, device: str | torch.device | None = None,
                dtype: torch.dtype | None = None):
    """A `TransformerBridge` over a deep copy of `model` (HF causal LM, or a peft model: merged on the copy).

    device / dtype: default to the model's own. The caller's `model` and `tokenizer` are not modified.
    Returns the bridge in eval mode; `bridge.cfg.default_prepend_bos` is True exactly when the HF tokenizer adds
    BOS to plain text (see module docstring).
    """
    from peft import PeftModel  # deferred: peft
    from transformer_lens.model_bridge import TransformerBridge  # deferred: transformer_lens

    hf_model = copy.deepcopy(model)
    if isinstance(hf_model, PeftModel):
        hf_model = hf_model.merge_and_unload()
    if not getattr(hf_model.config, "architectures", None):
        # A model built in memory (not read from a folder) has no `architectures`, which TransformerLens reads
        # to pick its adapter for some families (Gemma 3's model_type "gemma3_text" is not in its fallback map).
        hf_model.config.architectures = [type(hf_model).__name__]
    param = next(hf_model.parameters())
    device = torch.device(device) if device is not None else param.device
    dtype = dtype or param.dtype
    hf_model = hf_model.to(device=device, dtype=dtype).eval()

    bridge_tokenizer = copy.deepcopy(tokenizer)
    # TransformerLens wants a BOS-adding tokenizer and would otherwise re-load one from
    # `init_kwargs["name_or_path"]` (a disk/hub read, and a KeyError for in-memory tokenizers). Give it
    # the copy with add_bos_token=True; default_prepend_bos below keeps BOS in to_tokens only where the caller's
    # tokenizer adds it too.
    bridge_tokenizer.add_bos_token = True
    bridge_tokenizer.init_kwargs.update(name_or_path=bridge_tokenizer.name_or_path, add_bos_token=True)

    bridge = TransformerBridge.boot_transformers(
        str(getattr(model.config, "_name_or_path", "") or "workbench-model"),
        hf_model=hf_model,
        tokenizer=bridge_tokenizer,
        device=device,
        dtype=dtype,
    )
    bridge.cfg.default_prepend_bos = _adds_bos(tokenizer)
    return bridge.eval()


def _adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts BOS before plain text (Gemma's does, SmolLM2's does not)."""
    bos = tokenizer.bos_token_id
    plain = tokenizer("a", add_special_tokens=False).input_ids
    return bos is not None and tokenizer("a").input_ids[:1] == [bos] != plain[:1]
