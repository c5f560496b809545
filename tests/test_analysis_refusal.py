"""Refusal analyses on tiny-llama: shared helpers (common), probes, refusal direction (interventions,
difference in means, selection), direct logit attribution / logit lens, determinism, and the CLI.

The tests that depend on the architecture or the chat template (left padding and the template suffix, refusal
tokens, the ablate / add interventions, difference in means, a whole refusal-direction run, logit attribution) also
run on tiny-gemma3 (`arch_model`, `arch_model_dir`); the statistics, selection logic and CLI wiring run once.
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from workbench.analysis import AnalysisContext, common, logit_attribution, probing
from workbench.analysis import refusal_direction as rd
from workbench.models import boot_bridge, load_model


def _ctx(model_dir, compare_dir, seed: int) -> AnalysisContext:
    """A fresh context (models loaded anew), so two runs share nothing but their inputs."""
    return AnalysisContext(model=str(model_dir), compare=None if compare_dir is None else str(compare_dir), seed=seed,
                           progress=False)


# ------------------------------------------------------------------------------------------- common


# what each family's template writes after the user's text
AFTER_USER = {"tiny-llama": "<|im_end|>\n<|im_start|>assistant\n",
              "tiny-gemma3": "<end_of_turn>\n<start_of_turn>model\n"}


def test_left_padding_puts_every_last_prompt_token_at_minus_one(arch_model, tiny_arch):
    model, tok = arch_model
    harmful, harmless = common.prompt_sets(3, "eval", tok, 200)
    batch = common.encode_prompts(tok, harmful + harmless)
    assert len(set(batch.lengths)) > 1
    P = common.post_instruction_positions(tok)
    assert P == len(tok(AFTER_USER[tiny_arch], add_special_tokens=False).input_ids)
    if tiny_arch == "tiny-llama":
        assert P == 7  # <|im_end|> \n <|im_start|> as sist ant \n  (the tiny BPE splits "assistant")
    suffix = batch.ids[:, -P:]
    assert (suffix == suffix[0]).all() and tok.decode(suffix[0].tolist()) == AFTER_USER[tiny_arch]
    assert batch.mask.sum(1).tolist() == batch.lengths and (batch.mask[:, -1] == 1).all()
    # batched, left-padded activations == one unpadded prompt at a time
    bridge = boot_bridge(model, tok)
    acts, logits = common.collect(bridge, batch, ["blocks.2.hook_resid_post"], last=1, batch_size=4, with_logits=True)
    for i, prompt in enumerate(harmful + harmless):
        ids = torch.tensor([common.prompt_ids(tok, prompt)])
        with torch.no_grad():
            out = model(ids, output_hidden_states=True)
        torch.testing.assert_close(acts["blocks.2.hook_resid_post"][i, -1], out.hidden_states[3][0, -1], atol=2e-5,
                                   rtol=0)
        torch.testing.assert_close(logits[i], out.logits[0, -1], atol=2e-5, rtol=0)
    torch.testing.assert_close(common.last_logits(model, batch, 4), logits, atol=2e-5, rtol=0)  # HF path too


def test_refusal_tokens_are_first_tokens_and_disjoint(arch_model):
    _, tok = arch_model
    t = common.refusal_tokens(tok)
    assert not set(t.refusal) & set(t.compliance)
    assert t.refusal[0] == tok("I", add_special_tokens=False)["input_ids"][0]
    assert tok("Sure", add_special_tokens=False)["input_ids"][0] in t.compliance
    s_id = tok("S", add_special_tokens=False)["input_ids"][0]  # "Sorry" and "Step" both start with "S" here
    assert s_id not in t.refusal and s_id not in t.compliance
    logits = torch.zeros(2, len(tok))
    logits[0, t.refusal[0]] = 5.0
    want0 = torch.logsumexp(logits[0, t.refusal], 0) - torch.logsumexp(logits[0, t.compliance], 0)
    score = common.refusal_score(logits, t)
    assert score[0] == pytest.approx(float(want0))
    assert score[1] == pytest.approx(float(np.log(len(t.refusal) / len(t.compliance))))


# ------------------------------------------------------------------------------------------- probing


def test_probes_separate_separable_synthetic_data_and_not_noise():
    rng = np.random.default_rng(0)
    v = rng.normal(size=32)
    v /= np.linalg.norm(v)

    def data(n):  # two Gaussian classes 8 standard deviations apart along v: separable with a wide margin
        y = np.arange(n) % 2
        return rng.normal(size=(n, 32)) + np.outer(8.0 * y - 4.0, v), y

    X, y = data(80)
    Xt, yt = data(40)
    mean, std = probing.probe_cv(X, y, folds=5, seed=0)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0)
    assert probing.probe_heldout(X, y, Xt, yt) == pytest.approx(1.0)
    noise = rng.normal(size=(80, 32))
    assert probing.probe_cv(noise, y, folds=5, seed=0)[0] < 0.75
    # per layer: layer 0 is noise, layer 1 separable
    train = torch.tensor(np.stack([noise, X]), dtype=torch.float32)
    test = torch.tensor(np.stack([rng.normal(size=(40, 32)), Xt]), dtype=torch.float32)
    m, s, h = probing.probe_layers(train, y, test, yt, 5, 1.0, 0)
    assert m.shape == s.shape == h.shape == (2,)
    assert m[1] == pytest.approx(1.0) and h[1] == pytest.approx(1.0) and m[0] < 0.75 and h[0] < 0.8


def test_probing_run_is_deterministic(arch_model_dir, other_arch_dir):
    spec = probing.Spec(n_train=8, n_eval=4, folds=2)
    r1, r2 = (probing.run(_ctx(arch_model_dir, other_arch_dir, 1), spec) for _ in range(2))
    assert r1.labels == ["model", "compare"] and tuple(r1.cv_mean.shape) == (2, 4)
    assert torch.equal(r1.cv_mean, r2.cv_mean) and torch.equal(r1.heldout, r2.heldout)
    assert ((r1.heldout >= 0) & (r1.heldout <= 1)).all()
    h = r1.headline()["model"]
    assert h["cv_accuracy"] == pytest.approx(float(r1.cv_mean[0].max()))


# ---------------------------------------------------------------------------------- refusal direction


def _model_with_dead_dimension(model_dir, j: int):
    """A tiny model whose residual stream is exactly 0 in dimension j: nothing ever writes there (on Gemma the
    post-attention / post-feedforward norms scale each dimension alone, so a zero row stays zero)."""
    model, tok = load_model(model_dir)
    with torch.no_grad():
        model.model.embed_tokens.weight[:, j] = 0  # (tied: also the unembedding of dim j, which reads 0 anyway)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[j, :] = 0
            layer.mlp.down_proj.weight[j, :] = 0
    return model, tok


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def test_ablating_a_direction_orthogonal_to_all_activations_changes_nothing(arch_model_dir):
    j = 5
    model, tok = _model_with_dead_dimension(arch_model_dir, j)
    ids = torch.tensor([common.prompt_ids(tok, "Write a poem about the sea.")])
    base = _logits(model, ids)
    e_j = torch.zeros(model.config.hidden_size)
    e_j[j] = 3.0
    with torch.no_grad():
        hs = model(ids, output_hidden_states=True).hidden_states
    assert max(h[..., j].abs().max().item() for h in hs) == 0.0  # the direction is orthogonal to every activation
    with rd.intervene(model, e_j, "ablate"):
        ablated = _logits(model, ids)
    assert (ablated - base).abs().max().item() < 1e-6
    e_k = torch.zeros_like(e_j)
    e_k[j + 1] = 1.0
    with rd.intervene(model, e_k, "ablate"):
        assert (_logits(model, ids) - base).abs().max().item() > 1e-3  # a live direction does change outputs
    assert torch.equal(_logits(model, ids), base)  # hooks are gone after the block


def test_ablation_removes_the_direction_from_every_residual_state(arch_model):
    model, tok = arch_model
    r = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    unit = r / r.norm()
    ids = torch.tensor([common.prompt_ids(tok, "How do I bake bread?")])
    with rd.intervene(model, r, "ablate"), torch.no_grad():
        out = model(ids, output_hidden_states=True)
    # every layer's input and the final (pre-norm) residual stream has no component along r̂
    resid = list(out.hidden_states[:-1])
    assert max((h @ unit).abs().max().item() for h in resid) < 1e-5
    with torch.no_grad():
        plain = model(ids, output_hidden_states=True)
    assert max((h @ unit).abs().max().item() for h in plain.hidden_states[1:-1]) > 1e-3


def test_activation_addition_equals_bridge_hook_on_resid_pre(arch_model):
    model, tok = arch_model
    bridge = boot_bridge(model, tok)
    r = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(1)) * 0.05
    batch = common.encode_prompts(tok, ["Hi", "Explain how to pick a lock without a key."])
    with rd.intervene(model, r, "add", layer=2, alpha=3.0):
        hf = common.last_logits(model, batch)
    want = common.last_logits(bridge, batch, fwd_hooks=[("blocks.2.hook_resid_pre", lambda x, hook: x + 3.0 * r)])
    torch.testing.assert_close(hf, want, atol=2e-5, rtol=0)
    assert (hf - common.last_logits(model, batch)).abs().max() > 1e-3
    with pytest.raises(ValueError, match="layer"):
        with rd.intervene(model, r, "add"):
            pass


def test_interventions_apply_during_generation(arch_model):
    from workbench.config import GenerationSpec
    from workbench.generation import generate

    model, tok = arch_model
    prompts = ["What is the capital of France?", "List three colors."]
    spec = GenerationSpec(max_new_tokens=6, batch_size=2)
    base = generate(model, tok, prompts, spec, progress=False)
    ids = torch.tensor([common.prompt_ids(tok, prompts[0])])
    push = model.get_output_embeddings().weight[tok("The", add_special_tokens=False)["input_ids"][0]].detach()
    with rd.intervene(model, push * 50, "add", layer=3):
        steered = generate(model, tok, prompts, spec, progress=False)
        first = _logits(model, ids)[0, -1].argmax().item()
    assert steered != base and first == tok("The", add_special_tokens=False)["input_ids"][0]
    assert generate(model, tok, prompts, spec, progress=False) == base


def test_candidate_directions_are_differences_of_means(arch_model):
    model, tok = arch_model
    harmful, harmless = common.prompt_sets(3, "train", tok, 200)
    bridge = boot_bridge(model, tok)
    r = rd.candidate_directions(bridge, common.encode_prompts(tok, harmful), common.encode_prompts(tok, harmless),
                                positions=2, batch_size=2)
    assert tuple(r.shape) == (2, 4, 64)

    def mean_pre(prompts, L, k):  # resid_pre of layer L at position -k (HF hidden_states[L])
        rows = []
        for p in prompts:
            with torch.no_grad():
                hs = model(torch.tensor([common.prompt_ids(tok, p)]), output_hidden_states=True).hidden_states
            rows.append(hs[L][0, -k])
        return torch.stack(rows).mean(0)

    for L in range(4):
        for i, k in enumerate((2, 1)):
            torch.testing.assert_close(r[i, L], mean_pre(harmful, L, k) - mean_pre(harmless, L, k), atol=2e-5, rtol=0)
    assert r[:, 0].abs().max() == 0  # same template tokens, same embeddings: no direction at layer 0


def test_massive_activation_dimensions_are_found_and_zeroed(tiny_model_dir):
    model, tok = load_model(tiny_model_dir)
    _, harmless = common.prompt_sets(3, "train", tok, 200)
    s = common.encode_prompts(tok, harmless)
    assert rd.massive_dimensions(boot_bridge(model, tok), s, factor=20.0, batch_size=2) == []  # random init: none
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 9] *= 1000.0  # dimension 9 now dwarfs every other one
    bridge = boot_bridge(model, tok)
    assert rd.massive_dimensions(bridge, s, factor=20.0, batch_size=2) == [9]
    spec = rd.Spec(n_train=3, n_val=2, n_generate=0, positions=2, n_boot=100)
    ctx = AnalysisContext(model=str(tiny_model_dir), progress=False)
    ctx._cache["model"] = (model, tok)  # the edited model
    result = rd.run(ctx, spec)
    assert result.massive_dims == [9] and (result.directions[..., 9] == 0).all()
    assert result.directions.abs().sum() > 0
    raw = rd.run(ctx, spec.model_copy(update={"massive_factor": None}))
    assert raw.massive_dims == [] and raw.directions[..., 9].abs().max() > 0


def test_selection_follows_the_paper_filters(tiny_model, monkeypatch):
    """Filters on induce > 0 and KL ≤ threshold, lowest bypass wins, last 20 % of layers never scored."""
    model, tok = tiny_model
    P, L = 2, 5
    directions = torch.randn(P, L, 64, generator=torch.Generator().manual_seed(0))
    table = {  # (i, layer) -> (bypass, induce, kl); every other candidate: (0, -1, 1) fails both filters
        (0, 0): (-3.0, -1.0, 0.0),  # best bypass but does not induce refusal
        (0, 1): (-2.0, 1.0, 0.5),  # KL too high
        (1, 2): (-1.0, 0.5, 0.05),  # passes: selected
        (1, 3): (-0.5, 2.0, 0.01),  # passes, worse bypass
    }
    state, scored = {}, set()

    class FakeIntervene:  # remembers which candidate and mode is active
        def __init__(self, model, r, mode, layer=None, alpha=1.0):
            state["cell"] = next((i, j) for i in range(P) for j in range(L) if torch.equal(directions[i, j], r))
            state["mode"] = mode
            scored.add(state["cell"])

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            state.clear()

    def fake_last_logits(m, batch, batch_size=16, fwd_hooks=None):
        """Column 0: what refusal_score should return, column 1: what the KL should return."""
        out = torch.zeros(len(batch), 2)
        if state:
            bypass, induce, kl = table.get(state["cell"], (0.0, -1.0, 1.0))
            out[:, 0], out[:, 1] = (bypass, kl) if state["mode"] == "ablate" else (induce, 0.0)
        return out

    monkeypatch.setattr(common, "last_logits", fake_last_logits)
    monkeypatch.setattr(common, "refusal_score", lambda logits, tokens: logits[:, 0])
    monkeypatch.setattr(rd, "intervene", FakeIntervene)
    monkeypatch.setattr(rd, "_kl", lambda base, logits: logits[:, 1])
    batch = common.encode_prompts(tok, ["a", "b"])
    sel = rd.select_direction(model, directions, batch, batch, None, rd.Spec(), None)
    assert sel["layers"] == [0, 1, 2, 3]  # int(5 * 0.8) = 4: layer 4 discarded
    assert {layer for _, layer in scored} == {0, 1, 2, 3}
    assert sel["selected"]["position_index"] == 1 and sel["selected"]["layer"] == 2
    assert sel["selected"]["position"] == -1 and sel["selected"]["passed_filters"]
    assert sel["selected"]["bypass"] == -1.0 and sel["selected"]["kl"] == pytest.approx(0.05)
    assert torch.isnan(sel["bypass"][:, 4]).all()
    # nothing passes -> lowest bypass overall, flagged
    table.clear()
    table[(0, 0)] = (-3.0, -1.0, 0.0)
    sel = rd.select_direction(model, directions, batch, batch, None, rd.Spec(), None)
    assert (sel["selected"]["position_index"], sel["selected"]["layer"]) == (0, 0)
    assert not sel["selected"]["passed_filters"]


def test_refusal_direction_run_is_deterministic_and_complete(arch_model_dir, other_arch_dir):
    spec = rd.Spec(n_train=4, n_val=2, n_generate=2, max_new_tokens=4, positions=2, n_boot=100)
    r1, r2 = (rd.run(_ctx(arch_model_dir, other_arch_dir, 2), spec) for _ in range(2))
    assert torch.equal(r1.directions, r2.directions) and r1.selected == r2.selected
    assert torch.equal(torch.nan_to_num(r1.bypass), torch.nan_to_num(r2.bypass))
    assert json.dumps(r1.generation) == json.dumps(r2.generation) and r1.samples == r2.samples  # nan-safe
    assert tuple(r1.directions.shape) == (2, 4, 64) and tuple(r1.signal.shape) == (2, 2, 4)
    assert r1.candidate_layers == [0, 1, 2]  # 4 layers, last 20 % (layer 3) discarded
    i, L = r1.selected["position_index"], r1.selected["layer"]
    assert torch.equal(r1.direction, r1.directions[i, L]) and L in (1, 2)  # layer 0 directions are zero
    assert set(r1.generation["model"]) >= {"harmful_baseline", "harmful_ablated", "harmless_added"}
    assert set(r1.generation["compare"]) == {"harmful_baseline", "harmful_added"}
    assert r1.generation["model"]["harmful_baseline"]["n"] == 2


def test_direction_can_be_reused_from_an_earlier_run(tiny_model_dir, other_tiny_dir, tmp_path):
    spec = rd.Spec(n_train=4, n_val=2, n_generate=2, max_new_tokens=4, positions=2, n_boot=100,
                   generate_for=["model"])
    first = rd.run(_ctx(tiny_model_dir, None, 0), spec)
    first.save(tmp_path / "rd")
    again = rd.run(_ctx(tiny_model_dir, other_tiny_dir, 0),
                   spec.model_copy(update={"direction_from": str(tmp_path / "rd"), "generate_for": ["compare"]}))
    assert torch.equal(again.directions, first.directions) and torch.equal(again.direction, first.direction)
    assert again.selected["layer"] == first.selected["layer"] and again.selected["from"] == str(tmp_path / "rd")
    assert set(again.generation) == {"compare"} and again.labels == ["model", "compare"]
    torch.testing.assert_close(again.signal[0], first.signal[0])  # same model, same direction, same prompts
    with pytest.raises(ValueError, match="no result.json"):
        rd.run(_ctx(tiny_model_dir, None, 0), spec.model_copy(update={"direction_from": str(tmp_path)}))


# ------------------------------------------------------------------------------- logit attribution


def test_direct_logit_attribution_sums_to_the_weighted_logit_difference(arch_model):
    model, tok = arch_model
    bridge = boot_bridge(model, tok)
    tokens = common.refusal_tokens(tok)
    harmful, _ = common.prompt_sets(3, "eval", tok, 200)
    att = logit_attribution.attribute(model, bridge, common.encode_prompts(tok, harmful), tokens, batch_size=2)
    total = att["embed"] + att["attn"].sum(1) + att["mlp"].sum(1)
    torch.testing.assert_close(total, att["weighted"], atol=1e-5, rtol=0)
    torch.testing.assert_close(att["heads"].sum(-1), att["attn"], atol=1e-6, rtol=0)
    torch.testing.assert_close(att["lens"][:, -1], att["score"], atol=1e-5, rtol=0)  # lens at the last layer
    # the weighted difference is the first-order form of the logsumexp score: same sign structure, and
    # Δ_w − score = H(R) − H(C) (entropy terms), computed independently here
    with torch.no_grad():
        logits = torch.stack([model(torch.tensor([common.prompt_ids(tok, p)])).logits[0, -1] for p in harmful]).double()
    pr, pc = (torch.softmax(logits[:, ids], -1) for ids in (tokens.refusal, tokens.compliance))
    entropy = lambda p: -(p * p.log()).sum(-1)  # noqa: E731
    torch.testing.assert_close(att["weighted"] - att["score"], entropy(pc) - entropy(pr), atol=1e-5, rtol=0)


def test_logit_attribution_run_is_deterministic(arch_model_dir, other_arch_dir):
    spec = logit_attribution.Spec(n_prompts=3, n_boot=100)
    r1, r2 = (logit_attribution.run(_ctx(arch_model_dir, other_arch_dir, 0), spec) for _ in range(2))
    for f in ("score", "attn", "attn_low", "heads", "lens"):
        assert torch.equal(getattr(r1, f), getattr(r2, f)), f
    assert tuple(r1.heads.shape) == (2, 2, 4, 4) and tuple(r1.lens.shape) == (2, 2, 4)
    assert (r1.attn_low <= r1.attn + 1e-6).all() and (r1.attn <= r1.attn_high + 1e-6).all()
    torch.testing.assert_close(r1.embed + r1.attn.sum(-1) + r1.mlp.sum(-1), r1.weighted, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------------ CLI


PROBING = {"n_train": 6, "n_eval": 3, "folds": 2}


@pytest.mark.parametrize("name, params, arch", [
    ("probing", PROBING, "tiny-llama"),
    ("probing", PROBING, "tiny-gemma3"),  # the other analyses' runs are checked on both in their own tests
    ("refusal-direction", {"n_train": 4, "n_val": 2, "n_generate": 2, "max_new_tokens": 4, "positions": 2,
                           "n_boot": 100}, "tiny-llama"),
    ("logit-attribution", {"n_prompts": 3, "n_boot": 100}, "tiny-llama"),
])
def test_cli_analysis_writes_result_and_figures_fast(name, params, arch, tiny_dirs, tmp_path):
    from workbench.steps import run_analysis

    start = time.perf_counter()
    out = run_analysis(name, str(tiny_dirs(arch)), str(tiny_dirs(arch, 1)), 0, tmp_path / name, params,
                       formats=("html",), progress=False)
    assert time.perf_counter() - start < 60
    result = json.loads((out / "result.json").read_text())
    assert result["type"] in {"ProbingResult", "RefusalDirectionResult", "LogitAttributionResult"}
    assert (out / "tensors.safetensors").is_file() and (out / "metrics.json").is_file()
    figs = sorted(p.name for p in (out / "figures").glob("*.html"))
    assert figs and all((out / "figures" / f).stat().st_size > 10_000 for f in figs)
    from workbench.analysis import get_analysis

    mod, plots = get_analysis(name)
    loaded = getattr(mod, result["type"]).load(out)
    assert set(plots.figures(loaded)) == {f.removesuffix(".html") for f in figs}
    if name == "probing":  # one probe per model and decoder layer, read at each model's last prompt token
        assert loaded.labels == ["model", "compare"] and tuple(loaded.cv_mean.shape) == (2, 4)
        assert ((loaded.heldout >= 0) & (loaded.heldout <= 1)).all()


def test_cli_analyze_command_line(tiny_model_dir, tmp_path):
    """The real `workbench analyze` entry point, single model (no --compare), PNG skipped."""
    from typer.testing import CliRunner

    from workbench.cli import app

    res = CliRunner().invoke(app, ["analyze", "logit-attribution", "--model", str(tiny_model_dir), "--out",
                                   str(tmp_path / "la"), "--param", "n_prompts=2", "--param", "n_boot=100",
                                   "--formats", "html"])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "la" / "result.json").read_text())
    assert data["fields"]["labels"] == ["model"]
    assert (tmp_path / "la" / "figures" / "logit_lens.html").is_file()
    bad = CliRunner().invoke(app, ["analyze", "probing", "--model", str(tiny_model_dir), "--out",
                                   str(tmp_path / "p"), "--param", "n_layers=3"])
    assert bad.exit_code != 0 and "n_train" in bad.output


def test_figures_export_png_when_a_browser_is_installed(tmp_path):
    """PNG export goes through kaleido + Chromium (`make setup`); HTML alone is checked where none is found."""
    from workbench.plots.export import _ensure_browser_env, export_figure
    from workbench.plots.probing import plot_probe_accuracy

    result = probing.ProbingResult(labels=["model"], refs=["tiny"], n_layers=3, n_train=4, n_eval=2, folds=2,
                                   hook="resid_post", cv_mean=torch.tensor([[0.5, 0.75, 1.0]]),
                                   cv_std=torch.tensor([[0.1, 0.1, 0.0]]), heldout=torch.tensor([[0.5, 0.5, 1.0]]))
    fig = plot_probe_accuracy(result)
    assert fig.layout.xaxis.title.text == "layer" and fig.layout.yaxis.title.text == "accuracy"
    assert [t.name for t in fig.data if t.showlegend is not False] == ["tiny: 2-fold CV (± std)",
                                                                      "tiny: held-out (4 prompts)"]
    formats = ("html", "png") if _ensure_browser_env() else ("html",)
    written = export_figure(fig, tmp_path, "probe", formats)
    assert [p.suffix for p in written] == [f".{f}" for f in formats]
    if "png" in formats:
        assert (tmp_path / "probe.png").read_bytes()[:4] == b"\x89PNG"
    inline = (tmp_path / "probe.html").stat().st_size
    # "shared": pages of one folder load one plotly.min.js beside them, written once
    first = export_figure(fig, tmp_path / "docs", "a", ("html",), plotlyjs="shared")
    second = export_figure(fig, tmp_path / "docs", "b", ("html",), plotlyjs="shared")
    js = tmp_path / "docs" / "plotly.min.js"
    assert first == [js, tmp_path / "docs" / "a.html"] and second == [tmp_path / "docs" / "b.html"]
    page = (tmp_path / "docs" / "b.html").read_text()
    assert 'src="plotly.min.js"' in page and (tmp_path / "docs" / "b.html").stat().st_size < inline / 50
    with pytest.raises(ValueError, match="inline"):
        export_figure(fig, tmp_path, "x", ("html",), plotlyjs="cdn")


def test_a_failed_kaleido_render_is_retried_once_and_a_second_failure_raised(monkeypatch):
    from workbench.plots import export

    monkeypatch.setattr(export.time, "sleep", lambda _s: None)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("ReferenceError: kaleido_scopes is not defined")

    export.with_one_retry(flaky)
    assert len(calls) == 2

    def broken():
        calls.append(1)
        raise RuntimeError("no browser page")

    with pytest.raises(RuntimeError, match="no browser page"):
        export.with_one_retry(broken)
    assert len(calls) == 4


def _rule_tables(rng, n: int) -> dict:
    """Random candidate scores around the filters: bypass in [-3, 3], induce in [-1, 1], KL in [0, 0.3]."""
    return {(i, j): (float(rng.uniform(-3, 3)), float(rng.uniform(-1, 1)), float(rng.uniform(0, 0.3)))
            for i in range(2) for j in range(n)}


def test_verified_choice_equals_the_exact_rule_and_rescored_few():
    """With every screened score within its margin of the exact one, the screened-then-verified choice is the
    exact rule's (passing or fallback), and it re-scores fewer candidates than there are."""
    rng = np.random.default_rng(0)
    spec = rd.Spec()
    margins = np.array([spec.screen_bypass_margin, spec.screen_induce_margin, spec.screen_kl_margin])
    calls, fallbacks = [], 0
    for trial in range(300):
        exact = _rule_tables(rng, 12)
        if trial % 5 == 0:  # nothing passes: the fallback
            exact = {c: (b, -abs(i) - 0.01, kl) for c, (b, i, kl) in exact.items()}
        screened = {c: tuple(np.array(v) + rng.uniform(-1, 1, 3) * margins * 0.99) for c, v in exact.items()}
        asked = []

        def rescore(c, exact=exact, asked=asked):
            asked.append(c)
            return exact[c]

        chosen, passed = rd._verified_choice(screened, rescore, spec)
        assert (chosen, passed) == rd._rule(exact, spec)
        fallbacks += not passed
        calls.append(len(set(asked)))
    assert fallbacks >= 60 and np.mean(calls) < 0.5 * 24


def test_verified_choice_keeps_a_candidate_the_screen_puts_just_over_the_kl_threshold():
    """The SmolLM2 case that kept bf16 opt-in: KL 0.098 exact, 0.105 in bf16. Screened alone the rule falls back
    to another candidate; verified, the exact choice stands."""
    spec = rd.Spec()
    exact = {(0, 0): (2.8, 0.4, 0.098), (1, 0): (1.0, 0.5, 0.9), (1, 1): (2.0, -0.5, 0.01)}
    screened = {(0, 0): (2.85, 0.41, 0.105), (1, 0): (1.02, 0.5, 0.88), (1, 1): (2.0, -0.48, 0.012)}
    assert rd._rule(screened, spec) == ((1, 0), False)
    assert rd._verified_choice(screened, exact.__getitem__, spec) == ((0, 0), True) == rd._rule(exact, spec)


def test_screened_selection_chooses_as_float32_with_float32_scores_where_rescored(arch_model_dir):
    """On a tiny model: bf16 screening + float32 re-scoring picks float32's candidate, the re-scored cells hold
    float32's scores exactly, and the record says which were re-scored."""
    model, tok = load_model(arch_model_dir)
    harmful, harmless = common.prompt_sets(8, "train", tok, 200)
    h, s = common.encode_prompts(tok, harmful), common.encode_prompts(tok, harmless)
    directions = rd.candidate_directions(boot_bridge(load_model(arch_model_dir)[0], tok), h, s, 2, 8)
    tokens = common.refusal_tokens(tok)
    base = dict(positions=2, discard_last=0.0)
    fp32 = rd.select_direction(model, directions, h, s, tokens, rd.Spec(**base))
    screened = rd.select_direction(model, directions, h, s, tokens, rd.Spec(**base, screen_dtype="bfloat16"))
    keys = ("position_index", "layer", "passed_filters", "bypass", "induce", "kl")
    assert {k: screened["selected"][k] for k in keys} == {k: fp32["selected"][k] for k in keys}
    rescored = screened["selected"]["rescored"]
    assert screened["selected"]["screen_dtype"] == "bfloat16" and 1 <= len(rescored)
    for i, layer in rescored:
        for k in ("bypass", "induce", "kl"):
            assert screened[k][i, layer] == fp32[k][i, layer]
    assert "rescored" not in fp32["selected"]
