"""The tables of `workbench judge report` as plain text cells (title, header, rows), from a `JudgeReportResult`: the
command prints them with rich, `TextTable.markdown()` writes them for docs. Kept out of the command so that the
notebooks and docs get the same table the console shows."""
from __future__ import annotations

from dataclasses import dataclass, field

from workbench.evaluation.judge_report import SMALL_N, JudgeReportResult
from workbench.evaluation.roc import Auc
from workbench.tables import markdown_table
from workbench.vocabulary import fmt_rate


@dataclass(frozen=True)
class TextTable:
    title: str
    head: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)  # lines printed under the table

    def markdown(self) -> str:
        return f"**{self.title}**\n\n" + markdown_table(self.head, self.rows) + "".join(f"\n{n}\n" for n in self.notes)


def fmt_auc(a: Auc | None) -> str:
    """"0.812 [0.710–0.914]"; "—" when undefined (a class missing), no interval with fewer than two of a class."""
    if a is None:
        return "—"
    if a.se is None:
        return f"{a.value:.3f} [—]"
    return f"{a.value:.3f} [{a.low:.3f}–{a.high:.3f}]"


def _rate(r) -> str:
    return fmt_rate(r, counts=True, decimals=0)


def cell_table(result: JudgeReportResult, breakdown: str, title: str) -> TextTable:
    """One row per (cell, judge) of a breakdown: "by_category", "by_answer_type" or "secondary"."""
    rows = []
    keys = list(dict.fromkeys(c.key for rep in result.judges for c in getattr(rep, breakdown)))
    for key in keys:
        for i, rep in enumerate(result.judges):
            c = next(c for c in getattr(rep, breakdown) if c.key == key)
            first = i == 0
            rows.append([(f"{key} (n < {SMALL_N})" if c.small else key) if first else "",
                         f"{c.n} ({c.n_harmful} / {c.n_benign})" if first else "", rep.judge.name,
                         _rate(c.fn), _rate(c.fp), fmt_auc(c.auroc)])
    return TextTable(title, ["cell", "n (harmful / benign)", "judge", "FN (harmful missed)", "FP (benign flagged)",
                             "AUROC [95 % CI]"], rows)


def report_tables(result: JudgeReportResult) -> list[TextTable]:
    """Every table of the report, in print order."""
    a = result.anchor
    overall = TextTable(
        f"judges on held-out judge_labelled (n={result.n_rows}: {result.n_harmful} harmful, "
        f"{result.n_rows - result.n_harmful} not; harmful ⇔ P ≥ {result.threshold})",
        ["judge", "version", "FN (harmful missed)", "FP (benign flagged)", "AUROC [95 % CI, DeLong]"],
        [[r.judge.name, r.judge.version, fmt_rate(r.overall.fn, counts=True), fmt_rate(r.overall.fp, counts=True),
          fmt_auc(r.overall.auroc)] for r in result.judges]
        + [[f"anchor: {a['source']}", "", f"{a['fn']:.2f} %", f"{a['fp']:.2f} %", "—"]],
        [f"not available, left out: {name} ({why})" for name, why in result.skipped.items()])
    confusion = TextTable(
        "confusion matrix (label: human, harmful = objective achieved; verdict: judge)",
        ["judge", "harmful, flagged (TP)", "harmful, missed (FN)", "benign, flagged (FP)", "benign, passed (TN)"],
        [[r.judge.name, *(str(v) for v in (r.confusion.tp, r.confusion.fn, r.confusion.fp, r.confusion.tn))]
         for r in result.judges])
    tables = [overall, confusion, cell_table(result, "by_category", "by harm category"),
              cell_table(result, "by_answer_type", "by answer type (docs/judges.md: how each type is decided)")]
    if any(r.secondary for r in result.judges):
        tables.append(cell_table(result, "secondary",
                                 "other held-out splits (automatic labels, see judge.secondary_examples)"))
    if result.paired:
        tables.append(TextTable(
            "paired AUROC difference: DeLong's test on the same held-out rows",
            ["judge A", "judge B", "AUROC A", "AUROC B", "A − B [95 % CI]", "p"],
            [[p.judge_a, p.judge_b, "—", "—", "undefined", "—"] if p.test is None else
             [p.judge_a, p.judge_b, f"{p.test.auc_a:.3f}", f"{p.test.auc_b:.3f}",
              f"{p.test.diff:+.3f} [{p.test.low:+.3f}, {p.test.high:+.3f}]", f"{p.test.p:.3g}"]
             for p in result.paired]))
    agr = result.agreement
    if agr is not None:
        tables.append(TextTable(
            f"raters of {agr.n_answers} harmful-set answers in {agr.n_runs} runs ({agr.n_prompts} prompts) under "
            f"{', '.join(agr.roots)}",
            ["rater", "calls harmful", "verdicts from"],
            [[r.name, fmt_rate(r.flagged, counts=True),
              "keyword refusal detector" if r.kind == "keyword" else
              f"samples.jsonl: {r.runs_from_samples} runs, sidecar: {r.runs_from_sidecar}, scored now: "
              f"{r.runs_scored_here}"] for r in agr.raters],
            ["answer types: " + ", ".join(f"{k} {v}" for k, v in agr.answer_types.items())]))
        tables.append(TextTable(
            "Cohen's kappa between raters (95 % CI: bootstrap over prompts)",
            ["rater A", "rater B", "agreement", "kappa [95 % CI]"],
            [[k.rater_a, k.rater_b, f"{100 * k.agreement:.1f}%",
              "undefined" if k.kappa is None else
              f"{k.kappa:.3f} [{k.low:.3f}–{k.high:.3f}]" if k.low is not None else f"{k.kappa:.3f}"]
             for k in agr.kappas]))
    return tables


def error_lines(result: JudgeReportResult) -> list[str]:
    """`--errors`: every misclassified held-out row of each judge, one line of prompt and one of answer."""
    out = []
    for rep in result.judges:
        out.append(f"{rep.judge.name}: {len(rep.errors)} misclassified held-out rows")
        for e in rep.errors:
            out.append(f"{'FN' if e.label else 'FP'} score={e.score:.2f} type={e.answer_type} [{e.category}] "
                       f"{e.prompt[:100]!r}\n    → {e.response[:200]!r}")
    return out
