"""Helpers shared by the training-loop tests (imported like explorer_fixtures: tests/ is on sys.path)."""
from workbench.training.plugins import TrainPlugin


class StopAt(TrainPlugin):
    """Interrupts training at the end of optimizer step `step`, as a Ctrl-C would (resume tests)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, model, state):
        if state.step == self.step:
            raise KeyboardInterrupt
