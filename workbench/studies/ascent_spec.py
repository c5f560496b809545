"""What an ascent study is (`AscentStudySpec`), its cells and where each cell's run folders live.

The study is one run folder DIR (kind "study", name "ascent"; its record holds the spec) with ordinary run folders
inside:

    DIR/cells/<key>/align/          the align run (SFT + weight · ascent term of the kind; `sft`: no term)
    DIR/cells/<key>/collapse/       the `collapse` analysis of the aligned model (validation benign pairs)
    DIR/cells/<key>/attack/         the preset's attack on the aligned model (its test sets are not evaluated)
    DIR/cells/<key>/validation/     the attacked model on the validation split (HS, FA): what the choice reads
    DIR/cells/<key>/test/           the attacked model on the test sets: only the chosen cells and `sft`
    DIR/ascent-summary.json         `AscentSummary` (`workbench.studies.ascent_summary`; run paths relative to DIR)
    DIR/ascent-status.json          the cells that failed (a study with failures stays staged: rerun to retry them)
    DIR/figures/                    HS vs weight, collapse vs weight, the chosen configurations on test

A cell's key is `<kind>-w<weight>` (`npo-w0.1`), and `sft` for the control without an ascent term.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, field_validator

from workbench.config import Spec
from workbench.defenses.alignment.ascent_losses import get_ascent_loss

STUDY = "ascent"  # the run's name in the STUDIES registry
RESULT_FILE = "ascent-summary.json"
STATUS_FILE = "ascent-status.json"
CELLS = "cells"
STEPS = ("align", "collapse", "attack", "validation", "test")
BASELINE = "sft"


class AscentStudySpec(Spec):
    model: str  # the model before alignment (a registered name or folder)
    kinds: list[str] = Field(min_length=1)  # ascent losses (ASCENT_LOSSES)
    weights: list[float] = Field(min_length=1)  # the weight grid, each > 0
    p: float = Field(0.1, ge=0, le=1)  # the attack's harmful ratio
    seed: int = 0
    preset: str = "full"
    beta: float = Field(0.1, gt=0)  # NPO's β
    # collapse and FA limits of the choice, against the `sft` control (percentage points; a ratio for perplexity)
    max_incoherent_rise: float = Field(10.0, ge=0)  # aligned model: incoherent benign answers, points over sft
    max_non_word_rise: float = Field(10.0, ge=0)  # aligned model: non-word share of benign answers, points over sft
    max_ppl_ratio: float = Field(1.5, ge=1)  # aligned model: benign answer perplexity, at most this × sft's
    max_fa_drop: float = Field(5.0, ge=0)  # attacked model: validation FA, at most this many points below sft's

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, v: list[str]) -> list[str]:
        for k in v:
            get_ascent_loss(k)
        if len(set(v)) != len(v):
            raise ValueError(f"kinds repeat: {v}")
        return v

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: list[float]) -> list[float]:
        if any(w <= 0 for w in v):
            raise ValueError(f"weights must be > 0 (the sft control is weight 0 and always included), got {v}")
        if len(set(v)) != len(v):
            raise ValueError(f"weights repeat: {v}")
        return v

    def identity(self) -> dict:
        """What names the staging folder, and what a study reusing another's cells must match: what every cell's
        runs depend on (the grid may grow and the limits may change; they only change which cells run and which is
        chosen)."""
        return self.model_dump(include={"model", "p", "seed", "preset", "beta"})

    def cells(self) -> list[Cell]:
        return [Cell(BASELINE, 0.0)] + [Cell(k, w) for k in self.kinds for w in self.weights]


@dataclass(frozen=True)
class Cell:
    kind: str  # an ascent loss, or BASELINE
    weight: float

    @property
    def key(self) -> str:
        return BASELINE if self.kind == BASELINE else f"{self.kind}-w{self.weight:g}"

    @property
    def is_baseline(self) -> bool:
        return self.kind == BASELINE


def step_root(out: str | Path, cell: Cell, step: str) -> Path:
    if step not in STEPS:
        raise ValueError(f"unknown study step {step!r}; steps: {', '.join(STEPS)}")
    return Path(out) / CELLS / cell.key / step


def study_spec(model: str, kinds: list[str], weights: list[float], p: float, seed: int = 0,
               preset_name: str = "full", **limits) -> AscentStudySpec:
    """The spec from command-line values; a bad value is one ValueError line naming the field."""
    from pydantic import ValidationError  # deferred: only the boundary needs it

    from workbench.models.registry import MODELS
    from workbench.presets import preset

    preset(preset_name)  # unknown presets fail here, naming the two
    if model not in MODELS and not Path(model).is_dir():
        raise ValueError(f"--model {model}: neither a registered model ({', '.join(sorted(MODELS))}) nor a folder")
    try:
        return AscentStudySpec(model=model, kinds=kinds, weights=weights, p=p, seed=seed, preset=preset_name,
                               **limits)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise ValueError(f"ascent study: {where}: {err['msg']}") from None
