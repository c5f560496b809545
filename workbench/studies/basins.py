"""Do alignment-stage defenses widen the safety basin, or only lower the harmful loss? (Future Direction II)

    workbench study basins --runs results --directions 8 --seed 0 --out runs/study-basins

1. pair      every aligned model under the runs roots with its attack run(s) at harmful ratio p (`basins_pairs`)
2. measure   per aligned model: VISAGE along N shared random directions, along −∇ L_harm, along the aligned →
             attacked line, and L_harm itself (`basins_measure`); one result file per model, `models/<key>.json`
3. report    per predictor, Spearman ρ with post-attack HS across the models and a bootstrap 95 % interval over
             models (`basins_stats`); `basins.json` (`BasinsResult`), `report.md`, `metrics.json` and figures/

The study folder is one run folder (kind "analysis", analysis "study-basins") staged like every run: an interrupted
study keeps its staging folder, `<out parent>/.incomplete/analysis-study-basins-<spec hash>/`, and the same command
(same spec and seed) resumes it, skipping every model whose result file is there. It is published to `--out` when
the last model is done.

A predictor of robustness correlates *negatively* with HS (a wider or safer basin, a higher harmful loss → a lower
post-attack HS). "Widen the basin" is supported when the VISAGE predictors order the models by HS at least as well
as the harmful loss does; "only lower the harmful loss" when L_harm does and the basin predictors do not.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from workbench.config import Spec
from workbench.plots.basins import figures
from workbench.plots.export import export_all
from workbench.runs import RunWriter, list_runs, write_json
from workbench.steps import begin_step
from workbench.studies.basins_measure import MeasureSpec, ModelBasin, direction_seeds, measure
from workbench.studies.basins_pairs import Pairing, find_pairs
from workbench.studies.basins_stats import RankCorrelation, rank_correlation
from workbench.tables import markdown_table

STUDY = "study-basins"  # the analysis name its run folder records
RESULT_FILE = "basins.json"
MODELS_DIR = "models"
REATTACKS = "reattacks"  # scratch: re-trained attacked models, each deleted once its line is measured


class BasinsSpec(Spec):
    """The whole study: which runs, which attack, how each model is measured, how the correlations are bootstrapped."""

    roots: list[str]
    attack: str = "harmful_ft"
    p: float | None = 0.1  # harmful ratio of the kept attack runs (None: any)
    attack_seed: int | None = None  # seed of the kept attack runs (None: any; several are averaged)
    judge: str | None = None  # HS by this judge (its rescored sidecars), else each run's metrics.json
    reattack: bool = False  # re-train attack runs archived without weights, for the line (`basins_measure`)
    measure: MeasureSpec = Field(default_factory=MeasureSpec)
    n_boot: int = Field(2000, ge=100)
    level: float = Field(0.95, gt=0, lt=1)


@dataclass(frozen=True)
class Predictor:
    title: str
    value: Callable[[ModelBasin], float | None]


def _line(get: Callable) -> Callable[[ModelBasin], float | None]:
    return lambda m: get(m.line) if m.line is not None else None


PREDICTORS: dict[str, Predictor] = {
    "visage_random": Predictor("VISAGE, mean over random directions", lambda m: m.visage_random),
    "width_random": Predictor("basin width, mean over random directions", lambda m: m.width_random),
    "visage_gradient": Predictor("VISAGE along −∇ harmful loss", lambda m: m.gradient.visage),
    "width_gradient": Predictor("basin width along −∇ harmful loss", lambda m: m.gradient.width),
    "harmful_loss": Predictor("harmful loss at the aligned weights", lambda m: m.harmful_loss),
    "line_visage": Predictor("VISAGE along the aligned → attacked line", _line(lambda s: s.visage)),
    "line_edge": Predictor("line basin edge α (1 = attacked)", _line(lambda s: s.basin[1])),
    "line_safety_at_1": Predictor("probe safety at α = 1 (the attacked weights)", _line(lambda s: s.safety_at(1.0))),
    "safety_at_origin": Predictor("aligned model's probe safety (control)", lambda m: m.safety_at_origin),
}


class PredictorResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    title: str
    values: list[float | None]  # per model, in `BasinsResult.models` order (None: not measured for that model)
    correlation: RankCorrelation  # Spearman ρ with post-attack HS over the models that have a value


class BasinsResult(BaseModel):
    """The study's typed result (`basins.json`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: BasinsSpec
    seed: int
    direction_seeds: list[int]
    judge: str | None  # the judge version HS was read under (None: each attack run's metrics.json)
    models: list[ModelBasin]
    predictors: list[PredictorResult]
    skipped: dict[str, str] = Field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return [m.label for m in self.models]

    @property
    def hs(self) -> list[float]:
        return [m.hs for m in self.models]

    def predictor(self, name: str) -> PredictorResult:
        return next(p for p in self.predictors if p.name == name)

    def headline(self) -> dict:
        return {"n_models": len(self.models), "direction_seeds": self.direction_seeds,
                **{p.name: p.correlation.model_dump() for p in self.predictors}}

    def markdown(self) -> str:
        """Two tables: the correlations, then every model's HS and predictor values."""
        def num(v, fmt=".3f"):
            return "—" if v is None else f"{v:{fmt}}"

        corr = markdown_table(
            ["predictor", "Spearman ρ with post-attack HS", f"{self.spec.level:.0%} bootstrap interval", "n models",
             "p"],
            ([p.title, num(p.correlation.rho, "+.2f"),
              "—" if p.correlation.low is None else f"[{p.correlation.low:+.2f}, {p.correlation.high:+.2f}]",
              p.correlation.n, num(p.correlation.p_value, ".2g")] for p in self.predictors))
        per_model = markdown_table(
            ["model", "post-attack HS %", *[p.name for p in self.predictors]],
            ([m.label, f"{m.hs:.1f}", *[num(p.values[i]) for p in self.predictors]]
             for i, m in enumerate(self.models)))
        notes = [p for p in self.predictors if p.correlation.note]
        note = "".join(f"\n- {p.title}: {p.correlation.note}" for p in notes)
        return corr + ("\n" + note.strip() + "\n" if note else "") + "\n" + per_model


def report(spec: BasinsSpec, seed: int, pairing: Pairing, models: list[ModelBasin]) -> BasinsResult:
    """The correlations of every predictor with post-attack HS over the measured models."""
    predictors = []
    for i, (name, pred) in enumerate(PREDICTORS.items()):
        values = [pred.value(m) for m in models]
        have = [(v, m.hs) for v, m in zip(values, models, strict=True) if v is not None]
        corr = rank_correlation([v for v, _ in have], [h for _, h in have], spec.n_boot, seed + i, spec.level)
        predictors.append(PredictorResult(name=name, title=pred.title, values=values, correlation=corr))
    return BasinsResult(spec=spec, seed=seed, direction_seeds=direction_seeds(seed, spec.measure.n_directions),
                        judge=pairing.judge, models=models, predictors=predictors, skipped=pairing.skipped)


def model_file(folder: str | Path, key: str) -> Path:
    return Path(folder) / MODELS_DIR / f"{key}.json"


def run_basins(spec: BasinsSpec, out: str | Path, seed: int = 0, progress: bool = True,
               formats=("html", "png"), resume: bool = True) -> Path:
    """Pair, measure every model not measured yet, report (module doc). Returns the published study folder.
    `resume=False` discards what an interrupted run of the same spec and seed had measured."""
    out = Path(out)
    pairing = find_pairs(spec.roots, spec.attack, spec.p, spec.attack_seed, spec.judge)  # errors before any work
    begin_step(seed)
    cfg = {"analysis": STUDY, "params": spec.model_dump(mode="json")}
    with RunWriter(out.parent, "analysis", STUDY, cfg, seed=seed, resume=resume, final=out) as run:
        write_json(run.path / "pairs.json", asdict(pairing))
        measured = []
        bar = tqdm(pairing.models, desc="basins", unit="model", disable=not progress, dynamic_ncols=True)
        for entry in bar:
            path = model_file(run.path, entry.key)
            if path.is_file():  # finished before an interruption
                measured.append(ModelBasin.model_validate_json(path.read_text()))
                continue
            bar.set_postfix_str(entry.label)
            result = measure(entry, spec.measure, seed, progress, run.path / REATTACKS if spec.reattack else None)
            write_json(path, result.model_dump(mode="json"))
            measured.append(result)
        shutil.rmtree(run.path / REATTACKS, ignore_errors=True)
        result = report(spec, seed, pairing, measured)
        write_json(run.path / RESULT_FILE, result.model_dump(mode="json"))
        run.write_metrics(result.headline())
        (run.path / "report.md").write_text(result.markdown(), encoding="utf-8")
        export_all(figures(result), run.path / "figures", formats)
    return run.final_path


def read_result(folder: str | Path) -> BasinsResult:
    """The typed result of a finished basin study folder; ValueError when it holds none."""
    path = Path(folder) / RESULT_FILE
    if not path.is_file():
        raise ValueError(f"{folder} holds no basin study result ({RESULT_FILE}); run `workbench study basins` first")
    return BasinsResult.model_validate_json(path.read_text(encoding="utf-8"))


def find_studies(root: str | Path) -> list[Path]:
    """Finished basin study folders under `root`, oldest first."""
    return [r.path for r in list_runs(root, "analysis")
            if r.spec.analysis == STUDY and (r.path / RESULT_FILE).is_file()]
