"""The judge interface (`evaluation.moderation`): tiny random local judges of both folder kinds against hand
computations from their own logits, batching, versions, the registry's names and its errors, `judge score --judge`.
No download: the folders are built here from the project's tiny tokenizer (tests/judge_helpers.py)."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from judge_helpers import PAIRS, guard_tokenizer, save_classifier, save_guard
from typer.testing import CliRunner

from workbench.cli import app
from workbench.evaluation import moderation as M
from workbench.evaluation.judge import judge_version

PROMPTS, RESPONSES = [p for p, _ in PAIRS], [r for _, r in PAIRS]


@pytest.fixture(scope="module")
def judges(tmp_path_factory):
    """Folders: a classifier read through its chat template, the same weights read as a text pair, a guard."""
    root = tmp_path_factory.mktemp("judges")
    return {"classifier": save_classifier(root / "classifier"),
            "pair": save_classifier(root / "pair-classifier", template=False),
            "guard": save_guard(root / "guard")}


def _messages(prompt, response):
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]


# --- what p_harmful returns ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["classifier", "pair", "guard"])
def test_one_probability_per_pair_deterministic_and_batches_equal_one_by_one(judges, kind):
    judge = M.get_judge(judges[kind])
    judge.batch_size = 2  # 5 pairs of different lengths: padded batches, one left over
    scores = judge.p_harmful(PROMPTS, RESPONSES)
    assert len(scores) == len(PAIRS) and all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores)
    assert judge.p_harmful(PROMPTS, RESPONSES) == scores  # deterministic in a process
    fresh = type(judge)(judges[kind], batch_size=5)  # a second load, all pairs in one batch
    np.testing.assert_allclose(fresh.p_harmful(PROMPTS, RESPONSES), scores, atol=1e-5)
    one_by_one = [judge.p_harmful([p], [r])[0] for p, r in PAIRS]
    np.testing.assert_allclose(scores, one_by_one, atol=1e-5)
    assert len(set(np.round(scores, 5))) > 1  # the scores depend on the pair
    assert judge.p_harmful([], []) == []
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        judge.p_harmful(PROMPTS[:2], RESPONSES[:1])


@pytest.mark.parametrize("kind", ["classifier", "pair"])
def test_classifier_is_the_softmax_of_its_unsafe_label(judges, kind):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = judges[kind]
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    prompt, response = PAIRS[1]
    if kind == "classifier":  # the chat template over a user and an assistant turn
        assert tok.chat_template
        ids = tok(tok.apply_chat_template(_messages(prompt, response), tokenize=False), add_special_tokens=False)
    else:  # no template: the text pair
        assert not tok.chat_template
        ids = tok(prompt, response)
    with torch.no_grad():
        logits = model(torch.tensor([ids["input_ids"]])).logits[0]
    expected = torch.softmax(logits, dim=-1)[1].item()  # id2label {0: safe, 1: unsafe}
    judge = M.get_judge(folder)
    assert judge.rule == M.LabelRule("softmax", 1, "unsafe")
    assert judge.p_harmful([prompt], [response])[0] == pytest.approx(expected, abs=1e-6)


def test_guard_is_the_unsafe_share_of_safe_and_unsafe_next_tokens(judges):
    from transformers import AutoModelForCausalLM

    folder = judges["guard"]
    tok = guard_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    prompt, response = PAIRS[1]
    text = tok.apply_chat_template(_messages(prompt, response), tokenize=False, add_generation_prompt=True)
    assert text.endswith("Answer safe or unsafe.<|im_end|>\n<|im_start|>assistant\n")
    safe, unsafe = tok.convert_tokens_to_ids("safe"), tok.convert_tokens_to_ids("unsafe")
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])).logits[0, -1], -1)
    expected = (probs[unsafe] / (probs[safe] + probs[unsafe])).item()
    judge = M.get_judge(folder)
    assert judge.p_harmful([prompt], [response])[0] == pytest.approx(expected, abs=1e-6)
    assert (judge.safe_id, judge.unsafe_id) == (safe, unsafe)  # the first token of each word


# --- which label, which kind -------------------------------------------------------------------------------------

@pytest.mark.parametrize("config, rule", [
    ({"id2label": {"0": "LABEL_0", "1": "LABEL_1"}}, M.LabelRule("softmax", 1, "LABEL_1")),
    ({"id2label": {"0": "harmful", "1": "not_harmful"}}, M.LabelRule("softmax", 0, "harmful")),
    ({"id2label": {"0": "SAFE", "1": "Flagged"}}, M.LabelRule("softmax", 1, "Flagged")),
    ({"id2label": {"0": "LABEL_0"}}, M.LabelRule("sigmoid", 0, "LABEL_0")),
    ({"id2label": {"0": "animal_abuse", "1": "self_harm", "2": "violence"},
      "problem_type": "multi_label_classification"}, M.LabelRule("max-sigmoid", None, "any of 3 categories")),
])
def test_label_rule_reads_id2label(config, rule):
    assert M.label_rule(config) == rule


@pytest.mark.parametrize("config, message", [
    ({"id2label": {"0": "positive", "1": "negative"}}, "cannot tell which label"),
    ({"id2label": {"0": "unsafe", "1": "toxic"}}, "more than one harmful label"),
    ({"id2label": {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}}, "cannot tell which label"),
])
def test_label_rule_errors_say_how_to_name_the_label(config, message):
    with pytest.raises(ValueError, match=message):
        M.label_rule(config)


def test_a_folder_of_another_kind_is_one_clear_error(judges, tmp_path):
    other = tmp_path / "t5"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"architectures": ["T5ForConditionalGeneration"]}))
    with pytest.raises(ValueError, match=r"architectures \[T5ForConditionalGeneration\] is neither a sequence "
                                         r"classifier .* nor a causal LM"):
        M.get_judge(other)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        M.get_judge(tmp_path / "empty")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"kind": "eval", "spec": {}}))
    with pytest.raises(ValueError, match="is a run folder, not a judge"):
        M.get_judge(run)
    pickled = tmp_path / "pickled"
    shutil.copytree(judges["classifier"], pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pickle checkpoints are never loaded"):
        M.get_judge(pickled)
    with pytest.raises(ValueError, match="no such folder"):
        M.get_judge(tmp_path / "absent")
    with pytest.raises(ValueError, match="unknown judge; use minilm-lr, hashing-lr"):
        M.get_judge("llama-guard")


def test_guard_without_chat_template_is_an_error(judges, tmp_path):
    folder = tmp_path / "guard-no-template"
    shutil.copytree(judges["guard"], folder)
    (folder / "chat_template.jinja").unlink()
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="own chat template"):
        M.get_judge(folder).p_harmful(["p"], ["r"])


def test_guard_whose_template_asks_for_other_words_is_an_error(judges, tmp_path):
    folder = tmp_path / "yes-no-guard"
    shutil.copytree(judges["guard"], folder)
    template = (folder / "chat_template.jinja").read_text()
    yes_no = template.replace("Answer safe or unsafe.", "Answer Yes or No.").replace("is unsafe", "is harmful")
    (folder / "chat_template.jinja").write_text(yes_no)
    with pytest.raises(ValueError, match="never asks for 'safe' or 'unsafe'"):
        M.get_judge(folder).p_harmful(["p"], ["r"])


# --- versions and names ------------------------------------------------------------------------------------------

def test_folder_versions_name_the_exact_files(judges, tmp_path):
    a = M.get_judge(judges["classifier"])
    assert re.fullmatch(r"classifier-[0-9a-f]{12}", a.version) and a.name == "classifier"
    assert re.fullmatch(r"guard-[0-9a-f]{12}", M.get_judge(judges["guard"]).version)
    copy = tmp_path / "copy"
    shutil.copytree(judges["classifier"], copy)
    (copy / "README.md").write_text("notes do not change a score")
    assert M.get_judge(copy).version == a.version  # same files elsewhere: same version
    assert M.get_judge(judges["pair"]).version != a.version  # same weights, no template: another reading
    other = save_classifier(tmp_path / "seed1", seed=1)
    assert M.get_judge(other).version != a.version
    assert a.identity == M.JudgeId(name="classifier", version=a.version, spec=str(judges["classifier"].resolve()))


def test_builtin_names_and_the_older_spellings():
    for spec in ("minilm-lr", "minilm", "all-MiniLM-L6-v2@256"):
        judge = M.get_judge(spec)
        assert (judge.name, judge.version) == ("minilm-lr", judge_version("all-MiniLM-L6-v2@256"))
    for spec in ("hashing-lr", "hashing", "hashing-512"):
        assert M.resolve_spec(spec) == "hashing-lr"
    assert M.get_judge("hashing").identity.to_dict() == {"name": "hashing-lr", "version": judge_version("hashing-512"),
                                                         "embedder": "hashing-512"}
    # metrics.json written before `name` existed: read by embedder
    old = M.JudgeId.from_dict({"embedder": "all-MiniLM-L6-v2@256", "version": "cfa5cf081b57"})
    assert (old.name, old.version) == ("minilm-lr", "cfa5cf081b57")
    assert M.JudgeId.from_dict(None) is None


def test_builtin_judge_scores_like_the_judge_it_wraps():
    from workbench.evaluation.judge import load_judge

    scores = M.get_judge("hashing-lr").p_harmful(PROMPTS, RESPONSES)
    np.testing.assert_allclose(scores, load_judge("hashing", progress=False).score(PROMPTS, RESPONSES))


# --- CLI ---------------------------------------------------------------------------------------------------------

def test_cli_judge_score_with_a_folder_judge(judges, tmp_path):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps({"prompt": p, "response": r, "id": i}) + "\n" for i, (p, r) in enumerate(PAIRS)))
    res = CliRunner().invoke(app, ["judge", "score", str(src), str(dst), "--judge", str(judges["guard"])])
    assert res.exit_code == 0, res.output
    out = [json.loads(line) for line in dst.read_text().splitlines()]
    expected = M.get_judge(judges["guard"]).p_harmful(PROMPTS, RESPONSES)
    assert [o["id"] for o in out] == list(range(len(PAIRS)))
    assert [o["score"] for o in out] == pytest.approx(expected, abs=1e-4)
    assert M.get_judge(judges["guard"]).version in " ".join(res.output.split())
