"""Import layers point one way: config/cache -> data, models, runs -> training, evaluation, attacks -> analysis ->
defenses, plots -> steps -> sweep/figures/leaderboard -> commands -> cli, with `workbench.vocabulary` and
`workbench.tables` at the bottom. Every import counts, function-local ones too; imports under
`if TYPE_CHECKING:` are annotations only and do not.

`python tests/test_import_layers.py` prints every import cycle (strongly connected component) of workbench/ and apps/.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def module_graph(root: Path = REPO) -> dict[str, set[str]]:
    """{module: modules of workbench / apps it imports}, read with ast from the source files."""
    files = {}
    for p in [*(root / "workbench").rglob("*.py"), *(root / "apps").rglob("*.py")]:
        parts = list(p.relative_to(root).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(node.test) for b in node.body for n in ast.walk(b)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                names = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            graph[mod] |= {t for t in map(resolve, names) if t and t != mod}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_vocabulary_and_tables_modules_import_nothing_from_workbench():
    graph = module_graph()
    assert graph["workbench.vocabulary"] == set()
    assert graph["workbench.tables"] == set()


def test_plots_import_neither_the_leaderboard_nor_figures():
    graph = module_graph()
    for mod, deps in graph.items():
        if mod.startswith("workbench.plots"):
            assert not deps & {"workbench.leaderboard", "workbench.figures"}, (mod, deps)


def test_figures_leaderboard_and_plots_are_in_no_import_cycle():
    reading = {"workbench.vocabulary", "workbench.tables", "workbench.figures", "workbench.leaderboard"}
    for comp in cycles(module_graph()):
        caught = [m for m in comp if m in reading or m.startswith("workbench.plots")]
        assert not caught, f"import cycle {comp}"
    assert "workbench.figures" not in module_graph()["workbench.leaderboard"]


def test_cycles_finds_a_cycle_and_a_self_contained_module():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": set(), "b": {"a"}}) == []


if __name__ == "__main__":  # pragma: no cover
    found = cycles(module_graph())
    for comp in found:
        print("cycle:", ", ".join(comp))
    sys.exit(1 if found else 0)
