"""`workbench.models.sites` against an oracle, on tiny-llama and a tiny random Gemma 3.

Oracle: raw `register_forward_hook`s on the HF modules, addressed by hand in this file (not through sites.py),
plus the residual-stream identities that define the sites (resid_post = resid_pre + attn_out + mlp_out, ...),
and the TransformerLens bridge booted the way the project boots it (`boot_bridge`, on a deep copy), read at
`sites.hook_name(kind, layer)`.

Tiny Gemma 3: the registered tiny-gemma3 (workbench/models/tiny.py): d_model 64, 4 layers (sliding, global,
sliding, global), 4 query heads / 1 KV head, head_dim 32 (≠ 64 / 4), tied embeddings, non-zero norm weights (gain
1 + w), sliding window 4 < the prompt length, so the sliding-window mask is exercised.
"""
from __future__ import annotations

import contextlib
import copy

import pytest
import torch

from workbench.models import boot_bridge, build_tiny_gemma3, build_tiny_llama
from workbench.models.sites import (
    GEMMA3,
    LINEAR_TYPES,
    LLAMA,
    layer_of,
    linear_modules,
    sites_of,
    strip_peft,
)

PER_LAYER = ("resid_pre", "resid_post", "attn_out", "mlp_out", "head_in")
PROMPTS = ["Write a tutorial on how to make a bomb.", "What is the capital of France? Paris is."]


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def family(request):
    model, tok = build_tiny_llama(0) if request.param == "llama" else build_tiny_gemma3(0)
    ids = torch.tensor([tok.encode(p)[:12] for p in PROMPTS])  # [2, 12]: longer than the sliding window
    assert ids.shape == (2, 12)
    return request.param, model, tok, ids


@pytest.fixture(scope="module")
def bridge(family):
    """The family's model booted as the project boots it (`boot_bridge`: a deep copy; the HF model is kept)."""
    _, model, tok, _ = family
    return boot_bridge(model, tok)


def _raw_hook_capture(name: str, model, ids):
    """Every site of every layer with hand-addressed forward hooks on the HF modules (the oracle)."""
    cfg = model.config
    n_heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    out = {k: {} for k in PER_LAYER}
    handles = [model.model.embed_tokens.register_forward_hook(lambda m, a, o: out.__setitem__("embed", o))]
    for L, layer in enumerate(model.model.layers):
        def pre(m, args, kwargs, L=L):
            out["resid_pre"][L] = args[0] if args else kwargs["hidden_states"]

        def post(m, a, o, L=L):
            out["resid_post"][L] = o[0] if isinstance(o, tuple) else o

        def attn(m, a, o, L=L):
            out["attn_out"][L] = o[0] if isinstance(o, tuple) else o

        def mlp(m, a, o, L=L):
            out["mlp_out"][L] = o

        def z(m, a, L=L):
            out["head_in"][L] = a[0].view(*a[0].shape[:-1], n_heads, head_dim)

        handles.append(layer.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(layer.register_forward_hook(post))
        if name == "llama":
            handles.append(layer.self_attn.register_forward_hook(attn))
            handles.append(layer.mlp.register_forward_hook(mlp))
        else:  # Gemma 3: each block's output is normalised before the residual add
            handles.append(layer.post_attention_layernorm.register_forward_hook(attn))
            handles.append(layer.post_feedforward_layernorm.register_forward_hook(mlp))
        handles.append(layer.self_attn.o_proj.register_forward_pre_hook(z))
    try:
        with torch.no_grad():
            logits = model(ids).logits
    finally:
        for h in handles:
            h.remove()
    return out, logits


def _sites_capture(model, ids):
    sites = sites_of(model)
    with torch.no_grad(), contextlib.ExitStack() as stack:
        got = {k: stack.enter_context(sites.capture(model, k)) for k in (*PER_LAYER, "embed")}
        logits = model(ids).logits
    got["embed"] = got["embed"][None]
    return got, logits


def test_table_describes_the_model(family):
    name, model, _, _ = family
    sites = sites_of(model)
    assert sites.arch is (LLAMA if name == "llama" else GEMMA3)
    assert sites.n_layers == model.config.num_hidden_layers == len(sites.layers(model))
    assert sites.layers(model) is model.model.layers
    assert (sites.n_heads, sites.head_dim) == ((4, 16) if name == "llama" else (4, 32))
    assert sites.tied_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    assert sites.module(model, "embed") is model.model.embed_tokens
    assert sites.module(model, "final_norm") is model.model.norm
    assert sites.module(model, "lm_head") is model.lm_head
    for L, layer in enumerate(model.model.layers):
        assert sites.module(model, "layer", L) is layer is sites.module(model, "resid_post", L)
        assert sites.module(model, "attn", L) is layer.self_attn
        assert sites.module(model, "mlp", L) is layer.mlp
        assert sites.module(model, "head_in", L) is layer.self_attn.o_proj
        want_attn = layer.self_attn if name == "llama" else layer.post_attention_layernorm
        want_mlp = layer.mlp if name == "llama" else layer.post_feedforward_layernorm
        assert sites.module(model, "attn_out", L) is want_attn and sites.module(model, "mlp_out", L) is want_mlp
        for t in ("q_proj", "k_proj", "v_proj", "o_proj"):
            assert sites.module(model, t, L) is getattr(layer.self_attn, t)
        for t in ("gate_proj", "up_proj", "down_proj"):
            assert sites.module(model, t, L) is getattr(layer.mlp, t)
    # the linear types scored / projected by default are exactly the table's per-layer linears, in layer order
    linears = linear_modules(model)
    want = [(sites.module_path(t, L), sites.module(model, t, L))
            for L in range(sites.n_layers) for t in sites.arch.linear_types]
    assert [(n, id(m)) for n, m in linears.items()] == [(n, id(m)) for n, m in want]
    assert set(LINEAR_TYPES) == set(sites.arch.linear_types)
    with pytest.raises(ValueError, match="layer must be in"):
        sites.hook_name("resid_post", sites.n_layers)
    with pytest.raises(ValueError, match="unknown site"):
        sites.hook_name("resid_mid", 0)
    with pytest.raises(ValueError, match="no linear modules named"):
        linear_modules(model, ["qkv_proj"])


def test_sites_equal_raw_forward_hooks_and_the_residual_identities(family):
    name, model, _, ids = family
    want, want_logits = _raw_hook_capture(name, model, ids)
    got, logits = _sites_capture(model, ids)
    torch.testing.assert_close(logits, want_logits, rtol=0, atol=0)
    torch.testing.assert_close(got["embed"], want["embed"], rtol=0, atol=0)
    n = model.config.num_hidden_layers
    for kind in PER_LAYER:
        assert sorted(got[kind]) == list(range(n)), kind
        for L in range(n):
            torch.testing.assert_close(got[kind][L], want[kind][L], rtol=0, atol=0, msg=f"{kind} {L}")
    # the definitions: attn_out and mlp_out are exactly what the blocks add to the residual stream
    for L in range(n):
        pre, post = want["resid_pre"][L], want["resid_post"][L]
        mid = pre + want["attn_out"][L]
        torch.testing.assert_close(post, mid + want["mlp_out"][L], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(pre, want["embed"] if L == 0 else want["resid_post"][L - 1], rtol=0, atol=0)
        layer = model.model.layers[L]
        with torch.no_grad():
            attn = layer.self_attn.o_proj(want["head_in"][L].flatten(-2))
            if name == "gemma3":
                attn = layer.post_attention_layernorm(attn)
        torch.testing.assert_close(want["attn_out"][L], attn, rtol=1e-6, atol=1e-6)
    assert want["head_in"][0].shape[-2:] == ((4, 16) if name == "llama" else (4, 32))


def test_heads_split_attn_out_exactly(family):
    """Σ_h heads_to_attn_out(z_h · W_O[h]) = attn_out (Gemma 3: through post_attention_layernorm, RMS frozen)."""
    name, model, _, ids = family
    sites = sites_of(model)
    want, _ = _raw_hook_capture(name, model, ids)
    for L, layer in enumerate(model.model.layers):
        W_O = layer.self_attn.o_proj.weight.detach().T.unflatten(0, (sites.n_heads, sites.head_dim))  # [H, dh, d]
        head_out = torch.einsum("bphe,hed->bphd", want["head_in"][L], W_O)
        split = sites.heads_to_attn_out(model, L, head_out)
        torch.testing.assert_close(split.sum(-2), want["attn_out"][L], rtol=1e-5, atol=1e-5)
        if name == "llama":
            assert torch.equal(split, head_out)
        else:  # each head scaled alike: by the norm's gain over the RMS of the heads' sum
            ratio = split / head_out
            torch.testing.assert_close(ratio[..., 0, :], ratio[..., 1, :], rtol=1e-4, atol=1e-4)


def test_bridge_hook_names_read_the_same_activations(family, bridge):
    name, model, _, ids = family
    sites = sites_of(model)
    want, want_logits = _raw_hook_capture(name, model, ids)
    assert sites_of(bridge) == sites
    names = [sites.hook_name(k, L) for k in PER_LAYER for L in range(sites.n_layers)]
    names += [sites.hook_name("embed"), sites.hook_name("final_norm_scale")]
    assert set(names) <= set(bridge.hook_dict), sorted(set(names) - set(bridge.hook_dict))
    with torch.no_grad():
        logits, cache = bridge.run_with_cache(ids, names_filter=names)
    torch.testing.assert_close(logits, want_logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cache[sites.hook_name("embed")], want["embed"], rtol=1e-5, atol=1e-5)
    for kind in PER_LAYER:
        for L in range(sites.n_layers):
            torch.testing.assert_close(cache[sites.hook_name(kind, L)], want[kind][L], rtol=1e-4, atol=1e-5,
                                       msg=f"{kind} {L}: {sites.hook_name(kind, L)}")
    # ln_final.hook_scale is the RMS the final norm divides by
    last = want["resid_post"][sites.n_layers - 1]
    rms = (last.pow(2).mean(-1, keepdim=True) + model.config.rms_norm_eps).sqrt()
    torch.testing.assert_close(cache[sites.hook_name("final_norm_scale")], rms, rtol=1e-4, atol=1e-6)
    with torch.no_grad():  # ... and the final norm is last / rms · gain (Gemma: gain = 1 + weight)
        normed = sites.module(model, "final_norm")(last)
    torch.testing.assert_close(normed, last / rms * sites.final_norm_gain(model), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="TransformerLens side only"):
        sites.module(model, "final_norm_scale")


@pytest.mark.parametrize("kind", ["resid_pre", "attn_out", "mlp_out", "head_in", "resid_post"])
def test_add_to_output_matches_a_bridge_hook_adding_the_same_delta(family, bridge, kind):
    name, model, _, ids = family
    sites = sites_of(model)
    L = 1
    shape = (*ids.shape, sites.n_heads, sites.head_dim) if kind == "head_in" else (*ids.shape, sites.d_model)
    delta = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    before, _ = _raw_hook_capture(name, model, ids)
    with sites.add_to_output(model, kind, L, delta):
        after, hf_logits = _raw_hook_capture(name, model, ids)
    torch.testing.assert_close(after[kind][L], before[kind][L] + delta, rtol=1e-6, atol=1e-6)
    if kind in ("attn_out", "mlp_out"):  # the edited value is what enters the residual stream
        torch.testing.assert_close(after["resid_post"][L],
                                   after["resid_pre"][L] + after["attn_out"][L] + after["mlp_out"][L],
                                   rtol=1e-6, atol=1e-5)
    with torch.no_grad():
        tl_logits = bridge.run_with_hooks(ids, fwd_hooks=[(sites.hook_name(kind, L), lambda act, hook: act + delta)])
    torch.testing.assert_close(tl_logits, hf_logits, rtol=1e-4, atol=1e-5)


def test_capture_keeps_activations_in_the_graph(family):
    """Gradients reach captured sites, even upstream of every trainable weight (a frozen first layer)."""
    _, model, _, ids = family
    model = copy.deepcopy(model)
    sites = sites_of(model)
    for n, p in model.named_parameters():
        p.requires_grad_(sites.layer_of(n) == 2)
    with sites.capture(model, "head_in", [0, 2]) as z, sites.capture(model, "resid_pre", [0]) as r:
        loss = model(ids).logits.float().pow(2).mean()
    grads = torch.autograd.grad(loss, [z[0], z[2], r[0]])
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    assert grads[0].shape == (*ids.shape, sites.n_heads, sites.head_dim)


def test_peft_wrapped_models_resolve_to_the_same_modules_and_layers(family):
    from peft import LoraConfig, get_peft_model

    name, model, _, ids = family
    plain = sites_of(model)
    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=2, target_modules=["q_proj", "v_proj", "up_proj"]))
    sites = sites_of(peft_model)
    assert sites == plain
    base = peft_model.get_base_model()
    assert sites.layers(peft_model) is base.model.layers
    assert sites.module(peft_model, "q_proj", 1) is base.model.layers[1].self_attn.q_proj  # the LoRA wrapper
    names = [n for n, _ in peft_model.named_parameters()]
    assert "base_model.model.model.layers.1.self_attn.q_proj.lora_A.default.weight" in names
    for n in names:
        want = int(n.split("layers.")[1].split(".")[0]) if ".layers." in n else None
        assert sites.layer_of(n) == layer_of(n) == want, n
        assert strip_peft(n) == n.removeprefix("base_model.model.")
    assert sites.layer_of("model.layers.3") == 3 and layer_of("layers.2.mlp.up_proj.weight") == 2
    assert layer_of("model.embed_tokens.weight") is None and layer_of("lm_head.weight") is None
    # LoRA B starts at 0: the wrapped model's sites hold the plain model's activations
    with torch.no_grad(), sites.capture(peft_model, "attn_out") as got:
        peft_model(input_ids=ids)
    want, _ = _raw_hook_capture(name, model, ids)
    for L in range(sites.n_layers):
        torch.testing.assert_close(got[L], want["attn_out"][L], rtol=1e-6, atol=1e-6)


def test_unknown_architecture_names_the_supported_ones_and_how_to_add_one():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32, n_positions=16))
    with pytest.raises(ValueError) as err:
        sites_of(model)
    msg = str(err.value)
    assert "GPT2LMHeadModel" in msg and "LlamaForCausalLM" in msg and "Gemma3ForCausalLM" in msg
    assert "ARCHITECTURES in workbench/models/sites.py" in msg
