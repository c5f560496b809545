"""Question 3 of the survey's open questions (Future Direction III): a gradient-ascent term that does not collapse
the model. `workbench study ascent`.

For each ascent kind (−CE, the unbounded control; −log(1+CE) as RepNoise; NPO; unlikelihood:
`defenses.alignment.ascent_losses`) and each weight of the grid, and once for plain SFT (the `sft` control):

    align       the preset's alignment mix with the `ascent` defense (SFT + weight · ascent term on harmful pairs)
    collapse    the aligned model on validation benign pairs: incoherent answers, non-word share, benign
                perplexity (`analysis.collapse`)
    attack      the preset's attack (harmful fine-tuning at ratio p) on the aligned model
    validation  the attacked model on the validation split: HS, HS+, FA (`steps.evaluate_validation`)

then per kind the weight with the lowest validation HS within the collapse and FA limits (`ascent_summary.choose`),
and only then the chosen cells and `sft` on the test sets (`steps.evaluate_model`, the preset's test sizes). Every
step is an ordinary run folder under DIR/cells/<key>/<step>/ (`ascent_spec`), skipped when finished, so a rerun
resumes and a larger grid reuses the cells it shares; an interrupted training step continues from its checkpoint
(`RunWriter` staging, `--resume` semantics). One failing cell is reported and the others go on.
"""
from __future__ import annotations

import traceback
from pathlib import Path

from tqdm.auto import tqdm

from workbench import steps
from workbench.config import DefenseSpec, EvalSpec
from workbench.plots.export import export_all
from workbench.plots.study_ascent import figures
from workbench.presets import Preset, preset
from workbench.runs import open_run, write_json
from workbench.stress.study import train_uids
from workbench.studies.ascent_spec import STUDY_FILE, SUMMARY_FILE, AscentStudySpec, Cell, step_root
from workbench.studies.ascent_summary import AscentSummary, latest, summarise


def silent(spec: EvalSpec) -> EvalSpec:
    """No evaluation in a training step: the study evaluates on the validation split, and on test only after the
    choice."""
    return spec.model_copy(update={"n_harmful": 0, "n_benign": 0, "n_task": 0})


def check_folder(spec: AscentStudySpec, out: Path) -> None:
    """Write the spec, or check it against the recorded one: a study folder holds one model, p, seed, preset, β."""
    path = out / STUDY_FILE
    if path.is_file():
        old = AscentStudySpec.model_validate_json(path.read_text())
        if old.identity() != spec.identity():
            diff = sorted(k for k, v in spec.identity().items() if old.identity()[k] != v)
            raise ValueError(f"{out} holds an ascent study with other {', '.join(diff)}; choose a new --out, or "
                             f"rerun with the recorded settings (the kinds, weights and limits may change)")
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, spec.model_dump())


def done(root: Path) -> Path | None:
    run = latest(root)
    return None if run is None else run.path


def run_cell(spec: AscentStudySpec, pr: Preset, cell: Cell, out: Path, progress: bool = False) -> None:
    """Align → collapse → attack → validation for one cell, each step skipped when its run folder is finished."""

    def root(step: str) -> Path:
        return step_root(out, cell, step)

    aligned = done(root("align"))
    if aligned is None:
        defense = (DefenseSpec(name="sft") if cell.is_baseline else
                   DefenseSpec(name="ascent", params={"kind": cell.kind, "weight": cell.weight, "beta": spec.beta}))
        align = pr.align.model_copy(update={"defense": defense})
        aligned = steps.align(align, spec.model, root("align"), spec.seed, silent(pr.eval), resume=True,
                              progress=progress)
    if done(root("collapse")) is None:
        gen = pr.validation.generation
        params = {"preset": spec.preset, "n_benign": max(1, pr.validation.n_benign),
                  "max_new_tokens": gen.max_new_tokens, "batch_size": gen.batch_size, "max_len": pr.align.train.max_len}
        steps.run_analysis("collapse", str(aligned), None, spec.seed, root("collapse") / "analysis-collapse", params,
                           formats=(), progress=progress)
    attacked = done(root("attack"))
    if attacked is None:
        attack = pr.attack.model_copy(update={"data": pr.attack.data.model_copy(update={"p": spec.p})})
        attacked = steps.attack(attack, str(aligned), root("attack"), spec.seed, silent(pr.eval), resume=True,
                                progress=progress)
    if done(root("validation")) is None:
        steps.evaluate_validation(str(attacked), root("validation"), spec.preset, spec.seed, pr.validation,
                                  progress=progress, fa_unseen_by=train_uids(open_run(attacked)))


def run_test(pr: Preset, spec: AscentStudySpec, cell: Cell, out: Path, progress: bool = False) -> None:
    if done(step_root(out, cell, "test")) is None:
        attacked = done(step_root(out, cell, "attack"))
        if attacked is None:
            raise ValueError(f"cell {cell.key} has no finished attack run to test")
        steps.evaluate_model(str(attacked), step_root(out, cell, "test"), spec.seed, pr.eval,
                             name=f"{cell.key}-test", progress=progress)


def run_study(spec: AscentStudySpec, out: str | Path, progress: bool = True,
              formats: tuple[str, ...] = ("html", "png")) -> AscentSummary:
    """Run (or resume) the study in `out`; writes DIR/ascent-summary.json and DIR/figures, returns the summary.
    A cell that raises is recorded in DIR/ascent-status.json and left out of the choice."""
    out = Path(out)
    pr = preset(spec.preset, spec.seed)
    check_folder(spec, out)
    failed: dict[str, str] = {}
    for cell in tqdm(spec.cells(), desc="ascent study", unit="cell", disable=not progress):
        try:
            run_cell(spec, pr, cell, out, progress=progress)
        except Exception as err:  # one failing cell is reported, never fatal to the study
            failed[cell.key] = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}"
    task = pr.validation.task if pr.validation.n_task else None
    summary = summarise(out, spec, task)
    keys = {"sft", *(c.key for c in summary.chosen if c.key)}
    for cell in spec.cells():
        if cell.key in keys and cell.key not in failed:
            try:
                run_test(pr, spec, cell, out, progress=progress)
            except Exception as err:
                failed[cell.key] = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}"
    summary = summarise(out, spec, task)
    write_json(out / "ascent-status.json", {"failed": failed})
    write_json(out / SUMMARY_FILE, summary.model_dump(mode="json"))
    if formats:
        export_all(figures(summary), out / "figures", formats)
    return summary
