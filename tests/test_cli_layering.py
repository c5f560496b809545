"""Layering of the command line beyond the import contracts of pyproject.toml (which `make test` checks with
`lint-imports`: layers point one way, no cycles, function-local imports counted): `workbench.cli` only registers
commands, their shared helpers are a leaf, and nothing outside the package (scripts, benchmarks, tests, the app,
notebooks) imports `workbench.commands`. Read from the source, not by importing."""
from __future__ import annotations

import ast
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imported(tree: ast.AST, package: str) -> set[str]:
    """Every module name an `import` / `from` statement anywhere in `tree` names (both `X` and `X.Y` of a
    `from X import Y`, since Y may be a submodule)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            names |= {base} | {f"{base}.{a.name}" for a in node.names}
    return names


def test_commands_common_is_a_leaf():
    """The helpers every command shares import no command module and never the CLI, so any command can use them."""
    names = _imported(ast.parse((ROOT / "workbench" / "commands" / "common.py").read_text(encoding="utf-8")),
                      "workbench.commands")
    assert not {n for n in names if n == "workbench.cli" or
                (n.startswith("workbench.commands.") and n != "workbench.commands.common")}


def test_cli_module_only_registers_commands():
    tree = ast.parse((ROOT / "workbench" / "cli.py").read_text(encoding="utf-8"))
    defined = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    assert not defined, f"workbench/cli.py defines {defined}: command bodies belong in workbench/commands/"


def test_nothing_outside_the_cli_imports_commands():
    sources = []
    for folder in ("scripts", "benchmarks", "tests", "apps"):
        sources += [(f, f.read_text(encoding="utf-8")) for f in (ROOT / folder).rglob("*.py")]
    for nb in (ROOT / "analyses").glob("*.ipynb"):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        sources.append((nb, "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")))
    bad = []
    for f, text in sources:
        try:
            names = _imported(ast.parse(text), "")
        except SyntaxError:  # notebook magics: fall back to the text
            names = {line.split()[1] for line in text.splitlines() if line.strip().startswith(("from ", "import "))}
        if any(n == "workbench.commands" or n.startswith("workbench.commands.") for n in names):
            bad.append(str(f.relative_to(ROOT)))
    assert not bad, f"import the library, not workbench.commands: {bad}"
