"""Who may import whom (docs/architecture.md, "Layers"): every import of the package, read from the source.

A module imports only modules of its own layer or of a lower one, never ``experiments/``; no import
cycle between modules; no import of the package inside a function (the usual way to dodge a cycle);
``argparse`` only in ``experiments/``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hidden2stream"

#: the package's layers, lowest first: names are modules or subpackages directly under hidden2stream/
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "paths", "atomic", "options", "progress", "images", "checkpoint", "runtime",
     "weights"),
    ("flow",),
    ("losses",),
    ("data",),
    ("models",),
    ("pretrained",),
    ("train",),
    ("evaluation", "recognize", "export", "video_writer"),
    ("pipeline",),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, own: str) -> list[tuple[str, bool]]:
    """(imported module, inside a function) for every import of ``hidden2stream`` or ``argparse`` in ``path``,
    the source of module ``own``; ``from package import submodule`` counts as an import of the submodule."""
    tree = ast.parse(path.read_text(), str(path))
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in nested) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                target = sub if (ROOT / Path(*sub.split("."))).with_suffix(".py").is_file() \
                    or (ROOT / Path(*sub.split(".")) / "__init__.py").is_file() else base
                found.append((target, id(node) in nested))
    return [(name, inside) for name, inside in found
            if name == "argparse" or name.split(".")[0] in ("hidden2stream", "hidden2stream_experiments",
                                                            "experiments")]


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: imports(path, name) for name, path in MODULES.items()}


def layer(module: str) -> int:
    """The layer of a package module (the package's own ``__init__`` sits above all)."""
    top = module.split(".")[1] if "." in module else None
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module} is in no layer of tests/test_layers.py (add it where it belongs)")


def test_every_module_has_a_layer():
    for module in MODULES:
        if module != "hidden2stream":
            layer(module)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "hidden2stream"))
def test_imports_go_down_only(module):
    for target, inside_function in GRAPH[module]:
        assert target != "argparse", f"{module} imports argparse: command lines live in experiments/"
        assert target.split(".")[0] == "hidden2stream", f"{module} imports {target} (experiments/ is above the package)"
        assert not inside_function, f"{module} imports {target} inside a function"
        if target != "hidden2stream":
            assert layer(target) <= layer(module), \
                f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)}): an upward import"


def test_no_import_cycle():
    edges = {m: sorted({t for t, _ in GRAPH[m] if t in MODULES and t != m}) for m in MODULES}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in edges[module]:
            if state.get(target) == "open":
                cycle = path[path.index(target):] + [target] if target in path else [module, target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in MODULES:
        if module not in state:
            visit(module, [module])


def test_the_check_catches_an_upward_import_and_a_cycle(tmp_path):
    """The walk above sees imports in every form the package uses (absolute, relative, inside functions)."""
    source = tmp_path / "probe.py"
    source.write_text("from . import motionnet\nimport argparse\n"
                      "def f():\n    from hidden2stream.pipeline import job\n")
    found = dict(imports(source, "hidden2stream.models.probe"))
    assert found == {"hidden2stream.models.motionnet": False, "argparse": False, "hidden2stream.pipeline.job": True}
    assert layer("hidden2stream.pipeline.job") > layer("hidden2stream.models.two_stream")


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "experiments").glob("*.py")))
def test_scripts_parse_and_call(script):
    """Every experiments/ script is at most 60 lines; the jobs' scripts define ``main`` alone (cli.py and
    parsing.py hold the argparse plumbing they share)."""
    path = ROOT / "experiments" / script
    assert len(path.read_text().splitlines()) <= 60, f"{script} has more than 60 lines"
    if script not in ("cli.py", "parsing.py", "__init__.py"):
        defined = [n.name for n in ast.parse(path.read_text()).body
                   if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        assert defined == ["main"], f"{script} defines {defined}"
