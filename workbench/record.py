"""The run record: a run folder's `config.json` as a typed, versioned model.

    RunRecord
        schema_version  int; SCHEMA_VERSION when written, 1 for a config.json written before it was recorded
        kind            "align" | "attack" | "defend" | "repair" | "eval" | "analysis" | "study"
        name, seed      the run's name (folder `<kind>-<name>-<timestamp>`) and seed
        spec            what the step ran, typed by kind (table below)
        git_hash, versions, created     provenance
        machine         the CPU, its precision flags, usable cores and threads (`workbench.machine`; from schema 3)

    kind             spec                what it holds (besides `model`, the model the run started from)
    align            AlignRunSpec        align (AlignSpec), eval, refusals, defense_params
    attack, defend   AttackRunSpec       attack (AttackSpec), eval, defense (DefenseSpec; defend runs), defense_params
    repair           RepairRunSpec       defense, defense_params, aligned, unaligned, attacked_run, attack, eval
    eval             EvalRunSpec         eval (EvalSpec), harmful_prompts
    analysis         AnalysisRunSpec     analysis, params, compare
    study            StudyRunSpec        study (its name), params (the study's own spec, dumped)

The nested parts are the step specs of `workbench.config`, validated as strictly as on the command line, so a
damaged record is one clear error. The run specs around them are lenient on purpose: every field is optional
and keys they do not name are kept (never dropped), so a record written by any version of a step, or a
hand-made one, loads, and is written back with exactly the keys it was given (`model_dump`). A record read
from disk is upgraded here when SCHEMA_VERSION moves on (`_upgrade`), so readers only see the current shape.

This module sits below `workbench.runs`: it imports pydantic, `workbench.config`, `workbench.machine` and
`workbench.vocabulary` only.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer, model_validator

from workbench.config import AlignSpec, AttackSpec, DefenseSpec, EvalSpec
from workbench.machine import Machine
from workbench.vocabulary import ALIGNMENT, FINE_TUNING, POST_FINE_TUNING

# 1: the records written before the version was (config.json without "schema_version"); 3 adds `machine`
SCHEMA_VERSION = 3

RunKind = Literal["align", "attack", "defend", "repair", "eval", "analysis", "study"]

# The defense stage a run of each kind belongs to (other kinds: none).
STAGE_OF_KIND: dict[str, str] = {"align": ALIGNMENT, "defend": FINE_TUNING, "repair": POST_FINE_TUNING}


class _RunSpec(BaseModel):
    """A run spec: optional fields, unknown keys kept; dumps only the keys it was given (nested parts in full)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    @model_serializer(mode="wrap")
    def _given_keys(self, handler) -> dict:
        data = handler(self)
        given = self.model_fields_set | set(self.model_extra or ())
        return {k: v for k, v in data.items() if k in given}


class AlignRunSpec(_RunSpec):
    align: AlignSpec | None = None
    eval: EvalSpec | None = None
    model: str | None = None
    refusals: str | None = None  # where the refusal templates come from
    defense_params: dict[str, Any] | None = None  # the defense's hyperparameters with defaults resolved


class AttackRunSpec(_RunSpec):
    """An attack run, or a defend run (an attack the provider defended during fine-tuning: `defense`)."""

    attack: AttackSpec | None = None
    eval: EvalSpec | None = None
    model: str | None = None
    defense: DefenseSpec | None = None
    defense_params: dict[str, Any] | None = None
    attack_params: dict[str, Any] | None = None  # the attack's hyperparameters with defaults resolved


class AttackedRun(BaseModel):
    """The run a repair run repaired, as recorded with it."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: str
    name: str
    defense: DefenseSpec | None = None


class RepairRunSpec(_RunSpec):
    defense: DefenseSpec | None = None  # the post-fine-tuning defense with the parameters given
    defense_params: dict[str, Any] | None = None
    model: str | None = None  # the repaired (fine-tuned) model
    aligned: str | None = None
    unaligned: str | None = None
    attacked_run: AttackedRun | None = None
    attack: AttackSpec | None = None  # the attacked run's, copied
    eval: EvalSpec | None = None


class EvalRunSpec(_RunSpec):
    eval: EvalSpec | None = None
    model: str | None = None
    harmful_prompts: str | None = None  # which harmful prompts were evaluated ("advbench eval split", ...)


class AnalysisRunSpec(_RunSpec):
    analysis: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)  # the analysis' own spec, dumped
    model: str | None = None
    compare: str | None = None


class StudyRunSpec(_RunSpec):
    """A study of an open question (`workbench.studies`): which study, its spec, and the model it started from."""

    study: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)  # the study's own spec, dumped
    model: str | None = None


RunSpec = AlignRunSpec | AttackRunSpec | RepairRunSpec | EvalRunSpec | AnalysisRunSpec | StudyRunSpec  # SPEC_OF_KIND

SPEC_OF_KIND: dict[str, type[_RunSpec]] = {
    "align": AlignRunSpec, "attack": AttackRunSpec, "defend": AttackRunSpec, "repair": RepairRunSpec,
    "eval": EvalRunSpec, "analysis": AnalysisRunSpec, "study": StudyRunSpec,
}


def problem(err: ValidationError) -> str:
    """The first problem of a validation error as one line: "spec.attack.data.p: Input should be …"."""
    e = err.errors()[0]
    loc = ".".join(str(x) for x in e["loc"])
    msg = e["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def run_spec(kind: str, spec: Any) -> _RunSpec:
    """`spec` (a dict or a run spec) as the run spec of `kind`; ValueError naming the problem otherwise."""
    cls = SPEC_OF_KIND.get(kind)
    if cls is None:
        raise ValueError(f"unknown run kind {kind!r}; run kinds: {', '.join(SPEC_OF_KIND)}")
    if isinstance(spec, cls):
        return spec
    if isinstance(spec, BaseModel):
        raise ValueError(f"the spec of a run of kind '{kind}' must be {cls.__name__}, got {type(spec).__name__}")
    try:
        return cls.model_validate(spec)
    except ValidationError as err:
        raise ValueError(f"spec.{problem(err)}") from None


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(1, ge=1)
    kind: RunKind
    name: str
    seed: int
    spec: RunSpec
    git_hash: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    created: str = ""
    machine: Machine | None = None  # CPU model, its precision flags, usable cores, threads (schema 3 on)

    @model_validator(mode="before")
    @classmethod
    def _typed_spec(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") in SPEC_OF_KIND and "spec" in data:
            data = {**data, "spec": run_spec(data["kind"], data["spec"])}
        return data

    @property
    def stage(self) -> str | None:
        return STAGE_OF_KIND.get(self.kind)


def parse_record(data: Any) -> RunRecord:
    """A config.json's content as the current RunRecord (upgraded from older schema versions); ValueError naming
    the problem when it is not a valid record."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version", 1)
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise ValueError(f"schema_version {version} is newer than this workbench reads ({SCHEMA_VERSION}): "
                         f"update workbench")
    try:
        return RunRecord.model_validate(_upgrade(data))
    except ValidationError as err:
        raise ValueError(problem(err)) from None


def _upgrade(data: dict) -> dict:
    """A record of an older schema version in the current shape. 1 → 2 only added `schema_version`, 2 → 3 only the
    optional `machine` (absent: None); the spec is unchanged, so the version the record was written with is kept
    as it is."""
    return data
