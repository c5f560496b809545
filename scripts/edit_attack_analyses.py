"""Where does a weight edit break safety, compared with fine-tuning? Wanda, embedding drift and activation patching
on a `rome_edit` attack run and a fine-tuning attack run of the same aligned model, side by side.

Everything is read from the two run folders: the aligned model is their common base (`config.json` spec.model), the
edit's layer and effect come from the edit run's training.json. Each analysis is one `workbench.steps.run_analysis`
run folder under OUT (an existing one, with its metrics.json, is reused, so an interrupted comparison resumes):

    wanda-aligned, wanda-edit, wanda-ft    Wanda set-difference mask and pruning of each model (safety-critical
                                           weights; with evaluate, refusal after pruning them)
    drift-edit, drift-ft                   hidden-state drift aligned → attacked on the alignment data, per layer
    patching-edit, patching-ft             aligned ↔ attacked activation patching on the same harmful prompts
                                           (cross-model experiments only: the within-model one is the aligned
                                           model's own and would be the same twice)

then OUT/comparison.json and OUT/comparison.md: the attacks' HS / refusal, per-layer drift and patching restoration
curves (with the edited layer marked), Wanda's mask overlap with the aligned model's and density by layer.

Usage: python scripts/edit_attack_analyses.py EDIT_RUN FT_RUN --out OUT [--seed 0] [--quick]
       [--param drift.n_samples=100 --param patching.components='["resid","mlp"]' ...] [--only drift,patching]
`--quick` shrinks every analysis to smoke-test sizes (tiny models); the defaults are the analyses' own.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from workbench.analysis.drift import DriftResult
from workbench.analysis.patching import PatchingResult
from workbench.analysis.wanda import WandaResult
from workbench.runs import Run, model_ref, open_run
from workbench.steps import run_analysis
from workbench.tables import markdown_table
from workbench.vocabulary import fmt_rate

ANALYSES = ("wanda", "drift", "patching")
ATTACKED_KINDS = ("attack", "defend")
DEFAULTS = {"patching": {"within": "none", "cross": "both"}}
QUICK = {
    "wanda": {"n_calibration": 8, "max_len": 64, "batch_size": 4, "n_eval_prompts": 4, "max_new_tokens": 8,
              "n_utility": 4},
    "drift": {"n_samples": 8, "max_len": 64},
    "patching": {"n_prompts": 4, "positions": 2, "components": ["resid", "mlp"], "window": 2, "n_boot": 100},
}


# ------------------------------------------------------------------------------------------------- inputs

def method_of(run: Run) -> str:
    """The run's model/base.json method: "edit" for a weight edit, "lora" / "full" for fine-tuning."""
    return json.loads((run.path / "model" / "base.json").read_text())["method"]


def attacked_pair(edit_dir: Path, ft_dir: Path) -> tuple[Run, Run, str]:
    """(edit run, fine-tuning run, their common aligned base); ValueError saying what is wrong otherwise."""
    edit, ft = open_run(edit_dir), open_run(ft_dir)
    for run, want in ((edit, "a weight edit"), (ft, "a fine-tuning attack")):
        if run.kind not in ATTACKED_KINDS:
            raise ValueError(f"{run.path} is a '{run.kind}' run; expected {want} (an attack run)")
    if method_of(edit) != "edit":
        raise ValueError(f"{edit.path} was made by {method_of(edit)!r} fine-tuning, not a weight edit "
                         f"(`workbench attack --attack rome_edit`); pass the edit run first")
    if method_of(ft) == "edit":
        raise ValueError(f"{ft.path} is a weight edit too; the second run must be a fine-tuning attack")
    if not edit.base or model_ref(edit.base) != model_ref(ft.base or ""):
        raise ValueError(f"the runs attack different models: {edit.base} (edit) vs {ft.base} (fine-tuning); "
                         f"compare attacks of the same aligned model")
    return edit, ft, edit.base


def parse_params(items: list[str], quick: bool) -> dict[str, dict]:
    """`ANALYSIS.KEY=VALUE` (JSON value, else string) over the defaults (and `--quick` sizes)."""
    out = {a: {**DEFAULTS.get(a, {}), **(QUICK[a] if quick else {})} for a in ANALYSES}
    for item in items:
        key, sep, raw = item.partition("=")
        analysis, dot, name = key.partition(".")
        if not sep or not dot or analysis not in ANALYSES:
            raise ValueError(f"--param {item!r}: expected ANALYSIS.KEY=VALUE with ANALYSIS in {', '.join(ANALYSES)}")
        try:
            out[analysis][name] = json.loads(raw)
        except json.JSONDecodeError:
            out[analysis][name] = raw
    return out


# ------------------------------------------------------------------------------------------------ running

def jobs(edit: Run, ft: Run, aligned: str, only: tuple[str, ...]) -> list[tuple[str, str, str, str | None]]:
    """(folder name, analysis, model, compare) of every analysis run the comparison needs."""
    out = []
    if "wanda" in only:
        out += [("wanda-aligned", "wanda", aligned, None), ("wanda-edit", "wanda", str(edit.path), None),
                ("wanda-ft", "wanda", str(ft.path), None)]
    for name in ("drift", "patching"):
        if name in only:
            out += [(f"{name}-edit", name, aligned, str(edit.path)), (f"{name}-ft", name, aligned, str(ft.path))]
    return out


def run_all(edit: Run, ft: Run, aligned: str, out: Path, seed: int, params: dict[str, dict],
            only: tuple[str, ...] = ANALYSES) -> dict[str, Path]:
    folders = {}
    for folder, analysis, model, compare in jobs(edit, ft, aligned, only):
        path = out / folder
        if not (path / "metrics.json").exists():
            print(f"{folder} …", flush=True)
            run_analysis(analysis, model, compare, seed, path, params[analysis], formats=("html",), progress=False)
        folders[folder] = path
    return folders


# --------------------------------------------------------------------------------------------- comparing

def mask_jaccard(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """|A ∩ B| / |A ∪ B| of two Wanda masks (parameter name → flat indices)."""
    inter = sum(int(torch.isin(a[n], b[n]).sum()) for n in a.keys() & b.keys())
    union = sum(len(v) for v in a.values()) + sum(len(v) for v in b.values()) - inter
    return inter / union if union else float("nan")


def _curve(values) -> list[float]:
    return [round(float(v), 4) for v in np.asarray(values, dtype=np.float64).reshape(-1)]


def compare(edit: Run, ft: Run, aligned: str, folders: dict[str, Path]) -> dict:
    """The comparison record: what each attack did, and each analysis's numbers for both."""
    notes = json.loads((edit.path / "training.json").read_text()).get("attack", {})
    edits = notes.get("edits", [])
    attacks = {}
    for label, run in (("edit", edit), ("ft", ft)):
        m = run.metrics
        attacks[label] = {"run": str(run.path), "name": run.name, "method": method_of(run),
                          "hs": m.get("hs"), "refusal_harmful": m.get("refusal_harmful")}
    attacks["edit"].update(layer=notes.get("layer"), relative_update_norm=notes.get("relative_update_norm"),
                           logprob_gain=[round(e["logprob_after"] - e["logprob_before"], 3) for e in edits])
    out: dict = {"aligned": aligned, "edit_layer": notes.get("layer"), "attacks": attacks}
    if "wanda-aligned" in folders:
        res = {k: WandaResult.load(folders[f"wanda-{k}"]) for k in ("aligned", "edit", "ft")}
        out["wanda"] = {k: {"headline": r.headline(), "density_by_layer": _curve(r.density.float().mean(-1))}
                        for k, r in res.items()}
        for k in ("edit", "ft"):
            out["wanda"][k]["mask_jaccard_with_aligned"] = round(mask_jaccard(res["aligned"].mask, res[k].mask), 4)
    if "drift-edit" in folders:
        out["drift"] = {}
        for k in ("edit", "ft"):
            r = DriftResult.load(folders[f"drift-{k}"])
            out["drift"][k] = {"headline": r.headline(), "rel_l2_by_layer": _curve(r.rel_l2)}
    if "patching-edit" in folders:
        out["patching"] = {}
        for k in ("edit", "ft"):
            r = PatchingResult.load(folders[f"patching-{k}"])
            out["patching"][k] = {"headline": r.headline()}
            for exp, data in r.experiments.items():
                for comp in ("resid", "mlp", "attn"):
                    if comp in data["components"]:
                        out["patching"][k][f"{exp}.{comp}.normalized"] = _curve(data["components"][comp]["normalized"])
    return out


def _layer_table(title: str, curves: dict[str, list[float]], edited: int | None, offset: int = 0) -> str:
    """One row per layer, one column per curve; `offset` 1 for drift, whose index 0 is the embeddings."""
    n = max(len(c) for c in curves.values())
    rows = []
    for i in range(n):
        layer = i - offset
        label = "emb" if layer < 0 else f"{layer}{' ← edited' if layer == edited else ''}"
        rows.append([label] + [f"{c[i]:.3f}" if i < len(c) else "" for c in curves.values()])
    return f"\n### {title}\n\n" + markdown_table(["layer", *curves], rows)


def _fmt(v) -> str:
    """A metrics.json rate (dict) with its interval, a plain number to 3 decimals."""
    return f"{v:.3f}" if isinstance(v, int | float) else fmt_rate(v)


def markdown(comp: dict) -> str:
    a = comp["attacks"]
    head = markdown_table(["attack", "run", "method", "HS", "refusal (harmful)"],
                          [[k, Path(v["run"]).name, v["method"], fmt_rate(v["hs"]), fmt_rate(v["refusal_harmful"])]
                           for k, v in a.items()])
    text = [f"# Edit vs fine-tuning attack of {comp['aligned']}\n", head,
            f"\nEdit: layer {comp['edit_layer']}, ‖ΔW‖/‖W‖ = {a['edit']['relative_update_norm']}, target log-prob "
            f"gain {a['edit']['logprob_gain']} nats."]
    edited = comp["edit_layer"]
    if "drift" in comp:
        d = comp["drift"]
        text.append(_layer_table("Drift aligned → attacked (relative L2)",
                                 {k: d[k]["rel_l2_by_layer"] for k in ("edit", "ft")}, edited, offset=1))
    if "patching" in comp:
        p = comp["patching"]
        keys = [k for k in p["edit"] if k.endswith(".normalized")]
        curves = {f"{k.removesuffix('.normalized')} [{m}]": p[m][k] for k in keys for m in ("edit", "ft") if k in p[m]}
        text.append(_layer_table("Activation patching (normalized restoration; 1 = like the source model)", curves,
                                 edited))
    if "wanda" in comp:
        w = comp["wanda"]
        text.append(_layer_table("Wanda set-difference mask density (mean over module types)",
                                 {k: w[k]["density_by_layer"] for k in ("aligned", "edit", "ft")}, edited))
        text.append("\nMask overlap with the aligned model's (Jaccard): "
                    + ", ".join(f"{k} {w[k]['mask_jaccard_with_aligned']}" for k in ("edit", "ft")))
        ref = [k for k in w["aligned"]["headline"] if k.endswith(".refusal")]
        if ref:
            text.append("\n" + markdown_table(["model", *ref], [[k, *(_fmt(w[k]["headline"].get(r)) for r in ref)]
                                                                for k in ("aligned", "edit", "ft")]))
    return "\n".join(text) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("edit_run", type=Path, help="attack run folder of `workbench attack --attack rome_edit`")
    ap.add_argument("ft_run", type=Path, help="fine-tuning attack run folder of the same aligned model")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smoke-test sizes for every analysis")
    ap.add_argument("--param", action="append", default=[], help="ANALYSIS.KEY=VALUE (JSON value)")
    ap.add_argument("--only", default=",".join(ANALYSES), help=f"comma-separated subset of {','.join(ANALYSES)}")
    a = ap.parse_args(argv)
    only = tuple(x.strip() for x in a.only.split(",") if x.strip())
    if not only or set(only) - set(ANALYSES):
        ap.error(f"--only takes a comma-separated subset of {', '.join(ANALYSES)}")
    try:
        edit, ft, aligned = attacked_pair(a.edit_run, a.ft_run)
        params = parse_params(a.param, a.quick)
    except ValueError as e:
        ap.error(str(e))
    a.out.mkdir(parents=True, exist_ok=True)
    comp = compare(edit, ft, aligned, run_all(edit, ft, aligned, a.out, a.seed, params, only))
    (a.out / "comparison.json").write_text(json.dumps(comp, indent=2, default=float))
    md = markdown(comp)
    (a.out / "comparison.md").write_text(md)
    print(md)
    return comp


if __name__ == "__main__":
    main()
