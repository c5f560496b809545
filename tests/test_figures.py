"""`workbench figures` and `workbench.figures`: every figure of the fixture runs, exported as HTML + PNG (SVG too);
leaderboard rows read back exactly from metrics.json; run lookup by model, compare and parameters."""
from __future__ import annotations

import json
import shutil

import pytest
from explorer_fixtures import SWEEP_PS, explorer_runs_root, outside_studies
from typer.testing import CliRunner

from workbench import figures as wf
from workbench.cli import app
from workbench.runs import list_runs


def text(res) -> str:
    """CLI output with rich's line wrapping undone."""
    return " ".join(res.output.split())


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    return explorer_runs_root(tmp_path_factory)


def test_leaderboard_figure_shows_each_aligned_model_before_and_after_its_attack(runs_root):
    """The explorer's Defenses figure (`plot_metric`) draws the leaderboard board: one panel per attack, the
    aligned model's rate before the attack next to the attacked model's, with their 95 % intervals."""
    from workbench.leaderboard import build
    from workbench.plots.leaderboard import _attack_label, plot_metric

    board = build(runs_root)
    (align,) = outside_studies(runs_root, "align")
    attack = wf.pipeline_runs(runs_root)["attacked"]
    (row,) = [r for r in board.rows if r.run == str(attack.path)]
    assert (row.stage, row.defense, row.aligned_from) == ("alignment", "sft", "tiny-llama")
    m, a = align.metrics["refusal_harmful"], attack.metrics["refusal_harmful"]
    assert row.aligned_rates["refusal_harmful"] == m and row.rates["refusal_harmful"] == a
    fig = plot_metric(board, "refusal_harmful")
    attacks = list(dict.fromkeys(_attack_label(r) for r in board.rows))
    assert [t.text for t in fig.layout.annotations] == attacks  # one panel per attack, never mixed
    i = attacks.index(_attack_label(row))
    axis = "x" if i == 0 else f"x{i + 1}"
    traces = {t.name: t for t in fig.data if t.xaxis == axis}
    panel = [r for r in board.rows if _attack_label(r) == _attack_label(row)]
    j = panel.index(row)
    before, after = traces["aligned model, before the attack"], traces["after the attack"]
    assert (before.y[j], before.error_y.array[j]) == (m["value"], m["high"] - m["value"])
    assert (after.y[j], after.error_y.arrayminus[j]) == (a["value"], a["value"] - a["low"])
    fine_tuning = build(runs_root, stages=["fine-tuning"]).rows  # plus the SFT rows it is compared with
    (freeze,) = [r for r in fine_tuning if r.stage == "fine-tuning"]
    assert freeze.defense == "freeze" and freeze.run == str(next(iter(list_runs(runs_root, "defend"))).path)
    assert {(r.stage, r.defense) for r in fine_tuning} == {("fine-tuning", "freeze"), ("alignment", "sft")}


def test_runs_are_found_by_role_model_and_parameters(runs_root):
    roles = wf.pipeline_runs(runs_root, "tiny-llama")
    assert [roles[k].kind for k in ("non-aligned", "aligned", "attacked")] == ["eval", "align", "attack"]
    assert roles["attacked"].path.parent == runs_root  # the quickstart's attack, not a sweep cell
    assert wf.pipeline_runs(runs_root, "some-other-model") == {}
    aligned, attacked = str(roles["aligned"].path), str(roles["attacked"].path)
    drift = wf.find_analysis(runs_root, "drift", model=aligned, compare=attacked, params={"n_samples": 4})
    assert drift is not None and drift.path.name == "analysis-drift"
    assert wf.find_analysis(runs_root, "drift", model=aligned, params={"n_samples": 5}) is None
    assert wf.find_analysis(runs_root, "drift", model=attacked) is None
    assert wf.find_analysis(runs_root, "no-such-analysis") is None
    assert wf.saved_figures(drift) == {"drift_layers": drift.path / "figures" / "drift_layers.html"}


def test_figures_command_exports_every_figure_as_html_and_png(runs_root, tmp_path):
    from PIL import Image

    expected = wf.collect(runs_root)
    sweep = [k for k in expected if k.startswith("figure2/")]
    assert sweep and {"leaderboard/bars", "leaderboard/hs_fa"} & set(expected)
    assert {k.split("/")[0] for k in expected} >= {"study-safety-params", "study-basins"}  # both studies' runs
    assert all(k.split("/")[0] in {"figure2", "leaderboard"} or (runs_root / k.split("/")[0]).is_dir()
               for k in expected)
    out = tmp_path / "figs"
    res = CliRunner().invoke(app, ["figures", "--out", str(out), "--runs", str(runs_root), "--formats", "html,png"])
    assert res.exit_code == 0, res.output
    assert f"{len(expected)} figures" in res.output
    for key in expected:
        for fmt in ("html", "png"):
            assert (out / f"{key}.{fmt}").stat().st_size > 1000, (key, fmt)
        with Image.open(out / f"{key}.png") as im:
            im.load()
            lo, hi = im.convert("L").getextrema()
            assert im.width >= 600 and im.height >= 400 and hi - lo > 100, key  # drawn, not blank
    html = (out / "figure2" / f"{sweep[0].split('/')[1]}.html").read_text()
    assert 'src="../plotly.min.js"' in html and (out / "plotly.min.js").stat().st_size > 1_000_000
    index = (out / "index.html").read_text()
    assert all(f'{k}.png"' in index for k in expected)
    rows = wf.sweep_rows(runs_root / "figure2")
    assert sorted({r["p"] for r in rows}) == SWEEP_PS


def test_figures_command_filters_and_fails_clearly(runs_root, tmp_path):
    res = CliRunner().invoke(app, ["figures", "--out", str(tmp_path / "a"), "--runs", str(runs_root), "--kind",
                                   "leaderboard", "--formats", "svg"])
    assert res.exit_code == 0, res.output
    svgs = sorted((tmp_path / "a").rglob("*.svg"))
    assert [p.parent.name for p in svgs] == ["leaderboard"] * len(wf.collect(runs_root, ["leaderboard"]))
    assert "bars.svg" in [p.name for p in svgs]
    assert all(p.read_text().startswith("<svg") for p in svgs)
    assert not list((tmp_path / "a").rglob("*.png"))
    assert [p.name for p in (tmp_path / "a").rglob("*.html")] == ["index.html"]
    res = CliRunner().invoke(app, ["figures", "--out", str(tmp_path / "b"), "--runs", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "no such folder" in text(res)
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(app, ["figures", "--out", str(tmp_path / "c"), "--runs", str(tmp_path / "empty")])
    assert res.exit_code == 2 and "no figures to draw" in text(res) and "workbench quickstart" in text(res)
    res = CliRunner().invoke(app, ["figures", "--out", str(tmp_path / "d"), "--runs", str(runs_root),
                                   "--formats", "gif"])
    assert res.exit_code == 2 and "unknown figure format" in text(res)


def test_a_broken_analysis_run_is_skipped_not_fatal(runs_root, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(runs_root / "analysis-drift", root / "analysis-drift")
    broken = root / "analysis-broken"
    shutil.copytree(runs_root / "analysis-drift", broken)
    data = json.loads((broken / "result.json").read_text())
    data["type"] = "NoSuchResult"
    (broken / "result.json").write_text(json.dumps(data))
    errors = []
    figs = wf.collect(root, on_error=lambda group, err: errors.append(group))
    assert errors == ["analysis-broken"] and set(figs) == {"analysis-drift/drift_layers"}


def test_training_figure_draws_task_loss_and_each_defense_term_per_step(tmp_path):
    from typer.testing import CliRunner

    from workbench.cli import app
    from workbench.plots.training import plot_training, training_series

    training = {"losses": [3.0, 2.0], "diagnostics": [
        {"step": 1, "tar": {"loss": 3.0, "tr_losses": [-1.0, -3.0], "adversary_lr": 3e-4}},
        {"step": 2, "tar": {"loss": 2.0, "tr_losses": [-2.0, -4.0], "adversary_lr": 6e-4},
         "vaccine": {"eps_norms": {"0": 1.0}, "perturbed_loss": 2.5}}]}
    series = training_series(training)
    assert series == {"task loss": ([1, 2], [3.0, 2.0]), "tar: loss": ([1, 2], [3.0, 2.0]),
                      "tar: tr_losses (mean)": ([1, 2], [-2.0, -3.0]), "tar: adversary_lr": ([1, 2], [3e-4, 6e-4]),
                      "vaccine: perturbed_loss": ([2], [2.5])}  # nested eps_norms skipped
    fig = plot_training({"a": training, "b": {"losses": [1.0]}})
    assert [a.text for a in fig.layout.annotations] == list(series)
    assert {(t.name, tuple(t.y)) for t in fig.data if t.name == "b"} == {("b", (1.0,))}
    with pytest.raises(ValueError, match="no training curves"):
        plot_training({"empty": {}})
    chosen = plot_training({"a": training}, terms=["vaccine: perturbed_loss", "task loss", "not a term"])
    assert [a.text for a in chosen.layout.annotations] == ["vaccine: perturbed_loss", "task loss"]

    res = CliRunner().invoke(app, ["align", "--defense", "vaccine", "--model", "tiny-llama", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    (run,) = tmp_path.glob("align-vaccine-*")
    figs = wf.collect(tmp_path, kinds=("training",))
    assert list(figs) == [f"{run.name}/training"]
    titles = [a.text for a in figs[f"{run.name}/training"].layout.annotations]
    assert titles == ["task loss", "vaccine: loss", "vaccine: perturbed_loss"]
