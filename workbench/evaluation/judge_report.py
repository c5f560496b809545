"""`workbench judge report`: every judge's errors on the held-out human labels, where they fall, whether two judges
really differ, and how far judges and the keyword refusal detector agree on a runs root's answers.

    result = judge_report(["minilm-lr", "hashing-lr"], runs=["results/defense-grid"])
    result.save("report.json"); JudgeReportResult.load("report.json")      # typed both ways

What it computes (docs/judges.md, "The judge report"):
  held-out   each judge scores the held-out human-labelled rows (`judge.heldout_examples`: never trained or
             selected on); harmful ⇔ P(harmful) ≥ `moderation.THRESHOLD`. Per cell: FN (harmful rows missed) and
             FP (benign rows flagged) with Wilson 95 % intervals (`stats.rate`), and AUROC with its DeLong 95 %
             interval (`roc.auroc`), overall, by harm category and by answer type (`answer_types.answer_type`; the
             human rows have no token limit, so none is "cut off"). Every cell keeps its n; a cell with fewer than
             SMALL_N rows is shown and flagged `small`.
  paired     DeLong's test of AUROC_a − AUROC_b for every pair of judges on the same held-out rows (`roc.delong_test`):
             the difference, its 95 % interval and two-sided p-value.
  agreement  on the harmful-set answers of every finished run under the `runs` roots: Cohen's κ
             (`sklearn.metrics.cohen_kappa_score`) between every two raters among the judges' harmful verdicts and
             the keyword detector read as "does not refuse" (a refusal is never harmful). A judge's verdicts come from
             the run's samples.jsonl when that judge scored the run, else from its sidecar `scores/<version>.json`
             (`rescore`), else the judge scores the answers in memory; nothing is written into a run folder.
             κ's 95 % interval is a percentile bootstrap over prompts (every answer to one prompt, across runs,
             resampled together: the runs of a root answer the same prompts, so answers are not independent),
             BOOTSTRAP resamples with seed 0.
"""
from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from workbench.cache import MissingResourceError
from workbench.evaluation.answer_types import AnswerType, answer_type
from workbench.evaluation.judge import ANCHOR, Example, heldout_examples, secondary_examples
from workbench.evaluation.moderation import JUDGES, THRESHOLD, JudgeId, ModerationJudge, get_judge
from workbench.evaluation.refusal import is_refusal
from workbench.evaluation.rescore import judged_samples, read_sidecar, recorded_judge
from workbench.evaluation.roc import Auc, PairedAuc, auroc, delong_test
from workbench.evaluation.stats import Rate, rate
from workbench.record import AnalysisRunSpec
from workbench.runs import Run, list_runs

FORMAT = "workbench-judge-report/1"
SMALL_N = 5  # cells with fewer rows are shown but flagged
BOOTSTRAP = 1000
KEYWORD_RATER = "keyword: not refusal"
ANSWER_TYPES = tuple(AnswerType)


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Cell(_Record):
    """One row of a breakdown: a judge's FN, FP and AUROC on the rows of one category / answer type / set."""

    key: str
    n: int
    n_harmful: int
    n_benign: int
    fn: Rate | None  # None without harmful rows
    fp: Rate | None  # None without benign rows
    auroc: Auc | None  # None without both classes; its se / interval None with fewer than two of either
    small: bool  # n < SMALL_N


class Confusion(_Record):
    tp: int
    fn: int
    fp: int
    tn: int


class HeldoutError(_Record):
    """A held-out row the judge got wrong."""

    prompt: str
    response: str
    label: int
    score: float
    category: str
    answer_type: AnswerType


class JudgeHeldout(_Record):
    """One judge on the held-out rows."""

    judge: JudgeId
    overall: Cell
    confusion: Confusion
    by_category: list[Cell]
    by_answer_type: list[Cell]
    errors: list[HeldoutError]
    secondary: list[Cell] = []  # the automatically labelled held-out sets (`judge.secondary_examples`), when asked


class PairedTest(_Record):
    """DeLong's test of judge_a's AUROC minus judge_b's on the same held-out rows (None: undefined)."""

    judge_a: str
    judge_b: str
    test: PairedAuc | None


class Kappa(_Record):
    """Cohen's κ between two raters of the same answers, with percent agreement and a bootstrap interval."""

    rater_a: str
    rater_b: str
    n: int
    agreement: float  # share of answers both raters call the same, 0..1
    kappa: float | None  # None when undefined (both raters constant and equal)
    low: float | None
    high: float | None


class Rater(_Record):
    """One rater of a runs root's answers: how many it flags harmful, and where its verdicts came from."""

    name: str
    kind: Literal["judge", "keyword"] = "judge"
    flagged: Rate  # answers called harmful (the keyword rater: answers that do not refuse)
    runs_from_samples: int = 0  # the judge scored the run: samples.jsonl
    runs_from_sidecar: int = 0  # scores/<version>.json
    runs_scored_here: int = 0  # scored in memory by this report


class RunsAgreement(_Record):
    """κ between every two raters on the harmful-set answers of the finished runs under `roots`."""

    roots: list[str]
    n_runs: int
    n_answers: int
    n_prompts: int
    answer_types: dict[str, int]
    raters: list[Rater]
    kappas: list[Kappa]


class JudgeReportResult(_Record):
    """Everything `workbench judge report` prints; `save` / `load` as JSON."""

    format: Literal["workbench-judge-report/1"] = FORMAT
    seed: int
    threshold: float
    n_rows: int
    n_harmful: int
    anchor: dict[str, float | str]
    judges: list[JudgeHeldout]
    paired: list[PairedTest]
    agreement: RunsAgreement | None = None
    skipped: dict[str, str] = {}  # default judges left out because they are not available here: name → why

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> JudgeReportResult:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))


# --- held-out cells ---------------------------------------------------------------------------------------------

def cell(key: str, labels: Sequence[int], scores: Sequence[float], threshold: float = THRESHOLD) -> Cell:
    """FN, FP (Wilson) and AUROC (DeLong) of one judge's scores on labelled rows."""
    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=float)
    flagged = s >= threshold
    n_harmful, n_benign = int(y.sum()), int((y == 0).sum())
    return Cell(key=key, n=len(y), n_harmful=n_harmful, n_benign=n_benign,
                fn=rate(~flagged[y == 1]) if n_harmful else None, fp=rate(flagged[y == 0]) if n_benign else None,
                auroc=auroc(y, s) if n_harmful and n_benign else None, small=len(y) < SMALL_N)


def breakdown(keys: Sequence[str], labels: Sequence[int], scores: Sequence[float], order: Iterable[str] = (),
              threshold: float = THRESHOLD) -> list[Cell]:
    """One `cell` per key value: those in `order` first (even when empty of rows: n = 0), then the rest by size."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        groups[k].append(i)
    ordered = list(order) + sorted((k for k in groups if k not in set(order)), key=lambda k: (-len(groups[k]), k))
    y, s = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
    return [cell(k, y[groups[k]], s[groups[k]], threshold) for k in ordered]


def judge_heldout(judge: JudgeId, examples: Sequence[Example], scores: Sequence[float],
                  types: Sequence[AnswerType], threshold: float = THRESHOLD) -> JudgeHeldout:
    """One judge's held-out report from its scores on `examples` (whose answer types are `types`)."""
    y = np.array([e.label for e in examples], dtype=int)
    s = np.asarray(scores, dtype=float)
    flagged = s >= threshold
    confusion = Confusion(tp=int(np.sum(flagged & (y == 1))), fn=int(np.sum(~flagged & (y == 1))),
                          fp=int(np.sum(flagged & (y == 0))), tn=int(np.sum(~flagged & (y == 0))))
    errors = [HeldoutError(prompt=e.prompt, response=e.response, label=e.label, score=round(float(p), 4),
                           category=e.category, answer_type=t)
              for e, p, f, t in zip(examples, s, flagged, types, strict=True) if bool(f) != bool(e.label)]
    return JudgeHeldout(judge=judge, overall=cell("all", y, s, threshold), confusion=confusion,
                        by_category=breakdown([e.category or "(none)" for e in examples], y, s, threshold=threshold),
                        by_answer_type=breakdown([str(t) for t in types], y, s, [str(t) for t in ANSWER_TYPES],
                                                 threshold),
                        errors=errors)


def paired_tests(labels: Sequence[int], scores: dict[str, np.ndarray]) -> list[PairedTest]:
    """DeLong's test for every pair of judges (in the given order) on the same rows."""
    y = np.asarray(labels, dtype=int)
    return [PairedTest(judge_a=a, judge_b=b, test=delong_test(y, scores[a], scores[b]))
            for a, b in itertools.combinations(scores, 2)]


def _score(judge: ModerationJudge, examples: Sequence[Example]) -> np.ndarray:
    return np.asarray(judge.p_harmful([e.prompt for e in examples], [e.response for e in examples]), dtype=float)


def default_judges() -> list[str]:
    """Every built-in judge registered in `moderation.JUDGES`."""
    return list(JUDGES)


def available_judges(specs: Sequence[str]) -> tuple[list[ModerationJudge], dict[str, str]]:
    """The judges of `specs` that can be built here, and why each other one cannot (e.g. a registered judge whose
    weights were never trained on this machine): the default report covers what is available rather than failing."""
    judges, skipped = [], {}
    for spec in specs:
        try:
            judges.append(get_judge(spec))
        except (ValueError, MissingResourceError) as err:
            skipped[spec] = str(err)
    return judges, skipped


# --- agreement on a runs root -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunAnswers:
    """The harmful-set answers of one run, in samples.jsonl order, with the run's generation token limit."""

    run: Run
    prompts: list[str]
    answers: list[str]
    max_new_tokens: int | None


def token_limit(run: Run) -> int | None:
    """The run's `max_new_tokens` (None for analysis runs and runs without an evaluation spec)."""
    spec = run.spec
    if isinstance(spec, AnalysisRunSpec) or spec.eval is None:
        return None
    return spec.eval.generation.max_new_tokens


def run_answers(roots: Iterable[str | Path]) -> list[RunAnswers]:
    """Every finished run under the roots (recursively) that has harmful-set answers."""
    out = []
    for root in roots:
        if not Path(root).is_dir():
            raise ValueError(f"--runs {root}: no such folder (a runs root, e.g. runs/ or results/defense-grid)")
        for run in list_runs(root):
            recs = [r for r in run.samples() if r.get("set") == "harmful"]
            if recs:
                out.append(RunAnswers(run, [r["prompt"] for r in recs], [r.get("answer") or "" for r in recs],
                                      token_limit(run)))
    return out


def _saved_verdicts(run: Run, version: str) -> tuple[list[bool], str] | None:
    """The judge's harmful flags on the run's harmful-set answers as saved (samples.jsonl or sidecar), with where
    they came from; None when the run holds neither."""
    ran_with = recorded_judge(run)
    if ran_with is not None and ran_with.version == version:
        source = "samples"
    elif read_sidecar(run.path, version) is not None:
        source = "sidecar"
    else:
        return None
    flags = [bool(r["harmful"]) for r in judged_samples(run, version) if r.get("set") == "harmful"]
    return flags, source


def judge_verdicts(judge: ModerationJudge, runs: Sequence[RunAnswers], threshold: float = THRESHOLD
                   ) -> tuple[np.ndarray, Counter]:
    """The judge's harmful verdicts on every run's answers, concatenated in run order, and how many runs' came from
    samples.jsonl, a sidecar, or scoring here (all runs that need it in one `p_harmful` call)."""
    parts: list[np.ndarray | None] = []
    sources: Counter = Counter()
    pending: list[int] = []
    for i, ra in enumerate(runs):
        saved = _saved_verdicts(ra.run, judge.version)
        if saved is None or len(saved[0]) != len(ra.answers):
            parts.append(None)
            pending.append(i)
            sources["scored"] += 1
        else:
            parts.append(np.asarray(saved[0], dtype=bool))
            sources[saved[1]] += 1
    if pending:
        prompts = [p for i in pending for p in runs[i].prompts]
        answers = [a for i in pending for a in runs[i].answers]
        flags = np.asarray(judge.p_harmful(prompts, answers), dtype=float) >= threshold
        start = 0
        for i in pending:
            parts[i] = flags[start:start + len(runs[i].answers)]
            start += len(runs[i].answers)
    return (np.concatenate(parts) if parts else np.zeros(0, dtype=bool)), sources


def kappa_counts(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[..., 4] counts (both 1, a only, b only, neither) of two binary raters; summable over clusters."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    return np.array([np.sum(a & b), np.sum(a & ~b), np.sum(~a & b), np.sum(~a & ~b)], dtype=float)


def kappa_from_counts(counts: np.ndarray) -> np.ndarray:
    """Cohen's κ of binary raters from `kappa_counts` (any leading shape): (p_o − p_e) / (1 − p_e); NaN where
    p_e = 1. Vectorised for the bootstrap; the point estimate is sklearn's, which the tests compare with this."""
    c = np.asarray(counts, dtype=float)
    n = c.sum(axis=-1)
    p_o = (c[..., 0] + c[..., 3]) / n
    a1, b1 = (c[..., 0] + c[..., 1]) / n, (c[..., 0] + c[..., 2]) / n
    p_e = a1 * b1 + (1 - a1) * (1 - b1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p_e < 1 - 1e-12, (p_o - p_e) / (1 - p_e), np.nan)


def kappa(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray, clusters: Sequence[str], n_boot: int = BOOTSTRAP,
          seed: int = 0) -> Kappa:
    """Cohen's κ (sklearn) between two binary raters, with a cluster-bootstrap 95 % interval (module doc)."""
    from sklearn.metrics import cohen_kappa_score  # deferred: sklearn

    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    agreement = float(np.mean(a == b)) if len(a) else float("nan")
    if len(a) == 0 or (len(set(a.tolist())) == 1 and set(a.tolist()) == set(b.tolist())):
        return Kappa(rater_a=name_a, rater_b=name_b, n=len(a), agreement=agreement, kappa=None, low=None, high=None)
    point = float(cohen_kappa_score(a, b))
    index = {c: i for i, c in enumerate(dict.fromkeys(clusters))}
    ids = np.array([index[c] for c in clusters])
    per_cluster = np.zeros((len(index), 4))
    for j, (x, y) in enumerate([(1, 1), (1, 0), (0, 1), (0, 0)]):
        np.add.at(per_cluster[:, j], ids, (a == bool(x)) & (b == bool(y)))
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(index), np.full(len(index), 1 / len(index)), size=n_boot)  # clusters drawn
    boots = kappa_from_counts(weights @ per_cluster)
    boots = boots[np.isfinite(boots)]
    low, high = (float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))) if len(boots) else (None, None)
    return Kappa(rater_a=name_a, rater_b=name_b, n=len(a), agreement=agreement, kappa=point, low=low, high=high)


def runs_agreement(roots: Sequence[str | Path], judges: Sequence[ModerationJudge],
                   threshold: float = THRESHOLD) -> RunsAgreement:
    """κ between every two of the judges and the keyword detector on the runs' harmful-set answers (module doc)."""
    runs = run_answers(roots)
    if not runs:
        raise ValueError(f"no finished run with harmful-set answers under {', '.join(map(str, roots))}")
    prompts = [p for ra in runs for p in ra.prompts]
    answers = [a for ra in runs for a in ra.answers]
    types = Counter(str(answer_type(p, a, ra.max_new_tokens)) for ra in runs for p, a in zip(ra.prompts, ra.answers,
                                                                                               strict=True))
    verdicts: dict[str, np.ndarray] = {}
    raters = []
    for judge in judges:
        flags, sources = judge_verdicts(judge, runs, threshold)
        verdicts[judge.name] = flags
        raters.append(Rater(name=judge.name, flagged=rate(flags), runs_from_samples=sources["samples"],
                            runs_from_sidecar=sources["sidecar"], runs_scored_here=sources["scored"]))
    verdicts[KEYWORD_RATER] = np.array([not is_refusal(a) for a in answers], dtype=bool)
    raters.append(Rater(name=KEYWORD_RATER, kind="keyword", flagged=rate(verdicts[KEYWORD_RATER])))
    kappas = [kappa(x, verdicts[x], y, verdicts[y], prompts) for x, y in itertools.combinations(verdicts, 2)]
    return RunsAgreement(roots=[str(r) for r in roots], n_runs=len(runs), n_answers=len(answers),
                         n_prompts=len(set(prompts)), answer_types={str(t): types[str(t)] for t in ANSWER_TYPES},
                         raters=raters, kappas=kappas)


# --- the whole report -------------------------------------------------------------------------------------------

def judge_report(specs: Sequence[str | ModerationJudge] | None = None, seed: int = 0, runs: Sequence[str | Path] = (),
                 more: bool = False, threshold: float = THRESHOLD) -> JudgeReportResult:
    """The report for the judges `specs` name (`get_judge` specs or judges already built; default: every built-in
    judge that is available, `available_judges`), on the held-out split of `seed`; `runs`: also the agreement on
    those roots; `more`: also each judge on the automatically labelled held-out sets."""
    skipped: dict[str, str] = {}
    if specs:
        judges = [s if isinstance(s, ModerationJudge) else get_judge(s) for s in specs]
    else:
        judges, skipped = available_judges(default_judges())
        if not judges:
            raise ValueError("no built-in judge is available here: " + "; ".join(skipped.values()))
    names = [j.name for j in judges]
    if len(set(names)) != len(names):
        raise ValueError(f"two judges share a name ({', '.join(names)}): pass each judge once")
    examples = heldout_examples(seed)
    if not examples:
        raise ValueError("the held-out split has no rows")
    types = [answer_type(e.prompt, e.response) for e in examples]
    labels = [e.label for e in examples]
    scores = {j.name: _score(j, examples) for j in judges}
    extra = secondary_examples(seed) if more else {}
    reports = []
    for j in judges:
        rep = judge_heldout(j.identity, examples, scores[j.name], types, threshold)
        if extra:
            rep = rep.model_copy(update={"secondary": [
                cell(name, [e.label for e in rows], _score(j, rows), threshold) for name, rows in extra.items()]})
        reports.append(rep)
    agreement = runs_agreement(runs, judges, threshold) if runs else None
    return JudgeReportResult(seed=seed, threshold=threshold, n_rows=len(examples), n_harmful=int(sum(labels)),
                             anchor=dict(ANCHOR), judges=reports, paired=paired_tests(labels, scores),
                             agreement=agreement, skipped=skipped)

