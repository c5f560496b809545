"""Defense registry shared by the three stages (alignment, fine-tuning, post-fine-tuning).

A defense is one module: a pydantic spec of its hyperparameters (with defaults) and a factory returning
the training plugins it installs into the one loop (`workbench.training.plugins`) — or, for the post stage,
a `repair` function applied to the fine-tuned model. Adding one = one new file + one line in DEFENSES.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from workbench.config import NoParams, Spec, parse_method_params
from workbench.defenses.alignment import ascent, booster, repnoise, t_vaccine, tar, vaccine
from workbench.defenses.finetune import bea, constrain_sft, filtration, freeze, ldifs, lisa, ptst, safeinstr, salora
from workbench.defenses.post import antidote, safelora
from workbench.vocabulary import ALIGNMENT, FINE_TUNING, POST_FINE_TUNING, Stage, parse_stage


@dataclass(frozen=True)
class DefenseInfo:
    name: str
    stage: Stage  # `workbench.vocabulary` spelling; an older one ("finetune", "post") is read as it
    params: type[Spec]
    plugins: Callable  # (params, TrainingContext) -> list[TrainPlugin]
    paper: str = ""
    # Fine-tuning-stage extras. The context is a `workbench.defenses.context.TrainingContext` (samples, model, seed,
    # train, notes); a defense writes what it wants reported (e.g. filtration precision/recall) into context.notes.
    data: Callable | None = None  # (params, samples, context) -> samples: filtration, SafeInstr, BEA
    inference: Callable | None = None  # (params) -> GenerationSpec updates: PTST / BEA system prompts
    # Post-fine-tuning stage: repair(params, RepairContext) -> RepairResult (`workbench.defenses.post.common`);
    # `references` names the extra models it needs besides the attacked one ("aligned", "unaligned").
    repair: Callable | None = None
    references: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "stage", parse_stage(self.stage))


def _no_plugins(params, context) -> list:
    return []


DEFENSES: dict[str, DefenseInfo] = {
    "sft": DefenseInfo("sft", ALIGNMENT, NoParams, _no_plugins, "Supervised safety fine-tuning (baseline)"),
    "vaccine": DefenseInfo("vaccine", ALIGNMENT, vaccine.VaccineParams, vaccine.plugins, "Vaccine, Huang+ 2024"),
    "t_vaccine": DefenseInfo("t_vaccine", ALIGNMENT, t_vaccine.TVaccineParams, t_vaccine.plugins,
                             "T-Vaccine, Liu+ 2024"),
    "repnoise": DefenseInfo("repnoise", ALIGNMENT, repnoise.RepNoiseParams, repnoise.plugins,
                            "RepNoise, Rosati+ 2024"),
    "booster": DefenseInfo("booster", ALIGNMENT, booster.BoosterParams, booster.plugins, "Booster, Huang+ 2024"),
    "tar": DefenseInfo("tar", ALIGNMENT, tar.TARParams, tar.plugins, "TAR (first-order), Tamirisa+ 2024"),
    "ascent": DefenseInfo("ascent", ALIGNMENT, ascent.AscentParams, ascent.plugins,
                          "Gradient-ascent term of a chosen kind (−CE, −log(1+CE), NPO Zhang+ 2024, unlikelihood)"),
    "ldifs": DefenseInfo("ldifs", FINE_TUNING, ldifs.LDIFSParams, ldifs.plugins, "LDIFS, Mukhoti+ 2023"),
    "constrain_sft": DefenseInfo("constrain_sft", FINE_TUNING, constrain_sft.ConstrainSFTParams,
                                 constrain_sft.plugins, "Qi+ 2024"),
    "freeze": DefenseInfo("freeze", FINE_TUNING, freeze.FreezeParams, freeze.plugins, "Freeze, Wei+ 2024"),
    "freeze_plus": DefenseInfo("freeze_plus", FINE_TUNING, freeze.FreezePlusParams, freeze.plugins_plus,
                               "Freeze+ (+ embeddings, attention)"),
    "ml_lr": DefenseInfo("ml_lr", FINE_TUNING, freeze.MLLRParams, freeze.plugins_ml_lr, "ML-LR, Du+ 2024"),
    "salora": DefenseInfo("salora", FINE_TUNING, salora.SaLoRAParams, salora.plugins, "SaLoRA, Li+ 2025"),
    "filtration": DefenseInfo("filtration", FINE_TUNING, filtration.FiltrationParams, filtration.plugins,
                              "Judge filtration", data=filtration.judge_data),
    "saft": DefenseInfo("saft", FINE_TUNING, filtration.SAFTParams, filtration.plugins, "SAFT, Choi+ 2024",
                        data=filtration.saft_data),
    "safeinstr": DefenseInfo("safeinstr", FINE_TUNING, safeinstr.SafeInstrParams, safeinstr.plugins,
                             "Bianchi+ 2024", data=safeinstr.data),
    "lisa": DefenseInfo("lisa", FINE_TUNING, lisa.LisaParams, lisa.plugins, "Lisa, Huang+ 2024"),
    "ptst": DefenseInfo("ptst", FINE_TUNING, ptst.PTSTParams, ptst.plugins, "PTST, Lyu+ 2024",
                        inference=ptst.inference),
    "bea": DefenseInfo("bea", FINE_TUNING, bea.BEAParams, bea.plugins, "BEA, Wang+ 2024", data=bea.data,
                       inference=bea.inference),
    "safelora": DefenseInfo("safelora", POST_FINE_TUNING, safelora.SafeLoRAParams, _no_plugins,
                            "SafeLoRA, Hsu+ 2024", repair=safelora.repair, references=("aligned", "unaligned")),
    "antidote": DefenseInfo("antidote", POST_FINE_TUNING, antidote.AntidoteParams, _no_plugins,
                            "Antidote, Huang+ 2024", repair=antidote.repair),
}


def get_defense(name: str, stage: str | None = None) -> DefenseInfo:
    """The registered defense `name`; with `stage` (any spelling `parse_stage` reads), only if it is of that stage."""
    if name not in DEFENSES:
        raise ValueError(f"unknown defense {name!r}; known defenses: {', '.join(sorted(DEFENSES))}")
    info = DEFENSES[name]
    stage = parse_stage(stage) if stage is not None else None
    if stage is not None and info.stage != stage:
        raise ValueError(f"defense {name!r} is a {info.stage}-stage defense, not {stage}")
    return info


def parse_params(info: DefenseInfo, params: dict) -> Spec:
    """Validate hyperparameters at the boundary: unknown names and bad values are one clear error."""
    return parse_method_params("defense", info.name, info.params, params)
