"""Figure export: HTML always (interactive, self-contained), PNG and SVG through kaleido.

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


def export_figure(fig: go.Figure, folder: str | Path, name: str, formats=("html", "png")) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    if "html" in formats:
        path = folder / f"{name}.html"
        fig.write_html(str(path), include_plotlyjs=True, full_html=True)
        written.append(path)
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
