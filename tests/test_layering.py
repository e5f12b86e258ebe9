"""The house rule that keeps the data flow one-directional: a stage imports only the shared types
(models, the state view of views.py, config, errors, codec, the datasets package) and its own
package, never another stage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "daemon" / "saewatch"
STAGES = ("source", "encode", "state", "diff", "export")
SHARED = {"models", "views", "config", "errors", "codec", "datasets", "llm"}
ROOT = ""  # `from saewatch import __version__`


def _saewatch_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return [n for n in names if n == "saewatch" or n.startswith("saewatch.")]


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_imports_no_other_stage(stage: str) -> None:
    offending = []
    for path in sorted((PACKAGE / stage).rglob("*.py")):
        for name in _saewatch_imports(path):
            parts = name.split(".")
            top = parts[1] if len(parts) > 1 else ""
            if top not in SHARED and top not in (stage, ROOT):
                offending.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert offending == []


def test_shared_modules_import_no_stage() -> None:
    for module in SHARED:
        package = PACKAGE / module
        paths = sorted(package.rglob("*.py")) if package.is_dir() else [PACKAGE / f"{module}.py"]
        for path in paths:
            for name in _saewatch_imports(path):
                assert name.split(".")[1] not in STAGES, f"{path.name} imports {name}"


MAX_MODULE_LINES = 400  # the house limit: a module longer than this holds more than one concern


def test_no_module_is_over_the_size_limit() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_the_runtime_never_imports_the_training_tooling() -> None:
    """SAE training and labelling (saewatch.training) serve the CLI only: the daemon, its
    stages and shared modules must run without them."""
    tooling = {"training", "commands", "cli.py"}
    offending = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] not in tooling
        for name in _saewatch_imports(path)
        if name.startswith("saewatch.training")
    ]
    assert offending == []


def test_the_daemon_modules_load_no_model_library() -> None:
    """``saewatch aggregate`` and every daemon's start-up import app/roles; torch, transformers
    and sae-lens load only when an encoder is built. sae-lens alone took ~12 s to import here
    (it was reached through the encoder contract's health type)."""
    import subprocess
    import sys

    probe = ("import sys, saewatch.app, saewatch.roles, saewatch.cli; "
             "print(sorted(m for m in ('torch', 'transformers', 'sae_lens') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=300)
    assert done.stdout.strip() == "[]"
