"""The ascent study (`workbench study ascent`, docs/open-questions.md question 3) on tiny-llama: one run folder of kind
"study" with every step an ordinary run folder inside, an interrupted study resumes skipping every finished run, a
finished one is immutable and lends its cells to the next, the choice reads the validation split and never the test
sets, and the command line fails in one line on bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from study_ascent_fixture import KINDS, ascent_spec
from typer.testing import CliRunner

from workbench import steps
from workbench.evaluation.stats import rate
from workbench.runs import INCOMPLETE, list_runs, open_run
from workbench.studies.ascent import run_study
from workbench.studies.ascent_spec import RESULT_FILE, AscentStudySpec, Cell, step_root, study_spec
from workbench.studies.ascent_summary import Attacked, CellResult, Collapse, choose, failures, load_result

FAILING = "npo-w1"  # the cell whose attack the fixture kills on the first pass


def _runs(root: Path) -> dict[str, str]:
    """{run folder relative to root: its config.json} for every finished run under root (the study's own too)."""
    return {str(p.parent.relative_to(root)): p.read_text() for p in root.rglob("config.json")
            if INCOMPLETE not in p.relative_to(root).parts and p.parent.name not in ("model", "checkpoint")}


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> dict:
    """A study whose FAILING cell's attack fails on the first pass (other limits), then the same study resumed:
    {"study": the published folder, "first": the runs staged by the first pass, "error": its message}."""
    root = tmp_path_factory.mktemp("ascent")
    out = root / "study-ascent"
    real = steps.attack

    def killed(attack, model, where, *args, **kwargs):
        if FAILING in str(where):
            raise RuntimeError("killed mid-trial")
        return real(attack, model, where, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(steps, "attack", killed)
        with pytest.raises(RuntimeError, match=FAILING) as err:
            run_study(ascent_spec(max_fa_drop=1.0), out, progress=False, formats=())
    (staged,) = (root / INCOMPLETE).iterdir()
    first = _runs(staged)
    assert not out.exists()  # nothing published while a cell has failed
    status = json.loads((staged / "ascent-status.json").read_text())
    assert list(status["failed"]) == [FAILING]
    published = run_study(ascent_spec(), out, progress=False, formats=("html",))  # other limits: the same staging
    assert published == out and not staged.exists()
    return {"study": out, "first": first, "error": str(err.value)}


@pytest.fixture(scope="module")
def study(interrupted) -> Path:
    return interrupted["study"]


def test_a_failed_cell_keeps_the_study_staged_and_the_rerun_retrains_nothing_else(interrupted):
    first, final = interrupted["first"], _runs(interrupted["study"])
    assert "rerun the same command" in interrupted["error"]
    trained = {k for k in first if k.startswith("cells/")}
    assert trained and all(final[k] == first[k] for k in trained)  # byte-identical records: not run again
    assert not any(k.startswith(f"cells/{FAILING}/attack/") for k in first)
    assert any(k.startswith(f"cells/{FAILING}/attack/") for k in final)  # retried


def test_the_study_is_one_run_of_kind_study_found_through_the_registry(study):
    from workbench.figures import load_study, study_runs

    (run,) = study_runs(study.parent)
    assert (run.kind, run.name, run.path) == ("study", "ascent", study)
    assert AscentStudySpec.model_validate(run.spec.params) == ascent_spec()  # the record holds the spec that finished
    assert load_study(run) == load_result(study)
    assert set(run.metrics["chosen"]) == set(KINDS)
    raw = json.loads((study / RESULT_FILE).read_text())
    assert not Path(raw["baseline"]["runs"]["align"]).is_absolute()  # relative: the folder was staged, then moved


def test_every_step_is_an_ordinary_run_folder_and_only_chosen_cells_meet_the_test_sets(study):
    summary = load_result(study)
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
        assert Path(attack.base).name == align.path.name and attack.spec.attack.data.p == 0.25
        (val,) = list_runs(step_root(study, cell, "validation"))
        assert val.spec.harmful_prompts.startswith("validation split") and Path(val.base).name == attack.path.name
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
    summary = load_result(study)
    for c in [summary.baseline, *summary.cells]:
        run = open_run(c.runs["collapse"])
        assert Path(run.spec.model).name == Path(c.runs["align"]).name and run.spec.params["preset"] == "tiny"
        assert c.collapse.incoherent.n == 8 and c.collapse.benign_ppl > 1


def test_a_finished_study_is_immutable_and_lends_its_cells(study, tmp_path):
    with pytest.raises(ValueError, match="already exists"):
        run_study(ascent_spec(), study, progress=False, formats=())
    with pytest.raises(ValueError, match="other p"):
        run_study(ascent_spec(p=0.5), tmp_path / "other", progress=False, formats=(), reuse=[study])
    smaller = ascent_spec(kinds=["ce"])
    out = run_study(smaller, tmp_path / "smaller", progress=False, formats=(), reuse=[study])
    old, new = _runs(study), _runs(out)
    cells = {k for k in new if k.startswith("cells/")}
    assert cells == {k for k in old if k.startswith(("cells/sft/", "cells/ce-w1/"))}
    assert all(new[k] == old[k] for k in cells)  # copied, nothing trained or evaluated again
    assert load_result(out).cell("ce-w1").validation == load_result(study).cell("ce-w1").validation


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


def test_the_leaderboard_leaves_the_study_runs_out(study):
    from workbench.leaderboard import build

    with pytest.raises(ValueError, match="no attacked models"):  # every attack run under it is a study cell's
        build(study.parent)


def test_workbench_figures_draws_the_study(study):
    from workbench.figures import collect

    figs = collect(study.parent, ["study"])
    assert set(figs) == {f"{study.name}/{n}" for n in ("hs_vs_weight", "collapse_vs_weight", "chosen_test")}
    hs = figs[f"{study.name}/hs_vs_weight"]
    summary = load_result(study)
    for kind in summary.spec.kinds:  # one line per kind, at its validation HS
        (line,) = [t for t in hs.data if t.name == kind]
        assert list(line.y) == [c.validation.hs.value for c in summary.cells if c.kind == kind]


def test_the_archive_keeps_the_study_record_and_each_cell_with_its_own_note(study, tmp_path):
    from workbench.archive import ARCHIVE_NOTE, archive_runs

    archive_runs(study.parent, tmp_path, lowrank_kinds=["align"])
    copy = tmp_path / study.name
    assert load_result(copy).chosen == load_result(study).chosen  # relative run paths: readable where it moved
    assert not (copy / ARCHIVE_NOTE).read_text().count("cells/")  # the cells are not the study's own files
    for cell in ascent_spec().cells():
        (align,) = list_runs(step_root(copy, cell, "align"))
        note = json.loads((align.path / ARCHIVE_NOTE).read_text())
        assert note["lowrank"]["base"] == "tiny-llama"  # each cell archived as a run, its weights as a delta
