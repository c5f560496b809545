"""Workbench explorer: `make app` (streamlit run apps/explorer.py --server.address 127.0.0.1).

Reads run folders only, never trains. The runs root is chosen in the sidebar (default: $WORKBENCH_RUNS,
else `runs`). One module per tab under `apps/tabs/`, each with TITLE and `render(root)`; only the open tab
runs (tabs rerun on change), so heavy tabs cost nothing until opened.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:  # `streamlit run apps/explorer.py` puts apps/ first on the path, not the repo
    sys.path.insert(0, str(_REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import streamlit as st  # noqa: E402

from apps.tabs import common, compare, defenses, inside, landscape, parameters, runs, studies, threat  # noqa: E402

TABS = (compare, threat, defenses, inside, landscape, parameters, studies, runs)


def sidebar() -> Path:
    st.sidebar.title("workbench explorer")
    default = os.environ.get("WORKBENCH_RUNS", "runs")
    text = st.sidebar.text_input("Runs root", value=default, key="root",
                                 help="A folder of run folders (the --out of workbench steps). Default: "
                                      "$WORKBENCH_RUNS, else `runs`.")
    root = Path(text).expanduser()
    if not root.is_dir():
        st.sidebar.warning(f"`{root}` is not a folder yet.")
        return root
    recs = common.runs(root)
    counts: dict[str, int] = {}
    for r in recs:
        counts[r["kind"]] = counts.get(r["kind"], 0) + 1
    st.sidebar.caption(f"{len(recs)} runs: " + (", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none"))
    if st.sidebar.button("Reload runs", key="reload"):
        st.cache_data.clear()
    return root


def main() -> None:
    st.set_page_config(page_title="workbench explorer", page_icon="🔬", layout="wide")
    root = sidebar()
    tabs = st.tabs([t.TITLE for t in TABS], key="tab", on_change="rerun")
    for tab, module in zip(tabs, TABS, strict=False):
        with tab:
            if tab.open is False:
                continue
            try:
                module.render(root)
            except Exception as err:  # one tab's failure stays in that tab
                st.error(f"this tab failed: {type(err).__name__}: {err}")
                st.exception(err)


main()
