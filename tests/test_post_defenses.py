"""Post-fine-tuning defenses and the leaderboard on tiny-llama: SafeLoRA's projection checked on hand-built V and
ΔW (merged weights and a LoRA adapter), Antidote's pruning against a hand-computed Wanda top fraction, the
`workbench repair` / `workbench leaderboard` commands end to end on real tiny run folders, and their input errors.
The hand-checked SafeLoRA and Antidote mechanisms, both `workbench repair` runs and the low-rank deltas run on
tiny-gemma3 too (its q_proj is 128 × 64: 4 heads × d_head 32 out of d_model 64 in)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from gemma_fixtures import REPAIRS, gemma_runs_root
from typer.testing import CliRunner

from workbench.cli import app
from workbench.defenses.post import antidote, safelora
from workbench.defenses.post.common import RepairContext
from workbench.runs import open_run

Q = "model.layers.{}.self_attn.q_proj.weight"
SIGMA, RANK = 0.5, 4  # V = σ U_r W_rᵀ: equal singular values, so C = V Vᵀ/‖V‖_F = (σ/√r) U_r U_rᵀ


def text(res) -> str:
    return " ".join(res.output.split())


def _orthonormal(d: int, seed: int) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))[0]


def _weights(folder) -> dict[str, torch.Tensor]:
    from workbench.models import load_model

    model, _ = load_model(str(folder))
    return {n: p.detach().double() for n, p in model.named_parameters()}


@pytest.fixture(scope="module")
def subspace(tiny_arch, tiny_models):
    """U (in span V) and U⊥ for q_proj's output space (64 on tiny-llama, 128 on tiny-gemma3), and W_r for V's row
    space (d_model 64)."""
    d_out, d_in = tiny_models(tiny_arch)[0].model.layers[0].self_attn.q_proj.weight.shape
    u, w = _orthonormal(d_out, 1), _orthonormal(d_in, 2)
    return u[:, :RANK], u[:, RANK:], w[:, :RANK]


@pytest.fixture(scope="module")
def hand_models(tmp_path_factory, tiny_arch, tiny_dirs, subspace):
    """unaligned = tiny-llama; aligned = unaligned + V on q_proj of layers 0–2; attacked (merged) = aligned + ΔW:
    layer 0 ΔW ∈ span(V), layer 1 ΔW ⟂ span(V), layer 2 mostly ⟂ with a small in-span part; layer 3's gate_proj
    gets ΔW although alignment never touched it (V = 0)."""
    from workbench.models import load_model, save_model

    u, u_perp, w_r = subspace
    gen = torch.Generator().manual_seed(3)
    root = tmp_path_factory.mktemp("safelora")
    model, tok = load_model(str(tiny_dirs(tiny_arch)))
    v = SIGMA * u @ w_r.T
    with torch.no_grad():
        for layer in (0, 1, 2):
            dict(model.named_parameters())[Q.format(layer)].add_(v.float())
    save_model(model, tok, root / "aligned")
    m = torch.randn(RANK, 64, generator=gen, dtype=torch.float64) * 0.05
    deltas = {Q.format(0): u @ m, Q.format(1): u_perp[:, :RANK] @ m,
              Q.format(2): 0.1 * u @ m + u_perp[:, RANK:2 * RANK] @ m,
              "model.layers.3.mlp.gate_proj.weight": torch.randn(176, 64, generator=gen, dtype=torch.float64) * 0.01}
    with torch.no_grad():
        params = dict(model.named_parameters())
        for n, d in deltas.items():
            params[n].add_(d.float())
    save_model(model, tok, root / "attacked")
    return root, deltas


def _ctx(root, tiny_model_dir, attacked="attacked"):
    return RepairContext(attacked=str(root / attacked), aligned=str(root / "aligned"), unaligned=str(tiny_model_dir),
                         progress=False)


# ------------------------------------------------------------------------------------------------- SafeLoRA


def test_safelora_keeps_updates_inside_the_alignment_subspace_and_projects_the_others(hand_models, arch_model_dir,
                                                                                       subspace):
    root, deltas = hand_models
    u = subspace[0]
    res = safelora.repair(safelora.SafeLoRAParams(), _ctx(root, arch_model_dir))
    after = {n: p.detach().double() for n, p in res.model.named_parameters()}
    aligned, attacked = _weights(root / "aligned"), _weights(root / "attacked")
    sims = {r["name"]: r["similarity"] for r in res.report["layers"]}

    assert res.report["mode"] == "merged" and res.report["n_adapted"] == 4
    assert sims[Q.format(0)] == pytest.approx(1.0, abs=1e-6)  # C ΔW = (σ/√r) ΔW (up to float32 storage)
    assert sims[Q.format(1)] == pytest.approx(0.0, abs=1e-6)
    assert 0 < sims[Q.format(2)] < 0.5
    assert res.report["projected"] == [Q.format(1), Q.format(2)]
    assert "model.layers.3.mlp.gate_proj.weight" in res.report["skipped"]  # V = 0: no subspace

    assert torch.equal(after[Q.format(0)], attacked[Q.format(0)])  # in span(V): untouched
    assert torch.allclose(after[Q.format(1)], aligned[Q.format(1)], atol=1e-7)  # ⟂ span(V): C ΔW = 0
    assert not torch.allclose(after[Q.format(1)], attacked[Q.format(1)], atol=1e-4)
    c_dw = SIGMA / RANK ** 0.5 * u @ (u.T @ deltas[Q.format(2)])  # the paper's C = V Vᵀ / ‖V‖_F, by hand
    assert torch.allclose(after[Q.format(2)], aligned[Q.format(2)] + c_dw, atol=1e-6)
    gate = "model.layers.3.mlp.gate_proj.weight"
    assert torch.equal(after[gate], attacked[gate])
    untouched = [n for n in after if n not in deltas]
    assert all(torch.equal(after[n], attacked[n]) for n in untouched)


def test_safelora_n_layers_projects_the_least_similar_and_exact_projection_keeps_the_in_span_part(
        hand_models, arch_model_dir, subspace):
    root, deltas = hand_models
    u = subspace[0]
    res = safelora.repair(safelora.SafeLoRAParams(n_layers=1), _ctx(root, arch_model_dir))
    assert res.report["projected"] == [Q.format(1)] and res.report["rule"] == "n_layers"
    after = dict(res.model.named_parameters())
    assert torch.equal(after[Q.format(2)].double(), _weights(root / "attacked")[Q.format(2)])

    exact = safelora.repair(safelora.SafeLoRAParams(projection="exact"), _ctx(root, arch_model_dir))
    w = dict(exact.model.named_parameters())[Q.format(2)].detach().double()
    assert torch.allclose(w, _weights(root / "aligned")[Q.format(2)] + u @ (u.T @ deltas[Q.format(2)]), atol=1e-6)


def test_safelora_on_a_lora_adapter_projects_b_and_merges(hand_models, arch_model_dir, subspace, tmp_path):
    """ΔW = s · B A read through peft: B ∈ span(V) stays, B ⟂ span(V) becomes C B = 0."""
    from peft import LoraConfig, get_peft_model

    from workbench.defenses.finetune.salora import lora_modules
    from workbench.models import load_model, save_adapter

    root, _ = hand_models
    u, u_perp, _ = subspace
    base, tok = load_model(str(root / "aligned"))
    peft_model = get_peft_model(base, LoraConfig(r=RANK, lora_alpha=8, target_modules=["q_proj"]))
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for n, m in lora_modules(peft_model).items():
            layer = int(n.split("layers.")[1].split(".")[0])
            if layer in (0, 1):
                m.lora_B["default"].weight.copy_((u if layer == 0 else u_perp[:, :RANK]).float() * 0.1)
                m.lora_A["default"].weight.copy_(torch.randn(RANK, 64, generator=gen) * 0.1)
    save_adapter(peft_model, tok, tmp_path / "adapter", base=root / "aligned")
    merged = _weights(tmp_path / "adapter")  # load_model merges the adapter: the attacked model

    res = safelora.repair(safelora.SafeLoRAParams(), RepairContext(
        attacked=str(tmp_path / "adapter"), aligned=str(root / "aligned"), unaligned=str(arch_model_dir),
        progress=False))
    after = {n: p.detach().double() for n, p in res.model.named_parameters()}
    aligned = _weights(root / "aligned")
    assert res.report["mode"] == "lora" and res.report["n_adapted"] == 2  # layers 2, 3 keep B = 0
    assert res.report["projected"] == [Q.format(1)]
    assert torch.allclose(after[Q.format(0)], merged[Q.format(0)], atol=1e-6)
    assert not torch.allclose(merged[Q.format(1)], aligned[Q.format(1)], atol=1e-4)
    assert torch.allclose(after[Q.format(1)], aligned[Q.format(1)], atol=1e-6)


def test_safelora_params_take_a_threshold_or_a_layer_count_not_both():
    from workbench.defenses import get_defense, parse_params

    with pytest.raises(ValueError, match="threshold or n_layers"):
        parse_params(get_defense("safelora"), {"threshold": 0.3, "n_layers": 2})
    assert parse_params(get_defense("safelora"), {"n_layers": 2}).n_layers == 2


# ------------------------------------------------------------------------------------------------- Antidote


def test_antidote_zeroes_exactly_the_hand_computed_top_wanda_fraction_per_row(arch_model_dir):
    from workbench.analysis.safety_metric import batches_of, calibration_samples
    from workbench.models import load_model

    model, tok = load_model(str(arch_model_dir))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    params = antidote.AntidoteParams(n_calibration=8, dense_ratio=0.1)
    # Wanda by hand: ‖X_j‖₂ over non-pad tokens from forward-hook inputs, S = |W|·‖X‖, top 10 % of each row
    batches = batches_of(tok, calibration_samples("harmful", 8, 0), params.max_len, params.batch_size)
    sq: dict[str, torch.Tensor] = {}
    mask_now = {}
    linears = {n: m for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in antidote.FULL_FT_MODULES}

    def hook(name):
        def fn(module, args):
            x = args[0].double()[mask_now["m"]]  # [tokens, d_in]
            sq[name] = sq.get(name, 0) + x.square().sum(0)
        return fn

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in linears.items()]
    with torch.no_grad():
        for b in batches:
            mask_now["m"] = b["attention_mask"].bool()
            model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
    for h in handles:
        h.remove()
    expected = {}
    for n, m in linears.items():
        score = m.weight.detach().double().abs() * sq[n].sqrt()[None, :]
        k = round(0.1 * score.shape[1])
        top = torch.zeros_like(score, dtype=torch.bool)
        top.scatter_(1, score.argsort(dim=1, descending=True)[:, :k], True)
        expected[f"{n}.weight"] = top

    res = antidote.repair(params, RepairContext(attacked=str(arch_model_dir), progress=False))
    after = {n: p.detach() for n, p in res.model.named_parameters()}
    assert set(res.report["per_tensor"]) == set(expected) and len(expected) == 12  # q/k/v of 4 layers
    for n, p in after.items():
        if n in expected:
            changed = p != before[n]
            assert torch.equal(changed, expected[n] & (before[n] != 0)), n
            assert torch.all(p[expected[n]] == 0)
        else:
            assert torch.equal(p, before[n]), n
    assert res.report["n_pruned"] == sum(int(m.sum()) for m in expected.values())


# --------------------------------------------------------------------------------------- CLI and leaderboard


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """Tiny quickstart (non-aligned eval, SFT align, harmful_ft attack), a Freeze-defended fine-tune of the aligned
    model, and both repairs of the attack run via the CLI — all in one runs root."""
    from workbench import steps
    from workbench.config import DefenseSpec
    from workbench.pipeline import quickstart
    from workbench.presets import preset

    root = tmp_path_factory.mktemp("post-runs")
    paths = quickstart("tiny-llama", root, progress=False)
    pr = preset("tiny")
    paths["defended"] = steps.attack(pr.attack, str(paths["aligned"]), root, 0, pr.eval, progress=False,
                                     defense=DefenseSpec(name="freeze"))
    for defense in ("safelora", "antidote"):
        res = CliRunner().invoke(app, ["repair", "--defense", defense, "--model", str(paths["attacked"]),
                                       "--out", str(root)])
        assert res.exit_code == 0, res.output
        (paths[defense],) = [p for p in root.iterdir() if p.name.startswith(f"repair-{defense}-")
                             and p != paths["repaired"]]
    return root, paths


def _check_safelora_run(paths, unaligned_name: str):
    """The repair run read its references from the run folders, and every adapted matrix is the hand-computed
    projection (or the attacked weight, above the threshold)."""
    run = open_run(paths["safelora"], "repair")
    spec = run.config["spec"]
    assert spec["aligned"] == str(paths["aligned"]) and spec["unaligned"] == unaligned_name  # read from run folders
    assert spec["attack"]["data"]["p"] == 0.25 and run.config["git_hash"] and run.config["seed"] == 0
    report = json.loads((run.path / "repair.json").read_text())
    assert report["n_adapted"] == 16  # LoRA on q/k/v/o of 4 layers
    attacked, aligned, unaligned = _weights(paths["attacked"]), _weights(paths["aligned"]), _weights(unaligned_name)
    repaired = _weights(run.path)
    assert len(report["layers"]) == 16
    for layer in report["layers"]:
        n = layer["name"]
        v, dw = aligned[n] - unaligned[n], attacked[n] - aligned[n]
        c_dw = v @ (v.T @ dw) / v.norm()
        assert layer["similarity"] == pytest.approx(safelora.cosine(c_dw, dw), abs=1e-6)
        assert layer["projected"] == (layer["similarity"] < 0.5)
        want = aligned[n] + c_dw if layer["projected"] else attacked[n]
        assert torch.allclose(repaired[n], want, atol=1e-6), n
    return run


def test_cli_safelora_repair_run_records_projection_and_matches_hand_computation(runs_root):
    root, paths = runs_root
    run = _check_safelora_run(paths, "tiny-llama")
    m = run.metrics
    assert {"hs", "hs_plus", "refusal_harmful", "refusal_benign", "fa_sst2"} <= set(m)
    assert m["hs"]["n"] == 8 and m["repair"]["repair_seconds"] >= 0  # the attack run's recorded (tiny) eval
    assert len(run.samples()) == 24


def test_cli_antidote_repair_run_saves_exactly_the_pruned_weights(runs_root):
    _check_antidote_run(runs_root[1])


def _check_antidote_run(paths):
    """The repair run zeroed 10 % of every row of the attack's LoRA targets, recorded exactly those weights, and
    left every other weight bit-equal."""
    from workbench.analysis.wanda import PruneRecord

    run = open_run(paths["antidote"], "repair")
    record = PruneRecord.load(run.path / "prune.safetensors")
    attacked, repaired = _weights(paths["attacked"]), _weights(run.path)
    assert sorted(record.indices) == sorted(n for n in attacked if n.rsplit(".", 2)[-2] in
                                            ("q_proj", "k_proj", "v_proj", "o_proj"))  # the attack's LoRA targets
    for n, w in attacked.items():
        if n not in record.indices:
            assert torch.equal(repaired[n], w), n
            continue
        idx = record.indices[n]
        assert len(idx) == w.shape[0] * round(0.1 * w.shape[1])  # 10 % of every row
        assert torch.equal(record.values[n].double(), w.view(-1)[idx])
        assert torch.all(repaired[n].view(-1)[idx] == 0)
        rest = torch.ones(w.numel(), dtype=torch.bool)
        rest[idx] = False
        assert torch.equal(repaired[n].view(-1)[rest], w.view(-1)[rest]), n
    assert json.loads((run.path / "repair.json").read_text())["n_pruned"] == record.n_zeroed


def test_cli_repairs_of_a_tiny_gemma3_attack_match_the_hand_computations(tmp_path_factory):
    """Both repairs from the command line on tiny-gemma3 (SFT-aligned, then harmful_ft at p = 0.25, as the quickstart
    does, at smaller evaluation sizes: tests/gemma_fixtures.py): the same hand checks as on tiny-llama, and the
    repaired model is evaluated as the attack run was."""
    _, paths = gemma_runs_root(tmp_path_factory)
    for defense in REPAIRS:
        assert open_run(paths[defense]).metrics["hs"]["n"] == 2  # the attack run's recorded evaluation
    _check_safelora_run(paths, "tiny-gemma3")
    _check_antidote_run(paths)


def test_cli_repair_with_another_judge_keeps_the_recorded_evaluation_otherwise(runs_root, tmp_path):
    """`repair --judge PATH` scores the repaired model's answers with that judge; prompts, sizes and generation stay
    the attacked run's recorded evaluation."""
    from judge_helpers import save_classifier

    from workbench.evaluation.moderation import get_judge

    _, paths = runs_root
    judge = get_judge(save_classifier(tmp_path / "tiny-moderation"))
    res = CliRunner().invoke(app, ["repair", "--defense", "antidote", "--model", str(paths["attacked"]),
                                   "--judge", judge.spec, "--out", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    (path,) = (tmp_path / "runs").glob("repair-antidote-*")
    run, attacked = open_run(path), open_run(paths["attacked"])
    assert run.metrics["judge"] == judge.identity.to_dict() and run.metrics["hs"]["n"] == 8
    assert run.spec.eval == attacked.spec.eval.model_copy(update={"judge_model": judge.spec})
    assert open_run(paths["antidote"]).metrics["judge"]["name"] == "hashing-lr"  # the tiny preset's judge


@pytest.mark.parametrize("args, message", [
    (["--defense", "nope"], "'nope' is unknown; repair takes a post-fine-tuning defense: antidote, safelora"),
    (["--defense", "lisa"], "'lisa' is a fine-tuning-stage defense"),
    (["--defense", "safelora", "--param", "threshold=2"], "bad hyperparameters for defense 'safelora'"),
    (["--defense", "antidote", "--param", "ratio=0.1"], "it accepts: dense_ratio"),
    (["--defense", "antidote", "--param", "dense_ratio"], "--param expects KEY=VALUE"),
    (["--defense", "antidote", "--aligned", "tiny-llama"], "antidote does not use --aligned"),
])
def test_cli_repair_rejects_bad_defense_and_params(runs_root, args, message, tmp_path):
    _, paths = runs_root
    res = CliRunner().invoke(app, ["repair", "--model", str(paths["attacked"]), *args, "--out", str(tmp_path)])
    assert res.exit_code == 2 and message in text(res), res.output


def test_cli_repair_rejects_missing_references_and_wrong_run_kinds(runs_root, tiny_model_dir, tmp_path):
    _, paths = runs_root

    def run(*args):
        return CliRunner().invoke(app, ["repair", *args, "--out", str(tmp_path)])

    res = run("--defense", "safelora", "--model", str(tiny_model_dir))
    assert res.exit_code == 2 and "safelora needs --aligned" in text(res)
    res = run("--defense", "safelora", "--model", str(tiny_model_dir), "--aligned", str(tiny_model_dir))
    assert res.exit_code == 2 and "safelora needs --unaligned" in text(res)
    res = run("--defense", "safelora", "--model", str(paths["attacked"]), "--unaligned", str(paths["aligned"]))
    assert res.exit_code == 2 and "--aligned and --unaligned are the same model" in text(res)
    res = run("--defense", "antidote", "--model", str(paths["aligned"]))
    assert res.exit_code == 2 and "is a 'align' run; repair takes the fine-tuned model of an 'attack' or 'defend' run" \
        in text(res)
    res = run("--defense", "safelora", "--model", str(paths["attacked"]), "--aligned", str(tmp_path / "missing"))
    assert res.exit_code == 2 and "missing: neither a registered model" in text(res)
    assert not any(tmp_path.iterdir())  # nothing staged for a rejected input


def test_cli_leaderboard_puts_every_stage_against_the_same_attack(runs_root, tmp_path):
    from workbench.leaderboard import build
    from workbench.plots.leaderboard import plot_hs_fa

    root, paths = runs_root
    res = CliRunner().invoke(app, ["leaderboard", "--runs", str(root), "--out", str(tmp_path / "lb"),
                                   "--formats", "html"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "lb.md").is_file() and (tmp_path / "lb_hs_fa.html").is_file()
    rows = list(csv.DictReader((tmp_path / "lb.csv").open()))
    by_run = {r["run"]: r for r in rows}
    # the quickstart's own SafeLoRA repair ("repaired") is on the board too, next to the two CLI repairs
    assert set(by_run) == {str(paths[k]) for k in ("attacked", "defended", "safelora", "antidote", "repaired")}
    stages = {k: (by_run[str(paths[k])]["stage"], by_run[str(paths[k])]["defense"]) for k in
              ("attacked", "defended", "safelora", "antidote")}
    assert stages == {"attacked": ("alignment", "sft"), "defended": ("fine-tuning", "freeze"),
                      "safelora": ("post-fine-tuning", "safelora"), "antidote": ("post-fine-tuning", "antidote")}
    for key, row in ((k, by_run[str(paths[k])]) for k in stages):
        assert (row["attack"], float(row["p"]), row["aligned_with"]) == ("harmful_ft", 0.25, "sft")
        m = open_run(paths[key]).metrics
        for metric in ("hs", "hs_plus", "fa_sst2", "refusal_benign"):
            assert float(row[metric]) == pytest.approx(m[metric]["value"])
            assert float(row[f"{metric}_low"]) == pytest.approx(m[metric]["low"]) and int(row[f"{metric}_n"]) == 8
    align_s = open_run(paths["aligned"]).metrics["train"]["train_seconds"]
    assert float(by_run[str(paths["attacked"])]["defense_s"]) == pytest.approx(align_s)
    assert float(by_run[str(paths["antidote"])]["defense_s"]) == pytest.approx(
        open_run(paths["antidote"]).metrics["repair"]["repair_seconds"])
    assert by_run[str(paths["safelora"])]["finetune_s"] == by_run[str(paths["attacked"])]["finetune_s"]

    board = build(root)
    paired = {(Path(d["run"]).name, d["metric"]): d for d in board.vs_sft()}
    assert {run for run, _ in paired} == {paths[k].name for k in ("defended", "safelora", "antidote", "repaired")}
    sft = {s["prompt"]: s for s in open_run(paths["attacked"]).samples() if s["set"] == "harmful"}
    ours = [s for s in open_run(paths["antidote"]).samples() if s["set"] == "harmful"]
    only_antidote = sum(s["refusal"] and not sft[s["prompt"]]["refusal"] for s in ours)
    d = paired[(paths["antidote"].name, "refusal_harmful")]
    assert (d["n"], d["only_a"]) == (8, only_antidote)
    assert d["value"] == pytest.approx(open_run(paths["antidote"]).metrics["refusal_harmful"]["value"]
                                       - open_run(paths["attacked"]).metrics["refusal_harmful"]["value"])
    table = [line for line in (tmp_path / "lb_vs_sft.md").read_text().splitlines() if line.startswith("|")]
    assert len(table) == 2 + 4  # header + rule + one line per defended or repaired run
    fig = plot_hs_fa(board)
    labelled = [(t.name, c[0]) for t in fig.data for c in t.customdata]
    assert sorted(a.text for a in fig.layout.annotations) == sorted(name for _, name in labelled)
    points = set(labelled)
    assert points == {("alignment", "sft"), ("fine-tuning", "freeze"), ("post-fine-tuning", "safelora"),
                      ("post-fine-tuning", "antidote")}
    xs = sorted(x for t in fig.data for x in t.x)
    assert xs == sorted(r.rates["hs"]["value"] for r in board.rows)


def test_cli_leaderboard_explains_an_empty_or_missing_runs_root(runs_root, tmp_path):
    _, paths = runs_root
    res = CliRunner().invoke(app, ["leaderboard", "--runs", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "no such folder" in text(res)
    import shutil

    shutil.copytree(paths["non-aligned"], tmp_path / "only" / paths["non-aligned"].name)
    res = CliRunner().invoke(app, ["leaderboard", "--runs", str(tmp_path / "only")])
    assert res.exit_code == 2 and "no attacked models under" in text(res)


def test_leaderboard_stage_filter_and_grouped_bars(runs_root, tmp_path):
    from workbench.leaderboard import build
    from workbench.plots.leaderboard import plot_bars

    root, paths = runs_root
    board = build(root, ["fine-tuning"])
    assert {(r.stage, r.defense) for r in board.rows} == {("alignment", "sft"), ("fine-tuning", "freeze")}
    fig = plot_bars(board)
    by_metric = {t.name: t for t in fig.data}
    assert set(by_metric) == {"HS", "HS+", "FA sst2", "refusal benign", "refusal harmful"}
    for row in board.rows:  # each bar is the run's own metric, its error bar the run's own interval
        i = list(by_metric["HS"].x).index("sft (baseline)" if row.defense == "sft" else row.defense)
        assert by_metric["HS"].y[i] == row.rates["hs"]["value"]
        assert by_metric["HS"].error_y.array[i] == pytest.approx(row.rates["hs"]["high"] - row.rates["hs"]["value"])
    import dataclasses

    from workbench.leaderboard import Leaderboard

    seeds = Leaderboard([*board.rows, dataclasses.replace(board.rows[-1], seed=1)], board.metrics)
    xs = list(plot_bars(seeds).data[0].x)
    assert len(set(xs)) == len(xs) == 3 and xs[-1].endswith("seed 1")  # a second seed gets its own bars
    with pytest.raises(ValueError, match="unknown stage"):
        build(tmp_path / "not-read", ["finetune"])  # checked before any folder is read
    res = CliRunner().invoke(app, ["leaderboard", "--runs", str(root), "--out", str(tmp_path / "lb"),
                                   "--formats", "html", "--stage", "post-fine-tuning"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "lb_bars.html").is_file()
    rows = list(csv.DictReader((tmp_path / "lb.csv").open()))
    assert sorted(r["defense"] for r in rows) == ["antidote", "safelora", "safelora", "sft"]  # + the quickstart's


def test_defense_name_shows_given_params_so_variants_read_apart(runs_root, tmp_path):
    import json
    import shutil

    from workbench.figures import defense_name

    _, paths = runs_root
    copy = tmp_path / paths["antidote"].name
    shutil.copytree(paths["antidote"], copy)
    cfg = json.loads((copy / "config.json").read_text())
    assert defense_name(open_run(copy)) == "antidote"  # defaults: just the name
    cfg["spec"]["defense"]["params"] = {"utility_ratio": 0.01, "dense_ratio": 0.05}
    (copy / "config.json").write_text(json.dumps(cfg))
    assert defense_name(open_run(copy)) == "antidote(dense_ratio=0.05, utility_ratio=0.01)"


def test_cli_leaderboard_reads_several_roots_as_one_board(runs_root, tmp_path):
    """A sweep's runs kept apart from the grid (their own root) still pair with the grid's SFT row."""
    import shutil

    _, paths = runs_root
    for key, folder in (("attacked", "grid"), ("defended", "sweep")):
        shutil.copytree(paths[key], tmp_path / folder / paths[key].name)
    res = CliRunner().invoke(app, ["leaderboard", "--runs", str(tmp_path / "grid"), "--runs", str(tmp_path / "sweep"),
                                   "--out", str(tmp_path / "lb"), "--formats", "html"])
    assert res.exit_code == 0, res.output
    rows = {r["defense"]: r for r in csv.DictReader((tmp_path / "lb.csv").open())}
    assert set(rows) == {"sft", "freeze"} and rows["freeze"]["aligned_with"] == "sft"
    assert "| freeze |" in (tmp_path / "lb_vs_sft.md").read_text()  # paired across the two roots
    res = CliRunner().invoke(app, ["leaderboard", "--runs", str(tmp_path / "grid"), "--runs", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "nope: no such folder" in text(res)


def test_archive_keeps_records_and_lowrank_models_and_the_leaderboard_reads_it(runs_root, tmp_path):
    from workbench.archive import ARCHIVE_NOTE
    from workbench.leaderboard import _Index, build
    from workbench.runs import list_runs

    root, paths = runs_root
    res = CliRunner().invoke(app, ["runs", "archive", "--runs", str(root), "--out", str(tmp_path / "arch"),
                                   "--lowrank", "align", "--lowrank", "attack"])
    assert res.exit_code == 0, res.output
    archived = {r.path.name: r for r in list_runs(tmp_path / "arch")}
    assert set(archived) == {r.path.name for r in list_runs(root)}
    aligned = archived[paths["aligned"].name]
    assert [f.name for f in aligned.path.rglob("*.safetensors")] == ["lowrank_delta.safetensors"]  # no full weights
    note = json.loads((aligned.path / ARCHIVE_NOTE).read_text())
    assert note["lowrank"]["base"] == "tiny-llama" and note["lowrank"]["max_rank"] == 4  # tiny preset: LoRA r = 4
    attacked_note = json.loads((archived[paths["attacked"].name].path / ARCHIVE_NOTE).read_text())
    assert 4 < attacked_note["lowrank"]["max_rank"] <= 8  # attack LoRA on top of the align LoRA, both on tiny-llama
    assert "lowrank" not in json.loads((archived[paths["antidote"].name].path / ARCHIVE_NOTE).read_text())
    for key in ("aligned", "attacked"):  # the archived copies load as the same models
        original, restored = _weights(paths[key]), _weights(archived[paths[key].name].path)
        assert original.keys() == restored.keys()
        assert max((original[n] - restored[n]).abs().max().item() for n in original) < 1e-5
    assert "model/model.safetensors" in note["left_out"] and note["archived_from"] == str(paths["aligned"])
    assert aligned.metrics == open_run(paths["aligned"]).metrics
    assert aligned.samples() == open_run(paths["aligned"]).samples()
    assert (aligned.path / "model" / "base.json").is_file()
    # a moved root: the recorded absolute reference no longer exists, the run is found by its folder name
    assert _Index(list(archived.values())).get(f"/moved/away/{paths['aligned'].name}") == aligned
    rows = {Path(r.run).name: (r.stage, r.defense, r.rates) for r in build(tmp_path / "arch").rows}
    assert rows == {Path(r.run).name: (r.stage, r.defense, r.rates) for r in build(root).rows}
    res = CliRunner().invoke(app, ["runs", "archive", "--runs", str(root), "--out", str(tmp_path / "arch")])
    assert res.exit_code == 0 and "0 runs archived" in text(res)  # archived runs are never rewritten
    res = CliRunner().invoke(app, ["runs", "archive", "--runs", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "no such folder" in text(res)


def test_lowrank_delta_refuses_full_rank_and_non_matrix_changes(arch_model_dir):
    from workbench.models import load_model
    from workbench.models.lowrank import apply_lowrank, lowrank_delta

    base, _ = load_model(str(arch_model_dir))
    model, _ = load_model(str(arch_model_dir))
    q = model.model.layers[0].self_attn.q_proj.weight
    with torch.no_grad():
        q.add_(torch.randn(q.shape[0], 2) @ torch.randn(2, q.shape[1]) * 0.01)  # a rank-2 change
    factors, report = lowrank_delta(model, base)
    assert (report["tensors"], report["max_rank"]) == (1, 2) and report["max_abs_error"] < 1e-6
    apply_lowrank(base, factors)
    assert torch.allclose(base.model.layers[0].self_attn.q_proj.weight, q, atol=1e-6)
    base, _ = load_model(str(arch_model_dir))
    k = model.model.layers[1].self_attn.k_proj.weight
    with torch.no_grad():  # a LoRA change far below float precision: full-rank rounding noise, nothing to store
        k.add_((torch.randn(k.shape[0], 2) @ torch.randn(2, k.shape[1]) * 1e-4 + torch.randn_like(k)) * 1e-8)
    factors, report = lowrank_delta(model, base)
    assert (report["tensors"], report["max_rank"]) == (1, 2) and report["max_abs_error"] < 1e-6
    assert not any(n.startswith("model.layers.1.") for n in factors)
    base, _ = load_model(str(arch_model_dir))
    with torch.no_grad():
        q.add_(torch.randn_like(q) * 0.01)  # full rank: full fine-tuning
    with pytest.raises(ValueError, match="not a low-rank"):
        lowrank_delta(model, base, max_rank=4)
    model, _ = load_model(str(arch_model_dir))
    with torch.no_grad():
        model.model.norm.weight.add_(0.1)
    with pytest.raises(ValueError, match="only weight matrices"):
        lowrank_delta(model, base)
