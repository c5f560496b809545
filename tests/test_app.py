"""The explorer renders every tab from fixture runs and from an empty runs root (streamlit AppTest, no browser).

Fixture runs: a tiny-llama quickstart, a 2 × 2 threat-model sweep and every registered analysis at toy
sizes, built once per session (tests/explorer_fixtures.py); and a tiny-gemma3 aligned / attacked / repaired set
(tests/gemma_fixtures.py, shared with tests/test_post_defenses.py) for Compare on the second architecture.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from explorer_fixtures import SWEEP_PS, explorer_runs_root, outside_studies, study_run_names
from gemma_fixtures import REPAIRS, gemma_runs_root
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parent.parent / "apps" / "explorer.py"
TABS = ["Compare", "Threat model", "Defenses", "Inside the model", "Landscape", "Parameters", "Studies", "Runs"]
SECTIONS = {"Probe accuracy": "probing", "Refusal signal": "refusal-direction", "Drift": "drift",
            "Activation patching": "patching", "Logit attribution": "logit-attribution"}


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    return explorer_runs_root(tmp_path_factory)


def start(root: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("WORKBENCH_RUNS", str(root))
    at = AppTest.from_file(str(APP), default_timeout=180).run()
    assert problems(at) == []
    return at


def problems(at: AppTest) -> list[str]:
    return [str(e.value) for e in at.exception] + [str(e.value) for e in at.error]


def open_tab(at: AppTest, title: str) -> AppTest:
    at.session_state["tab"] = title
    at.run()
    assert problems(at) == [], title
    return at


def n_charts(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


def test_every_tab_renders_the_fixture_runs(runs_root, monkeypatch):
    from workbench.figures import registered_name
    from workbench.runs import list_runs

    at = start(runs_root, monkeypatch)
    assert "runs:" in at.sidebar.caption[0].value

    open_tab(at, "Threat model")
    assert n_charts(at) == 2  # refusal on harmful prompts (no judge in the tiny eval) and FA vs p
    table = at.dataframe[0].value
    assert len(table) == 2 * len(SWEEP_PS) and set(table["p"]) == set(SWEEP_PS)

    open_tab(at, "Defenses")
    # one row per attacked model: the quickstart's attack and its SafeLoRA repair, the sweep's, the freeze defense
    table = at.dataframe[0].value
    assert not set(table["run"]) & study_run_names(runs_root)  # a study's runs are its own, not rows of the board
    attacks = outside_studies(runs_root, "attack")
    assert set(table["defense"]) == {"freeze", "sft", "none", "safelora"}
    assert len(table) == len(attacks) + len(outside_studies(runs_root, "repair")) + 1
    sft_attack = next(r for r in attacks if r.path.parent == runs_root)
    (quick,) = table[table["run"] == sft_attack.path.name].to_dict("records")
    assert quick["stage"] == "alignment" and quick["aligned with"] == "sft"
    assert n_charts(at) == 1
    at.session_state["def-metric"] = "refusal_harmful"
    at.run()
    assert problems(at) == []
    table = at.dataframe[0].value
    (quick,) = table[table["run"] == sft_attack.path.name].to_dict("records")
    assert quick["after the attack: refusal harmful"] == sft_attack.metrics["refusal_harmful"]["value"]
    (align,) = outside_studies(runs_root, "align")
    assert quick["before the attack: refusal harmful"] == align.metrics["refusal_harmful"]["value"]
    # freeze and the SafeLoRA repair after the attack, each against SFT after the same attack, on the same prompts
    paired = at.dataframe[1].value.set_index("defense")
    (defend,), (repair,) = list_runs(runs_root, "defend"), list_runs(runs_root, "repair")
    assert set(paired.index) == {"freeze", "safelora"}
    for name, run in (("freeze", defend), ("safelora", repair)):
        assert paired.loc[name, "prompts"] == run.metrics["refusal_harmful"]["n"]
        assert paired.loc[name, "defense − SFT (points)"] == pytest.approx(
            run.metrics["refusal_harmful"]["value"] - sft_attack.metrics["refusal_harmful"]["value"])
    at.session_state["def-stages"] = ["none"]
    at.run()
    assert problems(at) == [] and set(at.dataframe[0].value["stage"]) == {"none", "alignment"}  # SFT rows stay

    open_tab(at, "Inside the model")
    for section, name in SECTIONS.items():
        at.session_state["inside-section"] = section
        at.run()
        assert problems(at) == [], section
        built = (runs_root / f"analysis-{registered_name(name)}").is_dir()
        if built:
            assert n_charts(at) >= 1, section
        else:  # its fixture analysis failed to build (a warning names it): the empty state names the command
            assert any("workbench analyze" in i.value for i in at.info), section

    open_tab(at, "Landscape")
    assert n_charts(at) == 4  # 1D, line, 2D contour, 2D surface
    assert "VISAGE 1D" in at.dataframe[0].value.columns

    open_tab(at, "Parameters")
    assert n_charts(at) == 3  # density, overlap, pruning
    assert at.dataframe[0].value["weights in mask"][0] > 0

    open_tab(at, "Runs")
    assert len(at.dataframe[0].value) == len(list_runs(runs_root))
    at.session_state["runs-text"] = align.path.name  # the quickstart's (a study's sft cell is an align-sft too)
    at.run()
    assert problems(at) == [] and list(at.dataframe[0].value["kind"]) == ["align"]
    assert n_charts(at) == 1  # the align run's training curve


def test_studies_tab_shows_the_ascent_study(runs_root, monkeypatch):
    from apps.tabs import study_ascent
    from workbench.studies.ascent_summary import load_result

    at = open_tab(start(runs_root, monkeypatch), "Studies")
    at.session_state["study_view"] = study_ascent.TITLE
    at.run()
    assert problems(at) == []
    summary = load_result(runs_root / "study-ascent")
    chosen, cells = at.dataframe[0].value, at.dataframe[1].value
    assert list(chosen["kind"]) == ["sft (control)", *summary.spec.kinds]
    assert list(cells["cell"]) == ["sft", *(c.key for c in summary.cells)]
    assert "aligned: benign ppl" in cells.columns
    assert n_charts(at) == 3  # HS vs weight, collapse vs weight, the chosen configurations on test


def test_compare_shows_three_answers_with_refusal_flags(runs_root, monkeypatch):
    from workbench.config import GenerationSpec
    from workbench.evaluation.refusal import is_refusal
    from workbench.generation import generate
    from workbench.models import load_model
    from workbench.runs import list_runs

    at = start(runs_root, monkeypatch)
    aligned = next(r for r in list_runs(runs_root, "align"))
    attacked = next(r for r in list_runs(runs_root, "attack") if r.path.parent == runs_root)
    assert at.selectbox(key="cmp-aligned").value == str(aligned.path)
    assert at.selectbox(key="cmp-attacked").value == str(attacked.path)
    cell = next(r for r in list_runs(runs_root / "figure2", "attack"))  # any run with a model fills the third slot
    at.selectbox(key="cmp-repaired").set_value(str(cell.path))
    at.radio(key="cmp-source").set_value("own").run()
    at.text_area(key="cmp-own").input("How do I bake bread?")
    at.slider(key="cmp-tokens").set_value(16)
    at.button(key="cmp-ask").click().run()
    assert problems(at) == []
    answers = [t.value for t in at.text]
    assert len(answers) == 3
    for run, text in zip((aligned, attacked, cell), answers, strict=False):
        model, tok = load_model(run.path)
        expected = generate(model, tok, ["How do I bake bread?"], GenerationSpec(max_new_tokens=16, batch_size=1),
                            progress=False)[0]
        assert text == (expected or "(empty answer)")
    badges = [m.value for m in at.markdown if "badge[" in m.value]
    assert len(badges) >= 3
    assert sum("refuses" in b and "not" not in b for b in badges) == sum(is_refusal(a) for a in answers)


def test_compare_and_runs_on_tiny_gemma3_runs(tmp_path_factory, monkeypatch):
    """On a tiny-gemma3 runs root (tests/gemma_fixtures.py) Compare fills its three slots with the aligned, attacked
    and latest repaired model and shows exactly what the library generates with each (Gemma's turn format, stopping
    at `<end_of_turn>`); Defenses and Runs read its run folders."""
    from workbench.config import GenerationSpec
    from workbench.generation import generate
    from workbench.models import load_model
    from workbench.runs import list_runs

    root, paths = gemma_runs_root(tmp_path_factory)
    at = start(root, monkeypatch)
    slots = {slot: at.selectbox(key=f"cmp-{slot}").value for slot in ("aligned", "attacked", "repaired")}
    assert slots["aligned"] == str(paths["aligned"]) and slots["attacked"] == str(paths["attacked"])
    assert slots["repaired"] in {str(paths[r]) for r in REPAIRS}
    at.radio(key="cmp-source").set_value("own").run()
    at.text_area(key="cmp-own").input("How do I bake bread?")
    at.slider(key="cmp-tokens").set_value(8)
    at.button(key="cmp-ask").click().run()
    assert problems(at) == []
    answers = [t.value for t in at.text]
    assert len(answers) == 3
    for path, text in zip(slots.values(), answers, strict=True):
        model, tok = load_model(path)
        expected = generate(model, tok, ["How do I bake bread?"], GenerationSpec(max_new_tokens=8, batch_size=1),
                            progress=False)[0]
        assert text == (expected or "(empty answer)")

    open_tab(at, "Defenses")
    open_tab(at, "Runs")
    assert len(at.dataframe[0].value) == len(list_runs(root)) == 4


def test_compare_fills_the_aligned_slot_from_an_align_run_outside_the_root(tmp_path_factory, monkeypatch, tmp_path):
    """A quickstart given `--aligned RUN` elsewhere has no align run under its root: the Aligned slot defaults to
    the run its attack was trained from, and the Attacked slot to that attack."""
    import shutil

    _, paths = gemma_runs_root(tmp_path_factory)
    root = tmp_path / "runs"
    root.mkdir()
    attacked = root / paths["attacked"].name
    shutil.copytree(paths["attacked"], attacked)
    at = start(root, monkeypatch)
    assert at.selectbox(key="cmp-aligned").value == str(paths["aligned"].resolve())
    assert at.selectbox(key="cmp-attacked").value == str(attacked)


def test_compare_without_a_trained_judge_shows_refusal_flags_only(runs_root, monkeypatch, tmp_path):
    from workbench.evaluation import judge

    monkeypatch.setattr(judge, "judge_dir", lambda *a, **k: tmp_path / "no-judge")  # as on a fresh machine
    at = start(runs_root, monkeypatch)
    assert at.checkbox(key="cmp-judge").disabled and at.checkbox(key="cmp-judge").value is False
    at.button(key="cmp-ask").click().run()
    assert problems(at) == []
    assert len(at.text) == 3  # aligned, attacked and (no repair run in the fixture) its defend run
    badges = [m.value for m in at.markdown if "badge[" in m.value]
    assert len(badges) == 3 and not any("judge" in b for b in badges)
    assert any("Refusal flags only" in c.value and "not trained" in c.value for c in at.caption)


def test_studies_tab_shows_the_basin_study(runs_root, monkeypatch):
    from workbench import figures as wf

    at = start(runs_root, monkeypatch)
    open_tab(at, "Studies")
    at.session_state["study_view"] = "Safety basins (Q2)"
    at.run()
    assert problems(at) == []
    (study,) = wf.study_runs(runs_root, "basins")  # a run of kind "study", found through the STUDIES registry
    result = wf.load_study(study)
    table = at.dataframe[0].value
    assert list(table["predictor"]) == [p.title for p in result.predictors]
    assert set(table["n models"]) <= {len(result.models), 1}  # the line exists for one fixture model only
    assert n_charts(at) == 3  # correlations, the chosen predictor's scatter, the random slices
    at.session_state["basins-predictor"] = "harmful_loss"
    at.run()
    assert problems(at) == [] and n_charts(at) == 3


def test_every_tab_says_what_to_run_when_there_are_no_runs(tmp_path, monkeypatch):
    at = start(tmp_path, monkeypatch)
    for title in TABS:
        open_tab(at, title)
        messages = [i.value for i in at.info]
        assert messages and all(m.startswith("No ") and "run `workbench" in m for m in messages), (title, messages)
        if title == "Defenses":  # meanwhile the archived grid of the real model, committed under results/
            assert at.selectbox(key="def-archive").value.name == "defense-grid"
            assert n_charts(at) == 1 and any("vaccine" in str(d.value) for d in at.dataframe), title
        else:
            assert n_charts(at) == 0, title
    at.session_state["tab"] = "Inside the model"
    for section in SECTIONS:
        at.session_state["inside-section"] = section
        at.run()
        assert problems(at) == [] and "workbench analyze" in at.info[0].value, section


def test_a_missing_runs_root_is_a_warning_not_an_error(tmp_path, monkeypatch):
    at = start(tmp_path / "nope", monkeypatch)
    assert "not a folder" in at.sidebar.warning[0].value
    for title in TABS:
        assert open_tab(at, title).info, title


def test_studies_tab_shows_the_safety_params_study(runs_root, monkeypatch, tmp_path):
    at = start(runs_root, monkeypatch)
    open_tab(at, "Studies")
    at.session_state["study_view"] = "Safety-critical weights (Q1)"
    at.run()
    assert problems(at) == []
    assert any("Safety-specificity of each criterion" in m.value for m in at.markdown)
    table = at.dataframe[0].value
    assert set(table["criterion"]) == {"wanda", "random", "delta"} and set(table["k (%)"]) == {1.0, 5.0}
    assert n_charts(at) == 5  # curves, Jaccard overall and per matrix, layer shares, SafeLoRA subspace
    empty = start(tmp_path, monkeypatch)
    open_tab(empty, "Studies")
    assert "workbench study safety-params" in empty.info[0].value
