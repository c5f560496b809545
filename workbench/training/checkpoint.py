"""Resumable checkpoints as safetensors + JSON (never pickle).

Holds the trainable parameters, AdamW's state tensors and the loop state; everything else is a
deterministic function of the spec and seed (data order, LR schedule), so this is enough to continue.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from workbench.runs import json_default
from workbench.training.plugins import TrainState


def save_checkpoint(folder: Path, model, optimizer: torch.optim.Optimizer, state: TrainState) -> None:
    """Write to a sibling temp folder and swap it in, so a crash mid-save keeps the previous checkpoint."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    params = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    save_file(params, str(tmp / "trainable.safetensors"))
    opt = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, st in opt["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{k}"] = v
    if tensors:
        save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "state.json").write_text(json.dumps({
        "train_state": asdict(state), "param_groups": opt["param_groups"], "optimizer_scalars": scalars,
    }, default=json_default))  # plugin diagnostics may hold tensors / numpy numbers
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)


def has_checkpoint(folder: Path) -> bool:
    return (Path(folder) / "state.json").is_file()


def load_checkpoint(folder: Path, model, optimizer: torch.optim.Optimizer) -> TrainState:
    meta = json.loads((folder / "state.json").read_text())
    params = load_file(str(folder / "trainable.safetensors"))
    named = dict(model.named_parameters())
    with torch.no_grad():
        for n, t in params.items():
            named[n].copy_(t)
    state: dict = {}
    opt_file = folder / "optimizer.safetensors"
    for key, t in (load_file(str(opt_file)).items() if opt_file.exists() else []):
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = t
    for key, v in meta["optimizer_scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return TrainState(**meta["train_state"])
