"""Analysis registry. An analysis is one module exposing

    Spec      pydantic hyperparameters (subclass of workbench.config.Spec)
    run(ctx: AnalysisContext, spec) -> <Name>Result   (a frozen AnalysisResult dataclass)

and a plot module `workbench/plots/<name>.py` with pure `plot_*(result) -> go.Figure` functions and a
`figures(result) -> dict[name, Figure]` collecting them. Adding one = two files + its name in NAMES.
`workbench analyze NAME --model M [--compare M2] --out DIR` writes DIR/result.json, tensors and figures.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from workbench.vocabulary import analysis_key, analysis_module

# The registered analyses, by their CLI name (`workbench.vocabulary.analysis_key` spelling: "refusal-direction");
# each is workbench/analysis/<module>.py with its figures in workbench/plots/<module>.py (`analysis_module`).
NAMES = ("drift", "landscape", "wanda", "patching", "probing", "refusal-direction", "logit-attribution",
         "collapse")
# name -> (analysis module, plots module); modules are imported lazily (they pull in heavy libraries).
ANALYSES: dict[str, tuple[str, str]] = {
    name: (f"workbench.analysis.{analysis_module(name)}", f"workbench.plots.{analysis_module(name)}") for name in NAMES
}


@dataclass
class AnalysisContext:
    """What an analysis gets: model references (loaded on demand, cached), seed, progress flag."""

    model: str
    compare: str | None = None
    seed: int = 0
    progress: bool = True
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def load(self, which: str = "model"):
        """(model, tokenizer) for `which` in {"model", "compare"} — a fresh HF model, loaded once."""
        from workbench.models import load_model  # deferred: torch

        ref = self.model if which == "model" else self.compare
        if ref is None:
            raise ValueError("this analysis needs a second model: pass --compare MODEL")
        if which not in self._cache:
            self._cache[which] = load_model(ref)
        return self._cache[which]


def get_analysis(name: str):
    """(module, plots module) of a registered analysis (either spelling of its name)."""
    name = analysis_key(name)
    if name not in ANALYSES:
        raise ValueError(f"unknown analysis {name!r}; known analyses: {', '.join(sorted(ANALYSES)) or 'none yet'}")
    mod, plots = ANALYSES[name]
    return importlib.import_module(mod), importlib.import_module(plots)
