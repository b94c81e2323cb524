"""The package layout's promises: public names stay callable, no private imports across modules."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import onnxslim

PACKAGE = Path(onnxslim.__file__).parent


def _modules() -> list[str]:
    return [info.name for info in pkgutil.walk_packages([str(PACKAGE)], "onnxslim.")]


def test_public_functions_stay_callable_after_importing_every_submodule():
    for name in _modules():
        importlib.import_module(name)
    for name in ("optimize", "save", "slim", "quantize", "benchmark", "load"):
        assert callable(getattr(onnxslim, name)), f"onnxslim.{name} is shadowed by a module"
    assert onnxslim.quantize.__module__ == "onnxslim.quantization.api"


def test_no_module_imports_a_private_name_of_another_onnxslim_module():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("onnxslim"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                hidden = [part for part in node.module.split(".") if part.startswith("_")]
                if private or hidden:
                    offenders.append(f"{path.relative_to(PACKAGE)}: {node.module} {private}")
    assert offenders == []


def test_private_onnxscript_imports_live_in_one_module():
    importers = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("onnxscript"):
                names = [node.module, *(a.name for a in node.names)]
                if any(part.startswith("_") for name in names for part in name.split(".")):
                    importers.add(str(path.relative_to(PACKAGE)))
    assert importers == {"passes/upstream.py"}


def test_import_onnxslim_loads_neither_click_nor_onnxruntime():
    import subprocess
    import sys

    code = (
        "import sys, onnxslim; print(sorted({'click', 'onnxruntime', 'rich'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
