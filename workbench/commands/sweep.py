"""`workbench sweep` (grid of model × attack × p × seed) and `workbench figure2` (the survey's Figure 2)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

FIGURE2_PS = "0,0.05,0.1,0.2,0.3"


def _floats(s: str) -> list[float]:
    try:
        return [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {s!r}") from None


def _models(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        label, _, ref = item.partition("=")
        out[label if ref else label.rstrip("/").split("/")[-1]] = ref or label
    return out


def sweep_cmd(model: list[str] = typer.Option(..., "--model", "-m", help="LABEL=MODEL (repeatable) or MODEL."),
              attack: list[str] = typer.Option(["harmful_ft"], "--attack", help="Attack name (repeatable)."),
              p: str = typer.Option("0.1", "--p", help="Harmful ratios, comma-separated."),
              seeds: str = typer.Option("0", "--seeds", help="Seeds, comma-separated."),
              n: Optional[int] = typer.Option(None, "--n", help="User samples per cell."),
              preset: Optional[str] = typer.Option(None, help="'full' or 'tiny' sizes."),
              backend: str = typer.Option("local", help="'local' or 'ray'."),
              address: Optional[str] = typer.Option(None, help="Ray cluster address (default: start a local one)."),
              out: Path = typer.Option(Path("runs/sweep"), "--out", "-o")):
    """Run every cell of the grid that is not done yet; failed cells are reported, not fatal."""
    from workbench.cli import _guard, console

    status = _guard(run_sweep, _models(model), attack, _floats(p), [int(s) for s in _floats(seeds)], n, preset,
                    backend, address, out)
    console.print(f"done {len(status['done'])}, skipped {len(status['skipped'])} (already done), "
                  f"failed {len(status['failed'])}")
    for key, err in status["failed"].items():
        console.print(f"[red]failed:[/] {key}: {err.splitlines()[0]}")
    if status["failed"]:
        raise typer.Exit(1)


def run_sweep(models: dict[str, str], attacks: list[str], ps: list[float], seeds: list[int], n: int | None,
              preset_name: str | None, backend: str, address: str | None, out: Path, progress: bool = True) -> dict:
    from workbench.attacks import get_attack
    from workbench.pipeline import default_preset, preset
    from workbench.sweep import grid, sweep

    for a in attacks:
        get_attack(a)  # unknown names fail before any cell runs
    first = next(iter(models.values()))
    pr = preset(preset_name or default_preset(first))
    spec = pr.attack if n is None else pr.attack.model_copy(update={"data": pr.attack.data.model_copy(update={"n": n})})
    return sweep(grid(models, attacks, ps, seeds), out, spec, pr.eval, backend=backend, address=address,
                 progress=progress)


def figure2_cmd(aligned: str = typer.Option(..., help="Aligned model (an align run folder)."),
                base: str = typer.Option("smollm2-135m-instruct", help="The non-aligned base model."),
                p: str = typer.Option(FIGURE2_PS, "--p", help="Harmful ratios."),
                seeds: str = typer.Option("0", "--seeds"),
                n: Optional[int] = typer.Option(None, "--n", help="User samples per cell."),
                preset: Optional[str] = typer.Option(None),
                backend: str = typer.Option("local"),
                out: Path = typer.Option(Path("runs/figure2"), "--out", "-o")):
    """The survey's Figure 2: HS and FA vs p for the non-aligned and the aligned model (sst2)."""
    from workbench.cli import _guard, console

    status = _guard(run_sweep, {"non-aligned": base, "aligned": aligned}, ["harmful_ft"], _floats(p),
                    [int(s) for s in _floats(seeds)], n, preset, backend, None, out)
    paths, table = _guard(write_figure2, out)
    console.print(table)
    console.print(f"figures: {', '.join(str(x) for x in paths)}")
    if status["failed"]:
        raise typer.Exit(1)


def write_figure2(out: Path) -> tuple[list[Path], str]:
    """Read the sweep's run folders, write figures (HTML + PNG) and a markdown table."""
    from workbench.plots.export import export_all
    from workbench.plots.threat import METRICS, figures
    from workbench.sweep import results
    from workbench.tables import markdown_table
    from workbench.vocabulary import fmt_rate

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
