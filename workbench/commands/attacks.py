"""`workbench attacks`: the attack registry as one table (what `--attack KIND` and `--attack-param` accept)."""
from __future__ import annotations

from rich.table import Table

from workbench.commands.common import console


def attacks_list():
    """List every attack kind with its harmful ratio, hyperparameters and paper."""
    from workbench.attacks import ATTACKS  # deferred: torch

    table = Table(title="attacks")
    for c in ("name", "what the attacker does", "p", "how", "hyperparameters (defaults)", "paper"):
        table.add_column(c)
    for name, info in ATTACKS.items():
        params = ", ".join(f"{k}={f.default}" for k, f in info.params.model_fields.items()) or "—"
        how = "weight edit" if info.edit else ("own objective" if info.plugins else "fine-tuning")
        p = "--p" if info.fixed_p is None else f"{info.fixed_p:g}"
        table.add_row(name, info.description, p, how, params, info.paper or "—")
    console.print(table)
