"""Does bfloat16 change the quickstart's conclusions? One quickstart root per (dtype, seed), compared paired.

For each model of the quickstart (non-aligned, aligned, attacked, repaired) and each metric (refusal of harmful
prompts, HS, FA), this prints |bf16 − fp32| for each seed beside |fp32 seed 0 − fp32 seed 1| (the noise a seed
alone makes on the same prompts), and a paired two one-sided test (TOST, ±margin points) of bf16 vs fp32 per seed.
bf16 is equivalent on a cell when its gap is no larger than the seed gap, or when the TOST rejects a difference of
≥ margin points. Usage (a root per (dtype, seed): `run` is the quickstart without its refusal-direction analysis,
which has no metrics to compare; a `workbench quickstart --dtype … --seed … --out ROOT` root serves as well):

    python scripts/dtype_equivalence.py run --dtype float32 --seed 0 --out qs/fp32-s0     # likewise s1, bfloat16
    python scripts/dtype_equivalence.py compare --fp32 qs/fp32-s0 qs/fp32-s1 --bf16 qs/bf16-s0 qs/bf16-s1

With one fp32 root there is no seed gap, and only the TOST decides.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from workbench.evaluation.paired import equivalence_of_flags, sample_flags
from workbench.machine import cpu_model
from workbench.pipeline import quickstart
from workbench.runs import Run, list_runs
from workbench.vocabulary import short_title

MODELS = {"non-aligned": "eval", "aligned": "align", "attacked": "attack", "repaired": "repair"}
METRICS = ("refusal_harmful", "hs", "fa_sst2")


def quickstart_runs(root: Path) -> dict[str, Run]:
    """The quickstart's four evaluated models in one root, by role (exactly one run of each kind)."""
    runs = {}
    for role, kind in MODELS.items():
        found = list_runs(root, kind=kind)
        if len(found) != 1:
            raise SystemExit(f"{root}: expected one {kind} run (the quickstart's {role} model), found {len(found)}")
        runs[role] = found[0]
    return runs


def precision_of(run: Run) -> str:
    """The precision the run's model generated its evaluated answers in (training and generation share `--dtype`)."""
    return run.spec.eval.generation.dtype


def rows(fp32: list[Path], bf16: list[Path], margin: float) -> list[dict]:
    f = [quickstart_runs(r) for r in fp32]
    b = [quickstart_runs(r) for r in bf16]
    out = []
    for role in MODELS:
        for metric in METRICS:
            flags = lambda runs, role=role, metric=metric: sample_flags(runs[role].samples(), metric)  # noqa: E731
            seed_gap = (abs(equivalence_of_flags(flags(f[0]), flags(f[1]), metric, margin).value)
                        if len(f) > 1 else None)
            row = {"model": role, "metric": short_title(metric), "fp32 seed 0 vs 1": seed_gap}
            for i, (fr, br) in enumerate(zip(f, b, strict=False)):
                e = equivalence_of_flags(flags(br), flags(fr), metric, margin)
                row[f"seed {i}"] = {"fp32": 100 * sum(flags(fr).values()) / len(flags(fr)),
                                    "bf16": 100 * sum(flags(br).values()) / len(flags(br)), **e.to_dict(),
                                    "within_seed_gap": seed_gap is not None and abs(e.value) <= seed_gap}
            out.append(row)
    return out


def markdown(table: list[dict], margin: float) -> str:
    head = (f"| model | metric | seed | fp32 | bf16 | bf16 − fp32 [90 % CI] | TOST p (±{margin:g}) "
            "| fp32 seed 0 vs 1 | equivalent |")
    lines = [head, "|" + "---|" * 9]
    for r in table:
        for seed in (k for k in ("seed 0", "seed 1") if k in r):
            c = r[seed]
            gap = "–" if r["fp32 seed 0 vs 1"] is None else f"{r['fp32 seed 0 vs 1']:.1f}"
            verdict = "yes" if c["within_seed_gap"] or c["equivalent"] else "**no**"
            why = " (≤ seed gap)" if c["within_seed_gap"] else (" (TOST)" if c["equivalent"] else "")
            lines.append(f"| {r['model']} | {r['metric']} | {seed[-1]} | {c['fp32']:.0f} % | {c['bf16']:.0f} % "
                         f"| {c['value']:+.1f} [{c['low']:+.1f}, {c['high']:+.1f}] | {c['p_value']:.3f} "
                         f"| {gap} | {verdict}{why} |")
    return "\n".join(lines)


def verdict(table: list[dict]) -> str:
    """One sentence: on how many (model, metric, seed) cells bf16 is equivalent, and by which criterion."""
    cells = [r[k] for r in table for k in ("seed 0", "seed 1") if k in r]
    by_gap = sum(c["within_seed_gap"] for c in cells)
    by_tost = sum(c["equivalent"] and not c["within_seed_gap"] for c in cells)
    worst = max(cells, key=lambda c: abs(c["value"]))
    return (f"bf16 is equivalent to fp32 on {by_gap + by_tost} of {len(cells)} cells ({by_gap} within the fp32 "
            f"seed gap, {by_tost} more by the TOST); the largest difference is {worst['value']:+.1f} points.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the quickstart's four evaluated models in one precision and seed")
    run.add_argument("--dtype", choices=("float32", "bfloat16"), required=True)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--model", default="smollm2-135m-instruct")
    run.add_argument("--out", type=Path, required=True)
    cmp = sub.add_parser("compare", help="the equivalence table of the roots")
    cmp.add_argument("--fp32", nargs="+", type=Path, required=True, help="quickstart roots: float32 seeds 0 [and 1]")
    cmp.add_argument("--bf16", nargs="+", type=Path, required=True, help="quickstart roots: bfloat16 seeds 0 [and 1]")
    cmp.add_argument("--margin", type=float, default=5.0, help="TOST margin, percentage points")
    cmp.add_argument("--out", type=Path, default=None,
                     help="write the table as JSON here too (benchmarks/results/dtype-equivalence.json is what "
                          "`python -m benchmarks.report` puts into docs/benchmarks.md)")
    a = ap.parse_args()
    if a.command == "run":
        paths = quickstart(a.model, a.out, seed=a.seed, dtype=a.dtype, analysis=False)
        print(f"{a.out}: {paths['_seconds'] / 60:.1f} min")
        return
    if len(a.fp32) > 2 or len(a.bf16) > len(a.fp32):
        raise SystemExit("--fp32: one or two roots (seeds 0, 1); --bf16: no more roots than --fp32")
    for root, want in [(r, "float32") for r in a.fp32] + [(r, "bfloat16") for r in a.bf16]:
        got = {precision_of(run) for run in quickstart_runs(root).values()}
        if got != {want}:
            raise SystemExit(f"{root}: its training ran in {sorted(got)}, not {want}")
    table = rows(a.fp32, a.bf16, a.margin)
    text, summary = markdown(table, a.margin), verdict(table)
    print(f"{text}\n\n{summary}")
    if a.out:
        first = quickstart_runs(a.bf16[0])["aligned"].record
        a.out.write_text(json.dumps({
            "roots": {"float32": [str(r) for r in a.fp32], "bfloat16": [str(r) for r in a.bf16]},
            "margin": a.margin, "cpu": cpu_model(), "time": first.created, "git_hash": first.git_hash or "",
            "markdown": text, "summary": summary, "rows": table}, indent=1))


if __name__ == "__main__":
    main()
