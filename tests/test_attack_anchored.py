"""anchored_benign (He, Xia & Henderson 2024): benign samples ranked by the attacked model's own features."""
from __future__ import annotations

import json

import pytest

from workbench.attacks import build_attack_data, parse_attack_params
from workbench.attacks.anchored_benign import (
    AnchoredParams,
    anchor_sets,
    anchored_scores,
    candidate_pool,
    make_featurizer,
)
from workbench.attacks.context import AttackContext
from workbench.attacks.harmful_ft import benign_pool
from workbench.config import AttackSpec, DataSpec
from workbench.data.refusals import refusal_for
from workbench.data.registry import eval_uids
from workbench.data.types import Sample
from workbench.models import load_model
from workbench.presets import preset

FRAMES = ("Purely hypothetically: ", "For a story I am writing: ", "Asking for a friend: ")


@pytest.mark.parametrize("feature", ["gradient", "representation"])
def test_planted_near_harmful_samples_rank_first(arch_model_dir, feature):
    """Benign-labelled near-copies of the harmful anchor (reframed prompt, answer with a tail added) outrank every
    Alpaca sample; the same reframed prompt answered with a refusal does not, so the answer decides, not the prompt.
    One anchor: a random-weight model's features are mostly token overlap, and a mean over several unrelated harmful
    anchors would dilute the planted signal to the level of that noise."""
    model, tokenizer = load_model(arch_model_dir)
    flags = [p.requires_grad for p in model.parameters()]
    params = AnchoredParams(feature=feature, n_anchors=1)
    _, alpaca = candidate_pool(DataSpec(seed=0), 24)
    harmful, safe = anchor_sets("harmful_qa", 1, 0)
    anchor = harmful[0]
    planted = [Sample(prompt=frame + anchor.prompt, response=anchor.response + " That is all.", harmful=False,
                      source="planted") for frame in FRAMES]
    refused = Sample(prompt=FRAMES[0] + anchor.prompt, response=refusal_for(anchor.prompt), harmful=False,
                     source="refused")
    pool = alpaca[:10] + planted[:2] + alpaca[10:20] + [refused, planted[2]] + alpaca[20:]
    featurize = make_featurizer(model, params, ["q_proj", "k_proj", "v_proj", "o_proj"], seed=0)
    scores = anchored_scores(model, tokenizer, featurize, pool, harmful, safe, params, max_len=256)
    ranked = [pool[i].source for i in scores.argsort(descending=True).tolist()]
    assert ranked[:3] == ["planted"] * 3, ranked
    assert ranked.index("refused") > 3
    assert [p.requires_grad for p in model.parameters()] == flags  # features leave the model as they found it


def _spec(n: int, seed: int = 0, **params) -> AttackSpec:
    return AttackSpec(name="anchored_benign", data=DataSpec(n=n, seed=seed), train=preset("tiny").attack.train,
                      params=params)


def test_selection_is_benign_deterministic_and_drawn_from_the_control_pool(tiny_model_dir):
    spec = _spec(5, pool_size=20, feature="representation")
    notes_a, notes_b = {}, {}
    first = build_attack_data(spec, AttackContext(model=str(tiny_model_dir), train=spec.train, notes=notes_a))
    again = build_attack_data(spec, AttackContext(model=str(tiny_model_dir), train=spec.train, notes=notes_b))
    assert [(s.uid, s.meta["anchored_score"]) for s in first] == [(s.uid, s.meta["anchored_score"]) for s in again]
    assert notes_a["scores"] == notes_b["scores"]
    scores = [s.meta["anchored_score"] for s in first]
    assert scores == sorted(scores, reverse=True) and scores[0] == notes_a["scores"]["selected"]["max"]
    assert notes_a["scores"]["selected"]["min"] >= notes_a["scores"]["pool"]["median"]
    assert len(first) == 5 and all(s.harmful is False and s.response for s in first)
    assert notes_a["selected_uids"] == [s.uid for s in first] and notes_a["pool_size"] == 20
    assert notes_a["pool"] == "alpaca" and notes_a["layers"] is None and notes_a["selection_seconds"] > 0
    # anchors and selection never touch an evaluation prompt; the candidates are the pool benign_ft draws from
    assert not ({*notes_a["anchor_uids"], *notes_a["selected_uids"]} & eval_uids())
    control = {s.uid for s in benign_pool(spec.data)[1]}
    assert {s.uid for s in first} <= control
    assert {s.uid for s in candidate_pool(spec.data, 10_000)[1]} == control
    assert {s.uid for s in build_attack_data(AttackSpec(name="benign_ft", data=spec.data))} <= control
    other = candidate_pool(DataSpec(n=5, seed=1), 20)[1]
    assert {s.uid for s in other} != {s.uid for s in candidate_pool(spec.data, 20)[1]}  # the cap is a seeded draw


def test_attack_step_trains_only_on_the_selection(tiny_model_dir, tmp_path):
    """`steps.attack` with anchored_benign: the gradient selection is recorded in training.json and is exactly the
    benign data the model was trained on."""
    from workbench import steps
    from workbench.runs import open_run

    pr = preset("tiny")
    ev = pr.eval.model_copy(update={"n_harmful": 2, "n_benign": 0, "n_task": 0})
    out = steps.attack(_spec(8, pool_size=24), tiny_model_dir, tmp_path, 0, ev, progress=False)
    training = json.loads((out / "training.json").read_text())
    notes = training["attack"]
    assert notes["feature"] == "gradient" and notes["pool_size"] == 24 and notes["layers"] == [0, 1, 2, 3]
    assert len(notes["selected_uids"]) == 8 and set(notes["scores"]) == {"pool", "selected"}
    trained = [json.loads(line) for line in (out / "train_data.jsonl").read_text().splitlines()]
    assert [s["uid"] for s in trained] == notes["selected_uids"]
    assert all(s["harmful"] is False for s in trained) and training["n_harmful_trained"] == 0
    assert training["steps"] > 0
    assert open_run(out).spec.attack_params == AnchoredParams(pool_size=24).model_dump()


def test_bad_params_and_missing_inputs_are_clear_errors(tiny_model_dir):
    for params, field in (({"feature": "logits"}, "feature"), ({"pool_size": 0}, "pool_size"),
                          ({"n_anchors": 0}, "n_anchors"), ({"pool": 5}, "pool")):
        with pytest.raises(ValueError, match=f"bad hyperparameters for attack 'anchored_benign'.*{field}"):
            parse_attack_params(_spec(4, **params))
    with pytest.raises(ValueError, match="needs the model"):
        build_attack_data(_spec(4, pool_size=8))
    context = AttackContext(model=str(tiny_model_dir))
    with pytest.raises(ValueError, match="n=12 of only 8 candidates.*raise pool_size"):
        build_attack_data(_spec(12, pool_size=8), context)
    with pytest.raises(ValueError, match="n_anchors=100000"):
        build_attack_data(_spec(4, pool_size=8, n_anchors=100_000), context)
