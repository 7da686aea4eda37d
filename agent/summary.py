"""Text lines that tell what the agent did, for the terminal summary and the CLI."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

_DIGITS = re.compile(r"(\d+)")

if TYPE_CHECKING:  # the pipeline (trackers, pools, SQLite) loads only when the agent runs
    from .model import IssueRef, TestResult
    from .pipeline import PlannedAction


def _label(ref: IssueRef) -> str:
    key = ref.key or "-"
    return f"{key} ({ref.status})" if ref.status else key


def _natural(text: str) -> tuple[tuple[int, str], ...]:
    """``SHOP-9`` before ``SHOP-10``: the numbers in a key compared as numbers."""
    return tuple((int(part), "") if part.isdigit() else (0, part) for part in _DIGITS.split(text))


def _web(url: str) -> str:
    return url if url.startswith(("https://", "http://")) else ""


def issue_lines(results: Iterable[TestResult]) -> list[str]:
    """One line per issue and action: what was filed, commented, linked, known, queued, failed."""
    grouped: dict[tuple[str, str, str, str, str], list[str]] = {}
    for result in results:
        for ref in result.issues:
            key = (ref.action, ref.integration, _label(ref), ref.error, _web(ref.url))
            grouped.setdefault(key, []).append(result.nodeid)
    if not grouped:
        return []
    from .model import ACTIONS  # with issues to show only: a passing run leaves it unloaded

    order: dict[str, int] = {a: i for i, a in enumerate(ACTIONS)}
    lines = []
    for (action, integration, label, error, url), nodeids in sorted(
        grouped.items(), key=lambda kv: (order.get(kv[0][0], 9), _natural(kv[0][2]))
    ):
        more = f" (+{len(nodeids) - 1} more)" if len(nodeids) > 1 else ""
        where = f"[{integration}] " if integration else ""
        # an error names its test for the log ("test_x.py::test_a: no integration named ..."):
        # the line names it already
        error = error.removeprefix(f"{nodeids[0]}: ")
        detail = f": {error}" if error else ""
        lines.append(f"{action:<9} {where}{label} {nodeids[0]}{more}{detail}")
        if url:  # on a line of its own: a terminal makes it clickable
            lines.append(f"{'':<9} {url}")
    return lines


def plan_lines(plan: Sequence[PlannedAction]) -> list[str]:
    return [f"would {action.describe()}" for action in plan] or ["nothing to file"]


def display_path(path: str | Path, start: Path | None) -> str:
    """A path as the user would type it from where the run was started."""
    path = Path(path)
    if start is not None and path.is_relative_to(start):
        return str(path.relative_to(start))
    return str(path)


def link_lines(results: Iterable[TestResult]) -> list[str]:
    """The Sauce Labs pages of the failures, so whoever reads the failure can watch the job."""
    return [
        f"{link.title}: {result.nodeid}: {link.url}"
        for result in results
        if result.failing
        for link in result.links
    ]


def flaky_lines(results: Iterable[TestResult], policy: str) -> list[str]:
    """The flaky tests (failed, then passed on a rerun or in recent runs) and what was done."""
    done = {"label": "filed with the label flaky", "skip": "not filed", "file": "filed"}[policy]
    return [f"flaky     {r.nodeid}: {done}" for r in results if r.flaky]
