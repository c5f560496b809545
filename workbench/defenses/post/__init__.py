"""Post-fine-tuning defenses: the provider repairs the fine-tuned model after the fact, without its data.

One module per method, each a pydantic spec + a `repair(params, ctx) -> RepairResult` function
(registered as `DefenseInfo.repair`); `workbench.steps.repair` loads the models, calls it, saves the repaired
model as a "repair" run folder and evaluates it like any attacked model:

    safelora   project each layer's fine-tuning update onto the alignment subspace W_aligned − W_unaligned
               when the update is dissimilar to its projection                           (Hsu+ 2024)
    antidote   Wanda scores on harmful data, prune the top fraction of each weight row   (Huang+ 2024)

`common.py` holds the context and result types they share.
"""
