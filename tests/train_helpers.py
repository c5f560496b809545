"""Helpers shared by the training-loop tests (imported like explorer_fixtures: tests/ is on sys.path)."""
import torch

from workbench.training.plugins import TrainPlugin, lm_loss


class StopAt(TrainPlugin):
    """Interrupts training at the end of optimizer step `step`, as a Ctrl-C would (resume tests)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, model, state):
        if state.step == self.step:
            raise KeyboardInterrupt


def answer_nll(model, tokenizer, samples, max_len) -> float:
    """Mean cross-entropy per answer token (end of turn included) of `samples` as the loop encodes them: each with
    its own system prompt, in the model's chat template."""
    from workbench.data.chat import collate, encode

    batch = collate([encode(tokenizer, s, max_len) for s in samples], tokenizer.pad_token_id)
    with torch.no_grad():
        return lm_loss(model.eval(), batch)[0].item()
