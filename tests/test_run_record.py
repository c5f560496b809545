"""The run record (`workbench.record`): every archived run folder loads as a typed record, a new run round-trips
with its schema version, a record written before versions were recorded reads as version 1, and a damaged
record is one clear error."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from workbench.config import AttackSpec, DefenseSpec, EvalSpec
from workbench.record import (
    SCHEMA_VERSION,
    AlignRunSpec,
    AnalysisRunSpec,
    AttackRunSpec,
    EvalRunSpec,
    RepairRunSpec,
    RunRecord,
    StudyRunSpec,
)
from workbench.runs import RunWriter, list_runs, open_run, spec_hash

RESULTS = Path(__file__).resolve().parents[1] / "results"
FOLDERS = sorted(p.parent for p in RESULTS.rglob("config.json")
                 if "model" not in p.relative_to(RESULTS).parts and ".incomplete" not in p.parts)
SPEC = {"align": AlignRunSpec, "attack": AttackRunSpec, "defend": AttackRunSpec, "repair": RepairRunSpec,
        "eval": EvalRunSpec, "analysis": AnalysisRunSpec, "study": StudyRunSpec}


def test_the_archive_holds_runs_of_every_recorded_kind():
    assert len(FOLDERS) >= 60 and len(list_runs(RESULTS)) == len(FOLDERS)
    assert {open_run(p).kind for p in FOLDERS} >= {"align", "attack", "defend", "eval", "analysis"}


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: str(p.relative_to(RESULTS)))
def test_every_archived_run_reads_as_a_typed_record(folder):
    run = open_run(folder)
    raw = json.loads((folder / "config.json").read_text())
    # the older grids were written before versions (1); newer ones carry theirs
    assert isinstance(run.record, RunRecord) and run.record.schema_version == raw.get("schema_version", 1)
    assert 1 <= run.record.schema_version <= SCHEMA_VERSION
    assert isinstance(run.spec, SPEC[run.kind])
    assert isinstance(run.seed, int) and run.seed == raw["seed"] and run.created == raw["created"]
    assert isinstance(run.base, str) and run.base == raw["spec"]["model"]
    # the typed spec writes back exactly the JSON it was read from, so its hash (staging folders, --resume) holds
    assert run.record.model_dump()["spec"] == raw["spec"]
    assert spec_hash({"spec": run.spec.model_dump(), "seed": run.seed}) == spec_hash({"spec": raw["spec"],
                                                                                      "seed": raw["seed"]})
    if run.kind == "align":
        assert run.stage == "alignment" and run.defense == run.name  # align runs are named by their defense
        assert run.attack is None and isinstance(run.spec.eval, EvalSpec)
    elif run.kind in ("attack", "defend"):
        assert isinstance(run.attack, AttackSpec) and isinstance(run.attack.data.p, float)
        assert run.attack.data.p == raw["spec"]["attack"]["data"]["p"]
        if run.kind == "defend":
            assert run.stage == "fine-tuning" and isinstance(run.defense_spec, DefenseSpec)
            assert run.name.startswith(f"{run.defense}-")
        else:
            assert run.stage is None and run.defense is None
    elif run.kind == "repair":  # a repair of an attack run: the post-fine-tuning defense, the attack it repaired
        assert run.stage == "post-fine-tuning" and run.defense == run.spec.defense.name
        assert isinstance(run.attack, AttackSpec) and run.name.startswith(f"{run.defense}-")
    else:
        assert run.stage is None and run.defense is None and run.attack is None
    if run.kind == "analysis":
        assert run.spec.analysis and isinstance(run.spec.params, dict)
    if run.kind == "study":  # an open-question study (`workbench.studies`): its own spec, dumped
        assert run.spec.study == run.name and isinstance(run.spec.params, dict)


def test_defense_grid_align_runs_name_their_defense():
    aligns = [open_run(p) for p in FOLDERS if "defense-grid" in p.parts and open_run(p).kind == "align"]
    assert {r.defense for r in aligns} >= {"sft", "vaccine", "booster", "repnoise", "t_vaccine", "tar"}
    assert all(r.stage == "alignment" and r.defense == r.name for r in aligns)


def test_a_new_run_round_trips_with_its_schema_version(tmp_path):
    spec = AttackRunSpec(attack=AttackSpec(), eval=EvalSpec(), model="tiny-llama",
                         defense=DefenseSpec(name="freeze", params={"layers": [1]}), defense_params={"layers": [1]})
    with RunWriter(tmp_path, "defend", "freeze-x", spec, seed=3) as w:
        pass
    raw = json.loads((w.final_path / "config.json").read_text())
    assert raw["schema_version"] == SCHEMA_VERSION
    assert list(raw) == ["schema_version", "kind", "name", "seed", "spec", "git_hash", "versions", "created",
                         "machine"]
    assert raw["machine"]["cpu"] and raw["machine"]["cpus"] >= 1  # what a timing in this run must be read with
    assert list(raw["spec"]) == ["attack", "eval", "model", "defense", "defense_params"]  # what the step wrote
    run = open_run(w.final_path, kind="defend")
    assert run.record == w.record and run.record.schema_version == SCHEMA_VERSION
    assert run.spec == spec and run.attack == AttackSpec() and run.base == "tiny-llama" and run.seed == 3
    assert (run.defense, run.stage, run.defense_spec.params) == ("freeze", "fine-tuning", {"layers": [1]})
    # the staging folder is named by the spec as written: the same spec and seed resume the same folder
    assert w.stage_id == f"defend-freeze-x-{spec_hash({'spec': raw['spec'], 'seed': 3})}"


def test_a_dict_spec_keeps_its_keys_and_unknown_ones(tmp_path):
    with RunWriter(tmp_path, "eval", "demo", {"model": "m", "note": {"free": 1}}) as w:
        pass
    run = open_run(w.final_path)
    assert run.config["spec"] == {"model": "m", "note": {"free": 1}} and run.base == "m"
    assert run.spec.eval is None and run.spec.model_extra == {"note": {"free": 1}}


def test_a_record_without_schema_version_reads_as_version_1(tmp_path):
    with RunWriter(tmp_path, "align", "sft", {"model": "tiny-llama"}) as w:
        pass
    cfg = w.final_path / "config.json"
    raw = json.loads(cfg.read_text())
    del raw["schema_version"]
    cfg.write_text(json.dumps(raw))
    run = open_run(w.final_path)
    assert run.record.schema_version == 1 and run.base == "tiny-llama" and run.stage == "alignment"
    assert run.defense is None  # a hand-made align record without its AlignSpec names no defense


@pytest.mark.parametrize("damage, message", [
    (lambda c: c["spec"]["attack"]["data"].update(p="lots"), r"spec\.attack\.data\.p: Input should be a valid number"),
    (lambda c: c["spec"]["attack"]["train"].update(lr_typo=1), r"spec\.attack\.train\.lr_typo: Extra inputs"),
    (lambda c: c.update(kind="tune"), r"kind: Input should be 'align'"),
    (lambda c: c.pop("name"), r"name: Field required"),
    (lambda c: c.update(seed="seven"), r"seed: Input should be a valid integer"),
    (lambda c: c.update(spec=[1]), r"spec.*AttackRunSpec"),
    (lambda c: c.update(schema_version=SCHEMA_VERSION + 1), r"newer than this workbench reads"),
])
def test_a_damaged_record_is_one_clear_error(tmp_path, damage, message):
    source = next(p for p in FOLDERS if open_run(p).kind == "attack")
    folder = tmp_path / source.name
    shutil.copytree(source, folder)
    raw = json.loads((folder / "config.json").read_text())
    damage(raw)
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=message) as err:
        open_run(folder)
    assert str(err.value).startswith(f"{folder}/config.json is not a valid run record (")
    assert "a damaged run folder" in str(err.value)
    assert list_runs(tmp_path) == []  # a listing skips it; open_run says why


def test_not_json_and_not_a_run_config_keep_their_errors(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        open_run(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text(json.dumps({"num_hidden_layers": 4}))
    with pytest.raises(ValueError, match="not a run config"):
        open_run(tmp_path / "b")


def test_a_writer_refuses_a_spec_of_another_kind_before_staging(tmp_path):
    with pytest.raises(ValueError, match="kind 'align' must be AlignRunSpec, got EvalRunSpec"):
        RunWriter(tmp_path, "align", "x", EvalRunSpec(model="m"))
    with pytest.raises(ValueError, match="unknown run kind 'tune'"):
        RunWriter(tmp_path, "tune", "x", {})
    with pytest.raises(ValueError, match=r"spec\.eval\.n_harmful"):
        RunWriter(tmp_path, "eval", "x", {"eval": {"n_harmful": -1}})
    assert not tmp_path.joinpath(".incomplete").exists()
