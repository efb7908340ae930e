"""What every benchmark shares: the machine's description, timing, the results file (servers and
data come from devstack)."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devstack.servers import ROOT

RESULTS = ROOT / "bench_results"


def machine() -> str:
    """CPU model, cores, memory, and library versions, for the results' heading."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, {gpu}; Python "
        f"{platform.python_version()}, torch {torch.__version__}"
    )


def rate(count: int, fn: Callable[[], Any], repeat: int = 1) -> float:
    """Items per second of `fn` (which handles `count` items), best of `repeat` runs."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return count / best


def write_results(
    name: str, title: str, settings: str, header: list[str], rows: list[list[str]], notes: list[str]
) -> str:
    """Write bench_results/<name>.md and return its text."""
    lines = [
        f"### {title}",
        "",
        f"Machine: {machine()}.",
        "",
        f"Settings: {settings}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", *notes]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.md").write_text(text)
    return text
