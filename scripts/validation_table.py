"""The validation table of a hyperparameter sweep: one row per `workbench eval --validation` run under ROOT, with the
defense (and its parameters) of the align run under the evaluated model, and the validation rates.

Usage: python scripts/validation_table.py ROOT [ROOT ...]    (see scripts/defense_param_sweep.sh); several roots
give one table, e.g. the default-value runs next to a sweep's.
"""
from __future__ import annotations

import sys
from pathlib import Path

from workbench.runs import base_chain, defense_name, list_runs
from workbench.tables import markdown_table
from workbench.vocabulary import fmt_rate, short_title


def rows(root: str | Path) -> list[dict]:
    out = []
    for run in list_runs(root, "eval"):
        sets = run.spec.harmful_prompts or ""
        if not str(sets).startswith("validation"):
            continue
        # evaluated model → attack run → align run → …; a base archived elsewhere under ROOT's parent is found there
        chain, bottom = base_chain(run, search=(Path(root).parent,))
        i = next((k for k, r in enumerate(chain) if r.kind == "align"), None)
        aligned = chain[i] if i is not None else None
        under = chain[i + 1] if i is not None and i + 1 < len(chain) else None  # an earlier alignment it continued
        steps = (aligned.metrics.get("train") or {}).get("steps") if aligned else None
        start = defense_name(under) if under is not None else Path(str(bottom)).name
        attack = next((r for r in chain if r.kind in ("attack", "defend")), None)
        p = attack.attack.data.p if attack is not None and attack.attack is not None else None
        out.append({"aligned with": defense_name(aligned) if aligned else "—",
                    "align steps (on)": f"{steps} (on {start})" if aligned else "—", "attack p": p, "sets": sets,
                    **{short_title(m): run.metrics.get(m) for m in ("refusal_harmful", "hs", "hs_plus",
                                                                    "refusal_benign")},
                    "run": run.path.name})
    return out


def markdown(table: list[dict]) -> str:
    if not table:
        return "no `workbench eval --validation` runs found\n"
    return markdown_table(list(table[0]), ([fmt_rate(v) if isinstance(v, dict) else v for v in r.values()]
                                           for r in table))


if __name__ == "__main__":
    roots = sys.argv[1:]
    if not roots or not all(Path(r).is_dir() for r in roots):
        sys.exit("usage: python scripts/validation_table.py ROOT [ROOT ...]"
                 "  (folders holding `eval --validation` runs)")
    print(markdown([row for root in roots for row in rows(root)]))
