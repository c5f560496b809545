"""Figure export: HTML always (interactive), PNG and SVG through kaleido.

HTML pages are self-contained by default (the explorer embeds run folders' pages as text, so they cannot load a
script from beside them); `plotlyjs="shared"` makes the pages of one folder share a single plotly.min.js next to
them instead of carrying a 4.7 MB copy each (docs and `workbench figures`, where a folder holds many pages).

Kaleido ≥ 1 drives a Chrome/Chromium; `make setup` installs Debian's chromium. If no browser is found the
static formats are skipped with one warning instead of failing the whole analysis.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import plotly.graph_objects as go

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def _ensure_browser_env() -> bool:
    import os

    if os.environ.get("BROWSER_PATH"):
        return True
    for name in _BROWSERS:
        path = shutil.which(name)
        if path:
            os.environ["BROWSER_PATH"] = path  # kaleido/choreographer look here
            return True
    return False


def write_html(fig: go.Figure, path: str | Path, shared_js: Path | None = None) -> list[Path]:
    """fig as path; with shared_js, the page loads that plotly.min.js (written there unless it already holds this
    plotly's copy) by a relative link instead of embedding it. Returns the files written."""
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if shared_js is None:
        fig.write_html(str(path), include_plotlyjs=True, full_html=True)
        return [path]
    from plotly.offline import get_plotlyjs

    written = []
    js = get_plotlyjs()
    if not shared_js.exists() or shared_js.read_text(encoding="utf-8") != js:
        shared_js.parent.mkdir(parents=True, exist_ok=True)
        shared_js.write_text(js, encoding="utf-8")
        written.append(shared_js)
    fig.write_html(str(path), include_plotlyjs=os.path.relpath(shared_js, path.parent), full_html=True)
    return [*written, path]


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
        written += write_html(fig, folder / f"{name}.html",
                              folder / "plotly.min.js" if plotlyjs == "shared" else None)
    static = [f for f in formats if f in ("png", "svg", "pdf")]
    if static:
        if not _ensure_browser_env():
            warnings.warn("no Chrome/Chromium found: skipping PNG/SVG export (run `make setup`, which installs "
                          "Debian's chromium)", stacklevel=2)
            return written
        for fmt in static:
            path = folder / f"{name}.{fmt}"
            fig.write_image(str(path), format=fmt, scale=2 if fmt == "png" else 1)
            written.append(path)
    return written


def export_all(figures: dict[str, go.Figure], folder: str | Path, formats=("html", "png")) -> list[Path]:
    out = []
    for name, fig in figures.items():
        out += export_figure(fig, folder, name, formats)
    return out
