"""Layering of the command line: `workbench.cli` only registers commands, command modules call the library,
the library never imports them back, and nothing outside the CLI imports `workbench.commands`.

Read from the source (every `import` / `from` statement, including those inside functions), not by importing.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI_LAYER = ("workbench.cli", "workbench.commands")


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for f in (ROOT / "workbench").rglob("*.py"):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)
    return mods


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


def _graph() -> dict[str, set[str]]:
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for m, (f, is_pkg) in mods.items():
        package = m if is_pkg else m.rpartition(".")[0]
        names = _imported(ast.parse(f.read_text(encoding="utf-8")), package)
        graph[m] = {r for n in names if n.startswith("workbench")
                    for r in [resolve(n)] if r and r != m}
    return graph


def _in_cli_layer(m: str) -> bool:
    return any(m == p or m.startswith(p + ".") for p in CLI_LAYER)


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.add(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    out.append(comp)
    return out


def test_no_import_cycle_through_the_cli():
    bad = [sorted(c) for c in _cycles(_graph()) if any(_in_cli_layer(m) for m in c)]
    assert not bad, f"import cycles through workbench.cli / workbench.commands: {bad}"


def test_library_never_imports_the_cli():
    graph = _graph()
    bad = sorted(f"{m} -> {d}" for m, deps in graph.items() if not _in_cli_layer(m)
                 for d in deps if _in_cli_layer(d))
    assert not bad, f"library modules import the command line: {bad}"


def test_commands_common_is_a_leaf_and_commands_never_import_cli():
    graph = _graph()
    assert not {d for d in graph["workbench.commands.common"] if _in_cli_layer(d)}
    bad = sorted(f"{m} -> workbench.cli" for m, deps in graph.items() if "workbench.cli" in deps)
    assert not bad, bad


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
