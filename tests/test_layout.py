"""The house: imports point down the data path, no circle, the core never imports the demo."""

from __future__ import annotations

import ast
from pathlib import Path

import sensei_xr

ROOT = Path(sensei_xr.__file__).parent
#: Each unit may import only units listed before it (and itself). The order is the data path.
LAYERS = ["errors", "toml_registry", "catalogs", "bands", "spectral", "radiometry", "sample_data", "io", "datasets", "models",
          "outputs", "quicklook", "inference", "accessor", "evaluation", "training", "demo", "cli", "__init__"]


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):  # function-level imports count too
            targets = []
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module
                targets = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                if t and t.startswith("sensei_xr") and _unit(t) != _unit(module):
                    edges.setdefault(_unit(module), set()).add(_unit(t))
    return edges


def test_imports_point_down_the_data_path():
    edges = _imports()
    assert set(edges) <= set(LAYERS), set(edges) - set(LAYERS)
    for unit, targets in edges.items():
        for t in targets:
            assert t in LAYERS and LAYERS.index(t) < LAYERS.index(unit), f"{unit} imports {t}: an arrow pointing up"


def test_the_core_never_imports_the_demo():
    edges = _imports()
    assert not [u for u, t in edges.items() if "demo" in t and u != "cli"]


def test_no_module_over_700_lines_and_no_function_over_120():
    long_modules = [(p.name, n) for p in ROOT.rglob("*.py") if (n := len(p.read_text().splitlines())) > 700]
    assert not long_modules
    long_functions = []
    for p in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 120:
                long_functions.append(f"{p.relative_to(ROOT)}:{node.name}")
    assert not long_functions
