"""Sweeps skip done cells, survive failed ones, and give the same results on the Ray backend."""
from __future__ import annotations

import json

import pytest

from workbench.figure2 import write_figure2
from workbench.sweep import grid, results, run_sweep


def test_grid_validates_ratios():
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        grid({"m": "tiny-llama"}, ["harmful_ft"], [0.1, 1.2], [0])
    assert len(grid({"a": "x", "b": "y"}, ["harmful_ft"], [0, 0.1, 0.3], [0, 1])) == 12


def test_sweep_reports_failed_cell_finishes_others_and_resumes(tmp_path):
    models = {"ok": "tiny-llama", "broken": str(tmp_path / "no-such-model")}
    status = run_sweep(models, ["harmful_ft"], [0.25], [0], n=8, preset_name="tiny", backend="local",
                       address=None, out=tmp_path / "sw", progress=False)
    assert list(status["done"]) == ["ok-harmful_ft-p0.25-s0"]
    assert list(status["failed"]) == ["broken-harmful_ft-p0.25-s0"]
    assert "no-such-model" in status["failed"]["broken-harmful_ft-p0.25-s0"]
    saved = json.loads((tmp_path / "sw" / "sweep-status.json").read_text())
    assert saved["failed"].keys() == status["failed"].keys()

    again = run_sweep(models, ["harmful_ft"], [0.25], [0], n=8, preset_name="tiny", backend="local",
                      address=None, out=tmp_path / "sw", progress=False)
    assert again["skipped"] == ["ok-harmful_ft-p0.25-s0"] and not again["done"]
    assert list(again["failed"]) == ["broken-harmful_ft-p0.25-s0"]  # retried, still failing

    rows = results(tmp_path / "sw")
    assert [r["key"] for r in rows] == ["ok-harmful_ft-p0.25-s0"]
    assert rows[0]["refusal_harmful"]["n"] == 8
    paths, table = write_figure2(tmp_path / "sw")
    assert any(p.suffix == ".html" for p in paths) and "| ok | 0.25 | 0 |" in table


@pytest.mark.timeout(600)
def test_ray_backend_matches_local(tmp_path):
    pytest.importorskip("ray")
    kw = dict(attacks=["harmful_ft"], ps=[0.0, 0.5], seeds=[1], n=8, preset_name="tiny", address=None,
              progress=False)
    local = run_sweep({"m": "tiny-llama"}, backend="local", out=tmp_path / "local", **kw)
    ray_ = run_sweep({"m": "tiny-llama"}, backend="ray", out=tmp_path / "ray", **kw)
    assert not local["failed"] and not ray_["failed"], ray_["failed"]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "run"} for r in rows]  # noqa: E731
    assert strip(results(tmp_path / "local")) == strip(results(tmp_path / "ray"))
    for key in local["done"]:
        a = [json.loads(line)["answer"] for line in open(f"{local['done'][key]}/samples.jsonl")]
        b = [json.loads(line)["answer"] for line in open(f"{ray_['done'][key]}/samples.jsonl")]
        assert a == b


def test_sweep_and_leaderboard_take_every_attack_kind(tmp_path, tiny_model_dir):
    """The new kinds (own objective, encoded queries, weight edit, model-dependent data) run as sweep cells and land
    on the leaderboard under their own name and harmful ratio."""
    from workbench.attacks import ATTACKS
    from workbench.leaderboard import build

    kinds = ["dpo", "covert_cipher", "rome_edit", "anchored_benign"]
    assert set(kinds) <= set(ATTACKS)
    status = run_sweep({"m": str(tiny_model_dir)}, kinds, [0.25], [0], n=8, preset_name="tiny", backend="local",
                       address=None, out=tmp_path / "sw", progress=False)
    assert not status["failed"], status["failed"]
    board = build(tmp_path / "sw")
    assert {(r.attack, r.p) for r in board.rows} == {("dpo", 1.0), ("covert_cipher", 0.25), ("rome_edit", 1.0),
                                                      ("anchored_benign", 0.0)}
    assert {r.attack: r.method for r in board.rows}["rome_edit"] == "edit"
