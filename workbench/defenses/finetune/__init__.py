"""Fine-tuning-stage defenses: the provider fine-tunes the user's data, but changes how.

One module per method, each a pydantic spec + the hooks it installs (see `workbench.defenses.DefenseInfo`):

    ldifs          feature-space distance to the aligned model as a regulariser        (extra_loss)
    constrain_sft  token-wise constrained SFT, strong on the first answer tokens       (backward)
    freeze         Freeze / Freeze+ / ML-LR: freeze or slow down safety-critical parts  (param_groups)
    salora         LoRA updates projected off a fixed safety subspace                  (setup, on_step_end)
    filtration     drop flagged user samples: moderation judge, or SAFT spectral score (data)
    safeinstr      mix refusal examples into the user data                             (data)
    lisa           alternate alignment / user data with a proximal term                (next_batch, extra_loss)
    ptst           train without, infer with a safety system prompt                    (inference)
    bea            backdoor trigger paired with refusals, prepended at inference       (data, inference)

Shared pieces (frozen reference copy, refusal examples, layer/module name matching) are in `common.py`.
"""
