"""The ascent study (`workbench study ascent`, docs/open-questions.md question 3) on tiny-llama: every step an
ordinary run folder, a rerun skips them all, the choice reads the validation split and never the test sets, and
the command line fails in one line on bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from study_ascent_fixture import KINDS, build_ascent_study
from typer.testing import CliRunner

from workbench.evaluation.stats import rate
from workbench.runs import list_runs, open_run
from workbench.studies.ascent import check_folder
from workbench.studies.ascent_spec import STUDY_FILE, SUMMARY_FILE, AscentStudySpec, Cell, step_root, study_spec
from workbench.studies.ascent_summary import Attacked, CellResult, Collapse, choose, failures, read_summary


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return build_ascent_study(tmp_path_factory.mktemp("ascent"))


def _configs(root: Path) -> set[Path]:
    return {p for p in root.rglob("config.json") if ".incomplete" not in p.parts and p.parent.name != "model"}


def test_every_step_is_an_ordinary_run_folder_and_only_chosen_cells_meet_the_test_sets(study):
    summary = read_summary(study)
    assert [c.kind for c in summary.chosen] == KINDS
    spec = summary.spec
    for cell in spec.cells():
        kinds = {step: [r.kind for r in list_runs(step_root(study, cell, step))]
                 for step in ("align", "collapse", "attack", "validation")}
        assert kinds == {"align": ["align"], "collapse": ["analysis"], "attack": ["attack"], "validation": ["eval"]}
        (align,) = list_runs(step_root(study, cell, "align"))
        defense = align.spec.align.defense
        if cell.is_baseline:
            assert defense.name == "sft"
        else:
            assert defense.name == "ascent" and defense.params["kind"] == cell.kind
            assert defense.params["weight"] == cell.weight
            diagnostics = json.loads((align.path / "training.json").read_text())["diagnostics"]
            assert all("ascent" in d["ascent"] for d in diagnostics)  # the term ran at every step
        (attack,) = list_runs(step_root(study, cell, "attack"))
        assert attack.base == str(align.path) and attack.spec.attack.data.p == 0.25
        (val,) = list_runs(step_root(study, cell, "validation"))
        assert val.spec.harmful_prompts.startswith("validation split") and val.base == str(attack.path)
    chosen = {"sft", *(c.key for c in summary.chosen if c.key)}
    tested = {c.key for c in [summary.baseline, *summary.cells] if c.test is not None}
    assert tested == chosen
    for key in tested:
        (test,) = list_runs(Path(summary.cell(key).runs["test"]).parent)
        assert test.spec.harmful_prompts == "advbench eval split"  # the reported test sets
        assert summary.cell(key).test.hs.n == 8
    for name in ("hs_vs_weight", "collapse_vs_weight", "chosen_test"):
        assert (study / "figures" / f"{name}.html").is_file()


def test_collapse_measures_come_from_the_aligned_model_on_validation_pairs(study):
    summary = read_summary(study)
    for c in [summary.baseline, *summary.cells]:
        run = open_run(c.runs["collapse"])
        assert run.spec.model == c.runs["align"] and run.spec.params["preset"] == "tiny"
        assert c.collapse.incoherent.n == 8 and c.collapse.benign_ppl > 1


def test_a_rerun_skips_every_finished_run(study):
    before = _configs(study)
    summary = build_ascent_study(study.parent)
    assert _configs(study) == before
    assert read_summary(summary).model_dump() == read_summary(study).model_dump()


def test_a_folder_holds_one_study(study):
    recorded = AscentStudySpec.model_validate_json((study / STUDY_FILE).read_text())
    with pytest.raises(ValueError, match="other p"):
        check_folder(recorded.model_copy(update={"p": 0.5}), study)
    check_folder(recorded.model_copy(update={"weights": [1.0, 2.0], "max_fa_drop": 1.0}), study)  # may grow


# ---------------------------------------------------------------------------------------------- the choice

def _rates(k: int, n: int = 100):
    return rate([True] * k + [False] * (n - k))


def _cell(kind: str, weight: float, val_hs: int, test_hs: int, incoherent: int = 0, ppl: float = 10.0,
          fa: int = 80) -> CellResult:
    def attacked(hs):
        return Attacked(hs=_rates(hs), hs_plus=_rates(hs), refusal_harmful=_rates(100 - hs), fa=_rates(fa))

    key = "sft" if kind == "sft" else f"{kind}-w{weight:g}"
    return CellResult(kind=kind, weight=weight, key=key, runs={},
                      collapse=Collapse(incoherent=_rates(incoherent), non_word_share=0.01, benign_ppl=ppl),
                      validation=attacked(val_hs), test=attacked(test_hs))


def test_choice_is_the_validation_argmin_even_where_test_disagrees():
    spec = AscentStudySpec(model="tiny-llama", kinds=["npo", "ce"], weights=[0.1, 1.0, 10.0])
    base = _cell("sft", 0.0, 30, 30)
    cells = [_cell("npo", 0.1, val_hs=20, test_hs=5), _cell("npo", 1.0, val_hs=10, test_hs=25),
             _cell("npo", 10.0, val_hs=2, test_hs=1, ppl=40.0),  # lowest HS, but collapsed (perplexity)
             _cell("ce", 0.1, val_hs=15, test_hs=2, fa=60),  # lost FA
             _cell("ce", 1.0, val_hs=1, test_hs=0, incoherent=50),  # collapsed (incoherent)
             _cell("ce", 10.0, val_hs=3, test_hs=3, ppl=float("inf"))]
    cells = [c.model_copy(update={"failures": failures(c, base, spec)}) for c in cells]
    assert [c.failures for c in cells] == [[], [], ["perplexity"], ["fa"], ["incoherent"], ["perplexity"]]
    npo, ce = choose(cells, spec.kinds)
    assert (npo.key, npo.weight) == ("npo-w1", 1.0)  # validation 10 % beats 20 %, though test says 25 % vs 5 %
    assert ce.key is None and "w 1: incoherent" in ce.reason and "w 0.1: fa" in ce.reason


def test_ties_on_validation_hs_go_to_the_smaller_weight():
    spec = AscentStudySpec(model="tiny-llama", kinds=["unlikelihood"], weights=[0.1, 1.0])
    base = _cell("sft", 0.0, 30, 30)
    cells = [_cell("unlikelihood", w, val_hs=10, test_hs=0) for w in (1.0, 0.1)]
    cells = [c.model_copy(update={"failures": failures(c, base, spec)}) for c in cells]
    (pick,) = choose(cells, spec.kinds)
    assert pick.weight == 0.1


# ---------------------------------------------------------------------------------------------- the command

@pytest.mark.parametrize("args, message", [
    (["--kinds", "ce,kl"], "unknown ascent loss 'kl'"),
    (["--weights", "1,a"], "--weights expects comma-separated numbers"),
    (["--weights", "0,1"], "weights must be > 0"),
    (["--preset", "huge"], "unknown preset 'huge'"),
    (["--p", "2"], "p: Input should be less than or equal to 1"),
])
def test_cli_rejects_bad_input_in_one_line(tmp_path, args, message):
    from workbench.cli import app

    res = CliRunner().invoke(app, ["study", "ascent", "--model", "tiny-llama", "--out", str(tmp_path / "s"), *args])
    assert res.exit_code == 2
    assert message in " ".join(res.output.split())
    assert not (tmp_path / "s").exists()


def test_cli_rejects_an_unknown_model(tmp_path):
    from workbench.cli import app

    res = CliRunner().invoke(app, ["study", "ascent", "--model", "no-such-model", "--out", str(tmp_path / "s")])
    assert res.exit_code == 2 and "neither a registered model" in res.output


def test_study_spec_and_cells():
    spec = study_spec("tiny-llama", ["npo"], [0.5, 2.0], 0.1, preset_name="tiny")
    assert [c.key for c in spec.cells()] == ["sft", "npo-w0.5", "npo-w2"]
    assert Cell("sft", 0.0).is_baseline
    assert SUMMARY_FILE == "ascent-summary.json"


def test_the_leaderboard_leaves_the_study_runs_out(study):
    from workbench.leaderboard import build

    with pytest.raises(ValueError, match="no attacked models"):  # every attack run under it is a study cell's
        build(study.parent)


def test_workbench_figures_draws_the_study(study):
    from workbench.figures import collect

    figs = collect(study.parent, ["study"])
    assert set(figs) == {f"{study.name}/{n}" for n in ("hs_vs_weight", "collapse_vs_weight", "chosen_test")}
    hs = figs[f"{study.name}/hs_vs_weight"]
    summary = read_summary(study)
    for kind in summary.spec.kinds:  # one line per kind, at its validation HS
        (line,) = [t for t in hs.data if t.name == kind]
        assert list(line.y) == [c.validation.hs.value for c in summary.cells if c.kind == kind]
