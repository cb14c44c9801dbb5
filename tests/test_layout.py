"""The tree reads as the architecture: no import circle, one module per job, no flat leftovers."""

from __future__ import annotations

import ast
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("recsys", "flows", "app")
# What may sit at the top of recsys/: modules every part uses, none that belongs to one part
# (promote: the A/B verdict's winner tagged with GTO, read by the CLI and the app).
TOP_LEVEL = {"__init__", "cli", "config", "errors", "io", "pipeline", "status", "experiments",
             "promote"}  # fmt: skip
PARTS = {"data", "etl", "models", "training", "abtest", "bench"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((PROJECT_ROOT / package).rglob("*.py"))
    }


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """Project modules `name` imports anywhere in its file (lazy imports in functions too)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package this module is in
                anchor = name.split(".")[: len(name.split(".")) - node.level + is_package]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # `from pkg import module` names a module
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m in modules and m != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path [a, b, ..., a], or None (depth-first, three colours)."""
    colour, stack = dict.fromkeys(graph, 0), []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if colour[nxt] == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if colour[nxt] == 0 and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if colour[node] == 0 and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_a_planted_circle_and_none_in_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_imports_of_resolves_from_package_import_module(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("from recsys.training import train\nfrom recsys.io import write_json\n")
    modules = {"recsys.training.train", "recsys.io", "recsys.training", "x"}
    assert imports_of(path, "x", modules) == {"recsys.training.train", "recsys.io"}


def test_no_import_circle_in_recsys_flows_or_app():
    modules = project_modules()
    graph = {name: imports_of(path, name, set(modules)) for name, path in modules.items()}
    assert len(graph) > 40  # the walk saw the project, not an empty folder
    assert any(graph.values())
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_recsys_top_level_holds_only_shared_modules_and_the_parts():
    top = PROJECT_ROOT / "recsys"
    modules = {p.stem for p in top.glob("*.py")}
    folders = {p.name for p in top.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert modules == TOP_LEVEL, f"unexpected top-level modules: {sorted(modules - TOP_LEVEL)}"
    assert folders == PARTS


def near_names(a: str, b: str) -> bool:
    """One letter apart, or b is a plus a plural or `_suffix` (batch/batches, bench/bench_etl)."""
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long = sorted((a, b), key=len)
    rest = long[len(short) :]
    if long.startswith(short) and (rest in ("s", "es") or rest.startswith("_")):
        return True
    return len(rest) == 1 and any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def test_near_names_catches_the_old_clashes_only():
    assert near_names("batch", "batches") and near_names("bench", "bench_etl")
    assert near_names("loo", "loop") and near_names("scan", "scans")
    assert not near_names("base", "baselines") and not near_names("train", "tensors")


def test_no_two_modules_in_a_package_have_near_names():
    """`batch.py` beside `batches.py` (unrelated jobs) is what this layout removed."""
    for folder in [PROJECT_ROOT / "recsys", *(PROJECT_ROOT / "recsys").iterdir()]:
        if not folder.is_dir():
            continue
        stems = sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")
        clashes = [(a, b) for i, a in enumerate(stems) for b in stems[i + 1 :] if near_names(a, b)]
        assert not clashes, f"{folder.name}/: names a letter or a suffix apart: {clashes}"
