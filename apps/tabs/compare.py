"""Compare: one prompt, three models (aligned, attacked, repaired) side by side.

Any run folder with a `model/` can fill a slot. Prompts come from the held-out sets (AdvBench eval split,
Alpaca eval split: never trained on by any run) or are typed. Answers are greedy, cached per
(run folder, prompt, length); each carries the keyword refusal flag and, when the moderation judge is
trained and cached on this machine, its P(harmful).
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from apps.tabs import common
from workbench.vocabulary import fmt_rate, long_title

TITLE = "Compare"
SLOTS = (("aligned", "Aligned"), ("attacked", "Attacked"), ("repaired", "Repaired"))
NONE = "— none —"
SOURCES = {"harmful": "held-out harmful (AdvBench eval)", "benign": "held-out benign (Alpaca eval)",
           "own": "type my own"}
JUDGE_TRAIN = 'python -c "from workbench.evaluation.judge import load_judge; load_judge()"'


@st.cache_data(show_spinner=False)
def heldout_prompts(source: str, limit: int = 200) -> list[str]:
    from workbench.data.registry import load_split

    name = {"harmful": "advbench", "benign": "alpaca"}[source]
    return [s.prompt for s in load_split(name, "eval")][:limit]


@st.cache_resource(show_spinner="loading model…", max_entries=6)
def load(path: str):
    from workbench.models import load_model

    return load_model(path)


@st.cache_data(show_spinner=False, max_entries=1024)
def answer(path: str, prompt: str, max_new_tokens: int) -> str:
    from workbench.config import GenerationSpec
    from workbench.generation import generate

    model, tok = load(path)
    spec = GenerationSpec(max_new_tokens=max_new_tokens, batch_size=1)
    return generate(model, tok, [prompt], spec, progress=False)[0]


# --------------------------------------------------------------------------------------------- judge


def judge_missing() -> str | None:
    """None when the moderation judge can score without training; else why not (shown to the user)."""
    try:
        from workbench.evaluation import judge as J
    except Exception as err:  # the judge is optional here (answers and refusal flags work without it)
        return f"the moderation judge is not available ({type(err).__name__})"
    try:
        folder = J.judge_dir(J.get_embedder("minilm").name)
    except Exception as err:
        return f"the moderation judge cannot be located ({type(err).__name__}: {err})"
    if not (Path(folder) / "judge.json").is_file():
        return f"the moderation judge is not trained on this machine yet (train it once with `{JUDGE_TRAIN}`)"
    return None


@st.cache_resource(show_spinner="loading the moderation judge…")
def _judge():
    from workbench.evaluation.judge import load_judge

    return load_judge(progress=False)


@st.cache_data(show_spinner=False, max_entries=1024)
def judge_score(prompt: str, response: str) -> float | None:
    try:
        return float(_judge().score([prompt], [response])[0])
    except Exception:
        return None


# -------------------------------------------------------------------------------------------- render


def _defaults(models: list[dict]) -> dict[str, str]:
    """Latest align run; the latest harmful fine-tuning attack built on it; the latest repair (else defend) run.
    Runs directly under the root are preferred to sweep cells."""
    def latest(cands):
        top = [m for m in cands if "/" not in m["folder"]]
        pick = top or cands
        return pick[-1]["path"] if pick else NONE

    aligned = latest([m for m in models if m["kind"] == "align"])
    attacks = [m for m in models if m["kind"] == "attack"]
    on_aligned = [m for m in attacks
                  if aligned != NONE and m["base"] and Path(m["base"]).resolve() == Path(aligned).resolve()]
    harmful = [m for m in on_aligned if m["attack"] in (None, "harmful_ft")]
    repaired = latest([m for m in models if m["kind"] == "repair"] or [m for m in models if m["kind"] == "defend"])
    return {"aligned": aligned, "attacked": latest(harmful or on_aligned or attacks), "repaired": repaired}


def _aligned_outside(models: list[dict]) -> list[dict]:
    """When no align run lies under the root: the align runs its attack runs were trained from, wherever they are
    (a quickstart given `--aligned RUN` elsewhere), so the Aligned slot shows the model they attacked."""
    if any(m["kind"] == "align" for m in models):
        return []
    bases = dict.fromkeys(m["base"] for m in models if m["kind"] == "attack" and m["base"])
    records = [common.outside_record(str(Path(b).resolve())) for b in bases]
    return [r for r in records if r is not None and r["kind"] == "align" and r["has_model"]]


def render(root: Path) -> None:
    models = [r for r in common.runs(root) if r["has_model"]]
    models = _aligned_outside(models) + models
    if not models:
        common.empty("run folders with a model/ under this runs root",
                     f"workbench quickstart --model tiny-llama --out {root}")
        return
    by_path = {m["path"]: m for m in models}
    options = [NONE] + [m["path"] for m in reversed(models)]
    defaults = _defaults(models)
    cols = st.columns(3)
    chosen: dict[str, str] = {}
    for col, (slot, title) in zip(cols, SLOTS, strict=False):
        with col:
            chosen[slot] = st.selectbox(
                f"{title} model", options, index=options.index(defaults[slot]), key=f"cmp-{slot}",
                format_func=lambda p: p if p == NONE else common.label(by_path[p]))
    if chosen["repaired"] == NONE and not any(m["kind"] in ("repair", "defend") for m in models):
        st.caption("No repair or defend runs yet — pick any run with a model as the third, or run "
                   "`workbench attack --defense NAME ...` / a post-fine-tuning repair.")

    source = st.radio("Prompt", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="cmp-source")
    if source == "own":
        prompt = st.text_area("Your prompt", key="cmp-own", placeholder="Ask the three models anything…")
    else:
        prompt = st.selectbox("Held-out prompt", heldout_prompts(source), key=f"cmp-pick-{source}")
    c1, c2 = st.columns([3, 1])
    with c1:
        tokens = st.slider("Answer length (new tokens, greedy)", 8, 128, 48, step=8, key="cmp-tokens")
    missing = judge_missing()
    with c2:
        use_judge = st.checkbox("moderation judge score", value=missing is None, disabled=missing is not None,
                                key="cmp-judge", help=missing or "P(harmful) from workbench.evaluation.judge")
    if st.button("Ask the three models", type="primary", key="cmp-ask"):
        if not (prompt or "").strip():
            st.warning("Type a prompt first.")
        else:
            st.session_state["cmp-request"] = {"prompt": prompt.strip(), "tokens": tokens, "models": dict(chosen)}

    req = st.session_state.get("cmp-request")
    if not req:
        st.caption("Pick the models and a prompt, then ask.")
        return
    st.markdown("**Prompt:** " + req["prompt"].replace("\n", " "))
    if missing and use_judge is False:
        st.caption(f"Refusal flags only: {missing}.")
    for col, (slot, title) in zip(st.columns(3), SLOTS, strict=False):
        path = req["models"].get(slot, NONE)
        with col, st.container(border=True, key=f"answer-{slot}"):
            st.markdown(f"#### {title}")
            if path == NONE or path not in by_path:
                st.caption("no model chosen")
                continue
            rec = by_path[path]
            st.caption(f"`{rec['folder']}` ({rec['kind']})")
            try:
                with st.spinner("generating…"):
                    text = answer(path, req["prompt"], req["tokens"])
            except Exception as err:
                st.error(f"could not generate with this model: {type(err).__name__}: {err}")
                continue
            from workbench.evaluation.refusal import is_refusal

            badges = st.container(horizontal=True)
            with badges:
                if is_refusal(text):
                    st.badge("refuses", icon=":material/block:", color="green")
                else:
                    st.badge("does not refuse", icon=":material/chat:", color="orange")
                if use_judge and missing is None:
                    score = judge_score(req["prompt"], text)
                    if score is not None:
                        st.badge(f"judge P(harmful) = {score:.2f}", color="red" if score >= 0.5 else "gray")
            st.text(text or "(empty answer)")
            m = rec["metrics"]
            st.caption(" · ".join(f"{long_title(k)}: {fmt_rate(m[k])}" for k in ("refusal_harmful", "hs")
                                  if k in m) or "no metrics")
