"""One spelling per concept: defense stages, analysis names, metric titles and how a rate is written.

The bottom layer: it imports nothing from workbench, so the registries, the leaderboard, the figures, the plots,
the explorer and the commands all read their words from here.

    stages    ALIGNMENT, FINE_TUNING, POST_FINE_TUNING (STAGES), and NONE for an attacked model no stage
              defended (BOARD_STAGES, the leaderboard's order). `parse_stage` takes them and the legacy
              spellings `finetune` / `post` (old commands and registrations keep working)
    analyses  the hyphenated CLI names ("refusal-direction"); `analysis_key` reads either spelling a run
              config may hold, `analysis_module` is the file name under workbench/analysis and workbench/plots
    metrics   METRIC_TITLES: per rate metric a short title (tables, legends) and a long one (axes, explorer);
              fa_<task> rates are titled by rule (`short_title`, `long_title`, `axis_title`)
    rates     `is_rate` and `fmt_rate`, the one way a rate with its 95 % interval is written
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

# ------------------------------------------------------------------------------------------- stages

ALIGNMENT = "alignment"
FINE_TUNING = "fine-tuning"
POST_FINE_TUNING = "post-fine-tuning"
NONE = "none"  # a leaderboard row of an attacked model that no stage defended (e.g. the non-aligned model)

Stage = Literal["alignment", "fine-tuning", "post-fine-tuning"]
STAGES: tuple[str, ...] = (ALIGNMENT, FINE_TUNING, POST_FINE_TUNING)  # the defense stages, in pipeline order
BOARD_STAGES: tuple[str, ...] = (NONE, *STAGES)  # the stages of leaderboard rows, in display order
LEGACY_STAGES = {"finetune": FINE_TUNING, "post": POST_FINE_TUNING}  # older registry and CLI spellings


def parse_stage(name: str, *, none: bool = False) -> str:
    """The canonical spelling of stage `name` (a canonical name or a legacy one, any case); with `none`, also
    NONE (the leaderboard's undefended rows). Anything else is one ValueError naming the valid stages."""
    key = str(name).strip().lower()
    stage = LEGACY_STAGES.get(key, key)
    valid = BOARD_STAGES if none else STAGES
    if stage not in valid:
        legacy = ", ".join(f"{k} = {v}" for k, v in LEGACY_STAGES.items())
        raise ValueError(f"unknown stage {name!r}; use {', '.join(valid)} (older spellings: {legacy})")
    return stage


# ----------------------------------------------------------------------------------------- analyses


def analysis_key(name: str) -> str:
    """The one spelling of an analysis name: lower case, words joined by '-' ("refusal_direction" →
    "refusal-direction"), so a run config that recorded either spelling reads the same."""
    return str(name).strip().lower().replace("_", "-")


def analysis_module(name: str) -> str:
    """The module file name of analysis `name`: workbench/analysis/<it>.py and workbench/plots/<it>.py."""
    return analysis_key(name).replace("-", "_")


# ------------------------------------------------------------------------------------------ metrics

# rate metric -> (short title: tables, legends; long title: axes, the explorer's tables), headline order;
# fa_<task> (fine-tune accuracy on the user's task) is titled by rule
METRIC_TITLES: dict[str, tuple[str, str]] = {
    "hs": ("HS", "harmful score HS"),
    "hs_plus": ("HS+", "HS+ harmful or incoherent"),
    "refusal_harmful": ("refusal harmful", "refusal rate on harmful prompts"),
    "refusal_benign": ("refusal benign", "refusal rate on benign prompts"),
}
FA_PREFIX = "fa_"


def _title(metric: str, long: bool) -> str:
    if metric in METRIC_TITLES:
        return METRIC_TITLES[metric][long]
    if metric.startswith(FA_PREFIX):
        return f"{'fine-tune accuracy ' if long else ''}FA {metric[len(FA_PREFIX):]}"
    return metric.replace("_", " ")


def short_title(metric: str) -> str:
    """"HS", "HS+", "FA sst2", "refusal benign": a metric in a table header or a legend."""
    return _title(metric, long=False)


def long_title(metric: str) -> str:
    """"harmful score HS", "fine-tune accuracy FA sst2": a metric spelled out."""
    return _title(metric, long=True)


def axis_title(metric: str) -> str:
    """The long title of a rate axis: "harmful score HS (%)"."""
    return f"{long_title(metric)} (%)"


# -------------------------------------------------------------------------------------------- rates


# metrics.json: HS / HS+ / refusal per benchmark of a harmful set that mixes sources ({source: {metric: rate}})
BY_SOURCE = "harmful_by_source"


def is_rate(v) -> bool:
    """A metrics.json rate: {"value": %, "low": %, "high": %, "n": int, ...}."""
    return isinstance(v, dict) and {"value", "low", "high"} <= set(v)


def rate_keys(metrics_list: Iterable[dict]) -> list[str]:
    """Rate metric names present in any of `metrics_list`, headline rates first."""
    present = {k for m in metrics_list for k, v in m.items() if is_rate(v)}
    ordered = [k for k in METRIC_TITLES if k in present]
    return ordered + sorted(present - set(ordered))


def fmt_rate(v, *, decimals: int = 1, percent: bool = True, n: bool = True, counts: bool = False,
             missing: str = "—") -> str:
    """"35.0% [20.1–52.3] n=40": a rate (a metrics.json dict, or anything with `to_dict()` such as
    `evaluation.stats.Rate`) with its 95 % interval; `missing` for anything that is not a rate.

        decimals  digits after the point: "35% [20–52] n=40" with 0
        percent   the % sign after the value; off where the table says % once
        n         " n=40" when the rate records its n; off where one n holds for the whole table
        counts    " (14/40)", successes out of n, instead of " n=40"
    """
    if hasattr(v, "to_dict"):
        v = v.to_dict()
    if not is_rate(v):
        return missing
    d = decimals
    out = f"{v['value']:.{d}f}{'%' if percent else ''} [{v['low']:.{d}f}–{v['high']:.{d}f}]"
    if counts and "k" in v and "n" in v:
        return f"{out} ({v['k']}/{v['n']})"
    if n and "n" in v:
        return f"{out} n={v['n']}"
    return out
