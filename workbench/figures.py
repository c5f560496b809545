"""Every figure the run folders under a runs root can draw: found, built and exported by name.

Read-only: this module opens run folders and never trains or evaluates. The Streamlit explorer
(`apps/`), the notebooks (`analyses/`) and `workbench figures` all go through it, so a figure looks the
same wherever it is shown.

    analysis runs   `result.json` (+ `tensors.safetensors`) → the registered plots module's `figures(result)`
                    (ANALYSES in `workbench.analysis`); unregistered analyses keep their saved figures/
    sweeps          folders holding `sweep-status.json` → `workbench.plots.threat` (metric vs harmful ratio p)
    leaderboard     `workbench.leaderboard.build(root)`: every attacked model (attack / defend / repair run) →
                    `workbench.plots.leaderboard` (grouped bars per attack; HS vs FA)
    training        training runs whose `training.json` holds a defense's per-step diagnostics →
                    `workbench.plots.training` (task loss and the defense's own loss terms)
    study           study runs (kind "study") → the registered study's plots module (STUDIES in `workbench.studies`)

`collect(root)` gathers all of them as {"group/name": Figure}; `export(figures, out, formats)` writes
HTML (always) and PNG/SVG through kaleido, one browser session for all static images.
"""
from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Iterable
from html import escape
from pathlib import Path

import plotly.graph_objects as go

from workbench.analysis import ANALYSES
from workbench.leaderboard import build
from workbench.plots.export import _ensure_browser_env, with_one_retry, write_html, write_shared_plotlyjs
from workbench.plots.leaderboard import figures as board_figures
from workbench.plots.threat import figures
from workbench.plots.training import plot_training
from workbench.runs import INCOMPLETE, Run, defense_name, list_runs, model_ref
from workbench.studies import STUDIES, get_study
from workbench.sweep import results
from workbench.vocabulary import analysis_key

# ------------------------------------------------------------------------------------------ display


def clean(obj):
    """`obj` with NaN/inf floats turned into None (strict JSON, tables and st.json accept it)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return obj


def short_ref(ref) -> str:
    """A model reference for display: registered names as they are, folders by their last part."""
    if not ref:
        return "—"
    s = str(ref).rstrip("/")
    return s.rsplit("/", 1)[-1] if "/" in s else s


def _same(a: str | None, b: str | Path | None) -> bool:
    if a is None or b is None:
        return False
    if str(a) == str(b):
        return True
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


# ------------------------------------------------------------------------------------ pipeline runs


def pipeline_runs(root: str | Path, model: str | None = None) -> dict[str, Run]:
    """The latest {"non-aligned": eval, "aligned": align, "attacked": attack} runs under `root`.

    With `model` (a registered name or folder), only runs that started from it: the align run whose base is
    `model`, the non-aligned eval of `model`, and the harmful_ft attack whose base is that align run. Runs
    directly under `root` are preferred to sweep cells. Missing roles are left out.
    """
    root = Path(root)
    runs = list_runs(root)
    ref = model_ref(model) if model is not None else None

    def latest(cands: list[Run]) -> Run | None:
        top = [r for r in cands if r.path.parent == root]
        pick = top or cands
        return pick[-1] if pick else None

    out: dict[str, Run] = {}
    evals = [r for r in runs
             if r.kind == "eval" and r.name == "non-aligned" and (ref is None or _same(r.base, ref))]
    aligns = [r for r in runs if r.kind == "align" and (ref is None or _same(r.base, ref))]
    if (e := latest(evals)) is not None:
        out["non-aligned"] = e
    if (a := latest(aligns)) is not None:
        out["aligned"] = a
        attacks = [r for r in runs if r.kind == "attack" and _same(r.base, a.path)
                   and (r.attack.name if r.attack is not None else "harmful_ft") == "harmful_ft"]
        if (t := latest(attacks)) is not None:
            out["attacked"] = t
    return out


# ------------------------------------------------------------------------------------ analysis runs


def registered_name(name: str) -> str | None:
    """The ANALYSES key of `name` (either spelling), or None when that analysis is not registered (yet)."""
    key = analysis_key(name)
    return key if key in ANALYSES else None


def analysis_name(run: Run) -> str | None:
    if run.kind != "analysis":
        return None
    return run.spec.analysis or run.name


def analysis_runs(root: str | Path, name: str | None = None) -> list[Run]:
    """Finished analysis runs under `root` (of analysis `name` when given), oldest first."""
    runs = [r for r in list_runs(root, "analysis") if (r.path / "result.json").is_file()]
    if name is not None:
        runs = [r for r in runs if analysis_key(analysis_name(r) or "") == analysis_key(name)]
    return runs


def find_analysis(root: str | Path, name: str, model: str | None = None, compare: str | None = None,
                  params: dict | None = None) -> Run | None:
    """The latest `name` analysis run of `model` (against `compare`) whose parameters include `params`."""
    def norm(v):
        return json.loads(json.dumps(v, default=str))

    for run in reversed(analysis_runs(root, name)):
        spec = run.spec
        if model is not None and not _same(spec.model, model_ref(model)):
            continue
        if compare is not None and not _same(spec.compare, model_ref(compare)):
            continue
        have = spec.params
        if params and any(norm(have.get(k)) != norm(v) for k, v in params.items()):
            continue
        return run
    return None


def load_result(run: Run):
    """The typed result of an analysis run, via its registered module; None when it is not registered."""
    from workbench.analysis import get_analysis  # deferred: torch

    key = registered_name(analysis_name(run) or "")
    if key is None:
        return None
    mod, _ = get_analysis(key)
    kind = json.loads((run.path / "result.json").read_text())["type"]
    cls = getattr(mod, kind, None)
    if cls is None:
        raise ValueError(f"{run.path}: result type {kind!r} not found in {mod.__name__}")
    return cls.load(run.path)


def analysis_figures(run: Run) -> dict[str, go.Figure]:
    """{name: Figure} drawn from the run's result by its plots module ({} when not registered)."""
    from workbench.analysis import get_analysis  # deferred: torch

    result = load_result(run)
    if result is None:
        return {}
    _, plots = get_analysis(registered_name(analysis_name(run)))
    return dict(plots.figures(result))


def saved_figures(run: Run | Path) -> dict[str, Path]:
    """{name: path} of figures the run folder already holds (HTML preferred, else PNG/SVG)."""
    folder = Path(getattr(run, "path", run)) / "figures"
    out: dict[str, Path] = {}
    if folder.is_dir():
        for ext in ("svg", "png", "html"):  # later extensions win
            for p in sorted(folder.glob(f"*.{ext}")):
                out[p.stem] = p
    return out


# ------------------------------------------------------------------------------------------- sweeps


def sweep_dirs(root: str | Path) -> list[Path]:
    """Sweep folders (holding `sweep-status.json`) under `root`, including `root` itself."""
    root = Path(root)
    if not root.exists():
        return []
    return sorted(p.parent for p in root.rglob("sweep-status.json") if INCOMPLETE not in p.parts)


def sweep_rows(folder: str | Path) -> list[dict]:
    return results(folder)


def sweep_status(folder: str | Path) -> dict:
    p = Path(folder) / "sweep-status.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def sweep_figures(folder: str | Path) -> dict[str, go.Figure]:
    rows = sweep_rows(folder)
    return figures(rows) if rows else {}


# ------------------------------------------------------------------------------------ collect/export


FIGURE_KINDS = ("analysis", "sweep", "leaderboard", "training", "study")  # what `collect` can draw


def study_runs(root: str | Path, name: str | None = None) -> list[Run]:
    """Finished runs of registered studies under `root` (of study `name` when given), oldest first."""
    return [r for r in list_runs(root, "study") if r.name in STUDIES and (name is None or r.name == name)]


def load_study(run: Run):
    """The typed result of a study run, via its registered study module."""
    mod, _ = get_study(run.name)
    return mod.load_result(run.path)


def study_figures(run: Run) -> dict[str, go.Figure]:
    """{name: Figure} drawn from a study run's result by its plots module."""
    _, plots = get_study(run.name)
    return dict(plots.figures(load_study(run)))


def training_runs(root: str | Path) -> list[tuple[Run, dict]]:
    """(run, its training.json) for training runs (align / attack / defend) that record a defense's per-step
    diagnostics; the record is returned so callers do not read it again."""
    out = []
    for run in list_runs(root):
        path = run.path / "training.json"
        if run.kind in ("align", "attack", "defend") and path.is_file():
            training = json.loads(path.read_text())
            if training.get("diagnostics"):
                out.append((run, training))
    return out


def collect(root: str | Path, kinds: Iterable[str] = FIGURE_KINDS,
            match: str | None = None, on_error=None) -> dict[str, go.Figure]:
    """{"<group>/<figure>": Figure} for every figure the runs under `root` can draw.

    Groups: an analysis run's folder name, a sweep's path relative to `root` ("." for `root` itself), and
    "leaderboard". `match` keeps groups whose path contains it. A run whose plots fail is reported through
    `on_error(group, exception)` (default: a warning) and skipped, never fatal.
    """
    root = Path(root)
    kinds = set(kinds)
    on_error = on_error or (lambda group, err: warnings.warn(f"{group}: no figures ({type(err).__name__}: {err})",
                                                             stacklevel=3))
    out: dict[str, go.Figure] = {}

    def keep(group: str) -> bool:
        return match is None or match in group

    if "analysis" in kinds:
        for run in analysis_runs(root):
            group = str(run.path.relative_to(root))
            if not keep(group):
                continue
            try:
                for name, fig in analysis_figures(run).items():
                    out[f"{group}/{name}"] = fig
            except Exception as err:  # one broken run never stops the export
                on_error(group, err)
    if "sweep" in kinds:
        for folder in sweep_dirs(root):
            group = str(folder.relative_to(root)) if folder != root else "sweep"
            if not keep(group):
                continue
            try:
                for name, fig in sweep_figures(folder).items():
                    out[f"{group}/{name}"] = fig
            except Exception as err:
                on_error(group, err)
    if "training" in kinds:
        for run, training in training_runs(root):
            group = str(run.path.relative_to(root))
            if keep(group):
                try:
                    out[f"{group}/training"] = plot_training({defense_name(run): training})
                except Exception as err:
                    on_error(group, err)
    if "study" in kinds:
        for run in study_runs(root):
            group = str(run.path.relative_to(root))
            if keep(group):
                try:
                    for name, fig in study_figures(run).items():
                        out[f"{group}/{name}"] = fig
                except Exception as err:
                    on_error(group, err)
    if "leaderboard" in kinds and keep("leaderboard"):

        try:
            board = build(root)
        except ValueError:  # no attacked models under root: nothing to rank
            board = None
        for name, fig in board_figures(board).items() if board else ():
            out[f"leaderboard/{name}"] = fig
    return out


def export(figures: dict[str, go.Figure], out: str | Path, formats: Iterable[str] = ("html", "png")) -> list[Path]:
    """Write each "group/name" figure to out/group/name.<fmt>; returns the files written, plus out/index.html.

    HTML pages share one out/plotly.min.js (a self-contained page would carry its own multi-megabyte copy).
    PNG/SVG are rendered in one kaleido browser session for all figures (`plotly.io.write_images`), which saves
    `workbench.plots.export`'s browser start per image; without a Chrome/Chromium the static formats
    are skipped with one warning.
    """
    out = Path(out)
    formats = [f.strip() for f in formats if f.strip()]
    bad = [f for f in formats if f not in ("html", "png", "svg", "pdf")]
    if bad:
        raise ValueError(f"unknown figure format(s) {bad}; use html, png, svg or pdf")
    written: list[Path] = []
    if "html" in formats and figures:
        written += _write_html(figures, out)
    static = [f for f in formats if f != "html"]
    if static and figures:
        if not _ensure_browser_env():
            warnings.warn("no Chrome/Chromium found: skipping PNG/SVG export (run `make setup`, which installs "
                          "Debian's chromium)", stacklevel=2)
        else:
            for fmt in static:
                paths = [out / f"{key}.{fmt}" for key in figures]
                for p in paths:
                    p.parent.mkdir(parents=True, exist_ok=True)
                _write_images(list(figures.values()), paths, fmt)
                written += paths
    if figures:
        written.append(_write_index(figures, out, formats))
    return written


def _write_html(figures: dict[str, go.Figure], out: Path) -> list[Path]:
    js = out / "plotly.min.js"
    written = write_shared_plotlyjs(js)  # once for all pages
    return written + [write_html(fig, out / f"{key}.html", shared_js=js) for key, fig in figures.items()]


def _write_images(figs: list[go.Figure], paths: list[Path], fmt: str) -> None:
    import plotly.io as pio  # deferred: plotly

    scale = 2 if fmt == "png" else 1
    if hasattr(pio, "write_images"):  # plotly >= 6.1 with kaleido >= 1: one browser for all images
        with_one_retry(lambda: pio.write_images(figs, [str(p) for p in paths], format=fmt, scale=scale))
    else:
        for fig, p in zip(figs, paths, strict=False):
            with_one_retry(lambda fig=fig, p=p: fig.write_image(str(p), format=fmt, scale=scale))


def _write_index(figures: dict[str, go.Figure], out: Path, formats: list[str]) -> Path:
    groups: dict[str, list[str]] = {}
    for key in figures:
        folder, _, name = key.rpartition("/")
        groups.setdefault(folder, []).append(name)
    parts = [f"<h1>workbench figures</h1><p>{len(figures)} figures, written {time.strftime('%Y-%m-%d %H:%M')}</p>"]
    for folder, names in groups.items():
        parts.append(f"<h2>{escape(folder)}</h2><ul>")
        for n in names:
            links = " · ".join(f'<a href="{escape(folder)}/{escape(n)}.{f}">{f}</a>' for f in formats)
            thumb = (f'<br><img src="{escape(folder)}/{escape(n)}.png" style="max-width:480px">'
                     if "png" in formats else "")
            parts.append(f"<li>{escape(n)}: {links}{thumb}</li>")
        parts.append("</ul>")
    path = out / "index.html"
    path.write_text("<!doctype html><meta charset='utf-8'><title>workbench figures</title>"
                    "<body style='font-family:sans-serif'>" + "\n".join(parts) + "</body>\n")
    return path


def export_runs(runs: Path, out: Path, kinds: Iterable[str] | None, match: str | None,
                formats: Iterable[str]) -> tuple[Path, int, list[Path]]:
    """Every figure of `kinds` (default: all) under the runs root `runs` (folders matching `match`) exported
    into `out`. Returns (out/index.html, number of figures, files written)."""
    if not Path(runs).is_dir():
        raise ValueError(f"--runs {runs}: no such folder (a runs root, e.g. the --out of `workbench quickstart`)")
    kinds = list(kinds or FIGURE_KINDS)
    bad = sorted(set(kinds) - set(FIGURE_KINDS))
    if bad:
        raise ValueError(f"--kind {bad}: unknown; use {', '.join(FIGURE_KINDS)}")
    figs = collect(runs, kinds, match)
    if not figs:
        raise ValueError(f"no figures to draw under {runs} (kinds {', '.join(kinds)}"
                         f"{f', matching {match!r}' if match else ''}): run `workbench quickstart`, "
                         f"`workbench figure2` or `workbench analyze` first")
    written = export(figs, out, list(formats))
    return Path(out) / "index.html", len(figs), written
