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
and only then the chosen cells and `sft` on the test sets (`steps.evaluate_model`, the preset's test sizes).

The study is one run folder (kind "study", name "ascent": `workbench figures` and the explorer's Studies tab find it
through `workbench.studies.STUDIES`) with every step an ordinary run folder inside, DIR/cells/<key>/<step>/
(`ascent_spec`). It is staged like every run, in `<out parent>/.incomplete/study-ascent-<hash>/`, the hash of what
the cells depend on (model, p, seed, preset, β: `AscentStudySpec.identity`), so rerunning the command resumes it,
skipping every finished step, and a grid grown or limits changed before it finished reuse the cells it shares; an
interrupted training step continues from its checkpoint. It is published to `--out` once every cell has finished.
One failing cell is reported and the others go on; the study then stays staged and a rerun retries it.
`reuse` copies the cells of finished studies with the same identity (hard links where the file system allows), so
a larger grid after a finished study trains only its new cells.
"""
from __future__ import annotations

import os
import shutil
import traceback
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from workbench import steps
from workbench.config import DefenseSpec, EvalSpec
from workbench.plots.export import export_all
from workbench.plots.study_ascent import figures
from workbench.presets import Preset, preset
from workbench.record import StudyRunSpec
from workbench.runs import RunWriter, open_run, write_json
from workbench.stress.study import train_uids
from workbench.studies.ascent_spec import CELLS, RESULT_FILE, STATUS_FILE, STUDY, AscentStudySpec, Cell, step_root
from workbench.studies.ascent_summary import latest, summarise


class StudyIncomplete(RuntimeError):
    """Some cells failed: the study stays staged, and the message says how to retry them."""


def silent(spec: EvalSpec) -> EvalSpec:
    """No evaluation in a training step: the study evaluates on the validation split, and on test only after the
    choice."""
    return spec.model_copy(update={"n_harmful": 0, "n_benign": 0, "n_task": 0})


def reusable(spec: AscentStudySpec, folder: str | Path) -> Path:
    """A finished ascent study whose cells `spec` may reuse: the same identity; ValueError naming what differs."""
    run = open_run(folder)
    if run.kind != "study" or run.name != STUDY:
        raise ValueError(f"--reuse {folder}: not an ascent study run (kind {run.kind}, name {run.name})")
    old = AscentStudySpec.model_validate(run.spec.params)
    diff = sorted(k for k, v in spec.identity().items() if old.identity()[k] != v)
    if diff:
        raise ValueError(f"--reuse {folder}: its cells were made with other {', '.join(diff)}")
    return run.path


def _link_or_copy(src: str, dst: str) -> None:
    """Runs are immutable, so two studies may share a file: a hard link where the file system allows one."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def copy_cells(spec: AscentStudySpec, source: Path, dest: Path) -> list[str]:
    """Copy the cells of `spec` that the finished study `source` holds and `dest` does not; their keys."""
    copied = []
    for cell in spec.cells():
        old, new = source / CELLS / cell.key, dest / CELLS / cell.key
        if old.is_dir() and not new.exists():
            shutil.copytree(old, new, copy_function=_link_or_copy)
            copied.append(cell.key)
    return copied


def failure(err: Exception) -> str:
    """What ascent-status.json records of a failed cell: the error and the innermost frames."""
    return f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}"


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
              formats: tuple[str, ...] = ("html", "png"), reuse: Sequence[str | Path] = ()) -> Path:
    """Run (or resume) the study and publish it to `out` (which must not exist); returns the published folder
    (`load_result` reads it). A cell that raises is recorded in the staged ascent-status.json, left out of the
    choice, and the study is not published: StudyIncomplete naming the cells, and a rerun retries them."""
    out = Path(out)
    pr = preset(spec.preset, spec.seed)
    sources = [reusable(spec, r) for r in reuse]  # errors before any work
    record = StudyRunSpec(study=STUDY, params=spec.model_dump(mode="json"), model=spec.model)
    with RunWriter(out.parent, "study", STUDY, record, seed=spec.seed, resume=True, final=out,
                   stage_key=spec.identity()) as run:
        for source in sources:
            copy_cells(spec, source, run.path)
        failed: dict[str, str] = {}
        for cell in tqdm(spec.cells(), desc="ascent study", unit="cell", disable=not progress):
            try:
                run_cell(spec, pr, cell, run.path, progress=progress)
            except Exception as err:  # one failing cell is reported, never fatal to the others
                failed[cell.key] = failure(err)
        task = pr.validation.task if pr.validation.n_task else None
        summary = summarise(run.path, spec, task)
        keys = {"sft", *(c.key for c in summary.chosen if c.key)}
        for cell in spec.cells():
            if cell.key in keys and cell.key not in failed:
                try:
                    run_test(pr, spec, cell, run.path, progress=progress)
                except Exception as err:
                    failed[cell.key] = failure(err)
        summary = summarise(run.path, spec, task)
        write_json(run.path / STATUS_FILE, {"failed": failed})
        write_json(run.path / RESULT_FILE, summary.model_dump(mode="json"))
        if failed:
            raise StudyIncomplete(f"ascent study: {len(failed)} cell(s) failed ({', '.join(failed)}; see "
                               f"{run.path / STATUS_FILE}); the study stays staged in {run.path}: rerun the same "
                               f"command to retry them")
        run.write_metrics(summary.headline())
        if formats:
            export_all(figures(summary), run.path / "figures", formats)
    return run.final_path
