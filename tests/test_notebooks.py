"""Every notebook in analyses/ runs top to bottom on tiny-llama (papermill, a kernel on this venv's python), and,
marked slow (`make test-slow`), on tiny-gemma3 from an empty runs root.

They run against a copy of the session's fixture runs root (tests/explorer_fixtures.py), so most steps are read back
from run folders; what a notebook needs beyond the fixture (an identity-shift attack, patching with the ISA
model, a landscape and a Wanda scan of the attacked model) it runs itself at toy sizes, which exercises the
"run when missing" path.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from explorer_fixtures import explorer_runs_root

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "analyses").glob("[0-9][0-9]_*.ipynb"))
EXPECTED = {"01_threat_model", "02_refusal_direction_probing", "03_patching_eha_vs_isa", "04_safety_landscape",
            "05_harmful_parameters_repair"}
# figure groups each notebook exports -> the analysis behind them (None: always drawn)
FIGURE_GROUPS = {"01_threat_model": {"figure2": None},
                 "02_refusal_direction_probing": {"probing": "probing", "refusal-direction": "refusal-direction",
                                                  "logit-attribution": "logit-attribution", "drift": "drift"},
                 "03_patching_eha_vs_isa": {"patching": "patching"},
                 "04_safety_landscape": {"landscape-aligned": "landscape", "landscape-attacked": "landscape"},
                 "05_harmful_parameters_repair": {"wanda-aligned": "wanda", "wanda-attacked": "wanda"}}


def test_the_five_notebooks_exist_with_a_parameters_cell():
    assert {p.stem for p in NOTEBOOKS} == EXPECTED
    for nb in NOTEBOOKS:
        cells = json.loads(nb.read_text())["cells"]
        tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, nb.name
        src = "".join(tagged[0]["source"])
        for name in ("model =", "size =", "runs_root =", "out_dir ="):
            assert name in src, (nb.name, name)
        code = [c for c in cells if c["cell_type"] == "code"]
        assert all(not c.get("outputs") for c in code), f"{nb.name}: commit it without outputs"


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """A copy of the shared fixture root: notebooks add the analysis runs they miss, which must not change what
    the explorer tests (sharing the session's root) find as the latest run of an analysis."""
    copy = tmp_path_factory.mktemp("notebook-runs") / "runs"
    shutil.copytree(explorer_runs_root(tmp_path_factory), copy, symlinks=True)
    return copy


@pytest.fixture(scope="module")
def gemma_runs_root(tmp_path_factory):
    """An empty runs root shared by the tiny-gemma3 notebooks: the first one runs the quickstart, the others read it."""
    return tmp_path_factory.mktemp("notebook-gemma-runs")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_on_tiny_llama(notebook, runs_root, tmp_path, monkeypatch):
    _run_notebook(notebook, "tiny-llama", runs_root, tmp_path, monkeypatch)


@pytest.mark.slow  # every step run in the notebooks (no fixture runs): 30–70 s each, ~4 min in all on 2 busy cores
@pytest.mark.timeout(600)
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_on_tiny_gemma3(notebook, gemma_runs_root, tmp_path, monkeypatch):
    _run_notebook(notebook, "tiny-gemma3", gemma_runs_root, tmp_path, monkeypatch)


def _run_notebook(notebook: Path, model: str, runs_root: Path, tmp_path: Path, monkeypatch) -> None:
    """Execute `notebook` on `model`; no cell may fail, and every figure group it promises is exported."""
    import papermill as pm

    from workbench.figures import registered_name

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel is a fresh process: one thread for tiny models
    out_dir = tmp_path / "figures"
    executed = tmp_path / notebook.name
    pm.execute_notebook(str(notebook), str(executed), kernel_name="python3", cwd=str(REPO), progress_bar=False,
                        parameters=dict(model=model, size="tiny", runs_root=str(runs_root),
                                        out_dir=str(out_dir), static=False))
    cells = json.loads(executed.read_text())["cells"]
    errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    figures = out_dir / notebook.stem
    assert (figures / "index.html").is_file() and (figures / "plotly.min.js").is_file()
    for group, analysis in FIGURE_GROUPS[notebook.stem].items():
        assert analysis is None or registered_name(analysis) is not None, analysis
        assert any((figures / group).glob("*.html")), (notebook.stem, group)
