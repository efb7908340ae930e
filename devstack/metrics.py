"""Reading a service's Prometheus metrics, as tests and benchmarks count what a server did.

A series that is not on the page reads as None, never as 0: a renamed metric or label must fail
a check, not pass it as "unchanged" or "empty"."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

# What a family's samples add to its name (a counter's _total, a histogram's _count...).
_SUFFIXES = ("_total", "_created", "_count", "_sum", "_bucket")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
# Prometheus' base units: seconds and bytes, never their multiples.
_NOT_BASE_UNIT = re.compile(r"_(ms|milli\w+|micro\w+|minutes|hours|kilobytes|megabytes)(_|$)")
# Labels past this many values in one family are an unbounded label (a path, an id, a text).
MAX_LABEL_VALUES = 50
# Processes' own metrics, from prometheus_client's collectors.
PROCESS_PREFIXES = ("process_", "python_")


class MissingSeries(AssertionError):
    """A series a check needs is not on the metrics page."""


@dataclass(frozen=True)
class MetricsPage:
    """One scrape of a /metrics page.

    Args:
        text: the page, in Prometheus' text format.
    """

    text: str

    @classmethod
    def fetch(cls, metrics_url: str) -> MetricsPage:
        """Scrape `metrics_url` (e.g. http://127.0.0.1:9100/metrics)."""
        response = httpx.get(metrics_url, timeout=5)
        response.raise_for_status()
        return cls(response.text)

    def families(self) -> list[Metric]:
        """The metric families on the page (a family declared with no series yet included)."""
        return list(text_string_to_metric_families(self.text))

    def declares(self, name: str) -> bool:
        """Whether the page has the family of the sample name `name` (`x_total`, `x_count` and
        `x` all name family `x`), with or without series."""
        names = {family.name for family in self.families()}
        return name in names or any(
            name.endswith(suffix) and name[: -len(suffix)] in names for suffix in _SUFFIXES
        )

    def value(self, name: str, **labels: str) -> float | None:
        """The sum of the samples named `name` (in full: `x_total`, `x_count`) whose labels
        include `labels`; None when there is none."""
        values = [
            sample.value
            for family in self.families()
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        ]
        return sum(values) if values else None

    def require(self, name: str, **labels: str) -> float:
        """`value(name, **labels)`, which must be on the page.

        Raises:
            MissingSeries: no such series; the message lists the series of that name there are.
        """
        value = self.value(name, **labels)
        if value is None:
            raise MissingSeries(self._missing(name, labels))
        return value

    def _missing(self, name: str, labels: dict[str, str]) -> str:
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        present = sorted(
            {
                "{" + ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items())) + "}"
                for family in self.families()
                for sample in family.samples
                if sample.name == name
            }
        )
        if present:
            return f"no series {name}{{{wanted}}} on the page; {name} has: {', '.join(present)}"
        if self.declares(name):
            return f"no series {name}{{{wanted}}}: its family is declared but has no series yet"
        return f"no metric {name} on the page at all (renamed?)"


def counter_total(metrics_url: str, name: str, **labels: str) -> float:
    """The sum of counter `name` (without its `_total` suffix) over the series whose labels
    include `labels`, read from `metrics_url` (e.g. http://127.0.0.1:9100/metrics): 0 while no
    such series has been counted yet.

    Raises:
        MissingSeries: the page has no counter `name` at all (a renamed metric).
    """
    page = MetricsPage.fetch(metrics_url)
    if not any(f.name == name and f.type == "counter" for f in page.families()):
        raise MissingSeries(f"no counter {name} on {metrics_url} (renamed?)")
    return page.value(f"{name}_total", **labels) or 0.0


def lint(page: MetricsPage, prefix: str) -> list[str]:
    """What breaks Prometheus' naming conventions on `page` (promtool's rules and some more):
    names outside `prefix` and the process's own, names and labels not in snake case, counters
    without `_total`, other types with a counter's or histogram's suffix, units other than the
    base ones, families without help, labels with unbounded values. Empty when clean."""
    problems = []
    families = page.families()
    names = {family.name for family in families}
    for family in families:
        name = family.name
        if name.endswith("_created") and name[: -len("_created")] in names:
            continue  # prometheus_client's creation time of a counter or histogram
        if not _NAME.match(name):
            problems.append(f"{name}: not snake case")
        if not name.startswith((prefix, *PROCESS_PREFIXES)):
            problems.append(f"{name}: outside {prefix}*")
        if _NOT_BASE_UNIT.search(name):
            problems.append(f"{name}: not in a base unit (seconds, bytes)")
        if not family.documentation.strip():
            problems.append(f"{name}: no help text")
        if family.type != "counter" and name.endswith(_SUFFIXES):
            problems.append(f"{name}: a {family.type} named like a counter or histogram series")
        values: dict[str, set[str]] = {}
        for sample in family.samples:
            if family.type == "counter" and not sample.name.endswith(("_total", "_created")):
                problems.append(f"{sample.name}: a counter series without _total")
            for label, value in sample.labels.items():
                if not _NAME.match(label) or label.startswith("__"):
                    problems.append(f"{name}: label {label!r} is not snake case")
                values.setdefault(label, set()).add(value)
        problems += [
            f"{name}: label {label!r} has {len(seen)} values (unbounded?)"
            for label, seen in values.items()
            if len(seen) > MAX_LABEL_VALUES
        ]
    return problems


def promtool() -> str | None:
    """The promtool binary: on PATH, or beside this Python (`make promtool` puts it there)."""
    beside = Path(sys.executable).parent / "promtool"
    return shutil.which("promtool") or (str(beside) if beside.is_file() else None)


def promtool_check(page: MetricsPage, binary: str, args: Sequence[str] = ()) -> str:
    """What `promtool check metrics` says of `page`: empty when clean."""
    result = subprocess.run(
        [binary, "check", "metrics", *args],
        input=page.text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = (result.stdout + result.stderr).strip()
    return said or ("" if result.returncode == 0 else f"exit {result.returncode}")


@dataclass(frozen=True)
class EmbedderCounts:
    """What an embedder has embedded since it started: whole photos, garment regions (box
    crops), and images it refused (undecodable)."""

    photos: int
    regions: int
    refused: int

    def __sub__(self, other: EmbedderCounts) -> EmbedderCounts:
        return EmbedderCounts(
            self.photos - other.photos, self.regions - other.regions, self.refused - other.refused
        )


def embedder_counts(metrics_url: str) -> EmbedderCounts:
    """The embedder's counts, read from its metrics at `metrics_url`."""
    # The "images" series counts every forward-pass input, box crops too; "regions" them alone.
    images = counter_total(metrics_url, "fashionrag_embedder_items", kind="images")
    regions = counter_total(metrics_url, "fashionrag_embedder_items", kind="regions")
    refused = counter_total(metrics_url, "fashionrag_embedder_item_errors", kind="images")
    return EmbedderCounts(int(images - regions), int(regions), int(refused))


def settled_embedder_counts(
    metrics_url: str, quiet: float = 1.0, timeout: float = 30.0
) -> EmbedderCounts:
    """The embedder's counts once they have not moved for `quiet` seconds: requests of a client
    that was just killed may still be embedded after it is gone."""
    deadline = time.monotonic() + timeout
    counts = embedder_counts(metrics_url)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = embedder_counts(metrics_url)
        if now == counts:
            return now
        counts = now
    raise TimeoutError(f"the embedder's counts at {metrics_url} still move after {timeout}s")
