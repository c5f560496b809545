"""Sanity check of the alignment-stage defenses' shared premise: the attack moves the hidden states of the alignment
data ("harmful embedding drift", Vaccine §3), and a defense should make that drift smaller than SFT's.

For every aligned model `GRID/align/<defense>/<run>` and its attack cell
`GRID/sweep/cells/<defense>-harmful_ft-p<p>-s<seed>` this runs `workbench analyze drift` (aligned → attacked,
100 alignment samples: harmful prompts → refusals) into `GRID/drift/<defense>-p<p>` unless it exists, then prints
one table: mean relative L2 drift over blocks, the last layer's L2 drift, and the attacked model's HS / refusal
from its own metrics.json.

Usage: python scripts/alignment_drift.py runs/defense-grid [--p 0.1 --p 0.3] [--seed 0] [--defense sft ...]
Needs the attacked models' weights (a `runs/` grid, not an archive that dropped them).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from workbench.runs import list_runs, open_run
from workbench.tables import markdown_table
from workbench.vocabulary import fmt_rate


def last_run(folder: Path):
    runs = list_runs(folder)
    return runs[-1] if runs else None


def drift_rows(grid: Path, ps: list[str], seed: int, n_samples: int = 100,
               defenses: list[str] | None = None) -> list[dict]:
    from workbench.steps import run_analysis

    rows = []
    for align_dir in sorted(p for p in (grid / "align").iterdir() if p.is_dir()):
        defense, aligned = align_dir.name, last_run(align_dir)
        if defenses and defense not in defenses:
            continue
        for p in ps:
            attacked = last_run(grid / "sweep" / "cells" / f"{defense}-harmful_ft-p{p}-s{seed}")
            if aligned is None or attacked is None:
                continue
            out = grid / "drift" / f"{defense}-p{p}"
            if not (out / "metrics.json").exists():
                print(f"drift {defense} p={p} …", flush=True)
                run_analysis("drift", str(aligned.path), str(attacked.path), seed, out, {"n_samples": n_samples})
            d, m = open_run(out).metrics, attacked.metrics
            rows.append({"defense": defense, "p": p, "drift rel L2 (mean over blocks)": f"{d['drift_rel_l2_mean']:.4f}",
                         "drift L2 last layer": f"{d['drift_l2_last']:.2f}", "attacked HS": fmt_rate(m.get("hs")),
                         "attacked refusal harmful": fmt_rate(m.get("refusal_harmful"))})
    return rows


def markdown(rows: list[dict]) -> str:
    if not rows:
        return "no aligned model with an attack cell found\n"
    return markdown_table(list(rows[0]), (r.values() for r in rows))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid", type=Path)
    ap.add_argument("--p", action="append", default=None, help="harmful ratio as the cell keys write it (0.1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--defense", action="append", default=None, help="only these defenses (default: all)")
    a = ap.parse_args()
    if not (a.grid / "align").is_dir():
        ap.error(f"{a.grid} has no align/ folder (expected a leaderboard_grid.sh output)")
    print(markdown(drift_rows(a.grid, a.p or ["0.1"], a.seed, defenses=a.defense)))
