"""One vocabulary (`workbench.vocabulary`): stage names and their older spellings, analysis names, metric titles
and the rate format, and the two commands that take a stage (`workbench defenses list --stage`,
`workbench leaderboard --stage`) taking the same names."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from workbench import vocabulary as v
from workbench.cli import app

WIDE = {"COLUMNS": "300"}
SPELLINGS = {"finetune": "fine-tuning", "fine-tuning": "fine-tuning", "post": "post-fine-tuning",
             "post-fine-tuning": "post-fine-tuning", "alignment": "alignment"}


# ------------------------------------------------------------------------------------------- stages


@pytest.mark.parametrize("name, stage", [*SPELLINGS.items(), ("Fine-Tuning", "fine-tuning"),
                                         (" post ", "post-fine-tuning")])
def test_parse_stage_reads_the_canonical_and_the_older_spellings(name, stage):
    assert v.parse_stage(name) == stage
    assert v.parse_stage(name, none=True) == stage


def test_parse_stage_rejects_anything_else_naming_the_valid_stages():
    with pytest.raises(ValueError, match="unknown stage 'nope'; use alignment, fine-tuning, post-fine-tuning"):
        v.parse_stage("nope")
    with pytest.raises(ValueError, match="unknown stage 'none'"):  # no defense is of stage "none"
        v.parse_stage("none")
    assert v.parse_stage("none", none=True) == v.NONE
    assert v.BOARD_STAGES == ("none", "alignment", "fine-tuning", "post-fine-tuning")


def test_the_defense_registry_speaks_the_canonical_stages():
    from workbench.defenses import DEFENSES, DefenseInfo, NoParams, get_defense

    assert {d.stage for d in DEFENSES.values()} == set(v.STAGES)
    assert get_defense("lisa", "finetune") is get_defense("lisa", "fine-tuning") is DEFENSES["lisa"]
    assert get_defense("antidote", "post").stage == "post-fine-tuning"
    with pytest.raises(ValueError, match="'lisa' is a fine-tuning-stage defense, not alignment"):
        get_defense("lisa", "alignment")
    old = DefenseInfo("mine", "finetune", NoParams, lambda params, context: [])  # an out-of-tree registration
    assert old.stage == "fine-tuning"


@pytest.mark.parametrize("name", SPELLINGS)
def test_defenses_list_takes_every_stage_spelling(name):
    from workbench.defenses import DEFENSES

    res = CliRunner().invoke(app, ["defenses", "list", "--stage", name], env=WIDE)
    assert res.exit_code == 0, res.output
    stage = SPELLINGS[name]
    for d in DEFENSES.values():
        if d.name in ("sft", "tar"):  # substrings of other names
            continue
        assert (d.name in res.output) == (d.stage == stage), (name, d.name)


def _write_run(folder: Path, kind: str, spec: dict, seed: int, created: str, hs: float) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"kind": kind, "name": folder.name.split("-")[1], "spec": spec,
                                                     "seed": seed, "created": created}))
    (folder / "metrics.json").write_text(json.dumps({"hs": {"k": int(hs), "n": 100, "value": hs, "low": hs / 2,
                                                            "high": hs + 10}}))
    return folder


@pytest.fixture(scope="module")
def every_stage_root(tmp_path_factory) -> Path:
    """Run records (config + metrics) of an attack on the non-aligned model and on an SFT-aligned one, a defended
    fine-tuning and a repair: one leaderboard row of each stage. Seeds differ, so no row is paired with SFT."""
    root = tmp_path_factory.mktemp("every-stage")
    attack = {"name": "harmful_ft", "data": {"p": 0.1, "n": 100}, "train": {"method": "lora"}}
    align = _write_run(root / "align-sft-1", "align", {"model": "tiny-llama", "align": {"defense": {"name": "sft"}}},
                       0, "1", 0)
    _write_run(root / "attack-plain-2", "attack", {"model": "tiny-llama", "attack": attack}, 0, "2", 50)
    attacked = _write_run(root / "attack-aligned-3", "attack", {"model": str(align), "attack": attack}, 0, "3", 20)
    _write_run(root / "defend-freeze-4", "defend", {"model": str(align), "attack": attack,
                                                    "defense": {"name": "freeze", "params": {}}}, 1, "4", 10)
    _write_run(root / "repair-antidote-5", "repair", {"model": str(attacked), "defense": {"name": "antidote"}},
               2, "5", 5)
    return root


@pytest.mark.parametrize("name", [*SPELLINGS, "none"])
def test_leaderboard_takes_the_same_stage_spellings(name, every_stage_root, tmp_path):
    res = CliRunner().invoke(app, ["leaderboard", "--runs", str(every_stage_root), "--out", str(tmp_path / "lb"),
                                   "--formats", "html", "--stage", name])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((tmp_path / "lb.csv").open()))
    stage = v.parse_stage(name, none=True)
    assert {(r["stage"], r["defense"]) for r in rows} == {
        ("alignment", "sft"),  # the baseline every stage is compared with stays
        *{"none": [("none", "none")], "alignment": [], "fine-tuning": [("fine-tuning", "freeze")],
          "post-fine-tuning": [("post-fine-tuning", "antidote")]}[stage]}


def test_both_commands_reject_an_unknown_stage_with_the_valid_names(every_stage_root, tmp_path):
    for argv in (["defenses", "list", "--stage", "nope"],
                 ["leaderboard", "--runs", str(every_stage_root), "--out", str(tmp_path / "lb"), "--stage", "nope"]):
        res = CliRunner().invoke(app, argv, env=WIDE)
        assert res.exit_code == 2 and "unknown stage 'nope'" in res.output, res.output
        assert all(s in res.output for s in ("alignment", "fine-tuning", "post-fine-tuning")), res.output
    assert not (tmp_path / "lb.md").exists()


# ----------------------------------------------------------------------------------------- analyses


def test_analysis_names_have_one_spelling_and_map_to_their_module_files():
    from workbench.analysis import ANALYSES, get_analysis
    from workbench.figures import registered_name

    repo = Path(__file__).resolve().parents[1]
    assert "refusal-direction" in ANALYSES and "refusal_direction" not in ANALYSES
    for name, (mod, plots) in ANALYSES.items():
        assert v.analysis_key(name) == name
        module = v.analysis_module(name)
        assert (mod, plots) == (f"workbench.analysis.{module}", f"workbench.plots.{module}")
        assert (repo / "workbench" / "analysis" / f"{module}.py").is_file()
        assert (repo / "workbench" / "plots" / f"{module}.py").is_file()
    for spelling in ("refusal-direction", "refusal_direction", "Refusal_Direction "):
        assert registered_name(spelling) == "refusal-direction"
    assert registered_name("patching-cross") is None
    assert get_analysis("logit_attribution")[0].__name__ == "workbench.analysis.logit_attribution"


def test_an_analysis_run_recorded_with_either_spelling_is_found(tmp_path):
    from workbench.figures import analysis_runs, find_analysis

    for i, recorded in enumerate(("refusal_direction", "refusal-direction")):
        run = tmp_path / f"analysis-{recorded}-{i}"
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"kind": "analysis", "name": recorded, "seed": 0, "created": str(i),
                                                     "spec": {"analysis": recorded, "model": "tiny-llama"}}))
        (run / "result.json").write_text("{}")
    assert len(analysis_runs(tmp_path, "refusal-direction")) == 2
    assert find_analysis(tmp_path, "refusal_direction").path.name == "analysis-refusal-direction-1"


# ------------------------------------------------------------------------------------ titles, rates


def test_metric_titles_short_and_long():
    assert [v.short_title(m) for m in ("hs", "hs_plus", "fa_sst2", "refusal_benign", "refusal_harmful", "incoherent")] \
        == ["HS", "HS+", "FA sst2", "refusal benign", "refusal harmful", "incoherent"]
    assert v.long_title("hs") == "harmful score HS" and v.axis_title("hs") == "harmful score HS (%)"
    assert v.long_title("fa_gsm8k") == "fine-tune accuracy FA gsm8k"
    assert v.rate_keys([{"fa_sst2": {"value": 1, "low": 0, "high": 2}, "refusal_benign": {"value": 1, "low": 0,
                                                                                             "high": 2},
                         "hs": {"value": 1, "low": 0, "high": 2}, "seconds": 3}]) == ["hs", "refusal_benign", "fa_sst2"]


def test_one_rate_formatter_with_its_variants():
    from workbench.evaluation.stats import rate

    r = {"k": 14, "n": 40, "value": 35.0, "low": 20.63, "high": 52.27}
    assert v.fmt_rate(r) == "35.0% [20.6–52.3] n=40"
    assert v.fmt_rate(r, decimals=0) == "35% [21–52] n=40"
    assert v.fmt_rate(r, decimals=0, percent=False, n=False) == "35 [21–52]"
    assert v.fmt_rate(r, counts=True) == "35.0% [20.6–52.3] (14/40)"
    assert v.fmt_rate({k: x for k, x in r.items() if k not in ("k", "n")}) == "35.0% [20.6–52.3]"
    assert v.fmt_rate(None) == v.fmt_rate({"value": 1}) == v.fmt_rate(3.0) == "—"
    assert v.fmt_rate(None, missing="") == ""
    assert v.fmt_rate(rate([True, False, False, False]), counts=True) == "25.0% [4.6–69.9] (1/4)"
    assert str(rate([True, False, False, False])) == "25.0% [4.6–69.9] n=4"
