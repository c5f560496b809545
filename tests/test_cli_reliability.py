"""Reliability of the `workbench` command line, on tiny-llama:

- bad input gives one clear error (exit 2, one `error:` line, no traceback) and writes nothing;
- SIGINT / SIGTERM during training publishes no run folder, and `--resume` ends where an uninterrupted run
  with the same seed ends (metrics, samples, weights);
- the same seed gives identical metrics and samples; every config records seed, versions and git hash;
- nothing read back from a run folder goes through pickle; the explorer binds 127.0.0.1 by default;
- `sweep --address` reaches `ray.init`.

Library-level checks of the same rules live next to their modules (test_data, test_models, test_training,
test_run_folders_and_stats, test_sweep).
"""
from __future__ import annotations

import ast
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from workbench.cli import app
from workbench.runs import INCOMPLETE, RunWriter, list_runs, open_run
from workbench.training.plugins import TrainPlugin

REPO = Path(__file__).resolve().parent.parent
TIMING = {"train_seconds", "tokens_per_second", "data_defense_seconds"}  # wall-clock fields of metrics["train"]


def _invoke(args: list[str]):
    return CliRunner().invoke(app, args)


def _assert_clean_error(res, out: Path, *needles: str) -> None:
    text = res.output
    assert res.exit_code == 2, text
    assert text.count("error:") == 1 and "Traceback" not in text, text
    flat = " ".join(text.split())  # rich wraps long lines
    for needle in needles:
        assert needle in flat, (needle, text)
    assert not out.exists() or not any(out.iterdir()), sorted(out.rglob("*"))


# ------------------------------------------------------------------------------------------- bad input


@pytest.fixture
def eval_run(tmp_path) -> Path:
    """A finished 'eval' run folder: a run without a model."""
    with RunWriter(tmp_path / "runs", "eval", "x", {"eval": {}}) as run:
        run.write_metrics({})
    return run.final_path


def _bad_jsonl(tmp_path) -> str:
    path = tmp_path / "user.jsonl"
    path.write_text('{"prompt": "ok", "response": "fine"}\n{"prompt": "x", "respons": "typo"}\n')
    return str(path)


def _truncated_copy(model_dir: Path, folder: Path) -> str:
    shutil.copytree(model_dir, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return str(folder)


def _empty(tmp_path, name: str) -> str:
    path = tmp_path / name
    path.write_text("\n")
    return str(path)


BAD_INPUTS = {
    "unknown model": (lambda t, r, m: ["eval", "--model", "no-such-model"], ["no-such-model", "tiny-llama"]),
    "missing model folder": (lambda t, r, m: ["attack", "--model", str(t / "absent")], ["absent", "not a folder"]),
    "corrupt model folder": (lambda t, r, m: ["eval", "--model", _truncated_copy(m, t / "broken")],
                             ["broken", "could not load the model"]),
    "malformed JSONL (user data)": (lambda t, r, m: ["attack", "--model", "tiny-llama", "--benign", _bad_jsonl(t)],
                                    ["user.jsonl", "line 2", "field 'respons'"]),
    "malformed JSONL (prompts)": (lambda t, r, m: ["eval", "--model", "tiny-llama", "--harmful-prompts",
                                                _bad_jsonl(t)], ["user.jsonl", "line 2", "field 'respons'"]),
    "empty dataset": (lambda t, r, m: ["attack", "--model", "tiny-llama", "--benign", _empty(t, "e.jsonl")],
                      ["e.jsonl", "empty"]),
    "empty prompt file": (lambda t, r, m: ["eval", "--model", "tiny-llama", "--harmful-prompts",
                                        _empty(t, "p.txt")], ["p.txt", "no prompts"]),
    "p above 1": (lambda t, r, m: ["attack", "--model", "tiny-llama", "--p", "1.5"], ["[0, 1]"]),
    "p below 0 (sweep)": (lambda t, r, m: ["sweep", "--model", "tiny-llama", "--p", "0.1,-0.2"], ["[0, 1]"]),
    "n above available": (lambda t, r, m: ["attack", "--model", "tiny-llama", "--p", "0.5", "--n", "100000"],
                          ["needs 50000 harmful samples", "available"]),
    "unknown defense (align)": (lambda t, r, m: ["align", "--model", "tiny-llama", "--defense", "nope"],
                                ["unknown defense 'nope'", "vaccine"]),
    "unknown defense (attack)": (lambda t, r, m: ["attack", "--model", "tiny-llama", "--defense", "nope"],
                                 ["unknown defense 'nope'", "lisa"]),
    "unknown hyperparameter": (lambda t, r, m: ["attack", "--model", "tiny-llama", "--defense", "lisa", "--param",
                                             "rhoo=1"], ["rhoo", "rho"]),
    "unknown attack": (lambda t, r, m: ["attack", "--model", "tiny-llama", "--attack", "nope"], ["unknown attack"]),
    "run folder of the wrong kind": (lambda t, r, m: ["attack", "--model", str(r)], ["kind 'eval'", "holds no model"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_clear_error_and_writes_nothing(case, tmp_path, eval_run, tiny_model_dir):
    make_args, needles = BAD_INPUTS[case]
    out = tmp_path / "out"
    args = make_args(tmp_path, eval_run, tiny_model_dir)
    res = _invoke(args + ["--out", str(out)])
    _assert_clean_error(res, out, *needles)


def test_runs_show_rejects_a_folder_that_is_not_a_run(tmp_path, tiny_model_dir):
    res = _invoke(["runs", "show", str(tiny_model_dir)])
    assert res.exit_code == 2 and "not a run folder" in " ".join(res.output.split())


# ------------------------------------------------------------------------ interrupt, resume, determinism

ALIGN = ["align", "--model", "tiny-llama", "--seed", "1"]


def _split_metrics(metrics: dict) -> tuple[dict, list]:
    """(metrics without wall-clock fields and losses, [first, final] loss): losses compare to 1e-6 (a resumed
    run re-adds float sums)."""
    out = dict(metrics)
    train = {k: v for k, v in out.pop("train", {}).items() if k not in TIMING}
    losses = [train.pop("first_loss", None), train.pop("final_loss", None)]
    return out | {"train": train}, losses


def _assert_same_run(a: Path, b: Path) -> None:
    ra, rb = open_run(a), open_run(b)
    assert ra.config["spec"] == rb.config["spec"] and ra.config["seed"] == rb.config["seed"] == 1
    (ma, la), (mb, lb) = _split_metrics(ra.metrics), _split_metrics(rb.metrics)
    assert ma == mb and lb == pytest.approx(la, abs=1e-6)
    assert (a / "samples.jsonl").read_text() == (b / "samples.jsonl").read_text()
    wa, wb = load_file(str(a / "model" / "model.safetensors")), load_file(str(b / "model" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6, msg=k)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    res = _invoke(ALIGN + ["--out", str(out)])
    assert res.exit_code == 0, res.output
    (run,) = list_runs(out)
    return run.path


def test_same_seed_gives_identical_metrics_samples_and_weights(uninterrupted, tmp_path):
    res = _invoke(ALIGN + ["--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    (again,) = list_runs(tmp_path)
    _assert_same_run(uninterrupted, again.path)


def test_every_config_records_seed_versions_and_git_hash(uninterrupted, tmp_path):
    res = _invoke(["eval", "--model", str(uninterrupted), "--seed", "3", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    for run in [open_run(uninterrupted), *list_runs(tmp_path)]:
        cfg = run.config
        assert isinstance(cfg["seed"], int) and "git_hash" in cfg, run.path
        assert {"python", "torch", "transformers", "peft"} <= set(cfg["versions"]), cfg["versions"]
    assert list_runs(tmp_path)[0].config["seed"] == 3


class _SignalAt(TrainPlugin):
    """Sends `sig` to this process after optimizer step `step`: a real signal, mid-training."""

    def __init__(self, sig: int, step: int):
        self.sig, self.step = sig, step

    def on_step_end(self, model, state):
        if state.step == self.step:
            os.kill(os.getpid(), self.sig)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_publishes_nothing_and_resume_matches_uninterrupted(sig, uninterrupted, tmp_path, monkeypatch):
    import workbench.steps as steps
    from workbench.training.loop import train

    def interrupted_train(model, tok, samples, spec, plugins=(), **kwargs):
        return train(model, tok, samples, spec, [*plugins, _SignalAt(sig, 2)], **kwargs)

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        monkeypatch.setattr(steps, "train", interrupted_train)
        res = _invoke(ALIGN + ["--out", str(tmp_path)])
        assert res.exit_code == 130, res.output
        assert "--resume" in res.output
        assert list_runs(tmp_path) == [] and [p.name for p in tmp_path.iterdir()] == [INCOMPLETE]
        (stage,) = (tmp_path / INCOMPLETE).iterdir()
        assert json.loads((stage / "checkpoint" / "state.json").read_text())["train_state"]["step"] == 2

        monkeypatch.setattr(steps, "train", train)
        res = _invoke(ALIGN + ["--out", str(tmp_path), "--resume"])
        assert res.exit_code == 0, res.output
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    (run,) = list_runs(tmp_path)
    assert not any((tmp_path / INCOMPLETE).iterdir())
    _assert_same_run(uninterrupted, run.path)


# ------------------------------------------------------------------------------------- no pickle, 127.0.0.1

UNSAFE_CALLS = {("torch", "load"), ("pickle", "load"), ("pickle", "loads"), ("joblib", "load"),
                ("dill", "load"), ("dill", "loads"), ("cloudpickle", "loads"), ("pd", "read_pickle"),
                ("pandas", "read_pickle")}
UNSAFE_MODULES = {"pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _unsafe_uses(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
            found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
            if (name, node.func.attr) in UNSAFE_CALLS:
                found.append(f"{name}.{node.func.attr}(...)")
            if node.func.attr == "load" and name in ("np", "numpy") and any(
                    k.arg == "allow_pickle" for k in node.keywords):
                found.append("np.load(..., allow_pickle=...)")
    return [f"{path.relative_to(REPO)}: {f}" for f in found]


def test_library_and_app_never_call_pickle_loaders():
    files = [p for d in ("workbench", "apps") for p in (REPO / d).rglob("*.py")]
    assert files
    assert [u for p in files for u in _unsafe_uses(p)] == []


def test_reading_run_folders_never_unpickles(tiny_model, tmp_path, monkeypatch):
    """Config, metrics, samples, full and LoRA model folders, analysis results and checkpoints load with every
    pickle entry point disabled."""
    from peft import LoraConfig, get_peft_model

    from workbench.analysis.probing import ProbingResult
    from workbench.models import load_model, save_adapter, save_model
    from workbench.training.checkpoint import load_checkpoint, save_checkpoint
    from workbench.training.plugins import TrainState

    model, tok = tiny_model
    with RunWriter(tmp_path, "attack", "p", {"a": 1}, seed=2) as run:
        run.write_metrics({"x": 1})
        run.write_samples([{"prompt": "p", "answer": "a"}])
        save_model(model, tok, run.path / "model")
        ProbingResult(labels=["model"], refs=["m"], n_layers=4, n_train=4, n_eval=2, folds=2, hook="resid_post",
                      cv_mean=torch.ones(1, 4), cv_std=torch.zeros(1, 4), heldout=torch.ones(1, 4)
                      ).save(run.path / "analysis" / "probing")
    lora = get_peft_model(load_model(run.final_path)[0], LoraConfig(r=2, target_modules=["q_proj"]))
    save_adapter(lora, tok, tmp_path / "adapter", base=str(run.final_path))
    opt = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad])
    save_checkpoint(tmp_path / "ckpt", lora, opt, TrainState(step=1))

    def refuse(*a, **k):
        raise AssertionError("pickle used")

    for mod, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")]:
        monkeypatch.setattr(mod, name, refuse)
    r = open_run(run.final_path, kind="attack")
    assert (r.config["seed"], r.metrics, r.samples()) == (2, {"x": 1}, [{"prompt": "p", "answer": "a"}])
    assert [x.path for x in list_runs(tmp_path)] == [run.final_path]
    assert load_model(run.final_path)[0].config.num_hidden_layers == 4
    assert load_model(tmp_path / "adapter")[0].config.num_hidden_layers == 4
    assert ProbingResult.load(run.final_path / "analysis" / "probing").n_layers == 4
    assert load_checkpoint(tmp_path / "ckpt", lora, opt).step == 1


def test_explorer_binds_localhost_by_default():
    """`make app` passes 127.0.0.1, and so does the repo's streamlit config for a bare `streamlit run`."""
    assert "--server.address 127.0.0.1" in (REPO / "Makefile").read_text().split("\napp:")[1].split("\n\n")[0]
    code = ("import streamlit.config as c; c.get_config_options(force_reparse=True); "
            "print(c.get_option('server.address'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "127.0.0.1", out.stderr


# ------------------------------------------------------------------------------------------------ Ray


def test_sweep_ray_backend_connects_to_the_given_address(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    seen = {}

    def fake_init(address=None, **kwargs):
        seen["address"] = address
        raise ConnectionError(f"no Ray cluster at {address}")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", fake_init)
    res = _invoke(["sweep", "--model", "tiny-llama", "--p", "0.1", "--preset", "tiny", "--backend", "ray",
                   "--address", "ray://10.0.0.1:10001", "--out", str(tmp_path / "sw")])
    assert seen["address"] == "ray://10.0.0.1:10001"
    _assert_clean_error(res, tmp_path / "sw", "Ray cluster", "ray://10.0.0.1:10001")


def test_checkpoint_keeps_plugin_diagnostics_even_with_tensor_values(tmp_path):
    import torch

    from workbench.training.checkpoint import load_checkpoint, save_checkpoint
    from workbench.training.plugins import TrainState

    layer = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(layer.parameters())
    state = TrainState(step=2, diagnostics=[{"step": 2, "probe": {"loss": torch.tensor(1.5), "norms": torch.ones(2)}}])
    save_checkpoint(tmp_path / "ckpt", layer, opt, state)
    back = load_checkpoint(tmp_path / "ckpt", layer, opt)
    assert back.step == 2 and back.diagnostics == [{"step": 2, "probe": {"loss": 1.5, "norms": [1.0, 1.0]}}]
