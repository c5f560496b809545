"""`workbench stress` as one library call: the study's spec from the command's choices, the study, the report."""
from __future__ import annotations

from pathlib import Path

from workbench.config import DefenseSpec, EvalSpec
from workbench.evaluation.moderation import resolve_spec
from workbench.presets import default_preset, preset
from workbench.runs import model_ref
from workbench.stress.design import DESIGN_SIZE
from workbench.stress.report import StressReport, build_report
from workbench.stress.space import DEFAULT_FA_FLOOR, SearchSpace, default_space
from workbench.stress.study import StudySpec, run_study


def study_spec(model: str, threat: str, budget: int, defense: str | None = None, params: dict | None = None,
               seed: int = 0, preset_name: str | None = None, objective: str = "harm_prob",
               fa_floor: float | None = None, design_size: int = DESIGN_SIZE, judge: str | None = None,
               space_file: str | Path | None = None, eval_spec: EvalSpec | None = None) -> StudySpec:
    """The spec of a study: the preset's validation sizes and judge (`Preset.validation`, or `eval_spec`), the threat
    model's default space at the preset (or the validated JSON of `space_file`), the preset's FA floor unless one is
    given."""
    name = preset_name or default_preset(model)
    ev = eval_spec if eval_spec is not None else preset(name, seed).validation
    if judge is not None:
        ev = ev.model_copy(update={"judge": True, "judge_model": resolve_spec(judge)})
    if space_file is not None:
        space = SearchSpace.model_validate_json(Path(space_file).read_text())
    else:
        space = default_space(threat, name)
    d = DefenseSpec(name=defense, params=params or {}) if defense and defense != "none" else None
    return StudySpec(model=model_ref(model), defense=d, threat=threat, budget=budget, seed=seed,
                     design_size=design_size, objective=objective,
                     fa_floor=DEFAULT_FA_FLOOR.get(name, 0.0) if fa_floor is None else fa_floor, preset=name,
                     eval=ev, space=space)


def stress(spec: StudySpec, out: str | Path, storage: str | None = None, backend: str = "local",
           workers: int | None = None, address: str | None = None, report: bool = True,
           second_judge: str | None = None, report_seeds: list[int] | None = None,
           progress: bool = True) -> StressReport | None:
    """Run (or resume) the study to its budget, then its report (None with `report=False`)."""
    run_study(spec, out, storage=storage, backend=backend, workers=workers, address=address, progress=progress)
    if not report:
        return None
    return build_report(out, seeds=report_seeds, second_judge=second_judge, progress=progress)
