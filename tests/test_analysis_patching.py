"""Activation patching (workbench.analysis.patching): bridge patching vs a brute-force re-run with plain
PyTorch hooks on the HF model, the normalized-effect statistics, compare_attacks, determinism and the CLI.

The brute-force comparisons, the determinism test, compare_attacks (EHA vs ISA, whose persona system prompt Gemma
folds into the user turn), the ISA prompts and the CLI run run on both tiny architectures. The oracle addresses HF
modules by hand (not through models/sites.py): "attn" / "mlp" are what each block adds to the residual stream,
the attention / MLP module's output on Llama, and the post-attention / post-feedforward norm's output on Gemma 3.
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from workbench.analysis import AnalysisContext, common, patching
from workbench.models import boot_bridge, load_model, save_tiny_llama

N, K, WINDOW = 3, 3, 2


def _ctx(model_dir, compare_dir, seed: int) -> AnalysisContext:
    """A fresh context (models loaded anew), so two runs share nothing but their inputs."""
    return AnalysisContext(model=str(model_dir), compare=str(compare_dir), seed=seed, progress=False)


# module (on each decoder layer) whose output is what the attention / MLP block adds to the residual stream
BLOCK_OUT = {"LlamaForCausalLM": {"attn": "self_attn", "mlp": "mlp"},
             "Gemma3ForCausalLM": {"attn": "post_attention_layernorm", "mlp": "post_feedforward_layernorm"}}


@pytest.fixture(scope="module")
def pair(tiny_arch, tiny_dirs):
    (a, tok), (b, _) = load_model(tiny_dirs(tiny_arch)), load_model(tiny_dirs(tiny_arch, 1))
    return a, b, tok


def _first(o):
    return o[0] if isinstance(o, tuple) else o


def _with_first(o, x):
    return (x, *o[1:]) if isinstance(o, tuple) else x


def _prompts(tok, n=N):
    return common.prompt_sets(n, "eval", tok, 200)


# ------------------------------------------------------------------------------ brute force (HF + hooks)


def _hf_cache(model, ids):
    """resid_post / attn_out / mlp_out / z (o_proj input) of every layer for one unpadded prompt [1, pos]."""
    cache, handles = {}, []
    out = BLOCK_OUT[type(model).__name__]
    for L, layer in enumerate(model.model.layers):
        handles.append(layer.register_forward_hook(lambda m, a, o, L=L: cache.__setitem__(("resid", L), o.clone())))
        for kind in ("attn", "mlp"):
            handles.append(getattr(layer, out[kind]).register_forward_hook(
                lambda m, a, o, L=L, kind=kind: cache.__setitem__((kind, L), _first(o).clone())))
        handles.append(layer.self_attn.o_proj.register_forward_pre_hook(
            lambda m, a, L=L: cache.__setitem__(("z", L), a[0].clone())))
    with torch.no_grad(), common.hooks(handles):
        model(ids)
    return cache


def _hf_patched_score(model, ids, cache, patches, tokens):
    """Score of `model` on `ids` with patches [(kind, layer, positions, head)] taken from `cache`."""
    handles = []
    d_head = model.config.head_dim
    out = BLOCK_OUT[type(model).__name__]
    for kind, L, pos, head in patches:
        layer = model.model.layers[L]
        src = cache[(kind, L)]
        if kind == "resid":
            def hook(m, a, o, src=src, pos=pos):
                o = o.clone()
                o[:, pos] = src[:, pos]
                return o
            handles.append(layer.register_forward_hook(hook))
        elif kind in ("attn", "mlp"):
            def hook(m, a, o, src=src, pos=pos):
                x = _first(o).clone()
                x[:, pos] = src[:, pos]
                return _with_first(o, x)
            handles.append(getattr(layer, out[kind]).register_forward_hook(hook))
        elif kind == "z":
            cols = slice(head * d_head, (head + 1) * d_head)

            def pre(m, a, src=src, pos=pos, cols=cols):
                x = a[0].clone()
                x[:, pos, cols] = src[:, pos, cols]
                return (x,)
            handles.append(layer.self_attn.o_proj.register_forward_pre_hook(pre))
    with torch.no_grad(), common.hooks(handles):
        logits = model(ids).logits
    return float(common.refusal_score(logits[0, -1], tokens))


def _brute_force(source_model, source_prompts, target_model, target_prompts, tok, positions):
    """Per prompt, per cell: the same experiment as patch_scores, one unpadded prompt at a time."""
    tokens = common.refusal_tokens(tok)
    n_layers, n_heads = target_model.config.num_hidden_layers, target_model.config.num_attention_heads
    out = {c: [] for c in ("source", "target", *patching.ALL_COMPONENTS)}
    for sp, tp in zip(source_prompts, target_prompts, strict=False):
        s_ids = torch.tensor([common.prompt_ids(tok, sp)])
        t_ids = torch.tensor([common.prompt_ids(tok, tp)])
        cache = _hf_cache(source_model, s_ids)
        pos = list(range(-(t_ids.shape[1] if positions is None else positions), 0))
        with torch.no_grad():
            out["source"].append(float(common.refusal_score(source_model(s_ids).logits[0, -1], tokens)))
            out["target"].append(float(common.refusal_score(target_model(t_ids).logits[0, -1], tokens)))

        def score(patches, t_ids=t_ids, cache=cache):
            return _hf_patched_score(target_model, t_ids, cache, patches, tokens)

        out["resid"].append([score([("resid", L, pos, None)]) for L in range(n_layers)])
        out["resid_pos"].append([[score([("resid", L, [k - K], None)]) for k in range(K)] for L in range(n_layers)])
        out["attn"].append([score([("attn", L, pos, None)]) for L in range(n_layers)])
        out["mlp"].append([score([("mlp", L, pos, None)]) for L in range(n_layers)])
        out["heads"].append([[score([("z", L, pos, h)]) for h in range(n_heads)] for L in range(n_layers)])
        out["window"].append([score([(kind, L, pos, None) for L in range(s, s + WINDOW) for kind in ("attn", "mlp")])
                              for s in range(n_layers - WINDOW + 1)])
    return {k: np.array(v) for k, v in out.items()}


def _bridge_scores(source_model, source_prompts, target_model, target_prompts, tok, positions):
    tokens = common.refusal_tokens(tok)
    src_bridge = boot_bridge(source_model, tok)
    tgt_bridge = src_bridge if target_model is source_model else boot_bridge(target_model, tok)
    return patching.patch_scores(src_bridge, common.encode_prompts(tok, source_prompts), tgt_bridge,
                                 common.encode_prompts(tok, target_prompts), tokens, list(patching.ALL_COMPONENTS),
                                 positions, K, WINDOW, batch_size=2)  # batch 2 of 3: two differently padded batches


def test_within_model_patching_matches_brute_force_hf_hooks(pair):
    a, _, tok = pair
    harmful, harmless = _prompts(tok)
    assert len({len(common.prompt_ids(tok, p)) for p in harmful + harmless}) > 1  # padding is exercised
    got = _bridge_scores(a, harmful, a, harmless, tok, K)
    want = _brute_force(a, harmful, a, harmless, tok, K)
    for key, value in want.items():
        assert got[key].shape == value.shape, key
        np.testing.assert_allclose(got[key], value, atol=2e-5, err_msg=key)
    # patching the last layer's residual stream at the last position hands over the source's logits
    np.testing.assert_allclose(got["resid"][:, -1], got["source"], atol=2e-5)
    np.testing.assert_allclose(got["resid_pos"][:, -1, -1], got["source"], atol=2e-5)
    assert np.abs(got["heads"] - got["target"][:, None, None]).max() > 1e-4  # patches do something


def test_cross_model_patching_matches_brute_force_hf_hooks(pair):
    a, b, tok = pair
    harmful, _ = _prompts(tok)
    got = _bridge_scores(a, harmful, b, harmful, tok, None)
    want = _brute_force(a, harmful, b, harmful, tok, None)
    for key, value in want.items():
        np.testing.assert_allclose(got[key], value, atol=2e-5, err_msg=key)
    assert np.abs(got["source"] - got["target"]).min() > 1e-3  # two different models


def test_summarize_normalized_effect_and_interval():
    source, target = np.array([2.0, 2.0, 2.0, 2.0]), np.array([0.0, 0.0, 0.0, 0.0])
    patched = np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])  # [n, cells]
    s = common.summarize(source, target, patched, n_boot=200, seed=0)
    assert s["effect"] == [1.0, 2.0] and s["normalized"] == [0.5, 1.0]
    assert s["low"] == [0.5, 1.0] and s["high"] == [0.5, 1.0]  # no spread over prompts: a point interval
    rng = np.random.default_rng(0)
    noisy = common.summarize(source + rng.normal(0, 0.1, 4), target, patched[:, :1] + rng.normal(0, 0.3, (4, 1)))
    assert noisy["low"][0] < noisy["normalized"][0] < noisy["high"][0]
    # normalized = ratio of means, not mean of per-prompt ratios
    s2 = common.summarize(np.array([1.0, 3.0]), np.array([0.0, 0.0]), np.array([[1.0], [1.0]]))
    assert s2["normalized"] == [0.5]


def test_patching_run_is_deterministic_and_headline_reads_results(arch_model_dir, other_arch_dir):
    spec = patching.Spec(n_prompts=2, positions=2, components=["resid", "window"], window=2, n_boot=100,
                         within="harmful_into_harmless", cross="aligned_into_attacked")
    r1, r2 = (patching.run(_ctx(arch_model_dir, other_arch_dir, 3), spec) for _ in range(2))
    assert json.dumps(r1.experiments) == json.dumps(r2.experiments)
    assert set(r1.experiments) == {"harmful_into_harmless", "aligned_into_attacked"}
    exp = r1.experiments["harmful_into_harmless"]
    assert len(exp["components"]["resid"]["normalized"]) == 4 and len(exp["components"]["window"]["normalized"]) == 3
    assert exp["components"]["resid"]["normalized"][-1] == pytest.approx(1.0, abs=1e-4)  # last layer, last pos
    h = r1.headline()["harmful_into_harmless"]
    assert h["resid_best_normalized"] == pytest.approx(max(exp["components"]["resid"]["normalized"]))
    assert r1.position_labels[-1].startswith("-1 ")


def test_compare_attacks_contrasts_two_attacks(arch_model_dir, other_arch_dir, tiny_arch, tiny_dirs, tmp_path):
    isa_dir = tiny_dirs(tiny_arch, 2)
    spec = patching.Spec(n_prompts=3, components=["resid", "attn", "window"], window=2, n_boot=100,
                         max_prompt_tokens=400)  # the byte-level tiny BPE spends ~150 tokens on the AOA persona
    cmp = patching.compare_attacks(str(arch_model_dir), str(other_arch_dir), str(isa_dir), spec)
    assert set(cmp.curves) == {"EHA", "ISA"} and set(cmp.difference) == {"resid", "attn", "window"}
    from workbench.attacks.identity_shift import AOA_SYSTEM

    assert cmp.scores["EHA"]["system"] is None and cmp.scores["ISA"]["system"] == AOA_SYSTEM  # own settings
    for comp in cmp.difference:
        diff = np.array(cmp.curves["EHA"][comp]["normalized"]) - np.array(cmp.curves["ISA"][comp]["normalized"])
        np.testing.assert_allclose(cmp.difference[comp]["mean"], diff, atol=1e-9)
    assert len(cmp.curves["EHA"]["resid"]["normalized"]) == 4 and len(cmp.curves["ISA"]["window"]["normalized"]) == 3
    same_setting = spec.model_copy(update={"isa_system": None, "isa_answer_prefix": None})
    same = patching.compare_attacks(str(arch_model_dir), str(other_arch_dir), str(other_arch_dir), same_setting)
    assert np.allclose(same.difference["resid"]["mean"], 0.0) and np.allclose(same.difference["resid"]["high"], 0.0)
    from workbench.plots.patching import figures

    assert "attack_comparison" in figures(cmp)
    cmp.save(tmp_path / "cmp")
    assert patching.AttackComparison.load(tmp_path / "cmp").curves == cmp.curves


def test_cli_patching_writes_result_and_figures_fast(arch_model_dir, other_arch_dir, tmp_path):
    from workbench.steps import run_analysis

    start = time.perf_counter()
    out = run_analysis("patching", str(arch_model_dir), str(other_arch_dir), 0, tmp_path / "patching",
                       {"n_prompts": 2, "positions": 2, "n_boot": 100, "window": 2,
                        "components": ["resid", "resid_pos", "attn", "mlp", "heads", "window"]},
                       formats=("html",), progress=False)
    assert time.perf_counter() - start < 60
    data = json.loads((out / "result.json").read_text())
    assert data["type"] == "PatchingResult"
    assert set(data["fields"]["experiments"]) == {"harmful_into_harmless", "aligned_into_attacked",
                                                  "attacked_into_aligned"}
    figs = {p.name for p in (out / "figures").glob("*.html")}
    assert {"aligned_into_attacked_layers.html", "aligned_into_attacked_heads.html",
            "harmful_into_harmless_layer_position.html", "cross_overview.html"} <= figs
    metrics = json.loads((out / "metrics.json").read_text())
    assert "resid_best_layer" in metrics["aligned_into_attacked"]
    loaded = patching.PatchingResult.load(out)
    assert loaded.n_layers == 4 and loaded.n_heads == 4


def test_isa_parameter_adds_the_same_curve_as_compare_attacks(tiny_model_dir, other_tiny_dir, tmp_path):
    isa_dir = save_tiny_llama(tmp_path / "tiny-seed2", seed=2)
    spec = patching.Spec(n_prompts=2, components=["resid", "window"], window=2, n_boot=100, within="none",
                         cross="aligned_into_attacked", isa=str(isa_dir), max_prompt_tokens=400)
    result = patching.run(_ctx(tiny_model_dir, other_tiny_dir, 0), spec)
    assert set(result.experiments) == {"aligned_into_attacked", "aligned_into_isa"}
    cmp = patching.compare_attacks(str(tiny_model_dir), str(other_tiny_dir), str(isa_dir), spec)
    for comp in ("resid", "window"):
        np.testing.assert_allclose(result.experiments["aligned_into_isa"]["components"][comp]["normalized"],
                                   cmp.curves["ISA"][comp]["normalized"], atol=1e-9)
        np.testing.assert_allclose(result.experiments["aligned_into_attacked"]["components"][comp]["normalized"],
                                   cmp.curves["EHA"][comp]["normalized"], atol=1e-9)
    from workbench.plots.patching import figures

    assert "cross_overview" in figures(result)


def test_isa_prompts_end_with_the_teacher_forced_aoa_prefix(arch_model_dir):
    """The ISA decision is read after the persona prefix, not at the ambiguous first answer token ("I")."""
    from workbench.analysis.common import encode_prompts
    from workbench.attacks.identity_shift import AOA_PREFIX
    from workbench.models import load_model

    _, tok = load_model(str(arch_model_dir))
    plain = encode_prompts(tok, ["How do I pick a lock?"])
    forced = encode_prompts(tok, ["How do I pick a lock?"], answer_prefix=AOA_PREFIX)
    prefix = tok.encode(AOA_PREFIX, add_special_tokens=False)
    assert forced.ids[0, -len(prefix):].tolist() == prefix
    assert forced.ids[0, :-len(prefix)].tolist()[-plain.lengths[0]:] == plain.ids[0].tolist()
    assert patching.Spec().isa_answer_prefix == AOA_PREFIX
