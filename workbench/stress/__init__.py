"""The worst-case adaptive attacker: an Optuna study over a declared attacker budget, per defense.

Today every defense is scored against one fixed attack; the worst case over what an attacker may choose is the
number a researcher needs. One job per module:

    space     the two threat models (fine-tuning as a service, open weights) as validated search spaces with
              bounds and a compute cap per trial; a trial's parameters → its AttackSpec
    design    the seeded quasi-random design every defense faces first (a pure function of space and seed)
    study     run / resume a study: ask/tell on the driver, each trial one attack run + its validation score,
              locally or on Ray; killed trials are marked failed and retried
    report    the validation-best configuration retrained with fresh seeds and scored on the test sets (never on
              the prompts it was selected on), a second judge, keyword refusal, quoted answers: stress.json +
              report.md
"""
