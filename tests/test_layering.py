"""The architecture's layering: only the embedder imports torch and open_clip."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.servers import ROOT

HEAVY = ("torch", "open_clip", "torchvision")


@pytest.mark.parametrize(
    "modules",
    [
        ["indexer_service.__main__", "indexer_service.pipeline", "indexer_service.sample_data"],
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
