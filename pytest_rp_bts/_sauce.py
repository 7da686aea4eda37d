"""Sauce Labs job updates as each test ends, in the process that ran it (an xdist worker or the
only process), plus the job id of a WebDriver fixture whose remote is Sauce Labs.

Registered only with a Sauce Labs integration configured and a mode that changes things. Nothing
here may fail a test: a failed update is one line on the teardown report (shown by the controller,
a failure only under ``--rp-bts-strict``) and is kept for ``rp-bts flush``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Final, final

import pytest

from rp_bts_agent import environment
from rp_bts_agent.config_types import Config
from rp_bts_agent.model import Attribute
from rp_bts_agent.sauce import JobUpdate, Updater, build_name, sauce_session

from ._capture import ITEM_STATE, ItemState
from ._markers import MarkerError, read_markers

log = logging.getLogger("rp_bts_agent")

#: markers that say how pytest runs a test, not what it is about: never job tags.
_NOT_TAGS: Final = frozenset(
    (
        "parametrize",
        "usefixtures",
        "filterwarnings",
        "skip",
        "skipif",
        "xfail",
        "slid",
        "rp_attributes",
        "issue",
        "bts",
    )
)


@dataclass(slots=True)
class _Verdict:
    failed: bool = False
    skipped: bool = False


_VERDICT = pytest.StashKey[_Verdict]()


@final
class SauceUpdater:
    """Updates each test's Sauce Labs job at its teardown report."""

    def __init__(self, config: Config, *, launch: str, run_id: str, tag: str) -> None:
        self.updater = Updater(config, tag)
        self.run_id = run_id
        self.build = build_name(launch, environment.ci_build_number(os.environ))
        self.fixtures = tuple(
            dict.fromkeys(i.driver_fixture or "driver" for i in config.of_kind("sauce"))
        )

    def pytest_unconfigure(self) -> None:
        self.updater.close()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        try:
            self._phase(item, call.when, report)
        except Exception as exc:  # contained: the verdict belongs to the tests
            log.exception("rp-bts: Sauce Labs update of %s failed", item.nodeid)
            self._problem(report, f"rp-bts: Sauce Labs update of {item.nodeid} failed: {exc!r}")
        return report

    def _phase(self, item: pytest.Item, when: str, report: pytest.TestReport) -> None:
        verdict = item.stash.setdefault(_VERDICT, _Verdict())
        verdict.failed |= report.failed
        verdict.skipped |= report.skipped
        if when in ("setup", "call"):
            self._detect_driver(item)  # while the fixture's value still exists
            return
        attributes = self._attributes(item)
        job = _last(attributes, "SLID")
        if not job:
            return
        passed = False if verdict.failed else (None if verdict.skipped else True)
        update = JobUpdate(
            job_id=job,
            name=item.nodeid,
            build=self.build,
            tags=tuple(sorted({m.name for m in item.iter_markers()} - _NOT_TAGS)),
            passed=passed,
            data_center=_last(attributes, "SLDC"),
            key=f"{self.run_id}:{item.nodeid}",
        )
        problem = self.updater.send(update)
        if problem:
            self._problem(report, problem)

    def _detect_driver(self, item: pytest.Item) -> None:
        funcargs: dict[str, Any] = getattr(item, "funcargs", None) or {}
        for name in self.fixtures:
            found = sauce_session(funcargs[name]) if name in funcargs else None
            if found is None:
                continue
            if _last(self._attributes(item), "SLID"):
                return  # a marker or the test itself named the job: that wins
            state = item.stash.setdefault(ITEM_STATE, ItemState())
            state.attributes += [Attribute("SLID", found[0]), Attribute("SLDC", found[1])]
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


def _last(attributes: list[Attribute], key: str) -> str:
    return next((a.value for a in reversed(attributes) if a.key == key), "")


__all__ = ["SauceUpdater"]
