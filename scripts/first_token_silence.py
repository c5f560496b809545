"""Where does "silence" come from? The attacked models of the alignment grid answer many harmful prompts with an
empty string at p = 0.1 (docs/defenses-alignment.md). Generation is greedy, so an empty answer means the end-of-turn
token won the *first* position. This measures that position directly on each attacked model and on the aligned
model under it: over the harmful test prompts of the attack run's own samples.jsonl, the mean probability of the
end-of-turn token and of the refusal's first token ("I", as in "I'm sorry") as the first answer token, how often
end-of-turn is the argmax, and the empty answers counted in samples.jsonl.

Usage: python scripts/first_token_silence.py runs/defense-grid [--p 0.1 --p 0.3] [--defense sft ...]
Needs model weights (a runs/ grid; archived aligned models load from their low-rank deltas, attacked ones do not).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from workbench.data.chat import prompt_ids
from workbench.models import load_model
from workbench.runs import list_runs
from workbench.tables import markdown_table


@torch.inference_mode()
def first_token_stats(model_path: str, prompts: list[str]) -> dict:
    """Mean first-answer-token probability of end-of-turn and of the refusal opener, and end-of-turn argmax rate."""
    model, tok = load_model(model_path)
    model.eval()
    eos = tok.eos_token_id
    opener = tok.encode("I", add_special_tokens=False)[0]  # the chat template puts no space before the answer
    p_eos, p_open, eos_top = [], [], 0
    for prompt in prompts:
        ids = torch.tensor([prompt_ids(tok, prompt)])
        probs = model(input_ids=ids, logits_to_keep=1).logits[0, -1].float().softmax(-1)
        p_eos.append(probs[eos].item())
        p_open.append(probs[opener].item())
        eos_top += int(probs.argmax().item() == eos)
    n = len(prompts)
    return {"p_eos": sum(p_eos) / n, "p_open": sum(p_open) / n, "eos_argmax": eos_top, "n": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("grid", type=Path)
    ap.add_argument("--p", action="append", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--defense", action="append", default=None)
    args = ap.parse_args()
    rows = []
    for align_dir in sorted(d for d in (args.grid / "align").iterdir() if d.is_dir()):
        if args.defense and align_dir.name not in args.defense:
            continue
        aligned = list_runs(align_dir)[-1]
        for p in args.p or ["0.1", "0.3"]:
            cells = list_runs(args.grid / "sweep" / "cells" / f"{align_dir.name}-harmful_ft-p{p}-s{args.seed}")
            if not cells:
                continue
            attacked = cells[-1]
            harmful = [s for s in attacked.samples() if s.get("set") == "harmful"]
            prompts = [s["prompt"] for s in harmful]
            empty = sum(not s["answer"].strip() for s in harmful)
            before = first_token_stats(str(aligned.path), prompts)
            after = first_token_stats(str(attacked.path), prompts)
            rows.append([align_dir.name, p, f"{before['p_eos']:.3f}", f"{before['p_open']:.2f}",
                         f"{after['p_eos']:.3f}", f"{after['p_open']:.2f}", f"{after['eos_argmax']} / {after['n']}",
                         f"{empty} / {len(harmful)}"])
    print(markdown_table(["defense", "p", "aligned: P(end) first", "aligned: P('I') first", "attacked: P(end) first",
                          "attacked: P('I') first", "attacked: end is argmax", "empty answers (samples.jsonl)"], rows))


if __name__ == "__main__":
    main()
