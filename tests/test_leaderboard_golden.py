"""`workbench leaderboard --runs results/defense-grid` reads the archived grid into exactly the tables that were
committed next to it: a refactor of the run record, the vocabulary or the leaderboard must not change a cell."""
from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from workbench.cli import app

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "fixtures" / "leaderboard_defense_grid"


def test_leaderboard_of_the_archived_grid_is_unchanged(tmp_path):
    prefix = tmp_path / "lb"
    result = CliRunner().invoke(app, ["leaderboard", "--runs", str(REPO / "results" / "defense-grid"),
                                      "--out", str(prefix), "--formats", "html"])
    assert result.exit_code == 0, result.output
    assert (GOLDEN / "table.md").read_text() in result.output  # what the command prints
    for name, golden in [("lb.md", "table.md"), ("lb_alignment.md", "alignment.md"), ("lb_vs_sft.md", "vs_sft.md")]:
        assert (tmp_path / name).read_text() == (GOLDEN / golden).read_text(), name
    csv = (tmp_path / "lb.csv").read_text().replace(str(REPO) + "/", "")  # run paths as given
    assert csv == (GOLDEN / "table.csv").read_text()
