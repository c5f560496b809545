"""Plain-text tables the commands and reports write (a leaf: imports nothing from workbench)."""
from __future__ import annotations

from collections.abc import Iterable


def markdown_table(head: list[str], rows: Iterable[Iterable]) -> str:
    """A GitHub markdown table: the header, the rule, one line per row (cells written with str)."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
