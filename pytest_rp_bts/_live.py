"""Live reporting: each test's end told, in the process that ran it (an xdist worker or the
only one), to the kinds that report live (Sauce Labs updates each test's job); and attributes
read from the fixtures those kinds name (the job id of a WebDriver whose remote is Sauce Labs).

Registered only when a configured kind reports live and the mode changes things. Nothing here
may fail a test: a problem is one line on the teardown report (shown by the controller, a
failure only under ``--rp-bts-strict``); what was not sent is kept for ``rp-bts flush``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, final

import pytest

from rp_bts_agent.kinds import LiveReporter, LiveTest
from rp_bts_agent.model import Attribute

from ._capture import ITEM_STATE, ItemState
from ._markers import MarkerError, read_markers

log = logging.getLogger("rp_bts_agent")


@dataclass(slots=True)
class _Verdict:
    failed: bool = False
    skipped: bool = False


_VERDICT = pytest.StashKey[_Verdict]()


@final
class LiveReporting:
    """Hands each test's end to the live reporters at its teardown report."""

    def __init__(self, reporters: Sequence[LiveReporter]) -> None:
        self.reporters = reporters
        self.fixtures = tuple(dict.fromkeys(f for r in reporters for f in r.fixtures))

    def pytest_unconfigure(self) -> None:
        for reporter in self.reporters:
            reporter.close()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        try:
            self._phase(item, call.when, report)
        except Exception as exc:  # contained: the verdict belongs to the tests
            log.exception("rp-bts: live reporting of %s failed", item.nodeid)
            self._problem(report, f"rp-bts: live reporting of {item.nodeid} failed: {exc!r}")
        return report

    def _phase(self, item: pytest.Item, when: str, report: pytest.TestReport) -> None:
        verdict = item.stash.setdefault(_VERDICT, _Verdict())
        verdict.failed |= report.failed
        verdict.skipped |= report.skipped
        if when in ("setup", "call"):
            self._read_fixtures(item)  # while the fixtures' values still exist
            return
        test = LiveTest(
            nodeid=item.nodeid,
            passed=False if verdict.failed else (None if verdict.skipped else True),
            attributes=self._attributes(item),
            markers=tuple(m.name for m in item.iter_markers()),
        )
        for reporter in self.reporters:
            problem = reporter.test_finished(test)
            if problem:
                self._problem(report, problem)

    def _read_fixtures(self, item: pytest.Item) -> None:
        funcargs: dict[str, Any] = getattr(item, "funcargs", None) or {}
        for name in self.fixtures:
            if name not in funcargs:
                continue
            for reporter in self.reporters:
                found = reporter.attributes_from(funcargs[name])
                if not found:
                    continue
                given = {a.key for a in self._attributes(item)}
                if any(a.key in given for a in found):
                    return  # a marker or the test itself named the job: that wins
                state = item.stash.setdefault(ITEM_STATE, ItemState())
                state.attributes += found
                return

    @staticmethod
    def _attributes(item: pytest.Item) -> list[Attribute]:
        attributes: list[Attribute] = []
        if item.get_closest_marker("slid") or item.get_closest_marker("rp_attributes"):
            with contextlib.suppress(MarkerError):  # reported once by the capture
                attributes += read_markers(item).attributes
        state = item.stash.get(ITEM_STATE, None)
        if state is not None:
            attributes += state.attributes
        return attributes

    @staticmethod
    def _problem(report: pytest.TestReport, line: str) -> None:
        data: dict[str, Any] = dict(report.__dict__.get("rp_bts") or {})
        data["problems"] = [*data.get("problems", ()), line]
        report.rp_bts = data  # type: ignore[attr-defined]


__all__ = ["LiveReporting"]
