"""scripts/choose_alignment.py on tiny-gemma3: each candidate is aligned without touching a test set, evaluated on
the validation split only, skipped when done; the targets read metrics.json's percentages; the choice is the
qualifying setting with the fewest steps."""
from __future__ import annotations

from script_helpers import load_script

from workbench.runs import list_runs


def rate(value: float) -> dict:
    return {"value": value, "k": 0, "n": 100, "low": 0.0, "high": 100.0}


def test_targets_read_percentages_and_the_cheapest_qualifying_setting_is_chosen():
    script = load_script("choose_alignment")
    assert script.meets({"refusal_harmful": rate(99.0), "refusal_benign": rate(13.0)})
    assert not script.meets({"refusal_harmful": rate(79.0), "refusal_benign": rate(13.0)})
    assert not script.meets({"refusal_harmful": rate(99.0), "refusal_benign": rate(21.0)})
    rows = [{"setting": "a", "steps": 150, "lr": 3e-4, "meets_targets": True},
            {"setting": "b", "steps": 75, "lr": 1e-3, "meets_targets": True},
            {"setting": "c", "steps": 40, "lr": 1e-3, "meets_targets": False}]
    assert script.choose(rows)["setting"] == "b"
    assert script.choose(rows[2:]) is None
    assert script.parse_setting("lr=1e-3,epochs=3") == {"lr": 1e-3, "epochs": 3}


def test_a_candidate_is_aligned_and_judged_on_validation_only_and_skipped_when_done(tmp_path):
    script = load_script("choose_alignment")
    root = tmp_path / "lr=0.001,epochs=1"
    row = script.run_candidate("tiny-gemma3", "tiny", {"lr": 1e-3, "epochs": 1}, root, 0, None)
    (aligned,) = list_runs(root / "align", "align")
    assert aligned.metrics.get("refusal_harmful") is None  # the alignment measured nothing on the test sets
    assert aligned.spec.align.train.lr == 1e-3
    (val,) = list_runs(root / "validation", "eval")
    assert val.spec.harmful_prompts.startswith("validation split") and row["validation"] == str(val.path)
    assert row["refusal_harmful"] == val.metrics["refusal_harmful"] and row["steps"] > 0
    again = script.run_candidate("tiny-gemma3", "tiny", {"lr": 1e-3, "epochs": 1}, root, 0, None)
    assert again == row and len(list_runs(root)) == 2  # nothing trained or evaluated twice
