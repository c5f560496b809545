"""Attack kinds side by side: `Leaderboard.vs_attack` pairs every attack with harmful_ft p = 0.1 on the same model."""
from __future__ import annotations

from workbench.config import AttackSpec, DataSpec
from workbench.leaderboard import build, write
from workbench.record import AlignRunSpec, AttackRunSpec
from workbench.runs import RunWriter

PROMPTS = [f"harmful prompt {i}" for i in range(40)]


def _attack_run(root, aligned, name: str, p: float, harmful: set[int]):
    spec = AttackRunSpec(attack=AttackSpec(name=name, data=DataSpec(p=p)), model=str(aligned))
    hs = 100.0 * len(harmful) / len(PROMPTS)
    with RunWriter(root, "attack", name, spec) as run:
        run.write_metrics({"hs": {"value": hs, "low": 0.0, "high": 100.0, "n": len(PROMPTS)}})
        run.write_samples({"set": "harmful", "prompt": q, "harmful": i in harmful, "coherent": True,
                           "refusal": i not in harmful} for i, q in enumerate(PROMPTS))
    return run.final_path


def test_vs_attack_pairs_each_kind_with_the_reference_on_the_same_prompts(tmp_path):
    with RunWriter(tmp_path, "align", "sft", AlignRunSpec(model="tiny-llama")) as run:
        run.write_metrics({})
    aligned = run.final_path
    _attack_run(tmp_path, aligned, "harmful_ft", 0.1, harmful=set(range(4)))
    _attack_run(tmp_path, aligned, "pure_bad", 1.0, harmful=set(range(2, 22)))  # +16 of 40 flagged, 2 lost
    _attack_run(tmp_path, aligned, "harmful_ft", 0.3, harmful=set(range(10)))  # not the reference (p = 0.3)
    board = build(tmp_path)
    rows = {(d["attack"], d["p"], d["metric"]): d for d in board.vs_attack(metrics=("hs",))}
    assert set(rows) == {("pure_bad", 1.0, "hs"), ("harmful_ft", 0.3, "hs")}
    d = rows[("pure_bad", 1.0, "hs")]
    assert (d["only_a"], d["only_b"], d["n"]) == (18, 2, 40) and d["value"] == 100.0 * 16 / 40
    assert d["p_value"] < 0.01
    written = {p.name for p in write(board, tmp_path / "lb", formats=())}
    assert "lb_vs_attack.md" in written
    table = (tmp_path / "lb_vs_attack.md").read_text()
    assert "HS − harmful_ft p = 0.1" in table and "| pure_bad | 1 |" in table
