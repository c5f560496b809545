"""Fixture runs on tiny-gemma3 for the repair and explorer tests: one runs root per test session.

`gemma_runs_root(tmp_path_factory)` builds it once (tiny-gemma3 SFT-aligned, then attacked with harmful_ft at p = 0.25
as the quickstart does, then both post-fine-tuning repairs of the attack from the command line), at evaluation sizes
smaller than the tiny preset's (2 harmful, 1 benign, 1 task prompt; 4 new tokens): seconds in all. Every later caller
in the same session, from any test module, gets the same folder and paths back.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

NAME = "tiny-gemma3"
REPAIRS = ("safelora", "antidote")


def _build(root: Path) -> dict[str, Path]:
    from typer.testing import CliRunner

    from workbench import steps
    from workbench.cli import app
    from workbench.presets import preset

    pr = preset("tiny")
    gen = pr.eval.generation.model_copy(update={"max_new_tokens": 4})
    ev = pr.eval.model_copy(update={"n_harmful": 2, "n_benign": 1, "n_task": 1, "generation": gen})
    paths = {"aligned": steps.align(pr.align, NAME, root, 0, ev, progress=False)}
    paths["attacked"] = steps.attack(pr.attack, str(paths["aligned"]), root, 0, ev, progress=False)
    for defense in REPAIRS:
        res = CliRunner().invoke(app, ["repair", "--defense", defense, "--model", str(paths["attacked"]),
                                       "--out", str(root)])
        assert res.exit_code == 0, res.output
        (paths[defense],) = [p for p in root.iterdir() if p.name.startswith(f"repair-{defense}-")]
    return paths


def gemma_runs_root(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """(the session's tiny-gemma3 runs root, {"aligned", "attacked", "safelora", "antidote": run folder}), built on
    first use."""
    root = tmp_path_factory.getbasetemp() / "gemma-runs"
    done = root / ".fixture-done"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        paths = _build(root)
        done.write_text(json.dumps({k: str(v) for k, v in paths.items()}))
    return root, {k: Path(v) for k, v in json.loads(done.read_text()).items()}
