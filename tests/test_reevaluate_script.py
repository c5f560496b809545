"""scripts/reevaluate_on.py on tiny-llama: a grid's fine-tuned model evaluated again on another harmful set keeps
everything else of its recorded evaluation, lands beside its relative path, is skipped when done, and an archived
copy without weights is skipped with a reason."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from explorer_fixtures import explorer_runs_root
from script_helpers import load_script

from workbench.archive import ARCHIVE_NOTE
from workbench.runs import list_runs, open_run


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    """A one-run grid: a copy of the explorer fixture's attack run (with its weights)."""
    source = explorer_runs_root(tmp_path_factory)
    (attacked,) = [r for r in list_runs(source, "attack") if "study" not in str(r.path.relative_to(source))][:1]
    root = tmp_path_factory.mktemp("grid")
    shutil.copytree(attacked.path, root / "cells" / attacked.path.name)
    return root


def test_a_run_is_evaluated_on_the_other_set_and_keeps_the_rest_of_its_evaluation(grid, tmp_path, capsys):
    script = load_script("reevaluate_on")
    (evaluated,) = script.run(grid, tmp_path / "out", "advbench", 5, seed=0)
    (attacked,) = list_runs(grid, "attack")
    assert evaluated.parent == tmp_path / "out" / "cells" / attacked.path.name
    ev = open_run(evaluated)
    assert ev.kind == "eval" and ev.base == str(attacked.path.resolve())
    assert ev.spec.harmful_prompts == "advbench eval split" and ev.metrics["hs"]["n"] == 5
    was, now = attacked.spec.eval, ev.spec.eval
    assert now.model_dump(exclude={"harmful_set", "n_harmful"}) == was.model_dump(exclude={"harmful_set", "n_harmful"})
    assert script.run(grid, tmp_path / "out", "advbench", 5, seed=0) == []  # done already
    assert "done already" in capsys.readouterr().out
    table = script.table(tmp_path / "out")
    assert "plain fine-tuning (lora)" in table and ev.path.name in table
    archive = tmp_path / "archive"  # the evaluated run archived elsewhere and gone: found by its folder name
    shutil.copytree(attacked.path, archive / "cells" / attacked.path.name)
    shutil.rmtree(attacked.path)
    try:
        assert script.table(tmp_path / "out", [archive]) == table
        with pytest.raises(SystemExit, match="neither there nor under"):
            script.table(tmp_path / "out")
    finally:
        shutil.copytree(archive / "cells" / attacked.path.name, attacked.path)


def test_an_archived_copy_without_weights_is_skipped(grid, tmp_path, capsys):
    (attacked,) = list_runs(grid, "attack")
    copy = tmp_path / "archived" / attacked.path.name
    shutil.copytree(attacked.path, copy, ignore=shutil.ignore_patterns("*.safetensors"))
    (copy / ARCHIVE_NOTE).write_text(json.dumps({"archived_from": str(attacked.path), "left_out": []}))
    assert load_script("reevaluate_on").run(tmp_path / "archived", tmp_path / "out", "advbench", 5, seed=0) == []
    assert "without weights" in capsys.readouterr().out
