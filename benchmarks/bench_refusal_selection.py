"""The refusal direction's candidate selection (the bulk of the quickstart's analysis time), three ways, side by
side in one process on the same model, candidates and prompts (the quickstart's sizes, `presets.full.inside`):

    one batch    float32, each 16-prompt set in one left-padded batch (the forward before length batching)
    float32      float32, prompts in least-padding batches (`common.last_logits`): the exact scores
    screened     bf16 scores for every candidate, float32 re-scores for those that could be chosen
                 (`Spec.screen_dtype`, what the quickstart runs where bf16 is faster)

plus every candidate's bf16 scores (`dtype="bfloat16"`, unverified), to measure |bf16 − float32| against the
screen's margins: the screened choice is float32's whenever every difference stays inside its margin.
Times are CPU seconds of the process, run with one thread (`OMP_NUM_THREADS=1`), so that other jobs on the
machine move them little; wall seconds are recorded beside them. Usage:
`python -m benchmarks.bench_refusal_selection [--quick] [--model RUN ...]` (the first model also times the one-batch
forward; every model checks the choice and the margins).
"""
from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import bench_device, bench_model, save, timer
from workbench.analysis import common
from workbench.analysis import refusal_direction as rd
from workbench.models import boot_bridge, load_model
from workbench.presets import preset

ALIGNED = "results/defense-grid/align/sft/align-sft-20261129-163350"  # the archived SFT-aligned SmolLM2
KEYS = ("bypass", "induce", "kl")


def one_batch(lengths, max_rows: int) -> list[list[int]]:
    """`last_logits`'s batches before length batching: consecutive rows, `max_rows` at a time."""
    n = len(lengths)
    return [list(range(s, min(n, s + max_rows))) for s in range(0, n, max_rows)]


def chosen(sel: dict) -> list:
    return [sel["selected"]["position_index"], sel["selected"]["layer"], sel["selected"]["passed_filters"]]


def measure(name: str, spec: rd.Spec, timed: bool) -> dict:
    model, tok = load_model(name, device=bench_device())
    P = common.post_instruction_positions(tok)
    inputs = rd.selection_inputs(boot_bridge(load_model(name, device=bench_device())[0], tok), tok, spec, P)
    tokens = common.refusal_tokens(tok)

    def select(label: str, **kw) -> tuple[float, dict]:
        """(CPU seconds of this process, the selection): with one thread, CPU time is what the selection computes,
        little moved by other jobs on the machine (wall seconds are kept beside it in `wall`)."""
        cpu = time.process_time()
        with timer() as t:
            sel = rd.select_direction(model, inputs.directions, inputs.harmful_val, inputs.harmless_val, tokens,
                                      spec.model_copy(update=kw))
        wall[label] = round(t["seconds"], 2)
        return time.process_time() - cpu, sel

    wall: dict = {}

    out: dict = {"model": name}
    if timed:
        batches = common.least_padding_batches
        common.least_padding_batches = one_batch
        try:
            out["one_batch_seconds"], before = select("one_batch")
        finally:
            common.least_padding_batches = batches
        out["one_batch_chosen"] = chosen(before)
    fp32_s, fp32 = select("float32")
    screened_s, screened = select("screened", screen_dtype="bfloat16")
    bf16_s, bf16 = select("bfloat16", dtype="bfloat16")
    evaluated = ~fp32["bypass"].isnan()
    diff = {k: float((bf16[k] - fp32[k])[evaluated].abs().max()) for k in KEYS}
    margin = {"bypass": spec.screen_bypass_margin, "induce": spec.screen_induce_margin, "kl": spec.screen_kl_margin}
    near = (fp32["kl"] - spec.kl_threshold).abs() <= spec.screen_kl_margin
    return out | {
        "float32_seconds": fp32_s, "screened_seconds": screened_s, "bf16_seconds": bf16_s,
        "candidates": int(evaluated.sum()), "rescored": len(screened["selected"]["rescored"]),
        "float32_chosen": chosen(fp32), "screened_chosen": chosen(screened), "bf16_chosen": chosen(bf16),
        "screened_equals_float32": chosen(screened) == chosen(fp32)
        and screened["selected"]["bypass"] == fp32["selected"]["bypass"],
        "bf16_equals_float32": chosen(bf16) == chosen(fp32),
        "max_abs_bf16_minus_float32": diff, "margins": margin,
        "within_margins": all(diff[k] < margin[k] for k in KEYS),
        "candidates_with_kl_near_threshold": int(near.sum()), "wall_seconds": wall}


def main(quick: bool, models: list[str] | None = None) -> None:
    torch.manual_seed(0)
    names = models or [bench_model(True) if quick else ALIGNED]
    inside = preset("tiny" if quick else "full").inside
    spec = rd.Spec(**{k: v for k, v in inside.items() if k in rd.Spec.model_fields})
    rows = [measure(name, spec, timed=i == 0) for i, name in enumerate(names)]
    first = rows[0]
    r = lambda a, b: round(a / b, 2)  # noqa: E731
    speed = {"screened vs one batch": r(first["one_batch_seconds"], first["screened_seconds"]),
             "float32 vs one batch": r(first["one_batch_seconds"], first["float32_seconds"]),
             "screened vs float32": r(first["float32_seconds"], first["screened_seconds"])}
    same = sum(row["screened_equals_float32"] for row in rows)
    headline = {f"selection speed-up, {k}": f"{v}×" for k, v in speed.items()}
    headline |= {"screened choice = float32's": f"{same} of {len(rows)} models",
                 "bf16 differences within the margins": f"{sum(row['within_margins'] for row in rows)} of "
                                                         f"{len(rows)} models",
                 f"selection, one batch ({first['candidates']} candidates)": f"{first['one_batch_seconds']:.0f} s"}
    save("refusal_selection", {"quick": quick, "spec": spec.model_dump(), "speed_up": speed, "models": rows},
         headline, goals={"selection speed-up, screened vs one batch": "≥ 2×",
                          "screened choice = float32's": "all"})


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--model", action="append", help="aligned model(s); the first is timed (default: the archived "
                                                     "SFT-aligned SmolLM2, tiny-llama with --quick)")
    args = ap.parse_args()
    main(args.quick, args.model)
