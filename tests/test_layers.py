"""Imports run one way: every module of src/agmm imports only from its own layer or below.

Layers, bottom to top (docs/ARCHITECTURE.md, "Layers"):

0. runtime: ``agmm.errors``, ``agmm.config``, ``agmm.outputs``, ``agmm.runtime.*``
1. ``agmm.data``, ``agmm.models``, ``agmm.gmm``, ``agmm.losses``
2. ``agmm.eval``, ``agmm.seeds``, ``agmm.viz``
3. ``agmm.engine``
4. commands: ``agmm`` (the lazy public surface), ``agmm.cli``, ``agmm.__main__``, every
   ``*.commands`` module and ``agmm.engine.demo``

The package's own imports stand at module level. Inside a function only: the commands layer (it
imports the stage a verb runs when the verb runs, so that ``agmm --help`` does not import the whole
library) and the optional or heavy third-party packages of ``DEFERRED``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS = {
    "runtime": 0,
    "data": 1,
    "models": 1,
    "gmm": 1,
    "losses": 1,
    "eval": 2,
    "seeds": 2,
    "viz": 2,
    "engine": 3,
    "commands": 4,
}
RUNTIME_MODULES = {"agmm.errors", "agmm.config", "agmm.outputs"}
COMMAND_MODULES = {"agmm", "agmm.cli", "agmm.__main__", "agmm.engine.demo"}

# Third-party imports that may stand inside a function, and why.
DEFERRED = {
    "pydensecrf": "optional extra (agmm[crf]); a clear message names the extra when it is missing",
    "onnx": "optional extra (agmm[export])",
    "onnxruntime": "optional extra (agmm[export])",
    "sklearn": "t-SNE only; scikit-learn takes seconds to import",
    "threadpoolctl": "comes with scikit-learn, used with its t-SNE",
    "pycocotools": "COCO only",
    "torch.utils.tensorboard": "only with train.tensorboard; it imports tensorboard (and probes "
    "for TensorFlow)",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    if module in COMMAND_MODULES or parts[-1] == "commands":
        return "commands"
    if module in RUNTIME_MODULES or parts[1] == "runtime":
        return "runtime"
    if parts[1] in LAYERS:
        return parts[1]
    raise AssertionError(f"{module}: not in any layer; add it to tests/test_layers.py and docs")


def imports_of(path: Path, source: str | None = None):
    """``(imported module, line, inside a function)`` for every import statement of ``path``
    (or of ``source`` as if it stood at ``path``)."""
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    )

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, child.lineno, in_function
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module
                if target.startswith("agmm") and target.count(".") < 2:
                    # ``from agmm.data import io`` may name a submodule: judge each name
                    for alias in child.names:
                        yield f"{target}.{alias.name}", child.lineno, in_function
                else:
                    yield target, child.lineno, in_function
            yield from visit(child, inside)

    yield from visit(tree, False)


def agmm_target(imported: str) -> str | None:
    """The agmm module an import refers to (names of a package count as the package)."""
    if imported != "agmm" and not imported.startswith("agmm."):
        return None
    parts = imported.split(".")
    while parts:
        candidate = SRC.joinpath(*parts)
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    return imported


MODULES = sorted(SRC.joinpath("agmm").rglob("*.py"))


def test_every_module_has_a_layer():
    for path in MODULES:
        layer_of(module_name(path))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_module_imports_a_higher_layer(path):
    module = module_name(path)
    own = LAYERS[layer_of(module)]
    upward = []
    for imported, line, _ in imports_of(path):
        target = agmm_target(imported)
        if target is None or target == "agmm":
            continue
        if LAYERS[layer_of(target)] > own:
            upward.append(
                f"{path.relative_to(SRC)}:{line}: {module} imports {imported} "
                f"({layer_of(module)} -> {layer_of(target)})"
            )
    assert not upward, "imports that run up the layers:\n" + "\n".join(upward)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_stand_at_module_level(path):
    module = module_name(path)
    if layer_of(module) == "commands":
        return
    deferred = []
    for imported, line, in_function in imports_of(path):
        if not in_function:
            continue
        if any(imported == name or imported.startswith(name + ".") for name in DEFERRED):
            continue
        deferred.append(
            f"{path.relative_to(SRC)}:{line}: {module} imports {imported} in a function"
        )
    assert not deferred, (
        "import at module level (or add an optional heavy dependency to DEFERRED with a reason):\n"
        + "\n".join(deferred)
    )


def test_the_checker_sees_an_upward_import_inside_a_function():
    probe = SRC / "agmm" / "eval" / "probe.py"  # never written: the source is passed in
    source = "import torch\n\n\ndef f():\n    from agmm.engine.train import train\n"
    found = [(agmm_target(name), line, inside) for name, line, inside in imports_of(probe, source)]
    assert found == [(None, 1, False), ("agmm.engine.train", 5, True)]
    assert LAYERS[layer_of("agmm.engine.train")] > LAYERS[layer_of(module_name(probe))]


def test_relative_and_package_imports_resolve_to_modules():
    probe = SRC / "agmm" / "data" / "datasets" / "probe.py"
    source = "from ..transforms import EvalTransform\nfrom agmm.data import io\nfrom agmm import errors\n"
    found = [agmm_target(name) for name, _, _ in imports_of(probe, source)]
    assert found == ["agmm.data.transforms", "agmm.data.io", "agmm.errors"]
