"""Each test's job updated as the test ends, in the process that ran it (the plugin's live
reporting): a failed job is never marked passed, and an update is kept until it is sent."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final, final

from rp_bts_agent import environment
from rp_bts_agent.config_types import Config
from rp_bts_agent.kinds import LiveTest
from rp_bts_agent.model import Attribute

from . import SauceSettings
from .client import JobUpdate, Updater, build_name, sauce_session

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


@final
class JobReporter:
    """A :class:`~rp_bts_agent.kinds.LiveReporter` for Sauce Labs jobs."""

    def __init__(self, config: Config, *, launch: str, run_id: str, tag: str) -> None:
        self.updater = Updater(config, tag)
        self.run_id = run_id
        self.build = build_name(launch, environment.ci_build_number(os.environ))
        self.fixtures: Sequence[str] = tuple(
            dict.fromkeys(
                i.settings_as(SauceSettings).driver_fixture or "driver"
                for i in config.of_kind("sauce")
            )
        )

    def attributes_from(self, value: object) -> Sequence[Attribute]:
        found = sauce_session(value)
        if found is None:
            return ()
        return (Attribute("SLID", found[0]), Attribute("SLDC", found[1]))

    def test_finished(self, test: LiveTest) -> str | None:
        job = _last(test.attributes, "SLID")
        if not job:
            return None
        update = JobUpdate(
            job_id=job,
            name=test.nodeid,
            build=self.build,
            tags=tuple(sorted(set(test.markers) - _NOT_TAGS)),
            passed=test.passed,
            data_center=_last(test.attributes, "SLDC"),
            key=f"{self.run_id}:{test.nodeid}",
        )
        return self.updater.send(update)

    def close(self) -> None:
        self.updater.close()


def _last(attributes: Sequence[Attribute], key: str) -> str:
    return next((a.value for a in reversed(attributes) if a.key == key), "")
