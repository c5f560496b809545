"""Typed analysis results that save themselves: tensors → safetensors, everything else → JSON.

Subclass as a frozen dataclass; fields holding `torch.Tensor` go to `tensors.safetensors`, the rest to
`result.json` (with the class name, so the app can check it read the right kind).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

import torch

from workbench.runs import write_json

T = TypeVar("T", bound="AnalysisResult")


@dataclasses.dataclass(frozen=True)
class AnalysisResult:
    def _split(self) -> tuple[dict, dict[str, torch.Tensor]]:
        plain, tensors = {}, {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                tensors[f.name] = v.detach().cpu().contiguous()
            else:
                plain[f.name] = v
        return plain, tensors

    def to_json(self) -> dict:
        plain, tensors = self._split()
        return {"type": type(self).__name__, "fields": plain, "tensors": sorted(tensors)}

    def save(self, folder: str | Path) -> None:
        from safetensors.torch import save_file  # deferred: safetensors

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        plain, tensors = self._split()
        write_json(folder / "result.json", self.to_json())
        if tensors:
            save_file(tensors, str(folder / "tensors.safetensors"))

    @classmethod
    def load(cls: type[T], folder: str | Path) -> T:
        from safetensors.torch import load_file  # deferred: safetensors

        folder = Path(folder)
        data = json.loads((folder / "result.json").read_text())
        if data["type"] != cls.__name__:
            raise ValueError(f"{folder} holds a {data['type']} result, not {cls.__name__}")
        fields: dict[str, Any] = dict(data["fields"])
        if data["tensors"]:
            fields.update(load_file(str(folder / "tensors.safetensors")))
        return cls(**fields)
