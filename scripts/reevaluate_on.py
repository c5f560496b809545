"""Evaluate the fine-tuned models of a grid again on another harmful set, and tabulate them.

Why: a grid's attack and defend runs are evaluated once, on their preset's harmful set (the `full` preset: the
standard set of 300 prompts). A table read on another set (the 100 held-out AdvBench prompts of the older docs)
needs evaluations of the same models there, as eval runs that can be archived. Each run's recorded evaluation is
kept otherwise (benign and task sets, sizes, the defense's or attacker's system prompt and codec), so PTST and
BEA are queried as their runs were. Needs the runs' weights (a grid trained on this machine, not an archive).

    python scripts/reevaluate_on.py run --runs runs/defense-grid --harmful-set advbench --n-harmful 100 \\
        --out runs/defense-grid-advbench
    python scripts/reevaluate_on.py table --runs runs/defense-grid-advbench [--search results]

Each evaluation lands in OUT/<the run's folder relative to --runs>/ (skipped when it holds one already). `table`
finds each evaluated run where its record says, or by folder name under the `--search` roots (archived copies).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from workbench.models.registry import holds_model
from workbench.runs import Run, defense_name, find_moved, list_runs, open_run
from workbench.steps import evaluate_model
from workbench.tables import markdown_table
from workbench.vocabulary import fmt_rate

KINDS = ("attack", "defend")


def run(root: Path, out: Path, harmful_set: str, n_harmful: int, seed: int) -> list[Path]:
    done = []
    for attacked in list_runs(root):
        if attacked.kind not in KINDS:
            continue
        if not holds_model(attacked.model_dir):
            print(f"skipped (an archived copy without weights: retrain it first): {attacked.path}")
            continue
        dest = out / attacked.path.relative_to(root)
        if list_runs(dest, "eval"):
            print(f"done already: {dest}")
            continue
        spec = attacked.spec.eval.model_copy(update={"harmful_set": harmful_set, "n_harmful": n_harmful})
        done.append(evaluate_model(str(attacked.path), dest, seed=seed, eval_spec=spec))
    return done


def label(attacked: Run) -> str:
    method = attacked.attack.train.method
    name = "plain fine-tuning" if attacked.kind == "attack" else defense_name(attacked)
    return f"{name} ({method})"


def evaluated_run(ev: Run, search: list[Path]) -> Run:
    """The attack / defend run an evaluation evaluated: where its record says, else moved under `search`."""
    path = Path(ev.base) if Path(ev.base).is_dir() else find_moved(ev.base, search)
    if path is None:
        raise SystemExit(f"{ev.path}: the run it evaluated, {ev.base}, is neither there nor under "
                         f"{', '.join(map(str, search)) or 'any --search root'}")
    return open_run(path)


def table(out: Path, search: list[Path] = ()) -> str:
    rows = []
    for ev in list_runs(out, "eval"):
        attacked = evaluated_run(ev, list(search))
        m = ev.metrics
        task = attacked.spec.eval.task
        train_s = attacked.metrics.get("train", {}).get("train_seconds")
        rows.append((label(attacked), m["hs"]["value"],
                     [label(attacked), fmt_rate(m["hs"]), fmt_rate(m["hs_plus"]), fmt_rate(m[f"fa_{task}"]),
                      fmt_rate(m["refusal_benign"]), fmt_rate(m["refusal_harmful"]),
                      "—" if train_s is None else f"{train_s:.0f}", ev.path.name]))
    rows.sort(key=lambda r: (not r[0].endswith("(full)"), r[0] != "plain fine-tuning (lora)", r[1]))
    return markdown_table(["defense", "HS", "HS+", "FA", "refusal, benign", "refusal, harmful", "train s", "eval run"],
                          [r[2] for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--runs", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--harmful-set", default="advbench")
    r.add_argument("--n-harmful", type=int, default=100)
    r.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("table")
    t.add_argument("--runs", type=Path, required=True)
    t.add_argument("--search", type=Path, action="append", default=[], help="where archived copies of the "
                   "evaluated runs are (repeatable)")
    a = ap.parse_args()
    if a.cmd == "run":
        for p in run(a.runs, a.out, a.harmful_set, a.n_harmful, a.seed):
            print(p)
    else:
        print(table(a.runs, a.search))


if __name__ == "__main__":
    main()
