"""Shared pieces of the explorer tabs: cached readers of run folders, empty states, figure display.

Caching. A published run folder never changes, so what is read from one is cached by its path
(`st.cache_data`). Lists of runs are keyed by `fingerprint(root)` (the run and sweep-status files with their
mtimes), so runs that land while the app is open show up on the next rerun. Loaded models are cached with
`st.cache_resource` (one copy per run folder per server process) in `compare.py`.
Everything here reads; nothing trains.
"""
from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from workbench import figures as wf
from workbench.runs import INCOMPLETE, Run, list_runs
from workbench.vocabulary import analysis_key, fmt_rate, is_rate


def fingerprint(root: Path) -> tuple:
    """Changes whenever a run or a sweep status appears, disappears or is rewritten under `root`."""
    if not root.is_dir():
        return ()
    items = []
    for p in root.rglob("*.json"):
        if p.name in ("config.json", "sweep-status.json") and INCOMPLETE not in p.parts:
            try:
                items.append((str(p), p.stat().st_mtime_ns))
            except OSError:  # removed while listing
                continue
    return tuple(sorted(items))


@st.cache_data(show_spinner=False)
def runs_index(root: str, fp: tuple) -> list[dict]:
    """One record per finished run under `root`, oldest first (fp: `fingerprint(root)`, the cache key)."""
    return [_record(r, str(r.path.relative_to(root))) for r in list_runs(root)]


def _record(r: Run, folder: str) -> dict:
    return {"path": str(r.path), "folder": folder, "kind": r.kind, "name": r.name, "created": r.created,
            "seed": r.seed, "has_model": r.model_dir.is_dir(), "base": r.base, "analysis": wf.analysis_name(r),
            "metrics": wf.clean(r.metrics), "attack": r.attack.name if r.attack is not None else None}


@st.cache_data(show_spinner=False)
def outside_record(path: str) -> dict | None:
    """The runs index's record of a finished run folder outside the runs root (its folder: the full path), or None
    when `path` is not one."""
    try:
        return _record(Run(Path(path)), path)
    except (OSError, ValueError):
        return None


def runs(root: Path, kind: str | None = None) -> list[dict]:
    return [r for r in runs_index(str(root), fingerprint(root)) if kind is None or r["kind"] == kind]


@st.cache_data(show_spinner=False)
def read_config(path: str) -> dict:
    """config.json as it is on disk, for display; read fields through `read_spec` / the runs index."""
    return wf.clean(Run(Path(path)).config)


@st.cache_data(show_spinner=False)
def read_spec(path: str):
    """The run's typed spec (`Run.spec`, `workbench.record`)."""
    return Run(Path(path)).spec


@st.cache_data(show_spinner=False)
def read_samples(path: str) -> list[dict]:
    return Run(Path(path)).samples()


@st.cache_data(show_spinner="drawing figures…")
def analysis_figures(path: str) -> tuple[dict[str, go.Figure], str | None]:
    """(figures, error): figures of an analysis run through its registered plots module."""
    try:
        return wf.analysis_figures(Run(Path(path))), None
    except Exception as err:  # a broken plot module must not take the app down
        return {}, f"{type(err).__name__}: {err}"


# ------------------------------------------------------------------------------------------ display


def empty(what: str, command: str) -> None:
    """The one empty-state message: what is missing and the command that makes it."""
    st.info(f"No {what} yet — run `{command}`", icon="ℹ️")


def label(rec: dict) -> str:
    """How a run is named in select boxes: its folder under the root, and the base model."""
    base = wf.short_ref(rec.get("base"))
    return f"{rec['folder']}  ·  from {base}" if rec.get("base") else rec["folder"]


def show_figures(figs: dict[str, go.Figure], key: str) -> None:
    for name, fig in figs.items():
        st.plotly_chart(fig, theme=None, key=f"{key}-{name}", width="content")


def show_saved_figures(path: str, key: str) -> int:
    """Figures the run folder already holds: the fallback when its plots module cannot draw them, or for a run
    whose analysis name is not in `ANALYSES` (a folder written by another workbench). Returns how many."""
    import streamlit.components.v1 as components

    saved = wf.saved_figures(Path(path))
    for name, p in saved.items():
        st.caption(name)
        if p.suffix == ".html":
            components.html(p.read_text(encoding="utf-8"), height=620, scrolling=True)
        else:
            st.image(str(p))
    return len(saved)


def metrics_table(metrics: dict) -> None:
    """Headline numbers of a run as a two-column table (rates as 'v% [lo–hi] n')."""
    rows = []
    for k, v in metrics.items():
        if is_rate(v):
            rows.append({"metric": k, "value": fmt_rate(v)})
        elif isinstance(v, (int, float, str, bool)) or v is None:
            rows.append({"metric": k, "value": "—" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))})
        else:
            rows.append({"metric": k, "value": str(v)})
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch")


def study_runs(root: Path, name: str) -> list[dict]:
    """Finished runs of one registered study (record kind "study", run name `name`), oldest first."""
    return [r for r in runs(root, "study") if r["name"] == name]


@st.cache_data(show_spinner="reading the study…")
def read_study(path: str):
    """(typed result, error) of a study run, through the STUDIES registry; a damaged run is an error string, never
    an exception that would take the app down."""
    try:
        return wf.load_study(Run(Path(path))), None
    except Exception as err:
        return None, f"{type(err).__name__}: {err}"


def pick_run(recs: list[dict], title: str, key: str) -> dict:
    """A select box over `recs`, newest first."""
    recs = list(reversed(recs))
    i = st.selectbox(title, range(len(recs)), format_func=lambda i: label(recs[i]), key=key)
    return recs[i]


def analysis_section(root: Path, name: str, title: str, command: str, key: str) -> None:
    """Pick one run of analysis `name`, show its headline numbers and figures; an empty state when none."""
    recs = [r for r in runs(root, "analysis") if analysis_key(r["analysis"] or "") == analysis_key(name)]
    registered = wf.registered_name(name) is not None
    if not recs:
        empty(f"{title.lower()} runs ({name} analysis)", command)
        return
    rec = pick_run(recs, f"{title} run", key=f"{key}-run")
    spec = read_spec(rec["path"])
    st.caption(f"model: `{wf.short_ref(spec.model)}`"
               + (f" · compare: `{wf.short_ref(spec.compare)}`" if spec.compare else "")
               + f" · run folder: `{rec['path']}`")
    with st.expander("headline numbers and parameters", expanded=False):
        metrics_table(rec["metrics"])
        st.json(wf.clean(spec.params), expanded=False)
    if registered:
        figs, err = analysis_figures(rec["path"])
        if err:
            st.warning(f"could not draw this run's figures ({err}); showing the figures saved with the run")
            if not show_saved_figures(rec["path"], key):
                st.caption("(the run folder holds no saved figures)")
        elif not figs:
            st.caption("this result has no figures")
        show_figures(figs, key)
    elif not show_saved_figures(rec["path"], key):
        st.caption("(the run folder holds no saved figures)")
