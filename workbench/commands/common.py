"""What every command shares: the console, the input-error boundary, option parsing and terminal formatting.

A leaf of `workbench.commands`: it imports no other command module and never `workbench.cli`, so command
modules import it at module level and `workbench.cli` only registers them.

Input errors are caught at the boundary (`guard`) and printed as one line (exit 2) with what to fix.
SIGTERM is turned into KeyboardInterrupt so a killed step checkpoints and leaves no finished-looking run.
"""
from __future__ import annotations

import json
import signal
from pathlib import Path

import typer
from rich.console import Console

from workbench.cache import MissingResourceError

console = Console()

ModelOpt = typer.Option("smollm2-135m-instruct", "--model", "-m", help="Registered name, HF folder or run folder.")
SeedOpt = typer.Option(0, "--seed", help="Seed for data order, LoRA init, splits of the mix and sampling.")
OutOpt = typer.Option(Path("runs"), "--out", "-o", help="Runs root: each step writes one folder inside it.")
JudgeOpt = typer.Option(None, "--judge", help="Moderation judge behind HS / HS+: minilm-lr (default; the tiny preset: "
                                              "hashing-lr, a fast stand-in) or a local Hugging Face folder holding a "
                                              "sequence-classification moderation model or a guard causal LM "
                                              "(docs/judges.md).")
DTypeOpt = typer.Option(None, "--dtype", help="Precision of training and generation: float32 (default), bfloat16 "
                                              "(float32 master weights; docs/benchmarks.md), or auto: bfloat16 where "
                                              "the CPU has AMX-BF16 or AVX512-BF16, else float32. Recorded resolved.")


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt


def fail(msg: str) -> None:
    console.print(f"[bold red]error:[/] {msg}")
    raise typer.Exit(2)


def guard(fn, *args, **kwargs):
    """Run a step; input errors become one clear line, interrupts a resumable message."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return fn(*args, **kwargs)
    except (ValueError, FileNotFoundError, MissingResourceError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted:[/] no run folder was published; the checkpoint is kept — "
                      "rerun the same command with --resume to continue.")
        raise typer.Exit(130) from None


def parse_params(items: list[str]) -> dict:
    """`--param KEY=VALUE` items as a dict; a VALUE that is not JSON stays a string."""
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


def eval_spec(preset_name: str | None, model: str, seed: int, n_harmful: int | None = None,
              n_benign: int | None = None, n_task: int | None = None, task: str | None = None,
              harmful_set: str | None = None, validation: bool = False):
    """The preset's EvalSpec (by model when no preset is named; its validation sizes with `validation`) with the sizes
    and harmful set given on the command line."""
    from workbench.presets import default_preset, preset  # deferred: pydantic

    chosen = preset(preset_name or default_preset(model), seed)
    spec = chosen.validation if validation else chosen.eval
    upd = {k: v for k, v in dict(n_harmful=n_harmful, n_benign=n_benign, n_task=n_task, task=task,
                                 harmful_set=harmful_set).items() if v is not None}
    return spec.model_copy(update=upd)


def with_judge(spec, judge: str | None):
    """The EvalSpec `spec` with the judge `--judge` names (checked now, before any training), or as is without one."""
    if judge is None:
        return spec
    from workbench.evaluation.moderation import resolve_spec  # deferred: torch

    return spec.model_copy(update={"judge": True, "judge_model": resolve_spec(judge)})


def with_dtype(spec, dtype: str | None):
    """The spec `spec` (a TrainSpec, GenerationSpec or EvalSpec: then its generation) in the precision `--dtype`
    names, "auto" resolved for this machine; as is without one."""
    if dtype is None:
        return spec
    from workbench.config import EvalSpec  # deferred: pydantic
    from workbench.precision import resolve_dtype  # deferred: startup

    if isinstance(spec, EvalSpec):
        return spec.model_copy(update={"generation": with_dtype(spec.generation, dtype)})
    return spec.model_copy(update={"dtype": resolve_dtype(dtype)})


def fmt_rate(r) -> str:
    """A metrics.json rate on one terminal line: `value% [low–high] n=N`, or a dash."""
    from workbench.vocabulary import fmt_rate as format_rate  # deferred: startup

    return format_rate(r, decimals=0)


def print_metrics(path: Path) -> None:
    """Every rate of a run's metrics.json, then the run folder."""
    from workbench.runs import open_run  # deferred: startup
    from workbench.vocabulary import BY_SOURCE  # deferred: startup

    m = open_run(path).metrics
    for k, v in m.items():
        if isinstance(v, dict) and "value" in v:
            console.print(f"  {k:>18}: {fmt_rate(v)}")
    for source, rates in (m.get(BY_SOURCE) or {}).items():  # the standard harmful set, per benchmark
        console.print(f"  {source:>18}: " + "  ".join(f"{k} {fmt_rate(v)}" for k, v in rates.items()))
    console.print(f"[green]run folder:[/] {path}")
