"""`workbench` command line: align | attack | repair | eval | quickstart | runs | defenses | leaderboard | ....

Input errors are caught here, at the boundary, and printed as one line (exit 2) with what to fix.
SIGTERM is turned into KeyboardInterrupt so a killed step checkpoints and leaves no finished-looking run.
"""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Align, attack, defend, evaluate and explain small LLMs under harmful fine-tuning.")
runs_app = typer.Typer(no_args_is_help=True, help="List and inspect run folders.")
app.add_typer(runs_app, name="runs")
console = Console()

ModelOpt = typer.Option("smollm2-135m-instruct", "--model", "-m", help="Registered name, HF folder or run folder.")
SeedOpt = typer.Option(0, "--seed", help="Seed for data order, LoRA init, splits of the mix and sampling.")
OutOpt = typer.Option(Path("runs"), "--out", "-o", help="Runs root: each step writes one folder inside it.")


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt


def _fail(msg: str) -> None:
    console.print(f"[bold red]error:[/] {msg}")
    raise typer.Exit(2)


def _guard(fn, *args, **kwargs):
    """Run a step; input errors become one clear line, interrupts a resumable message."""
    from workbench.cache import MissingResourceError

    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return fn(*args, **kwargs)
    except (ValueError, FileNotFoundError, MissingResourceError) as e:
        _fail(str(e))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted:[/] no run folder was published; the checkpoint is kept — "
                      "rerun the same command with --resume to continue.")
        raise typer.Exit(130)


def _eval_spec(preset_name: str | None, model: str, seed: int, n_harmful: int | None = None,
               n_benign: int | None = None, n_task: int | None = None, task: str | None = None):
    from workbench.pipeline import default_preset, preset

    spec = preset(preset_name or default_preset(model), seed).eval
    upd = {k: v for k, v in dict(n_harmful=n_harmful, n_benign=n_benign, n_task=n_task, task=task).items()
           if v is not None}
    return spec.model_copy(update=upd)


@app.command()
def align(model: str = ModelOpt, seed: int = SeedOpt, out: Path = OutOpt,
          defense: str = typer.Option("sft", help="Alignment-stage defense (see `workbench defenses`)."),
          param: list[str] = typer.Option([], "--param", "-p", help="Defense hyperparameter KEY=VALUE (JSON value)."),
          preset: Optional[str] = typer.Option(None, help="'full' or 'tiny' sizes (default: by model)."),
          method: Optional[str] = typer.Option(None, help="'lora' or 'full' fine-tuning."),
          max_steps: Optional[int] = typer.Option(None, help="Stop after this many optimizer steps."),
          resume: bool = typer.Option(False, help="Continue an interrupted run of the same spec.")):
    """Safety-align a model (SFT on refusals, or an alignment-stage defense)."""
    from workbench import steps
    from workbench.config import DefenseSpec
    from workbench.pipeline import default_preset, preset as get_preset

    def run():
        p = get_preset(preset or default_preset(model), seed)
        train = p.align.train.model_copy(update={k: v for k, v in dict(method=method, max_steps=max_steps).items()
                                                 if v is not None})
        spec = p.align.model_copy(update={"defense": DefenseSpec(name=defense, params=_parse_params(param)),
                                          "train": train})
        return steps.align(spec, model, out, seed, p.eval, resume=resume)

    path = _guard(run)
    _print_metrics(path)


@app.command()
def attack(model: str = ModelOpt, seed: int = SeedOpt, out: Path = OutOpt,
           name: str = typer.Option("harmful_ft", "--attack", help="Attack (harmful_ft, pure_bad, benign_ft, ...)."),
           p: Optional[float] = typer.Option(None, "--p", help="Harmful ratio in [0, 1]."),
           n: Optional[int] = typer.Option(None, "--n", help="Number of user samples."),
           benign: Optional[str] = typer.Option(None, help="Benign task dataset (default sst2)."),
           preset: Optional[str] = typer.Option(None, help="'full' or 'tiny' sizes (default: by model)."),
           method: Optional[str] = typer.Option(None, help="'lora' or 'full' fine-tuning."),
           max_steps: Optional[int] = typer.Option(None, help="Stop after this many optimizer steps."),
           defense: Optional[str] = typer.Option(None, help="Fine-tuning-stage defense the provider applies."),
           param: list[str] = typer.Option([], "--param", help="Defense hyperparameter KEY=VALUE (JSON value)."),
           resume: bool = typer.Option(False, help="Continue an interrupted run of the same spec.")):
    """Fine-tune a model on user data with harmful ratio p (the attack), optionally under a defense."""
    from workbench import steps
    from workbench.config import DefenseSpec
    from workbench.pipeline import default_preset, preset as get_preset

    def run():
        if p is not None and not 0.0 <= p <= 1.0:
            raise ValueError(f"--p must be in [0, 1], got {p}")
        pr = get_preset(preset or default_preset(model), seed)
        data = pr.attack.data.model_copy(update={k: v for k, v in dict(p=p, n=n, benign=benign, seed=seed).items()
                                                 if v is not None})
        train = pr.attack.train.model_copy(update={k: v for k, v in dict(method=method, max_steps=max_steps).items()
                                                   if v is not None})
        spec = pr.attack.model_copy(update={"name": name, "data": data, "train": train})
        d = DefenseSpec(name=defense, params=_parse_params(param)) if defense else None
        return steps.attack(spec, model, out, seed, pr.eval, resume=resume, defense=d)

    path = _guard(run)
    _print_metrics(path)


@app.command("eval")
def eval_cmd(model: str = ModelOpt, seed: int = SeedOpt, out: Path = OutOpt,
             preset: Optional[str] = typer.Option(None, help="'full' or 'tiny' sizes (default: by model)."),
             n_harmful: Optional[int] = typer.Option(None, help="Held-out harmful prompts."),
             n_benign: Optional[int] = typer.Option(None, help="Held-out benign prompts."),
             task: Optional[str] = typer.Option(None, help="Benign task for FA (sst2, gsm_symbolic, gsm8k)."),
             n_task: Optional[int] = typer.Option(None, help="Task test samples."),
             harmful_prompts: Optional[Path] = typer.Option(None, help="Your own harmful prompts: one a line, or JSONL."),
             validation: bool = typer.Option(
                 False, help="Harmful and benign prompts from the validation split (train-side prompts outside the "
                             "preset's alignment mix for --seed; no FA): for choosing hyperparameters, never the "
                             "reported test sets."),
             system_prompt: Optional[str] = typer.Option(
                 None, help="System prompt for the harmful and benign prompts (e.g. a safety prompt, as PTST uses); "
                            "default: the chat template's own.")):
    """Evaluate any model or run folder on held-out sets."""
    from workbench import steps

    def run():
        if validation and harmful_prompts:
            raise ValueError("--validation and --harmful-prompts both choose the harmful prompts; give one")
        harmful = _read_prompts(harmful_prompts) if harmful_prompts else None
        spec = _eval_spec(preset, model, seed, n_harmful if n_harmful is not None else
                          (len(harmful) if harmful else None), n_benign, n_task, task)
        if system_prompt is not None:
            spec = spec.model_copy(update={"generation": spec.generation.model_copy(
                update={"system_prompt": system_prompt})})
        benign, sets, name = None, None, None
        if validation:
            from workbench.evaluation.validation import validation_sets
            from workbench.pipeline import default_preset

            preset_name = preset or default_preset(model)
            harmful, benign = validation_sets(preset_name, seed, spec.n_harmful, spec.n_benign)
            spec = spec.model_copy(update={"n_task": 0})
            sets = f"validation split (preset {preset_name}, seed {seed})"
            name = Path(str(model)).name.replace("_", "-") + "-validation"
        return steps.evaluate_model(model, out, seed, spec, harmful=harmful, benign=benign, sets=sets, name=name)

    path = _guard(run)
    _print_metrics(path)


@app.command()
def quickstart(model: str = ModelOpt, seed: int = SeedOpt, out: Path = OutOpt,
               preset: Optional[str] = typer.Option(None, help="'full' or 'tiny' sizes (default: by model)."),
               resume: bool = typer.Option(False, help="Continue interrupted training steps from their checkpoints.")):
    """Non-aligned → safety SFT → harmful fine-tuning (p = 0.1) → evaluate all three; prints one table."""
    from workbench.pipeline import quickstart as qs, results_table

    paths = _guard(qs, model, out, seed, preset, resume=resume)
    rows = results_table(paths)
    table = Table(title=f"quickstart: {model} (seed {seed}, {paths['_seconds'] / 60:.1f} min)")
    cols = [c for c in rows[0] if c not in ("model", "run")]
    table.add_column("model")
    for c in cols:
        table.add_column(c)
    for r in rows:
        table.add_row(r["model"], *[_fmt_rate(r.get(c)) for c in cols])
    console.print(table)
    for r in rows:
        console.print(f"  {r['model']:>12}: {r['run']}")


defenses_app = typer.Typer(help="The defense registry (all three stages).")
app.add_typer(defenses_app, name="defenses")


@defenses_app.callback(invoke_without_command=True)
def defenses(ctx: typer.Context):
    """List every defense with its stage and hyperparameters (`workbench defenses` or `... defenses list`)."""
    if ctx.invoked_subcommand is None:
        defenses_list(stage=None)


@defenses_app.command("list")
def defenses_list(stage: Optional[str] = typer.Option(
        None, help="Only this stage: alignment, fine-tuning or post-fine-tuning (also finetune, post).")):
    """List every defense with its stage and hyperparameters."""
    from workbench.defenses import DEFENSES
    from workbench.vocabulary import parse_stage

    stage = _guard(parse_stage, stage) if stage is not None else None
    infos = [i for i in DEFENSES.values() if stage is None or i.stage == stage]
    if not infos:
        _fail(f"no defenses of stage {stage!r}; stages: {sorted({i.stage for i in DEFENSES.values()})}")
    table = Table(title="defenses")
    for c in ("name", "stage", "hyperparameters (defaults)", "paper"):
        table.add_column(c)
    for info in infos:
        params = ", ".join(f"{k}={f.default}" for k, f in info.params.model_fields.items()) or "—"
        table.add_row(info.name, info.stage, params, info.paper)
    console.print(table)


@runs_app.command("list")
def runs_list(out: Path = OutOpt, kind: Optional[str] = typer.Option(None, help="Only runs of this kind.")):
    """Finished runs, oldest first, with their headline metrics."""
    from workbench.runs import has_interrupted, list_runs
    from workbench.vocabulary import short_title

    table = Table(title=f"runs in {out}")
    for c in ("run", "kind", short_title("refusal_harmful"), short_title("refusal_benign"), "FA"):
        table.add_column(c)
    for r in list_runs(out, kind):
        m = r.metrics
        fa = next((v for k, v in m.items() if k.startswith("fa_")), None)
        table.add_row(str(r.path.relative_to(out)), r.kind, _fmt_rate(m.get("refusal_harmful")),
                      _fmt_rate(m.get("refusal_benign")), _fmt_rate(fa))
    console.print(table)
    for p in has_interrupted(out):
        console.print(f"[yellow]interrupted (resume with --resume):[/] {p}")


@runs_app.command("show")
def runs_show(path: Path = typer.Argument(..., help="A run folder.")):
    """Config and metrics of one run."""
    from workbench.runs import open_run

    run = _guard(open_run, path)
    console.print_json(json.dumps({"config": run.config, "metrics": run.metrics}))


@runs_app.command("archive")
def runs_archive(runs: Path = typer.Option(..., "--runs", help="Runs root to archive (e.g. runs/defense-grid)."),
                 out: Path = typer.Option(..., "--out", help="Where the records go, same layout (e.g. results/...)."),
                 max_file_mb: float = typer.Option(1.0, help="Leave out any file larger than this."),
                 lowrank: list[str] = typer.Option([], "--lowrank", help="Run kinds (repeatable, e.g. align) whose "
                                                   "LoRA-trained model is kept as a low-rank delta (a few MB) that "
                                                   "loads like the original.")):
    """Copy every finished run's records (config, metrics, samples, curves; no full weights) to OUT, e.g. to commit
    the numbers behind a doc. `workbench leaderboard --runs OUT` reads the copy like the original; with
    --lowrank align, the aligned models can be attacked again from the copy."""
    from workbench.archive import ARCHIVE_NOTE, archive_runs

    copied = _guard(archive_runs, runs, out, int(max_file_mb * 1e6), lowrank)
    for path in copied:
        left = json.loads((path / ARCHIVE_NOTE).read_text())["left_out"]
        console.print(f"{path}  [dim](left out: {len(left)} files)[/]")
    console.print(f"[green]{len(copied)} runs archived[/] into {out}")


def _parse_params(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--param expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _read_prompts(path: Path):
    from workbench.data.jsonl import read_jsonl
    from workbench.data.types import Sample

    if not path.is_file():
        raise ValueError(f"{path}: no such file (expected one prompt a line, or JSONL with a 'prompt' field)")
    if path.suffix == ".jsonl":
        samples = read_jsonl(path)
    else:
        samples = [Sample(prompt=line.strip(), harmful=True, source=str(path))
                   for line in path.read_text().splitlines() if line.strip()]
    if not samples:
        raise ValueError(f"{path}: no prompts found")
    return samples


def _fmt_rate(r) -> str:
    from workbench.vocabulary import fmt_rate

    return fmt_rate(r, decimals=0)


def _print_metrics(path: Path) -> None:
    from workbench.runs import open_run

    m = open_run(path).metrics
    for k, v in m.items():
        if isinstance(v, dict) and "value" in v:
            console.print(f"  {k:>18}: {_fmt_rate(v)}")
    console.print(f"[green]run folder:[/] {path}")


# Commands contributed by each area (one line each).
from workbench.commands.analyze import analyze as _analyze  # noqa: E402

app.command("analyze")(_analyze)
from workbench.commands.sweep import figure2_cmd as _figure2, sweep_cmd as _sweep  # noqa: E402

app.command("sweep")(_sweep)
app.command("figure2")(_figure2)
from workbench.commands.figures import figures_cmd as _figures  # noqa: E402

app.command("figures")(_figures)
from workbench.commands.judge import judge_app  # noqa: E402
from workbench.commands.leaderboard import leaderboard_cmd as _leaderboard  # noqa: E402
from workbench.commands.repair import repair_cmd as _repair  # noqa: E402

app.command("repair")(_repair)
app.command("leaderboard")(_leaderboard)

app.add_typer(judge_app, name="judge")

if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
