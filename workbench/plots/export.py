"""Figure export: HTML always (interactive), PNG and SVG through kaleido.

HTML pages are self-contained by default (the explorer embeds run folders' pages as text, so they cannot load a
script from beside them); `plotlyjs="shared"` makes the pages of one folder share a single plotly.min.js next to
them instead of carrying a multi-megabyte copy each (docs and `workbench figures`, where a folder holds many
pages).

Kaleido ≥ 1 drives a Chrome/Chromium; `make setup` installs Debian's chromium. If no browser is found the
static formats are skipped with one warning instead of failing the whole analysis.
"""
from __future__ import annotations

import os
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import plotly.graph_objects as go

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def _ensure_browser_env() -> bool:
    if os.environ.get("BROWSER_PATH"):
        return True
    for name in _BROWSERS:
        path = shutil.which(name)
        if path:
            os.environ["BROWSER_PATH"] = path  # kaleido/choreographer look here
            return True
    return False


def with_one_retry(render: Callable[[], None]) -> None:
    """Run a kaleido render, once more after a pause if it fails. Why: on a loaded machine the browser page kaleido
    drives can be asked to render before its own scripts have loaded, and fails with a JavascriptError
    ("kaleido_scopes is not defined") that a second try does not see; a second failure is raised."""
    try:
        render()
    except Exception:  # kaleido raises its own and choreographer's error types; retry whichever
        time.sleep(1.0)
        render()


def write_shared_plotlyjs(path: Path) -> list[Path]:
    """plotly.js at path for pages that link to it, unless path already holds this plotly's copy. Returns the
    files written (none or path)."""
    from plotly.offline import get_plotlyjs  # deferred: plotly

    js = get_plotlyjs()
    if path.exists() and path.read_text(encoding="utf-8") == js:
        return []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(js, encoding="utf-8")
    return [path]


def write_html(fig: go.Figure, path: str | Path, shared_js: Path | None = None) -> Path:
    """fig as path: self-contained, or with shared_js, loading that plotly.min.js (see `write_shared_plotlyjs`)
    by a relative link instead of embedding it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    include = True if shared_js is None else os.path.relpath(shared_js, path.parent)
    fig.write_html(str(path), include_plotlyjs=include, full_html=True)
    return path


def export_figure(fig: go.Figure, folder: str | Path, name: str, formats=("html", "png"),
                  plotlyjs: str = "inline") -> list[Path]:
    """folder/name.<fmt> for each format; plotlyjs "inline" (self-contained page) or "shared"
    (folder/plotly.min.js, see the module docstring)."""
    if plotlyjs not in ("inline", "shared"):
        raise ValueError(f"plotlyjs must be 'inline' or 'shared', not {plotlyjs!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    if "html" in formats:
        shared_js = folder / "plotly.min.js" if plotlyjs == "shared" else None
        if shared_js is not None:
            written += write_shared_plotlyjs(shared_js)
        written.append(write_html(fig, folder / f"{name}.html", shared_js))
    static = [f for f in formats if f in ("png", "svg", "pdf")]
    if static:
        if not _ensure_browser_env():
            warnings.warn("no Chrome/Chromium found: skipping PNG/SVG export (run `make setup`, which installs "
                          "Debian's chromium)", stacklevel=2)
            return written
        for fmt in static:
            path = folder / f"{name}.{fmt}"
            with_one_retry(lambda path=path, fmt=fmt: fig.write_image(str(path), format=fmt,
                                                                      scale=2 if fmt == "png" else 1))
            written.append(path)
    return written


def export_all(figures: dict[str, go.Figure], folder: str | Path, formats=("html", "png")) -> list[Path]:
    out = []
    for name, fig in figures.items():
        out += export_figure(fig, folder, name, formats)
    return out
