"""The survey's Figure 2 from a finished sweep folder: HS and FA vs harmful ratio p, as figures and a table.

`workbench figure2` runs the sweep (`workbench.sweep.run_sweep`) and then `write_figure2`. It lives in its own
module rather than in `workbench.sweep` because it draws: it needs `workbench.figures` and `workbench.plots`,
and `workbench.figures` already imports `workbench.sweep` (to read sweep folders), so putting it there would
make a sweep ↔ figures import cycle, and would tie the sweep runner (also imported by Ray workers) to plotly.
"""
from __future__ import annotations

from pathlib import Path

from workbench.plots.export import export_all
from workbench.plots.threat import METRICS, figures
from workbench.sweep import results
from workbench.tables import markdown_table
from workbench.vocabulary import fmt_rate


def write_figure2(out: Path) -> tuple[list[Path], str]:
    """Read the sweep's run folders, write figures (HTML + PNG) and a markdown table."""
    rows = results(out)
    if not rows:
        raise ValueError(f"no finished cells under {out}")
    paths = export_all(figures(rows), Path(out) / "figures")
    metrics = [m for m in METRICS if any(m in r for r in rows)]
    table = markdown_table(["model", "p", "seed", *metrics], (
        [r["model_label"], f"{r['p']:g}", r["seed"], *[fmt_rate(r.get(m)) for m in metrics]]
        for r in sorted(rows, key=lambda r: (r["model_label"], r["p"], r["seed"]))))
    (Path(out) / "figure2.md").write_text(table)
    return paths, table
