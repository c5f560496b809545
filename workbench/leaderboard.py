"""The defense leaderboard: every attacked model under a runs root, whatever stage defended it, side by side.

Read from run folders only (`list_runs` / `open_run`). One row per fine-tuned model that faced an attack:

    attack run on an align run     stage "alignment": the align run's defense (`sft` = plain safety SFT)
    attack run on any other model  stage "none" (e.g. the non-aligned model attacked directly)
    defend run                     stage "fine-tuning": the provider's defense during the fine-tuning
    repair run                     stage "post-fine-tuning": the repair applied to an attack / defend run

Attack = (name, p, n) of the fine-tuning run's AttackSpec (a repair run copies its target's); benign
fine-tuning is `benign_ft`, or `harmful_ft` with p = 0. Rates: HS, HS+, FA (`fa_<task>`), benign and harmful
refusal, each with its 95 % interval and n. Cost, in seconds as recorded in metrics.json:
    defense_s   the defense's own step: the alignment training (align run), the defended fine-tuning (defend
                run; compare with a plain attack's finetune_s for its overhead) or the repair (repair run)
    finetune_s  the user's fine-tuning job as it ran (attack or defend run training)
Neither includes evaluation; a defend run's defense_s adds its data step (a filtration judge scoring the
upload, SAFT's embeddings: `data_defense_seconds`) to the loop; a repair's seconds include loading its models,
a training run's only the loop.

Worst case: the stress reports under the roots (`workbench stress`, DIR/stress.json) add one column per threat
model and budget, "worst HS (<threat>, K=<K>)": the test HS of the validation-best attack retrained on fresh seeds,
mean (max), in the rows of the defense the report stressed; PREFIX_worst_case.md lists every report, and
PREFIX_stress_<threat>_k<K>.<fmt> draws the best-so-far objective against trial per defense. The runs inside a
stress study folder (its trials and retrained seeds) are the report's, not rows of the board. Without stress
reports the board is exactly what it was before they existed. The same holds for the runs of any study folder (one
holding a `*-study.json`: `workbench study ascent`'s cells).
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field, replace
from pathlib import Path

from workbench.attacks import harmful_ratio, training_method
from workbench.evaluation.moderation import JudgeId
from workbench.evaluation.paired import compare_flags, sample_flags, stratified_difference
from workbench.evaluation.power import mcnemar_mde
from workbench.evaluation.rescore import judged_rates, judged_samples
from workbench.plots.export import export_figure
from workbench.plots.leaderboard import figures
from workbench.plots.stress import plot_stress_best_so_far
from workbench.runs import Run, defense_name, list_runs, open_run, run_kind
from workbench.stress.report import StressReport, find_reports
from workbench.tables import markdown_table
from workbench.vocabulary import (
    ALIGNMENT,
    BOARD_STAGES,
    FINE_TUNING,
    NONE,
    POST_FINE_TUNING,
    fmt_rate,
    is_rate,
    short_title,
)

# the file a stress study's folder marks itself with (`stress.study.STUDY_FILE`); the runs inside are the study's own,
# not rows of the board, as are the runs inside a run folder of kind "study" (`workbench study ...`)
STUDY_MARKER = "*-study.json"
HEADLINE = ("hs", "hs_plus", "fa", "refusal_benign", "refusal_harmful")  # "fa" stands for every fa_<task>


@dataclass(frozen=True)
class Row:
    stage: str
    defense: str
    aligned_with: str  # the alignment under the fine-tuned model ("—": not an align run)
    finetune_defense: str  # the fine-tuning-stage defense under it ("—": a plain attack)
    attack: str
    p: float | None
    n: int | None
    seed: int | None
    rates: dict = field(default_factory=dict)  # metric -> {"value", "low", "high", "n", ...} (%)
    defense_s: float | None = None
    finetune_s: float | None = None
    run: str = ""
    method: str | None = None  # the user's fine-tuning: "lora" or "full" (a full-FT attack is far stronger)
    aligned_rates: dict = field(default_factory=dict)  # the align run's own evaluation, before the attack
    aligned_from: str = "—"  # what the align run started from (a registered model, or an earlier align run's defense)
    aligned_from_run: bool = False  # it continued an earlier align run: defense_s is that phase's seconds only

    @property
    def attack_key(self) -> tuple:
        """Rows with equal keys faced the same attack: what a defense is compared with SFT on."""
        return (self.attack, self.p, self.n, self.method, self.seed)


def _worst_key(report: StressReport) -> tuple[str, int]:
    return (report.spec.threat, report.spec.budget)


def _worst_title(key: tuple[str, int]) -> str:
    return f"worst HS ({key[0]}, K={key[1]})"


@dataclass(frozen=True)
class Leaderboard:
    rows: list[Row]
    metrics: list[str]  # rate metrics present, in column order
    judge: JudgeId | None = None  # HS / HS+ by this judge (`build(judge=...)`); None: each run's metrics.json
    worst: tuple[StressReport, ...] = ()  # the stress reports under the roots (module doc)

    def select(self, stages) -> Leaderboard:
        """The rows of these defense stages, plus the plain-SFT rows every stage is compared against."""
        return Leaderboard(_in_stages(self.rows, stages), self.metrics, self.judge, self.worst)

    def worst_columns(self) -> list[tuple[str, int]]:
        """(threat, budget) of each worst-case column, in order."""
        return sorted({_worst_key(r) for r in self.worst if r.best is not None})

    def worst_case(self, row: Row, key: tuple[str, int]) -> StressReport | None:
        """The stress report of the row's defense under that threat model and budget (the latest, if several)."""
        found = [r for r in self.worst if _worst_key(r) == key and r.best is not None and "hs" in r.test
                 and (r.stage, r.defense, r.aligned_with) == (row.stage, row.defense, row.aligned_with)]
        return found[-1] if found else None

    def _worst_cell(self, row: Row, key: tuple[str, int]) -> str:
        r = self.worst_case(row, key)
        return "—" if r is None else f"{r.test['hs'].mean:.0f} ({r.test['hs'].max:.0f})"

    def fa_metric(self) -> str | None:
        return next((m for m in self.metrics if m.startswith("fa_")), None)

    def records(self) -> list[dict]:
        """Flat dicts (CSV columns): each rate m as m, m_low, m_high, m_n."""
        out = []
        for r in self.rows:
            rec = {"stage": r.stage, "defense": r.defense, "aligned_with": r.aligned_with,
                   "finetune_defense": r.finetune_defense, "attack": r.attack, "p": r.p, "n": r.n,
                   "method": r.method, "seed": r.seed}
            for m in self.metrics:
                v = r.rates.get(m) or {}
                rec.update({m: v.get("value"), f"{m}_low": v.get("low"), f"{m}_high": v.get("high"),
                            f"{m}_n": v.get("n")})
            rec.update(defense_s=r.defense_s, finetune_s=r.finetune_s, run=r.run)
            for key in self.worst_columns():
                w = self.worst_case(r, key)
                name = f"worst_hs_{key[0]}_k{key[1]}"
                rec.update({name: w.test["hs"].mean if w else None, f"{name}_max": w.test["hs"].max if w else None})
            out.append(rec)
        return out

    def to_csv(self) -> str:
        recs = self.records()
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(recs[0]) if recs else ["stage"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(recs)
        return buf.getvalue()

    def to_markdown(self) -> str:
        worst = self.worst_columns()
        head = ["attack", "p", "method", "stage", "defense", "aligned with", "fine-tuned with",
                *map(short_title, self.metrics), *map(_worst_title, worst), "defense s", "fine-tune s", "run"]
        return markdown_table(head, ([r.attack, _num(r.p), r.method or "—", r.stage, r.defense, r.aligned_with,
                                      r.finetune_defense, *[fmt_rate(r.rates.get(m)) for m in self.metrics],
                                      *[self._worst_cell(r, k) for k in worst],
                                      _num(r.defense_s), _num(r.finetune_s), Path(r.run).name] for r in self.rows))

    def worst_case_markdown(self) -> str:
        """Every stress report: the defense, its threat model and budget, the validation maximum next to the test
        numbers of the retrained worst case (mean and max over its seeds), and the configuration."""
        head = ["stage", "defense", "aligned with", "threat", "K", "validation max", "test P(harm) mean (max)",
                "HS mean (max)", "HS+ mean (max)", "HS judge 2 mean (max)", "refusal harmful mean", "FA mean",
                "worst configuration"]
        rows = []
        for r in sorted(self.worst, key=lambda r: (_worst_key(r), BOARD_STAGES.index(r.stage), r.defense)):
            t, b = r.test, r.best
            fa = next((k for k in t if k.startswith("fa_")), None)
            config = "no trial kept FA at the floor" if b is None else ", ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in b.params.items())
            rows.append([r.stage, r.defense, r.aligned_with, r.spec.threat, r.spec.budget,
                         "—" if b is None else f"{b.objective:.3f}", _spread(t, "harm_prob", 3), _spread(t, "hs"),
                         _spread(t, "hs_plus"), _spread(t, "second_hs"),
                         f"{t['refusal_harmful'].mean:.0f}" if "refusal_harmful" in t else "—",
                         f"{t[fa].mean:.0f}" if fa else "—", config])
        note = ("\nValidation max: the study's objective on the validation prompts it chose the configuration on "
                "(biased upwards). Test: that configuration retrained on fresh seeds, scored on the held-out test "
                "sets; HS, HS+, refusal and FA in %.\n")
        return markdown_table(head, rows) + note

    def alignment_markdown(self) -> str:
        """Alignment-stage defenses before and after the attack, one row per (attack, p, defense): the aligned
        model's own refusal / FA next to the attacked model's rates; alignment seconds relative to plain SFT."""
        rows = [r for r in self.rows if r.stage == ALIGNMENT]
        fa = self.fa_metric()
        sft_s = {r.attack_key: r.defense_s for r in rows if r.defense == "sft"}
        before = [m for m in ("refusal_harmful", "refusal_benign", fa) if m]
        after = [m for m in ("hs", "hs_plus", "refusal_harmful", "refusal_benign", fa) if m]
        head = ["attack", "p", "defense", "starts from", *[f"aligned: {short_title(m)}" for m in before],
                "align s (× sft)", *[f"attacked: {short_title(m)}" for m in after]]
        table = []
        for r in rows:
            base_s = sft_s.get(r.attack_key)
            if r.defense_s is None or not base_s:
                cost = _num(r.defense_s)
            else:
                cost = f"{r.defense_s:.0f} ({r.defense_s / base_s:.2f}×)"
            if r.aligned_from_run and r.defense_s is not None:  # a phase on top of an earlier alignment
                cost = f"{r.aligned_from} + {cost}"
            table.append([r.attack, _num(r.p), r.defense, r.aligned_from,
                          *[_short_rate(r.aligned_rates.get(m)) for m in before], cost,
                          *[_short_rate(r.rates.get(m)) for m in after]])
        return markdown_table(head, table)

    def vs_sft(self, metrics: tuple[str, ...] = ("hs", "hs_plus", "refusal_harmful"), alpha: float = 0.05,
               power: float = 0.8) -> list[dict]:
        """Every defended row against the plain-SFT row of the same attack (attack, p, n, method, seed), paired
        on the prompts both answered (`evaluation.paired`): difference in points, its 95 % paired-bootstrap
        interval, the discordant counts and the exact McNemar p. A defense attacked under several seeds also gets
        one combined line with the seeds as strata (`stratified_difference`). Every line states the minimum
        detectable difference of the test at its n (`evaluation.power`, Connor 1987), planned from the
        discordance rate pooled over the whole board for that metric, not from the line's own outcome. Reads
        each run's samples.jsonl."""
        sft = {r.attack_key: r for r in self.rows if r.stage == ALIGNMENT and r.defense == "sft"}

        def base_of(r: Row) -> Row | None:
            base = sft.get(r.attack_key)
            return None if base is None or base is r or r.stage == NONE else base  # NONE: a non-aligned model

        return self._paired(base_of, metrics, alpha, power)

    def vs_attack(self, reference: str = "harmful_ft", p: float | None = 0.1,
                  metrics: tuple[str, ...] = ("hs", "hs_plus", "refusal_harmful"), alpha: float = 0.05,
                  power: float = 0.8) -> list[dict]:
        """Every other attack (another kind, or the reference kind at another p) against the `reference` attack at
        harmful ratio `p` on the same model: same stage, defenses, fine-tuning method and seed; paired on the prompts
        both attacked models answered, as `vs_sft`. What docs/attacks.md compares each attack kind with."""
        def model_key(r: Row) -> tuple:
            return (r.stage, r.defense, r.aligned_with, r.finetune_defense, r.method, r.seed)

        refs = {model_key(r): r for r in self.rows if r.attack == reference and (p is None or r.p == p)}

        def base_of(r: Row) -> Row | None:
            base = refs.get(model_key(r))
            return None if base is None or base is r else base

        return self._paired(base_of, metrics, alpha, power)

    def _paired(self, base_of, metrics: tuple[str, ...], alpha: float, power: float) -> list[dict]:
        """Each row against the row `base_of` pairs it with (None: not compared); see `vs_sft`."""
        samples: dict[str, list[dict]] = {}

        def read(run: str) -> list[dict]:
            if run not in samples:
                samples[run] = judged_samples(open_run(run), self.judge.version if self.judge else None)
            return samples[run]

        out: list[dict] = []
        strata: dict[tuple, list[tuple]] = {}
        for r in self.rows:
            base = base_of(r)
            if base is None:
                continue
            for m in metrics:
                if m in r.rates and m in base.rates:
                    flags, base_flags = sample_flags(read(r.run), m), sample_flags(read(base.run), m)
                    d = compare_flags(flags, base_flags, m)
                    out.append({"attack": r.attack, "p": r.p, "stage": r.stage, "defense": r.defense, "seed": r.seed,
                                "metric": m, **d.to_dict(), "run": r.run, "base_run": base.run})
                    key = (r.attack, r.p, r.n, r.method, r.stage, r.defense, m)
                    strata.setdefault(key, []).append((r.seed, flags, base_flags))
        for (attack, p, _, _, stage, defense, m), items in strata.items():
            seeds = sorted({seed for seed, _, _ in items}, key=str)
            if len(seeds) > 1:
                d = stratified_difference([(a, b) for _, a, b in items], m)
                label = "+".join(map(str, seeds))
                out.append({"attack": attack, "p": p, "stage": stage, "defense": defense, "seed": label, "metric": m,
                            **d.to_dict(), "run": f"seeds {label}", "base_run": ""})
        for m in metrics:
            single = [d for d in out if d["metric"] == m and d["strata"] == 1]
            pairs = sum(d["n"] for d in single)
            pooled = sum(d["only_a"] + d["only_b"] for d in single) / pairs if pairs else 0.0
            for d in (d for d in out if d["metric"] == m):
                mde = mcnemar_mde(d["n"], pooled, alpha, power) if pooled > 0 else None
                d.update(mde=None if mde is None else 100.0 * mde, discordance_pooled=pooled)
        return out

    def vs_sft_markdown(self, metrics: tuple[str, ...] = ("hs", "hs_plus", "refusal_harmful"),
                        rows: list[dict] | None = None) -> str:
        """`vs_sft` as a table, one line per defended run (and per defense over its seeds); pass `rows` when
        `vs_sft(metrics)` was computed."""
        rows = self.vs_sft(metrics) if rows is None else rows
        return _paired_markdown(rows, metrics, "SFT", "only defense / only SFT")

    def vs_attack_markdown(self, reference: str = "harmful_ft", p: float | None = 0.1,
                           metrics: tuple[str, ...] = ("hs", "hs_plus", "refusal_harmful"),
                           rows: list[dict] | None = None) -> str:
        """`vs_attack` as a table, one line per attacked run (and per attack over its seeds)."""
        rows = self.vs_attack(reference, p, metrics) if rows is None else rows
        label = reference if p is None else f"{reference} p = {p:g}"
        return _paired_markdown(rows, metrics, label, f"only this attack / only {label}")


def _paired_markdown(rows: list[dict], metrics: tuple[str, ...], base: str, discordant: str) -> str:
    head = ["attack", "p", "stage", "defense", "seed",
            *[f"{short_title(m)} − {base} [95 %] ({discordant}; McNemar p; MDE)" for m in metrics]]
    groups: dict[tuple, dict] = {}
    for d in rows:
        key = (d["attack"], d["p"], d["stage"], d["defense"], d["seed"], d["run"])
        groups.setdefault(key, {})[d["metric"]] = d
    table = []
    for (attack, p, stage, defense, seed, _), by_metric in groups.items():
        cells = [f"{d['value']:+.0f} [{d['low']:+.0f}, {d['high']:+.0f}] ({d['only_a']}/{d['only_b']}; "
                 f"p = {d['p_value']:.2g}; {_mde(d['mde'])})" if d else "—"
                 for d in (by_metric.get(m) for m in metrics)]
        table.append([attack, _num(p), stage, defense, str(seed), *cells])
    note = ("\nMDE: the smallest difference (points) the exact McNemar test detects with power 0.8 at α = 0.05 "
            "and that line's n, planned from the discordance rate pooled over this board (Connor 1987); a "
            "difference below it is not evidence of no effect. Lines with seeds joined by + combine those "
            "seeds as strata.\n")
    return markdown_table(head, table) + note


def _spread(test: dict, metric: str, decimals: int = 0) -> str:
    """"mean (max)" of a stress report's test metric over its seeds."""
    if metric not in test:
        return "—"
    return f"{test[metric].mean:.{decimals}f} ({test[metric].max:.{decimals}f})"


def _mde(value: float | None) -> str:
    return "MDE —" if value is None else f"MDE {value:.0f}"


def _in_stages(rows: list[Row], stages) -> list[Row]:
    """The rows of these defense stages, plus the plain-SFT rows every stage is compared against."""
    return [r for r in rows if r.stage in stages or (r.stage == ALIGNMENT and r.defense == "sft")]


def _short_rate(v) -> str:
    """"51 [41–61]" (%, 95 % interval); n is the same within a table and said next to it."""
    return fmt_rate(v, decimals=0, percent=False, n=False)


def _num(x) -> str:
    return "—" if x is None else f"{x:g}"


def _seconds(run: Run | None, key: str) -> float | None:
    if run is None:
        return None
    return (run.metrics.get(key) or {}).get(f"{key}_seconds")


def _attack_of(run: Run) -> tuple[str, float | None, int | None]:
    attack = run.attack
    if attack is None:
        return "unknown", None, None
    return attack.name or "unknown", harmful_ratio(attack), attack.data.n


def _method_of(run: Run) -> str | None:
    return training_method(run.attack) if run.attack is not None else None


class _Index:
    """Run lookup by the model reference a config records (absolute folder), within the root or outside it."""

    def __init__(self, runs: list[Run]):
        self.by_path = {r.path.resolve(): r for r in runs}
        self.by_name = {r.path.name: r for r in runs}  # run folder names are unique (kind-name-timestamp)

    def get(self, ref) -> Run | None:
        if not ref or not Path(str(ref)).is_absolute():
            return None  # a registered model name
        p = Path(str(ref))
        run = self.by_path.get(p.resolve())
        if run is None and run_kind(p) is not None:
            run = open_run(p)
        if run is None:  # the root was moved or archived (`workbench runs archive`): same folder, new place
            run = self.by_name.get(p.name)
        return run


def _fine_tuning_row(run: Run, index: _Index) -> Row:
    """An attack or defend run: the attacked model itself."""
    base = index.get(run.base)
    aligned = defense_name(base) if base is not None and base.kind == "align" else "—"
    if run.kind == "defend":
        train = run.metrics.get("train") or {}
        cost = (None if train.get("train_seconds") is None
                else train["train_seconds"] + train.get("data_defense_seconds", 0))
        stage, defense, ft_defense = FINE_TUNING, defense_name(run), defense_name(run)
    elif base is not None and base.kind == "align":
        stage, defense, ft_defense, cost = ALIGNMENT, aligned, "—", _seconds(base, "train")
    else:
        stage, defense, ft_defense, cost = NONE, "none", "—", None
    attack, p, n = _attack_of(run)
    aligned_rates, aligned_from, from_run = {}, "—", False
    if base is not None and base.kind == "align":
        aligned_rates = {k: v for k, v in base.metrics.items() if is_rate(v)}
        under = index.get(base.base)
        from_run = under is not None and under.kind == "align"
        aligned_from = defense_name(under) if under is not None else Path(str(base.base)).name
    return Row(stage, defense, aligned, ft_defense, attack, p, n, run.seed,
               {k: v for k, v in run.metrics.items() if is_rate(v)}, cost, _seconds(run, "train"), str(run.path),
               _method_of(run), aligned_rates, aligned_from, from_run)


def _repair_row(run: Run, index: _Index) -> Row:
    target = index.get(run.base)
    under = _fine_tuning_row(target, index) if target is not None and target.kind in ("attack", "defend") else None
    attack, p, n = _attack_of(run) if run.attack is not None else (
        (under.attack, under.p, under.n) if under else ("unknown", None, None))
    return Row(POST_FINE_TUNING, defense_name(run), under.aligned_with if under else "—",
               under.finetune_defense if under else "—", attack, p, n, run.seed,
               {k: v for k, v in run.metrics.items() if is_rate(v)}, _seconds(run, "repair"),
               under.finetune_s if under else None, str(run.path), under.method if under else _method_of(run))


def build(root: str | Path | list[str | Path], stages: list[str] | None = None,
          judge: str | None = None) -> Leaderboard:
    """Every attack / defend / repair run under `root` (one runs root, or several read as one board) as a
    leaderboard row, grouped by attack. `stages` (canonical names, `vocabulary.BOARD_STAGES`) keeps the rows of
    those defense stages, plus the plain-SFT rows every stage is compared against. `judge` (a `get_judge` spec)
    takes HS / HS+ from that judge's scores (`evaluation.rescore.judged_rates`: the run's metrics.json when that
    judge scored it, else its sidecar; an error naming `workbench judge rescore` when some are missing)."""
    roots = [Path(r) for r in root] if isinstance(root, (list, tuple)) else [Path(root)]
    unknown = set(stages or ()) - set(BOARD_STAGES)
    if unknown:  # before any run folder is read
        raise ValueError(f"unknown stage(s) {', '.join(sorted(unknown))}; use {', '.join(BOARD_STAGES)} "
                         f"(`vocabulary.parse_stage` reads the older spellings)")
    for r in roots:
        if not r.is_dir():
            raise ValueError(f"--runs {r}: no such folder (a runs root holding attack / defend / repair runs)")
    # a study's runs (stress trials, ascent cells evaluated on the validation split only) are its own
    found = [run for r in roots for run in list_runs(r)]
    studies = [cfg.parent.resolve() for r in roots for cfg in r.rglob(STUDY_MARKER)]
    studies += [run.path.resolve() for run in found if run.kind == "study"]
    runs = [run for run in found if not any(run.path.resolve().is_relative_to(s) for s in studies)]
    index = _Index(runs)
    rows = [_repair_row(r, index) if r.kind == "repair" else _fine_tuning_row(r, index)
            for r in runs if r.kind in ("attack", "defend", "repair")]
    rows = _in_stages(rows, stages) if stages else rows
    if not rows:
        raise ValueError(f"no attacked models under {', '.join(map(str, roots))}: the leaderboard reads attack, "
                         f"defend and repair runs (`workbench attack`, `workbench attack --defense`, "
                         f"`workbench repair`)")
    ident = None
    if judge is not None:
        ident, scored = judged_rates([r.run for r in rows], judge, roots)
        rows = [replace(r, rates={**{k: v for k, v in r.rates.items() if k not in ("hs", "hs_plus")},
                                  **scored[r.run]}) for r in rows]
    present = {m for r in rows for m in r.rates}
    metrics = [m for h in HEADLINE for m in sorted(present) if m == h or (h == "fa" and m.startswith("fa_"))]
    metrics += sorted(present - set(metrics))

    def key(r: Row):
        hs = (r.rates.get("hs") or {}).get("value")
        return (r.attack, r.p if r.p is not None else -1, r.n or 0, r.method or "", BOARD_STAGES.index(r.stage),
                hs if hs is not None else float("inf"), r.defense)

    return Leaderboard(sorted(rows, key=key), metrics, ident, tuple(find_reports(roots)))


def write(board: Leaderboard, prefix: str | Path, formats=("html", "png")) -> list[Path]:
    """PREFIX.md, PREFIX.csv, the grouped bars PREFIX_bars.<fmt> and the HS-vs-FA figure PREFIX_hs_fa.<fmt>
    (when both metrics are present); with alignment-stage defenses besides SFT, PREFIX_alignment.md (each aligned
    model before and after the attack, `Leaderboard.alignment_markdown`); with any defended row that has a plain-SFT
    row of the same attack, PREFIX_vs_sft.md (paired differences on the same prompts, `Leaderboard.vs_sft`); with
    other attack kinds on a model that also faced harmful_ft p = 0.1, PREFIX_vs_attack.md (`Leaderboard.vs_attack`).
    HTML pages share plotly.min.js beside them (a docs folder holds many)."""

    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    md, table = prefix.with_name(prefix.name + ".md"), prefix.with_name(prefix.name + ".csv")
    md.write_text((f"HS and HS+ by judge {board.judge.name} ({board.judge.version}).\n\n" if board.judge else "")
                  + board.to_markdown())
    table.write_text(board.to_csv())
    written = [md, table]
    if any(r.stage == ALIGNMENT and r.defense != "sft" for r in board.rows):  # defenses to put before / after
        aligned = prefix.with_name(prefix.name + "_alignment.md")
        aligned.write_text(board.alignment_markdown())
        written.append(aligned)
    paired = board.vs_sft()  # defended rows with a plain-SFT row of the same attack: paired differences
    if paired:
        path = prefix.with_name(prefix.name + "_vs_sft.md")
        path.write_text(board.vs_sft_markdown(rows=paired))
        written.append(path)
    vs_attack = board.vs_attack()  # other attack kinds on the same models: paired against harmful_ft p = 0.1
    if vs_attack:
        path = prefix.with_name(prefix.name + "_vs_attack.md")
        path.write_text(board.vs_attack_markdown(rows=vs_attack))
        written.append(path)
    for name, fig in figures(board).items():
        written += export_figure(fig, prefix.parent, f"{prefix.name}_{name}", formats, plotlyjs="shared")
    if board.worst:
        worst = prefix.with_name(prefix.name + "_worst_case.md")
        worst.write_text(board.worst_case_markdown())
        written.append(worst)
        for threat, budget in sorted({_worst_key(r) for r in board.worst}):
            reports = [r for r in board.worst if _worst_key(r) == (threat, budget)]
            fig = plot_stress_best_so_far({r.label: r.objectives() for r in reports}, reports[0].spec.objective,
                                          f"best-so-far worst case per defense: {threat} threat model, K = {budget}")
            written += export_figure(fig, prefix.parent, f"{prefix.name}_stress_{threat}_k{budget}", formats,
                                     plotlyjs="shared")
    return written
