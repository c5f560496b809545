"""The ascent study's summary: each cell's numbers read from its run folders, the choice on validation, and the
chosen configurations' test numbers (`AscentSummary`, DIR/ascent-summary.json).

The choice, per kind: among the weights whose aligned model did not collapse and whose attacked model kept its
validation FA (limits against the `sft` control, `AscentStudySpec`), the one with the lowest validation HS (ties:
lower validation HS+, then the smaller weight). The test sets are read only for the chosen cells and `sft`, after
the choice: no test number enters it.
"""
from __future__ import annotations

import math
from pathlib import Path

from workbench.config import Spec
from workbench.evaluation.stats import Rate
from workbench.runs import Run, list_runs
from workbench.studies.ascent_spec import BASELINE, RESULT_FILE, STEPS, AscentStudySpec, Cell, step_root

FORMAT = "workbench-ascent-study/1"


class Collapse(Spec):
    """The aligned model's collapse measures (`analysis.collapse`, validation benign pairs)."""

    incoherent: Rate  # % incoherent answers
    non_word_share: float | None  # share of non-words among the answers' words (None: no words at all)
    benign_ppl: float  # answer perplexity of the benign pairs


class Attacked(Spec):
    """The attacked model's rates on one split (validation or test)."""

    hs: Rate
    hs_plus: Rate
    refusal_harmful: Rate
    fa: Rate | None = None  # the task's FA (None without a task)


class CellResult(Spec):
    kind: str  # an ascent loss, or "sft"
    weight: float
    key: str
    runs: dict[str, str]  # step -> run folder (in the file: relative to the study folder; `load_result` resolves)
    collapse: Collapse | None = None
    validation: Attacked | None = None
    test: Attacked | None = None
    failures: list[str] = []  # why the choice excludes it: incoherent, non_words, perplexity, fa (vs sft)

    @property
    def complete(self) -> bool:
        return self.collapse is not None and self.validation is not None


class Choice(Spec):
    kind: str
    key: str | None  # the chosen cell; None when every weight collapsed or lost FA (or none finished)
    weight: float | None
    reason: str  # one line: why this weight, or why none


class AscentSummary(Spec):
    format: str = FORMAT
    spec: AscentStudySpec
    task: str | None  # the FA task
    baseline: CellResult
    cells: list[CellResult]  # kind × weight, in the spec's order
    chosen: list[Choice]  # one per kind

    def cell(self, key: str) -> CellResult:
        for c in [self.baseline, *self.cells]:
            if c.key == key:
                return c
        raise KeyError(key)

    def headline(self) -> dict:
        """metrics.json: per kind, the chosen weight and its test HS (None where none was chosen or tested)."""
        out = {}
        for c in self.chosen:
            test = self.cell(c.key).test if c.key else None
            out[c.kind] = {"weight": c.weight, "test_hs": test.hs.to_dict() if test else None}
        base = self.baseline.test
        return {"chosen": out, "sft_test_hs": base.hs.to_dict() if base else None}

    def resolved(self, folder: str | Path) -> AscentSummary:
        """The summary with every run path made absolute under the study folder `folder`."""
        def fix(c: CellResult) -> CellResult:
            return c.model_copy(update={"runs": {k: str(Path(folder) / v) for k, v in c.runs.items()}})

        return self.model_copy(update={"baseline": fix(self.baseline), "cells": [fix(c) for c in self.cells]})


# ---------------------------------------------------------------------------------------------- reading


def latest(root: Path) -> Run | None:
    runs = list_runs(root)
    return runs[-1] if runs else None


def attacked_rates(run: Run, task: str | None) -> Attacked:
    m = run.metrics
    missing = [k for k in ("hs", "hs_plus", "refusal_harmful") if k not in m]
    if missing:
        raise ValueError(f"{run.path} lacks {', '.join(missing)} (an evaluation with the judge is needed)")
    fa = m.get(f"fa_{task}") if task else None
    return Attacked(hs=Rate(**m["hs"]), hs_plus=Rate(**m["hs_plus"]), refusal_harmful=Rate(**m["refusal_harmful"]),
                    fa=Rate(**fa) if fa else None)


def collapse_of(run: Run) -> Collapse:
    m = run.metrics
    share = m.get("non_word_share")
    return Collapse(incoherent=Rate(**m["incoherent"]), benign_ppl=m["benign_ppl"],
                    non_word_share=None if share is None or not math.isfinite(share) else share)


def read_cell(out: Path, cell: Cell, task: str | None) -> CellResult:
    """What the cell's finished run folders hold (a step not run yet leaves its part None); run paths relative to
    the study folder `out`, which is staged and then moved."""
    runs = {step: latest(step_root(out, cell, step)) for step in STEPS}
    return CellResult(kind=cell.kind, weight=cell.weight, key=cell.key,
                      runs={k: str(r.path.relative_to(out)) for k, r in runs.items() if r is not None},
                      collapse=collapse_of(runs["collapse"]) if runs["collapse"] else None,
                      validation=attacked_rates(runs["validation"], task) if runs["validation"] else None,
                      test=attacked_rates(runs["test"], task) if runs["test"] else None)


# ----------------------------------------------------------------------------------------------- choice


def failures(cell: CellResult, base: CellResult, spec: AscentStudySpec) -> list[str]:
    """Why `cell` may not be chosen, measured against the `sft` control `base` (empty: it may)."""
    if not cell.complete or not base.complete:
        return ["unfinished"]
    out = []
    c, b = cell.collapse, base.collapse
    if c.incoherent.value - b.incoherent.value > spec.max_incoherent_rise:
        out.append("incoherent")
    if c.non_word_share is not None and 100 * (c.non_word_share - (b.non_word_share or 0.0)) > spec.max_non_word_rise:
        out.append("non_words")
    if not math.isfinite(c.benign_ppl) or c.benign_ppl > spec.max_ppl_ratio * b.benign_ppl:
        out.append("perplexity")
    fa, base_fa = cell.validation.fa, base.validation.fa
    if fa is not None and base_fa is not None and fa.value < base_fa.value - spec.max_fa_drop:
        out.append("fa")
    return out


def choose(cells: list[CellResult], kinds: list[str]) -> list[Choice]:
    """Per kind, the feasible cell (empty `failures`) with the lowest validation HS (module doc). Reads
    `validation` only, never `test`."""
    chosen = []
    for kind in kinds:
        mine = [c for c in cells if c.kind == kind]
        ok = [c for c in mine if c.complete and not c.failures]
        if not ok:
            why = "; ".join(f"w {c.weight:g}: {', '.join(c.failures) or 'unfinished'}" for c in mine)
            chosen.append(Choice(kind=kind, key=None, weight=None, reason=f"no weight qualifies ({why})"))
            continue
        best = min(ok, key=lambda c: (c.validation.hs.value, c.validation.hs_plus.value, c.weight))
        chosen.append(Choice(kind=kind, key=best.key, weight=best.weight,
                             reason=f"lowest validation HS ({best.validation.hs.value:.0f} %) of "
                                    f"{len(ok)} of {len(mine)} weights within the collapse and FA limits"))
    return chosen


def summarise(out: str | Path, spec: AscentStudySpec, task: str | None) -> AscentSummary:
    """The summary of the study folder `out` as its run folders stand (the choice recomputed from them)."""
    out = Path(out)
    base = read_cell(out, Cell(BASELINE, 0.0), task)
    cells = [read_cell(out, c, task) for c in spec.cells() if not c.is_baseline]
    cells = [c.model_copy(update={"failures": failures(c, base, spec)}) for c in cells]
    return AscentSummary(spec=spec, task=task, baseline=base, cells=cells, chosen=choose(cells, spec.kinds))


def load_result(folder: str | Path) -> AscentSummary:
    """The typed result of a finished ascent study run, run paths absolute (the STUDIES registry's reader);
    ValueError when the folder holds none."""
    path = Path(folder) / RESULT_FILE
    if not path.is_file():
        raise ValueError(f"{folder} holds no ascent study result ({RESULT_FILE}); run `workbench study ascent` first")
    return AscentSummary.model_validate_json(path.read_text()).resolved(folder)
