"""The architecture's layering: only the embedder imports torch and open_clip; the development
harness (devstack) is used by tests, benchmarks, scripts and deploy checks but never by
production code, and nothing outside tests/ imports from it."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.servers import ROOT

HEAVY = ("torch", "open_clip", "torchvision")
PRODUCTION = ("fashionrag", "embedder_service", "indexer_service", "query_service")
# Python inside shell scripts, Dockerfiles and compose files (`python -c '...'`, heredocs).
_SHELL_IMPORT = re.compile(r"(?:^|[\s;'\"(])(?:from|import)\s+([\w.]+)", re.MULTILINE)


@pytest.mark.parametrize(
    "modules",
    [
        ["indexer_service.__main__", "indexer_service.pipeline"],
        ["devstack.sample_data"],
        ["query_service.__main__", "query_service.server", "query_service.cli"],
        ["embedder_service.client"],
    ],
)
def test_light_parts_never_import_torch(modules: list[str]) -> None:
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(','.join(h for h in {HEAVY!r} if h in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"{modules} pulled in {result.stdout.strip()}"


def test_the_check_would_see_torch() -> None:
    code = "import embedder_service.model, sys; import torch; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.stdout.strip() == "True"


def imported(path: Path) -> set[str]:
    """Every module a file imports: by its syntax tree for Python, by pattern for anything else."""
    text = path.read_text(errors="replace")
    if path.suffix != ".py":
        return set(_SHELL_IMPORT.findall(text))
    names: set[str] = set()
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def importers_of(package: str, folders: tuple[str, ...]) -> list[str]:
    """The files under `folders` that import `package` or one of its modules."""
    return sorted(
        str(path.relative_to(ROOT))
        for folder in folders
        for path in (ROOT / folder).rglob("*")
        # Code only: deploy/wheels holds gigabytes of wheels after `make smoke`.
        if path.is_file()
        and (path.suffix in (".py", ".sh") or path.name.startswith("Dockerfile"))
        and "__pycache__" not in path.parts
        and any(name == package or name.startswith(f"{package}.") for name in imported(path))
    )


def test_nothing_outside_tests_imports_from_tests() -> None:
    assert importers_of("tests", ("benchmarks", "scripts", "deploy", "devstack")) == []


def test_production_code_never_imports_devstack() -> None:
    assert importers_of("devstack", PRODUCTION) == []


def test_the_import_check_sees_python_and_shell(tmp_path: Path) -> None:
    module = tmp_path / "bench.py"
    module.write_text("import os\nfrom tests import servers\nfrom .local import x\n")
    script = tmp_path / "smoke.sh"
    script.write_text("""read -r P < <("$PY" -c 'from tests.servers import free_port')\n""")
    assert "tests" in imported(module)
    assert "tests.servers" in imported(script)
