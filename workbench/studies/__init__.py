"""Reproducible studies of the survey's three open research questions (docs/open-questions.md).

One module per study, each a deterministic function of a typed spec and a seed that writes ordinary run folders
(read by `workbench figures` and the explorer's Studies tab):

- `safety_params`: which criterion finds the safety-critical weights, and when it should act (Future Direction I);
- `basins`: whether alignment-stage defenses widen the safety basin or only lower the harmful loss (II);
- `ascent`: a gradient-ascent term that does not collapse the model (III).

A study sits beside the sweep and the leaderboard: it composes steps, analyses and defenses, never the CLI.
"""
